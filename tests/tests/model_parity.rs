//! The Rust encoder against the reference implementation (transformers). Runs
//! `tests/python/make_parity.py` with `$PYTHON` (default `python3`) into a temp folder.
use e2e_tests::repo_root;
use shared::model::{
    init_discriminator, init_masked_lm, load_discriminator, load_masked_lm, Architecture,
    ModelConfig,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-4;

fn python(args: &[&str]) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = repo_root().join("tests/python/make_parity.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {python} {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{python} make_parity.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fixtures of `make_parity.py make`, made once per test binary.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        python(&["make", dir.path().to_str().unwrap()]);
        dir
    })
    .path()
}

fn expected(case: &Path) -> (Tensor, Tensor, Tensor) {
    let mut t: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(case.join("expected.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    (
        t.remove("input_ids").unwrap(),
        t.remove("attention_mask").unwrap(),
        t.remove("logits").unwrap(),
    )
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn check_masked_lm(name: &str, arch: Architecture) {
    let case = fixtures().join(name);
    let (ids, mask, want) = expected(&case);
    let m = load_masked_lm(&case.join("model"), Device::Cpu).unwrap();
    assert_eq!(m.architecture, arch);
    let got = tch::no_grad(|| m.model.forward_t(&ids, &mask, false));
    let diff = max_diff(&got, &want);
    assert!(diff < TOLERANCE, "{name}: max |diff| {diff}");
    assert!(
        want.abs().max().double_value(&[]) > 1.0,
        "logits too small to test"
    );

    // Gathered-position logits equal the full logits at those positions.
    let positions = Tensor::from_slice(&[0i64, 5, 13, 20, 25, 35]);
    let at = tch::no_grad(|| m.model.logits_at(&ids, &mask, &positions, false));
    let full = got.view([-1, got.size()[2]]).index_select(0, &positions);
    assert_eq!(at.size(), vec![6, 97]);
    let diff = max_diff(&at, &full);
    assert!(diff < 1e-5, "{name}: logits_at differs by {diff}");
}

#[test]
fn electra_masked_lm_with_embedding_projection_matches_transformers() {
    check_masked_lm("electra_mlm", Architecture::ElectraForMaskedLM);
}

#[test]
fn electra_masked_lm_untied_matches_transformers() {
    check_masked_lm("electra_mlm_untied", Architecture::ElectraForMaskedLM);
}

#[test]
fn bert_masked_lm_matches_transformers() {
    check_masked_lm("bert_mlm", Architecture::BertForMaskedLM);
}

#[test]
fn electra_discriminator_matches_transformers() {
    let case = fixtures().join("electra_disc");
    let (ids, mask, want) = expected(&case);
    let m = load_discriminator(&case.join("model"), Device::Cpu).unwrap();
    let got = tch::no_grad(|| m.model.forward_t(&ids, &mask, false));
    let diff = max_diff(&got, &want);
    assert!(diff < TOLERANCE, "max |diff| {diff}");
}

/// Rust-initialised and saved models load in transformers with no missing or unexpected keys and
/// give the same logits.
#[test]
fn rust_saved_models_load_in_transformers() {
    let root = tempfile::tempdir().unwrap();
    let (ids, mask, _) = expected(&fixtures().join("bert_mlm"));
    let mut cases: Vec<PathBuf> = Vec::new();
    let mut cfg = ModelConfig::preset("tiny", 97).unwrap();
    cfg.max_position_embeddings = 40;
    cfg.initializer_range = 0.3;
    for (name, arch, emb, tie) in [
        ("electra_mlm", Architecture::ElectraForMaskedLM, 16, true),
        (
            "electra_mlm_untied",
            Architecture::ElectraForMaskedLM,
            64,
            false,
        ),
        ("bert_mlm", Architecture::BertForMaskedLM, 64, true),
        (
            "electra_disc",
            Architecture::ElectraForPreTraining,
            32,
            true,
        ),
    ] {
        tch::manual_seed(3);
        let mut cfg = cfg.clone();
        cfg.embedding_size = Some(emb);
        cfg.tie_word_embeddings = tie;
        cfg.model_type = arch.model_type().into();
        let case = root.path().join(name);
        let logits = if arch == Architecture::ElectraForPreTraining {
            let m = init_discriminator(&cfg, Device::Cpu).unwrap();
            m.save(&case.join("model")).unwrap();
            tch::no_grad(|| m.model.forward_t(&ids, &mask, false))
        } else {
            let m = init_masked_lm(&cfg, arch, Device::Cpu).unwrap();
            m.save(&case.join("model")).unwrap();
            tch::no_grad(|| m.model.forward_t(&ids, &mask, false))
        };
        assert_eq!(logits.kind(), Kind::Float);
        Tensor::write_safetensors(
            &[
                ("input_ids", &ids),
                ("attention_mask", &mask),
                ("logits", &logits),
            ],
            case.join("expected.safetensors"),
        )
        .unwrap();
        cases.push(case);
    }
    let mut args = vec!["check"];
    args.extend(cases.iter().map(|c| c.to_str().unwrap()));
    python(&args);
}
