//! Over 600 lines: the matcher's scenarios, one test each.

use super::*;
use crate::jim::{Document, Kind, Status};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

fn id(n: u8) -> PeerId {
    PeerId::parse(&format!("urn:jxta:uuid-{n:02X}03")).unwrap()
}
const ALICE: u8 = 0xA1;
const BOB: u8 = 0xB0;
const CAROL: u8 = 0xC0;
const RDV: u8 = 0xDD;

fn ping(name: &str, corr: Option<&str>) -> Document {
    Document {
        kind: Kind::Ping,
        name: Some(name.into()),
        correlator: corr.map(Into::into),
        correlator_bytes: corr.map_or(0, |c| (25 + c.len()) as u32),
        ..Default::default()
    }
}

fn pong(name: &str, status: Status, corr: Option<&str>) -> Document {
    Document {
        kind: Kind::Pong,
        name: Some(name.into()),
        status: Some(status),
        correlator: corr.map(Into::into),
        correlator_bytes: corr.map_or(0, |c| (25 + c.len()) as u32),
        ..Default::default()
    }
}

/// A direct (unrelayed) sighting from `src` to `dst` at `t`.
fn direct(t: u64, src: u8, dst: u8) -> Sighting {
    Sighting {
        start: t,
        stop: t + 10,
        src_peer: Some(id(src)),
        dst_peer: Some(id(dst)),
        hop_src: Some(id(src)),
        hop_dst: Some(id(dst)),
        framed_bytes: 1040,
        message_bytes: 970,
        transport: Transport::Tcp,
        wire: Default::default(),
    }
}

/// A leg over a connection `hop_src -> hop_dst` of a message `src -> dst`.
fn leg(t: u64, src: u8, dst: u8, hop_src: u8, hop_dst: u8) -> Sighting {
    Sighting {
        hop_src: Some(id(hop_src)),
        hop_dst: Some(id(hop_dst)),
        ..direct(t, src, dst)
    }
}

fn m() -> Matcher {
    Matcher::new(MatcherConfig::default())
}

#[test]
fn correlator_matching() {
    let mut m = m();
    let mut out = Vec::new();
    m.observe(&ping("alice", Some("1")), &direct(0, ALICE, BOB), &mut out);
    m.observe(
        &ping("alice", Some("2")),
        &direct(100 * MS, ALICE, BOB),
        &mut out,
    );
    // Answered out of order: the correlator decides.
    m.observe(
        &pong("bob", Status::Busy, Some("2")),
        &direct(300 * MS, BOB, ALICE),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Busy, Some("1")),
        &direct(900 * MS, BOB, ALICE),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    let t2 = &out[0];
    assert_eq!(t2.correlator.as_deref(), Some("2"));
    assert_eq!(t2.rtt_ns(), Some(200 * MS + 10));
    assert_eq!(t2.match_method, Some(MatchMethod::Correlator));
    assert_eq!(t2.poller_name.as_deref(), Some("alice"));
    assert_eq!(t2.receiver_name.as_deref(), Some("bob"));
    assert_eq!(t2.poller_id, Some(id(ALICE)));
    assert_eq!(t2.receiver_id, Some(id(BOB)));
    assert_eq!(t2.receiver_status, Some(Status::Busy));
    assert_eq!(t2.status, TxStatus::Ok);
    assert_eq!(t2.ping_bytes, 1040);
    assert_eq!(t2.pong_bytes, Some(1040));
    assert_eq!(t2.correlator_overhead_bytes, 52);
    assert_eq!(out[1].rtt_ns(), Some(900 * MS + 10));
    assert_eq!(m.overhead().ping.count, 2);
    assert_eq!(m.overhead().pong.with_correlator, 2);
    assert_eq!(m.overhead().pong.correlator_bytes, 52);
    assert_eq!(m.anomalies(), &Anomalies::default());
}

#[test]
fn order_matching_with_several_outstanding() {
    let mut m = m();
    let mut out = Vec::new();
    for i in 0..3 {
        m.observe(&ping("alice", None), &direct(i * SEC, ALICE, BOB), &mut out);
    }
    // Another pair interleaved does not disturb it.
    m.observe(
        &ping("alice", None),
        &direct(500 * MS, ALICE, CAROL),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Away, None),
        &direct(2500 * MS, BOB, ALICE),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Away, None),
        &direct(2600 * MS, BOB, ALICE),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].start, 0);
    assert_eq!(out[1].start, SEC);
    assert!(out
        .iter()
        .all(|t| t.match_method == Some(MatchMethod::Order)));
    m.observe(
        &pong("carol", Status::Online, None),
        &direct(2700 * MS, CAROL, ALICE),
        &mut out,
    );
    assert_eq!(out[2].receiver_name.as_deref(), Some("carol"));
    assert_eq!(out[2].start, 500 * MS);
    let mut rest = Vec::new();
    m.finish(3 * SEC, &mut rest);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].status, TxStatus::Open);
    assert_eq!(rest[0].stop, None);
    assert_eq!(rest[0].start, 2 * SEC);
    // The open record already knows bob's name from his PONGs.
    assert_eq!(rest[0].receiver_name.as_deref(), Some("bob"));
}

#[test]
fn timeout_late_and_open() {
    let mut m = m();
    let mut out = Vec::new();
    m.observe(&ping("alice", Some("a")), &direct(0, ALICE, BOB), &mut out);
    m.observe(&ping("alice", None), &direct(SEC, ALICE, CAROL), &mut out);
    m.advance(10 * SEC - 1, &mut out);
    assert!(out.is_empty());
    m.advance(10 * SEC, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, TxStatus::Timeout);
    assert_eq!(out[0].stop, Some(10 * SEC));
    assert_eq!(out[0].rtt_ns(), None);
    assert_eq!(out[0].receiver_status, None);
    // Late PONGs, by correlator and by order, are anomalies, never transactions.
    m.observe(
        &pong("bob", Status::Online, Some("a")),
        &direct(12 * SEC, BOB, ALICE),
        &mut out,
    );
    m.observe(
        &pong("carol", Status::Online, None),
        &direct(12 * SEC, CAROL, ALICE),
        &mut out,
    );
    assert_eq!(out.len(), 2, "carol's PING timed out inside observe");
    assert_eq!(out[1].status, TxStatus::Timeout);
    assert_eq!(m.anomalies().late_pong, 2);
    // A PONG arriving exactly at the deadline is late (observe expires first).
    let mut m2 = Matcher::new(MatcherConfig::default());
    let mut out2 = Vec::new();
    m2.observe(&ping("alice", Some("x")), &direct(0, ALICE, BOB), &mut out2);
    let mut s = direct(5 * SEC, BOB, ALICE);
    s.stop = 10 * SEC;
    m2.observe(&pong("bob", Status::Online, Some("x")), &s, &mut out2);
    assert_eq!(out2[0].status, TxStatus::Timeout);
    assert_eq!(m2.anomalies().late_pong, 1);
    // finish: deadline passed at end -> timeout, else open.
    let mut m3 = Matcher::new(MatcherConfig::default());
    let mut out3 = Vec::new();
    m3.observe(&ping("alice", Some("1")), &direct(0, ALICE, BOB), &mut out3);
    m3.observe(
        &ping("alice", Some("2")),
        &direct(5 * SEC, ALICE, BOB),
        &mut out3,
    );
    m3.finish(12 * SEC, &mut out3);
    assert_eq!(out3.len(), 2);
    assert_eq!(out3[0].status, TxStatus::Timeout);
    assert_eq!(out3[1].status, TxStatus::Open);
}

#[test]
fn duplicate_unknown_unsolicited_anomalies() {
    let mut m = m();
    let mut out = Vec::new();
    m.observe(&ping("alice", Some("1")), &direct(0, ALICE, BOB), &mut out);
    m.observe(
        &pong("bob", Status::Online, Some("1")),
        &direct(MS, BOB, ALICE),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Online, Some("1")),
        &direct(2 * MS, BOB, ALICE),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Online, Some("zzz")),
        &direct(3 * MS, BOB, ALICE),
        &mut out,
    );
    // Carol was never pinged by alice.
    m.observe(
        &pong("carol", Status::Online, Some("1")),
        &direct(4 * MS, CAROL, ALICE),
        &mut out,
    );
    // Order mode with nothing outstanding.
    m.observe(
        &pong("bob", Status::Online, None),
        &direct(5 * MS, BOB, ALICE),
        &mut out,
    );
    // Duplicate PING correlator (outstanding, then finished).
    m.observe(
        &ping("alice", Some("2")),
        &direct(6 * MS, ALICE, BOB),
        &mut out,
    );
    m.observe(
        &ping("alice", Some("2")),
        &direct(7 * MS, ALICE, BOB),
        &mut out,
    );
    m.observe(
        &ping("alice", Some("1")),
        &direct(8 * MS, ALICE, BOB),
        &mut out,
    );
    // Unknown status value.
    let mut weird = pong("bob", Status::Online, Some("2"));
    weird.status = None;
    weird.status_text = Some("dnd".into());
    m.observe(&weird, &direct(9 * MS, BOB, ALICE), &mut out);
    m.observe(
        &Document {
            kind: Kind::Message,
            ..Default::default()
        },
        &direct(0, ALICE, BOB),
        &mut out,
    );
    m.count_malformed();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].receiver_status, None);
    let a = m.anomalies();
    assert_eq!(a.duplicate_pong, 1);
    assert_eq!(a.unknown_correlator, 1);
    assert_eq!(a.unsolicited_pong, 1);
    assert_eq!(a.pong_without_ping, 1);
    assert_eq!(a.duplicate_ping_correlator, 2);
    assert_eq!(a.unknown_status, 1);
    assert_eq!(a.messages, 1);
    assert_eq!(a.malformed_documents, 1);
    assert_eq!(a.late_pong, 0);
}

/// alice and bob both behind a rendezvous; the capture on the rendezvous sees
/// alice->rdv, rdv->bob for the PING and bob->rdv, rdv->alice for the PONG.
#[test]
fn relayed_two_legs_with_correlator() {
    let mut m = m();
    let mut out = Vec::new();
    m.observe(
        &ping("alice", Some("7")),
        &leg(0, ALICE, BOB, ALICE, RDV),
        &mut out,
    );
    m.observe(
        &ping("alice", Some("7")),
        &leg(5 * MS, ALICE, BOB, RDV, BOB),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Online, Some("7")),
        &leg(400 * MS, BOB, ALICE, BOB, RDV),
        &mut out,
    );
    assert!(out.is_empty(), "in transit: not final yet");
    m.observe(
        &pong("bob", Status::Online, Some("7")),
        &leg(405 * MS, BOB, ALICE, RDV, ALICE),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].start, 0);
    assert_eq!(out[0].stop, Some(405 * MS + 10));
    assert_eq!(out[0].status, TxStatus::Ok);
    let a = m.anomalies();
    assert_eq!(a.relayed_sightings, 2);
    assert_eq!(a.duplicate_pong, 0);
    assert_eq!(a.duplicate_ping_correlator, 0);
    assert_eq!(m.overhead().ping.count, 1);
    assert_eq!(m.overhead().pong.count, 1);
}

#[test]
fn relayed_two_legs_order_mode() {
    let mut m = m();
    let mut out = Vec::new();
    for i in 0..2u64 {
        let t = i * SEC;
        m.observe(
            &ping("alice", None),
            &leg(t, ALICE, BOB, ALICE, RDV),
            &mut out,
        );
        m.observe(
            &ping("alice", None),
            &leg(t + MS, ALICE, BOB, RDV, BOB),
            &mut out,
        );
    }
    for i in 0..2u64 {
        let t = 3 * SEC + i * SEC;
        m.observe(
            &pong("bob", Status::Busy, None),
            &leg(t, BOB, ALICE, BOB, RDV),
            &mut out,
        );
        m.observe(
            &pong("bob", Status::Busy, None),
            &leg(t + MS, BOB, ALICE, RDV, ALICE),
            &mut out,
        );
    }
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].start, 0);
    assert_eq!(out[0].stop, Some(3 * SEC + MS + 10));
    assert_eq!(out[1].start, SEC);
    assert_eq!(out[1].stop, Some(4 * SEC + MS + 10));
    assert_eq!(m.anomalies().relayed_sightings, 4);
    assert_eq!(m.anomalies().pong_without_ping, 0);
}

#[test]
fn relayed_candidate_finalised_at_deadline_and_end() {
    let mut m = m();
    let mut out = Vec::new();
    m.observe(
        &ping("alice", Some("1")),
        &leg(0, ALICE, BOB, ALICE, RDV),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Online, Some("1")),
        &leg(SEC, BOB, ALICE, BOB, RDV),
        &mut out,
    );
    m.advance(10 * SEC, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, TxStatus::Ok);
    assert_eq!(out[0].stop, Some(SEC + 10));
    // Its delivery leg, late, is neither duplicate nor late.
    m.observe(
        &pong("bob", Status::Online, Some("1")),
        &leg(11 * SEC, BOB, ALICE, RDV, ALICE),
        &mut out,
    );
    assert_eq!(m.anomalies().duplicate_pong, 0);
    assert_eq!(m.anomalies().late_pong, 0);
    assert_eq!(m.anomalies().relayed_sightings, 1);

    m.observe(
        &ping("alice", Some("2")),
        &leg(20 * SEC, ALICE, BOB, ALICE, RDV),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Online, Some("2")),
        &leg(21 * SEC, BOB, ALICE, BOB, RDV),
        &mut out,
    );
    m.finish(22 * SEC, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].status, TxStatus::Ok);
    assert_eq!(out[1].stop, Some(21 * SEC + 10));
}

#[test]
fn only_second_leg_captured_is_a_new_ping() {
    let mut m = m();
    let mut out = Vec::new();
    m.observe(
        &ping("alice", Some("1")),
        &leg(0, ALICE, BOB, RDV, BOB),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Online, Some("1")),
        &leg(SEC, BOB, ALICE, BOB, RDV),
        &mut out,
    );
    m.finish(2 * SEC, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, TxStatus::Ok);
    assert_eq!(out[0].stop, Some(SEC + 10));
}

#[test]
fn identity_fallbacks() {
    let mut m = m();
    let mut out = Vec::new();
    // No ERM: identities from the document and the connection.
    let mut s = direct(0, ALICE, BOB);
    s.src_peer = None;
    s.dst_peer = None;
    let mut p = ping("alice", Some("1"));
    p.peer_id = Some(id(ALICE).to_string());
    m.observe(&p, &s, &mut out);
    let mut s = direct(MS, BOB, ALICE);
    s.src_peer = None;
    s.dst_peer = None;
    m.observe(&pong("bob", Status::Online, Some("1")), &s, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].poller_id, Some(id(ALICE)));
    assert_eq!(out[0].receiver_id, Some(id(BOB)));
    // No IDs at all: keyed by name where there is one.
    let bare = |t| Sighting {
        src_peer: None,
        dst_peer: None,
        hop_src: None,
        hop_dst: None,
        ..direct(t, 0, 0)
    };
    m.observe(&ping("x", None), &bare(2 * MS), &mut out);
    m.observe(&pong("y", Status::Online, None), &bare(3 * MS), &mut out);
    // The PONG cannot name its poller: it is counted, not guessed.
    assert_eq!(out.len(), 1);
    assert_eq!(m.anomalies().unidentified, 2);
    m.finish(4 * MS, &mut out);
    assert_eq!(out[1].poller_name.as_deref(), Some("x"));
    assert_eq!(out[1].status, TxStatus::Open);
}

#[test]
fn caps_evict_oldest_and_count() {
    let cfg = MatcherConfig {
        max_outstanding_per_pair: 3,
        max_pairs: 2,
        remember_finished: 2,
        ..MatcherConfig::default()
    };
    let mut m = Matcher::new(cfg);
    let mut out = Vec::new();
    for i in 0..5u64 {
        m.observe(&ping("alice", None), &direct(i * MS, ALICE, BOB), &mut out);
    }
    assert_eq!(m.anomalies().evicted_outstanding, 2);
    m.observe(
        &pong("bob", Status::Online, None),
        &direct(10 * MS, BOB, ALICE),
        &mut out,
    );
    assert_eq!(out[0].start, 2 * MS, "the two oldest were evicted");
    // A third pair evicts the least recently active pair.
    m.observe(
        &ping("alice", None),
        &direct(20 * MS, ALICE, CAROL),
        &mut out,
    );
    m.observe(&ping("bob", None), &direct(30 * MS, BOB, CAROL), &mut out);
    assert_eq!(m.anomalies().evicted_pairs, 1);
    assert_eq!(m.anomalies().evicted_outstanding, 4);
    // Finished correlators: a bounded ring.
    for i in 0..10 {
        let c = i.to_string();
        m.observe(
            &ping("bob", Some(&c)),
            &direct(SEC + i * MS, BOB, CAROL),
            &mut out,
        );
        m.observe(
            &pong("carol", Status::Online, Some(&c)),
            &direct(SEC + i * MS + 1, CAROL, BOB),
            &mut out,
        );
    }
    m.observe(
        &pong("carol", Status::Online, Some("0")),
        &direct(2 * SEC, CAROL, BOB),
        &mut out,
    );
    assert_eq!(
        m.anomalies().unknown_correlator,
        1,
        "forgotten: no longer a duplicate"
    );
    assert_eq!(m.expiry().correlators_evicted, 8);
    m.observe(
        &pong("carol", Status::Online, Some("9")),
        &direct(2 * SEC, CAROL, BOB),
        &mut out,
    );
    assert_eq!(m.anomalies().duplicate_pong, 1);
}

#[test]
fn many_answered_pings_keep_deadline_heap_bounded() {
    let mut m = m();
    let mut out = Vec::new();
    for i in 0..20_000u64 {
        let c = i.to_string();
        m.observe(
            &ping("alice", Some(&c)),
            &direct(i * MS, ALICE, BOB),
            &mut out,
        );
        m.observe(
            &pong("bob", Status::Online, Some(&c)),
            &direct(i * MS + 1, BOB, ALICE),
            &mut out,
        );
    }
    assert_eq!(out.len(), 20_000);
    assert!(m.deadline_entries() < 3_000);
}

#[test]
fn presence_changes_and_learners() {
    let mut m = m();
    let mut out = Vec::new();
    let mut t = 0;
    let mut poll = |m: &mut Matcher, poller: u8, pname: &str, st: Status| {
        let c = t.to_string();
        m.observe(&ping(pname, Some(&c)), &direct(t, poller, BOB), &mut out);
        m.observe(
            &pong("bob", st, Some(&c)),
            &direct(t + MS, BOB, poller),
            &mut out,
        );
        t += SEC;
    };
    poll(&mut m, ALICE, "alice", Status::Online);
    poll(&mut m, CAROL, "carol", Status::Online);
    poll(&mut m, ALICE, "alice", Status::Online);
    poll(&mut m, ALICE, "alice", Status::Away);
    poll(&mut m, CAROL, "carol", Status::Away);
    let p = m.presence();
    let ch = p.changes();
    assert_eq!(ch.len(), 2);
    assert_eq!(ch[0].from, None);
    assert_eq!(ch[0].to, Status::Online);
    assert_eq!(ch[0].name.as_deref(), Some("bob"));
    assert_eq!(ch[0].learned_by.len(), 2);
    assert_eq!(ch[1].from, Some(Status::Online));
    assert_eq!(ch[1].to, Status::Away);
    assert_eq!(ch[1].time, 3 * SEC + MS + 10);
    let learners: Vec<_> = ch[1]
        .learned_by
        .iter()
        .map(|l| (l.poller_name.as_deref(), l.time))
        .collect();
    assert_eq!(
        learners,
        vec![
            (Some("alice"), 3 * SEC + MS + 10),
            (Some("carol"), 4 * SEC + MS + 10)
        ]
    );
    assert_eq!(p.current().len(), 1);
    assert_eq!(p.current()[0].status, Status::Away);
}

/// Correlators repeat when a peer restarts (or a capture is replayed): a repeat after
/// the transaction ended is a new poll; only a repeat while it is outstanding or within
/// `REPEAT_WINDOW_NS` of its start is a duplicate sighting.
#[test]
fn correlator_reused_after_the_transaction_ended_starts_a_new_one() {
    let mut m = m();
    let mut out = Vec::new();
    m.observe(&ping("alice", Some("c")), &direct(0, ALICE, BOB), &mut out);
    m.observe(
        &pong("bob", Status::Online, Some("c")),
        &direct(300 * MS, BOB, ALICE),
        &mut out,
    );
    // A copy inside the window: duplicate.
    let within = REPEAT_WINDOW_NS / 2;
    m.observe(
        &ping("alice", Some("c")),
        &direct(within, ALICE, BOB),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Online, Some("c")),
        &direct(within + MS, BOB, ALICE),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(m.anomalies().duplicate_ping_correlator, 1);
    assert_eq!(m.anomalies().duplicate_pong, 1);
    // A timed-out correlator is reused too.
    m.observe(
        &ping("alice", Some("t")),
        &direct(2 * SEC, ALICE, BOB),
        &mut out,
    );
    m.advance(20 * SEC, &mut out);
    assert_eq!(out[1].status, TxStatus::Timeout);
    // 100 s later both correlators start new transactions, and their PONGs match them.
    let later = 100 * SEC;
    m.observe(
        &ping("alice", Some("c")),
        &direct(later, ALICE, BOB),
        &mut out,
    );
    m.observe(
        &ping("alice", Some("t")),
        &direct(later + MS, ALICE, BOB),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Busy, Some("t")),
        &direct(later + 200 * MS, BOB, ALICE),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Busy, Some("c")),
        &direct(later + 300 * MS, BOB, ALICE),
        &mut out,
    );
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[2].correlator.as_deref(), Some("t"));
    assert_eq!(out[2].status, TxStatus::Ok);
    assert_eq!(out[2].rtt_ns(), Some(199 * MS + 10));
    assert_eq!(out[3].correlator.as_deref(), Some("c"));
    assert_eq!(out[3].rtt_ns(), Some(300 * MS + 10));
    assert_eq!(m.anomalies().duplicate_ping_correlator, 1);
    assert_eq!(m.anomalies().duplicate_pong, 1);
    assert_eq!(m.anomalies().late_pong, 0);
    // And the new transaction's own duplicate PONG is still a duplicate.
    m.observe(
        &pong("bob", Status::Busy, Some("c")),
        &direct(later + 400 * MS, BOB, ALICE),
        &mut out,
    );
    assert_eq!(out.len(), 4);
    assert_eq!(m.anomalies().duplicate_pong, 2);
}

/// A PONG stamped before its PING (the capture clock stepped back) answers the PING
/// but is no transaction: an RTT of 0 would enter the statistics. It is counted.
#[test]
fn pong_stamped_before_its_ping_is_a_clock_step() {
    let mut m = m();
    let mut out = Vec::new();
    m.observe(
        &ping("alice", Some("s")),
        &direct(5 * SEC, ALICE, BOB),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Online, Some("s")),
        &direct(4 * SEC, BOB, ALICE),
        &mut out,
    );
    // Without correlator, by order, too.
    m.observe(&ping("carol", None), &direct(6 * SEC, CAROL, BOB), &mut out);
    m.observe(
        &pong("bob", Status::Online, None),
        &direct(5 * SEC, BOB, CAROL),
        &mut out,
    );
    m.advance(60 * SEC, &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(m.anomalies().clock_steps, 2);
    assert!(m.anomalies().total() >= 2);
    // The PING was answered: a copy of the PONG is a duplicate, not late.
    m.observe(
        &pong("bob", Status::Online, Some("s")),
        &direct(61 * SEC, BOB, ALICE),
        &mut out,
    );
    assert_eq!(m.anomalies().duplicate_pong, 1);
    assert_eq!(m.anomalies().late_pong, 0);
    assert!(m.presence().changes().is_empty());
}

/// A UDP multicast sighting: the sender from `EndpointHeaderSrcPeer`, no destination.
fn multicast(t: u64, src: u8) -> Sighting {
    Sighting {
        dst_peer: None,
        hop_src: None,
        hop_dst: None,
        transport: Transport::Udp,
        ..direct(t, src, 0)
    }
}

#[test]
fn multicast_pings_and_pongs_pair_whichever_way_each_travels() {
    let mut m = m();
    let mut out = Vec::new();
    // Both by multicast.
    m.observe(&ping("alice", Some("c1")), &multicast(0, ALICE), &mut out);
    m.observe(
        &pong("bob", Status::Online, Some("c1")),
        &multicast(5 * MS, BOB),
        &mut out,
    );
    // PING by TCP, PONG by multicast.
    m.observe(
        &ping("alice", Some("c2")),
        &direct(SEC, ALICE, CAROL),
        &mut out,
    );
    m.observe(
        &pong("carol", Status::Busy, Some("c2")),
        &multicast(SEC + 7 * MS, CAROL),
        &mut out,
    );
    // PING by multicast, PONG by TCP.
    m.observe(&ping("bob", Some("c3")), &multicast(2 * SEC, BOB), &mut out);
    m.observe(
        &pong("alice", Status::Away, Some("c3")),
        &direct(2 * SEC + 9 * MS, ALICE, BOB),
        &mut out,
    );
    assert_eq!(out.len(), 3, "{out:#?}");
    let got: Vec<_> = out
        .iter()
        .map(|t| {
            (
                t.poller_id.clone(),
                t.receiver_id.clone(),
                t.status,
                t.rtt_ns(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Some(id(ALICE)),
                Some(id(BOB)),
                TxStatus::Ok,
                Some(5 * MS + 10)
            ),
            (
                Some(id(ALICE)),
                Some(id(CAROL)),
                TxStatus::Ok,
                Some(7 * MS + 10)
            ),
            (
                Some(id(BOB)),
                Some(id(ALICE)),
                TxStatus::Ok,
                Some(9 * MS + 10)
            ),
        ]
    );
    assert_eq!(m.anomalies().total(), 0, "{:?}", m.anomalies());
    // A multicast PONG answers only a PING to its sender (or to nobody in particular).
    m.observe(
        &ping("alice", Some("c4")),
        &direct(3 * SEC, ALICE, CAROL),
        &mut out,
    );
    m.observe(
        &pong("bob", Status::Online, Some("c4")),
        &multicast(3 * SEC + MS, BOB),
        &mut out,
    );
    assert_eq!(out.len(), 3);
    assert_eq!(m.anomalies().unsolicited_pong, 1);
}

/// A peer's name is learnt from its first document that names it, and follows the
/// last: PINGs name their poller, PONGs their receiver.
#[test]
fn peer_names_are_learnt_from_the_first_document_on() {
    let mut m = m();
    let mut out = Vec::new();
    m.observe(&ping("alice", Some("1")), &direct(0, ALICE, BOB), &mut out);
    assert_eq!(m.name_of(&id(ALICE)), Some("alice"));
    assert_eq!(m.name_of(&id(BOB)), None);
    m.observe(
        &pong("bob", Status::Online, Some("1")),
        &direct(MS, BOB, ALICE),
        &mut out,
    );
    assert_eq!(m.name_of(&id(BOB)), Some("bob"));
    m.observe(
        &ping("alicia", Some("2")),
        &direct(SEC, ALICE, BOB),
        &mut out,
    );
    assert_eq!(m.name_of(&id(ALICE)), Some("alicia"));
    assert_eq!(m.sizes().names, 2);
}

/// A name comes to the transactions as one shared copy: every transaction of a poller
/// and of a receiver holds the same one, taken from the documents as owned or
/// borrowed, and the names stay right when the table of shared names starts again.
#[test]
fn transactions_share_one_copy_of_each_name() {
    let mut m = m();
    let mut out = Vec::new();
    for k in 0..4u64 {
        let (mut p, mut ps) = (
            ping("alice", Some(&format!("c{k}"))),
            direct(k * SEC, ALICE, BOB),
        );
        let pong = pong("bob", Status::Online, Some(&format!("c{k}")));
        let pong_at = direct(k * SEC + MS, BOB, ALICE);
        if k % 2 == 0 {
            m.observe(&p, &ps, &mut out);
            m.observe(&pong, &pong_at, &mut out);
        } else {
            m.observe_taking(&mut p, &mut ps, &mut out);
            m.observe(&pong, &pong_at, &mut out);
        }
    }
    assert_eq!(out.len(), 4);
    for t in &out {
        assert_eq!(t.poller_name.as_deref(), Some("alice"));
        assert_eq!(t.receiver_name.as_deref(), Some("bob"));
        for (a, b) in [
            (&t.poller_name, &out[0].poller_name),
            (&t.receiver_name, &out[0].receiver_name),
        ] {
            assert!(matches!((a, b), (Some(a), Some(b)) if Arc::ptr_eq(a, b)));
        }
    }
    let mut names = SharedNames::default();
    let first = names.get("alice");
    for n in 0..2 * SHARED_NAMES + 1 {
        let name = format!("peer{n}");
        assert_eq!(&*names.get(&name), name.as_str());
        assert!(names.len() <= SHARED_NAMES);
    }
    assert_eq!(&*first, "alice");
}

/// Names found through their recent slots (8 to 16 bytes) get the copy the table alone
/// would give: the first handed out of the text since the table last started again,
/// whether asked by text or by a copy. Random names of 0 to 24 bytes over two letters
/// (words and slots collide; a name of 9 `a`s and one of 10 share their two words),
/// past the table's bound twice; and two names of one pair of words put in one slot.
#[test]
fn shared_names_through_their_recent_slots_are_the_tables() {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut names = SharedNames::default();
    let mut model: std::collections::HashMap<String, Arc<str>> = Default::default();
    for n in 0..3 * SHARED_NAMES {
        let r = next();
        let len = match r % 4 {
            0 => (r >> 8) as usize % 25,
            _ => 8 + (r >> 8) as usize % 9,
        };
        // Few names at first (hits), then more than the table holds (its restarts).
        let bits = if n < SHARED_NAMES { 10 } else { 17 };
        let pattern = (r >> 16) % (1 << bits);
        let name: String = (0..len)
            .map(|i| {
                if pattern >> (i % bits) & 1 == 1 {
                    'b'
                } else {
                    'a'
                }
            })
            .collect();
        let new = !model.contains_key(&name);
        if new && model.len() >= SHARED_NAMES {
            model.clear();
        }
        let by_copy = r >> 40 & 1 == 1;
        let copy: Arc<str> = Arc::from(name.as_str());
        let got = match by_copy {
            true => names.share(&copy),
            false => names.get(&name),
        };
        assert_eq!(&*got, name.as_str());
        let held = model.entry(name).or_insert_with(|| got.clone());
        assert!(Arc::ptr_eq(held, &got));
        assert!(!(by_copy && new) || Arc::ptr_eq(held, &copy));
        assert_eq!(names.len(), model.len());
    }
    for (name, words) in [
        ("aaaaaaa", None),
        (
            "aaaaaaaa",
            Some((0x6161_6161_6161_6161, 0x6161_6161_6161_6161)),
        ),
        (
            "abcdefghijklmnop",
            Some((0x6867_6665_6463_6261, 0x706F_6E6D_6C6B_6A69)),
        ),
        ("abcdefghijklmnopq", None),
    ] {
        assert_eq!(name_words(name), words);
    }
    // Two names of one pair of words in one slot: the length tells them apart.
    let (nine, ten) = ("a".repeat(9), "a".repeat(10));
    let mut names = SharedNames::default();
    let held = names.get(&nine);
    let words = name_words(&nine).unwrap();
    names.recent[name_slot(words, 10)] = Some(held);
    assert_eq!(&*names.get(&ten), ten.as_str());
}

/// Pollers that share a correlator (as a poller reuses one for all its receivers) are
/// each found by a multicast PONG: every PING with it has its entry in the index.
#[test]
fn multicast_pongs_find_every_pair_with_a_shared_correlator() {
    let mut m = m();
    let mut out = Vec::new();
    m.observe(&ping("alice", Some("c1")), &direct(0, ALICE, BOB), &mut out);
    m.observe(
        &ping("carol", Some("c1")),
        &direct(MS, CAROL, BOB),
        &mut out,
    );
    for t in [5 * MS, 6 * MS] {
        m.observe(
            &pong("bob", Status::Online, Some("c1")),
            &multicast(t, BOB),
            &mut out,
        );
    }
    let got: Vec<_> = out
        .iter()
        .map(|t| (t.poller_id.clone(), t.receiver_id.clone(), t.status))
        .collect();
    assert_eq!(
        got,
        vec![
            (Some(id(ALICE)), Some(id(BOB)), TxStatus::Ok),
            (Some(id(CAROL)), Some(id(BOB)), TxStatus::Ok),
        ]
    );
    assert_eq!(m.anomalies().total(), 0, "{:?}", m.anomalies());
}

/// Many pairs, each answered once (a gateway's pollers): an idle pair holds no buffer,
/// each peer ID is kept once however many messages carried it, a PONG to an idle pair
/// is still told from one to a pair never seen, and the end of input frees the pair
/// tables.
#[test]
fn idle_pairs_hold_no_buffer_and_ids_are_kept_once() {
    let mut m = m();
    let mut out = Vec::new();
    let pairs = 200u8;
    for k in 0..pairs {
        let t = u64::from(k) * 100 * MS;
        let c = format!("c{k}");
        m.observe(
            &ping("p", Some(&c)),
            &direct(t, k, k.wrapping_add(1)),
            &mut out,
        );
        if k % 2 == 0 {
            // While a PING is outstanding its pair holds one.
            let (buffered, _) = m.buffered_pairs_and_ids();
            assert_eq!(buffered, 1);
        }
        m.observe(
            &pong("r", Status::Online, Some(&c)),
            &direct(t + 5 * MS, k.wrapping_add(1), k),
            &mut out,
        );
    }
    assert_eq!(out.len(), usize::from(pairs));
    assert!(out.iter().all(|t| t.status == TxStatus::Ok));
    let (buffered, ids) = m.buffered_pairs_and_ids();
    assert_eq!(buffered, 0);
    // Peers 0..=200: each once, though every PING and PONG parsed its own copies.
    assert_eq!(ids, usize::from(pairs) + 1);
    assert_eq!(m.sizes().pairs, usize::from(pairs));
    // A repeated PONG to an idle pair is a duplicate, to an unknown pair unsolicited.
    m.observe(
        &pong("r", Status::Online, Some("c3")),
        &direct(30 * SEC, 4, 3),
        &mut out,
    );
    m.observe(
        &pong("r", Status::Online, Some("c3")),
        &direct(30 * SEC, 9, 3),
        &mut out,
    );
    assert_eq!(m.anomalies().duplicate_pong, 1, "{:?}", m.anomalies());
    assert_eq!(m.anomalies().unsolicited_pong, 1, "{:?}", m.anomalies());
    m.finish(40 * SEC, &mut out);
    assert_eq!(m.sizes().pairs, 0);
    assert_eq!(m.sizes().finished, 0);
    assert_eq!(m.buffered_pairs_and_ids(), (0, 0));
}

/// A pair idle past the timeout plus `IDLE_PAIR_NS` is folded: forgotten (a PONG to it
/// is then unsolicited, not a duplicate), and its memory freed at the next sweep; a
/// pair idle for less is kept whole.
#[test]
fn idle_pairs_fold_and_are_freed() {
    let mut m = m();
    let mut out = Vec::new();
    for k in 0..50u8 {
        let c = format!("c{k}");
        m.observe(&ping("p", Some(&c)), &direct(0, k, k + 100), &mut out);
        m.observe(
            &pong("r", Status::Online, Some(&c)),
            &direct(5 * MS, k + 100, k),
            &mut out,
        );
    }
    assert_eq!(out.len(), 50);
    let fold = DEFAULT_TIMEOUT_NS + IDLE_PAIR_NS;
    // Just inside: the pair is known, the repeated PONG a duplicate.
    m.observe(
        &pong("r", Status::Online, Some("c1")),
        &direct(fold, 101, 1),
        &mut out,
    );
    assert_eq!(m.anomalies().duplicate_pong, 1, "{:?}", m.anomalies());
    assert_eq!(m.sizes().pairs, 50);
    // Past it: folded, so unsolicited; freed once a sweep runs (within a timeout).
    m.observe(
        &pong("r", Status::Online, Some("c2")),
        &direct(fold + 6 * MS, 102, 2),
        &mut out,
    );
    assert_eq!(m.anomalies().unsolicited_pong, 1, "{:?}", m.anomalies());
    m.observe(
        &ping("p", Some("new")),
        &direct(fold + 2 * DEFAULT_TIMEOUT_NS, 7, 107),
        &mut out,
    );
    // Left: pair 1 (its PONG at `fold` was activity) and the new one.
    assert_eq!(m.sizes().pairs, 2);
    assert_eq!(m.expiry().pairs_freed, 49);
    assert_eq!(m.anomalies().evicted_pairs, 0);
    // The folded pair polls again: a new transaction, as for a pair never seen.
    m.observe(
        &pong("r", Status::Online, Some("new")),
        &direct(fold + 2 * DEFAULT_TIMEOUT_NS + 5 * MS, 107, 7),
        &mut out,
    );
    assert_eq!(out.len(), 51);
    assert_eq!(out[50].status, TxStatus::Ok);
}

/// With a horizon (`live`), a finished correlator is forgotten once its PING's deadline
/// is that far behind: a copy of its PONG is a duplicate until then, an unknown
/// correlator after. Without one (`analyze`) it is remembered on.
#[test]
fn finished_correlators_expire_past_their_horizon() {
    for horizon in [Some(DEFAULT_TIMEOUT_NS), None] {
        let mut m = Matcher::new(MatcherConfig {
            forget_finished_after_ns: horizon,
            ..MatcherConfig::default()
        });
        let mut out = Vec::new();
        m.observe(&ping("p", Some("c1")), &direct(0, 1, 2), &mut out);
        m.observe(
            &pong("r", Status::Online, Some("c1")),
            &direct(5 * MS, 2, 1),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let reach = 2 * DEFAULT_TIMEOUT_NS;
        m.observe(
            &pong("r", Status::Online, Some("c1")),
            &direct(reach - MS, 2, 1),
            &mut out,
        );
        assert_eq!(m.anomalies().duplicate_pong, 1, "{horizon:?}");
        assert_eq!(m.sizes().finished, 1);
        m.observe(
            &pong("r", Status::Online, Some("c1")),
            &direct(reach + MS, 2, 1),
            &mut out,
        );
        if horizon.is_some() {
            assert_eq!(m.sizes().finished, 0);
            assert_eq!(m.expiry().correlators_expired, 1);
            assert_eq!(m.anomalies().unknown_correlator, 1, "{:?}", m.anomalies());
            assert_eq!(m.anomalies().duplicate_pong, 1);
        } else {
            assert_eq!(m.sizes().finished, 1);
            assert_eq!(m.expiry().correlators_expired, 0);
            assert_eq!(m.anomalies().duplicate_pong, 2, "{:?}", m.anomalies());
        }
    }
}

/// With a horizon (`live --pair-horizon`), presence forgets the peers not heard from for
/// that long and the changes older than it; without one (`analyze`) it keeps them.
#[test]
fn presence_expires_past_its_horizon() {
    for horizon in [Some(60 * SEC), None] {
        let mut m = Matcher::new(MatcherConfig {
            presence_horizon_ns: horizon,
            ..MatcherConfig::default()
        });
        let mut out = Vec::new();
        m.observe(&ping("p", Some("a")), &direct(0, 1, 2), &mut out);
        m.observe(
            &pong("r", Status::Online, Some("a")),
            &direct(5 * MS, 2, 1),
            &mut out,
        );
        let later = 200 * SEC;
        m.observe(&ping("p", Some("b")), &direct(later, 1, 3), &mut out);
        m.observe(
            &pong("s", Status::Busy, Some("b")),
            &direct(later + 5 * MS, 3, 1),
            &mut out,
        );
        let p = m.presence();
        let kept = (p.current().len(), p.changes().len());
        if horizon.is_some() {
            assert_eq!(kept, (1, 1));
            assert_eq!(p.changes()[0].to, Status::Busy);
            assert_eq!(m.expiry().presence_peers, 1);
            assert_eq!(m.expiry().presence_changes, 1);
        } else {
            assert_eq!(kept, (2, 2));
            assert_eq!(m.expiry().presence_peers, 0);
        }
    }
}

/// At the pair cap, folded pairs make room before any live pair is evicted.
#[test]
fn folded_pairs_make_room_before_evictions() {
    let mut m = Matcher::new(MatcherConfig {
        max_pairs: 8,
        ..MatcherConfig::default()
    });
    let mut out = Vec::new();
    for k in 0..8u8 {
        let c = format!("c{k}");
        m.observe(&ping("p", Some(&c)), &direct(0, k, k + 100), &mut out);
        m.observe(
            &pong("r", Status::Online, Some(&c)),
            &direct(5 * MS, k + 100, k),
            &mut out,
        );
    }
    assert_eq!(m.sizes().pairs, 8);
    // Folded now, but not yet at the periodic sweep's time (a timeout earlier).
    let t = DEFAULT_TIMEOUT_NS + IDLE_PAIR_NS + 5 * SEC;
    m.observe(&ping("p", Some("n")), &direct(t, 50, 150), &mut out);
    assert_eq!(m.sizes().pairs, 1);
    assert_eq!(m.expiry().pairs_freed, 8);
    assert_eq!(m.anomalies().evicted_pairs, 0, "{:?}", m.anomalies());
    assert_eq!(m.anomalies().evicted_outstanding, 0);
}

/// Each of the matcher's pairs holds two: 24 bytes, and the order of the three kinds
/// (ID, name, unknown) that evictions break ties by.
#[test]
fn a_peer_key_is_24_bytes_and_keeps_its_order() {
    assert_eq!(std::mem::size_of::<PeerKey>(), 24);
    let id = |n: u32| PeerId::parse(&format!("urn:jxta:uuid-{n:032X}03"));
    let keys = [
        PeerKey::new(id(1).as_ref(), None),
        PeerKey::new(id(2).as_ref(), Some("a")),
        PeerKey::new(None, Some("a")),
        PeerKey::new(None, Some("b")),
        PeerKey::new(None, None),
    ];
    for (i, a) in keys.iter().enumerate() {
        for (j, b) in keys.iter().enumerate() {
            assert_eq!(a.cmp(b), i.cmp(&j), "{a:?} against {b:?}");
        }
    }
    assert!(keys[4].is_unknown() && !keys[2].is_unknown() && !keys[0].is_unknown());
}

/// Handing documents over (`observe_owned`, which moves the name, a PING's correlator
/// and the wire notes out instead of copying them) matches exactly what lending them
/// does, on the paths that move something: PINGs and PONGs with and without
/// correlator, relay and transit legs, duplicates, a late PONG, a timeout, an open PING.
#[test]
fn handed_over_documents_match_as_lent_ones() {
    let with = |mut s: Sighting, n: u64| {
        s.wire = cause::WireNotes {
            conn: Some((n, 0)),
            queued_bytes: 100 * n,
            queued_ns: 5 * MS,
            ..Default::default()
        };
        s
    };
    let steps: Vec<(Document, Sighting)> = vec![
        (ping("alice", Some("1")), with(direct(0, ALICE, BOB), 1)),
        (
            ping("alice", Some("1")),
            with(direct(5 * MS, ALICE, BOB), 2),
        ),
        (ping("alice", None), with(direct(10 * MS, ALICE, BOB), 3)),
        (
            pong("bob", Status::Busy, Some("1")),
            with(direct(20 * MS, BOB, ALICE), 4),
        ),
        (
            pong("bob", Status::Online, None),
            with(direct(30 * MS, BOB, ALICE), 5),
        ),
        (
            pong("bob", Status::Online, Some("1")),
            with(direct(40 * MS, BOB, ALICE), 6),
        ),
        (
            ping("carol", Some("7")),
            with(leg(50 * MS, CAROL, ALICE, CAROL, RDV), 7),
        ),
        (
            ping("carol", Some("7")),
            with(leg(51 * MS, CAROL, ALICE, RDV, ALICE), 8),
        ),
        (
            pong("alice", Status::Away, Some("7")),
            with(leg(60 * MS, ALICE, CAROL, ALICE, RDV), 9),
        ),
        (
            pong("alice", Status::Away, Some("7")),
            with(leg(61 * MS, ALICE, CAROL, RDV, CAROL), 10),
        ),
        (
            ping("bob", Some("9")),
            with(direct(70 * MS, BOB, CAROL), 11),
        ),
        (
            pong("carol", Status::Online, Some("9")),
            with(direct(20 * SEC, CAROL, BOB), 12),
        ),
        (ping("alice", None), with(direct(21 * SEC, ALICE, BOB), 13)),
    ];
    let (mut lent, mut given) = (m(), m());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (doc, s) in &steps {
        lent.observe(doc, s, &mut a);
        given.observe_owned(doc.clone(), s.clone(), &mut b);
    }
    lent.finish(30 * SEC, &mut a);
    given.finish(30 * SEC, &mut b);
    assert_eq!(a, b);
    assert_eq!(lent.anomalies(), given.anomalies());
    assert_eq!(lent.overhead(), given.overhead());
    // The steps reach the paths meant: every outcome, relays, repeats, names kept.
    let statuses: Vec<TxStatus> = a.iter().map(|t| t.status).collect();
    for s in [TxStatus::Ok, TxStatus::Timeout, TxStatus::Open] {
        assert!(statuses.contains(&s), "{statuses:?}");
    }
    let an = lent.anomalies();
    assert!(an.relayed_sightings >= 2, "{an:?}");
    assert_eq!(
        (
            an.duplicate_ping_correlator,
            an.duplicate_pong,
            an.late_pong
        ),
        (1, 1, 1),
        "{an:?}"
    );
    assert!(a.iter().all(|t| t.poller_name.is_some()), "{a:?}");
    assert!(a.iter().any(|t| t.cause.queue_bytes > 0), "{a:?}");
}

/// Legs buffers kept from answered transactions start empty: a direct PING answered
/// a hundred times over still has one leg each time.
#[test]
fn reused_legs_buffers_start_empty() {
    let mut m = m();
    let mut out = Vec::new();
    for n in 0..100u64 {
        let c = format!("c{n}");
        m.observe(
            &ping("alice", Some(&c)),
            &direct(n * SEC, ALICE, BOB),
            &mut out,
        );
        m.observe(
            &pong("bob", Status::Online, Some(&c)),
            &direct(n * SEC + 5 * MS, BOB, ALICE),
            &mut out,
        );
    }
    assert_eq!(out.len(), 100);
    assert!(
        out.iter()
            .all(|t| t.status == TxStatus::Ok && t.cause.ping_legs == 1),
        "{:?}",
        out.iter().map(|t| t.cause.ping_legs).collect::<Vec<_>>()
    );
}

/// Equal keys hash alike whatever copy they hold (an ID parsed twice, a name in two
/// allocations), and keys that differ in what they hold hash apart: the hash is of the
/// contents, never of a pointer.
#[test]
fn peer_keys_hash_by_what_they_hold() {
    use std::hash::BuildHasher as _;
    let h = foldhash::fast::RandomState::default();
    let name = |n: &str| PeerKey::Other(Some(Arc::from(n)));
    let pairs = [
        (
            PeerKey::new(Some(&id(1)), None),
            PeerKey::new(Some(&id(1)), Some("a")),
        ),
        (name("alice"), name("alice")),
        (PeerKey::UNKNOWN, PeerKey::new(None, None)),
    ];
    for (a, b) in &pairs {
        assert_eq!(a, b);
        assert_eq!(h.hash_one(a), h.hash_one(b), "{a:?}");
        assert_eq!(h.hash_one((a, b)), h.hash_one((b, a)), "{a:?}");
    }
    let distinct = [
        PeerKey::new(Some(&id(1)), None),
        PeerKey::new(Some(&id(2)), None),
        name("alice"),
        name("bob"),
        PeerKey::UNKNOWN,
    ];
    for (i, a) in distinct.iter().enumerate() {
        for b in &distinct[i + 1..] {
            assert_ne!(h.hash_one(a), h.hash_one(b), "{a:?} {b:?}");
        }
    }
}

/// The index of open correlators (for PONGs that name no poller) is pruned as PINGs are
/// answered, so it stays proportional to what is outstanding, and keeps every PING still
/// open: one sent before three thousand answered ones is still found by a multicast
/// PONG.
#[test]
fn open_correlators_are_pruned_and_keep_the_outstanding() {
    let mut m = m();
    let mut out = Vec::new();
    m.observe(
        &ping("alice", Some("early")),
        &direct(0, ALICE, BOB),
        &mut out,
    );
    for i in 0..3_000u64 {
        let c = format!("c{i}");
        let t = MS + i * MS;
        m.observe(&ping("carol", Some(&c)), &direct(t, CAROL, BOB), &mut out);
        m.observe(
            &pong("bob", Status::Online, Some(&c)),
            &direct(t + 100, BOB, CAROL),
            &mut out,
        );
    }
    assert_eq!(out.len(), 3_000);
    let entries = m.open_correlator_entries();
    assert!(
        entries <= 1024 + 2,
        "{entries} entries for one PING outstanding"
    );
    m.observe(
        &pong("bob", Status::Online, Some("early")),
        &multicast(4 * SEC, BOB),
        &mut out,
    );
    let got: Vec<_> = out
        .iter()
        .skip(3_000)
        .map(|t| (t.poller_id.clone(), t.receiver_id.clone(), t.status))
        .collect();
    assert_eq!(got, vec![(Some(id(ALICE)), Some(id(BOB)), TxStatus::Ok)]);
}

/// A late or relayed PONG finds its finished correlator with its pair's hash, the
/// fallback pair's when its PING named no receiver, and changes the outcome it found:
/// a relay's delivery leg once, then a duplicate; a late PONG once a timeout, also
/// after its poller reused the correlator.
#[test]
fn late_and_relayed_pongs_find_their_finished_correlators() {
    let mut m = m();
    let mut out = Vec::new();
    let online = |name, c| pong(name, Status::Online, Some(c));
    m.observe(
        &ping("alice", Some("1")),
        &leg(0, ALICE, BOB, ALICE, RDV),
        &mut out,
    );
    m.observe(
        &online("bob", "1"),
        &leg(SEC, BOB, ALICE, BOB, RDV),
        &mut out,
    );
    m.advance(10 * SEC, &mut out);
    for t in [11 * SEC, 11 * SEC + MS] {
        m.observe(
            &online("bob", "1"),
            &leg(t, BOB, ALICE, RDV, ALICE),
            &mut out,
        );
    }
    assert_eq!(m.anomalies().relayed_sightings, 1);
    assert_eq!(m.anomalies().duplicate_pong, 1);
    // Keyed (carol, unknown): the PONG from bob finds it through the fallback pair.
    let unnamed = |t| Sighting {
        dst_peer: None,
        hop_dst: None,
        ..direct(t, CAROL, BOB)
    };
    m.observe(&ping("carol", Some("7")), &unnamed(20 * SEC), &mut out);
    m.advance(31 * SEC, &mut out);
    m.observe(&online("bob", "7"), &direct(32 * SEC, BOB, CAROL), &mut out);
    assert_eq!(m.anomalies().late_pong, 1);
    // Carol restarts and polls with "7" again: answered, then a repeat is a duplicate,
    // and once that one times out too, a late PONG again.
    m.observe(&ping("carol", Some("7")), &unnamed(40 * SEC), &mut out);
    for t in [41 * SEC, 42 * SEC] {
        m.observe(&online("bob", "7"), &direct(t, BOB, CAROL), &mut out);
    }
    m.observe(&ping("carol", Some("7")), &unnamed(60 * SEC), &mut out);
    m.advance(71 * SEC, &mut out);
    m.observe(&online("bob", "7"), &direct(72 * SEC, BOB, CAROL), &mut out);
    let a = m.anomalies();
    assert_eq!((a.duplicate_pong, a.late_pong), (2, 2), "{a:?}");
    assert_eq!((a.relayed_sightings, a.unknown_correlator), (1, 0), "{a:?}");
    let status: Vec<_> = out.iter().map(|t| t.status).collect();
    use TxStatus::{Ok, Timeout};
    assert_eq!(status, [Ok, Timeout, Ok, Timeout]);
}
