//! The welcome line each side sends when a TCP connection opens (spec §1.1). It is the
//! only place that ties a connection to the two peer IDs.

use super::{JxtaError, PeerId, PeerPart};

/// Longest welcome line accepted, CRLF included (JXSE's limit).
pub const MAX_WELCOME_LEN: usize = 4096;

/// The signature, with its trailing space, as Wireshark's heuristic matches it.
pub const WELCOME_SIGNATURE: &[u8] = b"JXTAHELLO ";

/// A parsed welcome line, borrowing from the stream buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome<'a> {
    /// Address the sender thinks it reached (the responder puts the initiator's
    /// ephemeral port here).
    pub dest_addr: &'a str,
    /// The sender's own advertised transport address.
    pub public_addr: &'a str,
    /// The sender's peer ID as sent; [`Welcome::peer`] normalises it.
    pub peer_id: &'a str,
    /// Its `<format>-<unique>` part, checked once, here.
    pub peer_part: PeerPart<'a>,
    /// `1` = "don't send me propagated messages on this connection".
    pub noprop: bool,
    /// Preferred binary message version; only in the 3.0 welcome.
    pub msg_version: Option<u8>,
    /// Welcome version token (`1.1` from JXSE, `3.0` from JXTA-C).
    pub version: &'a str,
}

impl Welcome<'_> {
    pub fn peer(&self) -> Option<PeerId> {
        Some(PeerId::from_checked(self.peer_part))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WelcomeVersion {
    V1_1,
    V3_0 { msg_version: u8 },
}

/// Parses one welcome line, without its CR LF. Tokens are separated by exactly one
/// space; 6 tokens is version 1.1 style, 7 tokens carries the preferred message
/// version (3.0).
pub fn parse_welcome(line: &[u8]) -> Result<Welcome<'_>, JxtaError> {
    if line.len() > MAX_WELCOME_LEN {
        return Err(JxtaError::BadWelcome("longer than 4096 bytes"));
    }
    let text = super::wire_str(line).map_err(|_| JxtaError::BadWelcome("not UTF-8"))?;
    // Tokens cut at each space found by `memchr` (a space is ASCII: every cut is a
    // character boundary): `str::split(' ')` set up a character searcher per token,
    // a fifth of a welcome line's cost, paid twice per connection.
    let mut toks = [""; 7];
    let mut n = 0;
    let mut from = 0;
    // Every line JXSE or JXTA-C sends starts so: its first token and cut are known
    // without a search (~60 instructions of a line).
    if line.starts_with(WELCOME_SIGNATURE) {
        toks[0] = "JXTAHELLO";
        n = 1;
        from = WELCOME_SIGNATURE.len();
    }
    loop {
        let end = find_space(&line[from..]).map_or(line.len(), |i| from + i);
        let t = text.get(from..end).unwrap_or_default();
        // A stray empty token (double space) or more than 7 tokens means this is
        // not a line JXSE or JXTA-C would send.
        if t.is_empty() {
            return Err(JxtaError::BadWelcome("empty token"));
        }
        let slot = toks
            .get_mut(n)
            .ok_or(JxtaError::BadWelcome("too many tokens"))?;
        *slot = t;
        n += 1;
        if end == line.len() {
            break;
        }
        from = end + 1;
    }
    if toks[0] != "JXTAHELLO" {
        return Err(JxtaError::BadWelcome("no JXTAHELLO signature"));
    }
    // The tokens and the single spaces between them are the whole line, and a space
    // is no control character: the line is checked in one pass.
    if has_control(line) {
        return Err(JxtaError::BadWelcome("control character"));
    }
    let (msg_version, version) = match n {
        6 => (None, toks[5]),
        7 => {
            let mv = match toks[5] {
                "0" => 0,
                "1" => 1,
                _ => return Err(JxtaError::BadWelcome("bad preferred message version")),
            };
            (Some(mv), toks[6])
        }
        _ => return Err(JxtaError::BadWelcome("wrong number of tokens")),
    };
    // The version is `major.minor`; anything else is not a welcome line.
    // Split at the first `.` by byte (ASCII: a character boundary); `split_once` set
    // up a character searcher for it.
    let version_ok = version
        .bytes()
        .position(|b| b == b'.')
        .is_some_and(|dot| is_digits(&version[..dot]) && is_digits(&version[dot + 1..]));
    if !version_ok {
        return Err(JxtaError::BadWelcome("bad welcome version"));
    }
    let noprop = match toks[4] {
        "0" => false,
        "1" => true,
        _ => return Err(JxtaError::BadWelcome("bad noprop flag")),
    };
    // Checked, not built: the caller builds it (`Welcome::peer`) or finds it shared
    // when it keeps it, without checking it again.
    let peer_part = PeerId::check(toks[3]).ok_or(JxtaError::BadWelcome("bad peer ID"))?;
    Ok(Welcome {
        dest_addr: toks[1],
        public_addr: toks[2],
        peer_id: toks[3],
        peer_part,
        noprop,
        msg_version,
        version,
    })
}

/// Rests at most this long are searched a byte at a time.
const SHORT_REST: usize = 8;

/// The first space of `rest`. A line's last tokens (`0 1.1`, `0 1 3.0`) are a few
/// bytes: there a `memchr` call cost ~56 instructions, more than a byte loop.
fn find_space(rest: &[u8]) -> Option<usize> {
    if rest.len() <= SHORT_REST {
        rest.iter().position(|&b| b == b' ')
    } else {
        memchr::memchr(b' ', rest)
    }
}

/// Whether `line` holds an ASCII control character (`u8::is_ascii_control`: below
/// 0x20, or DEL). The compiler's vectors for a fold over the whole line left a byte
/// at a time over what followed the last whole vector (~200 instructions of a
/// 140-byte welcome line), and a fold per 16-byte block was not made a vector at all;
/// with SSE2 (every x86-64 has it) a block is five instructions, the bytes after the
/// last whole block checked as the line's last 16 (a byte's answer does not depend on
/// where it is, so checking some twice changes nothing).
fn has_control(line: &[u8]) -> bool {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if let Some(last) = line.last_chunk::<16>() {
        // SAFETY: `has_control_sse2` is a `target_feature(enable = "sse2")` function;
        // the `cfg` above says this build's target has SSE2 (x86-64's baseline).
        return unsafe { has_control_sse2(line, last) };
    }
    line.iter().any(u8::is_ascii_control)
}

/// [`has_control`] of `line`, whose last 16 bytes are `last`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn has_control_sse2(line: &[u8], last: &[u8; 16]) -> bool {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    let (below, del) = (_mm_set1_epi8(0x1f), _mm_set1_epi8(0x7f));
    let control = |block: &[u8; 16]| {
        // SAFETY: `block` is 16 bytes long: the unaligned load reads inside it.
        let v = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
        // An unsigned `v <= 0x1f` is `min(v, 0x1f) == v`.
        _mm_or_si128(
            _mm_cmpeq_epi8(_mm_min_epu8(v, below), v),
            _mm_cmpeq_epi8(v, del),
        )
    };
    let any = line
        .as_chunks::<16>()
        .0
        .iter()
        .fold(control(last), |any, block| {
            _mm_or_si128(any, control(block))
        });
    _mm_movemask_epi8(any) != 0
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Builds a welcome line, CR LF included.
pub fn encode_welcome(
    dest_addr: &str,
    public_addr: &str,
    peer_id: &str,
    noprop: bool,
    version: WelcomeVersion,
) -> Vec<u8> {
    let noprop = if noprop { "1" } else { "0" };
    let line = match version {
        WelcomeVersion::V1_1 => {
            format!("JXTAHELLO {dest_addr} {public_addr} {peer_id} {noprop} 1.1\r\n")
        }
        WelcomeVersion::V3_0 { msg_version } => {
            format!("JXTAHELLO {dest_addr} {public_addr} {peer_id} {noprop} {msg_version} 3.0\r\n")
        }
    };
    line.into_bytes()
}

/// The welcome line the stream and carrier tests open a direction with (a JXTA 1.1
/// peer at 10.0.0.1 greeting 10.0.0.2).
#[cfg(test)]
pub(crate) fn test_welcome() -> Vec<u8> {
    encode_welcome(
        "tcp://10.0.0.2:9701",
        "tcp://10.0.0.1:9701",
        "urn:jxta:uuid-0011223303",
        false,
        WelcomeVersion::V1_1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = "JXTAHELLO tcp://127.0.0.1:41219 tcp://127.0.0.1:9701 urn:jxta:uuid-59616261646162614E50472050325033889B6C22963E4D96A9E3E3386F5B281603 0 1.1";

    /// [`has_control`] is the fold over every byte it replaced, for every length up to
    /// five blocks, at two alignments, with a control character, DEL, a byte next to
    /// them or a non-ASCII one (which a signed comparison would take for a control) at
    /// every place.
    #[test]
    fn has_control_is_the_fold() {
        let fold = |l: &[u8]| l.iter().fold(false, |c, b| c | b.is_ascii_control());
        let mut buf = [b'a'; 81];
        for len in 0..=80 {
            for shift in [0, 1] {
                let line = &mut buf[shift..shift + len];
                assert!(!has_control(line), "{len}");
                for at in 0..len {
                    for bad in [0u8, b'\n', 0x1f, b' ', 0x7e, 0x7f, 0x80, 0x9f, 0xff] {
                        line[at] = bad;
                        assert_eq!(has_control(line), fold(line), "{len} {at} {bad}");
                        line[at] = b'a';
                    }
                }
            }
        }
    }

    #[test]
    fn parses_real_jxse_line() {
        let w = parse_welcome(REAL.as_bytes()).unwrap();
        assert_eq!(w.dest_addr, "tcp://127.0.0.1:41219");
        assert_eq!(w.public_addr, "tcp://127.0.0.1:9701");
        assert!(w.peer_id.ends_with("281603"));
        assert!(!w.noprop);
        assert_eq!(w.msg_version, None);
        assert_eq!(w.version, "1.1");
        assert!(w.peer().is_some());
    }

    #[test]
    fn round_trips_both_versions() {
        let pid = "urn:jxta:cbid-0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D03";
        for v in [
            WelcomeVersion::V1_1,
            WelcomeVersion::V3_0 { msg_version: 1 },
        ] {
            let line = encode_welcome("tcp://10.0.0.2:9701", "tcp://10.0.0.1:9701", pid, true, v);
            assert!(line.ends_with(b"\r\n"));
            let w = parse_welcome(&line[..line.len() - 2]).unwrap();
            assert_eq!(w.peer_id, pid);
            assert!(w.noprop);
            match v {
                WelcomeVersion::V1_1 => assert_eq!((w.msg_version, w.version), (None, "1.1")),
                WelcomeVersion::V3_0 { .. } => {
                    assert_eq!((w.msg_version, w.version), (Some(1), "3.0"))
                }
            }
        }
    }

    /// `parse_welcome` as it was before it cut at spaces itself: the tokens as
    /// `str::split(' ')` gives them, each checked for control characters.
    fn reference(line: &[u8]) -> Result<Welcome<'_>, JxtaError> {
        if line.len() > MAX_WELCOME_LEN {
            return Err(JxtaError::BadWelcome("longer than 4096 bytes"));
        }
        let text = std::str::from_utf8(line).map_err(|_| JxtaError::BadWelcome("not UTF-8"))?;
        let mut toks = [""; 7];
        let mut n = 0;
        for t in text.split(' ') {
            if t.is_empty() {
                return Err(JxtaError::BadWelcome("empty token"));
            }
            let slot = toks
                .get_mut(n)
                .ok_or(JxtaError::BadWelcome("too many tokens"))?;
            *slot = t;
            n += 1;
        }
        if toks[0] != "JXTAHELLO" {
            return Err(JxtaError::BadWelcome("no JXTAHELLO signature"));
        }
        if toks
            .iter()
            .take(n)
            .any(|t| t.bytes().any(|b| b.is_ascii_control()))
        {
            return Err(JxtaError::BadWelcome("control character"));
        }
        let (msg_version, version) = match n {
            6 => (None, toks[5]),
            7 => {
                let mv = match toks[5] {
                    "0" => 0,
                    "1" => 1,
                    _ => return Err(JxtaError::BadWelcome("bad preferred message version")),
                };
                (Some(mv), toks[6])
            }
            _ => return Err(JxtaError::BadWelcome("wrong number of tokens")),
        };
        let version_ok = version
            .split_once('.')
            .is_some_and(|(a, b)| is_digits(a) && is_digits(b));
        if !version_ok {
            return Err(JxtaError::BadWelcome("bad welcome version"));
        }
        let noprop = match toks[4] {
            "0" => false,
            "1" => true,
            _ => return Err(JxtaError::BadWelcome("bad noprop flag")),
        };
        let peer_part = PeerId::check(toks[3]).ok_or(JxtaError::BadWelcome("bad peer ID"))?;
        Ok(Welcome {
            dest_addr: toks[1],
            public_addr: toks[2],
            peer_id: toks[3],
            peer_part,
            noprop,
            msg_version,
            version,
        })
    }

    fn same_as_reference(line: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        let got = parse_welcome(line.as_bytes());
        let want = reference(line.as_bytes());
        proptest::prop_assert_eq!(format!("{got:?}"), format!("{want:?}"), "{:?}", line);
        Ok(())
    }

    proptest::proptest! {
        /// Lines of welcome-like pieces, spaces (single, double, leading, trailing),
        /// control and non-ASCII characters: the same welcome or the same error.
        #[test]
        fn parses_as_the_split_reference(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "JXTAHELLO", " ", "  ", "tcp://10.0.0.1:9701", "urn:jxta:uuid-0011223303",
                    "0", "1", "1.1", "3.0", "x", "\t", "\u{7f}", "\u{e9}", "uuid-", "-",
                ]),
                0..12,
            )
        ) {
            same_as_reference(&pieces.concat())?;
        }

        /// Lines that get past the signature: tokens after `JXTAHELLO`, one space
        /// before each, some empty, some with a control character or a space inside.
        #[test]
        fn tokens_after_the_signature_parse_as_the_split_reference(
            tokens in proptest::collection::vec(
                proptest::sample::select(vec![
                    "", "tcp://10.0.0.1:9701", "urn:jxta:uuid-0011223303", "0", "1",
                    "1.1", "3.0", "x", "a\tb", "\u{7f}", "\u{e9}", "uuid-", "a b", "\r",
                    "1.", ".1", "1.1.1", "1..1", "\u{e9}.1",
                ]),
                0..9,
            )
        ) {
            let line: String = std::iter::once("JXTAHELLO")
                .chain(tokens.iter().flat_map(|t| [" ", *t]))
                .collect();
            same_as_reference(&line)?;
        }
    }

    /// Both ways of searching, on rests either side of `SHORT_REST`, spaces anywhere.
    #[test]
    fn find_space_is_memchr() {
        for len in 0..=2 * SHORT_REST {
            for at in (0..len).map(Some).chain([None]) {
                let rest: Vec<u8> = (0..len)
                    .map(|i| if Some(i) == at { b' ' } else { b'a' })
                    .collect();
                assert_eq!(
                    find_space(&rest),
                    memchr::memchr(b' ', &rest),
                    "{len} {at:?}"
                );
            }
        }
    }

    #[test]
    fn rejects_bad_lines() {
        let long = format!("{REAL}{}", " x".repeat(3000));
        for bad in [
            "",
            "JXTAHELLO",
            "HELLO a b urn:jxta:uuid-00 0 1.1",
            "JXTAHELLO a b urn:jxta:uuid-00 2 1.1",
            "JXTAHELLO a b nope 0 1.1",
            "JXTAHELLO a  b urn:jxta:uuid-00 0 1.1",
            "JXTAHELLO a b urn:jxta:uuid-00 0 x",
            "JXTAHELLO a b urn:jxta:uuid-00 0 7 3.0",
            "JXTAHELLO a b urn:jxta:uuid-00 0 1 3.0 extra",
            long.as_str(),
        ] {
            assert!(parse_welcome(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_welcome(&[0xff, 0xfe]).is_err());
    }
}
