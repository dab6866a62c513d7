//! Online Fast-ELECTRA on token folders: the frozen auxiliary model (`--aux-model`, inference
//! only) corrupts each micro-batch inline at the schedule's temperature, and the discriminator
//! learns replaced-token detection on it exactly as `rtd` does on a dumped epoch.
//!
//! Pass `p` over the token folder is `preprocess --epoch p`: the loader masks with the same
//! keys and pads the auxiliary model's inputs to the data's `max_seq_len` as `preprocess`
//! does, the sampling uses the same per-position uniforms, and the corrupted rows are made by
//! the same library function ([`shared::corruption::batch::apply`]). With `--temperature-per
//! epoch` (T of pass `p` = the schedule at u = p / `--epochs`) the rows are therefore those of
//! the dumped epoch, on the CPU byte for byte. With `--temperature-per update`, u = update /
//! total updates.
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use shared::corruption::aux::AuxModel;
use shared::corruption::batch::{apply, CorruptedRow};
use shared::corruption::sampling::NonFiniteLogits;
use shared::corruption::schedule::TemperatureSchedule;
use shared::cost::EncoderShape;
use shared::model::{init_discriminator, init_masked_lm, Architecture, Discriminator, Pretrained};
use std::cell::{Cell, RefCell};
use std::io::Write;
use std::path::PathBuf;
use tch::{nn::VarStore, Kind, Tensor};

use super::args::{tagged, untagged, ObjectiveArgs, TemperaturePer};
use super::{
    BatchContext, BenchInput, DataKind, DeviceBatch, EvalOutput, ExportedModel, Figures,
    ObjectiveInit, ObjectiveSpec, Reports, SettingsInput, StepOutput, TrainObjective,
};
use crate::loader::{BatchKind, CorruptMasking, CorruptRows};

/// `--objective online`.
pub const SPEC: ObjectiveSpec = ObjectiveSpec {
    name: "online",
    help: "Fast-ELECTRA without dumping, on token folders: the frozen --aux-model corrupts each batch inline (inference only) at the schedule's temperature; RTD as `rtd`",
    data: DataKind::Tokens,
    flags: &["--aux-model", "--debug-dump-corrupted"],
    fused_step: false,
    check,
    settings,
    batches,
    build,
    bench: Some(bench),
    joint: false,
};

/// What the online flags resolve to (`run.json`'s `objective_settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineSettings {
    pub aux_model: PathBuf,
    /// SHA-256 of the aux model's config + weights.
    pub aux_sha256: String,
    pub temperature_per: TemperaturePer,
    pub schedule: String,
    pub t0: f64,
    pub tau: f64,
    pub k: f64,
    pub epochs: u32,
}

fn check(a: &ObjectiveArgs) -> anyhow::Result<()> {
    if a.aux_model.is_none() {
        bail!("--objective online: expected --aux-model DIR (the frozen auxiliary masked LM), found none");
    }
    // The schedule's parameters make the temperature the auxiliary logits are divided by in fp32.
    for (flag, v) in [("--t0", a.t0), ("--tau", a.tau), ("--k", a.k)] {
        crate::train::config::fp32_flag(flag, v, true)?;
    }
    a.schedule()?;
    if a.epochs == 0 {
        bail!("--epochs: expected at least 1, found 0");
    }
    Ok(())
}

fn settings(i: &SettingsInput) -> anyhow::Result<Option<serde_json::Value>> {
    let a = i.args;
    let dir = a
        .aux_model
        .clone()
        .context("checked: online has --aux-model")?;
    let aux_sha256 = shared::model::checkpoint_fingerprint(&dir)
        .map_err(|e| anyhow::anyhow!("--aux-model {}: {e:#}", dir.display()))?;
    let s = OnlineSettings {
        aux_model: dir,
        aux_sha256,
        temperature_per: a.temperature_per,
        schedule: a.temperature_schedule.clone(),
        t0: a.t0,
        tau: a.tau,
        k: a.k,
        epochs: a.epochs,
    };
    Ok(Some(tagged(SPEC.name, &s)?))
}

/// `trainer bench`: a random frozen auxiliary model of `--aux-layers` layers at the main
/// model's width (bf16 on CUDA).
fn bench(i: &mut BenchInput) -> anyhow::Result<Box<dyn TrainObjective>> {
    let mut aux_cfg = i.model_config.clone();
    aux_cfg.num_hidden_layers = i.aux_layers;
    let lm = init_masked_lm(&aux_cfg, Architecture::ElectraForMaskedLM, i.device)?;
    let mut aux = AuxModel::new(lm, i.device);
    if i.device.is_cuda() {
        aux.use_bf16();
    }
    with_aux(i.model_config, aux, i.device, i.batch)
}

fn batches(c: &BatchContext) -> BatchKind {
    BatchKind::Corrupt(CorruptMasking {
        seed: c.seed,
        rate: c.mask_rate,
        special: c.special,
        width: Some(c.max_seq_len as usize),
    })
}

/// Loads the auxiliary model of `dir` and checks it against the token folder.
pub fn load_aux(dir: &std::path::Path, init: &ObjectiveInit) -> anyhow::Result<AuxModel> {
    let aux = AuxModel::load(dir, init.device)?;
    let config = dir.join("config.json");
    let (vocab, found) = (init.batch.vocab as i64, aux.config().vocab_size);
    if found != vocab {
        bail!(
            "{}: field vocab_size: expected {vocab} (the token folder's vocabulary), found {found}; the auxiliary model must use the data's tokenizer",
            config.display()
        );
    }
    let (len, max) = (
        init.batch.max_seq_len as i64,
        aux.config().max_position_embeddings,
    );
    if max < len {
        bail!(
            "{}: field max_position_embeddings: expected at least {len} (the token folder's max_seq_len), found {max}",
            config.display()
        );
    }
    Ok(aux)
}

fn build(init: &ObjectiveInit) -> anyhow::Result<Box<dyn TrainObjective>> {
    let OnlineSettings {
        aux_model,
        temperature_per,
        epochs,
        ..
    } = untagged(SPEC.name, init.settings)?;
    let aux = load_aux(&aux_model, init)?;
    let schedule = init.args.schedule()?;
    let dump = match &init.args.debug_dump_corrupted {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("--debug-dump-corrupted {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let mut online = Online::new(init.model_config, aux, init.device, init.batch.mask_rate)?;
    online.schedule = schedule;
    online.per = temperature_per;
    online.epochs = epochs;
    online.dump = RefCell::new(dump);
    Ok(Box::new(online))
}

/// The online objective with a given auxiliary model (the default schedule; `trainer bench`).
pub fn with_aux(
    cfg: &shared::model::ModelConfig,
    aux: AuxModel,
    device: tch::Device,
    batch: BatchContext,
) -> anyhow::Result<Box<dyn TrainObjective>> {
    Ok(Box::new(Online::new(cfg, aux, device, batch.mask_rate)?))
}

/// The discriminator being trained and the frozen auxiliary model corrupting its batches.
pub struct Online {
    model: Pretrained<Discriminator>,
    shape: EncoderShape,
    aux: AuxModel,
    aux_shape: EncoderShape,
    mask_rate: f64,
    schedule: TemperatureSchedule,
    per: TemperaturePer,
    epochs: u32,
    /// u = update / total of the update in progress.
    update_u: Cell<f64>,
    /// The temperature of the last training batch (validation corrupts at it).
    last_t: Cell<Option<f64>>,
    dump: RefCell<Option<std::io::BufWriter<std::fs::File>>>,
    /// The next batch's inputs and targets, corrupted by [`TrainObjective::prepare`].
    prepared: RefCell<Option<(Tensor, Tensor)>>,
}

/// The corrupted rows of a batch, laid out `[rows, len]` (pad id, target 0 on padding).
pub fn layout(rows: &[CorruptedRow], len: usize, pad_id: i64) -> (Vec<i64>, Vec<f32>) {
    let mut ids = vec![pad_id; rows.len() * len];
    let mut targets = vec![0f32; rows.len() * len];
    for (k, r) in rows.iter().enumerate() {
        for (j, (&id, &t)) in r.input_ids.iter().zip(&r.targets).enumerate() {
            ids[k * len + j] = id as i64;
            targets[k * len + j] = t as f32;
        }
    }
    (ids, targets)
}

impl Online {
    /// A fresh discriminator (seed torch first) and `aux`, at `preprocess`'s default schedule
    /// (exp, T0 2, tau 0.1, 10 epochs) per epoch.
    fn new(
        cfg: &shared::model::ModelConfig,
        aux: AuxModel,
        device: tch::Device,
        mask_rate: f64,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            model: init_discriminator(cfg, device)?,
            shape: crate::train::model::shape(cfg),
            aux_shape: crate::train::model::shape(aux.config()),
            aux,
            mask_rate,
            schedule: TemperatureSchedule::new("exp", 2.0, 0.1, 2.0)?,
            per: TemperaturePer::Epoch,
            epochs: 10,
            update_u: Cell::new(0.0),
            last_t: Cell::new(None),
            dump: RefCell::new(None),
            prepared: RefCell::new(None),
        })
    }

    /// The temperature of a batch of pass `epoch`.
    fn temperature(&self, epoch: u32, train: bool) -> f64 {
        if !train {
            if let Some(t) = self.last_t.get() {
                return t;
            }
        }
        match self.per {
            TemperaturePer::Epoch => self.schedule.temperature(epoch, self.epochs),
            TemperaturePer::Update => self.schedule.temperature_at(self.update_u.get()),
        }
    }

    /// Corrupts the batch with the auxiliary model: the rows as `preprocess` makes them.
    pub fn corrupt(&self, c: &CorruptRows, temperature: f64) -> anyhow::Result<Vec<CorruptedRow>> {
        let sampled = self.aux.corrupt(&c.inputs, temperature)?;
        Ok(apply(c.seqs.clone(), &sampled))
    }

    /// Corrupts the batch: the discriminator's inputs and targets `[B, L]` on the device. Non-
    /// finite auxiliary logits are an error naming the sequence and position (as `preprocess`
    /// names them).
    fn corrupted(&self, b: &DeviceBatch, train: bool) -> anyhow::Result<(Tensor, Tensor)> {
        let c = b.corrupt_rows();
        let t = self.temperature(c.epoch, train);
        if train {
            self.last_t.set(Some(t));
        }
        let rows = self.corrupt(c, t).map_err(|e| name_position(e, c))?;
        if train {
            self.write_dump(c.epoch, t, &rows);
        }
        let shape = b.input_ids.size();
        let (ids, targets) = layout(&rows, shape[1] as usize, c.inputs.pad_id);
        let device = b.input_ids.device();
        Ok((
            Tensor::from_slice(&ids)
                .view([shape[0], shape[1]])
                .to_device(device),
            Tensor::from_slice(&targets)
                .view([shape[0], shape[1]])
                .to_device(device),
        ))
    }

    /// The batch [`TrainObjective::prepare`] corrupted, or (for a caller that does not prepare,
    /// `trainer bench` on random rows) the batch corrupted now.
    fn inputs(&self, b: &DeviceBatch, train: bool) -> (Tensor, Tensor) {
        if let Some(prepared) = self.prepared.borrow_mut().take() {
            return prepared;
        }
        self.corrupted(b, train)
            .unwrap_or_else(|e| panic!("online corruption failed: {e:#}"))
    }

    fn write_dump(&self, epoch: u32, temperature: f64, rows: &[CorruptedRow]) {
        if let Some(w) = self.dump.borrow_mut().as_mut() {
            for r in rows {
                let line = serde_json::json!({
                    "epoch": epoch,
                    "temperature": temperature,
                    "sequence_id": r.sequence_id,
                    "input_ids": r.input_ids,
                    "targets": r.targets,
                    "masked_positions": r.masked_positions,
                    "original_ids": r.original_ids,
                });
                let _ = writeln!(w, "{line}");
            }
            let _ = w.flush();
        }
    }
}

impl TrainObjective for Online {
    fn vars(&self) -> &VarStore {
        &self.model.vs
    }

    fn prepare(&self, b: &DeviceBatch, train: bool) -> anyhow::Result<()> {
        let inputs = self.corrupted(b, train)?;
        *self.prepared.borrow_mut() = Some(inputs);
        Ok(())
    }

    fn step(&self, b: &DeviceBatch, train: bool) -> StepOutput {
        let (ids, targets) = self.inputs(b, train);
        let logits = self.model.model.forward_t(&ids, &b.attention_mask, train);
        super::rtd::loss_and_counts(&logits, &targets, &b.attention_mask)
    }

    fn evaluate(&self, b: &DeviceBatch) -> EvalOutput {
        let (ids, targets) = self.inputs(b, false);
        let logits = self.model.model.forward_t(&ids, &b.attention_mask, false);
        let step = super::rtd::loss_and_counts(&logits, &targets, &b.attention_mask);
        let real = b.attention_mask.gt(0);
        EvalOutput {
            step,
            scores: Some((
                logits.to_kind(Kind::Float).masked_select(&real).detach(),
                targets.gt(0.5).masked_select(&real),
            )),
        }
    }

    fn train_flops_per_row(&self, padded_len: u64) -> f64 {
        // The discriminator's training plus the auxiliary model's forward (inference only).
        (shared::cost::discriminator_train_flops(&self.shape, padded_len)
            + shared::cost::masked_lm_forward_flops(
                &self.aux_shape,
                padded_len,
                self.mask_rate,
                true,
            )) as f64
    }

    fn reports(&self) -> Reports {
        Reports {
            loss_label: "loss (binary cross-entropy)",
            positive_class: Some("replaced"),
        }
    }

    fn exports(&self) -> Vec<ExportedModel<'_>> {
        vec![ExportedModel {
            folder: "",
            vs: &self.model.vs,
            config: &self.model.config,
            architecture: self.model.architecture,
        }]
    }

    fn begin_update(&self, done: u64, total: u64) {
        self.update_u.set(done as f64 / total.max(1) as f64);
    }

    fn take_figures(&self) -> Figures {
        Figures {
            temperature: self.last_t.get(),
            own: vec![],
        }
    }
}

/// Names the sequence and position of a masked position whose auxiliary logits are not finite.
fn name_position(e: anyhow::Error, c: &CorruptRows) -> anyhow::Error {
    let Some(bad) = e.downcast_ref::<NonFiniteLogits>() else {
        return e;
    };
    let Some(&flat) = c.inputs.positions.get(bad.row) else {
        return e;
    };
    let (b, s) = (
        flat as usize / c.inputs.width,
        flat as usize % c.inputs.width,
    );
    let id = c.seqs.get(b).map_or(0, |q| q.sequence_id);
    e.context(format!(
        "--objective online: the auxiliary model's logits at sequence_id {id} position {s} (pass {} over the token folder)",
        c.epoch
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_pads_rows() {
        let row = |ids: Vec<i32>, targets: Vec<i8>| CorruptedRow {
            row: 0,
            sequence_id: 0,
            input_ids: ids,
            targets,
            masked_positions: vec![],
            original_ids: vec![],
            replaced: 0,
            correct_top1: 0,
            entropy: vec![],
        };
        let (ids, t) = layout(
            &[
                row(vec![1, 7, 2], vec![0, 1, 0]),
                row(vec![1, 2], vec![0, 0]),
            ],
            3,
            0,
        );
        assert_eq!(ids, vec![1, 7, 2, 1, 2, 0]);
        assert_eq!(t, vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
