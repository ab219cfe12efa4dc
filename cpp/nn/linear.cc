#include "nn/linear.h"

#include "kernels/registry.h"
#include "ops/gemm.h"

namespace cpuformer {

Linear::Linear(const float* weight, const float* bias, Index out_features, Index in_features)
    : weight_(active_kernels(), weight, in_features, in_features, out_features, /*transposed=*/true) {
  if (bias != nullptr) bias_.assign(bias, bias + out_features);
}

void Linear::forward(const float* x, Index ldx, Index rows, float* y, Index ldy, Activation act, int threads) const {
  GemmOutput out{y, ldy, bias_.empty() ? nullptr : bias_.data(), act};
  gemm(x, ldx, rows, weight_, out, threads);
}

}  // namespace cpuformer
