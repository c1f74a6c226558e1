//! The JXTA TCP transport of the reference peer: welcome exchange, then one message
//! package per message, both directions on one connection. Reading goes through the
//! library's [`StreamParser`] (the same code the observer decodes captures with);
//! writing through `encode_welcome`, `encode_message_v0` and `encode_package`.
//!
//! One connection per peer pair carries both directions, like JXSE. When a second
//! connection to the same peer ID completes its welcome (both peers dialled at once),
//! both sides keep the one *initiated by the peer with the smaller peer ID* and close
//! the other: the rule needs no negotiation, and both ends reach the same answer.
//!
//! Over 600 lines: read side, write side and handling share one connection's state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::arm::PongStamp;
use super::arm::{correlator_element_bytes, now_ns};
use super::timestamping::{self, SocketStamps, StampedRead, StampedWrite};
use super::{CommandError, ConnEntry, Shared};
use crate::jim::{self, Document, Kind};
use crate::jxta::{
    self, decode_message, encode_message_v0, encode_package, encode_welcome, HeaderOrder,
    JxtaStats, Malformed, OwnedElement, PeerId, StreamConfig, StreamEvent, StreamParser,
    StreamStart, WelcomeVersion,
};
use crate::UnixNanos;

/// The body prefix of the MESSAGE document an offline peer answers a MESSAGE with.
pub const REFUSAL_PREFIX: &str = "REFUSED:";

/// Longest wait for the other side's welcome line.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes accepted before the welcome line must have arrived.
const MAX_BEFORE_WELCOME: usize = 4096 + 2;
/// Messages queued for one connection's writer.
const QUEUE: usize = 1024;

/// What the writer task sends.
#[derive(Debug)]
pub enum Out {
    /// A PING: the transaction starts immediately before its bytes are written.
    Ping {
        receiver: usize,
        corr: u64,
        corr_bytes: u64,
        bytes: Vec<u8>,
    },
    /// Any other message (PONG, MESSAGE), counted under `what`.
    Bytes { what: &'static str, bytes: Vec<u8> },
}

/// Builds one framed message as JXSE 2.5 lays out a unicast pipe message: the JIM
/// document first (`jim:JimMessage`, `text/xml`), then the endpoint router element
/// with `<Dest>` = `jxta://<dest>/PipeService/<dest's input pipe>`, then the endpoint
/// source and destination addresses; package headers `content-type` first.
pub fn build_package(
    doc: &Document,
    src: &PeerId,
    src_addr: &str,
    dest: &PeerId,
    dest_addr: &str,
) -> Vec<u8> {
    let pipe = super::config::derived_pipe_id(dest);
    let xml = "text/xml;charset=UTF-8";
    let text = "text/plain;charset=UTF-8";
    let elements = [
        OwnedElement::new("jim", "JimMessage", Some(xml), doc.to_xml()),
        OwnedElement::new(
            "jxta",
            "EndpointRouterMsg",
            Some(xml),
            jxta::erm_xml(src, dest, &format!("PipeService/{pipe}"), src),
        ),
        OwnedElement::new(
            "jxta",
            "EndpointSourceAddress",
            Some(text),
            format!("tcp://{src_addr}"),
        ),
        OwnedElement::new(
            "jxta",
            "EndpointDestinationAddress",
            Some(text),
            format!("tcp://{dest_addr}/EndpointService:jxta-NetGroup/EndpointRouter"),
        ),
    ];
    let body = encode_message_v0(&elements);
    let mut out = Vec::with_capacity(body.len() + 64);
    encode_package(&body, HeaderOrder::TypeFirst, None, &mut out);
    out
}

/// A message read from the socket, owned (the parser's events borrow its buffer).
enum Received {
    Welcome {
        peer: Option<PeerId>,
        public_addr: String,
    },
    Message {
        stop: UnixNanos,
        /// The kernel's RX timestamp of its last segment, as far as the read can tell.
        socket_stop: PongStamp,
        framed_len: u64,
        body: Vec<u8>,
    },
}

/// Reads once from the socket and parses what arrived. `Err` names why the connection
/// must close (end of stream or bad input).
async fn read_some<R: AsyncRead + Unpin>(
    rd: &mut R,
    parser: &mut StreamParser,
    buf: &mut [u8],
    stamps: Option<&SocketStamps>,
) -> Result<Vec<Received>, &'static str> {
    let n = match rd.read(buf).await {
        Ok(0) => return Err("eof"),
        Ok(n) => n,
        Err(_) => return Err("io_error"),
    };
    // The stop time of a message: right after the read that completed it returned.
    let now = now_ns();
    let rx = stamps.and_then(SocketStamps::take_rx);
    // Messages before the read's last one ended before its last byte: the read's
    // timestamp is not theirs.
    let earlier = timestamping::pong_stamp(rx, false);
    let mut stats = JxtaStats::default();
    let mut got = Vec::new();
    parser.push(&buf[..n], now, &mut stats, &mut |ev| match ev {
        StreamEvent::Welcome(w) => got.push(Received::Welcome {
            peer: w.peer(),
            public_addr: w.public_addr.to_string(),
        }),
        StreamEvent::Message(m) => got.push(Received::Message {
            stop: m.stop,
            socket_stop: earlier,
            framed_len: m.framed_len,
            body: m.body.to_vec(),
        }),
    });
    if let Some(Received::Message { socket_stop, .. }) = got.last_mut() {
        *socket_stop = timestamping::pong_stamp(rx, parser.buffered() == 0);
    }
    if let Some(kind) = stats.malformed.keys().next() {
        return Err(match kind {
            Malformed::TooLarge => "oversized_frame",
            Malformed::BadWelcome => "bad_welcome",
            _ => "bad_framing",
        });
    }
    if stats.skipped_bytes > 0 || stats.resyncs > 0 || stats.gaps > 0 {
        return Err("garbage");
    }
    if parser.is_jxta() == Some(false) {
        return Err("garbage");
    }
    Ok(got)
}

/// Runs one connection to its end: welcome exchange, registration, then reading
/// (PINGs answered, PONGs stopping transactions, MESSAGEs delivered or refused) while
/// a writer task sends what the rest of the peer queues.
pub async fn run(shared: Arc<Shared>, stream: TcpStream, outbound: bool, expected: Option<PeerId>) {
    let remote = match stream.peer_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let local = stream.local_addr().ok();
    let _ = stream.set_nodelay(true);
    // Before anything is written: the TX timestamps' keys count bytes from here.
    if let Err(e) = timestamping::enable(&stream) {
        tracing::warn!(
            "{remote}: no kernel timestamps ({e}); the socket columns of this connection's records stay empty"
        );
        shared.count("socket_timestamps_unavailable", 1);
        let (rd, wr) = stream.into_split();
        serve(shared, rd, wr, remote, local, outbound, expected, None).await;
        return;
    }
    let stream = Arc::new(stream);
    let stamps = Arc::new(SocketStamps::default());
    let drain = tokio::spawn(timestamping::drain_tx(
        stream.clone(),
        stamps.clone(),
        shared.clone(),
    ));
    let rd = StampedRead {
        stream: stream.clone(),
        stamps: stamps.clone(),
        shared: shared.clone(),
    };
    let wr = StampedWrite {
        stream,
        stamps: stamps.clone(),
    };
    serve(
        shared,
        rd,
        wr,
        remote,
        local,
        outbound,
        expected,
        Some(stamps),
    )
    .await;
    drain.abort();
}

/// The connection's life over any byte stream (a TCP socket in the peer; an in-memory
/// pipe in the fuzz target and tests). `stamps`: the kernel timestamps of a socket
/// read and written through [`StampedRead`] and [`StampedWrite`].
#[allow(clippy::too_many_arguments)]
pub async fn serve<R, W>(
    shared: Arc<Shared>,
    mut rd: R,
    mut wr: W,
    remote: SocketAddr,
    local: Option<SocketAddr>,
    outbound: bool,
    expected: Option<PeerId>,
    stamps: Option<Arc<SocketStamps>>,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let public = shared.public_addr(local);
    let welcome = encode_welcome(
        &format!("tcp://{remote}"),
        &format!("tcp://{public}"),
        shared.cfg.peer_id.as_str(),
        false,
        WelcomeVersion::V1_1,
    );
    if wr.write_all(&welcome).await.is_err() {
        shared.count("connections_failed", 1);
        return;
    }
    shared.count("bytes_sent", welcome.len() as u64);
    let mut parser = StreamParser::new(
        StreamStart::Beginning,
        &StreamConfig {
            max_message: shared.cfg.max_message,
            max_resync_scan: MAX_BEFORE_WELCOME as u64,
        },
    );
    let mut buf = vec![0u8; 64 * 1024];

    // The other side's welcome line.
    let mut pending = Vec::new();
    let deadline = tokio::time::Instant::now() + WELCOME_TIMEOUT;
    let (peer, peer_public) = loop {
        let r = tokio::time::timeout_at(
            deadline,
            read_some(&mut rd, &mut parser, &mut buf, stamps.as_deref()),
        )
        .await;
        let events = match r {
            Err(_) => {
                shared.bad_input("welcome_timeout");
                return;
            }
            Ok(Err("eof")) | Ok(Err("io_error")) => return,
            Ok(Err(why)) => {
                shared.bad_input(why);
                return;
            }
            Ok(Ok(ev)) => ev,
        };
        let mut it = events.into_iter();
        match it.next() {
            Some(Received::Welcome {
                peer: Some(p),
                public_addr,
            }) => {
                pending.extend(it);
                break (p, public_addr);
            }
            Some(_) => {
                // A message before any welcome, or a welcome without a peer ID.
                shared.bad_input("no_welcome");
                return;
            }
            None if parser.buffered() > MAX_BEFORE_WELCOME => {
                shared.bad_input("no_welcome");
                return;
            }
            None => {}
        }
    };
    if let Some(exp) = &expected {
        if *exp != peer {
            tracing::warn!("{remote}: expected peer {exp}, welcome says {peer}; closing");
            shared.count("connections_wrong_peer", 1);
            return;
        }
    }
    if peer == shared.cfg.peer_id {
        shared.count("connections_to_self", 1);
        return;
    }
    let peer_addr = peer_public
        .strip_prefix("tcp://")
        .map(str::to_string)
        .unwrap_or_else(|| remote.to_string());

    // Registration (one connection per peer pair).
    let (tx, rx) = mpsc::channel::<Out>(QUEUE);
    let initiator = if outbound {
        shared.cfg.peer_id.clone()
    } else {
        peer.clone()
    };
    let id = shared.next_conn_id();
    let close = Arc::new(tokio::sync::Notify::new());
    if !shared.register(
        &peer,
        ConnEntry {
            id,
            initiator,
            tx: tx.clone(),
            close: close.clone(),
            peer_addr: peer_addr.clone(),
        },
    ) {
        shared.count("connections_duplicate_closed", 1);
        return;
    }
    shared.count(
        if outbound {
            "connections_dialed"
        } else {
            "connections_accepted"
        },
        1,
    );
    tracing::info!(
        "connected to {peer} ({remote}, {})",
        if outbound { "out" } else { "in" }
    );

    let writer = tokio::spawn(write_loop(shared.clone(), wr, rx, stamps.clone()));
    let ctx = Ctx {
        shared: shared.clone(),
        peer: peer.clone(),
        peer_addr,
        public,
        tx,
    };
    let reason = {
        let reading = async {
            for r in pending {
                if let Err(why) = ctx.handle(r).await {
                    return why;
                }
            }
            loop {
                match read_some(&mut rd, &mut parser, &mut buf, stamps.as_deref()).await {
                    Ok(evs) => {
                        for r in evs {
                            if let Err(why) = ctx.handle(r).await {
                                return why;
                            }
                        }
                    }
                    Err(why) => return why,
                }
            }
        };
        tokio::select! {
            why = reading => why,
            _ = close.notified() => "replaced",
        }
    };
    if !matches!(reason, "eof" | "io_error" | "replaced") {
        shared.bad_input(reason);
    }
    tracing::info!("connection to {} ({remote}) closed: {reason}", ctx.peer);
    shared.unregister(&ctx.peer, id);
    shared.count("connections_closed", 1);
    drop(ctx);
    writer.abort();
}

async fn write_loop<W: AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    mut wr: W,
    mut rx: mpsc::Receiver<Out>,
    stamps: Option<Arc<SocketStamps>>,
) {
    while let Some(out) = rx.recv().await {
        let (bytes, ping) = match out {
            Out::Ping {
                receiver,
                corr,
                corr_bytes,
                bytes,
            } => {
                // ARM start: immediately before the write.
                if !shared
                    .arm
                    .start(receiver, corr, bytes.len() as u64, corr_bytes)
                {
                    continue;
                }
                if let Some(st) = &stamps {
                    st.ping_expected(corr, bytes.len() as u64, &shared.arm);
                }
                (bytes, Some(corr))
            }
            Out::Bytes { what, bytes } => {
                shared.count(what, 1);
                (bytes, None)
            }
        };
        if wr.write_all(&bytes).await.is_err() {
            if let Some(c) = ping {
                shared.arm.abort(c);
            }
            break;
        }
        if ping.is_some() {
            shared.count("pings_sent", 1);
        }
        shared.count("bytes_sent", bytes.len() as u64);
    }
    let _ = wr.shutdown().await;
}

/// What handling a received message needs.
struct Ctx {
    shared: Arc<Shared>,
    peer: PeerId,
    peer_addr: String,
    public: SocketAddr,
    tx: mpsc::Sender<Out>,
}

impl Ctx {
    fn package(&self, doc: &Document) -> Vec<u8> {
        build_package(
            doc,
            &self.shared.cfg.peer_id,
            &self.public.to_string(),
            &self.peer,
            &self.peer_addr,
        )
    }

    async fn handle(&self, r: Received) -> Result<(), &'static str> {
        let (stop, socket_stop, framed_len, body) = match r {
            Received::Welcome { .. } => return Err("second_welcome"),
            Received::Message {
                stop,
                socket_stop,
                framed_len,
                body,
            } => (stop, socket_stop, framed_len, body),
        };
        let shared = &self.shared;
        shared.count("bytes_received", framed_len);
        let msg = decode_message(&body).map_err(|_| "bad_message")?;
        let mut doc = None;
        for el in &msg.elements {
            match jim::parse(el.content) {
                Ok(Some(d)) => {
                    doc = Some(d);
                    break;
                }
                Ok(None) => {}
                Err(_) => return Err("malformed_xml"),
            }
        }
        let Some(doc) = doc else {
            shared.count("non_jim_messages_received", 1);
            return Ok(());
        };
        match doc.kind {
            Kind::Ping => {
                shared.count("pings_received", 1);
                let state = shared.state();
                let pong = Document {
                    kind: Kind::Pong,
                    name: Some(shared.cfg.name.clone()),
                    peer_id: Some(shared.cfg.peer_id.as_str().to_string()),
                    status: Some(state),
                    // The PONG copies the PING's correlator, whatever its form.
                    correlator: if shared.cfg.correlator {
                        doc.correlator.clone()
                    } else {
                        None
                    },
                    ..Document::default()
                };
                let bytes = self.package(&pong);
                let mut delay = shared.reply_delay();
                let nth = shared.next_ping_seen();
                let corr = doc.correlator.as_deref().unwrap_or("");
                let poller = doc.name.as_deref().unwrap_or("");
                // Scripted injections: logged with the correlator, which is how a
                // scenario knows which transactions carry them.
                if let Some(x) = shared.cfg.extra_delay.filter(|x| x.hits(nth)) {
                    delay += x.what;
                    shared.count("injected_delays", 1);
                    tracing::info!(
                        nth,
                        poller,
                        correlator = corr,
                        extra_ms = x.what.as_millis() as u64,
                        "injected: PONG delayed"
                    );
                }
                let mut ahead = None;
                if let Some(x) = shared.cfg.message_before_pong.filter(|x| x.hits(nth)) {
                    let message = Document {
                        kind: Kind::Message,
                        from: Some(shared.cfg.name.clone()),
                        to: Some(poller.to_string()),
                        body: Some("x".repeat(usize::try_from(x.what).unwrap_or(0))),
                        ..Document::default()
                    };
                    let bytes = self.package(&message);
                    shared.count("injected_messages", 1);
                    tracing::info!(
                        nth,
                        poller,
                        correlator = corr,
                        bytes = bytes.len(),
                        "injected: MESSAGE ahead of the PONG"
                    );
                    ahead = Some(Out::Bytes {
                        what: "messages_sent",
                        bytes,
                    });
                }
                let tx = self.tx.clone();
                let out = Out::Bytes {
                    what: "pongs_sent",
                    bytes,
                };
                if delay.is_zero() {
                    if let Some(m) = ahead {
                        let _ = tx.send(m).await;
                    }
                    let _ = tx.send(out).await;
                } else {
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        if let Some(m) = ahead {
                            let _ = tx.send(m).await;
                        }
                        let _ = tx.send(out).await;
                    });
                }
            }
            Kind::Pong => {
                shared.count("pongs_received", 1);
                let Some(receiver) = shared.buddy_index(&self.peer) else {
                    shared.count("pongs_unsolicited", 1);
                    return Ok(());
                };
                let corr = match &doc.correlator {
                    Some(c) => match c.parse::<u64>() {
                        Ok(v) => Some(v),
                        Err(_) => {
                            shared.count("pongs_unmatched", 1);
                            return Ok(());
                        }
                    },
                    None => None,
                };
                if !shared.arm.stop(
                    receiver,
                    corr,
                    doc.status,
                    framed_len,
                    u64::from(doc.correlator_bytes),
                    stop,
                    socket_stop,
                ) {
                    shared.count("pongs_unmatched", 1);
                }
            }
            Kind::Message => {
                let body = doc.body.clone().unwrap_or_default();
                let from = doc.from.clone().unwrap_or_else(|| self.peer.to_string());
                if body.starts_with(REFUSAL_PREFIX) {
                    shared.count("messages_refused_by_peer", 1);
                    shared.note_message(&from, &body, true);
                    return Ok(());
                }
                if shared.state() == jim::Status::Offline {
                    shared.count("messages_refused", 1);
                    let refusal = Document {
                        kind: Kind::Message,
                        from: Some(shared.cfg.name.clone()),
                        to: Some(from),
                        body: Some(format!("{REFUSAL_PREFIX} {} is offline", shared.cfg.name)),
                        ..Document::default()
                    };
                    let bytes = self.package(&refusal);
                    let _ = self
                        .tx
                        .send(Out::Bytes {
                            what: "refusals_sent",
                            bytes,
                        })
                        .await;
                } else {
                    shared.count("messages_received", 1);
                    shared.note_message(&from, &body, false);
                }
            }
        }
        Ok(())
    }
}

/// Builds the PING for `receiver` and queues it on its connection.
pub fn queue_ping(shared: &Shared, receiver: usize) -> bool {
    let buddy = &shared.cfg.buddies[receiver];
    let Some((tx, peer_addr)) = shared.sender(&buddy.peer_id) else {
        shared.count("pings_not_sent_unconnected", 1);
        return false;
    };
    let corr = shared.arm.next_correlator();
    let ping = Document {
        kind: Kind::Ping,
        name: Some(shared.cfg.name.clone()),
        peer_id: Some(shared.cfg.peer_id.as_str().to_string()),
        correlator: shared.cfg.correlator.then(|| corr.to_string()),
        ..Document::default()
    };
    let public = shared.public_addr(None);
    let bytes = build_package(
        &ping,
        &shared.cfg.peer_id,
        &public.to_string(),
        &buddy.peer_id,
        &peer_addr,
    );
    let corr_bytes = if shared.cfg.correlator {
        correlator_element_bytes(corr)
    } else {
        0
    };
    if tx
        .try_send(Out::Ping {
            receiver,
            corr,
            corr_bytes,
            bytes,
        })
        .is_err()
    {
        shared.count("pings_not_sent_queue_full", 1);
        return false;
    }
    true
}

/// Queues a MESSAGE document to the buddy called `to`.
pub fn queue_message(shared: &Shared, to: &str, body: &str) -> Result<(), CommandError> {
    let buddy = shared
        .cfg
        .buddies
        .iter()
        .find(|b| b.name == to)
        .ok_or_else(|| CommandError::NoBuddy(to.to_string()))?;
    let (tx, peer_addr) = shared
        .sender(&buddy.peer_id)
        .ok_or_else(|| CommandError::NotConnected(to.to_string()))?;
    let doc = Document {
        kind: Kind::Message,
        from: Some(shared.cfg.name.clone()),
        to: Some(to.to_string()),
        body: Some(body.to_string()),
        ..Document::default()
    };
    let public = shared.public_addr(None);
    let bytes = build_package(
        &doc,
        &shared.cfg.peer_id,
        &public.to_string(),
        &buddy.peer_id,
        &peer_addr,
    );
    tx.try_send(Out::Bytes {
        what: "messages_sent",
        bytes,
    })
    .map_err(|_| CommandError::QueueFull(to.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::config::derived_peer_id;

    /// The read's RX timestamp goes to the message whose last byte ends the read, and
    /// only when nothing was left queued behind the read; every other message of the
    /// read is withheld (the timestamp is a later segment's), never stamped wrong.
    #[tokio::test(flavor = "current_thread")]
    async fn a_reads_timestamp_is_the_last_messages_only() {
        let (a, b) = (derived_peer_id("alice"), derived_peer_id("bob"));
        let doc = Document {
            kind: Kind::Pong,
            ..Document::default()
        };
        let pkg = build_package(&doc, &b, "127.0.0.1:9702", &a, "127.0.0.1:9701");
        let two = [pkg.as_slice(), pkg.as_slice()].concat();
        let half = pkg.len() / 2;
        let mut parser = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
        let mut buf = vec![0u8; 64 * 1024];
        let stamps = SocketStamps::default();
        let stamped = |got: Vec<Received>| -> Vec<PongStamp> {
            got.into_iter()
                .filter_map(|r| match r {
                    Received::Message { socket_stop, .. } => Some(socket_stop),
                    Received::Welcome { .. } => None,
                })
                .collect()
        };
        // (bytes of one read, nothing queued behind it, the messages' stamps)
        let reads: [(&[u8], bool, &[PongStamp]); 5] = [
            (&two, true, &[PongStamp::Withheld, PongStamp::At(42)]),
            (&two, false, &[PongStamp::Withheld, PongStamp::Withheld]),
            // A message and half the next: the read ends inside the second.
            (&two[..pkg.len() + half], true, &[PongStamp::Withheld]),
            (&pkg[half..], true, &[PongStamp::At(42)]),
            (&pkg, true, &[PongStamp::At(42)]),
        ];
        for (bytes, drained, want) in reads {
            stamps.record_rx(42, drained);
            let mut rd = bytes;
            let got = read_some(&mut rd, &mut parser, &mut buf, Some(&stamps))
                .await
                .expect("messages");
            assert_eq!(
                stamped(got),
                want,
                "{} bytes, drained {drained}",
                bytes.len()
            );
        }
        // Without kernel timestamps, no message has one.
        let mut rd = two.as_slice();
        let got = read_some(&mut rd, &mut parser, &mut buf, None)
            .await
            .unwrap();
        assert_eq!(stamped(got), [PongStamp::None, PongStamp::None]);
    }

    #[test]
    /// Our encoder against our decoder: it catches a change to one that the other does
    /// not follow, not a mistake both share. The independent checks of what the peer
    /// writes are tshark's decode of a real session (tests/peer.rs, `check_capture`)
    /// and the hand-written vectors of tests/wire_vectors.rs.
    fn package_round_trips_through_our_decoder() {
        let (a, b) = (derived_peer_id("alice"), derived_peer_id("bob"));
        let doc = Document {
            kind: Kind::Ping,
            name: Some("alice".into()),
            peer_id: Some(a.as_str().into()),
            correlator: Some("4611686018427387905".into()),
            ..Document::default()
        };
        let pkg = build_package(&doc, &a, "127.0.0.1:9701", &b, "127.0.0.1:9702");
        let mut p = StreamParser::new(StreamStart::Beginning, &StreamConfig::default());
        let mut stats = JxtaStats::default();
        let mut bodies = Vec::new();
        p.push(&pkg, 1, &mut stats, &mut |e| {
            if let StreamEvent::Message(m) = e {
                assert_eq!(m.framed_len, pkg.len() as u64);
                bodies.push(m.body.to_vec());
            }
        });
        assert_eq!(bodies.len(), 1);
        let msg = decode_message(&bodies[0]).unwrap();
        let names: Vec<String> = msg
            .elements
            .iter()
            .map(|e| format!("{}:{}", e.namespace, e.name))
            .collect();
        assert_eq!(
            names,
            [
                "jim:JimMessage",
                "jxta:EndpointRouterMsg",
                "jxta:EndpointSourceAddress",
                "jxta:EndpointDestinationAddress"
            ]
        );
        let addr = jxta::addressing(&msg);
        assert_eq!(addr.src_peer.as_ref(), Some(&a));
        assert_eq!(addr.dst_peer.as_ref(), Some(&b));
        assert_eq!(addr.pipe_id, Some(crate::peer::config::derived_pipe_id(&b)));
        let d = jim::parse(msg.elements[0].content).unwrap().unwrap();
        assert_eq!(d.correlator.as_deref(), Some("4611686018427387905"));
        assert_eq!(
            u64::from(d.correlator_bytes),
            correlator_element_bytes(4611686018427387905)
        );
    }
}
