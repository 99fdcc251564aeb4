//! Bounds that hold across policy pushes in a real Envoy: stats are never freed by Envoy, so the
//! filter caps the distinct stat names it defines over the process lifetime.

// Test code: failing loudly is the point (clippy.toml allows this inside #[test] fns only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use harness::*;
use serde_json::{json, Map, Value};

/// The filter's cap (src/host/stat_names.rs).
const MAX_STAT_NAMES: usize = 20_000;

/// 256 circuit breakers named after the push: each push brings ~5,100 new stat names.
fn policy_with_new_names(push: usize) -> Value {
    let instances: Map<String, Value> = (0..256)
        .map(|i| (format!("p{push}-svc-{i}"), json!({})))
        .collect();
    json!({"resilience4j": {"circuitbreaker": {"instances": instances}}})
}

fn filter_stat_names(envoy: &Envoy) -> usize {
    envoy.counters("^wasmcustom[.]").unwrap().len()
}

#[test]
fn stat_names_stop_growing_at_the_cap_across_pushes() {
    let services = Services::start().unwrap();
    let mut envoy = Envoy::start(&services, &seed_policy()).unwrap();
    let mut counts = vec![filter_stat_names(&envoy)];
    for push in 0..6 {
        assert_eq!(
            envoy.set_policy(&policy_with_new_names(push)).unwrap(),
            PolicyUpdate::Applied,
            "push {push}"
        );
        // Workers configure after the update is counted; let them finish.
        std::thread::sleep(Duration::from_millis(1500));
        counts.push(filter_stat_names(&envoy));
    }
    eprintln!("filter stat names after each push: {counts:?}");
    let last = *counts.last().unwrap();
    assert!(
        last <= MAX_STAT_NAMES,
        "at most {MAX_STAT_NAMES} names, got {last} ({counts:?})"
    );
    assert!(
        last > MAX_STAT_NAMES - 300,
        "the cap, not less, is reached: {counts:?}"
    );
    assert_eq!(
        counts[5], counts[6],
        "no growth once the cap is hit: {counts:?}"
    );
    let lines = envoy
        .wait_for_log(0, "distinct stat names defined", Duration::from_secs(5))
        .unwrap();
    assert_eq!(lines.len(), 1, "said once: {lines:?}");
    assert!(lines[0].contains("[error]"), "{}", lines[0]);

    // Names defined before the cap keep working: the seed policy again, its breaker counts.
    assert_eq!(
        envoy.set_policy(&seed_policy()).unwrap(),
        PolicyUpdate::Applied
    );
    std::thread::sleep(Duration::from_millis(1500));
    let response = envoy.get(USER, "/counted").unwrap();
    assert_eq!(response.status, 200);
    let name = &stat_name(
        "resilience4j_circuitbreaker_calls_seconds_count",
        &[("name", "user-service"), ("kind", "successful")],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while envoy.stat(name).unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "{name} not counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    envoy.filter_crashes().unwrap();
}
