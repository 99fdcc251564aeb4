//! Java exception classes that Spring services list in record / ignore / retry lists, by what
//! they mean over HTTP. resilience4j matches a thrown exception by its class and superclasses
//! (never its cause), so a client's base class means every failure that client reports, and its
//! per-status subclasses one status each.
//!
//! A nested class is written `Outer$Inner` (its binary name, what most configurations use) or
//! `Outer.Inner` (Spring resolves both); they are one class here.

use crate::outcome::{OutcomeMatcher, DEFAULT_FAILURES};

use OutcomeMatcher::{ConnectFailure, GrpcError, Reset, StatusClass, Timeout};

/// What a listed exception class stands for in the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Meaning {
    /// These outcomes of an HTTP call.
    Outcomes(&'static [OutcomeMatcher]),
    /// This response status.
    Status(u16),
    /// Thrown by resilience4j itself when it refuses a call locally (the call never reaches the
    /// upstream): no outcome of an upstream call. The text says what the sidecar does instead.
    LocalRejection(&'static str),
    /// Thrown by resilience4j's bulkhead or rate limiter when it refuses a call: in Retry's
    /// lists, a replay they refused (this matcher); elsewhere, like a local rejection.
    Refusal(OutcomeMatcher),
}

/// No response at all: refused or failed connection, reset, timeout.
const NO_RESPONSE: [OutcomeMatcher; 3] = [ConnectFailure, Reset, Timeout];
/// Every failure a client reports: an error status of either class, or no response.
const ANY_FAILURE: [OutcomeMatcher; 5] = [
    StatusClass(4),
    StatusClass(5),
    ConnectFailure,
    Reset,
    Timeout,
];
const ERROR_STATUS: [OutcomeMatcher; 2] = [StatusClass(4), StatusClass(5)];
/// Every failure a gRPC client reports: a non-OK grpc-status, an HTTP error status (grpc-java
/// maps it to a gRPC code), or no response (UNAVAILABLE, DEADLINE_EXCEEDED).
const GRPC_FAILURE: [OutcomeMatcher; 6] = [
    GrpcError,
    StatusClass(4),
    StatusClass(5),
    ConnectFailure,
    Reset,
    Timeout,
];

/// Per-status subclasses: the same names in Feign (`FeignException$…`), RestTemplate
/// (`HttpClientErrorException$…` / `HttpServerErrorException$…`) and WebClient
/// (`WebClientResponseException$…`).
const CLIENT_ERRORS: [(&str, u16); 11] = [
    ("BadRequest", 400),
    ("Unauthorized", 401),
    ("Forbidden", 403),
    ("NotFound", 404),
    ("MethodNotAllowed", 405),
    ("NotAcceptable", 406),
    ("Conflict", 409),
    ("Gone", 410),
    ("UnsupportedMediaType", 415),
    ("UnprocessableEntity", 422),
    ("TooManyRequests", 429),
];
const SERVER_ERRORS: [(&str, u16); 5] = [
    ("InternalServerError", 500),
    ("NotImplemented", 501),
    ("BadGateway", 502),
    ("ServiceUnavailable", 503),
    ("GatewayTimeout", 504),
];

const FEIGN: &str = "feign.FeignException";
const REST_CLIENT: &str = "org.springframework.web.client";
const WEB_CLIENT: &str = "org.springframework.web.reactive.function.client";

const CALL_NOT_PERMITTED: &str = "thrown by resilience4j's circuit breaker when it refuses a \
    call, never by the upstream, so it matches no call here; nothing is lost without it: the \
    sidecar never retries into an open breaker anyway (each retry asks the breaker first, and \
    the caller gets its fallback)";
/// A refusal in a breaker's list (see [`Meaning::Refusal`]).
pub(super) const REFUSAL_NOT_RECORDED: &str = "thrown by resilience4j when it refuses a call \
    locally, never by the upstream, so it matches no call here (the sidecar's breaker never \
    records a refusal); the entry can be dropped";

/// Exact classes (dotted spelling) with their meaning. JDK classes stand for what the client
/// reports with them (a connection refused, reset or timed out).
const CLASSES: &[(&str, Meaning)] = &[
    ("java.lang.Exception", Meaning::Outcomes(&DEFAULT_FAILURES)),
    (
        "java.lang.RuntimeException",
        Meaning::Outcomes(&DEFAULT_FAILURES),
    ),
    ("java.lang.Throwable", Meaning::Outcomes(&DEFAULT_FAILURES)),
    ("java.io.IOException", Meaning::Outcomes(&NO_RESPONSE)),
    (
        "java.net.ConnectException",
        Meaning::Outcomes(&[ConnectFailure, Reset]),
    ),
    (
        "java.net.SocketException",
        Meaning::Outcomes(&[ConnectFailure, Reset]),
    ),
    (
        "java.net.SocketTimeoutException",
        Meaning::Outcomes(&[Timeout]),
    ),
    (
        "java.util.concurrent.TimeoutException",
        Meaning::Outcomes(&[Timeout]),
    ),
    // Feign: every failure (error statuses and I/O errors, which become RetryableException).
    ("feign.FeignException", Meaning::Outcomes(&ANY_FAILURE)),
    (
        "feign.FeignException.FeignClientException",
        Meaning::Outcomes(&[StatusClass(4)]),
    ),
    (
        "feign.FeignException.FeignServerException",
        Meaning::Outcomes(&[StatusClass(5)]),
    ),
    // I/O errors (refused, timed out, reset); also a response with Retry-After, which no
    // matcher tells apart.
    ("feign.RetryableException", Meaning::Outcomes(&NO_RESPONSE)),
    // RestTemplate / RestClient.
    (
        "org.springframework.web.client.RestClientException",
        Meaning::Outcomes(&ANY_FAILURE),
    ),
    (
        "org.springframework.web.client.ResourceAccessException",
        Meaning::Outcomes(&NO_RESPONSE),
    ),
    (
        "org.springframework.web.client.RestClientResponseException",
        Meaning::Outcomes(&ERROR_STATUS),
    ),
    (
        "org.springframework.web.client.HttpStatusCodeException",
        Meaning::Outcomes(&ERROR_STATUS),
    ),
    (
        "org.springframework.web.client.HttpClientErrorException",
        Meaning::Outcomes(&[StatusClass(4)]),
    ),
    (
        "org.springframework.web.client.HttpServerErrorException",
        Meaning::Outcomes(&[StatusClass(5)]),
    ),
    // WebClient.
    (
        "org.springframework.web.reactive.function.client.WebClientException",
        Meaning::Outcomes(&ANY_FAILURE),
    ),
    (
        "org.springframework.web.reactive.function.client.WebClientRequestException",
        Meaning::Outcomes(&NO_RESPONSE),
    ),
    (
        "org.springframework.web.reactive.function.client.WebClientResponseException",
        Meaning::Outcomes(&ERROR_STATUS),
    ),
    // grpc-java: every failed call raises one of these, whatever its status code.
    (
        "io.grpc.StatusRuntimeException",
        Meaning::Outcomes(&GRPC_FAILURE),
    ),
    ("io.grpc.StatusException", Meaning::Outcomes(&GRPC_FAILURE)),
    // resilience4j's own.
    (
        "io.github.resilience4j.circuitbreaker.CallNotPermittedException",
        Meaning::LocalRejection(CALL_NOT_PERMITTED),
    ),
    (
        "io.github.resilience4j.bulkhead.BulkheadFullException",
        Meaning::Refusal(OutcomeMatcher::BulkheadFull),
    ),
    (
        "io.github.resilience4j.ratelimiter.RequestNotPermitted",
        Meaning::Refusal(OutcomeMatcher::RateLimited),
    ),
];

/// The meaning of a Java class name, `$` or `.` for nested classes. None: not a class the
/// sidecar knows (an application's own exception, say).
pub(super) fn meaning(class: &str) -> Option<Meaning> {
    let dotted = class.replace('$', ".");
    if let Some((_, meaning)) = CLASSES.iter().find(|(name, _)| *name == dotted) {
        return Some(*meaning);
    }
    let (outer, inner) = dotted.rsplit_once('.')?;
    let status = |table: &[(&str, u16)]| {
        table
            .iter()
            .find(|(name, _)| *name == inner)
            .map(|(_, status)| Meaning::Status(*status))
    };
    let client = format!("{REST_CLIENT}.HttpClientErrorException");
    let server = format!("{REST_CLIENT}.HttpServerErrorException");
    let response = format!("{WEB_CLIENT}.WebClientResponseException");
    match outer {
        FEIGN => status(&CLIENT_ERRORS).or_else(|| status(&SERVER_ERRORS)),
        o if o == response => status(&CLIENT_ERRORS).or_else(|| status(&SERVER_ERRORS)),
        o if o == client => status(&CLIENT_ERRORS),
        o if o == server => status(&SERVER_ERRORS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn client_exceptions_mean_their_statuses_in_both_nested_spellings() {
        for (class, status) in [
            ("feign.FeignException$ServiceUnavailable", 503),
            ("feign.FeignException.NotFound", 404),
            ("feign.FeignException$TooManyRequests", 429),
            ("org.springframework.web.client.HttpClientErrorException$NotFound", 404),
            ("org.springframework.web.client.HttpServerErrorException.BadGateway", 502),
            ("org.springframework.web.reactive.function.client.WebClientResponseException$InternalServerError", 500),
            ("org.springframework.web.reactive.function.client.WebClientResponseException.Conflict", 409),
        ] {
            assert_eq!(meaning(class), Some(Meaning::Status(status)), "{class}");
        }
        // Each Spring client family has only its own statuses.
        assert_eq!(
            meaning("org.springframework.web.client.HttpClientErrorException$BadGateway"),
            None
        );
        assert_eq!(
            meaning("org.springframework.web.client.HttpServerErrorException$NotFound"),
            None
        );
        assert_eq!(meaning("feign.FeignException$Teapot"), None);
    }

    #[test]
    fn base_classes_mean_every_failure_their_client_reports() {
        let outcomes = |class: &str| match meaning(class) {
            Some(Meaning::Outcomes(list)) => list.to_vec(),
            other => panic!("{class}: {other:?}"),
        };
        assert_eq!(outcomes("feign.FeignException"), ANY_FAILURE);
        assert_eq!(
            outcomes("feign.FeignException$FeignClientException"),
            [StatusClass(4)]
        );
        assert_eq!(
            outcomes("feign.FeignException.FeignServerException"),
            [StatusClass(5)]
        );
        assert_eq!(outcomes("feign.RetryableException"), NO_RESPONSE);
        assert_eq!(
            outcomes("org.springframework.web.client.RestClientException"),
            ANY_FAILURE
        );
        assert_eq!(
            outcomes("org.springframework.web.client.ResourceAccessException"),
            NO_RESPONSE
        );
        assert_eq!(
            outcomes("org.springframework.web.client.HttpClientErrorException"),
            [StatusClass(4)]
        );
        assert_eq!(
            outcomes("org.springframework.web.reactive.function.client.WebClientRequestException"),
            NO_RESPONSE
        );
        assert_eq!(
            outcomes("org.springframework.web.reactive.function.client.WebClientResponseException"),
            ERROR_STATUS
        );
        assert_eq!(outcomes("io.grpc.StatusRuntimeException"), GRPC_FAILURE);
        assert_eq!(outcomes("io.grpc.StatusException"), GRPC_FAILURE);
        assert!(matches!(
            meaning("io.github.resilience4j.circuitbreaker.CallNotPermittedException"),
            Some(Meaning::LocalRejection(_))
        ));
        assert_eq!(meaning("com.example.BusinessException"), None);
    }
}
