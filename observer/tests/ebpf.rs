//! The eBPF tap on `lo` (root): every byte of a TCP stream on a tapped port arrives,
//! 60 KiB GSO super-packets included; other ports stay in the kernel until their flow
//! is marked; detaching (explicitly or by drop) leaves no filter and no qdisc of ours.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Need;
use observer::capture::{Frame, LinkType};
use observer::live::ebpf::{EbpfTap, TapConfig};
use observer::live::OwnedFrame;
use observer::packet::{PacketConfig, PacketDecoder, L4};

fn root() -> bool {
    common::have(&[Need::Root])
}

fn tc_show(kind: &str, dir: Option<&str>) -> String {
    let mut args = vec![kind, "show", "dev", "lo"];
    if let Some(d) = dir {
        args.push(d);
    }
    let out = Command::new("tc").args(&args).output().expect("tc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nothing_of_ours() -> bool {
    let f = tc_show("filter", Some("ingress")) + &tc_show("filter", Some("egress"));
    !f.contains("observer_tap")
}

/// Sends `chunks` from a client to a server on `port` and returns what the server read.
fn exchange(port: u16, chunks: &[Vec<u8>]) -> (SocketAddr, SocketAddr) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).expect("read");
        buf.len()
    });
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let local = c.local_addr().expect("local");
    for chunk in chunks {
        c.write_all(chunk).expect("write");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(c);
    let total: usize = chunks.iter().map(Vec::len).sum();
    assert_eq!(server.join().expect("server"), total);
    (local, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Drains the tap for a while; returns the client-to-server payload in sequence order.
fn collect(tap: &mut EbpfTap, client: SocketAddr) -> (Vec<u8>, usize) {
    let mut frames: Vec<OwnedFrame> = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(500) {
        tap.poll(Duration::from_millis(50), &mut |f| frames.push(f))
            .expect("poll");
    }
    let mut dec = PacketDecoder::new(PacketConfig::default());
    let mut segs: Vec<(u32, Vec<u8>)> = Vec::new();
    for f in &frames {
        let frame = Frame {
            ts: f.ts,
            link_type: LinkType::ETHERNET,
            data: &f.data,
            orig_len: f.orig_len,
            interface: f.interface,
        };
        if let Some(seg) = dec.decode(&frame) {
            if let L4::Tcp { seq, payload, .. } = &seg.l4 {
                if seg.src == client && !payload.is_empty() {
                    segs.push((*seq, payload.to_vec()));
                }
            }
        }
    }
    segs.sort_by_key(|s| s.0);
    segs.dedup_by_key(|s| s.0);
    let mut stream = Vec::new();
    let mut next = segs.first().map(|s| s.0);
    for (seq, data) in &segs {
        assert_eq!(Some(*seq), next, "no hole in the delivered stream");
        stream.extend_from_slice(data);
        next = Some(seq.wrapping_add(data.len() as u32));
    }
    (stream, frames.len())
}

#[test]
#[ignore = "needs root (the eBPF tap): scripts/test runs it as root with --include-ignored"]
fn tap_on_loopback() {
    if !root() {
        return;
    }
    let _serial = common::serial();
    let had_clsact = tc_show("qdisc", None).contains("clsact");
    let tapped = common::free_port();
    let cfg = TapConfig {
        interfaces: vec!["lo".into()],
        ports: vec![tapped],
        // 16 MiB, below the default, so that the 40 MiB burst below overflows it.
        ring_bytes: 16 << 20,
    };
    let mut tap = EbpfTap::attach(&cfg).expect("attach the tap to lo");
    assert!(!nothing_of_ours(), "filters attached");

    // A tapped port: all bytes arrive, in order, including a 60 KiB write (GSO on lo).
    let chunks: Vec<Vec<u8>> = [10usize, 1500, 3000, 60 * 1024, 7]
        .iter()
        .enumerate()
        .map(|(i, n)| (0..*n).map(|j| (i * 31 + j) as u8).collect())
        .collect();
    let (client, _) = exchange(tapped, &chunks);
    let (stream, frames) = collect(&mut tap, client);
    assert_eq!(
        stream,
        chunks.concat(),
        "every payload byte reassembled from the tap"
    );
    assert!(frames > 0);
    let k = tap.kernel_counters();
    assert_eq!(
        k[observer_ebpf::TAP_C_DROPS as usize],
        0,
        "no ring-buffer drop"
    );
    assert_eq!(tap.user_stats().incomplete, 0);
    assert!(
        k[observer_ebpf::TAP_C_CHUNKS as usize] > k[observer_ebpf::TAP_C_PACKETS as usize],
        "large packets came in several chunks"
    );

    // Another port stays in the kernel...
    let other = common::free_port();
    let (client, _) = exchange(other, &[b"not jxta".to_vec()]);
    let (stream, _) = collect(&mut tap, client);
    assert!(stream.is_empty(), "port {other} is filtered in the kernel");
    assert!(tap.kernel_counters()[observer_ebpf::TAP_C_FILTERED as usize] > 0);

    // ...until its flow is marked as JXTA.
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let marked = listener.local_addr().expect("addr");
    let mut c = TcpStream::connect(marked).expect("connect");
    let (mut s, _) = listener.accept().expect("accept");
    let client = c.local_addr().expect("addr");
    tap.mark_flow(client, marked).expect("mark");
    c.write_all(b"now you see me").expect("write");
    let mut buf = [0u8; 14];
    s.read_exact(&mut buf).expect("read");
    let (stream, _) = collect(&mut tap, client);
    assert_eq!(stream, b"now you see me");

    // A welcome line on any port is JXTA by content: the kernel marks the flow there
    // and then, so what follows goes up too, before user space has seen the welcome
    // (at speed, those segments used to stay in the kernel and messages were lost).
    let hello =
        b"JXTAHELLO tcp://127.0.0.1:18082 tcp://127.0.0.1:40000 urn:jxta:uuid-1234 0 1.1\r\n"
            .to_vec();
    let marked_before = tap.counters().flows_marked;
    let (client, _) = exchange(
        common::free_port(),
        &[hello.clone(), b"later bytes".to_vec()],
    );
    let (stream, _) = collect(&mut tap, client);
    assert_eq!(
        stream,
        [hello.as_slice(), b"later bytes"].concat(),
        "the flow passes the in-kernel filter from its welcome line on"
    );
    assert_eq!(tap.counters().flows_marked, marked_before + 1);
    // A flow without a welcome line stays in the kernel.
    let (client, _) = exchange(common::free_port(), &[b"not jxta at all".to_vec()]);
    let (stream, _) = collect(&mut tap, client);
    assert!(stream.is_empty(), "an unmarked flow passed: {stream:?}");

    // Ring-buffer overflow: nobody reads while a burst goes by; the losses are counted
    // in the kernel and the tap goes on delivering afterwards.
    let burst: Vec<Vec<u8>> = (0..40).map(|_| vec![0xab; 1 << 20]).collect();
    exchange(tapped, &burst);
    let before = tap.kernel_counters()[observer_ebpf::TAP_C_DROPS as usize];
    assert!(
        before > 0,
        "a 40 MiB burst overflows the 16 MiB ring buffer unread"
    );
    let _ = collect(&mut tap, "127.0.0.1:1".parse().expect("addr"));
    let (client, _) = exchange(tapped, &[b"still here".to_vec()]);
    let (stream, _) = collect(&mut tap, client);
    assert_eq!(stream, b"still here", "the tap works on after the overflow");
    assert!(
        tap.counters().kernel_drops >= before,
        "drops reported to the live run"
    );

    tap.detach().expect("detach");
    assert!(nothing_of_ours(), "no filter of ours after detach");
    assert_eq!(
        tc_show("qdisc", None).contains("clsact"),
        had_clsact,
        "the qdisc is removed if we created it"
    );

    // Dropping without detach (an error path unwinding) cleans up too.
    let tap = EbpfTap::attach(&cfg).expect("attach again");
    assert!(!nothing_of_ours());
    drop(tap);
    assert!(nothing_of_ours(), "no filter of ours after drop");
    assert_eq!(tc_show("qdisc", None).contains("clsact"), had_clsact);

    // A missing interface is a clear error, and leaves nothing behind.
    let err = EbpfTap::attach(&TapConfig {
        interfaces: vec!["lo".into(), "nosuchif0".into()],
        ports: vec![9701],
        ring_bytes: observer::live::ebpf::DEFAULT_RING_BYTES,
    })
    .err()
    .expect("error");
    assert!(err.to_string().contains("nosuchif0"), "{err}");
    assert!(nothing_of_ours());
}

/// A ring buffer of one page holds one 2 KiB record: the 30 records of a 60 KiB write
/// cannot fit while nobody reads, and what is lost is counted as kernel drops (the
/// ring's size given at attach is the one the kernel uses).
#[test]
#[ignore = "needs root (the eBPF tap): scripts/test runs it as root with --include-ignored"]
fn a_ring_too_small_for_a_burst_counts_its_drops() {
    if !root() {
        return;
    }
    // Both tests attach to lo, and a process owns lo's filters once.
    let _serial = common::serial();
    let tapped = common::free_port();
    let mut tap = EbpfTap::attach(&TapConfig {
        interfaces: vec!["lo".into()],
        ports: vec![tapped],
        ring_bytes: observer::live::ebpf::ring_bytes(4096).expect("a page"),
    })
    .expect("attach the tap to lo");
    exchange(tapped, &[vec![7u8; 60 * 1024], vec![8u8; 60 * 1024]]);
    let mut frames = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(300) {
        tap.poll(Duration::from_millis(50), &mut |_| frames += 1)
            .expect("poll");
    }
    let drops = tap.kernel_counters()[observer_ebpf::TAP_C_DROPS as usize];
    assert!(
        drops > 0,
        "a one-page ring dropped nothing ({frames} frames)"
    );
    assert_eq!(
        tap.counters().kernel_drops,
        drops,
        "reported as kernel drops"
    );
    tap.detach().expect("detach");
    assert!(nothing_of_ours());
}

/// `cargo xtask build-ebpf`'s command; `None` (after [`common::missing_requirement`])
/// when clang or libbpf-dev is missing.
fn rebuild() -> Option<Vec<u8>> {
    if !common::have(&[Need::Tool("clang")]) {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let obj = dir.path().join("tap.bpf.o");
    let built = observer_ebpf::build_command(&observer_ebpf::source_path(), &obj)
        .output()
        .expect("run clang");
    if !built.status.success() {
        common::missing_requirement(&format!(
            "libbpf-dev (clang could not build the tap: {})",
            String::from_utf8_lossy(&built.stderr)
        ));
        return None;
    }
    Some(std::fs::read(&obj).expect("object"))
}

/// The committed object is what its source builds to: a change to `tap.bpf.c` without
/// `cargo xtask build-ebpf` fails here.
#[test]
fn rebuilt_object_has_the_committed_code() {
    let Some(bytes) = rebuild() else { return };
    assert_same_code(&bytes, observer_ebpf::object());
}

/// The rebuilt object loads and passes the verifier like the committed one.
#[test]
#[ignore = "needs root (the eBPF tap): scripts/test runs it as root with --include-ignored"]
fn rebuilt_object_loads() {
    if !root() {
        return;
    }
    let Some(bytes) = rebuild() else { return };
    let mut ebpf = aya::Ebpf::load(&bytes).expect("load the rebuilt object");
    for name in [observer_ebpf::PROG_INGRESS, observer_ebpf::PROG_EGRESS] {
        let prog: &mut aya::programs::SchedClassifier = ebpf
            .program_mut(name)
            .expect("program")
            .try_into()
            .expect("classifier");
        prog.load()
            .expect("the verifier accepts the rebuilt program");
    }
}

/// The sections of a little-endian ELF64 object: (name, bytes), in file order.
fn elf_sections(elf: &[u8]) -> Vec<(String, Vec<u8>)> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().expect("2 bytes"));
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().expect("8 bytes")) as usize;
    assert_eq!(&elf[..6], b"\x7fELF\x02\x01", "little-endian ELF64");
    let (shoff, shentsize) = (u64_at(0x28), usize::from(u16_at(0x3a)));
    let (shnum, shstrndx) = (usize::from(u16_at(0x3c)), usize::from(u16_at(0x3e)));
    let header = |i: usize| shoff + i * shentsize;
    let names = u64_at(header(shstrndx) + 0x18);
    (0..shnum)
        .map(|i| {
            let h = header(i);
            let name_at = names + u32_at(h) as usize;
            let len = elf[name_at..].iter().position(|&b| b == 0).expect("name");
            let name = String::from_utf8_lossy(&elf[name_at..name_at + len]).into_owned();
            const SHT_NOBITS: u32 = 8;
            let (off, size) = (u64_at(h + 0x18), u64_at(h + 0x20));
            let body = if u32_at(h + 4) == SHT_NOBITS {
                Vec::new()
            } else {
                elf[off..off + size].to_vec()
            };
            (name, body)
        })
        .collect()
}

/// The same sections, and byte for byte the same programs, relocations, maps, license and
/// symbols. DWARF and BTF are left out of the byte comparison: they hold the directory
/// the object was built in (the committed one names the lead's checkout), so the same
/// clang gives a different `.debug_str`, `.debug_line`, `.BTF` and `.BTF.ext` elsewhere.
fn assert_same_code(rebuilt: &[u8], committed: &[u8]) {
    let (r, c) = (elf_sections(rebuilt), elf_sections(committed));
    let names = |s: &[(String, Vec<u8>)]| s.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&r), names(&c), "section lists");
    let path_dependent = |n: &str| n.contains(".debug_") || n.contains(".BTF");
    let mut compared = Vec::new();
    for ((name, a), (_, b)) in r.iter().zip(&c) {
        if path_dependent(name) {
            continue;
        }
        assert!(
            a == b,
            "section {name} differs between rebuilt and committed object"
        );
        compared.push(name.as_str());
    }
    assert_eq!(
        compared
            .iter()
            .filter(|n| n.starts_with("classifier/"))
            .count(),
        2,
        "ingress and egress programs compared: {compared:?}"
    );
}

/// Without privileges: a clear message naming what is missing and the other source.
#[test]
#[ignore = "needs root (the eBPF tap): scripts/test runs it as root with --include-ignored"]
fn unprivileged_gets_a_clear_message() {
    if !root() {
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_observer"))
        .args(["live", "-i", "lo", "--source", "ebpf", "--duration", "1s"])
        .output()
        .expect("setpriv");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs root") && err.contains("--source pcap"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{err}"
    );
}
