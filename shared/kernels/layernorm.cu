// LayerNorm kernels: one thread block per row (blockDim.x a power of two, 256), fp32
// statistics, two passes over the row (mean, then centred variance: as ATen's). The dropout
// masks are regenerated from Philox (common.cuh) by element index row * C + c.

// The residual stream, the LayerNorm inputs and outputs and the residual gradients are fp32 (as
// under bf16 autocast, where LayerNorm runs in fp32 and the residual additions promote to fp32);
// each LayerNorm also writes a bf16 copy of its output, the operand of the next GEMMs. An
// incoming gradient is the sum of an fp32 part `dy` (the residual's) and a bf16 part `dyc` (a
// GEMM's dX), either of which may be null (a missing part counts as 0): the sum is formed in
// fp32 here, so no residual gradient is ever rounded to bf16.
__device__ __forceinline__ float grad_at(const float* dy, const bf16* dyc, long long i) {
  float g = dy ? dy[i] : 0.f;
  if (dyc) g += __bfloat162float(dyc[i]);
  return g;
}

// Embeddings: x = word[id] + pos[s] + typ[0]; y = LN(x) * keep / (1 - p), fp32, and its bf16
// copy yc. The LN input is not saved: the backward recomputes it from the ids. An id outside
// [0, V) reads row 0 and makes the row's output NaN (the loss then stops the run), without a
// host check.
extern "C" __global__ void embed_ln_fwd(const long long* ids, const float* word, const float* pos,
                                        const float* typ, const float* w, const float* b,
                                        float* y, bf16* yc, float* mean, float* rstd, int S,
                                        int C, long long V, float eps, float p, u64 seed,
                                        u64 site) {
  extern __shared__ float sm[];  // C floats of x, then blockDim.x for the reduction
  float* x = sm;
  float* red = sm + C;
  long long row = blockIdx.x;
  long long id = ids[row];
  bool bad_id = id < 0 || id >= V;
  if (bad_id) id = 0;
  int s = (int)(row % S);
  float acc = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    // words + positions + types, in the reference's order of additions.
    float v = (word[id * C + c] + pos[(long long)s * C + c]) + typ[c];
    x[c] = v;
    acc += v;
  }
  float mu = block_sum(acc, red) / C;
  float var = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) { float d = x[c] - mu; var += d * d; }
  float r = rsqrtf(block_sum(var, red) / C + eps);
  float scale = p > 0.f ? 1.f / (1.f - p) : 1.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float v = (x[c] - mu) * r * w[c] + b[c];
    if (!dropout_keep(seed, site, (u64)row * C + c, p)) v = 0.f; else v *= scale;
    if (bad_id) v = NAN;
    y[row * C + c] = v;
    st(yc, row * C + c, v);
  }
  if (threadIdx.x == 0) { mean[row] = mu; rstd[row] = r; }
}

// Backward of embed_ln_fwd up to the LN input: dx [N, C] fp32 from the output's gradient dy
// (fp32) + dyc (bf16) (the tables' gradients are then an index-add of dx: the caller's).
extern "C" __global__ void embed_ln_bwd(const float* dy, const bf16* dyc, const long long* ids,
                                        const float* word, const float* pos, const float* typ,
                                        const float* w, const float* mean, const float* rstd,
                                        float* dx, int S, int C, long long V, float p, u64 seed,
                                        u64 site) {
  extern __shared__ float red[];
  long long row = blockIdx.x;
  long long id = ids[row];
  if (id < 0 || id >= V) id = 0;  // the forward made this row NaN already
  int s = (int)(row % S);
  float mu = mean[row], r = rstd[row], scale = p > 0.f ? 1.f / (1.f - p) : 1.f;
  float a1 = 0.f, a2 = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    long long i = row * C + c;
    float g = dropout_keep(seed, site, (u64)i, p) ? grad_at(dy, dyc, i) * scale : 0.f;
    float xh = ((word[id * C + c] + pos[(long long)s * C + c]) + typ[c] - mu) * r;
    g *= w[c];
    a1 += g;
    a2 += g * xh;
  }
  float m1 = block_sum(a1, red) / C, m2 = block_sum(a2, red) / C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    long long i = row * C + c;
    float g = dropout_keep(seed, site, (u64)i, p) ? grad_at(dy, dyc, i) * scale : 0.f;
    float xh = ((word[id * C + c] + pos[(long long)s * C + c]) + typ[c] - mu) * r;
    dx[i] = r * (g * w[c] - m1 - xh * m2);
  }
}

// y = LN(dropout(branch + bias) + residual): branch bf16 (a GEMM output), residual fp32; writes
// y (fp32, the next residual), yc (its bf16 copy) and saves the LN input xs (fp32), mean, rstd.
extern "C" __global__ void residual_ln_fwd(const bf16* branch, const float* bias,
                                           const float* residual, const float* w, const float* b,
                                           float* y, bf16* yc, float* xs, float* mean,
                                           float* rstd, int C, float eps, float p, u64 seed,
                                           u64 site) {
  extern __shared__ float sm[];
  float* x = sm;
  float* red = sm + C;
  long long row = blockIdx.x;
  float scale = p > 0.f ? 1.f / (1.f - p) : 1.f;
  float acc = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    long long i = row * C + c;
    float v = ld(branch, i) + bias[c];
    v = dropout_keep(seed, site, (u64)i, p) ? v * scale : 0.f;
    v += residual[i];
    xs[i] = v;
    x[c] = v;
    acc += v;
  }
  float mu = block_sum(acc, red) / C;
  float var = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) { float d = x[c] - mu; var += d * d; }
  float r = rsqrtf(block_sum(var, red) / C + eps);
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float v = (x[c] - mu) * r * w[c] + b[c];
    y[row * C + c] = v;
    st(yc, row * C + c, v);
  }
  if (threadIdx.x == 0) { mean[row] = mu; rstd[row] = r; }
}

// Backward of residual_ln_fwd from the output's gradient dy (fp32) + dyc (bf16): dx, the
// residual's and LN input's gradient (fp32), and dbranch = dx * keep / (1 - p) (bf16, the
// operand of the branch's GEMMs). The parameters' gradients: ln_param_grads.
extern "C" __global__ void residual_ln_bwd(const float* dy, const bf16* dyc, const float* xs,
                                           const float* w, const float* mean, const float* rstd,
                                           float* dx, bf16* dbranch, int C, float p, u64 seed,
                                           u64 site) {
  extern __shared__ float red[];
  long long row = blockIdx.x;
  float mu = mean[row], r = rstd[row], scale = p > 0.f ? 1.f / (1.f - p) : 1.f;
  float a1 = 0.f, a2 = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    long long i = row * C + c;
    float g = grad_at(dy, dyc, i) * w[c], xh = (xs[i] - mu) * r;
    a1 += g;
    a2 += g * xh;
  }
  float m1 = block_sum(a1, red) / C, m2 = block_sum(a2, red) / C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    long long i = row * C + c;
    float xh = (xs[i] - mu) * r;
    float d = r * (grad_at(dy, dyc, i) * w[c] - m1 - xh * m2);
    dx[i] = d;
    st(dbranch, i, dropout_keep(seed, site, (u64)i, p) ? d * scale : 0.f);
  }
}

// Partial sums of dw[c] = sum_rows g * xhat and db[c] = sum_rows g, g = dy + dyc (as
// residual_ln_bwd): one thread per column, blockIdx.y = a chunk of `rows` rows in order;
// part [2, gridDim.y, C] (dw's partials, then db's; the caller sums the chunks in order:
// deterministic; coalesced across the threads of a warp).
extern "C" __global__ void ln_param_grads(const float* dy, const bf16* dyc, const float* xs,
                                          const float* mean, const float* rstd, float* part,
                                          long long N, int C, long long rows) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  long long r0 = (long long)blockIdx.y * rows, r1 = min(N, r0 + rows);
  float aw = 0.f, ab = 0.f;
  for (long long row = r0; row < r1; ++row) {
    float g = grad_at(dy, dyc, row * C + c);
    aw += g * (xs[row * C + c] - mean[row]) * rstd[row];
    ab += g;
  }
  part[(long long)blockIdx.y * C + c] = aw;
  part[((long long)gridDim.y + blockIdx.y) * C + c] = ab;
}

// Partial column sums of x [N, C] (a bias gradient), fp32, chunks of `rows` rows as above.
extern "C" __global__ void col_sum_bf16(const bf16* x, float* part, long long N, int C,
                                        long long rows) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  long long r0 = (long long)blockIdx.y * rows, r1 = min(N, r0 + rows);
  float a = 0.f;
  for (long long row = r0; row < r1; ++row) a += ld(x, row * C + c);
  part[(long long)blockIdx.y * C + c] = a;
}

// The scaled keep mask of a dropout site as the kernels see it (GPU check and tests only).
extern "C" __global__ void dropout_mask(float* out, long long n, float p, u64 seed, u64 site) {
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = dropout_keep(seed, site, (u64)i, p) ? 1.f / (1.f - p) : 0.f;
}
