//! Hugging Face checkpoint I/O of the Rust encoder without Python: round trips,
//! fingerprints, dtype conversion and the errors for bad folders.
use shared::model::{
    checkpoint_fingerprint, init_discriminator, init_masked_lm, load_discriminator, load_masked_lm,
    Architecture, ModelConfig,
};
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn tiny(arch: Architecture) -> ModelConfig {
    let mut cfg = ModelConfig::preset("tiny", 50).unwrap();
    cfg.max_position_embeddings = 16;
    cfg.embedding_size = Some(32);
    cfg.model_type = arch.model_type().into();
    cfg.extra
        .insert("custom_field".into(), serde_json::json!({"kept": true}));
    cfg
}

fn batch() -> (Tensor, Tensor) {
    let ids = Tensor::from_slice(&[5i64, 9, 13, 2, 7, 11, 0, 0]).view([2, 4]);
    let mask = ids.ne(0).to_kind(Kind::Int64);
    (ids, mask)
}

fn saved_masked_lm(dir: &Path) -> Tensor {
    tch::manual_seed(1);
    let m = init_masked_lm(
        &tiny(Architecture::ElectraForMaskedLM),
        Architecture::ElectraForMaskedLM,
        Device::Cpu,
    )
    .unwrap();
    m.save(dir).unwrap();
    let (ids, mask) = batch();
    tch::no_grad(|| m.model.forward_t(&ids, &mask, false))
}

fn rewrite_weights(dir: &Path, f: impl Fn(Vec<(String, Tensor)>) -> Vec<(String, Tensor)>) {
    let file = dir.join("model.safetensors");
    let tensors = f(Tensor::read_safetensors(&file).unwrap());
    Tensor::write_safetensors(&tensors, &file).unwrap();
}

fn err_text(e: anyhow::Error) -> String {
    format!("{e:#}")
}

#[test]
fn round_trip_keeps_logits_config_and_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let want = saved_masked_lm(dir.path());
    let m = load_masked_lm(dir.path(), Device::Cpu).unwrap();
    assert_eq!(m.architecture, Architecture::ElectraForMaskedLM);
    assert_eq!(
        m.config.extra["custom_field"],
        serde_json::json!({"kept": true})
    );
    assert_eq!(
        m.config.architectures,
        Some(vec!["ElectraForMaskedLM".to_string()])
    );
    let (ids, mask) = batch();
    let got = tch::no_grad(|| m.model.forward_t(&ids, &mask, false));
    assert_eq!(got.size(), vec![2, 4, 50]);
    assert!((got - want).abs().max().double_value(&[]) < 1e-6);
    // Only the two files, no temporaries; the tied decoder weight is not written.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let keys: Vec<String> = Tensor::read_safetensors(dir.path().join("model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(!keys.iter().any(|k| k == "generator_lm_head.weight"));
    assert!(keys.iter().any(|k| k == "generator_lm_head.bias"));

    let fp = checkpoint_fingerprint(dir.path()).unwrap();
    assert_eq!(fp.len(), 64);
    assert_eq!(fp, checkpoint_fingerprint(dir.path()).unwrap());
    m.save(dir.path()).unwrap();
    assert_eq!(
        fp,
        checkpoint_fingerprint(dir.path()).unwrap(),
        "saving is deterministic"
    );
    rewrite_weights(dir.path(), |mut t| {
        t[0].1 = &t[0].1 + 1.0;
        t
    });
    assert_ne!(fp, checkpoint_fingerprint(dir.path()).unwrap());
}

#[test]
fn half_precision_checkpoints_load_as_fp32() {
    let dir = tempfile::tempdir().unwrap();
    let want = saved_masked_lm(dir.path());
    rewrite_weights(dir.path(), |t| {
        t.into_iter()
            .map(|(k, v)| (k, v.to_kind(Kind::BFloat16)))
            .collect()
    });
    let m = load_masked_lm(dir.path(), Device::Cpu).unwrap();
    assert!(m.vs.variables().values().all(|v| v.kind() == Kind::Float));
    let (ids, mask) = batch();
    let got = tch::no_grad(|| m.model.forward_t(&ids, &mask, false));
    let diff = (got - &want).abs().max().double_value(&[]);
    assert!(
        diff < 0.1 && diff > 0.0,
        "bf16 weights move logits by {diff}"
    );
}

#[test]
fn missing_tensor_names_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let _ = saved_masked_lm(dir.path());
    rewrite_weights(dir.path(), |t| {
        t.into_iter()
            .filter(|(k, _)| k != "electra.encoder.layer.1.output.dense.weight")
            .collect()
    });
    let e = err_text(load_masked_lm(dir.path(), Device::Cpu).unwrap_err());
    assert!(e.contains("model.safetensors"), "{e}");
    eprintln!("{e}");
    assert!(
        e.contains("electra.encoder.layer.1.output.dense.weight is missing"),
        "{e}"
    );
    assert!(e.contains("[64, 128]"), "{e}");
}

#[test]
fn wrong_shape_names_expected_and_found() {
    let dir = tempfile::tempdir().unwrap();
    let _ = saved_masked_lm(dir.path());
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96"),
    )
    .unwrap();
    let e = err_text(load_masked_lm(dir.path(), Device::Cpu).unwrap_err());
    // Tensors are checked in name order: layer.0.intermediate.dense.bias comes first.
    assert!(
        e.contains(
            "electra.encoder.layer.0.intermediate.dense.bias has shape [128], expected [96]"
        ),
        "{e}"
    );
    eprintln!("{e}");
}

#[test]
fn pickle_only_folder_says_how_to_convert() {
    let dir = tempfile::tempdir().unwrap();
    let _ = saved_masked_lm(dir.path());
    std::fs::rename(
        dir.path().join("model.safetensors"),
        dir.path().join("pytorch_model.bin"),
    )
    .unwrap();
    let e = err_text(load_masked_lm(dir.path(), Device::Cpu).unwrap_err());
    assert!(e.contains("pytorch_model.bin"), "{e}");
    assert!(e.contains("safe_serialization=True"), "{e}");
    eprintln!("{e}");
}

#[test]
fn unsupported_architecture_or_model_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _ = saved_masked_lm(dir.path());
    // A masked LM is not a discriminator.
    let e = err_text(load_discriminator(dir.path(), Device::Cpu).err().unwrap());
    assert!(
        e.contains("config.json") && e.contains("ElectraForPreTraining"),
        "{e}"
    );
    // RoBERTa is not supported.
    let config = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["architectures"] = serde_json::json!(["RobertaForMaskedLM"]);
    json["model_type"] = serde_json::json!("roberta");
    std::fs::write(&config, json.to_string()).unwrap();
    let e = err_text(load_masked_lm(dir.path(), Device::Cpu).err().unwrap());
    assert!(e.contains("model_type") && e.contains("roberta"), "{e}");
    eprintln!("{e}");
}

#[test]
fn discriminator_trains_every_parameter_and_survives_all_padding() {
    tch::manual_seed(2);
    let m = init_discriminator(&tiny(Architecture::ElectraForPreTraining), Device::Cpu).unwrap();
    let ids = Tensor::from_slice(&[5i64, 9, 13, 2, 0, 0, 0, 0]).view([2, 4]);
    let mask = ids.ne(0);
    let logits = m.model.forward_t(&ids, &mask, true);
    assert_eq!(logits.size(), vec![2, 4]);
    assert!(
        bool::try_from(logits.isfinite().all()).unwrap(),
        "NaN with a fully padded row"
    );
    logits.sum(Kind::Float).backward();
    for (name, v) in m.vs.variables() {
        let g = v.grad();
        assert!(
            g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "{name} gets no gradient"
        );
    }
    // Dropout is on only in training: eval is deterministic, training is not.
    let e1 = tch::no_grad(|| m.model.forward_t(&ids, &mask, false));
    let e2 = tch::no_grad(|| m.model.forward_t(&ids, &mask, false));
    assert!(e1.equal(&e2));
    let t1 = tch::no_grad(|| m.model.forward_t(&ids, &mask, true));
    assert!(!t1.equal(&e1));
}

/// The bf16 mixed-precision path of `with_autocast` (active for CUDA devices) is exercised here
/// on CPU tensors by naming a CUDA device: the outputs stay fp32 and close to the fp32 model's,
/// and the gradients reach the fp32 master weights.
#[test]
fn bf16_mixed_precision_path_keeps_fp32_outputs_and_gradients() {
    use shared::runtime::device::with_autocast;
    tch::manual_seed(4);
    let cfg = tiny(Architecture::ElectraForMaskedLM);
    let m = init_masked_lm(&cfg, Architecture::ElectraForMaskedLM, Device::Cpu).unwrap();
    let (ids, mask) = batch();
    let full = tch::no_grad(|| m.model.forward_t(&ids, &mask, false));
    let mixed = with_autocast(Device::Cuda(0), || m.model.forward_t(&ids, &mask, false));
    assert_eq!(mixed.kind(), Kind::Float);
    let diff = (&full - &mixed).abs().max().double_value(&[]);
    let scale = full.abs().max().double_value(&[]);
    assert!(
        diff > 0.0 && diff < 0.05 * scale.max(1.0),
        "bf16 moved logits by {diff} (max {scale})"
    );
    let positions = Tensor::from_slice(&[1i64, 6]);
    let at = with_autocast(Device::Cuda(0), || {
        m.model.logits_at(&ids, &mask, &positions, true)
    });
    at.cross_entropy_for_logits(&Tensor::from_slice(&[3i64, 4]))
        .backward();
    for (name, v) in m.vs.variables() {
        assert_eq!(v.kind(), Kind::Float, "{name}");
        if name.contains("encoder.layer.0.") {
            assert!(
                v.grad().defined() && v.grad().kind() == Kind::Float,
                "{name}"
            );
        }
    }
}
