//! The trainer's libtorch C++ extension (`trainer/csrc/`, compiled by `trainer/build.rs`): the
//! one place in the trainer with `unsafe` code.
//!
//! It binds what tch 0.24 lacks: PyTorch's fused AdamW kernel (`at::_fused_adamw_`) and c10d
//! (a `TCPStore`, the Gloo and NCCL process groups, all-reduce, broadcast, barrier). The C++ side
//! catches every exception and returns its message (`ext.h`), which becomes an
//! [`anyhow::Error`] here; nothing unwinds across the boundary and nothing aborts.
//!
//! The workspace denies `unsafe_code`; it is allowed in this module alone because calling C++
//! through a C ABI is unsafe by definition. Each call states why it is sound. The handles
//! ([`Store`], [`ProcessGroup`], [`Work`]) own their C++ objects and free them on drop.
#![allow(unsafe_code)]

use anyhow::anyhow;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::NonNull;
use std::time::Duration;
use tch::Tensor;

#[repr(C)]
struct FeStore {
    _opaque: [u8; 0],
}
#[repr(C)]
struct FePg {
    _opaque: [u8; 0],
}
#[repr(C)]
struct FeWork {
    _opaque: [u8; 0],
}
#[repr(C)]
struct FeReducer {
    _opaque: [u8; 0],
}

/// `at::Tensor*`, as tch's `Tensor::as_ptr` returns it.
type TensorPtr = *mut c_void;

extern "C" {
    fn fe_free(p: *mut c_char);
    fn fe_fused_adamw(
        param: TensorPtr,
        grad: TensorPtr,
        exp_avg: TensorPtr,
        exp_avg_sq: TensorPtr,
        step: TensorPtr,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        grad_scale: TensorPtr,
    ) -> *mut c_char;

    fn fe_store_tcp(
        host: *const c_char,
        port: u16,
        is_server: bool,
        world_size: i64,
        timeout_ms: i64,
        prefix: *const c_char,
        out: *mut *mut FeStore,
    ) -> *mut c_char;
    fn fe_store_free(s: *mut FeStore);
    fn fe_free_bytes(p: *mut u8);
    fn fe_store_set(
        s: *mut FeStore,
        key: *const c_char,
        data: *const u8,
        len: usize,
    ) -> *mut c_char;
    fn fe_store_get(
        s: *mut FeStore,
        key: *const c_char,
        data: *mut *mut u8,
        len: *mut usize,
    ) -> *mut c_char;
    fn fe_store_add(s: *mut FeStore, key: *const c_char, delta: i64, out: *mut i64) -> *mut c_char;

    fn fe_has_nccl() -> bool;
    fn fe_current_cuda_stream(device: c_int, out: *mut *mut c_void) -> *mut c_char;
    fn fe_pg_gloo(
        s: *mut FeStore,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        out: *mut *mut FePg,
    ) -> *mut c_char;
    fn fe_pg_nccl(
        s: *mut FeStore,
        rank: c_int,
        size: c_int,
        device: c_int,
        timeout_ms: i64,
        out: *mut *mut FePg,
    ) -> *mut c_char;
    fn fe_pg_free(pg: *mut FePg);
    fn fe_pg_allreduce(
        pg: *mut FePg,
        t: TensorPtr,
        op: c_int,
        out: *mut *mut FeWork,
    ) -> *mut c_char;
    fn fe_pg_broadcast(
        pg: *mut FePg,
        t: TensorPtr,
        root: c_int,
        out: *mut *mut FeWork,
    ) -> *mut c_char;
    fn fe_pg_barrier(pg: *mut FePg, out: *mut *mut FeWork) -> *mut c_char;
    fn fe_work_wait(w: *mut FeWork, timeout_ms: i64) -> *mut c_char;
    fn fe_work_time_completion(w: *mut FeWork) -> *mut c_char;
    fn fe_work_done_ns(w: *mut FeWork) -> i64;
    fn fe_work_free(w: *mut FeWork);

    #[allow(clippy::too_many_arguments)]
    fn fe_reducer_new(
        backend: *mut FePg,
        store: *mut FeStore,
        rank: c_int,
        size: c_int,
        cuda: bool,
        params: *const TensorPtr,
        names: *const *const c_char,
        n: usize,
        bucket_bytes: i64,
        bf16: bool,
        timing: bool,
        out: *mut *mut FeReducer,
    ) -> *mut c_char;
    fn fe_reducer_free(r: *mut FeReducer);
    fn fe_reducer_buckets(r: *mut FeReducer) -> usize;
    fn fe_reducer_prepare(r: *mut FeReducer) -> *mut c_char;
    fn fe_reducer_check_finished(r: *mut FeReducer) -> *mut c_char;
    fn fe_reducer_take_times(
        r: *mut FeReducer,
        index: *mut i64,
        launched: *mut i64,
        done: *mut i64,
        cap: usize,
        n: *mut usize,
    ) -> *mut c_char;
    fn fe_now_ns() -> i64;
}

/// Turns the C++ side's error convention (null = success, else a malloc'd message) into a
/// `Result`, freeing the message.
fn check(err: *mut c_char) -> anyhow::Result<()> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return of an `fe_*` function is a NUL-terminated string allocated
    // with malloc by `fe::dup_message`, owned by us; we copy it before freeing it once.
    let msg = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: see above; `fe_free` is `free`, and the pointer is not used afterwards.
    unsafe { fe_free(err) };
    Err(anyhow!(msg))
}

fn ptr(t: &Tensor) -> TensorPtr {
    t.as_ptr() as TensorPtr
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn cstring(s: &str) -> anyhow::Result<CString> {
    CString::new(s).map_err(|_| anyhow!("{s:?}: contains a NUL byte"))
}

/// One AdamW update of `param` with PyTorch's fused kernel (see `csrc/optim.cpp`).
///
/// All tensors are on one device, `param`, `grad` and the moments of one floating dtype and
/// shape, `step` a one-element fp32 tensor holding the update number (>= 1, incremented by the
/// caller). `grad_scale`: the gradient is divided by this one-element fp32 tensor.
/// The kernel writes `param`, `exp_avg`, `exp_avg_sq` (and may write `grad`) in place.
#[allow(clippy::too_many_arguments)]
pub fn fused_adamw(
    param: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    step: &Tensor,
    lr: f64,
    (beta1, beta2): (f64, f64),
    weight_decay: f64,
    eps: f64,
    grad_scale: Option<&Tensor>,
) -> anyhow::Result<()> {
    let scale = grad_scale.map_or(std::ptr::null_mut(), ptr);
    // SAFETY: every pointer is a live `at::Tensor*` borrowed from a tch `Tensor` for the
    // duration of the call (or null for the optional scale); the C++ side only reads them and
    // modifies tensor *data* in place (like tch's own in-place ops), never the handles. Shape,
    // dtype and device mismatches are checked by ATen and come back as an error.
    check(unsafe {
        fe_fused_adamw(
            ptr(param),
            ptr(grad),
            ptr(exp_avg),
            ptr(exp_avg_sq),
            ptr(step),
            lr,
            beta1,
            beta2,
            weight_decay,
            eps,
            scale,
        )
    })
}

/// Whether this binary was built with the NCCL process group.
pub fn has_nccl() -> bool {
    // SAFETY: no arguments, returns a constant.
    unsafe { fe_has_nccl() }
}

/// libtorch's current CUDA stream on device `index` (`c10::cuda::getCurrentCUDAStream`), as the
/// `CUstream` integer the hand-written kernels are launched on (0 = the legacy default stream).
/// An error where there is no such device, or in a build without the CUDA headers.
pub fn current_cuda_stream(index: usize) -> anyhow::Result<u64> {
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: a valid out-pointer to a `void*`, written by the C++ side only on success; the
    // device index is checked by c10 (an exception, returned as an error).
    check(unsafe { fe_current_cuda_stream(index as c_int, &mut out) })?;
    Ok(out as u64)
}

/// A c10d key-value store (`TCPStore`, optionally behind a key prefix).
pub struct Store(NonNull<FeStore>);

// SAFETY: c10d stores are used from several threads in PyTorch itself (the TCPStore client
// serialises its operations with a mutex), and the handle is only freed on drop.
unsafe impl Send for Store {}
// SAFETY: as above: every operation on the C++ object is internally synchronised.
unsafe impl Sync for Store {}

impl Store {
    /// Connects to (or, with `is_server`, hosts) the TCPStore at `host:port`. Keys are
    /// prefixed with `prefix`. `timeout` bounds the connection and every blocking `get`.
    pub fn tcp(
        host: &str,
        port: u16,
        is_server: bool,
        world_size: Option<usize>,
        timeout: Duration,
        prefix: &str,
    ) -> anyhow::Result<Self> {
        let host = cstring(host)?;
        let prefix = cstring(prefix)?;
        let mut out: *mut FeStore = std::ptr::null_mut();
        // SAFETY: the strings outlive the call (copied by the C++ side); `out` is a valid
        // place for the new handle, written only on success.
        check(unsafe {
            fe_store_tcp(
                host.as_ptr(),
                port,
                is_server,
                world_size.map_or(0, |w| w as i64),
                millis(timeout),
                prefix.as_ptr(),
                &mut out,
            )
        })?;
        NonNull::new(out)
            .map(Self)
            .ok_or_else(|| anyhow!("fe_store_tcp returned no store"))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        let key = cstring(key)?;
        // SAFETY: the handle is live (owned by self); key and value outlive the call and are
        // copied by the C++ side.
        check(unsafe { fe_store_set(self.0.as_ptr(), key.as_ptr(), value.as_ptr(), value.len()) })
    }

    /// Waits for `key` (up to the store's timeout) and returns its value.
    pub fn get(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        let key = cstring(key)?;
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: live handle; `data`/`len` are valid places, written only on success.
        check(unsafe { fe_store_get(self.0.as_ptr(), key.as_ptr(), &mut data, &mut len) })?;
        // SAFETY: on success `data` points at `len` bytes malloc'd by the C++ side for us.
        let value = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
        // SAFETY: freed once, with the allocator that made it; not used afterwards.
        unsafe { fe_free_bytes(data) };
        Ok(value)
    }

    /// Adds `delta` to the integer at `key` (0 if absent) and returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> anyhow::Result<i64> {
        let key = cstring(key)?;
        let mut out = 0i64;
        // SAFETY: live handle; `out` is a valid place.
        check(unsafe { fe_store_add(self.0.as_ptr(), key.as_ptr(), delta, &mut out) })?;
        Ok(out)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: we own the handle; freed once. A process group made from this store holds
        // its own reference to the C++ store, so it stays valid for it.
        unsafe { fe_store_free(self.0.as_ptr()) }
    }
}

/// The steady clock the reducer's bucket times are read on, in nanoseconds.
pub fn now_ns() -> i64 {
    // SAFETY: no arguments, reads a clock.
    unsafe { fe_now_ns() }
}

/// How the [`Reducer`] sends a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReducerOptions {
    /// Bucket size cap in bytes (the first bucket is capped at 1 MiB, as DDP's).
    pub bucket_bytes: i64,
    /// Cast the bucket to bf16 for the all-reduce (after dividing by the world size).
    pub bf16: bool,
    /// Record each bucket's launch and completion time ([`Reducer::take_times`]).
    pub timing: bool,
}

/// One bucket's all-reduce in a backward pass: its index and steady-clock launch and completion
/// times ([`now_ns`]; completion 0 if it had not completed when read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketTime {
    pub bucket: i64,
    pub launched_ns: i64,
    pub done_ns: i64,
}

/// c10d's DDP `Reducer` over a model's parameters (`csrc/reducer.cpp`): bucketed gradient
/// all-reduce launched from autograd hooks during the backward pass; the averaged gradients
/// land in the parameters' `.grad`.
pub struct Reducer(NonNull<FeReducer>);

// SAFETY: the Reducer is driven from the thread that runs forward and backward (its hooks run
// on autograd's threads, synchronised by its own mutex); the handle is only freed on drop.
unsafe impl Send for Reducer {}

impl Reducer {
    /// A Reducer over `params` (leaf tensors requiring grad, named by `names`) in `group`,
    /// made through `store` (rank `rank` of `size`; `cuda`: an NCCL group).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        group: &ProcessGroup,
        store: &Store,
        rank: usize,
        size: usize,
        cuda: bool,
        params: &[Tensor],
        names: &[String],
        opts: ReducerOptions,
    ) -> anyhow::Result<Self> {
        if params.len() != names.len() || params.is_empty() {
            anyhow::bail!("Reducer: expected one name per parameter and at least one parameter");
        }
        let ptrs: Vec<TensorPtr> = params.iter().map(|t| t.as_ptr() as TensorPtr).collect();
        let names: Vec<CString> = names.iter().map(|n| cstring(n)).collect::<Result<_, _>>()?;
        let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let mut out: *mut FeReducer = std::ptr::null_mut();
        // SAFETY: live handles; `ptrs` point at tensors owned by `params` and `name_ptrs` at
        // strings owned by `names`, all outliving the call (the C++ side copies the tensors,
        // which share storage, and the names); `out` is written only on success.
        check(unsafe {
            fe_reducer_new(
                group.pg.as_ptr(),
                store.0.as_ptr(),
                rank as c_int,
                size as c_int,
                cuda,
                ptrs.as_ptr(),
                name_ptrs.as_ptr(),
                ptrs.len(),
                opts.bucket_bytes,
                opts.bf16,
                opts.timing,
                &mut out,
            )
        })?;
        NonNull::new(out)
            .map(Self)
            .ok_or_else(|| anyhow!("fe_reducer_new returned no reducer"))
    }

    /// How many buckets the gradients travel in.
    pub fn buckets(&self) -> usize {
        // SAFETY: live handle.
        unsafe { fe_reducer_buckets(self.0.as_ptr()) }
    }

    /// Call before a synchronising micro-batch's forward and backward pass (DDP's forward).
    pub fn prepare(&mut self) -> anyhow::Result<()> {
        // SAFETY: live handle.
        check(unsafe { fe_reducer_prepare(self.0.as_ptr()) })
    }

    /// After a synchronising backward pass: an error (c10d's, listing the indices of the
    /// parameters without a gradient) when some parameter got no gradient in it, so that its
    /// buckets were never all-reduced.
    pub fn check_finished(&mut self) -> anyhow::Result<()> {
        // SAFETY: live handle.
        check(unsafe { fe_reducer_check_finished(self.0.as_ptr()) })
    }

    /// The bucket times recorded since the last call (timing on), in launch order.
    pub fn take_times(&mut self) -> anyhow::Result<Vec<BucketTime>> {
        const CAP: usize = 4096;
        let (mut i, mut l, mut d) = (vec![0i64; CAP], vec![0i64; CAP], vec![0i64; CAP]);
        let mut n = 0usize;
        // SAFETY: live handle; three buffers of CAP elements and a valid `n`.
        check(unsafe {
            fe_reducer_take_times(
                self.0.as_ptr(),
                i.as_mut_ptr(),
                l.as_mut_ptr(),
                d.as_mut_ptr(),
                CAP,
                &mut n,
            )
        })?;
        Ok((0..n)
            .map(|k| BucketTime {
                bucket: i[k],
                launched_ns: l[k],
                done_ns: d[k],
            })
            .collect())
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // SAFETY: we own the handle; freed once.
        unsafe { fe_reducer_free(self.0.as_ptr()) }
    }
}

/// Reduction of an all-reduce (the C++ side also has max = 1, min = 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum = 0,
}

/// A c10d process group (`ProcessGroupGloo` or `ProcessGroupNCCL`).
pub struct ProcessGroup {
    pg: NonNull<FePg>,
    /// Drop without running the C++ destructor (see [`ProcessGroup::leak`]).
    leak: bool,
}

// SAFETY: c10d process groups are thread-safe (collectives are queued under a mutex and run
// on the group's own threads); the handle is only freed on drop.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// The Gloo process group of `size` ranks (CPU tensors), connected through `store`
    /// (a full mesh, made within `timeout`, which also bounds every collective).
    pub fn gloo(
        store: &Store,
        rank: usize,
        size: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut out: *mut FePg = std::ptr::null_mut();
        // SAFETY: live store handle (the group keeps its own reference to the C++ store);
        // `out` is a valid place, written only on success.
        check(unsafe {
            fe_pg_gloo(
                store.0.as_ptr(),
                rank as c_int,
                size as c_int,
                millis(timeout),
                &mut out,
            )
        })?;
        Self::wrap(out)
    }

    /// The NCCL process group (CUDA tensors on `cuda:device`); an error in a binary built
    /// without NCCL.
    pub fn nccl(
        store: &Store,
        rank: usize,
        size: usize,
        device: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut out: *mut FePg = std::ptr::null_mut();
        // SAFETY: as for `gloo`.
        check(unsafe {
            fe_pg_nccl(
                store.0.as_ptr(),
                rank as c_int,
                size as c_int,
                device as c_int,
                millis(timeout),
                &mut out,
            )
        })?;
        Self::wrap(out)
    }

    fn wrap(out: *mut FePg) -> anyhow::Result<Self> {
        let pg = NonNull::new(out).ok_or_else(|| anyhow!("no process group was returned"))?;
        Ok(Self { pg, leak: false })
    }

    /// Starts an in-place all-reduce of `t` over the group.
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp) -> anyhow::Result<Work> {
        let mut out: *mut FeWork = std::ptr::null_mut();
        // SAFETY: live handle; `t` is a live `at::Tensor*` whose storage c10d keeps a
        // reference to until the work completes; `out` is a valid place.
        check(unsafe { fe_pg_allreduce(self.pg.as_ptr(), ptr(t), op as c_int, &mut out) })?;
        Work::wrap(out)
    }

    /// Starts an in-place broadcast of `t` from rank `root`.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> anyhow::Result<Work> {
        let mut out: *mut FeWork = std::ptr::null_mut();
        // SAFETY: as for `all_reduce`.
        check(unsafe { fe_pg_broadcast(self.pg.as_ptr(), ptr(t), root as c_int, &mut out) })?;
        Work::wrap(out)
    }

    /// Starts a barrier.
    pub fn barrier(&self) -> anyhow::Result<Work> {
        let mut out: *mut FeWork = std::ptr::null_mut();
        // SAFETY: live handle; `out` is a valid place.
        check(unsafe { fe_pg_barrier(self.pg.as_ptr(), &mut out) })?;
        Work::wrap(out)
    }

    /// Makes drop skip the C++ destructor, which waits for queued collectives: after a peer
    /// was lost the process exits with an error instead of waiting on them.
    pub fn leak(&mut self) {
        self.leak = true;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.leak {
            // SAFETY: we own the handle; freed once.
            unsafe { fe_pg_free(self.pg.as_ptr()) }
        }
    }
}

/// A started collective.
pub struct Work(NonNull<FeWork>);

// SAFETY: a c10d `Work` is waited on from any thread in PyTorch (its state is guarded by a
// mutex and condition variable).
unsafe impl Send for Work {}

impl Work {
    fn wrap(out: *mut FeWork) -> anyhow::Result<Self> {
        NonNull::new(out)
            .map(Self)
            .ok_or_else(|| anyhow!("no work handle was returned"))
    }

    /// Waits until the collective completed: an error if it failed (a peer closed its
    /// connection, ...) or did not complete within `timeout`.
    pub fn wait(&self, timeout: Duration) -> anyhow::Result<()> {
        // SAFETY: live handle.
        check(unsafe { fe_work_wait(self.0.as_ptr(), millis(timeout)) })
    }

    /// Records the time ([`now_ns`]) at which the collective completes, read by
    /// [`Work::done_ns`] (call right after the launch). On Gloo: when the all-reduce finished;
    /// on NCCL: when it was enqueued on the GPU (its completion is a CUDA event), so it says
    /// little there.
    pub fn time_completion(&self) -> anyhow::Result<()> {
        // SAFETY: live handle.
        check(unsafe { fe_work_time_completion(self.0.as_ptr()) })
    }

    /// The completion time recorded since [`Work::time_completion`]; 0 when none (yet).
    pub fn done_ns(&self) -> i64 {
        // SAFETY: live handle.
        unsafe { fe_work_done_ns(self.0.as_ptr()) }
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        // SAFETY: we own the handle; freed once. c10d keeps the work's own state alive while
        // its collective still runs.
        unsafe { fe_work_free(self.0.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a GPU, the current stream of device 0 is libtorch's default stream (the legacy
    /// one, 0, in torch 2.11); without one (this CPU machine) asking is an error naming the
    /// cause, not a crash.
    #[test]
    fn the_current_cuda_stream_or_a_clear_error() {
        match (tch::Cuda::is_available(), current_cuda_stream(0)) {
            (true, Ok(s)) => assert_eq!(s, 0, "the default stream"),
            (false, Err(e)) => {
                let e = e.to_string();
                assert!(e.to_lowercase().contains("cuda"), "{e}");
            }
            (gpu, r) => panic!("GPU available: {gpu}, current stream: {r:?}"),
        }
    }

    #[test]
    fn cpp_exceptions_become_errors() {
        // A shape mismatch is caught by ATen (a c10::Error), not an abort.
        let p = Tensor::zeros([4], (tch::Kind::Float, tch::Device::Cpu));
        let g = Tensor::zeros([3], (tch::Kind::Float, tch::Device::Cpu));
        let step = Tensor::ones([1], (tch::Kind::Float, tch::Device::Cpu));
        let e = fused_adamw(
            &p,
            &g,
            &p.zeros_like(),
            &p.zeros_like(),
            &step,
            0.1,
            (0.9, 0.98),
            0.0,
            1e-6,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(!e.is_empty() && !e.contains("Exception raised from"), "{e}");
    }

    #[test]
    fn store_refuses_an_unreachable_master_within_its_timeout() {
        let t0 = std::time::Instant::now();
        // Port 1 on localhost: nobody listens.
        let r = Store::tcp(
            "127.0.0.1",
            1,
            false,
            Some(2),
            Duration::from_millis(1500),
            "t/",
        );
        assert!(r.is_err());
        assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    }
}
