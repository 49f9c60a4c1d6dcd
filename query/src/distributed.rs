//! Distributed queries on datafusion-distributed: every query node is a
//! worker (`--worker-addr`) and plans with the others (`--query-workers`).
//!
//! The planner splits a file scan into tasks of about
//! `bytes_per_partition` × the node's partitions of Parquet each, so a
//! scan smaller than that stays on the node that planned it, and a large
//! one (many files, a long window) is spread over the workers, with the
//! shuffles and merges the library places. Scans are plain
//! `DataSourceExec`s over the shared object store, and the fresh spans of
//! the collectors travel in the plan as in-memory batches, so no codec of
//! spanlake's own is needed. Workers need what a plan may name: the object
//! store (through the engine's runtime) and spanlake's SQL functions.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use async_trait::async_trait;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderValue};
use datafusion::common::format::ExplainFormat;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion_distributed::{
    DistributedExec, DistributedExt, SessionStateBuilderExt, Worker, WorkerQueryContext, WorkerResolver,
    WorkerSessionBuilder, display_plan_ascii,
};
use url::Url;

use crate::error::QueryError;
use crate::functions;
use crate::peers::Peers;
use crate::sql::QueryResult;

/// Scans are split into tasks of about this many Parquet bytes per
/// partition: datafusion-distributed's default.
pub const DEFAULT_BYTES_PER_PARTITION: usize = 16 * 1024 * 1024;

/// The query workers a coordinating node sends tasks to.
#[derive(Debug, Clone)]
pub struct QueryWorkers {
    pub peers: Arc<Peers>,
    pub bytes_per_partition: usize,
    /// The cluster's auth token, which workers ask for.
    pub token: Option<String>,
}

#[derive(Debug)]
struct Resolver(Arc<Peers>);

impl WorkerResolver for Resolver {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.0.urls())
    }
}

/// A coordinating session: plans that are worth it run on the workers.
pub(crate) fn coordinate(
    builder: SessionStateBuilder,
    workers: &QueryWorkers,
) -> Result<SessionStateBuilder, DataFusionError> {
    let mut headers = HeaderMap::new();
    if let Some(token) = &workers.token {
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| DataFusionError::Configuration(format!("the auth token is no header value: {e}")))?;
        headers.insert(AUTHORIZATION, bearer);
    }
    builder
        .with_distributed_planner()
        .with_distributed_worker_resolver(Resolver(Arc::clone(&workers.peers)))
        .with_distributed_file_scan_config_bytes_per_partition(workers.bytes_per_partition)?
        .with_distributed_passthrough_headers(headers)
}

/// `EXPLAIN` of a query as it runs on the cluster: the logical plan and
/// the distributed one with its stages and each task's files. DataFusion's
/// own EXPLAIN renders the plan before the distributed planner splits it.
/// `None` for other statements (EXPLAIN ANALYZE, VERBOSE, other formats)
/// and for plans that stay on this node.
pub(crate) async fn explain(ctx: &SessionContext, plan: &LogicalPlan) -> Result<Option<QueryResult>, QueryError> {
    let LogicalPlan::Explain(explain) = plan else { return Ok(None) };
    if explain.verbose || explain.explain_format != ExplainFormat::Indent {
        return Ok(None);
    }
    let state = ctx.state();
    let logical = state.optimize(&explain.plan)?;
    let physical = state.create_physical_plan(&explain.plan).await?;
    if !physical.is::<DistributedExec>() {
        return Ok(None);
    }
    let schema = plan.schema().inner().clone();
    let kinds = StringArray::from(vec!["logical_plan", "distributed_plan"]);
    let texts =
        StringArray::from(vec![logical.display_indent().to_string(), display_plan_ascii(physical.as_ref(), false)]);
    let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(kinds), Arc::new(texts)])
        .map_err(|e| QueryError::Render(e.to_string()))?;
    Ok(Some(QueryResult { schema, batches: vec![batch] }))
}

/// The worker service of a query node: runs plan fragments other nodes
/// send, reading the shared store through `runtime`, with at most
/// `memory_bytes` for all of them.
pub fn worker(runtime: &Arc<RuntimeEnv>, memory_bytes: usize) -> Result<Worker, DataFusionError> {
    let runtime = RuntimeEnvBuilder::from_runtime_env(runtime).with_memory_limit(memory_bytes, 1.0).build_arc()?;
    Ok(Worker::from_session_builder(WorkerSession).with_runtime_env(runtime))
}

#[derive(Debug, Clone)]
struct WorkerSession;

#[async_trait]
impl WorkerSessionBuilder for WorkerSession {
    async fn build_session_state(&self, ctx: WorkerQueryContext) -> Result<SessionState, DataFusionError> {
        // Beside DataFusion's own functions, which `with_*_functions` would replace.
        let mut builder = ctx.builder;
        // A worker's own calls to other workers (multi-stage plans) carry the token it was sent.
        if let Some(token) = ctx.headers.get(AUTHORIZATION) {
            builder =
                builder.with_distributed_passthrough_headers(HeaderMap::from_iter([(AUTHORIZATION, token.clone())]))?;
        }
        builder.scalar_functions().get_or_insert_default().extend(functions::scalar());
        builder.aggregate_functions().get_or_insert_default().extend(functions::aggregate());
        Ok(builder.build())
    }
}
