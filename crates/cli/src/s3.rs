//! `s3://` inputs and outputs: one client for the run, made when first needed.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use sparkify_s3::{Object, S3, S3Options, S3Url};

use crate::etl::{Failure, SOURCE_OR_SINK, USAGE};

/// The run's S3 client, connected on first use.
#[derive(Debug)]
pub struct LazyS3 {
    opts: S3Options,
    cell: OnceLock<Arc<S3>>,
}

impl LazyS3 {
    pub fn new(opts: S3Options) -> Self {
        LazyS3 {
            opts,
            cell: OnceLock::new(),
        }
    }

    pub fn get(&self) -> Result<Arc<S3>, Failure> {
        if let Some(s3) = self.cell.get() {
            return Ok(Arc::clone(s3));
        }
        let s3 = Arc::new(S3::connect(&self.opts).map_err(|e| Failure {
            code: SOURCE_OR_SINK,
            error: e.into(),
        })?);
        Ok(Arc::clone(self.cell.get_or_init(|| s3)))
    }
}

/// Parses an `s3://` URL given on the command line.
pub fn url(spec: &str) -> Result<S3Url, Failure> {
    S3Url::parse(spec).map_err(|e| Failure {
        code: USAGE,
        error: e.into(),
    })
}

/// What the listings of some `s3://` prefixes hold.
#[derive(Debug, Default)]
pub struct Listing {
    /// JSON objects by name, in path order.
    pub objects: Vec<Object>,
    /// Objects that are not JSON by name, and are not read.
    pub skipped: usize,
}

/// Lists every prefix in `specs`. A missing bucket or an empty prefix is an error.
pub fn list(s3: &S3, specs: &[String]) -> Result<Listing, Failure> {
    let mut out = Listing::default();
    for spec in specs {
        let found = s3.list(&url(spec)?).map_err(|e| Failure {
            code: SOURCE_OR_SINK,
            error: e.into(),
        })?;
        for o in found {
            if sparkify_core::source::is_json_name(Path::new(&o.url.key)) {
                out.objects.push(o);
            } else {
                out.skipped += 1;
            }
        }
    }
    out.objects.dedup();
    Ok(out)
}
