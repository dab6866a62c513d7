//! Streaming the documents of the corpus files in order, one at a time, so that memory holds
//! one document (plus one line or one Parquet batch), whatever the corpus size. Errors name the
//! file and the line, byte offset or row.
use anyhow::Context;
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::inputs::{Source, SourceKind};

/// How documents are cut out of files.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// JSONL field / Parquet column with the text.
    pub text_field: String,
    /// `.txt`: blank lines separate documents (else one document per file).
    pub txt_blank_line_docs: bool,
}

/// Calls `emit` with every document of `sources`, in order.
pub fn read_documents(
    sources: &[Source],
    opts: &ReadOptions,
    mut emit: impl FnMut(String) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for source in sources {
        let path = &source.path;
        match source.kind {
            SourceKind::Txt if opts.txt_blank_line_docs => read_txt_paragraphs(path, &mut emit)?,
            SourceKind::Txt => read_txt_whole(path, &mut emit)?,
            SourceKind::Jsonl => read_jsonl(path, &opts.text_field, &mut emit)?,
            SourceKind::Parquet => read_parquet(path, &opts.text_field, &mut emit)?,
        }
    }
    Ok(())
}

fn open(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::open(path).with_context(|| format!("{}: cannot open input", path.display()))
}

/// Strips a UTF-8 byte-order mark.
fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// `bytes` as UTF-8, or an error naming the file, line and byte offset of the first bad byte.
/// `line` and `offset` are those of `bytes[0]` in the file.
fn utf8<'a>(bytes: &'a [u8], path: &Path, line: u64, offset: u64) -> anyhow::Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let bad_line = line + good.iter().filter(|&&b| b == b'\n').count() as u64;
        anyhow::anyhow!(
            "{}:{bad_line}: invalid UTF-8 at byte offset {}: expected UTF-8 text, found byte \
             0x{:02x}",
            path.display(),
            offset + e.valid_up_to() as u64,
            bytes[e.valid_up_to()]
        )
    })
}

fn read_txt_whole(
    path: &Path,
    emit: &mut dyn FnMut(String) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    open(path)?
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}: reading", path.display()))?;
    let skip = bytes.len() - strip_bom(&bytes).len();
    let text = utf8(&bytes[skip..], path, 1, skip as u64)?;
    emit(text.to_string())
}

/// Reads `path` line by line (lines keep their `\n`), calling `f(line, line_number, offset)`.
fn for_each_line(
    path: &Path,
    mut f: impl FnMut(&[u8], u64, u64) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut reader = BufReader::with_capacity(1 << 20, open(path)?);
    let mut buf = Vec::new();
    let (mut line, mut offset) = (0u64, 0u64);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("{}: reading at byte offset {offset}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        line += 1;
        let bytes = if line == 1 { strip_bom(&buf) } else { &buf[..] };
        let skip = (buf.len() - bytes.len()) as u64;
        f(bytes, line, offset + skip)?;
        offset += n as u64;
    }
}

fn read_txt_paragraphs(
    path: &Path,
    emit: &mut dyn FnMut(String) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut doc = String::new();
    for_each_line(path, |bytes, line, offset| {
        let text = utf8(bytes, path, line, offset)?;
        if text.trim().is_empty() {
            if !doc.is_empty() {
                emit(std::mem::take(&mut doc))?;
            }
        } else {
            doc.push_str(text);
        }
        Ok(())
    })?;
    if !doc.is_empty() {
        emit(doc)?;
    }
    Ok(())
}

fn read_jsonl(
    path: &Path,
    field: &str,
    emit: &mut dyn FnMut(String) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for_each_line(path, |bytes, line, offset| {
        let text = utf8(bytes, path, line, offset)?;
        if text.trim().is_empty() {
            return Ok(());
        }
        let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}:{line}: byte offset {offset}: expected a JSON object, found invalid \
                     JSON ({e})",
                    path.display()
                )
            })?;
        match object.remove(field) {
            Some(serde_json::Value::String(s)) => emit(s),
            Some(other) => anyhow::bail!(
                "{}:{line}: field \"{field}\": expected a string, found {}",
                path.display(),
                json_kind(&other)
            ),
            None => anyhow::bail!(
                "{}:{line}: field \"{field}\": expected it in every line, found only {:?} \
                 (choose the field with --text-field)",
                path.display(),
                object.keys().collect::<Vec<_>>()
            ),
        }
    })
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn read_parquet(
    path: &Path,
    column: &str,
    emit: &mut dyn FnMut(String) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(open(path)?)
        .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
    let schema = builder.schema().clone();
    let (index, field) = schema.column_with_name(column).with_context(|| {
        format!(
            "{}: column \"{column}\": expected a string column, found only {:?} (choose it with \
             --text-field)",
            path.display(),
            schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
        )
    })?;
    anyhow::ensure!(
        matches!(
            field.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        "{}: column \"{column}\": expected a string column, found {}",
        path.display(),
        field.data_type()
    );
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(1024)
        .build()
        .with_context(|| format!("{}: reading", path.display()))?;
    let mut row = 0u64;
    for batch in reader {
        let batch =
            batch.with_context(|| format!("{}: decoding near row {row}", path.display()))?;
        let array = batch.column(0);
        let texts = arrow::compute::cast(array, &DataType::LargeUtf8)?;
        let texts = texts.as_string::<i64>();
        for i in 0..texts.len() {
            anyhow::ensure!(
                texts.is_valid(i),
                "{}: row {}: column \"{column}\": expected a string, found null",
                path.display(),
                row + i as u64
            );
            emit(texts.value(i).to_string())?;
        }
        row += texts.len() as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(path: &Path, kind: SourceKind, blank: bool) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let opts = ReadOptions {
            text_field: "text".into(),
            txt_blank_line_docs: blank,
        };
        let src = [Source {
            path: path.to_owned(),
            kind,
        }];
        read_documents(&src, &opts, |d| {
            out.push(d);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn txt_whole_and_paragraphs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "\u{feff}one\ntwo\n\n  \nthree\n").unwrap();
        assert_eq!(
            docs(&p, SourceKind::Txt, false).unwrap(),
            vec!["one\ntwo\n\n  \nthree\n"]
        );
        assert_eq!(
            docs(&p, SourceKind::Txt, true).unwrap(),
            vec!["one\ntwo\n", "three\n"]
        );
    }

    #[test]
    fn invalid_utf8_names_line_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.txt");
        std::fs::write(&p, b"ok\nfine\nba\xffd\n").unwrap();
        for blank in [false, true] {
            let err = format!("{:#}", docs(&p, SourceKind::Txt, blank).unwrap_err());
            assert!(
                err.contains("bad.txt:3: invalid UTF-8 at byte offset 10"),
                "{err}"
            );
        }
    }

    #[test]
    fn jsonl_errors_name_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(&p, "{\"text\": \"a\"}\n\n{\"body\": \"b\"}\n").unwrap();
        let err = format!("{:#}", docs(&p, SourceKind::Jsonl, false).unwrap_err());
        assert!(err.contains("c.jsonl:3: field \"text\""), "{err}");
        assert!(err.contains("\"body\""), "{err}");
        std::fs::write(&p, "{\"text\": 3}\n").unwrap();
        let err = format!("{:#}", docs(&p, SourceKind::Jsonl, false).unwrap_err());
        assert!(
            err.contains("c.jsonl:1: field \"text\": expected a string, found a number"),
            "{err}"
        );
        std::fs::write(&p, "{\"text\": \"a\"}\n{\"text\": \n").unwrap();
        let err = format!("{:#}", docs(&p, SourceKind::Jsonl, false).unwrap_err());
        assert!(
            err.contains("c.jsonl:2: byte offset 14: expected a JSON object"),
            "{err}"
        );
    }
}
