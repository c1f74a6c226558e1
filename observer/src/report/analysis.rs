//! The report of a whole run: the transaction summary plus what the lower stages saw
//! (inputs, packets, flows, JXTA decoding, JIM documents), as text or one JSON object.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::table::{render, sanitize, sanitize_wide, short_label};
use super::Summary;
use observer_core::engine::{Analysis, MessageRecord};

/// The `--json` object: the summary's keys, plus `jxta`, `jim`, `capture`.
pub fn full_json(summary: &Summary, analysis: &Analysis) -> Value {
    let r = &analysis.result;
    let mut v = summary.to_json();
    if let Value::Object(map) = &mut v {
        map.insert("jxta".into(), r.jxta.to_json());
        map.insert("jim".into(), json!(r.jim));
        map.insert(
            "capture".into(),
            json!({
                "inputs": analysis.inputs,
                "first_unix_ns": r.first_ts,
                "last_unix_ns": r.last_ts,
                "duration_s": r.duration_ns() as f64 / 1e9,
                "packets": r.packets,
                "flows": r.flows,
            }),
        );
    }
    v
}

/// The human report: the summary tables, then what was decoded and what went wrong.
pub fn render_analysis(summary: &Summary, analysis: &Analysis) -> String {
    let r = &analysis.result;
    let mut out = String::new();
    let _ = writeln!(out, "Capture");
    for input in &analysis.inputs {
        let _ = writeln!(
            out,
            "  {}  {}  {} frames, {} bytes{}",
            sanitize(&input.name),
            input.format,
            input.frames,
            input.bytes,
            input
                .error
                .as_ref()
                .map(|e| format!("  DAMAGED: {}", sanitize(e)))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "  duration {:.3} s, {} flows ({} joined mid-stream), {} JXTA messages ({} TCP, {} UDP), {} welcomes",
        r.duration_ns() as f64 / 1e9,
        r.flows.flows,
        r.flows.flows_mid_stream,
        r.jxta.messages_tcp + r.jxta.messages_udp,
        r.jxta.messages_tcp,
        r.jxta.messages_udp,
        r.jxta.welcomes,
    );
    let h = &r.jxta.http;
    if h.requests + h.responses > 0 {
        let _ = writeln!(
            out,
            "  HTTP transport: {} requests, {} responses, {} JXTA bodies ({} chunked), {} messages (in the TCP count)",
            h.requests, h.responses, h.jxta_bodies, h.chunked_bodies, h.messages
        );
    }
    let _ = writeln!(
        out,
        "  JIM documents: {} PING, {} PONG, {} MESSAGE, {} malformed",
        r.jim.pings, r.jim.pongs, r.jim.messages, r.jim.malformed
    );
    if r.jim.oversized_documents > 0 {
        let _ = writeln!(
            out,
            "  {} JIM documents larger than --max-document, not decoded (raise --max-document to decode them):",
            r.jim.oversized_documents
        );
        for (name, o) in &r.jim.oversized {
            let _ = writeln!(
                out,
                "    {}  {} x, largest {} bytes",
                sanitize(name),
                o.count,
                o.max_bytes
            );
        }
    }
    if r.flows.checksum_offloaded_directions > 0 {
        let _ = writeln!(
            out,
            "  TCP checksums offloaded on {} flow directions (left to the NIC after capture): not verified there; --checksums verify checks them",
            r.flows.checksum_offloaded_directions
        );
    }
    out.push('\n');
    out.push_str(&render(summary));

    let mut issues: Vec<(String, u64)> = Vec::new();
    let p = &r.packets;
    let f = &r.flows;
    let ra = &f.reassembly;
    let j = &r.jxta;
    for (name, n) in [
        ("frames cut by snaplen", p.snaplen_cut),
        (
            "frames later than the reorder window",
            p.reorder.late_frames,
        ),
        (
            "frames reordered early (hold bound)",
            p.reorder.forced_releases,
        ),
        ("frames of unknown link type", p.unknown_link_type),
        ("malformed frames", p.malformed),
        (
            "IP length below header or beyond frame (dropped)",
            p.bad_ip_length,
        ),
        ("bad IPv4 header checksum (dropped)", p.bad_ip_checksum),
        ("bad TCP checksum (dropped)", f.bad_tcp_checksum),
        ("TCP data without ACK (dropped)", f.data_without_ack),
        (
            "TCP overlaps with conflicting bytes",
            ra.conflicting_overlap,
        ),
        ("IP fragments timed out", p.fragment_timeouts),
        ("IP fragment datagrams evicted (cap)", p.fragment_evictions),
        ("TCP gaps (bytes the capture missed)", ra.gaps),
        ("TCP gap bytes", ra.gap_bytes),
        (
            "TCP out-of-order buffer cap hits",
            ra.gaps_flow_cap + ra.gaps_total_cap,
        ),
        ("TCP flows evicted (flow cap)", f.evicted_flow_cap),
        ("implausible TCP segments", ra.implausible_segments),
        ("JXTA resynchronisations", j.resyncs),
        ("JXTA messages truncated", j.truncated_messages),
        ("JXTA bytes skipped", j.skipped_bytes),
    ] {
        if n > 0 {
            issues.push((name.to_string(), n));
        }
    }
    for (kind, n) in &j.malformed {
        issues.push((format!("malformed JXTA: {kind}"), *n));
    }
    out.push_str("\nDecoding\n");
    if issues.is_empty() {
        out.push_str("  no decoding anomalies\n");
    } else {
        for (name, n) in issues {
            let _ = writeln!(out, "  {name:<44} {n:>10}");
        }
    }
    out
}

/// One line per message for `observer messages`, like tshark's summary lines: what
/// the message is (PING, PONG, MESSAGE with its names and correlator, or other), then
/// the JXTA addressing and elements. Peer and pipe IDs are shortened unless `wide`.
pub fn message_line(m: &MessageRecord, wide: bool) -> String {
    let id = |s: &str| {
        if wide {
            sanitize_wide(s)
        } else {
            short_label(s)
        }
    };
    let elements: Vec<String> = m
        .elements
        .iter()
        .map(|e| {
            let name = if e.namespace.is_empty() {
                e.name.clone()
            } else {
                format!("{}:{}", e.namespace, e.name)
            };
            format!("{}({})", sanitize(&name), e.length)
        })
        .collect();
    let mut what = m.kind.to_string();
    if let Some(j) = &m.jim {
        for (key, value) in [
            ("name", &j.name),
            ("status", &j.status),
            ("from", &j.from),
            ("to", &j.to),
        ] {
            if let Some(v) = value {
                let _ = write!(what, " {key}={}", sanitize(v));
            }
        }
        match &j.correlator {
            Some(c) => {
                let _ = write!(
                    what,
                    " correlator={} ({} B)",
                    sanitize(c),
                    j.correlator_bytes
                );
            }
            None => what.push_str(" no correlator"),
        }
    }
    let peers = match (&m.src_peer, &m.dst_peer) {
        (None, None) => String::new(),
        (s, d) => format!(
            " {} -> {}",
            s.as_deref().map(id).unwrap_or_else(|| "?".into()),
            d.as_deref().map(id).unwrap_or_else(|| "?".into())
        ),
    };
    let secs = m.stop_unix_ns / 1_000_000_000;
    let frac = m.stop_unix_ns % 1_000_000_000;
    format!(
        "{secs}.{frac:09} {} {} -> {} {} B {what} |{peers}{}{} [{}]{}",
        m.transport,
        m.src,
        m.dst,
        m.framed_bytes,
        m.service
            .as_deref()
            .map(|s| format!(" {}", sanitize(s)))
            .unwrap_or_default(),
        m.pipe_id
            .as_deref()
            .map(|s| format!(" {}", id(s)))
            .unwrap_or_default(),
        elements.join(" "),
        m.malformed
            .as_deref()
            .map(|e| format!(" MALFORMED: {}", sanitize(e)))
            .unwrap_or_default()
    )
}
