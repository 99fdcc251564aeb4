//! A soak (`make soak`; ignored in `make test`): a real Envoy with the filter under steady
//! traffic for SOAK_SECS (default 180) — guarded routes that alternate between healthy and
//! failing (breakers open and close, retries and fallbacks run), an unguarded route, and a
//! policy push every 15 s — printing Envoy's RSS and the answer counts over time. Fails if
//! RSS keeps growing after the warm-up, or on any answer other than the expected ones.

// Test code: failing loudly is the point (clippy.toml allows this inside #[test] fns only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::json;

/// Growth allowed between the warm-up and the end (allocator noise, lazily built caches).
const MAX_GROWTH_KB: u64 = 8 * 1024;

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "minutes long: make soak"]
fn soak_memory_stays_flat_under_traffic_and_policy_pushes() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(180);
    let services = Services::start().unwrap();
    let mut envoy = Envoy::start(&services, &seed_policy()).unwrap();
    let pid = envoy.pid().unwrap();
    let port = envoy.port();

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let stop = stop.clone();
            let counts = counts.clone();
            thread::spawn(move || {
                let authority = [USER, PAYMENT, ORDER, ISTIO_USER][i % 4];
                while !stop.load(Ordering::Relaxed) {
                    let key = match request(port, "GET", authority, "/soak", &[], b"") {
                        Ok(r) => format!("{authority} {}", r.status),
                        Err(_) => format!("{authority} io-error"),
                    };
                    *counts.lock().unwrap().entry(key).or_default() += 1;
                    thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();

    let start = Instant::now();
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut push = 0u32;
    let mut last_push = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        thread::sleep(Duration::from_secs(5));
        let t = start.elapsed().as_secs();
        // Guarded upstreams fail for 10 s of every 30.
        let failing = (t / 10) % 3 == 1;
        for upstream in [&services.user, &services.order, &services.istio_user] {
            upstream.set_default(Action::status(if failing { 500 } else { 200 }));
        }
        if last_push.elapsed() >= Duration::from_secs(15) {
            push += 1;
            let threshold = if push % 2 == 0 { 50 } else { 60 };
            let policy = policy_with(
                "resilience4j.circuitbreaker.instances.user-service.failure-rate-threshold",
                json!(threshold),
            );
            assert_eq!(envoy.set_policy(&policy).unwrap(), PolicyUpdate::Applied);
            last_push = Instant::now();
        }
        let rss = rss_kb(pid);
        samples.push((t, rss));
        let total: u64 = counts.lock().unwrap().values().sum();
        println!(
            "soak t={t:>4}s rss={:>7.1} MB requests={total} pushes={push} upstreams {}",
            rss as f64 / 1024.0,
            if failing { "failing" } else { "healthy" }
        );
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let counts = counts.lock().unwrap().clone();
    println!("soak answers: {counts:?}");
    envoy.filter_crashes().unwrap();

    for key in counts.keys() {
        let ok = key.ends_with(" 200")
            || (!key.starts_with(PAYMENT) && (key.ends_with(" 500") || key.ends_with(" 503")));
        assert!(ok, "unexpected answers: {key} ({counts:?})");
    }
    // After the warm-up (first quarter), the highest RSS of the last quarter must not exceed
    // the lowest of the second quarter by more than MAX_GROWTH_KB.
    let n = samples.len();
    assert!(n >= 8, "too short a soak: {n} samples");
    let second = &samples[n / 4..n / 2];
    let last = &samples[3 * n / 4..];
    let base = second.iter().map(|s| s.1).min().unwrap();
    let end = last.iter().map(|s| s.1).max().unwrap();
    println!(
        "soak RSS: {:.1} MB after warm-up, {:.1} MB at the end (allowed growth {} MB)",
        base as f64 / 1024.0,
        end as f64 / 1024.0,
        MAX_GROWTH_KB / 1024
    );
    assert!(
        end <= base + MAX_GROWTH_KB,
        "RSS grew from {base} kB to {end} kB: {samples:?}"
    );
}
