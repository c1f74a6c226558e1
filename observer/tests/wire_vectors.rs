//! Test vectors written byte by byte from `docs/spec/jxta-wire.md`, for what
//! tshark cannot check and our own encoder must not be the truth of: JXSE 2.7's layout
//! (`content-length` first, `cbid-` peer IDs, an `EndpointRouterMsg-fingerprint` element
//! with no MIME type, on which tshark 4.0 gives up) and the `jxmg` version 1 format.
//! Only TCP/IP framing comes from the library (`synth::wire`); every JXTA byte is here.

use std::net::SocketAddr;

use observer::capture::WriteFormat;
use observer::jxta::{self, HeaderParse, PeerId};
use observer::packet::build::LinkVariant;
use observer::runtime::{self, PipelineConfig};
use observer::synth::wire::{SendShape, Wire};
use observer::transaction::{MatchMethod, TxStatus};

const ALICE: &str = "urn:jxta:cbid-0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D03";
const BOB: &str = "urn:jxta:cbid-F0E1D2C3B4A5968778695A4B3C2D1E0F1234567803";
const PIPE: &str =
    "urn:jxta:uuid-59616261646162614E50472050325033CB46B8AEE7966C22B261FF922F7B87F904";

const SOURCE_ADDR: &str = "tcp://10.0.0.1:9701";
/// JXSE 2.7 names the initiator's ephemeral port here.
const DEST_ADDR: &str = "tcp://10.0.0.2:40000/EndpointService:jxta-NetGroup/EndpointRouter";

fn u16be(n: usize) -> [u8; 2] {
    u16::try_from(n).expect("fits 16 bits").to_be_bytes()
}

fn u32be(n: usize) -> [u8; 4] {
    u32::try_from(n).expect("fits 32 bits").to_be_bytes()
}

/// `jxta://cbid-…` as the router writes a peer (spec §3.1).
fn router_addr(urn: &str) -> String {
    format!("jxta://{}", urn.trim_start_matches("urn:jxta:"))
}

fn erm(src: &str, dst: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE jxta:ERM>\n\
         <jxta:ERM xmlns:jxta=\"http://jxta.org\" xml:space=\"preserve\">\
         <Src>{}</Src><Dest>{}/PipeService/{PIPE}</Dest><Last>{}</Last><Fwd/><Rvs/></jxta:ERM>",
        router_addr(src),
        router_addr(dst),
        router_addr(src)
    )
}

fn ping_xml(correlator: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PING><Buddy><name>alice</name>\
         <peerID>{ALICE}</peerID></Buddy><correlator>{correlator}</correlator></PING>"
    )
}

fn pong_xml(correlator: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PONG><BuddyStatus><name>bob</name>\
         <peerID>{BOB}</peerID><status>away</status></BuddyStatus>\
         <correlator>{correlator}</correlator></PONG>"
    )
}

/// A `jxmg` version 0 message as JXSE 2.7 routes it (spec §2.1, §3.1 and "JXSE 2.5 and
/// 2.7"): the JIM document in namespace `jim` (id 2), then the router's element, its
/// fingerprint (flags 0x00: no MIME type) and the two endpoint addresses in `jxta` (id 1).
fn jxse27_body(jim: &str, src: &str, dst: &str, fingerprint: &[u8; 20]) -> Vec<u8> {
    let xml_type = b"text/xml;charset=UTF-8";
    let text_type = b"text/plain;charset=UTF-8";
    let erm = erm(src, dst);
    let (source, dest) = (SOURCE_ADDR.as_bytes(), DEST_ADDR.as_bytes());
    let mut b = Vec::new();
    b.extend_from_slice(b"jxmg"); // signature
    b.push(0x00); // version 0
    b.extend_from_slice(&[0x00, 0x01]); // one extra namespace...
    b.extend_from_slice(&[0x00, 0x03]);
    b.extend_from_slice(b"jim"); // ...which gets id 2
    b.extend_from_slice(&[0x00, 0x05]); // five elements
                                        // jim:JimMessage, HAS_TYPE
    b.extend_from_slice(b"jxel");
    b.extend_from_slice(&[0x02, 0x01, 0x00, 0x0a]);
    b.extend_from_slice(b"JimMessage");
    b.extend_from_slice(&[0x00, 0x16]);
    b.extend_from_slice(xml_type);
    b.extend_from_slice(&u32be(jim.len()));
    b.extend_from_slice(jim.as_bytes());
    // jxta:EndpointRouterMsg, HAS_TYPE
    b.extend_from_slice(b"jxel");
    b.extend_from_slice(&[0x01, 0x01, 0x00, 0x11]);
    b.extend_from_slice(b"EndpointRouterMsg");
    b.extend_from_slice(&[0x00, 0x16]);
    b.extend_from_slice(xml_type);
    b.extend_from_slice(&u32be(erm.len()));
    b.extend_from_slice(erm.as_bytes());
    // jxta:EndpointRouterMsg-fingerprint, flags 0x00: no MIME type field at all
    b.extend_from_slice(b"jxel");
    b.extend_from_slice(&[0x01, 0x00, 0x00, 0x1d]);
    b.extend_from_slice(b"EndpointRouterMsg-fingerprint");
    b.extend_from_slice(&[0x00, 0x00, 0x00, 0x14]);
    b.extend_from_slice(fingerprint);
    // jxta:EndpointSourceAddress
    b.extend_from_slice(b"jxel");
    b.extend_from_slice(&[0x01, 0x01, 0x00, 0x15]);
    b.extend_from_slice(b"EndpointSourceAddress");
    b.extend_from_slice(&[0x00, 0x18]);
    b.extend_from_slice(text_type);
    b.extend_from_slice(&u32be(source.len()));
    b.extend_from_slice(source);
    // jxta:EndpointDestinationAddress
    b.extend_from_slice(b"jxel");
    b.extend_from_slice(&[0x01, 0x01, 0x00, 0x1a]);
    b.extend_from_slice(b"EndpointDestinationAddress");
    b.extend_from_slice(&[0x00, 0x18]);
    b.extend_from_slice(text_type);
    b.extend_from_slice(&u32be(dest.len()));
    b.extend_from_slice(dest);
    b
}

/// The message package JXSE 2.7 sends (spec §1.2): `content-length` first.
fn jxse27_package(body: &[u8]) -> Vec<u8> {
    let mut p = vec![0x0e];
    p.extend_from_slice(b"content-length");
    p.extend_from_slice(&[0x00, 0x08]);
    p.extend_from_slice(&(body.len() as u64).to_be_bytes());
    p.push(0x0c);
    p.extend_from_slice(b"content-type");
    p.extend_from_slice(&[0x00, 0x16]);
    p.extend_from_slice(b"application/x-jxta-msg");
    p.push(0x00); // end of the header block
    p.extend_from_slice(body);
    p
}

#[test]
fn jxse27_fingerprint_message_decodes() {
    let fingerprint: [u8; 20] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xA5);
    let jim = ping_xml("c-27");
    let body = jxse27_body(&jim, ALICE, BOB, &fingerprint);
    let package = jxse27_package(&body);
    let HeaderParse::Complete(h) = jxta::parse_package_header(&package, 1 << 20) else {
        panic!("package header not parsed");
    };
    assert_eq!(h.content_length, body.len() as u64);
    assert_eq!(h.content_type, Some("application/x-jxta-msg"));
    assert_eq!(h.header_len, 1 + 14 + 2 + 8 + 1 + 12 + 2 + 22 + 1);
    let msg = jxta::decode_message(&package[h.header_len..]).expect("jxmg");
    assert_eq!(msg.version, 0);
    let seen: Vec<(&str, &str, Option<&str>, usize)> = msg
        .elements
        .iter()
        .map(|e| (&*e.namespace, &*e.name, e.mime.as_deref(), e.content.len()))
        .collect();
    let xml = Some("text/xml;charset=UTF-8");
    let text = Some("text/plain;charset=UTF-8");
    assert_eq!(
        seen,
        [
            ("jim", "JimMessage", xml, jim.len()),
            ("jxta", "EndpointRouterMsg", xml, erm(ALICE, BOB).len()),
            ("jxta", "EndpointRouterMsg-fingerprint", None, 20),
            ("jxta", "EndpointSourceAddress", text, SOURCE_ADDR.len()),
            ("jxta", "EndpointDestinationAddress", text, DEST_ADDR.len()),
        ]
    );
    assert_eq!(msg.elements[2].content, fingerprint);
    let a = jxta::addressing(&msg);
    assert_eq!(a.src_peer, PeerId::parse(ALICE));
    assert_eq!(a.dst_peer, PeerId::parse(BOB));
    assert_eq!(a.pipe_id.as_deref(), Some(PIPE));
    let doc = observer::jim::parse(msg.elements[0].content)
        .expect("JIM")
        .expect("a JIM document");
    assert_eq!(doc.kind, observer::jim::Kind::Ping);
    assert_eq!(doc.correlator.as_deref(), Some("c-27"));
    assert_eq!(doc.name.as_deref(), Some("alice"));
}

/// The same bytes end to end: welcome lines (spec §1.1, written here too), a PING and its
/// PONG over TCP give one transaction between the two `cbid-` peers.
#[test]
fn jxse27_exchange_gives_its_transaction() {
    let a: SocketAddr = "10.0.0.1:9701".parse().expect("address");
    let b: SocketAddr = "10.0.0.2:40000".parse().expect("address");
    let t0 = observer::synth::EPOCH;
    let ms = 1_000_000;
    let mut w = Wire::new();
    let conn = w.connect(t0, b, a, [7, 70_000], 200_000);
    let whole = SendShape::default();
    let hello_b = format!("JXTAHELLO tcp://{a} tcp://{b} {BOB} 0 1.1\r\n");
    let hello_a = format!("JXTAHELLO tcp://{b} tcp://{a} {ALICE} 0 1.1\r\n");
    w.send(t0 + ms, conn, 0, &[hello_b.as_bytes()], &whole, 100_000);
    w.send(t0 + 2 * ms, conn, 1, &[hello_a.as_bytes()], &whole, 100_000);
    let ping = jxse27_package(&jxse27_body(&ping_xml("c-1"), ALICE, BOB, &[1; 20]));
    let pong = jxse27_package(&jxse27_body(&pong_xml("c-1"), BOB, ALICE, &[2; 20]));
    let (_, ping_at) = w.send(t0 + 100 * ms, conn, 1, &[&ping], &whole, 150_000);
    let (_, pong_at) = w.send(t0 + 180 * ms, conn, 0, &[&pong], &whole, 150_000);
    let format = WriteFormat::Pcap {
        nanos: true,
        big_endian: false,
    };
    let bytes = w
        .write(Vec::new(), LinkVariant::Ethernet, format, 0)
        .expect("capture");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jxse27-by-hand.pcap");
    std::fs::write(&path, bytes).expect("write");
    let analysis = runtime::analyze(&[path], PipelineConfig::default(), false);
    assert!(!analysis.damaged());
    let r = &analysis.result;
    assert_eq!(r.jxta.malformed_total(), 0, "{:?}", r.jxta.malformed);
    assert_eq!(r.transactions.len(), 1, "{:#?}", r.transactions);
    let t = &r.transactions[0];
    assert_eq!(t.status, TxStatus::Ok);
    assert_eq!(t.match_method, Some(MatchMethod::Correlator));
    assert_eq!(t.correlator.as_deref(), Some("c-1"));
    assert_eq!((t.start, t.stop), (ping_at, Some(pong_at)));
    assert_eq!(t.poller_id, PeerId::parse(ALICE));
    assert_eq!(t.receiver_id, PeerId::parse(BOB));
    assert_eq!(t.poller_name.as_deref(), Some("alice"));
    assert_eq!(t.receiver_name.as_deref(), Some("bob"));
    assert_eq!(t.receiver_status, Some(observer::jim::Status::Away));
}

/// `jxmg` version 1 (spec §2.2): one names table for namespaces, element names and MIME
/// types; per element a 16-bit namespace id, a name id or (flags 0x02) a literal name, a
/// MIME id when flags 0x04, a 64-bit length when flags 0x01.
#[test]
fn jxmg_version_1_decodes() {
    let jim = ping_xml("v1");
    let erm = erm(ALICE, BOB);
    let dest = "tcp://10.0.0.2:9701/EndpointService:jxta-NetGroup/EndpointRouter";
    let names = [
        "jim",
        "JimMessage",
        "text/xml;charset=UTF-8",
        "EndpointRouterMsg",
    ];
    let mut b = Vec::new();
    b.extend_from_slice(b"jxmg");
    b.push(0x01); // version 1
    b.push(0x00); // message flags: UTF-8 strings
    b.extend_from_slice(&u16be(names.len()));
    for n in names {
        // ids 2 ("jim"), 3 ("JimMessage"), 4 (the MIME type), 5 ("EndpointRouterMsg")
        b.extend_from_slice(&u16be(n.len()));
        b.extend_from_slice(n.as_bytes());
    }
    b.extend_from_slice(&[0x00, 0x03]); // three elements
                                        // jim:JimMessage by name id, typed, 32-bit length
    b.extend_from_slice(b"jxel");
    b.push(0x04);
    b.extend_from_slice(&[0x00, 0x02, 0x00, 0x03, 0x00, 0x04]);
    b.extend_from_slice(&u32be(jim.len()));
    b.extend_from_slice(jim.as_bytes());
    // jxta:EndpointRouterMsg by name id, typed, 64-bit length
    b.extend_from_slice(b"jxel");
    b.push(0x04 | 0x01);
    b.extend_from_slice(&[0x00, 0x01, 0x00, 0x05, 0x00, 0x04]);
    b.extend_from_slice(&(erm.len() as u64).to_be_bytes());
    b.extend_from_slice(erm.as_bytes());
    // jxta:EndpointDestinationAddress as a literal name, untyped, 32-bit length
    b.extend_from_slice(b"jxel");
    b.push(0x02);
    b.extend_from_slice(&[0x00, 0x01]);
    b.extend_from_slice(&u16be(26));
    b.extend_from_slice(b"EndpointDestinationAddress");
    b.extend_from_slice(&u32be(dest.len()));
    b.extend_from_slice(dest.as_bytes());

    let msg = jxta::decode_message(&b).expect("jxmg version 1");
    assert_eq!(msg.version, 1);
    let seen: Vec<(&str, &str, Option<&str>, &[u8])> = msg
        .elements
        .iter()
        .map(|e| (&*e.namespace, &*e.name, e.mime.as_deref(), e.content))
        .collect();
    let xml = Some("text/xml;charset=UTF-8");
    assert_eq!(
        seen,
        [
            ("jim", "JimMessage", xml, jim.as_bytes()),
            ("jxta", "EndpointRouterMsg", xml, erm.as_bytes()),
            ("jxta", "EndpointDestinationAddress", None, dest.as_bytes()),
        ]
    );
    let a = jxta::addressing(&msg);
    assert_eq!(a.src_peer, PeerId::parse(ALICE));
    assert_eq!(a.dst_peer, PeerId::parse(BOB));
    assert_eq!(a.pipe_id.as_deref(), Some(PIPE));
}
