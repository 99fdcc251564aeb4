//! One circuit breaker instance as a worker reaches it. The breaker itself lives in shared
//! data (`store`), so every worker asks the same breaker for permission and records results
//! in it; this handle holds what a worker needs for that — the config, the shared-data key,
//! the instance's metrics and fallback — and turns each update into logs and metrics.

use std::cell::Cell;

use crate::breaker::{
    config_fingerprint, CircuitBreaker, Permission, RecordedKind, Snapshot, State, Transition,
};
use crate::fallback::{self, LocalResponse};
use crate::outcome::{classify, CallResult, Outcome};
use crate::policy::{BreakerConfig, Fallback};

use super::metrics::{self, BreakerMetrics};
use super::store::{self, StoreError, WriteCount};

/// A handle on one instance's breaker in shared data.
pub struct SharedBreaker {
    instance: String,
    config: BreakerConfig,
    /// `config_fingerprint(&config)`, which every stored state carries: hashed once here, not
    /// on each decode and encode of the request path.
    fingerprint: u64,
    key: String,
    /// The stored breaker's write count: while it reads as at `peeked`, the stored bytes are
    /// the ones peeked, and the request path needs no shared-data read.
    writes: WriteCount,
    peeked: Cell<Option<Peeked>>,
    metrics: BreakerMetrics,
    fallback: Option<Fallback>,
}

/// What this worker last learnt from the stored bytes without decoding them, and the write
/// count read just before it read them.
#[derive(Clone, Copy)]
struct Peeked {
    writes: u64,
    /// `CircuitBreaker::stored_permits_unchanged`.
    permits: bool,
    /// `CircuitBreaker::stored_unchanged_by_fast_success`.
    unchanged_by_fast_success: bool,
    /// `CircuitBreaker::refuses_until`, learnt when a call was refused.
    refuses: Option<(State, Option<u64>)>,
}

pub enum Acquired {
    Permitted,
    NotPermitted {
        state: State,
        retry_after_ms: Option<u64>,
    },
    /// Shared state unavailable: fail open, unrecorded.
    Unknown,
}

impl SharedBreaker {
    /// Defines the instance's metrics.
    pub fn new(
        plugin_name: &str,
        instance: &str,
        config: BreakerConfig,
        fallback: Option<Fallback>,
    ) -> Self {
        SharedBreaker {
            instance: instance.to_string(),
            fingerprint: config_fingerprint(&config),
            key: store::breaker_key(plugin_name, instance),
            writes: WriteCount::define(metrics::stat_name(
                metrics::CB_STATE_WRITES,
                &[(metrics::NAME, instance)],
            )),
            peeked: Cell::new(None),
            metrics: BreakerMetrics::define(instance, &config),
            config,
            fallback,
        }
    }

    /// The breaker's permission for a call. Always asks the shared state as it is now (never a
    /// worker's copy of an older one): calls one at a time see every transition another worker
    /// made, as resilience4j's single breaker would. In the states that permit without a
    /// change (CLOSED, DISABLED, METRICS_ONLY) the answer is read from the stored header
    /// alone: no decode, no CAS, and no shared-data read while the write count says the
    /// header is the one this worker last peeked. So is a refusal while the stored state
    /// refuses unchanged (OPEN before its end, FORCED_OPEN): the fallback path of an outage.
    pub fn acquire(&self, now: u64) -> Acquired {
        let config = &self.config;
        let writes = self.writes.current();
        if let Some(peeked) = self.fresh_peek(writes) {
            if peeked.permits {
                return Acquired::Permitted;
            }
            if let Some((state, until)) = peeked.refuses {
                if until.is_none_or(|until| now <= until) {
                    self.metrics.count_not_permitted();
                    return Acquired::NotPermitted {
                        state,
                        retry_after_ms: until.map(|until| until.saturating_sub(now).max(1)),
                    };
                }
            }
        }
        let read = store::read_breaker(&self.key).ok();
        if let Some(Some((bytes, _))) = &read {
            if self.peek(bytes, writes).permits {
                return Acquired::Permitted;
            }
        }
        match self.update(now, read, |cb| {
            let (permission, transition) =
                cb.try_acquire_permission(config, now, super::abi::random01);
            let snapshot = transition.as_ref().map(|_| cb.snapshot(config, now));
            let refuses = cb.refuses_until();
            (permission, transition, snapshot, refuses)
        }) {
            Ok((permission, transition, snapshot, refuses)) => {
                if let Some(snapshot) = snapshot {
                    self.after_update(transition, &snapshot);
                } else if let Some(peeked) = self.fresh_peek(writes) {
                    // Unchanged: what refused this call refuses the next ones alike.
                    self.peeked.set(Some(Peeked { refuses, ..peeked }));
                }
                match permission {
                    Permission::Permitted => Acquired::Permitted,
                    Permission::NotPermitted {
                        state,
                        retry_after_ms,
                    } => {
                        self.metrics.count_not_permitted();
                        Acquired::NotPermitted {
                            state,
                            retry_after_ms,
                        }
                    }
                }
            }
            Err(e) => {
                self.report_store_error(e);
                Acquired::Unknown
            }
        }
    }

    pub fn record(&self, now: u64, result: CallResult, duration_ms: u64) {
        let config = &self.config;
        let outcome = classify(&config.record, &config.ignore, result);
        // A fast success into a CLOSED window that holds only fast successes changes nothing
        // (the core's `stored_unchanged_by_fast_success`): no decode, no CAS, and no read while
        // the write count is the peek's. Any other result goes through the CAS, so no result
        // that counts is ever lost or late.
        let mut read = None;
        if outcome == Outcome::Success && duration_ms <= config.slow_call_duration_threshold_ms {
            let writes = self.writes.current();
            let unchanged = match self.fresh_peek(writes) {
                Some(peeked) => peeked.unchanged_by_fast_success,
                None => {
                    read = store::read_breaker(&self.key).ok();
                    match &read {
                        Some(Some((bytes, _))) => {
                            self.peek(bytes, writes).unchanged_by_fast_success
                        }
                        _ => false,
                    }
                }
            };
            if unchanged {
                self.metrics
                    .count_call(RecordedKind::Successful, duration_ms);
                return;
            }
        }
        // Gauges follow on transitions here and on the tick otherwise: publishing them on
        // every call costs more host calls than the call's own bookkeeping.
        match self.update(now, read, |cb| {
            let (kind, transition) =
                cb.on_result(config, now, outcome, duration_ms, super::abi::random01);
            let snapshot = transition.as_ref().map(|_| cb.snapshot(config, now));
            (kind, transition, snapshot)
        }) {
            Ok((kind, transition, snapshot)) => {
                self.metrics.count_call(kind, duration_ms);
                if let Some(snapshot) = snapshot {
                    self.after_update(transition, &snapshot);
                }
            }
            Err(e) => self.report_store_error(e),
        }
    }

    pub fn slow_call_duration_threshold_ms(&self) -> u64 {
        self.config.slow_call_duration_threshold_ms
    }

    /// Hands back a permission whose call will have no result (the caller went away, or the
    /// replay it was for could not be sent).
    pub fn release(&self, now: u64) {
        let config = &self.config;
        if let Err(e) = self.update(now, None, |cb| cb.release_permission(config)) {
            self.report_store_error(e);
        }
    }

    /// Scheduled transitions, and the gauges.
    pub fn tick(&self, now: u64) {
        let config = &self.config;
        match self.update(now, None, |cb| {
            (
                cb.on_tick(config, now, super::abi::random01),
                cb.snapshot(config, now),
            )
        }) {
            Ok((transition, snapshot)) => self.after_update(transition, &snapshot),
            Err(e) => self.report_store_error(e),
        }
    }

    /// On (re)configuration: keeps the shared state when it was built for this very config
    /// (a change to another instance must not reset this one), else starts it afresh; then
    /// publishes the gauges.
    pub fn reset_if_config_changed(&self, now: u64) {
        match store::ensure_breaker(&self.key, &self.writes, &self.config, now) {
            Ok(true) => log::info!(
                "circuit breaker '{}': starts fresh ({})",
                self.instance,
                config_summary(&self.config)
            ),
            Ok(false) => log::info!(
                "circuit breaker '{}': config unchanged, state kept",
                self.instance
            ),
            Err(e) => self.report_store_error(e),
        }
        self.tick(now);
    }

    /// The response served while the breaker does not permit calls.
    pub fn fallback(&self, state: State, retry_after_ms: Option<u64>) -> LocalResponse {
        fallback::render(
            self.fallback.as_ref(),
            &self.instance,
            state.as_str(),
            retry_after_ms,
        )
    }

    /// `op` on the instance's stored breaker (`store::update_breaker` with this handle's key,
    /// write count, config and fingerprint). `read`: bytes just read, for the first attempt.
    fn update<R>(
        &self,
        now: u64,
        read: Option<store::Stored>,
        op: impl FnMut(&mut CircuitBreaker) -> R,
    ) -> Result<R, StoreError> {
        store::update_breaker(
            &self.key,
            &self.writes,
            &self.config,
            self.fingerprint,
            now,
            read,
            op,
        )
    }

    /// The last peek, if the stored bytes are still the ones it read (`writes`: the count now).
    fn fresh_peek(&self, writes: Option<u64>) -> Option<Peeked> {
        self.peeked.get().filter(|p| Some(p.writes) == writes)
    }

    /// Peeks at stored bytes read after the write count `writes`, and keeps what it learnt.
    fn peek(&self, bytes: &[u8], writes: Option<u64>) -> Peeked {
        let peeked = Peeked {
            writes: writes.unwrap_or(0),
            permits: CircuitBreaker::stored_permits_unchanged(bytes, self.fingerprint),
            unchanged_by_fast_success: CircuitBreaker::stored_unchanged_by_fast_success(
                bytes,
                &self.config,
                self.fingerprint,
            ),
            refuses: None,
        };
        self.peeked.set(writes.is_some().then_some(peeked));
        peeked
    }

    fn after_update(&self, transition: Option<Transition>, snapshot: &Snapshot) {
        if let Some(t) = transition {
            log::info!(
                "circuit breaker '{}': {} -> {}",
                self.instance,
                t.from.as_str(),
                t.to.as_str()
            );
            self.metrics.count_transition(&t);
        }
        self.metrics.publish(snapshot);
    }

    fn report_store_error(&self, error: StoreError) {
        match error {
            StoreError::ConfigChanged => log::debug!(
                "circuit breaker '{}': policy rollout in progress, call passes unrecorded",
                self.instance
            ),
            other => log::warn!(
                "circuit breaker '{}': shared state unavailable ({other}); failing open",
                self.instance
            ),
        }
    }
}

fn config_summary(c: &BreakerConfig) -> String {
    format!(
        "failure-rate-threshold {}%, {:?} window {}, minimum {} calls, open wait {} ms",
        crate::float_text::f32_text(c.failure_rate_threshold),
        c.sliding_window_type,
        c.sliding_window_size,
        c.minimum_number_of_calls,
        c.wait_duration_in_open_state_ms
    )
}
