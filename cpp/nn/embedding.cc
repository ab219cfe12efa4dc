#include "nn/embedding.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "core/check.h"
#include "core/memory_budget.h"
#include "core/parallel.h"
#include "ops/positional_encoding.h"

namespace cpuformer {

Embedding::Embedding(const float* table, Index vocab_size, Index dim, float scale, PositionalLayout layout,
                     Index max_positions)
    : vocab_size_(vocab_size),
      dim_(dim),
      max_positions_(max_positions),
      scale_(scale),
      table_(table, table + vocab_size * dim) {
  if (layout == PositionalLayout::kNone) return;
  check_fits_in_memory(4.0 * static_cast<double>(max_positions) * static_cast<double>(dim),
                       detail::concat("a positional table of ", max_positions, " positions (max_positions) x ", dim,
                                      " (d_model)"),
                       "of float32");
  positions_.resize(static_cast<std::size_t>(max_positions * dim));
  if (layout == PositionalLayout::kInterleaved) {
    positional_encoding(max_positions, dim, positions_.data());
  } else {
    // Marian: sin(p · f_i) in columns [0, ceil(D/2)), cos(p · f_i) in the rest, f_i = 10000^(−2i/D).
    const Index sines = (dim + 1) / 2;
    for (Index p = 0; p < max_positions; ++p)
      for (Index j = 0; j < dim; ++j) {
        const Index i = j < sines ? j : j - sines;
        const double angle = static_cast<double>(p) / std::pow(10000.0, 2.0 * static_cast<double>(i) / dim);
        positions_[p * dim + j] = static_cast<float>(j < sines ? std::sin(angle) : std::cos(angle));
      }
  }
}

void Embedding::check_ids(const std::int64_t* ids, Index count, const char* name) const {
  for (Index r = 0; r < count; ++r)
    if (ids[r] < 0 || ids[r] >= vocab_size_)
      throw std::out_of_range(std::string(name) + ": token id " + std::to_string(ids[r]) + " at position " +
                              std::to_string(r) + " is out of range for a vocabulary of " +
                              std::to_string(vocab_size_) + " tokens");
}

void Embedding::forward(const std::int64_t* ids, const Index* positions, Index count, float* out) const {
  parallel_for(count, [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r) {
      const float* row = table_.data() + ids[r] * dim_;
      float* y = out + r * dim_;
      if (positions_.empty()) {
        for (Index j = 0; j < dim_; ++j) y[j] = row[j] * scale_;
      } else {
        const float* pe = positions_.data() + positions[r] * dim_;
        for (Index j = 0; j < dim_; ++j) y[j] = row[j] * scale_ + pe[j];
      }
    }
  }, count * dim_ >= 64 * 1024 ? 0 : 1);
}

}  // namespace cpuformer
