//! Frames to TCP segments and UDP datagrams: link layer (by hand), IPv4/IPv6
//! with extension headers (`etherparse`), IP fragment reassembly, TCP/UDP
//! headers.
//!
//! What a receiving host would drop is dropped here too (and counted), so that a
//! packet the destination never accepted cannot rewrite the stream it sees: an IPv4
//! or IPv6 length that lies about the frame, a bad IPv4 header checksum. TCP
//! checksums are classified here and judged per flow direction by `conntrack`,
//! because captures taken on the sending host carry offloaded checksums.
//!
//! Over 600 lines: one decoding pass (link, IP, fragments, L4) in one `impl`.

pub mod build;
mod checksum;
mod fragment;
mod link;

use crate::capture::Frame;
use crate::conntrack::TcpSegment;
use crate::UnixNanos;
use etherparse::{IpNumber, LaxIpSlice};
use fragment::{FragKey, Reassembler};
use link::LinkOutcome;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

pub use checksum::{Checksum, ChecksumMode, UnknownChecksumMode};
pub use link::LinkVariant;

/// One TCP segment or UDP datagram as seen on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Capture time of the frame that completed the segment.
    pub ts: UnixNanos,
    /// Capture time of the earliest frame carrying any of its bytes: `ts`, except
    /// for a datagram reassembled from fragments (its earliest captured fragment).
    pub first_ts: UnixNanos,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub l4: L4<'a>,
    /// The capture's snaplen cut this packet: `payload` holds only the bytes
    /// that were captured, and the rest of the IP-declared payload is missing.
    /// Consumers must treat the missing tail as a gap, never as data.
    pub cut: bool,
    /// The TCP checksum's verdict (`Unchecked` for UDP).
    pub checksum: Checksum,
    /// The capture interface of the frame that completed it ([`Frame::interface`]):
    /// a tap on several interfaces may see one packet once on each.
    pub interface: u32,
}

/// A frame as [`PacketDecoder::decode_for_flows`] gives it.
#[derive(Debug)]
pub enum Decoded<'a> {
    /// A plain frame's TCP segment, as the flow table takes it.
    Tcp(TcpSegment<'a>),
    /// Any other frame: what [`PacketDecoder::decode`] gives.
    Other(Option<Segment<'a>>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4<'a> {
    Tcp {
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        window: u16,
        payload: Cow<'a, [u8]>,
    },
    Udp {
        payload: Cow<'a, [u8]>,
    },
}

impl L4<'_> {
    pub fn payload(&self) -> &[u8] {
        match self {
            L4::Tcp { payload, .. } | L4::Udp { payload } => payload,
        }
    }
}

/// A TCP header's fields the flow table reads (the ack number whatever the ACK flag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHeader {
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub window: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

impl TcpFlags {
    /// The flags of a TCP header's flags byte (its 14th). Looked up, not tested bit by
    /// bit: five shifts, masks and byte stores (17 instructions of every frame) become
    /// one indexed copy of the five bytes.
    #[inline(always)]
    pub fn from_byte(bits: u8) -> TcpFlags {
        FLAGS_OF_BITS[usize::from(bits & 0x1f)]
    }

    /// [`from_byte`](Self::from_byte) bit by bit, for the table.
    const fn from_bits(bits: u8) -> TcpFlags {
        TcpFlags {
            fin: bits & 0x01 != 0,
            syn: bits & 0x02 != 0,
            rst: bits & 0x04 != 0,
            psh: bits & 0x08 != 0,
            ack: bits & 0x10 != 0,
        }
    }

    pub const SYN: TcpFlags = TcpFlags {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
        psh: false,
    };
    pub const SYN_ACK: TcpFlags = TcpFlags {
        ack: true,
        ..TcpFlags::SYN
    };
    pub const ACK: TcpFlags = TcpFlags {
        syn: false,
        ..TcpFlags::SYN_ACK
    };
    pub const PSH_ACK: TcpFlags = TcpFlags {
        psh: true,
        ..TcpFlags::ACK
    };
    pub const FIN_ACK: TcpFlags = TcpFlags {
        fin: true,
        ..TcpFlags::ACK
    };
}

/// [`TcpFlags::from_bits`] of the five low bits of a flags byte, the ones it reads.
static FLAGS_OF_BITS: [TcpFlags; 32] = {
    let mut table = [TcpFlags::from_bits(0); 32];
    let mut bits = 0;
    while bits < 32 {
        table[bits] = TcpFlags::from_bits(bits as u8);
        bits += 1;
    }
    table
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketConfig {
    /// Datagrams being reassembled at once; beyond it the oldest is dropped.
    pub max_fragment_datagrams: usize,
    /// Bytes held by all datagrams being reassembled.
    pub max_fragment_bytes: usize,
    /// Capture-time age after which an incomplete datagram is dropped.
    pub fragment_timeout_ns: u64,
    pub checksums: ChecksumMode,
}

impl Default for PacketConfig {
    fn default() -> Self {
        PacketConfig {
            max_fragment_datagrams: 1024,
            max_fragment_bytes: 8 << 20,
            fragment_timeout_ns: 30_000_000_000,
            checksums: ChecksumMode::default(),
        }
    }
}

use crate::counters::{
    alone, by,
    families::{PACKETS, PACKETS_DROPPED},
};

crate::counters! {
    /// Counters for every frame handed to [`PacketDecoder::decode`]; each frame
    /// that yields no segment is counted under exactly one reason. The metric labels
    /// are the reasons of `observer_packets_dropped_total` (what a host drops).
    #[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
    pub struct PacketStats {
        frames: "frames", metric: alone(&PACKETS), anomaly: false, merge: Sum;
        ipv4: "IPv4 packets", metric: None, anomaly: false, merge: Sum;
        ipv6: "IPv6 packets", metric: None, anomaly: false, merge: Sum;
        tcp: "TCP segments", metric: None, anomaly: false, merge: Sum;
        udp: "UDP datagrams", metric: None, anomaly: false, merge: Sum;
        /// IP packets carrying neither TCP nor UDP (ICMP, ESP, ...).
        other_transport: "other IP transports", metric: None, anomaly: false, merge: Sum;
        /// Link-layer frames that are not IP (ARP, LLDP, ...).
        non_ip: "non-IP frames", metric: None, anomaly: false, merge: Sum;
        unknown_link_type: "frames of unknown link type", metric: None, anomaly: true, merge: Sum, decoding: 4;
        /// Frames too short or inconsistent to decode.
        malformed: "malformed frames", metric: None, anomaly: true, merge: Sum, decoding: 5, figures: true;
        /// Segments delivered with `cut` set, plus fragments dropped because cut.
        snaplen_cut: "frames cut by snaplen", metric: None, anomaly: false, merge: Sum, decoding: 1;
        /// IP fragments received (each is otherwise not counted as a result).
        fragments: "IP fragments", metric: None, anomaly: false, merge: Sum;
        /// Datagrams completed from fragments.
        reassembled: "datagrams reassembled", metric: None, anomaly: false, merge: Sum;
        /// Incomplete datagrams dropped after `fragment_timeout_ns`.
        fragment_timeouts: "IP fragments timed out", metric: None, anomaly: true, merge: Sum, decoding: 11;
        /// Incomplete datagrams dropped to honour the datagram or byte cap.
        fragment_evictions: "IP fragment datagrams evicted (cap)", metric: None, anomaly: true, merge: Sum, decoding: 12;
        /// Fragments overlapping data already received (the earlier bytes win).
        fragment_overlaps: "IP fragment overlaps", metric: None, anomaly: false, merge: Sum;
        /// IP packets dropped as a host drops them: an IPv4 total length below the
        /// header's, or an IP length beyond a frame the snaplen did not cut.
        bad_ip_length: "IP length below header or beyond frame (dropped)", metric: by(&PACKETS_DROPPED, "bad_ip_length"), anomaly: true, merge: Sum, decoding: 6;
        /// IPv4 packets dropped for a wrong header checksum.
        bad_ip_checksum: "bad IPv4 header checksum (dropped)", metric: by(&PACKETS_DROPPED, "bad_ip_checksum"), anomaly: true, merge: Sum, decoding: 7;
    }
    nested {
        /// Frames put back into time order before decoding (`--reorder-window`).
        reorder: crate::capture::ReorderStats,
    }
}

/// Which of `shards` a frame belongs to, from its unordered pair of IP addresses:
/// both directions of a connection, every fragment of a datagram and every
/// connection between two hosts go to the same shard. Frames without an IP header
/// go to shard 0. Costs a look at the link and IP headers, nothing more.
///
/// Inlined, for its common case: untagged Ethernet carrying IPv4 split between two
/// shards (`--threads 2`) is answered in the reader's per-frame closure, without the
/// call and the general path's register saves (docs/performance.md, stop 31, thr20).
#[inline]
pub fn shard(frame: &Frame<'_>, shards: usize) -> usize {
    if shards == 2 && frame.link_type == crate::capture::LinkType::ETHERNET {
        if let Some([0x08, 0x00, ip @ ..]) = frame.data.get(12..) {
            if let (Some(4), Some((a, b))) = (ip.first().map(|v| v >> 4), ipv4_pair(ip)) {
                return fnv1a_parity(u128::from(a ^ b));
            }
        }
    }
    shard_any(frame, shards)
}

/// [`shard`] for every link type and shard count.
#[inline(never)]
fn shard_any(frame: &Frame<'_>, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    // Untagged Ethernet, most frames, without the call that handles every link type
    // (~20 instructions of every frame): the same bytes `ip_bytes` would give.
    let ip = match frame.data.get(12..) {
        Some([0x08, 0x00, ip @ ..] | [0x86, 0xdd, ip @ ..])
            if frame.link_type == crate::capture::LinkType::ETHERNET =>
        {
            ip
        }
        _ => match link::ip_bytes(frame.link_type, frame.data) {
            LinkOutcome::Ip(ip) => ip,
            _ => return 0,
        },
    };
    // Fixed-size reads compared as big-endian integers order the addresses as their
    // bytes do; on slices, the compare and the hash loop were ~90 instructions of
    // every frame the reader of `--threads` hands on.
    let h = match ip.first().map(|v| v >> 4) {
        Some(4) => match ipv4_pair(ip) {
            Some((a, b)) => {
                if shards == 2 {
                    return fnv1a_parity(u128::from(a ^ b));
                }
                fnv1a(
                    FNV_OFFSET,
                    &(u64::from(a.min(b)) << 32 | u64::from(a.max(b))).to_be_bytes(),
                )
            }
            None => return 0,
        },
        Some(6) => match ip.get(8..40).and_then(|s| <[u8; 32]>::try_from(s).ok()) {
            Some(x) => {
                let (a, b) = x.split_at(16);
                let (Ok(a), Ok(b)) = (<[u8; 16]>::try_from(a), <[u8; 16]>::try_from(b)) else {
                    return 0;
                };
                let (a, b) = (u128::from_be_bytes(a), u128::from_be_bytes(b));
                if shards == 2 {
                    return fnv1a_parity(a ^ b);
                }
                let h = fnv1a(FNV_OFFSET, &a.min(b).to_be_bytes());
                fnv1a(h, &a.max(b).to_be_bytes())
            }
            None => return 0,
        },
        _ => return 0,
    };
    (h % shards as u64) as usize
}

/// An IPv4 header's source and destination addresses, big-endian (ordered as their
/// bytes), if the header reaches them.
#[inline]
fn ipv4_pair(ip: &[u8]) -> Option<(u32, u32)> {
    let x = <[u8; 8]>::try_from(ip.get(12..20)?).ok()?;
    Some((
        u32::from_be_bytes([x[0], x[1], x[2], x[3]]),
        u32::from_be_bytes([x[4], x[5], x[6], x[7]]),
    ))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over `bytes` from `h`: deterministic, so that every shard computes the same
/// answer; a crafted address pair can only unbalance the shards, never change a result.
fn fnv1a<const N: usize>(h: u64, bytes: &[u8; N]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3))
}

/// The low bit of FNV-1a from `FNV_OFFSET` over the bytes of two addresses whose
/// XOR is `x`, in either order: the prime is odd, so the low bit of each step is
/// that of `h ^ byte`, and the hash's is the offset's (1) flipped by the low bit of
/// every byte. Two shards, the usual `--threads 2`, take the same split as the hash
/// in ~10 instructions instead of ~45 (docs/performance.md, stop 30, threads19).
fn fnv1a_parity(mut x: u128) -> usize {
    x ^= x >> 64;
    x ^= x >> 32;
    x ^= x >> 16;
    x ^= x >> 8;
    ((x as usize) & 1) ^ (FNV_OFFSET as usize & 1)
}

/// Stateful decoder: the state is the fragment reassembly table.
#[derive(Debug)]
pub struct PacketDecoder {
    pub stats: PacketStats,
    frags: Reassembler,
    checksums: ChecksumMode,
    cpu: checksum::Cpu,
    /// The interface of the frame being decoded, for `finish` to write into the
    /// segment it makes: set afterwards, the whole segment was copied once more.
    interface: u32,
}

/// TCP/UDP header fields plus where the payload lies in the transport bytes.
struct Transport {
    sport: u16,
    dport: u16,
    tcp: Option<(u32, u32, TcpFlags, u16)>,
    start: usize,
    end: usize,
    /// The transport header declares more payload than there is.
    short: bool,
}

impl PacketDecoder {
    pub fn new(cfg: PacketConfig) -> Self {
        PacketDecoder {
            stats: PacketStats::default(),
            checksums: cfg.checksums,
            cpu: checksum::Cpu::detect(),
            frags: Reassembler::new(cfg),
            interface: 0,
        }
    }

    /// Decodes a frame. `None` when it is not TCP/UDP, is malformed, or is a
    /// fragment of a datagram still incomplete; the reason is counted.
    pub fn decode<'a>(&mut self, frame: &Frame<'a>) -> Option<Segment<'a>> {
        self.stats.frames += 1;
        self.interface = frame.interface;
        match plain_tcp(frame, self.checksums) {
            Some(p) => Some(self.plain_segment(frame, p)),
            None => self.decode_general(frame),
        }
    }

    /// [`decode`](Self::decode) for the pipeline, whose TCP segments go to the flow
    /// table: a plain frame's is built as [`TcpSegment::from_packet`] reads it from
    /// the [`Segment`] `decode` would give, without that `Segment` (~136 bytes written,
    /// then read and copied into the `TcpSegment`, of every frame). Counted alike.
    pub fn decode_for_flows<'a>(&mut self, frame: &Frame<'a>) -> Decoded<'a> {
        self.stats.frames += 1;
        self.interface = frame.interface;
        match plain_tcp(frame, self.checksums) {
            Some(p) => {
                let checksum = self.plain_counted(&p);
                let (src, dst, h) = p.fields();
                Decoded::Tcp(TcpSegment::of_header(
                    frame.ts,
                    src,
                    dst,
                    h,
                    p.payload,
                    checksum,
                    frame.interface,
                ))
            }
            None => Decoded::Other(self.decode_general(frame)),
        }
    }

    /// A frame [`plain_tcp`] read counted as the general path counts it (an IPv4
    /// packet, a TCP segment, nothing cut), and its checksum's verdict.
    #[inline(always)]
    fn plain_counted(&mut self, p: &PlainTcp<'_>) -> Checksum {
        self.stats.ipv4 += 1;
        self.stats.tcp += 1;
        match self.checksums {
            ChecksumMode::Ignore => Checksum::Unchecked,
            mode => judged(mode, checksum::tcp_v4(self.cpu, p.src, p.dst, p.l4)),
        }
    }

    /// The segment of a frame [`plain_tcp`] read.
    #[inline(always)]
    fn plain_segment<'a>(&mut self, frame: &Frame<'a>, p: PlainTcp<'a>) -> Segment<'a> {
        let checksum = self.plain_counted(&p);
        let (src, dst, h) = p.fields();
        Segment {
            ts: frame.ts,
            first_ts: frame.ts,
            src,
            dst,
            l4: L4::Tcp {
                seq: h.seq,
                ack: h.ack,
                flags: h.flags,
                window: h.window,
                payload: Cow::Borrowed(p.payload),
            },
            cut: false,
            checksum,
            interface: frame.interface,
        }
    }

    /// Every link type, IP version and shape: what [`decode`](Self::decode) does with
    /// a frame [`plain_tcp`] leaves to it. Out of line, so that the shortcut does not
    /// pay for this path's registers and stack frame.
    #[inline(never)]
    fn decode_general<'a>(&mut self, frame: &Frame<'a>) -> Option<Segment<'a>> {
        let ip = match link::ip_bytes(frame.link_type, frame.data) {
            LinkOutcome::Ip(ip) => ip,
            LinkOutcome::NotIp => {
                self.stats.non_ip += 1;
                return None;
            }
            LinkOutcome::UnknownLinkType => {
                self.stats.unknown_link_type += 1;
                return None;
            }
            LinkOutcome::Malformed => {
                self.stats.malformed += 1;
                return None;
            }
        };
        // IPv6 fragments are found by hand: etherparse keeps parsing
        // extension headers past a fragment header, which misreads every
        // fragment but the first.
        let frame_cut = frame.orig_len as usize > frame.data.len();
        match self.host_check(ip, frame_cut) {
            HostCheck::Accept => {}
            HostCheck::BadLength => {
                self.stats.bad_ip_length += 1;
                return None;
            }
            HostCheck::BadChecksum => {
                self.stats.bad_ip_checksum += 1;
                return None;
            }
        }
        let (src, dst, proto, bytes, cut) = if let Some(plain) = plain_ipv4(ip) {
            self.stats.ipv4 += 1;
            plain
        } else {
            if let Some(f) = ipv6_fragment(ip) {
                self.stats.ipv6 += 1;
                return self.defragment(frame.ts, f.key, f.offset, f.more, f.data, f.cut, true);
            }
            let Ok((slice, ext_err)) = LaxIpSlice::from_slice(ip) else {
                self.stats.malformed += 1;
                return None;
            };
            match &slice {
                LaxIpSlice::Ipv4(_) => self.stats.ipv4 += 1,
                LaxIpSlice::Ipv6(_) => self.stats.ipv6 += 1,
            }
            if ext_err.is_some() {
                self.stats.malformed += 1;
                return None;
            }
            let (src, dst) = (slice.source_addr(), slice.destination_addr());
            let payload = slice.payload();
            let cut = payload.incomplete;
            if payload.fragmented {
                let LaxIpSlice::Ipv4(v4) = &slice else {
                    // Only reachable for fragment headers ipv6_fragment() could
                    // not walk to (e.g. behind an unknown header).
                    self.stats.malformed += 1;
                    return None;
                };
                let h = v4.header();
                let key = FragKey {
                    src,
                    dst,
                    proto: payload.ip_number.0,
                    id: u32::from(h.identification()),
                };
                let offset = usize::from(h.fragments_offset().byte_offset());
                let more = h.more_fragments();
                return self.defragment(frame.ts, key, offset, more, payload.payload, cut, false);
            }
            (src, dst, payload.ip_number, payload.payload, cut)
        };
        let t = self.transport(proto, bytes, cut)?;
        let l4_payload = Cow::Borrowed(bytes.get(t.start..t.end)?);
        let checksum = self.tcp_checksum(&t, src, dst, bytes, cut);
        Some(self.finish(frame.ts, frame.ts, src, dst, t, l4_payload, (cut, checksum)))
    }

    /// What a host checks before the transport sees a packet: lengths that fit the
    /// frame (unless the capture cut it) and, for IPv4, the header checksum.
    fn host_check(&self, ip: &[u8], frame_cut: bool) -> HostCheck {
        let be16 = |at: usize| {
            ip.get(at..at + 2)
                .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
        };
        match ip.first().map(|v| v >> 4) {
            Some(4) => {
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                let Some(total) = be16(2) else {
                    return HostCheck::Accept;
                };
                if ihl < 20 || ip.len() < ihl {
                    // Not a header at all: the parser counts it as malformed.
                    return HostCheck::Accept;
                }
                // Zero is what segmentation offload (TSO) leaves in a capture taken on
                // the sender: the frame's length stands for it, as in Wireshark.
                let tso = total == 0;
                if (total < ihl && !tso) || (total > ip.len() && !frame_cut) {
                    return HostCheck::BadLength;
                }
                let checked = match self.checksums {
                    ChecksumMode::Ignore => false,
                    ChecksumMode::Verify => true,
                    // A zero field is what checksum offload leaves in a capture taken
                    // on the sender (a real header practically never sums to it); a
                    // TSO super-packet's header is rewritten by the NIC anyway.
                    ChecksumMode::Auto => be16(10) != Some(0) && !tso,
                };
                if checked && !checksum::ipv4_header_ok(&ip[..ihl]) {
                    return HostCheck::BadChecksum;
                }
                HostCheck::Accept
            }
            Some(6) => match be16(4) {
                // Zero is a jumbogram's: the real length is in an option.
                Some(plen) if plen > 0 && 40 + plen > ip.len() && !frame_cut => {
                    HostCheck::BadLength
                }
                _ => HostCheck::Accept,
            },
            _ => HostCheck::Accept,
        }
    }

    /// The TCP checksum of the transport bytes `l4` (header included), when the
    /// mode asks for it and every byte is there.
    fn tcp_checksum(
        &self,
        t: &Transport,
        src: IpAddr,
        dst: IpAddr,
        l4: &[u8],
        cut: bool,
    ) -> Checksum {
        if t.tcp.is_none() || cut || t.short || self.checksums == ChecksumMode::Ignore {
            return Checksum::Unchecked;
        }
        judged(self.checksums, checksum::tcp(self.cpu, src, dst, l4))
    }

    #[allow(clippy::too_many_arguments)]
    fn defragment<'a>(
        &mut self,
        ts: UnixNanos,
        key: FragKey,
        offset: usize,
        more: bool,
        data: &[u8],
        cut: bool,
        ipv6: bool,
    ) -> Option<Segment<'a>> {
        self.stats.fragments += 1;
        if cut {
            // A fragment missing its tail cannot be placed honestly; the
            // datagram will time out.
            self.stats.snaplen_cut += 1;
            return None;
        }
        let (src, dst) = (key.src, key.dst);
        let (done, first_ts) = self
            .frags
            .insert(&mut self.stats, ts, key, offset, more, data)?;
        self.stats.reassembled += 1;
        let (mut proto, mut data) = (IpNumber(key.proto), done);
        if ipv6 && proto.is_ipv6_ext_header_value() {
            // Extension headers after the fragment header are part of the
            // fragmentable payload (RFC 8200 4.5): skip them now it is whole.
            match etherparse::Ipv6ExtensionsSlice::from_slice(proto, &data) {
                Ok((_, next, rest)) => {
                    let skip = data.len() - rest.len();
                    proto = next;
                    data.drain(..skip);
                }
                Err(_) => {
                    self.stats.malformed += 1;
                    return None;
                }
            }
        }
        let t = self.transport(proto, &data, false)?;
        let checksum = self.tcp_checksum(&t, src, dst, &data, false);
        data.truncate(t.end);
        data.drain(..t.start);
        Some(self.finish(
            ts,
            first_ts,
            src,
            dst,
            t,
            Cow::Owned(data),
            (false, checksum),
        ))
    }

    /// Always inline, where `#[inline]` left it out of line (~20 instructions of every
    /// frame passing its arguments): called once a frame.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn finish<'a>(
        &mut self,
        ts: UnixNanos,
        first_ts: UnixNanos,
        src: IpAddr,
        dst: IpAddr,
        t: Transport,
        payload: Cow<'a, [u8]>,
        (cut, checksum): (bool, Checksum),
    ) -> Segment<'a> {
        let cut = cut || t.short;
        if cut {
            self.stats.snaplen_cut += 1;
        }
        let l4 = match t.tcp {
            Some((seq, ack, flags, window)) => {
                self.stats.tcp += 1;
                L4::Tcp {
                    seq,
                    ack,
                    flags,
                    window,
                    payload,
                }
            }
            None => {
                self.stats.udp += 1;
                L4::Udp { payload }
            }
        };
        Segment {
            ts,
            first_ts,
            src: SocketAddr::new(src, t.sport),
            dst: SocketAddr::new(dst, t.dport),
            l4,
            cut,
            checksum,
            interface: self.interface,
        }
    }

    /// Parses the TCP or UDP header in `b`. `cut` says the IP layer already
    /// knows bytes are missing, so a short transport payload is expected
    /// rather than malformed.
    #[inline]
    fn transport(&mut self, proto: IpNumber, b: &[u8], cut: bool) -> Option<Transport> {
        let port = |at: usize| b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]));
        let parsed = match proto {
            IpNumber::TCP => (|| {
                // The fixed header read at once (its fields without a bounds check
                // each): fewer than 20 bytes could never pass the offset check below.
                let h: &[u8; 20] = b.get(..20)?.try_into().ok()?;
                let (sport, dport) = (be16_at(h, 0), be16_at(h, 2));
                let (seq, ack) = (be32_at(h, 4), be32_at(h, 8));
                let data_off = usize::from(h[12] >> 4) * 4;
                let window = be16_at(h, 14);
                if data_off < 20 || data_off > b.len() {
                    return None;
                }
                let flags = TcpFlags::from_byte(h[13]);
                Some(Transport {
                    sport,
                    dport,
                    tcp: Some((seq, ack, flags, window)),
                    start: data_off,
                    end: b.len(),
                    short: false,
                })
            })(),
            IpNumber::UDP => (|| {
                let (sport, dport, len) = (port(0)?, port(2)?, usize::from(port(4)?));
                // Length 0 is legal for IPv6 jumbograms; trust the IP length then.
                let declared = if len == 0 { b.len() } else { len };
                if declared < 8 || (declared > b.len() && !cut) {
                    return None;
                }
                Some(Transport {
                    sport,
                    dport,
                    tcp: None,
                    start: 8,
                    end: declared.min(b.len()),
                    short: declared > b.len(),
                })
            })(),
            _ => {
                self.stats.other_transport += 1;
                return None;
            }
        };
        if parsed.is_none() {
            // A cut that hides the transport header is counted as cut, not
            // as malformed: the packet on the wire was fine.
            if cut {
                self.stats.snaplen_cut += 1;
            } else {
                self.stats.malformed += 1;
            }
        }
        parsed
    }
}

enum HostCheck {
    Accept,
    BadLength,
    BadChecksum,
}

/// The IP layer of the packets nearly every capture is made of: IPv4 with a 20-byte
/// header, not fragmented, carrying TCP or UDP, its total length within the frame.
/// Read as `LaxIpSlice` reads it (the same addresses, protocol and payload, nothing
/// cut), without its general walk (~80 instructions of every frame); `None` for
/// anything else, which takes the general path. `host_check` has already accepted it.
fn plain_ipv4(ip: &[u8]) -> Option<(IpAddr, IpAddr, IpNumber, &[u8], bool)> {
    let header: &[u8; 20] = ip.get(..20)?.try_into().ok()?;
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    // Version 4 and IHL 5; neither more fragments nor an offset (DF may be set).
    let unfragmented = u16::from_be_bytes([header[6], header[7]]) & 0x3fff == 0;
    let proto = IpNumber(header[9]);
    if header[0] != 0x45
        || !(20..=ip.len()).contains(&total)
        || !unfragmented
        || !(proto == IpNumber::TCP || proto == IpNumber::UDP)
    {
        return None;
    }
    let src = [header[12], header[13], header[14], header[15]];
    let dst = [header[16], header[17], header[18], header[19]];
    Some((
        IpAddr::from(src),
        IpAddr::from(dst),
        proto,
        ip.get(20..total)?,
        false,
    ))
}

/// The big-endian 16-bit field at `at` of a TCP header's fixed part.
#[inline(always)]
fn be16_at(h: &[u8; 20], at: usize) -> u16 {
    u16::from_be_bytes([h[at], h[at + 1]])
}

/// The big-endian 32-bit field at `at` of a TCP header's fixed part.
#[inline(always)]
fn be32_at(h: &[u8; 20], at: usize) -> u32 {
    u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

/// A frame of the shape nearly every capture is made of, read in one pass.
struct PlainTcp<'a> {
    src: [u8; 4],
    dst: [u8; 4],
    /// The TCP header and payload: the IP packet's payload.
    l4: &'a [u8],
    /// The TCP header's fixed part.
    header: &'a [u8; 20],
    /// After the TCP header and its options.
    payload: &'a [u8],
}

impl PlainTcp<'_> {
    /// Its two ends and its TCP header's fields, read at their fixed offsets: the one
    /// reading of them, whichever segment ([`Segment`], [`TcpSegment`]) is built.
    #[inline(always)]
    fn fields(&self) -> (SocketAddr, SocketAddr, TcpHeader) {
        let h = self.header;
        (
            SocketAddr::new(IpAddr::from(self.src), be16_at(h, 0)),
            SocketAddr::new(IpAddr::from(self.dst), be16_at(h, 2)),
            TcpHeader {
                seq: be32_at(h, 4),
                ack: be32_at(h, 8),
                flags: TcpFlags::from_byte(h[13]),
                window: be16_at(h, 14),
            },
        )
    }
}

/// Untagged Ethernet, IPv4 with a 20-byte header, not fragmented, its total length
/// within the frame, its header checksum right or not checked under `mode`, carrying
/// a TCP segment whose header fits: the frames the general path reads through its
/// link-type dispatch, `host_check`, `plain_ipv4`, `transport` and `tcp_checksum`
/// without once taking a branch those exist for (~80 instructions of every frame).
/// `None` for anything else, which the general path decodes and counts as before.
#[inline(always)]
fn plain_tcp<'a>(frame: &Frame<'a>, mode: ChecksumMode) -> Option<PlainTcp<'a>> {
    if frame.link_type != crate::capture::LinkType::ETHERNET {
        return None;
    }
    let [0x08, 0x00, ip @ ..] = frame.data.get(12..)? else {
        return None;
    };
    let ih: &[u8; 20] = ip.get(..20)?.try_into().ok()?;
    let total = usize::from(u16::from_be_bytes([ih[2], ih[3]]));
    // Version 4 and IHL 5, no more fragments nor an offset (DF may be set), TCP.
    if ih[0] != 0x45 || ih[6] & 0x3f != 0 || ih[7] != 0 || ih[9] != 6 {
        return None;
    }
    let checked = match mode {
        ChecksumMode::Ignore => false,
        ChecksumMode::Verify => true,
        ChecksumMode::Auto => ih[10] != 0 || ih[11] != 0,
    };
    if checked && !checksum::ipv4_header_ok(ih) {
        return None;
    }
    // A total below the header's or beyond what the frame holds (a lying length, a
    // snaplen cut) is the general path's, as is one without room for a TCP header.
    let l4 = ip.get(20..total)?;
    let header: &[u8; 20] = l4.get(..20)?.try_into().ok()?;
    // A data offset below 5 words, or beyond the segment, is the general path's.
    if header[12] < 0x50 {
        return None;
    }
    let payload = l4.get(usize::from(header[12] >> 4) * 4..)?;
    Some(PlainTcp {
        src: [ih[12], ih[13], ih[14], ih[15]],
        dst: [ih[16], ih[17], ih[18], ih[19]],
        l4,
        header,
        payload,
    })
}

/// A computed TCP checksum as the mode judges it: under forced verification an
/// offloaded-looking checksum is just wrong.
#[inline(always)]
fn judged(mode: ChecksumMode, c: Checksum) -> Checksum {
    match (c, mode) {
        (Checksum::Offloaded, ChecksumMode::Verify) => Checksum::Bad,
        (c, _) => c,
    }
}

struct V6Fragment<'a> {
    key: FragKey,
    offset: usize,
    more: bool,
    data: &'a [u8],
    cut: bool,
}

/// Walks the IPv6 extension headers to a fragment header that actually
/// fragments; `None` for anything else (including atomic fragments, which
/// the normal path handles).
fn ipv6_fragment(ip: &[u8]) -> Option<V6Fragment<'_>> {
    if ip.first()? >> 4 != 6 || ip.len() < 40 {
        return None;
    }
    let be16 = |at: usize| ip.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]));
    let plen = usize::from(be16(4)?);
    if plen == 0 {
        return None;
    }
    let end = 40 + plen;
    let mut next = *ip.get(6)?;
    let mut pos = 40;
    // A bound on the walk: legitimate chains are a handful of headers.
    for _ in 0..16 {
        match next {
            0 | 43 | 60 => {
                next = *ip.get(pos)?;
                pos += (usize::from(*ip.get(pos + 1)?) + 1) * 8;
            }
            51 => {
                next = *ip.get(pos)?;
                pos += (usize::from(*ip.get(pos + 1)?) + 2) * 4;
            }
            44 => {
                let proto = *ip.get(pos)?;
                let off_m = be16(pos + 2)?;
                let id = ip
                    .get(pos + 4..pos + 8)
                    .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))?;
                let (offset, more) = (usize::from(off_m & 0xfff8), off_m & 1 != 0);
                if offset == 0 && !more {
                    return None;
                }
                let data = ip.get(pos + 8..end.min(ip.len()))?;
                let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
                let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
                return Some(V6Fragment {
                    key: FragKey {
                        src: IpAddr::from(src),
                        dst: IpAddr::from(dst),
                        proto,
                        id,
                    },
                    offset,
                    more,
                    data,
                    cut: end > ip.len(),
                });
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests;
