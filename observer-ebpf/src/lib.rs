//! Kernel/user-space shared definitions for the eBPF tap.
//!
//! The live-capture work (TC classifier in C, ring buffer events, aya loader) lands
//! here; until then the offline pipeline is the only source, and this crate only
//! reserves the place in the workspace the design card gives it.
