//! `cargo xtask fuzz-seeds`: seed corpora for the fuzz targets, made from the sample
//! scenarios (deterministic, small: each seed well under 64 KiB).

use std::path::Path;

use anyhow::Result;
use observer::capture::WriteFormat;
use observer::jim::{Document, Kind, Status};
use observer::jxta::{
    encode_datagram, encode_message_v0, encode_message_v1, encode_package, encode_welcome, erm_xml,
    HeaderOrder, OwnedElement, PeerId, WelcomeVersion,
};
use observer::packet::build::LinkVariant;
use observer::packet::{PacketConfig, PacketDecoder, L4};

fn put(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    Ok(())
}

const ALICE: &str =
    "urn:jxta:uuid-59616261646162614E50472050325033A96FCDC35A0A4F3F8038B4F1F4D0B37E03";
const BOB: &str =
    "urn:jxta:uuid-59616261646162614E50472050325033889B6C22963E4D96A9E3E3386F5B281603";

fn docs() -> Vec<Document> {
    vec![
        Document {
            kind: Kind::Ping,
            name: Some("alice".into()),
            peer_id: Some(ALICE.into()),
            correlator: Some("4611686018427387905".into()),
            ..Document::default()
        },
        Document {
            kind: Kind::Pong,
            name: Some("bob".into()),
            peer_id: Some(BOB.into()),
            status: Some(Status::Busy),
            correlator: Some("4611686018427387905".into()),
            ..Document::default()
        },
        Document {
            kind: Kind::Message,
            from: Some("alice".into()),
            to: Some("bob".into()),
            body: Some("see you at noon".into()),
            ..Document::default()
        },
    ]
}

fn package(doc: &Document, v1: bool, order: HeaderOrder) -> Vec<u8> {
    let mut out = Vec::new();
    encode_package(&message_body(doc, v1), order, None, &mut out);
    out
}

/// The `jxmg` message a JXSE peer sends `doc` in (version 1 or 0).
fn message_body(doc: &Document, v1: bool) -> Vec<u8> {
    let (a, b) = (
        PeerId::parse(ALICE).expect("id"),
        PeerId::parse(BOB).expect("id"),
    );
    let elements = vec![
        OwnedElement {
            namespace: "jim".into(),
            name: "JimMessage".into(),
            mime: Some("text/xml;charset=UTF-8".into()),
            content: doc.to_xml().into_bytes(),
            signature: None,
        },
        OwnedElement {
            namespace: "jxta".into(),
            name: "EndpointRouterMsg".into(),
            mime: Some("text/xml;charset=UTF-8".into()),
            content: erm_xml(&a, &b, "PipeService/urn:jxta:uuid-59616261646162614E504720503250330000000000000000000000000000000104", &a).into_bytes(),
            signature: None,
        },
        OwnedElement {
            namespace: "jxta".into(),
            name: "EndpointRouterMsg-fingerprint".into(),
            mime: None,
            content: vec![7; 20],
            signature: None,
        },
    ];
    if v1 {
        encode_message_v1(&elements)
    } else {
        encode_message_v0(&elements)
    }
}

pub fn write(root: &Path) -> Result<()> {
    let corpus = root.join("observer/fuzz/corpus");
    let pcap = WriteFormat::Pcap {
        nanos: false,
        big_endian: false,
    };

    // Captures: short renderings in several formats and link types, and the real one.
    let mut short = observer::synth::two_peers();
    short.duration_ns = 4_000_000_000;
    let rendered = short.render();
    for (name, link, format) in [
        ("two-peers-eth.pcap", LinkVariant::Ethernet, pcap),
        (
            "two-peers-sll2.pcapng",
            LinkVariant::LinuxSll2,
            WriteFormat::Pcapng,
        ),
        (
            "two-peers-vlan-ns-be.pcap",
            LinkVariant::Vlan(7),
            WriteFormat::Pcap {
                nanos: true,
                big_endian: true,
            },
        ),
        (
            "two-peers-null.pcap",
            LinkVariant::Null { big_endian: false },
            pcap,
        ),
    ] {
        put(
            &corpus.join("capture_file"),
            name,
            &rendered.capture_bytes(link, format)?,
        )?;
    }
    let real = std::fs::read(root.join("captures/jxse25-pingpong.pcap"))?;
    put(
        &corpus.join("capture_file"),
        "jxse25-first-20k.pcap",
        &real[..real.len().min(20_000)],
    )?;

    // Reassembly scripts: the TCP segments of the short scenario, as the target reads them.
    let bytes = rendered.capture_bytes(LinkVariant::Ethernet, pcap)?;
    let mut reader = observer::capture::CaptureReader::from_reader(
        "seed",
        Box::new(std::io::Cursor::new(bytes)),
    )?;
    let mut dec = PacketDecoder::new(PacketConfig::default());
    let mut script = Vec::new();
    let mut first: Option<std::net::SocketAddr> = None;
    while let Some(frame) = reader.next_frame()? {
        if let Some(seg) = dec.decode(&frame) {
            if let L4::Tcp {
                seq,
                ack,
                flags,
                payload,
                ..
            } = &seg.l4
            {
                let client = *first.get_or_insert(seg.src);
                let mut f = 0u8;
                f |= u8::from(flags.fin);
                f |= u8::from(flags.syn) << 1;
                f |= u8::from(flags.rst) << 2;
                f |= u8::from(flags.ack) << 4;
                let dir = if seg.src == client { 0u8 } else { 1 };
                let len = payload.len().min(255);
                script.push(dir | 4);
                script.push(f);
                script.extend_from_slice(&seq.to_be_bytes());
                script.extend_from_slice(&ack.to_be_bytes());
                script.push(len as u8);
                script.extend_from_slice(&payload[..len]);
                if script.len() > 30_000 {
                    break;
                }
            }
        }
    }
    put(&corpus.join("reassembly"), "two-peers-segments", &script)?;

    // JXTA: a whole stream (welcome and messages) with several piece sizes, single
    // packages in both layouts and message versions, a multicast datagram.
    let welcome = encode_welcome(
        "tcp://10.0.0.2:9701",
        "tcp://10.0.0.1:9701",
        ALICE,
        false,
        WelcomeVersion::V1_1,
    );
    let mut stream = welcome.clone();
    for d in docs() {
        stream.extend(package(&d, false, HeaderOrder::TypeFirst));
    }
    for step in [1u8, 7, 64, 255] {
        let mut seed = vec![step];
        seed.extend_from_slice(&stream);
        put(&corpus.join("jxta"), &format!("stream-step{step}"), &seed)?;
    }
    for (i, d) in docs().iter().enumerate() {
        put(
            &corpus.join("jxta"),
            &format!("package-v0-{i}"),
            &package(d, false, HeaderOrder::LengthFirst),
        )?;
        put(
            &corpus.join("jxta"),
            &format!("package-v1-{i}"),
            &package(d, true, HeaderOrder::TypeFirst),
        )?;
        // A bare message: the harness counts it, then decodes it by its layout's skeleton.
        put(
            &corpus.join("jxta"),
            &format!("message-v0-{i}"),
            &message_body(d, false),
        )?;
    }
    let mut dgram = Vec::new();
    encode_datagram(&encode_message_v0(&[]), "tcp://10.0.0.1:9701", &mut dgram);
    put(&corpus.join("jxta"), "datagram", &dgram)?;
    put(&corpus.join("jxta"), "welcome", &welcome)?;

    // HTTP transport: pipelined POSTs, a chunked polling response with two messages
    // (one split over two chunks), a plain web response, a bad chunk; each with a few
    // piece sizes (the first byte, see `observer::fuzz::http`).
    let bodies: Vec<Vec<u8>> = docs()
        .iter()
        .map(|d| {
            let framed = package(d, false, HeaderOrder::TypeFirst);
            // The HTTP transport carries the bare `jxmg`: drop the package header.
            let at = framed.windows(4).position(|w| w == b"jxmg").unwrap_or(0);
            framed[at..].to_vec()
        })
        .collect();
    let mut posts = Vec::new();
    for b in &bodies {
        posts.extend_from_slice(
            format!(
                "POST / HTTP/1.1\r\ncontent-length: {}\r\ncontent-type: application/x-jxta-msg\r\nHost: 10.0.0.2:9700\r\n\r\n",
                b.len()
            )
            .as_bytes(),
        );
        posts.extend_from_slice(b);
    }
    let mut poll = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-jxta-msg\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let both = [bodies[0].clone(), bodies[1].clone()].concat();
    let cut = bodies[0].len() + 40;
    for part in [&both[..cut], &both[cut..]] {
        poll.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        poll.extend_from_slice(part);
        poll.extend_from_slice(b"\r\n");
    }
    poll.extend_from_slice(b"0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
    let web =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    let bad = b"POST / HTTP/1.1\r\nContent-Type: application/x-jxta-msg\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /uuid-00?1,2 HTTP/1.1\r\n\r\n".to_vec();
    for (name, stream) in [
        ("posts", &posts),
        ("poll", &poll),
        ("web", &web),
        ("bad-chunk", &bad),
    ] {
        for step in [1u8, 13, 63, 0x80 | 20] {
            let mut seed = vec![step];
            seed.extend_from_slice(stream);
            put(&corpus.join("http"), &format!("{name}-{step}"), &seed)?;
        }
    }
    let sample = observer::synth::http::render();
    put(
        &corpus.join("capture_file"),
        "http.pcap",
        &sample.capture_bytes(LinkVariant::Ethernet, pcap)?,
    )?;

    // JIM documents, including the real capture's variant.
    for (i, d) in docs().iter().enumerate() {
        put(
            &corpus.join("jim"),
            &format!("doc-{i}.xml"),
            d.to_xml().as_bytes(),
        )?;
    }
    put(
        &corpus.join("jim"),
        "jxse-variant.xml",
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><PING><correlator>corr-0001</correlator><from>PingClient</from><seq>1</seq><ts>1795528304808</ts></PING>",
    )?;

    // The peer: what a remote end sends on a connection.
    let mut conn = encode_welcome(
        "tcp://10.9.9.1:9701",
        "tcp://10.9.9.9:9701",
        BOB,
        false,
        WelcomeVersion::V1_1,
    );
    for d in docs() {
        conn.extend(package(&d, false, HeaderOrder::TypeFirst));
    }
    put(
        &corpus.join("peer_connection"),
        "welcome-ping-pong-message",
        &conn,
    )?;
    put(
        &corpus.join("peer_connection"),
        "welcome-only",
        &encode_welcome("tcp://a:1", "tcp://b:2", BOB, false, WelcomeVersion::V1_1),
    )?;
    Ok(())
}
