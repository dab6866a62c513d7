//! The trainer as a library: everything `trainer` runs, reusable by a new command or a test.
//!
//! - [`commands`]: one file per subcommand (flags and `run`); [`cli`] the command line.
//! - [`train`]: the pre-training run (checked configuration, the loop in named stages,
//!   validation); [`objectives`]: what a step computes (rtd, mlm, online, electra).
//! - [`loader`], [`data`]: shard folders opened, checked and decoded into batches.
//! - [`optim`], [`lr`], [`checkpoint`], [`outputs`], [`metrics`], [`plots`]: the optimizer
//!   and schedule, checkpoints, the run folder's one writer, metrics records, PNG plots.
//! - [`dist`], [`parallel`], [`ext`]: data-parallel runs over c10d (the C++ extension's FFI);
//!   [`buckets`]: the hand-written step's all-reduce in buckets during its backward pass.
//! - [`fused`]: the hand-written RTD step (`--step fused`); [`rng`]: named RNG domains.
//! - [`tensorboard`]: TensorBoard event files (the run folder's `tensorboard/`).
//! - [`finetune`]: `trainer finetune`, downstream fine-tuning and its results.
pub mod buckets;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod data;
pub mod dist;
pub mod ext;
pub mod finetune;
pub mod fused;
pub mod loader;
pub mod lr;
pub mod metrics;
pub mod objectives;
pub mod optim;
pub mod outputs;
pub mod parallel;
pub mod plots;
pub mod rng;
pub mod tensorboard;
pub mod train;
