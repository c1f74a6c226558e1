//! `observer explain`: one line per slow transaction, in words (docs/explain.md says
//! how each cause is measured).

use crate::transaction::cause::Flag;
use crate::transaction::Transaction;

use super::table::{sanitize, short_label, utc_ms};

fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

fn peer(name: Option<&str>, id: &Option<crate::jxta::PeerId>) -> String {
    match (name, id) {
        (Some(n), _) => sanitize(n),
        (None, Some(id)) => short_label(id.as_str()),
        (None, None) => "?".to_owned(),
    }
}

/// What happened to a transaction, as a network engineer would say it: one line, the
/// flags in brackets, then each in words.
pub fn story(t: &Transaction) -> String {
    let c = &t.cause;
    let answered = t.rtt_ns();
    let mut parts: Vec<String> = Vec::new();
    for f in c.flags.iter() {
        parts.push(match (f, answered) {
            (Flag::Retrans, Some(_)) => format!(
                "TCP lost bytes of the PING or PONG and sent them again ({} from the first transmission to the copy that got through)",
                ms(c.tcp_ns)
            ),
            (Flag::Retrans, None) => {
                "TCP sent bytes of the PING again: its first copy did not get through".to_owned()
            }
            (Flag::Conn, Some(_)) => format!(
                "the PING or PONG was the first message on a new TCP connection (its SYN came {} before)",
                ms(c.conn_ns)
            ),
            (Flag::Conn, None) => "the PING was the first message on a new TCP connection".to_owned(),
            (Flag::Queue, _) => format!(
                "it waited behind {} bytes of other messages sent just ahead of it on the same connection (up to {})",
                c.queue_bytes,
                ms(c.queue_ns)
            ),
            (Flag::Relay, _) => format!(
                "relayed through the rendezvous {}, not sent directly",
                c.relay
                    .as_ref()
                    .map_or("(peer ID not seen)".to_owned(), |p| short_label(p.as_str()))
            ),
            (Flag::Route, _) => {
                "the path changed since this pair's previous answered poll (another TCP peer carried the PING or PONG)"
                    .to_owned()
            }
            // The split of the RTT said once, here, rather than again below.
            (Flag::Far, Some(rtt)) => format!(
                "the receiver's side of the capture point (its network and the peer itself) took {}, more than {} times this pair's recent median; {} on the poller's side",
                c.far_ns.map_or("?".to_owned(), ms),
                crate::transaction::cause::FAR_FACTOR,
                c.far_ns.map_or("?".to_owned(), |f| ms(rtt.saturating_sub(f)))
            ),
            (Flag::Far, None) => {
                "the receiver's TCP acknowledged the PING, but no PONG came back: the host is up, the JXTA peer did not answer"
                    .to_owned()
            }
            (Flag::Window, _) => {
                "a zero TCP window (a full receive buffer) held back bytes of the PING or PONG"
                    .to_owned()
            }
            (Flag::Reset, Some(_)) => {
                "a TCP connection that carried it was reset or closed before the answer".to_owned()
            }
            (Flag::Reset, None) => {
                "the TCP connection that carried it was reset or closed before the timeout".to_owned()
            }
            (Flag::Jxta, _) => {
                "JXTA discovery, SRDI or resolver messages were on the same connection at the same time"
                    .to_owned()
            }
        });
    }
    if parts.is_empty() {
        parts.push(
            match answered {
                Some(_) => "no cause seen on the wire",
                None => "no ACK, reset or resend of the PING seen: the receiver went silent, or the capture missed its answer",
            }
            .to_owned(),
        );
    }
    if let (Some(rtt), Some(far), false) = (answered, c.far_ns, c.flags.contains(Flag::Far)) {
        parts.push(format!(
            "split at the capture point: {} on the receiver's side, {} on the poller's",
            ms(far),
            ms(rtt.saturating_sub(far))
        ));
    }
    let time = match answered {
        Some(rtt) => format!("RTT {}", ms(rtt)),
        None => format!("no answer ({})", t.status.as_str()),
    };
    format!(
        "{}  {} -> {}  {time}  [{}]  {}",
        utc_ms(t.start),
        peer(t.poller_name.as_deref(), &t.poller_id),
        peer(t.receiver_name.as_deref(), &t.receiver_id),
        if c.flags.is_empty() {
            "-".to_owned()
        } else {
            c.label()
        },
        parts.join("; ")
    )
}

/// The PINGs that timed out: counted by cause, and the first `keep` of them kept for
/// their story (they are the worst peaks, with no RTT to rank them by).
#[derive(Debug)]
pub struct Unanswered {
    keep: usize,
    first: Vec<Transaction>,
    count: u64,
    by_flag: [u64; Flag::ALL.len()],
    none: u64,
}

impl Unanswered {
    pub fn new(keep: usize) -> Self {
        Unanswered {
            keep,
            first: Vec::new(),
            count: 0,
            by_flag: [0; Flag::ALL.len()],
            none: 0,
        }
    }

    pub fn add(&mut self, t: &Transaction) {
        if t.status != crate::transaction::TxStatus::Timeout {
            return;
        }
        self.count += 1;
        if t.cause.flags.is_empty() {
            self.none += 1;
        }
        for (n, f) in self.by_flag.iter_mut().zip(Flag::ALL) {
            *n += u64::from(t.cause.flags.contains(f));
        }
        if self.first.len() < self.keep {
            self.first.push(t.clone());
        }
    }

    /// `unanswered: 6 PINGs timed out; by cause: far 6; the first 2 below:` (none
    /// without timeouts).
    pub fn line(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let mut parts: Vec<String> = Flag::ALL
            .iter()
            .zip(self.by_flag)
            .filter(|(_, n)| *n > 0)
            .map(|(f, n)| format!("{} {n}", f.as_str()))
            .collect();
        if self.none > 0 {
            parts.push(format!("none {}", self.none));
        }
        let listed = if self.first.len() as u64 == self.count {
            "all below".to_owned()
        } else {
            format!("the first {} below", self.first.len())
        };
        Some(format!(
            "unanswered: {} PINGs timed out; by cause: {}; {listed}:",
            self.count,
            parts.join(", "),
        ))
    }

    /// The kept timeouts, in the order they were given (capture order).
    pub fn listed(&self) -> &[Transaction] {
        &self.first
    }
}

/// A transaction ordered by RTT, then by arrival (the earlier one first among ties).
struct ByRtt(u64, u64, Box<Transaction>);

impl PartialEq for ByRtt {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for ByRtt {}
impl PartialOrd for ByRtt {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for ByRtt {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // A later arrival ranks below an earlier one of the same RTT.
        (self.0, std::cmp::Reverse(self.1)).cmp(&(o.0, std::cmp::Reverse(o.1)))
    }
}

/// Keeps the `n` slowest answered transactions of a run given one at a time.
pub struct Slowest {
    n: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<ByRtt>>,
    seq: u64,
}

impl Slowest {
    pub fn new(n: usize) -> Self {
        Slowest {
            n,
            heap: std::collections::BinaryHeap::new(),
            seq: 0,
        }
    }

    pub fn add(&mut self, t: Transaction) {
        let Some(rtt) = t.rtt_ns() else {
            return;
        };
        if self.n == 0 {
            return;
        }
        self.seq += 1;
        let item = ByRtt(rtt, self.seq, Box::new(t));
        if self.heap.len() < self.n {
            self.heap.push(std::cmp::Reverse(item));
        } else if self.heap.peek().is_some_and(|m| item > m.0) {
            self.heap.pop();
            self.heap.push(std::cmp::Reverse(item));
        }
    }

    /// Slowest first.
    pub fn into_sorted(self) -> Vec<Transaction> {
        let mut v: Vec<ByRtt> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v.into_iter().map(|b| *b.2).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::cause::{Cause, Flags};
    use crate::transaction::TxStatus;

    fn tx(start: u64, rtt_ms: u64, flags: &str) -> Transaction {
        Transaction {
            start,
            stop: Some(start + rtt_ms * 1_000_000),
            poller_name: Some("alice".into()),
            poller_id: None,
            receiver_name: Some("bob".into()),
            receiver_id: None,
            receiver_status: None,
            status: TxStatus::Ok,
            correlator: None,
            match_method: None,
            ping_bytes: 900,
            pong_bytes: Some(900),
            correlator_overhead_bytes: 0,
            cause: Cause {
                flags: Flags::parse(flags).expect("flags"),
                tcp_ns: 300_000_000,
                far_ns: Some(800_000_000),
                ..Cause::default()
            },
        }
    }

    #[test]
    fn the_slowest_first_in_words() {
        let mut s = Slowest::new(2);
        for (i, (rtt, f)) in [(900, ""), (1200, "retrans"), (700, ""), (1200, "far")]
            .into_iter()
            .enumerate()
        {
            s.add(tx(i as u64 * 1_000_000_000, rtt, f));
        }
        let top = s.into_sorted();
        assert_eq!(top.len(), 2);
        // Equal RTTs: the earlier first.
        assert_eq!(top[0].cause.label(), "retrans");
        assert_eq!(top[1].cause.label(), "far");
        let line = story(&top[0]);
        assert!(
            line.contains("alice -> bob  RTT 1200.0 ms  [retrans]"),
            "{line}"
        );
        assert!(
            line.contains("sent them again (300.0 ms from the first transmission"),
            "{line}"
        );
        assert!(
            line.contains(
                "capture point: 800.0 ms on the receiver's side, 400.0 ms on the poller's"
            ),
            "{line}"
        );
        let mut u = Unanswered::new(2);
        assert_eq!(u.line(), None);
        for f in ["far", "reset", "", "retrans+far"] {
            let mut t = tx(0, 10_000, f);
            t.status = TxStatus::Timeout;
            u.add(&t);
            u.add(&tx(0, 900, f));
        }
        let line = u.line().unwrap_or_default();
        assert!(
            line == "unanswered: 4 PINGs timed out; by cause: retrans 1, far 2, reset 1, none 1; the first 2 below:",
            "{line}"
        );
        // The first two timeouts, in words of their own: no RTT, no time split.
        let listed: Vec<String> = u.listed().iter().map(story).collect();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(
            listed[0].contains("alice -> bob  no answer (timeout)  [far]  the receiver's TCP acknowledged the PING, but no PONG came back"),
            "{listed:?}"
        );
        assert!(
            listed[1].contains("[reset]  the TCP connection that carried it was reset or closed before the timeout"),
            "{listed:?}"
        );
        assert!(
            listed
                .iter()
                .all(|l| !l.contains("RTT") && !l.contains("split")),
            "{listed:?}"
        );
        // A flagged `far` says the split once.
        let far = story(&tx(0, 1200, "far"));
        assert!(
            far.contains("took 800.0 ms, more than 2 times this pair's recent median; 400.0 ms on the poller's side")
                && !far.contains("split"),
            "{far}"
        );
        let quiet = story(&tx(0, 900, ""));
        assert!(quiet.contains("[-]  no cause seen on the wire"), "{quiet}");
    }
}
