//! Upstream: a controllable HTTP/1.1 server.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::json;

use super::http::{read_body, read_headers, read_line, reason};
use super::{header_value, lock};

/// What an [`Upstream`] does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer with `status`; `body: None` = the default JSON body naming the upstream and the
    /// request number. `headers` are added to the response (content-type defaults to JSON).
    Respond {
        status: u16,
        body: Option<String>,
        headers: Vec<(String, String)>,
    },
    /// Wait `ms`, then answer `then` with the default body.
    Delay { ms: u64, then: u16 },
    /// Close the connection with a TCP RST (SO_LINGER 0) before sending anything.
    Reset,
    /// Close the connection (FIN) without sending a response.
    Close,
    /// Send `status`, its headers and half of a 64-byte body (Content-Length says 64), then
    /// close the connection (FIN): a response cut off mid-body.
    CloseMidBody { status: u16 },
    /// Send `status`, its headers and half of a 64-byte body, wait `ms`, then the rest.
    SlowBody { status: u16, ms: u64 },
    /// Answer `status` as soon as the request headers are read (the body unread), then close
    /// the connection; the request is recorded with an empty body. Taken only from the queue.
    RespondBeforeBody { status: u16 },
}

impl Action {
    /// `status` with the default body.
    pub fn status(status: u16) -> Action {
        Action::Respond {
            status,
            body: None,
            headers: Vec::new(),
        }
    }

    /// `status` with this body.
    pub fn respond(status: u16, body: impl Into<String>) -> Action {
        Action::Respond {
            status,
            body: Some(body.into()),
            headers: Vec::new(),
        }
    }

    /// Adds a response header (only meaningful on `Respond`).
    pub fn with_header(mut self, name: &str, value: &str) -> Action {
        if let Action::Respond { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    pub fn delay(ms: u64, then: u16) -> Action {
        Action::Delay { ms, then }
    }
}

/// A request an [`Upstream`] received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When its request line arrived.
    pub at: Instant,
    /// 1-based, in arrival order, per upstream.
    pub number: usize,
    pub method: String,
    pub path: String,
    /// Lower-cased names, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct UpstreamState {
    name: String,
    port: u16,
    queue: Mutex<VecDeque<Action>>,
    default: Mutex<Action>,
    received: Mutex<Vec<Received>>,
    /// Clones of open connections, so `refuse()` and drop can shut them down.
    connections: Mutex<HashMap<u64, TcpStream>>,
    next_connection: AtomicU64,
    /// Number of the last request received (1-based numbering; survives `reset_requests`).
    last_number: AtomicU64,
    /// Set when the `Upstream` is dropped: delays end early, connection threads exit.
    stopped: AtomicBool,
}

struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// An HTTP/1.1 upstream on a free 127.0.0.1 port; thread per connection, keep-alive. Each request
/// takes the next queued [`Action`], else the default (200 with a JSON body naming the upstream
/// and the request number). Dropping it stops listening and closes every connection.
pub struct Upstream {
    state: Arc<UpstreamState>,
    acceptor: Mutex<Option<Acceptor>>,
}

impl Upstream {
    /// Starts listening on a free loopback port. `name` appears in default bodies and in the
    /// `x-upstream` response header.
    pub fn start(name: &str) -> io::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(UpstreamState {
            name: name.to_string(),
            port,
            queue: Mutex::new(VecDeque::new()),
            default: Mutex::new(Action::status(200)),
            received: Mutex::new(Vec::new()),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(1),
            last_number: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        });
        let acceptor = spawn_acceptor(&state, listener)?;
        Ok(Upstream {
            state,
            acceptor: Mutex::new(Some(acceptor)),
        })
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn port(&self) -> u16 {
        self.state.port
    }

    /// Queues an action for the next request that has none yet.
    pub fn push(&self, action: Action) {
        lock(&self.state.queue).push_back(action);
    }

    /// Queues `n` copies of an action.
    pub fn push_n(&self, n: usize, action: Action) {
        let mut queue = lock(&self.state.queue);
        for _ in 0..n {
            queue.push_back(action.clone());
        }
    }

    /// The action for requests when the queue is empty.
    pub fn set_default(&self, action: Action) {
        *lock(&self.state.default) = action;
    }

    /// Drops queued actions that were not used.
    pub fn clear_queue(&self) {
        lock(&self.state.queue).clear();
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        lock(&self.state.received).len()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// The most recent request, if any.
    pub fn last(&self) -> Option<Received> {
        lock(&self.state.received).last().cloned()
    }

    /// Forgets the recorded requests (numbering continues).
    pub fn reset_requests(&self) {
        lock(&self.state.received).clear();
    }

    /// Waits until at least `n` requests arrived; false on timeout.
    pub fn wait_for_count(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Stops listening and closes open connections: Envoy's next connect is refused.
    pub fn refuse(&self) {
        if let Some(acceptor) = lock(&self.acceptor).take() {
            stop_acceptor(acceptor, self.state.port);
        }
        close_all(&self.state);
    }

    /// Listens again on the same port after [`Upstream::refuse`].
    pub fn accept(&self) -> io::Result<()> {
        let mut slot = lock(&self.acceptor);
        if slot.is_some() {
            return Ok(());
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.state.port));
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(listener) => break listener,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        };
        *slot = Some(spawn_acceptor(&self.state, listener)?);
        Ok(())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        if let Some(acceptor) = lock(&self.acceptor).take() {
            stop_acceptor(acceptor, self.state.port);
        }
        close_all(&self.state);
    }
}

fn spawn_acceptor(state: &Arc<UpstreamState>, listener: TcpListener) -> io::Result<Acceptor> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = Arc::clone(&stop);
    let thread_state = Arc::clone(state);
    let thread = thread::Builder::new()
        .name(format!("upstream-{}", state.name))
        .spawn(move || {
            for conn in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                match conn {
                    Ok(stream) => {
                        let state = Arc::clone(&thread_state);
                        let spawned = thread::Builder::new()
                            .name(format!("upstream-{}-conn", thread_state.name))
                            .spawn(move || serve_connection(&state, stream));
                        if spawned.is_err() {
                            thread::sleep(Duration::from_millis(10));
                        }
                    }
                    // e.g. out of file descriptors: back off instead of spinning.
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        })?;
    Ok(Acceptor { stop, thread })
}

/// Stops an accept loop: it blocks in accept(), so set the flag and wake it with a connection.
fn stop_acceptor(acceptor: Acceptor, port: u16) {
    acceptor.stop.store(true, Ordering::SeqCst);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    let _ = acceptor.thread.join();
}

fn close_all(state: &UpstreamState) {
    for (_, conn) in lock(&state.connections).drain() {
        let _ = conn.shutdown(Shutdown::Both);
    }
}

fn serve_connection(state: &Arc<UpstreamState>, stream: TcpStream) {
    let id = state.next_connection.fetch_add(1, Ordering::Relaxed);
    let (Ok(read_half), Ok(registered)) = (stream.try_clone(), stream.try_clone()) else {
        return;
    };
    lock(&state.connections).insert(id, registered);
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let mut reset = false;
    while !state.stopped.load(Ordering::SeqCst) {
        let Ok(Some(request_line)) = read_line(&mut reader) else {
            break;
        };
        if request_line.is_empty() {
            continue; // stray CRLF between requests
        }
        let at = Instant::now();
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let Ok(headers) = read_headers(&mut reader) else {
            break;
        };
        let early = {
            let mut queue = lock(&state.queue);
            match queue.front() {
                Some(Action::RespondBeforeBody { status }) => {
                    let status = *status;
                    queue.pop_front();
                    Some(status)
                }
                _ => None,
            }
        };
        if let Some(status) = early {
            let number = state.last_number.fetch_add(1, Ordering::SeqCst) as usize + 1;
            lock(&state.received).push(Received {
                at,
                number,
                method,
                path,
                headers,
                body: Vec::new(),
            });
            let close = [("connection".to_string(), "close".to_string())];
            let _ = write_response(&mut writer, state, number, status, None, &close);
            break;
        }
        let Ok(body) = read_body(&mut reader, &headers, false) else {
            break;
        };
        let wants_close =
            header_value(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (number, action) = {
            let mut received = lock(&state.received);
            let number = state.last_number.fetch_add(1, Ordering::SeqCst) as usize + 1;
            received.push(Received {
                at,
                number,
                method,
                path,
                headers,
                body,
            });
            let action = lock(&state.queue).pop_front();
            (
                number,
                action.unwrap_or_else(|| lock(&state.default).clone()),
            )
        };
        let written = match action {
            Action::Respond {
                status,
                body,
                headers,
            } => write_response(&mut writer, state, number, status, body, &headers),
            Action::Delay { ms, then } => {
                let until = Instant::now() + Duration::from_millis(ms);
                while Instant::now() < until && !state.stopped.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(5).min(until - Instant::now()));
                }
                write_response(&mut writer, state, number, then, None, &[])
            }
            Action::Reset => {
                reset = true;
                break;
            }
            Action::Close => break,
            Action::CloseMidBody { status } => {
                let _ = write_partial(&mut writer, state, status, None);
                break;
            }
            Action::SlowBody { status, ms } => {
                write_partial(&mut writer, state, status, Some(Duration::from_millis(ms)))
            }
            Action::RespondBeforeBody { status } => {
                write_response(&mut writer, state, number, status, None, &[])
            }
        };
        if written.is_err() || wants_close {
            break;
        }
    }
    // Drop our registered clone first: the socket only closes when every descriptor is closed.
    lock(&state.connections).remove(&id);
    if reset {
        set_linger_zero(&writer);
    }
}

fn write_response(
    writer: &mut TcpStream,
    state: &UpstreamState,
    number: usize,
    status: u16,
    body: Option<String>,
    headers: &[(String, String)],
) -> io::Result<()> {
    let body = body.unwrap_or_else(|| {
        json!({"upstream": state.name, "request": number, "status": status}).to_string()
    });
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    if header_value(headers, "content-type").is_none() {
        head.push_str("content-type: application/json\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "x-upstream: {}\r\nx-upstream-request: {number}\r\ncontent-length: {}\r\n\r\n",
        state.name,
        body.len()
    ));
    writer.write_all(head.as_bytes())?;
    writer.write_all(body.as_bytes())?;
    writer.flush()
}

/// A 64-byte body: its first half, then (after `pause`) the second, or nothing more (None).
fn write_partial(
    writer: &mut TcpStream,
    state: &UpstreamState,
    status: u16,
    pause: Option<Duration>,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\nx-upstream: {}\r\ncontent-length: 64\r\n\r\n",
        reason(status),
        state.name
    );
    writer.write_all(head.as_bytes())?;
    writer.write_all(&[b'a'; 32])?;
    writer.flush()?;
    let Some(pause) = pause else {
        return Ok(());
    };
    let until = Instant::now() + pause;
    while Instant::now() < until && !state.stopped.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(5).min(until - Instant::now()));
    }
    writer.write_all(&[b'b'; 32])?;
    writer.flush()
}

/// SO_LINGER with a zero timeout: close() then sends RST instead of FIN. std has no stable API
/// for it (`TcpStream::set_linger` is unstable), so call setsockopt directly.
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }
    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
    }
    #[cfg(target_os = "linux")]
    const SOL_SOCKET_SO_LINGER: (i32, i32) = (1, 13);
    #[cfg(target_os = "macos")]
    const SOL_SOCKET_SO_LINGER: (i32, i32) = (0xffff, 0x80);
    let (sol_socket, so_linger) = SOL_SOCKET_SO_LINGER;
    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid open socket descriptor and a pointer to a properly sized `struct linger`
    // that lives for the duration of the call.
    let _ = unsafe {
        setsockopt(
            stream.as_raw_fd(),
            sol_socket,
            so_linger,
            &linger,
            std::mem::size_of::<Linger>() as u32,
        )
    };
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn set_linger_zero(_stream: &TcpStream) {}

/// The upstreams the shipped bootstrap routes to.
pub struct Services {
    /// Cluster `user-service` (authority `user-service`).
    pub user: Upstream,
    /// Cluster `order-service` (authority `order-service`).
    pub order: Upstream,
    /// Cluster `outbound|8080||user-service.default.svc.cluster.local` (authority
    /// `user-service.default.svc.cluster.local`): Istio's name for the same service.
    pub istio_user: Upstream,
    /// Cluster `payment-service`: no policy instance, passes through.
    pub payment: Upstream,
    /// Cluster `kafka-bridge` (authority `kafka-bridge`): stands in for the Kafka HTTP bridge
    /// (the demo points the cluster at a real one with [`Envoy::start_on`](super::Envoy)).
    pub bridge: Upstream,
}

impl Services {
    pub fn start() -> io::Result<Services> {
        Ok(Services {
            user: Upstream::start("user-service")?,
            order: Upstream::start("order-service")?,
            istio_user: Upstream::start("istio-user-service")?,
            payment: Upstream::start("payment-service")?,
            bridge: Upstream::start("kafka-bridge")?,
        })
    }
}

/// Authorities routed by the shipped bootstrap.
pub const USER: &str = "user-service";
pub const ORDER: &str = "order-service";
pub const ISTIO_USER: &str = "user-service.default.svc.cluster.local";
pub const PAYMENT: &str = "payment-service";
pub const KAFKA_BRIDGE: &str = "kafka-bridge";
/// The Envoy cluster behind [`ISTIO_USER`].
pub const ISTIO_USER_CLUSTER: &str = "outbound|8080||user-service.default.svc.cluster.local";
