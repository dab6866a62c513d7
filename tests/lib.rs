//! The end-to-end tests' toolkit (`tests/support/`, one module per concern; see `tests/README.md`):
//! where the repository, the public data and the built binaries are, how to run the binaries, read
//! shards and runs back, and the fixtures made once and cached on disk for the whole suite.
//!
//! The helpers the tests have always used stay at the crate root under their names.
pub mod support;

pub use support::binaries::{binary, expect_err, expect_ok, run, stderr};
pub use support::data::{bert_tokenizer, repo_root, shared_data};
pub use support::shards::read_epoch_shard;
