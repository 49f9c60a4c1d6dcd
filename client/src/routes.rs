//! The `/api/v1` operations, one per client method; the test suite checks
//! them against the server's OpenAPI document, so an operation the server
//! adds without a client method fails the build's tests.

use reqwest::Method;

/// One `/api/v1` operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Search,
    Services,
    Operations,
    TagKeys,
    TagValues,
    Dependencies,
    Versions,
    CompareVersions,
    VersionCallers,
    VersionCallees,
    Retries,
    Latency,
    LatencyHistogram,
    Traces,
    Trace,
    Sql,
}

impl Route {
    pub const ALL: [Route; 16] = [
        Self::Search,
        Self::Services,
        Self::Operations,
        Self::TagKeys,
        Self::TagValues,
        Self::Dependencies,
        Self::Versions,
        Self::CompareVersions,
        Self::VersionCallers,
        Self::VersionCallees,
        Self::Retries,
        Self::Latency,
        Self::LatencyHistogram,
        Self::Traces,
        Self::Trace,
        Self::Sql,
    ];

    /// The path as the OpenAPI document writes it, `{name}` for a path
    /// parameter.
    pub fn template(self) -> &'static str {
        match self {
            Self::Search => "/api/v1/search",
            Self::Services => "/api/v1/services",
            Self::Operations => "/api/v1/services/{service}/operations",
            Self::TagKeys => "/api/v1/tags",
            Self::TagValues => "/api/v1/tags/{key}/values",
            Self::Dependencies => "/api/v1/dependencies",
            Self::Versions => "/api/v1/versions",
            Self::CompareVersions => "/api/v1/versions/compare",
            Self::VersionCallers => "/api/v1/versions/callers",
            Self::VersionCallees => "/api/v1/versions/callees",
            Self::Retries => "/api/v1/retries",
            Self::Latency => "/api/v1/latency",
            Self::LatencyHistogram => "/api/v1/latency/histogram",
            Self::Traces => "/api/v1/traces",
            Self::Trace => "/api/v1/traces/{trace_id}",
            Self::Sql => "/api/v1/sql",
        }
    }

    pub fn method(self) -> Method {
        match self {
            Self::Sql => Method::POST,
            _ => Method::GET,
        }
    }

    /// The path with its parameter, percent-encoded, in place of `{...}`.
    pub(crate) fn path(self, parameter: Option<&str>) -> String {
        let template = self.template();
        match (template.find('{'), parameter) {
            (Some(open), Some(value)) => {
                let close = open + template[open..].find('}').expect("a closed path parameter");
                format!("{}{}{}", &template[..open], encode_segment(value), &template[close + 1..])
            }
            _ => template.to_owned(),
        }
    }
}

/// Percent-encodes what may not stand in a path segment as it is.
fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_encoded_in_place() {
        assert_eq!(Route::Operations.path(Some("web shop/v2")), "/api/v1/services/web%20shop%2Fv2/operations");
        assert_eq!(Route::Trace.path(Some("ab")), "/api/v1/traces/ab");
        assert_eq!(Route::Search.path(None), "/api/v1/search");
    }
}
