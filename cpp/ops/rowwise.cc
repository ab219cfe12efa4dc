#include "ops/rowwise.h"

#include <algorithm>

#include "core/parallel.h"
#include "kernels/registry.h"

namespace cpuformer {
namespace {

// Below ~64 K elements (tens of microseconds of work) a row-wise op stays on the calling thread: waking
// another costs more than it saves.
int threads_for(Index rows, Index n, int threads) {
  const Index work = rows * std::max<Index>(n, 1);
  if (work < 64 * 1024) return 1;
  return threads;
}

// Row-wise ops fetch the next row (of each input) while they compute this one, when that is at most
// kPrefetchLines cache lines: rows come from L3 or memory (a GEMM's output, the residual stream, each
// larger than L2) and the first pass over a row waited on its lines. layer_norm 4096 × 512 with a
// residual ran 8% faster, 8192 × 512 15%; past 64 lines (4096 × 1024 with a residual) the burst of
// prefetches stalled on full fill buffers and lost 1-4%, so longer rows are left to the hardware.
constexpr Index kPrefetchLines = 64;

bool prefetch_rows(Index n, int inputs) { return inputs * ((n + 15) / 16) <= kPrefetchLines; }

void prefetch_row(const float* row, Index n) {
  for (Index j = 0; j < n; j += 16) __builtin_prefetch(row + j, 0, 3);
}

}  // namespace

void softmax_rows(const float* x, float* y, Index rows, Index n, int threads) {
  if (rows == 0 || n == 0) return;
  const KernelTable& kt = active_kernels();
  const bool prefetch = prefetch_rows(n, 1);
  parallel_for(rows, [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r) {
      if (prefetch && r + 1 < r1) prefetch_row(x + (r + 1) * n, n);
      kt.softmax_row(x + r * n, y + r * n, n);
    }
  }, threads_for(rows, n, threads));
}

void log_softmax_rows(const float* x, float* y, Index rows, Index n, int threads) {
  if (rows == 0 || n == 0) return;
  const KernelTable& kt = active_kernels();
  const bool prefetch = prefetch_rows(n, 1);
  parallel_for(rows, [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r) {
      if (prefetch && r + 1 < r1) prefetch_row(x + (r + 1) * n, n);
      kt.log_softmax_row(x + r * n, y + r * n, n);
    }
  }, threads_for(rows, n, threads));
}

void argmax_rows(const float* x, Index rows, Index n, Index* out, int threads) {
  if (rows == 0) return;
  const KernelTable& kt = active_kernels();
  parallel_for(rows, [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r) out[r] = n > 0 ? kt.argmax_row(x + r * n, n) : 0;
  }, threads_for(rows, n, threads));
}

void layer_norm_rows(const float* x, const float* residual, const float* gamma, const float* beta, float eps,
                     float* y, Index rows, Index n, int threads) {
  if (rows == 0 || n == 0) return;
  const KernelTable& kt = active_kernels();
  const bool prefetch = prefetch_rows(n, residual ? 2 : 1);
  parallel_for(rows, [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r) {
      if (prefetch && r + 1 < r1) {
        prefetch_row(x + (r + 1) * n, n);
        if (residual) prefetch_row(residual + (r + 1) * n, n);
      }
      kt.layer_norm_row(x + r * n, residual ? residual + r * n : nullptr, gamma, beta, eps, y + r * n, n);
    }
  }, threads_for(rows, n, threads));
}

void bias_activation_rows(const float* x, const float* bias, Activation act, float* y, Index rows, Index n,
                          int threads) {
  if (rows == 0 || n == 0) return;
  const KernelTable& kt = active_kernels();
  parallel_for(rows, [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r) kt.bias_activation_row(x + r * n, bias, act, y + r * n, n);
  }, threads_for(rows, n, threads));
}

void add_rows(const float* x, float* y, Index rows, Index n, int threads) {
  if (rows == 0 || n == 0) return;
  parallel_for(rows, [&](Index r0, Index r1) {
    for (Index i = r0 * n; i < r1 * n; ++i) y[i] += x[i];
  }, threads_for(rows, n, threads));
}

}  // namespace cpuformer
