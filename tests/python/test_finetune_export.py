"""`trainer finetune`'s best model loads in transformers as `ElectraForSequenceClassification`
and gives the same logits.

Runs the built `trainer finetune` (cargo build --release --bins; scripts/test does it) on two
tiny tasks made here: a sentence-pair classification (3 string labels, so token types and the
label map are exercised) and a single-sentence regression, each from random initialisation of
the `tiny` preset, with `--predict`. Then, for each:
- `OUT/best/` loads with `AutoModelForSequenceClassification` with no missing, unexpected or
  mismatched keys, as `ElectraForSequenceClassification`, with the task's label map and
  problem type;
- transformers' logits on the dev examples, encoded from the exported tokenizer.json as
  `[CLS] a [SEP] b [SEP]` with token types and longest-first truncation, equal the logits the
  trainer wrote (`OUT/best/predictions/<split>.logits.jsonl`) within 1e-4;
- the submission file holds one prediction per test row, in GLUE's `index\tprediction` form;
- TensorBoard's own reader finds, in the run's event folder, `train/loss` and every dev metric
  after each epoch with the values of `results.json` and the update as the step.
"""
import json
import random
import subprocess

import pytest
import torch
from tokenizers import Tokenizer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForSequenceClassification, ElectraForSequenceClassification
from shared_data import TOKENIZER, binary

WORDS = ("the film was a quiet and moving story of two old friends who never meet again but the "
         "plot drags and the acting is wooden though the music is lovely and the ending surprising "
         "a long tedious mess with some bright moments").split()
MAX_LEN = 24


def sentence(rng, lo=3, hi=30):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def finetune(out, *args):
    cmd = [str(binary("trainer")), "finetune", "--model", "tiny", "--init", "random",
           "--tokenizer", TOKENIZER, "--max-seq-len", MAX_LEN, "--lr", "1e-3", "--epochs", "2",
           "--batch-size", "8", "--seeds", "1", "--predict", "--device", "cpu", "--out", out,
           *args]
    run = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return out / "best"


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finetune")
    rng = random.Random(7)
    pair = lambda n: [{"premise": sentence(rng), "hypothesis": sentence(rng),
                       "y": rng.choice(["yes", "maybe", "no"])} for _ in range(n)]
    for split, n in [("train", 48), ("dev", 20), ("test", 12)]:
        write_jsonl(tmp / f"pair-{split}.jsonl", pair(n))
    single = lambda n: [{"text": sentence(rng), "score": round(rng.uniform(-4, 4), 2)}
                        for _ in range(n)]
    for split, n in [("train", 40), ("dev", 16), ("test", 8)]:
        write_jsonl(tmp / f"reg-{split}.jsonl", single(n))
    pair_best = finetune(tmp / "pair", "--task", "toy-nli", "--train", tmp / "pair-train.jsonl",
                         "--dev", tmp / "pair-dev.jsonl", "--test", tmp / "pair-test.jsonl",
                         "--text-fields", "premise,hypothesis", "--label-field", "y")
    reg_best = finetune(tmp / "reg", "--task", "toy-rating", "--train", tmp / "reg-train.jsonl",
                        "--dev", tmp / "reg-dev.jsonl", "--test", tmp / "reg-test.jsonl",
                        "--text-fields", "text", "--label-field", "score", "--regression")
    return {
        "pair": (pair_best, tmp / "pair-dev.jsonl", tmp / "pair-test.jsonl", ("premise", "hypothesis")),
        "reg": (reg_best, tmp / "reg-dev.jsonl", tmp / "reg-test.jsonl", ("text",)),
    }


def encode(tok, a, b):
    """[CLS] a [SEP] (b [SEP]) with token types, longest-first truncation to MAX_LEN."""
    ids_a = tok.encode(a, add_special_tokens=False).ids
    ids_b = tok.encode(b, add_special_tokens=False).ids if b is not None else []
    budget = MAX_LEN - (3 if b is not None else 2)
    while len(ids_a) + len(ids_b) > budget:
        (ids_a if len(ids_a) > len(ids_b) else ids_b).pop()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    ids = [cls] + ids_a + [sep]
    types = [0] * len(ids)
    if b is not None:
        ids += ids_b + [sep]
        types += [1] * (len(ids_b) + 1)
    return ids, types


def logits_of(model, tok, rows, fields):
    out = []
    for r in rows:
        ids, types = encode(tok, r[fields[0]], r[fields[1]] if len(fields) > 1 else None)
        with torch.no_grad():
            z = model(input_ids=torch.tensor([ids]), token_type_ids=torch.tensor([types]),
                      attention_mask=torch.ones(1, len(ids), dtype=torch.long)).logits
        out.append(z[0].tolist())
    return torch.tensor(out)


@pytest.mark.parametrize("name", ["pair", "reg"])
def test_the_best_model_loads_with_the_same_logits(tasks, name):
    best, dev, test, fields = tasks[name]
    model, info = AutoModelForSequenceClassification.from_pretrained(best, output_loading_info=True)
    assert isinstance(model, ElectraForSequenceClassification)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    model.eval()
    if name == "pair":
        assert model.config.problem_type == "single_label_classification"
        assert model.config.id2label == {0: "maybe", 1: "no", 2: "yes"}, "sorted training labels"
    else:
        assert model.config.problem_type == "regression" and model.config.num_labels == 1
    tok = Tokenizer.from_file(str(best / "tokenizer.json"))
    tok.no_truncation()  # the published file carries truncation and padding to 128
    tok.no_padding()
    rows = [json.loads(line) for line in dev.read_text(encoding="utf-8").splitlines()]
    ours_file = next((best / "predictions").glob(f"*{dev.stem}*.logits.jsonl"), None) or \
        next((best / "predictions").glob("dev*.logits.jsonl"))
    ours = [json.loads(line) for line in ours_file.read_text(encoding="utf-8").splitlines()]
    assert len(ours) == len(rows), ours_file
    theirs = logits_of(model, tok, rows, fields)
    mine = torch.tensor([r["logits"] for r in ours])
    assert mine.shape == theirs.shape
    err = (mine - theirs).abs().max().item()
    assert err <= 1e-4, f"max |logit difference| {err}"
    assert theirs.std() > 0, "the logits vary"


@pytest.mark.parametrize("name", ["pair", "reg"])
def test_the_submission_has_a_prediction_per_test_row(tasks, name):
    best, _, test, _ = tasks[name]
    n = len(test.read_text(encoding="utf-8").splitlines())
    files = [f for f in (best / "predictions").iterdir() if f.suffix == ".tsv"]
    assert len(files) == 1, files
    lines = files[0].read_text(encoding="utf-8").splitlines()
    assert lines[0] == "index\tprediction"
    assert [line.split("\t")[0] for line in lines[1:]] == [str(i) for i in range(n)]
    if name == "pair":
        assert {line.split("\t")[1] for line in lines[1:]} <= {"yes", "maybe", "no"}
    else:
        assert all(float(line.split("\t")[1]) == float(line.split("\t")[1]) for line in lines[1:])


@pytest.mark.parametrize("name", ["pair", "reg"])
def test_tensorboard_holds_each_epochs_dev_metrics(tasks, name):
    out = tasks[name][0].parent
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    (run,) = results["runs"]
    folders = [p for p in (out / "tensorboard").rglob("*") if any(p.glob("events.out.tfevents.*"))]
    assert len(folders) == 1, folders
    acc = EventAccumulator(str(folders[0]))
    acc.Reload()
    per_epoch = 48 // 8 if name == "pair" else 40 // 8
    want = {"train/loss": [e["train_loss"] for e in run["epochs"]]}
    for e in run["epochs"]:
        for tag, v in e["dev"]["all"].items():
            want.setdefault(tag, []).append(v)
    assert set(acc.Tags()["scalars"]) == set(want), acc.Tags()["scalars"]
    for tag, values in want.items():
        events = acc.Scalars(tag)
        assert [ev.step for ev in events] == [per_epoch * (k + 1) for k in range(len(values))]
        assert [ev.value for ev in events] == pytest.approx(values, rel=1e-6, abs=1e-7), tag
