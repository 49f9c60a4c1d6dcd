//! Object-store paths as small types that format and parse back.
//!
//! ```text
//! {tenant}/spans/date=YYYY-MM-DD/hour=HH/{uuid v7}.parquet
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

impl TenantId {
    pub const DEFAULT: &'static str = "default";

    pub fn new(name: &str) -> Result<Self, InvalidTenant> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid { Ok(Self(name.to_owned())) } else { Err(InvalidTenant(name.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where this tenant's span files live.
    pub fn spans_prefix(&self) -> Path {
        Path::from_iter([self.0.as_str(), SPANS])
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

const SPANS: &str = "spans";
const PARQUET: &str = ".parquet";

/// The path of one span file: its tenant, the hour its spans start in, its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanFilePath {
    pub tenant: TenantId,
    /// Start of the hour, UTC.
    pub hour: DateTime<Utc>,
    pub id: Uuid,
}

impl SpanFilePath {
    pub fn new(tenant: TenantId, hour: DateTime<Utc>) -> Self {
        Self { tenant, hour: truncate_to_hour(hour), id: Uuid::now_v7() }
    }

    pub fn to_path(&self) -> Path {
        Path::from_iter([
            self.tenant.as_str(),
            SPANS,
            &format!("date={}", self.hour.format("%Y-%m-%d")),
            &format!("hour={:02}", self.hour.hour()),
            &format!("{}{PARQUET}", self.id),
        ])
    }

    pub fn parse(path: &Path) -> Option<Self> {
        let parts: Vec<_> = path.parts().collect();
        let [tenant, spans, date, hour, file] = parts.as_slice() else { return None };
        if spans.as_ref() != SPANS {
            return None;
        }
        let date = NaiveDate::parse_from_str(date.as_ref().strip_prefix("date=")?, "%Y-%m-%d").ok()?;
        let hour: u32 = hour.as_ref().strip_prefix("hour=")?.parse().ok()?;
        let hour = Utc.from_utc_datetime(&date.and_hms_opt(hour, 0, 0)?);
        let id = Uuid::parse_str(file.as_ref().strip_suffix(PARQUET)?).ok()?;
        Some(Self { tenant: TenantId::new(tenant.as_ref()).ok()?, hour, id })
    }
}

fn truncate_to_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), t.day(), t.hour(), 0, 0).single().unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_file_paths_format_and_parse_back() {
        let hour = Utc.with_ymd_and_hms(2026, 11, 25, 7, 42, 13).unwrap();
        let path = SpanFilePath::new(TenantId::new("acme").unwrap(), hour);
        let text = path.to_path().to_string();
        assert!(text.starts_with("acme/spans/date=2026-11-25/hour=07/"), "{text}");
        assert!(text.ends_with(".parquet"));
        assert_eq!(SpanFilePath::parse(&path.to_path()), Some(path));
        assert_eq!(SpanFilePath::parse(&Path::from("acme/spans/date=x/hour=07/a.parquet")), None);
    }

    #[test]
    fn tenants_are_path_safe() {
        assert!(TenantId::new("team-a_1").is_ok());
        for bad in ["", "a/b", "..", "a b", &"x".repeat(65)] {
            assert!(TenantId::new(bad).is_err(), "{bad}");
        }
    }
}
