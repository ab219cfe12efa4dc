#include "nn/layer_norm.h"

#include "ops/rowwise.h"

namespace cpuformer {

LayerNorm::LayerNorm(const float* gamma, const float* beta, Index dim, float eps)
    : gamma_(gamma, gamma + dim), beta_(dim, 0.0f), eps_(eps) {
  if (beta != nullptr) beta_.assign(beta, beta + dim);
}

void LayerNorm::forward(const float* x, const float* residual, float* y, Index rows, int threads) const {
  layer_norm_rows(x, residual, gamma_.data(), beta_.data(), eps_, y, rows, dim(), threads);
}

}  // namespace cpuformer
