#include "ops/packed_weight.h"

#include <algorithm>

#include "core/check.h"
#include "core/parallel.h"

namespace cpuformer {

void pack_b(const KernelTable& kernels, const float* w, Index ld, Index k, Index n, bool transposed, float* dst) {
  const Index kc = kernels.gemm.kc, nr = kernels.gemm.nr;
  const Index n_panels = (n + nr - 1) / nr;
  const Index n_padded = n_panels * nr;
  const Index k_blocks = (k + kc - 1) / kc;
  // One task per (block, panel); each writes a disjoint kc_b × nr region.
  parallel_for(k_blocks * n_panels, [&](Index begin, Index end) {
    for (Index t = begin; t < end; ++t) {
      const Index k0 = (t / n_panels) * kc;
      const Index j = t % n_panels;
      const Index kc_b = std::min<Index>(kc, k - k0);
      const Index n0 = j * nr;
      const Index cols = std::min<Index>(nr, n - n0);
      float* out = dst + k0 * n_padded + j * kc_b * nr;
      if (!transposed) {
        kernels.pack_b_rows(w + k0 * ld + n0, ld, kc_b, cols, out);
      } else {
        kernels.pack_b_transposed(w + n0 * ld + k0, ld, cols, kc_b, out);
      }
    }
  });
}

PackedWeight::PackedWeight(const KernelTable& kernels, const float* w, Index ld, Index k, Index n,
                           bool transposed)
    : PackedWeight(kernels, w, ld, k, n, transposed, AlignedBuffer{}) {}

PackedWeight::PackedWeight(const KernelTable& kernels, const float* w, Index ld, Index k, Index n,
                           bool transposed, AlignedBuffer&& storage)
    : kernels_(&kernels), k_(k), n_(n), kc_(kernels.gemm.kc), nr_(kernels.gemm.nr), data_(std::move(storage)) {
  CPUFORMER_CHECK(k >= 0 && n >= 0, "weight: dimensions must be non-negative, got [", k, ", ", n, "]");
  n_padded_ = (n + nr_ - 1) / nr_ * nr_;
  float* dst = data_.reserve(static_cast<std::size_t>(std::max<Index>(1, k_ * n_padded_)));
  pack_b(kernels, w, ld, k, n, transposed, dst);
}

}  // namespace cpuformer
