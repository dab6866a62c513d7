//! A small disk for out-of-space tests: a `tmpfs` of a given size mounted on an empty folder
//! while a shell script runs, by the first way this machine allows:
//! 1. `unshare -rm` (a user and mount namespace: no privilege needed where user namespaces are
//!    allowed);
//! 2. `unshare -m` as root (a mount namespace);
//! 3. `mount` as root in the test's own namespace (unmounted afterwards).
//!
//! Where none works the test **fails**, saying what was tried: a test that cannot bound the
//! space has not checked anything, and must not pass. Inside the script the folder is the small
//! disk (`mount -o remount,size=...` there gives it room); with 1 and 2 nothing outside the
//! script sees it, so the script copies out what the test reads.
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;

/// How this machine lets a test mount a tmpfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    UserNamespace,
    MountNamespace,
    RootMount,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A shell command line that runs `script` with a tmpfs of `size` on `mnt` by `method`.
fn command(method: Method, mnt: &Path, size: &str, script: &str) -> Command {
    let mnt = mnt.to_str().expect("a UTF-8 path");
    let mount = format!("mount -t tmpfs -o size={size} none '{mnt}' || exit 90");
    let mut c = match method {
        Method::UserNamespace => {
            let mut c = Command::new("unshare");
            c.arg("-rm");
            c
        }
        Method::MountNamespace => {
            let mut c = Command::new("unshare");
            c.arg("-m");
            c
        }
        Method::RootMount => {
            let mut c = Command::new("sh");
            c.arg("-c");
            // Unmounted however the script ends (lazily, should a process still hold it).
            c.arg(format!(
                "{mount}; trap \"umount -l '{mnt}'\" EXIT; ( {script} )"
            ));
            return c;
        }
    };
    c.args(["sh", "-c", &format!("{mount}; {script}")]);
    c
}

/// The first method that mounts a tmpfs here, or a description of every refusal.
pub fn method() -> Result<Method, String> {
    static M: OnceLock<Result<Method, String>> = OnceLock::new();
    M.get_or_init(|| {
        let mut tried = vec![];
        let root = is_root();
        for m in [
            Method::UserNamespace,
            Method::MountNamespace,
            Method::RootMount,
        ] {
            if m != Method::UserNamespace && !root {
                tried.push(format!("{m:?}: needs root (not root here)"));
                continue;
            }
            let probe = tempfile::tempdir().expect("a temporary folder");
            let p = probe.path().to_str().expect("a UTF-8 path");
            let check = format!(
                "grep -qs ' {p} tmpfs ' /proc/self/mounts && echo probe > '{p}/probe' && test -s '{p}/probe'"
            );
            let out = command(m, probe.path(), "64k", &check)
                .stdout(Stdio::null())
                .output();
            match out {
                Ok(o) if o.status.success() => return Ok(m),
                Ok(o) => tried.push(format!(
                    "{m:?}: {} {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                )),
                Err(e) => tried.push(format!("{m:?}: {e}")),
            }
        }
        Err(tried.join("; "))
    })
    .clone()
}

/// Runs `script` with `sh` while a tmpfs of `size` (e.g. `32k`, `4m`) is mounted on the empty
/// folder `mnt`; `env` is set for the script. Fails the test when this machine allows no way
/// to mount one.
pub fn with_small_disk(mnt: &Path, size: &str, env: &[(&str, &str)], script: &str) -> ExitStatus {
    let m = method().unwrap_or_else(|tried| {
        panic!(
            "this test needs a small disk and this machine allows no way to make one \
             (tried: {tried}); run the suite as root or where `unshare -rm` is allowed"
        )
    });
    let mut c = command(m, mnt, size, script);
    for (k, v) in env {
        c.env(k, v);
    }
    c.status().expect("running the small-disk script")
}
