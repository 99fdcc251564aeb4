//! Retries in a real Envoy (`--concurrency 2`): resilience4j Retry semantics with real waits
//! measured at the upstream, safe-by-default methods, composition with the breaker, the retry
//! budget, and no way for a client to switch retries on with headers.

// Test helpers outside #[test] fns may unwrap too: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use harness::*;
use serde_json::{json, Value};

const RETRY: &str = "resilience4j.retry.instances";
const CB: &str = "resilience4j.circuitbreaker.instances";

/// The seed policy with waits shortened: user-service 3 attempts 200 ms apart. The breakers
/// are the seed's (user-service opens only after 5 calls at ≥ 50 %).
fn retry_policy() -> Value {
    let mut policy = seed_policy();
    set_path(
        &mut policy,
        &format!("{RETRY}.user-service.wait-duration"),
        json!("200ms"),
    );
    set_path(
        &mut policy,
        &format!("{RETRY}.order-service.wait-duration"),
        json!("200ms"),
    );
    policy
}

/// One of the sidecar's own retry counters (`attempts`, `budget_exhausted`, `body_too_large`),
/// once it reads `expected` (the filter flushes counters on its tick: `Envoy::counter`).
fn retry_stat(envoy: &Envoy, metric: &str, instance: &str, expected: u64) -> u64 {
    envoy.counter(
        &format!("resilience4j_retry_{metric}_total"),
        &[("name", instance)],
        expected,
    )
}

fn retry_calls(envoy: &Envoy, instance: &str, kind: &str, expected: u64) -> u64 {
    envoy.counter(
        "resilience4j_retry_calls_total",
        &[("name", instance), ("kind", kind)],
        expected,
    )
}

/// Gaps between consecutive arrivals at the upstream.
fn gaps(upstream: &Upstream) -> Vec<Duration> {
    let received = upstream.requests();
    received
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at))
        .collect()
}

/// Wide enough for a loaded 2-core machine, narrow enough to tell a 200 ms wait from none.
fn assert_waited_about(gap: Duration, wait_ms: u64) {
    let low = Duration::from_millis(wait_ms * 3 / 4);
    let high = Duration::from_millis(wait_ms * 5);
    assert!(
        gap >= low && gap <= high,
        "gap {gap:?} not within [{low:?}, {high:?}]"
    );
}

#[test]
fn a_flaky_upstream_is_rescued_after_the_wait_schedule() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &retry_policy()).unwrap();
    let user = &services.user;
    user.push(Action::respond(503, "attempt 1"));
    user.push(Action::respond(500, "attempt 2"));
    user.push(Action::respond(200, "attempt 3").with_header("x-attempt", "3"));

    let response = envoy.get(USER, "/users/7").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "attempt 3");
    assert_eq!(response.header("x-attempt"), Some("3"));
    assert_eq!(
        user.count(),
        3,
        "k = 2 failures, then the success: k + 1 attempts"
    );
    for gap in gaps(user) {
        assert_waited_about(gap, 200);
    }
    // Every replay is the same request.
    let received = user.requests();
    assert!(received
        .iter()
        .all(|r| r.method == "GET" && r.path == "/users/7"));
    assert_eq!(
        retry_calls(&envoy, "user-service", "successful_with_retry", 1),
        1
    );
    assert_eq!(retry_stat(&envoy, "attempts", "user-service", 2), 2);
    // The breaker recorded every attempt: 2 failures, 1 success.
    assert_eq!(
        envoy.counter(
            "resilience4j_circuitbreaker_calls_seconds_count",
            &[("name", "user-service"), ("kind", "failed")],
            2
        ),
        2
    );
    envoy.filter_crashes().unwrap();
}

#[test]
fn exhausted_attempts_return_the_last_failure() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &retry_policy()).unwrap();
    let order = &services.order;
    // order-service: max-attempts 2.
    order.push(Action::respond(500, "first"));
    order.push(Action::respond(502, "second").with_header("x-last", "yes"));
    let response = envoy.get(ORDER, "/orders/1").unwrap();
    assert_eq!(response.status, 502);
    assert_eq!(response.text(), "second");
    assert_eq!(response.header("x-last"), Some("yes"));
    assert_eq!(order.count(), 2);
    assert_eq!(
        retry_calls(&envoy, "order-service", "failed_with_retry", 1),
        1
    );

    // 4xx are not retried.
    order.push(Action::status(404));
    assert_eq!(envoy.get(ORDER, "/orders/2").unwrap().status, 404);
    assert_eq!(order.count(), 3);
    assert_eq!(
        retry_calls(&envoy, "order-service", "successful_without_retry", 1),
        1
    );
    envoy.filter_crashes().unwrap();
}

#[test]
fn connection_failures_are_retried_too() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &retry_policy()).unwrap();
    let user = &services.user;
    user.push(Action::Reset);
    user.push(Action::Close);
    let response = envoy.get(USER, "/users/1").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(user.count(), 3);
    envoy.filter_crashes().unwrap();
}

#[test]
fn post_is_not_retried_without_permission() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &retry_policy()).unwrap();
    let user = &services.user;

    user.push(Action::status(500));
    let response = envoy
        .request(
            "POST",
            USER,
            "/users",
            &[("content-type", "application/json")],
            br#"{"name":"a"}"#,
        )
        .unwrap();
    assert_eq!(response.status, 500);
    assert_eq!(user.count(), 1, "POST is not idempotent: no retry");

    // An Idempotency-Key makes it safe: replayed with the same body.
    user.push(Action::status(500));
    let response = envoy
        .request(
            "POST",
            USER,
            "/users",
            &[
                ("idempotency-key", "k-1"),
                ("content-type", "application/json"),
            ],
            br#"{"name":"b"}"#,
        )
        .unwrap();
    assert_eq!(response.status, 200);
    let received = user.requests();
    assert_eq!(received.len(), 3);
    assert_eq!(received[1].text(), r#"{"name":"b"}"#);
    assert_eq!(received[2].text(), r#"{"name":"b"}"#);
    assert_eq!(received[2].header("idempotency-key"), Some("k-1"));
    envoy.filter_crashes().unwrap();
}

#[test]
fn post_is_retried_when_the_instance_allows_it_and_large_bodies_are_not() {
    let services = Services::start().unwrap();
    let mut policy = retry_policy();
    set_path(
        &mut policy,
        "retry-options",
        json!({"user-service": {"retry-non-idempotent": true, "max-body-bytes": 64}}),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;

    user.push(Action::status(503));
    let response = envoy
        .request("POST", USER, "/users", &[], b"small body")
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(user.count(), 2);
    assert_eq!(user.last().unwrap().text(), "small body");

    user.push(Action::status(503));
    let big = vec![b'x'; 1000];
    let response = envoy.request("PUT", USER, "/users/1", &[], &big).unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(
        user.count(),
        3,
        "a body over max-body-bytes is not replayed"
    );
    assert_eq!(retry_stat(&envoy, "body_too_large", "user-service", 1), 1);
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_breaker_opening_mid_sequence_stops_the_attempts_with_the_fallback() {
    let services = Services::start().unwrap();
    let mut policy = retry_policy();
    set_path(
        &mut policy,
        &format!("{RETRY}.user-service.max-attempts"),
        json!(5),
    );
    set_path(
        &mut policy,
        &format!("{CB}.user-service.minimum-number-of-calls"),
        json!(2),
    );
    set_path(
        &mut policy,
        &format!("{CB}.user-service.sliding-window-size"),
        json!(2),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;
    user.set_default(Action::status(500));

    let started = std::time::Instant::now();
    let response = envoy.get(USER, "/users/1").unwrap();
    // Attempt 1 fails, attempt 2 fails and opens the circuit (2 calls, 100 %): attempt 3 is
    // not permitted, so the caller gets the fallback instead of waiting for attempts 3–5.
    assert_eq!(response.status, 503);
    assert_eq!(response.json().unwrap()["state"], "OPEN");
    assert_eq!(user.count(), 2);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    envoy.filter_crashes().unwrap();
}

#[test]
fn clients_cannot_switch_retries_on_with_headers() {
    let services = Services::start().unwrap();
    let mut policy = retry_policy();
    set_path(
        &mut policy,
        &format!("{RETRY}.order-service.max-attempts"),
        json!(1),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let order = &services.order;
    order.push(Action::status(503));
    let response = envoy
        .request(
            "GET",
            ORDER,
            "/orders",
            &[("x-envoy-retry-on", "5xx"), ("x-envoy-max-retries", "3")],
            b"",
        )
        .unwrap();
    assert_eq!(
        response.status, 503,
        "Envoy's router must not retry on the client's say-so"
    );
    assert_eq!(order.count(), 1);
    assert_eq!(order.last().unwrap().header("x-envoy-retry-on"), None);
    envoy.filter_crashes().unwrap();
}

#[test]
fn the_retry_budget_stops_retry_storms() {
    let services = Services::start().unwrap();
    let mut policy = retry_policy();
    set_path(
        &mut policy,
        "retry-options",
        json!({"order-service": {"budget": {"retry-ratio": 0, "min-retries-per-second": 0}}}),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let order = &services.order;
    order.push(Action::status(503));
    assert_eq!(envoy.get(ORDER, "/orders").unwrap().status, 503);
    assert_eq!(order.count(), 1);
    assert_eq!(
        retry_stat(&envoy, "budget_exhausted", "order-service", 1),
        1
    );
    envoy.filter_crashes().unwrap();
}

#[test]
fn the_retry_budget_allows_a_ratio_of_retries_to_requests() {
    let services = Services::start().unwrap();
    let mut policy = retry_policy();
    set_path(
        &mut policy,
        "retry-options",
        json!({"order-service": {"budget": {"retry-ratio": 0.5, "min-retries-per-second": 0}}}),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let order = &services.order;
    order.set_default(Action::status(500));
    // order-service: 2 attempts. With 0.5 retries per request, the 2nd and 4th requests may
    // retry (1 ≤ 0.5·2, 2 ≤ 0.5·4); the 1st and 3rd may not.
    for _ in 0..4 {
        assert_eq!(envoy.get(ORDER, "/orders").unwrap().status, 500);
    }
    assert_eq!(order.count(), 6);
    assert_eq!(
        retry_stat(&envoy, "budget_exhausted", "order-service", 2),
        2
    );
    assert_eq!(retry_stat(&envoy, "attempts", "order-service", 2), 2);
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_replay_slower_than_the_per_try_timeout_is_a_failed_attempt() {
    let services = Services::start().unwrap();
    let mut policy = retry_policy();
    set_path(
        &mut policy,
        "retry-options",
        json!({"user-service": {"per-try-timeout": "300ms"}}),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;
    user.push(Action::status(500));
    user.push(Action::delay(3000, 200));
    user.push(Action::respond(200, "third"));
    let started = std::time::Instant::now();
    let response = envoy.get(USER, "/users/1").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "third");
    assert_eq!(user.count(), 3);
    // 2 waits of 200 ms + one 300 ms timeout, far below the slow attempt's 3 s.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        started.elapsed()
    );
    envoy.filter_crashes().unwrap();
}

#[test]
fn exponential_backoff_grows_the_waits() {
    let services = Services::start().unwrap();
    let mut policy = retry_policy();
    set_path(
        &mut policy,
        &format!("{RETRY}.user-service"),
        json!({"max-attempts": 4, "wait-duration": "150ms", "enable-exponential-backoff": true, "exponential-backoff-multiplier": 2}),
    );
    // Keep the breaker out of the way: 3 failures would not open it anyway (minimum 5).
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;
    user.push_n(3, Action::status(503));
    assert_eq!(envoy.get(USER, "/users/1").unwrap().status, 200);
    let gaps = gaps(user);
    assert_eq!(gaps.len(), 3);
    for (gap, expected) in gaps.iter().zip([150, 300, 600]) {
        assert_waited_about(*gap, expected);
    }
    assert!(gaps[2] > gaps[0], "{gaps:?}");
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_wait_of_zero_retries_at_once() {
    let services = Services::start().unwrap();
    let mut policy = retry_policy();
    set_path(
        &mut policy,
        &format!("{RETRY}.user-service.wait-duration"),
        json!(0),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;
    user.push(Action::status(503));
    user.push(Action::status(502));
    let response = envoy.get(USER, "/users/1").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(user.count(), 3);
    for gap in gaps(user) {
        assert!(gap < Duration::from_millis(150), "no wait, yet {gap:?}");
    }
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_breaker_opened_by_the_first_attempt_refuses_an_immediate_retry() {
    let services = Services::start().unwrap();
    let mut policy = retry_policy();
    set_path(
        &mut policy,
        &format!("{RETRY}.user-service.wait-duration"),
        json!(0),
    );
    set_path(
        &mut policy,
        &format!("{CB}.user-service.minimum-number-of-calls"),
        json!(1),
    );
    set_path(
        &mut policy,
        &format!("{CB}.user-service.sliding-window-size"),
        json!(1),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;
    user.set_default(Action::status(500));
    let response = envoy.get(USER, "/users/1").unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.json().unwrap()["state"], "OPEN");
    assert_eq!(user.count(), 1);
    assert_eq!(
        envoy.counter(
            "resilience4j_circuitbreaker_not_permitted_calls_total",
            &[("name", "user-service"), ("kind", "not_permitted")],
            1
        ),
        1
    );
    envoy.filter_crashes().unwrap();
}

/// Envoy's `wasm:trace` lines after `mark`: (milliseconds of the day, thread, the call).
fn traced(envoy: &Envoy, mark: usize) -> Vec<(u64, String, String)> {
    envoy
        .log_since(mark)
        .lines()
        .filter_map(|line| {
            // [2026-12-01 15:52:23.774][9675][trace][wasm] [source...] [host->vm] proxy_on_tick(1)
            let mut fields = line.split(']');
            let time = fields.next()?.rsplit(' ').next()?;
            let thread = fields.next()?.trim_start_matches('[').to_string();
            let call = line.rsplit("] ").next()?.to_string();
            let mut hms = time.split([':', '.']).map(|n| n.parse::<u64>().ok());
            let (h, m, s, ms) = (hms.next()??, hms.next()??, hms.next()??, hms.next()??);
            Some((((h * 60 + m) * 60 + s) * 1000 + ms, thread, call))
        })
        .collect()
}

/// `proxy_on_tick` calls traced after `mark`, by thread (the main thread's root, each worker's).
fn ticks_by_thread(envoy: &Envoy, mark: usize) -> std::collections::BTreeMap<String, usize> {
    let mut ticks = std::collections::BTreeMap::new();
    for (_, thread, call) in traced(envoy, mark) {
        if call.starts_with("proxy_on_tick(") {
            *ticks.entry(thread).or_insert(0) += 1;
        }
    }
    ticks
}

/// How long after the first attempt's response reached the filter (the wait begins) its
/// worker's next tick came.
fn first_tick_after_the_response(envoy: &Envoy, mark: usize) -> u64 {
    let trace = traced(envoy, mark);
    let (at, thread) = trace
        .iter()
        .find(|(_, _, call)| call.starts_with("proxy_on_response_headers("))
        .map(|(at, thread, _)| (*at, thread.clone()))
        .expect("the first response traced");
    let tick = trace
        .iter()
        .find(|(t, th, call)| *t >= at && *th == thread && call.starts_with("proxy_on_tick("))
        .map(|(t, _, _)| *t)
        .expect("a tick on that worker");
    tick - at
}

#[test]
fn an_idle_worker_ticks_slowly_and_a_retry_wait_speeds_its_tick_up() {
    let services = Services::start().unwrap();
    let mut policy = retry_policy();
    // Three calls that fail once each must not open user-service's breaker.
    set_path(
        &mut policy,
        &format!("{CB}.user-service.minimum-number-of-calls"),
        json!(100),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    envoy.admin_post("/logging?wasm=trace").unwrap();
    // Idle: every root ticks at the idle period (100 ms), not every 10 ms.
    let mark = envoy.log_mark();
    std::thread::sleep(Duration::from_secs(1));
    let idle = ticks_by_thread(&envoy, mark);
    assert_eq!(
        idle.len(),
        3,
        "the main thread and both workers tick: {idle:?}"
    );
    assert!(
        idle.values().all(|&n| (3..=20).contains(&n)),
        "about 10 ticks a second each, idle: {idle:?}"
    );

    // A retry wait (200 ms) begins on an idle worker: its tick comes within about 10 ms, not
    // up to the idle period later, and keeps coming every 10 ms until the replay. Three calls:
    // an idle tick would come that soon 4 times in 10 by chance.
    let user = &services.user;
    for call in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        user.push(Action::respond(503, "attempt 1"));
        user.push(Action::respond(200, "attempt 2"));
        let mark = envoy.log_mark();
        let response = envoy.get(USER, "/users/7").unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(user.count(), 2 * (call + 1));
        assert_waited_about(gaps(user)[2 * call], 200);
        let first = first_tick_after_the_response(&envoy, mark);
        assert!(
            first <= 40,
            "call {call}: the worker's next tick came {first} ms after the wait began"
        );
        let busiest = ticks_by_thread(&envoy, mark)
            .into_values()
            .max()
            .unwrap_or(0);
        assert!(
            busiest >= 8,
            "call {call}: {busiest} ticks during a 200 ms wait"
        );
    }

    // Nothing waits any more: back to the idle period.
    std::thread::sleep(Duration::from_millis(300));
    let mark = envoy.log_mark();
    std::thread::sleep(Duration::from_secs(1));
    let after = ticks_by_thread(&envoy, mark);
    assert!(
        after.values().all(|&n| n <= 20),
        "idle again after the calls: {after:?}"
    );
    envoy.filter_crashes().unwrap();
}
