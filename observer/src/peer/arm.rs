//! The study's ARM-style instrumentation, in Rust terms: a bounded pool of open
//! transactions, a unique u64 correlator per PING, start immediately before the PING
//! is written to the socket, stop immediately after its PONG is read, a timeout, and
//! consumers (CSV file, recent records and metrics for the management endpoint) that
//! each finished transaction is handed to.
//!
//! The CSV consumer writes with the core's `TransactionCsvWriter` directly, not through
//! `engine::TransactionSink`, on purpose: the sink stops its record at the first failed
//! write (a capture's record with a hole is worse than one cut short) and builds the
//! passive summary. A peer runs for days as the reference the observer is checked
//! against: a failed write (a disk full for a while) loses that row only, is counted
//! (`csv_errors`, `jim_peer_instrumentation_csv_errors_total`) and the next rows are
//! written; it has its socket-time columns (`write_with_socket`), is flushed after
//! every row for whoever tails the file, and needs no summary (its metrics are the
//! management endpoint's).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufWriter;
use std::sync::Mutex;

use crate::jim::Status;
use crate::jxta::PeerId;
use crate::report::{SocketTimes, TransactionCsvWriter};
use crate::transaction::{MatchMethod, Transaction, TxStatus};
use crate::UnixNanos;

/// Upper bounds (seconds) of the RTT histogram buckets (`+Inf` is implicit).
pub const RTT_BUCKETS: [f64; 13] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Recent records kept for `/records`.
pub const RECENT_RECORDS: usize = 512;

pub fn now_ns() -> UnixNanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Bytes of the `<correlator>…</correlator>` element for a value, as `Document::to_xml`
/// writes it: the instrumentation's per-message overhead.
pub fn correlator_element_bytes(corr: u64) -> u64 {
    format!("<correlator>{corr}</correlator>").len() as u64
}

#[derive(Debug, Clone)]
struct Open {
    receiver: usize,
    start: UnixNanos,
    /// The kernel's TX timestamp of the PING's last byte, once it arrived.
    socket_start: Option<UnixNanos>,
    ping_bytes: u64,
    corr_bytes: u64,
}

/// One finished transaction with the instrumentation's internal correlator (which is
/// also on the wire unless the peer runs with `--no-correlator`).
#[derive(Debug, Clone)]
pub struct Record {
    pub tx: Transaction,
    pub correlator: u64,
    /// Kernel timestamps of the PING leaving and the PONG arriving.
    pub socket: SocketTimes,
}

impl Record {
    /// The study's JMX object name: `<peer>:dest=<receiver>,corr=<correlator>`.
    pub fn name(&self) -> String {
        format!(
            "{}:dest={},corr={}",
            self.tx.poller_name.as_deref().unwrap_or(""),
            self.tx.receiver_name.as_deref().unwrap_or(""),
            self.correlator
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        let t = &self.tx;
        serde_json::json!({
            "name": self.name(),
            "receiver": t.receiver_name.as_deref(),
            "receiver_peer_id": t.receiver_id.as_ref().map(PeerId::as_str),
            "receiver_status": t.receiver_status.map(Status::as_str),
            "transaction_status": t.status.as_str(),
            "correlator": self.correlator.to_string(),
            "start_unix_ns": t.start,
            "stop_unix_ns": t.stop,
            "rtt_us": t.rtt_ns().map(|n| n as f64 / 1000.0),
            "socket_start_unix_ns": self.socket.start,
            "socket_stop_unix_ns": self.socket.stop,
            "socket_rtt_us": t.rtt_ns().and(self.socket.rtt_ns()).map(|n| n as f64 / 1000.0),
            "ping_bytes": t.ping_bytes,
            "pong_bytes": t.pong_bytes,
            "correlator_overhead_bytes": t.correlator_overhead_bytes,
        })
    }
}

/// Per-receiver counters and RTT histogram.
#[derive(Debug, Clone, Default)]
pub struct ReceiverStats {
    pub by_status: BTreeMap<&'static str, u64>,
    pub buckets: [u64; RTT_BUCKETS.len()],
    pub rtt_count: u64,
    pub rtt_sum_s: f64,
}

/// Counters of the instrumentation itself.
#[derive(Debug, Clone, Default)]
pub struct ArmCounters {
    /// PINGs not sent because the pool was full.
    pub pool_full: u64,
    /// PONGs whose correlator is no open transaction (late after a timeout, or unknown).
    pub unmatched_pongs: u64,
    /// Correlator element bytes added to PINGs sent and found in PONGs received.
    pub correlator_bytes_sent: u64,
    pub correlator_bytes_received: u64,
    pub csv_records: u64,
    pub csv_bytes: u64,
    pub csv_errors: u64,
    /// `ok` records without a socket RTT (a kernel timestamp missing).
    pub socket_rtt_missing: u64,
    /// `ok` records whose PONG RX timestamp was withheld ([`PongStamp::Withheld`]);
    /// counted in `socket_rtt_missing` too.
    pub socket_stop_withheld: u64,
}

/// The kernel's RX timestamp of a PONG, as far as the read that completed it can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PongStamp {
    /// The connection has no kernel timestamps.
    None,
    /// The timestamp of the segment that carried the PONG's last byte.
    At(UnixNanos),
    /// Not recorded: bytes behind the PONG were read with it or queued behind it, and
    /// the kernel stamps a read with its last buffer's time and merges segments queued
    /// one behind another under the latest's; the timestamp may be theirs (a reader
    /// 8 ms late took the next PING's arrival for the PONG's under load).
    Withheld,
}

/// What the ARM knows about one receiver.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub peer_id: PeerId,
}

struct Inner {
    open: HashMap<u64, Open>,
    /// Open correlators per receiver, oldest first (the no-correlator matching order).
    order: Vec<VecDeque<u64>>,
    next: u64,
    recent: VecDeque<Record>,
    stats: Vec<ReceiverStats>,
    counters: ArmCounters,
    csv: Option<TransactionCsvWriter<BufWriter<std::fs::File>>>,
}

pub struct Arm {
    poller_name: String,
    poller_id: PeerId,
    receivers: Vec<Receiver>,
    capacity: usize,
    timeout_ns: u64,
    /// Whether the correlator travels on the wire (and so goes into the CSV).
    on_wire: bool,
    inner: Mutex<Inner>,
}

impl Arm {
    pub fn new(
        poller_name: &str,
        poller_id: PeerId,
        receivers: Vec<Receiver>,
        capacity: usize,
        timeout_ns: u64,
        on_wire: bool,
        csv: Option<std::fs::File>,
    ) -> std::io::Result<Arm> {
        let csv = match csv {
            Some(f) => Some(
                TransactionCsvWriter::with_socket_columns(BufWriter::new(f))
                    .map_err(std::io::Error::other)?,
            ),
            None => None,
        };
        // Correlators start high (every one has 19 digits) and differ between peers
        // and between runs of the same peer (the name, the start time and a count of
        // the ARMs this process made), like the study's unique longs: a restarted peer
        // must not repeat the correlators of its previous run.
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let seed = super::config::fnv1a(now_ns() ^ run.rotate_right(17), poller_name.as_bytes());
        // The generator's high bits depend on every bit of the seed (the hash's low
        // bits only on the seed's low bits).
        let run_id = super::config::Rng::new(seed).next_u64() >> 34;
        let base = (1u64 << 62) | run_id << 32;
        let n = receivers.len();
        Ok(Arm {
            poller_name: poller_name.to_string(),
            poller_id,
            receivers,
            capacity: capacity.max(1),
            timeout_ns,
            on_wire,
            inner: Mutex::new(Inner {
                open: HashMap::new(),
                order: vec![VecDeque::new(); n],
                next: base + 1,
                recent: VecDeque::new(),
                stats: vec![ReceiverStats::default(); n],
                counters: ArmCounters::default(),
                csv,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn receivers(&self) -> &[Receiver] {
        &self.receivers
    }

    /// A fresh correlator for the next PING.
    pub fn next_correlator(&self) -> u64 {
        let mut g = self.lock();
        let c = g.next;
        g.next = g.next.wrapping_add(1);
        c
    }

    /// Starts a transaction: call immediately before the PING's bytes are written.
    /// Returns `false` (and counts it) when the pool is full: the PING is then not sent.
    pub fn start(&self, receiver: usize, corr: u64, ping_bytes: u64, corr_bytes: u64) -> bool {
        let mut g = self.lock();
        if g.open.len() >= self.capacity || receiver >= g.order.len() {
            g.counters.pool_full += 1;
            return false;
        }
        g.counters.correlator_bytes_sent += corr_bytes;
        g.order[receiver].push_back(corr);
        g.open.insert(
            corr,
            Open {
                receiver,
                start: now_ns(),
                socket_start: None,
                ping_bytes,
                corr_bytes,
            },
        );
        true
    }

    /// The kernel's TX timestamp of a PING's last byte (ignored once the transaction
    /// is no longer open).
    pub fn socket_start(&self, corr: u64, ns: UnixNanos) {
        if let Some(o) = self.lock().open.get_mut(&corr) {
            o.socket_start = Some(ns);
        }
    }

    /// A transaction whose PING could not be written after all: forgotten.
    pub fn abort(&self, corr: u64) {
        let mut g = self.lock();
        if let Some(o) = g.open.remove(&corr) {
            g.order[o.receiver].retain(|c| *c != corr);
        }
    }

    /// Stops the transaction a PONG from `receiver` answers: the one with `corr` when
    /// the PONG carries a correlator, else the receiver's oldest open one. `stop` is
    /// when the PONG's last byte was read, `socket_stop` the kernel's RX timestamp of
    /// its last segment. Returns `false` for an unmatched PONG.
    #[allow(clippy::too_many_arguments)]
    pub fn stop(
        &self,
        receiver: usize,
        corr: Option<u64>,
        status: Option<Status>,
        pong_bytes: u64,
        pong_corr_bytes: u64,
        stop: UnixNanos,
        socket_stop: PongStamp,
    ) -> bool {
        let mut g = self.lock();
        g.counters.correlator_bytes_received += pong_corr_bytes;
        let found = match corr {
            Some(c) => match g.open.get(&c) {
                Some(o) if o.receiver == receiver => {
                    g.order[receiver].retain(|x| *x != c);
                    Some(c)
                }
                _ => None,
            },
            None => g.order.get_mut(receiver).and_then(VecDeque::pop_front),
        };
        let Some(c) = found else {
            g.counters.unmatched_pongs += 1;
            return false;
        };
        let Some(o) = g.open.remove(&c) else {
            g.counters.unmatched_pongs += 1;
            return false;
        };
        let tx = self.transaction(
            &o,
            c,
            Some(stop.max(o.start)),
            TxStatus::Ok,
            status,
            Some(pong_bytes),
            pong_corr_bytes,
        );
        let socket = SocketTimes {
            start: o.socket_start,
            stop: match socket_stop {
                PongStamp::At(ns) => Some(ns),
                PongStamp::None | PongStamp::Withheld => None,
            },
        };
        if socket.rtt_ns().is_none() {
            g.counters.socket_rtt_missing += 1;
        }
        if socket_stop == PongStamp::Withheld {
            g.counters.socket_stop_withheld += 1;
        }
        self.finish(
            &mut g,
            Record {
                tx,
                correlator: c,
                socket,
            },
        );
        true
    }

    /// Times out every transaction open longer than the timeout at `now`.
    pub fn sweep(&self, now: UnixNanos) {
        let mut g = self.lock();
        let mut expired: Vec<(u64, Open)> = g
            .open
            .iter()
            .filter(|(_, o)| now.saturating_sub(o.start) >= self.timeout_ns)
            .map(|(c, o)| (*c, o.clone()))
            .collect();
        expired.sort_by_key(|(c, o)| (o.start, *c));
        for (c, o) in expired {
            g.open.remove(&c);
            g.order[o.receiver].retain(|x| *x != c);
            let stop = o.start.saturating_add(self.timeout_ns);
            let tx = self.transaction(&o, c, Some(stop), TxStatus::Timeout, None, None, 0);
            let socket = SocketTimes {
                start: o.socket_start,
                stop: None,
            };
            self.finish(
                &mut g,
                Record {
                    tx,
                    correlator: c,
                    socket,
                },
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn transaction(
        &self,
        o: &Open,
        corr: u64,
        stop: Option<UnixNanos>,
        status: TxStatus,
        receiver_status: Option<Status>,
        pong_bytes: Option<u64>,
        pong_corr_bytes: u64,
    ) -> Transaction {
        let r = &self.receivers[o.receiver];
        Transaction {
            start: o.start,
            stop,
            poller_name: Some(self.poller_name.as_str().into()),
            poller_id: Some(self.poller_id.clone()),
            receiver_name: Some(r.name.as_str().into()),
            receiver_id: Some(r.peer_id.clone()),
            receiver_status,
            status,
            correlator: self.on_wire.then(|| corr.to_string().into()),
            match_method: Some(if self.on_wire {
                MatchMethod::Correlator
            } else {
                MatchMethod::Order
            }),
            ping_bytes: o.ping_bytes,
            pong_bytes,
            correlator_overhead_bytes: o.corr_bytes + pong_corr_bytes,
            cause: Default::default(),
        }
    }

    /// Hands a finished transaction to every consumer.
    fn finish(&self, g: &mut Inner, rec: Record) {
        let idx = self
            .receivers
            .iter()
            .position(|r| Some(r.name.as_str()) == rec.tx.receiver_name.as_deref())
            .unwrap_or(0);
        if let Some(s) = g.stats.get_mut(idx) {
            *s.by_status.entry(rec.tx.status.as_str()).or_insert(0) += 1;
            if let Some(rtt) = rec.tx.rtt_ns() {
                let secs = rtt as f64 / 1e9;
                s.rtt_count += 1;
                s.rtt_sum_s += secs;
                for (b, le) in s.buckets.iter_mut().zip(RTT_BUCKETS) {
                    if secs <= le {
                        *b += 1;
                    }
                }
            }
        }
        let mut csv_result = None;
        if let Some(w) = g.csv.as_mut() {
            csv_result = Some(
                w.write_with_socket(&rec.tx, &rec.socket)
                    .and_then(|n| w.flush().map(|_| n)),
            );
        }
        match csv_result {
            Some(Ok(n)) => {
                g.counters.csv_records += 1;
                g.counters.csv_bytes += n;
            }
            Some(Err(e)) => {
                g.counters.csv_errors += 1;
                tracing::warn!("CSV consumer: {e}");
            }
            None => {}
        }
        if g.recent.len() >= RECENT_RECORDS {
            g.recent.pop_front();
        }
        g.recent.push_back(rec);
    }

    /// Flushes the CSV consumer (also done after every record).
    pub fn flush(&self) {
        let mut g = self.lock();
        if let Some(w) = g.csv.as_mut() {
            let _ = w.flush();
        }
    }

    pub fn recent(&self, n: usize) -> Vec<Record> {
        let g = self.lock();
        g.recent.iter().rev().take(n).cloned().collect()
    }

    pub fn open_count(&self) -> usize {
        self.lock().open.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn snapshot(&self) -> (Vec<ReceiverStats>, ArmCounters) {
        let g = self.lock();
        (g.stats.clone(), g.counters.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::config::derived_peer_id;

    fn arm(on_wire: bool, cap: usize, csv: Option<std::fs::File>) -> Arm {
        let receivers = ["bob", "carol"]
            .iter()
            .map(|n| Receiver {
                name: n.to_string(),
                peer_id: derived_peer_id(n),
            })
            .collect();
        Arm::new(
            "alice",
            derived_peer_id("alice"),
            receivers,
            cap,
            1_000_000,
            on_wire,
            csv,
        )
        .unwrap()
    }

    /// A peer restarted with the same name must not repeat its correlators (an
    /// observer would take the repeats for duplicates of the first run's PINGs).
    #[test]
    fn correlators_differ_from_run_to_run() {
        let firsts: Vec<u64> = (0..4)
            .map(|_| arm(true, 8, None).next_correlator())
            .collect();
        for (i, a) in firsts.iter().enumerate() {
            assert!(*a >= 1 << 62, "{a}: as many digits as before");
            for b in &firsts[i + 1..] {
                assert_ne!(a >> 32, b >> 32, "{firsts:?}");
            }
        }
    }

    #[test]
    fn correlator_and_order_matching() {
        let a = arm(true, 8, None);
        let c1 = a.next_correlator();
        let c2 = a.next_correlator();
        assert_ne!(c1, c2);
        assert!(a.start(0, c1, 900, correlator_element_bytes(c1)));
        assert!(a.start(0, c2, 900, correlator_element_bytes(c2)));
        // Answered out of order, by correlator.
        let none = PongStamp::None;
        assert!(a.stop(0, Some(c2), Some(Status::Busy), 950, 44, now_ns(), none));
        assert!(!a.stop(0, Some(c2), Some(Status::Busy), 950, 44, now_ns(), none));
        assert!(!a.stop(1, Some(c1), Some(Status::Busy), 950, 44, now_ns(), none));
        let r = a.recent(10);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].tx.correlator.as_deref(), Some(c2.to_string().as_str()));
        assert_eq!(r[0].name(), format!("alice:dest=bob,corr={c2}"));
        assert_eq!(
            r[0].tx.correlator_overhead_bytes,
            correlator_element_bytes(c2) + 44
        );
        let (_, counters) = a.snapshot();
        assert_eq!(counters.unmatched_pongs, 2);

        let b = arm(false, 8, None);
        let (c1, c2) = (b.next_correlator(), b.next_correlator());
        b.start(1, c1, 800, 0);
        b.start(1, c2, 800, 0);
        assert!(b.stop(
            1,
            None,
            Some(Status::Online),
            850,
            0,
            now_ns(),
            PongStamp::None
        ));
        let r = b.recent(1);
        assert_eq!(r[0].correlator, c1);
        assert_eq!(r[0].tx.correlator, None);
        assert_eq!(r[0].tx.match_method, Some(MatchMethod::Order));
    }

    #[test]
    fn pool_is_bounded_and_timeouts_expire() {
        let a = arm(true, 2, None);
        for _ in 0..2 {
            let c = a.next_correlator();
            assert!(a.start(0, c, 1, 1));
        }
        assert!(!a.start(0, a.next_correlator(), 1, 1));
        assert_eq!(a.open_count(), 2);
        a.sweep(now_ns() + 2_000_000);
        assert_eq!(a.open_count(), 0);
        let r = a.recent(10);
        assert!(r.iter().all(|r| r.tx.status == TxStatus::Timeout));
        assert!(r.iter().all(|r| r.tx.stop == Some(r.tx.start + 1_000_000)));
        let (stats, counters) = a.snapshot();
        assert_eq!(counters.pool_full, 1);
        assert_eq!(stats[0].by_status["timeout"], 2);
    }

    #[test]
    fn csv_consumer_writes_the_observer_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        let a = arm(true, 8, Some(std::fs::File::create(&path).unwrap()));
        let c = a.next_correlator();
        a.start(0, c, 1000, 37);
        let sock_start = now_ns();
        a.socket_start(c, sock_start);
        a.stop(
            0,
            Some(c),
            Some(Status::Away),
            1100,
            37,
            now_ns() + 5_000_000,
            PongStamp::At(sock_start + 4_000_000),
        );
        // A second one whose TX timestamp never came: counted, socket columns empty.
        let c2 = a.next_correlator();
        a.start(1, c2, 1000, 37);
        a.stop(
            1,
            Some(c2),
            Some(Status::Busy),
            1100,
            37,
            now_ns(),
            PongStamp::At(now_ns()),
        );
        // A third whose PONG's RX timestamp was withheld: its socket start is
        // written, its stop is not.
        let c3 = a.next_correlator();
        a.start(0, c3, 1000, 37);
        a.socket_start(c3, now_ns());
        a.stop(
            0,
            Some(c3),
            Some(Status::Online),
            1100,
            37,
            now_ns(),
            PongStamp::Withheld,
        );
        let recs = crate::report::read_records_file(&path, &Default::default()).unwrap();
        assert_eq!(recs[0].socket_rtt_ns(), Some(4_000_000));
        assert_eq!(recs[1].socket_rtt_ns(), None);
        assert!(recs[2].socket.start.is_some() && recs[2].socket.stop.is_none());
        let counters = a.snapshot().1;
        assert_eq!(counters.socket_rtt_missing, 2);
        assert_eq!(counters.socket_stop_withheld, 1);
        let txs: Vec<_> = recs.into_iter().map(|r| r.tx).collect();
        assert_eq!(txs.len(), 3);
        assert_eq!(txs[0].receiver_name.as_deref(), Some("bob"));
        assert_eq!(txs[0].receiver_status, Some(Status::Away));
        assert_eq!(txs[0].correlator_overhead_bytes, 74);
        assert!(txs[0].rtt_ns().unwrap() >= 5_000_000);
    }
}
