//! The query engine: a DataFusion session per request, scoped to one tenant.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::optimizer::{Analyzer, AnalyzerRule};
use datafusion::prelude::{SessionConfig, SessionContext};
use spanlake_storage::{Storage, TenantId};

use crate::error::QueryError;
use crate::id_literals::IdLiterals;
use crate::table::SpansTable;

/// The table users query.
pub const SPANS_TABLE: &str = "spans";

/// Where DataFusion finds spanlake's object store; paths inside are the
/// store's own (`{tenant}/spans/...`).
const STORE_URL: &str = "spanlake://store";

/// Answers SQL and trace lookups over the storage engine.
#[derive(Debug)]
pub struct QueryEngine {
    storage: Arc<Storage>,
    runtime: Arc<RuntimeEnv>,
    store_url: ObjectStoreUrl,
}

impl QueryEngine {
    pub fn new(storage: Arc<Storage>) -> Result<Self, QueryError> {
        let store_url = ObjectStoreUrl::parse(STORE_URL)?;
        let runtime = RuntimeEnvBuilder::new().build_arc()?;
        runtime.register_object_store(store_url.as_ref(), storage.object_store());
        Ok(Self { storage, runtime, store_url })
    }

    /// A session that sees only `tenant`'s spans. No file or URL tables:
    /// the catalog holds spanlake's own tables and nothing else.
    pub fn session(&self, tenant: &TenantId) -> Result<SessionContext, QueryError> {
        let config = SessionConfig::new().with_information_schema(true);
        let mut rules: Vec<Arc<dyn AnalyzerRule + Send + Sync>> = vec![Arc::new(IdLiterals)];
        rules.extend(Analyzer::new().rules);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(&self.runtime))
            .with_default_features()
            .with_analyzer_rules(rules)
            .build();
        let ctx = SessionContext::new_with_state(state);
        let spans = SpansTable::new(Arc::clone(&self.storage), tenant.clone(), self.store_url.clone());
        ctx.register_table(SPANS_TABLE, Arc::new(spans))?;
        Ok(ctx)
    }
}
