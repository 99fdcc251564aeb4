//! What an HTTP call's result means to a breaker or a retry: the HTTP analogue of
//! resilience4j's record-exceptions / ignore-exceptions.

/// How one call through Envoy ended, as the host observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// The upstream answered with this status.
    Response(u16),
    /// Never connected (Envoy flags UF, UH).
    ConnectFailure,
    /// Connection reset or terminated before a full response (UR, UC, LR).
    Reset,
    /// Upstream timed out (UT).
    Timeout,
    /// A gRPC call answered with HTTP 200 and a grpc-status other than OK (0): this code. A
    /// gRPC client raises it (grpc-java: `StatusRuntimeException`).
    GrpcStatus(u8),
}

/// A matcher in record/ignore/retry lists. Written in policy as `"503"`, `"5xx"`,
/// `"connect-failure"`, `"reset"`, `"timeout"`, `"grpc-error"`, `"grpc-unavailable"` /
/// `"grpc-14"`, or a Java exception class with an HTTP (or gRPC) meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeMatcher {
    Status(u16),
    /// Status class: 4 for 4xx, 5 for 5xx.
    StatusClass(u8),
    ConnectFailure,
    Reset,
    Timeout,
    /// A gRPC response with this grpc-status (1-16).
    GrpcStatus(u8),
    /// A gRPC response with any grpc-status but OK.
    GrpcError,
    /// A replay refused by the instance's bulkhead (resilience4j's BulkheadFullException):
    /// only in Retry's lists, and no upstream call's result matches it.
    BulkheadFull,
    /// A replay refused by the instance's rate limiter (resilience4j's RequestNotPermitted):
    /// only in Retry's lists, and no upstream call's result matches it.
    RateLimited,
}

impl OutcomeMatcher {
    pub fn matches(self, result: CallResult) -> bool {
        match (self, result) {
            (OutcomeMatcher::Status(s), CallResult::Response(code)) => s == code,
            (OutcomeMatcher::StatusClass(c), CallResult::Response(code)) => code / 100 == c as u16,
            (OutcomeMatcher::ConnectFailure, CallResult::ConnectFailure) => true,
            (OutcomeMatcher::Reset, CallResult::Reset) => true,
            (OutcomeMatcher::Timeout, CallResult::Timeout) => true,
            (OutcomeMatcher::GrpcStatus(s), CallResult::GrpcStatus(code)) => s == code,
            (OutcomeMatcher::GrpcError, CallResult::GrpcStatus(_)) => true,
            _ => false,
        }
    }
}

/// What a breaker records for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Ignored,
}

/// The default failure set: 5xx, every way of getting no response, and every gRPC status but
/// OK (resilience4j records every exception by default; a gRPC client raises one for each).
pub const DEFAULT_FAILURES: [OutcomeMatcher; 5] = [
    OutcomeMatcher::StatusClass(5),
    OutcomeMatcher::ConnectFailure,
    OutcomeMatcher::Reset,
    OutcomeMatcher::Timeout,
    OutcomeMatcher::GrpcError,
];

/// resilience4j order: ignore wins; then a call is a failure if it matches `record`
/// (the default set when `record` is empty); anything else is a success.
pub fn classify(
    record: &[OutcomeMatcher],
    ignore: &[OutcomeMatcher],
    result: CallResult,
) -> Outcome {
    if ignore.iter().any(|m| m.matches(result)) {
        return Outcome::Ignored;
    }
    let record = if record.is_empty() {
        &DEFAULT_FAILURES[..]
    } else {
        record
    };
    if record.iter().any(|m| m.matches(result)) {
        Outcome::Failure
    } else {
        Outcome::Success
    }
}

/// Maps Envoy's `response.flags` short string and `response.code` to a call result.
/// `code` is 0 when Envoy has no response code.
pub fn call_result_from_envoy(code: u16, flags: &str) -> CallResult {
    let has = |f: &str| flags.split(',').any(|x| x.trim() == f);
    if has("UF") || has("UH") {
        CallResult::ConnectFailure
    } else if has("UT") {
        CallResult::Timeout
    } else if has("UR") || has("UC") || has("LR") || code == 0 {
        CallResult::Reset
    } else {
        CallResult::Response(code)
    }
}

/// How a replay (an HTTP callout) ended. A callout that got no answer has no response flags to
/// read: Envoy's router answers it with its own 503 / 504, as it would a caller. `envoy_answered`:
/// the reply lacks the `x-envoy-upstream-service-time` header the router adds to every response
/// that came from the upstream, so the reply is Envoy's own and its body says what happened (the
/// router's local reply texts; the reset reason as Envoy names it).
pub fn call_result_from_callout(status: u16, envoy_answered: bool, body: &[u8]) -> CallResult {
    if !envoy_answered || !matches!(status, 503 | 504) {
        return CallResult::Response(status);
    }
    let text = String::from_utf8_lossy(body);
    // Bytes, not `str::contains`: keeps core's substring searcher out of the `.wasm`.
    let has = |phrase: &str| {
        phrase.is_empty()
            || text
                .as_bytes()
                .windows(phrase.len())
                .any(|w| w == phrase.as_bytes())
    };
    // Reset reasons: "connection failure", "local connection failure", "remote connection
    // failure", "connection timeout" (never connected); the others broke an open connection.
    if (has("reset reason:") && (has("connection failure") || has("connection timeout")))
        || text.starts_with("no healthy upstream")
    {
        CallResult::ConnectFailure
    } else if text.starts_with("upstream request timeout") {
        CallResult::Timeout
    } else if has("reset reason: overflow") {
        // Envoy's own connection-pool limit (UO): nothing the upstream did.
        CallResult::Response(status)
    } else if has("reset before headers") || has("reset reason:") {
        CallResult::Reset
    } else {
        CallResult::Response(status)
    }
}

/// gRPC status codes by their canonical names (grpc/status.proto), 1-16; OK (0) is no failure.
pub const GRPC_CODES: [(&str, u8); 16] = [
    ("CANCELLED", 1),
    ("UNKNOWN", 2),
    ("INVALID_ARGUMENT", 3),
    ("DEADLINE_EXCEEDED", 4),
    ("NOT_FOUND", 5),
    ("ALREADY_EXISTS", 6),
    ("PERMISSION_DENIED", 7),
    ("RESOURCE_EXHAUSTED", 8),
    ("FAILED_PRECONDITION", 9),
    ("ABORTED", 10),
    ("OUT_OF_RANGE", 11),
    ("UNIMPLEMENTED", 12),
    ("INTERNAL", 13),
    ("UNAVAILABLE", 14),
    ("DATA_LOSS", 15),
    ("UNAUTHENTICATED", 16),
];

const GRPC_UNKNOWN: u8 = 2;

/// A gRPC response's content type: `application/grpc`, `application/grpc+proto`,
/// `application/grpc;…`. Not gRPC-Web, whose trailers travel in the body.
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// How a gRPC response ended, judged by its grpc-status: `http` is its result by HTTP status
/// and Envoy's flags, `grpc_status` the grpc-status it ended with (the trailers', or the
/// headers' of a trailers-only response), None when it ended without one. Only an HTTP 200 is
/// judged again: any other result already says what happened. OK (0) is the 200; a code gRPC
/// does not define, or a missing status, is UNKNOWN, as gRPC clients read them.
pub fn grpc_call_result(http: CallResult, grpc_status: Option<&[u8]>) -> CallResult {
    if http != CallResult::Response(200) {
        return http;
    }
    let code = grpc_status
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u8>().ok())
        .filter(|code| *code <= 16)
        .unwrap_or(GRPC_UNKNOWN);
    if code == 0 {
        http
    } else {
        CallResult::GrpcStatus(code)
    }
}

// Envoy's response flag bits (`response.flags`, CoreResponseFlag order in stream_info.h).
const FLAG_NO_HEALTHY_UPSTREAM: u64 = 1 << 1; // UH
const FLAG_UPSTREAM_REQUEST_TIMEOUT: u64 = 1 << 2; // UT
const FLAG_LOCAL_RESET: u64 = 1 << 3; // LR
const FLAG_UPSTREAM_REMOTE_RESET: u64 = 1 << 4; // UR
const FLAG_UPSTREAM_CONNECTION_FAILURE: u64 = 1 << 5; // UF
const FLAG_UPSTREAM_CONNECTION_TERMINATION: u64 = 1 << 6; // UC
const FLAG_DELAY_INJECTED: u64 = 1 << 9; // DI
const FLAG_FAULT_INJECTED: u64 = 1 << 10; // FI
const FLAG_DOWNSTREAM_CONNECTION_TERMINATION: u64 = 1 << 14; // DC
const FLAG_UPSTREAM_PROTOCOL_ERROR: u64 = 1 << 23; // UPE
const FLAG_DOWNSTREAM_REMOTE_RESET: u64 = 1 << 28; // DR

/// Like [`call_result_from_envoy`], from the flag bit set Envoy's `response.flags` returns.
pub fn call_result_from_flag_bits(code: u16, bits: u64) -> CallResult {
    if bits & (FLAG_UPSTREAM_CONNECTION_FAILURE | FLAG_NO_HEALTHY_UPSTREAM) != 0 {
        CallResult::ConnectFailure
    } else if bits & FLAG_UPSTREAM_REQUEST_TIMEOUT != 0 {
        CallResult::Timeout
    } else if bits
        & (FLAG_UPSTREAM_REMOTE_RESET
            | FLAG_UPSTREAM_CONNECTION_TERMINATION
            | FLAG_LOCAL_RESET
            | FLAG_UPSTREAM_PROTOCOL_ERROR)
        != 0
        || code == 0
    {
        CallResult::Reset
    } else {
        CallResult::Response(code)
    }
}

/// Like [`call_result_from_flag_bits`], from what `response.flags` returned: a bit set (8 bytes,
/// little endian) or, from older hosts, the short string.
pub fn call_result_from_flags(code: u16, flags: &[u8]) -> CallResult {
    match <[u8; 8]>::try_from(flags) {
        Ok(bits) => call_result_from_flag_bits(code, u64::from_le_bytes(bits)),
        Err(_) => call_result_from_envoy(code, &String::from_utf8_lossy(flags)),
    }
}

/// Envoy's fault filter answered (FI: an injected abort, e.g. an Istio VirtualService `fault`),
/// not the upstream. `flags` is what `response.flags` returned: a bit set (8 bytes, little
/// endian) or, from older hosts, the short string (`"FI"`, `"UF,URX"`).
pub fn fault_injected(flags: &[u8]) -> bool {
    has_flag(flags, FLAG_FAULT_INJECTED, "FI")
}

/// Envoy's fault filter held the request back before it went upstream (DI: an injected delay):
/// the answer is the upstream's, its duration is not.
pub fn delay_injected(flags: &[u8]) -> bool {
    has_flag(flags, FLAG_DELAY_INJECTED, "DI")
}

fn has_flag(flags: &[u8], bit: u64, short: &str) -> bool {
    match <[u8; 8]>::try_from(flags) {
        Ok(bits) => u64::from_le_bytes(bits) & bit != 0,
        Err(_) => String::from_utf8_lossy(flags)
            .split(',')
            .any(|f| f.trim() == short),
    }
}

/// The caller went away (DC, DR): a call cut short by the caller says nothing about the upstream.
pub fn downstream_terminated(bits: u64) -> bool {
    bits & (FLAG_DOWNSTREAM_CONNECTION_TERMINATION | FLAG_DOWNSTREAM_REMOTE_RESET) != 0
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn envoy_flag_bits_tell_calls_without_response() {
        assert_eq!(
            call_result_from_flag_bits(503, 1 << 5),
            CallResult::ConnectFailure
        );
        assert_eq!(call_result_from_flag_bits(504, 1 << 2), CallResult::Timeout);
        assert_eq!(call_result_from_flag_bits(503, 1 << 4), CallResult::Reset);
        assert_eq!(
            call_result_from_flag_bits(500, 0),
            CallResult::Response(500)
        );
        assert!(downstream_terminated(1 << 14));
        assert!(!downstream_terminated(1 << 5));
    }

    #[test]
    fn fault_filter_aborts_are_told_apart_in_both_flag_forms() {
        assert!(fault_injected(&(1u64 << 10).to_le_bytes()));
        assert!(fault_injected(&((1u64 << 10) | (1 << 9)).to_le_bytes()));
        assert!(
            !fault_injected(&(1u64 << 9).to_le_bytes()),
            "DI: a delay only"
        );
        assert!(!fault_injected(&0u64.to_le_bytes()));
        assert!(fault_injected(b"FI"));
        assert!(fault_injected(b"DI,FI"));
        assert!(!fault_injected(b"UF"));
        assert!(!fault_injected(b""));
        assert!(delay_injected(&(1u64 << 9).to_le_bytes()));
        assert!(!delay_injected(&(1u64 << 10).to_le_bytes()));
        assert!(delay_injected(b"DI,FI"));
        assert!(!delay_injected(b"FI"));
    }

    #[test]
    fn defaults_record_5xx_and_connection_failures_and_count_4xx_as_success() {
        assert_eq!(
            classify(&[], &[], CallResult::Response(503)),
            Outcome::Failure
        );
        assert_eq!(
            classify(&[], &[], CallResult::Response(404)),
            Outcome::Success
        );
        assert_eq!(
            classify(&[], &[], CallResult::Response(200)),
            Outcome::Success
        );
        assert_eq!(
            classify(&[], &[], CallResult::ConnectFailure),
            Outcome::Failure
        );
        assert_eq!(classify(&[], &[], CallResult::Reset), Outcome::Failure);
        assert_eq!(classify(&[], &[], CallResult::Timeout), Outcome::Failure);
    }

    #[test]
    fn ignore_wins_over_record() {
        let ignore = [OutcomeMatcher::Status(503)];
        assert_eq!(
            classify(&[], &ignore, CallResult::Response(503)),
            Outcome::Ignored
        );
        assert_eq!(
            classify(&[], &ignore, CallResult::Response(500)),
            Outcome::Failure
        );
    }

    #[test]
    fn explicit_record_list_replaces_the_default() {
        let record = [OutcomeMatcher::Status(429), OutcomeMatcher::Timeout];
        assert_eq!(
            classify(&record, &[], CallResult::Response(429)),
            Outcome::Failure
        );
        assert_eq!(
            classify(&record, &[], CallResult::Response(500)),
            Outcome::Success
        );
        assert_eq!(
            classify(&record, &[], CallResult::Timeout),
            Outcome::Failure
        );
    }

    #[test]
    fn envoy_answers_to_callouts_are_read_by_what_happened() {
        let reply = |status, body: &str| call_result_from_callout(status, true, body.as_bytes());
        assert_eq!(
            reply(503, "upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: delayed connect error: Connection refused"),
            CallResult::ConnectFailure
        );
        assert_eq!(
            reply(503, "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure"),
            CallResult::ConnectFailure
        );
        assert_eq!(
            reply(503, "upstream connect error or disconnect/reset before headers. reset reason: connection timeout"),
            CallResult::ConnectFailure
        );
        assert_eq!(
            reply(503, "no healthy upstream"),
            CallResult::ConnectFailure
        );
        assert_eq!(reply(504, "upstream request timeout"), CallResult::Timeout);
        assert_eq!(
            reply(503, "upstream connect error or disconnect/reset before headers. reset reason: connection termination"),
            CallResult::Reset
        );
        assert_eq!(
            reply(503, "upstream connect error or disconnect/reset before headers. reset reason: remote reset"),
            CallResult::Reset
        );
        assert_eq!(
            reply(
                503,
                "upstream connect error or disconnect/reset before headers. reset reason: overflow"
            ),
            CallResult::Response(503)
        );
        assert_eq!(reply(503, "busy"), CallResult::Response(503));
        // The upstream's own answer, whatever its body says.
        assert_eq!(
            call_result_from_callout(504, false, b"upstream request timeout"),
            CallResult::Response(504)
        );
        assert_eq!(
            call_result_from_callout(200, true, b"upstream request timeout"),
            CallResult::Response(200)
        );
    }

    #[test]
    fn grpc_responses_are_judged_by_their_status() {
        let ok = CallResult::Response(200);
        assert_eq!(grpc_call_result(ok, Some(b"0")), ok);
        assert_eq!(
            grpc_call_result(ok, Some(b"14")),
            CallResult::GrpcStatus(14)
        );
        assert_eq!(
            grpc_call_result(ok, Some(b" 4 ")),
            CallResult::GrpcStatus(4)
        );
        // Missing, malformed or undefined: UNKNOWN.
        assert_eq!(grpc_call_result(ok, None), CallResult::GrpcStatus(2));
        assert_eq!(grpc_call_result(ok, Some(b"x")), CallResult::GrpcStatus(2));
        assert_eq!(grpc_call_result(ok, Some(b"17")), CallResult::GrpcStatus(2));
        assert_eq!(
            grpc_call_result(ok, Some(b"300")),
            CallResult::GrpcStatus(2)
        );
        // Another HTTP result already says what happened.
        assert_eq!(
            grpc_call_result(CallResult::Response(503), Some(b"0")),
            CallResult::Response(503)
        );
        assert_eq!(grpc_call_result(CallResult::Reset, None), CallResult::Reset);
    }

    #[test]
    fn flags_in_either_form_tell_envoys_own_answers() {
        assert_eq!(
            call_result_from_flags(200, &(1u64 << 5).to_le_bytes()),
            CallResult::ConnectFailure
        );
        assert_eq!(call_result_from_flags(200, b"UT"), CallResult::Timeout);
        assert_eq!(
            call_result_from_flags(200, &0u64.to_le_bytes()),
            CallResult::Response(200)
        );
        assert_eq!(call_result_from_flags(200, b""), CallResult::Response(200));
    }

    #[test]
    fn grpc_content_types_are_told_from_others() {
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"application/grpc+proto"));
        assert!(is_grpc_content_type(b"Application/GRPC;charset=utf-8"));
        assert!(!is_grpc_content_type(b"application/grpc-web"));
        assert!(!is_grpc_content_type(b"application/grpc-web+proto"));
        assert!(!is_grpc_content_type(b"application/json"));
        assert!(!is_grpc_content_type(b"application/grp"));
    }

    #[test]
    fn grpc_failures_are_recorded_by_default_and_matched_by_code() {
        let unavailable = CallResult::GrpcStatus(14);
        assert_eq!(classify(&[], &[], unavailable), Outcome::Failure);
        assert_eq!(
            classify(
                &[],
                &[OutcomeMatcher::GrpcStatus(5)],
                CallResult::GrpcStatus(5)
            ),
            Outcome::Ignored
        );
        let record = [OutcomeMatcher::GrpcStatus(14)];
        assert_eq!(classify(&record, &[], unavailable), Outcome::Failure);
        assert_eq!(
            classify(&record, &[], CallResult::GrpcStatus(4)),
            Outcome::Success
        );
        // An HTTP-only list leaves gRPC statuses out, as it leaves out 4xx.
        let http_only = [OutcomeMatcher::StatusClass(5)];
        assert_eq!(classify(&http_only, &[], unavailable), Outcome::Success);
        assert!(!OutcomeMatcher::GrpcError.matches(CallResult::Response(200)));
        assert!(!OutcomeMatcher::StatusClass(2).matches(unavailable));
    }

    #[test]
    fn envoy_flags_tell_calls_without_response() {
        assert_eq!(
            call_result_from_envoy(503, "UF"),
            CallResult::ConnectFailure
        );
        assert_eq!(
            call_result_from_envoy(503, "UH"),
            CallResult::ConnectFailure
        );
        assert_eq!(call_result_from_envoy(504, "UT"), CallResult::Timeout);
        assert_eq!(call_result_from_envoy(503, "UR"), CallResult::Reset);
        assert_eq!(call_result_from_envoy(503, "UC"), CallResult::Reset);
        assert_eq!(call_result_from_envoy(0, ""), CallResult::Reset);
        assert_eq!(call_result_from_envoy(503, ""), CallResult::Response(503));
    }
}
