//! Build script shared by every crate that links libtorch (see `build = ...` in their manifests).
//!
//! It does two things torch-sys does not:
//! - bakes an rpath to libtorch's folder into every binary and test executable, so that the
//!   binaries run without `LD_LIBRARY_PATH`;
//! - keeps `libtorch_cuda.so` as a NEEDED library (`-Wl,--no-as-needed -ltorch_cuda`). Nothing in
//!   our code references a symbol of it directly, so with the default `--as-needed` the linker
//!   drops it and CUDA is silently unavailable on a GPU machine.
//!
//! libtorch is found as torch-sys finds it: `$LIBTORCH`, else the `torch` package of `$PYTHON`
//! (default `python3`) when `LIBTORCH_USE_PYTORCH=1` (set in `.cargo/config.toml`).
//!
//! The trainer's build script (`trainer/build.rs`) includes this file as a module and calls
//! [`main`] before compiling its C++ extension, hence the `pub` items.
use std::path::PathBuf;
use std::process::Command;

pub fn libtorch_lib_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(dir).join("lib"));
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let out = Command::new(&python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    Some(PathBuf::from(dir))
}

pub fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON");
    println!("cargo:rerun-if-changed=../build/libtorch.rs");
    let Some(lib) = libtorch_lib_dir() else {
        println!("cargo:warning=libtorch not found: run scripts/setup (installs torch==2.11.0)");
        return;
    };
    let lib = lib.display();
    println!("cargo:rustc-link-search=native={lib}");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if std::path::Path::new(&format!("{lib}/libtorch_cuda.so")).exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
