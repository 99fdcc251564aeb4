//! The proxy-wasm ABI's entry points: what Envoy calls in the module, routed to the root context
//! or the HTTP context it names. The proxy-wasm SDK's dispatcher did this with hash maps, trait
//! objects for every kind of context and a panic for every id it did not expect, and linked
//! the TCP, gRPC and queue callbacks this filter never uses: 27 KB of the module (issue 13's
//! size goal). Here: one root type, one stream type, sorted maps, and an unknown id does
//! nothing (a request the filter has no context for passes through).

use std::cell::{Cell, RefCell};

use crate::sorted_map::SortedMap;

use super::abi;
use super::root::FilterRoot;
use super::stream::Stream;

/// What a request or response callback tells Envoy (proxy-wasm's FilterHeadersStatus etc.).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Action {
    Continue = 0,
    Pause = 1,
}

thread_local! {
    /// A worker is one thread and one VM: these are the worker's own.
    static ROOTS: RefCell<SortedMap<u32, FilterRoot>> = const { RefCell::new(SortedMap::new()) };
    /// Boxed: Envoy numbers contexts upwards, so streams are added at the end of the map and
    /// removed from anywhere; a removal moves only the pointers after it.
    static STREAMS: RefCell<SortedMap<u32, Box<Stream>>> = const { RefCell::new(SortedMap::new()) };
    /// The context whose callback runs: a callout it dispatches answers to it.
    static ACTIVE: Cell<u32> = const { Cell::new(0) };
    /// Callout token → the context that dispatched it.
    static CALLOUTS: RefCell<SortedMap<u32, u32>> = const { RefCell::new(SortedMap::new()) };
}

/// Remembers that the callout `token` answers to the context whose callback is running.
pub fn register_callout(token: u32) {
    let context = ACTIVE.with(Cell::get);
    CALLOUTS.with(|callouts| {
        if let Ok(mut callouts) = callouts.try_borrow_mut() {
            callouts.insert(token, context);
        }
    });
}

/// Runs `f` on stream `id` (None: no such stream, or it is busy, which Envoy never does: it
/// defers what a callback asks for until the callback returns).
fn with_stream<R>(id: u32, f: impl FnOnce(&mut Stream) -> R) -> Option<R> {
    ACTIVE.with(|active| active.set(id));
    STREAMS.with(|streams| {
        let mut streams = streams.try_borrow_mut().ok()?;
        streams.get_mut(&id).map(|stream| f(stream))
    })
}

fn with_root<R>(id: u32, f: impl FnOnce(&mut FilterRoot) -> R) -> Option<R> {
    ACTIVE.with(|active| active.set(id));
    ROOTS.with(|roots| {
        let mut roots = roots.try_borrow_mut().ok()?;
        roots.get_mut(&id).map(f)
    })
}

fn stream_action(id: u32, f: impl FnOnce(&mut Stream) -> Action) -> u32 {
    with_stream(id, f).unwrap_or(Action::Continue) as u32
}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// The module's start (a WASI reactor): Rust's static constructors, then the logger.
#[no_mangle]
pub extern "C" fn _initialize() {
    // SAFETY: the linker's constructor list, run once, before anything else in the module.
    #[cfg(target_os = "wasi")]
    unsafe {
        __wasm_call_ctors();
    }
    abi::install_logger();
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Room for `size` bytes the host hands the module (a property, a header map, a body chunk);
/// the module frees it as a `Vec<u8>` of that length (`abi::take_host_buffer`).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    // Exactly `size` bytes (the layout `Vec::from_raw_parts(p, size, size)` frees).
    Box::into_raw(Box::<[u8]>::new_uninit_slice(size)).cast::<u8>()
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    if root_context_id == 0 {
        ROOTS.with(|roots| {
            if let Ok(mut roots) = roots.try_borrow_mut() {
                roots.insert(context_id, FilterRoot::default());
            }
        });
        return;
    }
    let stream = ROOTS.with(|roots| {
        let roots = roots.try_borrow().ok()?;
        roots
            .get(&root_context_id)
            .map(|root| root.create_http_context(context_id))
    });
    if let Some(stream) = stream {
        STREAMS.with(|streams| {
            if let Ok(mut streams) = streams.try_borrow_mut() {
                streams.insert(context_id, Box::new(stream));
            }
        });
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: usize) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(root_context_id: u32, configuration_size: usize) -> bool {
    with_root(root_context_id, |root| {
        root.on_configure(configuration_size)
    })
    .unwrap_or(false)
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root_context_id: u32) {
    with_root(root_context_id, FilterRoot::on_tick);
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    num_headers: usize,
    end_of_stream: bool,
) -> u32 {
    stream_action(context_id, |s| {
        s.on_http_request_headers(num_headers, end_of_stream)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(
    context_id: u32,
    body_size: usize,
    end_of_stream: bool,
) -> u32 {
    stream_action(context_id, |s| {
        s.on_http_request_body(body_size, end_of_stream)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, num_trailers: usize) -> u32 {
    stream_action(context_id, |s| s.on_http_request_trailers(num_trailers))
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(
    context_id: u32,
    num_headers: usize,
    end_of_stream: bool,
) -> u32 {
    stream_action(context_id, |s| {
        s.on_http_response_headers(num_headers, end_of_stream)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(
    context_id: u32,
    body_size: usize,
    end_of_stream: bool,
) -> u32 {
    stream_action(context_id, |s| {
        s.on_http_response_body(body_size, end_of_stream)
    })
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(context_id: u32, num_trailers: usize) -> u32 {
    stream_action(context_id, |s| s.on_http_response_trailers(num_trailers))
}

/// The answer to a callout, routed to the context that dispatched it; host calls made while
/// handling it act on that context.
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    _root_context_id: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    let Some(context_id) = CALLOUTS.with(|callouts| {
        callouts
            .try_borrow_mut()
            .ok()
            .and_then(|mut c| c.remove(&token))
    }) else {
        return;
    };
    if abi::set_effective_context(context_id).is_err() {
        // The context is gone (its stream ended): nobody to answer.
        return;
    }
    let answered = with_stream(context_id, |stream| {
        stream.on_http_call_response(token, num_headers, body_size)
    });
    if answered.is_none() {
        with_root(context_id, |root| {
            root.on_http_call_response(token, num_headers, body_size)
        });
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_context_id: u32) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_log(context_id: u32) {
    with_stream(context_id, Stream::on_log);
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    let removed = STREAMS.with(|streams| {
        streams
            .try_borrow_mut()
            .ok()
            .and_then(|mut s| s.remove(&context_id))
    });
    if removed.is_none() {
        ROOTS.with(|roots| {
            if let Ok(mut roots) = roots.try_borrow_mut() {
                roots.remove(&context_id);
            }
        });
    }
}
