//! The flags only some objectives read (`online`: the frozen auxiliary model and its
//! temperature schedule; `electra`: the generator). Each objective checks its own (its spec's
//! `check`) and resolves them into its settings (its spec's `settings`: `run.json`'s
//! `objective_settings`, which a `--resume` must match, written by [`tagged`]).
use anyhow::bail;
use clap::{Args, ValueEnum};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use shared::corruption::schedule::{TemperatureSchedule, SCHEDULE_NAMES};
use std::path::PathBuf;

use super::{Objective, OBJECTIVES};

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

impl ObjectiveArgs {
    /// The objective-specific flags given on the command line, of those whose absence can be
    /// told (an optional value): another objective's flag among them is refused.
    fn given(&self) -> Vec<&'static str> {
        let mut given = vec![];
        if self.aux_model.is_some() {
            given.push("--aux-model");
        }
        if self.generator_layers.is_some() {
            given.push("--generator-layers");
        }
        if self.debug_dump_corrupted.is_some() {
            given.push("--debug-dump-corrupted");
        }
        given
    }

    /// Checks the flags for `objective`: none that only other objectives read, then the
    /// objective's own checks.
    pub fn check(&self, objective: Objective) -> anyhow::Result<()> {
        let spec = objective.spec();
        for flag in self.given() {
            if !spec.flags.contains(&flag) {
                let readers: Vec<&str> = OBJECTIVES
                    .iter()
                    .filter(|s| s.flags.contains(&flag))
                    .map(|s| s.name)
                    .collect();
                bail!(
                    "{flag}: only --objective {} reads it (found --objective {})",
                    readers.join(" or --objective "),
                    spec.name
                );
            }
        }
        (spec.check)(self)
    }

    /// The checked temperature schedule.
    pub fn schedule(&self) -> anyhow::Result<TemperatureSchedule> {
        TemperatureSchedule::new(&self.temperature_schedule, self.t0, self.tau, self.k)
            .map_err(|e| anyhow::anyhow!("--temperature-schedule: {e}"))
    }
}

/// An objective's settings as `run.json` holds them: its fields and `"objective": NAME`.
pub fn tagged<T: Serialize>(name: &str, settings: &T) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(settings)?;
    let map = v
        .as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("{name} settings: expected a JSON object"))?;
    map.insert("objective".into(), name.into());
    Ok(v)
}

/// The settings of objective `name` from their `run.json` form ([`tagged`]).
pub fn untagged<T: DeserializeOwned>(
    name: &str,
    settings: Option<&serde_json::Value>,
) -> anyhow::Result<T> {
    let Some(v) = settings else {
        bail!("--objective {name}: the {name} settings are missing");
    };
    let mut v = v.clone();
    let tag = v
        .as_object_mut()
        .and_then(|m| m.remove("objective"))
        .unwrap_or(serde_json::Value::Null);
    if tag != name {
        bail!("objective_settings: field objective: expected {name:?}, found {tag}");
    }
    serde_json::from_value(v)
        .map_err(|e| anyhow::anyhow!("objective_settings of --objective {name}: {e}"))
}

impl Default for ObjectiveArgs {
    /// The flags' defaults, as clap gives them when none is on the command line.
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            args: ObjectiveArgs,
        }
        <Defaults as clap::Parser>::parse_from(["objective-args"]).args
    }
}
