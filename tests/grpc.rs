//! gRPC calls judged by their grpc-status, in a real Envoy in front of a real gRPC upstream over
//! h2c: a failed call is an HTTP 200 whose grpc-status (in the trailers, or in the headers of a
//! trailers-only response) is not OK. The breaker records it as a failure and opens at its
//! threshold; OK calls count as successful; the Retry retries a failed call.

// Test helpers outside #[test] fns may unwrap too: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

const CB: &str = "resilience4j.circuitbreaker.instances";
const RETRY: &str = "resilience4j.retry.instances";
const ORDER: &str = "order-service";
const METHOD: &str = "/shop.Orders/Get";
const UNAVAILABLE: u8 = 14;

/// envoy/bootstrap.yaml with the order-service cluster speaking HTTP/2 (h2c) upstream, as a
/// gRPC upstream needs.
fn grpc_template(dir: &TempDir) -> PathBuf {
    let template = std::fs::read_to_string(bootstrap_template()).unwrap();
    let cluster = "  - name: order-service\n    type: STATIC\n";
    assert!(
        template.contains(cluster),
        "order-service cluster not found"
    );
    let h2c = "    typed_extension_protocol_options:\n      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n        explicit_http_config:\n          http2_protocol_options: {}\n";
    // Envoy's fault filter between this filter and the router, as Istio places it; it aborts
    // only requests that ask for it (`x-envoy-fault-abort-grpc-request`).
    let router = "          - name: envoy.filters.http.router\n";
    assert!(template.contains(router), "router filter not found");
    let fault = "          - name: envoy.filters.http.fault\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault\n              abort: { header_abort: {}, percentage: { numerator: 100 } }\n";
    let path = dir.path().join("grpc-bootstrap.yaml");
    let template = template
        .replace(cluster, &format!("{cluster}{h2c}"))
        .replace(router, &format!("{fault}{router}"));
    std::fs::write(&path, template).unwrap();
    path
}

/// Envoy with `policy`, its order-service cluster pointing at `upstream` over h2c.
fn start(upstream: &GrpcUpstream, policy: &Value, dir: &TempDir) -> Envoy {
    let options = EnvoyOptions {
        template: grpc_template(dir),
        ..EnvoyOptions::default()
    };
    Envoy::start_on(&ServicePorts::all(upstream.port()), Some(policy), &options).unwrap()
}

/// order-service's breaker: 4 calls, opens at 50 % failures; no retries unless a test adds them.
fn breaker_policy() -> Value {
    let mut policy = seed_policy();
    remove_path(&mut policy, "resilience4j.retry");
    set_path(
        &mut policy,
        &format!("{CB}.{ORDER}"),
        json!({"sliding-window-size": 4, "minimum-number-of-calls": 4,
               "failure-rate-threshold": 50, "wait-duration-in-open-state": "30s"}),
    );
    policy
}

fn call(envoy: &Envoy) -> GrpcReply {
    grpc_call(envoy.port(), ORDER, METHOD).unwrap()
}

/// Waits (generously: metrics may follow on the filter's tick) until `check` holds.
fn eventually(what: &str, envoy: &Envoy, check: impl Fn(&Envoy) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check(envoy) {
        assert!(
            Instant::now() < deadline,
            "{what}: not so after 10s; stats: {:?}",
            envoy.counters("order-service.*(calls_seconds_count|calls_total|state)")
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn breaker_calls(envoy: &Envoy, kind: &str) -> u64 {
    envoy.metric(
        "resilience4j_circuitbreaker_calls_seconds_count",
        &[("name", ORDER), ("kind", kind)],
    )
}

fn state_is(envoy: &Envoy, state: &str) -> bool {
    envoy.metric(
        "resilience4j_circuitbreaker_state",
        &[("name", ORDER), ("state", state)],
    ) == 1
}

#[test]
fn grpc_failures_with_http_200_open_the_breaker_at_its_threshold() {
    let upstream = GrpcUpstream::start().unwrap();
    let dir = TempDir::new("grpc-test").unwrap();
    let envoy = start(&upstream, &breaker_policy(), &dir);

    // Two OK calls: successful, and the message reaches the caller.
    upstream.push_n(2, GrpcAnswer::Ok);
    for _ in 0..2 {
        let reply = call(&envoy);
        assert_eq!(reply.http_status, 200);
        assert_eq!(reply.grpc_status.as_deref(), Some("0"));
        assert_eq!(reply.message(), Some(GRPC_REPLY_MESSAGE));
    }
    eventually("2 successful calls", &envoy, |e| {
        breaker_calls(e, "successful") == 2
    });

    // A failure in the trailers: HTTP 200, grpc-status 14. 3 calls: below the minimum.
    upstream.push_n(1, GrpcAnswer::InTrailers(UNAVAILABLE));
    let reply = call(&envoy);
    assert_eq!(
        (reply.http_status, reply.grpc_status.as_deref()),
        (200, Some("14"))
    );
    eventually("1 failed call", &envoy, |e| breaker_calls(e, "failed") == 1);
    assert!(state_is(&envoy, "closed"));

    // A trailers-only failure: the 4th call, 2 of 4 failed = the 50 % threshold: OPEN.
    upstream.push_n(1, GrpcAnswer::TrailersOnly(UNAVAILABLE));
    let reply = call(&envoy);
    assert_eq!(
        (reply.http_status, reply.grpc_status.as_deref()),
        (200, Some("14"))
    );
    assert_eq!(upstream.count(), 4);
    eventually("OPEN after the 4th call", &envoy, |e| state_is(e, "open"));
    eventually("2 failed and 2 successful calls", &envoy, |e| {
        breaker_calls(e, "failed") == 2 && breaker_calls(e, "successful") == 2
    });

    // OPEN: the fallback, which never reaches the upstream (for a gRPC caller Envoy words a
    // local reply as a gRPC status).
    upstream.set_default(GrpcAnswer::Ok);
    let reply = call(&envoy);
    assert_ne!(reply.grpc_status.as_deref(), Some("0"), "{reply:?}");
    assert_eq!(upstream.count(), 4, "an open breaker let a call through");
    envoy.filter_crashes().unwrap();
}

#[test]
fn grpc_ok_responses_keep_the_breaker_closed() {
    let upstream = GrpcUpstream::start().unwrap();
    let dir = TempDir::new("grpc-test").unwrap();
    let envoy = start(&upstream, &breaker_policy(), &dir);
    for _ in 0..6 {
        assert_eq!(call(&envoy).grpc_status.as_deref(), Some("0"));
    }
    eventually("6 successful calls", &envoy, |e| {
        breaker_calls(e, "successful") == 6
    });
    assert_eq!(breaker_calls(&envoy, "failed"), 0);
    assert!(state_is(&envoy, "closed"));
    envoy.filter_crashes().unwrap();
}

/// A Retry on order-service that would replay a POST; the breaker's window stays open-ended.
fn retry_policy() -> Value {
    let mut policy = breaker_policy();
    set_path(
        &mut policy,
        &format!("{CB}.{ORDER}.sliding-window-size"),
        json!(100),
    );
    set_path(
        &mut policy,
        &format!("{CB}.{ORDER}.minimum-number-of-calls"),
        json!(100),
    );
    set_path(
        &mut policy,
        &format!("{RETRY}.{ORDER}"),
        json!({"max-attempts": 3, "wait-duration": "100ms"}),
    );
    set_path(
        &mut policy,
        "retry-options",
        json!({ORDER: {"retry-non-idempotent": true}}),
    );
    policy
}

fn retry_calls(envoy: &Envoy, kind: &str) -> u64 {
    envoy.metric(
        "resilience4j_retry_calls_total",
        &[("name", ORDER), ("kind", kind)],
    )
}

/// A replay's answer reaches the caller as a local reply, which Envoy turns into a trailers-only
/// gRPC response for a gRPC caller (verified: a replayed OK came back as grpc-status 0 without
/// its message). So a failed gRPC call is not replayed: the caller gets the failure as the
/// upstream sent it, and the Retry counts a failed call without retry.
#[test]
fn a_failed_grpc_call_goes_back_unreplayed_and_counts_as_failed() {
    let upstream = GrpcUpstream::start().unwrap();
    let dir = TempDir::new("grpc-test").unwrap();
    let envoy = start(&upstream, &retry_policy(), &dir);

    upstream.push_n(1, GrpcAnswer::TrailersOnly(UNAVAILABLE));
    upstream.push_n(1, GrpcAnswer::InTrailers(UNAVAILABLE));
    for _ in 0..2 {
        let reply = call(&envoy);
        assert_eq!(
            (reply.http_status, reply.grpc_status.as_deref()),
            (200, Some("14")),
            "{reply:?}"
        );
    }
    let reply = call(&envoy);
    assert_eq!(reply.message(), Some(GRPC_REPLY_MESSAGE), "{reply:?}");
    assert_eq!(upstream.count(), 3, "a gRPC call was replayed");
    eventually("the Retry's counts", &envoy, |e| {
        retry_calls(e, "failed_without_retry") == 2
            && retry_calls(e, "successful_without_retry") == 1
    });
    eventually("the breaker's counts", &envoy, |e| {
        breaker_calls(e, "failed") == 2 && breaker_calls(e, "successful") == 1
    });
    envoy.filter_crashes().unwrap();
}

/// Envoy answers a gRPC caller's failed call itself as HTTP 200 with grpc-status 14: its flags
/// still say what happened, so it is a `connect-failure` (recorded even where that is all
/// `record-exceptions` lists).
#[test]
fn a_grpc_call_that_cannot_connect_is_a_connect_failure() {
    let upstream = GrpcUpstream::start().unwrap();
    let closed = free_port().unwrap();
    let dir = TempDir::new("grpc-test").unwrap();
    let options = EnvoyOptions {
        template: grpc_template(&dir),
        ..EnvoyOptions::default()
    };
    let mut ports = ServicePorts::all(upstream.port());
    ports.order = closed;
    let mut policy = breaker_policy();
    set_path(
        &mut policy,
        &format!("{CB}.{ORDER}.record-exceptions"),
        json!(["connect-failure"]),
    );
    let envoy = Envoy::start_on(&ports, Some(&policy), &options).unwrap();
    let reply = call(&envoy);
    assert_eq!(
        (reply.http_status, reply.grpc_status.as_deref()),
        (200, Some("14")),
        "{reply:?}"
    );
    eventually("1 failed call", &envoy, |e| breaker_calls(e, "failed") == 1);
    assert_eq!(breaker_calls(&envoy, "successful"), 0);
    assert_eq!(upstream.count(), 0);
    envoy.filter_crashes().unwrap();
}

/// An abort injected by Envoy's fault filter reaches a gRPC caller as HTTP 200 with its
/// grpc-status: the fault filter's answer, not the upstream's, so not recorded.
#[test]
fn an_injected_grpc_abort_is_not_recorded() {
    let upstream = GrpcUpstream::start().unwrap();
    let dir = TempDir::new("grpc-test").unwrap();
    let envoy = start(&upstream, &breaker_policy(), &dir);
    let abort = [("x-envoy-fault-abort-grpc-request", "14")];
    for _ in 0..4 {
        let reply = grpc_call_with(envoy.port(), ORDER, METHOD, &abort).unwrap();
        assert_eq!(
            (reply.http_status, reply.grpc_status.as_deref()),
            (200, Some("14")),
            "{reply:?}"
        );
    }
    assert_eq!(upstream.count(), 0);
    // One upstream call after the aborts: the only call the breaker records.
    assert_eq!(call(&envoy).grpc_status.as_deref(), Some("0"));
    eventually("1 successful call", &envoy, |e| {
        breaker_calls(e, "successful") == 1
    });
    assert_eq!(breaker_calls(&envoy, "failed"), 0);
    assert!(state_is(&envoy, "closed"));
    envoy.filter_crashes().unwrap();
}
