// cpuformer._core.Seq2SeqModel: the translation model (embeddings + stacks + output projection) and its
// C++ searches, behind python/cpuformer/translator.py. One generate() call decodes a whole batch.
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bindings/array_views.h"
#include "bindings/config_parsing.h"
#include "core/memory_budget.h"
#include "core/parallel.h"
#include "decode/search.h"
#include "model/seq2seq.h"

namespace cpuformer::bindings {
namespace {

using IdArray = py::array_t<std::int64_t, py::array::c_style>;

PositionalLayout parse_positional(const std::string& name) {
  if (name == "interleaved") return PositionalLayout::kInterleaved;
  if (name == "half") return PositionalLayout::kHalf;
  if (name == "none") return PositionalLayout::kNone;
  CPUFORMER_CHECK(false, "positional: expected 'interleaved', 'half' or 'none', got '", name, "'");
  return PositionalLayout::kNone;
}

Seq2SeqConfig parse_seq2seq_config(const py::dict& d) {
  Seq2SeqConfig c;
  py::dict stacks;
  for (auto item : d) {
    const std::string key = py::str(item.first);
    py::handle v = item.second;
    if (key == "src_vocab_size") c.src_vocab_size = v.cast<Index>();
    else if (key == "tgt_vocab_size") c.tgt_vocab_size = v.cast<Index>();
    else if (key == "shared_embeddings") c.shared_embeddings = v.cast<bool>();
    else if (key == "tied_output") c.tied_output = v.cast<bool>();
    else if (key == "final_logits_bias") c.final_logits_bias = v.cast<bool>();
    else if (key == "embedding_scale") c.embedding_scale = v.cast<float>();
    else if (key == "positional") c.positional = parse_positional(v.cast<std::string>());
    else if (key == "max_positions") c.max_positions = v.cast<Index>();
    else if (key == "pad_id") c.pad_id = v.cast<std::int64_t>();
    else if (key == "eos_id") c.eos_id = v.cast<std::int64_t>();
    else if (key == "decoder_start_id") c.decoder_start_id = v.cast<std::int64_t>();
    else stacks[item.first] = item.second;
  }
  c.transformer = parse_transformer_config(stacks);
  return c;
}

DecodingOptions parse_options(const py::dict& d) {
  DecodingOptions o;
  for (auto item : d) {
    const std::string key = py::str(item.first);
    py::handle v = item.second;
    if (key == "beam_size") o.beam_size = v.cast<Index>();
    else if (key == "max_length") o.max_length = v.cast<Index>();
    else if (key == "min_length") o.min_length = v.cast<Index>();
    else if (key == "length_penalty") o.length_penalty = v.cast<float>();
    else if (key == "early_stopping") o.early_stopping = v.cast<bool>();
    else if (key == "num_hypotheses") o.num_hypotheses = v.cast<Index>();
    else if (key == "sampling") o.sampling = v.cast<bool>();
    else if (key == "sampling_topk") o.sampling_topk = v.cast<Index>();
    else if (key == "sampling_topp") o.sampling_topp = v.cast<float>();
    else if (key == "temperature") o.temperature = v.cast<float>();
    else if (key == "seed") o.seed = v.cast<std::uint64_t>();
    else if (key == "force_eos_at_max_length") o.force_eos_at_max_length = v.cast<bool>();
    else if (key == "suppress_ids") o.suppress_ids = v.cast<std::vector<std::int64_t>>();
    else if (key == "eos_id") o.eos_id = v.cast<std::int64_t>();
    else if (key == "decoder_start_id") o.decoder_start_id = v.cast<std::int64_t>();
    else CPUFORMER_CHECK(false, "generate: unknown option '", key, "'");
  }
  return o;
}

const Index* lengths_of(const std::optional<IdArray>& lengths, Index batch, const char* name) {
  if (!lengths) return nullptr;
  check_shape(*lengths, {batch}, name);
  return reinterpret_cast<const Index*>(lengths->data());
}

class PySeq2Seq {
 public:
  PySeq2Seq(const py::dict& config, const py::dict& weights) {
    const Seq2SeqConfig c = parse_seq2seq_config(config);
    const WeightMap map = weight_map(weights);
    py::gil_scoped_release release;
    model_ = std::make_unique<Seq2SeqModel>(c, map);
  }

  py::tuple generate(const IdArray& src, const std::optional<IdArray>& lengths, const py::dict& options) {
    check_ndim(src, 2, "source_ids");
    const Index batch = src.shape(0), len = src.shape(1);
    const Index* lens = lengths_of(lengths, batch, "lengths");
    DecodingOptions o = parse_options(options);
    DecodingResult result;
    {
      py::gil_scoped_release release;
      result = cpuformer::generate(*model_, src.data(), batch, len, lens, o);
    }
    py::list ids, scores;
    for (const auto& hyps : result) {
      py::list sent_ids, sent_scores;
      for (const Hypothesis& h : hyps) {
        sent_ids.append(py::cast(h.tokens));
        sent_scores.append(h.score);
      }
      ids.append(sent_ids);
      scores.append(sent_scores);
    }
    return py::make_tuple(ids, scores);
  }

  FloatArray forward_log_probs(const IdArray& src, const std::optional<IdArray>& src_lengths, const IdArray& tgt,
                               const std::optional<IdArray>& tgt_lengths) {
    check_ndim(src, 2, "source_ids");
    check_ndim(tgt, 2, "target_ids");
    CPUFORMER_CHECK(tgt.shape(0) == src.shape(0), "target_ids: expected ", src.shape(0),
                    " sentences (as source_ids), got shape ", shape_string(tgt));
    const Index batch = src.shape(0);
    const Index* sl = lengths_of(src_lengths, batch, "source_lengths");
    const Index* tl = lengths_of(tgt_lengths, batch, "target_lengths");
    model_->check_source(src.data(), batch, src.shape(1), sl);
    const Index vocab = model_->config().tgt_vocab_size;
    check_fits_in_memory(model_->log_probs_bytes(batch, src.shape(1), tgt.shape(1)),
                         detail::concat("log_probs of ", batch, " sentence(s) of ", src.shape(1), " source and ",
                                        tgt.shape(1), " target tokens (source_ids, target_ids)"),
                         "for its activations and log-probabilities");
    FloatArray out({batch, static_cast<Index>(tgt.shape(1)), vocab});
    py::gil_scoped_release release;
    model_->forward_log_probs(src.data(), batch, src.shape(1), sl, tgt.data(), tgt.shape(1), tl, out.mutable_data());
    return out;
  }

  void set_num_threads(int n) {
    check_model_num_threads(n);
    model_->set_num_threads(n);
  }
  int num_threads() const { return model_->num_threads(); }

 private:
  std::unique_ptr<Seq2SeqModel> model_;
};

py::list seq2seq_weight_specs(const py::dict& config) {
  py::list out;
  for (const WeightSpec& s : Seq2SeqModel::weight_specs(parse_seq2seq_config(config)))
    out.append(py::make_tuple(s.name, py::tuple(py::cast(s.shape))));
  return out;
}

}  // namespace

void bind_seq2seq(py::module_& m) {
  py::class_<PySeq2Seq>(m, "Seq2SeqModel")
      .def(py::init<const py::dict&, const py::dict&>(), py::arg("config"), py::arg("weights"))
      .def("generate", &PySeq2Seq::generate, py::arg("source_ids").noconvert(), py::arg("lengths").noconvert(),
           py::arg("options"))
      .def("forward_log_probs", &PySeq2Seq::forward_log_probs, py::arg("source_ids").noconvert(),
           py::arg("source_lengths").noconvert(), py::arg("target_ids").noconvert(),
           py::arg("target_lengths").noconvert())
      .def_property("num_threads", &PySeq2Seq::num_threads, &PySeq2Seq::set_num_threads);
  m.def("seq2seq_weight_specs", &seq2seq_weight_specs, py::arg("config"));
}

}  // namespace cpuformer::bindings
