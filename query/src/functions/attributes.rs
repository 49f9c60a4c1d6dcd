//! `attr(key)`, `span_attr(key)` and `resource_attr(key)`: an attribute's
//! value as text, wherever spanlake keeps it.
//!
//! Hot keys live in dedicated columns (`http.route` is `http_route`), and a
//! value of another type stays in the map; users should not have to know.
//! An analyzer rule rewrites each call, before type coercion, into the
//! columns that can hold the key: `attr('http.route')` becomes
//! `coalesce(CAST(http_route AS VARCHAR), span_attributes['http.route'])`.
//! `attr` looks at the span first, then the resource. A call the rule
//! cannot rewrite (a key that is not a literal, no spans columns in scope)
//! is a planning error that says why.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, Result, ScalarValue, exec_err, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::functions::core::expr_fn::{coalesce, get_field};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarUDF, Signature, SimpleScalarUDF, Volatility, cast,
};
use datafusion::optimizer::AnalyzerRule;
use spanlake_storage::schema::{self, Level};

/// The functions and the levels they search, in order.
const SCOPES: [(&str, &[Level]); 3] =
    [("attr", &[Level::Span, Level::Resource]), ("span_attr", &[Level::Span]), ("resource_attr", &[Level::Resource])];

pub(super) fn functions() -> Vec<ScalarUDF> {
    SCOPES
        .iter()
        .map(|(name, _)| {
            ScalarUDF::from(SimpleScalarUDF::new_with_signature(
                *name,
                Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
                DataType::Utf8,
                Arc::new(move |_: &[ColumnarValue]| {
                    exec_err!("{name}(key) is rewritten when planned; in a join, use span_attributes['key']")
                }),
            ))
        })
        .collect()
}

#[derive(Debug, Default)]
pub(crate) struct Attributes;

impl AnalyzerRule for Attributes {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let Some(input) = input_schema(&node) else { return Ok(Transformed::no(node)) };
            let names = NamePreserver::new(&node);
            let node = node.map_expressions(|expr| {
                let name = names.save(&expr);
                let rewritten = expr.transform_up(|e| rewrite(e, &input))?;
                Ok(rewritten.update_data(|e| name.restore(e)))
            })?;
            if node.transformed { node.map_data(|plan| plan.recompute_schema()) } else { Ok(node) }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "spanlake_attributes"
    }
}

/// The schema a node's expressions are evaluated against.
fn input_schema(node: &LogicalPlan) -> Option<DFSchema> {
    match node.inputs().as_slice() {
        [input] => Some(input.schema().as_ref().clone()),
        _ => None,
    }
}

fn rewrite(expr: Expr, input: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::ScalarFunction(call) = &expr else { return Ok(Transformed::no(expr)) };
    let Some((name, levels)) = SCOPES.iter().find(|(name, _)| *name == call.name()) else {
        return Ok(Transformed::no(expr));
    };
    let key = match call.args.as_slice() {
        [Expr::Literal(ScalarValue::Utf8(Some(key)) | ScalarValue::Utf8View(Some(key)), _)] => key.clone(),
        _ => return plan_err!("{name}(key) takes a literal key, like {name}('http.route')"),
    };
    let column = |name: &str| {
        input.qualified_field_with_unqualified_name(name).ok().map(|(q, f)| Expr::Column(Column::from((q, f))))
    };
    let mut places = Vec::new();
    for level in *levels {
        // Under any name of the attribute (`http.method` is `http.request.method`).
        let dedicated = schema::dedicated_column(&key, *level);
        places.extend(dedicated.and_then(|d| column(d.column)).map(|c| cast(c, DataType::Utf8)));
        let map = match level {
            Level::Span => schema::SPAN_ATTRIBUTES,
            Level::Resource => schema::RESOURCE_ATTRIBUTES,
        };
        for name in schema::attribute_names(&key) {
            places.extend(column(map).map(|m| cast(get_field(m, name), DataType::Utf8)));
        }
    }
    Ok(match places.len() {
        0 => {
            return plan_err!(
                "{name}('{key}') reads the spans table's attribute columns, and none is in scope here \
                 (in a join, use span_attributes['{key}'] with the table's alias)"
            );
        }
        1 => Transformed::yes(places.remove(0)),
        _ => Transformed::yes(coalesce(places)),
    })
}
