//! Decoding and encoding of one JIM document.
//!
//! Over 600 lines: decoder and encoder of one document, kept together.

use std::fmt::Write as _;

use quick_xml::events::{BytesRef, Event};
use quick_xml::Reader;

/// Largest JIM document decoded unless told otherwise (`--max-document`). Real
/// PING/PONG documents are ~300 bytes, but peers pad or extend them, and a JXTA
/// message may be 16 MiB; 1 MiB decodes every document seen so far while bounding the
/// work one element can cost (the decoder is linear). It only applies once the root
/// is known to be a JIM root, so large non-JIM XML elements (advertisements, resolver
/// responses) are still cheaply classified as "not JIM".
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Deepest element nesting accepted. JIM documents are 3 levels deep; the cap keeps a
/// 10,000-deep hostile document from costing anything more than a quick error.
pub const MAX_DEPTH: usize = 64;

/// A peer's presence state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Busy,
    Away,
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Busy => "busy",
            Status::Away => "away",
            Status::Offline => "offline",
        }
    }

    /// Parses a status value in any letter case (real peers differ), ignoring
    /// surrounding whitespace. `None` for anything else.
    pub fn parse(text: &str) -> Option<Status> {
        let t = text.trim();
        [Status::Online, Status::Busy, Status::Away, Status::Offline]
            .into_iter()
            .find(|s| t.eq_ignore_ascii_case(s.as_str()))
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which JIM document this is (its root element).
///
/// `Ping` is the `Default` only so that `Document` can derive `Default` for building
/// documents field by field; `parse` always sets the kind from the root element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Kind {
    #[default]
    Ping,
    Pong,
    Message,
}

impl Kind {
    pub fn root_name(self) -> &'static str {
        match self {
            Kind::Ping => "PING",
            Kind::Pong => "PONG",
            Kind::Message => "MESSAGE",
        }
    }

    fn from_root(local: &[u8]) -> Option<Kind> {
        match local {
            b"PING" => Some(Kind::Ping),
            b"PONG" => Some(Kind::Pong),
            b"MESSAGE" => Some(Kind::Message),
            _ => None,
        }
    }
}

/// One decoded JIM document. Fields are `None` when the document does not carry them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Document {
    pub kind: Kind,
    /// `Buddy/name` (PING) or `BuddyStatus/name` (PONG); falls back to `from` when the
    /// document has neither (the JXSE variant seen in the real capture).
    pub name: Option<String>,
    /// `Buddy/peerID` or `BuddyStatus/peerID`, as written (normalise with `PeerId::parse`).
    pub peer_id: Option<String>,
    pub status: Option<Status>,
    /// The raw status text when it is not one of the four known states, kept so the
    /// report can show what was seen.
    pub status_text: Option<String>,
    /// The correlator token, trimmed; `None` when absent or empty.
    pub correlator: Option<String>,
    /// Bytes of the `<correlator>…</correlator>` element exactly as on the wire, from
    /// the `<` of the start tag to the `>` of the end tag (prefix included); 0 without
    /// a correlator. This is the study's correlator overhead, measured, not assumed.
    pub correlator_bytes: u32,
    /// Bytes of the element content holding the document (the whole JIM document as
    /// on the wire); set by [`parse`], 0 from the lower-level decoders.
    pub document_bytes: u32,
    /// `from`, `to` and `body` are `None` from [`parse_for_matcher`].
    pub from: Option<String>,
    pub to: Option<String>,
    pub body: Option<String>,
}

/// Why a document that looked like a JIM document could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JimError {
    #[error("JIM document is not valid UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("JIM {kind:?} document of {len} bytes exceeds the {max}-byte limit (--max-document)")]
    TooLarge { kind: Kind, len: usize, max: usize },
    #[error("JIM document nests elements deeper than {max}")]
    TooDeep { max: usize },
    #[error("entity reference &{0}; is not predefined (custom and external entities are never expanded)")]
    UnknownEntity(String),
    #[error("invalid character reference &{0};")]
    InvalidCharRef(String),
    #[error("JIM document ends inside an element")]
    Truncated,
    #[error("content after the root element")]
    TrailingContent,
    #[error("XML syntax error at byte {offset}: {message}")]
    Syntax { offset: u64, message: String },
}

/// Which field a text node belongs to, decided when its element starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Name,
    PeerId,
    Status,
    Correlator,
    From,
    To,
    Body,
}

/// Outcome of the internal decoder, which distinguishes "no root found" from
/// "a non-JIM root" so that invalid UTF-8 in non-JIM XML is not reported as JIM.
enum Decoded {
    NotJim,
    Jim(Document),
}

/// Decodes one element's content.
///
/// `Ok(None)`: not a JIM document (not XML at all, no root element, or a root other
/// than PING/PONG/MESSAGE). `Err`: the root is a JIM root (or the bytes are XML whose
/// root cannot be read) but the document is not well formed or breaks a safety limit;
/// the caller counts it.
pub fn parse(content: &[u8]) -> Result<Option<Document>, JimError> {
    parse_limited(content, DEFAULT_MAX_DOCUMENT_BYTES)
}

/// [`parse`] with a JIM document size limit of `max_document` bytes.
pub fn parse_limited(content: &[u8], max_document: usize) -> Result<Option<Document>, JimError> {
    let mut doc = Document::default();
    Ok(parse_texts(content, max_document, Texts::All, &mut doc)?.then_some(doc))
}

/// [`parse_limited`] for the matcher, which reads neither `from` (but as the name's
/// fallback), `to` nor `body`: those are left `None`, the rest is `parse_limited`'s.
/// Building the strings nobody read was ~9 % of decoding a document.
pub fn parse_for_matcher(
    content: &[u8],
    max_document: usize,
) -> Result<Option<Document>, JimError> {
    let mut doc = Document::default();
    Ok(parse_for_matcher_into(content, max_document, &mut doc)?.then_some(doc))
}

/// [`parse_for_matcher`] into `doc`, reusing the strings it holds: `Ok(true)` when
/// `doc` now is the decoded document; `Ok(false)` (not JIM) and `Err` leave it as it
/// was. The message stage decodes every document into one `Document`, whose name
/// and correlator strings are then refilled instead of allocated and freed for each
/// document (~190 instructions a document on jxta-0.1g; the matcher shares a PING's
/// correlator from its own copies, and no longer takes the string).
pub fn parse_for_matcher_into(
    content: &[u8],
    max_document: usize,
    doc: &mut Document,
) -> Result<bool, JimError> {
    parse_texts(content, max_document, Texts::Matched, doc)
}

/// Which text fields a decoded document carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Texts {
    All,
    /// Without `from`, `to` and `body` (see [`parse_for_matcher`]).
    Matched,
}

/// Decodes `content` into `doc` (see [`parse_for_matcher_into`]): `Ok(true)` when it
/// is a JIM document, and `doc` is untouched otherwise.
#[inline(always)]
fn parse_texts(
    content: &[u8],
    max_document: usize,
    texts: Texts,
    doc: &mut Document,
) -> Result<bool, JimError> {
    // Cheap rejection first: most elements of a JXTA message are not XML at all.
    let body = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => {}
        _ => return Ok(false),
    }
    let size = u32::try_from(content.len()).unwrap_or(u32::MAX);
    if body.len() <= max_document {
        if let Some(found) = plain(body, texts) {
            found.fill(doc, size);
            return Ok(true);
        }
    }
    let Some(mut d) = parse_full_limited(content, max_document)? else {
        return Ok(false);
    };
    d.document_bytes = size;
    if texts == Texts::Matched {
        (d.from, d.to, d.body) = (None, None, None);
    }
    *doc = d;
    Ok(true)
}

/// [`parse`] without the plain path: every document through the XML decoder. The
/// reference the plain path is checked against (tests, the `jim` fuzz target).
#[doc(hidden)]
pub fn parse_full(content: &[u8]) -> Result<Option<Document>, JimError> {
    parse_full_limited(content, DEFAULT_MAX_DOCUMENT_BYTES)
}

fn parse_full_limited(content: &[u8], max_document: usize) -> Result<Option<Document>, JimError> {
    let body = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => {}
        _ => return Ok(None),
    }
    match std::str::from_utf8(body) {
        Ok(text) => match decode(text, body.len(), max_document)? {
            Decoded::NotJim => Ok(None),
            Decoded::Jim(doc) => Ok(Some(doc)),
        },
        Err(e) => {
            // Decode the valid prefix only to learn the root: a non-JIM root means the
            // element is simply not ours; anything else is a broken JIM document.
            let valid_up_to = e.valid_up_to();
            let prefix = std::str::from_utf8(&body[..valid_up_to]).unwrap_or_default();
            match decode(prefix, body.len(), max_document) {
                Ok(Decoded::NotJim) => Ok(None),
                _ => Err(JimError::InvalidUtf8 { valid_up_to }),
            }
        }
    }
}

fn syntax(reader: &Reader<&[u8]>, e: impl std::fmt::Display) -> JimError {
    JimError::Syntax {
        offset: reader.error_position(),
        message: e.to_string(),
    }
}

/// Resolves a reference to one of the five predefined entities or a character
/// reference. Anything else (a DTD-declared or external entity) is refused: expanding
/// them is how billion-laughs and XXE attacks work.
fn resolve_ref(r: &BytesRef<'_>) -> Result<char, JimError> {
    let name: &str = r;
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c),
            _ => Err(JimError::InvalidCharRef(truncate(name, 32).to_owned())),
        };
    }
    match name {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ => Err(JimError::UnknownEntity(truncate(name, 32).to_owned())),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Maps an element to the field it carries, from its local name and where it is:
/// direct children of the root, or children of `Buddy` / `BuddyStatus`.
/// The depth is matched first, then the name (one switch on its length and a word
/// comparison); a match on the triple compared the name byte by byte once per arm.
fn field_for(depth: usize, parent_is_buddy: bool, local: &[u8]) -> Option<Field> {
    match depth {
        2 => {
            if local == b"correlator" {
                Some(Field::Correlator)
            } else if local == b"from" {
                Some(Field::From)
            } else if local == b"to" {
                Some(Field::To)
            } else if local == b"body" {
                Some(Field::Body)
            } else {
                None
            }
        }
        3 if parent_is_buddy => {
            if local == b"name" {
                Some(Field::Name)
            } else if local == b"peerID" {
                Some(Field::PeerId)
            } else if local == b"status" {
                Some(Field::Status)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `tag` starts with `name` (its bytes compared as words: `N` is known here).
#[inline(always)]
fn starts_with_word<const N: usize>(tag: &[u8], name: &[u8; N]) -> bool {
    tag.len() >= N && word::<N>(tag, 0) == *name
}

/// A field's start tag at `depth`, from its name's first byte: the name's length and
/// the field when the tag is exactly the field's name then `>`. That is what scanning
/// the name and [`field_for`] give (a field's name is all name bytes, starting with a
/// letter, and `>` ends the scan), without the scan. `None`: scan it.
#[inline(always)]
fn field_tag(tag: &[u8], depth: usize, in_buddy: bool) -> Option<(usize, Field)> {
    let found = match (depth, tag.first()?) {
        (2, b'c') => starts_with_word(tag, b"correlator>").then_some((10, Field::Correlator)),
        (2, b'f') => starts_with_word(tag, b"from>").then_some((4, Field::From)),
        (2, b't') => starts_with_word(tag, b"to>").then_some((2, Field::To)),
        (2, b'b') => starts_with_word(tag, b"body>").then_some((4, Field::Body)),
        (3, b'n') if in_buddy => starts_with_word(tag, b"name>").then_some((4, Field::Name)),
        (3, b'p') if in_buddy => starts_with_word(tag, b"peerID>").then_some((6, Field::PeerId)),
        (3, b's') if in_buddy => starts_with_word(tag, b"status>").then_some((6, Field::Status)),
        _ => None,
    };
    debug_assert!(found.is_none_or(|(len, f)| field_for(depth, in_buddy, &tag[..len]) == Some(f)));
    found
}

/// A start tag [`known_tag`] recognises: a root, or a child of the root that is not a
/// field (`buddy`: `Buddy` or `BuddyStatus`, whose children are fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    Root(Kind),
    Child { buddy: bool },
}

/// The start tags other than fields that documents carry, at `depth` (1: the root),
/// from the name's first byte: the name's length and what it is when the tag is
/// exactly the name then `>`. The roots, `Buddy` and `BuddyStatus` (the spec's and our
/// peers' documents), `seq` and `ts` (JXSE's). That is what scanning the name finds
/// (each is all name bytes, from a letter, and `>` ends the scan), for ~5
/// instructions a byte less. `None`: scan it.
#[inline(always)]
fn known_tag(tag: &[u8], depth: usize) -> Option<(usize, Known)> {
    let child = |buddy| Known::Child { buddy };
    let found = match (depth, tag.first()?) {
        (1, b'P') if starts_with_word(tag, b"PING>") => Some((4, Known::Root(Kind::Ping))),
        (1, b'P') if starts_with_word(tag, b"PONG>") => Some((4, Known::Root(Kind::Pong))),
        (1, b'M') => starts_with_word(tag, b"MESSAGE>").then_some((7, Known::Root(Kind::Message))),
        (2, b's') => starts_with_word(tag, b"seq>").then_some((3, child(false))),
        (2, b't') => starts_with_word(tag, b"ts>").then_some((2, child(false))),
        (2, b'B') if starts_with_word(tag, b"Buddy>") => Some((5, child(true))),
        (2, b'B') => starts_with_word(tag, b"BuddyStatus>").then_some((11, child(true))),
        _ => None,
    };
    debug_assert!(found.is_none_or(|(len, k)| {
        let name = &tag[..len];
        tag[len] == b'>'
            && name.iter().all(|&b| crate::WORD_BYTES[usize::from(b)])
            && field_for(depth, true, name).is_none()
            && match k {
                Known::Root(kind) => Kind::from_root(name) == Some(kind),
                Known::Child { buddy } => buddy == (name == b"Buddy" || name == b"BuddyStatus"),
            }
    }));
    found
}

/// Checks the attributes of a start tag for well-formedness (their values are not
/// used, but a malformed tag makes the whole document malformed).
fn check_attributes(
    reader: &Reader<&[u8]>,
    start: &quick_xml::events::BytesStart<'_>,
) -> Result<(), JimError> {
    for attr in start.attributes() {
        let attr = attr.map_err(|e| syntax(reader, e))?;
        // Only values with references need resolving; unknown entities are refused.
        if attr.value.contains('&') {
            attr.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| syntax(reader, e))?;
        }
    }
    Ok(())
}

/// Per-document decoding state; the text of the field being read accumulates in
/// `text` and is moved into the document when the field's element ends.
struct State {
    doc: Document,
    depth: usize,
    /// Depth-2 element is `Buddy` or `BuddyStatus` (its children are name/peerID/status).
    in_buddy: bool,
    /// The field being read, its depth and the byte offset of its start tag's `<`.
    field: Option<(Field, usize, u64)>,
    text: String,
    root_done: bool,
}

fn decode(text: &str, total_len: usize, max_document: usize) -> Result<Decoded, JimError> {
    let mut reader = Reader::from_str(text);
    {
        let cfg = reader.config_mut();
        cfg.check_end_names = true;
        cfg.allow_unmatched_ends = false;
        cfg.allow_dangling_amp = false;
        cfg.check_comments = true;
        cfg.expand_empty_elements = false;
    }
    let mut st = State {
        doc: Document::default(),
        depth: 0,
        in_buddy: false,
        field: None,
        text: String::new(),
        root_done: false,
    };
    loop {
        let before = reader.buffer_position();
        let event = match reader.read_event() {
            Ok(ev) => ev,
            Err(e) => {
                // Before the root is seen we cannot tell that this is JIM: text that
                // merely starts with '<' (e.g. "<3") must not count as a broken JIM
                // document.
                if st.depth == 0 && !st.root_done {
                    return Ok(Decoded::NotJim);
                }
                return Err(syntax(&reader, e));
            }
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                if st.root_done {
                    return Err(JimError::TrailingContent);
                }
                let local_name = e.local_name();
                let local: &str = local_name.as_ref();
                if st.depth == 0 {
                    let Some(kind) = Kind::from_root(local.as_bytes()) else {
                        return Ok(Decoded::NotJim);
                    };
                    if total_len > max_document {
                        return Err(JimError::TooLarge {
                            kind,
                            len: total_len,
                            max: max_document,
                        });
                    }
                    st.doc.kind = kind;
                }
                check_attributes(&reader, e)?;
                let depth = st.depth + 1;
                if depth > MAX_DEPTH {
                    return Err(JimError::TooDeep { max: MAX_DEPTH });
                }
                if depth == 2 {
                    st.in_buddy = local == "Buddy" || local == "BuddyStatus";
                }
                if st.field.is_none() {
                    if let Some(f) = field_for(depth, st.in_buddy, local.as_bytes()) {
                        if is_empty {
                            // `<correlator/>` and friends carry no value.
                        } else {
                            st.field = Some((f, depth, before));
                            st.text.clear();
                        }
                    }
                }
                if is_empty {
                    if depth == 1 {
                        st.root_done = true;
                    }
                } else {
                    st.depth = depth;
                }
            }
            Event::End(_) => {
                if let Some((f, fdepth, start)) = st.field {
                    if fdepth == st.depth {
                        let end = reader.buffer_position();
                        store(&mut st.doc, f, &st.text, end.saturating_sub(start));
                        st.field = None;
                    }
                }
                if st.depth == 2 {
                    st.in_buddy = false;
                }
                st.depth = st.depth.saturating_sub(1);
                if st.depth == 0 {
                    st.root_done = true;
                }
            }
            Event::Text(t) => {
                let s: &str = &t;
                if st.depth == 0 {
                    // Only whitespace may surround the root element.
                    if !s.trim().is_empty() {
                        if st.root_done {
                            return Err(JimError::TrailingContent);
                        }
                        return Ok(Decoded::NotJim);
                    }
                } else if st.field.is_some_and(|(_, d, _)| d == st.depth) {
                    st.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(c) => {
                if st.depth == 0 {
                    return if st.root_done {
                        Err(JimError::TrailingContent)
                    } else {
                        Ok(Decoded::NotJim)
                    };
                }
                if st.field.is_some_and(|(_, d, _)| d == st.depth) {
                    st.text.push_str(&c.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if st.depth == 0 {
                    return if st.root_done {
                        Err(JimError::TrailingContent)
                    } else {
                        Ok(Decoded::NotJim)
                    };
                }
                let c = resolve_ref(&r)?;
                if st.field.is_some_and(|(_, d, _)| d == st.depth) {
                    st.text.push(c);
                }
            }
            // A DTD is skipped as text: its entity declarations are never used, and
            // references to them fail in `resolve_ref`.
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => {
                if st.depth != 0 {
                    return Err(JimError::Truncated);
                }
                if !st.root_done {
                    return Ok(Decoded::NotJim);
                }
                break;
            }
        }
    }
    Ok(Decoded::Jim(finish_doc(st.doc)))
}

/// A document without `Buddy/name` is named by its `from` (the JXSE variant).
fn finish_doc(mut doc: Document) -> Document {
    if doc.name.is_none() {
        doc.name.clone_from(&doc.from);
    }
    doc
}

/// XML declarations the plain path accepts (byte for byte); any other prolog goes to
/// the full decoder.
const PLAIN_DECLS: [&[u8]; 4] = [
    JXSE_DECL,
    b"<?xml version=\"1.0\" encoding=\"utf-8\"?>",
    b"<?xml version=\"1.0\"?>",
    b"<?xml version='1.0' encoding='UTF-8'?>",
];

/// The declaration JXSE writes, the first of [`PLAIN_DECLS`].
const JXSE_DECL: &[u8; 38] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

/// The length of the plain declaration `bytes` starts with. JXSE's is compared as one
/// array first: `find` over the list called `memcmp` for it (~60 instructions a
/// document).
#[inline(always)]
fn plain_decl(bytes: &[u8]) -> Option<usize> {
    if bytes
        .first_chunk::<38>()
        .is_some_and(|d| same_array(d, JXSE_DECL))
    {
        return Some(JXSE_DECL.len());
    }
    PLAIN_DECLS
        .iter()
        .find(|d| bytes.starts_with(d))
        .map(|d| d.len())
}

/// Bytes that end a text in [`decode_plain`]: `<` (a tag), and what the plain path
/// leaves to the full decoder: `>`, `&` (a reference), CR (line-end normalisation) and
/// anything not ASCII.
const TEXT_STOPS: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i >= 0x80 || matches!(i as u8, b'<' | b'>' | b'&' | b'\r');
        i += 1;
    }
    t
};

/// The documents peers actually send, decoded without an XML parser: ASCII, an
/// optional plain declaration, elements without attributes, prefixes or empty-element
/// tags, text without references, `>`, CR or CDATA, at most three levels, nothing but
/// whitespace around the root. That is a strict subset of what [`decode`] accepts, and
/// for it the result is the same (`decode` itself is the reference: the `jim` fuzz
/// target and the tests compare both on every input the plain path takes). Anything
/// else is `None`, and the full decoder decides. quick-xml costs ~500 instructions an
/// event on these 150-byte documents; this is a third of the whole analysis less.
#[doc(hidden)]
pub fn decode_plain(body: &[u8]) -> Option<Document> {
    plain(body, Texts::All).map(|found| found.into_document(0))
}

/// Where a field's text lies in the document, as byte offsets.
type Span = (usize, usize);

/// The fields of a document on the plain path, as spans: one pass over the bytes
/// records where each field's text is, and the strings are made once at the end (each
/// `store` made and trimmed a `str`, and a name taken from `from` was a clone).
#[derive(Default)]
struct Spans {
    name: Option<Span>,
    peer_id: Option<Span>,
    /// Trimmed; kept even when empty, as `store` keeps an empty status text.
    status: Option<Span>,
    correlator: Option<(Span, u32)>,
    from: Option<Span>,
    to: Option<Span>,
    /// Not trimmed, and kept even when empty, as `store` keeps a body.
    body: Option<Span>,
}

impl Spans {
    /// [`store`] on spans: the same first-occurrence and emptiness rules.
    #[inline(always)]
    fn store(&mut self, bytes: &[u8], field: Field, text: Span, element_bytes: usize) {
        let trimmed = trim_span(bytes, text);
        let non_empty = trimmed.0 < trimmed.1;
        let slot = match field {
            Field::Name => &mut self.name,
            Field::PeerId => &mut self.peer_id,
            Field::From => &mut self.from,
            Field::To => &mut self.to,
            Field::Body => {
                self.body.get_or_insert(text);
                return;
            }
            Field::Status => {
                self.status.get_or_insert(trimmed);
                return;
            }
            Field::Correlator => {
                if self.correlator.is_none() && non_empty {
                    let bytes = u32::try_from(element_bytes).unwrap_or(u32::MAX);
                    self.correlator = Some((trimmed, bytes));
                }
                return;
            }
        };
        if slot.is_none() && non_empty {
            *slot = Some(trimmed);
        }
    }
}

/// What `char::is_whitespace` is on ASCII, which is all the plain path's text holds:
/// `str::trim` on that text trims exactly these bytes.
fn trim_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r' | b' ')
}

/// `str::trim` on an ASCII span, without decoding a character at each end.
fn trim_span(bytes: &[u8], (mut start, mut end): Span) -> Span {
    while start < end && trim_byte(bytes[start]) {
        start += 1;
    }
    while end > start && trim_byte(bytes[end - 1]) {
        end -= 1;
    }
    (start, end)
}

/// The first byte of [`TEXT_STOPS`] in `bytes` from `pos` on, or the end. Sixteen
/// bytes at a time past the first on x86-64, where a text of up to 16 bytes (all of
/// jxta-0.1g's) is one vector compare: byte by byte, the loop cost 7 instructions a
/// byte (~230 a document there), and eight bytes at a time in a `u64`, ~22 a word
/// and as much to set up, about as many.
#[inline(always)]
fn text_end(bytes: &[u8], mut pos: usize) -> usize {
    // Most texts are empty (a tag right after a tag): their one byte looked at alone.
    match bytes.get(pos) {
        Some(&b) if !TEXT_STOPS[usize::from(b)] => pos += 1,
        _ => return pos,
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    while let Some(block) = bytes.get(pos..).and_then(<[u8]>::first_chunk::<16>) {
        let stops = text_stops(block);
        if stops != 0 {
            return pos + stops.trailing_zeros() as usize;
        }
        pos += 16;
    }
    while pos < bytes.len() && !TEXT_STOPS[usize::from(bytes[pos])] {
        pos += 1;
    }
    pos
}

/// Which bytes of `block` are [`TEXT_STOPS`], as bits (bit `i`: byte `i`).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn text_stops(block: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: `_mm_loadu_si128` reads 16 bytes from the pointer, with no alignment
    // required: `block` is 16 bytes long, so the read is inside it. Every intrinsic
    // here needs SSE2 and nothing more, which the `cfg` above requires of the target
    // (x86-64's baseline has it). `texts_end_where_the_byte_loop_ends` compares the
    // result with the byte loop.
    unsafe {
        let x = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        let is = |c: u8| _mm_cmpeq_epi8(x, _mm_set1_epi8(c as i8));
        let stops = _mm_or_si128(
            _mm_or_si128(is(b'<'), is(b'>')),
            _mm_or_si128(is(b'&'), is(b'\r')),
        );
        // A byte from 0x80 on has its high bit set, which is what the mask takes: not
        // ASCII ends the text too.
        _mm_movemask_epi8(_mm_or_si128(stops, x)) as u32
    }
}

/// The first `N` bytes of `s` from `at`, as an array: compared as one machine word.
fn word<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
    let mut w = [0u8; N];
    w.copy_from_slice(&s[at..at + N]);
    w
}

/// `a == b` on arrays of at least 8 bytes, a word at a time (the last word overlapping
/// the one before it): comparing the arrays calls `bcmp`.
#[inline(always)]
fn same_array<const N: usize>(a: &[u8; N], b: &[u8; N]) -> bool {
    const { assert!(N >= 8) };
    let w = |s: &[u8; N], at: usize| u64::from_ne_bytes(word::<8>(s, at));
    let mut diff = w(a, N - 8) ^ w(b, N - 8);
    let mut at = 0;
    while at + 8 < N {
        diff |= w(a, at) ^ w(b, at);
        at += 8;
    }
    diff == 0
}

/// `a == b` for an end tag's name against its start tag's. Names are a few bytes,
/// where a call to `memcmp` costs more than the comparison: two overlapping words
/// cover every length from 4 to 16.
#[inline(always)]
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        // Not `a == b`, which calls `bcmp`: the first, middle and last bytes are all
        // the bytes of a name this short.
        0 => true,
        1..4 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..8 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        8..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        _ => a == b,
    }
}

/// [`decode_plain`] up to the strings: the document's kind and its fields' texts.
#[inline(always)]
fn plain(bytes: &[u8], texts: Texts) -> Option<Found<'_>> {
    // Bounded here too: the plain path is also a public entry (fuzzing, tests).
    if bytes.len() > DEFAULT_MAX_DOCUMENT_BYTES {
        return None;
    }
    // Every byte of a document this path takes is looked at below, and only ASCII
    // passes (text through `TEXT_STOPS`, names through `WORD_BYTES`, the rest compared
    // with ASCII), so every span taken is a character boundary of `all`. One pass for
    // the whole document costs less than `from_utf8` on each field (~115 instructions
    // for ten bytes).
    if let Some(found) = jxse(bytes, texts) {
        return Some(found);
    }
    let all = crate::jxta::wire_str(bytes).ok()?;
    tags(bytes, all, texts)
}

/// How JXSE (and the benchmark's peers) start a PING and a PONG: the declaration, the
/// root and the correlator's start tag, nothing between them.
const JXSE_PING: &[u8; 56] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><PING><correlator>";
const JXSE_PONG: &[u8; 56] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><PONG><correlator>";

/// `I` in [`JXSE_PING`], `O` in [`JXSE_PONG`]: their only difference.
const JXSE_ROOT_LETTER: usize = 40;

/// Where the correlator's start tag begins in [`JXSE_PING`] and [`JXSE_PONG`].
const JXSE_CORRELATOR: usize = 44;

/// The documents JXSE writes, in its exact layout: `<PING>` then `correlator`, `from`,
/// `seq` and `ts`, or `<PONG>` then `correlator`, `from` and `ts`, no whitespace
/// between tags, only whitespace after the root. Their tags compared as a few words
/// each: [`tags`] looks at every tag (its name, the open-element stack, the end tag
/// against the start tag, the field dispatch), and the decode of a document cost
/// 1,262 instructions through it, 509 through this (jxta-0.1g, docs/performance.md,
/// stop 32). What [`tags`] finds for these bytes, or `None` for any other, which
/// [`tags`] then decides (`jxse_layout_is_what_tags_find` compares them).
#[inline(always)]
fn jxse(bytes: &[u8], texts: Texts) -> Option<Found<'_>> {
    let head = bytes.first_chunk::<56>()?;
    // The one byte where the two differ picks the one compared (a PONG compared with
    // the PING first cost ~25 instructions more).
    let ping = head[JXSE_ROOT_LETTER] == JXSE_PING[JXSE_ROOT_LETTER];
    if !same_array(head, if ping { JXSE_PING } else { JXSE_PONG }) {
        return None;
    }
    let (correlator, at) = text_then(bytes, JXSE_PING.len(), b"</correlator><from>")?;
    let (from, at) = if ping {
        let (from, at) = text_then(bytes, at, b"</from><seq>")?;
        (from, text_then(bytes, at, b"</seq><ts>")?.1)
    } else {
        text_then(bytes, at, b"</from><ts>")?
    };
    let root_end = if ping {
        b"</ts></PING>"
    } else {
        b"</ts></PONG>"
    };
    let (_, at) = text_then(bytes, at, root_end)?;
    // Only whitespace may follow the root (as in `tags`).
    if !bytes[at..]
        .iter()
        .all(|&b| matches!(b, b' ' | b'\t' | b'\n'))
    {
        return None;
    }
    // The element from its start tag's `<` to its end tag's `>`.
    let correlator_bytes = correlator.1 + b"</correlator>".len() - JXSE_CORRELATOR;
    let correlator = jxse_text(bytes, correlator)
        .map(|c| (c, u32::try_from(correlator_bytes).unwrap_or(u32::MAX)));
    let from = jxse_text(bytes, from);
    Some(Found {
        kind: if ping { Kind::Ping } else { Kind::Pong },
        // No `Buddy`: named by `from`.
        name: from,
        peer_id: None,
        status: None,
        correlator,
        from: from.filter(|_| texts == Texts::All),
        to: None,
        body: None,
    })
}

/// A field's text in [`jxse`], trimmed, and `None` when empty, as `Spans::store`
/// keeps these fields. Most texts have nothing to trim: their two ends looked at here,
/// `trim_span` (a call) only for the others. `wire_str` on each text (a call to
/// `all_ascii`, ~18 instructions), and before it on the whole document with `str::get`
/// at each end and a closure called twice (~60 instructions a document more), checked
/// what the text scan already ensures.
#[inline(always)]
fn jxse_text(bytes: &[u8], span: Span) -> Option<&str> {
    let text = &bytes[span.0..span.1];
    let text = match (text.first(), text.last()) {
        (None, _) | (_, None) => return None,
        (Some(&first), Some(&last)) if !trim_byte(first) && !trim_byte(last) => text,
        _ => {
            let (a, b) = trim_span(bytes, span);
            if a == b {
                return None;
            }
            &bytes[a..b]
        }
    };
    debug_assert!(text.is_ascii());
    // SAFETY: `from_utf8_unchecked` requires valid UTF-8. `text` lies within a span
    // `text_then` found with `text_end`, which stops at every byte of `TEXT_STOPS`,
    // every byte from 0x80 on among them: each byte of `text` is ASCII, a complete
    // one-byte UTF-8 code point. `jxse_layout_is_what_tags_find` puts bytes from 0x80
    // on into every text (where `tags` refuses the document, so a text taken with
    // one fails it), and the `debug_assert` above checks each text in the tests.
    Some(unsafe { std::str::from_utf8_unchecked(text) })
}

/// The text from `at` to the next [`TEXT_STOPS`] byte, which must start `tag`: its
/// span and where `tag` ends. A `<` is the only stop a tag starts with, so any other
/// stop (a reference, `>`, CR, not ASCII) is refused here as [`tags`] refuses it.
#[inline(always)]
fn text_then<const N: usize>(bytes: &[u8], at: usize, tag: &[u8; N]) -> Option<(Span, usize)> {
    let end = text_end(bytes, at);
    let next = bytes.get(end..)?.first_chunk::<N>()?;
    same_array(next, tag).then_some(((at, end), end + N))
}

/// The plain path over any layout it models: every tag read and checked.
#[inline(always)]
fn tags<'a>(bytes: &[u8], all: &'a str, texts: Texts) -> Option<Found<'a>> {
    let n = bytes.len();
    let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\n');
    let skip_ws = |mut at: usize| {
        while at < n && ws(bytes[at]) {
            at += 1;
        }
        at
    };
    let mut pos = skip_ws(0);
    if bytes.get(pos..pos + 2) == Some(b"<?") {
        pos = skip_ws(pos + plain_decl(&bytes[pos..])?);
    }
    // Open elements (three at most): name start and length, offset of the start tag's
    // `<`, field carried.
    let mut open: [(usize, usize, usize, Option<Field>); 3] = [(0, 0, 0, None); 3];
    let mut depth = 0usize;
    let mut kind = Kind::Ping;
    let mut in_buddy = false;
    let mut spans = Spans::default();
    loop {
        // Here `pos` is at a tag (the root's, or where the text scan below stopped): a
        // text stop other than `<` is what this path leaves to the full decoder.
        if bytes.get(pos) != Some(&b'<') {
            return None;
        }
        if bytes.get(pos + 1) == Some(&b'/') {
            depth = depth.checked_sub(1)?;
            let (name_start, name_len, start, field) = open[depth];
            // The open tag's name (checked there) then `>`: exactly what scanning the
            // name would find, without looking at it byte by byte.
            let end_name = pos + 2;
            let after_name = end_name + name_len;
            if after_name >= n
                || bytes[after_name] != b'>'
                || !same_name(
                    &bytes[name_start..name_start + name_len],
                    &bytes[end_name..after_name],
                )
            {
                return None;
            }
            let after = after_name + 1;
            if let Some(f) = field {
                // A field element holds only text: from its start tag's `>` to here.
                let text = (name_start + name_len + 1, pos);
                spans.store(bytes, f, text, after - start);
            }
            if depth == 0 {
                // Only whitespace may follow the root.
                return bytes[after..]
                    .iter()
                    .all(|&b| ws(b))
                    .then(|| spans.found(all, kind, texts))
                    .flatten();
            }
            if depth == 1 {
                in_buddy = false;
            }
            pos = after;
        } else {
            let name_start = pos + 1;
            // A field element holds text only.
            if depth > 0 && open[depth - 1].3.is_some() {
                return None;
            }
            let tag = &bytes[name_start..];
            let (name_len, field) = match field_tag(tag, depth + 1, in_buddy) {
                Some((len, f)) => (len, Some(f)),
                // What the scan below sets for these names; none carries a field.
                None => match known_tag(tag, depth + 1) {
                    Some((len, Known::Root(k))) => {
                        kind = k;
                        (len, None)
                    }
                    Some((len, Known::Child { buddy })) => {
                        in_buddy = buddy;
                        (len, None)
                    }
                    None => {
                        let mut name_end = name_start;
                        while name_end < n && crate::WORD_BYTES[usize::from(bytes[name_end])] {
                            name_end += 1;
                        }
                        let name = &bytes[name_start..name_end];
                        match name.first() {
                            Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {}
                            _ => return None,
                        }
                        if bytes.get(name_end) != Some(&b'>') {
                            return None;
                        }
                        match depth {
                            0 => kind = Kind::from_root(name)?,
                            1 => in_buddy = name == b"Buddy" || name == b"BuddyStatus",
                            2 => {}
                            _ => return None,
                        }
                        (name.len(), field_for(depth + 1, in_buddy, name))
                    }
                },
            };
            if depth == 1 && field.is_some() {
                // A field at depth 2 is not `Buddy`: what the scan's match sets.
                in_buddy = false;
            }
            open[depth] = (name_start, name_len, pos, field);
            depth += 1;
            pos = name_start + name_len + 1;
        }
        // Not `memchr2`: from one tag to the next is a few bytes (none between
        // adjacent tags), where the vector search's set-up cost ~60 instructions a
        // call. The root is open here, so the end of the bytes is a truncated
        // document.
        pos = text_end(bytes, pos);
    }
}

impl Spans {
    /// The fields' texts from the spans (character boundaries of `all`: see `plain`; a
    /// span that was not would only send the document to the full decoder). Every
    /// text is found before any string is made, so that a refusal frees nothing.
    #[inline(always)]
    fn found(self, all: &str, kind: Kind, texts: Texts) -> Option<Found<'_>> {
        let text = |span: Option<Span>| -> Option<Option<&str>> {
            match span {
                None => Some(None),
                Some((a, b)) => all.get(a..b).map(Some),
            }
        };
        let listed = |span: Option<Span>| match texts {
            Texts::All => text(span),
            Texts::Matched => Some(None),
        };
        let correlator = match self.correlator {
            None => None,
            Some(((a, b), bytes)) => Some((all.get(a..b)?, bytes)),
        };
        Some(Found {
            kind,
            // A document without `Buddy/name` is named by its `from` (as `finish_doc`).
            name: text(self.name.or(self.from))?,
            peer_id: text(self.peer_id)?,
            status: text(self.status)?,
            correlator,
            from: listed(self.from)?,
            to: listed(self.to)?,
            body: listed(self.body)?,
        })
    }
}

/// A document the plain path took: its kind and its fields' texts, parts of the
/// document (trimmed as [`store`] trims them), no string made yet.
#[derive(Debug, PartialEq, Eq)]
struct Found<'a> {
    kind: Kind,
    name: Option<&'a str>,
    peer_id: Option<&'a str>,
    /// The status text, trimmed; parsed in [`Found::fill`].
    status: Option<&'a str>,
    /// The token and its element's size on the wire.
    correlator: Option<(&'a str, u32)>,
    from: Option<&'a str>,
    to: Option<&'a str>,
    body: Option<&'a str>,
}

impl Found<'_> {
    /// The `Document`, with `document_bytes`.
    fn into_document(self, document_bytes: u32) -> Document {
        let mut doc = Document::default();
        self.fill(&mut doc, document_bytes);
        doc
    }

    /// Makes `doc` this document, every field set, in the strings `doc` already holds
    /// where it has them. Nothing here can fail: the strings are made last.
    #[inline(always)]
    fn fill(self, doc: &mut Document, document_bytes: u32) {
        let (status, status_text) = match self.status {
            None => (None, None),
            Some(text) => match Status::parse(text) {
                Some(s) => (Some(s), None),
                None => (None, Some(text)),
            },
        };
        // Every field named: a field added to `Document` is a compile error here, not
        // the previous document's value carried over in a reused one.
        let Document {
            kind,
            name,
            peer_id,
            status: doc_status,
            status_text: doc_status_text,
            correlator,
            correlator_bytes,
            document_bytes: doc_bytes,
            from,
            to,
            body,
        } = doc;
        *kind = self.kind;
        refill(name, self.name);
        refill(peer_id, self.peer_id);
        *doc_status = status;
        refill(doc_status_text, status_text);
        refill(correlator, self.correlator.map(|(c, _)| c));
        *correlator_bytes = self.correlator.map_or(0, |(_, b)| b);
        *doc_bytes = document_bytes;
        refill(from, self.from);
        refill(to, self.to);
        refill(body, self.body);
    }
}

/// `*slot = text.map(str::to_owned)`, copied into the string `slot` holds if any: no
/// allocation when it is long enough.
#[inline(always)]
fn refill(slot: &mut Option<String>, text: Option<&str>) {
    match (slot, text) {
        (Some(s), Some(t)) => {
            s.clear();
            s.push_str(t);
        }
        (slot, t) => *slot = t.map(str::to_owned),
    }
}

/// Stores a field's text (first occurrence wins: a repeated element must not let a
/// later copy silently override what the matcher keys on).
fn store(doc: &mut Document, field: Field, text: &str, element_bytes: u64) {
    let trimmed = text.trim();
    let slot = match field {
        Field::Name => &mut doc.name,
        Field::PeerId => &mut doc.peer_id,
        Field::From => &mut doc.from,
        Field::To => &mut doc.to,
        Field::Body => {
            // A message body keeps its own whitespace.
            if doc.body.is_none() {
                doc.body = Some(text.to_owned());
            }
            return;
        }
        Field::Status => {
            if doc.status.is_none() && doc.status_text.is_none() {
                match Status::parse(trimmed) {
                    Some(s) => doc.status = Some(s),
                    None => doc.status_text = Some(trimmed.to_owned()),
                }
            }
            return;
        }
        Field::Correlator => {
            if doc.correlator.is_none() && !trimmed.is_empty() {
                doc.correlator = Some(trimmed.to_owned());
                doc.correlator_bytes = u32::try_from(element_bytes).unwrap_or(u32::MAX);
            }
            return;
        }
    };
    if slot.is_none() && !trimmed.is_empty() {
        *slot = Some(trimmed.to_owned());
    }
}

impl Document {
    /// Serialises in the exact layout of the spec's examples: XML declaration, one
    /// element per line, 2-space indentation, no trailing newline. Text is escaped.
    /// Absent fields are omitted (a PING without name and peer ID has no `Buddy`).
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(320);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let root = self.kind.root_name();
        let _ = writeln!(out, "<{root}>");
        let leaf = |out: &mut String, indent: &str, tag: &str, value: &str| {
            let _ = writeln!(
                out,
                "{indent}<{tag}>{}</{tag}>",
                quick_xml::escape::escape(value)
            );
        };
        match self.kind {
            Kind::Ping | Kind::Pong => {
                let container = if self.kind == Kind::Ping {
                    "Buddy"
                } else {
                    "BuddyStatus"
                };
                let status = self
                    .status
                    .map(Status::as_str)
                    .or(self.status_text.as_deref());
                // `name` falls back to `from` when parsed; write it under the
                // container only when it is not just that fallback.
                let name = self.name.as_deref().filter(|n| {
                    self.from.as_deref() != Some(*n) || self.peer_id.is_some() || status.is_some()
                });
                if name.is_some() || self.peer_id.is_some() || status.is_some() {
                    let _ = writeln!(out, "  <{container}>");
                    if let Some(v) = name {
                        leaf(&mut out, "    ", "name", v);
                    }
                    if let Some(v) = &self.peer_id {
                        leaf(&mut out, "    ", "peerID", v);
                    }
                    if let Some(v) = status {
                        leaf(&mut out, "    ", "status", v);
                    }
                    let _ = writeln!(out, "  </{container}>");
                }
                if let Some(v) = &self.correlator {
                    leaf(&mut out, "  ", "correlator", v);
                }
                if let Some(v) = &self.from {
                    leaf(&mut out, "  ", "from", v);
                }
                if let Some(v) = &self.to {
                    leaf(&mut out, "  ", "to", v);
                }
            }
            Kind::Message => {
                for (tag, v) in [("from", &self.from), ("to", &self.to)] {
                    if let Some(v) = v {
                        leaf(&mut out, "  ", tag, v);
                    }
                }
                if let Some(v) = &self.body {
                    leaf(&mut out, "  ", "body", v);
                }
                if let Some(v) = &self.correlator {
                    leaf(&mut out, "  ", "correlator", v);
                }
            }
        }
        let _ = write!(out, "</{root}>");
        out
    }
}

#[cfg(test)]
mod tests;
