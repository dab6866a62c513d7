//! The one module of `shared` that calls C through raw pointers (the workspace denies `unsafe`
//! elsewhere): NVRTC and the CUDA driver opened with `dlopen`, and the typed launch of every
//! kernel of `shared/kernels/`.
//!
//! Soundness rests on three rules, argued at each `unsafe` block:
//! 1. each C function is called through a pointer of its exact C signature (nvrtc.h, cuda.h
//!    of CUDA 13), looked up by name in the library it belongs to;
//! 2. every pointer handed to C is valid for what C does with it (NUL-terminated strings that
//!    outlive the call, out-parameters of the right type, buffers of the size C reported);
//! 3. a kernel is launched only through a typed wrapper below that checks every tensor it
//!    passes (CUDA, on the module's device, contiguous, of the kind and at least the number of
//!    elements the kernel indexes, computed from the same integers the kernel receives), so no
//!    kernel reads or writes outside a live allocation; the tensors are borrowed for the call
//!    and kernels run on stream 0 (libtorch's current stream), so libtorch's caching allocator
//!    cannot hand their memory to another tensor before the kernel ran.
#![allow(unsafe_code)]

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};
use tch::{Device, Kind, Tensor};

/// A library opened with `dlopen` (never closed: its functions may be used until exit).
struct Lib(*mut c_void);

// SAFETY: a dlopen handle is a process-wide token; dlsym on it is thread-safe.
unsafe impl Send for Lib {}
unsafe impl Sync for Lib {}

impl Lib {
    fn open(path: &str) -> anyhow::Result<Lib> {
        let c = CString::new(path)?;
        // SAFETY: `c` is a NUL-terminated string alive during the call; the flags are valid.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if h.is_null() {
            bail!("dlopen {path}: {}", dlerror());
        }
        Ok(Lib(h))
    }

    /// The address of symbol `name`.
    fn sym(&self, name: &str) -> anyhow::Result<*mut c_void> {
        let c = CString::new(name)?;
        // SAFETY: the handle came from a successful dlopen; `c` is NUL-terminated.
        let p = unsafe { libc::dlsym(self.0, c.as_ptr()) };
        if p.is_null() {
            bail!("dlsym {name}: {}", dlerror());
        }
        Ok(p)
    }
}

fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl* call,
    // copied out at once.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown error".into()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

/// Looks up `name` in `lib` as a function pointer of type `F`.
macro_rules! func {
    ($lib:expr, $name:literal, $ty:ty) => {{
        let p = $lib.sym($name)?;
        // SAFETY: `p` is the non-null address of the C function `$name`, whose signature in
        // nvrtc.h / cuda.h is exactly `$ty` (rule 1).
        unsafe { std::mem::transmute::<*mut c_void, $ty>(p) }
    }};
}

type NvrtcProgram = *mut c_void;

/// NVRTC, opened from torch's `nvidia/cu13/lib`.
pub struct Nvrtc {
    version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int,
    create: unsafe extern "C" fn(
        *mut NvrtcProgram,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> c_int,
    compile: unsafe extern "C" fn(NvrtcProgram, c_int, *const *const c_char) -> c_int,
    log_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> c_int,
    log: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> c_int,
    cubin_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> c_int,
    cubin: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> c_int,
    destroy: unsafe extern "C" fn(*mut NvrtcProgram) -> c_int,
    error: unsafe extern "C" fn(c_int) -> *const c_char,
}

impl Nvrtc {
    /// Opens `libnvrtc.so.13` of `dir`. Its builtins library is opened first by absolute path,
    /// so that libnvrtc finds it (by soname) without `LD_LIBRARY_PATH`.
    pub fn open(dir: &super::CudaDir) -> anyhow::Result<&'static Nvrtc> {
        static N: OnceLock<Result<Nvrtc, String>> = OnceLock::new();
        N.get_or_init(|| Self::load(dir).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn load(dir: &super::CudaDir) -> anyhow::Result<Nvrtc> {
        let builtins = std::fs::read_dir(&dir.lib)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libnvrtc-builtins.so."))
            })
            .with_context(|| format!("{}: no libnvrtc-builtins.so.*", dir.lib.display()))?;
        let _ = Box::leak(Box::new(Lib::open(&builtins.to_string_lossy())?));
        let lib: &'static Lib = Box::leak(Box::new(Lib::open(
            &dir.lib.join("libnvrtc.so.13").to_string_lossy(),
        )?));
        Ok(Nvrtc {
            version: func!(
                lib,
                "nvrtcVersion",
                unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int
            ),
            create: func!(
                lib,
                "nvrtcCreateProgram",
                unsafe extern "C" fn(
                    *mut NvrtcProgram,
                    *const c_char,
                    *const c_char,
                    c_int,
                    *const *const c_char,
                    *const *const c_char,
                ) -> c_int
            ),
            compile: func!(
                lib,
                "nvrtcCompileProgram",
                unsafe extern "C" fn(NvrtcProgram, c_int, *const *const c_char) -> c_int
            ),
            log_size: func!(
                lib,
                "nvrtcGetProgramLogSize",
                unsafe extern "C" fn(NvrtcProgram, *mut usize) -> c_int
            ),
            log: func!(
                lib,
                "nvrtcGetProgramLog",
                unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> c_int
            ),
            cubin_size: func!(
                lib,
                "nvrtcGetCUBINSize",
                unsafe extern "C" fn(NvrtcProgram, *mut usize) -> c_int
            ),
            cubin: func!(
                lib,
                "nvrtcGetCUBIN",
                unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> c_int
            ),
            destroy: func!(
                lib,
                "nvrtcDestroyProgram",
                unsafe extern "C" fn(*mut NvrtcProgram) -> c_int
            ),
            error: func!(
                lib,
                "nvrtcGetErrorString",
                unsafe extern "C" fn(c_int) -> *const c_char
            ),
        })
    }

    /// NVRTC's (major, minor) version.
    pub fn version(&self) -> (i32, i32) {
        let (mut a, mut b) = (0, 0);
        // SAFETY: two valid out-pointers to c_int (rule 2).
        unsafe { (self.version)(&mut a, &mut b) };
        (a, b)
    }

    fn check(&self, r: c_int, what: &str) -> anyhow::Result<()> {
        if r == 0 {
            return Ok(());
        }
        // SAFETY: nvrtcGetErrorString returns a static NUL-terminated string for any code.
        let msg = unsafe { CStr::from_ptr((self.error)(r)) }.to_string_lossy();
        bail!("NVRTC {what}: {msg}")
    }

    /// Compiles `src` (named `name` in messages) with `options` to a CUBIN; a failure carries
    /// NVRTC's log (file(line): error ...).
    pub fn compile(&self, src: &str, name: &str, options: &[String]) -> anyhow::Result<Vec<u8>> {
        let c_src = CString::new(src)?;
        let c_name = CString::new(name)?;
        let c_opts: Vec<CString> = options
            .iter()
            .map(|o| CString::new(o.as_str()))
            .collect::<Result<_, _>>()?;
        let opt_ptrs: Vec<*const c_char> = c_opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: NvrtcProgram = std::ptr::null_mut();
        // SAFETY: valid out-pointer; NUL-terminated strings alive for the call; zero headers
        // with null arrays, as nvrtc.h allows (rule 2).
        let r = unsafe {
            (self.create)(
                &mut prog,
                c_src.as_ptr(),
                c_name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        self.check(r, "creating the program")?;
        // SAFETY: `prog` was created above; `opt_ptrs` holds c_opts.len() valid strings.
        let r = unsafe { (self.compile)(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr()) };
        let log = self.log_of(prog);
        let out = if r != 0 {
            let msg = self.check(r, "compiling").unwrap_err();
            Err(anyhow::anyhow!("{msg}:\n{log}"))
        } else {
            let mut n = 0usize;
            // SAFETY: a compiled program and a valid out-pointer.
            let r = unsafe { (self.cubin_size)(prog, &mut n) };
            self.check(r, "getting the CUBIN size").map(|_| {
                let mut buf = vec![0u8; n];
                // SAFETY: `buf` holds the n bytes NVRTC just reported.
                let r = unsafe { (self.cubin)(prog, buf.as_mut_ptr().cast()) };
                self.check(r, "getting the CUBIN").map(|_| buf)
            })?
        };
        // SAFETY: `prog` was created above and is destroyed once.
        unsafe { (self.destroy)(&mut prog) };
        out
    }

    fn log_of(&self, prog: NvrtcProgram) -> String {
        let mut n = 0usize;
        // SAFETY: a live program and a valid out-pointer.
        if unsafe { (self.log_size)(prog, &mut n) } != 0 || n == 0 {
            return String::new();
        }
        let mut buf = vec![0u8; n];
        // SAFETY: `buf` holds the n bytes (with the NUL) NVRTC reported.
        unsafe { (self.log)(prog, buf.as_mut_ptr().cast()) };
        String::from_utf8_lossy(&buf[..n.saturating_sub(1)]).into_owned()
    }
}

type CuFunction = *mut c_void;
type CuModule = *mut c_void;
type CuContext = *mut c_void;

/// The CUDA driver (`libcuda.so.1`), opened on first use.
struct Driver {
    init: unsafe extern "C" fn(c_uint) -> c_int,
    device_get: unsafe extern "C" fn(*mut c_int, c_int) -> c_int,
    attribute: unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int,
    primary_ctx_retain: unsafe extern "C" fn(*mut CuContext, c_int) -> c_int,
    ctx_set_current: unsafe extern "C" fn(CuContext) -> c_int,
    module_load_data: unsafe extern "C" fn(*mut CuModule, *const c_void) -> c_int,
    module_get_function: unsafe extern "C" fn(*mut CuFunction, CuModule, *const c_char) -> c_int,
    #[allow(clippy::type_complexity)]
    launch: unsafe extern "C" fn(
        CuFunction,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        *mut c_void,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> c_int,
    error: unsafe extern "C" fn(c_int, *mut *const c_char) -> c_int,
}

impl Driver {
    fn get() -> anyhow::Result<&'static Driver> {
        static D: OnceLock<Result<Driver, String>> = OnceLock::new();
        D.get_or_init(|| Self::load().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn load() -> anyhow::Result<Driver> {
        let lib: &'static Lib = Box::leak(Box::new(Lib::open("libcuda.so.1")?));
        let d = Driver {
            init: func!(lib, "cuInit", unsafe extern "C" fn(c_uint) -> c_int),
            device_get: func!(
                lib,
                "cuDeviceGet",
                unsafe extern "C" fn(*mut c_int, c_int) -> c_int
            ),
            attribute: func!(
                lib,
                "cuDeviceGetAttribute",
                unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int
            ),
            primary_ctx_retain: func!(
                lib,
                "cuDevicePrimaryCtxRetain",
                unsafe extern "C" fn(*mut CuContext, c_int) -> c_int
            ),
            ctx_set_current: func!(
                lib,
                "cuCtxSetCurrent",
                unsafe extern "C" fn(CuContext) -> c_int
            ),
            module_load_data: func!(
                lib,
                "cuModuleLoadData",
                unsafe extern "C" fn(*mut CuModule, *const c_void) -> c_int
            ),
            module_get_function: func!(
                lib,
                "cuModuleGetFunction",
                unsafe extern "C" fn(*mut CuFunction, CuModule, *const c_char) -> c_int
            ),
            launch: func!(
                lib,
                "cuLaunchKernel",
                unsafe extern "C" fn(
                    CuFunction,
                    c_uint,
                    c_uint,
                    c_uint,
                    c_uint,
                    c_uint,
                    c_uint,
                    c_uint,
                    *mut c_void,
                    *mut *mut c_void,
                    *mut *mut c_void,
                ) -> c_int
            ),
            error: func!(
                lib,
                "cuGetErrorString",
                unsafe extern "C" fn(c_int, *mut *const c_char) -> c_int
            ),
        };
        // SAFETY: cuInit takes flags 0.
        d.check(unsafe { (d.init)(0) }, "cuInit")?;
        Ok(d)
    }

    fn check(&self, r: c_int, what: &str) -> anyhow::Result<()> {
        if r == 0 {
            return Ok(());
        }
        let mut s: *const c_char = std::ptr::null();
        // SAFETY: a valid out-pointer; the string, when set, is static and NUL-terminated.
        unsafe { (self.error)(r, &mut s) };
        let msg = if s.is_null() {
            format!("error {r}")
        } else {
            // SAFETY: see above.
            unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
        };
        bail!("CUDA driver {what}: {msg}")
    }
}

/// The kernels loaded on one device (its primary context, which libtorch uses).
pub struct Kernels {
    ctx: CuContext,
    functions: HashMap<&'static str, CuFunction>,
    /// e.g. `sm_90`.
    pub arch: String,
    /// Whether the CUBIN came from the disk cache.
    pub cached: bool,
}

// SAFETY: driver handles (context, functions) may be used from any thread once the context is
// made current there, which every launch does first.
unsafe impl Send for Kernels {}
unsafe impl Sync for Kernels {}

impl Kernels {
    /// The kernels on CUDA device `index`, compiled (or read from the cache) and loaded once
    /// per process.
    pub fn get(index: usize) -> anyhow::Result<&'static Kernels> {
        static ALL: OnceLock<Mutex<HashMap<usize, &'static Kernels>>> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .expect("kernel table");
        if let Some(k) = all.get(&index) {
            return Ok(k);
        }
        let k: &'static Kernels = Box::leak(Box::new(Self::load(index)?));
        all.insert(index, k);
        Ok(k)
    }

    fn load(index: usize) -> anyhow::Result<Kernels> {
        let d = Driver::get()?;
        let mut dev = 0;
        // SAFETY: valid out-pointer; the ordinal is checked by the driver.
        d.check(
            unsafe { (d.device_get)(&mut dev, index as c_int) },
            "cuDeviceGet",
        )?;
        let (mut major, mut minor) = (0, 0);
        // SAFETY: valid out-pointers; 75/76 = CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR.
        unsafe {
            d.check((d.attribute)(&mut major, 75, dev), "compute capability")?;
            d.check((d.attribute)(&mut minor, 76, dev), "compute capability")?;
        }
        let arch = format!("sm_{major}{minor}");
        let mut ctx: CuContext = std::ptr::null_mut();
        // SAFETY: valid out-pointer and device.
        d.check(
            unsafe { (d.primary_ctx_retain)(&mut ctx, dev) },
            "primary context",
        )?;
        // SAFETY: a retained context.
        d.check(unsafe { (d.ctx_set_current)(ctx) }, "cuCtxSetCurrent")?;
        let (cubin, cached) = super::cubin(&arch)?;
        let mut module: CuModule = std::ptr::null_mut();
        // SAFETY: `cubin` is a complete CUBIN image alive during the call; valid out-pointer.
        d.check(
            unsafe { (d.module_load_data)(&mut module, cubin.as_ptr().cast()) },
            "loading the kernels",
        )?;
        let mut functions = HashMap::new();
        for name in super::KERNELS {
            let c = CString::new(name)?;
            let mut f: CuFunction = std::ptr::null_mut();
            // SAFETY: a loaded module, a NUL-terminated name, a valid out-pointer.
            d.check(
                unsafe { (d.module_get_function)(&mut f, module, c.as_ptr()) },
                name,
            )?;
            functions.insert(name, f);
        }
        Ok(Kernels {
            ctx,
            functions,
            arch,
            cached,
        })
    }

    /// Launches `name` on stream 0 with `args` (values of the kernel's parameter types, in
    /// order). Private: only the typed wrappers below call it (rule 3).
    fn launch(
        &self,
        name: &str,
        grid: impl Into<Grid>,
        block: u32,
        smem: u32,
        args: &[Arg],
    ) -> anyhow::Result<()> {
        let d = Driver::get()?;
        let Grid(gx, gy) = grid.into();
        let f = *self
            .functions
            .get(name)
            .with_context(|| format!("no kernel {name}"))?;
        let mut vals: Vec<u64> = args.iter().map(Arg::bits).collect();
        let mut ptrs: Vec<*mut c_void> = vals
            .iter_mut()
            .map(|v| (v as *mut u64).cast::<c_void>())
            .collect();
        // SAFETY: the context is this module's; each kernel parameter pointer points at 8
        // bytes holding the argument in its low (little-endian) bytes, alive for the call, as
        // cuLaunchKernel copies them before returning; the arguments' types and the memory
        // they address were checked by the typed wrapper (rule 3).
        unsafe {
            d.check((d.ctx_set_current)(self.ctx), "cuCtxSetCurrent")?;
            d.check(
                (d.launch)(
                    f,
                    gx.max(1),
                    gy.max(1),
                    1,
                    block,
                    1,
                    1,
                    smem,
                    std::ptr::null_mut(),
                    ptrs.as_mut_ptr(),
                    std::ptr::null_mut(),
                ),
                name,
            )
        }
    }
}

/// A launch grid (x, y).
struct Grid(u32, u32);

impl From<u32> for Grid {
    fn from(x: u32) -> Self {
        Grid(x, 1)
    }
}

impl From<(u32, u32)> for Grid {
    fn from((x, y): (u32, u32)) -> Self {
        Grid(x, y)
    }
}

/// A kernel argument.
#[derive(Clone, Copy)]
enum Arg {
    Ptr(u64),
    I32(i32),
    I64(i64),
    U64(u64),
    F32(f32),
}

impl Arg {
    fn bits(&self) -> u64 {
        match *self {
            Arg::Ptr(p) | Arg::U64(p) => p,
            Arg::I32(v) => v as u32 as u64,
            Arg::I64(v) => v as u64,
            Arg::F32(v) => v.to_bits() as u64,
        }
    }
}

/// Checks `t` for a kernel parameter (rule 3) and returns its device address.
fn ptr(t: &Tensor, device: Device, kind: Kind, at_least: i64, what: &str) -> anyhow::Result<Arg> {
    if t.device() != device {
        bail!(
            "{what}: expected a tensor on {device:?}, found {:?}",
            t.device()
        );
    }
    if t.kind() != kind {
        bail!("{what}: expected {kind:?}, found {:?}", t.kind());
    }
    if !t.is_contiguous() {
        bail!("{what}: expected a contiguous tensor");
    }
    if t.numel() < at_least as usize {
        bail!(
            "{what}: expected at least {at_least} elements, found {}",
            t.numel()
        );
    }
    Ok(Arg::Ptr(t.data_ptr() as u64))
}

fn cuda_index(t: &Tensor) -> anyhow::Result<(Device, usize)> {
    match t.device() {
        Device::Cuda(i) => Ok((t.device(), i)),
        d => bail!("CUDA kernels need CUDA tensors, found {d:?}"),
    }
}

/// Threads per block of the row kernels (a power of two: block_sum's tree needs it).
pub const ROW_THREADS: u32 = 256;
/// Ids per tile of the sampler (its block size).
pub const SAMPLER_TILE: i64 = 256;

const BF16: Kind = Kind::BFloat16;
const F32: Kind = Kind::Float;
const I64: Kind = Kind::Int64;

/// A dropout site: rate, seed, site number (rate 0: no dropout).
#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    pub p: f32,
    pub seed: u64,
    pub site: u64,
}

fn row_smem(c: i64) -> u32 {
    ((c + ROW_THREADS as i64) * 4) as u32
}

/// `embed_ln_fwd`: ids [N] (rows of S), tables fp32, y [N, C] bf16, mean/rstd [N] fp32.
#[allow(clippy::too_many_arguments)]
pub fn embed_ln_fwd(
    ids: &Tensor,
    word: &Tensor,
    pos: &Tensor,
    typ: &Tensor,
    w: &Tensor,
    b: &Tensor,
    y: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    s: i64,
    eps: f64,
    drop: Dropout,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(ids)?;
    let n = ids.numel() as i64;
    let c = w.numel() as i64;
    let k = Kernels::get(i)?;
    // The ids index the word table: the kernel bounds them by V itself (no host sync).
    let v = word.size()[0];
    if pos.size()[0] < s {
        bail!(
            "embed_ln_fwd: {s} positions, the table has {}",
            pos.size()[0]
        );
    }
    let args = [
        ptr(ids, dev, I64, n, "ids")?,
        ptr(word, dev, F32, v * c, "word")?,
        ptr(pos, dev, F32, s * c, "pos")?,
        ptr(typ, dev, F32, c, "typ")?,
        ptr(w, dev, F32, c, "w")?,
        ptr(b, dev, F32, c, "b")?,
        ptr(y, dev, BF16, n * c, "y")?,
        ptr(mean, dev, F32, n, "mean")?,
        ptr(rstd, dev, F32, n, "rstd")?,
        Arg::I32(s as i32),
        Arg::I32(c as i32),
        Arg::I64(v),
        Arg::F32(eps as f32),
        Arg::F32(drop.p),
        Arg::U64(drop.seed),
        Arg::U64(drop.site),
    ];
    k.launch("embed_ln_fwd", n as u32, ROW_THREADS, row_smem(c), &args)
}

/// `embed_ln_bwd`: dy [N, C] bf16 -> dx [N, C] fp32 (the LN input's gradient).
#[allow(clippy::too_many_arguments)]
pub fn embed_ln_bwd(
    dy: &Tensor,
    ids: &Tensor,
    word: &Tensor,
    pos: &Tensor,
    typ: &Tensor,
    w: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    dx: &Tensor,
    s: i64,
    drop: Dropout,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(ids)?;
    let n = ids.numel() as i64;
    let c = w.numel() as i64;
    let v = word.size()[0];
    let k = Kernels::get(i)?;
    if pos.size()[0] < s {
        bail!(
            "embed_ln_bwd: {s} positions, the table has {}",
            pos.size()[0]
        );
    }
    let args = [
        ptr(dy, dev, BF16, n * c, "dy")?,
        ptr(ids, dev, I64, n, "ids")?,
        ptr(word, dev, F32, v * c, "word")?,
        ptr(pos, dev, F32, s * c, "pos")?,
        ptr(typ, dev, F32, c, "typ")?,
        ptr(w, dev, F32, c, "w")?,
        ptr(mean, dev, F32, n, "mean")?,
        ptr(rstd, dev, F32, n, "rstd")?,
        ptr(dx, dev, F32, n * c, "dx")?,
        Arg::I32(s as i32),
        Arg::I32(c as i32),
        Arg::I64(v),
        Arg::F32(drop.p),
        Arg::U64(drop.seed),
        Arg::U64(drop.site),
    ];
    k.launch(
        "embed_ln_bwd",
        n as u32,
        ROW_THREADS,
        ROW_THREADS * 4,
        &args,
    )
}

/// `residual_ln_fwd`: branch, residual [N, C] bf16; y, xs [N, C] bf16; mean, rstd [N].
#[allow(clippy::too_many_arguments)]
pub fn residual_ln_fwd(
    branch: &Tensor,
    bias: &Tensor,
    residual: &Tensor,
    w: &Tensor,
    b: &Tensor,
    y: &Tensor,
    xs: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    eps: f64,
    drop: Dropout,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(branch)?;
    let c = w.numel() as i64;
    let n = branch.numel() as i64 / c.max(1);
    let k = Kernels::get(i)?;
    let args = [
        ptr(branch, dev, BF16, n * c, "branch")?,
        ptr(bias, dev, F32, c, "bias")?,
        ptr(residual, dev, BF16, n * c, "residual")?,
        ptr(w, dev, F32, c, "w")?,
        ptr(b, dev, F32, c, "b")?,
        ptr(y, dev, BF16, n * c, "y")?,
        ptr(xs, dev, BF16, n * c, "xs")?,
        ptr(mean, dev, F32, n, "mean")?,
        ptr(rstd, dev, F32, n, "rstd")?,
        Arg::I32(c as i32),
        Arg::F32(eps as f32),
        Arg::F32(drop.p),
        Arg::U64(drop.seed),
        Arg::U64(drop.site),
    ];
    k.launch("residual_ln_fwd", n as u32, ROW_THREADS, row_smem(c), &args)
}

/// `residual_ln_bwd`: dy, xs [N, C] bf16 -> dx, dbranch [N, C] bf16.
#[allow(clippy::too_many_arguments)]
pub fn residual_ln_bwd(
    dy: &Tensor,
    xs: &Tensor,
    w: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    dx: &Tensor,
    dbranch: &Tensor,
    drop: Dropout,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(dy)?;
    let c = w.numel() as i64;
    let n = dy.numel() as i64 / c.max(1);
    let k = Kernels::get(i)?;
    let args = [
        ptr(dy, dev, BF16, n * c, "dy")?,
        ptr(xs, dev, BF16, n * c, "xs")?,
        ptr(w, dev, F32, c, "w")?,
        ptr(mean, dev, F32, n, "mean")?,
        ptr(rstd, dev, F32, n, "rstd")?,
        ptr(dx, dev, BF16, n * c, "dx")?,
        ptr(dbranch, dev, BF16, n * c, "dbranch")?,
        Arg::I32(c as i32),
        Arg::F32(drop.p),
        Arg::U64(drop.seed),
        Arg::U64(drop.site),
    ];
    k.launch(
        "residual_ln_bwd",
        n as u32,
        ROW_THREADS,
        ROW_THREADS * 4,
        &args,
    )
}

/// Rows per chunk of the column reductions (their partial sums are then added in order).
const CHUNK_ROWS: i64 = 128;

/// `ln_param_grads`: dy, xs [N, C] bf16, mean/rstd [N] -> dw, db [C] fp32 (partial sums over
/// chunks of rows, then summed over the chunks).
pub fn ln_param_grads(
    dy: &Tensor,
    xs: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    dw: &Tensor,
    db: &Tensor,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(dy)?;
    let c = dw.numel() as i64;
    let n = dy.numel() as i64 / c.max(1);
    let chunks = ((n + CHUNK_ROWS - 1) / CHUNK_ROWS).max(1);
    let k = Kernels::get(i)?;
    let part_w = Tensor::empty([chunks, c], (F32, dev));
    let part_b = Tensor::empty([chunks, c], (F32, dev));
    let args = [
        ptr(dy, dev, BF16, n * c, "dy")?,
        ptr(xs, dev, BF16, n * c, "xs")?,
        ptr(mean, dev, F32, n, "mean")?,
        ptr(rstd, dev, F32, n, "rstd")?,
        ptr(&part_w, dev, F32, chunks * c, "dw partials")?,
        ptr(&part_b, dev, F32, chunks * c, "db partials")?,
        Arg::I64(n),
        Arg::I32(c as i32),
        Arg::I64(CHUNK_ROWS),
    ];
    let blocks = (c as u32).div_ceil(ROW_THREADS);
    k.launch(
        "ln_param_grads",
        (blocks, chunks as u32),
        ROW_THREADS,
        0,
        &args,
    )?;
    dw.shallow_clone().copy_(
        &part_w
            .sum_dim_intlist(0, false, F32)
            .view(dw.size().as_slice()),
    );
    db.shallow_clone().copy_(
        &part_b
            .sum_dim_intlist(0, false, F32)
            .view(db.size().as_slice()),
    );
    Ok(())
}

/// `col_sum_bf16`: x [N, C] bf16 -> out [C] fp32 (partial sums as [`ln_param_grads`]).
pub fn col_sum(x: &Tensor, out: &Tensor) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(x)?;
    let c = out.numel() as i64;
    let n = x.numel() as i64 / c.max(1);
    let chunks = ((n + CHUNK_ROWS - 1) / CHUNK_ROWS).max(1);
    let k = Kernels::get(i)?;
    let part = Tensor::empty([chunks, c], (F32, dev));
    let args = [
        ptr(x, dev, BF16, n * c, "x")?,
        ptr(&part, dev, F32, chunks * c, "partials")?,
        Arg::I64(n),
        Arg::I32(c as i32),
        Arg::I64(CHUNK_ROWS),
    ];
    let blocks = (c as u32).div_ceil(ROW_THREADS);
    k.launch(
        "col_sum_bf16",
        (blocks, chunks as u32),
        ROW_THREADS,
        0,
        &args,
    )?;
    out.shallow_clone().copy_(
        &part
            .sum_dim_intlist(0, false, F32)
            .view(out.size().as_slice()),
    );
    Ok(())
}

/// `dropout_mask`: the scaled keep mask (fp32) the kernels use for `drop`, over `out`.
pub fn dropout_mask(out: &Tensor, drop: Dropout) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(out)?;
    let n = out.numel() as i64;
    let k = Kernels::get(i)?;
    let args = [
        ptr(out, dev, F32, n, "out")?,
        Arg::I64(n),
        Arg::F32(drop.p),
        Arg::U64(drop.seed),
        Arg::U64(drop.site),
    ];
    k.launch(
        "dropout_mask",
        (n as u32).div_ceil(ROW_THREADS),
        ROW_THREADS,
        0,
        &args,
    )
}

fn grid_stride_blocks(n: i64) -> u32 {
    (n as u64).div_ceil(ROW_THREADS as u64).min(65_535) as u32
}

/// `bias_gelu_fwd`: y = gelu(x + bias), x, y [N, C] bf16.
pub fn bias_gelu_fwd(x: &Tensor, bias: &Tensor, y: &Tensor) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(x)?;
    let c = bias.numel() as i64;
    let n = x.numel() as i64;
    let k = Kernels::get(i)?;
    let args = [
        ptr(x, dev, BF16, n, "x")?,
        ptr(bias, dev, F32, c, "bias")?,
        ptr(y, dev, BF16, n, "y")?,
        Arg::I64(n),
        Arg::I32(c as i32),
    ];
    k.launch(
        "bias_gelu_fwd",
        grid_stride_blocks(n),
        ROW_THREADS,
        0,
        &args,
    )
}

/// `bias_gelu_bwd`: dx = dy gelu'(x + bias).
pub fn bias_gelu_bwd(dy: &Tensor, x: &Tensor, bias: &Tensor, dx: &Tensor) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(x)?;
    let c = bias.numel() as i64;
    let n = x.numel() as i64;
    let k = Kernels::get(i)?;
    let args = [
        ptr(dy, dev, BF16, n, "dy")?,
        ptr(x, dev, BF16, n, "x")?,
        ptr(bias, dev, F32, c, "bias")?,
        ptr(dx, dev, BF16, n, "dx")?,
        Arg::I64(n),
        Arg::I32(c as i32),
    ];
    k.launch(
        "bias_gelu_bwd",
        grid_stride_blocks(n),
        ROW_THREADS,
        0,
        &args,
    )
}

/// `rtd_loss`: z, t [N] fp32, real [N] i64 -> loss [1], dz [N] fp32.
pub fn rtd_loss(
    z: &Tensor,
    t: &Tensor,
    real: &Tensor,
    loss: &Tensor,
    dz: &Tensor,
    scale: f32,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(z)?;
    let n = z.numel() as i64;
    let k = Kernels::get(i)?;
    let threads = 1024;
    let args = [
        ptr(z, dev, F32, n, "z")?,
        ptr(t, dev, F32, n, "targets")?,
        ptr(real, dev, I64, n, "real")?,
        ptr(loss, dev, F32, 1, "loss")?,
        ptr(dz, dev, F32, n, "dz")?,
        Arg::I64(n),
        Arg::F32(scale),
    ];
    k.launch("rtd_loss", 1, threads, threads * 4, &args)
}

/// AdamW hyper-parameters of one `adamw_bf16` call.
#[derive(Debug, Clone, Copy)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 1 - beta1^step, 1 - beta2^step.
    pub bias_correction1: f32,
    pub bias_correction2: f32,
}

/// `adamw_bf16`: updates param, m, v (fp32, flat) from grad / grad_scale[0] and writes the bf16
/// copy.
pub fn adamw_bf16(
    param: &Tensor,
    m: &Tensor,
    v: &Tensor,
    grad: &Tensor,
    param_bf16: &Tensor,
    grad_scale: &Tensor,
    h: AdamW,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(param)?;
    let n = param.numel() as i64;
    let k = Kernels::get(i)?;
    let args = [
        ptr(param, dev, F32, n, "param")?,
        ptr(m, dev, F32, n, "exp_avg")?,
        ptr(v, dev, F32, n, "exp_avg_sq")?,
        ptr(grad, dev, F32, n, "grad")?,
        ptr(param_bf16, dev, BF16, n, "param_bf16")?,
        Arg::I64(n),
        Arg::F32(h.lr),
        Arg::F32(h.beta1),
        Arg::F32(h.beta2),
        Arg::F32(h.eps),
        Arg::F32(h.weight_decay),
        Arg::F32(h.bias_correction1),
        Arg::F32(h.bias_correction2),
        ptr(grad_scale, dev, F32, 1, "grad_scale")?,
    ];
    k.launch("adamw_bf16", grid_stride_blocks(n), ROW_THREADS, 0, &args)
}

/// The one-pass sampler: logits [N, W] (bf16 or fp32, W a multiple of 256), uniforms [N] f64 ->
/// ids, top1 [N] i64, entropy [N] f32.
pub fn sample_tempered(
    z: &Tensor,
    u: &Tensor,
    inv_t: f32,
    ids: &Tensor,
    top1: &Tensor,
    entropy: &Tensor,
) -> anyhow::Result<()> {
    let (dev, i) = cuda_index(z)?;
    let (n, w) = z.size2()?;
    if w % SAMPLER_TILE != 0 || w == 0 {
        bail!("sample_tempered: {w} columns: expected a positive multiple of {SAMPLER_TILE}");
    }
    let k = Kernels::get(i)?;
    let (name, kind) = match z.kind() {
        Kind::BFloat16 => ("sample_tempered_bf16", BF16),
        _ => ("sample_tempered_f32", F32),
    };
    let tiles = w / SAMPLER_TILE;
    let args = [
        ptr(z, dev, kind, n * w, "logits")?,
        ptr(u, dev, Kind::Double, n, "uniforms")?,
        Arg::I64(w),
        Arg::F32(inv_t),
        ptr(ids, dev, I64, n, "ids")?,
        ptr(top1, dev, I64, n, "top1")?,
        ptr(entropy, dev, F32, n, "entropy")?,
    ];
    let smem = (SAMPLER_TILE * 4 + tiles * 16) as u32;
    k.launch(name, n as u32, SAMPLER_TILE as u32, smem, &args)
}
