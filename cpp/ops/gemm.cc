#include "ops/gemm.h"

#include <algorithm>

#include "core/aligned_buffer.h"
#include "core/check.h"
#include "core/parallel.h"
#include "ops/row_tiles.h"

namespace cpuformer {
namespace {

// Up to this many rows, A is read in place (row-major micro-kernels) instead of being packed: its
// rows stay in L1/L2 across the N panels and packing would cost as much as it saves.
constexpr Index kSmallM = 64;

// Where one panel of B comes from: a PackedWeight or a raw row-major [K, N] matrix.
struct BSource {
  const PackedWeight* packed = nullptr;
  const float* raw = nullptr;
  Index ldb = 0;
  const float* panel(Index k0, Index j, int nr) const {
    return packed ? packed->panel(k0, j) : raw + k0 * ldb + j * nr;
  }
  Index stride(int nr) const { return packed ? nr : ldb; }
};

struct Problem {
  const KernelTable* kernels;
  const float* a;
  Index lda, m, n, k;
  BSource b;
  GemmOutput out;
};

// The output transform the micro-kernel applies to a tile on the last K block (bias, then activation,
// in registers before the store); null when there is nothing to apply.
const TileEpilogue* tile_epilogue(const Problem& pb, Index col0, TileEpilogue& storage) {
  if (pb.out.bias == nullptr && pb.out.activation == Activation::kNone) return nullptr;
  storage = TileEpilogue{pb.out.bias ? pb.out.bias + col0 : nullptr, pb.out.activation};
  return &storage;
}

// The whole output transform (bias, then activation) as a pass over a block of C, for the paths whose
// kernels apply none of it.
void bias_activation_block(const Problem& pb, Index row0, Index rows, Index col0, Index cols) {
  if (pb.out.bias == nullptr && pb.out.activation == Activation::kNone) return;
  const float* bias = pb.out.bias ? pb.out.bias + col0 : nullptr;
  for (Index i = 0; i < rows; ++i) {
    float* c = pb.out.c + (row0 + i) * pb.out.ldc + col0;
    pb.kernels->bias_activation_row(c, bias, pb.out.activation, c, cols);
  }
}

// Below this many rows a raw B is read in place: a copy would be used too few times to pay for itself.
constexpr Index kPackRawBMinRows = 4;
// K block of a raw B packed on the fly: a strip of kRawBlockK rows × 2 cache lines, prefetched two panels
// ahead, stays in L2 even when B's rows are a power-of-two number of bytes apart and map to few sets
// (with the packed-weight kc of 512, 8 KiB rows thrashed and 32×512×2048 ran at 50% of peak, not 67%).
constexpr Index kRawBlockK = 128;

// Up to kFewRows rows against a packed B (or one row against a raw one), several panels per pass
// (gemm_rows_panels); bias and activation after each chunk's last K block, while the chunk is in cache.
// A tile of so few rows keeps few FMA chains in flight and waits on their latency: one row ran
// 1 × 512 × 2048 against an L2-resident weight at 35 GFLOP/s on two threads one panel at a time, 48 with
// four panels per pass; 2 to 5 rows × 512 × 1024 at one thread and × 512 × 2048 at two ran 17-33% faster
// this way than one panel at a time. A raw B keeps its own paths for more rows: read in place in passes
// as long as a packed weight's K block, its rows a page or more apart, 4 × 512 × 32000 ran at half speed.
constexpr Index kFewRows = 5;
// Panels per call: a multiple of every pass width (1 to 4 panels), so only a thread's last call has a
// narrower pass.
constexpr Index kFewRowsChunk = 12;
void run_few_rows(const Problem& pb, Index row0, Index rows, Index j0, Index j1) {
  const GemmBlocking& g = pb.kernels->gemm;
  float* c = pb.out.c + row0 * pb.out.ldc;
  for (Index k0 = 0; k0 < pb.k; k0 += g.kc) {
    const Index kc_b = std::min<Index>(g.kc, pb.k - k0);
    const Index panel_stride = pb.b.packed ? kc_b * g.nr : g.nr;
    for (Index j = j0; j < j1; j += kFewRowsChunk) {
      const Index col0 = j * g.nr;
      const Index cols = std::min<Index>(std::min(j1, j + kFewRowsChunk) * g.nr, pb.n) - col0;
      pb.kernels->gemm_rows_panels(rows, kc_b, pb.a + row0 * pb.lda + k0, pb.lda, pb.b.panel(k0, j, g.nr),
                                   pb.b.stride(g.nr), panel_stride, c + col0, pb.out.ldc, cols, k0 > 0);
      if (k0 + kc_b >= pb.k) bias_activation_block(pb, row0, rows, col0, cols);
    }
  }
}

// Rows [row0, row0 + rows) × panels [j0, j1), A read in place. Loop order: K blocks, panels, row tiles.
// A raw B is packed on the fly, one panel at a time, by the first row tile (which computes from the raw
// strip and writes the packed copy as it goes, while prefetching a later raw strip); the other tiles
// read the copy from cache. Read in place by every tile instead, a strip of B whose rows are ldb floats
// apart falls in a few L1 sets (ldb a power of two) and is fetched again for every tile; packed in a
// separate pass, it cost a third of a small-M product.
void run_rowmajor_a(const Problem& pb, Index row0, Index rows, Index j0, Index j1) {
  const GemmBlocking& g = pb.kernels->gemm;
  if (rows <= kFewRows && (pb.b.packed || rows == 1)) return run_few_rows(pb, row0, rows, j0, j1);
  const bool raw_strips = pb.b.packed == nullptr && rows >= kPackRawBMinRows;
  // A single row tile reads the raw strip itself: a packed copy would have no reader, and its stores
  // (each landing 4 KiB-aliased on some in-flight load of A) cost 14 × 512 × 512 9%.
  const bool pack_b_here = raw_strips && rows > g.mr;
  thread_local AlignedBuffer b_scratch;
  float* b_panel = pack_b_here ? b_scratch.reserve(static_cast<std::size_t>(kRawBlockK * g.nr)) : nullptr;
  const Index kc = raw_strips ? kRawBlockK : g.kc;
  const Index ldb = pb.b.stride(g.nr);
  // The strip to prefetch: the next panel, or two panels ahead for a raw B (its rows come from L3 or
  // memory a line pair at a time, and the first tile's time alone does not cover them).
  const Index ahead = raw_strips ? 2 : 1;
  for (Index k0 = 0; k0 < pb.k; k0 += kc) {
    const Index kc_b = std::min<Index>(kc, pb.k - k0);
    const bool last = k0 + kc_b >= pb.k;
    for (Index j = j0; j < j1; ++j) {
      const Index col0 = j * g.nr;
      const int cols = static_cast<int>(std::min<Index>(g.nr, pb.n - col0));
      const float* bp = pb.b.panel(k0, j, g.nr);
      const Index next_j = j + ahead < j1 ? j + ahead : j + 1;
      const float* next = next_j < j1 ? pb.b.panel(k0, next_j, g.nr) : nullptr;
      TileEpilogue epi_storage;
      const TileEpilogue* epi = last ? tile_epilogue(pb, col0, epi_storage) : nullptr;
      // Row tiles of near-equal heights: a short last tile streams the panel from L2 at a byte or more
      // per FMA and waits on it. 32 rows ran 3% faster as 10 + 11 + 11 than as 14 + 14 + 4 (32 × 2048
      // × 512 4%), 16 rows 9% faster as 8 + 8 than as 14 + 2. (Before RowMajorA fixed the kernels' row
      // addressing, 10- to 13-row tiles spilled registers and lost instead.)
      for_row_tiles(rows, g.mr, [&](Index i0, int tile_rows) {
        float* c = pb.out.c + (row0 + i0) * pb.out.ldc + col0;
        const float* a = pb.a + (row0 + i0) * pb.lda + k0;
        const PrefetchRows share = prefetch_share(next, ldb, kc_b, i0, tile_rows, rows);
        if (pack_b_here && i0 == 0)
          pb.kernels->gemm_rowmajor_a_packing_b[tile_rows - 1](kc_b, a, pb.lda, bp, ldb, share, c, pb.out.ldc, cols,
                                                               k0 > 0, epi, b_panel);
        else if (pack_b_here)
          pb.kernels->gemm_rowmajor_a[tile_rows - 1](kc_b, a, pb.lda, b_panel, g.nr, share, c, pb.out.ldc, cols,
                                                     k0 > 0, epi);
        else
          pb.kernels->gemm_rowmajor_a[tile_rows - 1](kc_b, a, pb.lda, bp, ldb, share, c, pb.out.ldc, cols, k0 > 0, epi);
      });
    }
  }
}

// The rows of A that run_packed_a packs and multiplies by all of B at a time, for `panels` panels of B.
int row_chunk(const GemmBlocking& g, Index panels, Index k) {
  // A wide B (many column blocks) pays for a long A chunk that spills L2; a narrow one does not.
  Index mb = panels <= 4 * g.nc ? 2 * g.mc : g.mb;
  // A chunk deeper than kRowBlockDepth holds fewer rows: the same bytes of A in L2. (4096 × 2048 × 512
  // ran 2-3% slower in 196-row chunks of depth 2048 than in 56-row ones.)
  const Index depth = std::min<Index>(g.kc, k);
  if (depth > kRowBlockDepth) mb = (mb * kRowBlockDepth / depth + g.mr - 1) / g.mr * g.mr;
  return static_cast<int>(mb);
}

// Rows [row0, row0 + rows) × panels [j0, j1), A packed into this thread's scratch. BLIS's loop nest
// around the micro-kernel, with B already packed:
//   row chunks of ~mb rows   → K blocks of kc (pack the chunk's A block once: mb × kc floats)
//   → column blocks of nc    (the kc × nc block of B, read from L3 or memory once per row chunk, stays in L2)
//   → row blocks of mc       (the mc × kc block of packed A, from L2)
//   → panels of nr           (one kc × nr panel of B, reused by every mr-row tile of the block)
//   → tiles of mr rows.
// Without the nc level a wide B (the vocabulary projection) streams from memory once per mc rows and
// the product becomes bandwidth-bound; without the mb chunk A would be packed once per column block.
void run_packed_a(const Problem& pb, Index row0, Index rows, Index j0, Index j1) {
  GemmBlocking g = pb.kernels->gemm;
  g.mb = row_chunk(g, j1 - j0, pb.k);
  const Index depth = std::min<Index>(g.kc, pb.k);
  // Chunks of equal height, as many as the nearest whole number of mb-row chunks: each chunk streams
  // all of B, and 64 rows as 56 + 8 streamed it twice (5% slower than one 64-row chunk at depth 2048).
  const Index chunks = std::max<Index>(1, (rows + g.mb / 2) / g.mb);
  const Index chunk_rows = ((rows + chunks - 1) / chunks + g.mr - 1) / g.mr * g.mr;
  thread_local AlignedBuffer scratch;
  float* a_packed = scratch.reserve(static_cast<std::size_t>(chunk_rows * depth));
  for (Index r0 = 0; r0 < rows; r0 += chunk_rows) {
    const Index chunk = std::min<Index>(chunk_rows, rows - r0);
    for (Index k0 = 0; k0 < pb.k; k0 += g.kc) {
      const Index kc_b = std::min<Index>(g.kc, pb.k - k0);
      const bool last = k0 + kc_b >= pb.k;
      pb.kernels->pack_a(pb.a + (row0 + r0) * pb.lda + k0, pb.lda, chunk, kc_b, a_packed);
      // While this block computes, its micro-kernels prefetch the rows the next pack_a reads, when they
      // are one contiguous run (A's rows whole and adjacent): unhidden, those reads from L3 or memory
      // made pack_a ~5% of a 4096 × 512 × 512 product at one thread (4096 × 512 × 512 ran 1% faster).
      const Index next_rows = std::min<Index>(chunk_rows, rows - r0 - chunk);
      const bool ahead = next_rows > 0 && pb.k <= g.kc && pb.lda == pb.k;  // (one K block: this is the last)
      const float* run = ahead ? pb.a + (row0 + r0 + chunk) * pb.lda : nullptr;
      const Index run_lines = ahead ? (next_rows * pb.lda + 15) / 16 + 1 : 0;
      const Index calls = (chunk + g.mr - 1) / g.mr * (j1 - j0);
      Index call = 0;
      for (Index jc = j0; jc < j1; jc += g.nc) {
        const Index jc_end = std::min<Index>(j1, jc + g.nc);
        // Row blocks of near-equal tile counts: each block passes over every panel of B, and a sliver
        // block (112 rows as 98 + 14) paid a whole pass for one tile.
        const Index tiles = (chunk + g.mr - 1) / g.mr, blocks = (chunk + g.mc - 1) / g.mc;
        for (Index blk = 0; blk < blocks; ++blk) {
          const Index m0 = tiles * blk / blocks * g.mr;
          const Index mc_b = std::min<Index>(chunk, tiles * (blk + 1) / blocks * g.mr) - m0;
          for (Index j = jc; j < jc_end; ++j) {
            const Index col0 = j * g.nr;
            const int cols = static_cast<int>(std::min<Index>(g.nr, pb.n - col0));
            const float* bp = pb.b.panel(k0, j, g.nr);
            const float* next = j + 1 < j1 ? pb.b.panel(k0, j + 1, g.nr) : nullptr;
            TileEpilogue epi_storage;
            const TileEpilogue* epi = last ? tile_epilogue(pb, col0, epi_storage) : nullptr;
            for (Index i0 = m0; i0 < m0 + mc_b; i0 += g.mr) {
              const int tile_rows = static_cast<int>(std::min<Index>(g.mr, m0 + mc_b - i0));
              const Index row = row0 + r0 + i0;
              float* c = pb.out.c + row * pb.out.ldc + col0;
              PrefetchRows share = prefetch_share(next, g.nr, kc_b, i0 - m0, tile_rows, mc_b);
              // The next tile's C rows are ldc apart (a different page each for wide C), too scattered
              // for the hardware prefetcher, and the micro-kernel stores them all at once. Prefetched
              // here in one burst before the call, they stalled the driver on full fill buffers (1% of
              // an encoder's time); spread over the kernel's last k steps, the large products ran
              // 0-1.4% faster.
              share.c = c + g.mr * pb.out.ldc;
              share.c_ld = pb.out.ldc;
              share.c_rows = std::min<Index>(g.mr, m0 + mc_b - i0 - tile_rows);
              if (ahead) {  // this call's share of the run, at most a line per k step
                const Index first = run_lines * call / calls, end = run_lines * (call + 1) / calls;
                share.run = run + first * 16;
                share.run_lines = std::min<Index>(end - first, kc_b);
              }
              ++call;
              pb.kernels->gemm_packed_a[tile_rows - 1](kc_b, a_packed + i0 * kc_b, 0, bp, pb.b.stride(g.nr), share,
                                                       c, pb.out.ldc, cols, k0 > 0, epi);
            }
          }
        }
      }
    }
  }
}

void zero_k(const Problem& pb) {
  // K == 0: C = act(0 + bias).
  for (Index i = 0; i < pb.m; ++i) std::fill(pb.out.c + i * pb.out.ldc, pb.out.c + i * pb.out.ldc + pb.n, 0.0f);
  bias_activation_block(pb, 0, pb.m, 0, pb.n);
}

// A few rows against a raw B: B streams row after row (gemm_rows_stream), each thread over its own
// columns (a run of each row: whole 4 KiB pieces when N = 2048 is split in two); bias and activation after.
void run_rows_stream(const Problem& pb, int threads) {
  constexpr Index kAlign = 16;  // a whole cache line of each row per thread boundary
  const Index units = (pb.n + kAlign - 1) / kAlign;
  parallel_for(
      units,
      [&](Index u0, Index u1) {
        const Index j0 = u0 * kAlign, cols = std::min<Index>(u1 * kAlign, pb.n) - j0;
        pb.kernels->gemm_rows_stream(pb.m, pb.k, pb.a, pb.lda, pb.b.raw + j0, pb.b.ldb, pb.out.c + j0, pb.out.ldc,
                                     cols);
        bias_activation_block(pb, 0, pb.m, j0, cols);
      },
      threads);
}

void run(const Problem& pb, int threads) {
  if (pb.m == 0 || pb.n == 0) return;
  if (pb.k == 0) return zero_k(pb);
  if (threads <= 0) threads = get_num_threads();
  // Waking a second thread costs microseconds (far more on a busy machine): below ~2 MFLOP, which one
  // core does in ~15 µs, the product runs on the calling thread.
  const Index flops = 2 * pb.m * pb.n * pb.k;
  if (flops < 2 * 1024 * 1024) threads = 1;
  // A few rows against a raw B: stream B's rows, each thread over its own columns. One row streams only
  // when each thread's piece of a row is long enough (4 KiB) for the prefetchers, else it goes to the
  // panel path below: at two threads 1 × 512 × 2048 streamed 40% faster than in panels, 1 × 2048 × 512
  // (1 KiB pieces) 25-65% slower. Two or three rows always stream (the panel path's strided pieces ran
  // 3 × 512 × 4096 at half the speed, 2 × 512 × 32000 at 60%).
  constexpr Index kStreamPieceCols = 1024;
  if (pb.b.packed == nullptr && pb.m < kPackRawBMinRows &&
      (threads == 1 || pb.m > 1 || pb.n >= kStreamPieceCols * threads))
    return run_rows_stream(pb, threads);
  const GemmBlocking& g = pb.kernels->gemm;
  const Index m_tiles = (pb.m + g.mr - 1) / g.mr;
  const Index n_panels = (pb.n + g.nr - 1) / g.nr;
  const bool small_m = pb.m <= kSmallM;
  auto body = small_m ? run_rowmajor_a : run_packed_a;
  // Split M when there are enough row tiles for every thread; otherwise split N.
  if (!small_m && m_tiles >= 4 * threads) {
    auto rows = [&](Index r0, Index r1) { body(pb, r0, r1 - r0, 0, n_panels); };
    // With rows for several chunks per thread, pieces of whole row tiles are claimed as threads become
    // free: with one fixed share each, a thread slowed by another process on its core made the other
    // wait (base encoder at two threads beside a process taking 30% of one core: 670 ms this way, 580
    // ms claimed; 1% faster undisturbed). Each piece reads all of B, so fewer rows keep fixed shares
    // (beam search's 128 × 512 × 32000 vocabulary projection, claimed in 7 pieces that each read its
    // 65 MB B, made a step 13% slower).
    // Fixed shares are equal row counts, not equal tile counts: 128 rows as 5 + 5 tiles were 70 and 58
    // rows (the last tile holds 2), and the thread with 70 set the time.
    if (pb.m >= 4 * threads * Index{row_chunk(g, n_panels, pb.k)})
      parallel_for_guided(pb.m, g.mr, rows, threads);
    else
      parallel_for(pb.m, rows, threads);
  } else {
    // Fixed column shares: across a decoder's steps each thread then finds its share of the weights
    // still in its own L2 (claimed as in the row split, a greedy step at batch 32 took 1-6% longer).
    parallel_for(n_panels, [&](Index j0, Index j1) { body(pb, 0, pb.m, j0, j1); }, threads);
  }
}

}  // namespace

void gemm(const float* a, Index lda, Index m, const PackedWeight& b, const GemmOutput& out, int threads) {
  Problem pb{&b.kernels(), a, lda, m, b.n(), b.k(), BSource{&b, nullptr, 0}, out};
  run(pb, threads);
}

void gemm(const KernelTable& kernels, const float* a, Index lda, Index m, Index k, const float* b, Index ldb,
          Index n, bool trans_b, const GemmOutput& out, int threads) {
  if (!trans_b && m <= kSmallM) {
    Problem pb{&kernels, a, lda, m, n, k, BSource{nullptr, b, ldb}, out};
    return run(pb, threads);
  }
  if (m == 0 || n == 0) return;
  // B packed per call into this thread's kept buffer: a fresh one cost page faults and zeroing on every
  // call (1024^3 from a raw B ran 3% slower). Buffers past kKeepRawB are not kept, so one huge product
  // does not pin its memory for the life of the thread.
  constexpr std::size_t kKeepRawB = std::size_t{64} << 20;
  thread_local AlignedBuffer kept;
  PackedWeight packed(kernels, b, ldb, k, n, trans_b, std::move(kept));
  gemm(a, lda, m, packed, out, threads);
  AlignedBuffer storage = packed.take_storage();
  if (storage.capacity() * sizeof(float) <= kKeepRawB) kept = std::move(storage);
}

}  // namespace cpuformer
