"""A run's TensorBoard event files, read by TensorBoard's own reader (the `tensorboard` package).

Runs the built `preprocess` and `trainer` (cargo build --release --bins; scripts/test does it) on
a slice of the shared corpus: token shards, one epoch corrupted by a tiny random auxiliary model
(so the epoch has a temperature) and a validation epoch; then one RTD run stopped twice and
resumed twice (`--debug-stop-after`, `--resume`), and checks after every invocation that:
- TensorBoard's two loaders (`EventAccumulator`, and `plugin_event_accumulator`, which the
  `tensorboard` server uses without its Rust data server) find, for every number of every line
  of `metrics.jsonl`, the tag
  `<group>/<field>` with a point at the line's step whose value is the line's value rounded to
  fp32 (TensorBoard stores `simple_value` as fp32; rounding to nearest makes them equal, so the
  test compares exactly), and no other point: the updates a resume discarded are gone;
- each invocation wrote one new event file, named as TensorBoard names them and read in the
  order written, starting with `file_version` "brain.Event:2" and the `SessionLog` START at the
  first update the invocation logs (k + 1 after a resume from the checkpoint at update k, 1 for
  the fresh start, which `plugin_event_accumulator` needs to take the later ones for restarts);
  without honouring them the reader shows the discarded updates twice (the control);
- the files' bytes are TensorBoard's own framing of TensorBoard's own encoding of each event;
- a flipped byte (in a length or a payload) fails TensorBoard's CRC check.
And that `--no-tensorboard` writes none, `--tensorboard-dir` puts them elsewhere, and a fresh run
refuses a folder that holds another run's event files.
"""
import json
import math
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.tensorflow_stub import errors
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util
from shared_data import SHARED, TOKENIZER, binary

# The group of each field of a metrics line (README, "TensorBoard"); other numbers of a training
# line are the objective's own figures, under train/.
PERF = {"seq_per_s", "tokens_per_s", "mfu", "peak_memory_bytes", "data_wait_fraction"}
CURRICULUM = {"epoch", "temperature"}
STEPS = 12
COMMON = ["--model", "tiny", "--batch-size", "4", "--warmup-steps", "2", "--log-every", "2", "--validate-every", "4", "--checkpoint-every", "4",
          "--device", "cpu", "--loader-threads", "1"]


def run(name, *args, ok=True):
    out = subprocess.run([str(binary(name)), *map(str, args)], capture_output=True, text=True)
    assert (out.returncode == 0) == ok, out.stderr
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import torch
    from transformers import ElectraConfig, ElectraForMaskedLM
    tmp = tmp_path_factory.mktemp("tensorboard")
    lines = (SHARED / "corpus" / "sotu.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    corpus = tmp / "sotu-4.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokens = tmp / "tokens"
    run("preprocess", "tokenize", "--input", corpus, "--tokenizer", TOKENIZER, "--out", tokens,
        "--max-seq-len", "32", "--validation-fraction", "0.25", "--row-group-rows", "16")
    torch.manual_seed(0)
    aux = tmp / "aux"
    ElectraForMaskedLM(ElectraConfig(
        vocab_size=30522, embedding_size=8, hidden_size=8, num_hidden_layers=1,
        num_attention_heads=1, intermediate_size=16, max_position_embeddings=32,
    )).save_pretrained(aux)
    for toks, out in [(tokens, tmp / "data"), (tokens / "validation", tmp / "val")]:
        run("preprocess", "--epoch", "1", "--epochs", "2", "--tokens", toks, "--aux-model", aux,
            "--out", out, "--device", "cpu", "--threads", "1")
    return {"tmp": tmp, "train": tmp / "data" / "epoch-001", "val": tmp / "val" / "epoch-001"}


def train(data, run_dir, *extra, steps=STEPS, ok=True):
    return run("trainer", "--shards", data["train"], "--validation", data["val"], "--run-dir",
               run_dir, "--max-steps", steps, *COMMON, *extra, ok=ok)


def group(split, field):
    if split == "validation":
        return "val"
    return "perf" if field in PERF else "curriculum" if field in CURRICULUM else "train"


def expected(run_dir):
    """{tag: [(step, fp32 value)]} of every number of metrics.jsonl."""
    want = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        for field, v in rec.items():
            if field in ("split", "step") or v is None:
                continue
            assert isinstance(v, (int, float)), (field, v)
            want.setdefault(f"{group(rec['split'], field)}/{field}", []).append(
                (rec["step"], float(np.float32(v))))
    return want


def found(tb_dir, purge=True):
    """{tag: [(step, value)]} as `EventAccumulator` reads the folder (every point kept)."""
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0},
                           purge_orphaned_data=purge).Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


def found_by_server(tb_dir):
    """The same as the `tensorboard` server's Python loader reads it (scalars become tensors)."""
    acc = plugin_event_accumulator.EventAccumulator(
        str(tb_dir), size_guidance={"tensors": 0}).Reload()
    return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto).item()))
                  for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}


def events(path):
    return [Event.FromString(r) for r in RawEventFileLoader(str(path)).Load()]


def event_files(tb_dir):
    return sorted(p for p in tb_dir.iterdir() if "tfevents" in p.name)


def check_same(run_dir, tb_dir):
    want = expected(run_dir)
    for got in [found(tb_dir), found_by_server(tb_dir)]:
        assert set(got) == set(want)
        for tag in want:
            assert got[tag] == want[tag], tag
    return want


@pytest.fixture(scope="module")
def resumed(data):
    """The run stopped twice and resumed twice; what TensorBoard shows after each invocation."""
    run_dir = data["tmp"] / "run"
    tb = run_dir / "tensorboard"
    seen = []
    for extra in [("--debug-stop-after", "6"), ("--resume", "--debug-stop-after", "6"),
                  ("--resume",)]:
        train(data, run_dir, *extra)
        seen.append((check_same(run_dir, tb), found(tb, purge=False), event_files(tb)))
    return {"run": run_dir, "tb": tb, "seen": seen}


def test_every_number_of_metrics_jsonl_is_a_scalar_at_its_step_before_and_after_resumes(resumed):
    (first, _, _), (second, _, _), (last, _, files) = resumed["seen"]
    # The first invocation logged updates 2, 4 and 6 (checkpoint 4); the second resumed at 4 and
    # logged 6, 8 and 10 (checkpoint 8); the last resumed at 8 and finished.
    assert [s for s, _ in first["train/loss"]] == [2, 4, 6]
    assert [s for s, _ in second["train/loss"]] == [2, 4, 6, 8, 10]
    assert [s for s, _ in last["train/loss"]] == [2, 4, 6, 8, 10, 12]
    assert [s for s, _ in last["val/auc"]] == [4, 8, 12]
    for tag in ["train/accuracy", "train/f1", "train/grad_norm", "train/lr", "perf/seq_per_s",
                "perf/tokens_per_s", "perf/data_wait_fraction", "curriculum/temperature",
                "curriculum/epoch", "val/loss", "val/f1", "val/baseline_accuracy"]:
        assert tag in last, tag
    # The epoch's temperature: T(1/2) of the exp schedule, T0 = 2, tau = 0.1.
    t = 1 + math.exp(-0.5 / 0.1)
    assert all(v == np.float32(t) for _, v in last["curriculum/temperature"])
    # Steps 6 and 10 of the resumed runs replaced the discarded ones (their throughput differs).
    assert first["perf/seq_per_s"][2] != last["perf/seq_per_s"][2]
    assert second["perf/seq_per_s"][4] != last["perf/seq_per_s"][4]
    assert len(files) == 3


def test_a_resume_purges_the_discarded_updates_as_summary_writer_purge_step_does(resumed):
    files = resumed["seen"][-1][2]
    assert [f.name.split(".")[:3] for f in files] == [["events", "out", "tfevents"]] * 3
    # Each invocation added one file, read after the ones before it.
    assert [len(s[2]) for s in resumed["seen"]] == [1, 2, 3]
    assert all(s[2] == files[:i + 1] for i, s in enumerate(resumed["seen"]))
    firsts = [events(f)[:2] for f in files]
    for ev in firsts:
        assert ev[0].file_version == "brain.Event:2"
    for ev, purge in zip(firsts, [1, 5, 9]):
        assert ev[1].session_log.status == SessionLog.START and ev[1].step == purge
    # The first file still holds the discarded update 6, the second the discarded update 10: only
    # the START events make the reader drop them.
    assert 6 in [e.step for e in events(files[0]) if e.HasField("summary")]
    assert 10 in [e.step for e in events(files[1]) if e.HasField("summary")]
    unpurged = resumed["seen"][-1][1]
    assert [s for s, _ in unpurged["train/loss"]] == [2, 4, 6, 6, 8, 10, 10, 12]


def test_the_servers_loader_needs_the_fresh_runs_start(resumed, tmp_path):
    # The same folder with the fresh start's START event taken out of the first file, as
    # PyTorch's SummaryWriter writes a run's first file: the server's loader then takes the
    # first resume's START for the run's start and keeps the update it discarded.
    files = resumed["seen"][-1][2]
    for f in files:
        shutil.copy(f, tmp_path / f.name)
    first = tmp_path / files[0].name
    records = list(RawEventFileLoader(str(files[0])).Load())
    assert Event.FromString(records[1]).HasField("session_log")
    sink = _BytesSink()
    writer = RecordWriter(sink)
    for r in records[:1] + records[2:]:
        writer.write(r)
    first.write_bytes(sink.data)
    steps = [s for s, _ in found_by_server(tmp_path)["train/loss"]]
    assert steps == [2, 4, 6, 6, 8, 10, 12]
    assert [s for s, _ in found_by_server(resumed["tb"])["train/loss"]] == [2, 4, 6, 8, 10, 12]


def test_the_bytes_are_tensorboards_framing_of_tensorboards_encoding(resumed):
    for path in resumed["seen"][-1][2]:
        records = list(RawEventFileLoader(str(path)).Load())
        assert len(records) >= 2
        framed = _BytesSink()
        writer = RecordWriter(framed)
        for r in records:
            assert Event.FromString(r).SerializeToString() == r
            writer.write(r)
        assert framed.data == path.read_bytes()


class _BytesSink:
    def __init__(self):
        self.data = b""

    def write(self, b):
        self.data += b

    def flush(self):
        pass


def read_all(path):
    reader = PyRecordReader_New(str(path), 0, None)
    n = 0
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            return n
        n += 1


def test_a_flipped_byte_fails_tensorboards_crc_check(resumed, tmp_path):
    src = resumed["seen"][-1][2][0]
    raw = src.read_bytes()
    assert read_all(src) == len(events(src))
    # The third record (the first summary): its length, then a byte in the middle of its payload.
    at = 0
    for _ in range(2):
        at += 12 + struct.unpack("<Q", raw[at:at + 8])[0] + 4
    length = struct.unpack("<Q", raw[at:at + 8])[0]
    for offset, what in [(at + 1, "header crc32"), (at + 12 + length // 2, "crc32")]:
        bad = bytearray(raw)
        bad[offset] ^= 0x01
        path = tmp_path / src.name
        path.write_bytes(bytes(bad))
        with pytest.raises(errors.DataLossError, match=what):
            read_all(path)


def test_no_tensorboard_writes_none_and_a_given_folder_is_used_once(data):
    off = data["tmp"] / "off"
    train(data, off, "--no-tensorboard", steps=2)
    assert not (off / "tensorboard").exists() and (off / "metrics.jsonl").exists()
    elsewhere = data["tmp"] / "tb-elsewhere"
    there = data["tmp"] / "there"
    train(data, there, "--tensorboard-dir", elsewhere, steps=2)
    assert not (there / "tensorboard").exists()
    check_same(there, elsewhere)
    out = train(data, data["tmp"] / "again", "--tensorboard-dir", elsewhere, steps=2, ok=False)
    assert "--tensorboard-dir" in out.stderr and "without event files" in out.stderr, out.stderr
    shutil.rmtree(data["tmp"] / "again", ignore_errors=True)
