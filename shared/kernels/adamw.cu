// AdamW over flat fp32 buffers (decoupled weight decay, PyTorch's formula), writing the bf16
// copy of the weights the next step's GEMMs read in the same pass. `grad_scale` is a device
// scalar (clipping: the gradient is divided by it), so no host sync is needed.
extern "C" __global__ void adamw_bf16(float* param, float* m, float* v, const float* grad,
                                      bf16* param_bf16, long long n, float lr, float beta1,
                                      float beta2, float eps, float weight_decay,
                                      float bias_correction1, float bias_correction2,
                                      const float* grad_scale) {
  float inv = 1.f / grad_scale[0];
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float g = grad[i] * inv;
    float p = param[i] * (1.f - lr * weight_decay);
    float mi = beta1 * m[i] + (1.f - beta1) * g;
    float vi = beta2 * v[i] + (1.f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi / bias_correction2) + eps;
    p -= lr * (mi / bias_correction1) / denom;
    param[i] = p;
    param_bf16[i] = __float2bfloat16(p);
  }
}
