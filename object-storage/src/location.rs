//! Where a job's checkpoints live, as the user writes it: a local path, `file://` URL, or an
//! object store URL (`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`,
//! `abfs[s]://container@account.dfs.core.windows.net/prefix`).
//!
//! Parsing is pure: nothing is contacted here, so a typo is reported before any I/O.

use std::fmt;
use std::path::PathBuf;
use weir_engine::{Error, Result};

/// The kind of object store a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Amazon S3 or an S3-compatible server (`s3://`, `s3a://`).
    S3,
    /// Google Cloud Storage (`gs://`).
    Gcs,
    /// Azure Blob Storage / ADLS Gen2 (`az://`, `azure://`, `abfs://`, `abfss://`).
    Azure,
}

/// A parsed checkpoint storage location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on a local or mounted file system.
    Local(PathBuf),
    /// A prefix in an object store.
    Object {
        /// Which object store.
        provider: Provider,
        /// The URL up to the bucket (or container), as the provider's builder takes it.
        bucket_url: String,
        /// The bucket or container name.
        bucket: String,
        /// The key prefix under which the job's checkpoints live (no leading or trailing `/`;
        /// empty for the bucket's root).
        prefix: String,
    },
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Object { bucket_url, prefix, .. } if prefix.is_empty() => write!(f, "{bucket_url}"),
            Location::Object { bucket_url, prefix, .. } => write!(f, "{bucket_url}/{prefix}"),
        }
    }
}

impl Location {
    /// Parses `spec`: a URL with a scheme Weir knows, or a local path.
    ///
    /// # Errors
    /// `Config` for an unknown scheme, a URL without a bucket, or a prefix with empty or
    /// relative segments (`a//b`, `..`).
    pub fn parse(spec: &str) -> Result<Location> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(Error::config("checkpoint storage location is empty"));
        }
        let Some((scheme, rest)) = spec.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(spec)));
        };
        let provider = match scheme.to_ascii_lowercase().as_str() {
            "file" => return Ok(Location::Local(PathBuf::from(rest))),
            "s3" | "s3a" => Provider::S3,
            "gs" => Provider::Gcs,
            "az" | "azure" | "abfs" | "abfss" => Provider::Azure,
            other => {
                return Err(Error::config(format!(
                    "checkpoint storage {spec}: unknown scheme \"{other}\" (use a local path, file://, s3://, \
                     gs://, az:// or abfs[s]://)"
                )))
            }
        };
        let (bucket_part, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket_part.is_empty() {
            return Err(Error::config(format!(
                "checkpoint storage {spec} names no bucket: write {scheme}://<bucket>/<prefix>"
            )));
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && prefix.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
            return Err(Error::config(format!(
                "checkpoint storage {spec}: the prefix \"{prefix}\" has an empty or relative segment"
            )));
        }
        // abfs URLs name the container before '@'.
        let bucket = bucket_part.split('@').next().unwrap_or(bucket_part).to_string();
        Ok(Location::Object {
            provider,
            bucket_url: format!("{scheme}://{bucket_part}"),
            bucket,
            prefix: prefix.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_file_urls_are_local() {
        assert_eq!(Location::parse("/tmp/chk").unwrap(), Location::Local("/tmp/chk".into()));
        assert_eq!(Location::parse("rel/chk").unwrap(), Location::Local("rel/chk".into()));
        assert_eq!(
            Location::parse("file:///tmp/c").unwrap(),
            Location::Local("/tmp/c".into())
        );
    }

    #[test]
    fn object_urls_split_into_bucket_and_prefix() {
        let l = Location::parse("s3://pay-ckpt/jobs/payments/").unwrap();
        assert_eq!(
            l,
            Location::Object {
                provider: Provider::S3,
                bucket_url: "s3://pay-ckpt".into(),
                bucket: "pay-ckpt".into(),
                prefix: "jobs/payments".into(),
            }
        );
        assert_eq!(l.to_string(), "s3://pay-ckpt/jobs/payments");
        let root = Location::parse("gs://b").unwrap();
        assert!(matches!(&root, Location::Object { prefix, provider: Provider::Gcs, .. } if prefix.is_empty()));
        let abfs = Location::parse("abfss://data@acct.dfs.core.windows.net/chk").unwrap();
        assert!(matches!(&abfs, Location::Object { bucket, provider: Provider::Azure, .. } if bucket == "data"));
    }

    #[test]
    fn bad_locations_are_config_errors_naming_the_problem() {
        for (spec, says) in [
            ("", "empty"),
            ("ftp://x/y", "unknown scheme \"ftp\""),
            ("s3:///prefix", "names no bucket"),
            ("s3://b/a//c", "empty or relative segment"),
            ("s3://b/../c", "empty or relative segment"),
        ] {
            let e = Location::parse(spec).unwrap_err();
            assert_eq!(e.kind(), weir_engine::ErrorKind::Config, "{spec}");
            assert!(e.to_string().contains(says), "{spec}: {e}");
        }
    }
}
