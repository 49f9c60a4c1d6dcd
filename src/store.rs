//! Where data files live: a local directory (the default) or an
//! S3-compatible bucket, both through the object_store crate.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;

/// `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreLocation {
    bucket: String,
    prefix: String,
}

impl FromStr for StoreLocation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = text.strip_prefix("s3://").ok_or_else(|| format!("{text:?} is not s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{text:?} names no bucket"));
        }
        Ok(Self { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() })
    }
}

/// S3 settings beyond the standard AWS_* variables, which are read too.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct S3Args {
    /// S3 endpoint, for S3-compatible servers (else AWS_ENDPOINT_URL).
    #[arg(long, env = "SPANLAKE_S3_ENDPOINT")]
    pub(crate) s3_endpoint: Option<String>,
    /// Region (else AWS_REGION).
    #[arg(long, env = "SPANLAKE_S3_REGION")]
    pub(crate) s3_region: Option<String>,
    /// Allow a plain-http endpoint (else AWS_ALLOW_HTTP).
    #[arg(long, env = "SPANLAKE_S3_ALLOW_HTTP")]
    pub(crate) s3_allow_http: bool,
}

pub(crate) fn open_store(
    location: Option<&StoreLocation>,
    data_dir: &Path,
    s3: &S3Args,
) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let Some(location) = location else {
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let local = LocalFileSystem::new_with_prefix(data_dir)
            .with_context(|| format!("cannot open {}", data_dir.display()))?;
        return Ok(Arc::new(local));
    };
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&location.bucket)
        // Catalog commits are put-if-absent (If-None-Match), which S3 and
        // the common S3-compatible servers support.
        .with_conditional_put(S3ConditionalPut::ETagMatch);
    if let Some(endpoint) = &s3.s3_endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &s3.s3_region {
        builder = builder.with_region(region);
    }
    if s3.s3_allow_http {
        builder = builder.with_allow_http(true);
    }
    let s3 = builder.build().with_context(|| format!("cannot configure S3 bucket {}", location.bucket))?;
    if location.prefix.is_empty() {
        return Ok(Arc::new(s3));
    }
    if location.prefix.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
        bail!("invalid prefix {:?}", location.prefix);
    }
    Ok(Arc::new(PrefixStore::new(s3, location.prefix.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_parse() {
        assert_eq!(
            "s3://traces/prod/eu".parse::<StoreLocation>(),
            Ok(StoreLocation { bucket: "traces".into(), prefix: "prod/eu".into() })
        );
        assert_eq!("s3://traces".parse::<StoreLocation>().unwrap().prefix, "");
        assert!("file:///tmp".parse::<StoreLocation>().is_err());
        assert!("s3:///x".parse::<StoreLocation>().is_err());
    }
}
