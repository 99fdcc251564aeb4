//! Bulkheads and rate limiters in a real Envoy (`--concurrency 2`, two workers sharing one
//! limit): exactly the permitted calls reach the upstream, refusals are local answers the
//! breaker does not record (and Retry retries only a replay's, only when its retry-exceptions
//! name it), waiting calls pause and go on, and no
//! slot leaks through client aborts or policy swaps. Replays (retries) take a permit and a slot
//! of their own, as every attempt passes through the instance's modules.

// Test helpers outside #[test] fns may unwrap too: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

const BULKHEAD: &str = "resilience4j.bulkhead.instances.user-service";
const POOL: &str = "resilience4j.thread-pool-bulkhead.instances.user-service";
const LIMITER: &str = "resilience4j.ratelimiter.instances.user-service";

/// The seed policy (user-service: breaker and 3-attempt retry) plus `props` at `module`.
fn policy(module: &str, props: Value) -> Value {
    policy_with(module, props)
}

/// `n` concurrent GETs to user-service, each on its own connection (spread over both workers).
fn concurrent_gets(port: u16, n: usize) -> Vec<Response> {
    let handles: Vec<_> = (0..n)
        .map(|i| thread::spawn(move || get(port, USER, &format!("/users/{i}")).unwrap()))
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn statuses(responses: &[Response]) -> (usize, usize) {
    let ok = responses.iter().filter(|r| r.status == 200).count();
    let refused = responses
        .iter()
        .filter(|r| r.header("x-resilience4j-refused").is_some())
        .count();
    (ok, refused)
}

fn gauge(envoy: &Envoy, metric: &str) -> Option<u64> {
    envoy.stat(&stat_name(metric, &[("name", "user-service")]))
}

/// Waits until the gauge reads `value` (published on the tick, each second). Well below the
/// lease (10 s) that would free a dead worker's slots: a slot back by then was given back.
fn wait_for_gauge(envoy: &Envoy, metric: &str, value: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        if gauge(envoy, metric) == Some(value) {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn n_plus_k_concurrent_slow_calls_exactly_n_reach_the_upstream() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(
        &services,
        &policy(BULKHEAD, json!({"max-concurrent-calls": 3})),
    )
    .unwrap();
    services.user.set_default(Action::delay(2500, 200));

    let responses = concurrent_gets(envoy.port(), 8);
    let (ok, refused) = statuses(&responses);
    assert_eq!(
        (ok, refused),
        (3, 5),
        "statuses: {:?}",
        responses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    // Refusals are not retried (the seed's retry has 3 attempts): exactly 3 arrivals.
    assert_eq!(services.user.count(), 3);
    let refusal = responses.iter().find(|r| r.status == 503).unwrap();
    assert_eq!(
        refusal.header("x-resilience4j-refused"),
        Some("user-service; module=bulkhead; kind=bulkhead-full")
    );
    let body = refusal.json().unwrap();
    assert_eq!(body["upstream"], "user-service");
    assert_eq!(body["module"], "bulkhead");
    // Not recorded by the breaker: no failed call, no rejected one.
    assert_eq!(
        envoy.counter(
            "resilience4j_circuitbreaker_calls_seconds_count",
            &[("name", "user-service"), ("kind", "failed")],
            0
        ),
        0
    );
    assert_eq!(
        envoy.counter(
            "resilience4j_circuitbreaker_calls_seconds_count",
            &[("name", "user-service"), ("kind", "successful")],
            3
        ),
        3
    );
    // Every slot is back: the next 3 go through.
    assert!(wait_for_gauge(
        &envoy,
        "resilience4j_bulkhead_available_concurrent_calls",
        3
    ));
    assert_eq!(
        gauge(&envoy, "resilience4j_bulkhead_max_allowed_concurrent_calls"),
        Some(3)
    );
    services.user.set_default(Action::delay(300, 200));
    let (ok, _) = statuses(&concurrent_gets(envoy.port(), 3));
    assert_eq!(ok, 3);
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_call_waits_up_to_max_wait_duration_for_a_slot() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(
        &services,
        &policy(
            BULKHEAD,
            json!({"max-concurrent-calls": 1, "max-wait-duration": "4s"}),
        ),
    )
    .unwrap();
    services.user.set_default(Action::delay(500, 200));
    let responses = concurrent_gets(envoy.port(), 3);
    assert_eq!(statuses(&responses), (3, 0));
    // One at a time: arrivals at least ~one call apart.
    let received = services.user.requests();
    assert_eq!(received.len(), 3);
    for pair in received.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= Duration::from_millis(400),
            "gap {gap:?}: calls overlapped"
        );
    }
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_thread_pool_bulkhead_runs_max_size_and_queues_capacity() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(
        &services,
        &policy(
            POOL,
            json!({"max-thread-pool-size": 2, "queue-capacity": 1, "core-thread-pool-size": 1}),
        ),
    )
    .unwrap();
    services.user.set_default(Action::delay(1500, 200));
    let responses = concurrent_gets(envoy.port(), 6);
    let (ok, refused) = statuses(&responses);
    // 2 run, 1 waits and runs after, 3 refused.
    assert_eq!((ok, refused), (3, 3));
    assert_eq!(services.user.count(), 3);
    let refusal = responses.iter().find(|r| r.status == 503).unwrap();
    assert_eq!(
        refusal.header("x-resilience4j-refused"),
        Some("user-service; module=thread-pool-bulkhead; kind=bulkhead-full")
    );
    assert!(wait_for_gauge(
        &envoy,
        "resilience4j_bulkhead_available_thread_count",
        2
    ));
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_burst_across_workers_gets_exactly_limit_for_period_permits() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(
        &services,
        &policy(
            LIMITER,
            json!({"limit-for-period": 4, "limit-refresh-period": "60s", "timeout-duration": 0}),
        ),
    )
    .unwrap();
    let responses = concurrent_gets(envoy.port(), 10);
    let (ok, refused) = statuses(&responses);
    assert_eq!((ok, refused), (4, 6));
    assert_eq!(services.user.count(), 4);
    let refusal = responses.iter().find(|r| r.status == 429).unwrap();
    let retry_after: u64 = refusal.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "retry-after {retry_after}");
    assert_eq!(refusal.json().unwrap()["module"], "ratelimiter");
    // A second burst in the same period: nothing more.
    let (ok, _) = statuses(&concurrent_gets(envoy.port(), 4));
    assert_eq!(ok, 0);
    assert_eq!(services.user.count(), 4);
    assert!(wait_for_gauge(
        &envoy,
        "resilience4j_ratelimiter_available_permissions",
        0
    ));
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_call_waits_for_the_next_cycle_within_its_timeout() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(
        &services,
        &policy(
            LIMITER,
            json!({"limit-for-period": 1, "limit-refresh-period": "1s", "timeout-duration": "5s"}),
        ),
    )
    .unwrap();
    let responses = concurrent_gets(envoy.port(), 3);
    assert_eq!(statuses(&responses), (3, 0));
    let received = services.user.requests();
    let first = received[0].at;
    let last = received[2].at;
    assert!(
        last.duration_since(first) >= Duration::from_millis(1000),
        "3 permits at 1 per second came within {:?}",
        last.duration_since(first)
    );
    envoy.filter_crashes().unwrap();
}

/// Sends a request on a raw connection and goes away before the answer.
fn abort_after(port: u16, path: &str, after: Duration) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {USER}\r\n\r\n").unwrap();
    thread::sleep(after);
    drop(stream);
}

#[test]
fn aborted_clients_never_leak_a_slot() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(
        &services,
        &policy(
            BULKHEAD,
            json!({"max-concurrent-calls": 2, "max-wait-duration": "3s"}),
        ),
    )
    .unwrap();
    services.user.set_default(Action::delay(1000, 200));
    let port = envoy.port();
    // Holders and waiters go away, over and over, from both workers.
    let aborts: Vec<_> = (0..12)
        .map(|i| {
            thread::spawn(move || {
                abort_after(
                    port,
                    &format!("/abort/{i}"),
                    Duration::from_millis(200 + 50 * (i % 4)),
                )
            })
        })
        .collect();
    for a in aborts {
        a.join().unwrap();
    }
    assert!(
        wait_for_gauge(
            &envoy,
            "resilience4j_bulkhead_available_concurrent_calls",
            2
        ),
        "slots leaked: available {:?}",
        gauge(&envoy, "resilience4j_bulkhead_available_concurrent_calls")
    );
    services.user.set_default(Action::delay(200, 200));
    let (ok, _) = statuses(&concurrent_gets(port, 2));
    assert_eq!(ok, 2);
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_policy_swap_while_slots_are_held_keeps_the_count_right() {
    let services = Services::start().unwrap();
    let mut envoy = Envoy::start(
        &services,
        &policy(BULKHEAD, json!({"max-concurrent-calls": 2})),
    )
    .unwrap();
    services.user.set_default(Action::delay(2500, 200));
    let port = envoy.port();
    let held: Vec<_> = (0..2)
        .map(|i| thread::spawn(move || get(port, USER, &format!("/held/{i}")).unwrap()))
        .collect();
    assert!(services.user.wait_for_count(2, Duration::from_secs(5)));
    // Another limit while both slots are held: they still count against it.
    let update = envoy
        .set_policy(&policy(BULKHEAD, json!({"max-concurrent-calls": 3})))
        .unwrap();
    assert_eq!(update, PolicyUpdate::Applied);
    let (ok, refused) = statuses(&concurrent_gets(port, 3));
    // Those three arrive while the two are held (2.5 s): one slot left.
    assert_eq!((ok, refused), (1, 2));
    for h in held {
        assert_eq!(h.join().unwrap().status, 200);
    }
    // Given back by the old policy's streams: all 3 free under the new one.
    assert!(wait_for_gauge(
        &envoy,
        "resilience4j_bulkhead_available_concurrent_calls",
        3
    ));
    services.user.set_default(Action::delay(300, 200));
    let (ok, _) = statuses(&concurrent_gets(port, 3));
    assert_eq!(ok, 3);
    envoy.filter_crashes().unwrap();
}

// ---- every attempt passes through the rate limiter and the bulkhead ----

const RETRY: &str = "resilience4j.retry.instances.user-service";

/// `policy(module, props)` with user-service's retry properties set too.
fn retrying_policy(module: &str, props: Value, retry: &[(&str, Value)]) -> Value {
    let mut doc = policy(module, props);
    for (key, value) in retry {
        set_path(&mut doc, &format!("{RETRY}.{key}"), value.clone());
    }
    doc
}

#[test]
fn a_replay_waits_for_a_bulkhead_slot_another_call_holds() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(
        &services,
        &retrying_policy(
            BULKHEAD,
            json!({"max-concurrent-calls": 1, "max-wait-duration": "20s"}),
            &[("wait-duration", json!("3s"))],
        ),
    )
    .unwrap();
    let port = envoy.port();
    // The first attempt fails at once; everything after it is slow.
    services.user.push(Action::status(503));
    services.user.set_default(Action::delay(1500, 200));
    let first = thread::spawn(move || get(port, USER, "/retried").unwrap());
    assert!(services.user.wait_for_count(1, Duration::from_secs(10)));
    // The first attempt's slot is back (it is retried): another call takes it during the wait.
    let other = thread::spawn(move || get(port, USER, "/other").unwrap());
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(other.join().unwrap().status, 200);
    let received = services.user.requests();
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    // The other call went during the retry's wait (a slot held through the wait would have
    // kept it out until the replay's answer); the replay waited for the slot it held.
    assert_eq!(paths, ["/retried", "/other", "/retried"]);
    let gap = received[2].at.duration_since(received[1].at);
    assert!(
        gap >= Duration::from_millis(1400),
        "gap {gap:?}: the replay did not wait for the slot"
    );
    assert!(wait_for_gauge(
        &envoy,
        "resilience4j_bulkhead_available_concurrent_calls",
        1
    ));
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_replay_refused_by_a_full_bulkhead_is_answered_with_the_refusal() {
    let services = Services::start().unwrap();
    // 3 attempts, 3 s apart; bulkhead-full is not in its retry-exceptions. A call may wait
    // 300 ms for the slot: the holder, should it come before the first attempt's response has
    // given the slot back; the replay, in vain (its wait ends 1.2 s before the holder's call).
    // A refusal wrongly retried would reach the upstream after the holder's call ended.
    let envoy = Envoy::start(
        &services,
        &retrying_policy(
            BULKHEAD,
            json!({"max-concurrent-calls": 1, "max-wait-duration": "300ms"}),
            &[("wait-duration", json!("3s"))],
        ),
    )
    .unwrap();
    let port = envoy.port();
    services.user.push(Action::status(503));
    // Under the route's 5 s timeout.
    services.user.set_default(Action::delay(4500, 200));
    let first = thread::spawn(move || get(port, USER, "/retried").unwrap());
    assert!(services.user.wait_for_count(1, Duration::from_secs(10)));
    // Takes the slot the first attempt gave back, and holds it past the retry's wait.
    let holder = thread::spawn(move || get(port, USER, "/holder").unwrap());
    assert!(services.user.wait_for_count(2, Duration::from_secs(10)));
    let refused = first.join().unwrap();
    // What the upstream saw, with arrival times after the first attempt's; and any shared
    // state the filter could not use (it would fail open).
    let received = services.user.requests();
    let arrivals: Vec<String> = received
        .iter()
        .map(|r| format!("{} at {:?}", r.path, r.at.duration_since(received[0].at)))
        .collect();
    let log = envoy.log();
    let failed_open: Vec<&str> = log.lines().filter(|l| l.contains("failing open")).collect();
    assert!(failed_open.is_empty(), "{failed_open:?}");
    assert_eq!(refused.status, 503, "upstream saw {arrivals:?}");
    assert_eq!(
        refused.header("x-resilience4j-refused"),
        Some("user-service; module=bulkhead; kind=bulkhead-full")
    );
    assert_eq!(holder.join().unwrap().status, 200);
    // The replay never reached the upstream, and nothing tried again.
    assert_eq!(services.user.count(), 2);
    // The breaker recorded the first attempt's 503 and the holder's 200, not the refusal.
    let calls = |kind: &str, expected: u64| {
        envoy.counter(
            "resilience4j_circuitbreaker_calls_seconds_count",
            &[("name", "user-service"), ("kind", kind)],
            expected,
        )
    };
    assert_eq!(calls("successful", 1), 1);
    assert_eq!(calls("failed", 1), 1);
    // Retry counts the request as failed after a retry.
    let retry_failed = envoy.counter(
        "resilience4j_retry_calls_total",
        &[("name", "user-service"), ("kind", "failed_with_retry")],
        1,
    );
    assert_eq!(retry_failed, 1);
    assert!(wait_for_gauge(
        &envoy,
        "resilience4j_bulkhead_available_concurrent_calls",
        1
    ));
    envoy.filter_crashes().unwrap();
}

#[test]
fn replays_take_rate_limiter_permits() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(
        &services,
        &retrying_policy(
            LIMITER,
            json!({"limit-for-period": 3, "limit-refresh-period": "120s", "timeout-duration": 0}),
            &[("wait-duration", json!("200ms"))],
        ),
    )
    .unwrap();
    services.user.set_default(Action::status(503));
    // Three attempts (the first and two replays) take the period's three permits.
    let response = get(envoy.port(), USER, "/users/1").unwrap();
    assert_eq!(response.status, 503);
    assert!(response.header("x-resilience4j-refused").is_none());
    assert_eq!(services.user.count(), 3);
    // None left for the next request.
    let refused = get(envoy.port(), USER, "/users/2").unwrap();
    assert_eq!(refused.status, 429);
    assert_eq!(services.user.count(), 3);
    assert!(wait_for_gauge(
        &envoy,
        "resilience4j_ratelimiter_available_permissions",
        0
    ));
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_replay_waits_for_a_permit_of_the_next_period() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(
        &services,
        &retrying_policy(
            LIMITER,
            json!({"limit-for-period": 1, "limit-refresh-period": "1500ms", "timeout-duration": "10s"}),
            &[("wait-duration", json!("100ms"))],
        ),
    )
    .unwrap();
    services.user.push(Action::status(503));
    let response = get(envoy.port(), USER, "/users/1").unwrap();
    assert_eq!(response.status, 200);
    let received = services.user.requests();
    assert_eq!(received.len(), 2);
    // One permit per period: the replay (due 100 ms after the first attempt) waited for the
    // next period's.
    let gap = received[1].at.duration_since(received[0].at);
    assert!(gap >= Duration::from_millis(1000), "replay after {gap:?}");
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_replay_the_rate_limiter_refuses_is_answered_429_unless_retry_exceptions_name_it() {
    let services = Services::start().unwrap();
    let limiter =
        json!({"limit-for-period": 2, "limit-refresh-period": "4s", "timeout-duration": 0});
    // Not named: the second replay is refused (no third permit in the period) and answered.
    let envoy = Envoy::start(
        &services,
        &retrying_policy(
            LIMITER,
            limiter.clone(),
            &[("wait-duration", json!("200ms"))],
        ),
    )
    .unwrap();
    services.user.set_default(Action::status(503));
    let refused = get(envoy.port(), USER, "/users/1").unwrap();
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.header("x-resilience4j-refused"),
        Some("user-service; module=ratelimiter; kind=rate-limited")
    );
    assert!(refused.header("retry-after").is_some());
    assert_eq!(services.user.count(), 2);
    envoy.filter_crashes().unwrap();
    drop(envoy);

    // Named in retry-exceptions: refused in the first period, retried after the wait until a
    // permit of the next period lets it through.
    let services = Services::start().unwrap();
    let envoy = Envoy::start(
        &services,
        &retrying_policy(
            LIMITER,
            limiter,
            &[
                ("wait-duration", json!("1500ms")),
                ("max-attempts", json!(6)),
                (
                    "retry-exceptions",
                    json!([
                        "5xx",
                        "io.github.resilience4j.ratelimiter.RequestNotPermitted"
                    ]),
                ),
            ],
        ),
    )
    .unwrap();
    services.user.push_n(2, Action::status(503));
    let response = get(envoy.port(), USER, "/users/1").unwrap();
    assert_eq!(response.status, 200, "{:?}", response.text());
    let received = services.user.requests();
    assert_eq!(received.len(), 3);
    // Two permits per period: the third attempt that reached the upstream came in a later one.
    let spread = received[2].at.duration_since(received[0].at);
    assert!(
        spread >= Duration::from_millis(3900),
        "third call after {spread:?}"
    );
    envoy.filter_crashes().unwrap();
}

#[test]
fn refusals_retried_with_a_wait_of_zero_end_within_max_attempts() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(
        &services,
        &retrying_policy(
            LIMITER,
            json!({"limit-for-period": 1, "limit-refresh-period": "120s", "timeout-duration": 0}),
            &[
                ("wait-duration", json!(0)),
                ("max-attempts", json!(40)),
                (
                    "retry-exceptions",
                    json!([
                        "5xx",
                        "io.github.resilience4j.ratelimiter.RequestNotPermitted"
                    ]),
                ),
            ],
        ),
    )
    .unwrap();
    services.user.set_default(Action::status(503));
    // The first attempt takes the period's only permit; every replay is refused, retried on a
    // later tick each, until max-attempts (or the retry budget) ends it with the refusal.
    let refused = get(envoy.port(), USER, "/users/1").unwrap();
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.header("x-resilience4j-refused"),
        Some("user-service; module=ratelimiter; kind=rate-limited")
    );
    assert_eq!(services.user.count(), 1);
    // Envoy is still answering at once: nothing spins.
    let next = get(envoy.port(), USER, "/users/2").unwrap();
    assert_eq!(next.status, 429);
    envoy.filter_crashes().unwrap();
}

#[test]
fn clients_aborting_during_retry_waits_and_replays_never_leak_a_slot() {
    let services = Services::start().unwrap();
    let mut doc = retrying_policy(
        BULKHEAD,
        json!({"max-concurrent-calls": 2, "max-wait-duration": "3s"}),
        &[
            ("wait-duration", json!("300ms")),
            ("max-attempts", json!(5)),
        ],
    );
    // No breaker: the failures below may open it, and only the slots are looked at here.
    remove_path(
        &mut doc,
        "resilience4j.circuitbreaker.instances.user-service",
    );
    let envoy = Envoy::start(&services, &doc).unwrap();
    // Every attempt takes 400 ms and fails: clients go away during first attempts, retry waits,
    // replays waiting for a slot and replays in flight.
    services.user.set_default(Action::delay(400, 503));
    let port = envoy.port();
    let aborts: Vec<_> = (0..12)
        .map(|i| {
            thread::spawn(move || {
                abort_after(
                    port,
                    &format!("/abort/{i}"),
                    Duration::from_millis(200 + 150 * (i % 8)),
                )
            })
        })
        .collect();
    for a in aborts {
        a.join().unwrap();
    }
    assert!(
        services.user.count() > 2,
        "replays went out: {}",
        services.user.count()
    );
    assert!(
        wait_for_gauge(
            &envoy,
            "resilience4j_bulkhead_available_concurrent_calls",
            2
        ),
        "slots leaked: available {:?}",
        gauge(&envoy, "resilience4j_bulkhead_available_concurrent_calls")
    );
    services.user.set_default(Action::delay(200, 200));
    let (ok, _) = statuses(&concurrent_gets(port, 2));
    assert_eq!(ok, 2);
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_policy_swap_while_a_replay_holds_a_slot_keeps_the_count_right() {
    let services = Services::start().unwrap();
    let retry = [("wait-duration", json!("300ms"))];
    let mut envoy = Envoy::start(
        &services,
        &retrying_policy(BULKHEAD, json!({"max-concurrent-calls": 1}), &retry),
    )
    .unwrap();
    let port = envoy.port();
    services.user.push(Action::status(503));
    services.user.set_default(Action::delay(3500, 200));
    let retried = thread::spawn(move || get(port, USER, "/retried").unwrap());
    // The replay went out and holds the slot.
    assert!(services.user.wait_for_count(2, Duration::from_secs(10)));
    let update = envoy
        .set_policy(&retrying_policy(
            BULKHEAD,
            json!({"max-concurrent-calls": 2}),
            &retry,
        ))
        .unwrap();
    assert_eq!(update, PolicyUpdate::Applied);
    // The replay's slot counts against the new limit: one of two more calls gets the other.
    let (ok, refused) = statuses(&concurrent_gets(port, 2));
    assert_eq!((ok, refused), (1, 1));
    assert_eq!(retried.join().unwrap().status, 200);
    // Given back by the old policy's handle: both free under the new one.
    assert!(wait_for_gauge(
        &envoy,
        "resilience4j_bulkhead_available_concurrent_calls",
        2
    ));
    services.user.set_default(Action::delay(300, 200));
    let (ok, _) = statuses(&concurrent_gets(port, 2));
    assert_eq!(ok, 2);
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_replay_whose_caller_went_away_keeps_its_slot_until_its_answer() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(
        &services,
        &retrying_policy(
            BULKHEAD,
            json!({"max-concurrent-calls": 1}),
            &[("wait-duration", json!("200ms"))],
        ),
    )
    .unwrap();
    let port = envoy.port();
    services.user.push(Action::status(503));
    services.user.set_default(Action::delay(2500, 200));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut caller = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    write!(caller, "GET /orphan HTTP/1.1\r\nhost: {USER}\r\n\r\n").unwrap();
    // The replay reached the upstream; its caller goes away.
    assert!(services.user.wait_for_count(2, Duration::from_secs(10)));
    drop(caller);
    thread::sleep(Duration::from_millis(300));
    // The upstream still serves the replay (a callout is not cancelled): its slot is taken.
    let refused = get(port, USER, "/refused").unwrap();
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.header("x-resilience4j-refused"),
        Some("user-service; module=bulkhead; kind=bulkhead-full")
    );
    assert_eq!(services.user.count(), 2);
    // Its answer (within 2.5 s) gives the slot back; the gauge follows within a second.
    thread::sleep(Duration::from_millis(2500));
    assert!(wait_for_gauge(
        &envoy,
        "resilience4j_bulkhead_available_concurrent_calls",
        1
    ));
    services.user.set_default(Action::delay(100, 200));
    assert_eq!(get(port, USER, "/after").unwrap().status, 200);
    envoy.filter_crashes().unwrap();
}
