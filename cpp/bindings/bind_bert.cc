// cpuformer._core.BertModel: the BERT-family sentence encoder behind python/cpuformer/embeddings.py.
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bindings/array_views.h"
#include "bindings/config_parsing.h"
#include "core/memory_budget.h"
#include "core/parallel.h"
#include "model/bert.h"

namespace cpuformer::bindings {
namespace {

using IdArray = py::array_t<std::int64_t, py::array::c_style>;

Pooling parse_pooling(const std::string& name) {
  if (name == "mean") return Pooling::kMean;
  if (name == "cls") return Pooling::kCls;
  if (name == "max") return Pooling::kMax;
  CPUFORMER_CHECK(false, "pooling: expected 'mean', 'cls' or 'max', got '", name, "'");
  return Pooling::kMean;
}

class PyBert {
 public:
  PyBert(const py::dict& config, const py::dict& weights) {
    BertConfig c;
    py::dict stacks;
    for (auto item : config) {
      const std::string key = py::str(item.first);
      if (key == "vocab_size") c.vocab_size = item.second.cast<Index>();
      else if (key == "max_positions") c.max_positions = item.second.cast<Index>();
      else if (key == "type_vocab_size") c.type_vocab_size = item.second.cast<Index>();
      else stacks[item.first] = item.second;
    }
    c.transformer = parse_transformer_config(stacks);
    const WeightMap map = weight_map(weights);
    py::gil_scoped_release release;
    model_ = std::make_unique<BertModel>(c, map);
  }

  FloatArray embed(const IdArray& ids, const std::optional<IdArray>& token_types, const IdArray& lengths,
                   const std::string& pooling, bool normalize) {
    check_ndim(ids, 2, "input_ids");
    const Index batch = ids.shape(0), len = ids.shape(1);
    if (token_types) check_shape(*token_types, {batch, len}, "token_type_ids");
    check_shape(lengths, {batch}, "lengths");
    const Pooling p = parse_pooling(pooling);
    const double tokens = static_cast<double>(batch) * static_cast<double>(len);
    check_fits_in_memory(tokens * activation_bytes_per_token(model_->config().transformer),
                         detail::concat("embedding ", batch, " sequence(s) of up to ", len, " tokens (input_ids)"),
                         "for its activations");
    FloatArray out({batch, model_->config().transformer.d_model});
    py::gil_scoped_release release;
    model_->embed(ids.data(), token_types ? token_types->data() : nullptr, batch, len,
                  reinterpret_cast<const Index*>(lengths.data()), p, normalize, out.mutable_data());
    return out;
  }

  void set_num_threads(int n) {
    check_model_num_threads(n);
    model_->set_num_threads(n);
  }
  int num_threads() const { return model_->num_threads(); }

 private:
  std::unique_ptr<BertModel> model_;
};

}  // namespace

void bind_bert(py::module_& m) {
  py::class_<PyBert>(m, "BertModel")
      .def(py::init<const py::dict&, const py::dict&>(), py::arg("config"), py::arg("weights"))
      .def("embed", &PyBert::embed, py::arg("input_ids").noconvert(), py::arg("token_type_ids").noconvert(),
           py::arg("lengths").noconvert(), py::arg("pooling"), py::arg("normalize"))
      .def_property("num_threads", &PyBert::num_threads, &PyBert::set_num_threads);
}

}  // namespace cpuformer::bindings
