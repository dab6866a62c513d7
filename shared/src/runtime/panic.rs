//! Turning a caught panic into an error that says what was being done: worker threads and
//! libtorch calls that panic (tch turns a C++ exception into a panic) must reach the user as an
//! error naming the input, not as a bare "thread panicked".
use std::any::Any;

/// The text a panic was raised with (`panic!("...")` or a formatted message), else a placeholder.
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

/// A joined thread's result: its own error, or its panic as an error
/// `"internal error (a panic): {message}"` (the caller adds what the thread was doing).
pub fn joined<T>(result: std::thread::Result<anyhow::Result<T>>) -> anyhow::Result<T> {
    result.unwrap_or_else(|p| {
        Err(anyhow::anyhow!(
            "internal error (a panic): {}",
            message(&*p)
        ))
    })
}

/// Runs `f`, turning a panic into an error `"{what}: internal error (a panic): {message}"`.
pub fn catch<T>(what: impl FnOnce() -> String, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|p| anyhow::anyhow!("{}: internal error (a panic): {}", what(), message(&*p)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_what_and_message() {
        let e = super::catch(|| "row 3".into(), || panic!("bad {}", 7)).unwrap_err();
        assert_eq!(e.to_string(), "row 3: internal error (a panic): bad 7");
        let e = super::catch(|| "x".into(), || std::panic::panic_any(5u8)).unwrap_err();
        assert!(e.to_string().ends_with("(no message)"));
        assert_eq!(super::catch(|| "x".into(), || 4).unwrap(), 4);
    }
}
