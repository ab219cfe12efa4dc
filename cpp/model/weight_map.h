// Named weights handed to a model (views of caller-owned float32 arrays) and their validation against
// what the model expects: every problem (missing, unexpected, wrongly shaped keys) is reported at once,
// before anything is built. Models copy what they keep (packing), so the arrays may be freed afterwards.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/dims.h"

namespace cpuformer {

struct WeightView {
  const float* data = nullptr;
  std::vector<Index> shape;
};

struct WeightSpec {
  std::string name;
  std::vector<Index> shape;
};

class WeightMap {
 public:
  void add(const std::string& name, const float* data, std::vector<Index> shape);

  // Throws std::invalid_argument listing missing, unexpected and wrongly shaped keys.
  void validate(const std::vector<WeightSpec>& expected, const char* what) const;

  // The weight (validated beforehand) or null when absent.
  const float* get(const std::string& name) const;

 private:
  std::map<std::string, WeightView> weights_;
};

std::string shape_to_string(const std::vector<Index>& shape);

}  // namespace cpuformer
