//! `cargo xtask bench-data`: benchmark captures, generated deterministically and
//! streamed to disk (a 4 GB file costs no more memory than a small one).
//!
//! The JXTA traffic is the real JXSE 2.5 capture (`captures/jxse25-pingpong.pcap`)
//! replicated: every (poller, buddy) pair gets its own TCP connection that replays the
//! real connection's set-up (handshake, welcome lines, discovery, the first PING/PONG),
//! then one real PING/PONG exchange per poll interval, then the real tear-down. Peer
//! IDs, peer names and correlators are rewritten in place (same length, so the real
//! framing stays valid) so that every pair is a distinct pair of peers and every PING a
//! distinct transaction. Sequence numbers, acks and checksums are recomputed.
//!
//! Background traffic (bulk TCP transfers, HTTP-like request/response flows, UDP
//! datagrams) is interleaved to reach a given share of the file's bytes.
//!
//! Over 600 lines: the generators of the benchmark files share the replicated real
//! connection.

use std::collections::BinaryHeap;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use observer::capture::{CaptureReader, CaptureWriter, LinkType, WriteFormat};
use observer::packet::build::{self, LinkVariant};
use observer::packet::TcpFlags;

/// The real capture's unique parts of the two peer IDs, and its peer names.
const EDGE_ID: &[u8] = b"889B6C22963E4D96A9E3E3386F5B2816";
const RDV_ID: &[u8] = b"A96FCDC35A0A4F3F8038B4F1F4D0B37E";
const EDGE_NAME: &[u8] = b"PingClient";
const RDV_NAME: &[u8] = b"PingServer";
const CORR: &[u8] = b"corr-00";

/// Capture start: 2027-01-01T00:00:00Z.
const T0: u64 = 1_798_761_600_000_000_000;

#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    /// Target file size in bytes (the file ends at the first whole connection
    /// tear-down past it, so it is a little larger).
    pub size: u64,
    pub peers: u32,
    pub buddies: u32,
    /// Poll interval; `None` derives it from `seconds`.
    pub interval_ns: Option<u64>,
    pub seconds: Option<u64>,
    /// Share of the file's bytes that is not JXTA.
    pub background: f64,
    /// Replay the real discovery traffic at connection set-up (`false`: handshake
    /// and welcome lines only, for very many connections).
    pub full_setup: bool,
    /// PING/PONG exchanges per connection before it is closed and the pair opens a
    /// new one (`Some(9)`: the real connection replayed whole, ten transactions with
    /// the one in its set-up); `None`: one connection per pair for the whole file.
    pub rounds_per_connection: Option<u64>,
    /// Time over which the pairs' first connections start; `None`: one poll interval
    /// (every pair connected at once). Longer, the pairs come and go: a gateway's
    /// population, where what is tracked at any time is a small part of all pairs.
    pub spread_ns: Option<u64>,
    /// Index of the first peer: captures with disjoint ranges share no peer, pair or
    /// correlator, so that several can be replayed at once as distinct traffic.
    pub first_peer: u32,
    /// The receivers' TCP port (9701 as in the real capture; another one makes a
    /// live capture find the flows by content).
    pub port: u16,
}

impl Spec {
    /// The set `cargo xtask bench` measures.
    pub fn presets() -> Vec<Spec> {
        let jxta = |name: &str, size: u64| Spec {
            name: name.into(),
            size,
            peers: 200,
            buddies: 10,
            interval_ns: Some(500_000_000),
            seconds: None,
            background: 0.0,
            full_setup: true,
            rounds_per_connection: Some(9),
            spread_ns: None,
            first_peer: 0,
            port: 9701,
        };
        vec![
            jxta("jxta-0.1g", 100 << 20),
            jxta("jxta-1g", 1 << 30),
            jxta("jxta-4g", 4 << 30),
            // Fewer pairs, so that 5 % of 1 GB holds one whole connection per pair.
            Spec {
                background: 0.95,
                peers: 100,
                ..jxta("background95-1g", 1 << 30)
            },
            Spec {
                name: "peers10k-1g".into(),
                size: 1 << 30,
                peers: 10_000,
                buddies: 10,
                // JIM's own pace. An hour of it for 100,000 pairs would be ~80 GB;
                // the population and the pace are kept, the duration is what 1 GB holds.
                interval_ns: Some(10_000_000_000),
                seconds: None,
                background: 0.0,
                full_setup: false,
                rounds_per_connection: None,
                spread_ns: None,
                first_peer: 0,
                port: 9701,
            },
            // A gateway's churn (issue 12): 150,000 distinct pollers, each connecting
            // once for one real PING/PONG over ten minutes, so that at any time a few
            // hundred pairs are active and the rest are done. One exchange of the real
            // capture is 2.3 KB with its set-up and tear-down 5.1 KB: 150,000 pairs
            // make ~770 MB.
            Spec {
                name: "pollers150k".into(),
                size: 800 << 20,
                peers: 150_000,
                buddies: 1,
                interval_ns: Some(1_000_000_000),
                seconds: None,
                background: 0.0,
                full_setup: false,
                rounds_per_connection: Some(1),
                spread_ns: Some(600_000_000_000),
                first_peer: 0,
                port: 9701,
            },
        ]
    }
}

/// What a replayed step carries in its payload that must be rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Patch {
    PollerId,
    ReceiverId,
    PollerName,
    ReceiverName,
    /// `corr-00NN` (9 bytes) → a correlator unique within the pair.
    Correlator,
}

#[derive(Clone, Debug)]
struct Step {
    /// Offset from the start of its phase.
    at_ns: u64,
    /// 0: the poller (the real edge peer), 1: the receiver (the rendezvous).
    dir: usize,
    flags: TcpFlags,
    payload: Vec<u8>,
    patches: Vec<(usize, Patch)>,
}

struct Template {
    setup: Vec<Step>,
    /// Each a PING, its PONG and the PONG's ack.
    exchanges: Vec<Vec<Step>>,
    teardown: Vec<Step>,
}

fn find_patches(payload: &[u8]) -> Vec<(usize, Patch)> {
    let mut out = Vec::new();
    for (pat, kind) in [
        (EDGE_ID, Patch::PollerId),
        (RDV_ID, Patch::ReceiverId),
        (EDGE_NAME, Patch::PollerName),
        (RDV_NAME, Patch::ReceiverName),
        (CORR, Patch::Correlator),
    ] {
        out.extend(memchr::memmem::find_iter(payload, pat).map(|at| (at, kind)));
    }
    out
}

fn load_template(path: &Path, full_setup: bool) -> Result<Template> {
    let mut reader = CaptureReader::open(path)?;
    let mut steps = Vec::new();
    let mut edge_port = None;
    while let Some(frame) = reader.next_frame()? {
        ensure!(
            frame.link_type == LinkType::ETHERNET,
            "template is not Ethernet"
        );
        let sliced = etherparse::SlicedPacket::from_ethernet(frame.data)
            .map_err(|e| anyhow::anyhow!("template frame: {e}"))?;
        let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport else {
            continue;
        };
        let edge = *edge_port.get_or_insert(tcp.source_port());
        steps.push((
            frame.ts,
            Step {
                at_ns: 0,
                dir: usize::from(tcp.source_port() != edge),
                flags: TcpFlags {
                    syn: tcp.syn(),
                    ack: tcp.ack(),
                    fin: tcp.fin(),
                    rst: tcp.rst(),
                    psh: tcp.psh(),
                },
                payload: tcp.payload().to_vec(),
                patches: find_patches(tcp.payload()),
            },
        ));
    }
    // The real connection: frames 1-21 set-up (handshake, welcomes, discovery, the
    // first PING/PONG), 22-48 nine PING/PONG/ack exchanges, 49-53 a last propagate
    // message and the tear-down.
    ensure!(
        steps.len() == 53,
        "unexpected template ({} TCP frames)",
        steps.len()
    );
    let phase = |range: std::ops::Range<usize>| -> Vec<Step> {
        let base = steps[range.start].0;
        steps[range]
            .iter()
            .map(|(ts, s)| Step {
                at_ns: ts - base,
                ..s.clone()
            })
            .collect()
    };
    let exchanges: Vec<Vec<Step>> = (0..9).map(|k| phase(21 + 3 * k..24 + 3 * k)).collect();
    for x in &exchanges {
        ensure!(
            memchr::memmem::find(&x[0].payload, b"<PING>").is_some()
                && memchr::memmem::find(&x[1].payload, b"<PONG>").is_some(),
            "template exchange is not PING, PONG"
        );
    }
    Ok(Template {
        setup: phase(if full_setup { 0..21 } else { 0..7 }),
        exchanges,
        teardown: phase(48..53),
    })
}

fn bytes_on_wire(steps: &[Step]) -> u64 {
    // pcap record header + Ethernet + IPv4 + TCP.
    steps
        .iter()
        .map(|s| 16 + 14 + 20 + 20 + s.payload.len() as u64)
        .sum()
}

/// 32 uppercase hex digits, distinct per peer.
fn peer_unique(peer: u32) -> [u8; 32] {
    let mut x = (u64::from(peer) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(16) {
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = b"0123456789ABCDEF"[((x >> (60 - 4 * i)) & 0xf) as usize];
        }
        x = x.wrapping_add(u64::from(peer));
    }
    out
}

/// 10 bytes, like the real names.
fn peer_name(peer: u32) -> [u8; 10] {
    let mut out = *b"peer000000";
    let mut n = peer;
    for b in out[4..].iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

fn peer_ip(peer: u32) -> IpAddr {
    let n = peer + 1;
    IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Setup,
    Exchange(u64),
    Teardown,
    Done,
}

struct Conn {
    poller: u32,
    receiver: u32,
    addrs: [SocketAddr; 2],
    seq: [u32; 2],
    phase: Phase,
    step: usize,
    phase_start: u64,
    /// Start of round 0's exchange.
    first_round: u64,
    pair: u64,
    /// How many connections this pair opened before this one.
    generation: u64,
}

struct Out<W: Write> {
    writer: CaptureWriter<W>,
    bytes: u64,
    frames: u64,
    last_ts: u64,
}

impl<W: Write> Out<W> {
    fn tcp(
        &mut self,
        ts: u64,
        (src, dst): (SocketAddr, SocketAddr),
        (seq, ack): (u32, u32),
        flags: TcpFlags,
        payload: &[u8],
    ) -> Result<()> {
        let ip = build::tcp_packet(src, dst, seq, ack, flags, 65535, payload);
        self.put(ts, &ip)
    }

    fn put(&mut self, ts: u64, ip: &[u8]) -> Result<()> {
        let (_, frame) = build::frame(LinkVariant::Ethernet, ip);
        let ts = ts.max(self.last_ts);
        self.writer.write_frame(0, ts, &frame, frame.len() as u32)?;
        self.last_ts = ts;
        self.bytes += 16 + frame.len() as u64;
        self.frames += 1;
        Ok(())
    }
}

/// Background flows, cycled through: bulk transfers (1448-byte segments, an ack every
/// second one), HTTP-like exchanges (a request, a response of a few segments) and UDP
/// datagrams.
struct Background {
    noise: Vec<u8>,
    bulk: Vec<([SocketAddr; 2], [u32; 2], u64)>,
    http: Vec<([SocketAddr; 2], [u32; 2])>,
    udp: Vec<[SocketAddr; 2]>,
    turn: u64,
}

impl Background {
    fn new() -> Self {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let noise = (0..(64 << 10))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let host = |a: u8, b: u8, port: u16| {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(172, 16, a, b)), port)
        };
        Background {
            noise,
            bulk: (0..64)
                .map(|i| {
                    (
                        [host(1, i, 50000 + u16::from(i)), host(2, i, 443)],
                        [1000, 9000],
                        0,
                    )
                })
                .collect(),
            http: (0..32)
                .map(|i| {
                    (
                        [host(3, i, 51000 + u16::from(i)), host(4, i, 80)],
                        [5000, 7000],
                    )
                })
                .collect(),
            udp: (0..16)
                .map(|i| [host(5, i, 5004), host(6, i, 5004)])
                .collect(),
            turn: 0,
        }
    }

    /// Opens every background TCP flow with a handshake (so they are not mid-stream).
    fn open<W: Write>(&mut self, out: &mut Out<W>, ts: u64) -> Result<()> {
        let syn = TcpFlags::SYN;
        let synack = TcpFlags::SYN_ACK;
        let ack = TcpFlags::ACK;
        for (a, s) in self
            .bulk
            .iter_mut()
            .map(|(a, s, _)| (&*a, s))
            .chain(self.http.iter_mut().map(|(a, s)| (&*a, s)))
        {
            out.tcp(ts, (a[0], a[1]), (s[0], 0), syn, &[])?;
            out.tcp(ts, (a[1], a[0]), (s[1], s[0] + 1), synack, &[])?;
            s[0] += 1;
            s[1] += 1;
            out.tcp(ts, (a[0], a[1]), (s[0], s[1]), ack, &[])?;
        }
        Ok(())
    }

    /// Writes one burst of background traffic at `ts`.
    fn burst<W: Write>(&mut self, out: &mut Out<W>, ts: u64) -> Result<()> {
        let ack = TcpFlags::ACK;
        let push = TcpFlags::PSH_ACK;
        let t = self.turn;
        self.turn += 1;
        let noise_at = (t.wrapping_mul(7919) % (self.noise.len() as u64 - 1500)) as usize;
        match t % 8 {
            // Bulk: most of the bytes.
            0..=5 => {
                let n = self.bulk.len() as u64;
                let (a, s, sent) = &mut self.bulk[(t % n) as usize];
                for _ in 0..2 {
                    let payload = &self.noise[noise_at..noise_at + 1448];
                    out.tcp(ts, (a[1], a[0]), (s[1], s[0]), push, payload)?;
                    s[1] = s[1].wrapping_add(1448);
                    *sent += 1448;
                }
                out.tcp(ts, (a[0], a[1]), (s[0], s[1]), ack, &[])?;
            }
            6 => {
                let n = self.http.len() as u64;
                let (a, s) = &mut self.http[(t % n) as usize];
                let req = b"GET /static/app.js HTTP/1.1\r\nHost: intranet\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
                out.tcp(ts, (a[0], a[1]), (s[0], s[1]), push, req)?;
                s[0] = s[0].wrapping_add(req.len() as u32);
                let mut resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/javascript\r\nContent-Length: 2896\r\n\r\n".to_vec();
                resp.extend_from_slice(&self.noise[noise_at..noise_at + 1448 - resp.len()]);
                for seg in [&resp[..], &self.noise[noise_at..noise_at + 1448]] {
                    out.tcp(ts, (a[1], a[0]), (s[1], s[0]), push, seg)?;
                    s[1] = s[1].wrapping_add(seg.len() as u32);
                }
                out.tcp(ts, (a[0], a[1]), (s[0], s[1]), ack, &[])?;
            }
            _ => {
                let n = self.udp.len() as u64;
                let a = self.udp[(t % n) as usize];
                for k in 0..8 {
                    let ip = build::udp_packet(
                        a[0],
                        a[1],
                        &self.noise[noise_at + k * 8..noise_at + k * 8 + 172],
                    );
                    out.put(ts, &ip)?;
                }
            }
        }
        Ok(())
    }
}

/// What was written, for the sidecar and the benchmark's check.
#[derive(Debug, serde::Serialize)]
pub struct Written {
    pub file: PathBuf,
    pub bytes: u64,
    pub frames: u64,
    pub connections: u64,
    pub peers: u32,
    pub buddies: u32,
    pub rounds_per_connection: u64,
    pub connections_per_pair: u64,
    pub interval_s: f64,
    pub duration_s: f64,
    pub background_share: f64,
    pub jxta_bytes: u64,
    /// PING/PONG transactions the file holds, all answered.
    pub transactions: u64,
    pub first_peer: u32,
    pub port: u16,
}

pub fn generate(root: &Path, spec: &Spec, dir: &Path) -> Result<Written> {
    let template = load_template(&root.join("captures/jxse25-pingpong.pcap"), spec.full_setup)
        .context("loading the real JXSE 2.5 capture as template")?;
    ensure!(
        spec.peers >= 2 && spec.buddies >= 1 && spec.buddies < spec.peers,
        "need buddies < peers"
    );
    // Peer names carry six decimal digits.
    ensure!(
        u64::from(spec.first_peer) + u64::from(spec.peers) <= 1_000_000,
        "first peer + peers must stay below 1,000,000"
    );
    ensure!(
        (0.0..0.999).contains(&spec.background),
        "background share must be in [0, 0.999)"
    );
    let pairs = u64::from(spec.peers) * u64::from(spec.buddies);
    let fixed = bytes_on_wire(&template.setup) + bytes_on_wire(&template.teardown);
    let exchange = bytes_on_wire(&template.exchanges[0]);
    let jxta_target = (spec.size as f64 * (1.0 - spec.background)) as u64;
    let Some(rest) = jxta_target.checked_sub(pairs * fixed) else {
        bail!(
            "{} pairs need {} MB of set-up alone: raise --size or lower --peers/--buddies",
            pairs,
            (pairs * fixed) >> 20
        );
    };
    let (rounds, generations) = match spec.rounds_per_connection {
        Some(k) => (k, (jxta_target / (pairs * (fixed + k * exchange))).max(1)),
        None => ((rest / (pairs * exchange)).max(1), 1),
    };
    let interval = match (spec.interval_ns, spec.seconds) {
        (Some(i), _) => i,
        (None, Some(s)) => s * 1_000_000_000 / (generations * (rounds + 1) + 1),
        (None, None) => 10_000_000_000,
    };
    let setup_len = template.setup.last().map_or(0, |s| s.at_ns) + 1_000_000;
    ensure!(interval > 10_000_000, "poll interval below 10 ms");
    let spread_ns = spec.spread_ns;

    std::fs::create_dir_all(dir)?;
    let file = dir.join(format!("{}.pcap", spec.name));
    let f = std::fs::File::create(&file).with_context(|| format!("creating {}", file.display()))?;
    let writer = CaptureWriter::new(
        BufWriter::with_capacity(1 << 20, f),
        WriteFormat::Pcap {
            nanos: false,
            big_endian: false,
        },
        LinkType::ETHERNET,
    )?;
    let mut out = Out {
        writer,
        bytes: 24,
        frames: 0,
        last_ts: T0,
    };
    let mut bg = (spec.background > 0.0).then(Background::new);
    if let Some(bg) = &mut bg {
        bg.open(&mut out, T0)?;
    }

    // Pair p: poller p / buddies, receiver one of the next `buddies` peers. Connection
    // starts are spread over one interval so the connections do not poll in lockstep.
    let mut conns: Vec<Conn> = (0..pairs)
        .map(|p| {
            let local = (p / u64::from(spec.buddies)) as u32;
            let poller = spec.first_peer + local;
            let receiver =
                spec.first_peer + (local + 1 + (p % u64::from(spec.buddies)) as u32) % spec.peers;
            let spread = spread_ns.unwrap_or(interval);
            let start =
                T0 + 1_000_000 + (u128::from(p) * u128::from(spread) / u128::from(pairs)) as u64;
            Conn {
                poller,
                receiver,
                addrs: [
                    SocketAddr::new(peer_ip(poller), 20000 + (p % 40000) as u16),
                    SocketAddr::new(peer_ip(receiver), spec.port),
                ],
                seq: [
                    (p as u32).wrapping_mul(2_654_435_761),
                    (p as u32).wrapping_mul(40_503) ^ 0x5555_0000,
                ],
                phase: Phase::Setup,
                step: 0,
                phase_start: start,
                first_round: start + setup_len,
                pair: p,
                generation: 0,
            }
        })
        .collect();
    let mut heap: BinaryHeap<std::cmp::Reverse<(u64, u32)>> = conns
        .iter()
        .enumerate()
        .map(|(i, c)| std::cmp::Reverse((c.phase_start, i as u32)))
        .collect();
    let mut payload = Vec::with_capacity(4096);
    let mut jxta_bytes = 0u64;
    let mut bg_bytes = 0u64;
    let mut transactions = 0u64;
    let bg_ratio = spec.background / (1.0 - spec.background);
    // Correlators of another first peer start elsewhere (a capture holds far fewer than
    // 65,536 per pair), and adding a constant keeps them unique within the capture.
    let corr_base = spec.first_peer << 16;
    while let Some(std::cmp::Reverse((ts, i))) = heap.pop() {
        let c = &mut conns[i as usize];
        let steps = match c.phase {
            Phase::Setup => &template.setup,
            Phase::Exchange(r) => &template.exchanges[(r % 9) as usize],
            Phase::Teardown => &template.teardown,
            Phase::Done => continue,
        };
        let step = &steps[c.step];
        payload.clear();
        payload.extend_from_slice(&step.payload);
        // Correlators unique within the pair: the set-up's PING and each round's.
        let corr_id = match c.phase {
            Phase::Exchange(r) => format!(
                "c{:08x}",
                corr_base.wrapping_add((c.generation * rounds + r) as u32)
            ),
            _ => format!("s{:08x}", corr_base.wrapping_add(c.generation as u32)),
        };
        for &(at, kind) in &step.patches {
            match kind {
                Patch::PollerId => payload[at..at + 32].copy_from_slice(&peer_unique(c.poller)),
                Patch::ReceiverId => payload[at..at + 32].copy_from_slice(&peer_unique(c.receiver)),
                Patch::PollerName => payload[at..at + 10].copy_from_slice(&peer_name(c.poller)),
                Patch::ReceiverName => payload[at..at + 10].copy_from_slice(&peer_name(c.receiver)),
                Patch::Correlator => payload[at..at + 9].copy_from_slice(corr_id.as_bytes()),
            }
        }
        if memchr::memmem::find(&payload, b"<PING>").is_some() {
            transactions += 1;
        }
        let d = step.dir;
        let ack = if step.flags.ack { c.seq[1 - d] } else { 0 };
        let before = out.bytes;
        out.tcp(
            ts,
            (c.addrs[d], c.addrs[1 - d]),
            (c.seq[d], ack),
            step.flags,
            &payload,
        )?;
        jxta_bytes += out.bytes - before;
        c.seq[d] = c.seq[d]
            .wrapping_add(payload.len() as u32)
            .wrapping_add(u32::from(step.flags.syn) + u32::from(step.flags.fin));
        // Next step of this connection.
        c.step += 1;
        if c.step == steps.len() {
            c.step = 0;
            c.phase = match c.phase {
                Phase::Setup => Phase::Exchange(0),
                Phase::Exchange(r) if r + 1 < rounds => Phase::Exchange(r + 1),
                Phase::Exchange(_) => Phase::Teardown,
                Phase::Teardown if c.generation + 1 < generations => {
                    // The pair connects again, from a new port, one interval later.
                    c.generation += 1;
                    let n = c.pair + c.generation * pairs;
                    c.addrs[0].set_port(20000 + (n % 40000) as u16);
                    c.seq = [
                        (n as u32).wrapping_mul(2_654_435_761),
                        (n as u32).wrapping_mul(40_503) ^ 0x5555_0000,
                    ];
                    c.first_round = ts + interval + setup_len;
                    Phase::Setup
                }
                Phase::Teardown | Phase::Done => Phase::Done,
            };
            c.phase_start = match c.phase {
                Phase::Exchange(r) => c.first_round + r * interval,
                Phase::Setup => c.first_round - setup_len,
                _ => c.first_round + rounds * interval,
            };
        }
        if c.phase != Phase::Done {
            let next = match c.phase {
                Phase::Setup => &template.setup,
                Phase::Exchange(r) => &template.exchanges[(r % 9) as usize],
                _ => &template.teardown,
            };
            heap.push(std::cmp::Reverse((c.phase_start + next[c.step].at_ns, i)));
        }
        if let Some(bg) = &mut bg {
            while (bg_bytes as f64) < jxta_bytes as f64 * bg_ratio {
                let before = out.bytes;
                bg.burst(&mut out, ts)?;
                bg_bytes += out.bytes - before;
            }
        }
    }
    out.writer.finish()?.flush()?;
    let written = Written {
        file: file.clone(),
        bytes: out.bytes,
        frames: out.frames,
        connections: pairs * generations,
        peers: spec.peers,
        buddies: spec.buddies,
        rounds_per_connection: rounds,
        connections_per_pair: generations,
        interval_s: interval as f64 / 1e9,
        duration_s: (out.last_ts - T0) as f64 / 1e9,
        background_share: spec.background,
        jxta_bytes,
        transactions,
        first_peer: spec.first_peer,
        port: spec.port,
    };
    std::fs::write(
        file.with_extension("json"),
        serde_json::to_string_pretty(&written)?,
    )?;
    Ok(written)
}
