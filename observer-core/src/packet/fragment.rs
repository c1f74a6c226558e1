//! IPv4 / IPv6 fragment reassembly, bounded in datagrams, bytes and capture
//! time. Hand-written rather than `etherparse::defrag::IpDefragPool`, which
//! has no memory bound and rejects overlapping fragments outright.

use super::{PacketConfig, PacketStats};
use crate::UnixNanos;
use std::net::IpAddr;

/// Largest reassembled payload: the 16-bit IP length fields bound every
/// legitimate datagram, so anything beyond is malformed, not big.
const MAX_DATAGRAM: usize = 65_535;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub id: u32,
}

#[derive(Debug)]
struct Pending {
    first_ts: UnixNanos,
    /// Payload bytes by offset; only the ranges in `have` are meaningful.
    data: Vec<u8>,
    /// Received ranges, sorted, non-overlapping, non-adjacent.
    have: Vec<(usize, usize)>,
    /// Known once the last fragment (MF clear) arrives.
    total: Option<usize>,
}

impl Pending {
    fn complete(&self) -> bool {
        matches!((self.total, self.have.as_slice()), (Some(t), [(0, end)]) if *end == t)
    }

    /// Copies `frag` at `start`, keeping bytes already received (first wins,
    /// so a later overlapping fragment cannot rewrite what was delivered to
    /// the other side's stack first on most systems). Returns whether any
    /// overlap occurred.
    fn add(&mut self, start: usize, frag: &[u8]) -> bool {
        let end = start + frag.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        let mut overlap = false;
        let mut pos = start;
        for &(s, e) in &self.have {
            if e <= pos || s >= end {
                continue;
            }
            overlap = true;
            if s > pos {
                self.data[pos..s].copy_from_slice(&frag[pos - start..s - start]);
            }
            pos = pos.max(e);
        }
        if pos < end {
            self.data[pos..end].copy_from_slice(&frag[pos - start..]);
        }
        self.have.push((start, end));
        self.have.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.have.len());
        for &(s, e) in &self.have {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.have = merged;
        overlap
    }
}

#[derive(Debug)]
pub(super) struct Reassembler {
    cfg: PacketConfig,
    pending: crate::FastMap<FragKey, Pending>,
    bytes: usize,
    /// Oldest `first_ts` in `pending` (a lower bound), so the expiry scan
    /// runs only when something can actually have expired.
    oldest: UnixNanos,
}

impl Reassembler {
    pub(super) fn new(cfg: PacketConfig) -> Self {
        Reassembler {
            cfg,
            pending: crate::FastMap::default(),
            bytes: 0,
            oldest: UnixNanos::MAX,
        }
    }

    /// Adds one fragment; returns the whole payload when it completes a datagram,
    /// with the capture time of its earliest fragment.
    pub(super) fn insert(
        &mut self,
        stats: &mut PacketStats,
        ts: UnixNanos,
        key: FragKey,
        offset: usize,
        more: bool,
        frag: &[u8],
    ) -> Option<(Vec<u8>, UnixNanos)> {
        self.expire(stats, ts);
        let end = offset + frag.len();
        // Every fragment but the last carries a multiple of 8 bytes; others
        // could never line up and mark a crafted or corrupt packet.
        if end > MAX_DATAGRAM || (more && frag.len() & 7 != 0) || (more && frag.is_empty()) {
            stats.malformed += 1;
            return None;
        }
        let grow = match self.pending.get(&key) {
            Some(p) => end.saturating_sub(p.data.len()),
            None => end,
        };
        if grow > self.cfg.max_fragment_bytes {
            stats.fragment_evictions += 1;
            self.remove(&key);
            return None;
        }
        while self.bytes + grow > self.cfg.max_fragment_bytes
            || (!self.pending.contains_key(&key)
                && self.pending.len() >= self.cfg.max_fragment_datagrams)
        {
            if !self.evict_oldest(&key) {
                break;
            }
            stats.fragment_evictions += 1;
        }
        if self.bytes + grow > self.cfg.max_fragment_bytes
            || (!self.pending.contains_key(&key)
                && self.pending.len() >= self.cfg.max_fragment_datagrams)
        {
            // Even alone this datagram does not fit (or the cap is zero).
            stats.fragment_evictions += 1;
            self.remove(&key);
            return None;
        }
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            first_ts: ts,
            data: Vec::new(),
            have: Vec::new(),
            total: None,
        });
        // Fragments may be captured out of time order (merged interfaces).
        p.first_ts = p.first_ts.min(ts);
        self.oldest = self.oldest.min(p.first_ts);
        if let Some(total) = p.total {
            if end > total || (!more && end != total) {
                stats.malformed += 1;
                return None;
            }
        } else if !more {
            if p.have.last().is_some_and(|&(_, e)| e > end) {
                stats.malformed += 1;
                return None;
            }
            p.total = Some(end);
        }
        let before = p.data.len();
        if p.add(offset, frag) {
            stats.fragment_overlaps += 1;
        }
        self.bytes += p.data.len() - before;
        if !p.complete() {
            return None;
        }
        let done = self.pending.remove(&key)?;
        self.bytes -= done.data.len();
        Some((done.data, done.first_ts))
    }

    fn remove(&mut self, key: &FragKey) {
        if let Some(p) = self.pending.remove(key) {
            self.bytes -= p.data.len();
        }
    }

    /// Drops the oldest datagram other than `keep`; false if there is none.
    fn evict_oldest(&mut self, keep: &FragKey) -> bool {
        let oldest = self
            .pending
            .iter()
            .filter(|(k, _)| *k != keep)
            .min_by_key(|(_, p)| p.first_ts)
            .map(|(k, _)| *k);
        match oldest {
            Some(k) => {
                self.remove(&k);
                true
            }
            None => false,
        }
    }

    fn expire(&mut self, stats: &mut PacketStats, now: UnixNanos) {
        if now.saturating_sub(self.oldest) < self.cfg.fragment_timeout_ns {
            return;
        }
        let timeout = self.cfg.fragment_timeout_ns;
        let mut freed = 0;
        let mut oldest = UnixNanos::MAX;
        self.pending.retain(|_, p| {
            if now.saturating_sub(p.first_ts) >= timeout {
                stats.fragment_timeouts += 1;
                freed += p.data.len();
                false
            } else {
                oldest = oldest.min(p.first_ts);
                true
            }
        });
        self.bytes -= freed;
        self.oldest = oldest;
    }

    #[cfg(test)]
    pub(super) fn held(&self) -> (usize, usize) {
        (self.pending.len(), self.bytes)
    }
}
