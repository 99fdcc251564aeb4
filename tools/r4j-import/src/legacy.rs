//! Keys resilience4j 2.0 removed: `max-retry-attempts`, `ring-buffer-size-in-closed-state`,
//! `ring-buffer-size-in-half-open-state`. A 2.x service (Spring Boot 3) binds them to nothing
//! and runs its defaults; the filter's parser does the same and says so per key. For a service
//! still on resilience4j 1.x, `--resilience4j-1x` rewrites them here, before validation, with
//! their 1.x meaning (resilience4j 1.7.1's Spring binding):
//!
//! - `max-retry-attempts: n` → `max-attempts: n` (the first call included, like max-attempts);
//! - `ring-buffer-size-in-closed-state: n` → `sliding-window-size: n`,
//!   `minimum-number-of-calls: n`, `sliding-window-type: COUNT_BASED`;
//! - `ring-buffer-size-in-half-open-state: n` → `permitted-number-of-calls-in-half-open-state: n`.
//!
//! 1.x applied them first, so a current key written in the same object wins.

use serde_json::{Map, Value};
use sidecar_resilience::policy::canonical_key;

/// (removed key, module section, the keys it sets in 1.x with their values: `None` = its own).
type Rule = (
    &'static str,
    &'static str,
    &'static [(&'static str, Option<&'static str>)],
);

const RULES: &[Rule] = &[
    ("max-retry-attempts", "retry", &[("max-attempts", None)]),
    (
        "ring-buffer-size-in-closed-state",
        "circuitbreaker",
        &[
            ("sliding-window-size", None),
            ("minimum-number-of-calls", None),
            ("sliding-window-type", Some("COUNT_BASED")),
        ],
    ),
    (
        "ring-buffer-size-in-half-open-state",
        "circuitbreaker",
        &[("permitted-number-of-calls-in-half-open-state", None)],
    ),
];

/// What was found (and, with `rewrite`, rewritten): one line per removed key, by path.
pub fn apply(tree: &mut Value, rewrite: bool) -> Vec<String> {
    let mut report = Vec::new();
    let Value::Object(modules) = tree else {
        return report;
    };
    for (module_key, section) in modules.iter_mut() {
        let module = canonical_key(module_key);
        let Value::Object(section) = section else {
            continue;
        };
        for (section_key, layers) in section.iter_mut() {
            if !["instances", "backends", "configs"].contains(&canonical_key(section_key).as_str())
            {
                continue;
            }
            let Value::Object(layers) = layers else {
                continue;
            };
            for (name, layer) in layers.iter_mut() {
                let Value::Object(layer) = layer else {
                    continue;
                };
                let path = format!("resilience4j.{module_key}.{section_key}.{name}");
                rewrite_layer(layer, &module, &path, rewrite, &mut report);
            }
        }
    }
    report
}

fn find_key(layer: &Map<String, Value>, name: &str) -> Option<String> {
    let canon = canonical_key(name);
    layer.keys().find(|k| canonical_key(k) == canon).cloned()
}

fn rewrite_layer(
    layer: &mut Map<String, Value>,
    module: &str,
    path: &str,
    rewrite: bool,
    report: &mut Vec<String>,
) {
    for (removed, rule_module, sets) in RULES {
        if canonical_key(rule_module) != module {
            continue;
        }
        let Some(written) = find_key(layer, removed) else {
            continue;
        };
        if !rewrite {
            report.push(format!("{path}.{written}"));
            continue;
        }
        let Some(value) = layer.remove(&written) else {
            continue;
        };
        let mut parts = Vec::new();
        for (key, fixed) in sets.iter() {
            let set = fixed.map_or_else(|| value.clone(), |v| Value::String(v.to_string()));
            match find_key(layer, key) {
                Some(current) => parts.push(format!(
                    "{key} not set: {current} is written too and wins, as in 1.x"
                )),
                None => {
                    parts.push(format!("{key}: {}", show(&set)));
                    layer.insert(key.to_string(), set);
                }
            }
        }
        report.push(format!(
            "{path}.{written}: read with its resilience4j 1.x meaning (--resilience4j-1x): {}",
            parts.join(", ")
        ));
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_x_keys_get_their_one_x_meaning_and_current_keys_win() {
        let mut tree = json!({
            "retry": {"backends": {"product": {"maxRetryAttempts": 4, "waitDuration": 1000}}},
            "circuitbreaker": {"backends": {"product": {"ringBufferSizeInClosedState": 5,
                "ringBufferSizeInHalfOpenState": 3, "minimumNumberOfCalls": 2}},
                "configs": {"default": {"ring-buffer-size-in-closed-state": 8}}}});
        let report = apply(&mut tree, true);
        assert_eq!(
            tree,
            json!({
                "retry": {"backends": {"product": {"max-attempts": 4, "waitDuration": 1000}}},
                "circuitbreaker": {"backends": {"product": {"sliding-window-size": 5,
                    "sliding-window-type": "COUNT_BASED", "minimumNumberOfCalls": 2,
                    "permitted-number-of-calls-in-half-open-state": 3}},
                    "configs": {"default": {"sliding-window-size": 8, "minimum-number-of-calls": 8,
                        "sliding-window-type": "COUNT_BASED"}}}})
        );
        assert!(report.contains(&"resilience4j.circuitbreaker.backends.product.ringBufferSizeInClosedState: read with its resilience4j 1.x meaning (--resilience4j-1x): sliding-window-size: 5, minimum-number-of-calls not set: minimumNumberOfCalls is written too and wins, as in 1.x, sliding-window-type: COUNT_BASED".to_string()), "{report:#?}");
        assert_eq!(report.len(), 4);
    }

    #[test]
    fn without_the_option_they_are_found_and_left_for_the_parser() {
        let mut tree = json!({"retry": {"instances": {"a": {"max-retry-attempts": 4}}}});
        let before = tree.clone();
        assert_eq!(
            apply(&mut tree, false),
            ["resilience4j.retry.instances.a.max-retry-attempts"]
        );
        assert_eq!(tree, before);
    }
}
