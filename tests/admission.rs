//! Bulkheads and rate limiters in a real Envoy (`--concurrency 2`, two workers sharing one
//! limit): exactly the permitted calls reach the upstream, refusals are local answers the
//! breaker does not record and Retry does not retry, waiting calls pause and go on, and no
//! slot leaks through client aborts or policy swaps.

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
