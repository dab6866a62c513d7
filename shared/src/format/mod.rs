//! The shard formats of `data-spec/`: schema constants, manifests, token and epoch shards,
//! reading shards through a memory map and writing them atomically.
pub mod epoch_meta;
pub mod epoch_record;
pub mod epoch_shards;
pub mod manifest;
pub mod row_rules;
pub mod shard_reader;
pub mod shard_writer;
pub mod spec;
pub mod term_frequency;
pub mod token_shards;
pub mod validate;
