//! Facts about the GPU that libtorch (through tch 0.24) does not expose: its name (for the
//! peak FLOP/s of the MFU figure) and the memory in use, both from `nvidia-smi` when present.
use tch::Device;

fn query(device: Device, field: &str) -> Option<String> {
    let Device::Cuda(i) = device else {
        return None;
    };
    let out = std::process::Command::new("nvidia-smi")
        .args([
            &format!("--query-gpu={field}"),
            "--format=csv,noheader,nounits",
            "-i",
            &i.to_string(),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The GPU's name, e.g. "NVIDIA H100 80GB HBM3".
pub fn name(device: Device) -> Option<String> {
    query(device, "name")
}

/// Memory in use on the GPU in bytes (all processes; includes the caching allocator's
/// reserve), as `nvidia-smi` reports it.
pub fn memory_used(device: Device) -> Option<u64> {
    query(device, "memory.used")?
        .parse::<u64>()
        .ok()
        .map(|mib| mib << 20)
}
