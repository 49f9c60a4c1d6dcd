//! Lets users compare id columns with hex text: `WHERE trace_id = '0af7…'`.
//!
//! Ids are stored as fixed-size binary. Left alone, DataFusion would coerce
//! both sides to a common type and compare the UTF-8 bytes of the text, which
//! matches nothing and, worse, hides the predicate from the Parquet bloom
//! filter. This analyzer rule runs before type coercion and turns the hex
//! literal into a binary literal of the column's width, so the predicate
//! reaches the reader as `trace_id = <16 bytes>`. `id_from_hex('0af7…')`
//! is taken the same way.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use datafusion::optimizer::AnalyzerRule;
use spanlake_storage::{ids, schema};

use crate::functions::ID_FROM_HEX;

#[derive(Debug, Default)]
pub(crate) struct IdLiterals;

impl AnalyzerRule for IdLiterals {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|plan| plan.map_expressions(|expr| expr.transform_up(rewrite)))
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "spanlake_id_literals"
    }
}

/// The byte width of an id column.
fn id_width(expr: &Expr) -> Option<(&str, usize)> {
    let Expr::Column(column) = expr else { return None };
    schema::ID_COLUMNS.iter().find(|(name, _)| *name == column.name).map(|(name, len)| (*name, *len))
}

fn hex_text(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::ScalarFunction(f) if f.name() == ID_FROM_HEX && f.args.len() == 1 => hex_text(&f.args[0]),
        Expr::Literal(
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s),
        _ => None,
    }
}

fn id_literal(column: &str, width: usize, text: &str) -> Result<Expr> {
    match ids::parse_id(text, width) {
        Ok(bytes) => Ok(Expr::Literal(ScalarValue::FixedSizeBinary(width as i32, Some(bytes)), None)),
        Err(e) => plan_err!("{column} is compared with {text:?}: {e}"),
    }
}

fn is_comparison(op: Operator) -> bool {
    matches!(op, Operator::Eq | Operator::NotEq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq)
}

fn rewrite(expr: Expr) -> Result<Transformed<Expr>> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) if is_comparison(op) => {
            if let (Some((column, width)), Some(text)) = (id_width(&left), hex_text(&right)) {
                let right = Box::new(id_literal(column, width, text)?);
                return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr { left, op, right })));
            }
            if let (Some(text), Some((column, width))) = (hex_text(&left), id_width(&right)) {
                let left = Box::new(id_literal(column, width, text)?);
                return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr { left, op, right })));
            }
            Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr { left, op, right })))
        }
        Expr::InList(InList { expr, list, negated }) if id_width(&expr).is_some() => {
            let (column, width) = id_width(&expr).expect("checked");
            let list = list
                .into_iter()
                .map(|item| match hex_text(&item) {
                    Some(text) => id_literal(column, width, text),
                    None => Ok(item),
                })
                .collect::<Result<_>>()?;
            Ok(Transformed::yes(Expr::InList(InList { expr, list, negated })))
        }
        other => Ok(Transformed::no(other)),
    }
}
