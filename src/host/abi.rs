//! Every host call the filter makes (the callbacks the host makes are in `dispatch`). Every
//! status becomes a `Result`: the proxy-wasm SDK's `hostcalls`, which this replaces, panicked on
//! statuses they did not expect (e.g. BadArgument when a property is not available in this
//! phase), and a panic kills the worker's VM.

use std::cell::Cell;
use std::ptr::{null, null_mut};

use crate::headers::RawHeaders;

/// A host call failed; the raw proxy-wasm status says why (1 NotFound, 2 BadArgument,
/// 3 SerializationFailure, 8 CasMismatch, 10 InternalFailure, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

pub const METRIC_COUNTER: u32 = 0;
pub const METRIC_GAUGE: u32 = 1;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_metric(metric_id: u32, return_value: *mut u64) -> u32;
}

fn check(status: u32) -> Result<(), HostError> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

/// Takes ownership of a buffer the host allocated through the SDK's `proxy_on_memory_allocate`.
///
/// # Safety
/// `data`/`size` must come from a host call that just returned them.
unsafe fn take_host_buffer(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        Some(Vec::from_raw_parts(data, size, size))
    }
}

/// Reads an Envoy attribute (`["xds", "cluster_name"]`). Ok(None): not set.
pub fn get_property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    // Sized once: growing it part by part reallocates on every request's cluster read.
    let mut serialized = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for part in path {
        serialized.extend_from_slice(part.as_bytes());
        serialized.push(0);
    }
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the pointers are valid for the call; the returned buffer is owned by us.
    let status =
        unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) };
    match status {
        OK => Ok(unsafe { take_host_buffer(data, size) }),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

pub fn get_string_property(path: &[&str]) -> Result<Option<String>, HostError> {
    Ok(get_property(path)?.map(|bytes| {
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }))
}

/// A shared-data value and its CAS token. Ok(None): the key does not exist.
pub fn get_shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: as in get_property.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        OK => Ok(Some((
            unsafe { take_host_buffer(data, size) }.unwrap_or_default(),
            cas,
        ))),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

pub enum SetOutcome {
    Written,
    CasMismatch,
}

/// Writes a shared-data value if its CAS token is still `cas` (0: unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<SetOutcome, HostError> {
    // SAFETY: the pointers are valid for the call.
    let status =
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    match status {
        OK => Ok(SetOutcome::Written),
        CAS_MISMATCH => Ok(SetOutcome::CasMismatch),
        other => Err(HostError(other)),
    }
}

/// Answers the current stream locally; the request does not go upstream.
pub fn send_local_response(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    details: &str,
) -> Result<(), HostError> {
    let serialized = crate::headers::encode(headers);
    // SAFETY: the pointers are valid for the call.
    check(unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            if body.is_empty() {
                null()
            } else {
                body.as_ptr()
            },
            body.len(),
            serialized.as_ptr(),
            serialized.len(),
            -1,
        )
    })
}

/// The host clock read at most once per callback: the first [`CallbackClock::now_ms`] asks
/// the host, later ones in the same callback reuse that reading, and a callback that needs no
/// time reads none.
#[derive(Default)]
pub struct CallbackClock(Cell<Option<u64>>);

impl CallbackClock {
    pub fn now_ms(&self) -> Result<u64, HostError> {
        if let Some(now) = self.0.get() {
            return Ok(now);
        }
        let now = now_ms()?;
        self.0.set(Some(now));
        Ok(now)
    }
}

/// Unix time in milliseconds from the host clock.
pub fn now_ms() -> Result<u64, HostError> {
    let mut nanos: u64 = 0;
    // SAFETY: the pointer is valid for the call.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
    Ok(nanos / 1_000_000)
}

pub fn define_metric(kind: u32, name: &str) -> Result<u32, HostError> {
    let mut id: u32 = 0;
    // SAFETY: the pointers are valid for the call.
    check(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), HostError> {
    // SAFETY: plain values.
    check(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
    // SAFETY: plain values.
    check(unsafe { proxy_record_metric(id, value) })
}

/// A metric's value, read from Envoy's stat (shared by every worker) without allocating.
pub fn get_metric(id: u32) -> Result<u64, HostError> {
    let mut value: u64 = 0;
    // SAFETY: the pointer is valid for the call.
    check(unsafe { proxy_get_metric(id, &mut value) })?;
    Ok(value)
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
}

pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;

/// Reads up to `max_size` bytes of a host buffer. Ok(None): the buffer is empty or absent.
pub fn get_buffer(
    buffer_type: u32,
    start: usize,
    max_size: usize,
) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as in get_property.
    let status =
        unsafe { proxy_get_buffer_bytes(buffer_type, start, max_size, &mut data, &mut size) };
    match status {
        OK => Ok(unsafe { take_host_buffer(data, size) }),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
}

pub fn set_tick_period_ms(period: u32) -> Result<(), HostError> {
    // SAFETY: plain value.
    check(unsafe { proxy_set_tick_period_milliseconds(period) })
}

pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_RESPONSE_TRAILERS: u32 = 3;
pub const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
pub const BUFFER_REQUEST_BODY: u32 = 0;
pub const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, buf_len: usize) -> u16;
}

/// All pairs of a header map. Err(BadArgument) when the map is not available in this phase.
pub fn get_header_map(map_type: u32) -> Result<Vec<(String, String)>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as in get_property.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    match status {
        OK => Ok(unsafe { take_host_buffer(data, size) }
            .map(|bytes| deserialize_map(&bytes))
            .unwrap_or_default()),
        NOT_FOUND => Ok(Vec::new()),
        other => Err(HostError(other)),
    }
}

/// A header map as the host serialized it, read in place (`RawHeaders`): one host call, no
/// String per header. Err(BadArgument) when the map is not available in this phase.
pub fn get_header_map_raw(map_type: u32) -> Result<RawHeaders, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as in get_property.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    match status {
        OK => Ok(RawHeaders::new(
            unsafe { take_host_buffer(data, size) }.unwrap_or_default(),
        )),
        NOT_FOUND => Ok(RawHeaders::default()),
        other => Err(HostError(other)),
    }
}

/// One header's value. Ok(None): no such header (or the map is empty).
pub fn get_header(map_type: u32, name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as in get_property.
    let status = unsafe {
        proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    match status {
        OK => Ok(unsafe { take_host_buffer(data, size) }),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

pub fn remove_header(map_type: u32, name: &str) -> Result<(), HostError> {
    // SAFETY: the pointers are valid for the call.
    check(unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) })
}

/// Lets a paused request continue (stream type 0 = HTTP request).
pub fn resume_http_request() -> Result<(), HostError> {
    // SAFETY: plain value.
    check(unsafe { proxy_continue_stream(0) })
}

/// Sets a header, replacing any value it had.
pub fn replace_header(map_type: u32, name: &str, value: &str) -> Result<(), HostError> {
    // SAFETY: the pointers are valid for the call.
    check(unsafe {
        proxy_replace_header_map_value(
            map_type,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Lets a paused response continue (stream type 1 = HTTP response).
pub fn resume_http_response() -> Result<(), HostError> {
    // SAFETY: plain value.
    check(unsafe { proxy_continue_stream(1) })
}

/// Makes later host calls act on another context (a stream the root answers for).
pub fn set_effective_context(context_id: u32) -> Result<(), HostError> {
    // SAFETY: plain value.
    check(unsafe { proxy_set_effective_context(context_id) })
}

/// Bytes from the host's random source (WASI `random_get`).
pub fn random_bytes<const N: usize>() -> Result<[u8; N], HostError> {
    let mut buf = [0u8; N];
    // SAFETY: the buffer is valid for N bytes.
    let errno = unsafe { random_get(buf.as_mut_ptr(), N) };
    if errno == 0 {
        Ok(buf)
    } else {
        Err(HostError(u32::from(errno)))
    }
}

/// A uniform sample in [0, 1) from the host's random source; 0.5 if it is unavailable.
pub fn random01() -> f64 {
    match random_bytes::<8>() {
        Ok(bytes) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

fn deserialize_map(bytes: &[u8]) -> Vec<(String, String)> {
    let read_u32 = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    let mut pairs = Vec::new();
    let Some(count) = read_u32(0) else {
        return pairs;
    };
    let mut sizes_at = 4;
    let mut data_at = 4 + count.saturating_mul(8);
    for _ in 0..count {
        let (Some(key_len), Some(value_len)) = (read_u32(sizes_at), read_u32(sizes_at + 4)) else {
            break;
        };
        sizes_at += 8;
        let key = bytes.get(data_at..data_at + key_len);
        data_at += key_len + 1;
        let value = bytes.get(data_at..data_at + value_len);
        data_at += value_len + 1;
        match (key, value) {
            (Some(k), Some(v)) => pairs.push((
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )),
            _ => break,
        }
    }
    pairs
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        return_token: *mut u32,
    ) -> u32;
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
}

/// Sends a request to `cluster` (a callout); its answer comes to `proxy_on_http_call_response`
/// of the context whose callback made this call (the root's from the tick, a stream's from its
/// own callback). Ok: the callout's token.
pub fn dispatch_http_call(
    cluster: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout_ms: u64,
) -> Result<u32, HostError> {
    let headers = crate::headers::encode(headers);
    let trailers = crate::headers::encode::<&str, &str>(&[]);
    let mut token: u32 = 0;
    // SAFETY: the pointers are valid for the call.
    check(unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            u32::try_from(timeout_ms).unwrap_or(u32::MAX),
            &mut token,
        )
    })?;
    super::dispatch::register_callout(token);
    Ok(token)
}

/// The `log` crate's records go to Envoy's log (info and above), and so does a panic's message
/// (then the VM aborts).
struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            // proxy-wasm's levels: trace 0, debug 1, info 2, warn 3, error 4.
            let level = 5 - record.level() as u32;
            write_log(level, &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

fn write_log(level: u32, message: &str) {
    // SAFETY: the pointer is valid for the call. A log that fails has nowhere to go.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

static LOGGER: HostLogger = HostLogger;

pub fn install_logger() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
        std::panic::set_hook(Box::new(|panic| write_log(5, &panic.to_string())));
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
}

/// Replaces bytes `start..start + size` of a host buffer with `data` (the whole buffered
/// request body: start 0, size = its length).
pub fn set_buffer(
    buffer_type: u32,
    start: usize,
    size: usize,
    data: &[u8],
) -> Result<(), HostError> {
    // SAFETY: the pointers are valid for the call.
    check(unsafe { proxy_set_buffer_bytes(buffer_type, start, size, data.as_ptr(), data.len()) })
}
