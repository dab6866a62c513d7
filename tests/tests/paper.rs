//! The paper's comparisons inside the system.
use e2e_tests::{expect_ok, run};

/// The numbers of one printed row of `trainer cost --accounting paper`.
fn row(text: &str, name: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{text}"));
    line[name.len()..]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn paper_table(model: &str, aux_layers: &str) -> String {
    let out = expect_ok(run(
        "trainer",
        &[
            "cost",
            "--accounting",
            "paper",
            "--model",
            model,
            "--aux-layers",
            aux_layers,
            "--seq-len",
            "512",
            "--vocab",
            "128000",
            "--batch-size",
            "2048",
        ],
    ));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The cells of the three rows under `title` in `trainer cost --accounting paper`'s table
/// (ELECTRA, Fast-ELECTRA, the ratio row): [main, aux, total].
fn block(text: &str, title: &str) -> [Vec<String>; 3] {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == title)
        .unwrap_or_else(|| panic!("no {title:?} in:\n{text}"));
    let names = ["ELECTRA", "Fast-ELECTRA", "ratio (Fast / ELECTRA)"];
    std::array::from_fn(|i| {
        let line = lines[at + 1 + i].trim_start();
        let rest = line
            .strip_prefix(names[i])
            .unwrap_or_else(|| panic!("expected the {} row, found {line:?}:\n{text}", names[i]));
        rest.split_whitespace().map(str::to_string).collect()
    })
}

#[test]
fn cost_paper_accounting_gives_table_1_whole() {
    // The paper's Table 1, base (12 layers, aux 4) and large (24, aux 6) at vocabulary 128,000,
    // length 512, batch 2,048: main, auxiliary and total per method, and Fast-ELECTRA's ratio
    // to ELECTRA for the auxiliary model and the total, for computation and for memory.
    let base = paper_table("base", "4");
    assert_eq!(
        block(&base, "computation (GFLOPs)"),
        [
            ["591.9", "398.6", "990.5"],
            ["591.9", "132.9", "724.8"],
            ["-", "0.33", "0.73"]
        ],
        "{base}"
    );
    assert_eq!(
        block(&base, "memory (GB)"),
        [
            ["23.0", "7.0", "30.0"],
            ["23.0", "0.25", "23.3"],
            ["-", "0.04", "0.77"]
        ],
        "{base}"
    );
    // The main and auxiliary cells are the paper's. Totals and ratios are rounded from the
    // exact figures, as base's match the paper that way; they are not quoted from the paper
    // here (Fast-ELECTRA's total is 1,407.676 + 217.970 = 1,625.645; the sum of the rounded
    // cells would print 1,625.7).
    let large = paper_table("large", "6");
    assert_eq!(
        block(&large, "computation (GFLOPs)"),
        [
            ["1407.7", "653.9", "2061.6"],
            ["1407.7", "218.0", "1625.6"],
            ["-", "0.33", "0.79"]
        ],
        "{large}"
    );
    assert_eq!(
        block(&large, "memory (GB)"),
        [
            ["60.2", "14.4", "74.6"],
            ["60.2", "0.42", "60.6"],
            ["-", "0.03", "0.81"]
        ],
        "{large}"
    );
}

#[test]
fn frozen_aux_is_charged_no_activation_memory() {
    let out = expect_ok(run(
        "trainer",
        &[
            "cost",
            "--model",
            "base",
            "--aux-layers",
            "4",
            "--seq-len",
            "512",
        ],
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    // model, params, fwd GFLOP, GFLOP/seq, param GiB, act GiB, total GiB
    let frozen = row(&text, "aux, frozen (fwd only)");
    assert_eq!(frozen[4], "0.00", "{text}");
    assert_eq!(frozen[3], frozen[5], "{text}");
}

/// The bias table of [`relative_bias_equals_transformers_t5_attention_in_orientation_and_value`]:
/// 32 buckets, 3 heads, seeded.
fn bias_table() -> tch::Tensor {
    tch::manual_seed(7);
    tch::Tensor::randn([32, 3], (tch::Kind::Float, tch::Device::Cpu))
}

/// Sequence length of that comparison: past the maximum distance (128), so the last bucket
/// is reached.
const BIAS_LEN: i64 = 300;

/// Distances whose buckets are compared.
const DISTANCES: (i64, i64) = (-600, 600);

/// What transformers answers.
struct T5 {
    /// The buckets of every distance in [`DISTANCES`] for (32, 128) and (128, 256).
    buckets: Vec<Vec<i64>>,
    /// T5Attention's bias of [`bias_table`] for [`BIAS_LEN`] tokens: [heads][query][key].
    bias: Vec<Vec<Vec<f32>>>,
}

/// transformers' answers (tests/python/t5_reference.py, run once for both tests).
fn transformers_t5() -> &'static T5 {
    static T5_ANSWERS: std::sync::OnceLock<T5> = std::sync::OnceLock::new();
    T5_ANSWERS.get_or_init(|| {
        let table = bias_table();
        let rows: Vec<Vec<f32>> = (0..32)
            .map(|b| Vec::<f32>::try_from(table.get(b)).unwrap())
            .collect();
        let (lo, hi) = DISTANCES;
        let request = serde_json::json!({
            "buckets": [[32, 128, lo, hi], [128, 256, lo, hi]],
            "bias": {"max_distance": 128, "s": BIAS_LEN, "table": rows},
        });
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let script = e2e_tests::repo_root().join("tests/python/t5_reference.py");
        let mut child = std::process::Command::new(&python)
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {python} {}: {e}", script.display()));
        serde_json::to_writer(child.stdin.take().unwrap(), &request).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        T5 {
            buckets: serde_json::from_value(v["buckets"].clone()).unwrap(),
            bias: serde_json::from_value(v["bias"].clone()).unwrap(),
        }
    })
}

#[test]
fn relative_buckets_equal_transformers_t5() {
    use shared::model::positions::relative_position_bucket;
    let (lo, hi) = DISTANCES;
    let distances: Vec<i64> = (lo..=hi).collect();
    for (k, (num_buckets, max_distance)) in [(32, 128), (128, 256)].into_iter().enumerate() {
        let ours = Vec::<i64>::try_from(relative_position_bucket(
            &tch::Tensor::from_slice(&distances),
            num_buckets,
            max_distance,
        ))
        .unwrap();
        assert_eq!(
            ours,
            transformers_t5().buckets[k],
            "buckets {num_buckets}, max distance {max_distance}"
        );
    }
}

#[test]
fn relative_bias_equals_transformers_t5_attention_in_orientation_and_value() {
    // The same bias table in transformers' T5Attention (an encoder's, bidirectional) and here:
    // every [head, query i, key j] entry equal, so the bias is that of j - i (memory - query)
    // as in T5, not of i - j. (`shared::model::positions` tests that the model's attention adds
    // it as [query, key].)
    use shared::model::positions::relative_bias;
    let s = BIAS_LEN;
    let ours = relative_bias(&bias_table(), s, 32, 128);
    assert_eq!(ours.size(), [1, 3, s, s]);
    let theirs: Vec<f32> = transformers_t5()
        .bias
        .iter()
        .flatten()
        .flatten()
        .copied()
        .collect();
    let theirs = tch::Tensor::from_slice(&theirs).view([1, 3, s, s]);
    let diff = (&ours - &theirs).abs().max().double_value(&[]);
    assert_eq!(diff, 0.0, "the bias differs by up to {diff}");
    // Not symmetric: the transpose (i - j) would differ.
    let transposed = (&ours - theirs.transpose(2, 3))
        .abs()
        .max()
        .double_value(&[]);
    assert!(transposed > 0.1, "{transposed}");
}

/// A synthetic RTD batch: random ids of a 50-token vocabulary, target 1 on odd ids.
fn synthetic_batch(seed: i64) -> (tch::Tensor, tch::Tensor, tch::Tensor) {
    tch::manual_seed(seed);
    let ids = tch::Tensor::randint(50, [16, 24], (tch::Kind::Int64, tch::Device::Cpu));
    let mask = tch::Tensor::ones([16, 24], (tch::Kind::Int64, tch::Device::Cpu));
    let targets = ids.remainder(2).to_kind(tch::Kind::Float);
    (ids, mask, targets)
}

#[test]
fn relative_admin_model_saves_natively_and_reloads_the_same() {
    use shared::model::{init_discriminator, load_discriminator, ModelConfig};
    let mut cfg = ModelConfig::preset("tiny-rel-admin", 50).unwrap();
    cfg.hidden_dropout_prob = 0.0;
    cfg.attention_probs_dropout_prob = 0.0;
    tch::manual_seed(3);
    let model = init_discriminator(&cfg, tch::Device::Cpu).unwrap();
    let names: Vec<String> = model.vs.variables().into_keys().collect();
    assert!(names
        .iter()
        .any(|n| n == "electra.encoder.relative_attention_bias.weight"));
    assert!(!names.iter().any(|n| n.contains("position_embeddings")));
    // Admin profiled the residual scales: above 1 and growing with depth.
    let omega = |n: &str| {
        model.vs.variables()[n]
            .mean(tch::Kind::Float)
            .double_value(&[])
    };
    let first = omega("electra.encoder.layer.0.attention.output.admin_omega");
    let last = omega("electra.encoder.layer.1.output.admin_omega");
    assert!(first > 0.5 && last > first, "{first} {last}");
    let (ids, mask, _) = synthetic_batch(1);
    // Padding in the last row: its padded keys must not change the real tokens' logits.
    let mask = mask.index_put(
        &[
            Some(tch::Tensor::from_slice(&[15i64])),
            Some(tch::Tensor::arange(12, (tch::Kind::Int64, tch::Device::Cpu)) + 12),
        ],
        &tch::Tensor::from(0i64),
        false,
    );
    let logits = model.model.forward_t(&ids, &mask, false);
    assert!(bool::try_from(logits.isfinite().all()).unwrap());
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "fast_electra");
    assert_eq!(config["position_embedding_type"], "t5_relative");
    assert_eq!(config["relative_attention_num_buckets"], 32);
    assert_eq!(config["residual_scaling"], "admin");
    let back = load_discriminator(dir.path(), tch::Device::Cpu).unwrap();
    let again = back.model.forward_t(&ids, &mask, false);
    assert_eq!(
        (logits - again).abs().max().double_value(&[]),
        0.0,
        "reloaded model differs"
    );
    let why = cfg.hugging_face_incompatibility().unwrap();
    assert!(
        why.contains("T5 relative position buckets") && why.contains("Admin"),
        "{why}"
    );
}

#[test]
fn an_admin_initialised_relative_model_trains() {
    use shared::model::{init_discriminator, ModelConfig};
    let cfg = ModelConfig::preset("tiny-rel-admin", 50).unwrap();
    tch::manual_seed(5);
    let model = init_discriminator(&cfg, tch::Device::Cpu).unwrap();
    let mut opt =
        tch::nn::OptimizerConfig::build(tch::nn::Adam::default(), &model.vs, 3e-3).unwrap();
    let loss = |seed: i64, train: bool| {
        let (ids, mask, targets) = synthetic_batch(seed);
        let logits = model.model.forward_t(&ids, &mask, train);
        logits.binary_cross_entropy_with_logits::<tch::Tensor>(
            &targets,
            None,
            None,
            tch::Reduction::Mean,
        )
    };
    let before = tch::no_grad(|| loss(1000, false)).double_value(&[]);
    for step in 0..150 {
        let l = loss(step, true);
        opt.backward_step(&l);
    }
    let after = tch::no_grad(|| loss(1000, false)).double_value(&[]);
    // Odd/even ids are a lookup: a model that trains gets well below chance (ln 2 = 0.693).
    assert!(
        after < 0.3 && after < before / 2.0,
        "loss {before} -> {after}"
    );
}

#[test]
fn relative_models_train_and_export_natively_and_a_hugging_face_export_says_why_not() {
    let d = e2e_tests::support::fixtures::demo_data();
    let tmp = tempfile::tempdir().unwrap();
    let epoch = d.epoch(0);
    let run_dir = tmp.path().join("rel");
    let base = [
        "--shards",
        epoch.to_str().unwrap(),
        "--model",
        "tiny-rel-admin",
        "--batch-size",
        "8",
        "--max-steps",
        "2",
        "--warmup-steps",
        "1",
        "--device",
        "cpu",
        "--run-dir",
        run_dir.to_str().unwrap(),
    ];
    let mut hf = base.to_vec();
    hf.extend(["--export-format", "hugging-face"]);
    let e = e2e_tests::expect_err(run("trainer", &hf));
    assert!(
        e.contains("--export-format hugging-face")
            && e.contains("T5 relative position buckets")
            && e.contains("Admin"),
        "{e}"
    );
    assert!(!run_dir.exists(), "nothing is written for a refused run");
    let out = expect_ok(run("trainer", &base));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("fast_electra format"), "{log}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("export/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "fast_electra");
    assert_eq!(config["position_embedding_type"], "t5_relative");
    let model =
        shared::model::load_discriminator(&run_dir.join("export"), tch::Device::Cpu).unwrap();
    assert!(model
        .vs
        .variables()
        .contains_key("electra.encoder.layer.1.output.admin_omega"));
}
