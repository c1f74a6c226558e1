//! The kernel side of observer's live tap and what user space shares with it.
//!
//! `bpf/tap.bpf.c` is a TC classifier written in C (the toolchain here cannot build
//! Rust eBPF programs); `cargo xtask build-ebpf` compiles it with clang into
//! `bpf/tap.bpf.o`, which is committed so that a plain `cargo build` needs no clang.
//! `bpf/tap.h` defines the records the program writes; [`TapEvent`] mirrors it, and a
//! test compiles the header with the system C compiler to check the two layouts agree.

/// Bytes of packet per ring-buffer record (`TAP_CHUNK`).
pub const TAP_CHUNK: usize = 2048;
/// Records per packet at most (`TAP_MAX_CHUNKS`): 64 KiB, the largest IP packet.
pub const TAP_MAX_CHUNKS: usize = 32;

/// The record was captured on egress.
pub const TAP_F_EGRESS: u16 = 0x1;
/// The packet was longer than the chunks can carry; its tail was not sent.
pub const TAP_F_CUT: u16 = 0x2;

/// Indices of the per-CPU `counters` map.
pub const TAP_C_PACKETS: u32 = 0;
pub const TAP_C_CHUNKS: u32 = 1;
pub const TAP_C_DROPS: u32 = 2;
pub const TAP_C_OVERSIZE: u32 = 3;
pub const TAP_C_FILTERED: u32 = 4;
pub const TAP_C_OTHER: u32 = 5;
pub const TAP_C_MARKED: u32 = 6;
pub const TAP_C_MARK_FAILED: u32 = 7;
pub const TAP_C_COUNT: u32 = 8;

/// Names of the program sections and maps in the object.
pub const PROG_INGRESS: &str = "observer_tap_ingress";
pub const PROG_EGRESS: &str = "observer_tap_egress";
pub const MAP_EVENTS: &str = "events";
pub const MAP_PORTS: &str = "ports";
pub const MAP_FLOWS: &str = "flows";
pub const MAP_COUNTERS: &str = "counters";

/// `struct tap_event`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TapEvent {
    pub ts_ns: u64,
    pub ifindex: u32,
    pub pkt_len: u32,
    pub pkt_id: u32,
    pub cpu: u32,
    pub chunk: u16,
    pub chunks: u16,
    pub data_len: u16,
    pub flags: u16,
    pub data: [u8; TAP_CHUNK],
}

/// Size of the header in front of `data`.
pub const TAP_EVENT_HEADER: usize = std::mem::offset_of!(TapEvent, data);

impl TapEvent {
    /// Reads a record from the ring buffer's bytes (which need not be aligned);
    /// returns the header fields and the valid data, or `None` when the record is too
    /// short or claims more data than it holds.
    pub fn parse(bytes: &[u8]) -> Option<(TapEventHeader, &[u8])> {
        let h = bytes.get(..TAP_EVENT_HEADER)?;
        let u64_at = |o: usize| u64::from_ne_bytes(h[o..o + 8].try_into().unwrap_or([0; 8]));
        let u32_at = |o: usize| u32::from_ne_bytes(h[o..o + 4].try_into().unwrap_or([0; 4]));
        let u16_at = |o: usize| u16::from_ne_bytes(h[o..o + 2].try_into().unwrap_or([0; 2]));
        let header = TapEventHeader {
            ts_ns: u64_at(std::mem::offset_of!(TapEvent, ts_ns)),
            ifindex: u32_at(std::mem::offset_of!(TapEvent, ifindex)),
            pkt_len: u32_at(std::mem::offset_of!(TapEvent, pkt_len)),
            pkt_id: u32_at(std::mem::offset_of!(TapEvent, pkt_id)),
            cpu: u32_at(std::mem::offset_of!(TapEvent, cpu)),
            chunk: u16_at(std::mem::offset_of!(TapEvent, chunk)),
            chunks: u16_at(std::mem::offset_of!(TapEvent, chunks)),
            data_len: u16_at(std::mem::offset_of!(TapEvent, data_len)),
            flags: u16_at(std::mem::offset_of!(TapEvent, flags)),
        };
        let len = usize::from(header.data_len);
        if len > TAP_CHUNK {
            return None;
        }
        let data = bytes.get(TAP_EVENT_HEADER..TAP_EVENT_HEADER + len)?;
        Some((header, data))
    }
}

/// The fields of a [`TapEvent`] before its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapEventHeader {
    pub ts_ns: u64,
    pub ifindex: u32,
    pub pkt_len: u32,
    pub pkt_id: u32,
    pub cpu: u32,
    pub chunk: u16,
    pub chunks: u16,
    pub data_len: u16,
    pub flags: u16,
}

/// `struct tap_flow`: a TCP 4-tuple, IPv4 as IPv4-mapped IPv6, ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TapFlow {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
}

#[repr(C, align(8))]
struct Aligned<T: ?Sized>(T);

/// The C source of the tap, next to the committed object.
pub fn source_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf/tap.bpf.c")
}

/// The one command that builds `src` into the object `out`: `cargo xtask build-ebpf`
/// runs it, and the test that checks the committed object is up to date runs it too.
/// clang is `$CLANG` or `clang`; Debian's clang needs the multiarch include directory
/// for the kernel's UAPI headers (asm/types.h).
pub fn build_command(src: &std::path::Path, out: &std::path::Path) -> std::process::Command {
    let clang = std::env::var_os("CLANG").unwrap_or_else(|| "clang".into());
    let mut cmd = std::process::Command::new(clang);
    cmd.args([
        "-O2",
        "-g",
        "-Wall",
        "-target",
        "bpf",
        "-I/usr/include/x86_64-linux-gnu",
        "-c",
    ])
    .arg(src)
    .arg("-o")
    .arg(out);
    cmd
}

static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!("../bpf/tap.bpf.o"));

/// The compiled kernel program (ELF), aligned for the loader.
pub fn object() -> &'static [u8] {
    &OBJECT.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn object_is_an_ebpf_elf() {
        let o = object();
        assert_eq!(&o[..4], b"\x7fELF");
        // e_machine = EM_BPF (247), little-endian ELF.
        assert_eq!(u16::from_le_bytes([o[18], o[19]]), 247);
        assert_eq!(o.as_ptr() as usize % 8, 0);
    }

    /// Compiles `tap.h` with the system C compiler and compares sizes and offsets.
    #[test]
    fn layouts_agree_with_the_c_header() {
        let dir = std::env::temp_dir().join(format!("observer-tap-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let src = dir.join("layout.c");
        let header = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/tap.h");
        std::fs::write(
            &src,
            format!(
                r#"#include <stdio.h>
#include <stddef.h>
#include "{header}"
int main(void) {{
  printf("%zu %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\n", sizeof(struct tap_event),
    offsetof(struct tap_event, ts_ns), offsetof(struct tap_event, ifindex),
    offsetof(struct tap_event, pkt_len), offsetof(struct tap_event, pkt_id),
    offsetof(struct tap_event, cpu), offsetof(struct tap_event, chunk),
    offsetof(struct tap_event, chunks), offsetof(struct tap_event, data_len),
    offsetof(struct tap_event, flags), offsetof(struct tap_event, data));
  printf("%zu %zu %zu %zu %zu\n", sizeof(struct tap_flow), offsetof(struct tap_flow, saddr),
    offsetof(struct tap_flow, daddr), offsetof(struct tap_flow, sport), offsetof(struct tap_flow, dport));
  printf("%d %d %d %d\n", TAP_CHUNK, TAP_MAX_CHUNKS, TAP_C_COUNT, TAP_F_CUT);
  return 0;
}}"#
            ),
        )
        .expect("write");
        let exe = dir.join("layout");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let built = Command::new(&cc).arg(&src).arg("-o").arg(&exe).status();
        let Ok(status) = built else {
            assert!(std::env::var_os("CI").is_none(), "CI has a C compiler");
            eprintln!("no C compiler ({cc}): layout check skipped");
            return;
        };
        assert!(status.success(), "compiling the layout probe");
        let out = Command::new(&exe).output().expect("run probe");
        let text = String::from_utf8_lossy(&out.stdout);
        let rows: Vec<Vec<usize>> = text
            .lines()
            .map(|l| {
                l.split_whitespace()
                    .map(|n| n.parse().expect("number"))
                    .collect()
            })
            .collect();
        use std::mem::{offset_of, size_of};
        assert_eq!(
            rows[0],
            vec![
                size_of::<TapEvent>(),
                offset_of!(TapEvent, ts_ns),
                offset_of!(TapEvent, ifindex),
                offset_of!(TapEvent, pkt_len),
                offset_of!(TapEvent, pkt_id),
                offset_of!(TapEvent, cpu),
                offset_of!(TapEvent, chunk),
                offset_of!(TapEvent, chunks),
                offset_of!(TapEvent, data_len),
                offset_of!(TapEvent, flags),
                offset_of!(TapEvent, data),
            ]
        );
        assert_eq!(
            rows[1],
            vec![
                size_of::<TapFlow>(),
                offset_of!(TapFlow, saddr),
                offset_of!(TapFlow, daddr),
                offset_of!(TapFlow, sport),
                offset_of!(TapFlow, dport),
            ]
        );
        assert_eq!(
            rows[2],
            vec![
                TAP_CHUNK,
                TAP_MAX_CHUNKS,
                TAP_C_COUNT as usize,
                usize::from(TAP_F_CUT)
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parse_checks_lengths() {
        let mut rec = vec![0u8; std::mem::size_of::<TapEvent>()];
        let off = std::mem::offset_of!(TapEvent, data_len);
        rec[off..off + 2].copy_from_slice(&5u16.to_ne_bytes());
        rec[TAP_EVENT_HEADER..TAP_EVENT_HEADER + 5].copy_from_slice(b"hello");
        let (h, d) = TapEvent::parse(&rec).expect("parse");
        assert_eq!(h.data_len, 5);
        assert_eq!(d, b"hello");
        rec[off..off + 2].copy_from_slice(&5000u16.to_ne_bytes());
        assert!(TapEvent::parse(&rec).is_none());
        assert!(TapEvent::parse(&rec[..10]).is_none());
    }
}
