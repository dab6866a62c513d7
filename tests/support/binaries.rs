//! The workspace's binaries: where they are, running them, checking how they ended.
use std::path::PathBuf;
use std::process::Output;

/// Path of a binary of this workspace built in the same profile as the running test
/// (`scripts/test` runs `cargo build --release --bins` first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --release --bins` (scripts/test does)",
        path.display()
    );
    path
}

/// Runs binary `name` of this workspace with `args` and returns its output. OpenMP threads sleep
/// while they wait (`OMP_WAIT_POLICY=passive`): on 2 shared cores, spinning torch threads made
/// the trainer and the preprocessor 10-20 times slower.
pub fn run(name: &str, args: &[&str]) -> Output {
    std::process::Command::new(binary(name))
        .args(args)
        .env("OMP_WAIT_POLICY", "passive")
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
}

/// [`run`] with owned arguments.
pub fn run_owned(name: &str, args: &[String]) -> Output {
    run(name, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Fails the test with the command's stderr unless it succeeded; returns the output.
pub fn expect_ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "command failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Fails the test unless the command failed; returns its stderr.
pub fn expect_err(out: Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    stderr(&out)
}

/// The command's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
