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

#[doc(hidden)]
pub mod fuzz;
pub mod httpd;
pub mod live;
pub mod metrics;
pub mod peer;
pub mod report;
pub mod runtime;
pub mod store;
pub mod validate;

// The decoding stages live in `observer-core`; re-exported so that `observer::jxta`
// and `crate::jxta` name the same module everywhere.
pub use observer_core::{
    capture, conntrack, jim, jxta, packet, synth, transaction, FastMap, UnixNanos,
};
