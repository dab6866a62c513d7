//! Packing one document's tokens into rows (data-spec "Packing"): greedy chunks of
//! `max_seq_len - 2` tokens, each wrapped as `[CLS] chunk [SEP]`; the last chunk is kept when it
//! holds at least `min_tail` tokens, else dropped and counted. Rows never cross documents.

/// The packing rule with its special-token ids.
#[derive(Debug, Clone, Copy)]
pub struct Packer {
    pub cls: i32,
    pub sep: i32,
    /// Text tokens per full row: `max_seq_len - 2`.
    pub body: usize,
    /// Shortest last chunk kept, in text tokens.
    pub min_tail: usize,
}

/// The rows of one document and what was dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedDoc {
    /// Rows, each `[CLS] ... [SEP]`.
    pub rows: Vec<Vec<i32>>,
    /// Text tokens of the document (before packing).
    pub tokens: u64,
    /// Text tokens in a dropped short last chunk (0 if none was dropped).
    pub dropped_tokens: u64,
}

impl Packer {
    pub fn pack(&self, ids: &[u32]) -> PackedDoc {
        let mut rows = Vec::with_capacity(ids.len().div_ceil(self.body));
        let mut dropped_tokens = 0;
        for chunk in ids.chunks(self.body) {
            if chunk.len() < self.min_tail {
                // Only the last chunk can be short.
                dropped_tokens = chunk.len() as u64;
                continue;
            }
            let mut row = Vec::with_capacity(chunk.len() + 2);
            row.push(self.cls);
            row.extend(chunk.iter().map(|&t| t as i32));
            row.push(self.sep);
            rows.push(row);
        }
        PackedDoc {
            rows,
            tokens: ids.len() as u64,
            dropped_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Packer = Packer {
        cls: 101,
        sep: 102,
        body: 4,
        min_tail: 2,
    };

    #[test]
    fn full_chunks_and_kept_tail() {
        let got = P.pack(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(
            got.rows,
            vec![
                vec![101, 1, 2, 3, 4, 102],
                vec![101, 5, 6, 7, 8, 102],
                vec![101, 9, 10, 102]
            ]
        );
        assert_eq!((got.tokens, got.dropped_tokens), (10, 0));
    }

    #[test]
    fn short_tail_and_short_document_are_dropped() {
        let got = P.pack(&[1, 2, 3, 4, 5]);
        assert_eq!(got.rows, vec![vec![101, 1, 2, 3, 4, 102]]);
        assert_eq!(got.dropped_tokens, 1);
        let got = P.pack(&[7]);
        assert!(got.rows.is_empty());
        assert_eq!(got.dropped_tokens, 1);
        assert_eq!(P.pack(&[]), PackedDoc::default());
    }
}
