//! The sliding windows behind a breaker's rates: resilience4j's `FixedSizeSlidingWindowMetrics`
//! (COUNT_BASED) and `SlidingTimeWindowMetrics` (TIME_BASED), as plain data.
//!
//! The window's size is not stored: it comes from the config on every call (the closed
//! window's `sliding-window-size`, or `permitted-number-of-calls-in-half-open-state` for the
//! half-open window), so a window never disagrees with the config it is used with.

use std::collections::VecDeque;

/// One call as a window stores it: resilience4j's `Metrics.Outcome`, two bits.
pub(crate) const FAILED_BIT: u8 = 0b01;
pub(crate) const SLOW_BIT: u8 = 0b10;

/// Aggregated counts, as resilience4j's `AbstractAggregation` (without total duration,
/// which no threshold uses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub calls: u32,
    pub failed: u32,
    pub slow: u32,
    pub slow_failed: u32,
}

impl Counts {
    pub fn add(&mut self, code: u8) {
        self.calls = self.calls.saturating_add(1);
        let failed = code & FAILED_BIT != 0;
        let slow = code & SLOW_BIT != 0;
        if failed {
            self.failed = self.failed.saturating_add(1);
        }
        if slow {
            self.slow = self.slow.saturating_add(1);
        }
        if failed && slow {
            self.slow_failed = self.slow_failed.saturating_add(1);
        }
    }

    pub fn merge(&mut self, other: &Counts) {
        self.calls = self.calls.saturating_add(other.calls);
        self.failed = self.failed.saturating_add(other.failed);
        self.slow = self.slow.saturating_add(other.slow);
        self.slow_failed = self.slow_failed.saturating_add(other.slow_failed);
    }

    /// A bucket read from shared data is only believed when it could have been produced.
    pub fn is_consistent(&self) -> bool {
        self.failed <= self.calls
            && self.slow <= self.calls
            && self.slow_failed <= self.failed.min(self.slow)
            // failed + slow - slow_failed calls are failed or slow; they cannot outnumber calls.
            && u64::from(self.failed).saturating_add(u64::from(self.slow))
                <= u64::from(self.calls).saturating_add(u64::from(self.slow_failed))
    }
}

/// One second of a TIME_BASED window: resilience4j's `PartialAggregation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bucket {
    pub epoch_second: u64,
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Window {
    /// The last N calls, oldest first, one 2-bit code per call. Holds at most N entries
    /// (N given by the caller), so `calls` below N means "not yet full", as in resilience4j
    /// where the ring starts with empty measurements.
    Count(VecDeque<u8>),
    /// Non-empty per-second buckets, ascending by epoch second, none older than the window.
    Time(Vec<Bucket>),
}

/// Window length in seconds, as u64.
fn seconds(size: u32) -> u64 {
    u64::from(size)
}

fn epoch_second(now_ms: u64) -> u64 {
    now_ms / 1000
}

/// A bucket of `epoch_second` is inside a window of `size` seconds ending at `now_second`
/// when it is one of the last `size` seconds: resilience4j resets the buckets of older
/// seconds when it moves the window to the current second.
fn in_window(bucket_second: u64, size: u32, now_second: u64) -> bool {
    bucket_second.saturating_add(seconds(size)) > now_second
}

impl Window {
    pub fn empty_count() -> Self {
        Window::Count(VecDeque::new())
    }

    pub fn empty_time() -> Self {
        Window::Time(Vec::new())
    }

    /// Records one call. `size`: calls (COUNT) or seconds (TIME).
    pub fn record(&mut self, size: u32, now_ms: u64, code: u8) {
        match self {
            Window::Count(ring) => {
                let cap = usize::try_from(size).unwrap_or(usize::MAX);
                if cap == 0 {
                    // resilience4j never records into a zero-size window (forced-open and
                    // disabled metrics); a zero-size closed window would divide by zero there.
                    return;
                }
                while ring.len() >= cap {
                    ring.pop_front();
                }
                ring.push_back(code & (FAILED_BIT | SLOW_BIT));
            }
            Window::Time(buckets) => {
                // Workers read the clock independently, so the state may have been written
                // by one whose clock read was a little later: time never moves backwards in
                // the window, such a call lands in the newest bucket.
                let newest = buckets.last().map(|b| b.epoch_second);
                let second = match newest {
                    Some(n) => n.max(epoch_second(now_ms)),
                    None => epoch_second(now_ms),
                };
                buckets.retain(|b| in_window(b.epoch_second, size, second));
                match buckets.last_mut() {
                    Some(last) if last.epoch_second == second => last.counts.add(code),
                    _ => {
                        let mut counts = Counts::default();
                        counts.add(code);
                        buckets.push(Bucket {
                            epoch_second: second,
                            counts,
                        });
                    }
                }
            }
        }
    }

    /// Drops the buckets that fell out of a TIME_BASED window (keeps the encoding small).
    /// Returns true when something was dropped.
    pub fn expire(&mut self, size: u32, now_ms: u64) -> bool {
        match self {
            Window::Count(_) => false,
            Window::Time(buckets) => {
                let before = buckets.len();
                let now_second = epoch_second(now_ms);
                buckets.retain(|b| in_window(b.epoch_second, size, now_second));
                buckets.len() != before
            }
        }
    }

    /// The aggregate over the window as it stands at `now_ms`.
    pub fn counts(&self, size: u32, now_ms: u64) -> Counts {
        let mut total = Counts::default();
        match self {
            Window::Count(ring) => {
                for code in ring {
                    total.add(*code);
                }
            }
            Window::Time(buckets) => {
                let now_second = epoch_second(now_ms);
                for b in buckets
                    .iter()
                    .filter(|b| in_window(b.epoch_second, size, now_second))
                {
                    total.merge(&b.counts);
                }
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn count_window_keeps_the_last_n_calls() {
        let mut w = Window::empty_count();
        for _ in 0..3 {
            w.record(3, 0, FAILED_BIT);
        }
        w.record(3, 0, 0);
        w.record(3, 0, SLOW_BIT);
        let c = w.counts(3, 0);
        assert_eq!((c.calls, c.failed, c.slow, c.slow_failed), (3, 1, 1, 0));
    }

    #[test]
    fn count_window_of_size_zero_records_nothing() {
        let mut w = Window::empty_count();
        w.record(0, 0, FAILED_BIT);
        assert_eq!(w.counts(0, 0).calls, 0);
    }

    #[test]
    fn time_window_buckets_expire_after_window_seconds() {
        let mut w = Window::empty_time();
        w.record(2, 10_000, FAILED_BIT);
        w.record(2, 10_999, FAILED_BIT | SLOW_BIT);
        w.record(2, 11_500, 0);
        assert_eq!(w.counts(2, 11_999).calls, 3);
        // At second 12 the bucket of second 10 is out of a 2-second window.
        let c = w.counts(2, 12_000);
        assert_eq!((c.calls, c.failed), (1, 0));
        assert!(w.expire(2, 12_000));
        assert_eq!(
            w,
            Window::Time(vec![Bucket {
                epoch_second: 11,
                counts: Counts {
                    calls: 1,
                    failed: 0,
                    slow: 0,
                    slow_failed: 0
                }
            }])
        );
        assert_eq!(w.counts(2, 13_000).calls, 0);
    }

    #[test]
    fn time_window_never_moves_backwards() {
        let mut w = Window::empty_time();
        w.record(5, 20_000, 0);
        w.record(5, 19_000, FAILED_BIT);
        assert_eq!(
            w,
            Window::Time(vec![Bucket {
                epoch_second: 20,
                counts: Counts {
                    calls: 2,
                    failed: 1,
                    slow: 0,
                    slow_failed: 0
                }
            }])
        );
    }

    #[test]
    fn counts_consistency() {
        assert!(Counts {
            calls: 3,
            failed: 2,
            slow: 2,
            slow_failed: 1
        }
        .is_consistent());
        assert!(!Counts {
            calls: 3,
            failed: 2,
            slow: 2,
            slow_failed: 0
        }
        .is_consistent());
        assert!(!Counts {
            calls: 1,
            failed: 2,
            slow: 0,
            slow_failed: 0
        }
        .is_consistent());
        assert!(!Counts {
            calls: 3,
            failed: 1,
            slow: 0,
            slow_failed: 1
        }
        .is_consistent());
    }
}
