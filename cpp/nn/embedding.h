// Token embeddings scaled by a constant (sqrt(d_model) in the paper) plus a sinusoidal positional
// encoding, in one of two layouts: the paper's (sin and cos interleaved: PE[p, 2i], PE[p, 2i+1]) or
// Marian's (all sines, then all cosines: PE[p, i], PE[p, D/2 + i]). Or no positional encoding at all.
// The positional table is computed once for max_positions rows. Immutable after construction.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dims.h"

namespace cpuformer {

enum class PositionalLayout { kNone = 0, kInterleaved = 1, kHalf = 2 };

class Embedding {
 public:
  Embedding(const float* table, Index vocab_size, Index dim, float scale, PositionalLayout layout,
            Index max_positions);

  Index vocab_size() const { return vocab_size_; }
  Index dim() const { return dim_; }
  Index max_positions() const { return max_positions_; }
  const float* table() const { return table_.data(); }

  // out[r, :] = table[ids[r]] · scale + PE[positions[r]] for r < count. Ids must be checked beforehand
  // (check_ids); positions must be < max_positions.
  void forward(const std::int64_t* ids, const Index* positions, Index count, float* out) const;

  // Throws std::out_of_range naming the first id outside [0, vocab_size) (Python's IndexError).
  void check_ids(const std::int64_t* ids, Index count, const char* name) const;

 private:
  Index vocab_size_, dim_, max_positions_;
  float scale_;
  std::vector<float> table_;
  std::vector<float> positions_;  // [max_positions, dim] or empty
};

}  // namespace cpuformer
