// Config dictionaries and weight dictionaries from Python to C++, shared by the model bindings.
// Unknown config keys are errors.
#pragma once

#include <string>

#include "bindings/array_views.h"
#include "model/transformer_config.h"
#include "model/weight_map.h"

namespace cpuformer::bindings {

inline Activation parse_activation(const std::string& name) {
  if (name == "relu") return Activation::kRelu;
  if (name == "gelu") return Activation::kGeluErf;
  if (name == "gelu_tanh") return Activation::kGeluTanh;
  if (name == "silu" || name == "swish") return Activation::kSilu;
  CPUFORMER_CHECK(false, "activation: expected 'relu', 'gelu', 'gelu_tanh' or 'silu', got '", name, "'");
  return Activation::kRelu;
}

inline TransformerConfig parse_transformer_config(const py::dict& d) {
  TransformerConfig c;
  for (auto item : d) {
    const std::string key = py::str(item.first);
    py::handle v = item.second;
    if (key == "d_model") c.d_model = v.cast<Index>();
    else if (key == "nhead") c.nhead = v.cast<Index>();
    else if (key == "num_encoder_layers") c.num_encoder_layers = v.cast<Index>();
    else if (key == "num_decoder_layers") c.num_decoder_layers = v.cast<Index>();
    else if (key == "dim_feedforward") c.dim_feedforward = v.cast<Index>();
    else if (key == "activation") c.activation = parse_activation(v.cast<std::string>());
    else if (key == "layer_norm_eps") c.layer_norm_eps = v.cast<float>();
    else if (key == "norm_first") c.norm_first = v.cast<bool>();
    else if (key == "bias") c.bias = v.cast<bool>();
    else if (key == "encoder_final_norm") c.encoder_final_norm = v.cast<bool>();
    else if (key == "decoder_final_norm") c.decoder_final_norm = v.cast<bool>();
    else CPUFORMER_CHECK(false, "config: unknown key '", key, "'");
  }
  return c;
}

// A WeightMap viewing a dict of name -> C-contiguous float32 arrays (the arrays must outlive its use).
inline WeightMap weight_map(const py::dict& weights) {
  WeightMap map;
  for (auto item : weights) {
    const std::string name = py::str(item.first);
    CPUFORMER_CHECK(py::isinstance<FloatArray>(item.second), "state_dict: '", name,
                    "' must be a C-contiguous float32 array");
    auto arr = py::reinterpret_borrow<FloatArray>(item.second);
    map.add(name, arr.data(), std::vector<Index>(arr.shape(), arr.shape() + arr.ndim()));
  }
  return map;
}

}  // namespace cpuformer::bindings
