//! TimeLimiter in a real Envoy (`--concurrency 2`): `timeout-duration` cuts the first attempt
//! (the router's timeout, set by the filter) and each replay (the callout's timeout); the
//! breaker records the timeouts, Retry retries them, the caller gets a 504 or the fallback; and
//! a caller's timeout header neither lengthens nor shortens the bound.

// Test helpers outside #[test] fns may unwrap too: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

const TL: &str = "resilience4j.timelimiter.instances";
const RETRY: &str = "resilience4j.retry.instances";

/// Far longer than any time limiter here, and longer than the route's 5 s: a request that
/// waited for it was not cut.
const SLOW_MS: u64 = 8_000;
/// A call cut by a 300 ms time limiter, retried 3 times 200 ms apart, is over well before the
/// route's own 5 s timeout would have ended its first attempt.
const CUT_WITHIN: Duration = Duration::from_millis(4_500);

/// The seed policy, user-service: time limiter 300 ms, retry 3 attempts 200 ms apart.
fn policy() -> Value {
    let mut policy = seed_policy();
    set_path(
        &mut policy,
        &format!("{TL}.user-service.timeout-duration"),
        json!("300ms"),
    );
    set_path(
        &mut policy,
        &format!("{RETRY}.user-service.wait-duration"),
        json!("200ms"),
    );
    policy
}

/// One counter of `instance` by its Prometheus name and `kind` label, once it reads
/// `expected` (the filter flushes counters on its tick: `Envoy::counter`).
fn stat(envoy: &Envoy, series: &str, instance: &str, kind: &str, expected: u64) -> u64 {
    envoy.counter(series, &[("name", instance), ("kind", kind)], expected)
}

fn limiter_calls(envoy: &Envoy, instance: &str, kind: &str, expected: u64) -> u64 {
    stat(
        envoy,
        "resilience4j_timelimiter_calls_total",
        instance,
        kind,
        expected,
    )
}

#[test]
fn a_slow_first_attempt_is_cut_and_retried_and_the_replay_answers() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &policy()).unwrap();
    let user = &services.user;
    user.push(Action::delay(SLOW_MS, 200));
    user.push(Action::respond(200, "second"));

    let started = Instant::now();
    let response = envoy.get(USER, "/users/1").unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "second");
    assert!(
        started.elapsed() < CUT_WITHIN,
        "not cut: {:?}",
        started.elapsed()
    );
    assert_eq!(user.count(), 2);
    // The router told the upstream the bound it set.
    assert_eq!(
        user.requests()[0].header("x-envoy-expected-rq-timeout-ms"),
        Some("300")
    );
    assert_eq!(limiter_calls(&envoy, "user-service", "timeout", 1), 1);
    assert_eq!(limiter_calls(&envoy, "user-service", "successful", 1), 1);
    assert_eq!(
        stat(
            &envoy,
            "resilience4j_circuitbreaker_calls_seconds_count",
            "user-service",
            "failed",
            1
        ),
        1,
        "the timeout is a failure to the breaker"
    );
    assert_eq!(
        stat(
            &envoy,
            "resilience4j_retry_calls_total",
            "user-service",
            "successful_with_retry",
            1
        ),
        1
    );
    envoy.filter_crashes().unwrap();
}

#[test]
fn slow_replays_are_cut_too_and_the_last_timeout_is_answered_504() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &policy()).unwrap();
    let user = &services.user;
    user.set_default(Action::delay(SLOW_MS, 200));

    let started = Instant::now();
    let response = envoy.get(USER, "/users/2").unwrap();
    assert!(
        started.elapsed() < CUT_WITHIN,
        "not cut: {:?}",
        started.elapsed()
    );
    assert_eq!(response.status, 504, "{}", response.text());
    assert_eq!(
        response.header("x-time-limiter"),
        Some("user-service; timeout=300ms")
    );
    let body: Value = serde_json::from_str(&response.text()).unwrap();
    assert_eq!(body["upstream"], "user-service");
    assert_eq!(body["timeoutMs"], 300);
    assert_eq!(user.count(), 3, "max-attempts 3, every one timed out");
    assert_eq!(limiter_calls(&envoy, "user-service", "timeout", 3), 3);
    assert_eq!(
        stat(
            &envoy,
            "resilience4j_circuitbreaker_calls_seconds_count",
            "user-service",
            "failed",
            3
        ),
        3
    );
    assert_eq!(
        stat(
            &envoy,
            "resilience4j_retry_calls_total",
            "user-service",
            "failed_with_retry",
            1
        ),
        1
    );
    envoy.filter_crashes().unwrap();
}

#[test]
fn the_breaker_records_timeouts_by_their_java_name_and_the_fallback_answers() {
    let mut policy = policy();
    // Only timeouts are failures: a 500 would count as a success.
    set_path(
        &mut policy,
        "resilience4j.circuitbreaker.instances.user-service.record-exceptions",
        json!(["java.util.concurrent.TimeoutException"]),
    );
    set_path(
        &mut policy,
        &format!("{RETRY}.user-service.max-attempts"),
        json!(1),
    );
    set_path(
        &mut policy,
        "fallbacks.user-service",
        json!({"status": 200, "body": {"name": "Guest"}}),
    );
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;
    user.push(Action::delay(SLOW_MS, 200));
    user.push(Action::status(500));

    let response = envoy.get(USER, "/users/3").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), r#"{"name":"Guest"}"#);
    assert!(response.header("x-time-limiter").is_some());
    assert_eq!(envoy.get(USER, "/users/4").unwrap().status, 500);
    assert_eq!(
        stat(
            &envoy,
            "resilience4j_circuitbreaker_calls_seconds_count",
            "user-service",
            "failed",
            1
        ),
        1
    );
    assert_eq!(
        stat(
            &envoy,
            "resilience4j_circuitbreaker_calls_seconds_count",
            "user-service",
            "successful",
            1
        ),
        1
    );
    assert_eq!(limiter_calls(&envoy, "user-service", "failed", 1), 1);
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_callers_timeout_header_neither_lengthens_nor_shortens_the_bound() {
    let mut policy = seed_policy();
    set_path(
        &mut policy,
        &format!("{TL}.order-service.timeout-duration"),
        json!("300ms"),
    );
    set_path(
        &mut policy,
        &format!("{RETRY}.order-service.max-attempts"),
        json!(1),
    );
    set_path(
        &mut policy,
        &format!("{TL}.user-service.timeout-duration"),
        json!("3s"),
    );
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &policy).unwrap();

    // Longer: asked for 20 s, cut at 300 ms.
    services.order.push(Action::delay(SLOW_MS, 200));
    let started = Instant::now();
    let response = envoy
        .request(
            "GET",
            ORDER,
            "/orders/1",
            &[
                ("x-envoy-upstream-rq-timeout-ms", "20000"),
                ("x-envoy-upstream-rq-per-try-timeout-ms", "20000"),
                ("x-envoy-expected-rq-timeout-ms", "20000"),
            ],
            b"",
        )
        .unwrap();
    assert_eq!(response.status, 504, "{}", response.text());
    assert!(
        started.elapsed() < CUT_WITHIN,
        "not cut: {:?}",
        started.elapsed()
    );
    assert_eq!(
        services.order.requests()[0].header("x-envoy-expected-rq-timeout-ms"),
        Some("300")
    );

    // Shorter: asked for 1 ms, the upstream's 100 ms answer comes through (bound 3 s).
    services.user.push(Action::delay(100, 200));
    let response = envoy
        .request(
            "GET",
            USER,
            "/users/1",
            &[("x-envoy-upstream-rq-timeout-ms", "1")],
            b"",
        )
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        services.user.requests()[0].header("x-envoy-expected-rq-timeout-ms"),
        Some("3000")
    );
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_time_limiter_alone_guards_its_upstream() {
    // payment-service has no breaker and no retry: the time limiter alone bounds it.
    let mut policy = seed_policy();
    set_path(
        &mut policy,
        &format!("{TL}.payment-service.timeout-duration"),
        json!("300ms"),
    );
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &policy).unwrap();
    services.payment.push(Action::delay(SLOW_MS, 200));
    services.payment.push(Action::status(200));

    let started = Instant::now();
    let response = envoy.get(PAYMENT, "/payments/1").unwrap();
    assert_eq!(response.status, 504, "{}", response.text());
    assert!(
        started.elapsed() < CUT_WITHIN,
        "not cut: {:?}",
        started.elapsed()
    );
    assert_eq!(
        response.header("x-time-limiter"),
        Some("payment-service; timeout=300ms")
    );
    assert_eq!(envoy.get(PAYMENT, "/payments/2").unwrap().status, 200);
    assert_eq!(
        services.payment.count(),
        2,
        "not retried: no retry instance"
    );
    assert_eq!(limiter_calls(&envoy, "payment-service", "timeout", 1), 1);
    assert_eq!(limiter_calls(&envoy, "payment-service", "successful", 1), 1);
    envoy.filter_crashes().unwrap();
}
