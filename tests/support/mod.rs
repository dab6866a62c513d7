//! One module per concern; `tests/README.md` says which to reach for.
pub mod binaries;
pub mod cache;
pub mod corpus;
pub mod data;
pub mod disk;
pub mod equivalence;
pub mod files;
pub mod fixtures;
pub mod runs;
pub mod shards;
