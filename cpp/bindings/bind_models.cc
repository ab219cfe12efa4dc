// cpuformer._core.TransformerModel: the C++ Transformer (encoder-decoder, encoder or decoder) behind
// python/cpuformer/models.py. Takes a config dict, a dict of float32 arrays with torch.nn.Transformer's
// names, padded batch-first inputs, lengths (int64, from suffix key padding masks) and additive float
// masks already normalised to 4-D [1 or B, 1 or H, L, S] by the Python layer.
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bindings/array_views.h"
#include "bindings/config_parsing.h"
#include "core/memory_budget.h"
#include "core/parallel.h"
#include "model/transformer.h"

namespace cpuformer::bindings {
namespace {

using LengthArray = py::array_t<std::int64_t, py::array::c_style>;

TransformerPart parse_part(const std::string& part) {
  if (part == "transformer") return TransformerPart::kFull;
  if (part == "encoder") return TransformerPart::kEncoder;
  if (part == "decoder") return TransformerPart::kDecoder;
  CPUFORMER_CHECK(false, "part: expected 'transformer', 'encoder' or 'decoder', got '", part, "'");
  return TransformerPart::kFull;
}


PaddedBatch padded(const FloatArray& x, const std::optional<LengthArray>& lengths, Index d_model, const char* name,
                   const char* lengths_name) {
  check_ndim(x, 3, name);
  CPUFORMER_CHECK(x.shape(2) == d_model, name, ": expected last dimension d_model = ", d_model, ", got shape ",
                  shape_string(x));
  const Index* len = nullptr;
  if (lengths) {
    check_shape(*lengths, {x.shape(0)}, lengths_name);
    len = reinterpret_cast<const Index*>(lengths->data());
    for (Index b = 0; b < x.shape(0); ++b)
      CPUFORMER_CHECK(len[b] >= 0 && len[b] <= x.shape(1), lengths_name, ": entry ", b, " is ", len[b],
                      ", expected 0..", x.shape(1));
  }
  return PaddedBatch{x.data(), x.shape(0), x.shape(1), len};
}

AttentionMask mask_view(const std::optional<FloatArray>& mask, bool causal, Index batch, Index heads, Index q_len,
                        Index k_len, const char* name) {
  AttentionMask m;
  m.causal = causal;
  if (!mask) return m;
  const FloatArray& a = *mask;
  check_ndim(a, 4, name);
  CPUFORMER_CHECK((a.shape(0) == 1 || a.shape(0) == batch) && (a.shape(1) == 1 || a.shape(1) == heads) &&
                      (a.shape(2) == 1 || a.shape(2) == q_len) && a.shape(3) == k_len,
                  name, ": expected shape (1 or ", batch, ", 1 or ", heads, ", 1 or ", q_len, ", ", k_len, "), got ",
                  shape_string(a));
  m.additive = a.data();
  m.row_stride = a.shape(2) == 1 ? 0 : k_len;
  m.head_stride = a.shape(1) == 1 ? 0 : a.shape(2) * k_len;
  m.batch_stride = a.shape(0) == 1 ? 0 : a.shape(1) * a.shape(2) * k_len;
  return m;
}

// Refuses a call whose activations cannot fit in memory (MemoryError) before any work; the output, the
// memory kept between the stacks and every layer's workspace are counted.
void check_activations(const TransformerConfig& c, double src_tokens, double tgt_tokens, const char* args) {
  const double bytes = (src_tokens + tgt_tokens) * (activation_bytes_per_token(c) + sizeof(float) * c.d_model);
  check_fits_in_memory(bytes, detail::concat("a forward pass over ", src_tokens + tgt_tokens, " tokens (", args, ")"),
                       "for its activations");
}

class PyTransformer {
 public:
  PyTransformer(const py::dict& config, const py::dict& weights, const std::string& part) {
    const TransformerConfig c = parse_transformer_config(config);
    const WeightMap map = weight_map(weights);
    const TransformerPart p = parse_part(part);
    py::gil_scoped_release release;
    model_ = std::make_unique<TransformerModel>(c, map, p);
  }

  FloatArray encode(const FloatArray& src, const std::optional<LengthArray>& lengths,
                    const std::optional<FloatArray>& mask, bool causal) {
    const auto& c = model_->config();
    PaddedBatch s = padded(src, lengths, c.d_model, "src", "src_key_padding_mask");
    AttentionMask m = mask_view(mask, causal, s.batch, c.nhead, s.len, s.len, "mask");
    check_activations(c, static_cast<double>(s.batch) * s.len, 0.0, "src");
    FloatArray out({s.batch, s.len, c.d_model});
    py::gil_scoped_release release;
    model_->encode(s, m, out.mutable_data());
    return out;
  }

  FloatArray decode(const FloatArray& tgt, const std::optional<LengthArray>& tgt_lengths,
                    const std::optional<FloatArray>& tgt_mask, bool causal, const FloatArray& memory,
                    const std::optional<LengthArray>& memory_lengths, const std::optional<FloatArray>& memory_mask) {
    const auto& c = model_->config();
    PaddedBatch t = padded(tgt, tgt_lengths, c.d_model, "tgt", "tgt_key_padding_mask");
    PaddedBatch m = padded(memory, memory_lengths, c.d_model, "memory", "memory_key_padding_mask");
    CPUFORMER_CHECK(m.batch == t.batch, "memory: expected batch size ", t.batch, " (that of tgt), got shape ",
                    shape_string(memory));
    AttentionMask tm = mask_view(tgt_mask, causal, t.batch, c.nhead, t.len, t.len, "tgt_mask");
    AttentionMask mm = mask_view(memory_mask, false, t.batch, c.nhead, t.len, m.len, "memory_mask");
    check_activations(c, static_cast<double>(m.batch) * m.len, static_cast<double>(t.batch) * t.len, "tgt, memory");
    FloatArray out({t.batch, t.len, c.d_model});
    py::gil_scoped_release release;
    model_->decode(t, tm, m, mm, out.mutable_data());
    return out;
  }

  FloatArray forward(const FloatArray& src, const std::optional<LengthArray>& src_lengths,
                     const std::optional<FloatArray>& src_mask, bool src_causal, const FloatArray& tgt,
                     const std::optional<LengthArray>& tgt_lengths, const std::optional<FloatArray>& tgt_mask,
                     bool tgt_causal, const std::optional<LengthArray>& memory_lengths,
                     const std::optional<FloatArray>& memory_mask) {
    const auto& c = model_->config();
    PaddedBatch s = padded(src, src_lengths, c.d_model, "src", "src_key_padding_mask");
    PaddedBatch t = padded(tgt, tgt_lengths, c.d_model, "tgt", "tgt_key_padding_mask");
    CPUFORMER_CHECK(s.batch == t.batch, "tgt: expected batch size ", s.batch, " (that of src), got shape ",
                    shape_string(tgt));
    const Index* mem_len = nullptr;
    if (memory_lengths) {
      mem_len = padded(src, memory_lengths, c.d_model, "src", "memory_key_padding_mask").lengths;
    }
    AttentionMask sm = mask_view(src_mask, src_causal, s.batch, c.nhead, s.len, s.len, "src_mask");
    AttentionMask tm = mask_view(tgt_mask, tgt_causal, t.batch, c.nhead, t.len, t.len, "tgt_mask");
    AttentionMask mm = mask_view(memory_mask, false, t.batch, c.nhead, t.len, s.len, "memory_mask");
    check_activations(c, static_cast<double>(s.batch) * s.len, static_cast<double>(t.batch) * t.len, "src, tgt");
    FloatArray out({t.batch, t.len, c.d_model});
    py::gil_scoped_release release;
    model_->forward(s, sm, t, tm, mem_len, mm, out.mutable_data());
    return out;
  }

  void set_num_threads(int n) {
    check_model_num_threads(n);
    model_->set_num_threads(n);
  }
  int num_threads() const { return model_->num_threads(); }

 private:
  std::unique_ptr<TransformerModel> model_;
};

py::list weight_specs(const py::dict& config, const std::string& part) {
  py::list out;
  for (const WeightSpec& s : TransformerModel::weight_specs(parse_transformer_config(config), parse_part(part)))
    out.append(py::make_tuple(s.name, py::tuple(py::cast(s.shape))));
  return out;
}

}  // namespace

void bind_models(py::module_& m) {
  py::class_<PyTransformer>(m, "TransformerModel")
      .def(py::init<const py::dict&, const py::dict&, const std::string&>(), py::arg("config"), py::arg("weights"),
           py::arg("part"))
      .def("encode", &PyTransformer::encode, py::arg("src").noconvert(), py::arg("lengths").noconvert(),
           py::arg("mask").noconvert(), py::arg("causal"))
      .def("decode", &PyTransformer::decode, py::arg("tgt").noconvert(), py::arg("tgt_lengths").noconvert(),
           py::arg("tgt_mask").noconvert(), py::arg("causal"), py::arg("memory").noconvert(),
           py::arg("memory_lengths").noconvert(), py::arg("memory_mask").noconvert())
      .def("forward", &PyTransformer::forward, py::arg("src").noconvert(), py::arg("src_lengths").noconvert(),
           py::arg("src_mask").noconvert(), py::arg("src_causal"), py::arg("tgt").noconvert(),
           py::arg("tgt_lengths").noconvert(), py::arg("tgt_mask").noconvert(), py::arg("tgt_causal"),
           py::arg("memory_lengths").noconvert(), py::arg("memory_mask").noconvert())
      .def_property("num_threads", &PyTransformer::num_threads, &PyTransformer::set_num_threads);
  m.def("transformer_weight_specs", &weight_specs, py::arg("config"), py::arg("part"));
}

}  // namespace cpuformer::bindings
