//! Endpoint addressing (spec §3): who sent a message, to whom, and for which service
//! or pipe. The peers' identities live in XML and text elements the JXTA stack appends
//! after the application's elements.
//!
//! Over 1,200 lines: 600 of them are tests (the router scanner is checked against
//! quick-xml on every one-byte mutation).

use std::borrow::Cow;
use std::sync::Arc;

use quick_xml::events::Event;

use super::peer::{held_peer, shared_checked, SharedPeers};
use super::{Message, PeerId, PeerPart};

pub const NS_JXTA: &str = "jxta";
pub const ERM_NAME: &str = "EndpointRouterMsg";
/// JXTA 1.x name of the router element (spec §3.1); same document shape.
pub const ERM_NAME_1X: &str = "JxtaEndpointRouter";
pub const HEADER_SRC_PEER: &str = "EndpointHeaderSrcPeer";
pub const WIRE_HEADER: &str = "JxtaWireHeader";
pub const DEST_ADDRESS: &str = "EndpointDestinationAddress";
pub const SRC_ADDRESS: &str = "EndpointSourceAddress";
pub const PIPE_SERVICE: &str = "PipeService";

/// Where a message comes from and goes, as far as its elements say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addressing {
    /// ERM `<Src>`: the originating peer of a routed message.
    pub src_peer: Option<PeerId>,
    /// ERM `<Dest>` peer part.
    pub dst_peer: Option<PeerId>,
    /// ERM `<Last>` (1.x `<LastHop>`): the peer that forwarded it last.
    pub last_hop: Option<PeerId>,
    /// Service name: from ERM `<Dest>`, else from `EndpointDestinationAddress`.
    pub service: Option<String>,
    /// Service parameter (for `PipeService`, the pipe ID).
    pub service_param: Option<String>,
    /// The pipe: ERM `<Dest>` param for `PipeService` (unicast pipes), else
    /// `JxtaWireHeader/<PipeId>` (propagate pipes).
    pub pipe_id: Option<String>,
    /// `jxta:EndpointHeaderSrcPeer` (multicast/propagation).
    pub header_src_peer: Option<PeerId>,
}

/// Extracts the addressing from a decoded message. Malformed XML or addresses leave
/// the corresponding fields `None`: addressing is best effort, never an error.
pub fn addressing(msg: &Message<'_>) -> Addressing {
    let mut a = Addressing::default();
    let mut dest_address: Option<&str> = None;
    for el in &msg.elements {
        if el.namespace != NS_JXTA {
            continue;
        }
        match el.name.as_ref() {
            ERM_NAME | ERM_NAME_1X if a.src_peer.is_none() && a.dst_peer.is_none() => {
                let Some(xml) = el.text() else { continue };
                let erm = router_fields(xml);
                a.src_peer = erm.src_peer;
                a.last_hop = erm.last_hop;
                a.dst_peer = erm.dst_peer;
                a.service = erm.service;
                a.service_param = erm.service_param;
                a.pipe_id = erm.pipe_id;
            }
            HEADER_SRC_PEER => {
                a.header_src_peer = el.text().and_then(PeerId::parse);
            }
            WIRE_HEADER => {
                if let Some(xml) = el.text() {
                    let [pipe] = root_child_texts(xml, ["PipeId"]);
                    if a.pipe_id.is_none() {
                        a.pipe_id = pipe.map(|p| p.trim().to_string()).filter(|p| !p.is_empty());
                    }
                }
            }
            DEST_ADDRESS => dest_address = el.text(),
            _ => {}
        }
    }
    // The transport destination names only the router service for routed messages;
    // it is the service only when there is no ERM to say better.
    if a.service.is_none() {
        if let Some(ep) = dest_address.and_then(|d| parse_endpoint_address(d.trim())) {
            a.service = ep.service.map(str::to_string);
            a.service_param = ep.param.map(str::to_string);
        }
    }
    a
}

/// What an `EndpointRouterMsg` says (see [`Addressing`] for each field).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RouterFields {
    src_peer: Option<PeerId>,
    dst_peer: Option<PeerId>,
    last_hop: Option<PeerId>,
    service: Option<String>,
    service_param: Option<String>,
    pipe_id: Option<String>,
}

const ROUTER_CHILDREN: [&str; 4] = ["Src", "Dest", "Last", "LastHop"];

fn router_fields(xml: &str) -> RouterFields {
    let mut f = RouterFields::default();
    let [src, dest, last, last_hop] = match plain_root_child_texts(xml, ROUTER_CHILDREN) {
        Some(texts) => texts.map(|t| t.map(Cow::Borrowed)),
        None => root_child_texts(xml, ROUTER_CHILDREN).map(|t| t.map(Cow::Owned)),
    };
    f.src_peer = src
        .as_deref()
        .and_then(peer_of_address)
        .map(PeerId::from_checked);
    f.last_hop = last
        .or(last_hop)
        .as_deref()
        .and_then(peer_of_address)
        .map(PeerId::from_checked);
    if let Some(d) = dest.as_deref() {
        if let Some(ep) = parse_endpoint_address(d) {
            f.dst_peer = PeerId::parse(ep.address);
            f.service = ep.service.map(str::to_string);
            f.service_param = ep.param.map(str::to_string);
            if ep.service == Some(PIPE_SERVICE) {
                f.pipe_id = ep.param.map(str::to_string);
            }
        }
    }
    f
}

/// (source, destination) end-to-end peers.
pub type EndPeers = (Option<PeerId>, Option<PeerId>);

/// [`EndPeers`] as the shared table's pointers: what the memo and a direction's note
/// hold.
type SharedEnds = (Option<Arc<PeerId>>, Option<Arc<PeerId>>);

fn unshared((src, dst): &SharedEnds) -> EndPeers {
    (src.as_deref().cloned(), dst.as_deref().cloned())
}

/// The router document one flow direction sent last, as its length and a 64-bit
/// hash, with its end peers. A peer sends the same `EndpointRouterMsg` to its buddy
/// message after message, so a document of the same length and hash as the last one
/// answers without parsing it or looking it up in the memo. Lives in the flow's state:
/// freed with the connection; 32 bytes a direction (the peers as shared pointers:
/// two `PeerId`s inline took it to jemalloc's 64-byte class), where holding the document's bytes
/// had to be capped by a budget past which 100,000 connections parsed nearly every
/// document again (28 % of `peers10k-1g`'s instructions).
///
/// Only the direction's own sender chooses both documents compared, so a crafted
/// collision could only misattribute what that sender could name anyway; by chance,
/// two different documents agree on length and hash once in 2^64.
#[derive(Debug, Default)]
pub struct LastRouter(Option<Box<HeldRouter>>);

/// A flow direction's [`LastRouter`], with the peers its connection's welcome lines
/// named (this direction's sender first): a direction's first router document names
/// them nearly always (`<Src>` the sender, `<Dest>` the other side), and a text equal
/// to one's unique part is that peer, found by one comparison where the shared table
/// hashed the text and compared it again (~190 instructions a look-up).
#[derive(Debug)]
pub struct DirRouter<'a> {
    pub last: &'a mut LastRouter,
    pub hops: [Option<&'a Arc<PeerId>>; 2],
}

impl<'a> DirRouter<'a> {
    /// A direction whose welcome peers are not known.
    pub fn new(last: &'a mut LastRouter) -> Self {
        DirRouter {
            last,
            hops: [None, None],
        }
    }
}

/// The hop whose unique part `text` is: the peer a check of `text` names, since every
/// `PeerId` is built from a checked part (see [`held_peer`]).
fn hop_named(hops: [Option<&Arc<PeerId>>; 2], text: &str) -> Option<Arc<PeerId>> {
    hops.into_iter()
        .flatten()
        .find(|hop| hop.unique() == text)
        .cloned()
}

#[derive(Debug)]
struct HeldRouter {
    len: usize,
    hash: u64,
    src: Option<Arc<PeerId>>,
    dst: Option<Arc<PeerId>>,
}

/// The fixed seed keeps a run's output a function of its input alone. Every message's
/// router document is hashed for its direction's note: foldhash took ~260 instructions
/// for peers1k-0.1g's 508-byte documents (~0.5 a byte), AES rounds take one instruction
/// for 16 bytes. Only equality of hashes of documents of one length is ever asked
/// (the note, `first_seen`), and the length picks the function, so which one a CPU runs
/// changes no answer.
///
/// Whether the CPU has AES and AVX is asked once, when the memo is made: asked for
/// each router document hashed, the two checks were ~9 instructions each. So is AVX2,
/// for the scan of a JXSE first document ([`stop_and_ascii`]).
#[derive(Debug, Clone, Copy)]
struct RouterHash {
    /// The CPU has AES and AVX: only [`RouterHash::default`] sets it, from
    /// `is_x86_feature_detected!`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    aes: bool,
    /// The CPU has AVX2: only [`RouterHash::default`] sets it, from
    /// `is_x86_feature_detected!`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    avx2: bool,
}

impl Default for RouterHash {
    fn default() -> Self {
        #[cfg(target_arch = "x86_64")]
        let (aes, avx2) = (
            std::is_x86_feature_detected!("aes") && std::is_x86_feature_detected!("avx"),
            std::is_x86_feature_detected!("avx2"),
        );
        #[cfg(not(target_arch = "x86_64"))]
        let (aes, avx2) = (false, false);
        RouterHash { aes, avx2 }
    }
}

impl RouterHash {
    fn of(self, content: &[u8]) -> u64 {
        #[cfg(target_arch = "x86_64")]
        if self.aes && content.len() >= AES_FROM {
            // SAFETY: `router_hash_aes` is a `target_feature(enable = "aes,avx")`
            // function; calling it is sound when the CPU has both, which `aes` says:
            // only `RouterHash::default` sets it, from `is_x86_feature_detected!`.
            return unsafe { router_hash_aes(content) };
        }
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::default().hash_one(content)
    }
}

/// Below this many bytes foldhash's short paths cost little, and the AES path may load
/// the last 16 bytes without a bounds case.
#[cfg(target_arch = "x86_64")]
const AES_FROM: usize = 64;

/// The lanes' starting states and the last rounds' keys: the first hexadecimal digits
/// of pi's fraction (foldhash's seeds are too), fixed so a run is its input's alone.
#[cfg(target_arch = "x86_64")]
const AES_SEEDS: [u64; 6] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
    0x4528_21e6_38d0_1377,
    0xbe54_66cf_34e9_0c6c,
];

/// A 64-bit hash of `content` (at least [`AES_FROM`] bytes) by AES rounds: each 16-byte
/// block is the round key of one round of its lane (`aesenc` takes it from memory, VEX
/// encoded so unaligned), 64-byte chunks across four lanes, then the rest's whole
/// blocks and the content's last 16 bytes (overlapping what came before) through the
/// first lane. With the length fixed every byte lands in one place of one block, and a
/// round is a permutation of its lane's state, so a difference in one block lives on to
/// the end; the lanes are folded in order, each through one more round than the next
/// (a swap of lanes changes the result), and three last rounds spread the last
/// lane's difference over all 16 bytes before the halves are folded to 64 bits.
/// `aes_router_hash_sees_every_byte` checks that every one-byte change and every swap
/// of two blocks changes it, and that the alignment does not.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,avx")]
fn router_hash_aes(content: &[u8]) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_aesenc_si128, _mm_cvtsi128_si64, _mm_loadu_si128, _mm_set_epi64x,
        _mm_unpackhi_epi64, _mm_xor_si128,
    };
    let len = content.len() as i64;
    let [k0, k1, k2, k3, k4, k5] = AES_SEEDS.map(|k| k as i64);
    let (mut a, mut b) = (_mm_set_epi64x(k0, len), _mm_set_epi64x(k1, len));
    let (mut c, mut d) = (_mm_set_epi64x(k2, len), _mm_set_epi64x(k3, len));
    let mut chunks = content.chunks_exact(64);
    for chunk in &mut chunks {
        // SAFETY: `chunk` is 64 bytes long: the four 16-byte loads read inside it.
        let [w, x, y, z] = unsafe {
            let at = |i: usize| _mm_loadu_si128(chunk.as_ptr().add(16 * i).cast::<__m128i>());
            [at(0), at(1), at(2), at(3)]
        };
        a = _mm_aesenc_si128(a, w);
        b = _mm_aesenc_si128(b, x);
        c = _mm_aesenc_si128(c, y);
        d = _mm_aesenc_si128(d, z);
    }
    let mut blocks = chunks.remainder().chunks_exact(16);
    for block in &mut blocks {
        // SAFETY: `block` is 16 bytes long: the load reads inside it.
        a = _mm_aesenc_si128(a, unsafe {
            _mm_loadu_si128(block.as_ptr().cast::<__m128i>())
        });
    }
    if !blocks.remainder().is_empty() {
        // SAFETY: `content` is at least `AES_FROM` (64) bytes long, so its last 16
        // bytes start at `len - 16 >= 0`: the load reads inside it.
        a = _mm_aesenc_si128(a, unsafe {
            _mm_loadu_si128(content.as_ptr().add(content.len() - 16).cast::<__m128i>())
        });
    }
    let mut s = _mm_aesenc_si128(_mm_aesenc_si128(_mm_aesenc_si128(a, b), c), d);
    s = _mm_aesenc_si128(s, _mm_set_epi64x(k4, k5));
    s = _mm_aesenc_si128(s, _mm_set_epi64x(k5, k4));
    s = _mm_aesenc_si128(s, _mm_set_epi64x(k4, k5));
    (_mm_cvtsi128_si64(_mm_xor_si128(s, _mm_unpackhi_epi64(s, s)))) as u64
}

/// The end-to-end source and destination peers of a message, as [`addressing`] finds
/// them (`src` falls back to `EndpointHeaderSrcPeer`), with the router documents
/// remembered: a peer sends the same `EndpointRouterMsg` to a buddy message after
/// message, and parsing it was a third of the whole analysis. Bounded: the memo is
/// dropped whole when it reaches [`PeerMemo::CAPACITY`] documents.
///
/// A flow direction's first document enters the memo only once another direction
/// sent the same one first (`first_seen`): the memo answers what recurs across
/// connections (a peer reconnecting, a relay forwarding for many peers), and the
/// direction's own note answers its repeats. 100,000 connections each naming their
/// own pair copied 100,000 documents into a memo none of them was asked for again.
#[derive(Debug, Default)]
pub struct PeerMemo {
    routers: crate::FastMap<Box<[u8]>, SharedEnds>,
    /// Length and hash of documents a direction sent first and the memo does not hold;
    /// bounded like the memo. A collision only lets a document into the memo early.
    first_seen: hashbrown::HashSet<(usize, u64), foldhash::fast::RandomState>,
    pub hits: u64,
    pub misses: u64,
    /// Documents equal to the last one of their flow direction (memo not consulted).
    pub direction_hits: u64,
    /// The end peers of the documents parsed, shared: 100,000 connections' directions
    /// and the memo each held their own copies of the same 10,000 peers' IDs (5.2 MB).
    shared: SharedPeers,
    hash: RouterHash,
}

impl PeerMemo {
    pub const CAPACITY: usize = 8192;
    /// Documents larger than this are parsed every time rather than kept.
    const MAX_KEY: usize = 4096;
    /// `last`: the router document of the message's flow direction (none for UDP).
    pub fn peers(&mut self, msg: &Message<'_>, mut last: Option<&mut DirRouter<'_>>) -> EndPeers {
        let mut erm: Option<EndPeers> = None;
        let mut header_src: Option<PeerId> = None;
        for el in &msg.elements {
            if el.namespace != NS_JXTA {
                continue;
            }
            match el.name.as_ref() {
                ERM_NAME | ERM_NAME_1X
                    if erm.as_ref().is_none_or(|(s, d)| s.is_none() && d.is_none()) =>
                {
                    if let Some(peers) = self.router(el.content, last.as_deref_mut()) {
                        // A source named here is the answer's: later elements could
                        // only give the source a header names, or another router
                        // element, and neither is asked for once there is one (the
                        // stack's last two elements were looked at in every message).
                        if peers.0.is_some() {
                            return peers;
                        }
                        erm = Some(peers);
                    }
                }
                HEADER_SRC_PEER => header_src = el.text().and_then(PeerId::parse),
                _ => {}
            }
        }
        let (src, dst) = erm.unwrap_or_default();
        (src.or(header_src), dst)
    }

    /// `None` when the document is not UTF-8 (skipped, as [`addressing`] does).
    fn router(&mut self, content: &[u8], dir: Option<&mut DirRouter<'_>>) -> Option<EndPeers> {
        let Some(DirRouter { last, hops }) = dir else {
            return self
                .memo_router(content, true, [None, None])
                .as_ref()
                .map(unshared);
        };
        let hash = self.hash.of(content);
        if let Some(h) = last.0.as_deref() {
            if h.len == content.len() && h.hash == hash {
                self.direction_hits += 1;
                return Some((h.src.as_deref().cloned(), h.dst.as_deref().cloned()));
            }
        }
        let ends = match jxse_hop_peers(content, *hops, self.hash) {
            // Neither the memo nor its record of first documents is asked: a look-up
            // (a hash of the document, a probe, a comparison) would cost what these
            // few comparisons do, and such documents would only fill them.
            Some(ends) => Some(ends),
            None => {
                // Seen before from another direction's start: worth keeping for the next.
                let recurs = if self.first_seen.len() >= Self::CAPACITY {
                    self.first_seen.clear();
                    self.first_seen.insert((content.len(), hash));
                    false
                } else {
                    !self.first_seen.insert((content.len(), hash))
                };
                self.memo_router(content, recurs, *hops)
            }
        };
        let peers = ends.as_ref().map(unshared);
        last.0 = ends.map(|(src, dst)| {
            Box::new(HeldRouter {
                len: content.len(),
                hash,
                src,
                dst,
            })
        });
        peers
    }

    /// `keep`: a document the memo misses is kept for the next time; `hops`: the
    /// connection's welcome peers ([`DirRouter`]).
    fn memo_router(
        &mut self,
        content: &[u8],
        keep: bool,
        hops: [Option<&Arc<PeerId>>; 2],
    ) -> Option<SharedEnds> {
        if let Some(hit) = self.routers.get(content) {
            self.hits += 1;
            return Some(hit.clone());
        }
        self.misses += 1;
        let xml = super::wire_str(content).ok()?;
        let peers = parsed_peers(xml, hops, &mut self.shared);
        if keep && content.len() <= Self::MAX_KEY {
            if self.routers.len() >= Self::CAPACITY {
                self.routers.clear();
            }
            self.routers.insert(content.into(), peers.clone());
        }
        Some(peers)
    }
}

/// The memo's peers of `xml` as the scan and the address parse find them, each looked
/// for among the connection's `hops` first, then in the `shared` table.
fn parsed_peers(
    xml: &str,
    hops: [Option<&Arc<PeerId>>; 2],
    shared: &mut SharedPeers,
) -> SharedEnds {
    router_peers_with(xml, |address, find| match find {
        Find::Held => hop_named(hops, address).or_else(|| held_peer(shared, address)),
        Find::Any => shared_checked(shared, address),
    })
}

/// What JXSE writes between the two peers' unique parts (`erm_xml`'s `<Src>` end and
/// `<Dest>` start).
const JXSE_SRC_TO_DEST: &[u8] = b"</Src><Dest>jxta://";

/// [`PeerMemo::memo_router`]'s peers of a document as JXSE writes it from this
/// direction's sender to the other side: [`JXSE_ERM_START`], `jxta://<sender>`,
/// [`JXSE_SRC_TO_DEST`], the other's unique part, then `/` or the end tag. Nearly every
/// direction's first document is one, and comparing the hops' parts where the scan
/// would find them replaces the scan (three `memchr3` calls, the `<Dest>` tag's checks)
/// and the two address parses (~1,500 instructions a document). `None`: not such a
/// document, or not known to be (the general path decides).
///
/// For such a document the scan finds, as `plain_scan` with its JXSE start does,
/// `<Src>`'s text `jxta://<sender>` (word bytes hold no `<`, `&` or CR; nothing to
/// trim), then the `<Dest>` tag, then `<Dest>`'s text up to its first `<`, `&` or CR,
/// which must be `</Dest>`'s `<` (checked here). The source address is then the
/// sender's part, which `hop_named` finds as the first hop; the destination's text
/// starts `jxta://<other>` followed by `/` or nothing, so its address is the other's
/// part (a unique part has no `/`), which `hop_named` finds as the sender if the two
/// are the same peer, else as the other. The bytes compared are ASCII: the document is
/// UTF-8 if the rest is. `jxse_hop_peers_are_the_parse` compares both ways on every
/// one-byte change of such documents.
fn jxse_hop_peers(
    content: &[u8],
    hops: [Option<&Arc<PeerId>>; 2],
    cpu: RouterHash,
) -> Option<SharedEnds> {
    let [Some(sender), Some(other)] = hops else {
        return None;
    };
    let dest = content
        .strip_prefix(JXSE_ERM_START)?
        .strip_prefix(b"jxta://")?
        .strip_prefix(sender.unique().as_bytes())?
        .strip_prefix(JXSE_SRC_TO_DEST)?
        .strip_prefix(other.unique().as_bytes())?;
    if !matches!(dest.first(), Some(b'/' | b'<')) {
        return None;
    }
    let (lt, ascii) = stop_and_ascii(dest, cpu);
    let lt = lt?;
    // `wire_str(dest).is_ok()`, its ASCII check taken from the same pass.
    if !dest[lt..].starts_with(b"</Dest>") || !(ascii || std::str::from_utf8(dest).is_ok()) {
        return None;
    }
    // Equal IDs are equal parts; unequal ones nearly always differ in their hash.
    let dst = if **sender == **other { sender } else { other };
    Some((Some(Arc::clone(sender)), Some(Arc::clone(dst))))
}

/// `(memchr3(b'<', b'&', b'\r', s), s.is_ascii())`: the rest of a JXSE first document
/// after its destination's part (~210 bytes, its first `<` ~90 in) was read twice,
/// `memchr3` (~110 instructions a call, most of them its set-up) then `all_ascii`
/// (~80). Where the CPU has AVX2 (`cpu`), one pass of 32-byte blocks looks for the stop
/// bytes up to the first and ORs every byte for the high bit; the bytes after the last
/// whole block are read as `s`'s last 32, the stops already seen shifted off. Else, or
/// shorter than a block, the two calls (a 16-byte SSE2 pass was no cheaper than they
/// are: docs/performance.md, stop 36, conn30).
/// `stop_and_ascii_is_memchr3_and_is_ascii` compares it with [`stop_and_ascii_bytes`].
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn stop_and_ascii(s: &[u8], cpu: RouterHash) -> (Option<usize>, bool) {
    #[cfg(target_arch = "x86_64")]
    if let (true, Some(last)) = (cpu.avx2, s.last_chunk::<32>()) {
        // SAFETY: `stop_and_ascii_avx2` is a `target_feature(enable = "avx2")`
        // function; calling it is sound when the CPU has AVX2, which `cpu.avx2` says:
        // only `RouterHash::default` sets it, from `is_x86_feature_detected!`.
        return unsafe { stop_and_ascii_avx2(s, last) };
    }
    stop_and_ascii_bytes(s)
}

/// [`stop_and_ascii`] by `memchr3` and `is_ascii`: texts shorter than a block, CPUs
/// without AVX2, and the reference of its test.
fn stop_and_ascii_bytes(s: &[u8]) -> (Option<usize>, bool) {
    (memchr::memchr3(b'<', b'&', b'\r', s), s.is_ascii())
}

/// [`stop_and_ascii`] of `s`, whose last 32 bytes are `last`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn stop_and_ascii_avx2(s: &[u8], last: &[u8; 32]) -> (Option<usize>, bool) {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8,
    };
    // SAFETY: `block` is 32 bytes long: the unaligned load reads inside it.
    let load = |block: &[u8; 32]| unsafe { _mm256_loadu_si256(block.as_ptr().cast::<__m256i>()) };
    let (lt, amp, cr) = (
        _mm256_set1_epi8(b'<' as i8),
        _mm256_set1_epi8(b'&' as i8),
        _mm256_set1_epi8(b'\r' as i8),
    );
    let stops = |v: __m256i| {
        let hit = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(v, lt), _mm256_cmpeq_epi8(v, amp)),
            _mm256_cmpeq_epi8(v, cr),
        );
        _mm256_movemask_epi8(hit) as u32
    };
    let (blocks, rest) = s.as_chunks::<32>();
    let tail = load(last);
    let mut all = tail;
    let mut stop = None;
    let mut next = blocks.len();
    for (i, block) in blocks.iter().enumerate() {
        let v = load(block);
        all = _mm256_or_si256(all, v);
        let m = stops(v);
        if m != 0 {
            stop = Some(32 * i + m.trailing_zeros() as usize);
            next = i + 1;
            break;
        }
    }
    if stop.is_none() && !rest.is_empty() {
        // The last block's first `32 - rest.len()` bytes were looked at above.
        let m = stops(tail) >> (32 - rest.len());
        if m != 0 {
            stop = Some(s.len() - rest.len() + m.trailing_zeros() as usize);
        }
    }
    let all = blocks
        .get(next..)
        .unwrap_or_default()
        .iter()
        .fold(all, |all, block| _mm256_or_si256(all, load(block)));
    (stop, _mm256_movemask_epi8(all) == 0)
}

/// The `(src_peer, dst_peer)` of [`router_fields`], without the hop, service and pipe
/// it also builds (three strings and a peer ID more for every document the memo misses).
#[cfg(test)]
fn router_peers(xml: &str) -> EndPeers {
    router_peers_with(xml, |text, find| match find {
        Find::Held => None,
        Find::Any => PeerId::parse(text),
    })
}

/// What a `peer` function of [`router_peers_with`] is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Find {
    /// The peer whose unique part the text is, only if already held (a held one is
    /// word bytes around a `-`, which every check below passes); nothing made.
    Held,
    /// The peer the text names, checked as [`PeerId::parse`] does.
    Any,
}

/// [`router_peers`] with each peer made by `peer` from its address's peer text: the
/// memo finds most of them in its shared table by their bytes, and a text it holds
/// needs neither the address check nor, for `<Src>`, the search for a path. Each
/// answer is what [`parse_endpoint_address`] and a check of its address (else, for
/// `<Src>`, of the whole text) give (`src_and_dest_peers_are_the_address_parse` compares).
fn router_peers_with<T>(
    xml: &str,
    mut peer: impl FnMut(&str, Find) -> Option<T>,
) -> (Option<T>, Option<T>) {
    const NAMES: [&str; 2] = ["Src", "Dest"];
    let [src, dest] = match plain_root_child_texts(xml, NAMES) {
        Some(texts) => texts.map(|t| t.map(Cow::Borrowed)),
        None => root_child_texts(xml, NAMES).map(|t| t.map(Cow::Owned)),
    };
    let dst = dest.as_deref().and_then(|d| dest_peer(d, &mut peer));
    (src.as_deref().and_then(|s| src_peer(s, &mut peer)), dst)
}

/// The peer of a `<Dest>` text: its address's, if it is an endpoint address.
fn dest_peer<T>(d: &str, peer: &mut impl FnMut(&str, Find) -> Option<T>) -> Option<T> {
    let address = address_of(endpoint_scheme(d)?.1);
    peer(address, Find::Held).or_else(|| {
        if address_ok(address) {
            peer(address, Find::Any)
        } else {
            None
        }
    })
}

/// The peer of a `<Src>` text: its address's if it is an endpoint address, else the
/// whole (trimmed) text's ([`peer_text`]).
fn src_peer<T>(s: &str, peer: &mut impl FnMut(&str, Find) -> Option<T>) -> Option<T> {
    let s = trim(s);
    let Some((_, rest)) = endpoint_scheme(s) else {
        return peer(s, Find::Any);
    };
    // A source is `jxta://<peer>` without a path: held, the rest is its address (a
    // held part has no `/`), found without searching for one.
    if let Some(p) = peer(rest, Find::Held) {
        return Some(p);
    }
    let address = address_of(rest);
    if address_ok(address) {
        peer(address, Find::Any)
    } else {
        peer(s, Find::Any)
    }
}

/// The peer in a `jxta://uuid-…[/service…]` address.
fn peer_of_address(s: &str) -> Option<PeerPart<'_>> {
    PeerId::check(peer_text(s))
}

/// What [`peer_of_address`] checks: the address part of an endpoint address, else the
/// whole text (trimmed).
fn peer_text(s: &str) -> &str {
    let s = trim(s);
    parse_endpoint_address(s).map_or(s, |ep| ep.address)
}

/// `str::trim`, answered by two byte tests for a text that starts and ends with an
/// ASCII graphic character (a router document's addresses do): neither is white space,
/// so `trim` would give the text whole. `str::trim` was ~51 instructions a call, three
/// calls of each direction's first router document. `trim_is_str_trim` compares both.
fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        // An ASCII byte is a whole character, at the end too.
        (Some(first), Some(last)) if first.is_ascii_graphic() && last.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

/// Text of the first element named `names[i]` (local name, any prefix) that is a
/// direct child of the root element. Nested elements of the same name (route
/// advertisements inside JXSE 2.7's ERM carry their own `<Dest>`-like tags) are not
/// taken. Entity and character references are resolved; CDATA kept; surrounding
/// whitespace trimmed. Parsing stops at the first XML error, keeping what was found.
pub fn root_child_texts<const N: usize>(xml: &str, names: [&str; N]) -> [Option<String>; N] {
    let mut found: [Option<String>; N] = std::array::from_fn(|_| None);
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut depth = 0usize;
    // (index into names, text so far) while inside a wanted element.
    let mut current: Option<(usize, String)> = None;
    // A read error ends the scan; what was found so far is kept.
    while let Ok(ev) = reader.read_event() {
        match ev {
            Event::Start(e) => {
                depth += 1;
                if depth == 2 && current.is_none() {
                    let local = e.local_name();
                    if let Some(i) = names.iter().position(|n| *n == local.as_ref()) {
                        if found.get(i).is_some_and(Option::is_none) {
                            current = Some((i, String::new()));
                        }
                    }
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    if let Some((i, text)) = current.take() {
                        if let Some(slot) = found.get_mut(i) {
                            *slot = Some(text.trim().to_string());
                        }
                    }
                }
                depth = depth.saturating_sub(1);
            }
            // `<Dest/>`: present but empty.
            Event::Empty(e) if depth == 1 => {
                let local = e.local_name();
                if let Some(i) = names.iter().position(|n| *n == local.as_ref()) {
                    if let Some(slot) = found.get_mut(i) {
                        slot.get_or_insert_with(String::new);
                    }
                }
            }
            Event::Text(t) => {
                if let Some((_, s)) = current.as_mut() {
                    s.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some((_, s)) = current.as_mut() {
                    s.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, s)) = current.as_mut() {
                    if let Ok(Some(c)) = r.resolve_char_ref() {
                        s.push(c);
                    } else if let Some(v) = quick_xml::escape::resolve_predefined_entity(&r) {
                        s.push_str(v);
                    }
                    // Other entities are never expanded (no DTD processing).
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    found
}

/// XML declarations [`plain_root_child_texts`] accepts (byte for byte) at the very
/// start of a document; any other prolog goes to quick-xml.
const PLAIN_DECLS: [&[u8]; 4] = [
    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
    b"<?xml version=\"1.0\" encoding=\"utf-8\"?>",
    b"<?xml version=\"1.0\"?>",
    b"<?xml version='1.0' encoding='UTF-8'?>",
];

/// Nesting the plain path follows; deeper documents go to quick-xml.
const PLAIN_MAX_DEPTH: usize = 16;

fn plain_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')
}

/// A tag or DOCTYPE name the plain path takes: name bytes only, at most one `:` and
/// not at either end, so that quick-xml's local name is the part after it.
fn plain_name(name: &[u8]) -> bool {
    // One pass: counting the colons, then checking the bytes, went over it twice.
    let mut colons = 0usize;
    for &b in name {
        if !plain_name_byte(b) {
            return false;
        }
        colons += usize::from(b == b':');
    }
    colons <= 1 && name.first().is_some_and(|&b| b != b':') && name.last() != Some(&b':')
}

/// A byte at a time: tag names are a few bytes, where `memchr`'s set-up cost ~50
/// instructions a call.
fn local_name(name: &[u8]) -> &[u8] {
    match name.iter().position(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// [`root_child_texts`] without an XML parser, for the router documents peers send
/// (a quick-xml parse was ~60 % of the cost of a router document, and with many
/// peers the memo cannot hold them all): no `&` or CR outside tags, an optional
/// plain declaration and `<!DOCTYPE name>`, one root, no comments, CDATA or
/// processing instructions, wanted elements holding text only, end tags matching.
/// Other UTF-8 is taken as it is (quick-xml's XML 1.0 texts change only CR), and so
/// are `&` and CR inside tags (no attribute is read here). Attributes
/// are skipped the way quick-xml finds the end of a tag (quotes hide a `>`). For
/// such a document the texts are quick-xml's, trimmed and borrowed; anything else
/// is `None` and quick-xml decides (the tests compare both on every input this
/// path takes, and on mutations of real documents).
///
/// Done once every name is found: quick-xml keeps a text once found and stops at its
/// first error, so nothing after the last wanted element changes what it says (a
/// router document's `<Last>`, `<Fwd/>`, `<Rvs/>` and end tag were half its tags,
/// scanned for every direction's first document).
fn plain_root_child_texts<'x, const N: usize>(
    xml: &'x str,
    names: [&str; N],
) -> Option<[Option<&'x str>; N]> {
    plain_scan(xml, names, true)
}

/// How JXSE 2.5's router documents start (`erm_xml`'s, the real capture's, byte for
/// byte). After these bytes the scan stands in `<Src>`'s text, where the general
/// scan gets through a declaration, a DOCTYPE and two start tags (nine searches,
/// five of them for the root tag's quotes and `>`).
const JXSE_ERM_START: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE jxta:ERM>\n\
<jxta:ERM xml:space=\"preserve\" xmlns:jxta=\"http://jxta.org\">\n<Src>";

/// [`plain_root_child_texts`]; `jxse_start`: a document starting with
/// [`JXSE_ERM_START`] starts the scan after it (the tests compare both ways).
fn plain_scan<'x, const N: usize>(
    xml: &'x str,
    names: [&str; N],
    jxse_start: bool,
) -> Option<[Option<&'x str>; N]> {
    let b = xml.as_bytes();
    let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\n');
    let skip_ws = |mut at: usize| {
        while b.get(at).is_some_and(|&c| ws(c)) {
            at += 1;
        }
        at
    };
    let mut found: [Option<&'x str>; N] = [None; N];
    let mut open: [&[u8]; PLAIN_MAX_DEPTH] = [&[]; PLAIN_MAX_DEPTH];
    let mut depth = 0usize;
    // (index into names, offset where its text starts) inside a wanted element.
    let mut current: Option<(usize, usize)> = None;
    let mut done = false;
    let wanted = |name: &[u8]| {
        let local = local_name(name);
        names.iter().position(|n| n.as_bytes() == local)
    };
    let mut pos = 0;
    if jxse_start && b.starts_with(JXSE_ERM_START) {
        // What the general scan below has found at this point.
        open[0] = b"jxta:ERM";
        open[1] = b"Src";
        depth = 2;
        pos = JXSE_ERM_START.len();
        current = wanted(b"Src").map(|i| (i, pos));
    } else {
        if b.starts_with(b"<?") {
            pos = PLAIN_DECLS.iter().find(|d| b.starts_with(d))?.len();
        }
        pos = skip_ws(pos);
        if let Some(rest) = b[pos..].strip_prefix(b"<!DOCTYPE ") {
            let end = memchr::memchr(b'>', rest)?;
            if !plain_name(&rest[..end]) {
                return None;
            }
            pos = skip_ws(pos + b"<!DOCTYPE ".len() + end + 1);
        }
    }
    loop {
        // Every byte outside a tag is searched here once, `&` and CR with the `<`: a
        // pass of their own (and one for ASCII) went over the whole document, the
        // part after the last wanted element too.
        let lt = if b.get(pos) == Some(&b'<') {
            // Tags side by side (JXSE's `</Src><Dest>`): the `<` is here, a search
            // would set up to find it (~50 instructions).
            pos
        } else {
            match memchr::memchr3(b'<', b'&', b'\r', &b[pos..]) {
                Some(i) if b[pos + i] == b'<' => pos + i,
                Some(_) => return None,
                None => break,
            }
        };
        // Outside the root only whitespace.
        if depth == 0 && !b[pos..lt].iter().all(|&c| ws(c)) {
            return None;
        }
        match b.get(lt + 1)? {
            b'/' => {
                depth = depth.checked_sub(1)?;
                // The open element's name and `>`: that `>` is the first one, as
                // names hold none, so the search would end there too.
                let expected = lt + 2 + open[depth].len();
                let end = if b.get(expected) == Some(&b'>')
                    && b.get(lt + 2..expected) == Some(open[depth])
                {
                    expected
                } else {
                    lt + 2 + memchr::memchr(b'>', &b[lt + 2..])?
                };
                let name = &b[lt + 2..end];
                if open[depth] != name {
                    return None;
                }
                if depth == 1 {
                    if let Some((i, start)) = current.take() {
                        found[i] = Some(trim(xml.get(start..lt)?));
                        if found.iter().all(Option::is_some) {
                            return Some(found);
                        }
                    }
                }
                done = depth == 0;
                pos = end + 1;
            }
            b'?' | b'!' => return None,
            _ => {
                if done || current.is_some() {
                    return None;
                }
                let end = lt + 1 + tag_end(&b[lt + 1..])?;
                let content = &b[lt + 1..end];
                let (content, empty) = match content.strip_suffix(b"/") {
                    Some(c) => (c, true),
                    None => (content, false),
                };
                let name_len = content.iter().position(|&c| ws(c)).unwrap_or(content.len());
                let name = &content[..name_len];
                if !plain_name(name) {
                    return None;
                }
                if empty {
                    if depth == 1 {
                        if let Some(i) = wanted(name) {
                            found[i].get_or_insert("");
                            if found.iter().all(Option::is_some) {
                                return Some(found);
                            }
                        }
                    }
                    done = depth == 0;
                } else {
                    if depth == PLAIN_MAX_DEPTH {
                        return None;
                    }
                    open[depth] = name;
                    depth += 1;
                    if depth == 2 {
                        current = wanted(name)
                            .filter(|&i| found[i].is_none())
                            .map(|i| (i, end + 1));
                    }
                }
                pos = end + 1;
            }
        }
    }
    (done && b[pos..].iter().all(|&c| ws(c))).then_some(found)
}

/// Where a start tag ends (its `>`), as quick-xml finds it: a `>` inside a quoted
/// attribute value does not end it.
fn tag_end(b: &[u8]) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for i in memchr::memchr3_iter(b'>', b'\'', b'"', b) {
        let c = b[i];
        match quote {
            None if c == b'>' => return Some(i),
            None => quote = Some(c),
            Some(q) if q == c => quote = None,
            Some(_) => {}
        }
    }
    None
}

/// Builds an `EndpointRouterMsg` document as JXSE 2.5 writes it (byte for byte the
/// same as in the real capture): `<Dest>` is `jxta://<dest>/<service_path>`.
pub fn erm_xml(src: &PeerId, dest: &PeerId, service_path: &str, last: &PeerId) -> String {
    let service_path = service_path.trim_start_matches('/');
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE jxta:ERM>\n\
         <jxta:ERM xml:space=\"preserve\" xmlns:jxta=\"http://jxta.org\">\n\
         <Src>jxta://{}</Src><Dest>jxta://{}/{}</Dest><Last>jxta://{}</Last><Fwd/><Rvs/></jxta:ERM>\n",
        src.unique(),
        dest.unique(),
        escape_text(service_path),
        last.unique()
    )
}

fn escape_text(s: &str) -> Cow<'_, str> {
    if s.contains(['&', '<', '>']) {
        Cow::Owned(
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;"),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// `<proto>://<proto-addr>[/<service-name>[/<service-param>]]`, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointAddress<'a> {
    pub protocol: &'a str,
    pub address: &'a str,
    pub service: Option<&'a str>,
    /// Everything after the service name (may itself contain `/`, as in
    /// `JxtaPropagate/jxta-NetGroup`).
    pub param: Option<&'a str>,
}

pub fn parse_endpoint_address(s: &str) -> Option<EndpointAddress<'_>> {
    let (protocol, rest) = endpoint_scheme(s)?;
    let (address, path) = match split_at_slash(rest) {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    if !address_ok(address) {
        return None;
    }
    let (service, param) = match path {
        None => (None, None),
        Some(p) => match split_at_slash(p) {
            Some((s, q)) => (Some(s), Some(q)),
            None => (Some(p), None),
        },
    };
    Some(EndpointAddress {
        protocol,
        address,
        service: service.filter(|s| !s.is_empty()),
        param: param.filter(|s| !s.is_empty()),
    })
}

/// The protocol of endpoint address `s` if it is a good one, and what follows its
/// `://`.
fn endpoint_scheme(s: &str) -> Option<(&str, &str)> {
    match s.strip_prefix("jxta://") {
        // `split_scheme`'s cut for JXTA's own addresses (their first `:` is the
        // scheme's), without its search; the protocol is a good one.
        Some(rest) => Some(("jxta", rest)),
        None => {
            let (protocol, rest) = split_scheme(s)?;
            let good = !protocol.is_empty()
                && protocol
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
            good.then_some((protocol, rest))
        }
    }
}

/// The address part of what follows an endpoint address's `://` (up to its first
/// `/`), not yet checked.
fn address_of(rest: &str) -> &str {
    split_at_slash(rest).map_or(rest, |(address, _)| address)
}

/// Whether an endpoint address's address part is a good one: not empty, no ASCII
/// white space or control (the bytes up to the space, and DEL). One pass without an
/// early exit (a vector at a time): the address is a peer ID of some 80 bytes in
/// every router document a connection's direction sends first.
fn address_ok(address: &str) -> bool {
    !address.is_empty()
        && !address
            .bytes()
            .fold(false, |bad, b| bad | (b <= b' ') | (b == 0x7f))
}

/// `s.split_once('/')` by `memchr`: the character searcher `split_once` sets up cost
/// as much as the rest of the address parse.
fn split_at_slash(s: &str) -> Option<(&str, &str)> {
    let i = memchr::memchr(b'/', s.as_bytes())?;
    // `/` is ASCII: both cuts are character boundaries.
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// `s.split_once("://")`: a substring search sets up a two-way searcher first, which
/// cost more than the rest of the address parse on every router document the memo
/// misses.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = memchr::memchr(b':', &b[from..]).map(|i| from + i) {
        if b[i + 1..].starts_with(b"//") {
            // `:` and `/` are ASCII: both cuts are character boundaries.
            return Some((s.get(..i)?, s.get(i + 3..)?));
        }
        from = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jxta::framing::{encode_package, parse_package_header, HeaderOrder, HeaderParse};
    use crate::jxta::message::{decode_message, encode_message_v0, OwnedElement};

    proptest::proptest! {
        /// ASCII and Unicode white space (NEL, no-break, line separator, ideographic),
        /// controls, DEL, graphic ASCII and other characters at either end: `str::trim`'s
        /// answer.
        #[test]
        fn trim_is_str_trim(
            chars in proptest::collection::vec(
                proptest::sample::select(vec![
                    ' ', '\t', '\n', '\r', '\u{b}', '\u{c}', '\u{0}', '\u{7f}', '\u{85}',
                    '\u{a0}', '\u{2028}', '\u{3000}', 'a', '<', '~', '!', '/', '\u{e9}',
                ]),
                0..8,
            ),
        ) {
            let s: String = chars.into_iter().collect();
            proptest::prop_assert_eq!(trim(&s), s.trim());
        }
    }

    const CB_EDGE: &str =
        "urn:jxta:cbid-59616261646162614E50472050325033AA00BB11CC22DD33EE44FF5503";
    const CB_RDV: &str = "urn:jxta:cbid-59616261646162614E504720503250331122334455667788990011AA03";
    const PIPE: &str =
        "urn:jxta:uuid-59616261646162614E504720503250336A7873652D70496EA770AF6E672D504904";

    #[test]
    fn endpoint_addresses() {
        let a = parse_endpoint_address(
            "tcp://224.0.1.85:1234/EndpointService:jxta-NetGroup/JxtaPropagate/jxta-NetGroup",
        )
        .unwrap();
        assert_eq!(
            a,
            EndpointAddress {
                protocol: "tcp",
                address: "224.0.1.85:1234",
                service: Some("EndpointService:jxta-NetGroup"),
                param: Some("JxtaPropagate/jxta-NetGroup"),
            }
        );
        let dest = format!("jxta://uuid-AB03/PipeService/{PIPE}");
        let d = parse_endpoint_address(&dest).unwrap();
        assert_eq!(
            (d.address, d.service, d.param),
            ("uuid-AB03", Some("PipeService"), Some(PIPE))
        );
        let bare = parse_endpoint_address("jxta://uuid-AB03").unwrap();
        assert_eq!((bare.service, bare.param), (None, None));
        for bad in ["", "tcp:/x", "://x", "tcp://", "t p://x", "tcp:///svc"] {
            assert!(parse_endpoint_address(bad).is_none(), "{bad:?}");
        }
    }

    /// A JXSE 2.7-style routed pipe message, built from the spec: content-length
    /// first, `cbid-` peer IDs, an untyped `EndpointRouterMsg-fingerprint`, the
    /// initiator's ephemeral port in `EndpointDestinationAddress`, and an ERM with
    /// prefixes, whitespace and extra (nested) elements.
    #[test]
    fn jxse27_vector() {
        let erm = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE jxta:ERM>\n\
             <jxta:ERM xmlns:jxta=\"http://jxta.org\" xml:space=\"preserve\">\n  \
             <Src>\n jxta://{src}\n</Src>\n  <Dest>jxta://{dst}/PipeService/{PIPE}</Dest>\n  \
             <Last>jxta://{src}</Last>\n  <Fwd><jxta:RA><Dest>jxta://uuid-FF03</Dest></jxta:RA></Fwd>\n  \
             <Rvs/>\n  <Extra a=\"1\">x &amp; y</Extra>\n</jxta:ERM>\n",
            src = &CB_EDGE["urn:jxta:".len()..],
            dst = &CB_RDV["urn:jxta:".len()..],
        );
        let els = vec![
            OwnedElement::new(
                "jim",
                "JimMessage",
                Some("text/xml;charset=UTF-8"),
                "<PING/>",
            ),
            OwnedElement::new(
                "jxta",
                "EndpointRouterMsg",
                Some("text/xml;charset=UTF-8"),
                erm,
            ),
            OwnedElement::new(
                "jxta",
                "EndpointRouterMsg-fingerprint",
                None,
                vec![0x5a; 20],
            ),
            OwnedElement::new(
                "jxta",
                "EndpointSourceAddress",
                Some("text/plain;charset=UTF-8"),
                "tcp://127.0.0.1:9701",
            ),
            OwnedElement::new(
                "jxta",
                "EndpointDestinationAddress",
                Some("text/plain;charset=UTF-8"),
                "tcp://127.0.0.1:53412/EndpointService:jxta-NetGroup/EndpointRouter",
            ),
        ];
        let body = encode_message_v0(&els);
        let mut framed = Vec::new();
        encode_package(&body, HeaderOrder::LengthFirst, None, &mut framed);
        assert_eq!(&framed[1..15], b"content-length");
        let HeaderParse::Complete(h) = parse_package_header(&framed, 1 << 20) else {
            panic!()
        };
        let msg = decode_message(&framed[h.header_len..]).unwrap();
        assert_eq!(msg.elements.len(), 5);
        assert_eq!(msg.elements[2].mime, None);
        let a = addressing(&msg);
        assert_eq!(a.src_peer, PeerId::parse(CB_EDGE));
        assert_eq!(a.dst_peer, PeerId::parse(CB_RDV));
        assert_eq!(a.last_hop, PeerId::parse(CB_EDGE));
        assert_eq!(a.service.as_deref(), Some("PipeService"));
        assert_eq!(a.pipe_id.as_deref(), Some(PIPE));
        assert_eq!(a.service_param.as_deref(), Some(PIPE));
    }

    #[test]
    fn propagate_and_multicast_addressing() {
        let wire = format!(
            "<?xml version=\"1.0\"?><jxta:JxtaWire xmlns:jxta=\"http://jxta.org\">\
             <PipeId> {PIPE} </PipeId><MsgId>m1</MsgId><TTL>2</TTL></jxta:JxtaWire>"
        );
        let els = vec![
            OwnedElement::new("", "payload", None, "x"),
            OwnedElement::new("jxta", "JxtaWireHeader", Some("text/xml"), wire),
            OwnedElement::new("jxta", "EndpointHeaderSrcPeer", Some("text/plain"), CB_EDGE),
            OwnedElement::new(
                "jxta",
                "EndpointDestinationAddress",
                Some("text/plain"),
                "tcp://224.0.1.85:1234/EndpointService:jxta-NetGroup/JxtaPropagate/jxta-NetGroup",
            ),
        ];
        let body = encode_message_v0(&els);
        let a = addressing(&decode_message(&body).unwrap());
        assert_eq!(a.pipe_id.as_deref(), Some(PIPE));
        assert_eq!(a.header_src_peer, PeerId::parse(CB_EDGE));
        assert_eq!(a.src_peer, None);
        assert_eq!(a.service.as_deref(), Some("EndpointService:jxta-NetGroup"));
        assert_eq!(
            a.service_param.as_deref(),
            Some("JxtaPropagate/jxta-NetGroup")
        );
    }

    #[test]
    fn broken_erm_is_best_effort() {
        for xml in [
            "<jxta:ERM><Src>jxta://uuid-AB03</Src><Dest>",
            "not xml at all",
            "<a><Src>&bogus;</Src></a>",
        ] {
            let body =
                encode_message_v0(&[OwnedElement::new("jxta", "EndpointRouterMsg", None, xml)]);
            let a = addressing(&decode_message(&body).unwrap());
            assert_eq!(a.dst_peer, None);
        }
        let [src] = root_child_texts("<r><Src>jxta://uuid-AB03</Src><Dest>", ["Src"]);
        assert_eq!(src.as_deref(), Some("jxta://uuid-AB03"));
        let [t] = root_child_texts("<r><T>a&lt;&#x42;<![CDATA[<c>]]></T></r>", ["T"]);
        assert_eq!(t.as_deref(), Some("a<B<c>"));
    }
    /// What the plain path says, as `root_child_texts` would say it.
    fn plain_owned(xml: &str) -> Option<[Option<String>; 4]> {
        plain_owned_of(xml, ROUTER_CHILDREN)
    }

    fn plain_owned_of<const N: usize>(xml: &str, names: [&str; N]) -> Option<[Option<String>; N]> {
        plain_root_child_texts(xml, names).map(|t| t.map(|o| o.map(str::to_string)))
    }

    /// The names `router_peers` asks for: found before the document's end, so the
    /// plain path answers without scanning the rest.
    const END_NAMES: [&str; 2] = ["Src", "Dest"];

    /// Router documents as peers write them: JXSE 2.5 (this crate's `erm_xml`, byte
    /// for byte the real capture's layout), JXSE 2.7 with a route advertisement in
    /// `<Fwd>` (nested elements, attributes, a `>` in a quoted value), JXTA 1.x.
    fn router_documents() -> Vec<String> {
        let a = PeerId::parse(CB_EDGE).unwrap();
        let b = PeerId::parse(CB_RDV).unwrap();
        vec![
            erm_xml(&a, &b, "PipeService/urn:jxta:uuid-AB04", &a),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE jxta:ERM>\n\
                 <jxta:ERM xmlns:jxta=\"http://jxta.org\" note='a>b'>\n\
                 \t<Src>\n\t\tjxta://{u}\n\t</Src>\n<Dest>jxta://{v}/EndpointService:jxta-NetGroup/PeerView</Dest>\n\
                 <Last>jxta://{u}</Last>\n<Fwd><jxta:RA type=\"jxta:RA\"><Dst><jxta:APA>\
                 <EA>tcp://10.0.0.1:9701</EA></jxta:APA></Dst><Hops/></jxta:RA></Fwd>\n<Rvs/>\n</jxta:ERM>\n",
                u = a.unique(),
                v = b.unique()
            ),
            format!(
                "<?xml version=\"1.0\"?><JxtaEndpointRouter><Src>jxta://{u}</Src>\
                 <Dest>jxta://{v}</Dest><LastHop>jxta://{u}</LastHop><Dest>ignored</Dest></JxtaEndpointRouter>",
                u = a.unique(),
                v = b.unique()
            ),
            "<r><Src/><Dest></Dest></r>".to_string(),
        ]
    }

    #[test]
    fn plain_router_path_takes_real_documents() {
        for xml in router_documents() {
            let plain = plain_owned(&xml);
            assert!(plain.is_some(), "plain path refused {xml:?}");
            assert_eq!(
                plain.unwrap(),
                root_child_texts(&xml, ROUTER_CHILDREN),
                "{xml:?}"
            );
        }
    }

    /// Once every wanted name is found the rest is not read: a document cut or broken
    /// after it says what quick-xml says (which stops at the break, keeping what it
    /// found), and one broken before it is still quick-xml's to read.
    #[test]
    fn the_plain_path_stops_at_the_last_wanted_element() {
        for xml in [
            "<r><Src>jxta://uuid-AB03</Src><Dest>jxta://uuid-CD03/S</Dest><Last>",
            "<r><Src>a</Src><Dest/><x></y></r>",
            "<r><Dest> b </Dest><Src>a</Src>&bogus;",
        ] {
            let plain = plain_owned_of(xml, END_NAMES);
            assert!(plain.is_some() || xml.contains('&'), "{xml:?}");
            if let Some(plain) = plain {
                assert_eq!(plain, root_child_texts(xml, END_NAMES), "{xml:?}");
            }
            assert!(plain_owned(xml).is_none(), "{xml:?}");
        }
        assert_eq!(
            plain_owned_of("<r><Src>a</Src><Dest>b</Dest><Last>", END_NAMES),
            Some([Some("a".to_string()), Some("b".to_string())])
        );
        assert!(plain_owned_of("<r><Src>a</Src><x></y><Dest>b</Dest></r>", END_NAMES).is_none());
    }

    /// The scan started after [`JXSE_ERM_START`] says what the general scan says, for
    /// every set of names the router code asks.
    fn assert_jxse_start_is_the_general_scan(xml: &str) {
        assert_eq!(
            plain_scan(xml, ROUTER_CHILDREN, true),
            plain_scan(xml, ROUTER_CHILDREN, false),
            "{xml:?}"
        );
        assert_eq!(
            plain_scan(xml, END_NAMES, true),
            plain_scan(xml, END_NAMES, false),
            "{xml:?}"
        );
        assert_eq!(
            plain_scan(xml, ["Dest"], true),
            plain_scan(xml, ["Dest"], false),
            "{xml:?}"
        );
    }

    /// JXSE 2.5's documents take the shortcut (and say what quick-xml says, with the
    /// other tests).
    #[test]
    fn jxse_documents_start_after_their_known_bytes() {
        let xml = &router_documents()[0];
        assert!(xml.as_bytes().starts_with(JXSE_ERM_START));
        assert!(plain_scan(xml, END_NAMES, true).is_some());
        assert_jxse_start_is_the_general_scan(xml);
    }

    /// Every one-byte deletion, replacement or insertion (with the bytes that change
    /// XML structure) of the real documents: whenever the plain path answers, quick-xml
    /// says the same.
    #[test]
    fn plain_router_path_agrees_with_quick_xml_on_mutations() {
        const BYTES: &[u8] = b"<>/?!\"'&:= \t\r\nxS-";
        let mut taken = 0usize;
        let mut refused = 0usize;
        let mut taken_end = 0usize;
        let mut check = |bytes: Vec<u8>| {
            let Ok(xml) = String::from_utf8(bytes) else {
                return;
            };
            match plain_owned(&xml) {
                Some(plain) => {
                    taken += 1;
                    assert_eq!(plain, root_child_texts(&xml, ROUTER_CHILDREN), "{xml:?}");
                }
                None => refused += 1,
            }
            if let Some(plain) = plain_owned_of(&xml, END_NAMES) {
                taken_end += 1;
                assert_eq!(plain, root_child_texts(&xml, END_NAMES), "{xml:?}");
            }
            assert_jxse_start_is_the_general_scan(&xml);
        };
        for xml in router_documents() {
            let doc = xml.as_bytes();
            for i in 0..=doc.len() {
                if i < doc.len() {
                    let mut d = doc.to_vec();
                    d.remove(i);
                    check(d);
                }
                for &c in BYTES {
                    let mut d = doc.to_vec();
                    d.insert(i, c);
                    check(d);
                    if i < doc.len() {
                        let mut d = doc.to_vec();
                        d[i] = c;
                        check(d);
                    }
                }
                // Non-ASCII (in texts, names, attribute values, outside the root),
                // inserted and in place of a byte.
                let (head, tail) = doc.split_at(i);
                check([head, "\u{e9}".as_bytes(), tail].concat());
                if let Some(tail) = tail.get(1..) {
                    check([head, "\u{a0}".as_bytes(), tail].concat());
                }
            }
        }
        // Both sides exercised: most mutations keep a plain document, many do not.
        assert!(
            taken > 1000 && refused > 1000,
            "taken {taken}, refused {refused}"
        );
        // Mutations after `</Dest>` leave `Src` and `Dest` plain: answered early.
        assert!(
            taken_end > taken + 1000,
            "taken {taken}, with the end peers' names {taken_end}"
        );
    }

    /// Messages of router elements (both peers, a destination only, none, broken),
    /// header source peers and other elements, in every order of up to three: the
    /// memo's end peers, with and without a direction, are [`addressing`]'s (its source
    /// else the header's), however early it stops.
    #[test]
    fn peers_are_the_addressing_in_any_element_order() {
        let a = PeerId::parse(CB_EDGE).unwrap();
        let b = PeerId::parse(CB_RDV).unwrap();
        let both = erm_xml(&a, &b, "EndpointService/x", &a);
        let dest_only = format!("<jxta:ERM><Dest>jxta://{}</Dest></jxta:ERM>", b.unique());
        let src_only = format!("<jxta:ERM><Src>jxta://{}</Src></jxta:ERM>", b.unique());
        let els = [
            OwnedElement::new("jxta", ERM_NAME, None, both.as_str()),
            OwnedElement::new("jxta", ERM_NAME_1X, None, erm_xml(&b, &a, "", &b)),
            OwnedElement::new("jxta", ERM_NAME, None, dest_only),
            OwnedElement::new("jxta", ERM_NAME, None, src_only),
            OwnedElement::new("jxta", ERM_NAME, None, "<jxta:ERM/>"),
            OwnedElement::new("jxta", ERM_NAME, None, vec![0xff, 0xfe]),
            OwnedElement::new("jxta", HEADER_SRC_PEER, None, CB_RDV),
            OwnedElement::new("jxta", HEADER_SRC_PEER, None, CB_EDGE),
            OwnedElement::new("jxta", SRC_ADDRESS, None, "tcp://127.0.0.1:9702"),
            OwnedElement::new("", ERM_NAME, None, both.as_str()),
        ];
        // The welcome peers of a connection from `a` to `b`: `both` is then the document
        // JXSE writes between them, answered by `jxse_hop_peers` as a first document.
        let (hop_a, hop_b) = (Arc::new(a.clone()), Arc::new(b.clone()));
        let mut memo = PeerMemo::default();
        let mut orders: Vec<Vec<usize>> = (0..els.len()).map(|i| vec![i]).collect();
        for _ in 0..2 {
            let longer: Vec<Vec<usize>> = orders
                .iter()
                .filter(|o| o.len() == orders.last().map_or(0, Vec::len))
                .flat_map(|o| (0..els.len()).map(move |i| [o.as_slice(), &[i]].concat()))
                .collect();
            orders.extend(longer);
        }
        for order in orders {
            let picked: Vec<OwnedElement> = order.iter().map(|&i| els[i].clone()).collect();
            let body = encode_message_v0(&picked);
            let msg = decode_message(&body).unwrap();
            let a = addressing(&msg);
            let want = (a.src_peer.or(a.header_src_peer), a.dst_peer);
            let mut last = LastRouter::default();
            assert_eq!(memo.peers(&msg, None), want, "{order:?}");
            for _ in 0..2 {
                let got = memo.peers(&msg, Some(&mut DirRouter::new(&mut last)));
                assert_eq!(got, want, "{order:?}");
            }
            let mut last = LastRouter::default();
            for _ in 0..2 {
                let mut dir = DirRouter {
                    last: &mut last,
                    hops: [Some(&hop_a), Some(&hop_b)],
                };
                assert_eq!(
                    memo.peers(&msg, Some(&mut dir)),
                    want,
                    "{order:?} with hops"
                );
            }
        }
    }

    /// A message carrying one `EndpointRouterMsg` element of `xml`.
    fn erm_body(xml: &str) -> Vec<u8> {
        encode_message_v0(&[OwnedElement::new("jxta", ERM_NAME, Some("text/xml"), xml)])
    }

    /// A direction's last router document answers only for the same document: the same
    /// length with other peers (one byte of a peer ID changed) is parsed again, and every
    /// answer is what parsing gives.
    #[test]
    fn last_router_answers_only_for_equal_bytes() {
        let a = PeerId::parse(CB_EDGE).unwrap();
        let b = PeerId::parse(CB_RDV).unwrap();
        let first = erm_xml(&a, &b, "PipeService/urn:jxta:uuid-AB04", &a);
        let other = erm_xml(&b, &a, "PipeService/urn:jxta:uuid-AB04", &b);
        assert_eq!(first.len(), other.len());
        let mut memo = PeerMemo::default();
        let mut last = LastRouter::default();
        for (i, xml) in [&first, &first, &other, &other, &first]
            .into_iter()
            .enumerate()
        {
            let body = erm_body(xml);
            let msg = decode_message(&body).unwrap();
            let got = memo.peers(&msg, Some(&mut DirRouter::new(&mut last)));
            assert_eq!(got, router_peers(xml), "message {i}");
            assert_eq!(got, memo.peers(&msg, None), "message {i}: the memo agrees");
        }
        // Equal to the last one: messages 1 and 3; the others went to the memo.
        assert_eq!(memo.direction_hits, 2);
        assert_eq!(memo.hits + memo.misses, 3 + 5);
    }

    /// Documents that differ (here in the service path) but name the same peers give
    /// those peers as one copy of their ID text, whichever holder keeps them.
    #[test]
    fn documents_naming_the_same_peers_share_their_ids() {
        let a = PeerId::parse(CB_EDGE).unwrap();
        let b = PeerId::parse(CB_RDV).unwrap();
        let mut memo = PeerMemo::default();
        let mut got = Vec::new();
        for service in ["PipeService/urn:jxta:uuid-AB04", "EndpointService/x"] {
            let xml = erm_xml(&a, &b, service, &a);
            let body = erm_body(&xml);
            let msg = decode_message(&body).unwrap();
            let peers = memo.peers(&msg, Some(&mut DirRouter::new(&mut LastRouter::default())));
            assert_eq!(peers, router_peers(&xml));
            got.push(peers);
        }
        assert_eq!(memo.misses, 2);
        let ptr = |p: &Option<PeerId>| p.as_ref().map(|id| id.as_str().as_ptr());
        assert_eq!(ptr(&got[0].0), ptr(&got[1].0));
        assert_eq!(ptr(&got[0].1), ptr(&got[1].1));
        assert!(ptr(&got[0].0).is_some() && ptr(&got[0].1).is_some());
    }

    /// Every direction answers its repeated document by itself, however many there are
    /// (more than the memo holds, and more than a budget of held documents allowed:
    /// 20,000 documents of ~420 bytes), and holds a note of fixed size for it.
    #[test]
    fn every_direction_answers_its_repeated_document() {
        let a = PeerId::parse(CB_EDGE).unwrap();
        let b = PeerId::parse(CB_RDV).unwrap();
        let n = 20_000;
        let mut memo = PeerMemo::default();
        let mut dirs: Vec<LastRouter> = (0..n).map(|_| LastRouter::default()).collect();
        for round in 0..2 {
            for (i, d) in dirs.iter_mut().enumerate() {
                let xml = erm_xml(&a, &b, &format!("PipeService/urn:jxta:uuid-{i:05X}"), &a);
                let body = erm_body(&xml);
                let msg = decode_message(&body).unwrap();
                let got = memo.peers(&msg, Some(&mut DirRouter::new(d)));
                assert_eq!(got, router_peers(&xml), "{round} {i}");
            }
        }
        assert!(n > PeerMemo::CAPACITY);
        assert_eq!((memo.direction_hits, memo.misses), (n as u64, n as u64));
        // Each started one direction only: none was copied into the memo.
        assert!(memo.routers.is_empty());
        assert!(memo.first_seen.len() <= PeerMemo::CAPACITY);
        assert!(dirs.iter().all(|d| d.0.is_some()));
        // jemalloc's 32-byte class (two `PeerId`s inline took it to 64).
        assert!(std::mem::size_of::<HeldRouter>() <= 32);
    }

    /// A direction's first document enters the memo once another direction started
    /// with it too, and from then on the memo answers it for a third; a datagram's
    /// (no direction) enters at once. Every answer is the document's own peers.
    #[test]
    fn a_document_enters_the_memo_once_two_directions_started_with_it() {
        let a = PeerId::parse(CB_EDGE).unwrap();
        let b = PeerId::parse(CB_RDV).unwrap();
        let xml = erm_xml(&a, &b, "PipeService/urn:jxta:uuid-AB04", &a);
        let msg_body = erm_body(&xml);
        let msg = decode_message(&msg_body).unwrap();
        let mut memo = PeerMemo::default();
        let mut dirs: Vec<LastRouter> = (0..3).map(|_| LastRouter::default()).collect();
        let mut kept = Vec::new();
        for d in &mut dirs {
            assert_eq!(
                memo.peers(&msg, Some(&mut DirRouter::new(d))),
                router_peers(&xml)
            );
            kept.push((memo.routers.len(), memo.hits, memo.misses));
        }
        assert_eq!(kept, [(0, 0, 1), (1, 0, 2), (1, 1, 2)]);

        let udp = erm_xml(&b, &a, "EndpointService/x", &b);
        let udp_body = erm_body(&udp);
        let msg = decode_message(&udp_body).unwrap();
        assert_eq!(memo.peers(&msg, None), router_peers(&udp));
        assert_eq!((memo.routers.len(), memo.misses), (2, 3));
        assert_eq!(memo.peers(&msg, None), router_peers(&udp));
        assert_eq!(memo.hits, 2);
    }

    /// The AES path's hash of every length from [`AES_FROM`] to four chunks and more
    /// (every count of the rest's whole blocks, with and without a partial one): every
    /// one-byte change (low bit, high bit, whole byte) and every swap of two unequal
    /// 16-byte blocks changes it; the same bytes at any alignment hash alike. Fails
    /// when a byte is left out (the rest's blocks, the last partial block) or when the
    /// lanes are folded symmetrically.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn aes_router_hash_sees_every_byte() {
        if !(std::is_x86_feature_detected!("aes") && std::is_x86_feature_detected!("avx")) {
            eprintln!("SKIPPED: no AES or AVX on this CPU, the AES router hash is never used");
            return;
        }
        let hash = |v: &[u8]| {
            // SAFETY: the CPU has AES and AVX (checked above).
            unsafe { router_hash_aes(v) }
        };
        let mut x: u32 = 0x9e37_79b9;
        let base: Vec<u8> = (0..400)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut buf = vec![0u8; 420];
        for len in AES_FROM..=300 {
            let doc = &base[..len];
            let h = hash(doc);
            assert_eq!(h, RouterHash::default().of(doc), "{len}");
            for shift in 1..16 {
                buf[shift..shift + len].copy_from_slice(doc);
                assert_eq!(hash(&buf[shift..shift + len]), h, "{len} {shift}");
            }
            let mut changed = doc.to_vec();
            for i in 0..len {
                for flip in [1u8, 0x80, 0xff] {
                    changed[i] ^= flip;
                    assert_ne!(hash(&changed), h, "{len} {i} {flip}");
                    changed[i] ^= flip;
                }
            }
            for i in (0..len / 16).map(|i| 16 * i) {
                for j in (i + 16..len / 16 * 16).step_by(16) {
                    let mut swapped = doc.to_vec();
                    let (head, tail) = swapped.split_at_mut(j);
                    head[i..i + 16].swap_with_slice(&mut tail[..16]);
                    if swapped != doc {
                        assert_ne!(hash(&swapped), h, "{len} {i} {j}");
                    }
                }
            }
        }
    }

    /// Documents whose `<Src>` and `<Dest>` are address-ish pieces, the hops' IDs among
    /// them: with the connection's hops given, the memo's peers are those parsing
    /// gives, and a text that is a hop's unique part is that hop itself.
    #[test]
    fn hops_name_the_peers_parsing_names() {
        let hop = |t: &str| Arc::new(PeerId::parse(t).expect("a valid peer ID"));
        let (a, b) = (hop("uuid-AB03"), hop("urn:jxta:cbid-CD03"));
        let pieces = [
            "jxta://",
            "jx ta://",
            "uuid-AB03",
            "UUID-AB03",
            "uuid-AB0",
            "cbid-CD03",
            "urn:jxta:uuid-AB03",
            "uuid-9903",
            "/PipeService/urn:jxta:uuid-AB04",
            " ",
            "\t",
            "\u{7f}",
            "\u{e9}",
            "",
        ];
        let mut texts = Vec::new();
        for x in pieces {
            for y in pieces {
                texts.push(format!("{x}{y}"));
            }
        }
        let mut from_hop = 0;
        for hops in [[Some(&a), Some(&b)], [Some(&b), None], [None, Some(&a)]] {
            for (i, s) in texts.iter().enumerate() {
                let d = &texts[(i * 7) % texts.len()];
                for (s, d) in [(s, d), (d, s)] {
                    let xml = format!("<jxta:ERM xmlns:jxta=\"http://jxta.org\"><Src>{s}</Src><Dest>{d}</Dest></jxta:ERM>");
                    let mut memo = PeerMemo::default();
                    let got = memo.memo_router(xml.as_bytes(), false, hops);
                    assert_eq!(
                        got.as_ref().map(unshared),
                        Some(router_peers(&xml)),
                        "{xml}"
                    );
                    let (gs, gd) = got.unwrap_or_default();
                    for p in [gs, gd].iter().flatten() {
                        if hops.iter().flatten().any(|h| Arc::ptr_eq(h, p)) {
                            from_hop += 1;
                        }
                    }
                }
            }
        }
        assert!(from_hop > 0);
    }

    /// Lengths 0 to 100 at two alignments, with the AVX2 pass (where the CPU has it)
    /// and without, no stop or a stop byte (`<`, `&`, CR) at
    /// every place, a second one 5 or 17 bytes after it, a byte of 0x80 or more (or
    /// 0x7f, 0x3c's neighbours) at every place: `memchr3`'s and `is_ascii`'s answers.
    #[test]
    fn stop_and_ascii_is_memchr3_and_is_ascii() {
        let no_avx2 = RouterHash {
            avx2: false,
            ..RouterHash::default()
        };
        let mut checked = 0;
        for len in 0..=100usize {
            for align in 0..2 {
                let base: Vec<u8> = (0..len + align).map(|i| b'a' + (i % 26) as u8).collect();
                let mut cases = vec![base.clone()];
                for at in align..len + align {
                    for b in [b'<', b'&', b'\r', 0x80, 0xff, 0x7f, b';', b'=', b'\n'] {
                        let mut t = base.clone();
                        t[at] = b;
                        cases.push(t.clone());
                        for gap in [5, 17] {
                            if at + gap < len + align {
                                let mut u = t.clone();
                                u[at + gap] = if b == b'<' { 0xc3 } else { b'<' };
                                cases.push(u);
                            }
                        }
                    }
                }
                for t in &cases {
                    let s = &t[align..];
                    let want = stop_and_ascii_bytes(s);
                    for cpu in [RouterHash::default(), no_avx2] {
                        assert_eq!(stop_and_ascii(s, cpu), want, "{s:?}");
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000);
    }

    /// JXSE's documents between two hops, and every one-byte change of them (in place,
    /// inserted, removed; the bytes the scan stops at and broken UTF-8 among them):
    /// where the shortcut answers, it gives the general path's peers, the very hops it
    /// finds; it answers for the documents as JXSE writes them, with either hop's part a
    /// prefix of the other's, and for the same peer at both ends (one held copy or two).
    #[test]
    fn jxse_hop_peers_are_the_parse() {
        let hop = |t: &str| Arc::new(PeerId::parse(t).expect("a valid peer ID"));
        let (a, b) = (hop(CB_EDGE), hop(CB_RDV));
        let (short, long) = (hop("uuid-AB0"), hop("uuid-AB03"));
        let same = |x: &Option<Arc<PeerId>>, y: &Option<Arc<PeerId>>| match (x, y) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
            (None, None) => true,
            _ => false,
        };
        let bytes: &[u8] = b"<>&\r\n\t /x-:\"'\x7f\xff\xc3";
        let (mut answered, mut declined) = (0, 0);
        for (src, dst) in [
            (&a, &b),
            (&b, &a),
            (&a, &a),
            (&short, &long),
            (&long, &short),
        ] {
            let copy = Arc::new(PeerId::clone(dst));
            for service in ["EndpointService:jxta-NetGroup/EndpointRouter", ""] {
                let doc = erm_xml(src, dst, service, src);
                let mut docs = vec![
                    doc.clone().into_bytes(),
                    doc.replace("/</Dest>", "</Dest>").into_bytes(),
                ];
                for i in 0..doc.len() {
                    let (head, tail) = doc.as_bytes().split_at(i);
                    docs.push([head, &tail[1..]].concat());
                    docs.push([head, "\u{e9}".as_bytes(), tail].concat());
                    for &c in bytes {
                        docs.push([head, &[c], tail].concat());
                        docs.push([head, &[c], &tail[1..]].concat());
                    }
                }
                let hop_sets = [
                    [Some(src), Some(dst)],
                    [Some(src), Some(&copy)],
                    [Some(dst), Some(src)],
                    [Some(src), None],
                    [None, Some(dst)],
                    [Some(&short), Some(dst)],
                    [Some(src), Some(&long)],
                ];
                for (n, content) in docs.iter().enumerate() {
                    for hops in hop_sets {
                        let Some(fast) = jxse_hop_peers(content, hops, RouterHash::default())
                        else {
                            declined += 1;
                            continue;
                        };
                        answered += 1;
                        let xml = crate::jxta::wire_str(content);
                        assert!(xml.is_ok(), "{content:?}");
                        let xml = xml.unwrap_or_default();
                        let parsed = parsed_peers(xml, hops, &mut SharedPeers::default());
                        assert!(
                            same(&fast.0, &parsed.0) && same(&fast.1, &parsed.1),
                            "{xml}"
                        );
                        assert!(fast.0.is_some() && fast.1.is_some(), "{xml}");
                    }
                    assert!(
                        n >= 2
                            || jxse_hop_peers(
                                content,
                                [Some(src), Some(dst)],
                                RouterHash::default()
                            )
                            .is_some(),
                        "{content:?}"
                    );
                }
            }
        }
        assert!(
            answered > 1000 && declined > 10_000,
            "{answered} {declined}"
        );
    }

    /// Source and destination texts of address-ish pieces, held IDs among them, into a
    /// shared table as the memo uses it: the peers [`parse_endpoint_address`] and a
    /// check of its address (else, for a source, of the whole text) give, the same
    /// entry when held, and the table left as that leaves it.
    #[test]
    fn src_and_dest_peers_are_the_address_parse() {
        use crate::jxta::peer::shared_checked;
        let held = ["uuid-AB03", "cbid-CD03", "uuid-EF03"];
        let pieces = [
            "jxta://",
            "tcp://",
            "jx ta://",
            "://",
            "uuid-AB03",
            "cbid-CD03",
            "uuid-9903",
            "urn:jxta:uuid-EF03",
            "/",
            "/PipeService/urn:jxta:uuid-AB04",
            " ",
            "\t",
            "-",
            "\u{7f}",
            "\u{e9}",
            ":",
            "",
        ];
        let mut texts = Vec::new();
        for a in pieces {
            for b in pieces {
                for c in ["", "/", "/EndpointService/x", " ", "\u{1}"] {
                    texts.push(format!("{a}{b}{c}"));
                }
            }
        }
        let fill = |known: &mut SharedPeers| {
            for h in held {
                shared_checked(known, h).expect("a valid peer ID");
            }
        };
        let (mut by_lookup, mut by_parse) = (SharedPeers::default(), SharedPeers::default());
        fill(&mut by_lookup);
        fill(&mut by_parse);
        for t in &texts {
            let mut memo = |text: &str, find: Find| match find {
                Find::Held => held_peer(&by_lookup, text),
                Find::Any => shared_checked(&mut by_lookup, text),
            };
            let got = (dest_peer(t, &mut memo), src_peer(t, &mut memo));
            let want = (
                parse_endpoint_address(t).and_then(|ep| shared_checked(&mut by_parse, ep.address)),
                shared_checked(&mut by_parse, peer_text(t)),
            );
            assert_eq!(got, want, "{t:?}");
            for (g, w) in [
                got.0.iter().zip(&want.0).next(),
                got.1.iter().zip(&want.1).next(),
            ]
            .into_iter()
            .flatten()
            {
                assert_eq!(Arc::strong_count(g), Arc::strong_count(w), "{t:?}");
            }
            // Without a table, what `PeerId::parse` gives.
            let mut parse = |text: &str, find: Find| match find {
                Find::Held => None,
                Find::Any => PeerId::parse(text),
            };
            assert_eq!(
                dest_peer(t, &mut parse),
                parse_endpoint_address(t).and_then(|ep| PeerId::parse(ep.address)),
                "{t:?}"
            );
            assert_eq!(
                src_peer(t, &mut parse),
                PeerId::parse(peer_text(t)),
                "{t:?}"
            );
        }
        let keys = |k: &SharedPeers| {
            let mut v: Vec<String> = k.keys().map(ToString::to_string).collect();
            v.sort();
            v
        };
        assert_eq!(keys(&by_lookup), keys(&by_parse));
        assert!(by_lookup.len() > held.len());
    }

    #[test]
    fn router_peers_are_router_fields_peers() {
        for xml in router_documents() {
            let f = router_fields(&xml);
            assert!(f.src_peer.is_some() || xml.starts_with("<r>"), "{xml:?}");
            assert_eq!(router_peers(&xml), (f.src_peer, f.dst_peer), "{xml:?}");
            // A document only quick-xml takes (a reference) gives the same too.
            if !xml.contains("<Src>") {
                continue;
            }
            let quoted = xml.replacen("<Src>", "<Src>&#32;", 1);
            assert!(plain_root_child_texts(&quoted, ROUTER_CHILDREN).is_none());
            let g = router_fields(&quoted);
            assert_eq!(
                router_peers(&quoted),
                (g.src_peer, g.dst_peer),
                "{quoted:?}"
            );
        }
    }

    /// [`plain_name`] as it was: the reference.
    fn plain_name_reference(name: &[u8]) -> bool {
        let colons = name.iter().filter(|&&b| b == b':').count();
        !name.is_empty()
            && name.iter().all(|&b| plain_name_byte(b))
            && colons <= 1
            && name.first() != Some(&b':')
            && name.last() != Some(&b':')
    }

    /// XML-ish pieces the generated documents are made of.
    const XML_PIECES: &[&str] = &[
        "<r>",
        "</r>",
        "<Src>",
        "</Src>",
        "<Dest>",
        "</Dest>",
        "<a:Last>",
        "</a:Last>",
        "<Last/>",
        "<LastHop x='>'>",
        "</LastHop>",
        "<x>",
        "</x>",
        "<x/>",
        "jxta://uuid-AB03",
        " ",
        "\n",
        "<?xml version=\"1.0\"?>",
        "<!DOCTYPE r>",
        "<!-- c -->",
        "&amp;",
        "text",
        ">",
        "\"",
        "'",
        "\r",
        "\u{e9}",
        "\u{a0}",
        "\u{b}",
        "<x a='&amp;\u{e9}'>",
        "<Src b=\"&\r\">",
        "</jxta:ERM>",
        "<Dest/>",
    ];

    proptest::proptest! {
        /// Names of name bytes, colons anywhere and bytes that are no name bytes.
        #[test]
        fn plain_names_are_the_reference_ones(
            name in proptest::collection::vec(proptest::sample::select(b":aZ9_-. >\xe9".to_vec()), 0..8),
        ) {
            proptest::prop_assert_eq!(plain_name(&name), plain_name_reference(&name));
            let local = match memchr::memchr(b':', &name) {
                Some(i) => &name[i + 1..],
                None => &name[..],
            };
            proptest::prop_assert_eq!(local_name(&name), local);
        }

        #[test]
        fn split_scheme_is_split_once(s in "[a:/\u{e9}]{0,12}") {
            proptest::prop_assert_eq!(split_scheme(&s), s.split_once("://"));
        }

        #[test]
        fn split_at_slash_is_split_once(s in "[a/\u{e9}]{0,12}") {
            proptest::prop_assert_eq!(split_at_slash(&s), s.split_once('/'));
        }

        /// Addresses made of address-ish pieces, whitespace and control characters
        /// included: the same parts as `split_once` and `any` gave them.
        #[test]
        fn endpoint_addresses_parse_as_the_split_reference(
            scheme in proptest::sample::select(vec!["", "jxta://", "tcp://", "a b://", "jx:/"]),
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "jxta", "tcp", "://", ":", "/", "//", "uuid-AB03", "PipeService",
                    "urn:jxta:uuid-CD03", " ", "\t", "\u{1}", "\u{e9}", "+", ".", "",
                    "\u{b}", "\u{c}", "\u{1f}", "!", "\u{7f}", "\u{80}",
                ]),
                0..10,
            )
        ) {
            let s = format!("{scheme}{}", pieces.concat());
            let reference = s.split_once("://").and_then(|(protocol, rest)| {
                let protocol_ok = !protocol.is_empty()
                    && protocol
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
                let (address, path) = match rest.split_once('/') {
                    Some((a, p)) => (a, Some(p)),
                    None => (rest, None),
                };
                let address_ok = !address.is_empty()
                    && !address
                        .bytes()
                        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
                let (service, param) = match path {
                    None => (None, None),
                    Some(p) => match p.split_once('/') {
                        Some((s, q)) => (Some(s), Some(q)),
                        None => (Some(p), None),
                    },
                };
                (protocol_ok && address_ok).then_some(EndpointAddress {
                    protocol,
                    address,
                    service: service.filter(|s| !s.is_empty()),
                    param: param.filter(|s| !s.is_empty()),
                })
            });
            proptest::prop_assert_eq!(parse_endpoint_address(&s), reference);
        }

        /// Documents made of XML-ish pieces: the plain path never disagrees.
        #[test]
        fn plain_router_path_agrees_on_generated_documents(
            pieces in proptest::collection::vec(proptest::sample::select(XML_PIECES), 0..24)
        ) {
            let xml = pieces.concat();
            assert_jxse_start_is_the_general_scan(&xml);
            if let Some(plain) = plain_owned(&xml) {
                proptest::prop_assert_eq!(plain, root_child_texts(&xml, ROUTER_CHILDREN));
            }
            if let Some(plain) = plain_owned_of(&xml, END_NAMES) {
                proptest::prop_assert_eq!(plain, root_child_texts(&xml, END_NAMES));
            }
        }

        /// JXSE 2.5's start and whatever follows: the shortcut is the general scan,
        /// and says what quick-xml says.
        #[test]
        fn jxse_start_agrees_on_generated_documents(
            pieces in proptest::collection::vec(proptest::sample::select(XML_PIECES), 0..16)
        ) {
            let xml = format!("{}{}", String::from_utf8_lossy(JXSE_ERM_START), pieces.concat());
            assert_jxse_start_is_the_general_scan(&xml);
            if let Some(plain) = plain_owned(&xml) {
                proptest::prop_assert_eq!(plain, root_child_texts(&xml, ROUTER_CHILDREN));
            }
            if let Some(plain) = plain_owned_of(&xml, END_NAMES) {
                proptest::prop_assert_eq!(plain, root_child_texts(&xml, END_NAMES));
            }
        }
    }
}
