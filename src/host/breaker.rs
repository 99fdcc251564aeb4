//! One circuit breaker instance as a worker reaches it. The breaker itself lives in shared
//! data (`store`), so every worker asks the same breaker for permission and records results
//! in it; this handle holds what a worker needs for that — the config, the shared-data key,
//! the instance's metrics and fallback — and turns each update into logs and metrics.

use crate::breaker::{
    config_fingerprint, CircuitBreaker, Permission, RecordedKind, Snapshot, State, Transition,
};
use crate::fallback::{self, LocalResponse};
use crate::outcome::{classify, CallResult, Outcome};
use crate::policy::{BreakerConfig, Fallback};

use super::metrics::BreakerMetrics;
use super::store::{self, StoreError};

/// A handle on one instance's breaker in shared data.
pub struct SharedBreaker {
    instance: String,
    config: BreakerConfig,
    /// `config_fingerprint(&config)`, which every stored state carries: hashed once here, not
    /// on each decode and encode of the request path.
    fingerprint: u64,
    key: String,
    metrics: BreakerMetrics,
    fallback: Option<Fallback>,
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
            metrics: BreakerMetrics::define(instance, &config),
            config,
            fallback,
        }
    }

    /// The breaker's permission for a call. Always asks the shared state (never a worker's
    /// copy of it): calls one at a time see every transition another worker made, as
    /// resilience4j's single breaker would. In the states that permit without a change
    /// (CLOSED, DISABLED, METRICS_ONLY) the answer is read from the stored header alone: one
    /// shared-data read, no decode, no CAS.
    pub fn acquire(&self, now: u64) -> Acquired {
        let config = &self.config;
        let read = store::read_breaker(&self.key).ok();
        if let Some(Some((bytes, _))) = &read {
            if CircuitBreaker::stored_permits_unchanged(bytes, self.fingerprint) {
                return Acquired::Permitted;
            }
        }
        match store::update_breaker(&self.key, config, self.fingerprint, now, read, |cb| {
            let (permission, transition) =
                cb.try_acquire_permission(config, now, super::abi::random01);
            let snapshot = transition.as_ref().map(|_| cb.snapshot(config, now));
            (permission, transition, snapshot)
        }) {
            Ok((permission, transition, snapshot)) => {
                if let Some(snapshot) = snapshot {
                    self.after_update(transition, &snapshot);
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
        // (the core's `stored_unchanged_by_fast_success`): one read, no decode, no CAS. Any
        // other result goes through the CAS, so no result that counts is ever lost or late.
        let mut read = None;
        if outcome == Outcome::Success && duration_ms <= config.slow_call_duration_threshold_ms {
            read = store::read_breaker(&self.key).ok();
            if let Some(Some((bytes, _))) = &read {
                if CircuitBreaker::stored_unchanged_by_fast_success(bytes, config, self.fingerprint)
                {
                    self.metrics
                        .count_call(RecordedKind::Successful, duration_ms);
                    return;
                }
            }
        }
        // Gauges follow on transitions here and on the tick otherwise: publishing them on
        // every call costs more host calls than the call's own bookkeeping.
        match store::update_breaker(&self.key, config, self.fingerprint, now, read, |cb| {
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
        if let Err(e) =
            store::update_breaker(&self.key, config, self.fingerprint, now, None, |cb| {
                cb.release_permission(config)
            })
        {
            self.report_store_error(e);
        }
    }

    /// Scheduled transitions, and the gauges.
    pub fn tick(&self, now: u64) {
        let config = &self.config;
        match store::update_breaker(&self.key, config, self.fingerprint, now, None, |cb| {
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
        match store::ensure_breaker(&self.key, &self.config, now) {
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
