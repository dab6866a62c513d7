"""Where the public corpus and tokenizer are, for the Python tests: the same lookup as
`e2e_tests::shared_data` (tests/support/data.rs) and `scripts/fetch-data`, in order
`$FAST_ELECTRA_SHARED_DATA`, `../shared/data` beside the repository, the fetch cache
(`$FAST_ELECTRA_DATA_CACHE`, default `.cache/data` in the repository)."""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shared_data() -> Path:
    if os.environ.get("FAST_ELECTRA_SHARED_DATA"):
        found = Path(os.environ["FAST_ELECTRA_SHARED_DATA"])
    else:
        beside = REPO.parent / "shared" / "data"
        cache = Path(os.environ.get("FAST_ELECTRA_DATA_CACHE") or REPO / ".cache" / "data")
        found = beside if beside.is_dir() else cache
    if not (found / "corpus" / "sotu.jsonl").is_file():
        raise RuntimeError(
            f"no shared data at {found}: run scripts/fetch-data (it fetches the public corpus and "
            "tokenizer into .cache/data; scripts/test does it) or set FAST_ELECTRA_SHARED_DATA")
    return found


SHARED = shared_data()
TOKENIZER = SHARED / "tokenizers" / "bert-base-uncased" / "tokenizer.json"


def binary(name: str) -> Path:
    """A release binary of the workspace (`cargo build --release --bins`; scripts/test does it),
    under `$CARGO_TARGET_DIR` when set."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    path = target / "release" / name
    assert path.exists(), f"{path} is not built: run `cargo build --release --bins`"
    return path
