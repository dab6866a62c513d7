//! The replaced-token distributions (data-spec/epoch.md, "Distributions"): the auxiliary model's
//! under one augmentation (`--distribution aux --augmentation A`), or a model-free one
//! (`--distribution D`). One file for each kind (the five model-free ones of the paper are one
//! formula, in `interpolations.rs`; the two dropouts share `dropout.rs`), one [`REGISTRY`] of
//! them. `preprocess` knows none by name:
//! it takes the flags' values from the registry, loads what the chosen one [`Uses`], records its
//! parameters ([`Choice::replacement`]) and runs its [`Sampler`].
//!
//! # Adding a distribution
//!
//! 1. A file here with a unit struct implementing
//!    - [`Augmentation`], for one more way of making the auxiliary model's distribution easier:
//!      its `--augmentation` value with a line of help, what it [`Uses`] besides the model, and
//!      whichever it changes of the model's dropout, its logits before sampling and its inputs
//!      (see `drop_token.rs`); or
//!    - [`Distribution`], for anything else: its `--distribution` value, what it uses, and the
//!      epoch's [`Sampler`] made from the [`Setup`] (a table over the vocabulary is a
//!      [`ModelFree`], as in `interpolations.rs`).
//! 2. One line in [`REGISTRY`].
//! 3. Its row in data-spec/epoch.md, "Distributions", and a test.
//!
//! Nothing else changes: `preprocess --help` lists it, the plan loads the term frequencies or
//! the [UNK] id if it uses them, the settings and the manifest record exactly the parameters it
//! uses, the trainer compares those between epochs. A new *kind* of parameter (beyond alpha,
//! gamma, the temperature, the term frequencies and [UNK]) is a field of [`Uses`], of [`Setup`],
//! of [`crate::format::epoch_record::Replacement`] and a flag of `preprocess`.
//!
//! ```text
//! // shared/src/corruption/distributions/zipf.rs
//! pub struct Zipf;
//! impl Distribution for Zipf {
//!     fn distribution(&self) -> Named { Named { name: "zipf", about: "p(rank r) ∝ 1 / r" } }
//!     fn uses(&self) -> Uses { Uses { term_frequency: true, ..Uses::default() } }
//!     fn sampler(&self, setup: &Setup) -> anyhow::Result<Box<dyn Sampler>> { ... }
//! }
//! // and in REGISTRY (mod.rs): &zipf::Zipf,
//! ```
mod augmentation;
mod choice;
mod drop_token;
mod dropout;
mod gamma;
mod interface;
mod interpolations;
mod temperature;
mod tf_interp;

pub use augmentation::{dropout_seed, Augmentation, AuxSampler, AUX};
pub use choice::Choice;
pub use drop_token::{drop_tokens, DropToken};
pub use dropout::{Dropout, DROPOUT, DROP_ATTENTION};
pub use gamma::{check_alpha, GammaSchedule};
pub use interface::{AuxSetup, Distribution, Named, Sampler, Setup, Uses};
pub use interpolations::{
    Interpolation, Mix, Source, SMOOTHED_ONE_HOT, TERM_FREQUENCY, TF_SOH, UNF_SOH, UNIFORM,
};
pub use temperature::Temperature;
pub use tf_interp::{TfInterp, TfInterpAugmentation};

#[cfg(doc)]
use crate::corruption::model_free::ModelFree;

/// Every distribution, in the order `--help` lists them. The first entry of a distribution with
/// augmentations is its default augmentation.
pub static REGISTRY: &[&dyn Distribution] = &[
    &Temperature,
    &TfInterpAugmentation,
    &DROPOUT,
    &DROP_ATTENTION,
    &DropToken,
    &UNIFORM,
    &TERM_FREQUENCY,
    &SMOOTHED_ONE_HOT,
    &UNF_SOH,
    &TF_SOH,
];

/// The `--distribution` values, each once, in registry order.
pub fn distributions() -> Vec<Named> {
    let mut out: Vec<Named> = Vec::new();
    for d in REGISTRY {
        let named = d.distribution();
        if !out.iter().any(|n| n.name == named.name) {
            out.push(named);
        }
    }
    out
}

/// The `--augmentation` values, in registry order.
pub fn augmentations() -> Vec<Named> {
    REGISTRY.iter().filter_map(|d| d.augmentation()).collect()
}

/// The distribution `--distribution distribution [--augmentation augmentation]` names: an
/// augmentation only with a distribution that has them (the first one listed when none is
/// given). Errors name the flag, what was expected and what was found.
pub fn find(
    distribution: &str,
    augmentation: Option<&str>,
) -> Result<&'static dyn Distribution, String> {
    let family: Vec<&'static dyn Distribution> = REGISTRY
        .iter()
        .copied()
        .filter(|d| d.distribution().name == distribution)
        .collect();
    let names = |v: Vec<Named>| v.iter().map(|n| n.name).collect::<Vec<_>>().join(", ");
    let Some(&first) = family.first() else {
        return Err(format!(
            "--distribution: expected one of {}, found {distribution:?}",
            names(distributions())
        ));
    };
    match (first.augmentation(), augmentation) {
        (_, None) => Ok(first),
        (Some(_), Some(a)) => family
            .into_iter()
            .find(|d| d.augmentation().is_some_and(|n| n.name == a))
            .ok_or_else(|| {
                format!(
                    "--augmentation: expected one of {}, found {a:?}",
                    names(augmentations())
                )
            }),
        (None, Some(a)) => {
            let mut with: Vec<&str> = REGISTRY
                .iter()
                .filter(|d| d.augmentation().is_some())
                .map(|d| d.distribution().name)
                .collect();
            with.dedup();
            Err(format!(
                "--augmentation {a}: expected it with --distribution {} only (it transforms \
                 the auxiliary model), found --distribution {distribution}",
                with.join(" or ")
            ))
        }
    }
}

#[cfg(test)]
mod tests;
