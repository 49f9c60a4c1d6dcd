//! Table functions over one trace's tree (`crate::tree`):
//!
//! - `trace_tree('<trace id>')`: every span in waterfall order;
//! - `descendants('<trace id>', '<span id>')`: that span and all below it;
//! - `critical_path('<trace id>')`: the spans on the critical path.
//!
//! Each row is a `spans` row with `depth` (from the root, or from the given
//! span), `descendants` and `critical_ns` (the span's own time on the
//! critical path, NULL off it) added. The trace is read when the query is
//! planned, by the same two-step lookup as the trace API.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimestampNanosecondType};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use spanlake_storage::{FileKind, ids, schema};

use crate::trace::trace_spans;
use crate::tree::{self, Node};

pub(super) fn functions() -> Vec<(&'static str, Arc<dyn TableFunctionImpl>)> {
    [Shape::Tree, Shape::Descendants, Shape::CriticalPath]
        .into_iter()
        .map(|shape| (shape.name(), Arc::new(shape) as Arc<dyn TableFunctionImpl>))
        .collect()
}

const DEPTH: &str = "depth";
const DESCENDANTS: &str = "descendants";
const CRITICAL_NS: &str = "critical_ns";

#[derive(Debug, Clone, Copy)]
enum Shape {
    Tree,
    Descendants,
    CriticalPath,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::Tree => "trace_tree",
            Self::Descendants => "descendants",
            Self::CriticalPath => "critical_path",
        }
    }
}

impl TableFunctionImpl for Shape {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let name = self.name();
        let (trace_id, cut) = match (self, args.exprs()) {
            (Self::Descendants, [trace, span]) => {
                (id_argument(name, trace, 16)?, Cut::Below(id_argument(name, span, 8)?))
            }
            (Self::Descendants, _) => return plan_err!("{name} takes a trace id and a span id"),
            (Self::Tree, [trace]) => (id_argument(name, trace, 16)?, Cut::Whole),
            (Self::CriticalPath, [trace]) => (id_argument(name, trace, 16)?, Cut::CriticalPath),
            _ => return plan_err!("{name} takes a trace id"),
        };
        let spans = FileKind::Spans.schema();
        let mut fields: Vec<Field> = spans.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(DEPTH, DataType::UInt32, false));
        fields.push(Field::new(DESCENDANTS, DataType::UInt32, false));
        fields.push(Field::new(CRITICAL_NS, DataType::Int64, true));
        Ok(Arc::new(TreeTable { name, trace_id, cut, schema: Arc::new(Schema::new(fields)) }))
    }
}

/// A literal id: hex text or bytes.
fn id_argument(function: &str, expr: &Expr, width: usize) -> Result<Vec<u8>> {
    let bytes = match expr {
        Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => ids::parse_id(s, width),
        Expr::Literal(ScalarValue::Binary(Some(b)) | ScalarValue::FixedSizeBinary(_, Some(b)), _) => {
            ids::parse_id(&const_hex::encode(b), width)
        }
        other => return plan_err!("{function} takes ids as literals ('0af7…'), not {other}"),
    };
    bytes.or_else(|e| plan_err!("{function}: {e}"))
}

/// Which of the trace's spans a table function returns.
#[derive(Debug)]
enum Cut {
    Whole,
    /// A span and everything below it.
    Below(Vec<u8>),
    CriticalPath,
}

#[derive(Debug)]
struct TreeTable {
    name: &'static str,
    trace_id: Vec<u8>,
    cut: Cut,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for TreeTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let ctx = super::session_of(state, self.name)?;
        let batches = trace_spans(&ctx, &self.trace_id).await?.collect().await?;
        let spans = concat_batches(&FileKind::Spans.schema(), &batches)?;
        let rows = self.rows(&spans)?;
        MemorySourceConfig::try_new_exec(&[vec![rows]], Arc::clone(&self.schema), projection.cloned())
            .map(|exec| exec as Arc<dyn ExecutionPlan>)
    }
}

impl TreeTable {
    /// The trace's spans placed in the tree, cut as asked.
    fn rows(&self, spans: &RecordBatch) -> Result<RecordBatch> {
        let column = |name: &str| spans.column_by_name(name).map(Arc::clone);
        let (Some(span_ids), Some(parents), Some(starts), Some(durations)) = (
            column(schema::SPAN_ID),
            column(schema::PARENT_SPAN_ID),
            column(schema::START_TIME),
            column(schema::DURATION_NS),
        ) else {
            return exec_err!("the spans table lacks the columns of a tree");
        };
        let (span_ids, parents) = (span_ids.as_fixed_size_binary(), parents.as_fixed_size_binary());
        let starts = starts.as_primitive::<TimestampNanosecondType>();
        let durations = durations.as_primitive::<Int64Type>();
        let nodes: Vec<Node<'_>> = (0..spans.num_rows())
            .map(|i| Node {
                id: span_ids.value(i),
                parent: if parents.is_null(i) { &[] } else { parents.value(i) },
                start_ns: starts.value(i),
                end_ns: starts.value(i) + durations.value(i).max(0),
            })
            .collect();
        let placed = tree::layout(&nodes);
        let chosen: Vec<&tree::Placed> = match &self.cut {
            Cut::Whole => placed.iter().collect(),
            Cut::CriticalPath => placed.iter().filter(|p| p.critical_ns.is_some()).collect(),
            Cut::Below(id) => match placed.iter().position(|p| nodes[p.index].id == id.as_slice()) {
                Some(row) => placed[row..=row + placed[row].descendants].iter().collect(),
                None => Vec::new(),
            },
        };
        let base_depth = chosen.first().filter(|_| matches!(self.cut, Cut::Below(_))).map_or(0, |p| p.depth);
        let indices = UInt32Array::from_iter_values(chosen.iter().map(|p| p.index as u32));
        let taken = take_record_batch(spans, &indices)?;
        let mut columns: Vec<ArrayRef> = taken.columns().to_vec();
        columns.push(Arc::new(UInt32Array::from_iter_values(chosen.iter().map(|p| (p.depth - base_depth) as u32))));
        columns.push(Arc::new(UInt32Array::from_iter_values(chosen.iter().map(|p| p.descendants as u32))));
        columns.push(Arc::new(chosen.iter().map(|p| p.critical_ns).collect::<Int64Array>()));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}
