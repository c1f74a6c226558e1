//! Internet checksums (RFC 1071) as a receiving host checks them, and the mode that
//! says whether to. Separate from the builder's: the generator and the verifier
//! should not share a bug.

use std::net::IpAddr;

/// Whether IPv4 header and TCP checksums are checked (`--checksums`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumMode {
    /// Checked, except where they are visibly offloaded: a zero IPv4 header checksum,
    /// and TCP directions whose checksums are zero or the bare pseudo-header sum (what
    /// a capture on the sending host shows when the NIC fills them in later).
    #[default]
    Auto,
    /// Every bad checksum drops its packet, offloaded-looking ones included.
    Verify,
    /// Nothing is checked (a capture known to be rewritten by something in between).
    Ignore,
}

/// A checksum mode that is none of `auto`, `verify`, `ignore`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected auto, verify or ignore")]
pub struct UnknownChecksumMode(pub String);

impl ChecksumMode {
    /// The word `from_str` reads and `Display` writes.
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumMode::Auto => "auto",
            ChecksumMode::Verify => "verify",
            ChecksumMode::Ignore => "ignore",
        }
    }
}

impl std::str::FromStr for ChecksumMode {
    type Err = UnknownChecksumMode;
    fn from_str(s: &str) -> Result<Self, UnknownChecksumMode> {
        [
            ChecksumMode::Auto,
            ChecksumMode::Verify,
            ChecksumMode::Ignore,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
        .ok_or_else(|| UnknownChecksumMode(s.to_string()))
    }
}

impl std::fmt::Display for ChecksumMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a segment's transport checksum says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Checksum {
    Valid,
    /// Zero, or the pseudo-header sum alone: filled in by hardware after capture.
    Offloaded,
    Bad,
    /// Not checked: `--checksums ignore`, a UDP datagram, or bytes cut by the snaplen.
    #[default]
    Unchecked,
}

/// One's-complement sum of `parts` as one byte string, folded to 16 bits. Summed as
/// little-endian 32-bit words and byte-swapped at the end (the sum does not depend on
/// byte order, RFC 1071 2(B)). The checks use [`part_sum`] (their parts have even
/// lengths); this general form is the tests' reference and builds their checksums.
#[cfg(test)]
pub(super) fn ones_sum(parts: &[&[u8]]) -> u16 {
    let mut sum: u64 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        let mut b = *part;
        if let Some(hi) = odd.take() {
            match b.split_first() {
                Some((&lo, rest)) => {
                    sum += u64::from(u16::from_le_bytes([hi, lo]));
                    b = rest;
                }
                None => {
                    odd = Some(hi);
                    continue;
                }
            }
        }
        let whole = b.len() & !3;
        let rest = &b[whole..];
        // No overflow: 2^32 words (16 GiB) would be needed to carry out of 64 bits.
        sum += words_sum(&b[..whole]);
        let mut pairs = rest.chunks_exact(2);
        for w in &mut pairs {
            sum += u64::from(u16::from_le_bytes([w[0], w[1]]));
        }
        odd = pairs.remainder().first().copied();
    }
    if let Some(hi) = odd {
        sum += u64::from(hi);
    }
    fold(sum)
}

/// The wide sum folded to 16 bits and put back in network order. Each step keeps the
/// sum modulo 0xffff and never makes a nonzero sum zero; four of them bring any `u64`
/// to at most 0xffff (below 2^33, then 2^17 + 2^16, 0x10001, 0xffff): the loop until
/// then ran one to three times, a mispredicted branch each time it left.
fn fold(sum: u64) -> u16 {
    let sum = (sum & 0xffff_ffff) + (sum >> 32);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    (sum as u16).swap_bytes()
}

/// The wide sum of one part that starts at an even offset of the whole, as
/// [`ones_sum`] adds it (a trailing odd byte is the high byte of its word). For the
/// header and pseudo-header, whose lengths are even, this skips `ones_sum`'s joining
/// of parts (~120 instructions a frame).
fn part_sum(b: &[u8]) -> u64 {
    // An IPv4 header without options and a TCP header without data or options (a pure
    // ACK) are 20 bytes: five words added without the loops (~50 instructions of
    // every IPv4 frame, and again of every bare segment).
    if let Ok(h) = <&[u8; 20]>::try_from(b) {
        return twenty_sum(h);
    }
    let even = b.len() & !1;
    let odd = b.get(even).map_or(0, |&hi| u64::from(hi));
    words_sum(&b[..even]) + odd
}

/// [`part_sum`] of 20 bytes: five words added without the loops.
#[inline(always)]
fn twenty_sum(h: &[u8; 20]) -> u64 {
    let word = |i: usize| u64::from(u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    word(0) + word(4) + word(8) + word(12) + word(16)
}

/// A wide sum of `bytes` (an even number long) congruent modulo 0xffff to the sum of
/// its little-endian 32-bit words (a last lone 16-bit word counted as one), and zero
/// only when every byte is: all [`fold`] needs (2^16 is 1 modulo 0xffff, so any
/// grouping of the bytes into little-endian words sums alike). Every TCP byte passes
/// here: with AVX2 the loop takes four times fewer instructions than the x86-64
/// baseline's SSE2 (jxta-0.1g: 66.6 M instructions in `tcp` before), and its 16-bit
/// form half as many again.
fn words_sum(bytes: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() >= AVX2_FROM && std::is_x86_feature_detected!("avx2") {
        // SAFETY: `words_sum_avx2` is a `target_feature(enable = "avx2")` function;
        // calling it is sound when the CPU has AVX2, which `is_x86_feature_detected!`
        // has just said. Its results are checked against the portable sum by
        // `avx2_sum_equals_the_portable_one`.
        return unsafe { words_sum_avx2(bytes) };
    }
    words_sum_portable(bytes)
}

/// Below this many bytes the feature check and the vector set-up cost more than they
/// save (IPv4 headers, pseudo-headers, bare acks).
#[cfg(target_arch = "x86_64")]
const AVX2_FROM: usize = 64;

/// [`words_sum`] without vectors: 32-bit words, then the lone 16-bit word of a length
/// that is 2 modulo 4.
#[inline(always)]
fn words_sum_portable(bytes: &[u8]) -> u64 {
    let mut quads = bytes.chunks_exact(4);
    let sum = (&mut quads)
        .map(|w| u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
        .sum::<u64>();
    match quads.remainder() {
        [lo, hi, ..] => sum + u64::from(u16::from_le_bytes([*lo, *hi])),
        _ => sum,
    }
}

/// 32-byte blocks summed into `i32` lanes before the lanes are added up. A block adds
/// at most 2^16 in magnitude to each of its eight lanes, 2^19 to their total; a group
/// and the tail's block, (2^11 + 1) · 2^19 < 2^31, so the lanes, their sum and every
/// partial sum of it stay inside an `i32`. An IP packet (at most 65,535 bytes) is one
/// group.
#[cfg(target_arch = "x86_64")]
const AVX2_GROUP_BLOCKS: usize = 1 << 11;

/// 32 zero bytes then 32 of 0xff: the 32 from `n` keep the last `n` bytes of a block.
#[cfg(target_arch = "x86_64")]
static TAIL_MASK: [u8; 64] = {
    let mut mask = [0u8; 64];
    let mut i = 32;
    while i < 64 {
        mask[i] = 0xff;
        i += 1;
    }
    mask
};

/// The exact sum of the little-endian 16-bit words of `bytes` (an even number long;
/// below 32 bytes, [`words_sum_portable`]'s, which [`words_sum`] allows). Each 32-byte
/// block's sixteen words are biased by 0x8000 into `i16` and added pairwise into eight
/// `i32` lanes by `madd` (×1): three instructions a block. The bytes after the last
/// whole block are the last 32 bytes with those before them masked to zero (a zero
/// word adds only its bias, which is counted; with no such bytes the whole block is
/// masked, one block's work where a branch and its set-up cost as much). Blocks go
/// eight to an iteration into two accumulators, the rest by two and one; the lanes
/// are added up as `i32` (see [`AVX2_GROUP_BLOCKS`]) and widened once a group.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn words_sum_avx2(bytes: &[u8]) -> u64 {
    use std::arch::x86_64::{__m256i, _mm256_and_si256, _mm256_loadu_si256, _mm256_setzero_si256};
    let Some(from) = bytes.len().checked_sub(32) else {
        return words_sum_portable(bytes);
    };
    let tail = bytes.len() & 31;
    // SAFETY: `from + 32` is `bytes.len()`, so the first load reads inside `bytes`;
    // `tail` is below 32, so the 32 bytes of `TAIL_MASK` from it lie inside its 64.
    let (block, mask) = unsafe {
        (
            _mm256_loadu_si256(bytes.as_ptr().add(from).cast::<__m256i>()),
            _mm256_loadu_si256(TAIL_MASK.as_ptr().add(tail).cast::<__m256i>()),
        )
    };
    let last = lanes(_mm256_and_si256(block, mask));
    let (blocks, _) = bytes.as_chunks::<32>();
    // Every IP packet is one group: summed without the loop over groups (~20
    // instructions of every data segment).
    let total = if blocks.len() <= AVX2_GROUP_BLOCKS {
        i64::from(group_sum_avx2(blocks, last))
    } else {
        // The tail's lanes go with the first group.
        let mut first = last;
        let mut total: i64 = 0;
        for group in blocks.chunks(AVX2_GROUP_BLOCKS) {
            total += i64::from(group_sum_avx2(group, first));
            first = _mm256_setzero_si256();
        }
        total
    };
    // Every word was counted 0x8000 low: the whole blocks' and the tail block's sixteen.
    (total + 0x8000 * (blocks.len() as i64 * 16 + 16)) as u64
}

/// The biased sum of one group of [`words_sum_avx2`]'s blocks (at most
/// [`AVX2_GROUP_BLOCKS`]) and of the lanes `first`: the lanes added up as `i32`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn group_sum_avx2(group: &[[u8; 32]], first: std::arch::x86_64::__m256i) -> i32 {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi32, _mm256_castsi256_si128, _mm256_extracti128_si256,
        _mm256_loadu_si256, _mm256_setzero_si256, _mm_add_epi32, _mm_cvtsi128_si32,
        _mm_shuffle_epi32,
    };
    // SAFETY: a `[u8; 32]` is 32 readable bytes, what the unaligned load reads.
    let load = |b: &[u8; 32]| unsafe { _mm256_loadu_si256(b.as_ptr().cast::<__m256i>()) };
    let (mut even, mut odd) = (first, _mm256_setzero_si256());
    let (eights, rest) = group.as_chunks::<8>();
    for eight in eights {
        for [a, b] in eight.as_chunks::<2>().0 {
            even = _mm256_add_epi32(even, lanes(load(a)));
            odd = _mm256_add_epi32(odd, lanes(load(b)));
        }
    }
    // Below eight blocks left: four, two and one, each at most once.
    let mut rest = rest;
    if let Some(([a, b, c, d], r)) = rest.split_first_chunk::<4>() {
        even = _mm256_add_epi32(even, lanes(load(a)));
        odd = _mm256_add_epi32(odd, lanes(load(b)));
        even = _mm256_add_epi32(even, lanes(load(c)));
        odd = _mm256_add_epi32(odd, lanes(load(d)));
        rest = r;
    }
    if let Some(([a, b], r)) = rest.split_first_chunk::<2>() {
        even = _mm256_add_epi32(even, lanes(load(a)));
        odd = _mm256_add_epi32(odd, lanes(load(b)));
        rest = r;
    }
    if let Some(a) = rest.first() {
        even = _mm256_add_epi32(even, lanes(load(a)));
    }
    let v = _mm256_add_epi32(even, odd);
    let v = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let v = _mm_add_epi32(v, _mm_shuffle_epi32::<0b01_00_11_10>(v));
    let v = _mm_add_epi32(v, _mm_shuffle_epi32::<0b10_11_00_01>(v));
    _mm_cvtsi128_si32(v)
}

/// A block's sixteen words biased by 0x8000 into `i16` and added pairwise into eight
/// `i32` lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn lanes(block: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::{_mm256_madd_epi16, _mm256_set1_epi16, _mm256_xor_si256};
    _mm256_madd_epi16(
        _mm256_xor_si256(block, _mm256_set1_epi16(i16::MIN)),
        _mm256_set1_epi16(1),
    )
}

/// `0xffff * INVERSE` is 1 modulo 2^64 (0xffff is odd): multiplying by it maps the
/// multiples of 0xffff, `k * 0xffff`, onto their quotients `k`, `0..=QUOTIENTS`, and
/// every other `u64` above them (the map is one to one).
const INVERSE: u64 = 0xfffe_fffe_fffe_ffff;
const QUOTIENTS: u64 = u64::MAX / 0xffff;
const _: () = assert!(0xffff_u64.wrapping_mul(INVERSE) == 1);

/// Whether the wide sum folds to all ones: `fold(sum) == 0xffff` without the folding.
/// The fold keeps the sum modulo 0xffff, makes no nonzero sum zero and ends at most
/// 0xffff, so it ends at all ones exactly when the sum is a nonzero multiple of 0xffff:
/// a quotient (see [`INVERSE`]) from 1 to `QUOTIENTS`. Four instructions where the four
/// folds and the compare took ~15 (and `is_multiple_of(0xffff)`, a division by
/// multiplication, ~12), twice a frame: the IPv4 header and the TCP segment.
#[inline(always)]
fn sums_to_ones(sum: u64) -> bool {
    sum.wrapping_mul(INVERSE).wrapping_sub(1) < QUOTIENTS
}

/// An IPv4 header's checksum is right when the header sums to all ones.
#[inline]
pub(super) fn ipv4_header_ok(header: &[u8]) -> bool {
    sums_to_ones(part_sum(header))
}

/// What the CPU offers the checksums, asked once (by the decoder's constructor) rather
/// than at every segment: the check and its first-call path made the segment's
/// verdict save and restore six registers (~20 instructions of a data segment). A
/// value saying AVX2 is made only where `is_x86_feature_detected!` said so.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cpu {
    avx2: bool,
}

impl Cpu {
    pub(super) fn detect() -> Cpu {
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        Cpu { avx2 }
    }
}

/// Classifies the checksum of the TCP segment `l4` (header and payload, complete)
/// between `src` and `dst`.
pub(super) fn tcp(cpu: Cpu, src: IpAddr, dst: IpAddr, l4: &[u8]) -> Checksum {
    if let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) {
        return tcp_v4(cpu, s.octets(), d.octets(), l4);
    }
    let Some(field) = l4.get(16..18).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return Checksum::Unchecked;
    };
    // The pseudo-header is 40 bytes: `l4` starts at an even offset.
    let mut pseudo = [0u8; 40];
    pseudo[0..16].copy_from_slice(&to_v6(src));
    pseudo[16..32].copy_from_slice(&to_v6(dst));
    pseudo[32..36].copy_from_slice(&(l4.len() as u32).to_be_bytes());
    pseudo[39] = 6;
    verdict(field, part_sum(&pseudo), part_sum(l4))
}

/// [`tcp`] between two IPv4 addresses, given as their bytes (the decoder's
/// shortcut has them so; an `IpAddr` made for the call went through the stack).
/// Inlined into the decoder, which saves the registers its call needs anyway: the
/// call cost ~5 instructions of every frame (the arguments moved, the verdict's
/// byte read back).
#[inline(always)]
pub(super) fn tcp_v4(cpu: Cpu, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Checksum {
    let Some(field) = l4.get(16..18).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return Checksum::Unchecked;
    };
    // The pseudo-header's three words summed as `part_sum` sums them, without writing
    // them out first.
    let [hi, lo] = (l4.len() as u16).to_be_bytes();
    let pseudo_sum = u64::from(u32::from_le_bytes(src))
        + u64::from(u32::from_le_bytes(dst))
        + u64::from(u32::from_le_bytes([0, 6, hi, lo]));
    // A bare segment (a pure ACK) is summed here, where nothing is called: the longer
    // ones' call to the vector sum made every segment save and restore six registers
    // (~15 instructions of every ACK).
    match <&[u8; 20]>::try_from(l4) {
        Ok(h) => verdict(field, pseudo_sum, twenty_sum(h)),
        Err(_) => long_verdict(cpu, field, pseudo_sum, l4),
    }
}

/// [`verdict`] on a segment that is not 20 bytes long. With AVX2 the whole verdict
/// is taken in the vector build, where the word sum is inlined: called from here, it
/// made this function save and restore six registers around the call (~20
/// instructions of every data segment). Nothing else here calls out.
#[inline(never)]
fn long_verdict(cpu: Cpu, field: u16, pseudo_sum: u64, l4: &[u8]) -> Checksum {
    #[cfg(target_arch = "x86_64")]
    if cpu.avx2 && l4.len() >= AVX2_FROM {
        // SAFETY: `verdict_avx2` is a `target_feature(enable = "avx2")` function;
        // calling it is sound when the CPU has AVX2, which `cpu.avx2` says: only
        // `Cpu::detect` sets it, from `is_x86_feature_detected!`.
        return unsafe { verdict_avx2(field, pseudo_sum, l4) };
    }
    let even = l4.len() & !1;
    let odd = l4.get(even).map_or(0, |&hi| u64::from(hi));
    verdict(field, pseudo_sum, words_sum_portable(&l4[..even]) + odd)
}

/// [`long_verdict`] with the AVX2 word sum ([`part_sum`]'s, with its odd byte).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn verdict_avx2(field: u16, pseudo_sum: u64, l4: &[u8]) -> Checksum {
    let even = l4.len() & !1;
    let odd = l4.get(even).map_or(0, |&hi| u64::from(hi));
    verdict(field, pseudo_sum, words_sum_avx2(&l4[..even]) + odd)
}

/// The verdict on a checksum `field` given the wide sums of its pseudo-header and of
/// its segment.
#[inline(always)]
fn verdict(field: u16, pseudo_sum: u64, l4_sum: u64) -> Checksum {
    if sums_to_ones(pseudo_sum + l4_sum) {
        Checksum::Valid
    } else if field == 0 || field == fold(pseudo_sum) {
        Checksum::Offloaded
    } else {
        Checksum::Bad
    }
}

fn to_v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_back_what_they_write() {
        for m in [
            ChecksumMode::Auto,
            ChecksumMode::Verify,
            ChecksumMode::Ignore,
        ] {
            assert_eq!(m.to_string().parse::<ChecksumMode>(), Ok(m));
        }
        assert_eq!(
            "Verify".parse::<ChecksumMode>(),
            Err(UnknownChecksumMode("Verify".into()))
        );
    }

    #[test]
    fn odd_parts_join_across_boundaries() {
        let whole = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        let one = ones_sum(&[&whole]);
        assert_eq!(
            ones_sum(&[&whole[..3], &whole[3..4], &[], &whole[4..]]),
            one
        );
        // RFC 1071's example: 0001 f203 f4f5 f6f7 sums to ddf2.
        assert_eq!(
            ones_sum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]),
            0xddf2
        );
    }

    /// The 16-bit sum, byte pair by byte pair, as RFC 1071 writes it.
    fn naive(bytes: &[u8]) -> u16 {
        let mut sum: u64 = bytes
            .chunks(2)
            .map(|c| u64::from(c[0]) << 8 | u64::from(c.get(1).copied().unwrap_or(0)))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn saturated_words_fold_like_the_naive_sum() {
        for n in 0..40 {
            for fill in [0x00u8, 0x01, 0x80, 0xfe, 0xff] {
                let v = vec![fill; n];
                assert_eq!(ones_sum(&[&v]), naive(&v), "{n} x {fill:#x}");
            }
        }
    }

    /// Two wide sums are the same checksum: equal once folded, and zero together.
    fn same_sum(a: u64, b: u64) -> bool {
        fold(a) == fold(b) && (a == 0) == (b == 0)
    }

    /// The AVX2 sum against the portable one on the lengths past the lanes' grouping
    /// (where an `i32` lane would overflow), on the extremes of the biased words.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_sum_survives_the_largest_groups() {
        if !std::is_x86_feature_detected!("avx2") {
            eprintln!("no AVX2 on this CPU: only the portable sum is used");
            return;
        }
        for fill in [0x00u8, 0xff, 0x80, 0x7f] {
            for len in [32 * AVX2_GROUP_BLOCKS, 32 * AVX2_GROUP_BLOCKS + 96, 5 << 20] {
                let v = vec![fill; len];
                // SAFETY: the CPU has AVX2 (checked above).
                let got = unsafe { words_sum_avx2(&v) };
                assert!(same_sum(got, words_sum_portable(&v)), "{len} x {fill:#x}");
            }
        }
    }

    /// The AVX2 build of the word sum against the portable one, on every even length
    /// around its vector widths, unrolling and grouping, at every start offset within
    /// a vector (the loads are unaligned), on random and saturated words (carries).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_sum_equals_the_portable_one() {
        let data = random_bytes(2_100 + 32);
        let have_avx2 = std::is_x86_feature_detected!("avx2");
        if !have_avx2 {
            // Without AVX2 the dispatch must never take the AVX2 build: the portable
            // sum is what `words_sum` gives below.
            eprintln!("no AVX2 on this CPU: only the portable sum is checked");
        }
        let full = [0xffu8; 2_100 + 32];
        for at in 0..32 {
            for n in (0..=2_100).step_by(2) {
                for bytes in [&data[at..at + n], &full[at..at + n]] {
                    let want = words_sum_portable(bytes);
                    assert!(same_sum(words_sum(bytes), want), "{n} bytes from {at}");
                    if have_avx2 {
                        // SAFETY: the CPU has AVX2 (checked above).
                        let got = unsafe { words_sum_avx2(bytes) };
                        assert!(same_sum(got, want), "{n} bytes from {at}");
                    }
                }
            }
        }
    }

    /// Bytes from a fixed linear congruential generator (the same every run).
    fn random_bytes(n: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                (state >> 56) as u8
            })
            .collect()
    }

    /// A part's sum, whatever the path it takes (the 20-byte shortcut, the portable
    /// or the AVX2 sum, an odd last byte), against RFC 1071's byte pairs: every length
    /// to 2,000 bytes, every start offset within a vector, random bytes and all ones
    /// (the carries' worst case), folded alike and all ones alike.
    #[test]
    fn part_sums_are_the_naive_sum_at_every_length_and_offset() {
        let data = random_bytes(2_000 + 32);
        let full = [0xffu8; 2_000 + 32];
        for at in 0..32 {
            for n in 0..=2_000 {
                for bytes in [&data[at..at + n], &full[at..at + n]] {
                    let (sum, want) = (part_sum(bytes), naive(bytes));
                    assert_eq!(fold(sum), want, "{n} bytes from {at}");
                    assert_eq!(sums_to_ones(sum), want == 0xffff, "{n} bytes from {at}");
                    assert_eq!(sum == 0, bytes.iter().all(|&b| b == 0), "{n} from {at}");
                }
            }
        }
    }

    /// The fold as RFC 1071 loops it, for [`fold`]'s four steps to match.
    fn fold_looped(mut sum: u64) -> u16 {
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        (sum as u16).swap_bytes()
    }

    #[test]
    fn four_folds_are_the_loop_at_the_edges() {
        for sum in [
            0,
            1,
            0xfffe,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0x1_ffff,
            0xffff_ffff,
        ] {
            for sum in [sum, sum << 16, sum << 32, u64::MAX - sum] {
                assert_eq!(fold(sum), fold_looped(sum), "{sum:#x}");
            }
        }
        // 0x1_0000_ffff after the first step, 0x1_ffff after the second, 0x1_0000
        // after the third: the one the fourth is for.
        assert_eq!(
            fold(0x0001_0000_ffff_ffff),
            fold_looped(0x0001_0000_ffff_ffff)
        );
    }

    /// The plain statement of what [`sums_to_ones`] computes.
    fn nonzero_multiple(sum: u64) -> bool {
        sum != 0 && sum.is_multiple_of(0xffff)
    }

    #[test]
    fn all_ones_is_the_fold_at_the_edges() {
        for k in [0u64, 1, 2, 0xffff, 0x1_0000, 0xffff_ffff, u64::MAX / 0xffff] {
            for sum in [
                k * 0xffff,
                (k * 0xffff).wrapping_add(1),
                (k * 0xffff).wrapping_sub(1),
                u64::MAX - k,
            ] {
                assert_eq!(sums_to_ones(sum), fold(sum) == 0xffff, "{sum:#x}");
                assert_eq!(sums_to_ones(sum), nonzero_multiple(sum), "{sum:#x}");
            }
        }
    }

    /// `tcp`'s verdict on `l4` between `a` and `b` with its checksum field set as
    /// `field` says (0 right, 1 zero, 2 the pseudo-header's sum, 3 wrong), and the
    /// verdict of the pseudo-header written out and summed with `l4` by `ones_sum`.
    fn verdicts(cpu: Cpu, a: [u8; 4], b: [u8; 4], l4: Vec<u8>, field: u8) -> (Checksum, Checksum) {
        let mut pseudo = Vec::new();
        pseudo.extend(a);
        pseudo.extend(b);
        pseudo.extend([0, 6]);
        pseudo.extend((l4.len() as u16).to_be_bytes());
        let mut l4 = l4;
        l4[16..18].copy_from_slice(&[0, 0]);
        let right = !ones_sum(&[&pseudo, &l4]);
        let value = match field {
            0 => right,
            1 => 0,
            2 => ones_sum(&[&pseudo]),
            _ => right ^ 0x0100,
        };
        l4[16..18].copy_from_slice(&value.to_be_bytes());
        let whole = ones_sum(&[&pseudo, &l4]);
        let want = if whole == 0xffff {
            Checksum::Valid
        } else if value == 0 || value == ones_sum(&[&pseudo]) {
            Checksum::Offloaded
        } else {
            Checksum::Bad
        };
        (tcp(cpu, IpAddr::from(a), IpAddr::from(b), &l4), want)
    }

    /// The verdicts at every length around the 20-byte shortcut and the vector sum's
    /// threshold, odd lengths included, on random and saturated segments, with the
    /// CPU's features and without AVX2 (the portable path a CPU without it takes).
    #[test]
    fn tcp_verdicts_at_every_short_length() {
        let data = random_bytes(200);
        for n in 18..=200 {
            for l4 in [data[..n].to_vec(), vec![0xff; n]] {
                for (field, cpu) in
                    (0..4).flat_map(|f| [(f, Cpu::detect()), (f, Cpu { avx2: false })])
                {
                    let (a, b) = ([10, 0, 0, 1], [192, 168, 255, 254]);
                    let (got, want) = verdicts(cpu, a, b, l4.clone(), field);
                    assert_eq!(got, want, "{n} bytes, field {field}, {cpu:?}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn four_folds_are_the_loop(sum in proptest::prelude::any::<u64>()) {
            proptest::prop_assert_eq!(fold(sum), fold_looped(sum));
        }

        /// The divisibility test answers as the fold does, on any sum and on the
        /// multiples of 0xffff (where it says yes) and their neighbours.
        #[test]
        fn all_ones_is_the_fold(sum in proptest::prelude::any::<u64>(), k in 0u64..=u64::MAX / 0xffff) {
            proptest::prop_assert_eq!(sums_to_ones(sum), fold_looped(sum) == 0xffff);
            proptest::prop_assert_eq!(sums_to_ones(sum), nonzero_multiple(sum));
            for sum in [k * 0xffff, (k * 0xffff).wrapping_add(1), (k * 0xffff).wrapping_sub(1)] {
                proptest::prop_assert_eq!(sums_to_ones(sum), fold_looped(sum) == 0xffff);
            }
        }

        /// Parts summed alone and added, the first of even length (a header), give
        /// what the joined sum gives, whatever the second's length.
        #[test]
        fn part_sums_add_like_the_joined_sum(
            half_a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            saturate in proptest::bool::ANY,
        ) {
            let mut a: Vec<u8> = half_a.iter().flat_map(|&x| [x, x.wrapping_mul(7)]).collect();
            if saturate {
                a.iter_mut().for_each(|x| *x = 0xff);
            }
            let joined: Vec<u8> = a.iter().chain(&b).copied().collect();
            proptest::prop_assert_eq!(fold(part_sum(&a) + part_sum(&b)), naive(&joined));
            proptest::prop_assert_eq!(fold(part_sum(&b)), ones_sum(&[&b]));
        }

        /// Twenty bytes (the shortcut) sum as any other length does.
        #[test]
        fn a_twenty_byte_part_sums_like_the_naive_sum(
            h in proptest::prelude::any::<[u8; 20]>(),
            saturate in proptest::bool::ANY,
        ) {
            let h = if saturate { [0xff; 20] } else { h };
            proptest::prop_assert_eq!(fold(part_sum(&h)), naive(&h));
            proptest::prop_assert_eq!(part_sum(&h), words_sum_portable(&h));
        }

        /// The IPv4 pseudo-header summed word by word gives the verdict the written-out
        /// header gives: valid, offloaded (zero or the pseudo-header sum alone) or bad.
        #[test]
        fn tcp_verdicts_are_the_written_out_pseudo_headers(
            a in proptest::prelude::any::<[u8; 4]>(),
            b in proptest::prelude::any::<[u8; 4]>(),
            l4 in proptest::collection::vec(proptest::prelude::any::<u8>(), 18..300),
            field in 0u8..4,
        ) {
            let (got, want) = verdicts(Cpu::detect(), a, b, l4, field);
            proptest::prop_assert_eq!(got, want);
        }

        #[test]
        fn wide_sum_equals_the_naive_one(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..4),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut at = 0;
            for c in cuts {
                parts.push(&data[at..c]);
                at = c;
            }
            parts.push(&data[at..]);
            proptest::prop_assert_eq!(ones_sum(&parts), naive(&data));
        }
    }
}
