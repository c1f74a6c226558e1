//! Live sources: packets from interfaces instead of files. They differ from the offline
//! source only before the first arrow: each produces frames with a wall-clock timestamp
//! and a link type, and `runtime::online` feeds them to the same `Pipeline`.

#[cfg(target_os = "linux")]
pub mod ebpf;
pub mod outfile;
#[cfg(feature = "pcap")]
pub mod pcap;
#[cfg(target_os = "linux")]
pub mod privileges;
#[cfg(target_os = "linux")]
pub mod tc_owner;

use crate::UnixNanos;

/// A frame copied out of a live source.
#[derive(Clone, Debug)]
pub struct OwnedFrame {
    pub ts: UnixNanos,
    /// Index of the interface in the order given on the command line.
    pub interface: u32,
    pub data: Vec<u8>,
    pub orig_len: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot capture on {interface}: {reason}")]
    Open { interface: String, reason: String },
    #[error("capture failed: {0}")]
    Capture(String),
    #[error("the {0} source is not built into this binary (rebuild with `--features {0}`)")]
    NotBuilt(&'static str),
    #[error(transparent)]
    Output(#[from] outfile::OutputError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "cannot write in {path} as {user}: {source}. The run switches to {user} once the capture is set up, and {what} is written then: give a directory {user} can write, --user with a user who can, or --keep-root"
    )]
    NotWritableAfterDrop {
        path: String,
        user: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}
