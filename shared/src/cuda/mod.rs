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
//!   SHA-256 of (sources, options, the header folder's content, NVRTC's identity), each entry
//!   checksummed: a damaged one is reported and compiled again ([`cache`]); a write goes to a
//!   temporary name and is renamed.
//! - Kernels run on libtorch's current stream when a stream source is set (the trainer sets
//!   it: [`ffi::use_streams_of`]), else on the legacy default stream (stream 0), libtorch's
//!   current stream in a program that never changes it; either way they are ordered with ATen's
//!   work on the same device and a tensor freed by libtorch after a launch is not reused before
//!   the kernel ran.
//! - `FAST_ELECTRA_CUDA_SYNC=1` synchronises the stream around every launch, so that a fault is
//!   reported naming its kernel ([`ffi::SYNC_ENV`]).
pub mod cache;
pub mod ffi;
pub mod philox;

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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

    /// NVRTC's builtins library (`libnvrtc-builtins.so.<major>.<minor>`), which libnvrtc loads.
    pub fn builtins(&self) -> anyhow::Result<PathBuf> {
        std::fs::read_dir(&self.lib)
            .with_context(|| format!("listing {}", self.lib.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libnvrtc-builtins.so."))
            })
            .with_context(|| format!("{}: no libnvrtc-builtins.so.*", self.lib.display()))
    }

    /// What besides the program and options decides a CUBIN: the SHA-256 of the header folder
    /// (every file), and NVRTC's version with the SHA-256 of its builtins library and the size
    /// of libnvrtc (a patch release keeps the major.minor version). Computed once per process.
    pub fn identity(&self, nvrtc: &ffi::Nvrtc) -> anyhow::Result<(String, String)> {
        static ID: OnceLock<Result<(String, String), String>> = OnceLock::new();
        ID.get_or_init(|| {
            let run = || -> anyhow::Result<(String, String)> {
                let headers = cache::folder_hash(&self.include)?;
                let builtins = crate::files::hash::sha256_file(&self.builtins()?)?;
                let lib = self.lib.join("libnvrtc.so.13");
                let size = std::fs::metadata(&lib)
                    .with_context(|| format!("reading {}", lib.display()))?
                    .len();
                let (a, b) = nvrtc.version();
                Ok((
                    headers,
                    format!("{a}.{b} builtins {builtins} libnvrtc {size} bytes"),
                ))
            };
            run().map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("the kernel cache's key: {e}"))
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
    cubin_in(cache_dir().as_deref(), arch, false)
}

/// [`cubin`] with the cache folder `cache` (None: no cache); `recompile`: ignore a cached entry
/// (the driver refused it) and replace it.
pub fn cubin_in(
    cache: Option<&Path>,
    arch: &str,
    recompile: bool,
) -> anyhow::Result<(Vec<u8>, bool)> {
    let dir = CudaDir::locate()?;
    let nvrtc = ffi::Nvrtc::open(&dir)?;
    let src = program();
    let opts = options(arch, &dir);
    let file = match cache {
        Some(c) => {
            let (headers, toolchain) = dir.identity(nvrtc)?;
            Some(cache::path(
                c,
                &cache::key(&src, &opts, &headers, &toolchain, arch),
                arch,
            ))
        }
        None => None,
    };
    if let (Some(p), false) = (&file, recompile) {
        match cache::read(p) {
            cache::Cached::Valid(bytes) => return Ok((bytes, true)),
            cache::Cached::Missing => {}
            cache::Cached::Corrupt(why) => {
                eprintln!("kernel cache: {}: {why}; recompiling", p.display())
            }
        }
    }
    let bytes = nvrtc.compile(&src, "fast_electra_kernels.cu", &opts)?;
    if let Some(p) = &file {
        // A failed cache write only costs a compile next time.
        if let Err(e) = cache::write(p, &bytes) {
            eprintln!("kernel cache: {}: not written: {e:#}", p.display());
        }
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

    /// The fused multiply-adds (`fma.rn.f32`, `fma.rn.f64`) in the PTX of the kernels (`.entry`)
    /// of `src` compiled for compute_90 with NVRTC's defaults (contraction allowed), functions
    /// called out of line (`.func`) excluded.
    fn entry_fmas(src: &str) -> usize {
        let dir = CudaDir::locate().unwrap();
        let nvrtc = ffi::Nvrtc::open(&dir).unwrap();
        let mut opts = options("compute_90", &dir);
        opts.push("-DFE_OPAQUE_MATH".into());
        let ptx = nvrtc.compile_ptx(src, "sampler.cu", &opts).unwrap();
        let mut in_entry = false;
        let mut fmas = 0;
        for line in ptx.lines() {
            if line.contains(".entry ") {
                in_entry = true;
            } else if line.contains(".func ") {
                in_entry = false;
            }
            let l = line.trim_start();
            if in_entry && (l.starts_with("fma.rn.f32") || l.starts_with("fma.rn.f64")) {
                fmas += 1;
            }
        }
        fmas
    }

    /// The sampler's arithmetic is its CPU emulation's, operation for operation: NVRTC
    /// contracts a multiply and an add into a fused multiply-add by default (`--fmad=true`),
    /// and the sampler's kernels hold none (the maths library's `expf`, `exp` and `log`, which
    /// use fused multiply-adds by design, compiled out of line here with FE_OPAQUE_MATH). The
    /// same detector finds the one a plain `a * b + c` becomes.
    #[test]
    fn the_sampler_has_no_contracted_arithmetic() {
        let (name, sampler) = SOURCES[4];
        assert_eq!(name, "sampler.cu");
        let src = format!("#line 1 \"common.cuh\"\n{COMMON}\n#line 1 \"sampler.cu\"\n{sampler}\n");
        assert_eq!(
            entry_fmas(&src),
            0,
            "a multiply-add of sampler.cu is fused: use __dmul_rn/__dadd_rn/__fmul_rn/__fadd_rn"
        );
        let control = "extern \"C\" __global__ void k(double* x, float* y) {\n\
                       x[0] = x[1] * x[2] + x[3];\n  y[0] = y[1] * y[2] + y[3];\n}\n";
        assert_eq!(entry_fmas(control), 2, "the detector finds contracted code");
    }

    /// A damaged cache entry is reported and recompiled (and then repaired), not a failure.
    #[test]
    fn a_corrupt_cached_cubin_is_recompiled() {
        let cache = tempfile::tempdir().unwrap();
        let (bin, cached) = cubin_in(Some(cache.path()), "sm_80", false).unwrap();
        assert!(!cached);
        let (again, cached) = cubin_in(Some(cache.path()), "sm_80", false).unwrap();
        assert!(cached && again == bin, "the second call reads the cache");
        let files: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        let full = std::fs::read(&files[0]).unwrap();
        std::fs::write(&files[0], &full[..full.len() / 2]).unwrap();
        let (fixed, cached) = cubin_in(Some(cache.path()), "sm_80", false).unwrap();
        assert!(!cached && fixed == bin, "recompiled after the damage");
        assert_eq!(
            std::fs::read(&files[0]).unwrap(),
            full,
            "and the entry repaired"
        );
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
