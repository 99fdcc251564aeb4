//! AtomicRateLimiter's semantics (`AtomicRateLimiterTest`, `reservePermission`), time passed in.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

const T0: u64 = 1_700_000_000_000;

fn config(limit: u32, period_ms: u64, timeout_ms: u64) -> RateLimiterConfig {
    RateLimiterConfig {
        limit_for_period: limit,
        limit_refresh_period_ms: period_ms,
        timeout_duration_ms: timeout_ms,
    }
}

#[test]
fn limit_for_period_permits_then_refused_without_timeout() {
    let c = config(3, 1000, 0);
    let mut rl = RateLimiter::new(&c, T0);
    for _ in 0..3 {
        assert_eq!(rl.reserve(T0 + 10, 0), Reservation::Now);
    }
    assert_eq!(
        rl.reserve(T0 + 10, 0),
        Reservation::Refused { wait_ms: 990 }
    );
    // Refusal reserves nothing.
    assert_eq!(rl.available(T0 + 10), 0);
}

#[test]
fn the_next_cycle_refills_to_the_limit_not_beyond() {
    let c = config(2, 1000, 0);
    let mut rl = RateLimiter::new(&c, T0);
    assert_eq!(rl.reserve(T0, 0), Reservation::Now);
    assert_eq!(rl.available(T0 + 5_000), 2);
    assert_eq!(rl.reserve(T0 + 1000, 0), Reservation::Now);
    assert_eq!(rl.reserve(T0 + 1000, 0), Reservation::Now);
    assert!(matches!(
        rl.reserve(T0 + 1999, 0),
        Reservation::Refused { wait_ms: 1 }
    ));
}

#[test]
fn a_call_may_reserve_a_coming_cycles_permit_within_its_timeout() {
    let c = config(1, 1000, 1500);
    let mut rl = RateLimiter::new(&c, T0);
    assert_eq!(rl.reserve(T0 + 100, 1500), Reservation::Now);
    // Next cycle starts at T0 + 1000: 900 ms away.
    assert_eq!(rl.reserve(T0 + 100, 1500), Reservation::Wait(900));
    assert_eq!(rl.available(T0 + 100), -1);
    // The one after: 1900 ms away, beyond the timeout.
    assert_eq!(
        rl.reserve(T0 + 100, 1500),
        Reservation::Refused { wait_ms: 1900 }
    );
    // The debt is repaid by the next refill first.
    assert_eq!(rl.available(T0 + 1000), 0);
    assert_eq!(rl.available(T0 + 2000), 1);
}

#[test]
fn a_wait_equal_to_the_timeout_is_permitted() {
    let c = config(1, 100, 100);
    let mut rl = RateLimiter::new(&c, T0);
    assert_eq!(rl.reserve(T0, 100), Reservation::Now);
    assert_eq!(rl.reserve(T0, 100), Reservation::Wait(100));
}

#[test]
fn a_clock_stepping_back_never_refills() {
    let c = config(1, 1000, 0);
    let mut rl = RateLimiter::new(&c, T0);
    assert_eq!(rl.reserve(T0 + 2500, 0), Reservation::Now);
    assert!(matches!(
        rl.reserve(T0 + 100, 0),
        Reservation::Refused { .. }
    ));
    assert!(matches!(
        rl.reserve(T0 - 5000, 0),
        Reservation::Refused { .. }
    ));
}

#[test]
fn encode_decode_round_trip_and_config_check() {
    let c = config(50, 1, 5000);
    let mut rl = RateLimiter::new(&c, T0);
    rl.reserve(T0 + 3, 0);
    let decoded = RateLimiter::decode(&rl.encode());
    assert_eq!(decoded, Some(rl));
    assert!(rl.is_for(&c));
    assert!(!rl.is_for(&config(51, 1, 5000)));
    assert!(
        rl.is_for(&config(50, 1, 0)),
        "the timeout is the caller's, not the state's"
    );
    assert_eq!(RateLimiter::decode(&[]), None);
    assert_eq!(RateLimiter::decode(&[2; ENCODED_BYTES]), None);
}

#[test]
fn resilience4j_defaults_give_fifty_permits_per_millisecond() {
    let c = RateLimiterConfig::default();
    let mut rl = RateLimiter::new(&c, T0);
    for _ in 0..50 {
        assert_eq!(rl.reserve(T0, c.timeout_duration_ms), Reservation::Now);
    }
    assert_eq!(rl.reserve(T0, c.timeout_duration_ms), Reservation::Wait(1));
}
