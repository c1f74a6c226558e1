//! TCP connections: the flow table, per-direction reassembly, and the caps that keep
//! memory bounded whatever the traffic (a SYN flood, a stalled flow, a capture that
//! dropped half its packets).
//!
//! The table knows nothing of JXTA. It hands each direction's byte stream, with the
//! first-seen time of every byte, to a [`FlowHandler`], which owns the per-flow
//! application state (`runtime` plugs the JXTA stream parsers in here).
//!
//! Over 600 lines with its tests (caps, idle expiry and eviction of the flow table).

pub mod reassembly;

use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use reassembly::{Delivery, Reassembler, ReassemblyStats, SpareBuffers};

use crate::packet::Checksum;
use crate::UnixNanos;

/// Which way a segment travels, relative to the side that opened the connection
/// (or, for a flow whose start was not captured, the side seen first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// From the initiator (client) to the responder.
    Forward = 0,
    Reverse = 1,
}

impl Dir {
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn other(self) -> Dir {
        match self {
            Dir::Forward => Dir::Reverse,
            Dir::Reverse => Dir::Forward,
        }
    }
}

/// What a handler learns about a flow when it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    pub id: u64,
    /// Address of the side that sends in [`Dir::Forward`].
    pub initiator: FlowAddr,
    pub responder: FlowAddr,
    /// The connection's opening was captured (a SYN); otherwise it began mid-stream.
    pub saw_syn: bool,
    pub first_seen: UnixNanos,
}

impl FlowInfo {
    pub fn sender(&self, dir: Dir) -> SocketAddr {
        match dir {
            Dir::Forward => self.initiator.socket(),
            Dir::Reverse => self.responder.socket(),
        }
    }
}

/// A flow's address in 20 bytes: a `SocketAddr` is 32 (an IPv6 one carries a flow
/// label and a scope beside its address), and two of them in each of 100,000 flows put
/// a flow at 664 bytes, which jemalloc rounds up to 768; at 640 it takes 640.
///
/// Keeps the IP address and the port only. The packet layer makes every address with
/// `SocketAddr::new` (flow label and scope zero), so nothing the table sees is lost;
/// an address with either set compares equal to the same one without them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowAddr {
    /// An IPv4 address in the first four bytes, the rest zero.
    ip: [u8; 16],
    port: u16,
    v6: bool,
}

impl FlowAddr {
    pub fn socket(self) -> SocketAddr {
        let ip = if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            let [a, b, c, d, ..] = self.ip;
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        };
        SocketAddr::new(ip, self.port)
    }
}

impl From<SocketAddr> for FlowAddr {
    /// Each variant made whole at once: an array zeroed and then partly overwritten
    /// went through the stack twice, twice a segment.
    #[inline]
    fn from(a: SocketAddr) -> Self {
        match a {
            SocketAddr::V4(v4) => FlowAddr {
                ip: u128::from(u32::from_le_bytes(v4.ip().octets())).to_le_bytes(),
                port: v4.port(),
                v6: false,
            },
            SocketAddr::V6(v6) => FlowAddr {
                ip: v6.ip().octets(),
                port: v6.port(),
                v6: true,
            },
        }
    }
}

impl FlowAddr {
    /// The derived order's key (address bytes, then port, then family) in two words:
    /// the derived `Ord` compared the 16 bytes one by one (~50 instructions). Asked
    /// only when two ends' ports are equal ([`FlowKey`]'s order compares ports first).
    fn rank(&self) -> (u128, u32) {
        (
            u128::from_be_bytes(self.ip),
            u32::from(self.port) << 1 | u32::from(self.v6),
        )
    }
}

impl Ord for FlowAddr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for FlowAddr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for FlowAddr {
    // Two words instead of a length-prefixed slice and two more fields: this hash runs
    // for every segment.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.ip));
        state.write_u32(u32::from(self.port) | u32::from(self.v6) << 16);
    }
}

/// Why a flow left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Fin,
    Rst,
    Idle,
    /// Evicted to make room under `max_flows`.
    Evicted,
    /// A new SYN reused the 4-tuple.
    Reused,
    EndOfInput,
}

/// What a handler wants of a direction after seeing some of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    Keep,
    /// Nothing useful here (not JXTA): stop buffering this direction.
    Ignore,
}

/// The consumer of reassembled streams. One trait, three moments in a flow's life.
pub trait FlowHandler {
    type State;
    fn open(&mut self, info: &FlowInfo) -> Self::State;
    fn deliver(
        &mut self,
        state: &mut Self::State,
        info: &FlowInfo,
        dir: Dir,
        delivery: Delivery<'_>,
    ) -> Interest;
    /// The flow ends; its state is dropped with the flow right after. Borrowed, not
    /// moved: a JXTA connection's state, most of the flow's box, was copied out of it
    /// to be handed over, a `memcpy` at every connection's end.
    fn close(&mut self, state: &mut Self::State, info: &FlowInfo, reason: CloseReason);
    /// Whether the state may hold bytes whose first-seen time
    /// [`FlowTable::oldest_held`]'s `held` would give: it must be `true` whenever `held`
    /// gives a time. Asked after each segment of the flow, so that the table's pass
    /// looks only at the flows that may hold something. `true` (every flow looked at)
    /// unless a handler says better.
    fn holds(&self, _state: &Self::State) -> bool {
        true
    }
    /// A segment of `dir` went through reassembly (data or not), `retransmitted` of its
    /// bytes already delivered: what dates a retransmission, and the windows and
    /// FIN/RST flags a transaction's causes read (see `transaction::cause`).
    fn segment_seen(
        &mut self,
        _state: &mut Self::State,
        _dir: Dir,
        _seg: &TcpSegment<'_>,
        _retransmitted: u64,
    ) {
    }
}

/// Out-of-order bytes buffered per direction unless told otherwise (`--max-flow-buffer`).
pub const DEFAULT_MAX_FLOW_BUFFER: usize = 4 << 20;
/// Out-of-order bytes buffered over all flows unless told otherwise (`--max-total-buffer`).
pub const DEFAULT_MAX_TOTAL_BUFFER: usize = 256 << 20;
/// Flows tracked at once unless told otherwise (`--max-flows`).
pub const DEFAULT_MAX_FLOWS: usize = 100_000;
/// Capture-time silence that closes a flow unless told otherwise (`--idle-timeout`).
pub const DEFAULT_IDLE_TIMEOUT_NS: u64 = 300 * 1_000_000_000;

/// Limits; every one of them, when hit, is counted in [`FlowStats`].
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// Out-of-order bytes buffered per direction before holes are skipped.
    pub max_flow_buffer: usize,
    /// Out-of-order bytes buffered across all flows.
    pub max_total_buffer: usize,
    /// Flows tracked at once; the least recently active are evicted beyond it.
    pub max_flows: usize,
    /// A flow silent for this long (capture time) is closed.
    pub idle_timeout_ns: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flow_buffer: DEFAULT_MAX_FLOW_BUFFER,
            max_total_buffer: DEFAULT_MAX_TOTAL_BUFFER,
            max_flows: DEFAULT_MAX_FLOWS,
            idle_timeout_ns: DEFAULT_IDLE_TIMEOUT_NS,
        }
    }
}

use crate::counters::{
    alone, by,
    families::{CHECKSUM_OFFLOADED_DIRECTIONS, PACKETS_DROPPED},
};

crate::counters! {
    /// What the flow table did. The metric labels are the reasons of
    /// `observer_packets_dropped_total` (what a host drops). The maxima merge as the sum
    /// of the shards' maxima, an upper bound.
    #[derive(Debug, Default, Clone, serde::Serialize)]
    pub struct FlowStats {
        flows: "TCP flows", metric: None, anomaly: false, merge: Sum;
        flows_with_syn: "TCP flows seen from their SYN", metric: None, anomaly: false, merge: Sum;
        flows_mid_stream: "TCP flows joined mid-stream", metric: None, anomaly: false, merge: Sum;
        max_active_flows: "most TCP flows at once", metric: None, anomaly: false, merge: Sum;
        closed_fin: "TCP flows closed by FIN", metric: None, anomaly: false, merge: Sum;
        closed_rst: "TCP flows closed by RST", metric: None, anomaly: false, merge: Sum;
        closed_idle: "TCP flows closed idle", metric: None, anomaly: false, merge: Sum;
        evicted_flow_cap: "TCP flows evicted (flow cap)", metric: None, anomaly: true, merge: Sum, decoding: 16;
        port_reuse: "TCP port reuses", metric: None, anomaly: false, merge: Sum;
        closed_end_of_input: "TCP flows open at the end of input", metric: None, anomaly: false, merge: Sum;
        ignored_directions: "TCP directions ignored (not JXTA)", metric: None, anomaly: false, merge: Sum;
        max_buffered_bytes: "most bytes buffered", metric: None, anomaly: false, merge: Sum;
        /// Segments dropped for a bad TCP checksum (in a direction not offloaded).
        bad_tcp_checksum: "bad TCP checksum (dropped)", metric: by(&PACKETS_DROPPED, "bad_tcp_checksum"), anomaly: true, merge: Sum, decoding: 8;
        /// Segments carrying data without ACK outside the handshake: a host drops them.
        data_without_ack: "TCP data without ACK (dropped)", metric: by(&PACKETS_DROPPED, "data_without_ack"), anomaly: true, merge: Sum, decoding: 9;
        /// Flow directions whose checksums are offloaded (zero or the pseudo-header sum:
        /// filled in after the capture point, on the sender or past a Linux gateway), so
        /// not verified.
        checksum_offloaded_directions: "TCP directions with offloaded checksums", metric: alone(&CHECKSUM_OFFLOADED_DIRECTIONS), anomaly: false, merge: Sum;
    }
    nested {
        reassembly: ReassemblyStats,
    }
}

struct Flow<S> {
    info: FlowInfo,
    dirs: [Reassembler; 2],
    last_seen: UnixNanos,
    rst: bool,
    /// Per direction: checksums seen offloaded, so bad ones are not held against it.
    offloaded: [bool; 2],
    /// In the table's `holding` set: reassembly or the handler may hold bytes.
    holding: bool,
    state: S,
}

/// Canonical 4-tuple: the same key for both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FlowKey(FlowAddr, FlowAddr);

impl FlowKey {
    /// The two ends in one order whichever of them sent the segment. Any total order
    /// will do, as the key is only hashed and compared: the ports first decide nearly
    /// every pair (a client's ephemeral port, the server's) in one comparison, where
    /// the derived order compared the addresses' 16 bytes as words first.
    fn new(a: FlowAddr, b: FlowAddr) -> Self {
        let (first, second) = Self::order(&a, &b);
        FlowKey(*first, *second)
    }

    /// `a` and `b` in the key's order, borrowed.
    fn order<'a>(a: &'a FlowAddr, b: &'a FlowAddr) -> (&'a FlowAddr, &'a FlowAddr) {
        let a_first = if a.port != b.port {
            a.port < b.port
        } else {
            a <= b
        };
        if a_first {
            (a, b)
        } else {
            (b, a)
        }
    }
}

impl<S> Flow<S> {
    fn key(&self) -> FlowKey {
        FlowKey::new(self.info.initiator, self.info.responder)
    }

    fn is(&self, key: &FlowKey) -> bool {
        let (i, r) = (self.info.initiator, self.info.responder);
        (i == key.0 && r == key.1) || (i == key.1 && r == key.0)
    }

    /// Which way a segment from `src` to `dst` travels, if it is this flow's: what
    /// [`Self::is`] and then the initiator's comparison with `src` answered, one
    /// address comparison fewer for every frame.
    fn dir_of(&self, src: FlowAddr, dst: FlowAddr) -> Option<Dir> {
        let (i, r) = (self.info.initiator, self.info.responder);
        if i == src && r == dst {
            Some(Dir::Forward)
        } else if i == dst && r == src {
            Some(Dir::Reverse)
        } else {
            None
        }
    }
}

/// The flow of a segment from `src` to `dst` (hashed `hash`) in `flows`, and which way
/// the segment travels in it. Of the table's flows only, so that the rest of the table
/// can be changed while the flow is. Inline: out of line, its call cost more than the
/// comparison it saves (+0.8 M instructions on `jxta-0.1g`).
#[inline]
fn find_dir<S>(
    flows: &mut hashbrown::HashTable<Box<Flow<S>>>,
    hash: u64,
    src: FlowAddr,
    dst: FlowAddr,
) -> Option<(&mut Flow<S>, Dir)> {
    let mut dir = Dir::Forward;
    let flow = flows.find_mut(hash, |f| match f.dir_of(src, dst) {
        Some(d) => {
            dir = d;
            true
        }
        None => false,
    })?;
    Some((&mut **flow, dir))
}

/// One TCP segment as the table needs it (the packet layer's fields, borrowed).
#[derive(Clone, Copy, Debug)]
pub struct TcpSegment<'a> {
    pub ts: UnixNanos,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    /// The raw window field (unscaled: zero is zero at any scale).
    pub window: u16,
    pub payload: &'a [u8],
    pub checksum: Checksum,
    /// The capture interface it was seen on ([`crate::packet::Segment::interface`]).
    pub interface: u32,
}

impl TcpSegment<'_> {
    /// The TCP segment a decoded packet carries, if it carries one.
    pub fn from_packet<'s>(seg: &'s crate::packet::Segment<'_>) -> Option<TcpSegment<'s>> {
        let crate::packet::L4::Tcp {
            seq,
            ack,
            flags,
            window,
            payload,
        } = &seg.l4
        else {
            return None;
        };
        let header = crate::packet::TcpHeader {
            seq: *seq,
            ack: *ack,
            flags: *flags,
            window: *window,
        };
        // Its bytes were first seen with its earliest fragment, if it had several.
        Some(TcpSegment::of_header(
            seg.first_ts,
            seg.src,
            seg.dst,
            header,
            payload,
            seg.checksum,
            seg.interface,
        ))
    }
}

impl<'a> TcpSegment<'a> {
    /// The segment of a TCP header's fields: the one mapping of them, for a decoded
    /// packet's segment and for the decoder's plain-frame shortcut alike.
    #[inline(always)]
    pub fn of_header(
        ts: UnixNanos,
        src: SocketAddr,
        dst: SocketAddr,
        h: crate::packet::TcpHeader,
        payload: &'a [u8],
        checksum: Checksum,
        interface: u32,
    ) -> Self {
        TcpSegment {
            ts,
            src,
            dst,
            seq: h.seq,
            ack: h.flags.ack.then_some(h.ack),
            syn: h.flags.syn,
            fin: h.flags.fin,
            rst: h.flags.rst,
            window: h.window,
            payload,
            checksum,
            interface,
        }
    }
}

pub struct FlowTable<S> {
    cfg: FlowConfig,
    /// Boxed: a flow's state is most of a kilobyte, and the table's slots (a quarter
    /// to a half of them empty, twice that while it grows) would otherwise each cost
    /// one. Found by the 4-tuple its [`FlowInfo`] holds: a slot is the pointer alone,
    /// not the addresses again beside it (72 bytes a slot, 9.6 MB at 100,000 flows).
    flows: hashbrown::HashTable<Box<Flow<S>>>,
    hasher: foldhash::fast::RandomState,
    next_id: u64,
    buffered: usize,
    last_sweep: UnixNanos,
    /// The flows that may hold bytes (out of order in reassembly, or part of a message
    /// in the handler's parsers), kept after each segment: [`FlowTable::oldest_held`]
    /// looks at these, not at every flow. With 100,000 connections between messages
    /// this is nearly empty, where the pass over all of them, a cache miss or three per
    /// flow, was 3-4 % of `peers10k-1g`'s time.
    holding: hashbrown::HashSet<FlowKey, foldhash::fast::RandomState>,
    /// The directions' emptied compare buffers, for the next data segment.
    spare: SpareBuffers,
    pub stats: FlowStats,
}

impl<S> FlowTable<S> {
    pub fn new(cfg: FlowConfig) -> Self {
        FlowTable {
            cfg,
            flows: hashbrown::HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            next_id: 0,
            buffered: 0,
            last_sweep: 0,
            holding: hashbrown::HashSet::default(),
            spare: SpareBuffers::default(),
            stats: FlowStats::default(),
        }
    }

    pub fn active_flows(&self) -> usize {
        self.flows.len()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// The number the next new flow gets (numbers need only be increasing).
    pub fn set_next_id(&mut self, id: u64) {
        self.next_id = self.next_id.max(id);
    }

    fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// [`Self::hash`] of `FlowKey::new(a, b)`, the key's derived `Hash` (its two ends
    /// in order), without making the key: its 40 bytes were written out at every frame
    /// for the few segments that need it.
    fn hash_ends(&self, a: &FlowAddr, b: &FlowAddr) -> u64 {
        let (first, second) = FlowKey::order(a, b);
        let mut h = self.hasher.build_hasher();
        first.hash(&mut h);
        second.hash(&mut h);
        h.finish()
    }

    fn get(&self, hash: u64, key: &FlowKey) -> Option<&Flow<S>> {
        self.flows.find(hash, |f| f.is(key)).map(|f| &**f)
    }

    /// Capture time reached `now` without a segment for this table: idle flows are
    /// closed as a segment would have closed them.
    pub fn tick<H: FlowHandler<State = S>>(&mut self, now: UnixNanos, handler: &mut H) {
        self.sweep_idle(now, handler);
    }

    /// Feeds one segment through its flow's reassembler into the handler.
    pub fn segment<H: FlowHandler<State = S>>(&mut self, seg: &TcpSegment<'_>, handler: &mut H) {
        self.sweep_idle(seg.ts, handler);
        let (src, dst) = (FlowAddr::from(seg.src), FlowAddr::from(seg.dst));
        let hash = self.hash_ends(&src, &dst);
        if !self.host_accepts(hash, src, dst, seg) {
            return;
        }

        // A fresh SYN on a 4-tuple already in use is a new connection (port reuse).
        if seg.syn && seg.ack.is_none() {
            let key = FlowKey::new(src, dst);
            if let Some(flow) = self.get(hash, &key) {
                let fwd = &flow.dirs[Dir::Forward.index()];
                if flow.info.initiator != src || fwd.delivered() > 0 || flow.rst || fwd.fin_seen() {
                    self.stats.port_reuse += 1;
                    self.close(key, CloseReason::Reused, handler);
                }
            }
        }

        // One lookup for a segment of a known flow (every frame but a connection's
        // first): finding it, then finding it again to change it, was ~90 instructions
        // of every frame.
        let (flow, dir) = match find_dir(&mut self.flows, hash, src, dst) {
            Some(found) => found,
            None => {
                if !self.open(hash, src, dst, seg, handler) {
                    return;
                }
                let Some(found) = find_dir(&mut self.flows, hash, src, dst) else {
                    return;
                };
                found
            }
        };
        // After `open`, whose evictions may have freed buffered bytes.
        let total_room = self.cfg.max_total_buffer.saturating_sub(self.buffered);
        let flow_cap = self.cfg.max_flow_buffer;
        flow.last_seen = seg.ts;
        if seg.checksum == Checksum::Offloaded && !flow.offloaded[dir.index()] {
            flow.offloaded[dir.index()] = true;
            self.stats.checksum_offloaded_directions += 1;
            tracing::debug!(
                "TCP checksums from {} offloaded (filled in after capture): not verified",
                seg.src
            );
        }
        let Flow {
            info, dirs, state, ..
        } = &mut *flow;
        let [fwd, rev] = dirs;
        let (this, other) = match dir {
            Dir::Forward => (fwd, rev),
            Dir::Reverse => (rev, fwd),
        };
        let stats = &mut self.stats;
        let retransmitted_before = stats.reassembly.retransmitted_bytes;
        let mut delta: isize = 0;
        let mut ignore_this = false;
        let mut ignore_other = false;
        if let Some(ack) = seg.ack {
            // Acknowledgements speak about the *other* direction's bytes.
            delta += other.acked(ack, &mut stats.reassembly, &mut self.spare, &mut |d| {
                if handler.deliver(state, info, dir.other(), d) == Interest::Ignore {
                    ignore_other = true;
                }
            });
        }
        delta += this.segment(
            seg.seq,
            seg.syn,
            seg.fin,
            seg.payload,
            seg.ts,
            flow_cap,
            total_room,
            &mut stats.reassembly,
            &mut self.spare,
            &mut |d| {
                if handler.deliver(state, info, dir, d) == Interest::Ignore {
                    ignore_this = true;
                }
            },
        );
        let retransmitted = stats.reassembly.retransmitted_bytes - retransmitted_before;
        handler.segment_seen(state, dir, seg, retransmitted);
        if ignore_this {
            delta -= this.ignore() as isize;
            stats.ignored_directions += 1;
        }
        if ignore_other {
            delta -= other.ignore() as isize;
            stats.ignored_directions += 1;
        }
        // Most segments change nothing buffered (in order, or no data), and the
        // maximum is only ever raised here.
        if delta != 0 {
            self.buffered = (self.buffered as isize + delta).max(0) as usize;
            self.stats.max_buffered_bytes = self.stats.max_buffered_bytes.max(self.buffered as u64);
        }
        let holding = flow.dirs.iter().any(Reassembler::holds) || handler.holds(&flow.state);
        if holding != flow.holding {
            flow.holding = holding;
            if holding {
                self.holding.insert(FlowKey::new(src, dst));
            } else {
                self.holding.remove(&FlowKey::new(src, dst));
            }
        }

        let done = if seg.rst {
            flow.rst = true;
            Some(CloseReason::Rst)
        } else if flow
            .dirs
            .iter()
            .all(|d| d.fin_seen() && d.pending_bytes() == 0)
        {
            Some(CloseReason::Fin)
        } else {
            None
        };
        if let Some(reason) = done {
            self.close(FlowKey::new(src, dst), reason, handler);
        }
    }

    /// Makes a new flow for `seg` (from `src` to `dst`, hashed `hash`) and says so,
    /// unless it is one that opens none: only a SYN or data opens a flow, as the last ACK of a closed
    /// connection, or a stray RST, must not start a phantom one.
    fn open<H: FlowHandler<State = S>>(
        &mut self,
        hash: u64,
        src: FlowAddr,
        dst: FlowAddr,
        seg: &TcpSegment<'_>,
        handler: &mut H,
    ) -> bool {
        if seg.rst || (!seg.syn && seg.payload.is_empty() && !seg.fin) {
            return false;
        }
        if self.flows.len() >= self.cfg.max_flows {
            self.evict_oldest(handler);
        }
        // A SYN-ACK seen first means the SYN was missed: its sender is the responder.
        let (initiator, responder) = if seg.syn && seg.ack.is_some() {
            (dst, src)
        } else {
            (src, dst)
        };
        let info = FlowInfo {
            id: self.next_id,
            initiator,
            responder,
            saw_syn: seg.syn,
            first_seen: seg.ts,
        };
        self.next_id += 1;
        self.stats.flows += 1;
        if seg.syn {
            self.stats.flows_with_syn += 1;
        } else {
            self.stats.flows_mid_stream += 1;
        }
        let state = handler.open(&info);
        let flow = Box::new(Flow {
            info,
            dirs: [Reassembler::new(), Reassembler::new()],
            last_seen: seg.ts,
            rst: false,
            offloaded: [false; 2],
            holding: false,
            state,
        });
        let hasher = &self.hasher;
        self.flows
            .insert_unique(hash, flow, |f| hasher.hash_one(f.key()));
        self.stats.max_active_flows = self.stats.max_active_flows.max(self.flows.len() as u64);
        true
    }

    /// What the receiving host would accept: a segment it drops (bad checksum in a
    /// direction whose checksums are not offloaded, data without ACK outside the
    /// handshake) must not reach reassembly, where its bytes would win over the real
    /// ones sent after it. Counts what it refuses.
    fn host_accepts(
        &mut self,
        hash: u64,
        src: FlowAddr,
        dst: FlowAddr,
        seg: &TcpSegment<'_>,
    ) -> bool {
        // RFC 9293 3.10.7.4: past SYN-SENT, a segment without ACK is dropped. A SYN
        // may carry data (TCP Fast Open); an RST is acted on without ACK. The ACK
        // first: all but a connection's first segment carry one, so it decides alone
        // (asked last, ~17 instructions of every frame went to this line).
        if seg.ack.is_none() && !seg.payload.is_empty() && !seg.syn && !seg.rst {
            self.stats.data_without_ack += 1;
            return false;
        }
        if seg.checksum != Checksum::Bad {
            return true;
        }
        let offloaded = self.get(hash, &FlowKey::new(src, dst)).is_some_and(|f| {
            let dir = if src == f.info.initiator { 0 } else { 1 };
            f.offloaded[dir]
        });
        if !offloaded {
            self.stats.bad_tcp_checksum += 1;
        }
        offloaded
    }

    /// Earliest first-seen time of any byte still held, by reassembly or, through
    /// `held`, by a flow's consumer: no message completed later can start before it.
    /// A pass over the flows that may hold something (`holding`): `held` gives a time
    /// only where the handler's [`FlowHandler::holds`] said so.
    pub fn oldest_held(&self, held: impl Fn(&S) -> Option<UnixNanos>) -> Option<UnixNanos> {
        let oldest = |f: &Flow<S>| {
            [
                f.dirs[0].oldest_pending(),
                f.dirs[1].oldest_pending(),
                held(&f.state),
            ]
            .into_iter()
            .flatten()
            .min()
        };
        let found = self
            .holding
            .iter()
            .filter_map(|key| self.get(self.hash(key), key))
            .filter_map(oldest)
            .min();
        // Every flow, in the builds tests run: a handler whose `holds` misses what
        // `held` gives would be found here.
        debug_assert_eq!(
            found,
            self.flows.iter().filter_map(|f| oldest(f)).min(),
            "a flow holds bytes outside the holding set"
        );
        found
    }

    /// Closes every flow (end of input): buffered data behind holes is delivered.
    pub fn finish<H: FlowHandler<State = S>>(&mut self, handler: &mut H) {
        let mut keys: Vec<(u64, FlowKey)> =
            self.flows.iter().map(|f| (f.info.id, f.key())).collect();
        // Deterministic order: flows close in the order they opened.
        keys.sort_unstable_by_key(|(id, _)| *id);
        for (_, key) in keys {
            self.close(key, CloseReason::EndOfInput, handler);
        }
    }

    fn close<H: FlowHandler<State = S>>(
        &mut self,
        key: FlowKey,
        reason: CloseReason,
        handler: &mut H,
    ) {
        let hash = self.hash(&key);
        let Ok(entry) = self.flows.find_entry(hash, |f| f.is(&key)) else {
            return;
        };
        // Kept in its box: moved out whole, its 512 bytes were copied to the stack
        // for the few fields read here.
        let mut flow = entry.remove().0;
        if flow.holding {
            self.holding.remove(&key);
        }
        match reason {
            CloseReason::Fin => self.stats.closed_fin += 1,
            CloseReason::Rst => self.stats.closed_rst += 1,
            CloseReason::Idle => self.stats.closed_idle += 1,
            CloseReason::Evicted => self.stats.evicted_flow_cap += 1,
            CloseReason::EndOfInput => self.stats.closed_end_of_input += 1,
            CloseReason::Reused => {}
        }
        for dir in [Dir::Forward, Dir::Reverse] {
            let info = &flow.info;
            let state = &mut flow.state;
            let freed = flow.dirs[dir.index()].close(
                &mut self.stats.reassembly,
                &mut self.spare,
                &mut |d| {
                    handler.deliver(state, info, dir, d);
                },
            );
            self.buffered = (self.buffered as isize + freed).max(0) as usize;
        }
        handler.close(&mut flow.state, &flow.info, reason);
    }

    /// Closes flows idle for longer than the timeout. Runs at most a few times per
    /// timeout period so that the scan's cost is spread over many packets. Inline for
    /// the test every segment makes (a call for it was ~26 instructions of every frame).
    #[inline]
    fn sweep_idle<H: FlowHandler<State = S>>(&mut self, now: UnixNanos, handler: &mut H) {
        let period = (self.cfg.idle_timeout_ns / 4).max(1);
        if now >= self.last_sweep.saturating_add(period) {
            self.sweep(now, handler);
        }
    }

    fn sweep<H: FlowHandler<State = S>>(&mut self, now: UnixNanos, handler: &mut H) {
        self.last_sweep = now;
        let limit = now.saturating_sub(self.cfg.idle_timeout_ns);
        let mut idle: Vec<(u64, FlowKey)> = self
            .flows
            .iter()
            .filter(|f| f.last_seen < limit)
            .map(|f| (f.info.id, f.key()))
            .collect();
        idle.sort_unstable_by_key(|(id, _)| *id);
        for (_, key) in idle {
            self.close(key, CloseReason::Idle, handler);
        }
    }

    /// Evicts the least recently active eighth of the table at once, so that a flood
    /// of new flows costs one scan per many insertions rather than one per insertion.
    fn evict_oldest<H: FlowHandler<State = S>>(&mut self, handler: &mut H) {
        let mut by_age: Vec<(UnixNanos, u64, FlowKey)> = self
            .flows
            .iter()
            .map(|f| (f.last_seen, f.info.id, f.key()))
            .collect();
        let n = (by_age.len() / 8).max(1);
        if n < by_age.len() {
            by_age.select_nth_unstable(n);
        }
        by_age.truncate(n);
        by_age.sort_unstable();
        for (_, _, key) in by_age {
            self.close(key, CloseReason::Evicted, handler);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Records every stream as text, with gaps shown as '?', and close reasons.
    #[derive(Default)]
    struct Recorder {
        streams: HashMap<(u64, usize), String>,
        closed: Vec<(u64, CloseReason)>,
        ignore_prefix: Option<&'static str>,
    }

    impl FlowHandler for Recorder {
        type State = u64;
        fn open(&mut self, info: &FlowInfo) -> u64 {
            info.id
        }
        fn deliver(&mut self, id: &mut u64, _: &FlowInfo, dir: Dir, d: Delivery<'_>) -> Interest {
            let s = self.streams.entry((*id, dir.index())).or_default();
            match d {
                Delivery::Data { data, .. } => s.push_str(&String::from_utf8_lossy(data)),
                Delivery::Gap { len } => s.extend((0..len).map(|_| '?')),
            }
            match self.ignore_prefix {
                Some(p) if s.starts_with(p) => Interest::Ignore,
                _ => Interest::Keep,
            }
        }
        fn close(&mut self, id: &mut u64, _: &FlowInfo, reason: CloseReason) {
            self.closed.push((*id, reason));
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn seg<'a>(
        ts: u64,
        src: &str,
        dst: &str,
        seq: u32,
        ack: Option<u32>,
        flags: &str,
        payload: &'a [u8],
    ) -> TcpSegment<'a> {
        TcpSegment {
            ts,
            src: addr(src),
            dst: addr(dst),
            seq,
            ack,
            syn: flags.contains('S'),
            fin: flags.contains('F'),
            rst: flags.contains('R'),
            window: if flags.contains('Z') { 0 } else { 65535 },
            payload,
            checksum: Checksum::Unchecked,
            interface: 0,
        }
    }

    const C: &str = "10.0.0.1:40000";
    const S: &str = "10.0.0.2:9701";

    #[test]
    fn both_directions_and_fin_close() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut h = Recorder::default();
        t.segment(&seg(1, C, S, 100, None, "S", b""), &mut h);
        t.segment(&seg(2, S, C, 500, Some(101), "S", b""), &mut h);
        t.segment(&seg(3, C, S, 101, Some(501), "", b"ping"), &mut h);
        t.segment(&seg(4, S, C, 501, Some(105), "", b"pong"), &mut h);
        t.segment(&seg(5, C, S, 105, Some(505), "F", b""), &mut h);
        assert_eq!(t.active_flows(), 1);
        t.segment(&seg(6, S, C, 505, Some(106), "F", b""), &mut h);
        assert_eq!(t.active_flows(), 0);
        assert_eq!(h.streams[&(0, 0)], "ping");
        assert_eq!(h.streams[&(0, 1)], "pong");
        assert_eq!(h.closed, vec![(0, CloseReason::Fin)]);
        assert_eq!(t.stats.flows_with_syn, 1);
    }

    #[test]
    fn mid_stream_flow_and_ack_gap() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut h = Recorder::default();
        t.segment(&seg(1, S, C, 7000, Some(100), "", b"abc"), &mut h);
        // 3 bytes at 7003 never captured; the client acknowledges past them.
        t.segment(&seg(2, S, C, 7006, Some(100), "", b"ghi"), &mut h);
        t.segment(&seg(3, C, S, 100, Some(7009), "", b""), &mut h);
        assert_eq!(h.streams[&(0, 0)], "abc???ghi");
        assert_eq!(t.stats.flows_mid_stream, 1);
        assert_eq!(t.stats.reassembly.gaps_acked, 1);
    }

    #[test]
    fn port_reuse_starts_a_new_flow() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut h = Recorder::default();
        t.segment(&seg(1, C, S, 100, None, "S", b""), &mut h);
        t.segment(&seg(2, C, S, 101, Some(0), "", b"one"), &mut h);
        t.segment(&seg(3, C, S, 9000, None, "S", b""), &mut h);
        t.segment(&seg(4, C, S, 9001, Some(0), "", b"two"), &mut h);
        assert_eq!(h.streams[&(0, 0)], "one");
        assert_eq!(h.streams[&(1, 0)], "two");
        assert_eq!(t.stats.port_reuse, 1);
        assert_eq!(h.closed, vec![(0, CloseReason::Reused)]);
    }

    #[test]
    fn rst_closes_and_flushes() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut h = Recorder::default();
        t.segment(&seg(1, C, S, 0, Some(0), "", b"ab"), &mut h);
        t.segment(&seg(2, C, S, 4, Some(0), "", b"ef"), &mut h);
        t.segment(&seg(3, S, C, 0, None, "R", b""), &mut h);
        assert_eq!(h.streams[&(0, 0)], "ab??ef");
        assert_eq!(h.closed, vec![(0, CloseReason::Rst)]);
        assert_eq!(t.buffered_bytes(), 0);
    }

    #[test]
    fn idle_flows_evicted_and_flow_cap_bounded() {
        let cfg = FlowConfig {
            max_flows: 64,
            idle_timeout_ns: 1_000,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg);
        let mut h = Recorder::default();
        for i in 0..10_000u32 {
            let src = format!("10.1.{}.{}:{}", (i >> 8) & 255, i & 255, 1024 + (i % 5000));
            t.segment(&seg(1, &src, S, i, None, "S", b""), &mut h);
            assert!(t.active_flows() <= 64);
        }
        assert!(t.stats.evicted_flow_cap > 0);
        // Capture time moves on: all remaining flows go idle.
        t.segment(&seg(10_000, C, S, 1, Some(0), "", b"x"), &mut h);
        assert_eq!(t.active_flows(), 1);
        assert!(t.stats.closed_idle > 0);
    }

    #[test]
    fn total_buffer_cap_is_global() {
        let cfg = FlowConfig {
            max_total_buffer: 100,
            ..FlowConfig::default()
        };
        let mut t = FlowTable::new(cfg);
        let mut h = Recorder::default();
        let mut most = 0;
        for f in 0..20u32 {
            let src = format!("10.2.0.{}:5000", f + 1);
            t.segment(&seg(1, &src, S, 0, Some(0), "", b"a"), &mut h);
            most = most.max(t.buffered_bytes());
            // Out of order data that waits behind a hole.
            t.segment(&seg(2, &src, S, 10, Some(0), "", &[b'x'; 30]), &mut h);
            most = most.max(t.buffered_bytes());
            assert!(t.buffered_bytes() <= 100, "{}", t.buffered_bytes());
        }
        assert!(t.stats.reassembly.gaps_total_cap > 0);
        // Segments that change nothing buffered leave the maximum as it was.
        assert_eq!(t.stats.max_buffered_bytes, most as u64);
    }

    #[test]
    fn segments_a_host_drops_do_not_reach_the_stream() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut h = Recorder::default();
        let with = |mut s: TcpSegment<'static>, c: Checksum| {
            s.checksum = c;
            s
        };
        t.segment(&seg(1, C, S, 100, None, "S", b""), &mut h);
        t.segment(&seg(2, S, C, 500, Some(101), "S", b""), &mut h);
        // Junk at the next sequence number: no ACK, then a bad checksum.
        t.segment(&seg(3, C, S, 101, None, "", b"JUNK"), &mut h);
        let bad = with(seg(4, C, S, 101, Some(501), "", b"junk"), Checksum::Bad);
        t.segment(&bad, &mut h);
        t.segment(
            &with(seg(5, C, S, 101, Some(501), "", b"ping"), Checksum::Valid),
            &mut h,
        );
        assert_eq!(h.streams[&(0, 0)], "ping");
        assert_eq!((t.stats.data_without_ack, t.stats.bad_tcp_checksum), (1, 1));
        assert_eq!(t.stats.reassembly.conflicting_overlap, 0);
        // The other direction was captured on its sender: its checksums are the
        // pseudo-header sum (offloaded), and from then on none is held against it.
        let off = with(seg(6, S, C, 501, Some(105), "", b"po"), Checksum::Offloaded);
        t.segment(&off, &mut h);
        t.segment(
            &with(seg(7, S, C, 503, Some(105), "", b"ng"), Checksum::Bad),
            &mut h,
        );
        assert_eq!(h.streams[&(0, 1)], "pong");
        assert_eq!(t.stats.checksum_offloaded_directions, 1);
        assert_eq!(t.stats.bad_tcp_checksum, 1);
        // A bad checksum opens no flow.
        let stray = with(
            seg(8, "10.0.0.9:1", S, 7, Some(1), "", b"zz"),
            Checksum::Bad,
        );
        t.segment(&stray, &mut h);
        assert_eq!((t.stats.flows, t.stats.bad_tcp_checksum), (1, 2));
    }

    #[test]
    fn ignored_direction_stops_buffering() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut h = Recorder {
            ignore_prefix: Some("GET"),
            ..Recorder::default()
        };
        t.segment(&seg(1, C, S, 0, Some(0), "", b"GET / HTTP/1.1\r\n"), &mut h);
        t.segment(&seg(2, C, S, 100, Some(0), "", b"later"), &mut h);
        assert_eq!(t.buffered_bytes(), 0);
        assert_eq!(t.stats.ignored_directions, 1);
    }

    /// What 100,000 open connections cost inline (peers10k-1g): a field added to a
    /// flow's state should be a choice, not an accident. The bounds are today's sizes;
    /// a flow's is also jemalloc's size class (640, then 768): 8 bytes more cost 128.
    /// Holds a line until its newline: the first-seen time of its first byte.
    struct Lines;

    impl FlowHandler for Lines {
        type State = Option<UnixNanos>;
        fn open(&mut self, _: &FlowInfo) -> Self::State {
            None
        }
        fn deliver(
            &mut self,
            held: &mut Self::State,
            _: &FlowInfo,
            _: Dir,
            d: Delivery<'_>,
        ) -> Interest {
            if let Delivery::Data { data, first_seen } = d {
                match data.iter().rposition(|&b| b == b'\n') {
                    Some(end) if end + 1 == data.len() => *held = None,
                    Some(_) => *held = Some(first_seen),
                    None => *held = held.or(Some(first_seen)),
                }
            }
            Interest::Keep
        }
        fn close(&mut self, _: &mut Self::State, _: &FlowInfo, _: CloseReason) {}
        fn holds(&self, held: &Self::State) -> bool {
            held.is_some()
        }
    }

    /// The oldest held byte comes from the flows that hold something, whether the
    /// handler holds it (a line without its newline) or reassembly (bytes past a hole),
    /// and a flow leaves the set once it holds nothing or closes. (The debug build also
    /// checks each answer against a pass over every flow.)
    #[test]
    fn the_oldest_held_byte_is_found_among_the_flows_that_hold() {
        const C2: &str = "10.0.0.3:40000";
        const C3: &str = "10.0.0.4:40000";
        let mut t = FlowTable::new(FlowConfig::default());
        let mut h = Lines;
        let held = |s: &Option<UnixNanos>| *s;
        t.segment(&seg(1, C, S, 100, None, "S", b""), &mut h);
        t.segment(&seg(2, C, S, 101, Some(1), "", b"done\n"), &mut h);
        assert_eq!(t.oldest_held(held), None);
        assert!(t.holding.is_empty());

        t.segment(&seg(3, C, S, 106, Some(1), "", b"ab"), &mut h);
        assert_eq!(t.oldest_held(held), Some(3));
        // A second flow: 3 bytes at 200 not captured yet, 203.. held by reassembly.
        t.segment(&seg(4, C2, S, 99, None, "S", b""), &mut h);
        t.segment(&seg(5, C2, S, 103, Some(1), "", b"y\n"), &mut h);
        assert_eq!(t.oldest_held(held), Some(3));
        assert_eq!(t.holding.len(), 2);
        t.segment(&seg(6, C, S, 108, Some(1), "", b"c\n"), &mut h);
        assert_eq!(t.oldest_held(held), Some(5));
        assert_eq!(t.holding.len(), 1);
        t.segment(&seg(7, C2, S, 100, Some(1), "", b"xyz"), &mut h);
        assert_eq!(t.oldest_held(held), None);
        assert!(t.holding.is_empty());

        t.segment(&seg(8, C3, S, 500, Some(1), "", b"partial"), &mut h);
        assert_eq!(t.oldest_held(held), Some(8));
        t.segment(&seg(9, C3, S, 507, Some(1), "R", b""), &mut h);
        assert_eq!(t.active_flows(), 2);
        assert_eq!(t.oldest_held(held), None);
        assert!(t.holding.is_empty());
    }

    #[test]
    fn a_jxta_connection_stays_small() {
        // jemalloc's size classes here are 384, 448, 512, 640: one byte over 448 costs
        // 64 per connection (6.4 MB of 100,000).
        let flow = std::mem::size_of::<Flow<crate::jxta::flow::Conn>>();
        assert!(flow <= 448, "a JXTA flow is {flow} bytes");
        assert_eq!(std::mem::size_of::<FlowAddr>(), 20);
        assert!(std::mem::size_of::<FlowInfo>() <= 64);
        // What a direction holds of its bytes behind one pointer.
        assert!(std::mem::size_of::<Reassembler>() <= 32);
        // A slot of the table is the pointer to the flow, nothing beside it.
        assert_eq!(std::mem::size_of::<Box<Flow<()>>>(), 8);
    }

    #[test]
    fn a_flow_address_gives_back_the_socket_address_it_was_made_of() {
        for a in [
            "10.0.0.1:40000",
            "255.255.255.255:65535",
            "0.0.0.0:0",
            "[::ffff:10.0.0.1]:40000",
            "[2001:db8::1]:9701",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:1",
            "[::]:0",
        ] {
            let a = addr(a);
            assert_eq!(FlowAddr::from(a).socket(), a);
            if a.is_ipv4() {
                // Equality and the hash read all 16 bytes: past the address, zeros.
                assert_eq!(FlowAddr::from(a).ip[4..], [0; 12], "{a}");
            }
        }
        // An IPv4 address and the same one mapped into IPv6 are two peers.
        assert_ne!(
            FlowAddr::from(addr("10.0.0.1:1")),
            FlowAddr::from(addr("[::ffff:10.0.0.1]:1"))
        );
        assert_ne!(
            FlowAddr::from(addr("10.0.0.1:1")),
            FlowAddr::from(addr("10.0.0.1:2"))
        );
    }

    proptest::proptest! {
        /// The order of two flow addresses (which side a flow's key puts first) is the
        /// one the derived order gave: address bytes, then port, then family.
        #[test]
        fn flow_addresses_order_by_bytes_then_port_then_family(
            a in proptest::prelude::any::<([u8; 16], u16, bool)>(),
            b in proptest::prelude::any::<([u8; 16], u16, bool)>(),
            same_ip in proptest::bool::ANY,
            same_port in proptest::bool::ANY,
        ) {
            let b = (if same_ip { a.0 } else { b.0 }, if same_port { a.1 } else { b.1 }, b.2);
            let addr = |(ip, port, v6): ([u8; 16], u16, bool)| FlowAddr { ip, port, v6 };
            proptest::prop_assert_eq!(addr(a).cmp(&addr(b)), a.cmp(&b));
            proptest::prop_assert_eq!(addr(a) == addr(b), a == b);
        }

        /// A flow's key is the same from either side, and a flow is found and its
        /// direction told by `dir_of` as by the key's `is` and the initiator's
        /// comparison with the sender, for two ends sharing an address, a port, both
        /// or neither, and for a segment of another flow sharing one end.
        #[test]
        fn a_flow_key_and_direction_are_the_same_from_either_side(
            a in proptest::prelude::any::<([u8; 16], u16, bool)>(),
            b in proptest::prelude::any::<([u8; 16], u16, bool)>(),
            c in proptest::prelude::any::<([u8; 16], u16, bool)>(),
            same_ip in proptest::bool::ANY,
            same_port in proptest::bool::ANY,
            same_family in proptest::bool::ANY,
        ) {
            let b = (
                if same_ip { a.0 } else { b.0 },
                if same_port { a.1 } else { b.1 },
                if same_family { a.2 } else { b.2 },
            );
            let addr = |(ip, port, v6): ([u8; 16], u16, bool)| FlowAddr { ip, port, v6 };
            let (a, b, c) = (addr(a), addr(b), addr(c));
            let key = FlowKey::new(a, b);
            proptest::prop_assert_eq!(key, FlowKey::new(b, a));
            let table = FlowTable::<()>::new(FlowConfig::default());
            proptest::prop_assert_eq!(table.hash_ends(&a, &b), table.hash(&key));
            proptest::prop_assert_eq!(table.hash_ends(&b, &a), table.hash(&key));
            proptest::prop_assert!((key.0, key.1) == (a, b) || (key.0, key.1) == (b, a));
            let flow = Flow {
                info: FlowInfo { id: 0, initiator: a, responder: b, saw_syn: false, first_seen: 0 },
                dirs: [Reassembler::new(), Reassembler::new()],
                last_seen: 0,
                rst: false,
                offloaded: [false; 2],
                holding: false,
                state: (),
            };
            for (src, dst) in [(a, b), (b, a), (a, c), (c, b), (c, a), (b, c), (a, a), (b, b)] {
                let key = FlowKey::new(src, dst);
                let old = flow.is(&key).then(|| {
                    if src == flow.info.initiator { Dir::Forward } else { Dir::Reverse }
                });
                proptest::prop_assert_eq!(flow.dir_of(src, dst), old);
            }
        }
    }

    #[test]
    fn a_flow_is_found_from_either_side_and_gone_once_closed() {
        let mut t = FlowTable::new(FlowConfig::default());
        let mut h = Recorder::default();
        t.segment(&seg(1, C, S, 100, None, "S", b""), &mut h);
        t.segment(&seg(2, S, C, 500, Some(101), "S", b""), &mut h);
        t.segment(&seg(3, "10.0.0.3:1", S, 7, Some(1), "", b"x"), &mut h);
        assert_eq!(t.active_flows(), 2);
        let key = FlowKey::new(addr(S).into(), addr(C).into());
        let flow = t
            .get(t.hash(&key), &key)
            .map(|f| (f.info.id, f.info.sender(Dir::Forward)));
        assert_eq!(flow, Some((0, addr(C))));
        t.segment(&seg(4, S, C, 501, None, "R", b""), &mut h);
        assert_eq!(t.active_flows(), 1);
        assert!(t.get(t.hash(&key), &key).is_none());
        assert_eq!(h.closed, vec![(0, CloseReason::Rst)]);
    }
}
