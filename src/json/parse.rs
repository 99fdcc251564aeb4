//! The parser: RFC 8259, whole input, errors with a line, column and byte offset.

use std::fmt;

use super::{Map, Number, Value};

/// Arrays and objects nested deeper than this are refused (serde_json's default limit): the
/// parser recurses, and a policy or event body must not overflow the stack.
pub const MAX_DEPTH: usize = 128;

/// Why a text is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: &'static str,
    /// Byte offset of the offending byte (the input's length at an unexpected end).
    offset: usize,
    line: usize,
    column: usize,
}

impl Error {
    pub fn message(&self) -> &'static str {
        self.message
    }
    pub fn offset(&self) -> usize {
        self.offset
    }
    pub fn line(&self) -> usize {
        self.line
    }
    pub fn column(&self) -> usize {
        self.column
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {} (byte {})",
            self.message, self.line, self.column, self.offset
        )
    }
}

impl std::error::Error for Error {}

pub fn from_str(text: &str) -> Result<Value, Error> {
    Parser::new(text.as_bytes()).document()
}

/// Bytes that must be UTF-8 JSON.
pub fn from_slice(bytes: &[u8]) -> Result<Value, Error> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(Parser::new(bytes).error_at(e.valid_up_to(), "invalid UTF-8"));
    }
    Parser::new(bytes).document()
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Self {
        Parser {
            input,
            at: 0,
            depth: 0,
        }
    }

    fn error_at(&self, offset: usize, message: &'static str) -> Error {
        let offset = offset.min(self.input.len());
        let before = &self.input[..offset];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        // Columns count characters, the offending one included (1-based).
        let column = 1 + self.input[line_start..offset]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count();
        Error {
            message,
            offset,
            line,
            column,
        }
    }

    fn error(&self, message: &'static str) -> Error {
        self.error_at(self.at, message)
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    fn document(mut self) -> Result<Value, Error> {
        let value = self.value()?;
        self.skip_whitespace();
        if self.at < self.input.len() {
            return Err(self.error("trailing characters"));
        }
        Ok(value)
    }

    fn value(&mut self) -> Result<Value, Error> {
        self.skip_whitespace();
        match self.peek() {
            None => Err(self.error("EOF while parsing a value")),
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected value")),
        }
    }

    fn nested(&mut self, parse: fn(&mut Self) -> Result<Value, Error>) -> Result<Value, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("nesting too deep (more than 128 levels)"));
        }
        self.depth += 1;
        self.at += 1;
        let value = parse(self);
        self.depth -= 1;
        value
    }

    fn literal(&mut self, word: &'static str, value: Value) -> Result<Value, Error> {
        let end = self.at + word.len();
        if self.input.get(self.at..end) == Some(word.as_bytes()) {
            self.at = end;
            Ok(value)
        } else {
            Err(self.error("expected value"))
        }
    }

    /// After `[`.
    fn array(&mut self) -> Result<Value, Error> {
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                None => return Err(self.error("EOF while parsing a list")),
                Some(_) => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    /// After `{`. A repeated key keeps its last value.
    fn object(&mut self) -> Result<Value, Error> {
        // Sorted once at the end (most objects come sorted or small): inserting each member
        // in place would be quadratic in a body with many keys.
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Object(Map::new()));
        }
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.error("EOF while parsing an object")),
                Some(_) => return Err(self.error("key must be a string")),
            }
            let key = self.string()?;
            self.skip_whitespace();
            match self.peek() {
                Some(b':') => self.at += 1,
                None => return Err(self.error("EOF while parsing an object")),
                Some(_) => return Err(self.error("expected `:`")),
            }
            let value = self.value()?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Value::Object(Map::from_pairs(members)));
                }
                None => return Err(self.error("EOF while parsing an object")),
                Some(_) => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    /// At `"`: the unescaped string.
    fn string(&mut self) -> Result<String, Error> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let start = self.at;
            // The plain run up to the next quote, backslash or control character.
            let rest = self.input.get(start..).unwrap_or_default();
            let run = super::plain_run(rest);
            self.at += run;
            let plain = &rest[..run];
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    // The input is UTF-8 (checked by the callers) and escapes push whole chars.
                    let invalid = |e: std::str::Utf8Error| {
                        self.error_at(start + e.valid_up_to(), "invalid UTF-8")
                    };
                    if out.is_empty() {
                        // No escapes: one copy.
                        return std::str::from_utf8(plain)
                            .map(str::to_string)
                            .map_err(invalid);
                    }
                    out.extend_from_slice(plain);
                    return String::from_utf8(out).map_err(|e| invalid(e.utf8_error()));
                }
                Some(b'\\') => {
                    out.extend_from_slice(plain);
                    self.at += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    return Err(self
                        .error("control character (\\u0000-\\u001F) found while parsing a string"))
                }
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
    }

    /// After `\`.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let Some(b) = self.peek() else {
            return Err(self.error("EOF while parsing a string"));
        };
        self.at += 1;
        let plain = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let c = self.unicode_escape()?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                return Ok(());
            }
            _ => return Err(self.error_at(self.at - 1, "invalid escape")),
        };
        out.push(plain);
        Ok(())
    }

    /// After `\u`: one code point, a surrogate pair taking two escapes.
    fn unicode_escape(&mut self) -> Result<char, Error> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.input.get(self.at..self.at + 2) != Some(b"\\u") {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                self.at += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error_at(self.at - 6, "invalid surrogate pair in hex escape"));
                }
                0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00)
            }
            0xDC00..=0xDFFF => {
                return Err(self.error_at(self.at - 6, "lone trailing surrogate in hex escape"))
            }
            other => u32::from(other),
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid unicode code point"))
    }

    fn hex4(&mut self) -> Result<u16, Error> {
        let mut value = 0u16;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                None => return Err(self.error("EOF while parsing a string")),
                Some(_) => return Err(self.error("invalid hex escape")),
            };
            value = value * 16 + u16::from(digit);
            self.at += 1;
        }
        Ok(value)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, kept as text.
    fn number(&mut self) -> Result<Value, Error> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            None => return Err(self.error("EOF while parsing a value")),
            Some(_) => return Err(self.error("invalid number")),
        }
        let mut exponent = false;
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            exponent = true;
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number"));
            }
            self.digits();
        }
        // Only the grammar's bytes were consumed: ASCII.
        let text = std::str::from_utf8(&self.input[start..self.at]).unwrap_or("0");
        // Out of f64's range reads as infinity: refused, as serde_json does.
        if (exponent || text.len() > 300)
            && !crate::float_parse::parse_f64(text).is_some_and(f64::is_finite)
        {
            return Err(self.error_at(start, "number out of range"));
        }
        Ok(Value::Number(Number::from_checked(text)))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }
}
