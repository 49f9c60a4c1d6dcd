use axum::http::StatusCode;
use datafusion::error::DataFusionError;
use spanlake_storage::ToOtlpError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum QueryError {
    /// The request asks for something spanlake does not allow (writes, paths).
    #[error("{0}")]
    Refused(String),
    /// A malformed parameter; the message names it.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{}", .0.strip_backtrace())]
    DataFusion(#[from] DataFusionError),
    #[error("stored spans could not be read back: {0}")]
    Otlp(#[from] ToOtlpError),
    #[error("storage: {0}")]
    Storage(#[from] spanlake_storage::StorageError),
    #[error("rendering the result failed: {0}")]
    Render(String),
    #[error(
        "the query ran longer than {0:?} (--query-timeout) and was cancelled; narrow the time window or add filters"
    )]
    Timeout(std::time::Duration),
    /// Stopped before its end: by the client, or by shutdown.
    #[error("the query was cancelled: {0}")]
    Cancelled(&'static str),
    /// A passing condition of the cluster; retrying shortly helps.
    #[error("{0}")]
    Unavailable(String),
    #[error("the result has more than {0} rows (--query-max-rows); add a LIMIT, aggregate, or narrow the time window")]
    TooManyRows(usize),
}

impl QueryError {
    /// The gRPC code that answers it (Jaeger's gRPC API, Flight SQL), the
    /// counterpart of its HTTP status.
    pub fn grpc_code(&self) -> tonic::Code {
        if let Self::Cancelled(_) = self {
            return tonic::Code::Cancelled;
        }
        match self.status() {
            StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
            StatusCode::NOT_FOUND => tonic::Code::NotFound,
            StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => tonic::Code::Unavailable,
            StatusCode::GATEWAY_TIMEOUT | StatusCode::REQUEST_TIMEOUT => tonic::Code::DeadlineExceeded,
            _ => tonic::Code::Internal,
        }
    }

    /// The HTTP status that answers it, on the API and the UI alike.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Cancelled(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            e if e.is_client_error() => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the caller is at fault (a 4xx), as opposed to spanlake.
    pub fn is_client_error(&self) -> bool {
        match self {
            Self::Refused(_) | Self::BadRequest(_) | Self::NotFound(_) | Self::TooManyRows(_) => true,
            Self::DataFusion(e) => matches!(
                e.find_root(),
                DataFusionError::Plan(_)
                    | DataFusionError::SQL(..)
                    | DataFusionError::SchemaError(..)
                    | DataFusionError::NotImplemented(_)
                    | DataFusionError::ResourcesExhausted(_)
            ),
            Self::Otlp(_)
            | Self::Storage(_)
            | Self::Render(_)
            | Self::Timeout(_)
            | Self::Cancelled(_)
            | Self::Unavailable(_) => false,
        }
    }
}
