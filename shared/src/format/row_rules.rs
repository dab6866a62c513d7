//! Per-row invariants of the data-spec, checked wherever rows are decoded (the trainer's loader,
//! `preprocess --epoch`'s reader, `trainer loader-bench`, the term-frequency count): every row
//! starts with `[CLS]`, ends with `[SEP]`, has length 3..=`max_seq_len`, and holds only ids in
//! `0..vocab_size`; a token shard's row also holds none of the cls, sep, mask or pad ids between
//! its ends (an epoch row may: the auxiliary model can sample any id). One pass over the ids with
//! a few compares per token, so it costs a small fraction of decoding (README, "What is promised
//! under faults", has the loader benchmark before and after).
//!
//! A violation names the file, the row group, the row (in the group and in the file), its
//! `sequence_id`, the column, what was expected and what was found.
use std::path::Path;

use super::manifest::{EpochManifest, TokenManifest, TokenizerInfo};

/// Where the rows being checked come from, for the error message.
#[derive(Debug, Clone, Copy)]
pub struct RowsAt<'a> {
    pub file: &'a Path,
    pub row_group: usize,
    /// Index in the file of the group's first row.
    pub first_row: u64,
}

/// The invariants every row of one folder must satisfy, derived from its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRules {
    vocab_size: u32,
    max_len: usize,
    cls: i32,
    sep: i32,
    /// Ids that may not occur between the first and last position (token rows only).
    inner_forbidden: Option<[i32; 4]>,
    /// The column the ids are read from (`input_ids` for both kinds).
    column: &'static str,
}

/// The shortest row the data-spec allows: `[CLS] t [SEP]`.
pub const MIN_ROW_LEN: usize = 3;

impl RowRules {
    fn new(tok: &TokenizerInfo, max_seq_len: u32, vocab_size: u32, strict_inner: bool) -> Self {
        let s = &tok.special_tokens;
        Self {
            vocab_size,
            max_len: max_seq_len as usize,
            cls: s.cls as i32,
            sep: s.sep as i32,
            inner_forbidden: strict_inner.then_some([
                s.cls as i32,
                s.sep as i32,
                s.mask as i32,
                s.pad as i32,
            ]),
            column: super::spec::tokens::INPUT_IDS,
        }
    }

    /// The rows of a token folder (data-spec README, "Invariants a reader may rely on", 4).
    pub fn tokens(m: &TokenManifest) -> Self {
        Self::new(&m.tokenizer, m.max_seq_len, m.tokenizer.vocab_size, true)
    }

    /// The rows of an epoch folder: ends and length as the token rows they were made from; ids
    /// in range (a replacement may be any id of the vocabulary).
    pub fn epoch(m: &EpochManifest) -> Self {
        Self::new(&m.tokenizer, m.max_seq_len, m.vocab_size, false)
    }

    /// The longest row allowed.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Checks rows `ids[offsets[i]..offsets[i + 1]]`; `sequence_ids[i]` names row `i`.
    pub fn check(
        &self,
        offsets: &[usize],
        ids: &[i32],
        sequence_ids: &[u64],
        at: RowsAt,
    ) -> anyhow::Result<()> {
        for (i, w) in offsets.windows(2).enumerate() {
            let row = &ids[w[0]..w[1]];
            if let Err((what, expected, found)) = self.check_row(row) {
                anyhow::bail!(
                    "{}: row group {}, row {} (row {} of the file, sequence_id {}): column {}: \
                     {what}: expected {expected}, found {found}",
                    at.file.display(),
                    at.row_group,
                    i,
                    at.first_row + i as u64,
                    sequence_ids
                        .get(i)
                        .map_or("?".to_string(), |s| s.to_string()),
                    self.column,
                );
            }
        }
        Ok(())
    }

    /// One row: `Err((what, expected, found))` on the first violation.
    fn check_row(&self, row: &[i32]) -> Result<(), (&'static str, String, String)> {
        let n = row.len();
        if !(MIN_ROW_LEN..=self.max_len).contains(&n) {
            return Err((
                "length",
                format!("{MIN_ROW_LEN}..={} (max_seq_len)", self.max_len),
                n.to_string(),
            ));
        }
        // Range first (a cast to u32 sends negative ids above any vocabulary). The checks are
        // branch-free folds, which the compiler vectorises; the position is looked for only once
        // a row is known to be bad.
        let vocab = self.vocab_size;
        let out_of_range = row.iter().fold(false, |bad, &t| bad | (t as u32 >= vocab));
        if let Some(p) = out_of_range
            .then(|| row.iter().position(|&t| t as u32 >= vocab))
            .flatten()
        {
            return Err((
                "token id",
                format!("0..{vocab} (the vocabulary) at position {p}"),
                row[p].to_string(),
            ));
        }
        if row[0] != self.cls {
            return Err((
                "first token",
                format!("[CLS] = {}", self.cls),
                row[0].to_string(),
            ));
        }
        if row[n - 1] != self.sep {
            return Err((
                "last token",
                format!("[SEP] = {}", self.sep),
                row[n - 1].to_string(),
            ));
        }
        if let Some([a, b, c, d]) = self.inner_forbidden {
            let inner = &row[1..n - 1];
            let special = |t: i32| (t == a) | (t == b) | (t == c) | (t == d);
            let any = inner.iter().fold(false, |bad, &t| bad | special(t));
            if let Some(p) = any
                .then(|| inner.iter().position(|&t| special(t)))
                .flatten()
            {
                return Err((
                    "special token inside the row",
                    format!(
                        "none of [CLS], [SEP], [MASK], [PAD] ({a}, {b}, {c}, {d}) between the ends"
                    ),
                    format!("{} at position {}", inner[p], p + 1),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::SpecialTokens;

    fn rules(strict: bool) -> RowRules {
        let tok = TokenizerInfo {
            path: "t.json".into(),
            sha256: String::new(),
            vocab_size: 100,
            special_tokens: SpecialTokens {
                cls: 1,
                sep: 2,
                mask: 3,
                pad: 0,
                unk: None,
            },
        };
        RowRules::new(&tok, 6, 100, strict)
    }

    fn check(r: &RowRules, row: &[i32]) -> String {
        let at = RowsAt {
            file: Path::new("d/part-00003.parquet"),
            row_group: 2,
            first_row: 2048,
        };
        let ok = [1, 10, 2];
        let ids: Vec<i32> = ok.iter().chain(row).copied().collect();
        let offsets = [0, 3, ids.len()];
        match r.check(&offsets, &ids, &[7, 8], at) {
            Ok(()) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepts_good_rows() {
        assert_eq!(check(&rules(true), &[1, 5, 6, 2]), "ok");
        assert_eq!(check(&rules(true), &[1, 5, 6, 7, 8, 2]), "ok");
        // An epoch row may hold a sampled [MASK] or [PAD] inside.
        assert_eq!(check(&rules(false), &[1, 3, 0, 2]), "ok");
    }

    #[test]
    fn names_file_group_row_and_field() {
        let e = check(&rules(true), &[1, 5, 100, 2]);
        assert_eq!(
            e,
            "d/part-00003.parquet: row group 2, row 1 (row 2049 of the file, sequence_id 8): \
             column input_ids: token id: expected 0..100 (the vocabulary) at position 2, found 100"
        );
        assert!(
            check(&rules(false), &[1, -4, 2]).contains("found -4"),
            "negative id"
        );
    }

    #[test]
    fn refuses_each_violation() {
        let r = rules(true);
        assert!(check(&r, &[]).contains("length: expected 3..=6 (max_seq_len), found 0"));
        assert!(check(&r, &[1, 2]).contains("length"));
        assert!(check(&r, &[1, 5, 5, 5, 5, 5, 2]).contains("found 7"));
        assert!(check(&r, &[4, 5, 2]).contains("first token: expected [CLS] = 1, found 4"));
        assert!(check(&r, &[1, 5, 4]).contains("last token: expected [SEP] = 2, found 4"));
        for special in [0, 1, 2, 3] {
            let e = check(&r, &[1, 5, special, 2]);
            assert!(e.contains(&format!("found {special} at position 2")), "{e}");
        }
        assert_eq!(check(&rules(false), &[1, 5, 2, 2]), "ok");
    }
}
