//! resilience4j's CircuitBreaker (2.x `CircuitBreakerStateMachine`) as pure, serializable data.
//!
//! Every Envoy worker runs its own Wasm VM, so a breaker's state lives in proxy-wasm shared
//! data and each operation is read → [`CircuitBreaker::decode`] → operate →
//! [`CircuitBreaker::encode`] → compare-and-swap write. Hence:
//! - the breaker is plain data (`Clone`, `PartialEq`) and holds no config: the config is passed
//!   to every operation, and only its [`config_fingerprint`] is stored in the encoding;
//! - time is a parameter (`now_ms`, Unix epoch milliseconds): no clocks, no timers.
//!   resilience4j's scheduled transitions (automatic OPEN → HALF_OPEN,
//!   max-wait-duration-in-half-open-state) happen in [`CircuitBreaker::on_tick`], which the
//!   host calls periodically, and the latter also lazily in
//!   [`CircuitBreaker::try_acquire_permission`];
//! - randomness is a parameter too: every operation that can enter OPEN takes `random01`, a
//!   source of uniform samples in [0, 1) (resilience4j's `Math.random()`), called only when
//!   the open wait is randomized (`enable-randomized-wait`), once per opening;
//! - nothing panics: sizes and times from config or shared data are used with saturating or
//!   checked arithmetic, and decoding validates everything.
//!
//! The state is a private enum carrying its data, changed only by the `transit_to_*` helpers
//! (failsafe-rs' `transit_to_*`); operations return the [`Transition`] they made, after the
//! state changed, for the host to publish as an event.
//!
//! Semantics follow resilience4j state by state; where this port had to choose, the choice is
//! documented at the item concerned (search for "resilience4j:").

mod codec;
mod window;

#[cfg(test)]
mod tests;

pub use codec::config_fingerprint;

use crate::interval::IntervalFunction;
use crate::outcome::Outcome;
use crate::policy::{BreakerConfig, InitialState, SlidingWindowType, StateAfterWait};
use window::{Counts, Window, FAILED_BIT, SLOW_BIT};

/// resilience4j's `CircuitBreaker.State`, in its declaration order (see [`State::index`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
    Disabled,
    ForcedOpen,
    MetricsOnly,
}

impl State {
    /// The name resilience4j uses (`CircuitBreaker.State.name()`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Open => "OPEN",
            State::HalfOpen => "HALF_OPEN",
            State::Disabled => "DISABLED",
            State::ForcedOpen => "FORCED_OPEN",
            State::MetricsOnly => "METRICS_ONLY",
        }
    }

    /// resilience4j's `State.getOrder()`: CLOSED 0, OPEN 1, HALF_OPEN 2, DISABLED 3,
    /// FORCED_OPEN 4, METRICS_ONLY 5. Also the state tag in the encoding.
    pub fn index(self) -> u8 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::Disabled => 3,
            State::ForcedOpen => 4,
            State::MetricsOnly => 5,
        }
    }

    /// resilience4j's `State.allowPublish`: in DISABLED and FORCED_OPEN resilience4j publishes
    /// no call events, so its Micrometer call counters do not move. A host that wants exactly
    /// those counters skips counting [`RecordedKind`]s when the state before the call was one
    /// of these.
    pub fn allows_publish(self) -> bool {
        !matches!(self, State::Disabled | State::ForcedOpen)
    }

    fn from_index(index: u8) -> Option<State> {
        Some(match index {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::Disabled,
            4 => State::ForcedOpen,
            5 => State::MetricsOnly,
            _ => return None,
        })
    }
}

/// A state change that has happened (resilience4j's `StateTransition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

/// The answer of [`CircuitBreaker::try_acquire_permission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Permitted,
    /// `retry_after_ms`:
    /// - OPEN: milliseconds until a request would be permitted again (at least 1);
    /// - FORCED_OPEN: `None`, it never opens by itself;
    /// - HALF_OPEN with every trial permit taken: `None`, the trial calls' results decide
    ///   when, and whether, calls are permitted again.
    NotPermitted {
        state: State,
        retry_after_ms: Option<u64>,
    },
}

/// Which of resilience4j's Micrometer call kinds (`resilience4j.circuitbreaker.calls`,
/// tag `kind`) a result counts as. Slow means slower than slow-call-duration-threshold.
/// Returned in every state, also where the window ignores the call (see
/// [`State::allows_publish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedKind {
    Successful,
    Failed,
    SlowSuccessful,
    SlowFailed,
    Ignored,
}

/// resilience4j's `CircuitBreaker.Metrics` at one moment, for gauges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub state: State,
    /// Percent, or -1.0 while the window holds fewer than the minimum number of calls
    /// (and always in DISABLED and FORCED_OPEN, whose windows are empty), as resilience4j.
    pub failure_rate: f32,
    /// Percent, or -1.0 as `failure_rate`.
    pub slow_call_rate: f32,
    pub buffered_calls: u32,
    pub failed_calls: u32,
    pub slow_calls: u32,
    pub slow_failed_calls: u32,
    /// OPEN only: milliseconds left of the open wait (0 once elapsed).
    pub open_remaining_ms: Option<u64>,
}

/// Why stored bytes could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Written by a different encoding version (a rollout of another filter build).
    UnknownVersion(u8),
    /// Written for a different config (a policy rollout): start a fresh breaker.
    ConfigChanged,
    /// Truncated, trailing or inconsistent bytes.
    Corrupt,
}

/// Which window a window is: the CLOSED one (config's type and size) or the HALF_OPEN one
/// (COUNT_BASED of permitted-number-of-calls-in-half-open-state). OPEN keeps the window of
/// the state it came from, as resilience4j's `OpenState` keeps `currentState.getMetrics()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Closed,
    HalfOpen,
}

impl Shape {
    fn size(self, config: &BreakerConfig) -> u32 {
        match self {
            Shape::Closed => config.sliding_window_size,
            Shape::HalfOpen => config.permitted_number_of_calls_in_half_open_state,
        }
    }

    /// resilience4j's `CircuitBreakerMetrics.minimumNumberOfCalls`: for a COUNT_BASED window
    /// min(minimum-number-of-calls, window size), for TIME_BASED the minimum as configured.
    ///
    /// resilience4j: the HALF_OPEN window is a COUNT_BASED window of the permitted number of
    /// calls (`CircuitBreakerMetrics.forHalfOpen`), so HALF_OPEN decides after
    /// min(minimum-number-of-calls, permitted) results, not always after all permitted calls
    /// (resilience4j issues #1351, #1523: "expected behavior").
    fn minimum_calls(self, config: &BreakerConfig) -> u32 {
        match (self, config.sliding_window_type) {
            (Shape::Closed, SlidingWindowType::TimeBased) => config.minimum_number_of_calls,
            _ => config.minimum_number_of_calls.min(self.size(config)),
        }
    }

    fn fresh_window(self, config: &BreakerConfig) -> Window {
        match (self, config.sliding_window_type) {
            (Shape::Closed, SlidingWindowType::TimeBased) => Window::empty_time(),
            _ => Window::empty_count(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Inner {
    Closed {
        window: Window,
    },
    Open {
        /// Requests are not permitted up to and including this instant.
        until_ms: u64,
        /// resilience4j's `attempts()`: 1 on the first opening from CLOSED, +1 on each re-open
        /// from HALF_OPEN; drives the exponential open wait. Reset by CLOSED.
        attempts: u32,
        shape: Shape,
        window: Window,
    },
    HalfOpen {
        since_ms: u64,
        attempts: u32,
        /// Trial permits not yet handed out.
        permits: u32,
        window: Window,
    },
    Disabled,
    ForcedOpen,
    MetricsOnly {
        window: Window,
    },
}

/// One circuit breaker's complete state. See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreaker {
    inner: Inner,
}

/// The circuit breaker's `waitIntervalFunctionInOpenState` as resilience4j's Spring binding
/// builds it: `IntervalFunction.of(wait-duration-in-open-state)`, or with
/// enable-exponential-backoff `ofExponentialBackoff(wait, multiplier[, max])`, or with
/// enable-randomized-wait `ofRandomized(wait, factor)`. Spring refuses the last two together;
/// given both, this is `ofExponentialRandomBackoff(wait, multiplier, factor[, max])`, which
/// resilience4j's builder also accepts. A multiplier of 1.0 is the constant wait.
pub fn open_wait_interval(config: &BreakerConfig) -> IntervalFunction {
    IntervalFunction {
        initial_ms: config.wait_duration_in_open_state_ms,
        multiplier: config.open_wait_multiplier,
        randomization_factor: config.open_wait_randomization_factor,
        max_ms: config.open_wait_max_ms,
    }
}

/// The open wait of the `attempts`-th opening in a row (resilience4j's `attempts()`: 1 from
/// CLOSED, +1 for each re-open from HALF_OPEN): [`open_wait_interval`] applied to it, with
/// the arithmetic of [`crate::interval`] (whole milliseconds at every step, randomized before
/// the cap). `random01` is called only for a randomized wait.
pub fn open_wait_ms(config: &BreakerConfig, attempts: u32, random01: impl FnOnce() -> f64) -> u64 {
    open_wait_interval(config).interval_ms(attempts, random01)
}

fn rate(part: u32, calls: u32) -> f32 {
    // resilience4j's SnapshotImpl: `part * 100.0f / calls`, in float.
    part as f32 * 100.0 / calls as f32
}

/// resilience4j's `CircuitBreakerMetrics.Result`, reduced to what the state machine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    BelowMinimumCalls,
    BelowThresholds,
    /// Failure rate ≥ failure-rate-threshold or slow-call rate ≥ slow-call-rate-threshold.
    Exceeded,
}

fn check(counts: Counts, minimum_calls: u32, config: &BreakerConfig) -> Check {
    if counts.calls == 0 || counts.calls < minimum_calls {
        return Check::BelowMinimumCalls;
    }
    if rate(counts.failed, counts.calls) >= config.failure_rate_threshold
        || rate(counts.slow, counts.calls) >= config.slow_call_rate_threshold
    {
        Check::Exceeded
    } else {
        Check::BelowThresholds
    }
}

impl CircuitBreaker {
    /// A breaker in the config's initial state (resilience4j's `initialState`), created at
    /// `now_ms`: CLOSED with an empty window normally. As resilience4j's
    /// `getCircuitBreakerStateObjectFromState`, OPEN and HALF_OPEN count as the first opening
    /// (attempts 1): OPEN waits the first open wait from `now_ms` (the host passes the time the
    /// policy was loaded), with the CLOSED window (`CircuitBreakerMetrics.forClosed`);
    /// HALF_OPEN hands out its trial permits, and its max-wait-duration-in-half-open-state
    /// runs from `now_ms`.
    pub fn new(config: &BreakerConfig, now_ms: u64, random01: impl FnOnce() -> f64) -> Self {
        let inner = match config.initial_state {
            InitialState::Closed => Inner::Closed {
                window: Shape::Closed.fresh_window(config),
            },
            InitialState::Disabled => Inner::Disabled,
            InitialState::ForcedOpen => Inner::ForcedOpen,
            InitialState::MetricsOnly => Inner::MetricsOnly {
                window: Shape::Closed.fresh_window(config),
            },
            InitialState::Open => Inner::Open {
                until_ms: now_ms.saturating_add(open_wait_ms(config, 1, random01)),
                attempts: 1,
                shape: Shape::Closed,
                window: Shape::Closed.fresh_window(config),
            },
            InitialState::HalfOpen => Inner::HalfOpen {
                since_ms: now_ms,
                attempts: 1,
                permits: config.permitted_number_of_calls_in_half_open_state,
                window: Shape::HalfOpen.fresh_window(config),
            },
        };
        CircuitBreaker { inner }
    }

    pub fn state(&self) -> State {
        match self.inner {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
            Inner::Disabled => State::Disabled,
            Inner::ForcedOpen => State::ForcedOpen,
            Inner::MetricsOnly { .. } => State::MetricsOnly,
        }
    }

    /// resilience4j's `tryAcquirePermission`.
    /// - CLOSED, DISABLED, METRICS_ONLY: permitted.
    /// - FORCED_OPEN: not permitted.
    /// - OPEN: not permitted until the open wait has elapsed; the first request strictly after
    ///   it (resilience4j: `clock.instant().isAfter(retryAfterWaitDuration)`) moves the breaker
    ///   to HALF_OPEN and takes a trial permit. resilience4j: this lazy move happens also when
    ///   automatic transition is enabled (its `OpenState` checks the clock either way), so a
    ///   late tick never holds calls back.
    /// - HALF_OPEN: permitted while trial permits are left. When
    ///   max-wait-duration-in-half-open-state has passed it first moves to
    ///   transition-to-state-after-wait-duration (what resilience4j's scheduler does, checked
    ///   here lazily in case no tick came) and answers as that state: OPEN rejects, CLOSED
    ///   permits.
    pub fn try_acquire_permission(
        &mut self,
        config: &BreakerConfig,
        now_ms: u64,
        random01: impl FnOnce() -> f64,
    ) -> (Permission, Option<Transition>) {
        match &mut self.inner {
            Inner::Closed { .. } | Inner::Disabled | Inner::MetricsOnly { .. } => {
                (Permission::Permitted, None)
            }
            Inner::ForcedOpen => (
                Permission::NotPermitted {
                    state: State::ForcedOpen,
                    retry_after_ms: None,
                },
                None,
            ),
            Inner::Open { until_ms, .. } => {
                if now_ms > *until_ms {
                    let transition = self.transit_to_half_open(config, now_ms);
                    (self.take_half_open_permit(), Some(transition))
                } else {
                    let retry_after = until_ms.saturating_sub(now_ms).max(1);
                    (
                        Permission::NotPermitted {
                            state: State::Open,
                            retry_after_ms: Some(retry_after),
                        },
                        None,
                    )
                }
            }
            Inner::HalfOpen { since_ms, .. } => {
                if half_open_timed_out(config, *since_ms, now_ms) {
                    let transition = self.transit_after_half_open_wait(config, now_ms, random01);
                    let permission = match self.inner {
                        Inner::Closed { .. } => Permission::Permitted,
                        _ => self.open_not_permitted(now_ms),
                    };
                    (permission, Some(transition))
                } else {
                    (self.take_half_open_permit(), None)
                }
            }
        }
    }

    /// resilience4j's `releasePermission`: a permitted call that will report no result (the
    /// client went away) gives its HALF_OPEN trial permit back. No-op in other states.
    /// resilience4j increments without bound; here the permits never exceed the permitted
    /// number, so a release for a call permitted before HALF_OPEN cannot add trial calls.
    pub fn release_permission(&mut self, config: &BreakerConfig) {
        if let Inner::HalfOpen { permits, .. } = &mut self.inner {
            *permits = permits
                .saturating_add(1)
                .min(config.permitted_number_of_calls_in_half_open_state);
        }
    }

    /// Records the result of a permitted call (resilience4j's `onSuccess` / `onError`).
    /// `duration_ms` > slow-call-duration-threshold makes the call slow (resilience4j uses `>`).
    /// - Ignored: not recorded; in HALF_OPEN its trial permit is given back (resilience4j
    ///   releases the permission of an ignored exception).
    /// - CLOSED: recorded; once the window holds the minimum number of calls, failure rate ≥
    ///   failure-rate-threshold or slow-call rate ≥ slow-call-rate-threshold → OPEN.
    /// - OPEN: recorded into the window OPEN carries (a call permitted before it opened),
    ///   never a transition.
    /// - HALF_OPEN: recorded into the trial window; once it holds its minimum, a threshold
    ///   reached → OPEN (longer wait), else → CLOSED with a fresh window.
    /// - METRICS_ONLY: recorded, never a transition. DISABLED, FORCED_OPEN: not recorded.
    pub fn on_result(
        &mut self,
        config: &BreakerConfig,
        now_ms: u64,
        outcome: Outcome,
        duration_ms: u64,
        random01: impl FnOnce() -> f64,
    ) -> (RecordedKind, Option<Transition>) {
        let slow = duration_ms > config.slow_call_duration_threshold_ms;
        let (kind, code) = match (outcome, slow) {
            (Outcome::Ignored, _) => {
                self.release_permission(config);
                return (RecordedKind::Ignored, None);
            }
            (Outcome::Success, false) => (RecordedKind::Successful, 0),
            (Outcome::Success, true) => (RecordedKind::SlowSuccessful, SLOW_BIT),
            (Outcome::Failure, false) => (RecordedKind::Failed, FAILED_BIT),
            (Outcome::Failure, true) => (RecordedKind::SlowFailed, FAILED_BIT | SLOW_BIT),
        };
        let transition = match &mut self.inner {
            Inner::Disabled | Inner::ForcedOpen => None,
            Inner::MetricsOnly { window } => {
                window.record(Shape::Closed.size(config), now_ms, code);
                None
            }
            Inner::Open { shape, window, .. } => {
                window.record(shape.size(config), now_ms, code);
                None
            }
            Inner::Closed { window } => {
                let size = Shape::Closed.size(config);
                window.record(size, now_ms, code);
                let counts = window.counts(size, now_ms);
                match check(counts, Shape::Closed.minimum_calls(config), config) {
                    Check::Exceeded => {
                        Some(self.transit_to_open_from_closed(config, now_ms, random01))
                    }
                    Check::BelowThresholds | Check::BelowMinimumCalls => None,
                }
            }
            Inner::HalfOpen { window, .. } => {
                let size = Shape::HalfOpen.size(config);
                window.record(size, now_ms, code);
                let counts = window.counts(size, now_ms);
                match check(counts, Shape::HalfOpen.minimum_calls(config), config) {
                    Check::Exceeded => {
                        Some(self.transit_to_open_from_half_open(config, now_ms, random01))
                    }
                    Check::BelowThresholds => Some(self.transit_to_closed(config)),
                    Check::BelowMinimumCalls => None,
                }
            }
        };
        (kind, transition)
    }

    /// What resilience4j's scheduler does, for the host's periodic tick:
    /// - OPEN → HALF_OPEN once the open wait has elapsed (at `now_ms` ≥ the end of the wait,
    ///   when the scheduled task would run), only with
    ///   automatic-transition-from-open-to-half-open-enabled;
    /// - HALF_OPEN → transition-to-state-after-wait-duration (OPEN, or CLOSED) once
    ///   max-wait-duration-in-half-open-state (if > 0) has passed.
    ///
    /// Also drops TIME_BASED buckets that fell out of the window, so the stored state shrinks
    /// while no calls come.
    pub fn on_tick(
        &mut self,
        config: &BreakerConfig,
        now_ms: u64,
        random01: impl FnOnce() -> f64,
    ) -> Option<Transition> {
        match &mut self.inner {
            Inner::Open {
                until_ms,
                shape,
                window,
                ..
            } => {
                if config.automatic_transition_from_open_to_half_open_enabled && now_ms >= *until_ms
                {
                    Some(self.transit_to_half_open(config, now_ms))
                } else {
                    window.expire(shape.size(config), now_ms);
                    None
                }
            }
            Inner::HalfOpen { since_ms, .. } => {
                if half_open_timed_out(config, *since_ms, now_ms) {
                    Some(self.transit_after_half_open_wait(config, now_ms, random01))
                } else {
                    None
                }
            }
            Inner::Closed { window } | Inner::MetricsOnly { window } => {
                window.expire(Shape::Closed.size(config), now_ms);
                None
            }
            Inner::Disabled | Inner::ForcedOpen => None,
        }
    }

    /// The breaker's metrics as resilience4j's `getMetrics()` reports them at `now_ms`.
    pub fn snapshot(&self, config: &BreakerConfig, now_ms: u64) -> Snapshot {
        let state = self.state();
        let (counts, minimum_calls) = match &self.inner {
            Inner::Closed { window } | Inner::MetricsOnly { window } => (
                window.counts(Shape::Closed.size(config), now_ms),
                Shape::Closed.minimum_calls(config),
            ),
            Inner::Open { shape, window, .. } => (
                window.counts(shape.size(config), now_ms),
                shape.minimum_calls(config),
            ),
            Inner::HalfOpen { window, .. } => (
                window.counts(Shape::HalfOpen.size(config), now_ms),
                Shape::HalfOpen.minimum_calls(config),
            ),
            Inner::Disabled | Inner::ForcedOpen => (Counts::default(), 0),
        };
        let below_minimum = counts.calls == 0 || counts.calls < minimum_calls;
        let (failure_rate, slow_call_rate) = if below_minimum {
            (-1.0, -1.0)
        } else {
            (
                rate(counts.failed, counts.calls),
                rate(counts.slow, counts.calls),
            )
        };
        let open_remaining_ms = match &self.inner {
            Inner::Open { until_ms, .. } => Some(until_ms.saturating_sub(now_ms)),
            _ => None,
        };
        Snapshot {
            state,
            failure_rate,
            slow_call_rate,
            buffered_calls: counts.calls,
            failed_calls: counts.failed,
            slow_calls: counts.slow,
            slow_failed_calls: counts.slow_failed,
            open_remaining_ms,
        }
    }

    /// The compact, versioned encoding for shared data (layout in `codec.rs`). Deterministic:
    /// equal breakers encode to equal bytes, so an unchanged breaker need not be written back.
    pub fn encode(&self, config: &BreakerConfig) -> Vec<u8> {
        codec::encode(self, config_fingerprint(config))
    }

    /// Reads [`CircuitBreaker::encode`]'s bytes back, for this config only. Never panics.
    pub fn decode(bytes: &[u8], config: &BreakerConfig) -> Result<Self, DecodeError> {
        codec::decode(bytes, config, config_fingerprint(config))
    }

    /// [`CircuitBreaker::encode`] with the config's fingerprint computed once by the caller
    /// (`config_fingerprint(config)`; the request path keeps it per instance).
    pub fn encode_pinned(&self, fingerprint: u64) -> Vec<u8> {
        codec::encode(self, fingerprint)
    }

    /// [`CircuitBreaker::decode`] with the config's fingerprint computed once by the caller.
    pub fn decode_pinned(
        bytes: &[u8],
        config: &BreakerConfig,
        fingerprint: u64,
    ) -> Result<Self, DecodeError> {
        codec::decode(bytes, config, fingerprint)
    }

    /// Until when [`CircuitBreaker::try_acquire_permission`] refuses every call and changes
    /// nothing, as long as the state is not changed otherwise: OPEN up to and including its
    /// `until_ms` (`Some(until_ms)`), FORCED_OPEN for good (`None`). Not refusing: None.
    pub fn refuses_until(&self) -> Option<(State, Option<u64>)> {
        match &self.inner {
            Inner::Open { until_ms, .. } => Some((State::Open, Some(*until_ms))),
            Inner::ForcedOpen => Some((State::ForcedOpen, None)),
            _ => None,
        }
    }

    /// Whether [`CircuitBreaker::try_acquire_permission`] on these stored bytes would permit the
    /// call and change nothing (CLOSED, DISABLED, METRICS_ONLY), read from the header without
    /// decoding the window. False also when the bytes are not this config's: decode then.
    pub fn stored_permits_unchanged(bytes: &[u8], fingerprint: u64) -> bool {
        matches!(
            codec::peek_state(bytes, fingerprint),
            Some(State::Closed | State::Disabled | State::MetricsOnly)
        )
    }

    /// Whether [`CircuitBreaker::on_result`] of a fast success (`duration_ms` within the slow
    /// threshold) on these stored bytes would return (Successful, no transition) and leave the
    /// bytes as they are: CLOSED, COUNT_BASED, the window full of fast successes, thresholds
    /// above 0 %. Read from the bytes without decoding.
    pub fn stored_unchanged_by_fast_success(
        bytes: &[u8],
        config: &BreakerConfig,
        fingerprint: u64,
    ) -> bool {
        config.failure_rate_threshold > 0.0
            && config.slow_call_rate_threshold > 0.0
            && codec::is_closed_full_of_fast_successes(bytes, config, fingerprint)
    }

    // ---- transitions: the only places the state changes ----

    fn transit_to_open_from_closed(
        &mut self,
        config: &BreakerConfig,
        now_ms: u64,
        random01: impl FnOnce() -> f64,
    ) -> Transition {
        // resilience4j: `new OpenState(currentState.attempts() + 1, ...)`, CLOSED's attempts is 0.
        self.transit_to_open(config, now_ms, 1, random01)
    }

    fn transit_to_open_from_half_open(
        &mut self,
        config: &BreakerConfig,
        now_ms: u64,
        random01: impl FnOnce() -> f64,
    ) -> Transition {
        let attempts = match &self.inner {
            Inner::HalfOpen { attempts, .. } => attempts.saturating_add(1),
            _ => 1,
        };
        self.transit_to_open(config, now_ms, attempts, random01)
    }

    /// resilience4j's `HalfOpenState.toState(transitionToStateAfterWaitDuration)`, scheduled
    /// max-wait-duration-in-half-open-state after HALF_OPEN began: OPEN as a failed trial
    /// would (`transitionToOpenState`, attempts + 1), or CLOSED (`transitionToClosedState`,
    /// fresh window, attempts reset).
    fn transit_after_half_open_wait(
        &mut self,
        config: &BreakerConfig,
        now_ms: u64,
        random01: impl FnOnce() -> f64,
    ) -> Transition {
        match config.transition_to_state_after_wait_duration {
            StateAfterWait::Open => self.transit_to_open_from_half_open(config, now_ms, random01),
            StateAfterWait::Closed => self.transit_to_closed(config),
        }
    }

    /// Enters OPEN, keeping the current window (resilience4j hands `getMetrics()` over).
    fn transit_to_open(
        &mut self,
        config: &BreakerConfig,
        now_ms: u64,
        attempts: u32,
        random01: impl FnOnce() -> f64,
    ) -> Transition {
        let from = self.state();
        let previous = std::mem::replace(&mut self.inner, Inner::Disabled);
        let (shape, window) = match previous {
            Inner::HalfOpen { window, .. } => (Shape::HalfOpen, window),
            Inner::Closed { window } | Inner::MetricsOnly { window } => (Shape::Closed, window),
            Inner::Open { shape, window, .. } => (shape, window),
            Inner::Disabled | Inner::ForcedOpen => {
                (Shape::Closed, Shape::Closed.fresh_window(config))
            }
        };
        let until_ms = now_ms.saturating_add(open_wait_ms(config, attempts, random01));
        self.inner = Inner::Open {
            until_ms,
            attempts,
            shape,
            window,
        };
        Transition {
            from,
            to: State::Open,
        }
    }

    /// Enters HALF_OPEN with all trial permits and a fresh trial window; keeps `attempts`.
    fn transit_to_half_open(&mut self, config: &BreakerConfig, now_ms: u64) -> Transition {
        let from = self.state();
        let attempts = match &self.inner {
            Inner::Open { attempts, .. } | Inner::HalfOpen { attempts, .. } => *attempts,
            _ => 0,
        };
        self.inner = Inner::HalfOpen {
            since_ms: now_ms,
            attempts,
            permits: config.permitted_number_of_calls_in_half_open_state,
            window: Shape::HalfOpen.fresh_window(config),
        };
        Transition {
            from,
            to: State::HalfOpen,
        }
    }

    /// Enters CLOSED with a fresh window; attempts reset.
    fn transit_to_closed(&mut self, config: &BreakerConfig) -> Transition {
        let from = self.state();
        self.inner = Inner::Closed {
            window: Shape::Closed.fresh_window(config),
        };
        Transition {
            from,
            to: State::Closed,
        }
    }

    fn take_half_open_permit(&mut self) -> Permission {
        match &mut self.inner {
            Inner::HalfOpen { permits, .. } if *permits > 0 => {
                *permits = permits.saturating_sub(1);
                Permission::Permitted
            }
            _ => Permission::NotPermitted {
                state: State::HalfOpen,
                retry_after_ms: None,
            },
        }
    }

    fn open_not_permitted(&self, now_ms: u64) -> Permission {
        let retry_after_ms = match &self.inner {
            Inner::Open { until_ms, .. } => Some(until_ms.saturating_sub(now_ms).max(1)),
            _ => None,
        };
        Permission::NotPermitted {
            state: self.state(),
            retry_after_ms,
        }
    }
}

fn half_open_timed_out(config: &BreakerConfig, since_ms: u64, now_ms: u64) -> bool {
    let max_wait = config.max_wait_duration_in_half_open_state_ms;
    max_wait > 0 && now_ms >= since_ms.saturating_add(max_wait)
}
