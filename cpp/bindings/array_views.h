// Helpers shared by the bind_*.cc files: typed, C-contiguous float32 arrays in and out, and shape checks
// whose messages name the Python argument. The only header besides the bind files that sees pybind11.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/dims.h"

namespace cpuformer::bindings {

namespace py = pybind11;

// Exactly float32 and C-contiguous; the Python layer converts other inputs once, visibly.
using FloatArray = py::array_t<float, py::array::c_style>;

inline std::string shape_string(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  return s + (a.ndim() == 1 ? ",)" : ")");
}

inline void check_ndim(const py::array& a, py::ssize_t ndim, const char* name) {
  CPUFORMER_CHECK(a.ndim() == ndim, name, ": expected a ", ndim, "-D array, got shape ", shape_string(a));
}

inline void check_shape(const py::array& a, const std::vector<py::ssize_t>& shape, const char* name) {
  bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (std::size_t i = 0; same && i < shape.size(); ++i) same = a.shape(i) == shape[i];
  if (!same) {
    std::string want = "(";
    for (std::size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    want += shape.size() == 1 ? ",)" : ")";
    CPUFORMER_CHECK(false, name, ": expected shape ", want, ", got ", shape_string(a));
  }
}

// The output array: `out` when given, else a new one, allocated with the GIL held. A given `out` is
// checked as the Python layer checks it, with the same exceptions and messages: an ndarray (TypeError),
// float32 (TypeError), of `shape`, C-contiguous, writeable, and sharing no memory with `inputs` (all
// C-contiguous, so sharing memory is overlapping byte ranges).
inline FloatArray output(const py::object& out, const std::vector<py::ssize_t>& shape, const char* name = "out",
                         std::initializer_list<const py::array*> inputs = {}) {
  if (out.is_none()) return FloatArray(shape);
  const bool ok = py::isinstance<FloatArray>(out);  // float32 and C-contiguous: one check, the common case
  if (!ok && !py::isinstance<py::array>(out))
    throw py::type_error(std::string(name) + ": expected a numpy.ndarray, got " +
                         py::str(py::type::handle_of(out).attr("__name__")).cast<std::string>());
  auto arr = py::reinterpret_borrow<py::array>(out);
  if (!ok && !py::isinstance<py::array_t<float>>(out))
    throw py::type_error(std::string(name) + ": expected dtype float32, got " + py::str(arr.dtype()).cast<std::string>());
  check_shape(arr, shape, name);
  CPUFORMER_CHECK(ok, name, ": expected a C-contiguous array");
  CPUFORMER_CHECK(arr.writeable(), name, ": the array is read-only");
  const char* begin = static_cast<const char*>(arr.data());
  const char* end = begin + arr.nbytes();
  for (const py::array* in : inputs) {
    if (in == nullptr || in->nbytes() == 0) continue;
    const char* b = static_cast<const char*>(in->data());
    CPUFORMER_CHECK(!(b < end && begin < b + in->nbytes()), name, ": must not overlap the inputs of this operation");
  }
  return py::reinterpret_borrow<FloatArray>(out);
}

inline const float* optional_data(const std::optional<FloatArray>& a) { return a ? a->data() : nullptr; }

}  // namespace cpuformer::bindings
