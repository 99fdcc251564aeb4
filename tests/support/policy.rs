//! Policy fixtures: the seed policy and dotted-path tweaks, instead of repeated JSON blobs; and
//! the policy the repository ships.

use serde_json::{json, Value};

use super::repo_root;

/// Removes the value at a dotted path; returns it if it was there (the importer's rules).
pub use tools_common::remove_path;

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

/// The seed policy with one value changed: `policy_with("…failure-rate-threshold", json!(120))`.
pub fn policy_with(path: &str, value: Value) -> Value {
    let mut policy = seed_policy();
    set_path(&mut policy, path, value);
    policy
}

/// The policy file `make run`, `make docker-run` and the bench's filter rows use.
pub const SHIPPED_POLICY: &str = "envoy/policy.json";

/// envoy/policy.json: the seed policy plus an `events` section for the demo's topics.
pub fn shipped_policy() -> Result<Value, String> {
    let path = repo_root().join(SHIPPED_POLICY);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
