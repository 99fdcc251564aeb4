//! Instance properties of a resilience4j module, each declared once with its Spring key and
//! its kind ([`properties!`](properties)). The declaration gives a struct with one typed,
//! optional field per property and the table the reader matches keys against; a module's
//! build step destructures the struct field by field (no `..`), so a property used but not
//! declared, or declared but left out of the build, does not compile, and one bound but never
//! read fails `make lint` (dead code).
//!
//! Reading is data-driven (one [`read_value`] for every property, values held per layer by
//! position) so that configs, `base-config` chains and `configs.default` resolve the same way
//! for every module; only the last step, into the typed struct, is per module.

use crate::json::Value;

use super::model::{
    rate_threshold_percent, InitialState, SlidingWindowType, StateAfterWait, MAX_WINDOW_SIZE,
    MAX_WINDOW_SIZE_REASON,
};
use super::outcomes::outcomes;
use super::read::{
    boolean, describe, duration_ms, enumeration, error, fields, integer, number, show, string,
    Hint, Key, Result, JAVA_INT_MAX,
};
use crate::outcome::OutcomeMatcher;

/// How a property's value is read and checked.
#[derive(Debug, Clone, Copy)]
pub(super) enum Spec {
    /// A rate threshold percentage in [1, 100], as Spring's setters bound it.
    Percent,
    /// A window size (calls or seconds) or half-open call count in [1, MAX_WINDOW_SIZE].
    WindowSize,
    /// A duration of at least `min_ms`.
    Duration {
        min_ms: u64,
    },
    /// An integer in [min, max], min >= 0.
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    /// In [0, 1), as resilience4j's randomizedWaitFactor.
    Factor,
    /// > 0, as resilience4j's exponentialBackoffMultiplier.
    Multiplier,
    WindowType,
    InitialState,
    StateAfterWait,
    /// A record/ignore/retry list (see [`outcomes`]).
    Outcomes {
        is_ignore_list: bool,
        /// Retry's lists: resilience4j's own refusals (BulkheadFullException,
        /// RequestNotPermitted) mean a refused replay.
        refusals: bool,
    },
    /// A Java class name (predicates, interval functions): only its shape is checked.
    ClassName,
    BaseConfig,
}

/// A checked property value.
#[derive(Debug, Clone)]
pub(super) enum Val {
    Num(f64),
    Int(u32),
    Ms(u64),
    Bool(bool),
    Window(SlidingWindowType),
    State(InitialState),
    AfterWait(StateAfterWait),
    Outcomes(Vec<OutcomeMatcher>),
    /// Checked; nothing to keep (class names).
    Checked,
    Base(BaseConfig),
}

/// `base-config`: the name of the config a config or instance builds on, and where it was
/// written (for errors about it). Empty: none, as in resilience4j.
#[derive(Debug, Clone)]
pub(super) struct BaseConfig {
    pub name: String,
    pub path: String,
}

/// A property's kind as a type: how it is read ([`Spec`]) and the typed value it gives.
pub(super) trait Kind {
    const SPEC: Spec;
    type Value;
    /// The typed value of a value read with [`Self::SPEC`].
    fn take(value: &Val) -> Option<Self::Value>;
}

/// One declared property: its position among the module's values, and how it is read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Prop {
    pub index: usize,
    pub spec: Spec,
    /// False: exists in Spring, has no meaning in a sidecar; checked, then ignored with a warning.
    pub sidecar: bool,
    /// A key resilience4j 2.0 removed: checked, ignored as a 2.x service ignores it, reported
    /// with this text (what it was, what 2.x runs instead).
    pub removed: Option<&'static str>,
}

/// Position of `base-config` among every module's values.
pub(super) const BASE_CONFIG: usize = 0;

/// The properties of one module, as declared by [`properties!`](properties).
pub(super) trait Properties: Sized {
    /// Every key, deprecated spellings and `base-config` included.
    const KEYS: &'static [Key<Prop>];
    /// How many values a layer holds (`base-config` included).
    const COUNT: usize;
    /// The typed properties from resolved values (by position).
    fn from_values(values: &[Option<&Val>]) -> Self;
}

/// Declares a module's instance properties once:
///
/// ```ignore
/// properties! {
///     pub(super) struct RetryProperties {
///         max_attempts: Int<1, JAVA_INT_MAX> = "max-attempts", deprecated "max-retry-attempts";
///         wait_duration: Duration<0> = "wait-duration";
///     }
///     ignored {
///         result_predicate: ClassName = "result-predicate";
///     }
///     removed {
///         "max-retry-attempts": Int<1, JAVA_INT_MAX> => "it was max-attempts; ...";
///     }
/// }
/// ```
/// `removed` (optional) lists keys resilience4j 2.0 removed: a 2.x service ignores them (Spring
/// binds unknown keys to nothing) and runs its defaults, and so does the filter, with a warning
/// carrying the text.
/// `ignored` properties exist in Spring but mean nothing in a sidecar: they are checked, kept
/// (a build step may still validate with them) and reported with a warning. Every module also
/// gets `base-config`, which names the config it builds on (resolved before the struct is
/// built, so not a field).
macro_rules! properties {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$field_meta:meta])*
                $field:ident : $kind:ty = $key:literal $(, deprecated $alias:literal)? ;
            )+
        }
        ignored {
            $( $ignored:ident : $ignored_kind:ty = $ignored_key:literal ; )*
        }
        $( removed {
            $( $removed_key:literal : $removed_kind:ty => $removed_text:literal ; )*
        } )?
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis struct $name {
            $(
                $(#[$field_meta])*
                pub $field: Option<<$kind as $crate::policy::properties::Kind>::Value>,
            )+
            $(
                // A build step may validate with it, or drop it (`field: _`).
                #[allow(dead_code)]
                pub $ignored: Option<<$ignored_kind as $crate::policy::properties::Kind>::Value>,
            )*
        }

        const _: () = {
            use $crate::policy::properties::{Kind, Prop, Properties, Spec, Val, BASE_CONFIG};
            use $crate::policy::read::Key;

            /// Positions of the values: the fields' names, in declaration order, after
            /// `base-config`.
            #[allow(non_camel_case_types)]
            enum Index {
                base_config,
                $( $field, )+
                $( $ignored, )*
                __count,
            }
            const _: () = assert!(Index::base_config as usize == BASE_CONFIG);

            impl Properties for $name {
                const COUNT: usize = Index::__count as usize;
                const KEYS: &'static [Key<Prop>] = &[
                    $(
                        Key {
                            name: $key,
                            deprecated_for: None,
                            target: Prop { index: Index::$field as usize, spec: <$kind as Kind>::SPEC, sidecar: true, removed: None },
                        },
                        $(
                            Key {
                                name: $alias,
                                deprecated_for: Some($key),
                                target: Prop { index: Index::$field as usize, spec: <$kind as Kind>::SPEC, sidecar: true, removed: None },
                            },
                        )?
                    )+
                    Key {
                        name: "base-config",
                        deprecated_for: None,
                        target: Prop { index: BASE_CONFIG, spec: Spec::BaseConfig, sidecar: true, removed: None },
                    },
                    $(
                        Key {
                            name: $ignored_key,
                            deprecated_for: None,
                            target: Prop { index: Index::$ignored as usize, spec: <$ignored_kind as Kind>::SPEC, sidecar: false, removed: None },
                        },
                    )*
                    $( $(
                        Key {
                            name: $removed_key,
                            deprecated_for: None,
                            // Never stored (see read_layer): the index only has to exist.
                            target: Prop { index: BASE_CONFIG, spec: <$removed_kind as Kind>::SPEC, sidecar: false, removed: Some($removed_text) },
                        },
                    )* )?
                ];

                fn from_values(values: &[Option<&Val>]) -> Self {
                    let value = |index: Index| values.get(index as usize).copied().flatten();
                    $name {
                        $( $field: value(Index::$field).and_then(<$kind as Kind>::take), )+
                        $( $ignored: value(Index::$ignored).and_then(<$ignored_kind as Kind>::take), )*
                    }
                }
            }
        };
    };
}
pub(super) use properties;

/// Reads the properties written in one `configs.<name>` or `instances.<name>` object, by
/// position (see [`Properties::KEYS`]).
pub(super) fn read_layer(
    value: &Value,
    path: &str,
    keys: &'static [Key<Prop>],
    count: usize,
    warnings: &mut Vec<String>,
) -> Result<Vec<Option<Val>>> {
    let mut values = Vec::new();
    values.resize_with(count, || None);
    for field in fields(value, path, keys, Hint::Suggest, warnings)? {
        let prop = field.key.target;
        let read = read_value(prop.spec, field.value, &field.path, warnings)?;
        if let Some(text) = prop.removed {
            warnings.push(format!(
                "{}: removed in resilience4j 2.0 ({text})",
                field.path
            ));
            continue;
        }
        if let Some(slot) = values.get_mut(prop.index) {
            *slot = Some(read);
        }
        if !prop.sidecar {
            warnings.push(format!(
                "{}: has no meaning in the sidecar; ignored",
                field.path
            ));
        }
    }
    Ok(values)
}

fn read_value(spec: Spec, value: &Value, path: &str, warnings: &mut Vec<String>) -> Result<Val> {
    Ok(match spec {
        Spec::Percent => {
            let x = number(value, path)?;
            // Spring binds a Java Float, then requires [1, 100]: below 1 % a breaker would
            // open on a failure rate of 0 %.
            let Some(percent) = rate_threshold_percent(x) else {
                return Err(error(
                    path,
                    format!("must be in [1, 100], got {}", describe(value)),
                ));
            };
            Val::Num(f64::from(percent))
        }
        Spec::WindowSize => {
            let n = integer(value, path, 1, JAVA_INT_MAX)?;
            if n > i64::from(MAX_WINDOW_SIZE) {
                return Err(error(
                    path,
                    format!("must be at most {MAX_WINDOW_SIZE}, got {n}: {MAX_WINDOW_SIZE_REASON}"),
                ));
            }
            Val::Int(u32::try_from(n).unwrap_or(MAX_WINDOW_SIZE))
        }
        Spec::Duration { min_ms } => Val::Ms(duration_ms(value, path, min_ms)?),
        Spec::Int { min, max } => {
            let n = integer(value, path, min, max)?;
            Val::Int(u32::try_from(n).unwrap_or(0))
        }
        Spec::Bool => Val::Bool(boolean(value, path)?),
        Spec::Factor => {
            let x = number(value, path)?;
            if !(0.0..1.0).contains(&x) {
                return Err(error(path, format!("must be in [0, 1), got {}", show(x))));
            }
            Val::Num(x)
        }
        Spec::Multiplier => {
            let x = number(value, path)?;
            if x <= 0.0 {
                return Err(error(
                    path,
                    format!("must be greater than 0, got {}", show(x)),
                ));
            }
            if x > super::MAX_MULTIPLIER {
                return Err(error(
                    path,
                    format!(
                        "must be at most {}, got {}",
                        show(super::MAX_MULTIPLIER),
                        show(x)
                    ),
                ));
            }
            Val::Num(x)
        }
        Spec::WindowType => Val::Window(enumeration(
            value,
            path,
            &[
                ("COUNT_BASED", SlidingWindowType::CountBased),
                ("TIME_BASED", SlidingWindowType::TimeBased),
            ],
        )?),
        Spec::InitialState => Val::State(enumeration(
            value,
            path,
            &[
                ("CLOSED", InitialState::Closed),
                ("DISABLED", InitialState::Disabled),
                ("FORCED_OPEN", InitialState::ForcedOpen),
                ("METRICS_ONLY", InitialState::MetricsOnly),
                ("OPEN", InitialState::Open),
                ("HALF_OPEN", InitialState::HalfOpen),
            ],
        )?),
        Spec::StateAfterWait => Val::AfterWait(enumeration(
            value,
            path,
            &[
                ("OPEN", StateAfterWait::Open),
                ("CLOSED", StateAfterWait::Closed),
            ],
        )?),
        Spec::Outcomes {
            is_ignore_list,
            refusals,
        } => Val::Outcomes(outcomes(value, path, is_ignore_list, refusals, warnings)?),
        Spec::ClassName => {
            let text = string(value, path)?;
            if !is_class_name(text.trim()) {
                return Err(error(
                    path,
                    format!("expected a Java class name, got {}", describe(value)),
                ));
            }
            Val::Checked
        }
        Spec::BaseConfig => Val::Base(BaseConfig {
            name: string(value, path)?.to_string(),
            path: path.to_string(),
        }),
    })
}

// ---------------------------------------------------------------------------------------------
// Kinds.

/// A rate threshold percentage in [1, 100].
pub(super) struct Percent;

impl Kind for Percent {
    const SPEC: Spec = Spec::Percent;
    type Value = f64;
    fn take(value: &Val) -> Option<f64> {
        match value {
            Val::Num(x) => Some(*x),
            _ => None,
        }
    }
}

/// A duration of at least `MIN_MS`, in milliseconds.
pub(super) struct Duration<const MIN_MS: u64>;

impl<const MIN_MS: u64> Kind for Duration<MIN_MS> {
    const SPEC: Spec = Spec::Duration { min_ms: MIN_MS };
    type Value = u64;
    fn take(value: &Val) -> Option<u64> {
        match value {
            Val::Ms(ms) => Some(*ms),
            _ => None,
        }
    }
}

/// An integer in [MIN, MAX], MIN >= 0.
pub(super) struct Int<const MIN: i64, const MAX: i64>;

impl<const MIN: i64, const MAX: i64> Kind for Int<MIN, MAX> {
    const SPEC: Spec = Spec::Int { min: MIN, max: MAX };
    type Value = u32;
    fn take(value: &Val) -> Option<u32> {
        match value {
            Val::Int(n) => Some(*n),
            _ => None,
        }
    }
}

pub(super) struct Bool;

impl Kind for Bool {
    const SPEC: Spec = Spec::Bool;
    type Value = bool;
    fn take(value: &Val) -> Option<bool> {
        match value {
            Val::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// In [0, 1), as resilience4j's randomizedWaitFactor.
pub(super) struct Factor;

impl Kind for Factor {
    const SPEC: Spec = Spec::Factor;
    type Value = f64;
    fn take(value: &Val) -> Option<f64> {
        Percent::take(value)
    }
}

/// > 0, as resilience4j's exponentialBackoffMultiplier.
pub(super) struct Multiplier;

impl Kind for Multiplier {
    const SPEC: Spec = Spec::Multiplier;
    type Value = f64;
    fn take(value: &Val) -> Option<f64> {
        Percent::take(value)
    }
}

impl Kind for SlidingWindowType {
    const SPEC: Spec = Spec::WindowType;
    type Value = Self;
    fn take(value: &Val) -> Option<Self> {
        match value {
            Val::Window(window) => Some(*window),
            _ => None,
        }
    }
}

/// A window size or half-open call count in [1, MAX_WINDOW_SIZE].
pub(super) struct WindowSize;

impl Kind for WindowSize {
    const SPEC: Spec = Spec::WindowSize;
    type Value = u32;
    fn take(value: &Val) -> Option<u32> {
        match value {
            Val::Int(n) => Some(*n),
            _ => None,
        }
    }
}

impl Kind for StateAfterWait {
    const SPEC: Spec = Spec::StateAfterWait;
    type Value = Self;
    fn take(value: &Val) -> Option<Self> {
        match value {
            Val::AfterWait(state) => Some(*state),
            _ => None,
        }
    }
}

impl Kind for InitialState {
    const SPEC: Spec = Spec::InitialState;
    type Value = Self;
    fn take(value: &Val) -> Option<Self> {
        match value {
            Val::State(state) => Some(*state),
            _ => None,
        }
    }
}

/// A record/retry list (see [`outcomes`]): an empty one means the default failures.
pub(super) struct FailureList;

impl Kind for FailureList {
    const SPEC: Spec = Spec::Outcomes {
        is_ignore_list: false,
        refusals: false,
    };
    type Value = Vec<OutcomeMatcher>;
    fn take(value: &Val) -> Option<Self::Value> {
        match value {
            Val::Outcomes(list) => Some(list.clone()),
            _ => None,
        }
    }
}

/// An ignore list (see [`outcomes`]): an empty one ignores nothing.
pub(super) struct IgnoreList;

impl Kind for IgnoreList {
    const SPEC: Spec = Spec::Outcomes {
        is_ignore_list: true,
        refusals: false,
    };
    type Value = Vec<OutcomeMatcher>;
    fn take(value: &Val) -> Option<Self::Value> {
        FailureList::take(value)
    }
}

/// Retry's retry-exceptions: a [`FailureList`] in which a bulkhead's or rate limiter's refusal
/// means a refused replay (retried only when listed).
pub(super) struct RetryList;

impl Kind for RetryList {
    const SPEC: Spec = Spec::Outcomes {
        is_ignore_list: false,
        refusals: true,
    };
    type Value = Vec<OutcomeMatcher>;
    fn take(value: &Val) -> Option<Self::Value> {
        FailureList::take(value)
    }
}

/// Retry's ignore-exceptions: an [`IgnoreList`] that may name the refusals too.
pub(super) struct RetryIgnoreList;

impl Kind for RetryIgnoreList {
    const SPEC: Spec = Spec::Outcomes {
        is_ignore_list: true,
        refusals: true,
    };
    type Value = Vec<OutcomeMatcher>;
    fn take(value: &Val) -> Option<Self::Value> {
        FailureList::take(value)
    }
}

/// A Java class name (predicates, interval functions): only its shape is checked.
pub(super) struct ClassName;

impl Kind for ClassName {
    const SPEC: Spec = Spec::ClassName;
    type Value = ();
    fn take(value: &Val) -> Option<()> {
        matches!(value, Val::Checked).then_some(())
    }
}

/// `a.b.C`, `a.b.C$Inner`: dot-separated Java identifiers.
pub(super) fn is_class_name(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
                && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '$')
        })
}
