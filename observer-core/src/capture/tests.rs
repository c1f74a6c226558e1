use super::*;
use std::io::{Cursor, Read};

/// Hands out bytes in tiny pieces, like a pipe, to exercise partial reads.
struct Dribble {
    data: Vec<u8>,
    pos: usize,
}

impl Read for Dribble {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(3).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn reader(bytes: Vec<u8>) -> Result<CaptureReader, CaptureError> {
    CaptureReader::from_reader("test", Box::new(Cursor::new(bytes)))
}

type Owned = (UnixNanos, LinkType, Vec<u8>, u32, u32);

fn read_all(r: &mut CaptureReader) -> (Vec<Owned>, Option<CaptureError>) {
    let mut out = Vec::new();
    loop {
        match r.next_frame() {
            Ok(Some(f)) => out.push((f.ts, f.link_type, f.data.to_vec(), f.orig_len, f.interface)),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

fn sample_frames() -> Vec<(UnixNanos, Vec<u8>, u32)> {
    vec![
        (1_700_000_000_123_456_789, vec![1, 2, 3, 4, 5], 5),
        (1_700_000_001_000_000_001, vec![], 0),
        (1_700_000_002_999_999_999, (0..=255).collect(), 1500),
        (0, vec![0xaa; 7], 7),
    ]
}

fn truncate_ts(ts: UnixNanos, exp10: u32) -> UnixNanos {
    let unit = 10u64.pow(9 - exp10);
    ts / unit * unit
}

#[test]
fn round_trip_every_format_and_link_type() {
    let formats = [
        WriteFormat::Pcap {
            nanos: false,
            big_endian: false,
        },
        WriteFormat::Pcap {
            nanos: false,
            big_endian: true,
        },
        WriteFormat::Pcap {
            nanos: true,
            big_endian: false,
        },
        WriteFormat::Pcap {
            nanos: true,
            big_endian: true,
        },
        WriteFormat::Pcapng,
    ];
    let links = [
        LinkType::NULL,
        LinkType::ETHERNET,
        LinkType::RAW,
        LinkType::LOOP,
        LinkType::LINUX_SLL,
        LinkType::LINUX_SLL2,
        LinkType::IPV4,
        LinkType::IPV6,
    ];
    for format in formats {
        for link in links {
            let mut w = CaptureWriter::new(Vec::new(), format, link).unwrap();
            for (ts, data, orig) in sample_frames() {
                w.write_frame(0, ts, &data, orig).unwrap();
            }
            let bytes = w.finish().unwrap();
            let total = bytes.len() as u64;
            let mut r = reader(bytes).unwrap();
            let expect_format = match format {
                WriteFormat::Pcap { nanos, big_endian } => {
                    CaptureFormat::Pcap { nanos, big_endian }
                }
                WriteFormat::Pcapng => CaptureFormat::Pcapng,
            };
            assert_eq!(r.format(), expect_format);
            let (frames, err) = read_all(&mut r);
            assert!(err.is_none(), "{format:?} {link}: {err:?}");
            let exp = match format {
                WriteFormat::Pcap { nanos: false, .. } => 6,
                _ => 9,
            };
            let want: Vec<Owned> = sample_frames()
                .into_iter()
                .map(|(ts, data, orig)| (truncate_ts(ts, exp), link, data, orig, 0))
                .collect();
            assert_eq!(frames, want, "{format:?} {link}");
            assert_eq!(r.offset(), total);
            assert_eq!(r.stats().frames, 4);
            assert_eq!(r.stats().snaplen_cut, 1);
        }
    }
}

#[test]
fn pcapng_interfaces_with_own_link_types_and_resolutions() {
    let mut w = CaptureWriter::new(Vec::new(), WriteFormat::Pcapng, LinkType::ETHERNET).unwrap();
    let us = w.add_interface(LinkType::RAW, 6).unwrap();
    let s = w.add_interface(LinkType::LINUX_SLL2, 0).unwrap();
    assert_eq!((us, s), (1, 2));
    let ts = 1_600_000_000_987_654_321;
    w.write_frame(0, ts, b"eth", 3).unwrap();
    w.write_frame(1, ts, b"raw", 3).unwrap();
    w.write_frame(2, ts, b"sll2", 4).unwrap();
    assert!(w.write_frame(3, ts, b"x", 1).is_err());
    let mut r = reader(w.finish().unwrap()).unwrap();
    let (frames, err) = read_all(&mut r);
    assert!(err.is_none());
    let got: Vec<_> = frames.iter().map(|f| (f.0, f.1, f.4)).collect();
    assert_eq!(
        got,
        vec![
            (ts, LinkType::ETHERNET, 0),
            (1_600_000_000_987_654_000, LinkType::RAW, 1),
            (1_600_000_000_000_000_000, LinkType::LINUX_SLL2, 2),
        ]
    );
    assert_eq!(r.stats().interfaces, 3);
}

#[test]
fn pcap_writer_refuses_extra_interfaces() {
    let mut w = CaptureWriter::new(
        Vec::new(),
        WriteFormat::Pcap {
            nanos: true,
            big_endian: false,
        },
        LinkType::ETHERNET,
    )
    .unwrap();
    assert!(w.add_interface(LinkType::RAW, 9).is_err());
    assert!(w.write_frame(1, 0, b"x", 1).is_err());
}

#[test]
fn big_endian_pcapng_and_several_sections() {
    let mut a = CaptureWriter::new_pcapng_be(Vec::new(), LinkType::RAW).unwrap();
    a.add_interface(LinkType::ETHERNET, 6).unwrap();
    a.write_frame(1, 5_000_001_000, b"be", 2).unwrap();
    let mut bytes = a.finish().unwrap();
    // Second section, little-endian: interface 1 no longer exists.
    let mut b = CaptureWriter::new(Vec::new(), WriteFormat::Pcapng, LinkType::LOOP).unwrap();
    b.write_frame(0, 7, b"le", 2).unwrap();
    b.write_frame(0, 8, b"le2", 3).unwrap();
    bytes.extend(b.finish().unwrap());
    // Third section reuses an interface id that is not declared.
    let mut c = CaptureWriter::new(Vec::new(), WriteFormat::Pcapng, LinkType::RAW).unwrap();
    c.add_interface(LinkType::RAW, 9).unwrap();
    c.write_frame(1, 9, b"x", 1).unwrap();
    let c = c.finish().unwrap();
    // Drop the IDB of interface 1 (its 32 bytes follow SHB 28 + IDB 32).
    bytes.extend(&c[..60]);
    bytes.extend(&c[92..]);
    let mut r = reader(bytes).unwrap();
    let (frames, err) = read_all(&mut r);
    let got: Vec<_> = frames.iter().map(|f| (f.0, f.1, f.2.clone())).collect();
    assert_eq!(
        got,
        vec![
            (5_000_001_000, LinkType::ETHERNET, b"be".to_vec()),
            (7, LinkType::LOOP, b"le".to_vec()),
            (8, LinkType::LOOP, b"le2".to_vec()),
        ]
    );
    let err = err.expect("unknown interface");
    assert!(
        matches!(
            err,
            CaptureError::UnknownInterface {
                interface: 1,
                declared: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_recoverable());
    assert_eq!(r.stats().sections, 3);
    assert!(matches!(r.next_frame(), Ok(None)));
}

fn le_block(block_type: u32, body: &[u8]) -> Vec<u8> {
    let len = (12 + body.len().next_multiple_of(4)) as u32;
    let mut v = Vec::new();
    v.extend(block_type.to_le_bytes());
    v.extend(len.to_le_bytes());
    v.extend(body);
    v.resize(len as usize - 4, 0);
    v.extend(len.to_le_bytes());
    v
}

fn shb() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(0x1a2b_3c4du32.to_le_bytes());
    body.extend(1u16.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    body.extend((-1i64).to_le_bytes());
    le_block(0x0a0d_0d0a, &body)
}

fn idb(link: u16, snaplen: u32, options: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(link.to_le_bytes());
    body.extend(0u16.to_le_bytes());
    body.extend(snaplen.to_le_bytes());
    for (code, value) in options {
        body.extend(code.to_le_bytes());
        body.extend((value.len() as u16).to_le_bytes());
        body.extend(*value);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    body.extend([0; 4]);
    le_block(1, &body)
}

fn epb(if_id: u32, units: u64, data: &[u8], orig: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(if_id.to_le_bytes());
    body.extend(((units >> 32) as u32).to_le_bytes());
    body.extend((units as u32).to_le_bytes());
    body.extend((data.len() as u32).to_le_bytes());
    body.extend(orig.to_le_bytes());
    body.extend(data);
    le_block(6, &body)
}

#[test]
fn binary_resolution_offset_spb_and_ignored_blocks() {
    let mut f = shb();
    // 2^-20 s units, offset +100 s.
    f.extend(idb(1, 4, &[(9, &[0x80 | 20]), (14, &100i64.to_le_bytes())]));
    f.extend(le_block(4, &[0; 8])); // NRB
    f.extend(epb(0, 3 << 19, b"abc", 3)); // 1.5 s
    f.extend(le_block(5, &[0; 20])); // ISB
    f.extend(le_block(0x0bad, &[1, 2, 3])); // custom / unknown
    let mut spb = 10u32.to_le_bytes().to_vec();
    spb.extend(b"0123456789");
    f.extend(le_block(3, &spb));
    let mut r = reader(f).unwrap();
    let (frames, err) = read_all(&mut r);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].0, 101_500_000_000);
    assert_eq!(frames[0].2, b"abc");
    // SPB cut to the interface snaplen, and it has no timestamp.
    assert_eq!(
        (frames[1].0, frames[1].2.as_slice(), frames[1].3),
        (0, &b"0123"[..], 10)
    );
    assert_eq!(r.stats().other_blocks, 3);
    assert_eq!(r.stats().snaplen_cut, 1);
}

#[test]
fn negative_offset_and_extreme_resolutions_saturate() {
    assert_eq!(reader::iface_nanos(5, 0, -10), 0);
    assert_eq!(reader::iface_nanos(u64::MAX, 0, i64::MAX), u64::MAX);
    assert_eq!(reader::iface_nanos(123, 127, 0), 0);
    assert_eq!(reader::iface_nanos(1 << 40, 0xff, 0), 0);
    assert_eq!(reader::iface_nanos(1_000_000_000_000, 12, 1), 2_000_000_000);
}

#[test]
fn stream_in_tiny_reads() {
    let mut w = CaptureWriter::new(Vec::new(), WriteFormat::Pcapng, LinkType::ETHERNET).unwrap();
    for i in 0..50u64 {
        w.write_frame(0, i, &vec![i as u8; i as usize], i as u32)
            .unwrap();
    }
    let data = w.finish().unwrap();
    let mut r = CaptureReader::from_reader("pipe", Box::new(Dribble { data, pos: 0 })).unwrap();
    let (frames, err) = read_all(&mut r);
    assert!(err.is_none());
    assert_eq!(frames.len(), 50);
    assert_eq!(frames[49].2, vec![49u8; 49]);
}

#[test]
fn truncated_last_record_returns_prior_frames_then_error() {
    for format in [
        WriteFormat::Pcap {
            nanos: true,
            big_endian: false,
        },
        WriteFormat::Pcapng,
    ] {
        let mut w = CaptureWriter::new(Vec::new(), format, LinkType::RAW).unwrap();
        w.write_frame(0, 1, b"first", 5).unwrap();
        w.write_frame(0, 2, b"second", 6).unwrap();
        let full = w.finish().unwrap();
        for cut in 1..12 {
            let bytes = full[..full.len() - cut].to_vec();
            let mut r = reader(bytes).unwrap();
            let (frames, err) = read_all(&mut r);
            assert_eq!(frames.len(), 1, "{format:?} cut {cut}");
            let err = err.expect("truncation error");
            let second_at = match format {
                WriteFormat::Pcap { .. } => 24 + 16 + 5,
                WriteFormat::Pcapng => 28 + 32 + 40,
            };
            assert!(
                matches!(err, CaptureError::Truncated { offset, .. } if offset == second_at),
                "{format:?} cut {cut}: {err}"
            );
            assert!(err.to_string().starts_with("test: truncated"));
            assert!(matches!(r.next_frame(), Ok(None)));
        }
    }
}

#[test]
fn garbage_and_empty_inputs_are_errors() {
    assert!(matches!(reader(vec![]), Err(CaptureError::Empty { .. })));
    assert!(matches!(
        reader(vec![0xd4]),
        Err(CaptureError::NotACapture { .. })
    ));
    let e = reader(b"GET / HTTP/1.1\r\n".to_vec()).unwrap_err();
    assert!(
        matches!(
            e,
            CaptureError::NotACapture {
                magic: 0x4745_5420,
                ..
            }
        ),
        "{e}"
    );
    // A pcap header cut short.
    assert!(matches!(
        reader(vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0]),
        Err(CaptureError::Truncated { .. })
    ));
    // A pcapng SHB with a bad byte-order magic.
    let mut f = shb();
    f[8] = 0;
    assert!(matches!(reader(f), Err(CaptureError::Malformed { .. })));
}

#[test]
fn huge_claimed_lengths_are_errors_not_allocations() {
    let mut w = CaptureWriter::new(
        Vec::new(),
        WriteFormat::Pcap {
            nanos: false,
            big_endian: false,
        },
        LinkType::RAW,
    )
    .unwrap();
    w.write_frame(0, 0, b"ok", 2).unwrap();
    let mut f = w.finish().unwrap();
    f.extend([0; 8]);
    f.extend((1u32 << 30).to_le_bytes());
    f.extend((1u32 << 30).to_le_bytes());
    let mut r = reader(f).unwrap();
    let (frames, err) = read_all(&mut r);
    assert_eq!(frames.len(), 1);
    assert!(
        matches!(err, Some(CaptureError::TooLarge { offset: 42, .. })),
        "{err:?}"
    );

    let mut f = shb();
    f.extend(idb(1, 0, &[]));
    f.extend(6u32.to_le_bytes());
    f.extend((1u32 << 30).to_le_bytes());
    let mut r = reader(f).unwrap();
    assert!(matches!(r.next_frame(), Err(CaptureError::TooLarge { .. })));

    // Skipped block types stream past, so a lying length is a truncation.
    let mut f = shb();
    f.extend(5u32.to_le_bytes());
    f.extend((1u32 << 30).to_le_bytes());
    let mut r = reader(f).unwrap();
    assert!(matches!(
        r.next_frame(),
        Err(CaptureError::Truncated { .. })
    ));
}

#[test]
fn bad_block_lengths_are_malformed() {
    let mut f = shb();
    let mut b = idb(1, 0, &[]);
    let n = b.len();
    b[n - 4] ^= 4; // trailing length disagrees
    f.extend(b);
    let mut r = reader(f).unwrap();
    assert!(matches!(
        r.next_frame(),
        Err(CaptureError::Malformed { offset: 28, .. })
    ));

    let mut f = shb();
    f.extend(6u32.to_le_bytes());
    f.extend(13u32.to_le_bytes());
    let mut r = reader(f).unwrap();
    assert!(matches!(
        r.next_frame(),
        Err(CaptureError::Malformed { .. })
    ));

    // EPB whose captured length overruns the block.
    let mut f = shb();
    f.extend(idb(1, 0, &[]));
    let mut e = epb(0, 0, b"abcd", 4);
    e[20] = 200;
    f.extend(e);
    let mut r = reader(f).unwrap();
    assert!(matches!(
        r.next_frame(),
        Err(CaptureError::Malformed { .. })
    ));
}

#[test]
fn dev_zero_fails_fast() {
    let path = std::path::Path::new("/dev/zero");
    if path.exists() {
        let e = CaptureReader::open(path).unwrap_err();
        assert!(
            matches!(e, CaptureError::NotACapture { magic: 0, .. }),
            "{e}"
        );
    }
}

#[test]
fn directory_and_missing_paths_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let e = CaptureReader::open(dir.path()).unwrap_err();
    assert!(matches!(e, CaptureError::Open { .. }));
    assert!(
        e.to_string().contains(&dir.path().display().to_string()),
        "{e}"
    );
    let missing = dir.path().join("nope.pcap");
    let e = CaptureReader::open(&missing).unwrap_err();
    assert!(e.to_string().contains("nope.pcap"), "{e}");
}

#[test]
fn open_reads_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.pcapng");
    let mut w = CaptureWriter::new(Vec::new(), WriteFormat::Pcapng, LinkType::ETHERNET).unwrap();
    w.write_frame(0, 42, b"hello", 5).unwrap();
    std::fs::write(&path, w.finish().unwrap()).unwrap();
    let mut r = CaptureReader::open(&path).unwrap();
    assert_eq!(r.name(), path.display().to_string());
    let f = r.next_frame().unwrap().unwrap();
    assert_eq!((f.ts, f.data), (42, &b"hello"[..]));
    assert!(r.next_frame().unwrap().is_none());
}

#[test]
fn random_bytes_never_panic() {
    let mut next = crate::xorshift(0x9e37_79b9_7f4a_7c15);
    let mut w = CaptureWriter::new(Vec::new(), WriteFormat::Pcapng, LinkType::ETHERNET).unwrap();
    w.add_interface(LinkType::RAW, 6).unwrap();
    for i in 0..20u64 {
        w.write_frame((i % 2) as u32, i, &[i as u8; 30], 30)
            .unwrap();
    }
    let good = w.finish().unwrap();
    for _ in 0..2000 {
        let mut f = good.clone();
        for _ in 0..(next() % 8) {
            let at = (next() as usize) % f.len();
            f[at] = next() as u8;
        }
        f.truncate((next() as usize) % (f.len() + 1));
        if let Ok(mut r) = reader(f) {
            for _ in 0..100 {
                match r.next_frame() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) if e.is_recoverable() => {}
                    Err(_) => break,
                }
            }
        }
    }
}

/// Every outcome of reading `bytes` to its end (at most 100 calls): frames, errors with
/// their offsets, the stats; a frame read in place is also checked against its place.
/// `in_place`: each frame asked of [`CaptureReader::next_in_place`] first, as
/// `read_input` does.
fn outcomes(r: Result<CaptureReader, CaptureError>, bytes: &[u8], in_place: bool) -> Vec<String> {
    let mut r = match r {
        Ok(r) => r,
        Err(e) => return vec![format!("open: {e}")],
    };
    let mut out = Vec::new();
    for _ in 0..100 {
        if let Some((f, at, len)) = in_place.then(|| r.next_in_place()).flatten() {
            assert!(f.data.is_empty());
            let data = FrameMerger::in_map(r.mapped(), at, len);
            assert_eq!(bytes.get(at..at + len as usize), Some(data), "place {at}");
            out.push(format!(
                "{} {:?} {:?} {} {}",
                f.ts, f.link_type, data, f.orig_len, f.interface
            ));
            continue;
        }
        match r.next_frame_placed() {
            Ok(Some((f, at))) => {
                if let Some(at) = at {
                    assert_eq!(bytes.get(at..at + f.data.len()), Some(f.data), "place {at}");
                }
                out.push(format!(
                    "{} {:?} {:?} {} {}",
                    f.ts, f.link_type, f.data, f.orig_len, f.interface
                ));
            }
            Ok(None) => {
                out.push("end".into());
                break;
            }
            Err(e) => out.push(format!("error: {e} {}", e.is_recoverable())),
        }
    }
    out.push(format!("{:?}", r.stats()));
    out
}

/// A mapped input's pcap records are taken where they lie, past the general reads a
/// stream goes through (and by their place alone, `next_in_place`): all read alike, whole, cut anywhere, with lying lengths and
/// with random bytes changed.
#[test]
fn mapped_and_streamed_pcap_read_alike() {
    let mut inputs = Vec::new();
    for (nanos, big_endian) in [(false, false), (false, true), (true, false), (true, true)] {
        let format = WriteFormat::Pcap { nanos, big_endian };
        let mut w = CaptureWriter::new(Vec::new(), format, LinkType::ETHERNET).unwrap();
        for (ts, data, orig) in sample_frames() {
            w.write_frame(0, ts, &data, orig).unwrap();
        }
        let full = w.finish().unwrap();
        for cut in 0..40.min(full.len()) {
            inputs.push(full[..full.len() - cut].to_vec());
        }
        for caplen in [MAX_BLOCK_LEN, MAX_BLOCK_LEN + 1, 1 << 30] {
            let mut lying = full.clone();
            lying.extend([0; 8]);
            let caplen = if big_endian {
                caplen.to_be_bytes()
            } else {
                caplen.to_le_bytes()
            };
            lying.extend(caplen);
            lying.extend(caplen);
            lying.extend([7; 64]);
            inputs.push(lying);
        }
    }
    let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d);
    let good = inputs[0].clone();
    for _ in 0..500 {
        let mut f = good.clone();
        for _ in 0..(next() % 4) {
            let at = (next() as usize) % f.len();
            f[at] = next() as u8;
        }
        f.truncate((next() as usize) % (f.len() + 1));
        inputs.push(f);
    }
    let mut frames = 0;
    for bytes in &inputs {
        let streamed = outcomes(reader(bytes.clone()), bytes, false);
        let mapped = outcomes(
            CaptureReader::from_bytes("test", bytes.clone()),
            bytes,
            false,
        );
        assert_eq!(mapped, streamed, "{bytes:?}");
        let placed = outcomes(
            CaptureReader::from_bytes("test", bytes.clone()),
            bytes,
            true,
        );
        assert_eq!(placed, streamed, "{bytes:?}");
        frames += streamed
            .iter()
            .filter(|o| !o.starts_with(['e', 'o', 'C']))
            .count();
    }
    // The inputs hold frames (not only errors): the fast path was taken.
    assert!(
        frames > inputs.len(),
        "{frames} frames in {} inputs",
        inputs.len()
    );
}
