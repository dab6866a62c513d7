//! Validation: the first `--validation-rows` rows of the validation folder (in file order,
//! fixed MLM masks), decoded once, evaluated without dropout every `--validate-every` updates.
//! Loss and counts are summed on the device; for binary objectives (RTD) the scores and labels
//! of every real token come to the host for the exact ROC AUC.
use tch::{Device, Kind, Tensor};

use super::config::Hyper;
use crate::data::{DataKind, Folder, ShardDecoder};
use crate::loader::collate::collate;
use crate::loader::pipeline::Decoder;
use crate::loader::{BatchKind, HostBatch, Rows};
use crate::metrics::{auc::roc_auc, Counts, ValidationRecord};
use crate::objectives::{DeviceBatch, TrainObjective};
use crate::rng::VALIDATION_PASS;

/// The validation batches, on the host.
pub struct ValidationSet {
    pub batches: Vec<HostBatch>,
}

impl ValidationSet {
    /// Decodes up to `--validation-rows` rows of `folder` into batches of `--batch-size`.
    pub fn load(
        mut folder: Folder,
        kind: DataKind,
        h: &Hyper,
        pad_id: i32,
        batch_kind: BatchKind,
    ) -> anyhow::Result<Self> {
        let max_rows = h.validation_rows;
        let data = folder.epoch_data();
        let decoder = ShardDecoder::take(std::slice::from_mut(&mut folder), kind);
        let mut groups: Vec<Rows> = vec![];
        let mut rows = 0u64;
        for g in &data.groups {
            if rows >= max_rows {
                break;
            }
            let r = decoder.decode(0, g)?;
            rows += r.len() as u64;
            groups.push(r);
        }
        let index: Vec<(&Rows, usize)> = groups
            .iter()
            .flat_map(|r| (0..r.len()).map(move |i| (r, i)))
            .take(max_rows as usize)
            .collect();
        let batches = index
            .chunks(h.batch_size)
            .map(|c| collate(c, pad_id, batch_kind, VALIDATION_PASS))
            .collect();
        Ok(Self { batches })
    }
}

/// Scores and labels gathered on the host.
#[derive(Default)]
struct Scores {
    scores: Vec<f32>,
    labels: Vec<bool>,
}

impl Scores {
    fn push(&mut self, (s, l): &(Tensor, Tensor)) -> anyhow::Result<()> {
        let s = s.to_kind(Kind::Float).to_device(Device::Cpu);
        let l = l.to_kind(Kind::Bool).to_device(Device::Cpu);
        self.scores.extend(Vec::<f32>::try_from(&s)?);
        self.labels.extend(Vec::<bool>::try_from(&l)?);
        Ok(())
    }
}

/// Evaluates `objective` on `set`: loss weighted by predictions (RTD: real tokens, MLM: masked
/// positions), accuracy, and for a binary objective precision, recall, F1, ROC AUC and the
/// all-negative (all-"original") baseline.
pub fn run(
    objective: &dyn TrainObjective,
    set: &ValidationSet,
    device: Device,
    step: u64,
) -> anyhow::Result<ValidationRecord> {
    let (loss_sum, counts, scores) = tch::no_grad(|| -> anyhow::Result<_> {
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
        let mut counts = Tensor::zeros([Counts::ORDER.len() as i64], (Kind::Double, device));
        let mut scores = Scores::default();
        for host in &set.batches {
            let batch = DeviceBatch::new(host, device);
            objective.prepare(&batch, false)?;
            let out = shared::runtime::device::with_autocast(device, || objective.evaluate(&batch));
            let c = Counts::from_device(&out.step.counts)?;
            loss_sum += out.step.loss.to_kind(Kind::Double) * c.total;
            counts += out.step.counts;
            if let Some(s) = &out.scores {
                scores.push(s)?;
            }
        }
        Ok((loss_sum, counts, scores))
    })?;
    let c = Counts::from_device(&counts)?;
    let loss = loss_sum.to_device(Device::Cpu).double_value(&[]) / c.total.max(1.0);
    let binary = objective.reports().positive_class.is_some();
    Ok(ValidationRecord {
        split: "validation".into(),
        step,
        loss,
        accuracy: c.accuracy(),
        precision: c.precision().filter(|_| binary),
        recall: c.recall().filter(|_| binary),
        f1: c.f1().filter(|_| binary),
        auc: if binary {
            roc_auc(&scores.scores, &scores.labels)
        } else {
            None
        },
        baseline_accuracy: binary.then(|| c.baseline_accuracy()),
        rows: set.batches.iter().map(|b| b.rows as u64).sum(),
        tokens: set.batches.iter().map(|b| b.real_tokens).sum(),
    })
}
