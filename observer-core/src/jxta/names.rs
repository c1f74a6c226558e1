//! Counts of message elements by name (`ns:name`, or `name` in the empty namespace),
//! for the report's `element_names`.
//!
//! Every element of every message is counted, and a run sees a handful of distinct
//! names. Building the `ns:name` key and hashing it cost ~280 instructions an element
//! (6 % of a run on `jxta-0.1g`); a small direct-mapped table of recently seen
//! `(namespace, name)` pairs in front of the map answers nearly every element. Its
//! entries hold the bytes inline and are compared a word at a time: boxed strings
//! compared through `memcmp` cost ~137 instructions an element.

use std::borrow::Cow;

/// Distinct names kept; further new names are counted under one key so a peer sending
/// random names cannot grow the map without bound.
pub(crate) const MAX_ELEMENT_NAMES: usize = 1024;
pub(crate) const OTHER_NAMES_KEY: &str = "(other)";

/// Entries of the table in front of the map: `1 << RECENT_BITS`, in pairs.
const RECENT_BITS: u32 = 6;
const RECENT: usize = 1 << RECENT_BITS;
/// Longest namespace and name the table keeps (longer ones, which JXTA does not send,
/// always go to the map): JXSE's longest name is 32 bytes, its namespaces 4.
const RECENT_NAMESPACE: usize = 16;
const RECENT_NAME: usize = 48;
/// Keys up to this long are built on the stack on the slow path.
const KEY_ON_STACK: usize = 160;
/// `slot` of an entry that holds nothing.
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Recent {
    namespace: [u8; RECENT_NAMESPACE],
    name: [u8; RECENT_NAME],
    namespace_len: u8,
    name_len: u8,
    slot: u32,
}

impl Recent {
    const EMPTY: Recent = Recent {
        namespace: [0; RECENT_NAMESPACE],
        name: [0; RECENT_NAME],
        namespace_len: 0,
        name_len: 0,
        slot: EMPTY,
    };

    /// An entry for a pair that fits, else `None`.
    fn new(namespace: &[u8], name: &[u8], slot: u32) -> Option<Recent> {
        let mut r = Recent {
            namespace_len: u8::try_from(namespace.len()).ok()?,
            name_len: u8::try_from(name.len()).ok()?,
            slot,
            ..Recent::EMPTY
        };
        r.namespace
            .get_mut(..namespace.len())?
            .copy_from_slice(namespace);
        r.name.get_mut(..name.len())?.copy_from_slice(name);
        Some(r)
    }

    #[inline]
    fn holds(&self, namespace: &[u8], name: &[u8]) -> bool {
        self.slot != EMPTY
            && usize::from(self.name_len) == name.len()
            && usize::from(self.namespace_len) == namespace.len()
            && self.name.get(..name.len()).is_some_and(|n| same(n, name))
            && self
                .namespace
                .get(..namespace.len())
                .is_some_and(|n| same(n, namespace))
    }
}

/// Eight bytes of `s` from `at`, little-endian (0 past the end, which callers avoid).
#[inline]
fn word(s: &[u8], at: usize) -> u64 {
    s.get(at..)
        .and_then(<[u8]>::first_chunk::<8>)
        .map_or(0, |w| u64::from_le_bytes(*w))
}

/// Four bytes of `s` from `at`, as `word`.
#[inline]
fn half_word(s: &[u8], at: usize) -> u32 {
    s.get(at..)
        .and_then(<[u8]>::first_chunk::<4>)
        .map_or(0, |w| u32::from_le_bytes(*w))
}

/// `a == b` for slices of the same length, a word at a time; the last word overlaps
/// the one before it rather than being read byte by byte.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 8 {
        let mut at = 0;
        while at + 8 < n {
            if word(a, at) != word(b, at) {
                return false;
            }
            at += 8;
        }
        word(a, n - 8) == word(b, n - 8)
    } else if n >= 4 {
        half_word(a, 0) == half_word(b, 0) && half_word(a, n - 4) == half_word(b, n - 4)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

/// Up to sixteen bytes of `s` folded into a word: its first and last eight (or four,
/// or each byte of a shorter one).
#[inline]
fn fold(s: &[u8]) -> u64 {
    let n = s.len();
    if n >= 8 {
        word(s, 0) ^ word(s, n - 8).rotate_left(29)
    } else if n >= 4 {
        u64::from(half_word(s, 0)) | u64::from(half_word(s, n - 4)) << 32
    } else {
        s.iter().fold(0, |h, &b| h << 8 | u64::from(b))
    }
}

/// The pair of table entries `(namespace, name)` may sit in (`i` and `i ^ 1`): both
/// lengths and the name's first and last bytes, mixed by a multiplication. JXSE's
/// names that share their lengths and differ in the middle (`jxta-NetGroupIRes`,
/// `jxta-NetGroupORes`) differ in their last eight bytes.
#[inline]
fn recent_index(namespace: &[u8], name: &[u8]) -> usize {
    let packed = fold(name) ^ ((name.len() as u64) << 8 | namespace.len() as u64).rotate_right(16);
    (packed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - RECENT_BITS)) as usize
}

/// Element counts by name. Reads like the map it replaces (`get`, `keys`, `len`,
/// serialised as a map); `count` is the hot path.
#[derive(Debug, Default, Clone)]
pub struct ElementNames {
    /// Each distinct key's place in `counts`.
    slots: crate::FastMap<String, u32>,
    counts: Vec<u64>,
    /// `RECENT` entries once the first element is counted.
    recent: Vec<Recent>,
}

fn joined(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}:{name}")
    }
}

impl ElementNames {
    /// Counts one element named `name` in `namespace`. Inlined into the loop over a
    /// message's elements: the call cost ~20 instructions of the ~100 of a hit.
    #[inline]
    pub fn count(&mut self, namespace: &str, name: &str) {
        let (ns, nm) = (namespace.as_bytes(), name.as_bytes());
        let at = recent_index(ns, nm);
        for i in [at, at ^ 1] {
            if let Some(r) = self.recent.get(i) {
                if r.holds(ns, nm) {
                    if let Some(c) = self.counts.get_mut(r.slot as usize) {
                        *c += 1;
                        return;
                    }
                }
            }
        }
        self.count_missed(namespace, name, at);
    }

    /// A name the table did not hold: counted in the map, and kept in the table if it
    /// fits, in entry `at` or `at ^ 1`.
    #[cold]
    #[inline(never)]
    fn count_missed(&mut self, namespace: &str, name: &str, at: usize) {
        let slot = self.count_in_map(namespace, name);
        let Some(entry) = Recent::new(namespace.as_bytes(), name.as_bytes(), slot) else {
            return;
        };
        if self.recent.is_empty() {
            self.recent = vec![Recent::EMPTY; RECENT];
        }
        // An empty entry of the pair, else the first (the second keeps the other name).
        let taken = |r: Option<&Recent>| r.is_some_and(|r| r.slot != EMPTY);
        let i = if taken(self.recent.get(at)) && !taken(self.recent.get(at ^ 1)) {
            at ^ 1
        } else {
            at
        };
        if let Some(e) = self.recent.get_mut(i) {
            *e = entry;
        }
    }

    /// The slow path: the key built (on the stack when it fits) and counted in the map;
    /// the slot it was counted in.
    fn count_in_map(&mut self, namespace: &str, name: &str) -> u32 {
        let mut stack = [0u8; KEY_ON_STACK];
        let (ns, nm) = (namespace.as_bytes(), name.as_bytes());
        let sep: &[u8] = if ns.is_empty() { b"" } else { b":" };
        let len = ns.len() + sep.len() + nm.len();
        let key: Cow<'_, str> = match stack.get_mut(..len) {
            Some(dst) => {
                let (a, rest) = dst.split_at_mut(ns.len());
                let (b, c) = rest.split_at_mut(sep.len());
                a.copy_from_slice(ns);
                b.copy_from_slice(sep);
                c.copy_from_slice(nm);
                // Concatenated UTF-8 is UTF-8: the fallback is never taken.
                match std::str::from_utf8(dst) {
                    Ok(k) => Cow::Borrowed(k),
                    Err(_) => Cow::Owned(joined(namespace, name)),
                }
            }
            None => Cow::Owned(joined(namespace, name)),
        };
        let slot = match self.slots.get(key.as_ref()) {
            Some(&s) => s,
            None if self.slots.len() < MAX_ELEMENT_NAMES => self.slot_of(key.into_owned()),
            None => self.slot_of(OTHER_NAMES_KEY.to_string()),
        };
        if let Some(c) = self.counts.get_mut(slot as usize) {
            *c += 1;
        }
        slot
    }

    /// The slot of `key`, made (with a count of zero) if it is new.
    fn slot_of(&mut self, key: String) -> u32 {
        let next = self.counts.len() as u32;
        let slot = *self.slots.entry(key).or_insert(next);
        if slot == next {
            self.counts.push(0);
        }
        slot
    }

    pub fn get(&self, key: &str) -> Option<u64> {
        self.slots
            .get(key)
            .and_then(|&s| self.counts.get(s as usize).copied())
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.slots.keys().map(String::as_str)
    }

    /// Each key with its count, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.slots.iter().map(|(k, &s)| {
            (
                k.as_str(),
                self.counts.get(s as usize).copied().unwrap_or(0),
            )
        })
    }
}

impl crate::counters::Absorb for ElementNames {
    /// Key by key, as maps of counts merge (the cap is not applied: each shard kept to
    /// it already, as before).
    fn absorb(&mut self, other: &Self) {
        for (k, v) in other.iter() {
            let slot = match self.slots.get(k) {
                Some(&s) => s,
                None => self.slot_of(k.to_string()),
            };
            if let Some(c) = self.counts.get_mut(slot as usize) {
                *c += v;
            }
        }
        // A name the table sent to `(other)` may have a key of its own now.
        self.recent.clear();
    }
}

impl serde::Serialize for ElementNames {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Absorb;

    /// What `ElementNames` replaces: the key built and counted in a map, every time.
    fn reference(elements: &[(&str, &str)]) -> std::collections::BTreeMap<String, u64> {
        let mut m = std::collections::BTreeMap::new();
        for (ns, name) in elements {
            let key = if ns.is_empty() {
                name.to_string()
            } else {
                format!("{ns}:{name}")
            };
            if m.contains_key(&key) || m.len() < MAX_ELEMENT_NAMES {
                *m.entry(key).or_insert(0) += 1;
            } else {
                *m.entry(OTHER_NAMES_KEY.to_string()).or_insert(0) += 1;
            }
        }
        m
    }

    /// The table after counting every element, in order.
    fn count_all(elements: &[(&str, &str)]) -> ElementNames {
        let mut n = ElementNames::default();
        for (ns, name) in elements {
            n.count(ns, name);
        }
        n
    }

    fn counted(n: &ElementNames) -> std::collections::BTreeMap<String, u64> {
        n.iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    #[test]
    fn colliding_and_ambiguous_names_count_like_the_map() {
        // Same `ns:name` from two splits, names sharing a table entry (same lengths and
        // bytes at the sampled places), the empty name, a name longer than the table
        // keeps.
        let long = "x".repeat(RECENT_NAME + 5);
        let elements: Vec<(&str, &str)> = [
            ("a:b", "c"),
            ("a", "b:c"),
            ("jxta", "EndpointRouterMsg"),
            ("jxta", "EndpointRouterMsg"),
            ("jxtb", "EndpointRouterMsg"),
            ("", "payload"),
            ("", "paxload"),
            ("", ""),
            ("", long.as_str()),
            ("", long.as_str()),
            ("", "payload"),
            ("jxta", "EndpointRouterMsg"),
            ("a-namespace-longer-than-the-table-keeps", "x"),
            ("jxta", "jxta-NetGroupIRes"),
            ("jxta", "jxta-NetGroupORes"),
            ("jxta", "RendezVousPropagatejxta-NetGroup"),
            ("jxta", "RendezVousPropagatejxta-NetGrouq"),
        ]
        .into_iter()
        .cycle()
        .take(170)
        .collect();
        let n = count_all(&elements);
        assert_eq!(counted(&n), reference(&elements));
        assert_eq!(n.get("a:b:c"), Some(20));
    }

    /// The word-at-a-time comparison is `==` at every length the table keeps and past
    /// it, whichever byte differs (a wrong tail overlap or loop bound misses one).
    #[test]
    fn same_is_slice_equality() {
        for len in 0..=RECENT_NAME + 9 {
            let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same(&a, &a.clone()), "{len}");
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same(&a, &b), "{len} {at}");
            }
            if len > 0 {
                assert!(!same(&a, &a[..len - 1]), "{len} shorter");
            }
        }
    }

    #[test]
    fn more_names_than_the_table_holds_count_like_the_map() {
        // 300 names in turn, three rounds: entries are evicted and refilled all along.
        let names: Vec<(String, String)> = (0..300)
            .map(|i| (format!("ns{}", i % 7), format!("e{i}")))
            .collect();
        let elements: Vec<(&str, &str)> = names
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .cycle()
            .take(900)
            .collect();
        let n = count_all(&elements);
        assert_eq!(counted(&n), reference(&elements));
    }

    #[test]
    fn names_past_the_cap_go_to_other_also_from_the_table() {
        let names: Vec<String> = (0..MAX_ELEMENT_NAMES + 40)
            .map(|i| format!("n{i}"))
            .collect();
        // Each name twice in a row: the second is answered by the table.
        let elements: Vec<(&str, &str)> = names
            .iter()
            .flat_map(|n| [("", n.as_str()), ("", n.as_str())])
            .collect();
        let n = count_all(&elements);
        assert_eq!(counted(&n), reference(&elements));
        assert_eq!(n.get(OTHER_NAMES_KEY), Some(80));
        assert_eq!(n.len(), MAX_ELEMENT_NAMES + 1);
    }

    #[test]
    fn absorb_sums_key_by_key_and_forgets_the_table() {
        let mut a = ElementNames::default();
        let mut b = ElementNames::default();
        for i in 0..MAX_ELEMENT_NAMES {
            a.count("", &format!("a{i}"));
        }
        a.count("", "late");
        assert_eq!(a.get(OTHER_NAMES_KEY), Some(1));
        b.count("", "late");
        b.count("ns", "x");
        a.absorb(&b);
        assert_eq!(a.get("late"), Some(1));
        assert_eq!(a.get("ns:x"), Some(1));
        // `late` has a key of its own now: the table must not send it to `(other)`.
        a.count("", "late");
        assert_eq!(a.get("late"), Some(2));
        assert_eq!(a.get(OTHER_NAMES_KEY), Some(1));
    }

    #[test]
    fn serialises_as_a_map() {
        let mut n = ElementNames::default();
        n.count("jxta", "EndpointRouterMsg");
        n.count("", "payload");
        n.count("", "payload");
        assert_eq!(
            serde_json::to_value(&n).expect("json"),
            serde_json::json!({"jxta:EndpointRouterMsg": 1, "payload": 2})
        );
    }
}
