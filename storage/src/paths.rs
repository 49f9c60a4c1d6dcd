//! Object-store paths as small types that format and parse back.
//!
//! ```text
//! {tenant}/spans/date=YYYY-MM-DD/hour=HH/{uuid v7}.parquet         span files
//! {tenant}/trace_index/date=YYYY-MM-DD/hour=HH/{uuid v7}.parquet   trace-index files
//! {tenant}/catalog/{version:020}.json                             manifests
//! {tenant}/catalog/_latest                                        newest version (a hint)
//! {tenant}/edges/date=YYYY-MM-DD/hour=HH/{uuid v7}.parquet         dependency edge files
//! ```
//!
//! The Hive-style `date=` / `hour=` segments let DuckDB, Spark or
//! datafusion-cli read the files directly; the time-ordered UUID keeps a
//! listing in write order.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use object_store::path::Path;
use thiserror::Error;
use uuid::Uuid;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("tenant {0:?} is not valid: use 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'")]
pub struct InvalidTenant(pub String);

/// A tenant: the first segment of every path it owns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(String);

/// The header (HTTP) or metadata key (gRPC) that names the tenant, as in
/// Grafana Tempo, Loki and Mimir.
pub const TENANT_HEADER: &str = "x-scope-orgid";

impl TenantId {
    pub const DEFAULT: &'static str = "default";

    /// The tenant a request names in [`TENANT_HEADER`]; `default` when it names none.
    pub fn from_header(value: Option<&[u8]>) -> Result<Self, InvalidTenant> {
        match value {
            None => Ok(Self::default()),
            Some(bytes) => {
                let text =
                    std::str::from_utf8(bytes).map_err(|_| InvalidTenant(String::from_utf8_lossy(bytes).into()))?;
                if text.trim().is_empty() { Ok(Self::default()) } else { Self::new(text.trim()) }
            }
        }
    }

    pub fn new(name: &str) -> Result<Self, InvalidTenant> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid { Ok(Self(name.to_owned())) } else { Err(InvalidTenant(name.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where this tenant's manifests live.
    pub fn catalog_prefix(&self) -> Path {
        Path::from_iter([self.0.as_str(), CATALOG])
    }

    pub fn manifest_path(&self, version: u64) -> Path {
        Path::from_iter([self.0.as_str(), CATALOG, &format!("{version:020}.json")])
    }

    /// The version of a manifest path (`{version:020}.json`), or of any
    /// object numbered the same way (lease terms).
    pub fn version_of(path: &Path) -> Option<u64> {
        path.filename()?.strip_suffix(".json")?.parse().ok()
    }

    pub fn latest_manifest_hint(&self) -> Path {
        Path::from_iter([self.0.as_str(), CATALOG, "_latest"])
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const CATALOG: &str = "catalog";
const PARQUET: &str = ".parquet";

/// What a data file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Rows of the span table.
    Spans,
    /// Per-trace, per-service summaries: the trace index.
    TraceIndex,
    /// Dependency calls and the open ends of calls (`edges.rs`).
    Edges,
    /// Every trace of a finished hour with its duration, in sorted runs
    /// (`trace_durations.rs`).
    TraceDurations,
}

impl FileKind {
    fn dir(self) -> &'static str {
        match self {
            Self::Spans => "spans",
            Self::TraceIndex => "trace_index",
            Self::Edges => "edges",
            Self::TraceDurations => "trace_durations",
        }
    }

    fn from_dir(dir: &str) -> Option<Self> {
        [Self::Spans, Self::TraceIndex, Self::Edges, Self::TraceDurations].into_iter().find(|k| k.dir() == dir)
    }
}

/// The path of one data file: its tenant, kind, the hour its spans start in, its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFilePath {
    pub tenant: TenantId,
    pub kind: FileKind,
    /// Start of the hour, UTC.
    pub hour: DateTime<Utc>,
    pub id: Uuid,
}

impl DataFilePath {
    pub fn new(tenant: TenantId, kind: FileKind, hour: DateTime<Utc>) -> Self {
        Self { tenant, kind, hour: truncate_to_hour(hour), id: Uuid::now_v7() }
    }

    /// The paths of a span file and of its fragment file: one id, two kinds.
    pub fn pair(tenant: TenantId, hour: DateTime<Utc>) -> (Self, Self) {
        let spans = Self::new(tenant, FileKind::Spans, hour);
        let fragments = Self { kind: FileKind::TraceIndex, ..spans.clone() };
        (spans, fragments)
    }

    pub fn to_path(&self) -> Path {
        Path::from_iter([
            self.tenant.as_str(),
            self.kind.dir(),
            &format!("date={}", self.hour.format("%Y-%m-%d")),
            &format!("hour={:02}", self.hour.hour()),
            &format!("{}{PARQUET}", self.id),
        ])
    }

    pub fn parse(path: &Path) -> Option<Self> {
        let parts: Vec<_> = path.parts().collect();
        let [tenant, kind, date, hour, file] = parts.as_slice() else { return None };
        let kind = FileKind::from_dir(kind.as_ref())?;
        let date = NaiveDate::parse_from_str(date.as_ref().strip_prefix("date=")?, "%Y-%m-%d").ok()?;
        let hour: u32 = hour.as_ref().strip_prefix("hour=")?.parse().ok()?;
        let hour = Utc.from_utc_datetime(&date.and_hms_opt(hour, 0, 0)?);
        let id = Uuid::parse_str(file.as_ref().strip_suffix(PARQUET)?).ok()?;
        Some(Self { tenant: TenantId::new(tenant.as_ref()).ok()?, kind, hour, id })
    }
}

fn truncate_to_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), t.day(), t.hour(), 0, 0).single().unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_file_paths_format_and_parse_back() {
        let hour = Utc.with_ymd_and_hms(2026, 11, 25, 7, 42, 13).unwrap();
        for (kind, dir) in
            [(FileKind::Spans, "spans"), (FileKind::TraceIndex, "trace_index"), (FileKind::Edges, "edges")]
        {
            let path = DataFilePath::new(TenantId::new("acme").unwrap(), kind, hour);
            let text = path.to_path().to_string();
            assert!(text.starts_with(&format!("acme/{dir}/date=2026-11-25/hour=07/")), "{text}");
            assert!(text.ends_with(".parquet"));
            assert_eq!(DataFilePath::parse(&path.to_path()), Some(path));
        }
        assert_eq!(DataFilePath::parse(&Path::from("acme/spans/date=x/hour=07/a.parquet")), None);
        assert_eq!(DataFilePath::parse(&Path::from("acme/other/date=2026-11-25/hour=07/a.parquet")), None);
    }

    #[test]
    fn tenants_are_path_safe() {
        assert!(TenantId::new("team-a_1").is_ok());
        for bad in ["", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(TenantId::new(bad).is_err(), "{bad}");
        }
    }
}
