"""scripts/diagnose_cls.py, the frozen-feature probe behind docs/measurements.md's "why": its split
drops what data-spec/mr.md drops, and its probe finds a signal that is there (a bag of random word
vectors separates sentences by one sentiment word) and none that is not (shuffled labels)."""
import random
import subprocess
import sys

from transformers import ElectraConfig, ElectraModel

from shared_data import REPO, TOKENIZER


def write_mr(path, rng, shuffled):
    filler = "the movie plot actor story scene film script music end one two long short".split()
    lines, labels = [], []
    for i in range(600):
        positive = i % 2 == 0
        word = rng.choice(["wonderful", "great"] if positive else ["terrible", "awful"])
        words = rng.sample(filler, 6) + [word]
        rng.shuffle(words)
        lines.append(" ".join(words))
        labels.append(positive)
    if shuffled:
        rng.shuffle(labels)
    rows = [f"{i + 1}\t{1.5 if y else -1.5}\t{t}\r\n" for i, (t, y) in enumerate(zip(lines, labels))]
    # Dropped: a rating of 0 and a repeated sentence.
    rows += [f"900\t0\tneutral words only\r\n", f"901\t2.0\t{lines[0]}\r\n"]
    path.write_text("".join(rows), encoding="utf-8", newline="")


def probe(tmp_path, shuffled):
    model = tmp_path / "model"
    cfg = ElectraConfig(vocab_size=30522, embedding_size=32, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)
    ElectraModel(cfg).save_pretrained(model)
    mr = tmp_path / "mr.txt"
    write_mr(mr, random.Random(1), shuffled)
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "diagnose_cls.py"), "--tokenizer", str(TOKENIZER),
         "--mr", str(mr), "--model", f"saved={model}", "--model", f"random:{model}"],
        capture_output=True, text=True, timeout=300, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("mr probe: 480 train / 120 dev sentences"), out.stdout
    bow = float(lines[1].rsplit(" ", 1)[1])
    assert (bow >= 0.95) if not shuffled else (bow < 0.65), out.stdout
    rows = [l.strip("|").split("|") for l in lines if l.startswith("| saved") or
            l.startswith(f"| random:{model}")]
    assert len(rows) == 2, out.stdout
    return [[float(c) for c in r[1:]] for r in rows]


def test_the_probe_finds_a_word_signal_in_a_bag_of_random_word_vectors(tmp_path):
    for cls, last_mean, emb_mean, cosine, norm in probe(tmp_path, shuffled=False):
        assert emb_mean >= 0.9, emb_mean
        assert 0.0 < norm < 1.0 and -1.0 <= cosine <= 1.0


def test_the_probe_finds_nothing_in_shuffled_labels(tmp_path):
    for cls, last_mean, emb_mean, cosine, norm in probe(tmp_path, shuffled=True):
        assert emb_mean < 0.65, emb_mean
