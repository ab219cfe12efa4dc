// A linear layer y = act(x · Wᵀ + b) that owns its weight packed once, in the layout of the kernel table
// active when it was built. W is [out, in] as in torch.nn.Linear. Immutable; safe to share across threads.
#pragma once

#include <vector>

#include "core/dims.h"
#include "kernels/kernel_table.h"
#include "ops/packed_weight.h"

namespace cpuformer {

class Linear {
 public:
  // weight [out_features, in_features] row-major; bias [out_features] or null.
  Linear(const float* weight, const float* bias, Index out_features, Index in_features);

  Index in_features() const { return weight_.k(); }
  Index out_features() const { return weight_.n(); }

  // y[rows, out] (leading dimension ldy) = act(x[rows, in] (leading dimension ldx) · Wᵀ + b).
  void forward(const float* x, Index ldx, Index rows, float* y, Index ldy, Activation act = Activation::kNone,
               int threads = 0) const;

 private:
  PackedWeight weight_;
  std::vector<float> bias_;  // empty: no bias
};

}  // namespace cpuformer
