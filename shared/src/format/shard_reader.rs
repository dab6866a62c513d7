//! A Parquet shard opened through a read-only memory map: the footer is parsed once, then any row
//! group is decoded straight from the mapped pages (no read syscalls, no copy of the compressed
//! bytes), so the trainer's loader can decode row groups in parallel from one shared map.
//!
//! This file holds the shard reader's one `unsafe`: mapping a file (see [`map_read_only`]); the
//! project's other two are the trainer's FFI (`trainer/src/ext.rs`) and the CUDA loader
//! (`shared/src/cuda/ffi.rs`), docs/design.md.
use anyhow::Context;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use memmap2::Mmap;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use std::path::{Path, PathBuf};

/// A memory-mapped Parquet file with its parsed footer.
#[derive(Debug, Clone)]
pub struct ShardFile {
    path: PathBuf,
    /// The whole file; cloning is a reference-count increment, the map lives as long as any clone.
    bytes: Bytes,
    metadata: ArrowReaderMetadata,
}

/// Maps `file` read-only into memory.
///
/// # Safety
/// The caller must ensure that the file is not truncated or modified while the map (or any
/// [`Bytes`] made from it) is alive: a truncated file makes reads of the map fault (SIGBUS), and
/// a modified one changes bytes that Rust treats as immutable. Shards satisfy this by
/// construction: they are written under a temporary name and renamed into place
/// ([`crate::files::atomic`]), never written in place, and a rewrite renames a new file over the name,
/// leaving the mapped inode untouched.
#[allow(unsafe_code)]
unsafe fn map_read_only(file: &std::fs::File) -> std::io::Result<Mmap> {
    // SAFETY: forwarded to our caller, see `# Safety` above.
    unsafe { Mmap::map(file) }
}

impl ShardFile {
    /// Maps `path` and parses its Parquet footer. Errors name the file.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening shard {}", path.display()))?;
        let len = file
            .metadata()
            .with_context(|| format!("reading the size of {}", path.display()))?
            .len();
        anyhow::ensure!(
            len >= 12,
            "{}: not a Parquet file: expected at least 12 bytes, found {len}",
            path.display()
        );
        // SAFETY: shards are only ever written to a temporary name and renamed into place
        // (shared::files::atomic, shared::format::shard_writer), never modified or truncated in place, so the
        // mapped file stays as it is for the life of the map. See `map_read_only`'s contract.
        #[allow(unsafe_code)]
        let map = unsafe { map_read_only(&file) }
            .with_context(|| format!("memory-mapping {}", path.display()))?;
        let bytes = Bytes::from_owner(map);
        // The parquet crate may panic on some malformed footers: that is an error naming the file.
        let metadata = crate::runtime::panic::catch(
            || format!("{}: parsing the Parquet footer", path.display()),
            || ArrowReaderMetadata::load(&bytes, ArrowReaderOptions::new()),
        )?
        .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            metadata,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Arrow schema stored in the file.
    pub fn schema(&self) -> SchemaRef {
        self.metadata.schema().clone()
    }

    /// Size of the file in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn num_rows(&self) -> u64 {
        self.metadata.metadata().file_metadata().num_rows() as u64
    }

    pub fn num_row_groups(&self) -> usize {
        self.metadata.metadata().num_row_groups()
    }

    /// Rows in row group `i` (panics if `i >= num_row_groups()`).
    pub fn row_group_rows(&self, i: usize) -> u64 {
        self.metadata.metadata().row_group(i).num_rows() as u64
    }

    /// Index in the file of row group `i`'s first row (for error messages).
    pub fn first_row_of_group(&self, i: usize) -> u64 {
        (0..i.min(self.num_row_groups()))
            .map(|g| self.row_group_rows(g))
            .sum()
    }

    /// A Parquet key-value metadata entry of the file, e.g. [`crate::format::spec::META_KIND`].
    pub fn key_value(&self, key: &str) -> Option<String> {
        self.metadata
            .metadata()
            .file_metadata()
            .key_value_metadata()?
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    }

    /// Every Parquet key-value metadata entry but Arrow's own `ARROW:schema` (which a writer
    /// stores anew), in file order: what a rewrite of the shard must carry over.
    pub fn key_values(&self) -> Vec<(String, String)> {
        let kvs = self
            .metadata
            .metadata()
            .file_metadata()
            .key_value_metadata();
        kvs.into_iter()
            .flatten()
            .filter(|kv| kv.key != "ARROW:schema")
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
            .collect()
    }

    /// Decodes row group `i` from the map into one batch. Safe to call from many threads at once.
    /// A corrupt row group is an error naming the file and group, even where the parquet crate
    /// would panic on it.
    pub fn read_row_group(&self, i: usize) -> anyhow::Result<RecordBatch> {
        crate::runtime::panic::catch(
            || format!("{}: decoding row group {i}", self.path.display()),
            || self.decode_row_group(i),
        )?
    }

    fn decode_row_group(&self, i: usize) -> anyhow::Result<RecordBatch> {
        let groups = self.num_row_groups();
        anyhow::ensure!(
            i < groups,
            "{}: row group {i}: expected an index below {groups}",
            self.path.display()
        );
        let rows = self.row_group_rows(i) as usize;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
            self.bytes.clone(),
            self.metadata.clone(),
        )
        .with_row_groups(vec![i])
        .with_batch_size(rows.max(1))
        .build()
        .with_context(|| format!("{}: row group {i}", self.path.display()))?;
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}: decoding row group {i}", self.path.display()))?;
        let schema = self.schema();
        let batch = match batches.len() {
            0 => RecordBatch::new_empty(schema),
            1 => batches.into_iter().next().expect("one batch"),
            _ => arrow::compute::concat_batches(&schema, &batches)?,
        };
        anyhow::ensure!(
            batch.num_rows() == rows,
            "{}: row group {i}: expected {rows} rows, found {}",
            self.path.display(),
            batch.num_rows()
        );
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_file_that_is_not_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short.parquet");
        std::fs::write(&short, b"PAR1").unwrap();
        let err = format!("{:#}", ShardFile::open(&short).unwrap_err());
        assert!(
            err.contains("short.parquet") && err.contains("found 4"),
            "{err}"
        );
        let junk = dir.path().join("junk.parquet");
        std::fs::write(&junk, vec![7u8; 100]).unwrap();
        let err = format!("{:#}", ShardFile::open(&junk).unwrap_err());
        assert!(
            err.contains("junk.parquet") && err.contains("not a readable Parquet"),
            "{err}"
        );
        let missing = dir.path().join("missing.parquet");
        let err = format!("{:#}", ShardFile::open(&missing).unwrap_err());
        assert!(err.contains("missing.parquet"), "{err}");
    }
}
