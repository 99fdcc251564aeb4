//! The policy reader, as the documentation of each section says it.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::sorted_map::SortedMap;

use crate::json;
use crate::json::{Map, Value};

use super::*;
use crate::events::{EventsConfig, Mode, SpoofedSource, TopicConfig};
use crate::outcome::OutcomeMatcher::{
    BulkheadFull, ConnectFailure, GrpcError, GrpcStatus, RateLimited, Reset, Status, StatusClass,
    Timeout,
};

type Result<T> = std::result::Result<T, PolicyError>;

// -- fixtures --------------------------------------------------------------------------

const SEED: &str = r#"{"resilience4j": {
  "circuitbreaker": {"instances": {
    "user-service":  {"failure-rate-threshold": 50, "wait-duration-in-open-state": "30s", "sliding-window-size": 10, "minimum-number-of-calls": 5},
    "order-service": {"failure-rate-threshold": 60, "wait-duration-in-open-state": "20s", "sliding-window-size": 8}}},
  "retry": {"instances": {
    "user-service":  {"max-attempts": 3, "wait-duration": "2s"},
    "order-service": {"max-attempts": 2, "wait-duration": "1s"}}}}}"#;

fn parse(policy: &Value) -> Result<Policy> {
    parse_policy(&policy.to_string())
}

/// The message of a rejected policy, path included.
fn rejected(policy: Value) -> String {
    match parse(&policy) {
        Ok(p) => panic!("policy accepted: {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn accepted(policy: Value) -> Policy {
    match parse(&policy) {
        Ok(p) => p,
        Err(e) => panic!("policy rejected: {e}"),
    }
}

/// A policy with one circuit breaker instance `svc` holding `props`.
fn breaker_policy(props: Value) -> Value {
    json!({"resilience4j": {"circuitbreaker": {"instances": {"svc": props}}}})
}

fn retry_policy(props: Value) -> Value {
    json!({"resilience4j": {"retry": {"instances": {"svc": props}}}})
}

fn breaker(props: Value) -> BreakerConfig {
    let policy = parse(&breaker_policy(props)).unwrap();
    policy.circuit_breakers["svc"].clone()
}

fn retry(props: Value) -> RetryConfig {
    let policy = parse(&retry_policy(props)).unwrap();
    policy.retries["svc"].clone()
}

fn breaker_error(props: Value) -> String {
    rejected(breaker_policy(props))
}

fn retry_error(props: Value) -> String {
    rejected(retry_policy(props))
}

/// resilience4j's CircuitBreakerConfig defaults.
fn r4j_breaker() -> BreakerConfig {
    BreakerConfig {
        failure_rate_threshold: 50.0,
        slow_call_rate_threshold: 100.0,
        slow_call_duration_threshold_ms: 60_000,
        sliding_window_type: SlidingWindowType::CountBased,
        sliding_window_size: 100,
        minimum_number_of_calls: 100,
        wait_duration_in_open_state_ms: 60_000,
        automatic_transition_from_open_to_half_open_enabled: false,
        permitted_number_of_calls_in_half_open_state: 10,
        max_wait_duration_in_half_open_state_ms: 0,
        open_wait_multiplier: 1.0,
        open_wait_max_ms: None,
        transition_to_state_after_wait_duration: crate::policy::StateAfterWait::Open,
        open_wait_randomization_factor: None,
        initial_state: InitialState::Closed,
        record: vec![],
        ignore: vec![],
    }
}

/// resilience4j's RetryConfig defaults.
fn r4j_retry() -> RetryConfig {
    RetryConfig {
        max_attempts: 3,
        wait_duration_ms: 500,
        enable_exponential_backoff: false,
        exponential_backoff_multiplier: 1.5,
        exponential_max_wait_duration_ms: None,
        enable_randomized_wait: false,
        randomized_wait_factor: 0.5,
        fail_after_max_attempts: false,
        retry_on: vec![],
        ignore: vec![],
    }
}

const BREAKER_PATH: &str = "resilience4j.circuitbreaker.instances.svc";
const RETRY_PATH: &str = "resilience4j.retry.instances.svc";

// -- the seed --------------------------------------------------------------------------

#[test]
fn seed_policy_parses_to_the_expected_model_with_resilience4j_defaults() {
    let policy = parse_policy(SEED).unwrap();
    let user = BreakerConfig {
        failure_rate_threshold: 50.0,
        wait_duration_in_open_state_ms: 30_000,
        sliding_window_size: 10,
        minimum_number_of_calls: 5,
        ..r4j_breaker()
    };
    let order = BreakerConfig {
        failure_rate_threshold: 60.0,
        wait_duration_in_open_state_ms: 20_000,
        sliding_window_size: 8,
        // Not clamped to the window here: the breaker does that.
        minimum_number_of_calls: 100,
        ..r4j_breaker()
    };
    let expected = Policy {
        bulkheads: Default::default(),
        thread_pool_bulkheads: Default::default(),
        rate_limiters: Default::default(),
        circuit_breakers: [
            ("user-service".to_string(), user),
            ("order-service".to_string(), order),
        ]
        .into_iter()
        .collect(),
        retries: [
            (
                "user-service".to_string(),
                RetryConfig {
                    max_attempts: 3,
                    wait_duration_ms: 2_000,
                    ..r4j_retry()
                },
            ),
            (
                "order-service".to_string(),
                RetryConfig {
                    max_attempts: 2,
                    wait_duration_ms: 1_000,
                    ..r4j_retry()
                },
            ),
        ]
        .into_iter()
        .collect(),
        time_limiters: SortedMap::new(),
        upstreams: SortedMap::new(),
        fallbacks: SortedMap::new(),
        retry_options: [
            ("user-service".to_string(), RetryOptions::default()),
            ("order-service".to_string(), RetryOptions::default()),
        ]
        .into_iter()
        .collect(),
        events: None,
        warnings: vec![],
    };
    assert_eq!(policy, expected);
}

#[test]
fn camel_snake_and_upper_case_spellings_give_the_same_model_as_the_seed() {
    let camel = r#"{"resilience4j": {
      "circuitBreaker": {"instances": {
        "user-service":  {"failureRateThreshold": 50, "waitDurationInOpenState": "30s", "slidingWindowSize": 10, "minimumNumberOfCalls": 5},
        "order-service": {"failureRateThreshold": 60, "waitDurationInOpenState": "20s", "slidingWindowSize": 8}}},
      "retry": {"instances": {
        "user-service":  {"maxAttempts": 3, "waitDuration": "2s"},
        "order-service": {"maxAttempts": 2, "waitDuration": "1s"}}}}}"#;
    let snake = r#"{"RESILIENCE4J": {
      "circuit_breaker": {"INSTANCES": {
        "user-service":  {"failure_rate_threshold": 50, "WAIT_DURATION_IN_OPEN_STATE": "30s", "sliding_window_size": 10, "minimum_number_of_calls": 5},
        "order-service": {"FAILURE_RATE_THRESHOLD": 60, "wait_duration_in_open_state": "20s", "Sliding-Window-Size": 8}}},
      "retry": {"instances": {
        "user-service":  {"MAX_ATTEMPTS": 3, "wait_duration": "2s"},
        "order-service": {"max_attempts": 2, "WaitDuration": "1s"}}}}}"#;
    let seed = parse_policy(SEED).unwrap();
    assert_eq!(parse_policy(camel).unwrap(), seed);
    assert_eq!(parse_policy(snake).unwrap(), seed);
}

#[test]
fn instance_names_are_map_keys_and_kept_verbatim() {
    let policy = parse(&json!({"resilience4j": {"circuitbreaker": {"instances": {
        "User_Service": {}, "user-service": {}}}}}))
    .unwrap();
    assert_eq!(
        policy.circuit_breakers.keys().collect::<Vec<_>>(),
        ["User_Service", "user-service"]
    );
}

#[test]
fn an_empty_policy_is_valid_and_empty() {
    let policy = parse_policy("{}").unwrap();
    assert!(policy.circuit_breakers.is_empty() && policy.retries.is_empty());
    assert!(
        policy.upstreams.is_empty()
            && policy.fallbacks.is_empty()
            && policy.retry_options.is_empty()
    );
    assert!(policy.events.is_none() && policy.warnings.is_empty());
    // YAML's empty mapping arrives as null.
    let policy = parse(
        &json!({"resilience4j": {"circuitbreaker": {"instances": {"svc": null}}, "retry": null}}),
    )
    .unwrap();
    assert_eq!(policy.circuit_breakers["svc"], r4j_breaker());
}

// -- configs, base-config, configs.default ---------------------------------------------

#[test]
fn configs_default_is_the_implicit_base_and_base_config_overrides_it() {
    let policy = parse(&json!({"resilience4j": {"circuitbreaker": {
        "configs": {
            "default": {"sliding-window-size": 20, "failure-rate-threshold": 40, "minimum-number-of-calls": 10},
            "slow": {"wait-duration-in-open-state": "2m", "failure-rate-threshold": 30}
        },
        "instances": {
            "plain": {},
            "tuned": {"minimum-number-of-calls": 4},
            "based": {"base-config": "slow", "sliding-window-size": 50}
        }
    }}}))
    .unwrap();
    let breakers = &policy.circuit_breakers;
    let from_default = BreakerConfig {
        sliding_window_size: 20,
        failure_rate_threshold: 40.0,
        minimum_number_of_calls: 10,
        ..r4j_breaker()
    };
    assert_eq!(breakers["plain"], from_default);
    assert_eq!(
        breakers["tuned"],
        BreakerConfig {
            minimum_number_of_calls: 4,
            ..from_default.clone()
        }
    );
    // own key > base-config > configs.default > resilience4j default
    assert_eq!(
        breakers["based"],
        BreakerConfig {
            sliding_window_size: 50,
            wait_duration_in_open_state_ms: 120_000,
            failure_rate_threshold: 30.0,
            ..from_default
        }
    );
    // Configs are templates, not instances.
    assert_eq!(breakers.len(), 3);
}

#[test]
fn a_config_may_itself_have_a_base_config() {
    let retry = parse(&json!({"resilience4j": {"retry": {
        "configs": {
            "default": {"max-attempts": 5},
            "base": {"wait-duration": "100ms", "max-attempts": 4},
            "middle": {"base-config": "base", "retry-exceptions": ["503"]}
        },
        "instances": {"svc": {"base-config": "middle", "fail-after-max-attempts": true}}
    }}}))
    .unwrap()
    .retries["svc"]
        .clone();
    assert_eq!(
        retry,
        RetryConfig {
            max_attempts: 4,
            wait_duration_ms: 100,
            retry_on: vec![Status(503)],
            fail_after_max_attempts: true,
            ..r4j_retry()
        }
    );
}

#[test]
fn unknown_base_config_is_rejected_at_its_key() {
    assert_eq!(
        breaker_error(json!({"base-config": "missing"})),
        "resilience4j.circuitbreaker.instances.svc.base-config: unknown config 'missing'"
    );
    // Also in a config no instance uses.
    assert_eq!(
        rejected(json!({"resilience4j": {"retry": {"configs": {"a": {"baseConfig": "b"}}}}})),
        "resilience4j.retry.configs.a.baseConfig: unknown config 'b'"
    );
}

#[test]
fn base_config_cycles_are_rejected() {
    assert_eq!(
        rejected(json!({"resilience4j": {"circuitbreaker": {"configs": {
            "a": {"base-config": "b"}, "b": {"base-config": "a"}}}}})),
        "resilience4j.circuitbreaker.configs.b.base-config: base-config cycle: a -> b -> a"
    );
    assert_eq!(
        rejected(json!({"resilience4j": {"circuitbreaker": {"configs": {"default": {"base-config": "default"}}}}})),
        "resilience4j.circuitbreaker.configs.default.base-config: base-config cycle: default -> default"
    );
}

#[test]
fn configs_default_with_its_own_base_is_not_a_cycle() {
    let policy = parse(&json!({"resilience4j": {"circuitbreaker": {
        "configs": {"default": {"base-config": "shared"}, "shared": {"sliding-window-size": 7}},
        "instances": {"svc": {"base-config": "shared"}}
    }}}))
    .unwrap();
    assert_eq!(policy.circuit_breakers["svc"].sliding_window_size, 7);
}

#[test]
fn long_base_config_chains_are_bounded() {
    let mut configs = Map::new();
    for i in 0..40 {
        configs.insert(
            format!("c{i}"),
            json!({"base-config": format!("c{}", i + 1)}),
        );
    }
    configs.insert("c40".to_string(), json!({}));
    let message = rejected(json!({"resilience4j": {"retry": {"configs": configs}}}));
    assert!(
        message.ends_with("base-config chain longer than 32"),
        "{message}"
    );
}

// -- circuit breaker properties ----------------------------------------------------------

#[test]
fn every_circuit_breaker_property_maps_to_the_model() {
    let config = breaker(json!({
        "failure-rate-threshold": 25.5,
        "slow-call-rate-threshold": "80",
        "slow-call-duration-threshold": "PT2S",
        "sliding-window-type": "time_based",
        "sliding-window-size": 30,
        "minimum-number-of-calls": 10.0,
        "wait-duration-in-open-state": 1500,
        "automatic-transition-from-open-to-half-open-enabled": "true",
        "permitted-number-of-calls-in-half-open-state": 3,
        "max-wait-duration-in-half-open-state": "10s",
        "enable-exponential-backoff": true,
        "exponential-backoff-multiplier": 2,
        "exponential-max-wait-duration-in-open-state": "5m",
        "record-exceptions": ["5xx", "429", "timeout"],
        "ignore-exceptions": ["404"],
        "initial-state": "FORCED_OPEN"
    }));
    assert_eq!(
        config,
        BreakerConfig {
            failure_rate_threshold: 25.5,
            slow_call_rate_threshold: 80.0,
            slow_call_duration_threshold_ms: 2_000,
            sliding_window_type: SlidingWindowType::TimeBased,
            sliding_window_size: 30,
            minimum_number_of_calls: 10,
            wait_duration_in_open_state_ms: 1_500,
            automatic_transition_from_open_to_half_open_enabled: true,
            permitted_number_of_calls_in_half_open_state: 3,
            max_wait_duration_in_half_open_state_ms: 10_000,
            open_wait_multiplier: 2.0,
            open_wait_max_ms: Some(300_000),
            transition_to_state_after_wait_duration: crate::policy::StateAfterWait::Open,
            open_wait_randomization_factor: None,
            initial_state: InitialState::ForcedOpen,
            record: vec![StatusClass(5), Status(429), Timeout],
            ignore: vec![Status(404)],
        }
    );
}

#[test]
fn exponential_open_wait_defaults_to_resilience4j_multiplier_and_is_off_unless_enabled() {
    let on = breaker(json!({"enable-exponential-backoff": true}));
    assert_eq!((on.open_wait_multiplier, on.open_wait_max_ms), (1.5, None));
    let off = breaker(
        json!({"exponential-backoff-multiplier": 3, "exponential-max-wait-duration-in-open-state": "1m"}),
    );
    assert_eq!(
        (off.open_wait_multiplier, off.open_wait_max_ms),
        (1.0, None)
    );
}

#[test]
fn initial_states_and_window_types_bind_leniently() {
    for (text, state) in [
        ("CLOSED", InitialState::Closed),
        ("disabled", InitialState::Disabled),
        ("forced-open", InitialState::ForcedOpen),
        ("metricsOnly", InitialState::MetricsOnly),
    ] {
        assert_eq!(breaker(json!({"initial-state": text})).initial_state, state);
    }
    assert_eq!(
        breaker(json!({"sliding-window-type": "COUNT_BASED"})).sliding_window_type,
        SlidingWindowType::CountBased
    );
    assert_eq!(
        breaker(json!({"slidingWindowType": "TimeBased"})).sliding_window_type,
        SlidingWindowType::TimeBased
    );
}

#[test]
fn ring_buffer_sizes_removed_in_2_0_are_ignored_as_a_2x_service_ignores_them() {
    // resilience4j 2.0 removed them (RELEASENOTES, PR #1188); Spring binds them to nothing, so
    // a 2.x service runs the defaults. r4j-import --resilience4j-1x reads them as 1.x did.
    let policy = parse(&breaker_policy(json!({
        "ring-buffer-size-in-closed-state": 12, "ringBufferSizeInHalfOpenState": 4})))
    .unwrap();
    let config = &policy.circuit_breakers["svc"];
    assert_eq!(
        (
            config.sliding_window_size,
            config.minimum_number_of_calls,
            config.permitted_number_of_calls_in_half_open_state
        ),
        (100, 100, 10)
    );
    assert_eq!(policy.warnings.len(), 2, "{:?}", policy.warnings);
    assert!(policy.warnings[0].starts_with(&format!(
        "{BREAKER_PATH}.ring-buffer-size-in-closed-state: removed in resilience4j 2.0 (1.x: sliding-window-size and minimum-number-of-calls"
    )));
    assert!(policy.warnings[0].contains("stay 100, the defaults"));
    assert!(policy.warnings[1].starts_with(&format!(
        "{BREAKER_PATH}.ringBufferSizeInHalfOpenState: removed in resilience4j 2.0 (1.x: permitted-number-of-calls-in-half-open-state"
    )));
    // Written beside the current key, the current key counts (as in 2.x).
    let both = parse(&breaker_policy(
        json!({"ring-buffer-size-in-closed-state": 12, "sliding-window-size": 10}),
    ))
    .unwrap();
    assert_eq!(both.circuit_breakers["svc"].sliding_window_size, 10);
    // Still checked: a wrong value is a mistake either way.
    assert_eq!(
        breaker_error(json!({"ring-buffer-size-in-closed-state": "many"})),
        format!("{BREAKER_PATH}.ring-buffer-size-in-closed-state: expected a number, got \"many\"")
    );
}

#[test]
fn spring_keys_without_sidecar_meaning_are_accepted_with_one_warning_each() {
    let policy = parse(&breaker_policy(json!({
        "register-health-indicator": true,
        "event-consumer-buffer-size": 10,
        "record-failure-predicate": "com.example.RecordFailurePredicate",
        "writableStackTraceEnabled": false
    })))
    .unwrap();
    assert_eq!(policy.circuit_breakers["svc"], r4j_breaker());
    assert_eq!(
        policy.warnings,
        [
            format!(
                "{BREAKER_PATH}.event-consumer-buffer-size: has no meaning in the sidecar; ignored"
            ),
            format!(
                "{BREAKER_PATH}.record-failure-predicate: has no meaning in the sidecar; ignored"
            ),
            format!(
                "{BREAKER_PATH}.register-health-indicator: has no meaning in the sidecar; ignored"
            ),
            format!(
                "{BREAKER_PATH}.writableStackTraceEnabled: has no meaning in the sidecar; ignored"
            ),
        ]
    );
    // Checked loosely all the same.
    assert_eq!(
        breaker_error(json!({"register-health-indicator": "maybe"})),
        format!("{BREAKER_PATH}.register-health-indicator: expected a boolean, got \"maybe\"")
    );
}

#[test]
fn section_level_spring_keys_are_accepted_with_a_warning() {
    let policy = parse(&json!({"resilience4j": {
        "circuitbreaker": {"circuit-breaker-aspect-order": 1, "tags": {"team": "a"}, "metrics": {"enabled": false}},
        "retry": {"retryAspectOrder": 2, "backends": {"svc": {}}}
    }}))
    .unwrap();
    assert_eq!(policy.retries["svc"], r4j_retry());
    assert_eq!(
        policy.warnings,
        [
            "resilience4j.circuitbreaker.circuit-breaker-aspect-order: has no meaning in the sidecar; ignored",
            "resilience4j.circuitbreaker.metrics: has no meaning in the sidecar; ignored",
            "resilience4j.circuitbreaker.tags: has no meaning in the sidecar; ignored",
            "resilience4j.retry.backends: deprecated; use instances",
            "resilience4j.retry.retryAspectOrder: has no meaning in the sidecar; ignored",
        ]
    );
}

#[test]
fn out_of_range_circuit_breaker_values_are_rejected() {
    let cases = [
        (json!({"failure-rate-threshold": 0}), "failure-rate-threshold: must be in [1, 100], got 0"),
        (json!({"failure-rate-threshold": 120}), "failure-rate-threshold: must be in [1, 100], got 120"),
        (json!({"slow-call-rate-threshold": -1}), "slow-call-rate-threshold: must be in [1, 100], got -1"),
        // Spring rejects thresholds below 1 %: with 1e-320 the breaker opened on successes.
        (json!({"failure-rate-threshold": 1e-320}), "failure-rate-threshold: must be in [1, 100], got 1e-320"),
        (json!({"slow-call-rate-threshold": 0.5}), "slow-call-rate-threshold: must be in [1, 100], got 0.5"),
        (json!({"sliding-window-size": 0}), "sliding-window-size: must be at least 1, got 0"),
        (json!({"sliding-window-size": 10001}), "sliding-window-size: must be at most 10000, got 10001: the sidecar reads and rewrites the whole window in shared memory on every call, so larger windows add latency to every request (resilience4j has no upper bound)"),
        (json!({"sliding-window-size": 10.5}), "sliding-window-size: must be an integer, got 10.5"),
        (json!({"minimum-number-of-calls": 0}), "minimum-number-of-calls: must be at least 1, got 0"),
        (
            json!({"permitted-number-of-calls-in-half-open-state": 0}),
            "permitted-number-of-calls-in-half-open-state: must be at least 1, got 0",
        ),
        (json!({"wait-duration-in-open-state": "0s"}), "wait-duration-in-open-state: must be at least 1ms, got \"0s\""),
        (json!({"wait-duration-in-open-state": "-5s"}), "wait-duration-in-open-state: must not be negative, got \"-5s\""),
        (json!({"slow-call-duration-threshold": 0}), "slow-call-duration-threshold: must be at least 1ms, got 0"),
        (json!({"max-wait-duration-in-half-open-state": "PT-1S"}), "max-wait-duration-in-half-open-state: must not be negative, got \"PT-1S\""),
        (json!({"exponential-backoff-multiplier": 0}), "exponential-backoff-multiplier: must be greater than 0, got 0"),
        (json!({"randomized-wait-factor": 1}), "randomized-wait-factor: must be in [0, 1), got 1"),
        (
            json!({"sliding-window-type": "SLIDING"}),
            "sliding-window-type: must be one of COUNT_BASED, TIME_BASED, got \"SLIDING\"",
        ),
        (
            json!({"initial-state": "STARTING"}),
            "initial-state: must be one of CLOSED, DISABLED, FORCED_OPEN, METRICS_ONLY, OPEN, HALF_OPEN, got \"STARTING\"",
        ),
        (
            json!({"transition-to-state-after-wait-duration": "HALF_OPEN"}),
            "transition-to-state-after-wait-duration: must be one of OPEN, CLOSED, got \"HALF_OPEN\"",
        ),
    ];
    for (props, message) in cases {
        assert_eq!(breaker_error(props), format!("{BREAKER_PATH}.{message}"));
    }
}

#[test]
fn wrong_types_name_what_was_expected_and_what_was_given() {
    assert_eq!(
        breaker_error(json!({"failure-rate-threshold": "abc"})),
        format!("{BREAKER_PATH}.failure-rate-threshold: expected a number, got \"abc\"")
    );
    assert_eq!(
        breaker_error(json!({"automatic-transition-from-open-to-half-open-enabled": 1})),
        format!("{BREAKER_PATH}.automatic-transition-from-open-to-half-open-enabled: expected a boolean, got 1")
    );
    assert_eq!(
        breaker_error(json!([1, 2])),
        format!("{BREAKER_PATH}: expected an object, got [1,2]")
    );
    assert_eq!(
        rejected(json!({"resilience4j": {"circuitbreaker": {"instances": [1, 2]}}})),
        "resilience4j.circuitbreaker.instances: expected an object, got [1,2]"
    );
    assert_eq!(
        breaker_error(json!({"wait-duration-in-open-state": "soon"})),
        format!(
            "{BREAKER_PATH}.wait-duration-in-open-state: expected a duration such as \"30s\", \"500ms\", \"PT30S\" or a number of milliseconds, got \"soon\""
        )
    );
    assert_eq!(
        breaker_error(json!({"record-exceptions": 503})),
        format!("{BREAKER_PATH}.record-exceptions: expected a list, got 503")
    );
}

#[test]
fn resilience4j_2_4_breaker_keys_reach_the_model() {
    // transition-to-state-after-wait-duration (2.4), initial-state OPEN / HALF_OPEN (2.4), and
    // the randomized open wait (factor 0.5 unless given), read as Spring relaxes them.
    let config = breaker(json!({"transitionToStateAfterWaitDuration": "closed",
        "initial-state": "half-open", "enableRandomizedWait": true}));
    assert_eq!(
        config.transition_to_state_after_wait_duration,
        crate::policy::StateAfterWait::Closed
    );
    assert_eq!(config.initial_state, InitialState::HalfOpen);
    assert_eq!(config.open_wait_randomization_factor, Some(0.5));
    let config = breaker(
        json!({"initial-state": "OPEN", "enable-randomized-wait": "true",
        "randomized-wait-factor": 0.2}),
    );
    assert_eq!(config.initial_state, InitialState::Open);
    assert_eq!(config.open_wait_randomization_factor, Some(0.2));
    // A factor alone randomizes nothing, as in resilience4j.
    assert_eq!(
        breaker(json!({"randomized-wait-factor": 0.2})).open_wait_randomization_factor,
        None
    );
    let policy = parse(&breaker_policy(json!({"enable-randomized-wait": true}))).unwrap();
    assert_eq!(policy.warnings, Vec::<String>::new(), "no longer ignored");
}

#[test]
fn exponential_and_randomized_open_wait_cannot_be_combined() {
    assert_eq!(
        breaker_error(json!({"enable-exponential-backoff": true, "enable-randomized-wait": true})),
        format!("{BREAKER_PATH}: enable-exponential-backoff and enable-randomized-wait cannot both be true")
    );
}

// -- keys ------------------------------------------------------------------------------

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    assert_eq!(
        breaker_error(json!({"failure-rate-treshold": 50})),
        format!("{BREAKER_PATH}.failure-rate-treshold: unknown key (did you mean 'failure-rate-threshold'?)")
    );
    assert_eq!(
        breaker_error(json!({"colour": "blue"})),
        format!("{BREAKER_PATH}.colour: unknown key")
    );
    // A retry-only property is unknown to a circuit breaker.
    assert_eq!(
        breaker_error(json!({"max-attempts": 3})),
        format!("{BREAKER_PATH}.max-attempts: unknown key")
    );
    assert_eq!(
        rejected(json!({"resilience4j": {"circuitbreaker": {"instance": {}}}})),
        "resilience4j.circuitbreaker.instance: unknown key (did you mean 'instances'?)"
    );
}

#[test]
fn unknown_top_level_keys_are_rejected() {
    assert_eq!(rejected(json!({"bulkhead": {}})), "bulkhead: unknown key");
    assert_eq!(
        rejected(json!({"fallback": {}})),
        "fallback: unknown key (did you mean 'fallbacks'?)"
    );
}

#[test]
fn other_resilience4j_modules_are_not_supported() {
    assert_eq!(
        rejected(json!({"resilience4j": {"scheduled": {}}})),
        "resilience4j.scheduled: resilience4j scheduled is not supported by this filter (only circuitbreaker, retry, bulkhead, thread-pool-bulkhead, ratelimiter and timelimiter)"
    );
    for module in ["micrometer", "scheduled"] {
        let message = rejected(json!({"resilience4j": {module: {}}}));
        assert!(
            message.contains("is not supported by this filter"),
            "{message}"
        );
    }
}

#[test]
fn two_spellings_of_one_property_are_rejected() {
    assert_eq!(
        breaker_error(json!({"failure-rate-threshold": 50, "failureRateThreshold": 60})),
        format!("{BREAKER_PATH}.failureRateThreshold: same property as 'failure-rate-threshold'")
    );
}

#[test]
fn bad_instance_names_are_rejected() {
    assert_eq!(
        rejected(json!({"resilience4j": {"retry": {"instances": {"a/b": {}}}}})),
        "resilience4j.retry.instances.a/b: instance name may only contain ASCII letters, digits, '-', '_' and '.'"
    );
    assert_eq!(
        rejected(json!({"resilience4j": {"retry": {"instances": {"": {}}}}})),
        "resilience4j.retry.instances.: name must not be empty"
    );
    let long = "x".repeat(101);
    assert_eq!(
        rejected(json!({"resilience4j": {"retry": {"instances": {long.clone(): {}}}}})),
        format!(
            "resilience4j.retry.instances.{long}: instance name must be at most 100 characters"
        )
    );
}

#[test]
fn not_json_or_not_an_object_is_rejected() {
    assert!(parse_policy("{")
        .unwrap_err()
        .to_string()
        .starts_with("policy is not valid JSON: "));
    assert_eq!(rejected(json!([1])), "expected an object, got [1]");
}

// -- retry properties ------------------------------------------------------------------

#[test]
fn every_retry_property_maps_to_the_model() {
    let config = retry(json!({
        "max-attempts": "4",
        "wait-duration": "250ms",
        "enable-exponential-backoff": true,
        "exponential-backoff-multiplier": 2.5,
        "exponential-max-wait-duration": "2s",
        "enable-randomized-wait": "yes",
        "randomized-wait-factor": 0.25,
        "fail-after-max-attempts": true,
        "retry-exceptions": "5xx, connect-failure",
        "ignore-exceptions": [501]
    }));
    assert_eq!(
        config,
        RetryConfig {
            max_attempts: 4,
            wait_duration_ms: 250,
            enable_exponential_backoff: true,
            exponential_backoff_multiplier: 2.5,
            exponential_max_wait_duration_ms: Some(2_000),
            enable_randomized_wait: true,
            randomized_wait_factor: 0.25,
            fail_after_max_attempts: true,
            retry_on: vec![StatusClass(5), ConnectFailure],
            ignore: vec![Status(501)],
        }
    );
}

#[test]
fn max_retry_attempts_removed_in_2_0_is_ignored_as_a_2x_service_ignores_it() {
    let policy = parse(&retry_policy(json!({"max-retry-attempts": 5}))).unwrap();
    assert_eq!(policy.retries["svc"].max_attempts, 3);
    assert_eq!(policy.warnings.len(), 1, "{:?}", policy.warnings);
    assert!(
        policy.warnings[0].starts_with(&format!(
            "{RETRY_PATH}.max-retry-attempts: removed in resilience4j 2.0 (1.x: max-attempts"
        )) && policy.warnings[0].contains("max-attempts stays 3, the default"),
        "{}",
        policy.warnings[0]
    );
}

#[test]
fn out_of_range_retry_values_are_rejected() {
    let cases = [
        (json!({"max-attempts": 0}), "max-attempts: must be at least 1, got 0"),
        (json!({"max-attempts": 2.5}), "max-attempts: must be an integer, got 2.5"),
        (json!({"wait-duration": "-1ms"}), "wait-duration: must not be negative, got \"-1ms\""),
        (json!({"exponential-max-wait-duration": 0}), "exponential-max-wait-duration: must be at least 1ms, got 0"),
        (json!({"randomized-wait-factor": -0.1}), "randomized-wait-factor: must be in [0, 1), got -0.1"),
        (json!({"exponential-backoff-multiplier": -2}), "exponential-backoff-multiplier: must be greater than 0, got -2"),
        (json!({"retry-exceptions": ["5xx", "abc"]}), "retry-exceptions[1]: expected an HTTP status (100-599), \"4xx\", \"5xx\", \"connect-failure\", \"reset\", \"timeout\", \"grpc-error\", a gRPC status (\"grpc-unavailable\", \"grpc-14\") or a Java exception class, got \"abc\""),
    ];
    for (props, message) in cases {
        assert_eq!(retry_error(props), format!("{RETRY_PATH}.{message}"));
    }
    assert_eq!(
        retry_error(json!({"wait-duration": 0, "enable-exponential-backoff": true})),
        format!("{RETRY_PATH}: wait-duration must be at least 1ms when exponential backoff or randomized wait is enabled")
    );
    assert_eq!(retry(json!({"wait-duration": 0})).wait_duration_ms, 0);
}

// -- outcome lists ---------------------------------------------------------------------

#[test]
fn outcome_tokens_map_to_matchers() {
    let config = breaker(json!({"record-exceptions": [
        "500", 503, "4XX", "5xx", "connect-failure", "connectFailure", "RESET", "timeout", "100", "599"]}));
    assert_eq!(
        config.record,
        [
            Status(500),
            Status(503),
            StatusClass(4),
            StatusClass(5),
            ConnectFailure,
            Reset,
            Timeout,
            Status(100),
            Status(599)
        ]
    );
}

#[test]
fn grpc_tokens_and_exceptions_map_to_grpc_statuses() {
    let record = |tokens: Value| breaker(json!({"record-exceptions": tokens})).record;
    assert_eq!(
        record(json!([
            "grpc-error",
            "grpc-unavailable",
            "GRPC_DEADLINE_EXCEEDED",
            "grpc-14",
            "grpc-resource-exhausted",
            "grpc-16"
        ])),
        [
            GrpcError,
            GrpcStatus(14),
            GrpcStatus(4),
            GrpcStatus(8),
            GrpcStatus(16)
        ]
    );
    let failure = [
        GrpcError,
        StatusClass(4),
        StatusClass(5),
        ConnectFailure,
        Reset,
        Timeout,
    ];
    assert_eq!(record(json!(["io.grpc.StatusRuntimeException"])), failure);
    assert_eq!(record(json!(["io.grpc.StatusException"])), failure);
    for bad in ["grpc-0", "grpc-ok", "grpc-17", "grpc-teapot"] {
        assert!(
            breaker_error(json!({"record-exceptions": [bad]})).contains("expected an HTTP status"),
            "{bad}"
        );
    }
}

#[test]
fn well_known_java_exceptions_map_to_their_http_meaning() {
    let record = |class: &str| breaker(json!({"record-exceptions": [class]})).record;
    assert_eq!(
        record("java.io.IOException"),
        [ConnectFailure, Reset, Timeout]
    );
    assert_eq!(record("java.net.ConnectException"), [ConnectFailure, Reset]);
    assert_eq!(record("java.net.SocketException"), [ConnectFailure, Reset]);
    assert_eq!(record("java.util.concurrent.TimeoutException"), [Timeout]);
    assert_eq!(record("java.net.SocketTimeoutException"), [Timeout]);
    assert_eq!(
        record("org.springframework.web.client.HttpServerErrorException"),
        [StatusClass(5)]
    );
    assert_eq!(
        record("org.springframework.web.client.HttpClientErrorException"),
        [StatusClass(4)]
    );
    for broad in [
        "java.lang.Exception",
        "java.lang.RuntimeException",
        "java.lang.Throwable",
    ] {
        assert_eq!(
            record(broad),
            [StatusClass(5), ConnectFailure, Reset, Timeout, GrpcError]
        );
    }
    // Duplicates collapse.
    assert_eq!(
        breaker(json!({"record-exceptions": ["java.io.IOException", "java.net.ConnectException", "reset"]})).record,
        [ConnectFailure, Reset, Timeout]
    );
}

#[test]
fn other_java_exceptions_are_accepted_with_a_warning_and_match_nothing() {
    let policy = parse(&breaker_policy(json!({
        "record-exceptions": ["com.example.BusinessException", "503"],
        "ignore-exceptions": ["com.example.Other$Inner"]})))
    .unwrap();
    assert_eq!(policy.circuit_breakers["svc"].record, [Status(503)]);
    assert_eq!(policy.circuit_breakers["svc"].ignore, []);
    assert_eq!(
        policy.warnings,
        [
            format!("{BREAKER_PATH}.ignore-exceptions[0]: com.example.Other$Inner {UNKNOWN_CLASS}"),
            format!("{BREAKER_PATH}.ignore-exceptions: no entry has an HTTP meaning, so nothing is ignored; list the HTTP outcomes meant instead (e.g. \"404\", \"5xx\", \"timeout\")"),
            format!("{BREAKER_PATH}.record-exceptions[0]: com.example.BusinessException {UNKNOWN_CLASS}"),
        ]
    );
}

const UNKNOWN_CLASS: &str = "is no HTTP client exception the sidecar knows (it sees HTTP answers, not the application's exceptions), so it matches nothing; if it stands for HTTP statuses (an error decoder or handler throws it for them), list those instead, e.g. \"404\" or \"4xx\"";

#[test]
fn spring_client_exceptions_map_to_their_http_meaning() {
    let policy = parse(&breaker_policy(json!({
        "record-exceptions": ["feign.FeignException$ServiceUnavailable",
            "org.springframework.web.client.ResourceAccessException",
            "org.springframework.web.reactive.function.client.WebClientResponseException.BadGateway"],
        "ignore-exceptions": ["org.springframework.web.client.HttpClientErrorException$NotFound",
            "feign.FeignException$FeignClientException"]})))
    .unwrap();
    let cb = &policy.circuit_breakers["svc"];
    assert_eq!(
        cb.record,
        [Status(503), ConnectFailure, Reset, Timeout, Status(502)]
    );
    assert_eq!(cb.ignore, [Status(404), StatusClass(4)]);
    assert_eq!(policy.warnings, Vec::<String>::new());
}

#[test]
fn call_not_permitted_in_a_retry_ignore_list_is_said_to_be_what_the_sidecar_does_anyway() {
    let policy = parse(&retry_policy(json!({"ignore-exceptions": [
        "io.github.resilience4j.circuitbreaker.CallNotPermittedException"]})))
    .unwrap();
    assert_eq!(policy.retries["svc"].ignore, []);
    assert_eq!(policy.warnings.len(), 1, "{:?}", policy.warnings);
    assert!(
        policy.warnings[0].starts_with(&format!("{RETRY_PATH}.ignore-exceptions[0]: io.github.resilience4j.circuitbreaker.CallNotPermittedException is thrown by resilience4j's circuit breaker"))
            && policy.warnings[0].contains("the sidecar never retries into an open breaker anyway"),
        "{}",
        policy.warnings[0]
    );
}

#[test]
fn refusals_in_retry_lists_mean_refused_replays_and_nothing_in_a_breakers() {
    let policy = parse(&retry_policy(json!({
        "retry-exceptions": ["5xx", "io.github.resilience4j.bulkhead.BulkheadFullException"],
        "ignore-exceptions": "io.github.resilience4j.ratelimiter.RequestNotPermitted"})))
    .unwrap();
    let retry = &policy.retries["svc"];
    assert_eq!(retry.retry_on, [StatusClass(5), BulkheadFull]);
    assert_eq!(retry.ignore, [RateLimited]);
    assert_eq!(policy.warnings, Vec::<String>::new());
    // The tokens, as the HTTP vocabulary spells them.
    let policy = parse(&retry_policy(
        json!({"retry-exceptions": ["rate-limited", "bulkhead-full"]}),
    ))
    .unwrap();
    assert_eq!(policy.retries["svc"].retry_on, [RateLimited, BulkheadFull]);
    // A breaker never records a refusal: said, and dropped.
    let policy = parse(&breaker_policy(json!({"record-exceptions": [
        "io.github.resilience4j.bulkhead.BulkheadFullException", "5xx"]})))
    .unwrap();
    assert_eq!(policy.circuit_breakers["svc"].record, [StatusClass(5)]);
    assert_eq!(policy.warnings.len(), 1, "{:?}", policy.warnings);
    assert!(
        policy.warnings[0].contains("the sidecar's breaker never records a refusal"),
        "{}",
        policy.warnings[0]
    );
}

#[test]
fn bad_outcome_tokens_are_rejected_with_their_index() {
    let expected = |index: usize, got: &str| {
        format!(
            "{BREAKER_PATH}.record-exceptions[{index}]: expected an HTTP status (100-599), \"4xx\", \"5xx\", \"connect-failure\", \"reset\", \"timeout\", \"grpc-error\", a gRPC status (\"grpc-unavailable\", \"grpc-14\") or a Java exception class, got {got}"
        )
    };
    assert_eq!(
        breaker_error(json!({"record-exceptions": ["500", "503", "abc"]})),
        expected(2, "\"abc\"")
    );
    assert_eq!(
        breaker_error(json!({"record-exceptions": ["99"]})),
        expected(0, "\"99\"")
    );
    assert_eq!(
        breaker_error(json!({"record-exceptions": [600]})),
        expected(0, "600")
    );
    assert_eq!(
        breaker_error(json!({"record-exceptions": ["3xx"]})),
        expected(0, "\"3xx\"")
    );
    assert_eq!(
        breaker_error(json!({"record-exceptions": [null]})),
        expected(0, "null")
    );
    assert_eq!(
        breaker_error(json!({"record-exceptions": ["java..Bad"]})),
        expected(0, "\"java..Bad\"")
    );
}

// -- durations through properties ----------------------------------------------------

#[test]
fn every_duration_form_is_accepted_where_a_duration_is_expected() {
    let wait = |value: Value| {
        breaker(json!({"wait-duration-in-open-state": value})).wait_duration_in_open_state_ms
    };
    assert_eq!(wait(json!("30s")), 30_000);
    assert_eq!(wait(json!("500ms")), 500);
    assert_eq!(wait(json!("2m")), 120_000);
    assert_eq!(wait(json!("1h")), 3_600_000);
    assert_eq!(wait(json!("1d")), 86_400_000);
    assert_eq!(wait(json!("1500us")), 2);
    assert_eq!(wait(json!("10ns")), 1);
    assert_eq!(wait(json!("PT30S")), 30_000);
    assert_eq!(wait(json!("PT0.5S")), 500);
    assert_eq!(wait(json!("PT1M30S")), 90_000);
    assert_eq!(wait(json!("P1D")), 86_400_000);
    assert_eq!(wait(json!(750)), 750);
    assert_eq!(wait(json!("750")), 750);
}

// -- upstreams -------------------------------------------------------------------------

#[test]
fn upstreams_map_clusters_to_existing_instances() {
    let mut policy: Value = crate::json::from_str(SEED).unwrap();
    policy["upstreams"] = json!({"outbound|8080||users.default.svc.cluster.local": "user-service", "orders_v2": "order-service"});
    let policy = parse(&policy).unwrap();
    assert_eq!(policy.upstreams["orders_v2"], "order-service");
    assert_eq!(
        policy.instance_for_cluster("outbound|8080||users.default.svc.cluster.local"),
        Some("user-service")
    );
}

#[test]
fn an_upstreams_service_name_guards_every_istio_cluster_of_that_service() {
    // A camelCase instance can never be named like a Kubernetes service: `upstreams` maps
    // the service to it, across ports, subsets and namespaces (what r4j-import's --upstream
    // writes); a host key names one namespace.
    let policy = json!({"resilience4j": {"circuitbreaker": {"instances": {"backendA": {}, "backendB": {}}}},
        "upstreams": {"backend-a": "backendA", "backend-b.shop.svc.cluster.local": "backendB"}});
    let policy = parse(&policy).unwrap();
    for cluster in [
        "outbound|8080||backend-a.shop.svc.cluster.local",
        "outbound|9090|v2|backend-a.other.svc.cluster.local",
        "backend-a",
    ] {
        assert_eq!(
            policy.instance_for_cluster(cluster),
            Some("backendA"),
            "{cluster}"
        );
    }
    assert_eq!(
        policy.instance_for_cluster("outbound|80||backend-b.shop.svc.cluster.local"),
        Some("backendB")
    );
    assert_eq!(
        policy.instance_for_cluster("outbound|80||backend-b.test.svc.cluster.local"),
        None
    );
    // The instance's own name still guards a cluster of that exact name.
    assert_eq!(policy.instance_for_cluster("backendA"), Some("backendA"));
    assert_eq!(
        policy.instance_for_cluster("outbound|8080||backenda.shop.svc.cluster.local"),
        None
    );
}

#[test]
fn upstreams_naming_unknown_instances_are_rejected() {
    let mut policy: Value = crate::json::from_str(SEED).unwrap();
    policy["upstreams"] = json!({"payments": "payment-service"});
    assert_eq!(
        rejected(policy.clone()),
        "upstreams.payments: unknown instance 'payment-service'"
    );
    policy["upstreams"] = json!({"payments": 1});
    assert_eq!(
        rejected(policy),
        "upstreams.payments: expected a string, got 1"
    );
}

// -- fallbacks -------------------------------------------------------------------------

#[test]
fn fallbacks_parse_status_headers_and_body() {
    let mut policy: Value = crate::json::from_str(SEED).unwrap();
    policy["fallbacks"] = json!({
        "user-service": {"status": 200, "headers": {"Content-Type": "application/json", "x-fallback": 1},
                         "body": {"users": [], "degraded": true}},
        "order-service": {"body": "try later"}
    });
    let policy = parse(&policy).unwrap();
    assert_eq!(
        policy.fallbacks["user-service"],
        Fallback {
            status: 200,
            headers: vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("x-fallback".to_string(), "1".to_string()),
            ],
            body: Some(r#"{"degraded":true,"users":[]}"#.to_string()),
            on: SortedMap::new(),
        }
    );
    assert_eq!(
        policy.fallbacks["order-service"],
        Fallback {
            status: 503,
            headers: vec![],
            body: Some("try later".to_string()),
            on: SortedMap::new(),
        }
    );
}

#[test]
fn a_fallback_per_refusal_kind() {
    let mut policy: Value = crate::json::from_str(SEED).unwrap();
    policy["resilience4j"]["bulkhead"] = json!({"instances": {"payment-service": {}}});
    policy["fallbacks"] = json!({
        "user-service": {"status": 200, "body": "cached", "on": {
            "rate-limited": {"status": 429, "body": "slow down"},
            "circuitOpen": {"status": 503}
        }},
        "payment-service": {"body": "busy"}
    });
    let policy = accepted(policy);
    let user = &policy.fallbacks["user-service"];
    assert_eq!(user.for_kind("rate-limited").status, 429);
    assert_eq!(user.for_kind("circuit-open").status, 503);
    assert_eq!(
        user.for_kind("bulkhead-full").body.as_deref(),
        Some("cached")
    );
    assert_eq!(
        policy.fallbacks["payment-service"].body.as_deref(),
        Some("busy")
    );

    let mut bad: Value = crate::json::from_str(SEED).unwrap();
    bad["fallbacks"] = json!({"user-service": {"on": {"overloaded": {}}}});
    assert_eq!(
        rejected(bad),
        "fallbacks.user-service.on.overloaded: unknown key (known: circuit-open, bulkhead-full, rate-limited, timeout)"
    );
}

#[test]
fn bad_fallbacks_are_rejected() {
    let with = |fallbacks: Value| {
        let mut policy: Value = crate::json::from_str(SEED).unwrap();
        policy["fallbacks"] = fallbacks;
        rejected(policy)
    };
    assert_eq!(
        with(json!({"payment-service": {}})),
        "fallbacks.payment-service: unknown circuit breaker instance 'payment-service'"
    );
    assert_eq!(
        with(json!({"user-service": {"status": 700}})),
        "fallbacks.user-service.status: must be in [100, 599], got 700"
    );
    assert_eq!(
        with(json!({"user-service": {"code": 200}})),
        "fallbacks.user-service.code: unknown key"
    );
    assert_eq!(
        with(json!({"user-service": {"headers": {":status": "200"}}})),
        "fallbacks.user-service.headers.:status: pseudo-headers cannot be set"
    );
    assert_eq!(
        with(json!({"user-service": {"headers": {"Content-Length": "5"}}})),
        "fallbacks.user-service.headers.Content-Length: is set by Envoy and cannot be set"
    );
    assert_eq!(
        with(json!({"user-service": {"headers": {"x-a": "a\r\nb"}}})),
        "fallbacks.user-service.headers.x-a: header value must not contain CR, LF or NUL"
    );
    assert_eq!(
        with(json!({"user-service": {"headers": {"bad name": "x"}}})),
        "fallbacks.user-service.headers.bad name: is not a valid header name"
    );
    assert_eq!(
        with(json!({"user-service": "oops"})),
        "fallbacks.user-service: expected an object, got \"oops\""
    );
}

// -- retry options ---------------------------------------------------------------------

#[test]
fn retry_options_default_for_every_retry_instance_and_can_be_overridden() {
    let mut policy: Value = crate::json::from_str(SEED).unwrap();
    policy["retry-options"] = json!({"order-service": {
        "retry-non-idempotent": true, "max-body-bytes": 1024, "per-try-timeout": "2s",
        "overall-timeout": "10s", "budget": {"retry-ratio": 0.5, "min-retries-per-second": 1, "window": "30s"}}});
    let policy = parse(&policy).unwrap();
    assert_eq!(
        policy.retry_options["user-service"],
        RetryOptions::default()
    );
    assert_eq!(
        policy.retry_options["order-service"],
        RetryOptions {
            retry_non_idempotent: true,
            max_body_bytes: 1024,
            per_try_timeout_ms: 2_000,
            overall_timeout_ms: Some(10_000),
            budget: BudgetConfig {
                retry_ratio: 0.5,
                min_retries_per_second: 1,
                window_s: 30
            },
        }
    );
}

#[test]
fn bad_retry_options_are_rejected() {
    let with = |options: Value| {
        let mut policy: Value = crate::json::from_str(SEED).unwrap();
        policy["retry-options"] = options;
        rejected(policy)
    };
    assert_eq!(
        with(json!({"nope": {}})),
        "retry-options.nope: unknown retry instance 'nope'"
    );
    assert_eq!(
        with(json!({"user-service": {"budget": {"window": "90s"}}})),
        "retry-options.user-service.budget.window: must be a whole number of seconds from 1s to 60s, got \"90s\""
    );
    assert_eq!(
        with(json!({"user-service": {"per-try-timeout": 0}})),
        "retry-options.user-service.per-try-timeout: must be at least 1ms, got 0"
    );
}

// -- events ----------------------------------------------------------------------------

fn events_ok(v: Value) -> EventsConfig {
    parse_events(&v, "events").unwrap()
}

fn events_error(v: Value) -> String {
    parse_events(&v, "events").unwrap_err().to_string()
}

#[test]
fn minimal_section_takes_the_documented_defaults() {
    let c = events_ok(json!({"bridges": ["kafka-bridge"]}));
    assert_eq!(c.bridges, vec!["kafka-bridge"]);
    assert_eq!(c.source_template, "{workload}.{namespace}");
    assert_eq!(c.spoofed_source, SpoofedSource::Correct);
    assert_eq!(c.max_body_bytes, 512 << 10);
    assert_eq!(c.default_mode, Mode::Envelope);
    let t = c.topic("order.created");
    assert_eq!(
        t,
        TopicConfig {
            mode: Mode::Envelope,
            event_type: None,
            partition_key: None
        }
    );
    assert!(c.is_bridge("kafka-bridge"));
    assert!(!c.is_bridge("user-service"));
}

#[test]
fn full_section_with_per_topic_settings() {
    let c = events_ok(json!({
        "bridges": ["kafka-bridge", "outbound|8080||kafka-bridge.kafka.svc.cluster.local"],
        "source": "{workload}",
        "spoofedSource": "reject",
        "max-body-bytes": 4096,
        "mode": "cloudevents-structured",
        "topics": {
            "order.created": {"type": "com.example.order.created", "partition-key": "/orderId"},
            "payment.completed": {"mode": "cloudevents-binary"}
        }
    }));
    assert_eq!(c.spoofed_source, SpoofedSource::Reject);
    assert_eq!(c.max_body_bytes, 4096);
    let oc = c.topic("order.created");
    assert_eq!(
        oc.mode,
        Mode::CloudEventsStructured,
        "topics inherit the section's mode"
    );
    assert_eq!(oc.event_type.as_deref(), Some("com.example.order.created"));
    assert_eq!(oc.partition_key.as_deref(), Some("/orderId"));
    assert_eq!(c.topic("payment.completed").mode, Mode::CloudEventsBinary);
    assert_eq!(c.topic("order.updated").mode, Mode::CloudEventsStructured);
}

#[test]
fn errors_name_the_full_path() {
    assert_eq!(
        events_error(json!({})),
        "events.bridges: is required: the Envoy cluster name(s) of the Kafka HTTP bridge"
    );
    assert_eq!(
        events_error(json!({"bridges": []})),
        "events.bridges: must name at least one Envoy cluster"
    );
    assert_eq!(
        events_error(json!({"bridges": "b"})),
        "events.bridges: must be an array of Envoy cluster names, got a string"
    );
    assert_eq!(
        events_error(json!({"bridges": ["b", 3]})),
        "events.bridges[1]: must be a string, got a number"
    );
    assert_eq!(
        events_error(json!({"bridges": ["b"], "topics": {"order.created": {"mode": "avro"}}})),
        "events.topics.order.created.mode: must be one of envelope, cloudevents-structured, cloudevents-binary, got \"avro\""
    );
    assert_eq!(
        events_error(json!({"bridges": ["b"], "topics": {"order.created": {"modes": "envelope"}}})),
        "events.topics.order.created.modes: unknown key (known: mode, type, partition-key)"
    );
    assert_eq!(
        events_error(json!({"bridges": ["b"], "topics": {"order.created": {"partition-key": "orderId"}}})),
        "events.topics.order.created.partition-key: must be a JSON pointer into the data such as \"/orderId\", got \"orderId\""
    );
    assert_eq!(
        events_error(json!({"bridges": ["b"], "topics": {"bad topic": {}}})),
        "events.topics.bad topic: not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"
    );
    assert_eq!(
        events_error(json!({"bridges": ["b"], "max-body-bytes": 0})),
        "events.max-body-bytes: must be an integer in [1, 67108864], got 0"
    );
    assert_eq!(
        events_error(json!({"bridges": ["b"], "max-body-bytes": "1MB"})),
        "events.max-body-bytes: must be an integer in [1, 67108864], got \"1MB\""
    );
    assert_eq!(
        events_error(json!({"bridges": ["b"], "spoofed-source": "ignore"})),
        "events.spoofed-source: must be correct or reject, got \"ignore\""
    );
    assert_eq!(
        events_error(json!({"bridges": ["b"], "source": "{pod}"})),
        "events.source: unknown placeholder {pod} (known: {workload}, {namespace}, {node})"
    );
    assert_eq!(
        events_error(json!({"bridges": ["b"], "source": "{workload"})),
        "events.source: unbalanced '{'"
    );
    assert!(events_error(json!({"bridges": ["b"], "colour": 1}))
        .starts_with("events.colour: unknown key"));
    assert_eq!(
        events_error(json!([])),
        "events: must be an object, got an array"
    );
}

#[test]
fn events_keys_bind_like_every_other_section() {
    // Relaxed keys (UPPER_CASE too), scalars as strings, relaxed enum values.
    let c = events_ok(json!({
        "BRIDGES": ["b"],
        "MAX_BODY_BYTES": "4096",
        "spoofed_source": "reject",
        "Topics": {"order.created": {"PARTITION_KEY": "/id", "Mode": "CLOUDEVENTS_BINARY"}}
    }));
    assert_eq!(c.max_body_bytes, 4096);
    assert_eq!(c.spoofed_source, SpoofedSource::Reject);
    let topic = c.topic("order.created");
    assert_eq!(topic.mode, Mode::CloudEventsBinary);
    assert_eq!(topic.partition_key.as_deref(), Some("/id"));
    assert_eq!(
        events_error(json!({"bridges": ["b"], "max-body-bytes": 1, "maxBodyBytes": 2})),
        "events.maxBodyBytes: same property as 'max-body-bytes'"
    );
    assert_eq!(
        events_error(json!({"bridges": ["b"], "max-body-bytes": 4096.5})),
        "events.max-body-bytes: must be an integer in [1, 67108864], got 4096.5"
    );
}

#[test]
fn events_null_reads_as_empty() {
    assert_eq!(
        events_error(Value::Null),
        "events.bridges: is required: the Envoy cluster name(s) of the Kafka HTTP bridge"
    );
    assert_eq!(
        events_error(json!({"bridges": null})),
        "events.bridges: must name at least one Envoy cluster"
    );
    let c = events_ok(json!({"bridges": ["b"], "topics": {"order.created": null}}));
    assert_eq!(c.topics["order.created"], c.topic("order.updated"));
    assert!(events_ok(json!({"bridges": ["b"], "topics": null}))
        .topics
        .is_empty());
}

#[test]
fn events_errors_in_a_policy_carry_the_path_as_written() {
    assert_eq!(
        rejected(json!({"Events": {"bridges": ["b"], "topics": {"order.created": {"mode": "avro"}}}})),
        "Events.topics.order.created.mode: must be one of envelope, cloudevents-structured, cloudevents-binary, got \"avro\""
    );
    let policy = parse(&json!({"events": {"bridges": ["b"]}})).unwrap();
    assert_eq!(
        policy.events.map(|e| e.bridges),
        Some(vec!["b".to_string()])
    );
}

// -- limits and declarations -------------------------------------------------------------

#[test]
fn at_most_max_instances_circuit_breaker_and_retry_instances_together() {
    let instances = |n: usize| -> Map<String, Value> {
        (0..n).map(|i| (format!("svc-{i}"), json!({}))).collect()
    };
    let policy = parse(&json!({"resilience4j": {
        "circuitbreaker": {"instances": instances(200)},
        "retry": {"instances": instances(56)}}}))
    .unwrap();
    assert_eq!(
        policy.circuit_breakers.len() + policy.retries.len(),
        MAX_INSTANCES
    );
    assert_eq!(
        rejected(json!({"RESILIENCE4J": {
            "circuitbreaker": {"instances": instances(200)},
            "retry": {"instances": instances(57)}}})),
        "RESILIENCE4J: at most 256 circuit breaker and retry instances, got 257"
    );
}

#[test]
fn a_null_outcome_list_is_empty() {
    let policy = parse(&breaker_policy(json!({"record-exceptions": null}))).unwrap();
    assert_eq!(policy.circuit_breakers["svc"], r4j_breaker());
    assert!(policy.warnings.is_empty());
}

#[test]
fn declared_property_keys_are_kebab_case_and_distinct() {
    use super::properties::Properties;
    use super::resilience4j::{BreakerProperties, RetryProperties};
    for keys in [BreakerProperties::KEYS, RetryProperties::KEYS] {
        let mut seen = std::collections::BTreeSet::new();
        for key in keys {
            assert!(
                key.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{}",
                key.name
            );
            assert!(seen.insert(canonical_key(key.name)), "{} twice", key.name);
            if let Some(name) = key.deprecated_for {
                assert!(keys.iter().any(|k| k.name == name), "{name}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// bulkhead, thread-pool-bulkhead, ratelimiter

#[test]
fn admission_modules_take_resilience4j_defaults() {
    let policy = accepted(json!({"resilience4j": {
        "bulkhead": {"instances": {"a": {}}},
        "threadPoolBulkhead": {"instances": {"a": {}}},
        "ratelimiter": {"instances": {"a": {}}},
    }}));
    assert_eq!(policy.bulkheads.get("a"), Some(&BulkheadConfig::default()));
    assert_eq!(
        policy
            .bulkheads
            .get("a")
            .map(|c| (c.max_concurrent_calls, c.max_wait_duration_ms)),
        Some((25, 0))
    );
    assert_eq!(
        policy.thread_pool_bulkheads.get("a"),
        Some(&ThreadPoolBulkheadConfig {
            max_thread_pool_size: 2,
            queue_capacity: 100
        })
    );
    assert_eq!(
        policy.rate_limiters.get("a"),
        Some(&RateLimiterConfig {
            limit_for_period: 50,
            limit_refresh_period_ms: 1,
            timeout_duration_ms: 5000
        })
    );
    // An admission-only instance guards the upstream of its name.
    assert_eq!(policy.instance_for_cluster("a"), Some("a"));
    assert_eq!(
        policy.instance_for_cluster("outbound|80||a.ns.svc.cluster.local"),
        Some("a")
    );
}

#[test]
fn admission_modules_resolve_configs_base_config_and_default_relaxed() {
    let policy = accepted(json!({"resilience4j": {
        "bulkhead": {
            "configs": {
                "default": {"maxConcurrentCalls": 10, "max-wait-duration": "20ms"},
                "slow": {"MAX_WAIT_DURATION": "1s"}
            },
            "instances": {
                "a": {"base-config": "slow"},
                "b": {"max-concurrent-calls": "3"}
            }
        },
        "ratelimiter": {
            "configs": {"default": {"limitForPeriod": 5, "limitRefreshPeriod": "1s"}},
            "instances": {"a": {"timeout-duration": 0}, "b": {"limit-refresh-period": "500ns"}}
        },
        "thread-pool-bulkhead": {"instances": {"a": {
            "maxThreadPoolSize": 4, "coreThreadPoolSize": 2, "queueCapacity": 0,
            "keepAliveDuration": "20ms"
        }}}
    }}));
    assert_eq!(
        policy.bulkheads.get("a"),
        Some(&BulkheadConfig {
            max_concurrent_calls: 10,
            max_wait_duration_ms: 1000
        })
    );
    assert_eq!(
        policy.bulkheads.get("b"),
        Some(&BulkheadConfig {
            max_concurrent_calls: 3,
            max_wait_duration_ms: 20
        })
    );
    assert_eq!(
        policy.rate_limiters.get("a"),
        Some(&RateLimiterConfig {
            limit_for_period: 5,
            limit_refresh_period_ms: 1000,
            timeout_duration_ms: 0
        })
    );
    assert_eq!(
        policy
            .rate_limiters
            .get("b")
            .map(|c| c.limit_refresh_period_ms),
        Some(1)
    );
    assert_eq!(
        policy.thread_pool_bulkheads.get("a"),
        Some(&ThreadPoolBulkheadConfig {
            max_thread_pool_size: 4,
            queue_capacity: 0
        })
    );
    for ignored in ["coreThreadPoolSize", "keepAliveDuration"] {
        assert!(
            policy
                .warnings
                .iter()
                .any(|w| w.contains(ignored) && w.contains("no meaning in the sidecar")),
            "{:?}",
            policy.warnings
        );
    }
}

#[test]
fn admission_module_errors_name_the_path() {
    assert_eq!(
        rejected(
            json!({"resilience4j": {"bulkhead": {"instances": {"a": {"maxConcurrentCalls": 0}}}}})
        ),
        "resilience4j.bulkhead.instances.a.maxConcurrentCalls: must be in [1, 1000000], got 0"
    );
    assert_eq!(
        rejected(
            json!({"resilience4j": {"ratelimiter": {"instances": {"a": {"timeout-duration": "-1s"}}}}})
        ),
        "resilience4j.ratelimiter.instances.a.timeout-duration: must not be negative, got \"-1s\""
    );
    assert_eq!(
        rejected(json!({"resilience4j": {"thread-pool-bulkhead": {"instances": {"a": {
            "max-thread-pool-size": 2, "core-thread-pool-size": 3
        }}}}})),
        "resilience4j.thread-pool-bulkhead.instances.a: max-thread-pool-size (2) must be at least core-thread-pool-size (3)"
    );
    assert_eq!(
        rejected(
            json!({"resilience4j": {"ratelimiter": {"instances": {"a": {"base-config": "nope"}}}}})
        ),
        "resilience4j.ratelimiter.instances.a.base-config: unknown config 'nope'"
    );
}
