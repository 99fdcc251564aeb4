//! gRPC calls judged by their grpc-status: a failed gRPC call answers HTTP 200 with a
//! grpc-status other than OK, in its trailers or, for a trailers-only response, in its headers
//! (the core's [`grpc_call_result`] decides).

use crate::outcome::{
    call_result_from_flags, fault_injected, grpc_call_result, is_grpc_content_type, CallResult,
};

use super::abi;

/// The first attempt's result once the response headers of a gRPC request are read (read only
/// for gRPC requests: no host call for others): `http` is the result by HTTP status and flags,
/// `end_of_stream` says the headers end the response. A response that is not gRPC (a proxy's
/// error page) is judged by HTTP. The flag: a gRPC response whose status comes in its trailers,
/// judged at its end ([`response_end_result`]). None: Envoy's fault filter answered.
pub fn first_response_result(http: CallResult, end_of_stream: bool) -> Option<(CallResult, bool)> {
    if http != CallResult::Response(200) {
        return Some((http, false));
    }
    let headers = abi::MAP_RESPONSE_HEADERS;
    match abi::get_header(headers, "content-type") {
        Ok(Some(content_type)) if is_grpc_content_type(&content_type) => {}
        Ok(_) => return Some((http, false)),
        Err(e) => {
            log::debug!("response content-type unreadable (host status {})", e.0);
            return Some((http, false));
        }
    }
    let status = match abi::get_header(headers, "grpc-status") {
        Ok(Some(status)) => status,
        Ok(None) if end_of_stream => return Some((grpc_call_result(http, None), false)),
        Ok(None) => return Some((http, true)),
        Err(e) => {
            log::debug!("response grpc-status unreadable (host status {})", e.0);
            return Some((http, false));
        }
    };
    let result = grpc_call_result(http, Some(&status));
    if result == http {
        return Some((http, false));
    }
    // A trailers-only failure may be Envoy's own answer: to a gRPC caller Envoy words its local
    // replies (no upstream, a timeout, an injected abort) as HTTP 200 with a grpc-status. Its
    // flags say what happened, as for any other caller.
    let flags = match abi::get_property(&["response", "flags"]) {
        Ok(flags) => flags.unwrap_or_default(),
        Err(e) => {
            log::debug!("response flags unreadable (host status {})", e.0);
            Vec::new()
        }
    };
    if fault_injected(&flags) {
        return None;
    }
    match call_result_from_flags(200, &flags) {
        CallResult::Response(_) => Some((result, false)),
        envoy => Some((envoy, false)),
    }
}

/// A gRPC response whose status comes in its trailers ended: `in_trailers` says it ended with
/// trailers (else with its body, and without a status: UNKNOWN, as gRPC clients read it).
pub fn response_end_result(in_trailers: bool) -> CallResult {
    let ok = CallResult::Response(200);
    if !in_trailers {
        return grpc_call_result(ok, None);
    }
    match abi::get_header(abi::MAP_RESPONSE_TRAILERS, "grpc-status") {
        Ok(status) => grpc_call_result(ok, status.as_deref()),
        Err(e) => {
            // Cannot happen in the trailers callback; judging it a failure would be a guess.
            log::warn!("response trailers unreadable (host status {})", e.0);
            ok
        }
    }
}
