//! The statistics behind the canary verdict (`docs/analysis.md`): the
//! Mann-Whitney U test from rank sums, the two-proportion z-test, Holm's
//! correction for many comparisons, and the sample sizes a test needs to
//! see an effect. Each follows its textbook form so that scipy on the same
//! samples gives the same numbers (the end-to-end test checks it).

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// The z with P(Z > z) = p, for 0 < p < 1 (bisection on [`normal_sf`]:
/// exact to 1e-12, and only used for sample sizes).
pub fn normal_isf(p: f64) -> f64 {
    let (mut low, mut high) = (-40.0, 40.0);
    for _ in 0..200 {
        let middle = (low + high) / 2.0;
        if normal_sf(middle) > p { low = middle } else { high = middle }
    }
    (low + high) / 2.0
}

/// Two samples ranked together, as SQL sums them: the size of each, the
/// sum of the second sample's mid-ranks, and Σ(t³ − t) over groups of
/// equal values (the tie correction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankSums {
    pub n1: f64,
    pub n2: f64,
    pub rank_sum2: f64,
    pub ties: f64,
}

/// A two-sided Mann-Whitney U test of the second sample against the first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U of the second sample: pairs (x from the first, y from the second)
    /// with y > x, ties counted half.
    pub u2: f64,
    /// Normal approximation with tie and continuity correction (scipy's
    /// `mannwhitneyu(method="asymptotic")`).
    pub p_value: f64,
    /// P(Y > X) + P(Y = X)/2: 0.5 when neither tends to be larger (the
    /// common-language effect size; rank-biserial r = 2·this − 1).
    pub superiority: f64,
}

pub fn mann_whitney(ranks: RankSums) -> Option<MannWhitney> {
    let RankSums { n1, n2, rank_sum2, ties } = ranks;
    if n1 < 1.0 || n2 < 1.0 {
        return None;
    }
    let n = n1 + n2;
    let u2 = rank_sum2 - n2 * (n2 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    let p_value = if variance > 0.0 {
        let u = u2.max(n1 * n2 - u2);
        (2.0 * normal_sf((u - mean - 0.5) / variance.sqrt())).clamp(0.0, 1.0)
    } else {
        1.0 // every value equal: nothing tells the samples apart
    };
    Some(MannWhitney { u2, p_value, superiority: u2 / (n1 * n2) })
}

/// A two-sided test of equal proportions (pooled z-test; the same p-value
/// as a chi-square test of the 2×2 table without Yates' correction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TwoProportions {
    pub rate1: f64,
    pub rate2: f64,
    pub p_value: f64,
}

pub fn two_proportions(hits1: f64, n1: f64, hits2: f64, n2: f64) -> Option<TwoProportions> {
    if n1 < 1.0 || n2 < 1.0 {
        return None;
    }
    let (rate1, rate2) = (hits1 / n1, hits2 / n2);
    let pooled = (hits1 + hits2) / (n1 + n2);
    let variance = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2);
    let p_value = if variance > 0.0 {
        (2.0 * normal_sf((rate2 - rate1).abs() / variance.sqrt())).clamp(0.0, 1.0)
    } else {
        1.0 // no errors at all, or nothing but errors, on both sides
    };
    Some(TwoProportions { rate1, rate2, p_value })
}

/// Holm's step-down adjustment: each p-value made comparable to the
/// family-wise significance level, in the order given.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p_values[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// Observations per sample for a two-sided rank test at `alpha` to find a
/// shift of `superiority` (P(Y > X)) with probability `power`, equal
/// samples (Noether, 1987).
pub fn rank_test_sample_size(superiority: f64, alpha: f64, power: f64) -> f64 {
    let z = normal_isf(alpha / 2.0) + normal_isf(1.0 - power);
    (z * z / (6.0 * (superiority - 0.5).powi(2))).ceil()
}

/// Observations per sample for a two-sided test at `alpha` to tell the
/// rates `rate1` and `rate2` apart with probability `power`; 0 when they
/// are equal (no difference to plan for).
pub fn proportion_sample_size(rate1: f64, rate2: f64, alpha: f64, power: f64) -> f64 {
    if rate1 == rate2 {
        return 0.0;
    }
    let z = normal_isf(alpha / 2.0) + normal_isf(1.0 - power);
    let variance = rate1 * (1.0 - rate1) + rate2 * (1.0 - rate2);
    (z * z * variance / (rate2 - rate1).powi(2)).ceil()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rank sums computed the slow way, as the SQL does them fast.
    fn ranks(x: &[f64], y: &[f64]) -> RankSums {
        let mut all: Vec<(f64, bool)> = x.iter().map(|&v| (v, false)).chain(y.iter().map(|&v| (v, true))).collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (mut rank_sum2, mut ties, mut i) = (0.0, 0.0, 0);
        while i < all.len() {
            let j = all[i..].iter().position(|v| v.0 != all[i].0).map_or(all.len(), |k| i + k);
            let t = (j - i) as f64;
            let mid = i as f64 + (t + 1.0) / 2.0;
            rank_sum2 += mid * all[i..j].iter().filter(|v| v.1).count() as f64;
            ties += t * t * t - t;
            i = j;
        }
        RankSums { n1: x.len() as f64, n2: y.len() as f64, rank_sum2, ties }
    }

    #[test]
    fn mann_whitney_matches_scipy() {
        // scipy.stats.mannwhitneyu(y, x, method="asymptotic") → U=40, p=0.043971015035417046
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 7.0];
        let y = [4.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        let test = mann_whitney(ranks(&x, &y)).unwrap();
        assert_eq!(test.u2, 40.0);
        assert!((test.p_value - 0.043971015035417046).abs() < 1e-12, "{test:?}");
        assert!(test.superiority > 0.5);
        // Equal samples: nothing to see.
        let same = mann_whitney(ranks(&x, &x)).unwrap();
        assert_eq!(same.superiority, 0.5);
        assert!(same.p_value > 0.9);
    }

    #[test]
    fn proportions_and_holm() {
        let test = two_proportions(30.0, 1000.0, 60.0, 1000.0).unwrap();
        // chi2_contingency([[30, 970], [60, 940]], correction=False) → p = 0.001212496586154217
        assert!((test.p_value - 0.001212496586154217).abs() < 1e-12, "{test:?}");
        assert_eq!(two_proportions(0.0, 10.0, 0.0, 10.0).unwrap().p_value, 1.0);
        assert_eq!(holm(&[0.01, 0.04, 0.03]), vec![0.03, 0.06, 0.06]);
    }

    #[test]
    fn sample_sizes_grow_as_effects_shrink() {
        assert!((normal_isf(0.025) - 1.959964).abs() < 1e-6);
        let n = rank_test_sample_size(0.6, 0.05, 0.8);
        assert!((130.0..=132.0).contains(&n), "{n}");
        assert!(rank_test_sample_size(0.55, 0.05, 0.8) > 4.0 * n - 4.0);
        let n = proportion_sample_size(0.03, 0.06, 0.05, 0.8);
        assert!((740.0..=760.0).contains(&n), "{n}");
        assert_eq!(proportion_sample_size(1.0, 1.0, 0.05, 0.8), 0.0);
    }
}
