//! Deterministic sample captures from scripted scenarios, each with its ground truth.
//!
//! `cargo xtask captures` writes them into `captures/`; tests render them in memory
//! (also under other link types and file formats) and compare `analyze` with the truth.
//! The encoders used here are the library's own (`jxta`, `jim`, `packet::build`,
//! `capture::CaptureWriter`): the reference peer speaks through the same ones.

pub mod figure;
pub mod http;
pub mod scenario;
pub mod wire;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use scenario::{Change, Inject, Injected, Layout, PeerSpec, Rendered, Route, Script, EPOCH};

use crate::capture::WriteFormat;
use crate::jim::Status;
use crate::packet::build::LinkVariant;
use crate::transaction::csv::TransactionCsvWriter;

const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

fn peer(name: &str, ip: &str, port: u16, instrumented: bool) -> PeerSpec {
    PeerSpec {
        name: name.to_string(),
        ip: ip.parse::<IpAddr>().expect("literal address"),
        port,
        instrumented,
        polls: true,
    }
}

fn base(name: &'static str, peers: Vec<PeerSpec>, buddies: Vec<(usize, usize)>) -> Script {
    Script {
        name,
        layout: Layout::Jxse25,
        peers,
        buddies,
        route: Route::Direct,
        poll_interval_ns: 3 * SEC,
        poll_stagger_ns: 37 * MS,
        duration_ns: 30 * SEC,
        capture_offset_ns: 0,
        changes: Vec::new(),
        messages: Vec::new(),
        multicast: None,
        stress: false,
        natural_peaks: true,
        inject: Vec::new(),
        reroute: None,
        timeout_ns: 10 * SEC,
        seed: 1,
    }
}

/// Two instrumented peers polling each other.
pub fn two_peers() -> Script {
    let mut s = base(
        "two-peers",
        vec![
            peer("alice", "10.0.0.1", 9701, true),
            peer("bob", "10.0.0.2", 9701, true),
        ],
        vec![(0, 1)],
    );
    s.seed = 2;
    s
}

/// Four peers in a full mesh; bob changes state, carol's program goes away (timeouts,
/// and PINGs still open when the capture ends), dave runs unmodified JIM (no
/// correlators: matched by order); a fragmented multicast discovery datagram and an
/// instant message share the capture.
pub fn four_peers() -> Script {
    let mut s = base(
        "four-peers",
        vec![
            peer("alice", "10.0.0.1", 9701, true),
            peer("bob", "10.0.0.2", 9701, true),
            peer("carol", "10.0.0.3", 9711, true),
            peer("dave", "10.0.0.4", 8721, false),
        ],
        vec![(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)],
    );
    s.poll_interval_ns = 5 * SEC;
    s.duration_ns = 60 * SEC;
    s.changes = vec![
        (15 * SEC, 1, Change::Status(Status::Busy)),
        (25 * SEC, 1, Change::Status(Status::Away)),
        (35 * SEC, 1, Change::Status(Status::Offline)),
        (45 * SEC, 1, Change::Status(Status::Online)),
        (38 * SEC, 2, Change::Gone),
    ];
    s.messages = vec![(12 * SEC, 0, 1, "see you at noon".into())];
    s.multicast = Some((SEC / 2, 4000));
    s.seed = 4;
    s
}

/// Two peers that reach each other only through a rendezvous; the capture, on the
/// rendezvous, sees both legs of every message (IPv6).
pub fn relayed() -> Script {
    let mut rdv = peer("rdv", "2001:db8::10", 9701, true);
    rdv.polls = false;
    let mut s = base(
        "relayed",
        vec![
            peer("alice", "2001:db8::1", 9701, true),
            peer("bob", "2001:db8::2", 9701, true),
            rdv,
        ],
        vec![(0, 1)],
    );
    s.route = Route::Via(2);
    s.seed = 3;
    s
}

/// Messages split over many segments, several messages per segment, reordering,
/// retransmission, a gap the capture missed, and a capture that starts mid-connection
/// in the middle of a message.
pub fn segmentation() -> Script {
    let mut s = base(
        "segmentation",
        vec![
            peer("alice", "10.0.0.1", 9701, true),
            peer("bob", "10.0.0.2", 9701, true),
        ],
        vec![(0, 1)],
    );
    s.stress = true;
    s.capture_offset_ns = 2 * SEC;
    s.poll_interval_ns = 2 * SEC;
    s.seed = 5;
    s
}

/// The JXSE 2.7 layout: `content-length` first, `cbid-` peer IDs, an
/// `EndpointRouterMsg-fingerprint` element without MIME type.
pub fn jxse27() -> Script {
    let mut s = base(
        "jxse27",
        vec![
            peer("alice", "10.0.0.1", 9701, true),
            peer("bob", "10.0.0.2", 9711, true),
        ],
        vec![(0, 1)],
    );
    s.layout = Layout::Jxse27;
    s.duration_ns = 20 * SEC;
    s.seed = 27;
    s
}

/// Two peers polling each other every 2 s for 8 minutes, with a cause of delay put on
/// purpose on some polls of each direction (after the first ten, so the pair has a
/// history to be judged against): a lost PING segment, a hole in a PING and in a PONG, a new
/// connection, a slow reply, a large message ahead of the PONG, a zero window inside the
/// PING, a reset before the PONG, a reset instead of an answer (a timeout), a resolver
/// message while the PING waits, and two PINGs never answered (one of them delivered
/// only by a retransmission). No random peaks: the other transactions are quiet.
pub fn explain() -> Script {
    let mut s = base(
        "explain",
        vec![
            peer("alice", "10.0.0.1", 9701, true),
            peer("bob", "10.0.0.2", 9701, true),
        ],
        vec![(0, 1)],
    );
    s.poll_interval_ns = 2 * SEC;
    s.duration_ns = 480 * SEC;
    s.natural_peaks = false;
    let causes = [
        Inject::PingLoss(300_000_000),
        Inject::PingHole(300_000_000),
        Inject::PongLoss(300_000_000),
        Inject::NewConnection,
        Inject::ReplyDelay(2 * SEC),
        Inject::QueueAhead(800_000),
        Inject::ZeroWindow(500_000_000),
        Inject::ResetBeforePong,
        Inject::ResetUnanswered,
        Inject::Service,
        Inject::Ignored,
        Inject::LostIgnored(300_000_000),
    ];
    for (poller, receiver) in [(0, 1), (1, 0)] {
        for k in 0..240u64 {
            // Every fifth poll from the tenth on, each cause in turn, the second
            // direction's two polls (4 s) after the first's so that no two injections
            // meet (a reset in the middle of a stalled PING would lose it); the polls
            // between stay quiet.
            if k >= 10 && k % 5 == 2 * poller as u64 {
                let cause = causes[((k / 5) as usize + poller) % causes.len()];
                s.inject.push((poller, receiver, k, cause));
            }
        }
    }
    s.seed = 20;
    s
}

/// Two peers polling each other directly, until at 30 s their route fails over to a
/// rendezvous (JXSE's relayed pairs after a peer dies); no random peaks. The capture
/// sees every connection.
pub fn reroute() -> Script {
    let mut rdv = peer("rdv", "10.0.0.10", 9701, true);
    rdv.polls = false;
    let mut s = base(
        "reroute",
        vec![
            peer("alice", "10.0.0.1", 9701, true),
            peer("bob", "10.0.0.2", 9701, true),
            rdv,
        ],
        vec![(0, 1)],
    );
    s.duration_ns = 60 * SEC;
    s.natural_peaks = false;
    s.reroute = Some((30 * SEC, 2));
    s.seed = 21;
    s
}

/// The soak test's traffic (`cargo xtask soak`): `peers` instrumented peers in a full
/// mesh (`peers·(peers−1)` distinct pairs, one connection per two), split into two
/// halves by address (10.1/16 and 10.2/16: the two interfaces of a gateway), each pair
/// polling every 20 s with the first polls spread evenly over the first interval, for
/// two and a half intervals after the connections are up. Churn: every tenth peer is
/// killed half an interval in (PINGs it had received go unanswered) and restarted two
/// intervals in, its correlators counting from 1 again: on the same schedule, so each
/// buddy polled before the kill gets its correlator again. Others join an interval late,
/// leave for good, or change state. Each `generation` gives the peers new identities
/// (peer IDs, hence new pairs) on the same addresses.
pub fn soak(peers: usize, generation: u64) -> Script {
    let spec = |i: usize| {
        let half = 1 + i % 2;
        let n = i / 2;
        peer(
            &format!("p{i:04}"),
            &format!("10.{half}.{}.{}", n / 250, n % 250 + 1),
            9701,
            true,
        )
    };
    let mut buddies = Vec::new();
    for a in 0..peers {
        for b in a + 1..peers {
            buddies.push((a, b));
        }
    }
    let pollers = (buddies.len() * 2).max(1) as u64;
    let mut s = base("soak", (0..peers).map(spec).collect(), buddies);
    let interval = 20 * SEC;
    s.poll_interval_ns = interval;
    s.poll_stagger_ns = interval / pollers;
    let start = s.polls_start_ns();
    let at = |intervals: f64| start + (interval as f64 * intervals) as u64;
    s.duration_ns = at(2.5);
    for i in 0..peers {
        match i % 10 {
            3 => {
                s.changes.push((at(0.5), i, Change::Gone));
                s.changes.push((at(2.0), i, Change::Restart));
            }
            5 => s.changes.push((at(1.5), i, Change::Gone)),
            7 => {
                s.changes.push((0, i, Change::Gone));
                s.changes.push((at(1.0), i, Change::Back));
            }
            1 => {
                s.changes.push((at(0.5), i, Change::Status(Status::Busy)));
                s.changes.push((at(1.0), i, Change::Status(Status::Away)));
                s.changes.push((at(2.0), i, Change::Status(Status::Online)));
            }
            _ => {}
        }
    }
    s.seed = 12 + generation;
    s
}

pub fn all() -> Vec<Script> {
    vec![
        two_peers(),
        four_peers(),
        relayed(),
        segmentation(),
        jxse27(),
    ]
}

/// The four-peers scenario run for `seconds`, rendered as an Ethernet, µs,
/// little-endian pcap: the long capture the benchmarks and `cargo xtask
/// bench-capture` use.
pub fn long_four_peers(seconds: u64) -> std::io::Result<(Rendered, Vec<u8>)> {
    let mut script = four_peers();
    script.duration_ns = seconds.saturating_mul(1_000_000_000);
    let rendered = script.render();
    let bytes = rendered.capture_bytes(
        LinkVariant::Ethernet,
        WriteFormat::Pcap {
            nanos: false,
            big_endian: false,
        },
    )?;
    Ok((rendered, bytes))
}

impl Rendered {
    /// The capture as bytes, in the given link layer and file format.
    pub fn capture_bytes(
        &self,
        link: LinkVariant,
        format: WriteFormat,
    ) -> std::io::Result<Vec<u8>> {
        self.wire
            .write(Vec::new(), link, format, self.capture_start)
    }

    /// The ground truth in the transaction CSV format.
    pub fn truth_csv(&self) -> std::io::Result<Vec<u8>> {
        let mut w = TransactionCsvWriter::new(Vec::new()).map_err(std::io::Error::other)?;
        for t in &self.truth {
            w.write(t).map_err(std::io::Error::other)?;
        }
        w.into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Writes `<name>.pcap` and `<name>.truth.csv` for every scenario into `dir`.
pub fn write_samples(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for script in all() {
        let rendered = script.render();
        let pcap = dir.join(format!("{}.pcap", script.name));
        let format = WriteFormat::Pcap {
            nanos: false,
            big_endian: false,
        };
        std::fs::write(
            &pcap,
            rendered.capture_bytes(LinkVariant::Ethernet, format)?,
        )?;
        let truth = dir.join(format!("{}.truth.csv", script.name));
        std::fs::write(&truth, rendered.truth_csv()?)?;
        written.push(pcap);
        written.push(truth);
    }
    // The HTTP transport sample is scripted by hand, not from a `Script`.
    let rendered = http::render();
    let pcap = dir.join(format!("{}.pcap", http::NAME));
    let format = WriteFormat::Pcap {
        nanos: false,
        big_endian: false,
    };
    std::fs::write(
        &pcap,
        rendered.capture_bytes(LinkVariant::Ethernet, format)?,
    )?;
    let truth = dir.join(format!("{}.truth.csv", http::NAME));
    std::fs::write(&truth, rendered.truth_csv()?)?;
    written.push(pcap);
    written.push(truth);
    Ok(written)
}
