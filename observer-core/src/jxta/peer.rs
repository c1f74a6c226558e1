//! JXTA peer identifiers, normalised so that the forms seen on the wire compare equal.
//!
//! The same peer appears as `urn:jxta:uuid-…03` in welcome lines and JIM documents, as
//! `jxta://uuid-…03` in `EndpointRouterMsg` addresses, and JXSE 2.7 uses crypto-based
//! `cbid-` IDs in both places. Identity in the matcher must not depend on which form a
//! message happened to carry, so everything is converted to the URN form once, here.

use std::fmt;
use std::sync::Arc;

/// A peer ID in URN form (`urn:jxta:<format>-<unique>`). Cheap to clone: the matcher
/// keys maps by it for every PING and PONG, so its hash is computed once, here, and
/// two IDs with different hashes are unequal without a look at their 80 bytes.
#[derive(Clone)]
pub struct PeerId {
    text: Arc<str>,
    hash: u64,
}

/// Seeded once per process, like the maps' own hasher: the IDs come from the wire.
/// Over the `<format>-<unique>` part's bytes (every ID's URN is `urn:jxta:` and that
/// part), so that a lookup by the part as found on the wire hashes alike without
/// building the URN first.
fn id_hash(unique: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    static SEED: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
    SEED.get_or_init(Default::default).hash_one(unique)
}

impl PartialEq for PeerId {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for PeerId {}

impl std::hash::Hash for PeerId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for PeerId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PeerId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

const URN_PREFIX: &str = "urn:jxta:";
/// Longest `<format>-<unique>` part accepted.
const MAX_UNIQUE: usize = 512;

impl PeerId {
    /// The same copy of the text (a pointer compare): equal, without a look at it.
    #[inline]
    pub fn same_copy(&self, other: &PeerId) -> bool {
        Arc::ptr_eq(&self.text, &other.text)
    }

    /// Parses any of the wire forms: `urn:jxta:uuid-…`, `jxta://uuid-…`, `uuid-…`
    /// (and the same with `cbid-` or any other `<format>-`). A trailing service path
    /// (`jxta://uuid-…/PipeService/…`) is not part of the ID and must be cut by the
    /// caller. Returns `None` for text that is not a peer ID (empty, spaces, control
    /// characters, no `<format>-` part): wire text is never trusted to be one.
    pub fn parse(text: &str) -> Option<PeerId> {
        Self::check(text).map(Self::from_checked)
    }

    /// The `<format>-<unique>` part of `text` if [`PeerId::parse`] takes it, kept so
    /// that building the ID (or finding it shared) does not check it again.
    pub fn check(text: &str) -> Option<PeerPart<'_>> {
        unique_part(text).map(PeerPart)
    }

    pub fn from_checked(part: PeerPart<'_>) -> PeerId {
        with_urn(part, |urn| {
            PeerId::from_urn(urn, id_hash(part.0.as_bytes()))
        })
    }

    /// `urn`: `urn:jxta:` and a checked unique part (ASCII), `hash` the part's
    /// [`id_hash`].
    fn from_urn(urn: &[u8], hash: u64) -> PeerId {
        // ASCII by the checks of `unique_part`; the fallback is never taken.
        let text: Arc<str> = match super::wire_str(urn) {
            Ok(t) => Arc::from(t),
            Err(_) => Arc::from(String::from_utf8_lossy(urn)),
        };
        PeerId { text, hash }
    }

    /// Whether `text` is a peer ID [`PeerId::parse`] takes, without building it.
    pub fn is_valid(text: &str) -> bool {
        Self::check(text).is_some()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text, the copy every clone of this ID shares.
    pub fn into_text(self) -> Arc<str> {
        self.text
    }

    /// The `<format>-<unique>` part, as used in `jxta://` endpoint addresses.
    pub fn unique(&self) -> &str {
        &self.text[URN_PREFIX.len()..]
    }
}

/// The `<format>-<unique>` part of a peer ID as [`PeerId::check`] found it: at most
/// `MAX_UNIQUE` bytes of ASCII. Only `check` makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPart<'a>(&'a str);

/// `f` of the part's URN (`urn:jxta:<format>-<unique>`), built on the stack: a lookup
/// of an ID already held allocates nothing, and one that is not copies it once into
/// its `Arc` (`format!` then `Arc::from` allocated twice).
///
/// The common IDs (JXSE's 80-byte `uuid-` URNs, `cbid-` ones) take a small buffer:
/// zeroing the largest one was ~50 instructions of every call.
fn with_urn<R>(part: PeerPart<'_>, f: impl FnOnce(&[u8]) -> R) -> R {
    const SMALL: usize = 128;
    if URN_PREFIX.len() + part.0.len() <= SMALL {
        urn_in::<SMALL, R>(part, f)
    } else {
        urn_in::<{ URN_PREFIX.len() + MAX_UNIQUE }, R>(part, f)
    }
}

/// [`with_urn`] in a buffer of `N` bytes, which the URN must fit: `with_urn` chooses
/// `N`, and `unique_part` refuses parts longer than `MAX_UNIQUE`.
#[inline(always)]
fn urn_in<const N: usize, R>(part: PeerPart<'_>, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; N];
    let len = URN_PREFIX.len() + part.0.len();
    buf[..URN_PREFIX.len()].copy_from_slice(URN_PREFIX.as_bytes());
    buf[URN_PREFIX.len()..len].copy_from_slice(part.0.as_bytes());
    f(&buf[..len])
}

/// The `<format>-<unique>` part of a peer ID in any of its wire forms, if it is one.
fn unique_part(text: &str) -> Option<&str> {
    if let Some(part) = plain_uuid_part(text) {
        return Some(part);
    }
    let t = text.trim();
    let unique = if let Some(rest) = strip_prefix_ci(t, URN_PREFIX) {
        rest
    } else if let Some(rest) = strip_prefix_ci(t, "jxta://") {
        rest
    } else {
        t
    };
    if unique.len() > MAX_UNIQUE {
        return None;
    }
    // Every ID of a welcome line and of a direction's first router document comes
    // through here (twice for a welcome's): the cut by `memchr`, not a character
    // searcher, and the bytes looked up without a branch per byte.
    let dash = memchr::memchr(b'-', unique.as_bytes())?;
    let (format, body) = unique.as_bytes().split_at(dash);
    let valid = |s: &[u8]| !s.is_empty() && all_word_bytes(s);
    (valid(format) && valid(&body[1..])).then_some(unique)
}

/// What [`unique_part`] gives for the two forms JXSE sends nearly always, a
/// welcome line's `urn:jxta:uuid-…` and a router address's `uuid-…`, when every byte
/// after `uuid-` is a word byte: then there is nothing to trim (the first byte is `u`,
/// the last a word byte), the prefix is the lower-case one, and the first `-` is
/// `uuid-`'s. Skips the trim, the case-insensitive prefix tests and the search for
/// the dash (~200 instructions of the ~460 a check took). `None` means: ask
/// `unique_part`'s general path.
fn plain_uuid_part(text: &str) -> Option<&str> {
    const UUID: &[u8] = b"uuid-";
    let b = text.as_bytes();
    let from = if b.starts_with(URN_PREFIX.as_bytes()) {
        URN_PREFIX.len()
    } else {
        0
    };
    let body = b.get(from..)?.strip_prefix(UUID)?;
    let fits = b.len() - from <= MAX_UNIQUE;
    let valid = !body.is_empty() && all_word_bytes(body);
    (fits && valid).then(|| text.get(from..)).flatten()
}

/// Whether every byte of `s` is a word byte (`crate::WORD_BYTES`). The table, looked
/// up a byte at a time, was ~4 instructions a byte, ~270 of the ~290 a JXSE peer ID's
/// check took; the compiler's vectors for the fold left a byte at a time after the
/// last whole vector (a JXSE part's 66 bytes: ~220 instructions a check). With SSE2
/// (every x86-64 has it) a block is a dozen instructions, the bytes after the last
/// whole block checked as the last 16 (a byte's answer does not depend on where it
/// is). `all_word_bytes_is_the_table` compares both with the table.
#[inline]
fn all_word_bytes(s: &[u8]) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if let Some(last) = s.last_chunk::<16>() {
        // SAFETY: `all_word_bytes_sse2` is a `target_feature(enable = "sse2")`
        // function; the `cfg` above says this build's target has SSE2 (x86-64's
        // baseline).
        return unsafe { all_word_bytes_sse2(s, last) };
    }
    all_word_bytes_fold(s)
}

/// [`all_word_bytes`] of `s`, whose last 16 bytes are `last`: the fold's tests, a
/// range each by one add and one signed compare (an unsigned `x - lo < n` is a signed
/// `x - lo + 0x80 < n - 0x80`; `min` and `cmpeq` took three). `-`, `.` and the digits
/// are one range, `0x2d..=0x39`, less `/`: with `_` the marks and digits are three
/// tests where five were (~3 instructions a block fewer).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn all_word_bytes_sse2(s: &[u8], last: &[u8; 16]) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmplt_epi8,
        _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // Bytes `lo..lo + n` (`n` at most 128): `x + (0x80 - lo)` wraps them to the signed
    // bytes below `n - 0x80`, and every other byte to `n - 0x80` or above.
    let within = |x: __m128i, lo: u8, n: u8| {
        _mm_cmplt_epi8(
            _mm_add_epi8(x, _mm_set1_epi8(0x80u8.wrapping_sub(lo) as i8)),
            _mm_set1_epi8(n.wrapping_sub(0x80) as i8),
        )
    };
    let word = |block: &[u8; 16]| {
        // SAFETY: `block` is 16 bytes long: the unaligned load reads inside it.
        let c = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
        let marks_digits = _mm_andnot_si128(
            _mm_cmpeq_epi8(c, _mm_set1_epi8(b'/' as i8)),
            within(c, b'-', b'9' - b'-' + 1),
        );
        // Setting 0x20 lowers an ASCII capital and leaves the rest out of `a..=z`.
        let letter = within(_mm_or_si128(c, _mm_set1_epi8(0x20)), b'a', 26);
        let underscore = _mm_cmpeq_epi8(c, _mm_set1_epi8(b'_' as i8));
        _mm_or_si128(_mm_or_si128(marks_digits, letter), underscore)
    };
    let all = s
        .as_chunks::<16>()
        .0
        .iter()
        .fold(word(last), |all, block| _mm_and_si128(all, word(block)));
    _mm_movemask_epi8(all) == 0xffff
}

/// [`all_word_bytes`] a byte at a time (by comparisons the compiler runs a vector at a
/// time where it can): parts shorter than a block, and other targets.
fn all_word_bytes_fold(s: &[u8]) -> bool {
    s.iter().fold(true, |ok, &c| {
        let digit = c.wrapping_sub(b'0') < 10;
        // Setting 0x20 lowers an ASCII capital and leaves the rest out of `a..=z`.
        let letter = (c | 0x20).wrapping_sub(b'a') < 26;
        ok & (digit | letter | (c == b'-') | (c == b'_') | (c == b'.'))
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
    {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.text)
    }
}

/// Peer IDs a [`SharedPeers`] table holds at most; past it the table starts again
/// (what holders keep stays valid, only sharing is lost).
pub(crate) const SHARED_PEERS: usize = 16_384;

/// Peer IDs held once each, by their own hash (see [`shared_peer`]).
pub(crate) type SharedPeers = hashbrown::HashMap<PeerId, Arc<PeerId>, foldhash::fast::RandomState>;

/// A peer ID looked up by its unique part's bytes, before any `PeerId` (or its URN) is
/// built.
struct PartKey<'a> {
    unique: &'a [u8],
    hash: u64,
}

/// As `PeerId`'s own `Hash`: the table finds the key's bucket only if they agree.
impl std::hash::Hash for PartKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Every `PeerId`'s text is `urn:jxta:` and its unique part (`from_urn` is the only
/// maker, fed by `with_urn`): comparing the parts is comparing the URNs.
impl hashbrown::Equivalent<PeerId> for PartKey<'_> {
    fn equivalent(&self, id: &PeerId) -> bool {
        self.hash == id.hash && id.text.as_bytes().get(URN_PREFIX.len()..) == Some(self.unique)
    }
}

/// The held copy of the peer `part` names as one pointer, else its ID built and
/// remembered: a peer's ID comes again and again (its welcome line on each of its
/// connections, its router documents in each direction), and every holder kept its
/// own ~100-byte copy of the text; a holder of many (a connection's welcome peers, a
/// flow direction's router note) keeps 8 bytes, not a `PeerId`'s 24. Looked up by the
/// unique part's bytes: an ID already held (most, on a capture of many connections
/// between fewer peers) is not built to be dropped, nor its URN copied to the stack.
pub(crate) fn shared_peer(known: &mut SharedPeers, part: PeerPart<'_>) -> Arc<PeerId> {
    shared_hashed(known, part, id_hash(part.0.as_bytes()))
}

/// [`shared_peer`] of `PeerId::check(text)`, the table asked first: a text equal to a
/// held ID's unique part is that part checked (a part is word bytes around a `-`: no
/// whitespace for the trim, no `:` or `/` for a prefix, so `check` takes it whole), and
/// nearly every router address names a peer already held. Only a text the table does
/// not hold is checked (~216 instructions of each of a first router document's two
/// IDs). `shared_checked_is_check_then_shared_peer` compares both ways.
pub(crate) fn shared_checked(known: &mut SharedPeers, text: &str) -> Option<Arc<PeerId>> {
    let (hash, held) = held_hashed(known, text);
    if held.is_some() {
        return held;
    }
    let part = PeerId::check(text)?;
    let hash = match hash {
        // The part is the text itself: its hash is the one just made.
        Some(h) if part.0.len() == text.len() => h,
        _ => id_hash(part.0.as_bytes()),
    };
    Some(shared_hashed(known, part, hash))
}

/// The held peer whose unique part `text` is, if any, found without a check and
/// without adding it: an answer means `text` is a unique part [`PeerId::check`] takes
/// whole (word bytes around a `-`: no white space, control, `:` or `/`).
pub(crate) fn held_peer(known: &SharedPeers, text: &str) -> Option<Arc<PeerId>> {
    held_hashed(known, text).1
}

/// [`held_peer`], with the [`id_hash`] of `text` it looked up by (`None` when `text`
/// is longer than any part: held by no entry, and not hashed to learn it).
fn held_hashed(known: &SharedPeers, text: &str) -> (Option<u64>, Option<Arc<PeerId>>) {
    let unique = text.as_bytes();
    let hash = (unique.len() <= MAX_UNIQUE).then(|| id_hash(unique));
    let held = hash.and_then(|hash| known.get(&PartKey { unique, hash }).map(Arc::clone));
    (hash, held)
}

/// [`shared_peer`] with the part's [`id_hash`] at hand.
fn shared_hashed(known: &mut SharedPeers, part: PeerPart<'_>, hash: u64) -> Arc<PeerId> {
    let unique = part.0.as_bytes();
    if let Some(held) = known.get(&PartKey { unique, hash }) {
        return Arc::clone(held);
    }
    if known.len() >= SHARED_PEERS {
        known.clear();
    }
    let id = with_urn(part, |urn| PeerId::from_urn(urn, hash));
    let held = Arc::new(id.clone());
    known.insert(id, Arc::clone(&held));
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `unique_part` as it was before it cut by `memchr` and checked without a branch.
    fn reference(text: &str) -> Option<&str> {
        let t = text.trim();
        let unique = if let Some(rest) = strip_prefix_ci(t, URN_PREFIX) {
            rest
        } else if let Some(rest) = strip_prefix_ci(t, "jxta://") {
            rest
        } else {
            t
        };
        let (format, body) = unique.split_once('-')?;
        let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| crate::WORD_BYTES[usize::from(b)]);
        (valid(format) && valid(body) && unique.len() <= MAX_UNIQUE).then_some(unique)
    }

    /// Every byte alone, and at every place of a JXSE peer ID's unique part.
    #[test]
    fn all_word_bytes_is_the_table() {
        for b in 0..=255u8 {
            assert_eq!(
                all_word_bytes(&[b]),
                crate::WORD_BYTES[usize::from(b)],
                "{b:#x}"
            );
        }
        let id = b"59616261646162614E50472050325033A96FCDC35A0A4F3F8038B4F1F4D0B37E03";
        assert!(all_word_bytes(id) && all_word_bytes(&[]));
        // Every byte at every place of every length to five blocks: the fold's answer.
        for len in 1..=80 {
            let mut t = vec![b'a'; len];
            for at in 0..len {
                for b in 0..=255u8 {
                    t[at] = b;
                    assert_eq!(
                        all_word_bytes(&t),
                        all_word_bytes_fold(&t),
                        "{len} {at} {b}"
                    );
                }
                t[at] = b'a';
            }
        }
        // Every length up to the whole ID (shorter than a block, whole blocks, blocks
        // and a tail): one bad byte at any place, the tail's last included, is seen.
        for len in 0..=id.len() {
            assert!(all_word_bytes(&id[..len]), "{len}");
            for at in 0..len {
                for b in [
                    b' ', b'/', b':', b'@', b'[', b'`', b'{', 0x7f, 0x80, 0xc1, 0xff,
                ] {
                    let mut t = id[..len].to_vec();
                    t[at] = b;
                    assert!(!all_word_bytes(&t), "{len} {at} {b:#x}");
                }
            }
        }
    }

    proptest::proptest! {
        /// Any bytes, any length across several blocks: the table's answer.
        #[test]
        fn all_word_bytes_is_the_table_on_any_bytes(
            mut s in proptest::collection::vec(proptest::sample::select(b"aZ09-_.".to_vec()), 0..80),
            bad in proptest::option::of((0usize..80, proptest::num::u8::ANY)),
        ) {
            if let Some((at, b)) = bad {
                if let Some(c) = s.get_mut(at) {
                    *c = b;
                }
            }
            let table = s.iter().all(|&b| crate::WORD_BYTES[usize::from(b)]);
            proptest::prop_assert_eq!(all_word_bytes(&s), table);
        }
    }

    proptest::proptest! {
        /// Prefixes in any case, dashes anywhere, spaces, bytes that are no word bytes,
        /// non-ASCII text and lengths on both sides of `MAX_UNIQUE`: the same part.
        #[test]
        fn the_unique_part_is_the_reference_one(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "urn:jxta:", "URN:jXta:", "jxta://", "uuid", "uuid-", "urn:jxta:uuid-",
                    "cbid", "-", "--", "AB03",
                    " ", "\t", "_", ".", "/", ":", "\u{e9}", "\u{7f}", "",
                ]),
                0..10,
            ),
            long in 0usize..3,
        ) {
            let mut text = pieces.concat();
            // Unique parts of 512 and 513 bytes: either side of the bound, alone and
            // behind the URN prefix.
            if long > 0 {
                let prefix = if pieces.len() % 2 == 0 { "" } else { URN_PREFIX };
                text = format!("{prefix}uuid-{}", "A".repeat(MAX_UNIQUE - 6 + long));
            }
            proptest::prop_assert_eq!(unique_part(&text), reference(&text));
        }
    }

    const U: &str = "uuid-59616261646162614E50472050325033A96FCDC35A0A4F3F8038B4F1F4D0B37E03";

    #[test]
    fn wire_forms_compare_equal() {
        let a = PeerId::parse(&format!("urn:jxta:{U}")).unwrap();
        let b = PeerId::parse(&format!("jxta://{U}")).unwrap();
        let c = PeerId::parse(U).unwrap();
        for form in [
            format!("urn:jxta:{U}"),
            format!("jxta://{U}"),
            U.to_string(),
        ] {
            assert!(PeerId::is_valid(&form), "{form}");
        }
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.unique(), U);
        assert_eq!(a.as_str(), format!("urn:jxta:{U}"));
    }

    /// The longest accepted ID fills the stack buffer exactly; one byte more is refused.
    #[test]
    fn longest_id() {
        let longest = format!("uuid-{}", "A".repeat(MAX_UNIQUE - 5));
        let p = PeerId::parse(&format!("jxta://{longest}")).unwrap();
        assert_eq!(p.as_str(), format!("urn:jxta:{longest}"));
        assert!(PeerId::parse(&format!("{longest}B")).is_none());
    }

    /// Around the small buffer's size (a URN of 128 bytes) and up to the largest, an ID
    /// built or found shared is its whole URN.
    #[test]
    fn urns_on_both_sides_of_the_small_buffer_are_whole() {
        let mut known = SharedPeers::default();
        for n in (100..=140).chain([MAX_UNIQUE - 5]) {
            let part = format!("uuid-{}", "7".repeat(n));
            let urn = format!("urn:jxta:{part}");
            let built = PeerId::parse(&format!("jxta://{part}")).unwrap();
            assert_eq!(built.as_str(), urn, "{n}");
            let shared = share(&mut known, &part);
            assert_eq!(shared.as_str(), urn, "{n}");
            assert_eq!(*shared, built, "{n}");
        }
    }

    #[test]
    fn cbid_accepted() {
        let p = PeerId::parse("urn:jxta:cbid-0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D03").unwrap();
        assert!(p.as_str().starts_with("urn:jxta:cbid-"));
    }

    #[test]
    fn garbage_rejected() {
        for bad in [
            "",
            "urn:jxta:",
            "jxta://",
            "hello",
            "uuid-",
            "-abc",
            "uuid-a b",
            "uuid-\u{1b}[31m",
        ] {
            assert!(PeerId::parse(bad).is_none(), "{bad:?}");
            assert!(!PeerId::is_valid(bad), "{bad:?}");
        }
    }

    fn peer(n: usize) -> PeerId {
        PeerId::parse(&format!("urn:jxta:uuid-{n:032X}03")).expect("a valid peer ID")
    }

    /// The ID `text` parses to, shared.
    fn share(known: &mut SharedPeers, text: &str) -> Arc<PeerId> {
        shared_peer(known, PeerId::check(text).expect("a valid peer ID"))
    }

    #[test]
    fn shared_peer_pointers_are_shared_and_bounded() {
        let mut known = SharedPeers::default();
        let text = peer(1).to_string();
        let (a, b) = (share(&mut known, &text), share(&mut known, &text));
        assert!(Arc::ptr_eq(&a, &b));
        // Their text too, for those who clone the `PeerId` out.
        assert_eq!(PeerId::clone(&a).as_str().as_ptr(), b.as_str().as_ptr());
        assert!(!Arc::ptr_eq(&a, &share(&mut known, &peer(2).to_string())));
        for n in 0..2 * SHARED_PEERS {
            assert_eq!(*share(&mut known, &peer(n).to_string()), peer(n));
            assert!(known.len() <= SHARED_PEERS);
        }
    }

    proptest::proptest! {
        // Each case fills two tables to their bound.
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Texts the table holds, wire forms of them, near misses and garbage, into a
        /// table at its bound: `shared_checked` gives what checking then sharing gives
        /// (the same `Arc` when held), and leaves the table as that does.
        #[test]
        fn shared_checked_is_check_then_shared_peer(
            texts in proptest::collection::vec(
                (
                    0usize..6,
                    proptest::sample::select(vec![
                        "", "urn:jxta:", "URN:JXTA:", "jxta://", " ", "\t", "x", "/", ":",
                    ]),
                    proptest::sample::select(vec!["", " ", "\n", "/", "-", "03", "\u{e9}"]),
                    0usize..3,
                ),
                1..40,
            ),
            fill in 0usize..3,
        ) {
            let mut by_check = SharedPeers::default();
            let mut by_lookup = SharedPeers::default();
            // Full, nearly full or empty: the bound's clear happens in both or neither.
            let before = [0, SHARED_PEERS - 2, SHARED_PEERS - 1][fill];
            for n in 0..before {
                let t = format!("uuid-{n:032X}99");
                share(&mut by_check, &t);
                share(&mut by_lookup, &t);
            }
            for (n, prefix, suffix, shape) in texts {
                let part = match shape {
                    0 => format!("uuid-{n:032X}03"),
                    1 => format!("cbid-{n:040X}"),
                    // Either side of `MAX_UNIQUE`.
                    _ => "A".repeat(MAX_UNIQUE - 5 + n).replacen('A', "uuid-", 1),
                };
                let text = format!("{prefix}{part}{suffix}");
                let want = PeerId::check(&text).map(|p| shared_peer(&mut by_check, p));
                let got = shared_checked(&mut by_lookup, &text);
                proptest::prop_assert_eq!(got.as_deref(), want.as_deref(), "{:?}", text);
                if let (Some(g), Some(w)) = (&got, &want) {
                    // Held on both sides from the same calls: the same entry's `Arc`
                    // (compared through the text, the tables being two).
                    proptest::prop_assert_eq!(
                        Arc::strong_count(g), Arc::strong_count(w), "{:?}", text
                    );
                }
                proptest::prop_assert_eq!(by_lookup.len(), by_check.len());
            }
            let mut a: Vec<_> = by_lookup.keys().map(|k| k.to_string()).collect();
            let mut b: Vec<_> = by_check.keys().map(|k| k.to_string()).collect();
            a.sort();
            b.sort();
            proptest::prop_assert_eq!(a, b);
        }
    }

    /// A held ID's unique part alone finds it without a check; a held part with a byte
    /// more, or with a `:`, is checked (and refused or built anew).
    #[test]
    fn shared_checked_finds_held_parts_and_checks_the_rest() {
        let mut known = SharedPeers::default();
        let held = share(&mut known, &format!("urn:jxta:{U}"));
        let got = shared_checked(&mut known, U).expect("held");
        assert!(Arc::ptr_eq(&got, &held));
        assert!(
            shared_checked(&mut known, &format!("{U} ")).is_some_and(|g| Arc::ptr_eq(&g, &held))
        );
        assert!(shared_checked(&mut known, &format!("{U}:")).is_none());
        assert!(shared_checked(&mut known, &"A".repeat(MAX_UNIQUE + 1)).is_none());
        let other = shared_checked(&mut known, &format!("{U}4")).expect("valid");
        assert!(!Arc::ptr_eq(&other, &held));
        assert_eq!(known.len(), 2);
    }

    /// Every wire form of an ID, in any case of its prefix, finds the one held (the
    /// lookup by bytes hashes and compares as the `PeerId` key does: the table keeps one
    /// entry), and what is found or built is what `parse` gives.
    #[test]
    fn a_held_id_is_found_by_its_bytes_in_every_wire_form() {
        let mut known = SharedPeers::default();
        let held = share(&mut known, &format!("urn:jxta:{U}"));
        for form in [
            format!("urn:jxta:{U}"),
            format!("URN:JXTA:{U}"),
            format!("jxta://{U}"),
            format!(" {U}\t"),
        ] {
            let got = share(&mut known, &form);
            assert!(Arc::ptr_eq(&got, &held), "{form}");
            assert_eq!(Some(PeerId::clone(&got)), PeerId::parse(&form));
        }
        assert_eq!(known.len(), 1);
        // Another ID of the same length is another entry.
        let other = U.replace("03", "04");
        assert!(!Arc::ptr_eq(&share(&mut known, &other), &held));
        assert_eq!(known.len(), 2);
        assert!(known.contains_key(&PeerId::parse(&other).unwrap()));
    }
}
