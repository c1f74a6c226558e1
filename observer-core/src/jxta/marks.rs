//! First-seen times of a byte stream, kept as a short list of marks (one per push,
//! merged when there are many), never one per byte. Shared by the TCP stream parser
//! and the HTTP transport parser, which both stamp a message with the earliest and
//! latest first-seen time of its bytes.

use crate::UnixNanos;

/// Marks above which inner marks of the message being buffered are merged.
pub(crate) const MAX_MARKS: usize = 1024;

/// `[off, next mark's off)` of the stream was first seen between `min` and `max`.
#[derive(Debug, Clone, Copy)]
struct Mark {
    off: u64,
    min: UnixNanos,
    max: UnixNanos,
}

#[derive(Debug, Default)]
pub(crate) struct Marks {
    marks: Vec<Mark>,
}

impl Marks {
    /// The bytes from stream offset `off` on were first seen at `ts`.
    pub(crate) fn add(&mut self, off: u64, ts: UnixNanos) {
        if let Some(last) = self.marks.last() {
            // Same time as the previous push: that mark already covers these bytes.
            if last.min == ts && last.max == ts {
                return;
            }
        }
        self.marks.push(Mark {
            off,
            min: ts,
            max: ts,
        });
        if self.marks.len() > MAX_MARKS {
            self.coalesce();
        }
    }

    /// Merges pairs of inner marks. Only marks strictly inside the buffered message
    /// are merged (not the first, which may start before it, nor the last, which may
    /// run past its end), so the min/max over the whole message stays exact.
    fn coalesce(&mut self) {
        let n = self.marks.len();
        if n < 4 {
            return;
        }
        let last = self.marks[n - 1];
        let mut merged: Vec<Mark> = Vec::with_capacity(n / 2 + 2);
        merged.push(self.marks[0]);
        for pair in self.marks[1..n - 1].chunks(2) {
            let mut m = pair[0];
            for p in pair.iter().skip(1) {
                m.min = m.min.min(p.min);
                m.max = m.max.max(p.max);
            }
            merged.push(m);
        }
        merged.push(last);
        self.marks = merged;
    }

    /// Drops marks wholly before stream offset `start`.
    pub(crate) fn trim(&mut self, start: u64) {
        let idx = self.marks.partition_point(|m| m.off <= start);
        if idx > 1 {
            self.marks.drain(..idx - 1);
        }
    }

    /// (min, max) first-seen time over stream offsets `[a, b)`.
    pub(crate) fn range(&self, a: u64, b: u64) -> (UnixNanos, UnixNanos) {
        let first = self.marks.partition_point(|m| m.off <= a).saturating_sub(1);
        let mut range: Option<(UnixNanos, UnixNanos)> = None;
        for m in self.marks.iter().skip(first).take_while(|m| m.off < b) {
            range = Some(match range {
                None => (m.min, m.max),
                Some((lo, hi)) => (lo.min(m.min), hi.max(m.max)),
            });
        }
        range.unwrap_or((0, 0))
    }

    /// Earliest time of any mark kept.
    pub(crate) fn oldest(&self) -> Option<UnixNanos> {
        self.marks.iter().map(|m| m.min).min()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.marks.len()
    }

    pub(crate) fn clear(&mut self) {
        self.marks.clear();
    }

    /// Frees the memory too (a stream that is finished or given up).
    pub(crate) fn release(&mut self) {
        self.marks = Vec::new();
    }
}
