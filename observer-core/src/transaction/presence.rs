//! Presence: each peer's state over time, as the PONGs carried it, and which poller
//! learned each new state when (the study's notification time per watcher).

use super::PeerKey;
use crate::jim::Status;
use crate::jxta::PeerId;
use crate::UnixNanos;

/// Peers tracked; beyond it new peers are not tracked (counted in `dropped`).
const MAX_PEERS: usize = 65_536;
/// State changes kept; beyond it changes are counted only.
const MAX_CHANGES: usize = 100_000;
/// Pollers recorded per change (a buddy list is small; this bounds a hostile one).
const MAX_LEARNERS: usize = 256;

/// A peer's current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPresence {
    pub peer_id: Option<PeerId>,
    pub name: Option<String>,
    pub status: Status,
    /// When the current state was first seen.
    pub since: UnixNanos,
    /// Last PONG carrying it.
    pub last_seen: UnixNanos,
}

/// A poller learning a state (the first PONG carrying it to that poller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learned {
    pub poller_id: Option<PeerId>,
    pub poller_name: Option<String>,
    pub time: UnixNanos,
}

/// One change of a peer's state; `from` is `None` for the first state seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresenceChange {
    pub time: UnixNanos,
    pub peer_id: Option<PeerId>,
    pub name: Option<String>,
    pub from: Option<Status>,
    pub to: Status,
    pub learned_by: Vec<Learned>,
}

#[derive(Clone, Debug, Default)]
pub struct Presence {
    /// Each peer with the index of its latest change, counted from the run's first
    /// change (forgotten ones included).
    peers: crate::FastMap<PeerKey, (PeerPresence, Option<usize>)>,
    changes: Vec<PresenceChange>,
    /// Changes forgotten from the front of `changes` (see [`Presence::expire`]).
    forgotten: usize,
    dropped: u64,
}

impl Presence {
    /// Current state of every tracked peer, sorted by name then ID for stable output.
    pub fn current(&self) -> Vec<&PeerPresence> {
        let mut v: Vec<&PeerPresence> = self.peers.values().map(|(p, _)| p).collect();
        v.sort_by(|a, b| (&a.name, &a.peer_id).cmp(&(&b.name, &b.peer_id)));
        v
    }

    /// State changes in the order they were observed.
    pub fn changes(&self) -> &[PresenceChange] {
        &self.changes
    }

    /// Changes or peers not kept because a cap was reached.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets the peers whose latest PONG came before `before`, and the changes before
    /// it (a live run keeps its `--pair-horizon`: weeks of peers coming and going would
    /// fill the tables' caps). How many (peers, changes).
    pub fn expire(&mut self, before: UnixNanos) -> (u64, u64) {
        let peers = self.peers.len();
        self.peers.retain(|_, (p, _)| p.last_seen >= before);
        let old = self.changes.iter().take_while(|c| c.time < before).count();
        // Drained once they are half the list or more: amortised, and a peer's index
        // of its latest change stays valid (counted from the run's first change).
        let drained = if old > 0 && 2 * old >= self.changes.len() {
            self.changes.drain(..old);
            self.forgotten += old;
            old
        } else {
            0
        };
        if self.peers.capacity() > 4 * self.peers.len() + 1024 {
            self.peers.shrink_to_fit();
        }
        if self.changes.capacity() > 4 * self.changes.len() + 1024 {
            self.changes.shrink_to_fit();
        }
        ((peers - self.peers.len()) as u64, drained as u64)
    }

    /// Records that `poller` received a PONG from `peer` carrying `status` at `time`.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        time: UnixNanos,
        peer: &PeerKey,
        peer_id: Option<&PeerId>,
        name: Option<&str>,
        status: Status,
        poller_id: Option<&PeerId>,
        poller_name: Option<&str>,
    ) {
        let learned = || Learned {
            poller_id: poller_id.cloned(),
            poller_name: poller_name.map(str::to_owned),
            time,
        };
        let mut inherited: Option<String> = None;
        let from = match self.peers.get_mut(peer) {
            Some((cur, last_change)) => {
                if name.is_some() && cur.name.as_deref() != name {
                    cur.name = name.map(str::to_owned);
                }
                if cur.status == status {
                    cur.last_seen = cur.last_seen.max(time);
                    let held = last_change.and_then(|i| i.checked_sub(self.forgotten));
                    if let Some(ch) = held.and_then(|i| self.changes.get_mut(i)) {
                        let known = ch.learned_by.iter().any(|l| {
                            l.poller_id.as_ref() == poller_id
                                && l.poller_name.as_deref() == poller_name
                        });
                        if !known && ch.learned_by.len() < MAX_LEARNERS {
                            ch.learned_by.push(learned());
                        }
                    }
                    return;
                }
                // A PONG without a name keeps the name learnt earlier.
                if name.is_none() {
                    inherited.clone_from(&cur.name);
                }
                Some(cur.status)
            }
            None => {
                if self.peers.len() >= MAX_PEERS {
                    self.dropped += 1;
                    return;
                }
                None
            }
        };
        let name = name.map(str::to_owned).or(inherited);
        let index = if self.changes.len() < MAX_CHANGES {
            self.changes.push(PresenceChange {
                time,
                peer_id: peer_id.cloned(),
                name: name.clone(),
                from,
                to: status,
                learned_by: vec![learned()],
            });
            Some(self.forgotten + self.changes.len() - 1)
        } else {
            self.dropped += 1;
            None
        };
        let entry = PeerPresence {
            peer_id: peer_id.cloned(),
            name,
            status,
            since: time,
            last_seen: time,
        };
        self.peers.insert(peer.clone(), (entry, index));
    }
}
