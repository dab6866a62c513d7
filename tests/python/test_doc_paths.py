"""The documents point at files that exist: every relative Markdown link resolves, every path in
docs/design.md's layout is there, and every repository path a document names in backticks
(`trainer/src/...`, `scripts/...`, ...) exists. A renamed or deleted file that a document still
names fails here, naming the document, the line and the path; a link to a heading (`#anchor`,
here or in another document) must name one of its headings."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Markdown files that are documentation; the golden manifests and build outputs are not.
SKIP = ("target", ".cache", ".gpu", "node_modules", "third_party")
DOCS = sorted(
    p for p in REPO.rglob("*.md")
    if not any(part in SKIP or part.startswith(".") for part in p.relative_to(REPO).parts)
)

# Backticked paths under these folders name files of the repository (not of a run or data folder).
ROOTS = ("build/", "data-spec/", "docs/", "preprocess/", "scripts/", "shared/", "tests/",
         "trainer/", ".ci/")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
CODE = re.compile(r"`([^`\s]+)`")


def where(doc: Path, text: str, index: int) -> str:
    return f"{doc.relative_to(REPO)}:{text.count(chr(10), 0, index) + 1}"


def exists(path: str, base: Path) -> bool:
    """`path` relative to `base`: a file or folder, or a glob (`*`) or brace list (`{a,b}`) of
    which every alternative matches something."""
    braces = re.search(r"\{([^}]*)\}", path)
    if braces:
        return all(
            exists(path[: braces.start()] + alt + path[braces.end():], base)
            for alt in braces.group(1).split(",")
        )
    if "*" in path:
        return any(base.glob(path))
    return (base / path).exists()


def test_there_are_documents_to_check():
    names = {p.relative_to(REPO).as_posix() for p in DOCS}
    assert {"README.md", "docs/design.md", "docs/measurements.md", "tests/README.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(doc: Path):
    text = doc.read_text()
    missing = [
        f"{where(doc, text, m.start())}: link {m.group(1)}"
        for m in LINK.finditer(text)
        if not re.match(r"[a-z]+:", m.group(1)) and not exists(m.group(1), doc.parent)
    ]
    assert not missing, "links to files that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_named_repository_paths_exist(doc: Path):
    text = doc.read_text()
    missing = []
    for m in CODE.finditer(text):
        path = m.group(1).rstrip(".,:;")
        if not path.startswith(ROOTS) or "..." in path or "NAME" in path or "<" in path:
            continue
        if not exists(path, REPO):
            missing.append(f"{where(doc, text, m.start())}: {path}")
    assert not missing, "paths that do not exist:\n" + "\n".join(missing)


def layout_paths(block: str):
    """The paths of design.md's layout tree: an entry is the first column of a line indented by
    4 + 2 x depth; an entry ending in `/` is the parent of the deeper entries below it;
    `a.rs, b.rs` names two entries."""
    parents = []
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip(" "))
        if indent < 4 or not line.strip() or (indent - 4) % 2:
            continue
        depth = (indent - 4) // 2
        if depth > len(parents):
            continue  # a description's continuation line
        first = re.split(r"\s{2,}", line.strip())[0]
        names = [n.strip() for n in first.split(",")]
        if not all(re.fullmatch(r"[\w.-]+/?(?:[\w.-]+/?)*", n) for n in names):
            continue
        parents = parents[:depth]
        base = parents[-1] if parents else ""
        for name in names:
            yield base + name
        if names[0].endswith("/"):
            parents.append(base + names[0])


def test_design_layout_names_existing_paths():
    text = (REPO / "docs" / "design.md").read_text()
    block = text.split("## The layout", 1)[1].split("\n## ", 1)[0]
    paths = list(layout_paths(block))
    # The layout names the workspace's parts; an empty parse would make this test vacuous.
    assert {"Cargo.toml", "shared/src/", "trainer/src/train/", "preprocess/src/corrupt/"} <= set(paths)
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, "docs/design.md's layout names paths that do not exist: " + ", ".join(missing)


ANCHOR = re.compile(r"\]\(([^)\s#]*)#([^)\s]+)\)")


def slugs(doc: Path) -> set:
    """GitHub's heading anchors of `doc`: lower case, punctuation but `-` and `_` dropped, spaces
    to `-`; a repeated heading gets `-1`, `-2`, ..."""
    seen, out = {}, set()
    in_code = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not re.match(r"#{1,6} ", line):
            continue
        text = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_anchors_name_headings(doc: Path):
    text = doc.read_text(encoding="utf-8")
    bad = []
    for m in ANCHOR.finditer(text):
        target = (doc.parent / m.group(1)) if m.group(1) else doc
        if m.group(1).startswith(("http://", "https://")) or target.suffix != ".md":
            continue
        if target.is_file() and m.group(2) not in slugs(target):
            bad.append(f"{where(doc, text, m.start())}: #{m.group(2)} is no heading of "
                       f"{target.relative_to(REPO)}")
    assert not bad, "\n".join(bad)
