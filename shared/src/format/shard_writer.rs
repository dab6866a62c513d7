//! Writing one Parquet shard (zstd, bounded row groups, key-value metadata), atomically: the file
//! is written under a temporary name, synced and renamed (see [`crate::files::atomic`]), so a reader
//! never sees half a shard. Used for token shards (data-spec "Token shards") and epoch shards.
use anyhow::Context;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::format::manifest::ShardEntry;
use crate::format::spec::{DATA_SPEC_VERSION, META_DATA_SPEC_VERSION};

/// zstd level of every shard: level 3 (zstd's own default) compresses token ids about as well as
/// higher levels at a fraction of the time.
pub const ZSTD_LEVEL: i32 = 3;

/// Writes `batches` (one schema) as one zstd Parquet file at `path`, atomically (temp + rename via
/// [`crate::files::atomic`]), with `metadata` as Parquet key-value metadata (plus
/// [`META_DATA_SPEC_VERSION`], added here), row groups of at most `row_group_rows` rows. Returns
/// the manifest entry (rows, bytes, sha256; `tokens` = the number passed in).
///
/// The output is a pure function of the arguments: the same batches give the same bytes.
pub fn write_shard(
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    metadata: &[(String, String)],
    row_group_rows: usize,
    tokens: u64,
) -> anyhow::Result<ShardEntry> {
    anyhow::ensure!(
        row_group_rows > 0,
        "{}: row_group_rows: expected at least 1, found 0",
        path.display()
    );
    let file_name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let mut kv = vec![KeyValue::new(
        META_DATA_SPEC_VERSION.to_string(),
        DATA_SPEC_VERSION.to_string(),
    )];
    for (k, v) in metadata {
        if k != META_DATA_SPEC_VERSION {
            kv.push(KeyValue::new(k.clone(), v.clone()));
        }
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_key_value_metadata(Some(kv))
        .build();

    let tmp = crate::files::atomic::temp_path(path);
    let result = write_to(&tmp, schema, batches, props);
    let (rows, bytes, sha256) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.context(format!("writing shard {}", path.display())));
        }
    };
    crate::files::atomic::commit(&tmp, path)?;
    Ok(ShardEntry {
        file: file_name,
        rows,
        tokens,
        bytes,
        sha256,
    })
}

/// Writes the Parquet file at `tmp`; returns (rows, bytes, sha256 of the bytes).
fn write_to(
    tmp: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
    props: WriterProperties,
) -> anyhow::Result<(u64, u64, String)> {
    let file = std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let sink = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut writer = ArrowWriter::try_new(sink, schema.clone(), Some(props))?;
    let mut rows = 0u64;
    for (i, batch) in batches.iter().enumerate() {
        anyhow::ensure!(
            batch.schema() == schema,
            "batch {i}: schema: expected {schema:?}, found {:?}",
            batch.schema()
        );
        writer.write(batch)?;
        rows += batch.num_rows() as u64;
    }
    let mut sink = writer.into_inner()?;
    sink.inner
        .flush()
        .with_context(|| format!("writing {}", tmp.display()))?;
    let digest = sink.hasher.finalize();
    let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok((rows, sink.bytes, sha256))
}

/// A writer that hashes and counts what passes through it, so the checksum needs no second read.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    #[test]
    fn writes_checksummed_shard_with_bounded_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::UInt64, false)]));
        let col: ArrayRef = Arc::new(UInt64Array::from_iter_values(0..10));
        let batch = RecordBatch::try_new(schema.clone(), vec![col]).unwrap();
        let path = dir.path().join("part-00000.parquet");
        let meta = [("fast_electra.kind".to_string(), "test".to_string())];
        let entry = write_shard(&path, schema, &[batch.clone(), batch], &meta, 4, 7).unwrap();
        assert_eq!(entry.file, "part-00000.parquet");
        assert_eq!(entry.rows, 20);
        assert_eq!(entry.tokens, 7);
        assert_eq!(entry.bytes, std::fs::metadata(&path).unwrap().len());
        assert_eq!(
            entry.sha256,
            crate::files::hash::sha256_file(&path).unwrap()
        );
        // Only the shard is left: no temporary file.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let shard = crate::format::shard_reader::ShardFile::open(&path).unwrap();
        assert_eq!(shard.num_row_groups(), 5);
        assert_eq!(
            shard.key_value("fast_electra.kind").as_deref(),
            Some("test")
        );
        assert_eq!(
            shard.key_value(META_DATA_SPEC_VERSION),
            Some(DATA_SPEC_VERSION.to_string())
        );
    }

    #[test]
    fn refuses_a_batch_of_another_schema() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::UInt64, false)]));
        let other = Arc::new(Schema::new(vec![Field::new("y", DataType::UInt64, false)]));
        let col: ArrayRef = Arc::new(UInt64Array::from_iter_values(0..3));
        let batch = RecordBatch::try_new(other, vec![col]).unwrap();
        let path = dir.path().join("a.parquet");
        let err = write_shard(&path, schema, &[batch], &[], 4, 0).unwrap_err();
        assert!(format!("{err:#}").contains("schema"), "{err:#}");
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
