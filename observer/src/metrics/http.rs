//! The metrics endpoint: GET `/metrics` on its own thread (the limits are those of
//! [`crate::httpd`]), serving a snapshot the pipeline thread publishes, so a slow
//! scraper never slows the capture. Each scrape is encoded here, in the format its
//! `Accept` header asks for ([`Format::negotiate`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Exposition, Format};
use crate::httpd::{self, Limits, Request, Response, ServerStats};

/// What `/metrics` serves, replaced by the pipeline thread as it changes.
pub type Snapshot = Arc<Mutex<Arc<Exposition>>>;

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
    pub stats: Arc<ServerStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// How long the end of a run waits for the server thread: scrapes still in flight
/// are dropped, so this is a bound on the thread's own wind-down, not on clients.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

impl MetricsServer {
    /// Binds `addr` (loopback only unless `public`) and serves `snapshot`.
    pub fn start(addr: SocketAddr, public: bool, snapshot: Snapshot) -> Result<Self, HttpError> {
        if !public && !addr.ip().is_loopback() {
            return Err(HttpError::NotLoopback(addr));
        }
        let bind = |source| HttpError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind)?;
        let local = listener.local_addr().map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        // The server has its own small runtime on its own thread, so that a slow
        // scraper never slows the capture loop.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(bind)?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(bind)?
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stats = Arc::new(ServerStats::default());
        let server_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                let handler = move |req: Request| {
                    let snapshot = snapshot.clone();
                    async move { route(&req, &snapshot) }
                };
                runtime.block_on(httpd::serve(
                    listener,
                    Limits::default(),
                    server_stats,
                    handler,
                    async {
                        let _ = stopped.await;
                    },
                ));
                runtime.shutdown_timeout(Duration::ZERO);
            })
            .map_err(bind)?;
        Ok(MetricsServer {
            addr: local,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl MetricsServer {
    /// Stops serving; true when the server thread ended within `SHUTDOWN_WAIT`
    /// (connections still open are dropped, never waited for).
    pub fn shutdown(mut self) -> bool {
        self.stop_thread()
    }

    fn stop_thread(&mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(t) = self.thread.take() else {
            return true;
        };
        let deadline = std::time::Instant::now() + SHUTDOWN_WAIT;
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let ended = t.is_finished();
        if ended {
            let _ = t.join();
        }
        ended
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn route(req: &Request, snapshot: &Snapshot) -> Response {
    if req.method != hyper::Method::GET {
        return Response::text(405, "GET only\n");
    }
    match req.path.as_str() {
        "/metrics" => {
            let format = Format::negotiate(req.header("accept"));
            let exposition = snapshot.lock().map(|s| s.clone()).unwrap_or_default();
            Response::new(200, format.content_type(), exposition.encode(format))
        }
        "/" => Response::text(200, "observer: metrics at /metrics\n"),
        _ => Response::text(404, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn get(addr: SocketAddr, path: &str) -> String {
        get_with(addr, path, "")
    }

    fn get_with(addr: SocketAddr, path: &str, headers: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    /// A snapshot with one gauge and one counter.
    fn up(n: i64) -> Arc<Exposition> {
        use prometheus_client::metrics::MetricType;
        let mut e = Exposition::default();
        e.family("observer_up", MetricType::Gauge, "Up.")
            .gauge(&[], n);
        e.family("observer_scrapes_total", MetricType::Counter, "Scrapes.")
            .counter(&[("kind", "a\"b")], 7);
        Arc::new(e)
    }

    fn snapshot(n: i64) -> Snapshot {
        Arc::new(Mutex::new(up(n)))
    }

    fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
        let head = response.split("\r\n\r\n").next()?;
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn body(response: &str) -> &str {
        response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    /// Each `Accept` header a scraper sends gets its format: the content type says
    /// which, and the body is that format (OpenMetrics: counter family named without
    /// `_total`, `# EOF` at the end; classic: `# TYPE ..._total counter`, no `# EOF`).
    #[test]
    fn accept_header_chooses_the_format() {
        let server =
            MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, snapshot(1)).unwrap();
        let openmetrics = [
            "Accept: application/openmetrics-text; version=1.0.0\r\n",
            // Prometheus 2's header (the version installed here).
            "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n",
            // Prometheus 3's default scrape protocols.
            "Accept: application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2\r\n",
            "Accept: text/plain;q=0.5, application/openmetrics-text\r\n",
        ];
        let classic = [
            "",
            "Accept: text/plain; version=0.0.4\r\n",
            "Accept: */*\r\n",
            "Accept: application/openmetrics-text;q=0.1, text/plain;q=0.9\r\n",
            "Accept: application/openmetrics-text;q=0, text/plain\r\n",
            "Accept: application/json\r\n",
        ];
        for h in openmetrics {
            let r = get_with(server.addr, "/metrics", h);
            assert!(r.starts_with("HTTP/1.1 200 OK"), "{h}: {r}");
            assert_eq!(
                header(&r, "content-type"),
                Some(crate::metrics::OPENMETRICS_CONTENT_TYPE),
                "{h}"
            );
            let b = body(&r);
            assert!(b.contains("# TYPE observer_scrapes counter\n"), "{h}: {b}");
            assert!(
                b.contains("observer_scrapes_total{kind=\"a\\\"b\"} 7\n"),
                "{h}: {b}"
            );
            assert!(b.contains("observer_up 1\n"), "{h}: {b}");
            assert!(b.ends_with("# EOF\n"), "{h}: {b}");
        }
        for h in classic {
            let r = get_with(server.addr, "/metrics", h);
            assert!(r.starts_with("HTTP/1.1 200 OK"), "{h}: {r}");
            assert_eq!(
                header(&r, "content-type"),
                Some("text/plain; version=0.0.4; charset=utf-8"),
                "{h}"
            );
            let b = body(&r);
            assert!(
                b.contains("# TYPE observer_scrapes_total counter\n"),
                "{h}: {b}"
            );
            assert!(
                b.contains("observer_scrapes_total{kind=\"a\\\"b\"} 7\n"),
                "{h}: {b}"
            );
            assert!(!b.contains("# EOF"), "{h}: {b}");
        }
    }

    #[test]
    fn serves_the_snapshot() {
        let snap = snapshot(1);
        let server =
            MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, snap.clone()).unwrap();
        let r = get(server.addr, "/metrics");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        assert!(r.contains("\nobserver_up 1\n"));
        *snap.lock().unwrap() = up(2);
        assert!(get(server.addr, "/metrics").contains("\nobserver_up 2\n"));
        assert!(get(server.addr, "/nope").starts_with("HTTP/1.1 404"));
    }

    /// A client that trickles a byte at a time must neither block other scrapes
    /// nor hold up the end of the run (it held both for 24 s with per-read timeouts).
    #[test]
    fn slow_client_blocks_neither_scrapes_nor_shutdown() {
        let server =
            MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, snapshot(1)).unwrap();
        let addr = server.addr;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let trickle = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n".iter().cycle() {
                    if stop.load(std::sync::atomic::Ordering::Relaxed)
                        || s.write_all(&[*b]).is_err()
                    {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        // Other scrapes are served while the trickler is connected.
        for _ in 0..3 {
            assert!(get(addr, "/metrics").contains("\nobserver_up 1\n"));
        }
        // The run's end does not wait for the trickler: the server thread is gone
        // within its bounded wind-down, measured against the trickler still writing.
        let stats = server.stats.clone();
        assert!(
            server.shutdown(),
            "the server thread did not end with a slow client connected"
        );
        assert!(get_fails(addr));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        trickle.join().expect("trickler");
        assert_eq!(stats.served.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    fn get_fails(addr: SocketAddr) -> bool {
        let Ok(mut s) = TcpStream::connect(addr) else {
            return true;
        };
        let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut out = String::new();
        s.set_read_timeout(Some(Duration::from_secs(2))).ok();
        s.read_to_string(&mut out).is_err() || out.is_empty()
    }

    /// Beyond the connection cap, new connections are closed at once and counted;
    /// once the idle ones hit their deadline, scrapes are served again.
    #[test]
    fn connection_cap_and_deadline() {
        let server =
            MetricsServer::start("127.0.0.1:0".parse().unwrap(), false, snapshot(1)).unwrap();
        let cap = Limits::default().max_connections;
        let idle: Vec<TcpStream> = (0..cap)
            .map(|_| TcpStream::connect(server.addr).expect("connect"))
            .collect();
        // Wait (bounded) until the server has taken them all.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !get_fails(server.addr) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            server
                .stats
                .refused_busy
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 1
        );
        // Idle connections outlive the deadline and are closed: scraping works again.
        let deadline = std::time::Instant::now()
            + Limits::default().connection_deadline
            + Duration::from_secs(10);
        let mut served = false;
        while std::time::Instant::now() < deadline {
            if !get_fails(server.addr) {
                served = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            served,
            "scrapes never recovered after the idle connections' deadline"
        );
        assert!(
            server
                .stats
                .timed_out
                .load(std::sync::atomic::Ordering::Relaxed)
                >= cap as u64
        );
        drop(idle);
    }

    #[test]
    fn public_address_needs_opt_in() {
        let snap: Snapshot = Arc::default();
        let r = MetricsServer::start("0.0.0.0:0".parse().unwrap(), false, snap);
        assert!(matches!(r, Err(HttpError::NotLoopback(_))));
    }
}
