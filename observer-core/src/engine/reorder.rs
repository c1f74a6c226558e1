//! The ordered release of finished transactions: held until none that starts earlier
//! can still finish, then handed on in the report's order, in bounded memory.

use crate::jxta::PeerId;
use crate::transaction::Transaction;
use crate::UnixNanos;

/// Finished transactions held until none that starts earlier can still finish, so
/// that they leave in the report's order (start, poller, receiver, correlator)
/// without the whole run's transactions being kept.
///
/// Held in a vector sorted at each release, not a heap: transactions finish nearly in
/// start order, so what a release sorts is the sorted rest of the last one and a run of
/// nearly sorted arrivals, which the standard stable sort finds and merges: ~4
/// comparisons a transaction on `jxta-0.1g`, against ~14 for a heap's push and pop
/// (with their moves, ~800 instructions a transaction; the sort and push ~390).
#[derive(Default)]
pub struct Reorder {
    held: Vec<ByStart>,
    /// Emptied boxes of released transactions, for the next ones (at most
    /// [`SPARE_BOXES`]): an allocation and a free per transaction (~200 instructions,
    /// LTO off) become a move in and a move out. Boxes, not values: they go back into
    /// `held` as they are.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Option<Transaction>>>,
    /// Finish order, the last key: equal keys leave in the order they finished, as a
    /// stable sort of the whole run would have them.
    seq: u64,
    /// Everything that starts before this has been released.
    released_below: UnixNanos,
    /// Transactions that finished after later-starting ones had been released.
    late: u64,
    /// Capture time of the last watermark computation (it costs a pass over the
    /// flow table, so it runs at most once per `RECHECK_NS` of capture time).
    checked_at: UnixNanos,
}

/// How far capture time may step back (merged interfaces, clock steps) and the
/// report still come out in start order. Transactions are held for this long (plus
/// the PING timeout); one that starts before what was already released (a capture
/// whose time jumps back further) is released at once and counted.
const REORDER_SKEW_NS: u64 = 1_000_000_000;
const RECHECK_NS: u64 = 1_000_000_000;
/// Below this many held transactions the watermark is not even computed.
const REORDER_BATCH: usize = 4096;
/// Spare boxes kept: a release hands over about a batch, and the next batch refills
/// them. What they hold (~1.3 MB at most) was held by transactions a moment before.
const SPARE_BOXES: usize = REORDER_BATCH;

impl Reorder {
    pub fn push(&mut self, t: Transaction) {
        if t.start < self.released_below {
            self.late += 1;
        }
        self.seq += 1;
        let start = t.start;
        let t = match self.spare.pop() {
            Some(mut b) => {
                *b = Some(t);
                b
            }
            None => Box::new(Some(t)),
        };
        self.held.push(ByStart {
            start,
            t,
            seq: self.seq,
        });
    }

    /// Worth computing a watermark: enough held, and capture time moved on.
    pub fn due(&self, now: UnixNanos) -> bool {
        self.held.len() >= REORDER_BATCH && now >= self.checked_at.saturating_add(RECHECK_NS)
    }

    /// Every transaction still to come starts at or after the first byte of a PING
    /// already outstanding, or of a message still being received (held by the
    /// stream parsers or by reassembly): `bounds`; or of bytes not captured yet, which
    /// are no older than `now` (less the skew allowed).
    pub fn watermark(
        &mut self,
        now: UnixNanos,
        bounds: impl IntoIterator<Item = Option<UnixNanos>>,
    ) -> UnixNanos {
        self.checked_at = now;
        bounds
            .into_iter()
            .flatten()
            .fold(now.saturating_sub(REORDER_SKEW_NS), UnixNanos::min)
    }

    /// Hands over, in order, what starts before `watermark`.
    pub fn release(&mut self, watermark: UnixNanos, out: &mut impl FnMut(Transaction)) {
        self.released_below = self.released_below.max(watermark);
        // Keys are unique (the finish order is the last): any sort gives one order.
        self.held.sort();
        let due = self.held.partition_point(|b| b.start < watermark);
        let Self { held, spare, .. } = self;
        for b in held.drain(..due) {
            let mut b = b.t;
            if let Some(t) = b.take() {
                if spare.len() < SPARE_BOXES {
                    spare.push(b);
                }
                out(t);
            }
        }
    }

    /// The end: what is held, in order, then `later` (finished after everything
    /// held), each in report order.
    pub fn finish(self, later: &mut Vec<Transaction>) {
        if self.late > 0 {
            tracing::warn!(
                "{} transactions listed out of start order: capture time stepped back more than {} s",
                self.late,
                REORDER_SKEW_NS / 1_000_000_000
            );
        }
        let mut held = self.held;
        held.sort();
        // Room made once: `splice` of the boxes' contents (no exact size known) collected
        // them apart first and grew the vector as it went (~380 instructions a
        // transaction on `jxta-0.1g`'s last 3,898).
        let mut all = Vec::with_capacity(held.len() + later.len());
        all.extend(held.into_iter().filter_map(|b| *b.t));
        all.append(later);
        *later = all;
        later.sort_by(Transaction::report_order);
    }
}

/// A transaction ordered as the report lists them (boxed: the sort moves it, and a
/// transaction is a few hundred bytes; always `Some` while held, the box reused once
/// emptied). Its start is kept beside the box: nearly every comparison is decided by
/// it, and reading it through the box was a cache miss per comparison with tens of
/// thousands held (`peers10k-1g`).
struct ByStart {
    start: UnixNanos,
    t: Box<Option<Transaction>>,
    seq: u64,
}

impl ByStart {
    /// Ordered as the transaction's own fields would be (`Option<&T>` orders as
    /// `&Option<T>`, and `str` as `String`).
    #[allow(clippy::type_complexity)]
    fn rest(&self) -> (Option<&PeerId>, Option<&PeerId>, Option<&str>, u64) {
        let t = self.t.as_ref().as_ref();
        (
            t.and_then(|t| t.poller_id.as_ref()),
            t.and_then(|t| t.receiver_id.as_ref()),
            t.and_then(|t| t.correlator.as_deref()),
            self.seq,
        )
    }
}

impl PartialEq for ByStart {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for ByStart {}
impl PartialOrd for ByStart {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByStart {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.start
            .cmp(&other.start)
            .then_with(|| self.rest().cmp(&other.rest()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::TxStatus;

    fn tx(start: UnixNanos, poller: &str, correlator: &str, bytes: u64) -> Transaction {
        Transaction {
            start,
            stop: Some(start + 1),
            poller_name: None,
            poller_id: PeerId::parse(poller),
            receiver_name: None,
            receiver_id: None,
            receiver_status: None,
            status: TxStatus::Ok,
            correlator: Some(correlator.to_string()),
            match_method: None,
            // Tells apart transactions whose keys are equal: they leave as they came.
            ping_bytes: bytes,
            pong_bytes: None,
            correlator_overhead_bytes: 0,
            cause: Default::default(),
        }
    }

    /// Released in batches under rising watermarks, then finished, the transactions
    /// come out as a stable sort by (start, poller, receiver, correlator) of the order
    /// they were pushed in: starts decide first, the rest only between equal starts
    /// (starts rising with a jitter, many equal, pollers and correlators in reverse of
    /// the push).
    #[test]
    fn transactions_leave_in_report_order() {
        let pollers = ["uuid-C3", "uuid-B2", "uuid-A1"];
        let pushed: Vec<Transaction> = (0..3_000u64)
            .map(|i| {
                let start = 1_000 + i / 4 + i * 7_919 % 40;
                let poller = pollers[(i % 3) as usize];
                let correlator = format!("c{}", 9 - i % 10);
                tx(start, poller, &correlator, i)
            })
            .collect();
        let mut expected = pushed.clone();
        expected.sort_by(Transaction::report_order);

        let mut reorder = Reorder::default();
        let mut out = Vec::new();
        for (i, t) in pushed.into_iter().enumerate() {
            reorder.push(t);
            if i % 500 == 499 {
                // Nothing still to come starts before 1,000 + (i + 1) / 4.
                reorder.release(1_000 + (i as u64 + 1) / 4, &mut |t| out.push(t));
            }
        }
        assert!(!out.is_empty(), "the watermarks released some on the way");
        let mut rest = Vec::new();
        reorder.finish(&mut rest);
        out.extend(rest);
        let key = |t: &Transaction| {
            (
                t.start,
                t.poller_id.clone(),
                t.correlator.clone(),
                t.ping_bytes,
            )
        };
        assert_eq!(
            out.iter().map(key).collect::<Vec<_>>(),
            expected.iter().map(key).collect::<Vec<_>>()
        );
    }

    proptest::proptest! {
        /// What `finish` hands over is the stable sort of what it held (in push
        /// order) followed by `later`: few starts, pollers and correlators make many
        /// equal keys, told apart by their bytes; a release on the way leaves some held.
        #[test]
        fn finish_is_the_stable_sort_of_held_then_later(
            pushed in proptest::collection::vec((0u64..6, 0usize..3, 0u8..3), 0..120),
            later in proptest::collection::vec((0u64..6, 0usize..3, 0u8..3), 0..60),
            release_at in proptest::option::of((0usize..120, 0u64..7)),
        ) {
            let pollers = ["uuid-C3", "uuid-B2", "uuid-A1"];
            let make = |n: usize, &(start, p, c): &(u64, usize, u8)| {
                tx(1_000 + start, pollers[p], &format!("c{c}"), n as u64)
            };
            let pushed: Vec<Transaction> =
                pushed.iter().enumerate().map(|(i, k)| make(i, k)).collect();
            let later: Vec<Transaction> =
                later.iter().enumerate().map(|(i, k)| make(1_000 + i, k)).collect();
            let mut reorder = Reorder::default();
            let mut released = Vec::new();
            for (i, t) in pushed.into_iter().enumerate() {
                reorder.push(t);
                if let Some((at, mark)) = release_at {
                    if at == i {
                        reorder.release(1_000 + mark, &mut |t| released.push(t));
                    }
                }
            }
            let ids = |v: &[Transaction]| v.iter().map(|t| t.ping_bytes).collect::<Vec<_>>();
            // The reference: what is held, in push order, then `later`, stably sorted.
            let mut expected: Vec<Transaction> = reorder
                .held
                .iter()
                .filter_map(|b| b.t.as_ref().as_ref().cloned())
                .collect();
            expected.sort_by_key(|t| t.ping_bytes);
            expected.extend(later.iter().cloned());
            expected.sort_by(Transaction::report_order);
            let mut out = later;
            reorder.finish(&mut out);
            proptest::prop_assert_eq!(ids(&out), ids(&expected));
            let out_ids = ids(&out);
            proptest::prop_assert!(released.iter().all(|t| !out_ids.contains(&t.ping_bytes)));
        }
    }

    /// Released boxes are kept up to the bound and refilled by the next pushes: what
    /// leaves is what came in, never a box's earlier transaction.
    #[test]
    fn emptied_boxes_are_reused_and_bounded() {
        let mut reorder = Reorder::default();
        let mut out = Vec::new();
        let n = SPARE_BOXES as u64 + 100;
        for i in 0..n {
            reorder.push(tx(10 + i, "uuid-A1", "c", i));
        }
        reorder.release(u64::MAX, &mut |t| out.push(t.ping_bytes));
        assert_eq!(reorder.spare.len(), SPARE_BOXES);
        for i in 0..10 {
            reorder.push(tx(n + 10 + i, "uuid-B2", "d", n + i));
        }
        assert_eq!(reorder.spare.len(), SPARE_BOXES - 10);
        reorder.release(u64::MAX, &mut |t| out.push(t.ping_bytes));
        assert_eq!(out, (0..n + 10).collect::<Vec<_>>());
    }
}
