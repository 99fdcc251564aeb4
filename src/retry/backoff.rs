//! resilience4j's IntervalFunction: fixed, exponential (capped), randomized, and exponential
//! randomized waits. Growth saturates instead of overflowing; randomness is a parameter.

use crate::policy::RetryConfig;

/// The wait before retry number `retry` (1 = the wait after the first attempt failed).
/// `random01` is a uniform sample in [0, 1).
pub fn wait_before_retry(config: &RetryConfig, retry: u32, random01: f64) -> u64 {
    let base = config.wait_duration_ms as f64;
    let mut interval = if config.enable_exponential_backoff {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        base * config.exponential_backoff_multiplier.powi(exponent)
    } else {
        base
    };
    if let Some(max) = config
        .exponential_max_wait_duration_ms
        .filter(|_| config.enable_exponential_backoff)
    {
        interval = interval.min(max as f64);
    }
    if config.enable_randomized_wait {
        // Uniform in [interval·(1−f), interval·(1+f)], as resilience4j's randomize().
        let f = config.randomized_wait_factor;
        let delta = f * interval;
        let min = interval - delta;
        interval = min + random01.clamp(0.0, 1.0) * (2.0 * delta);
    }
    if interval.is_finite() && interval > 0.0 {
        interval.min(u64::MAX as f64) as u64
    } else if interval.is_finite() {
        0
    } else {
        u64::MAX
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::retry::tests::config;

    #[test]
    fn fixed_wait_is_the_wait_duration_every_time() {
        let c = config();
        assert_eq!(wait_before_retry(&c, 1, 0.9), 500);
        assert_eq!(wait_before_retry(&c, 5, 0.1), 500);
    }

    #[test]
    fn exponential_wait_multiplies_per_retry_and_is_capped() {
        let mut c = config();
        c.enable_exponential_backoff = true;
        c.wait_duration_ms = 100;
        c.exponential_backoff_multiplier = 2.0;
        let waits: Vec<u64> = (1..=5).map(|n| wait_before_retry(&c, n, 0.0)).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1600]);
        c.exponential_max_wait_duration_ms = Some(500);
        let waits: Vec<u64> = (1..=5).map(|n| wait_before_retry(&c, n, 0.0)).collect();
        assert_eq!(waits, vec![100, 200, 400, 500, 500]);
    }

    #[test]
    fn exponential_growth_saturates_instead_of_overflowing() {
        let mut c = config();
        c.enable_exponential_backoff = true;
        c.exponential_backoff_multiplier = 10.0;
        assert_eq!(wait_before_retry(&c, u32::MAX, 0.0), u64::MAX);
    }

    #[test]
    fn randomized_wait_spans_plus_minus_the_factor() {
        let mut c = config();
        c.enable_randomized_wait = true;
        c.randomized_wait_factor = 0.5;
        c.wait_duration_ms = 1000;
        assert_eq!(wait_before_retry(&c, 1, 0.0), 500);
        assert_eq!(wait_before_retry(&c, 1, 0.5), 1000);
        assert_eq!(wait_before_retry(&c, 1, 0.999_999), 1499);
    }

    #[test]
    fn exponential_random_randomizes_the_capped_exponential_interval() {
        let mut c = config();
        c.enable_exponential_backoff = true;
        c.exponential_backoff_multiplier = 2.0;
        c.exponential_max_wait_duration_ms = Some(1000);
        c.enable_randomized_wait = true;
        c.randomized_wait_factor = 0.2;
        c.wait_duration_ms = 400;
        // retry 3: 400·2² = 1600, capped to 1000, then ±20 %.
        assert_eq!(wait_before_retry(&c, 3, 0.0), 800);
        assert_eq!(wait_before_retry(&c, 3, 0.5), 1000);
    }
}
