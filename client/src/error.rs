//! What a call can fail with: the server's answer (status and message), or
//! not getting one.

use reqwest::StatusCode;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The server answered with an error; `message` is its own (`{"error":
    /// "..."}` of `/api/v1`, the body otherwise). A 4xx is the request's
    /// fault and is never retried.
    #[error("{status}: {message}")]
    Api { status: StatusCode, message: String },
    /// No answer: the server could not be reached or did not answer in
    /// time, after the retries the policy allows.
    #[error("{url}: {source}")]
    Transport { url: String, source: reqwest::Error },
    /// The answer was not what the API documents.
    #[error("{url}: the answer does not decode: {message}")]
    Decode { url: String, message: String },
    /// The client was given something it cannot send (a tenant or token
    /// that is not a valid header, a base URL that is not one).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}
