//! resilience4j's Retry for HTTP calls, as pure pieces the host composes: which results are
//! retried (`is_retryable`), how long to wait before the next attempt (`backoff`), whether a
//! request may be replayed at all (`may_replay`), a retry budget shared by all callers
//! (`budget`), and one request's attempts from the first to the final answer (`sequence`).
//! Deciding is kept apart from doing: the host makes the attempts.

pub mod backoff;
pub mod budget;
pub mod sequence;

use crate::fallback::Refusal;
use crate::outcome::{CallResult, OutcomeMatcher, DEFAULT_FAILURES};
use crate::policy::RetryConfig;

/// Whether a result is worth another attempt: resilience4j's retry-exceptions (here
/// `retry_on`, default 5xx and every connection failure) minus ignore-exceptions.
pub fn is_retryable(config: &RetryConfig, result: CallResult) -> bool {
    if config.ignore.iter().any(|m| m.matches(result)) {
        return false;
    }
    let retry_on = if config.retry_on.is_empty() {
        &DEFAULT_FAILURES[..]
    } else {
        &config.retry_on
    };
    retry_on.iter().any(|m| m.matches(result))
}

/// Whether a replay refused by the instance's bulkhead or rate limiter is retried: only when
/// retry-exceptions names the refusal (`BulkheadFullException` / `RequestNotPermitted`, or
/// `bulkhead-full` / `rate-limited`) and ignore-exceptions does not. resilience4j would also
/// retry it with no retry-exceptions at all, or under a superclass; the sidecar retries into a
/// saturated upstream only when asked to (README: Composition).
pub fn is_refusal_retried(config: &RetryConfig, refusal: Refusal) -> bool {
    let matcher = match refusal {
        Refusal::BulkheadFull { .. } => OutcomeMatcher::BulkheadFull,
        Refusal::RateLimited { .. } => OutcomeMatcher::RateLimited,
    };
    !config.ignore.contains(&matcher) && config.retry_on.contains(&matcher)
}

/// Methods whose repetition the HTTP spec defines as harmless (RFC 9110 §9.2.2).
const IDEMPOTENT_METHODS: [&str; 5] = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"];

/// Safe by default: idempotent methods only; POST/PATCH when the instance allows it or the
/// caller marked the request with an `Idempotency-Key`.
pub fn may_replay(method: &str, allow_non_idempotent: bool, has_idempotency_key: bool) -> bool {
    let method = method.to_ascii_uppercase();
    if IDEMPOTENT_METHODS.contains(&method.as_str()) {
        return true;
    }
    matches!(method.as_str(), "POST" | "PATCH") && (allow_non_idempotent || has_idempotency_key)
}

/// What to do after attempt number `attempt` (1 = the first call) ended with `result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The result is final: a success, or a failure not worth retrying.
    Done,
    /// Try again after waiting this long.
    RetryAfter { wait_ms: u64 },
    /// Retryable, but max-attempts is reached: the caller gets this last failure.
    Exhausted,
}

/// `random01` is a uniform sample in [0, 1) for the randomized wait.
pub fn decide(config: &RetryConfig, attempt: u32, result: CallResult, random01: f64) -> Decision {
    if !is_retryable(config, result) {
        return Decision::Done;
    }
    if attempt >= config.max_attempts {
        return Decision::Exhausted;
    }
    Decision::RetryAfter {
        wait_ms: backoff::wait_before_retry(config, attempt, random01),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// resilience4j's defaults: 3 attempts, 500 ms, no backoff growth, no randomness.
    pub(crate) fn config() -> RetryConfig {
        RetryConfig::default()
    }

    #[test]
    fn retries_5xx_and_connection_failures_by_default_but_not_4xx() {
        let c = config();
        assert!(is_retryable(&c, CallResult::Response(503)));
        assert!(is_retryable(&c, CallResult::ConnectFailure));
        assert!(is_retryable(&c, CallResult::Reset));
        assert!(is_retryable(&c, CallResult::Timeout));
        assert!(!is_retryable(&c, CallResult::Response(404)));
        assert!(!is_retryable(&c, CallResult::Response(200)));
    }

    #[test]
    fn ignore_exceptions_are_never_retried_and_retry_exceptions_replace_the_default() {
        let mut c = config();
        c.ignore = vec![OutcomeMatcher::Status(501)];
        assert!(!is_retryable(&c, CallResult::Response(501)));
        c.retry_on = vec![OutcomeMatcher::Status(429)];
        assert!(is_retryable(&c, CallResult::Response(429)));
        assert!(!is_retryable(&c, CallResult::Response(503)));
    }

    #[test]
    fn refusals_are_retried_only_when_listed_and_not_ignored() {
        let full = Refusal::BulkheadFull { thread_pool: false };
        let limited = Refusal::RateLimited { wait_ms: 100 };
        // Not by default (resilience4j's default would): retrying must be asked for.
        let mut c = config();
        assert!(!is_refusal_retried(&c, full));
        assert!(!is_refusal_retried(&c, limited));
        c.retry_on = vec![OutcomeMatcher::StatusClass(5), OutcomeMatcher::BulkheadFull];
        assert!(is_refusal_retried(&c, full));
        assert!(is_refusal_retried(
            &c,
            Refusal::BulkheadFull { thread_pool: true }
        ));
        assert!(!is_refusal_retried(&c, limited));
        // A refusal matches no upstream result, and no result matches a refusal.
        assert!(!is_retryable(&c, CallResult::Response(429)));
        c.ignore = vec![OutcomeMatcher::BulkheadFull];
        assert!(!is_refusal_retried(&c, full));
    }

    #[test]
    fn only_idempotent_methods_are_replayed_unless_allowed_or_keyed() {
        for m in ["GET", "head", "OPTIONS", "PUT", "DELETE"] {
            assert!(may_replay(m, false, false), "{m}");
        }
        assert!(!may_replay("POST", false, false));
        assert!(!may_replay("PATCH", false, false));
        assert!(may_replay("POST", true, false));
        assert!(may_replay("PATCH", false, true));
        assert!(!may_replay("CONNECT", true, true));
    }

    #[test]
    fn max_attempts_includes_the_first_call() {
        let c = config();
        let fail = CallResult::Response(500);
        assert_eq!(
            decide(&c, 1, fail, 0.0),
            Decision::RetryAfter { wait_ms: 500 }
        );
        assert_eq!(
            decide(&c, 2, fail, 0.0),
            Decision::RetryAfter { wait_ms: 500 }
        );
        assert_eq!(decide(&c, 3, fail, 0.0), Decision::Exhausted);
        assert_eq!(
            decide(&c, 1, CallResult::Response(200), 0.0),
            Decision::Done
        );
        let mut once = config();
        once.max_attempts = 1;
        assert_eq!(decide(&once, 1, fail, 0.0), Decision::Exhausted);
    }
}
