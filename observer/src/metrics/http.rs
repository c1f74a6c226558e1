//! A minimal HTTP/1.1 server for the metrics endpoint: GET only, one short response per
//! connection. It runs on its own thread and reads a snapshot the pipeline thread
//! publishes, so a slow scraper never slows the capture.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Text served at `/metrics`, replaced by the pipeline thread as it changes.
pub type Snapshot = Arc<Mutex<String>>;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "refusing to serve metrics on {0}: not a loopback address (pass --metrics-public to expose them)"
    )]
    NotLoopback(SocketAddr),
}

pub struct MetricsServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` (loopback only unless `public`) and serves `snapshot`.
    pub fn start(addr: SocketAddr, public: bool, snapshot: Snapshot) -> Result<Self, HttpError> {
        if !public && !addr.ip().is_loopback() {
            return Err(HttpError::NotLoopback(addr));
        }
        let listener =
            TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr, source })?;
        // Non-blocking accept with a short sleep, so that `stop` is noticed promptly.
        listener
            .set_nonblocking(true)
            .map_err(|source| HttpError::Bind { addr, source })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Err(e) = serve(stream, &snapshot) {
                                tracing::debug!("metrics request failed: {e}");
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            tracing::warn!("metrics accept failed: {e}");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })
            .ok();
        Ok(MetricsServer {
            addr: local,
            stop,
            thread,
        })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, snapshot: &Snapshot) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    // Bounded: a request line longer than this is not a scrape.
    (&mut reader).take(8192).read_line(&mut request_line)?;
    // Drain headers (bounded) so the client sees a clean close.
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if (&mut reader).take(8192).read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, ctype, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => {
            let text = snapshot.lock().map(|s| s.clone()).unwrap_or_default();
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text)
        }
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "observer: metrics at /metrics\n".to_string(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

use std::io::Read as _;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    #[test]
    fn serves_the_snapshot() {
        let snap: Snapshot = Arc::new(Mutex::new("observer_up 1\n".into()));
        let server =
            MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, snap.clone()).unwrap();
        let r = get(server.addr, "/metrics");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        assert!(r.ends_with("observer_up 1\n"));
        *snap.lock().unwrap() = "observer_up 2\n".into();
        assert!(get(server.addr, "/metrics").ends_with("observer_up 2\n"));
        assert!(get(server.addr, "/nope").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn public_address_needs_opt_in() {
        let snap: Snapshot = Arc::default();
        let r = MetricsServer::start("0.0.0.0:0".parse().unwrap(), false, snap);
        assert!(matches!(r, Err(HttpError::NotLoopback(_))));
    }
}
