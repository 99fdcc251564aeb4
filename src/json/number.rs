//! A JSON number as its text: written back exactly as read, read as a Rust number on demand.

use std::fmt;

/// A JSON number, kept as valid JSON number text (`-12`, `1.50`, `1e+30`).
#[derive(Debug, Clone)]
pub struct Number {
    text: String,
}

impl Number {
    /// From text the parser has checked against the JSON number grammar.
    pub(super) fn from_checked(text: &str) -> Number {
        Number {
            text: text.to_string(),
        }
    }

    /// A finite float, written as serde_json writes one (`250.0`, `1.5`, `1e+30`); None when
    /// not finite (JSON has no NaN or infinity).
    pub fn from_f64(x: f64) -> Option<Number> {
        if !x.is_finite() {
            return None;
        }
        // Debug is the shortest text that reads back as the same float and keeps `.0`;
        // serde_json writes a positive exponent with a sign.
        let text = format!("{x:?}");
        let text = match text.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => text,
        };
        Some(Number { text })
    }

    /// The number as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Written without fraction or exponent.
    fn is_integer(&self) -> bool {
        !self.text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
    }

    /// A non-negative integer that fits (`2`, not `2.0`, as serde_json).
    pub fn as_u64(&self) -> Option<u64> {
        if self.is_integer() {
            self.text.parse().ok()
        } else {
            None
        }
    }

    /// An integer that fits an `i64` (`-0` is a float in serde_json, and here).
    pub fn as_i64(&self) -> Option<i64> {
        if self.is_integer() && self.text != "-0" {
            self.text.parse().ok()
        } else {
            None
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        crate::float_parse::parse_f64(&self.text)
    }

    pub fn is_f64(&self) -> bool {
        !self.is_integer() || (self.as_u64().is_none() && self.as_i64().is_none())
    }
}

/// Integers compare by value, other numbers as floats; an integer never equals a float
/// (`1` != `1.0`), as in serde_json.
impl PartialEq for Number {
    fn eq(&self, other: &Number) -> bool {
        if self.text == other.text {
            return true;
        }
        match (self.is_f64(), other.is_f64()) {
            (false, false) => match (self.as_i64(), other.as_i64()) {
                (Some(a), Some(b)) => a == b,
                _ => self.as_u64().is_some() && self.as_u64() == other.as_u64(),
            },
            (true, true) => self.as_f64() == other.as_f64(),
            _ => false,
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

macro_rules! from_integer {
    ($($t:ty)*) => {$(
        impl From<$t> for Number {
            fn from(n: $t) -> Self {
                Number { text: n.to_string() }
            }
        }
    )*};
}
from_integer!(u8 u16 u32 u64 usize i8 i16 i32 i64 isize);
