//! The management endpoint (HTTP/1.1 through [`crate::httpd`], one request per
//! connection), bound to 127.0.0.1 by default.
//!
//! - `GET /metrics`: Prometheus text exposition (transactions by receiver and status,
//!   RTT histogram per receiver, peer counters, bad input, instrumentation overhead).
//! - `GET /records[?n=N]`: recent records as JSON, named `<peer>:dest=<receiver>,corr=<c>`.
//! - `GET /state`, `POST /state` (body `{"state":"busy"}`): the presence state.
//! - `POST /message?to=NAME` (body `{"text":"..."}`): sends a MESSAGE document.
//! - `GET /messages`: MESSAGE documents received (and refusals of ours).
//!
//! Beyond loopback every request needs `Authorization: Bearer <token>`. Whatever the
//! address, a request whose `Host` or `Origin` is not this machine is refused, and a
//! POST must be `application/json` (see docs/security.md).

use std::fmt::Write as _;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::arm::RTT_BUCKETS;
use super::Shared;
use crate::httpd::{self, Limits, Request, Response, ServerStats};
use crate::jim::Status;

/// Fewer than the JXTA side's descriptors: the endpoint shares the process (and its
/// descriptor limit) with the peer's accepts, so idle HTTP clients must never starve
/// them (20,000 idle connections took 15,800 descriptors before this cap).
const MANAGEMENT_LIMITS: Limits = Limits {
    max_connections: 32,
    connection_deadline: std::time::Duration::from_secs(10),
    max_body: 64 * 1024,
};

pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let handler = move |req: Request| {
        let shared = shared.clone();
        async move { route(&shared, &req) }
    };
    httpd::serve(
        listener,
        MANAGEMENT_LIMITS,
        Arc::new(ServerStats::default()),
        handler,
        std::future::pending(),
    )
    .await;
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
    req.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| httpd::constant_time_eq(given.trim().as_bytes(), token.as_bytes()))
}

/// Why a request is refused before routing, if it is: a browser page elsewhere must
/// not drive the endpoint (cross-site POSTs, DNS rebinding reads).
fn refusal(req: &Request) -> Option<Response> {
    // DNS rebinding: the page's origin resolves to us, but its Host is its own name.
    let host_ok = req
        .header("host")
        .is_some_and(|h| httpd::is_local_authority(h, req.local));
    if !host_ok {
        return Some(Response::text(
            421,
            "Host must name this machine (localhost or its address)\n",
        ));
    }
    if let Some(origin) = req.header("origin") {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if !httpd::is_local_authority(authority, req.local) {
            return Some(Response::text(403, "cross-origin requests are refused\n"));
        }
    }
    // Only JSON bodies: a cross-site form or `text/plain` POST (no CORS preflight)
    // cannot carry this type.
    if req.method == hyper::Method::POST {
        let json = req
            .header("content-type")
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Some(Response::text(
                415,
                "POST bodies must be application/json\n",
            ));
        }
    }
    None
}

fn json_field(body: &[u8], field: &str) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get(field)?
        .as_str()
        .map(str::to_string)
}

fn route(shared: &Shared, req: &Request) -> Response {
    if let Some(r) = refusal(req) {
        return r;
    }
    if !authorized(shared, req) {
        return Response::text(401, "unauthorized\n");
    }
    let json = "application/json";
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/metrics") => Response::new(200, "text/plain; version=0.0.4", metrics(shared)),
        ("GET", "/records") => {
            let n = query_param(&req.query, "n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100usize);
            let recs: Vec<_> = shared.arm.recent(n).iter().map(|r| r.to_json()).collect();
            Response::new(200, json, serde_json::Value::Array(recs).to_string())
        }
        ("GET", "/state") => Response::new(
            200,
            json,
            serde_json::json!({ "peer": shared.cfg.name, "state": shared.state().as_str() })
                .to_string(),
        ),
        ("POST", "/state") => {
            let Some(wanted) = json_field(&req.body, "state") else {
                return Response::text(400, "body: {\"state\": \"busy\"}\n");
            };
            match Status::parse(wanted.trim()) {
                Some(s) => {
                    shared.set_state(s);
                    Response::new(
                        200,
                        json,
                        serde_json::json!({ "state": s.as_str() }).to_string(),
                    )
                }
                None => Response::text(
                    400,
                    format!("unknown state {wanted:?} (online, busy, away, offline)\n"),
                ),
            }
        }
        ("POST", "/message") => {
            let Some(to) = query_param(&req.query, "to") else {
                return Response::text(400, "POST /message?to=NAME\n");
            };
            let Some(text) = json_field(&req.body, "text") else {
                return Response::text(400, "body: {\"text\": \"...\"}\n");
            };
            match super::connection::queue_message(shared, to, text.trim()) {
                Ok(()) => {
                    Response::new(200, json, serde_json::json!({ "sent_to": to }).to_string())
                }
                Err(e) => Response::text(409, format!("{e}\n")),
            }
        }
        ("GET", "/messages") => Response::new(
            200,
            json,
            serde_json::to_string(&shared.recent_messages()).unwrap_or_default(),
        ),
        (_, "/metrics" | "/records" | "/state" | "/message" | "/messages") => {
            Response::text(405, "method not allowed\n")
        }
        _ => Response::text(404, "not found\n"),
    }
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
