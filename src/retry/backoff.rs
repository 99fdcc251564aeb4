//! resilience4j's retry `IntervalFunction`s (fixed, exponential with its cap, randomized,
//! exponential randomized) for a [`RetryConfig`]; the arithmetic is [`crate::interval`]'s.

use crate::interval::IntervalFunction;
use crate::policy::RetryConfig;

/// The interval function resilience4j's Spring binding builds from these properties
/// (`CommonRetryConfigurationProperties.configureRetryIntervalFunction`): exponential
/// (with `exponential-max-wait-duration` as its cap) and/or randomized, else the fixed wait.
pub fn interval_function(config: &RetryConfig) -> IntervalFunction {
    let exponential = config.enable_exponential_backoff;
    IntervalFunction {
        initial_ms: config.wait_duration_ms,
        multiplier: if exponential {
            config.exponential_backoff_multiplier
        } else {
            1.0
        },
        randomization_factor: config
            .enable_randomized_wait
            .then_some(config.randomized_wait_factor),
        max_ms: config
            .exponential_max_wait_duration_ms
            .filter(|_| exponential),
    }
}

/// The wait before retry number `retry` (1 = the wait after the first attempt failed).
/// `random01` is a uniform sample in [0, 1), used only by a randomized wait.
pub fn wait_before_retry(config: &RetryConfig, retry: u32, random01: f64) -> u64 {
    interval_function(config).interval_ms(retry, || random01)
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
    fn exponential_wait_is_truncated_to_whole_milliseconds_at_every_step() {
        // resilience4j: x -> (long) (x * multiplier), iterated (issue 11; this port used to
        // truncate once, giving ..., 506, 759, 1139, 1708).
        let mut c = config();
        c.enable_exponential_backoff = true;
        c.wait_duration_ms = 100;
        c.exponential_backoff_multiplier = 1.5;
        let waits: Vec<u64> = (1..=8).map(|n| wait_before_retry(&c, n, 0.0)).collect();
        assert_eq!(waits, vec![100, 150, 225, 337, 505, 757, 1135, 1702]);
    }

    #[test]
    fn randomized_wait_spans_plus_minus_the_factor() {
        // resilience4j's randomize(): min + random · (max − min + 1), so the top is reached
        // (this port used to stop at 1499).
        let mut c = config();
        c.enable_randomized_wait = true;
        c.randomized_wait_factor = 0.5;
        c.wait_duration_ms = 1000;
        assert_eq!(wait_before_retry(&c, 1, 0.0), 500);
        assert_eq!(wait_before_retry(&c, 1, 0.5), 1000);
        assert_eq!(wait_before_retry(&c, 1, 0.999_999), 1500);
        // Not exponential: the same range for every retry, and no cap.
        c.exponential_max_wait_duration_ms = Some(600);
        assert_eq!(wait_before_retry(&c, 4, 0.999_999), 1500);
    }

    #[test]
    fn exponential_random_randomizes_the_exponential_interval_then_caps_it() {
        let mut c = config();
        c.enable_exponential_backoff = true;
        c.exponential_backoff_multiplier = 2.0;
        c.exponential_max_wait_duration_ms = Some(1000);
        c.enable_randomized_wait = true;
        c.randomized_wait_factor = 0.2;
        c.wait_duration_ms = 400;
        // retry 3: 400·2² = 1600, ±20 % = [1280, 1920], then capped to 1000 (this port used
        // to cap first and randomize around 1000, giving 800..1199).
        assert_eq!(wait_before_retry(&c, 3, 0.0), 1000);
        assert_eq!(wait_before_retry(&c, 3, 0.5), 1000);
        // retry 1: 400 ± 20 % = [320, 480], under the cap; retry 2: 800 ± 20 % = [640, 960]
        // (resilience4j 2.4.0, run: ofExponentialRandomBackoff(400, 2, 0.2, 1000) gives
        // 640..960 for attempt 2 and always 1000 for attempt 3).
        assert_eq!(wait_before_retry(&c, 1, 0.0), 320);
        assert_eq!(wait_before_retry(&c, 1, 0.999_999), 480);
        assert_eq!(wait_before_retry(&c, 2, 0.0), 640);
        assert_eq!(wait_before_retry(&c, 2, 0.999_999), 960);
    }

    #[test]
    fn a_randomized_wait_never_exceeds_the_exponential_cap() {
        // Issue 11: with a 3000 ms cap this port produced waits of up to 4499 ms.
        let mut c = config();
        c.enable_exponential_backoff = true;
        c.exponential_backoff_multiplier = 2.0;
        c.exponential_max_wait_duration_ms = Some(3000);
        c.enable_randomized_wait = true;
        c.randomized_wait_factor = 0.5;
        c.wait_duration_ms = 1000;
        for retry in 1..=10 {
            for r in [0.0, 0.3, 0.6, 0.999_999] {
                assert!(wait_before_retry(&c, retry, r) <= 3000);
            }
        }
        assert_eq!(wait_before_retry(&c, 3, 0.999_999), 3000);
    }
}
