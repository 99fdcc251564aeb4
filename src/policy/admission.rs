//! The admission modules of the `resilience4j` tree: `bulkhead` (SemaphoreBulkhead),
//! `thread-pool-bulkhead` and `ratelimiter` (AtomicRateLimiter), declared as
//! [`Module`](super::resilience4j::Module)s like circuitbreaker and retry
//! (`Common*ConfigurationProperties.InstanceProperties` of resilience4j-framework-common).

use super::model::{BulkheadConfig, RateLimiterConfig, ThreadPoolBulkheadConfig};
use super::properties::{properties, Bool, Duration, Int};
use super::read::{error, Result, JAVA_INT_MAX};
use super::resilience4j::Module;

/// Bulkhead slots and queues live in shared data, one small record per worker; these bound
/// the counts so every count fits the encoding and no policy asks for the impossible.
const MAX_SLOTS: i64 = 1_000_000;

properties! {
    /// CommonBulkheadConfigurationProperties.InstanceProperties.
    pub(super) struct BulkheadProperties {
        max_concurrent_calls: Int<1, MAX_SLOTS> = "max-concurrent-calls";
        max_wait_duration: Duration<0> = "max-wait-duration";
    }
    ignored {
        writable_stack_trace_enabled: Bool = "writable-stack-trace-enabled";
        event_consumer_buffer_size: Int<1, JAVA_INT_MAX> = "event-consumer-buffer-size";
    }
}

impl Module for BulkheadProperties {
    const ASPECT_ORDER: &'static str = "bulkhead-aspect-order";
    type Config = BulkheadConfig;

    fn build(self, _path: &str) -> Result<BulkheadConfig> {
        let BulkheadProperties {
            max_concurrent_calls,
            max_wait_duration,
            writable_stack_trace_enabled: _,
            event_consumer_buffer_size: _,
        } = self;
        let d = BulkheadConfig::default();
        Ok(BulkheadConfig {
            max_concurrent_calls: max_concurrent_calls.unwrap_or(d.max_concurrent_calls),
            max_wait_duration_ms: max_wait_duration.unwrap_or(d.max_wait_duration_ms),
        })
    }
}

properties! {
    /// CommonThreadPoolBulkheadConfigurationProperties.InstanceProperties. A sidecar owns no
    /// threads: `max-thread-pool-size` is the number of calls in flight, `queue-capacity` the
    /// number waiting; the core size and keep-alive have no meaning (checked, then ignored with
    /// a warning).
    pub(super) struct ThreadPoolBulkheadProperties {
        max_thread_pool_size: Int<1, MAX_SLOTS> = "max-thread-pool-size";
        queue_capacity: Int<0, MAX_SLOTS> = "queue-capacity";
    }
    ignored {
        core_thread_pool_size: Int<1, JAVA_INT_MAX> = "core-thread-pool-size";
        keep_alive_duration: Duration<0> = "keep-alive-duration";
        writable_stack_trace_enabled: Bool = "writable-stack-trace-enabled";
        event_consumer_buffer_size: Int<1, JAVA_INT_MAX> = "event-consumer-buffer-size";
    }
}

impl Module for ThreadPoolBulkheadProperties {
    const ASPECT_ORDER: &'static str = "bulkhead-aspect-order";
    type Config = ThreadPoolBulkheadConfig;

    fn build(self, path: &str) -> Result<ThreadPoolBulkheadConfig> {
        let ThreadPoolBulkheadProperties {
            max_thread_pool_size,
            queue_capacity,
            core_thread_pool_size,
            keep_alive_duration: _,
            writable_stack_trace_enabled: _,
            event_consumer_buffer_size: _,
        } = self;
        let d = ThreadPoolBulkheadConfig::default();
        let config = ThreadPoolBulkheadConfig {
            max_thread_pool_size: max_thread_pool_size.unwrap_or(d.max_thread_pool_size),
            queue_capacity: queue_capacity.unwrap_or(d.queue_capacity),
        };
        if let Some(core) = core_thread_pool_size {
            // ThreadPoolBulkheadConfig.Builder.build() refuses this.
            if config.max_thread_pool_size < core {
                return Err(error(
                    path,
                    format!(
                        "max-thread-pool-size ({}) must be at least core-thread-pool-size ({core})",
                        config.max_thread_pool_size
                    ),
                ));
            }
        }
        Ok(config)
    }
}

properties! {
    /// CommonRateLimiterConfigurationProperties.InstanceProperties.
    pub(super) struct RateLimiterProperties {
        limit_for_period: Int<1, MAX_SLOTS> = "limit-for-period";
        /// Nanoseconds in Spring; whole milliseconds here (a sub-millisecond period is 1 ms).
        limit_refresh_period: Duration<1> = "limit-refresh-period";
        timeout_duration: Duration<0> = "timeout-duration";
    }
    ignored {
        writable_stack_trace_enabled: Bool = "writable-stack-trace-enabled";
        subscribe_for_events: Bool = "subscribe-for-events";
        register_health_indicator: Bool = "register-health-indicator";
        allow_health_indicator_to_fail: Bool = "allow-health-indicator-to-fail";
        event_consumer_buffer_size: Int<1, JAVA_INT_MAX> = "event-consumer-buffer-size";
    }
}

impl Module for RateLimiterProperties {
    const ASPECT_ORDER: &'static str = "rate-limiter-aspect-order";
    type Config = RateLimiterConfig;

    fn build(self, _path: &str) -> Result<RateLimiterConfig> {
        let RateLimiterProperties {
            limit_for_period,
            limit_refresh_period,
            timeout_duration,
            writable_stack_trace_enabled: _,
            subscribe_for_events: _,
            register_health_indicator: _,
            allow_health_indicator_to_fail: _,
            event_consumer_buffer_size: _,
        } = self;
        let d = RateLimiterConfig::default();
        Ok(RateLimiterConfig {
            limit_for_period: limit_for_period.unwrap_or(d.limit_for_period),
            limit_refresh_period_ms: limit_refresh_period.unwrap_or(d.limit_refresh_period_ms),
            timeout_duration_ms: timeout_duration.unwrap_or(d.timeout_duration_ms),
        })
    }
}
