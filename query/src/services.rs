//! What there is to search for: services, their operations and remote
//! peers, tag keys and values. Services come from the catalog (every file
//! lists its services) and the buffer, without reading any data file; the
//! rest are narrow queries bounded by time and row count.

use std::collections::BTreeSet;

use arrow::array::AsArray;
use arrow::datatypes::Int32Type;
use serde::{Deserialize, Serialize};
use spanlake_storage::schema::{self, DEDICATED};
use spanlake_storage::{FileKind, TenantId};
use utoipa::ToSchema;

use crate::engine::{QueryEngine, SPANS_TABLE};
use crate::error::QueryError;
use crate::params::{Params, SpanFilter, Window, tag_sql};

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
    pub fn services(&self, tenant: &TenantId, window: Option<Window>) -> Vec<String> {
        let snapshot = self.storage().snapshot(tenant);
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
        services.into_iter().collect()
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

    /// Tag keys on spans (of `service`, if given) in `window`: attribute
    /// keys of spans and resources, and the dedicated columns that hold values.
    pub async fn tag_keys(
        &self,
        tenant: &TenantId,
        service: Option<&str>,
        window: &Window,
    ) -> Result<Vec<String>, QueryError> {
        let mut params = Params::default();
        let filter = SpanFilter { service: service.map(str::to_owned), ..SpanFilter::default() };
        let condition = filter.where_sql(window, &mut params);
        // One pass over the window: the attribute keys of each span and its
        // resource, and the keys of the dedicated columns it has values in.
        let dedicated: Vec<String> = DEDICATED
            .iter()
            .filter(|d| d.column != schema::SERVICE_NAME)
            .map(|d| format!("CASE WHEN {} IS NOT NULL THEN '{}' END", d.column, d.key))
            .collect();
        let sql = format!(
            "SELECT DISTINCT name FROM (
                 SELECT unnest(array_concat(map_keys({}), map_keys({}), make_array({}))) AS name
                 FROM {SPANS_TABLE} WHERE {condition})
             WHERE name IS NOT NULL ORDER BY name LIMIT {MAX_SUGGESTIONS}",
            schema::SPAN_ATTRIBUTES,
            schema::RESOURCE_ATTRIBUTES,
            dedicated.join(", ")
        );
        Ok(names(self.rows(tenant, &sql, params).await?))
    }

    /// Values of tag `key` (starting with `prefix`, if given) in `window`.
    pub async fn tag_values(
        &self,
        tenant: &TenantId,
        key: &str,
        service: Option<&str>,
        prefix: Option<&str>,
        window: &Window,
    ) -> Result<Vec<String>, QueryError> {
        let mut params = Params::default();
        let filter = SpanFilter { service: service.map(str::to_owned), ..SpanFilter::default() };
        let condition = filter.where_sql(window, &mut params);
        let value = tag_sql(key, &mut params);
        let prefix = match prefix {
            Some(prefix) => format!("AND starts_with(name, {})", params.text(prefix)),
            None => String::new(),
        };
        let sql = format!(
            "SELECT DISTINCT name FROM (SELECT {value} AS name FROM {SPANS_TABLE} WHERE {condition})
             WHERE name IS NOT NULL {prefix} ORDER BY name LIMIT {MAX_SUGGESTIONS}"
        );
        Ok(names(self.rows(tenant, &sql, params).await?))
    }
}

fn names(rows: Vec<Name>) -> Vec<String> {
    rows.into_iter().filter_map(|r| r.name).collect()
}
