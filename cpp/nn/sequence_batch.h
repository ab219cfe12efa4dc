// How a batch of variable-length sequences is laid out inside the layers: packed, with no padding rows.
// Sequence b occupies rows [offsets[b], offsets[b] + lengths[b]) of a [total, D] matrix, so per-token
// work (projections, feed-forward, norms) costs nothing for padding, and attention sees exactly the real
// keys of each sequence (the basis of "a sequence alone equals the same sequence in a padded batch").
#pragma once

#include <vector>

#include "core/check.h"
#include "core/dims.h"

namespace cpuformer {

struct SequenceBatch {
  std::vector<Index> lengths;
  std::vector<Index> offsets;
  Index max_len = 0;  // the padded length (positions of masks are in padded coordinates)
  Index total = 0;    // sum of lengths = rows of the packed matrix

  Index batch() const { return static_cast<Index>(lengths.size()); }

  // lengths == nullptr: every sequence has max_len tokens.
  static SequenceBatch make(Index batch, Index max_len, const Index* lengths) {
    SequenceBatch s;
    s.max_len = max_len;
    s.lengths.resize(batch);
    s.offsets.resize(batch);
    for (Index b = 0; b < batch; ++b) {
      const Index len = lengths ? lengths[b] : max_len;
      CPUFORMER_CHECK(len >= 0 && len <= max_len, "lengths: entry ", b, " is ", len, ", expected 0..", max_len);
      s.offsets[b] = s.total;
      s.lengths[b] = len;
      s.total += len;
    }
    return s;
  }
};

// A mask in padded coordinates: element (b, h, i, j) of `additive` at
// additive + b * batch_stride + h * head_stride + i * row_stride + j (zero strides broadcast).
struct AttentionMask {
  bool causal = false;
  const float* additive = nullptr;
  Index batch_stride = 0, head_stride = 0, row_stride = 0;
};

}  // namespace cpuformer
