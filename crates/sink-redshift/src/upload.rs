//! The Parquet upload for Redshift: the core's parsed staging tables, uploaded as Parquet parts
//! under an S3 prefix with a manifest, for `COPY … FORMAT AS PARQUET MANIFEST`. Redshift then
//! loads rows sparkify has already checked (every bad record is in `load_errors`, none is
//! dropped by COPY), and loads the parts in parallel, one per slice.
//!
//! ```text
//! PREFIX/staging_events.manifest
//! PREFIX/staging_events/part-00000.parquet … part-0000N.parquet
//! PREFIX/staging_songs.manifest
//! PREFIX/staging_songs/part-00000.parquet …
//! ```

use std::collections::HashSet;

use arrow::array::RecordBatch;
use rayon::prelude::*;
use sparkify_core::table::TableDef;
use sparkify_parquet::{Compression, for_parquet, parquet_bytes};
use sparkify_s3::{Body, S3, S3Url};

use crate::Result;

/// Where the manifest of `table`'s parts goes.
pub fn manifest_url(prefix: &S3Url, table: &TableDef) -> S3Url {
    prefix.join(&format!("{}.manifest", table.name))
}

/// How many parts `batch` is cut in: about one per `part_bytes` of Arrow memory, rounded up
/// to a multiple of `slices` when there is more than one (so every slice gets the same share
/// of the COPY), and never more parts than rows.
pub fn part_count(batch: &RecordBatch, part_bytes: usize, slices: usize) -> usize {
    let by_size = batch.get_array_memory_size().div_ceil(part_bytes.max(1));
    let n = if by_size <= 1 {
        1
    } else {
        by_size.div_ceil(slices.max(1)) * slices.max(1)
    };
    n.clamp(1, batch.num_rows().max(1))
}

/// The manifest of `parts` (URL and size in bytes): every entry mandatory, with the
/// `meta.content_length` COPY needs for Parquet.
pub fn manifest(parts: &[(S3Url, u64)]) -> String {
    let entries: Vec<serde_json::Value> = parts
        .iter()
        .map(|(url, len)| {
            serde_json::json!({
                "url": url.to_string(),
                "mandatory": true,
                "meta": { "content_length": len },
            })
        })
        .collect();
    let doc = serde_json::json!({ "entries": entries });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// What [`upload_table`] uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub manifest: S3Url,
    /// Each part and its size in bytes.
    pub parts: Vec<(S3Url, u64)>,
    pub rows: u64,
}

/// How the Parquet upload cuts and uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOptions {
    /// Target size of a part, in bytes of Arrow memory (Parquet parts come out smaller).
    pub part_bytes: usize,
    /// The cluster's slices: the part count is a multiple of it.
    pub slices: usize,
    /// Uploads at a time.
    pub concurrency: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            part_bytes: 128 << 20,
            slices: 4,
            concurrency: 16,
        }
    }
}

/// Uploads `batch` as `table`'s Parquet parts under `prefix`, then its manifest, then deletes
/// parts a previous run left that the manifest no longer names.
pub fn upload_table(
    s3: &S3,
    prefix: &S3Url,
    table: &TableDef,
    batch: &RecordBatch,
    opts: &UploadOptions,
) -> Result<Uploaded> {
    let batch = for_parquet(batch)?;
    let n = part_count(&batch, opts.part_bytes, opts.slices);
    let per = batch.num_rows().div_ceil(n).max(1);
    let folder = prefix.join(table.name);
    let parts: Vec<(S3Url, Vec<u8>)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let start = (i * per).min(batch.num_rows());
            let len = per.min(batch.num_rows() - start);
            let bytes = parquet_bytes(table.name, &batch.slice(start, len), Compression::Snappy)?;
            Ok((folder.join(&format!("part-{i:05}.parquet")), bytes))
        })
        .collect::<Result<_>>()?;
    let sizes: Vec<(S3Url, u64)> = parts
        .iter()
        .map(|(url, bytes)| (url.clone(), bytes.len() as u64))
        .collect();
    s3.put_many(
        parts
            .into_iter()
            .map(|(url, bytes)| (Body::Bytes(bytes), url))
            .collect(),
        opts.concurrency,
    )?;
    let manifest_url = manifest_url(prefix, table);
    s3.put(&manifest_url, manifest(&sizes).into_bytes())?;
    let named: HashSet<&str> = sizes.iter().map(|(u, _)| u.key.as_str()).collect();
    s3.delete_stale(&folder.join(""), &named)?;
    Ok(Uploaded {
        manifest: manifest_url,
        parts: sizes,
        rows: batch.num_rows() as u64,
    })
}
