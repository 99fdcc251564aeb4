//! Removing a value from a policy document by path, for the importer (which drops each key the
//! filter's parser reports, to find the next error) and the test fixtures.

use serde_json::Value;

/// Removes the value at a path as the filter's error messages write it, such as
/// `resilience4j.circuitbreaker.instances.a.b` or `...record-exceptions[2]`, and returns it.
/// Keys may contain dots (cluster names), so each step takes the longest run of segments that
/// names an existing key. None: nothing found to remove.
pub fn remove_path(doc: &mut Value, path: &str) -> Option<Value> {
    let segments: Vec<&str> = path.split('.').collect();
    remove_in(doc, &segments)
}

fn remove_in(node: &mut Value, segments: &[&str]) -> Option<Value> {
    if segments.is_empty() {
        return None;
    }
    for n in (1..=segments.len()).rev() {
        let joined = segments[..n].join(".");
        let (name, index) = split_index(&joined);
        let rest = &segments[n..];
        let Value::Object(map) = node else {
            return None;
        };
        if !map.contains_key(name) {
            continue;
        }
        match (index, rest.is_empty()) {
            (None, true) => return map.remove(name),
            (None, false) => {
                if let Some(removed) = map.get_mut(name).and_then(|child| remove_in(child, rest)) {
                    return Some(removed);
                }
            }
            (Some(i), last) => {
                if let Some(Value::Array(items)) = map.get_mut(name) {
                    if i < items.len() {
                        if last {
                            return Some(items.remove(i));
                        }
                        if let Some(removed) = remove_in(&mut items[i], rest) {
                            return Some(removed);
                        }
                    }
                }
            }
        }
    }
    None
}

/// `name[3]` → (`name`, Some(3)).
fn split_index(segment: &str) -> (&str, Option<usize>) {
    if let Some(open) = segment.rfind('[') {
        if let Some(inner) = segment[open + 1..].strip_suffix(']') {
            if let Ok(i) = inner.parse() {
                return (&segment[..open], Some(i));
            }
        }
    }
    (segment, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removes_by_path_with_dotted_keys_and_indexes() {
        let mut doc = json!({"upstreams": {"outbound|80||a.b.svc": "a"}, "x": {"l": [1, 2, 3]}});
        assert_eq!(
            remove_path(&mut doc, "upstreams.outbound|80||a.b.svc"),
            Some(json!("a"))
        );
        assert_eq!(remove_path(&mut doc, "x.l[1]"), Some(json!(2)));
        assert_eq!(remove_path(&mut doc, "x.nope"), None);
        assert_eq!(doc, json!({"upstreams": {}, "x": {"l": [1, 3]}}));
    }

    #[test]
    fn removes_a_whole_section_and_returns_it() {
        let mut doc = json!({"resilience4j": {"retry": {"instances": {}}, "circuitbreaker": {}}});
        assert_eq!(
            remove_path(&mut doc, "resilience4j.retry"),
            Some(json!({"instances": {}}))
        );
        assert_eq!(remove_path(&mut doc, "resilience4j.retry"), None);
        assert_eq!(doc, json!({"resilience4j": {"circuitbreaker": {}}}));
    }
}
