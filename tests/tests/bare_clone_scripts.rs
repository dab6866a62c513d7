//! Every script the README lists finds the public data through `scripts/fetch-data`, so it runs
//! in a bare clone: a copy of `scripts/` with nothing beside the repository (no `../shared`) and
//! no `$FAST_ELECTRA_SHARED_DATA`, the data in the fetch cache `.cache/data` where
//! `scripts/fetch-data` leaves it (copied from the shared data here, so nothing is fetched;
//! `fetch_data.rs` tests the fetch itself). What the scripts would build and run is stubbed:
//! `cargo`, the Python interpreter (`$PYTHON`), `strip`, `npm` and the release binaries record
//! their calls, and the binaries refuse an `--input` or `--tokenizer` that does not exist. A
//! script that read `../shared/data` (or anything else beside the repository) fails here in
//! seconds instead of after the build.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e_tests::repo_root;
use e2e_tests::support::data::shared_data;
use e2e_tests::support::files::copy_dir;

/// The files of `scripts/` (recursively), by what this test does with them. A new script must
/// be added to one list: run here, or shown to take its data only as arguments.
const RUN_HERE: [&str; 5] = ["ablation", "compare", "demo", "gpu-check.sh", "test"];
/// Take every path as an argument from the scripts above (or use random data: `bench/`).
const ARGUMENTS_ONLY: [&str; 11] = [
    "ablation_plots.py",
    "comm_share.py",
    "compare_table.py",
    "diagnose_cls.py",
    "summary.py",
    "bench/finetune_speed.py",
    "bench/reference_finetune.py",
    "bench/reference_corrupt.py",
    "bench/reference_rtd_step.py",
    "bench/sampler_ops.py",
    "setup.sh",
];
/// The fetch itself (`fetch_data.rs`) and its data files.
const FETCH: [&str; 6] = [
    "fetch-data",
    "fetch_corpus.py",
    "data.sha256",
    "tasks.sha256",
    "downloads.sha256",
    "requirements-test.txt",
];

/// Records the call (name, arguments, `$FAST_ELECTRA_SHARED_DATA`) in `$STUB_LOG`; the binaries
/// (`STUB_CHECKS=1`) also fail on an `--input` or `--tokenizer` that does not exist.
const STUB: &str = r#"#!/usr/bin/env bash
{ printf '%s' "$(basename "$0")"; printf ' %s' "$@"; printf ' |data=%s\n' "${FAST_ELECTRA_SHARED_DATA:-}"; } >>"$STUB_LOG"
if [ "${STUB_CHECKS:-}" = 1 ]; then
  prev=
  for a in "$@"; do
    case "$prev" in --input|--tokenizer)
      [ -e "$a" ] || { echo "stub $(basename "$0"): $prev $a: no such file" >&2; exit 2; } ;;
    esac
    prev=$a
  done
fi
exit 0
"#;

/// `strip -o OUT IN`: copies.
const STRIP: &str = r#"#!/usr/bin/env bash
printf 'strip %s\n' "$*" >>"$STUB_LOG"
cp "$3" "$2"
"#;

/// `npm` must not be called: the cache holds the data.
const NPM: &str = r#"#!/usr/bin/env bash
echo "npm $*: the data should have come from the cache" >&2
exit 9
"#;

struct Bare {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    bin: PathBuf,
    target: PathBuf,
    work: PathBuf,
    log: PathBuf,
    cache: PathBuf,
}

fn write_exe(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A copy of `scripts/` in `TMP/clone/repo` (nothing beside it), the public data in its fetch
/// cache, stubs in `TMP/bin` and `TMP/target/release`.
fn bare_clone() -> Bare {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("clone");
    let repo = root.join("repo");
    copy_dir(&repo_root().join("scripts"), &repo.join("scripts"));
    let cache = repo.join(".cache/data");
    let shared = shared_data();
    for line in std::fs::read_to_string(repo.join("scripts/data.sha256"))
        .unwrap()
        .lines()
    {
        let (_, rel) = line.split_once("  ").unwrap();
        std::fs::create_dir_all(cache.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(shared.join(rel), cache.join(rel)).unwrap();
    }
    let bin = tmp.path().join("bin");
    for name in ["cargo", "python-stub"] {
        write_exe(&bin.join(name), STUB);
    }
    write_exe(&bin.join("strip"), STRIP);
    write_exe(&bin.join("npm"), NPM);
    let target = tmp.path().join("target");
    for name in ["preprocess", "trainer", "examples/bench_encoder"] {
        write_exe(&target.join("release").join(name), STUB);
    }
    Bare {
        repo,
        bin,
        target,
        work: tmp.path().join("work"),
        log: tmp.path().join("calls.log"),
        cache,
        _tmp: tmp,
    }
}

impl Bare {
    /// Runs `scripts/NAME ARGS` from the clone's root, with the stubs first on the `PATH`.
    fn run(&self, name: &str, args: &[&str]) -> Output {
        self.run_env(name, args, &[])
    }

    /// [`Self::run`] with extra environment variables (the scripts' overrides).
    fn run_env(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(self.repo.join("scripts").join(name))
            .args(args)
            .current_dir(&self.repo)
            .env_remove("FAST_ELECTRA_SHARED_DATA")
            .env_remove("FAST_ELECTRA_DATA_CACHE")
            .env("PATH", path)
            .env("PYTHON", self.bin.join("python-stub"))
            .env("CARGO_TARGET_DIR", &self.target)
            .env("WORK", &self.work)
            .env("FIGURES", self.work.join("figures"))
            .env("STUB_LOG", &self.log)
            .env("STUB_CHECKS", "1")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn tokenizer(&self) -> String {
        format!(
            "--tokenizer {}",
            self.cache
                .join("tokenizers/bert-base-uncased/tokenizer.json")
                .display()
        )
    }
}

fn ok(name: &str, out: &Output) {
    assert!(
        out.status.success(),
        "scripts/{name} failed in a bare clone ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_script_is_run_here_or_takes_its_data_as_arguments() {
    let scripts = repo_root().join("scripts");
    let on_disk: BTreeSet<String> = e2e_tests::support::files::tree(&scripts)
        .into_keys()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.contains("__pycache__"))
        .collect();
    let listed: BTreeSet<String> = RUN_HERE
        .iter()
        .chain(&ARGUMENTS_ONLY)
        .chain(&FETCH)
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        on_disk, listed,
        "scripts/ changed: run a new script in this test, or list it as taking its data as \
         arguments"
    );
}

#[test]
fn demo_and_test_find_the_data_in_a_bare_clone() {
    let b = bare_clone();
    let out = b.run("demo", &[]);
    ok("demo", &out);
    let calls = b.calls();
    let tokenize = calls
        .iter()
        .find(|c| c.starts_with("preprocess tokenize"))
        .expect("the demo tokenizes");
    let corpus = format!("--input {}", b.cache.join("corpus").display());
    assert!(
        tokenize.contains(&corpus) && tokenize.contains(&b.tokenizer()),
        "{tokenize}"
    );
    assert_eq!(
        calls.iter().filter(|c| c.starts_with("trainer")).count(),
        4,
        "{calls:#?}"
    );
    let finetune = calls
        .iter()
        .find(|c| c.starts_with("trainer finetune --task mr"))
        .expect("the demo ends downstream");
    assert!(finetune.contains("--init pretrained,random"), "{finetune}");

    let out = b.run("test", &[]);
    ok("test", &out);
    let data = format!("|data={}", b.cache.display());
    let tests: Vec<String> = b
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("cargo test") || c.contains("-m pytest"))
        .collect();
    assert_eq!(tests.len(), 2, "{tests:#?}");
    for call in &tests {
        assert!(call.ends_with(&data), "the tests get the cache: {call}");
    }
}

#[test]
fn ablation_and_the_gpu_preparation_find_the_data_in_a_bare_clone() {
    let b = bare_clone();
    let out = b.run("ablation", &[]);
    ok("ablation", &out);
    let calls = b.calls();
    let tokenize = calls
        .iter()
        .find(|c| c.starts_with("preprocess tokenize"))
        .expect("the ablation tokenizes");
    assert!(tokenize.contains(&b.tokenizer()), "{tokenize}");
    // The slice is cut from the cached corpus.
    let slice = b.work.join("data/corpus/moby-dick.txt");
    let full = std::fs::read(b.cache.join("corpus/moby-dick.txt")).unwrap();
    assert_eq!(std::fs::read(&slice).unwrap(), full[..400_000]);
    // It ends downstream: every method's discriminator fine-tuned on mr in one call.
    let finetune = calls
        .iter()
        .find(|c| c.starts_with("trainer finetune --task mr"))
        .expect("the ablation fine-tunes its discriminators");
    assert_eq!(finetune.matches("--model ").count(), 10, "{finetune}");
    let out_dir = format!("--out {}", b.work.join("finetune").display());
    assert!(finetune.contains(&out_dir), "{finetune}");

    let out = b.run("gpu-check.sh", &["--prepare"]);
    ok("gpu-check.sh --prepare", &out);
    let tokenizer = std::fs::read(b.repo.join(".gpu/tokenizer.json")).unwrap();
    let cached = b.cache.join("tokenizers/bert-base-uncased/tokenizer.json");
    assert!(tokenizer == std::fs::read(cached).unwrap());
    assert!(b.repo.join(".gpu/moby-dick.txt").is_file());
}

/// `METHODS` picks which pre-training runs `compare` makes and fine-tunes (random initialisation
/// always), and a misspelt method stops it before any work.
#[test]
fn compare_runs_only_the_methods_asked_for() {
    let b = bare_clone();
    let out = b.run_env(
        "compare",
        &[],
        &[("METHODS", "mlm fast-electra"), ("STEPS", "800")],
    );
    ok("compare", &out);
    let calls = b.calls();
    let epochs = calls.iter().filter(|c| c.starts_with("preprocess --epoch"));
    assert!(
        epochs.clone().count() == 3
            && epochs
                .clone()
                .all(|c| c.contains("--temperature-schedule exp")),
        "{calls:#?}"
    );
    let trainer: Vec<&String> = calls.iter().filter(|c| c.starts_with("trainer")).collect();
    assert!(
        !trainer.iter().any(|c| c.contains("--objective electra")),
        "{trainer:#?}"
    );
    let finetune = trainer
        .iter()
        .find(|c| c.starts_with("trainer finetune"))
        .expect("compare fine-tunes");
    // mlm and fast-electra, the preset, and three checkpoints of each run.
    assert_eq!(finetune.matches("--model ").count(), 9, "{finetune}");
    assert!(
        !finetune.contains("fixed-aux") && finetune.contains("mlm/checkpoints/step-0000600"),
        "{finetune}"
    );
    let table = calls
        .iter()
        .find(|c| c.starts_with("python-stub scripts/compare_table.py"))
        .expect("compare writes its table");
    assert!(table.contains("--methods mlm fast-electra"), "{table}");

    let b = bare_clone();
    let out = b.run_env("compare", &[], &[("METHODS", "fast-electra bert")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown method 'bert'"), "{err}");
    assert!(b.calls().is_empty(), "{:#?}", b.calls());
}

#[test]
fn compare_finds_the_data_in_a_bare_clone() {
    let b = bare_clone();
    let out = b.run("compare", &[]);
    ok("compare", &out);
    let calls = b.calls();
    let tokenize = calls
        .iter()
        .find(|c| c.starts_with("preprocess tokenize"))
        .expect("compare tokenizes");
    let corpus = format!("--input {}", b.cache.join("corpus").display());
    assert!(
        tokenize.contains(&corpus) && tokenize.contains(&b.tokenizer()),
        "{tokenize}"
    );
    // Three epochs for each of the two offline methods: exp and a constant T = 1.
    let epochs: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("preprocess --epoch"))
        .collect();
    assert_eq!(epochs.len(), 6, "{calls:#?}");
    assert_eq!(
        epochs
            .iter()
            .filter(|c| c.contains("--temperature-schedule const --t0 1"))
            .count(),
        3,
        "{epochs:#?}"
    );
    // The auxiliary MLM, four pre-training runs of the same budget, one fine-tuning, two costs.
    let trainer: Vec<&String> = calls.iter().filter(|c| c.starts_with("trainer")).collect();
    assert_eq!(trainer.len(), 8, "{trainer:#?}");
    for objective in ["--objective electra", "--objective mlm --shards"] {
        assert!(
            trainer
                .iter()
                .any(|c| c.contains(objective) && c.contains("--max-steps 1600")),
            "{objective}: {trainer:#?}"
        );
    }
    let finetune = calls
        .iter()
        .find(|c| c.starts_with("trainer finetune --task mr"))
        .expect("compare fine-tunes on mr");
    // Four runs, the random initialisation (the preset with the cached tokenizer) and three
    // checkpoints (every STEPS/4 updates) of each offline run and of MLM.
    assert_eq!(finetune.matches("--model ").count(), 14, "{finetune}");
    assert!(
        finetune.contains("mlm/checkpoints/step-0000400"),
        "{finetune}"
    );
    assert!(finetune.contains("--model tiny "), "{finetune}");
    assert!(finetune.contains(&b.tokenizer()), "{finetune}");
    assert!(
        finetune.contains("fixed-aux/checkpoints/step-0001200"),
        "{finetune}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("trainer cost"))
            .count(),
        2
    );
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("python-stub scripts/compare_table.py")),
        "{calls:#?}"
    );
}
