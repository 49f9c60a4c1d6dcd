//! The `spans` table of one tenant: its span files plus its write buffer.
//!
//! Each scan takes one storage snapshot, so a query sees every span exactly
//! once even while a flush moves rows from the buffer into files. Filters go
//! to the Parquet reader (row-group statistics, page index, the `trace_id`
//! bloom filter, row-level pushdown); DataFusion re-applies them above the
//! scan, which also covers the in-memory rows.

use std::sync::Arc;

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
use spanlake_storage::{Snapshot, Storage, TenantId, schema};

#[derive(Debug)]
pub(crate) struct SpansTable {
    storage: Arc<Storage>,
    tenant: TenantId,
    store_url: ObjectStoreUrl,
}

impl SpansTable {
    pub(crate) fn new(storage: Arc<Storage>, tenant: TenantId, store_url: ObjectStoreUrl) -> Self {
        Self { storage, tenant, store_url }
    }

    fn scan_files(
        &self,
        state: &dyn Session,
        snapshot: &Snapshot,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = schema::span_schema();
        let mut source = ParquetSource::new(Arc::clone(&schema))
            .with_pushdown_filters(true)
            .with_reorder_filters(true)
            .with_enable_page_index(true)
            .with_bloom_filter_on_read(true);
        if let Some(filter) = conjunction(filters.to_vec()) {
            let df_schema = DFSchema::try_from(Arc::clone(&schema))?;
            source = source.with_predicate(state.create_physical_expr(filter, &df_schema)?);
        }
        let files = snapshot.files.iter().map(|f| PartitionedFile::new(f.path.to_string(), f.size)).collect();
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .with_file_group(FileGroup::new(files))
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

#[async_trait]
impl TableProvider for SpansTable {
    fn schema(&self) -> SchemaRef {
        schema::span_schema()
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
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !snapshot.files.is_empty() {
            inputs.push(self.scan_files(state, &snapshot, projection, filters, limit)?);
        }
        if !snapshot.batches.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(
                std::slice::from_ref(&snapshot.batches),
                schema::span_schema(),
                projection.cloned(),
            )?);
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema::span_schema().project(p)?),
                None => schema::span_schema(),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}
