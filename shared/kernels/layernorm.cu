// LayerNorm kernels: one thread block per row (blockDim.x a power of two, 256), fp32
// statistics, two passes over the row (mean, then centred variance: as ATen's). The dropout
// masks are regenerated from Philox (common.cuh) by element index row * C + c.

// Embeddings: x = word[id] + pos[s] + typ[0]; y = LN(x) * keep / (1 - p). The LN input is
// not saved: the backward recomputes it from the ids. An id outside [0, V) reads row 0 and
// makes the row's output NaN (the loss then stops the run), without a host check.
extern "C" __global__ void embed_ln_fwd(const long long* ids, const float* word, const float* pos,
                                        const float* typ, const float* w, const float* b,
                                        bf16* y, float* mean, float* rstd, int S, int C,
                                        long long V, float eps, float p, u64 seed, u64 site) {
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
    st(y, row * C + c, bad_id ? NAN : v);
  }
  if (threadIdx.x == 0) { mean[row] = mu; rstd[row] = r; }
}

// Backward of embed_ln_fwd up to the LN input: dx [N, C] fp32 (the tables' gradients are then
// an index-add of dx: the caller's).
extern "C" __global__ void embed_ln_bwd(const bf16* dy, const long long* ids, const float* word,
                                        const float* pos, const float* typ, const float* w,
                                        const float* mean, const float* rstd, float* dx, int S,
                                        int C, long long V, float p, u64 seed, u64 site) {
  extern __shared__ float red[];
  long long row = blockIdx.x;
  long long id = ids[row];
  if (id < 0 || id >= V) id = 0;  // the forward made this row NaN already
  int s = (int)(row % S);
  float mu = mean[row], r = rstd[row], scale = p > 0.f ? 1.f / (1.f - p) : 1.f;
  float a1 = 0.f, a2 = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float g = dropout_keep(seed, site, (u64)row * C + c, p) ? ld(dy, row * C + c) * scale : 0.f;
    float xh = ((word[id * C + c] + pos[(long long)s * C + c]) + typ[c] - mu) * r;
    g *= w[c];
    a1 += g;
    a2 += g * xh;
  }
  float m1 = block_sum(a1, red) / C, m2 = block_sum(a2, red) / C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float g = dropout_keep(seed, site, (u64)row * C + c, p) ? ld(dy, row * C + c) * scale : 0.f;
    float xh = ((word[id * C + c] + pos[(long long)s * C + c]) + typ[c] - mu) * r;
    dx[row * C + c] = r * (g * w[c] - m1 - xh * m2);
  }
}

// y = LN(dropout(branch + bias) + residual); saves the LN input x (bf16), mean, rstd.
extern "C" __global__ void residual_ln_fwd(const bf16* branch, const float* bias,
                                           const bf16* residual, const float* w, const float* b,
                                           bf16* y, bf16* xs, float* mean, float* rstd, int C,
                                           float eps, float p, u64 seed, u64 site) {
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
    v += ld(residual, i);
    // The backward recomputes from the stored (rounded) x, so normalise the rounded value.
    bf16 vb = __float2bfloat16(v);
    xs[i] = vb;
    v = __bfloat162float(vb);
    x[c] = v;
    acc += v;
  }
  float mu = block_sum(acc, red) / C;
  float var = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) { float d = x[c] - mu; var += d * d; }
  float r = rsqrtf(block_sum(var, red) / C + eps);
  for (int c = threadIdx.x; c < C; c += blockDim.x) st(y, row * C + c, (x[c] - mu) * r * w[c] + b[c]);
  if (threadIdx.x == 0) { mean[row] = mu; rstd[row] = r; }
}

// Backward of residual_ln_fwd: dx (the residual's and LN input's gradient, bf16) and dbranch
// = dx * keep / (1 - p) (bf16). The parameters' gradients: ln_param_grads.
extern "C" __global__ void residual_ln_bwd(const bf16* dy, const bf16* xs, const float* w,
                                           const float* mean, const float* rstd, bf16* dx,
                                           bf16* dbranch, int C, float p, u64 seed, u64 site) {
  extern __shared__ float red[];
  long long row = blockIdx.x;
  float mu = mean[row], r = rstd[row], scale = p > 0.f ? 1.f / (1.f - p) : 1.f;
  float a1 = 0.f, a2 = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    long long i = row * C + c;
    float g = ld(dy, i) * w[c], xh = (ld(xs, i) - mu) * r;
    a1 += g;
    a2 += g * xh;
  }
  float m1 = block_sum(a1, red) / C, m2 = block_sum(a2, red) / C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    long long i = row * C + c;
    float xh = (ld(xs, i) - mu) * r;
    float d = r * (ld(dy, i) * w[c] - m1 - xh * m2);
    st(dx, i, d);
    st(dbranch, i, dropout_keep(seed, site, (u64)i, p) ? d * scale : 0.f);
  }
}

// Partial sums of dw[c] = sum_rows dy * xhat and db[c] = sum_rows dy: one thread per column,
// blockIdx.y = a chunk of `rows` rows in order; part_dw, part_db [gridDim.y, C] (the caller sums
// the chunks in order: deterministic; coalesced across the threads of a warp).
extern "C" __global__ void ln_param_grads(const bf16* dy, const bf16* xs, const float* mean,
                                          const float* rstd, float* part_dw, float* part_db,
                                          long long N, int C, long long rows) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  long long r0 = (long long)blockIdx.y * rows, r1 = min(N, r0 + rows);
  float aw = 0.f, ab = 0.f;
  for (long long row = r0; row < r1; ++row) {
    float g = ld(dy, row * C + c);
    aw += g * (ld(xs, row * C + c) - mean[row]) * rstd[row];
    ab += g;
  }
  part_dw[(long long)blockIdx.y * C + c] = aw;
  part_db[(long long)blockIdx.y * C + c] = ab;
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
