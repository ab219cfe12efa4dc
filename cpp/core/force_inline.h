// CPUFORMER_FORCE_INLINE: for a lambda in a hot loop that the compiler would otherwise outline, where
// the outlined copy reloads its captured references on every iteration.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define CPUFORMER_FORCE_INLINE __attribute__((always_inline))
#else
#define CPUFORMER_FORCE_INLINE
#endif
