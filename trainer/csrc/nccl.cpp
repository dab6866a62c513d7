// The NCCL process group (CUDA tensors). Compiled with -DFE_WITH_NCCL only when the build found
// the CUDA and NCCL headers (trainer/build.rs); otherwise `fe_pg_nccl` says so at run time.
#include "dist.h"

#ifdef FE_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

extern "C" {

bool fe_has_nccl() {
#ifdef FE_WITH_NCCL
  return true;
#else
  return false;
#endif
}

// `device`: the CUDA device index this rank uses (its LOCAL_RANK).
char* fe_pg_nccl(FeStore* s, int rank, int size, int device, int64_t timeout_ms, FePg** out) {
  return fe::guard([&] {
#ifdef FE_WITH_NCCL
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = std::chrono::milliseconds(timeout_ms);
    opts->is_high_priority_stream = false;
    auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(s->store, rank, size, opts);
    pg->eagerConnectSingleDevice(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device)));
    *out = new FePg{c10::static_intrusive_pointer_cast<c10d::Backend>(pg)};
#else
    (void)s; (void)rank; (void)size; (void)device; (void)timeout_ms; (void)out;
    TORCH_CHECK(false,
                "this trainer was built without NCCL (the build found no CUDA/NCCL headers: "
                "install nvidia-cuda-crt and nvidia-cuda-cccl, see scripts/setup.sh, and rebuild)");
#endif
  });
}

}  // extern "C"
