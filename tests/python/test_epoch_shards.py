"""Epoch shards written by `preprocess --epoch E` read back with pyarrow, checked against
data-spec/epoch.md, with auxiliary models saved by Hugging Face transformers (ELECTRA and BERT).

Needs the release binaries (`cargo build --release --bins`); finds them in $FAST_ELECTRA_BIN_DIR,
else $CARGO_TARGET_DIR/release, else target/release.
"""
import hashlib
import json
import os
import pathlib
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, ElectraConfig, ElectraForMaskedLM
from shared_data import SHARED

REPO = pathlib.Path(__file__).resolve().parents[2]
SPECIAL = {0, 101, 102, 103}


def binary(name):
    if "FAST_ELECTRA_BIN_DIR" in os.environ:
        d = pathlib.Path(os.environ["FAST_ELECTRA_BIN_DIR"])
    elif "CARGO_TARGET_DIR" in os.environ:
        d = pathlib.Path(os.environ["CARGO_TARGET_DIR"]) / "release"
    else:
        d = REPO / "target" / "release"
    path = d / name
    if not path.exists():
        pytest.fail(f"{path} is not built: run `cargo build --release --bins`")
    return str(path)


def run(*args):
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    out = subprocess.run([binary("preprocess"), *map(str, args)], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 0, out.stderr
    return out


def tiny_aux(kind, path):
    torch.manual_seed(0)
    dims = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64, max_position_embeddings=128)
    if kind == "electra":
        model = ElectraForMaskedLM(ElectraConfig(embedding_size=32, **dims))
    else:
        model = BertForMaskedLM(BertConfig(**dims))
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("epoch")
    text = (SHARED / "corpus" / "moby-dick.txt").read_text()[:30000]
    (root / "slice.txt").write_text(text)
    tokens = root / "tokens"
    run("tokenize", "--input", root / "slice.txt", "--tokenizer",
        SHARED / "tokenizers" / "bert-base-uncased" / "tokenizer.json", "--out", tokens,
        "--max-seq-len", 64, "--rows-per-shard", 50, "--row-group-rows", 16)
    epochs = {}
    for kind in ("electra", "bert"):
        aux = tiny_aux(kind, root / f"aux-{kind}")
        out = root / f"out-{kind}"
        run("--epoch", 1, "--epochs", 3, "--tokens", tokens, "--aux-model", aux, "--out", out,
            "--device", "cpu", "--threads", 1, "--batch-size", 8)
        epochs[kind] = out / "epoch-001"
    return tokens, epochs


def token_rows(tokens):
    rows = {}
    for f in sorted(tokens.glob("part-*.parquet")):
        t = pq.read_table(f).to_pydict()
        rows.update(zip(t["sequence_id"], t["input_ids"]))
    return rows


EXPECTED_SCHEMA = pa.schema([
    pa.field("sequence_id", pa.uint64(), nullable=False),
    pa.field("input_ids", pa.list_(pa.field("item", pa.int32(), nullable=False)), nullable=False),
    pa.field("targets", pa.list_(pa.field("item", pa.int8(), nullable=False)), nullable=False),
    pa.field("masked_positions", pa.list_(pa.field("item", pa.int32(), nullable=False)),
             nullable=False),
    pa.field("original_ids", pa.list_(pa.field("item", pa.int32(), nullable=False)),
             nullable=False),
])


@pytest.mark.parametrize("kind", ["electra", "bert"])
def test_pyarrow_reads_every_file_and_metadata_matches_manifest(data, kind):
    _, epochs = data
    folder = epochs[kind]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "epoch" and manifest["epoch"] == 1 and manifest["epochs"] == 3
    assert manifest["aux_model"]["architecture"] == (
        "ElectraForMaskedLM" if kind == "electra" else "BertForMaskedLM")
    files = sorted(folder.glob("part-*.parquet"))
    assert [s["file"] for s in manifest["shards"]] == [f.name for f in files]
    assert len(files) >= 2
    total_rows = 0
    for f, entry in zip(files, manifest["shards"]):
        data_bytes = f.read_bytes()
        assert entry["bytes"] == len(data_bytes)
        assert entry["sha256"] == hashlib.sha256(data_bytes).hexdigest()
        pf = pq.ParquetFile(f)
        assert pf.schema_arrow.remove_metadata() == EXPECTED_SCHEMA
        assert pf.metadata.row_group(0).column(1).compression == "ZSTD"
        meta = {k.decode(): v.decode() for k, v in pf.metadata.metadata.items()}
        assert meta["fast_electra.kind"] == "epoch"
        assert meta["fast_electra.data_spec_version"] == "2"
        assert meta["fast_electra.epoch"] == "1"
        settings = meta["fast_electra.epoch_settings"]
        assert hashlib.sha256(settings.encode()).hexdigest() == meta["fast_electra.settings_fingerprint"]
        assert meta["fast_electra.settings_fingerprint"] == manifest["settings_fingerprint"]
        s = json.loads(settings)
        assert s["temperature"] == manifest["temperature"] == float(meta["fast_electra.temperature"])
        assert s["aux_model_sha256"] == manifest["aux_model"]["sha256"]
        assert s["tokenizer_sha256"] == manifest["tokenizer"]["sha256"]
        assert s["schedule"] == manifest["schedule"]
        stats = json.loads(meta["fast_electra.shard_stats"])
        table = pf.read()
        assert stats["rows"] == table.num_rows == entry["rows"]
        assert stats["tokens"] == entry["tokens"] == sum(len(r) for r in table["input_ids"].to_pylist())
        assert meta["fast_electra.source_shard"] == f.name
        total_rows += table.num_rows
    assert total_rows == manifest["num_sequences"]


@pytest.mark.parametrize("kind", ["electra", "bert"])
def test_targets_mark_exactly_the_replaced_tokens(data, kind):
    tokens, epochs = data
    originals = token_rows(tokens)
    masked = replaced = 0
    seen = set()
    for f in sorted(epochs[kind].glob("part-*.parquet")):
        t = pq.read_table(f).to_pydict()
        for sid, ids, targets, positions, orig in zip(t["sequence_id"], t["input_ids"], t["targets"],
                                                       t["masked_positions"], t["original_ids"]):
            seen.add(sid)
            clean = originals[sid]
            assert len(ids) == len(targets) == len(clean)
            assert len(positions) == len(orig) and positions == sorted(set(positions))
            candidates = sum(1 for x in clean if x not in SPECIAL)
            assert len(positions) == max(1, int(0.15 * candidates + 0.5))
            rebuilt = list(ids)
            for p, o in zip(positions, orig):
                assert clean[p] == o and o not in SPECIAL
                rebuilt[p] = o
            assert rebuilt == clean
            for i, (x, y) in enumerate(zip(ids, clean)):
                assert targets[i] == (1 if x != y else 0)
                if i not in positions:
                    assert x == y
            masked += len(positions)
            replaced += sum(targets)
    assert seen == set(originals)
    manifest = json.loads((epochs[kind] / "manifest.json").read_text())
    assert (manifest["num_masked"], manifest["num_replaced"]) == (masked, replaced)
