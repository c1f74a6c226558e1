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
pub fn parse_welcome<'a>(line: &'a [u8]) -> Result<Welcome<'a>, JxtaError> {
    if line.len() > MAX_WELCOME_LEN {
        return Err(JxtaError::BadWelcome("longer than 4096 bytes"));
    }
    // One pass finds the spaces, a byte that is not ASCII and a control character: the
    // ASCII check, the searches for each space (`memchr` calls and byte loops) and the
    // control check each read the line again, ~730 instructions of a JXSE line.
    let scan = scan_line(line);
    // Only a line with a byte that is not ASCII can be other than UTF-8.
    if scan.non_ascii && std::str::from_utf8(line).is_err() {
        return Err(JxtaError::BadWelcome("not UTF-8"));
    }
    // Tokens cut at the spaces found, as bytes of `line`: a `str` cut checks both ends
    // for a character boundary (~25 instructions a token), and a space is ASCII, so
    // every cut is one. The first `MAX_CUTS` spaces are enough: the token that ends at
    // the last of them is an eighth, refused as empty or as one too many.
    // The line's end is the last token's: one slice of cuts, no case for the last.
    let mut cuts = [0u16; MAX_CUTS + 1];
    cuts[..MAX_CUTS].copy_from_slice(&scan.spaces);
    // At most `MAX_WELCOME_LEN` (4096) bytes: the length fits `u16`.
    cuts[scan.n_spaces] = line.len() as u16;
    let mut toks: [&[u8]; 7] = [b""; 7];
    let mut from = 0;
    for (slot, &end) in cuts[..=scan.n_spaces].iter().enumerate() {
        let end = usize::from(end);
        let t = line.get(from..end).unwrap_or_default();
        // A stray empty token (double space) or more than 7 tokens means this is
        // not a line JXSE or JXTA-C would send.
        if t.is_empty() {
            return Err(JxtaError::BadWelcome("empty token"));
        }
        *toks
            .get_mut(slot)
            .ok_or(JxtaError::BadWelcome("too many tokens"))? = t;
        from = end + 1;
    }
    let n = scan.n_spaces + 1;
    // SAFETY: `from_utf8_unchecked` requires valid UTF-8. `line` is UTF-8 (checked
    // above, or all ASCII), and each token is cut from it at the line's ends or next to
    // a space byte, an ASCII character: a character boundary, so the cut is UTF-8 too
    // (`changed_lines_parse_as_the_reference` puts broken and whole multi-byte
    // characters next to every space).
    let tok = |t: &'a [u8]| unsafe { std::str::from_utf8_unchecked(t) };
    if toks[0] != b"JXTAHELLO" {
        return Err(JxtaError::BadWelcome("no JXTAHELLO signature"));
    }
    // The tokens and the single spaces between them are the whole line, and a space
    // is no control character: the line's answer is the tokens'.
    if scan.control {
        return Err(JxtaError::BadWelcome("control character"));
    }
    let (msg_version, version) = match n {
        6 => (None, toks[5]),
        7 => {
            let mv = match toks[5] {
                b"0" => 0,
                b"1" => 1,
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
        .iter()
        .position(|&b| b == b'.')
        .is_some_and(|dot| is_digits(&version[..dot]) && is_digits(&version[dot + 1..]));
    if !version_ok {
        return Err(JxtaError::BadWelcome("bad welcome version"));
    }
    let noprop = match toks[4] {
        b"0" => false,
        b"1" => true,
        _ => return Err(JxtaError::BadWelcome("bad noprop flag")),
    };
    // Checked, not built: the caller builds it (`Welcome::peer`) or finds it shared
    // when it keeps it, without checking it again.
    let peer_id = tok(toks[3]);
    let peer_part = PeerId::check(peer_id).ok_or(JxtaError::BadWelcome("bad peer ID"))?;
    Ok(Welcome {
        dest_addr: tok(toks[1]),
        public_addr: tok(toks[2]),
        peer_id,
        peer_part,
        noprop,
        msg_version,
        version: tok(version),
    })
}

/// Spaces of a line [`scan_line`] reports: the cuts of a line's seven tokens and the
/// one that ends an eighth.
const MAX_CUTS: usize = 8;

/// What one pass over a welcome line finds.
#[derive(Debug, Default, PartialEq, Eq)]
struct LineScan {
    /// Where the first `n_spaces` spaces are, in order (a line is at most
    /// `MAX_WELCOME_LEN` bytes: every place fits).
    spaces: [u16; MAX_CUTS],
    /// How many of `spaces` are found: all of the line's, or `MAX_CUTS`.
    n_spaces: usize,
    /// A byte of 0x80 or more.
    non_ascii: bool,
    /// An ASCII control character (`u8::is_ascii_control`: below 0x20, or DEL).
    control: bool,
}

impl LineScan {
    /// Records the spaces `mask` marks (bit `i`: the byte at `at + i`) while there is
    /// room.
    #[inline(always)]
    fn add_spaces(&mut self, mut mask: u32, at: usize) {
        while mask != 0 && self.n_spaces < MAX_CUTS {
            // A line is at most `MAX_WELCOME_LEN` (4096) bytes: a place fits `u16`.
            self.spaces[self.n_spaces] = (at + mask.trailing_zeros() as usize) as u16;
            self.n_spaces += 1;
            mask &= mask - 1;
        }
    }
}

/// [`LineScan`] of `line` (at most `MAX_WELCOME_LEN` bytes). With SSE2 (every x86-64
/// has it) 16 bytes at a time, the bytes after the last whole block read as the
/// line's last 16 with the spaces already seen masked off (whether a byte is a control
/// or not ASCII does not depend on where it is: reading some twice changes nothing).
fn scan_line(line: &[u8]) -> LineScan {
    debug_assert!(line.len() <= MAX_WELCOME_LEN);
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if let Some(last) = line.last_chunk::<16>() {
        // SAFETY: `scan_line_sse2` is a `target_feature(enable = "sse2")` function;
        // the `cfg` above says this build's target has SSE2 (x86-64's baseline).
        return unsafe { scan_line_sse2(line, last) };
    }
    scan_bytes(line)
}

/// [`scan_line`] a byte at a time: lines shorter than a block, other targets, and the
/// reference of `scan_line_is_the_bytes`.
fn scan_bytes(line: &[u8]) -> LineScan {
    let mut scan = LineScan::default();
    for (i, &b) in line.iter().enumerate() {
        if b == b' ' {
            scan.add_spaces(1, i);
        }
        scan.non_ascii |= !b.is_ascii();
        scan.control |= b.is_ascii_control();
    }
    scan
}

/// [`scan_line`] of `line`, whose last 16 bytes are `last`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn scan_line_sse2(line: &[u8], last: &[u8; 16]) -> LineScan {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_setzero_si128,
    };
    let (below, del, space) = (
        _mm_set1_epi8(0x1f),
        _mm_set1_epi8(0x7f),
        _mm_set1_epi8(b' ' as i8),
    );
    let mut scan = LineScan::default();
    let (mut control, mut all) = (_mm_setzero_si128(), _mm_setzero_si128());
    // Folds `block` into the line's answers, gives its spaces' mask.
    let mut block_of = |block: &[u8; 16]| {
        // SAFETY: `block` is 16 bytes long: the unaligned load reads inside it.
        let v = unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) };
        // An unsigned `v <= 0x1f` is `min(v, 0x1f) == v`.
        let c = _mm_or_si128(
            _mm_cmpeq_epi8(_mm_min_epu8(v, below), v),
            _mm_cmpeq_epi8(v, del),
        );
        control = _mm_or_si128(control, c);
        // The high bits of every byte OR-ed: one is set where a byte is not ASCII.
        all = _mm_or_si128(all, v);
        _mm_movemask_epi8(_mm_cmpeq_epi8(v, space)) as u32
    };
    let (blocks, rest) = line.as_chunks::<16>();
    for (i, block) in blocks.iter().enumerate() {
        let spaces = block_of(block);
        scan.add_spaces(spaces, 16 * i);
    }
    if !rest.is_empty() {
        // The last block's first `16 - rest.len()` bytes were read above.
        let spaces = block_of(last) >> (16 - rest.len());
        scan.add_spaces(spaces, line.len() - rest.len());
    }
    scan.control = _mm_movemask_epi8(control) != 0;
    scan.non_ascii = _mm_movemask_epi8(all) != 0;
    scan
}

fn is_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
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

    /// The scan by blocks is the scan a byte at a time, for every length up to five
    /// blocks, at two alignments, with a space, a control character, DEL, a byte next
    /// to them or a non-ASCII one (which a signed comparison would take for a control)
    /// at every place, on lines of no space or of a space every 3 or 17 bytes (more than
    /// `MAX_CUTS` of them, in the tail too).
    #[test]
    fn scan_line_is_the_bytes() {
        let mut buf = [b'a'; 81];
        for every in [0, 3, 17] {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = if every > 0 && i % every == every - 1 {
                    b' '
                } else {
                    b'a'
                };
            }
            for len in 0..=80 {
                for shift in [0, 1] {
                    let line = &mut buf[shift..shift + len];
                    assert_eq!(scan_line(line), scan_bytes(line), "{every} {len}");
                    for at in 0..len {
                        let was = line[at];
                        for bad in [0u8, b'\n', 0x1f, b' ', 0x7e, 0x7f, 0x80, 0x9f, 0xff] {
                            line[at] = bad;
                            let (got, want) = (scan_line(line), scan_bytes(line));
                            assert_eq!(got, want, "{every} {len} {at} {bad}");
                            assert_eq!(want.non_ascii, !line.is_ascii());
                            assert_eq!(want.control, line.iter().any(u8::is_ascii_control));
                        }
                        line[at] = was;
                    }
                }
            }
        }
        // The spaces are the line's, the first `MAX_CUTS` of them.
        let line = b"a b  c d e f g h i j";
        let scan = scan_line(line);
        assert_eq!(scan.n_spaces, MAX_CUTS);
        assert_eq!(scan.spaces, [1, 3, 4, 6, 8, 10, 12, 14]);
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
            .is_some_and(|(a, b)| is_digits(a.as_bytes()) && is_digits(b.as_bytes()));
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

    /// JXSE's and JXTA-C's lines, and every prefix of them, with one byte changed at
    /// any place (a space, a control, DEL, a dot, a digit, bytes of broken or whole
    /// UTF-8), with two changes, and with more tokens than seven (empty or not):
    /// the reference's welcome or error.
    #[test]
    fn changed_lines_parse_as_the_reference() {
        let v3 = format!("{} 1 3.0", &REAL[..REAL.len() - 4]);
        let many: String = std::iter::once("JXTAHELLO")
            .chain(std::iter::repeat_n(" x", 12))
            .collect();
        let bytes = [
            b' ', 0, b'\t', 0x7f, b'.', b'0', b'1', 0x80, 0xc3, 0xa9, 0xff,
        ];
        for line in [REAL, v3.as_str(), many.as_str()] {
            let line = line.as_bytes();
            for len in 0..=line.len() {
                let l = &line[..len];
                assert_eq!(
                    format!("{:?}", parse_welcome(l)),
                    format!("{:?}", reference(l))
                );
            }
            let mut l = line.to_vec();
            for at in 0..l.len() {
                let was = l[at];
                for b in bytes {
                    l[at] = b;
                    let one = format!("{:?}", reference(&l));
                    assert_eq!(format!("{:?}", parse_welcome(&l)), one, "{at} {b}");
                    for at2 in (at + 1..l.len()).step_by(7) {
                        let was2 = l[at2];
                        for b2 in [b' ', 0xa9] {
                            l[at2] = b2;
                            assert_eq!(
                                format!("{:?}", parse_welcome(&l)),
                                format!("{:?}", reference(&l)),
                                "{at} {b} {at2} {b2}"
                            );
                        }
                        l[at2] = was2;
                    }
                }
                l[at] = was;
            }
        }
    }

    /// Tokens cut as bytes and read as `str` without a second check: multi-byte
    /// characters at both ends of every token, next to every space, give the
    /// reference's welcome, each field the same text.
    #[test]
    fn tokens_next_to_multibyte_characters_are_the_references() {
        for c in ["\u{e9}", "\u{20ac}", "\u{1f600}"] {
            for which in 1..=3 {
                let mut toks = [
                    "JXTAHELLO".to_string(),
                    "tcp://10.0.0.2:9701".into(),
                    "tcp://10.0.0.1:9701".into(),
                    "urn:jxta:uuid-0011223303".into(),
                    "0".into(),
                    "1.1".into(),
                ];
                toks[which] = format!("{c}{}{c}", toks[which]);
                let line = toks.join(" ");
                let got = parse_welcome(line.as_bytes());
                assert_eq!(
                    format!("{got:?}"),
                    format!("{:?}", reference(line.as_bytes()))
                );
                if which < 3 {
                    let w = got.unwrap();
                    assert_eq!([w.dest_addr, w.public_addr][which - 1], toks[which]);
                }
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
