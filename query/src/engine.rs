//! The query engine: a DataFusion session per request, scoped to one tenant.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use futures::StreamExt;

use datafusion::catalog::view::ViewTable;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::optimizer::{Analyzer, AnalyzerRule};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use serde::de::DeserializeOwned;
use spanlake_storage::scan_filter::ScanFilter;
use spanlake_storage::{FileKind, Snapshot, Storage, TenantId};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::collectors::{Collectors, Partial, Snapshots};
use crate::dependencies::HourlyEdges;
use crate::distributed::{self, QueryWorkers};
use crate::error::QueryError;
use crate::functions::{self, Attributes};
use crate::id_literals::IdLiterals;
use crate::params::Params;
use crate::runtime::{QueryRuntime, YieldingJoins};
use crate::sql::QueryResult;
use crate::table::DataTable;
use crate::tag_summaries::TagSummaries;
use crate::trace_files::TraceFiles;

/// One row per span.
pub const SPANS_TABLE: &str = "spans";
/// One row per trace and service, possibly several per pair until compacted.
pub const TRACE_FRAGMENTS_TABLE: &str = "trace_fragments";
/// One row per trace: the fragments summed.
pub const TRACE_INDEX_VIEW: &str = "trace_index";

/// A trace's fragments in `fragments` (a table or CTE) summed into one row
/// per trace, with its root and the span count of each service: the
/// `trace_index` view, and search results.
pub(crate) fn trace_summary_sql(fragments: &str) -> String {
    format!(
        "
WITH per_service AS (
    SELECT trace_id, CAST(service_name AS VARCHAR) AS service,
           min(start_time) AS start_time, max(end_time) AS end_time,
           sum(span_count) AS span_count, sum(error_count) AS error_count,
           max(CAST(root_span_name AS VARCHAR)) AS root_span_name
    FROM {fragments}
    GROUP BY trace_id, service_name)
SELECT trace_id,
       min(start_time) AS start_time,
       max(end_time) AS end_time,
       CAST(max(end_time) AS BIGINT) - CAST(min(start_time) AS BIGINT) AS duration_ns,
       max(CASE WHEN root_span_name IS NOT NULL THEN service END) AS root_service_name,
       max(root_span_name) AS root_span_name,
       sum(span_count) AS span_count,
       sum(error_count) AS error_count,
       map(array_agg(COALESCE(service, '') ORDER BY service), array_agg(span_count ORDER BY service)) AS services,
       map(array_agg(COALESCE(service, '') ORDER BY service), array_agg(error_count ORDER BY service)) AS service_errors
FROM per_service
GROUP BY trace_id"
    )
}

/// Where DataFusion finds spanlake's object store; paths inside are the
/// store's own (`{tenant}/spans/...`).
const STORE_URL: &str = "spanlake://store";

/// Bounds on every query, whichever surface asked (API, SQL, pgwire, UI).
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Memory one query may hold; operators that can spill to disk do, the
    /// others fail with "Resources exhausted". At most `concurrency` times
    /// this is held by queries together.
    pub memory_bytes: usize,
    /// Queries running at once; more wait for a turn (within `timeout`).
    pub concurrency: usize,
    /// Longest a query may run before it is cancelled.
    pub timeout: Duration,
    /// Most rows an answer may have; a query that yields more is stopped
    /// as soon as it does, before the rows pile up in memory.
    pub max_rows: usize,
    /// Memory of the trace → file map (`trace_files.rs`). 64 MiB holds the
    /// filters of about 300M spans.
    pub trace_files_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 1024 * 1024 * 1024,
            concurrency: 4,
            timeout: Duration::from_secs(60),
            max_rows: 1_000_000,
            trace_files_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Answers SQL and trace lookups over the storage engine.
#[derive(Debug)]
pub struct QueryEngine {
    storage: Arc<Storage>,
    snapshots: Arc<Snapshots>,
    /// Shared by every session: the object store, caches and spill files.
    runtime: Arc<RuntimeEnv>,
    store_url: ObjectStoreUrl,
    memory_bytes: usize,
    concurrency: usize,
    timeout: Duration,
    max_rows: usize,
    queries: QueryRuntime,
    tag_summaries: TagSummaries,
    hourly_edges: Arc<HourlyEdges>,
    trace_files: Arc<TraceFiles>,
    /// Where large scans are spread, on a query node of a cluster.
    workers: Option<QueryWorkers>,
}

impl QueryEngine {
    pub fn new(storage: Arc<Storage>, limits: QueryLimits) -> Result<Self, QueryError> {
        let store_url = ObjectStoreUrl::parse(STORE_URL)?;
        let runtime = RuntimeEnvBuilder::new().build_arc()?;
        runtime.register_object_store(store_url.as_ref(), storage.object_store());
        let queries = QueryRuntime::new(limits.concurrency).map_err(DataFusionError::IoError)?;
        Ok(Self {
            snapshots: Arc::new(Snapshots::new(Arc::clone(&storage), None)),
            storage,
            runtime,
            store_url,
            memory_bytes: limits.memory_bytes,
            concurrency: limits.concurrency,
            timeout: limits.timeout,
            max_rows: limits.max_rows,
            queries,
            tag_summaries: TagSummaries::default(),
            hourly_edges: Arc::default(),
            trace_files: Arc::new(TraceFiles::new(limits.trace_files_bytes)),
            workers: None,
        })
    }

    /// Reads the fresh spans of these collectors too: a query node of a cluster.
    pub fn with_collectors(mut self, collectors: Arc<Collectors>) -> Self {
        self.snapshots = Arc::new(Snapshots::new(Arc::clone(&self.storage), Some(collectors)));
        self
    }

    /// Spreads large scans over these query workers.
    pub fn with_workers(mut self, workers: QueryWorkers) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Whether large scans are spread over query workers.
    pub(crate) fn distributes(&self) -> bool {
        self.workers.is_some()
    }

    /// This node's worker service, for the other query nodes' plans: it
    /// reads the same store, within the memory of `--query-concurrency` queries.
    pub fn worker(&self) -> Result<datafusion_distributed::Worker, QueryError> {
        Ok(distributed::worker(&self.runtime, self.memory_bytes.saturating_mul(self.concurrency))?)
    }

    /// Whether snapshots fetch the fresh spans of collectors (a query node of a cluster).
    pub(crate) fn reads_collectors(&self) -> bool {
        self.snapshots.collectors().is_some()
    }

    /// Whether answers now miss the fresh spans of collectors that cannot be reached.
    pub fn partial(&self) -> Option<Partial> {
        self.snapshots.collectors().and_then(|c| c.partial())
    }

    /// `tenant`'s live files and every span acknowledged and not yet in
    /// them (here or on the collectors), for a query whose rows pass `filter`.
    pub(crate) async fn snapshot(&self, tenant: &TenantId, filter: &ScanFilter) -> Result<Snapshot, QueryError> {
        self.snapshots.take(tenant, filter).await
    }

    /// What the query side keeps up to date for every tenant: the trace →
    /// file map.
    pub async fn upkeep(&self) -> Result<(), QueryError> {
        for tenant in self.storage.tenants() {
            let built = self.trace_files.load(&self.storage, &tenant).await?;
            debug!(%tenant, built, bytes = self.trace_files.bytes(), "trace file filters");
        }
        Ok(())
    }

    /// Runs [`Self::upkeep`] now and then every `interval` until `stop`.
    pub async fn run_upkeep(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        loop {
            if let Err(error) = self.upkeep().await {
                warn!(%error, "query upkeep failed; retrying next interval");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Runs `frame` to the end on the query threads, within the time and
    /// row limits (the wait for a turn counts as time); dropping the stream
    /// on timeout or on one row too many cancels the query.
    pub(crate) async fn collect(&self, frame: DataFrame) -> Result<Vec<RecordBatch>, QueryError> {
        let max_rows = self.max_rows;
        self.bounded(async move {
            let mut stream = frame.execute_stream().await?;
            let (mut batches, mut rows) = (Vec::new(), 0);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows();
                if rows > max_rows {
                    return Err(QueryError::TooManyRows(max_rows));
                }
                batches.push(batch);
            }
            Ok(batches)
        })
        .await
    }

    /// Runs `work` on the query threads, after its turn and within the
    /// time limit: every query does, DataFusion's or spanlake's own.
    pub(crate) async fn bounded<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, QueryError>> + Send + 'static,
    ) -> Result<T, QueryError> {
        match tokio::time::timeout(self.timeout, self.queries.run(work)).await {
            Ok(Some(answer)) => answer,
            Ok(None) => Err(QueryError::Cancelled("spanlake is shutting down")),
            Err(_) => Err(QueryError::Timeout(self.timeout)),
        }
    }

    pub(crate) fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    pub(crate) fn tag_summaries(&self) -> &TagSummaries {
        &self.tag_summaries
    }

    pub(crate) fn hourly_edges(&self) -> &Arc<HourlyEdges> {
        &self.hourly_edges
    }

    /// A session that sees only `tenant`'s spans. No file or URL tables:
    /// the catalog holds spanlake's own tables and nothing else.
    pub async fn session(&self, tenant: &TenantId) -> Result<SessionContext, QueryError> {
        let config = SessionConfig::new().with_information_schema(true);
        let mut rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> = vec![Arc::new(IdLiterals), Arc::new(Attributes)];
        rules.extend(Analyzer::new().rules);
        // Each session has a memory pool of its own: the limit is per query.
        let runtime =
            RuntimeEnvBuilder::from_runtime_env(&self.runtime).with_memory_limit(self.memory_bytes, 1.0).build_arc()?;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_analyzer_rules(rules)
            .with_physical_optimizer_rule(Arc::new(YieldingJoins));
        if let Some(workers) = &self.workers {
            state = distributed::coordinate(state, workers)?;
        }
        let state = state.build();
        let ctx = SessionContext::new_with_state(state);
        functions::register(&ctx);
        for (name, kind) in [(SPANS_TABLE, FileKind::Spans), (TRACE_FRAGMENTS_TABLE, FileKind::TraceIndex)] {
            let table = DataTable::new(
                Arc::clone(&self.snapshots),
                tenant.clone(),
                kind,
                self.store_url.clone(),
                Arc::clone(&self.trace_files),
            );
            ctx.register_table(name, Arc::new(table))?;
        }
        let view_sql = trace_summary_sql(TRACE_FRAGMENTS_TABLE);
        let view = ctx.state().create_logical_plan(&view_sql).await?;
        ctx.register_table(TRACE_INDEX_VIEW, Arc::new(ViewTable::new(view, Some(view_sql))))?;
        Ok(ctx)
    }

    /// Runs spanlake's own `sql` with named `params`: the Arrow batches,
    /// for domain code that reads its columns directly.
    pub(crate) async fn batches(
        &self,
        tenant: &TenantId,
        sql: &str,
        params: Params,
    ) -> Result<Vec<RecordBatch>, QueryError> {
        Ok(self.run_sql(tenant, sql, params).await?.batches)
    }

    async fn run_sql(&self, tenant: &TenantId, sql: &str, params: Params) -> Result<QueryResult, QueryError> {
        let ctx = self.session(tenant).await?;
        let frame = ctx.sql(sql).await?.with_param_values(params.into_values())?;
        let schema = frame.schema().inner().clone();
        Ok(QueryResult { schema, batches: self.collect(frame).await? })
    }

    /// Runs spanlake's own `sql` with named `params` and reads each row
    /// into a `T` straight from the Arrow columns, by field name (cast
    /// times to BIGINT to get nanoseconds). For domain queries with small
    /// answers: operations, series, buckets.
    pub(crate) async fn rows<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        sql: &str,
        params: Params,
    ) -> Result<Vec<T>, QueryError> {
        decode_rows(&self.run_sql(tenant, sql, params).await?.batches)
    }

    /// Runs `work` over one session of `tenant`, on the query threads and
    /// within the query limits: analyses that run several statements (the
    /// version comparison) in the API as in their table functions.
    pub(crate) async fn analyse<T, F>(
        &self,
        tenant: &TenantId,
        work: impl FnOnce(SessionContext) -> F,
    ) -> Result<T, QueryError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, QueryError>> + Send + 'static,
    {
        let ctx = self.session(tenant).await?;
        self.bounded(work(ctx)).await
    }
}

/// Runs `sql` with `params` in `ctx` and reads each row into a `T` (see
/// [`QueryEngine::rows`]); for aggregates whose answers are small.
pub(crate) async fn session_rows<T: DeserializeOwned>(
    ctx: &SessionContext,
    sql: &str,
    params: Params,
) -> Result<Vec<T>, QueryError> {
    let batches = ctx.sql(sql).await?.with_param_values(params.into_values())?.collect().await?;
    decode_rows(&batches)
}

fn decode_rows<T: DeserializeOwned>(batches: &[RecordBatch]) -> Result<Vec<T>, QueryError> {
    let mut rows = Vec::new();
    for batch in batches {
        let read: Vec<T> = serde_arrow::from_record_batch(batch).map_err(|e| QueryError::Render(e.to_string()))?;
        rows.extend(read);
    }
    Ok(rows)
}
