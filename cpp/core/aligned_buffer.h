// An owning, 64-byte aligned, uninitialised float buffer that only grows. Used for packed weights and
// per-thread scratch (packing panels); growth is bounded by the largest shape seen, never by call count.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace cpuformer {

class AlignedBuffer {
 public:
  static constexpr std::size_t kAlignment = 64;
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;

  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t count) { reserve(count); }
  ~AlignedBuffer() { std::free(data_); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), capacity_(std::exchange(other.capacity_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(capacity_, other.capacity_);
    return *this;
  }

  // Ensures room for `count` floats; previous contents are not preserved when it grows.
  float* reserve(std::size_t count) {
    if (count > capacity_) {
      std::free(data_);
      data_ = nullptr;
      capacity_ = 0;
      const std::size_t bytes = count * sizeof(float);
      const std::size_t align = bytes >= kHugePage ? kHugePage : kAlignment;
      data_ = static_cast<float*>(std::aligned_alloc(align, (bytes + align - 1) / align * align));
      if (data_ == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      // Large packed weights and scratch are read panel by panel with strides of many pages; on 4 KiB
      // pages a GEMM spends a measurable share of its time in TLB misses (as NumPy does for its arrays,
      // ask for transparent huge pages; the kernel may ignore the hint).
      if (align == kHugePage) madvise(data_, (bytes + align - 1) / align * align, MADV_HUGEPAGE);
#endif
      capacity_ = count;
    }
    return data_;
  }

  float* data() { return data_; }
  const float* data() const { return data_; }
  std::size_t capacity() const { return capacity_; }

 private:
  float* data_ = nullptr;
  std::size_t capacity_ = 0;
};

}  // namespace cpuformer
