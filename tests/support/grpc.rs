//! gRPC over h2c on loopback: [`GrpcUpstream`], a server that answers each call as the test
//! says (OK, a status in the trailers, or a trailers-only status), and [`grpc_call`], a client
//! that makes one unary call through Envoy (prior-knowledge HTTP/2, as gRPC clients do) and
//! reads the status where the response carries it.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};

use super::lock;

/// How a [`GrpcUpstream`] answers one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcAnswer {
    /// A response message, then trailers with grpc-status 0.
    Ok,
    /// Headers, no message, then trailers with this grpc-status.
    InTrailers(u8),
    /// A trailers-only response: this grpc-status in the headers, which end the stream.
    TrailersOnly(u8),
}

/// The response message an OK answer carries (inside the gRPC length-prefixed frame).
pub const GRPC_REPLY_MESSAGE: &[u8] = b"hello from the grpc upstream";

struct Shared {
    queue: Mutex<VecDeque<GrpcAnswer>>,
    default: Mutex<GrpcAnswer>,
    calls: AtomicUsize,
}

/// A gRPC server over h2c on a free loopback port; answers from a FIFO, else the default.
pub struct GrpcUpstream {
    port: u16,
    shared: Arc<Shared>,
}

impl GrpcUpstream {
    pub fn start() -> io::Result<GrpcUpstream> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            default: Mutex::new(GrpcAnswer::Ok),
            calls: AtomicUsize::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let served = Arc::clone(&shared);
        thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve_connection(socket, Arc::clone(&served)));
                }
            });
        });
        Ok(GrpcUpstream { port, shared })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Calls received so far.
    pub fn count(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// The next `n` calls get `answer`.
    pub fn push_n(&self, n: usize, answer: GrpcAnswer) {
        let mut queue = lock(&self.shared.queue);
        queue.extend(std::iter::repeat_n(answer, n));
    }

    /// Calls beyond the queue get `answer`.
    pub fn set_default(&self, answer: GrpcAnswer) {
        *lock(&self.shared.default) = answer;
    }
}

async fn serve_connection(socket: tokio::net::TcpStream, shared: Arc<Shared>) {
    let Ok(mut connection) = h2::server::handshake(socket).await else {
        return;
    };
    while let Some(Ok((request, respond))) = connection.accept().await {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut body = request.into_body();
            while let Some(chunk) = body.data().await {
                let Ok(chunk) = chunk else { return };
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            shared.calls.fetch_add(1, Ordering::SeqCst);
            let answer = lock(&shared.queue)
                .pop_front()
                .unwrap_or(*lock(&shared.default));
            let _ = answer_call(respond, answer);
        });
    }
}

fn answer_call(
    mut respond: h2::server::SendResponse<Bytes>,
    answer: GrpcAnswer,
) -> Result<(), h2::Error> {
    let headers = |status: Option<u8>| {
        let mut builder = Response::builder()
            .status(200)
            .header("content-type", "application/grpc");
        if let Some(code) = status {
            builder = builder
                .header("grpc-status", code.to_string())
                .header("grpc-message", "failed by the test");
        }
        builder.body(())
    };
    let trailers = |code: u8| {
        let mut map = HeaderMap::new();
        if let Ok(value) = code.to_string().parse() {
            map.insert("grpc-status", value);
        }
        map
    };
    let Ok(head) = headers(match answer {
        GrpcAnswer::TrailersOnly(code) => Some(code),
        _ => None,
    }) else {
        return Ok(());
    };
    match answer {
        GrpcAnswer::TrailersOnly(_) => {
            respond.send_response(head, true)?;
        }
        GrpcAnswer::InTrailers(code) => {
            let mut stream = respond.send_response(head, false)?;
            stream.send_trailers(trailers(code))?;
        }
        GrpcAnswer::Ok => {
            let mut stream = respond.send_response(head, false)?;
            stream.send_data(Bytes::from(frame(GRPC_REPLY_MESSAGE)), false)?;
            stream.send_trailers(trailers(0))?;
        }
    }
    Ok(())
}

/// A gRPC length-prefixed message (uncompressed).
fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// What a gRPC client saw of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcReply {
    pub http_status: u16,
    /// grpc-status from the trailers, or from the headers of a trailers-only response.
    pub grpc_status: Option<String>,
    /// The response body: gRPC frames.
    pub body: Vec<u8>,
}

impl GrpcReply {
    /// The response message, if the body is one whole uncompressed frame.
    pub fn message(&self) -> Option<&[u8]> {
        let (prefix, message) = self.body.split_at_checked(5)?;
        let len = u32::from_be_bytes(prefix.get(1..5)?.try_into().ok()?) as usize;
        (prefix.first() == Some(&0) && message.len() == len).then_some(message)
    }
}

/// One unary call `path` (`/pkg.Service/Method`) to `authority` through the listener on `port`,
/// on a fresh connection (so calls spread over Envoy's workers).
pub fn grpc_call(port: u16, authority: &str, path: &str) -> Result<GrpcReply, String> {
    grpc_call_with(port, authority, path, &[])
}

/// [`grpc_call`] with these request headers added.
pub fn grpc_call_with(
    port: u16,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<GrpcReply, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            call(port, authority, path, headers),
        )
        .await
        .map_err(|_| "grpc call timed out".to_string())?
    })
}

async fn call(
    port: u16,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<GrpcReply, String> {
    let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (client, connection) = h2::client::handshake(socket)
        .await
        .map_err(|e| format!("h2 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.map_err(|e| format!("h2: {e}"))?;
    let mut request = Request::builder()
        .method("POST")
        .uri(format!("http://{authority}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(()).map_err(|e| format!("request: {e}"))?;
    let (response, mut send) = client
        .send_request(request, false)
        .map_err(|e| format!("send: {e}"))?;
    send.send_data(Bytes::from(frame(b"request")), true)
        .map_err(|e| format!("send body: {e}"))?;
    let response = response.await.map_err(|e| format!("response: {e}"))?;
    let http_status = response.status().as_u16();
    let header_status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = response.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body
        .trailers()
        .await
        .map_err(|e| format!("trailers: {e}"))?;
    let trailer_status = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(GrpcReply {
        http_status,
        grpc_status: trailer_status.or(header_status),
        body: data,
    })
}
