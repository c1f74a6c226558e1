//! The management endpoint (HTTP/1.1 through [`crate::httpd`], one request per
//! connection), bound to 127.0.0.1 by default.
//!
//! - `GET /metrics`: OpenMetrics or the classic Prometheus text, as the `Accept` header
//!   asks (the observer's [`Format::negotiate`]): transactions by receiver and status,
//!   RTT histogram per receiver, peer counters, bad input, instrumentation overhead.
//! - `GET /records[?n=N]`: recent records as JSON, named `<peer>:dest=<receiver>,corr=<c>`.
//! - `GET /state`, `POST /state` (body `{"state":"busy"}`): the presence state.
//! - `POST /message?to=NAME` (body `{"text":"..."}`): sends a MESSAGE document.
//! - `GET /messages`: MESSAGE documents received (and refusals of ours).
//!
//! Beyond loopback every request needs `Authorization: Bearer <token>`. Whatever the
//! address, a request whose `Host` or `Origin` is not this machine is refused, and a
//! POST must be `application/json` (see docs/security.md).

use std::sync::Arc;

use prometheus_client::metrics::MetricType;
use tokio::net::TcpListener;

use super::arm::RTT_BUCKETS;
use super::Shared;
use crate::httpd::{self, Limits, Request, Response, ServerStats};
use crate::jim::Status;
use crate::metrics::{Exposition, Format};

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

/// A query parameter, percent- and `+`-decoded (`?to=li%20lei` names "li lei").
fn query_param(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
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
        ("GET", "/metrics") => {
            let format = Format::negotiate(req.header("accept"));
            Response::new(
                200,
                format.content_type(),
                Arc::new(exposition(shared)).encode(format),
            )
        }
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
            match super::connection::queue_message(shared, &to, text.trim()) {
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

/// Every metric of the peer, encoded per scrape by the observer's own [`Exposition`]
/// (the `prometheus-client` crate) in the format [`Format::negotiate`] picks.
pub fn exposition(shared: &Shared) -> Exposition {
    use MetricType::{Counter, Gauge, Histogram};
    let peer = shared.cfg.name.as_str();
    let (stats, arm) = shared.arm.snapshot();
    let receivers = shared.arm.receivers();
    let mut e = Exposition::default();

    let mut f = e.family(
        "jim_peer_transactions_total",
        Counter,
        "Finished PING/PONG transactions by receiver and status.",
    );
    for (r, s) in receivers.iter().zip(&stats) {
        for status in ["ok", "timeout"] {
            let n = s.by_status.get(status).copied().unwrap_or(0);
            f.counter(
                &[("peer", peer), ("receiver", &r.name), ("status", status)],
                n,
            );
        }
    }
    let mut f = e.family(
        "jim_peer_rtt_seconds",
        Histogram,
        "PING/PONG response time per receiver (ok transactions).",
    );
    for (r, s) in receivers.iter().zip(&stats) {
        f.histogram(
            &[("peer", peer), ("receiver", &r.name)],
            s.rtt_sum_s,
            s.rtt_count,
            per_bucket(&s.buckets, s.rtt_count),
        );
    }
    let mut f = e.family(
        "jim_peer_events_total",
        Counter,
        "Peer events (messages sent and received, connections, refusals).",
    );
    for (k, v) in shared.counters() {
        f.counter(&[("peer", peer), ("event", k)], v);
    }
    let mut f = e.family(
        "jim_peer_bad_input_total",
        Counter,
        "Connections closed for bad input, by reason.",
    );
    for (k, v) in shared.bad_inputs() {
        f.counter(&[("peer", peer), ("reason", k)], v);
    }
    e.family(
        "jim_peer_instrumentation_bytes_total",
        Counter,
        "Correlator element bytes added to PINGs sent and read in PONGs received (the instrumentation's wire overhead).",
    )
    .counter(&[("peer", peer), ("direction", "sent")], arm.correlator_bytes_sent)
    .counter(
        &[("peer", peer), ("direction", "received")],
        arm.correlator_bytes_received,
    );
    let one = [("peer", peer)];
    // The instrumentation's own counters, one sample each.
    for (name, help, value) in [
        (
            "jim_peer_instrumentation_csv_bytes_total",
            "Bytes of CSV records written.",
            arm.csv_bytes,
        ),
        (
            "jim_peer_instrumentation_csv_records_total",
            "CSV records written.",
            arm.csv_records,
        ),
        (
            "jim_peer_instrumentation_csv_errors_total",
            "CSV record writes that failed.",
            arm.csv_errors,
        ),
        (
            "jim_peer_pool_full_total",
            "PINGs not sent because the pool of open transactions was full.",
            arm.pool_full,
        ),
        (
            "jim_peer_unmatched_pongs_total",
            "PONGs whose correlator is no open transaction (late after a timeout, or unknown).",
            arm.unmatched_pongs,
        ),
        (
            "jim_peer_socket_rtt_missing_total",
            "ok records without a socket RTT (a kernel timestamp missing or withheld).",
            arm.socket_rtt_missing,
        ),
        (
            "jim_peer_socket_stop_withheld_total",
            "ok records whose PONG RX timestamp was not recorded: bytes behind the PONG were read or queued with it, and the timestamp may be theirs.",
            arm.socket_stop_withheld,
        ),
    ] {
        e.family(name, Counter, help).counter(&one, value);
    }
    e.family("jim_peer_pool_open", Gauge, "Open transactions.")
        .gauge(&one, gauge(shared.arm.open_count()));
    e.family(
        "jim_peer_pool_capacity",
        Gauge,
        "Open transactions the pool holds at most.",
    )
    .gauge(&one, gauge(shared.arm.capacity()));
    e.family("jim_peer_connections", Gauge, "Buddies connected.")
        .gauge(&one, gauge(shared.connected().len()));
    let mut f = e.family(
        "jim_peer_state",
        Gauge,
        "1 for the peer's current presence state.",
    );
    let current = shared.state();
    for s in [Status::Online, Status::Busy, Status::Away, Status::Offline] {
        f.gauge(
            &[("peer", peer), ("state", s.as_str())],
            i64::from(current == s),
        );
    }
    if let Some((rss, cpu)) = super::process_usage() {
        e.family(
            "process_resident_memory_bytes",
            Gauge,
            "Resident memory size in bytes.",
        )
        .gauge(&[], i64::try_from(rss).unwrap_or(i64::MAX));
        e.family(
            "process_cpu_seconds_total",
            Counter,
            "User and system CPU time spent in seconds.",
        )
        .counter_f64(&[], cpu);
    }
    e.family(
        "jim_peer_uptime_seconds",
        Gauge,
        "Seconds since the peer started.",
    )
    .gauge_f64(&one, shared.uptime().as_secs_f64());
    e
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The arm counts cumulatively (each RTT in every bucket whose bound it is under); the
/// encoders want each bucket alone, ending with +Inf.
fn per_bucket(cumulative: &[u64; RTT_BUCKETS.len()], count: u64) -> Vec<(f64, u64)> {
    let mut below = 0;
    let mut out = Vec::with_capacity(RTT_BUCKETS.len() + 1);
    for (le, n) in RTT_BUCKETS.iter().zip(cumulative) {
        out.push((*le, n.saturating_sub(below)));
        below = *n;
    }
    out.push((f64::INFINITY, count.saturating_sub(below)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            query_param("n=3&to=li%20lei", "to").as_deref(),
            Some("li lei")
        );
        assert_eq!(query_param("to=a+b%26c", "to").as_deref(), Some("a b&c"));
        assert_eq!(query_param("to=bob", "n"), None);
    }

    #[test]
    fn cumulative_buckets_become_per_bucket() {
        let mut cumulative = [0u64; RTT_BUCKETS.len()];
        // One RTT at 3 ms, two at 0.3 s, one at 60 s (above every bound).
        for (c, le) in cumulative.iter_mut().zip(RTT_BUCKETS) {
            *c = u64::from(le >= 0.005) + 2 * u64::from(le >= 0.5);
        }
        let b = per_bucket(&cumulative, 4);
        assert_eq!(b.len(), RTT_BUCKETS.len() + 1);
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 4);
        assert_eq!(b[1], (0.005, 1));
        assert_eq!(b[7], (0.5, 2));
        assert_eq!(b[RTT_BUCKETS.len()], (f64::INFINITY, 1));
    }
}
