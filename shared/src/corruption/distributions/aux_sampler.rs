//! What the augmentations of the auxiliary model share: the `aux` distribution's name, and the
//! model as a [`Sampler`] (loaded once per epoch, with dropout where the augmentation asks for
//! it; torch's generator seeded per batch then).
use anyhow::Context;
use tch::Device;

use crate::corruption::aux::{AuxModel, AuxSampling, DropoutRates};
use crate::corruption::batch::{Inputs, Seq};
use crate::corruption::rng::{domain, CounterRng};
use crate::corruption::sampling::Sampled;
use crate::runtime::clock::StageClock;

use super::interface::{Named, Sampler, Setup, Uses};

/// `--distribution aux`, the distribution of every augmentation.
pub const AUX: Named = Named {
    name: "aux",
    about: "the auxiliary model's, made easier by --augmentation",
};

/// What every augmentation uses: the auxiliary model.
pub const AUX_USES: Uses = Uses {
    aux_model: true,
    term_frequency: false,
    unk: false,
    alpha: false,
    gamma: false,
    temperature: false,
    dropout: false,
};

/// The auxiliary model of an epoch with its sampling.
pub struct AuxSampler {
    model: AuxModel,
    sampling: AuxSampling,
    /// With dropout: torch's generator is seeded before each batch from these (seed, epoch).
    seed_dropout: Option<(u64, u32)>,
}

impl AuxSampler {
    /// Loads the model of `setup.aux` with `dropout` (`None`: deterministic), padded to the batch
    /// size on CUDA, with the kernel sampler if asked for; it samples with `sampling`.
    pub fn load(
        setup: &Setup,
        dropout: DropoutRates,
        sampling: AuxSampling,
    ) -> anyhow::Result<Self> {
        let aux = setup.aux.context(
            "the auxiliary model: none given (the plan loads it for --distribution aux)",
        )?;
        let mut model = AuxModel::load_with_dropout(aux.dir, aux.device, dropout)?;
        model.pad_rows_to(aux.batch_size);
        if aux.kernel_sampler {
            model.use_kernel_sampler()?;
        }
        Ok(Self {
            model,
            sampling,
            seed_dropout: dropout.map(|_| (setup.keys.seed, setup.keys.epoch)),
        })
    }
}

impl Sampler for AuxSampler {
    fn device(&self) -> Device {
        self.model.device()
    }

    fn sample(
        &self,
        seqs: &[Seq],
        inputs: &Inputs,
        clock: &mut StageClock,
    ) -> anyhow::Result<Sampled> {
        if let (Some((seed, epoch)), Some(first)) = (self.seed_dropout, seqs.first()) {
            tch::manual_seed(dropout_seed(seed, epoch, first.sequence_id));
        }
        self.model.corrupt_with(inputs, &self.sampling, clock)
    }
}

/// The torch seed of the dropout masks of the batch whose first sequence is `first_sequence_id`.
pub fn dropout_seed(seed: u64, epoch: u32, first_sequence_id: u64) -> i64 {
    let bits =
        CounterRng::new(seed, &[domain::DROPOUT, epoch as u64, first_sequence_id]).next_u64();
    (bits >> 1) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_seed_is_keyed() {
        assert_eq!(dropout_seed(0, 1, 5), dropout_seed(0, 1, 5));
        assert_ne!(dropout_seed(0, 1, 5), dropout_seed(0, 1, 6));
        assert!(dropout_seed(9, 9, 9) >= 0);
    }
}
