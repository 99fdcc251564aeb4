//! Envoy stats named as resilience4j-micrometer's meters are scraped from a Spring app
//! (Micrometer's Prometheus rendering), so resilience4j's Grafana dashboard and existing alert
//! rules work unchanged. Every series name and label key the filter emits is defined here, once.
//!
//! # Naming
//! - The Envoy stat *is* the Prometheus series: Envoy strips `wasmcustom.` and adds no suffix,
//!   so counters are defined with Micrometer's `_total`, a Timer's count as `…_seconds_count`
//!   and its sum as `…_seconds_sum`; gauges keep their bare name.
//! - Labels: Envoy has no tags on Wasm metrics, so they are written into the stat name in
//!   Istio's encoding, `<key>=.=<value>;.;` per label, before the series name — e.g.
//!   `name=.=user-service;.;kind=.=failed;.;resilience4j_circuitbreaker_calls_seconds_count`.
//!   One regex per key, `(<key>=\.=(.*?);\.;)`, turns them back into labels: envoy/bootstrap.yaml
//!   lists them; in a mesh Istio renders the same regexes from `extraStatTags` (the keys below,
//!   istio/observability/). Keys must not end with another key (the regexes are unanchored).
//! - Label values: dots and `;` become `_` (Istio's own unanchored regexes, such as
//!   `(cache\.(.+?)\.)`, would otherwise eat parts of a dotted value).
//! - Where Envoy cannot carry Micrometer's value exactly (integer stats, no negative gauges),
//!   the series keeps the name and unit and the README's metrics table says how it differs.
//!
//! # Adding a module
//! Add its series names as constants below (resilience4j-micrometer's name with `.` → `_`, plus
//! `_total` for a Counter / FunctionCounter, `_seconds_count`/`_seconds_sum` for a Timer), define
//! them with [`series`] in the module's `define`, only with the label keys below (a new key needs its regex in both places), and add
//! the rows to README's metrics table (tests/observability.rs checks it against a scrape) and
//! panels to istio/observability/grafana-dashboard.json.
//!
//! A metric that cannot be defined degrades to a no-op: stats never fail a request.

use std::cell::{Cell, RefCell};

use crate::breaker::{RecordedKind, Snapshot, State, Transition};
use crate::policy::{BreakerConfig, SlidingWindowType};

use super::abi::{self, METRIC_COUNTER, METRIC_GAUGE};

// Every label key the filter writes; each needs its extraction regex (envoy/bootstrap.yaml,
// Istio's extraStatTags in istio/observability/).
pub const NAME: &str = "name";
pub const KIND: &str = "kind";
pub const STATE: &str = "state";
pub const FROM: &str = "from";
pub const TO: &str = "to";
pub const TOPIC: &str = "topic";
pub const REASON: &str = "reason";

// CircuitBreaker (resilience4j-micrometer's `CircuitBreakerMetricNames`).
pub const CB_CALLS_COUNT: &str = "resilience4j_circuitbreaker_calls_seconds_count";
pub const CB_CALLS_SUM: &str = "resilience4j_circuitbreaker_calls_seconds_sum";
pub const CB_NOT_PERMITTED: &str = "resilience4j_circuitbreaker_not_permitted_calls_total";
pub const CB_STATE: &str = "resilience4j_circuitbreaker_state";
pub const CB_BUFFERED: &str = "resilience4j_circuitbreaker_buffered_calls";
pub const CB_SLOW: &str = "resilience4j_circuitbreaker_slow_calls";
/// The sidecar's own: slow calls recorded, ever (the gauge above is the window's).
pub const CB_SLOW_RECORDED: &str = "resilience4j_circuitbreaker_slow_calls_recorded_total";
pub const CB_FAILURE_RATE: &str = "resilience4j_circuitbreaker_failure_rate";
pub const CB_SLOW_RATE: &str = "resilience4j_circuitbreaker_slow_call_rate";
/// resilience4j before 1.0 (the window's size); its Grafana dashboard still charts it.
pub const CB_MAX_BUFFERED: &str = "resilience4j_circuitbreaker_max_buffered_calls";
/// The sidecar's own: state transitions.
pub const CB_TRANSITIONS: &str = "resilience4j_circuitbreaker_transitions_total";
/// The sidecar's own: writes to the breaker's shared state, ever (`store::WriteCount`; a gauge,
/// which Envoy's counter resets leave alone).
pub const CB_STATE_WRITES: &str = "sidecar_circuitbreaker_shared_state_writes";

// Retry (`RetryMetricNames`), then the sidecar's own.
// TimeLimiter (`TimeLimiterMetricNames`).
pub const TL_CALLS: &str = "resilience4j_timelimiter_calls_total";

pub const RETRY_CALLS: &str = "resilience4j_retry_calls_total";
pub const RETRY_ATTEMPTS: &str = "resilience4j_retry_attempts_total";
pub const RETRY_BUDGET_EXHAUSTED: &str = "resilience4j_retry_budget_exhausted_total";
pub const RETRY_BODY_TOO_LARGE: &str = "resilience4j_retry_body_too_large_total";

// Event stamping (the sidecar's own).
pub const EVENTS_STAMPED: &str = "sidecar_events_records_stamped_total";
pub const EVENTS_KEPT: &str = "sidecar_events_envelopes_kept_total";
pub const EVENTS_CORRECTED: &str = "sidecar_events_sources_corrected_total";
pub const EVENTS_REJECTED: &str = "sidecar_events_requests_rejected_total";

/// The Envoy stat name of one series: its labels in Istio's encoding, then the series name.
pub fn stat_name(series: &str, labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, value) in labels {
        out.push_str(key);
        out.push_str("=.=");
        out.extend(
            value
                .chars()
                .map(|c| if c == '.' || c == ';' { '_' } else { c }),
        );
        out.push_str(";.;");
    }
    out.push_str(series);
    out
}

/// Defines one series; None (a no-op metric) if the host refuses, with a warning.
pub fn series(kind: u32, name: &str, labels: &[(&str, &str)]) -> Option<u32> {
    define(kind, stat_name(name, labels))
}

/// Defines a metric by its full stat name; None (a no-op metric) if the host refuses, with a
/// warning, or if the name is new and the process's stat-name budget is spent (`stat_names`).
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
/// The calls Timer's kinds: slow calls count as successful or failed, as in Micrometer.
const CALL_KINDS: [&str; 3] = ["successful", "failed", "ignored"];

/// One kind of the calls Timer: its count and its sum in whole seconds. The sum is an integer
/// Envoy counter, so each worker carries its sub-second remainder and adds whole seconds; the
/// scraped sum trails the exact one by under a second per worker.
#[derive(Debug, Default)]
struct CallTimer {
    count: Option<u32>,
    sum_seconds: Option<u32>,
    carry_ms: Cell<u64>,
}

impl CallTimer {
    fn record(&self, duration_ms: u64) {
        increment(self.count);
        let carried = self.carry_ms.get().saturating_add(duration_ms);
        self.carry_ms.set(carried % 1000);
        add(self.sum_seconds, carried / 1000);
    }
}

#[derive(Debug, Default)]
pub struct BreakerMetrics {
    calls: [CallTimer; 3],
    not_permitted: Option<u32>,
    state: [Option<u32>; 6],
    transitions: [Option<u32>; 4],
    failure_rate: Option<u32>,
    slow_call_rate: Option<u32>,
    /// kind successful, failed.
    buffered: [Option<u32>; 2],
    /// kind successful, failed.
    slow: [Option<u32>; 2],
    /// kind successful, failed.
    slow_recorded: [Option<u32>; 2],
}

fn state_label(state: State) -> String {
    state.as_str().to_ascii_lowercase()
}

impl BreakerMetrics {
    /// Defines the instance's series; publishes `max_buffered_calls` (a count-based window's
    /// size; a time-based window has none).
    pub fn define(instance: &str, config: &BreakerConfig) -> Self {
        let name = (NAME, instance);
        let gauge = |series_name: &str, kind: Option<&str>| match kind {
            Some(k) => series(METRIC_GAUGE, series_name, &[name, (KIND, k)]),
            None => series(METRIC_GAUGE, series_name, &[name]),
        };
        if config.sliding_window_type == SlidingWindowType::CountBased {
            record(
                gauge(CB_MAX_BUFFERED, None),
                u64::from(config.sliding_window_size),
            );
        }
        BreakerMetrics {
            calls: CALL_KINDS.map(|k| CallTimer {
                count: series(METRIC_COUNTER, CB_CALLS_COUNT, &[name, (KIND, k)]),
                sum_seconds: series(METRIC_COUNTER, CB_CALLS_SUM, &[name, (KIND, k)]),
                carry_ms: Cell::new(0),
            }),
            not_permitted: series(
                METRIC_COUNTER,
                CB_NOT_PERMITTED,
                &[name, (KIND, "not_permitted")],
            ),
            state: STATES
                .map(|s| series(METRIC_GAUGE, CB_STATE, &[name, (STATE, &state_label(s))])),
            transitions: TRANSITIONS.map(|(from, to)| {
                series(
                    METRIC_COUNTER,
                    CB_TRANSITIONS,
                    &[name, (FROM, &state_label(from)), (TO, &state_label(to))],
                )
            }),
            failure_rate: gauge(CB_FAILURE_RATE, None),
            slow_call_rate: gauge(CB_SLOW_RATE, None),
            buffered: ["successful", "failed"].map(|k| gauge(CB_BUFFERED, Some(k))),
            slow: ["successful", "failed"].map(|k| gauge(CB_SLOW, Some(k))),
            slow_recorded: ["successful", "failed"]
                .map(|k| series(METRIC_COUNTER, CB_SLOW_RECORDED, &[name, (KIND, k)])),
        }
    }

    /// One recorded call: the Timer of its kind (count, and duration into the sum).
    pub fn count_call(&self, kind: RecordedKind, duration_ms: u64) {
        let index = match kind {
            RecordedKind::Successful | RecordedKind::SlowSuccessful => 0,
            RecordedKind::Failed | RecordedKind::SlowFailed => 1,
            RecordedKind::Ignored => 2,
        };
        self.calls[index].record(duration_ms);
        match kind {
            RecordedKind::SlowSuccessful => increment(self.slow_recorded[0]),
            RecordedKind::SlowFailed => increment(self.slow_recorded[1]),
            _ => {}
        }
    }

    pub fn count_not_permitted(&self) {
        increment(self.not_permitted);
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
    /// window holds fewer than the minimum calls, where Micrometer shows -1: Envoy gauges are
    /// unsigned; `buffered_calls` tells), the window's counts by kind.
    pub fn publish(&self, snapshot: &Snapshot) {
        for (i, state) in STATES.iter().enumerate() {
            record(self.state[i], u64::from(*state == snapshot.state));
        }
        record(self.failure_rate, rate(snapshot.failure_rate));
        record(self.slow_call_rate, rate(snapshot.slow_call_rate));
        let successful = snapshot
            .buffered_calls
            .saturating_sub(snapshot.failed_calls);
        record(self.buffered[0], u64::from(successful));
        record(self.buffered[1], u64::from(snapshot.failed_calls));
        let slow_successful = snapshot
            .slow_calls
            .saturating_sub(snapshot.slow_failed_calls);
        record(self.slow[0], u64::from(slow_successful));
        record(self.slow[1], u64::from(snapshot.slow_failed_calls));
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
    add(id, 1);
}

thread_local! {
    /// Counter increments not yet handed to Envoy: (metric id, amount). A worker is one
    /// thread and one VM, so this is the worker's own; [`flush_counters`] empties it on every
    /// tick of the root context (root.rs: at most `COUNTER_FLUSH_MS` apart).
    static UNFLUSHED: RefCell<Vec<(u32, u64)>> = const { RefCell::new(Vec::new()) };
}

/// Adds `n` to a counter. Accumulated per worker and flushed on the tick: an
/// `increment_metric` host call per count cost more than the request's own bookkeeping.
/// Envoy refuses increments of 0.
pub fn add(id: Option<u32>, n: u64) {
    let Some(id) = id else { return };
    if n == 0 {
        return;
    }
    UNFLUSHED.with(|unflushed| {
        let mut unflushed = unflushed.borrow_mut();
        // A handful of distinct counters move between two ticks: a short linear scan.
        match unflushed.iter_mut().find(|(known, _)| *known == id) {
            Some((_, pending)) => *pending = pending.saturating_add(n),
            None => unflushed.push((id, n)),
        }
    });
}

/// Hands the counts accumulated since the last flush to Envoy (the root's tick).
pub fn flush_counters() {
    UNFLUSHED.with(|unflushed| {
        for (id, n) in unflushed.borrow_mut().drain(..) {
            let _ = abi::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    });
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
        let name = (NAME, instance);
        let counter = |series_name: &str| series(METRIC_COUNTER, series_name, &[name]);
        RetryMetrics {
            calls: RETRY_KINDS.map(|k| series(METRIC_COUNTER, RETRY_CALLS, &[name, (KIND, k)])),
            attempts: counter(RETRY_ATTEMPTS),
            budget_exhausted: counter(RETRY_BUDGET_EXHAUSTED),
            body_too_large: counter(RETRY_BODY_TOO_LARGE),
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
        let gauge = |metric: &str| {
            series(
                METRIC_GAUGE,
                &format!("resilience4j_bulkhead_{metric}"),
                &[("name", instance)],
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
        let gauge = |metric: &str| {
            series(
                METRIC_GAUGE,
                &format!("resilience4j_ratelimiter_{metric}"),
                &[("name", instance)],
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

/// resilience4j-micrometer's TaggedTimeLimiterMetrics: `resilience4j.timelimiter.calls` with
/// kind successful / failed / timeout, one count per attempt (the TimeLimiter sits inside Retry).
#[derive(Debug, Default)]
pub struct TimeLimiterMetrics {
    calls: [Option<u32>; 3],
}

impl TimeLimiterMetrics {
    pub fn define(instance: &str) -> Self {
        TimeLimiterMetrics {
            calls: crate::timelimiter::CallKind::ALL.map(|kind| {
                series(
                    METRIC_COUNTER,
                    TL_CALLS,
                    &[(NAME, instance), (KIND, kind.as_str())],
                )
            }),
        }
    }

    pub fn count_call(&self, kind: crate::timelimiter::CallKind) {
        if let Some(index) = crate::timelimiter::CallKind::ALL
            .iter()
            .position(|k| *k == kind)
        {
            increment(self.calls.get(index).copied().flatten());
        }
    }
}
