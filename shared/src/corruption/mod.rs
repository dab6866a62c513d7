//! Making corrupted sequences: the counter-based RNG that keys every random choice, masking,
//! the temperature schedules, the exact tempered sampler, the frozen auxiliary model and the
//! batch building around it (data-spec/epoch.md).
pub mod aux;
pub mod batch;
pub mod masking;
pub mod rng;
pub mod sampling;
pub mod schedule;
