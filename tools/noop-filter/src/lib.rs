//! The floor of `make bench`: a proxy-wasm HTTP filter that does nothing. Envoy still creates a
//! stream context and calls into the VM for every callback (request headers, response headers,
//! end of stream), so the row that loads it (`n`) measures what any proxy-wasm filter costs
//! before doing any work. Built to target/wasm32-wasip1/release/noop_filter.wasm by `make bench`.

#[cfg(target_os = "wasi")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}

    struct Root;
    impl Context for Root {}
    impl RootContext for Root {
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Stream))
        }
    }

    struct Stream;
    impl Context for Stream {}
    impl HttpContext for Stream {}
}
