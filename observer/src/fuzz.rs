//! Entry points for the fuzz targets (`observer/fuzz`, run with `cargo fuzz`) and for the
//! corpus regression test that replays the saved corpus on stable Rust. Each takes
//! arbitrary bytes and must return without panicking, hanging or growing without bound;
//! the checks inside are the properties the fuzzer looks for beyond crashes.

use std::collections::HashMap;
use std::io::Cursor;
use std::net::SocketAddr;

use crate::capture::CaptureReader;
use crate::conntrack::{
    CloseReason, Delivery, Dir, FlowConfig, FlowHandler, FlowInfo, FlowTable, Interest, TcpSegment,
};
use crate::jxta::http::{HttpParser, Role, MAX_HEAD};
use crate::jxta::{self, DirParser, JxtaStats, StreamConfig, StreamParser, StreamStart};
use crate::runtime::{Pipeline, PipelineConfig};

/// The capture reader and everything after it: any bytes as a pcap/pcapng file.
pub fn capture_file(data: &[u8]) {
    let streamed = CaptureReader::from_reader("fuzz", Box::new(Cursor::new(data.to_vec())));
    // The in-place reader (what a mapped file uses) must see exactly what the copying
    // one sees: the same frames, the same error at the same offset.
    let in_place = CaptureReader::from_bytes("fuzz", data.to_vec());
    let (mut reader, mut twin) = match (streamed, in_place) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string());
            return;
        }
        (a, b) => panic!(
            "readers disagree on the header: {:?} / {:?}",
            a.err(),
            b.err()
        ),
    };
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    // A second pipeline releases transactions as it goes (what `analyze` does): it
    // must hand over exactly the same ones, none lost, none twice.
    let mut streaming = Pipeline::new(PipelineConfig::default());
    let mut released = Vec::new();
    for _ in 0..100_000 {
        let a = reader.next_frame();
        let b = twin.next_frame();
        match (&a, &b) {
            (Ok(Some(x)), Ok(Some(y))) => {
                assert_eq!(
                    (x.ts, x.link_type, x.data, x.orig_len, x.interface),
                    (y.ts, y.link_type, y.data, y.orig_len, y.interface)
                );
            }
            (Ok(None), Ok(None)) => {}
            (Err(x), Err(y)) => assert_eq!(x.to_string(), y.to_string()),
            _ => panic!("readers disagree: {:?} / {:?}", a.is_ok(), b.is_ok()),
        }
        match a {
            Ok(Some(frame)) => {
                pipeline.frame(&frame);
                streaming.frame(&frame);
                streaming.release_ordered(&mut |t| released.push(t));
            }
            Ok(None) | Err(_) => break,
        }
    }
    assert_eq!(reader.offset(), twin.offset());
    let mut kept = pipeline.finish().transactions;
    released.extend(streaming.finish().transactions);
    let canonical = |v: &mut Vec<crate::transaction::Transaction>| {
        v.sort_by_cached_key(|t| format!("{t:?}"));
    };
    canonical(&mut kept);
    canonical(&mut released);
    assert_eq!(kept, released);
}

/// Collects what the flow table delivers, checking that gaps and data never overlap
/// and that the buffered bytes stay within the caps.
#[derive(Default)]
struct Streams {
    delivered: HashMap<(u64, usize), u64>,
}

impl FlowHandler for Streams {
    type State = ();
    fn open(&mut self, _: &FlowInfo) {}
    fn deliver(&mut self, _: &mut (), info: &FlowInfo, dir: Dir, d: Delivery<'_>) -> Interest {
        let n = match d {
            Delivery::Data { data, .. } => data.len() as u64,
            Delivery::Gap { len } => len,
        };
        *self.delivered.entry((info.id, dir.index())).or_default() += n;
        Interest::Keep
    }
    fn close(&mut self, _: &mut (), _: &FlowInfo, _: CloseReason) {}
}

/// TCP reassembly: the bytes are a script of segments on a few 4-tuples
/// (`[flow, flags, seq (4), ack (4), len]` then `len` payload bytes, repeated).
pub fn reassembly(data: &[u8]) {
    let cfg = FlowConfig {
        max_flow_buffer: 4096,
        max_total_buffer: 16_384,
        max_flows: 8,
        idle_timeout_ns: 1_000_000,
    };
    let max_total = cfg.max_total_buffer;
    let mut table: FlowTable<()> = FlowTable::new(cfg);
    let mut sink = Streams::default();
    let addrs: [SocketAddr; 4] = [
        SocketAddr::from(([10, 0, 0, 1], 40000)),
        SocketAddr::from(([10, 0, 0, 2], 9701)),
        SocketAddr::from(([10, 0, 0, 3], 40001)),
        SocketAddr::from(([10, 0, 0, 4], 9701)),
    ];
    let mut rest = data;
    let mut ts = 0u64;
    while rest.len() >= 11 {
        let (h, tail) = rest.split_at(11);
        let len = usize::from(h[10]).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        let f = usize::from(h[0] % 4);
        let (src, dst) = match f {
            0 => (addrs[0], addrs[1]),
            1 => (addrs[1], addrs[0]),
            2 => (addrs[2], addrs[3]),
            _ => (addrs[3], addrs[2]),
        };
        let flags = h[1];
        ts += u64::from(h[0] >> 2) * 1000;
        let seg = TcpSegment {
            ts,
            src,
            dst,
            seq: u32::from_be_bytes([h[2], h[3], h[4], h[5]]),
            ack: (flags & 0x10 != 0).then(|| u32::from_be_bytes([h[6], h[7], h[8], h[9]])),
            syn: flags & 0x02 != 0,
            fin: flags & 0x01 != 0,
            rst: flags & 0x04 != 0,
            // The header's fourth flag bit closes the window (zero-window stalls).
            window: if flags & 0x08 != 0 { 0 } else { 65535 },
            payload,
            checksum: match flags >> 5 {
                0 => crate::packet::Checksum::Bad,
                1 => crate::packet::Checksum::Offloaded,
                _ => crate::packet::Checksum::Valid,
            },
            interface: 0,
        };
        table.segment(&seg, &mut sink);
        assert!(
            table.buffered_bytes() <= max_total,
            "global buffer cap exceeded"
        );
        assert!(table.active_flows() <= 8, "flow cap exceeded");
    }
    table.finish(&mut sink);
    assert_eq!(
        table.buffered_bytes(),
        0,
        "everything is released at the end"
    );
}

/// The JXTA layer: welcome, package header, datagram, `jxmg` decoding and addressing,
/// and the stream parser fed in pieces whose sizes come from the first byte.
pub fn jxta(data: &[u8]) {
    let _ = jxta::parse_welcome(data);
    let _ = jxta::parse_package_header(data, 1 << 20);
    let _ = jxta::parse_datagram(data, 1 << 20);
    if let Ok(msg) = jxta::decode_message(data) {
        let _ = jxta::addressing(&msg);
    }
    // Decoded and counted as the pipeline does, a message's layout may get a skeleton:
    // the same bytes, and the same with one byte changed, then decode by it as the
    // decoder decodes them.
    let mut stats = JxtaStats::default();
    if let Ok(msg) = stats.decode_message(data, Vec::new()) {
        stats.count_message(&msg, false);
    }
    let mut changed = data.to_vec();
    if let (Some(&first), Some(&last)) = (data.first(), data.last()) {
        if let Some(b) = changed.get_mut(usize::from(first) % data.len()) {
            *b ^= last | 1;
        }
    }
    for body in [data, &changed[..]] {
        let known = stats.decode_message(body, Vec::new());
        let plain = jxta::decode_message(body);
        assert_eq!(known.as_ref().ok(), plain.as_ref().ok());
        assert_eq!(
            known.as_ref().err().map(|e| e.kind()),
            plain.as_ref().err().map(|e| e.kind())
        );
    }
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let cfg = StreamConfig {
        max_message: 1 << 16,
        max_resync_scan: 1 << 16,
    };
    for start in [StreamStart::Beginning, StreamStart::MidStream] {
        let mut parser = StreamParser::new(start, &cfg);
        let mut stats = JxtaStats::default();
        let mut ts = 0;
        for chunk in rest.chunks(step) {
            ts += 1;
            parser.push(chunk, ts, &mut stats, &mut |ev| {
                if let jxta::StreamEvent::Message(m) = ev {
                    assert!(m.start <= m.stop);
                    if let Ok(msg) = jxta::decode_message(m.body) {
                        let _ = jxta::addressing(&msg);
                    }
                }
            });
            // One message at most is held, and it is bounded by `max_message`.
            assert!(parser.buffered() as u64 <= cfg.max_message + (1 << 17));
        }
        parser.finish(&mut stats);
    }
}

/// The HTTP transport: the `jxmg` extent walk on the raw bytes, then the bytes as one
/// direction of a connection (as requests, as responses, and sniffed by the
/// per-direction dispatcher), fed in pieces; the first byte sets the piece size (low
/// six bits) and where a capture gap falls (high two bits).
pub fn http(data: &[u8]) {
    // Whatever the walk accepts, the decoder finds complete.
    if let Ok(Some(n)) = jxta::extent::Extent::default().advance(data, 1 << 20) {
        let whole = data.get(..n).unwrap_or_default();
        if let Err(e) = jxta::decode_message(whole) {
            assert!(
                !matches!(e, jxta::JxtaError::Truncated(_)),
                "walk and decoder disagree: {e}"
            );
        }
    }
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(ctl & 0x3f).max(1);
    let gap_at = usize::from(ctl >> 6) * 3 + 1;
    let cfg = StreamConfig {
        max_message: 1 << 16,
        max_resync_scan: 1 << 16,
    };
    let bound = cfg.max_message as usize + MAX_HEAD + step + 64;
    let check = |m: &jxta::FramedMessage<'_>| {
        assert!(m.start <= m.stop);
        assert_eq!(m.body.len() as u64, m.header.content_length);
        // A message handed on is exactly one walk long.
        assert_eq!(
            jxta::extent::Extent::default().advance(m.body, 1 << 16),
            Ok(Some(m.body.len()))
        );
    };
    for role in [Role::Request, Role::Response] {
        let mut p = HttpParser::new(role, &cfg);
        let mut stats = JxtaStats::default();
        for (i, chunk) in rest.chunks(step).enumerate() {
            if i == gap_at {
                p.gap(chunk.len() as u64, &mut stats);
                continue;
            }
            p.push(chunk, i as u64, &mut stats, &mut |m| check(&m));
            assert!(p.buffered() <= bound, "{} buffered", p.buffered());
        }
        p.finish(&mut stats);
    }
    for start in [StreamStart::Beginning, StreamStart::MidStream] {
        let mut p = DirParser::new(start);
        let mut stats = JxtaStats::default();
        for (i, chunk) in rest.chunks(step).enumerate() {
            p.push(chunk, i as u64, &cfg, &mut stats, &mut |ev, _| {
                if let jxta::StreamEvent::Message(m) = ev {
                    assert!(m.start <= m.stop);
                }
            });
            assert!(p.buffered() <= bound, "{} buffered", p.buffered());
        }
        p.finish(&cfg, &mut stats);
    }
}

/// The JIM decoder; a document it accepts must survive being written and read back.
pub fn jim(data: &[u8]) {
    // The plain path must agree with the XML decoder on everything it accepts.
    let body = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    if let Some(plain) = crate::jim::decode_plain(body) {
        match crate::jim::parse_full(data) {
            Ok(Some(full)) => assert_eq!(plain, full, "plain and XML decoders differ"),
            other => panic!("plain path took what the XML decoder gives as {other:?}: {plain:?}"),
        }
    }
    // A caller's limit only ever refuses more, and says why with the real sizes.
    let limit = data.len() / 2;
    match crate::jim::parse_limited(data, limit) {
        Ok(Some(doc)) if data.len() <= crate::jim::DEFAULT_MAX_DOCUMENT_BYTES => {
            assert_eq!(crate::jim::parse(data), Ok(Some(doc)));
        }
        Err(crate::jim::JimError::TooLarge { len, max, .. }) => {
            assert_eq!((len, max), (body.len(), limit));
        }
        _ => {}
    }
    if let Ok(Some(doc)) = crate::jim::parse(data) {
        let again = crate::jim::parse(doc.to_xml().as_bytes());
        let Ok(Some(again)) = again else {
            panic!("a decoded document must re-encode to a decodable one: {doc:?}");
        };
        assert_eq!(again.kind, doc.kind);
        assert_eq!(again.correlator, doc.correlator);
        assert_eq!(again.status, doc.status);
    }
}

static PEER_STATE: std::sync::OnceLock<std::sync::Arc<crate::peer::Shared>> =
    std::sync::OnceLock::new();

/// The fuzz peer's counters (tests check that the harness really drives the handler).
pub fn peer_counters() -> std::collections::BTreeMap<&'static str, u64> {
    PEER_STATE.get().map(|s| s.counters()).unwrap_or_default()
}

/// The reference peer's connection handler, over an in-memory pipe: the bytes are what
/// a remote end sends. The handler must finish (on EOF or by closing) promptly.
pub fn peer_connection(data: &[u8]) {
    use std::sync::{Arc, OnceLock};
    static PEER: OnceLock<(tokio::runtime::Runtime, Arc<crate::peer::Shared>)> = OnceLock::new();
    // Set-up failing is a bug of the harness, not a finding: it must not pass silently.
    let (rt, shared) = PEER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let mut cfg = crate::peer::config::PeerConfig::new("fuzz");
        cfg.management = None;
        cfg.stdin_commands = false;
        cfg.max_message = 1 << 16;
        let shared = crate::peer::Shared::new(cfg, 9701).expect("peer state");
        let _ = PEER_STATE.set(shared.clone());
        (rt, shared)
    });
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let (rd, wr) = tokio::io::split(server);
        let remote = SocketAddr::from(([10, 9, 9, 9], 40000));
        let local = Some(SocketAddr::from(([10, 9, 9, 1], 9701)));
        let handler = tokio::spawn(crate::peer::connection::serve(
            shared.clone(),
            rd,
            wr,
            remote,
            local,
            false,
            None,
            None,
        ));
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        // Keep reading what the peer answers so it never blocks on a full pipe.
        let drain = async {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut client, &mut sink).await;
        };
        let done = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            let (r, _) = tokio::join!(handler, drain);
            r
        })
        .await;
        // A panic inside the spawned handler only shows in its JoinError: re-raise it so
        // the fuzzer and the corpus replay see it as a crash.
        match done {
            Err(_) => panic!("the connection handler did not finish"),
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Err(e)) => panic!("the connection handler task failed: {e}"),
            Ok(Ok(())) => {}
        }
    });
}
