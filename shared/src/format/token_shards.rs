//! Token shards (data-spec "Token shards" and "Token manifest"): the schema, a plain-vector view
//! of one batch of rows, and opening a token folder through its manifest.
use anyhow::Context;
use arrow::array::{Array, ArrayRef, Int32Array, ListArray, UInt64Array};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::manifest::{read_manifest, TokenManifest};
use crate::format::spec::tokens::{DOC_ID, INPUT_IDS, KIND, SEQUENCE_ID};
use crate::format::spec::MANIFEST_FILE;

/// The item field of the `input_ids` list column: `item`, `Int32`, not null.
fn input_ids_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Int32, false))
}

/// Schema of a token shard: `sequence_id` UInt64, `doc_id` UInt64, `input_ids` List<Int32>, all
/// not null.
pub fn token_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(SEQUENCE_ID, DataType::UInt64, false),
        Field::new(DOC_ID, DataType::UInt64, false),
        Field::new(INPUT_IDS, DataType::List(input_ids_item()), false),
    ]))
}

/// Rows of a token shard as plain vectors: row `i` is `ids[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRows {
    pub sequence_ids: Vec<u64>,
    pub doc_ids: Vec<u64>,
    /// `len() + 1` offsets into `ids`, starting at 0, non-decreasing.
    pub offsets: Vec<usize>,
    pub ids: Vec<i32>,
}

impl TokenRows {
    /// No rows.
    pub fn new() -> Self {
        Self {
            offsets: vec![0],
            ..Self::default()
        }
    }

    /// Appends one row.
    pub fn push(&mut self, sequence_id: u64, doc_id: u64, ids: &[i32]) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.sequence_ids.push(sequence_id);
        self.doc_ids.push(doc_id);
        self.ids.extend_from_slice(ids);
        self.offsets.push(self.ids.len());
    }

    /// Reads a batch of a token shard, checking its columns; errors name `file` and the column.
    pub fn from_batch(batch: &RecordBatch, file: &Path) -> anyhow::Result<Self> {
        let sequence_ids = u64_column(batch, SEQUENCE_ID, file)?;
        let doc_ids = u64_column(batch, DOC_ID, file)?;
        let list = column(batch, INPUT_IDS, file)?;
        let list = list.as_any().downcast_ref::<ListArray>().with_context(|| {
            format!(
                "{}: column {INPUT_IDS}: expected List<Int32>, found {}",
                file.display(),
                list.data_type()
            )
        })?;
        anyhow::ensure!(
            list.null_count() == 0,
            "{}: column {INPUT_IDS}: expected no nulls, found {}",
            file.display(),
            list.null_count()
        );
        let values = list
            .values()
            .as_any()
            .downcast_ref::<Int32Array>()
            .with_context(|| {
                format!(
                    "{}: column {INPUT_IDS}: expected List<Int32>, found {}",
                    file.display(),
                    list.data_type()
                )
            })?;
        let raw = list.value_offsets();
        let first = raw[0] as usize;
        let last = raw[raw.len() - 1] as usize;
        let items = values.slice(first, last - first);
        anyhow::ensure!(
            items.null_count() == 0,
            "{}: column {INPUT_IDS}: expected no null token ids, found {}",
            file.display(),
            items.null_count()
        );
        Ok(Self {
            sequence_ids,
            doc_ids,
            offsets: raw.iter().map(|&o| o as usize - first).collect(),
            ids: items.values().to_vec(),
        })
    }

    pub fn len(&self) -> usize {
        self.sequence_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequence_ids.is_empty()
    }

    /// Token ids of row `i`.
    pub fn row(&self, i: usize) -> &[i32] {
        &self.ids[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Number of tokens in all rows.
    pub fn num_tokens(&self) -> u64 {
        self.ids.len() as u64
    }

    /// The rows as a batch of [`token_schema`].
    pub fn to_batch(&self) -> anyhow::Result<RecordBatch> {
        let n = self.len();
        anyhow::ensure!(
            self.doc_ids.len() == n && self.offsets.len() == n + 1,
            "TokenRows: expected {n} doc ids and {} offsets, found {} and {}",
            n + 1,
            self.doc_ids.len(),
            self.offsets.len()
        );
        anyhow::ensure!(
            self.offsets[n] == self.ids.len(),
            "TokenRows: last offset {} != number of ids {}",
            self.offsets[n],
            self.ids.len()
        );
        let offsets = self
            .offsets
            .iter()
            .map(|&o| i32::try_from(o))
            .collect::<Result<Vec<i32>, _>>()
            .context("TokenRows: more than 2^31 token ids in one batch")?;
        let offsets = OffsetBuffer::new(offsets.into()); // panics if decreasing: checked by arrow
        let values = Arc::new(Int32Array::from(self.ids.clone()));
        let list = ListArray::try_new(input_ids_item(), offsets, values, None)?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(self.sequence_ids.clone())),
            Arc::new(UInt64Array::from(self.doc_ids.clone())),
            Arc::new(list),
        ];
        Ok(RecordBatch::try_new(token_schema(), columns)?)
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str, file: &Path) -> anyhow::Result<&'a ArrayRef> {
    batch.column_by_name(name).with_context(|| {
        let found: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        format!(
            "{}: column {name}: expected it in a token shard, found only columns {found:?}",
            file.display()
        )
    })
}

fn u64_column(batch: &RecordBatch, name: &str, file: &Path) -> anyhow::Result<Vec<u64>> {
    let col = column(batch, name, file)?;
    let array = col
        .as_any()
        .downcast_ref::<UInt64Array>()
        .with_context(|| {
            format!(
                "{}: column {name}: expected UInt64, found {}",
                file.display(),
                col.data_type()
            )
        })?;
    anyhow::ensure!(
        array.null_count() == 0,
        "{}: column {name}: expected no nulls, found {}",
        file.display(),
        array.null_count()
    );
    Ok(array.values().to_vec())
}

/// Opens a token folder: reads and checks `manifest.json` (present = complete, data-spec
/// version, kind `tokens`, every listed shard present with the listed size) and returns it with
/// the shard paths in order.
pub fn open_token_dir(dir: &Path) -> anyhow::Result<(TokenManifest, Vec<PathBuf>)> {
    let manifest: TokenManifest = read_manifest(dir)?;
    let mpath = dir.join(MANIFEST_FILE);
    anyhow::ensure!(
        manifest.kind == KIND,
        "{}: field kind: expected \"{KIND}\", found \"{}\"",
        mpath.display(),
        manifest.kind
    );
    let rows: u64 = manifest.shards.iter().map(|s| s.rows).sum();
    anyhow::ensure!(
        rows == manifest.num_sequences,
        "{}: field num_sequences: expected the shards' {rows} rows, found {}",
        mpath.display(),
        manifest.num_sequences
    );
    let mut paths = Vec::with_capacity(manifest.shards.len());
    for shard in &manifest.shards {
        let path = dir.join(&shard.file);
        let len = std::fs::metadata(&path)
            .with_context(|| {
                format!(
                    "{}: shard {} listed in {} is missing",
                    path.display(),
                    shard.file,
                    mpath.display()
                )
            })?
            .len();
        anyhow::ensure!(
            len == shard.bytes,
            "{}: size: expected {} bytes as listed in {}, found {len}",
            path.display(),
            shard.bytes,
            mpath.display()
        );
        paths.push(path);
    }
    Ok((manifest, paths))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TokenRows {
        let mut rows = TokenRows::new();
        rows.push(0, 0, &[101, 7, 8, 102]);
        rows.push(1, 0, &[101, 9, 102]);
        rows.push(2, 3, &[101, 1, 2, 3, 4, 102]);
        rows
    }

    #[test]
    fn round_trips_through_a_shard_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part-00000.parquet");
        let rows = sample();
        let batch = rows.to_batch().unwrap();
        crate::format::shard_writer::write_shard(&path, token_schema(), &[batch], &[], 2, 13)
            .unwrap();
        let shard = crate::format::shard_reader::ShardFile::open(&path).unwrap();
        assert_eq!(shard.num_rows(), 3);
        assert_eq!(shard.num_row_groups(), 2);
        assert_eq!(shard.row_group_rows(1), 1);
        let g0 = TokenRows::from_batch(&shard.read_row_group(0).unwrap(), &path).unwrap();
        let g1 = TokenRows::from_batch(&shard.read_row_group(1).unwrap(), &path).unwrap();
        assert_eq!(g0.len(), 2);
        assert_eq!(g0.row(1), &[101, 9, 102]);
        assert_eq!(g1.sequence_ids, vec![2]);
        assert_eq!(g1.doc_ids, vec![3]);
        assert_eq!(g1.row(0), &[101, 1, 2, 3, 4, 102]);
        assert!(shard.read_row_group(2).is_err());
    }

    #[test]
    fn from_batch_handles_sliced_batches() {
        let batch = sample().to_batch().unwrap().slice(1, 2);
        let rows = TokenRows::from_batch(&batch, Path::new("x")).unwrap();
        assert_eq!(rows.offsets, vec![0, 3, 9]);
        assert_eq!(rows.row(0), &[101, 9, 102]);
    }

    #[test]
    fn from_batch_names_file_and_column() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            SEQUENCE_ID,
            DataType::Int32,
            false,
        )]));
        let col: ArrayRef = Arc::new(Int32Array::from(vec![1]));
        let batch = RecordBatch::try_new(schema, vec![col]).unwrap();
        let err = TokenRows::from_batch(&batch, Path::new("f.parquet")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("f.parquet") && msg.contains("sequence_id"),
            "{msg}"
        );
        assert!(msg.contains("expected UInt64, found Int32"), "{msg}");
    }

    #[test]
    fn open_token_dir_refuses_a_folder_without_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", open_token_dir(dir.path()).unwrap_err());
        assert!(err.contains("manifest.json"), "{err}");
    }
}
