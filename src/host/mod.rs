//! The proxy-wasm host layer: only translates between Envoy and the pure core; every host
//! call's error is handled.
//!
//! - `root`: the root context — the policy on (re)configuration, the tick;
//! - `stream`: the HTTP context — one request to a guarded upstream;
//! - `admission`: rate limiters and bulkheads, asked before a call goes upstream;
//! - `breaker`: one circuit breaker instance, shared by the workers through `store`;
//! - `retry`: retry orchestration — carries out each request's retry sequence;
//! - `replay`: the request kept for a replay, sent as a callout, and its reply;
//! - `timelimiter`: one time limiter instance — each attempt's timeout, the timeout answer;
//! - `grpc`: gRPC calls judged by their grpc-status (trailers, or a trailers-only response);
//! - `events`: stamping of records produced through a Kafka bridge;
//! - `dispatch`: the module's entry points, routed to the root or the stream they name;
//! - `abi`, `store`, `metrics`: host calls, shared data, Envoy stats.

mod abi;
mod admission;
mod boot;
mod breaker;
mod dispatch;
mod events;
mod grpc;
mod metrics;
mod replay;
mod retry;
mod root;
mod stat_names;
mod store;
mod stream;
mod timelimiter;
