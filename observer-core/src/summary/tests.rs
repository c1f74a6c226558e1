//! Tests of the summary: a small run, bounded tables, and the sketch past the exact limit.

use super::example::example_run;
use super::*;
use crate::transaction::csv::record_len;

#[test]
fn summary_of_a_small_run() {
    let (txs, m) = example_run();
    let s = Summary::build(&txs, &m, 3_600_000_000_000);
    assert_eq!(
        s.transactions,
        StatusCounts {
            total: 3,
            ok: 2,
            timeout: 1,
            open: 0
        }
    );
    assert_eq!(s.rtt_ms.count, 2);
    assert!((s.rtt_ms.mean - 900.0).abs() < 1e-9);
    assert_eq!(s.pairs.len(), 2);
    assert_eq!(&*s.pairs[0].poller, "alice");
    assert_eq!(&*s.pairs[0].receiver, "bob");
    assert_eq!(s.matrix.pollers, vec!["alice"]);
    assert_eq!(
        s.matrix.mean_ms[0].iter().filter(|v| v.is_some()).count(),
        1
    );
    assert_eq!(s.presence.changes.len(), 1);
    let o = &s.overhead;
    assert_eq!(o.correlator_bytes_per_ping_mean, Some(45.0));
    assert_eq!(o.correlator_pct_of_ping_message, Some(10.0));
    assert_eq!(o.total_correlator_bytes, 45 * 5);
    let per = o.csv_bytes_per_record.unwrap();
    assert!(per > 50.0 && per < 400.0, "{per}");
    assert!((o.csv_bytes_per_hour.unwrap() - per * 3.0).abs() < 1e-6);
    let j = s.to_json();
    for k in [
        "transactions",
        "rtt_ms",
        "pairs",
        "matrix",
        "presence",
        "overhead",
        "anomalies",
    ] {
        assert!(j.get(k).is_some(), "{k}");
    }
    assert_eq!(j["rtt_ms"]["count"], 2);
    assert_eq!(j["pairs"][0]["poller"], "alice");
    assert!(j["pairs"][0]["rtt_ms"]["p90"].is_number());
    assert_eq!(j["transactions"]["timeout"], 1);
}

/// 100 pollers each polling one receiver more often than the last: the matrix
/// keeps the 64 most active pollers (in name order), says how many it left out,
/// and the per-pair table still has every pair.
#[test]
fn matrix_is_bounded_to_the_most_active_peers() {
    let (base, m) = example_run();
    let template = base[0].clone();
    let mut ts = Vec::new();
    for p in 0..100u32 {
        for k in 0..=p {
            let mut t = template.clone();
            t.poller_name = Some(format!("p{p:03}").into());
            t.poller_id = PeerId::parse(&format!("urn:jxta:uuid-{p:04X}03"));
            t.correlator = Some(k.to_string().into());
            ts.push(t);
        }
    }
    let s = Summary::build(&ts, &m, 1);
    assert_eq!(s.pairs.len(), 100);
    assert_eq!(s.matrix.pollers.len(), MATRIX_MAX_PEERS);
    assert_eq!(s.matrix.omitted_pollers, 100 - MATRIX_MAX_PEERS);
    assert_eq!(s.matrix.omitted_receivers, 0);
    assert_eq!(s.matrix.pollers.first().map(String::as_str), Some("p036"));
    assert_eq!(s.matrix.pollers.last().map(String::as_str), Some("p099"));
    assert_eq!(s.matrix.mean_ms.len(), MATRIX_MAX_PEERS);
    assert!(s
        .matrix
        .mean_ms
        .iter()
        .all(|row| row.len() == 1 && row[0].is_some()));
}

/// Counting each label as it comes gives what counting runs gives, whatever the order
/// of the pairs: sorted, shuffled, every label once, ties among the most active,
/// empty labels and fewer labels than the bound.
#[test]
fn most_active_without_runs_is_with_runs() {
    let pair = |label: &str, total: u64| PairSummary {
        poller: label.into(),
        poller_id: None,
        receiver: "".into(),
        receiver_id: None,
        counts: StatusCounts {
            total,
            ..StatusCounts::default()
        },
        rtt_ms: RttStats::default(),
    };
    let mut cases: Vec<Vec<PairSummary>> = vec![
        Vec::new(),
        vec![pair("", 0)],
        vec![pair("a", 1), pair("b", 1), pair("a", 1), pair("c", 2)],
    ];
    // 300 pairs over 37 labels in a scrambled order, with ties.
    let mut x = 7u64;
    let mut many = Vec::new();
    for _ in 0..300 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        many.push(pair(&format!("r{}", (x >> 33) % 37), (x >> 50) % 4));
    }
    let mut sorted = many.clone();
    sorted.sort_by(|a, b| a.poller.cmp(&b.poller));
    cases.push(many);
    cases.push(sorted);
    // Shared copies, as the summary's labels are, with namesakes in other copies of
    // their text (and of the empty one): counted by copy, then merged by text.
    let pool: Vec<Arc<str>> = ["a", "b", "a", "", "c", "", "b", "d"]
        .into_iter()
        .map(Arc::from)
        .collect();
    let mut shared = Vec::new();
    for _ in 0..200 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let mut p = pair("", (x >> 50) % 5);
        p.poller = Arc::clone(&pool[((x >> 33) % 8) as usize]);
        shared.push(p);
    }
    let mut sorted = shared.clone();
    sorted.sort_by(|a, b| a.poller.cmp(&b.poller));
    cases.push(shared);
    cases.push(sorted);
    for pairs in &cases {
        for max in [0, 1, 2, 5, 36, 37, 64] {
            assert_eq!(
                most_active(pairs, |p| &p.poller, Runs::No, max),
                most_active(pairs, |p| &p.poller, Runs::Yes, max),
                "{max}"
            );
        }
    }
}

/// `pair_order` is the order of the four fields as text (`None` first), pairs holding
/// one copy or other copies of the same text (namesakes), IDs or none.
#[test]
fn pair_order_is_the_texts_order() {
    let pool: Vec<Arc<str>> = ["b", "a", "b", "", "ab", "a"]
        .into_iter()
        .map(Arc::from)
        .collect();
    let mut x = 5u64;
    let mut next = |n: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % n
    };
    let mut pairs = Vec::new();
    for _ in 0..400 {
        let mut pick = || Arc::clone(&pool[next(6) as usize]);
        let (poller, receiver) = (pick(), pick());
        let (pid, rid) = (pick(), pick());
        pairs.push(PairSummary {
            poller,
            poller_id: (next(3) > 0).then_some(pid),
            receiver,
            receiver_id: (next(3) > 0).then_some(rid),
            counts: StatusCounts::default(),
            rtt_ms: RttStats::default(),
        });
    }
    let text = |p: &PairSummary| {
        (
            p.poller.to_string(),
            p.receiver.to_string(),
            p.poller_id.as_deref().map(str::to_owned),
            p.receiver_id.as_deref().map(str::to_owned),
        )
    };
    for a in &pairs {
        for b in pairs.iter().take(60) {
            assert_eq!(pair_order(a, b), text(a).cmp(&text(b)));
        }
    }
}

/// `by_copy`'s sums, merged by text, are the sums by text; every copy comes out once,
/// in the order first met.
#[test]
fn by_copy_sums_are_the_sums_by_text() {
    let pool: Vec<Arc<str>> = ["x", "y", "x", "", "", "xy"]
        .into_iter()
        .map(Arc::from)
        .collect();
    // A label that is part of another copy's bytes: same address, other length.
    let whole: &str = &pool[5];
    let mut labels: Vec<(&str, u64)> = Vec::new();
    let mut x = 3u64;
    for _ in 0..100 {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let l = match (x >> 33) % 8 {
            6 => &whole[..1],
            7 => "x",
            i => &*pool[i as usize],
        };
        labels.push((l, (x >> 50) % 7));
    }
    let sums = by_copy(labels.iter().copied());
    let mut firsts: Vec<(*const u8, usize)> = Vec::new();
    for (l, _) in &labels {
        if !firsts.contains(&(l.as_ptr(), l.len())) {
            firsts.push((l.as_ptr(), l.len()));
        }
    }
    let got: Vec<(*const u8, usize)> = sums.iter().map(|(l, _)| (l.as_ptr(), l.len())).collect();
    assert_eq!(got, firsts);
    let by_text = |v: &[(&str, u64)]| {
        let mut m = std::collections::BTreeMap::<String, u64>::new();
        for (l, n) in v {
            *m.entry((*l).to_owned()).or_default() += n;
        }
        m
    };
    assert_eq!(by_text(&sums), by_text(&labels));
    assert!(by_copy(std::iter::empty()).is_empty());
}

mod exact_limit_tests {
    use super::*;
    use crate::transaction::MatcherConfig;

    fn tx(i: u64, rtt_ns: u64) -> Transaction {
        Transaction {
            start: 1_000_000_000 + i * 1_000_000,
            stop: Some(1_000_000_000 + i * 1_000_000 + rtt_ns),
            poller_name: Some(format!("p{}", i % 3).into()),
            poller_id: None,
            receiver_name: Some("r".into()),
            receiver_id: None,
            receiver_status: None,
            status: TxStatus::Ok,
            correlator: None,
            match_method: None,
            ping_bytes: 0,
            pong_bytes: None,
            correlator_overhead_bytes: 0,
            cause: Default::default(),
        }
    }

    /// Past its limit a builder holds no exact RTT any more; counts, mean, sd, min and
    /// max stay exact, percentiles are within the stated error of the exact ones, and
    /// the summary says they are sketched. Below the limit nothing changes.
    #[test]
    fn past_the_exact_limit_rtts_are_sketched_within_the_stated_error() {
        let matcher = Matcher::new(MatcherConfig::default());
        let mut exact = SummaryBuilder::default();
        let mut bounded = SummaryBuilder::with_exact_limit(1000);
        for i in 0..20_000u64 {
            // 0.2 ms to ~4.6 s, scrambled, some above u32 nanoseconds.
            let rtt = 200_000 + (i * 7919 % 20_000) * 230_000;
            exact.add(&tx(i, rtt));
            bounded.add(&tx(i, rtt));
            assert!(bounded.exact_rtts_held() <= 1000);
        }
        assert_eq!(bounded.exact_rtts_held(), 0);
        let e = exact.finish(&matcher, 0);
        let b = bounded.finish(&matcher, 0);
        assert_eq!(e.rtt_percentiles_relative_error, None);
        assert_eq!(
            b.rtt_percentiles_relative_error,
            Some(crate::summary::sketch::SKETCH_RELATIVE_ERROR)
        );
        assert_eq!(b.transactions, e.transactions);
        assert_eq!(b.pairs.len(), e.pairs.len());
        let err = crate::summary::sketch::SKETCH_RELATIVE_ERROR;
        let pairs = e
            .pairs
            .iter()
            .zip(&b.pairs)
            .map(|(x, y)| (&x.rtt_ms, &y.rtt_ms));
        for (x, y) in std::iter::once((&e.rtt_ms, &b.rtt_ms)).chain(pairs) {
            assert_eq!(x.count, y.count);
            for (a, b) in [
                (x.mean, y.mean),
                (x.sd, y.sd),
                (x.min, y.min),
                (x.max, y.max),
            ] {
                assert!((a - b).abs() <= a.abs() * 1e-9, "{a} vs {b}");
            }
            // The sketch's quantile is a rank's value, numpy's interpolates between
            // neighbours: both within the error of the values around that rank.
            for (a, b) in [(x.p50, y.p50), (x.p90, y.p90), (x.p99, y.p99)] {
                assert!((a - b).abs() <= a * err * 1.5, "{a} vs {b}");
            }
        }
    }

    /// The tail's causes count the flagged RTTs above the 90th percentile, those kept
    /// in 4 bytes (under 4.29 s) and those past it alike.
    #[test]
    fn tail_causes_count_flagged_rtts_on_both_sides_of_u32_nanoseconds() {
        use crate::transaction::cause::Flag;
        let matcher = Matcher::new(MatcherConfig::default());
        let mut b = SummaryBuilder::default();
        // 100 RTTs of 1..100 ms, and 10 of 4.3..5.2 s; every third one flagged.
        let rtts = (1..=100u64)
            .map(|ms| ms * 1_000_000)
            .chain((0..10u64).map(|i| 4_300_000_000 + i * 100_000_000));
        let mut long_flagged = 0;
        for (i, rtt) in rtts.enumerate() {
            let mut t = tx(i as u64, rtt);
            if i % 3 == 0 {
                t.cause.flags.insert(Flag::Far);
                long_flagged += u64::from(rtt > u64::from(u32::MAX));
            }
            b.add(&t);
        }
        let tail = b.finish(&matcher, 0).tail.expect("a tail");
        // p90 of 110 sorted values is at rank 98.1: between 99 and 100 ms.
        assert!(
            tail.from_ms > 99.0 && tail.from_ms < 100.0,
            "{}",
            tail.from_ms
        );
        assert_eq!(tail.count, 11);
        assert_eq!(long_flagged, 3);
        // 100 ms (index 99) is flagged, 99 ms is not: the short one in the tail.
        assert_eq!(tail.by_cause.get("far"), Some(&(1 + long_flagged)));
        assert_eq!(tail.none, 11 - 1 - long_flagged);
    }
}

#[test]
fn a_pair_with_one_rtt_holds_it_inline() {
    // Every pair has one until the end of the run; most of a gateway's answer once.
    assert!(std::mem::size_of::<Rtts>() <= 16);
    // 100,000 pairs held to the end (peers10k-1g): the entry is today's size.
    assert_eq!(std::mem::size_of::<Ident>(), 24);
    assert!(std::mem::size_of::<PairAcc>() <= 136);
    let mut r = Rtts::default();
    r.push(5_000);
    assert!(matches!(r, Rtts::One(5_000)));
    let long = u64::from(u32::MAX) + 1;
    r.push(long);
    r.push(7_000);
    assert_eq!(r.len(), 3);
    // Under 4.29 s first, each part in arrival order, as before the inline form.
    assert_eq!(r.into_ms(), vec![0.005, 0.007, long as f64 / 1e6]);
    // Three short ones stay inline; a fourth, or a long one, goes to the vectors in
    // the same order.
    for last in [4_000, long] {
        let mut r = Rtts::default();
        for ns in [3_000, 1_000, 2_000] {
            r.push(ns);
        }
        assert!(matches!(r, Rtts::Few(3, [3_000, 1_000, 2_000])));
        r.push(last);
        assert!(matches!(r, Rtts::Exact(_)));
        assert_eq!(r.len(), 4);
        assert_eq!(r.into_ms(), vec![0.003, 0.001, 0.002, last as f64 / 1e6]);
    }
}

/// A pair idle past the horizon leaves the per-pair view and is counted; the totals and
/// the run's RTT statistics still cover it, and it comes back as a new entry.
#[test]
fn idle_pairs_expire_from_the_per_pair_view_only() {
    let (txs, m) = example_run();
    let mut b = SummaryBuilder::default();
    for t in &txs {
        b.add(t);
    }
    let kept = Summary::build(&txs, &m, 3_600_000_000_000);
    assert_eq!(b.pairs_held(), 2);
    // alice→bob ended at 2 s, alice→carol (a timeout) later.
    assert_eq!(b.expire_idle(2_000_000_000), 0);
    assert_eq!(b.expire_idle(2_000_000_001), 1);
    assert_eq!((b.pairs_held(), b.pairs_expired()), (1, 1));
    let bob = txs
        .iter()
        .find(|t| t.receiver_name.as_deref() == Some("bob"));
    let mut again = SummaryBuilder::default();
    for t in &txs {
        again.add(t);
    }
    again.expire_idle(2_000_000_001);
    if let Some(t) = bob {
        again.add(t);
    }
    assert_eq!(again.pairs_held(), 2);
    let s = b.finish(&m, 3_600_000_000_000);
    assert_eq!(s.pairs.len(), 1);
    assert_eq!(s.pairs[0].receiver, kept.pairs[1].receiver);
    assert_eq!(s.transactions, kept.transactions);
    assert_eq!(s.rtt_ms, kept.rtt_ms);
}

#[test]
fn pairs_share_one_copy_of_each_name_and_label_with_the_latest() {
    let mut names = SharedNames::default();
    let (mut a, mut b) = (None, None);
    // Two copies of one name, as two matchers (shards) or a CSV would give them.
    update_name(&mut a, &mut 0, &Some(Arc::from("alpha")), &mut names);
    update_name(&mut b, &mut 0, &Some(Arc::from("alpha")), &mut names);
    let ptr = |k: &Option<Arc<str>>| k.as_ref().map(|n| n.as_ptr());
    assert_eq!(ptr(&a), ptr(&b));
    assert!(ptr(&a).is_some());
    // No name keeps the last; a new one replaces it.
    update_name(&mut a, &mut 0, &None, &mut names);
    assert_eq!(a.as_deref(), Some("alpha"));
    update_name(&mut a, &mut 0, &Some(Arc::from("beta")), &mut names);
    assert_eq!(a.as_deref(), Some("beta"));
    assert_eq!(b.as_deref(), Some("alpha"));
    // Bounded: past the cap the table starts again, names stay right.
    for n in 0..2 * crate::transaction::SHARED_NAMES + 1 {
        let mut k = None;
        update_name(
            &mut k,
            &mut 0,
            &Some(Arc::from(format!("p{n}"))),
            &mut names,
        );
        assert_eq!(k.as_deref(), Some(format!("p{n}").as_str()));
        assert!(names.len() <= crate::transaction::SHARED_NAMES);
    }
}

/// The CSV bytes of the overhead report, with name lengths kept per pair, are each
/// record's as measured alone: through name changes (to a name that is quoted, one that
/// is defused, an empty one, an equal copy), transactions without a name, namesakes
/// whose lengths differ in the pairs, and a length too long to keep.
#[test]
fn csv_bytes_are_the_records_lengths_with_kept_name_lengths() {
    let (txs, m) = example_run();
    let names = [
        None,
        Some("alice"),
        Some("a,\"b\""),
        Some("=x"),
        Some(""),
        Some("alice"),
        None,
        Some("\u{e9}t\u{e9} \r\n"),
    ];
    let mut all = Vec::new();
    for (i, t) in txs.iter().cycle().take(60).enumerate() {
        let mut t = t.clone();
        t.poller_name = names[i % names.len()].map(Arc::from);
        t.receiver_name = names[(i / 3) % names.len()].map(Arc::from);
        all.push(t);
    }
    let (b, expected) = assert_csv_bytes_add_up(&all);
    let per = b.finish(&m, 1).overhead.csv_bytes_per_record;
    assert_eq!(per, Some(expected as f64 / all.len() as f64));
    // A kept length that did not fit is measured again each time.
    let mut names = SharedNames::default();
    let (mut kept, mut len) = (None, 0);
    let seen = Some(Arc::from("-a,b"));
    assert_eq!(update_name(&mut kept, &mut len, &seen, &mut names), 7);
    assert_eq!(len, 7);
    len = LEN_UNKEPT;
    assert_eq!(update_name(&mut kept, &mut len, &seen, &mut names), 7);
    assert_eq!(update_name(&mut kept, &mut len, &None, &mut names), 0);
}

/// The summary's CSV bytes are the records' lengths whatever the correlators: the same
/// copy again, an equal copy, none between two of the same copy, quoted and defused
/// ones, an empty one, a copy dropped by the transaction and made again with other
/// text; and `correlator_len` is always `text_len` of the correlator.
#[test]
fn csv_bytes_are_the_records_lengths_with_the_last_correlator_kept() {
    let (txs, m) = example_run();
    let s1: Arc<str> = Arc::from("s00000001");
    let quoted: Arc<str> = Arc::from("a,\"b\"");
    let correlators = [
        Some(Arc::clone(&s1)),
        Some(Arc::clone(&s1)),
        Some(Arc::from("s00000001")),
        None,
        Some(Arc::clone(&s1)),
        Some(Arc::clone(&quoted)),
        Some(Arc::clone(&quoted)),
        Some(Arc::from("=cmd")),
        Some(Arc::from("")),
        Some(Arc::from("x\ny")),
        Some(Arc::clone(&s1)),
    ];
    let mut all = Vec::new();
    for (i, t) in txs.iter().cycle().take(55).enumerate() {
        let mut t = t.clone();
        t.correlator = correlators[i % correlators.len()].clone();
        all.push(t);
    }
    let (b, _) = assert_csv_bytes_add_up(&all);
    // A transaction's own copy, freed after it, and its place reused by other text: the
    // kept copy is the builder's, so no stale length is given.
    let mut last = None;
    for text in ["abc", "a,b", "abc", "=1", "", "abc"] {
        let seen = Some(Arc::<str>::from(text));
        assert_eq!(correlator_len(&mut last, &seen), text_len(text), "{text:?}");
        assert_eq!(correlator_len(&mut last, &seen), text_len(text), "{text:?}");
        assert_eq!(correlator_len(&mut last, &None), 0);
    }
    assert!(b.finish(&m, 1).overhead.csv_bytes_per_record.is_some());
}

/// `update_name`'s inlined cases give what `renew_name` alone gives (the name kept,
/// its length, the field's length): the same copy again, an equal copy, no name, a new
/// name, a quoted and a defused one, and a length not kept, in turn.
#[test]
fn update_name_is_renew_name() {
    let alice: Arc<str> = Arc::from("alice");
    let quoted: Arc<str> = Arc::from("a,\"b\"");
    let seen = [
        Some(Arc::clone(&alice)),
        Some(Arc::clone(&alice)),
        None,
        Some(Arc::from("alice")),
        Some(Arc::clone(&alice)),
        Some(Arc::clone(&quoted)),
        Some(Arc::clone(&quoted)),
        Some(Arc::from("=x")),
        None,
        Some(Arc::from("")),
        Some(Arc::clone(&alice)),
    ];
    for unkept_at in [None, Some(1), Some(4), Some(6)] {
        let (mut names_a, mut names_b) = (SharedNames::default(), SharedNames::default());
        let (mut kept_a, mut kept_b) = (None, None);
        let (mut len_a, mut len_b) = (0, 0);
        for (i, n) in seen.iter().enumerate() {
            if unkept_at == Some(i) {
                (len_a, len_b) = (LEN_UNKEPT, LEN_UNKEPT);
            }
            let a = update_name(&mut kept_a, &mut len_a, n, &mut names_a);
            let b = renew_name(&mut kept_b, &mut len_b, n, &mut names_b);
            assert_eq!(a, b, "{i} {n:?}");
            assert_eq!(kept_a, kept_b, "{i}");
            assert_eq!(len_a, len_b, "{i}");
            if let Some(n) = n {
                assert_eq!(a, crate::transaction::csv::text_len(n), "{i}");
            }
        }
    }
}

/// Pairs are looked up by the transaction's borrowed identity and kept under an owned
/// one: both must hash and compare alike, also after `expire_idle` rebuilds the table
/// from the owned keys. A pair by ID, one by name only, and the unidentified one (no
/// name, or the name `?`, which is its label) each keep one entry however often seen.
#[test]
fn pairs_are_found_by_their_borrowed_key_before_and_after_a_rebuild() {
    let (txs, _) = example_run();
    let Some(first) = txs.first() else {
        panic!("the example run has transactions");
    };
    let by_name = |poller: Option<&str>, start: u64| Transaction {
        start,
        stop: Some(start + 1),
        poller_id: None,
        poller_name: poller.map(Arc::from),
        receiver_id: None,
        receiver_name: None,
        ..first.clone()
    };
    let mut b = SummaryBuilder::default();
    let seen = |b: &mut SummaryBuilder, start: u64| {
        b.add(&Transaction {
            start,
            stop: Some(start + 1),
            ..first.clone()
        });
        b.add(&by_name(Some("dave"), start));
        b.add(&by_name(None, start));
        b.add(&by_name(Some("?"), start));
    };
    seen(&mut b, 10);
    assert_eq!(b.pairs_held(), 3);
    seen(&mut b, 20);
    assert_eq!(b.pairs_held(), 3);
    // A fourth pair that expires: the table is rebuilt from the three kept.
    b.add(&by_name(Some("erin"), 0));
    assert_eq!(b.pairs_held(), 4);
    assert_eq!(b.expire_idle(5), 1);
    seen(&mut b, 30);
    assert_eq!(b.pairs_held(), 3);
    assert_eq!(b.counts().total, 13);
}

/// A pair's labels are its latest names, else its IDs' text (the IDs' own copies, not
/// copied again), else `?`; its IDs are the IDs' text; and the JSON shows them as the
/// strings they were (`null` for no ID).
#[test]
fn a_pairs_labels_are_its_names_else_its_ids_else_unknown() {
    let (txs, m) = example_run();
    let Some(first) = txs.first() else {
        panic!("the example run has transactions");
    };
    let ids = [
        PeerId::parse(
            "urn:jxta:uuid-59616261646162614A78746150325033AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA03",
        ),
        PeerId::parse(
            "urn:jxta:uuid-59616261646162614A78746150325033BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB03",
        ),
    ];
    let [Some(p), Some(r)] = ids.clone() else {
        panic!("valid IDs");
    };
    let tx = |start: u64,
              poller_id: Option<&PeerId>,
              poller_name: Option<&str>,
              receiver_id: Option<&PeerId>,
              receiver_name: Option<&str>| Transaction {
        start,
        stop: Some(start + 1),
        poller_id: poller_id.cloned(),
        poller_name: poller_name.map(Arc::from),
        receiver_id: receiver_id.cloned(),
        receiver_name: receiver_name.map(Arc::from),
        ..first.clone()
    };
    let txs = [
        // Named, then renamed: the latest name is the label.
        tx(1, Some(&p), Some("old"), Some(&r), None),
        tx(2, Some(&p), Some("zed"), Some(&r), None),
        // By ID only, both ways round.
        tx(3, Some(&r), None, Some(&p), None),
        // Neither name nor ID: `?`, twice in one pair.
        tx(4, None, None, None, None),
        // A name only.
        tx(5, None, Some("ann"), None, Some("bo")),
    ];
    let s = Summary::build(&txs, &m, 1);
    let got: Vec<(&str, Option<&str>, &str, Option<&str>)> = s
        .pairs
        .iter()
        .map(|q| {
            (
                &*q.poller,
                q.poller_id.as_deref(),
                &*q.receiver,
                q.receiver_id.as_deref(),
            )
        })
        .collect();
    let (ps, rs) = (Some(p.as_str()), Some(r.as_str()));
    assert_eq!(
        got,
        vec![
            ("?", None, "?", None),
            ("ann", None, "bo", None),
            (r.as_str(), rs, p.as_str(), ps),
            ("zed", ps, r.as_str(), rs),
        ]
    );
    // The ID and its label are the ID's own copy.
    let by_id = &s.pairs[2];
    let Some(pid) = &by_id.poller_id else {
        panic!("an ID");
    };
    assert!(Arc::ptr_eq(pid, &by_id.poller));
    assert_eq!(r.clone().into_text().as_ptr(), pid.as_ptr());
    let j = s.to_json();
    assert_eq!(j["pairs"][0]["poller"], "?");
    assert!(j["pairs"][0]["poller_id"].is_null());
    assert_eq!(j["pairs"][3]["poller"], "zed");
    assert_eq!(j["pairs"][3]["poller_id"], p.as_str());
    assert_eq!(j["pairs"][3]["receiver"], r.as_str());
}

/// The matrix as it was built before pollers were counted by runs: every pair looked
/// up in a map, every row found by a binary search, and all labels ranked by a sort
/// (not only the kept ones found).
fn matrix_reference(pairs: &[PairSummary]) -> Matrix {
    fn active(labels: &[(&str, u64)]) -> (Vec<String>, usize) {
        let mut count: std::collections::HashMap<&str, u64> = Default::default();
        for (l, n) in labels {
            *count.entry(*l).or_default() += n;
        }
        let total = count.len();
        let mut ranked: Vec<(&str, u64)> = count.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        ranked.truncate(MATRIX_MAX_PEERS);
        let mut kept: Vec<String> = ranked.into_iter().map(|(l, _)| l.to_owned()).collect();
        kept.sort();
        let omitted = total - kept.len();
        (kept, omitted)
    }
    let of = |f: fn(&PairSummary) -> &str| -> Vec<(&str, u64)> {
        pairs.iter().map(|p| (f(p), p.counts.total)).collect()
    };
    let (pollers, omitted_pollers) = active(&of(|p| &p.poller));
    let (receivers, omitted_receivers) = active(&of(|p| &p.receiver));
    let mut mean_ms = vec![vec![None; receivers.len()]; pollers.len()];
    for p in pairs.iter().filter(|p| p.rtt_ms.count > 0) {
        if let (Ok(r), Ok(c)) = (
            pollers.binary_search_by(|l| l.as_str().cmp(&p.poller)),
            receivers.binary_search_by(|l| l.as_str().cmp(&p.receiver)),
        ) {
            mean_ms[r][c] = Some(p.rtt_ms.mean);
        }
    }
    Matrix {
        pollers,
        receivers,
        mean_ms,
        omitted_pollers,
        omitted_receivers,
    }
}

proptest::proptest! {
    /// Counting a poller's pairs by runs and finding its row once a run gives the
    /// matrix of a look-up for every pair, whether the pairs come sorted (as the
    /// summary's do), in runs broken up, or in any order; with more pollers and
    /// receivers than the matrix keeps, and pairs without an answer.
    #[test]
    fn matrix_by_runs_is_the_matrix_by_pairs(
        raw in proptest::collection::vec((0u8..90, 0u8..90, 0u64..20, 0u64..3, 0u32..1000), 0..400),
        sort in proptest::bool::ANY,
    ) {
        let mut pairs: Vec<PairSummary> = raw
            .iter()
            .map(|&(p, r, total, answered, mean)| PairSummary {
                poller: format!("p{p}").into(),
                poller_id: None,
                receiver: format!("r{r}").into(),
                receiver_id: None,
                counts: StatusCounts { total, ok: answered.min(total), ..StatusCounts::default() },
                rtt_ms: RttStats {
                    count: answered,
                    mean: f64::from(mean) / 7.0,
                    ..RttStats::default()
                },
            })
            .collect();
        if sort {
            pairs.sort_by(|a, b| (&a.poller, &a.receiver).cmp(&(&b.poller, &b.receiver)));
        }
        proptest::prop_assert_eq!(Matrix::from_pairs(&pairs), matrix_reference(&pairs));
    }
}

/// Each pair's RTTs are summarised where they land in the overall list: the pair's
/// statistics and the overall percentiles are those of lists made apart.
#[test]
fn pair_statistics_are_those_of_their_own_rtts() {
    let (base, m) = example_run();
    let mut ts = Vec::new();
    for p in 0..5u64 {
        for k in 0..=(3 * p) {
            let mut t = base[0].clone();
            t.poller_name = Some(format!("p{p}").into());
            t.poller_id = None;
            t.status = TxStatus::Ok;
            t.stop = Some(t.start + 1_000_000 * ((k * 7919 + p * 31) % 97 + 1));
            ts.push(t);
        }
    }
    let s = Summary::build(&ts, &m, 3_600_000_000_000);
    let rtts = |name: &str| -> Vec<u64> {
        ts.iter()
            .filter(|t| t.poller_name.as_deref() == Some(name))
            .filter_map(Transaction::rtt_ns)
            .collect()
    };
    assert_eq!(s.pairs.len(), 5);
    for pair in &s.pairs {
        assert_eq!(
            pair.rtt_ms,
            RttStats::from_ns(rtts(&pair.poller)),
            "{}",
            pair.poller
        );
    }
    let every: Vec<u64> = ts.iter().filter_map(Transaction::rtt_ns).collect();
    assert_eq!(s.rtt_ms, RttStats::from_ns(every));
}

/// A pair's IDs are their text as `Display` writes it, and a pair without a name is
/// labelled by its ID's text.
#[test]
fn pair_ids_and_unnamed_labels_are_the_ids_text() {
    let (mut txs, m) = example_run();
    let Some(mut unnamed) = txs.first().cloned() else {
        panic!("the example run has transactions");
    };
    unnamed.poller_name = None;
    unnamed.receiver_name = None;
    unnamed.start += 1;
    txs.push(unnamed.clone());
    let s = Summary::build(&txs, &m, 3_600_000_000_000);
    let mut with_id = 0;
    for p in &s.pairs {
        let t = txs
            .iter()
            .find(|t| {
                t.poller_id.as_ref().map(|i| i.to_string()).as_deref() == p.poller_id.as_deref()
                    && t.receiver_id.as_ref().map(|i| i.to_string()).as_deref()
                        == p.receiver_id.as_deref()
            })
            .expect("each pair's IDs are a transaction's");
        with_id += usize::from(p.poller_id.is_some());
        assert!(t.poller_id.is_some() || p.poller_id.is_none());
    }
    assert!(with_id > 0);
    let id_text = |i: &Option<crate::jxta::PeerId>| i.as_ref().map(|i| i.to_string());
    let Some(poller) = id_text(&unnamed.poller_id) else {
        panic!("the example's poller has an ID");
    };
    // The pair keeps the latest name seen: the unnamed one came last but names stay.
    assert!(s.pairs.iter().all(|p| &*p.poller != "?"));
    let by_id = Summary::build(std::slice::from_ref(&unnamed), &m, 3_600_000_000_000);
    assert_eq!(by_id.pairs.len(), 1);
    assert_eq!(&*by_id.pairs[0].poller, poller);
    assert_eq!(by_id.pairs[0].poller_id.as_deref(), Some(poller.as_str()));
    assert_eq!(
        Some(by_id.pairs[0].receiver.to_string()),
        id_text(&unnamed.receiver_id)
    );
}

/// The builder's CSV bytes are, after each transaction added, the sum of the records'
/// lengths as the CSV writer measures them; the builder and that sum.
fn assert_csv_bytes_add_up(all: &[Transaction]) -> (SummaryBuilder, u64) {
    let mut b = SummaryBuilder::default();
    let mut expected = 0;
    for t in all {
        b.add(t);
        expected += record_len(t);
        assert_eq!(b.csv_bytes, expected, "{t:?}");
    }
    (b, expected)
}
