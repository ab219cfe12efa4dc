// Attention keys stored in the GEMM's B-panel layout, so that attention over a key cache that lives
// across calls (a decoder's self-attention cache, the cross-attention keys of a source) does not
// repack every key at every decoding step.
//
// Layout of one sequence of up to `capacity` positions, heads side by side (D = heads · dh, nr = the
// active micro-kernel's panel width): panel-major, then head, then the dh rows of a panel:
//   key (position t, head h, dim p) at  (t / nr) · nr·D  +  h · dh·nr  +  p · nr  +  t % nr.
// Panel-major keeps the first n positions of every head in the first ceil(n / nr) · nr · D floats (the
// first n · D in a key cache, below), so a cache prefix copies in one memcpy (beam search reorders
// hypotheses that way). AttentionArgs reads it through k_packed with head stride dh·nr and panel stride
// nr·D (set_packed_keys, set_key_cache).
#pragma once

#include "core/dims.h"
#include "kernels/kernel_table.h"

namespace cpuformer {

struct AttentionArgs;

// Floats a packed sequence of `positions` keys occupies (whole panels).
Index packed_keys_size(Index positions, Index d_model, int nr);

// A key cache that grows by one position per decoding step: a packed sequence whose complete panels are
// packed and whose last, partial panel holds its keys as rows (D floats each, key i of the panel at the
// panel's start + i · D), so positions [0, n) always take the first n · D floats. Appending writes one
// contiguous row (D / 16 cache lines) instead of one float into each of D panel rows (D lines, each read
// for ownership and written back); a panel is packed in place when it fills, and attention packs the
// partial one into scratch per use (set_key_cache).
void append_key(const KernelTable& kernels, const float* key, Index position, Index heads, Index head_dim,
                float* cache);

// Packs positions [0, n) of row-major keys (row stride ldk, heads side by side) into a packed sequence.
void pack_keys(const KernelTable& kernels, const float* k, Index ldk, Index n, Index heads, Index head_dim,
               float* packed);

// Points args' keys at packed sequences, one per batch element, `batch_stride` floats apart.
void set_packed_keys(AttentionArgs& args, const float* packed, Index batch_stride, int nr);

// Points args' keys at one key cache holding args.k_len positions (set k_len, heads and head_dim first).
void set_key_cache(AttentionArgs& args, const float* cache, int nr);

}  // namespace cpuformer
