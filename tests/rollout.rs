//! Live policy changes, as a mesh rollout delivers them: new policies arrive through ECDS (an
//! atomic file replace here, xDS in a mesh) while Envoy (`--concurrency 2`) carries concurrent
//! load. What must hold:
//! - no request fails because of a swap (the load's answers are exactly what its upstreams say);
//! - a breaker whose config did not change keeps its state (an OPEN circuit stays OPEN), even when
//!   other instances, or the policy's other keys, changed;
//! - a breaker whose config changed starts fresh with the new config (resilience4j builds a new
//!   CircuitBreaker for a new config too), and the new thresholds are in force at once;
//! - a rejected policy leaves the previous one serving, under load.
//!
//! The filter keys breaker state by instance in shared data and stores a fingerprint of the
//! breaker config with it (src/host/store.rs `ensure_breaker`): that is what makes the above
//! hold across workers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

const CB: &str = "resilience4j.circuitbreaker.instances";

/// The seed's breakers without its retries (a retry would hide what the breaker did), with
/// open waits far longer than the test so an OPEN circuit stays OPEN.
fn base_policy() -> Value {
    let mut policy = seed_policy();
    remove_path(&mut policy, "resilience4j.retry");
    set_path(
        &mut policy,
        &format!("{CB}.user-service.wait-duration-in-open-state"),
        json!("10m"),
    );
    set_path(
        &mut policy,
        &format!("{CB}.order-service.wait-duration-in-open-state"),
        json!("10m"),
    );
    policy
}

/// Concurrent requests on fresh connections (so they spread over both workers) to upstreams
/// that always answer 200: any other answer, or a transport error, is a failure.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, authorities: &[&'static str], per_authority: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for authority in authorities {
            for _ in 0..per_authority {
                let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
                let authority = *authority;
                threads.push(thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let outcome = get(port, authority, "/load");
                        sent.fetch_add(1, Ordering::Relaxed);
                        let failure = match outcome {
                            Ok(r) if r.status == 200 => continue,
                            Ok(r) => format!("{authority}: {} {}", r.status, r.text()),
                            Err(e) => format!("{authority}: {e}"),
                        };
                        failures.lock().unwrap().push(failure);
                    }
                }));
            }
        }
        Load {
            stop,
            sent,
            failures,
            threads,
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` more requests completed (the load is really running).
    fn wait_for(&self, n: u64) {
        let target = self.sent() + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.sent() < target {
            assert!(
                Instant::now() < deadline,
                "load stalled at {} requests",
                self.sent()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.sent(), failures)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Envoy's threads that run the filter: the main thread and `--concurrency 2` workers.
const THREADS: usize = 3;

/// What the root contexts logged for `instance` since `mark` when they configured a policy:
/// (starts fresh, state kept, distinct threads). Each context logs one of the two per breaker
/// instance; how many contexts a thread configures varies (Envoy caches plugins by config), so
/// completion is judged by threads, not lines.
fn configured_lines(envoy: &Envoy, mark: usize, instance: &str) -> (usize, usize, usize) {
    let log = envoy.log_since(mark);
    let fresh = format!("circuit breaker '{instance}': starts fresh");
    let kept = format!("circuit breaker '{instance}': config unchanged, state kept");
    let mut threads = std::collections::BTreeSet::new();
    let (mut f, mut k) = (0, 0);
    for line in log.lines() {
        let is_fresh = line.contains(&fresh);
        if !is_fresh && !line.contains(&kept) {
            continue;
        }
        if is_fresh {
            f += 1;
        } else {
            k += 1;
        }
        // `[time][thread id][level]...`
        if let Some(thread) = line.split('[').nth(2).and_then(|t| t.split(']').next()) {
            threads.insert(thread.to_string());
        }
    }
    (f, k, threads.len())
}

/// Waits (up to 15 s) until every thread logged configuring `instance` after `mark`; returns
/// (fresh, threads).
fn wait_configured(envoy: &Envoy, mark: usize, instance: &str) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (fresh, _, threads) = configured_lines(envoy, mark, instance);
        if threads >= THREADS || Instant::now() >= deadline {
            return (fresh, threads);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Pushes `policy`, waits until it is applied and every thread has configured it. Returns
/// (fresh, kept) counts of `instance`'s configure log lines for this swap.
fn swap(envoy: &mut Envoy, policy: &Value, instance: &str) -> (usize, usize) {
    let mark = envoy.log_mark();
    assert_eq!(envoy.set_policy(policy).unwrap(), PolicyUpdate::Applied);
    let (_, threads) = wait_configured(envoy, mark, instance);
    assert!(
        threads >= THREADS,
        "policy applied but configured on {threads} of {THREADS} threads"
    );
    let (fresh, kept, _) = configured_lines(envoy, mark, instance);
    (fresh, kept)
}

/// user-service's circuit does not permit: the caller gets the fallback, the upstream nothing.
fn assert_user_open(envoy: &Envoy, services: &Services, why: &str) {
    let before = services.user.count();
    for _ in 0..6 {
        let r = envoy.get(USER, "/users/1").unwrap();
        assert_eq!(
            r.status,
            503,
            "{why}: expected the fallback, got {} {}",
            r.status,
            r.text()
        );
    }
    assert_eq!(
        services.user.count(),
        before,
        "{why}: a call reached user-service through an OPEN circuit"
    );
}

#[test]
fn policy_swaps_under_load_keep_or_reset_breakers_and_never_fail_a_request() {
    let services = Services::start().unwrap();
    services.order.set_default(Action::status(200));
    services.payment.set_default(Action::status(200));
    let p1 = base_policy();
    let mark = 0;
    let mut envoy = Envoy::start(&services, &p1).unwrap();
    // Every thread configured the initial policy; exactly one context created the breaker.
    // Envoy may still be writing those lines when it starts answering: wait for all of them.
    let (fresh, threads) = wait_configured(&envoy, mark, "user-service");
    assert_eq!(threads, THREADS);
    assert_eq!(
        fresh, 1,
        "exactly one context starts the shared breaker fresh"
    );

    // user-service: the seed's minimum of 5 calls at >= 50 % failures opens it.
    services.user.push_n(5, Action::status(500));
    for _ in 0..5 {
        assert_eq!(envoy.get(USER, "/users/1").unwrap().status, 500);
    }
    assert_user_open(&envoy, &services, "after 5 failures");

    let load = Load::start(envoy.port(), &[ORDER, PAYMENT], 2);
    load.wait_for(200);
    let mut swaps = Vec::new();

    // Swap 1: order-service's window changes, user-service's breaker config does not.
    let mut p2 = p1.clone();
    set_path(
        &mut p2,
        &format!("{CB}.order-service.sliding-window-size"),
        json!(4),
    );
    let started = Instant::now();
    let (fresh, kept) = swap(&mut envoy, &p2, "order-service");
    swaps.push(started.elapsed());
    assert_eq!(
        fresh, 1,
        "order-service's changed breaker starts fresh, once"
    );
    assert!(kept >= THREADS - 1);
    let (fresh, _, _) = configured_lines(&envoy, 0, "user-service");
    assert_eq!(
        fresh, 1,
        "user-service's unchanged breaker must not start fresh again"
    );
    assert_user_open(
        &envoy,
        &services,
        "after a swap that did not change user-service",
    );
    load.wait_for(200);

    // Swap 2: a rejected policy, under load; the previous one keeps serving.
    let mut bad = p2.clone();
    set_path(
        &mut bad,
        &format!("{CB}.user-service.failure-rate-threshold"),
        json!(120),
    );
    let started = Instant::now();
    assert_eq!(envoy.set_policy(&bad).unwrap(), PolicyUpdate::Rejected);
    swaps.push(started.elapsed());
    assert_user_open(&envoy, &services, "after a rejected policy");
    load.wait_for(200);

    // Swap 3: only the filter's own keys change (a fallback for order-service): breakers keep.
    let mut p3 = p2.clone();
    set_path(
        &mut p3,
        "fallbacks.order-service",
        json!({"status": 503, "body": "{\"orders\":[]}"}),
    );
    let started = Instant::now();
    let (fresh, kept) = swap(&mut envoy, &p3, "user-service");
    swaps.push(started.elapsed());
    assert_eq!(fresh, 0, "a fallback change must not reset any breaker");
    assert!(kept >= THREADS);
    assert_user_open(&envoy, &services, "after a fallback-only swap");
    load.wait_for(200);

    // Swap 4: user-service's config changes (minimum 5 -> 3 calls): it starts fresh, CLOSED,
    // and the new threshold is in force: 3 failures open it where the old config needed 5.
    let mut p4 = p3.clone();
    set_path(
        &mut p4,
        &format!("{CB}.user-service.minimum-number-of-calls"),
        json!(3),
    );
    let started = Instant::now();
    let (fresh, kept) = swap(&mut envoy, &p4, "user-service");
    swaps.push(started.elapsed());
    assert_eq!(
        fresh, 1,
        "user-service's changed breaker starts fresh, once"
    );
    assert!(kept >= THREADS - 1);
    let before = services.user.count();
    services.user.push_n(3, Action::status(500));
    for i in 0..3 {
        let r = envoy.get(USER, "/users/1").unwrap();
        assert_eq!(
            r.status,
            500,
            "call {} after the reset must reach the upstream",
            i + 1
        );
    }
    assert_eq!(services.user.count(), before + 3);
    assert_user_open(
        &envoy,
        &services,
        "after 3 failures under the new minimum of 3",
    );
    load.wait_for(200);

    // Swap 5: back to the old user-service config: again a new config, again fresh.
    let started = Instant::now();
    let (fresh, _) = swap(&mut envoy, &p3, "user-service");
    swaps.push(started.elapsed());
    assert_eq!(fresh, 1);
    services.user.set_default(Action::status(200));
    assert_eq!(
        envoy.get(USER, "/users/1").unwrap().status,
        200,
        "fresh breaker is CLOSED"
    );
    load.wait_for(200);

    let (sent, failures) = load.finish();
    eprintln!(
        "rollout: {sent} requests under load across {} swaps (ECDS applied/rejected after {:?}), {} failed",
        swaps.len(),
        swaps,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed during swaps, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    // The load really went through the guarded path: order-service's calls were recorded.
    // (Counters reach Envoy on the filter's tick: read until one arrives, or the wait is over.)
    let recorded = || {
        envoy.metric(
            "resilience4j_circuitbreaker_calls_seconds_count",
            &[("name", "order-service"), ("kind", "successful")],
        )
    };
    let deadline = std::time::Instant::now() + COUNTER_WAIT;
    while recorded() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(recorded() > 0, "order-service's breaker recorded no calls");
}
