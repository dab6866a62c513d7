//! Whether two training runs trained the same model: every update's loss and gradient norm
//! (from `metrics.jsonl`, run with `--log-every 1`) and the final weights (`export/`), within
//! stated tolerances. Made for comparing data-parallel runs (N ranks, resumed across world
//! sizes, other all-reduce schemes) with one process on the global batch: a gradient scaled
//! wrongly on every rank (a sum for a mean) changes every gradient norm by that factor even where
//! AdamW and clipping would hide it in the loss, and a rank training on the wrong rows changes
//! the weights.
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

/// One `train` line of `metrics.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    pub step: u64,
    pub loss: f64,
    /// The global gradient norm before clipping, of the interval's last update.
    pub grad_norm: f64,
}

/// The `train` lines of a run, in order.
pub fn updates(run_dir: &Path) -> Vec<Update> {
    let path = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display()))
        })
        .filter(|v| v["split"] == "train")
        .map(|v| Update {
            step: v["step"].as_u64().expect("step"),
            loss: v["loss"].as_f64().expect("loss"),
            grad_norm: v["grad_norm"].as_f64().expect("grad_norm"),
        })
        .collect()
}

/// The tensors of `RUN/export/model.safetensors` by name (fp32); for a run exporting several
/// models (electra: `export/discriminator`, `export/generator`), those of every sub-folder's,
/// named `FOLDER/NAME`.
pub fn exported_weights(run_dir: &Path) -> BTreeMap<String, Tensor> {
    let export = run_dir.join("export");
    let read = |path: &Path, prefix: &str| -> Vec<(String, Tensor)> {
        Tensor::read_safetensors(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .into_iter()
            .map(|(n, t)| (format!("{prefix}{n}"), t.to_kind(tch::Kind::Float)))
            .collect()
    };
    let top = export.join("model.safetensors");
    if top.exists() {
        return read(&top, "").into_iter().collect();
    }
    let mut folders: Vec<_> = std::fs::read_dir(&export)
        .unwrap_or_else(|e| panic!("reading {}: {e}", export.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.safetensors").exists())
        .collect();
    folders.sort();
    assert!(
        !folders.is_empty(),
        "{}: no model.safetensors",
        export.display()
    );
    folders
        .iter()
        .flat_map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            read(&f.join("model.safetensors"), &format!("{name}/"))
        })
        .collect()
}

/// How close two runs must be.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Largest relative difference of an update's loss.
    pub loss: f64,
    /// Largest relative difference of an update's gradient norm.
    pub grad_norm: f64,
    /// Largest absolute difference of any final weight.
    pub weight: f64,
}

/// What [`assert_same_training`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Differences {
    pub updates: usize,
    pub loss: f64,
    pub grad_norm: f64,
    pub weight: f64,
    /// The largest absolute final weight of the reference, to put `weight` in proportion.
    pub largest_weight: f64,
}

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
}

/// Asserts that `run` trained what `reference` trained: the same steps (at least one), each
/// update's loss and gradient norm within `tol`, every exported tensor with the same name and
/// shape and within `tol.weight`. Returns the largest differences found (for the test's log).
pub fn assert_same_training(
    reference: &Path,
    run: &Path,
    tol: Tolerance,
    what: &str,
) -> Differences {
    let (a, b) = (updates(reference), updates(run));
    assert!(
        !a.is_empty(),
        "{what}: {} has no train lines",
        reference.display()
    );
    assert_eq!(
        a.iter().map(|u| u.step).collect::<Vec<_>>(),
        b.iter().map(|u| u.step).collect::<Vec<_>>(),
        "{what}: the runs logged different steps"
    );
    let mut d = Differences {
        updates: a.len(),
        loss: 0.0,
        grad_norm: 0.0,
        weight: 0.0,
        largest_weight: 0.0,
    };
    for (x, y) in a.iter().zip(&b) {
        let (dl, dg) = (relative(x.loss, y.loss), relative(x.grad_norm, y.grad_norm));
        assert!(
            dl <= tol.loss,
            "{what}: step {}: loss {} vs {} (relative {dl:e} > {:e})",
            x.step,
            x.loss,
            y.loss,
            tol.loss
        );
        assert!(
            dg <= tol.grad_norm,
            "{what}: step {}: gradient norm {} vs {} (relative {dg:e} > {:e})",
            x.step,
            x.grad_norm,
            y.grad_norm,
            tol.grad_norm
        );
        d.loss = d.loss.max(dl);
        d.grad_norm = d.grad_norm.max(dg);
    }
    let (wa, wb) = (exported_weights(reference), exported_weights(run));
    assert_eq!(
        wa.keys().collect::<Vec<_>>(),
        wb.keys().collect::<Vec<_>>(),
        "{what}: the exports hold different tensors"
    );
    for (name, x) in &wa {
        let y = &wb[name];
        assert_eq!(x.size(), y.size(), "{what}: {name}: shapes");
        let diff = (x - y).abs().max().double_value(&[]);
        assert!(
            diff <= tol.weight,
            "{what}: {name}: final weights differ by up to {diff:e} (> {:e})",
            tol.weight
        );
        d.weight = d.weight.max(diff);
        d.largest_weight = d.largest_weight.max(x.abs().max().double_value(&[]));
    }
    d
}
