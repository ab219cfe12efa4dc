// How the GEMM and attention drivers cut a block of rows into micro-kernel row tiles, and share among
// those tiles the prefetch of what the block needs next.
#pragma once

#include "core/dims.h"
#include "kernels/kernel_table.h"

namespace cpuformer {

// Calls f(first_row, tile_rows) for ceil(rows / mr) tiles of near-equal height (differing by at most
// one) covering [0, rows), in order. A tile's height never changes a row's arithmetic (each element is
// one FMA chain in the micro-kernel), only how busy the kernel's accumulators are.
template <class F>
void for_row_tiles(Index rows, int mr, F&& f) {
  const Index tiles = (rows + mr - 1) / mr;
  for (Index t = 0; t < tiles; ++t) {
    const Index r0 = rows * t / tiles, r1 = rows * (t + 1) / tiles;
    f(r0, static_cast<int>(r1 - r0));
  }
}

// The share of the next panel (rows `ld` floats apart, k of them) that the tile of rows [i0, i0 + tile_rows)
// of a block of `rows` rows prefetches: proportional to its rows, so the panel arrives at the pace of the
// whole block's compute. With the first tile fetching all of it, the fetch ran ahead of what one core
// streams (~16 GB/s here) and stalled on full fill buffers, then the other tiles computed with the memory
// idle: 32-row products against cold weights took compute time plus stream time, not the larger of the two.
inline PrefetchRows prefetch_share(const float* next, Index ld, Index k, Index i0, Index tile_rows, Index rows) {
  if (next == nullptr) return {};
  const Index first = k * i0 / rows, end = k * (i0 + tile_rows) / rows;
  return {next + first * ld, ld, end - first};
}

}  // namespace cpuformer
