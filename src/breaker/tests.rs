//! The state machine, specified the way resilience4j's documentation and
//! `CircuitBreakerStateMachineTest` describe it. Time is passed in; `T0` is an arbitrary epoch.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::outcome::OutcomeMatcher;

const T0: u64 = 1_700_000_000_000;

/// resilience4j's defaults (CircuitBreakerConfig.ofDefaults()).
fn defaults() -> BreakerConfig {
    BreakerConfig::default()
}

/// COUNT_BASED window of `size` calls, `minimum` calls, 50 % failure threshold, 10 s open
/// wait, `permitted` trial calls.
fn count_based(size: u32, minimum: u32, permitted: u32) -> BreakerConfig {
    BreakerConfig {
        sliding_window_size: size,
        minimum_number_of_calls: minimum,
        wait_duration_in_open_state_ms: 10_000,
        permitted_number_of_calls_in_half_open_state: permitted,
        ..defaults()
    }
}

fn time_based(seconds: u32, minimum: u32) -> BreakerConfig {
    BreakerConfig {
        sliding_window_type: SlidingWindowType::TimeBased,
        ..count_based(seconds, minimum, 3)
    }
}

fn record(
    cb: &mut CircuitBreaker,
    c: &BreakerConfig,
    now: u64,
    outcome: Outcome,
) -> Option<Transition> {
    assert_eq!(
        cb.try_acquire_permission(c, now, mid_random).0,
        Permission::Permitted
    );
    cb.on_result(c, now, outcome, 10, mid_random).1
}

fn fail(cb: &mut CircuitBreaker, c: &BreakerConfig, now: u64) -> Option<Transition> {
    record(cb, c, now, Outcome::Failure)
}

fn succeed(cb: &mut CircuitBreaker, c: &BreakerConfig, now: u64) -> Option<Transition> {
    record(cb, c, now, Outcome::Success)
}

/// A fixed stand-in for resilience4j's `Math.random()`; breakers without a randomized open
/// wait never call it.
fn mid_random() -> f64 {
    0.5
}

fn t(from: State, to: State) -> Option<Transition> {
    Some(Transition { from, to })
}

/// A breaker driven to OPEN at `now` by `minimum` failures (needs minimum ≤ window).
fn opened(c: &BreakerConfig, now: u64) -> CircuitBreaker {
    let mut cb = CircuitBreaker::new(c, now, mid_random);
    for _ in 0..c.minimum_number_of_calls.min(c.sliding_window_size) {
        fail(&mut cb, c, now);
    }
    assert_eq!(cb.state(), State::Open);
    cb
}

/// A breaker in HALF_OPEN since `now` (lazily, through the first trial call, which is
/// handed back so all permits are available).
fn half_open(c: &BreakerConfig, now: u64) -> CircuitBreaker {
    let mut cb = opened(c, now.saturating_sub(c.wait_duration_in_open_state_ms + 1));
    let (permission, transition) = cb.try_acquire_permission(c, now, mid_random);
    assert_eq!(permission, Permission::Permitted);
    assert_eq!(transition, t(State::Open, State::HalfOpen));
    cb.release_permission(c);
    cb
}

fn not_permitted(state: State, retry_after_ms: Option<u64>) -> Permission {
    Permission::NotPermitted {
        state,
        retry_after_ms,
    }
}

// ---- states and names ----

#[test]
fn states_have_resilience4j_names_and_order() {
    let all = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::Disabled,
        State::ForcedOpen,
        State::MetricsOnly,
    ];
    let names: Vec<_> = all.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "CLOSED",
            "OPEN",
            "HALF_OPEN",
            "DISABLED",
            "FORCED_OPEN",
            "METRICS_ONLY"
        ]
    );
    let indices: Vec<_> = all.iter().map(|s| s.index()).collect();
    assert_eq!(indices, [0, 1, 2, 3, 4, 5]);
    assert!(!State::Disabled.allows_publish() && !State::ForcedOpen.allows_publish());
    assert!(State::Closed.allows_publish() && State::MetricsOnly.allows_publish());
}

// ---- CLOSED ----

#[test]
fn a_new_breaker_is_closed_and_permits_every_call() {
    let c = defaults();
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    assert_eq!(cb.state(), State::Closed);
    for i in 0..1000 {
        assert_eq!(
            cb.try_acquire_permission(&c, T0 + i, mid_random),
            (Permission::Permitted, None)
        );
    }
}

#[test]
fn closed_does_not_open_below_the_minimum_number_of_calls_even_if_all_fail() {
    let c = count_based(10, 5, 3);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for _ in 0..4 {
        assert_eq!(fail(&mut cb, &c, T0), None);
    }
    let s = cb.snapshot(&c, T0);
    assert_eq!(
        (s.state, s.buffered_calls, s.failed_calls),
        (State::Closed, 4, 4)
    );
    assert_eq!((s.failure_rate, s.slow_call_rate), (-1.0, -1.0));
    assert_eq!(fail(&mut cb, &c, T0), t(State::Closed, State::Open));
}

#[test]
fn closed_opens_when_the_failure_rate_is_exactly_the_threshold() {
    let c = count_based(10, 10, 3);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for _ in 0..5 {
        assert_eq!(succeed(&mut cb, &c, T0), None);
    }
    for _ in 0..4 {
        assert_eq!(fail(&mut cb, &c, T0), None);
    }
    // 10th call: 5 failures of 10 = 50 % ≥ 50 %.
    let transition = fail(&mut cb, &c, T0);
    assert_eq!(transition, t(State::Closed, State::Open));
    let s = cb.snapshot(&c, T0);
    assert_eq!(
        (s.state, s.failure_rate, s.buffered_calls),
        (State::Open, 50.0, 10)
    );
}

#[test]
fn closed_stays_closed_just_below_the_threshold() {
    let c = count_based(100, 100, 3);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for _ in 0..51 {
        succeed(&mut cb, &c, T0);
    }
    for _ in 0..49 {
        assert_eq!(fail(&mut cb, &c, T0), None);
    }
    assert_eq!(cb.snapshot(&c, T0).failure_rate, 49.0);
    assert_eq!(cb.state(), State::Closed);
    // A threshold a hair above the rate does not open either.
    let c = BreakerConfig {
        failure_rate_threshold: 50.01,
        ..count_based(10, 10, 3)
    };
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for i in 0..10 {
        record(
            &mut cb,
            &c,
            T0,
            if i % 2 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            },
        );
    }
    assert_eq!(cb.snapshot(&c, T0).failure_rate, 50.0);
    assert_eq!(cb.state(), State::Closed);
}

#[test]
fn count_based_minimum_is_clamped_to_the_window_size() {
    // minimum-number-of-calls 100 with a window of 5: resilience4j evaluates after 5 calls.
    let c = count_based(5, 100, 3);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for _ in 0..4 {
        assert_eq!(fail(&mut cb, &c, T0), None);
    }
    assert_eq!(fail(&mut cb, &c, T0), t(State::Closed, State::Open));
}

#[test]
fn count_based_window_holds_only_the_last_n_calls() {
    let c = BreakerConfig {
        failure_rate_threshold: 75.0,
        ..count_based(4, 4, 3)
    };
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for outcome in [
        Outcome::Failure,
        Outcome::Failure,
        Outcome::Success,
        Outcome::Success,
    ] {
        record(&mut cb, &c, T0, outcome);
    }
    assert_eq!(cb.snapshot(&c, T0).failure_rate, 50.0);
    // F F S S + S: the oldest failure falls out.
    succeed(&mut cb, &c, T0);
    let s = cb.snapshot(&c, T0);
    assert_eq!(
        (s.buffered_calls, s.failed_calls, s.failure_rate),
        (4, 1, 25.0)
    );
    // Window F S S S → 25 %; then S S S F → 25 %, S S F F → 50 %, S F F F → 75 % opens.
    assert_eq!(fail(&mut cb, &c, T0), None);
    assert_eq!(fail(&mut cb, &c, T0), None);
    assert_eq!(fail(&mut cb, &c, T0), t(State::Closed, State::Open));
}

#[test]
fn time_based_minimum_is_not_clamped_to_the_window_size() {
    // 2-second window, minimum 5 calls: 5 calls in one second are needed, not 2.
    let c = time_based(2, 5);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for _ in 0..4 {
        assert_eq!(fail(&mut cb, &c, T0), None);
    }
    assert_eq!(fail(&mut cb, &c, T0 + 999), t(State::Closed, State::Open));
}

#[test]
fn time_based_window_counts_only_the_last_n_seconds() {
    let c = time_based(10, 4);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    // Three failures at second 0 and a success at second 5 share the window: 75 % opens.
    for _ in 0..3 {
        fail(&mut cb, &c, T0);
    }
    assert_eq!(
        succeed(&mut cb, &c, T0 + 5_000),
        t(State::Closed, State::Open)
    );

    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for _ in 0..3 {
        fail(&mut cb, &c, T0);
    }
    assert_eq!(cb.snapshot(&c, T0 + 9_999).buffered_calls, 3);
    // Ten seconds later the failures of second 0 have left the window.
    assert_eq!(cb.snapshot(&c, T0 + 10_000).buffered_calls, 0);
    assert_eq!(succeed(&mut cb, &c, T0 + 10_000), None);
    assert_eq!(succeed(&mut cb, &c, T0 + 10_500), None);
    assert_eq!(fail(&mut cb, &c, T0 + 11_000), None);
    let s = cb.snapshot(&c, T0 + 11_000);
    assert_eq!(
        (s.buffered_calls, s.failed_calls, s.failure_rate),
        (3, 1, -1.0)
    );
    // 4th call in the window: 2 failures of 4 = 50 % opens.
    assert_eq!(
        fail(&mut cb, &c, T0 + 12_000),
        t(State::Closed, State::Open)
    );
}

#[test]
fn time_based_buckets_are_dropped_as_time_passes_even_without_calls() {
    let c = time_based(3, 100);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for i in 0..3 {
        succeed(&mut cb, &c, T0 + i * 1000);
    }
    let full = cb.encode(&c).len();
    assert_eq!(cb.on_tick(&c, T0 + 4_000, mid_random), None);
    assert_eq!(cb.snapshot(&c, T0 + 4_000).buffered_calls, 1);
    assert!(cb.encode(&c).len() < full);
    cb.on_tick(&c, T0 + 60_000, mid_random);
    assert_eq!(cb, CircuitBreaker::new(&c, T0, mid_random));
}

#[test]
fn a_call_slower_than_the_threshold_is_slow_and_exactly_at_it_is_not() {
    let c = BreakerConfig {
        slow_call_duration_threshold_ms: 1_000,
        ..count_based(10, 10, 3)
    };
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 1_000, mid_random).0,
        RecordedKind::Successful
    );
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 1_001, mid_random).0,
        RecordedKind::SlowSuccessful
    );
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Failure, 1_000, mid_random).0,
        RecordedKind::Failed
    );
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Failure, 5_000, mid_random).0,
        RecordedKind::SlowFailed
    );
    let s = cb.snapshot(&c, T0);
    assert_eq!(
        (
            s.buffered_calls,
            s.failed_calls,
            s.slow_calls,
            s.slow_failed_calls
        ),
        (4, 2, 2, 1)
    );
}

#[test]
fn closed_opens_when_the_slow_call_rate_reaches_its_threshold() {
    let c = BreakerConfig {
        slow_call_duration_threshold_ms: 100,
        slow_call_rate_threshold: 60.0,
        failure_rate_threshold: 100.0,
        ..count_based(5, 5, 3)
    };
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 50, mid_random).1,
        None
    );
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 50, mid_random).1,
        None
    );
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 101, mid_random).1,
        None
    );
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 101, mid_random).1,
        None
    );
    // 3 slow of 5 = 60 %: successes, but slow.
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 101, mid_random).1,
        t(State::Closed, State::Open)
    );
    let s = cb.snapshot(&c, T0);
    assert_eq!((s.slow_call_rate, s.failure_rate), (60.0, 0.0));
}

#[test]
fn ignored_calls_are_not_recorded() {
    let c = count_based(2, 2, 3);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    fail(&mut cb, &c, T0);
    for _ in 0..10 {
        assert_eq!(record(&mut cb, &c, T0, Outcome::Ignored), None);
    }
    assert_eq!(cb.snapshot(&c, T0).buffered_calls, 1);
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Ignored, 999_999, mid_random)
            .0,
        RecordedKind::Ignored
    );
    assert_eq!(fail(&mut cb, &c, T0), t(State::Closed, State::Open));
}

#[test]
fn the_seed_user_service_opens_after_five_failures() {
    // failure-rate-threshold 50, sliding-window-size 10, minimum-number-of-calls 5.
    let c = BreakerConfig {
        wait_duration_in_open_state_ms: 30_000,
        ..count_based(10, 5, 10)
    };
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for i in 0..4 {
        assert_eq!(fail(&mut cb, &c, T0 + i), None);
    }
    assert_eq!(fail(&mut cb, &c, T0 + 4), t(State::Closed, State::Open));
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 5, mid_random),
        (not_permitted(State::Open, Some(29_999)), None)
    );
}

// ---- OPEN ----

#[test]
fn open_rejects_until_the_wait_has_elapsed_then_the_next_call_is_a_trial_call() {
    let c = count_based(2, 2, 3);
    let mut cb = opened(&c, T0);
    assert_eq!(
        cb.try_acquire_permission(&c, T0, mid_random),
        (not_permitted(State::Open, Some(10_000)), None)
    );
    assert_eq!(cb.snapshot(&c, T0 + 4_000).open_remaining_ms, Some(6_000));
    // resilience4j: permitted once the clock is *after* the end of the wait.
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 10_000, mid_random),
        (not_permitted(State::Open, Some(1)), None)
    );
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 10_001, mid_random),
        (Permission::Permitted, t(State::Open, State::HalfOpen))
    );
    assert_eq!(cb.state(), State::HalfOpen);
    // That call took one of the three permits.
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 10_001, mid_random).0,
        Permission::Permitted
    );
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 10_001, mid_random).0,
        Permission::Permitted
    );
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 10_001, mid_random).0,
        not_permitted(State::HalfOpen, None)
    );
}

#[test]
fn without_automatic_transition_a_tick_leaves_open_alone() {
    let c = count_based(2, 2, 3);
    let mut cb = opened(&c, T0);
    assert_eq!(cb.on_tick(&c, T0 + 1_000_000, mid_random), None);
    assert_eq!(cb.state(), State::Open);
    assert_eq!(cb.snapshot(&c, T0 + 1_000_000).open_remaining_ms, Some(0));
}

#[test]
fn with_automatic_transition_a_tick_moves_open_to_half_open_when_the_wait_ends() {
    let c = BreakerConfig {
        automatic_transition_from_open_to_half_open_enabled: true,
        ..count_based(2, 2, 3)
    };
    let mut cb = opened(&c, T0);
    assert_eq!(cb.on_tick(&c, T0 + 9_999, mid_random), None);
    assert_eq!(
        cb.on_tick(&c, T0 + 10_000, mid_random),
        t(State::Open, State::HalfOpen)
    );
    assert_eq!(cb.state(), State::HalfOpen);
    for _ in 0..3 {
        assert_eq!(
            cb.try_acquire_permission(&c, T0 + 10_000, mid_random),
            (Permission::Permitted, None)
        );
    }
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 10_000, mid_random).0,
        not_permitted(State::HalfOpen, None)
    );
}

#[test]
fn with_automatic_transition_a_late_tick_does_not_hold_calls_back() {
    let c = BreakerConfig {
        automatic_transition_from_open_to_half_open_enabled: true,
        ..count_based(2, 2, 3)
    };
    let mut cb = opened(&c, T0);
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 10_001, mid_random),
        (Permission::Permitted, t(State::Open, State::HalfOpen))
    );
}

#[test]
fn results_arriving_in_open_are_recorded_but_never_change_the_state() {
    let c = count_based(10, 4, 3);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for _ in 0..4 {
        assert_eq!(
            cb.try_acquire_permission(&c, T0, mid_random).0,
            Permission::Permitted
        );
    }
    // Four calls in flight; the 4th result opens the breaker (3 failures of 4).
    cb.on_result(&c, T0, Outcome::Failure, 5, mid_random);
    cb.on_result(&c, T0, Outcome::Failure, 5, mid_random);
    cb.on_result(&c, T0, Outcome::Success, 5, mid_random);
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Failure, 5, mid_random).1,
        t(State::Closed, State::Open)
    );
    // Calls permitted before it opened still report.
    for _ in 0..5 {
        assert_eq!(
            cb.on_result(&c, T0 + 1, Outcome::Success, 5, mid_random),
            (RecordedKind::Successful, None)
        );
    }
    let s = cb.snapshot(&c, T0 + 1);
    assert_eq!(
        (s.state, s.buffered_calls, s.failed_calls, s.failure_rate),
        (State::Open, 9, 3, 100.0 / 3.0)
    );
}

#[test]
fn the_open_wait_grows_exponentially_with_each_reopen_and_is_capped() {
    let c = BreakerConfig {
        wait_duration_in_open_state_ms: 1_000,
        open_wait_multiplier: 2.0,
        open_wait_max_ms: Some(5_000),
        ..count_based(2, 2, 1)
    };
    let mut cb = opened(&c, T0);
    let mut now = T0;
    let mut waits = vec![cb.snapshot(&c, now).open_remaining_ms];
    for _ in 0..4 {
        let wait = cb.snapshot(&c, now).open_remaining_ms.unwrap_or(0);
        now += wait + 1;
        // Trial call fails: back to OPEN with the next wait.
        assert_eq!(
            cb.try_acquire_permission(&c, now, mid_random).1,
            t(State::Open, State::HalfOpen)
        );
        assert_eq!(
            cb.on_result(&c, now, Outcome::Failure, 1, mid_random).1,
            t(State::HalfOpen, State::Open)
        );
        waits.push(cb.snapshot(&c, now).open_remaining_ms);
    }
    assert_eq!(
        waits,
        [
            Some(1_000),
            Some(2_000),
            Some(4_000),
            Some(5_000),
            Some(5_000)
        ]
    );
    // Closing resets the attempts: the next opening waits the base duration again.
    now += 5_001;
    cb.try_acquire_permission(&c, now, mid_random);
    assert_eq!(
        cb.on_result(&c, now, Outcome::Success, 1, mid_random).1,
        t(State::HalfOpen, State::Closed)
    );
    fail(&mut cb, &c, now);
    assert_eq!(fail(&mut cb, &c, now), t(State::Closed, State::Open));
    assert_eq!(cb.snapshot(&c, now).open_remaining_ms, Some(1_000));
}

#[test]
fn open_wait_follows_resilience4j_interval_function() {
    let mut c = BreakerConfig {
        wait_duration_in_open_state_ms: 1_000,
        ..defaults()
    };
    assert_eq!(
        (1..=4)
            .map(|a| open_wait_ms(&c, a, mid_random))
            .collect::<Vec<_>>(),
        [1_000; 4]
    );
    c.open_wait_multiplier = 1.5;
    assert_eq!(
        (1..=4)
            .map(|a| open_wait_ms(&c, a, mid_random))
            .collect::<Vec<_>>(),
        [1_000, 1_500, 2_250, 3_375]
    );
    // Java truncates each step: (long) (x * multiplier).
    c.wait_duration_in_open_state_ms = 3;
    assert_eq!(
        (1..=4)
            .map(|a| open_wait_ms(&c, a, mid_random))
            .collect::<Vec<_>>(),
        [3, 4, 6, 9]
    );
    // Growth saturates instead of overflowing.
    c.open_wait_multiplier = 10.0;
    assert_eq!(open_wait_ms(&c, u32::MAX, mid_random), u64::MAX);
    c.open_wait_max_ms = Some(7_000);
    assert_eq!(open_wait_ms(&c, u32::MAX, mid_random), 7_000);
    // A shrinking multiplier shrinks below the cap, as Java's min(interval, max).
    c.open_wait_multiplier = 0.5;
    c.wait_duration_in_open_state_ms = 40_000;
    c.open_wait_max_ms = Some(30_000);
    assert_eq!(
        (1..=4)
            .map(|a| open_wait_ms(&c, a, mid_random))
            .collect::<Vec<_>>(),
        [30_000, 20_000, 10_000, 5_000]
    );
    // Nonsense multipliers never panic.
    c.open_wait_multiplier = f64::NAN;
    assert_eq!(open_wait_ms(&c, 2, mid_random), 0);
    c.open_wait_multiplier = 1.000_001;
    c.open_wait_max_ms = None;
    c.wait_duration_in_open_state_ms = 1_000_000_000;
    assert!(open_wait_ms(&c, u32::MAX, mid_random) >= 1_000_000_000);
}

#[test]
fn should_transition_to_half_open_after_wait_interval() {
    // CircuitBreakerStateMachineTest.shouldTransitionToHalfOpenAfterWaitInterval:
    // ofExponentialBackoff(5000) (multiplier 1.5): the first opening waits 5 s, a re-open
    // from HALF_OPEN 7.5 s.
    let c = BreakerConfig {
        wait_duration_in_open_state_ms: 5_000,
        open_wait_multiplier: 1.5,
        ..count_based(5, 5, 4)
    };
    let mut cb = opened(&c, T0);
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 3_000, mid_random).0,
        not_permitted(State::Open, Some(2_000))
    );
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 6_000, mid_random),
        (Permission::Permitted, t(State::Open, State::HalfOpen))
    );
    for _ in 0..4 {
        cb.on_result(&c, T0 + 6_000, Outcome::Failure, 1, mid_random);
    }
    assert_eq!(cb.state(), State::Open);
    // Still open 6 s later (the new wait is 7.5 s), half open after 7.5 s.
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 12_000, mid_random).0,
        not_permitted(State::Open, Some(1_500))
    );
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 13_501, mid_random),
        (Permission::Permitted, t(State::Open, State::HalfOpen))
    );
}

/// A random source that records how often it was drawn from.
fn counting(samples: &std::cell::Cell<u32>, value: f64) -> impl FnOnce() -> f64 + '_ {
    move || {
        samples.set(samples.get() + 1);
        value
    }
}

#[test]
fn a_randomized_open_wait_is_drawn_from_the_wait_plus_minus_the_factor() {
    // Spring's enable-randomized-wait on a circuit breaker: waitIntervalFunctionInOpenState =
    // IntervalFunction.ofRandomized(wait-duration-in-open-state, randomized-wait-factor).
    let c = BreakerConfig {
        open_wait_randomization_factor: Some(0.5),
        ..count_based(2, 2, 1)
    };
    for (random, wait) in [(0.0, 5_000), (0.5, 10_000), (0.999_999_9, 15_000)] {
        let mut cb = CircuitBreaker::new(&c, T0, mid_random);
        fail(&mut cb, &c, T0);
        let drawn = std::cell::Cell::new(0);
        let opening = cb.on_result(&c, T0, Outcome::Failure, 1, counting(&drawn, random));
        assert_eq!(opening.1, t(State::Closed, State::Open));
        assert_eq!(drawn.get(), 1);
        assert_eq!(
            cb.try_acquire_permission(&c, T0, mid_random).0,
            not_permitted(State::Open, Some(wait))
        );
    }
}

#[test]
fn randomized_open_waits_spread_breakers_that_opened_together() {
    // The point of randomizing: a hundred pods whose breakers opened at the same instant do
    // not all send their trial calls at the same instant.
    let c = BreakerConfig {
        open_wait_randomization_factor: Some(0.5),
        ..count_based(1, 1, 1)
    };
    let mut ends: Vec<u64> = (0..100)
        .map(|pod| {
            let mut cb = CircuitBreaker::new(&c, T0, mid_random);
            assert_eq!(
                cb.try_acquire_permission(&c, T0, mid_random).0,
                Permission::Permitted
            );
            cb.on_result(&c, T0, Outcome::Failure, 1, || f64::from(pod) / 100.0);
            cb.snapshot(&c, T0).open_remaining_ms.unwrap_or(0)
        })
        .collect();
    ends.sort_unstable();
    ends.dedup();
    assert_eq!(ends.len(), 100);
    assert_eq!((ends[0], ends[99]), (5_000, 14_900));
}

#[test]
fn every_opening_draws_a_new_randomized_wait_and_only_then() {
    let c = BreakerConfig {
        open_wait_randomization_factor: Some(0.2),
        max_wait_duration_in_half_open_state_ms: 1_000,
        ..count_based(1, 1, 1)
    };
    let drawn = std::cell::Cell::new(0);
    let mut cb = CircuitBreaker::new(&c, T0, counting(&drawn, 0.0));
    cb.try_acquire_permission(&c, T0, counting(&drawn, 0.0));
    cb.on_result(&c, T0, Outcome::Failure, 1, counting(&drawn, 0.0));
    // CLOSED → OPEN: 10 s − 20 %.
    assert_eq!(
        (drawn.get(), cb.snapshot(&c, T0).open_remaining_ms),
        (1, Some(8_000))
    );
    // Calls that do not open draw nothing.
    cb.try_acquire_permission(&c, T0 + 1, counting(&drawn, 0.0));
    cb.on_tick(&c, T0 + 2, counting(&drawn, 0.0));
    assert_eq!(drawn.get(), 1);
    // HALF_OPEN → OPEN on a failed trial: a new draw.
    let now = T0 + 8_001;
    cb.try_acquire_permission(&c, now, counting(&drawn, 0.0));
    cb.on_result(&c, now, Outcome::Failure, 1, counting(&drawn, 0.999_999_9));
    assert_eq!(
        (drawn.get(), cb.snapshot(&c, now).open_remaining_ms),
        (2, Some(12_000))
    );
    // HALF_OPEN → OPEN after max-wait-duration-in-half-open-state: a new draw, on tick ...
    let now = now + 12_001;
    cb.try_acquire_permission(&c, now, counting(&drawn, 0.0));
    assert_eq!(
        cb.on_tick(&c, now + 1_000, counting(&drawn, 0.5)),
        t(State::HalfOpen, State::Open)
    );
    assert_eq!(
        (drawn.get(), cb.snapshot(&c, now + 1_000).open_remaining_ms),
        (3, Some(10_000))
    );
    // ... and lazily when a call asks.
    let now = now + 11_001;
    cb.try_acquire_permission(&c, now, counting(&drawn, 0.0));
    assert_eq!(
        cb.try_acquire_permission(&c, now + 1_000, counting(&drawn, 0.0)),
        (
            not_permitted(State::Open, Some(8_000)),
            t(State::HalfOpen, State::Open)
        )
    );
    assert_eq!(drawn.get(), 4);
}

#[test]
fn an_unrandomized_open_wait_never_draws() {
    let c = count_based(1, 1, 1);
    let never = || -> f64 { unreachable!("drew a random sample for a fixed open wait") };
    let mut cb = CircuitBreaker::new(&c, T0, never);
    cb.try_acquire_permission(&c, T0, never);
    cb.on_result(&c, T0, Outcome::Failure, 1, never);
    assert_eq!(cb.state(), State::Open);
}

#[test]
fn a_randomized_exponential_open_wait_is_randomized_then_capped() {
    // Not reachable through Spring (it refuses enable-exponential-backoff with
    // enable-randomized-wait), but resilience4j's builder takes
    // ofExponentialRandomBackoff(1000, 2, 0.5, 3000): attempt 3 is 4000 ± 50 %, then ≤ 3000.
    let c = BreakerConfig {
        wait_duration_in_open_state_ms: 1_000,
        open_wait_multiplier: 2.0,
        open_wait_max_ms: Some(3_000),
        open_wait_randomization_factor: Some(0.5),
        ..defaults()
    };
    assert_eq!(open_wait_ms(&c, 1, || 0.0), 500);
    assert_eq!(open_wait_ms(&c, 3, || 0.0), 2_000);
    assert_eq!(open_wait_ms(&c, 3, || 0.25), 3_000);
    assert_eq!(open_wait_ms(&c, 3, || 0.999), 3_000);
}

// ---- HALF_OPEN ----

#[test]
fn half_open_permits_exactly_the_permitted_number_of_calls() {
    let c = count_based(10, 10, 4);
    let mut cb = half_open(&c, T0);
    for _ in 0..4 {
        assert_eq!(
            cb.try_acquire_permission(&c, T0, mid_random),
            (Permission::Permitted, None)
        );
    }
    for _ in 0..3 {
        assert_eq!(
            cb.try_acquire_permission(&c, T0, mid_random),
            (not_permitted(State::HalfOpen, None), None)
        );
    }
}

#[test]
fn half_open_closes_when_the_trial_calls_stay_below_the_thresholds() {
    let c = count_based(10, 10, 4);
    let mut cb = half_open(&c, T0);
    for _ in 0..4 {
        cb.try_acquire_permission(&c, T0, mid_random);
    }
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Failure, 1, mid_random).1,
        None
    );
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 1, mid_random).1,
        None
    );
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 1, mid_random).1,
        None
    );
    let s = cb.snapshot(&c, T0);
    assert_eq!(
        (s.state, s.buffered_calls, s.failure_rate),
        (State::HalfOpen, 3, -1.0)
    );
    // 1 failure of 4 = 25 % < 50 %.
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 1, mid_random).1,
        t(State::HalfOpen, State::Closed)
    );
    // A fresh CLOSED window.
    let s = cb.snapshot(&c, T0);
    assert_eq!(
        (s.state, s.buffered_calls, s.failure_rate),
        (State::Closed, 0, -1.0)
    );
}

#[test]
fn half_open_reopens_when_the_trial_calls_reach_a_threshold() {
    let c = count_based(10, 10, 4);
    let mut cb = half_open(&c, T0);
    for _ in 0..4 {
        cb.try_acquire_permission(&c, T0, mid_random);
    }
    for outcome in [Outcome::Failure, Outcome::Success, Outcome::Success] {
        assert_eq!(cb.on_result(&c, T0, outcome, 1, mid_random).1, None);
    }
    // 2 failures of 4 = 50 %.
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Failure, 1, mid_random).1,
        t(State::HalfOpen, State::Open)
    );
    let s = cb.snapshot(&c, T0);
    // OPEN keeps the trial window (resilience4j hands the metrics over).
    assert_eq!(
        (s.state, s.buffered_calls, s.failure_rate),
        (State::Open, 4, 50.0)
    );
    assert_eq!(s.open_remaining_ms, Some(10_000));
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 1, mid_random).0,
        not_permitted(State::Open, Some(9_999))
    );
    // Late trial results go into that window, still no transition.
    assert_eq!(
        cb.on_result(&c, T0 + 1, Outcome::Success, 1, mid_random).1,
        None
    );
    assert_eq!(cb.snapshot(&c, T0 + 1).failure_rate, 25.0);
}

#[test]
fn half_open_decides_after_the_smaller_of_minimum_calls_and_permitted_calls() {
    // resilience4j: the trial window is COUNT_BASED of the permitted size, so its minimum is
    // min(minimum-number-of-calls, permitted-number-of-calls-in-half-open-state).
    let c = count_based(10, 2, 5);
    let mut cb = half_open(&c, T0);
    for _ in 0..5 {
        cb.try_acquire_permission(&c, T0, mid_random);
    }
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 1, mid_random).1,
        None
    );
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 1, mid_random).1,
        t(State::HalfOpen, State::Closed)
    );

    let mut cb = half_open(&c, T0);
    cb.try_acquire_permission(&c, T0, mid_random);
    cb.try_acquire_permission(&c, T0, mid_random);
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 1, mid_random).1,
        None
    );
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Failure, 1, mid_random).1,
        t(State::HalfOpen, State::Open)
    );
}

#[test]
fn half_open_slow_trial_calls_reopen() {
    let c = BreakerConfig {
        slow_call_duration_threshold_ms: 100,
        slow_call_rate_threshold: 50.0,
        ..count_based(10, 10, 2)
    };
    let mut cb = half_open(&c, T0);
    cb.try_acquire_permission(&c, T0, mid_random);
    cb.try_acquire_permission(&c, T0, mid_random);
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 5, mid_random).1,
        None
    );
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 500, mid_random),
        (
            RecordedKind::SlowSuccessful,
            t(State::HalfOpen, State::Open)
        )
    );
}

#[test]
fn an_ignored_trial_result_gives_its_permit_back() {
    let c = count_based(10, 10, 2);
    let mut cb = half_open(&c, T0);
    cb.try_acquire_permission(&c, T0, mid_random);
    cb.try_acquire_permission(&c, T0, mid_random);
    assert_eq!(
        cb.try_acquire_permission(&c, T0, mid_random).0,
        not_permitted(State::HalfOpen, None)
    );
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Ignored, 1, mid_random),
        (RecordedKind::Ignored, None)
    );
    assert_eq!(cb.snapshot(&c, T0).buffered_calls, 0);
    assert_eq!(
        cb.try_acquire_permission(&c, T0, mid_random).0,
        Permission::Permitted
    );
    assert_eq!(
        cb.try_acquire_permission(&c, T0, mid_random).0,
        not_permitted(State::HalfOpen, None)
    );
}

#[test]
fn a_released_permission_returns_a_trial_permit_but_never_more_than_permitted() {
    let c = count_based(10, 10, 2);
    let mut cb = half_open(&c, T0);
    cb.try_acquire_permission(&c, T0, mid_random);
    cb.release_permission(&c);
    cb.release_permission(&c);
    cb.release_permission(&c);
    assert_eq!(
        cb.try_acquire_permission(&c, T0, mid_random).0,
        Permission::Permitted
    );
    assert_eq!(
        cb.try_acquire_permission(&c, T0, mid_random).0,
        Permission::Permitted
    );
    assert_eq!(
        cb.try_acquire_permission(&c, T0, mid_random).0,
        not_permitted(State::HalfOpen, None)
    );
    // Elsewhere releasing is a no-op.
    let mut closed = CircuitBreaker::new(&c, T0, mid_random);
    closed.release_permission(&c);
    assert_eq!(closed, CircuitBreaker::new(&c, T0, mid_random));
}

#[test]
fn half_open_moves_to_open_after_the_max_wait_on_tick() {
    let c = BreakerConfig {
        max_wait_duration_in_half_open_state_ms: 5_000,
        wait_duration_in_open_state_ms: 1_000,
        open_wait_multiplier: 2.0,
        ..count_based(10, 10, 3)
    };
    let mut cb = half_open(&c, T0);
    assert_eq!(cb.on_tick(&c, T0 + 4_999, mid_random), None);
    assert_eq!(
        cb.on_tick(&c, T0 + 5_000, mid_random),
        t(State::HalfOpen, State::Open)
    );
    // Re-opening from HALF_OPEN counts as another attempt: 2 × 1 s.
    assert_eq!(cb.snapshot(&c, T0 + 5_000).open_remaining_ms, Some(2_000));
}

#[test]
fn half_open_max_wait_is_also_checked_when_a_call_asks() {
    let c = BreakerConfig {
        max_wait_duration_in_half_open_state_ms: 5_000,
        ..count_based(10, 10, 3)
    };
    let mut cb = half_open(&c, T0);
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 4_999, mid_random),
        (Permission::Permitted, None)
    );
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 5_000, mid_random),
        (
            not_permitted(State::Open, Some(10_000)),
            t(State::HalfOpen, State::Open)
        )
    );
}

#[test]
fn half_open_without_max_wait_waits_for_its_trial_calls_forever() {
    let c = count_based(10, 10, 1);
    let mut cb = half_open(&c, T0);
    cb.try_acquire_permission(&c, T0, mid_random);
    assert_eq!(cb.on_tick(&c, u64::MAX, mid_random), None);
    assert_eq!(
        cb.try_acquire_permission(&c, u64::MAX, mid_random),
        (not_permitted(State::HalfOpen, None), None)
    );
}

#[test]
fn transition_to_state_after_wait_duration_defaults_to_open() {
    // CircuitBreakerConfig.DEFAULT_TRANSITION_TO_STATE_AFTER_WAIT_DURATION = State.OPEN.
    assert_eq!(
        defaults().transition_to_state_after_wait_duration,
        StateAfterWait::Open
    );
}

#[test]
fn circuit_breaker_transitions_to_closed_after_wait_duration_in_half_open_state() {
    // CircuitBreakerStateMachineTest.circuitBreakerTransitionsToClosedAfterWaitDurationInHalfOpenState:
    // maxWaitDurationInHalfOpenState 1 s, transitionToStateAfterWaitDuration CLOSED.
    let c = BreakerConfig {
        max_wait_duration_in_half_open_state_ms: 1_000,
        transition_to_state_after_wait_duration: StateAfterWait::Closed,
        open_wait_multiplier: 2.0,
        ..count_based(2, 2, 4)
    };
    let mut cb = half_open(&c, T0);
    assert_eq!(cb.on_tick(&c, T0 + 999, mid_random), None);
    assert_eq!(
        cb.on_tick(&c, T0 + 1_000, mid_random),
        t(State::HalfOpen, State::Closed)
    );
    // A fresh CLOSED breaker: empty window, and the next opening is the first again.
    assert_eq!(cb, CircuitBreaker::new(&c, T0, mid_random));
    fail(&mut cb, &c, T0 + 1_000);
    assert_eq!(fail(&mut cb, &c, T0 + 1_000), t(State::Closed, State::Open));
    assert_eq!(cb.snapshot(&c, T0 + 1_000).open_remaining_ms, Some(10_000));
}

#[test]
fn after_the_half_open_wait_a_call_asking_finds_the_breaker_closed_and_is_permitted() {
    let c = BreakerConfig {
        max_wait_duration_in_half_open_state_ms: 1_000,
        transition_to_state_after_wait_duration: StateAfterWait::Closed,
        ..count_based(2, 2, 1)
    };
    let mut cb = half_open(&c, T0);
    // The only trial call is out and never reports.
    assert_eq!(
        cb.try_acquire_permission(&c, T0, mid_random).0,
        Permission::Permitted
    );
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 999, mid_random),
        (not_permitted(State::HalfOpen, None), None)
    );
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 1_000, mid_random),
        (Permission::Permitted, t(State::HalfOpen, State::Closed))
    );
}

#[test]
fn transition_after_wait_duration_needs_a_max_wait_in_half_open_state() {
    // resilience4j schedules it only when maxWaitDurationInHalfOpenState >= 1 ms.
    let c = BreakerConfig {
        transition_to_state_after_wait_duration: StateAfterWait::Closed,
        ..count_based(2, 2, 1)
    };
    let mut cb = half_open(&c, T0);
    assert_eq!(cb.on_tick(&c, u64::MAX, mid_random), None);
    assert_eq!(cb.state(), State::HalfOpen);
}

// ---- DISABLED, METRICS_ONLY, FORCED_OPEN ----

#[test]
fn disabled_permits_everything_records_nothing_and_never_transitions() {
    let c = BreakerConfig {
        initial_state: InitialState::Disabled,
        ..count_based(2, 2, 1)
    };
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    assert_eq!(cb.state(), State::Disabled);
    for _ in 0..10 {
        assert_eq!(
            cb.try_acquire_permission(&c, T0, mid_random),
            (Permission::Permitted, None)
        );
        assert_eq!(
            cb.on_result(&c, T0, Outcome::Failure, 1, mid_random),
            (RecordedKind::Failed, None)
        );
    }
    assert_eq!(cb.on_tick(&c, T0 + 1_000_000, mid_random), None);
    let s = cb.snapshot(&c, T0);
    assert_eq!(
        (
            s.state,
            s.buffered_calls,
            s.failure_rate,
            s.open_remaining_ms
        ),
        (State::Disabled, 0, -1.0, None)
    );
}

#[test]
fn metrics_only_permits_everything_records_and_never_transitions() {
    let c = BreakerConfig {
        initial_state: InitialState::MetricsOnly,
        ..count_based(4, 4, 1)
    };
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    assert_eq!(cb.state(), State::MetricsOnly);
    for _ in 0..10 {
        assert_eq!(
            cb.try_acquire_permission(&c, T0, mid_random),
            (Permission::Permitted, None)
        );
        assert_eq!(
            cb.on_result(&c, T0, Outcome::Failure, 1, mid_random),
            (RecordedKind::Failed, None)
        );
    }
    assert_eq!(cb.on_tick(&c, T0 + 1_000_000, mid_random), None);
    let s = cb.snapshot(&c, T0);
    assert_eq!(
        (s.state, s.buffered_calls, s.failure_rate),
        (State::MetricsOnly, 4, 100.0)
    );
}

#[test]
fn forced_open_permits_nothing_ever() {
    let c = BreakerConfig {
        initial_state: InitialState::ForcedOpen,
        automatic_transition_from_open_to_half_open_enabled: true,
        ..count_based(2, 2, 1)
    };
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for now in [T0, T0 + 1_000_000, u64::MAX] {
        assert_eq!(
            cb.try_acquire_permission(&c, now, mid_random),
            (not_permitted(State::ForcedOpen, None), None)
        );
        assert_eq!(cb.on_tick(&c, now, mid_random), None);
    }
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Failure, 1, mid_random).1,
        None
    );
    let s = cb.snapshot(&c, T0);
    assert_eq!(
        (
            s.state,
            s.buffered_calls,
            s.failure_rate,
            s.open_remaining_ms
        ),
        (State::ForcedOpen, 0, -1.0, None)
    );
}

#[test]
fn transitions_are_reported_after_the_state_changed() {
    let c = count_based(1, 1, 1);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    let mut seen = vec![];
    let mut check = |cb: &CircuitBreaker, tr: Option<Transition>| {
        if let Some(tr) = tr {
            assert_eq!(cb.state(), tr.to);
            seen.push((tr.from, tr.to));
        }
    };
    let tr = fail(&mut cb, &c, T0);
    check(&cb, tr);
    let tr = cb.try_acquire_permission(&c, T0 + 10_001, mid_random).1;
    check(&cb, tr);
    let tr = cb
        .on_result(&c, T0 + 10_001, Outcome::Failure, 1, mid_random)
        .1;
    check(&cb, tr);
    let tr = cb.try_acquire_permission(&c, T0 + 20_002, mid_random).1;
    check(&cb, tr);
    let tr = cb
        .on_result(&c, T0 + 20_002, Outcome::Success, 1, mid_random)
        .1;
    check(&cb, tr);
    use State::*;
    assert_eq!(
        seen,
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed)
        ]
    );
}

// ---- initial-state ----

#[test]
fn circuit_breaker_initialize_in_closed_state() {
    // CircuitBreakerStateMachineTest.circuitBreakerInitializeInClosedState.
    let c = BreakerConfig {
        initial_state: InitialState::Closed,
        ..count_based(5, 5, 4)
    };
    assert_eq!(
        CircuitBreaker::new(&c, T0, mid_random).state(),
        State::Closed
    );
}

#[test]
fn circuit_breaker_initialize_in_open_state() {
    // CircuitBreakerStateMachineTest.circuitBreakerInitializeInOpenState: OPEN, 2 s wait,
    // automatic transition; here the tick at the end of the wait moves it to HALF_OPEN.
    let c = BreakerConfig {
        initial_state: InitialState::Open,
        sliding_window_type: SlidingWindowType::TimeBased,
        wait_duration_in_open_state_ms: 2_000,
        automatic_transition_from_open_to_half_open_enabled: true,
        ..count_based(1, 100, 4)
    };
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    assert_eq!(cb.state(), State::Open);
    // The wait started when the breaker was created.
    assert_eq!(
        cb.try_acquire_permission(&c, T0 + 500, mid_random),
        (not_permitted(State::Open, Some(1_500)), None)
    );
    assert_eq!(cb.on_tick(&c, T0 + 1_999, mid_random), None);
    assert_eq!(
        cb.on_tick(&c, T0 + 2_000, mid_random),
        t(State::Open, State::HalfOpen)
    );
    // OPEN carried the CLOSED window (CircuitBreakerMetrics.forClosed), empty.
    let s = cb.snapshot(&c, T0 + 2_000);
    assert_eq!((s.state, s.buffered_calls), (State::HalfOpen, 0));
}

#[test]
fn an_initial_open_state_is_the_first_opening() {
    // getCircuitBreakerStateObjectFromState: new OpenState(1, ...): a failed trial re-opens
    // with attempts 2, a randomized wait draws for the initial opening too.
    let c = BreakerConfig {
        initial_state: InitialState::Open,
        wait_duration_in_open_state_ms: 1_000,
        open_wait_multiplier: 2.0,
        ..count_based(2, 2, 1)
    };
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    assert_eq!(cb.snapshot(&c, T0).open_remaining_ms, Some(1_000));
    cb.try_acquire_permission(&c, T0 + 1_001, mid_random);
    assert_eq!(
        cb.on_result(&c, T0 + 1_001, Outcome::Failure, 1, mid_random)
            .1,
        t(State::HalfOpen, State::Open)
    );
    assert_eq!(cb.snapshot(&c, T0 + 1_001).open_remaining_ms, Some(2_000));
    let randomized = BreakerConfig {
        open_wait_randomization_factor: Some(0.5),
        ..c
    };
    let cb = CircuitBreaker::new(&randomized, T0, || 0.0);
    assert_eq!(cb.snapshot(&randomized, T0).open_remaining_ms, Some(500));
}

#[test]
fn an_initial_half_open_state_runs_trial_calls_from_creation() {
    // getCircuitBreakerStateObjectFromState: new HalfOpenState(1).
    let c = BreakerConfig {
        initial_state: InitialState::HalfOpen,
        wait_duration_in_open_state_ms: 1_000,
        open_wait_multiplier: 3.0,
        max_wait_duration_in_half_open_state_ms: 5_000,
        ..count_based(10, 10, 2)
    };
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    assert_eq!(cb.state(), State::HalfOpen);
    for _ in 0..2 {
        assert_eq!(
            cb.try_acquire_permission(&c, T0, mid_random).0,
            Permission::Permitted
        );
    }
    assert_eq!(
        cb.try_acquire_permission(&c, T0, mid_random).0,
        not_permitted(State::HalfOpen, None)
    );
    // Both trial calls fail: OPEN as the second opening, 1 s × 3.
    cb.on_result(&c, T0, Outcome::Failure, 1, mid_random);
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Failure, 1, mid_random).1,
        t(State::HalfOpen, State::Open)
    );
    assert_eq!(cb.snapshot(&c, T0).open_remaining_ms, Some(3_000));
    // The max wait in HALF_OPEN runs from creation.
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    assert_eq!(cb.on_tick(&c, T0 + 4_999, mid_random), None);
    assert_eq!(
        cb.on_tick(&c, T0 + 5_000, mid_random),
        t(State::HalfOpen, State::Open)
    );
    // Successful trial calls close it.
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for _ in 0..2 {
        cb.try_acquire_permission(&c, T0, mid_random);
    }
    cb.on_result(&c, T0, Outcome::Success, 1, mid_random);
    assert_eq!(
        cb.on_result(&c, T0, Outcome::Success, 1, mid_random).1,
        t(State::HalfOpen, State::Closed)
    );
}

// ---- encoding ----

/// One breaker per state and window shape, with data in its window.
fn breakers_in_every_state() -> Vec<(BreakerConfig, CircuitBreaker)> {
    let mut all = vec![];
    let c = count_based(100, 100, 10);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for i in 0..37u64 {
        cb.on_result(
            &c,
            T0,
            if i % 3 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            i * 3_000,
            mid_random,
        );
    }
    all.push((c.clone(), cb));
    let c = time_based(10, 100);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for i in 0..30u64 {
        cb.on_result(
            &c,
            T0 + i * 400,
            if i % 4 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            i * 5_000,
            mid_random,
        );
    }
    all.push((c.clone(), cb));
    // OPEN with the CLOSED window, both types.
    let c = count_based(10, 5, 3);
    all.push((c.clone(), opened(&c, T0)));
    let c = time_based(10, 3);
    all.push((c.clone(), opened(&c, T0)));
    // HALF_OPEN with trial results and permits taken.
    let c = BreakerConfig {
        sliding_window_type: SlidingWindowType::TimeBased,
        ..count_based(10, 10, 5)
    };
    let mut cb = half_open(&c, T0);
    for _ in 0..3 {
        cb.try_acquire_permission(&c, T0, mid_random);
    }
    cb.on_result(&c, T0, Outcome::Failure, 1, mid_random);
    all.push((c.clone(), cb.clone()));
    // OPEN with the trial window.
    cb.on_result(&c, T0, Outcome::Failure, 1, mid_random);
    cb.on_result(&c, T0, Outcome::Failure, 1, mid_random);
    cb.on_result(&c, T0, Outcome::Failure, 1, mid_random);
    cb.on_result(&c, T0, Outcome::Failure, 1, mid_random);
    assert_eq!(cb.state(), State::Open);
    all.push((c.clone(), cb));
    for initial in [
        InitialState::Disabled,
        InitialState::ForcedOpen,
        InitialState::MetricsOnly,
        InitialState::Open,
        InitialState::HalfOpen,
    ] {
        let c = BreakerConfig {
            initial_state: initial,
            ..count_based(10, 5, 3)
        };
        let mut cb = CircuitBreaker::new(&c, T0, mid_random);
        cb.on_result(&c, T0, Outcome::Failure, 1, mid_random);
        all.push((c, cb));
    }
    all
}

#[test]
fn every_state_survives_an_encode_decode_round_trip() {
    let all = breakers_in_every_state();
    let states: Vec<State> = all.iter().map(|(_, cb)| cb.state()).collect();
    for s in [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::Disabled,
        State::ForcedOpen,
        State::MetricsOnly,
    ] {
        assert!(states.contains(&s), "{s:?} not covered");
    }
    for (c, cb) in &all {
        let bytes = cb.encode(c);
        assert_eq!(bytes.first(), Some(&1), "version byte");
        let back = CircuitBreaker::decode(&bytes, c).unwrap();
        assert_eq!(&back, cb);
        assert_eq!(back.encode(c), bytes);
        assert_eq!(back.snapshot(c, T0 + 1), cb.snapshot(c, T0 + 1));
    }
}

#[test]
fn the_encoding_layout_is_as_documented() {
    let c = count_based(100, 100, 10);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for outcome in [
        Outcome::Failure,
        Outcome::Success,
        Outcome::Success,
        Outcome::Failure,
        Outcome::Success,
    ] {
        cb.on_result(
            &c,
            T0,
            outcome,
            if outcome == Outcome::Success {
                0
            } else {
                60_001
            },
            mid_random,
        );
    }
    let mut expected = vec![1];
    expected.extend_from_slice(&config_fingerprint(&c).to_le_bytes());
    // CLOSED, count window, 5 calls: slow-failed, ok, ok, slow-failed | ok.
    expected.extend_from_slice(&[0, 0, 5, 0b11_00_00_11, 0b00]);
    assert_eq!(cb.encode(&c), expected);
}

#[test]
fn a_full_hundred_call_window_encodes_in_under_64_bytes() {
    let c = defaults();
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for i in 0..150u64 {
        cb.on_result(
            &c,
            T0,
            if i % 5 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            i * 1_000,
            mid_random,
        );
    }
    assert_eq!(cb.snapshot(&c, T0).buffered_calls, 100);
    let bytes = cb.encode(&c);
    assert!(bytes.len() < 64, "{} bytes", bytes.len());
    assert_eq!(bytes.len(), 37);
}

#[test]
fn a_full_window_of_the_maximum_size_round_trips_in_two_and_a_half_kilobytes() {
    // crate::policy::MAX_WINDOW_SIZE: 2 bits per call, header 10 bytes, kind 1, varint 2.
    // (METRICS_ONLY: the same window, filled without evaluating it after every call.)
    let c = BreakerConfig {
        initial_state: InitialState::MetricsOnly,
        ..count_based(crate::policy::MAX_WINDOW_SIZE, u32::MAX, 10)
    };
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    for i in 0..crate::policy::MAX_WINDOW_SIZE {
        let outcome = if i % 7 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        cb.on_result(&c, T0, outcome, u64::from(i % 3) * 30_000, mid_random);
    }
    let bytes = cb.encode(&c);
    assert_eq!(bytes.len(), 10 + 1 + 2 + 2_500);
    assert_eq!(CircuitBreaker::decode(&bytes, &c), Ok(cb));
}

#[test]
fn decoding_with_another_config_reports_the_change() {
    let c = count_based(10, 5, 3);
    let bytes = CircuitBreaker::new(&c, T0, mid_random).encode(&c);
    let other = count_based(10, 6, 3);
    assert_eq!(
        CircuitBreaker::decode(&bytes, &other),
        Err(DecodeError::ConfigChanged)
    );
}

#[test]
fn decoding_an_unknown_version_says_so() {
    let c = count_based(10, 5, 3);
    let mut bytes = CircuitBreaker::new(&c, T0, mid_random).encode(&c);
    bytes[0] = 2;
    assert_eq!(
        CircuitBreaker::decode(&bytes, &c),
        Err(DecodeError::UnknownVersion(2))
    );
}

#[test]
fn decoding_rejects_trailing_and_inconsistent_bytes() {
    let c = count_based(4, 4, 3);
    let mut cb = CircuitBreaker::new(&c, T0, mid_random);
    fail(&mut cb, &c, T0);
    let bytes = cb.encode(&c);
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        CircuitBreaker::decode(&trailing, &c),
        Err(DecodeError::Corrupt)
    );
    assert_eq!(CircuitBreaker::decode(&[], &c), Err(DecodeError::Corrupt));
    // More calls than the window holds.
    let mut header = bytes[..9].to_vec();
    header.extend_from_slice(&[0, 0, 5, 0, 0]);
    assert_eq!(
        CircuitBreaker::decode(&header, &c),
        Err(DecodeError::Corrupt)
    );
    // A TIME window under a COUNT_BASED config.
    let mut wrong_kind = bytes[..9].to_vec();
    wrong_kind.extend_from_slice(&[0, 1, 0]);
    assert_eq!(
        CircuitBreaker::decode(&wrong_kind, &c),
        Err(DecodeError::Corrupt)
    );
    // Unknown state.
    let mut bad_state = bytes[..9].to_vec();
    bad_state.push(6);
    assert_eq!(
        CircuitBreaker::decode(&bad_state, &c),
        Err(DecodeError::Corrupt)
    );
}

/// xorshift64*: deterministic noise for the fuzz-ish tests.
struct Noise(u64);
impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn decoding_never_panics_on_prefixes_mutations_or_noise() {
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    for (c, cb) in breakers_in_every_state() {
        let bytes = cb.encode(&c);
        for end in 0..bytes.len() {
            assert!(
                CircuitBreaker::decode(&bytes[..end], &c).is_err(),
                "prefix {end} decoded"
            );
        }
        for _ in 0..2_000 {
            let mut mutated = bytes.clone();
            let i = (noise.next() % mutated.len() as u64) as usize;
            mutated[i] ^= (noise.next() % 255 + 1) as u8;
            if let Ok(back) = CircuitBreaker::decode(&mutated, &c) {
                // Whatever decodes is a valid breaker: it re-encodes to the same bytes and works.
                assert_eq!(back.encode(&c), mutated);
                let mut back = back;
                back.try_acquire_permission(&c, T0, mid_random);
                back.on_result(&c, T0, Outcome::Failure, 1, mid_random);
                back.on_tick(&c, T0, mid_random);
                back.snapshot(&c, T0);
            }
        }
        // Noise after a valid header exercises the state decoders.
        for _ in 0..2_000 {
            let len = (noise.next() % 64) as usize;
            let mut random = bytes[..10.min(bytes.len())].to_vec();
            random.extend((0..len).map(|_| noise.next() as u8));
            let _ = CircuitBreaker::decode(&random, &c);
        }
    }
    let c = defaults();
    for _ in 0..5_000 {
        let len = (noise.next() % 80) as usize;
        let random: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
        let _ = CircuitBreaker::decode(&random, &c);
    }
}

// ---- fingerprint ----

#[test]
fn the_fingerprint_changes_when_any_field_changes() {
    let base = defaults();
    type Change = fn(&mut BreakerConfig);
    let changes: [(&str, Change); 25] = [
        ("failure_rate_threshold", |c| {
            c.failure_rate_threshold = 50.5
        }),
        ("slow_call_rate_threshold", |c| {
            c.slow_call_rate_threshold = 99.0
        }),
        ("slow_call_duration_threshold_ms", |c| {
            c.slow_call_duration_threshold_ms += 1
        }),
        ("sliding_window_type", |c| {
            c.sliding_window_type = SlidingWindowType::TimeBased
        }),
        ("sliding_window_size", |c| c.sliding_window_size += 1),
        ("minimum_number_of_calls", |c| {
            c.minimum_number_of_calls += 1
        }),
        ("wait_duration_in_open_state_ms", |c| {
            c.wait_duration_in_open_state_ms += 1
        }),
        ("automatic_transition", |c| {
            c.automatic_transition_from_open_to_half_open_enabled = true
        }),
        ("permitted_number_of_calls", |c| {
            c.permitted_number_of_calls_in_half_open_state += 1
        }),
        ("max_wait_in_half_open", |c| {
            c.max_wait_duration_in_half_open_state_ms = 1
        }),
        ("open_wait_multiplier", |c| c.open_wait_multiplier = 1.5),
        ("open_wait_max_ms some", |c| c.open_wait_max_ms = Some(0)),
        ("initial_state", |c| {
            c.initial_state = InitialState::MetricsOnly
        }),
        ("initial_state open", |c| {
            c.initial_state = InitialState::Open
        }),
        ("initial_state half open", |c| {
            c.initial_state = InitialState::HalfOpen
        }),
        ("transition_to_state_after_wait_duration", |c| {
            c.transition_to_state_after_wait_duration = StateAfterWait::Closed
        }),
        ("open_wait_randomization_factor", |c| {
            c.open_wait_randomization_factor = Some(0.5)
        }),
        ("open_wait_randomization_factor 0", |c| {
            c.open_wait_randomization_factor = Some(0.0)
        }),
        ("record", |c| c.record = vec![OutcomeMatcher::Status(503)]),
        ("ignore", |c| c.ignore = vec![OutcomeMatcher::Status(503)]),
        ("record class", |c| {
            c.record = vec![OutcomeMatcher::StatusClass(5)]
        }),
        ("record vs ignore", |c| {
            c.record = vec![OutcomeMatcher::Timeout];
            c.ignore = vec![];
        }),
        ("record grpc error", |c| {
            c.record = vec![OutcomeMatcher::GrpcError]
        }),
        ("record grpc status", |c| {
            c.record = vec![OutcomeMatcher::GrpcStatus(14)]
        }),
        ("record another grpc status", |c| {
            c.record = vec![OutcomeMatcher::GrpcStatus(4)]
        }),
    ];
    let mut seen = vec![config_fingerprint(&base)];
    for (name, change) in changes {
        let mut c = base.clone();
        change(&mut c);
        let f = config_fingerprint(&c);
        assert!(!seen.contains(&f), "{name} did not change the fingerprint");
        seen.push(f);
    }
    // Moving a matcher from record to ignore is a change too.
    let a = BreakerConfig {
        record: vec![OutcomeMatcher::Reset],
        ..defaults()
    };
    let b = BreakerConfig {
        ignore: vec![OutcomeMatcher::Reset],
        ..defaults()
    };
    assert_ne!(config_fingerprint(&a), config_fingerprint(&b));
}

#[test]
fn the_fingerprint_is_stable_across_builds() {
    // Pinned: a change here means every stored breaker resets on upgrade. Bump the encoding
    // version rather than silently changing the canonical form.
    assert_eq!(
        config_fingerprint(&defaults()),
        config_fingerprint(&defaults().clone())
    );
    assert_eq!(config_fingerprint(&defaults()), PINNED_DEFAULTS_FINGERPRINT);
}

const PINNED_DEFAULTS_FINGERPRINT: u64 = 0x12dd_0fbc_cae2_5610;

// ---- the request path's peeks agree with the full decode ----

#[test]
fn peeked_permission_agrees_with_try_acquire_in_every_state() {
    let c = count_based(4, 2, 2);
    let fp = config_fingerprint(&c);
    let mut disabled = c.clone();
    disabled.initial_state = InitialState::Disabled;
    let mut metrics_only = c.clone();
    metrics_only.initial_state = InitialState::MetricsOnly;
    let mut forced = c.clone();
    forced.initial_state = InitialState::ForcedOpen;
    let cases: Vec<(BreakerConfig, CircuitBreaker)> = vec![
        (c.clone(), CircuitBreaker::new(&c, 0, mid_random)),
        (c.clone(), opened(&c, 0)),
        (c.clone(), half_open(&c, 20_000)),
        (
            disabled.clone(),
            CircuitBreaker::new(&disabled, 0, mid_random),
        ),
        (
            metrics_only.clone(),
            CircuitBreaker::new(&metrics_only, 0, mid_random),
        ),
        (forced.clone(), CircuitBreaker::new(&forced, 0, mid_random)),
    ];
    for (config, cb) in cases {
        let fp = config_fingerprint(&config);
        let bytes = cb.encode_pinned(fp);
        assert_eq!(bytes, cb.encode(&config));
        let mut after = cb.clone();
        let (permission, transition) = after.try_acquire_permission(&config, 20_000, mid_random);
        let unchanged = permission == Permission::Permitted
            && transition.is_none()
            && after.encode(&config) == bytes;
        assert_eq!(
            CircuitBreaker::stored_permits_unchanged(&bytes, fp),
            unchanged,
            "{:?}",
            cb.state()
        );
    }
    // Another config's bytes, or not the format: never peeked as permitted.
    let other =
        CircuitBreaker::new(&count_based(5, 2, 2), 0, mid_random).encode(&count_based(5, 2, 2));
    assert!(!CircuitBreaker::stored_permits_unchanged(&other, fp));
    assert!(!CircuitBreaker::stored_permits_unchanged(&[], fp));
    assert!(!CircuitBreaker::stored_permits_unchanged(&[2; 10], fp));
}

#[test]
fn a_fast_success_changes_nothing_only_in_a_full_window_of_fast_successes() {
    let c = count_based(5, 3, 2);
    let fp = config_fingerprint(&c);
    let unchanged_by_success = |cb: &CircuitBreaker, config: &BreakerConfig| {
        let bytes = cb.encode(config);
        let mut after = cb.clone();
        let result = after.on_result(config, 1, Outcome::Success, 0, mid_random);
        let truly = result == (RecordedKind::Successful, None) && after.encode(config) == bytes;
        let peeked = CircuitBreaker::stored_unchanged_by_fast_success(
            &bytes,
            config,
            config_fingerprint(config),
        );
        assert!(!peeked || truly, "peek says unchanged, decode disagrees");
        peeked
    };
    let mut cb = CircuitBreaker::new(&c, 0, mid_random);
    for i in 0..5 {
        assert!(
            !unchanged_by_success(&cb, &c),
            "window of {i} calls is not full"
        );
        succeed(&mut cb, &c, 0);
    }
    assert!(unchanged_by_success(&cb, &c));
    // One failure anywhere in the window: a success shifts it.
    fail(&mut cb, &c, 0);
    for _ in 0..4 {
        assert!(!unchanged_by_success(&cb, &c));
        succeed(&mut cb, &c, 0);
    }
    succeed(&mut cb, &c, 0);
    assert!(unchanged_by_success(&cb, &c));
    // A slow success in the window counts too.
    cb.try_acquire_permission(&c, 0, mid_random);
    cb.on_result(
        &c,
        0,
        Outcome::Success,
        c.slow_call_duration_threshold_ms + 1,
        mid_random,
    );
    assert!(!unchanged_by_success(&cb, &c));
    // Windows of other shapes never qualify.
    let time = time_based(5, 3);
    let mut tb = CircuitBreaker::new(&time, 0, mid_random);
    for _ in 0..10 {
        succeed(&mut tb, &time, 0);
    }
    assert!(!unchanged_by_success(&tb, &time));
    assert!(!unchanged_by_success(&half_open(&c, 20_000), &c));
    assert!(!CircuitBreaker::stored_unchanged_by_fast_success(
        &cb.encode(&c),
        &count_based(6, 3, 2),
        fp
    ));
}

/// `refuses_until` promises what `try_acquire_permission` does: OPEN refuses, unchanged, up to
/// and including its end (the next instant turns it HALF_OPEN), FORCED_OPEN always; the other
/// states make no promise.
#[test]
fn refuses_until_is_what_permission_answers_without_a_change() {
    let c = count_based(4, 2, 1);
    let cb = opened(&c, T0);
    let until = T0 + c.wait_duration_in_open_state_ms;
    assert_eq!(cb.refuses_until(), Some((State::Open, Some(until))));
    for now in [T0, until - 1, until] {
        let mut copy = cb.clone();
        assert_eq!(
            copy.try_acquire_permission(&c, now, mid_random),
            (not_permitted(State::Open, Some((until - now).max(1))), None)
        );
        assert_eq!(copy, cb, "unchanged at {now}");
    }
    let mut after = cb.clone();
    assert_eq!(
        after.try_acquire_permission(&c, until + 1, mid_random).1,
        t(State::Open, State::HalfOpen)
    );

    let forced = BreakerConfig {
        initial_state: InitialState::ForcedOpen,
        ..count_based(2, 2, 1)
    };
    let cb = CircuitBreaker::new(&forced, T0, mid_random);
    assert_eq!(cb.refuses_until(), Some((State::ForcedOpen, None)));

    assert_eq!(
        CircuitBreaker::new(&c, T0, mid_random).refuses_until(),
        None
    );
    assert_eq!(half_open(&c, T0).refuses_until(), None);
}
