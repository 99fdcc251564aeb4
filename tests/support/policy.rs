//! Policy fixtures: the seed policy and dotted-path tweaks, instead of repeated JSON blobs.

use serde_json::{json, Value};

/// The seed policy: the resilience4j tree of the seed's Spring ConfigMap, as the filter reads it.
pub fn seed_policy() -> Value {
    json!({"resilience4j": {
        "circuitbreaker": {"instances": {
            "user-service":  {"failure-rate-threshold": 50, "wait-duration-in-open-state": "30s",
                              "sliding-window-size": 10, "minimum-number-of-calls": 5},
            "order-service": {"failure-rate-threshold": 60, "wait-duration-in-open-state": "20s",
                              "sliding-window-size": 8}}},
        "retry": {"instances": {
            "user-service":  {"max-attempts": 3, "wait-duration": "2s"},
            "order-service": {"max-attempts": 2, "wait-duration": "1s"}}}}})
}

/// Sets the value at a dotted path (`resilience4j.retry.instances.user-service.max-attempts`,
/// the same form the filter uses in its error messages), creating objects on the way.
pub fn set_path(doc: &mut Value, path: &str, value: Value) {
    let mut node = doc;
    for key in path.split('.') {
        if !node.is_object() {
            *node = json!({});
        }
        let Value::Object(map) = node else { return };
        node = map.entry(key.to_string()).or_insert(Value::Null);
    }
    *node = value;
}

/// Removes the value at a dotted path; returns it if it was there.
pub fn remove_path(doc: &mut Value, path: &str) -> Option<Value> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((parent, last)) => (parent, last),
        None => ("", path),
    };
    let mut node = doc;
    if !parent.is_empty() {
        for key in parent.split('.') {
            node = node.get_mut(key)?;
        }
    }
    node.as_object_mut()?.remove(last)
}

/// The seed policy with one value changed: `policy_with("…failure-rate-threshold", json!(120))`.
pub fn policy_with(path: &str, value: Value) -> Value {
    let mut policy = seed_policy();
    set_path(&mut policy, path, value);
    policy
}
