//! The query engine: a DataFusion session per request, scoped to one tenant.

use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::optimizer::{Analyzer, AnalyzerRule};
use datafusion::prelude::{SessionConfig, SessionContext};
use spanlake_storage::{FileKind, Storage, TenantId};

use crate::error::QueryError;
use crate::id_literals::IdLiterals;
use crate::table::DataTable;

/// One row per span.
pub const SPANS_TABLE: &str = "spans";
/// One row per trace and service, possibly several per pair until compacted.
pub const TRACE_FRAGMENTS_TABLE: &str = "trace_fragments";
/// One row per trace: the fragments summed.
pub const TRACE_INDEX_VIEW: &str = "trace_index";

/// `trace_index`: a trace's fragments summed into one row, with its root
/// and the span count of each service.
const TRACE_INDEX_SQL: &str = "
WITH per_service AS (
    SELECT trace_id, CAST(service_name AS VARCHAR) AS service,
           min(start_time) AS start_time, max(end_time) AS end_time,
           sum(span_count) AS span_count, sum(error_count) AS error_count,
           max(CAST(root_span_name AS VARCHAR)) AS root_span_name
    FROM trace_fragments
    GROUP BY trace_id, service_name)
SELECT trace_id,
       min(start_time) AS start_time,
       max(end_time) AS end_time,
       CAST(max(end_time) AS BIGINT) - CAST(min(start_time) AS BIGINT) AS duration_ns,
       max(CASE WHEN root_span_name IS NOT NULL THEN service END) AS root_service_name,
       max(root_span_name) AS root_span_name,
       sum(span_count) AS span_count,
       sum(error_count) AS error_count,
       map(array_agg(COALESCE(service, '') ORDER BY service), array_agg(span_count ORDER BY service)) AS services
FROM per_service
GROUP BY trace_id";

/// Where DataFusion finds spanlake's object store; paths inside are the
/// store's own (`{tenant}/spans/...`).
const STORE_URL: &str = "spanlake://store";

/// Answers SQL and trace lookups over the storage engine.
#[derive(Debug)]
pub struct QueryEngine {
    storage: Arc<Storage>,
    runtime: Arc<RuntimeEnv>,
    store_url: ObjectStoreUrl,
}

impl QueryEngine {
    pub fn new(storage: Arc<Storage>) -> Result<Self, QueryError> {
        let store_url = ObjectStoreUrl::parse(STORE_URL)?;
        let runtime = RuntimeEnvBuilder::new().build_arc()?;
        runtime.register_object_store(store_url.as_ref(), storage.object_store());
        Ok(Self { storage, runtime, store_url })
    }

    /// A session that sees only `tenant`'s spans. No file or URL tables:
    /// the catalog holds spanlake's own tables and nothing else.
    pub async fn session(&self, tenant: &TenantId) -> Result<SessionContext, QueryError> {
        let config = SessionConfig::new().with_information_schema(true);
        let mut rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> = vec![Arc::new(IdLiterals)];
        rules.extend(Analyzer::new().rules);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(&self.runtime))
            .with_default_features()
            .with_analyzer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        for (name, kind) in [(SPANS_TABLE, FileKind::Spans), (TRACE_FRAGMENTS_TABLE, FileKind::TraceIndex)] {
            let table = DataTable::new(Arc::clone(&self.storage), tenant.clone(), kind, self.store_url.clone());
            ctx.register_table(name, Arc::new(table))?;
        }
        let view = ctx.state().create_logical_plan(TRACE_INDEX_SQL).await?;
        ctx.register_table(TRACE_INDEX_VIEW, Arc::new(ViewTable::new(view, Some(TRACE_INDEX_SQL.to_owned()))))?;
        Ok(ctx)
    }
}
