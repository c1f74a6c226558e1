//! The pipeline after the source: one captured frame in, transactions out.
//!
//! Sources (a capture file, libpcap, the eBPF tap) differ only in how they produce
//! [`Frame`]s; everything from the packet layer on is this one object, so a live run
//! and the offline analysis of its `-w` file give the same records.
//!
//! - [`Pipeline`] (here): packets → flows ([`crate::jxta::flow`] for TCP) or
//!   datagrams → the message stage.
//! - [`documents`]: decoding messages and their JIM documents, and the
//!   [`DocumentSink`] they go to (a matcher, or a shard's queue).
//! - [`reorder`]: finished transactions released in report order.
//! - [`sink`]: where they go then, for every source: the summary and the record.
//! - [`record`]: the listing record of each message (`observer messages`).
//! - [`offline`] and [`parallel`]: capture files through one pipeline or N shards.

pub mod documents;
pub mod offline;
pub mod parallel;
pub mod record;
pub mod reorder;
pub mod sink;

use std::net::SocketAddr;

use crate::capture::Frame;
use crate::conntrack::{FlowConfig, FlowStats, FlowTable, TcpSegment};
use crate::jim::{Document, JimConfig, JimStats};
use crate::jxta::flow::{Conn, JxtaFlows};
use crate::jxta::{self, FramedMessage, JxtaStats, StreamConfig};
use crate::packet::{Decoded, PacketConfig, PacketDecoder, PacketStats, L4};
use crate::transaction::{Matcher, MatcherConfig, Sighting, Transaction, Transport};
use crate::UnixNanos;

pub use documents::{DocumentSink, MatchEvent, Matched};
use documents::{Documents, Origin};
pub use offline::{
    analyze, analyze_each, analyze_messages, Analysis, InputProgress, InputSummary, Progress,
};
pub use parallel::analyze_parallel;
pub use record::{ElementRecord, JimRecord, MessageRecord, KIND_BAD_JIM, KIND_OTHER};
pub use reorder::Reorder;
pub use sink::{RecordWriter, TransactionSink};

/// Everything a run can be told; the defaults are the documented safe limits.
#[derive(Clone, Debug, Default)]
pub struct PipelineConfig {
    /// Only TCP/UDP traffic with one of these ports is looked at; empty = all
    /// (JXTA is recognised by content, not by port).
    pub ports: Vec<u16>,
    pub packet: PacketConfig,
    pub flows: FlowConfig,
    pub stream: StreamConfig,
    pub matcher: MatcherConfig,
    /// Frames are put back in time order within this window before the pipeline (by
    /// the source loops: the pipeline takes borrowed frames one at a time).
    pub reorder: crate::capture::ReorderConfig,
    pub jim: JimConfig,
    /// Keep a record of every decoded JXTA message (for `observer messages` and the
    /// tshark cross-check); off for plain analysis since it costs memory per message.
    pub record_messages: bool,
}

/// One run's stages, from a frame to finished transactions (see the module doc).
pub struct Pipeline {
    ports: Vec<u16>,
    packets: PacketDecoder,
    flows: FlowTable<Conn>,
    decoder: JxtaFlows<Documents>,
    now: UnixNanos,
    first_ts: Option<UnixNanos>,
    ordered: Reorder,
    frames: u64,
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig) -> Self {
        Pipeline::with_sink(cfg, |matcher| DocumentSink::Match {
            matcher: Matcher::new(matcher),
            finished: Vec::new(),
        })
    }

    fn with_sink(cfg: PipelineConfig, sink: impl FnOnce(MatcherConfig) -> DocumentSink) -> Self {
        Pipeline {
            ports: cfg.ports,
            packets: PacketDecoder::new(cfg.packet),
            flows: FlowTable::new(cfg.flows),
            decoder: JxtaFlows::new(
                cfg.stream,
                Documents::new(sink(cfg.matcher), cfg.record_messages, cfg.jim.max_document),
            ),
            now: 0,
            first_ts: None,
            ordered: Reorder::default(),
            frames: 0,
        }
    }

    /// A listing of the messages (`record_messages` on): no document is decoded or
    /// matched, so memory does not grow with the transactions in flight.
    pub fn listing(cfg: PipelineConfig) -> Self {
        Pipeline::with_sink(cfg, |matcher| DocumentSink::Discard {
            idle: Matcher::new(matcher),
        })
    }

    /// A shard of a parallel analysis: everything up to the matcher, whose input is
    /// queued (take it with [`Pipeline::take_matched`]). Flows are numbered by the
    /// index of the frame that opened them, so that numbers agree across shards.
    pub fn new_shard(cfg: PipelineConfig) -> Self {
        Pipeline::with_sink(cfg, |matcher| DocumentSink::Queue {
            queue: Vec::new(),
            idle: Matcher::new(matcher),
            spare: Vec::new(),
        })
    }

    /// A frame that another shard processes: only time moves (timeouts, idle flows).
    pub fn skip_frame(&mut self, ts: UnixNanos) {
        self.frames += 1;
        self.first_ts.get_or_insert(ts);
        if ts > self.now {
            self.now = ts;
        }
        self.flows.tick(ts, &mut self.decoder);
    }

    /// A shard takes back the boxes of documents the matcher is done with, to carry
    /// later documents; at most `keep` are held, the rest freed.
    pub fn recycle_documents(&mut self, boxes: Vec<Box<(Document, Sighting)>>, keep: usize) {
        self.decoder.handler.sink.recycle(boxes, keep);
    }

    /// What a shard has queued for the matcher since the last call.
    pub fn take_matched(&mut self) -> Vec<Matched> {
        self.decoder.handler.sink.take_queued()
    }

    /// Earliest first-seen time of the bytes held in flows (reassembly and stream
    /// parsers): no message still to complete starts before it. A pass over the flows.
    pub fn oldest_held(&self) -> Option<UnixNanos> {
        self.flows.oldest_held(Conn::oldest_buffered)
    }

    /// Ends a shard: flows are closed (their last messages queued, at frame
    /// `u64::MAX`); returns the queue's rest and the shard's counters.
    pub fn finish_shard(mut self) -> (Vec<Matched>, PipelineResult) {
        self.decoder.handler.at = (u64::MAX, self.now);
        let matched = {
            self.flows.finish(&mut self.decoder);
            self.take_matched()
        };
        (matched, self.finish())
    }

    /// Hands over, in report order, the finished transactions that no transaction
    /// still to finish can precede. The rest stay until a later call or `finish`.
    /// Inlined: called after every frame, and mostly returning at once.
    #[inline(always)]
    pub fn release_ordered(&mut self, out: &mut impl FnMut(Transaction)) {
        // Called once a frame, and most frames finish nothing: an empty drain cost ~40
        // instructions.
        let sink = &mut self.decoder.handler.sink;
        if matches!(sink, DocumentSink::Match { finished, .. } if !finished.is_empty()) {
            let ordered = &mut self.ordered;
            sink.drain_finished(|t| ordered.push(t));
        }
        if !self.ordered.due(self.now) {
            return;
        }
        self.release_ordered_now(out);
    }

    /// Like [`Pipeline::release_ordered`] without waiting for a batch to build up: a
    /// live run calls it once a second, so that a quiet wire's few transactions reach
    /// the CSV and the metrics within seconds, not at the end.
    pub fn release_ordered_now(&mut self, out: &mut impl FnMut(Transaction)) {
        let ordered = &mut self.ordered;
        self.decoder
            .handler
            .sink
            .drain_finished(|t| ordered.push(t));
        let watermark = self.ordered.watermark(
            self.now,
            [
                self.decoder.handler.sink.oldest_outstanding(),
                self.oldest_held(),
            ],
        );
        self.ordered.release(watermark, out);
    }

    /// Capture time: the latest timestamp seen (frames may step back a little when
    /// several interfaces are merged; time never does).
    pub fn now(&self) -> UnixNanos {
        self.now
    }

    /// Hands over the records of the messages decoded since the last call (when
    /// `record_messages` is on), in decoding order.
    pub fn take_records(&mut self, out: &mut dyn FnMut(MessageRecord)) {
        if let Some(records) = &mut self.decoder.handler.records {
            for m in records.drain(..) {
                out(m);
            }
        }
    }

    /// Transactions finished so far (live sources drain them as they come).
    pub fn take_finished(&mut self) -> Vec<Transaction> {
        self.decoder.handler.sink.take_finished()
    }

    /// From now on, keep the TCP flows recognised as JXTA for
    /// [`Pipeline::take_jxta_flows`] (a live tap marks them; call before the first frame).
    pub fn announce_jxta_flows(&mut self) {
        self.decoder.announce_jxta_flows();
    }

    /// TCP flows recognised as JXTA by content since the last call, as
    /// (initiator, responder).
    pub fn take_jxta_flows(&mut self) -> Vec<(SocketAddr, SocketAddr)> {
        self.decoder.take_jxta_flows()
    }

    /// Moves capture time forward without a packet: a live source calls this when the
    /// wire is quiet, so PINGs still time out.
    pub fn advance_to(&mut self, now: UnixNanos) {
        if now > self.now {
            self.now = now;
            self.decoder.handler.sink.advance(now);
        }
    }

    /// What the source's reordering did, for the counters and the report.
    pub fn set_reorder_stats(&mut self, stats: &crate::capture::ReorderStats) {
        self.packets.stats.reorder.clone_from(stats);
    }

    /// The matcher (a shard's sees no document: they go to another thread's).
    pub fn matcher(&self) -> &Matcher {
        self.decoder.handler.sink.matcher()
    }

    pub fn packet_stats(&self) -> &PacketStats {
        &self.packets.stats
    }

    pub fn flow_stats(&self) -> &FlowStats {
        &self.flows.stats
    }

    pub fn active_flows(&self) -> usize {
        self.flows.active_flows()
    }

    /// Counters of the JIM layer so far.
    pub fn jim_stats(&self) -> &JimStats {
        &self.decoder.handler.jim
    }

    /// Counters of the JXTA layer so far (stream and message level together).
    pub fn jxta_stats(&self) -> JxtaStats {
        merge_stats(
            self.decoder.stream_stats.clone(),
            self.decoder.handler.message_stats.clone(),
        )
    }

    pub fn frame(&mut self, frame: &Frame<'_>) {
        self.frames += 1;
        if frame.ts > self.now {
            self.now = frame.ts;
            self.decoder.handler.sink.advance(self.now);
        }
        self.decoder.handler.at = (self.frames, self.now);
        self.decoder.frame_ts = frame.ts;
        self.first_ts.get_or_insert(frame.ts);
        // Looked at where it was returned: moved out, the segment was copied whole once
        // more (~16 instructions of every frame). A plain frame's comes as the flow
        // table takes it, not as a `Segment` to copy (docs/performance.md, stop 34).
        let decoded = self.packets.decode_for_flows(frame);
        let seg = match &decoded {
            Decoded::Tcp(tcp) => {
                if self.wanted(&tcp.src, &tcp.dst) {
                    self.tcp_segment(tcp);
                }
                return;
            }
            Decoded::Other(Some(seg)) => seg,
            Decoded::Other(None) => return,
        };
        if !self.wanted(&seg.src, &seg.dst) {
            return;
        }
        if let Some(tcp) = TcpSegment::from_packet(seg) {
            self.tcp_segment(&tcp);
            return;
        }
        match &seg.l4 {
            L4::Tcp { .. } => {}
            L4::Udp { payload } => {
                // Only datagrams with the JXTA signature are JXTA; other UDP is not ours.
                if !payload.starts_with(b"JXTA") {
                    return;
                }
                let max = self.decoder.stream_config().max_message;
                match jxta::parse_datagram(payload, max) {
                    Ok((header, body)) => {
                        let framed = FramedMessage {
                            // A fragmented datagram: first byte with its earliest
                            // fragment, last byte with the one completing it.
                            start: seg.first_ts,
                            stop: seg.ts,
                            framed_len: payload.len() as u64,
                            header,
                            body,
                        };
                        let origin = Origin {
                            transport: Transport::Udp,
                            flow: None,
                            src: &seg.src,
                            dst: &seg.dst,
                            hop_src: None,
                            hop_dst: None,
                            http: None,
                            router: None,
                        };
                        self.decoder.handler.decode(&framed, origin);
                    }
                    Err(e) => self.decoder.handler.message_stats.count_malformed(e.kind()),
                }
            }
        }
    }

    /// Whether `--port` lets a segment between these two through.
    #[inline(always)]
    fn wanted(&self, src: &SocketAddr, dst: &SocketAddr) -> bool {
        self.ports.is_empty()
            || self.ports.contains(&src.port())
            || self.ports.contains(&dst.port())
    }

    /// A TCP segment handed to the flow table.
    #[inline(always)]
    fn tcp_segment(&mut self, tcp: &TcpSegment<'_>) {
        if self.decoder.handler.sink.is_queue() {
            self.flows.set_next_id(self.frames);
        }
        self.flows.segment(tcp, &mut self.decoder);
    }

    /// End of input: flows are closed (their buffered data delivered), PINGs still
    /// waiting become `timeout` or `open`, and the results are handed over.
    pub fn finish(mut self) -> PipelineResult {
        self.flows.finish(&mut self.decoder);
        let (stream_stats, documents) = self.decoder.into_parts();
        let Documents {
            message_stats,
            jim,
            sink,
            records,
            ..
        } = documents;
        let (matcher, mut finished) = sink.finish(self.now);
        self.ordered.finish(&mut finished);
        PipelineResult {
            transactions: finished,
            packets: self.packets.stats.clone(),
            flows: self.flows.stats.clone(),
            jxta: merge_stats(stream_stats, message_stats),
            jim,
            messages: records.unwrap_or_default(),
            matcher,
            first_ts: self.first_ts,
            last_ts: self.now,
        }
    }
}

/// The stream parsers and the message decoder count into separate structs (they are
/// borrowed at the same time); the report shows one.
pub fn merge_stats(mut a: JxtaStats, b: JxtaStats) -> JxtaStats {
    a.absorb(&b);
    a
}

/// What a finished run hands to the reports.
pub struct PipelineResult {
    pub transactions: Vec<Transaction>,
    pub matcher: Matcher,
    pub packets: PacketStats,
    pub flows: FlowStats,
    pub jxta: JxtaStats,
    pub jim: JimStats,
    pub messages: Vec<MessageRecord>,
    pub first_ts: Option<UnixNanos>,
    pub last_ts: UnixNanos,
}

impl PipelineResult {
    pub fn duration_ns(&self) -> u64 {
        self.first_ts.map_or(0, |f| self.last_ts.saturating_sub(f))
    }
}
