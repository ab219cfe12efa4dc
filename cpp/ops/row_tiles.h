// How the GEMM and attention drivers cut a block of rows into micro-kernel row tiles.
#pragma once

#include "core/dims.h"

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

}  // namespace cpuformer
