//! The hand-written gradients against tch autograd's, on the CPU in fp32, for every parameter,
//! with dropout on and the same masks (both draw them from torch's generator in the same order).
use super::*;
use crate::objectives::rtd::loss_and_counts;
use shared::model::init_discriminator;

/// Max |a - b| / max |b| of each parameter's gradient (`fused`, `autograd`), worst first.
///
/// The one exception is the key bias of each layer: its true gradient is exactly zero (adding a
/// constant vector to every key adds the same q.b to a whole row of scores, and softmax ignores
/// that), so both sides hold only rounding noise and a relative difference means nothing. There
/// the difference is taken relative to the layer's key-weight gradient, which is what the noise
/// is made of.
fn compare(vs: &VarStore, fused: &weights::Grads) -> Vec<(f64, String)> {
    let vars = vs.variables();
    let max_abs = |t: &Tensor| t.abs().max().double_value(&[]);
    let mut out: Vec<(f64, String)> = vars
        .iter()
        .map(|(name, var)| {
            let want = var.grad();
            let got = fused
                .get(name)
                .unwrap_or_else(|| panic!("no fused gradient for {name}"));
            assert_eq!(got.size(), want.size(), "{name}");
            let diff = max_abs(&(got - &want));
            let scale = match name.strip_suffix("attention.self.key.bias") {
                Some(layer) => max_abs(&vars[&format!("{layer}attention.self.key.weight")].grad()),
                None => max_abs(&want),
            };
            (diff / scale.max(1e-30), name.clone())
        })
        .collect();
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    out
}

/// A batch of `b` rows of `s` tokens over `vocab`, the last row padded after `pad_from`.
fn batch(b: i64, s: i64, vocab: i64, pad_from: Option<i64>) -> (Tensor, Tensor, Tensor) {
    let ids = Tensor::randint(vocab, [b, s], (Kind::Int64, Device::Cpu));
    let mask = Tensor::ones([b, s], (Kind::Int64, Device::Cpu));
    if let Some(p) = pad_from {
        let _ = mask.get(b - 1).narrow(0, p, s - p).fill_(0);
    }
    let targets = Tensor::rand([b, s], (Kind::Float, Device::Cpu))
        .lt(0.3)
        .to_kind(Kind::Float);
    (ids, mask, targets)
}

fn check(preset: &str, dropout: f64, b: i64, s: i64, pad_from: Option<i64>) {
    tch::manual_seed(11);
    let mut cfg = ModelConfig::preset(preset, 97).unwrap();
    cfg.hidden_dropout_prob = dropout;
    cfg.attention_probs_dropout_prob = dropout;
    let model = init_discriminator(&cfg, Device::Cpu).unwrap();
    // Non-trivial LayerNorms and biases, so that every gradient term is exercised.
    tch::no_grad(|| {
        for (_, v) in model.vs.variables() {
            let noise = Tensor::randn_like(&v) * 0.05;
            let _ = v.shallow_clone().g_add_(&noise);
        }
    });
    let (ids, mask, targets) = batch(b, s, cfg.vocab_size, pad_from);

    tch::manual_seed(1234);
    let logits = model.model.forward_t(&ids, &mask, true);
    let out = loss_and_counts(&logits, &targets, &mask);
    out.loss.backward();

    let fused = FusedStep::with_ops(
        &model.vs,
        &cfg,
        Box::new(ops::TchOps {
            device: Device::Cpu,
        }),
        Kind::Float,
    )
    .unwrap();
    tch::manual_seed(1234);
    let padded = key_padding_of(&mask);
    assert_eq!(padded, pad_from.is_some());
    let (f_logits, f_loss, grads) = fused.gradients(&ids, &mask, padded, &targets, true, 1.0);
    let dl = (f_loss.double_value(&[]) - out.loss.double_value(&[])).abs();
    assert!(
        dl <= 1e-6 * out.loss.double_value(&[]).abs(),
        "loss differs by {dl}"
    );
    let dz = (f_logits - logits.detach()).abs().max().double_value(&[]);
    assert!(dz < 1e-4, "logits differ by {dz}");
    let worst = compare(&model.vs, &grads);
    assert_eq!(worst.len(), grads.len(), "every gradient is a parameter's");
    eprintln!(
        "{preset} dropout {dropout}: {} parameters, worst relative difference {:.2e} ({})",
        worst.len(),
        worst[0].0,
        worst[0].1
    );
    for (rel, name) in &worst {
        assert!(
            *rel <= 1e-5,
            "{preset}: {name}: relative difference {rel:.3e} > 1e-5"
        );
    }
}

/// Runs the `isolated_` tests below in a process of their own, one at a time: both sides draw
/// their dropout masks from torch's generator, which is global to the process, so another test
/// drawing from it on a parallel thread would change one side's masks.
#[test]
fn gradients_equal_autograd() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--test-threads=1",
            "--nocapture",
            "fused::tests::isolated_",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "the isolated gradient tests failed");
    assert!(
        text.contains("3 passed"),
        "expected the 3 isolated tests to run"
    );
}

#[test]
#[ignore = "run by fused::tests::gradients_equal_autograd in a process of its own"]
fn isolated_tiny_gradients_equal_autograd_with_dropout_and_padding() {
    check("tiny", 0.1, 3, 24, Some(17));
}

#[test]
#[ignore = "run by fused::tests::gradients_equal_autograd in a process of its own"]
fn isolated_tiny_gradients_equal_autograd_without_padding_or_dropout() {
    check("tiny", 0.0, 2, 16, None);
}

#[test]
#[ignore = "run by fused::tests::gradients_equal_autograd in a process of its own"]
fn isolated_small_gradients_equal_autograd_with_dropout_and_padding() {
    // 12 layers, hidden 256, embeddings 128 (the embeddings projection is exercised).
    check("small", 0.1, 2, 16, Some(9));
}

#[test]
fn unsupported_models_are_refused_with_the_reason() {
    for (preset, needle) in [("tiny-rel", "relative"), ("tiny-rel-admin", "")] {
        let cfg = ModelConfig::preset(preset, 97).unwrap();
        let err = weights::check_supported(&cfg).unwrap_err().to_string();
        assert!(err.contains("--step autograd"), "{err}");
        assert!(err.contains(needle), "{err}");
    }
    let mut cfg = ModelConfig::preset("tiny", 97).unwrap();
    cfg.hidden_act = "relu".into();
    let err = weights::check_supported(&cfg).unwrap_err().to_string();
    assert!(err.contains("gelu"), "{err}");
}

/// The step in the CUDA path's precision (bf16 GEMM operands and outputs, bf16 weight copies;
/// fp32 residual stream, LayerNorms, residual gradients and parameter gradients) run with the
/// reference operations on the CPU: every gradient within `bound` of fp32 autograd's (dropout
/// off, a padded row), relative to the parameter's largest gradient, and the median parameter
/// within `median_bound`.
fn bf16_step_error(preset: &str, bound: f64, median_bound: f64) {
    tch::manual_seed(5);
    let mut cfg = ModelConfig::preset(preset, 97).unwrap();
    cfg.hidden_dropout_prob = 0.0;
    cfg.attention_probs_dropout_prob = 0.0;
    let model = init_discriminator(&cfg, Device::Cpu).unwrap();
    let (ids, mask, targets) = batch(4, 32, cfg.vocab_size, Some(21));
    let out = loss_and_counts(&model.model.forward_t(&ids, &mask, true), &targets, &mask);
    out.loss.backward();
    let fused = FusedStep::with_ops(
        &model.vs,
        &cfg,
        Box::new(ops::TchOps {
            device: Device::Cpu,
        }),
        Kind::BFloat16,
    )
    .unwrap();
    let (_, loss, grads) = fused.gradients(&ids, &mask, true, &targets, true, 1.0);
    let dl = (loss.double_value(&[]) - out.loss.double_value(&[])).abs();
    assert!(
        dl < 1e-2 * out.loss.double_value(&[]),
        "loss differs by {dl}"
    );
    let worst = compare(&model.vs, &grads);
    let median = worst[worst.len() / 2].0;
    eprintln!(
        "{preset} bf16 step: {} parameters, median relative difference {median:.2e}, worst: {}",
        worst.len(),
        worst
            .iter()
            .take(4)
            .map(|(r, n)| format!("{r:.2e} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (name, g) in &grads {
        assert_eq!(g.kind(), Kind::Float, "{name}: gradients are fp32");
    }
    for (rel, name) in &worst {
        assert!(*rel < bound, "{preset}: {name}: {rel:.2e} >= {bound:.0e}");
    }
    assert!(
        median < median_bound,
        "{preset}: median {median:.2e} >= {median_bound:.0e}"
    );
}

/// The bound of the GPU check's whole-step comparison is 5e-2; on the CPU, with the residual
/// stream, LayerNorms and residual gradients in fp32 and attention's softmax in fp32 (as the
/// fused attention kernels), the bf16 step stays well inside it, for a 2-layer and a 12-layer
/// model (measured: tiny worst 6.4e-3, median 2.9e-3; small worst 9.4e-3, median 3.5e-3). With
/// the residual stream in bf16 and the reference's softmax in bf16, small's median was 8.4e-3
/// and its worst 1.9e-2, beyond both bounds.
#[test]
fn a_bf16_step_is_close_to_fp32_autograd() {
    bf16_step_error("tiny", 1.5e-2, 5e-3);
    bf16_step_error("small", 1.5e-2, 5e-3);
}

/// In the trainer (parameters in the optimizer's flat buffer) every layer's key, query and
/// value weights and biases are read as one [3H, H] GEMM operand without a copy, in fp32 and
/// in the bf16 copy the optimizer keeps; without the flat buffer they are concatenated.
#[test]
fn the_fused_kqv_gemm_reads_the_flat_buffer_in_place() {
    let cfg = ModelConfig::preset("tiny", 97).unwrap();
    let model = init_discriminator(&cfg, Device::Cpu).unwrap();
    let step = || {
        FusedStep::with_ops(
            &model.vs,
            &cfg,
            Box::new(ops::TchOps {
                device: Device::Cpu,
            }),
            Kind::Float,
        )
        .unwrap()
    };
    assert!(
        !step().kqv_are_views(),
        "separate variables: a concatenation"
    );
    let opt = crate::optim::AdamW::new(&model.vs, Default::default()).unwrap();
    assert!(step().kqv_are_views(), "the flat buffer: views");
    // The bf16 copies' views are laid out as the parameters (CUDA keeps them; an fp32 stand-in
    // of the same layout here).
    let flat = opt.params().copy();
    let views = opt.views_into(&flat, &model.vs);
    let s = step();
    s.use_weight_copies(&views);
    assert!(s.kqv_are_views(), "the optimizer's copies: views");
}

/// Whether attention needs a key mask is decided on the host from the collated batch: only a
/// row mixing real tokens and padding needs one (a row of padding only attends everywhere,
/// as the autograd model's mask makes it).
#[test]
fn key_padding_is_known_on_the_host() {
    assert!(!key_padding(&[1, 1, 1, 1, 1, 1], 3));
    assert!(key_padding(&[1, 1, 1, 1, 1, 0], 3));
    assert!(
        !key_padding(&[1, 1, 1, 0, 0, 0], 3),
        "an empty row attends everywhere"
    );
    assert!(!key_padding(&[], 0));
    let mask = Tensor::from_slice(&[1i64, 1, 0, 1, 1, 1]).view([2, 3]);
    assert!(key_padding_of(&mask));
}
