// cpuformer._core.attention: fused scaled-dot-product attention over 4-D [B, H, L, E] float32 views.
// Unlike the other bindings, q, k, v, mask and out may be strided views (rows must be contiguous):
// reading Q/K/V in place from a fused QKV projection, or a mask broadcast with zero strides, is what
// the op is for. The Python wrapper (cpuformer.ops.scaled_dot_product_attention) handles torch's
// argument conventions; this binding only checks shapes and strides and forwards them.
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <optional>

#include "bindings/array_views.h"
#include "ops/attention.h"

namespace cpuformer::bindings {
namespace {

// float32 with any strides (no conversion: the caller's view is read in place).
using StridedArray = py::array_t<float>;
using LengthArray = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

struct View4 {
  Index stride[4];  // in elements
};

View4 view4(const py::array& a, const char* name) {
  check_ndim(a, 4, name);
  View4 v{};
  if (a.size() == 0) return v;  // NumPy gives empty arrays arbitrary strides; nothing is read or written
  for (int d = 0; d < 4; ++d) {
    const py::ssize_t s = a.strides(d);
    CPUFORMER_CHECK(s % static_cast<py::ssize_t>(sizeof(float)) == 0, name,
                    ": strides must be multiples of 4 bytes, got ", s, " in dimension ", d);
    v.stride[d] = s / static_cast<py::ssize_t>(sizeof(float));
  }
  CPUFORMER_CHECK(a.shape(3) <= 1 || v.stride[3] == 1, name,
                  ": the last dimension must be contiguous, got a stride of ", a.strides(3), " bytes");
  return v;
}

py::array attention(const StridedArray& q, const StridedArray& k, const StridedArray& v, float scale, bool causal,
                    Index causal_offset, const std::optional<LengthArray>& key_lengths,
                    const std::optional<StridedArray>& mask, const py::object& out) {
  const View4 qv = view4(q, "q"), kv = view4(k, "k"), vv = view4(v, "v");
  const Index batch = q.shape(0), heads = q.shape(1), q_len = q.shape(2), dh = q.shape(3);
  const Index k_len = k.shape(2), dv = v.shape(3);
  CPUFORMER_CHECK(k.shape(0) == batch && k.shape(1) == heads && k.shape(3) == dh, "k: expected shape (", batch,
                  ", ", heads, ", S, ", dh, ") to match q ", shape_string(q), ", got ", shape_string(k));
  CPUFORMER_CHECK(v.shape(0) == batch && v.shape(1) == heads && v.shape(2) == k_len, "v: expected shape (", batch,
                  ", ", heads, ", ", k_len, ", Ev) to match q ", shape_string(q), " and k ", shape_string(k),
                  ", got ", shape_string(v));
  CPUFORMER_CHECK(std::isfinite(scale), "scale: expected a finite number, got ", scale);
  if (key_lengths) check_shape(*key_lengths, {batch}, "key_lengths");
  View4 mv{};
  if (mask) {
    mv = view4(*mask, "mask");
    check_shape(*mask, {batch, heads, q_len, k_len}, "mask");
  }
  py::array result;
  if (out.is_none()) {
    result = FloatArray(std::vector<py::ssize_t>{batch, heads, q_len, dv});
  } else {
    CPUFORMER_CHECK(py::isinstance<StridedArray>(out), "out: expected a float32 array");
    result = py::reinterpret_borrow<py::array>(out);
    check_shape(result, {batch, heads, q_len, dv}, "out");
    CPUFORMER_CHECK(result.writeable(), "out: the array is read-only");
  }
  const View4 ov = view4(result, "out");
  AttentionArgs args{batch, heads, q_len, k_len, dh,
                     q.data(), qv.stride[0], qv.stride[1], qv.stride[2],
                     k.data(), kv.stride[0], kv.stride[1], kv.stride[2],
                     v.data(), vv.stride[0], vv.stride[1], vv.stride[2],
                     static_cast<float*>(result.mutable_data()), ov.stride[0], ov.stride[1], ov.stride[2],
                     scale};
  args.causal = causal;
  args.causal_offset = causal_offset;
  static_assert(sizeof(Index) == sizeof(std::int64_t), "key_lengths are passed as int64");
  args.key_lengths = key_lengths ? reinterpret_cast<const Index*>(key_lengths->data()) : nullptr;
  if (mask) {
    args.mask = mask->data();
    args.mask_batch_stride = mv.stride[0];
    args.mask_head_stride = mv.stride[1];
    args.mask_row_stride = mv.stride[2];
  }
  args.v_head_dim = dv;
  {
    py::gil_scoped_release release;
    cpuformer::attention(args);
  }
  return result;
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def("attention", &attention, py::arg("q").noconvert(), py::arg("k").noconvert(), py::arg("v").noconvert(),
        py::arg("scale"), py::arg("causal") = false, py::arg("causal_offset") = 0, py::arg("key_lengths") = py::none(),
        py::arg("mask").noconvert() = py::none(), py::arg("out") = py::none(),
        R"doc(Fused attention on float32 views q [B, H, L, E], k [B, H, S, E], v [B, H, S, Ev] (any strides,
contiguous rows): out = softmax(scale * q @ k^T + mask, masked keys excluded) @ v, [B, H, L, Ev].
causal masks key j for query i when j > i + causal_offset; key_lengths [B] (int64) masks keys >=
key_lengths[b]; mask is an additive float32 [B, H, L, S] view (zero strides broadcast). Rows with every
key masked give zeros. out (optional, any strides) must not overlap the inputs.)doc");
}

}  // namespace cpuformer::bindings
