//! `{ … } | compare({ selection }, top, start, end)`: the spans a query
//! keeps, split into those the selection matches (between `start` and
//! `end` when given) and the rest, the baseline, and on each side every
//! attribute value counted per step. Grafana's Traces Drilldown reads it to
//! show which values a slow or failing selection holds more often than the
//! baseline. The series are Tempo's:
//!
//! - `{__meta_type="selection", <attribute>=<value>}` (and `baseline`):
//!   the spans holding the value, for each attribute's `top` values by
//!   count;
//! - `{__meta_type="selection_total", <attribute>=nil}` (and
//!   `baseline_total`): the spans holding the attribute at all;
//! - `{__meta_error="__too_many_values__", <attribute>=nil}`, without
//!   samples, for an attribute that had more values than `top` on a side.
//!
//! Attributes are the span's and resource's (`span.x`, `resource.x`,
//! dedicated columns included) and the intrinsics `name`, `status`,
//! `kind` and `statusMessage`; ids and times are left out, as Tempo does.
//!
//! What bounds the answer: an attribute key the window's tag summaries
//! mark as many-valued (ids, URLs: more than `tag_summary::MAX_VALUES`
//! values in some file) is counted only in its totals and reported as
//! having too many values, so the aggregate holds at most that many
//! values per key, side and step. The selection is a column of the one
//! scan when its condition is plain; one with subqueries (structure,
//! trace-level intrinsics) splits the scan in two with an anti-join.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;

use spanlake_storage::TenantId;
use spanlake_storage::schema::{self, Level, SPAN_ID, START_TIME, TRACE_ID};

use super::TraceQlError;
use super::ast::Spanset;
use super::metrics::{LabelValue, Series};
use super::sql::{Compiler, has_subquery};
use crate::engine::{QueryEngine, SPANS_TABLE};
use crate::error::QueryError;
use crate::params::Window;

const META_TYPE: &str = "__meta_type";
const META_ERROR: &str = "__meta_error";
const TOO_MANY_VALUES: &str = "__too_many_values__";

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Compare {
    pub(super) selection: Spanset,
    pub(super) top: usize,
    pub(super) between: Option<(i64, i64)>,
}

/// Spans per step start.
type Steps = BTreeMap<i64, f64>;

/// One attribute on one side.
#[derive(Debug, Default)]
struct Attribute {
    /// Spans per value, unless the key is many-valued.
    values: HashMap<String, Steps>,
    /// Spans holding the attribute at all.
    total: Steps,
    many_valued: bool,
}

/// A row of the aggregate.
#[derive(Debug, Deserialize)]
pub(super) struct Row {
    /// Whether the spans are the selection's.
    sel: bool,
    /// The step's start, unix ns.
    t: i64,
    attr: String,
    /// `None` for a many-valued key: the row counts towards its total.
    value: Option<String>,
    /// Spans.
    n: i64,
}

impl Compare {
    /// The aggregate, in [`Row`]s; `step` is the step start of a span,
    /// `kept` the condition for the spans the query keeps, `many_valued`
    /// the attribute keys whose values are not told apart.
    pub(super) fn sql(
        &self,
        compiler: &mut Compiler,
        kept: &str,
        step: &str,
        many_valued: &[String],
    ) -> Result<String, TraceQlError> {
        let mut selected = compiler.spanset(&self.selection)?;
        if let Some((start, end)) = self.between {
            let (start, end) = (compiler.params.time(start), compiler.params.time(end));
            selected = format!("({selected}) AND {START_TIME} >= {start} AND {START_TIME} < {end}");
        }
        let inside = compiler.inside(None);
        let lists = attribute_lists();
        let spans = if has_subquery(&selected) {
            // A subquery may not stand in a projection: the baseline is the
            // kept spans that are not among the selection's.
            let key = format!("span_key({TRACE_ID}, {SPAN_ID})");
            let side = |sel: bool, condition: &str| {
                format!(
                    "SELECT {sel} AS sel, {step} AS t, {lists} FROM {SPANS_TABLE} WHERE {inside} AND ({kept}) AND {condition}"
                )
            };
            let selection = side(true, &format!("({selected})"));
            let baseline = side(
                false,
                &format!("{key} NOT IN (SELECT DISTINCT {key} FROM {SPANS_TABLE} WHERE {inside} AND ({selected}))"),
            );
            format!("{selection} UNION ALL {baseline}")
        } else {
            format!(
                "SELECT COALESCE({selected}, FALSE) AS sel, {step} AS t, {lists} FROM {SPANS_TABLE} WHERE {inside} AND ({kept})"
            )
        };
        let many = match many_valued {
            [] => "FALSE".to_owned(),
            keys => {
                let keys: Vec<String> = keys.iter().map(|k| compiler.params.text(k)).collect();
                format!("prefix <> '' AND name IN ({})", keys.join(", "))
            }
        };
        Ok(format!(
            "SELECT sel, t, attr, value, count(*) AS n FROM (
                SELECT sel, t, prefix || name AS attr, CASE WHEN {many} THEN NULL ELSE v END AS value FROM (
                    SELECT sel, t, unnest(prefixes) AS prefix, unnest(names) AS name, unnest(vals) AS v FROM ({spans}))
                WHERE v IS NOT NULL AND v <> '')
             GROUP BY sel, t, attr, value"
        ))
    }

    /// The series from the aggregate's rows, with a sample at each of
    /// `steps` (unix ns).
    pub(super) fn series(&self, rows: Vec<Row>, steps: &[i64]) -> Vec<Series> {
        // Baseline, then selection.
        let mut sides: [BTreeMap<String, Attribute>; 2] = Default::default();
        for Row { sel, t, attr, value, n } in rows {
            let attribute = sides[usize::from(sel)].entry(attr).or_default();
            *attribute.total.entry(t).or_default() += n as f64;
            match value {
                Some(value) => *attribute.values.entry(value).or_default().entry(t).or_default() += n as f64,
                None => attribute.many_valued = true,
            }
        }
        let samples = |counts: &Steps| -> Vec<(i64, f64)> {
            steps.iter().map(|t| (t / 1_000_000, counts.get(t).copied().unwrap_or(0.0))).collect()
        };
        let mut out = Vec::new();
        let mut too_many = BTreeSet::new();
        for (side, kind) in sides.iter().zip(["baseline", "selection"]) {
            for (attr, attribute) in side {
                let mut ranked: Vec<(&String, f64)> =
                    attribute.values.iter().map(|(v, c)| (v, c.values().sum())).collect();
                // Most spans first; ties by value, so answers repeat.
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                if attribute.many_valued || ranked.len() > self.top {
                    too_many.insert(attr.clone());
                }
                for (value, _) in ranked.into_iter().take(self.top) {
                    out.push(Series {
                        labels: vec![
                            (META_TYPE.to_owned(), LabelValue::Text(kind.to_owned())),
                            (attr.clone(), LabelValue::Text(value.clone())),
                        ],
                        samples: samples(&attribute.values[value]),
                    });
                }
                out.push(Series {
                    labels: vec![
                        (META_TYPE.to_owned(), LabelValue::Text(format!("{kind}_total"))),
                        (attr.clone(), LabelValue::Nil),
                    ],
                    samples: samples(&attribute.total),
                });
            }
        }
        out.extend(too_many.into_iter().map(|attr| Series {
            labels: vec![
                (META_ERROR.to_owned(), LabelValue::Text(TOO_MANY_VALUES.to_owned())),
                (attr, LabelValue::Nil),
            ],
            samples: Vec::new(),
        }));
        out
    }
}

/// `prefixes`, `names` and `vals`: three lists of one length, a span's
/// attributes as (`span.`, `db.system`, `postgresql`) and intrinsics as
/// (``, `name`, `GET /`), unnested together.
fn attribute_lists() -> String {
    let text = |column: &str| format!("CAST({column} AS VARCHAR)");
    // (prefix, key, value): intrinsics have no prefix.
    let mut fixed: Vec<(&str, &str, String)> = vec![
        ("", "name", text(schema::SPAN_NAME)),
        ("", "status", format!("lower({})", text(schema::STATUS_CODE))),
        ("", "kind", format!("lower({})", text(schema::SPAN_KIND))),
        ("", "statusMessage", text(schema::STATUS_MESSAGE)),
    ];
    for dedicated in schema::DEDICATED {
        let prefix = if dedicated.level == Level::Span { "span." } else { "resource." };
        fixed.push((prefix, dedicated.key, text(dedicated.column)));
    }
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let fixed_prefixes: Vec<String> = fixed.iter().map(|(p, _, _)| quoted(p)).collect();
    let names: Vec<String> = fixed.iter().map(|(_, k, _)| quoted(k)).collect();
    let values: Vec<String> = fixed.into_iter().map(|(_, _, v)| v).collect();
    let blanks = fixed_prefixes.join(", ");
    let maps = [(schema::SPAN_ATTRIBUTES, "span."), (schema::RESOURCE_ATTRIBUTES, "resource.")];
    let prefixes: Vec<String> =
        maps.iter().map(|(map, p)| format!("array_repeat('{p}', cardinality({map}))")).collect();
    let keys: Vec<String> = maps.iter().map(|(map, _)| format!("map_keys({map})")).collect();
    let vals: Vec<String> = maps.iter().map(|(map, _)| format!("map_values({map})")).collect();
    format!(
        "array_concat(make_array({blanks}), {}) AS prefixes, \
         array_concat(make_array({}), {}) AS names, \
         array_concat(make_array({}), {}) AS vals",
        prefixes.join(", "),
        names.join(", "),
        keys.join(", "),
        values.join(", "),
        vals.join(", ")
    )
}

impl QueryEngine {
    /// Attribute keys with more values in `window` than a tag summary
    /// keeps (in some file or the buffer), from the files' summaries.
    pub(super) async fn many_valued_keys(&self, tenant: &TenantId, window: &Window) -> Result<Vec<String>, QueryError> {
        let summary = self.tag_summary(tenant, window).await?;
        let keys: BTreeSet<&String> =
            summary.services.values().flat_map(|keys| keys.iter()).filter(|(_, v)| v.more).map(|(k, _)| k).collect();
        Ok(keys.into_iter().cloned().collect())
    }
}
