//! Envoy started with a policy the filter rejects: the filter comes up pass-through (FAIL_OPEN
//! at boot) instead of leaving Envoy without a filter config (500 "NFCF" on every route); once
//! a policy was accepted, a rejected one keeps the previous policy serving.

// Test code: failing loudly is the point (clippy.toml allows this inside #[test] fns only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use harness::*;
use serde_json::json;

const THRESHOLD: &str = "resilience4j.circuitbreaker.instances.user-service.failure-rate-threshold";

fn assert_reaches_upstream(envoy: &Envoy, authority: &str, upstream: &Upstream, context: &str) {
    let before = upstream.count();
    let response = envoy
        .get(authority, "/boot")
        .unwrap_or_else(|e| panic!("{context}: {authority}: {e}"));
    assert_eq!(
        response.status,
        200,
        "{context}: {authority}: {}",
        response.text()
    );
    assert_eq!(upstream.count(), before + 1, "{context}: {authority}");
}

#[test]
fn a_rejected_first_policy_runs_pass_through_and_later_rejections_keep_the_old_policy() {
    let services = Services::start().unwrap();
    let bad = policy_with(THRESHOLD, json!(120));
    // Before: Envoy rejected the only config it had and `start` failed ("the initial policy
    // was rejected"); every request got a 500 from Envoy.
    let mut envoy = Envoy::start(&services, &bad).unwrap();
    for (authority, upstream) in [(USER, &services.user), (PAYMENT, &services.payment)] {
        assert_reaches_upstream(&envoy, authority, upstream, "bad first policy");
    }
    // Unguarded: failures reach the caller as they are; no breaker opens.
    services.user.set_default(Action::status(500));
    for _ in 0..12 {
        let response = envoy.get(USER, "/fails").unwrap();
        assert_eq!(response.status, 500, "pass-through: {}", response.text());
    }
    services.user.set_default(Action::status(200));
    let lines = envoy
        .wait_for_log(0, "PASS-THROUGH", Duration::from_secs(5))
        .unwrap();
    assert!(
        lines
            .iter()
            .all(|l| l.contains("[error]") && l.contains(THRESHOLD)),
        "logged at error level naming the path: {lines:?}"
    );

    // A good policy replaces it.
    assert_eq!(
        envoy.set_policy(&seed_policy()).unwrap(),
        PolicyUpdate::Applied
    );
    let serving = envoy.ecds_version();
    // Now a bad policy is refused and the good one keeps serving.
    let mark = envoy.log_mark();
    let other_bad = policy_with(THRESHOLD, json!(130));
    assert_eq!(
        envoy.set_policy(&other_bad).unwrap(),
        PolicyUpdate::Rejected
    );
    assert_eq!(envoy.ecds_version(), serving);
    envoy
        .wait_for_log(mark, "policy rejected", Duration::from_secs(5))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !envoy.log_since(mark).contains("PASS-THROUGH"),
        "an update is refused, not run pass-through"
    );
    for (authority, upstream) in [(USER, &services.user), (PAYMENT, &services.payment)] {
        assert_reaches_upstream(&envoy, authority, upstream, "after a refused update");
    }

    // The very configuration that came up pass-through is accepted again as pass-through:
    // Envoy canaries a configuration once per process, so the filter must answer the same.
    let mark = envoy.log_mark();
    assert_eq!(envoy.set_policy(&bad).unwrap(), PolicyUpdate::Applied);
    envoy
        .wait_for_log(mark, "PASS-THROUGH", Duration::from_secs(5))
        .unwrap();
    assert!(
        !envoy.log_since(mark).contains("Failed to configure"),
        "no worker refuses what the canary accepted:\n{}",
        envoy.log_since(mark)
    );
    for (authority, upstream) in [(USER, &services.user), (PAYMENT, &services.payment)] {
        assert_reaches_upstream(&envoy, authority, upstream, "bad policy again");
    }
    envoy.filter_crashes().unwrap();
}
