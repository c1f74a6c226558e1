//! The capture of real JXSE 2.5 peers (see `captures/README.md`): exactly its 10
//! transactions, with RTTs that agree with tshark's frame times.

mod common;

use observer::runtime::{self, PipelineConfig};
use observer::transaction::{MatchMethod, TxStatus};

#[test]
fn jxse25_pingpong_yields_its_ten_transactions() {
    let path = common::capture("jxse25-pingpong.pcap");
    let analysis = runtime::analyze(&[path], PipelineConfig::default(), false);
    assert!(!analysis.damaged());
    let r = &analysis.result;
    assert_eq!(r.transactions.len(), 10, "{:#?}", r.transactions);
    for (i, t) in r.transactions.iter().enumerate() {
        assert_eq!(t.status, TxStatus::Ok);
        assert_eq!(
            t.correlator.as_deref(),
            Some(format!("corr-{:04}", i + 1).as_str())
        );
        assert_eq!(t.match_method, Some(MatchMethod::Correlator));
        assert_eq!(t.poller_name.as_deref(), Some("PingClient"));
        assert_eq!(t.receiver_name.as_deref(), Some("PingServer"));
        let poller = t
            .poller_id
            .as_ref()
            .expect("poller id from the EndpointRouterMsg");
        let receiver = t.receiver_id.as_ref().expect("receiver id");
        assert!(
            poller
                .as_str()
                .ends_with("A96FCDC35A0A4F3F8038B4F1F4D0B37E03"),
            "{poller}"
        );
        assert!(
            receiver
                .as_str()
                .ends_with("889B6C22963E4D96A9E3E3386F5B281603"),
            "{receiver}"
        );
        // `<correlator>corr-0001</correlator>` is 34 bytes, in the PING and in the PONG.
        assert_eq!(t.correlator_overhead_bytes, 68);
    }
    assert_eq!(
        r.matcher.anomalies().total(),
        0,
        "{:?}",
        r.matcher.anomalies()
    );
}

#[test]
fn jxse25_rtts_agree_with_tshark_frame_times() {
    if !common::tshark_available() {
        return;
    }
    let path = common::capture("jxse25-pingpong.pcap");
    // Each PING/PONG travels in one segment here: its frame time is both the start
    // (PING) and the stop (PONG) by the transaction's definition.
    let rows = common::tshark_fields(
        &path,
        "jxta.message.element.name == \"payload\"",
        &["frame.time_epoch", "xml.tag", "xml.cdata"],
    );
    let mut ping_at = std::collections::HashMap::new();
    let mut pong_at = std::collections::HashMap::new();
    for row in &rows {
        let corr = row[2].split(',').next().expect("correlator").to_string();
        let ts = common::epoch_ns(&row[0]);
        if row[1].starts_with("<PING>") {
            ping_at.insert(corr, ts);
        } else if row[1].starts_with("<PONG>") {
            pong_at.insert(corr, ts);
        }
    }
    assert_eq!(ping_at.len(), 10);
    assert_eq!(pong_at.len(), 10);
    let analysis = runtime::analyze(&[path], PipelineConfig::default(), false);
    assert_eq!(analysis.result.transactions.len(), ping_at.len());
    for t in &analysis.result.transactions {
        let c = t.correlator.as_deref().expect("correlator").to_owned();
        assert_eq!(t.start, ping_at[&c], "{c} start");
        assert_eq!(t.stop, Some(pong_at[&c]), "{c} stop");
        assert_eq!(t.rtt_ns(), Some(pong_at[&c] - ping_at[&c]));
    }
}
