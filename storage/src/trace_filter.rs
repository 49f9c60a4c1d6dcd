//! A bloom filter of the trace ids in one span file: the trace → file map
//! that lets a lookup open only the files that hold the trace.

use std::sync::Arc;

use arrow::array::AsArray;
use futures::TryStreamExt;
use object_store::ObjectStore;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::bloom_filter::Sbbf;
use parquet::errors::ParquetError;

use crate::catalog::DataFile;
use crate::data_file::FileReader;
use crate::ids::TraceId;
use crate::schema;

/// A lookup among a few hundred files opens a wrong one about every third
/// time; about 2 bytes per trace.
const FALSE_POSITIVE_RATE: f64 = 0.001;

#[derive(Debug)]
pub struct TraceFilter(Sbbf);

impl TraceFilter {
    /// Reads the trace ids of `file`: a span file, or better its fragment
    /// file, which holds the same ids in far fewer rows.
    pub async fn read(store: Arc<dyn ObjectStore>, file: &DataFile) -> Result<Self, ParquetError> {
        let builder = ParquetRecordBatchStreamBuilder::new(FileReader::new(store, file)).await?;
        let column =
            builder.schema().index_of(schema::TRACE_ID).map_err(|e| ParquetError::ArrowError(e.to_string()))?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
        let mut filter = Sbbf::new_with_ndv_fpp(file.rows.max(1), FALSE_POSITIVE_RATE)?;
        let mut batches = builder.with_projection(mask).build()?;
        while let Some(batch) = batches.try_next().await? {
            let mut last: Option<&[u8]> = None;
            for id in batch.column(0).as_fixed_size_binary().iter().flatten() {
                // Rows of a trace sit together (per service): each run once.
                if last != Some(id) {
                    filter.insert(id);
                    last = Some(id);
                }
            }
        }
        filter.fold_to_target_fpp(FALSE_POSITIVE_RATE);
        Ok(Self(filter))
    }

    /// False means the file holds no span of `id`.
    pub fn may_hold(&self, id: &TraceId) -> bool {
        self.0.check(id.as_bytes().as_slice())
    }

    /// Memory the filter takes.
    pub fn bytes(&self) -> usize {
        self.0.num_blocks() * 32
    }
}
