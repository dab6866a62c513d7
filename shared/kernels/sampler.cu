// The one-pass tempered sampler of `preprocess` (docs/fused-step.md, "Sampler"): one thread
// block of TILE = 256 threads per masked row of logits z [N, W] (W a multiple of TILE; padding
// and banned ids at -inf), one uniform u per row (fp64). Its CPU emulation, operation for
// operation, is shared::corruption::sampling_tiled (tested against the reference sampler).
//
// Pass 1, tile t of 256 ids in order (thread i holds id t * 256 + i):
//   m_t = max z over the tile (its first index: the arg-max candidate)
//   d_i = z_i inv_t + m_t (-inv_t)      (fp32, two roundings, no FMA: as the reference)
//   e_i = exp(d_i)                      (fp32; 0 for z_i = -inf)
//   s_t = sum e_i, a_t = sum e_i d_i    (fp32, the fixed tree of block_sum)
// Combine, thread 0, tiles in order, fp64: M = max m_t, c_t = exp(m_t inv_t - M inv_t),
//   Z = sum s_t c_t, A = sum c_t (a_t + s_t (m_t inv_t - M inv_t)), entropy = ln Z - A / Z,
//   target = u Z, the tile k = first tile whose prefix P_k = sum_{t<=k} s_t c_t exceeds it.
// Pass 2, tile k only: e_i recomputed bit for bit, then thread 0 scans in id order,
//   w = P_{k-1} + sum_{j'<=j} e_j' c_k (fp64), and picks the first id j with e_j > 0 and
//   w > target; if rounding leaves none, the tile's last id of positive mass. An id of
//   probability 0 is never picked.
#define TILE 256

__device__ __forceinline__ float tile_arg(float z, float inv_t, float neg_m_inv_t) {
  return __fadd_rn(__fmul_rn(z, inv_t), neg_m_inv_t);
}

// Every sum and product below goes through an explicit round-to-nearest intrinsic, which NVRTC
// never contracts into a fused multiply-add: each operation rounds once, as the CPU emulation's
// (Rust never contracts). The test `the_sampler_has_no_contracted_arithmetic` (shared::cuda)
// compiles this file with FE_OPAQUE_MATH (the maths library's functions out of line, below) and
// finds no fused multiply-add in the kernels' own code.
#ifdef FE_OPAQUE_MATH
#define FE_MATH __device__ __noinline__
#else
#define FE_MATH __device__ __forceinline__
#endif
FE_MATH float math_expf(float x) { return expf(x); }
FE_MATH double math_exp(double x) { return exp(x); }
FE_MATH double math_log(double x) { return log(x); }
__device__ __forceinline__ double rn_add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double rn_mul(double a, double b) { return __dmul_rn(a, b); }
// m_t / T - M / T as (double)m_t * (double)inv_t - Mi.
__device__ __forceinline__ double tile_log_scale(float m, float inv_t, double Mi) {
  return __dsub_rn(rn_mul((double)m, (double)inv_t), Mi);
}

template <typename T>
__device__ void sample_row(const T* zrow, int tiles, float inv_t, double u, long long* id_out,
                           long long* top1_out, float* ent_out, float* red, float* tm, float* ts,
                           float* ta, int* ti) {
  __shared__ float maxv[TILE];
  __shared__ int maxi[TILE];
  __shared__ double scratch[TILE];
  __shared__ int bad_any;
  int i = threadIdx.x;
  if (i == 0) bad_any = 0;
  __syncthreads();
  for (int t = 0; t < tiles; ++t) {
    float z = ld(zrow, (long long)t * TILE + i);
    if (isnan(z) || (isinf(z) && z > 0.f)) bad_any = 1;
    // Tile max and its first index, by a fixed tree.
    maxv[i] = z;
    maxi[i] = t * TILE + i;
    __syncthreads();
    for (int s = TILE / 2; s > 0; s >>= 1) {
      if (i < s) {
        float a = maxv[i], b = maxv[i + s];
        if (b > a || (b == a && maxi[i + s] < maxi[i])) { maxv[i] = b; maxi[i] = maxi[i + s]; }
      }
      __syncthreads();
    }
    float m = maxv[0];
    int mi = maxi[0];
    __syncthreads();
    float e = 0.f, ed = 0.f;
    if (m != -INFINITY && z != -INFINITY) {
      float d = tile_arg(z, inv_t, __fmul_rn(m, -inv_t));
      e = math_expf(d);
      ed = e > 0.f ? __fmul_rn(e, d) : 0.f;
    }
    float s = block_sum(e, red);
    float a = block_sum(ed, red);
    if (i == 0) { tm[t] = m; ts[t] = s; ta[t] = a; ti[t] = mi; }
  }
  __syncthreads();
  if (i == 0) {
    float M = -INFINITY;
    long long top1 = 0;
    for (int t = 0; t < tiles; ++t) if (tm[t] > M) { M = tm[t]; top1 = ti[t]; }
    double Mi = rn_mul((double)M, (double)inv_t), Z = 0.0, A = 0.0;
    for (int t = 0; t < tiles; ++t) {
      if (ts[t] > 0.f) {
        double lt = tile_log_scale(tm[t], inv_t, Mi);
        double c = math_exp(lt);
        Z = rn_add(Z, rn_mul((double)ts[t], c));
        A = rn_add(A, rn_mul(c, rn_add((double)ta[t], rn_mul((double)ts[t], lt))));
      }
    }
    double ent = __dsub_rn(math_log(Z), __ddiv_rn(A, Z));
    if (bad_any || M == -INFINITY) ent = NAN;
    double target = rn_mul(u, Z), before = 0.0, P = 0.0;
    int k = -1, last = -1;
    for (int t = 0; t < tiles; ++t) {
      if (ts[t] > 0.f) {
        double c = math_exp(tile_log_scale(tm[t], inv_t, Mi));
        double next = rn_add(P, rn_mul((double)ts[t], c));
        last = t;
        if (k < 0 && next > target) { k = t; before = P; }
        P = next;
      }
    }
    if (k < 0) {  // rounding: u Z at or beyond the last prefix
      k = last < 0 ? 0 : last;
      P = 0.0;
      for (int t = 0; t < k; ++t)
        if (ts[t] > 0.f) P = rn_add(P, rn_mul((double)ts[t], math_exp(tile_log_scale(tm[t], inv_t, Mi))));
      before = P;
    }
    scratch[0] = before;
    scratch[1] = target;
    scratch[2] = (k >= 0 && ts[k] > 0.f) ? math_exp(tile_log_scale(tm[k], inv_t, Mi)) : 0.0;
    ti[0] = k;
    top1_out[0] = top1;
    ent_out[0] = (float)ent;
  }
  __syncthreads();
  int k = ti[0];
  double before = scratch[0], target = scratch[1], ck = scratch[2];
  __syncthreads();
  // Pass 2: tile k again, e recomputed exactly as in pass 1.
  float z = ld(zrow, (long long)k * TILE + i);
  float m = tm[k];
  float e = 0.f;
  if (m != -INFINITY && z != -INFINITY) e = math_expf(tile_arg(z, inv_t, __fmul_rn(m, -inv_t)));
  red[i] = e;
  __syncthreads();
  if (i == 0) {
    double w = before;
    int pick = -1, lastpos = -1;
    for (int j = 0; j < TILE; ++j) {
      if (red[j] > 0.f) {
        lastpos = j;
        w = rn_add(w, rn_mul((double)red[j], ck));
        if (w > target) { pick = j; break; }
      }
    }
    if (pick < 0) pick = lastpos < 0 ? 0 : lastpos;
    id_out[0] = (long long)k * TILE + pick;
  }
}

// Grid: N blocks of TILE threads; dynamic shared memory: tiles * 16 bytes + TILE floats.
#define SAMPLER(NAME, T)                                                                         \
  extern "C" __global__ void NAME(const T* z, const double* u, long long W, float inv_t,       \
                                  long long* ids, long long* top1, float* entropy) {            \
    extern __shared__ float dyn[];                                                              \
    int tiles = (int)(W / TILE);                                                                \
    float* red = dyn;                                                                           \
    float* tm = red + TILE;                                                                     \
    float* ts = tm + tiles;                                                                     \
    float* ta = ts + tiles;                                                                     \
    int* ti = (int*)(ta + tiles);                                                               \
    long long row = blockIdx.x;                                                                 \
    sample_row<T>(z + row * W, tiles, inv_t, u[row], ids + row, top1 + row, entropy + row, red, \
                  tm, ts, ta, ti);                                                              \
  }
SAMPLER(sample_tempered_bf16, bf16)
SAMPLER(sample_tempered_f32, float)
