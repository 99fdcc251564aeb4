//! The filter's policy: the resilience4j tree a Spring service keeps under `resilience4j:`,
//! plus the filter's own keys beside it. `parse` turns JSON into the validated `model`.

mod model;
mod parse;

pub use model::*;
pub use parse::{PolicyError, UNSUPPORTED_MODULES};

impl Policy {
    /// Parses and validates a whole policy. Any error rejects the whole policy.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        parse::parse_policy(text)
    }

    /// The instance that guards an Envoy cluster: the `upstreams` override, else an instance
    /// named like the cluster, else for Istio's `outbound|port|subset|host` the host's first
    /// DNS label. None: the cluster passes through untouched.
    pub fn instance_for_cluster(&self, cluster: &str) -> Option<&str> {
        if let Some(instance) = self.upstreams.get(cluster) {
            return Some(instance.as_str());
        }
        let candidate = match cluster.strip_prefix("outbound|") {
            Some(rest) => {
                let host = rest.rsplit('|').next().unwrap_or("");
                host.split('.').next().unwrap_or("")
            }
            None => cluster,
        };
        self.known_instance(candidate)
    }

    fn known_instance(&self, name: &str) -> Option<&str> {
        let breaker = self.circuit_breakers.get_key_value(name).map(|(k, _)| k);
        let retry = self.retries.get_key_value(name).map(|(k, _)| k);
        breaker.or(retry).map(String::as_str)
    }
}
