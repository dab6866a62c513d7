//! The loader: memory-mapped shards decoded on worker threads into a bounded queue of padded,
//! shuffled micro-batches.
pub mod collate;
pub mod order;
pub mod pipeline;
pub mod rows;

pub use collate::{BatchKind, CorruptMasking, CorruptRows, HostBatch, Labels, MlmMasking};
pub use pipeline::{EpochData, Group, Loader, LoaderConfig};
pub use rows::{Cursor, Rows};
