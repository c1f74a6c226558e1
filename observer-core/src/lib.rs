//! `observer-core`: the decoding library of `observer`, from capture bytes to
//! PING/PONG transactions. It has no async runtime, no plotting and no eBPF, so
//! that anything reading JXTA from bytes can depend on it alone.
//!
//! Data flows one way, one module per stage:
//!
//! ```text
//! capture (pcap/pcapng frames)
//!   -> packet      (link layer, IPv4/IPv6, fragments -> TCP segments / UDP datagrams)
//!   -> conntrack   (flows, per-direction TCP reassembly with first-seen timestamps)
//!   -> jxta        (welcome lines, message packages, `jxmg` messages, endpoint addressing)
//!   -> jim         (PING / PONG / MESSAGE documents)
//!   -> transaction (PING/PONG matching, timeouts, presence states)
//! ```
//!
//! `engine` wires the stages into one `Pipeline` and runs capture files through it
//! (on one thread or on shards); `transaction::csv` is the record format and
//! `summary` the run's statistics, the same for every source.

pub mod capture;
pub mod conntrack;
pub mod counters;
pub mod engine;
pub mod jim;
pub mod jxta;
pub mod packet;
pub mod summary;
pub mod synth;
pub mod transaction;

/// A small deterministic generator for the randomised tests (xorshift64: the same runs
/// every time, no dependency).
#[cfg(test)]
pub(crate) fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// Wall-clock time as nanoseconds since the Unix epoch. Every timestamp in the
/// pipeline is one of these: capture timestamps are converted once, at the source.
pub type UnixNanos = u64;

/// ASCII letters, digits, `-`, `_` and `.`: the bytes of a JIM element name on the
/// plain path and of a JXTA ID's parts, as a table (every byte of both is looked up).
pub(crate) const WORD_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        i += 1;
    }
    t
};

/// The hash map of the per-packet and per-message tables (flows, pairs, peers).
/// Their keys come from the wire, so the hasher is seeded per process (foldhash's
/// `RandomState`), which keeps crafted collisions out of reach while costing a
/// fraction of SipHash: hashing was 8 % of the whole analysis with the default.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
