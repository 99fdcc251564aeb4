//! Event stamping for records published through the sidecar to a Kafka HTTP bridge: the
//! policy's `events` section ([`config`], read by [`crate::policy`]), the produce request and its envelope ([`produce`]),
//! and the small encoders both need (`codec`, private: the tools use their own). Pure: time and
//! randomness are parameters.

mod codec;
pub mod config;
pub mod produce;

pub use config::{EventsConfig, Mode, SpoofedSource, TopicConfig};
pub use produce::{
    format_of, produce_target, stamp, too_large, Format, ProduceTarget, RejectReason, Rejection,
    StampInput, StampStats, Stamped,
};

#[cfg(test)]
mod tests;
