//! The PostgreSQL wire protocol (`--pg-addr`, 5433 by default): psql, drivers
//! and BI tools on the same tables, functions and limits as the HTTP SQL API.
//!
//! datafusion-postgres brings the protocol (pgwire), the Postgres dialect
//! rewrites and `pg_catalog` (what psql's `\d` and drivers ask on connect).
//! spanlake adds, per connection (`connection.rs`): the tenant from the user
//! name, the token as password, its own session; and per statement
//! (`hooks.rs`): the read-only gate and the query limits. Columns cross the
//! wire as `wire.rs` describes (ids as hex text, attributes as JSON).
//! Cancel requests (psql's Ctrl-C) stop the running query: pgwire drops
//! it, and dropping a query aborts it on the query threads.

mod connection;
mod hooks;
mod wire;

use std::sync::Arc;

use datafusion_postgres::pgwire::api::ConnectionManager;
use datafusion_postgres::pgwire::tokio::process_socket;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::engine::QueryEngine;
use connection::Connection;

/// Connections open at once; more are closed at once. Each holds a session
/// (catalog, settings), not a query: queries queue on `--query-concurrency`.
const MAX_CONNECTIONS: usize = 256;

/// Serves pgwire on `listener` until `shutdown`. With `token`, clients must
/// give it as their password.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<QueryEngine>,
    token: Option<Arc<str>>,
    shutdown: CancellationToken,
) {
    let connections = Arc::new(ConnectionManager::new());
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "pgwire: cannot accept a connection");
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            tracing::warn!(%peer, "pgwire: {MAX_CONNECTIONS} connections are open; closing a new one");
            continue;
        };
        let handlers = Connection::new(Arc::clone(&engine), token.clone(), Arc::clone(&connections));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = stop.cancelled() => {}
                result = process_socket(socket, None, handlers) => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "pgwire connection ended");
                    }
                }
            }
        });
    }
}
