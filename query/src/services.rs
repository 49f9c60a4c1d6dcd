//! What there is to search for: services, their operations and remote
//! peers, tag keys and values. Services come from the catalog (every file
//! lists its services) and tags from file footers (see `tag_summaries.rs`),
//! without reading any data file; operations and remote peers are narrow
//! queries bounded by time and row count.

use std::collections::BTreeSet;

use arrow::array::AsArray;
use arrow::datatypes::Int32Type;
use serde::{Deserialize, Serialize};
use spanlake_storage::schema;
use spanlake_storage::tag_summary::TagSummary;
use spanlake_storage::{FileKind, TenantId};
use utoipa::ToSchema;

use crate::engine::{QueryEngine, SPANS_TABLE};
use crate::error::QueryError;
use crate::params::{Params, SpanFilter, Window};

/// Most names an autocomplete answer lists.
pub const MAX_SUGGESTIONS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub name: String,
    #[serde(alias = "span_kind")]
    pub span_kind: String,
}

#[derive(Debug, Deserialize)]
struct Name {
    name: Option<String>,
}

impl QueryEngine {
    /// Services with spans in `window` (all stored spans without one), sorted.
    pub async fn services(&self, tenant: &TenantId, window: Option<Window>) -> Result<Vec<String>, QueryError> {
        let snapshot = self.snapshot(tenant, &window.map(|w| w.scan_filter()).unwrap_or_default()).await?;
        let overlaps = |min: i64, max: i64| window.is_none_or(|w| min < w.end_ns && max >= w.start_ns);
        let mut services: BTreeSet<String> = snapshot
            .files(FileKind::Spans)
            .filter(|f| overlaps(f.min_time, f.max_time))
            .flat_map(|f| f.services.iter().cloned())
            .collect();
        for batch in &snapshot.batches {
            let Some(column) = batch.column_by_name(schema::SERVICE_NAME) else { continue };
            if let Some(names) = column.as_dictionary_opt::<Int32Type>() {
                services.extend(names.values().as_string::<i32>().iter().flatten().map(str::to_owned));
            }
        }
        Ok(services.into_iter().collect())
    }

    /// Span names of `service` in `window`, with their span kinds.
    pub async fn operations(
        &self,
        tenant: &TenantId,
        service: &str,
        window: &Window,
    ) -> Result<Vec<Operation>, QueryError> {
        let mut params = Params::default();
        let filter = SpanFilter { service: Some(service.to_owned()), ..SpanFilter::default() };
        let condition = filter.where_sql(window, &mut params);
        let sql = format!(
            "SELECT DISTINCT CAST({} AS VARCHAR) AS name, CAST({} AS VARCHAR) AS span_kind
             FROM {SPANS_TABLE} WHERE {condition} AND {} <> ''
             ORDER BY name, span_kind LIMIT {MAX_SUGGESTIONS}",
            schema::SPAN_NAME,
            schema::SPAN_KIND,
            schema::SPAN_NAME
        );
        self.rows(tenant, &sql, params).await
    }

    /// Names of the peers `service`'s client and producer spans call.
    pub async fn remote_services(
        &self,
        tenant: &TenantId,
        service: &str,
        window: &Window,
    ) -> Result<Vec<String>, QueryError> {
        let mut params = Params::default();
        let filter = SpanFilter { service: Some(service.to_owned()), ..SpanFilter::default() };
        let condition = filter.where_sql(window, &mut params);
        let column = schema::REMOTE_SERVICE_NAME;
        let sql = format!(
            "SELECT DISTINCT CAST({column} AS VARCHAR) AS name FROM {SPANS_TABLE}
             WHERE {condition} AND {column} IS NOT NULL ORDER BY name LIMIT {MAX_SUGGESTIONS}"
        );
        Ok(names(self.rows(tenant, &sql, params).await?))
    }

    /// The tags of the spans in `window`, per service: what both
    /// autocomplete lists are read from.
    pub async fn tag_summary(&self, tenant: &TenantId, window: &Window) -> Result<TagSummary, QueryError> {
        let snapshot = self.snapshot(tenant, &window.scan_filter()).await?;
        self.tag_summaries().of_window(self.storage(), tenant, &snapshot, window).await
    }

    /// Those of `keys` that spans of `window` may carry, so that a query
    /// decodes the attribute maps only for keys that are there: from file
    /// footers and the buffer. A query node of a cluster would have to
    /// fetch the collectors' fresh spans for that, which costs more than it
    /// saves: there every key may be there.
    pub(crate) async fn tags_maybe_set(
        &self,
        tenant: &TenantId,
        window: &Window,
        keys: &[&'static str],
    ) -> Result<Vec<&'static str>, QueryError> {
        if self.reads_collectors() {
            return Ok(keys.to_vec());
        }
        let summary = self.tag_summary(tenant, window).await?;
        Ok(keys.iter().copied().filter(|key| summary.may_have(key)).collect())
    }

    /// Tag keys on spans (of `service`, if given) in `window`: attribute
    /// keys of spans and resources, the dedicated columns that hold values,
    /// `span.kind` and `status.code`. From file footers, not a scan.
    pub async fn tag_keys(
        &self,
        tenant: &TenantId,
        service: Option<&str>,
        window: &Window,
    ) -> Result<Vec<String>, QueryError> {
        let summary = self.tag_summary(tenant, window).await?;
        Ok(summary.keys(service).into_iter().take(MAX_SUGGESTIONS).map(str::to_owned).collect())
    }

    /// Values of tag `key` (starting with `prefix`, if given) in `window`.
    /// From file footers, which keep a key's first values only when it has
    /// many (ids, URLs): then the answer is a sample.
    pub async fn tag_values(
        &self,
        tenant: &TenantId,
        key: &str,
        service: Option<&str>,
        prefix: Option<&str>,
        window: &Window,
    ) -> Result<Vec<String>, QueryError> {
        let summary = self.tag_summary(tenant, window).await?;
        let values = summary.values(key, service).into_iter();
        let values = values.filter(|v| prefix.is_none_or(|p| v.starts_with(p)));
        Ok(values.take(MAX_SUGGESTIONS).map(str::to_owned).collect())
    }
}

fn names(rows: Vec<Name>) -> Vec<String> {
    rows.into_iter().filter_map(|r| r.name).collect()
}
