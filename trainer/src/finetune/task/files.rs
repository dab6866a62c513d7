//! Task files read into [`Table`]s: rows of named string fields, whatever the format (chosen by
//! extension):
//!
//! - `.jsonl`: one JSON object per line (blank lines skipped); strings as they are, numbers and
//!   booleans as their JSON text, `null` as a missing value;
//! - `.csv`: RFC 4180 (comma, `"` quoting, `""` inside quotes, quoted fields may span lines),
//!   first record the header;
//! - `.tsv`: tab-separated with no quoting at all (GLUE's files, Python's `QUOTE_NONE`), first
//!   line the header; [`read_tsv`] also reads header-less files (CoLA's train and dev);
//! - `.parquet`: every column cast to text (integers as `1`, floats as `3.8`), nulls missing.
//!
//! Every row keeps where it came from (the line of a text file, the row of a Parquet file, both
//! 1-based) so that errors name the file, the row and the column.
use anyhow::{bail, Context};
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};

/// A file's rows of named fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub path: PathBuf,
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

/// One row: its position in the file and its fields, in the order of [`Table::columns`]
/// (`None`: missing, or null).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The 1-based line (text files) or row (Parquet).
    pub at: usize,
    pub fields: Vec<Option<String>>,
}

/// What [`Table::at`] calls a row's position.
fn unit(path: &Path) -> &'static str {
    if Format::of(path).ok() == Some(Format::Parquet) {
        "row"
    } else {
        "line"
    }
}

impl Table {
    /// The index of `column`, or an error naming the file and the columns it has.
    pub fn column(&self, column: &str) -> anyhow::Result<usize> {
        self.columns
            .iter()
            .position(|c| c == column)
            .with_context(|| {
                format!(
                    "{}: missing column \"{column}\" (the file has {:?})",
                    self.path.display(),
                    self.columns
                )
            })
    }

    /// `FILE: line N, column "C"` (or `row N` for Parquet), for errors.
    pub fn at(&self, row: &Row, column: &str) -> String {
        format!(
            "{}: {} {}, column \"{column}\"",
            self.path.display(),
            unit(&self.path),
            row.at
        )
    }

    /// The field `index` (named `column`) of `row`, or an error saying it is missing.
    pub fn field<'a>(&self, row: &'a Row, index: usize, column: &str) -> anyhow::Result<&'a str> {
        match row.fields.get(index) {
            Some(Some(v)) => Ok(v),
            Some(None) => bail!("{}: missing value (null)", self.at(row, column)),
            None => bail!(
                "{}: missing value (the row has {} fields)",
                self.at(row, column),
                row.fields.len()
            ),
        }
    }
}

/// The formats [`read`] knows, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    Tsv,
    Parquet,
}

impl Format {
    pub fn of(path: &Path) -> anyhow::Result<Format> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        Ok(match ext.as_str() {
            "jsonl" | "json" => Format::Jsonl,
            "csv" => Format::Csv,
            "tsv" | "txt" => Format::Tsv,
            "parquet" => Format::Parquet,
            _ => bail!(
                "{}: unknown format: expected .jsonl, .csv, .tsv or .parquet",
                path.display()
            ),
        })
    }
}

/// Reads `path` by its extension, with a header (text formats) or its schema (Parquet).
pub fn read(path: &Path) -> anyhow::Result<Table> {
    match Format::of(path)? {
        Format::Jsonl => read_jsonl(path),
        Format::Csv => read_csv(path),
        Format::Tsv => read_tsv(path, None),
        Format::Parquet => read_parquet(path),
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow::anyhow!("{}: line {line}: not UTF-8 text", path.display())
    })
}

/// Lines without their `\n` or `\r\n`, numbered from 1; a final empty line is not one.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !text.is_empty() || !l.is_empty())
}

/// Reads a tab-separated file with no quoting. `columns` names the columns of a file with no
/// header line; `None`: the first line is the header. Blank lines are skipped.
pub fn read_tsv(path: &Path, columns: Option<&[&str]>) -> anyhow::Result<Table> {
    let text = read_text(path)?;
    let mut it = lines(&text).filter(|(_, l)| !l.is_empty());
    let columns: Vec<String> = match columns {
        Some(c) => c.iter().map(|s| s.to_string()).collect(),
        None => match it.next() {
            Some((_, header)) => header.split('\t').map(str::to_string).collect(),
            None => bail!("{}: empty file (expected a header line)", path.display()),
        },
    };
    let rows = it
        .map(|(at, l)| Row {
            at,
            fields: l.split('\t').map(|f| Some(f.to_string())).collect(),
        })
        .collect();
    Ok(Table {
        path: path.to_path_buf(),
        columns,
        rows,
    })
}

/// Splits CSV text into records (RFC 4180), each with the line it starts on.
fn csv_records(path: &Path, text: &str) -> anyhow::Result<Vec<(usize, Vec<String>)>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = vec![];
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = vec![];
        let mut field = String::new();
        let mut quoted = false;
        let mut was_quoted = false;
        loop {
            let Some(c) = chars.next() else {
                if quoted {
                    bail!(
                        "{}: line {start}: a quoted field is not closed",
                        path.display()
                    );
                }
                fields.push(std::mem::take(&mut field));
                break;
            };
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    '"' => quoted = false,
                    c => {
                        if c == '\n' {
                            line += 1;
                        }
                        field.push(c);
                    }
                }
                continue;
            }
            match c {
                '"' if field.is_empty() && !was_quoted => {
                    quoted = true;
                    was_quoted = true;
                }
                ',' => {
                    fields.push(std::mem::take(&mut field));
                    was_quoted = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                c => field.push(c),
            }
        }
        if !(fields.len() == 1 && fields[0].is_empty()) {
            out.push((start, fields));
        }
    }
    Ok(out)
}

fn read_csv(path: &Path) -> anyhow::Result<Table> {
    let text = read_text(path)?;
    let mut records = csv_records(path, &text)?.into_iter();
    let Some((_, columns)) = records.next() else {
        bail!("{}: empty file (expected a header line)", path.display());
    };
    let rows = records
        .map(|(at, fields)| Row {
            at,
            fields: fields.into_iter().map(Some).collect(),
        })
        .collect();
    Ok(Table {
        path: path.to_path_buf(),
        columns,
        rows,
    })
}

fn read_jsonl(path: &Path) -> anyhow::Result<Table> {
    let text = read_text(path)?;
    let mut columns: Vec<String> = vec![];
    let mut objects = vec![];
    for (at, l) in lines(&text) {
        if l.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(l)
            .with_context(|| format!("{}: line {at}: not JSON", path.display()))?;
        let serde_json::Value::Object(map) = v else {
            bail!("{}: line {at}: expected a JSON object", path.display());
        };
        for k in map.keys() {
            if !columns.contains(k) {
                columns.push(k.clone());
            }
        }
        objects.push((at, map));
    }
    let rows = objects
        .into_iter()
        .map(|(at, map)| Row {
            at,
            fields: columns
                .iter()
                .map(|c| match map.get(c) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(v) => Some(v.to_string()),
                })
                .collect(),
        })
        .collect();
    Ok(Table {
        path: path.to_path_buf(),
        columns,
        rows,
    })
}

fn read_parquet(path: &Path) -> anyhow::Result<Table> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
    let columns: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let reader = builder
        .with_batch_size(4096)
        .build()
        .with_context(|| format!("{}: reading", path.display()))?;
    let mut rows: Vec<Row> = vec![];
    for batch in reader {
        let first = rows.len();
        let batch = batch
            .with_context(|| format!("{}: decoding near row {}", path.display(), first + 1))?;
        rows.extend((0..batch.num_rows()).map(|i| Row {
            at: first + i + 1,
            fields: Vec::with_capacity(columns.len()),
        }));
        for (c, array) in batch.columns().iter().enumerate() {
            let text = arrow::compute::cast(array, &DataType::LargeUtf8).with_context(|| {
                format!(
                    "{}: column \"{}\": cannot be read as text ({})",
                    path.display(),
                    columns[c],
                    array.data_type()
                )
            })?;
            let text = text.as_string::<i64>();
            for i in 0..text.len() {
                let v = text.is_valid(i).then(|| text.value(i).to_string());
                rows[first + i].fields.push(v);
            }
        }
    }
    Ok(Table {
        path: path.to_path_buf(),
        columns,
        rows,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn values(t: &Table) -> Vec<Vec<Option<&str>>> {
        t.rows
            .iter()
            .map(|r| r.fields.iter().map(|f| f.as_deref()).collect())
            .collect()
    }

    #[test]
    fn tsv_has_no_quoting_and_keeps_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "a.tsv",
            "s\tlabel\r\n\"it's\" a \"film\tpositive\r\n\r\nb\tnegative\n",
        );
        let t = read(&p).unwrap();
        assert_eq!(t.columns, ["s", "label"]);
        assert_eq!(
            values(&t),
            [
                vec![Some("\"it's\" a \"film"), Some("positive")],
                vec![Some("b"), Some("negative")]
            ]
        );
        assert_eq!(t.rows.iter().map(|r| r.at).collect::<Vec<_>>(), [2, 4]);
        let t = read_tsv(&p, Some(&["x", "y"])).unwrap();
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[0].at, 1);
    }

    #[test]
    fn csv_quotes_commas_and_newlines() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "a.csv",
            "text,label\n\"a, b\",1\n\"say \"\"hi\"\"\nthere\",0\nplain,2\r\n",
        );
        let t = read(&p).unwrap();
        assert_eq!(t.columns, ["text", "label"]);
        assert_eq!(
            values(&t),
            [
                vec![Some("a, b"), Some("1")],
                vec![Some("say \"hi\"\nthere"), Some("0")],
                vec![Some("plain"), Some("2")]
            ]
        );
        assert_eq!(t.rows.iter().map(|r| r.at).collect::<Vec<_>>(), [2, 3, 5]);
        let bad = write(d.path(), "b.csv", "text,label\n\"open,1\n");
        let e = read(&bad).unwrap_err().to_string();
        assert!(
            e.contains("b.csv: line 2: a quoted field is not closed"),
            "{e}"
        );
    }

    #[test]
    fn jsonl_numbers_and_nulls() {
        let d = tempfile::tempdir().unwrap();
        let p = write(
            d.path(),
            "a.jsonl",
            "{\"text\": \"x\", \"label\": 1}\n\n{\"text\": \"y\", \"label\": null, \"score\": 2.5}\n",
        );
        let t = read(&p).unwrap();
        assert_eq!(
            t.columns,
            ["label", "text", "score"],
            "each object's keys sorted"
        );
        assert_eq!(
            values(&t),
            [
                vec![Some("1"), Some("x"), None],
                vec![None, Some("y"), Some("2.5")]
            ]
        );
        assert_eq!(t.rows[1].at, 3);
        let bad = write(d.path(), "b.jsonl", "{\"a\": 1}\n[1]\n");
        let e = format!("{:#}", read(&bad).unwrap_err());
        assert!(e.contains("b.jsonl: line 2: expected a JSON object"), "{e}");
    }

    #[test]
    fn unknown_extension_is_an_error() {
        let e = read(Path::new("x.xlsx")).unwrap_err().to_string();
        assert!(e.contains("x.xlsx: unknown format"), "{e}");
    }
}
