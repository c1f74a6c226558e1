//! Binary messages `jxmg` (spec §2): version 0 (JXSE, the only version Java sends) and
//! version 1 (JXTA-C, "binary message format 2").
//!
//! Decoding borrows: names and contents are slices of the body except where version 1
//! carries UTF-16/UCS-4 strings, which must be transcoded (`Cow::Owned`).
//!
//! Over 600 lines: decoders and encoders of both message versions, then their tests.

use std::borrow::Cow;

use super::names::{same, ElementNames};
use super::{ascii_pair, wire_str, JxtaError, Reader};

pub const MESSAGE_SIGNATURE: &[u8] = b"jxmg";
pub const ELEMENT_SIGNATURE: &[u8] = b"jxel";
pub const MIME_JXTA_MSG: &str = "application/x-jxta-msg";
pub const MIME_DEFAULT: &str = "application/octet-stream";

/// Signature elements may carry signature elements; JXSE never nests more than one
/// level. The bound stops a hostile message from recursing the stack away.
pub const MAX_SIGNATURE_DEPTH: usize = 4;

/// Namespace ids 0 and 1 are predefined and never sent.
const PREDEFINED: [&str; 2] = ["", "jxta"];

// Version 0 element flags.
const V0_HAS_TYPE: u8 = 0x01;
const V0_HAS_ENCODING: u8 = 0x02;
const V0_HAS_SIGNATURE: u8 = 0x04;

// Version 1 message flags.
const V1_UTF16BE: u8 = 0x01;
const V1_UCS4BE: u8 = 0x02;
// Version 1 element flags.
const V1_U64_LENS: u8 = 0x01;
const V1_NAME_LITERAL: u8 = 0x02;
const V1_HAS_TYPE: u8 = 0x04;
const V1_HAS_SIGNATURE: u8 = 0x08;
const V1_HAS_ENCODING: u8 = 0x10;

#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub version: u8,
    pub elements: Vec<Element<'a>>,
    /// Whether an element may own memory ([`Element::owns_memory`]), as the decoder
    /// knows it: a signature element, or version 1 text not in UTF-8.
    owns: bool,
    /// The whole message, for the [`Skeleton`] of its layout.
    body: &'a [u8],
    /// The entry of the element-name table whose [`Skeleton`] the message's bytes
    /// were ([`decode_message_known`]), with the table's [`ElementNames::stamp`]
    /// then: its names need no counting apart.
    layout: Option<(u8, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element<'a> {
    pub namespace: Cow<'a, str>,
    pub name: Cow<'a, str>,
    /// `None` when the element carries no type (flags without HAS_TYPE, e.g. JXSE
    /// 2.7's `EndpointRouterMsg-fingerprint`); the type is then octet-stream.
    pub mime: Option<Cow<'a, str>>,
    pub content: &'a [u8],
    pub signature: Option<Box<Element<'a>>>,
}

/// Messages are equal by what they carry: where their bytes lie, how they were
/// decoded and what comes after the last element do not count.
impl PartialEq for Message<'_> {
    fn eq(&self, other: &Self) -> bool {
        (self.version, &self.elements, self.owns) == (other.version, &other.elements, other.owns)
    }
}

impl Eq for Message<'_> {}

impl<'a> Message<'a> {
    /// The elements emptied, for the next message (as [`recycle_elements`]), dropped
    /// one by one only if one may own memory: those of a message that owns none are
    /// forgotten, which frees nothing that dropping would (~20 instructions an element).
    #[inline]
    pub fn into_spare<'b>(mut self) -> Vec<Element<'b>> {
        if self.owns {
            self.elements.clear();
        }
        forget_elements(self.elements)
    }

    /// The message's bytes, as decoded.
    pub(crate) fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The layout entry whose skeleton the message's bytes were, when decoded by
    /// [`decode_message_known`], and the table's stamp then.
    #[inline]
    pub(crate) fn layout(&self) -> Option<(usize, u64)> {
        self.layout.map(|(i, stamp)| (usize::from(i), stamp))
    }

    /// First element with this namespace and name.
    pub fn element(&self, namespace: &str, name: &str) -> Option<&Element<'a>> {
        self.elements.iter().find(|e| e.is(namespace, name))
    }
}

impl<'a> Element<'a> {
    pub fn is(&self, namespace: &str, name: &str) -> bool {
        self.namespace == namespace && self.name == name
    }

    /// The MIME type, with the default the spec gives for untyped elements.
    pub fn mime_or_default(&self) -> &str {
        self.mime.as_deref().unwrap_or(MIME_DEFAULT)
    }

    /// The MIME type without parameters (`text/xml;charset=UTF-8` → `text/xml`),
    /// lower-cased comparison is left to the caller.
    pub fn media_type(&self) -> &str {
        let m = self.mime_or_default();
        m.split(';').next().unwrap_or(m).trim()
    }

    /// Content as text, if it is UTF-8.
    pub fn text(&self) -> Option<&'a str> {
        std::str::from_utf8(self.content).ok()
    }

    /// If this element's type is `application/x-jxta-msg`, its content is itself a
    /// message: decode it. `None` for other types.
    pub fn as_message(&self) -> Option<Result<Message<'a>, JxtaError>> {
        if self.media_type().eq_ignore_ascii_case(MIME_JXTA_MSG) {
            Some(decode_message(self.content))
        } else {
            None
        }
    }

    /// Whether dropping this element frees memory: a version 1 string transcoded from
    /// UTF-16 or UCS-4, or a signature element.
    #[inline]
    pub fn owns_memory(&self) -> bool {
        matches!(self.namespace, Cow::Owned(_))
            || matches!(self.name, Cow::Owned(_))
            || matches!(self.mime, Some(Cow::Owned(_)))
            || self.signature.is_some()
    }

    pub fn to_owned_element(&self) -> OwnedElement {
        OwnedElement {
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            mime: self.mime.as_ref().map(|m| m.to_string()),
            content: self.content.to_vec(),
            signature: self
                .signature
                .as_ref()
                .map(|s| Box::new(s.to_owned_element())),
        }
    }
}

/// Decodes a `jxmg` message of version 0 or 1. Bytes after the last element are
/// ignored (JXSE reads exactly the declared elements too).
pub fn decode_message(body: &[u8]) -> Result<Message<'_>, JxtaError> {
    decode_message_in(body, Vec::new())
}

/// [`decode_message`] with its elements in `elements`' allocation (emptied first). A
/// caller decoding message after message hands back the last one's elements through
/// [`recycle_elements`]: a `Vec` per message cost an allocation and a free.
pub fn decode_message_in<'a>(
    body: &'a [u8],
    elements: Vec<Element<'a>>,
) -> Result<Message<'a>, JxtaError> {
    let mut r = Reader::new(body);
    if r.bytes(4, "message signature")? != MESSAGE_SIGNATURE {
        return Err(JxtaError::BadSignature("jxmg"));
    }
    match r.u8("message version")? {
        0 => decode_v0(r, elements),
        1 => decode_v1(r, elements),
        v => Err(JxtaError::UnsupportedVersion(v)),
    }
}

/// [`decode_message_in`], a version 0 message whose bytes before each content are one
/// of `names`' layouts' [`Skeleton`] decoded by comparing them with it: the message's
/// [`Message::layout`] then says which, for `names` to count it without comparing its
/// names again. Any other message, or one that differs from the skeleton anywhere,
/// is decoded as [`decode_message_in`] decodes it (the same message or the same error).
pub fn decode_message_known<'a>(
    body: &'a [u8],
    mut elements: Vec<Element<'a>>,
    names: &ElementNames,
) -> Result<Message<'a>, JxtaError> {
    // A version 0 message's skeleton tried here: through `decode_v0` and its `Reader`
    // the message was returned twice.
    if let Some(from_table) = v0_from_table(body) {
        if let Some(i) = decode_known(&mut elements, from_table, names) {
            return Ok(Message {
                version: 0,
                elements,
                owns: false,
                body,
                layout: Some((i, names.stamp())),
            });
        }
        // A skeleton that failed part way may have written some.
        elements.clear();
    }
    decode_message_in(body, elements)
}

/// A version 0 message's bytes from its namespace table on; `None` for a body that is
/// no `jxmg` message of version 0.
#[inline(always)]
fn v0_from_table(body: &[u8]) -> Option<&[u8]> {
    match body.split_first_chunk::<V0_TABLE_AT>()? {
        (&[j, x, m, g, 0], from_table) if [j, x, m, g] == *MESSAGE_SIGNATURE => Some(from_table),
        _ => None,
    }
}

/// `a == b`, for an element's head (20 to 70 bytes in JXSE's): from 33 to 64 bytes
/// its first and last 32 as arrays ([`same_ends`]), no loop; other lengths by
/// `names::same`. Through `same`'s loop of words a 33- to 64-byte head cost ~59
/// instructions.
#[inline(always)]
fn same_head(a: &[u8], b: &[u8]) -> bool {
    // JXSE's heads are mostly of 33 to 64 bytes: that class tested first, alone (one
    // compare), as two 32-byte arrays; any other length as the names table compares.
    if a.len() == b.len() && (33..=64).contains(&a.len()) {
        return same_ends::<32>(a, b);
    }
    same(a, b)
}

/// Whether `a`'s and `b`'s first `N` bytes are equal and their last `N` bytes too
/// (`false` if either is shorter). As arrays compared with `==` they are 16-byte
/// vector compares: their differing bits or'ed as words cost ~27 instructions a
/// 33- to 64-byte head, as the compiler lowered them.
#[inline(always)]
fn same_ends<const N: usize>(a: &[u8], b: &[u8]) -> bool {
    match (
        a.first_chunk::<N>(),
        b.first_chunk::<N>(),
        a.last_chunk::<N>(),
        b.last_chunk::<N>(),
    ) {
        (Some(p), Some(q), Some(x), Some(y)) => p == q && x == y,
        _ => false,
    }
}

/// Elements a [`Skeleton`] holds (as many as a layout of the element-name table).
const SKELETON_ELEMENTS: usize = 8;
/// Bytes of the namespace table, element count and element heads a [`Skeleton`]
/// holds (JXSE's longest layout has ~300).
const SKELETON_BYTES: usize = 400;
/// Bytes of a version 0 message before its namespace table: `jxmg` and the version.
const V0_TABLE_AT: usize = 5;
/// Bytes of a version 0 message from its namespace table on by which
/// [`ElementNames`] finds the skeleton it may have: JXSE's layouts differ in their
/// first 29 (the element count, the first element's name).
const FIRST_BYTES: usize = 32;

/// The bytes of a version 0 message that its namespaces, element names and types
/// make: the namespace table and the element count, then each element's head (from
/// `jxel` to its content's length). A JXSE layout has the same bytes there in every
/// message: compared with a skeleton's as words, an element is decoded without
/// reading its fields or checking its text, and counted with the layout it comes with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Skeleton {
    /// Bytes of the namespace table and the element count (0: a skeleton of nothing).
    table: u16,
    heads: [Head; SKELETON_ELEMENTS],
    /// The table, then the heads, back to back.
    bytes: [u8; SKELETON_BYTES],
}

/// An element's head in a [`Skeleton`].
#[derive(Debug, Clone, Copy)]
struct Head {
    /// Where its bytes lie in the skeleton's, and how many.
    at: u16,
    len: u16,
    ns_id: u8,
    /// Where a declared namespace (`ns_id` 2 on) lies in the table's bytes: the
    /// message's table, equal to the skeleton's, gives it without a check.
    ns_at: u16,
    ns_len: u16,
    /// Where the name ends in the head (it starts at 8: `jxel`, the namespace id, the
    /// flags and the name's length).
    name_end: u16,
    typed: bool,
}

impl Head {
    const NONE: Head = Head {
        at: 0,
        len: 0,
        ns_id: 0,
        ns_at: 0,
        ns_len: 0,
        name_end: 0,
        typed: false,
    };
}

impl Skeleton {
    pub(crate) const NONE: Skeleton = Skeleton {
        table: 0,
        heads: [Head::NONE; SKELETON_ELEMENTS],
        bytes: [0; SKELETON_BYTES],
    };

    /// The skeleton of a version 0 message whose elements all take the fast path
    /// ([`fast_element_v0`]); `None` for any other, or one too big to keep. Every
    /// name, namespace and type in it is text (checked here: [`Self::element`] relies
    /// on it).
    pub(crate) fn of(body: &[u8]) -> Option<Skeleton> {
        let from_table = v0_from_table(body)?;
        let (ns_count, mut b) = from_table.split_first_chunk::<2>()?;
        let ns_count = u16::from_be_bytes(*ns_count);
        // Each declared namespace's place in the table (from its count on).
        let mut declared = Vec::new();
        for _ in 0..ns_count {
            let (len, after) = b.split_first_chunk::<2>()?;
            let (ns, after) = after.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
            wire_str(ns).ok()?;
            let at = from_table.len() - after.len() - ns.len();
            declared.push((u16::try_from(at).ok()?, u16::try_from(ns.len()).ok()?));
            b = after;
        }
        let (count, mut b) = b.split_first_chunk::<2>()?;
        let count = u16::from_be_bytes(*count);
        let table = from_table.len() - b.len();
        let mut s = Skeleton {
            table: u16::try_from(table).ok()?,
            ..Skeleton::NONE
        };
        s.bytes
            .get_mut(..table)?
            .copy_from_slice(from_table.get(..table)?);
        let mut at = table;
        for head in s.heads.get_mut(..usize::from(count))? {
            let (h, after) = b.split_first_chunk::<8>()?;
            let [j, x, e, l, ns_id, flags, n @ ..] = *h;
            if [j, x, e, l] != *ELEMENT_SIGNATURE
                || flags & (V0_HAS_ENCODING | V0_HAS_SIGNATURE) != 0
                || usize::from(ns_id) >= 2 + usize::from(ns_count)
            {
                return None;
            }
            let (name, mut after) = after.split_at_checked(usize::from(u16::from_be_bytes(n)))?;
            wire_str(name).ok()?;
            let typed = flags & V0_HAS_TYPE != 0;
            if typed {
                let (len, rest) = after.split_first_chunk::<2>()?;
                let (mime, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
                wire_str(mime).ok()?;
                after = rest;
            }
            let len = b.len() - after.len();
            s.bytes
                .get_mut(at..at + len)?
                .copy_from_slice(b.get(..len)?);
            let (ns_at, ns_len) = match usize::from(ns_id).checked_sub(PREDEFINED.len()) {
                Some(d) => *declared.get(d)?,
                None => (0, 0),
            };
            *head = Head {
                at: u16::try_from(at).ok()?,
                len: u16::try_from(len).ok()?,
                ns_id,
                ns_at,
                ns_len,
                name_end: u16::try_from(8 + name.len()).ok()?,
                typed,
            };
            at += len;
            let (content_len, rest) = after.split_first_chunk::<4>()?;
            b = rest.get(usize::try_from(u32::from_be_bytes(*content_len)).ok()?..)?;
        }
        Some(s)
    }

    /// Which of [`ElementNames`]' places for a message's first bytes (`from_table`, the
    /// message from its namespace table on) the message goes in; `None` if it is
    /// shorter than them. Four words mixed: a few instructions, where the table's walk
    /// and the layout hash that find a skeleton's entry cost ~65.
    #[inline(always)]
    pub(crate) fn first_bytes_key(from_table: &[u8]) -> Option<u8> {
        let (words, _) = from_table.first_chunk::<FIRST_BYTES>()?.as_chunks::<8>();
        let h = words
            .iter()
            .fold(0u64, |h, w| h.rotate_left(23) ^ u64::from_ne_bytes(*w));
        Some((h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8)
    }

    /// [`Self::first_bytes_key`] of the messages of this skeleton, when its table and
    /// first head fill the first bytes (JXSE's do: 43 bytes and more); `None` for
    /// others, whose first bytes take some of their first content.
    pub(crate) fn key(&self) -> Option<u8> {
        let [first, ..] = &self.heads;
        if usize::from(self.table) + usize::from(first.len) < FIRST_BYTES {
            return None;
        }
        Self::first_bytes_key(&self.bytes)
    }

    /// Decodes the message whose bytes from its namespace table on are `from_table`
    /// into `elements` (emptied first) if its table is this skeleton's and its heads
    /// are, as [`decode_known`] says; whether it did (if not, `elements` may hold some).
    /// The table's bytes compared fix its length and the element count: equal bytes
    /// walk the same way, to the same end.
    #[inline(always)]
    fn decode<'a>(&self, elements: &mut Vec<Element<'a>>, from_table: &'a [u8]) -> bool {
        let t = usize::from(self.table);
        let (Some(known_table), Some((table, rest))) =
            (self.bytes.get(..t), from_table.split_at_checked(t))
        else {
            return false;
        };
        if !same(known_table, table) {
            return false;
        }
        // A skeleton of nothing (`table` 0) has no count, and decodes nothing.
        let Some(count) = table.last_chunk::<2>() else {
            return false;
        };
        let count = u16::from_be_bytes(*count);
        elements.clear();
        // The bound computed only when the room falls short (a division a message).
        if elements.capacity() < usize::from(count) {
            elements.reserve(bounded_capacity(count, rest.len(), 12));
        }
        let count = usize::from(count);
        // The heads in turn, their bytes found in the skeleton's by their place.
        let mut heads = self.heads.iter();
        let mut b = rest;
        let written = fill_elements(elements, count, &mut b, |b| {
            let h = heads.next()?;
            let at = usize::from(h.at);
            let head = self.bytes.get(at..at + usize::from(h.len))?;
            Skeleton::element(h, head, b, table)
        });
        written == count
    }

    /// The element at the front of `b`, if its head is `known` (the skeleton's bytes
    /// of `h`), and the bytes after it; `None` if it is not, or its content runs past
    /// the end.
    #[inline(always)]
    fn element<'a>(
        h: &Head,
        known: &[u8],
        b: &'a [u8],
        table: &'a [u8],
    ) -> Option<(Element<'a>, &'a [u8])> {
        let (head, rest) = b.split_at_checked(known.len())?;
        if !same_head(head, known) {
            return None;
        }
        let (content_len, rest) = rest.split_first_chunk::<4>()?;
        let (content, rest) =
            rest.split_at_checked(usize::try_from(u32::from_be_bytes(*content_len)).ok()?)?;
        let (name, type_on) = head.split_at_checked(usize::from(h.name_end))?;
        let name = name.get(8..)?;
        let mime = if h.typed {
            Some(type_on.get(2..)?)
        } else {
            None
        };
        // SAFETY: `from_utf8_unchecked` requires valid UTF-8. `head` equals `known`, the
        // skeleton's bytes of `h` (just compared), where `Skeleton::of` put the head of
        // an element whose name (from 8 to `name_end`) and type (from `name_end + 2` to
        // the end, when typed) it checked with `wire_str`: the same bytes here, so the
        // same valid UTF-8. `known_skeletons_decode_as_the_decoder` decodes messages
        // changed at every byte both ways.
        let (name, mime) = unsafe {
            (
                std::str::from_utf8_unchecked(name),
                mime.map(|m| Cow::Borrowed(std::str::from_utf8_unchecked(m))),
            )
        };
        let namespace = match PREDEFINED.get(usize::from(h.ns_id)) {
            Some(p) => p,
            None => {
                let at = usize::from(h.ns_at);
                let ns = table.get(at..at + usize::from(h.ns_len))?;
                // SAFETY: `from_utf8_unchecked` requires valid UTF-8. `table` is the
                // message's namespace table, which its caller (`Skeleton::decode`) found
                // equal to the skeleton's, where `Skeleton::of` put at `ns_at` the
                // `ns_len` bytes of the namespace this head names, checked with
                // `wire_str`: the same bytes, so the same valid UTF-8.
                // `known_skeletons_decode_as_the_decoder` and `namespaces_cut_unchecked`
                // decode messages changed at every byte (their tables' included) both ways.
                unsafe { std::str::from_utf8_unchecked(ns) }
            }
        };
        Some((borrowed_element(namespace, name, mime, content), rest))
    }
}

/// Decodes the version 0 message whose bytes from its namespace table on are
/// `from_table` by one of `names`' skeletons, the one whose namespace table and element
/// count are the message's and whose heads the elements' are; which one (its entry).
/// `None` when none is, or the table is cut short (`elements` may then hold some a
/// skeleton wrote before it failed): the caller then decodes the message from its
/// table on, and says what is wrong.
/// The skeleton is first looked for by the message's first bytes
/// ([`ElementNames::by_first_bytes`]); a message it does not decode goes on to the
/// layout's pair of entries (the same skeleton, when one decodes it: two entries never
/// hold the same names, and a skeleton's entry is in the pair of its names).
/// One loop, so that [`Skeleton::decode`] has one place: in two, its closure was
/// called rather than inlined (~110 instructions an element, not ~96).
#[inline(always)]
fn decode_known<'a>(
    elements: &mut Vec<Element<'a>>,
    from_table: &'a [u8],
    names: &ElementNames,
) -> Option<u8> {
    let guess = names.by_first_bytes(from_table);
    let mut next = guess;
    let mut pair: Option<[Option<usize>; 2]> = None;
    let mut k = 0;
    loop {
        if let Some((i, s)) = next.and_then(|i| Some((i, names.skeleton(i)?))) {
            if s.decode(elements, from_table) {
                return u8::try_from(i).ok();
            }
        }
        let p = match pair {
            Some(p) => p,
            None => *pair.insert(layout_pair(from_table, names, guess)?),
        };
        next = *p.get(k)?;
        k += 1;
    }
}

/// The entries of the pair the layout hash gives a message (`from_table` its bytes
/// from its namespace table on) that may hold its skeleton, but `tried`; `None` if its
/// table or first element is cut short.
/// The table is only walked: its namespaces are neither checked as text nor gathered
/// (a skeleton's table was made of checked text, and a head finds its namespace in the
/// message's table, equal to the skeleton's, where the skeleton's had it). Checked and
/// filled in for every message, they were ~25 instructions a message.
#[cold]
#[inline(never)]
fn layout_pair(
    from_table: &[u8],
    names: &ElementNames,
    tried: Option<usize>,
) -> Option<[Option<usize>; 2]> {
    let (ns_count, mut b) = from_table.split_first_chunk::<2>()?;
    let ns_count = u16::from_be_bytes(*ns_count);
    // The first declared namespace, kept on the way (JXSE declares one): found again
    // by `declared_namespace`'s second walk it cost ~22 instructions a message.
    let mut first: &[u8] = &[];
    for k in 0..ns_count {
        let (len, after) = b.split_first_chunk::<2>()?;
        let (ns, after) = after.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
        if k == 0 {
            first = ns;
        }
        b = after;
    }
    let (count, rest) = b.split_first_chunk::<2>()?;
    let table = from_table.get(..from_table.len() - rest.len())?;
    let count = usize::from(u16::from_be_bytes(*count));
    // The entries the first element's names pick, as the table picks a layout's.
    let (&[.., ns_id, _, n0, n1], after) = rest.split_first_chunk::<8>()?;
    let namespace = match usize::from(ns_id).checked_sub(PREDEFINED.len()) {
        None => PREDEFINED.get(usize::from(ns_id))?.as_bytes(),
        Some(0) if ns_count > 0 => first,
        Some(d) => declared_namespace(table, ns_count, d)?,
    };
    let name = after.get(..usize::from(u16::from_be_bytes([n0, n1])))?;
    let at = names.layout_at(namespace, name, count);
    Some([at, at ^ 1].map(|i| Some(i).filter(|&i| tried != Some(i))))
}

/// The bytes of the `d`th of the `ns_count` namespaces `table` declares (`None` past
/// them, or if the table is cut short).
fn declared_namespace(table: &[u8], ns_count: u16, d: usize) -> Option<&[u8]> {
    if d >= usize::from(ns_count) {
        return None;
    }
    let mut b = table.get(2..)?;
    for _ in 0..d {
        let (len, after) = b.split_first_chunk::<2>()?;
        b = after.get(usize::from(u16::from_be_bytes(*len))..)?;
    }
    let (len, after) = b.split_first_chunk::<2>()?;
    after.get(..usize::from(u16::from_be_bytes(*len)))
}

/// `elements` emptied, as a `Vec` free of the lifetime of the message they borrowed,
/// keeping its allocation (`recycled_elements_keep_their_buffer` checks both). The safe
/// way, an empty iterator collected in place, cost ~170 instructions a message.
pub fn recycle_elements<'b>(mut elements: Vec<Element<'_>>) -> Vec<Element<'b>> {
    elements.clear();
    forget_elements(elements)
}

/// `elements`' allocation as an empty `Vec` of another lifetime; the elements in it
/// are forgotten, not dropped (a leak if one owns memory, never unsound).
#[inline]
fn forget_elements<'b>(elements: Vec<Element<'_>>) -> Vec<Element<'b>> {
    let mut elements = std::mem::ManuallyDrop::new(elements);
    let (ptr, cap) = (elements.as_mut_ptr(), elements.capacity());
    // SAFETY: `Vec::from_raw_parts` requires that `ptr` was allocated by the global
    // allocator for `cap` values of a type of the same size and alignment, that the
    // length (0) is at most `cap`, and that the first `len` values are initialised
    // values of the new type. `ptr` and `cap` come from a `Vec` that is not dropped
    // (`ManuallyDrop`), so the allocation has exactly one owner, the new `Vec`;
    // `Element<'a>` and `Element<'b>` differ only in a lifetime, which has no effect on
    // layout; and with length 0 no value of the old type is reinterpreted, so nothing
    // borrowed from the old message can be reached through the new `Vec`.
    unsafe { Vec::from_raw_parts(ptr.cast::<Element<'b>>(), 0, cap) }
}

/// Capacity for `count` items of at least `min_size` bytes each: never more than the
/// remaining bytes could hold, so a lying count cannot trigger a big allocation.
fn bounded_capacity(count: u16, remaining: usize, min_size: usize) -> usize {
    usize::from(count).min(remaining / min_size)
}

/// Namespace tables up to this long (the predefined two included) stay on the stack:
/// JXSE declares one or two, and a `Vec` per message cost an allocation and a free.
/// No longer: the table is filled for every message (8 entries were 16 stores).
const INLINE_NAMESPACES: usize = 4;

/// Inlined: called, it returned its `Result` through memory (~30 instructions a
/// namespace).
#[inline(always)]
fn v0_namespace<'a>(r: &mut Reader<'a>) -> Result<&'a str, JxtaError> {
    let len = r.u16("namespace length")?;
    let bytes = r.bytes(usize::from(len), "namespace")?;
    wire_str(bytes).map_err(|_| JxtaError::BadText("namespace"))
}

fn decode_v0<'a>(
    mut r: Reader<'a>,
    mut elements: Vec<Element<'a>>,
) -> Result<Message<'a>, JxtaError> {
    let ns_count = r.u16("namespace count")?;
    let table_len = 2 + usize::from(ns_count);
    let mut inline = [""; INLINE_NAMESPACES];
    let mut spilled: Vec<&str> = Vec::new();
    let namespaces: &[&str] = match inline.get_mut(..table_len) {
        Some(table) => {
            let (predefined, declared) = table.split_at_mut(2);
            predefined.copy_from_slice(&PREDEFINED);
            for slot in declared {
                *slot = v0_namespace(&mut r)?;
            }
            table
        }
        None => {
            spilled.reserve(2 + bounded_capacity(ns_count, r.remaining(), 2));
            spilled.extend_from_slice(&PREDEFINED);
            for _ in 0..ns_count {
                spilled.push(v0_namespace(&mut r)?);
            }
            &spilled
        }
    };
    let el_count = r.u16("element count")?;
    // Smallest v0 element: jxel + ns + flags + name len + content len.
    elements.clear();
    elements.reserve(bounded_capacity(el_count, r.remaining(), 12));
    let el_count = usize::from(el_count);
    let mut rest = r.buf.get(r.pos..).unwrap_or_default();
    let fast = fast_elements_v0(&mut elements, el_count, &mut rest, namespaces);
    r.pos = r.buf.len() - rest.len();
    let mut owns = false;
    // From the first element the fast path does not take (a signature, an encoding,
    // or something wrong), the general decoder goes on, and says what is wrong.
    for _ in fast..el_count {
        let element = decode_element_v0(&mut r, namespaces, 0)?;
        // Version 0 text is borrowed: only a signature element is owned.
        owns |= element.signature.is_some();
        elements.push(element);
    }
    Ok(Message {
        version: 0,
        elements,
        owns,
        body: r.buf,
        layout: None,
    })
}

fn v0_str<'a>(r: &mut Reader<'a>, what: &'static str) -> Result<&'a str, JxtaError> {
    let len = r.u16(what)?;
    let bytes = r.bytes(usize::from(len), what)?;
    wire_str(bytes).map_err(|_| JxtaError::BadText(what))
}

/// `len` bytes of text from the front of `b`, and what follows them.
#[inline(always)]
fn split_text(b: &[u8], len: [u8; 2]) -> Option<(&str, &[u8])> {
    let (text, rest) = b.split_at_checked(usize::from(u16::from_be_bytes(len)))?;
    Some((wire_str(text).ok()?, rest))
}

/// The common element (no encoding, no signature, well-formed) at the front of `b`,
/// and the bytes after it, in one pass over the bytes, one length check a field: through
/// [`Reader`] and returned by value it cost ~280 instructions an element. `None` for
/// anything else: then [`decode_element_v0`] decodes it or says what is wrong, as it
/// always did (`fast_element_v0_is_decode_element_v0` compares the two).
#[inline(always)]
fn fast_element_v0<'a>(b: &'a [u8], namespaces: &[&'a str]) -> Option<(Element<'a>, &'a [u8])> {
    let (head, rest) = b.split_first_chunk::<8>()?;
    let [j, x, e, l, ns_id, flags, name_len @ ..] = *head;
    if [j, x, e, l] != *ELEMENT_SIGNATURE || flags & (V0_HAS_ENCODING | V0_HAS_SIGNATURE) != 0 {
        return None;
    }
    let namespace = *namespaces.get(usize::from(ns_id))?;
    let (name, mime, rest) = if flags & V0_HAS_TYPE != 0 {
        // Name, the type's length, type: checked as text in one pass when all ASCII.
        let n = usize::from(u16::from_be_bytes(name_len));
        let len = rest.get(n..).and_then(<[u8]>::first_chunk::<2>)?;
        let (text, rest) = rest.split_at_checked(n + 2 + usize::from(u16::from_be_bytes(*len)))?;
        let (name, mime) = ascii_pair(text, n, n + 2).or_else(|| {
            Some((
                wire_str(text.get(..n)?).ok()?,
                wire_str(text.get(n + 2..)?).ok()?,
            ))
        })?;
        (name, Some(Cow::Borrowed(mime)), rest)
    } else {
        let (name, rest) = split_text(rest, name_len)?;
        (name, None, rest)
    };
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let (content, rest) = rest.split_at_checked(usize::try_from(u32::from_be_bytes(*len)).ok()?)?;
    Some((borrowed_element(namespace, name, mime, content), rest))
}

/// An unsigned element whose texts and content lie in the message.
#[inline(always)]
fn borrowed_element<'a>(
    namespace: &'a str,
    name: &'a str,
    mime: Option<Cow<'a, str>>,
    content: &'a [u8],
) -> Element<'a> {
    Element {
        namespace: Cow::Borrowed(namespace),
        name: Cow::Borrowed(name),
        mime,
        content,
        signature: None,
    }
}

/// Up to `count` elements from the front of `rest` by [`fast_element_v0`], written
/// straight into `elements`' spare room while each in turn takes the fast path and
/// there is room (there always is for a message that decodes: `decode_v0` reserves a
/// place for every element the body can hold); `rest` moved past them. How many.
///
/// The position, the length and the element's place are kept in registers: through
/// the [`Reader`] and one `push` at a time, each element reloaded and stored them
/// (the element's writes might have changed them, for all the compiler knew), and
/// `Vec::push`, left out of line, built the 96-byte element on the stack and copied it.
#[inline(always)]
fn fast_elements_v0<'a>(
    elements: &mut Vec<Element<'a>>,
    count: usize,
    rest: &mut &'a [u8],
    namespaces: &[&'a str],
) -> usize {
    fill_elements(elements, count, rest, |b| fast_element_v0(b, namespaces))
}

/// [`fast_elements_v0`] with the elements taken by `next` (given the bytes left)
/// rather than the fast path.
#[inline(always)]
fn fill_elements<'a>(
    elements: &mut Vec<Element<'a>>,
    count: usize,
    rest: &mut &'a [u8],
    mut next: impl FnMut(&'a [u8]) -> Option<(Element<'a>, &'a [u8])>,
) -> usize {
    let len = elements.len();
    let mut b = *rest;
    let mut written = 0;
    let spare = elements.spare_capacity_mut();
    let room = count.min(spare.len());
    for slot in spare.get_mut(..room).unwrap_or_default() {
        let Some((element, after)) = next(b) else {
            break;
        };
        slot.write(element);
        b = after;
        written += 1;
    }
    // SAFETY: `set_len(len + written)` requires `len + written <= capacity` and the
    // first `len + written` values initialised. The spare capacity starts at index `len`
    // and the loop wrote its first `written` slots, one each, in order (`written` counts
    // the writes and nothing else), so those are initialised and lie within the
    // capacity; values below `len` were initialised already.
    // `fast_elements_v0_fill_the_room` checks contents and lengths with room to
    // spare, too little room, and an element the fast path refuses at every place.
    unsafe { elements.set_len(len + written) };
    *rest = b;
    written
}

fn decode_element_v0<'a>(
    r: &mut Reader<'a>,
    namespaces: &[&'a str],
    depth: usize,
) -> Result<Element<'a>, JxtaError> {
    if depth > MAX_SIGNATURE_DEPTH {
        return Err(JxtaError::TooDeep);
    }
    if r.bytes(4, "element signature")? != ELEMENT_SIGNATURE {
        return Err(JxtaError::BadSignature("jxel"));
    }
    let ns_id = r.u8("namespace id")?;
    let namespace = *namespaces
        .get(usize::from(ns_id))
        .ok_or(JxtaError::BadNameId(u16::from(ns_id)))?;
    let flags = r.u8("element flags")?;
    let name = v0_str(r, "element name")?;
    let mime = if flags & V0_HAS_TYPE != 0 {
        Some(Cow::Borrowed(v0_str(r, "element type")?))
    } else {
        None
    };
    if flags & V0_HAS_ENCODING != 0 {
        // Defined but never used by JXSE; read past it so the content lines up.
        v0_str(r, "element encoding")?;
    }
    let len = r.u32("content length")?;
    let content = r.bytes_u64(u64::from(len), "element content")?;
    let signature = if flags & V0_HAS_SIGNATURE != 0 {
        Some(Box::new(decode_element_v0(r, namespaces, depth + 1)?))
    } else {
        None
    };
    Ok(Element {
        namespace: Cow::Borrowed(namespace),
        name: Cow::Borrowed(name),
        mime,
        content,
        signature,
    })
}

#[derive(Clone, Copy)]
enum TextEncoding {
    Utf8,
    Utf16Be,
    Ucs4Be,
}

/// Reads a version 1 string: u16 byte length, then text in the message's encoding.
fn v1_str<'a>(
    r: &mut Reader<'a>,
    enc: TextEncoding,
    what: &'static str,
) -> Result<Cow<'a, str>, JxtaError> {
    let len = r.u16(what)?;
    let bytes = r.bytes(usize::from(len), what)?;
    match enc {
        TextEncoding::Utf8 => wire_str(bytes)
            .map(Cow::Borrowed)
            .map_err(|_| JxtaError::BadText(what)),
        TextEncoding::Utf16Be => {
            if bytes.len() % 2 != 0 {
                return Err(JxtaError::BadText(what));
            }
            let units = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .map(Cow::Owned)
                .map_err(|_| JxtaError::BadText(what))
        }
        TextEncoding::Ucs4Be => {
            if bytes.len() % 4 != 0 {
                return Err(JxtaError::BadText(what));
            }
            bytes
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .map(Cow::Owned)
                .ok_or(JxtaError::BadText(what))
        }
    }
}

fn decode_v1<'a>(
    mut r: Reader<'a>,
    mut elements: Vec<Element<'a>>,
) -> Result<Message<'a>, JxtaError> {
    let flags = r.u8("message flags")?;
    let enc = if flags & V1_UCS4BE != 0 {
        TextEncoding::Ucs4Be
    } else if flags & V1_UTF16BE != 0 {
        TextEncoding::Utf16Be
    } else {
        TextEncoding::Utf8
    };
    let count = r.u16("names count")?;
    let mut names: Vec<Cow<'_, str>> =
        Vec::with_capacity(2 + bounded_capacity(count, r.remaining(), 2));
    names.extend(PREDEFINED.iter().map(|s| Cow::Borrowed(*s)));
    for _ in 0..count {
        names.push(v1_str(&mut r, enc, "names table entry")?);
    }
    let el_count = r.u16("element count")?;
    // Smallest v1 element: jxel + flags + ns id + name id + content len.
    elements.clear();
    elements.reserve(bounded_capacity(el_count, r.remaining(), 13));
    // Text in UTF-8 is borrowed, in the other encodings transcoded.
    let mut owns = !matches!(enc, TextEncoding::Utf8);
    for _ in 0..el_count {
        let element = decode_element_v1(&mut r, &names, enc, 0)?;
        owns |= element.signature.is_some();
        elements.push(element);
    }
    Ok(Message {
        version: 1,
        elements,
        owns,
        body: r.buf,
        layout: None,
    })
}

fn name_by_id<'a>(names: &[Cow<'a, str>], id: u16) -> Result<Cow<'a, str>, JxtaError> {
    names
        .get(usize::from(id))
        .cloned()
        .ok_or(JxtaError::BadNameId(id))
}

fn decode_element_v1<'a>(
    r: &mut Reader<'a>,
    names: &[Cow<'a, str>],
    enc: TextEncoding,
    depth: usize,
) -> Result<Element<'a>, JxtaError> {
    if depth > MAX_SIGNATURE_DEPTH {
        return Err(JxtaError::TooDeep);
    }
    if r.bytes(4, "element signature")? != ELEMENT_SIGNATURE {
        return Err(JxtaError::BadSignature("jxel"));
    }
    let flags = r.u8("element flags")?;
    let namespace = name_by_id(names, r.u16("namespace id")?)?;
    let name = if flags & V1_NAME_LITERAL != 0 {
        v1_str(r, enc, "element name")?
    } else {
        name_by_id(names, r.u16("name id")?)?
    };
    let mime = if flags & V1_HAS_TYPE != 0 {
        Some(name_by_id(names, r.u16("type id")?)?)
    } else {
        None
    };
    if flags & V1_HAS_ENCODING != 0 {
        name_by_id(names, r.u16("encoding id")?)?;
    }
    let len = if flags & V1_U64_LENS != 0 {
        r.u64("content length")?
    } else {
        u64::from(r.u32("content length")?)
    };
    let content = r.bytes_u64(len, "element content")?;
    let signature = if flags & V1_HAS_SIGNATURE != 0 {
        Some(Box::new(decode_element_v1(r, names, enc, depth + 1)?))
    } else {
        None
    };
    Ok(Element {
        namespace,
        name,
        mime,
        content,
        signature,
    })
}

/// An element to encode (tests, synthetic captures, the reference peer's framing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedElement {
    pub namespace: String,
    pub name: String,
    pub mime: Option<String>,
    pub content: Vec<u8>,
    pub signature: Option<Box<OwnedElement>>,
}

impl OwnedElement {
    pub fn new(
        namespace: &str,
        name: &str,
        mime: Option<&str>,
        content: impl Into<Vec<u8>>,
    ) -> Self {
        OwnedElement {
            namespace: namespace.to_string(),
            name: name.to_string(),
            mime: mime.map(str::to_string),
            content: content.into(),
            signature: None,
        }
    }
}

/// Interns strings in a names table whose ids 0 and 1 are predefined.
struct NameTable<'e> {
    extra: Vec<&'e str>,
    limit: usize,
}

impl<'e> NameTable<'e> {
    fn new(limit: usize) -> Self {
        NameTable {
            extra: Vec::new(),
            limit,
        }
    }
    /// Id of `s`, adding it if there is room. A table full to the format's limit
    /// (never reached by real messages) maps further strings to id 0 rather than
    /// writing an id the decoder would reject.
    fn id(&mut self, s: &'e str) -> usize {
        if let Some(i) = PREDEFINED.iter().position(|p| *p == s) {
            return i;
        }
        if let Some(i) = self.extra.iter().position(|p| *p == s) {
            return i + 2;
        }
        if self.extra.len() >= self.limit {
            return 0;
        }
        self.extra.push(s);
        self.extra.len() + 1
    }
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    let b = clamp(s.as_bytes(), usize::from(u16::MAX));
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Cuts `s` to at most `max` bytes. Encoders take caller data; an over-long field is
/// cut rather than writing a length that disagrees with the bytes.
fn clamp(s: &[u8], max: usize) -> &[u8] {
    &s[..s.len().min(max)]
}

fn collect_v0_namespaces<'e>(e: &'e OwnedElement, t: &mut NameTable<'e>) {
    t.id(&e.namespace);
    if let Some(s) = &e.signature {
        collect_v0_namespaces(s, t);
    }
}

/// Encodes a version 0 message as JXSE does: a namespace table of the namespaces other
/// than "" and "jxta", in order of first use, then the elements.
pub fn encode_message_v0(elements: &[OwnedElement]) -> Vec<u8> {
    // Namespace ids are one byte: at most 254 extra namespaces (JXSE stops at 253).
    let mut table = NameTable::new(253);
    for e in elements {
        collect_v0_namespaces(e, &mut table);
    }
    let mut out =
        Vec::with_capacity(64 + elements.iter().map(|e| e.content.len() + 64).sum::<usize>());
    out.extend_from_slice(MESSAGE_SIGNATURE);
    out.push(0);
    out.extend_from_slice(&(table.extra.len() as u16).to_be_bytes());
    for ns in &table.extra {
        put_str16(&mut out, ns);
    }
    let count = elements.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for e in elements.iter().take(count) {
        encode_element_v0(e, &mut table, &mut out);
    }
    out
}

fn encode_element_v0<'e>(e: &'e OwnedElement, table: &mut NameTable<'e>, out: &mut Vec<u8>) {
    out.extend_from_slice(ELEMENT_SIGNATURE);
    out.push(table.id(&e.namespace) as u8);
    let mut flags = 0;
    if e.mime.is_some() {
        flags |= V0_HAS_TYPE;
    }
    if e.signature.is_some() {
        flags |= V0_HAS_SIGNATURE;
    }
    out.push(flags);
    put_str16(out, &e.name);
    if let Some(m) = &e.mime {
        put_str16(out, m);
    }
    let content = clamp(&e.content, u32::MAX as usize);
    out.extend_from_slice(&(content.len() as u32).to_be_bytes());
    out.extend_from_slice(content);
    if let Some(s) = &e.signature {
        encode_element_v0(s, table, out);
    }
}

fn collect_v1_names<'e>(e: &'e OwnedElement, t: &mut NameTable<'e>) {
    t.id(&e.namespace);
    t.id(&e.name);
    if let Some(m) = &e.mime {
        t.id(m);
    }
    if let Some(s) = &e.signature {
        collect_v1_names(s, t);
    }
}

/// Encodes a version 1 message (UTF-8 strings): one names table for namespaces,
/// element names and types; names by id, or literal if the table is full.
pub fn encode_message_v1(elements: &[OwnedElement]) -> Vec<u8> {
    let mut table = NameTable::new(usize::from(u16::MAX) - 2);
    for e in elements {
        collect_v1_names(e, &mut table);
    }
    let mut out =
        Vec::with_capacity(64 + elements.iter().map(|e| e.content.len() + 64).sum::<usize>());
    out.extend_from_slice(MESSAGE_SIGNATURE);
    out.push(1);
    out.push(0); // UTF-8 strings
    out.extend_from_slice(&(table.extra.len() as u16).to_be_bytes());
    for s in &table.extra {
        put_str16(&mut out, s);
    }
    let count = elements.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for e in elements.iter().take(count) {
        encode_element_v1(e, &mut table, &mut out);
    }
    out
}

fn encode_element_v1<'e>(e: &'e OwnedElement, table: &mut NameTable<'e>, out: &mut Vec<u8>) {
    out.extend_from_slice(ELEMENT_SIGNATURE);
    let name_id = table.id(&e.name);
    // id 0 for a non-empty name means the table was full: send the name literally.
    let literal = name_id == 0 && !e.name.is_empty();
    let mut flags = 0;
    if literal {
        flags |= V1_NAME_LITERAL;
    }
    if e.mime.is_some() {
        flags |= V1_HAS_TYPE;
    }
    if e.signature.is_some() {
        flags |= V1_HAS_SIGNATURE;
    }
    if e.content.len() as u64 > u64::from(u32::MAX) {
        flags |= V1_U64_LENS;
    }
    out.push(flags);
    out.extend_from_slice(&(table.id(&e.namespace) as u16).to_be_bytes());
    if literal {
        put_str16(out, &e.name);
    } else {
        out.extend_from_slice(&(name_id as u16).to_be_bytes());
    }
    if let Some(m) = &e.mime {
        out.extend_from_slice(&(table.id(m) as u16).to_be_bytes());
    }
    if flags & V1_U64_LENS != 0 {
        out.extend_from_slice(&(e.content.len() as u64).to_be_bytes());
    } else {
        out.extend_from_slice(&(e.content.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(&e.content);
    if let Some(s) = &e.signature {
        encode_element_v1(s, table, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jxta::framing::{encode_package, parse_package_header, HeaderOrder, HeaderParse};
    use proptest::prelude::*;

    /// Spec §1.2 worked example: a PING element in namespace `jim`; other elements
    /// (not listed in the example) pad the body to 1010 bytes.
    #[test]
    fn worked_example_byte_for_byte() {
        let ping = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><PING>{}</PING>",
            "x".repeat(181 - 51)
        );
        assert_eq!(ping.len(), 181);
        let mut els = vec![OwnedElement::new(
            "jim",
            "Presence",
            Some("text/xml;charset=UTF-8"),
            ping,
        )];
        for name in ["A", "B"] {
            els.push(OwnedElement::new("", name, Some("text/plain"), "y"));
        }
        // Fill the fourth element so that the body is exactly 1010 bytes.
        let fixed =
            encode_message_v0(&[els.clone(), vec![OwnedElement::new("", "C", None, "")]].concat())
                .len();
        els.push(OwnedElement::new("", "C", None, vec![b'z'; 1010 - fixed]));
        let body = encode_message_v0(&els);
        assert_eq!(body.len(), 1010);
        let mut framed = Vec::new();
        encode_package(&body, HeaderOrder::TypeFirst, None, &mut framed);

        let mut expect = vec![0x0c];
        expect.extend_from_slice(b"content-type\x00\x16application/x-jxta-msg");
        expect.push(0x0e);
        expect.extend_from_slice(b"content-length\x00\x08\0\0\0\0\0\0\x03\xf2");
        expect.push(0x00);
        expect.extend_from_slice(b"jxmg\x00\x00\x01\x00\x03jim\x00\x04");
        expect.extend_from_slice(b"jxel\x02\x01\x00\x08Presence\x00\x16text/xml;charset=UTF-8");
        expect.extend_from_slice(&[0, 0, 0, 0xb5]);
        assert_eq!(expect.len(), 121);
        assert_eq!(&framed[..121], &expect[..]);
        assert_eq!(&framed[121..126], b"<?xml");

        let HeaderParse::Complete(h) = parse_package_header(&framed, 1 << 20) else {
            panic!()
        };
        assert_eq!((h.header_len, h.content_length), (63, 1010));
        let msg = decode_message(&framed[63..]).unwrap();
        assert_eq!(msg.version, 0);
        assert_eq!(msg.elements.len(), 4);
        let e = &msg.elements[0];
        assert_eq!((e.namespace.as_ref(), e.name.as_ref()), ("jim", "Presence"));
        assert_eq!(e.mime.as_deref(), Some("text/xml;charset=UTF-8"));
        assert_eq!(e.content.len(), 181);
        assert_eq!(msg.elements[3].mime, None);
        assert_eq!(msg.elements[3].mime_or_default(), MIME_DEFAULT);
        let back: Vec<OwnedElement> = msg.elements.iter().map(Element::to_owned_element).collect();
        assert_eq!(back, els);
    }

    /// A recycled buffer keeps its allocation (the point of recycling), and decoding
    /// into it, with or without a smaller message's elements before, decodes as a
    /// fresh `Vec` does, for both versions.
    #[test]
    fn recycled_elements_keep_their_buffer() {
        let els: Vec<OwnedElement> = (0..6)
            .map(|i| OwnedElement::new("", &format!("e{i}"), Some("text/plain"), "x"))
            .collect();
        let big = encode_message_v0(&els);
        let small = encode_message_v1(&els[..2]);
        let mut spare: Vec<Element<'static>> = Vec::new();
        let mut last_ptr = None;
        for (i, body) in [&big, &small, &big, &small, &big].into_iter().enumerate() {
            let msg = decode_message_in(body, recycle_elements(spare)).unwrap();
            assert_eq!(msg, decode_message(body).unwrap());
            let (cap, ptr) = (msg.elements.capacity(), msg.elements.as_ptr() as usize);
            if let Some(p) = last_ptr {
                assert_eq!(ptr, p, "the buffer was not reused");
            }
            last_ptr = Some(ptr);
            spare = if i % 2 == 0 {
                recycle_elements(msg.elements)
            } else {
                msg.into_spare()
            };
            assert!(spare.is_empty());
            assert_eq!(spare.capacity(), cap);
        }
    }

    /// Where the fast path answers, it answers what the general decoder answers and
    /// leaves after it the bytes the general decoder leaves. Run over JXSE-like
    /// elements with bytes changed or cut anywhere; and the whole message, where its
    /// head is intact, decodes as the general decoder alone decodes it, element after
    /// element (the old path), errors included.
    #[test]
    fn fast_element_v0_is_decode_element_v0() {
        let els = [
            OwnedElement::new(
                "jxta",
                "EndpointSourceAddress",
                Some("text/plain"),
                "tcp://x",
            ),
            OwnedElement::new("", "payload", None, "<x/>"),
            OwnedElement::new("jim", "Gr\u{fc}\u{df}e", Some("text/xml"), ""),
            // A type of 130 bytes: its length's low byte is not ASCII.
            OwnedElement::new("", "long", Some(&"t".repeat(130)), "z"),
        ];
        let body = encode_message_v0(&els);
        // The elements start after the header and the namespace table (`jim`).
        let start = b"jxmg\x00\x00\x01\x00\x03jim\x00\x04".len();
        assert_eq!(&body[start..start + 4], ELEMENT_SIGNATURE);
        let namespaces = ["", "jxta", "jim"];
        // The old path: the general decoder for every element.
        fn general<'a>(
            bytes: &'a [u8],
            start: usize,
            namespaces: &[&'a str],
        ) -> Result<Vec<Element<'a>>, JxtaError> {
            let mut r = Reader::new(bytes);
            r.pos = start - 2;
            let count = r.u16("element count")?;
            (0..count)
                .map(|_| decode_element_v0(&mut r, namespaces, 0))
                .collect()
        }
        let mut fast_taken = 0;
        // Every element in turn, as `decode_v0` reads them.
        let mut check = |bytes: &[u8]| {
            if bytes.get(..start) == body.get(..start) {
                let whole = decode_message(bytes).map(|m| m.elements);
                assert_eq!(whole, general(bytes, start, &namespaces), "{bytes:?}");
            }
            let mut r = Reader::new(bytes);
            r.pos = start;
            for _ in 0..els.len() {
                let mut slow = r;
                let expect = decode_element_v0(&mut slow, &namespaces, 0);
                let at = bytes.get(r.pos..).unwrap_or_default();
                if let Some((e, rest)) = fast_element_v0(at, &namespaces) {
                    fast_taken += 1;
                    assert_eq!(Ok(e), expect, "{bytes:?}");
                    assert_eq!(bytes.len() - rest.len(), slow.pos, "{bytes:?}");
                } else if expect.is_err() {
                    return;
                }
                r = slow;
            }
        };
        for at in start..body.len() {
            for flip in [0x01u8, 0x02, 0x04, 0x80, 0xff] {
                let mut b = body.clone();
                b[at] ^= flip;
                check(&b);
            }
            check(&body[..at]);
        }
        check(&body);
        // The whole body: every element by the fast path, the non-ASCII name and the
        // long type's length past the one-pass check included.
        let (mut out, mut rest) = (Vec::new(), &body[start..]);
        for _ in 0..els.len() {
            let (e, after) = fast_element_v0(rest, &namespaces).expect("fast path");
            out.push(e.to_owned_element());
            rest = after;
        }
        assert_eq!((out, rest), (els.to_vec(), &b""[..]));
        // Most changes (in content, or to other ASCII) keep the elements decodable.
        assert!(fast_taken > 3 * body.len(), "{fast_taken}");
    }

    /// A table that has counted JXSE-like messages (so holds their skeletons) decodes
    /// those messages, changed at every byte or cut anywhere, as the decoder alone:
    /// the same elements or the same error. Unchanged, each is decoded by its skeleton.
    #[test]
    fn known_skeletons_decode_as_the_decoder() {
        let messages = [
            vec![
                OwnedElement::new("jim", "Presence", Some("text/xml;charset=UTF-8"), "<P/>"),
                OwnedElement::new("jxta", "EndpointRouterMsg", Some("text/xml"), "r"),
                OwnedElement::new("jxta", "EndpointSourceAddress", Some("text/plain"), "s"),
                OwnedElement::new("", "untyped", None, ""),
            ],
            vec![
                OwnedElement::new("", "Gr\u{fc}\u{df}e", Some("t\u{e9}xt"), "x"),
                OwnedElement::new("", "long", Some(&"t".repeat(130)), "z"),
            ],
        ];
        let bodies: Vec<Vec<u8>> = messages.iter().map(|m| encode_message_v0(m)).collect();
        let mut names = ElementNames::default();
        for body in &bodies {
            names.count_decoded(&decode_message(body).unwrap());
        }
        fn plain(b: &[u8]) -> Result<(u8, Vec<Element<'_>>), JxtaError> {
            decode_message(b).map(|m| (m.version, m.elements))
        }
        let mut by_skeleton = 0;
        let mut check = |b: &[u8]| {
            let known = decode_message_known(b, Vec::new(), &names);
            by_skeleton += usize::from(known.as_ref().is_ok_and(|m| m.layout().is_some()));
            assert_eq!(known.map(|m| (m.version, m.elements)), plain(b), "{b:?}");
        };
        for body in &bodies {
            check(body);
            changed_and_cut(body, &mut check);
        }
        // The two unchanged, and those changed in a content only.
        assert!(by_skeleton > 2 * 4, "{by_skeleton}");
        for body in &bodies {
            let m = decode_message_known(body, Vec::new(), &names).unwrap();
            assert!(m.layout().is_some());
        }
    }

    /// The entry found by a message's first bytes is the one the layout's pair gives
    /// (the decoder before the index), and the message decodes as without skeletons:
    /// layouts that share their first bytes (the guess then wrong for one), more
    /// layouts than entries (entries replaced, their places left behind), one too short
    /// to have a place, and every message changed at every byte.
    #[test]
    fn first_bytes_find_the_pairs_entry() {
        let el = |name: &str, content: &str| {
            OwnedElement::new("jxta", name, Some("text/xml;charset=UTF-8"), content)
        };
        let mut bodies = vec![
            // Same first bytes, the second element's name differs.
            encode_message_v0(&[el("jxta-NetGroupIRes", "a"), el("second", "b")]),
            encode_message_v0(&[el("jxta-NetGroupIRes", "c"), el("Second", "d")]),
            // Shorter than the first bytes before its first content.
            encode_message_v0(&[OwnedElement::new("", "s", None, "0123456789abcdef0123")]),
        ];
        for k in 0..80 {
            bodies.push(encode_message_v0(&[
                el(&format!("layout-{k:03}"), "<P/>"),
                el("EndpointSourceAddress", "x"),
            ]));
        }
        let mut names = ElementNames::default();
        for body in &bodies {
            names.count_decoded(&decode_message(body).unwrap());
        }
        // The entry by the layout's pair alone.
        let by_pair = |b: &[u8]| {
            let from_table = v0_from_table(b)?;
            let pair = layout_pair(from_table, &names, None)?;
            pair.into_iter().flatten().find(|&i| {
                names
                    .skeleton(i)
                    .is_some_and(|s| s.decode(&mut Vec::new(), from_table))
            })
        };
        // Whether the message was decoded by a skeleton, and that found by its first
        // bytes.
        let check = |b: &[u8]| {
            let decoded = decode_message_known(b, Vec::new(), &names);
            let layout = decoded.as_ref().ok().and_then(Message::layout);
            assert_eq!(layout.map(|(i, _)| i), by_pair(b), "{b:?}");
            let plain = decode_message(b).map(|m| (m.version, m.elements));
            assert_eq!(decoded.map(|m| (m.version, m.elements)), plain, "{b:?}");
            let guess = b.get(V0_TABLE_AT..).and_then(|t| names.by_first_bytes(t));
            (
                layout.is_some(),
                layout.is_some() && guess == layout.map(|(i, _)| i),
            )
        };
        let (mut known, mut guessed) = (0, 0);
        for body in &bodies {
            let (k, g) = check(body);
            known += usize::from(k);
            guessed += usize::from(g);
        }
        // Most layouts are held (some pairs overflow), and most of those found by
        // their first bytes.
        assert!(known >= 50 && guessed >= 40, "{known} {guessed}");
        for body in bodies.iter().take(4).chain(bodies.last()) {
            changed_and_cut(body, &mut |b| {
                check(b);
            });
        }
    }

    /// Namespaces the skeletons' decoder takes from the table unchecked: declared
    /// non-ASCII ones, two or three, decode by the skeleton as the decoder decodes
    /// them; their bytes broken (a byte that is no UTF-8, a multi-byte character cut)
    /// or changed give the decoder's error or elements. Fails if a head's namespace
    /// were taken from the wrong place of the table.
    #[test]
    fn namespaces_cut_unchecked() {
        let two = vec![
            OwnedElement::new("n\u{e4}me", "a", Some("text/xml"), "<P/>"),
            OwnedElement::new("\u{3b1}\u{3b2}", "b", None, "x"),
            OwnedElement::new("jxta", "c", None, "y"),
        ];
        let three = vec![
            OwnedElement::new("one", "a", None, "1"),
            OwnedElement::new("", "b", None, "2"),
            OwnedElement::new("three", "c", None, "3"),
            OwnedElement::new("two", "d", None, "4"),
        ];
        let (two, three) = (encode_message_v0(&two), encode_message_v0(&three));
        let mut names = ElementNames::default();
        for body in [&two, &three] {
            names.count_decoded(&decode_message(body).unwrap());
        }
        let both = |b: &[u8]| {
            let known = decode_message_known(b, Vec::new(), &names);
            let layout = known.as_ref().ok().and_then(Message::layout);
            let plain = decode_message(b).map(|m| (m.version, m.elements));
            assert_eq!(known.map(|m| (m.version, m.elements)), plain, "{b:?}");
            layout
        };
        assert!(both(&two).is_some());
        assert!(both(&three).is_some());
        // The table: every byte of it broken alone, or replaced by another letter.
        for body in [&two, &three] {
            for i in V0_TABLE_AT..V0_TABLE_AT + 24 {
                for b in [0xffu8, 0xc3, 0x80, b'z', 0x00, 0x05] {
                    let mut changed = body.clone();
                    changed[i] = b;
                    both(&changed);
                }
            }
        }
    }

    /// `declared_namespace` is the decoder's table less the predefined two, for tables
    /// of 0 to 3 namespaces; `None` past the count, and for a table cut anywhere.
    #[test]
    fn declared_namespaces_are_the_decoders() {
        let all = ["a", "", "n\u{e4}me", "three"];
        for n in 0..=3 {
            let elements: Vec<OwnedElement> = all[..n]
                .iter()
                .map(|ns| OwnedElement::new(ns, "e", None, ""))
                .collect();
            let body = encode_message_v0(&elements);
            let mut r = Reader::new(&body[V0_TABLE_AT..]);
            let count = r.u16("namespace count").unwrap();
            let declared: Vec<&str> = (0..count).map(|_| v0_namespace(&mut r).unwrap()).collect();
            let table = &body[V0_TABLE_AT..V0_TABLE_AT + r.pos];
            for d in 0..declared.len() + 2 {
                assert_eq!(
                    declared_namespace(table, count, d),
                    declared.get(d).map(|ns| ns.as_bytes()),
                    "{n} {d}"
                );
                for cut in 0..table.len() {
                    if let Some(ns) = declared_namespace(&table[..cut], count, d) {
                        assert_eq!(Some(ns), declared.get(d).map(|ns| ns.as_bytes()));
                    }
                }
            }
        }
    }

    /// A skeleton is made only of a version 0 message whose every element the fast
    /// path takes, of at most as many elements and bytes as it holds.
    #[test]
    fn skeletons_of_what_the_fast_path_takes() {
        let plain = OwnedElement::new("jxta", "EndpointRouterMsg", Some("text/xml"), "r");
        let mut signed = plain.clone();
        signed.signature = Some(Box::new(plain.clone()));
        assert!(Skeleton::of(&encode_message_v0(std::slice::from_ref(&plain))).is_some());
        assert!(Skeleton::of(&encode_message_v0(&vec![plain.clone(); 8])).is_some());
        assert!(Skeleton::of(&encode_message_v0(&vec![plain.clone(); 9])).is_none());
        assert!(Skeleton::of(&encode_message_v1(std::slice::from_ref(&plain))).is_none());
        assert!(Skeleton::of(&encode_message_v0(&[plain.clone(), signed])).is_none());
        let wide = OwnedElement::new("", &"n".repeat(SKELETON_BYTES), None, "");
        assert!(Skeleton::of(&encode_message_v0(&[wide])).is_none());
    }

    /// `same_head` is `==` at every length, whichever byte differs.
    /// `check` run on `body` changed at every byte by four masks, and cut at every
    /// length.
    fn changed_and_cut(body: &[u8], check: &mut impl FnMut(&[u8])) {
        for at in 0..body.len() {
            for flip in [0x01u8, 0x20, 0x80, 0xff] {
                let mut b = body.to_vec();
                b[at] ^= flip;
                check(&b);
            }
            check(&body[..at]);
        }
    }

    #[test]
    fn same_head_is_slice_equality() {
        crate::jxta::names::check_slice_equality(same_head, 90);
    }

    /// Written into the room while the fast path takes them, the elements are those
    /// the general decoder makes, in order, after those already there; the length and
    /// the bytes left say how far it went. With room for all and for fewer, and an
    /// element the fast path refuses (a signature) at every place.
    #[test]
    fn fast_elements_v0_fill_the_room() {
        let namespaces = ["", "jxta"];
        let plain = |i: usize| {
            OwnedElement::new(
                "jxta",
                &format!("e{i}"),
                Some("text/plain"),
                format!("c{i}"),
            )
        };
        for refused in [None, Some(0), Some(1), Some(4)] {
            let els: Vec<OwnedElement> = (0..5)
                .map(|i| {
                    let mut e = plain(i);
                    if Some(i) == refused {
                        e.signature = Some(Box::new(plain(9)));
                    }
                    e
                })
                .collect();
            let body = encode_message_v0(&els);
            let start = b"jxmg\x00\x00\x00\x00\x05".len();
            // Where each element ends, by the general decoder.
            let mut r = Reader::new(&body);
            r.pos = start;
            let mut ends = vec![start];
            for _ in 0..els.len() {
                decode_element_v0(&mut r, &namespaces, 0).expect("decodes");
                ends.push(r.pos);
            }
            for room in [0, 2, 5, 8] {
                for count in [0, 3, 5] {
                    let mut elements = Vec::with_capacity(room + 1);
                    elements.push(Element::clone(&decode_message(&body).unwrap().elements[2]));
                    let spare = elements.capacity() - 1;
                    let mut rest = &body[start..];
                    let n = fast_elements_v0(&mut elements, count, &mut rest, &namespaces);
                    let want = count.min(spare).min(refused.unwrap_or(5));
                    let case = format!("{refused:?} room {room} count {count}");
                    assert_eq!(n, want, "{case}");
                    assert_eq!(elements.len(), 1 + want, "{case}");
                    let got: Vec<_> = elements[1..]
                        .iter()
                        .map(Element::to_owned_element)
                        .collect();
                    assert_eq!(got, els[..want], "{case}");
                    assert_eq!(elements[0].name, "e2", "{case}");
                    assert_eq!(body.len() - rest.len(), ends[want], "{case}");
                }
            }
        }
    }

    /// Namespace tables on the stack and past it: every element keeps its own namespace
    /// (one over the stack table, or a table cut short, would name another or fail).
    #[test]
    fn namespace_tables_of_every_size_decode() {
        for declared in [
            0usize,
            1,
            INLINE_NAMESPACES - 3,
            INLINE_NAMESPACES - 2,
            INLINE_NAMESPACES - 1,
            40,
        ] {
            let els: Vec<OwnedElement> = (0..declared.max(1))
                .map(|i| {
                    let ns = if declared == 0 {
                        String::new()
                    } else {
                        format!("ns{i}")
                    };
                    OwnedElement::new(&ns, &format!("e{i}"), None, format!("c{i}"))
                })
                .collect();
            let body = encode_message_v0(&els);
            let m = decode_message(&body).expect("decodes");
            let got: Vec<OwnedElement> = m.elements.iter().map(Element::to_owned_element).collect();
            assert_eq!(got, els, "{declared} namespaces");
        }
        // A count promising more namespaces than the bytes hold is an error either way.
        for count in [3u16, 60] {
            let mut b = b"jxmg\x00".to_vec();
            b.extend_from_slice(&count.to_be_bytes());
            b.extend_from_slice(b"\x00\x01a");
            assert!(decode_message(&b).is_err(), "{count}");
        }
    }

    #[test]
    fn untyped_element_flags_zero_decodes() {
        // JXSE 2.7's EndpointRouterMsg-fingerprint: ns jxta, flags 0x00, binary content.
        let mut b = b"jxmg\x00\x00\x00\x00\x01jxel\x01\x00".to_vec();
        b.extend_from_slice(
            b"\x00\x1dEndpointRouterMsg-fingerprint\x00\x00\x00\x04\xde\xad\xbe\xef",
        );
        let m = decode_message(&b).unwrap();
        let e = m.element("jxta", "EndpointRouterMsg-fingerprint").unwrap();
        assert_eq!(
            (e.mime.clone(), e.content),
            (None, &[0xde, 0xad, 0xbe, 0xef][..])
        );
    }

    #[test]
    fn v1_utf16_literal_names_u64_lengths_and_signature() {
        let utf16 = |s: &str| -> Vec<u8> {
            let v: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
            let mut out = (v.len() as u16).to_be_bytes().to_vec();
            out.extend(v);
            out
        };
        let mut b = b"jxmg\x01\x01\x00\x02".to_vec();
        b.extend(utf16("jim"));
        b.extend(utf16("text/xml"));
        b.extend_from_slice(&[0, 2]);
        // Element 1: literal name "Presence", type id 3, 64-bit length, signature.
        b.extend_from_slice(b"jxel");
        b.push(0x01 | 0x02 | 0x04 | 0x08);
        b.extend_from_slice(&[0, 2]);
        b.extend(utf16("Presence"));
        b.extend_from_slice(&[0, 3]);
        b.extend_from_slice(&3u64.to_be_bytes());
        b.extend_from_slice(b"<a>");
        // its signature element: name id 0 (""), 32-bit length.
        b.extend_from_slice(b"jxel\x00\x00\x01\x00\x00\x00\x00\x00\x01S");
        // Element 2: name by id 2 ("jim"), no type.
        b.extend_from_slice(b"jxel\x00\x00\x00\x00\x02\x00\x00\x00\x00");
        let m = decode_message(&b).unwrap();
        assert_eq!(m.version, 1);
        let e = &m.elements[0];
        assert_eq!((e.namespace.as_ref(), e.name.as_ref()), ("jim", "Presence"));
        assert!(matches!(e.name, Cow::Owned(_)));
        assert!(e.owns_memory() && m.owns);
        assert!(m.elements[1].owns_memory(), "namespace `jim` transcoded");
        assert_eq!(e.mime.as_deref(), Some("text/xml"));
        assert_eq!(e.content, b"<a>");
        let sig = e.signature.as_ref().unwrap();
        assert_eq!((sig.namespace.as_ref(), sig.content), ("jxta", &b"S"[..]));
        assert_eq!(m.elements[1].name, "jim");
        // A name id past the table is an error.
        let mut bad = b.clone();
        let at = bad.len() - 8;
        bad[at] = 0x7f;
        assert!(matches!(decode_message(&bad), Err(JxtaError::BadNameId(_))));
    }

    #[test]
    fn nested_message_element() {
        let inner = encode_message_v0(&[OwnedElement::new("", "x", None, "1")]);
        let outer =
            encode_message_v0(&[OwnedElement::new("jxta", "m", Some(MIME_JXTA_MSG), inner)]);
        let m = decode_message(&outer).unwrap();
        let nested = m.elements[0].as_message().unwrap().unwrap();
        assert_eq!(nested.elements[0].content, b"1");
        assert!(
            !m.elements[0].owns_memory() && !m.owns,
            "version 0, borrowed"
        );
        let mut signed = OwnedElement::new("", "x", None, "1");
        signed.signature = Some(Box::new(OwnedElement::new("", "s", None, "")));
        let body = encode_message_v0(&[signed]);
        let signed = decode_message(&body).unwrap();
        assert!(signed.elements[0].owns_memory() && signed.owns);
        assert!(m.elements[0].signature.is_none());
    }

    #[test]
    fn hostile_messages_are_errors() {
        assert!(matches!(
            decode_message(b"jxm"),
            Err(JxtaError::Truncated(_))
        ));
        assert!(matches!(
            decode_message(b"JXMG\x00"),
            Err(JxtaError::BadSignature(_))
        ));
        assert!(matches!(
            decode_message(b"jxmg\x07"),
            Err(JxtaError::UnsupportedVersion(7))
        ));
        // Counts of 65535 with nothing behind them: error, small allocation.
        assert!(decode_message(b"jxmg\x00\xff\xff").is_err());
        assert!(decode_message(b"jxmg\x00\x00\x00\xff\xff").is_err());
        // Content length 2^32-1 with 3 bytes present.
        assert!(
            decode_message(b"jxmg\x00\x00\x00\x00\x01jxel\x00\x00\x00\x00\xff\xff\xff\xffabc")
                .is_err()
        );
        // v1 content length 2^64-1.
        let mut v1 = b"jxmg\x01\x00\x00\x00\x00\x01jxel\x01\x00\x00\x00\x00".to_vec();
        v1.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(decode_message(&v1), Err(JxtaError::Truncated(_))));
        // Namespace id past the table.
        assert!(matches!(
            decode_message(b"jxmg\x00\x00\x00\x00\x01jxel\x05\x00\x00\x00\x00\x00\x00\x00"),
            Err(JxtaError::BadNameId(5))
        ));
        // Endless signature chain: bounded depth.
        let mut deep = b"jxmg\x00\x00\x00\x00\x01".to_vec();
        for _ in 0..100 {
            deep.extend_from_slice(b"jxel\x00\x04\x00\x00\x00\x00\x00\x00");
        }
        assert_eq!(decode_message(&deep), Err(JxtaError::TooDeep));
    }

    fn arb_element(depth: u32) -> BoxedStrategy<OwnedElement> {
        let leaf = (
            prop::sample::select(vec!["", "jxta", "jim", "pingpong", "ns-ü"]),
            ".{0,12}",
            prop::option::of(prop::sample::select(vec![
                "text/xml;charset=UTF-8",
                "application/gzip",
                "text/plain",
            ])),
            prop::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(ns, name, mime, content)| OwnedElement::new(ns, &name, mime, content));
        if depth == 0 {
            return leaf.boxed();
        }
        (leaf, prop::option::of(arb_element(depth - 1)))
            .prop_map(|(mut e, sig)| {
                e.signature = sig.map(Box::new);
                e
            })
            .boxed()
    }

    proptest! {
        #[test]
        fn round_trip_v0_and_v1(els in prop::collection::vec(arb_element(2), 0..8)) {
            for (v, body) in [(0, encode_message_v0(&els)), (1, encode_message_v1(&els))] {
                let m = decode_message(&body).unwrap();
                prop_assert_eq!(m.version, v);
                let back: Vec<OwnedElement> = m.elements.iter().map(Element::to_owned_element).collect();
                prop_assert_eq!(&back, &els);
                // A message said to own nothing is forgotten, not dropped: it must not.
                prop_assert_eq!(m.owns, m.elements.iter().any(Element::owns_memory));
            }
        }

        #[test]
        fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..512), v in 0u8..3) {
            let _ = decode_message(&bytes);
            // Also with a valid prefix, to get past the signature checks.
            let mut b = b"jxmg".to_vec();
            b.push(v);
            b.append(&mut bytes);
            let _ = decode_message(&b);
        }
    }
}
