//! `format!("{x}")` for floats without core's float formatting (Grisu and Dragon4 with their
//! tables and bignums: about 25 KB of the `.wasm`, issue 13), for the few messages that print
//! a float (policy errors, the breaker's configuration log line).
//!
//! The text is what `Display` writes — positional, never an exponent, `-0`, `NaN`, `inf` —
//! with the fewest significant digits that read back as the same float, the nearest of them.
//! For each length the nearest decimal is found exactly (a small big-integer comparison) and
//! kept if it parses back to the float.

use crate::bignum::Big;
use crate::float_parse::{parse_f32, parse_f64};

/// `format!("{x}")` for an `f64`.
pub fn f64_text(x: f64) -> String {
    text(x, |s| parse_f64(s) == Some(x))
}

/// `format!("{x}")` for an `f32` (its own shortest digits: `0.1f32` is `0.1`).
pub fn f32_text(x: f32) -> String {
    text(f64::from(x), |s| parse_f32(s) == Some(x))
}

fn text(x: f64, reads_back: impl Fn(&str) -> bool) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    let a = x.abs();
    if a.is_infinite() {
        return format!("{sign}inf");
    }
    if a == 0.0 {
        return format!("{sign}0");
    }
    let exp10 = decimal_exponent(a);
    let (mantissa, exp2) = binary_parts(a);
    for digits in 1..=17u32 {
        // The p-digit decimal nearest to a: d × 10^(exp10 + 1 - digits).
        let shift = digits as i32 - 1 - exp10;
        let d = nearest(mantissa, exp2, shift, scale(a, shift));
        // The nearest one reads back or none of this length does.
        let candidate = positional(sign, d, -shift);
        if reads_back(&candidate) {
            return candidate;
        }
    }
    // Unreachable for finite floats (17 digits always read back); the value, roughly.
    positional(sign, scale(a, 16 - exp10).round() as u64, exp10 - 16)
}

/// a = mantissa × 2^exp2 exactly.
fn binary_parts(a: f64) -> (u64, i32) {
    let bits = a.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    }
}

/// round(mantissa × 2^exp2 × 10^shift), a tie going up, found exactly from the estimate.
fn nearest(mantissa: u64, exp2: i32, shift: i32, estimate: f64) -> u64 {
    // value = n / den with both whole.
    let mut n = Big::from(mantissa);
    let mut den = Big::from(1);
    if exp2 >= 0 {
        n.shl(exp2 as u32);
    } else {
        den.shl((-exp2) as u32);
    }
    if shift >= 0 {
        n.mul_pow10(shift as u32);
    } else {
        den.mul_pow10((-shift) as u32);
    }
    // floor(value): the estimate is within a few units.
    let mut d = estimate.floor().max(0.0) as u64;
    while d > 0 && den.times(d) > n {
        d -= 1;
    }
    while den.times(d + 1) <= n {
        d += 1;
    }
    // Round: up when 2n ≥ (2d + 1) × den.
    let mut twice = n;
    twice.shl(1);
    if den.times(2 * d + 1) <= twice {
        d + 1
    } else {
        d
    }
}

/// floor(log10(a)) for a finite a > 0.
fn decimal_exponent(a: f64) -> i32 {
    let bits = a.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let exp2 = if biased == 0 {
        // Subnormal: the mantissa's highest bit.
        -1074 + (63 - (bits & ((1 << 52) - 1)).leading_zeros() as i32)
    } else {
        biased - 1023
    };
    // floor(exp2 × log10(2)), then one step up if the estimate was low.
    let estimate = (exp2 * 315_653) >> 20;
    if scale(a, -estimate) >= 10.0 {
        estimate + 1
    } else {
        estimate
    }
}

/// a × 10^k in steps that stay inside f64's range.
fn scale(mut a: f64, mut k: i32) -> f64 {
    const STEP: i32 = 22; // 10^22 is the largest power of ten an f64 holds exactly.
    while k > 0 {
        let step = k.min(STEP);
        a *= pow10(step);
        k -= step;
    }
    while k < 0 {
        let step = (-k).min(STEP);
        a /= pow10(step);
        k += step;
    }
    a
}

fn pow10(k: i32) -> f64 {
    let mut p = 1.0;
    for _ in 0..k {
        p *= 10.0;
    }
    p
}

/// `sign` d × 10^exp written out without an exponent, trailing fraction zeros dropped.
fn positional(sign: &str, d: u64, exp: i32) -> String {
    let digits = d.to_string();
    let mut out = String::from(sign);
    if exp >= 0 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', exp as usize));
        return out;
    }
    let frac_len = (-exp) as usize;
    let (int_part, frac_part) = if digits.len() > frac_len {
        digits.split_at(digits.len() - frac_len)
    } else {
        ("", digits.as_str())
    };
    out.push_str(if int_part.is_empty() { "0" } else { int_part });
    let zeros = frac_len - frac_part.len();
    let frac: String = std::iter::repeat_n('0', zeros)
        .chain(frac_part.chars())
        .collect();
    let frac = frac.trim_end_matches('0');
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn writes_what_display_writes() {
        for x in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            0.1,
            0.3,
            100.5,
            120.0,
            1e15,
            1e16,
            1e21,
            1e22,
            1e23,
            1e300,
            5e-324,
            1e-7,
            123.456,
            0.000123,
            2147483648.0,
            18446744073709551616.0,
            33.333333333333336,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1.5e-300,
            9007199254740993.0,
        ] {
            assert_eq!(f64_text(x), format!("{x}"), "{x:e}");
        }
        for x in [1.7976931348623157e308, 2.2250738585072014e-308] {
            assert_eq!(f64_text(x), format!("{x}"), "{x:e}");
        }
        for x in [
            0.1f32,
            50.0,
            33.3,
            1e-10,
            3.4028235e38,
            1e-45,
            66.666664,
            -2.5,
        ] {
            assert_eq!(f32_text(x), format!("{x}"), "{x:e}");
        }
    }

    /// Random floats and written decimals come out as Display writes them.
    #[test]
    fn reads_back_and_matches_display_on_written_decimals() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..1_000 {
            let x = f64::from_bits(next());
            if !x.is_finite() {
                continue;
            }
            assert_eq!(f64_text(x), format!("{x}"), "{x:e}");

            let digits = 1 + next() % 15;
            let mantissa = next() % 10u64.pow(digits as u32);
            let exp = (next() % 40) as i32 - 20;
            let written: f64 = format!("{mantissa}e{exp}").parse().unwrap_or(0.0);
            assert_eq!(f64_text(written), format!("{written}"), "{mantissa}e{exp}");
            let single = written as f32;
            if single.is_finite() {
                assert_eq!(
                    f32_text(single),
                    format!("{single}"),
                    "{mantissa}e{exp} as f32"
                );
            }
        }
    }
}
