//! Trace lookup by id, without a time range: the trace index names the
//! trace's time bounds, and only span files of those hours are opened.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampNanosecondType;
use datafusion::common::ScalarValue;
use datafusion::functions_aggregate::expr_fn::{max, min};
use datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use spanlake_storage::ids::TraceId;
use spanlake_storage::schema::{self, trace_index as ti};
use spanlake_storage::{TenantId, spans_to_otlp};

use crate::engine::{QueryEngine, SPANS_TABLE, TRACE_FRAGMENTS_TABLE};
use crate::error::QueryError;

fn timestamp(nanos: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(Some(nanos), Some("UTC".into())))
}

impl QueryEngine {
    /// Every span of a trace as OTLP, in start-time order; `None` when no
    /// span of it is stored.
    pub async fn trace(&self, tenant: &TenantId, trace_id: &TraceId) -> Result<Option<Vec<ResourceSpans>>, QueryError> {
        let ctx = self.session(tenant).await?;
        let lookup = TraceLookup::new(trace_id);
        let bounds = self.collect(lookup.bounds(&ctx).await?).await?;
        let Some(spans) = lookup.spans(&ctx, &bounds).await? else { return Ok(None) };
        let batches = self.collect(spans).await?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(None);
        }
        Ok(Some(spans_to_otlp(&batches)?))
    }
}

/// Finding a trace's spans in two queries: its time bounds from the trace
/// index, then its spans within them, so only files of those hours open.
pub(crate) struct TraceLookup {
    id: Expr,
}

impl TraceLookup {
    pub(crate) fn new(trace_id: &[u8]) -> Self {
        Self { id: lit(ScalarValue::FixedSizeBinary(trace_id.len() as i32, Some(trace_id.to_vec()))) }
    }

    /// SELECT min(start_time), max(end_time) FROM trace_fragments WHERE trace_id = <id>
    pub(crate) async fn bounds(&self, ctx: &SessionContext) -> datafusion::common::Result<DataFrame> {
        ctx.table(TRACE_FRAGMENTS_TABLE)
            .await?
            .filter(col(ti::TRACE_ID).eq(self.id.clone()))?
            .aggregate(vec![], vec![min(col(ti::START_TIME)), max(col(ti::END_TIME))])
    }

    /// SELECT * FROM spans WHERE trace_id = <id> AND start_time BETWEEN <first> AND <last> ORDER BY start_time;
    /// `None` when the bounds found no trace.
    pub(crate) async fn spans(
        &self,
        ctx: &SessionContext,
        bounds: &[RecordBatch],
    ) -> datafusion::common::Result<Option<DataFrame>> {
        let Some(row) = bounds.iter().find(|b| b.num_rows() > 0) else { return Ok(None) };
        let (first, last) = (row.column(0), row.column(1));
        if first.is_null(0) {
            return Ok(None);
        }
        let first = first.as_primitive::<TimestampNanosecondType>().value(0);
        let last = last.as_primitive::<TimestampNanosecondType>().value(0);
        let spans = ctx
            .table(SPANS_TABLE)
            .await?
            .filter(
                col(schema::TRACE_ID)
                    .eq(self.id.clone())
                    .and(col(schema::START_TIME).gt_eq(timestamp(first)))
                    .and(col(schema::START_TIME).lt_eq(timestamp(last))),
            )?
            .sort(vec![col(schema::START_TIME).sort(true, true)])?;
        Ok(Some(spans))
    }
}
