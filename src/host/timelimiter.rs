//! One time limiter instance as a worker runs it: it sets the router's timeout of each request
//! it guards (callers' timeout headers removed first), bounds each replay's callout, counts
//! attempts and answers a final timeout. It keeps no shared state: a timeout is per attempt.

use crate::fallback::LocalResponse;
use crate::outcome::CallResult;
use crate::policy::{Fallback, TimeLimiterConfig};
use crate::timelimiter::{self as core, CallKind};

use super::abi;
use super::metrics::TimeLimiterMetrics;

pub struct TimeLimiterInstance {
    instance: String,
    config: TimeLimiterConfig,
    metrics: TimeLimiterMetrics,
    fallback: Option<Fallback>,
}

impl TimeLimiterInstance {
    /// Defines the instance's metrics.
    pub fn new(instance: &str, config: TimeLimiterConfig, fallback: Option<Fallback>) -> Self {
        TimeLimiterInstance {
            instance: instance.to_string(),
            config,
            metrics: TimeLimiterMetrics::define(instance),
            fallback,
        }
    }

    pub fn config(&self) -> &TimeLimiterConfig {
        &self.config
    }

    /// In the request headers: the router's timeout for this request is `timeout-duration`,
    /// whatever the caller asked (the stream has removed the caller's timeout headers with the
    /// other router headers, and a replay never sends them). False: the host refused, the
    /// route's own timeout applies.
    pub fn bound_first_attempt(&self) -> bool {
        let timeout = core::router_timeout_ms(&self.config).to_string();
        match abi::replace_header(
            abi::MAP_REQUEST_HEADERS,
            core::ROUTER_TIMEOUT_HEADER,
            &timeout,
        ) {
            Ok(()) => true,
            Err(e) => {
                log::warn!(
                    "time limiter '{}': router timeout not set (host status {}); the route's applies",
                    self.instance,
                    e.0
                );
                false
            }
        }
    }

    pub fn count_attempt(&self, result: CallResult) {
        self.metrics.count_call(CallKind::of(result));
    }

    /// The answer to a call whose last attempt timed out.
    pub fn timeout_response(&self) -> LocalResponse {
        core::timeout_response(
            self.fallback.as_ref(),
            &self.instance,
            core::router_timeout_ms(&self.config),
        )
    }
}
