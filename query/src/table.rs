//! Tables over one tenant's data: `spans` (span files plus the write
//! buffer) and `trace_fragments` (trace-index files plus fragments of the
//! buffered spans).
//!
//! Each scan takes one storage snapshot, so a query sees every span exactly
//! once even while a flush moves rows from the buffer into files or
//! compaction replaces files. Files are pruned first (time range and
//! service from the catalog, trace ids from the trace → file map); the
//! rest go to the Parquet reader with the filters
//! (row-group statistics, page index, the `trace_id` bloom filter, row-level
//! pushdown). Filters are inexact: DataFusion re-applies them above the
//! scan, which also covers the in-memory rows.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, DataFusionError, Result};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use spanlake_storage::scan_filter::ScanFilter;
use spanlake_storage::{DataFile, FileKind, Snapshot, TenantId, trace_index};

use crate::collectors::Snapshots;
use crate::pruning::span_filter;
use crate::trace_files::TraceFiles;

#[derive(Debug)]
pub(crate) struct DataTable {
    snapshots: Arc<Snapshots>,
    tenant: TenantId,
    kind: FileKind,
    store_url: ObjectStoreUrl,
    trace_files: Arc<TraceFiles>,
}

impl DataTable {
    pub(crate) fn new(
        snapshots: Arc<Snapshots>,
        tenant: TenantId,
        kind: FileKind,
        store_url: ObjectStoreUrl,
        trace_files: Arc<TraceFiles>,
    ) -> Self {
        Self { snapshots, tenant, kind, store_url, trace_files }
    }

    /// The files of this table the filter leaves; a fragment file goes
    /// with its span file's trace filter.
    fn files<'a>(&self, snapshot: &'a Snapshot, filter: &ScanFilter) -> Vec<&'a DataFile> {
        let candidates = snapshot.files(self.kind).filter(|f| filter.may_match(f));
        let Some(ids) = &filter.trace_ids else { return candidates.collect() };
        match self.kind {
            FileKind::Spans => candidates.filter(|f| self.trace_files.may_hold(f, ids)).collect(),
            FileKind::Edges | FileKind::TraceDurations => candidates.collect(),
            FileKind::TraceIndex => {
                let ruled_out: HashSet<&str> = snapshot
                    .files(FileKind::Spans)
                    .filter(|span| !self.trace_files.may_hold(span, ids))
                    .filter_map(|span| span.trace_index.as_deref())
                    .collect();
                candidates.filter(|f| !ruled_out.contains(f.path.as_str())).collect()
            }
        }
    }

    fn scan_files(
        &self,
        state: &dyn Session,
        files: Vec<&DataFile>,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.kind.schema();
        let mut source = ParquetSource::new(Arc::clone(&schema))
            .with_pushdown_filters(true)
            .with_reorder_filters(true)
            .with_enable_page_index(true)
            .with_bloom_filter_on_read(true);
        if let Some(filter) = conjunction(filters.to_vec()) {
            let df_schema = DFSchema::try_from(Arc::clone(&schema))?;
            source = source.with_predicate(state.create_physical_expr(filter, &df_schema)?);
        }
        let files = files.into_iter().map(|f| PartitionedFile::new(f.path.clone(), f.size)).collect();
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .with_file_group(FileGroup::new(files))
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    /// The in-memory rows of this table for buffered spans: only those of
    /// the trace ids asked for, when the filter pins some, so that
    /// fragments are computed for them alone.
    fn buffered(&self, spans: &[RecordBatch], filter: &ScanFilter) -> Result<Vec<RecordBatch>> {
        let whole_traces = filter.traces_only();
        let kept: Vec<RecordBatch> = spans.iter().map(|b| whole_traces.apply(b)).collect::<Result<_, _>>()?;
        let spans: Vec<RecordBatch> = kept.into_iter().filter(|b| b.num_rows() > 0).collect();
        match self.kind {
            FileKind::Spans => Ok(spans),
            FileKind::TraceIndex => Ok(spans.iter().map(trace_index::fragments_of_spans).collect::<Result<_, _>>()?),
            // Edges of buffered spans are made where the graph is summed.
            FileKind::Edges | FileKind::TraceDurations => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl TableProvider for DataTable {
    fn schema(&self) -> SchemaRef {
        self.kind.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let file_filter = span_filter(filters);
        // Fragments of fresh spans must be their traces' own: only whole
        // traces may be left out of them.
        let fresh_filter = match self.kind {
            FileKind::Spans => file_filter.clone(),
            _ => file_filter.traces_only(),
        };
        let snapshot = self
            .snapshots
            .take(&self.tenant, &fresh_filter)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let files = self.files(&snapshot, &file_filter);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            inputs.push(self.scan_files(state, files, projection, filters, limit)?);
        }
        let buffered = self.buffered(&snapshot.batches, &file_filter)?;
        if !buffered.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(&[buffered], self.kind.schema(), projection.cloned())?);
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.kind.schema().project(p)?),
                None => self.kind.schema(),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}
