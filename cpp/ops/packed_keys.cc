#include "ops/packed_keys.h"

#include <algorithm>

#include "ops/attention.h"

namespace cpuformer {

Index packed_keys_size(Index positions, Index d_model, int nr) {
  return (positions + nr - 1) / nr * nr * d_model;
}

Index key_cache_size(Index capacity, Index d_model, int nr) {
  return packed_keys_size(capacity, d_model, nr) + nr * d_model;
}

const float* key_cache_staging(const float* cache, Index capacity, Index d_model, int nr) {
  return cache + packed_keys_size(capacity, d_model, nr);
}

void append_key(const KernelTable& kernels, const float* key, Index position, Index capacity, Index heads,
                Index head_dim, float* cache) {
  const int nr = kernels.gemm.nr;
  const Index d = heads * head_dim;
  float* staging = cache + packed_keys_size(capacity, d, nr);
  std::copy(key, key + d, staging + position % nr * d);
  if (position % nr == nr - 1) pack_keys(kernels, staging, d, nr, heads, head_dim, cache + position / nr * nr * d);
}

void copy_key_cache(const float* from, Index positions, Index capacity, Index d_model, int nr, float* to) {
  const Index panels = positions / nr * nr * d_model, staged = positions % nr * d_model;
  std::copy(from, from + panels, to);
  const Index staging = packed_keys_size(capacity, d_model, nr);
  std::copy(from + staging, from + staging + staged, to + staging);
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

void set_key_cache(AttentionArgs& args, const float* cache, Index capacity, int nr) {
  const Index d = args.heads * args.head_dim;
  set_packed_keys(args, cache, 0, nr);
  args.k_packed_len = args.k_len / nr * nr;
  args.k = key_cache_staging(cache, capacity, d, nr);
  args.k_batch_stride = 0, args.k_head_stride = args.head_dim, args.k_row_stride = d;
}

}  // namespace cpuformer
