//! The filter's counters are accumulated per worker and handed to Envoy on the tick (at most
//! 100 ms apart; README: Metrics). With two workers under concurrent load and a policy swap in
//! the middle, every call is counted exactly once: none lost, none twice.

// Test helpers outside #[test] fns may unwrap too: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::thread;

use harness::*;
use serde_json::{json, Value};

const USER: &str = "user-service";

/// The seed's breakers without retries: the slowest tick (100 ms), the longest a count waits.
fn breaker_policy() -> Value {
    let mut policy = seed_policy();
    remove_path(&mut policy, "resilience4j.retry");
    policy
}

/// Requests from `threads` callers at once to Envoy's `port`, `each` per caller, on fresh
/// connections (Envoy spreads connections across its two workers); what was not a 200.
fn load(port: u16, threads: usize, each: usize) -> Vec<String> {
    thread::scope(|scope| {
        let callers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    (0..each)
                        .filter_map(|_| match get(port, USER, "/users/1") {
                            Ok(r) if r.status == 200 => None,
                            Ok(r) => Some(format!("status {}", r.status)),
                            Err(e) => Some(e.to_string()),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        callers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    })
}

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

/// user-service's successful calls once they read `expected`.
fn successful(envoy: &Envoy, expected: u64) -> u64 {
    envoy.counter(
        "resilience4j_circuitbreaker_calls_seconds_count",
        &[("name", USER), ("kind", "successful")],
        expected,
    )
}

#[test]
fn every_call_is_counted_once_across_two_workers_and_a_policy_swap() {
    let services = Services::start().unwrap();
    services.user.set_default(Action::status(200));
    let mut envoy = Envoy::start(&services, &breaker_policy()).unwrap();

    let port = envoy.port();
    assert_eq!(load(port, 4, 25), Vec::<String>::new());
    assert_eq!(successful(&envoy, 100), 100);

    // A new policy (another instance's change: user-service keeps its breaker) arrives while
    // calls are in flight and counts pending on both workers: none is lost or counted twice.
    let mut changed = breaker_policy();
    set_path(
        &mut changed,
        "resilience4j.circuitbreaker.instances.order-service.sliding-window-size",
        json!(9),
    );
    let caller = thread::spawn(move || load(port, 4, 50));
    thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(envoy.set_policy(&changed).unwrap(), PolicyUpdate::Applied);
    assert_eq!(caller.join().unwrap(), Vec::<String>::new());
    assert_eq!(load(port, 4, 25), Vec::<String>::new());
    let received = services.user.count() as u64;
    assert_eq!(received, 400);
    assert_eq!(
        successful(&envoy, 400),
        400,
        "every call counted exactly once"
    );
    let per_worker = connections_per_worker(&envoy);
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "both workers carried load: {per_worker:?}"
    );
    envoy.filter_crashes().unwrap();
}
