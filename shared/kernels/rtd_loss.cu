// The RTD head's loss: one block (blockDim.x a power of two) over all N logits, in a fixed
// order. loss = sum_real bce(z, t) / max(#real, 1); dz = (sigmoid(z) - t) real / max(#real, 1)
// * scale. bce(z, t) = softplus(-z) + (1 - t) z, computed stably.
extern "C" __global__ void rtd_loss(const float* z, const float* t, const long long* real,
                                    float* loss, float* dz, long long N, float scale) {
  extern __shared__ float red[];
  float cnt = 0.f, acc = 0.f;
  for (long long i = threadIdx.x; i < N; i += blockDim.x) {
    if (real[i] != 0) {
      float v = z[i];
      float sp = fmaxf(-v, 0.f) + log1pf(expf(-fabsf(v)));
      acc += sp + (1.f - t[i]) * v;
      cnt += 1.f;
    }
  }
  float n = fmaxf(block_sum(cnt, red), 1.f);
  float total = block_sum(acc, red);
  for (long long i = threadIdx.x; i < N; i += blockDim.x) {
    float s = 1.f / (1.f + expf(-z[i]));
    dz[i] = real[i] != 0 ? (s - t[i]) / n * scale : 0.f;
  }
  if (threadIdx.x == 0) loss[0] = total / n;
}
