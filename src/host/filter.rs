//! Root and HTTP contexts. Per request: strip client retry headers, ask the upstream's
//! breaker for permission (serve the fallback if refused), keep what a replay needs, record
//! each attempt's result in the breaker, and — Retry around CircuitBreaker, resilience4j's
//! recommended order — make further attempts after the policy's wait.
//!
//! Retries follow the verified pattern in shared/notes: the first attempt goes through the
//! router; on a retryable response the stream pauses, the root's tick dispatches the replay
//! as an HTTP callout to the same cluster after the wait (a wait of 0 goes out at once), and
//! the final answer is sent as a local reply on the stream. The caller sees exactly one
//! response.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::breaker::{Permission, Snapshot, State, Transition};
use crate::fallback;
use crate::outcome::{
    call_result_from_envoy, call_result_from_flag_bits, classify, CallResult, DEFAULT_FAILURES,
};
use crate::policy::{BreakerConfig, Fallback, Policy, RetryConfig, RetryOptions};
use crate::retry::{self, Decision};

use super::abi;
use super::metrics::{BreakerMetrics, RetryMetrics};
use super::store::{self, StoreError};

/// Plugin name when the host does not tell (shared-data keys and logs carry it).
const DEFAULT_PLUGIN_NAME: &str = crate::envoy_config::FILTER_NAME;
/// Breakers are shared-data keys and ~20 stats each: bound both.
const MAX_INSTANCES: usize = 256;
/// Retry waits are served by the tick: 10 ms keeps a 300 ms wait within a few percent.
const RETRY_TICK_MS: u32 = 10;
/// Breaker housekeeping (automatic OPEN -> HALF_OPEN, half-open max wait, gauges).
const FAST_BREAKER_TICK_MS: u64 = 100;
const GAUGE_TICK_MS: u64 = 1000;
/// Headers a downstream client could use to make Envoy's router retry on its own, outside
/// the policy and its budget. Envoy strips them only for external requests; a sidecar's
/// callers are internal, so the filter strips them for every guarded upstream.
const CLIENT_RETRY_HEADERS: [&str; 7] = [
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-hedge-on-per-try-timeout",
];
/// Not copied from a response into the local reply that replaces it, nor into a replay.
const HOP_HEADERS: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
];

/// What one policy compiles to inside a worker.
struct Runtime {
    policy: Policy,
    breakers: BTreeMap<String, Guard>,
    retries: BTreeMap<String, RetryGuard>,
    breaker_tick_ms: u64,
    /// The policy's `events` section (stamping records produced through a Kafka bridge).
    events: Option<super::events::Events>,
}

/// One instance's breaker as this worker sees it.
struct Guard {
    instance: String,
    config: BreakerConfig,
    key: String,
    metrics: BreakerMetrics,
    fallback: Option<Fallback>,
}

/// One instance's retry as this worker sees it.
struct RetryGuard {
    config: RetryConfig,
    options: RetryOptions,
    budget_key: String,
    metrics: RetryMetrics,
    /// Requests this worker has not yet added to the shared budget: counting them in batches
    /// (each tick, and before any retry asks the budget) keeps a shared-data write off every
    /// request.
    unflushed_requests: Cell<u32>,
}

impl RetryGuard {
    fn flush_requests(&self, now: u64) {
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
}

enum Acquired {
    Permitted,
    NotPermitted {
        state: State,
        retry_after_ms: Option<u64>,
    },
    /// Shared state unavailable: fail open, unrecorded.
    Unknown,
}

impl Guard {
    fn acquire(&self, now: u64) -> Acquired {
        let config = &self.config;
        match store::update_breaker(&self.key, config, now, |cb| {
            let (permission, transition) = cb.try_acquire_permission(config, now, abi::random01);
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

    fn record(&self, now: u64, result: CallResult, duration_ms: u64) {
        let config = &self.config;
        let outcome = classify(&config.record, &config.ignore, result);
        // Gauges follow on transitions here and on the tick otherwise: publishing them on
        // every call costs more host calls than the call's own bookkeeping.
        match store::update_breaker(&self.key, config, now, |cb| {
            let (kind, transition) = cb.on_result(config, now, outcome, duration_ms, abi::random01);
            let snapshot = transition.as_ref().map(|_| cb.snapshot(config, now));
            (kind, transition, snapshot)
        }) {
            Ok((kind, transition, snapshot)) => {
                self.metrics.count_call(kind);
                if let Some(snapshot) = snapshot {
                    self.after_update(transition, &snapshot);
                }
            }
            Err(e) => self.report_store_error(e),
        }
    }

    fn release(&self, now: u64) {
        let config = &self.config;
        if let Err(e) =
            store::update_breaker(&self.key, config, now, |cb| cb.release_permission(config))
        {
            self.report_store_error(e);
        }
    }

    fn tick(&self, now: u64) {
        let config = &self.config;
        match store::update_breaker(&self.key, config, now, |cb| {
            (
                cb.on_tick(config, now, abi::random01),
                cb.snapshot(config, now),
            )
        }) {
            Ok((transition, snapshot)) => self.after_update(transition, &snapshot),
            Err(e) => self.report_store_error(e),
        }
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

    fn fallback(&self, state: State, retry_after_ms: Option<u64>) -> fallback::LocalResponse {
        fallback::render(
            self.fallback.as_ref(),
            &self.instance,
            state.as_str(),
            retry_after_ms,
        )
    }
}

/// A request in progress on this worker that the filter guards.
struct Call {
    instance: String,
    cluster: String,
    /// Attempts started so far (1 = the first call, through the router).
    attempt: u32,
    attempt_started_ms: u64,
    request_started_ms: u64,
    /// The breaker permitted the current attempt and has not heard its result yet.
    holds_permission: bool,
    /// What a replay sends; None when this request may not be retried.
    replay: Option<Replay>,
    phase: Phase,
}

struct Replay {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The instance's max-body-bytes.
    limit: usize,
    too_large: bool,
}

/// A callout's answer (kept as the "last failure" while further attempts run), or any other
/// response the filter sends itself.
type Answer = fallback::LocalResponse;

enum Phase {
    /// The first attempt is with the router.
    FirstAttempt,
    /// Waiting before the next attempt. `last`: the latest callout answer; None while the
    /// latest failure is the first attempt's response, held paused in the stream.
    Waiting { due_ms: u64, last: Option<Answer> },
    /// A replay is in flight as a callout.
    InFlight { last: Option<Answer> },
    /// The breaker refused the next attempt; the tick serves the fallback.
    Refused {
        state: State,
        retry_after_ms: Option<u64>,
    },
}

/// Guarded calls of this worker: streams and the root share it (one VM, one thread).
#[derive(Default)]
struct Calls {
    by_stream: HashMap<u32, Call>,
    stream_of_callout: HashMap<u32, u32>,
}

type SharedCalls = Rc<RefCell<Calls>>;

#[derive(Default)]
pub struct FilterRoot {
    runtime: Option<Rc<Runtime>>,
    calls: SharedCalls,
    last_breaker_tick_ms: u64,
}

impl Context for FilterRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(runtime) = self.runtime.clone() {
            on_callout_answer(&runtime, &self.calls, token, num_headers, body_size);
        }
    }
}

impl RootContext for FilterRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        match compile_runtime() {
            Ok(runtime) => {
                let tick = if !runtime.retries.is_empty() {
                    RETRY_TICK_MS
                } else {
                    runtime.breaker_tick_ms as u32
                };
                if let Err(e) = abi::set_tick_period_ms(tick) {
                    log::warn!(
                        "tick unavailable (host status {}): retries and automatic transitions stop",
                        e.0
                    );
                }
                self.runtime = Some(Rc::new(runtime));
                true
            }
            Err(message) => {
                log::error!("policy rejected: {message}");
                false
            }
        }
    }

    /// Runs on every worker and the main thread. Retries are per worker; breaker
    /// housekeeping is shared, so whichever root gets there first does it.
    fn on_tick(&mut self) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        let Ok(now) = abi::now_ms() else { return };
        if now.saturating_sub(self.last_breaker_tick_ms) >= runtime.breaker_tick_ms {
            self.last_breaker_tick_ms = now;
            for guard in runtime.breakers.values() {
                guard.tick(now);
            }
        }
        for guard in runtime.retries.values() {
            guard.flush_requests(now);
        }
        let due: Vec<u32> = self
            .calls
            .borrow()
            .by_stream
            .iter()
            .filter(|(_, c)| match c.phase {
                Phase::Waiting { due_ms, .. } => due_ms <= now,
                Phase::Refused { .. } => true,
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for stream in due {
            start_replay(&runtime, &self.calls, stream, now, true);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            id: context_id,
            runtime: self.runtime.clone(),
            calls: self.calls.clone(),
            publish: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The next attempt of a waiting call: the breaker must permit it (else the fallback is
/// served at once), then the replay goes out as a callout. `may_answer` is false inside the
/// stream's own response-headers callback (a wait of 0), where the stream is not answered
/// synchronously: a refusal or a failed dispatch is left to the tick.
fn start_replay(runtime: &Runtime, calls: &SharedCalls, stream: u32, now: u64, may_answer: bool) {
    let Some(mut call) = calls.borrow_mut().by_stream.remove(&stream) else {
        return;
    };
    let last = match std::mem::replace(&mut call.phase, Phase::FirstAttempt) {
        Phase::Waiting { last, .. } | Phase::InFlight { last } => last,
        Phase::Refused {
            state,
            retry_after_ms,
        } => {
            refuse(runtime, &call, stream, state, retry_after_ms);
            return;
        }
        Phase::FirstAttempt => None,
    };
    if let Some(guard) = runtime.breakers.get(&call.instance) {
        match guard.acquire(now) {
            Acquired::Permitted => call.holds_permission = true,
            Acquired::NotPermitted {
                state,
                retry_after_ms,
            } if may_answer => {
                refuse(runtime, &call, stream, state, retry_after_ms);
                return;
            }
            Acquired::NotPermitted {
                state,
                retry_after_ms,
            } => {
                // Inside the stream's own response callback: the tick answers it.
                call.phase = Phase::Refused {
                    state,
                    retry_after_ms,
                };
                calls.borrow_mut().by_stream.insert(stream, call);
                return;
            }
            Acquired::Unknown => call.holds_permission = false,
        }
    }
    let timeout = runtime
        .retries
        .get(&call.instance)
        .map_or(5000, |r| r.options.per_try_timeout_ms);
    let dispatched = match &call.replay {
        Some(replay) => abi::dispatch_http_call(
            &call.cluster,
            &replay_headers(&replay.headers),
            &replay.body,
            timeout,
        ),
        None => Err(abi::HostError(0)),
    };
    match dispatched {
        Ok(token) => {
            call.attempt += 1;
            call.attempt_started_ms = now;
            call.phase = Phase::InFlight { last };
            if let Some(r) = runtime.retries.get(&call.instance) {
                r.metrics.count_attempt();
            }
            let mut calls = calls.borrow_mut();
            calls.stream_of_callout.insert(token, stream);
            calls.by_stream.insert(stream, call);
        }
        Err(_) if !may_answer => {
            // Inside the stream's own response callback: let the tick try (and answer) again.
            if call.holds_permission {
                call.holds_permission = false;
                if let Some(guard) = runtime.breakers.get(&call.instance) {
                    guard.release(now);
                }
            }
            call.phase = Phase::Waiting { due_ms: now, last };
            calls.borrow_mut().by_stream.insert(stream, call);
        }
        Err(e) => {
            log::warn!(
                "retry for '{}' not dispatched (host status {}): answering with the last failure",
                call.instance,
                e.0
            );
            if call.holds_permission {
                if let Some(guard) = runtime.breakers.get(&call.instance) {
                    guard.release(now);
                }
            }
            count_final(runtime, &call, CallResult::Reset);
            match last {
                Some(answer) => answer_stream(stream, &answer, "retried_upstream_response"),
                None => resume_stream(stream),
            }
        }
    }
}

/// The breaker refused the next attempt: the caller gets the fallback.
fn refuse(runtime: &Runtime, call: &Call, stream: u32, state: State, retry_after_ms: Option<u64>) {
    count_final(runtime, call, CallResult::Response(503));
    if let Some(guard) = runtime.breakers.get(&call.instance) {
        answer_stream(
            stream,
            &guard.fallback(state, retry_after_ms),
            "circuit_breaker_not_permitted",
        );
    }
}

/// A replay's answer arrived (in the root, or in the stream that dispatched it at once): record
/// it, then wait for the next attempt or answer the caller.
fn on_callout_answer(
    runtime: &Runtime,
    calls: &SharedCalls,
    token: u32,
    num_headers: usize,
    body_size: usize,
) {
    let (stream, call) = {
        let mut calls = calls.borrow_mut();
        let Some(stream) = calls.stream_of_callout.remove(&token) else {
            return;
        };
        let Some(call) = calls.by_stream.remove(&stream) else {
            return;
        };
        (stream, call)
    };
    let now = abi::now_ms().unwrap_or(call.attempt_started_ms);
    let answer = if num_headers == 0 {
        None
    } else {
        let headers = abi::get_header_map(abi::MAP_HTTP_CALL_RESPONSE_HEADERS).unwrap_or_default();
        let status = headers
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.parse::<u16>().ok());
        let body = abi::get_buffer(abi::BUFFER_HTTP_CALL_RESPONSE_BODY, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        status.map(|status| Answer {
            status,
            headers,
            body,
        })
    };
    let result = answer
        .as_ref()
        .map_or(CallResult::Reset, |a| CallResult::Response(a.status));
    let mut call = call;
    let last = match std::mem::replace(&mut call.phase, Phase::FirstAttempt) {
        Phase::InFlight { last } | Phase::Waiting { last, .. } => last,
        Phase::Refused { .. } | Phase::FirstAttempt => None,
    };
    record_attempt(runtime, &mut call, result, now);
    match next_step(runtime, &call, result, now) {
        Some(wait_ms) => {
            // An attempt with no answer keeps the previous failure as the one to show.
            let last = answer.or(last);
            call.phase = Phase::Waiting {
                due_ms: now.saturating_add(wait_ms),
                last,
            };
            calls.borrow_mut().by_stream.insert(stream, call);
            if wait_ms == 0 {
                start_replay(runtime, calls, stream, now, true);
            }
        }
        None => {
            count_final(runtime, &call, result);
            match answer {
                Some(answer) => answer_stream(stream, &answer, "retried_upstream_response"),
                None => answer_stream(stream, &no_response(call.attempt), "retried_upstream_reset"),
            }
        }
    }
}

fn compile_runtime() -> Result<Runtime, String> {
    let text = match abi::get_buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, usize::MAX) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(None) => String::from("{}"),
        Err(e) => {
            return Err(format!(
                "plugin configuration unreadable (host status {})",
                e.0
            ))
        }
    };
    let policy = Policy::from_json(&text).map_err(|e| e.to_string())?;
    let instances = policy.circuit_breakers.len() + policy.retries.len();
    if instances > MAX_INSTANCES {
        return Err(format!("resilience4j: at most {MAX_INSTANCES} circuit breaker and retry instances, got {instances}"));
    }
    for warning in &policy.warnings {
        log::warn!("policy: {warning}");
    }
    let plugin_name = match abi::get_string_property(&["plugin_name"]) {
        Ok(Some(name)) if !name.is_empty() => name,
        _ => DEFAULT_PLUGIN_NAME.to_string(),
    };
    let now = abi::now_ms().unwrap_or(0);
    let mut breakers = BTreeMap::new();
    for (instance, config) in &policy.circuit_breakers {
        let guard = Guard {
            instance: instance.clone(),
            config: config.clone(),
            key: store::breaker_key(&plugin_name, instance),
            metrics: BreakerMetrics::define(instance),
            fallback: policy.fallbacks.get(instance).cloned(),
        };
        match store::ensure_breaker(&guard.key, config, now) {
            Ok(true) => log::info!(
                "circuit breaker '{instance}': starts fresh ({})",
                config_summary(config)
            ),
            Ok(false) => log::info!("circuit breaker '{instance}': config unchanged, state kept"),
            Err(e) => guard.report_store_error(e),
        }
        guard.tick(now);
        breakers.insert(instance.clone(), guard);
    }
    let retries = policy
        .retries
        .iter()
        .map(|(instance, config)| {
            let guard = RetryGuard {
                config: config.clone(),
                options: policy
                    .retry_options
                    .get(instance)
                    .cloned()
                    .unwrap_or_default(),
                budget_key: store::budget_key(&plugin_name, instance),
                metrics: RetryMetrics::define(instance),
                unflushed_requests: Cell::new(0),
            };
            (instance.clone(), guard)
        })
        .collect();
    let fast = policy.circuit_breakers.values().any(|c| {
        c.automatic_transition_from_open_to_half_open_enabled
            || c.max_wait_duration_in_half_open_state_ms > 0
    });
    let breaker_tick_ms = if fast {
        FAST_BREAKER_TICK_MS
    } else {
        GAUGE_TICK_MS
    };
    let events = super::events::Events::configure(policy.events.as_ref());
    Ok(Runtime {
        policy,
        breakers,
        retries,
        breaker_tick_ms,
        events,
    })
}

fn config_summary(c: &BreakerConfig) -> String {
    format!(
        "failure-rate-threshold {}%, {:?} window {}, minimum {} calls, open wait {} ms",
        c.failure_rate_threshold,
        c.sliding_window_type,
        c.sliding_window_size,
        c.minimum_number_of_calls,
        c.wait_duration_in_open_state_ms
    )
}

/// Records the current attempt's result in the instance's breaker (if it holds a permission).
fn record_attempt(runtime: &Runtime, call: &mut Call, result: CallResult, now: u64) {
    if !call.holds_permission {
        return;
    }
    call.holds_permission = false;
    if let Some(guard) = runtime.breakers.get(&call.instance) {
        guard.record(now, result, now.saturating_sub(call.attempt_started_ms));
    }
}

/// Some(wait): retry after waiting; None: this result is final.
fn next_step(runtime: &Runtime, call: &Call, result: CallResult, now: u64) -> Option<u64> {
    let guard = runtime.retries.get(&call.instance)?;
    let replay = call.replay.as_ref()?;
    let Decision::RetryAfter { wait_ms } =
        retry::decide(&guard.config, call.attempt, result, abi::random01())
    else {
        return None;
    };
    if replay.too_large {
        guard.metrics.count_body_too_large();
        return None;
    }
    if let Some(overall) = guard.options.overall_timeout_ms {
        if now.saturating_add(wait_ms) > call.request_started_ms.saturating_add(overall) {
            return None;
        }
    }
    guard.flush_requests(now);
    match store::budget_try_withdraw(&guard.budget_key, &guard.options.budget, now) {
        Ok(true) => Some(wait_ms),
        Ok(false) => {
            guard.metrics.count_budget_exhausted();
            None
        }
        // Without the shared budget we cannot bound retries: do not retry.
        Err(_) => None,
    }
}

/// resilience4j's Retry call kinds, counted once per request when its result is final.
fn count_final(runtime: &Runtime, call: &Call, result: CallResult) {
    let Some(guard) = runtime.retries.get(&call.instance) else {
        return;
    };
    let failed = retry::is_retryable(&guard.config, result)
        || DEFAULT_FAILURES.iter().any(|m| m.matches(result));
    guard.metrics.count_call(!failed, call.attempt > 1);
}

/// Sends `answer` as the stream's response, from the root.
fn answer_stream(stream: u32, answer: &Answer, details: &str) {
    if abi::set_effective_context(stream).is_err() {
        return; // the caller is gone
    }
    let headers: Vec<(String, String)> = answer
        .headers
        .iter()
        .filter(|(k, _)| {
            !k.starts_with(':') && !HOP_HEADERS.contains(&k.to_ascii_lowercase().as_str())
        })
        .cloned()
        .collect();
    if let Err(e) = abi::send_local_response(answer.status, &headers, &answer.body, details) {
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
fn no_response(attempts: u32) -> Answer {
    let body = serde_json::json!({
        "error": "upstream connect error or disconnect/reset before headers",
        "attempts": attempts,
    });
    Answer {
        status: 503,
        headers: vec![("content-type".to_string(), "application/json".to_string())],
        body: body.to_string().into_bytes(),
    }
}

/// The replay's headers: the request's, minus pseudo-headers other than method, path and
/// authority, minus framing headers (the callout sets its own).
fn replay_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| match k.as_str() {
            ":method" | ":path" | ":authority" => true,
            k => !k.starts_with(':') && !HOP_HEADERS.contains(&k),
        })
        .cloned()
        .collect()
}

struct Stream {
    id: u32,
    runtime: Option<Rc<Runtime>>,
    calls: SharedCalls,
    /// A produce request to a Kafka bridge whose body is held until stamped.
    publish: Option<super::events::Publish>,
}

impl Context for Stream {
    /// A replay this stream dispatched itself (a wait of 0) answers here.
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(runtime) = self.runtime.clone() {
            on_callout_answer(&runtime, &self.calls, token, num_headers, body_size);
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(runtime) = self.runtime.clone() else {
            return Action::Continue;
        };
        let cluster = match abi::get_string_property(&["xds", "cluster_name"]) {
            Ok(Some(cluster)) => cluster,
            _ => return Action::Continue,
        };
        // Events first: a produce request is stamped before its first attempt, so a retry
        // replays the stamped body (same ids).
        match super::events::request_headers(runtime.events.as_ref(), &cluster, end_of_stream) {
            super::events::HeadersStep::NotOurs => {
                self.resilience_request_headers(&runtime, cluster)
            }
            super::events::HeadersStep::Answered => Action::Pause,
            super::events::HeadersStep::Publish(publish) => {
                self.publish = Some(publish);
                self.resilience_request_headers(&runtime, cluster)
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(publish) = &self.publish {
            let events = self.runtime.as_ref().and_then(|r| r.events.as_ref());
            match super::events::request_body(events, publish, body_size, end_of_stream) {
                super::events::BodyStep::Hold(action) => return action,
                super::events::BodyStep::Stamped(body) => {
                    self.publish = None;
                    let mut calls = self.calls.borrow_mut();
                    if let Some(replay) = calls
                        .by_stream
                        .get_mut(&self.id)
                        .and_then(|c| c.replay.as_mut())
                    {
                        replay.too_large = body.len() > replay.limit;
                        replay.body = if replay.too_large { Vec::new() } else { body };
                    }
                    return Action::Continue;
                }
            }
        }
        self.resilience_request_body(body_size, end_of_stream)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(runtime) = self.runtime.clone() else {
            return Action::Continue;
        };
        let Some(mut call) = self.calls.borrow_mut().by_stream.remove(&self.id) else {
            return Action::Continue;
        };
        if !matches!(call.phase, Phase::FirstAttempt) {
            // Not ours to judge (e.g. the local reply that ends a retry sequence).
            self.calls.borrow_mut().by_stream.insert(self.id, call);
            return Action::Continue;
        }
        let now = abi::now_ms().unwrap_or(call.attempt_started_ms);
        let result = response_result();
        record_attempt(&runtime, &mut call, result, now);
        match next_step(&runtime, &call, result, now) {
            Some(wait_ms) => {
                call.phase = Phase::Waiting {
                    due_ms: now.saturating_add(wait_ms),
                    last: None,
                };
                self.calls.borrow_mut().by_stream.insert(self.id, call);
                if wait_ms == 0 {
                    // No wait: replay now rather than on the next tick.
                    start_replay(&runtime, &self.calls, self.id, now, false);
                }
                Action::Pause
            }
            None => {
                count_final(&runtime, &call, result);
                Action::Continue
            }
        }
    }

    fn on_log(&mut self) {
        let call = {
            let mut calls = self.calls.borrow_mut();
            calls
                .stream_of_callout
                .retain(|_, stream| *stream != self.id);
            calls.by_stream.remove(&self.id)
        };
        let (Some(call), Some(runtime)) = (call, &self.runtime) else {
            return;
        };
        // Still holding a permission: no result will come (the caller went away).
        if call.holds_permission {
            if let Some(guard) = runtime.breakers.get(&call.instance) {
                guard.release(abi::now_ms().unwrap_or(call.attempt_started_ms));
            }
        }
    }
}

impl Stream {
    /// Breaker permission and retry bookkeeping on the request headers (the original hook).
    fn resilience_request_headers(&mut self, runtime: &Runtime, cluster: String) -> Action {
        let Some(instance) = runtime
            .policy
            .instance_for_cluster(&cluster)
            .map(str::to_string)
        else {
            return Action::Continue;
        };
        // One read of the request headers serves both the stripping and the replay.
        let mut headers = abi::get_header_map(abi::MAP_REQUEST_HEADERS).unwrap_or_default();
        headers.retain(|(name, _)| {
            let strip = CLIENT_RETRY_HEADERS.contains(&name.as_str());
            if strip {
                let _ = abi::remove_header(abi::MAP_REQUEST_HEADERS, name);
            }
            !strip
        });
        let Ok(now) = abi::now_ms() else {
            return Action::Continue;
        };
        let mut holds_permission = false;
        if let Some(guard) = runtime.breakers.get(&instance) {
            match guard.acquire(now) {
                Acquired::Permitted => holds_permission = true,
                Acquired::NotPermitted {
                    state,
                    retry_after_ms,
                } => {
                    let response = guard.fallback(state, retry_after_ms);
                    return match abi::send_local_response(
                        response.status,
                        &response.headers,
                        &response.body,
                        "circuit_breaker_not_permitted",
                    ) {
                        Ok(()) => Action::Pause,
                        Err(e) => {
                            log::warn!(
                                "circuit breaker '{instance}': fallback not sent (host status {})",
                                e.0
                            );
                            Action::Continue
                        }
                    };
                }
                Acquired::Unknown => {}
            }
        }
        let replay = runtime
            .retries
            .get(&instance)
            .and_then(|guard| prepare_replay(guard, headers));
        self.calls.borrow_mut().by_stream.insert(
            self.id,
            Call {
                instance,
                cluster,
                attempt: 1,
                attempt_started_ms: now,
                request_started_ms: now,
                holds_permission,
                replay,
                phase: Phase::FirstAttempt,
            },
        );
        Action::Continue
    }

    /// Breaker permission and retry bookkeeping on the request body (the original hook).
    fn resilience_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        let mut calls = self.calls.borrow_mut();
        let Some(replay) = calls
            .by_stream
            .get_mut(&self.id)
            .and_then(|c| c.replay.as_mut())
        else {
            return Action::Continue;
        };
        if replay.too_large || body_size == 0 {
            return Action::Continue;
        }
        match abi::get_buffer(abi::BUFFER_REQUEST_BODY, 0, body_size) {
            Ok(Some(chunk)) if replay.body.len() + chunk.len() <= replay.limit => {
                replay.body.extend_from_slice(&chunk)
            }
            Ok(None) => {}
            _ => {
                replay.too_large = true;
                replay.body = Vec::new();
            }
        }
        Action::Continue
    }
}

/// Keeps what a replay needs, if this request may be replayed at all.
fn prepare_replay(guard: &RetryGuard, headers: Vec<(String, String)>) -> Option<Replay> {
    guard
        .unflushed_requests
        .set(guard.unflushed_requests.get().saturating_add(1));
    if guard.config.max_attempts <= 1 || headers.is_empty() {
        return None;
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let method = header(":method").unwrap_or("GET");
    if !retry::may_replay(
        method,
        guard.options.retry_non_idempotent,
        header("idempotency-key").is_some(),
    ) {
        return None;
    }
    let limit = guard.options.max_body_bytes as usize;
    let too_large = header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| len > limit);
    Some(Replay {
        headers,
        body: Vec::new(),
        limit,
        too_large,
    })
}

/// How the router's attempt ended: status and Envoy's response flags.
fn response_result() -> CallResult {
    let code = abi::get_int_property(&["response", "code"])
        .ok()
        .flatten()
        .unwrap_or(0);
    let code = u16::try_from(code).unwrap_or(0);
    // Below 500 the status says it all; flags only tell how a 5xx or a missing answer came about.
    if (100..500).contains(&code) {
        return CallResult::Response(code);
    }
    match abi::get_property(&["response", "flags"]).ok().flatten() {
        Some(bytes) => match <[u8; 8]>::try_from(bytes.as_slice()) {
            Ok(array) => call_result_from_flag_bits(code, u64::from_le_bytes(array)),
            Err(_) => call_result_from_envoy(code, &String::from_utf8_lossy(&bytes)),
        },
        None => call_result_from_flag_bits(code, 0),
    }
}
