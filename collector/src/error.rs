//! Why an export was refused, and the one place where that becomes a gRPC
//! status or an HTTP status.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use spanlake_storage::StorageError;
use thiserror::Error;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::warn;

/// How long a refused client should wait before it tries again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Error)]
pub enum IngestError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("{0} (header X-Scope-OrgID)")]
    InvalidTenant(#[from] spanlake_storage::InvalidTenant),
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
    /// A passing condition (full buffer, full disk): the client should retry.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, Self::Storage(e) if e.is_retryable())
    }

    /// A short label for metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::InvalidTenant(_) | Self::Storage(StorageError::Decode(_)) => "invalid",
            Self::TooLarge { .. } => "too_large",
            Self::UnsupportedContentType(_) | Self::UnsupportedEncoding(_) => "unsupported_media_type",
            Self::Storage(StorageError::Overloaded) => "overloaded",
            e if e.is_retryable() => "unavailable",
            Self::Storage(_) | Self::Internal(_) => "internal",
        }
    }

    pub(crate) fn grpc_code(&self) -> Code {
        match self {
            Self::InvalidRequest(_)
            | Self::InvalidTenant(_)
            | Self::Storage(StorageError::Decode(_))
            | Self::UnsupportedContentType(_)
            | Self::UnsupportedEncoding(_) => Code::InvalidArgument,
            Self::TooLarge { .. } => Code::ResourceExhausted,
            e if e.is_retryable() => Code::Unavailable,
            Self::Storage(_) | Self::Internal(_) => Code::Internal,
        }
    }

    pub(crate) fn http_status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) | Self::InvalidTenant(_) | Self::Storage(StorageError::Decode(_)) => {
                StatusCode::BAD_REQUEST
            }
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedContentType(_) | Self::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            Self::Storage(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The HTTP answer with `body`; retryable refusals carry `Retry-After`,
    /// the retryable form of the OTLP specification (503 + Retry-After).
    pub(crate) fn http_response(&self, body: impl IntoResponse) -> Response {
        self.log();
        let mut response = (self.http_status(), body).into_response();
        if self.is_retryable() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER.as_secs()));
        }
        response
    }

    /// Server-side failures are logged here, once; overload is not a failure.
    pub(crate) fn log(&self) {
        match self {
            Self::Storage(StorageError::Overloaded) => {}
            Self::Storage(_) | Self::Internal(_) => warn!(error = %self, "export failed"),
            _ => {}
        }
    }
}

impl From<IngestError> for Status {
    fn from(error: IngestError) -> Self {
        error.log();
        if error.is_retryable() {
            // UNAVAILABLE with a RetryInfo delay: the retryable form of the
            // OTLP specification, which the SDKs honour.
            let details = ErrorDetails::with_retry_info(Some(RETRY_AFTER));
            return Status::with_error_details(Code::Unavailable, error.to_string(), details);
        }
        Status::new(error.grpc_code(), error.to_string())
    }
}
