//! A lease in the object store: which of several processes does a job
//! that only one should do at a time (the compactor's upkeep).
//!
//! ```text
//! .cluster/{job}/{term:020}.json   {"holder": "...", "ttl_ms": ...}
//! ```
//!
//! Each term is created with put-if-absent, the same primitive catalog
//! commits use, so one process alone can take a term. The holder renews by
//! taking the next term every third of the lease time. A standby watches
//! the newest term and takes the next one when it has not changed for a
//! whole lease time, measured on its own monotonic clock, so clocks that
//! disagree between machines do not matter. The holder counts itself
//! holder for the lease time after its last renewal, less a margin.
//!
//! The lease keeps two compactors from doing the same work; it is not what
//! keeps them from publishing it twice. A holder that stalls past its
//! lease may still be mid-merge when the standby starts; the catalog's
//! conditional commit refuses whichever of the two replaces files the
//! other already replaced (`Manifest::without`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::paths::TenantId;

/// Not a valid tenant name (no `.`), so tenant discovery never takes it for one.
const PREFIX: &str = ".cluster";
/// Terms kept behind the newest, for readers listing meanwhile.
const KEEP_TERMS: u64 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Term {
    holder: String,
    ttl_ms: u64,
}

/// What one look at the store found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Newest {
    term: u64,
    holder: Option<String>,
}

#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    job: String,
    holder: String,
    ttl: Duration,
    /// The newest term seen, and when it was first seen (standby's clock).
    seen: Option<(u64, Instant)>,
    /// When this process last took a term.
    renewed: Option<Instant>,
}

impl Lease {
    /// `holder` names this process in the store (for operators reading it).
    pub fn new(store: Arc<dyn ObjectStore>, job: &str, holder: impl Into<String>, ttl: Duration) -> Self {
        Self { store, job: job.to_owned(), holder: holder.into(), ttl, seen: None, renewed: None }
    }

    fn term_path(&self, term: u64) -> Path {
        Path::from_iter([PREFIX, self.job.as_str(), &format!("{term:020}.json")])
    }

    /// Whether this process holds the lease now: it took a term less than
    /// the lease time ago, less a tenth for the time a renewal takes.
    pub fn held(&self) -> bool {
        self.renewed.is_some_and(|at| at.elapsed() < self.ttl - self.ttl / 10)
    }

    async fn newest(&self) -> Result<Newest, object_store::Error> {
        let prefix = Path::from_iter([PREFIX, self.job.as_str()]);
        let terms: Vec<u64> = self
            .store
            .list(Some(&prefix))
            .try_filter_map(|meta| async move { Ok(TenantId::version_of(&meta.location)) })
            .try_collect()
            .await?;
        let Some(term) = terms.into_iter().max() else { return Ok(Newest { term: 0, holder: None }) };
        let holder = match self.store.get(&self.term_path(term)).await {
            Ok(found) => serde_json::from_slice::<Term>(&found.bytes().await?).ok().map(|t| t.holder),
            // Deleted between the listing and the read: a newer term exists.
            Err(object_store::Error::NotFound { .. }) => None,
            Err(error) => return Err(error),
        };
        Ok(Newest { term, holder })
    }

    /// One step: renew if held, take over if the holder let it lapse.
    /// Returns whether this process holds the lease afterwards.
    pub async fn step(&mut self) -> Result<bool, object_store::Error> {
        let newest = self.newest().await?;
        let now = Instant::now();
        let mine = newest.holder.as_deref() == Some(self.holder.as_str());
        if self.seen.is_none_or(|(term, _)| term != newest.term) {
            self.seen = Some((newest.term, now));
        }
        let lapsed = newest.term == 0 || self.seen.is_some_and(|(_, since)| now - since >= self.ttl);
        if !(lapsed || mine && self.held()) {
            if mine {
                // Held it once, stalled past the lease: wait like a standby.
                self.renewed = None;
            }
            return Ok(false);
        }
        let next = newest.term + 1;
        let body = serde_json::to_vec(&Term { holder: self.holder.clone(), ttl_ms: self.ttl.as_millis() as u64 })
            .expect("terms serialize");
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(&self.term_path(next), PutPayload::from(body), options).await {
            Ok(_) => {
                if !mine || self.renewed.is_none() {
                    info!(job = %self.job, term = next, holder = %self.holder, "took the lease");
                }
                self.renewed = Some(now);
                self.seen = Some((next, now));
                if next > KEEP_TERMS {
                    let old = self.term_path(next - KEEP_TERMS - 1);
                    if let Err(error) = self.store.delete(&old).await
                        && !matches!(error, object_store::Error::NotFound { .. })
                    {
                        warn!(job = %self.job, %error, "could not delete an old lease term");
                    }
                }
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                // Another process took the term first.
                self.renewed = None;
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Steps every third of the lease time until `stop`, publishing whether
    /// this process holds the lease.
    pub async fn run(mut self, held: watch::Sender<bool>, stop: CancellationToken) {
        loop {
            let holds = match self.step().await {
                Ok(holds) => holds,
                Err(error) => {
                    warn!(job = %self.job, %error, "lease check failed");
                    self.held()
                }
            };
            held.send_if_modified(|was| std::mem::replace(was, holds) != holds);
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.ttl / 3) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_standby_takes_over_a_lapsed_lease() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let ttl = Duration::from_millis(300);
        let mut a = Lease::new(Arc::clone(&store), "compactor", "a", ttl);
        let mut b = Lease::new(Arc::clone(&store), "compactor", "b", ttl);
        assert!(a.step().await.unwrap(), "the first to ask takes a free lease");
        assert!(!b.step().await.unwrap());
        // a renews within the lease time; b never sees it lapse.
        for _ in 0..4 {
            tokio::time::sleep(ttl / 3).await;
            assert!(a.step().await.unwrap());
            assert!(!b.step().await.unwrap());
            assert!(a.held() && !b.held());
        }
        // a stops renewing: b takes over once a whole lease time passed.
        tokio::time::sleep(ttl / 2).await;
        assert!(!b.step().await.unwrap(), "not lapsed yet");
        tokio::time::sleep(ttl).await;
        assert!(!a.held(), "a counts itself out after the lease time");
        assert!(b.step().await.unwrap());
        assert!(!a.step().await.unwrap(), "a finds b's term and stands by");
        assert!(b.held() && !a.held());
    }

    #[tokio::test]
    async fn racing_standbys_take_a_term_once() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let ttl = Duration::from_secs(10);
        let mut leases: Vec<Lease> =
            (0..8).map(|i| Lease::new(Arc::clone(&store), "compactor", format!("p{i}"), ttl)).collect();
        let taken = futures::future::join_all(leases.iter_mut().map(|l| l.step())).await;
        assert_eq!(taken.into_iter().filter(|t| *t.as_ref().unwrap()).count(), 1);
    }
}
