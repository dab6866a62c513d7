//! TensorBoard event files, written the way TensorFlow and PyTorch write them, so that
//! TensorBoard, `EventAccumulator` and anything that imports event files (Weights & Biases)
//! read them as their own:
//!
//! - [`record`]: the TFRecord framing (length, masked CRC-32C of the length, payload, masked
//!   CRC-32C of the payload) and its checked reader;
//! - [`proto`]: the `Event`, `Summary` and `SessionLog` messages (the fields this project writes,
//!   with TensorBoard's field numbers), encoded by `prost`;
//! - [`writer`]: [`EventWriter`], one event file per writer: `create(dir, purge_step)`,
//!   `scalar`/`scalars`, `flush`; the purge step of a resumed run is the `SessionLog` START event
//!   of PyTorch's `SummaryWriter(purge_step=..)`;
//! - [`read`]: the events of a file back, every CRC checked (tests, tools).
pub mod proto;
pub mod read;
pub mod record;
pub mod writer;

pub use read::read_events;
pub use writer::{event_files, wall_time_now, EventWriter, FILE_VERSION};
