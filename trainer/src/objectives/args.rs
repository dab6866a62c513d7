//! The flags only some objectives read (`online`: the frozen auxiliary model and its
//! temperature schedule; `electra`: the generator), checked once into [`ObjectiveSettings`],
//! the part of `run.json` a `--resume` must match.
use anyhow::bail;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use shared::corruption::schedule::{TemperatureSchedule, SCHEDULE_NAMES};
use std::path::PathBuf;

use crate::cli::Objective;

/// When the online objective's temperature changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemperaturePer {
    /// Once per pass over the token folder: pass p is `preprocess --epoch p`, u = p / --epochs
    /// (the same keys, so on the CPU the same rows as the dumped epoch).
    Epoch,
    /// Every update: u = update / total updates.
    Update,
}

/// Flags of the objectives that corrupt while training.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct ObjectiveArgs {
    /// online: the frozen auxiliary masked LM (a Hugging Face folder, e.g. the export of a
    /// `--objective mlm` run or of an electra run's `export/generator`); required there.
    #[arg(long)]
    pub aux_model: Option<PathBuf>,
    /// online: when the temperature changes: `epoch` (per pass, u = pass / --epochs) or
    /// `update` (u = update / total updates).
    #[arg(long, value_enum, default_value_t = TemperaturePer::Epoch)]
    pub temperature_per: TemperaturePer,
    /// online: temperature schedule, as `preprocess`'s: exp (T = 1 + (T0-1) exp(-u/tau)),
    /// const, poly or step.
    #[arg(long, default_value = "exp", value_parser = SCHEDULE_NAMES)]
    pub temperature_schedule: String,
    /// online: starting temperature T0 (>= 1).
    #[arg(long, default_value_t = 2.0)]
    pub t0: f64,
    /// online: decay constant tau of the exp schedule (> 0).
    #[arg(long, default_value_t = 0.1)]
    pub tau: f64,
    /// online: exponent of the poly schedule, or steps of the step schedule.
    #[arg(long, default_value_t = 2.0)]
    pub k: f64,
    /// online, `--temperature-per epoch`: epochs of the whole training (u = pass / epochs), as
    /// `preprocess --epochs`.
    #[arg(long, default_value_t = 10)]
    pub epochs: u32,
    /// electra: layers of the generator (same width as the discriminator) [default: 1 for
    /// tiny, 4 for small and base, 6 for large, else a third of the discriminator's, at least
    /// 1]. Deeper than the discriminator is allowed, with a warning.
    #[arg(long)]
    pub generator_layers: Option<i64>,
    /// electra: lambda of loss = generator MLM + lambda x discriminator RTD (the paper: 70 for
    /// base, 50 for large).
    #[arg(long, default_value_t = 50.0)]
    pub rtd_weight: f64,
    /// Testing aid (online): append every corrupted training row as a JSON line {epoch,
    /// temperature, sequence_id, input_ids, targets, masked_positions, original_ids} to this
    /// file.
    #[arg(long, hide = true)]
    pub debug_dump_corrupted: Option<PathBuf>,
}

/// What the objective-specific flags resolved to (saved in `run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "objective", rename_all = "lowercase", deny_unknown_fields)]
pub enum ObjectiveSettings {
    Online {
        aux_model: PathBuf,
        /// SHA-256 of the aux model's config + weights.
        aux_sha256: String,
        temperature_per: TemperaturePer,
        schedule: String,
        t0: f64,
        tau: f64,
        k: f64,
        epochs: u32,
    },
    Electra {
        generator_layers: i64,
        rtd_weight: f64,
    },
}

/// The generator depth for `--model` with `layers` discriminator layers when
/// `--generator-layers` is not given.
pub fn default_generator_layers(model: &str, layers: i64) -> i64 {
    let size = if shared::model::ModelConfig::is_preset(model) {
        model.split('-').next().unwrap_or(model)
    } else {
        ""
    };
    match size {
        "tiny" => 1,
        "small" | "base" => 4,
        "large" => 6,
        _ => (layers / 3).max(1),
    }
}

impl ObjectiveArgs {
    /// Checks the flags `objective` reads; flags it does not read are refused when given.
    pub fn check(&self, objective: Objective) -> anyhow::Result<()> {
        let online = objective == Objective::Online;
        if online && self.aux_model.is_none() {
            bail!("--objective online: expected --aux-model DIR (the frozen auxiliary masked LM), found none");
        }
        if !online && self.aux_model.is_some() {
            bail!(
                "--aux-model: only --objective online reads it (found --objective {})",
                objective.spec().name
            );
        }
        if online {
            self.schedule()?;
            if self.epochs == 0 {
                bail!("--epochs: expected at least 1, found 0");
            }
        }
        if let Some(n) = self.generator_layers {
            if objective != Objective::Electra {
                bail!("--generator-layers: only --objective electra reads it");
            }
            if n < 1 {
                bail!("--generator-layers: expected at least 1, found {n}");
            }
        }
        if !(self.rtd_weight.is_finite() && self.rtd_weight > 0.0) {
            bail!(
                "--rtd-weight: expected a positive number, found {}",
                self.rtd_weight
            );
        }
        Ok(())
    }

    /// The checked temperature schedule.
    pub fn schedule(&self) -> anyhow::Result<TemperatureSchedule> {
        TemperatureSchedule::new(&self.temperature_schedule, self.t0, self.tau, self.k)
            .map_err(|e| anyhow::anyhow!("--temperature-schedule: {e}"))
    }
}

impl ObjectiveArgs {
    /// The settings of `objective` for `run.json`, with `model` (the `--model` given) of
    /// `layers` layers; None for objectives without settings.
    pub fn settings(
        &self,
        objective: Objective,
        model: &str,
        layers: i64,
    ) -> anyhow::Result<Option<ObjectiveSettings>> {
        Ok(match objective {
            Objective::Online => {
                let dir = self
                    .aux_model
                    .clone()
                    .expect("checked: online has --aux-model");
                let aux_sha256 = shared::model::checkpoint_fingerprint(&dir)
                    .map_err(|e| anyhow::anyhow!("--aux-model {}: {e:#}", dir.display()))?;
                Some(ObjectiveSettings::Online {
                    aux_model: dir,
                    aux_sha256,
                    temperature_per: self.temperature_per,
                    schedule: self.temperature_schedule.clone(),
                    t0: self.t0,
                    tau: self.tau,
                    k: self.k,
                    epochs: self.epochs,
                })
            }
            Objective::Electra => Some(ObjectiveSettings::Electra {
                generator_layers: self
                    .generator_layers
                    .unwrap_or_else(|| default_generator_layers(model, layers)),
                rtd_weight: self.rtd_weight,
            }),
            _ => None,
        })
    }
}
