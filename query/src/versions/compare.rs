//! A canary held against its baseline: per operation (the service's SERVER
//! and CONSUMER span names) and overall, both versions side by side, a
//! Mann-Whitney U test on durations and a two-proportion test on errors,
//! Holm-corrected over every operation's tests, and a verdict.
//! `docs/analysis.md` states the method and its assumptions.

use std::collections::BTreeMap;

use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use spanlake_storage::TenantId;
use spanlake_storage::schema::{DURATION_NS, SERVICE_VERSION, SPAN_NAME, STATUS_CODE};
use utoipa::ToSchema;

use super::requests_sql;
use crate::engine::{QueryEngine, SPANS_TABLE, session_rows};
use crate::error::QueryError;
use crate::latency::{bucket_bound, bucket_sql, percentile_ms_sql};
use crate::params::{Params, Window};
use crate::stats::{self, RankSums};

/// The family-wise significance level when the request names none.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// The chance of seeing a difference of the minimal size that the sample
/// sizes in "not enough data" are planned for.
const POWER: f64 = 0.8;
/// The smallest latency difference that counts: the candidate slower (or
/// faster) in 55% of pairs, a rank-biserial correlation of 0.1.
const MIN_SUPERIORITY_SHIFT: f64 = 0.05;
/// The smallest error-rate difference that counts, absolute.
const MIN_ERROR_DIFFERENCE: f64 = 0.005;
/// The error-rate difference sample sizes are planned for: the baseline's
/// rate doubled, and at least one percentage point.
const PLANNED_ERROR_INCREASE: f64 = 0.01;
/// Fewer requests than this on either side: not enough data, whatever the test says.
const MIN_REQUESTS: i64 = 10;

#[derive(Debug, Clone)]
pub struct CompareRequest {
    pub service: String,
    pub baseline: String,
    pub candidate: String,
    pub window: Window,
    /// Family-wise significance level, (0, 0.5].
    pub alpha: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Verdict {
    #[serde(rename = "worse")]
    Worse,
    #[serde(rename = "better")]
    Better,
    #[serde(rename = "no difference")]
    NoDifference,
    #[serde(rename = "not enough data")]
    NotEnoughData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Worse => "worse",
            Self::Better => "better",
            Self::NoDifference => "no difference",
            Self::NotEnoughData => "not enough data",
        }
    }
}

/// The verdict of a comparison, overall and per operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub service: String,
    pub baseline: String,
    pub candidate: String,
    pub alpha: f64,
    /// Worse when an operation or the whole is worse; better when one is
    /// better and none worse; else the whole's verdict.
    pub verdict: Verdict,
    /// Every request of each version, tested on its own (not corrected).
    pub overall: OperationComparison,
    /// Busiest first.
    pub operations: Vec<OperationComparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationComparison {
    /// Absent for the overall comparison.
    pub operation: Option<String>,
    pub baseline: Side,
    pub candidate: Side,
    pub latency: Option<LatencyTest>,
    pub errors: Option<ErrorTest>,
    pub verdict: Verdict,
    /// Requests per version to see a difference of the minimal size
    /// (`docs/analysis.md`) with 80% power.
    pub needed_per_version: i64,
    /// Both versions' durations in the same buckets, a quarter of a
    /// doubling wide, shortest first, empty ones between kept.
    pub histogram: Vec<PairedBucket>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Side {
    pub requests: i64,
    pub errors: i64,
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Mann-Whitney U on durations, the candidate against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencyTest {
    /// U of the candidate's durations.
    pub u: f64,
    pub p_value: f64,
    /// Holm-adjusted over the comparison's operations.
    pub adjusted_p_value: f64,
    /// P(a candidate request is slower than a baseline one), ties half:
    /// 0.5 is no difference.
    pub probability_slower: f64,
    /// 2·probabilitySlower − 1, from −1 (always faster) to 1.
    pub rank_biserial: f64,
}

/// Two-proportion z-test on the error rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorTest {
    pub p_value: f64,
    pub adjusted_p_value: f64,
    /// Candidate's error rate minus the baseline's.
    pub difference: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PairedBucket {
    pub lower_ns: i64,
    pub upper_ns: i64,
    pub baseline: i64,
    pub candidate: i64,
}

#[derive(Debug, Deserialize)]
struct SideRow {
    op: Option<String>,
    candidate: bool,
    requests: i64,
    errors: i64,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct RankRow {
    op: Option<String>,
    n: i64,
    n_candidate: i64,
    rank_sum: f64,
    ties: f64,
}

#[derive(Debug, Deserialize)]
struct BucketRow {
    op: Option<String>,
    candidate: bool,
    b: i64,
    count: i64,
}

/// What a comparison reads per operation (or once for all), before tests.
#[derive(Debug, Default)]
struct Samples {
    baseline: Side,
    candidate: Side,
    ranks: Option<RankSums>,
    buckets: BTreeMap<i64, (i64, i64)>,
}

/// The three aggregates of one grouping: per operation, or all requests.
async fn samples(
    ctx: &SessionContext,
    request: &CompareRequest,
    per_operation: bool,
) -> Result<BTreeMap<Option<String>, Samples>, QueryError> {
    let op = if per_operation { format!("CAST({SPAN_NAME} AS VARCHAR)") } else { "CAST(NULL AS VARCHAR)".into() };
    let base = |params: &mut Params| {
        let requests = requests_sql(&request.service, &request.window, params);
        let (baseline, candidate) = (params.text(&request.baseline), params.text(&request.candidate));
        format!(
            "SELECT {op} AS op, {SERVICE_VERSION} = {candidate} AS candidate, {DURATION_NS} AS d,
                    {STATUS_CODE} = 'ERROR' AS error, {} AS b
             FROM {SPANS_TABLE}
             WHERE {requests} AND {SERVICE_VERSION} IN ({baseline}, {candidate})",
            bucket_sql()
        )
    };
    let ms = |p: f64| percentile_ms_sql(p, "d");
    let mut params = Params::default();
    let sql = format!(
        "WITH s AS ({}) SELECT op, candidate, count(*) AS requests, sum(CASE WHEN error THEN 1 ELSE 0 END) AS errors,
                {} AS p50, {} AS p90, {} AS p99
         FROM s GROUP BY 1, 2",
        base(&mut params),
        ms(0.5),
        ms(0.9),
        ms(0.99)
    );
    let sides: Vec<SideRow> = session_rows(ctx, &sql, params).await?;

    // Mid-ranks: each distinct duration's rank is the count below it plus
    // the middle of its run of ties.
    let mut params = Params::default();
    let sql = format!(
        "WITH s AS ({}),
              t AS (SELECT op, d, count(*) AS n, sum(CASE WHEN candidate THEN 1 ELSE 0 END) AS nc FROM s GROUP BY op, d),
              r AS (SELECT op, n, nc,
                           COALESCE(sum(n) OVER (PARTITION BY op ORDER BY d ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS below
                    FROM t)
         SELECT op, sum(n) AS n, sum(nc) AS n_candidate,
                sum(CAST(nc AS DOUBLE) * (CAST(below AS DOUBLE) + (CAST(n AS DOUBLE) + 1.0) / 2.0)) AS rank_sum,
                sum(CAST(n AS DOUBLE) * CAST(n AS DOUBLE) * CAST(n AS DOUBLE) - CAST(n AS DOUBLE)) AS ties
         FROM r GROUP BY op",
        base(&mut params)
    );
    let ranks: Vec<RankRow> = session_rows(ctx, &sql, params).await?;

    let mut params = Params::default();
    let sql =
        format!("WITH s AS ({}) SELECT op, candidate, b, count(*) AS count FROM s GROUP BY 1, 2, 3", base(&mut params));
    let buckets: Vec<BucketRow> = session_rows(ctx, &sql, params).await?;

    let mut out: BTreeMap<Option<String>, Samples> = BTreeMap::new();
    for row in sides {
        let side = Side {
            requests: row.requests,
            errors: row.errors,
            error_rate: (row.requests > 0).then(|| row.errors as f64 / row.requests as f64),
            p50_ms: row.p50,
            p90_ms: row.p90,
            p99_ms: row.p99,
        };
        let samples = out.entry(row.op).or_default();
        *(if row.candidate { &mut samples.candidate } else { &mut samples.baseline }) = side;
    }
    for row in ranks {
        let n2 = row.n_candidate as f64;
        out.entry(row.op).or_default().ranks =
            Some(RankSums { n1: row.n as f64 - n2, n2, rank_sum2: row.rank_sum, ties: row.ties });
    }
    for row in buckets {
        let counts = out.entry(row.op).or_default().buckets.entry(row.b).or_default();
        *(if row.candidate { &mut counts.1 } else { &mut counts.0 }) += row.count;
    }
    Ok(out)
}

/// Tests before the correction, each with its raw p-value.
fn tests(samples: &Samples) -> Tests {
    let latency = samples.ranks.and_then(stats::mann_whitney).map(|t| LatencyTest {
        u: t.u2,
        p_value: t.p_value,
        adjusted_p_value: t.p_value,
        probability_slower: t.superiority,
        rank_biserial: 2.0 * t.superiority - 1.0,
    });
    let (b, c) = (&samples.baseline, &samples.candidate);
    let errors = stats::two_proportions(b.errors as f64, b.requests as f64, c.errors as f64, c.requests as f64)
        .map(|t| ErrorTest { p_value: t.p_value, adjusted_p_value: t.p_value, difference: t.rate2 - t.rate1 });
    (latency, errors)
}

fn judge(
    operation: Option<String>,
    samples: Samples,
    (latency, errors): Tests,
    alpha: f64,
    tests_in_family: usize,
) -> OperationComparison {
    let planning_alpha = alpha / tests_in_family.max(1) as f64;
    let baseline_rate = samples.baseline.error_rate.unwrap_or(0.0);
    let error_rate_to_see = baseline_rate + baseline_rate.max(PLANNED_ERROR_INCREASE);
    let needed = stats::rank_test_sample_size(0.5 + MIN_SUPERIORITY_SHIFT, planning_alpha, POWER)
        .max(stats::proportion_sample_size(baseline_rate, error_rate_to_see.min(1.0), planning_alpha, POWER))
        as i64;
    let significant = |p: f64| p < alpha;
    let latency_shift = latency
        .as_ref()
        .filter(|t| significant(t.adjusted_p_value) && (t.probability_slower - 0.5).abs() >= MIN_SUPERIORITY_SHIFT)
        .map(|t| t.probability_slower > 0.5);
    let error_shift = errors
        .as_ref()
        .filter(|t| significant(t.adjusted_p_value) && t.difference.abs() >= MIN_ERROR_DIFFERENCE)
        .map(|t| t.difference > 0.0);
    let (b, c) = (samples.baseline.requests, samples.candidate.requests);
    let verdict = if b < MIN_REQUESTS || c < MIN_REQUESTS {
        Verdict::NotEnoughData
    } else if latency_shift == Some(true) || error_shift == Some(true) {
        Verdict::Worse
    } else if latency_shift == Some(false) || error_shift == Some(false) {
        Verdict::Better
    } else if b >= needed && c >= needed {
        Verdict::NoDifference
    } else {
        Verdict::NotEnoughData
    };
    let histogram = match (samples.buckets.keys().next(), samples.buckets.keys().next_back()) {
        (Some(&first), Some(&last)) => (first..=last)
            .map(|bucket| {
                let (baseline, candidate) = samples.buckets.get(&bucket).copied().unwrap_or_default();
                PairedBucket { lower_ns: bucket_bound(bucket), upper_ns: bucket_bound(bucket + 1), baseline, candidate }
            })
            .collect(),
        _ => Vec::new(),
    };
    OperationComparison {
        operation,
        baseline: samples.baseline,
        candidate: samples.candidate,
        latency,
        errors,
        verdict,
        needed_per_version: needed,
        histogram,
    }
}

/// One sample pair's tests, as a family's member.
type Tests = (Option<LatencyTest>, Option<ErrorTest>);

/// Holm's adjustment over a family of tests, in place; the family's size.
fn correct<'a>(family: impl Iterator<Item = &'a mut Tests>) -> usize {
    let mut members: Vec<&mut f64> = Vec::new();
    let mut raw = Vec::new();
    for (latency, errors) in family {
        let tests = latency.iter_mut().map(|t| (t.p_value, &mut t.adjusted_p_value));
        let tests = tests.chain(errors.iter_mut().map(|t| (t.p_value, &mut t.adjusted_p_value)));
        for (p, adjusted) in tests {
            raw.push(p);
            members.push(adjusted);
        }
    }
    for (member, adjusted) in members.into_iter().zip(stats::holm(&raw)) {
        *member = adjusted;
    }
    raw.len()
}

/// The comparison of `request` (see the module comment).
pub(crate) async fn compare(ctx: &SessionContext, request: &CompareRequest) -> Result<Comparison, QueryError> {
    let per_operation = samples(ctx, request, true).await?;
    let overall_samples = samples(ctx, request, false).await?.remove(&None).unwrap_or_default();

    // Every operation's two tests are one family; the whole's two another.
    let mut tested: Vec<(Option<String>, Samples, Tests)> = per_operation
        .into_iter()
        .map(|(op, s)| {
            let t = tests(&s);
            (op, s, t)
        })
        .collect();
    let family = correct(tested.iter_mut().map(|(_, _, t)| t));
    let mut operations: Vec<OperationComparison> =
        tested.into_iter().map(|(op, s, tests)| judge(op, s, tests, request.alpha, family)).collect();
    operations.sort_by(|a, b| {
        (b.baseline.requests + b.candidate.requests)
            .cmp(&(a.baseline.requests + a.candidate.requests))
            .then_with(|| a.operation.cmp(&b.operation))
    });
    let mut overall_tests = tests(&overall_samples);
    let family = correct(std::iter::once(&mut overall_tests));
    let overall = judge(None, overall_samples, overall_tests, request.alpha, family);
    let any = |v: Verdict| overall.verdict == v || operations.iter().any(|o| o.verdict == v);
    let verdict = if any(Verdict::Worse) {
        Verdict::Worse
    } else if any(Verdict::Better) {
        Verdict::Better
    } else {
        overall.verdict
    };
    Ok(Comparison {
        service: request.service.clone(),
        baseline: request.baseline.clone(),
        candidate: request.candidate.clone(),
        alpha: request.alpha,
        verdict,
        overall,
        operations,
    })
}

impl QueryEngine {
    pub async fn compare_versions(
        &self,
        tenant: &TenantId,
        request: &CompareRequest,
    ) -> Result<Comparison, QueryError> {
        let request = request.clone();
        self.analyse(tenant, |ctx| async move { compare(&ctx, &request).await }).await
    }
}
