//! The reader every section of the policy goes through, with one set of rules:
//!
//! - **Relaxed keys**: property keys match as Spring's relaxed binding matches them
//!   (`failure-rate-threshold`, `failureRateThreshold`, `failure_rate_threshold` and
//!   `FAILURE_RATE_THRESHOLD` are one key; see [`canonical_key`]); two spellings of one key in
//!   one object are an error. Names of instances, configs, clusters, headers and topics are map
//!   keys and are kept as written.
//! - **Scalars as strings**: numbers and booleans may be written as strings (`"50"`, `"true"`),
//!   as Spring converts them (YAML-to-JSON tooling often produces them).
//! - **`null` as empty**: where an object is expected, `null` reads as an empty one (YAML writes
//!   an empty mapping as a key without value).
//! - **Paths as written**: every error and warning names the full key path with each key as the
//!   user wrote it, unescaped (`events.topics.order.created.mode`), so a tool can find it again.
//!
//! Object keys are declared once, as an enum ([`keys!`](keys)) or a property table
//! ([`super::properties`]), and matched against that declaration only.

use crate::sorted_map::SortedMap;

use crate::json::{Map, Value};

use crate::duration;

/// A policy error: the full key path and what is wrong, e.g.
/// `resilience4j.circuitbreaker.instances.user-service.failure-rate-threshold: must be in [1, 100], got 120`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

/// For log lines: `path` (kept whole for tools) with each overlong key cut short.
impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", shorten_path(&self.path), self.message)
        }
    }
}

/// Longest key or name echoed whole in a message.
const ECHO_CHARS: usize = 128;

/// A name for a message: whole up to [`ECHO_CHARS`], else its start and its length.
pub(crate) fn shorten(name: &str) -> String {
    let count = name.chars().count();
    if count <= ECHO_CHARS {
        name.to_string()
    } else {
        let head: String = name.chars().take(ECHO_CHARS - 16).collect();
        format!("{head}...({count} chars)")
    }
}

/// A path for a message: overlong segments shortened (a path is cut at dots; a dotted name
/// counts as several short segments, which is fine for a message).
pub(crate) fn shorten_path(path: &str) -> String {
    if path.chars().count() <= 2 * ECHO_CHARS {
        // Whole: every name the policy accepts fits.
        return path.to_string();
    }
    path.split('.').map(shorten).collect::<Vec<_>>().join(".")
}

pub(super) type Result<T> = std::result::Result<T, PolicyError>;

pub(super) fn error(path: &str, message: impl Into<String>) -> PolicyError {
    PolicyError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// `path.key`, the key as written (dots in names such as topics stay unescaped).
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Spring's relaxed binding: case, `-` and `_` do not matter. Two property keys are one key
/// when their canonical forms are equal (`failureRateThreshold` and `FAILURE_RATE_THRESHOLD`
/// are both `failureratethreshold`).
pub fn canonical_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '-' && *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// A value as the user wrote it, compact and cut short, for "got ..." in messages.
pub(crate) fn describe(value: &Value) -> String {
    let text = value.to_json();
    if text.chars().count() > 80 {
        let head: String = text.chars().take(77).collect();
        format!("{head}...")
    } else {
        text
    }
}

/// A number for messages: `120`, not `120.0`.
pub(super) fn show(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        crate::float_text::f64_text(x)
    }
}

pub(super) fn type_error(path: &str, expected: &str, value: &Value) -> PolicyError {
    error(
        path,
        format!("expected {expected}, got {}", describe(value)),
    )
}

// ---------------------------------------------------------------------------------------------
// Objects and keys.

/// Whether a value can be read as an object: an object, or `null` (read as an empty one).
pub(super) fn is_object(value: &Value) -> bool {
    matches!(value, Value::Object(_) | Value::Null)
}

/// An object; `null` reads as an empty one.
pub(super) fn object<'a>(value: &'a Value, path: &str) -> Result<Option<&'a Map<String, Value>>> {
    match value {
        Value::Object(map) => Ok(Some(map)),
        Value::Null => Ok(None),
        other => Err(type_error(path, "an object", other)),
    }
}

/// The entries of a map keyed by names (instances, configs, clusters), names kept verbatim.
pub(super) fn entries<'a>(
    value: &'a Value,
    path: &str,
) -> Result<Vec<(&'a str, &'a Value, String)>> {
    let mut out = Vec::new();
    for (key, value) in object(value, path)?.into_iter().flatten() {
        let entry_path = join(path, key);
        if key.trim().is_empty() {
            return Err(error(&entry_path, "name must not be empty"));
        }
        let chars = key.chars().count();
        if chars > super::MAX_NAME_CHARS {
            // The path is the map's: the name itself is too long to echo.
            return Err(error(
                path,
                format!(
                    "name '{}' is longer than {} characters",
                    shorten(key),
                    super::MAX_NAME_CHARS
                ),
            ));
        }
        out.push((key.as_str(), value, entry_path));
    }
    Ok(out)
}

/// One declared key of an object and what it stands for (`target`: an enum variant, or how a
/// property is read).
pub(super) struct Key<T> {
    /// The kebab-case name, as the documentation spells it.
    pub name: &'static str,
    /// A deprecated spelling: the name it stands for (read as that key, with a warning).
    pub deprecated_for: Option<&'static str>,
    pub target: T,
}

/// What an unknown key's message offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hint {
    /// The nearest known key, when it is a likely typo.
    Suggest,
    /// As `Suggest`; and a resilience4j module the filter does not implement says so.
    Modules,
    /// Every known key (small objects).
    ListKnown,
}

/// An object's keys declared as an enum (see [`keys!`](keys)).
pub(super) trait Keys: Copy + 'static {
    const KEYS: &'static [Key<Self>];
    const HINT: Hint;
}

/// Declares an object's keys once, as an enum whose variants the reader hands back, so a
/// section matches them exhaustively:
///
/// ```ignore
/// keys! {
///     enum TopicKey (Hint::ListKnown) {
///         Mode = "mode",
///         Type = "type",
///         Deprecated = "new-name" | deprecated "old-name",
///     }
/// }
/// ```
macro_rules! keys {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($hint:expr) {
            $( $variant:ident = $key:literal $(| deprecated $alias:literal)? ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $( $variant ),+
        }

        impl $crate::policy::read::Keys for $name {
            const KEYS: &'static [$crate::policy::read::Key<Self>] = &[
                $(
                    $crate::policy::read::Key { name: $key, deprecated_for: None, target: Self::$variant },
                    $( $crate::policy::read::Key { name: $alias, deprecated_for: Some($key), target: Self::$variant }, )?
                )+
            ];
            const HINT: $crate::policy::read::Hint = $hint;
        }
    };
}
pub(super) use keys;

/// The names of a list of declared keys, whatever they stand for (one reader for all lists).
trait KeyNames {
    fn count(&self) -> usize;
    /// Name and, for a deprecated spelling, the name it stands for.
    fn names(&self, index: usize) -> Option<(&'static str, Option<&'static str>)>;
}

impl<T> KeyNames for &[Key<T>] {
    fn count(&self) -> usize {
        self.len()
    }
    fn names(&self, index: usize) -> Option<(&'static str, Option<&'static str>)> {
        self.get(index).map(|k| (k.name, k.deprecated_for))
    }
}

/// One key of an object, matched to its declaration.
pub(super) struct Field<'a, 'k, T> {
    pub key: &'k Key<T>,
    pub value: &'a Value,
    /// Full path, with the key as the user wrote it.
    pub path: String,
}

/// The keys of an object (`null`: none), each matched by relaxed binding to one of `keys`.
/// Deprecated spellings are read with a warning; unknown keys and two spellings of one key are
/// errors.
pub(super) fn fields<'a, 'k, T>(
    value: &'a Value,
    path: &str,
    keys: &'k [Key<T>],
    hint: Hint,
    warnings: &mut Vec<String>,
) -> Result<impl Iterator<Item = Field<'a, 'k, T>>> {
    let found = match_keys(value, path, &keys, hint, warnings)?;
    Ok(found.into_iter().filter_map(move |(index, value, path)| {
        Some(Field {
            key: keys.get(index)?,
            value,
            path,
        })
    }))
}

/// [`fields`] of an object whose keys are an enum: (key, value, path) each.
pub(super) fn keyed<'a, K: Keys>(
    value: &'a Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<impl Iterator<Item = (K, &'a Value, String)>> {
    Ok(fields(value, path, K::KEYS, K::HINT, warnings)?.map(|f| (f.key.target, f.value, f.path)))
}

/// (index into `keys`, value, path) of each key of the object.
fn match_keys<'a>(
    value: &'a Value,
    path: &str,
    keys: &dyn KeyNames,
    hint: Hint,
    warnings: &mut Vec<String>,
) -> Result<Vec<(usize, &'a Value, String)>> {
    let mut out = Vec::new();
    let mut written: SortedMap<&'static str, &'a str> = SortedMap::new();
    for (written_key, value) in object(value, path)?.into_iter().flatten() {
        let key_path = join(path, written_key);
        let canon = canonical_key(written_key);
        let found = (0..keys.count()).find_map(|index| {
            let (name, deprecated_for) = keys.names(index)?;
            (canonical_key(name) == canon).then_some((index, name, deprecated_for))
        });
        let Some((index, name, deprecated_for)) = found else {
            return Err(unknown_key(&key_path, &canon, keys, hint));
        };
        if let Some(name) = deprecated_for {
            warnings.push(format!("{key_path}: deprecated; use {name}"));
        }
        // A deprecated spelling sets the property it stands for.
        let property = deprecated_for.unwrap_or(name);
        if let Some(first) = written.get(property) {
            return Err(error(&key_path, format!("same property as '{first}'")));
        }
        written.insert(property, written_key.as_str());
        out.push((index, value, key_path));
    }
    Ok(out)
}

/// resilience4j modules the filter does not implement (Spring prefixes under resilience4j).
pub const UNSUPPORTED_MODULES: [&str; 2] = ["scheduled", "micrometer"];

fn unknown_key(path: &str, canon: &str, keys: &dyn KeyNames, hint: Hint) -> PolicyError {
    let all = (0..keys.count()).filter_map(|index| keys.names(index));
    let current = all
        .clone()
        .filter(|(_, deprecated_for)| deprecated_for.is_none());
    match hint {
        Hint::ListKnown => {
            let names: Vec<&str> = current.map(|(name, _)| name).collect();
            return error(path, format!("unknown key (known: {})", names.join(", ")));
        }
        Hint::Modules => {
            if let Some(module) = UNSUPPORTED_MODULES
                .iter()
                .find(|m| canonical_key(m) == canon)
            {
                return error(
                    path,
                    format!("resilience4j {module} is not supported by this filter (only circuitbreaker, retry, bulkhead, thread-pool-bulkhead, ratelimiter and timelimiter)"),
                );
            }
        }
        Hint::Suggest => {}
    }
    // Current names first, so a tie goes to the name to use rather than a deprecated one.
    let candidates = current.chain(all.filter(|(_, deprecated_for)| deprecated_for.is_some()));
    let best = candidates
        .map(|(name, _)| (edit_distance(&canonical_key(name), canon), name))
        .min_by_key(|(distance, _)| *distance);
    match best {
        // Short keys get only one edit: "code" is no typo of "body".
        Some((distance, name)) if distance <= (canon.len() / 4).clamp(1, 2) => {
            error(path, format!("unknown key (did you mean '{name}'?)"))
        }
        _ => error(path, "unknown key"),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(usize::from(ca != *cb));
            let delete = previous
                .get(j + 1)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let insert = current
                .get(j)
                .copied()
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(usize::MAX)
}

// ---------------------------------------------------------------------------------------------
// Scalars.

/// A number, or a string holding one (Spring converts strings to numbers). None: neither, or
/// not finite.
pub(super) fn as_number(value: &Value) -> Option<f64> {
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => crate::float_parse::parse_f64(s.trim()),
        _ => None,
    };
    parsed.filter(|x| x.is_finite())
}

pub(super) fn number(value: &Value, path: &str) -> Result<f64> {
    as_number(value).ok_or_else(|| type_error(path, "a number", value))
}

/// Java's Integer.MAX_VALUE: the bound of every Spring `Integer` property.
pub(super) const JAVA_INT_MAX: i64 = i32::MAX as i64;

pub(super) fn integer(value: &Value, path: &str, min: i64, max: i64) -> Result<i64> {
    let x = number(value, path)?;
    if x.fract() != 0.0 {
        return Err(error(path, format!("must be an integer, got {}", show(x))));
    }
    if x < min as f64 || x > max as f64 {
        let message = if max == JAVA_INT_MAX {
            format!("must be at least {min}, got {}", show(x))
        } else {
            format!("must be in [{min}, {max}], got {}", show(x))
        };
        return Err(error(path, message));
    }
    Ok(x as i64)
}

/// Spring's StringToBooleanConverter accepts true/false, on/off, yes/no, 1/0.
pub(super) fn boolean(value: &Value, path: &str) -> Result<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" => Ok(false),
            _ => Err(type_error(path, "a boolean", value)),
        },
        other => Err(type_error(path, "a boolean", other)),
    }
}

pub(super) fn string<'a>(value: &'a Value, path: &str) -> Result<&'a str> {
    match value {
        Value::String(s) => Ok(s.as_str()),
        other => Err(type_error(path, "a string", other)),
    }
}

pub(super) fn duration_ms(value: &Value, path: &str, min_ms: u64) -> Result<u64> {
    let ms = duration::parse_duration_ms(value).map_err(|message| error(path, message))?;
    if ms < min_ms {
        return Err(error(
            path,
            format!("must be at least {min_ms}ms, got {}", describe(value)),
        ));
    }
    Ok(ms)
}

/// The option a Spring enum value names, relaxed like keys (`COUNT_BASED`, `count-based`,
/// `countBased`). None: not a string, or no option.
pub(super) fn enum_option<T: Copy>(value: &Value, options: &[(&str, T)]) -> Option<T> {
    let canon = canonical_key(value.as_str()?.trim());
    options
        .iter()
        .find(|(name, _)| canonical_key(name) == canon)
        .map(|(_, option)| *option)
}

/// A Spring enum value (see [`enum_option`]).
pub(super) fn enumeration<T: Copy>(value: &Value, path: &str, options: &[(&str, T)]) -> Result<T> {
    string(value, path)?;
    enum_option(value, options).ok_or_else(|| {
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        error(
            path,
            format!(
                "must be one of {}, got {}",
                names.join(", "),
                describe(value)
            ),
        )
    })
}
