//! A small run (alice polls bob twice, then carol who never answers) for the tests of
//! the summary and of the reports built from it.

use crate::jim::{Document, Kind, Status};
use crate::jxta::PeerId;
use crate::transaction::{Matcher, MatcherConfig, Sighting, Transaction, Transport};

/// The run's transactions and its matcher.
pub fn example_run() -> (Vec<Transaction>, Matcher) {
    let id = |n: u8| PeerId::parse(&format!("urn:jxta:uuid-{n:02X}03"));
    let s = |t: u64, a: u8, b: u8| Sighting {
        start: t,
        stop: t,
        src_peer: id(a),
        dst_peer: id(b),
        hop_src: id(a),
        hop_dst: id(b),
        framed_bytes: 500,
        message_bytes: 450,
        transport: Transport::Tcp,
        wire: Default::default(),
    };
    let doc = |kind, name: &str, c: &str| Document {
        kind,
        name: Some(name.into()),
        status: (kind == Kind::Pong).then_some(Status::Online),
        correlator: Some(c.into()),
        correlator_bytes: 45,
        ..Default::default()
    };
    let mut m = Matcher::new(MatcherConfig::default());
    let mut out = Vec::new();
    m.observe(&doc(Kind::Ping, "alice", "1"), &s(0, 1, 2), &mut out);
    m.observe(
        &doc(Kind::Pong, "bob", "1"),
        &s(800_000_000, 2, 1),
        &mut out,
    );
    m.observe(
        &doc(Kind::Ping, "alice", "2"),
        &s(1_000_000_000, 1, 2),
        &mut out,
    );
    m.observe(
        &doc(Kind::Pong, "bob", "2"),
        &s(2_000_000_000, 2, 1),
        &mut out,
    );
    m.observe(
        &doc(Kind::Ping, "alice", "3"),
        &s(3_000_000_000, 1, 3),
        &mut out,
    );
    m.finish(20_000_000_000, &mut out);
    (out, m)
}
