//! What the run measures: the named counts behind accuracy, precision, recall and F1
//! ([`Counts`]), the exact ROC AUC of validation scores ([`auc::roc_auc`]), the records of
//! `metrics.jsonl` ([`TrainRecord`], [`ValidationRecord`]), the file itself ([`jsonl`]) and
//! the TensorBoard tags of the records ([`tags`]).
pub mod auc;
pub mod counts;
pub mod jsonl;
pub mod records;
pub mod tags;

pub use counts::{CountTensors, Counts};
pub use jsonl::{read_split, MetricsWriter, METRICS_FILE};
pub use records::{TrainRecord, ValidationRecord};
pub use tags::Scalars;
