//! A simulated wire: TCP connections and UDP datagrams laid out as timestamped IP
//! packets, with the bookkeeping needed to compute, independently of the observer's
//! reassembly code, when each message was first and last seen in the capture.

use std::net::SocketAddr;

use crate::capture::{CaptureWriter, WriteFormat};
use crate::packet::build::{self, LinkVariant};
use crate::packet::TcpFlags;
use crate::UnixNanos;

/// Segments of one direction [`Wire::ack_at`] looks back over: more than one large
/// send's worth.
const IN_FLIGHT_SEGMENTS: usize = 2048;

/// One IP packet on the wire. `written == false` models a packet the capture missed.
#[derive(Clone, Debug)]
pub struct WirePacket {
    pub ts: UnixNanos,
    pub ip: Vec<u8>,
    pub written: bool,
}

/// Which stream of which connection a message travelled on, and where in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub conn: usize,
    pub dir: usize,
    pub start: u64,
    pub end: u64,
}

/// Segments written on one direction: (stream range, packet index).
#[derive(Default, Clone, Debug)]
struct StreamLog {
    segments: Vec<(u64, u64, usize)>,
}

/// How a send is cut into segments and disturbed.
#[derive(Clone, Debug)]
pub struct SendShape {
    pub mss: usize,
    /// Time between consecutive segments of one send.
    pub segment_gap_ns: u64,
    /// Swap the capture order of these segment pairs (index k and k+1).
    pub swap: Vec<usize>,
    /// Send these segments again, this long after the send.
    pub retransmit: Vec<(usize, u64)>,
    /// Segments the capture misses (never written).
    pub drop: Vec<usize>,
    /// Segments lost after the capture point (written, but the receiver only gets
    /// their retransmission).
    pub lost: Vec<usize>,
    /// After segment `k` the receiver shuts its window (an ACK with window 0) and
    /// opens it again this long after (a window update); the sender probes it every
    /// [`ZERO_WINDOW_PROBE_NS`] meanwhile and the rest of the send waits.
    pub zero_window: Option<(usize, u64)>,
}

/// Between two zero-window probes (Linux starts at the retransmission timeout, 200 ms).
pub const ZERO_WINDOW_PROBE_NS: u64 = 200_000_000;

impl Default for SendShape {
    fn default() -> Self {
        SendShape {
            mss: 1448,
            segment_gap_ns: 20_000,
            swap: Vec::new(),
            retransmit: Vec::new(),
            drop: Vec::new(),
            lost: Vec::new(),
            zero_window: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Conn {
    pub addrs: [SocketAddr; 2],
    seq: [u32; 2],
    offset: [u64; 2],
    busy_until: [UnixNanos; 2],
    logs: [StreamLog; 2],
    /// Direction `d`'s packets advertise a shut window from `.0` until `.1`.
    shut: [(UnixNanos, UnixNanos); 2],
}

#[derive(Default, Clone, Debug)]
pub struct Wire {
    pub packets: Vec<WirePacket>,
    pub conns: Vec<Conn>,
}

impl Wire {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, ts: UnixNanos, ip: Vec<u8>, written: bool) -> usize {
        // Whole microseconds, so that a µs pcap holds exactly the times the ground
        // truth is computed from.
        let ts = ts - ts % 1_000;
        self.packets.push(WirePacket { ts, ip, written });
        self.packets.len() - 1
    }

    /// Opens a TCP connection with a three-way handshake starting at `t`; `rtt_ns` is
    /// the round trip between the two hosts as the capture point sees it.
    pub fn connect(
        &mut self,
        t: UnixNanos,
        client: SocketAddr,
        server: SocketAddr,
        isn: [u32; 2],
        rtt_ns: u64,
    ) -> usize {
        let syn = TcpFlags::SYN;
        let synack = TcpFlags::SYN_ACK;
        let ack = TcpFlags::ACK;
        self.push(
            t,
            build::tcp_packet(client, server, isn[0], 0, syn, 65535, b""),
            true,
        );
        self.push(
            t + rtt_ns / 2,
            build::tcp_packet(
                server,
                client,
                isn[1],
                isn[0].wrapping_add(1),
                synack,
                65535,
                b"",
            ),
            true,
        );
        self.push(
            t + rtt_ns,
            build::tcp_packet(
                client,
                server,
                isn[0].wrapping_add(1),
                isn[1].wrapping_add(1),
                ack,
                65535,
                b"",
            ),
            true,
        );
        self.conns.push(Conn {
            addrs: [client, server],
            seq: [isn[0].wrapping_add(1), isn[1].wrapping_add(1)],
            offset: [0, 0],
            busy_until: [t + rtt_ns, t + rtt_ns],
            logs: [StreamLog::default(), StreamLog::default()],
            shut: [(0, 0); 2],
        });
        self.conns.len() - 1
    }

    /// Sends messages back to back on `conn` in direction `dir` (0 = client to server),
    /// no earlier than `t` (a direction sends one thing at a time); several messages
    /// share segments when the MSS allows. Returns where each message sits in the
    /// stream and when the last segment left. The receiver acknowledges everything
    /// `ack_delay_ns` after the last segment (also what the capture missed: that is how
    /// an observer learns of a gap).
    pub fn send(
        &mut self,
        t: UnixNanos,
        conn: usize,
        dir: usize,
        messages: &[&[u8]],
        shape: &SendShape,
        ack_delay_ns: u64,
    ) -> (Vec<Placement>, UnixNanos) {
        let bytes: Vec<u8> = messages.concat();
        let c = &mut self.conns[conn];
        let t0 = t.max(c.busy_until[dir]);
        let (src, dst) = (c.addrs[dir], c.addrs[1 - dir]);
        let start = c.offset[dir];
        let base_seq = c.seq[dir];
        let chunks: Vec<&[u8]> = bytes.chunks(shape.mss.max(1)).collect();
        let mut times: Vec<UnixNanos> = (0..chunks.len() as u64)
            .map(|k| t0 + k * shape.segment_gap_ns)
            .collect();
        for &k in &shape.swap {
            if k + 1 < times.len() {
                times.swap(k, k + 1);
            }
        }
        if let Some((k, stall)) = shape.zero_window {
            for t in times.iter_mut().skip(k + 1) {
                *t += stall;
            }
        }
        let psh = TcpFlags::PSH_ACK;
        let mut at = 0u64;
        let mut last = t0;
        let mut logged = Vec::new();
        for (k, chunk) in chunks.iter().enumerate() {
            let seq = base_seq.wrapping_add(at as u32);
            let peer_ack = self.ack_at(conn, 1 - dir, times[k]);
            let win = self.window(conn, dir, times[k]);
            let ip = build::tcp_packet(src, dst, seq, peer_ack, psh, win, chunk);
            let range = (start + at, start + at + chunk.len() as u64);
            for &(r, delay) in &shape.retransmit {
                if r == k {
                    let idx = self.push(times[k] + delay, ip.clone(), true);
                    logged.push((range.0, range.1, idx));
                    // A lost original: the receiver has the send only with this copy.
                    if shape.drop.contains(&k) || shape.lost.contains(&k) {
                        last = last.max(times[k] + delay);
                    }
                }
            }
            let written = !shape.drop.contains(&k);
            let idx = self.push(times[k], ip, written);
            if written {
                logged.push((range.0, range.1, idx));
            }
            last = last.max(times[k]);
            at += chunk.len() as u64;
            if let Some((z, stall)) = shape.zero_window.filter(|&(z, _)| z == k) {
                let acked = base_seq.wrapping_add(at as u32);
                self.zero_window(times[z], stall, (conn, dir), (acked, peer_ack));
            }
        }
        let c = &mut self.conns[conn];
        c.logs[dir].segments.extend(logged);
        c.seq[dir] = base_seq.wrapping_add(at as u32);
        c.offset[dir] += at;
        c.busy_until[dir] = last + shape.segment_gap_ns;
        let ack = TcpFlags::ACK;
        let ack_seq = c.seq[1 - dir];
        let acked = c.seq[dir];
        let win = self.window(conn, 1 - dir, last + ack_delay_ns);
        self.push(
            last + ack_delay_ns,
            build::tcp_packet(dst, src, ack_seq, acked, ack, win, b""),
            true,
        );
        let mut placements = Vec::with_capacity(messages.len());
        let mut from = start;
        for m in messages {
            placements.push(Placement {
                conn,
                dir,
                start: from,
                end: from + m.len() as u64,
            });
            from += m.len() as u64;
        }
        (placements, last)
    }

    /// What a segment sent at `t` acknowledges of direction `dir`: everything sent on
    /// it up to the first byte still on its way at `t` (a large send spread over
    /// time, or a retransmission to come). An acknowledgement of bytes the capture has
    /// not shown yet would tell the observer they were lost.
    fn ack_at(&self, conn: usize, dir: usize, t: UnixNanos) -> u32 {
        let c = &self.conns[conn];
        let base = c.seq[dir].wrapping_sub(c.offset[dir] as u32);
        // Only the last segments can still be in flight.
        let pending = c.logs[dir]
            .segments
            .iter()
            .rev()
            .take(IN_FLIGHT_SEGMENTS)
            .filter(|&&(_, _, idx)| self.packets[idx].ts > t)
            .map(|&(s, _, _)| s)
            .min();
        base.wrapping_add(pending.unwrap_or(c.offset[dir]) as u32)
    }

    /// What direction `dir` of `conn` advertises at `t`: its window is shut, or open.
    fn window(&self, conn: usize, dir: usize, t: UnixNanos) -> u16 {
        let (from, until) = self.conns[conn].shut[dir];
        if (from..until).contains(&t) {
            0
        } else {
            65535
        }
    }

    /// The receiver of `dir` shuts its window at `t` + 50 µs, acknowledging up to
    /// `acked`, and opens it `stall` after `t`; the sender (at `seq`) probes with
    /// empty segments one below what was acknowledged, each answered with the window
    /// still shut. Whatever else the receiver sends meanwhile says it shut too.
    fn zero_window(
        &mut self,
        t: UnixNanos,
        stall: u64,
        (conn, dir): (usize, usize),
        (acked, seq): (u32, u32),
    ) {
        let (src, dst) = (self.conns[conn].addrs[dir], self.conns[conn].addrs[1 - dir]);
        self.conns[conn].shut[1 - dir] = (t + 50_000, t + stall);
        let ack = TcpFlags::ACK;
        self.push(
            t + 50_000,
            build::tcp_packet(dst, src, seq, acked, ack, 0, b""),
            true,
        );
        let mut probe = t + ZERO_WINDOW_PROBE_NS;
        while probe < t + stall {
            let p = build::tcp_packet(src, dst, acked.wrapping_sub(1), seq, ack, 65535, b"");
            self.push(probe, p, true);
            self.push(
                probe + 50_000,
                build::tcp_packet(dst, src, seq, acked, ack, 0, b""),
                true,
            );
            probe += ZERO_WINDOW_PROBE_NS;
        }
        self.push(
            t + stall,
            build::tcp_packet(dst, src, seq, acked, ack, 65535, b""),
            true,
        );
    }

    /// Resets a connection: an RST from direction `dir`'s sender.
    pub fn reset(&mut self, t: UnixNanos, conn: usize, dir: usize) {
        let c = &self.conns[conn];
        let (src, dst) = (c.addrs[dir], c.addrs[1 - dir]);
        let (seq, ack) = (c.seq[dir], c.seq[1 - dir]);
        let rst = TcpFlags {
            rst: true,
            ..TcpFlags::ACK
        };
        self.push(t, build::tcp_packet(src, dst, seq, ack, rst, 0, b""), true);
    }

    /// Closes a connection with FIN from the client then the server; returns when
    /// the first FIN went.
    pub fn close(&mut self, t: UnixNanos, conn: usize) -> UnixNanos {
        let c = &self.conns[conn];
        let t = t.max(c.busy_until[0]).max(c.busy_until[1]);
        let (a, b) = (c.addrs[0], c.addrs[1]);
        let (sa, sb) = (c.seq[0], c.seq[1]);
        let fin = TcpFlags::FIN_ACK;
        let ack = TcpFlags::ACK;
        self.push(t, build::tcp_packet(a, b, sa, sb, fin, 65535, b""), true);
        self.push(
            t + 100_000,
            build::tcp_packet(b, a, sb, sa.wrapping_add(1), fin, 65535, b""),
            true,
        );
        self.push(
            t + 200_000,
            build::tcp_packet(
                a,
                b,
                sa.wrapping_add(1),
                sb.wrapping_add(1),
                ack,
                65535,
                b"",
            ),
            true,
        );
        t
    }

    /// Sends one UDP datagram, fragmented to `mtu` when larger.
    pub fn datagram(
        &mut self,
        t: UnixNanos,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        mtu: usize,
    ) {
        let ip = build::udp_packet(src, dst, payload);
        if ip.len() > mtu {
            for (k, frag) in build::fragment(&ip, mtu).into_iter().enumerate() {
                self.push(t + k as u64 * 10_000, frag, true);
            }
        } else {
            self.push(t, ip, true);
        }
    }

    /// When a message was first and last seen in the capture: the minimum and the
    /// maximum, over its bytes, of the time each byte was first written. `None` when
    /// some byte of it never reached the capture (or lies before `capture_start`).
    pub fn seen(&self, p: Placement, capture_start: UnixNanos) -> Option<(UnixNanos, UnixNanos)> {
        let log = &self.conns[p.conn].logs[p.dir];
        let mut first_seen: Vec<Option<UnixNanos>> = vec![None; (p.end - p.start) as usize];
        for &(s, e, idx) in &log.segments {
            let ts = self.packets[idx].ts;
            if e <= p.start || s >= p.end || ts < capture_start {
                continue;
            }
            for off in s.max(p.start)..e.min(p.end) {
                let slot = &mut first_seen[(off - p.start) as usize];
                *slot = Some(slot.map_or(ts, |v: UnixNanos| v.min(ts)));
            }
        }
        let mut lo = UnixNanos::MAX;
        let mut hi = 0;
        for v in first_seen {
            let v = v?;
            lo = lo.min(v);
            hi = hi.max(v);
        }
        Some((lo, hi))
    }

    /// Timestamp of the last packet the capture holds.
    pub fn last_written(&self, capture_start: UnixNanos) -> UnixNanos {
        self.packets
            .iter()
            .filter(|p| p.written && p.ts >= capture_start)
            .map(|p| p.ts)
            .max()
            .unwrap_or(0)
    }

    /// Writes the captured packets in time order (ties keep their creation order).
    pub fn write<W: std::io::Write>(
        &self,
        w: W,
        link: LinkVariant,
        format: WriteFormat,
        capture_start: UnixNanos,
    ) -> std::io::Result<W> {
        let mut order: Vec<usize> = (0..self.packets.len())
            .filter(|&i| self.packets[i].written && self.packets[i].ts >= capture_start)
            .collect();
        order.sort_by_key(|&i| (self.packets[i].ts, i));
        let (link_type, _) = build::frame(link, &[0x45]);
        let mut writer = CaptureWriter::new(w, format, link_type)?;
        for i in order {
            let p = &self.packets[i];
            let (_, frame) = build::frame(link, &p.ip);
            writer.write_frame(0, p.ts, &frame, frame.len() as u32)?;
        }
        writer.finish()
    }
}
