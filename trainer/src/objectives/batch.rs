//! A micro-batch on the device. On CUDA the host vectors are copied into pinned memory and
//! moved without blocking the host.
use tch::{Device, Kind, Tensor};

use crate::loader::{CorruptRows, HostBatch};

/// Tensors of one micro-batch.
pub struct DeviceBatch {
    /// `[B, L]` int64.
    pub input_ids: Tensor,
    /// `[B, L]` int64, 1 on real tokens.
    pub attention_mask: Tensor,
    /// Whether a row mixes real tokens and padding (attention needs a key mask), known on the
    /// host so that `--step fused` never waits for the device to find out.
    pub key_padding: bool,
    /// RTD: `[B, L]` float targets.
    pub targets: Option<Tensor>,
    /// MLM: flat masked positions `[N]` and their labels `[N]`.
    pub positions: Option<Tensor>,
    pub labels: Option<Tensor>,
    /// Corrupting objectives (online, electra): the masked rows and model inputs, on the host.
    pub corrupt: Option<CorruptRows>,
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
        let targets = (!b.targets.is_empty())
            .then(|| upload(Tensor::from_slice(&b.targets).view(shape), device));
        let (positions, labels) = if b.targets.is_empty() {
            (
                Some(upload(Tensor::from_slice(&b.positions), device)),
                Some(upload(Tensor::from_slice(&b.labels), device)),
            )
        } else {
            (None, None)
        };
        debug_assert_eq!(ids.kind(), Kind::Int64);
        Self {
            input_ids: ids,
            attention_mask: mask,
            key_padding: crate::fused::key_padding(&b.attention_mask, b.len),
            targets,
            positions,
            labels,
            corrupt: b.corrupt.clone(),
        }
    }
}
