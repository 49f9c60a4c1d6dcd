//! What one `spanlake serve` process does: everything (the default), or
//! some of a cluster's roles over a shared object store.
//!
//! - **collector**: the receivers, the WAL, the buffer and flushes; serves
//!   its unflushed spans to query nodes over Arrow Flight (`--flight-addr`).
//! - **query**: every read API, the UI, SQL and pgwire; reads the shared
//!   catalog and the collectors' fresh spans (`--collectors`); a worker of
//!   distributed queries for the other query nodes (`--worker-addr`,
//!   `--query-workers`).
//! - **compactor**: compaction, retention, deletion, edges and trace
//!   durations, while it holds the compactor lease (`storage/src/lease.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use spanlake_query::distributed::DEFAULT_BYTES_PER_PARTITION;
use spanlake_query::peers::PeerUrl;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Role {
    All,
    Collector,
    Query,
    Compactor,
}

/// The roles one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Roles {
    pub(crate) collector: bool,
    pub(crate) query: bool,
    pub(crate) compactor: bool,
}

impl Roles {
    pub(crate) const ALL: Self = Self { collector: true, query: true, compactor: true };

    pub(crate) fn of(roles: &[Role]) -> Self {
        if roles.is_empty() || roles.contains(&Role::All) {
            return Self::ALL;
        }
        Self {
            collector: roles.contains(&Role::Collector),
            query: roles.contains(&Role::Query),
            compactor: roles.contains(&Role::Compactor),
        }
    }

    /// Whether this process is one of several sharing a store.
    pub(crate) fn split(&self) -> bool {
        *self != Self::ALL
    }
}

/// A process's place in a cluster.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Roles of this process, comma-separated: `collector`, `query`,
    /// `compactor`, or `all` (one process does everything). Split roles
    /// share files through `--storage s3://…`.
    #[arg(long, env = "SPANLAKE_ROLES", value_enum, value_delimiter = ',', default_value = "all")]
    pub(crate) roles: Vec<Role>,
    /// Collector role (split): where query nodes fetch its unflushed spans (Arrow Flight).
    #[arg(long, env = "SPANLAKE_FLIGHT_ADDR", default_value = "127.0.0.1:4320")]
    pub(crate) flight_addr: SocketAddr,
    /// Query role: the collectors' Flight addresses, comma-separated; a
    /// name that resolves to many addresses (a headless service) stands for all.
    #[arg(long, env = "SPANLAKE_COLLECTORS", value_delimiter = ',')]
    pub(crate) collectors: Vec<PeerUrl>,
    /// Query role (split): where this node runs plan fragments for the other query nodes.
    #[arg(long, env = "SPANLAKE_WORKER_ADDR", default_value = "127.0.0.1:4321")]
    pub(crate) worker_addr: SocketAddr,
    /// Query role: the query nodes' worker addresses (this one included),
    /// comma-separated or one name with many addresses; large scans are
    /// spread over them.
    #[arg(long, env = "SPANLAKE_QUERY_WORKERS", value_delimiter = ',')]
    pub(crate) query_workers: Vec<PeerUrl>,
    /// Parquet bytes per partition of a distributed scan: a scan of less
    /// than this times the node's cores stays on the node that planned it.
    #[arg(long, env = "SPANLAKE_QUERY_WORKER_BYTES", default_value_t = DEFAULT_BYTES_PER_PARTITION)]
    pub(crate) query_worker_bytes: usize,
    /// Compactor role (split): a standby takes over a lease not renewed for this long.
    #[arg(long, env = "SPANLAKE_COMPACTOR_LEASE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub(crate) compactor_lease: Duration,
    /// Query role (split): how often the catalog is read for files others published.
    #[arg(long, env = "SPANLAKE_CATALOG_REFRESH", default_value = "1s", value_parser = humantime::parse_duration)]
    pub(crate) catalog_refresh: Duration,
}

impl ClusterArgs {
    pub(crate) fn roles(&self, shared_store: bool) -> anyhow::Result<Roles> {
        let roles = Roles::of(&self.roles);
        if roles.split() && !shared_store {
            bail!(
                "--roles {}: split roles share their files through an object store; \
                 give every process the same --storage s3://bucket/prefix",
                self.roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect::<Vec<_>>().join(",")
            );
        }
        let peers = !self.collectors.is_empty() || !self.query_workers.is_empty();
        if peers && !roles.query {
            bail!("--collectors and --query-workers are for the query role");
        }
        if self.compactor_lease < Duration::from_secs(1) {
            bail!("--compactor-lease must be at least 1s");
        }
        Ok(roles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_all_unless_some_are_named() {
        assert_eq!(Roles::of(&[]), Roles::ALL);
        assert_eq!(Roles::of(&[Role::Query, Role::All]), Roles::ALL);
        let split = Roles::of(&[Role::Collector, Role::Compactor]);
        assert_eq!(split, Roles { collector: true, query: false, compactor: true });
        assert!(split.split() && !Roles::ALL.split());
    }
}
