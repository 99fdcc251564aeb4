//! JSON -> validated [`Policy`]. (Stub: being written.)

use super::model::Policy;

/// A policy error: the full key path and what is wrong, e.g.
/// `resilience4j.circuitbreaker.instances.user-service.failure-rate-threshold: must be in (0, 100], got 120`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

pub(super) fn parse_policy(_text: &str) -> Result<Policy, PolicyError> {
    Err(PolicyError { path: String::new(), message: "not implemented".into() })
}
