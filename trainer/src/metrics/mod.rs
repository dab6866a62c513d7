//! What the run measures: the named counts behind accuracy, precision, recall and F1
//! ([`Counts`]), the exact ROC AUC of validation scores ([`auc::roc_auc`]), the records of
//! `metrics.jsonl` ([`TrainRecord`], [`ValidationRecord`]) and the file itself ([`jsonl`]).
pub mod auc;
pub mod counts;
pub mod jsonl;
pub mod records;

pub use counts::{CountTensors, Counts};
pub use jsonl::{read_split, MetricsWriter, METRICS_FILE};
pub use records::{TrainRecord, ValidationRecord};
