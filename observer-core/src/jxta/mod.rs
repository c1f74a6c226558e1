//! The JXTA wire: welcome lines, message packages, `jxmg` binary messages, endpoint
//! addressing, and the per-direction stream parser that turns reassembled TCP bytes
//! (or a UDP datagram) into framed messages.
//!
//! Layouts follow `docs/spec/jxta-wire.md` (section numbers in comments refer to
//! it). Everything here reads hostile bytes: lengths are checked before use, nothing
//! allocates in proportion to a declared length, and errors are values, never panics.

pub mod carrier;
pub mod endpoint;
pub mod extent;
pub mod flow;
pub mod framing;
pub mod http;
pub(crate) mod marks;
pub mod message;
pub mod names;
pub mod peer;
pub mod stream;
#[cfg(test)]
pub(crate) mod testdata;
pub mod welcome;

use std::collections::BTreeMap;

pub use carrier::{Carrier, DirParser};
pub use endpoint::{
    addressing, erm_xml, parse_endpoint_address, Addressing, EndpointAddress, LastRouter, PeerMemo,
};
pub use framing::{
    encode_datagram, encode_package, parse_datagram, parse_package_header, HeaderOrder,
    HeaderParse, PackageHeader,
};
pub use http::{HttpAnomaly, HttpParser, HttpStats};
pub use message::{
    decode_message, decode_message_in, encode_message_v0, encode_message_v1, recycle_elements,
    Element, Message, OwnedElement,
};
pub use names::{ElementNames, Payloads, Shape};
pub use peer::{PeerId, PeerPart};
pub use stream::{
    FramedMessage, StreamConfig, StreamEvent, StreamParser, StreamStart, DEFAULT_MAX_MESSAGE_BYTES,
};
pub use welcome::{encode_welcome, parse_welcome, Welcome, WelcomeVersion};

/// Why a piece of JXTA wire data could not be decoded. `kind()` gives the short,
/// stable label under which it is counted in [`JxtaStats::malformed`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JxtaError {
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("bad signature: expected {0}")]
    BadSignature(&'static str),
    #[error("unsupported jxmg version {0}")]
    UnsupportedVersion(u8),
    #[error("malformed welcome line: {0}")]
    BadWelcome(&'static str),
    #[error("malformed package header: {0}")]
    BadHeader(&'static str),
    #[error("{what} length {len} exceeds the limit")]
    TooLarge { what: &'static str, len: u64 },
    #[error("{0} is not valid text in its encoding")]
    BadText(&'static str),
    #[error("string id {0} is not in the names table")]
    BadNameId(u16),
    #[error("signature elements nested too deeply")]
    TooDeep,
}

impl JxtaError {
    /// The reason it is counted under (one counter per kind, not per message).
    pub fn kind(&self) -> Malformed {
        match self {
            JxtaError::Truncated(_) => Malformed::Truncated,
            JxtaError::BadSignature(_) => Malformed::BadSignature,
            JxtaError::UnsupportedVersion(_) => Malformed::UnsupportedVersion,
            JxtaError::BadWelcome(_) => Malformed::BadWelcome,
            JxtaError::BadHeader(_) => Malformed::BadHeader,
            JxtaError::TooLarge { .. } => Malformed::TooLarge,
            JxtaError::BadText(_) => Malformed::BadText,
            JxtaError::BadNameId(_) => Malformed::BadNameId,
            JxtaError::TooDeep => Malformed::TooDeep,
        }
    }
}

/// Why JXTA wire data was counted as malformed: the keys of [`JxtaStats::malformed`],
/// of the JSON's `malformed.by_kind` and of the `observer_jxta_malformed_total` metric.
/// Declared in the order of their labels, which is the order every view lists them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Malformed {
    BadHeader,
    BadNameId,
    BadSignature,
    BadText,
    BadWelcome,
    HttpBadChunk,
    HttpBadContentLength,
    HttpBadHead,
    HttpHeadTooLarge,
    HttpPartialMessage,
    HttpUnsupportedCoding,
    TooDeep,
    TooLarge,
    Truncated,
    UnsupportedVersion,
}

impl Malformed {
    pub const ALL: [Malformed; 15] = [
        Malformed::BadHeader,
        Malformed::BadNameId,
        Malformed::BadSignature,
        Malformed::BadText,
        Malformed::BadWelcome,
        Malformed::HttpBadChunk,
        Malformed::HttpBadContentLength,
        Malformed::HttpBadHead,
        Malformed::HttpHeadTooLarge,
        Malformed::HttpPartialMessage,
        Malformed::HttpUnsupportedCoding,
        Malformed::TooDeep,
        Malformed::TooLarge,
        Malformed::Truncated,
        Malformed::UnsupportedVersion,
    ];

    /// The stable label (JSON key, metric label value, table suffix).
    pub fn label(self) -> &'static str {
        match self {
            Malformed::BadHeader => "bad_header",
            Malformed::BadNameId => "bad_name_id",
            Malformed::BadSignature => "bad_signature",
            Malformed::BadText => "bad_text",
            Malformed::BadWelcome => "bad_welcome",
            Malformed::HttpBadChunk => "http_bad_chunk",
            Malformed::HttpBadContentLength => "http_bad_content_length",
            Malformed::HttpBadHead => "http_bad_head",
            Malformed::HttpHeadTooLarge => "http_head_too_large",
            Malformed::HttpPartialMessage => "http_partial_message",
            Malformed::HttpUnsupportedCoding => "http_unsupported_coding",
            Malformed::TooDeep => "too_deep",
            Malformed::TooLarge => "too_large",
            Malformed::Truncated => "truncated",
            Malformed::UnsupportedVersion => "unsupported_version",
        }
    }
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl serde::Serialize for Malformed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

use crate::counters::{by, families::JXTA_MESSAGES};

crate::counters! {
    /// What the JXTA layer saw, for the report. Counters only: nothing here grows with
    /// traffic except the two maps, whose keys come from a small vocabulary (error
    /// kinds, element names; hostile peers could invent names, so `element_names` is
    /// capped).
    #[derive(Debug, Default, Clone, serde::Serialize)]
    pub struct JxtaStats {
        welcomes: "JXTA welcome lines", metric: None, anomaly: false, merge: Sum;
        messages_tcp: "JXTA messages over TCP", metric: by(&JXTA_MESSAGES, "tcp"), anomaly: false, merge: Sum;
        messages_udp: "JXTA messages over UDP", metric: by(&JXTA_MESSAGES, "udp"), anomaly: false, merge: Sum;
        elements: "JXTA message elements", metric: None, anomaly: false, merge: Sum;
        /// Holes in a stream (bytes the capture missed) met while framing messages.
        gaps: "JXTA stream gaps", metric: None, anomaly: true, merge: Sum;
        resyncs: "JXTA resynchronisations", metric: None, anomaly: true, merge: Sum, decoding: 18, figures: true;
        truncated_messages: "JXTA messages truncated", metric: None, anomaly: true, merge: Sum, decoding: 19, figures: true;
        skipped_bytes: "JXTA bytes skipped", metric: None, anomaly: false, merge: Sum, decoding: 20;
        non_jxta_streams: "streams that are not JXTA", metric: None, anomaly: false, merge: Sum;
    }
    nested {
        /// At most one entry per [`Malformed`] reason.
        malformed: BTreeMap<Malformed, u64>,
        /// Counted once per element of every message (see [`ElementNames`]; the JSON
        /// report sorts the names).
        element_names: ElementNames,
        /// The HTTP transport (its messages are also in `messages_tcp`).
        http: HttpStats,
    }
}

impl JxtaStats {
    /// Counts one decoded message and its elements (signature elements excluded: they
    /// belong to their element); what the documents stage needs of its names.
    pub fn count_message(&mut self, msg: &Message<'_>, udp: bool) -> Shape {
        if udp {
            self.messages_udp += 1;
        } else {
            self.messages_tcp += 1;
        }
        self.elements += msg.elements.len() as u64;
        self.element_names.count_decoded(msg)
    }

    /// Decodes a message ([`message::decode_message_in`]), one of a layout the element
    /// names hold by its skeleton, to be counted next by [`Self::count_message`]
    /// (the layout found is valid until then).
    #[inline]
    pub fn decode_message<'a>(
        &self,
        body: &'a [u8],
        elements: Vec<Element<'a>>,
    ) -> Result<Message<'a>, JxtaError> {
        message::decode_message_known(body, elements, &self.element_names)
    }

    pub fn count_malformed(&mut self, kind: Malformed) {
        *self.malformed.entry(kind).or_default() += 1;
    }

    pub fn malformed_total(&self) -> u64 {
        self.malformed.values().sum()
    }

    /// Each counter under its key, except the messages by transport (those with a
    /// metric label, as in `observer_jxta_messages_total`), which go under `messages`
    /// by that label with their total.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Map, Value};
        let mut top = Map::new();
        let mut messages = Map::new();
        let mut total = 0;
        for (c, n) in self.iter() {
            match c.metric.map(|m| m.sample) {
                Some(crate::counters::Sample::Labelled(transport)) => {
                    total += n;
                    messages.insert(transport.into(), n.into());
                }
                _ => {
                    top.insert(c.key.into(), n.into());
                }
            }
        }
        messages.insert("total".into(), total.into());
        messages.insert("http".into(), self.http.messages.into());
        top.insert("messages".into(), Value::Object(messages));
        top.insert(
            "malformed".into(),
            json!({
                "total": self.malformed_total(),
                "by_kind": self.malformed,
            }),
        );
        top.insert("element_names".into(), json!(self.element_names));
        top.insert("http".into(), self.http.to_json());
        Value::Object(top)
    }
}

/// Wire text as `str`. Element names, namespaces and types are short ASCII nearly
/// always, and there the general UTF-8 validation cost ~160 instructions a call (8 %
/// of a whole run on `jxta-0.1g`: half a million calls); an ASCII check costs a few.
#[inline]
pub(crate) fn wire_str(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if all_ascii(bytes) {
        // SAFETY: `from_utf8_unchecked` requires valid UTF-8. Every byte here is below
        // 0x80 (just checked), and each such byte is a complete one-byte UTF-8 code
        // point, so the sequence is valid UTF-8. `wire_str_is_from_utf8` compares this
        // with `from_utf8` on ASCII, non-ASCII and invalid input.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes)
    }
}

/// `bytes[..first]` and `bytes[second..]` as text when the whole of `bytes` is ASCII:
/// an element's name and type, with the type's two length bytes between them, in one
/// check instead of two. `None` otherwise (or when `first` or `second` is past the
/// end): the caller then takes each with [`wire_str`].
#[inline]
pub(crate) fn ascii_pair(bytes: &[u8], first: usize, second: usize) -> Option<(&str, &str)> {
    let (a, b) = (bytes.get(..first)?, bytes.get(second..)?);
    if !all_ascii(bytes) {
        return None;
    }
    // SAFETY: `from_utf8_unchecked` requires valid UTF-8. `a` and `b` are parts of
    // `bytes`, every byte of which is below 0x80 (just checked), and each such byte is a
    // complete one-byte UTF-8 code point, so both are valid UTF-8.
    // `ascii_pair_is_wire_str` compares this with `from_utf8` on any bytes and cuts.
    Some(unsafe {
        (
            std::str::from_utf8_unchecked(a),
            std::str::from_utf8_unchecked(b),
        )
    })
}

/// `<[u8]>::is_ascii` for the short strings of the wire (names, types, a few dozen
/// bytes): up to 64 bytes as a few words read without a loop, the last ones
/// overlapping those before them; longer ones a word at a time. The standard one's
/// alignment handling cost ~25 instructions a name, and a loop over the words (which
/// the compiler vectorised, with a loop for the rest) ~35 an element's name and type.
#[inline]
fn all_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Eight bytes from `at`; past the end (which the lengths below never reach) they
    // count as not ASCII, so a mistake sends the text to the general check.
    let w = |at: usize| {
        bytes
            .get(at..)
            .and_then(<[u8]>::first_chunk::<8>)
            .map_or(HIGH, |w| u64::from_ne_bytes(*w))
    };
    let n = bytes.len();
    let seen = match n {
        0..4 => return bytes.iter().all(|b| *b < 0x80),
        4..8 => {
            let h = |at: usize| {
                bytes
                    .get(at..)
                    .and_then(<[u8]>::first_chunk::<4>)
                    .map_or(HIGH, |h| u64::from(u32::from_ne_bytes(*h)))
            };
            h(0) | h(n - 4)
        }
        8..=16 => w(0) | w(n - 8),
        17..=32 => w(0) | w(8) | w(n - 16) | w(n - 8),
        33..=64 => w(0) | w(8) | w(16) | w(24) | w(n - 32) | w(n - 24) | w(n - 16) | w(n - 8),
        _ => {
            let (words, _) = bytes.as_chunks::<8>();
            words
                .iter()
                .fold(w(n - 8), |acc, w| acc | u64::from_ne_bytes(*w))
        }
    };
    seen & HIGH == 0
}

/// Bounds-checked big-endian reader over wire bytes. Every read returns an error
/// naming what was being read instead of indexing past the end.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], JxtaError> {
        let end = self.pos.checked_add(n).ok_or(JxtaError::Truncated(what))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(JxtaError::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }
    /// A length read from the wire: rejected before any slicing if it cannot fit.
    pub(crate) fn bytes_u64(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], JxtaError> {
        let n = usize::try_from(n).map_err(|_| JxtaError::Truncated(what))?;
        self.bytes(n, what)
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, JxtaError> {
        Ok(self.bytes(1, what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, JxtaError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, JxtaError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, JxtaError> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The ASCII shortcut answers exactly as `from_utf8` on any bytes.
        #[test]
        fn wire_str_is_from_utf8(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            proptest::prop_assert_eq!(wire_str(&bytes), std::str::from_utf8(&bytes));
        }

        /// Where it answers, each part is what `from_utf8` makes of it; it answers
        /// for every ASCII input with both cuts in range. ASCII with at most one byte
        /// changed to a high one, anywhere (random bytes are rarely ASCII but for one).
        #[test]
        fn ascii_pair_is_wire_str(
            bytes in proptest::collection::vec(0u8..0x80, 0..64),
            high in proptest::option::of((0usize..64, 0x80u8..=0xff)),
            first in 0usize..70,
            second in 0usize..70,
        ) {
            let mut bytes = bytes;
            if let Some((at, b)) = high {
                if let Some(x) = bytes.get_mut(at) {
                    *x = b;
                }
            }
            let in_range = first <= bytes.len() && second <= bytes.len();
            match ascii_pair(&bytes, first, second) {
                Some((a, b)) => {
                    proptest::prop_assert_eq!(Ok(a), std::str::from_utf8(&bytes[..first]));
                    proptest::prop_assert_eq!(Ok(b), std::str::from_utf8(&bytes[second..]));
                }
                None => proptest::prop_assert!(!(in_range && bytes.is_ascii())),
            }
        }

        #[test]
        fn wire_str_takes_ascii(text in "[ -~]{0,64}") {
            proptest::prop_assert_eq!(wire_str(text.as_bytes()), Ok(text.as_str()));
        }
    }

    /// Every length up to past the longest read without a loop (64 bytes) and then
    /// some, a high byte at every place.
    #[test]
    fn all_ascii_is_is_ascii() {
        for len in 0..=150 {
            let text = vec![b'a'; len];
            assert!(all_ascii(&text), "{len}");
            for at in 0..len {
                let mut t = text.clone();
                t[at] = 0x80;
                assert!(!all_ascii(&t), "{len} {at}");
                t[at] = 0xff;
                assert!(!all_ascii(&t), "{len} {at}");
            }
        }
    }

    #[test]
    fn wire_str_refuses_broken_utf8() {
        for bad in [
            &b"\xff"[..],
            b"ab\xc3",
            b"\xed\xa0\x80",
            b"EndpointRouterMsg\x80",
        ] {
            assert!(wire_str(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            wire_str("Gr\u{fc}\u{df}e".as_bytes()),
            Ok("Gr\u{fc}\u{df}e")
        );
    }

    #[test]
    fn stats_json_shape() {
        let body = encode_message_v0(&[
            OwnedElement::new("", "payload", None, "x"),
            OwnedElement::new("jxta", "EndpointRouterMsg", None, "y"),
        ]);
        let msg = decode_message(&body).unwrap();
        let mut s = JxtaStats::default();
        s.count_message(&msg, false);
        s.count_message(&msg, true);
        s.count_malformed(Malformed::BadHeader);
        s.count_malformed(Malformed::BadHeader);
        let j = s.to_json();
        assert_eq!(j["messages"]["total"], 2);
        assert_eq!(j["messages"]["udp"], 1);
        assert_eq!(j["elements"], 4);
        assert_eq!(j["malformed"]["total"], 2);
        assert_eq!(j["malformed"]["by_kind"]["bad_header"], 2);
        assert_eq!(j["element_names"]["payload"], 2);
        assert_eq!(j["element_names"]["jxta:EndpointRouterMsg"], 2);
        assert!(serde_json::to_value(&s)
            .unwrap()
            .get("key_scratch")
            .is_none());
    }

    #[test]
    fn element_names_are_capped() {
        let mut s = JxtaStats::default();
        for i in 0..(names::MAX_ELEMENT_NAMES + 10) {
            let body = encode_message_v0(&[OwnedElement::new("", &format!("n{i}"), None, "")]);
            s.count_message(&decode_message(&body).unwrap(), false);
        }
        assert_eq!(s.element_names.len(), names::MAX_ELEMENT_NAMES + 1);
        assert_eq!(s.element_names.get(names::OTHER_NAMES_KEY), Some(10));
    }
}
