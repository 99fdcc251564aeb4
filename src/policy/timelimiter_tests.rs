//! `resilience4j.timelimiter`, read as CommonTimeLimiterConfigurationProperties binds it.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::json;
use crate::json::Value;

use super::*;

fn parse(policy: Value) -> Result<Policy, PolicyError> {
    Policy::from_json(&policy.to_string())
}

fn limiters(section: Value) -> Policy {
    match parse(json!({"resilience4j": {"timelimiter": section}})) {
        Ok(policy) => policy,
        Err(e) => panic!("rejected: {e}"),
    }
}

fn rejected(section: Value) -> String {
    match parse(json!({"resilience4j": {"timelimiter": section}})) {
        Ok(p) => panic!("accepted: {p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_are_resilience4j_defaults() {
    let policy = limiters(json!({"instances": {"svc": {}}}));
    assert_eq!(
        policy.time_limiters["svc"],
        TimeLimiterConfig {
            timeout_duration_ms: 1000,
            cancel_running_future: true
        }
    );
    assert!(policy.warnings.is_empty(), "{:?}", policy.warnings);
}

#[test]
fn instance_over_base_config_over_configs_default_over_library_default() {
    let policy = limiters(json!({
        "configs": {
            "default": {"timeout-duration": "3s", "cancel-running-future": false},
            "slow": {"timeoutDuration": "10s"}
        },
        "instances": {
            "a": {},
            "b": {"base-config": "slow"},
            "c": {"base-config": "slow", "TIMEOUT_DURATION": 250},
            "d": {"cancel_running_future": "true"}
        }
    }));
    let t = &policy.time_limiters;
    assert_eq!(
        (t["a"].timeout_duration_ms, t["a"].cancel_running_future),
        (3000, false)
    );
    assert_eq!(
        (t["b"].timeout_duration_ms, t["b"].cancel_running_future),
        (10_000, false)
    );
    assert_eq!(
        t["c"].timeout_duration_ms, 250,
        "a bare number is milliseconds"
    );
    assert_eq!(
        (t["d"].timeout_duration_ms, t["d"].cancel_running_future),
        (3000, true)
    );
}

#[test]
fn cancel_running_future_false_and_event_buffer_are_accepted_with_warnings() {
    let policy = limiters(json!({"instances": {"svc": {
        "cancel-running-future": false, "event-consumer-buffer-size": 10
    }}, "time-limiter-aspect-order": 5}));
    let warnings = policy.warnings.join("\n");
    assert!(
        warnings.contains("resilience4j.timelimiter.instances.svc.cancel-running-future: false cannot be honoured"),
        "{warnings}"
    );
    assert!(
        warnings.contains("resilience4j.timelimiter.instances.svc.event-consumer-buffer-size: has no meaning in the sidecar"),
        "{warnings}"
    );
    assert!(
        warnings.contains("resilience4j.timelimiter.time-limiter-aspect-order: has no meaning"),
        "{warnings}"
    );
}

#[test]
fn errors_name_the_path_as_written() {
    assert!(
        rejected(json!({"instances": {"svc": {"timeoutDuration": "-1s"}}}))
            .starts_with("resilience4j.timelimiter.instances.svc.timeoutDuration:"),
    );
    assert_eq!(
        rejected(json!({"instances": {"svc": {"timeout-duraton": "1s"}}})),
        "resilience4j.timelimiter.instances.svc.timeout-duraton: unknown key (did you mean 'timeout-duration'?)"
    );
    assert_eq!(
        rejected(json!({"instances": {"svc": {"cancel-running-future": "maybe"}}})),
        "resilience4j.timelimiter.instances.svc.cancel-running-future: expected a boolean, got \"maybe\""
    );
    assert_eq!(
        rejected(json!({"instances": {"svc": {"base-config": "nope"}}})),
        "resilience4j.timelimiter.instances.svc.base-config: unknown config 'nope'"
    );
}

#[test]
fn a_time_limiter_guards_the_cluster_named_like_it_and_may_have_a_fallback() {
    let policy = parse(json!({
        "resilience4j": {"timelimiter": {"instances": {"user-service": {"timeout-duration": "2s"}}}},
        "upstreams": {"users-v2": "user-service"},
        "fallbacks": {"user-service": {"status": 200, "body": {"name": "Guest"}}}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        policy.instance_for_cluster("user-service"),
        Some("user-service")
    );
    assert_eq!(
        policy.instance_for_cluster("outbound|8080||user-service.default.svc.cluster.local"),
        Some("user-service")
    );
    assert_eq!(
        policy.instance_for_cluster("users-v2"),
        Some("user-service")
    );
    assert_eq!(policy.instance_for_cluster("other"), None);
    assert_eq!(policy.fallbacks["user-service"].status, 200);
}
