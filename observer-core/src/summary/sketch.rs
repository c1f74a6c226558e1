//! The RTT sketch (a DDSketch in milliseconds) behind every percentile that is not
//! computed from exact values: a long run's summary and a live run's windows.

use sketches_ddsketch::{Config, DDSketch};

/// Relative error of every percentile read from a sketch (DDSketch's alpha): a
/// reported p99 of 100 ms means an exact p99 between 99 and 101 ms.
pub const SKETCH_RELATIVE_ERROR: f64 = 0.01;

/// Bins per sketch at most. At 1 % relative error 2048 bins span 1 ns to far beyond
/// any timeout, so the limit (which would merge the smallest bins) is never reached by
/// RTTs; it bounds a sketch to ~16 KiB whatever arrives.
const SKETCH_MAX_BINS: u32 = 2048;

/// Smallest RTT (ms) told apart from zero: 1 ns.
const SKETCH_MIN_MS: f64 = 1e-6;

/// An empty RTT sketch (milliseconds), as every window bucket of a live run and the
/// summary of a run past [`super::EXACT_RTT_LIMIT`] use.
pub fn rtt_sketch() -> DDSketch {
    DDSketch::new(Config::new(
        SKETCH_RELATIVE_ERROR,
        SKETCH_MAX_BINS,
        SKETCH_MIN_MS,
    ))
}
