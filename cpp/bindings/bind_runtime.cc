// cpuformer._core runtime: threads, the ISA in use (and switching it, for tests), build information.
#include <pybind11/stl.h>

#include "bindings/array_views.h"
#include "core/parallel.h"
#include "cpu/cpu_features.h"
#include "cpu/isa.h"
#include "kernels/registry.h"

#ifndef CPUFORMER_COMPILER
#define CPUFORMER_COMPILER "unknown"
#endif
#ifndef CPUFORMER_CXX_FLAGS
#define CPUFORMER_CXX_FLAGS ""
#endif

namespace cpuformer::bindings {

void bind_runtime(py::module_& m) {
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &get_num_threads);
  m.attr("max_threads") = kMaxThreads;
  m.def("isa", [] { return std::string(active_kernels().name); });
  m.def("set_isa", [](const std::string& name) { set_active_isa(parse_isa(name)); }, py::arg("name"));
  m.def("supported_isas", [] {
    std::vector<std::string> names;
    for (Isa isa : supported_isas()) names.emplace_back(isa_name(isa));
    return names;
  });
  m.def("build_info", [] {
    py::dict info;
    std::vector<std::string> compiled;
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512})
      if (isa_compiled(isa)) compiled.emplace_back(isa_name(isa));
    const CpuFeatures& f = cpu_features();
    info["compiler"] = CPUFORMER_COMPILER;
    info["cxx_flags"] = CPUFORMER_CXX_FLAGS;
    info["openmp"] = openmp_enabled();
    info["isas_compiled"] = compiled;
    std::vector<std::string> supported;
    for (Isa isa : supported_isas()) supported.emplace_back(isa_name(isa));
    info["isas_supported"] = supported;
    info["isa"] = std::string(active_kernels().name);
    info["cpu"] = f.brand;
    py::dict features;
    features["avx2"] = f.avx2;
    features["avx512"] = f.avx512;
    features["avx512_vnni"] = f.avx512_vnni;
    features["avx512_bf16"] = f.avx512_bf16;
    info["cpu_features"] = features;
    py::dict gemm;
    const auto& g = active_kernels().gemm;
    gemm["mr"] = g.mr;
    gemm["nr"] = g.nr;
    gemm["kc"] = g.kc;
    gemm["mc"] = g.mc;
    gemm["nc"] = g.nc;
    gemm["mb"] = g.mb;
    info["gemm_blocking"] = gemm;
    return info;
  });
}

}  // namespace cpuformer::bindings
