// Many independent small GEMMs in one call (attention's per-head products): C[i] = A[i] · B[i] (or
// A[i] · B[i]ᵀ), i over a batch, each matrix contiguous and row-major. Threads split the batch; each
// product runs single-threaded, so results equal the unbatched gemm() exactly.
#pragma once

#include "core/dims.h"

namespace cpuformer {

// a [batch, m, k], b [batch, k, n] (or [batch, n, k] with trans_b), c [batch, m, n].
void batched_gemm(const float* a, const float* b, float* c, Index batch, Index m, Index k, Index n, bool trans_b,
                  int threads = 0);

}  // namespace cpuformer
