//! The HTTP server under the two endpoints (the live observer's `/metrics` and the
//! reference peer's management endpoint): hyper's HTTP/1.1 server with the limits a
//! process parsing other people's traffic as a service needs, set in one place.
//!
//! - at most `max_connections` connections at once; beyond that a connection is closed
//!   at accept (and counted), so idle clients cannot take every file descriptor, nor
//!   the JXTA accepts of the peer that shares the process;
//! - one request per connection and a total deadline per connection (not a per-read
//!   timeout: a client trickling a byte a second cannot hold a connection open);
//! - a bounded request body;
//! - shutdown does not wait for clients: connections still open are dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The limits of one server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// From accept to the last byte of the response.
    pub connection_deadline: Duration,
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            connection_deadline: Duration::from_secs(5),
            max_body: 64 * 1024,
        }
    }
}

/// A request as the handlers see it: the head and the whole (bounded) body.
pub struct Request {
    pub method: hyper::Method,
    pub path: String,
    pub query: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    /// The address the client connected to (for `Host` checks).
    pub local: SocketAddr,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<String>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response::new(status, "text/plain; charset=utf-8", body)
    }
}

/// Counters of a server, readable while it runs.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub served: AtomicU64,
    /// Connections closed at accept because `max_connections` were open.
    pub refused_busy: AtomicU64,
    /// Connections closed because they outlived the deadline.
    pub timed_out: AtomicU64,
}

/// Serves `listener` until `shutdown` completes. `handler` runs on the runtime's
/// threads; it should not block.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    stats: Arc<ServerStats>,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors, mostly: back off rather than spin.
                tracing::debug!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let handler = handler.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: hyper::Request<Incoming>| {
                let handler = handler.clone();
                async move {
                    let resp = match collect(req, limits.max_body, local).await {
                        Ok(r) => handler(r).await,
                        Err(resp) => resp,
                    };
                    Ok::<_, Infallible>(into_hyper(resp))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(limits.connection_deadline, conn).await {
                Ok(_) => {
                    stats.served.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

async fn collect(
    req: hyper::Request<Incoming>,
    max_body: usize,
    local: SocketAddr,
) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, max_body)
        .collect()
        .await
        .map_err(|_| Response::text(413, "request body too large or broken\n"))?
        .to_bytes();
    let (path, query) = match parts.uri.path_and_query() {
        Some(pq) => (pq.path().to_string(), pq.query().unwrap_or("").to_string()),
        None => ("/".to_string(), String::new()),
    };
    Ok(Request {
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
        local,
    })
}

fn into_hyper(r: Response) -> hyper::Response<Full<Bytes>> {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(r.body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(r.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    resp
}

/// Whether `host` (a `Host` header, or the authority of an `Origin`) names this
/// machine: a loopback name or address, or the address the client connected to.
/// Anything else (a DNS name pointing here, as in DNS rebinding) is foreign.
pub fn is_local_authority(authority: &str, local: SocketAddr) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or("")
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        }
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == local.ip(),
        Err(_) => false,
    }
}

/// Compares two secrets in time that depends only on their lengths. Not the `subtle`
/// crate: it is in no dependency's tree here, and one comparison of a bearer token
/// needs only this fold (no early exit).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_authorities() {
        let local: SocketAddr = "192.0.2.7:9800".parse().unwrap();
        for ok in [
            "localhost",
            "localhost:9800",
            "127.0.0.1:9800",
            "127.1.2.3",
            "[::1]:9800",
            "192.0.2.7:9800",
        ] {
            assert!(is_local_authority(ok, local), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9800",
            "192.0.2.8:9800",
            "localhost.evil.example",
            "",
        ] {
            assert!(!is_local_authority(bad, local), "{bad}");
        }
    }

    #[test]
    fn constant_time() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
