// LayerNorm over the last dimension with learned gamma/beta (beta may be absent: zeros), and the fused
// residual add of post-LN blocks: y = LN(x + residual).
#pragma once

#include <vector>

#include "core/dims.h"

namespace cpuformer {

class LayerNorm {
 public:
  LayerNorm(const float* gamma, const float* beta, Index dim, float eps);

  Index dim() const { return static_cast<Index>(gamma_.size()); }

  // y[rows, dim] = LN(x + residual); residual may be null; y may alias x or residual.
  void forward(const float* x, const float* residual, float* y, Index rows, int threads = 0) const;

 private:
  std::vector<float> gamma_, beta_;
  float eps_;
};

}  // namespace cpuformer
