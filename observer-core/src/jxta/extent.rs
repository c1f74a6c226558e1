//! Where a `jxmg` message ends, from its length fields alone, resumably.
//!
//! The HTTP transport needs it: a polling response body carries several messages back
//! to back with nothing between them (JXSE writes one after the other on the back
//! channel), and a chunked body arrives piece by piece. The walk keeps its place, so
//! bytes arriving a few at a time cost one pass in total, not one per arrival.
//! Validation of names and text is left to [`super::decode_message`].

use super::message::{ELEMENT_SIGNATURE, MAX_SIGNATURE_DEPTH, MESSAGE_SIGNATURE};
use super::JxtaError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Stage {
    #[default]
    Header,
    NameCount,
    Name,
    ElementCount,
    ElementHead,
    ElementName,
    ElementType,
    ElementEncoding,
    ElementContent,
}

/// The walk's position in one message.
#[derive(Debug, Clone, Default)]
pub struct Extent {
    pos: usize,
    stage: Stage,
    version: u8,
    names_left: u16,
    elements_left: u16,
    flags: u8,
    depth: usize,
}

// Version 0 and 1 element flags (spec §2.1, §2.2), as far as the layout depends on them.
const V0_HAS_TYPE: u8 = 0x01;
const V0_HAS_ENCODING: u8 = 0x02;
const V0_HAS_SIGNATURE: u8 = 0x04;
const V1_U64_LENS: u8 = 0x01;
const V1_NAME_LITERAL: u8 = 0x02;
const V1_HAS_TYPE: u8 = 0x04;
const V1_HAS_SIGNATURE: u8 = 0x08;
const V1_HAS_ENCODING: u8 = 0x10;

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    let b = buf.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_be_bytes(a))
}

impl Extent {
    /// `buf` holds the message's first bytes (the same bytes as at the last call, and
    /// maybe more). `Ok(Some(n))`: the message is `buf[..n]`; `Ok(None)`: more bytes
    /// are needed; an error: this is not a message, or one larger than `max`.
    pub fn advance(&mut self, buf: &[u8], max: u64) -> Result<Option<usize>, JxtaError> {
        loop {
            let Some(step) = self.field(buf, max)? else {
                return Ok(None);
            };
            let next = self.pos.checked_add(step.len).ok_or(JxtaError::TooLarge {
                what: "message",
                len: u64::MAX,
            })?;
            if next as u64 > max {
                return Err(JxtaError::TooLarge {
                    what: "message",
                    len: next as u64,
                });
            }
            if buf.len() < next {
                return Ok(None);
            }
            self.pos = next;
            self.stage = step.then;
            if step.done {
                return Ok(Some(self.pos));
            }
        }
    }

    /// The field at `pos`: how long it is (once its own length prefix is readable)
    /// and what follows it.
    fn field(&mut self, buf: &[u8], max: u64) -> Result<Option<Field>, JxtaError> {
        let at = self.pos;
        let v1 = self.version == 1;
        Ok(Some(match self.stage {
            Stage::Header => {
                let Some(head) = buf.get(at..at + 5) else {
                    return Ok(None);
                };
                if head.get(..4) != Some(MESSAGE_SIGNATURE) {
                    return Err(JxtaError::BadSignature("jxmg"));
                }
                self.version = head[4];
                match self.version {
                    0 => Field::to(5, Stage::NameCount),
                    1 => Field::to(6, Stage::NameCount),
                    v => return Err(JxtaError::UnsupportedVersion(v)),
                }
            }
            Stage::NameCount => {
                let Some(n) = u16_at(buf, at) else {
                    return Ok(None);
                };
                self.names_left = n;
                Field::to(
                    2,
                    if n == 0 {
                        Stage::ElementCount
                    } else {
                        Stage::Name
                    },
                )
            }
            Stage::Name => {
                let Some(len) = u16_at(buf, at) else {
                    return Ok(None);
                };
                // Only counted down once the whole entry is there (see `advance`).
                if buf.len() < at + 2 + usize::from(len) {
                    return Ok(None);
                }
                self.names_left -= 1;
                let then = if self.names_left == 0 {
                    Stage::ElementCount
                } else {
                    Stage::Name
                };
                Field::to(2 + usize::from(len), then)
            }
            Stage::ElementCount => {
                let Some(n) = u16_at(buf, at) else {
                    return Ok(None);
                };
                self.elements_left = n;
                if n == 0 {
                    Field::done(2)
                } else {
                    Field::to(2, Stage::ElementHead)
                }
            }
            Stage::ElementHead => {
                if self.depth > MAX_SIGNATURE_DEPTH {
                    return Err(JxtaError::TooDeep);
                }
                let len = if v1 { 7 } else { 6 };
                let Some(head) = buf.get(at..at + len) else {
                    return Ok(None);
                };
                if head.get(..4) != Some(ELEMENT_SIGNATURE) {
                    return Err(JxtaError::BadSignature("jxel"));
                }
                // v0: jxel, namespace id, flags; v1: jxel, flags, namespace id.
                self.flags = if v1 { head[4] } else { head[5] };
                Field::to(len, Stage::ElementName)
            }
            Stage::ElementName => {
                let len = if !v1 || self.flags & V1_NAME_LITERAL != 0 {
                    let Some(l) = u16_at(buf, at) else {
                        return Ok(None);
                    };
                    2 + usize::from(l)
                } else {
                    2
                };
                Field::to(len, Stage::ElementType)
            }
            Stage::ElementType => {
                let len = match (v1, self.flags) {
                    (false, f) if f & V0_HAS_TYPE != 0 => {
                        let Some(l) = u16_at(buf, at) else {
                            return Ok(None);
                        };
                        2 + usize::from(l)
                    }
                    (true, f) if f & V1_HAS_TYPE != 0 => 2,
                    _ => 0,
                };
                Field::to(len, Stage::ElementEncoding)
            }
            Stage::ElementEncoding => {
                let len = match (v1, self.flags) {
                    (false, f) if f & V0_HAS_ENCODING != 0 => {
                        let Some(l) = u16_at(buf, at) else {
                            return Ok(None);
                        };
                        2 + usize::from(l)
                    }
                    (true, f) if f & V1_HAS_ENCODING != 0 => 2,
                    _ => 0,
                };
                Field::to(len, Stage::ElementContent)
            }
            Stage::ElementContent => {
                let (prefix, len) = if v1 && self.flags & V1_U64_LENS != 0 {
                    let Some(l) = u64_at(buf, at) else {
                        return Ok(None);
                    };
                    (8, l)
                } else {
                    let Some(l) = u32_at(buf, at) else {
                        return Ok(None);
                    };
                    (4, u64::from(l))
                };
                let len = usize::try_from(len)
                    .ok()
                    .and_then(|l| l.checked_add(prefix))
                    .ok_or(JxtaError::TooLarge {
                        what: "element content",
                        len,
                    })?;
                let signed = if v1 {
                    self.flags & V1_HAS_SIGNATURE != 0
                } else {
                    self.flags & V0_HAS_SIGNATURE != 0
                };
                // A lying length is refused before waiting for its content.
                if at.saturating_add(len) as u64 > max {
                    return Err(JxtaError::TooLarge {
                        what: "message",
                        len: at.saturating_add(len) as u64,
                    });
                }
                // State changes only once the content is there: a repeated visit of
                // this stage must see the same state.
                if buf.len() < at.saturating_add(len) {
                    return Ok(None);
                }
                if signed {
                    self.depth += 1;
                    Field::to(len, Stage::ElementHead)
                } else {
                    self.depth = 0;
                    self.elements_left -= 1;
                    if self.elements_left == 0 {
                        Field::done(len)
                    } else {
                        Field::to(len, Stage::ElementHead)
                    }
                }
            }
        }))
    }
}

struct Field {
    len: usize,
    then: Stage,
    done: bool,
}

impl Field {
    fn to(len: usize, then: Stage) -> Field {
        Field {
            len,
            then,
            done: false,
        }
    }
    fn done(len: usize) -> Field {
        Field {
            len,
            then: Stage::Header,
            done: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jxta::message::{encode_message_v0, encode_message_v1, OwnedElement};

    fn elements() -> Vec<OwnedElement> {
        let mut signed = OwnedElement::new("jim", "Doc", Some("text/xml"), "<PING/>");
        signed.signature = Some(Box::new(OwnedElement::new("", "sig", None, "abc")));
        vec![
            signed,
            OwnedElement::new("", "empty", None, ""),
            OwnedElement::new(
                "jxta",
                "EndpointRouterMsg",
                Some("text/xml"),
                "x".repeat(300),
            ),
        ]
    }

    #[test]
    fn finds_the_end_of_both_versions_byte_by_byte() {
        for msg in [
            encode_message_v0(&elements()),
            encode_message_v1(&elements()),
        ] {
            let mut buf = msg.clone();
            buf.extend_from_slice(b"jxmg trailing");
            let mut e = Extent::default();
            let mut found = None;
            for n in 0..=buf.len() {
                if let Some(end) = e.advance(&buf[..n], 1 << 20).unwrap() {
                    found = Some((n, end));
                    break;
                }
            }
            // Found as soon as the last byte is there, not later.
            assert_eq!(found, Some((msg.len(), msg.len())));
            // And in one go.
            assert_eq!(
                Extent::default().advance(&buf, 1 << 20).unwrap(),
                Some(msg.len())
            );
        }
    }

    #[test]
    fn rejects_garbage_and_oversize() {
        assert_eq!(
            Extent::default().advance(b"GET / HTTP/1.1", 1 << 20),
            Err(JxtaError::BadSignature("jxmg"))
        );
        assert_eq!(
            Extent::default().advance(b"jxmg\x07", 1 << 20),
            Err(JxtaError::UnsupportedVersion(7))
        );
        let msg = encode_message_v0(&elements());
        assert!(matches!(
            Extent::default().advance(&msg, 100),
            Err(JxtaError::TooLarge { .. })
        ));
        // A lying content length is refused from its prefix alone.
        let mut lie = b"jxmg\x00\x00\x00\x00\x01jxel\x00\x00\x00\x00".to_vec();
        lie.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Extent::default().advance(&lie, 1 << 20),
            Err(JxtaError::TooLarge { .. })
        ));
    }

    #[test]
    fn signature_chains_are_bounded() {
        let mut el = OwnedElement::new("", "e", None, "");
        for _ in 0..=MAX_SIGNATURE_DEPTH + 1 {
            let mut outer = OwnedElement::new("", "e", None, "");
            outer.signature = Some(Box::new(el));
            el = outer;
        }
        let msg = encode_message_v0(&[el]);
        assert_eq!(
            Extent::default().advance(&msg, 1 << 20),
            Err(JxtaError::TooDeep)
        );
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_decoder(
            names in proptest::collection::vec("[a-z]{0,6}", 1..5),
            v1 in proptest::bool::ANY,
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..20),
            cut in 0usize..400,
        ) {
            let els: Vec<OwnedElement> = names
                .iter()
                .map(|n| OwnedElement::new("", n, (n.len() % 2 == 0).then_some("text/plain"), n.repeat(3)))
                .collect();
            let msg = if v1 { encode_message_v1(&els) } else { encode_message_v0(&els) };
            let mut data = msg.clone();
            data.extend_from_slice(&tail);
            let mut e = Extent::default();
            let cut = cut.min(data.len());
            let first = e.advance(&data[..cut], 1 << 20).unwrap();
            // Never found before its last byte, and then exactly there.
            proptest::prop_assert_eq!(first.is_some(), cut >= msg.len());
            let n = match first {
                Some(n) => n,
                None => e.advance(&data, 1 << 20).unwrap().unwrap(),
            };
            proptest::prop_assert_eq!(n, msg.len());
            proptest::prop_assert_eq!(
                crate::jxta::decode_message(&data[..n]).unwrap(),
                crate::jxta::decode_message(&data).unwrap()
            );
        }

        #[test]
        fn hostile_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200), cut in 0usize..200) {
            let mut e = Extent::default();
            let cut = cut.min(data.len());
            if let Ok(None) = e.advance(&data[..cut], 1 << 20) {
                if let Ok(Some(n)) = e.advance(&data, 1 << 20) {
                    proptest::prop_assert!(n <= data.len());
                }
            }
        }
    }
}
