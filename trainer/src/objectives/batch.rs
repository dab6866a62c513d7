//! A micro-batch on the device. On CUDA the host vectors are copied into pinned memory and
//! moved without blocking the host.
use tch::{Device, Kind, Tensor};

use crate::loader::{CorruptRows, HostBatch, Labels};

/// The labels of a micro-batch on the device, one variant per kind of batch ([`Labels`]).
pub enum DeviceLabels {
    /// RTD: `[B, L]` float targets, 1.0 = replaced.
    Rtd { targets: Tensor },
    /// MLM: flat masked positions `[N]` and their original ids `[N]`.
    Mlm { positions: Tensor, labels: Tensor },
    /// Corrupting objectives (online, electra): the masked rows and model inputs, on the host
    /// (the objective corrupts them and uploads what it needs).
    Corrupt(CorruptRows),
}

/// Tensors of one micro-batch.
pub struct DeviceBatch {
    /// `[B, L]` int64.
    pub input_ids: Tensor,
    /// `[B, L]` int64, 1 on real tokens.
    pub attention_mask: Tensor,
    /// Whether a row mixes real tokens and padding (attention needs a key mask), known on the
    /// host so that `--step fused` never waits for the device to find out.
    pub key_padding: bool,
    pub labels: DeviceLabels,
    /// What a corrupting objective multiplies its MLM term by in training (electra's generator
    /// loss, a mean over the masked positions): this rank's share of the global batch's masked
    /// positions over its share of the real tokens, which the trainer's loss weight is
    /// (`crate::parallel`), so that each term weighs by its own share. 1 in one process.
    pub masked_term_factor: f64,
}

fn upload(t: Tensor, device: Device) -> Tensor {
    if device.is_cuda() {
        t.pin_memory(device)
            .to_device_(device, t.kind(), true, false)
    } else {
        t
    }
}

impl DeviceBatch {
    /// Moves `b` to `device`.
    pub fn new(b: &HostBatch, device: Device) -> Self {
        let shape = [b.rows as i64, b.len as i64];
        let ids = upload(Tensor::from_slice(&b.input_ids).view(shape), device);
        let mask = upload(Tensor::from_slice(&b.attention_mask).view(shape), device);
        let labels = match &b.labels {
            Labels::Rtd { targets } => DeviceLabels::Rtd {
                targets: upload(Tensor::from_slice(targets).view(shape), device),
            },
            Labels::Mlm { positions, labels } => DeviceLabels::Mlm {
                positions: upload(Tensor::from_slice(positions), device),
                labels: upload(Tensor::from_slice(labels), device),
            },
            Labels::Corrupt(c) => DeviceLabels::Corrupt(c.clone()),
        };
        debug_assert_eq!(ids.kind(), Kind::Int64);
        Self {
            input_ids: ids,
            attention_mask: mask,
            key_padding: crate::fused::key_padding(&b.attention_mask, b.len),
            labels,
            masked_term_factor: 1.0,
        }
    }

    /// The kind of labels, for the message of an objective handed another kind's batch.
    fn kind(&self) -> &'static str {
        match self.labels {
            DeviceLabels::Rtd { .. } => "rtd",
            DeviceLabels::Mlm { .. } => "mlm",
            DeviceLabels::Corrupt(_) => "corrupt",
        }
    }

    /// RTD targets `[B, L]`. An objective reads only the labels of the [`crate::loader::BatchKind`]
    /// its spec asks the loader for, so another kind here is a bug in the registry.
    pub fn rtd_targets(&self) -> &Tensor {
        match &self.labels {
            DeviceLabels::Rtd { targets } => targets,
            _ => panic!("an RTD objective was given a {} batch", self.kind()),
        }
    }

    /// MLM masked positions and labels (see [`DeviceBatch::rtd_targets`]).
    pub fn mlm_labels(&self) -> (&Tensor, &Tensor) {
        match &self.labels {
            DeviceLabels::Mlm { positions, labels } => (positions, labels),
            _ => panic!("an MLM objective was given a {} batch", self.kind()),
        }
    }

    /// The masked rows of a corrupting objective's batch (see [`DeviceBatch::rtd_targets`]).
    pub fn corrupt_rows(&self) -> &CorruptRows {
        match &self.labels {
            DeviceLabels::Corrupt(c) => c,
            _ => panic!("a corrupting objective was given a {} batch", self.kind()),
        }
    }
}
