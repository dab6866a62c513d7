// libtorch's current CUDA stream of a device, on which the hand-written kernels are launched
// (shared::cuda::ffi::use_streams_of; docs/fused-step.md). Compiled against the CUDA headers
// with -DFE_WITH_CUDA (trainer/build.rs: with the NCCL process group, which needs the same
// headers); without them `fe_current_cuda_stream` says so at run time.
#include "ext.h"

#ifdef FE_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

extern "C" {

// `*out` = the `cudaStream_t` (= `CUstream`) current on CUDA device `device` for this thread
// (the default stream unless a program made another current; never null-checked by callers:
// the legacy default stream is 0).
char* fe_current_cuda_stream(int device, void** out) {
  return fe::guard([&] {
    TORCH_CHECK(out != nullptr, "fe_current_cuda_stream: null out-pointer");
#ifdef FE_WITH_CUDA
    *out = static_cast<void*>(
        c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream());
#else
    (void)device;
    TORCH_CHECK(false,
                "this trainer was built without the CUDA headers (see scripts/setup.sh), so it "
                "cannot ask libtorch for its current CUDA stream");
#endif
  });
}

}  // extern "C"
