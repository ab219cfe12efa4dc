// Scratch for one forward pass of a stack: a few buffers that grow to the largest batch seen and are then
// reused, so steady-state calls allocate nothing and memory stays bounded by the largest shape.
// Not thread-safe: one workspace per concurrent forward (models guard theirs with a mutex).
#pragma once

#include "core/aligned_buffer.h"
#include "core/dims.h"

namespace cpuformer {

struct Workspace {
  AlignedBuffer qkv;     // [rows, 3D] fused projections (or [rows, D] queries for cross-attention)
  AlignedBuffer attn;    // [rows, D] attention output, heads side by side
  AlignedBuffer tmp;     // [rows, D] sub-layer output before the residual
  AlignedBuffer normed;  // [rows, D] pre-LN input of a sub-layer
  AlignedBuffer hidden;  // [rows, F] feed-forward hidden layer
  AlignedBuffer x;       // [rows, D] the running activations of a stack (packed)
  AlignedBuffer memory_kv;  // [layers, rows_src, 2D] cross-attention keys/values, one block per layer

  static float* get(AlignedBuffer& buffer, Index count) {
    return buffer.reserve(static_cast<std::size_t>(count > 0 ? count : 1));
  }
};

}  // namespace cpuformer
