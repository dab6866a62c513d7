//! Reading an event file back: every record's CRCs checked, every payload decoded as an
//! `Event` (tests and tools; TensorBoard has its own reader).
use anyhow::Context;
use prost::Message;
use std::path::Path;

use super::proto::Event;
use super::record::unframe;

/// The events of the file at `path`, in order.
pub fn read_events(path: &Path) -> anyhow::Result<Vec<Event>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    unframe(&bytes, path)?
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Event::decode(p.as_slice())
                .with_context(|| format!("{}: record {i}: not a tensorboard.Event", path.display()))
        })
        .collect()
}
