// What the CPU and the operating system support, read once with cpuid + xgetbv. The OS check matters:
// a CPU with AVX-512 under an OS that does not save the zmm registers must not run AVX-512 code.
// On non-x86 machines every flag is false and only the scalar path is used.
#pragma once

#include <string>

namespace cpuformer {

struct CpuFeatures {
  bool avx2 = false;         // AVX2 + FMA + F16C, with ymm state enabled by the OS
  bool avx512 = false;       // AVX-512 F/CD/BW/DQ/VL, with zmm and opmask state enabled by the OS
  bool avx512_vnni = false;  // int8 dot products (for a future int8 packing)
  bool avx512_bf16 = false;  // bf16 dot products (for a future bf16 packing)
  std::string brand;         // the CPU's brand string, for build_info()
};

const CpuFeatures& cpu_features();

}  // namespace cpuformer
