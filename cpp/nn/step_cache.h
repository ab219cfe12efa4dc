// What one decoder layer reads and writes during an incremental decoding step: its self-attention cache
// (keys in a key cache of the micro-kernel's panel layout, ops/packed_keys.h; values row-major) and the source's
// cross-attention keys (packed once per source) and values. Views only; the model owns the memory.
#pragma once

#include "core/dims.h"
#include "kernels/kernel_table.h"

namespace cpuformer {

struct LayerStepCache {
  const KernelTable* kernels;     // the table whose panel width (nr) laid out the packed keys
  float* self_k;                  // hypothesis r's key cache (ops/packed_keys.h) at self_k + slots[r] · self_stride
  float* self_v;                  // hypothesis r's values [positions, D] at self_v + slots[r] · self_stride
  const Index* slots;             // [hypotheses]
  Index self_stride;
  Index position;                 // this step writes position `position` and attends to 0..position
  const float* memory_kv;         // [src rows, 2D] from project_memory: values in columns [D, 2D)
  const float* memory_k;          // sentence s's packed keys at memory_k + memory_k_offsets[s]
  const Index* memory_k_offsets;  // [sentences]
  const Index* memory_offsets;    // [sentences] first source row of sentence s
  const Index* memory_lengths;    // [sentences]
  const Index* hyp_sentence;      // [hypotheses] sentence of each hypothesis
};

}  // namespace cpuformer
