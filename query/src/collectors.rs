//! What a query reads: a tenant's live files and every span acknowledged
//! and not yet in them, on this node or on the collectors of a cluster.
//!
//! On one node that is `Storage::snapshot`. A query node of a cluster also
//! asks every collector (`--collectors`, over Arrow Flight,
//! `collector/src/flight.rs`) for its fresh spans above the watermarks of
//! the manifest the query plans from. A collector that flushed past them
//! answers "stale": the node reloads the manifest and asks everyone again,
//! so each span is read once, from a file or from a collector's buffer
//! (`storage/src/fresh.rs`). A collector that cannot be reached is left
//! out and named: the answer is partial, and says so
//! ([`PARTIAL_HEADER`] on HTTP answers).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::{FlightClient, Ticket};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use spanlake_storage::fresh::{FreshRequest, WRITER_HEADER};
use spanlake_storage::scan_filter::ScanFilter;
use spanlake_storage::{Snapshot, Storage, TenantId, schema};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tracing::warn;
use url::Url;
use utoipa::ToSchema;

use crate::error::QueryError;
use crate::peers::Peers;

/// Set on HTTP answers computed while some collector could not be reached.
pub const PARTIAL_HEADER: &str = "spanlake-partial";

/// Collectors an answer could not reach: it holds every file and the
/// other collectors' fresh spans, not theirs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Partial {
    pub unreachable_collectors: Vec<String>,
}

impl Partial {
    pub fn describe(&self) -> String {
        format!("collectors unreachable: {}", self.unreachable_collectors.join(", "))
    }
}
/// Asking again after collectors flushed past the manifest: each round
/// reloads it, so more than a few means the store is not keeping up.
const STALE_ROUNDS: usize = 5;
/// A collector that takes longer is left out, as if down.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

enum Failure {
    Stale,
    Unreachable(String),
}

/// The collectors of a cluster, as this query node asks them.
#[derive(Debug)]
pub struct Collectors {
    peers: Arc<Peers>,
    token: Option<String>,
    channels: Mutex<HashMap<Url, Channel>>,
    /// Those the last fetch could not reach.
    unreachable: Mutex<BTreeSet<Url>>,
}

impl Collectors {
    /// `token`: the cluster's auth token, which the collectors require too.
    pub fn new(peers: Arc<Peers>, token: Option<String>) -> Self {
        Self { peers, token, channels: Mutex::default(), unreachable: Mutex::default() }
    }

    /// The collectors the latest fetch could not reach, if any.
    pub fn partial(&self) -> Option<Partial> {
        let unreachable = self.unreachable.lock().unwrap_or_else(|p| p.into_inner());
        let unreachable_collectors: Vec<String> = unreachable.iter().map(Url::to_string).collect();
        (!unreachable_collectors.is_empty()).then_some(Partial { unreachable_collectors })
    }

    fn channel(&self, url: &Url) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(url) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(url.to_string())
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(1))
            .connect_lazy();
        channels.insert(url.clone(), channel.clone());
        Ok(channel)
    }

    async fn fetch(
        &self,
        url: &Url,
        request: &FreshRequest,
        own_writer: Option<&str>,
    ) -> Result<Vec<RecordBatch>, Failure> {
        let unreachable = |e: &dyn std::fmt::Display| Failure::Unreachable(e.to_string());
        let mut client = FlightClient::new(self.channel(url).map_err(|e| unreachable(&e))?);
        if let Some(token) = &self.token {
            client.add_header("authorization", &format!("Bearer {token}")).map_err(|e| unreachable(&e))?;
        }
        let ticket = Ticket::new(serde_json::to_vec(request).expect("requests serialize"));
        let fetch = async {
            let stream = client.do_get(ticket).await?;
            let writer = stream.headers().get(WRITER_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            if writer.is_some() && writer.as_deref() == own_writer {
                return Ok(Vec::new());
            }
            stream.try_collect::<Vec<RecordBatch>>().await
        };
        match tokio::time::timeout(FETCH_TIMEOUT, fetch).await {
            Ok(Ok(batches)) if batches.iter().any(|b| b.schema().fields() != schema::span_schema().fields()) => {
                Err(Failure::Unreachable("answered spans of another schema (another spanlake version?)".into()))
            }
            Ok(Ok(batches)) => Ok(batches),
            Ok(Err(FlightError::Tonic(status))) if status.code() == Code::FailedPrecondition => Err(Failure::Stale),
            Ok(Err(error)) => Err(unreachable(&error)),
            Err(_) => Err(Failure::Unreachable(format!("no answer within {FETCH_TIMEOUT:?}"))),
        }
    }

    /// `storage`'s snapshot of `tenant` with every collector's fresh spans
    /// that `filter` may want.
    async fn snapshot(
        &self,
        storage: &Storage,
        tenant: &TenantId,
        filter: &ScanFilter,
    ) -> Result<Snapshot, QueryError> {
        for _ in 0..STALE_ROUNDS {
            let mut snapshot = storage.snapshot(tenant);
            let request = FreshRequest {
                tenant: tenant.as_str().to_owned(),
                wal_through: snapshot.manifest.wal_through.clone(),
                filter: filter.clone(),
            };
            let urls = self.peers.urls();
            let answers =
                futures::future::join_all(urls.iter().map(|url| self.fetch(url, &request, storage.writer_id()))).await;
            let (mut stale, mut unreachable) = (false, BTreeSet::new());
            for (url, answer) in urls.into_iter().zip(answers) {
                match answer {
                    Ok(batches) => snapshot.batches.extend(batches),
                    Err(Failure::Stale) => stale = true,
                    Err(Failure::Unreachable(error)) => {
                        warn!(collector = %url, %error, "collector unreachable: answers are partial");
                        unreachable.insert(url);
                    }
                }
            }
            *self.unreachable.lock().unwrap_or_else(|p| p.into_inner()) = unreachable;
            if !stale {
                return Ok(snapshot);
            }
            storage.refresh_manifest(tenant).await?;
        }
        Err(QueryError::Unavailable(format!(
            "collectors kept flushing past the manifest for {STALE_ROUNDS} rounds; retry shortly"
        )))
    }
}

/// Where a query's snapshots come from: this node's storage, and the
/// collectors of its cluster if it has any.
#[derive(Debug)]
pub(crate) struct Snapshots {
    storage: Arc<Storage>,
    collectors: Option<Arc<Collectors>>,
}

impl Snapshots {
    pub(crate) fn new(storage: Arc<Storage>, collectors: Option<Arc<Collectors>>) -> Self {
        Self { storage, collectors }
    }

    /// `tenant`'s live files and unflushed spans, for a query whose rows
    /// all pass `filter` (the spans that cannot are left out where that is cheap).
    pub(crate) async fn take(&self, tenant: &TenantId, filter: &ScanFilter) -> Result<Snapshot, QueryError> {
        match &self.collectors {
            None => Ok(self.storage.snapshot(tenant)),
            Some(collectors) => collectors.snapshot(&self.storage, tenant, filter).await,
        }
    }

    pub(crate) fn collectors(&self) -> Option<&Arc<Collectors>> {
        self.collectors.as_ref()
    }
}
