//! resilience4j-core's `IntervalFunction`, the one arithmetic behind retry waits
//! ([`crate::retry::backoff`]) and the circuit breaker's open-state wait
//! ([`crate::breaker::open_wait_ms`]), computed exactly as resilience4j 2.x does:
//!
//! - exponential growth is iterated in whole milliseconds: attempt 1 waits the initial
//!   interval, each further attempt `(long) (previous * multiplier)`
//!   (`LongStream.iterate(initial, x -> (long) (x * multiplier)).skip(attempt - 1)`), so
//!   100 ms × 1.5 gives 100, 150, 225, 337, 505, 757, 1135, 1702;
//! - randomization comes next: `randomize(x, f)` draws `min + random · (max − min + 1)` with
//!   `min = x − f·x`, `max = x + f·x`, at least 1 ms, truncated (`(long)`), so 100 ms ± 50 %
//!   spans 50..=150;
//! - the cap comes last, on the randomized value (`Math.min(interval, maxIntervalMillis)`), so
//!   no wait ever exceeds it.
//!
//! `of`, `ofRandomized`, `ofExponentialBackoff` and `ofExponentialRandomBackoff` are all this
//! one function: `of` and `ofRandomized` are a multiplier of 1.0 without a cap.
//!
//! Differences, all at the edges where resilience4j throws or overflows: attempt 0 counts as
//! attempt 1 (resilience4j throws); growth saturates at `u64::MAX` ms (Java's `long` at
//! `Long.MAX_VALUE`); a NaN multiplier yields 0 as Java's `(long) NaN`. Growth is iterated
//! step by step for the first [`STEPWISE_ATTEMPTS`] attempts (or until it stops changing);
//! beyond that the remaining steps are one `powi`.

/// Attempts up to which the exponential interval is iterated exactly, step by step. Retries
/// stop long before (max-attempts); the breaker's attempt counter would need 1024 re-openings
/// in a row.
pub const STEPWISE_ATTEMPTS: u32 = 1024;

/// One resilience4j `IntervalFunction`, as data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalFunction {
    /// The first interval (resilience4j requires ≥ 1 ms for the randomized and exponential
    /// variants; see [`IntervalFunction::check`]).
    pub initial_ms: u64,
    /// 1.0 for a constant interval (`of`, `ofRandomized`).
    pub multiplier: f64,
    /// `ofRandomized` / `ofExponentialRandomBackoff`'s randomization factor, in [0, 1].
    pub randomization_factor: Option<f64>,
    /// The cap of `ofExponentialBackoff` / `ofExponentialRandomBackoff` with a max interval.
    pub max_ms: Option<u64>,
}

impl IntervalFunction {
    /// The interval before attempt `attempt` (1 = the first). `random01` — a uniform sample
    /// in [0, 1), resilience4j's `Math.random()` — is called only if the function is
    /// randomized.
    pub fn interval_ms(&self, attempt: u32, random01: impl FnOnce() -> f64) -> u64 {
        let mut interval = exponential(self.initial_ms, self.multiplier, attempt);
        if let Some(factor) = self.randomization_factor {
            interval = randomize(interval, factor, random01());
        }
        match self.max_ms {
            Some(max) => interval.min(max),
            None => interval,
        }
    }

    /// resilience4j's `IntervalFunctionCompanion` checks, with its messages: intervals of at
    /// least 1 ms (`checkInterval`: the initial interval and the cap), a randomization factor
    /// in [0, 1] (`checkRandomizationFactor`). Spring's binding is stricter on the factor
    /// ([0, 1)); that check belongs to the policy parser.
    pub fn check(&self) -> Result<(), String> {
        check_interval(self.initial_ms)?;
        if let Some(max) = self.max_ms {
            check_interval(max)?;
        }
        if let Some(factor) = self.randomization_factor {
            if !(0.0..=1.0).contains(&factor) {
                return Err(format!(
                    "Illegal argument randomizationFactor: {}",
                    crate::float_text::f64_text(factor)
                ));
            }
        }
        Ok(())
    }
}

fn check_interval(ms: u64) -> Result<(), String> {
    if ms < 1 {
        return Err(format!(
            "Illegal argument interval: {ms} millis is less than 1"
        ));
    }
    Ok(())
}

/// `LongStream.iterate(initial, x -> (long) (x * multiplier)).skip(attempt - 1)`: truncated
/// to whole milliseconds at every step. Rust's float-to-int `as` saturates and maps NaN to 0,
/// as Java's `(long)` does (at u64's bounds instead of long's).
pub fn exponential(initial_ms: u64, multiplier: f64, attempt: u32) -> u64 {
    let steps = attempt.saturating_sub(1);
    let mut interval = initial_ms;
    for _ in 0..steps.min(STEPWISE_ATTEMPTS) {
        let next = (interval as f64 * multiplier) as u64;
        if next == interval {
            // A fixed point stays one: every further step gives the same value.
            return interval;
        }
        interval = next;
    }
    if steps > STEPWISE_ATTEMPTS {
        let rest = i32::try_from(steps - STEPWISE_ATTEMPTS).unwrap_or(i32::MAX);
        interval = (interval as f64 * multiplier.powi(rest)) as u64;
    }
    interval
}

/// `(long) IntervalFunctionCompanion.randomize(interval, factor)` with `Math.random()` =
/// `random01`: uniform over `[x − f·x, x + f·x + 1)`, at least 1, truncated. `random01` is
/// clamped to [0, 1].
pub fn randomize(interval_ms: u64, factor: f64, random01: f64) -> u64 {
    let current = interval_ms as f64;
    let delta = factor * current;
    let min = current - delta;
    let max = current + delta;
    let randomized = min + random01.clamp(0.0, 1.0) * (max - min + 1.0);
    // Java's Math.max(1.0, NaN) is NaN and (long) NaN is 0; Rust's f64::max would give 1.0.
    if randomized.is_nan() {
        return 0;
    }
    randomized.max(1.0) as u64
}

#[cfg(test)]
mod tests {
    //! resilience4j's `IntervalFunctionTest` (resilience4j-core/src/test/java/io/github/
    //! resilience4j/core/IntervalFunctionTest.java), with `Math.random()` replaced by fixed
    //! samples spanning [0, 1).

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// Fixed stand-ins for `Math.random()`, including both ends of [0, 1).
    const SAMPLES: [f64; 7] = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999_999_999];

    fn of(initial_ms: u64) -> IntervalFunction {
        IntervalFunction {
            initial_ms,
            multiplier: 1.0,
            randomization_factor: None,
            max_ms: None,
        }
    }

    fn randomized(initial_ms: u64, factor: f64) -> IntervalFunction {
        IntervalFunction {
            randomization_factor: Some(factor),
            ..of(initial_ms)
        }
    }

    fn exponential_backoff(
        initial_ms: u64,
        multiplier: f64,
        max_ms: Option<u64>,
    ) -> IntervalFunction {
        IntervalFunction {
            multiplier,
            max_ms,
            ..of(initial_ms)
        }
    }

    fn exponential_random_backoff(
        initial_ms: u64,
        multiplier: f64,
        factor: f64,
        max_ms: Option<u64>,
    ) -> IntervalFunction {
        IntervalFunction {
            multiplier,
            max_ms,
            randomization_factor: Some(factor),
            ..of(initial_ms)
        }
    }

    fn no_random() -> f64 {
        unreachable!("an unrandomized interval function drew a random number")
    }

    #[test]
    fn should_reject_non_positive_duration() {
        // IntervalFunctionTest.shouldRejectNonPositiveDuration: 0 ms intervals and caps.
        for f in [
            of(0),
            exponential_backoff(100, 1.0, Some(0)),
            exponential_random_backoff(100, 1.0, 0.5, Some(0)),
        ] {
            assert_eq!(
                f.check(),
                Err("Illegal argument interval: 0 millis is less than 1".into())
            );
        }
    }

    #[test]
    fn should_pass_positive_duration() {
        for ms in [10, 99, 981] {
            for f in [
                of(ms),
                randomized(ms, 0.5),
                exponential_backoff(ms, 1.5, None),
                exponential_random_backoff(ms, 1.5, 0.5, None),
                exponential_backoff(ms, 1.0, Some(ms)),
                exponential_random_backoff(ms, 1.0, 0.5, Some(ms)),
            ] {
                assert_eq!(f.check(), Ok(()), "{f:?}");
            }
        }
    }

    #[test]
    fn attempt_zero_is_attempt_one_where_resilience4j_throws() {
        // IntervalFunctionTest.shouldRejectAttemptLessThenOne: resilience4j throws; the core
        // never panics and reads attempt 0 as the first.
        let f = exponential_backoff(500, 1.5, None);
        assert_eq!(f.interval_ms(0, no_random), f.interval_ms(1, no_random));
        assert_eq!(f.interval_ms(2, no_random), 750);
    }

    #[test]
    fn should_reject_out_of_bounds_randomization_factor() {
        for factor in [-0.0001, 1.0001] {
            assert_eq!(
                randomized(100, factor).check(),
                Err(format!(
                    "Illegal argument randomizationFactor: {}",
                    crate::float_text::f64_text(factor)
                ))
            );
        }
    }

    #[test]
    fn should_pass_positive_randomization_factor() {
        for factor in [0.0, 0.1, 0.25, 0.5, 0.75, 1.0] {
            assert_eq!(randomized(100, factor).check(), Ok(()));
            assert_eq!(
                exponential_random_backoff(100, 1.5, factor, None).check(),
                Ok(())
            );
        }
    }

    #[test]
    fn generates_randomized_intervals() {
        // IntervalFunctionTest.generatesRandomizedIntervals: ofRandomized(100, 0.5) stays in
        // [50, 150]; both ends are reached (min + random · (max − min + 1)).
        let f = randomized(100, 0.5);
        for attempt in 1..50 {
            for r in SAMPLES {
                let delay = f.interval_ms(attempt, || r);
                assert!((50..=150).contains(&delay), "{delay}");
            }
        }
        assert_eq!(f.interval_ms(1, || 0.0), 50);
        assert_eq!(f.interval_ms(1, || 0.5), 100);
        assert_eq!(f.interval_ms(1, || 0.999_999_999), 150);
    }

    #[test]
    fn generates_exponential_intervals() {
        // IntervalFunctionTest.generatesExponentialIntervals: strictly growing; and the values
        // resilience4j prints, truncated at every step (issue 11).
        let f = exponential_backoff(100, 1.5, None);
        let mut previous = f.interval_ms(1, no_random);
        for attempt in 2..50 {
            let v = f.interval_ms(attempt, no_random);
            assert!(v > previous, "attempt {attempt}: {v} <= {previous}");
            previous = v;
        }
        let waits: Vec<u64> = (1..=8).map(|a| f.interval_ms(a, no_random)).collect();
        assert_eq!(waits, [100, 150, 225, 337, 505, 757, 1135, 1702]);
    }

    #[test]
    fn generates_capped_exponential_intervals() {
        // IntervalFunctionTest.generatesCappedExponentialIntervals.
        let f = exponential_backoff(100, 2.0, Some(100_000));
        let mut previous = f.interval_ms(1, no_random);
        for attempt in 2..12 {
            let v = f.interval_ms(attempt, no_random);
            assert!(v > previous);
            previous = v;
        }
        assert_eq!(f.interval_ms(12, no_random), 100_000);
        assert_eq!(f.interval_ms(13, no_random), 100_000);
    }

    #[test]
    fn generates_exponential_random_intervals() {
        // IntervalFunctionTest.generatesExponentialRandomIntervals: within
        // [(long) (e · 0.5) − 1, (long) (e · 1.5) + 1] of the truncated exponential e.
        let f = exponential_random_backoff(100, 1.5, 0.5, None);
        let mut expected: u64 = 100;
        for attempt in 1..50 {
            for r in SAMPLES {
                let v = f.interval_ms(attempt, || r);
                let low = ((expected as f64 * 0.5) as u64).saturating_sub(1);
                let high = (expected as f64 * 1.5) as u64 + 1;
                assert!((low..=high).contains(&v), "attempt {attempt}: {v}");
            }
            expected = (expected as f64 * 1.5) as u64;
        }
    }

    #[test]
    fn generates_capped_exponential_random_intervals() {
        // IntervalFunctionTest.generatesCappedExponentialRandomIntervals, and never above the
        // cap: resilience4j randomizes first, then caps.
        let f = exponential_random_backoff(100, 1.5, 0.5, Some(100_000));
        let mut expected: u64 = 100;
        for attempt in 1..50 {
            for r in SAMPLES {
                let v = f.interval_ms(attempt, || r);
                let low = ((expected as f64 * 0.5) as u64).saturating_sub(1);
                let high = (expected as f64 * 1.5) as u64 + 1;
                assert!(v <= 100_000, "attempt {attempt}: {v} above the cap");
                assert!(
                    v == 100_000 || (low..=high).contains(&v),
                    "attempt {attempt}: {v}"
                );
            }
            expected = (expected as f64 * 1.5) as u64;
        }
    }

    #[test]
    fn the_cap_applies_after_randomizing() {
        // 2000 · 2 = 4000 ± 50 % = [2000, 6000]: capped at 3000, not 3000 ± 50 %.
        let f = exponential_random_backoff(2000, 2.0, 0.5, Some(3000));
        assert_eq!(f.interval_ms(2, || 0.0), 2000);
        assert_eq!(f.interval_ms(2, || 0.2), 2800);
        assert_eq!(f.interval_ms(2, || 0.5), 3000);
        assert_eq!(f.interval_ms(2, || 0.999), 3000);
    }

    #[test]
    fn a_randomized_interval_is_at_least_one_millisecond() {
        // randomize() returns Math.max(1.0, value).
        assert_eq!(randomized(1, 1.0).interval_ms(1, || 0.0), 1);
        assert_eq!(randomized(1, 1.0).interval_ms(1, || 0.999), 2);
        assert_eq!(randomized(10, 0.0).interval_ms(1, || 0.999), 10);
    }

    #[test]
    fn growth_saturates_and_nonsense_never_panics() {
        assert_eq!(exponential(100, 10.0, u32::MAX), u64::MAX);
        assert_eq!(exponential(100, f64::NAN, 2), 0);
        assert_eq!(exponential(100, f64::INFINITY, 3), u64::MAX);
        // Beyond the stepwise attempts the rest is one power.
        assert!(exponential(1_000_000_000, 1.000_001, u32::MAX) >= 1_000_000_000);
        assert_eq!(randomize(100, f64::NAN, 0.5), 0);
        assert_eq!(randomize(u64::MAX, 1.0, 0.999), u64::MAX);
    }
}
