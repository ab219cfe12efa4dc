// GEMM: C[M, N] = act(A[M, K] · B[K, N] + bias), the five BLIS loops around the active ISA's micro-kernel.
//
// * A is row-major with leading dimension lda; C with ldc (C must not overlap A or B).
// * B is either a PackedWeight (packed once, the layers' case) or a raw row-major matrix ([K, N], or
//   [N, K] with trans_b) that is packed per call, except for small M with [K, N], where the kernels read
//   it in place (decoding shapes are bandwidth-bound: packing would double the traffic).
// * Threads split M (in tiles of mr rows) or N (in panels of nr columns), never K: every element of C is
//   one FMA chain over K in ascending order, identical for any thread count, M, or position in a batch.
// * bias [N] and the activation are applied to each register tile right after its last K block,
//   while it is still in L1.
// * While a tile is computed, the micro-kernel prefetches its share of the next B panel towards L2 (each
//   row tile of a block a part proportional to its rows, spread over its k steps): the panels of a wide
//   or memory-resident B (the vocabulary projection, decoding steps) arrive at the pace of the compute.
#pragma once

#include "core/dims.h"
#include "kernels/kernel_table.h"
#include "ops/packed_weight.h"

namespace cpuformer {

struct GemmOutput {
  float* c;
  Index ldc;
  const float* bias = nullptr;  // [N] or null
  Activation activation = Activation::kNone;
};

// threads <= 0: the current default (get_num_threads()).
void gemm(const float* a, Index lda, Index m, const PackedWeight& b, const GemmOutput& out, int threads = 0);

void gemm(const KernelTable& kernels, const float* a, Index lda, Index m, Index k, const float* b, Index ldb,
          Index n, bool trans_b, const GemmOutput& out, int threads = 0);

}  // namespace cpuformer
