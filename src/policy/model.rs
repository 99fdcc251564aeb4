//! The validated runtime model a policy compiles to. Parsing lives in `parse`.

use std::collections::BTreeMap;

use crate::outcome::OutcomeMatcher;
pub use crate::retry::budget::BudgetConfig;

/// A whole, validated filter policy. Built only by [`crate::policy::Policy::from_json`].
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// resilience4j.circuitbreaker.instances, with configs/base-config/defaults resolved.
    pub circuit_breakers: BTreeMap<String, BreakerConfig>,
    /// resilience4j.retry.instances, resolved the same way.
    pub retries: BTreeMap<String, RetryConfig>,
    /// resilience4j.bulkhead.instances (SemaphoreBulkhead), resolved the same way.
    pub bulkheads: BTreeMap<String, BulkheadConfig>,
    /// resilience4j.thread-pool-bulkhead.instances, resolved the same way.
    pub thread_pool_bulkheads: BTreeMap<String, ThreadPoolBulkheadConfig>,
    /// resilience4j.ratelimiter.instances (AtomicRateLimiter), resolved the same way.
    pub rate_limiters: BTreeMap<String, RateLimiterConfig>,
    /// Filter key `upstreams`: Envoy cluster name -> instance name. Overrides the default mapping.
    pub upstreams: BTreeMap<String, String>,
    /// Filter key `fallbacks`: instance name -> response served while its circuit does not permit.
    pub fallbacks: BTreeMap<String, Fallback>,
    /// Filter key `retry-options`: how the sidecar replays requests, per retry instance.
    /// Every retry instance has an entry (defaults filled in).
    pub retry_options: BTreeMap<String, RetryOptions>,
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

/// States an operator can pin a breaker to (resilience4j's transitionTo*State), via the
/// filter's `initial-state` instance key. `Closed` is the normal, self-managing breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialState {
    Closed,
    Disabled,
    ForcedOpen,
    MetricsOnly,
}

/// One circuit breaker instance, every field resolved (resilience4j defaults filled in).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Percent in (0, 100]. Default 50.
    pub failure_rate_threshold: f32,
    /// Percent in (0, 100]. Default 100.
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
    /// enable-exponential-backoff / exponential-backoff-multiplier: each re-open from HALF_OPEN
    /// multiplies the open wait by this. 1.0 (the default) = constant wait.
    pub open_wait_multiplier: f64,
    /// exponential-max-wait-duration-in-open-state: cap on the grown open wait. None = uncapped.
    pub open_wait_max_ms: Option<u64>,
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
            open_wait_multiplier: 1.0,
            open_wait_max_ms: None,
            initial_state: InitialState::Closed,
            record: vec![],
            ignore: vec![],
        }
    }
}

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

/// The response served instead of calling an upstream whose circuit does not permit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// None: the default JSON body naming upstream and state.
    pub body: Option<String>,
    /// Filter key `on.<kind>`: the response for one refusal kind instead of this one. Kinds:
    /// `circuit-open`, `bulkhead-full`, `rate-limited`, `timeout`.
    pub on: BTreeMap<String, Fallback>,
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
