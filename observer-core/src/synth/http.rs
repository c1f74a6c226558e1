//! The JXTA HTTP transport sample (`captures/http.pcap`): edge peers behind a
//! firewall reach a peer's HTTP server (JXTA's default 9700, and 8080 to show that
//! detection does not depend on the port), POST their messages and poll for the
//! ones addressed to them (spec §1.5; JXSE's `HttpClientMessenger` and
//! `HttpMessageServlet`). Keep-alive, pipelined POSTs, a chunked request body,
//! Content-Length and chunked polling responses (one with two messages in one chunk,
//! one with a message split over two chunks), an empty 204 poll, a PING that is never
//! answered, a conversation relayed by bob (HTTP on both legs), and a plain web
//! download that must stay non-JXTA.
//!
//! The HTTP bytes are written out by hand here, independently of the observer's
//! HTTP parser; only the `jxmg` bodies use the library's message encoder. The truth
//! follows the documented timing rule: the first message of a request or response
//! starts at the first byte of its head, a further message of the same body at its own
//! first byte; a message stops at its last byte. First-seen times come from the
//! simulated wire's record of what it wrote, not from the decoder.
//!
//! Over 600 lines: one HTTP scenario written out exchange by exchange.

use std::net::SocketAddr;

use super::scenario::{Rendered, EPOCH};
use super::wire::{Placement, SendShape, Wire};
use crate::jim::{Document, Kind, Status};
use crate::jxta::{self, encode_message_v0, OwnedElement, PeerId};
use crate::transaction::cause::Flags;
use crate::transaction::{MatchMethod, Transaction, TxStatus};
use crate::UnixNanos;

pub const NAME: &str = "http";

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
const TIMEOUT: u64 = 10 * SEC;
const GROUP: &str = "59616261646162614E50472050325033";
const USER_AGENT: &str = "Java/1.6.0_45";

struct Peer {
    name: &'static str,
    id: PeerId,
    pipe: String,
}

/// One HTTP send under construction: bytes, and where each message's span lies in
/// them (the span rule above).
#[derive(Default)]
struct Blob {
    bytes: Vec<u8>,
    /// Offset of the head of the request/response whose body comes next, until its
    /// first message claims it.
    head_at: Option<usize>,
    spans: Vec<(usize, usize, usize)>,
}

impl Blob {
    fn head(&mut self, text: &str) {
        self.head_at = Some(self.bytes.len());
        self.bytes.extend_from_slice(text.as_bytes());
    }
    fn raw(&mut self, text: &str) {
        self.bytes.extend_from_slice(text.as_bytes());
    }
    /// A whole message as a Content-Length body (or inside one chunk).
    fn message(&mut self, msg: usize, bytes: &[u8]) {
        let own = self.bytes.len();
        let start = self.head_at.take().unwrap_or(own);
        self.bytes.extend_from_slice(bytes);
        self.spans.push((msg, start, self.bytes.len()));
    }
    /// A chunk holding exactly `data`.
    fn chunk(&mut self, data: &[u8]) -> (usize, usize) {
        self.raw(&format!("{:x}\r\n", data.len()));
        let at = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.raw("\r\n");
        (at, at + data.len())
    }
    /// A message as the data of one or more chunks, cut at `cuts`.
    fn chunked_message(&mut self, msg: usize, bytes: &[u8], cuts: &[usize]) {
        let mut from = 0;
        let mut first = None;
        let mut last = 0;
        for &c in cuts.iter().chain([bytes.len()].iter()) {
            let (a, b) = self.chunk(&bytes[from..c]);
            first.get_or_insert(a);
            last = b;
            from = c;
        }
        let start = self.head_at.take().or(first).unwrap_or(last);
        self.spans.push((msg, start, last));
    }
}

struct Sim {
    wire: Wire,
    peers: Vec<Peer>,
    /// (document, sender, receiver) of every JIM message.
    docs: Vec<(Document, usize, usize)>,
    /// Where each message went on the wire, leg by leg (two legs when relayed).
    spans: Vec<Vec<Placement>>,
    correlators: u64,
}

impl Sim {
    fn send(&mut self, t: UnixNanos, conn: usize, dir: usize, blob: Blob, shape: &SendShape) {
        let (placed, _) = self.wire.send(t, conn, dir, &[&blob.bytes], shape, 200_000);
        let base = placed[0].start;
        for (msg, a, b) in blob.spans {
            self.spans[msg].push(Placement {
                conn,
                dir,
                start: base + a as u64,
                end: base + b as u64,
            });
        }
    }

    fn ping(&mut self, from: usize, to: usize) -> usize {
        self.correlators += 1;
        let p = &self.peers[from];
        let doc = Document {
            kind: Kind::Ping,
            name: Some(p.name.to_string()),
            peer_id: Some(p.id.to_string()),
            correlator: Some(((1u64 << 62) + 7_000_000 + self.correlators).to_string()),
            ..Document::default()
        };
        self.docs.push((doc, from, to));
        self.spans.push(Vec::new());
        self.docs.len() - 1
    }

    fn pong(&mut self, ping: usize, status: Status) -> usize {
        let (ping_doc, poller, receiver) = &self.docs[ping];
        let (poller, receiver) = (*poller, *receiver);
        let p = &self.peers[receiver];
        let doc = Document {
            kind: Kind::Pong,
            name: Some(p.name.to_string()),
            peer_id: Some(p.id.to_string()),
            status: Some(status),
            correlator: ping_doc.correlator.clone(),
            ..Document::default()
        };
        self.docs.push((doc, receiver, poller));
        self.spans.push(Vec::new());
        self.docs.len() - 1
    }

    /// The `jxmg` body of a message, laid out as JXSE does for a unicast pipe.
    fn jxmg(&self, msg: usize, via: &str) -> Vec<u8> {
        self.jxmg_via(msg, via, self.docs[msg].1)
    }

    /// The same on a leg sent by `hop` (a relay forwarding: `<Last>` names it).
    fn jxmg_via(&self, msg: usize, via: &str, hop: usize) -> Vec<u8> {
        let (doc, src, dst) = &self.docs[msg];
        let (s, d) = (&self.peers[*src], &self.peers[*dst]);
        let last = &self.peers[hop];
        let text = |ns: &str, name: &str, mime: &str, content: String| OwnedElement {
            namespace: ns.into(),
            name: name.into(),
            mime: Some(mime.into()),
            content: content.into_bytes(),
            signature: None,
        };
        encode_message_v0(&[
            text("jim", "JimMessage", "text/xml;charset=UTF-8", doc.to_xml()),
            text(
                "jxta",
                "EndpointRouterMsg",
                "text/xml;charset=UTF-8",
                jxta::erm_xml(&s.id, &d.id, &format!("PipeService/{}", d.pipe), &last.id),
            ),
            text(
                "jxta",
                "EndpointSourceAddress",
                "text/plain;charset=UTF-8",
                format!("jxta://{}", last.id.unique()),
            ),
            text(
                "jxta",
                "EndpointDestinationAddress",
                "text/plain;charset=UTF-8",
                format!("{via}/EndpointService:jxta-NetGroup/EndpointRouter"),
            ),
        ])
    }
}

fn post_head(host: &str, len: usize) -> String {
    format!(
        "POST / HTTP/1.1\r\ncontent-length: {len}\r\ncontent-type: application/x-jxta-msg\r\n\
         User-Agent: {USER_AGENT}\r\nHost: {host}\r\nAccept: text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2\r\n\
         Connection: keep-alive\r\n\r\n"
    )
}

fn post_chunked_head(host: &str) -> String {
    format!(
        "POST / HTTP/1.1\r\ncontent-type: application/x-jxta-msg\r\nUser-Agent: {USER_AGENT}\r\n\
         Host: {host}\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
}

/// JXSE's polling request: `/<peer-unique>?<response timeout>,<extra timeout>,<dest>`;
/// an extra timeout of -1 asks for one message per response (Content-Length), 0 or
/// more lets the server stream several (chunked).
fn poll_head(peer: &PeerId, host: &str, extra: i64) -> String {
    format!(
        "GET /{}?30000,{extra},http://{host} HTTP/1.1\r\nUser-Agent: {USER_AGENT}\r\nHost: {host}\r\n\
         Accept: text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2\r\nConnection: keep-alive\r\n\r\n",
        peer.unique()
    )
}

const SERVER: &str = "Server: Jetty(6.1.26)\r\n";

fn ok_empty() -> String {
    format!("HTTP/1.1 200 OK\r\n{SERVER}Content-Length: 0\r\n\r\n")
}

fn ok_message_head(len: usize) -> String {
    format!(
        "HTTP/1.1 200 OK\r\n{SERVER}Content-Type: application/x-jxta-msg\r\nContent-Length: {len}\r\n\r\n"
    )
}

fn ok_chunked_head() -> String {
    format!(
        "HTTP/1.1 200 OK\r\n{SERVER}Content-Type: application/x-jxta-msg\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("literal address")
}

/// Renders the sample.
pub fn render() -> Rendered {
    let hex = |n: u64| format!("{:016X}{:016X}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15), n);
    let peer = |name: &'static str, n: u64| Peer {
        name,
        id: PeerId::parse(&format!("urn:jxta:uuid-{GROUP}{}03", hex(n))).expect("valid peer ID"),
        pipe: format!("urn:jxta:uuid-{GROUP}{}04", hex(n + 100)),
    };
    let mut sim = Sim {
        wire: Wire::new(),
        peers: vec![peer("alice", 1), peer("bob", 2), peer("carol", 3)],
        docs: Vec::new(),
        spans: Vec::new(),
        correlators: 0,
    };
    let (alice, bob, carol) = (0, 1, 2);
    let bob9700 = "10.0.1.2:9700";
    let bob8080 = "10.0.1.2:8080";
    let via9700 = format!("http://{bob9700}");
    let via8080 = format!("http://{bob8080}");
    let rtt = 300_000;
    let at = |ms: u64| EPOCH + ms * MS;
    let w = &mut sim.wire;
    // Alice: one connection for her POSTs, one for her polls; carol the same on 8080;
    // carol also browses the web.
    let post_a = w.connect(
        at(0),
        addr("10.0.1.1:49152"),
        addr(bob9700),
        [1000, 2000],
        rtt,
    );
    let poll_a = w.connect(
        at(5),
        addr("10.0.1.1:49153"),
        addr(bob9700),
        [3000, 4000],
        rtt,
    );
    let post_c = w.connect(
        at(10),
        addr("10.0.1.3:50001"),
        addr(bob8080),
        [5000, 6000],
        rtt,
    );
    let poll_c = w.connect(
        at(15),
        addr("10.0.1.3:50002"),
        addr(bob8080),
        [7000, 8000],
        rtt,
    );
    let web = w.connect(
        at(20),
        addr("10.0.1.3:50003"),
        addr("10.0.1.9:80"),
        [9000, 9100],
        rtt,
    );
    let plain = SendShape::default();
    let small = SendShape {
        mss: 400,
        segment_gap_ns: 60_000,
        ..SendShape::default()
    };

    let mut b = Blob::default();
    b.head(&poll_head(&sim.peers[alice].id, bob9700, 5000));
    sim.send(at(100), poll_a, 0, b, &plain);
    let mut b = Blob::default();
    b.head(&poll_head(&sim.peers[carol].id, bob8080, -1));
    sim.send(at(120), poll_c, 0, b, &plain);

    // Plain HTTP: a page (Content-Length) and a stylesheet (chunked), keep-alive.
    let mut b = Blob::default();
    b.raw(
        "GET / HTTP/1.1\r\nHost: 10.0.1.9\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\n\r\n",
    );
    sim.send(at(200), web, 0, b, &plain);
    let page = "<html><head><title>JXTA</title></head><body>hello</body></html>";
    let mut b = Blob::default();
    b.raw(&format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
        page.len()
    ));
    sim.send(at(215), web, 1, b, &plain);
    let mut b = Blob::default();
    b.raw("GET /style.css HTTP/1.1\r\nHost: 10.0.1.9\r\nUser-Agent: Mozilla/5.0\r\n\r\n");
    sim.send(at(260), web, 0, b, &plain);
    let mut b = Blob::default();
    b.raw("HTTP/1.1 200 OK\r\nContent-Type: text/css\r\nTransfer-Encoding: chunked\r\n\r\n");
    b.chunk(b"body { color: black; }\n");
    b.raw("0\r\n\r\n");
    sim.send(at(275), web, 1, b, &plain);

    // 1: alice PINGs bob (POST, Content-Length); bob's PONG comes on her polling
    // connection as the first chunk of a streamed response.
    let p1 = sim.ping(alice, bob);
    let m = sim.jxmg(p1, &via9700);
    let mut b = Blob::default();
    b.head(&post_head(bob9700, m.len()));
    b.message(p1, &m);
    sim.send(at(1000), post_a, 0, b, &plain);
    let mut b = Blob::default();
    b.raw(&ok_empty());
    sim.send(at(1003), post_a, 1, b, &plain);
    let q1 = sim.pong(p1, Status::Online);
    let m = sim.jxmg(q1, &via9700);
    let mut b = Blob::default();
    b.head(&ok_chunked_head());
    b.chunked_message(q1, &m, &[]);
    sim.send(at(1850), poll_a, 1, b, &plain);

    // 2: bob PINGs alice in the same streamed response, the message split over two
    // chunks; the response ends later and alice polls again, asking for one message
    // per response.
    let p2 = sim.ping(bob, alice);
    let m = sim.jxmg(p2, &via9700);
    let mut b = Blob::default();
    b.chunked_message(p2, &m, &[m.len() / 3]);
    sim.send(at(2400), poll_a, 1, b, &small);
    let mut b = Blob::default();
    b.raw("0\r\n\r\n");
    sim.send(at(2600), poll_a, 1, b, &plain);
    let mut b = Blob::default();
    b.head(&poll_head(&sim.peers[alice].id, bob9700, -1));
    sim.send(at(2610), poll_a, 0, b, &plain);

    // Carol's POST has a chunked body (two chunks).
    let p4 = sim.ping(carol, bob);
    let m = sim.jxmg(p4, &via8080);
    let mut b = Blob::default();
    b.head(&post_chunked_head(bob8080));
    b.chunked_message(p4, &m, &[100]);
    b.raw("0\r\n\r\n");
    sim.send(at(1500), post_c, 0, b, &plain);
    let mut b = Blob::default();
    b.raw(&ok_empty());
    sim.send(at(1504), post_c, 1, b, &plain);
    let q4 = sim.pong(p4, Status::Busy);
    let m = sim.jxmg(q4, &via8080);
    let mut b = Blob::default();
    b.head(&ok_message_head(m.len()));
    b.message(q4, &m);
    sim.send(at(2300), poll_c, 1, b, &plain);
    let mut b = Blob::default();
    b.head(&poll_head(&sim.peers[carol].id, bob8080, -1));
    sim.send(at(2310), poll_c, 0, b, &plain);

    // 3: alice answers bob and PINGs him again: two POSTs pipelined in one write,
    // cut into small segments; bob answers both requests at once.
    let q2 = sim.pong(p2, Status::Away);
    let p3 = sim.ping(alice, bob);
    let (m2, m3) = (sim.jxmg(q2, &via9700), sim.jxmg(p3, &via9700));
    let mut b = Blob::default();
    b.head(&post_head(bob9700, m2.len()));
    b.message(q2, &m2);
    b.head(&post_head(bob9700, m3.len()));
    b.message(p3, &m3);
    sim.send(at(3100), post_a, 0, b, &small);
    let mut b = Blob::default();
    b.raw(&ok_empty());
    b.raw(&ok_empty());
    sim.send(at(3105), post_a, 1, b, &plain);
    let q3 = sim.pong(p3, Status::Away);
    let m = sim.jxmg(q3, &via9700);
    let mut b = Blob::default();
    b.head(&ok_message_head(m.len()));
    b.message(q3, &m);
    sim.send(at(3900), poll_a, 1, b, &plain);
    let mut b = Blob::default();
    b.head(&poll_head(&sim.peers[alice].id, bob9700, 5000));
    sim.send(at(3910), poll_a, 0, b, &plain);

    // 5: bob PINGs carol on her poll; she answers with a POST.
    let p5 = sim.ping(bob, carol);
    let m = sim.jxmg(p5, &via8080);
    let mut b = Blob::default();
    b.head(&ok_message_head(m.len()));
    b.message(p5, &m);
    sim.send(at(4000), poll_c, 1, b, &plain);
    let mut b = Blob::default();
    b.head(&poll_head(&sim.peers[carol].id, bob8080, -1));
    sim.send(at(4010), poll_c, 0, b, &plain);
    let q5 = sim.pong(p5, Status::Online);
    let m = sim.jxmg(q5, &via8080);
    let mut b = Blob::default();
    b.head(&post_head(bob8080, m.len()));
    b.message(q5, &m);
    sim.send(at(4700), post_c, 0, b, &plain);
    let mut b = Blob::default();
    b.raw(&ok_empty());
    sim.send(at(4703), post_c, 1, b, &plain);

    // 6, 7: alice PINGs bob; bob's PONG and his own PING to alice leave together, two
    // messages back to back in one chunk of one response.
    let p6 = sim.ping(alice, bob);
    let m = sim.jxmg(p6, &via9700);
    let mut b = Blob::default();
    b.head(&post_head(bob9700, m.len()));
    b.message(p6, &m);
    sim.send(at(5000), post_a, 0, b, &plain);
    let mut b = Blob::default();
    b.raw(&ok_empty());
    sim.send(at(5002), post_a, 1, b, &plain);
    let q6 = sim.pong(p6, Status::Online);
    let p7 = sim.ping(bob, alice);
    let (m6, m7) = (sim.jxmg(q6, &via9700), sim.jxmg(p7, &via9700));
    let mut b = Blob::default();
    b.head(&ok_chunked_head());
    b.raw(&format!("{:x}\r\n", m6.len() + m7.len()));
    b.message(q6, &m6);
    b.message(p7, &m7);
    b.raw("\r\n0\r\n\r\n");
    sim.send(at(5800), poll_a, 1, b, &plain);
    let mut b = Blob::default();
    b.head(&poll_head(&sim.peers[alice].id, bob9700, -1));
    sim.send(at(5810), poll_a, 0, b, &plain);
    let q7 = sim.pong(p7, Status::Online);
    let m = sim.jxmg(q7, &via9700);
    let mut b = Blob::default();
    b.head(&post_head(bob9700, m.len()));
    b.message(q7, &m);
    sim.send(at(6500), post_a, 0, b, &plain);
    let mut b = Blob::default();
    b.raw(&ok_empty());
    sim.send(at(6502), post_a, 1, b, &plain);

    // Carol's poll runs out empty; she polls again.
    let mut b = Blob::default();
    b.raw(&format!("HTTP/1.1 204 No Content\r\n{SERVER}\r\n"));
    sim.send(at(7000), poll_c, 1, b, &plain);
    let mut b = Blob::default();
    b.head(&poll_head(&sim.peers[carol].id, bob8080, -1));
    sim.send(at(7010), poll_c, 0, b, &plain);

    // 8: carol PINGs bob, who never answers (a timeout); 9: alice and bob once more.
    let p8 = sim.ping(carol, bob);
    let m = sim.jxmg(p8, &via8080);
    let mut b = Blob::default();
    b.head(&post_head(bob8080, m.len()));
    b.message(p8, &m);
    sim.send(at(8000), post_c, 0, b, &plain);
    let mut b = Blob::default();
    b.raw(&ok_empty());
    sim.send(at(8002), post_c, 1, b, &plain);
    let p9 = sim.ping(alice, bob);
    let m = sim.jxmg(p9, &via9700);
    let mut b = Blob::default();
    b.head(&post_head(bob9700, m.len()));
    b.message(p9, &m);
    sim.send(at(9000), post_a, 0, b, &plain);
    let mut b = Blob::default();
    b.raw(&ok_empty());
    sim.send(at(9003), post_a, 1, b, &plain);
    let q9 = sim.pong(p9, Status::Online);
    let m = sim.jxmg(q9, &via9700);
    let mut b = Blob::default();
    b.head(&ok_message_head(m.len()));
    b.message(q9, &m);
    sim.send(at(9700), poll_a, 1, b, &plain);

    // 10, 11: carol and alice reach each other only through bob, a relay: each leg is
    // HTTP (carol's POST to bob, bob's polling response to alice, and back). The PING
    // starts on its first leg; the PONG stops on the leg that delivers it.
    let p10 = sim.ping(carol, alice);
    let m = sim.jxmg(p10, &via8080);
    let mut b = Blob::default();
    b.head(&post_head(bob8080, m.len()));
    b.message(p10, &m);
    sim.send(at(10_000), post_c, 0, b, &plain);
    let mut b = Blob::default();
    b.raw(&ok_empty());
    sim.send(at(10_002), post_c, 1, b, &plain);
    let mut b = Blob::default();
    b.head(&poll_head(&sim.peers[alice].id, bob9700, 5000));
    sim.send(at(9710), poll_a, 0, b, &plain);
    let m = sim.jxmg_via(p10, &via9700, bob);
    let mut b = Blob::default();
    b.head(&ok_chunked_head());
    b.chunked_message(p10, &m, &[]);
    sim.send(at(10_004), poll_a, 1, b, &plain);
    let q10 = sim.pong(p10, Status::Online);
    let p11 = sim.ping(alice, carol);
    let (m10, m11) = (sim.jxmg(q10, &via9700), sim.jxmg(p11, &via9700));
    let mut b = Blob::default();
    b.head(&post_head(bob9700, m10.len()));
    b.message(q10, &m10);
    b.head(&post_head(bob9700, m11.len()));
    b.message(p11, &m11);
    sim.send(at(10_600), post_a, 0, b, &plain);
    let mut b = Blob::default();
    b.raw(&ok_empty());
    b.raw(&ok_empty());
    sim.send(at(10_602), post_a, 1, b, &plain);
    // Bob forwards both to carol in one streamed response to her waiting poll (from
    // 7.01 s), then ends it.
    let (m10, m11) = (
        sim.jxmg_via(q10, &via8080, bob),
        sim.jxmg_via(p11, &via8080, bob),
    );
    let mut b = Blob::default();
    b.head(&ok_chunked_head());
    b.chunked_message(q10, &m10, &[]);
    b.chunked_message(p11, &m11, &[]);
    b.raw("0\r\n\r\n");
    sim.send(at(10_605), poll_c, 1, b, &plain);
    let q11 = sim.pong(p11, Status::Busy);
    let m = sim.jxmg(q11, &via8080);
    let mut b = Blob::default();
    b.head(&post_head(bob8080, m.len()));
    b.message(q11, &m);
    sim.send(at(11_300), post_c, 0, b, &plain);
    let mut b = Blob::default();
    b.raw(&ok_empty());
    sim.send(at(11_302), post_c, 1, b, &plain);
    let mut b = Blob::default();
    b.head(&poll_head(&sim.peers[carol].id, bob8080, -1));
    sim.send(at(10_610), poll_c, 0, b, &plain);
    let m = sim.jxmg_via(q11, &via9700, bob);
    let mut b = Blob::default();
    b.chunked_message(q11, &m, &[]);
    b.raw("0\r\n\r\n");
    sim.send(at(11_305), poll_a, 1, b, &plain);

    for c in [post_a, poll_a, post_c, poll_c, web] {
        sim.wire.close(at(19_000), c);
    }
    let pairs = [
        (p1, Some(q1)),
        (p2, Some(q2)),
        (p3, Some(q3)),
        (p4, Some(q4)),
        (p5, Some(q5)),
        (p6, Some(q6)),
        (p7, Some(q7)),
        (p8, None),
        (p9, Some(q9)),
        (p10, Some(q10)),
        (p11, Some(q11)),
    ];
    let truth = truth(&sim, &pairs);
    let expected = vec![Flags::default(); truth.len()];
    Rendered {
        wire: sim.wire,
        capture_start: 0,
        truth,
        expected,
        injected: Vec::new(),
    }
}

fn correlator_bytes(doc: &Document) -> u64 {
    doc.correlator
        .as_ref()
        .map_or(0, |c| format!("<correlator>{c}</correlator>").len() as u64)
}

fn truth(sim: &Sim, pairs: &[(usize, Option<usize>)]) -> Vec<Transaction> {
    let capture_end = sim.wire.last_written(0);
    let seen = |msg: usize| {
        // A PING starts on its first leg, a PONG stops on its last (delivering) one;
        // the sizes are those of the first (originating) leg, as for relayed TCP.
        let legs = &sim.spans[msg];
        let (first, last) = (legs.first().expect("sent"), legs.last().expect("sent"));
        let (lo, _) = sim.wire.seen(*first, 0).expect("every byte was captured");
        let (_, hi) = sim.wire.seen(*last, 0).expect("every byte was captured");
        (lo, hi, first.end - first.start)
    };
    let mut out: Vec<Transaction> = pairs
        .iter()
        .map(|&(ping, pong)| {
            let (doc, poller, receiver) = &sim.docs[ping];
            let (start, _, ping_bytes) = seen(ping);
            let (p, r) = (&sim.peers[*poller], &sim.peers[*receiver]);
            let mut t = Transaction {
                start,
                stop: None,
                poller_name: Some(p.name.to_string().into()),
                poller_id: Some(p.id.clone()),
                receiver_name: Some(r.name.to_string().into()),
                receiver_id: Some(r.id.clone()),
                receiver_status: None,
                status: TxStatus::Open,
                correlator: doc.correlator.as_deref().map(Into::into),
                match_method: None,
                ping_bytes,
                pong_bytes: None,
                correlator_overhead_bytes: correlator_bytes(doc),
                cause: Default::default(),
            };
            match pong {
                Some(q) => {
                    let (_, stop, bytes) = seen(q);
                    let qdoc = &sim.docs[q].0;
                    t.stop = Some(stop);
                    t.status = TxStatus::Ok;
                    t.receiver_status = qdoc.status;
                    t.pong_bytes = Some(bytes);
                    t.correlator_overhead_bytes += correlator_bytes(qdoc);
                    t.match_method = Some(MatchMethod::Correlator);
                }
                None if capture_end - start >= TIMEOUT => {
                    t.stop = Some(start + TIMEOUT);
                    t.status = TxStatus::Timeout;
                }
                None => {}
            }
            t
        })
        .collect();
    out.sort_by(Transaction::report_order);
    out
}
