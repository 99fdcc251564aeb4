//! The request as a replay sends it again: kept while the request passes (headers, and the
//! body up to the instance's max-body-bytes), sent as an HTTP callout to the upstream's
//! cluster, and its reply read back.

use crate::fallback::LocalResponse;
use crate::headers::RawHeaders;
use crate::outcome::{call_result_from_callout, is_grpc_content_type, CallResult};
use crate::policy::{RetryConfig, RetryOptions};
use crate::retry::may_replay;

use super::abi::{self, HostError};
use super::stream::is_client_router_header;

/// Not copied from a response into the local reply that replaces it, nor into a replay.
pub const HOP_HEADERS: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
];

pub struct Replay {
    /// The request headers as the host serialized them, before the stream stripped the
    /// caller's router headers: decoded (and those left out) only when a replay goes out.
    headers: RawHeaders,
    body: Vec<u8>,
    /// The instance's max-body-bytes.
    limit: usize,
    too_large: bool,
    /// The whole body arrived (end of stream seen): only then may a replay go out.
    complete: bool,
}

impl Replay {
    /// What a replay needs, if the request may be replayed at all. `complete`: the request has
    /// no body (its headers ended the stream).
    pub fn keep(
        config: &RetryConfig,
        options: &RetryOptions,
        headers: RawHeaders,
        complete: bool,
    ) -> Option<Replay> {
        if config.max_attempts <= 1 || headers.is_empty() {
            return None;
        }
        let [content_type, method, idempotency_key, content_length] = headers.values([
            "content-type",
            ":method",
            "idempotency-key",
            "content-length",
        ]);
        // A gRPC call is not replayed: the answer to a replay reaches the caller as a local
        // reply, which Envoy turns into a trailers-only gRPC response for a gRPC caller (the
        // body becomes grpc-message), so a replay's response messages would be lost.
        if content_type.is_some_and(|v| is_grpc_content_type(v.as_bytes())) {
            return None;
        }
        if !may_replay(
            method.unwrap_or("GET"),
            options.retry_non_idempotent,
            idempotency_key.is_some(),
        ) {
            return None;
        }
        let limit = options.max_body_bytes as usize;
        let too_large = content_length
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|len| len > limit);
        Some(Replay {
            headers,
            body: Vec::new(),
            limit,
            too_large,
            complete,
        })
    }

    /// The whole body is kept: a replay may go out.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// The body is larger than the instance keeps: the request is not retried.
    pub fn too_large(&self) -> bool {
        self.too_large
    }

    /// The next chunk of the request body, as the stream read it; `end_of_stream`: the last.
    pub fn keep_chunk(&mut self, chunk: Result<Option<Vec<u8>>, HostError>, end_of_stream: bool) {
        self.complete |= end_of_stream;
        if self.too_large {
            return;
        }
        match chunk {
            Ok(Some(chunk)) if self.body.len() + chunk.len() <= self.limit => {
                self.body.extend_from_slice(&chunk)
            }
            Ok(None) => {}
            _ => self.drop_body(),
        }
    }

    /// The whole body, as the events stamping replaced it (a retry replays the stamped body).
    pub fn replace_body(&mut self, body: Vec<u8>) {
        if body.len() > self.limit {
            self.drop_body();
        } else {
            self.too_large = false;
            self.body = body;
        }
        self.complete = true;
    }

    fn drop_body(&mut self) {
        self.too_large = true;
        self.body = Vec::new();
    }

    /// Sends the replay to `cluster`; its answer arrives in the `on_http_call_response` of the
    /// context that sent it. Ok: the callout's token.
    pub fn send(&self, cluster: &str, timeout_ms: u64) -> Result<u32, HostError> {
        // The request's headers, minus pseudo-headers other than method, path and authority,
        // minus framing headers (the callout sets its own), minus the caller's router headers
        // (stripped from the first attempt too).
        let headers = self.headers.to_pairs(|k| match k {
            ":method" | ":path" | ":authority" => true,
            k => !k.starts_with(':') && !HOP_HEADERS.contains(&k) && !is_client_router_header(k),
        });
        abi::dispatch_http_call(cluster, &headers, &self.body, timeout_ms)
    }
}

/// How a replay ended: the upstream's status, or what Envoy's own answer says happened (a callout
/// has no response flags); no reply at all is a reset (the connection dropped mid-response).
pub fn reply_result(reply: Option<&LocalResponse>) -> CallResult {
    let Some(reply) = reply else {
        return CallResult::Reset;
    };
    let envoy_answered = !reply
        .headers
        .iter()
        .any(|(k, _)| k == "x-envoy-upstream-service-time");
    call_result_from_callout(reply.status, envoy_answered, &reply.body)
}

/// A replay's reply, in its `on_http_call_response`; None when it got no response.
pub fn read_reply(num_headers: usize, body_size: usize) -> Option<LocalResponse> {
    if num_headers == 0 {
        return None;
    }
    let headers = abi::get_header_map(abi::MAP_HTTP_CALL_RESPONSE_HEADERS).unwrap_or_default();
    let status = headers
        .iter()
        .find(|(k, _)| k == ":status")
        .and_then(|(_, v)| v.parse::<u16>().ok())?;
    let body = abi::get_buffer(abi::BUFFER_HTTP_CALL_RESPONSE_BODY, 0, body_size)
        .ok()
        .flatten()
        .unwrap_or_default();
    Some(LocalResponse {
        status,
        headers,
        body,
    })
}
