//! Code shared by `preprocess` and `trainer`: the shard formats of `data-spec/`, manifests,
//! atomic writes, the encoder model with Hugging Face checkpoint I/O, schedules and the cost model.
pub mod atomic;
pub mod cost;
pub mod hash;
pub mod manifest;
pub mod rng;
pub mod spec;
