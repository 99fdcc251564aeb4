//! A request's attempts, specified step by step: resilience4j's Retry around its
//! CircuitBreaker, made by a sidecar that holds the first response while it replays the
//! request. Time is passed in; `T0` is an arbitrary epoch. Replies are named by a string.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::Cell;

use super::*;
use crate::outcome::OutcomeMatcher;

const T0: u64 = 1_700_000_000_000;

const OK: CallResult = CallResult::Response(200);
const UNAVAILABLE: CallResult = CallResult::Response(503);
const NOT_FOUND: CallResult = CallResult::Response(404);

type Reply = &'static str;

/// resilience4j's defaults: 3 attempts, 500 ms apart.
fn config() -> RetryConfig {
    RetryConfig::default()
}

/// The host's side: a budget of `retries_left` and a fixed random sample; counts what it was
/// asked.
struct Host {
    retries_left: Cell<u32>,
    random01: f64,
    budget_asked: Cell<u32>,
    random_asked: Cell<u32>,
}

impl Host {
    fn with_budget(retries_left: u32) -> Self {
        Host {
            retries_left: Cell::new(retries_left),
            random01: 0.5,
            budget_asked: Cell::new(0),
            random_asked: Cell::new(0),
        }
    }

    /// (random samples, budget withdrawals) asked for so far.
    fn asked(&self) -> (u32, u32) {
        (self.random_asked.get(), self.budget_asked.get())
    }
}

impl RetryHost for Host {
    fn random01(&self) -> f64 {
        self.random_asked.set(self.random_asked.get() + 1);
        self.random01
    }

    fn withdraw_budget(&self, _now_ms: u64) -> bool {
        self.budget_asked.set(self.budget_asked.get() + 1);
        match self.retries_left.get() {
            0 => false,
            left => {
                self.retries_left.set(left - 1);
                true
            }
        }
    }
}

fn rules<'a>(config: &'a RetryConfig, host: &'a Host) -> Option<RetryRules<'a>> {
    Some(RetryRules {
        config,
        overall_timeout_ms: None,
        body_too_large: false,
        body_incomplete: false,
        host,
    })
}

fn within<'a>(
    overall_timeout_ms: u64,
    config: &'a RetryConfig,
    host: &'a Host,
) -> Option<RetryRules<'a>> {
    Some(RetryRules {
        overall_timeout_ms: Some(overall_timeout_ms),
        ..rules(config, host)?
    })
}

fn finish(response: FinalResponse<Reply>, result: CallResult) -> Step<Reply> {
    Step::Finish { response, result }
}

fn fallback(state: State, retry_after_ms: Option<u64>) -> FinalResponse<Reply> {
    FinalResponse::Fallback {
        state,
        retry_after_ms,
    }
}

/// A sequence whose first attempt failed at `T0 + 10` and whose wait (500 ms) is over: the
/// tick has asked for the replay.
fn replay_due(c: &RetryConfig, host: &Host) -> Sequence<Reply> {
    let mut s = Sequence::start(T0, true);
    let ended = s.first_response(T0 + 10, UNAVAILABLE, rules(c, host));
    assert_eq!(ended.step, Step::WaitUntil(T0 + 510));
    assert_eq!(s.tick(T0 + 510), Some(Step::Replay));
    s
}

// ---- the first attempt ----

#[test]
fn a_success_goes_on_as_it_is_and_asks_the_host_nothing() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, true);
    assert!(s.awaits_first_response());
    let ended = s.first_response(T0 + 40, OK, rules(&c, &host));
    assert_eq!(
        ended,
        AttemptEnded {
            record_duration_ms: Some(40),
            not_retried: None,
            step: finish(FinalResponse::FirstResponse, OK),
        }
    );
    assert_eq!(host.asked(), (0, 0));
    assert_eq!(s.attempts(), 1);
    assert!(!s.awaits_first_response() && !s.permission_held());
}

#[test]
fn without_retry_rules_every_result_is_final() {
    let mut s = Sequence::<Reply>::start(T0, true);
    let ended = s.first_response(T0 + 5, UNAVAILABLE, None);
    assert_eq!(ended.record_duration_ms, Some(5));
    assert_eq!(
        ended.step,
        finish(FinalResponse::FirstResponse, UNAVAILABLE)
    );
    assert_eq!(ended.not_retried, None);
}

#[test]
fn the_breaker_hears_an_attempt_only_when_it_permitted_it() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, false);
    assert!(!s.permission_held());
    let ended = s.first_response(T0 + 5, OK, rules(&c, &host));
    assert_eq!(ended.record_duration_ms, None);
}

#[test]
fn a_failure_that_is_not_retryable_is_final() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, true);
    let ended = s.first_response(T0 + 5, NOT_FOUND, rules(&c, &host));
    assert_eq!(ended.step, finish(FinalResponse::FirstResponse, NOT_FOUND));
    assert_eq!(ended.not_retried, None);
    assert_eq!(host.asked(), (0, 0));

    let mut ignoring = config();
    ignoring.ignore = vec![OutcomeMatcher::Status(503)];
    let mut s = Sequence::<Reply>::start(T0, true);
    let ended = s.first_response(T0 + 5, UNAVAILABLE, rules(&ignoring, &host));
    assert_eq!(
        ended.step,
        finish(FinalResponse::FirstResponse, UNAVAILABLE)
    );
}

// ---- waiting ----

#[test]
fn a_retryable_failure_waits_then_the_tick_starts_the_replay() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, true);
    let ended = s.first_response(T0 + 10, UNAVAILABLE, rules(&c, &host));
    assert_eq!(
        ended,
        AttemptEnded {
            record_duration_ms: Some(10),
            not_retried: None,
            step: Step::WaitUntil(T0 + 510),
        }
    );
    assert_eq!(host.asked(), (1, 1));
    assert!(s.waits_for_tick(), "the wait needs the worker's fast tick");
    assert!(!s.is_due(T0 + 509));
    assert_eq!(s.tick(T0 + 509), None);
    assert!(s.is_due(T0 + 510));
    assert_eq!(s.tick(T0 + 510), Some(Step::Replay));
    assert!(!s.waits_for_tick(), "the replay is the host's to start");
    // Asked once: a second tick before the replay went out does nothing.
    assert!(!s.is_due(T0 + 520));
    assert_eq!(s.tick(T0 + 520), None);
}

#[test]
fn waits_follow_the_backoff_for_each_retry() {
    let mut c = config();
    c.max_attempts = 4;
    c.wait_duration_ms = 100;
    c.enable_exponential_backoff = true;
    c.exponential_backoff_multiplier = 2.0;
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, false);
    assert_eq!(
        s.first_response(T0, UNAVAILABLE, rules(&c, &host)).step,
        Step::WaitUntil(T0 + 100)
    );
    let mut now = T0 + 100;
    for wait in [200, 400] {
        assert_eq!(s.tick(now), Some(Step::Replay));
        s.replay_sent(now, false);
        let ended = s.replay_answered(now, UNAVAILABLE, Some("503"), rules(&c, &host));
        assert_eq!(ended.step, Step::WaitUntil(now + wait));
        now += wait;
    }
}

#[test]
fn the_random_sample_randomizes_the_wait() {
    let mut c = config();
    c.enable_randomized_wait = true;
    c.randomized_wait_factor = 0.5;
    let host = Host {
        random01: 0.0,
        ..Host::with_budget(10)
    };
    let mut s = Sequence::<Reply>::start(T0, false);
    let ended = s.first_response(T0, UNAVAILABLE, rules(&c, &host));
    assert_eq!(ended.step, Step::WaitUntil(T0 + 250));
}

// ---- replays ----

#[test]
fn a_replay_that_succeeds_is_the_answer() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = replay_due(&c, &host);
    s.replay_sent(T0 + 511, true);
    assert_eq!((s.attempts(), s.attempt_started_ms()), (2, T0 + 511));
    assert!(s.permission_held());
    let ended = s.replay_answered(T0 + 530, OK, Some("200"), rules(&c, &host));
    assert_eq!(
        ended,
        AttemptEnded {
            record_duration_ms: Some(19),
            not_retried: None,
            step: finish(FinalResponse::Replayed("200"), OK),
        }
    );
}

#[test]
fn exhausted_attempts_answer_with_the_last_reply() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = replay_due(&c, &host);
    s.replay_sent(T0 + 510, false);
    let ended = s.replay_answered(T0 + 520, UNAVAILABLE, Some("first 503"), rules(&c, &host));
    assert_eq!(ended.step, Step::WaitUntil(T0 + 1020));
    assert_eq!(s.tick(T0 + 1020), Some(Step::Replay));
    s.replay_sent(T0 + 1020, false);
    let ended = s.replay_answered(T0 + 1030, UNAVAILABLE, Some("second 503"), rules(&c, &host));
    assert_eq!(s.attempts(), 3);
    assert_eq!(ended.not_retried, Some(NotRetried::AttemptsExhausted));
    assert_eq!(
        ended.step,
        finish(FinalResponse::Replayed("second 503"), UNAVAILABLE)
    );
    assert_eq!(host.asked().1, 2, "exhaustion does not touch the budget");
}

#[test]
fn a_replay_without_an_answer_keeps_the_previous_failure_to_show() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = replay_due(&c, &host);
    s.replay_sent(T0 + 510, false);
    s.replay_answered(T0 + 520, CallResult::Reset, None, rules(&c, &host));
    // The next replay cannot go out: the caller gets the first response, still held.
    assert_eq!(s.tick(T0 + 1020), Some(Step::Replay));
    assert_eq!(
        s.replay_not_sent(T0 + 1020),
        finish(FinalResponse::FirstResponse, CallResult::Reset)
    );
}

#[test]
fn a_last_attempt_without_an_answer_says_there_was_no_response() {
    let mut c = config();
    c.max_attempts = 2;
    let host = Host::with_budget(10);
    let mut s = replay_due(&c, &host);
    s.replay_sent(T0 + 510, true);
    let ended = s.replay_answered(T0 + 600, CallResult::Timeout, None, rules(&c, &host));
    assert_eq!(ended.record_duration_ms, Some(90));
    assert_eq!(ended.not_retried, Some(NotRetried::AttemptsExhausted));
    assert_eq!(
        ended.step,
        finish(
            FinalResponse::NoResponse { attempts: 2 },
            CallResult::Timeout
        )
    );
}

// ---- a wait of 0: the replay starts inside the first response's callback ----

#[test]
fn a_wait_of_zero_replays_at_once() {
    let mut c = config();
    c.wait_duration_ms = 0;
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, true);
    assert!(!s.waits_for_tick(), "the first attempt is the router's");
    let ended = s.first_response(T0 + 5, UNAVAILABLE, rules(&c, &host));
    assert_eq!(ended.step, Step::Replay);
    assert!(!s.is_due(T0 + 5), "the host starts it, not the tick");
    assert!(!s.waits_for_tick());
    s.replay_sent(T0 + 5, true);
    assert!(
        !s.waits_for_tick(),
        "a replay in flight waits for its answer"
    );
    // And again after a replay's answer.
    let ended = s.replay_answered(T0 + 8, UNAVAILABLE, Some("503"), rules(&c, &host));
    assert_eq!(ended.step, Step::Replay);
}

#[test]
fn a_refusal_inside_the_response_callback_is_served_by_the_next_tick() {
    let mut c = config();
    c.wait_duration_ms = 0;
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, true);
    s.first_response(T0 + 5, UNAVAILABLE, rules(&c, &host));
    assert_eq!(s.replay_refused(State::Open, Some(60_000)), Step::Defer);
    assert!(s.is_due(T0 + 5));
    assert!(s.waits_for_tick());
    assert_eq!(
        s.tick(T0 + 15),
        Some(finish(
            fallback(State::Open, Some(60_000)),
            CallResult::Response(503)
        ))
    );
    assert_eq!(s.tick(T0 + 25), None);
}

#[test]
fn a_failed_dispatch_inside_the_response_callback_is_tried_again_by_the_tick() {
    let mut c = config();
    c.wait_duration_ms = 0;
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, true);
    s.first_response(T0 + 5, UNAVAILABLE, rules(&c, &host));
    assert_eq!(s.replay_not_sent(T0 + 5), Step::Defer);
    assert!(s.is_due(T0 + 5));
    assert_eq!(s.tick(T0 + 15), Some(Step::Replay));
    // The second try fails too: now the caller gets the first response.
    assert_eq!(
        s.replay_not_sent(T0 + 15),
        finish(FinalResponse::FirstResponse, CallResult::Reset)
    );
    assert_eq!(s.attempts(), 1);
}

// ---- refusals and failed dispatches outside the callback ----

#[test]
fn a_refusal_from_the_tick_is_answered_with_the_fallback_at_once() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = replay_due(&c, &host);
    assert_eq!(
        s.replay_refused(State::HalfOpen, None),
        finish(fallback(State::HalfOpen, None), CallResult::Response(503))
    );
    assert!(!s.is_due(T0 + 10_000));
}

#[test]
fn a_failed_dispatch_from_the_tick_answers_with_the_latest_reply() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = replay_due(&c, &host);
    s.replay_sent(T0 + 510, false);
    s.replay_answered(
        T0 + 520,
        UNAVAILABLE,
        Some("replayed 503"),
        rules(&c, &host),
    );
    assert_eq!(s.tick(T0 + 1020), Some(Step::Replay));
    assert_eq!(
        s.replay_not_sent(T0 + 1020),
        finish(FinalResponse::Replayed("replayed 503"), CallResult::Reset)
    );
}

#[test]
fn a_refusal_after_a_replays_answer_is_answered_at_once() {
    let mut c = config();
    c.wait_duration_ms = 0;
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, false);
    s.first_response(T0, UNAVAILABLE, rules(&c, &host));
    s.replay_sent(T0, false);
    let ended = s.replay_answered(T0 + 1, UNAVAILABLE, Some("503"), rules(&c, &host));
    assert_eq!(ended.step, Step::Replay);
    assert_eq!(
        s.replay_refused(State::Open, Some(1_000)),
        finish(
            fallback(State::Open, Some(1_000)),
            CallResult::Response(503)
        )
    );
}

// ---- what stops a retry ----

#[test]
fn a_body_too_large_to_keep_is_not_replayed() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, false);
    let too_large = Some(RetryRules {
        config: &c,
        overall_timeout_ms: None,
        body_too_large: true,
        body_incomplete: false,
        host: &host,
    });
    let ended = s.first_response(T0, UNAVAILABLE, too_large);
    assert_eq!(ended.not_retried, Some(NotRetried::BodyTooLarge));
    assert_eq!(
        ended.step,
        finish(FinalResponse::FirstResponse, UNAVAILABLE)
    );
    assert_eq!(host.asked().1, 0);
}

#[test]
fn a_body_that_has_not_all_arrived_is_not_replayed() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, true);
    let incomplete = Some(RetryRules {
        config: &c,
        overall_timeout_ms: None,
        body_too_large: false,
        body_incomplete: true,
        host: &host,
    });
    let ended = s.first_response(T0 + 5, UNAVAILABLE, incomplete);
    assert_eq!(ended.not_retried, Some(NotRetried::BodyIncomplete));
    assert_eq!(ended.record_duration_ms, Some(5));
    assert_eq!(
        ended.step,
        finish(FinalResponse::FirstResponse, UNAVAILABLE)
    );
    assert_eq!(host.asked().1, 0, "no retry taken from the budget");
}

#[test]
fn no_retry_starts_past_the_overall_timeout() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, false);
    // 400 + 500 ms wait: within 1 s of the request's arrival.
    let ended = s.first_response(T0 + 400, UNAVAILABLE, within(1_000, &c, &host));
    assert_eq!(ended.step, Step::WaitUntil(T0 + 900));
    assert_eq!(s.tick(T0 + 900), Some(Step::Replay));
    s.replay_sent(T0 + 900, false);
    // 950 + 500 ms: past it.
    let ended = s.replay_answered(T0 + 950, UNAVAILABLE, Some("503"), within(1_000, &c, &host));
    assert_eq!(ended.not_retried, Some(NotRetried::PastOverallTimeout));
    assert_eq!(
        ended.step,
        finish(FinalResponse::Replayed("503"), UNAVAILABLE)
    );
    assert_eq!(host.asked().1, 1);
}

#[test]
fn an_exhausted_budget_stops_retries() {
    let c = config();
    let host = Host::with_budget(0);
    let mut s = Sequence::<Reply>::start(T0, false);
    let ended = s.first_response(T0, UNAVAILABLE, rules(&c, &host));
    assert_eq!(ended.not_retried, Some(NotRetried::BudgetExhausted));
    assert_eq!(
        ended.step,
        finish(FinalResponse::FirstResponse, UNAVAILABLE)
    );
    assert_eq!(host.asked().1, 1);
}

// ---- a replay through the rate limiter and bulkhead ----

const FULL: Refusal = Refusal::BulkheadFull { thread_pool: false };
const LIMITED: Refusal = Refusal::RateLimited { wait_ms: 2_000 };

/// Retry's retry-exceptions: the default failures and `refusal`'s exception.
fn retrying(refusal: OutcomeMatcher) -> RetryConfig {
    let mut c = config();
    c.retry_on = vec![
        OutcomeMatcher::StatusClass(5),
        OutcomeMatcher::ConnectFailure,
        refusal,
    ];
    c
}

#[test]
fn a_refused_replay_not_listed_answers_with_the_refusal_at_once() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = replay_due(&c, &host);
    assert_eq!(
        s.replay_refused_by_admission(T0 + 510, FULL, rules(&c, &host)),
        finish(FinalResponse::Refused(FULL), CallResult::Response(503))
    );
    // It was an attempt, and the breaker holds nothing for it.
    assert_eq!(s.attempts(), 2);
    assert!(!s.permission_held());
    assert!(!s.is_due(T0 + 10_000));
    let mut s = replay_due(&c, &host);
    assert_eq!(
        s.replay_refused_by_admission(T0 + 510, LIMITED, rules(&c, &host)),
        finish(FinalResponse::Refused(LIMITED), CallResult::Response(429))
    );
}

#[test]
fn a_listed_refusal_is_retried_after_the_retrys_wait_and_max_attempts_bound_it() {
    let c = retrying(OutcomeMatcher::BulkheadFull);
    let host = Host::with_budget(10);
    let mut s = replay_due(&c, &host);
    // Attempt 2 refused: attempt 3 after the wait (500 ms), as for any retried failure.
    assert_eq!(
        s.replay_refused_by_admission(T0 + 510, FULL, rules(&c, &host)),
        Step::WaitUntil(T0 + 1010)
    );
    assert!(!s.is_due(T0 + 1009));
    assert_eq!(s.tick(T0 + 1010), Some(Step::Replay));
    // Attempt 3 refused too: max-attempts reached, the caller gets the refusal.
    assert_eq!(
        s.replay_refused_by_admission(T0 + 1010, FULL, rules(&c, &host)),
        finish(FinalResponse::Refused(FULL), CallResult::Response(503))
    );
    assert_eq!(s.attempts(), 3);
    // Each retry took one from the budget (the first failure's and the refusal's).
    assert_eq!(host.asked().1, 2);
    // Only the listed refusal: the rate limiter's is not retried.
    let mut s = replay_due(&c, &host);
    assert!(matches!(
        s.replay_refused_by_admission(T0 + 510, LIMITED, rules(&c, &host)),
        Step::Finish { .. }
    ));
}

#[test]
fn a_full_bulkhead_never_retries_at_once_even_with_a_wait_of_zero() {
    let mut c = retrying(OutcomeMatcher::BulkheadFull);
    c.wait_duration_ms = 0;
    c.max_attempts = 1000;
    let host = Host::with_budget(10_000);
    let mut s = Sequence::<Reply>::start(T0, true);
    let ended = s.first_response(T0 + 5, UNAVAILABLE, rules(&c, &host));
    assert_eq!(ended.step, Step::Replay);
    // Refused inside the first-response callback: a wait (due now), left to the tick.
    assert_eq!(
        s.replay_refused_by_admission(T0 + 5, FULL, rules(&c, &host)),
        Step::WaitUntil(T0 + 5)
    );
    // The tick starts one attempt; refused again, it waits for the next tick, never loops.
    for tick in 1..=5u64 {
        let now = T0 + 5 + tick * 10;
        assert_eq!(s.tick(now), Some(Step::Replay));
        assert_eq!(
            s.replay_refused_by_admission(now, FULL, rules(&c, &host)),
            Step::WaitUntil(now)
        );
    }
    assert_eq!(s.attempts(), 7);
}

#[test]
fn a_refusal_inside_the_response_callback_not_retried_is_served_by_the_tick() {
    let mut c = config();
    c.wait_duration_ms = 0;
    let host = Host::with_budget(10);
    let mut s = Sequence::<Reply>::start(T0, true);
    s.first_response(T0 + 5, UNAVAILABLE, rules(&c, &host));
    assert_eq!(
        s.replay_refused_by_admission(T0 + 5, LIMITED, rules(&c, &host)),
        Step::Defer
    );
    assert!(s.is_due(T0 + 5));
    assert_eq!(
        s.tick(T0 + 15),
        Some(finish(
            FinalResponse::Refused(LIMITED),
            CallResult::Response(429)
        ))
    );
    assert_eq!(s.tick(T0 + 25), None);
}

#[test]
fn a_replay_waiting_for_admission_holds_the_breakers_permission_until_it_goes() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = replay_due(&c, &host);
    s.replay_admission_waits(true);
    // The wait is the admission's: the retry's tick has nothing to do, no response is awaited.
    assert!(!s.is_due(T0 + 60_000));
    assert_eq!(s.tick(T0 + 60_000), None);
    assert!(!s.awaits_first_response());
    // If the request goes away now, the host hands the permission back.
    assert!(s.permission_held());
    s.replay_sent(T0 + 900, true);
    assert_eq!(s.attempts(), 2);
    let ended = s.replay_answered(T0 + 950, OK, Some("200"), rules(&c, &host));
    assert_eq!(
        ended.record_duration_ms,
        Some(50),
        "timed from when it went out"
    );
    assert_eq!(ended.step, finish(FinalResponse::Replayed("200"), OK));
}

#[test]
fn a_replay_refused_at_the_end_of_its_wait_is_answered_at_once() {
    let c = config();
    let host = Host::with_budget(10);
    let mut s = replay_due(&c, &host);
    s.replay_admission_waits(true);
    assert_eq!(
        s.replay_refused_by_admission(T0 + 4_000, FULL, rules(&c, &host)),
        finish(FinalResponse::Refused(FULL), CallResult::Response(503))
    );
    assert!(!s.permission_held());
}

#[test]
fn ignore_exceptions_win_over_a_listed_refusal() {
    let mut c = retrying(OutcomeMatcher::RateLimited);
    c.ignore = vec![OutcomeMatcher::RateLimited];
    let host = Host::with_budget(10);
    let mut s = replay_due(&c, &host);
    assert_eq!(
        s.replay_refused_by_admission(T0 + 510, LIMITED, rules(&c, &host)),
        finish(FinalResponse::Refused(LIMITED), CallResult::Response(429))
    );
}
