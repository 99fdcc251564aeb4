//! The circuit breaker in a real Envoy (`--concurrency 2`), on the seed policy with the open
//! wait shortened: opening, fallbacks that never reach the upstream, half-open trials, closing
//! and re-opening, independent instances, Istio cluster names, one window across workers.

// Test helpers outside #[test] fns may unwrap too: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use harness::*;
use serde_json::{json, Value};

const CB: &str = "resilience4j.circuitbreaker.instances";

/// The seed's breakers without its retries (retries are tested in retry.rs), with the open
/// wait shortened and two trial calls in HALF_OPEN.
fn breaker_policy() -> Value {
    let mut policy = seed_policy();
    remove_path(&mut policy, "resilience4j.retry");
    set_path(
        &mut policy,
        &format!("{CB}.user-service.wait-duration-in-open-state"),
        json!("1s"),
    );
    set_path(
        &mut policy,
        &format!("{CB}.user-service.permitted-number-of-calls-in-half-open-state"),
        json!(2),
    );
    set_path(
        &mut policy,
        &format!("{CB}.order-service.wait-duration-in-open-state"),
        json!("1s"),
    );
    policy
}

/// [`breaker_policy`] with order-service's breaker replaced by `breaker`.
fn with_order_service(breaker: Value) -> Value {
    let mut policy = breaker_policy();
    set_path(&mut policy, &format!("{CB}.order-service"), breaker);
    policy
}

/// A calls counter of the instance once it reads `expected` (the filter flushes counters on
/// its tick: `Envoy::counter`); the value last read.
fn calls(envoy: &Envoy, instance: &str, kind: &str, expected: u64) -> u64 {
    if kind == "not_permitted" {
        return envoy.counter(
            "resilience4j_circuitbreaker_not_permitted_calls_total",
            &[("name", instance), ("kind", kind)],
            expected,
        );
    }
    envoy.counter(
        "resilience4j_circuitbreaker_calls_seconds_count",
        &[("name", instance), ("kind", kind)],
        expected,
    )
}

fn state_is(envoy: &Envoy, instance: &str, state: &str) -> bool {
    envoy.metric(
        "resilience4j_circuitbreaker_state",
        &[("name", instance), ("state", state)],
    ) == 1
}

fn transitions(envoy: &Envoy, instance: &str, from: &str, to: &str, expected: u64) -> u64 {
    envoy.counter(
        "resilience4j_circuitbreaker_transitions_total",
        &[("name", instance), ("from", from), ("to", to)],
        expected,
    )
}

/// The window's calls of one kind (gauge; follows on transitions and the filter's tick).
fn buffered(envoy: &Envoy, instance: &str, kind: &str) -> u64 {
    envoy.metric(
        "resilience4j_circuitbreaker_buffered_calls",
        &[("name", instance), ("kind", kind)],
    )
}

fn get_status(envoy: &Envoy, authority: &str) -> (u16, harness::Response) {
    let response = envoy
        .get(authority, "/users/42")
        .expect("request through envoy");
    (response.status, response)
}

#[test]
fn user_service_opens_serves_fallbacks_half_opens_closes_and_reopens() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &breaker_policy()).unwrap();
    let user = &services.user;

    // Four failures: below minimum-number-of-calls (5), the circuit stays CLOSED.
    user.push_n(5, Action::status(500));
    for _ in 0..4 {
        assert_eq!(get_status(&envoy, USER).0, 500);
    }
    assert!(state_is(&envoy, "user-service", "closed"));
    // The fifth: 5 calls, 100 % failed ≥ 50 % → OPEN.
    assert_eq!(get_status(&envoy, USER).0, 500);
    assert!(
        state_is(&envoy, "user-service", "open"),
        "{:?}",
        envoy.stats()
    );
    assert_eq!(calls(&envoy, "user-service", "failed", 5), 5);
    assert_eq!(transitions(&envoy, "user-service", "closed", "open", 1), 1);
    assert_eq!(user.count(), 5);
    // The same figures as Prometheus labels, named like resilience4j's Micrometer metrics.
    let prometheus = envoy.admin_get("/stats/prometheus").unwrap();
    for line in [
        r#"resilience4j_circuitbreaker_calls_seconds_count{name="user-service",kind="failed"} 5"#,
        r#"resilience4j_circuitbreaker_state{name="user-service",state="open"} 1"#,
        r#"resilience4j_circuitbreaker_failure_rate{name="user-service"} 100"#,
    ] {
        assert!(
            prometheus.lines().any(|l| l == line),
            "{line} missing from /stats/prometheus"
        );
    }

    // OPEN: the fallback at once, naming upstream and state, and the upstream sees nothing.
    for _ in 0..3 {
        let (status, response) = get_status(&envoy, USER);
        assert_eq!(status, 503);
        let body = response.json().unwrap();
        assert_eq!(body["upstream"], "user-service");
        assert_eq!(body["state"], "OPEN");
        assert_eq!(response.header("retry-after"), Some("1"));
        assert_eq!(
            response.header("x-circuit-breaker"),
            Some("user-service; state=OPEN")
        );
    }
    assert_eq!(
        user.count(),
        5,
        "no call reaches an open circuit's upstream"
    );
    assert_eq!(calls(&envoy, "user-service", "not_permitted", 3), 3);

    // After the wait: HALF_OPEN lets exactly the permitted 2 trial calls through. Four callers
    // at once while the trials are slow: two reach the upstream, two get the fallback.
    thread::sleep(Duration::from_millis(1100));
    user.push_n(2, Action::delay(400, 200));
    let port = envoy.port();
    let callers: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(i * 50));
                get(port, USER, "/users/42").map(|r| r.status)
            })
        })
        .collect();
    let mut statuses: Vec<u16> = callers
        .into_iter()
        .map(|c| c.join().unwrap().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 503, 503]);
    assert_eq!(user.count(), 7);
    // Two successes of two trials: 0 % < 50 % → CLOSED.
    assert!(
        state_is(&envoy, "user-service", "closed"),
        "{:?}",
        envoy.stats()
    );
    assert_eq!(
        transitions(&envoy, "user-service", "open", "half_open", 1),
        1
    );
    assert_eq!(
        transitions(&envoy, "user-service", "half_open", "closed", 1),
        1
    );
    assert_eq!(get_status(&envoy, USER).0, 200);

    // Open it again (the fresh window holds that success: 4 of 5 failed), then fail the
    // trials: HALF_OPEN → OPEN.
    user.push_n(4, Action::status(503));
    for _ in 0..4 {
        assert_eq!(get_status(&envoy, USER).0, 503);
    }
    assert!(state_is(&envoy, "user-service", "open"));
    assert_eq!(user.count(), 12);
    thread::sleep(Duration::from_millis(1100));
    user.push_n(2, Action::status(500));
    assert_eq!(get_status(&envoy, USER).0, 500);
    assert!(state_is(&envoy, "user-service", "half_open"));
    assert_eq!(get_status(&envoy, USER).0, 500);
    assert!(
        state_is(&envoy, "user-service", "open"),
        "{:?}",
        envoy.stats()
    );
    assert_eq!(
        transitions(&envoy, "user-service", "half_open", "open", 1),
        1
    );
    let before = user.count();
    assert_eq!(get_status(&envoy, USER).0, 503);
    assert_eq!(user.count(), before);
    envoy.filter_crashes().unwrap();
}

#[test]
fn order_service_follows_its_own_60_percent_window_of_8() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &breaker_policy()).unwrap();
    let order = &services.order;

    // minimum-number-of-calls defaults to 100, clamped to the window (8). 4 of 8 failed = 50 %.
    for status in [200, 500, 500, 500, 500, 200, 200, 200] {
        order.push(Action::status(status));
        assert_eq!(envoy.get(ORDER, "/orders").unwrap().status, status);
    }
    assert!(state_is(&envoy, "order-service", "closed"), "50 % < 60 %");
    // One more failure pushes the oldest success out: 5 of 8 = 62.5 % ≥ 60 % → OPEN.
    order.push(Action::status(500));
    assert_eq!(envoy.get(ORDER, "/orders").unwrap().status, 500);
    assert!(
        state_is(&envoy, "order-service", "open"),
        "{:?}",
        envoy.stats()
    );
    assert_eq!(envoy.get(ORDER, "/orders").unwrap().status, 503);
    assert_eq!(order.count(), 9);

    // user-service's circuit is another window: untouched, serving.
    assert!(state_is(&envoy, "user-service", "closed"));
    assert_eq!(envoy.get(USER, "/users/1").unwrap().status, 200);
    assert_eq!(calls(&envoy, "user-service", "successful", 1), 1);
    // 4xx are successes; a cluster with no instance passes through unguarded.
    services.payment.push_n(10, Action::status(500));
    for _ in 0..10 {
        assert_eq!(envoy.get(PAYMENT, "/pay").unwrap().status, 500);
    }
    assert_eq!(services.payment.count(), 10);
    envoy.filter_crashes().unwrap();
}

#[test]
fn istio_outbound_cluster_maps_to_its_instance() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &breaker_policy()).unwrap();

    // Failures through `outbound|8080||user-service.default.svc.cluster.local` count for the
    // `user-service` instance: one breaker guards the service under either name.
    services.istio_user.push_n(5, Action::status(502));
    for _ in 0..5 {
        assert_eq!(envoy.get(ISTIO_USER, "/users/1").unwrap().status, 502);
    }
    assert!(
        state_is(&envoy, "user-service", "open"),
        "{:?}",
        envoy.stats()
    );
    let response = envoy.get(ISTIO_USER, "/users/1").unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.json().unwrap()["upstream"], "user-service");
    assert_eq!(services.istio_user.count(), 5);
    assert_eq!(envoy.get(USER, "/users/1").unwrap().status, 503);
    assert_eq!(services.user.count(), 0);
    envoy.filter_crashes().unwrap();
}

#[test]
fn configured_fallback_and_record_lists_are_honoured() {
    let services = Services::start().unwrap();
    let mut policy = breaker_policy();
    set_path(
        &mut policy,
        "fallbacks",
        json!({"user-service": {
        "status": 200,
        "headers": {"content-type": "application/json", "x-fallback": "cached"},
        "body": {"id": "unknown", "name": "Guest"}}}),
    );
    // 429 counts as a failure, 503 is ignored (neither success nor failure).
    set_path(
        &mut policy,
        &format!("{CB}.user-service.record-exceptions"),
        json!(["5xx", "429"]),
    );
    set_path(
        &mut policy,
        &format!("{CB}.user-service.ignore-exceptions"),
        json!(["503"]),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;

    user.push_n(3, Action::status(503));
    for _ in 0..3 {
        assert_eq!(envoy.get(USER, "/u").unwrap().status, 503);
    }
    assert_eq!(calls(&envoy, "user-service", "ignored", 3), 3);
    assert!(state_is(&envoy, "user-service", "closed"));
    user.push_n(5, Action::status(429));
    for _ in 0..5 {
        assert_eq!(envoy.get(USER, "/u").unwrap().status, 429);
    }
    assert!(
        state_is(&envoy, "user-service", "open"),
        "{:?}",
        envoy.stats()
    );
    let response = envoy.get(USER, "/u").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-fallback"), Some("cached"));
    assert_eq!(
        response.json().unwrap(),
        json!({"id": "unknown", "name": "Guest"})
    );
    assert_eq!(user.count(), 8);
    envoy.filter_crashes().unwrap();
}

#[test]
fn connection_failures_and_timeouts_are_failures() {
    let services = Services::start().unwrap();
    let mut policy = breaker_policy();
    set_path(
        &mut policy,
        &format!("{CB}.user-service.slow-call-duration-threshold"),
        json!("300ms"),
    );
    set_path(
        &mut policy,
        &format!("{CB}.user-service.slow-call-rate-threshold"),
        json!(100),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;

    // Refused connections (Envoy flag UF), resets (UR/UC) and closes all count as failures.
    user.refuse();
    for _ in 0..2 {
        assert_eq!(envoy.get(USER, "/u").unwrap().status, 503);
    }
    user.accept().unwrap();
    user.push(Action::Reset);
    user.push(Action::Close);
    for _ in 0..2 {
        assert_eq!(envoy.get(USER, "/u").unwrap().status, 503);
    }
    assert_eq!(
        calls(&envoy, "user-service", "failed", 4),
        4,
        "{:?}",
        envoy.stats()
    );
    assert!(state_is(&envoy, "user-service", "closed"));
    // A slow success is recorded as a slow successful call (and one more call reaches the
    // minimum): a successful call for the calls timer, a slow one in the window.
    user.push(Action::delay(400, 200));
    assert_eq!(envoy.get(USER, "/u").unwrap().status, 200);
    assert_eq!(calls(&envoy, "user-service", "successful", 1), 1);
    assert_eq!(
        envoy.metric(
            "resilience4j_circuitbreaker_slow_calls",
            &[("name", "user-service"), ("kind", "successful")]
        ),
        1
    );
    assert!(
        state_is(&envoy, "user-service", "open"),
        "4 of 5 failed: {:?}",
        envoy.stats()
    );
    envoy.filter_crashes().unwrap();
}

#[test]
fn forced_states_from_policy() {
    let services = Services::start().unwrap();
    let mut policy = breaker_policy();
    set_path(
        &mut policy,
        &format!("{CB}.user-service.initial-state"),
        json!("FORCED_OPEN"),
    );
    set_path(
        &mut policy,
        &format!("{CB}.order-service.initial-state"),
        json!("DISABLED"),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();

    let response = envoy.get(USER, "/u").unwrap();
    assert_eq!(response.status, 503);
    assert_eq!(response.json().unwrap()["state"], "FORCED_OPEN");
    assert_eq!(response.header("retry-after"), None);
    assert_eq!(services.user.count(), 0);
    services.order.push_n(20, Action::status(500));
    for _ in 0..20 {
        assert_eq!(envoy.get(ORDER, "/o").unwrap().status, 500);
    }
    assert_eq!(services.order.count(), 20, "DISABLED never rejects");
    assert!(state_is(&envoy, "order-service", "disabled"));
    envoy.filter_crashes().unwrap();
}

/// Envoy's per-worker count of downstream connections on the listener.
fn connections_per_worker(envoy: &Envoy) -> Vec<u64> {
    let stats = envoy.stats().unwrap();
    (0..2)
        .map(|w| {
            stats
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("listener.127.0.0.1_")
                        && k.ends_with(&format!("worker_{w}.downstream_cx_total"))
                })
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum()
        })
        .collect()
}

#[test]
fn one_window_across_workers_records_exactly_what_the_upstream_received() {
    let services = Services::start().unwrap();
    // A window the load cannot trip: every call must be counted, none rejected.
    let policy =
        with_order_service(json!({"sliding-window-size": 1000, "failure-rate-threshold": 100}));
    let envoy = Arc::new(Envoy::start(&services, &policy).unwrap());
    services.order.set_default(Action::status(200));
    for _ in 0..100 {
        services.order.push(Action::status(500));
        services.order.push(Action::status(200));
    }
    let port = envoy.port();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                let mut failures = 0;
                for _ in 0..50 {
                    match get(port, ORDER, "/o") {
                        Ok(r) if r.status == 200 || r.status == 500 => {}
                        _ => failures += 1,
                    }
                }
                failures
            })
        })
        .collect();
    let failed: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(failed, 0);
    let received = services.order.count() as u64;
    assert_eq!(received, 400);
    assert_eq!(calls(&envoy, "order-service", "failed", 100), 100);
    // Settled above (a flush period after the last request): the other kinds are in too.
    let recorded: u64 = ["successful", "failed", "ignored"]
        .iter()
        .map(|k| {
            envoy.metric(
                "resilience4j_circuitbreaker_calls_seconds_count",
                &[("name", "order-service"), ("kind", k)],
            )
        })
        .sum();
    assert_eq!(
        recorded, received,
        "every call the upstream received is in the shared window"
    );
    let per_worker = connections_per_worker(&envoy);
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both workers carried load: {per_worker:?}"
    );
    // Window gauges follow on the filter's tick (about once a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let window = |envoy: &Envoy| {
        buffered(envoy, "order-service", "successful") + buffered(envoy, "order-service", "failed")
    };
    while window(&envoy) != 400 && std::time::Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(window(&envoy), 400);
    assert_eq!(buffered(&envoy, "order-service", "failed"), 100);
    envoy.filter_crashes().unwrap();
}

#[test]
fn breaker_opens_after_exactly_the_policy_calls_whichever_worker_carried_them() {
    let services = Services::start().unwrap();
    let policy = with_order_service(
        json!({"sliding-window-size": 20, "minimum-number-of-calls": 20, "failure-rate-threshold": 50, "wait-duration-in-open-state": "60s"}),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    services.order.set_default(Action::status(500));
    // Fresh connections: the kernel spreads them over both workers.
    for n in 1..=19 {
        assert_eq!(envoy.get(ORDER, "/o").unwrap().status, 500, "call {n}");
    }
    assert!(state_is(&envoy, "order-service", "closed"));
    assert_eq!(envoy.get(ORDER, "/o").unwrap().status, 500);
    assert!(state_is(&envoy, "order-service", "open"));
    for _ in 0..10 {
        assert_eq!(envoy.get(ORDER, "/o").unwrap().status, 503);
    }
    assert_eq!(services.order.count(), 20, "opened after exactly 20 calls");
    let per_worker = connections_per_worker(&envoy);
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both workers carried calls: {per_worker:?}"
    );
    envoy.filter_crashes().unwrap();
}

/// The request path's shortcuts (issue 13): a CLOSED permission read from the stored header,
/// and a fast success into a window full of fast successes left unwritten. Calls one at a
/// time over fresh connections (both workers): the successes beyond the window are still
/// counted, and the failures that follow open the circuit on exactly the call resilience4j's
/// window of 10 at 50 % says (the 5th), whichever worker served the calls before it.
#[test]
fn shortcuts_of_a_full_window_of_successes_keep_the_exact_window_across_workers() {
    let services = Services::start().unwrap();
    let policy = with_order_service(
        json!({"sliding-window-size": 10, "minimum-number-of-calls": 10, "failure-rate-threshold": 50, "wait-duration-in-open-state": "60s"}),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    services.order.set_default(Action::status(200));
    for n in 1..=15 {
        assert_eq!(envoy.get(ORDER, "/o").unwrap().status, 200, "success {n}");
    }
    assert_eq!(calls(&envoy, "order-service", "successful", 15), 15);
    services.order.set_default(Action::status(500));
    for n in 1..=4 {
        assert_eq!(envoy.get(ORDER, "/o").unwrap().status, 500, "failure {n}");
        assert!(
            state_is(&envoy, "order-service", "closed"),
            "after failure {n}"
        );
    }
    assert_eq!(envoy.get(ORDER, "/o").unwrap().status, 500);
    assert!(
        state_is(&envoy, "order-service", "open"),
        "opens on failure 5"
    );
    assert_eq!(envoy.get(ORDER, "/o").unwrap().status, 503);
    assert_eq!(services.order.count(), 20);
    assert_eq!(calls(&envoy, "order-service", "failed", 5), 5);
    let per_worker = connections_per_worker(&envoy);
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both workers carried calls: {per_worker:?}"
    );
    envoy.filter_crashes().unwrap();
}

/// Two kept-alive connections, one on each Envoy worker: (worker 0's, worker 1's).
fn connection_per_worker(envoy: &Envoy) -> (Connection, Connection) {
    let mut on: [Option<Connection>; 2] = [None, None];
    for _ in 0..50 {
        let before = connections_per_worker(envoy);
        let connection = Connection::open(envoy.port()).unwrap();
        // The worker's count moves once it accepted the connection.
        let worker = (0..100).find_map(|_| {
            let after = connections_per_worker(envoy);
            let moved = (0..2).find(|&w| after[w] > before[w]);
            if moved.is_none() {
                thread::sleep(Duration::from_millis(10));
            }
            moved
        });
        if let Some(w) = worker {
            if on[w].is_none() {
                on[w] = Some(connection);
            }
        }
        if on.iter().all(Option::is_some) {
            let [first, second] = on;
            return (first.unwrap(), second.unwrap());
        }
    }
    panic!(
        "50 connections, not both workers: {on:?}",
        on = on.map(|c| c.is_some())
    );
}

/// Issue 13's write count: a worker skips the shared-data read while the breaker's write
/// count has not moved since its last read. Calls one at a time, alternating between the two
/// workers on kept-alive connections: both workers permit and record from what they last read
/// while the window is full of successes; the failures that follow open the circuit on the
/// exact call (the 5th failure, on worker 0), and the very next call, on worker 1, which last
/// read the state CLOSED, is refused without reaching the upstream. So are later calls on both.
#[test]
fn a_worker_sees_the_other_workers_transition_on_its_next_call() {
    let envoy = transition_seen_on_the_next_call(&EnvoyOptions::default());
    assert!(
        envoy.metric(
            "sidecar_circuitbreaker_shared_state_writes",
            &[("name", "order-service")]
        ) > 0,
        "the write count is in use"
    );
}

/// The same where a stats matcher drops the write count's gauge (a mesh's proxyStatsMatcher
/// could): the filter sees at configuration that the gauge does not count, and reads the
/// shared state on every call instead.
#[test]
fn without_the_write_count_gauge_every_call_reads_the_shared_state() {
    let template = TempDir::new("no-write-count").unwrap();
    let ours = std::fs::read_to_string(bootstrap_template()).unwrap();
    let bootstrap = ours.replacen(
        "stats_config:\n",
        "stats_config:\n  stats_matcher:\n    exclusion_list:\n      patterns:\n      - suffix: sidecar_circuitbreaker_shared_state_writes\n",
        1,
    );
    assert_ne!(bootstrap, ours);
    let path = template.path().join("bootstrap.yaml");
    std::fs::write(&path, bootstrap).unwrap();
    let envoy = transition_seen_on_the_next_call(&EnvoyOptions {
        template: path,
        ..EnvoyOptions::default()
    });
    assert!(
        !envoy
            .stats()
            .unwrap()
            .keys()
            .any(|k| k.contains("shared_state_writes")),
        "the stats matcher dropped the gauge"
    );
}

/// Calls one at a time, alternating between the two workers on kept-alive connections: 12
/// successes, then failures until the circuit opens on the 5th (worker 0's); worker 1's next
/// call, though it last saw the state CLOSED, is refused without reaching the upstream.
fn transition_seen_on_the_next_call(options: &EnvoyOptions) -> Envoy {
    let services = Services::start().unwrap();
    let policy = with_order_service(
        json!({"sliding-window-size": 10, "minimum-number-of-calls": 10, "failure-rate-threshold": 50, "wait-duration-in-open-state": "60s"}),
    );
    let envoy = Envoy::start_with(&services, &policy, options).unwrap();
    let (mut first, mut second) = connection_per_worker(&envoy);
    services.order.set_default(Action::status(200));
    for n in 1..=12 {
        let worker = if n % 2 == 1 { &mut first } else { &mut second };
        assert_eq!(worker.get(ORDER, "/o").unwrap().status, 200, "success {n}");
    }
    assert_eq!(calls(&envoy, "order-service", "successful", 12), 12);
    services.order.set_default(Action::status(500));
    for n in 1..=5 {
        let worker = if n % 2 == 1 { &mut first } else { &mut second };
        assert_eq!(worker.get(ORDER, "/o").unwrap().status, 500, "failure {n}");
    }
    assert_eq!(
        second.get(ORDER, "/o").unwrap().status,
        503,
        "worker 1's next call after worker 0 opened the circuit"
    );
    assert_eq!(first.get(ORDER, "/o").unwrap().status, 503);
    assert_eq!(second.get(ORDER, "/o").unwrap().status, 503);
    assert_eq!(services.order.count(), 17, "opened after exactly 17 calls");
    assert!(state_is(&envoy, "order-service", "open"));
    assert_eq!(calls(&envoy, "order-service", "failed", 5), 5);
    envoy.filter_crashes().unwrap();
    envoy
}

/// A refusal is decided from what a worker last learnt while the write count stands (issue 13):
/// OPEN refuses up to its end, then the next call on either worker goes on as a HALF_OPEN
/// trial. Calls one at a time, alternating between the workers on kept-alive connections: both
/// workers refuse from what they learnt, the wait ends, exactly the two permitted trials reach
/// the upstream (one per worker), they fail and re-open the circuit, and the next calls on
/// both workers are refused again.
#[test]
fn refusals_across_workers_end_with_the_open_wait_and_admit_exactly_the_trials() {
    let services = Services::start().unwrap();
    let policy = with_order_service(
        json!({"sliding-window-size": 2, "minimum-number-of-calls": 2, "failure-rate-threshold": 50,
               "wait-duration-in-open-state": "1500ms", "permitted-number-of-calls-in-half-open-state": 2}),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let (mut first, mut second) = connection_per_worker(&envoy);
    services.order.set_default(Action::status(500));
    assert_eq!(first.get(ORDER, "/o").unwrap().status, 500);
    assert_eq!(second.get(ORDER, "/o").unwrap().status, 500);
    let opened = std::time::Instant::now();
    for n in 1..=3 {
        assert_eq!(first.get(ORDER, "/o").unwrap().status, 503, "worker 0, {n}");
        assert_eq!(
            second.get(ORDER, "/o").unwrap().status,
            503,
            "worker 1, {n}"
        );
    }
    assert!(
        opened.elapsed() < Duration::from_millis(1200),
        "the refusals came within the open wait: {:?}",
        opened.elapsed()
    );
    assert_eq!(services.order.count(), 2);
    thread::sleep(Duration::from_millis(1700).saturating_sub(opened.elapsed()));
    assert_eq!(first.get(ORDER, "/o").unwrap().status, 500, "trial 1");
    assert_eq!(second.get(ORDER, "/o").unwrap().status, 500, "trial 2");
    assert_eq!(first.get(ORDER, "/o").unwrap().status, 503, "re-opened");
    assert_eq!(second.get(ORDER, "/o").unwrap().status, 503, "re-opened");
    assert_eq!(services.order.count(), 4, "exactly the two trials");
    assert_eq!(
        transitions(&envoy, "order-service", "half_open", "open", 1),
        1
    );
    envoy.filter_crashes().unwrap();
}
