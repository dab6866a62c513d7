//! The one module of `shared` that calls C through raw pointers (the workspace denies `unsafe`
//! elsewhere): NVRTC and the CUDA driver opened with `dlopen`, and the typed launch of every
//! kernel of `shared/kernels/`.
//!
//! Soundness rests on four rules, argued at each `unsafe` block:
//! 1. each C function is called through a pointer of its exact C signature (nvrtc.h, cuda.h
//!    of CUDA 13), looked up by name in the library it belongs to;
//! 2. every pointer handed to C is valid for what C does with it (NUL-terminated strings that
//!    outlive the call, out-parameters of the right type, buffers of the size C reported);
//! 3. a kernel is launched only through a typed wrapper of [`launch`] (a child module: the only
//!    code that can reach the private `Kernels::launch`) that checks every tensor it
//!    passes (CUDA, on the module's device, contiguous, of the kind and at least the number of
//!    elements the kernel indexes, computed from the same integers the kernel receives), so no
//!    kernel reads or writes outside a live allocation; the tensors are borrowed for the call;
//! 4. kernels run on libtorch's current stream of their device ([`use_streams_of`]; the legacy
//!    default stream, libtorch's current one in a program that never changes it, when no source
//!    is set), a stream of the primary context the module was loaded in; libtorch's caching
//!    allocator reuses a freed block only in order on the stream it was allocated on, so it
//!    cannot hand a kernel's memory to another tensor before the kernel ran.
#![allow(unsafe_code)]

use anyhow::{bail, Context};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

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
    ptx_size: unsafe extern "C" fn(NvrtcProgram, *mut usize) -> c_int,
    ptx: unsafe extern "C" fn(NvrtcProgram, *mut c_char) -> c_int,
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
        let builtins = dir.builtins()?;
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
            ptx_size: func!(
                lib,
                "nvrtcGetPTXSize",
                unsafe extern "C" fn(NvrtcProgram, *mut usize) -> c_int
            ),
            ptx: func!(
                lib,
                "nvrtcGetPTX",
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
        self.build(src, name, options, false)
    }

    /// [`Nvrtc::compile`] to PTX (for a virtual architecture, `compute_XY`): the text.
    pub fn compile_ptx(&self, src: &str, name: &str, options: &[String]) -> anyhow::Result<String> {
        let mut bytes = self.build(src, name, options, true)?;
        if bytes.last() == Some(&0) {
            bytes.pop();
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn build(
        &self,
        src: &str,
        name: &str,
        options: &[String],
        ptx: bool,
    ) -> anyhow::Result<Vec<u8>> {
        let (size_of, get, what) = if ptx {
            (self.ptx_size, self.ptx, "PTX")
        } else {
            (self.cubin_size, self.cubin, "CUBIN")
        };
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
            let r = unsafe { size_of(prog, &mut n) };
            self.check(r, &format!("getting the {what} size"))
                .and_then(|_| {
                    let mut buf = vec![0u8; n];
                    // SAFETY: `buf` holds the n bytes NVRTC just reported.
                    let r = unsafe { get(prog, buf.as_mut_ptr().cast()) };
                    self.check(r, &format!("getting the {what}")).map(|_| buf)
                })
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
type CuStream = *mut c_void;

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
        CuStream,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> c_int,
    error: unsafe extern "C" fn(c_int, *mut *const c_char) -> c_int,
    stream_synchronize: unsafe extern "C" fn(CuStream) -> c_int,
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
                    CuStream,
                    *mut *mut c_void,
                    *mut *mut c_void,
                ) -> c_int
            ),
            error: func!(
                lib,
                "cuGetErrorString",
                unsafe extern "C" fn(c_int, *mut *const c_char) -> c_int
            ),
            stream_synchronize: func!(
                lib,
                "cuStreamSynchronize",
                unsafe extern "C" fn(CuStream) -> c_int
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
    /// The CUDA device ordinal.
    index: usize,
    /// [`SyncMode::from_env`], read when the kernels were loaded.
    sync: SyncMode,
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
        let sync = SyncMode::from_env()?;
        let (mut cubin, mut cached) = super::cubin(&arch)?;
        let mut module: CuModule = std::ptr::null_mut();
        // SAFETY: `cubin` is a complete CUBIN image alive during the call; valid out-pointer.
        let mut r = unsafe { (d.module_load_data)(&mut module, cubin.as_ptr().cast()) };
        if r != 0 && cached {
            // A cached CUBIN the driver refuses (its checksum matched: damaged before it was
            // written, or by a toolchain the key does not see): compile it again.
            eprintln!(
                "kernel cache: the driver refused the cached kernels for {arch} ({}); recompiling",
                d.check(r, "loading the kernels").unwrap_err()
            );
            (cubin, cached) = super::cubin_in(super::cache_dir().as_deref(), &arch, true)?;
            // SAFETY: as above.
            r = unsafe { (d.module_load_data)(&mut module, cubin.as_ptr().cast()) };
        }
        d.check(r, "loading the kernels")?;
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
            index,
            sync,
            functions,
            arch,
            cached,
        })
    }

    /// Launches `name` with `args` (values of the kernel's parameter types, in order) on the
    /// device's current stream ([`use_streams_of`]; the legacy default stream unless set). A
    /// grid with no block (no rows) launches nothing. Private: only the typed wrappers below
    /// call it (rule 3).
    fn launch(
        &self,
        name: &str,
        grid: impl Into<Grid>,
        block: u32,
        smem: u32,
        args: &[Arg],
    ) -> anyhow::Result<()> {
        let grid = grid.into();
        if grid.is_empty() {
            return Ok(());
        }
        let d = Driver::get()?;
        let Grid(gx, gy) = grid;
        let what = describe_launch(name, grid, block, smem);
        let f = *self
            .functions
            .get(name)
            .with_context(|| format!("no kernel {name}"))?;
        let stream = stream_for(self.index)
            .with_context(|| format!("{what}: the current CUDA stream"))?
            as CuStream;
        let mut vals: Vec<u64> = args.iter().map(Arg::bits).collect();
        let mut ptrs: Vec<*mut c_void> = vals
            .iter_mut()
            .map(|v| (v as *mut u64).cast::<c_void>())
            .collect();
        // SAFETY: the context is this module's and `stream` one of its streams (rule 4).
        unsafe { d.check((d.ctx_set_current)(self.ctx), "cuCtxSetCurrent") }?;
        if self.sync == SyncMode::EachLaunch {
            // SAFETY: a stream of the current context (rule 4).
            let r = unsafe { (d.stream_synchronize)(stream) };
            d.check(r, "cuStreamSynchronize").with_context(|| {
                format!(
                    "before {what}: an earlier operation on the stream failed ({SYNC_ENV}=1; with \
                     CUDA_LAUNCH_BLOCKING=1 torch reports its own kernels' faults where they happen)"
                )
            })?;
        }
        // SAFETY: the context is this module's; each kernel parameter pointer points at 8
        // bytes holding the argument in its low (little-endian) bytes, alive for the call, as
        // cuLaunchKernel copies them before returning; the arguments' types and the memory
        // they address were checked by the typed wrapper (rule 3); the grid has at least one
        // block; `stream` belongs to the context (rule 4).
        let r = unsafe {
            (d.launch)(
                f,
                gx,
                gy,
                1,
                block,
                1,
                1,
                smem,
                stream,
                ptrs.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        d.check(r, "cuLaunchKernel")
            .with_context(|| format!("launching {what}"))?;
        if self.sync == SyncMode::EachLaunch {
            // SAFETY: as above.
            let r = unsafe { (d.stream_synchronize)(stream) };
            d.check(r, "cuStreamSynchronize")
                .with_context(|| format!("{what} failed ({SYNC_ENV}=1 synchronised after it)"))?;
        }
        Ok(())
    }
}

/// The environment switch that synchronises the stream before and after every kernel launch,
/// so that a fault is reported by the launch of the kernel that made it, naming the kernel,
/// instead of by an unrelated later call. For debugging: it serialises the host and the GPU.
pub const SYNC_ENV: &str = "FAST_ELECTRA_CUDA_SYNC";

/// Whether launches synchronise ([`SYNC_ENV`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Launches are asynchronous (the default).
    Off,
    /// The stream is synchronised before and after each launch.
    EachLaunch,
}

impl SyncMode {
    /// `value` of [`SYNC_ENV`]: unset, empty or `0`: off; `1`: on; anything else is an error.
    pub fn parse(value: Option<&str>) -> anyhow::Result<Self> {
        match value.map(str::trim) {
            None | Some("") | Some("0") => Ok(SyncMode::Off),
            Some("1") => Ok(SyncMode::EachLaunch),
            Some(v) => bail!("${SYNC_ENV}: expected 0 or 1, found {v:?}"),
        }
    }

    /// [`SyncMode::parse`] of the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let v = std::env::var_os(SYNC_ENV).map(|v| v.to_string_lossy().into_owned());
        Self::parse(v.as_deref())
    }
}

/// A launch as errors name it: kernel, grid, block and shared memory.
fn describe_launch(name: &str, Grid(gx, gy): Grid, block: u32, smem: u32) -> String {
    format!("kernel {name} (grid {gx} x {gy}, {block} threads per block, {smem} bytes of shared memory)")
}

/// The source of the stream kernels are launched on: a function of the CUDA device ordinal
/// returning that device's current `CUstream` as an integer (0 = the legacy default stream).
pub type StreamSource = fn(usize) -> anyhow::Result<u64>;

static STREAMS: OnceLock<StreamSource> = OnceLock::new();

/// Launches every kernel of this process on the stream `source` gives (the trainer passes
/// libtorch's current stream, `c10::cuda::getCurrentCUDAStream`, so that kernels are ordered
/// with ATen's work even when another stream is made current). Rule 4: `source` must return a
/// live stream of the device's primary context (libtorch's streams are). Set once per process;
/// returns false if a source was set already. Without one, kernels run on the legacy default
/// stream, which is libtorch's current stream unless a program makes another current.
pub fn use_streams_of(source: StreamSource) -> bool {
    STREAMS.set(source).is_ok()
}

fn stream_for(index: usize) -> anyhow::Result<u64> {
    STREAMS.get().map_or(Ok(0), |f| f(index))
}

/// A launch grid (x, y).
#[derive(Debug, Clone, Copy)]
struct Grid(u32, u32);

impl Grid {
    /// No block to launch (a dimension is 0: no rows).
    fn is_empty(&self) -> bool {
        self.0 == 0 || self.1 == 0
    }
}

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

mod launch;
pub use launch::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_switch_is_0_or_1_and_errors_name_it() {
        assert_eq!(SyncMode::parse(None).unwrap(), SyncMode::Off);
        assert_eq!(SyncMode::parse(Some("")).unwrap(), SyncMode::Off);
        assert_eq!(SyncMode::parse(Some("0")).unwrap(), SyncMode::Off);
        assert_eq!(SyncMode::parse(Some("1")).unwrap(), SyncMode::EachLaunch);
        let err = SyncMode::parse(Some("yes")).unwrap_err().to_string();
        assert!(err.contains(SYNC_ENV) && err.contains("\"yes\""), "{err}");
    }

    #[test]
    fn a_launch_is_named_with_its_shape_and_an_empty_grid_launches_nothing() {
        let what = describe_launch("residual_ln_fwd", Grid(16384, 1), 256, 4096);
        assert_eq!(
            what,
            "kernel residual_ln_fwd (grid 16384 x 1, 256 threads per block, 4096 bytes of shared memory)"
        );
        assert!(Grid::from(0).is_empty());
        assert!(Grid::from((3, 0)).is_empty());
        assert!(!Grid::from((1, 1)).is_empty());
    }
}
