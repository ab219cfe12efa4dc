#include "core/parallel.h"

#include <algorithm>
#include <atomic>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define CPUFORMER_HAVE_ATFORK 1
#endif

#include "core/check.h"

#ifdef CPUFORMER_WITH_OPENMP
#include <omp.h>
#endif

namespace cpuformer {
namespace {
std::atomic<int> g_num_threads{0};  // 0 = not yet initialised

// libgomp's thread pool does not survive fork(): a child that enters a parallel region the parent had
// used hangs forever (gunicorn, multiprocessing's default start method on Linux). A forked child
// therefore runs everything on its calling thread.
std::atomic<bool> g_forked_child{false};

void mark_forked_child() { g_forked_child.store(true, std::memory_order_relaxed); }

bool register_fork_handler() {
#ifdef CPUFORMER_HAVE_ATFORK
  pthread_atfork(nullptr, nullptr, &mark_forked_child);
#endif
  return true;
}

const bool g_fork_handler_registered = register_fork_handler();
}  // namespace

bool in_forked_child() { return g_forked_child.load(std::memory_order_relaxed); }

int default_num_threads() {
#ifdef CPUFORMER_WITH_OPENMP
  return std::clamp(omp_get_max_threads(), 1, kMaxThreads);  // OMP_NUM_THREADS=100000 must not crash
#else
  return 1;
#endif
}

int get_num_threads() {
  if (in_forked_child()) return 1;
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    n = default_num_threads();
    g_num_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int count) {
  CPUFORMER_CHECK(count >= 1 && count <= kMaxThreads, "num_threads: expected an integer in [1, ", kMaxThreads,
                  "], got ", count);
#ifndef CPUFORMER_WITH_OPENMP
  count = 1;
#endif
  g_num_threads.store(count, std::memory_order_relaxed);
}

void check_model_num_threads(int count) {
  CPUFORMER_CHECK(count >= 0 && count <= kMaxThreads, "num_threads: expected an integer in [0, ", kMaxThreads,
                  "] (0 = the process default), got ", count);
}

bool openmp_enabled() {
#ifdef CPUFORMER_WITH_OPENMP
  return true;
#else
  return false;
#endif
}

int thread_index() {
#ifdef CPUFORMER_WITH_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

namespace {

// The threads a call over `pieces` independent pieces runs on: the request (the setting when <= 0), one
// in a forked child, never more than kMaxThreads or than there are pieces.
int threads_for(Index pieces, int threads) {
  if (threads <= 0) threads = get_num_threads();
  if (in_forked_child()) threads = 1;
  return static_cast<int>(std::min<Index>(std::min(threads, kMaxThreads), pieces));
}

}  // namespace

void parallel_for(Index count, const std::function<void(Index, Index)>& body, int threads) {
  if (count <= 0) return;
  threads = threads_for(count, threads);
#ifdef CPUFORMER_WITH_OPENMP
  if (threads > 1 && !omp_in_parallel()) {
#pragma omp parallel num_threads(threads)
    {
      const Index nt = omp_get_num_threads();
      const Index t = omp_get_thread_num();
      const Index begin = count * t / nt;
      const Index end = count * (t + 1) / nt;
      if (begin < end) body(begin, end);
    }
    return;
  }
#endif
  body(0, count);
}

void parallel_for_guided(Index count, Index grain, const std::function<void(Index, Index)>& body, int threads) {
  if (count <= 0) return;
  grain = std::max<Index>(grain, 1);
  threads = threads_for((count + grain - 1) / grain, threads);
#ifdef CPUFORMER_WITH_OPENMP
  if (threads > 1 && !omp_in_parallel()) {
    std::atomic<Index> next{0};
#pragma omp parallel num_threads(threads)
    {
      const Index share = 2 * Index{omp_get_num_threads()};
      Index begin = next.load(std::memory_order_relaxed);
      while (begin < count) {
        const Index left = count - begin;
        const Index size = std::min(left, std::max(grain, (left / share + grain - 1) / grain * grain));
        if (next.compare_exchange_weak(begin, begin + size, std::memory_order_relaxed)) {
          body(begin, begin + size);
          begin = next.load(std::memory_order_relaxed);
        }
      }
    }
    return;
  }
#endif
  body(0, count);
}

}  // namespace cpuformer
