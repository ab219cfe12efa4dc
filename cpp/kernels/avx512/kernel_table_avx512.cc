// The AVX-512 path (32 zmm registers): a 14 × 32 tile uses 28 accumulators, 2 B vectors and a broadcast
// folded into the FMA's memory operand; two FMA ports need ≥ 8 independent chains, 28 hide latency well.
// Blocking (measured on a 2 MiB-L2 core): kc 2048 makes one pass over C for every Transformer product;
// against kc 512, the 2048-deep feed-forward output and 1024^3 ran 2-5% faster (with chunks of A scaled
// to the same bytes, see kRowBlockDepth), the rest alike; kc 256 cost 3-5% in C reloads. A 512 × 16 · 32 B
// block is 1 MiB of L2; A is packed 980 rows at a time when B is wide, so the vocabulary projection
// reads B from memory once per 980 rows, not per 98.
#include "kernels/impl/make_table.h"
#include "kernels/vec/vec_avx512.h"

namespace cpuformer::avx512 {

constexpr KernelTable kKernelTable =
    impl::make_kernel_table<Vec, /*MR=*/14, /*NR=*/32>(Isa::kAvx512, "avx512", {/*kc=*/2048, /*mc=*/98, /*nc=*/16, /*mb=*/980});

}  // namespace cpuformer::avx512
