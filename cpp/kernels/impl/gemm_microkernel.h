// The GEMM register-tile kernel, written once over a Vec trait and instantiated per ISA with its tile
// (BLIS's micro-kernel: an M × NR block of C lives in M · NR / W accumulators; each step loads one row
// of B as NR / W vectors and broadcasts one element of A per row). See kernel_table.h for the contract.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "core/dims.h"
#include "core/force_inline.h"
#include "kernels/impl/vec_math.h"
#include "kernels/kernel_table.h"

namespace cpuformer::impl {

// Calls f(std::integral_constant<int, i>{}) for i = 0 .. N - 1, in order (a loop whose index is a
// compile-time constant in the body).
template <class F, int... I>
inline void for_each_index(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}

// Cache lines in one row of an nr-column panel (what a prefetch of that row touches).
template <int NR>
constexpr int kPanelRowLines = NR * 4 >= 64 ? NR * 4 / 64 : 1;

// Up to 14 rows of a row-major A tile, column p, reached from two pointers (rows 0 and 7, advanced a
// column per k step) and three index registers (1, 3 and 5 rows in bytes): every row is one
// base + index · scale addressing mode. Left to itself the compiler kept a pointer per row, which with
// the loop's other values outnumbered the registers: 11- to 14-row tiles reloaded pointers from the
// stack on every k step.
template <class V>
class RowMajorA {
 public:
  RowMajorA(const float* a, Index lda)
      : r0_(a), r7_(a + 7 * lda), l1_(lda * 4), l3_(3 * lda * 4), l5_(5 * lda * 4) {}
  void next_column() {
    ++r0_;
    ++r7_;
  }
  template <int I>
  typename V::Reg row() const {
    static_assert(I >= 0 && I < 14, "rows past 13: extend the mapping below (no table's tile is taller)");
    if constexpr (I == 0) return V::set1(*r0_);
    if constexpr (I == 7) return V::set1(*r7_);
    if constexpr (I == 1) return V::template broadcast_indexed<1>(r0_, l1_);
    if constexpr (I == 2) return V::template broadcast_indexed<2>(r0_, l1_);
    if constexpr (I == 3) return V::template broadcast_indexed<1>(r0_, l3_);
    if constexpr (I == 4) return V::template broadcast_indexed<4>(r0_, l1_);
    if constexpr (I == 5) return V::template broadcast_indexed<1>(r0_, l5_);
    if constexpr (I == 6) return V::template broadcast_indexed<2>(r0_, l3_);
    if constexpr (I == 8) return V::template broadcast_indexed<8>(r0_, l1_);
    if constexpr (I == 9) return V::template broadcast_indexed<2>(r7_, l1_);
    if constexpr (I == 10) return V::template broadcast_indexed<2>(r0_, l5_);
    if constexpr (I == 11) return V::template broadcast_indexed<4>(r7_, l1_);
    if constexpr (I == 12) return V::template broadcast_indexed<4>(r0_, l3_);
    if constexpr (I == 13) return V::template broadcast_indexed<2>(r7_, l3_);
  }

 private:
  const float* r0_;
  const float* r7_;
  Index l1_, l3_, l5_;
};

template <class V, int MR, int NR>
struct GemmMicroKernels {
  static constexpr int W = V::kWidth;
  static constexpr int NV = NR / W;
  static_assert(NR % W == 0, "nr must be a multiple of the vector width");
  static_assert(MR <= kMaxTileRows, "mr too large");

  // The next C tile (PrefetchRows::c) is prefetched over the last kCWindow k steps, close to its use:
  // spread over all k steps instead, 4096 × 2048 × 512 and 1024^3 ran ~1% slower (the B panel streams
  // through L1 in between).
  static constexpr Index kCWindow = 256;

  // kPackB: also writes the B rows it reads to b_out as one packed panel (p · NR + c, zero past n).
  template <int M, bool kPackedA, bool kFullN, bool kPackB = false>
  static inline void tile(Index k, const float* a, Index lda, const float* b, Index ldb, const PrefetchRows& next,
                          float* c, Index ldc, int n, bool accumulate, const TileEpilogue* epilogue,
                          float* b_out = nullptr) {
    using R = typename V::Reg;
    using TM = typename V::TailMask;
    R acc[M][NV];
    TM mask[NV];
    if constexpr (!kFullN) {
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) mask[v] = V::tail_mask(n - v * W);
    }
    (void)n;
    (void)mask;
    if (accumulate) {
#pragma GCC unroll 16
      for (int i = 0; i < M; ++i)
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v)
          acc[i][v] = kFullN ? V::loadu(c + i * ldc + v * W) : V::load_mask(c + i * ldc + v * W, mask[v]);
    } else {
#pragma GCC unroll 16
      for (int i = 0; i < M; ++i)
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) acc[i][v] = V::zero();
    }
    RowMajorA<V> rows(a, kPackedA ? 0 : lda);
    (void)rows;
    const float* pf = next.b;
    Index pf_acc = 0;
    const float* run = next.run;
    Index run_acc = 0;
    const float* cpf = next.c;
    // Bresenham over the last c_window steps: c_acc stays negative until then.
    const Index c_window = k < kCWindow ? k : kCWindow;
    Index c_acc = next.c_rows * (c_window - k);
    for (Index p = 0; p < k; ++p) {
      R bv[NV];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) bv[v] = kFullN ? V::loadu(b + v * W) : V::load_mask(b + v * W, mask[v]);
      if constexpr (kPackB) {
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) V::storeu(b_out + p * NR + v * W, bv[v]);
      }
      if constexpr (kPackedA) {
#pragma GCC unroll 16
        for (int i = 0; i < M; ++i) {
          const R ai = V::set1(a[p * MR + i]);
#pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) acc[i][v] = V::fmadd(ai, bv[v], acc[i][v]);
        }
      } else {
        for_each_index(
            [&](auto row) {
              const R ai = rows.template row<decltype(row)::value>();
#pragma GCC unroll 16
              for (int v = 0; v < NV; ++v) acc[row][v] = V::fmadd(ai, bv[v], acc[row][v]);
            },
            std::make_integer_sequence<int, M>{});
        rows.next_column();
      }
      // Bresenham over the k steps: next.rows of them prefetch one row of the next tile each.
      constexpr int kLines = kPanelRowLines<NR>;
      pf_acc += next.rows;
      if (pf_acc >= k) {
        pf_acc -= k;
#pragma GCC unroll 4
        for (int l = 0; l < kLines; ++l) __builtin_prefetch(pf + l * 16, 0, 2);
        pf += next.ld;
      }
      if constexpr (kPackedA) {  // (row-major A tiles are small-M products: no pack to prepare for)
        run_acc += next.run_lines;
        if (run_acc >= k) {
          run_acc -= k;
          __builtin_prefetch(run, 0, 2);
          run += 16;
        }
        c_acc += next.c_rows;
        if (c_acc >= c_window) {
          c_acc -= c_window;
#pragma GCC unroll 4
          for (int l = 0; l < kLines; ++l) __builtin_prefetch(cpf + l * 16, 1, 3);
          cpf += next.c_ld;
        }
      }
      b += ldb;
    }
    if (epilogue) {
      if (epilogue->row_scale) {
#pragma GCC unroll 16
        for (int i = 0; i < M; ++i) {
          const R f = V::set1(epilogue->row_scale[i]);
#pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) acc[i][v] = V::mul(acc[i][v], f);
        }
      }
      if (epilogue->bias) {
        R bias[NV];
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v)
          bias[v] = kFullN ? V::loadu(epilogue->bias + v * W) : V::load_mask(epilogue->bias + v * W, mask[v]);
#pragma GCC unroll 16
        for (int i = 0; i < M; ++i)
#pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) acc[i][v] = V::add(acc[i][v], bias[v]);
      }
      // One branch per activation, each applying it to the whole tile (GELU in registers here, not in
      // a pass over the stored tile, saved 14 row calls and a reload per tile: 1% of a MiniLM encode).
      auto each = [&](auto f) {
#pragma GCC unroll 16
        for (int i = 0; i < M; ++i)
#pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) acc[i][v] = f(acc[i][v]);
      };
      switch (epilogue->activation) {
        case Activation::kNone: break;
        case Activation::kRelu: each([](R x) { return relu<V>(x); }); break;
        case Activation::kGeluErf: each([](R x) { return gelu_erf<V>(x); }); break;
        case Activation::kGeluTanh: each([](R x) { return gelu_tanh<V>(x); }); break;
        case Activation::kSilu: each([](R x) { return silu<V>(x); }); break;
      }
    }
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) {
        if constexpr (kFullN)
          V::storeu(c + i * ldc + v * W, acc[i][v]);
        else
          V::store_mask(c + i * ldc + v * W, acc[i][v], mask[v]);
      }
  }

  template <int M, bool kPackedA>
  static void kernel(Index k, const float* a, Index lda, const float* b, Index ldb, const PrefetchRows& next, float* c,
                     Index ldc, int n, bool accumulate, const TileEpilogue* epilogue) {
    if (n == NR)
      tile<M, kPackedA, true>(k, a, lda, b, ldb, next, c, ldc, n, accumulate, epilogue);
    else
      tile<M, kPackedA, false>(k, a, lda, b, ldb, next, c, ldc, n, accumulate, epilogue);
  }

  template <int M>
  static void kernel_packing_b(Index k, const float* a, Index lda, const float* b, Index ldb, const PrefetchRows& next,
                               float* c, Index ldc, int n, bool accumulate, const TileEpilogue* epilogue,
                               float* b_out) {
    if (n == NR)
      tile<M, false, true, true>(k, a, lda, b, ldb, next, c, ldc, n, accumulate, epilogue, b_out);
    else
      tile<M, false, false, true>(k, a, lda, b, ldb, next, c, ldc, n, accumulate, epilogue, b_out);
  }

  template <std::size_t... I>
  static constexpr auto make_packing_b(std::index_sequence<I...>) {
    struct Array {
      GemmPackingMicroKernel fn[kMaxTileRows];
    };
    return Array{{(I < MR ? &kernel_packing_b<(I < MR ? int(I) + 1 : 1)> : nullptr)...}};
  }

  template <bool kPackedA, std::size_t... I>
  static constexpr auto make(std::index_sequence<I...>) {
    struct Array {
      GemmMicroKernel fn[kMaxTileRows];
    };
    return Array{{(I < MR ? &kernel<(I < MR ? int(I) + 1 : 1), kPackedA> : nullptr)...}};
  }
};

// Panels per pass of gemm_rows_panels for M rows: M · G · NR / W accumulators, as many FMA chains as
// fit the register file beside the B vectors and broadcasts (a one-row tile alone keeps only NR / W
// chains in flight and waits on FMA latency; two and three rows, one panel per pass, read an L2-resident
// weight at 75% and 64% of one row's bytes per second). 24 accumulators spilled (6 rows × 2 panels ran
// at half speed).
template <class V, int NR, int M>
constexpr int rows_panels_group() {
  constexpr int NV = NR / V::kWidth;
  // Accumulators: of 32 zmm registers, of 16 ymm; the scalar path's are plain floats.
  constexpr int budget = V::kWidth == 16 ? 20 : V::kWidth == 8 ? 8 : 16;
  constexpr int g = budget / (M * NV);
  return M == 1 ? 4 : g < 1 ? 1 : g > 4 ? 4 : g;
}

// G whole panels of M rows in one pass over p (see gemm_rows_panels). Several rows prefetch each panel
// kAhead rows ahead: G panels read side by side from memory were more streams than the hardware
// prefetcher kept up with (4 × 512 × 32000 ran 16% slower than one panel at a time, 8% faster with this);
// one row, whose passes are load-bound, lost 8-15% to the prefetches against an L2-resident B.
template <class V, int NR, int M, int G>
inline void rows_panels_pass(Index k, const float* a, Index lda, const float* b, Index ldb, Index panel_stride,
                             float* c, Index ldc, bool accumulate) {
  constexpr Index kAhead = 16;
  constexpr int W = V::kWidth;
  constexpr int NV = NR / W;
  using R = typename V::Reg;
  R acc[M][G * NV];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 16
    for (int v = 0; v < G * NV; ++v)
      acc[i][v] = accumulate ? V::loadu(c + i * ldc + (v / NV) * NR + (v % NV) * W) : V::zero();
  for (Index p = 0; p < k; ++p) {
    R ai[M];
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) ai[i] = V::set1(a[i * lda + p]);
    if constexpr (M > 1) {
      constexpr int kLines = kPanelRowLines<NR>;
#pragma GCC unroll 16
      for (int l = 0; l < G * kLines; ++l)
        __builtin_prefetch(b + (l / kLines) * panel_stride + (p + kAhead) * ldb + (l % kLines) * 16, 0, 3);
    }
#pragma GCC unroll 16
    for (int v = 0; v < G * NV; ++v) {
      const R bv = V::loadu(b + (v / NV) * panel_stride + p * ldb + (v % NV) * W);
#pragma GCC unroll 4
      for (int i = 0; i < M; ++i) acc[i][v] = V::fmadd(ai[i], bv, acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 16
    for (int v = 0; v < G * NV; ++v) V::storeu(c + i * ldc + (v / NV) * NR + (v % NV) * W, acc[i][v]);
}

template <class V, int NR, int M>
void gemm_rows_panels_m(Index k, const float* a, Index lda, const float* b, Index ldb, Index panel_stride, float* c,
                        Index ldc, Index n, bool accumulate) {
  constexpr int W = V::kWidth;
  constexpr int NV = NR / W;
  constexpr int G = rows_panels_group<V, NR, M>();
  using R = typename V::Reg;
  using TM = typename V::TailMask;
  const Index whole = n / NR;
  Index q = 0;
  for (; q + G <= whole; q += G)
    rows_panels_pass<V, NR, M, G>(k, a, lda, b + q * panel_stride, ldb, panel_stride, c + q * NR, ldc, accumulate);
  for (; q < whole; ++q)
    rows_panels_pass<V, NR, M, 1>(k, a, lda, b + q * panel_stride, ldb, panel_stride, c + q * NR, ldc, accumulate);
  const int rest = static_cast<int>(n - whole * NR);
  if (rest == 0) return;
  // The last, partial panel: masked loads and stores.
  const float* bq = b + whole * panel_stride;
  float* cq = c + whole * NR;
  TM mask[NV];
  R acc[M][NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) mask[v] = V::tail_mask(rest - v * W);
#pragma GCC unroll 4
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[i][v] = accumulate ? V::load_mask(cq + i * ldc + v * W, mask[v]) : V::zero();
  for (Index p = 0; p < k; ++p) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const R bv = V::load_mask(bq + p * ldb + v * W, mask[v]);
#pragma GCC unroll 4
      for (int i = 0; i < M; ++i) acc[i][v] = V::fmadd(V::set1(a[i * lda + p]), bv, acc[i][v]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) V::store_mask(cq + i * ldc + v * W, acc[i][v], mask[v]);
}

// See KernelTable::gemm_rows_panels.
template <class V, int NR>
void gemm_rows_panels(Index m, Index k, const float* a, Index lda, const float* b, Index ldb, Index panel_stride,
                      float* c, Index ldc, Index n, bool accumulate) {
  for (Index i = 0; i < m; i += 5) {
    const float* ai = a + i * lda;
    float* ci = c + i * ldc;
    switch (m - i < 5 ? m - i : 5) {
      case 1: gemm_rows_panels_m<V, NR, 1>(k, ai, lda, b, ldb, panel_stride, ci, ldc, n, accumulate); break;
      case 2: gemm_rows_panels_m<V, NR, 2>(k, ai, lda, b, ldb, panel_stride, ci, ldc, n, accumulate); break;
      case 3: gemm_rows_panels_m<V, NR, 3>(k, ai, lda, b, ldb, panel_stride, ci, ldc, n, accumulate); break;
      case 4: gemm_rows_panels_m<V, NR, 4>(k, ai, lda, b, ldb, panel_stride, ci, ldc, n, accumulate); break;
      default: gemm_rows_panels_m<V, NR, 5>(k, ai, lda, b, ldb, panel_stride, ci, ldc, n, accumulate); break;
    }
  }
}

// See KernelTable::gemm_rows_stream. C is accumulated in place, kChunk columns at a time, over B's rows
// in order: each step reads a contiguous stretch of kSteps rows of B and takes each C vector through
// kSteps FMAs between its load and its store. (One row per step, C's loads and stores outnumbered B's
// loads M to 1: 3 × 512 × 2048 ran at 77% of PyTorch's speed.) A chunk's M rows of C take 128 KiB, in L2:
// chunks of 2048 columns (C in L1) restarted B's row streams every 8 KiB, and 1 × 512 × 32000 read B
// from memory at 60% of the speed.
template <class V, int M>
void gemm_rows_stream_m(Index k, const float* a, Index lda, const float* b, Index ldb, float* c, Index ldc,
                        Index n) {
  constexpr int W = V::kWidth;
  constexpr Index kChunk = 32768 / M / 64 * 64;  // (whole cache lines, so every chunk keeps B's alignment)
  // One row takes 8 rows of B per step, its C vector loaded and stored once per 8 FMAs (1 × 512 × 2048
  // ran 4% faster than with 4); more rows keep 4, their broadcasts holding M · kSteps registers.
  constexpr int kSteps = M == 1 ? 8 : 4;
  using R = typename V::Reg;
  using TM = typename V::TailMask;
  // c[j .. j + W) of every row += as[i][s] · B[p + s, j ..] for s < S, in ascending p; as holds the pass's
  // broadcasts of A, made once per pass, not once per vector of C. (Both lambdas are forced inline: an
  // outlined pass reloaded the captured ldb through two pointers on every vector.)
  auto update = [&](auto steps, const R (&as)[M][kSteps], const float* bp, float* cj, auto full,
                    TM tail) CPUFORMER_FORCE_INLINE {
    constexpr int S = decltype(steps)::value;
    R bv[S];
#pragma GCC unroll 16
    for (int s = 0; s < S; ++s) bv[s] = full ? V::loadu(bp + s * ldb) : V::load_mask(bp + s * ldb, tail);
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      float* cij = cj + i * ldc;
      R acc = full ? V::loadu(cij) : V::load_mask(cij, tail);
#pragma GCC unroll 16
      for (int s = 0; s < S; ++s) acc = V::fmadd(as[i][s], bv[s], acc);
      if (full)
        V::storeu(cij, acc);
      else
        V::store_mask(cij, acc, tail);
    }
  };
  // B's loads aligned to whole vectors where its rows all share one alignment: the columns before the
  // first boundary go first, masked. (NumPy's large arrays start 16 bytes past one; every vector load
  // then straddled two cache lines, and 1 × 512 × 2048 ran 8-15% slower.)
  const auto b_misalign = static_cast<Index>(reinterpret_cast<std::uintptr_t>(b) / sizeof(float) % W);
  const Index align_head = ldb % W == 0 && b_misalign != 0 ? W - b_misalign : 0;
  for (Index j0 = 0; j0 < n; j0 += kChunk) {
    const Index cols = n - j0 < kChunk ? n - j0 : kChunk;
    const Index head = cols < align_head ? cols : align_head;
    const Index full = head + (cols - head) / W * W;
    const int rest = static_cast<int>(cols - full);
    const auto head_mask = V::tail_mask(static_cast<int>(head));
    const auto tail = V::tail_mask(rest);
    for (int i = 0; i < M; ++i) {
      float* ci = c + i * ldc + j0;
      if (head > 0) V::store_mask(ci, V::zero(), head_mask);
      for (Index j = head; j < full; j += W) V::storeu(ci + j, V::zero());
      if (rest > 0) V::store_mask(ci + full, V::zero(), tail);
    }
    auto pass = [&](auto steps, Index p) CPUFORMER_FORCE_INLINE {
      constexpr int S = decltype(steps)::value;
      R as[M][kSteps];
#pragma GCC unroll 4
      for (int i = 0; i < M; ++i)
#pragma GCC unroll 16
        for (int s = 0; s < S; ++s) as[i][s] = V::set1(a[i * lda + p + s]);
      const float* bp = b + p * ldb + j0;
      if (head > 0) update(steps, as, bp, c + j0, std::false_type{}, head_mask);
      for (Index j = head; j < full; j += W) update(steps, as, bp + j, c + j0 + j, std::true_type{}, tail);
      if (rest > 0) update(steps, as, bp + full, c + j0 + full, std::false_type{}, tail);
    };
    Index p = 0;
    for (; p + kSteps <= k; p += kSteps) pass(std::integral_constant<int, kSteps>{}, p);
    for (; p < k; ++p) pass(std::integral_constant<int, 1>{}, p);
  }
}

template <class V>
void gemm_rows_stream(Index m, Index k, const float* a, Index lda, const float* b, Index ldb, float* c, Index ldc,
                      Index n) {
  switch (m) {
    case 1: return gemm_rows_stream_m<V, 1>(k, a, lda, b, ldb, c, ldc, n);
    case 2: return gemm_rows_stream_m<V, 2>(k, a, lda, b, ldb, c, ldc, n);
    case 3: return gemm_rows_stream_m<V, 3>(k, a, lda, b, ldb, c, ldc, n);
    default:
      for (Index i = 0; i < m; i += 3)
        gemm_rows_stream<V>(m - i < 3 ? m - i : 3, k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, n);
  }
}

// Packs rows [0, m) of row-major A into mr-row, k-major panels; rows past m are zero. Works in W × W
// blocks (W rows × W columns of A, loaded, transposed in registers, stored as W k-steps of up to W
// rows): a scalar element-by-element copy costs about as much as 6% of a large GEMM, this a tenth of it.
template <class V, int MR>
void pack_a(const float* a, Index lda, Index m, Index k, float* dst) {
  constexpr int W = V::kWidth;
  using R = typename V::Reg;
  for (Index q = 0; q < m; q += MR) {
    const int rows = static_cast<int>(m - q < MR ? m - q : MR);
    float* panel = dst + q * k;
    for (int r0 = 0; r0 < MR; r0 += W) {
      const int group = MR - r0 < W ? MR - r0 : W;  // panel rows this block writes
      const auto store_rows = V::tail_mask(group);
      for (Index p0 = 0; p0 < k; p0 += W) {
        const int steps = static_cast<int>(k - p0 < W ? k - p0 : W);
        const auto load_cols = V::tail_mask(steps);
        R block[W];
        for (int i = 0; i < W; ++i)
          block[i] = r0 + i < rows ? V::load_mask(a + (q + r0 + i) * lda + p0, load_cols) : V::zero();
        V::transpose(block);
        for (int p = 0; p < steps; ++p) V::store_mask(panel + (p0 + p) * MR + r0, block[p], store_rows);
      }
    }
  }
}

// Packs k rows × n columns of row-major B (row stride ldb) into nr-column panels `panel_stride` floats
// apart, the layout the micro-kernels read: element (p, c) of panel q at dst[q · panel_stride + p · nr + c]
// = b[p · ldb + q · nr + c]; columns past n are zero. Vector copies, a row of every panel per step (B's
// rows are read in order, whole).
template <class V, int NR>
void pack_b_rows(const float* b, Index ldb, Index k, Index n, float* dst, Index panel_stride) {
  constexpr int W = V::kWidth;
  static_assert(NR % W == 0, "nr must be a multiple of the vector width");
  const Index panels = (n + NR - 1) / NR;
  for (Index p = 0; p < k; ++p) {
    const float* src = b + p * ldb;
    for (Index q = 0; q < panels; ++q) {
      float* out = dst + q * panel_stride + p * NR;
      const Index c0 = q * NR;
      if (c0 + NR <= n) {
#pragma GCC unroll 16
        for (int v = 0; v < NR / W; ++v) V::storeu(out + v * W, V::loadu(src + c0 + v * W));
      } else {
        for (int v = 0; v < NR / W; ++v)
          V::storeu(out + v * W, V::load_mask(src + c0 + v * W, V::tail_mask(static_cast<int>(n - c0 - v * W))));
      }
    }
  }
}

// Packs the first k columns of n rows of w (row stride ldw) as B = wᵀ in nr-column panels, the layout
// the micro-kernels read: element (p, c) of panel q at dst[q · nr · k + p · nr + c] = w[(q · nr + c) · ldw + p];
// columns past n are zero. Attention's keys (Kᵀ) and PyTorch-layout weights [N, K] pack this way; W × W
// blocks are transposed in registers.
template <class V, int NR>
void pack_b_transposed(const float* w, Index ldw, Index n, Index k, float* dst) {
  constexpr int W = V::kWidth;
  static_assert(NR % W == 0, "nr must be a multiple of the vector width");
  using R = typename V::Reg;
  for (Index q0 = 0; q0 < n; q0 += NR) {
    float* panel = dst + q0 * k;
    for (int c0 = 0; c0 < NR; c0 += W) {
      const Index first = q0 + c0;  // row of w that becomes column c0 of the panel
      for (Index p0 = 0; p0 < k; p0 += W) {
        const int steps = static_cast<int>(k - p0 < W ? k - p0 : W);
        const auto load_cols = V::tail_mask(steps);
        R block[W];
        for (int i = 0; i < W; ++i)
          block[i] = first + i < n ? V::load_mask(w + (first + i) * ldw + p0, load_cols) : V::zero();
        V::transpose(block);
        for (int p = 0; p < steps; ++p) V::storeu(panel + (p0 + p) * NR + c0, block[p]);
      }
    }
  }
}

}  // namespace cpuformer::impl
