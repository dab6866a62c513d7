//! Where the model thread's time goes, stage by stage (`--profile-batches`, and `preprocess
//! bench`): the device is synchronised at the end of each stage so that each stage is charged
//! its own GPU time. Off by default: the synchronisations cost a little overlap.
use std::time::Instant;

use tch::Device;

/// The stages of one batch, in order.
pub const STAGES: [&str; 4] = [
    "inputs to device",
    "encoder",
    "head and projection",
    "sampling and results to host",
];

#[derive(Debug, Clone)]
pub struct StageClock {
    device: Device,
    enabled: bool,
    last: Instant,
    /// Seconds per stage of [`STAGES`], summed over batches.
    pub spent: [f64; STAGES.len()],
    pub batches: usize,
}

impl StageClock {
    /// A clock that measures only when `enabled`.
    pub fn new(device: Device, enabled: bool) -> Self {
        Self {
            device,
            enabled,
            last: Instant::now(),
            spent: [0.0; STAGES.len()],
            batches: 0,
        }
    }

    /// A clock that measures nothing.
    pub fn off() -> Self {
        Self::new(Device::Cpu, false)
    }

    /// Starts a batch.
    pub fn start(&mut self) {
        if self.enabled {
            self.sync();
            self.last = Instant::now();
            self.batches += 1;
        }
    }

    /// Ends stage `i` of [`STAGES`].
    pub fn mark(&mut self, i: usize) {
        if self.enabled {
            self.sync();
            let now = Instant::now();
            self.spent[i] += (now - self.last).as_secs_f64();
            self.last = now;
        }
    }

    fn sync(&self) {
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }
}

impl std::fmt::Display for StageClock {
    /// Milliseconds per batch of each stage.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.batches.max(1) as f64;
        let parts: Vec<String> = STAGES
            .iter()
            .zip(self.spent)
            .map(|(name, s)| format!("{name} {:.2} ms", 1e3 * s / n))
            .collect();
        write!(f, "per batch (synchronised): {}", parts.join(", "))
    }
}
