#include "model/weight_map.h"

#include <set>
#include <sstream>

#include "core/check.h"

namespace cpuformer {

std::string shape_to_string(const std::vector<Index>& shape) {
  std::ostringstream out;
  out << "(";
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

void WeightMap::add(const std::string& name, const float* data, std::vector<Index> shape) {
  weights_[name] = WeightView{data, std::move(shape)};
}

void WeightMap::validate(const std::vector<WeightSpec>& expected, const char* what) const {
  std::vector<std::string> missing, wrong, unexpected;
  std::set<std::string> names;
  for (const WeightSpec& spec : expected) {
    names.insert(spec.name);
    auto it = weights_.find(spec.name);
    if (it == weights_.end()) {
      missing.push_back(spec.name);
    } else if (it->second.shape != spec.shape) {
      wrong.push_back(spec.name + " (expected " + shape_to_string(spec.shape) + ", got " +
                      shape_to_string(it->second.shape) + ")");
    }
  }
  for (const auto& kv : weights_)
    if (!names.count(kv.first)) unexpected.push_back(kv.first);
  if (missing.empty() && wrong.empty() && unexpected.empty()) return;
  std::ostringstream msg;
  msg << "state_dict: does not match the " << what << " configuration:";
  auto list = [&](const char* title, const std::vector<std::string>& items) {
    if (items.empty()) return;
    msg << "\n  " << title << " (" << items.size() << "):";
    const std::size_t shown = items.size() < 20 ? items.size() : 20;
    for (std::size_t i = 0; i < shown; ++i) msg << "\n    " << items[i];
    if (shown < items.size()) msg << "\n    ... and " << items.size() - shown << " more";
  };
  list("missing keys", missing);
  list("unexpected keys", unexpected);
  list("wrong shapes", wrong);
  throw std::invalid_argument(msg.str());
}

const float* WeightMap::get(const std::string& name) const {
  auto it = weights_.find(name);
  return it == weights_.end() ? nullptr : it->second.data;
}

}  // namespace cpuformer
