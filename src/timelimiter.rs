//! resilience4j's TimeLimiter for a sidecar: `timeout-duration` bounds every attempt of a call.
//! The first attempt goes through Envoy's router, whose upstream timeout the filter sets for the
//! request ([`router_timeout_ms`]); each replay is a callout whose timeout is
//! [`attempt_timeout_ms`]. Envoy resets the upstream request when either fires, which is
//! `cancel-running-future: true`; the sidecar cannot leave it running.
//!
//! A timeout is a [`CallResult::Timeout`]: the breaker records it (`timeout` /
//! `java.util.concurrent.TimeoutException` in record lists), Retry may retry it, and a final one
//! is answered with [`timeout_response`].

use crate::fallback::LocalResponse;
use crate::outcome::{CallResult, DEFAULT_FAILURES};
use crate::policy::{Fallback, TimeLimiterConfig};

/// Headers that set or hint the router's timeout. A caller must not lengthen or shorten the
/// time limiter's bound, so the filter removes them before setting its own.
pub const CALLER_TIMEOUT_HEADERS: [&str; 3] = [
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-expected-rq-timeout-ms",
];

/// The header through which the filter sets the router's timeout for one request.
pub const ROUTER_TIMEOUT_HEADER: &str = "x-envoy-upstream-rq-timeout-ms";

/// A response header telling the time limiter's answer from the upstream's.
pub const TIMEOUT_HEADER: &str = "x-time-limiter";

/// The router's timeout for the first attempt, as `x-envoy-upstream-rq-timeout-ms` takes it.
/// Envoy reads 0 as "no timeout"; resilience4j's 0 means "time out at once": at least 1 ms.
pub fn router_timeout_ms(config: &TimeLimiterConfig) -> u64 {
    config.timeout_duration_ms.max(1)
}

/// A replay's callout timeout: the retry's per-try timeout, bounded by the time limiter.
pub fn attempt_timeout_ms(config: Option<&TimeLimiterConfig>, per_try_timeout_ms: u64) -> u64 {
    match config {
        Some(config) => per_try_timeout_ms.min(router_timeout_ms(config)),
        None => per_try_timeout_ms,
    }
}

/// Envoy's router answers a timed-out callout with a 504 of its own, with no flag a callout
/// can read: a 504 that came no earlier than the callout's timeout (less Envoy's clock slack)
/// is the timeout.
pub fn replay_result(status: u16, elapsed_ms: u64, timeout_ms: u64) -> CallResult {
    if status == 504 && elapsed_ms.saturating_add(CLOCK_SLACK_MS) >= timeout_ms {
        CallResult::Timeout
    } else {
        CallResult::Response(status)
    }
}

/// Envoy's timers run on its cached loop clock, the filter reads the wall clock: a timer may
/// seem to fire a few ms early.
const CLOCK_SLACK_MS: u64 = 20;

/// resilience4j-micrometer's TimeLimiter call kinds (`resilience4j_timelimiter_calls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Successful,
    Failed,
    Timeout,
}

impl CallKind {
    pub const ALL: [CallKind; 3] = [CallKind::Successful, CallKind::Failed, CallKind::Timeout];

    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Successful => "successful",
            CallKind::Failed => "failed",
            CallKind::Timeout => "timeout",
        }
    }

    /// How one attempt counts: a timeout; a failure (a 5xx, or no response: what a Java client
    /// sees as an exception); else a success.
    pub fn of(result: CallResult) -> CallKind {
        if result == CallResult::Timeout {
            CallKind::Timeout
        } else if DEFAULT_FAILURES.iter().any(|m| m.matches(result)) {
            CallKind::Failed
        } else {
            CallKind::Successful
        }
    }
}

/// The answer to a call whose last attempt timed out: the instance's fallback, or a JSON 504
/// naming the upstream and the timeout. Either carries [`TIMEOUT_HEADER`].
pub fn timeout_response(
    configured: Option<&Fallback>,
    instance: &str,
    timeout_ms: u64,
) -> LocalResponse {
    let default_body = || {
        crate::json!({
            "error": "time limiter timed out",
            "upstream": instance,
            "timeoutMs": timeout_ms,
        })
        .to_string()
    };
    let (status, mut headers, body) = match configured {
        Some(fallback) => (
            fallback.status,
            fallback.headers.clone(),
            fallback.body.clone().unwrap_or_else(default_body),
        ),
        None => (
            504,
            vec![("content-type".to_string(), "application/json".to_string())],
            default_body(),
        ),
    };
    headers.push((
        TIMEOUT_HEADER.to_string(),
        format!("{instance}; timeout={timeout_ms}ms"),
    ));
    LocalResponse {
        status,
        headers,
        body: body.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn limiter(ms: u64) -> TimeLimiterConfig {
        TimeLimiterConfig {
            timeout_duration_ms: ms,
            cancel_running_future: true,
        }
    }

    #[test]
    fn the_router_gets_the_timeout_duration_and_zero_still_times_out() {
        assert_eq!(router_timeout_ms(&limiter(1000)), 1000);
        assert_eq!(
            router_timeout_ms(&limiter(0)),
            1,
            "Envoy's 0 would mean no timeout"
        );
    }

    #[test]
    fn a_replay_is_bounded_by_the_shorter_of_per_try_timeout_and_timeout_duration() {
        assert_eq!(attempt_timeout_ms(Some(&limiter(300)), 5000), 300);
        assert_eq!(attempt_timeout_ms(Some(&limiter(8000)), 5000), 5000);
        assert_eq!(attempt_timeout_ms(None, 5000), 5000);
    }

    #[test]
    fn a_504_at_the_deadline_is_a_timeout_an_early_one_the_upstreams_answer() {
        assert_eq!(replay_result(504, 300, 300), CallResult::Timeout);
        assert_eq!(
            replay_result(504, 290, 300),
            CallResult::Timeout,
            "clock slack"
        );
        assert_eq!(replay_result(504, 450, 300), CallResult::Timeout);
        assert_eq!(replay_result(504, 20, 300), CallResult::Response(504));
        assert_eq!(replay_result(200, 400, 300), CallResult::Response(200));
    }

    #[test]
    fn attempts_count_as_micrometer_kinds() {
        assert_eq!(CallKind::of(CallResult::Timeout), CallKind::Timeout);
        assert_eq!(CallKind::of(CallResult::Response(503)), CallKind::Failed);
        assert_eq!(CallKind::of(CallResult::Reset), CallKind::Failed);
        assert_eq!(CallKind::of(CallResult::ConnectFailure), CallKind::Failed);
        assert_eq!(
            CallKind::of(CallResult::Response(404)),
            CallKind::Successful
        );
        assert_eq!(
            CallKind::of(CallResult::Response(200)),
            CallKind::Successful
        );
    }

    #[test]
    fn default_answer_is_a_json_504_naming_upstream_and_timeout() {
        let r = timeout_response(None, "user-service", 1000);
        assert_eq!(r.status, 504);
        let body: crate::json::Value = crate::json::from_slice(&r.body).unwrap_or_default();
        assert_eq!(body["upstream"], "user-service");
        assert_eq!(body["timeoutMs"], 1000);
        assert!(r.headers.contains(&(
            TIMEOUT_HEADER.to_string(),
            "user-service; timeout=1000ms".to_string()
        )));
    }

    #[test]
    fn a_configured_fallback_answers_a_timeout() {
        let fallback = Fallback {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(r#"{"name":"Guest"}"#.into()),
            on: Default::default(),
        };
        let r = timeout_response(Some(&fallback), "user-service", 1000);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, br#"{"name":"Guest"}"#.to_vec());
        assert!(r.headers.iter().any(|(k, _)| k == TIMEOUT_HEADER));
    }
}
