"""Every Parquet codec pyarrow writes is read.

pandas, polars and Hugging Face datasets write Parquet through pyarrow, snappy by default. A corpus
saved by pyarrow in each codec tokenizes to the same rows as the JSON-lines original, and token
shards that pyarrow re-encodes in each codec (manifest updated) load in the trainer's loader.
"""
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from shared_data import SHARED, TOKENIZER, binary

CODECS = ["NONE", "SNAPPY", "GZIP", "LZ4", "BROTLI", "ZSTD"]


def tokenize(inputs, out: Path):
    subprocess.run(
        [str(binary("preprocess")), "tokenize", "--input", *map(str, inputs), "--tokenizer",
         str(TOKENIZER), "--out", str(out), "--max-seq-len", "64", "--rows-per-shard", "200",
         "--row-group-rows", "64"],
        check=True, capture_output=True,
    )


def rows(folder: Path):
    manifest = json.loads((folder / "manifest.json").read_text())
    return [
        (r["sequence_id"], r["input_ids"])
        for e in manifest["shards"]
        for r in pq.read_table(folder / e["file"]).to_pylist()
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("codecs")
    lines = (SHARED / "corpus" / "sotu.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    jsonl = tmp / "sotu-4.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    docs = [json.loads(line)["text"] for line in lines]
    reference = tmp / "from-jsonl"
    tokenize([jsonl], reference)
    return tmp, docs, reference


@pytest.mark.parametrize("codec", CODECS)
def test_a_corpus_in_each_codec_tokenizes_like_the_original(corpus, codec):
    tmp, docs, reference = corpus
    path = tmp / f"corpus-{codec.lower()}.parquet"
    pq.write_table(pa.table({"text": docs}), path, compression=codec)
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == codec.replace(
        "NONE", "UNCOMPRESSED")
    out = tmp / f"tokens-{codec.lower()}"
    tokenize([path], out)
    assert rows(out) == rows(reference)


@pytest.mark.parametrize("codec", CODECS)
def test_token_shards_reencoded_in_each_codec_load(corpus, codec):
    tmp, _, reference = corpus
    folder = tmp / f"reencoded-{codec.lower()}"
    shutil.copytree(reference, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["shards"]:
        path = folder / entry["file"]
        # The shard's key-value metadata (data-spec: every reader checks it) rides along.
        kv = pq.ParquetFile(path).metadata.metadata
        table = pq.read_table(path).replace_schema_metadata(
            {k: v for k, v in kv.items() if k != b"ARROW:schema"})
        pq.write_table(table, path, compression=codec, row_group_size=64)
        data = path.read_bytes()
        entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    done = subprocess.run(
        [str(binary("trainer")), "loader-bench", "--objective", "mlm", "--shards", str(folder),
         "--threads", "1", "--batch-size", "4"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    assert f"loader-bench: {manifest['num_sequences'] // 4 * 4} sequences" in done.stdout + \
        done.stderr
    assert rows(folder) == rows(reference)
