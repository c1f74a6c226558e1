//! `observer`: passive measurement of the JIM presence service from the wire.
//!
//! Data flows one way, one module per stage:
//!
//! ```text
//! capture (pcap/pcapng frames)
//!   -> packet     (link layer, IPv4/IPv6, fragments -> TCP segments / UDP datagrams)
//!   -> conntrack  (flows, per-direction TCP reassembly with first-seen timestamps)
//!   -> jxta       (welcome lines, message packages, `jxmg` messages, endpoint addressing)
//!   -> jim        (PING / PONG / MESSAGE documents)
//!   -> transaction (PING/PONG matching, timeouts, presence states)
//!   -> report     (statistics, human table, CSV, JSON)
//! ```
//!
//! `runtime::offline` wires the stages for capture files; `synth` builds
//! deterministic captures (with their ground truth) from scripted scenarios.

pub mod capture;
pub mod conntrack;
#[doc(hidden)]
pub mod fuzz;
pub mod httpd;
pub mod jim;
pub mod jxta;
pub mod live;
pub mod metrics;
pub mod packet;
pub mod peer;
pub mod report;
pub mod runtime;
pub mod store;
pub mod synth;
pub mod transaction;
pub mod validate;

/// Wall-clock time as nanoseconds since the Unix epoch. Every timestamp in the
/// pipeline is one of these: capture timestamps are converted once, at the source.
pub type UnixNanos = u64;

/// The hash map of the per-packet and per-message tables (flows, pairs, peers).
/// Their keys come from the wire, so the hasher is seeded per process (foldhash's
/// `RandomState`), which keeps crafted collisions out of reach while costing a
/// fraction of SipHash: hashing was 8 % of the whole analysis with the default.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
