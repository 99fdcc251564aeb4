//! Property tests over generated input: the JSON module, the policy parser, the events codec
//! (produce bodies, record headers, request headers) and the shared-state decoders never panic,
//! and their errors say where. A panic in the filter kills its worker's VM, so "never panics on any input" is the
//! property that matters most.
//!
//! The generator is a small deterministic xorshift (no dependency). `make test` runs
//! [`DEFAULT_ITERATIONS`] inputs per property; `make fuzz` runs many more (the
//! `FUZZ_ITERATIONS` variable; `FUZZ_SEED` picks another sequence). A failure names the seed and
//! the case number, and the input, so it can be replayed.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::json;
use crate::json::{Map, Value};

use crate::breaker::CircuitBreaker;
use crate::events::{self, EventsConfig, StampInput};
use crate::outcome::Outcome;
use crate::policy::{BreakerConfig, Policy, SlidingWindowType};
use crate::retry::budget::RetryBudget;

/// Inputs per property in `make test`.
const DEFAULT_ITERATIONS: u64 = 1500;

fn iterations() -> u64 {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ITERATIONS)
}

fn base_seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15)
}

/// xorshift64*: deterministic, good enough to spread inputs.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Runs `property` on `iterations()` generated cases; a panic is reported with its case.
fn check(name: &str, mut property: impl FnMut(&mut Rng) -> Result<(), String>) {
    let n = iterations();
    let seed = base_seed()
        ^ name
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
    for case in 0..n {
        let mut rng = Rng::new(seed.wrapping_add(case.wrapping_mul(0x1000_0000_01b3)));
        if let Err(message) = property(&mut rng) {
            panic!("{name}: case {case} (FUZZ_SEED={}): {message}", base_seed());
        }
    }
    if n > DEFAULT_ITERATIONS {
        // Read by `make fuzz` for its report.
        println!("fuzz {name}: {n} inputs, no failure");
    }
}

// ---------------------------------------------------------------------------------------------
// Generated JSON, biased towards what the readers look for.

#[rustfmt::skip]
const POLICY_KEYS: &[&str] = &[
    "resilience4j", "circuitbreaker", "circuitBreaker", "retry", "instances", "configs",
    "default", "base-config", "baseConfig", "upstreams", "fallbacks", "retry-options", "events",
    "failure-rate-threshold", "FAILURE_RATE_THRESHOLD", "slow-call-rate-threshold",
    "slow-call-duration-threshold", "sliding-window-size", "sliding-window-type",
    "minimum-number-of-calls", "wait-duration-in-open-state", "permitted-number-of-calls-in-half-open-state",
    "max-wait-duration-in-half-open-state", "automatic-transition-from-open-to-half-open-enabled",
    "record-exceptions", "ignore-exceptions", "retry-exceptions", "enable-exponential-backoff",
    "exponential-backoff-multiplier", "exponential-max-wait-duration", "enable-randomized-wait",
    "randomized-wait-factor", "max-attempts", "wait-duration", "initial-state", "status",
    "headers", "body", "max-body-bytes", "per-try-timeout", "overall-timeout", "budget",
    "retry-ratio", "min-retries-per-second", "window", "retry-non-idempotent", "bridges",
    "source", "spoofed-source", "mode", "topics", "type", "partition-key", "user-service",
    "a.b", "a_b", "order.created", "", " ", "x-fallback", ":status", "content-length",
];

#[rustfmt::skip]
const STRINGS: &[&str] = &[
    "", "10s", "500ms", "1m", "PT30S", "-1s", "1.5s", "99999999999d", "5xx", "4xx", "503",
    "connect-failure", "reset", "timeout", "java.io.IOException", "COUNT_BASED", "TIME_BASED",
    "grpc-error", "grpc-unavailable", "grpc-0", "grpc-", "io.grpc.StatusRuntimeException",
    "count-based", "true", "false", "50", "1e309", "NaN", "envelope", "cloudevents-binary",
    "cloudevents-structured", "correct", "reject", "{workload}.{namespace}", "/orderId",
    "kafka-bridge", "default", "\u{0}", "é", "\u{202e}", "a\r\nb",
];

fn gen_string(rng: &mut Rng) -> String {
    if rng.chance(3) {
        let bytes = rng.bytes(12);
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        rng.pick(STRINGS).to_string()
    }
}

fn gen_number(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => json!(rng.below(200) as i64 - 50),
        1 => json!(rng.next() as i64),
        2 => json!(rng.next()),
        3 => json!((rng.next() as f64) / 1e9 - 1e9),
        4 => json!(*rng.pick(&[0.0, -0.0, 0.5, 1e300, -1e300, 2147483647.0, 2147483648.0])),
        _ => json!(rng.below(4)),
    }
}

fn gen_value(rng: &mut Rng, depth: usize, keys: &[&str]) -> Value {
    let leaf = depth == 0 || rng.chance(3);
    if leaf {
        return match rng.below(5) {
            0 => Value::Null,
            1 => Value::Bool(rng.chance(2)),
            2 => gen_number(rng),
            _ => Value::String(gen_string(rng)),
        };
    }
    if rng.chance(4) {
        let n = rng.below(4);
        return Value::Array((0..n).map(|_| gen_value(rng, depth - 1, keys)).collect());
    }
    let n = rng.below(5);
    let mut map = Map::new();
    for _ in 0..n {
        let key = if rng.chance(6) {
            gen_string(rng)
        } else {
            rng.pick(keys).to_string()
        };
        map.insert(key, gen_value(rng, depth - 1, keys));
    }
    Value::Object(map)
}

/// A valid policy with one part replaced by generated JSON: deep in the tree, where the
/// checks are.
fn mutated_policy(rng: &mut Rng) -> Value {
    let mut policy = json!({
        "resilience4j": {
            "circuitbreaker": {
                "configs": {"default": {"sliding-window-size": 10}},
                "instances": {"user-service": {"failure-rate-threshold": 50, "wait-duration-in-open-state": "30s"}}},
            "retry": {"instances": {"user-service": {"max-attempts": 3, "wait-duration": "100ms"}}}},
        "fallbacks": {"user-service": {"status": 503, "body": {"error": "down"}}},
        "retry-options": {"user-service": {"max-body-bytes": 1024}},
        "events": {"bridges": ["kafka-bridge"], "topics": {"order.created": {"mode": "envelope"}}}
    });
    let paths: &[&[&str]] = &[
        &[
            "resilience4j",
            "circuitbreaker",
            "instances",
            "user-service",
        ],
        &["resilience4j", "circuitbreaker", "configs", "default"],
        &["resilience4j", "circuitbreaker"],
        &["resilience4j", "retry", "instances", "user-service"],
        &["resilience4j"],
        &["fallbacks", "user-service"],
        &["retry-options", "user-service"],
        &["events"],
        &["events", "topics", "order.created"],
        &[],
    ];
    let path = rng.pick(paths);
    let mut node = &mut policy;
    for key in path.iter() {
        node = &mut node[*key];
    }
    let replacement = gen_value(rng, 3, POLICY_KEYS);
    match (node.as_object_mut(), replacement) {
        // Mostly add or replace one key, so the rest stays valid.
        (Some(map), Value::Object(extra)) if !rng.chance(4) => map.extend(extra),
        (_, replacement) => *node = replacement,
    }
    policy
}

/// Byte-level damage to a text: flips, insertions, deletions.
fn damaged(rng: &mut Rng, text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        if bytes.is_empty() {
            break;
        }
        let at = rng.below(bytes.len());
        match rng.below(3) {
            0 => bytes[at] = rng.next() as u8,
            1 => bytes.insert(at, *rng.pick(b"{}[]\",:0\\ e-.")),
            _ => {
                bytes.remove(at);
            }
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// The JSON module.

/// Written JSON reads back as the same value and is written again byte for byte; damaged text
/// is an error pointing inside the input, never a panic.
#[test]
fn json_round_trips_and_damaged_text_errors_inside_the_input() {
    check("json_round_trip", |rng| {
        let value = gen_value(rng, 5, POLICY_KEYS);
        let text = value.to_json();
        let back = crate::json::from_str(&text).map_err(|e| format!("{text}: {e}"))?;
        if back != value || back.to_json() != text {
            return Err(format!("{text} read back as {back}"));
        }
        let bytes = damaged(rng, &text);
        if let Err(e) = crate::json::from_slice(&bytes) {
            if e.offset() > bytes.len() || e.line() == 0 || e.column() == 0 {
                return Err(format!(
                    "{:?}: error outside the input: {e}",
                    String::from_utf8_lossy(&bytes)
                ));
            }
        }
        Ok(())
    });
}

/// A record value kept as text (`from_slice_keeping`, the events stamp) reads as the parsed one
/// (its members in the producer's order), and damaged text gets the parser's own error.
#[test]
fn kept_payloads_write_as_parsed_ones() {
    let keep = json::Keep {
        depth: 3,
        key: "value",
        unless_members: &[&["id"], &["data", "specversion"]],
    };
    check("json_keep", |rng| {
        let mut text = gen_value(rng, 5, RECORD_KEYS).to_json().into_bytes();
        match rng.below(3) {
            0 => text = damaged(rng, &String::from_utf8_lossy(&text)),
            1 => {
                for _ in 0..=rng.below(3) {
                    let at = rng.below(text.len() + 1);
                    text.insert(at, *rng.pick(b" \n\t"));
                }
            }
            _ => {}
        }
        let mut body = br#"{"records":[{"key":1,"value":"#.to_vec();
        body.extend_from_slice(&text);
        body.extend_from_slice(b"}]}");
        let show = || String::from_utf8_lossy(&body).into_owned();
        match (
            json::from_slice_keeping(&body, keep),
            json::from_slice(&body),
        ) {
            (Ok(k), Ok(p))
                if json::from_str(&k.to_json()).map(|tree| tree.to_json()) == Ok(p.to_json()) =>
            {
                Ok(())
            }
            (Err(k), Err(p)) if k == p => Ok(()),
            (k, p) => Err(format!("{}: kept {k:?}, parsed {p:?}", show())),
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The float parser.

/// Decimal text near floats' rounding boundaries: random digits and exponents, f64 and f32
/// ties written out exactly and just off them, long digit strings, and near-syntax.
fn gen_float_text(rng: &mut Rng) -> String {
    let mut text = match rng.below(6) {
        0 => {
            let digits = |rng: &mut Rng, max: usize| -> String {
                let run = *rng.pick(&['0', '9', '5', 'x']);
                (0..rng.below(max + 1))
                    .map(|_| match run {
                        'x' => char::from(b'0' + rng.below(10) as u8),
                        _ if rng.chance(8) => char::from(b'0' + rng.below(10) as u8),
                        c => c,
                    })
                    .collect()
            };
            let long = if rng.chance(20) { 900 } else { 25 };
            let int = digits(rng, long);
            let frac = digits(rng, long);
            let mut text = int;
            if rng.chance(2) || text.is_empty() {
                text.push('.');
                text.push_str(&frac);
            }
            if rng.chance(2) {
                let exp = match rng.below(3) {
                    0 => rng.below(50) as i64 - 25,
                    1 => rng.below(800) as i64 - 400,
                    _ => rng.below(100) as i64 - 50,
                };
                let marker: &&str = rng.pick(&["e", "E", "e+"]);
                text.push_str(marker);
                text.push_str(&exp.to_string());
            }
            text
        }
        1 => {
            // (2m + 1) × 2^(shift - 1): halfway between two f64 integers.
            let m = (rng.next() >> 11) | 1 << 52;
            (u128::from(2 * m + 1) << rng.below(75)).to_string()
        }
        2 => {
            // (2m + 1) × 2^-j = (2m + 1) × 5^j / 10^j: halfway between two f64 fractions.
            let m = (rng.next() >> 11) | 1 << 52;
            let j = rng.below(32) as u32;
            let n = (u128::from(2 * m + 1) * 5u128.pow(j)).to_string();
            format!("{n}e-{j}")
        }
        3 => {
            // Halfway between two f32s (exact in f64), all its digits.
            let bits = (rng.next() as u32) % 0x7f7f_ffff;
            let (low, high) = (f32::from_bits(bits), f32::from_bits(bits + 1));
            let mid = (f64::from(low) + f64::from(high)) / 2.0;
            format!("{mid:.160e}")
        }
        4 => {
            let x = f64::from_bits(rng.next() >> 1);
            let x = if x.is_finite() { x } else { 1.0 };
            format!("{x:.*e}", rng.below(20))
        }
        _ => {
            let alphabet = b"0123456789..eE+-infatyINF";
            (0..rng.below(8))
                .map(|_| char::from(*rng.pick(alphabet)))
                .collect()
        }
    };
    // Just off the text's value: a digit more, or one digit less.
    if rng.chance(3) {
        let mantissa_end = text.find(['e', 'E']).unwrap_or(text.len());
        if rng.chance(2) {
            let digit = if rng.chance(2) { "1" } else { "9" };
            let extra = if text[..mantissa_end].contains('.') {
                format!("{}{digit}", "0".repeat(rng.below(30)))
            } else {
                format!(".{}{digit}", "0".repeat(rng.below(30)))
            };
            text.insert_str(mantissa_end, &extra);
        } else if mantissa_end > 1 {
            text.remove(mantissa_end - 1);
        }
    }
    if rng.chance(4) {
        text.insert(0, *rng.pick(&['-', '+']));
    }
    text
}

/// The parser reads what std reads, as the same f64 and the same f32, bit for bit.
#[test]
fn float_parser_matches_std_bit_for_bit() {
    check("float_parse", |rng| {
        let text = gen_float_text(rng);
        let ours = crate::float_parse::parse_f64(&text).map(f64::to_bits);
        let std = text.parse::<f64>().ok().map(f64::to_bits);
        if ours != std {
            return Err(format!("f64 {text:?}: {ours:x?}, std {std:x?}"));
        }
        let ours = crate::float_parse::parse_f32(&text).map(f32::to_bits);
        let std = text.parse::<f32>().ok().map(f32::to_bits);
        if ours != std {
            return Err(format!("f32 {text:?}: {ours:x?}, std {std:x?}"));
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// The policy parser.

fn check_policy_text(text: &str) -> Result<(), String> {
    let root: Option<Value> = crate::json::from_str(text).ok();
    match Policy::from_json(text) {
        Ok(_) => Ok(()),
        Err(e) => {
            let shown = e.to_string();
            if shown.len() > 4096 {
                return Err(format!("message of {} bytes for {text}", shown.len()));
            }
            match root {
                // An object's error names a path that starts at one of its keys as written.
                Some(Value::Object(map)) if !map.is_empty() => {
                    let named = map.keys().any(|k| {
                        e.path == *k
                            || e.path.starts_with(&format!("{k}."))
                            || e.path.starts_with(&format!("{k}["))
                    });
                    if named {
                        Ok(())
                    } else {
                        Err(format!(
                            "error without a path into the policy: {e} for {text}"
                        ))
                    }
                }
                _ => Ok(()),
            }
        }
    }
}

#[test]
fn policy_parser_never_panics_and_errors_name_a_path() {
    check("policy-tree", |rng| {
        let policy = mutated_policy(rng);
        check_policy_text(&policy.to_string())
    });
    check("policy-random", |rng| {
        let policy = gen_value(rng, 5, POLICY_KEYS);
        check_policy_text(&policy.to_string())
    });
}

#[test]
fn policy_parser_never_panics_on_damaged_text() {
    let seed = mutated_policy(&mut Rng::new(7)).to_string();
    check("policy-bytes", |rng| {
        let bytes = damaged(rng, &seed);
        let text = String::from_utf8_lossy(&bytes);
        let _ = Policy::from_json(&text);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// The events codec: produce bodies, record headers, request headers.

#[rustfmt::skip]
const RECORD_KEYS: &[&str] = &[
    "records", "value", "key", "partition", "headers", "id", "type", "source", "timestamp",
    "time", "data", "data_base64", "version", "datacontenttype", "dataencoding", "traceparent",
    "specversion", "orderId", "name", "ce_id", "ce_source",
];

fn gen_record(rng: &mut Rng) -> Value {
    let mut record = Map::new();
    if !rng.chance(8) {
        record.insert("value".into(), gen_value(rng, 3, RECORD_KEYS));
    }
    if rng.chance(3) {
        record.insert("key".into(), gen_value(rng, 1, RECORD_KEYS));
    }
    if rng.chance(4) {
        record.insert("partition".into(), gen_number(rng));
    }
    if rng.chance(3) {
        // Record headers: the bridge's [{key, value (base64)}], or anything.
        let headers = if rng.chance(3) {
            gen_value(rng, 2, RECORD_KEYS)
        } else {
            let n = rng.below(4);
            Value::Array(
                (0..n)
                    .map(|_| json!({"key": gen_string(rng), "value": rng.pick(&["", "AA==", "not base64!", "aGVsbG8=", "===="])}))
                    .collect(),
            )
        };
        record.insert("headers".into(), headers);
    }
    if rng.chance(10) {
        record.insert(gen_string(rng), gen_value(rng, 1, RECORD_KEYS));
    }
    Value::Object(record)
}

fn gen_produce_body(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0 => rng.bytes(64),
        1 => gen_value(rng, 4, RECORD_KEYS).to_string().into_bytes(),
        _ => {
            let n = rng.below(6);
            let records: Vec<Value> = (0..n).map(|_| gen_record(rng)).collect();
            let body = json!({ "records": records }).to_string();
            if rng.chance(5) {
                damaged(rng, &body)
            } else {
                body.into_bytes()
            }
        }
    }
}

fn events_configs() -> Vec<EventsConfig> {
    let sections = [
        json!({"bridges": ["b"]}),
        json!({"bridges": ["b"], "mode": "cloudevents-structured", "spoofed-source": "reject",
               "topics": {"t": {"mode": "cloudevents-binary", "type": "com.example.t"},
                          "k": {"partition-key": "/orderId"}}}),
        json!({"bridges": ["b"], "max-body-bytes": 600,
               "topics": {"t": {"mode": "envelope", "partition-key": "/a/b/0"}}}),
    ];
    sections
        .iter()
        .filter_map(|s| crate::policy::parse_events(s, "events").ok())
        .collect()
}

#[test]
fn events_codec_never_panics_and_answers_within_the_limit() {
    let configs = events_configs();
    assert_eq!(configs.len(), 3);
    let content_types = [
        events::produce::JSON_V2,
        events::produce::BINARY_V2,
        events::produce::TEXT_V2,
        "application/json",
        "",
        "application/vnd.kafka.json.v2+json; charset=utf-8",
    ];
    let traceparents = [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "garbage",
        "",
    ];
    check("events-stamp", |rng| {
        let config = rng.pick(&configs);
        let body = gen_produce_body(rng);
        let random_traceparent = gen_string(rng);
        let traceparent = if rng.chance(4) {
            Some(random_traceparent.as_str())
        } else if rng.chance(2) {
            Some(*rng.pick(&traceparents))
        } else {
            None
        };
        let content_type_text = gen_string(rng);
        let content_type = if rng.chance(6) {
            Some(content_type_text.as_str())
        } else {
            Some(*rng.pick(&content_types))
        };
        let input = StampInput {
            config,
            topic: rng.pick::<&str>(&["t", "k", "order.created", ""]),
            source: "svc.ns",
            content_type,
            traceparent,
            now_ms: rng.next() >> rng.below(64),
        };
        let mut random = {
            let mut n = rng.next();
            let fails = rng.chance(20);
            move || {
                n = n.wrapping_add(1);
                (!fails).then(|| {
                    let mut b = [0u8; 16];
                    b[..8].copy_from_slice(&n.to_le_bytes());
                    b
                })
            }
        };
        match events::stamp(&input, &body, &mut random) {
            Ok(stamped) => {
                if stamped.body.len() > config.max_body_bytes {
                    return Err(format!(
                        "forwarded {} bytes over the limit {}",
                        stamped.body.len(),
                        config.max_body_bytes
                    ));
                }
                let out: Value = crate::json::from_slice(&stamped.body)
                    .map_err(|e| format!("stamped body not JSON: {e}"))?;
                let n = out["records"].as_array().map_or(0, Vec::len) as u64;
                if n != stamped.stats.records {
                    return Err(format!(
                        "{n} records out, {} counted",
                        stamped.stats.records
                    ));
                }
                Ok(())
            }
            Err(rejection) => {
                let status = rejection.status();
                if ![400, 403, 413, 415, 503].contains(&status) {
                    return Err(format!("status {status}: {}", rejection.message));
                }
                let answer: Value = crate::json::from_slice(&rejection.body())
                    .map_err(|e| format!("refusal body not JSON: {e}"))?;
                if answer["error_code"] != json!(status) {
                    return Err(format!("refusal body {answer}"));
                }
                Ok(())
            }
        }
    });
    check("events-request-line", |rng| {
        let method = rng.pick(&["POST", "GET", "post", ""]).to_string();
        let mut path = rng
            .pick(&["/topics/", "/topics/t/partitions/", "/consumers/", "/"])
            .to_string();
        path.push_str(&String::from_utf8_lossy(&rng.bytes(20)));
        let _ = events::produce_target(&method, &path);
        let _ = events::format_of(Some(&gen_string(rng)));
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Shared-state decoders: bytes another worker (or another version) wrote.

fn breaker_configs() -> Vec<BreakerConfig> {
    let count = BreakerConfig::default();
    let time = BreakerConfig {
        sliding_window_type: SlidingWindowType::TimeBased,
        sliding_window_size: 5,
        ..BreakerConfig::default()
    };
    let small = BreakerConfig {
        sliding_window_size: 2,
        minimum_number_of_calls: 1,
        permitted_number_of_calls_in_half_open_state: 1,
        ..BreakerConfig::default()
    };
    vec![count, time, small]
}

/// A decoded breaker must be usable: every operation, none panics.
fn exercise(breaker: &mut CircuitBreaker, config: &BreakerConfig, rng: &mut Rng) {
    let mut now = rng.next() >> rng.below(64);
    for _ in 0..rng.below(8) {
        now = now.saturating_add(rng.below(100_000) as u64);
        let r = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        let _ = breaker.try_acquire_permission(config, now, || r);
        let outcome = *rng.pick(&[Outcome::Success, Outcome::Failure, Outcome::Ignored]);
        let _ = breaker.on_result(config, now, outcome, rng.below(10_000) as u64, || r);
        let _ = breaker.on_tick(config, now, || r);
        let _ = breaker.snapshot(config, now);
        if rng.chance(3) {
            breaker.release_permission(config);
        }
    }
    let _ = breaker.encode(config);
}

#[test]
fn shared_state_decoders_never_panic_on_any_bytes() {
    let configs = breaker_configs();
    // Valid encodings of breakers in every state, to damage.
    let mut encodings = Vec::new();
    let mut rng = Rng::new(11);
    for config in &configs {
        let mut breaker = CircuitBreaker::new(config, 0, || 0.5);
        for _ in 0..40 {
            exercise(&mut breaker, config, &mut rng);
            encodings.push((config.clone(), breaker.encode(config)));
        }
    }
    check("breaker-decode", |rng| {
        let (config, bytes) = rng.pick(&encodings);
        let bytes = match rng.below(3) {
            0 => rng.bytes(96),
            1 => {
                let mut b = bytes.clone();
                for _ in 0..=rng.below(3) {
                    if b.is_empty() {
                        break;
                    }
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
                b
            }
            _ => {
                let cut = rng.below(bytes.len() + 1);
                bytes[..cut].to_vec()
            }
        };
        // Decoded under its own config or another one (a rollout in progress).
        let config = if rng.chance(3) {
            rng.pick(&configs)
        } else {
            config
        };
        if let Ok(mut breaker) = CircuitBreaker::decode(&bytes, config) {
            exercise(&mut breaker, config, rng);
        }
        Ok(())
    });
    check("budget-decode", |rng| {
        let bytes = rng.bytes(80);
        let mut budget = RetryBudget::decode(&bytes);
        let config = crate::policy::BudgetConfig::default();
        let now = rng.next() >> rng.below(64);
        budget.record_requests(&config, now, rng.next() as u32);
        let _ = budget.try_withdraw(&config, now);
        let again = RetryBudget::decode(&budget.encode());
        if again != budget {
            return Err("encode/decode round trip changed the budget".to_string());
        }
        Ok(())
    });
}
