//! The fault matrix in a real Envoy (`--concurrency 2`): each way an upstream can fail — a 5xx,
//! a reset before headers, a close mid-body, a refused connection, a timeout, slow headers, a
//! slow body — on the first attempt (through Envoy's router) and on a replay (an HTTP callout),
//! each with the kind the breaker records and the retries made. Then callers that go away during
//! a wait, a replay or a half-open trial, a body still arriving when a retry is due, and headers
//! a caller could use to change the upstream's timeouts.

// Test helpers outside #[test] fns may unwrap too: a failed step fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

const CB: &str = "resilience4j.circuitbreaker.instances.user-service";
const RETRY: &str = "resilience4j.retry.instances.user-service";

/// user-service: a breaker whose window never trips (every result is counted, none refused), a
/// slow threshold of 400 ms, and 3 attempts 100 ms apart with a 1 s timeout per replay.
///
/// Envoy answers a refused connection, a reset or a timeout with its own 503 / 504. The breaker
/// ignores 503 and 504 and the retry does not retry them, so a fault read as Envoy's status
/// shows up as `ignored` and no retry, while a fault read as what happened is `failed` and
/// retried. The upstream's own failures are 500 and 502.
fn matrix_policy() -> Value {
    let mut policy = seed_policy();
    set_path(
        &mut policy,
        CB,
        json!({"sliding-window-size": 100, "minimum-number-of-calls": 100,
               "failure-rate-threshold": 100, "slow-call-rate-threshold": 100,
               "slow-call-duration-threshold": "400ms", "ignore-exceptions": ["503", "504"]}),
    );
    set_path(
        &mut policy,
        RETRY,
        json!({"max-attempts": 3, "wait-duration": "100ms",
               "retry-exceptions": ["500", "502", "connect-failure", "reset", "timeout"]}),
    );
    set_path(
        &mut policy,
        "retry-options",
        json!({"user-service": {"per-try-timeout": "1s"}}),
    );
    policy
}

fn breaker_calls(envoy: &Envoy) -> BTreeMap<&'static str, u64> {
    let series = |series: &str, kind: &str| {
        envoy.metric(series, &[("name", "user-service"), ("kind", kind)])
    };
    let calls = |kind| series("resilience4j_circuitbreaker_calls_seconds_count", kind);
    let slow = |kind| {
        series(
            "resilience4j_circuitbreaker_slow_calls_recorded_total",
            kind,
        )
    };
    // calls_seconds_count counts slow calls in their kind, as Micrometer does.
    let (slow_successful, slow_failed) = (slow("successful"), slow("failed"));
    BTreeMap::from([
        (
            "successful",
            calls("successful").saturating_sub(slow_successful),
        ),
        ("failed", calls("failed").saturating_sub(slow_failed)),
        ("slow_successful", slow_successful),
        ("slow_failed", slow_failed),
        ("ignored", calls("ignored")),
    ])
}

fn retry_attempts(envoy: &Envoy) -> u64 {
    envoy.metric(
        "resilience4j_retry_attempts_total",
        &[("name", "user-service")],
    )
}

/// What one request added to the breaker's counts and the retries.
#[derive(Debug, PartialEq, Eq)]
struct Counted {
    kinds: BTreeMap<&'static str, u64>,
    retries: u64,
}

fn counted(kinds: &[(&'static str, u64)], retries: u64) -> Counted {
    Counted {
        kinds: kinds.iter().copied().collect(),
        retries,
    }
}

/// Runs `request`, then waits until the breaker's counts stop moving (a result recorded at the
/// end of a response may land just after the caller got it, and the filter hands counts to
/// Envoy on its tick: two reads a flush period apart agree) and returns what was added.
fn measure(envoy: &Envoy, request: impl FnOnce() -> Option<u16>) -> (Option<u16>, Counted) {
    let before = breaker_calls(envoy);
    let retries_before = retry_attempts(envoy);
    let status = request();
    let mut after = breaker_calls(envoy);
    for _ in 0..10 {
        thread::sleep(harness::COUNTER_SETTLE);
        let again = breaker_calls(envoy);
        if again == after {
            break;
        }
        after = again;
    }
    let kinds = after
        .iter()
        .filter_map(|(kind, n)| {
            let added = n - before.get(kind).copied().unwrap_or(0);
            (added > 0).then_some((*kind, added))
        })
        .collect();
    (
        status,
        Counted {
            kinds,
            retries: retry_attempts(envoy) - retries_before,
        },
    )
}

fn get_status(envoy: &Envoy) -> Option<u16> {
    envoy.get(USER, "/users/1").ok().map(|r| r.status)
}

#[test]
fn faults_on_the_first_attempt() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &matrix_policy()).unwrap();
    let user = &services.user;
    let mut failures = Vec::new();
    let mut check =
        |name: &str, status: Option<u16>, got: (Option<u16>, Counted), want: Counted| {
            if got.0 != status || got.1 != want {
                failures.push(format!(
                    "{name}: got {:?} {:?}, want {status:?} {want:?}",
                    got.0, got.1
                ));
            }
        };

    user.push(Action::status(500));
    let got = measure(&envoy, || get_status(&envoy));
    check(
        "5xx",
        Some(200),
        got,
        counted(&[("failed", 1), ("successful", 1)], 1),
    );

    user.push(Action::Reset);
    let got = measure(&envoy, || get_status(&envoy));
    check(
        "reset before headers",
        Some(200),
        got,
        counted(&[("failed", 1), ("successful", 1)], 1),
    );

    // The headers went on to the caller: nothing to retry, but the call failed.
    user.push(Action::CloseMidBody { status: 200 });
    let got = measure(&envoy, || get_status(&envoy));
    check("close mid-body", None, got, counted(&[("failed", 1)], 0));

    user.refuse();
    let got = measure(&envoy, || get_status(&envoy));
    user.accept().unwrap();
    check(
        "connect refused",
        Some(503),
        got,
        counted(&[("failed", 3)], 2),
    );

    // The route's timeout (5 s in the bootstrap): a failure, and slow.
    user.push(Action::delay(6000, 200));
    let got = measure(&envoy, || get_status(&envoy));
    check(
        "route timeout",
        Some(200),
        got,
        counted(&[("slow_failed", 1), ("successful", 1)], 1),
    );

    user.push(Action::delay(700, 200));
    let got = measure(&envoy, || get_status(&envoy));
    check(
        "slow headers",
        Some(200),
        got,
        counted(&[("slow_successful", 1)], 0),
    );

    user.push(Action::SlowBody {
        status: 200,
        ms: 700,
    });
    let got = measure(&envoy, || get_status(&envoy));
    check(
        "slow body",
        Some(200),
        got,
        counted(&[("slow_successful", 1)], 0),
    );

    assert!(failures.is_empty(), "{}", failures.join("\n"));
    envoy.filter_crashes().unwrap();
}

/// resilience4j Retry's call kinds for user-service.
fn retry_calls(envoy: &Envoy) -> BTreeMap<&'static str, u64> {
    [
        "successful_without_retry",
        "successful_with_retry",
        "failed_without_retry",
        "failed_with_retry",
    ]
    .into_iter()
    .map(|kind| {
        let labels = [("name", "user-service"), ("kind", kind)];
        (
            kind,
            envoy.metric("resilience4j_retry_calls_total", &labels),
        )
    })
    .collect()
}

/// What the Retry's call counts added since `before`, once they stopped moving (a count may
/// land just after the caller got its answer, or left).
fn retry_calls_added(
    envoy: &Envoy,
    before: &BTreeMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    let added = || -> BTreeMap<&'static str, u64> {
        retry_calls(envoy)
            .into_iter()
            .filter_map(|(kind, n)| {
                let added = n - before.get(kind).copied().unwrap_or(0);
                (added > 0).then_some((kind, added))
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while added().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    thread::sleep(Duration::from_millis(300));
    added()
}

/// The Retry counts a call once, when it really ends, with the breaker's verdict: a 200 whose
/// body breaks off is a failed call for both (its headers said success).
#[test]
fn retry_calls_are_counted_when_the_call_ends_as_the_breaker_records_it() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &matrix_policy()).unwrap();
    let user = &services.user;
    let cases = [
        (
            "200",
            Action::status(200),
            Some(200),
            counted(&[("successful", 1)], 0),
            "successful_without_retry",
        ),
        (
            "5xx, then 200",
            Action::status(500),
            Some(200),
            counted(&[("failed", 1), ("successful", 1)], 1),
            "successful_with_retry",
        ),
        (
            "close mid-body",
            Action::CloseMidBody { status: 200 },
            None,
            counted(&[("failed", 1)], 0),
            "failed_without_retry",
        ),
        (
            "slow body",
            Action::SlowBody {
                status: 200,
                ms: 700,
            },
            Some(200),
            counted(&[("slow_successful", 1)], 0),
            "successful_without_retry",
        ),
    ];
    let mut failures = Vec::new();
    for (name, fault, status, breaker, retry_kind) in cases {
        let before = retry_calls(&envoy);
        user.push(fault);
        let got = measure(&envoy, || get_status(&envoy));
        // Counted at the end of the response and handed to Envoy on the filter's tick: poll
        // until the count lands, then a flush period more (a second count would show).
        let total = |calls: &BTreeMap<&str, u64>| calls.values().sum::<u64>();
        let deadline = Instant::now() + COUNTER_WAIT;
        while total(&retry_calls(&envoy)) <= total(&before) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        thread::sleep(COUNTER_SETTLE);
        let added: BTreeMap<&str, u64> = retry_calls(&envoy)
            .into_iter()
            .filter_map(|(kind, n)| {
                let added = n - before.get(kind).copied().unwrap_or(0);
                (added > 0).then_some((kind, added))
            })
            .collect();
        if got.0 != status || got.1 != breaker || added != BTreeMap::from([(retry_kind, 1)]) {
            failures.push(format!(
                "{name}: got {:?}, breaker {:?}, retry calls {added:?}; \
                 want {status:?}, {breaker:?}, {retry_kind}",
                got.0, got.1
            ));
        }
        user.clear_queue();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    envoy.filter_crashes().unwrap();
}

/// resilience4j TimeLimiter's call kinds for user-service.
fn limiter_calls(envoy: &Envoy) -> BTreeMap<&'static str, u64> {
    ["successful", "failed", "timeout"]
        .into_iter()
        .map(|kind| {
            let labels = [("name", "user-service"), ("kind", kind)];
            (
                kind,
                envoy.metric("resilience4j_timelimiter_calls_total", &labels),
            )
        })
        .collect()
}

/// The TimeLimiter counts an attempt when it really ends, with the breaker's verdict: a 200
/// whose body breaks off is `failed`, one whose body the time limiter's timeout cuts is a
/// `timeout` (what resilience4j's TimeLimiter sees as a TimeoutException), a slow body within
/// the bound `successful`.
#[test]
fn time_limiter_calls_are_counted_when_the_attempt_ends_as_the_breaker_records_it() {
    let services = Services::start().unwrap();
    let mut policy = matrix_policy();
    set_path(
        &mut policy,
        "resilience4j.timelimiter.instances.user-service.timeout-duration",
        json!("1500ms"),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;
    let cases = [
        (
            "200",
            Action::status(200),
            Some(200),
            counted(&[("successful", 1)], 0),
            vec![("successful", 1)],
        ),
        (
            "5xx, then 200",
            Action::status(500),
            Some(200),
            counted(&[("failed", 1), ("successful", 1)], 1),
            vec![("failed", 1), ("successful", 1)],
        ),
        (
            "close mid-body",
            Action::CloseMidBody { status: 200 },
            None,
            counted(&[("failed", 1)], 0),
            vec![("failed", 1)],
        ),
        (
            "slow body within the bound",
            Action::SlowBody {
                status: 200,
                ms: 700,
            },
            Some(200),
            counted(&[("slow_successful", 1)], 0),
            vec![("successful", 1)],
        ),
        (
            "body cut by the timeout",
            Action::SlowBody {
                status: 200,
                ms: 4000,
            },
            None,
            counted(&[("slow_failed", 1)], 0),
            vec![("timeout", 1)],
        ),
    ];
    let mut failures = Vec::new();
    for (name, fault, status, breaker, limiter) in cases {
        let want: BTreeMap<&str, u64> = limiter.into_iter().collect();
        let before = limiter_calls(&envoy);
        user.push(fault);
        let got = measure(&envoy, || get_status(&envoy));
        // Counted at the end of the attempt: poll until the count lands, then a little more.
        let total = |calls: &BTreeMap<&str, u64>| calls.values().sum::<u64>();
        let want_total = total(&before) + total(&want);
        let deadline = Instant::now() + Duration::from_secs(10);
        while total(&limiter_calls(&envoy)) < want_total && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        thread::sleep(Duration::from_millis(300));
        let added: BTreeMap<&str, u64> = limiter_calls(&envoy)
            .into_iter()
            .filter_map(|(kind, n)| {
                let added = n - before.get(kind).copied().unwrap_or(0);
                (added > 0).then_some((kind, added))
            })
            .collect();
        if got.0 != status || got.1 != breaker || added != want {
            failures.push(format!(
                "{name}: got {:?}, breaker {:?}, time limiter {added:?}; \
                 want {status:?}, {breaker:?}, {want:?}",
                got.0, got.1
            ));
        }
        user.clear_queue();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // A caller that goes away mid-body says nothing about the upstream: the breaker records
    // nothing, the time limiter counts the attempt by the response as far as it came.
    let before = limiter_calls(&envoy);
    user.push(Action::SlowBody {
        status: 200,
        ms: 1000,
    });
    let (_, breaker) = measure(&envoy, || {
        let mut stream = TcpStream::connect(("127.0.0.1", envoy.port())).unwrap();
        stream
            .write_all(format!("GET /users/1 HTTP/1.1\r\nhost: {USER}\r\n\r\n").as_bytes())
            .unwrap();
        let mut first = [0u8; 16];
        stream.read_exact(&mut first).unwrap();
        drop(stream);
        thread::sleep(Duration::from_millis(300));
        None
    });
    assert_eq!(breaker, counted(&[], 0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while limiter_calls(&envoy) == before && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let mut want = before;
    *want.entry("successful").or_default() += 1;
    assert_eq!(limiter_calls(&envoy), want, "the caller went away mid-body");
    envoy.filter_crashes().unwrap();
}

#[test]
fn faults_on_a_replay() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &matrix_policy()).unwrap();
    let user = &services.user;
    let mut failures = Vec::new();
    let mut check =
        |name: &str, status: Option<u16>, got: (Option<u16>, Counted), want: Counted| {
            if got.0 != status || got.1 != want {
                failures.push(format!(
                    "{name}: got {:?} {:?}, want {status:?} {want:?}",
                    got.0, got.1
                ));
            }
        };
    // Each case: the first attempt gets a 500, the first replay the fault, a second replay
    // (if the fault is retried) a 200.
    let failed_then_ok = [("failed", 2), ("successful", 1)];
    let cases = [
        ("5xx", Action::status(502), counted(&failed_then_ok, 2)),
        (
            "reset before headers",
            Action::Reset,
            counted(&failed_then_ok, 2),
        ),
        (
            "close mid-body",
            Action::CloseMidBody { status: 200 },
            counted(&failed_then_ok, 2),
        ),
        // The per-try timeout (1 s): a failure, and slow.
        (
            "timeout",
            Action::delay(3000, 200),
            counted(&[("failed", 1), ("slow_failed", 1), ("successful", 1)], 2),
        ),
        (
            "slow headers",
            Action::delay(700, 200),
            counted(&[("failed", 1), ("slow_successful", 1)], 1),
        ),
        (
            "slow body",
            Action::SlowBody {
                status: 200,
                ms: 700,
            },
            counted(&[("failed", 1), ("slow_successful", 1)], 1),
        ),
    ];
    for (name, fault, want) in cases {
        user.push(Action::status(500));
        user.push(fault);
        let got = measure(&envoy, || get_status(&envoy));
        check(name, Some(200), got, want);
        user.clear_queue();
    }

    // A connection refused on the replays: the first attempt's 500 goes through, then the
    // upstream stops listening while the retry waits.
    user.push(Action::status(500));
    let port = envoy.port();
    let got = measure(&envoy, || {
        let caller = thread::spawn(move || get(port, USER, "/users/1").ok().map(|r| r.status));
        let deadline = Instant::now() + Duration::from_secs(5);
        while user.count() == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        user.refuse();
        caller.join().unwrap()
    });
    user.accept().unwrap();
    check(
        "connect refused",
        Some(503),
        got,
        counted(&[("failed", 3)], 2),
    );

    assert!(failures.is_empty(), "{}", failures.join("\n"));
    envoy.filter_crashes().unwrap();
}

/// The case: record and retry connection failures only, against a dead upstream.
#[test]
fn a_dead_upstream_is_retried_and_recorded_as_connect_failures() {
    let services = Services::start().unwrap();
    let mut policy = seed_policy();
    set_path(
        &mut policy,
        CB,
        json!({"sliding-window-size": 100, "minimum-number-of-calls": 100,
               "record-exceptions": ["connect-failure"]}),
    );
    set_path(
        &mut policy,
        RETRY,
        json!({"max-attempts": 3, "wait-duration": 0, "retry-exceptions": ["connect-failure"]}),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    services.user.refuse();
    let (status, got) = measure(&envoy, || get_status(&envoy));
    assert_eq!(status, Some(503));
    assert_eq!(got, counted(&[("failed", 3)], 2));
    envoy.filter_crashes().unwrap();
}

/// Sends a GET and goes away without reading the response, once `upstream` has received
/// `arrived` requests in all and `after` has passed; then gives Envoy a moment to notice.
fn call_and_leave(port: u16, upstream: &Upstream, arrived: usize, after: Duration) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(format!("GET /users/1 HTTP/1.1\r\nhost: {USER}\r\n\r\n").as_bytes())
        .unwrap();
    let started = Instant::now();
    assert!(upstream.wait_for_count(arrived, Duration::from_secs(10)));
    thread::sleep(after.saturating_sub(started.elapsed()));
    drop(stream);
    thread::sleep(Duration::from_millis(300));
}

#[test]
fn callers_that_go_away_during_a_wait_or_a_replay_leave_nothing_behind() {
    let services = Services::start().unwrap();
    let mut policy = matrix_policy();
    set_path(
        &mut policy,
        &format!("{RETRY}.wait-duration"),
        json!("800ms"),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;

    // During the wait: no replay goes out for a caller that left.
    user.push(Action::status(500));
    let retry_before = retry_calls(&envoy);
    let (_, got) = measure(&envoy, || {
        // The wait is 800 ms: the caller leaves 300 ms into it.
        call_and_leave(envoy.port(), user, 1, Duration::from_millis(300));
        thread::sleep(Duration::from_millis(1500));
        None
    });
    assert_eq!(user.count(), 1, "no replay for a caller that left");
    assert_eq!(got, counted(&[("failed", 1)], 0));
    // The Retry counts the call by its last result, as it does for a caller gone mid-body.
    assert_eq!(
        retry_calls_added(&envoy, &retry_before),
        BTreeMap::from([("failed_without_retry", 1)]),
        "a caller that left during the wait"
    );

    // During a replay: its permission is handed back, its late answer is dropped.
    user.reset_requests();
    user.push(Action::status(500));
    user.push(Action::delay(1500, 200));
    let retry_before = retry_calls(&envoy);
    let (_, got) = measure(&envoy, || {
        // The replay (the 2nd request since the reset) takes 1.5 s: the caller leaves while it is in flight.
        call_and_leave(envoy.port(), user, 2, Duration::from_millis(0));
        thread::sleep(Duration::from_millis(1500));
        None
    });
    assert_eq!(user.count(), 2);
    assert_eq!(got, counted(&[("failed", 1)], 1));
    assert_eq!(
        retry_calls_added(&envoy, &retry_before),
        BTreeMap::from([("failed_with_retry", 1)]),
        "a caller that left during a replay"
    );
    assert_eq!(get_status(&envoy), Some(200));
    envoy.filter_crashes().unwrap();
}

#[test]
fn a_half_open_trial_whose_caller_goes_away_frees_its_place() {
    let services = Services::start().unwrap();
    let mut policy = seed_policy();
    set_path(
        &mut policy,
        CB,
        json!({"sliding-window-size": 2, "minimum-number-of-calls": 2,
               "wait-duration-in-open-state": "1s",
               "permitted-number-of-calls-in-half-open-state": 1}),
    );
    set_path(&mut policy, RETRY, json!({"max-attempts": 1}));
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;
    let state = |name: &str| {
        envoy.metric(
            "resilience4j_circuitbreaker_state",
            &[("name", "user-service"), ("state", name)],
        ) == 1
    };
    let open = |envoy: &Envoy| {
        user.push_n(2, Action::status(500));
        for _ in 0..2 {
            assert_eq!(get_status(envoy), Some(500));
        }
        assert!(state("open"));
        thread::sleep(Duration::from_millis(1200));
    };

    // The trial's caller leaves before the headers.
    open(&envoy);
    user.push(Action::delay(1500, 200));
    call_and_leave(envoy.port(), user, 3, Duration::from_millis(0));
    assert_eq!(get_status(&envoy), Some(200), "the trial's place is free");
    assert!(state("closed"));

    // The trial's caller leaves in the middle of the body.
    open(&envoy);
    user.push(Action::SlowBody {
        status: 200,
        ms: 1500,
    });
    {
        let mut stream = TcpStream::connect(("127.0.0.1", envoy.port())).unwrap();
        stream
            .write_all(format!("GET /users/1 HTTP/1.1\r\nhost: {USER}\r\n\r\n").as_bytes())
            .unwrap();
        let mut first = [0u8; 16];
        stream.read_exact(&mut first).unwrap();
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(get_status(&envoy), Some(200), "the trial's place is free");
    assert!(state("closed"));
    envoy.filter_crashes().unwrap();
}

/// A POST whose body arrives in 4 KiB pieces 100 ms apart, while the upstream answers 503 as
/// soon as it has the headers. The rest of the body never reaches the filter (Envoy drops request
/// body that arrives after the router has the whole response), so a replay could only send part
/// of it, as if complete: the request is not retried, and the caller gets the upstream's 503.
#[test]
fn a_retry_never_sends_a_body_that_has_not_all_arrived() {
    let services = Services::start().unwrap();
    let mut policy = seed_policy();
    set_path(
        &mut policy,
        RETRY,
        json!({"max-attempts": 2, "wait-duration": 0}),
    );
    set_path(
        &mut policy,
        "retry-options",
        json!({"user-service": {"max-body-bytes": 65536}}),
    );
    let envoy = Envoy::start(&services, &policy).unwrap();
    let user = &services.user;
    user.push(Action::RespondBeforeBody { status: 503 });

    let body: Vec<u8> = (0..40960u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut stream = TcpStream::connect(("127.0.0.1", envoy.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
        .write_all(
            format!(
                "POST /users HTTP/1.1\r\nhost: {USER}\r\nidempotency-key: k-1\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    // Envoy may close the connection once it answered: later pieces may not be written.
    for piece in body.chunks(4096) {
        if stream
            .write_all(piece)
            .and_then(|()| stream.flush())
            .is_err()
        {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 503"),
        "{}",
        response.lines().next().unwrap_or("")
    );
    thread::sleep(Duration::from_millis(300));
    assert_eq!(user.count(), 1, "no replay of a partial body");
    // The same request with its body sent at once is replayed whole.
    user.push(Action::status(503));
    let response = envoy
        .request("POST", USER, "/users", &[("idempotency-key", "k-2")], &body)
        .unwrap();
    assert_eq!(response.status, 200);
    let received = user.requests();
    assert_eq!(received.len(), 3);
    assert_eq!(received[2].body, body);
    envoy.filter_crashes().unwrap();
}

/// A caller cannot charge failures to the upstream by shortening its timeouts.
#[test]
fn callers_cannot_change_the_upstream_timeouts() {
    let services = Services::start().unwrap();
    let envoy = Envoy::start(&services, &matrix_policy()).unwrap();
    let user = &services.user;
    user.set_default(Action::delay(50, 200));
    let (_, got) = measure(&envoy, || {
        for _ in 0..5 {
            let response = envoy
                .request(
                    "GET",
                    USER,
                    "/users/1",
                    &[
                        ("x-envoy-upstream-rq-timeout-ms", "1"),
                        ("x-envoy-upstream-rq-per-try-timeout-ms", "1"),
                        ("x-envoy-expected-rq-timeout-ms", "1"),
                        ("x-envoy-upstream-stream-duration-ms", "1"),
                        ("x-envoy-upstream-rq-timeout-alt-response", "204"),
                    ],
                    b"",
                )
                .unwrap();
            assert_eq!(response.status, 200);
        }
        None
    });
    assert_eq!(got, counted(&[("successful", 5)], 0));
    assert_eq!(user.count(), 5);
    for request in user.requests() {
        assert!(
            !request
                .headers
                .iter()
                .any(|(name, value)| name.starts_with("x-envoy-upstream-rq") && value == "1"),
            "{:?}",
            request.headers
        );
    }
    envoy.filter_crashes().unwrap();
}
