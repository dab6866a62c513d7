"""Token shards read by pyarrow satisfy data-spec "Token shards" / "Token manifest".

Runs the built `preprocess` (cargo build --release --bins; scripts/test does it) on a small slice
of the shared corpus, then checks every invariant the spec promises with pyarrow, and the packing
rule against the Python `tokenizers` package encoding the same documents independently.
"""
import hashlib
import json
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer
from shared_data import SHARED, TOKENIZER, binary

MAX_SEQ_LEN, MIN_TAIL, ROWS_PER_SHARD, ROW_GROUP_ROWS = 96, 16, 150, 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tokens")
    lines = (SHARED / "corpus" / "sotu.jsonl").read_text(encoding="utf-8").splitlines()[:8]
    corpus = tmp / "sotu-8.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    docs = [json.loads(line)["text"] for line in lines]
    out = tmp / "out"
    subprocess.run(
        [str(binary("preprocess")), "tokenize", "--input", str(corpus), "--tokenizer",
         str(TOKENIZER), "--out", str(out), "--max-seq-len", str(MAX_SEQ_LEN),
         "--min-tail", str(MIN_TAIL), "--rows-per-shard", str(ROWS_PER_SHARD),
         "--row-group-rows", str(ROW_GROUP_ROWS), "--validation-fraction", "0.3",
         "--split-seed", "3"],
        check=True, capture_output=True,
    )
    return out, docs


def read_split(folder: Path):
    manifest = json.loads((folder / "manifest.json").read_text())
    tables = []
    for entry in manifest["shards"]:
        path = folder / entry["file"]
        data = path.read_bytes()
        assert len(data) == entry["bytes"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        tables.append((path, pq.ParquetFile(path)))
    return manifest, tables


def test_schema_metadata_and_layout(dataset):
    out, _ = dataset
    for folder, split in [(out, "train"), (out / "validation", "validation")]:
        manifest, tables = read_split(folder)
        assert manifest["data_spec_version"] == 2 and manifest["kind"] == "tokens"
        assert manifest["split"] == split and manifest["max_seq_len"] == MAX_SEQ_LEN
        assert [e["file"] for e in manifest["shards"]] == [
            f"part-{i:05d}.parquet" for i in range(len(manifest["shards"]))]
        expected = pa.schema([
            pa.field("sequence_id", pa.uint64(), nullable=False),
            pa.field("doc_id", pa.uint64(), nullable=False),
            pa.field("input_ids", pa.list_(pa.field("item", pa.int32(), nullable=False)),
                     nullable=False),
        ])
        for i, (path, f) in enumerate(tables):
            assert f.schema_arrow.equals(expected), f.schema_arrow
            kv = {k.decode(): v.decode() for k, v in f.metadata.metadata.items()}
            assert kv["fast_electra.data_spec_version"] == "2"
            assert kv["fast_electra.kind"] == "tokens"
            assert kv["fast_electra.split"] == split
            assert kv["fast_electra.dataset_fingerprint"] == manifest["dataset_fingerprint"]
            assert kv["fast_electra.tokenizer_sha256"] == manifest["tokenizer"]["sha256"]
            assert kv["fast_electra.max_seq_len"] == str(MAX_SEQ_LEN)
            assert kv["fast_electra.vocab_size"] == str(manifest["tokenizer"]["vocab_size"])
            rows = f.metadata.num_rows
            assert rows == manifest["shards"][i]["rows"]
            # Full shards except the last one; row groups of at most ROW_GROUP_ROWS rows.
            if i + 1 < len(tables):
                assert rows == ROWS_PER_SHARD
            for g in range(f.metadata.num_row_groups):
                group = f.metadata.row_group(g)
                assert group.num_rows <= ROW_GROUP_ROWS
                for c in range(group.num_columns):
                    assert group.column(c).compression == "ZSTD"
    train = json.loads((out / "manifest.json").read_text())
    val = json.loads((out / "validation" / "manifest.json").read_text())
    assert train["dataset_fingerprint"] == val["dataset_fingerprint"]
    assert train["tokenizer"]["sha256"] == hashlib.sha256(TOKENIZER.read_bytes()).hexdigest()
    assert train["tokenizer"]["special_tokens"] == {
        "cls": 101, "sep": 102, "mask": 103, "pad": 0, "unk": 100}
    assert train["tokenizer"]["vocab_size"] == 30522


def test_term_frequency_equals_a_pyarrow_recount(dataset):
    """data-spec "Term frequency": one row per id, the training split's counts, SHA-256 listed."""
    out, _ = dataset
    manifest, tables = read_split(out)
    entry = manifest["term_frequency"]
    path = out / entry["file"]
    assert entry["file"] == "term_frequency.parquet"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    tf = pq.read_table(path)
    assert tf.schema.equals(pa.schema([pa.field("token_id", pa.uint32(), nullable=False),
                                       pa.field("count", pa.uint64(), nullable=False)]))
    kv = {k.decode(): v.decode() for k, v in pq.ParquetFile(path).metadata.metadata.items()}
    assert kv["fast_electra.kind"] == "term_frequency"
    assert kv["fast_electra.dataset_fingerprint"] == manifest["dataset_fingerprint"]
    vocab = manifest["tokenizer"]["vocab_size"]
    assert tf.column("token_id").to_pylist() == list(range(vocab))
    recount = [0] * vocab
    for _, f in tables:
        for row in f.read().column("input_ids").to_pylist():
            for i in row:
                recount[i] += 1
    assert tf.column("count").to_pylist() == recount
    assert entry["tokens"] == sum(recount) == manifest["num_tokens"]
    val = json.loads((out / "validation" / "manifest.json").read_text())
    assert "term_frequency" not in val


def test_rows_and_packing_match_an_independent_encoding(dataset):
    out, docs = dataset
    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.no_truncation()
    tok.no_padding()
    tok.encode_special_tokens = True
    body = MAX_SEQ_LEN - 2
    seen_docs = {}
    for folder in [out, out / "validation"]:
        manifest, tables = read_split(folder)
        table = pa.concat_tables([f.read() for _, f in tables])
        seq = table.column("sequence_id").to_pylist()
        doc_ids = table.column("doc_id").to_pylist()
        rows = table.column("input_ids").to_pylist()
        assert seq == list(range(len(rows))) == list(range(manifest["num_sequences"]))
        assert doc_ids == sorted(doc_ids)
        assert sum(len(r) for r in rows) == manifest["num_tokens"]
        assert manifest["num_documents"] == len(set(doc_ids))  # every SOTU speech gives rows
        for doc, row in zip(doc_ids, rows):
            assert 3 <= len(row) <= MAX_SEQ_LEN
            assert row[0] == 101 and row[-1] == 102
            assert not {0, 101, 102, 103} & set(row[1:-1])
            assert max(row) < manifest["tokenizer"]["vocab_size"]
            seen_docs.setdefault(doc, (folder.name, []))
            assert seen_docs[doc][0] == folder.name, "a document is in one split only"
            seen_docs[doc][1].append(row[1:-1])
    assert sorted(seen_docs) == list(range(len(docs)))
    splits = {name for name, _ in seen_docs.values()}
    assert splits == {"out", "validation"}
    for doc_id, (_, bodies) in seen_docs.items():
        ids = tok.encode(docs[doc_id], add_special_tokens=False).ids
        chunks = [ids[i:i + body] for i in range(0, len(ids), body)]
        kept = [c for c in chunks if len(c) >= MIN_TAIL]
        assert bodies == kept, f"document {doc_id}: rows differ from the packing rule"
