//! Link layers, parsed by hand: each is a fixed header plus an EtherType or
//! address family, and doing it here avoids depending on which of them a
//! given `etherparse` version knows (it has no SLL2, no BSD loopback).

use crate::capture::LinkType;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ outer tag still emitted by some switches.
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// Bound on stacked VLAN tags: real networks use at most two or three, and a
/// bound keeps a frame full of tag bytes from looping.
const MAX_VLAN_TAGS: usize = 4;

pub(super) enum LinkOutcome<'a> {
    Ip(&'a [u8]),
    NotIp,
    UnknownLinkType,
    Malformed,
}

/// Link layers the builders can produce (see [`super::build::frame`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkVariant {
    Ethernet,
    /// Ethernet with one 802.1Q tag (VLAN id).
    Vlan(u16),
    /// Ethernet with an 802.1ad outer tag and an 802.1Q inner tag.
    QinQ(u16, u16),
    LinuxSll,
    LinuxSll2,
    /// LINKTYPE_RAW (101).
    Raw,
    /// LINKTYPE_IPV4 (228) or LINKTYPE_IPV6 (229), by IP version.
    RawIpv4Ipv6,
    /// BSD loopback (0); the address family in the capturing host's order.
    Null {
        big_endian: bool,
    },
    /// OpenBSD loopback (108); the address family in network order.
    Loop,
}

/// Strips the link layer and returns the IP packet it carries. Inline: once a frame,
/// a few compares for Ethernet (`#[inline]` left it a call of ~26 instructions).
#[inline(always)]
pub(super) fn ip_bytes(link: LinkType, data: &[u8]) -> LinkOutcome<'_> {
    match link {
        LinkType::ETHERNET => match (be16(data, 12), data.get(14..)) {
            (Some(t), Some(rest)) => ethertype(t, rest),
            _ => LinkOutcome::Malformed,
        },
        LinkType::LINUX_SLL => match (be16(data, 14), data.get(16..)) {
            (Some(t), Some(rest)) => ethertype(t, rest),
            _ => LinkOutcome::Malformed,
        },
        LinkType::LINUX_SLL2 => match (be16(data, 0), data.get(20..)) {
            (Some(t), Some(rest)) => ethertype(t, rest),
            _ => LinkOutcome::Malformed,
        },
        LinkType::RAW => match data.first().map(|b| b >> 4) {
            Some(4 | 6) => LinkOutcome::Ip(data),
            Some(_) => LinkOutcome::NotIp,
            None => LinkOutcome::Malformed,
        },
        LinkType::IPV4 | LinkType::IPV6 => {
            if data.is_empty() {
                LinkOutcome::Malformed
            } else {
                LinkOutcome::Ip(data)
            }
        }
        LinkType::NULL | LinkType::LOOP => {
            let Some(af) = data.get(..4) else {
                return LinkOutcome::Malformed;
            };
            let af = [af[0], af[1], af[2], af[3]];
            let big = u32::from_be_bytes(af);
            // DLT_NULL uses the capturing host's byte order, which the file
            // does not record: accept either. No AF value is ambiguous,
            // since every valid one is below 256.
            let family = if link == LinkType::LOOP || big < 256 {
                big
            } else {
                u32::from_le_bytes(af)
            };
            match family {
                // AF_INET everywhere; AF_INET6 is 24 (NetBSD/OpenBSD), 28
                // (FreeBSD) or 30 (macOS) depending on the capturing OS.
                2 | 24 | 28 | 30 => LinkOutcome::Ip(data.get(4..).unwrap_or_default()),
                _ => LinkOutcome::NotIp,
            }
        }
        _ => LinkOutcome::UnknownLinkType,
    }
}

/// Follows VLAN tags down to the network protocol.
fn ethertype(mut t: u16, mut rest: &[u8]) -> LinkOutcome<'_> {
    for _ in 0..=MAX_VLAN_TAGS {
        match t {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => return LinkOutcome::Ip(rest),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                match (be16(rest, 2), rest.get(4..)) {
                    (Some(inner), Some(r)) => {
                        t = inner;
                        rest = r;
                    }
                    _ => return LinkOutcome::Malformed,
                }
            }
            _ => return LinkOutcome::NotIp,
        }
    }
    LinkOutcome::Malformed
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}
