// The cpuformer._core extension module: one bind_<area> function per file, registered here.
// Choosing the ISA at import makes a bad CPUFORMER_ISA fail `import cpuformer` with a clear message.
#include <pybind11/pybind11.h>

#include "core/memory_budget.h"
#include "kernels/registry.h"

namespace py = pybind11;

namespace cpuformer::bindings {
void bind_runtime(py::module_& m);
void bind_ops(py::module_& m);
void bind_attention(py::module_& m);
void bind_models(py::module_& m);
void bind_seq2seq(py::module_& m);
void bind_bert(py::module_& m);
}  // namespace cpuformer::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "cpuformer's C++ core (kernels, layers, models). Use the cpuformer package, not this module.";
  cpuformer::active_kernels();
  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const cpuformer::OutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    }
  });
  cpuformer::bindings::bind_runtime(m);
  cpuformer::bindings::bind_ops(m);
  cpuformer::bindings::bind_attention(m);
  cpuformer::bindings::bind_models(m);
  cpuformer::bindings::bind_seq2seq(m);
  cpuformer::bindings::bind_bert(m);
}
