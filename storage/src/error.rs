use arrow::error::ArrowError;
use parquet::errors::ParquetError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("batch does not have the span schema")]
    Schema,
}
