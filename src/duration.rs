//! Durations as Spring Boot reads them (`DurationStyle`), stored as whole milliseconds.
//!
//! Accepted forms, surrounding whitespace ignored:
//! - a JSON number or a numeric string: milliseconds (Spring's default unit), e.g. `500`, `"500"`;
//! - Spring's simple style: an integer and a unit, `ns`, `us`, `ms`, `s`, `m`, `h` or `d`
//!   (unit case-insensitive), e.g. `"30s"`, `"500ms"`, `"2m"`, `"1d"`, `"+5s"`;
//! - ISO-8601 as `java.time.Duration.parse` reads it: `"PT30S"`, `"PT0.5S"`, `"PT1M30S"`,
//!   `"P1DT2H"`, `"pt1s"` (days, hours, minutes, seconds with up to 9 fraction digits; no years,
//!   months or weeks; each component may carry its own sign, as in Java).
//!
//! Rounding: Spring keeps nanoseconds, the sidecar keeps milliseconds. A duration that is not a
//! whole number of milliseconds is rounded *up* (`"1500us"` is 2 ms, `"1ns"` is 1 ms), so a
//! non-zero duration never becomes zero and a wait is never shorter than asked for.
//!
//! Rejected: negative durations (`"-5s"`, `"PT-5S"`: "must not be negative"), a fractional bare
//! number (`1.5`: Spring rejects it too), decimals in simple style (`"1.5s"`), unknown units,
//! and anything beyond `u64::MAX` milliseconds.

use crate::json::Value;

use crate::policy::describe;

const NANOS_PER_MS: i128 = 1_000_000;
const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// Reads a duration property value (JSON number or string) as milliseconds.
///
/// The error is a message without the key path, for the caller to prefix, e.g.
/// `must not be negative, got "-5s"`.
pub fn parse_duration_ms(value: &Value) -> Result<u64, String> {
    match value {
        Value::Number(n) => {
            if let Some(ms) = n.as_u64() {
                return Ok(ms);
            }
            if n.as_i64().is_some_and(|ms| ms < 0) {
                return Err(format!("must not be negative, got {n}"));
            }
            match n.as_f64() {
                Some(x) if x < 0.0 => Err(format!("must not be negative, got {n}")),
                Some(x) if x.fract() == 0.0 && x.is_finite() => {
                    if x < 18_446_744_073_709_551_616.0 {
                        // Integral and in range: the cast is exact enough for a count of ms.
                        Ok(x as u64)
                    } else {
                        Err(format!("is too large, got {n}"))
                    }
                }
                _ => Err(format!(
                    "a bare number is a count of milliseconds and must be whole, got {n}"
                )),
            }
        }
        Value::String(s) => parse_duration_str(s),
        other => Err(format!(
            "expected a duration such as \"30s\", \"500ms\", \"PT30S\" or a number of milliseconds, got {}",
            describe(other)
        )),
    }
}

/// Reads a duration written as text (see the module documentation) as milliseconds.
pub fn parse_duration_str(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let nanos = if is_iso(trimmed) {
        parse_iso(trimmed)
    } else {
        parse_simple(trimmed)
    };
    let nanos = nanos.ok_or_else(|| {
        format!(
            "expected a duration such as \"30s\", \"500ms\", \"PT30S\" or a number of milliseconds, got {}",
            quoted(text)
        )
    })?;
    if nanos < 0 {
        return Err(format!("must not be negative, got {}", quoted(text)));
    }
    // Round up to whole milliseconds (see the module documentation).
    let ms = (nanos + NANOS_PER_MS - 1) / NANOS_PER_MS;
    u64::try_from(ms).map_err(|_| format!("is too large, got {}", quoted(text)))
}

fn is_iso(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    unsigned.starts_with(['P', 'p'])
}

/// Spring's SIMPLE style: `^[+-]?\d+[a-zA-Z]{0,2}$`, no unit = milliseconds. None: not this form.
fn parse_simple(text: &str) -> Option<i128> {
    let (negative, unsigned) = split_sign(text);
    let digits_end = unsigned
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(unsigned.len());
    let (digits, unit) = unsigned.split_at(digits_end);
    let amount = parse_digits(digits)?;
    let nanos_per_unit: i128 = match unit.to_ascii_lowercase().as_str() {
        "ns" => 1,
        "us" => 1_000,
        "" | "ms" => NANOS_PER_MS,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => 3_600 * NANOS_PER_SECOND,
        "d" => 86_400 * NANOS_PER_SECOND,
        _ => return None,
    };
    let nanos = amount.checked_mul(nanos_per_unit)?;
    Some(if negative { -nanos } else { nanos })
}

/// `java.time.Duration.parse`: `[-+]?P(nD)?(T(nH)?(nM)?(n[.f]S)?)?`, case-insensitive, at least
/// one component, and `T` only when a time component follows. None: not a valid ISO duration.
fn parse_iso(text: &str) -> Option<i128> {
    let (negative, unsigned) = split_sign(text);
    let mut rest = unsigned.strip_prefix(['P', 'p'])?;
    let mut total: i128 = 0;
    let mut any_component = false;
    let mut in_time = false;
    let mut time_components = 0;
    // Order of the designators seen so far: D=1, H=2, M=3, S=4; each may appear once, in order.
    let mut stage = 0;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix(['T', 't']) {
            if in_time {
                return None;
            }
            in_time = true;
            rest = after;
            continue;
        }
        let (component_negative, unsigned_rest) = split_sign(rest);
        let digits_end = unsigned_rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(unsigned_rest.len());
        let (digits, after_digits) = unsigned_rest.split_at(digits_end);
        let whole = parse_digits(digits)?;
        // Optional fraction (seconds only): '.' or ',' and up to 9 digits.
        let (fraction_nanos, after_fraction) = match after_digits.strip_prefix(['.', ',']) {
            Some(after_point) => {
                let end = after_point
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after_point.len());
                let (fraction, after) = after_point.split_at(end);
                if fraction.len() > 9 || !after.starts_with(['S', 's']) || !in_time {
                    return None;
                }
                let padded = format!("{fraction:0<9}");
                (padded.parse::<i128>().ok()?, after)
            }
            None => (0, after_digits),
        };
        let mut designator = after_fraction.chars();
        let letter = designator.next()?.to_ascii_uppercase();
        rest = designator.as_str();
        let (this_stage, nanos_per_unit) = match (letter, in_time) {
            ('D', false) => (1, 86_400 * NANOS_PER_SECOND),
            ('H', true) => (2, 3_600 * NANOS_PER_SECOND),
            ('M', true) => (3, 60 * NANOS_PER_SECOND),
            ('S', true) => (4, NANOS_PER_SECOND),
            _ => return None,
        };
        if this_stage <= stage {
            return None;
        }
        stage = this_stage;
        let magnitude = whole
            .checked_mul(nanos_per_unit)?
            .checked_add(fraction_nanos)?;
        let signed = if component_negative {
            -magnitude
        } else {
            magnitude
        };
        total = total.checked_add(signed)?;
        any_component = true;
        if in_time {
            time_components += 1;
        }
    }
    if !any_component || (in_time && time_components == 0) {
        return None;
    }
    Some(if negative { -total } else { total })
}

fn split_sign(text: &str) -> (bool, &str) {
    if let Some(rest) = text.strip_prefix('-') {
        (true, rest)
    } else {
        (false, text.strip_prefix('+').unwrap_or(text))
    }
}

/// A non-empty run of ASCII digits. Long runs are rejected rather than overflowing.
fn parse_digits(digits: &str) -> Option<i128> {
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i128>().ok()
}

fn quoted(text: &str) -> String {
    describe(&Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use crate::json;

    use super::*;

    fn ms(text: &str) -> Result<u64, String> {
        parse_duration_ms(&json!(text))
    }

    #[test]
    fn spring_simple_style_with_every_unit() {
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("3000us"), Ok(3));
        assert_eq!(ms("2000000ns"), Ok(2));
        assert_eq!(ms("+5s"), Ok(5_000));
        assert_eq!(ms("0s"), Ok(0));
    }

    #[test]
    fn units_are_case_insensitive_and_whitespace_is_trimmed() {
        assert_eq!(ms("30S"), Ok(30_000));
        assert_eq!(ms("500MS"), Ok(500));
        assert_eq!(ms("  2m \n"), Ok(120_000));
    }

    #[test]
    fn a_bare_number_is_milliseconds() {
        assert_eq!(parse_duration_ms(&json!(250)), Ok(250));
        assert_eq!(parse_duration_ms(&json!(250.0)), Ok(250));
        assert_eq!(ms("250"), Ok(250));
        assert_eq!(ms(" 0 "), Ok(0));
    }

    #[test]
    fn iso_8601_as_java_duration_parse() {
        assert_eq!(ms("PT30S"), Ok(30_000));
        assert_eq!(ms("PT0.5S"), Ok(500));
        assert_eq!(ms("PT0,25S"), Ok(250));
        assert_eq!(ms("PT1M30S"), Ok(90_000));
        assert_eq!(ms("PT2H"), Ok(7_200_000));
        assert_eq!(ms("P1D"), Ok(86_400_000));
        assert_eq!(ms("P1DT1S"), Ok(86_401_000));
        assert_eq!(ms("pt1m"), Ok(60_000));
        assert_eq!(ms("PT1M-30S"), Ok(30_000));
        assert_eq!(ms("-PT-5S"), Ok(5_000));
    }

    #[test]
    fn sub_millisecond_durations_round_up() {
        assert_eq!(ms("1ns"), Ok(1));
        assert_eq!(ms("1500us"), Ok(2));
        assert_eq!(ms("PT0.000000001S"), Ok(1));
        assert_eq!(ms("PT0.0015S"), Ok(2));
    }

    #[test]
    fn negative_durations_are_rejected() {
        assert_eq!(
            ms("-5s"),
            Err("must not be negative, got \"-5s\"".to_string())
        );
        assert_eq!(
            ms("PT-5S"),
            Err("must not be negative, got \"PT-5S\"".to_string())
        );
        assert_eq!(
            ms("-PT5S"),
            Err("must not be negative, got \"-PT5S\"".to_string())
        );
        assert_eq!(
            ms("PT-0.5S"),
            Err("must not be negative, got \"PT-0.5S\"".to_string())
        );
        assert_eq!(
            parse_duration_ms(&json!(-1)),
            Err("must not be negative, got -1".to_string())
        );
        assert_eq!(
            parse_duration_ms(&json!(-1.5)),
            Err("must not be negative, got -1.5".to_string())
        );
    }

    #[test]
    fn malformed_durations_are_rejected() {
        let expected = |got: &str| {
            Err(format!(
                "expected a duration such as \"30s\", \"500ms\", \"PT30S\" or a number of milliseconds, got {got}"
            ))
        };
        for bad in [
            "",
            "abc",
            "1.5s",
            "30 s",
            "30sec",
            "5w",
            "s",
            "P",
            "PT",
            "P1W",
            "P1Y",
            "PT1S2M",
            "PT1.5M",
            "P1H",
            "PT1D",
            "PT1S1S",
            "PTT1S",
            "P0.5D",
            "PT0.1234567891S",
            "--5s",
        ] {
            assert_eq!(ms(bad), expected(&format!("{bad:?}")), "{bad:?}");
        }
        assert_eq!(parse_duration_ms(&json!(true)), expected("true"));
        assert_eq!(parse_duration_ms(&json!(null)), expected("null"));
        assert_eq!(parse_duration_ms(&json!([1])), expected("[1]"));
        assert_eq!(
            parse_duration_ms(&json!(1.5)),
            Err("a bare number is a count of milliseconds and must be whole, got 1.5".to_string())
        );
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(ms("18446744073709551615ms"), Ok(u64::MAX));
        assert_eq!(
            ms("18446744073709551616ms"),
            Err("is too large, got \"18446744073709551616ms\"".to_string())
        );
        assert_eq!(
            ms("999999999999999999999d"),
            Err("is too large, got \"999999999999999999999d\"".to_string())
        );
        assert!(ms("9999999999999999999999999999999999d").is_err());
        assert_eq!(
            parse_duration_ms(&json!(1e30)),
            Err("is too large, got 1e+30".to_string())
        );
    }
}
