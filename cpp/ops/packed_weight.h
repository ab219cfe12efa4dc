// A weight matrix packed once, at load, into the GEMM layout of the kernel table that will multiply it.
//
// Logical shape: B[K, N] in C = A · B. Built either from B itself (row-major [K, N]) or from a PyTorch
// Linear weight W[N, K] (B = Wᵀ), which is how layers hold their weights.
// fp32 layout: K is cut into blocks of kc rows; inside a block, N is cut into panels of nr columns
// (zero-padded past N); each panel is kc × nr floats, row after row. Block b starts at
// b · kc · n_padded; its panel j starts j · kc_b · nr further (kc_b = the block's real depth).
// `format` leaves room for bf16 and int8 packings beside fp32: each would add its own micro-kernels to
// the kernel table and its own layout here, with the same logical interface.
// Immutable after construction; safe to share between threads.
#pragma once

#include <utility>

#include "core/aligned_buffer.h"
#include "core/dims.h"
#include "kernels/kernel_table.h"

namespace cpuformer {

enum class WeightFormat { kFloat32 };

class PackedWeight {
 public:
  // `w` row-major with leading dimension `ld`: [K, N] when transposed == false, [N, K] when true.
  PackedWeight(const KernelTable& kernels, const float* w, Index ld, Index k, Index n, bool transposed);
  // The same, packed into `storage` (grown if needed); take_storage() hands it back, so per-call packing
  // of a raw B can reuse one buffer instead of mapping and zeroing fresh pages every call.
  PackedWeight(const KernelTable& kernels, const float* w, Index ld, Index k, Index n, bool transposed,
               AlignedBuffer&& storage);
  AlignedBuffer take_storage() { return std::move(data_); }

  Index k() const { return k_; }
  Index n() const { return n_; }
  Index n_padded() const { return n_padded_; }
  WeightFormat format() const { return WeightFormat::kFloat32; }
  const KernelTable& kernels() const { return *kernels_; }
  std::size_t bytes() const { return static_cast<std::size_t>(k_ * n_padded_) * sizeof(float); }

  // The kc_b × nr panel j of the block starting at row k0 (k0 a multiple of kc).
  const float* panel(Index k0, Index j) const {
    const Index kc_b = k_ - k0 < kc_ ? k_ - k0 : kc_;
    return data_.data() + k0 * n_padded_ + j * kc_b * nr_;
  }

 private:
  const KernelTable* kernels_;
  Index k_, n_, n_padded_, kc_, nr_;
  AlignedBuffer data_;
};

// Packs into caller-provided storage of k · n_padded floats (used for per-call packing of raw B).
// Blocking (kc, nr) and the transposing packer come from `kernels`.
void pack_b(const KernelTable& kernels, const float* w, Index ld, Index k, Index n, bool transposed, float* dst);

}  // namespace cpuformer
