//! Response-time statistics.

/// RTT statistics in milliseconds. All zero when `count` is 0.
///
/// `sd` is the sample standard deviation (n − 1 denominator; 0 when n < 2).
/// Percentiles use linear interpolation between the closest ranks, numpy's default
/// (`method="linear"`): for sorted x₀…xₙ₋₁ the q-quantile is at rank h = (n−1)·q,
/// x⌊h⌋ + (h − ⌊h⌋)·(x⌊h⌋₊₁ − x⌊h⌋).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RttStats {
    pub count: u64,
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl RttStats {
    /// From RTTs in nanoseconds (any order).
    pub fn from_ns(rtts: impl IntoIterator<Item = u64>) -> RttStats {
        let mut ms: Vec<f64> = rtts.into_iter().map(|ns| ns as f64 / 1e6).collect();
        RttStats::from_ms(&mut ms)
    }

    /// From RTTs in milliseconds; sorts the slice in place.
    pub fn from_ms(ms: &mut [f64]) -> RttStats {
        if ms.is_empty() {
            return RttStats::default();
        }
        sort_ms(ms);
        let n = ms.len() as f64;
        let mean = ms.iter().sum::<f64>() / n;
        let sd = if ms.len() < 2 {
            0.0
        } else {
            (ms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        RttStats {
            count: ms.len() as u64,
            mean,
            sd,
            min: ms[0],
            p50: percentile(ms, 0.50),
            p90: percentile(ms, 0.90),
            p99: percentile(ms, 0.99),
            max: ms[ms.len() - 1],
        }
    }
}

/// Sorts as `sort_by(f64::total_cmp)` would. Unstable, and the same result: values
/// equal under `total_cmp` have the same bits, so no order among them can be told
/// apart (test `unstable_sort_is_the_stable_sort`). The stable sort's merges and
/// scratch buffer cost more (the run's 20,000 RTTs and every pair's).
///
/// RTTs are never negative: with the sign bit clear, `total_cmp` compares the bits as
/// integers, so the bits themselves are the key (`total_cmp`'s flip of negative values
/// was most of a comparison; test `non_negative_sort_is_total_cmp`). Anything with the
/// sign bit set (`-0.0` too) takes `total_cmp`.
fn sort_ms(ms: &mut [f64]) {
    if ms.iter().all(|x| x.is_sign_positive()) {
        ms.sort_unstable_by_key(|x| x.to_bits());
    } else {
        ms.sort_unstable_by(f64::total_cmp);
    }
}

/// `h.floor() as usize` for the rank `h` that [`percentile`] makes, which is never
/// below zero (or NaN, which either way makes 0): truncation is the floor there. `floor`
/// is a call into libm on this target (no SSE4.1 in the baseline), ~22 instructions,
/// three a summary and three a pair (test `floor_rank_is_the_floor`).
fn floor_rank(h: f64) -> usize {
    h as usize
}

/// The q-quantile (0 ≤ q ≤ 1) of sorted data, numpy-linear; 0 for empty data.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    let h = last as f64 * q.clamp(0.0, 1.0);
    let lo = floor_rank(h).min(last);
    let hi = (lo + 1).min(last);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    #[test]
    fn known_values_match_numpy() {
        // numpy: x=[850,1200,600,900,700,1500,820,640,980,1010]
        // mean 920.0, std(ddof=1) 273.048632, percentile 50/90/99 = 875.0, 1230.0, 1473.0
        // (sorted: 600 640 700 820 850 900 980 1010 1200 1500; p50 at rank 4.5, p90 at 8.1,
        // p99 at 8.91).
        let s = RttStats::from_ns(
            [850u64, 1200, 600, 900, 700, 1500, 820, 640, 980, 1010].map(|ms| ms * 1_000_000),
        );
        assert_eq!(s.count, 10);
        close(s.mean, 920.0);
        assert!((s.sd - 273.048_632_216_965).abs() < 1e-6, "{}", s.sd);
        close(s.min, 600.0);
        close(s.p50, 875.0);
        close(s.p90, 1230.0);
        close(s.p99, 1473.0);
        close(s.max, 1500.0);
    }

    /// `sort_ms` of `ms` is, bit for bit, the stable `total_cmp` sort of it.
    fn sorts_as_total_cmp(ms: Vec<f64>) -> Result<(), proptest::test_runner::TestCaseError> {
        let mut stable = ms.clone();
        stable.sort_by(f64::total_cmp);
        let mut ours = ms;
        sort_ms(&mut ours);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        proptest::prop_assert_eq!(bits(&ours), bits(&stable));
        Ok(())
    }

    proptest::proptest! {
        /// Duplicates, both zeros, NaNs of either sign and the infinities, compared
        /// bit for bit with the stable sort.
        #[test]
        fn unstable_sort_is_the_stable_sort(
            picks in proptest::collection::vec(0usize..12, 0..300),
        ) {
            const VALUES: [f64; 12] = [
                0.0, -0.0, 1.5, 1.5000000000000002, -3.0, f64::NAN, -f64::NAN,
                f64::INFINITY, f64::NEG_INFINITY, 1e-300, 7.25, 1234.5,
            ];
            let ms: Vec<f64> = picks.iter().filter_map(|&i| VALUES.get(i).copied()).collect();
            sorts_as_total_cmp(ms)?;
        }

        /// The integer sort of the bits: zeros, equal values, neighbours one bit apart,
        /// the smallest subnormal, the largest finite, infinity, positive NaNs, and RTTs
        /// as the summary makes them (nanoseconds over 1e6), bit for bit as the stable
        /// `total_cmp` sort.
        #[test]
        fn non_negative_sort_is_total_cmp(
            picks in proptest::collection::vec(0usize..12, 0..300),
            ns in proptest::collection::vec(0u64..u64::MAX, 0..100),
        ) {
            const VALUES: [f64; 12] = [
                0.0, 0.0, 1.5, 1.5000000000000002, f64::MIN_POSITIVE, 5e-324,
                f64::MAX, f64::INFINITY, f64::NAN, 7.25, 7.25, 1234.5,
            ];
            let mut ms: Vec<f64> = picks.iter().filter_map(|&i| VALUES.get(i).copied()).collect();
            ms.extend(ns.iter().map(|&n| (n >> (n % 64)) as f64 / 1e6));
            proptest::prop_assert!(ms.iter().all(|x| x.is_sign_positive()));
            sorts_as_total_cmp(ms)?;
        }
    }

    /// The rank's floor as `percentile` had it, on every `q` (outside [0, 1], both
    /// zeros, NaNs, infinities) and lengths around the integers' float limits.
    #[test]
    fn floor_rank_is_the_floor() {
        let qs = [
            0.0,
            -0.0,
            0.5,
            0.9,
            0.99,
            1.0,
            0.999_999_999_999_999_9,
            1e-300,
            -1.0,
            2.0,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let lasts = [
            0usize,
            1,
            2,
            9,
            10,
            99,
            1 << 24,
            (1 << 53) - 1,
            1 << 53,
            usize::MAX,
        ];
        for &last in &lasts {
            for &q in &qs {
                let h = last as f64 * q.clamp(0.0, 1.0);
                assert_eq!(
                    floor_rank(h).min(last),
                    (h.floor() as usize).min(last),
                    "{last} {q}"
                );
            }
        }
    }

    proptest::proptest! {
        /// Percentiles of random sorted data at random `q` as the floor gave them, bit
        /// for bit.
        #[test]
        fn percentile_is_the_floors(
            mut ms in proptest::collection::vec(-1e6f64..1e6, 0..50),
            q in proptest::num::f64::ANY,
        ) {
            ms.sort_by(f64::total_cmp);
            let old = |sorted: &[f64], q: f64| {
                let Some(last) = sorted.len().checked_sub(1) else {
                    return 0.0;
                };
                let h = last as f64 * q.clamp(0.0, 1.0);
                let lo = (h.floor() as usize).min(last);
                let hi = (lo + 1).min(last);
                sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
            };
            proptest::prop_assert_eq!(percentile(&ms, q).to_bits(), old(&ms, q).to_bits());
        }
    }

    #[test]
    fn small_inputs() {
        assert_eq!(RttStats::from_ns([]), RttStats::default());
        let s = RttStats::from_ns([2_500_000]);
        close(s.mean, 2.5);
        close(s.sd, 0.0);
        close(s.p99, 2.5);
        // numpy.percentile([1,2], 90) == 1.9
        let s = RttStats::from_ns([2_000_000, 1_000_000]);
        close(s.p90, 1.9);
        close(s.sd, std::f64::consts::FRAC_1_SQRT_2);
    }
}
