#include "ops/packed_keys.h"

#include "ops/attention.h"

namespace cpuformer {

Index packed_keys_size(Index positions, Index d_model, int nr) {
  return (positions + nr - 1) / nr * nr * d_model;
}

void append_packed_key(const float* key, Index position, Index heads, Index head_dim, int nr, float* packed) {
  float* panel = packed + position / nr * nr * heads * head_dim + position % nr;
  for (Index h = 0; h < heads; ++h) {
    float* dst = panel + h * head_dim * nr;
    const float* src = key + h * head_dim;
    for (Index p = 0; p < head_dim; ++p) dst[p * nr] = src[p];
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

}  // namespace cpuformer
