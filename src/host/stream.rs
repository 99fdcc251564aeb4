//! The HTTP context. Per request to a guarded upstream: strip client retry headers, set the
//! time limiter's timeout (`timelimiter`), ask the upstream's breaker for permission (serve the
//! fallback if refused), keep what a replay needs, and hand the router's response to the retry
//! orchestration (`retry`). A produce request to a Kafka bridge is stamped first (`events`).

use std::cell::RefMut;
use std::rc::Rc;

use crate::headers::RawHeaders;
use crate::outcome::{
    call_result_from_envoy, call_result_from_flag_bits, delay_injected, fault_injected,
    is_grpc_content_type, CallResult,
};
use crate::retry::sequence::Sequence;

use super::abi;
use super::admission::{self, Admit, SharedAdmissions};
use super::breaker::Acquired;
use super::dispatch::Action;
use super::events::{self, BodyStep, HeadersStep, Publish};
use super::grpc;
use super::replay::Replay;
use super::retry::{self, Call, PendingRecord, SharedCalls};
use super::root::Runtime;

/// Request headers through which a caller could change how Envoy's router retries or times out
/// a guarded upstream: retries outside the policy and its budget, or timeouts that charge the
/// caller's impatience to the upstream's breaker (for every caller). Envoy's router reads each
/// of them (router filter, `FilterUtility::finalTimeout` and `decodeHeaders`, Envoy 1.40) and
/// strips them only from external requests; a sidecar's callers are internal, so the filter
/// strips them from every request to a guarded upstream, and a replay never carries them.
/// `x-envoy-expected-rq-timeout-ms` sets the timeout where the router respects it
/// (`respect_expected_rq_timeout`). Not stripped: `grpc-timeout`, the gRPC deadline the
/// upstream itself needs (the router makes it the timeout only where the route sets
/// `max_stream_duration.grpc_timeout_header_max`).
pub(super) const CLIENT_ROUTER_HEADERS: [&str; 11] = [
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-max-retries",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-upstream-rq-timeout-alt-response",
    "x-envoy-upstream-stream-duration-ms",
    "x-envoy-expected-rq-timeout-ms",
];

/// One of [`CLIENT_ROUTER_HEADERS`] (names as Envoy keeps them, lower case). They include the
/// time limiter's `CALLER_TIMEOUT_HEADERS`.
pub(super) fn is_client_router_header(name: &str) -> bool {
    name.starts_with("x-envoy-") && CLIENT_ROUTER_HEADERS.contains(&name)
}

pub struct Stream {
    id: u32,
    runtime: Option<Rc<Runtime>>,
    calls: SharedCalls,
    admissions: SharedAdmissions,
    /// A produce request to a Kafka bridge whose body is held until stamped.
    publish: Option<Publish>,
    /// The first attempt's response goes on to the caller; the breaker and the Retry's call
    /// count judge it at its end.
    pending: Option<PendingRecord>,
    /// The request is a gRPC call (its response is judged by its grpc-status).
    grpc_request: bool,
    /// The pending response is gRPC and its status comes in its trailers.
    grpc_status_in_trailers: bool,
}

impl Stream {
    pub fn new(
        id: u32,
        runtime: Option<Rc<Runtime>>,
        calls: SharedCalls,
        admissions: SharedAdmissions,
    ) -> Self {
        Stream {
            id,
            runtime,
            calls,
            admissions,
            publish: None,
            pending: None,
            grpc_request: false,
            grpc_status_in_trailers: false,
        }
    }
}

/// The callbacks of one request (`dispatch` routes them here).
impl Stream {
    /// A replay this stream dispatched itself (a wait of 0) answers here.
    pub fn on_http_call_response(&mut self, token: u32, num_headers: usize, body_size: usize) {
        if let Some(runtime) = self.runtime.clone() {
            retry::on_replay_answer(
                &runtime,
                &self.calls,
                &self.admissions,
                token,
                num_headers,
                body_size,
            );
        }
    }

    pub fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(runtime) = self.runtime.clone() else {
            return Action::Continue;
        };
        // (The top-level Wasm attribute `cluster_name` is cheaper but not set in this phase
        // in Envoy 1.40: tried.)
        let cluster = match abi::get_string_property(&["xds", "cluster_name"]) {
            Ok(Some(cluster)) => cluster,
            _ => return Action::Continue,
        };
        // Events first: a produce request is stamped before its first attempt, so a retry
        // replays the stamped body (same ids).
        match events::request_headers(runtime.events.as_ref(), &cluster, end_of_stream) {
            HeadersStep::NotOurs(headers) => {
                self.guard_request(&runtime, cluster, headers, end_of_stream)
            }
            HeadersStep::Answered => Action::Pause,
            HeadersStep::Publish(publish, headers) => {
                self.publish = Some(publish);
                // Only a guarded bridge needs the map, as the host now holds it.
                let headers = runtime
                    .instance_for_cluster(&cluster)
                    .map(|_| headers.without("content-length"));
                self.guard_request(&runtime, cluster, headers, end_of_stream)
            }
        }
    }

    pub fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(publish) = &self.publish {
            let events = self.runtime.as_ref().and_then(|r| r.events.as_ref());
            match events::request_body(events, publish, body_size, end_of_stream) {
                BodyStep::Hold(action) => return action,
                BodyStep::Stamped(body) => {
                    self.publish = None;
                    if let Some(mut replay) = self.replay() {
                        replay.replace_body(body);
                    }
                    return Action::Continue;
                }
            }
        }
        self.keep_body_chunk(body_size, end_of_stream);
        Action::Continue
    }

    pub fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if let Some(mut replay) = self.replay() {
            replay.keep_chunk(Ok(None), true);
        }
        Action::Continue
    }

    pub fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(runtime) = self.runtime.clone() else {
            return Action::Continue;
        };
        let Some(call) = self.calls.borrow_mut().by_stream.remove(&self.id) else {
            return Action::Continue;
        };
        if !call.sequence.awaits_first_response() {
            // Not ours to judge (e.g. the local reply that ends a retry sequence).
            self.calls.borrow_mut().by_stream.insert(self.id, call);
            return Action::Continue;
        }
        let now = abi::now_ms().unwrap_or(call.sequence.attempt_started_ms());
        let mut call = call;
        let grpc_request = self.grpc_request;
        let judged = response_result().and_then(|result| {
            if grpc_request {
                grpc::first_response_result(result, end_of_stream)
            } else {
                Some((result, false))
            }
        });
        let Some((result, grpc_status_in_trailers)) = judged else {
            // Envoy's fault filter answered: a VirtualService fault, which Istio places after
            // every WasmPlugin phase (README: Istio). Not the upstream's answer: neither
            // recorded nor retried (a retry would bypass the fault filter); the caller gets it.
            if call.sequence.permission_held() {
                if let Some(breaker) = runtime.breakers.get(&*call.instance) {
                    breaker.release(now);
                }
            }
            return Action::Continue;
        };
        if slow_by_injected_delay(&runtime, &call, now) {
            // The upstream answered, but the fault filter's delay is in the duration: recorded
            // as a call of no duration, so a VirtualService delay never counts as slow.
            call.sequence.restart_attempt_clock(now);
        }
        let (action, pending) = retry::on_first_response(
            &runtime,
            &self.calls,
            &self.admissions,
            self.id,
            call,
            now,
            result,
        );
        match pending {
            Some(pending) if end_of_stream => pending.ended(&runtime, now),
            pending => {
                self.pending = pending;
                self.grpc_status_in_trailers = grpc_status_in_trailers;
            }
        }
        action
    }

    pub fn on_http_response_body(&mut self, _body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.response_ended(false);
        }
        Action::Continue
    }

    pub fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.response_ended(true);
        Action::Continue
    }

    pub fn on_log(&mut self) {
        // Most streams end with nothing left to do here: no clock read for them.
        let clock = abi::CallbackClock::default();
        if let (Some(pending), Some(runtime)) = (self.pending.take(), &self.runtime) {
            // The response never ended: cut off by the upstream, a timeout, or the caller.
            let flags = abi::get_property(&["response", "flags"])
                .ok()
                .flatten()
                .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
                .map_or(0, u64::from_le_bytes);
            pending.cut_off(runtime, clock.now_ms().unwrap_or(0), flags);
        }
        // Slots and waits are given back however the stream ended (a replay still at the
        // upstream keeps its slot until its answer).
        let in_flight = self
            .calls
            .borrow()
            .stream_of_callout
            .iter()
            .find(|(_, stream)| **stream == self.id)
            .map(|(token, _)| *token);
        admission::on_stream_end_with(&self.admissions, self.id, in_flight, || {
            clock.now_ms().unwrap_or(0)
        });
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
        retry::count_abandoned(runtime, &call);
        // Still holding a permission: no result will come (the caller went away).
        if call.sequence.permission_held() {
            if let Some(breaker) = runtime.breakers.get(&*call.instance) {
                breaker.release(clock.now_ms().unwrap_or(call.sequence.attempt_started_ms()));
            }
        }
    }
}

impl Stream {
    /// The response to the caller ended (`with_trailers`: in its trailers): a first response
    /// that went on is judged now, a gRPC one by the status it ended with.
    fn response_ended(&mut self, with_trailers: bool) {
        if let (Some(pending), Some(runtime)) = (self.pending.take(), &self.runtime) {
            if let Ok(now) = abi::now_ms() {
                if std::mem::take(&mut self.grpc_status_in_trailers) {
                    pending.ended_as(runtime, now, grpc::response_end_result(with_trailers));
                } else {
                    pending.ended(runtime, now);
                }
            }
        }
    }

    /// Request headers to a guarded upstream: breaker permission, and what a retry needs.
    /// `read`: the request headers, if the events step read them already (each read of the map
    /// costs as much as the rest of this function). `end_of_stream`: the request has no body.
    fn guard_request(
        &mut self,
        runtime: &Rc<Runtime>,
        cluster: String,
        read: Option<RawHeaders>,
        end_of_stream: bool,
    ) -> Action {
        let Some(instance) = runtime.instance_for_cluster(&cluster) else {
            return Action::Continue;
        };
        // The permission first: a refused call (the fallback path of an outage) needs none of
        // the request headers, the costliest read here.
        let now = abi::now_ms().ok();
        let mut permission_held = false;
        if let (Some(now), Some(breaker)) = (now, runtime.breakers.get(&*instance)) {
            match breaker.acquire(now) {
                Acquired::Permitted => permission_held = true,
                Acquired::NotPermitted {
                    state,
                    retry_after_ms,
                } => {
                    let response = breaker.fallback(state, retry_after_ms);
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
        // One read of the request headers, kept as the host serialized them: its names tell
        // what to strip, and a replay decodes it only if it goes out.
        let headers = match read {
            Some(headers) => headers,
            None => abi::get_header_map_raw(abi::MAP_REQUEST_HEADERS).unwrap_or_default(),
        };
        // One pass: the caller's router headers go, and the content type is noted.
        let mut content_type = None;
        for (name, value) in headers.iter() {
            if name == b"content-type" {
                // The first one, as `RawHeaders::get` reads it.
                content_type = content_type.or(Some(value));
            } else if let Some(name) = std::str::from_utf8(name)
                .ok()
                .filter(|n| is_client_router_header(n))
            {
                let _ = abi::remove_header(abi::MAP_REQUEST_HEADERS, name);
            }
        }
        self.grpc_request =
            content_type.is_some_and(|v| std::str::from_utf8(v).is_ok() && is_grpc_content_type(v));
        if let Some(limiter) = runtime.time_limiters.get(&*instance) {
            limiter.bound_first_attempt();
        }
        let Some(now) = now else {
            return Action::Continue;
        };
        let replay = runtime
            .retries
            .get(&*instance)
            .and_then(|retry| retry.keep_for_replay(headers, end_of_stream));
        let admit = admission::admit(&self.admissions, runtime, self.id, &instance, now);
        self.calls.borrow_mut().by_stream.insert(
            self.id,
            Call {
                instance: instance.clone(),
                cluster,
                sequence: Sequence::start(now, permission_held),
                replay,
            },
        );
        match admit {
            Admit::Go => Action::Continue,
            // The tick resumes it (or refuses it at its deadline).
            Admit::Wait => {
                retry::tick_needed(&self.calls);
                Action::Pause
            }
            Admit::Refused(response) => {
                // Not a call: the breaker's permission goes back unrecorded, nothing retries.
                admission::forget_call(runtime, &self.calls, self.id, now);
                match abi::send_local_response(
                    response.status,
                    &response.headers,
                    &response.body,
                    "resilience4j_refused",
                ) {
                    Ok(()) => Action::Pause,
                    Err(e) => {
                        log::warn!("'{instance}': refusal not sent (host status {})", e.0);
                        Action::Continue
                    }
                }
            }
        }
    }

    /// Keeps a chunk of the request body for a replay, if the request may be replayed.
    fn keep_body_chunk(&mut self, body_size: usize, end_of_stream: bool) {
        if let Some(mut replay) = self.replay() {
            let chunk = if body_size == 0 || replay.too_large() {
                Ok(None)
            } else {
                abi::get_buffer(abi::BUFFER_REQUEST_BODY, 0, body_size)
            };
            replay.keep_chunk(chunk, end_of_stream);
        }
    }

    /// What this stream's request keeps for a replay, if it may be replayed.
    fn replay(&self) -> Option<RefMut<'_, Replay>> {
        let id = self.id;
        RefMut::filter_map(self.calls.borrow_mut(), |calls| {
            calls
                .by_stream
                .get_mut(&id)
                .and_then(|call| call.replay.as_mut())
        })
        .ok()
    }
}

/// The attempt would count as slow, and Envoy's fault filter delayed it (DI). Flags are read only
/// for slow calls, to keep a host call off the common path.
fn slow_by_injected_delay(runtime: &Runtime, call: &Call, now: u64) -> bool {
    let Some(breaker) = runtime.breakers.get(&*call.instance) else {
        return false;
    };
    now.saturating_sub(call.sequence.attempt_started_ms())
        > breaker.slow_call_duration_threshold_ms()
        && abi::get_property(&["response", "flags"])
            .ok()
            .flatten()
            .is_some_and(|flags| delay_injected(&flags))
}

/// How the router's attempt ended: status and Envoy's response flags. None: Envoy's fault
/// filter answered (an injected abort), not the upstream.
fn response_result() -> Option<CallResult> {
    // `:status` of the response headers: the same code as the `response.code` property, and
    // a cheaper host call (measured side by side: `make bench --alt-wasm`).
    let code = abi::get_header(abi::MAP_RESPONSE_HEADERS, ":status")
        .ok()
        .flatten()
        .and_then(|status| std::str::from_utf8(&status).ok()?.parse::<u16>().ok())
        .unwrap_or(0);
    // Below 400 the status says it all; flags tell an injected abort (an error status) from the
    // upstream's answer, and how a 5xx or a missing answer came about.
    if (100..400).contains(&code) {
        return Some(CallResult::Response(code));
    }
    let Some(bytes) = abi::get_property(&["response", "flags"]).ok().flatten() else {
        return Some(call_result_from_flag_bits(code, 0));
    };
    if fault_injected(&bytes) {
        return None;
    }
    Some(match <[u8; 8]>::try_from(bytes.as_slice()) {
        Ok(array) => call_result_from_flag_bits(code, u64::from_le_bytes(array)),
        Err(_) => call_result_from_envoy(code, &String::from_utf8_lossy(&bytes)),
    })
}
