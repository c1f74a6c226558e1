//! The JXTA wire: welcome lines, message packages, `jxmg` binary messages, endpoint
//! addressing, and the per-direction stream parser that turns reassembled TCP bytes
//! (or a UDP datagram) into framed messages.

pub mod peer;

pub use peer::PeerId;
