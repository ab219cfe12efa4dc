// The configuration of an encoder-decoder Transformer, with torch.nn.Transformer's names. Batch layout
// (batch_first) is a Python-level concern: the core is always batch-first.
#pragma once

#include <string>

#include "core/dims.h"
#include "kernels/kernel_table.h"

namespace cpuformer {

struct TransformerConfig {
  Index d_model = 512;
  Index nhead = 8;
  Index num_encoder_layers = 6;
  Index num_decoder_layers = 6;
  Index dim_feedforward = 2048;
  Activation activation = Activation::kRelu;
  float layer_norm_eps = 1e-5f;
  bool norm_first = false;          // pre-LN when true (the paper is post-LN)
  bool bias = true;                 // Linear and LayerNorm biases present
  bool encoder_final_norm = true;   // "encoder.norm" (nn.Transformer always has it)
  bool decoder_final_norm = true;   // "decoder.norm"

  void validate() const;            // throws std::invalid_argument naming the bad field
};

// Bytes of activations a forward pass keeps per token at most (the layers' workspace: fused projections,
// attention output, sub-layer output, normed input, feed-forward hidden, the token itself), so that a
// batch too large for the machine is refused up front (core/memory_budget) instead of being killed.
inline double activation_bytes_per_token(const TransformerConfig& c) {
  return sizeof(float) * (6.0 * static_cast<double>(c.d_model) + static_cast<double>(c.dim_feedforward));
}

}  // namespace cpuformer
