//! The policy's limits: what a policy cannot remove silently, the upper bounds that keep the
//! filter's memory bounded, names that would share stats, names too long to echo.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::json;
use crate::json::Value;

use super::*;

fn rejected(policy: &Value) -> String {
    match Policy::from_json(&policy.to_string()) {
        Ok(p) => panic!("policy accepted: {p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_empty_or_null_policy_is_refused_not_read_as_no_instances() {
    for text in ["", "  \n", "null"] {
        let e = Policy::from_json(text).unwrap_err();
        assert_eq!(e.path, "", "{text:?}");
        assert!(e.message.contains("write {}"), "{text:?}: {e}");
    }
    // `{}` says it on purpose.
    assert!(Policy::from_json("{}").is_ok());
}

#[test]
fn backoff_multipliers_have_an_upper_bound() {
    for module in ["circuitbreaker", "retry"] {
        let policy = |m: Value| {
            json!({"resilience4j": {module: {"instances": {"svc": {
                "enable-exponential-backoff": true, "exponential-backoff-multiplier": m}}}}})
        };
        assert!(Policy::from_json(&policy(json!(100)).to_string()).is_ok());
        assert_eq!(
            rejected(&policy(json!(100.5))),
            format!("resilience4j.{module}.instances.svc.exponential-backoff-multiplier: must be at most 100, got 100.5")
        );
        assert!(rejected(&policy(json!(1e300))).contains("must be at most 100"));
    }
}

#[test]
fn retry_max_body_bytes_has_an_upper_bound() {
    let policy = |n: i64| {
        json!({"resilience4j": {"retry": {"instances": {"svc": {}}}},
               "retry-options": {"svc": {"max-body-bytes": n}}})
    };
    let ok = Policy::from_json(&policy(MAX_RETRY_BODY_BYTES).to_string()).unwrap();
    assert_eq!(
        i64::from(ok.retry_options["svc"].max_body_bytes),
        MAX_RETRY_BODY_BYTES
    );
    assert_eq!(
        rejected(&policy(MAX_RETRY_BODY_BYTES + 1)),
        "retry-options.svc.max-body-bytes: must be in [0, 4194304], got 4194305"
    );
    assert!(rejected(&policy(i64::from(i32::MAX))).contains("[0, 4194304]"));
}

#[test]
fn fallback_bodies_have_an_upper_bound() {
    let policy = |body: Value| {
        json!({"resilience4j": {"circuitbreaker": {"instances": {"svc": {}}}},
               "fallbacks": {"svc": {"body": body}}})
    };
    let fits = "x".repeat(MAX_FALLBACK_BODY_BYTES);
    assert!(Policy::from_json(&policy(json!(fits)).to_string()).is_ok());
    let big = "x".repeat(MAX_FALLBACK_BODY_BYTES + 1);
    assert_eq!(
        rejected(&policy(json!(big))),
        "fallbacks.svc.body: at most 65536 bytes, got 65537"
    );
    // A JSON body counts as serialized.
    let items: Vec<String> = (0..20_000).map(|i| format!("item-{i}")).collect();
    assert!(rejected(&policy(json!({ "items": items }))).contains("at most 65536 bytes"));
}

#[test]
fn instances_whose_stats_would_collide_are_refused() {
    for module in ["circuitbreaker", "retry"] {
        let policy = json!({"resilience4j": {module: {"instances": {"a.b": {}, "a_b": {}}}}});
        assert_eq!(
            rejected(&policy),
            format!(
                "resilience4j.{module}.instances: instances 'a.b' and 'a_b' would share one set \
                 of stats (dots in names are written as '_'): rename one"
            )
        );
    }
    // A breaker and a retry of one name have separate stats (and are meant to pair).
    let paired = json!({"resilience4j": {
        "circuitbreaker": {"instances": {"a.b": {}}}, "retry": {"instances": {"a_b": {}}}}});
    assert!(Policy::from_json(&paired.to_string()).is_ok());
}

#[test]
fn a_long_name_is_refused_and_not_echoed_whole() {
    let name = "n".repeat(10 * 1024);
    let policy = json!({"resilience4j": {"circuitbreaker": {"instances": {name.clone(): {}}}}});
    let message = rejected(&policy);
    assert!(message.len() < 300, "{} chars: {message}", message.len());
    assert!(message.starts_with("resilience4j.circuitbreaker.instances: name 'nnn"));
    assert!(message.contains("(10240 chars)") && message.contains("longer than 256"));
    // Cluster names may be long (Istio's outbound|port|subset|fqdn) up to the limit.
    let cluster = "c".repeat(MAX_NAME_CHARS);
    let policy = json!({"resilience4j": {"circuitbreaker": {"instances": {"svc": {}}}},
                        "upstreams": {cluster: "svc"}});
    assert!(Policy::from_json(&policy.to_string()).is_ok());

    // A long unknown key: the error's path keeps it whole (for tools), its message does not.
    let key = "k".repeat(10 * 1024);
    let policy =
        json!({"resilience4j": {"circuitbreaker": {"instances": {"svc": {key.clone(): 1}}}}});
    let e = Policy::from_json(&policy.to_string()).unwrap_err();
    assert!(e.path.ends_with(&key));
    assert!(e.to_string().len() < 400, "{}", e.to_string().len());
}
