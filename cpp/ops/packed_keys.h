// Attention keys stored in the GEMM's B-panel layout, so that attention over a key cache that lives
// across calls (a decoder's self-attention cache, the cross-attention keys of a source) does not
// repack every key at every decoding step.
//
// Layout of one sequence of up to `capacity` positions, heads side by side (D = heads · dh, nr = the
// active micro-kernel's panel width): panel-major, then head, then the dh rows of a panel:
//   key (position t, head h, dim p) at  (t / nr) · nr·D  +  h · dh·nr  +  p · nr  +  t % nr.
// Panel-major keeps the first n positions of every head in the first ceil(n / nr) · nr · D floats, so a
// cache prefix copies in one memcpy (beam search reorders hypotheses that way). AttentionArgs reads it
// through k_packed with head stride dh·nr and panel stride nr·D (see packed_keys_args).
#pragma once

#include "core/dims.h"
#include "kernels/kernel_table.h"

namespace cpuformer {

struct AttentionArgs;

// Floats a packed sequence of `positions` keys occupies (whole panels).
Index packed_keys_size(Index positions, Index d_model, int nr);

// Writes the key row of one position (D floats, heads side by side) into a packed sequence.
void append_packed_key(const float* key, Index position, Index heads, Index head_dim, int nr, float* packed);

// Packs positions [0, n) of row-major keys (row stride ldk, heads side by side) into a packed sequence.
void pack_keys(const KernelTable& kernels, const float* k, Index ldk, Index n, Index heads, Index head_dim,
               float* packed);

// Points args' keys at packed sequences, one per batch element, `batch_stride` floats apart.
void set_packed_keys(AttentionArgs& args, const float* packed, Index batch_stride, int nr);

}  // namespace cpuformer
