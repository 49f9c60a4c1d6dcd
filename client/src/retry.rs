//! When to try again and how long to wait first.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Exponential backoff with jitter, over at most `attempts` tries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all, the first included; 1 never retries.
    pub attempts: u32,
    /// The wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// The longest wait, `Retry-After` included.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 6, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// Never retries.
    pub fn none() -> Self {
        Self { attempts: 1, ..Self::default() }
    }

    /// The wait before try `attempt + 1` (`attempt` from 1): the server's
    /// `Retry-After` when it sent one, else the backoff with jitter in its
    /// upper half, so that clients refused together do not return together.
    pub(crate) fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_backoff);
        }
        let backoff = self.initial_backoff.saturating_mul(1 << (attempt - 1).min(16)).min(self.max_backoff);
        let jitter = f64::from(std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap_or_default().subsec_nanos()) / 1e9;
        backoff.mul_f64(0.5 + jitter / 2.0)
    }
}

/// Whether an answer means "try again later": 503 (spanlake's buffer is
/// full, a query node is overloaded) and 429.
pub(crate) fn retryable(status: StatusCode) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS
}

/// `Retry-After` in seconds (the HTTP-date form is not used by spanlake).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// Failures before any answer that another try may not meet: the server
/// not listening (yet, or restarting) or the connection dropped.
pub(crate) fn retryable_transport(error: &reqwest::Error) -> bool {
    error.is_connect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_cap_and_retry_after_wins() {
        let policy = RetryPolicy::default();
        let first = policy.wait(1, None);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
        let fourth = policy.wait(4, None);
        assert!(fourth >= Duration::from_millis(400) && fourth <= Duration::from_millis(800), "{fourth:?}");
        assert!(policy.wait(40, None) <= policy.max_backoff);
        assert_eq!(policy.wait(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(policy.wait(1, Some(Duration::from_secs(3600))), policy.max_backoff);
    }

    #[test]
    fn only_later_answers_are_retried() {
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        for status in [400, 401, 404, 413, 500, 504] {
            assert!(!retryable(StatusCode::from_u16(status).unwrap()), "{status}");
        }
    }
}
