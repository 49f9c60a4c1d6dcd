//! The span table: one row per span, declared once here and imported by the
//! writer and every reader. Column names are never spelled twice.
//!
//! Hot OpenTelemetry semantic-convention attributes are promoted to dedicated
//! columns (and removed from the attribute maps) so that filters on them are
//! column scans with statistics instead of map lookups. A value is promoted
//! only when it has the column's type; anything else stays in the map, which
//! keeps the mapping lossless.

use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

/// Written to every Parquet file's key-value metadata under [`SCHEMA_VERSION_KEY`].
/// Readers accept every version up to this one.
pub const SCHEMA_VERSION: u32 = 1;
pub const SCHEMA_VERSION_KEY: &str = "spanlake.schema_version";

pub const TRACE_ID: &str = "trace_id";
pub const SPAN_ID: &str = "span_id";
pub const PARENT_SPAN_ID: &str = "parent_span_id";
pub const TRACE_STATE: &str = "trace_state";
pub const FLAGS: &str = "flags";
pub const SERVICE_NAME: &str = "service_name";
pub const SPAN_NAME: &str = "span_name";
pub const SPAN_KIND: &str = "span_kind";
pub const START_TIME: &str = "start_time";
pub const DURATION_NS: &str = "duration_ns";
pub const STATUS_CODE: &str = "status_code";
pub const STATUS_MESSAGE: &str = "status_message";
pub const REMOTE_SERVICE_NAME: &str = "remote_service_name";
/// The dedicated column of `service.version`.
pub const SERVICE_VERSION: &str = "service_version";
pub const SPAN_ATTRIBUTES: &str = "span_attributes";
pub const SPAN_ATTRIBUTE_TYPES: &str = "span_attribute_types";
pub const EVENTS: &str = "events";
pub const LINKS: &str = "links";
pub const DROPPED_ATTRIBUTES_COUNT: &str = "dropped_attributes_count";
pub const DROPPED_EVENTS_COUNT: &str = "dropped_events_count";
pub const DROPPED_LINKS_COUNT: &str = "dropped_links_count";
pub const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
pub const RESOURCE_ATTRIBUTE_TYPES: &str = "resource_attribute_types";
pub const RESOURCE_DROPPED_ATTRIBUTES_COUNT: &str = "resource_dropped_attributes_count";
pub const RESOURCE_SCHEMA_URL: &str = "resource_schema_url";
pub const SCOPE_NAME: &str = "scope_name";
pub const SCOPE_VERSION: &str = "scope_version";
pub const SCOPE_ATTRIBUTES: &str = "scope_attributes";
pub const SCOPE_ATTRIBUTE_TYPES: &str = "scope_attribute_types";
pub const SCOPE_DROPPED_ATTRIBUTES_COUNT: &str = "scope_dropped_attributes_count";
pub const SCOPE_SCHEMA_URL: &str = "scope_schema_url";

/// Fields of the structs inside the `events` and `links` lists.
pub mod nested {
    pub const TIME: &str = "time";
    pub const NAME: &str = "name";
    pub const TRACE_ID: &str = "trace_id";
    pub const SPAN_ID: &str = "span_id";
    pub const TRACE_STATE: &str = "trace_state";
    pub const FLAGS: &str = "flags";
    pub const ATTRIBUTES: &str = "attributes";
    pub const ATTRIBUTE_TYPES: &str = "attribute_types";
    pub const DROPPED_ATTRIBUTES_COUNT: &str = "dropped_attributes_count";
}

/// Columns of dependency edge files (`edges.rs`): rows of calls per edge,
/// time slot and duration bucket, and the open ends of calls whose other
/// half was not in the same flush.
pub mod edges {
    /// What the row is: one of `ROW_*`.
    pub const ROW: &str = "row";
    /// Calls: the start of the slot of their anchor span; open ends: the span's start.
    pub const TIME: &str = "time";
    pub const PARENT: &str = "parent";
    pub const CHILD: &str = "child";
    pub const BUCKET: &str = "bucket";
    pub const CALLS: &str = "calls";
    pub const ERRORS: &str = "errors";
    pub const MIN_NS: &str = "min_ns";
    pub const MAX_NS: &str = "max_ns";
    pub const TRACE_ID: &str = "trace_id";
    pub const SPAN_ID: &str = "span_id";
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    /// Open clients: counted as a leaf call until a server claims them.
    pub const LEAF: &str = "leaf";
    /// Open clients: a producer, whose consumers may be many.
    pub const PRODUCER: &str = "producer";
    /// Open ends: when the flush that wrote them ran, by the storage clock.
    pub const ARRIVED: &str = "arrived";

    pub const ROW_CALLS: i8 = 0;
    pub const ROW_OPEN_SERVER: i8 = 1;
    pub const ROW_OPEN_CLIENT: i8 = 2;
    pub const SORT_COLUMNS: [&str; 2] = [TIME, ROW];
}

/// The id columns: stored as fixed-size binary, shown and compared as hex.
pub const ID_COLUMNS: [(&str, usize); 3] = [(TRACE_ID, 16), (SPAN_ID, 8), (PARENT_SPAN_ID, 8)];

/// Well-known semantic-convention attribute keys that spanlake reads.
pub mod attr {
    pub const SERVICE_NAME: &str = "service.name";
    pub const PEER_SERVICE: &str = "peer.service";
    pub const SERVER_ADDRESS: &str = "server.address";
    pub const DB_SYSTEM: &str = "db.system";
    pub const MESSAGING_SYSTEM: &str = "messaging.system";
}

/// Whether an attribute lives on the resource or on the span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Resource,
    Span,
}

/// The Arrow type a promoted attribute is stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Low-cardinality string: dictionary encoded.
    Label,
    /// Long or high-cardinality string (URLs, statements): plain zstd blob.
    Text,
    /// Integer attribute.
    Int,
}

/// An attribute with a dedicated column.
#[derive(Debug, Clone, Copy)]
pub struct Dedicated {
    pub key: &'static str,
    pub column: &'static str,
    pub level: Level,
    pub kind: ColumnKind,
}

const fn dedicated(key: &'static str, column: &'static str, level: Level, kind: ColumnKind) -> Dedicated {
    Dedicated { key, column, level, kind }
}

/// Every promoted attribute, in column order. `service.name` is the first
/// resource entry: it becomes `service_name`, the most used column of all.
pub const DEDICATED: &[Dedicated] = &[
    dedicated(attr::SERVICE_NAME, SERVICE_NAME, Level::Resource, ColumnKind::Label),
    dedicated("service.version", SERVICE_VERSION, Level::Resource, ColumnKind::Label),
    dedicated("service.namespace", "service_namespace", Level::Resource, ColumnKind::Label),
    dedicated("deployment.environment.name", "deployment_environment", Level::Resource, ColumnKind::Label),
    dedicated("host.name", "host_name", Level::Resource, ColumnKind::Label),
    dedicated("k8s.namespace.name", "k8s_namespace_name", Level::Resource, ColumnKind::Label),
    dedicated("k8s.pod.name", "k8s_pod_name", Level::Resource, ColumnKind::Label),
    dedicated("http.request.method", "http_method", Level::Span, ColumnKind::Label),
    dedicated("http.response.status_code", "http_status_code", Level::Span, ColumnKind::Int),
    dedicated("http.route", "http_route", Level::Span, ColumnKind::Label),
    dedicated("url.full", "url_full", Level::Span, ColumnKind::Text),
    dedicated("rpc.system", "rpc_system", Level::Span, ColumnKind::Label),
    dedicated("rpc.service", "rpc_service", Level::Span, ColumnKind::Label),
    dedicated("rpc.method", "rpc_method", Level::Span, ColumnKind::Label),
    dedicated(attr::DB_SYSTEM, "db_system", Level::Span, ColumnKind::Label),
    dedicated("db.query.text", "db_query_text", Level::Span, ColumnKind::Text),
    dedicated(attr::MESSAGING_SYSTEM, "messaging_system", Level::Span, ColumnKind::Label),
    dedicated("messaging.destination.name", "messaging_destination", Level::Span, ColumnKind::Label),
];

/// Names of the span kinds and status codes as stored, indexed by their OTLP number.
/// Span attributes the stable semantic conventions renamed: (current name,
/// an older name). Fleets send both generations for years, so the two names
/// are one attribute to every query, a dedicated column holds either, and
/// what was sent is kept exactly. A current name may have several older
/// ones (`server.port` was `net.peer.port` on clients, `net.host.port` on
/// servers).
pub const RENAMED: &[(&str, &str)] = &[
    ("http.request.method", "http.method"),
    ("http.response.status_code", "http.status_code"),
    ("url.full", "http.url"),
    ("url.scheme", "http.scheme"),
    ("server.address", "net.peer.name"),
    ("server.port", "net.peer.port"),
    ("server.port", "net.host.port"),
    ("client.address", "http.client_ip"),
    ("user_agent.original", "http.user_agent"),
    ("network.protocol.version", "http.flavor"),
    ("db.query.text", "db.statement"),
    ("db.namespace", "db.name"),
    ("messaging.destination.name", "messaging.destination"),
];

/// The current name of an older attribute name.
pub fn current_name(key: &str) -> Option<&'static str> {
    RENAMED.iter().find(|(_, old)| *old == key).map(|(current, _)| *current)
}

/// Every name of the attribute `key` names: `key` first, then its current
/// name or its older ones.
pub fn attribute_names(key: &str) -> Vec<&str> {
    let mut names = vec![key];
    match current_name(key) {
        Some(current) => names.push(current),
        None => names.extend(RENAMED.iter().filter(|(current, _)| *current == key).map(|(_, old)| *old)),
    }
    names
}

/// The dedicated column of attribute `key` at `level`, under either name.
pub fn dedicated_column(key: &str, level: Level) -> Option<&'static Dedicated> {
    let current = current_name(key).unwrap_or(key);
    DEDICATED.iter().find(|d| d.level == level && d.key == current)
}

pub const SPAN_KINDS: [&str; 6] = ["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"];
pub const STATUS_CODES: [&str; 3] = ["UNSET", "OK", "ERROR"];

/// Type tags of non-string attribute values in the `*_attribute_types` maps.
/// String values (the vast majority) have no entry, so they cost nothing.
pub mod value_type {
    pub const INT: &str = "int";
    pub const DOUBLE: &str = "double";
    pub const BOOL: &str = "bool";
    pub const BYTES: &str = "bytes";
    pub const ARRAY: &str = "array";
    pub const KVLIST: &str = "kvlist";
    pub const EMPTY: &str = "empty";
    /// Not a value's type: under a dedicated column's key, it says the
    /// column holds a value sent under an older name (which the map keeps),
    /// not one sent under this key.
    pub const DERIVED: &str = "derived";
}

/// The span file sort order, as declared in every Parquet footer. Service
/// first keeps searches and latency series to one service's pages; trace
/// id next keeps a trace's spans of one service together, so a lookup reads
/// a page or so per service and the ids compress. Measured against
/// service-first and trace-first orders in `cargo bench --bench layout`
/// (BENCHMARKS.md). The span id at the end makes it total, so repeats of a
/// span sit side by side.
pub const SORT_COLUMNS: [&str; 4] = [SERVICE_NAME, TRACE_ID, START_TIME, SPAN_ID];

/// Columns of the trace index: one row per trace and service (a
/// "fragment"); the `trace_index` view sums a trace's fragments into one row.
pub mod trace_index {
    pub const TRACE_ID: &str = "trace_id";
    pub const SERVICE_NAME: &str = "service_name";
    pub const START_TIME: &str = "start_time";
    pub const END_TIME: &str = "end_time";
    pub const SPAN_COUNT: &str = "span_count";
    pub const ERROR_COUNT: &str = "error_count";
    /// The root span's name, in the fragment of the service that has it.
    pub const ROOT_SPAN_NAME: &str = "root_span_name";
    /// Fragment files are sorted by these, as their span files are.
    pub const SORT_COLUMNS: [&str; 2] = [SERVICE_NAME, TRACE_ID];
}

/// Columns of trace-duration files: one row per trace of an hour.
pub mod trace_durations {
    pub const TRACE_ID: &str = "trace_id";
    /// The trace's earliest span start.
    pub const START_TIME: &str = "start_time";
    pub const DURATION_NS: &str = "duration_ns";
    /// Each run of a file (`trace_durations.rs`) is sorted by these.
    pub const SORT_COLUMNS: [&str; 2] = [DURATION_NS, TRACE_ID];
}

pub fn label_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

pub fn enum_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8))
}

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

pub fn id_type(len: usize) -> DataType {
    DataType::FixedSizeBinary(len as i32)
}

/// `Map<Utf8, Utf8>` with Parquet's canonical `key_value` / `key` / `value` names.
pub fn attributes_type() -> DataType {
    DataType::Map(Arc::new(attributes_entries_field()), false)
}

pub fn attributes_entries_field() -> Field {
    Field::new(
        "key_value",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, true),
        ])),
        false,
    )
}

pub fn event_fields() -> Fields {
    Fields::from(vec![
        Field::new(nested::TIME, timestamp_type(), false),
        Field::new(nested::NAME, DataType::Utf8, false),
        Field::new(nested::ATTRIBUTES, attributes_type(), false),
        Field::new(nested::ATTRIBUTE_TYPES, attributes_type(), false),
        Field::new(nested::DROPPED_ATTRIBUTES_COUNT, DataType::UInt32, false),
    ])
}

pub fn link_fields() -> Fields {
    Fields::from(vec![
        Field::new(nested::TRACE_ID, id_type(16), false),
        Field::new(nested::SPAN_ID, id_type(8), false),
        Field::new(nested::TRACE_STATE, DataType::Utf8, true),
        Field::new(nested::FLAGS, DataType::UInt32, false),
        Field::new(nested::ATTRIBUTES, attributes_type(), false),
        Field::new(nested::ATTRIBUTE_TYPES, attributes_type(), false),
        Field::new(nested::DROPPED_ATTRIBUTES_COUNT, DataType::UInt32, false),
    ])
}

pub fn list_item_field(fields: Fields) -> Field {
    Field::new("item", DataType::Struct(fields), false)
}

fn dedicated_field(d: &Dedicated) -> Field {
    let data_type = match d.kind {
        ColumnKind::Label => label_type(),
        ColumnKind::Text => DataType::Utf8,
        ColumnKind::Int => DataType::Int64,
    };
    Field::new(d.column, data_type, true)
}

/// Dedicated columns of `level` other than `service_name`, which leads the table.
fn dedicated_fields(level: Level) -> impl Iterator<Item = Field> {
    DEDICATED.iter().filter(move |d| d.level == level && d.column != SERVICE_NAME).map(dedicated_field)
}

static SPAN_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new(TRACE_ID, id_type(16), false),
        Field::new(SPAN_ID, id_type(8), false),
        Field::new(PARENT_SPAN_ID, id_type(8), true),
        Field::new(TRACE_STATE, DataType::Utf8, true),
        Field::new(FLAGS, DataType::UInt32, false),
        Field::new(SERVICE_NAME, label_type(), true),
        Field::new(SPAN_NAME, label_type(), false),
        Field::new(SPAN_KIND, enum_type(), false),
        Field::new(START_TIME, timestamp_type(), false),
        Field::new(DURATION_NS, DataType::Int64, false),
        Field::new(STATUS_CODE, enum_type(), false),
        Field::new(STATUS_MESSAGE, DataType::Utf8, true),
        Field::new(REMOTE_SERVICE_NAME, label_type(), true),
    ];
    fields.extend(dedicated_fields(Level::Span));
    fields.extend([
        Field::new(SPAN_ATTRIBUTES, attributes_type(), false),
        Field::new(SPAN_ATTRIBUTE_TYPES, attributes_type(), false),
        Field::new(EVENTS, DataType::List(Arc::new(list_item_field(event_fields()))), false),
        Field::new(LINKS, DataType::List(Arc::new(list_item_field(link_fields()))), false),
        Field::new(DROPPED_ATTRIBUTES_COUNT, DataType::UInt32, false),
        Field::new(DROPPED_EVENTS_COUNT, DataType::UInt32, false),
        Field::new(DROPPED_LINKS_COUNT, DataType::UInt32, false),
    ]);
    fields.extend(dedicated_fields(Level::Resource));
    fields.extend([
        Field::new(RESOURCE_ATTRIBUTES, attributes_type(), false),
        Field::new(RESOURCE_ATTRIBUTE_TYPES, attributes_type(), false),
        Field::new(RESOURCE_DROPPED_ATTRIBUTES_COUNT, DataType::UInt32, false),
        Field::new(RESOURCE_SCHEMA_URL, label_type(), true),
        Field::new(SCOPE_NAME, label_type(), true),
        Field::new(SCOPE_VERSION, label_type(), true),
        Field::new(SCOPE_ATTRIBUTES, attributes_type(), false),
        Field::new(SCOPE_ATTRIBUTE_TYPES, attributes_type(), false),
        Field::new(SCOPE_DROPPED_ATTRIBUTES_COUNT, DataType::UInt32, false),
        Field::new(SCOPE_SCHEMA_URL, label_type(), true),
    ]);
    Arc::new(Schema::new(fields))
});

/// The schema of the `spans` table and of every span file.
pub fn span_schema() -> SchemaRef {
    Arc::clone(&SPAN_SCHEMA)
}

static TRACE_INDEX_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use trace_index::*;
    Arc::new(Schema::new(vec![
        Field::new(TRACE_ID, id_type(16), false),
        Field::new(SERVICE_NAME, label_type(), true),
        Field::new(START_TIME, timestamp_type(), false),
        Field::new(END_TIME, timestamp_type(), false),
        Field::new(SPAN_COUNT, DataType::Int64, false),
        Field::new(ERROR_COUNT, DataType::Int64, false),
        Field::new(ROOT_SPAN_NAME, label_type(), true),
    ]))
});

/// The schema of trace-index files.
pub fn trace_index_schema() -> SchemaRef {
    Arc::clone(&TRACE_INDEX_SCHEMA)
}

static TRACE_DURATIONS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use trace_durations::*;
    Arc::new(Schema::new(vec![
        Field::new(TRACE_ID, id_type(16), false),
        Field::new(START_TIME, timestamp_type(), false),
        Field::new(DURATION_NS, DataType::Int64, false),
    ]))
});

/// The schema of trace-duration files.
pub fn trace_durations_schema() -> SchemaRef {
    Arc::clone(&TRACE_DURATIONS_SCHEMA)
}

static EDGES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use edges::*;
    Arc::new(Schema::new(vec![
        Field::new(ROW, DataType::Int8, false),
        Field::new(TIME, timestamp_type(), false),
        Field::new(PARENT, label_type(), true),
        Field::new(CHILD, label_type(), true),
        Field::new(BUCKET, DataType::Int32, false),
        Field::new(CALLS, DataType::Int64, false),
        Field::new(ERRORS, DataType::Int64, false),
        Field::new(MIN_NS, DataType::Int64, false),
        Field::new(MAX_NS, DataType::Int64, false),
        Field::new(TRACE_ID, id_type(16), true),
        Field::new(SPAN_ID, id_type(8), true),
        Field::new(PARENT_SPAN_ID, id_type(8), true),
        Field::new(LEAF, DataType::Boolean, false),
        Field::new(PRODUCER, DataType::Boolean, false),
        Field::new(ARRIVED, timestamp_type(), false),
    ]))
});

/// The schema of dependency edge files.
pub fn edges_schema() -> SchemaRef {
    Arc::clone(&EDGES_SCHEMA)
}

/// Casts a batch's columns to `schema`'s types (a reader may hand back plain
/// or view strings where the schema says dictionary); columns are found by
/// name, so a file of an older version with fewer columns fails here loudly.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema_ref() == schema {
        return Ok(batch.clone());
    }
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch
                .column_by_name(field.name())
                .ok_or_else(|| ArrowError::SchemaError(format!("missing column {}", field.name())))?;
            if column.data_type() == field.data_type() { Ok(column.clone()) } else { cast(column, field.data_type()) }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

/// The dedicated attribute for `key` at `level`, if it has one.
pub fn dedicated_for(level: Level, key: &str) -> Option<&'static Dedicated> {
    DEDICATED.iter().find(|d| d.level == level && d.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_name_is_unique() {
        let schema = span_schema();
        let mut names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }
}
