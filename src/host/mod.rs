//! The proxy-wasm host layer: contexts, shared-data store, metrics, property reads. Only
//! translates between Envoy and the pure core; every host call's error is handled.

mod abi;
mod events;
mod filter;
mod metrics;
mod store;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(filter::FilterRoot::default()));
}}
