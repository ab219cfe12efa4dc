#include "ops/packed_keys.h"

#include <algorithm>

#include "core/aligned_buffer.h"
#include "ops/attention.h"

namespace cpuformer {

Index packed_keys_size(Index positions, Index d_model, int nr) {
  return (positions + nr - 1) / nr * nr * d_model;
}

void append_key(const KernelTable& kernels, const float* key, Index position, Index heads, Index head_dim,
                float* cache) {
  const int nr = kernels.gemm.nr;
  const Index d = heads * head_dim;
  float* panel = cache + position / nr * nr * d;
  std::copy(key, key + d, panel + position % nr * d);
  if (position % nr == nr - 1) {  // the panel is full: rows -> panel layout, through scratch
    thread_local AlignedBuffer scratch;
    float* packed = scratch.reserve(static_cast<std::size_t>(nr * d));
    pack_keys(kernels, panel, d, nr, heads, head_dim, packed);
    std::copy(packed, packed + nr * d, panel);
  }
}

void pack_keys(const KernelTable& kernels, const float* k, Index ldk, Index n, Index heads, Index head_dim,
               float* packed) {
  const Index nr = kernels.gemm.nr;
  for (Index t0 = 0; t0 < n; t0 += nr) {
    const Index keys = n - t0 < nr ? n - t0 : nr;
    float* panel = packed + t0 * heads * head_dim;
    for (Index h = 0; h < heads; ++h)
      kernels.pack_b_transposed(k + t0 * ldk + h * head_dim, ldk, keys, head_dim, panel + h * head_dim * nr);
  }
}

void set_packed_keys(AttentionArgs& args, const float* packed, Index batch_stride, int nr) {
  args.k_packed = packed;
  args.k_packed_batch_stride = batch_stride;
  args.k_packed_head_stride = args.head_dim * nr;
  args.k_packed_panel_stride = nr * args.heads * args.head_dim;
}

void set_key_cache(AttentionArgs& args, const float* cache, int nr) {
  const Index d = args.heads * args.head_dim;
  set_packed_keys(args, cache, 0, nr);
  args.k_packed_len = args.k_len / nr * nr;
  args.k = cache + args.k_packed_len * d;
  args.k_batch_stride = 0, args.k_head_stride = args.head_dim, args.k_row_stride = d;
}

}  // namespace cpuformer
