//! Decoded rows of one row group, in a flat layout (no per-row allocation).
use serde::{Deserialize, Serialize};

/// The rows of one decoded row group: row `i` is `ids[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub sequence_ids: Vec<u64>,
    /// `n + 1` offsets into `ids`.
    pub offsets: Vec<usize>,
    /// Token ids (corrupted ones for an epoch shard), unpadded.
    pub ids: Vec<i32>,
    /// Per token: 1 = replaced, 0 = original (epoch shards only; empty for token shards).
    pub targets: Vec<i8>,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.sequence_ids.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.sequence_ids.is_empty()
    }

    /// Token ids of row `i`.
    pub fn ids(&self, i: usize) -> &[i32] {
        &self.ids[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Targets of row `i` (empty for token shards).
    pub fn targets(&self, i: usize) -> &[i8] {
        if self.targets.is_empty() {
            &[]
        } else {
            &self.targets[self.offsets[i]..self.offsets[i + 1]]
        }
    }
}

/// Where the next micro-batch starts: pass number (0-based over the ordered epochs, then
/// repeats of the last one) and row position in that pass's shuffled order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub pass: u64,
    pub row: u64,
}
