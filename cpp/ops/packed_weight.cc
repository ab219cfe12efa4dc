#include "ops/packed_weight.h"

#include <algorithm>

#include "core/check.h"
#include "core/parallel.h"

namespace cpuformer {

// A task packs a strip of up to kPackRowsPerTask rows × kPackPanelsPerTask panels of a row-major B, reading each
// row's piece (4 KiB with 32-column panels) whole. Packed a panel at a time instead, B's rows were read two cache
// lines per row a row stride apart, a new page per line pair that the hardware prefetcher does not follow: packing
// a 1024 × 1024 B took ~0.5 ms at two threads, 8% of the product it fed. Rows wider than a group are split so that
// a strip writes to a bounded number of panels at once.
constexpr Index kPackRowsPerTask = 16;
constexpr Index kPackPanelsPerTask = 32;

void pack_b(const KernelTable& kernels, const float* w, Index ld, Index k, Index n, bool transposed, float* dst) {
  const Index kc = kernels.gemm.kc, nr = kernels.gemm.nr;
  const Index n_panels = (n + nr - 1) / nr;
  const Index n_padded = n_panels * nr;
  const Index k_blocks = (k + kc - 1) / kc;
  if (!transposed) {
    // Tasks: (strip of a K block, group of panels); strips never cross a block.
    const Index strips_per_block = (kc + kPackRowsPerTask - 1) / kPackRowsPerTask;
    const Index last_kc = k - (k_blocks - 1) * kc;
    const Index strips = (k_blocks - 1) * strips_per_block + (last_kc + kPackRowsPerTask - 1) / kPackRowsPerTask;
    const Index groups = (n_panels + kPackPanelsPerTask - 1) / kPackPanelsPerTask;
    parallel_for(strips * groups, [&](Index begin, Index end) {
      for (Index t = begin; t < end; ++t) {
        const Index strip = t / groups, group = t % groups;
        const Index k0 = (strip / strips_per_block) * kc;
        const Index p0 = k0 + (strip % strips_per_block) * kPackRowsPerTask;
        const Index kc_b = std::min<Index>(kc, k - k0);
        const Index rows = std::min<Index>(kPackRowsPerTask, k0 + kc_b - p0);
        const Index n0 = group * kPackPanelsPerTask * nr;
        const Index cols = std::min<Index>(kPackPanelsPerTask * nr, n - n0);
        kernels.pack_b_rows(w + p0 * ld + n0, ld, rows, cols, dst + k0 * n_padded + n0 * kc_b + (p0 - k0) * nr,
                            kc_b * nr);
      }
    });
    return;
  }
  // One task per (block, panel); each writes a disjoint kc_b × nr region. (w's rows are B's columns:
  // a panel reads nr rows of w, each contiguous along K.)
  parallel_for(k_blocks * n_panels, [&](Index begin, Index end) {
    for (Index t = begin; t < end; ++t) {
      const Index k0 = (t / n_panels) * kc;
      const Index j = t % n_panels;
      const Index kc_b = std::min<Index>(kc, k - k0);
      const Index n0 = j * nr;
      const Index cols = std::min<Index>(nr, n - n0);
      kernels.pack_b_transposed(w + n0 * ld + k0, ld, cols, kc_b, dst + k0 * n_padded + j * kc_b * nr);
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
