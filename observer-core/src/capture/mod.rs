//! Capture files: reading pcap / pcapng (streaming, bounded memory, no libpcap)
//! and writing them (deterministic output for the generator and live `-w`).
//!
//! Both formats are parsed by hand rather than through `pcap-parser`'s
//! streaming readers: those lose the `io::Error` behind a read failure, do not
//! report byte offsets, decode `if_tsoffset` as little-endian in big-endian
//! sections and reject every binary `if_tsresol`. The formats are small enough
//! that owning the framing is the simpler way to get exact error positions and
//! a hard memory bound.

mod reader;
mod reorder;
mod writer;

pub use reader::{CaptureReader, HeldPages, SharedMap, MAX_BLOCK_LEN};
pub use reorder::{
    FrameBuf, FrameMerger, Placed, ReorderConfig, ReorderStats, DEFAULT_LIVE_REORDER_WINDOW_NS,
    DEFAULT_REORDER_WINDOW_NS,
};
pub use writer::{CaptureWriter, WriteFormat};

use crate::UnixNanos;
use std::io;

/// A `LINKTYPE_*` number from the tcpdump.org registry, as stored in pcap
/// headers and pcapng interface description blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct LinkType(pub u32);

impl LinkType {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP, version taken from the first nibble.
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

impl std::fmt::Display for LinkType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match *self {
            LinkType::NULL => "NULL",
            LinkType::ETHERNET => "EN10MB",
            LinkType::RAW => "RAW",
            LinkType::LOOP => "LOOP",
            LinkType::LINUX_SLL => "LINUX_SLL",
            LinkType::IPV4 => "IPV4",
            LinkType::IPV6 => "IPV6",
            LinkType::LINUX_SLL2 => "LINUX_SLL2",
            _ => return write!(f, "LINKTYPE_{}", self.0),
        };
        f.write_str(name)
    }
}

/// One captured frame. `data` borrows the reader's buffer, so it is only
/// valid until the next call to [`CaptureReader::next_frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub ts: UnixNanos,
    pub link_type: LinkType,
    pub data: &'a [u8],
    /// Length of the packet on the wire; larger than `data.len()` when the
    /// capture's snaplen cut it.
    pub orig_len: u32,
    /// pcapng interface id within the current section (always 0 for pcap).
    pub interface: u32,
}

/// On-disk format of the capture being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum CaptureFormat {
    Pcap {
        nanos: bool,
        big_endian: bool,
    },
    /// pcapng; the byte order may change from section to section.
    Pcapng,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaptureStats {
    /// Frames returned by `next_frame`.
    pub frames: u64,
    /// Captured bytes in those frames (not counting headers).
    pub bytes: u64,
    /// Frames whose captured length is below their original length.
    pub snaplen_cut: u64,
    /// Interface description blocks seen, over all sections.
    pub interfaces: u64,
    /// pcapng sections seen (0 for pcap).
    pub sections: u64,
    /// pcapng blocks skipped because they carry no packets (NRB, ISB, DSB, custom...).
    pub other_blocks: u64,
    /// File bytes consumed so far.
    pub offset: u64,
}

/// Why a capture could not be read. Every variant names the input and, once
/// past the file header, the byte offset of the offending record.
///
/// Only [`CaptureError::UnknownInterface`] leaves the reader usable (the bad
/// block was consumed whole); after any other error `next_frame` returns
/// `Ok(None)`.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{name}: cannot open: {source}")]
    Open {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("{name}: read error at byte {offset}: {source}")]
    Io {
        name: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("{name}: empty file, not a capture")]
    Empty { name: String },
    #[error("{name}: not a pcap or pcapng capture (magic {magic:#010x})")]
    NotACapture { name: String, magic: u32 },
    #[error("{name}: truncated {what} at byte {offset}: needed {needed} bytes, only {got} left")]
    Truncated {
        name: String,
        offset: u64,
        what: &'static str,
        needed: u64,
        got: u64,
    },
    #[error("{name}: malformed {what} at byte {offset}: {detail}")]
    Malformed {
        name: String,
        offset: u64,
        what: &'static str,
        detail: String,
    },
    #[error(
        "{name}: {what} at byte {offset} claims {len} bytes, more than the {limit}-byte limit"
    )]
    TooLarge {
        name: String,
        offset: u64,
        what: &'static str,
        len: u64,
        limit: u64,
    },
    #[error("{name}: packet block at byte {offset} references interface {interface}, but the section declares {declared}")]
    UnknownInterface {
        name: String,
        offset: u64,
        interface: u32,
        declared: usize,
    },
}

impl CaptureError {
    /// True when reading may continue after this error.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, CaptureError::UnknownInterface { .. })
    }
}

#[cfg(test)]
mod tests;
