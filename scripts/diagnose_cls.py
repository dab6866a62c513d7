#!/usr/bin/env python3
"""What a pre-trained encoder's outputs look like on `mr`, before any fine-tuning.

For each model (a Hugging Face folder: a run's export, a checkpoint exported by `trainer export`
or any ELECTRA/BERT encoder; `random:FOLDER` is FOLDER's architecture freshly initialised with
--seed), on the movie-review sentences of `mr` (labels as data-spec/mr.md: rating > 0 positive,
ratings of 0 and duplicate sentences dropped; a seeded 80/20 split of its own, since this is a
probe, not the benchmark):

- the linear probe: logistic regression on frozen features, dev accuracy, for the final layer's
  [CLS] vector (what `ElectraForSequenceClassification` reads), the final layer's mean over real
  tokens, and the embedding layer's mean (a bag of word vectors);
- how alike the [CLS] vectors of different sentences are (mean pairwise cosine similarity;
  near 1: [CLS] says about the same for every sentence);
- the word embeddings' mean row norm (their scale after pre-training);
and, for scale, a bag of words: logistic regression on binary unigram counts of the same split.

A pre-trained model whose mean-pooled features probe well but whose [CLS] probes badly holds
the information the task needs where the fine-tuning head does not read it.

Needs transformers, tokenizers and scikit-learn (scripts/requirements-test.txt; `source
scripts/setup.sh --test` installs them).

Usage: python3 scripts/diagnose_cls.py --tokenizer T/tokenizer.json --mr MR.txt \
           --model fast=runs/fast-electra/export --model random:runs/fast-electra/export
"""
import argparse
import random

import numpy as np
import torch
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModel
from transformers.utils import logging as hf_logging

# The heads a pre-training export carries are not the encoder's: no load report per model.
hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()


def sentences(path, seed):
    seen, rows = set(), []
    with open(path, encoding="utf-8", newline="") as f:
        for line in f:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 3:
                continue
            rating, text = float(parts[1]), parts[2].strip()
            if rating == 0 or not text or text in seen:
                continue
            seen.add(text)
            rows.append((text, int(rating > 0)))
    random.Random(seed).shuffle(rows)
    cut = int(0.8 * len(rows))
    return rows[:cut], rows[cut:]


def load(spec, seed):
    if spec.startswith("random:"):
        folder = spec[len("random:"):]
        torch.manual_seed(seed)
        return AutoModel.from_config(AutoConfig.from_pretrained(folder))
    return AutoModel.from_pretrained(spec)


@torch.no_grad()
def features(model, tok, rows, max_len, batch=256):
    tok.enable_truncation(max_len)
    tok.enable_padding(pad_id=0)
    cls, mean, emb = [], [], []
    for i in range(0, len(rows), batch):
        enc = tok.encode_batch([t for t, _ in rows[i:i + batch]])
        ids = torch.tensor([e.ids for e in enc])
        mask = torch.tensor([e.attention_mask for e in enc])
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        last, first = out.hidden_states[-1], out.hidden_states[0]
        m = mask.unsqueeze(-1).float()
        cls.append(last[:, 0])
        mean.append((last * m).sum(1) / m.sum(1))
        emb.append((first * m).sum(1) / m.sum(1))
    return [torch.cat(x).numpy() for x in (cls, mean, emb)]


def probe(train_x, train_y, dev_x, dev_y):
    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=1.0, max_iter=3000)
    clf.fit(scaler.transform(train_x), train_y)
    return clf.score(scaler.transform(dev_x), dev_y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--mr", required=True, help="movieReviewSnippets_GroundTruth.txt")
    ap.add_argument("--model", action="append", required=True,
                    help="[NAME=]FOLDER or [NAME=]random:FOLDER (repeatable)")
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    train, dev = sentences(args.mr, args.seed)
    tok = Tokenizer.from_file(args.tokenizer)
    ty = np.array([y for _, y in train])
    dy = np.array([y for _, y in dev])
    print(f"mr probe: {len(train)} train / {len(dev)} dev sentences (positive share "
          f"{ty.mean():.3f} / {dy.mean():.3f})")
    words = CountVectorizer(binary=True).fit([t for t, _ in train])
    bow = LogisticRegression(C=1.0, max_iter=3000).fit(words.transform([t for t, _ in train]), ty)
    print(f"bag of words (logistic regression on binary unigrams): dev accuracy "
          f"{bow.score(words.transform([t for t, _ in dev]), dy):.3f}")
    print("| model | probe: [CLS] | probe: mean of last layer | probe: mean of embeddings "
          "| [CLS] mean cosine | word-embedding row norm |")
    print("|---|---|---|---|---|---|")
    for spec in args.model:
        name, _, path = spec.partition("=") if "=" in spec else (spec, "", spec)
        model = load(path, args.seed)
        model.eval()
        tr = features(model, tok, train, args.max_len)
        dv = features(model, tok, dev, args.max_len)
        accs = [probe(a, ty, b, dy) for a, b in zip(tr, dv)]
        c = torch.nn.functional.normalize(torch.from_numpy(dv[0]), dim=1)
        sim = c @ c.T
        n = sim.shape[0]
        cos = ((sim.sum() - n) / (n * (n - 1))).item()
        norm = model.get_input_embeddings().weight.norm(dim=1).mean().item()
        print(f"| {name} | {accs[0]:.3f} | {accs[1]:.3f} | {accs[2]:.3f} | {cos:.3f} | {norm:.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
