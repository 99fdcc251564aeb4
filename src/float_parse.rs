//! `str::parse::<f64>()` and `::<f32>()` without core's parser (Eisel-Lemire with its 11 KB
//! power-of-five table: about 17 KB of the `.wasm`, issue 13). Same syntax, same correctly
//! rounded result, bit for bit; the inputs here are policy numbers, so the exact path is a
//! plain big-integer division, slow and small.

use crate::bignum::Big;
use std::cmp::Ordering;

/// `s.parse::<f64>().ok()`.
pub fn parse_f64(s: &str) -> Option<f64> {
    let (negative, text) = read(s.as_bytes())?;
    let x = match text {
        Text::Inf => f64::INFINITY,
        Text::Nan => f64::NAN,
        Text::Decimal(d) => match d.small() {
            // Clinger: an exact mantissa times an exact power of ten, rounded once.
            Some(w) if w <= 1 << 53 && d.scale.unsigned_abs() <= 22 => {
                let p = (0..d.scale.unsigned_abs()).fold(1.0, |p, _| p * 10.0);
                if d.scale < 0 {
                    w as f64 / p
                } else {
                    w as f64 * p
                }
            }
            _ => f64::from_bits(d.exact(&F64)),
        },
    };
    Some(if negative { -x } else { x })
}

/// `s.parse::<f32>().ok()`, rounded once (not through f64, which can round twice).
pub fn parse_f32(s: &str) -> Option<f32> {
    let (negative, text) = read(s.as_bytes())?;
    let x = match text {
        Text::Inf => f32::INFINITY,
        Text::Nan => f32::NAN,
        Text::Decimal(d) => match d.small() {
            Some(w) if w <= 1 << 24 && d.scale.unsigned_abs() <= 10 => {
                let p = (0..d.scale.unsigned_abs()).fold(1.0, |p, _| p * 10.0);
                if d.scale < 0 {
                    w as f32 / p
                } else {
                    w as f32 * p
                }
            }
            _ => f32::from_bits(d.exact(&F32) as u32),
        },
    };
    Some(if negative { -x } else { x })
}

/// An IEEE binary format's widths.
struct Format {
    /// Significand bits, the implicit one included.
    precision: u32,
    /// The exponent of a subnormal's lowest bit.
    min_lsb: i32,
    /// The biased exponent of infinity.
    max_biased: u64,
    /// Values of at least 10^inf_exp10 are infinity, below 10^(zero_exp10 + 1) zero.
    inf_exp10: i64,
    zero_exp10: i64,
}

const F64: Format = Format {
    precision: 53,
    min_lsb: -1074,
    max_biased: 2047,
    inf_exp10: 309,
    zero_exp10: -325,
};

const F32: Format = Format {
    precision: 24,
    min_lsb: -149,
    max_biased: 255,
    inf_exp10: 39,
    zero_exp10: -47,
};

/// Halfway points between floats have at most 767 significant digits, so digits past these
/// only matter as "something nonzero follows".
const MAX_DIGITS: usize = 800;

enum Text<'a> {
    Inf,
    Nan,
    Decimal(Decimal<'a>),
}

/// The digits of `int` then `frac`, as one integer, × 10^scale; no leading or trailing zeros.
struct Decimal<'a> {
    int: &'a [u8],
    frac: &'a [u8],
    scale: i64,
}

/// What `str::parse::<f64>` accepts: a sign, then `inf`, `infinity` or `nan` in any case, or
/// digits with an optional `.` (a digit on one side at least) and `e`/`E` exponent.
fn read(s: &[u8]) -> Option<(bool, Text<'_>)> {
    let (negative, s) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if s.eq_ignore_ascii_case(b"inf") || s.eq_ignore_ascii_case(b"infinity") {
        return Some((negative, Text::Inf));
    }
    if s.eq_ignore_ascii_case(b"nan") {
        return Some((negative, Text::Nan));
    }
    let (int, rest) = s.split_at(digits(s));
    let (frac, rest) = match rest {
        [b'.', rest @ ..] => rest.split_at(digits(rest)),
        _ => (&[][..], rest),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let exp = match rest {
        [] => 0,
        [b'e' | b'E', rest @ ..] => exponent(rest)?,
        _ => return None,
    };
    Some((negative, Text::Decimal(Decimal::new(int, frac, exp))))
}

fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Capped as core caps it: past the cap the value is zero or infinity anyway.
fn exponent(s: &[u8]) -> Option<i64> {
    let (negative, s) = match s {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    if s.is_empty() || digits(s) != s.len() {
        return None;
    }
    let e = s.iter().fold(0i64, |e, &b| {
        if e < 0x10000 {
            10 * e + i64::from(b - b'0')
        } else {
            e
        }
    });
    Some(if negative { -e } else { e })
}

impl<'a> Decimal<'a> {
    fn new(mut int: &'a [u8], mut frac: &'a [u8], exp: i64) -> Decimal<'a> {
        let mut scale = exp.saturating_sub(frac.len() as i64);
        while let [rest @ .., b'0'] = frac {
            frac = rest;
            scale += 1;
        }
        if frac.is_empty() {
            while let [rest @ .., b'0'] = int {
                int = rest;
                scale += 1;
            }
        }
        while let [b'0', rest @ ..] = int {
            int = rest;
        }
        if int.is_empty() {
            while let [b'0', rest @ ..] = frac {
                frac = rest;
            }
        }
        Decimal { int, frac, scale }
    }

    fn len(&self) -> usize {
        self.int.len() + self.frac.len()
    }

    fn digits(&self) -> impl Iterator<Item = u32> + '_ {
        self.int
            .iter()
            .chain(self.frac)
            .map(|&b| u32::from(b - b'0'))
    }

    /// The digits as a u64 when there are at most 19.
    fn small(&self) -> Option<u64> {
        (self.len() <= 19).then(|| self.digits().fold(0, |w, d| w * 10 + u64::from(d)))
    }

    /// The float's bits, exactly: q × 2^lsb is the value divided out, rounded half to even.
    fn exact(&self, f: &Format) -> u64 {
        let inf = f.max_biased << (f.precision - 1);
        let n = self.len() as i64;
        // 10^top ≤ value < 10^(top + 1).
        let top = (n - 1).saturating_add(self.scale);
        if n == 0 || top <= f.zero_exp10 {
            return 0;
        }
        if top >= f.inf_exp10 {
            return inf;
        }
        let mut num = Big::from(0);
        let (mut chunk, mut len) = (0, 0);
        for d in self.digits().take(MAX_DIGITS) {
            chunk = chunk * 10 + d;
            len += 1;
            if len == 9 {
                num.mul_add_small(1_000_000_000, chunk);
                (chunk, len) = (0, 0);
            }
        }
        num.mul_add_small(10u32.pow(len), chunk);
        let mut scale = self.scale;
        if self.len() > MAX_DIGITS {
            // The last digit is nonzero: a 1 after the kept digits rounds the same way.
            num.mul_add_small(10, 1);
            scale += (self.len() - MAX_DIGITS) as i64 - 1;
        }
        // value = num / den; the range checks above bound scale.
        let mut den = Big::from(1);
        if scale >= 0 {
            num.mul_pow10(scale as u32);
        } else {
            den.mul_pow10(scale.unsigned_abs() as u32);
        }
        // 2^k ≤ value < 2^(k + 1).
        let mut k = num.bits() as i32 - den.bits() as i32;
        let below = if k >= 0 {
            num < den.shifted(k as u32)
        } else {
            num.shifted(k.unsigned_abs()) < den
        };
        if below {
            k -= 1;
        }
        let mut lsb = (k + 1 - f.precision as i32).max(f.min_lsb);
        let (mut rem, den) = if lsb >= 0 {
            (num, den.shifted(lsb as u32))
        } else {
            (num.shifted(lsb.unsigned_abs()), den)
        };
        // q < 2^precision: long division, a bit at a time.
        let mut q = 0u64;
        for i in (0..f.precision).rev() {
            let step = den.shifted(i);
            if rem >= step {
                rem.sub(&step);
                q |= 1 << i;
            }
        }
        rem.shl(1);
        q += u64::from(match rem.cmp(&den) {
            Ordering::Greater => true,
            Ordering::Equal => q & 1 == 1,
            Ordering::Less => false,
        });
        if q >> f.precision != 0 {
            q >>= 1;
            lsb += 1;
        }
        let hidden = 1u64 << (f.precision - 1);
        if q < hidden {
            // Subnormal (lsb is min_lsb) or zero.
            return q;
        }
        let biased = (lsb - f.min_lsb + 1) as u64;
        if biased >= f.max_biased {
            return inf;
        }
        (biased << (f.precision - 1)) | (q - hidden)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// Same result as std, bit for bit (NaN as NaN with its sign), for both widths.
    fn same_as_std(s: &str) {
        let ours = parse_f64(s).map(f64::to_bits);
        let std = s.parse::<f64>().ok().map(f64::to_bits);
        assert_eq!(ours, std, "f64 {s:?}");
        let ours = parse_f32(s).map(f32::to_bits);
        let std = s.parse::<f32>().ok().map(f32::to_bits);
        assert_eq!(ours, std, "f32 {s:?}");
    }

    #[test]
    fn edge_values_read_as_std_reads_them() {
        for s in [
            "0",
            "-0",
            "0.0",
            "-0.0e5",
            "0e999999999999999999",
            "1",
            "-1",
            "0.1",
            "0.5",
            "1.5",
            "100",
            "123.456",
            "3.14159",
            "1e5",
            "1E5",
            "1e+5",
            "1e-5",
            "2.5E-3",
            "0.000001",
            "1e22",
            "1e23",
            "9007199254740992",
            "9007199254740993",
            "9007199254740995",
            "9007199254740993.0000000000000000001",
            "2.0000000000000001",
            "2.0000000000000003",
            "2.0000000000000004",
            "4.9e-324",
            "5e-324",
            "4.940656458412465441765687928682213723651e-324",
            "2.4703282292062327e-324",
            "2.4703282292062328e-324",
            "2.47032822920623272088284396434110686182e-324",
            "2.470328229206232720882843964341106861825299e-324",
            "2e-324",
            "1e-325",
            "1e-400",
            "2.2250738585072011e-308",
            "2.2250738585072012e-308",
            "2.2250738585072014e-308",
            "2.225073858507201136057409796709131975934819546351645648e-308",
            "4.4501477170144023e-308",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.7976931348623158079e308",
            "1.7976931348623159e308",
            "1.797693134862315807937289714053034150799341327710e308",
            "1e308",
            "1e309",
            "-1e309",
            "1e400",
            "3.4028235e38",
            "3.4028236e38",
            "3.40282356779733661637539395458142568448e38",
            "3.40282357e38",
            "1.17549435e-38",
            "1.4e-45",
            "1e-45",
            "7.006492321624085e-46",
            "7.006492321624086e-46",
            "7e-46",
            "1e-46",
            "16777217",
            "16777219",
            "0.1e-2147483648",
            "1e2147483648",
            "1e-99999999999999999999",
            "1e99999999999999999999",
            "000000001.5000000000",
            "0000.0000001",
            "1000000000000000000000000000000",
            "123456789012345678901234567890e-20",
            "33.333333333333336",
            "66.666664",
            "1.",
            ".5",
            "-.5",
            "+1.5",
            "5.e-1",
            "inf",
            "-inf",
            "+Infinity",
            "INFINITY",
            "iNf",
            "NaN",
            "-nan",
            "nan",
            "",
            "-",
            "+",
            ".",
            "-.",
            "e5",
            ".e5",
            "1e",
            "1e+",
            "1e-",
            "1e+-5",
            "--1",
            "+-1",
            "1.2.3",
            "1,5",
            " 1",
            "1 ",
            "1_000",
            "0x10",
            "infinit",
            "infinityy",
            "nana",
            "1f",
            "١",
        ] {
            same_as_std(s);
        }
    }

    #[test]
    fn long_digit_strings_round_as_std_does() {
        // 800 and more digits: the halfway point of 1 and its successor, then a digit past it.
        let half = "1.00000000000000011102230246251565404236316680908203125";
        for tail in ["", "0", "1", "00000001"] {
            for zeros in [0, 100, 800, 2000] {
                same_as_std(&format!("{half}{}{tail}", "0".repeat(zeros)));
            }
        }
        let nines = "9".repeat(800);
        same_as_std(&nines);
        same_as_std(&format!("0.{nines}"));
        same_as_std(&format!("{nines}e-1100"));
        same_as_std(&format!("{nines}e-500"));
        same_as_std(&format!("1{}", "0".repeat(400)));
        same_as_std(&format!("0.{}1", "0".repeat(320)));
        same_as_std(&format!("0.{}1e330", "0".repeat(10_000)));
        let digits: String = (0..2000)
            .map(|i| char::from(b'0' + (i * 7 % 10) as u8))
            .collect();
        for exp in [-1400, -1100, -800, -400, -340, -320, -100, 0, 100, 300] {
            same_as_std(&format!("{digits}e{exp}"));
            same_as_std(&format!("0.{digits}e{}", exp + 1000));
        }
    }

    #[test]
    fn every_power_of_ten_reads_as_std_does() {
        for exp in -350..=320 {
            for mantissa in [
                "1",
                "5",
                "9.999999999999999",
                "2.5",
                "123456789012345678901",
            ] {
                same_as_std(&format!("{mantissa}e{exp}"));
            }
        }
    }
}
