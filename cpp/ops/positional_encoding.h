// The sinusoidal positional encoding of "Attention Is All You Need" (section 3.5):
//   PE[pos, 2i] = sin(pos / 10000^(2i / d_model)),  PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model)).
// Computed in double and rounded once to float, so every path and every length agrees to the last bit.
#pragma once

#include "core/dims.h"

namespace cpuformer {

// out [length, d_model]; rows start at position `first` (for incremental decoding).
void positional_encoding(Index length, Index d_model, float* out, Index first = 0);

}  // namespace cpuformer
