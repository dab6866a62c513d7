//! Code shared by `preprocess` and `trainer`: the shard formats of `data-spec/`, manifests,
//! atomic writes, the encoder model with Hugging Face checkpoint I/O, schedules and the cost model.
pub mod atomic;
pub mod cost;
pub mod device;
pub mod epoch_meta;
pub mod epoch_shards;
pub mod hash;
pub mod manifest;
pub mod masking;
pub mod model;
pub mod parquet_write;
pub mod progress;
pub mod rng;
pub mod sampling;
pub mod schedule;
pub mod shard_file;
pub mod spec;
pub mod token_shards;
pub mod tokenizer;
