use arrow::error::ArrowError;
use parquet::errors::ParquetError;
use thiserror::Error;

use crate::catalog::CatalogError;
use crate::export::DecodeError;
use crate::paths::InvalidTenant;
use crate::wal::WalError;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The client's request: not OTLP protobuf or OTLP/JSON.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("the write buffer is full; retry shortly")]
    Overloaded,
    #[error(transparent)]
    Tenant(#[from] InvalidTenant),
    #[error("storage was opened read-only")]
    ReadOnly,
    #[error("{0}")]
    Internal(String),
}

impl StorageError {
    /// Whether the caller should retry later (the condition is passing:
    /// a full buffer, a full or failing disk), as opposed to a bad request.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Overloaded | Self::Wal(_) | Self::ObjectStore(_) | Self::Io(_))
    }
}
