//! Making corrupted sequences: the counter-based RNG that keys every random choice, masking,
//! the temperature schedules, the exact tempered sampler, the frozen auxiliary model and the
//! batch building around it, the model-free tables, and the registry of replaced-token
//! distributions (`distributions`: the augmentations of the auxiliary model and the model-free
//! ones, one file each) (data-spec/epoch.md).
pub mod aux;
pub mod batch;
pub mod chi_square;
pub mod distributions;
pub mod masking;
pub mod model_free;
pub mod rng;
pub mod sampling;
pub mod sampling_tiled;
pub mod schedule;
