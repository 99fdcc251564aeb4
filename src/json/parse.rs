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
    Parser::new(text, None).document()
}

/// Bytes that must be UTF-8 JSON.
pub fn from_slice(bytes: &[u8]) -> Result<Value, Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => from_str(text),
        Err(e) => Err(error_at(bytes, e.valid_up_to(), "invalid UTF-8")),
    }
}

/// Where [`from_slice_keeping`] keeps a value as its text.
#[derive(Debug, Clone, Copy)]
pub struct Keep<'k> {
    /// How deep the object holding `key` is: 1 for the document's own members.
    pub depth: usize,
    pub key: &'k str,
    /// An object with a member from each of these groups of names is parsed after all, for
    /// the caller to look at (at most 32 groups).
    pub unless_members: &'k [&'k [&'k str]],
}

/// As [`from_slice`], but the object or array that is `keep.key`'s value (in an object at
/// `keep.depth`) becomes [`Value::Raw`] when its text is already what [`write_value`] would
/// write for its tree: a payload that is only passed on is checked and copied, not built into
/// a tree and written again. Any other text there, valid or not, is parsed as usual.
///
/// [`write_value`]: super::write_value
pub fn from_slice_keeping(bytes: &[u8], keep: Keep<'_>) -> Result<Value, Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Parser::new(text, Some(keep)).document(),
        Err(e) => Err(error_at(bytes, e.valid_up_to(), "invalid UTF-8")),
    }
}

fn error_at(input: &[u8], offset: usize, message: &'static str) -> Error {
    let offset = offset.min(input.len());
    let before = &input[..offset];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    // Columns count characters, the offending one included (1-based).
    let column = 1 + input[line_start..offset]
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

struct Parser<'a> {
    /// UTF-8 (checked by the callers): `text`'s bytes.
    input: &'a [u8],
    text: &'a str,
    at: usize,
    depth: usize,
    keep: Option<Keep<'a>>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, keep: Option<Keep<'a>>) -> Self {
        Parser {
            input: text.as_bytes(),
            text,
            at: 0,
            depth: 0,
            keep,
        }
    }

    fn error_at(&self, offset: usize, message: &'static str) -> Error {
        error_at(self.input, offset, message)
    }

    fn error(&self, message: &'static str) -> Error {
        self.error_at(self.at, message)
    }

    // Always inlined: the parser asks for every byte, and the module is built for size, where
    // a call is not inlined on its own.
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    #[inline(always)]
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
            let value = match self.kept(&key) {
                Some(raw) => raw,
                None => self.value()?,
            };
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
                        // No escapes: one copy. Runs start and end beside ASCII bytes.
                        return match self.text.get(start..start + run) {
                            Some(text) => Ok(text.to_string()),
                            None => Err(self.error_at(start, "invalid UTF-8")),
                        };
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
        let (end, exponent) =
            number_end(self.input, start).map_err(|(at, message)| self.error_at(at, message))?;
        self.at = end;
        // Only the grammar's bytes: ASCII.
        let text = self.text.get(start..end).unwrap_or("0");
        // Out of f64's range reads as infinity: refused, as serde_json does.
        if (exponent || text.len() > 300)
            && !crate::float_parse::parse_f64(text).is_some_and(f64::is_finite)
        {
            return Err(self.error_at(start, "number out of range"));
        }
        Ok(Value::Number(Number::from_checked(text)))
    }

    /// `key`'s value as [`Value::Raw`] when [`Keep`] says so and its text is compact.
    fn kept(&mut self, key: &str) -> Option<Value> {
        let keep = self.keep?;
        if self.depth != keep.depth || key != keep.key {
            return None;
        }
        self.skip_whitespace();
        let start = self.at;
        if !matches!(self.peek(), Some(b'{' | b'[')) {
            return None;
        }
        let end = compact_end(self.input, start, self.depth, Some(keep.unless_members))?;
        // Starts and ends at ASCII brackets: char boundaries.
        let text = self.text.get(start..end)?;
        self.at = end;
        Some(Value::Raw(text.to_string()))
    }
}

/// The value at a JSON pointer into text [`from_slice_keeping`] kept ([`Value::Raw`]): the
/// members and elements before it are skipped by scanning, and only the value itself is read.
/// None: no such value (or not kept text).
pub fn raw_pointer(text: &str, pointer: &str) -> Option<Value> {
    let input = text.as_bytes();
    let mut at = 0;
    if !pointer.is_empty() {
        for token in pointer.strip_prefix('/')?.split('/') {
            let token = super::unescape_token(token);
            at = match input.get(at)? {
                b'{' => member_start(input, at, token.as_bytes())?,
                b'[' if token.len() > 1 && token.starts_with('0') => return None,
                b'[' => element_start(input, at, token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
    }
    let end = compact_end(input, at, 0, None)?;
    from_slice(input.get(at..end)?).ok()
}

/// At `{` of kept text: where the value of member `key` starts (kept keys have no escapes and
/// are unique, so their bytes are the key and the first match is the only one).
fn member_start(input: &[u8], at: usize, key: &[u8]) -> Option<usize> {
    let mut at = at + 1;
    if input.get(at) == Some(&b'}') {
        return None;
    }
    loop {
        let end = compact_string_end(input, at)?;
        if input.get(at + 1..end - 1)? == key {
            return Some(end + 1);
        }
        at = compact_end(input, end + 1, 0, None)?;
        if input.get(at) != Some(&b',') {
            return None;
        }
        at += 1;
    }
}

/// At `[` of kept text: where element `index` starts.
fn element_start(input: &[u8], at: usize, index: usize) -> Option<usize> {
    let mut at = at + 1;
    if input.get(at) == Some(&b']') {
        return None;
    }
    for _ in 0..index {
        at = compact_end(input, at, 0, None)?;
        if input.get(at) != Some(&b',') {
            return None;
        }
        at += 1;
    }
    Some(at)
}

/// The end of the value at `at` when its text is what `write_value` writes for its tree but for
/// the order of object members: no whitespace, object keys without escapes and unique, strings
/// escaped as the writer escapes them, numbers without exponent (the parser range-checks those).
/// Members stay in the producer's order: a compact payload passes on byte for byte. None for anything
/// else, valid or not: the parser then reads it, and reports any error as it always did.
/// `depth` counts as the parser's does, so nothing nests deeper than it accepts.
fn compact_end(input: &[u8], at: usize, depth: usize, unless: Option<&[&[&str]]>) -> Option<usize> {
    let open = *input.get(at)?;
    let close = match open {
        b'{' => b'}',
        b'[' => b']',
        b'"' => return compact_string_end(input, at),
        b't' | b'f' | b'n' => {
            let word: &[u8] = match open {
                b't' => b"true",
                b'f' => b"false",
                _ => b"null",
            };
            let end = at + word.len();
            return (input.get(at..end) == Some(word)).then_some(end);
        }
        // Numbers with an exponent or over 300 bytes are range-checked by the parser.
        _ => {
            return match number_end(input, at) {
                Ok((end, false)) if end - at <= 300 => Some(end),
                _ => None,
            }
        }
    };
    if depth >= MAX_DEPTH {
        return None;
    }
    let mut at = at + 1;
    if input.get(at) == Some(&close) {
        return Some(at + 1);
    }
    // Keys must be unique (the parser keeps a repeated key's last value): checked against the
    // first `SEEN` keys, or by their ascending order beyond them.
    const SEEN: usize = 32;
    let mut seen: [&[u8]; SEEN] = [&[]; SEEN];
    let mut count = 0usize;
    let mut ascending = true;
    // The `unless` groups that have a member here, one bit each.
    let mut matched = 0u32;
    let groups = unless.unwrap_or_default();
    loop {
        if open == b'{' {
            let end = compact_string_end(input, at)?;
            let key = input.get(at + 1..end - 1)?;
            if key.contains(&b'\\') {
                return None;
            }
            let last = count.checked_sub(1).and_then(|i| seen.get(i.min(SEEN - 1)));
            if ascending && last.is_some_and(|last| *last >= key) {
                ascending = false;
            }
            let unique = if ascending {
                true
            } else if count < SEEN {
                !seen[..count].contains(&key)
            } else {
                false
            };
            if !unique {
                return None;
            }
            if let Some(slot) = seen.get_mut(count.min(SEEN - 1)) {
                if count < SEEN || ascending {
                    *slot = key;
                }
            }
            count += 1;
            for (g, group) in groups.iter().take(32).enumerate() {
                if group.iter().any(|name| name.as_bytes() == key) {
                    matched |= 1 << g;
                }
            }
            if input.get(end) != Some(&b':') {
                return None;
            }
            at = end + 1;
        }
        at = compact_end(input, at, depth + 1, None)?;
        match input.get(at) {
            Some(&b',') => at += 1,
            Some(&c) if c == close => {
                let all = !groups.is_empty() && matched.count_ones() as usize == groups.len();
                return (!all).then_some(at + 1);
            }
            _ => return None,
        }
    }
}

/// At `"`: the end of a string whose escapes are the writer's (`\"`, `\\`, `\n`, `\r`, `\t`,
/// `\b`, `\f`, `\u00xx` for the other control characters).
fn compact_string_end(input: &[u8], at: usize) -> Option<usize> {
    if input.get(at) != Some(&b'"') {
        return None;
    }
    let mut at = at + 1;
    loop {
        at += super::plain_run(input.get(at..)?);
        match *input.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => {
                at += match *input.get(at + 1)? {
                    b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'f' => 2,
                    b'u' => match *input.get(at + 2..at + 6)? {
                        [b'0', b'0', b'0', b'8' | b'9' | b'a' | b'c' | b'd'] => return None,
                        [b'0', b'0', b'0' | b'1', b'0'..=b'9' | b'a'..=b'f'] => 6,
                        _ => return None,
                    },
                    _ => return None,
                };
            }
            _ => return None,
        }
    }
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?` at `at`: where it ends and whether it
/// has an exponent, or where and why it is no number.
fn number_end(input: &[u8], at: usize) -> Result<(usize, bool), (usize, &'static str)> {
    let digit = |i: usize| input.get(i).is_some_and(u8::is_ascii_digit);
    let digits = |mut i: usize| {
        while digit(i) {
            i += 1;
        }
        i
    };
    let mut i = at;
    if input.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match input.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits(i + 1),
        None => return Err((i, "EOF while parsing a value")),
        Some(_) => return Err((i, "invalid number")),
    };
    if input.get(i) == Some(&b'.') {
        if !digit(i + 1) {
            return Err((i + 1, "invalid number"));
        }
        i = digits(i + 1);
    }
    let exponent = matches!(input.get(i), Some(b'e' | b'E'));
    if exponent {
        i += 1;
        if matches!(input.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digit(i) {
            return Err((i, "invalid number"));
        }
        i = digits(i);
    }
    Ok((i, exponent))
}
