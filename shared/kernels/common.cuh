// Shared by every kernel of this folder (prepended to each program by shared::cuda::program).
// Compiled at run time by NVRTC (-std=c++17, no fast math); activations are bf16, parameters,
// LayerNorm statistics and gradients of parameters fp32.
#include <cuda_bf16.h>

typedef unsigned long long u64;
typedef unsigned int u32;
typedef __nv_bfloat16 bf16;

// NVRTC has no <math.h> macros.
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif
#ifndef NAN
#define NAN __int_as_float(0x7fffffff)
#endif

__device__ __forceinline__ float ld(const bf16* p, long long i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float ld(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ void st(bf16* p, long long i, float v) { p[i] = __float2bfloat16(v); }
__device__ __forceinline__ void st(float* p, long long i, float v) { p[i] = v; }

// Philox4x32-10 (Salmon et al., SC'11): counter (c0..c3), key (k0, k1) -> 4 x 32 random bits.
__device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint2 k) {
  const u32 M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    u32 hi0 = __umulhi(M0, c.x), lo0 = M0 * c.x;
    u32 hi1 = __umulhi(M1, c.z), lo1 = M1 * c.z;
    c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    k.x += W0;
    k.y += W1;
  }
  return c;
}

// The dropout keep-decision of element `i` of dropout site `site` under `seed`: the first word
// of Philox4x32-10 at counter (i lo, i hi, site lo, site hi), key (seed lo, seed hi), as a
// uniform in [0, 1) with 24 bits; kept when u >= p. The same function regenerates the mask in
// the backward pass, so no mask is stored.
__device__ __forceinline__ bool dropout_keep(u64 seed, u64 site, u64 i, float p) {
  if (p <= 0.f) return true;
  uint4 r = philox4x32_10(make_uint4((u32)i, (u32)(i >> 32), (u32)site, (u32)(site >> 32)),
                          make_uint2((u32)seed, (u32)(seed >> 32)));
  float u = (float)(r.x >> 8) * (1.0f / 16777216.0f);
  return u >= p;
}

// Block-wide sum of one float per thread, in a fixed order (deterministic). `buf` holds
// blockDim.x floats; every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* buf) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  float r = buf[0];
  __syncthreads();
  return r;
}
