// AdamW through PyTorch's fused kernel (`at::_fused_adamw_`), which tch 0.24 does not bind.
// One call updates one contiguous slice of the flat parameter buffer in a single pass (CPU:
// a vectorised loop; CUDA: one multi-tensor-apply kernel), reading the gradient and both moments
// once and writing parameter and moments once.
#include "ext.h"

#include <ATen/ATen.h>
#include <ATen/ops/_fused_adamw.h>

extern "C" {

void fe_free(char* p) { std::free(p); }

// One AdamW update of `param` (decoupled weight decay `weight_decay`) from `grad` and the
// moments. `step` is a one-element fp32 tensor on the parameters' device holding the update
// number t >= 1 (bias corrections 1 - beta^t); the caller increments it: the CPU kernel does
// not, and PyTorch's own optimizer increments it before the call on every device.
// `grad_scale` (may be null): a one-element fp32 tensor s; the kernel uses grad / s
// (gradient clipping passes s = max(1, norm / max_norm)).
char* fe_fused_adamw(at::Tensor* param, at::Tensor* grad, at::Tensor* exp_avg,
                     at::Tensor* exp_avg_sq, at::Tensor* step, double lr, double beta1,
                     double beta2, double weight_decay, double eps, at::Tensor* grad_scale) {
  return fe::guard([&] {
    TORCH_CHECK(param && grad && exp_avg && exp_avg_sq && step, "fe_fused_adamw: null tensor");
    // The CPU kernel trusts its inputs (it does not compare sizes), so check them here.
    for (const at::Tensor* t : {grad, exp_avg, exp_avg_sq}) {
      TORCH_CHECK(t->sizes() == param->sizes() && t->scalar_type() == param->scalar_type() &&
                      t->device() == param->device(),
                  "fused AdamW: gradient and moments must match the parameter (",
                  param->sizes(), " ", param->scalar_type(), " on ", param->device(),
                  "), found ", t->sizes(), " ", t->scalar_type(), " on ", t->device());
    }
    for (const at::Tensor* t : {param, grad, exp_avg, exp_avg_sq}) {
      TORCH_CHECK(t->is_contiguous(), "fused AdamW: tensors must be contiguous");
    }
    TORCH_CHECK(step->numel() == 1 && step->scalar_type() == at::kFloat &&
                    step->device() == param->device(),
                "fused AdamW: step must be one fp32 element on the parameter's device");
    if (grad_scale != nullptr) {
      TORCH_CHECK(grad_scale->numel() == 1 && grad_scale->scalar_type() == at::kFloat &&
                      grad_scale->device() == param->device(),
                  "fused AdamW: grad_scale must be one fp32 element on the parameter's device");
    }
    std::optional<at::Tensor> scale;
    if (grad_scale != nullptr) scale = *grad_scale;
    at::_fused_adamw_({*param}, {*grad}, {*exp_avg}, {*exp_avg_sq}, {}, {*step}, lr, beta1,
                      beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false, scale,
                      /*found_inf=*/std::nullopt);
  });
}

}  // extern "C"
