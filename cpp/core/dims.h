// The one vocabulary of dimensions used across cpuformer, written down once.
//
//   B  batch            S  source length      T  target length     D  d_model
//   H  heads            Dh head dim (D / H)   F  feed-forward      V  vocabulary
//   M, N, K             GEMM sizes: C[M, N] = A[M, K] · B[K, N]
//
// Activations are row-major [B, T, D] (batch first inside the C++ core; the Python layer transposes
// sequence-first inputs). Linear weights are [out, in] as in PyTorch: y = x · Wᵀ + b.
#pragma once

#include <cstdint>

namespace cpuformer {
using Index = std::int64_t;
}  // namespace cpuformer
