//! A minimal HTTP/1.1 client: one fresh connection per request.

use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use super::header_value;
use super::http::{read_body, read_headers, read_line};

/// A response as the client saw it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// The client's default timeout: above the bootstrap's 5 s route timeout.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);

/// One HTTP/1.1 request on a fresh connection to 127.0.0.1:`port` (`Connection: close`).
pub fn request(
    port: u16,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl AsRef<[u8]>,
) -> io::Result<Response> {
    request_with_timeout(
        port,
        method,
        authority,
        path,
        headers,
        body.as_ref(),
        CLIENT_TIMEOUT,
    )
}

/// `GET` with no extra headers.
pub fn get(port: u16, authority: &str, path: &str) -> io::Result<Response> {
    request(port, "GET", authority, path, &[], b"")
}

/// [`request`] with an explicit timeout (for connect, and for each read and write).
pub fn request_with_timeout(
    port: u16,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let what = format!("{method} http://{authority}{path} via 127.0.0.1:{port}");
    let context = |e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(context)?;
    stream.set_read_timeout(Some(timeout)).map_err(context)?;
    stream.set_write_timeout(Some(timeout)).map_err(context)?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {authority}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let has_length = headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    });
    if !has_length && (!body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE")) {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).map_err(context)?;
    stream.write_all(body).map_err(context)?;
    stream.flush().map_err(context)?;

    read_response(&mut BufReader::new(stream), method, true).map_err(context)
}

/// One response from `reader` (`method`: the request's, for HEAD's empty body). `until_eof`: a
/// body framed by neither length nor chunks runs to the end of the connection.
fn read_response(
    reader: &mut BufReader<TcpStream>,
    method: &str,
    until_eof: bool,
) -> io::Result<Response> {
    let status_line = read_line(reader)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        )
    })?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let headers = read_headers(reader)?;
    let body = if method == "HEAD" || status == 204 || status == 304 {
        Vec::new()
    } else {
        read_body(reader, &headers, until_eof)?
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// One kept-alive connection to 127.0.0.1:`port`: its requests all reach the Envoy worker
/// that accepted it (tests that need each worker by name).
pub struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    pub fn open(port: u16) -> io::Result<Connection> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)?;
        stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        Ok(Connection {
            reader: BufReader::new(stream),
        })
    }

    /// `GET` on this connection; the response must frame its body (the harness's upstreams and
    /// Envoy's local replies do).
    pub fn get(&mut self, authority: &str, path: &str) -> io::Result<Response> {
        let head = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\n\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.flush()?;
        read_response(&mut self.reader, "GET", false)
    }
}
