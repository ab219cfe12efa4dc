#include "ops/positional_encoding.h"

#include <cmath>

#include "core/check.h"

namespace cpuformer {

void positional_encoding(Index length, Index d_model, float* out, Index first) {
  CPUFORMER_CHECK(length >= 0, "length: expected >= 0, got ", length);
  CPUFORMER_CHECK(d_model > 0, "d_model: expected > 0, got ", d_model);
  for (Index i = 0; i < d_model; i += 2) {
    const double inv_freq = std::pow(10000.0, -static_cast<double>(i) / static_cast<double>(d_model));
    for (Index p = 0; p < length; ++p) {
      const double angle = static_cast<double>(first + p) * inv_freq;
      out[p * d_model + i] = static_cast<float>(std::sin(angle));
      if (i + 1 < d_model) out[p * d_model + i + 1] = static_cast<float>(std::cos(angle));
    }
  }
}

}  // namespace cpuformer
