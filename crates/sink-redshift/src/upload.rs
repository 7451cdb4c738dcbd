//! The Parquet upload for Redshift: the core's parsed staging tables, uploaded as Parquet parts
//! under an S3 prefix with a manifest, for `COPY … FORMAT AS PARQUET MANIFEST`. Redshift then
//! loads rows sparkify has already checked (every bad record is in `load_errors`, none is
//! dropped by COPY), and loads the parts in parallel, one per slice.
//!
//! A load writes under a folder of its own (`FOLDER` = `UPLOAD_PREFIX/load-<run>`, see
//! [`crate::RedshiftCopy::for_load`]), deleted once the load has committed or failed:
//!
//! ```text
//! FOLDER/staging_events.manifest
//! FOLDER/staging_events/part-00000.parquet … part-0000N.parquet
//! FOLDER/staging_songs.manifest
//! FOLDER/staging_songs/part-00000.parquet …
//! ```

use std::collections::HashSet;

use arrow::array::RecordBatch;
use rayon::prelude::*;
use sparkify_core::sql::Widths;
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
    /// The longest value of each text column, in bytes.
    pub widths: Widths,
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
    table: &'static TableDef,
    batch: &RecordBatch,
    opts: &UploadOptions,
) -> Result<Uploaded> {
    let mut uploader = Uploader::new(s3, prefix, table, opts);
    uploader.push(vec![batch.clone()])?;
    uploader.finish()
}

/// A table uploaded as its rows come: they are gathered until they pass
/// [`UploadOptions::part_bytes`] of Arrow memory, then cut into parts (a multiple of the
/// slices, [`part_count`]), encoded in parallel and uploaded; [`Uploader::finish`] uploads
/// the rest, then the manifest. Memory holds one such chunk at most, whatever the table's
/// size. A table that never fills a chunk is one part.
#[derive(Debug)]
pub struct Uploader<'a> {
    s3: &'a S3,
    folder: S3Url,
    prefix: &'a S3Url,
    table: &'static TableDef,
    opts: &'a UploadOptions,
    gathered: Vec<RecordBatch>,
    bytes: usize,
    parts: Vec<(S3Url, u64)>,
    rows: u64,
    widths: Widths,
}

impl<'a> Uploader<'a> {
    pub fn new(
        s3: &'a S3,
        prefix: &'a S3Url,
        table: &'static TableDef,
        opts: &'a UploadOptions,
    ) -> Self {
        Uploader {
            s3,
            folder: prefix.join(table.name),
            prefix,
            table,
            opts,
            gathered: Vec::new(),
            bytes: 0,
            parts: Vec::new(),
            rows: 0,
            widths: Widths::default(),
        }
    }

    /// Takes `batches` (of the table), uploading a chunk once one is full.
    pub fn push(&mut self, batches: Vec<RecordBatch>) -> Result<()> {
        for batch in batches.into_iter().filter(|b| b.num_rows() > 0) {
            self.widths.observe(self.table, &batch);
            // The rows' own share of their buffers: a slice of a batch counts its rows only.
            self.bytes += batch
                .columns()
                .iter()
                .map(|c| c.to_data().get_slice_memory_size())
                .sum::<Result<usize, _>>()
                .map_err(sparkify_parquet::Error::from)?;
            self.gathered.push(batch);
        }
        if self.bytes >= self.opts.part_bytes {
            self.upload(false)?;
        }
        Ok(())
    }

    /// Uploads what is gathered, in a multiple of the slices (`last` of a table that filled
    /// no chunk: as [`part_count`] says).
    fn upload(&mut self, last: bool) -> Result<()> {
        let schema = self.table.schema();
        let whole = arrow::compute::concat_batches(&schema, &self.gathered)
            .map_err(sparkify_parquet::Error::from)?;
        let batch = for_parquet(&whole)?;
        self.gathered.clear();
        self.bytes = 0;
        let slices = self.opts.slices.max(1);
        let mut n = part_count(&batch, self.opts.part_bytes, slices);
        if !(last && self.parts.is_empty()) {
            n = n.div_ceil(slices) * slices;
        }
        let n = n.clamp(1, batch.num_rows().max(1));
        let per = batch.num_rows().div_ceil(n).max(1);
        let first = self.parts.len();
        let (table, folder) = (self.table.name, &self.folder);
        let parts: Vec<(S3Url, Vec<u8>)> = (0..n)
            .into_par_iter()
            .map(|i| {
                let start = (i * per).min(batch.num_rows());
                let len = per.min(batch.num_rows() - start);
                let bytes = parquet_bytes(table, &batch.slice(start, len), Compression::Snappy)?;
                Ok((
                    folder.join(&format!("part-{:05}.parquet", first + i)),
                    bytes,
                ))
            })
            .collect::<Result<_>>()?;
        self.parts.extend(
            parts
                .iter()
                .map(|(url, bytes)| (url.clone(), bytes.len() as u64)),
        );
        self.rows += batch.num_rows() as u64;
        self.s3.put_many(
            parts
                .into_iter()
                .map(|(url, bytes)| (Body::Bytes(bytes), url))
                .collect(),
            self.opts.concurrency,
        )?;
        Ok(())
    }

    /// Uploads the rest and the manifest, then deletes the parts a previous run left that
    /// the manifest does not name.
    pub fn finish(mut self) -> Result<Uploaded> {
        if !self.gathered.is_empty() || self.parts.is_empty() {
            self.upload(true)?;
        }
        let manifest_url = manifest_url(self.prefix, self.table);
        self.s3
            .put(&manifest_url, manifest(&self.parts).into_bytes())?;
        let named: HashSet<&str> = self.parts.iter().map(|(u, _)| u.key.as_str()).collect();
        self.s3.delete_stale(&self.folder.join(""), &named)?;
        Ok(Uploaded {
            manifest: manifest_url,
            parts: self.parts,
            rows: self.rows,
            widths: self.widths,
        })
    }
}
