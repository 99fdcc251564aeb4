//! The `resilience4j` tree, read as resilience4j's Spring Boot binding reads it
//! (`CommonCircuitBreakerConfigurationProperties` / `CommonRetryConfigurationProperties` in
//! resilience4j-framework-common): `configs.<name>`, `instances.<name>` (alias `backends`),
//! `base-config`, each property of `InstanceProperties`, and the section keys `tags`,
//! `<module>-aspect-order` and `metrics`. Properties that exist in Spring but mean nothing in a
//! sidecar are checked loosely and ignored with a warning.
//!
//! Resolution of one instance, weakest first: resilience4j's defaults, `configs.default` (the
//! implicit base of every instance and config without `base-config`), the `base-config` chain,
//! the instance's own keys.
//!
//! A module is its [`Module`] implementation: the properties it declares
//! ([`properties!`](super::properties::properties)) and how they build its model. Adding one
//! (timelimiter, bulkhead, ...): declare its properties, implement [`Module`] (aspect-order key,
//! build), add its key to `ModuleKey` (the compiler then asks for it in [`read`]) and its
//! instances to the model, and take it off `UNSUPPORTED_MODULES`.

use crate::sorted_map::SortedMap;

use crate::json::Value;

use super::admission::{BulkheadProperties, RateLimiterProperties, ThreadPoolBulkheadProperties};
use super::model::{
    BreakerConfig, BulkheadConfig, InitialState, RateLimiterConfig, RetryConfig, SlidingWindowType,
    StateAfterWait, ThreadPoolBulkheadConfig, TimeLimiterConfig,
};
use super::properties::{
    properties, read_layer, BaseConfig, Bool, ClassName, Duration, Factor, FailureList, IgnoreList,
    Int, Multiplier, Percent, Prop, Properties, RetryIgnoreList, RetryList, Val, WindowSize,
    BASE_CONFIG,
};
use super::read::{
    entries, error, integer, join, keyed, keys, object, shorten, string, Hint, Key, Result,
    JAVA_INT_MAX,
};

/// Breakers are shared-data keys and ~20 stats each, retries a budget key and stats each:
/// at most this many circuit breaker and retry instances together.
pub const MAX_INSTANCES: usize = 256;

/// base-config chains longer than this are rejected (also bounds the work on hostile input).
const MAX_CHAIN: usize = 32;

/// A validated `resilience4j` tree: its instances, resolved.
#[derive(Default)]
pub(super) struct Resilience4j {
    pub circuit_breakers: SortedMap<String, BreakerConfig>,
    pub retries: SortedMap<String, RetryConfig>,
    pub bulkheads: SortedMap<String, BulkheadConfig>,
    pub thread_pool_bulkheads: SortedMap<String, ThreadPoolBulkheadConfig>,
    pub rate_limiters: SortedMap<String, RateLimiterConfig>,
    pub time_limiters: SortedMap<String, TimeLimiterConfig>,
}

keys! {
    enum ModuleKey (Hint::Modules) {
        CircuitBreaker = "circuitbreaker",
        Retry = "retry",
        Bulkhead = "bulkhead",
        ThreadPoolBulkhead = "thread-pool-bulkhead",
        RateLimiter = "ratelimiter",
        TimeLimiter = "timelimiter",
    }
}

/// Reads the `resilience4j` tree at `path`.
pub(super) fn read(value: &Value, path: &str, warnings: &mut Vec<String>) -> Result<Resilience4j> {
    let mut tree = Resilience4j {
        circuit_breakers: SortedMap::new(),
        retries: SortedMap::new(),
        bulkheads: SortedMap::new(),
        thread_pool_bulkheads: SortedMap::new(),
        rate_limiters: SortedMap::new(),
        time_limiters: SortedMap::new(),
    };
    let mut circuit_breakers = None;
    let mut retries = None;
    let mut time_limiters = None;
    for (key, value, path) in keyed(value, path, warnings)? {
        match key {
            ModuleKey::CircuitBreaker => circuit_breakers = Some((value, path)),
            ModuleKey::Retry => retries = Some((value, path)),
            ModuleKey::Bulkhead => {
                tree.bulkheads = read_module::<BulkheadProperties>(value, &path, warnings)?;
            }
            ModuleKey::ThreadPoolBulkhead => {
                tree.thread_pool_bulkheads =
                    read_module::<ThreadPoolBulkheadProperties>(value, &path, warnings)?;
            }
            ModuleKey::RateLimiter => {
                tree.rate_limiters = read_module::<RateLimiterProperties>(value, &path, warnings)?;
            }
            ModuleKey::TimeLimiter => time_limiters = Some((value, path)),
        }
    }
    if let Some((value, path)) = circuit_breakers {
        tree.circuit_breakers = read_module::<BreakerProperties>(value, &path, warnings)?;
        check_stat_names(&path, tree.circuit_breakers.keys())?;
    }
    if let Some((value, path)) = retries {
        tree.retries = read_module::<RetryProperties>(value, &path, warnings)?;
        check_stat_names(&path, tree.retries.keys())?;
    }
    if let Some((value, path)) = time_limiters {
        tree.time_limiters = read_module::<TimeLimiterProperties>(value, &path, warnings)?;
        if tree.time_limiters.len() > MAX_INSTANCES {
            return Err(error(
                &path,
                format!(
                    "at most {MAX_INSTANCES} time limiter instances, got {}",
                    tree.time_limiters.len()
                ),
            ));
        }
        for (name, config) in &tree.time_limiters {
            if !config.cancel_running_future {
                warnings.push(format!(
                    "{path}.instances.{name}.cancel-running-future: false cannot be honoured \
                     (Envoy resets a timed-out upstream request); write true instead, nothing \
                     else changes"
                ));
            }
        }
    }
    let instances = tree.circuit_breakers.len() + tree.retries.len();
    if instances > MAX_INSTANCES {
        return Err(error(
            path,
            format!("at most {MAX_INSTANCES} circuit breaker and retry instances, got {instances}"),
        ));
    }
    let admission =
        tree.bulkheads.len() + tree.thread_pool_bulkheads.len() + tree.rate_limiters.len();
    if admission > MAX_INSTANCES {
        return Err(error(
            path,
            format!("at most {MAX_INSTANCES} bulkhead, thread-pool-bulkhead and ratelimiter instances, got {admission}"),
        ));
    }
    Ok(tree)
}

/// Two instances of one module whose names differ only by `.` vs `_` would share one set of
/// Envoy stats (the host writes dots in names as `_`: Envoy cuts tags at dots), so one's
/// counts would show up as the other's: refused.
fn check_stat_names<'a>(path: &str, names: impl Iterator<Item = &'a String>) -> Result<()> {
    let mut seen: SortedMap<String, &str> = SortedMap::new();
    for name in names {
        let segment = name.replace('.', "_");
        if let Some(other) = seen.insert(segment, name.as_str()) {
            return Err(error(
                &join(path, "instances"),
                format!(
                    "instances '{}' and '{}' would share one set of stats (dots in names are \
                     written as '_'): rename one",
                    shorten(other),
                    shorten(name)
                ),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// One module: sections, configs and base-config resolution.

/// A resilience4j module the filter implements.
pub(super) trait Module: Properties {
    /// The Spring property of the module's aspect order, a section-level key.
    const ASPECT_ORDER: &'static str;
    /// What one instance compiles to.
    type Config;
    /// Builds an instance from its resolved properties; `path` is the instance's.
    fn build(self, path: &str) -> Result<Self::Config>;
}

/// The keys of a module's section. Not declared with `keys!`: the aspect-order key is named
/// after the module (see [`section_keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SectionKey {
    Instances,
    Configs,
    Tags,
    Metrics,
    AspectOrder,
}

fn section_keys(aspect_order: &'static str) -> [Key<SectionKey>; 6] {
    let key = |name, target| Key {
        name,
        deprecated_for: None,
        target,
    };
    [
        key("instances", SectionKey::Instances),
        Key {
            name: "backends",
            deprecated_for: Some("instances"),
            target: SectionKey::Instances,
        },
        key("configs", SectionKey::Configs),
        key("tags", SectionKey::Tags),
        key("metrics", SectionKey::Metrics),
        key(aspect_order, SectionKey::AspectOrder),
    ]
}

/// The values written in one `configs.<name>` or `instances.<name>` object, by position.
struct Layer {
    path: String,
    values: Vec<Option<Val>>,
}

impl Layer {
    /// `base-config`, unless empty (resilience4j treats an empty base-config as none).
    fn base_config(&self) -> Option<&BaseConfig> {
        match self.values.get(BASE_CONFIG) {
            Some(Some(Val::Base(base))) if !base.name.is_empty() => Some(base),
            _ => None,
        }
    }
}

struct Section {
    configs: SortedMap<String, Layer>,
    instances: SortedMap<String, Layer>,
}

fn read_module<M: Module>(
    value: &Value,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<SortedMap<String, M::Config>> {
    let section = read_section(value, path, M::KEYS, M::COUNT, M::ASPECT_ORDER, warnings)?;
    let mut out = SortedMap::new();
    for (name, layer) in &section.instances {
        let values = section.resolve(layer)?;
        out.insert(name.clone(), M::from_values(&values).build(&layer.path)?);
    }
    Ok(out)
}

fn read_section(
    value: &Value,
    path: &str,
    keys: &'static [Key<Prop>],
    count: usize,
    aspect_order: &'static str,
    warnings: &mut Vec<String>,
) -> Result<Section> {
    let mut section = Section {
        configs: SortedMap::new(),
        instances: SortedMap::new(),
    };
    let section_keys = section_keys(aspect_order);
    for field in super::read::fields(value, path, &section_keys, Hint::Suggest, warnings)? {
        let (value, path) = (field.value, field.path.as_str());
        match field.key.target {
            SectionKey::Instances => {
                for (name, value, path) in entries(value, path)? {
                    check_instance_name(name, &path)?;
                    let values = read_layer(value, &path, keys, count, warnings)?;
                    section
                        .instances
                        .insert(name.to_string(), Layer { path, values });
                }
            }
            SectionKey::Configs => {
                for (name, value, path) in entries(value, path)? {
                    let values = read_layer(value, &path, keys, count, warnings)?;
                    section
                        .configs
                        .insert(name.to_string(), Layer { path, values });
                }
            }
            SectionKey::Tags => {
                for (_, value, path) in entries(value, path)? {
                    string(value, &path)?;
                }
                ignored(path, warnings);
            }
            SectionKey::Metrics => {
                object(value, path)?;
                ignored(path, warnings);
            }
            SectionKey::AspectOrder => {
                integer(value, path, i32::MIN as i64, JAVA_INT_MAX)?;
                ignored(path, warnings);
            }
        }
    }
    // Every config is checked (unknown base-config, cycles) even when no instance uses it.
    for (name, layer) in &section.configs {
        section.chain(layer, Some(name))?;
    }
    Ok(section)
}

fn ignored(path: &str, warnings: &mut Vec<String>) {
    warnings.push(format!("{path}: has no meaning in the sidecar; ignored"));
}

/// Instance names become part of shared-data keys and stat names.
fn check_instance_name(name: &str, path: &str) -> Result<()> {
    if name.chars().count() > 100 {
        return Err(error(path, "instance name must be at most 100 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(error(
            path,
            "instance name may only contain ASCII letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

impl Section {
    /// The values of an instance: each the first written along its layers.
    fn resolve<'s>(&'s self, instance: &'s Layer) -> Result<Vec<Option<&'s Val>>> {
        let mut values: Vec<Option<&Val>> = instance.values.iter().map(Option::as_ref).collect();
        for layer in self.chain(instance, None)?.into_iter().skip(1) {
            for (value, weaker) in values.iter_mut().zip(&layer.values) {
                if value.is_none() {
                    *value = weaker.as_ref();
                }
            }
        }
        Ok(values)
    }

    /// The layers that make up `own`, strongest first: `own`, its base-config chain, then
    /// (unless already in it) `configs.default` and its chain.
    fn chain<'s>(&'s self, own: &'s Layer, own_config: Option<&'s str>) -> Result<Vec<&'s Layer>> {
        let mut layers = vec![own];
        let mut seen: Vec<&str> = own_config.into_iter().collect();
        let mut current = own;
        while let Some(base) = current.base_config() {
            let name = base.name.as_str();
            if seen.contains(&name) {
                let mut cycle = seen.clone();
                cycle.push(name);
                return Err(error(
                    &base.path,
                    format!("base-config cycle: {}", cycle.join(" -> ")),
                ));
            }
            if layers.len() >= MAX_CHAIN {
                return Err(error(
                    &base.path,
                    format!("base-config chain longer than {MAX_CHAIN}"),
                ));
            }
            let Some((config_name, next)) = self.configs.get_key_value(name) else {
                return Err(error(&base.path, format!("unknown config '{name}'")));
            };
            seen.push(config_name.as_str());
            layers.push(next);
            current = next;
        }
        if !seen.contains(&"default") {
            if let Some(default) = self.configs.get("default") {
                for layer in self.chain(default, Some("default"))? {
                    if !layers.iter().any(|l| std::ptr::eq(*l, layer)) {
                        layers.push(layer);
                    }
                }
            }
        }
        Ok(layers)
    }
}

// ---------------------------------------------------------------------------------------------
// circuitbreaker

properties! {
    /// CommonCircuitBreakerConfigurationProperties.InstanceProperties, plus the ring buffer
    /// sizes resilience4j 2.0 removed. Window and half-open call counts are bounded: windows live in shared
    /// memory.
    pub(super) struct BreakerProperties {
        failure_rate_threshold: Percent = "failure-rate-threshold";
        slow_call_rate_threshold: Percent = "slow-call-rate-threshold";
        slow_call_duration_threshold: Duration<1> = "slow-call-duration-threshold";
        sliding_window_type: SlidingWindowType = "sliding-window-type";
        sliding_window_size: WindowSize = "sliding-window-size";
        minimum_number_of_calls: Int<1, JAVA_INT_MAX> = "minimum-number-of-calls";
        wait_duration_in_open_state: Duration<1> = "wait-duration-in-open-state";
        automatic_transition_from_open_to_half_open_enabled: Bool =
            "automatic-transition-from-open-to-half-open-enabled";
        permitted_number_of_calls_in_half_open_state: WindowSize =
            "permitted-number-of-calls-in-half-open-state";
        max_wait_duration_in_half_open_state: Duration<0> = "max-wait-duration-in-half-open-state";
        transition_to_state_after_wait_duration: StateAfterWait =
            "transition-to-state-after-wait-duration";
        enable_exponential_backoff: Bool = "enable-exponential-backoff";
        exponential_backoff_multiplier: Multiplier = "exponential-backoff-multiplier";
        exponential_max_wait_duration_in_open_state: Duration<1> =
            "exponential-max-wait-duration-in-open-state";
        enable_randomized_wait: Bool = "enable-randomized-wait";
        randomized_wait_factor: Factor = "randomized-wait-factor";
        record_exceptions: FailureList = "record-exceptions";
        ignore_exceptions: IgnoreList = "ignore-exceptions";
        /// resilience4j 2.4's initialState: any state, OPEN and HALF_OPEN included.
        initial_state: InitialState = "initial-state";
    }
    ignored {
        writable_stack_trace_enabled: Bool = "writable-stack-trace-enabled";
        register_health_indicator: Bool = "register-health-indicator";
        allow_health_indicator_to_fail: Bool = "allow-health-indicator-to-fail";
        event_consumer_buffer_size: Int<1, JAVA_INT_MAX> = "event-consumer-buffer-size";
        record_failure_predicate: ClassName = "record-failure-predicate";
        record_result_predicate: ClassName = "record-result-predicate";
        ignore_exception_predicate: ClassName = "ignore-exception-predicate";
        ignore_class_binding_exceptions: Bool = "ignore-class-binding-exceptions";
    }
    removed {
        "ring-buffer-size-in-closed-state": Int<1, JAVA_INT_MAX> =>
            "1.x: sliding-window-size and minimum-number-of-calls, COUNT_BASED; a 2.x service \
             ignores it and so does the sidecar: sliding-window-size and \
             minimum-number-of-calls stay 100, the defaults, unless set elsewhere. Write them \
             instead";
        "ring-buffer-size-in-half-open-state": Int<1, JAVA_INT_MAX> =>
            "1.x: permitted-number-of-calls-in-half-open-state; a 2.x service ignores it and so \
             does the sidecar: it stays 10, the default, unless set elsewhere. Write \
             permitted-number-of-calls-in-half-open-state instead";
    }
}

/// resilience4j's IntervalFunction.DEFAULT_MULTIPLIER, for the open-state wait too.
const DEFAULT_MULTIPLIER: f64 = 1.5;
/// resilience4j's IntervalFunction.DEFAULT_RANDOMIZATION_FACTOR, for the open-state wait too.
const DEFAULT_RANDOMIZATION_FACTOR: f64 = 0.5;

impl Module for BreakerProperties {
    const ASPECT_ORDER: &'static str = "circuit-breaker-aspect-order";
    type Config = BreakerConfig;

    fn build(self, path: &str) -> Result<BreakerConfig> {
        let BreakerProperties {
            failure_rate_threshold,
            slow_call_rate_threshold,
            slow_call_duration_threshold,
            sliding_window_type,
            sliding_window_size,
            minimum_number_of_calls,
            wait_duration_in_open_state,
            automatic_transition_from_open_to_half_open_enabled,
            permitted_number_of_calls_in_half_open_state,
            max_wait_duration_in_half_open_state,
            transition_to_state_after_wait_duration,
            enable_exponential_backoff,
            exponential_backoff_multiplier,
            exponential_max_wait_duration_in_open_state,
            record_exceptions,
            ignore_exceptions,
            initial_state,
            enable_randomized_wait,
            randomized_wait_factor,
            writable_stack_trace_enabled: _,
            register_health_indicator: _,
            allow_health_indicator_to_fail: _,
            event_consumer_buffer_size: _,
            record_failure_predicate: _,
            record_result_predicate: _,
            ignore_exception_predicate: _,
            ignore_class_binding_exceptions: _,
        } = self;
        let exponential = enable_exponential_backoff.unwrap_or(false);
        if exponential && enable_randomized_wait.unwrap_or(false) {
            // resilience4j refuses this combination for the open-state wait.
            return Err(error(
                path,
                "enable-exponential-backoff and enable-randomized-wait cannot both be true",
            ));
        }
        let d = BreakerConfig::default();
        Ok(BreakerConfig {
            failure_rate_threshold: failure_rate_threshold
                .map_or(d.failure_rate_threshold, |x| x as f32),
            slow_call_rate_threshold: slow_call_rate_threshold
                .map_or(d.slow_call_rate_threshold, |x| x as f32),
            slow_call_duration_threshold_ms: slow_call_duration_threshold
                .unwrap_or(d.slow_call_duration_threshold_ms),
            sliding_window_type: sliding_window_type.unwrap_or(d.sliding_window_type),
            sliding_window_size: sliding_window_size.unwrap_or(d.sliding_window_size),
            minimum_number_of_calls: minimum_number_of_calls.unwrap_or(d.minimum_number_of_calls),
            wait_duration_in_open_state_ms: wait_duration_in_open_state
                .unwrap_or(d.wait_duration_in_open_state_ms),
            automatic_transition_from_open_to_half_open_enabled:
                automatic_transition_from_open_to_half_open_enabled
                    .unwrap_or(d.automatic_transition_from_open_to_half_open_enabled),
            permitted_number_of_calls_in_half_open_state:
                permitted_number_of_calls_in_half_open_state
                    .unwrap_or(d.permitted_number_of_calls_in_half_open_state),
            max_wait_duration_in_half_open_state_ms: max_wait_duration_in_half_open_state
                .unwrap_or(d.max_wait_duration_in_half_open_state_ms),
            open_wait_multiplier: if exponential {
                exponential_backoff_multiplier.unwrap_or(DEFAULT_MULTIPLIER)
            } else {
                d.open_wait_multiplier
            },
            open_wait_max_ms: if exponential {
                exponential_max_wait_duration_in_open_state
            } else {
                d.open_wait_max_ms
            },
            transition_to_state_after_wait_duration: transition_to_state_after_wait_duration
                .unwrap_or(d.transition_to_state_after_wait_duration),
            // IntervalFunction.ofRandomized's default factor 0.5.
            open_wait_randomization_factor: if enable_randomized_wait.unwrap_or(false) {
                Some(randomized_wait_factor.unwrap_or(DEFAULT_RANDOMIZATION_FACTOR))
            } else {
                d.open_wait_randomization_factor
            },
            initial_state: initial_state.unwrap_or(d.initial_state),
            record: record_exceptions.unwrap_or(d.record),
            ignore: ignore_exceptions.unwrap_or(d.ignore),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// retry

properties! {
    /// CommonRetryConfigurationProperties.InstanceProperties, plus max-retry-attempts, which
    /// resilience4j 2.0 removed.
    pub(super) struct RetryProperties {
        max_attempts: Int<1, JAVA_INT_MAX> = "max-attempts";
        wait_duration: Duration<0> = "wait-duration";
        enable_exponential_backoff: Bool = "enable-exponential-backoff";
        exponential_backoff_multiplier: Multiplier = "exponential-backoff-multiplier";
        exponential_max_wait_duration: Duration<1> = "exponential-max-wait-duration";
        enable_randomized_wait: Bool = "enable-randomized-wait";
        randomized_wait_factor: Factor = "randomized-wait-factor";
        fail_after_max_attempts: Bool = "fail-after-max-attempts";
        retry_exceptions: RetryList = "retry-exceptions";
        ignore_exceptions: RetryIgnoreList = "ignore-exceptions";
    }
    ignored {
        retry_exception_predicate: ClassName = "retry-exception-predicate";
        result_predicate: ClassName = "result-predicate";
        interval_bi_function: ClassName = "interval-bi-function";
        consume_result_before_retry_attempt: ClassName = "consume-result-before-retry-attempt";
        event_consumer_buffer_size: Int<1, JAVA_INT_MAX> = "event-consumer-buffer-size";
    }
    removed {
        "max-retry-attempts": Int<1, JAVA_INT_MAX> =>
            "1.x: max-attempts, the first call included; a 2.x service ignores it and so does \
             the sidecar: max-attempts stays 3, the default, unless set elsewhere. Write \
             max-attempts instead";
    }
}

impl Module for RetryProperties {
    const ASPECT_ORDER: &'static str = "retry-aspect-order";
    type Config = RetryConfig;

    fn build(self, path: &str) -> Result<RetryConfig> {
        let RetryProperties {
            max_attempts,
            wait_duration,
            enable_exponential_backoff,
            exponential_backoff_multiplier,
            exponential_max_wait_duration,
            enable_randomized_wait,
            randomized_wait_factor,
            fail_after_max_attempts,
            retry_exceptions,
            ignore_exceptions,
            retry_exception_predicate: _,
            result_predicate: _,
            interval_bi_function: _,
            consume_result_before_retry_attempt: _,
            event_consumer_buffer_size: _,
        } = self;
        let d = RetryConfig::default();
        let config = RetryConfig {
            max_attempts: max_attempts.unwrap_or(d.max_attempts),
            wait_duration_ms: wait_duration.unwrap_or(d.wait_duration_ms),
            enable_exponential_backoff: enable_exponential_backoff
                .unwrap_or(d.enable_exponential_backoff),
            exponential_backoff_multiplier: exponential_backoff_multiplier
                .unwrap_or(d.exponential_backoff_multiplier),
            exponential_max_wait_duration_ms: exponential_max_wait_duration
                .or(d.exponential_max_wait_duration_ms),
            enable_randomized_wait: enable_randomized_wait.unwrap_or(d.enable_randomized_wait),
            randomized_wait_factor: randomized_wait_factor.unwrap_or(d.randomized_wait_factor),
            fail_after_max_attempts: fail_after_max_attempts.unwrap_or(d.fail_after_max_attempts),
            retry_on: retry_exceptions.unwrap_or(d.retry_on),
            ignore: ignore_exceptions.unwrap_or(d.ignore),
        };
        if config.wait_duration_ms == 0
            && (config.enable_exponential_backoff || config.enable_randomized_wait)
        {
            // resilience4j's IntervalFunction rejects a 0 ms interval for these.
            return Err(error(
                path,
                "wait-duration must be at least 1ms when exponential backoff or randomized wait is enabled",
            ));
        }
        Ok(config)
    }
}

// ---------------------------------------------------------------------------------------------
// timelimiter

properties! {
    /// CommonTimeLimiterConfigurationProperties.InstanceProperties.
    pub(super) struct TimeLimiterProperties {
        timeout_duration: Duration<0> = "timeout-duration";
        cancel_running_future: Bool = "cancel-running-future";
    }
    ignored {
        event_consumer_buffer_size: Int<1, JAVA_INT_MAX> = "event-consumer-buffer-size";
    }
}

impl Module for TimeLimiterProperties {
    const ASPECT_ORDER: &'static str = "time-limiter-aspect-order";
    type Config = TimeLimiterConfig;

    fn build(self, _path: &str) -> Result<TimeLimiterConfig> {
        let TimeLimiterProperties {
            timeout_duration,
            cancel_running_future,
            event_consumer_buffer_size: _,
        } = self;
        let d = TimeLimiterConfig::default();
        Ok(TimeLimiterConfig {
            timeout_duration_ms: timeout_duration.unwrap_or(d.timeout_duration_ms),
            cancel_running_future: cancel_running_future.unwrap_or(d.cancel_running_future),
        })
    }
}
