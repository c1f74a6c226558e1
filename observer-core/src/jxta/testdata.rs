//! Test helper: the real JXSE 2.5 capture, split into TCP segments by hand (pcap µs,
//! Ethernet, IPv4, TCP). Loopback, so in-order concatenation per direction suffices.

pub(crate) const JXSE25: &[u8] = include_bytes!("../../../captures/jxse25-pingpong.pcap");

/// Port of the rendezvous peer in the capture.
pub(crate) const RDV_PORT: u16 = 9701;

pub(crate) struct Segment {
    pub src_port: u16,
    pub ts: crate::UnixNanos,
    pub payload: Vec<u8>,
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

/// TCP segments with payload, in capture order.
pub(crate) fn segments() -> Vec<Segment> {
    let f = JXSE25;
    assert_eq!(le32(f, 0), 0xa1b2_c3d4, "pcap µs little-endian");
    assert_eq!(le32(f, 20), 1, "Ethernet");
    let mut pos = 24;
    let mut out = Vec::new();
    while pos + 16 <= f.len() {
        let ts = le32(f, pos) * 1_000_000_000 + le32(f, pos + 4) * 1000;
        let incl = le32(f, pos + 8) as usize;
        let frame = &f[pos + 16..pos + 16 + incl];
        pos += 16 + incl;
        if be16(frame, 12) != 0x0800 {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = be16(ip, 2);
        if ip[9] != 6 {
            continue;
        }
        let tcp = &ip[ihl..total];
        let doff = usize::from(tcp[12] >> 4) * 4;
        let payload = &tcp[doff..];
        if payload.is_empty() {
            continue;
        }
        out.push(Segment {
            src_port: be16(tcp, 0) as u16,
            ts,
            payload: payload.to_vec(),
        });
    }
    out
}
