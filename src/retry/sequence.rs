//! One guarded request's attempts as a state machine: the first attempt through the router,
//! waits, replays in flight, a refusal by the breaker, the final answer. The host feeds it what
//! happened (a response, the tick, whether a replay went out) with the time, and carries out
//! the [`Step`] it returns; the machine itself does nothing, so it runs without Envoy.
//!
//! Stages, and what moves them on:
//! - `FirstAttempt` — `first_response`: a final result → `Finished` (the response goes on); a
//!   retry after a wait → `Waiting`; a retry at once → `StartingInResponse`.
//! - `Waiting` — `tick` once the wait is over → `Starting`.
//! - `Starting` — `replay_sent` → `InFlight`; `replay_refused` → `Finished` (the fallback);
//!   `replay_not_sent` → `Finished` (the latest failure); `replay_admission_waits` →
//!   `Admitting`; `replay_refused_by_admission` → `Waiting` (retried) or `Finished` (the
//!   refusal).
//! - `StartingInResponse` — `replay_sent` → `InFlight`; `replay_refused` → `Refused`, served by
//!   the next `tick`; `replay_not_sent` → `Waiting`, due at once; `replay_admission_waits` →
//!   `Admitting`; `replay_refused_by_admission` → `Waiting` (retried) or `Refused`.
//! - `Admitting` (the replay waits for a rate limiter's permit or a bulkhead's slot; the
//!   admission's tick goes on) — `replay_sent` → `InFlight`; `replay_refused_by_admission` →
//!   `Waiting` or `Finished`; `replay_not_sent` → `Finished`.
//! - `InFlight` — `replay_answered`: a final result → `Finished` (the reply, or "no response");
//!   a retry after a wait → `Waiting`; a retry at once → `Starting`.
//!
//! Two ways of starting a replay differ only in what the host may do when it fails: from the
//! tick or a replay's answer (`Starting`) the caller can be answered at once; inside the
//! stream's own first-response callback (`StartingInResponse`, a wait of 0) it cannot, so a
//! refusal or a failed dispatch is left to the next tick.
//!
//! Every attempt passes through the instance's modules, as resilience4j's aspects nest them
//! (Retry(CircuitBreaker(RateLimiter(TimeLimiter(Bulkhead(call)))))): a replay asks the breaker,
//! then the rate limiter and the bulkhead (the host does; it may wait for a permit or a slot).
//! A replay the rate limiter or bulkhead refuses is an attempt that ended with
//! RequestNotPermitted / BulkheadFullException: the breaker never hears of it; Retry retries
//! it only when its retry-exceptions name the refusal ([`is_refusal_retried`]), after the
//! retry's wait and never from the step that saw the refusal (at the earliest on the next
//! tick), so a full bulkhead cannot make a tight loop; max-attempts bounds it. Not retried, the
//! caller gets the refusal ([`FinalResponse::Refused`]).
//!
//! A request the breaker refuses outright starts no sequence: the stream serves the fallback.

#[cfg(test)]
mod tests;

use super::backoff::wait_before_retry;
use super::{decide, is_refusal_retried, is_retryable, Decision};
use crate::breaker::State;
use crate::fallback::Refusal;
use crate::outcome::CallResult;
use crate::policy::RetryConfig;

/// What the sequence asks of the host while deciding on a retry; asked only when a failed
/// attempt would otherwise be retried.
pub trait RetryHost {
    /// A uniform sample in [0, 1), for a randomized wait.
    fn random01(&self) -> f64;
    /// Takes one retry from the instance's shared budget at `now_ms`; false: none is left (or
    /// the budget cannot be read, and retries that cannot be bounded are not made).
    fn withdraw_budget(&self, now_ms: u64) -> bool;
}

/// Whether and when a failed attempt is retried: the request's retry instance. The host gives
/// none for a request that cannot be replayed at all (no retry instance, a method that may not
/// be repeated), and then every result is final.
pub struct RetryRules<'a> {
    pub config: &'a RetryConfig,
    /// No retry starts later than this after the request arrived.
    pub overall_timeout_ms: Option<u64>,
    /// The request body was larger than the instance keeps for a replay.
    pub body_too_large: bool,
    /// The request body had not all arrived when the attempt ended. It never will for a
    /// replay: once the router has the whole response, Envoy drops the rest of the request
    /// body before any filter sees it. So the request is not retried (a replay of part of the
    /// body would reach the upstream as a complete request).
    pub body_incomplete: bool,
    pub host: &'a dyn RetryHost,
}

/// What the host does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<R> {
    /// Hold the response; the tick carries on once the wait is over ([`Sequence::is_due`]).
    WaitUntil(u64),
    /// Start the next attempt now: ask the breaker, then the rate limiter and bulkhead, then
    /// send the replay, and report with [`Sequence::replay_refused`],
    /// [`Sequence::replay_admission_waits`], [`Sequence::replay_refused_by_admission`],
    /// [`Sequence::replay_sent`] or [`Sequence::replay_not_sent`].
    Replay,
    /// Nothing now; the next tick carries on (a refusal or a failed dispatch inside the
    /// first-response callback).
    Defer,
    /// The sequence is over: give the caller `response`. `result` is the request's final
    /// result, as resilience4j's Retry counts it.
    Finish {
        response: FinalResponse<R>,
        result: CallResult,
    },
}

/// What the caller finally gets. `R` is an upstream reply to a replay.
#[derive(Debug, Clone, PartialEq)]
pub enum FinalResponse<R> {
    /// The first attempt's response, which the stream held until now.
    FirstResponse,
    /// The latest replay's reply.
    Replayed(R),
    /// The last attempt got no response at all.
    NoResponse { attempts: u32 },
    /// The breaker refused the next attempt: its fallback.
    Fallback {
        state: State,
        retry_after_ms: Option<u64>,
    },
    /// The rate limiter or bulkhead refused the last attempt: the refusal (or its fallback).
    Refused(Refusal),
}

/// A refusal decided inside the first-response callback, served by the next tick.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PendingRefusal {
    Breaker {
        state: State,
        retry_after_ms: Option<u64>,
    },
    Admission(Refusal),
}

/// Why a retryable failure is not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRetried {
    /// max-attempts reached.
    AttemptsExhausted,
    BodyTooLarge,
    /// The request body had not all arrived.
    BodyIncomplete,
    /// The wait would end past the overall timeout.
    PastOverallTimeout,
    BudgetExhausted,
}

/// An attempt ended: what the breaker and the host do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptEnded<R> {
    /// The breaker permitted this attempt and waits for its result, which took this long.
    pub record_duration_ms: Option<u64>,
    /// Set when the result was a retryable failure that is not retried.
    pub not_retried: Option<NotRetried>,
    pub step: Step<R>,
}

#[derive(Debug, Clone, PartialEq)]
enum Stage {
    FirstAttempt,
    Waiting {
        due_ms: u64,
    },
    Starting,
    StartingInResponse,
    /// The breaker permitted the next attempt; it waits for a permit or a slot.
    Admitting,
    InFlight,
    /// Refused inside the first-response callback; the tick serves the refusal.
    Refused(PendingRefusal),
    Finished,
}

/// One request's attempts. `R`: an upstream reply to a replay, kept as the failure to show
/// while further attempts run.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence<R> {
    stage: Stage,
    /// Attempts started so far (1 = the first, through the router).
    attempt: u32,
    attempt_started_ms: u64,
    request_started_ms: u64,
    /// The breaker permitted the current attempt and has not heard its result yet.
    permission_held: bool,
    /// The latest replay's reply; None while the latest failure to show is the first response.
    last_reply: Option<R>,
}

impl<R> Sequence<R> {
    /// A request whose first attempt goes to the router at `now_ms`. `permission_held`: the
    /// breaker permitted it (false: no breaker, or its state could not be read).
    pub fn start(now_ms: u64, permission_held: bool) -> Self {
        Sequence {
            stage: Stage::FirstAttempt,
            attempt: 1,
            attempt_started_ms: now_ms,
            request_started_ms: now_ms,
            permission_held,
            last_reply: None,
        }
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    pub fn attempt_started_ms(&self) -> u64 {
        self.attempt_started_ms
    }

    /// The current attempt's time so far is not the upstream's (Envoy's fault filter delayed
    /// the request): its duration counts from `now_ms`.
    pub fn restart_attempt_clock(&mut self, now_ms: u64) {
        self.attempt_started_ms = now_ms;
    }

    /// The breaker waits for the current attempt's result: if the request goes away, the host
    /// hands the permission back.
    pub fn permission_held(&self) -> bool {
        self.permission_held
    }

    /// The router's response is the first attempt's (later responses through the stream are
    /// the filter's own local replies).
    pub fn awaits_first_response(&self) -> bool {
        self.stage == Stage::FirstAttempt
    }

    /// Whether only the tick moves this call on (a wait, or a refusal the tick serves): while
    /// one does, the worker's tick runs fast.
    pub fn waits_for_tick(&self) -> bool {
        matches!(self.stage, Stage::Waiting { .. } | Stage::Refused(_))
    }

    /// The tick has work here: a wait is over, or a refusal waits to be served.
    pub fn is_due(&self, now_ms: u64) -> bool {
        match self.stage {
            Stage::Waiting { due_ms } => due_ms <= now_ms,
            Stage::Refused(_) => true,
            _ => false,
        }
    }

    /// The first attempt ended with `result` (see [`Sequence::awaits_first_response`]).
    pub fn first_response(
        &mut self,
        now_ms: u64,
        result: CallResult,
        rules: Option<RetryRules<'_>>,
    ) -> AttemptEnded<R> {
        let record_duration_ms = self.end_attempt(now_ms);
        let (step, not_retried) = match self.retry_wait(now_ms, result, rules) {
            Ok(0) => {
                self.stage = Stage::StartingInResponse;
                (Step::Replay, None)
            }
            Ok(wait_ms) => (self.wait(now_ms, wait_ms), None),
            Err(not_retried) => {
                let response = FinalResponse::FirstResponse;
                (self.finish(response, result), not_retried)
            }
        };
        AttemptEnded {
            record_duration_ms,
            not_retried,
            step,
        }
    }

    /// A replay ended with `result`; `reply` is the upstream's answer, None when there was
    /// none. A reply replaces the failure to show; no reply keeps the previous one.
    pub fn replay_answered(
        &mut self,
        now_ms: u64,
        result: CallResult,
        reply: Option<R>,
        rules: Option<RetryRules<'_>>,
    ) -> AttemptEnded<R> {
        let record_duration_ms = self.end_attempt(now_ms);
        let (step, not_retried) = match self.retry_wait(now_ms, result, rules) {
            Ok(wait_ms) => {
                if reply.is_some() {
                    self.last_reply = reply;
                }
                if wait_ms == 0 {
                    self.stage = Stage::Starting;
                    (Step::Replay, None)
                } else {
                    (self.wait(now_ms, wait_ms), None)
                }
            }
            Err(not_retried) => {
                let response = match reply {
                    Some(reply) => FinalResponse::Replayed(reply),
                    None => FinalResponse::NoResponse {
                        attempts: self.attempt,
                    },
                };
                (self.finish(response, result), not_retried)
            }
        };
        AttemptEnded {
            record_duration_ms,
            not_retried,
            step,
        }
    }

    /// The tick at `now_ms`: starts the next attempt once its wait is over, serves a pending
    /// refusal. None: nothing to do yet.
    pub fn tick(&mut self, now_ms: u64) -> Option<Step<R>> {
        match self.stage {
            Stage::Waiting { due_ms } if due_ms <= now_ms => {
                self.stage = Stage::Starting;
                Some(Step::Replay)
            }
            Stage::Refused(PendingRefusal::Breaker {
                state,
                retry_after_ms,
            }) => Some(self.refuse(state, retry_after_ms)),
            Stage::Refused(PendingRefusal::Admission(refusal)) => {
                Some(self.refused_by_admission(refusal))
            }
            _ => None,
        }
    }

    /// The breaker did not permit the next attempt (after [`Step::Replay`]).
    pub fn replay_refused(&mut self, state: State, retry_after_ms: Option<u64>) -> Step<R> {
        if self.stage == Stage::StartingInResponse {
            self.stage = Stage::Refused(PendingRefusal::Breaker {
                state,
                retry_after_ms,
            });
            return Step::Defer;
        }
        self.refuse(state, retry_after_ms)
    }

    /// The next attempt waits for the rate limiter's permit or the bulkhead's slot (after
    /// [`Step::Replay`]); `permission_held`: the breaker permitted it, and if the request goes
    /// away the host hands the permission back. The host reports how the wait ends.
    pub fn replay_admission_waits(&mut self, permission_held: bool) {
        self.permission_held = permission_held;
        self.stage = Stage::Admitting;
    }

    /// The next attempt was refused by the rate limiter or bulkhead at `now_ms` (after
    /// [`Step::Replay`], or at the end of its wait). It counts as an attempt; the breaker never
    /// hears of it (the host hands back a permission it took). Retried when retry-exceptions
    /// name the refusal, after the retry's wait, never at once (so at the earliest on the next
    /// tick); else the caller gets the refusal.
    pub fn replay_refused_by_admission(
        &mut self,
        now_ms: u64,
        refusal: Refusal,
        rules: Option<RetryRules<'_>>,
    ) -> Step<R> {
        let in_response = self.stage == Stage::StartingInResponse;
        self.attempt = self.attempt.saturating_add(1);
        self.attempt_started_ms = now_ms;
        self.permission_held = false;
        match self.refusal_wait(now_ms, refusal, rules) {
            Ok(wait_ms) => self.wait(now_ms, wait_ms),
            Err(_) if in_response => {
                self.stage = Stage::Refused(PendingRefusal::Admission(refusal));
                Step::Defer
            }
            Err(_) => self.refused_by_admission(refusal),
        }
    }

    /// The replay went out at `now_ms` (after [`Step::Replay`]); `permission_held`: the breaker
    /// permitted it. Its answer comes to [`Sequence::replay_answered`].
    pub fn replay_sent(&mut self, now_ms: u64, permission_held: bool) {
        self.attempt = self.attempt.saturating_add(1);
        self.attempt_started_ms = now_ms;
        self.permission_held = permission_held;
        self.stage = Stage::InFlight;
    }

    /// The replay could not be sent (after [`Step::Replay`]); a permission the host took for
    /// it is the host's to hand back. From the first-response callback the tick tries once
    /// more; otherwise the caller gets the latest failure.
    pub fn replay_not_sent(&mut self, now_ms: u64) -> Step<R> {
        self.permission_held = false;
        if self.stage == Stage::StartingInResponse {
            self.stage = Stage::Waiting { due_ms: now_ms };
            return Step::Defer;
        }
        let response = match self.last_reply.take() {
            Some(reply) => FinalResponse::Replayed(reply),
            None => FinalResponse::FirstResponse,
        };
        self.finish(response, CallResult::Reset)
    }

    fn end_attempt(&mut self, now_ms: u64) -> Option<u64> {
        let held = std::mem::replace(&mut self.permission_held, false);
        held.then(|| now_ms.saturating_sub(self.attempt_started_ms))
    }

    /// Ok(wait): retry after waiting this long. Err: `result` is final.
    fn retry_wait(
        &self,
        now_ms: u64,
        result: CallResult,
        rules: Option<RetryRules<'_>>,
    ) -> Result<u64, Option<NotRetried>> {
        let Some(rules) = rules else {
            return Err(None);
        };
        // Checked first so that a success asks the host for nothing (not even randomness).
        if !is_retryable(rules.config, result) {
            return Err(None);
        }
        let decision = decide(rules.config, self.attempt, result, rules.host.random01());
        self.checked_wait(now_ms, decision, &rules)
    }

    /// [`Sequence::retry_wait`] for an attempt the rate limiter or bulkhead refused.
    fn refusal_wait(
        &self,
        now_ms: u64,
        refusal: Refusal,
        rules: Option<RetryRules<'_>>,
    ) -> Result<u64, Option<NotRetried>> {
        let Some(rules) = rules else {
            return Err(None);
        };
        if !is_refusal_retried(rules.config, refusal) {
            return Err(None);
        }
        let decision = if self.attempt >= rules.config.max_attempts {
            Decision::Exhausted
        } else {
            Decision::RetryAfter {
                wait_ms: wait_before_retry(rules.config, self.attempt, rules.host.random01()),
            }
        };
        self.checked_wait(now_ms, decision, &rules)
    }

    /// The retry `decision` allows, once the request's own limits are checked.
    fn checked_wait(
        &self,
        now_ms: u64,
        decision: Decision,
        rules: &RetryRules<'_>,
    ) -> Result<u64, Option<NotRetried>> {
        let wait_ms = match decision {
            Decision::RetryAfter { wait_ms } => wait_ms,
            Decision::Exhausted => return Err(Some(NotRetried::AttemptsExhausted)),
            Decision::Done => return Err(None),
        };
        if rules.body_too_large {
            return Err(Some(NotRetried::BodyTooLarge));
        }
        if rules.body_incomplete {
            return Err(Some(NotRetried::BodyIncomplete));
        }
        if let Some(overall) = rules.overall_timeout_ms {
            if now_ms.saturating_add(wait_ms) > self.request_started_ms.saturating_add(overall) {
                return Err(Some(NotRetried::PastOverallTimeout));
            }
        }
        if !rules.host.withdraw_budget(now_ms) {
            return Err(Some(NotRetried::BudgetExhausted));
        }
        Ok(wait_ms)
    }

    fn wait(&mut self, now_ms: u64, wait_ms: u64) -> Step<R> {
        let due_ms = now_ms.saturating_add(wait_ms);
        self.stage = Stage::Waiting { due_ms };
        Step::WaitUntil(due_ms)
    }

    /// The breaker refused the next attempt: as resilience4j counts it, the request failed
    /// with the 503 its fallback stands for.
    fn refuse(&mut self, state: State, retry_after_ms: Option<u64>) -> Step<R> {
        let response = FinalResponse::Fallback {
            state,
            retry_after_ms,
        };
        self.finish(response, CallResult::Response(503))
    }

    /// The rate limiter or bulkhead refused the last attempt and no other follows: the caller
    /// gets the refusal, which resilience4j's Retry counts as a failed call (the status stands
    /// for it: 503 bulkhead full, 429 rate limited).
    fn refused_by_admission(&mut self, refusal: Refusal) -> Step<R> {
        let status = match refusal {
            Refusal::BulkheadFull { .. } => 503,
            Refusal::RateLimited { .. } => 429,
        };
        self.finish(
            FinalResponse::Refused(refusal),
            CallResult::Response(status),
        )
    }

    fn finish(&mut self, response: FinalResponse<R>, result: CallResult) -> Step<R> {
        self.stage = Stage::Finished;
        Step::Finish { response, result }
    }
}
