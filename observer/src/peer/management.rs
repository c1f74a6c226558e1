//! The management endpoint: a minimal HTTP/1.1 server (one request per connection,
//! `Connection: close`), bound to 127.0.0.1 by default.
//!
//! - `GET /metrics`: Prometheus text exposition (transactions by receiver and status,
//!   RTT histogram per receiver, peer counters, bad input, instrumentation overhead).
//! - `GET /records[?n=N]`: recent records as JSON, named `<peer>:dest=<receiver>,corr=<c>`.
//! - `GET /state`, `POST /state` (body `busy`, or `{"state":"busy"}`): the presence state.
//! - `POST /message?to=NAME` (body = text): sends a MESSAGE document.
//! - `GET /messages`: MESSAGE documents received (and refusals of ours).
//!
//! Beyond loopback every request needs `Authorization: Bearer <token>`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::arm::RTT_BUCKETS;
use super::Shared;
use crate::jim::Status;

const MAX_REQUEST: usize = 64 * 1024;

pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let s = shared.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle(s, stream)).await;
        });
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if len > MAX_REQUEST {
        return None;
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
    })
}

async fn handle(shared: Arc<Shared>, mut stream: TcpStream) {
    let Some(req) = read_request(&mut stream).await else {
        let _ = respond(&mut stream, 400, "text/plain", "bad request\n").await;
        return;
    };
    let (code, ctype, body) = route(&shared, &req);
    let _ = respond(&mut stream, code, ctype, &body).await;
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn authorized(shared: &Shared, req: &Request) -> bool {
    let Some(token) = shared.cfg.token.as_deref().filter(|t| !t.is_empty()) else {
        // No token configured: only possible on loopback (checked at start-up).
        return true;
    };
    req.headers.iter().any(|(k, v)| {
        k == "authorization" && v.strip_prefix("Bearer ").map(str::trim) == Some(token)
    })
}

fn route(shared: &Shared, req: &Request) -> (u16, &'static str, String) {
    if !authorized(shared, req) {
        return (401, "text/plain", "unauthorized\n".into());
    }
    let json = "application/json";
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", metrics(shared)),
        ("GET", "/records") => {
            let n = query_param(&req.query, "n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100usize);
            let recs: Vec<_> = shared.arm.recent(n).iter().map(|r| r.to_json()).collect();
            (200, json, serde_json::Value::Array(recs).to_string())
        }
        ("GET", "/state") => (
            200,
            json,
            serde_json::json!({ "peer": shared.cfg.name, "state": shared.state().as_str() })
                .to_string(),
        ),
        ("POST", "/state") => {
            let text = String::from_utf8_lossy(&req.body).trim().to_string();
            let wanted = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_string))
                .unwrap_or(text);
            match Status::parse(wanted.trim()) {
                Some(s) => {
                    shared.set_state(s);
                    (
                        200,
                        json,
                        serde_json::json!({ "state": s.as_str() }).to_string(),
                    )
                }
                None => (
                    400,
                    "text/plain",
                    format!("unknown state {wanted:?} (online, busy, away, offline)\n"),
                ),
            }
        }
        ("POST", "/message") => {
            let Some(to) = query_param(&req.query, "to") else {
                return (400, "text/plain", "POST /message?to=NAME\n".into());
            };
            let body = String::from_utf8_lossy(&req.body);
            match super::connection::queue_message(shared, to, body.trim()) {
                Ok(()) => (200, json, serde_json::json!({ "sent_to": to }).to_string()),
                Err(e) => (409, "text/plain", format!("{e}\n")),
            }
        }
        ("GET", "/messages") => (
            200,
            json,
            serde_json::to_string(&shared.recent_messages()).unwrap_or_default(),
        ),
        (_, "/metrics" | "/records" | "/state" | "/message" | "/messages") => {
            (405, "text/plain", "method not allowed\n".into())
        }
        _ => (404, "text/plain", "not found\n".into()),
    }
}

async fn respond(
    stream: &mut TcpStream,
    code: u16,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition.
pub fn metrics(shared: &Shared) -> String {
    let peer = label(&shared.cfg.name);
    let mut o = String::with_capacity(4096);
    let (stats, arm) = shared.arm.snapshot();

    let _ = writeln!(o, "# HELP jim_peer_transactions_total Finished PING/PONG transactions by receiver and status.");
    let _ = writeln!(o, "# TYPE jim_peer_transactions_total counter");
    for (r, s) in shared.arm.receivers().iter().zip(&stats) {
        for status in ["ok", "timeout"] {
            let n = s.by_status.get(status).copied().unwrap_or(0);
            let _ = writeln!(
                o,
                "jim_peer_transactions_total{{peer=\"{peer}\",receiver=\"{}\",status=\"{status}\"}} {n}",
                label(&r.name)
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP jim_peer_rtt_seconds PING/PONG response time per receiver (ok transactions)."
    );
    let _ = writeln!(o, "# TYPE jim_peer_rtt_seconds histogram");
    for (r, s) in shared.arm.receivers().iter().zip(&stats) {
        let rl = label(&r.name);
        for (le, n) in RTT_BUCKETS.iter().zip(s.buckets) {
            let _ = writeln!(
                o,
                "jim_peer_rtt_seconds_bucket{{peer=\"{peer}\",receiver=\"{rl}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "jim_peer_rtt_seconds_bucket{{peer=\"{peer}\",receiver=\"{rl}\",le=\"+Inf\"}} {}",
            s.rtt_count
        );
        let _ = writeln!(
            o,
            "jim_peer_rtt_seconds_sum{{peer=\"{peer}\",receiver=\"{rl}\"}} {}",
            s.rtt_sum_s
        );
        let _ = writeln!(
            o,
            "jim_peer_rtt_seconds_count{{peer=\"{peer}\",receiver=\"{rl}\"}} {}",
            s.rtt_count
        );
    }

    let _ = writeln!(o, "# HELP jim_peer_events_total Peer events (messages sent and received, connections, refusals).");
    let _ = writeln!(o, "# TYPE jim_peer_events_total counter");
    for (k, v) in shared.counters() {
        let _ = writeln!(
            o,
            "jim_peer_events_total{{peer=\"{peer}\",event=\"{k}\"}} {v}"
        );
    }
    let _ = writeln!(
        o,
        "# HELP jim_peer_bad_input_total Connections closed for bad input, by reason."
    );
    let _ = writeln!(o, "# TYPE jim_peer_bad_input_total counter");
    for (k, v) in shared.bad_inputs() {
        let _ = writeln!(
            o,
            "jim_peer_bad_input_total{{peer=\"{peer}\",reason=\"{k}\"}} {v}"
        );
    }

    let _ = writeln!(o, "# HELP jim_peer_instrumentation_bytes_total Correlator element bytes added to PINGs sent and read in PONGs received (the instrumentation's wire overhead).");
    let _ = writeln!(o, "# TYPE jim_peer_instrumentation_bytes_total counter");
    let _ = writeln!(
        o,
        "jim_peer_instrumentation_bytes_total{{peer=\"{peer}\",direction=\"sent\"}} {}",
        arm.correlator_bytes_sent
    );
    let _ = writeln!(
        o,
        "jim_peer_instrumentation_bytes_total{{peer=\"{peer}\",direction=\"received\"}} {}",
        arm.correlator_bytes_received
    );
    let _ = writeln!(o, "# TYPE jim_peer_instrumentation_csv_bytes_total counter");
    let _ = writeln!(
        o,
        "jim_peer_instrumentation_csv_bytes_total{{peer=\"{peer}\"}} {}",
        arm.csv_bytes
    );
    let _ = writeln!(
        o,
        "# TYPE jim_peer_instrumentation_csv_records_total counter"
    );
    let _ = writeln!(
        o,
        "jim_peer_instrumentation_csv_records_total{{peer=\"{peer}\"}} {}",
        arm.csv_records
    );
    let _ = writeln!(
        o,
        "# TYPE jim_peer_instrumentation_csv_errors_total counter"
    );
    let _ = writeln!(
        o,
        "jim_peer_instrumentation_csv_errors_total{{peer=\"{peer}\"}} {}",
        arm.csv_errors
    );
    let _ = writeln!(o, "# TYPE jim_peer_pool_full_total counter");
    let _ = writeln!(
        o,
        "jim_peer_pool_full_total{{peer=\"{peer}\"}} {}",
        arm.pool_full
    );
    let _ = writeln!(o, "# TYPE jim_peer_unmatched_pongs_total counter");
    let _ = writeln!(
        o,
        "jim_peer_unmatched_pongs_total{{peer=\"{peer}\"}} {}",
        arm.unmatched_pongs
    );
    let _ = writeln!(o, "# TYPE jim_peer_pool_open gauge");
    let _ = writeln!(
        o,
        "jim_peer_pool_open{{peer=\"{peer}\"}} {}",
        shared.arm.open_count()
    );
    let _ = writeln!(o, "# TYPE jim_peer_pool_capacity gauge");
    let _ = writeln!(
        o,
        "jim_peer_pool_capacity{{peer=\"{peer}\"}} {}",
        shared.arm.capacity()
    );
    let _ = writeln!(o, "# TYPE jim_peer_connections gauge");
    let _ = writeln!(
        o,
        "jim_peer_connections{{peer=\"{peer}\"}} {}",
        shared.connected().len()
    );
    let _ = writeln!(o, "# TYPE jim_peer_state gauge");
    for s in [Status::Online, Status::Busy, Status::Away, Status::Offline] {
        let v = u8::from(shared.state() == s);
        let _ = writeln!(
            o,
            "jim_peer_state{{peer=\"{peer}\",state=\"{}\"}} {v}",
            s.as_str()
        );
    }
    if let Some((rss, cpu)) = super::process_usage() {
        let _ = writeln!(o, "# TYPE process_resident_memory_bytes gauge");
        let _ = writeln!(o, "process_resident_memory_bytes {rss}");
        let _ = writeln!(o, "# TYPE process_cpu_seconds_total counter");
        let _ = writeln!(o, "process_cpu_seconds_total {cpu}");
    }
    let _ = writeln!(o, "# TYPE jim_peer_uptime_seconds gauge");
    let _ = writeln!(
        o,
        "jim_peer_uptime_seconds{{peer=\"{peer}\"}} {}",
        shared.uptime().as_secs_f64()
    );
    o
}
