//! A query's filters read as a `ScanFilter` (storage's `scan_filter.rs`):
//! bounds on `start_time`, a `service_name`, the trace ids. Files whose
//! times or services cannot match are left out, and so are those whose
//! trace filter rules out the ids (`trace_files.rs`); collectors leave out
//! fresh spans the same way.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use spanlake_storage::ids::TraceId;
use spanlake_storage::scan_filter::ScanFilter;
use spanlake_storage::schema;

fn column_name(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Column(c) => Some(&c.name),
        Expr::Cast(cast) => column_name(&cast.expr),
        Expr::TryCast(cast) => column_name(&cast.expr),
        _ => None,
    }
}

fn timestamp_nanos(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

fn text(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => Some(s),
        ScalarValue::Dictionary(_, inner) => text(inner),
        _ => None,
    }
}

fn trace_id(value: &ScalarValue) -> Option<TraceId> {
    match value {
        ScalarValue::FixedSizeBinary(16, Some(bytes)) => TraceId::from_slice(bytes),
        _ => None,
    }
}

fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// What `filters` require of `start_time`, `service_name` and `trace_id`.
pub(crate) fn span_filter(filters: &[Expr]) -> ScanFilter {
    let mut filter = ScanFilter::default();
    for expr in filters {
        absorb(&mut filter, expr);
    }
    filter
}

fn absorb(filter: &mut ScanFilter, expr: &Expr) {
    if let Expr::InList(InList { expr, list, negated: false }) = expr
        && column_name(expr) == Some(schema::TRACE_ID)
    {
        let ids: Option<Vec<TraceId>> =
            list.iter().map(|e| if let Expr::Literal(v, _) = e { trace_id(v) } else { None }).collect();
        if let Some(ids) = ids {
            filter.trace_ids = Some(ids);
        }
        return;
    }
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = expr else { return };
    if *op == Operator::And {
        absorb(filter, left);
        absorb(filter, right);
        return;
    }
    let (column, op, value) = match (column_name(left), column_name(right), left.as_ref(), right.as_ref()) {
        (Some(c), _, _, Expr::Literal(v, _)) => (c, *op, v),
        (_, Some(c), Expr::Literal(v, _), _) => (c, flip(*op), v),
        _ => return,
    };
    if column == schema::START_TIME {
        let Some(t) = timestamp_nanos(value) else { return };
        match op {
            Operator::Gt | Operator::GtEq => filter.min_start = Some(filter.min_start.map_or(t, |m| m.max(t))),
            Operator::Lt | Operator::LtEq => filter.max_start = Some(filter.max_start.map_or(t, |m| m.min(t))),
            Operator::Eq => {
                filter.min_start = Some(t);
                filter.max_start = Some(t);
            }
            _ => {}
        }
    } else if column == schema::SERVICE_NAME && op == Operator::Eq {
        filter.service = text(value).map(str::to_owned);
    } else if column == schema::TRACE_ID && op == Operator::Eq {
        filter.trace_ids = trace_id(value).map(|id| vec![id]);
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};
    use spanlake_storage::{DataFile, FileKind};

    use super::*;

    fn file(min: i64, max: i64, services: &[&str]) -> DataFile {
        DataFile {
            path: String::new(),
            kind: FileKind::Spans,
            hour: 0,
            size: 1,
            rows: 1,
            min_time: min,
            max_time: max,
            services: services.iter().map(|s| s.to_string()).collect(),
            schema_version: 1,
            level: 0,
            trace_index: None,
            covers: Vec::new(),
        }
    }

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(Some(v), Some("UTC".into())))
    }

    #[test]
    fn time_bounds_and_services_prune_files() {
        let filter = span_filter(&[
            col("start_time").gt_eq(ts(100)).and(ts(200).gt(col("start_time"))),
            col("service_name").eq(lit("web")),
        ]);
        assert_eq!(
            filter,
            ScanFilter { min_start: Some(100), max_start: Some(200), service: Some("web".into()), trace_ids: None }
        );
        assert!(filter.may_match(&file(50, 150, &["db", "web"])));
        assert!(!filter.may_match(&file(0, 99, &["web"])));
        assert!(!filter.may_match(&file(201, 300, &["web"])));
        assert!(!filter.may_match(&file(100, 200, &["db"])));
        assert!(ScanFilter::default().may_match(&file(0, 0, &[])));
    }

    #[test]
    fn trace_ids_asked_for_are_found_in_equalities_and_lists() {
        let id = |b: u8| lit(ScalarValue::FixedSizeBinary(16, Some(vec![b; 16])));
        let one = span_filter(&[col("trace_id").eq(id(1))]);
        assert_eq!(one.trace_ids, Some(vec![TraceId([1; 16])]));
        let list = span_filter(&[col("trace_id").in_list(vec![id(1), id(2)], false)]);
        assert_eq!(list.trace_ids, Some(vec![TraceId([1; 16]), TraceId([2; 16])]));
        let negated = span_filter(&[col("trace_id").in_list(vec![id(1)], true)]);
        assert_eq!(negated.trace_ids, None, "NOT IN pins nothing");
    }
}
