//! Foundation: the built filter loads into a real Envoy, passes traffic through unchanged, the
//! shipped bootstrap validates, and a bad policy pushed through ECDS is rejected with one log line
//! naming its path while the previous policy keeps serving.

// Test code: failing loudly is the point (clippy.toml allows this inside #[test] fns only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use harness::*;
use serde_json::{json, Value};

/// Sends a POST with a header and a body through Envoy to `authority` and checks that the client
/// gets exactly what the upstream answered and the upstream got exactly what the client sent.
fn assert_passes_through(envoy: &Envoy, authority: &str, upstream: &Upstream) {
    let before = upstream.count();
    upstream.push(
        Action::respond(201, "{\"created\":42}")
            .with_header("x-custom", "from-upstream")
            .with_header("content-type", "application/vnd.demo+json"),
    );
    let response = envoy
        .request(
            "POST",
            authority,
            "/orders/42?expand=items",
            &[("x-test", "abc"), ("content-type", "text/plain")],
            "hello upstream",
        )
        .unwrap_or_else(|e| panic!("request to {authority}: {e}"));
    assert_eq!(response.status, 201, "{authority}: {}", response.text());
    assert_eq!(response.text(), "{\"created\":42}", "{authority}");
    assert_eq!(
        response.header("x-custom"),
        Some("from-upstream"),
        "{authority}"
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/vnd.demo+json"),
        "{authority}"
    );
    assert_eq!(
        upstream.count(),
        before + 1,
        "{authority}: exactly one upstream request"
    );

    let seen = upstream.last().expect("upstream saw the request");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/orders/42?expand=items");
    assert_eq!(seen.header("x-test"), Some("abc"));
    assert_eq!(seen.header("content-type"), Some("text/plain"));
    assert_eq!(seen.header(":authority"), None);
    assert_eq!(seen.header("host"), Some(authority));
    assert_eq!(seen.text(), "hello upstream");

    // And a plain GET with the upstream's default answer.
    let response = envoy
        .get(authority, "/health")
        .unwrap_or_else(|e| panic!("GET {authority}: {e}"));
    assert_eq!(response.status, 200, "{authority}: {}", response.text());
    let body = response.json().unwrap();
    assert_eq!(body["upstream"], json!(upstream.name()), "{authority}");
    assert_eq!(upstream.last().unwrap().method, "GET");
}

#[test]
fn seed_policy_loads_and_traffic_passes_through_unchanged() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &seed_policy()).unwrap();

    // No instance guards payment-service; user-service is guarded (plain and Istio cluster name).
    assert_passes_through(&envoy, PAYMENT, &services.payment);
    assert_passes_through(&envoy, USER, &services.user);
    assert_passes_through(&envoy, ISTIO_USER, &services.istio_user);
    assert_passes_through(&envoy, ORDER, &services.order);
    // With `:port` in the authority too.
    assert_passes_through(&envoy, &format!("{USER}:8080"), &services.user);
}

#[test]
fn validate_shipped_bootstraps_and_filter_config() {
    let checked = validate_shipped(&seed_policy().to_string()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        checked.iter().any(|f| f.ends_with("envoy/bootstrap.yaml")),
        "{checked:?}"
    );
}

/// envoy/policy.json (what `make run` and `make docker-run` load) is the seed policy plus the
/// demo's `events` section, which names the bootstrap's `kafka-bridge` cluster.
#[test]
fn shipped_policy_json_is_the_seed_policy() {
    let text = std::fs::read_to_string(repo_root().join("envoy/policy.json")).unwrap();
    let shipped: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&String> = shipped.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["events", "resilience4j"],
        "only the seed's tree and events"
    );
    assert_eq!(shipped["resilience4j"], seed_policy()["resilience4j"]);
    // The filter has its own JSON type: handed over as text.
    let events_section =
        sidecar_resilience::json::from_str(&shipped["events"].to_string()).unwrap();
    let events = sidecar_resilience::policy::parse_events(&events_section, "events")
        .unwrap_or_else(|e| panic!("events section: {e:?}"));
    assert_eq!(events.bridges, ["kafka-bridge"]);
    for topic in ["order.created", "order.updated", "payment.completed"] {
        assert!(events.topics.contains_key(topic), "{topic}");
    }
    let bootstrap = std::fs::read_to_string(bootstrap_template()).unwrap();
    assert!(bootstrap.contains("cluster_name: kafka-bridge"));
    sidecar_resilience::policy::Policy::from_json(&text)
        .unwrap_or_else(|e| panic!("the filter rejects envoy/policy.json: {e:?}"));
}

const USER_BREAKER: &str = "resilience4j.circuitbreaker.instances.user-service";
const ORDER_BREAKER: &str = "resilience4j.circuitbreaker.instances.order-service";
const USER_RETRY: &str = "resilience4j.retry.instances.user-service";

/// A bad policy, the path its error must name, and (when the wording is part of the contract)
/// the message.
struct BadPolicy {
    what: &'static str,
    policy: Value,
    path: String,
    message: Option<&'static str>,
}

fn bad(what: &'static str, key: &str, value: Value, message: Option<&'static str>) -> BadPolicy {
    BadPolicy {
        what,
        policy: policy_with(key, value),
        path: key.to_string(),
        message,
    }
}

fn bad_policies() -> Vec<BadPolicy> {
    let threshold = format!("{USER_BREAKER}.failure-rate-threshold");
    let mut unknown = seed_policy();
    set_path(
        &mut unknown,
        &format!("{USER_BREAKER}.failure-rate-treshold"),
        json!(50),
    );
    // The seed has 2 circuit breaker instances: 255 retry instances more make 257.
    let too_many_retries =
        Value::Object((0..255).map(|i| (format!("svc-{i}"), json!({}))).collect());
    vec![
        BadPolicy {
            what: "unknown key (typo)",
            policy: unknown,
            path: format!("{USER_BREAKER}.failure-rate-treshold"),
            message: None,
        },
        bad("wrong type", &threshold, json!("fifty"), None),
        bad(
            "threshold 0",
            &threshold,
            json!(0),
            Some("must be in [1, 100], got 0"),
        ),
        bad(
            "threshold 120",
            &threshold,
            json!(120),
            Some("must be in [1, 100], got 120"),
        ),
        bad(
            "window 0",
            &format!("{ORDER_BREAKER}.sliding-window-size"),
            json!(0),
            None,
        ),
        bad(
            "negative duration",
            &format!("{USER_RETRY}.wait-duration"),
            json!("-1s"),
            None,
        ),
        bad(
            "negative open wait",
            &format!("{USER_BREAKER}.wait-duration-in-open-state"),
            json!(-5),
            None,
        ),
        BadPolicy {
            what: "more instances than the filter keeps",
            policy: policy_with("resilience4j.retry.instances", too_many_retries),
            path: "resilience4j".to_string(),
            message: Some("at most 256 circuit breaker and retry instances, got 257"),
        },
    ]
}

/// Requests through the plain and the Istio-style cluster (and an unguarded one) still succeed.
fn assert_still_serving(envoy: &Envoy, services: &Services, context: &str) {
    for (authority, upstream) in [
        (USER, &services.user),
        (ISTIO_USER, &services.istio_user),
        (PAYMENT, &services.payment),
    ] {
        let before = upstream.count();
        let response = envoy
            .get(authority, "/still-there")
            .unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(
            response.status,
            200,
            "{context}: {authority}: {}",
            response.text()
        );
        assert_eq!(
            upstream.count(),
            before + 1,
            "{context}: {authority} reached its upstream"
        );
    }
}

#[test]
fn bad_policies_are_rejected_and_the_old_policy_keeps_serving() {
    let services = Services::start().unwrap();
    let mut envoy = Envoy::start(&services, &seed_policy()).unwrap();
    let serving = envoy.ecds_version();
    assert_eq!(serving.as_deref(), Some("1"));
    assert_still_serving(&envoy, &services, "seed policy");

    for case in bad_policies() {
        let mark = envoy.log_mark();
        let update = envoy.set_policy(&case.policy).unwrap();
        assert_eq!(
            update,
            PolicyUpdate::Rejected,
            "{}: {}",
            case.what,
            case.policy
        );
        assert_eq!(
            envoy.ecds_version(),
            serving,
            "{}: the old policy keeps serving",
            case.what
        );

        let needle = match case.message {
            Some(message) => format!("{}: {message}", case.path),
            None => format!("{}: ", case.path),
        };
        envoy
            .wait_for_log(mark, &needle, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", case.what, envoy.log_since(mark)));
        // Let late lines land, then require exactly one line naming the problem.
        std::thread::sleep(Duration::from_millis(200));
        let log = envoy.log_since(mark);
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&needle)).collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: one log line with {needle:?}, got:\n{log}",
            case.what
        );
        assert!(
            lines[0].contains("[error]"),
            "{}: logged at error level: {}",
            case.what,
            lines[0]
        );

        assert_still_serving(&envoy, &services, case.what);
    }

    // Not even JSON: rejected too, still serving.
    let update = envoy.set_policy_text("{\"resilience4j\": ").unwrap();
    assert_eq!(update, PolicyUpdate::Rejected);
    assert_still_serving(&envoy, &services, "not JSON");

    // The harness tells the outcomes apart: a good change after all that is applied.
    let good = policy_with(&format!("{USER_BREAKER}.failure-rate-threshold"), json!(70));
    assert_eq!(envoy.set_policy(&good).unwrap(), PolicyUpdate::Applied);
    assert_ne!(envoy.ecds_version(), serving);
    assert_still_serving(&envoy, &services, "after a good update");
}

// ---------------------------------------------------------------------------------------------
// The harness itself: what later tests rely on.
// ---------------------------------------------------------------------------------------------

#[test]
fn harness_upstream_follows_its_script() {
    let up = Upstream::start("scripted").unwrap();
    let port = up.port();

    let response = get(port, "scripted", "/a").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json().unwrap(),
        json!({"upstream": "scripted", "request": 1, "status": 200})
    );

    up.push(Action::respond(503, "down").with_header("retry-after", "1"));
    up.push(Action::Reset);
    up.push(Action::Close);
    up.push(Action::delay(300, 202));
    let response = get(port, "scripted", "/b").unwrap();
    assert_eq!((response.status, response.text().as_str()), (503, "down"));
    assert_eq!(response.header("retry-after"), Some("1"));
    let reset = get(port, "scripted", "/reset").unwrap_err();
    assert_eq!(reset.kind(), std::io::ErrorKind::ConnectionReset, "{reset}");
    let closed = get(port, "scripted", "/close").unwrap_err();
    assert!(
        closed.to_string().contains("closed before a response"),
        "{closed}"
    );
    let started = std::time::Instant::now();
    assert_eq!(get(port, "scripted", "/slow").unwrap().status, 202);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Chunked request bodies are decoded; everything is recorded in order.
    let chunked = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let response = request(
        port,
        "PUT",
        "scripted",
        "/c",
        &[("transfer-encoding", "chunked")],
        chunked,
    )
    .unwrap();
    assert_eq!(response.status, 200);
    let seen = up.requests();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/a", "/b", "/reset", "/close", "/slow", "/c"]);
    assert_eq!(seen[5].text(), "hello world");
    assert_eq!(seen[5].number, 6);
    assert!(seen.windows(2).all(|w| w[0].at <= w[1].at));

    up.refuse();
    assert!(
        get(port, "scripted", "/refused").is_err(),
        "refused while not accepting"
    );
    up.accept().unwrap();
    assert_eq!(get(port, "scripted", "/back").unwrap().status, 200);
    assert_eq!(up.count(), 7);
}

#[test]
fn harness_upstream_failures_reach_envoy() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &seed_policy()).unwrap();
    let payment = &services.payment;

    payment.push(Action::Reset);
    assert_eq!(envoy.get(PAYMENT, "/reset").unwrap().status, 503);
    payment.push(Action::Close);
    assert_eq!(envoy.get(PAYMENT, "/close").unwrap().status, 503);
    payment.push(Action::delay(200, 200));
    let started = std::time::Instant::now();
    assert_eq!(envoy.get(PAYMENT, "/slow").unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    payment.refuse();
    let before = payment.count();
    assert_eq!(envoy.get(PAYMENT, "/refused").unwrap().status, 503);
    assert_eq!(payment.count(), before, "nothing arrives while refusing");
    payment.accept().unwrap();
    assert_eq!(envoy.get(PAYMENT, "/back").unwrap().status, 200);

    let stats = envoy.stats().unwrap();
    assert!(stats.contains_key("cluster.payment-service.upstream_cx_connect_fail"));
    assert!(
        envoy
            .stat("cluster.payment-service.upstream_cx_connect_fail")
            .unwrap()
            >= 1
    );
    assert!(envoy
        .stat(&format!("cluster.{ISTIO_USER_CLUSTER}.upstream_rq_total"))
        .is_some());
    assert!(envoy.log().contains("starting main dispatch loop"));
}
