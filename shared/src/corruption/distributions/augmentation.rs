//! The augmentations of the auxiliary model (`--distribution aux --augmentation A`): what they
//! share ([`Augmentation`], which makes each one a [`Distribution`]), and the model as a
//! [`Sampler`] (loaded once per epoch, with dropout where the augmentation asks for it; torch's
//! generator seeded per batch then).
use anyhow::Context;
use tch::Device;

use crate::corruption::aux::{AuxModel, AuxSampling, DropoutRates};
use crate::corruption::batch::{Inputs, Seq};
use crate::corruption::rng::{domain, CounterRng};
use crate::corruption::sampling::Sampled;
use crate::runtime::clock::StageClock;

use super::interface::{Distribution, Named, Sampler, Setup, Uses};

/// `--distribution aux`, the distribution of every augmentation.
pub const AUX: Named = Named {
    name: "aux",
    about: "the auxiliary model's, made easier by --augmentation",
};

/// One way of making the auxiliary model's distribution easier. Implementing it makes the type a
/// [`Distribution`] of `aux`: the model is loaded with [`Augmentation::dropout`] and sampled with
/// [`Augmentation::sampling`].
pub trait Augmentation: Sync {
    /// Its `--augmentation` value.
    fn named(&self) -> Named;

    /// What it reads besides the auxiliary model.
    fn uses(&self) -> Uses;

    /// The model's dropout rates (hidden, attention) this epoch; none (a deterministic model)
    /// by default.
    fn dropout(&self, _setup: &Setup) -> DropoutRates {
        None
    }

    /// What is done to the model's logits; softmax(z / T) at this epoch's T by default.
    fn sampling(&self, setup: &Setup) -> anyhow::Result<AuxSampling> {
        Ok(AuxSampling::tempered(setup.temperature))
    }

    /// Changes the model's inputs of one batch on the reader thread; nothing by default.
    fn prepare(&self, _setup: &Setup, _inputs: &mut Inputs, _seqs: &[Seq]) {}
}

impl<T: Augmentation> Distribution for T {
    fn distribution(&self) -> Named {
        AUX
    }

    fn augmentation(&self) -> Option<Named> {
        Some(self.named())
    }

    fn uses(&self) -> Uses {
        Uses {
            aux_model: true,
            ..Augmentation::uses(self)
        }
    }

    fn prepare(&self, setup: &Setup, inputs: &mut Inputs, seqs: &[Seq]) {
        Augmentation::prepare(self, setup, inputs, seqs);
    }

    fn sampler(&self, setup: &Setup) -> anyhow::Result<Box<dyn Sampler>> {
        let sampling = self.sampling(setup)?;
        Ok(Box::new(AuxSampler::load(
            setup,
            self.dropout(setup),
            sampling,
        )?))
    }
}

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
