//! Counts of message elements by name (`ns:name`, or `name` in the empty namespace),
//! for the report's `element_names`.
//!
//! Every element of every message is counted, and a run sees a handful of distinct
//! names. Building the `ns:name` key and hashing it cost ~280 instructions an element
//! (6 % of a run on `jxta-0.1g`); a small direct-mapped table of recently seen
//! `(namespace, name)` pairs in front of the map answers nearly every element. Its
//! entries hold the bytes inline and are compared a word at a time: boxed strings
//! compared through `memcmp` cost ~137 instructions an element.
//!
//! In front of that table, a second one keeps whole messages' name sequences
//! (layouts): JXSE sends a handful of them (a PING, a PONG and an SRDI push each
//! carry the same names in the same order every time), so a message is counted by
//! comparing its names with a layout's, without a look-up per element, and the
//! layout also keeps the message's [`Shape`] for the documents stage. The per-element
//! table cost ~83 instructions an element (docs/performance.md, stop 30, names19).

use std::borrow::Cow;

use super::message::Skeleton;
use super::{Element, Message};

/// The namespace of the stack's own elements (router, endpoint addresses, wire
/// headers); application payloads, and so JIM documents, are never in it.
const STACK_NAMESPACE: &str = "jxta";

/// Element names (in the empty namespace, after the group's name) of the services
/// whose traffic shares a connection with the application's: SRDI index pushes,
/// resolver queries and responses (which carry route and pipe resolution), discovery.
const SERVICE_ELEMENTS: [&str; 5] = ["Srdi", "ORes", "IRes", "DiscQuery", "DiscResponse"];

/// Elements whose place a [`Shape`] keeps as a bit; those after them are looked at when
/// asked for.
const SHAPE_BITS: usize = u64::BITS as usize;

/// What the documents stage needs of a message's element names: which elements may
/// carry a document (those not in the stack's namespace) and whether it is a service
/// message. A function of the names alone, so a message layout the element-name table
/// knows comes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Bit `i`: element `i` (of the first [`SHAPE_BITS`]) may carry a document.
    payloads: u64,
    /// A discovery, SRDI or resolver message (`transaction::cause`'s `jxta`): told by
    /// its element names, as routed messages name only the router in their
    /// destination address.
    pub service: bool,
}

impl Shape {
    /// The shape of a message without elements.
    pub const NONE: Shape = Shape {
        payloads: 0,
        service: false,
    };

    /// The shape of a message with these elements.
    pub fn of(elements: &[Element<'_>]) -> Shape {
        let payloads = elements
            .iter()
            .take(SHAPE_BITS)
            .enumerate()
            .filter(|(_, e)| may_carry_document(e))
            .fold(0, |bits, (i, _)| bits | 1 << i);
        Shape {
            payloads,
            service: elements.iter().any(is_service_element),
        }
    }

    /// The elements that may carry a document, in order: the shape's, of `elements`
    /// (the message's it was made of).
    pub fn payloads<'m, 'a>(self, elements: &'m [Element<'a>]) -> Payloads<'m, 'a> {
        Payloads {
            bits: self.payloads,
            tail: SHAPE_BITS,
            elements,
        }
    }
}

/// Whether an element may carry a document: the stack's own never do.
fn may_carry_document(e: &Element<'_>) -> bool {
    e.namespace != STACK_NAMESPACE
}

fn is_service_element(e: &Element<'_>) -> bool {
    e.namespace.is_empty()
        && e.name.starts_with("jxta-")
        && SERVICE_ELEMENTS.iter().any(|s| e.name.ends_with(s))
}

/// The elements of a message that may carry a document ([`Shape::payloads`]). Cloned,
/// it tells whether any is left after the current one.
#[derive(Clone)]
pub struct Payloads<'m, 'a> {
    /// Those of the first [`SHAPE_BITS`] not yet given.
    bits: u64,
    /// The next element past them to look at.
    tail: usize,
    elements: &'m [Element<'a>],
}

impl<'m, 'a> Iterator for Payloads<'m, 'a> {
    type Item = &'m Element<'a>;

    #[inline]
    fn next(&mut self) -> Option<&'m Element<'a>> {
        if self.bits != 0 {
            let i = self.bits.trailing_zeros() as usize;
            self.bits &= self.bits - 1;
            return self.elements.get(i);
        }
        while let Some(e) = self.elements.get(self.tail) {
            self.tail += 1;
            if may_carry_document(e) {
                return Some(e);
            }
        }
        None
    }
}

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

/// Entries of the layout table: `1 << LAYOUT_BITS`, in pairs. With 16, three of
/// `jxta-0.1g`'s seven layouts shared a pair and one in sixteen messages missed.
const LAYOUT_BITS: u32 = 6;
const LAYOUTS: usize = 1 << LAYOUT_BITS;
/// Most elements of a layout the table keeps (JXSE's messages carry up to six), and
/// most bytes of their namespaces and names together (its longest layout has 133).
/// Longer messages are counted element by element.
const LAYOUT_ELEMENTS: usize = 8;
const LAYOUT_BYTES: usize = 224;

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

/// The names of a message's elements, in order, with the slot each is counted in and
/// the message's [`Shape`] (a function of the names alone).
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Elements; 0 for an entry that holds nothing (a message without elements has
    /// nothing to count and is never kept).
    len: u8,
    /// Each element's namespace and name lengths.
    lens: [[u8; 2]; LAYOUT_ELEMENTS],
    slots: [u32; LAYOUT_ELEMENTS],
    /// Each element's namespace then name, back to back.
    bytes: [u8; LAYOUT_BYTES],
    shape: Shape,
    /// Messages counted through this entry and not yet added to its slots' counts:
    /// one increment a message instead of one an element. Added when the entry is
    /// replaced or the tables are forgotten; a read adds them to what it reports.
    pending: u64,
    /// The bytes of the version 0 message the entry was made of, around its contents,
    /// for the decoder ([`super::message::decode_message_known`]): a message with the
    /// same bytes there has these names.
    skeleton: Skeleton,
}

impl Layout {
    const EMPTY: Layout = Layout {
        len: 0,
        lens: [[0; 2]; LAYOUT_ELEMENTS],
        slots: [0; LAYOUT_ELEMENTS],
        bytes: [0; LAYOUT_BYTES],
        shape: Shape::NONE,
        pending: 0,
        skeleton: Skeleton::NONE,
    };

    /// The slots this layout counts in, one per element.
    fn slots(&self) -> &[u32] {
        self.slots.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// Appends the next element's names and slot, the bytes from `at` (moved past
    /// them); `false` if they do not fit.
    fn push(&mut self, at: &mut usize, namespace: &[u8], name: &[u8], slot: u32) -> bool {
        let k = usize::from(self.len);
        let (Ok(ns_len), Ok(name_len)) = (u8::try_from(namespace.len()), u8::try_from(name.len()))
        else {
            return false;
        };
        let end = *at + namespace.len() + name.len();
        let (Some(lens), Some(s), Some((ns_dst, name_dst))) = (
            self.lens.get_mut(k),
            self.slots.get_mut(k),
            self.bytes
                .get_mut(*at..end)
                .and_then(|b| b.split_at_mut_checked(namespace.len())),
        ) else {
            return false;
        };
        *lens = [ns_len, name_len];
        *s = slot;
        ns_dst.copy_from_slice(namespace);
        name_dst.copy_from_slice(name);
        self.len += 1;
        *at = end;
        true
    }

    /// Whether `elements` carry exactly this layout's names, in its order.
    #[inline]
    fn holds(&self, elements: &[Element<'_>]) -> bool {
        if usize::from(self.len) != elements.len() {
            return false;
        }
        // The layout's bytes not yet compared, cut from the front: one length check a
        // name, where a range from a position (`get(at..mid)`) checked both ends
        // (~13 instructions an element in range and index code).
        let mut rest: &[u8] = &self.bytes;
        for (e, &[ns_len, name_len]) in elements.iter().zip(&self.lens) {
            let (ns, nm) = (e.namespace.as_bytes(), e.name.as_bytes());
            if ns.len() != usize::from(ns_len) || nm.len() != usize::from(name_len) {
                return false;
            }
            let Some((k_ns, after)) = rest.split_at_checked(ns.len()) else {
                return false;
            };
            let Some((k_nm, after)) = after.split_at_checked(nm.len()) else {
                return false;
            };
            if !(same(k_ns, ns) && same(k_nm, nm)) {
                return false;
            }
            rest = after;
        }
        true
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

/// Checks that `eq` is `==` on byte slices at every length up to `max_len`: equal
/// slices, one byte changed at every place, one byte shorter (a word comparison with
/// a wrong tail overlap or loop bound misses one of them).
#[cfg(test)]
pub(crate) fn check_slice_equality(eq: impl Fn(&[u8], &[u8]) -> bool, max_len: usize) {
    for len in 0..=max_len {
        let a: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        assert!(eq(&a, &a.clone()), "{len}");
        for at in 0..len {
            let mut b = a.clone();
            b[at] ^= 0x20;
            assert!(!eq(&a, &b), "{len} {at}");
        }
        if len > 0 {
            assert!(!eq(&a, &a[..len - 1]), "{len} shorter");
        }
    }
}

/// `a == b` for slices of the same length, a word at a time; the last word overlaps
/// the one before it rather than being read byte by byte.
#[inline]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // Up to 32 bytes the differing bits of a few words, or'ed: no loop, one branch.
    // The length's class picked by a `match` (one compare a bound, shared): tested as
    // ranges in turn (`contains`, both ends each) it cost ~2 M on jxta-0.1g.
    let x = |at: usize| word(a, at) ^ word(b, at);
    match n {
        0..4 => a.iter().zip(b).all(|(x, y)| x == y),
        4..8 => half_word(a, 0) == half_word(b, 0) && half_word(a, n - 4) == half_word(b, n - 4),
        8..=16 => x(0) | x(n - 8) == 0,
        17..=32 => x(0) | x(8) | x(n - 16) | x(n - 8) == 0,
        _ => {
            let mut at = 0;
            while at + 8 < n {
                if word(a, at) != word(b, at) {
                    return false;
                }
                at += 8;
            }
            word(a, n - 8) == word(b, n - 8)
        }
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
    table_index(namespace, name, 0, RECENT_BITS)
}

/// The pair of layout entries a message may sit in: its element count and its first
/// element's names, mixed as [`recent_index`] does (JXSE's layouts of as many elements
/// differ in their first element: the service's or the application's).
#[inline]
fn layout_index(first: &Element<'_>, count: usize) -> usize {
    table_index(
        first.namespace.as_bytes(),
        first.name.as_bytes(),
        count,
        LAYOUT_BITS,
    )
}

/// `bits` bits of a mix of `count`, the lengths and the name's first and last bytes.
#[inline]
fn table_index(namespace: &[u8], name: &[u8], count: usize, bits: u32) -> usize {
    let lens = (count as u64) << 32 | (name.len() as u64) << 8 | namespace.len() as u64;
    let packed = fold(name) ^ lens.rotate_right(16);
    (packed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
}

/// The entry of the pair `at`, `at ^ 1` a new entry goes in: an empty one, else the
/// first (the second keeps what it held).
#[inline]
fn pick_entry(at: usize, taken: impl Fn(usize) -> bool) -> usize {
    if taken(at) && !taken(at ^ 1) {
        at ^ 1
    } else {
        at
    }
}

/// Element counts by name. Reads like the map it replaces (`get`, `keys`, `len`,
/// serialised as a map); `JxtaStats::count_message` (a message's layout) is the hot
/// path.
#[derive(Debug, Default, Clone)]
pub struct ElementNames {
    /// Each distinct key's place in `counts`.
    slots: crate::FastMap<String, u32>,
    counts: Vec<u64>,
    /// `RECENT` entries once the first element is counted.
    recent: Vec<Recent>,
    /// `LAYOUTS` entries once the first message is counted.
    layouts: Vec<Layout>,
    /// The layouts' contents, as a decoder saw them ([`Self::stamp`]); 0 before any.
    stamp: u64,
    /// The layout entry whose skeleton begins with a message's first bytes, by them
    /// ([`Skeleton::first_bytes_key`]): found so, a message skips the namespace table's
    /// walk and the layout hash. Only a hint: the entry's skeleton is compared in full.
    by_first_bytes: FirstBytes,
}

/// Places of [`ElementNames::by_first_bytes`], one for each key a `u8` can be (so a key
/// made of wire bytes always has its place): with 256 for JXSE's seven layouts of
/// `jxta-0.1g`, none shares its place with another.
const FIRST_BYTES_PLACES: usize = 1 << u8::BITS;
/// A place of [`FirstBytes`] that names no entry.
const NO_ENTRY: u8 = u8::MAX;

/// Layout entries by their skeletons' first bytes (entries fit in a `u8`: `LAYOUTS`
/// is 64).
#[derive(Debug, Clone)]
struct FirstBytes([u8; FIRST_BYTES_PLACES]);

impl Default for FirstBytes {
    fn default() -> Self {
        FirstBytes([NO_ENTRY; FIRST_BYTES_PLACES])
    }
}

impl FirstBytes {
    /// The entry at `key`'s place (`NO_ENTRY` if none).
    #[inline(always)]
    fn get(&self, key: u8) -> u8 {
        self.0[usize::from(key)]
    }

    fn set(&mut self, key: u8, entry: u8) {
        self.0[usize::from(key)] = entry;
    }
}

/// The last stamp given: every change of any table's layouts takes the next, so a
/// message decoded by one table's layouts is counted by its entry only in that table,
/// unchanged since (or a copy of it).
static LAYOUT_STAMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn new_stamp() -> u64 {
    LAYOUT_STAMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

fn joined(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}:{name}")
    }
}

impl ElementNames {
    /// Counts every element of a message (as [`Self::count`] each, in order); the
    /// message's [`Shape`]. A layout the table holds is counted as a whole.
    #[inline]
    pub fn count_message(&mut self, elements: &[Element<'_>]) -> Shape {
        self.count_elements(elements, None)
    }

    /// [`Self::count_message`] for a decoded message: one decoded by its layout's
    /// skeleton with this table ([`Message::layout`]) is counted by that entry, its
    /// names not compared again; the layout of any other kept with its skeleton.
    #[inline]
    pub fn count_decoded(&mut self, msg: &Message<'_>) -> Shape {
        if let Some((i, stamp)) = msg.layout() {
            // The entry the decoder found, if the layouts are still those it saw.
            if let Some(l) = self.layouts.get_mut(i).filter(|_| stamp == self.stamp) {
                l.pending += 1;
                return l.shape;
            }
        }
        self.count_elements(&msg.elements, Some(msg.body()))
    }

    /// The layout entries a message of `count` elements whose first is `name` in
    /// `namespace` may sit in: this one and the other of its pair (`^ 1`).
    #[inline]
    pub(crate) fn layout_at(&self, namespace: &[u8], name: &[u8], count: usize) -> usize {
        table_index(namespace, name, count, LAYOUT_BITS)
    }

    /// Which contents the layouts have: [`Self::count_decoded`] counts by its entry a
    /// message decoded when they had these.
    #[inline]
    pub(crate) fn stamp(&self) -> u64 {
        self.stamp
    }

    /// The skeleton of layout entry `i`, if it holds one.
    #[inline]
    pub(crate) fn skeleton(&self, i: usize) -> Option<&Skeleton> {
        self.layouts.get(i).map(|l| &l.skeleton)
    }

    /// The layout entry whose skeleton was last kept with the first bytes of
    /// `from_table` (a version 0 message from its namespace table on): a guess, which
    /// the caller checks by comparing the entry's skeleton in full.
    #[inline(always)]
    pub(crate) fn by_first_bytes(&self, from_table: &[u8]) -> Option<usize> {
        let i = self
            .by_first_bytes
            .get(Skeleton::first_bytes_key(from_table)?);
        (i != NO_ENTRY).then_some(usize::from(i))
    }

    /// [`Self::count_message`]; `body`, the message's bytes, for the skeleton of a
    /// layout kept.
    #[inline]
    fn count_elements(&mut self, elements: &[Element<'_>], body: Option<&[u8]>) -> Shape {
        let Some(first) = elements.first() else {
            return Shape::NONE;
        };
        let at = layout_index(first, elements.len());
        for i in [at, at ^ 1] {
            if let Some(l) = self.layouts.get_mut(i) {
                if l.holds(elements) {
                    l.pending += 1;
                    return l.shape;
                }
            }
        }
        self.count_layout_missed(elements, body, at)
    }

    /// A message whose layout the table did not hold: counted element by element, and
    /// its layout kept if it fits, in entry `at` or `at ^ 1`.
    #[cold]
    #[inline(never)]
    fn count_layout_missed(
        &mut self,
        elements: &[Element<'_>],
        body: Option<&[u8]>,
        at: usize,
    ) -> Shape {
        let shape = Shape::of(elements);
        let mut entry = Layout {
            shape,
            skeleton: body.and_then(Skeleton::of).unwrap_or(Skeleton::NONE),
            ..Layout::EMPTY
        };
        let (mut fits, mut end) = (true, 0);
        for e in elements {
            let slot = self.count_slot(&e.namespace, &e.name);
            fits = fits && entry.push(&mut end, e.namespace.as_bytes(), e.name.as_bytes(), slot);
        }
        if fits {
            if self.layouts.is_empty() {
                self.layouts = vec![Layout::EMPTY; LAYOUTS];
            }
            let i = pick_entry(at, |i| self.layouts.get(i).is_some_and(|l| l.len != 0));
            if let Some(l) = self.layouts.get_mut(i) {
                let key = entry.skeleton.key();
                let old = std::mem::replace(l, entry);
                self.stamp = new_stamp();
                add_pending(&mut self.counts, &old);
                let entry = u8::try_from(i).unwrap_or(NO_ENTRY);
                // The old skeleton's place no longer leads here (it would only miss).
                if let Some(k) = old.skeleton.key() {
                    if self.by_first_bytes.get(k) == entry {
                        self.by_first_bytes.set(k, NO_ENTRY);
                    }
                }
                if let Some(k) = key {
                    self.by_first_bytes.set(k, entry);
                }
            }
        }
        shape
    }

    /// Counts one element named `name` in `namespace`.
    #[inline]
    pub fn count(&mut self, namespace: &str, name: &str) {
        self.count_slot(namespace, name);
    }

    /// [`Self::count`], and the slot counted in. Inlined into the loop over a
    /// message's elements when its layout is not known yet: the call cost ~20
    /// instructions of the ~100 of a hit.
    #[inline]
    fn count_slot(&mut self, namespace: &str, name: &str) -> u32 {
        let (ns, nm) = (namespace.as_bytes(), name.as_bytes());
        let at = recent_index(ns, nm);
        for i in [at, at ^ 1] {
            if let Some(r) = self.recent.get(i) {
                if r.holds(ns, nm) {
                    if let Some(c) = self.counts.get_mut(r.slot as usize) {
                        *c += 1;
                        return r.slot;
                    }
                }
            }
        }
        self.count_missed(namespace, name, at)
    }

    /// A name the table did not hold: counted in the map, and kept in the table if it
    /// fits, in entry `at` or `at ^ 1`; the slot counted in.
    #[cold]
    #[inline(never)]
    fn count_missed(&mut self, namespace: &str, name: &str, at: usize) -> u32 {
        let slot = self.count_in_map(namespace, name);
        let Some(entry) = Recent::new(namespace.as_bytes(), name.as_bytes(), slot) else {
            return slot;
        };
        if self.recent.is_empty() {
            self.recent = vec![Recent::EMPTY; RECENT];
        }
        let i = pick_entry(at, |i| self.recent.get(i).is_some_and(|r| r.slot != EMPTY));
        if let Some(e) = self.recent.get_mut(i) {
            *e = entry;
        }
        slot
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
        let slot = *self.slots.get(key)?;
        let pending: u64 = self
            .layouts
            .iter()
            .map(|l| l.pending * l.slots().iter().filter(|&&s| s == slot).count() as u64)
            .sum();
        Some(self.counts.get(slot as usize)? + pending)
    }

    /// Every slot's count, with what the layouts hold pending.
    fn totals(&self) -> Vec<u64> {
        let mut counts = self.counts.clone();
        for l in &self.layouts {
            add_pending(&mut counts, l);
        }
        counts
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
        let counts = self.totals();
        self.slots
            .iter()
            .map(move |(k, &s)| (k.as_str(), counts.get(s as usize).copied().unwrap_or(0)))
    }
}

/// Adds the messages `layout` counted and holds pending to its slots' `counts`.
fn add_pending(counts: &mut [u64], layout: &Layout) {
    for &slot in layout.slots() {
        if let Some(c) = counts.get_mut(slot as usize) {
            *c += layout.pending;
        }
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
        // A name the tables sent to `(other)` may have a key of its own now.
        for l in &self.layouts {
            add_pending(&mut self.counts, l);
        }
        self.recent.clear();
        self.layouts.clear();
        self.by_first_bytes = FirstBytes::default();
        self.stamp = new_stamp();
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
        check_slice_equality(same, RECENT_NAME + 9);
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

    /// The layout table too: a message counted before the merge (its layout then
    /// holding `(other)`'s slot) and again after it.
    #[test]
    fn absorb_forgets_the_layouts() {
        let mut a = ElementNames::default();
        for i in 0..MAX_ELEMENT_NAMES {
            a.count("", &format!("a{i}"));
        }
        let late = [element("", "late"), element("jxta", "EndpointRouterMsg")];
        a.count_message(&late);
        a.count_message(&late);
        assert_eq!(a.get(OTHER_NAMES_KEY), Some(4));
        let mut b = ElementNames::default();
        b.count_message(&late);
        a.absorb(&b);
        a.count_message(&late);
        assert_eq!(a.get("late"), Some(2));
        assert_eq!(a.get("jxta:EndpointRouterMsg"), Some(2));
        assert_eq!(a.get(OTHER_NAMES_KEY), Some(4));
    }

    fn element<'a>(namespace: &'a str, name: &'a str) -> Element<'a> {
        Element {
            namespace: Cow::Borrowed(namespace),
            name: Cow::Borrowed(name),
            mime: None,
            content: b"",
            signature: None,
        }
    }

    /// What the documents stage did with a message before [`Shape`]: whether it is a
    /// service message, and each element not in the `jxta` namespace with whether it is
    /// the last such (by index).
    fn reference_shape(elements: &[Element<'_>]) -> (bool, Vec<(usize, bool)>) {
        let service = elements.iter().any(|e| {
            e.namespace.is_empty()
                && e.name.starts_with("jxta-")
                && ["Srdi", "ORes", "IRes", "DiscQuery", "DiscResponse"]
                    .iter()
                    .any(|s| e.name.ends_with(s))
        });
        let mut payloads = Vec::new();
        for (i, e) in elements.iter().enumerate() {
            if e.namespace == "jxta" {
                continue;
            }
            let last = elements[i + 1..].iter().all(|e| e.namespace == "jxta");
            payloads.push((i, last));
        }
        (service, payloads)
    }

    /// A shape as the documents stage reads it, in the terms of [`reference_shape`].
    fn read_shape(shape: Shape, elements: &[Element<'_>]) -> (bool, Vec<(usize, bool)>) {
        let mut payloads = shape.payloads(elements);
        let mut read = Vec::new();
        while let Some(e) = payloads.next() {
            let i = elements
                .iter()
                .position(|x| std::ptr::eq(x, e))
                .expect("an element of the message");
            read.push((i, payloads.clone().next().is_none()));
        }
        (shape.service, read)
    }

    /// Counts `messages` in turn through the layout table, checking each one's shape
    /// against the old per-message code, and all counts against the reference.
    fn check_messages(messages: &[Vec<(&str, &str)>]) -> ElementNames {
        let mut n = ElementNames::default();
        for m in messages {
            let elements: Vec<Element<'_>> = m.iter().map(|(ns, nm)| element(ns, nm)).collect();
            let shape = n.count_message(&elements);
            assert_eq!(
                read_shape(shape, &elements),
                reference_shape(&elements),
                "{m:?}"
            );
        }
        let all: Vec<(&str, &str)> = messages.iter().flatten().copied().collect();
        assert_eq!(counted(&n), reference(&all));
        // `get` adds what the layouts hold pending as `iter` does.
        for (k, v) in n.iter() {
            assert_eq!(n.get(k), Some(v), "{k}");
        }
        assert_eq!(counted(&on_the_wire(messages).0), counted(&n));
        n
    }

    /// A version 0 message of `m`'s (namespace, name) elements, every other one typed.
    fn encoded(m: &[(&str, &str)]) -> Vec<u8> {
        let owned: Vec<crate::jxta::OwnedElement> = m
            .iter()
            .enumerate()
            .map(|(i, (ns, nm))| {
                let mime = (i % 2 == 0).then_some("text/plain");
                crate::jxta::OwnedElement::new(ns, nm, mime, "c")
            })
            .collect();
        crate::jxta::message::encode_message_v0(&owned)
    }

    /// The messages encoded (version 0, every other element typed), decoded with the
    /// table's skeletons and counted by the entry the decoder found: each decoded and
    /// shaped as without the table; the table, and how many the skeletons decoded.
    fn on_the_wire(messages: &[Vec<(&str, &str)>]) -> (ElementNames, usize) {
        use crate::jxta::message::{decode_message, decode_message_known};
        let mut n = ElementNames::default();
        let mut by_skeleton = 0;
        for m in messages {
            let body = encoded(m);
            let msg = decode_message_known(&body, Vec::new(), &n).unwrap();
            assert_eq!(msg.elements, decode_message(&body).unwrap().elements);
            by_skeleton += usize::from(msg.layout().is_some());
            let shape = n.count_decoded(&msg);
            assert_eq!(
                read_shape(shape, &msg.elements),
                reference_shape(&msg.elements),
                "{m:?}"
            );
        }
        (n, by_skeleton)
    }

    /// JXSE's layouts repeated: all but each layout's first message decoded by its
    /// skeleton, and counted as their elements.
    #[test]
    fn skeletons_decode_repeated_layouts() {
        let layouts: [&[(&str, &str)]; 3] = [
            &[("pingpong", "payload"), ("jxta", "EndpointRouterMsg")],
            &[("", "jxta-NetGroupSrdi"), ("jxta", "EndpointSourceAddress")],
            &[("jim", "Gr\u{fc}\u{df}e"), ("", ""), ("jxta", "x")],
        ];
        let messages: Vec<Vec<(&str, &str)>> = (0..30).map(|i| layouts[i % 3].to_vec()).collect();
        let (n, by_skeleton) = on_the_wire(&messages);
        assert_eq!(by_skeleton, 27);
        let all: Vec<(&str, &str)> = messages.iter().flatten().copied().collect();
        assert_eq!(counted(&n), reference(&all));
        // Decoded by `n`'s skeletons, counted in another table (with other layouts in
        // the same entries, or its layouts forgotten since): counted by their names.
        let other_layouts: Vec<Vec<(&str, &str)>> = (0..30)
            .map(|i| vec![("", ["a", "b", "c"][i % 3]); 3])
            .collect();
        let (mut other, _) = on_the_wire(&other_layouts);
        let mut absorbed = n.clone();
        absorbed.absorb(&ElementNames::default());
        for m in &messages {
            let body = encoded(m);
            let msg = crate::jxta::message::decode_message_known(&body, Vec::new(), &n).unwrap();
            assert!(msg.layout().is_some());
            other.count_decoded(&msg);
            absorbed.count_decoded(&msg);
        }
        let mut want: Vec<(&str, &str)> = other_layouts.iter().flatten().copied().collect();
        want.extend(&all);
        assert_eq!(counted(&other), reference(&want));
        let twice: Vec<(&str, &str)> = all.iter().chain(&all).copied().collect();
        assert_eq!(counted(&absorbed), reference(&twice));
    }

    /// Far more layouts than the table holds, each counted a few times in a row, in
    /// rounds: entries are replaced while they hold messages not yet in the counts,
    /// which must then be added, not lost (nor added twice).
    #[test]
    fn replaced_layouts_keep_their_counts() {
        let names: Vec<String> = (0..400).map(|i| format!("e{i}")).collect();
        let layouts: Vec<Vec<(&str, &str)>> = names
            .iter()
            .map(|n| vec![("", n.as_str()), ("jxta", "EndpointRouterMsg")])
            .collect();
        let messages: Vec<Vec<(&str, &str)>> = layouts
            .iter()
            .flat_map(|l| std::iter::repeat_n(l.clone(), 3))
            .cycle()
            .take(layouts.len() * 3 * 2)
            .collect();
        let n = check_messages(&messages);
        assert_eq!(n.get("jxta:EndpointRouterMsg"), Some(2400));
        assert_eq!(n.get("e7"), Some(6));
    }

    /// JXSE's layouts, and messages that share a layout's entry, its lengths or all
    /// but a byte of its names; layouts too long for the table (elements, bytes, one
    /// name of 300 bytes); an empty message and empty names; payloads after the 64
    /// elements a shape keeps as bits.
    #[test]
    fn messages_count_like_their_elements() {
        const ESA: (&str, &str) = ("jxta", "EndpointSourceAddress");
        const EDA: (&str, &str) = ("jxta", "EndpointDestinationAddress");
        const ERM: (&str, &str) = ("jxta", "EndpointRouterMsg");
        const RVP: (&str, &str) = ("jxta", "RendezVousPropagatejxta-NetGroup");
        let long = "n".repeat(300);
        let wide = "w".repeat(60);
        let many: Vec<(&str, &str)> = (0..70)
            .map(|i| match i % 9 {
                0 => ("", "jxta-NetGroupSrdi"),
                3 => ("pingpong", "payload"),
                _ => ERM,
            })
            .chain([("", "late"), ERM, ERM])
            .collect();
        let mut after_64 = vec![ERM; 66];
        after_64.push(("jim", "JimMessage"));
        after_64.push(ERM);
        let layouts: Vec<Vec<(&str, &str)>> = vec![
            vec![("pingpong", "payload"), ERM, ESA, EDA],
            vec![("jxta", "jxta-NetGroupSrdi"), RVP, ERM, ESA, EDA],
            vec![("jxta", "jxta-NetGroupIRes"), ERM, ESA, EDA],
            vec![("jxta", "jxta-NetGroupORes"), ERM, ESA, EDA],
            vec![("jxta", "jxta-NetGroupORes"), RVP, ERM, ESA, EDA],
            vec![("", "jxta-NetGroupORes"), ERM, ESA, EDA],
            vec![("", "jxta-NetGroupDiscQuery"), ("", "x"), ESA],
            vec![("jxta", "Connect"), ESA, EDA],
            // The first element of the first layout, the rest differing in a byte, a
            // length, a namespace, or their number.
            vec![
                ("pingpong", "payload"),
                ERM,
                ESA,
                ("jxta", "EndpointDestinationAddresS"),
            ],
            vec![
                ("pingpong", "payload"),
                ERM,
                ESA,
                ("jxta", "EndpointDestinationAddres"),
            ],
            vec![
                ("pingpong", "payload"),
                ERM,
                ESA,
                ("jxtb", "EndpointDestinationAddress"),
            ],
            vec![("pingpong", "payload"), ERM, ("jxta", ""), EDA],
            vec![("pingpong", "payload"), ERM, ESA],
            vec![("pingpong", "payload"), ERM, ESA, EDA, EDA],
            vec![("pingpong", "payload"); 8],
            vec![("pingpong", "payload"); 9],
            vec![("", ""), ("", "")],
            vec![],
            vec![("jxta", long.as_str()), ESA],
            vec![("", wide.as_str()); 4],
            vec![(wide.as_str(), wide.as_str()); 2],
            many,
            after_64,
        ];
        // Each in turn, three rounds, then each twice in a row.
        let mut messages: Vec<Vec<(&str, &str)>> = layouts
            .iter()
            .cycle()
            .take(layouts.len() * 3)
            .cloned()
            .collect();
        messages.extend(layouts.iter().flat_map(|l| [l.clone(), l.clone()]));
        check_messages(&messages);
    }

    /// Layouts of names past the cap: their slot is `(other)`'s, kept as such.
    #[test]
    fn layouts_past_the_cap_count_like_the_map() {
        let names: Vec<String> = (0..MAX_ELEMENT_NAMES + 30)
            .map(|i| format!("n{i}"))
            .collect();
        let messages: Vec<Vec<(&str, &str)>> = names
            .chunks(3)
            .flat_map(|c| {
                let m: Vec<(&str, &str)> = c.iter().map(|n| ("", n.as_str())).collect();
                [m.clone(), m]
            })
            .collect();
        let n = check_messages(&messages);
        assert_eq!(n.get(OTHER_NAMES_KEY), Some(60));
    }

    proptest::proptest! {
        /// Messages of names from a small vocabulary (so that layouts repeat, share
        /// entries and are evicted), counted through the layout table: the counts of
        /// every element counted apart, and each message's shape as the old code's.
        #[test]
        fn any_messages_count_like_their_elements(
            messages in proptest::collection::vec(
                proptest::collection::vec((0usize..4, 0usize..12), 0..12),
                0..60,
            ),
            repeat in 1usize..4,
        ) {
            const NAMESPACES: [&str; 4] = ["", "jxta", "jxtb", "pingpong"];
            const NAMES: [&str; 12] = [
                "payload", "paxload", "", "EndpointRouterMsg", "EndpointRouterMsh",
                "jxta-NetGroupSrdi", "jxta-NetGroupIRes", "jxta-NetGroupORes",
                "jxta-DiscResponse", "x", "RendezVousPropagatejxta-NetGroup",
                "EndpointSourceAddress",
            ];
            let messages: Vec<Vec<(&str, &str)>> = messages
                .iter()
                .flat_map(|m| {
                    let m: Vec<(&str, &str)> = m.iter().map(|&(a, b)| (NAMESPACES[a], NAMES[b])).collect();
                    std::iter::repeat_n(m, repeat)
                })
                .collect();
            check_messages(&messages);
        }
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
