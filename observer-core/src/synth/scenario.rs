//! Scripted JIM scenarios: peers that poll their buddies, answer with their state,
//! change state, disappear, relay through a rendezvous; the traffic they would put on
//! the wire, and the transactions an exact observer must report (the ground truth).
//!
//! The ground truth is computed from the scenario's own knowledge (which PONG answers
//! which PING) and from the simulated wire's record of when each byte was first
//! written to the capture, never from the observer's code.
//!
//! Over 600 lines: one simulator of scripted peers whose steps share its state.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};

use super::wire::{Placement, SendShape, Wire};
use crate::jim::{Document, Kind, Status};
use crate::jxta::{
    self, encode_message_v0, encode_package, encode_welcome, HeaderOrder, OwnedElement, PeerId,
    WelcomeVersion,
};
use crate::transaction::cause::{Flag, Flags};
use crate::transaction::{MatchMethod, Transaction, TxStatus};
use crate::UnixNanos;

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z: sample captures have fixed, plausible timestamps.
pub const EPOCH: UnixNanos = 1_767_225_600 * SEC;
const NET_PEER_GROUP: &str = "59616261646162614E50472050325033";

/// Which JXSE release the simulated peers imitate on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `content-type` first, `uuid-` peer IDs.
    Jxse25,
    /// `content-length` first, `cbid-` peer IDs, an `EndpointRouterMsg-fingerprint`
    /// element without MIME type, the initiator's ephemeral port in
    /// `EndpointDestinationAddress`.
    Jxse27,
}

#[derive(Clone, Debug)]
pub struct PeerSpec {
    pub name: String,
    pub ip: IpAddr,
    pub port: u16,
    /// Adds `<correlator>` to its PINGs (and copies it into PONGs); an unmodified JIM
    /// peer does neither.
    pub instrumented: bool,
    /// Polls its buddies (a rendezvous only relays).
    pub polls: bool,
}

/// Something that happens to a peer at a time.
#[derive(Clone, Debug)]
pub enum Change {
    Status(Status),
    /// The program stops: no PINGs, no PONGs.
    Gone,
    Back,
    /// The program starts again from scratch: its correlators count from 1 again (as
    /// a restarted reference peer's do), so the first session's repeat.
    Restart,
}

/// A disturbance put on purpose on one poll, with the cause the observer must find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inject {
    /// A segment of the PING is lost after the capture point and retransmitted
    /// this long after (the retransmission timer).
    PingLoss(u64),
    /// A segment of the PING is lost before the capture point and retransmitted this
    /// long after: the capture sees a hole.
    PingHole(u64),
    /// A segment of the PONG is lost before the capture point and retransmitted
    /// this long after: the capture sees a hole.
    PongLoss(u64),
    /// The connection is closed just before the PING, which opens a new one.
    NewConnection,
    /// The receiver takes this much longer than usual to answer.
    ReplyDelay(u64),
    /// The receiver sends a MESSAGE with a body of this many bytes just before the
    /// PONG, on a slow link (a segment per millisecond): the PONG queues behind it.
    QueueAhead(usize),
    /// The receiver shuts its TCP window after the PING's first segment and opens it
    /// this long after; the rest of the PING waits (probed meanwhile).
    ZeroWindow(u64),
    /// The receiver resets the connection 300 ms after the PING arrived, opens a new
    /// one and answers there.
    ResetBeforePong,
    /// The receiver resets the connection 300 ms after the PING arrived and never
    /// answers (it opens a new connection for what follows).
    ResetUnanswered,
    /// The receiver sends a resolver/SRDI message on the connection 100 ms after the
    /// PING arrived, before answering.
    Service,
    /// The receiver's TCP takes the PING, its application never answers.
    Ignored,
    /// A PING segment is lost after the capture point and sent again this long
    /// after; the receiver's application never answers.
    LostIgnored(u64),
}

impl Inject {
    /// The flag a transaction disturbed this way must carry.
    pub fn flag(self) -> Flag {
        match self {
            Inject::PingLoss(_) | Inject::PingHole(_) | Inject::PongLoss(_) => Flag::Retrans,
            Inject::NewConnection => Flag::Conn,
            Inject::ReplyDelay(_) => Flag::Far,
            Inject::QueueAhead(_) => Flag::Queue,
            Inject::ZeroWindow(_) => Flag::Window,
            Inject::ResetBeforePong | Inject::ResetUnanswered => Flag::Reset,
            Inject::Service => Flag::Jxta,
            Inject::Ignored => Flag::Far,
            Inject::LostIgnored(_) => Flag::Retrans,
        }
    }
}

/// How messages between two peers travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Direct,
    /// Through the peer with this index (a rendezvous), on its two connections.
    Via(usize),
}

#[derive(Clone, Debug)]
pub struct Script {
    pub name: &'static str,
    pub layout: Layout,
    pub peers: Vec<PeerSpec>,
    /// Pairs (poller, buddy) that poll each other; connections follow from routes.
    pub buddies: Vec<(usize, usize)>,
    pub route: Route,
    pub poll_interval_ns: u64,
    /// Between the first polls of consecutive (poller, buddy) pairs.
    pub poll_stagger_ns: u64,
    pub duration_ns: u64,
    /// Capture begins this long after the peers start (0: with the first SYN).
    pub capture_offset_ns: u64,
    pub changes: Vec<(UnixNanos, usize, Change)>,
    /// Instant messages (from, to) sent at a time.
    pub messages: Vec<(UnixNanos, usize, usize, String)>,
    /// A multicast discovery datagram at this time, from peer 0, of this size.
    pub multicast: Option<(UnixNanos, usize)>,
    /// Disturbances on the connection of the first buddy pair.
    pub stress: bool,
    /// The receivers' occasional long replies (the P2P network's hiccups), at random;
    /// off where every peak must be one put there on purpose.
    pub natural_peaks: bool,
    /// Disturbances on the `n`th poll (from 0) of `poller` to `receiver`.
    pub inject: Vec<(usize, usize, u64, Inject)>,
    /// From this time (since the start) on, messages go through this peer (a direct
    /// route that fails over to a rendezvous); its connections are opened at the start.
    pub reroute: Option<(UnixNanos, usize)>,
    pub timeout_ns: u64,
    pub seed: u64,
}

/// A rendered scenario: the wire, and what must be found on it.
pub struct Rendered {
    pub wire: Wire,
    pub capture_start: UnixNanos,
    pub truth: Vec<Transaction>,
    /// For each transaction of `truth`, the causes the wire shows by construction:
    /// what was injected, a relay on the route, a connection opened for its PING or
    /// PONG (its first message in that direction). The HTTP sample (`synth::http`)
    /// leaves them empty: it is not scored.
    pub expected: Vec<Flags>,
    /// For each transaction of `truth`, what was put on it on purpose, and when the
    /// capture saw its PING's first leg and its PONG's last (for `synth::figure`).
    /// Empty in the HTTP sample.
    pub injected: Vec<Injected>,
}

/// What a transaction of a rendered scenario had put on it, and where it lies.
#[derive(Clone, Debug, Default)]
pub struct Injected {
    pub inject: Option<Inject>,
    pub ping: Option<(UnixNanos, UnixNanos)>,
    pub pong: Option<(UnixNanos, UnixNanos)>,
}

/// A deterministic generator (SplitMix64): the same script always gives the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Normal deviate (Box-Muller).
    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn hex(&mut self, digits: usize) -> String {
        let mut s = String::with_capacity(digits);
        while s.len() < digits {
            s.push_str(&format!("{:016X}", self.next()));
        }
        s.truncate(digits);
        s
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Poll {
        from: usize,
        to: usize,
    },
    Arrive {
        msg: usize,
        hop: usize,
    },
    Reply {
        ping: usize,
    },
    Change {
        idx: usize,
    },
    Message {
        idx: usize,
    },
    /// `from` resets its connection to `to` (and opens a new one).
    Reset {
        from: usize,
        to: usize,
    },
}

struct SimMessage {
    doc: Document,
    src: usize,
    dst: usize,
    /// One of its legs was the first message of its connection's direction.
    fresh: bool,
    /// The peer each leg went to, in order.
    hops: Vec<usize>,
    /// Each leg's placement on the wire, in order.
    legs: Vec<Placement>,
}

struct SimPing {
    msg: usize,
    poller: usize,
    receiver: usize,
    pong: Option<usize>,
    inject: Option<Inject>,
}

struct Peer {
    spec: PeerSpec,
    id: PeerId,
    status: Status,
    alive: bool,
    correlators: u64,
    /// When this peer's last PONG to each poller leaves: an unmodified JIM peer
    /// answers in order.
    last_reply: HashMap<usize, UnixNanos>,
}

struct Sim<'a> {
    script: &'a Script,
    rng: Rng,
    wire: Wire,
    peers: Vec<Peer>,
    /// (a, b) with a < b → (connection, direction index for a→b).
    conns: HashMap<(usize, usize), (usize, usize)>,
    messages: Vec<SimMessage>,
    pings: Vec<SimPing>,
    /// Message index of each PING → its index in `pings`.
    ping_of: HashMap<usize, usize>,
    pipes: HashMap<usize, String>,
    queue: BinaryHeap<Reverse<(UnixNanos, u64, Event)>>,
    seq: u64,
    sends: u64,
    /// The connection the segmentation stress applies to.
    stress_conn: Option<usize>,
    /// Polls made so far per (poller, receiver).
    polls: HashMap<(usize, usize), u64>,
    /// Connection directions that have carried a message.
    used: std::collections::HashSet<(usize, usize)>,
    /// Connections opened after the start, for their client ports.
    reconnects: u16,
    /// Each connection's end (its first FIN or RST), for the expected `reset`.
    ends: Vec<(usize, UnixNanos)>,
    /// Where the JXTA service messages went, for the expected `jxta`.
    service: Vec<Placement>,
}

impl Script {
    pub fn render(&self) -> Rendered {
        let mut sim = Sim::new(self);
        sim.run();
        sim.finish()
    }

    /// The peer pairs that hold a TCP connection, in the order they connect: those of
    /// the route, and of the route it fails over to (opened at the start too).
    fn connection_pairs(&self) -> Vec<(usize, usize)> {
        let mut pairs: Vec<(usize, usize)> = Vec::new();
        for &(a, b) in &self.buddies {
            let later = self.reroute.map(|(_, r)| Route::Via(r));
            for route in std::iter::once(self.route).chain(later) {
                match route {
                    Route::Direct => pairs.push((a.min(b), a.max(b))),
                    Route::Via(r) => {
                        pairs.push((a, r));
                        pairs.push((b, r));
                    }
                }
            }
        }
        pairs.sort();
        pairs.dedup();
        pairs
    }

    /// Between the openings of consecutive connections: 5 ms, or all within 10 s when
    /// there are thousands.
    fn connection_spacing(&self) -> u64 {
        (5 * MS).min(10 * SEC / self.connection_pairs().len().max(1) as u64)
    }

    /// When the first poll goes out, after `EPOCH`: once every connection is up.
    pub fn polls_start_ns(&self) -> u64 {
        let connected = self.connection_pairs().len() as u64 * self.connection_spacing();
        (100 * MS).max(connected + 5 * MS)
    }
}

impl<'a> Sim<'a> {
    fn new(script: &'a Script) -> Self {
        let mut rng = Rng(script.seed);
        let peers = script
            .peers
            .iter()
            .map(|spec| {
                let id = match script.layout {
                    Layout::Jxse25 => format!("urn:jxta:uuid-{NET_PEER_GROUP}{}03", rng.hex(32)),
                    Layout::Jxse27 => format!("urn:jxta:cbid-{}03", rng.hex(40)),
                };
                Peer {
                    spec: spec.clone(),
                    id: PeerId::parse(&id).expect("generated peer IDs are well-formed"),
                    status: Status::Online,
                    alive: true,
                    correlators: 0,
                    last_reply: HashMap::new(),
                }
            })
            .collect::<Vec<_>>();
        let mut pipes = HashMap::new();
        for i in 0..peers.len() {
            pipes.insert(
                i,
                format!("urn:jxta:uuid-{NET_PEER_GROUP}{}04", rng.hex(32)),
            );
        }
        Sim {
            script,
            rng,
            wire: Wire::new(),
            peers,
            conns: HashMap::new(),
            messages: Vec::new(),
            pings: Vec::new(),
            ping_of: HashMap::new(),
            pipes,
            queue: BinaryHeap::new(),
            seq: 0,
            sends: 0,
            stress_conn: None,
            polls: HashMap::new(),
            used: Default::default(),
            reconnects: 0,
            ends: Vec::new(),
            service: Vec::new(),
        }
    }

    fn schedule(&mut self, t: UnixNanos, ev: Event) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, ev)));
    }

    fn addr(&self, p: usize) -> SocketAddr {
        SocketAddr::new(self.peers[p].spec.ip, self.peers[p].spec.port)
    }

    /// The TCP connections the route needs, each opened with both welcome lines.
    fn connect_all(&mut self) {
        let pairs = self.script.connection_pairs();
        let spacing = self.script.connection_spacing();
        let mut t = EPOCH;
        for (n, (a, b)) in pairs.into_iter().enumerate() {
            // The lower-numbered peer initiates from an ephemeral port (ports repeat
            // only past 3,600 connections, between different address pairs).
            let port = 40_000 + (n % 3_600) as u16 * 7;
            self.connect(t, a, b, port);
            t += spacing;
        }
    }

    /// Opens a connection from `a` (port `port`) to `b`, both welcome lines sent by
    /// `t` + 0.5 ms; it carries their messages from then on.
    fn connect(&mut self, t: UnixNanos, a: usize, b: usize, port: u16) {
        {
            let client = SocketAddr::new(self.peers[a].spec.ip, port);
            let server = self.addr(b);
            let isn = [self.rng.next() as u32, self.rng.next() as u32];
            let conn = self.wire.connect(t, client, server, isn, 200_000);
            let version = WelcomeVersion::V1_1;
            let hello_a = encode_welcome(
                &format!("tcp://{server}"),
                &format!("tcp://{}", self.addr(a)),
                self.peers[a].id.as_str(),
                false,
                version,
            );
            let hello_b = encode_welcome(
                &format!("tcp://{client}"),
                &format!("tcp://{server}"),
                self.peers[b].id.as_str(),
                false,
                version,
            );
            let shape = SendShape::default();
            self.wire
                .send(t + 300_000, conn, 0, &[&hello_a], &shape, 100_000);
            self.wire
                .send(t + 500_000, conn, 1, &[&hello_b], &shape, 100_000);
            self.conns.insert((a, b), (conn, 0));
            self.conns.insert((b, a), (conn, 1));
        }
    }

    fn run(&mut self) {
        self.connect_all();
        if let Some(&(a, b)) = self.script.buddies.first() {
            self.stress_conn = self.conns.get(&(a, b)).map(|c| c.0);
        }
        let start = EPOCH + self.script.polls_start_ns();
        let mut k = 0u64;
        for &(a, b) in &self.script.buddies.clone() {
            for (from, to) in [(a, b), (b, a)] {
                if self.peers[from].spec.polls {
                    // Pollers start staggered, as real peers do.
                    let t = start + k * self.script.poll_stagger_ns;
                    self.schedule(t, Event::Poll { from, to });
                    k += 1;
                }
            }
        }
        for idx in 0..self.script.changes.len() {
            self.schedule(EPOCH + self.script.changes[idx].0, Event::Change { idx });
        }
        for idx in 0..self.script.messages.len() {
            self.schedule(EPOCH + self.script.messages[idx].0, Event::Message { idx });
        }
        if let Some((at, size)) = self.script.multicast {
            self.multicast(EPOCH + at, size);
        }
        let end = EPOCH + self.script.duration_ns;
        while let Some(Reverse((t, _, ev))) = self.queue.pop() {
            if t > end {
                break;
            }
            self.handle(t, ev);
        }
    }

    fn handle(&mut self, t: UnixNanos, ev: Event) {
        match ev {
            Event::Poll { from, to } => {
                self.schedule(t + self.script.poll_interval_ns, Event::Poll { from, to });
                if !self.peers[from].alive {
                    return;
                }
                let p = &mut self.peers[from];
                let correlator = p.spec.instrumented.then(|| {
                    p.correlators += 1;
                    ((1u64 << 62) + from as u64 * 1_000_000 + p.correlators).to_string()
                });
                let doc = Document {
                    kind: Kind::Ping,
                    name: Some(p.spec.name.clone()),
                    peer_id: Some(p.id.to_string()),
                    correlator,
                    ..Document::default()
                };
                let msg = self.new_message(doc, from, to);
                let n = self.polls.entry((from, to)).or_insert(0);
                let nth = *n;
                *n += 1;
                let inject = self
                    .script
                    .inject
                    .iter()
                    .find(|(p, r, k, _)| (*p, *r, *k) == (from, to, nth))
                    .map(|i| i.3);
                self.ping_of.insert(msg, self.pings.len());
                self.pings.push(SimPing {
                    msg,
                    poller: from,
                    receiver: to,
                    pong: None,
                    inject,
                });
                let mut at = t;
                if inject == Some(Inject::NewConnection) {
                    if let Some(&(conn, _)) = self.conns.get(&(from, to)) {
                        let closed = self.wire.close(t, conn);
                        self.ends.push((conn, closed));
                    }
                    // The poller's stack opens a new connection before the PING can go.
                    self.reconnect(t + MS, from, to);
                    at = t + 5 * MS;
                }
                let shape = match inject {
                    Some(Inject::PingLoss(rto)) => Some(SendShape {
                        mss: 300,
                        retransmit: vec![(1, rto)],
                        lost: vec![1],
                        ..SendShape::default()
                    }),
                    Some(Inject::PingHole(rto)) => Some(SendShape {
                        mss: 300,
                        retransmit: vec![(1, rto)],
                        drop: vec![1],
                        ..SendShape::default()
                    }),
                    Some(Inject::LostIgnored(rto)) => Some(SendShape {
                        mss: 300,
                        retransmit: vec![(0, rto)],
                        lost: vec![0],
                        ..SendShape::default()
                    }),
                    Some(Inject::ZeroWindow(stall)) => Some(SendShape {
                        mss: 300,
                        zero_window: Some((0, stall)),
                        ..SendShape::default()
                    }),
                    _ => None,
                };
                self.transmit_shaped(at, msg, from, shape);
            }
            Event::Arrive { msg, hop } => {
                let m = &self.messages[msg];
                if hop != m.dst {
                    // A rendezvous forwards after a little processing.
                    let delay = MS + self.rng.next() % (2 * MS);
                    self.transmit(t + delay, msg, hop);
                    return;
                }
                if m.doc.kind != Kind::Ping {
                    return;
                }
                let Some(&ping) = self.ping_of.get(&msg) else {
                    return;
                };
                let receiver = self.pings[ping].receiver;
                if !self.peers[receiver].alive {
                    return;
                }
                let poller = self.pings[ping].poller;
                // The reset comes 300 ms after the PING; a reply due earlier waits for
                // the new connection.
                const RESET_AFTER: u64 = 300 * MS;
                let reset = Event::Reset {
                    from: receiver,
                    to: poller,
                };
                match self.pings[ping].inject {
                    Some(Inject::ResetUnanswered) => {
                        self.schedule(t + RESET_AFTER, reset);
                        return;
                    }
                    Some(Inject::ResetBeforePong) => self.schedule(t + RESET_AFTER, reset),
                    Some(Inject::Ignored | Inject::LostIgnored(_)) => return,
                    Some(Inject::Service) => self.service_message(t + 100 * MS, receiver, poller),
                    _ => {}
                }
                let mut delay = self.reply_delay(receiver);
                if let Some(Inject::ReplyDelay(extra)) = self.pings[ping].inject {
                    delay += extra;
                }
                let mut at = t + delay;
                if self.pings[ping].inject == Some(Inject::ResetBeforePong) {
                    at = at.max(t + RESET_AFTER + 5 * MS);
                }
                if !self.peers[receiver].spec.instrumented {
                    // Unmodified JIM answers each poller in order.
                    let prev = self.peers[receiver]
                        .last_reply
                        .get(&poller)
                        .copied()
                        .unwrap_or(0);
                    at = at.max(prev + MS);
                    self.peers[receiver].last_reply.insert(poller, at);
                }
                self.schedule(at, Event::Reply { ping });
            }
            Event::Reply { ping } => {
                let SimPing {
                    msg,
                    poller,
                    receiver,
                    ..
                } = self.pings[ping];
                if !self.peers[receiver].alive {
                    return;
                }
                let p = &self.peers[receiver];
                // An instrumented peer copies the PING's correlator; unmodified JIM drops it.
                let correlator = if p.spec.instrumented {
                    self.messages[msg].doc.correlator.clone()
                } else {
                    None
                };
                let doc = Document {
                    kind: Kind::Pong,
                    name: Some(p.spec.name.clone()),
                    peer_id: Some(p.id.to_string()),
                    status: Some(p.status),
                    correlator,
                    ..Document::default()
                };
                let pong = self.new_message(doc, receiver, poller);
                self.pings[ping].pong = Some(pong);
                let shape = match self.pings[ping].inject {
                    Some(Inject::QueueAhead(bytes)) => {
                        self.queue_ahead(t, receiver, poller, bytes);
                        None
                    }
                    Some(Inject::PongLoss(rto)) => Some(SendShape {
                        mss: 300,
                        retransmit: vec![(1, rto)],
                        drop: vec![1],
                        ..SendShape::default()
                    }),
                    _ => None,
                };
                self.transmit_shaped(t, pong, receiver, shape);
            }
            Event::Change { idx } => {
                let (_, peer, change) = &self.script.changes[idx];
                let p = &mut self.peers[*peer];
                match change {
                    Change::Status(s) => p.status = *s,
                    Change::Gone => p.alive = false,
                    Change::Back => p.alive = true,
                    Change::Restart => {
                        p.alive = true;
                        p.correlators = 0;
                    }
                }
            }
            Event::Reset { from, to } => self.reset(t, from, to),
            Event::Message { idx } => {
                let (_, from, to, body) = self.script.messages[idx].clone();
                let doc = Document {
                    kind: Kind::Message,
                    from: Some(self.peers[from].spec.name.clone()),
                    to: Some(self.peers[to].spec.name.clone()),
                    body: Some(body),
                    ..Document::default()
                };
                let msg = self.new_message(doc, from, to);
                self.transmit(t, msg, from);
            }
        }
    }

    /// How long a buddy takes to answer: the study's ~850 ms ± 300 ms when online,
    /// later when busy or away, with occasional peaks (the P2P network's hiccups).
    fn reply_delay(&mut self, peer: usize) -> u64 {
        let extra = match self.peers[peer].status {
            Status::Online | Status::Offline => 0.0,
            Status::Busy => 600.0,
            Status::Away => 1500.0,
        };
        let mut ms = self.rng.normal(850.0 + extra, 300.0);
        if self.rng.unit() < 0.05 {
            let peak = 1500.0 + self.rng.unit() * 1500.0;
            if self.script.natural_peaks {
                ms += peak;
            }
        }
        let ms = ms.clamp(30.0, 4500.0);
        (ms * MS as f64) as u64 + self.rng.next() % 1000
    }

    fn new_message(&mut self, doc: Document, src: usize, dst: usize) -> usize {
        self.messages.push(SimMessage {
            doc,
            src,
            dst,
            fresh: false,
            hops: Vec::new(),
            legs: Vec::new(),
        });
        self.messages.len() - 1
    }

    /// `from` resets its connection to `to` at `t` and opens a new one.
    fn reset(&mut self, t: UnixNanos, from: usize, to: usize) {
        if let Some(&(conn, dir)) = self.conns.get(&(from, to)) {
            self.wire.reset(t, conn, dir);
            self.ends.push((conn, t));
        }
        self.reconnect(t + MS, from, to);
    }

    /// `from` opens a new connection to `to` at `t`, from a port of its own.
    fn reconnect(&mut self, t: UnixNanos, from: usize, to: usize) {
        self.reconnects += 1;
        let port = 50_000 + self.reconnects;
        self.connect(t, from, to, port);
    }

    /// A resolver/SRDI message from `from` to `to` at `t`, on their connection.
    fn service_message(&mut self, t: UnixNanos, from: usize, to: usize) {
        let bytes = self.filler(to);
        let Some(&(conn, dir)) = self.conns.get(&(from, to)) else {
            return;
        };
        let (placements, _) =
            self.wire
                .send(t, conn, dir, &[&bytes], &SendShape::default(), 150_000);
        self.service.extend(placements);
    }

    /// A large instant message from `from` to `to` at `t`, on a slow link.
    fn queue_ahead(&mut self, t: UnixNanos, from: usize, to: usize, bytes: usize) {
        let doc = Document {
            kind: Kind::Message,
            from: Some(self.peers[from].spec.name.clone()),
            to: Some(self.peers[to].spec.name.clone()),
            body: Some("x".repeat(bytes)),
            ..Document::default()
        };
        let msg = self.new_message(doc, from, to);
        let slow = SendShape {
            segment_gap_ns: MS,
            ..SendShape::default()
        };
        self.transmit_shaped(t, msg, from, Some(slow));
    }

    /// Sends message `msg` from `hop` one step along its route.
    fn transmit(&mut self, t: UnixNanos, msg: usize, hop: usize) {
        self.transmit_shaped(t, msg, hop, None);
    }

    /// [`Self::transmit`], the first leg cut and disturbed as `shape` says.
    fn transmit_shaped(&mut self, t: UnixNanos, msg: usize, hop: usize, shape: Option<SendShape>) {
        let dst = self.messages[msg].dst;
        let route = match self.script.reroute {
            Some((at, r)) if t >= EPOCH + at => Route::Via(r),
            _ => self.script.route,
        };
        let next = match route {
            Route::Direct => dst,
            Route::Via(r) if hop == r => dst,
            Route::Via(r) => r,
        };
        let bytes = self.package(msg, hop, next);
        let Some(&(conn, dir)) = self.conns.get(&(hop, next)) else {
            return;
        };
        self.sends += 1;
        if self.used.insert((conn, dir)) {
            self.messages[msg].fresh = true;
        }
        let stressed = self.script.stress && Some(conn) == self.stress_conn;
        let (placements, last) =
            if let Some(shape) = shape.filter(|_| hop == self.messages[msg].src) {
                self.wire.send(t, conn, dir, &[&bytes], &shape, 150_000)
            } else if stressed {
                self.stressed_send(t, conn, dir, &bytes, next)
            } else {
                let (p, last) =
                    self.wire
                        .send(t, conn, dir, &[&bytes], &SendShape::default(), 150_000);
                (p, last)
            };
        self.messages[msg].legs.push(placements[0]);
        self.messages[msg].hops.push(next);
        // One-way latency on the LAN.
        self.schedule(last + 120_000, Event::Arrive { msg, hop: next });
    }

    /// The segmentation stress: every kind of disturbance, in turn.
    fn stressed_send(
        &mut self,
        t: UnixNanos,
        conn: usize,
        dir: usize,
        bytes: &[u8],
        to: usize,
    ) -> (Vec<Placement>, UnixNanos) {
        let n = self.sends % 5;
        let filler = self.filler(to);
        let ack = 150_000;
        match n {
            // Many small segments, two of them captured in swapped order.
            0 => {
                let shape = SendShape {
                    mss: 48,
                    segment_gap_ns: 50_000,
                    swap: vec![1, 4],
                    ..SendShape::default()
                };
                self.wire.send(t, conn, dir, &[bytes], &shape, ack)
            }
            // The message shares its segments with a following unrelated message.
            1 => {
                let shape = SendShape {
                    mss: 700,
                    ..SendShape::default()
                };
                let (p, last) = self.wire.send(t, conn, dir, &[bytes, &filler], &shape, ack);
                (p[..1].to_vec(), last)
            }
            // A segment retransmitted, its copy arriving later.
            2 => {
                let shape = SendShape {
                    mss: 300,
                    retransmit: vec![(1, 3 * MS)],
                    ..SendShape::default()
                };
                self.wire.send(t, conn, dir, &[bytes], &shape, ack)
            }
            // An unrelated message loses a segment in the capture (a gap), then ours.
            3 => {
                let lossy = SendShape {
                    mss: 200,
                    drop: vec![2],
                    ..SendShape::default()
                };
                self.wire.send(t, conn, dir, &[&filler], &lossy, 100_000);
                self.wire
                    .send(t + MS, conn, dir, &[bytes], &SendShape::default(), ack)
            }
            // Several messages in one segment.
            _ => {
                let shape = SendShape {
                    mss: 4000,
                    ..SendShape::default()
                };
                let (p, last) =
                    self.wire
                        .send(t, conn, dir, &[&filler, bytes, &filler], &shape, ack);
                (p[1..2].to_vec(), last)
            }
        }
    }

    /// A JXTA message that is not JIM (resolver-like traffic), to share the stream.
    fn filler(&mut self, to: usize) -> Vec<u8> {
        let junk: Vec<u8> = (0..300).map(|_| self.rng.next() as u8).collect();
        let elements = vec![
            OwnedElement {
                namespace: String::new(),
                name: "jxta-NetGroupSrdi".into(),
                mime: Some("application/gzip".into()),
                content: junk,
                signature: None,
            },
            OwnedElement {
                namespace: "jxta".into(),
                name: "EndpointDestinationAddress".into(),
                mime: Some("text/plain;charset=UTF-8".into()),
                content: format!(
                    "tcp://{}/EndpointService:jxta-NetGroup/ResolverService",
                    self.addr(to)
                )
                .into_bytes(),
                signature: None,
            },
        ];
        let body = encode_message_v0(&elements);
        let mut out = Vec::new();
        encode_package(&body, self.header_order(), None, &mut out);
        out
    }

    fn header_order(&self) -> HeaderOrder {
        match self.script.layout {
            Layout::Jxse25 => HeaderOrder::TypeFirst,
            Layout::Jxse27 => HeaderOrder::LengthFirst,
        }
    }

    /// The framed JXTA message for one leg, as JXSE lays it out: the application
    /// element first, then the endpoint router's and the endpoint service's.
    fn package(&mut self, msg: usize, hop: usize, next: usize) -> Vec<u8> {
        let m = &self.messages[msg];
        let src = &self.peers[m.src].id;
        let dst = &self.peers[m.dst].id;
        let last = &self.peers[hop].id;
        let pipe = &self.pipes[&m.dst];
        let mut elements = vec![
            OwnedElement {
                namespace: "jim".into(),
                name: "JimMessage".into(),
                mime: Some("text/xml;charset=UTF-8".into()),
                content: m.doc.to_xml().into_bytes(),
                signature: None,
            },
            OwnedElement {
                namespace: "jxta".into(),
                name: "EndpointRouterMsg".into(),
                mime: Some("text/xml;charset=UTF-8".into()),
                content: jxta::erm_xml(src, dst, &format!("PipeService/{pipe}"), last).into_bytes(),
                signature: None,
            },
        ];
        if self.script.layout == Layout::Jxse27 {
            elements.push(OwnedElement {
                namespace: "jxta".into(),
                name: "EndpointRouterMsg-fingerprint".into(),
                mime: None,
                content: (0..20).map(|_| self.rng.next() as u8).collect(),
                signature: None,
            });
        }
        let (conn, dir) = self.conns.get(&(hop, next)).copied().unwrap_or((0, 0));
        let c = &self.wire.conns[conn];
        let dest_addr = match self.script.layout {
            // 2.7 names the address the connection really uses, ephemeral port included.
            Layout::Jxse27 => c.addrs[1 - dir],
            Layout::Jxse25 => self.addr(next),
        };
        elements.push(OwnedElement {
            namespace: "jxta".into(),
            name: "EndpointSourceAddress".into(),
            mime: Some("text/plain;charset=UTF-8".into()),
            content: format!("tcp://{}", self.addr(hop)).into_bytes(),
            signature: None,
        });
        elements.push(OwnedElement {
            namespace: "jxta".into(),
            name: "EndpointDestinationAddress".into(),
            mime: Some("text/plain;charset=UTF-8".into()),
            content: format!("tcp://{dest_addr}/EndpointService:jxta-NetGroup/EndpointRouter")
                .into_bytes(),
            signature: None,
        });
        let body = encode_message_v0(&elements);
        let mut out = Vec::new();
        encode_package(&body, self.header_order(), None, &mut out);
        out
    }

    /// A discovery query to the multicast group, large enough to be fragmented.
    fn multicast(&mut self, t: UnixNanos, size: usize) {
        let src = self.addr(0);
        let query = "<Attr>Name</Attr><Value>*</Value>".repeat(size / 34 + 1);
        let elements = vec![
            OwnedElement {
                namespace: String::new(),
                name: "jxta-NetGroupDiscQuery".into(),
                mime: Some("text/xml;charset=UTF-8".into()),
                content: format!(
                    "<?xml version=\"1.0\"?><jxta:DiscoveryQuery>{query}</jxta:DiscoveryQuery>"
                )
                .into_bytes(),
                signature: None,
            },
            OwnedElement {
                namespace: "jxta".into(),
                name: "EndpointHeaderSrcPeer".into(),
                mime: Some("text/plain;charset=UTF-8".into()),
                content: self.peers[0].id.to_string().into_bytes(),
                signature: None,
            },
        ];
        let body = encode_message_v0(&elements);
        let mut out = Vec::new();
        jxta::encode_datagram(&body, &format!("tcp://{src}"), &mut out);
        let group: SocketAddr = match src.ip() {
            IpAddr::V4(_) => "224.0.1.85:1234".parse().expect("literal"),
            IpAddr::V6(_) => "[ff05::85]:1234".parse().expect("literal"),
        };
        self.wire
            .datagram(t, SocketAddr::new(src.ip(), 1234), group, &out, 1500);
    }

    fn finish(mut self) -> Rendered {
        // Close connections at the end, as peers shutting down would.
        let end = EPOCH + self.script.duration_ns;
        let mut conns: Vec<usize> = self.conns.values().map(|c| c.0).collect();
        conns.sort();
        conns.dedup();
        for c in conns {
            let closed = self.wire.close(end + 10 * MS, c);
            self.ends.push((c, closed));
        }
        let capture_start = self.capture_start();
        let capture_end = self.wire.last_written(capture_start);
        let timeout = self.script.timeout_ns;
        let mut truth = Vec::new();
        let mut routes: HashMap<(usize, usize), (Option<usize>, usize)> = HashMap::new();
        for ping in &self.pings {
            let pm = &self.messages[ping.msg];
            let Some(first_leg) = pm.legs.first() else {
                continue;
            };
            let Some((start, _)) = self.wire.seen(*first_leg, capture_start) else {
                continue;
            };
            let poller = &self.peers[ping.poller];
            let receiver = &self.peers[ping.receiver];
            let ping_bytes = first_leg.end - first_leg.start;
            let ping_corr = correlator_bytes(&pm.doc);
            let pong = ping.pong.and_then(|p| {
                let m = &self.messages[p];
                // Delivered to the poller: the last leg, complete in the capture.
                let leg = m.legs.last()?;
                if m.hops.last() != Some(&m.dst) {
                    return None;
                }
                let (_, stop) = self.wire.seen(*leg, capture_start)?;
                Some((m, stop, leg.end - leg.start))
            });
            let mut t = Transaction {
                start,
                stop: None,
                poller_name: Some(poller.spec.name.as_str().into()),
                poller_id: Some(poller.id.clone()),
                receiver_name: Some(receiver.spec.name.as_str().into()),
                receiver_id: Some(receiver.id.clone()),
                receiver_status: None,
                status: TxStatus::Open,
                correlator: pm.doc.correlator.as_deref().map(Into::into),
                match_method: None,
                ping_bytes,
                pong_bytes: None,
                correlator_overhead_bytes: ping_corr,
                cause: Default::default(),
            };
            match pong {
                Some((m, stop, bytes)) if stop - start < timeout => {
                    t.stop = Some(stop);
                    t.status = TxStatus::Ok;
                    t.receiver_status = m.doc.status;
                    t.pong_bytes = Some(bytes);
                    t.correlator_overhead_bytes += correlator_bytes(&m.doc);
                    t.match_method = Some(match (&pm.doc.correlator, &m.doc.correlator) {
                        (Some(_), Some(_)) => MatchMethod::Correlator,
                        _ => MatchMethod::Order,
                    });
                }
                _ if capture_end - start >= timeout => {
                    t.stop = Some(start + timeout);
                    t.status = TxStatus::Timeout;
                }
                _ => {}
            }
            let mut flags = Flags::default();
            if let (TxStatus::Timeout, Some(until)) = (t.status, t.stop) {
                if let Some(i) = ping.inject {
                    flags.insert(i.flag());
                }
                // Delivered in the end, on a connection that stayed up.
                if matches!(ping.inject, Some(Inject::LostIgnored(_))) {
                    flags.insert(Flag::Far);
                }
                if pm.hops.first() != Some(&ping.receiver) {
                    flags.insert(Flag::Relay);
                }
                if pm.fresh {
                    flags.insert(Flag::Conn);
                }
                self.wire_facts(&mut flags, &[ping.msg], (start, until), capture_start);
            }
            if t.status == TxStatus::Ok {
                if let Some(i) = ping.inject {
                    flags.insert(i.flag());
                }
                let until = t.stop.unwrap_or(start);
                let msgs: Vec<usize> = std::iter::once(ping.msg).chain(ping.pong).collect();
                self.wire_facts(&mut flags, &msgs, (start, until), capture_start);
                if pm.hops.first() != Some(&ping.receiver) {
                    flags.insert(Flag::Relay);
                }
                // The poller's TCP peer for the PING, the PONG's last sender.
                let route = ping.pong.map(|p| {
                    let m = &self.messages[p];
                    let n = m.hops.len();
                    let last_sender = if n >= 2 { m.hops[n - 2] } else { m.src };
                    (pm.hops.first().copied(), last_sender)
                });
                let pair = (ping.poller, ping.receiver);
                if let Some(route) = route {
                    if routes.insert(pair, route).is_some_and(|prev| prev != route) {
                        flags.insert(Flag::Route);
                    }
                }
                if pm.fresh || ping.pong.is_some_and(|p| self.messages[p].fresh) {
                    flags.insert(Flag::Conn);
                }
            }
            let pong_seen = ping.pong.and_then(|p| {
                let leg = self.messages[p].legs.last()?;
                self.wire.seen(*leg, capture_start)
            });
            let injected = Injected {
                inject: ping.inject,
                ping: self.wire.seen(*first_leg, capture_start),
                pong: pong_seen,
            };
            truth.push((t, (flags, injected)));
        }
        truth.sort_by(|(a, _), (b, _)| a.report_order(b));
        let (truth, notes): (Vec<Transaction>, Vec<(Flags, Injected)>) = truth.into_iter().unzip();
        let (expected, injected) = notes.into_iter().unzip();
        Rendered {
            wire: self.wire,
            capture_start,
            truth,
            expected,
            injected,
        }
    }

    /// The flags a transaction's messages `msgs` get from what happened on their
    /// connections from `from` to `until`: a connection ended (`reset`), a service
    /// message overlapped (`jxta`).
    fn wire_facts(
        &self,
        flags: &mut Flags,
        msgs: &[usize],
        (from, until): (UnixNanos, UnixNanos),
        capture_start: UnixNanos,
    ) {
        let conns: Vec<usize> = msgs
            .iter()
            .flat_map(|&m| self.messages[m].legs.iter().map(|l| l.conn))
            .collect();
        // The wire keeps whole microseconds.
        let ended = |&(c, at): &(usize, UnixNanos)| {
            let at = at - at % 1_000;
            conns.contains(&c) && at >= from && at <= until
        };
        if self.ends.iter().any(ended) {
            flags.insert(Flag::Reset);
        }
        let during = |p: &Placement| {
            conns.contains(&p.conn)
                && self
                    .wire
                    .seen(*p, capture_start)
                    .is_some_and(|(lo, hi)| lo <= until && hi >= from)
        };
        if self.service.iter().any(during) {
            flags.insert(Flag::Jxta);
        }
    }

    /// With a capture offset, the capture begins in the middle of the first message
    /// sent after it that is spread over time (so the observer must join mid-stream,
    /// mid-message).
    fn capture_start(&self) -> UnixNanos {
        if self.script.capture_offset_ns == 0 {
            return 0;
        }
        let after = EPOCH + self.script.capture_offset_ns;
        self.messages
            .iter()
            .flat_map(|m| m.legs.iter())
            .filter_map(|leg| self.wire.seen(*leg, 0))
            .filter(|(lo, hi)| *lo >= after && hi - lo > 500_000)
            .map(|(lo, hi)| lo + (hi - lo) / 2)
            .min()
            .unwrap_or(after)
    }
}

/// Bytes of the `<correlator>…</correlator>` element as `Document::to_xml` writes it.
fn correlator_bytes(doc: &Document) -> u64 {
    doc.correlator
        .as_ref()
        .map_or(0, |c| format!("<correlator>{c}</correlator>").len() as u64)
}
