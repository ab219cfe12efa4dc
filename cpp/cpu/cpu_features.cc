#include "cpu/cpu_features.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define CPUFORMER_X86 1
#include <cpuid.h>
#endif

namespace cpuformer {
namespace {

#ifdef CPUFORMER_X86
struct Regs {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

Regs cpuid(unsigned leaf, unsigned subleaf) {
  Regs r;
  __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
  return r;
}

std::uint64_t xgetbv0() {
  unsigned lo = 0, hi = 0;
  // xgetbv with ecx = 0 reads XCR0; encoded as bytes so no -mxsave flag is needed.
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<std::uint64_t>(hi) << 32) | lo;
}

bool bit(unsigned value, int n) { return (value >> n) & 1u; }

CpuFeatures detect() {
  CpuFeatures f;
  const unsigned max_leaf = cpuid(0, 0).eax;
  const Regs l1 = cpuid(1, 0);
  const bool osxsave = bit(l1.ecx, 27);
  const bool fma = bit(l1.ecx, 12), f16c = bit(l1.ecx, 29), avx = bit(l1.ecx, 28);
  std::uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool ymm_state = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
  const bool zmm_state = ymm_state && (xcr0 & 0xe0) == 0xe0;  // opmask + ZMM_Hi256 + Hi16_ZMM
  if (max_leaf >= 7) {
    const Regs l7 = cpuid(7, 0);
    const bool avx2 = bit(l7.ebx, 5);
    f.avx2 = avx && avx2 && fma && f16c && ymm_state;
    const bool avx512f = bit(l7.ebx, 16), dq = bit(l7.ebx, 17), cd = bit(l7.ebx, 28),
               bw = bit(l7.ebx, 30), vl = bit(l7.ebx, 31);
    f.avx512 = f.avx2 && avx512f && dq && cd && bw && vl && zmm_state;
    f.avx512_vnni = f.avx512 && bit(l7.ecx, 11);
    const Regs l7_1 = cpuid(7, 1);
    f.avx512_bf16 = f.avx512 && bit(l7_1.eax, 5);
  }
  if (cpuid(0x80000000u, 0).eax >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      const Regs r = cpuid(0x80000002u + i, 0);
      std::memcpy(brand + 16 * i, &r, 16);
    }
    f.brand = brand;
    while (!f.brand.empty() && f.brand.back() == ' ') f.brand.pop_back();
  }
  return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

}  // namespace cpuformer
