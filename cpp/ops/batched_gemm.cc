#include "ops/batched_gemm.h"

#include "core/parallel.h"
#include "kernels/registry.h"
#include "ops/gemm.h"

namespace cpuformer {

void batched_gemm(const float* a, const float* b, float* c, Index batch, Index m, Index k, Index n, bool trans_b,
                  int threads) {
  if (batch == 0 || m == 0 || n == 0) return;
  const KernelTable& kt = active_kernels();
  if (batch == 1) {  // one product: give it the threads
    GemmOutput out{c, n};
    return gemm(kt, a, k, m, k, b, trans_b ? k : n, n, trans_b, out, threads);
  }
  parallel_for(batch, [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) {
      GemmOutput out{c + i * m * n, n};
      gemm(kt, a + i * m * k, k, m, k, b + i * k * n, trans_b ? k : n, n, trans_b, out, /*threads=*/1);
    }
  }, threads);
}

}  // namespace cpuformer
