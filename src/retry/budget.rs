//! A retry budget, as Envoy's and Linkerd's: over a recent window, retries may add at most
//! `retry_ratio` × requests, plus a floor of `min_retries_per_second` so quiet upstreams can
//! still be retried. Past it no more retries: a failing upstream is not flooded by every
//! caller's retries. Per-second buckets, shared by all workers through the host's store.

/// Budget settings of one retry instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Retries allowed per request in the window, in [0, 1000]. Default 0.2 (Linkerd's).
    pub retry_ratio: f64,
    /// Retries always allowed per second of window. Default 10 (Linkerd's).
    pub min_retries_per_second: u32,
    /// Window length in seconds, 1..=60. Default 10.
    pub window_s: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            retry_ratio: 0.2,
            min_retries_per_second: 10,
            window_s: 10,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Bucket {
    second: u64,
    requests: u32,
    retries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetryBudget {
    buckets: Vec<Bucket>,
}

const FORMAT_VERSION: u8 = 1;
const BUCKET_BYTES: usize = 16;

impl RetryBudget {
    /// Counts first attempts (every request, retried or not).
    pub fn record_requests(&mut self, config: &BudgetConfig, now_ms: u64, count: u32) {
        let bucket = self.bucket(config, now_ms);
        bucket.requests = bucket.requests.saturating_add(count);
    }

    /// Takes one retry from the budget if there is one left; false: the budget is exhausted.
    pub fn try_withdraw(&mut self, config: &BudgetConfig, now_ms: u64) -> bool {
        self.expire(config, now_ms);
        let (requests, retries) = self.totals();
        let allowed = config.retry_ratio * requests as f64
            + f64::from(config.min_retries_per_second) * f64::from(config.window_s);
        if f64::from(retries) + 1.0 > allowed {
            return false;
        }
        let bucket = self.bucket(config, now_ms);
        bucket.retries = bucket.retries.saturating_add(1);
        true
    }

    fn totals(&self) -> (u32, u32) {
        self.buckets.iter().fold((0u32, 0u32), |(q, r), b| {
            (q.saturating_add(b.requests), r.saturating_add(b.retries))
        })
    }

    fn expire(&mut self, config: &BudgetConfig, now_ms: u64) {
        let now_s = now_ms / 1000;
        let window = u64::from(config.window_s.max(1));
        self.buckets
            .retain(|b| b.second + window > now_s && b.second <= now_s);
    }

    fn bucket(&mut self, config: &BudgetConfig, now_ms: u64) -> &mut Bucket {
        self.expire(config, now_ms);
        let now_s = now_ms / 1000;
        let index = match self.buckets.iter().position(|b| b.second == now_s) {
            Some(i) => i,
            None => {
                self.buckets.push(Bucket {
                    second: now_s,
                    ..Bucket::default()
                });
                self.buckets.len() - 1
            }
        };
        let last = self.buckets.len().saturating_sub(1);
        // `index` is in bounds: found by position or just pushed.
        &mut self.buckets[index.min(last)]
    }

    /// Layout: version (1 byte), then per bucket second (u64 LE), requests, retries (u32 LE).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.buckets.len() * BUCKET_BYTES);
        out.push(FORMAT_VERSION);
        for b in &self.buckets {
            out.extend_from_slice(&b.second.to_le_bytes());
            out.extend_from_slice(&b.requests.to_le_bytes());
            out.extend_from_slice(&b.retries.to_le_bytes());
        }
        out
    }

    /// Unreadable state (another format version, truncated) reads as an empty budget.
    pub fn decode(bytes: &[u8]) -> RetryBudget {
        let Some((&FORMAT_VERSION, rest)) = bytes.split_first() else {
            return RetryBudget::default();
        };
        if rest.len() % BUCKET_BYTES != 0 {
            return RetryBudget::default();
        }
        let buckets = rest
            .chunks_exact(BUCKET_BYTES)
            .filter_map(|c| {
                Some(Bucket {
                    second: u64::from_le_bytes(c.get(0..8)?.try_into().ok()?),
                    requests: u32::from_le_bytes(c.get(8..12)?.try_into().ok()?),
                    retries: u32::from_le_bytes(c.get(12..16)?.try_into().ok()?),
                })
            })
            .collect();
        RetryBudget { buckets }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn strict() -> BudgetConfig {
        BudgetConfig {
            retry_ratio: 0.5,
            min_retries_per_second: 0,
            window_s: 10,
        }
    }

    #[test]
    fn retries_are_bounded_by_ratio_of_requests() {
        let c = strict();
        let mut b = RetryBudget::default();
        for _ in 0..4 {
            b.record_requests(&c, 1_000, 1);
        }
        assert!(b.try_withdraw(&c, 1_000));
        assert!(b.try_withdraw(&c, 1_500));
        assert!(!b.try_withdraw(&c, 1_900), "4 requests × 0.5 = 2 retries");
    }

    #[test]
    fn the_floor_allows_retries_without_traffic() {
        let c = BudgetConfig {
            retry_ratio: 0.0,
            min_retries_per_second: 1,
            window_s: 3,
        };
        let mut b = RetryBudget::default();
        assert!(b.try_withdraw(&c, 0));
        assert!(b.try_withdraw(&c, 0));
        assert!(b.try_withdraw(&c, 0));
        assert!(!b.try_withdraw(&c, 0));
    }

    #[test]
    fn old_seconds_leave_the_window() {
        let c = strict();
        let mut b = RetryBudget::default();
        b.record_requests(&c, 0, 1);
        b.record_requests(&c, 0, 1);
        assert!(b.try_withdraw(&c, 0));
        assert!(!b.try_withdraw(&c, 9_999));
        // At 10 s the first second has left the window: no requests, no budget.
        assert!(!b.try_withdraw(&c, 10_000));
        b.record_requests(&c, 10_000, 1);
        b.record_requests(&c, 10_000, 1);
        assert!(b.try_withdraw(&c, 10_000));
    }

    #[test]
    fn encoding_round_trips_and_garbage_reads_as_empty() {
        let c = strict();
        let mut b = RetryBudget::default();
        b.record_requests(&c, 5_000, 1);
        b.record_requests(&c, 6_000, 1);
        assert!(b.try_withdraw(&c, 6_000));
        assert_eq!(RetryBudget::decode(&b.encode()), b);
        let bytes = b.encode();
        for n in 0..bytes.len() {
            let _ = RetryBudget::decode(&bytes[..n]);
        }
        assert_eq!(RetryBudget::decode(&[9, 1, 2]), RetryBudget::default());
    }
}
