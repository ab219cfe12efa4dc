// cpuformer._core kernels: matmul (raw or packed B), batched matmul, softmax, argmax, layer_norm, bias+activation.
// Arrays arrive float32 C-contiguous (converted by python/cpuformer/ops.py); leading dimensions are
// flattened there, so the bindings see 2-D row blocks.
#include <pybind11/stl.h>

#include "bindings/array_views.h"
#include "kernels/registry.h"
#include "ops/batched_gemm.h"
#include "ops/gemm.h"
#include "ops/packed_weight.h"
#include "ops/positional_encoding.h"
#include "ops/rowwise.h"

namespace cpuformer::bindings {
namespace {

void check_bias(const std::optional<FloatArray>& bias, py::ssize_t n) {
  if (bias) check_shape(*bias, {n}, "bias");
}

FloatArray matmul(const FloatArray& a, const FloatArray& b, bool trans_b, const std::optional<FloatArray>& bias,
                  Activation act, const py::object& out) {
  check_ndim(a, 2, "a");
  check_ndim(b, 2, "b");
  const Index m = a.shape(0), k = a.shape(1);
  const Index kb = trans_b ? b.shape(1) : b.shape(0), n = trans_b ? b.shape(0) : b.shape(1);
  CPUFORMER_CHECK(kb == k, "b: expected ", trans_b ? "[N, K]" : "[K, N]", " with K = ", k,
                  " (the last dimension of a), got shape ", shape_string(b));
  check_bias(bias, n);
  FloatArray c = output(out, {m, n}, "out", {&a, &b, bias ? &*bias : nullptr});
  {
    py::gil_scoped_release release;
    GemmOutput o{c.mutable_data(), n, optional_data(bias), act};
    gemm(active_kernels(), a.data(), k, m, k, b.data(), b.shape(1), n, trans_b, o);
  }
  return c;
}

FloatArray matmul_packed(const FloatArray& a, const PackedWeight& w, const std::optional<FloatArray>& bias,
                         Activation act, const py::object& out) {
  check_ndim(a, 2, "a");
  CPUFORMER_CHECK(a.shape(1) == w.k(), "a: expected last dimension K = ", w.k(),
                  " (the packed weight's K), got shape ", shape_string(a));
  check_bias(bias, w.n());
  FloatArray c = output(out, {a.shape(0), w.n()}, "out", {&a, bias ? &*bias : nullptr});
  {
    py::gil_scoped_release release;
    GemmOutput o{c.mutable_data(), w.n(), optional_data(bias), act};
    gemm(a.data(), a.shape(1), a.shape(0), w, o);
  }
  return c;
}

FloatArray batched_matmul(const FloatArray& a, const FloatArray& b, bool trans_b, const py::object& out) {
  check_ndim(a, 3, "a");
  check_ndim(b, 3, "b");
  const Index batch = a.shape(0), m = a.shape(1), k = a.shape(2);
  const Index kb = trans_b ? b.shape(2) : b.shape(1), n = trans_b ? b.shape(1) : b.shape(2);
  CPUFORMER_CHECK(b.shape(0) == batch && kb == k, "b: expected ", trans_b ? "[batch, N, K]" : "[batch, K, N]",
                  " with batch = ", batch, " and K = ", k, ", got shape ", shape_string(b));
  FloatArray c = output(out, {batch, m, n});
  {
    py::gil_scoped_release release;
    batched_gemm(a.data(), b.data(), c.mutable_data(), batch, m, k, n, trans_b);
  }
  return c;
}

FloatArray softmax(const FloatArray& x, const py::object& out) {
  check_ndim(x, 2, "x");
  FloatArray y = output(out, {x.shape(0), x.shape(1)});
  {
    py::gil_scoped_release release;
    softmax_rows(x.data(), y.mutable_data(), x.shape(0), x.shape(1));
  }
  return y;
}

py::array_t<std::int64_t> argmax(const FloatArray& x) {
  check_ndim(x, 2, "x");
  py::array_t<std::int64_t> idx(x.shape(0));
  static_assert(sizeof(Index) == sizeof(std::int64_t), "Index is 64-bit");
  {
    py::gil_scoped_release release;
    argmax_rows(x.data(), x.shape(0), x.shape(1), reinterpret_cast<Index*>(idx.mutable_data()));
  }
  return idx;
}

FloatArray layer_norm(const FloatArray& x, const FloatArray& weight, const FloatArray& bias, float eps,
                      const std::optional<FloatArray>& residual, const py::object& out) {
  check_ndim(x, 2, "x");
  const Index rows = x.shape(0), n = x.shape(1);
  check_shape(weight, {n}, "weight");
  check_shape(bias, {n}, "bias");
  if (residual) check_shape(*residual, {rows, n}, "residual");
  CPUFORMER_CHECK(eps >= 0.0f, "eps: expected a non-negative number, got ", eps);
  FloatArray y = output(out, {rows, n});
  {
    py::gil_scoped_release release;
    layer_norm_rows(x.data(), optional_data(residual), weight.data(), bias.data(), eps, y.mutable_data(), rows, n);
  }
  return y;
}

FloatArray bias_activation(const FloatArray& x, const std::optional<FloatArray>& bias, Activation act,
                           const py::object& out) {
  check_ndim(x, 2, "x");
  check_bias(bias, x.shape(1));
  FloatArray y = output(out, {x.shape(0), x.shape(1)});
  {
    py::gil_scoped_release release;
    bias_activation_rows(x.data(), optional_data(bias), act, y.mutable_data(), x.shape(0), x.shape(1));
  }
  return y;
}

FloatArray positional_encoding_array(Index length, Index d_model) {
  CPUFORMER_CHECK(length >= 0, "length: expected a non-negative integer, got ", length);
  CPUFORMER_CHECK(d_model > 0, "d_model: expected a positive integer, got ", d_model);
  FloatArray out({length, d_model});
  py::gil_scoped_release release;
  positional_encoding(length, d_model, out.mutable_data());
  return out;
}

}  // namespace

void bind_ops(py::module_& m) {
  py::enum_<Activation>(m, "Activation")
      .value("none", Activation::kNone)
      .value("relu", Activation::kRelu)
      .value("gelu", Activation::kGeluErf)
      .value("gelu_tanh", Activation::kGeluTanh)
      .value("silu", Activation::kSilu);

  py::class_<PackedWeight>(m, "PackedWeight",
                           "A weight matrix packed once into the active ISA's GEMM layout (logical shape [K, N]).")
      .def(py::init([](const FloatArray& w, bool transposed) {
             check_ndim(w, 2, "weight");
             const Index k = transposed ? w.shape(1) : w.shape(0), n = transposed ? w.shape(0) : w.shape(1);
             py::gil_scoped_release release;
             return new PackedWeight(active_kernels(), w.data(), w.shape(1), k, n, transposed);
           }),
           py::arg("weight").noconvert(), py::arg("transposed"))
      .def_property_readonly("k", &PackedWeight::k)
      .def_property_readonly("n", &PackedWeight::n)
      .def_property_readonly("nbytes", &PackedWeight::bytes)
      .def_property_readonly("isa", [](const PackedWeight& w) { return std::string(w.kernels().name); });

  m.def("matmul", &matmul, py::arg("a").noconvert(), py::arg("b").noconvert(), py::arg("trans_b"),
        py::arg("bias").noconvert(), py::arg("activation"), py::arg("out"));
  m.def("matmul_packed", &matmul_packed, py::arg("a").noconvert(), py::arg("weight"), py::arg("bias").noconvert(),
        py::arg("activation"), py::arg("out"));
  m.def("batched_matmul", &batched_matmul, py::arg("a").noconvert(), py::arg("b").noconvert(), py::arg("trans_b"),
        py::arg("out"));
  m.def("positional_encoding", &positional_encoding_array, py::arg("length"), py::arg("d_model"));
  m.def("softmax", &softmax, py::arg("x").noconvert(), py::arg("out"));
  m.def("argmax", &argmax, py::arg("x").noconvert());
  m.def("layer_norm", &layer_norm, py::arg("x").noconvert(), py::arg("weight").noconvert(),
        py::arg("bias").noconvert(), py::arg("eps"), py::arg("residual").noconvert(), py::arg("out"));
  m.def("bias_activation", &bias_activation, py::arg("x").noconvert(), py::arg("bias").noconvert(),
        py::arg("activation"), py::arg("out"));
}

}  // namespace cpuformer::bindings
