//! The hand-written CUDA kernels (`shared/kernels/*.cu`): their sources, compiled at run time by
//! NVRTC for the device's architecture and cached on disk, and typed launches
//! (docs/fused-step.md).
//!
//! - Nothing CUDA is linked: NVRTC and the driver are opened with `dlopen` when first needed
//!   ([`ffi`]), so the workspace builds and runs on a machine without CUDA, and a CPU machine
//!   can compile every kernel (the tests do, for sm_80 and sm_90).
//! - NVRTC and the CUDA headers come from torch's own dependency `nvidia-cuda-*` (PyPI wheels:
//!   `site-packages/nvidia/cu13/{lib,include}`), found beside the `libtorch_cpu.so` this process
//!   loaded, or in `$FAST_ELECTRA_CUDA_DIR` (a folder with `lib/libnvrtc.so.13` and
//!   `include/cuda_bf16.h`).
//! - Compiled kernels are cached in `$FAST_ELECTRA_KERNEL_CACHE` (default
//!   `$XDG_CACHE_HOME/fast-electra/kernels` or `~/.cache/fast-electra/kernels`), one CUBIN per
//!   SHA-256 of (sources, options, NVRTC version); a write goes to a temporary name and is
//!   renamed.
//! - Kernels run on the legacy default stream (stream 0), which is libtorch's current stream in
//!   a program that never changes it, so they are ordered with ATen's work on the same device
//!   and a tensor freed by libtorch after a launch is not reused before the kernel ran.
pub mod ffi;
pub mod philox;

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// Every kernel file, in the order they are concatenated after `common.cuh` into one program.
pub const SOURCES: [(&str, &str); 5] = [
    ("layernorm.cu", include_str!("../../kernels/layernorm.cu")),
    ("gelu.cu", include_str!("../../kernels/gelu.cu")),
    ("rtd_loss.cu", include_str!("../../kernels/rtd_loss.cu")),
    ("adamw.cu", include_str!("../../kernels/adamw.cu")),
    ("sampler.cu", include_str!("../../kernels/sampler.cu")),
];

/// The header every kernel file includes.
pub const COMMON: &str = include_str!("../../kernels/common.cuh");

/// Every `extern "C"` kernel the program defines (the tests check each is in the CUBIN).
pub const KERNELS: [&str; 13] = [
    "embed_ln_fwd",
    "embed_ln_bwd",
    "residual_ln_fwd",
    "residual_ln_bwd",
    "ln_param_grads",
    "col_sum_bf16",
    "dropout_mask",
    "bias_gelu_fwd",
    "bias_gelu_bwd",
    "rtd_loss",
    "adamw_bf16",
    "sample_tempered_bf16",
    "sample_tempered_f32",
];

/// The one program NVRTC compiles: `common.cuh` then every kernel file, with `#line`
/// directives so that errors name the file and line.
pub fn program() -> String {
    let mut s = format!("#line 1 \"common.cuh\"\n{COMMON}\n");
    for (name, src) in SOURCES {
        s.push_str(&format!("#line 1 \"{name}\"\n{src}\n"));
    }
    s
}

/// Where NVRTC and the CUDA headers are: `lib/` and `include/` of torch's `nvidia/cu13`.
#[derive(Debug, Clone)]
pub struct CudaDir {
    pub lib: PathBuf,
    pub include: PathBuf,
}

impl CudaDir {
    /// `$FAST_ELECTRA_CUDA_DIR`, else `nvidia/cu13` beside the loaded libtorch's Python
    /// package (site-packages/torch/lib/libtorch_cpu.so -> site-packages/nvidia/cu13).
    pub fn locate() -> anyhow::Result<Self> {
        if let Some(d) = std::env::var_os("FAST_ELECTRA_CUDA_DIR") {
            return Self::at(Path::new(&d)).context("$FAST_ELECTRA_CUDA_DIR");
        }
        let torch_lib = loaded_libtorch_dir().context(
            "finding NVRTC: libtorch_cpu.so is not among this process's libraries; set \
             FAST_ELECTRA_CUDA_DIR to a folder with lib/libnvrtc.so.13 and include/cuda_bf16.h",
        )?;
        // .../site-packages/torch/lib -> .../site-packages/nvidia/cu13
        let site = torch_lib
            .parent()
            .and_then(Path::parent)
            .context("torch's lib folder has no grandparent")?;
        Self::at(&site.join("nvidia").join("cu13")).with_context(|| {
            format!(
                "finding NVRTC beside libtorch ({}): torch's nvidia-cuda-nvrtc wheel; set \
                 FAST_ELECTRA_CUDA_DIR to use another",
                torch_lib.display()
            )
        })
    }

    fn at(dir: &Path) -> anyhow::Result<Self> {
        let d = CudaDir {
            lib: dir.join("lib"),
            include: dir.join("include"),
        };
        for f in [d.lib.join("libnvrtc.so.13"), d.include.join("cuda_bf16.h")] {
            if !f.is_file() {
                bail!("{}: expected a file, found none", f.display());
            }
        }
        Ok(d)
    }
}

/// The folder of the `libtorch_cpu.so` mapped into this process (from /proc/self/maps).
fn loaded_libtorch_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// The on-disk cache folder of compiled kernels.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("FAST_ELECTRA_KERNEL_CACHE") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("fast-electra").join("kernels"))
}

/// The NVRTC options for `arch` (e.g. `sm_90`).
pub fn options(arch: &str, dir: &CudaDir) -> Vec<String> {
    vec![
        format!("--gpu-architecture={arch}"),
        "--std=c++17".into(),
        format!("-I{}", dir.include.display()),
        "-lineinfo".into(),
    ]
}

/// The CUBIN of [`program`] for `arch`, from the cache or compiled (and then cached). Returns
/// the bytes and whether they came from the cache.
pub fn cubin(arch: &str) -> anyhow::Result<(Vec<u8>, bool)> {
    let dir = CudaDir::locate()?;
    let nvrtc = ffi::Nvrtc::open(&dir)?;
    let src = program();
    let opts = options(arch, &dir);
    let key = {
        let mut k = src.clone();
        k.push_str(&opts[..2].join(" "));
        k.push_str(&format!("{:?}", nvrtc.version()));
        crate::files::hash::sha256_hex(k.as_bytes())
    };
    let cached = cache_dir().map(|d| d.join(format!("{key}-{arch}.cubin")));
    if let Some(bytes) = cached.as_ref().and_then(|p| std::fs::read(p).ok()) {
        return Ok((bytes, true));
    }
    let bytes = nvrtc.compile(&src, "fast_electra_kernels.cu", &opts)?;
    if let Some(p) = cached {
        // A failed cache write only costs a compile next time.
        let _ = p
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .map(|_| crate::files::atomic::write_atomic(&p, &bytes));
    }
    Ok((bytes, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel compiles for Hopper and Ampere with NVRTC (no GPU needed), and the CUBIN
    /// holds each kernel's symbol.
    #[test]
    fn every_kernel_compiles_for_sm_90_and_sm_80() {
        let dir = CudaDir::locate().expect("NVRTC from torch's nvidia-cu13 wheels");
        let nvrtc = ffi::Nvrtc::open(&dir).unwrap();
        eprintln!("NVRTC {:?} in {}", nvrtc.version(), dir.lib.display());
        for arch in ["sm_90", "sm_80"] {
            let t = std::time::Instant::now();
            let bin = nvrtc
                .compile(&program(), "fast_electra_kernels.cu", &options(arch, &dir))
                .unwrap_or_else(|e| panic!("{arch}: {e:#}"));
            eprintln!("{arch}: {} bytes in {:.2?}", bin.len(), t.elapsed());
            assert_eq!(&bin[..4], b"\x7fELF", "{arch}: a CUBIN is an ELF file");
            for k in KERNELS {
                assert!(
                    bin.windows(k.len() + 1)
                        .any(|w| &w[..k.len()] == k.as_bytes() && w[k.len()] == 0),
                    "{arch}: kernel {k} missing from the CUBIN"
                );
            }
        }
    }

    #[test]
    fn a_compile_error_names_the_file_and_line() {
        let dir = CudaDir::locate().unwrap();
        let nvrtc = ffi::Nvrtc::open(&dir).unwrap();
        let src =
            "#line 1 \"broken.cu\"\nextern \"C\" __global__ void k() { undefined_thing(); }\n";
        let err = nvrtc
            .compile(src, "broken.cu", &options("sm_90", &dir))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("broken.cu(1)") && err.contains("undefined_thing"),
            "{err}"
        );
    }
}
