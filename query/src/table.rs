//! Tables over one tenant's data: `spans` (span files plus the write
//! buffer) and `trace_fragments` (trace-index files plus fragments of the
//! buffered spans).
//!
//! Each scan takes one storage snapshot, so a query sees every span exactly
//! once even while a flush moves rows from the buffer into files or
//! compaction replaces files. Files are pruned from the catalog first (time
//! range, service); the rest go to the Parquet reader with the filters
//! (row-group statistics, page index, the `trace_id` bloom filter, row-level
//! pushdown). Filters are inexact: DataFusion re-applies them above the
//! scan, which also covers the in-memory rows.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, Result};
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
use spanlake_storage::{DataFile, FileKind, Storage, TenantId, trace_index};

use crate::pruning::FileFilter;

#[derive(Debug)]
pub(crate) struct DataTable {
    storage: Arc<Storage>,
    tenant: TenantId,
    kind: FileKind,
    store_url: ObjectStoreUrl,
}

impl DataTable {
    pub(crate) fn new(storage: Arc<Storage>, tenant: TenantId, kind: FileKind, store_url: ObjectStoreUrl) -> Self {
        Self { storage, tenant, kind, store_url }
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

    /// The in-memory rows of this table for buffered spans.
    fn buffered(&self, spans: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        match self.kind {
            FileKind::Spans => Ok(spans),
            FileKind::TraceIndex => Ok(spans.iter().map(trace_index::fragments_of_spans).collect::<Result<_, _>>()?),
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
        let snapshot = self.storage.snapshot(&self.tenant);
        let file_filter = FileFilter::from_filters(filters);
        let files: Vec<&DataFile> = snapshot.files(self.kind).filter(|f| file_filter.may_match(f)).collect();
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            inputs.push(self.scan_files(state, files, projection, filters, limit)?);
        }
        let buffered = self.buffered(snapshot.batches.clone())?;
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
