// Fused scaled-dot-product attention: out[b, h, i, :] = softmax_j(scale · q_i·k_j + mask(b, h, i, j)) · v,
// with masked keys excluded, in one pass over the keys (online softmax), never materialising the
// [q_len, k_len] score matrix: per (batch, head, block of queries) the keys are visited in fixed tiles
// of kAttentionKeyTile starting at key 0; S = Q_blk · K_tileᵀ and O += P · V_tile run on the active
// ISA's GEMM micro-kernels (K packed per tile, Q and V read in place), the softmax step on its
// attention_softmax_tile row kernel. Memory: O(k_len · head_dim) scratch per thread.
//
// Masks: causal (key j masked for query i when j > i + causal_offset), key padding (keys >= key_lengths[b]
// are never visited, exactly as if k_len were key_lengths[b]) and an additive float mask (−inf masks).
// A query row whose keys are all masked gives zeros, never NaN.
//
// Determinism: every output element is the same sequence of float operations whatever the thread count,
// the query block a row falls in, or the padding of its batch element (a sequence alone with
// k_len = n equals the same sequence in a padded batch with key_lengths[b] = n, bit for bit).
// Threads split (batch, head, query block) tasks. Inputs may alias each other; out must not overlap them.
#pragma once

#include "core/dims.h"

namespace cpuformer {
struct KernelTable;
}

namespace cpuformer {

// Keys per tile of the online softmax; fixed (not tuned per shape) because the tile boundaries are part
// of the arithmetic, and a sequence must give the same bits however long the padded batch around it is.
constexpr Index kAttentionKeyTile = 128;

struct AttentionArgs {
  Index batch, heads, q_len, k_len, head_dim;
  // Element strides let Q/K/V be read in place from a fused QKV projection [B, T, 3D] (row stride 3D,
  // head stride Dh) without transposes. out is written with its own strides. Rows are contiguous.
  const float* q; Index q_batch_stride, q_head_stride, q_row_stride;
  const float* k; Index k_batch_stride, k_head_stride, k_row_stride;
  const float* v; Index v_batch_stride, v_head_stride, v_row_stride;
  float* out;     Index out_batch_stride, out_head_stride, out_row_stride;
  float scale;                        // usually 1/sqrt(head_dim)
  bool causal = false;                // key j masked for query i when j > i + causal_offset
  Index causal_offset = 0;            // 0 = PyTorch's is_causal (top-left); k_len - q_len for a KV-cache step
  const Index* key_lengths = nullptr; // [batch] or null: keys >= key_lengths[b] are masked (key padding)
  const float* mask = nullptr;        // additive float mask (0 / -inf / any value) or null, element (b,h,i,j) at
  Index mask_batch_stride = 0, mask_head_stride = 0, mask_row_stride = 0;  // mask + b*bs + h*hs + i*rs + j (0 strides broadcast)
  Index v_head_dim = 0;               // width of v and out rows; 0 = head_dim
  // Keys already in the micro-kernel's panel layout (ops/packed_keys.h), read instead of k when set:
  // panel j (keys j·nr .. j·nr + nr − 1) of head h of batch element b starts at
  // k_packed + b·batch_stride + h·head_stride + j·panel_stride. Same arithmetic, no packing per call.
  const float* k_packed = nullptr;
  const KernelTable* kernels = nullptr;  // the table that packed k_packed; null: the active one
  Index k_packed_batch_stride = 0, k_packed_head_stride = 0, k_packed_panel_stride = 0;
  // With k_packed: < 0, every key is in the panels; otherwise only keys [0, k_packed_len) are (a multiple
  // of nr) and key k_packed_len + i is row-major at k + b·k_batch_stride + h·k_head_stride + i·k_row_stride
  // (a key cache whose last, partial panel is kept as rows; it is packed into scratch per use).
  Index k_packed_len = -1;
};

// threads <= 0: the current default (get_num_threads()). Throws std::invalid_argument on bad sizes.
void attention(const AttentionArgs& args, int threads = 0);

}  // namespace cpuformer
