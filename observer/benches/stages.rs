//! One criterion benchmark per pipeline stage, so that a regression shows where it
//! happened: `cargo bench -p observer --bench stages`. Figures go to
//! docs/performance.md.
//!
//! Every stage is fed what the stage before it produced, extracted once before
//! measuring: from a generated four-peers capture of 600 simulated seconds (the
//! library's own encoders, as in `benches/analyze.rs`) and from the real JXSE 2.5
//! capture `captures/jxse25-pingpong.pcap`. The extraction is checked against the
//! whole pipeline (same documents, same transactions), so the inputs are the ones the
//! pipeline really sees.

use std::hint::black_box;
use std::io::Cursor;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use observer::capture::{CaptureReader, FrameBuf};
use observer::conntrack::{
    CloseReason, Delivery, Dir, FlowConfig, FlowHandler, FlowInfo, FlowTable, Interest, TcpSegment,
};
use observer::jim::{self, Document};
use observer::jxta::{
    self, HeaderParse, JxtaStats, PeerId, StreamConfig, StreamEvent, StreamParser, StreamStart,
};
use observer::packet::{Decoded, PacketConfig, PacketDecoder, L4};
use observer::runtime::{Pipeline, PipelineConfig};
use observer::synth;
use observer::transaction::{Matcher, MatcherConfig, Sighting, Transport};

struct OwnedSegment {
    ts: u64,
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
    rst: bool,
    payload: Vec<u8>,
}

impl OwnedSegment {
    fn segment(&self) -> TcpSegment<'_> {
        TcpSegment {
            ts: self.ts,
            src: self.src,
            dst: self.dst,
            seq: self.seq,
            ack: self.ack,
            syn: self.syn,
            fin: self.fin,
            rst: self.rst,
            window: 65535,
            payload: &self.payload,
            checksum: observer::packet::Checksum::Unchecked,
            interface: 0,
        }
    }
}

/// What reassembly handed on for one TCP direction, in order.
enum Piece {
    Data(Vec<u8>, u64),
    Gap(u64),
}

struct DirStream {
    start: StreamStart,
    pieces: Vec<Piece>,
}

/// A framed message as the stream parser (or the datagram parser) delivered it.
struct Framed {
    start: u64,
    stop: u64,
    framed_len: u64,
    body: Vec<u8>,
    hop_src: Option<PeerId>,
    hop_dst: Option<PeerId>,
    transport: Transport,
}

/// Every stage's input for one capture.
struct Inputs {
    name: &'static str,
    /// The capture file's bytes (leaked: the reader wants a `'static` stream).
    file: &'static [u8],
    frames: Vec<FrameBuf>,
    segments: Vec<OwnedSegment>,
    streams: Vec<DirStream>,
    /// Whole message packages (header block and body) as they were on the wire.
    packages: Vec<Vec<u8>>,
    messages: Vec<Framed>,
    /// Contents of the non-`jxta` elements: what the pipeline hands to the JIM parser.
    elements: Vec<Vec<u8>>,
    documents: Vec<(Document, Sighting)>,
}

/// The flow table's consumer during extraction: records what each direction
/// delivered and runs the stream parsers, like the pipeline's decoder.
struct Extract {
    stream_cfg: StreamConfig,
    stats: JxtaStats,
    streams: Vec<DirStream>,
    messages: Vec<Framed>,
}

struct Conn {
    index: usize,
    parsers: [StreamParser; 2],
    peers: [Option<PeerId>; 2],
}

impl FlowHandler for Extract {
    type State = Conn;

    fn open(&mut self, info: &FlowInfo) -> Conn {
        let start = StreamStart::from_syn(info.saw_syn);
        let index = self.streams.len();
        for _ in 0..2 {
            self.streams.push(DirStream {
                start,
                pieces: Vec::new(),
            });
        }
        Conn {
            index,
            parsers: [
                StreamParser::new(start, &self.stream_cfg),
                StreamParser::new(start, &self.stream_cfg),
            ],
            peers: [None, None],
        }
    }

    fn deliver(&mut self, conn: &mut Conn, _: &FlowInfo, dir: Dir, d: Delivery<'_>) -> Interest {
        let stream = &mut self.streams[conn.index + dir.index()];
        let parser = &mut conn.parsers[dir.index()];
        match d {
            Delivery::Data { data, first_seen } => {
                stream.pieces.push(Piece::Data(data.to_vec(), first_seen));
                let peers = &mut conn.peers;
                let messages = &mut self.messages;
                parser.push(data, first_seen, &mut self.stats, &mut |ev| match ev {
                    StreamEvent::Welcome(w) => peers[dir.index()] = PeerId::parse(w.peer_id),
                    StreamEvent::Message(m) => messages.push(Framed {
                        start: m.start,
                        stop: m.stop,
                        framed_len: m.framed_len,
                        body: m.body.to_vec(),
                        hop_src: peers[dir.index()].clone(),
                        hop_dst: peers[dir.other().index()].clone(),
                        transport: Transport::Tcp,
                    }),
                });
            }
            Delivery::Gap { len } => {
                stream.pieces.push(Piece::Gap(len));
                parser.gap(len, &mut self.stats);
            }
        }
        // Keep everything: the benchmark wants every direction's bytes.
        Interest::Keep
    }

    fn close(&mut self, conn: &mut Conn, _: &FlowInfo, _: CloseReason) {
        for p in &mut conn.parsers {
            p.finish(&mut self.stats);
        }
    }
}

/// The packages of one gap-free direction: after the welcome line (if any), header
/// block and body back to back.
fn packages_of(stream: &DirStream, out: &mut Vec<Vec<u8>>) {
    if stream.pieces.iter().any(|p| matches!(p, Piece::Gap(_))) {
        return;
    }
    let bytes: Vec<u8> = stream
        .pieces
        .iter()
        .flat_map(|p| match p {
            Piece::Data(d, _) => d.as_slice(),
            Piece::Gap(_) => &[],
        })
        .copied()
        .collect();
    let mut pos = 0;
    if bytes.starts_with(jxta::welcome::WELCOME_SIGNATURE) {
        match bytes.iter().position(|&b| b == b'\n') {
            Some(nl) => pos = nl + 1,
            None => return,
        }
    }
    while pos < bytes.len() {
        let HeaderParse::Complete(h) = jxta::parse_package_header(&bytes[pos..], 1 << 24) else {
            return;
        };
        let end = pos + h.header_len + h.content_length as usize;
        if end > bytes.len() {
            return;
        }
        out.push(bytes[pos..end].to_vec());
        pos = end;
    }
}

fn inputs(name: &'static str, file: Vec<u8>) -> Inputs {
    let file: &'static [u8] = Box::leak(file.into_boxed_slice());
    let mut reader =
        CaptureReader::from_reader(name, Box::new(Cursor::new(file))).expect("capture");
    let mut frames = Vec::new();
    while let Some(f) = reader.next_frame().expect("frame") {
        frames.push(FrameBuf {
            ts: f.ts,
            link_type: f.link_type,
            data: f.data.to_vec(),
            orig_len: f.orig_len,
            interface: f.interface,
        });
    }

    // The pipeline's own run, to check the extraction against.
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    for f in &frames {
        pipeline.frame(&f.frame());
    }
    let expected = pipeline.finish();

    let cfg = PipelineConfig::default();
    let mut decoder = PacketDecoder::new(cfg.packet.clone());
    let mut table: FlowTable<Conn> = FlowTable::new(cfg.flows.clone());
    let mut extract = Extract {
        stream_cfg: cfg.stream.clone(),
        stats: JxtaStats::default(),
        streams: Vec::new(),
        messages: Vec::new(),
    };
    let mut segments = Vec::new();
    for f in &frames {
        let Some(seg) = decoder.decode(&f.frame()) else {
            continue;
        };
        if let Some(t) = TcpSegment::from_packet(&seg) {
            let owned = OwnedSegment {
                ts: t.ts,
                src: t.src,
                dst: t.dst,
                seq: t.seq,
                ack: t.ack,
                syn: t.syn,
                fin: t.fin,
                rst: t.rst,
                payload: t.payload.to_vec(),
            };
            table.segment(&owned.segment(), &mut extract);
            segments.push(owned);
            continue;
        }
        match &seg.l4 {
            L4::Tcp { .. } => {}
            L4::Udp { payload } => {
                if let Ok((_, body)) = jxta::parse_datagram(payload, cfg.stream.max_message) {
                    extract.messages.push(Framed {
                        start: seg.ts,
                        stop: seg.ts,
                        framed_len: payload.len() as u64,
                        body: body.to_vec(),
                        hop_src: None,
                        hop_dst: None,
                        transport: Transport::Udp,
                    });
                }
            }
        }
    }
    table.finish(&mut extract);

    let mut packages = Vec::new();
    for s in &extract.streams {
        packages_of(s, &mut packages);
    }
    let mut elements = Vec::new();
    let mut documents = Vec::new();
    for m in &extract.messages {
        let Ok(msg) = jxta::decode_message(&m.body) else {
            continue;
        };
        let addressing = jxta::addressing(&msg);
        for e in msg.elements.iter().filter(|e| e.namespace != "jxta") {
            elements.push(e.content.to_vec());
            if let Ok(Some(doc)) = jim::parse(e.content) {
                let sighting = Sighting {
                    start: m.start,
                    stop: m.stop,
                    src_peer: addressing
                        .src_peer
                        .clone()
                        .or_else(|| addressing.header_src_peer.clone()),
                    dst_peer: addressing.dst_peer.clone(),
                    hop_src: m.hop_src.clone(),
                    hop_dst: m.hop_dst.clone(),
                    framed_bytes: m.framed_len,
                    message_bytes: m.body.len() as u64,
                    transport: m.transport,
                    wire: Default::default(),
                };
                documents.push((doc, sighting));
            }
        }
    }
    assert_eq!(
        documents.len() as u64,
        expected.jim.documents,
        "{name}: the extraction must find the pipeline's documents"
    );
    let found = run_matcher(&documents);
    assert_eq!(
        found,
        expected.transactions.len(),
        "{name}: the extracted documents must give the pipeline's transactions"
    );
    eprintln!(
        "stages: {name}: {} bytes, {} frames, {} TCP segments, {} directions, {} packages, \
         {} messages, {} elements, {} documents, {found} transactions",
        file.len(),
        frames.len(),
        segments.len(),
        extract.streams.len(),
        packages.len(),
        extract.messages.len(),
        elements.len(),
        documents.len(),
    );
    Inputs {
        name,
        file,
        frames,
        segments,
        streams: extract.streams,
        packages,
        messages: extract.messages,
        elements,
        documents,
    }
}

/// Matching as the pipeline drives it: time advances to each message's stop, then the
/// document is observed; the rest time out at the end.
fn run_matcher(documents: &[(Document, Sighting)]) -> usize {
    matched(documents).len()
}

/// The transactions the matcher makes of the documents.
fn matched(documents: &[(Document, Sighting)]) -> Vec<observer::transaction::Transaction> {
    let mut matcher = Matcher::new(MatcherConfig::default());
    let mut out = Vec::new();
    let mut now = 0;
    for (doc, s) in documents {
        if s.stop > now {
            now = s.stop;
            matcher.advance(now, &mut out);
        }
        matcher.observe(doc, s, &mut out);
    }
    matcher.finish(now, &mut out);
    out
}

/// The same records through the `csv` crate's writer, fields formatted as ours are:
/// what `TransactionCsvWriter` would cost if it used the crate.
fn csv_crate_records(txs: &[observer::transaction::Transaction]) -> usize {
    use observer::report::csv::format_rtt_us;
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(std::io::sink());
    let num = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for t in txs {
        let record = [
            t.start.to_string(),
            num(t.stop),
            t.rtt_ns().map(format_rtt_us).unwrap_or_default(),
            t.poller_name.as_deref().unwrap_or_default().to_owned(),
            t.poller_id
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            t.receiver_name.as_deref().unwrap_or_default().to_owned(),
            t.receiver_id
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            t.receiver_status
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            t.status.as_str().to_owned(),
            t.correlator.as_deref().unwrap_or_default().to_owned(),
            t.match_method
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default(),
            t.ping_bytes.to_string(),
            num(t.pong_bytes),
            t.correlator_overhead_bytes.to_string(),
        ];
        w.write_record(&record).expect("sink");
    }
    w.flush().expect("sink");
    txs.len()
}

fn ours_records(txs: &[observer::transaction::Transaction]) -> usize {
    let mut w = observer::report::TransactionCsvWriter::new(std::io::sink()).expect("sink");
    for t in txs {
        w.write(t).expect("sink");
    }
    txs.len()
}

/// Runs a stream parser over every direction as reassembly delivered it; returns the
/// body bytes of the messages framed.
fn parse_streams(streams: &[DirStream]) -> usize {
    let cfg = StreamConfig::default();
    let mut stats = JxtaStats::default();
    let mut n = 0usize;
    for s in streams {
        let mut p = StreamParser::new(s.start, &cfg);
        for piece in &s.pieces {
            match piece {
                Piece::Data(d, ts) => p.push(d, *ts, &mut stats, &mut |ev| {
                    if let StreamEvent::Message(m) = ev {
                        n += m.body.len();
                    }
                }),
                Piece::Gap(len) => p.gap(*len, &mut stats),
            }
        }
        p.finish(&mut stats);
    }
    n
}

/// The reassembly benchmark's consumer: it only counts what is delivered.
#[derive(Default)]
struct Count(u64);

impl FlowHandler for Count {
    type State = ();
    fn open(&mut self, _: &FlowInfo) {}
    fn deliver(&mut self, _: &mut (), _: &FlowInfo, _: Dir, d: Delivery<'_>) -> Interest {
        self.0 += match d {
            Delivery::Data { data, .. } => data.len() as u64,
            Delivery::Gap { len } => len,
        };
        Interest::Keep
    }
    fn close(&mut self, _: &mut (), _: &FlowInfo, _: CloseReason) {}
}

fn all_inputs() -> Vec<Inputs> {
    let (_, synth_file) = synth::long_four_peers(600).expect("render capture");
    let real = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../captures/jxse25-pingpong.pcap"
    ))
    .expect("captures/jxse25-pingpong.pcap");
    vec![
        inputs("four-peers-600s", synth_file),
        inputs("jxse25-pingpong", real),
    ]
}

fn stages(c: &mut Criterion) {
    let all = all_inputs();

    let mut g = c.benchmark_group("capture/read");
    for i in &all {
        g.throughput(Throughput::Bytes(i.file.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
            b.iter(|| {
                let mut r = CaptureReader::from_reader("bench", Box::new(Cursor::new(i.file)))
                    .expect("capture");
                let mut n = 0u64;
                while let Some(f) = r.next_frame().expect("frame") {
                    n += f.data.len() as u64;
                }
                black_box(n)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("packet/decode");
    for i in &all {
        let bytes: usize = i.frames.iter().map(|f| f.data.len()).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
            b.iter(|| {
                let mut d = PacketDecoder::new(PacketConfig::default());
                let mut n = 0usize;
                // The pipeline's way: a plain frame straight to the flow table's segment.
                for f in &i.frames {
                    match d.decode_for_flows(&f.frame()) {
                        Decoded::Tcp(t) => n += t.payload.len(),
                        Decoded::Other(Some(s)) => n += s.l4.payload().len(),
                        Decoded::Other(None) => {}
                    }
                }
                black_box(n)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("conntrack/reassembly");
    for i in &all {
        let bytes: usize = i.segments.iter().map(|s| s.payload.len()).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
            b.iter(|| {
                let mut table: FlowTable<()> = FlowTable::new(FlowConfig::default());
                let mut sink = Count::default();
                for s in &i.segments {
                    table.segment(&s.segment(), &mut sink);
                }
                table.finish(&mut sink);
                black_box(sink.0)
            })
        });
    }
    g.finish();

    // The stream parser: welcome lines, package boundaries, first-seen times, over
    // each direction's reassembled pieces as reassembly delivered them.
    let mut g = c.benchmark_group("jxta/stream");
    for i in &all {
        let bytes: usize = i
            .streams
            .iter()
            .flat_map(|s| &s.pieces)
            .map(|p| match p {
                Piece::Data(d, _) => d.len(),
                Piece::Gap(_) => 0,
            })
            .sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        let expected: usize = i
            .messages
            .iter()
            .filter(|m| m.transport == Transport::Tcp)
            .map(|m| m.body.len())
            .sum();
        assert_eq!(
            parse_streams(&i.streams),
            expected,
            "{}: stream parser",
            i.name
        );
        g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
            b.iter(|| black_box(parse_streams(&i.streams)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("jxta/package_header");
    for i in &all {
        g.throughput(Throughput::Elements(i.packages.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
            b.iter(|| {
                let mut n = 0u64;
                for p in &i.packages {
                    if let HeaderParse::Complete(h) = jxta::parse_package_header(p, 1 << 24) {
                        n += h.content_length;
                    }
                }
                black_box(n)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("jxta/decode_message");
    for i in &all {
        let bytes: usize = i.messages.iter().map(|m| m.body.len()).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
            b.iter(|| {
                let mut n = 0usize;
                for m in &i.messages {
                    if let Ok(msg) = jxta::decode_message(&m.body) {
                        n += msg.elements.len();
                    }
                }
                black_box(n)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("jxta/addressing");
    for i in &all {
        let decoded: Vec<jxta::Message<'_>> = i
            .messages
            .iter()
            .filter_map(|m| jxta::decode_message(&m.body).ok())
            .collect();
        g.throughput(Throughput::Elements(decoded.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(i.name), &decoded, |b, msgs| {
            b.iter(|| {
                let mut n = 0usize;
                for m in msgs {
                    let a = jxta::addressing(m);
                    n += usize::from(a.src_peer.is_some()) + usize::from(a.dst_peer.is_some());
                }
                black_box(n)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("jim/parse");
    for i in &all {
        let bytes: usize = i.elements.iter().map(Vec::len).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
            b.iter(|| {
                let mut n = 0usize;
                for e in &i.elements {
                    if let Ok(Some(d)) = jim::parse(e) {
                        n += d.correlator_bytes as usize;
                    }
                }
                black_box(n)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("transaction/matcher");
    for i in &all {
        g.throughput(Throughput::Elements(i.documents.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(i.name), i, |b, i| {
            b.iter(|| black_box(run_matcher(&i.documents)))
        });
    }
    g.finish();

    // Why the transaction CSV is encoded by hand (report/csv.rs): the same records
    // through our writer and through the `csv` crate's.
    let mut g = c.benchmark_group("report/csv");
    for i in &all {
        let txs = matched(&i.documents);
        g.throughput(Throughput::Elements(txs.len() as u64));
        g.bench_with_input(BenchmarkId::new("ours", i.name), &txs, |b, t| {
            b.iter(|| black_box(ours_records(t)))
        });
        g.bench_with_input(BenchmarkId::new("csv-crate", i.name), &txs, |b, t| {
            b.iter(|| black_box(csv_crate_records(t)))
        });
    }
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
