//! JXTA over a TCP flow: the [`FlowHandler`] that gives each flow a stream parser per
//! direction (TCP or HTTP carrier, told apart by content), ties each direction to the
//! peer its welcome line names, and hands every framed message on to a
//! [`MessageHandler`] with where it was seen.

use std::net::SocketAddr;
use std::sync::Arc;

use super::endpoint::DirRouter;
use super::peer::{shared_peer, SharedPeers};
use super::StreamStart;
use super::{
    Carrier, DirParser, FramedMessage, JxtaStats, LastRouter, PeerId, StreamConfig, StreamEvent,
};
use crate::conntrack::{CloseReason, Delivery, Dir, FlowHandler, FlowInfo, Interest, TcpSegment};
use crate::transaction::cause::{ConnNotes, ConnOf, DeliveryCell, LentNotes};
use crate::UnixNanos;

/// Flows recognised as JXTA kept for [`JxtaFlows::take_jxta_flows`] between two calls.
const MAX_ANNOUNCED_FLOWS: usize = 65_536;

/// Where a message framed on a TCP flow was seen.
pub struct FlowMessage<'a> {
    pub carrier: Carrier,
    /// The flow's number (see [`FlowInfo::id`]).
    pub flow: u64,
    /// Lent: copied into each message's, they were ~10 instructions a message.
    pub src: &'a SocketAddr,
    pub dst: &'a SocketAddr,
    /// What the connection did around the message (`transaction::cause`): lent, written
    /// into each document's sighting, and only there.
    pub wire: LentNotes<'a>,
    /// The router document this direction sent last, with the connection's welcome
    /// peers (see [`DirRouter`]): the peer IDs the two directions announced in their
    /// welcome lines, the hop identities that tell relayed legs apart (the message's
    /// source first; none on the HTTP carrier). Lent: a message without a document
    /// needs no copy. Made once a message, here only: the hops as two fields more were
    /// ~8 instructions a message.
    pub router: DirRouter<'a>,
}

/// What happens to each message framed on a flow.
pub trait MessageHandler {
    fn message(&mut self, framed: &FramedMessage<'_>, at: FlowMessage<'_>) -> Handled;
}

/// What the connection's notes keep of a message once it is decoded.
#[derive(Debug, Default)]
pub struct Handled {
    /// A JXTA service message (discovery, SRDI, resolver): the connection's later
    /// messages carry it in their notes.
    pub service: bool,
    /// A PING's: to be told when its bytes are acknowledged or sent again.
    pub delivery: Option<DeliveryCell>,
}

/// The state attached to one TCP flow: a parser per direction (TCP or HTTP transport)
/// and the peer ID each side announced in its welcome line (the hop identities).
///
/// 320 bytes, so that a flow (with the table's 192) fits jemalloc's 512-byte class:
/// what the pipeline knows (the stream configuration) or the flow table keeps (the
/// flow's number and opening) is passed in, not copied here.
pub struct Conn {
    parsers: [DirParser; 2],
    /// One pointer each, shared by every connection of the peer (`shared_peer_ptr`).
    peers: [Option<Arc<PeerId>>; 2],
    /// What each message's wire notes are made of (`transaction::cause`); also
    /// whether the flow was announced in `take_jxta_flows`.
    notes: ConnNotes,
    /// Per direction: 8 bytes, plus the last router document once one is sent.
    routers: [LastRouter; 2],
}

impl Conn {
    /// Earliest first-seen time of the bytes its stream parsers hold.
    pub fn oldest_buffered(&self) -> Option<UnixNanos> {
        self.parsers
            .iter()
            .filter_map(DirParser::oldest_buffered)
            .min()
    }
}

/// Everything downstream of the flow table for TCP: split from the table so that the
/// table can borrow it as its handler while it owns the flows.
pub struct JxtaFlows<H> {
    stream_cfg: StreamConfig,
    /// Counters of the stream parsers (welcomes, framing, gaps, resyncs).
    pub stream_stats: JxtaStats,
    pub handler: H,
    /// Flows recognised as JXTA by content since the last `take_jxta_flows` (a live
    /// tap uses them to let such flows through its in-kernel port filter).
    jxta_flows: Vec<(SocketAddr, SocketAddr)>,
    /// Someone takes `jxta_flows` ([`JxtaFlows::announce_jxta_flows`]); offline nobody
    /// does, and kept to their bound they were 4 MB of a many-peers file.
    announce: bool,
    /// The time of the frame being processed (earlier than the pipeline's clock for a
    /// frame later than the reorder window): when bytes it completes became usable.
    pub frame_ts: UnixNanos,
    /// Peer IDs of welcome lines, shared: a peer opens a connection to each of its
    /// buddies, and every connection kept its own copy of the same text (two per
    /// connection, 17 MB at 100,000 connections).
    welcome_peers: SharedPeers,
}

impl<H> JxtaFlows<H> {
    pub fn new(stream_cfg: StreamConfig, handler: H) -> Self {
        JxtaFlows {
            stream_cfg,
            stream_stats: JxtaStats::default(),
            handler,
            jxta_flows: Vec::new(),
            announce: false,
            frame_ts: 0,
            welcome_peers: SharedPeers::default(),
        }
    }

    pub fn stream_config(&self) -> &StreamConfig {
        &self.stream_cfg
    }

    /// From now on, keep the flows recognised as JXTA for [`JxtaFlows::take_jxta_flows`].
    pub fn announce_jxta_flows(&mut self) {
        self.announce = true;
    }

    /// TCP flows recognised as JXTA by content since the last call, as
    /// (initiator, responder); none unless [`JxtaFlows::announce_jxta_flows`] was called.
    pub fn take_jxta_flows(&mut self) -> Vec<(SocketAddr, SocketAddr)> {
        std::mem::take(&mut self.jxta_flows)
    }

    pub fn into_parts(self) -> (JxtaStats, H) {
        (self.stream_stats, self.handler)
    }
}

impl<H: MessageHandler> FlowHandler for JxtaFlows<H> {
    type State = Conn;

    fn open(&mut self, info: &FlowInfo) -> Conn {
        let start = StreamStart::from_syn(info.saw_syn);
        Conn {
            parsers: [DirParser::new(start), DirParser::new(start)],
            peers: [None, None],
            notes: ConnNotes::default(),
            routers: Default::default(),
        }
    }

    fn deliver(
        &mut self,
        conn: &mut Conn,
        info: &FlowInfo,
        dir: Dir,
        delivery: Delivery<'_>,
    ) -> Interest {
        let Conn {
            parsers,
            peers,
            notes,
            routers,
        } = conn;
        let parser = &mut parsers[dir.index()];
        let JxtaFlows {
            stream_cfg,
            stream_stats,
            handler,
            jxta_flows,
            announce,
            frame_ts,
            welcome_peers,
        } = self;
        match delivery {
            Delivery::Data { data, first_seen } => {
                notes.data(dir.index(), first_seen, *frame_ts, data.len() as u64);
                let src = info.sender(dir);
                let dst = info.sender(dir.other());
                let flow = ConnOf {
                    flow: info.id,
                    syn_at: info.saw_syn.then_some(info.first_seen),
                };
                parser.push(
                    data,
                    first_seen,
                    stream_cfg,
                    stream_stats,
                    &mut |event, carrier| match event {
                        StreamEvent::Welcome(w) => {
                            // The welcome line ties this direction to its sender's peer ID:
                            // the hop identity that tells relayed legs apart.
                            peers[dir.index()] = Some(shared_peer(welcome_peers, w.peer_part));
                        }
                        StreamEvent::Message(m) => {
                            let wire =
                                notes.message(flow, dir.index(), m.start, m.stop, m.framed_len);
                            let at = FlowMessage {
                                carrier,
                                flow: info.id,
                                src: &src,
                                dst: &dst,
                                wire,
                                router: DirRouter {
                                    last: &mut routers[dir.index()],
                                    hops: [
                                        peers[dir.index()].as_ref(),
                                        peers[dir.other().index()].as_ref(),
                                    ],
                                },
                            };
                            let handled = handler.message(m, at);
                            if handled.service {
                                notes.activity(dir.index(), m.start, m.stop);
                            }
                            if let Some(cell) = handled.delivery {
                                notes.watch(dir.index(), cell);
                            }
                        }
                    },
                );
            }
            Delivery::Gap { len } => {
                notes.gap(dir.index());
                parser.gap(len, stream_cfg, stream_stats)
            }
        }
        let jxta = parser.is_jxta();
        if jxta == Some(true) {
            // An HTTP polling channel's responses may all be empty: the requests
            // make it JXTA's (and the other way round).
            parsers[dir.other().index()].peer_is_jxta();
            if notes.first_found_jxta() {
                // A live tap takes these every loop; offline nobody does, so keep a bound.
                if *announce && jxta_flows.len() < MAX_ANNOUNCED_FLOWS {
                    jxta_flows.push((info.sender(Dir::Forward), info.sender(Dir::Reverse)));
                }
            }
        }
        if jxta == Some(false) {
            Interest::Ignore
        } else {
            Interest::Keep
        }
    }

    fn holds(&self, conn: &Conn) -> bool {
        // Asked for every segment: whether, not since when.
        conn.parsers.iter().any(DirParser::holds)
    }

    fn segment_seen(
        &mut self,
        conn: &mut Conn,
        dir: Dir,
        seg: &TcpSegment<'_>,
        retransmitted: u64,
    ) {
        let len = u32::try_from(seg.payload.len()).unwrap_or(u32::MAX);
        conn.notes.segment(
            dir.index(),
            seg.seq,
            len,
            retransmitted,
            seg.ts,
            seg.interface,
        );
        conn.notes
            .control(dir.index(), seg.ts, (seg.ack, seg.window), seg.fin, seg.rst);
    }

    fn close(&mut self, conn: &mut Conn, _info: &FlowInfo, _reason: CloseReason) {
        for p in &mut conn.parsers {
            p.finish(&self.stream_cfg, &mut self.stream_stats);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jxta::framing::{encode_package, HeaderOrder};
    use crate::jxta::message::{encode_message_v0, OwnedElement};
    use crate::transaction::cause::WireNotes;

    /// A message's connection and direction, its opening time and its hop peer.
    type Note = (Option<(u64, u8)>, Option<UnixNanos>, Option<PeerId>);

    /// What the handler saw of each message.
    #[derive(Default)]
    struct Seen(Vec<Note>);

    impl MessageHandler for Seen {
        fn message(&mut self, _: &FramedMessage<'_>, mut at: FlowMessage<'_>) -> Handled {
            let mut wire = WireNotes::default();
            at.wire.write(&mut wire);
            self.0.push((
                wire.conn,
                wire.opened_at,
                at.router.hops[0].map(|h| (**h).clone()),
            ));
            Handled::default()
        }
    }

    const PEER: &str = "urn:jxta:uuid-0011223303";

    fn package() -> Vec<u8> {
        let body = encode_message_v0(&[OwnedElement::new("", "payload", None, "x")]);
        let mut framed = Vec::new();
        encode_package(&body, HeaderOrder::TypeFirst, None, &mut framed);
        framed
    }

    /// A welcome line and one message.
    fn greeting() -> Vec<u8> {
        let mut wire = crate::jxta::encode_welcome(
            "tcp://10.0.0.2:9701",
            "tcp://10.0.0.1:9701",
            PEER,
            false,
            crate::jxta::WelcomeVersion::V1_1,
        );
        wire.extend_from_slice(&package());
        wire
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    /// Flow 1 from port 40001 with its SYN seen at 5, flow 2 from 40002 without.
    fn info(id: u64) -> FlowInfo {
        FlowInfo {
            id,
            initiator: addr(&format!("10.0.0.1:{}", 40_000 + id)).into(),
            responder: addr("10.0.0.2:9701").into(),
            saw_syn: id == 1,
            first_seen: 5,
        }
    }

    /// The flow's number and opening come from the flow table, not a copy in the
    /// connection; welcome peers are one shared copy; a flow is announced once.
    #[test]
    fn connections_read_their_flow_share_their_peers_and_are_announced_once() {
        let mut flows = JxtaFlows::new(StreamConfig::default(), Seen::default());
        flows.announce_jxta_flows();
        let (greeting, package) = (greeting(), package());
        for id in [1, 2] {
            let info = info(id);
            let mut conn = flows.open(&info);
            for (dir, data) in [
                (Dir::Forward, &greeting),
                (Dir::Reverse, &greeting),
                (Dir::Forward, &package),
            ] {
                let data = Delivery::Data {
                    data,
                    first_seen: 10,
                };
                assert!(matches!(
                    flows.deliver(&mut conn, &info, dir, data),
                    Interest::Keep
                ));
            }
            flows.close(&mut conn, &info, CloseReason::Fin);
        }
        let server = addr("10.0.0.2:9701");
        assert_eq!(
            flows.take_jxta_flows(),
            [
                (addr("10.0.0.1:40001"), server),
                (addr("10.0.0.1:40002"), server)
            ]
        );
        let seen = &flows.handler.0;
        let conns: Vec<_> = seen.iter().map(|s| (s.0, s.1)).collect();
        // Flow 1's SYN was seen: the first message of each direction says when.
        assert_eq!(
            conns,
            [
                (Some((1, 0)), Some(5)),
                (Some((1, 1)), Some(5)),
                (Some((1, 0)), None),
                (Some((2, 0)), None),
                (Some((2, 1)), None),
                (Some((2, 0)), None)
            ]
        );
        let hops: Vec<_> = seen.iter().filter_map(|s| s.2.as_ref()).collect();
        assert_eq!(hops.len(), 6);
        assert!(hops.iter().all(|h| h.as_str() == PEER));
        assert!(hops
            .iter()
            .all(|h| h.as_str().as_ptr() == hops[0].as_str().as_ptr()));
        assert_eq!(flows.welcome_peers.len(), 1);
    }
}
