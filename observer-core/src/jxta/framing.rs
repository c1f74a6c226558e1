//! Message packages (spec §1.2): a header block of `(u8 name-len, name, u16 value-len,
//! value)` entries ended by an empty name, then `content-length` bytes of body. The same
//! block follows a `JXTA` signature in multicast datagrams (§1.3).

use super::JxtaError;

/// Longest header block accepted. Real blocks are ~60 bytes; this bound keeps a
/// stream of endless headers from being buffered forever (and is above the largest
/// single legal header, 1 + 255 + 2 + 65535).
pub const MAX_HEADER_BLOCK: usize = 128 * 1024;

/// The UDP multicast signature.
pub const DATAGRAM_SIGNATURE: &[u8] = b"JXTA";

pub const CONTENT_TYPE_JXTA_MSG: &str = "application/x-jxta-msg";

/// A decoded header block, borrowing the header values from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageHeader<'a> {
    pub content_type: Option<&'a str>,
    pub content_length: u64,
    /// Sender's address; multicast only.
    pub src_ea: Option<&'a str>,
    /// Bytes of the header block up to and including the `0x00` terminator.
    pub header_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderParse<'a> {
    Complete(PackageHeader<'a>),
    /// A valid prefix: more bytes are needed.
    Incomplete,
    Invalid(&'static str),
}

/// Parses a header block at the start of `buf`. Header names are compared
/// case-insensitively and may come in any order; unknown headers are skipped.
/// `content-length` is required and must be exactly 8 bytes (as Wireshark requires);
/// a body longer than `max_body` is `Invalid`. Header names must be printable ASCII:
/// JXSE never sends anything else, and this is what lets a resynchronising reader
/// tell a header block from random bytes.
pub fn parse_package_header(buf: &[u8], max_body: u64) -> HeaderParse<'_> {
    match jxse_header(buf, max_body) {
        Some(h) => HeaderParse::Complete(h),
        None => parse_any_header(buf, max_body),
    }
}

/// `content-type: application/x-jxta-msg` as JXSE writes it: name length, name, value
/// length, value.
const JXSE_TYPE_FIELD: &[u8; 37] = b"\x0ccontent-type\x00\x16application/x-jxta-msg";
/// `content-length` as JXSE writes it, up to its 8-byte value.
const JXSE_LENGTH_HEAD: &[u8; 17] = b"\x0econtent-length\x00\x08";
/// The two fields and the terminator: every TCP package JXSE 2.5 or 2.7 sends.
const JXSE_HEADER_LEN: usize = JXSE_TYPE_FIELD.len() + JXSE_LENGTH_HEAD.len() + 8 + 1;

/// The header blocks JXSE sends (its two headers in either order, nothing else), told
/// by comparing bytes: the general parser spent ~160 instructions a message on them.
/// `None` for anything else, left to [`parse_any_header`], which gives the same answer
/// on these blocks (`jxse_header_is_parse_any_header` checks it). Inlined always:
/// left to the compiler, it was called from the resting direction's loop.
#[inline(always)]
pub(super) fn jxse_header(buf: &[u8], max_body: u64) -> Option<PackageHeader<'static>> {
    let block = buf.first_chunk::<JXSE_HEADER_LEN>()?;
    let (first, rest) = block.split_first_chunk::<17>()?;
    let length = if first == JXSE_LENGTH_HEAD {
        // JXSE 2.7: length first.
        let (len, rest) = rest.split_first_chunk::<8>()?;
        let (field, end) = rest.split_first_chunk::<37>()?;
        (is_type_field(field) && *end == [0]).then_some(len)?
    } else {
        // JXSE 2.5: type first.
        let (field, rest) = block.split_first_chunk::<37>()?;
        let (head, rest) = rest.split_first_chunk::<17>()?;
        let (len, end) = rest.split_first_chunk::<8>()?;
        (is_type_field(field) && head == JXSE_LENGTH_HEAD && *end == [0]).then_some(len)?
    };
    let content_length = u64::from_be_bytes(*length);
    // Over the limit: the general parser says so, in its words.
    (content_length <= max_body).then_some(PackageHeader {
        content_type: Some(CONTENT_TYPE_JXTA_MSG),
        content_length,
        src_ea: None,
        header_len: JXSE_HEADER_LEN,
    })
}

/// `field == JXSE_TYPE_FIELD`, without a call: compared as arrays, the 37 bytes went
/// to `bcmp` (~20 instructions with the call, a message). Three 16-byte words, the
/// last overlapping the second, compared with the field's own.
#[inline(always)]
fn is_type_field(field: &[u8; 37]) -> bool {
    let word = |at: usize| {
        field
            .get(at..)
            .and_then(<[u8]>::first_chunk::<16>)
            .map(|w| u128::from_ne_bytes(*w))
    };
    word(0) == Some(TYPE_FIELD_WORDS[0])
        && word(16) == Some(TYPE_FIELD_WORDS[1])
        && word(21) == Some(TYPE_FIELD_WORDS[2])
}

/// The words [`is_type_field`] compares, at 0, 16 and 21 (the last 16 bytes).
const TYPE_FIELD_WORDS: [u128; 3] = [type_field_word(0), type_field_word(16), type_field_word(21)];

const fn type_field_word(at: usize) -> u128 {
    match JXSE_TYPE_FIELD.split_at(at).1.first_chunk::<16>() {
        Some(w) => u128::from_ne_bytes(*w),
        None => panic!("a word past the field"),
    }
}

/// [`parse_package_header`] for any header block.
fn parse_any_header(buf: &[u8], max_body: u64) -> HeaderParse<'_> {
    let mut pos = 0usize;
    let mut content_type = None;
    let mut content_length = None;
    let mut src_ea = None;
    loop {
        if pos > MAX_HEADER_BLOCK {
            return HeaderParse::Invalid("header block too long");
        }
        let Some(&name_len) = buf.get(pos) else {
            return incomplete(pos);
        };
        pos += 1;
        if name_len == 0 {
            break;
        }
        let Some(name) = buf.get(pos..pos + usize::from(name_len)) else {
            return incomplete_partial_name(&buf[pos.min(buf.len())..]);
        };
        // JXSE's two names, in its lower case, are printable: only other names are
        // checked byte by byte (~120 instructions a message for these two).
        let known = if name == b"content-length" {
            Some(Known::Length)
        } else if name == b"content-type" {
            Some(Known::Type)
        } else {
            None
        };
        if known.is_none() && !name.iter().all(|b| b.is_ascii_graphic()) {
            return HeaderParse::Invalid("header name not printable ASCII");
        }
        pos += usize::from(name_len);
        let Some(vl) = buf.get(pos..pos + 2) else {
            return HeaderParse::Incomplete;
        };
        let value_len = usize::from(u16::from_be_bytes([vl[0], vl[1]]));
        pos += 2;
        let Some(value) = buf.get(pos..pos + value_len) else {
            return HeaderParse::Incomplete;
        };
        pos += value_len;
        // JXSE writes these names in lower case: an exact match first, any case after.
        let is = |which: Known, lower: &[u8]| {
            known == Some(which) || (known.is_none() && name.eq_ignore_ascii_case(lower))
        };
        if is(Known::Length, b"content-length") {
            let Ok(bytes) = <[u8; 8]>::try_from(value) else {
                return HeaderParse::Invalid("content-length not 8 bytes");
            };
            if content_length.is_some() {
                return HeaderParse::Invalid("duplicate content-length");
            }
            content_length = Some(u64::from_be_bytes(bytes));
        } else if is(Known::Type, b"content-type") {
            match super::wire_str(value) {
                Ok(t) => content_type = Some(t),
                Err(_) => return HeaderParse::Invalid("content-type not UTF-8"),
            }
        } else if name.eq_ignore_ascii_case(b"srcEA") {
            match super::wire_str(value) {
                Ok(t) => src_ea = Some(t),
                Err(_) => return HeaderParse::Invalid("srcEA not UTF-8"),
            }
        }
        // Anything else (content-coding, future headers) is skipped, as the spec asks.
    }
    let Some(content_length) = content_length else {
        return HeaderParse::Invalid("no content-length");
    };
    if content_length > max_body {
        return HeaderParse::Invalid("content-length exceeds limit");
    }
    HeaderParse::Complete(PackageHeader {
        content_type,
        content_length,
        src_ea,
        header_len: pos,
    })
}

/// The headers JXSE sends, told by an exact match of their name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    Length,
    Type,
}

fn incomplete(pos: usize) -> HeaderParse<'static> {
    if pos > MAX_HEADER_BLOCK {
        HeaderParse::Invalid("header block too long")
    } else {
        HeaderParse::Incomplete
    }
}

/// A name cut by the end of the buffer: reject it already if the bytes present
/// cannot start a header name, so garbage is not waited on.
fn incomplete_partial_name(partial: &[u8]) -> HeaderParse<'static> {
    if partial.iter().all(|b| b.is_ascii_graphic()) {
        HeaderParse::Incomplete
    } else {
        HeaderParse::Invalid("header name not printable ASCII")
    }
}

/// Header order used when encoding: JXSE 2.5 sends `content-type` first, JXSE 2.7
/// `content-length` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderOrder {
    TypeFirst,
    LengthFirst,
}

/// Appends a complete package (header block and body) to `out`.
pub fn encode_package(body: &[u8], order: HeaderOrder, src_ea: Option<&str>, out: &mut Vec<u8>) {
    let len = (body.len() as u64).to_be_bytes();
    let ct = CONTENT_TYPE_JXTA_MSG.as_bytes();
    match order {
        HeaderOrder::TypeFirst => {
            put_header(out, b"content-type", ct);
            put_header(out, b"content-length", &len);
        }
        HeaderOrder::LengthFirst => {
            put_header(out, b"content-length", &len);
            put_header(out, b"content-type", ct);
        }
    }
    if let Some(ea) = src_ea {
        put_header(out, b"srcEA", ea.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(body);
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    // Names are our constants; values are at most an address. Truncation would only
    // happen for a caller passing > 64 KiB, which is clamped rather than corrupting.
    let name = &name[..name.len().min(255)];
    let value = &value[..value.len().min(usize::from(u16::MAX))];
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// Splits a multicast datagram payload into its header block and body.
pub fn parse_datagram(
    payload: &[u8],
    max_body: u64,
) -> Result<(PackageHeader<'_>, &[u8]), JxtaError> {
    let rest = payload
        .strip_prefix(DATAGRAM_SIGNATURE)
        .ok_or(JxtaError::BadSignature("JXTA"))?;
    let header = match parse_package_header(rest, max_body) {
        HeaderParse::Complete(h) => h,
        HeaderParse::Incomplete => return Err(JxtaError::Truncated("datagram header block")),
        HeaderParse::Invalid(why) => return Err(JxtaError::BadHeader(why)),
    };
    let body_all = rest.get(header.header_len..).unwrap_or_default();
    let len = usize::try_from(header.content_length)
        .map_err(|_| JxtaError::Truncated("datagram body"))?;
    let body = body_all
        .get(..len)
        .ok_or(JxtaError::Truncated("datagram body"))?;
    Ok((header, body))
}

/// Builds a multicast datagram payload: signature, headers with `srcEA`, body.
pub fn encode_datagram(body: &[u8], src_ea: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(DATAGRAM_SIGNATURE);
    encode_package(body, HeaderOrder::TypeFirst, Some(src_ea), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spec §1.2 worked example, bytes 0..63 (the header block).
    fn worked_example_header() -> Vec<u8> {
        let mut v = vec![0x0c];
        v.extend_from_slice(b"content-type");
        v.extend_from_slice(&[0x00, 0x16]);
        v.extend_from_slice(b"application/x-jxta-msg");
        v.push(0x0e);
        v.extend_from_slice(b"content-length");
        v.extend_from_slice(&[0x00, 0x08, 0, 0, 0, 0, 0, 0, 0x03, 0xf2]);
        v.push(0x00);
        v
    }

    #[test]
    fn worked_example_header_bytes() {
        let body = vec![0u8; 1010];
        let mut out = Vec::new();
        encode_package(&body, HeaderOrder::TypeFirst, None, &mut out);
        assert_eq!(&out[..63], &worked_example_header()[..]);
        assert_eq!(out.len(), 63 + 1010);
        let HeaderParse::Complete(h) = parse_package_header(&out, u64::MAX) else {
            panic!("not complete")
        };
        assert_eq!(h.header_len, 63);
        assert_eq!(h.content_length, 1010);
        assert_eq!(h.content_type, Some(CONTENT_TYPE_JXTA_MSG));
        assert_eq!(h.src_ea, None);
    }

    #[test]
    fn length_first_and_unknown_and_case() {
        let mut out = Vec::new();
        encode_package(b"jxmgXX", HeaderOrder::LengthFirst, None, &mut out);
        assert_eq!(out[0], 14);
        assert_eq!(&out[1..15], b"content-length");
        let HeaderParse::Complete(h) = parse_package_header(&out, 100) else {
            panic!()
        };
        assert_eq!(h.content_length, 6);
        // Upper-case names and an unknown header in front.
        let mut v = vec![3];
        v.extend_from_slice(b"X-Y\x00\x02hi");
        v.push(14);
        v.extend_from_slice(b"CONTENT-LENGTH\x00\x08\0\0\0\0\0\0\0\x05");
        v.push(0);
        let HeaderParse::Complete(h) = parse_package_header(&v, 100) else {
            panic!()
        };
        assert_eq!(
            (h.content_length, h.content_type, h.header_len),
            (5, None, v.len())
        );
    }

    /// Names in any case are the same header; the exact lower-case match is only the
    /// first try.
    #[test]
    fn header_names_in_any_case() {
        for (ct, cl) in [
            (&b"content-type"[..], &b"content-length"[..]),
            (b"Content-Type", b"Content-Length"),
            (b"CONTENT-TYPE", b"content-LENGTH"),
        ] {
            let mut v = vec![ct.len() as u8];
            v.extend_from_slice(ct);
            v.extend_from_slice(b"\x00\x03a/b");
            v.push(cl.len() as u8);
            v.extend_from_slice(cl);
            v.extend_from_slice(b"\x00\x08\0\0\0\0\0\0\0\x07\x00");
            let HeaderParse::Complete(h) = parse_package_header(&v, 100) else {
                panic!("{ct:?} {cl:?}")
            };
            assert_eq!((h.content_type, h.content_length), (Some("a/b"), 7));
        }
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let h = worked_example_header();
        for i in 0..h.len() {
            assert_eq!(
                parse_package_header(&h[..i], u64::MAX),
                HeaderParse::Incomplete,
                "{i}"
            );
        }
    }

    #[test]
    fn invalid_headers() {
        let mut h = worked_example_header();
        assert!(matches!(
            parse_package_header(&h, 1009),
            HeaderParse::Invalid(_)
        ));
        // content-length 2^64-1: rejected by the limit, nothing allocated.
        h[54..62].copy_from_slice(&[0xff; 8]);
        assert!(matches!(
            parse_package_header(&h, 16 << 20),
            HeaderParse::Invalid(_)
        ));
        // content-length of 4 bytes
        let mut v = vec![14];
        v.extend_from_slice(b"content-length\x00\x04\0\0\0\x05\x00");
        assert!(matches!(
            parse_package_header(&v, 100),
            HeaderParse::Invalid(_)
        ));
        // no content-length
        assert!(matches!(
            parse_package_header(&[0], 100),
            HeaderParse::Invalid(_)
        ));
        // binary name
        assert!(matches!(
            parse_package_header(&[2, 0xc3, 0x01], 100),
            HeaderParse::Invalid(_)
        ));
        // JXSE's names with one byte not printable: not taken for them.
        for name in [
            &b"content\x01length"[..],
            b"content type",
            b"content-lengt\xe8",
        ] {
            let mut v = vec![name.len() as u8];
            v.extend_from_slice(name);
            v.extend_from_slice(b"\x00\x08\0\0\0\0\0\0\0\x05\x00");
            assert_eq!(
                parse_package_header(&v, 100),
                HeaderParse::Invalid("header name not printable ASCII"),
                "{name:?}"
            );
        }
    }

    #[test]
    fn datagram_round_trip() {
        let mut out = Vec::new();
        encode_datagram(b"jxmg-body", "tcp://10.0.0.1:9701", &mut out);
        let (h, body) = parse_datagram(&out, 1 << 20).unwrap();
        assert_eq!(body, b"jxmg-body");
        assert_eq!(h.src_ea, Some("tcp://10.0.0.1:9701"));
        assert!(parse_datagram(&out[..out.len() - 1], 1 << 20).is_err());
        assert!(parse_datagram(b"JXT", 1 << 20).is_err());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_headers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), max in any::<u64>()) {
            if let HeaderParse::Complete(h) = parse_package_header(&bytes, max) {
                prop_assert!(h.header_len <= bytes.len());
                prop_assert!(h.content_length <= max);
            }
            let mut d = DATAGRAM_SIGNATURE.to_vec();
            d.extend_from_slice(&bytes);
            let _ = parse_datagram(&d, max);
        }

        /// The shortcut against the general parser it bypasses, on JXSE's blocks (both
        /// orders, with and without `srcEA`) with one byte changed anywhere in the
        /// block, cut anywhere, and any limit.
        #[test]
        fn jxse_header_is_parse_any_header(
            body_len in 0usize..300,
            length_first in any::<bool>(),
            src_ea in any::<bool>(),
            change in prop::option::of((0usize..80, any::<u8>())),
            cut in prop::option::of(0usize..80),
            max in prop_oneof![Just(u64::MAX), 0u64..400],
        ) {
            let order = if length_first { HeaderOrder::LengthFirst } else { HeaderOrder::TypeFirst };
            let mut v = Vec::new();
            encode_package(&vec![7u8; body_len], order, src_ea.then_some("tcp://10.0.0.1:9701"), &mut v);
            if let Some((at, byte)) = change {
                if let Some(b) = v.get_mut(at) {
                    *b = byte;
                }
            }
            if let Some(cut) = cut {
                v.truncate(cut);
            }
            let general = parse_any_header(&v, max);
            if let Some(h) = jxse_header(&v, max) {
                prop_assert_eq!(general, HeaderParse::Complete(h));
            }
            prop_assert_eq!(parse_package_header(&v, max), general);
        }
    }

    /// The type field is told from any field differing from it in one byte, anywhere.
    #[test]
    fn is_type_field_is_equality() {
        assert!(is_type_field(JXSE_TYPE_FIELD));
        for at in 0..JXSE_TYPE_FIELD.len() {
            for flip in [0x01u8, 0x20, 0x80, 0xff] {
                let mut f = *JXSE_TYPE_FIELD;
                f[at] ^= flip;
                assert!(!is_type_field(&f), "{at} {flip}");
            }
        }
    }

    /// The shortcut is taken on both of JXSE's orders, and only on them.
    #[test]
    fn jxse_header_takes_both_orders() {
        for order in [HeaderOrder::TypeFirst, HeaderOrder::LengthFirst] {
            let mut v = Vec::new();
            encode_package(b"jxmg0123", order, None, &mut v);
            let h = jxse_header(&v, 8).expect("a JXSE block");
            assert_eq!((h.header_len, h.content_length), (63, 8));
            assert_eq!(h.content_type, Some(CONTENT_TYPE_JXTA_MSG));
            assert_eq!(jxse_header(&v, 7), None, "over the limit");
            assert_eq!(jxse_header(&v[..62], 8), None, "cut");
            let mut ea = Vec::new();
            encode_package(b"jxmg0123", order, Some("tcp://x:1"), &mut ea);
            assert_eq!(jxse_header(&ea, 8), None, "a third header");
        }
    }
}
