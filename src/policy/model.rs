//! The validated runtime model a policy compiles to. Parsing lives in `parse`.

use crate::sorted_map::SortedMap;

use crate::outcome::OutcomeMatcher;
pub use crate::retry::budget::BudgetConfig;

/// A whole, validated filter policy. Built only by [`crate::policy::Policy::from_json`].
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// resilience4j.circuitbreaker.instances, with configs/base-config/defaults resolved.
    pub circuit_breakers: SortedMap<String, BreakerConfig>,
    /// resilience4j.retry.instances, resolved the same way.
    pub retries: SortedMap<String, RetryConfig>,
    /// resilience4j.bulkhead.instances (SemaphoreBulkhead), resolved the same way.
    pub bulkheads: SortedMap<String, BulkheadConfig>,
    /// resilience4j.thread-pool-bulkhead.instances, resolved the same way.
    pub thread_pool_bulkheads: SortedMap<String, ThreadPoolBulkheadConfig>,
    /// resilience4j.ratelimiter.instances (AtomicRateLimiter), resolved the same way.
    pub rate_limiters: SortedMap<String, RateLimiterConfig>,
    /// resilience4j.timelimiter.instances, resolved the same way.
    pub time_limiters: SortedMap<String, TimeLimiterConfig>,
    /// Filter key `upstreams`: Envoy cluster name -> instance name. Overrides the default mapping.
    pub upstreams: SortedMap<String, String>,
    /// Filter key `fallbacks`: instance name -> response served while its circuit does not permit.
    pub fallbacks: SortedMap<String, Fallback>,
    /// Filter key `retry-options`: how the sidecar replays requests, per retry instance.
    /// Every retry instance has an entry (defaults filled in).
    pub retry_options: SortedMap<String, RetryOptions>,
    /// Filter key `events`: stamping of records produced through a Kafka HTTP bridge.
    /// None: the filter leaves bridge traffic alone. See [`crate::events::config`].
    pub events: Option<crate::events::EventsConfig>,
    /// Non-fatal findings (e.g. Java exception classes that have no HTTP meaning), to be logged.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingWindowType {
    CountBased,
    TimeBased,
}

/// The state a breaker starts in: resilience4j's `initial-state` (`CircuitBreakerConfig
/// .initialState`), any `CircuitBreaker.State`. `Closed` is the normal, self-managing breaker;
/// `Open` starts the open wait when the breaker is created (the policy is loaded), `HalfOpen`
/// starts with its trial calls; both count as the first opening (resilience4j's attempts 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialState {
    Closed,
    Disabled,
    ForcedOpen,
    MetricsOnly,
    Open,
    HalfOpen,
}

/// resilience4j's `transition-to-state-after-wait-duration` (2.2+): where HALF_OPEN goes once
/// max-wait-duration-in-half-open-state has passed. resilience4j accepts only these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateAfterWait {
    Open,
    Closed,
}

/// One circuit breaker instance, every field resolved (resilience4j defaults filled in).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Percent in [1, 100]. Default 50.
    pub failure_rate_threshold: f32,
    /// Percent in [1, 100]. Default 100.
    pub slow_call_rate_threshold: f32,
    /// Default 60 s.
    pub slow_call_duration_threshold_ms: u64,
    /// Default COUNT_BASED.
    pub sliding_window_type: SlidingWindowType,
    /// Calls (COUNT_BASED) or seconds (TIME_BASED), >= 1. Default 100.
    pub sliding_window_size: u32,
    /// >= 1. Default 100. (Not yet clamped to the window size; the breaker does that.)
    pub minimum_number_of_calls: u32,
    /// Default 60 s.
    pub wait_duration_in_open_state_ms: u64,
    /// Default false.
    pub automatic_transition_from_open_to_half_open_enabled: bool,
    /// >= 1. Default 10.
    pub permitted_number_of_calls_in_half_open_state: u32,
    /// 0 = stay in HALF_OPEN until the permitted calls completed. Default 0.
    pub max_wait_duration_in_half_open_state_ms: u64,
    /// Where HALF_OPEN goes after max-wait-duration-in-half-open-state. Default OPEN.
    pub transition_to_state_after_wait_duration: StateAfterWait,
    /// enable-exponential-backoff / exponential-backoff-multiplier: each re-open from HALF_OPEN
    /// multiplies the open wait by this. 1.0 (the default) = constant wait.
    pub open_wait_multiplier: f64,
    /// exponential-max-wait-duration-in-open-state: cap on the grown open wait. None = uncapped.
    pub open_wait_max_ms: Option<u64>,
    /// enable-randomized-wait / randomized-wait-factor: each open wait is drawn from
    /// wait·(1 ± factor), factor in [0, 1). None (the default) = not randomized.
    pub open_wait_randomization_factor: Option<f64>,
    /// Filter key `initial-state` (resilience4j's transitionTo*State). Default CLOSED.
    pub initial_state: InitialState,
    /// HTTP analogue of record-exceptions. Empty = the default: 5xx and every connection failure.
    pub record: Vec<OutcomeMatcher>,
    /// HTTP analogue of ignore-exceptions: matching calls count as neither success nor failure.
    pub ignore: Vec<OutcomeMatcher>,
}

/// resilience4j's `CircuitBreakerConfig.ofDefaults()`.
impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 100.0,
            slow_call_duration_threshold_ms: 60_000,
            sliding_window_type: SlidingWindowType::CountBased,
            sliding_window_size: 100,
            minimum_number_of_calls: 100,
            wait_duration_in_open_state_ms: 60_000,
            automatic_transition_from_open_to_half_open_enabled: false,
            permitted_number_of_calls_in_half_open_state: 10,
            max_wait_duration_in_half_open_state_ms: 0,
            transition_to_state_after_wait_duration: StateAfterWait::Open,
            open_wait_multiplier: 1.0,
            open_wait_max_ms: None,
            open_wait_randomization_factor: None,
            initial_state: InitialState::Closed,
            record: vec![],
            ignore: vec![],
        }
    }
}

/// Spring's bounds for failure-rate-threshold and slow-call-rate-threshold
/// (`CommonCircuitBreakerConfigurationProperties.setFailureRateThreshold` /
/// `setSlowCallRateThreshold`: "must be between 1 and 100"), stricter than resilience4j's
/// builder ((0, 100]). A threshold near 0 would open the breaker on successes alone: a rate
/// of 0 % reaches it.
pub const RATE_THRESHOLD_PERCENT: std::ops::RangeInclusive<f32> = 1.0..=100.0;

/// A failure-rate-threshold or slow-call-rate-threshold as Spring binds it: the value
/// becomes a Java `Float` first (so 1e-320 is 0 and rejected), then must lie in
/// [`RATE_THRESHOLD_PERCENT`]. None: out of range (or not a number).
pub fn rate_threshold_percent(value: f64) -> Option<f32> {
    let percent = value as f32;
    RATE_THRESHOLD_PERCENT.contains(&percent).then_some(percent)
}

/// Upper bound of sliding-window-size and permitted-number-of-calls-in-half-open-state.
/// resilience4j has none (any int ≥ 1). It is not a limit of the shared-state encoding
/// (sizes are u32, varint-coded, 2 bits per COUNT_BASED call): it bounds what every call
/// costs. Each call reads its breaker's whole window from shared data, decodes, updates and
/// re-encodes it, once for the permission and once for the result, so its cost is linear in
/// the window. Measured natively (release build, 2-core dev machine), per call: COUNT_BASED
/// 100 calls 37 B 1.6 µs, 10 000 calls 2.5 KB 0.11 ms, 100 000 calls 25 KB 1.1 ms;
/// TIME_BASED with every second occupied 1 000 s 5 KB 0.18 ms, 10 000 s 50 KB 2 ms.
/// Wasm is slower still. Past 10 000 the sidecar would add milliseconds to every request.
pub const MAX_WINDOW_SIZE: u32 = 10_000;

/// Why [`MAX_WINDOW_SIZE`] exists, for the parser's message.
pub const MAX_WINDOW_SIZE_REASON: &str = "the sidecar reads and rewrites the whole window in \
     shared memory on every call, so larger windows add latency to every request (resilience4j \
     has no upper bound)";

/// One retry instance, every field resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Includes the first call, >= 1. Default 3.
    pub max_attempts: u32,
    /// Default 500 ms.
    pub wait_duration_ms: u64,
    pub enable_exponential_backoff: bool,
    /// > 1.0 when exponential. Default 1.5.
    pub exponential_backoff_multiplier: f64,
    /// Cap on the exponential wait; None = uncapped.
    pub exponential_max_wait_duration_ms: Option<u64>,
    pub enable_randomized_wait: bool,
    /// In [0, 1). Default 0.5.
    pub randomized_wait_factor: f64,
    /// Default false.
    pub fail_after_max_attempts: bool,
    /// HTTP analogue of retry-exceptions. Empty = default: 5xx and every connection failure.
    pub retry_on: Vec<OutcomeMatcher>,
    /// HTTP analogue of ignore-exceptions: never retried.
    pub ignore: Vec<OutcomeMatcher>,
}

/// resilience4j's `RetryConfig.ofDefaults()` (multiplier and factor: `IntervalFunction`'s).
impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            wait_duration_ms: 500,
            enable_exponential_backoff: false,
            exponential_backoff_multiplier: 1.5,
            exponential_max_wait_duration_ms: None,
            enable_randomized_wait: false,
            randomized_wait_factor: 0.5,
            fail_after_max_attempts: false,
            retry_on: vec![],
            ignore: vec![],
        }
    }
}

/// One time limiter instance, every field resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeLimiterConfig {
    /// Bounds every attempt (the router's and each replay). Default 1 s.
    pub timeout_duration_ms: u64,
    /// Default true. False cannot be honoured (Envoy resets a timed-out upstream request):
    /// the parser warns.
    pub cancel_running_future: bool,
}

/// resilience4j's `TimeLimiterConfig.ofDefaults()`.
impl Default for TimeLimiterConfig {
    fn default() -> Self {
        TimeLimiterConfig {
            timeout_duration_ms: 1000,
            cancel_running_future: true,
        }
    }
}

/// The response served instead of calling an upstream whose circuit does not permit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// None: the default JSON body naming upstream and state.
    pub body: Option<String>,
    /// Filter key `on.<kind>`: the response for one refusal kind instead of this one. Kinds:
    /// `circuit-open`, `bulkhead-full`, `rate-limited`, `timeout`.
    pub on: SortedMap<String, Fallback>,
}

impl Fallback {
    /// The fallback for a refusal kind: its `on.<kind>` entry, else this one.
    pub fn for_kind(&self, kind: &str) -> &Fallback {
        self.on.get(kind).unwrap_or(self)
    }
}

/// The sidecar's own retry settings for one instance (no resilience4j equivalent: a Java
/// client holds its request in memory, a sidecar must buffer it).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryOptions {
    /// Also replay POST and PATCH. Default false: only idempotent methods, or requests that
    /// carry an `Idempotency-Key` header.
    pub retry_non_idempotent: bool,
    /// Request bodies up to this size are kept for replay; larger ones are not retried.
    /// Default 65536.
    pub max_body_bytes: u32,
    /// Timeout of each retry attempt (the first attempt has the route's timeout). Default 5 s.
    pub per_try_timeout_ms: u64,
    /// No retry starts later than this after the request arrived. None: bounded only by
    /// max-attempts × (wait + per-try-timeout). Default None.
    pub overall_timeout_ms: Option<u64>,
    pub budget: BudgetConfig,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            retry_non_idempotent: false,
            max_body_bytes: 65536,
            per_try_timeout_ms: 5000,
            overall_timeout_ms: None,
            budget: BudgetConfig::default(),
        }
    }
}

/// One semaphore bulkhead instance (resilience4j `BulkheadConfig`), every field resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadConfig {
    /// Calls in flight to the upstream at once, across every worker. Default 25.
    pub max_concurrent_calls: u32,
    /// How long a call may wait for a slot; 0 (the default): refused at once when full.
    pub max_wait_duration_ms: u64,
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        BulkheadConfig {
            max_concurrent_calls: 25,
            max_wait_duration_ms: 0,
        }
    }
}

/// A thread-pool bulkhead's sidecar default for `max-thread-pool-size`. resilience4j uses the
/// JVM's CPU count; a sidecar has no JVM and no threads of the service: 2 is what Istio gives a
/// sidecar (`proxy.istio.io/config` concurrency 2), i.e. a two-CPU pod's default.
pub const DEFAULT_MAX_THREAD_POOL_SIZE: u32 = 2;

/// One thread-pool bulkhead instance, mapped onto the same shared slots as the semaphore
/// bulkhead: `max-thread-pool-size` calls in flight, `queue-capacity` waiting for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadPoolBulkheadConfig {
    /// Default [`DEFAULT_MAX_THREAD_POOL_SIZE`].
    pub max_thread_pool_size: u32,
    /// Calls that may wait for a slot (until the route's timeout ends them). Default 100; 0: none.
    pub queue_capacity: u32,
}

impl Default for ThreadPoolBulkheadConfig {
    fn default() -> Self {
        ThreadPoolBulkheadConfig {
            max_thread_pool_size: DEFAULT_MAX_THREAD_POOL_SIZE,
            queue_capacity: 100,
        }
    }
}

/// One rate limiter instance (resilience4j `RateLimiterConfig`), every field resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimiterConfig {
    /// Permits per refresh period, across every worker. Default 50.
    pub limit_for_period: u32,
    /// resilience4j's default is 500ns; the sidecar counts whole milliseconds, so any
    /// sub-millisecond period is 1 ms (50 permits per ms: 50,000 calls per second).
    pub limit_refresh_period_ms: u64,
    /// How long a call may wait for a permit. Default 5 s.
    pub timeout_duration_ms: u64,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        RateLimiterConfig {
            limit_for_period: 50,
            limit_refresh_period_ms: 1,
            timeout_duration_ms: 5000,
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn rate_thresholds_below_one_percent_are_rejected_as_spring_does() {
        // CommonCircuitBreakerConfigurationProperties: "failureRateThreshold must be between
        // 1 and 100." (issue 11: 1e-320 used to be accepted and opened on successes).
        for bad in [
            1e-320,
            0.0,
            0.5,
            0.99,
            -1.0,
            100.001,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert_eq!(rate_threshold_percent(bad), None, "{bad}");
        }
        for (good, percent) in [(1.0, 1.0), (50.0, 50.0), (25.5, 25.5), (100.0, 100.0)] {
            assert_eq!(rate_threshold_percent(good), Some(percent));
        }
        // Bound to a Java Float first: 0.999999999 is 1.0f.
        assert_eq!(rate_threshold_percent(0.999_999_999), Some(1.0));
    }

    #[test]
    fn defaults_are_resilience4j_defaults_for_the_new_breaker_keys() {
        // CircuitBreakerConfig: transitionToStateAfterWaitDuration OPEN, waitIntervalFunction
        // of(60 s) (not randomized), initialState CLOSED.
        let d = BreakerConfig::default();
        assert_eq!(
            (
                d.transition_to_state_after_wait_duration,
                d.open_wait_randomization_factor,
                d.initial_state
            ),
            (StateAfterWait::Open, None, InitialState::Closed)
        );
    }
}
