//! Validation: the first `--validation-rows` rows of the validation folder (in file order,
//! fixed MLM masks), decoded once, evaluated without dropout every `--validate-every` updates.
use tch::{Device, Kind, Tensor};

use super::model::Model;
use crate::cli::Objective;
use crate::data::{Folder, ShardDecoder};
use crate::loader::collate::collate;
use crate::loader::pipeline::Decoder;
use crate::loader::{BatchKind, HostBatch, Rows};
use crate::metrics::{rates, ValidationRecord};
use crate::objectives::DeviceBatch;

/// Pass number keying the MLM masks of validation rows (never a training pass).
const VALIDATION_PASS: u64 = u64::MAX;

/// The validation batches, on the host.
pub struct ValidationSet {
    pub batches: Vec<HostBatch>,
}

impl ValidationSet {
    /// Decodes up to `max_rows` rows of `folder` into batches of `batch_size`.
    pub fn load(
        mut folder: Folder,
        objective: Objective,
        batch_size: usize,
        max_rows: u64,
        pad_id: i32,
        kind: BatchKind,
    ) -> anyhow::Result<Self> {
        let data = folder.epoch_data();
        let decoder = ShardDecoder {
            vocab_size: folder.vocab_size,
            shards: vec![std::mem::take(&mut folder.shards)],
            objective,
        };
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
            .chunks(batch_size)
            .map(|c| collate(c, pad_id, kind, VALIDATION_PASS))
            .collect();
        Ok(Self { batches })
    }
}

/// Evaluates `model` on `set`: token-weighted loss (RTD) or masked-position-weighted loss
/// (MLM), accuracy, precision, recall and the all-"original" baseline.
pub fn run(
    model: &Model,
    set: &ValidationSet,
    device: Device,
    step: u64,
    objective: Objective,
) -> anyhow::Result<ValidationRecord> {
    let (loss_sum, counts) = tch::no_grad(|| {
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
        let mut counts = Tensor::zeros([5], (Kind::Double, device));
        for hb in &set.batches {
            let db = DeviceBatch::new(hb, device);
            let out = shared::runtime::device::with_autocast(device, || model.forward(&db, false));
            loss_sum += out.loss.to_kind(Kind::Double) * out.counts.get(1);
            counts += out.counts;
        }
        (loss_sum, counts)
    });
    let c = Vec::<f64>::try_from(counts.to_device(Device::Cpu))?;
    let loss = loss_sum.to_device(Device::Cpu).double_value(&[]) / c[1].max(1.0);
    let (accuracy, precision, recall) = rates(&[c[0], c[1], c[2], c[3], c[4]]);
    let rtd = objective == Objective::Rtd;
    Ok(ValidationRecord {
        split: "validation".into(),
        step,
        loss,
        accuracy,
        precision: if rtd { precision } else { None },
        recall: if rtd { recall } else { None },
        baseline_accuracy: rtd.then(|| 1.0 - c[4] / c[1].max(1.0)),
        rows: set.batches.iter().map(|b| b.rows as u64).sum(),
        tokens: set.batches.iter().map(|b| b.real_tokens).sum(),
    })
}
