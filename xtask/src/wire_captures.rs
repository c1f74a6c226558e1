//! Crafted captures for the cases real JXTA traffic can take that the scripted
//! scenarios do not (issue 15), written with `cargo xtask captures` next to the
//! samples, each with its ground truth.
//!
//! None of them uses the observer's encoders: the first two mutate the frames of the
//! real JXSE 2.5 capture byte by byte, the third is written by hand from the wire spec
//! (`docs/spec/jxta-wire.md` §1.2, §1.3, §2.1, §3.1). The truth comes from what the
//! generator put where (frame times, payload sizes, the documents it wrote), never
//! from the decoder. Checksums are computed here with a checksum of this file's own.
//!
//! - `jxse25-dropped.pcap`: the real connection, its checksums made valid (so they are
//!   verified, not taken as offloaded), plus 40 junk bytes at the next sequence number
//!   just before PINGs and PONGs in packets the receiving host would drop (bad TCP or
//!   IPv4 header checksum, an IPv4 length below the header or beyond the frame, data
//!   without ACK), and one valid retransmission of a PING whose bytes differ from the
//!   first copy. The truth is the real capture's ten transactions.
//! - `jxse25-large.pcap`: the real connection with its second PING padded to 100 KB
//!   inside the PING document (element and package lengths, sequence and
//!   acknowledgement numbers adjusted), sent as several segments.
//! - `multicast.pcap`: JIM PINGs and PONGs sent by UDP multicast (224.0.1.85:1234),
//!   the sender named by `jxta:EndpointHeaderSrcPeer`, the pipe by
//!   `jxta:JxtaWireHeader`; two datagrams IP-fragmented and captured in a shuffled
//!   order; one PING nobody answers; and two exchanges that mix transports, a PING by
//!   TCP (welcome lines, a package with `jxta:EndpointRouterMsg`) answered by
//!   multicast and the reverse.
//!
//! Over 600 lines: three crafted captures, each written byte by byte from the spec with
//! its truth.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use observer::capture::{CaptureReader, CaptureWriter, LinkType, WriteFormat};

const US: u64 = 1_000;
const PCAP: WriteFormat = WriteFormat::Pcap {
    nanos: false,
    big_endian: false,
};
const HEADER: &str = "start_unix_ns,stop_unix_ns,rtt_us,poller_name,poller_peer_id,receiver_name,receiver_peer_id,receiver_status,transaction_status,correlator,match_method,ping_bytes,pong_bytes,correlator_overhead_bytes";

/// An Ethernet frame holding IPv4 (the real capture's shape).
#[derive(Clone, Debug)]
struct Frame {
    ts: u64,
    data: Vec<u8>,
}

impl Frame {
    fn ihl(&self) -> usize {
        usize::from(self.data[14] & 0x0f) * 4
    }
    fn tcp_at(&self) -> usize {
        14 + self.ihl()
    }
    fn payload_at(&self) -> usize {
        self.tcp_at() + usize::from(self.data[self.tcp_at() + 12] >> 4) * 4
    }
    fn payload(&self) -> &[u8] {
        &self.data[self.payload_at()..]
    }
    fn be32(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.data[at],
            self.data[at + 1],
            self.data[at + 2],
            self.data[at + 3],
        ])
    }
    fn seq(&self) -> u32 {
        self.be32(self.tcp_at() + 4)
    }
    fn set_seq(&mut self, v: u32) {
        let at = self.tcp_at() + 4;
        self.data[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    fn ack(&self) -> u32 {
        self.be32(self.tcp_at() + 8)
    }
    fn set_ack(&mut self, v: u32) {
        let at = self.tcp_at() + 8;
        self.data[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    fn sport(&self) -> u16 {
        let at = self.tcp_at();
        u16::from_be_bytes([self.data[at], self.data[at + 1]])
    }
    fn flags(&self) -> u8 {
        self.data[self.tcp_at() + 13]
    }
    fn set_flags(&mut self, f: u8) {
        let at = self.tcp_at() + 13;
        self.data[at] = f;
    }
    /// Replaces the TCP payload; lengths and both checksums follow.
    fn set_payload(&mut self, p: &[u8]) {
        let at = self.payload_at();
        self.data.truncate(at);
        self.data.extend_from_slice(p);
        let total = (self.data.len() - 14) as u16;
        self.data[16..18].copy_from_slice(&total.to_be_bytes());
        self.fix_checksums();
    }
    fn set_ip_total(&mut self, total: u16) {
        self.data[16..18].copy_from_slice(&total.to_be_bytes());
        self.fix_ip_checksum();
    }
    fn fix_ip_checksum(&mut self) {
        let end = 14 + self.ihl();
        self.data[24..26].copy_from_slice(&[0, 0]);
        let c = !ones_sum(&[&self.data[14..end]]);
        self.data[24..26].copy_from_slice(&c.to_be_bytes());
    }
    fn fix_checksums(&mut self) {
        self.fix_ip_checksum();
        let t = self.tcp_at();
        self.data[t + 16..t + 18].copy_from_slice(&[0, 0]);
        let c = !ones_sum(&[
            &pseudo(&self.data[26..34], 6, self.data.len() - t),
            &self.data[t..],
        ]);
        self.data[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
    }
    fn corrupt_tcp_checksum(&mut self) {
        let t = self.tcp_at();
        self.data[t + 16] ^= 0x5a;
    }
    fn corrupt_ip_checksum(&mut self) {
        self.data[24] ^= 0x5a;
    }
}

/// IPv4 pseudo-header: addresses (8 bytes), protocol, transport length.
fn pseudo(addrs: &[u8], proto: u8, len: usize) -> Vec<u8> {
    let mut p = addrs.to_vec();
    p.extend([0, proto]);
    p.extend((len as u16).to_be_bytes());
    p
}

/// RFC 1071 one's-complement sum (not complemented) of `parts` joined.
fn ones_sum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn read_frames(path: &Path) -> Result<Vec<Frame>> {
    let mut r = CaptureReader::open(path).with_context(|| format!("{}", path.display()))?;
    let mut out = Vec::new();
    while let Some(f) = r.next_frame()? {
        ensure!(f.link_type == LinkType::ETHERNET, "not Ethernet");
        ensure!(f.data.get(12..14) == Some(&[8, 0][..]), "not IPv4");
        out.push(Frame {
            ts: f.ts,
            data: f.data.to_vec(),
        });
    }
    Ok(out)
}

fn write_frames(path: &Path, frames: &[Frame]) -> Result<()> {
    let mut w = CaptureWriter::new(Vec::new(), PCAP, LinkType::ETHERNET)?;
    for f in frames {
        w.write_frame(0, f.ts, &f.data, f.data.len() as u32)?;
    }
    std::fs::write(path, w.finish()?)?;
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Text between `open` and `close`, first occurrence.
fn between<'a>(hay: &'a [u8], open: &str, close: &str) -> Option<&'a str> {
    let s = find(hay, open.as_bytes())? + open.len();
    let e = s + find(&hay[s..], close.as_bytes())?;
    std::str::from_utf8(&hay[s..e]).ok()
}

/// One truth row, as the observer's CSV writes it.
struct Row {
    start: u64,
    stop: Option<u64>,
    poller: (String, String),
    receiver: (String, String),
    status: String,
    correlator: String,
    ping_bytes: usize,
    pong_bytes: Option<usize>,
    overhead: usize,
}

fn truth_csv(rows: &mut [Row]) -> String {
    rows.sort_by_key(|r| r.start);
    // The `csv` crate, as the observer's own CSV is checked against: a name with a
    // comma or a quote is quoted, not split.
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut write = |fields: &[&str]| {
        // Into a Vec: no I/O that could fail.
        let _ = w.write_record(fields);
    };
    write(&HEADER.split(',').collect::<Vec<_>>());
    for r in rows.iter() {
        let (state, method, rtt) = match (r.stop, r.pong_bytes) {
            (Some(stop), Some(_)) => ("ok", "correlator", ((stop - r.start) / US).to_string()),
            _ => ("timeout", "", String::new()),
        };
        write(&[
            &r.start.to_string(),
            &r.stop.map(|s| s.to_string()).unwrap_or_default(),
            &rtt,
            &r.poller.0,
            &r.poller.1,
            &r.receiver.0,
            &r.receiver.1,
            &r.status,
            state,
            &r.correlator,
            method,
            &r.ping_bytes.to_string(),
            &r.pong_bytes.map(|b| b.to_string()).unwrap_or_default(),
            &r.overhead.to_string(),
        ]);
    }
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The PING and PONG frames of the real capture (each document is in one segment
/// there), as indices, in order.
fn exchanges(frames: &[Frame]) -> Result<Vec<(usize, usize)>> {
    let idx = |tag: &[u8]| -> Vec<usize> {
        (0..frames.len())
            .filter(|&i| find(frames[i].payload(), tag).is_some())
            .collect()
    };
    let (pings, pongs) = (idx(b"<PING>"), idx(b"<PONG>"));
    ensure!(
        pings.len() == 10 && pongs.len() == 10,
        "the real capture has 10 PINGs and 10 PONGs"
    );
    Ok(pings.into_iter().zip(pongs).collect())
}

/// The truth row of a real PING/PONG exchange, from the bytes of its frames.
fn real_row(ping: &Frame, ping_bytes: usize, pong: &Frame) -> Result<Row> {
    let peer = |f: &Frame, tag: &str| -> Result<String> {
        let addr =
            between(f.payload(), &format!("<{tag}>jxta://"), "<").context("router address")?;
        let unique = addr.split('/').next().unwrap_or(addr);
        Ok(format!("urn:jxta:{unique}"))
    };
    let corr = between(ping.payload(), "<correlator>", "</correlator>").context("correlator")?;
    let overhead = 2 * format!("<correlator>{corr}</correlator>").len();
    Ok(Row {
        start: ping.ts,
        stop: Some(pong.ts),
        poller: (
            between(ping.payload(), "<from>", "</from>")
                .context("from")?
                .into(),
            peer(ping, "Src")?,
        ),
        receiver: (
            between(pong.payload(), "<from>", "</from>")
                .context("from")?
                .into(),
            peer(pong, "Src")?,
        ),
        status: String::new(),
        correlator: corr.into(),
        ping_bytes,
        pong_bytes: Some(pong.payload().len()),
        overhead,
    })
}

/// What the junk before a PING or PONG is made to be, so that its host drops it.
#[derive(Clone, Copy)]
enum Defect {
    TcpChecksum,
    IpChecksum,
    IpLengthBelowHeader,
    IpLengthBeyondFrame,
    NoAck,
}

fn dropped(real: &[Frame]) -> Result<(Vec<Frame>, String)> {
    let mut frames: Vec<Frame> = real.to_vec();
    for f in &mut frames {
        f.fix_checksums();
    }
    let ex = exchanges(&frames)?;
    let mut rows = ex
        .iter()
        .map(|&(p, q)| real_row(&frames[p], frames[p].payload().len(), &frames[q]))
        .collect::<Result<Vec<_>>>()?;
    // (frame index, defect) for junk in front; the frame after which a conflicting
    // retransmission follows.
    use Defect::*;
    let junk: Vec<(usize, Defect)> = vec![
        (ex[0].0, TcpChecksum),
        (ex[1].0, IpChecksum),
        (ex[2].0, IpLengthBelowHeader),
        (ex[3].0, IpLengthBeyondFrame),
        (ex[4].0, NoAck),
        (ex[6].1, TcpChecksum),
        (ex[7].1, IpChecksum),
        (ex[8].0, NoAck),
        (ex[9].1, IpLengthBeyondFrame),
    ];
    let conflicting_after = ex[5].0;
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if let Some(&(_, defect)) = junk.iter().find(|(at, _)| *at == i) {
            let mut j = f.clone();
            j.ts = f.ts - 100 * US;
            j.set_payload(&[0x5a; 40]);
            match defect {
                TcpChecksum => j.corrupt_tcp_checksum(),
                IpChecksum => j.corrupt_ip_checksum(),
                IpLengthBelowHeader => j.set_ip_total(16),
                IpLengthBeyondFrame => {
                    let total = (j.data.len() - 14 + 200) as u16;
                    j.set_ip_total(total)
                }
                NoAck => {
                    j.set_flags(j.flags() & !0x10);
                    j.fix_checksums();
                }
            }
            out.push(j);
        }
        out.push(f.clone());
        if i == conflicting_after {
            let mut r = f.clone();
            r.ts = f.ts + 50 * US;
            let mut p = f.payload().to_vec();
            let n = p.len();
            p[n - 60..n - 20].fill(b'Z');
            r.set_payload(&p);
            out.push(r);
        }
    }
    Ok((out, truth_csv(&mut rows)))
}

/// Bytes added to the padded PING document.
const PAD: usize = 100_000;

fn large(real: &[Frame]) -> Result<(Vec<Frame>, String)> {
    let frames: Vec<Frame> = real.to_vec();
    let ex = exchanges(&frames)?;
    let (pi, _) = ex[1];
    let ping = &frames[pi];
    let client_port = ping.sport();
    // The document: `…<PING>…</PING>`; pad inside it, before its end tag.
    let mut p = ping.payload().to_vec();
    let end_tag = find(&p, b"</PING>").context("PING end")?;
    let doc_start = find(&p, b"<?xml").context("document start")?;
    let pad = format!("<pad>{}</pad>", "x".repeat(PAD - 11));
    ensure!(pad.len() == PAD);
    p.splice(end_tag..end_tag, pad.bytes());
    // jxmg element content length (uint32 before the content) and the package's
    // content-length (8-byte value after its name and value length).
    let len_at = doc_start - 4;
    let old = u32::from_be_bytes([p[len_at], p[len_at + 1], p[len_at + 2], p[len_at + 3]]);
    p[len_at..len_at + 4].copy_from_slice(&(old + PAD as u32).to_be_bytes());
    let cl = find(&p, b"content-length").context("content-length")? + 14;
    ensure!(p[cl..cl + 2] == [0, 8], "8-byte content-length");
    let mut v = [0u8; 8];
    v.copy_from_slice(&p[cl + 2..cl + 10]);
    let body = u64::from_be_bytes(v) + PAD as u64;
    p[cl + 2..cl + 10].copy_from_slice(&body.to_be_bytes());

    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if i == pi {
            // Segments of 16 KiB, 2 µs apart, the first at the real PING's time.
            for (k, chunk) in p.chunks(16_384).enumerate() {
                let mut s = f.clone();
                s.ts = f.ts + 2 * US * k as u64;
                s.set_seq(f.seq().wrapping_add((k * 16_384) as u32));
                s.set_payload(chunk);
                out.push(s);
            }
            continue;
        }
        let mut f = f.clone();
        if i > pi {
            if f.sport() == client_port {
                f.set_seq(f.seq().wrapping_add(PAD as u32));
            } else if f.flags() & 0x10 != 0 {
                f.set_ack(f.ack().wrapping_add(PAD as u32));
            }
        }
        // Recomputed everywhere: the real ones are offloaded (partial) and would be
        // wrong after the renumbering.
        f.fix_checksums();
        out.push(f);
    }
    ensure!(
        out.windows(2).all(|w| w[0].ts < w[1].ts),
        "frames stay in time order"
    );
    let mut rows = ex
        .iter()
        .map(|&(a, b)| {
            let bytes = frames[a].payload().len() + if a == pi { PAD } else { 0 };
            real_row(&frames[a], bytes, &frames[b])
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((out, truth_csv(&mut rows)))
}

// ---------------------------------------------------------------- multicast, by hand

const MCAST: [u8; 4] = [224, 0, 1, 85];
const MCAST_PORT: u16 = 1234;
const PIPE: &str = "urn:jxta:uuid-59616261646162614E50472050325033C0FFEE0C0FFEE0C0FFEE0C0FFEE0C04";

struct Peer {
    name: &'static str,
    ip: [u8; 4],
    id: String,
}

fn peers() -> &'static [Peer; 3] {
    static PEERS: std::sync::OnceLock<[Peer; 3]> = std::sync::OnceLock::new();
    PEERS.get_or_init(make_peers)
}

fn make_peers() -> [Peer; 3] {
    let id = |tail: &str| format!("urn:jxta:uuid-59616261646162614E50472050325033{tail}03");
    [
        Peer {
            name: "alice",
            ip: [10, 0, 0, 1],
            id: id("A11CE000000000000000000000000001"),
        },
        Peer {
            name: "bob",
            ip: [10, 0, 0, 2],
            id: id("B0B00000000000000000000000000002"),
        },
        Peer {
            name: "carol",
            ip: [10, 0, 0, 3],
            id: id("CA701000000000000000000000000003"),
        },
    ]
}

fn str16(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u16).to_be_bytes());
    out.extend(s.as_bytes());
}

/// A `jxel` element (spec §2.1): namespace id, HAS_TYPE, name, type, content.
fn element(out: &mut Vec<u8>, ns: u8, name: &str, mime: &str, content: &[u8]) {
    out.extend(b"jxel");
    out.extend([ns, 0x01]);
    str16(out, name);
    str16(out, mime);
    out.extend((content.len() as u32).to_be_bytes());
    out.extend(content);
}

fn package_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(name.len() as u8);
    out.extend(name.as_bytes());
    out.extend((value.len() as u16).to_be_bytes());
    out.extend(value);
}

fn unique(id: &str) -> &str {
    id.strip_prefix("urn:jxta:").unwrap_or(id)
}

/// A TCP message package (spec §1.2) from `from` to `to`'s pipe: the JIM document and
/// the router element naming both ends.
fn unicast_package(from: &Peer, to: &Peer, doc: &str) -> Vec<u8> {
    let mut body = b"jxmg".to_vec();
    body.push(0);
    body.extend(1u16.to_be_bytes());
    str16(&mut body, "jim");
    body.extend(2u16.to_be_bytes());
    element(
        &mut body,
        2,
        "JimMessage",
        "text/xml;charset=UTF-8",
        doc.as_bytes(),
    );
    let erm = format!(
        "<?xml version=\"1.0\"?>\n<jxta:ERM xmlns:jxta=\"http://jxta.org\"><Src>jxta://{}</Src><Dest>jxta://{}/PipeService/{PIPE}</Dest><Last>jxta://{}</Last></jxta:ERM>",
        unique(&from.id),
        unique(&to.id),
        unique(&from.id)
    );
    element(
        &mut body,
        1,
        "EndpointRouterMsg",
        "text/xml",
        erm.as_bytes(),
    );
    let mut out = Vec::new();
    package_header(&mut out, "content-type", b"application/x-jxta-msg");
    package_header(
        &mut out,
        "content-length",
        &(body.len() as u64).to_be_bytes(),
    );
    out.push(0);
    out.extend(body);
    out
}

/// One TCP connection written frame by frame, sequence numbers kept.
struct Tcp {
    ends: [(&'static Peer, u16); 2],
    next: [u32; 2],
}

impl Tcp {
    /// Handshake from `a` (ephemeral port) to `b`:9701, then both welcome lines.
    fn open(a: &'static Peer, b: &'static Peer, port: u16, at: u64, out: &mut Vec<Frame>) -> Tcp {
        let mut t = Tcp {
            ends: [(a, port), (b, 9701)],
            next: [0x1000_0000, 0x7000_0000],
        };
        t.send(0, 0x02, b"", at, out);
        t.send(1, 0x12, b"", at + 50 * US, out);
        t.send(0, 0x10, b"", at + 100 * US, out);
        for (side, dt) in [(1usize, 150), (0, 200)] {
            let (me, other) = (t.ends[side].0, t.ends[1 - side].0);
            let line = format!(
                "JXTAHELLO tcp://{} tcp://{} {} 0 1.1\r\n",
                addr(other, t.ends[1 - side].1),
                addr(me, 9701),
                me.id
            );
            t.send(side, 0x18, line.as_bytes(), at + dt * US, out);
        }
        t
    }

    /// A segment from side `side`; SYN counts one sequence number.
    fn send(&mut self, side: usize, flags: u8, payload: &[u8], at: u64, out: &mut Vec<Frame>) {
        let ((from, sport), (to, dport)) = (self.ends[side], self.ends[1 - side]);
        let ack = if flags & 0x10 != 0 {
            self.next[1 - side]
        } else {
            0
        };
        let mut tcp = Vec::new();
        tcp.extend(sport.to_be_bytes());
        tcp.extend(dport.to_be_bytes());
        tcp.extend(self.next[side].to_be_bytes());
        tcp.extend(ack.to_be_bytes());
        tcp.extend([5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend(payload);
        self.next[side] = self.next[side]
            .wrapping_add(payload.len() as u32)
            .wrapping_add(u32::from(flags & 0x02 != 0));
        let mut f = vec![
            0x02, 0, 0, 0, 0, to.ip[3], 0x02, 0, 0, 0, 0, from.ip[3], 0x08, 0,
        ];
        f.extend([0x45, 0]);
        f.extend(((20 + tcp.len()) as u16).to_be_bytes());
        f.extend([0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend(from.ip);
        f.extend(to.ip);
        f.extend(tcp);
        let mut frame = Frame { ts: at, data: f };
        frame.fix_checksums();
        out.push(frame);
    }
}

fn addr(p: &Peer, port: u16) -> String {
    format!("{}.{}.{}.{}:{port}", p.ip[0], p.ip[1], p.ip[2], p.ip[3])
}

/// A multicast datagram payload: `JXTA`, package headers with `srcEA`, a `jxmg` v0
/// message with the JIM document (namespace `jim`, id 2) and the stack's elements.
fn datagram(from: &Peer, doc: &str, msg_id: u32) -> Vec<u8> {
    let mut body = b"jxmg".to_vec();
    body.push(0);
    body.extend(1u16.to_be_bytes());
    str16(&mut body, "jim");
    body.extend(5u16.to_be_bytes());
    element(
        &mut body,
        2,
        "JimMessage",
        "text/xml;charset=UTF-8",
        doc.as_bytes(),
    );
    let wire = format!(
        "<?xml version=\"1.0\"?>\n<jxta:JxtaWire xmlns:jxta=\"http://jxta.org\"><PipeId>{PIPE}</PipeId><MsgId>urn:uuid:{msg_id:032X}</MsgId><TTL>2</TTL><VisitedPeer>{}</VisitedPeer></jxta:JxtaWire>",
        from.id
    );
    element(&mut body, 1, "JxtaWireHeader", "text/xml", wire.as_bytes());
    element(
        &mut body,
        1,
        "EndpointHeaderSrcPeer",
        "text/plain;charset=UTF-8",
        from.id.as_bytes(),
    );
    let src_ea = format!(
        "tcp://{}.{}.{}.{}:9701",
        from.ip[0], from.ip[1], from.ip[2], from.ip[3]
    );
    element(
        &mut body,
        1,
        "EndpointSourceAddress",
        "text/plain;charset=UTF-8",
        src_ea.as_bytes(),
    );
    element(
        &mut body,
        1,
        "EndpointDestinationAddress",
        "text/plain;charset=UTF-8",
        b"tcp://224.0.1.85:1234/EndpointService:jxta-NetGroup/JxtaPropagate/jxta-NetGroup",
    );
    let mut out = b"JXTA".to_vec();
    package_header(&mut out, "content-type", b"application/x-jxta-msg");
    package_header(
        &mut out,
        "content-length",
        &(body.len() as u64).to_be_bytes(),
    );
    package_header(&mut out, "srcEA", src_ea.as_bytes());
    out.push(0);
    out.extend(body);
    out
}

/// UDP in IPv4 in Ethernet, split into fragments of at most `mtu` IP bytes.
fn udp_frames(from: &Peer, payload: &[u8], id: u16, mtu: usize) -> Vec<Vec<u8>> {
    let mut udp = Vec::new();
    udp.extend(MCAST_PORT.to_be_bytes());
    udp.extend(MCAST_PORT.to_be_bytes());
    udp.extend(((8 + payload.len()) as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(payload);
    let addrs: Vec<u8> = from.ip.iter().chain(MCAST.iter()).copied().collect();
    let mut c = !ones_sum(&[&pseudo(&addrs, 17, udp.len()), &udp]);
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let chunk = (mtu - 20) / 8 * 8;
    let n = udp.len().div_ceil(chunk);
    (0..n)
        .map(|k| {
            let part = &udp[k * chunk..((k + 1) * chunk).min(udp.len())];
            let mut f = vec![0x01, 0x00, 0x5e, 0x00, 0x01, 0x55];
            f.extend([0x02, 0, 0, 0, 0, from.ip[3]]);
            f.extend([0x08, 0x00]);
            let mut ip = vec![0x45, 0];
            ip.extend(((20 + part.len()) as u16).to_be_bytes());
            ip.extend(id.to_be_bytes());
            let more: u16 = if k + 1 < n { 0x2000 } else { 0 };
            ip.extend((more | (k * chunk / 8) as u16).to_be_bytes());
            ip.extend([1, 17, 0, 0]);
            ip.extend(&addrs);
            let c = !ones_sum(&[&ip]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend(ip);
            f.extend(part);
            f
        })
        .collect()
}

fn ping_doc(p: &Peer, corr: &str, pad: usize) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PING>\n  <Buddy>\n    <name>{}</name>\n    <peerID>{}</peerID>\n  </Buddy>\n  <correlator>{corr}</correlator>\n{}</PING>\n",
        p.name,
        p.id,
        " ".repeat(pad)
    )
}

fn pong_doc(p: &Peer, status: &str, corr: &str, pad: usize) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PONG>\n  <BuddyStatus>\n    <name>{}</name>\n    <peerID>{}</peerID>\n    <status>{status}</status>\n  </BuddyStatus>\n  <correlator>{corr}</correlator>\n{}</PONG>\n",
        p.name,
        p.id,
        " ".repeat(pad)
    )
}

/// Capture start: 2027-03-01T00:00:00Z.
const T0: u64 = 1_803_859_200_000_000_000;

fn multicast() -> (Vec<Frame>, String) {
    let [alice, bob, carol] = peers();
    let mut frames: Vec<Frame> = Vec::new();
    let mut rows = Vec::new();
    let mut id = 0x4000u16;
    // (time, sender, document, fragment order): the fragments of one datagram are
    // captured 40 µs apart in the given order of fragment indices.
    let mut send = |at: u64, from: &Peer, doc: &str, order: &[usize]| -> (u64, u64, usize) {
        id += 1;
        let payload = datagram(from, doc, u32::from(id));
        let frags = udp_frames(from, &payload, id, 1500);
        let order: Vec<usize> = if order.is_empty() {
            (0..frags.len()).collect()
        } else {
            order.to_vec()
        };
        assert_eq!(
            order.len(),
            frags.len(),
            "fragment order covers every fragment"
        );
        for (k, &i) in order.iter().enumerate() {
            frames.push(Frame {
                ts: at + 40 * US * k as u64,
                data: frags[i].clone(),
            });
        }
        // Earliest captured fragment, and the one that completes the datagram.
        (at, at + 40 * US * (order.len() as u64 - 1), payload.len())
    };
    let overhead = |c: &str| format!("<correlator>{c}</correlator>").len();
    let tx = |ping: (u64, u64, usize),
              pong: Option<(u64, u64, usize)>,
              poller: &Peer,
              receiver: Option<(&Peer, &str)>,
              corr: &str,
              timeout: u64| Row {
        start: ping.0,
        stop: Some(pong.map_or(ping.0 + timeout, |p| p.1)),
        poller: (poller.name.into(), poller.id.clone()),
        receiver: receiver.map_or((String::new(), String::new()), |(r, _)| {
            (r.name.into(), r.id.clone())
        }),
        status: receiver.map_or(String::new(), |(_, s)| s.into()),
        correlator: corr.into(),
        ping_bytes: ping.2,
        pong_bytes: pong.map(|p| p.2),
        overhead: overhead(corr) * if pong.is_some() { 2 } else { 1 },
    };
    let s = 1_000_000_000u64;
    // 1: alice asks, bob answers; one datagram each.
    let a = send(T0, alice, &ping_doc(alice, "mc-1", 0), &[]);
    let b = send(
        T0 + 3_100 * US,
        bob,
        &pong_doc(bob, "online", "mc-1", 0),
        &[],
    );
    rows.push(tx(a, Some(b), alice, Some((bob, "online")), "mc-1", 0));
    // 2: bob asks; alice's PONG is 3 fragments, the last captured first.
    let a = send(T0 + s, bob, &ping_doc(bob, "mc-2", 0), &[]);
    let b = send(
        T0 + s + 7_300 * US,
        alice,
        &pong_doc(alice, "busy", "mc-2", 3000),
        &[2, 0, 1],
    );
    rows.push(tx(a, Some(b), bob, Some((alice, "busy")), "mc-2", 0));
    // 3: carol's PING is 3 fragments captured middle, last, first; bob answers.
    let a = send(
        T0 + 2 * s,
        carol,
        &ping_doc(carol, "mc-3", 3000),
        &[1, 2, 0],
    );
    let b = send(
        T0 + 2 * s + 12_900 * US,
        bob,
        &pong_doc(bob, "away", "mc-3", 0),
        &[],
    );
    rows.push(tx(a, Some(b), carol, Some((bob, "away")), "mc-3", 0));
    // 4: alice asks; nobody answers within the 10 s timeout.
    let a = send(T0 + 3 * s, alice, &ping_doc(alice, "mc-4", 0), &[]);
    rows.push(tx(a, None, alice, None, "mc-4", 10 * s));
    // 5: alice asks again, carol answers (the capture runs past the timeout above).
    let a = send(T0 + 14 * s, alice, &ping_doc(alice, "mc-5", 0), &[]);
    let b = send(
        T0 + 14 * s + 2_500 * US,
        carol,
        &pong_doc(carol, "offline", "mc-5", 0),
        &[],
    );
    rows.push(tx(a, Some(b), alice, Some((carol, "offline")), "mc-5", 0));
    // 6: alice asks carol over TCP; carol answers by multicast.
    let mut tcp = Vec::new();
    let t6 = T0 + 16 * s;
    let mut ac = Tcp::open(alice, carol, 40_001, t6, &mut tcp);
    let ping = unicast_package(alice, carol, &ping_doc(alice, "mc-6", 0));
    ac.send(0, 0x18, &ping, t6 + 1_000 * US, &mut tcp);
    ac.send(1, 0x10, b"", t6 + 1_200 * US, &mut tcp);
    let a = (t6 + 1_000 * US, t6 + 1_000 * US, ping.len());
    let b = send(
        t6 + 4_400 * US,
        carol,
        &pong_doc(carol, "online", "mc-6", 0),
        &[],
    );
    rows.push(tx(a, Some(b), alice, Some((carol, "online")), "mc-6", 0));
    // 7: bob asks by multicast; alice answers over TCP (her connection to bob).
    let t7 = T0 + 18 * s;
    let mut ab = Tcp::open(alice, bob, 40_002, t7, &mut tcp);
    let a = send(t7 + 1_000 * US, bob, &ping_doc(bob, "mc-7", 0), &[]);
    let pong = unicast_package(alice, bob, &pong_doc(alice, "away", "mc-7", 0));
    ab.send(0, 0x18, &pong, t7 + 6_600 * US, &mut tcp);
    ab.send(1, 0x10, b"", t7 + 6_800 * US, &mut tcp);
    let b = (t7 + 6_600 * US, t7 + 6_600 * US, pong.len());
    rows.push(tx(a, Some(b), bob, Some((alice, "away")), "mc-7", 0));
    frames.extend(tcp);
    frames.sort_by_key(|f| f.ts);
    (frames, truth_csv(&mut rows))
}

/// Writes the three captures and their truths into `dir`, from the real capture at
/// `real`.
pub fn write(real: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let real = read_frames(real)?;
    let mut written = Vec::new();
    let outputs = [
        ("jxse25-dropped", dropped(&real)?),
        ("jxse25-large", large(&real)?),
        ("multicast", multicast()),
    ];
    for (name, (frames, truth)) in outputs {
        let pcap = dir.join(format!("{name}.pcap"));
        write_frames(&pcap, &frames)?;
        let csv = dir.join(format!("{name}.truth.csv"));
        std::fs::write(&csv, truth)?;
        written.push(pcap);
        written.push(csv);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(start: u64, poller: &str, pong: bool) -> Row {
        Row {
            start,
            stop: pong.then_some(start + 2_500_000),
            poller: (poller.into(), "urn:jxta:uuid-A".into()),
            receiver: ("bob".into(), "urn:jxta:uuid-B".into()),
            status: "online".into(),
            correlator: "17".into(),
            ping_bytes: 1100,
            pong_bytes: pong.then_some(1200),
            overhead: 44,
        }
    }

    /// Plain rows come out as the hand-written format wrote them; a name with a comma
    /// or a quote is quoted.
    #[test]
    fn truth_rows_as_before_and_quoted_when_they_must_be() {
        let mut rows = vec![row(20, "a,\"b\"", false), row(10, "alice", true)];
        let text = truth_csv(&mut rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(
            lines[1],
            "10,2500010,2500,alice,urn:jxta:uuid-A,bob,urn:jxta:uuid-B,online,ok,17,correlator,1100,1200,44"
        );
        assert_eq!(
            lines[2],
            "20,,,\"a,\"\"b\"\"\",urn:jxta:uuid-A,bob,urn:jxta:uuid-B,online,timeout,17,,1100,,44"
        );
        assert_eq!(lines.len(), 3);
        assert!(text.ends_with("44\n"));
    }
}
