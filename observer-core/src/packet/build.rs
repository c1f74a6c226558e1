//! Packet builders for the capture generator and for tests of every layer.
//! Output is deterministic: the same arguments always give the same bytes.

pub use super::LinkVariant;
use super::TcpFlags;
use crate::capture::LinkType;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

const TTL: u8 = 64;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_HOP_BY_HOP: u8 = 0;
const PROTO_FRAGMENT: u8 = 44;
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// A TCP segment in an IPv4 packet when both addresses are IPv4, otherwise
/// in IPv6 (an IPv4 address then becomes `::ffff:a.b.c.d`). Checksums are
/// correct. Payloads beyond what one IP packet can carry are truncated.
pub fn tcp_packet(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    window: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(20 + payload.len());
    l4.extend(src.port().to_be_bytes());
    l4.extend(dst.port().to_be_bytes());
    l4.extend(seq.to_be_bytes());
    l4.extend(ack.to_be_bytes());
    let bits = u8::from(flags.fin)
        | u8::from(flags.syn) << 1
        | u8::from(flags.rst) << 2
        | u8::from(flags.psh) << 3
        | u8::from(flags.ack) << 4;
    l4.extend([5 << 4, bits]);
    l4.extend(window.to_be_bytes());
    l4.extend([0, 0, 0, 0]);
    l4.extend(payload);
    ip_packet(src.ip(), dst.ip(), PROTO_TCP, l4, 16)
}

/// A UDP datagram in IPv4 or IPv6, chosen as for [`tcp_packet`].
pub fn udp_packet(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(8 + payload.len());
    l4.extend(src.port().to_be_bytes());
    l4.extend(dst.port().to_be_bytes());
    l4.extend([0, 0, 0, 0]);
    l4.extend(payload);
    ip_packet(src.ip(), dst.ip(), PROTO_UDP, l4, 6)
}

/// Wraps an upper-layer packet (whose checksum field sits at `csum_at`) in
/// an IP header, filling in the transport length (UDP) and checksum.
fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, mut l4: Vec<u8>, csum_at: usize) -> Vec<u8> {
    let (src, dst) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => (IpAddr::V6(v6(s)), IpAddr::V6(v6(d))),
    };
    let max = if src.is_ipv4() { 65_535 - 20 } else { 65_535 };
    l4.truncate(max);
    let len = l4.len() as u16;
    if proto == PROTO_UDP {
        l4[4..6].copy_from_slice(&len.to_be_bytes());
    }
    let mut pseudo = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend(s.octets());
            pseudo.extend(d.octets());
            pseudo.extend([0, proto]);
            pseudo.extend(len.to_be_bytes());
        }
        (s, d) => {
            pseudo.extend(v6(s).octets());
            pseudo.extend(v6(d).octets());
            pseudo.extend(u32::from(len).to_be_bytes());
            pseudo.extend([0, 0, 0, proto]);
        }
    }
    let mut csum = checksum(&[&pseudo, &l4]);
    // UDP sends a computed zero as all ones; zero means "no checksum".
    if proto == PROTO_UDP && csum == 0 {
        csum = 0xffff;
    }
    l4[csum_at..csum_at + 2].copy_from_slice(&csum.to_be_bytes());
    let mut out = Vec::with_capacity(40 + l4.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend([0x45, 0]);
            out.extend((len + 20).to_be_bytes());
            // Identification 0 with DF for TCP, as Linux sends; fragment()
            // assigns a real id when it splits a packet.
            let df = if proto == PROTO_TCP { 0x40 } else { 0 };
            out.extend([0, 0, df, 0, TTL, proto, 0, 0]);
            out.extend(s.octets());
            out.extend(d.octets());
            let c = checksum(&[&out]);
            out[10..12].copy_from_slice(&c.to_be_bytes());
        }
        (s, d) => {
            out.extend([0x60, 0, 0, 0]);
            out.extend(len.to_be_bytes());
            out.extend([proto, TTL]);
            out.extend(v6(s).octets());
            out.extend(v6(d).octets());
        }
    }
    out.extend(l4);
    out
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// RFC 1071 one's-complement sum over the concatenation of `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u64::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u64::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Splits an IPv4 or IPv6 packet into fragments of at most `mtu` bytes
/// (at least 8 payload bytes each, so a tiny `mtu` still makes progress).
/// IPv4 keeps a non-zero identification and otherwise derives one from the
/// packet bytes; DF is cleared. IPv6 gets a fragment header after the
/// hop-by-hop options, if any (the unfragmentable part). A packet that fits,
/// or is not IP, comes back as the only element.
pub fn fragment(ip_packet: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let whole = || vec![ip_packet.to_vec()];
    if ip_packet.len() <= mtu {
        return whole();
    }
    let id = fnv1a(ip_packet);
    match ip_packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ihl = usize::from(ip_packet[0] & 0x0f) * 4;
            let total = ip_packet
                .get(2..4)
                .map_or(0, |b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                .min(ip_packet.len());
            if ihl < 20 || total <= ihl {
                return whole();
            }
            let mut header = ip_packet[..ihl].to_vec();
            if header[4..6] == [0, 0] {
                header[4..6].copy_from_slice(&(id as u16).to_be_bytes());
            }
            let chunk = (mtu.saturating_sub(ihl) / 8 * 8).max(8);
            let payload = &ip_packet[ihl..total];
            let n = payload.len().div_ceil(chunk);
            payload
                .chunks(chunk)
                .enumerate()
                .map(|(i, part)| {
                    let mut h = header.clone();
                    let len = (ihl + part.len()) as u16;
                    h[2..4].copy_from_slice(&len.to_be_bytes());
                    let more: u16 = if i + 1 < n { 0x2000 } else { 0 };
                    let off = ((i * chunk / 8) as u16) | more;
                    h[6..8].copy_from_slice(&off.to_be_bytes());
                    h[10..12].copy_from_slice(&[0, 0]);
                    let c = checksum(&[&h]);
                    h[10..12].copy_from_slice(&c.to_be_bytes());
                    h.extend(part);
                    h
                })
                .collect()
        }
        Some(6) if ip_packet.len() >= 40 => {
            // Next-header field of the last unfragmentable header, and where
            // the fragmentable part starts.
            let (mut next_at, mut unfrag) = (6, 40);
            if ip_packet[6] == PROTO_HOP_BY_HOP {
                match ip_packet.get(41) {
                    Some(&l) if 40 + (usize::from(l) + 1) * 8 <= ip_packet.len() => {
                        next_at = 40;
                        unfrag = 40 + (usize::from(l) + 1) * 8;
                    }
                    _ => return whole(),
                }
            }
            let next = ip_packet[next_at];
            let mut header = ip_packet[..unfrag].to_vec();
            header[next_at] = PROTO_FRAGMENT;
            let chunk = (mtu.saturating_sub(unfrag + 8) / 8 * 8).max(8);
            let payload = &ip_packet[unfrag..];
            let n = payload.len().div_ceil(chunk);
            payload
                .chunks(chunk)
                .enumerate()
                .map(|(i, part)| {
                    let mut h = header.clone();
                    let plen = (unfrag - 40 + 8 + part.len()) as u16;
                    h[4..6].copy_from_slice(&plen.to_be_bytes());
                    let more: u16 = if i + 1 < n { 1 } else { 0 };
                    let off = ((i * chunk) as u16) | more;
                    h.extend([next, 0]);
                    h.extend(off.to_be_bytes());
                    h.extend(id.to_be_bytes());
                    h.extend(part);
                    h
                })
                .collect()
        }
        _ => whole(),
    }
}

fn fnv1a(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, &x| {
        (h ^ u32::from(x)).wrapping_mul(0x0100_0193)
    })
}

/// Wraps an IP packet in a link layer; returns the capture link type to
/// record it under.
pub fn frame(link: LinkVariant, ip_packet: &[u8]) -> (LinkType, Vec<u8>) {
    let v6 = ip_packet.first().is_some_and(|b| b >> 4 == 6);
    let ethertype: u16 = if v6 { 0x86dd } else { 0x0800 };
    let mut out = Vec::with_capacity(ip_packet.len() + 24);
    let link_type = match link {
        LinkVariant::Ethernet | LinkVariant::Vlan(_) | LinkVariant::QinQ(..) => {
            out.extend(DST_MAC);
            out.extend(SRC_MAC);
            match link {
                LinkVariant::Vlan(id) => {
                    out.extend(0x8100u16.to_be_bytes());
                    out.extend((id & 0x0fff).to_be_bytes());
                }
                LinkVariant::QinQ(outer, inner) => {
                    out.extend(0x88a8u16.to_be_bytes());
                    out.extend((outer & 0x0fff).to_be_bytes());
                    out.extend(0x8100u16.to_be_bytes());
                    out.extend((inner & 0x0fff).to_be_bytes());
                }
                _ => {}
            }
            out.extend(ethertype.to_be_bytes());
            LinkType::ETHERNET
        }
        LinkVariant::LinuxSll => {
            // Packet type 0 (to us), ARPHRD_ETHER, 6-byte address padded to 8.
            out.extend(0u16.to_be_bytes());
            out.extend(1u16.to_be_bytes());
            out.extend(6u16.to_be_bytes());
            out.extend(SRC_MAC);
            out.extend([0, 0]);
            out.extend(ethertype.to_be_bytes());
            LinkType::LINUX_SLL
        }
        LinkVariant::LinuxSll2 => {
            out.extend(ethertype.to_be_bytes());
            out.extend(0u16.to_be_bytes());
            out.extend(1u32.to_be_bytes()); // interface index
            out.extend(1u16.to_be_bytes()); // ARPHRD_ETHER
            out.extend([0, 6]); // packet type, address length
            out.extend(SRC_MAC);
            out.extend([0, 0]);
            LinkType::LINUX_SLL2
        }
        LinkVariant::Raw => LinkType::RAW,
        LinkVariant::RawIpv4Ipv6 => {
            if v6 {
                LinkType::IPV6
            } else {
                LinkType::IPV4
            }
        }
        LinkVariant::Null { big_endian } => {
            let af: u32 = match (v6, big_endian) {
                (false, _) => 2,
                (true, false) => 30, // macOS, a little-endian capturer
                (true, true) => 24,  // NetBSD/OpenBSD on a big-endian machine
            };
            out.extend(if big_endian {
                af.to_be_bytes()
            } else {
                af.to_le_bytes()
            });
            LinkType::NULL
        }
        LinkVariant::Loop => {
            out.extend(if v6 { 24u32 } else { 2 }.to_be_bytes());
            LinkType::LOOP
        }
    };
    out.extend(ip_packet);
    (link_type, out)
}
