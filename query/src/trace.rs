//! Trace lookup by id.

use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use spanlake_storage::ids::TraceId;
use spanlake_storage::{TenantId, schema, spans_to_otlp};

use crate::engine::{QueryEngine, SPANS_TABLE};
use crate::error::QueryError;

impl QueryEngine {
    /// Every span of a trace as OTLP, in start-time order; `None` when no
    /// span of it is stored.
    pub async fn trace(&self, tenant: &TenantId, trace_id: &TraceId) -> Result<Option<Vec<ResourceSpans>>, QueryError> {
        // SELECT * FROM spans WHERE trace_id = <16 bytes> ORDER BY start_time
        let id = lit(ScalarValue::FixedSizeBinary(16, Some(trace_id.to_vec())));
        let batches = self
            .session(tenant)?
            .table(SPANS_TABLE)
            .await?
            .filter(col(schema::TRACE_ID).eq(id))?
            .sort(vec![col(schema::START_TIME).sort(true, true)])?
            .collect()
            .await?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(None);
        }
        Ok(Some(spans_to_otlp(&batches)?))
    }
}
