//! The messages of TensorBoard's `event.proto` and `summary.proto` that this project writes
//! (`tensorboard.Event`, `tensorboard.Summary`, `tensorboard.SessionLog`), with their field
//! numbers, derived with `prost` (no protoc). Fields left out (graphs, images, histograms, tensor
//! summaries, metadata) are skipped as unknown fields when such a file is read back.
use prost::{Enumeration, Message, Oneof};

/// `tensorboard.Event`: one record of an event file.
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// Seconds since 1970-01-01 UTC.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step (here: updates done).
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(oneof = "What", tags = "3, 5, 7")]
    pub what: Option<What>,
}

/// `Event.what`, the kinds of event written here.
#[derive(Clone, PartialEq, Oneof)]
pub enum What {
    /// The first event of a file: `brain.Event:2`.
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "7")]
    SessionLog(SessionLog),
}

/// `tensorboard.Summary`: values of one step.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorboard.Summary.Value`: a tagged value.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(oneof = "Value", tags = "2")]
    pub value: Option<Value>,
}

/// `Summary.Value.value`: only the scalar kind.
#[derive(Clone, PartialEq, Oneof)]
pub enum Value {
    /// A scalar (what TensorBoard's scalar dashboard plots), fp32.
    #[prost(float, tag = "2")]
    SimpleValue(f32),
}

/// `tensorboard.SessionLog`.
#[derive(Clone, PartialEq, Message)]
pub struct SessionLog {
    #[prost(enumeration = "SessionStatus", tag = "1")]
    pub status: i32,
    #[prost(string, tag = "2")]
    pub checkpoint_path: String,
    #[prost(string, tag = "3")]
    pub msg: String,
}

/// `SessionLog.SessionStatus`. TensorBoard drops every value it has read with a step at or after
/// a START event's step (a restarted run).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum SessionStatus {
    StatusUnspecified = 0,
    Start = 1,
    Stop = 2,
    Checkpoint = 3,
}

impl Event {
    /// The scalar values of a summary event as (tag, value); empty for other events.
    pub fn scalars(&self) -> Vec<(&str, f32)> {
        match &self.what {
            Some(What::Summary(s)) => s
                .value
                .iter()
                .filter_map(|v| {
                    v.value
                        .as_ref()
                        .map(|Value::SimpleValue(x)| (v.tag.as_str(), *x))
                })
                .collect(),
            _ => vec![],
        }
    }

    /// Whether this is a `SessionLog` START event (a purge at its step).
    pub fn is_start(&self) -> bool {
        matches!(&self.what, Some(What::SessionLog(l)) if l.status == SessionStatus::Start as i32)
    }
}
