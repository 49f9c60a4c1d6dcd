//! TraceQL, Tempo's trace query language: a lexer (`lexer.rs`), a parser
//! to an AST (`parser.rs`, `ast.rs`) that reports where an error is, and a
//! compiler of spanset filters to SQL conditions on `spans` (`sql.rs`), so
//! a TraceQL search runs on DataFusion plans through the same exact,
//! paged search as every other filter. `docs/traceql.md` lists what is
//! supported; everything else is refused with its position.

mod ast;
mod compare;
mod lexer;
mod metrics;
mod parser;
mod pipeline;
pub(crate) mod sql;
mod structure;
#[cfg(test)]
mod tests;

use std::fmt;
use std::hash::{Hash, Hasher};

use ast::{BinaryOp, Expr, Intrinsic, Query, Scope, Spanset, Stage};
pub(crate) use metrics::MAX_POINTS;
pub use metrics::{LabelValue, Series, TraceQlMetrics};
use thiserror::Error;

use crate::params::{Params, Window};
use crate::tree::NestedSetField;

/// A query error with the line and column (1-based) it was found at.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("parse error at line {line}, col {column}: {message}")]
pub struct TraceQlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl TraceQlError {
    fn at(text: &str, offset: usize, message: impl Into<String>) -> Self {
        let before = &text[..offset.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self { line, column, message: message.into() }
    }
}

/// A parsed TraceQL query whose spanset filter spanlake can run.
#[derive(Debug, Clone)]
pub struct TraceQl {
    text: String,
    query: Query,
}

impl PartialEq for TraceQl {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for TraceQl {}

impl Hash for TraceQl {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl fmt::Display for TraceQl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TraceQl {
    /// Parses a query and checks that spanlake can answer it as a search.
    pub fn parse(text: &str) -> Result<Self, TraceQlError> {
        let this = Self { text: text.to_owned(), query: parse_query(text)? };
        // Compiling once here surfaces every error before a search runs.
        this.compile(&Window { start_ns: 0, end_ns: 1 }, &mut Params::default())?;
        Ok(this)
    }

    fn compile(&self, window: &Window, params: &mut Params) -> Result<String, TraceQlError> {
        sql::Compiler::new(&self.text, params, *window).query(&self.query, false)
    }

    /// Whether the query asks only about whole traces: `rootServiceName`,
    /// `rootName` and `traceDuration` against values, joined by `&&`, `||`
    /// and `!`, in one spanset. Then every span of a trace matches or none
    /// does, and a search finds the traces in the trace index alone.
    pub(crate) fn is_trace_level(&self) -> bool {
        fn whole_trace(expr: &Expr) -> bool {
            match expr {
                Expr::Binary(BinaryOp::And | BinaryOp::Or, left, right, _) => whole_trace(left) && whole_trace(right),
                Expr::Not(inner, _) => whole_trace(inner),
                Expr::Binary(_, left, right, _) => match (left.as_ref(), right.as_ref()) {
                    (Expr::Literal(..), Expr::Intrinsic(i, _)) | (Expr::Intrinsic(i, _), Expr::Literal(..)) => {
                        i.is_trace_level()
                    }
                    _ => false,
                },
                _ => false,
            }
        }
        self.query.stages.iter().all(|s| matches!(s, Stage::Select(..)))
            && matches!(&self.query.spanset, Spanset::Filter(Some(expr), _) if whole_trace(expr))
    }

    /// The condition a span must meet to be in the query's spansets, for
    /// a search of `window`.
    pub(crate) fn condition(&self, window: &Window, params: &mut Params) -> String {
        // `parse` compiled it already; the same query compiles the same way.
        self.compile(window, params).unwrap_or_else(|_| "FALSE".to_owned())
    }
}

/// A value a query names, which Tempo returns with the spans it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Named {
    Attribute { resource: bool, unscoped: bool, key: String },
    Status,
    Kind,
    StatusMessage,
    NestedSet(NestedSetField),
}

impl TraceQl {
    /// The attributes and intrinsics the query's filters and `select()`
    /// name, each once, in order.
    pub(crate) fn named(&self) -> Vec<Named> {
        fn walk(expr: &Expr, out: &mut Vec<Named>) {
            let named = match expr {
                Expr::Attribute { scope: scope @ (Scope::Span | Scope::Resource | Scope::Unscoped), name, .. } => {
                    Some(Named::Attribute {
                        resource: *scope == Scope::Resource,
                        unscoped: *scope == Scope::Unscoped,
                        key: name.clone(),
                    })
                }
                Expr::Intrinsic(Intrinsic::Status, _) => Some(Named::Status),
                Expr::Intrinsic(Intrinsic::Kind, _) => Some(Named::Kind),
                Expr::Intrinsic(Intrinsic::StatusMessage, _) => Some(Named::StatusMessage),
                Expr::Intrinsic(Intrinsic::NestedSetLeft, _) => Some(Named::NestedSet(NestedSetField::Left)),
                Expr::Intrinsic(Intrinsic::NestedSetRight, _) => Some(Named::NestedSet(NestedSetField::Right)),
                Expr::Intrinsic(Intrinsic::NestedSetParent, _) => Some(Named::NestedSet(NestedSetField::Parent)),
                Expr::Not(inner, _) | Expr::Neg(inner, _) => {
                    walk(inner, out);
                    None
                }
                Expr::Binary(_, left, right, _) => {
                    walk(left, out);
                    walk(right, out);
                    None
                }
                _ => None,
            };
            if let Some(named) = named
                && !out.contains(&named)
            {
                out.push(named);
            }
        }
        fn spansets(spanset: &Spanset, out: &mut Vec<Named>) {
            match spanset {
                Spanset::Filter(Some(expr), _) => walk(expr, out),
                Spanset::Filter(None, _) => {}
                Spanset::Op(_, left, right, _) => {
                    spansets(left, out);
                    spansets(right, out);
                }
            }
        }
        let mut out = Vec::new();
        spansets(&self.query.spanset, &mut out);
        for stage in &self.query.stages {
            if let Stage::Select(exprs, _) = stage {
                exprs.iter().for_each(|e| walk(e, &mut out));
            }
        }
        out
    }
}

fn parse_query(text: &str) -> Result<Query, TraceQlError> {
    parser::Parser::new(text, lexer::tokens(text)?).query()
}
