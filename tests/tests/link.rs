//! The binaries must keep `libtorch_cuda.so` as a NEEDED library (or CUDA is silently
//! unavailable on a GPU machine) and carry an rpath/runpath to libtorch (so they run without
//! `LD_LIBRARY_PATH`). See `build/libtorch.rs`.
use std::process::Command;

fn dynamic_section(binary: &std::path::Path) -> String {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(binary)
        .output()
        .expect("readelf (binutils) is needed for this test");
    assert!(
        out.status.success(),
        "readelf -d {} failed",
        binary.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn torch_lib_dir() -> std::path::PathBuf {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .expect("python with torch");
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn binaries_need_libtorch_cuda_and_carry_an_rpath() {
    let lib = torch_lib_dir();
    let cuda_build = lib.join("libtorch_cuda.so").exists();
    for name in ["preprocess", "trainer"] {
        let dynamic = dynamic_section(&e2e_tests::binary(name));
        assert!(
            dynamic.contains("libtorch_cpu.so"),
            "{name} does not link libtorch:\n{dynamic}"
        );
        if cuda_build {
            assert!(
                dynamic.contains("[libtorch_cuda.so]"),
                "{name}: libtorch_cuda.so missing from NEEDED (CUDA would be silently unavailable):\n{dynamic}"
            );
        }
        assert!(
            dynamic.contains(&format!("[{}]", lib.display())),
            "{name}: no rpath/runpath to {}:\n{dynamic}",
            lib.display()
        );
    }
}

#[test]
fn binaries_run_without_ld_library_path() {
    for name in ["preprocess", "trainer"] {
        let out = Command::new(e2e_tests::binary(name))
            .arg("--help")
            .env_remove("LD_LIBRARY_PATH")
            .output()
            .expect("spawn");
        assert!(
            out.status.success(),
            "{name} --help failed without LD_LIBRARY_PATH: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
