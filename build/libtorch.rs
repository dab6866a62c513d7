//! Build script shared by every crate that links libtorch (see `build = ...` in their manifests).
//!
//! It does two things torch-sys does not:
//! - bakes an rpath to libtorch's folder into every binary and test executable, so that the
//!   binaries run without `LD_LIBRARY_PATH`;
//! - keeps `libtorch_cuda.so` as a NEEDED library (`-Wl,--no-as-needed -ltorch_cuda`). Nothing in
//!   our code references a symbol of it directly, so with the default `--as-needed` the linker
//!   drops it and CUDA is silently unavailable on a GPU machine.
//!
//! libtorch's folder is the one torch-sys found and links (`$LIBTORCH`, or the `torch` package of
//! the Python at hand with `LIBTORCH_USE_PYTORCH=1`, which `.cargo/config.toml` sets): torch-sys
//! passes it to the crates that depend on it directly as `DEP_TCH_LIBTORCH_LIB` (its `links` key
//! is `tch`), hence `torch-sys` among the dependencies of every crate that uses this script. No
//! interpreter is asked again here, and no variable of the caller's environment is read: the
//! script reruns when torch-sys's does, so `cargo build` and `source scripts/setup.sh; cargo
//! build` (which exports `PYTHON`) share one build instead of rebuilding each other's.
//!
//! The trainer's build script (`trainer/build.rs`) includes this file as a module and calls
//! [`main`] before compiling its C++ extension, hence the `pub` items.
use std::path::PathBuf;

/// The folder of the libtorch torch-sys links, as it says it (`None` when it said nothing).
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from)
}

pub fn main() {
    println!("cargo:rerun-if-changed=../build/libtorch.rs");
    let Some(lib) = libtorch_lib_dir() else {
        println!(
            "cargo:warning=libtorch not found (torch-sys gave no DEP_TCH_LIBTORCH_LIB): run \
             scripts/setup (installs torch==2.11.0)"
        );
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
