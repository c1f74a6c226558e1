//! JIM application documents (PING / PONG / MESSAGE), as fixed by
//! `docs/spec/jim-presence.md`.
//!
//! The decoder is fed the content of every JXTA message element: it must cheaply say
//! "not JIM" for everything else (advertisements, binary blobs, text), decode the JIM
//! documents with the tolerances real traffic needs, and refuse hostile XML (entity
//! expansion, deep nesting, huge documents, invalid UTF-8) without panicking, hanging
//! or allocating without bound.

mod document;
mod stats;

#[doc(hidden)]
pub use document::{decode_plain, parse_full};
pub use document::{
    parse, parse_for_matcher, parse_for_matcher_into, parse_limited, Document, JimError, Kind,
    Status, DEFAULT_MAX_DOCUMENT_BYTES, MAX_DEPTH,
};
pub use stats::{JimConfig, JimStats, Oversized};
