//! Running on a machine: device selection and mixed precision, progress lines, stage clocks.
pub mod clock;
pub mod device;
pub mod panic;
pub mod progress;
