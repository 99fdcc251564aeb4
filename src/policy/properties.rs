//! Instance properties of a resilience4j module, each declared once with its Spring key and
//! its kind ([`properties!`](properties)). The declaration gives a struct with one typed,
//! optional field per property and the table the reader matches keys against; a module's
//! build step destructures the struct field by field, so a property that is declared but not
//! used, or used but not declared, does not compile.

use serde_json::Value;

use super::model::{InitialState, SlidingWindowType};
use super::outcomes::outcomes;
use super::read::{
    boolean, duration_ms, enumeration, error, integer, number, show, string, Key, Result,
};
use crate::outcome::OutcomeMatcher;

/// How a property's value is read and checked.
pub(super) trait Kind {
    type Value: Clone;
    fn read(value: &Value, path: &str, warnings: &mut Vec<String>) -> Result<Self::Value>;
}

/// How one declared property is read into its struct field.
pub(super) struct Reader<P> {
    pub read: fn(&mut P, &Value, &str, &mut Vec<String>) -> Result<()>,
    /// False: exists in Spring, has no meaning in a sidecar; checked, then ignored with a warning.
    pub sidecar: bool,
}

/// The properties of one module, as declared by [`properties!`](properties).
pub(super) trait Properties: Default + 'static {
    /// Every key, deprecated spellings and `base-config` included.
    const KEYS: &'static [Key<Reader<Self>>];
    fn base_config(&self) -> Option<&BaseConfig>;
    /// Takes from `weaker` every property not set here.
    fn fill_from(&mut self, weaker: &Self);
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
/// }
/// ```
/// `ignored` properties exist in Spring but mean nothing in a sidecar: they are checked, kept
/// (a build step may still validate with them) and reported with a warning. Every module also
/// gets `base-config` (field `base_config`), which names the config it builds on.
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
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default)]
        $vis struct $name {
            $(
                $(#[$field_meta])*
                pub $field: Option<<$kind as $crate::policy::properties::Kind>::Value>,
            )+
            $( pub $ignored: Option<<$ignored_kind as $crate::policy::properties::Kind>::Value>, )*
            /// `base-config`: the config these properties build on.
            pub base_config: Option<$crate::policy::properties::BaseConfig>,
        }

        impl $crate::policy::properties::Properties for $name {
            const KEYS: &'static [$crate::policy::read::Key<$crate::policy::properties::Reader<Self>>] = &[
                $(
                    $crate::policy::read::Key {
                        name: $key,
                        deprecated_for: None,
                        target: $crate::policy::properties::Reader {
                            read: |properties, value, path, warnings| {
                                properties.$field = Some(<$kind as $crate::policy::properties::Kind>::read(value, path, warnings)?);
                                Ok(())
                            },
                            sidecar: true,
                        },
                    },
                    $(
                        $crate::policy::read::Key {
                            name: $alias,
                            deprecated_for: Some($key),
                            target: $crate::policy::properties::Reader {
                                read: |properties, value, path, warnings| {
                                    properties.$field = Some(<$kind as $crate::policy::properties::Kind>::read(value, path, warnings)?);
                                    Ok(())
                                },
                                sidecar: true,
                            },
                        },
                    )?
                )+
                $crate::policy::read::Key {
                    name: "base-config",
                    deprecated_for: None,
                    target: $crate::policy::properties::Reader {
                        read: |properties, value, path, warnings| {
                            properties.base_config = Some(<$crate::policy::properties::BaseConfig as $crate::policy::properties::Kind>::read(value, path, warnings)?);
                            Ok(())
                        },
                        sidecar: true,
                    },
                },
                $(
                    $crate::policy::read::Key {
                        name: $ignored_key,
                        deprecated_for: None,
                        target: $crate::policy::properties::Reader {
                            read: |properties, value, path, warnings| {
                                properties.$ignored = Some(<$ignored_kind as $crate::policy::properties::Kind>::read(value, path, warnings)?);
                                Ok(())
                            },
                            sidecar: false,
                        },
                    },
                )*
            ];

            fn base_config(&self) -> Option<&$crate::policy::properties::BaseConfig> {
                self.base_config.as_ref()
            }

            fn fill_from(&mut self, weaker: &Self) {
                $( if self.$field.is_none() { self.$field.clone_from(&weaker.$field); } )+
                $( if self.$ignored.is_none() { self.$ignored.clone_from(&weaker.$ignored); } )*
            }
        }
    };
}
pub(super) use properties;

/// Reads the properties written in one `configs.<name>` or `instances.<name>` object.
pub(super) fn read_properties<P: Properties>(
    value: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<P> {
    let mut properties = P::default();
    for field in super::read::fields(
        value,
        path,
        P::KEYS,
        super::read::Hint::Suggest,
        warnings,
    )? {
        let reader = &field.key.target;
        (reader.read)(&mut properties, field.value, &field.path, warnings)?;
        if !reader.sidecar {
            warnings.push(format!(
                "{}: has no meaning in the sidecar; ignored",
                field.path
            ));
        }
    }
    Ok(properties)
}

// ---------------------------------------------------------------------------------------------
// Kinds.

/// A percentage in (0, 100].
pub(super) struct Percent;

impl Kind for Percent {
    type Value = f64;
    fn read(value: &Value, path: &str, _: &mut Vec<String>) -> Result<f64> {
        let x = number(value, path)?;
        if !(x > 0.0 && x <= 100.0) {
            return Err(error(path, format!("must be in (0, 100], got {}", show(x))));
        }
        Ok(x)
    }
}

/// A duration of at least `MIN_MS`, in milliseconds.
pub(super) struct Duration<const MIN_MS: u64>;

impl<const MIN_MS: u64> Kind for Duration<MIN_MS> {
    type Value = u64;
    fn read(value: &Value, path: &str, _: &mut Vec<String>) -> Result<u64> {
        duration_ms(value, path, MIN_MS)
    }
}

/// An integer in [MIN, MAX], MIN >= 0.
pub(super) struct Int<const MIN: i64, const MAX: i64>;

impl<const MIN: i64, const MAX: i64> Kind for Int<MIN, MAX> {
    type Value = u32;
    fn read(value: &Value, path: &str, _: &mut Vec<String>) -> Result<u32> {
        let n = integer(value, path, MIN, MAX)?;
        Ok(u32::try_from(n).unwrap_or(0))
    }
}

pub(super) struct Bool;

impl Kind for Bool {
    type Value = bool;
    fn read(value: &Value, path: &str, _: &mut Vec<String>) -> Result<bool> {
        boolean(value, path)
    }
}

/// In [0, 1), as resilience4j's randomizedWaitFactor.
pub(super) struct Factor;

impl Kind for Factor {
    type Value = f64;
    fn read(value: &Value, path: &str, _: &mut Vec<String>) -> Result<f64> {
        let x = number(value, path)?;
        if !(0.0..1.0).contains(&x) {
            return Err(error(path, format!("must be in [0, 1), got {}", show(x))));
        }
        Ok(x)
    }
}

/// > 0, as resilience4j's exponentialBackoffMultiplier.
pub(super) struct Multiplier;

impl Kind for Multiplier {
    type Value = f64;
    fn read(value: &Value, path: &str, _: &mut Vec<String>) -> Result<f64> {
        let x = number(value, path)?;
        if x <= 0.0 {
            return Err(error(
                path,
                format!("must be greater than 0, got {}", show(x)),
            ));
        }
        Ok(x)
    }
}

impl Kind for SlidingWindowType {
    type Value = Self;
    fn read(value: &Value, path: &str, _: &mut Vec<String>) -> Result<Self> {
        enumeration(
            value,
            path,
            &[
                ("COUNT_BASED", SlidingWindowType::CountBased),
                ("TIME_BASED", SlidingWindowType::TimeBased),
            ],
        )
    }
}

impl Kind for InitialState {
    type Value = Self;
    fn read(value: &Value, path: &str, _: &mut Vec<String>) -> Result<Self> {
        enumeration(
            value,
            path,
            &[
                ("CLOSED", InitialState::Closed),
                ("DISABLED", InitialState::Disabled),
                ("FORCED_OPEN", InitialState::ForcedOpen),
                ("METRICS_ONLY", InitialState::MetricsOnly),
            ],
        )
    }
}

/// A record/retry list (see [`outcomes`]): an empty one means the default failures.
pub(super) struct FailureList;

impl Kind for FailureList {
    type Value = Vec<OutcomeMatcher>;
    fn read(value: &Value, path: &str, warnings: &mut Vec<String>) -> Result<Self::Value> {
        outcomes(value, path, false, warnings)
    }
}

/// An ignore list (see [`outcomes`]): an empty one ignores nothing.
pub(super) struct IgnoreList;

impl Kind for IgnoreList {
    type Value = Vec<OutcomeMatcher>;
    fn read(value: &Value, path: &str, warnings: &mut Vec<String>) -> Result<Self::Value> {
        outcomes(value, path, true, warnings)
    }
}

/// A Java class name (predicates, interval functions): only its shape is checked.
pub(super) struct ClassName;

impl Kind for ClassName {
    type Value = ();
    fn read(value: &Value, path: &str, _: &mut Vec<String>) -> Result<()> {
        let text = string(value, path)?;
        if !is_class_name(text.trim()) {
            return Err(error(
                path,
                format!(
                    "expected a Java class name, got {}",
                    super::read::describe(value)
                ),
            ));
        }
        Ok(())
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

/// `base-config`: the name of the config a config or instance builds on, and where it was
/// written (for errors about it).
#[derive(Debug, Clone)]
pub(super) struct BaseConfig {
    pub name: String,
    pub path: String,
}

impl Kind for BaseConfig {
    type Value = Self;
    fn read(value: &Value, path: &str, _: &mut Vec<String>) -> Result<Self> {
        Ok(BaseConfig {
            name: string(value, path)?.to_string(),
            path: path.to_string(),
        })
    }
}

