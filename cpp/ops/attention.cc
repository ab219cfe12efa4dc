#include "ops/attention.h"

#include <algorithm>
#include <limits>

#include "core/aligned_buffer.h"
#include "core/check.h"
#include "core/parallel.h"
#include "kernels/kernel_table.h"
#include "kernels/registry.h"
#include "ops/row_tiles.h"

namespace cpuformer {
namespace {

constexpr Index kTile = kAttentionKeyTile;
// Query rows per task, at most (rounded up to a multiple of the micro-kernel's mr): the block's scores
// (rows × kTile), output accumulator (rows × Dv) and Q rows stay in L1/L2 while the keys stream through.
// q_len is split into equal blocks and a block into equal row tiles (heights differ by at most one), so
// no block ends in a sliver of a tile that would keep few accumulators busy. Neither split changes a
// row's arithmetic (each element is one FMA chain in the micro-kernel, whatever its tile height).
constexpr Index kQueryBlock = 64;

Index round_up(Index x, Index to) { return (x + to - 1) / to * to; }

struct Plan {
  const AttentionArgs* a;
  const KernelTable* kt;
  Index dv;      // value / output head dim
  Index qb;      // query rows per task, at most
  Index blocks;  // query blocks per (batch, head): block i is rows [q_len · i / blocks, q_len · (i + 1) / blocks)
};

// Scratch of one thread, carved from one buffer: packed keys of the current head, the block's scores /
// probabilities (qb × kTile), its output accumulator (qb × dv), running max / sum / rescale per row, and
// one packed panel of V (kTile × nr).
struct Scratch {
  float* keys;
  float* s;
  float* o;
  float* m;
  float* l;
  float* v_panel;
};

Scratch carve(const Plan& pl, AlignedBuffer& buffer) {
  const AttentionArgs& a = *pl.a;
  const Index nr = pl.kt->gemm.nr;
  const Index keys = !a.k_packed ? round_up(a.k_len, nr) * a.head_dim : a.k_packed_len >= 0 ? nr * a.head_dim : 0;
  const Index sizes[6] = {keys, pl.qb * kTile, pl.qb * pl.dv, pl.qb, pl.qb, kTile * nr};
  Index total = 0;
  for (Index sz : sizes) total += round_up(sz, 16);
  float* p = buffer.reserve(static_cast<std::size_t>(std::max<Index>(total, 16)));
  float* parts[6];
  for (int i = 0; i < 6; ++i) {
    parts[i] = p;
    p += round_up(sizes[i], 16);
  }
  return Scratch{parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]};
}

// Keys a query row may attend to: [0, valid_keys) (before the additive mask).
Index valid_keys(const AttentionArgs& a, Index klen, Index row) {
  return a.causal ? std::max<Index>(0, std::min<Index>(klen, row + a.causal_offset + 1)) : klen;
}

// Tasks [t_begin, t_end) of one thread; a task is (batch, head, query block), blocks fastest, so
// consecutive tasks of a head reuse its packed keys.
void run_tasks(const Plan& pl, Index t_begin, Index t_end) {
  const AttentionArgs& a = *pl.a;
  const KernelTable& kt = *pl.kt;
  const int mr = kt.gemm.mr, nr = kt.gemm.nr;
  const Index dh = a.head_dim, dv = pl.dv;
  thread_local AlignedBuffer buffer;
  const Scratch w = carve(pl, buffer);
  Index cached_head = -1, packed = 0;  // keys [0, packed) of cached_head are in w.keys
  for (Index t = t_begin; t < t_end; ++t) {
    const Index bh = t / pl.blocks, b = bh / a.heads, h = bh % a.heads;
    const Index blk = t % pl.blocks;
    const Index i0 = a.q_len * blk / pl.blocks;
    const Index rows = a.q_len * (blk + 1) / pl.blocks - i0;
    if (bh != cached_head) {
      cached_head = bh;
      packed = 0;
    }
    const Index klen = a.key_lengths ? a.key_lengths[b] : a.k_len;
    const Index limit = valid_keys(a, klen, i0 + rows - 1);  // keys any row of the block may see
    const float* q = a.q + b * a.q_batch_stride + h * a.q_head_stride + i0 * a.q_row_stride;
    // Row-major keys: all of them, or (with k_packed) the unpacked tail from key k_packed_len on.
    const Index tail = a.k_packed ? (a.k_packed_len >= 0 ? a.k_packed_len : a.k_len) : 0;
    const float* k = a.k_packed && tail >= a.k_len ? nullptr : a.k + b * a.k_batch_stride + h * a.k_head_stride;
    // Panels of this head's keys: packed here (w.keys, panels dh · nr apart) or given by the caller.
    const float* keys = a.k_packed ? a.k_packed + b * a.k_packed_batch_stride + h * a.k_packed_head_stride : w.keys;
    const Index panel_stride = a.k_packed ? a.k_packed_panel_stride : nr * dh;
    const float* v = a.v + b * a.v_batch_stride + h * a.v_head_stride;
    const float* mask = a.mask ? a.mask + b * a.mask_batch_stride + h * a.mask_head_stride + i0 * a.mask_row_stride
                               : nullptr;
    float* out = a.out + b * a.out_batch_stride + h * a.out_head_stride + i0 * a.out_row_stride;
    bool finished = false;  // the output rows are written (all but the fully masked ones)
    std::fill(w.m, w.m + rows, -std::numeric_limits<float>::infinity());
    std::fill(w.l, w.l + rows, 0.0f);
    for (Index t0 = 0; t0 < limit; t0 += kTile) {
      const Index n = std::min<Index>(kTile, limit - t0);
      if (!a.k_packed && packed < t0 + n) {  // repack from the last (zero-padded) panel boundary
        const Index from = packed / nr * nr;
        kt.pack_b_transposed(k + from * a.k_row_stride, a.k_row_stride, t0 + n - from, dh, w.keys + from * dh);
        packed = t0 + n;
      }
      // S = Q_blk · K_tileᵀ, Q read in place. V comes from L3 or memory, its rows a row stride apart: unless
      // prefetched, P · V waited on every line of a strip (an eighth of the attention time in an encoder).
      const float* v_tile = v + t0 * a.v_row_stride;
      const Index panels = (n + nr - 1) / nr;
      for (Index c0 = 0; c0 < n; c0 += nr) {
        const int cols = static_cast<int>(std::min<Index>(nr, n - c0));
        const float* panel = keys + (t0 + c0) / nr * panel_stride;
        if (a.k_packed && t0 + c0 >= tail) {  // a caller's unpacked tail: one panel, packed into scratch
          kt.pack_b_transposed(k + (t0 + c0 - tail) * a.k_row_stride, a.k_row_stride, cols, dh, w.keys);
          panel = w.keys;
        }
        // Fetch the next panel while this one is used (caller-packed keys come from memory, not L1).
        const Index panels_end = a.k_packed ? std::min(limit, tail) : limit;
        const bool more = t0 + c0 + nr < panels_end;
        const PrefetchRows next_keys{more ? panel + panel_stride : nullptr, nr, more ? dh : 0};
        // Keys packed here are in cache already: the calls fetch V's first strip for P · V instead, each
        // panel's row tiles a part of its rows.
        const Index v_first = n * (c0 / nr) / panels, v_end = n * (c0 / nr + 1) / panels;
        for_row_tiles(rows, mr, [&](Index i, int tile_rows) {
          const PrefetchRows next =
              a.k_packed ? next_keys
                         : prefetch_share(v_tile + v_first * a.v_row_stride, a.v_row_stride, v_end - v_first, i,
                                          tile_rows, rows);
          kt.gemm_rowmajor_a[tile_rows - 1](dh, q + i * a.q_row_stride, a.q_row_stride, panel, nr, next,
                                            w.s + i * kTile + c0, kTile, cols, false, nullptr);
        });
      }
      // Online softmax: S → P, running max / sum, rescale of the rows already accumulated.
      for (Index i = 0; i < rows; ++i) {
        const Index n_valid = valid_keys(a, klen, i0 + i) - t0;
        const float* mask_row = mask ? mask + i * a.mask_row_stride + t0 : nullptr;
        const float alpha =
            kt.attention_softmax_tile(w.s + i * kTile, n, n_valid, a.scale, mask_row, w.m + i, w.l + i);
        if (t0 > 0 && alpha != 1.0f) kt.scale_row(w.o + i * dv, alpha, w.o + i * dv, dv);
      }
      // O (+)= P · V_tile; the first key tile initialises O. The only key tile writes the output itself,
      // scaled by 1 / l in the micro-kernel's epilogue (the bits of the pass below, without it). With more
      // than one row tile, the first reads V's strip in place and packs it into w.v_panel as it goes, and
      // the others read that copy: V's rows are a row stride apart (three model widths in a fused QKV
      // buffer), which maps a strip to a few L1 sets, so every row tile fetched it from L2 again.
      const bool pack_v = rows > mr;
      const bool only_tile = t0 == 0 && limit <= kTile;
      if (only_tile)  // w.m, the running max, is done with: it holds the factors 1 / l
        for (Index i = 0; i < rows; ++i) w.m[i] = w.l[i] != 0.0f ? 1.0f / w.l[i] : 0.0f;
      for (Index c0 = 0; c0 < dv; c0 += nr) {
        const int cols = static_cast<int>(std::min<Index>(nr, dv - c0));
        const float* next_strip = c0 + nr < dv ? v_tile + c0 + nr : nullptr;
        for_row_tiles(rows, mr, [&](Index i, int tile_rows) {
          const float* p = w.s + i * kTile;
          const TileEpilogue epi{nullptr, Activation::kNone, w.m + i};
          float* c = only_tile ? out + i * a.out_row_stride + c0 : w.o + i * dv + c0;
          const Index ldc = only_tile ? a.out_row_stride : dv;
          const bool accumulate = !only_tile && t0 > 0;
          const TileEpilogue* e = only_tile ? &epi : nullptr;
          // Each row tile fetches its share of the next strip's rows.
          const PrefetchRows next_v = prefetch_share(next_strip, a.v_row_stride, n, i, tile_rows, rows);
          if (pack_v && i == 0)
            kt.gemm_rowmajor_a_packing_b[tile_rows - 1](n, p, kTile, v_tile + c0, a.v_row_stride, next_v, c,
                                                        ldc, cols, accumulate, e, w.v_panel);
          else if (pack_v)
            kt.gemm_rowmajor_a[tile_rows - 1](n, p, kTile, w.v_panel, nr, next_v, c, ldc, cols, accumulate, e);
          else
            kt.gemm_rowmajor_a[tile_rows - 1](n, p, kTile, v_tile + c0, a.v_row_stride, next_v, c, ldc, cols,
                                              accumulate, e);
        });
      }
      finished = only_tile;
    }
    for (Index i = 0; i < rows; ++i) {
      float* out_row = out + i * a.out_row_stride;
      if (finished && w.l[i] != 0.0f) continue;
      if (limit > 0 && w.l[i] != 0.0f)
        kt.scale_row(w.o + i * dv, 1.0f / w.l[i], out_row, dv);
      else  // every key masked: zeros, not 0/0 (nor 0 · inf from the epilogue)
        std::fill(out_row, out_row + dv, 0.0f);
    }
  }
}

}  // namespace

void attention(const AttentionArgs& a, int threads) {
  CPUFORMER_CHECK(a.batch >= 0 && a.heads >= 0 && a.q_len >= 0 && a.k_len >= 0 && a.head_dim >= 0 &&
                      a.v_head_dim >= 0,
                  "attention: sizes must be non-negative, got batch ", a.batch, ", heads ", a.heads, ", q_len ",
                  a.q_len, ", k_len ", a.k_len, ", head_dim ", a.head_dim, ", v_head_dim ", a.v_head_dim);
  const Index dv = a.v_head_dim > 0 ? a.v_head_dim : a.head_dim;
  if (a.batch == 0 || a.heads == 0 || a.q_len == 0 || dv == 0) return;
  CPUFORMER_CHECK(a.q && a.out && (a.k_len == 0 || ((a.k || a.k_packed) && a.v)), "attention: null q, k, v or out");
  if (a.key_lengths) {
    for (Index b = 0; b < a.batch; ++b)
      CPUFORMER_CHECK(a.key_lengths[b] >= 0 && a.key_lengths[b] <= a.k_len, "key_lengths: expected values in [0, ",
                      a.k_len, "] (the number of keys), got ", a.key_lengths[b], " at index ", b);
  }
  const KernelTable& kt = a.kernels ? *a.kernels : active_kernels();
  CPUFORMER_CHECK(kTile % kt.gemm.nr == 0, "attention: key tile ", kTile, " is not a multiple of nr = ", kt.gemm.nr);
  if (a.k_packed && a.k_packed_len >= 0 && a.k_packed_len < a.k_len)
    CPUFORMER_CHECK(a.k_packed_len % kt.gemm.nr == 0 && a.k, "attention: k_packed_len ", a.k_packed_len,
                    " must be a multiple of nr = ", kt.gemm.nr, " with the remaining keys in k");
  const Index block = round_up(kQueryBlock, kt.gemm.mr);
  Plan pl{&a, &kt, dv, 0, (a.q_len + block - 1) / block};
  pl.qb = (a.q_len + pl.blocks - 1) / pl.blocks;
  const Index tasks = a.batch * a.heads * pl.blocks;
  const Index flops = 2 * a.batch * a.heads * a.q_len * a.k_len * (a.head_dim + dv);
  if (threads <= 0) threads = get_num_threads();
  if (flops < 256 * 1024) threads = 1;  // not worth waking threads
  parallel_for(tasks, [&](Index t0, Index t1) { run_tasks(pl, t0, t1); }, threads);
}

}  // namespace cpuformer
