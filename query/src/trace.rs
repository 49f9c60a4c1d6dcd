//! Trace lookup by id, without a time range, in one query: the trace →
//! file map (`trace_files.rs`) leaves the span files that hold the trace,
//! the Parquet bloom filters and page index the row groups and pages, and
//! the buffer is filtered in memory.

use std::collections::HashMap;

use datafusion::common::ScalarValue;
use datafusion::prelude::{DataFrame, Expr, SessionContext, col, lit};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use spanlake_storage::ids::TraceId;
use spanlake_storage::schema;
use spanlake_storage::{TenantId, spans_to_otlp};

use crate::engine::{QueryEngine, SPANS_TABLE};
use crate::error::QueryError;
use crate::params::Params;
use crate::search::Columns;

impl QueryEngine {
    /// Every span of a trace as OTLP, in start-time order; `None` when no
    /// span of it is stored.
    pub async fn trace(&self, tenant: &TenantId, trace_id: &TraceId) -> Result<Option<Vec<ResourceSpans>>, QueryError> {
        let ctx = self.session(tenant).await?;
        let batches = self.collect(trace_spans(&ctx, trace_id.as_bytes()).await?).await?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(None);
        }
        Ok(Some(spans_to_otlp(&batches)?))
    }
}

impl QueryEngine {
    /// Per trace of `ids`, the spans whose parent is not among its spans (a
    /// trace with none is left out): more than zero means the trace is
    /// incomplete.
    pub async fn orphan_counts(&self, tenant: &TenantId, ids: &[TraceId]) -> Result<HashMap<TraceId, i64>, QueryError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut params = Params::default();
        let ids: Vec<String> = ids.iter().map(|id| params.trace_id(id)).collect();
        // Literal ids, so that the trace → file map and the bloom filters prune.
        let sql = format!(
            "WITH s AS (SELECT {trace}, {span}, {parent} FROM {SPANS_TABLE} WHERE {trace} IN ({ids}))
             SELECT a.{trace} AS trace_id, CAST(count(*) AS BIGINT) AS orphans FROM s a
             WHERE a.{parent} IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM s b WHERE b.{trace} = a.{trace} AND b.{span} = a.{parent})
             GROUP BY a.{trace}",
            trace = schema::TRACE_ID,
            span = schema::SPAN_ID,
            parent = schema::PARENT_SPAN_ID,
            ids = ids.join(", "),
        );
        let mut counts = HashMap::new();
        for batch in self.batches(tenant, &sql, params).await? {
            let c = Columns(&batch);
            for (row, orphans) in c.ints("orphans")?.iter().enumerate() {
                counts.insert(c.trace_id("trace_id", row)?, *orphans);
            }
        }
        Ok(counts)
    }
}

fn id_literal(trace_id: &[u8]) -> Expr {
    lit(ScalarValue::FixedSizeBinary(trace_id.len() as i32, Some(trace_id.to_vec())))
}

/// SELECT * FROM spans WHERE trace_id = <id> ORDER BY start_time
pub(crate) async fn trace_spans(ctx: &SessionContext, trace_id: &[u8]) -> datafusion::common::Result<DataFrame> {
    ctx.table(SPANS_TABLE)
        .await?
        .filter(col(schema::TRACE_ID).eq(id_literal(trace_id)))?
        .sort(vec![col(schema::START_TIME).sort(true, true)])
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use datafusion::physical_plan::displayable;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;
    use spanlake_storage::ExportBody;

    use super::*;
    use crate::engine::QueryLimits;

    fn export(trace: u8) -> Bytes {
        let spans = (1..=3u8)
            .map(|i| Span {
                trace_id: vec![trace; 16],
                span_id: vec![i; 8],
                name: "op".into(),
                start_time_unix_nano: 1_750_000_000_000_000_000 + u64::from(trace) * 1000,
                end_time_unix_nano: 1_750_000_000_000_000_000 + u64::from(trace) * 1000 + 500,
                ..Default::default()
            })
            .collect();
        let scope_spans = vec![ScopeSpans { spans, ..Default::default() }];
        let request =
            ExportTraceServiceRequest { resource_spans: vec![ResourceSpans { scope_spans, ..Default::default() }] };
        Bytes::from(request.encode_to_vec())
    }

    /// Span files a lookup of `trace` would open.
    async fn files_opened(engine: &QueryEngine, trace: u8) -> usize {
        let ctx = engine.session(&TenantId::default()).await.unwrap();
        let plan = trace_spans(&ctx, &[trace; 16]).await.unwrap().create_physical_plan().await.unwrap();
        displayable(plan.as_ref()).indent(true).to_string().matches(".parquet").count()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lookup_opens_only_the_files_that_hold_the_trace() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::test_support::storage(dir.path()).await;
        let tenant = TenantId::default();
        for trace in 1..=5 {
            storage.write(&tenant, storage.decode(ExportBody::Protobuf(export(trace))).unwrap()).await.unwrap();
            storage.flush().await.unwrap();
        }
        // Trace 6 is only in the buffer.
        storage.write(&tenant, storage.decode(ExportBody::Protobuf(export(6))).unwrap()).await.unwrap();
        let engine = QueryEngine::new(storage, QueryLimits::default()).unwrap();

        assert_eq!(files_opened(&engine, 3).await, 5, "without the map every file's blooms are read");
        engine.upkeep().await.unwrap();
        assert_eq!(files_opened(&engine, 3).await, 1);
        assert_eq!(files_opened(&engine, 6).await, 0, "a buffered trace opens no file");
        for trace in [3, 6] {
            let spans = engine.trace(&tenant, &TraceId([trace; 16])).await.unwrap().expect("found");
            assert_eq!(spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).count(), 3);
        }
        assert!(engine.trace(&tenant, &TraceId([9; 16])).await.unwrap().is_none());
    }
}
