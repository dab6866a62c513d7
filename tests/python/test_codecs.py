"""Every Parquet codec pyarrow writes is read.

pandas, polars and Hugging Face datasets write Parquet through pyarrow, snappy by default. A corpus
saved by pyarrow in each codec tokenizes to the same rows as the JSON-lines original; token shards
and epoch shards that pyarrow re-encodes in each codec (metadata kept, manifest updated) decode in
the trainer's loader to exactly the rows the project wrote (the project's decode, dumped by
`trainer loader-bench --debug-dump-rows`, against pyarrow's reading of the project's own files).
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


def reencode(src: Path, dst: Path, codec: str):
    """A copy of the shard folder `src` at `dst` with every shard re-encoded by pyarrow in `codec`,
    its key-value metadata (data-spec: every reader checks it) kept and the manifest listing the
    new files' bytes and SHA-256."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    for entry in manifest["shards"]:
        path = dst / entry["file"]
        kv = pq.ParquetFile(path).metadata.metadata
        table = pq.read_table(path).replace_schema_metadata(
            {k: v for k, v in kv.items() if k != b"ARROW:schema"})
        pq.write_table(table, path, compression=codec, row_group_size=64)
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == \
            codec.replace("NONE", "UNCOMPRESSED")
        data = path.read_bytes()
        entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def decoded(folder: Path, objective: str, out: Path):
    """The rows as the project's loader decodes them (`trainer loader-bench --debug-dump-rows`,
    the trainer's own decoder and row checks): {sequence_id: (ids, targets)}."""
    dump = out / f"{folder.name}.rows.jsonl"
    done = subprocess.run(
        [str(binary("trainer")), "loader-bench", "--objective", objective, "--shards", str(folder),
         "--threads", "1", "--batch-size", "4", "--debug-dump-rows", str(dump)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in dump.read_text().splitlines():
        r = json.loads(line)
        assert r["sequence_id"] not in rows, r["sequence_id"]
        rows[r["sequence_id"]] = (r["ids"], r["targets"])
    return rows


def written(folder: Path, column: str):
    """What the project wrote into `folder`, read by pyarrow: {sequence_id: (ids, targets)}."""
    out = {}
    for entry in json.loads((folder / "manifest.json").read_text())["shards"]:
        for r in pq.read_table(folder / entry["file"]).to_pylist():
            out[r["sequence_id"]] = (r[column], r.get("targets", []))
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_token_shards_reencoded_in_each_codec_decode_to_what_the_project_wrote(corpus, codec):
    tmp, _, reference = corpus
    folder = tmp / f"reencoded-{codec.lower()}"
    reencode(reference, folder, codec)
    want = written(reference, "input_ids")
    assert len(want) > 100
    assert decoded(folder, "mlm", tmp) == want


@pytest.fixture(scope="module")
def epoch(corpus):
    """Epoch 0 of the corpus's tokens, corrupted by the project (uniform replacements: no
    auxiliary model needed)."""
    tmp, _, reference = corpus
    subprocess.run(
        [str(binary("preprocess")), "--epoch", "0", "--epochs", "1", "--distribution", "uniform",
         "--tokens", str(reference), "--out", str(tmp / "epochs"), "--device", "cpu"],
        check=True, capture_output=True,
    )
    return tmp / "epochs" / "epoch-000"


@pytest.mark.parametrize("codec", CODECS)
def test_epoch_shards_reencoded_in_each_codec_decode_to_what_the_project_wrote(corpus, epoch,
                                                                              codec):
    tmp = corpus[0]
    folder = tmp / f"epoch-reencoded-{codec.lower()}"
    reencode(epoch, folder, codec)
    want = written(epoch, "input_ids")
    assert len(want) > 100 and any(1 in t for _, t in want.values()), "some tokens replaced"
    assert decoded(folder, "rtd", tmp) == want
