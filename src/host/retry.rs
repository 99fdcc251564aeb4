//! Retry orchestration: carries out the steps of each guarded request's
//! [`Sequence`](crate::retry::sequence) — Retry around CircuitBreaker, resilience4j's
//! recommended order, so every attempt asks the breaker and is recorded in it.
//!
//! Envoy's router cannot wait a given time between attempts, and it retries before any filter
//! sees a response (verified with Envoy 1.40). So the first attempt goes through the router;
//! on a retryable response the stream holds it paused, and after the wait the root's tick
//! replays the request as an HTTP callout to the same cluster (a wait of 0 goes out at once).
//! The final answer replaces the held response as a local reply on the stream, or the held
//! response goes on; either way the caller sees exactly one response.
//!
//! Each replay passes through the instance's modules as the first attempt did: the breaker,
//! then the rate limiter and the bulkhead (`admission::admit_replay`), where it may wait for a
//! permit or a slot (the admission's tick reports the end of the wait to [`on_admitted`]). The
//! first attempt's slot goes back when its response is retried, before the wait; a replay's
//! when its answer arrives.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::dispatch::Action;

use crate::fallback::{LocalResponse, Refusal};
use crate::headers::RawHeaders;
use crate::outcome::{
    call_result_from_flag_bits, downstream_terminated, CallResult, DEFAULT_FAILURES,
};
use crate::policy::{RetryConfig, RetryOptions};
use crate::retry as core_retry;
use crate::retry::sequence::{
    AttemptEnded, FinalResponse, NotRetried, RetryHost, RetryRules, Sequence, Step,
};
use crate::sorted_map::SortedMap;
use crate::timelimiter;

use super::abi::{self, HostError};
use super::admission::{self, ReplayAdmit, SharedAdmissions};
use super::breaker::Acquired;
use super::metrics::RetryMetrics;
use super::replay::{self, Replay, HOP_HEADERS};
use super::root::Runtime;
use super::store;

/// One retry instance as this worker runs it; the budget lives in shared data.
pub struct RetryInstance {
    config: RetryConfig,
    options: RetryOptions,
    budget_key: String,
    metrics: RetryMetrics,
    /// Requests this worker has not yet added to the shared budget: counting them in batches
    /// (each tick, and before any retry asks the budget) keeps a shared-data write off every
    /// request.
    unflushed_requests: Cell<u32>,
}

impl RetryInstance {
    /// Defines the instance's metrics.
    pub fn new(
        plugin_name: &str,
        instance: &str,
        config: RetryConfig,
        options: RetryOptions,
    ) -> Self {
        RetryInstance {
            config,
            options,
            budget_key: store::budget_key(plugin_name, instance),
            metrics: RetryMetrics::define(instance),
            unflushed_requests: Cell::new(0),
        }
    }

    /// Creates the shared budget if it does not exist (on configuration).
    pub fn create_missing_budget(&self) {
        let initial = crate::retry::budget::RetryBudget::default().encode();
        if let Err(e) = store::create_if_missing(&self.budget_key, &initial) {
            log::warn!("retry budget: shared state unavailable ({e})");
        }
    }

    pub fn flush_requests(&self, now: u64) {
        let count = self.unflushed_requests.replace(0);
        if count == 0 {
            return;
        }
        if let Err(e) =
            store::budget_record_requests(&self.budget_key, &self.options.budget, now, count)
        {
            log::debug!("retry budget unavailable: {e}");
        }
    }

    /// Counts the request against the budget, and keeps what a replay needs if the request
    /// may be replayed at all. `complete`: the request has no body.
    pub fn keep_for_replay(&self, headers: RawHeaders, complete: bool) -> Option<Replay> {
        self.unflushed_requests
            .set(self.unflushed_requests.get().saturating_add(1));
        Replay::keep(&self.config, &self.options, headers, complete)
    }

    /// resilience4j's Retry call kinds, counted once per request when its result is final.
    fn count_final(&self, result: CallResult, retried: bool) {
        let failed = core_retry::is_retryable(&self.config, result)
            || DEFAULT_FAILURES.iter().any(|m| m.matches(result));
        self.metrics.count_call(!failed, retried);
    }
}

impl RetryHost for RetryInstance {
    fn random01(&self) -> f64 {
        abi::random01()
    }

    fn withdraw_budget(&self, now_ms: u64) -> bool {
        self.flush_requests(now_ms);
        match store::budget_try_withdraw(&self.budget_key, &self.options.budget, now_ms) {
            Ok(true) => true,
            Ok(false) => {
                self.metrics.count_budget_exhausted();
                false
            }
            // Without the shared budget we cannot bound retries: do not retry.
            Err(_) => false,
        }
    }
}

/// A request in progress on this worker that the filter guards.
pub struct Call {
    /// The guarding instance's name, shared with the runtime's lookup (no copy per request).
    pub instance: Rc<str>,
    pub cluster: String,
    pub sequence: Sequence<LocalResponse>,
    /// What a replay sends; None when this request may not be retried.
    pub replay: Option<Replay>,
}

/// The first attempt's result, held until its response ends: a response that goes on to the
/// caller is judged when it has ended (or was cut off), so a body that breaks off is a failure
/// and a slow body is slow — by the breaker (if it permitted the attempt), the Retry's call
/// count and the TimeLimiter's attempt count alike (a body the time limiter's timeout cuts is
/// its timeout).
pub struct PendingRecord {
    instance: Rc<str>,
    result: CallResult,
    started_ms: u64,
    /// The breaker permitted the attempt and waits for its result.
    breaker_waits: bool,
}

impl PendingRecord {
    /// The response ended at `now`.
    pub fn ended(self, runtime: &Runtime, now: u64) {
        self.record(runtime, now, self.result);
    }

    /// The response ended at `now` with `result`: a gRPC response's status came at its end.
    pub fn ended_as(self, runtime: &Runtime, now: u64, result: CallResult) {
        self.record(runtime, now, result);
    }

    /// The response was cut off at `now`; `flags`: Envoy's response flag bits. A caller that
    /// went away says nothing about the upstream: the permission is handed back, and the Retry
    /// and the TimeLimiter count the call by the response as far as it came. Otherwise the
    /// upstream's response broke off: a reset (or a timeout, as the flags say).
    pub fn cut_off(self, runtime: &Runtime, now: u64, flags: u64) {
        if downstream_terminated(flags) {
            if let (true, Some(breaker)) =
                (self.breaker_waits, runtime.breakers.get(&*self.instance))
            {
                breaker.release(now);
            }
            self.count_call(runtime, self.result);
            return;
        }
        self.record(runtime, now, call_result_from_flag_bits(0, flags));
    }

    fn record(&self, runtime: &Runtime, now: u64, result: CallResult) {
        if let (true, Some(breaker)) = (self.breaker_waits, runtime.breakers.get(&*self.instance)) {
            breaker.record(now, result, now.saturating_sub(self.started_ms));
        }
        self.count_call(runtime, result);
    }

    /// The first attempt's response is the answer: a call without retry, one attempt for the
    /// time limiter.
    fn count_call(&self, runtime: &Runtime, result: CallResult) {
        if let Some(retry) = runtime.retries.get(&*self.instance) {
            retry.count_final(result, false);
        }
        if let Some(limiter) = runtime.time_limiters.get(&*self.instance) {
            limiter.count_attempt(result);
        }
    }
}

/// The caller went away while `call` waited for a retry (its wait, a replay's answer, or a
/// refusal to serve): the Retry counts the call by its last result, a failure (only failures
/// are retried), as it counts a first response whose caller went away mid-body. A call still
/// awaiting its first response has no result to count.
pub fn count_abandoned(runtime: &Runtime, call: &Call) {
    if call.sequence.awaits_first_response() {
        return;
    }
    if let Some(retry) = runtime.retries.get(&*call.instance) {
        retry
            .metrics
            .count_call(false, call.sequence.attempts() > 1);
    }
}

/// Guarded calls of this worker: streams and the root share it (one VM, one thread).
#[derive(Default)]
pub struct Calls {
    pub by_stream: SortedMap<u32, Call>,
    pub stream_of_callout: SortedMap<u32, u32>,
    /// The root's tick runs every [`WAIT_TICK_MS`] (else at its idle period).
    pub fast_tick: bool,
}

impl Calls {
    /// Whether a call waits for the tick to move on (a retry wait, a refusal it serves).
    pub fn any_waiting(&self) -> bool {
        self.by_stream.values().any(|c| c.sequence.waits_for_tick())
    }
}

pub type SharedCalls = Rc<RefCell<Calls>>;

/// The tick's period while a call waits for it: a 300 ms retry wait stays within a few percent.
/// Only then: every tick costs the worker tens of microseconds in Envoy and V8 whatever the
/// module does (a do-nothing filter ticking every 10 ms on two workers and the main thread took
/// 27 ms of CPU a second, idle, against Envoy's own 3.5), so an idle root ticks at its idle
/// period (`Runtime::idle_tick_ms`) and comes back here when a call starts to wait.
pub const WAIT_TICK_MS: u32 = 10;

/// A call of this worker now waits for the tick (a retry wait, a refusal the tick serves, a
/// permit or a slot): the tick runs fast until none does (`FilterRoot::on_tick` slows it down).
/// Called from a stream's callbacks too: Envoy applies the period to the stream's root.
pub fn tick_needed(calls: &SharedCalls) {
    let mut calls = calls.borrow_mut();
    if !calls.fast_tick {
        calls.fast_tick = abi::set_tick_period_ms(WAIT_TICK_MS).is_ok();
    }
}

/// What became of the response the stream holds, once the steps are carried out.
#[derive(PartialEq, Eq)]
enum HeldResponse {
    /// Still held: a wait, a replay in flight, or a refusal the tick serves.
    StillHeld,
    /// Replaced by a local reply.
    Replaced,
    /// The first response is the answer and goes on.
    GoesOn,
}

/// The router's response to the first attempt came with `result` (in the stream's
/// response-headers callback). When that response goes on to the caller, the breaker's record
/// waits for its end: the stream gets it back to record then.
pub fn on_first_response(
    runtime: &Rc<Runtime>,
    calls: &SharedCalls,
    admissions: &SharedAdmissions,
    stream: u32,
    mut call: Call,
    now: u64,
    result: CallResult,
) -> (Action, Option<PendingRecord>) {
    let retry = runtime.retries.get(&*call.instance);
    let mut ended = call
        .sequence
        .first_response(now, result, rules(retry, call.replay.as_ref()));
    let mut pending = None;
    if let Step::Finish {
        response: FinalResponse::FirstResponse,
        ..
    } = ended.step
    {
        let breaker_waits = ended.record_duration_ms.take().is_some();
        let limiter = runtime.time_limiters.get(&*call.instance);
        if breaker_waits || retry.is_some() || limiter.is_some() {
            pending = Some(PendingRecord {
                instance: call.instance.clone(),
                result,
                started_ms: call.sequence.attempt_started_ms(),
                breaker_waits,
            });
        }
    } else {
        // Retried: the first attempt is over, and its slot goes back before the retry's wait.
        // (A response that goes on keeps its slot until the stream ends.)
        admission::attempt_ended(admissions, stream, now);
    }
    let counted_at_end = pending.is_some();
    let step = after_attempt(runtime, &call, now, result, ended, counted_at_end);
    let action = match carry_out(
        Worker {
            runtime,
            calls,
            admissions,
        },
        stream,
        call,
        step,
        now,
        counted_at_end,
    ) {
        HeldResponse::GoesOn => Action::Continue,
        HeldResponse::StillHeld | HeldResponse::Replaced => Action::Pause,
    };
    (action, pending)
}

/// A replay's answer arrived (in the root, or in the stream that dispatched it at once).
pub fn on_replay_answer(
    runtime: &Rc<Runtime>,
    calls: &SharedCalls,
    admissions: &SharedAdmissions,
    token: u32,
    num_headers: usize,
    body_size: usize,
) {
    let (stream, mut call) = {
        let mut calls = calls.borrow_mut();
        let Some(stream) = calls.stream_of_callout.remove(&token) else {
            // The caller went away: the replay's slot, kept until now, goes back.
            drop(calls);
            admission::orphan_answered(admissions, token, abi::now_ms().unwrap_or(0));
            return;
        };
        let Some(call) = calls.by_stream.remove(&stream) else {
            return;
        };
        (stream, call)
    };
    let now = abi::now_ms().unwrap_or(call.sequence.attempt_started_ms());
    // The replay is over: its slot goes back.
    admission::attempt_ended(admissions, stream, now);
    let reply = replay::read_reply(num_headers, body_size);
    let retry = runtime.retries.get(&*call.instance);
    // What happened (Envoy's own 503/504 told from the upstream's); a plain status may still be
    // the time limiter's cut, told by when it came.
    let result = match (
        replay::reply_result(reply.as_ref()),
        runtime.time_limiters.get(&*call.instance),
    ) {
        (CallResult::Response(status), Some(limiter)) => timelimiter::replay_result(
            status,
            now.saturating_sub(call.sequence.attempt_started_ms()),
            timelimiter::attempt_timeout_ms(
                Some(limiter.config()),
                retry.map_or(u64::MAX, |r| r.options.per_try_timeout_ms),
            ),
        ),
        (result, _) => result,
    };
    let ended =
        call.sequence
            .replay_answered(now, result, reply, rules(retry, call.replay.as_ref()));
    let step = after_attempt(runtime, &call, now, result, ended, false);
    if carry_out(
        Worker {
            runtime,
            calls,
            admissions,
        },
        stream,
        call,
        step,
        now,
        false,
    ) == HeldResponse::GoesOn
    {
        resume_stream(stream);
    }
}

/// A replay's wait for a permit or a slot ended (on the admission's tick): admitted, it goes
/// out; refused, its retry decides.
pub fn on_admitted(
    runtime: &Rc<Runtime>,
    calls: &SharedCalls,
    admissions: &SharedAdmissions,
    stream: u32,
    now: u64,
    admitted: Result<(), Refusal>,
) {
    let Some(mut call) = calls.borrow_mut().by_stream.remove(&stream) else {
        // Nothing to send: whatever was admitted goes back.
        admission::attempt_ended(admissions, stream, now);
        return;
    };
    let permission_held = call.sequence.permission_held();
    let started = match admitted {
        Ok(()) => dispatch(runtime, admissions, stream, &mut call, permission_held, now),
        Err(refusal) => {
            if permission_held {
                if let Some(breaker) = runtime.breakers.get(&*call.instance) {
                    breaker.release(now);
                }
            }
            Started::Not(refused_by_admission(runtime, &mut call, now, refusal))
        }
    };
    if went_on(runtime, calls, admissions, stream, call, started, now) == HeldResponse::GoesOn {
        resume_stream(stream);
    }
}

/// The tick: starts the replays whose wait is over and serves pending refusals.
pub fn on_tick(
    runtime: &Rc<Runtime>,
    calls: &SharedCalls,
    admissions: &SharedAdmissions,
    now: u64,
) {
    let due: Vec<u32> = calls
        .borrow()
        .by_stream
        .iter()
        .filter(|(_, call)| call.sequence.is_due(now))
        .map(|(stream, _)| *stream)
        .collect();
    for stream in due {
        let Some(mut call) = calls.borrow_mut().by_stream.remove(&stream) else {
            continue;
        };
        match call.sequence.tick(now) {
            Some(step) => {
                if carry_out(
                    Worker {
                        runtime,
                        calls,
                        admissions,
                    },
                    stream,
                    call,
                    step,
                    now,
                    false,
                ) == HeldResponse::GoesOn
                {
                    resume_stream(stream);
                }
            }
            None => {
                calls.borrow_mut().by_stream.insert(stream, call);
            }
        }
    }
}

/// The retry rules of a request that may be replayed.
fn rules<'a>(retry: Option<&'a RetryInstance>, replay: Option<&Replay>) -> Option<RetryRules<'a>> {
    let (retry, replay) = (retry?, replay?);
    Some(RetryRules {
        config: &retry.config,
        overall_timeout_ms: retry.options.overall_timeout_ms,
        body_too_large: replay.too_large(),
        body_incomplete: !replay.complete(),
        host: retry,
    })
}

/// The breaker hears the attempt's result; a body too large to replay is counted.
/// `counted_at_end`: the time limiter counts the attempt by its [`PendingRecord`].
fn after_attempt(
    runtime: &Runtime,
    call: &Call,
    now: u64,
    result: CallResult,
    ended: AttemptEnded<LocalResponse>,
    counted_at_end: bool,
) -> Step<LocalResponse> {
    if let (false, Some(limiter)) = (counted_at_end, runtime.time_limiters.get(&*call.instance)) {
        limiter.count_attempt(result);
    }
    if let Some(duration_ms) = ended.record_duration_ms {
        if let Some(breaker) = runtime.breakers.get(&*call.instance) {
            breaker.record(now, result, duration_ms);
        }
    }
    if ended.not_retried == Some(NotRetried::BodyTooLarge) {
        if let Some(retry) = runtime.retries.get(&*call.instance) {
            retry.metrics.count_body_too_large();
        }
    }
    ended.step
}

/// Where the call stands once a replay was started (or not): in flight or waiting for
/// admission, it is kept; otherwise the steps go on.
fn went_on(
    runtime: &Rc<Runtime>,
    calls: &SharedCalls,
    admissions: &SharedAdmissions,
    stream: u32,
    call: Call,
    started: Started,
    now: u64,
) -> HeldResponse {
    match started {
        Started::InFlight(token) => {
            let mut calls = calls.borrow_mut();
            calls.stream_of_callout.insert(token, stream);
            calls.by_stream.insert(stream, call);
            HeldResponse::StillHeld
        }
        Started::Admitting => {
            calls.borrow_mut().by_stream.insert(stream, call);
            tick_needed(calls);
            HeldResponse::StillHeld
        }
        Started::Not(next) => carry_out(
            Worker {
                runtime,
                calls,
                admissions,
            },
            stream,
            call,
            next,
            now,
            false,
        ),
    }
}

/// What the steps of a call work with: this worker's policy, calls and admissions.
#[derive(Clone, Copy)]
struct Worker<'a> {
    runtime: &'a Rc<Runtime>,
    calls: &'a SharedCalls,
    admissions: &'a SharedAdmissions,
}

/// Carries out `step` and those that follow it, until the call waits or is over.
/// `counted_at_end`: a final first response is counted by its [`PendingRecord`].
fn carry_out(
    worker: Worker<'_>,
    stream: u32,
    mut call: Call,
    mut step: Step<LocalResponse>,
    now: u64,
    counted_at_end: bool,
) -> HeldResponse {
    let Worker {
        runtime,
        calls,
        admissions,
    } = worker;
    loop {
        step = match step {
            Step::Replay => match start_replay(runtime, admissions, stream, &mut call, now) {
                Started::Not(next) => next,
                started => return went_on(runtime, calls, admissions, stream, call, started, now),
            },
            Step::WaitUntil(_) | Step::Defer => {
                calls.borrow_mut().by_stream.insert(stream, call);
                tick_needed(calls);
                return HeldResponse::StillHeld;
            }
            Step::Finish { response, result } => {
                let later = counted_at_end && matches!(response, FinalResponse::FirstResponse);
                if let (false, Some(retry)) = (later, runtime.retries.get(&*call.instance)) {
                    let retried = call.sequence.attempts() > 1;
                    if let FinalResponse::Refused(_) = response {
                        // resilience4j's Retry counts a refusal it gives up on as failed.
                        retry.metrics.count_call(false, retried);
                    } else {
                        retry.count_final(result, retried);
                    }
                }
                let limiter = runtime.time_limiters.get(&*call.instance);
                if let (CallResult::Timeout, Some(limiter)) = (result, limiter) {
                    // The time limiter's answer (or the fallback), not Envoy's plain 504.
                    let response = limiter.timeout_response();
                    answer_stream(stream, &response, "time_limiter_timeout");
                    return HeldResponse::Replaced;
                }
                return answer(runtime, &call, stream, response);
            }
        }
    }
}

enum Started {
    InFlight(u32),
    /// Waits for the rate limiter's permit or a bulkhead's slot.
    Admitting,
    /// Refused by the breaker, the rate limiter or the bulkhead, or not sent: what the
    /// sequence does instead.
    Not(Step<LocalResponse>),
}

/// The next attempt: the breaker must permit it, then the rate limiter and the bulkhead, then
/// the replay goes out as a callout.
fn start_replay(
    runtime: &Rc<Runtime>,
    admissions: &SharedAdmissions,
    stream: u32,
    call: &mut Call,
    now: u64,
) -> Started {
    let breaker = runtime.breakers.get(&*call.instance);
    let mut permission_held = false;
    if let Some(breaker) = breaker {
        match breaker.acquire(now) {
            Acquired::Permitted => permission_held = true,
            Acquired::NotPermitted {
                state,
                retry_after_ms,
            } => return Started::Not(call.sequence.replay_refused(state, retry_after_ms)),
            Acquired::Unknown => {}
        }
    }
    match admission::admit_replay(admissions, runtime, stream, &call.instance, now) {
        ReplayAdmit::Go => dispatch(runtime, admissions, stream, call, permission_held, now),
        ReplayAdmit::Wait => {
            call.sequence.replay_admission_waits(permission_held);
            Started::Admitting
        }
        ReplayAdmit::Refused(refusal) => {
            // Not a call: the breaker's permission goes back unrecorded.
            if let (true, Some(breaker)) = (permission_held, breaker) {
                breaker.release(now);
            }
            Started::Not(refused_by_admission(runtime, call, now, refusal))
        }
    }
}

/// The rate limiter or bulkhead refused the replay: the retry decides what follows.
fn refused_by_admission(
    runtime: &Runtime,
    call: &mut Call,
    now: u64,
    refusal: Refusal,
) -> Step<LocalResponse> {
    let retry = runtime.retries.get(&*call.instance);
    let rules = rules(retry, call.replay.as_ref());
    call.sequence
        .replay_refused_by_admission(now, refusal, rules)
}

/// Sends the admitted replay; `permission_held`: the breaker permitted it.
fn dispatch(
    runtime: &Runtime,
    admissions: &SharedAdmissions,
    stream: u32,
    call: &mut Call,
    permission_held: bool,
    now: u64,
) -> Started {
    let retry = runtime.retries.get(&*call.instance);
    let breaker = runtime.breakers.get(&*call.instance);
    let dispatched = match (retry, &call.replay) {
        // Decided against before a retry (`rules`); checked again as a last line of defence: a
        // replay never sends a body that is not whole.
        (Some(_), Some(replay)) if !replay.complete() || replay.too_large() => {
            Err(NotSent::BodyNotWhole)
        }
        (Some(retry), Some(replay)) => {
            let limiter = runtime.time_limiters.get(&*call.instance);
            let timeout_ms = timelimiter::attempt_timeout_ms(
                limiter.map(|l| l.config()),
                retry.options.per_try_timeout_ms,
            );
            replay
                .send(&call.cluster, timeout_ms)
                .map_err(NotSent::Host)
        }
        _ => Err(NotSent::NothingToReplay),
    };
    match dispatched {
        Ok(token) => {
            call.sequence.replay_sent(now, permission_held);
            if let Some(retry) = retry {
                retry.metrics.count_attempt();
            }
            Started::InFlight(token)
        }
        Err(e) => {
            if let (true, Some(breaker)) = (permission_held, breaker) {
                breaker.release(now);
            }
            admission::attempt_ended(admissions, stream, now);
            let next = call.sequence.replay_not_sent(now);
            if matches!(next, Step::Finish { .. }) {
                log::warn!(
                    "retry for '{}' not dispatched ({e}): answering with the last failure",
                    call.instance
                );
            }
            Started::Not(next)
        }
    }
}

/// Why a replay did not go out.
enum NotSent {
    Host(HostError),
    /// The request was not kept (cannot happen: only a kept request is retried).
    NothingToReplay,
    /// The body had not all arrived, or outgrew max-body-bytes (cannot happen either: `rules`).
    BodyNotWhole,
}

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotSent::Host(e) => write!(f, "host status {}", e.0),
            NotSent::NothingToReplay => write!(f, "the request was not kept for a replay"),
            NotSent::BodyNotWhole => write!(f, "the request body is not whole"),
        }
    }
}

/// Gives the caller its final response.
fn answer(
    runtime: &Runtime,
    call: &Call,
    stream: u32,
    response: FinalResponse<LocalResponse>,
) -> HeldResponse {
    match response {
        FinalResponse::FirstResponse => return HeldResponse::GoesOn,
        FinalResponse::Replayed(reply) => {
            answer_stream(stream, &reply, "retried_upstream_response")
        }
        FinalResponse::NoResponse { attempts } => {
            answer_stream(stream, &no_response(attempts), "retried_upstream_reset")
        }
        FinalResponse::Fallback {
            state,
            retry_after_ms,
        } => {
            if let Some(breaker) = runtime.breakers.get(&*call.instance) {
                let fallback = breaker.fallback(state, retry_after_ms);
                answer_stream(stream, &fallback, "circuit_breaker_not_permitted");
            }
        }
        FinalResponse::Refused(refusal) => {
            let response = admission::refusal_response(runtime, &call.instance, refusal);
            answer_stream(stream, &response, "resilience4j_refused");
        }
    }
    HeldResponse::Replaced
}

/// Sends `response` as the stream's response (from the root, or from the stream itself).
fn answer_stream(stream: u32, response: &LocalResponse, details: &str) {
    if abi::set_effective_context(stream).is_err() {
        return; // the caller is gone
    }
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .filter(|(k, _)| {
            !k.starts_with(':') && !HOP_HEADERS.contains(&k.to_ascii_lowercase().as_str())
        })
        .cloned()
        .collect();
    if let Err(e) = abi::send_local_response(response.status, &headers, &response.body, details) {
        log::warn!("could not answer stream {stream} (host status {})", e.0);
    }
}

/// Lets the paused first response go to the caller.
fn resume_stream(stream: u32) {
    if abi::set_effective_context(stream).is_ok() {
        let _ = abi::resume_http_response();
    }
}

/// The answer when the last attempt got no response at all, as Envoy words it.
fn no_response(attempts: u32) -> LocalResponse {
    let body = crate::json!({
        "error": "upstream connect error or disconnect/reset before headers",
        "attempts": attempts,
    });
    LocalResponse {
        status: 503,
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: body.to_string().into_bytes(),
    }
}
