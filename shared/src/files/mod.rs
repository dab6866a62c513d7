//! Files: atomic writes (nothing half-written is ever visible) and SHA-256 fingerprints.
pub mod atomic;
pub mod hash;
