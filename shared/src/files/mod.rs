//! Files: atomic writes (nothing half-written is ever visible), SHA-256 fingerprints, the
//! advisory locks on output folders (one writer per folder) and the size check of listed files.
pub mod atomic;
pub mod hash;
pub mod listed;
pub mod lock;
