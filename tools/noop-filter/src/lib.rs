//! The floors of `make bench`, one proxy-wasm HTTP filter in three modes, chosen by its plugin
//! configuration:
//!
//! - `{}` (row n): does nothing. Envoy still creates a stream context and calls into the VM for
//!   every callback, so row n measures what any proxy-wasm filter costs before doing any work.
//! - `{"host-calls": "guarded"}` (row h): makes exactly the host calls the filter makes for a
//!   guarded request on the closed path (row c), in the same callbacks, and nothing else: the
//!   cluster property, a clock read and a gauge read, the request-header pairs; a clock read and
//!   `:status`; a clock read and a gauge read at the end. Row h is what row c would cost if the
//!   filter's own code took no time: the floor the host puts under any filter that needs what
//!   the guarded path needs.
//! - `{"host-calls": "events"}` (row ev-h): the same for a produce request to a bridge (row ev-f):
//!   the cluster property, the request-header pairs, Content-Length removed; the body buffered
//!   to its end, read, a clock read, 16 random bytes, and the body written back (unchanged).
//!
//! Built to target/wasm32-wasip1/release/noop_filter.wasm by `make bench`. The host calls'
//! results are read and dropped: the point is what Envoy does to serve them.

#[cfg(target_os = "wasi")]
mod filter {
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};
    use std::ptr::null_mut;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
            Box::new(Root { mode: Mode::Nothing, gauge: 0 })
        });
    }}

    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Nothing,
        Guarded,
        Events,
    }

    struct Root {
        mode: Mode,
        gauge: u32,
    }

    impl Context for Root {}
    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            let config = self.get_plugin_configuration().unwrap_or_default();
            let has = |word: &[u8]| config.windows(word.len()).any(|w| w == word);
            self.mode = if has(b"\"guarded\"") {
                Mode::Guarded
            } else if has(b"\"events\"") {
                Mode::Events
            } else {
                Mode::Nothing
            };
            // The filter keeps each breaker's state in a gauge; row h reads one the same way.
            if self.mode == Mode::Guarded {
                match hostcalls::define_metric(MetricType::Gauge, "bench_floor_state") {
                    Ok(id) => self.gauge = id,
                    Err(_) => return false,
                }
            }
            true
        }
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Stream {
                mode: self.mode,
                gauge: self.gauge,
            }))
        }
    }

    struct Stream {
        mode: Mode,
        gauge: u32,
    }

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
    }

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        fn random_get(buf: *mut u8, len: usize) -> u16;
    }

    /// The request-header pairs as one buffer, freed unparsed (the SDK's `get_map` would also
    /// parse them into Strings: module work, which the floor leaves out).
    fn request_header_pairs() {
        let (mut data, mut size) = (null_mut::<u8>(), 0usize);
        // SAFETY: the host writes a buffer it allocated with this module's allocator (or null).
        unsafe {
            if proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size)
                == 0
                && !data.is_null()
            {
                drop(Vec::from_raw_parts(data, size, size));
            }
        }
    }

    impl Context for Stream {}
    impl HttpContext for Stream {
        fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
            match self.mode {
                Mode::Nothing => {}
                Mode::Guarded => {
                    let _ = hostcalls::get_property(vec!["xds", "cluster_name"]);
                    let _ = hostcalls::get_current_time();
                    let _ = hostcalls::get_metric(self.gauge);
                    request_header_pairs();
                }
                Mode::Events => {
                    let _ = hostcalls::get_property(vec!["xds", "cluster_name"]);
                    request_header_pairs();
                    let _ =
                        hostcalls::remove_map_value(MapType::HttpRequestHeaders, "content-length");
                }
            }
            Action::Continue
        }

        fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
            if self.mode != Mode::Events {
                return Action::Continue;
            }
            if !end_of_stream {
                return Action::Pause;
            }
            if let Ok(Some(body)) =
                hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpRequestBody, 0, size)
            {
                let _ = hostcalls::get_current_time();
                let mut id = [0u8; 16];
                // SAFETY: `id` is 16 writable bytes.
                let _ = unsafe { random_get(id.as_mut_ptr(), id.len()) };
                let _ = hostcalls::set_buffer(
                    proxy_wasm::types::BufferType::HttpRequestBody,
                    0,
                    size,
                    &body,
                );
            }
            Action::Continue
        }

        fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
            if self.mode == Mode::Guarded {
                let _ = hostcalls::get_current_time();
                let _ = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status");
            }
            Action::Continue
        }

        fn on_http_response_body(&mut self, _: usize, end_of_stream: bool) -> Action {
            if self.mode == Mode::Guarded && end_of_stream {
                let _ = hostcalls::get_current_time();
                let _ = hostcalls::get_metric(self.gauge);
            }
            Action::Continue
        }
    }
}
