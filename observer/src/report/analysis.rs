//! The report of a whole run: the transaction summary plus what the lower stages saw
//! (inputs, packets, flows, JXTA decoding, JIM documents), as text or one JSON object.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::summary::{ChangeOut, CurrentOut, PairSummary};
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

/// Writes [`full_json`] pretty-printed to `out`, byte for byte, without building it as
/// one `Value`: as a `Value` the per-pair list and the presence lists of 150,000 pairs
/// took more memory than the whole analysis. Each of their elements becomes a `Value`
/// (so its keys are sorted as there) only while it is written.
pub fn write_full_json<W: std::io::Write>(
    out: W,
    mut summary: Summary,
    analysis: &Analysis,
) -> serde_json::Result<()> {
    let pairs = std::mem::take(&mut summary.pairs);
    let changes = std::mem::take(&mut summary.presence.changes);
    let current = std::mem::take(&mut summary.presence.current);
    // The rest, with those three lists empty, is small.
    let top = full_json(&summary, analysis);
    serde_json::to_writer_pretty(
        out,
        &FullJson {
            top: &top,
            pairs: &pairs,
            changes: &changes,
            current: &current,
        },
    )
}

/// Writes `summary.to_json()` pretty-printed to `out`, byte for byte, its long lists
/// element by element as [`write_full_json`] does (as one `Value`, 150,000 pairs took
/// 300 MB of `report`'s 550). The lists are lent out and put back.
pub fn write_summary_json<W: std::io::Write>(
    out: W,
    summary: &mut Summary,
) -> serde_json::Result<()> {
    let pairs = std::mem::take(&mut summary.pairs);
    let changes = std::mem::take(&mut summary.presence.changes);
    let current = std::mem::take(&mut summary.presence.current);
    let top = summary.to_json();
    let written = serde_json::to_writer_pretty(
        out,
        &FullJson {
            top: &top,
            pairs: &pairs,
            changes: &changes,
            current: &current,
        },
    );
    summary.pairs = pairs;
    summary.presence.changes = changes;
    summary.presence.current = current;
    written
}

/// The `--json` object with its long lists written element by element.
struct FullJson<'a> {
    top: &'a Value,
    pairs: &'a [PairSummary],
    changes: &'a [ChangeOut],
    current: &'a [CurrentOut],
}

impl serde::Serialize for FullJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(top) = self.top else {
            return self.top.serialize(s);
        };
        // As `Value` writes an object: its entries in key order.
        let mut map = s.serialize_map(Some(top.len()))?;
        for (k, v) in top {
            match (k.as_str(), v) {
                ("pairs", _) => map.serialize_entry(k, &Each(self.pairs))?,
                ("presence", Value::Object(presence)) => {
                    map.serialize_entry(k, &PresenceJson { presence, of: self })?
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

struct PresenceJson<'a> {
    presence: &'a serde_json::Map<String, Value>,
    of: &'a FullJson<'a>,
}

impl serde::Serialize for PresenceJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.presence.len()))?;
        for (k, v) in self.presence {
            match k.as_str() {
                "changes" => map.serialize_entry(k, &Each(self.of.changes))?,
                "current" => map.serialize_entry(k, &Each(self.of.current))?,
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

/// A list written as the `Value` array of its elements would be.
struct Each<'a, T>(&'a [T]);

impl<T: serde::Serialize> serde::Serialize for Each<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for x in self.0 {
            let v = serde_json::to_value(x).map_err(S::Error::custom)?;
            seq.serialize_element(&v)?;
        }
        seq.end()
    }
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

    // Every counter declared with a `decoding` place, in place order.
    use observer_core::counters::{decoding_lines, listed};
    let (p, f, j) = (&r.packets, &r.flows, &r.jxta);
    let mut issues: Vec<(String, u64)> = decoding_lines(
        p.iter()
            .map(listed)
            .chain(p.reorder.iter().map(listed))
            .chain(f.iter().map(listed))
            .chain(f.reassembly.iter().map(listed))
            .chain(j.iter().map(listed)),
    )
    .into_iter()
    .map(|(name, n)| (name.to_string(), n))
    .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use observer_core::engine::PipelineResult;
    use observer_core::transaction::{Matcher, MatcherConfig};

    fn zero() -> PipelineResult {
        PipelineResult {
            transactions: Vec::new(),
            matcher: Matcher::new(MatcherConfig::default()),
            packets: Default::default(),
            flows: Default::default(),
            jxta: Default::default(),
            jim: Default::default(),
            messages: Vec::new(),
            first_ts: None,
            last_ts: 0,
        }
    }

    use observer_core::counters::set_distinct as fill;

    /// The "Decoding" list, iterated from the declarations, is the list that was
    /// written out by hand before (kept here as the reference): same lines, same
    /// order, the two out-of-order cap counters on one line.
    #[test]
    fn decoding_list_is_the_hand_written_one() {
        let mut r = zero();
        let mut n = 0;
        fill(
            &mut r.packets,
            observer_core::packet::PacketStats::ALL,
            &mut n,
        );
        fill(
            &mut r.packets.reorder,
            observer_core::capture::ReorderStats::ALL,
            &mut n,
        );
        fill(
            &mut r.flows,
            observer_core::conntrack::FlowStats::ALL,
            &mut n,
        );
        fill(
            &mut r.flows.reassembly,
            observer_core::conntrack::ReassemblyStats::ALL,
            &mut n,
        );
        fill(&mut r.jxta, observer_core::jxta::JxtaStats::ALL, &mut n);
        let (p, f, ra, j) = (&r.packets, &r.flows, &r.flows.reassembly, &r.jxta);
        let reference = [
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
        ];
        let mut want = String::from("\nDecoding\n");
        for (name, n) in reference {
            want.push_str(&format!("  {name:<44} {n:>10}\n"));
        }
        let summary = Summary::build(&[], &r.matcher, 0);
        let analysis = Analysis {
            result: r,
            inputs: Vec::new(),
        };
        let text = render_analysis(&summary, &analysis);
        assert!(text.ends_with(&want), "{text}");
    }

    #[test]
    fn decoding_list_at_zero_says_so() {
        let analysis = Analysis {
            result: zero(),
            inputs: Vec::new(),
        };
        let summary = Summary::build(&[], &analysis.result.matcher, 0);
        let text = render_analysis(&summary, &analysis);
        assert!(
            text.ends_with("\nDecoding\n  no decoding anomalies\n"),
            "{text}"
        );
    }

    #[test]
    fn figures_list_the_decoding_anomalies_declared_for_them() {
        let mut r = zero();
        r.flows.reassembly.gaps = 3;
        r.packets.malformed = 2;
        r.jxta.resyncs = 1;
        r.jxta.truncated_messages = 4;
        // Anomalies too, but not declared for the figures' list.
        r.flows.reassembly.implausible_segments = 9;
        r.packets.unknown_link_type = 8;
        let analysis = Analysis {
            result: r,
            inputs: Vec::new(),
        };
        let data = crate::report::figures::ReportData::from_analysis(analysis, 1, "test");
        let label = |all: &[(&'static str, u64)]| -> Vec<(String, u64)> {
            all.iter().map(|(k, n)| (k.to_string(), *n)).collect()
        };
        assert_eq!(
            data.meta.anomalies,
            label(&[
                ("TCP gaps (bytes the capture missed)", 3),
                ("malformed frames", 2),
                ("JXTA resynchronisations", 1),
                ("JXTA messages truncated", 4),
            ])
        );
        assert!(crate::report::figures::decoding_anomalies(&zero()).is_empty());
    }
}
