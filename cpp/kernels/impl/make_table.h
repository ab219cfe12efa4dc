// Builds an ISA's KernelTable from its Vec trait and tile sizes, in the one translation unit of that ISA
// (compiled with its flags). The table is a constant initialised at compile time, so no ISA code runs at
// load before the CPU has been checked. Every template here takes the ISA's Vec, which lives in an
// anonymous namespace: all instantiations get internal linkage and the linker can never hand an AVX-512
// copy of an inline function to baseline code. The only symbol an ISA unit exports is its kKernelTable.
#pragma once

#include <utility>

#include "kernels/impl/attention_rows.h"
#include "kernels/impl/gemm_microkernel.h"
#include "kernels/impl/rowwise.h"
#include "kernels/kernel_table.h"

namespace cpuformer::impl {

// Blocking sizes of the packed-A GEMM path, per ISA (see GemmBlocking and ops/gemm.cc).
struct Blocking {
  int kc, mc, nc, mb;
};

template <class V, int MR, int NR>
constexpr KernelTable make_kernel_table(Isa isa, const char* name, Blocking b) {
  using K = GemmMicroKernels<V, MR, NR>;
  constexpr auto packed = K::template make<true>(std::make_index_sequence<kMaxTileRows>{});
  constexpr auto rowmajor = K::template make<false>(std::make_index_sequence<kMaxTileRows>{});
  constexpr auto packing_b = K::make_packing_b(std::make_index_sequence<kMaxTileRows>{});
  KernelTable t{};
  t.isa = isa;
  t.name = name;
  t.vector_width = V::kWidth;
  t.gemm = GemmBlocking{MR, NR, b.kc, b.mc, b.nc, b.mb};
  for (int i = 0; i < kMaxTileRows; ++i) {
    t.gemm_packed_a[i] = packed.fn[i];
    t.gemm_rowmajor_a[i] = rowmajor.fn[i];
    t.gemm_rowmajor_a_packing_b[i] = packing_b.fn[i];
  }
  t.pack_a = &pack_a<V, MR>;
  t.gemm_rows_stream = &gemm_rows_stream<V>;
  t.gemm_rows_panels = &gemm_rows_panels<V, NR>;
  t.pack_b_transposed = &pack_b_transposed<V, NR>;
  t.pack_b_rows = &pack_b_rows<V, NR>;
  t.softmax_row = &softmax_row<V>;
  t.log_softmax_row = &log_softmax_row<V>;
  t.argmax_row = &argmax_row<V>;
  t.layer_norm_row = &layer_norm_row<V>;
  t.bias_activation_row = &bias_activation_row<V>;
  t.attention_softmax_tile = &attention_softmax_tile<V>;
  t.scale_row = &scale_row<V>;
  return t;
}

}  // namespace cpuformer::impl
