// Threading: one OpenMP runtime, a process-wide default thread count that honours OMP_NUM_THREADS and
// the affinity mask, and parallel_for that runs inline when the range is small, when one thread is
// asked for, or when already inside a parallel region (no nested oversubscription).
// Work is always split so that no reduction changes order with the thread count.
#pragma once

#include <functional>

#include "core/dims.h"

namespace cpuformer {

// The most threads a call may use. Far more than any CPU offers, and far fewer than the count at which
// creating the threads fails (100,000 crashed the process, inside OpenMP, before this bound).
constexpr int kMaxThreads = 1024;

int default_num_threads();        // what OpenMP would use: OMP_NUM_THREADS or the CPUs we may run on (capped)
int get_num_threads();            // the current setting (1 in a process forked from one that used threads)
void set_num_threads(int count);  // 1 <= count <= kMaxThreads
// A model's own thread count: 0 (the process default) to kMaxThreads; a clear error otherwise.
void check_model_num_threads(int count);
bool openmp_enabled();

// Calls body(begin, end) on disjoint chunks covering [0, count); `threads` <= 0 means get_num_threads().
// Chunks are contiguous and at most one per thread, so callers may keep per-call scratch per chunk.
// body must not throw (an exception cannot leave an OpenMP region).
void parallel_for(Index count, const std::function<void(Index, Index)>& body, int threads = 0);

// Like parallel_for, but the threads claim pieces of [0, count) as they become free, largest first
// (guided scheduling: each piece about a 2 · threads-th of what is left, a multiple of `grain`, at least
// `grain`), so a thread slowed by other work on the machine hands its share to the others instead of
// making them wait. body may run several times on one thread; the pieces never overlap.
void parallel_for_guided(Index count, Index grain, const std::function<void(Index, Index)>& body, int threads = 0);

// True in a child created by fork() after cpuformer was loaded: OpenMP's thread pool does not survive
// fork, so such a child runs single-threaded instead of hanging.
bool in_forked_child();

// Index of the calling thread inside parallel_for's body (0 when inline).
int thread_index();

}  // namespace cpuformer
