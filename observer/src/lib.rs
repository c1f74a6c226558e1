//! `observer`: passive measurement of the JIM presence service from the wire.
//!
//! The decoding library is `observer-core` (re-exported here: `capture`, `packet`,
//! `conntrack`, `jxta`, `jim`, `transaction`, `synth`), from capture bytes to
//! transactions, their summary and their CSV record:
//!
//! ```text
//! capture (pcap/pcapng frames)
//!   -> packet     (link layer, IPv4/IPv6, fragments -> TCP segments / UDP datagrams)
//!   -> conntrack  (flows, per-direction TCP reassembly with first-seen timestamps)
//!   -> jxta       (welcome lines, message packages, `jxmg` messages, endpoint addressing)
//!   -> jim        (PING / PONG / MESSAGE documents)
//!   -> transaction (PING/PONG matching, timeouts, presence states)
//!   -> summary, CSV (observer_core::engine::TransactionSink)
//! ```
//!
//! This crate adds what a running observer needs around it: `runtime` (the progress
//! bar and the live loop), the live sources, metrics, reports and figures, the
//! ClickHouse store, the reference peer and `validate`.

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
