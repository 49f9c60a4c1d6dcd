//! How numbers, times and names read on the pages.

use chrono::DateTime;
pub(crate) use spanlake_query::params::percent_encode as encode;

/// A duration in the unit that keeps it short: `850 µs`, `12.4 ms`, `3.20 s`, `2 min 05 s`.
pub fn duration(ns: i64) -> String {
    let ns = ns.max(0) as f64;
    match ns {
        n if n < 1e3 => format!("{n:.0} ns"),
        n if n < 1e6 => format!("{:.0} µs", n / 1e3),
        n if n < 1e7 => format!("{:.2} ms", n / 1e6),
        n if n < 1e9 => format!("{:.1} ms", n / 1e6),
        n if n < 60e9 => format!("{:.2} s", n / 1e9),
        n => format!("{} min {:02} s", (n / 60e9) as i64, ((n / 1e9) as i64) % 60),
    }
}

/// Milliseconds as a duration.
pub(crate) fn millis(ms: f64) -> String {
    duration((ms * 1e6) as i64)
}

/// A UTC time to the millisecond.
/// A byte count in B, kB or MB (powers of ten, as sizes on the wire are given).
pub(crate) fn bytes(n: f64) -> String {
    match n {
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n:.0} B"),
    }
}

pub(crate) fn time(unix_ns: i64) -> String {
    DateTime::from_timestamp_nanos(unix_ns).format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

/// A UTC time of day, for axes.
pub(crate) fn clock(unix_ns: i64) -> String {
    DateTime::from_timestamp_nanos(unix_ns).format("%H:%M:%S").to_string()
}

/// A stable colour per service, so one service looks the same on every page.
pub(crate) fn service_colour(service: &str) -> String {
    let hash = service.bytes().fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    format!("hsl({}, 62%, 52%)", hash % 360)
}

/// The last non-empty value of `name` among query pairs.
pub(crate) fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().rev().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str())
}

/// A query string from pairs, values escaped.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_their_unit() {
        assert_eq!(duration(850_000), "850 µs");
        assert_eq!(duration(12_400_000), "12.4 ms");
        assert_eq!(duration(3_200_000_000), "3.20 s");
        assert_eq!(duration(125_000_000_000), "2 min 05 s");
    }
}
