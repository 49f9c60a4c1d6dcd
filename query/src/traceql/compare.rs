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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;

use spanlake_storage::schema::{self, Level, SPAN_ID, START_TIME, TRACE_ID};

use super::TraceQlError;
use super::ast::Spanset;
use super::metrics::{LabelValue, Series};
use super::sql::Compiler;
use crate::engine::SPANS_TABLE;

const META_TYPE: &str = "__meta_type";
const META_ERROR: &str = "__meta_error";
const TOO_MANY_VALUES: &str = "__too_many_values__";

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Compare {
    pub(super) selection: Spanset,
    pub(super) top: usize,
    pub(super) between: Option<(i64, i64)>,
}

/// One side's counts: attribute → value → step start → spans.
type Counts = BTreeMap<String, HashMap<String, BTreeMap<i64, f64>>>;

/// A row of the aggregate.
#[derive(Debug, Deserialize)]
pub(super) struct Row {
    /// Whether the spans are the selection's.
    sel: bool,
    /// The step's start, unix ns.
    t: i64,
    attr: String,
    value: String,
    /// Spans.
    n: i64,
}

impl Compare {
    /// The aggregate, in [`Row`]s; `step` is the step start of a span,
    /// `kept` the condition for the spans the query keeps.
    pub(super) fn sql(&self, compiler: &mut Compiler, kept: &str, step: &str) -> Result<String, TraceQlError> {
        let mut selected = compiler.spanset(&self.selection)?;
        if let Some((start, end)) = self.between {
            let (start, end) = (compiler.params.time(start), compiler.params.time(end));
            selected = format!("({selected}) AND {START_TIME} >= {start} AND {START_TIME} < {end}");
        }
        let inside = compiler.inside(None);
        let key = format!("span_key({TRACE_ID}, {SPAN_ID})");
        // The baseline as an anti-join on the selection's keys: a
        // condition with subqueries may not stand in a projection.
        let side = |sel: bool, condition: &str| {
            format!(
                "SELECT {sel} AS sel, {step} AS t, {} FROM {SPANS_TABLE} WHERE {inside} AND ({kept}) AND {condition}",
                attribute_lists()
            )
        };
        let selection = side(true, &format!("({selected})"));
        let baseline =
            side(false, &format!("{key} NOT IN (SELECT {key} FROM {SPANS_TABLE} WHERE {inside} AND ({selected}))"));
        Ok(format!(
            "SELECT sel, t, prefix || name AS attr, value, count(*) AS n FROM (
                SELECT sel, t, unnest(prefixes) AS prefix, unnest(names) AS name, unnest(vals) AS value
                FROM ({selection} UNION ALL {baseline}))
             WHERE value IS NOT NULL AND value <> ''
             GROUP BY sel, t, attr, value"
        ))
    }

    /// The series from the aggregate's rows, with a sample at each of
    /// `steps` (unix ns).
    pub(super) fn series(&self, rows: Vec<Row>, steps: &[i64]) -> Vec<Series> {
        let (mut selection, mut baseline) = (Counts::new(), Counts::new());
        for Row { sel, t, attr, value, n } in rows {
            let side = if sel { &mut selection } else { &mut baseline };
            *side.entry(attr).or_default().entry(value).or_default().entry(t).or_default() += n as f64;
        }
        let samples = |counts: &BTreeMap<i64, f64>| -> Vec<(i64, f64)> {
            steps.iter().map(|t| (t / 1_000_000, counts.get(t).copied().unwrap_or(0.0))).collect()
        };
        let mut out = Vec::new();
        let mut too_many = BTreeSet::new();
        for (counts, kind) in [(&baseline, "baseline"), (&selection, "selection")] {
            for (attr, values) in counts {
                let mut ranked: Vec<(&String, f64)> = values.iter().map(|(v, c)| (v, c.values().sum())).collect();
                // Most spans first; ties by value, so answers repeat.
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                if ranked.len() > self.top {
                    too_many.insert(attr.clone());
                }
                for (value, _) in ranked.into_iter().take(self.top) {
                    out.push(Series {
                        labels: vec![
                            (META_TYPE.to_owned(), LabelValue::Text(kind.to_owned())),
                            (attr.clone(), LabelValue::Text(value.clone())),
                        ],
                        samples: samples(&values[value]),
                    });
                }
                let mut total: BTreeMap<i64, f64> = BTreeMap::new();
                for per_step in values.values() {
                    for (t, n) in per_step {
                        *total.entry(*t).or_default() += n;
                    }
                }
                out.push(Series {
                    labels: vec![
                        (META_TYPE.to_owned(), LabelValue::Text(format!("{kind}_total"))),
                        (attr.clone(), LabelValue::Nil),
                    ],
                    samples: samples(&total),
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
/// attributes as (`span.`, `db.system`, `postgresql`), unnested together.
fn attribute_lists() -> String {
    let text = |column: &str| format!("CAST({column} AS VARCHAR)");
    let mut fixed: Vec<(String, String)> = vec![
        ("name".to_owned(), text(schema::SPAN_NAME)),
        ("status".to_owned(), format!("lower({})", text(schema::STATUS_CODE))),
        ("kind".to_owned(), format!("lower({})", text(schema::SPAN_KIND))),
        ("statusMessage".to_owned(), text(schema::STATUS_MESSAGE)),
    ];
    for dedicated in schema::DEDICATED {
        let level = if dedicated.level == Level::Span { "span" } else { "resource" };
        fixed.push((format!("{level}.{}", dedicated.key), text(dedicated.column)));
    }
    let quoted = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let (names, values): (Vec<String>, Vec<String>) = fixed.into_iter().map(|(n, v)| (quoted(&n), v)).unzip();
    let blanks = vec!["''"; names.len()].join(", ");
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
