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
    /// Where the held transactions are: slots in chunks of [`SLAB_CHUNK`], a slot
    /// reused once its transaction is released. A box a transaction cost an allocation
    /// (~315 instructions, LTO off) for every one a release had not emptied and a free
    /// at the end; a chunk is allocated once for [`SLAB_CHUNK`] of them, and never
    /// moved (a vector of slots would copy every held transaction as it grew). `None`:
    /// a chunk freed once empty ([`Self::shrink`]).
    slab: Vec<Option<Chunk>>,
    /// Held transactions in each chunk of `slab`.
    used: Vec<u8>,
    /// Indices of the freed chunks of `slab`, for the next chunk made.
    vacant: Vec<usize>,
    /// Slots emptied by releases, for the next transactions (the last emptied first);
    /// all in chunks not freed.
    free: Vec<usize>,
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
/// Slots of a chunk of [`Reorder::slab`] (an `Option<Transaction>` is 248 bytes: some
/// 16 KB a chunk, so a run that holds few transactions holds little room).
const SLAB_CHUNK: usize = 64;
/// Free slots kept before the empty chunks are freed: kept for ever, the chunks held
/// `peers10k-1g`'s peak of ~20,000 held transactions (5 MB) to the end of the run, where
/// its 100,000 connections made the peak RSS (+4 MB; the boxes before them were freed
/// beyond 4,096 spares).
const SPARE_SLOTS: usize = REORDER_BATCH;

/// A chunk of [`Reorder::slab`], of a fixed length: a slot's index in it needs no
/// bounds check.
type Chunk = Box<[Option<Transaction>; SLAB_CHUNK]>;

impl Reorder {
    pub fn push(&mut self, t: Transaction) {
        if t.start < self.released_below {
            self.late += 1;
        }
        self.seq += 1;
        let start = t.start;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => self.add_chunk(),
        };
        // Into a free slot, always empty: matched as empty, it is written with no drop of
        // what was there, and the transaction is copied once (~29 instructions a copy).
        // `*slot = Some(t)` copied it twice, and so did `get_or_insert`: to the stack
        // first, for the drop of its other branch.
        match slot_mut(&mut self.slab, slot) {
            Some(empty @ None) => *empty = Some(t),
            _ => unreachable!("a free slot is empty and lies in a chunk not freed"),
        }
        if let Some(n) = self.used.get_mut(slot / SLAB_CHUNK) {
            *n += 1;
        }
        self.held.push(ByStart {
            start,
            slot,
            seq: self.seq,
        });
    }

    /// A new chunk of slots: its first is returned, the others are free.
    #[cold]
    fn add_chunk(&mut self) -> usize {
        let index = self.vacant.pop().unwrap_or_else(|| {
            self.slab.push(None);
            self.used.push(0);
            self.slab.len() - 1
        });
        let first = index * SLAB_CHUNK;
        // Made in place: an array built on the stack was copied to the heap whole.
        let chunk: Box<[Option<Transaction>]> =
            std::iter::repeat_with(|| None).take(SLAB_CHUNK).collect();
        self.slab[index] = Some(chunk.try_into().expect("a chunk of SLAB_CHUNK slots"));
        // Popped lowest first.
        self.free.extend((first + 1..first + SLAB_CHUNK).rev());
        first
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
        let Self {
            held,
            slab,
            used,
            free,
            ..
        } = self;
        // Keys are unique (the finish order is the last): any sort gives one order.
        held.sort_by(|a, b| a.cmp_in(b, slab));
        let due = held.partition_point(|b| b.start < watermark);
        for b in held.drain(..due) {
            if let Some(t) = slot_mut(slab, b.slot).and_then(Option::take) {
                // Handed on first: the slot's push between the take and the call made
                // the transaction be copied once more.
                out(t);
                free.push(b.slot);
                if let Some(n) = used.get_mut(b.slot / SLAB_CHUNK) {
                    *n -= 1;
                }
            }
        }
        if self.free.len() > SPARE_SLOTS {
            self.shrink();
        }
    }

    /// Frees the chunks nothing is held in, and drops their slots from the free list.
    #[cold]
    fn shrink(&mut self) {
        let mut freed = false;
        for (index, (chunk, &n)) in self.slab.iter_mut().zip(&self.used).enumerate() {
            if n == 0 && chunk.is_some() {
                *chunk = None;
                self.vacant.push(index);
                freed = true;
            }
        }
        if freed {
            let slab = &self.slab;
            self.free
                .retain(|&slot| slab.get(slot / SLAB_CHUNK).is_some_and(Option::is_some));
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
        let Self {
            mut held,
            mut slab,
            used: mut left,
            ..
        } = self;
        held.sort_by(|a, b| a.cmp_in(b, &slab));
        // A chunk is freed as soon as its last transaction is taken out: with the whole
        // slab kept until every transaction was in `all`, what was held at the end was
        // held twice.
        // Room made once: `splice` of the slots' contents (no exact size known) collected
        // them apart first and grew the vector as it went (~380 instructions a
        // transaction on `jxta-0.1g`'s last 3,898).
        let mut all = Vec::with_capacity(held.len() + later.len());
        for b in &held {
            let chunk = b.slot / SLAB_CHUNK;
            if let Some(t) = slot_mut(&mut slab, b.slot).and_then(Option::take) {
                all.push(t);
            }
            if let Some(n) = left.get_mut(chunk) {
                *n -= 1;
                if *n == 0 {
                    slab[chunk] = None;
                }
            }
        }
        all.append(later);
        *later = all;
        later.sort_by(Transaction::report_order);
    }
}

/// The slot `slot` of `slab` (one that [`Reorder::add_chunk`] made), `None` if its
/// chunk was freed.
#[inline]
fn slot_mut(slab: &mut [Option<Chunk>], slot: usize) -> Option<&mut Option<Transaction>> {
    Some(&mut slab.get_mut(slot / SLAB_CHUNK)?.as_mut()?[slot % SLAB_CHUNK])
}

/// The transaction in slot `slot` of `slab`, if any.
#[inline]
fn slot_ref(slab: &[Option<Chunk>], slot: usize) -> Option<&Transaction> {
    slab.get(slot / SLAB_CHUNK)?.as_ref()?[slot % SLAB_CHUNK].as_ref()
}

/// A held transaction, ordered as the report lists them, by its place in the slab
/// (the sort moves these, not the transactions, a few hundred bytes each; always
/// `Some` there while held). Its start is kept here: nearly every comparison is decided
/// by it, and reading it through the slot was a cache miss per comparison with tens of
/// thousands held (`peers10k-1g`).
struct ByStart {
    start: UnixNanos,
    slot: usize,
    seq: u64,
}

impl ByStart {
    /// Ordered as the transaction's own fields would be (`Option<&T>` orders as
    /// `&Option<T>`, and `str` as `String`).
    #[allow(clippy::type_complexity)]
    fn rest<'a>(
        &self,
        slab: &'a [Option<Chunk>],
    ) -> (Option<&'a PeerId>, Option<&'a PeerId>, Option<&'a str>, u64) {
        let t = slot_ref(slab, self.slot);
        (
            t.and_then(|t| t.poller_id.as_ref()),
            t.and_then(|t| t.receiver_id.as_ref()),
            t.and_then(|t| t.correlator.as_deref()),
            self.seq,
        )
    }

    /// The report's order of the two transactions in `slab`. Inlined into the sorts
    /// (another codegen unit): nearly every comparison is decided by the starts, and a
    /// call for each was most of its cost (~1.9 M instructions on `jxta-0.1g`). Equal
    /// starts are settled out of line.
    #[inline(always)]
    fn cmp_in(&self, other: &Self, slab: &[Option<Chunk>]) -> std::cmp::Ordering {
        match self.start.cmp(&other.start) {
            std::cmp::Ordering::Equal => self.cmp_rest(other, slab),
            unequal => unequal,
        }
    }

    /// [`Self::cmp_in`] past equal starts.
    #[inline(never)]
    fn cmp_rest(&self, other: &Self, slab: &[Option<Chunk>]) -> std::cmp::Ordering {
        self.rest(slab).cmp(&other.rest(slab))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::TxStatus;
    use proptest::strategy::Strategy as _;

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
            correlator: Some(correlator.into()),
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
                .filter_map(|b| slot_ref(&reorder.slab, b.slot).cloned())
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

    proptest::proptest! {
        /// Each release hands over what a sort of everything held (by report order, then
        /// push order) puts before the watermark, in that order: watermarks that rise,
        /// stand still or step back, many equal keys, pushes between releases.
        #[test]
        fn a_release_is_the_sorted_prefix_of_all_held(
            steps in proptest::collection::vec(
                proptest::prop_oneof![
                    (0u64..8, 0usize..3, 0u8..3).prop_map(Some),
                    proptest::strategy::Just(None),
                ],
                0..200,
            ),
            marks in proptest::collection::vec(0u64..10, 1..40),
        ) {
            let pollers = ["uuid-C3", "uuid-B2", "uuid-A1"];
            let mut reorder = Reorder::default();
            let mut model: Vec<Transaction> = Vec::new();
            let mut marks = marks.iter().cycle();
            let order = |a: &Transaction, b: &Transaction| {
                a.report_order(b).then(a.ping_bytes.cmp(&b.ping_bytes))
            };
            for (n, step) in steps.iter().enumerate() {
                match step {
                    Some((start, p, c)) => {
                        let t = tx(1_000 + start, pollers[*p], &format!("c{c}"), n as u64);
                        model.push(t.clone());
                        reorder.push(t);
                    }
                    None => {
                        let mark = 1_000 + marks.next().copied().unwrap_or(0);
                        let mut out = Vec::new();
                        reorder.release(mark, &mut |t| out.push(t.ping_bytes));
                        model.sort_by(order);
                        let due = model.partition_point(|t| t.start < mark);
                        let expected: Vec<u64> =
                            model.drain(..due).map(|t| t.ping_bytes).collect();
                        proptest::prop_assert_eq!(out, expected);
                    }
                }
            }
            let mut rest = Vec::new();
            reorder.finish(&mut rest);
            model.sort_by(order);
            proptest::prop_assert_eq!(
                rest.iter().map(|t| t.ping_bytes).collect::<Vec<_>>(),
                model.iter().map(|t| t.ping_bytes).collect::<Vec<_>>()
            );
        }
    }

    /// Released slots are refilled by the next pushes, the slab growing only by what is
    /// held at once: what leaves is what came in, never a slot's earlier transaction,
    /// across chunks and with releases between pushes.
    #[test]
    fn emptied_slots_are_reused() {
        let mut reorder = Reorder::default();
        let mut out = Vec::new();
        let n = 4 * SLAB_CHUNK as u64;
        for i in 0..n {
            reorder.push(tx(10 + i, "uuid-A1", "c", i));
        }
        assert_eq!(reorder.slab.len(), 4);
        // The first half leaves; the second stays in its slots.
        reorder.release(10 + n / 2, &mut |t| out.push(t.ping_bytes));
        assert_eq!(out, (0..n / 2).collect::<Vec<_>>());
        for i in 0..n / 2 {
            reorder.push(tx(n + 10 + i, "uuid-B2", "d", n + i));
        }
        assert_eq!(reorder.slab.len(), 4, "the emptied slots took them");
        assert!(reorder.free.is_empty());
        reorder.push(tx(2 * n + 10, "uuid-B2", "d", 2 * n));
        assert_eq!(reorder.slab.len(), 5);
        reorder.release(n + 10 + n / 4, &mut |t| out.push(t.ping_bytes));
        let mut rest = Vec::new();
        reorder.finish(&mut rest);
        out.extend(rest.iter().map(|t| t.ping_bytes));
        let expected: Vec<u64> = (0..n + n / 2).chain([2 * n]).collect();
        assert_eq!(out, expected);
    }

    /// Chunks emptied by a release are freed once more than [`SPARE_SLOTS`] slots are
    /// free, their slots leave the free list, and a freed chunk's place is made again:
    /// no slot is handed out twice, nothing held is lost, the order holds.
    #[test]
    fn emptied_chunks_are_freed_beyond_the_spare_slots() {
        let mut reorder = Reorder::default();
        let mut out = Vec::new();
        let n = (SPARE_SLOTS + 4 * SLAB_CHUNK) as u64;
        for i in 0..n {
            reorder.push(tx(10 + i, "uuid-A1", "c", i));
        }
        let chunks = reorder.slab.len();
        // All but the last chunk's transactions leave.
        let kept = n - SLAB_CHUNK as u64;
        reorder.release(10 + kept, &mut |t| out.push(t.ping_bytes));
        assert_eq!(out, (0..kept).collect::<Vec<_>>());
        let live = reorder.slab.iter().filter(|c| c.is_some()).count();
        assert_eq!(live, 1, "only the chunk still holding transactions is kept");
        assert_eq!(reorder.vacant.len(), chunks - 1);
        assert!(
            reorder.free.is_empty(),
            "the last chunk is full: {:?}",
            reorder.free
        );
        // Refilled: the freed places are made again, every transaction in its own slot.
        for i in 0..n {
            reorder.push(tx(10 + n + i, "uuid-B2", "d", n + i));
        }
        assert_eq!(reorder.slab.len(), chunks + 1);
        let mut slots: Vec<usize> = reorder.held.iter().map(|b| b.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots.len(), reorder.held.len(), "a slot handed out twice");
        let mut rest = Vec::new();
        reorder.finish(&mut rest);
        out.extend(rest.iter().map(|t| t.ping_bytes));
        assert_eq!(out, (0..2 * n).collect::<Vec<_>>());
    }
}
