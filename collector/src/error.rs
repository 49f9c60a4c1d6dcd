//! Why an export was refused, and the one place where that becomes a gRPC
//! status or an HTTP status.

use axum::http::StatusCode;
use spanlake_storage::StorageError;
use thiserror::Error;
use tonic::{Code, Status};
use tracing::warn;

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("request body is over the limit of {limit} bytes{}", if *.decompressed { " after decompression" } else { "" })]
    TooLarge { limit: usize, decompressed: bool },
    #[error("unsupported content type {0:?}: send application/x-protobuf or application/json")]
    UnsupportedContentType(String),
    #[error("unsupported content encoding {0:?}: send gzip or identity")]
    UnsupportedEncoding(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    pub(crate) fn grpc_code(&self) -> Code {
        match self {
            Self::InvalidRequest(_) | Self::UnsupportedContentType(_) | Self::UnsupportedEncoding(_) => {
                Code::InvalidArgument
            }
            Self::TooLarge { .. } => Code::ResourceExhausted,
            Self::Storage(_) | Self::Internal(_) => Code::Internal,
        }
    }

    pub(crate) fn http_status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedContentType(_) | Self::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Storage(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Server-side failures are logged here, once.
    pub(crate) fn log(&self) {
        if matches!(self, Self::Storage(_) | Self::Internal(_)) {
            warn!(error = %self, "export failed");
        }
    }
}

impl From<IngestError> for Status {
    fn from(error: IngestError) -> Self {
        error.log();
        Status::new(error.grpc_code(), error.to_string())
    }
}
