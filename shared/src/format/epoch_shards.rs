//! Rows of an epoch (corrupted) shard, data-spec `data-spec/epoch.md`: the Arrow schema, and
//! decoding a record batch into flat vectors (and back).
//!
//! Decoding copies whole Arrow buffers (offsets, values) as slices, never element by element
//! through the Arrow accessors, so the trainer's loader stays far faster than training.
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, ArrayRef, AsArray, Int32Array, Int8Array, ListArray, UInt64Array};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Int32Type, Int8Type, Schema, SchemaRef, UInt64Type};
use arrow::record_batch::RecordBatch;

use crate::format::spec::epoch as col;

/// A malformed epoch shard; every message names the file and the column.
#[derive(Debug, thiserror::Error)]
pub enum EpochShardError {
    #[error("{file}: column {column}: missing (expected {expected})")]
    MissingColumn {
        file: PathBuf,
        column: &'static str,
        expected: String,
    },
    #[error("{file}: column {column}: expected type {expected}, found {found}")]
    WrongType {
        file: PathBuf,
        column: &'static str,
        expected: String,
        found: String,
    },
    #[error("{file}: column {column}: expected no nulls, found {found}")]
    Nulls {
        file: PathBuf,
        column: &'static str,
        found: usize,
    },
    #[error("{file}: column {column}: {what}: expected {expected}, found {found}")]
    Invariant {
        file: PathBuf,
        column: &'static str,
        what: String,
        expected: String,
        found: String,
    },
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, false)))
}

/// The Arrow schema of an epoch shard (column order as in data-spec/epoch.md).
pub fn epoch_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new(col::SEQUENCE_ID, DataType::UInt64, false),
                Field::new(col::INPUT_IDS, list_of(DataType::Int32), false),
                Field::new(col::TARGETS, list_of(DataType::Int8), false),
                Field::new(col::MASKED_POSITIONS, list_of(DataType::Int32), false),
                Field::new(col::ORIGINAL_IDS, list_of(DataType::Int32), false),
            ]))
        })
        .clone()
}

/// The rows of one record batch of an epoch shard, as flat vectors.
///
/// Row `i` is `input_ids[offsets[i]..offsets[i+1]]` with targets over the same range, and masked
/// positions / original ids over `mask_offsets[i]..mask_offsets[i+1]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochRows {
    pub sequence_ids: Vec<u64>,
    /// `len() + 1` offsets into `input_ids` and `targets`, starting at 0.
    pub offsets: Vec<usize>,
    pub input_ids: Vec<i32>,
    pub targets: Vec<i8>,
    /// `len() + 1` offsets into `masked_positions` and `original_ids`, starting at 0.
    pub mask_offsets: Vec<usize>,
    pub masked_positions: Vec<i32>,
    pub original_ids: Vec<i32>,
}

impl EpochRows {
    /// No rows (offsets hold the single leading 0).
    pub fn new() -> Self {
        Self {
            offsets: vec![0],
            mask_offsets: vec![0],
            ..Self::default()
        }
    }

    /// Appends one row. `masked_positions` must ascend and index into `input_ids`; lengths must
    /// agree (checked with debug assertions; `to_batch` output is re-checked by `from_batch`).
    pub fn push(
        &mut self,
        sequence_id: u64,
        input_ids: &[i32],
        targets: &[i8],
        masked_positions: &[i32],
        original_ids: &[i32],
    ) {
        debug_assert_eq!(input_ids.len(), targets.len());
        debug_assert_eq!(masked_positions.len(), original_ids.len());
        if self.offsets.is_empty() {
            self.offsets.push(0);
            self.mask_offsets.push(0);
        }
        self.sequence_ids.push(sequence_id);
        self.input_ids.extend_from_slice(input_ids);
        self.targets.extend_from_slice(targets);
        self.offsets.push(self.input_ids.len());
        self.masked_positions.extend_from_slice(masked_positions);
        self.original_ids.extend_from_slice(original_ids);
        self.mask_offsets.push(self.masked_positions.len());
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.sequence_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequence_ids.is_empty()
    }

    /// The corrupted token ids of row `i`.
    pub fn row(&self, i: usize) -> &[i32] {
        &self.input_ids[self.offsets[i]..self.offsets[i + 1]]
    }

    /// The targets of row `i` (1 = replaced).
    pub fn targets_row(&self, i: usize) -> &[i8] {
        &self.targets[self.offsets[i]..self.offsets[i + 1]]
    }

    /// The masked positions of row `i` (ascending).
    pub fn masked_row(&self, i: usize) -> &[i32] {
        &self.masked_positions[self.mask_offsets[i]..self.mask_offsets[i + 1]]
    }

    /// The original token ids at the masked positions of row `i`.
    pub fn original_row(&self, i: usize) -> &[i32] {
        &self.original_ids[self.mask_offsets[i]..self.mask_offsets[i + 1]]
    }

    /// The clean (original) sequence of row `i`.
    pub fn original_sequence(&self, i: usize) -> Vec<i32> {
        let mut ids = self.row(i).to_vec();
        for (&p, &o) in self.masked_row(i).iter().zip(self.original_row(i)) {
            ids[p as usize] = o;
        }
        ids
    }

    /// Total number of tokens.
    pub fn num_tokens(&self) -> usize {
        self.input_ids.len()
    }

    /// The rows as a record batch of [`epoch_schema`].
    pub fn to_batch(&self) -> anyhow::Result<RecordBatch> {
        let list = |item: DataType,
                    offsets: &[usize],
                    values: ArrayRef|
         -> anyhow::Result<ArrayRef> {
            let offsets: Vec<i32> = offsets
                .iter()
                .map(|&o| i32::try_from(o))
                .collect::<Result<_, _>>()
                .map_err(|_| anyhow::anyhow!("epoch batch too large for 32-bit list offsets"))?;
            let field = Arc::new(Field::new("item", item, false));
            Ok(Arc::new(ListArray::try_new(
                field,
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                values,
                None,
            )?))
        };
        let offsets = if self.offsets.is_empty() {
            &[0][..]
        } else {
            &self.offsets
        };
        let mask_offsets = if self.mask_offsets.is_empty() {
            &[0][..]
        } else {
            &self.mask_offsets
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(self.sequence_ids.clone())),
            list(
                DataType::Int32,
                offsets,
                Arc::new(Int32Array::from(self.input_ids.clone())),
            )?,
            list(
                DataType::Int8,
                offsets,
                Arc::new(Int8Array::from(self.targets.clone())),
            )?,
            list(
                DataType::Int32,
                mask_offsets,
                Arc::new(Int32Array::from(self.masked_positions.clone())),
            )?,
            list(
                DataType::Int32,
                mask_offsets,
                Arc::new(Int32Array::from(self.original_ids.clone())),
            )?,
        ];
        Ok(RecordBatch::try_new(epoch_schema(), columns)?)
    }

    /// Decodes a record batch read from `file`, checking the schema (names, types, no nulls)
    /// and the cheap invariants: `targets` has the length of `input_ids` in every row,
    /// `original_ids` that of `masked_positions`, every target is 0 or 1, and every masked
    /// position lies inside its row.
    pub fn from_batch(batch: &RecordBatch, file: &Path) -> Result<Self, EpochShardError> {
        let seq = column(batch, file, col::SEQUENCE_ID, "UInt64")?;
        let seq = seq
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| wrong_type(file, col::SEQUENCE_ID, "UInt64", seq.data_type()))?;
        no_nulls(seq, file, col::SEQUENCE_ID)?;
        let (offsets, input_ids) = list_values::<Int32Type>(batch, file, col::INPUT_IDS, "Int32")?;
        let (t_offsets, targets) = list_values::<Int8Type>(batch, file, col::TARGETS, "Int8")?;
        let (mask_offsets, masked_positions) =
            list_values::<Int32Type>(batch, file, col::MASKED_POSITIONS, "Int32")?;
        let (o_offsets, original_ids) =
            list_values::<Int32Type>(batch, file, col::ORIGINAL_IDS, "Int32")?;
        if t_offsets != offsets {
            return Err(mismatch(
                file,
                col::TARGETS,
                col::INPUT_IDS,
                &offsets,
                &t_offsets,
            ));
        }
        if o_offsets != mask_offsets {
            return Err(mismatch(
                file,
                col::ORIGINAL_IDS,
                col::MASKED_POSITIONS,
                &mask_offsets,
                &o_offsets,
            ));
        }
        if let Some(bad) = targets.iter().find(|&&t| t as u8 > 1) {
            return Err(EpochShardError::Invariant {
                file: file.to_path_buf(),
                column: col::TARGETS,
                what: "target value".into(),
                expected: "0 or 1".into(),
                found: bad.to_string(),
            });
        }
        for i in 0..seq.len() {
            let n = offsets[i + 1] - offsets[i];
            let positions = &masked_positions[mask_offsets[i]..mask_offsets[i + 1]];
            if let Some(&p) = positions.iter().find(|&&p| p < 0 || p as usize >= n) {
                return Err(EpochShardError::Invariant {
                    file: file.to_path_buf(),
                    column: col::MASKED_POSITIONS,
                    what: format!("row {i}"),
                    expected: format!("positions in 0..{n}"),
                    found: p.to_string(),
                });
            }
        }
        Ok(Self {
            sequence_ids: seq.values().to_vec(),
            offsets,
            input_ids,
            targets,
            mask_offsets,
            masked_positions,
            original_ids,
        })
    }
}

fn column<'a>(
    batch: &'a RecordBatch,
    file: &Path,
    name: &'static str,
    expected: &str,
) -> Result<&'a ArrayRef, EpochShardError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| EpochShardError::MissingColumn {
            file: file.to_path_buf(),
            column: name,
            expected: expected.to_string(),
        })
}

fn wrong_type(
    file: &Path,
    column: &'static str,
    expected: &str,
    found: &DataType,
) -> EpochShardError {
    EpochShardError::WrongType {
        file: file.to_path_buf(),
        column,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

fn no_nulls(array: &dyn Array, file: &Path, column: &'static str) -> Result<(), EpochShardError> {
    match array.null_count() {
        0 => Ok(()),
        found => Err(EpochShardError::Nulls {
            file: file.to_path_buf(),
            column,
            found,
        }),
    }
}

/// Offsets (rebased to start at 0) and values of a `List<T>` column, copied as slices.
fn list_values<T: arrow::datatypes::ArrowPrimitiveType>(
    batch: &RecordBatch,
    file: &Path,
    name: &'static str,
    item: &str,
) -> Result<(Vec<usize>, Vec<T::Native>), EpochShardError> {
    let expected = format!("List<{item}>");
    let array = column(batch, file, name, &expected)?;
    let list = array
        .as_list_opt::<i32>()
        .ok_or_else(|| wrong_type(file, name, &expected, array.data_type()))?;
    no_nulls(list, file, name)?;
    let values = list
        .values()
        .as_primitive_opt::<T>()
        .ok_or_else(|| wrong_type(file, name, &expected, array.data_type()))?;
    no_nulls(values, file, name)?;
    let raw = list.value_offsets();
    let base = raw[0];
    let offsets: Vec<usize> = raw.iter().map(|&o| (o - base) as usize).collect();
    let (start, end) = (
        base as usize,
        *raw.last().expect("offsets not empty") as usize,
    );
    Ok((offsets, values.values()[start..end].to_vec()))
}

fn mismatch(
    file: &Path,
    column: &'static str,
    other: &str,
    expected: &[usize],
    found: &[usize],
) -> EpochShardError {
    let row = expected
        .windows(2)
        .zip(found.windows(2))
        .position(|(a, b)| a[1] - a[0] != b[1] - b[0])
        .unwrap_or(0);
    EpochShardError::Invariant {
        file: file.to_path_buf(),
        column,
        what: format!("length of row {row}"),
        expected: format!(
            "{} (the length of {other})",
            expected[row + 1] - expected[row]
        ),
        found: (found[row + 1] - found[row]).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EpochRows {
        let mut rows = EpochRows::new();
        rows.push(7, &[101, 5, 9, 102], &[0, 1, 0, 0], &[1, 2], &[6, 9]);
        rows.push(3, &[101, 8, 102], &[0, 0, 0], &[1], &[8]);
        rows
    }

    #[test]
    fn batch_round_trip() {
        let rows = sample();
        let batch = rows.to_batch().unwrap();
        assert_eq!(batch.schema(), epoch_schema());
        let back = EpochRows::from_batch(&batch, Path::new("x.parquet")).unwrap();
        assert_eq!(back, rows);
        assert_eq!(back.row(1), &[101, 8, 102]);
        assert_eq!(back.targets_row(0), &[0, 1, 0, 0]);
        assert_eq!(back.original_sequence(0), vec![101, 6, 9, 102]);
        // A sliced batch (non-zero first offset) decodes to the same rows.
        let tail = EpochRows::from_batch(&batch.slice(1, 1), Path::new("x")).unwrap();
        assert_eq!(tail.sequence_ids, vec![3]);
        assert_eq!(tail.offsets, vec![0, 3]);
        assert_eq!(tail.row(0), &[101, 8, 102]);
        assert_eq!(tail.masked_row(0), &[1]);
    }

    #[test]
    fn errors_name_file_and_column() {
        // Build a batch whose targets are shorter than input_ids in row 1.
        let good = sample().to_batch().unwrap();
        let t = ListArray::new(
            Arc::new(Field::new("item", DataType::Int8, false)),
            OffsetBuffer::new(ScalarBuffer::from(vec![0i32, 4, 6])),
            Arc::new(Int8Array::from(vec![0i8, 1, 0, 0, 0, 0])),
            None,
        );
        let mut cols = good.columns().to_vec();
        cols[2] = Arc::new(t);
        let bad = RecordBatch::try_new(epoch_schema(), cols).unwrap();
        let err = EpochRows::from_batch(&bad, Path::new("d/part-00001.parquet")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("d/part-00001.parquet") && msg.contains("targets"),
            "{msg}"
        );
        assert!(msg.contains("row 1") && msg.contains("expected 3"), "{msg}");

        let missing = good.project(&[0, 1, 2, 3]).unwrap();
        let err = EpochRows::from_batch(&missing, Path::new("f")).unwrap_err();
        assert!(err.to_string().contains("original_ids"), "{err}");

        let mut bad_target = sample();
        bad_target.targets[1] = 2;
        let err =
            EpochRows::from_batch(&bad_target.to_batch().unwrap(), Path::new("f")).unwrap_err();
        assert!(err.to_string().contains("0 or 1"), "{err}");

        let mut bad_pos = sample();
        bad_pos.masked_positions[2] = 3;
        let err = EpochRows::from_batch(&bad_pos.to_batch().unwrap(), Path::new("f")).unwrap_err();
        assert!(err.to_string().contains("masked_positions"), "{err}");
    }
}
