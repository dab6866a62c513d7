//! Device selection and mixed precision.
//!
//! Mixed precision is done by the model itself rather than by libtorch's autocast: tch 0.24 can
//! switch libtorch autocast on but cannot choose its dtype, and CUDA autocast defaults to fp16,
//! which needs loss scaling. [`with_autocast`] instead sets a thread-local flag that the model's
//! dense layers read: inside it, on CUDA, matrix products and attention run in bf16 while the
//! weights (fp32 master copies), LayerNorm, embeddings, residual sums and every model output stay
//! fp32. This is the same split torch.autocast(dtype=bfloat16) makes for an encoder.
use anyhow::{bail, Context};
use std::cell::Cell;
use tch::Device;

thread_local! {
    static BF16_AUTOCAST: Cell<bool> = const { Cell::new(false) };
}

/// Parses a device name: `auto` (cuda:0 when CUDA is available, else cpu), `cpu`, `cuda`
/// (= cuda:0) or `cuda:N`. Asking for a CUDA device that torch does not see is an error.
pub fn parse_device(s: &str) -> anyhow::Result<Device> {
    let s = s.trim().to_ascii_lowercase();
    let device = match s.as_str() {
        "auto" => return Ok(Device::cuda_if_available()),
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other.strip_prefix("cuda:") {
            Some(n) => n
                .parse::<usize>()
                .with_context(|| format!("device {s:?}: expected cuda:N with N a number"))?,
            None => bail!("device {s:?}: expected one of auto, cpu, cuda, cuda:N"),
        },
    };
    let available = tch::Cuda::device_count();
    if device as i64 >= available {
        bail!(
            "device {s:?}: torch sees {available} CUDA device(s){}",
            if available == 0 {
                " (is this the CUDA build of torch, and is LD_LIBRARY_PATH pointing at its lib folder?)"
            } else {
                ""
            }
        );
    }
    Ok(Device::Cuda(device))
}

/// Runs `f` under bf16 mixed precision when `device` is CUDA, plain fp32 otherwise.
///
/// Model outputs (logits) are fp32 in both cases, so losses need no casts.
pub fn with_autocast<T>(device: Device, f: impl FnOnce() -> T) -> T {
    if !device.is_cuda() {
        return f();
    }
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BF16_AUTOCAST.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(BF16_AUTOCAST.with(|c| c.replace(true)));
    f()
}

/// Whether the current thread is inside [`with_autocast`] for a CUDA device.
pub fn bf16_autocast_active() -> bool {
    BF16_AUTOCAST.with(|c| c.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device(" CPU ").unwrap(), Device::Cpu);
        assert!(parse_device("tpu").is_err());
        assert!(parse_device("cuda:x").is_err());
        assert!(parse_device("cuda:999").is_err());
        let auto = parse_device("auto").unwrap();
        assert_eq!(auto.is_cuda(), tch::Cuda::is_available());
    }

    #[test]
    fn autocast_flag_only_on_cuda_and_restored() {
        assert!(!bf16_autocast_active());
        assert!(!with_autocast(Device::Cpu, bf16_autocast_active));
        assert!(with_autocast(Device::Cuda(0), bf16_autocast_active));
        assert!(!bf16_autocast_active());
    }
}
