//! The trainer's build script: what every libtorch crate does (`build/libtorch.rs`: rpath,
//! NEEDED libtorch_cuda), then the C++ extension in `csrc/` (fused AdamW and c10d), compiled with
//! the `cc` crate against the headers of the same torch wheel the binaries link.
//!
//! - `optim.cpp`: `at::_fused_adamw_`; `dist.cpp`: TCPStore, Gloo process group, collectives
//!   (needs `-DUSE_C10D_GLOO` and the gloo interface headers vendored in
//!   `csrc/third_party/gloo`, which the wheel does not ship); `reducer.cpp`: c10d's DDP `Reducer`
//!   (bucketed all-reduce overlapped with the backward pass); `nccl.cpp`: the NCCL process group.
//! - `nccl.cpp` is compiled with NCCL only when the wheel's CUDA dependencies provide
//!   `nvidia/cu13/include` (with `crt/`, from `nvidia-cuda-crt`) and `nvidia/nccl/include`, and
//!   libtorch_cuda.so is present; else as a stub whose process group reports "built without
//!   NCCL". `FAST_ELECTRA_NCCL=0` forces the stub.
//! - `stream.cpp`: libtorch's current CUDA stream (for the hand-written kernels' launches),
//!   compiled with the CUDA headers under the same condition as NCCL, else a stub that says so.
//! - Flags: the wheel's C++ ABI (`-D_GLIBCXX_USE_CXX11_ABI=1`; with 0 the c10d symbols do not
//!   link) and C++17.
#[path = "../build/libtorch.rs"]
mod libtorch;

use std::path::{Path, PathBuf};

fn main() {
    libtorch::main();
    for f in [
        "csrc/ext.h",
        "csrc/dist.h",
        "csrc/optim.cpp",
        "csrc/dist.cpp",
        "csrc/reducer.cpp",
        "csrc/nccl.cpp",
        "csrc/stream.cpp",
        "csrc/third_party/gloo",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=FAST_ELECTRA_NCCL");
    let Some(lib) = libtorch::libtorch_lib_dir() else {
        panic!("libtorch not found: run `source scripts/setup.sh` (installs torch==2.11.0)");
    };
    let root = lib.parent().expect("torch/lib has a parent").to_path_buf();
    let include = root.join("include");
    if !include.join("ATen/ATen.h").exists() {
        panic!(
            "{}: no ATen/ATen.h; the trainer's C++ extension needs the headers of the torch wheel",
            include.display()
        );
    }
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .opt_level(2)
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("USE_C10D_GLOO", None)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include("csrc/third_party")
        // torch's headers are noisy; our three files are small and reviewed.
        .flag("-w")
        .file("csrc/optim.cpp")
        .file("csrc/dist.cpp")
        .file("csrc/reducer.cpp")
        .file("csrc/nccl.cpp")
        .file("csrc/stream.cpp");
    let nccl = nccl_include_dirs(&root, &lib);
    if let Some(dirs) = &nccl {
        build
            .define("FE_WITH_NCCL", None)
            .define("FE_WITH_CUDA", None)
            .define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None);
        for d in dirs {
            build.include(d);
        }
    } else {
        println!(
            "cargo:warning=trainer: CUDA/NCCL headers not found next to torch; building without NCCL (Gloo only). See scripts/setup.sh."
        );
    }
    build.compile("fast_electra_ext");
    // The extension's references into libtorch (after the static library on the link line).
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    if nccl.is_some() {
        // ProcessGroupNCCL and c10::cuda::set_device.
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
}

/// The include folders of CUDA (with `crt/`), its `cccl` and NCCL in the torch wheel's
/// `nvidia/` dependencies, when all are present and libtorch has CUDA.
fn nccl_include_dirs(torch_root: &Path, lib: &Path) -> Option<Vec<PathBuf>> {
    if std::env::var("FAST_ELECTRA_NCCL").is_ok_and(|v| v == "0") {
        return None;
    }
    if !lib.join("libtorch_cuda.so").exists() {
        return None;
    }
    let nvidia = torch_root.parent()?.join("nvidia");
    let cuda = nvidia.join("cu13/include");
    let nccl = nvidia.join("nccl/include");
    let ok = cuda.join("cuda_runtime.h").exists()
        && cuda.join("crt/host_config.h").exists()
        && nccl.join("nccl.h").exists();
    ok.then(|| vec![cuda.clone(), cuda.join("cccl"), nccl])
}
