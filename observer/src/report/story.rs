//! `observer explain`: one line per slow transaction, in words (docs/explain.md says
//! how each cause is measured).

use crate::transaction::cause::Flag;
use crate::transaction::Transaction;

use super::table::{sanitize, short_label, utc_ms};

fn ms(ns: u64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

fn peer(name: &Option<String>, id: &Option<crate::jxta::PeerId>) -> String {
    match (name, id) {
        (Some(n), _) => sanitize(n),
        (None, Some(id)) => short_label(id.as_str()),
        (None, None) => "?".to_owned(),
    }
}

/// What happened to an answered transaction, as a network engineer would say it.
pub fn story(t: &Transaction) -> String {
    let Some(rtt) = t.rtt_ns() else {
        return format!("{}: no answer", t.status.as_str());
    };
    let c = &t.cause;
    let mut parts: Vec<String> = Vec::new();
    for f in c.flags.iter() {
        parts.push(match f {
            Flag::Retrans => format!(
                "TCP lost and resent bytes of the PING or PONG ({} from first transmission to the copy that got through)",
                ms(c.tcp_ns)
            ),
            Flag::Conn => format!(
                "sent on a connection opened for it (SYN {} before its first byte)",
                ms(c.conn_ns)
            ),
            Flag::Queue => format!(
                "queued behind {} bytes of other messages on the same connection for up to {}",
                c.queue_bytes,
                ms(c.queue_ns)
            ),
            Flag::Relay => format!(
                "relayed through {}",
                c.relay
                    .as_ref()
                    .map_or("a rendezvous".to_owned(), |p| short_label(p.as_str()))
            ),
            Flag::Route => "the route differs from the pair's previous poll".to_owned(),
            Flag::Far => format!(
                "the receiver's side took {}, over {}x its recent median",
                c.far_ns.map_or("?".to_owned(), ms),
                crate::transaction::cause::FAR_FACTOR
            ),
            Flag::Window => {
                "the receiver's TCP window was shut (zero window) inside the PING's or PONG's bytes"
                    .to_owned()
            }
            Flag::Reset => "a connection that carried it was reset or closed before the answer".to_owned(),
            Flag::Jxta => {
                "discovery, SRDI or resolver messages were in flight on the same connection"
                    .to_owned()
            }
        });
    }
    if parts.is_empty() {
        parts.push("nothing on the wire explains it".to_owned());
    }
    if let Some(far) = c.far_ns {
        parts.push(format!(
            "{} beyond the capture point, {} on the poller's side",
            ms(far),
            ms(rtt.saturating_sub(far))
        ));
    }
    format!(
        "{}  {} -> {}  RTT {}  [{}]  {}",
        utc_ms(t.start),
        peer(&t.poller_name, &t.poller_id),
        peer(&t.receiver_name, &t.receiver_id),
        ms(rtt),
        if c.flags.is_empty() {
            "-".to_owned()
        } else {
            c.label()
        },
        parts.join("; ")
    )
}

/// The PINGs that timed out, counted by cause: `explain`'s last line.
#[derive(Debug, Default)]
pub struct Unanswered {
    count: u64,
    by_flag: [u64; Flag::ALL.len()],
    none: u64,
}

impl Unanswered {
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
    }

    /// `unanswered: 6 timeouts; by cause: far 6` (none without timeouts).
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
        Some(format!(
            "unanswered: {} timeouts; by cause: {} (far: the receiver's TCP took the PING, nothing answered)",
            self.count,
            parts.join(", ")
        ))
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
            line.contains("resent bytes of the PING or PONG (300.0 ms"),
            "{line}"
        );
        assert!(
            line.contains("800.0 ms beyond the capture point, 400.0 ms on the poller's side"),
            "{line}"
        );
        let mut u = Unanswered::default();
        assert_eq!(u.line(), None);
        for f in ["far", "reset", "", "retrans+far"] {
            let mut t = tx(0, 10_000, f);
            t.status = TxStatus::Timeout;
            u.add(&t);
            u.add(&tx(0, 900, f));
        }
        let line = u.line().unwrap_or_default();
        assert!(
            line.starts_with("unanswered: 4 timeouts; by cause: retrans 1, far 2, reset 1, none 1"),
            "{line}"
        );
        let quiet = story(&tx(0, 900, ""));
        assert!(
            quiet.contains("[-]  nothing on the wire explains it"),
            "{quiet}"
        );
    }
}
