//! The proxy-wasm host layer. (Stub: being written.)
