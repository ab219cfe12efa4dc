// The contract between the ISA-specific kernel units and everything above them: one constant table of
// function pointers per ISA, holding the GEMM micro-kernels together with their tile and block sizes and
// the row-wise kernels. Kernels see raw pointers and sizes only, never tensors, and never allocate.
//
// GEMM micro-kernel contract (C[m × n] (+)= A[m × k] · B[k × n], row-major C with leading dimension ldc):
//   * m in [1, mr] selects the entry (gemm_packed_a[m - 1] / gemm_rowmajor_a[m - 1]); n in [1, nr].
//   * A packed: k-major panels, element (i, p) at a[p * mr + i] (see pack_a); A row-major: a[i * lda + p].
//   * B: row p of the tile at b + p * ldb, nr consecutive floats (a packed panel has ldb == nr and is
//     zero-padded past n; a raw row-major B has ldb == N and is read with masked loads when n < nr).
//   * next: rows of the B tile the caller will need next, prefetched towards L2 while this one is
//     computed, spread evenly over the k steps, and (packed A only) the next C tile's rows, spread over
//     the last k steps (PrefetchRows); never dereferenced.
//   * epilogue (null: none): a per-row scale, bias add and activation applied in registers before the
//     store (TileEpilogue); the bits equal separate passes over C afterwards (one rounding per step either way).
//   * accumulate == false: C = A·B; true: C = C + A·B. Every element is one FMA chain over p in
//     ascending order, so the result of an element does not depend on m, n, the tile it falls in, the
//     blocking, or the thread count: the basis of batch- and thread-invariant results.
#pragma once

#include <cstdint>

#include "core/dims.h"
#include "cpu/isa.h"

namespace cpuformer {

enum class Activation : int { kNone = 0, kRelu = 1, kGeluErf = 2, kGeluTanh = 3, kSilu = 4 };

constexpr int kMaxTileRows = 16;

// What a micro-kernel applies to its tile before storing it, on the last K block: C = C · row_scale[i]
// for row i, then C + bias, then the activation (the functions of bias_activation_row, so the bits equal
// a separate pass over the stored tile; ReLU keeps NaN).
struct TileEpilogue {
  const float* bias;  // [n] for this tile's columns, or null
  Activation activation;
  const float* row_scale = nullptr;  // [m] for this tile's rows, or null (attention's 1 / softmax sum)
};

// Rows [0, rows) of a B tile (row p at b + p · ld), to be prefetched by a micro-kernel while it computes,
// at most one row per k step and evenly spread. A panel shared by several row tiles is split among them
// (see gemm.cc), so it arrives at the pace of the whole block's compute, not the first tile's.
// Also a contiguous run of cache lines (any data: the next block of A that the GEMM will pack), one line
// on each of run_lines of the k steps, evenly spread.
struct PrefetchRows {
  const float* b = nullptr;
  Index ld = 0;
  Index rows = 0;
  const float* run = nullptr;
  Index run_lines = 0;
  // Rows [0, c_rows) of the next C tile (nr floats each, c_ld apart), for writing: one row on each of
  // c_rows of the last k steps (kernels with a packed A only).
  const float* c = nullptr;
  Index c_ld = 0;
  Index c_rows = 0;
};

using GemmMicroKernel = void (*)(Index k, const float* a, Index lda, const float* b, Index ldb,
                                 const PrefetchRows& next, float* c, Index ldc, int n, bool accumulate,
                                 const TileEpilogue* epilogue);

// A row-major-A micro-kernel that reads a raw (unpacked) B strip and also writes it to b_out as a packed
// panel (element (p, c) at b_out[p · nr + c], zero past n), so the other row tiles of a small-M product
// reuse the copy from cache instead of B being packed in a pass of its own.
using GemmPackingMicroKernel = void (*)(Index k, const float* a, Index lda, const float* b, Index ldb,
                                        const PrefetchRows& next, float* c, Index ldc, int n, bool accumulate,
                                        const TileEpilogue* epilogue, float* b_out);

// mb is a row count for chunks of A up to kRowBlockDepth deep; a deeper chunk packs proportionally fewer
// rows (rounded up to mr), so it keeps its size in bytes (see ops/gemm.cc).
constexpr int kRowBlockDepth = 512;
struct GemmBlocking {
  int mr;  // rows of the register tile
  int nr;  // columns of the register tile (a multiple of the vector width)
  int kc;  // depth of a packed block
  int mc;  // rows of packed A per block (mc × depth stays in L2 while the panels of a B block pass)
  int nc;  // panels of B per block (depth × nc · nr stays in L2 while all row blocks pass)
  int mb;  // rows of A packed at once (a multiple of mc): reuses each B block mb / mr times
};

struct KernelTable {
  Isa isa;
  const char* name;
  int vector_width;  // floats per register
  GemmBlocking gemm;
  GemmMicroKernel gemm_packed_a[kMaxTileRows];
  GemmMicroKernel gemm_rowmajor_a[kMaxTileRows];
  GemmPackingMicroKernel gemm_rowmajor_a_packing_b[kMaxTileRows];

  // A few rows of A (m, lda apart) against B's panels, several panels per pass: c[i · ldc + j · nr + x]
  // (+)= Σ_p a[i · lda + p] · b[j · panel_stride + p · ldb + x] for the first n columns (panels =
  // ceil(n / nr); the last one may be partial and is read with masked loads). Every element is the
  // micro-kernels' FMA chain over p in ascending order (same bits as gemm_rowmajor_a panel by panel);
  // several panels keep more chains in flight, where a tile of one to five rows alone waits on FMA
  // latency. No epilogue.
  void (*gemm_rows_panels)(Index m, Index k, const float* a, Index lda, const float* b, Index ldb,
                           Index panel_stride, float* c, Index ldc, Index n, bool accumulate);
  // C[m × n] = A[m × k] · B[k × n] for a few rows (decoding-sized m) with B raw and row-major: B is read
  // row after row (a sequential stream), C accumulated in place. Every element is the micro-kernels' FMA
  // chain over p in ascending order (same bits). No epilogue: the caller applies bias / activation.
  void (*gemm_rows_stream)(Index m, Index k, const float* a, Index lda, const float* b, Index ldb, float* c,
                           Index ldc, Index n);

  // Packs rows [0, m) × columns [0, k) of row-major A (leading dimension lda) into ceil(m / mr) panels of
  // mr × k, k-major (element (i, p) of panel q at dst[q * mr * k + p * mr + i]); rows past m are zero.
  void (*pack_a)(const float* a, Index lda, Index m, Index k, float* dst);
  // Packs k rows × n columns of row-major B (row stride ldb) into ceil(n / nr) panels of k × nr rows
  // panel_stride floats apart (element (p, c) of panel q at dst[q * panel_stride + p * nr + c]); columns
  // past n are zero. A stride longer than k * nr packs a strip of rows of taller panels.
  void (*pack_b_rows)(const float* b, Index ldb, Index k, Index n, float* dst, Index panel_stride);
  // Packs B = wᵀ from n rows of w (k floats each, row stride ldw) into ceil(n / nr) panels of k × nr,
  // k-major (element (p, c) of panel q at dst[q * nr * k + p * nr + c]); columns past n are zero.
  void (*pack_b_transposed)(const float* w, Index ldw, Index n, Index k, float* dst);

  // Row-wise kernels over n contiguous floats; y may alias x.
  // softmax: y = exp(x − max) / Σ; a row whose max is −inf gives all zeros.
  void (*softmax_row)(const float* x, float* y, Index n);
  // log_softmax: y = x − max − log Σ exp(x − max); a row whose max is −inf stays −inf.
  void (*log_softmax_row)(const float* x, float* y, Index n);
  // argmax: the first index of the largest value (ties: the lowest index, as torch.argmax); NaN entries
  // are ignored and a row of NaN gives 0.
  Index (*argmax_row)(const float* x, Index n);
  // layer_norm: h = x (+ residual); y = (h − mean) / sqrt(var + eps) · gamma + beta (two passes over h).
  void (*layer_norm_row)(const float* x, const float* residual, const float* gamma, const float* beta,
                         float eps, float* y, Index n);
  // y = act(x + bias); bias may be null.
  void (*bias_activation_row)(const float* x, const float* bias, Activation act, float* y, Index n);

  // Fused attention's online softmax (impl/attention_rows.h; used by ops/attention.cc). One step for one
  // query row over one key tile of n raw scores s (q·k): keys [0, n_valid) take part with
  // x = scale · s + mask (mask: n floats or null), keys past n_valid are masked. Raises *running_max to
  // the max over the valid x, overwrites s with P = exp(x − running_max) (0 for masked keys),
  // sets *running_sum = *running_sum · alpha + Σ P and returns alpha = exp(old max − new max), the factor
  // by which the caller rescales its output accumulator (exactly 1 when the max did not change). Start a
  // row with running_max = −inf and running_sum = 0; while no key has been valid, P = 0 and alpha = 1.
  float (*attention_softmax_tile)(float* s, Index n, Index n_valid, float scale, const float* mask,
                                  float* running_max, float* running_sum);
  // y = x · factor over n floats; y may alias x.
  void (*scale_row)(const float* x, float factor, float* y, Index n);
};

// Each ISA unit defines exactly one of these (only when compiled in).
namespace scalar { extern const KernelTable kKernelTable; }
namespace avx2 { extern const KernelTable kKernelTable; }
namespace avx512 { extern const KernelTable kKernelTable; }

}  // namespace cpuformer
