//! The training run, top to bottom: check the flags ([`TrainConfig`]), check and open the data
//! and the run folder ([`setup::Setup`]), start (optimizer, resume, loader), then one loop of
//! [`Trainer::train_step`] with a metrics line every `--log-every` updates, validation every
//! `--validate-every` and a checkpoint every `--checkpoint-every` (each also at the end), then
//! the plots and the Hugging Face export. The stages live in [`trainer`].
pub mod args;
pub mod config;
pub mod gpu;
mod interval;
pub mod model;
pub mod run_record;
mod setup;
mod trainer;
mod validate;

use args::TrainArgs;
pub use config::TrainConfig;
use trainer::Trainer;

/// Runs `trainer` (training).
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let config = TrainConfig::try_from(args)?;
    let mut t = Trainer::start(setup::Setup::new(config)?)?;
    let hyper = t.run_record().hyper.clone();
    while !t.done() {
        if t.debug_stop() {
            return Ok(());
        }
        t.train_step()?;
        if t.due(hyper.log_every) {
            t.record_interval()?;
        }
        if t.due(hyper.validate_every) {
            t.validate()?;
        }
        if t.due(hyper.checkpoint_every) {
            t.checkpoint()?;
        }
    }
    t.finish()
}
