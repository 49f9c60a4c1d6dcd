//! Columns as Postgres clients see them.
//!
//! - Ids (fixed-size binary) are hex text, as the UI, the HTTP API and
//!   every tracing tool show them. A user copies an id out of psql and
//!   pastes it into `WHERE trace_id = '…'`, which spanlake compares as
//!   bytes (`id_literals`), so the bloom filters still prune. As `bytea`
//!   they would print as `\x0af7…` and need `decode()` in every filter.
//! - Maps, structs and lists of them (attributes, events, links) are JSON
//!   text: Postgres has no map type, and JSON is what drivers and Grafana
//!   can unpack.
//! - Dictionary-encoded text is plain text, and unsigned 64-bit counts are
//!   `int8`, as Postgres types a `count(*)` (arrow-pg would say `numeric`).
//!   The rest maps as arrow-pg does.
//!
//! The same mapping serves results and the catalog, so `\d spans` shows
//! the types a `SELECT` returns.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::CatalogProviderList;
use datafusion::common::{Column, Result};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast};
use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;

/// How a column of this type crosses the wire, if not as it is.
enum Conversion {
    Hex,
    Json,
    Cast(DataType),
}

fn conversion(data_type: &DataType) -> Option<Conversion> {
    match data_type {
        DataType::FixedSizeBinary(_) => Some(Conversion::Hex),
        DataType::Map(..) | DataType::Struct(_) => Some(Conversion::Json),
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _)
            if item.data_type().is_nested() =>
        {
            Some(Conversion::Json)
        }
        DataType::Dictionary(_, value) => Some(conversion(value).unwrap_or(Conversion::Cast(value.as_ref().clone()))),
        DataType::Utf8View => Some(Conversion::Cast(DataType::Utf8)),
        DataType::UInt64 => Some(Conversion::Cast(DataType::Int64)),
        _ => None,
    }
}

fn wire_type(data_type: &DataType) -> DataType {
    match conversion(data_type) {
        Some(Conversion::Hex | Conversion::Json) => DataType::Utf8,
        Some(Conversion::Cast(to)) => to,
        None => data_type.clone(),
    }
}

/// `plan` with a projection on top that converts its columns for the wire.
pub(super) fn project(ctx: &SessionContext, plan: LogicalPlan) -> Result<LogicalPlan> {
    if !plan.schema().fields().iter().any(|f| conversion(f.data_type()).is_some()) {
        return Ok(plan);
    }
    let (hex, json) = (ctx.udf("id_to_hex")?, ctx.udf("to_json")?);
    let columns: Vec<Expr> = plan
        .schema()
        .iter()
        .map(|(qualifier, field)| {
            let column = Expr::Column(Column::from((qualifier, field)));
            // Qualified, as `SELECT * FROM spans a, spans b` has two of each name.
            let converted = match conversion(field.data_type()) {
                None => return column,
                Some(Conversion::Hex) => hex.call(vec![column]),
                Some(Conversion::Json) => json.call(vec![column]),
                Some(Conversion::Cast(to)) => cast(column, to),
            };
            converted.alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    LogicalPlanBuilder::from(plan).project(columns)?.build()
}

fn wire_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> =
        schema.fields().iter().map(|f| f.as_ref().clone().with_data_type(wire_type(f.data_type()))).collect();
    Arc::new(Schema::new(fields))
}

/// The session's catalog as `pg_catalog` describes it: wire types.
#[derive(Debug, Clone)]
pub(super) struct WireCatalog(pub(super) Arc<dyn CatalogProviderList>);

#[async_trait]
impl CatalogInfo for WireCatalog {
    async fn catalog_names(&self) -> Result<Vec<String>, DataFusionError> {
        CatalogInfo::catalog_names(&self.0).await
    }

    async fn schema_names(&self, catalog: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        CatalogInfo::schema_names(&self.0, catalog).await
    }

    async fn table_names(&self, catalog: &str, schema: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        CatalogInfo::table_names(&self.0, catalog, schema).await
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>, DataFusionError> {
        Ok(CatalogInfo::table_schema(&self.0, catalog, schema, table).await?.map(|s| wire_schema(&s)))
    }

    async fn table_type(&self, catalog: &str, schema: &str, table: &str) -> Result<Option<TableType>, DataFusionError> {
        CatalogInfo::table_type(&self.0, catalog, schema, table).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_nested_columns_become_text() {
        let spans = spanlake_storage::schema::span_schema();
        let wire = wire_schema(&spans);
        let type_of = |name: &str| wire.field_with_name(name).unwrap().data_type().clone();
        assert_eq!(type_of("trace_id"), DataType::Utf8);
        assert_eq!(type_of("span_attributes"), DataType::Utf8);
        assert_eq!(type_of("events"), DataType::Utf8);
        assert_eq!(type_of("service_name"), DataType::Utf8);
        assert_eq!(type_of("duration_ns"), DataType::Int64);
        assert!(matches!(type_of("start_time"), DataType::Timestamp(..)));
    }
}
