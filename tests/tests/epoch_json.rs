//! The JSON an epoch leaves is a format, and its settings' bytes are fingerprinted: each shard's
//! settings, their fingerprint and the manifest stay byte for byte what `preprocess` wrote before
//! the settings record and the manifest shared their field blocks
//! (`shared::format::epoch_record`). `tests/golden/epoch/CASE/` holds what the binary of that
//! time wrote for three epochs of the `moby_tokens` fixture (its README says how): a model-free
//! one (`tf-soh`: alpha, gamma and its schedule, the term-frequency file), the default `aux` with
//! `temperature`, and `aux` with `dropout` (`dropout_batch_size`).
//!
//! The model-free epoch is a function of the fixture alone (every draw on the host in fp64), so
//! today's binary must write it again byte for byte, shards included (their SHA-256 are in the
//! manifest). An auxiliary model's logits, hence its epochs' statistics and shard bytes, may
//! differ between CPUs by rounding; for those, every field must come in the same order with the
//! same value, except the ones the logits (or the machine's paths) decide.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use e2e_tests::support::data::s;
use e2e_tests::support::fixtures::moby_tokens;
use e2e_tests::{expect_ok, repo_root, run};
use serde_json::Value;
use shared::files::hash::sha256_hex;
use shared::format::epoch_meta::{
    EpochSettings, META_SETTINGS, META_SETTINGS_FINGERPRINT, META_SHARD_STATS,
};
use shared::format::manifest::EpochManifest;
use shared::format::shard_reader::ShardFile;

/// Shard file name -> its `fast_electra.*` key-value metadata.
type ShardMeta = BTreeMap<String, BTreeMap<String, String>>;

struct Case {
    name: &'static str,
    /// The flags besides `--tokens`, `--out`, `--device cpu` and the auxiliary model.
    flags: &'static [&'static str],
    aux: bool,
}

const CASES: [Case; 3] = [
    Case {
        name: "tf-soh",
        flags: &[
            "--epoch",
            "1",
            "--epochs",
            "3",
            "--distribution",
            "tf-soh",
            "--gamma-max",
            "0.8",
            "--tau",
            "0.5",
        ],
        aux: false,
    },
    Case {
        name: "aux-temperature",
        flags: &["--epoch", "2", "--epochs", "5", "--batch-size", "16"],
        aux: true,
    },
    Case {
        name: "aux-dropout",
        flags: &[
            "--epoch",
            "0",
            "--epochs",
            "2",
            "--augmentation",
            "dropout",
            "--gamma-max",
            "0.5",
            "--batch-size",
            "16",
        ],
        aux: true,
    },
];

fn golden(case: &Case) -> PathBuf {
    repo_root().join("tests/golden/epoch").join(case.name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The manifest as `preprocess` writes it (`write_json_atomic`: pretty, one newline).
fn manifest_text(m: &EpochManifest) -> String {
    serde_json::to_string_pretty(m).unwrap() + "\n"
}

/// The `fast_electra.*` metadata of every shard of `dir`.
fn shard_meta(dir: &Path) -> ShardMeta {
    let mut files: Vec<PathBuf> = e2e_tests::support::files::parquet_files(dir);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let meta = ShardFile::open(&p)
                .unwrap()
                .key_values()
                .into_iter()
                .filter(|(k, _)| k.starts_with("fast_electra."))
                .collect();
            (p.file_name().unwrap().to_string_lossy().into_owned(), meta)
        })
        .collect()
}

/// Makes the case's epoch with today's binary; returns its folder.
fn make(case: &Case, out: &Path) -> PathBuf {
    let f = moby_tokens();
    let (tokens, aux) = (f.tokens(), f.aux());
    let mut args: Vec<&str> = case.flags.to_vec();
    if case.aux {
        args.extend(["--aux-model", s(&aux)]);
    }
    args.extend(["--tokens", s(&tokens), "--out", s(out), "--device", "cpu"]);
    expect_ok(run("preprocess", &args));
    let epoch = &case.flags[1];
    out.join(format!("epoch-{:03}", epoch.parse::<u32>().unwrap()))
}

/// `text` with the value of every line `"KEY": VALUE` of pretty JSON whose key is in `keys`
/// replaced by `"*"` (the trailing comma kept).
fn blank_lines(text: &str, keys: &[&str]) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            match keys
                .iter()
                .find(|k| trimmed.starts_with(&format!("\"{k}\": ")))
            {
                Some(k) => {
                    let indent = &line[..line.len() - trimmed.len()];
                    let comma = if line.ends_with(',') { "," } else { "" };
                    format!("{indent}\"{k}\": \"*\"{comma}")
                }
                None => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The object keys of a JSON text, in the order they stand (nested ones included).
fn keys_in_order(text: &str) -> Vec<String> {
    let (mut keys, mut chars) = (Vec::new(), text.chars().peekable());
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut s = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => s.extend(chars.next()),
                '"' => break,
                c => s.push(c),
            }
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek() == Some(&':') {
            keys.push(s);
        }
    }
    keys
}

/// `v` without the fields at `paths` (`a/b`; `*` for every element of an array).
fn without(mut v: Value, paths: &[&str]) -> Value {
    fn remove(v: &mut Value, path: &[&str]) {
        match (path, v) {
            ([last], Value::Object(o)) => {
                o.remove(*last);
            }
            (["*", rest @ ..], Value::Array(a)) => a.iter_mut().for_each(|x| remove(x, rest)),
            ([first, rest @ ..], Value::Object(o)) => {
                if let Some(x) = o.get_mut(*first) {
                    remove(x, rest);
                }
            }
            _ => {}
        }
    }
    for p in paths {
        remove(&mut v, &p.split('/').collect::<Vec<_>>());
    }
    v
}

#[test]
fn golden_manifests_and_settings_read_and_write_back_byte_for_byte() {
    for case in &CASES {
        let dir = golden(case);
        let text = read(&dir.join("manifest.json"));
        let m: EpochManifest = serde_json::from_str(&text).unwrap();
        // serde_json (without its float_roundtrip feature) may read a float 1 ULP off; the
        // report's fractions are never read back to be written, so they are left out here.
        let report: Vec<&str> = m.report.keys().map(String::as_str).collect();
        assert_eq!(
            blank_lines(&manifest_text(&m), &report),
            blank_lines(&text, &report),
            "{}: manifest",
            case.name
        );
        let shards: ShardMeta = serde_json::from_str(&read(&dir.join("shards.json"))).unwrap();
        assert_eq!(shards.len(), m.shards.len(), "{}", case.name);
        for (file, meta) in &shards {
            let stored = &meta[META_SETTINGS];
            let settings: EpochSettings = serde_json::from_str(stored).unwrap();
            assert_eq!(
                &settings.to_json(),
                stored,
                "{} {file}: settings",
                case.name
            );
            let fingerprint = &meta[META_SETTINGS_FINGERPRINT];
            assert_eq!(&settings.fingerprint(), fingerprint, "{} {file}", case.name);
            assert_eq!(&sha256_hex(stored.as_bytes()), fingerprint);
            // The manifest records the same settings: the re-run check compares these bytes.
            assert_eq!(&m.settings().to_json(), stored, "{} {file}", case.name);
            assert_eq!(&m.settings_fingerprint, fingerprint);
        }
    }
}

#[test]
fn a_model_free_epoch_is_written_byte_for_byte_as_before() {
    let case = &CASES[0];
    let tmp = tempfile::tempdir().unwrap();
    let dir = make(case, tmp.path());
    let machine = ["path", "sequences_per_second"];
    assert_eq!(
        blank_lines(&read(&dir.join("manifest.json")), &machine),
        blank_lines(&read(&golden(case).join("manifest.json")), &machine),
        "manifest (shards' SHA-256 included)"
    );
    let golden_meta: ShardMeta =
        serde_json::from_str(&read(&golden(case).join("shards.json"))).unwrap();
    assert_eq!(shard_meta(&dir), golden_meta);
}

#[test]
fn aux_epochs_write_the_same_fields_in_the_same_order() {
    // What the auxiliary model's logits or the machine's paths decide.
    let manifest_machine = [
        "aux_model/path",
        "aux_model/sha256",
        "tokenizer/path",
        "settings_fingerprint",
        "num_replaced",
        "report",
        "shards/*/bytes",
        "shards/*/sha256",
    ];
    for case in CASES.iter().filter(|c| c.aux) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = make(case, tmp.path());
        let (new, old) = (
            read(&dir.join("manifest.json")),
            read(&golden(case).join("manifest.json")),
        );
        assert_eq!(keys_in_order(&new), keys_in_order(&old), "{}", case.name);
        let value = |t: &str| without(serde_json::from_str(t).unwrap(), &manifest_machine);
        assert_eq!(value(&new), value(&old), "{}: manifest", case.name);

        let golden_meta: ShardMeta =
            serde_json::from_str(&read(&golden(case).join("shards.json"))).unwrap();
        let meta = shard_meta(&dir);
        assert_eq!(
            meta.keys().collect::<Vec<_>>(),
            golden_meta.keys().collect::<Vec<_>>()
        );
        for (file, new) in &meta {
            let old = &golden_meta[file];
            assert_eq!(
                new.keys().collect::<Vec<_>>(),
                old.keys().collect::<Vec<_>>()
            );
            for (key, value) in new {
                match key.as_str() {
                    META_SETTINGS => {
                        assert_eq!(keys_in_order(value), keys_in_order(&old[key]));
                        let v = |t: &str| {
                            without(serde_json::from_str(t).unwrap(), &["aux_model_sha256"])
                        };
                        assert_eq!(v(value), v(&old[key]), "{} {file}: settings", case.name);
                    }
                    META_SETTINGS_FINGERPRINT => {
                        assert_eq!(value, &sha256_hex(new[META_SETTINGS].as_bytes()));
                    }
                    META_SHARD_STATS => {
                        assert_eq!(keys_in_order(value), keys_in_order(&old[key]));
                        let v = |t: &str| {
                            without(
                                serde_json::from_str(t).unwrap(),
                                &["replaced", "correct_top1", "entropy_sum"],
                            )
                        };
                        assert_eq!(v(value), v(&old[key]), "{} {file}: stats", case.name);
                    }
                    _ => assert_eq!(value, &old[key], "{} {file}: {key}", case.name),
                }
            }
        }
    }
}
