//! The filter's policy: the resilience4j tree a Spring service keeps under `resilience4j:`,
//! plus the filter's own keys beside it, read into the validated `model`.
//!
//! One reader ([`read`]) reads every section with one set of rules (relaxed keys, scalars as
//! strings, `null` as empty, error paths as the user wrote them) and one error type,
//! [`PolicyError`]. The sections: [`resilience4j`] (its modules' instance properties declared
//! once in [`properties`] form), [`filter_keys`] (`upstreams`, `fallbacks`, `retry-options`)
//! and [`events`]. Every other top-level key is an error. Limits (e.g. [`MAX_INSTANCES`]) are
//! the parser's, so the importer and the filter accept the same policies.

mod admission;
mod events;
mod filter_keys;
mod java_exceptions;
#[cfg(test)]
mod limits_tests;
mod model;
mod outcomes;
mod properties;
mod read;
mod resilience4j;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod timelimiter_tests;

use crate::json::Value;

pub use events::parse_events;
pub use model::*;
pub(crate) use read::describe;
pub use read::{canonical_key, PolicyError, UNSUPPORTED_MODULES};
// For the host's log lines (names cut short).
#[cfg(target_os = "wasi")]
pub(crate) use read::shorten;
pub use resilience4j::MAX_INSTANCES;

/// Upper bound of `exponential-backoff-multiplier` (breaker and retry). resilience4j has none;
/// beyond this the wait reaches any cap within a step or two and larger values only risk
/// overflowing the arithmetic.
pub const MAX_MULTIPLIER: f64 = 100.0;
/// Upper bound of `retry-options.<instance>.max-body-bytes`: a replayed body is held in the
/// worker's Wasm memory, which never shrinks; 4 MiB keeps one stream's share bounded (Envoy's
/// own buffer limit must be raised to match; see README).
pub const MAX_RETRY_BODY_BYTES: i64 = 4 * 1024 * 1024;
/// Upper bound of a `fallbacks.<instance>.body` (bytes): a fallback is a short answer held in
/// every worker for the life of the policy.
pub const MAX_FALLBACK_BODY_BYTES: usize = 64 * 1024;
/// Upper bound of a name written as a map key (instances, configs, clusters, headers): longer
/// names are mistakes, and they end up in stat names, shared-data keys and log lines.
pub const MAX_NAME_CHARS: usize = 256;

use read::{error, keyed, keys, Hint};

keys! {
    enum PolicyKey (Hint::Suggest) {
        Resilience4j = "resilience4j",
        Upstreams = "upstreams",
        Fallbacks = "fallbacks",
        RetryOptions = "retry-options",
        Events = "events",
    }
}

/// Parses and validates a whole policy. Any error rejects the whole policy.
fn parse_policy(text: &str) -> Result<Policy, PolicyError> {
    // An empty configuration or a bare `null` would read as a policy without instances and
    // silently remove every breaker and retry: refused (`{}` says it on purpose).
    if text.trim().is_empty() {
        return Err(error(
            "",
            "policy is empty (write {} for a policy that guards nothing)",
        ));
    }
    let root: Value = crate::json::from_str(text)
        .map_err(|e| error("", format!("policy is not valid JSON: {e}")))?;
    if root.is_null() {
        return Err(error(
            "",
            "policy is null (write {} for a policy that guards nothing)",
        ));
    }
    let mut warnings = Vec::new();
    let (mut resilience4j, mut upstreams, mut fallbacks, mut retry_options, mut events) =
        (None, None, None, None, None);
    for (key, value, path) in keyed(&root, "", &mut warnings)? {
        let slot = match key {
            PolicyKey::Resilience4j => &mut resilience4j,
            PolicyKey::Upstreams => &mut upstreams,
            PolicyKey::Fallbacks => &mut fallbacks,
            PolicyKey::RetryOptions => &mut retry_options,
            PolicyKey::Events => &mut events,
        };
        *slot = Some((value, path));
    }

    let tree = match resilience4j {
        Some((value, path)) => resilience4j::read(value, &path, &mut warnings)?,
        None => resilience4j::Resilience4j::default(),
    };
    let resilience4j::Resilience4j {
        circuit_breakers,
        retries,
        bulkheads,
        thread_pool_bulkheads,
        rate_limiters,
        time_limiters,
    } = tree;
    let upstreams = match upstreams {
        Some((value, path)) => filter_keys::read_upstreams(value, &path, |name| {
            circuit_breakers.contains_key(name)
                || retries.contains_key(name)
                || bulkheads.contains_key(name)
                || thread_pool_bulkheads.contains_key(name)
                || rate_limiters.contains_key(name)
                || time_limiters.contains_key(name)
        })?,
        None => Default::default(),
    };
    let fallbacks = match fallbacks {
        Some((value, path)) => filter_keys::read_fallbacks(
            value,
            &path,
            |name| {
                circuit_breakers.contains_key(name)
                    || bulkheads.contains_key(name)
                    || thread_pool_bulkheads.contains_key(name)
                    || rate_limiters.contains_key(name)
                    || time_limiters.contains_key(name)
            },
            &mut warnings,
        )?,
        None => Default::default(),
    };
    let retry_options = filter_keys::read_retry_options(
        retry_options
            .as_ref()
            .map(|(value, path)| (*value, path.as_str())),
        &retries,
        &mut warnings,
    )?;
    let events = match events {
        Some((value, path)) => Some(events::read(value, &path, &mut warnings)?),
        None => None,
    };
    Ok(Policy {
        circuit_breakers,
        retries,
        bulkheads,
        thread_pool_bulkheads,
        rate_limiters,
        time_limiters,
        upstreams,
        fallbacks,
        retry_options,
        events,
        warnings,
    })
}

impl Policy {
    /// Parses and validates a whole policy. Any error rejects the whole policy.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        parse_policy(text)
    }

    /// The instance that guards an Envoy cluster. For Istio's `outbound|port|subset|host`
    /// clusters the `upstreams` key may also be the host (`backend-a.shop.svc.cluster.local`)
    /// or the service, its first DNS label (`backend-a`), so one entry covers every port and
    /// subset. In order: `upstreams` by cluster, host, service; else the instance named like
    /// the cluster, or like the service. None: the cluster passes through untouched.
    pub fn instance_for_cluster(&self, cluster: &str) -> Option<&str> {
        if let Some(instance) = self.upstreams.get(cluster) {
            return Some(instance.as_str());
        }
        let Some(host) = istio_outbound_host(cluster) else {
            return self.known_instance(cluster);
        };
        let service = host.split('.').next().unwrap_or("");
        self.upstreams
            .get(host)
            .or_else(|| self.upstreams.get(service))
            .map(String::as_str)
            .or_else(|| self.known_instance(service))
    }

    fn known_instance(&self, name: &str) -> Option<&str> {
        let breaker = self.circuit_breakers.get_key_value(name).map(|(k, _)| k);
        let retry = self.retries.get_key_value(name).map(|(k, _)| k);
        let bulkhead = self.bulkheads.get_key_value(name).map(|(k, _)| k);
        let pool = self
            .thread_pool_bulkheads
            .get_key_value(name)
            .map(|(k, _)| k);
        let time_limiter = self.time_limiters.get_key_value(name).map(|(k, _)| k);
        let limiter = self.rate_limiters.get_key_value(name).map(|(k, _)| k);
        breaker
            .or(retry)
            .or(bulkhead)
            .or(pool)
            .or(limiter)
            .or(time_limiter)
            .map(String::as_str)
    }
}

/// The host of an Istio outbound cluster name (`outbound|8080|v1|backend-a.shop.svc.cluster.local`).
pub fn istio_outbound_host(cluster: &str) -> Option<&str> {
    let rest = cluster.strip_prefix("outbound|")?;
    rest.rsplit('|').next()
}
