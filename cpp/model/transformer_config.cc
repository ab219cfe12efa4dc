#include "model/transformer_config.h"

#include "core/check.h"

namespace cpuformer {

void TransformerConfig::validate() const {
  CPUFORMER_CHECK(d_model > 0, "d_model: expected a positive integer, got ", d_model);
  CPUFORMER_CHECK(nhead > 0 && d_model % nhead == 0, "nhead: expected a positive divisor of d_model = ", d_model,
                  ", got ", nhead);
  CPUFORMER_CHECK(num_encoder_layers >= 0, "num_encoder_layers: expected >= 0, got ", num_encoder_layers);
  CPUFORMER_CHECK(num_decoder_layers >= 0, "num_decoder_layers: expected >= 0, got ", num_decoder_layers);
  CPUFORMER_CHECK(dim_feedforward > 0, "dim_feedforward: expected a positive integer, got ", dim_feedforward);
  CPUFORMER_CHECK(layer_norm_eps >= 0.0f, "layer_norm_eps: expected >= 0, got ", layer_norm_eps);
}

}  // namespace cpuformer
