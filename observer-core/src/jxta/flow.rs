//! JXTA over a TCP flow: the [`FlowHandler`] that gives each flow a stream parser per
//! direction (TCP or HTTP carrier, told apart by content), ties each direction to the
//! peer its welcome line names, and hands every framed message on to a
//! [`MessageHandler`] with where it was seen.

use std::net::SocketAddr;

use super::peer::shared_peer;
use super::StreamStart;
use super::{
    Carrier, DirParser, FramedMessage, JxtaStats, LastRouter, PeerId, StreamConfig, StreamEvent,
};
use crate::conntrack::{CloseReason, Delivery, Dir, FlowHandler, FlowInfo, Interest, TcpSegment};
use crate::transaction::cause::{ConnNotes, DeliveryCell, WireNotes};
use crate::UnixNanos;

/// Flows recognised as JXTA kept for [`JxtaFlows::take_jxta_flows`] between two calls.
const MAX_ANNOUNCED_FLOWS: usize = 65_536;

/// Where a message framed on a TCP flow was seen.
pub struct FlowMessage<'a> {
    pub carrier: Carrier,
    /// The flow's number (see [`FlowInfo::id`]).
    pub flow: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The peer IDs the two directions announced in their welcome lines (the hop
    /// identities that tell relayed legs apart); none on the HTTP carrier.
    pub hop_src: Option<PeerId>,
    pub hop_dst: Option<PeerId>,
    /// What the connection did around the message (`transaction::cause`).
    pub wire: WireNotes,
    /// The router document this direction sent last (see [`LastRouter`]).
    pub router: &'a mut LastRouter,
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
pub struct Conn {
    parsers: [DirParser; 2],
    peers: [Option<PeerId>; 2],
    /// Already announced in `take_jxta_flows`.
    announced: bool,
    /// What each message's wire notes are made of (`transaction::cause`).
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
    welcome_peers: crate::FastMap<PeerId, ()>,
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
            welcome_peers: crate::FastMap::default(),
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
            parsers: [
                DirParser::new(start, &self.stream_cfg),
                DirParser::new(start, &self.stream_cfg),
            ],
            peers: [None, None],
            announced: false,
            notes: ConnNotes::new(info.id, info.saw_syn.then_some(info.first_seen)),
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
            announced,
            notes,
            routers,
        } = conn;
        let parser = &mut parsers[dir.index()];
        let JxtaFlows {
            stream_stats,
            handler,
            jxta_flows,
            announce,
            frame_ts,
            welcome_peers,
            ..
        } = self;
        match delivery {
            Delivery::Data { data, first_seen } => {
                notes.data(dir.index(), first_seen, *frame_ts, data.len() as u64);
                let src = info.sender(dir);
                let dst = info.sender(dir.other());
                parser.push(
                    data,
                    first_seen,
                    stream_stats,
                    &mut |event, carrier| match event {
                        StreamEvent::Welcome(w) => {
                            // The welcome line ties this direction to its sender's peer ID:
                            // the hop identity that tells relayed legs apart.
                            peers[dir.index()] =
                                PeerId::parse(w.peer_id).map(|id| shared_peer(welcome_peers, id));
                        }
                        StreamEvent::Message(m) => {
                            let wire = notes.message(dir.index(), m.start, m.stop, m.framed_len);
                            let at = FlowMessage {
                                carrier,
                                flow: info.id,
                                src,
                                dst,
                                hop_src: peers[dir.index()].clone(),
                                hop_dst: peers[dir.other().index()].clone(),
                                wire,
                                router: &mut routers[dir.index()],
                            };
                            let handled = handler.message(&m, at);
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
                parser.gap(len, stream_stats)
            }
        }
        let jxta = parser.is_jxta();
        if jxta == Some(true) {
            // An HTTP polling channel's responses may all be empty: the requests
            // make it JXTA's (and the other way round).
            parsers[dir.other().index()].peer_is_jxta();
            if !*announced {
                *announced = true;
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

    fn close(&mut self, mut conn: Conn, _info: &FlowInfo, _reason: CloseReason) {
        for p in &mut conn.parsers {
            p.finish(&mut self.stream_stats);
        }
    }
}
