//! Envoy stats named after resilience4j's Micrometer metrics. Envoy has no tags on Wasm
//! metrics, so tags are encoded in the name (`<metric>.name.<instance>.kind.<kind>`) and the
//! bootstrap's `stats_tags` extract them back into Prometheus labels. A metric that cannot be
//! defined degrades to a no-op: stats never fail a request.

use crate::breaker::{RecordedKind, Snapshot, State, Transition};

use super::abi::{self, METRIC_COUNTER, METRIC_GAUGE};

const CALL_KINDS: [&str; 6] = [
    "successful",
    "failed",
    "slow_successful",
    "slow_failed",
    "ignored",
    "not_permitted",
];
const STATES: [State; 6] = [
    State::Closed,
    State::Open,
    State::HalfOpen,
    State::Disabled,
    State::ForcedOpen,
    State::MetricsOnly,
];
const TRANSITIONS: [(State, State); 4] = [
    (State::Closed, State::Open),
    (State::Open, State::HalfOpen),
    (State::HalfOpen, State::Open),
    (State::HalfOpen, State::Closed),
];

#[derive(Debug, Default)]
pub struct BreakerMetrics {
    calls: [Option<u32>; 6],
    state: [Option<u32>; 6],
    transitions: [Option<u32>; 4],
    failure_rate: Option<u32>,
    slow_call_rate: Option<u32>,
    buffered_calls: Option<u32>,
    failed_calls: Option<u32>,
}

/// Stat-name segment for an instance: Envoy splits tags on dots.
fn stat_segment(s: &str) -> String {
    s.replace('.', "_")
}

/// Defines a metric; None (a no-op metric) if the host refuses, with a warning, or if the
/// name is new and the VM's stat-name budget is spent (see [`crate::stat_budget`]).
pub fn define(kind: u32, name: String) -> Option<u32> {
    if !super::stat_names::admit(&name) {
        return None;
    }
    match abi::define_metric(kind, &name) {
        Ok(id) => Some(id),
        Err(e) => {
            log::warn!("metric {name} unavailable: host status {}", e.0);
            None
        }
    }
}

fn state_segment(state: State) -> String {
    state.as_str().to_ascii_lowercase()
}

impl BreakerMetrics {
    pub fn define(instance: &str) -> Self {
        let name = stat_segment(instance);
        let counter = |metric: &str, tags: String| {
            define(
                METRIC_COUNTER,
                format!("resilience4j_circuitbreaker_{metric}.name.{name}{tags}"),
            )
        };
        let gauge = |metric: &str, tags: String| {
            define(
                METRIC_GAUGE,
                format!("resilience4j_circuitbreaker_{metric}.name.{name}{tags}"),
            )
        };
        BreakerMetrics {
            calls: CALL_KINDS.map(|kind| counter("calls", format!(".kind.{kind}"))),
            state: STATES.map(|s| gauge("state", format!(".state.{}", state_segment(s)))),
            transitions: TRANSITIONS.map(|(from, to)| {
                counter(
                    "transitions",
                    format!(".from.{}.to.{}", state_segment(from), state_segment(to)),
                )
            }),
            failure_rate: gauge("failure_rate", String::new()),
            slow_call_rate: gauge("slow_call_rate", String::new()),
            buffered_calls: gauge("buffered_calls", String::new()),
            failed_calls: gauge("failed_calls", String::new()),
        }
    }

    pub fn count_call(&self, kind: RecordedKind) {
        let index = match kind {
            RecordedKind::Successful => 0,
            RecordedKind::Failed => 1,
            RecordedKind::SlowSuccessful => 2,
            RecordedKind::SlowFailed => 3,
            RecordedKind::Ignored => 4,
        };
        increment(self.calls[index]);
    }

    pub fn count_not_permitted(&self) {
        increment(self.calls[5]);
    }

    pub fn count_transition(&self, transition: &Transition) {
        if let Some(i) = TRANSITIONS
            .iter()
            .position(|(from, to)| *from == transition.from && *to == transition.to)
        {
            increment(self.transitions[i]);
        }
    }

    /// Gauges: state as 0/1 per state (as Micrometer's), rates in whole percent (0 while the
    /// window holds fewer than the minimum calls; `buffered_calls` tells), window counts.
    pub fn publish(&self, snapshot: &Snapshot) {
        for (i, state) in STATES.iter().enumerate() {
            record(self.state[i], u64::from(*state == snapshot.state));
        }
        record(self.failure_rate, rate(snapshot.failure_rate));
        record(self.slow_call_rate, rate(snapshot.slow_call_rate));
        record(self.buffered_calls, u64::from(snapshot.buffered_calls));
        record(self.failed_calls, u64::from(snapshot.failed_calls));
    }
}

fn rate(percent: f32) -> u64 {
    if percent.is_finite() && percent > 0.0 {
        percent.round() as u64
    } else {
        0
    }
}

fn increment(id: Option<u32>) {
    if let Some(id) = id {
        let _ = abi::increment_metric(id, 1);
    }
}

/// Adds `n` to a counter (Envoy refuses increments of 0).
pub fn add(id: Option<u32>, n: u64) {
    if let (Some(id), true) = (id, n > 0) {
        let _ = abi::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }
}

fn record(id: Option<u32>, value: u64) {
    if let Some(id) = id {
        let _ = abi::record_metric(id, value);
    }
}

const RETRY_KINDS: [&str; 4] = [
    "successful_without_retry",
    "successful_with_retry",
    "failed_without_retry",
    "failed_with_retry",
];

/// resilience4j Retry's call kinds, plus the sidecar's own: attempts made by the filter
/// (replays), retries refused by the budget, and requests too large to replay.
#[derive(Debug, Default)]
pub struct RetryMetrics {
    calls: [Option<u32>; 4],
    attempts: Option<u32>,
    budget_exhausted: Option<u32>,
    body_too_large: Option<u32>,
}

impl RetryMetrics {
    pub fn define(instance: &str) -> Self {
        let name = stat_segment(instance);
        let counter = |metric: &str, tags: String| {
            define(
                METRIC_COUNTER,
                format!("resilience4j_retry_{metric}.name.{name}{tags}"),
            )
        };
        RetryMetrics {
            calls: RETRY_KINDS.map(|kind| counter("calls", format!(".kind.{kind}"))),
            attempts: counter("attempts", String::new()),
            budget_exhausted: counter("budget_exhausted", String::new()),
            body_too_large: counter("body_too_large", String::new()),
        }
    }

    pub fn count_call(&self, successful: bool, retried: bool) {
        let index = match (successful, retried) {
            (true, false) => 0,
            (true, true) => 1,
            (false, false) => 2,
            (false, true) => 3,
        };
        increment(self.calls[index]);
    }

    pub fn count_attempt(&self) {
        increment(self.attempts);
    }

    pub fn count_budget_exhausted(&self) {
        increment(self.budget_exhausted);
    }

    pub fn count_body_too_large(&self) {
        increment(self.body_too_large);
    }
}

/// resilience4j-micrometer's bulkhead gauges (`AbstractBulkheadMetrics`), and for a
/// thread-pool bulkhead `AbstractThreadPoolBulkheadMetrics`' (same `resilience4j_bulkhead_`
/// prefix: threads are the calls in flight, the queue the calls waiting).
#[derive(Debug, Default)]
pub struct BulkheadMetrics {
    available_concurrent_calls: Option<u32>,
    max_allowed_concurrent_calls: Option<u32>,
    /// Thread-pool bulkhead only.
    pool: Option<PoolGauges>,
}

#[derive(Debug, Default)]
struct PoolGauges {
    queue_depth: Option<u32>,
    queue_capacity: Option<u32>,
    thread_pool_size: Option<u32>,
    max_thread_pool_size: Option<u32>,
    active_thread_count: Option<u32>,
    available_thread_count: Option<u32>,
}

impl BulkheadMetrics {
    pub fn define(instance: &str, thread_pool: bool) -> Self {
        let name = stat_segment(instance);
        let gauge = |metric: &str| {
            define(
                METRIC_GAUGE,
                format!("resilience4j_bulkhead_{metric}.name.{name}"),
            )
        };
        if thread_pool {
            BulkheadMetrics {
                available_concurrent_calls: None,
                max_allowed_concurrent_calls: None,
                pool: Some(PoolGauges {
                    queue_depth: gauge("queue_depth"),
                    queue_capacity: gauge("queue_capacity"),
                    thread_pool_size: gauge("thread_pool_size"),
                    max_thread_pool_size: gauge("max_thread_pool_size"),
                    active_thread_count: gauge("active_thread_count"),
                    available_thread_count: gauge("available_thread_count"),
                }),
            }
        } else {
            BulkheadMetrics {
                available_concurrent_calls: gauge("available_concurrent_calls"),
                max_allowed_concurrent_calls: gauge("max_allowed_concurrent_calls"),
                pool: None,
            }
        }
    }

    /// `active` calls in flight and `waiting` for a slot, of `max` and `queue_capacity`.
    pub fn publish(&self, active: u32, waiting: u32, max: u32, queue_capacity: u32) {
        let available = u64::from(max.saturating_sub(active));
        record(self.available_concurrent_calls, available);
        record(self.max_allowed_concurrent_calls, u64::from(max));
        if let Some(pool) = &self.pool {
            record(pool.queue_depth, u64::from(waiting));
            record(pool.queue_capacity, u64::from(queue_capacity));
            record(pool.thread_pool_size, u64::from(active.min(max)));
            record(pool.max_thread_pool_size, u64::from(max));
            record(pool.active_thread_count, u64::from(active));
            record(pool.available_thread_count, available);
        }
    }
}

/// resilience4j-micrometer's rate limiter gauges (`AbstractRateLimiterMetrics`).
#[derive(Debug, Default)]
pub struct RateLimiterMetrics {
    available_permissions: Option<u32>,
    waiting_threads: Option<u32>,
}

impl RateLimiterMetrics {
    pub fn define(instance: &str) -> Self {
        let name = stat_segment(instance);
        let gauge = |metric: &str| {
            define(
                METRIC_GAUGE,
                format!("resilience4j_ratelimiter_{metric}.name.{name}"),
            )
        };
        RateLimiterMetrics {
            available_permissions: gauge("available_permissions"),
            waiting_threads: gauge("waiting_threads"),
        }
    }

    /// Envoy gauges are unsigned: permissions reserved ahead (negative in resilience4j) read 0.
    pub fn publish(&self, available_permissions: i64) {
        record(
            self.available_permissions,
            u64::try_from(available_permissions).unwrap_or(0),
        );
    }

    /// A call starts (+1) or stops (-1) waiting for a permit; the gauge is one per Envoy, each
    /// worker adds its own.
    pub fn waiting(&self, delta: i64) {
        if let Some(id) = self.waiting_threads {
            let _ = abi::increment_metric(id, delta);
        }
    }
}
