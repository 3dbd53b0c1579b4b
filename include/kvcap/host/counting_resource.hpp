#pragma once
// kvcap/host/counting_resource.hpp — a std::pmr resource that counts what passes through.
//
// Wrap it around whatever resource backs kvcap's storage to measure its current and peak
// bytes exactly: a compressor allocates its K, V and metadata storage and its workspace,
// everything the peak formula counts, only through the resource it is given (never
// through Eigen or global new). Only its own record of each layer (a few dozen bytes per
// layer, once, at construction) comes from the global heap.

#include <cstddef>
#include <memory_resource>

namespace kvcap::host {

class counting_resource final : public std::pmr::memory_resource {
 public:
  explicit counting_resource(std::pmr::memory_resource* upstream = std::pmr::get_default_resource())
      : upstream_(upstream) {}

  std::size_t current_bytes() const noexcept { return current_; }
  std::size_t peak_bytes() const noexcept { return peak_; }
  std::size_t allocations() const noexcept { return allocations_; }
  void reset_peak() noexcept { peak_ = current_; }

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    void* p = upstream_->allocate(bytes, alignment);
    current_ += bytes;
    if (current_ > peak_) peak_ = current_;
    ++allocations_;
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    upstream_->deallocate(p, bytes, alignment);
    current_ -= bytes;
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::pmr::memory_resource* upstream_;
  std::size_t current_ = 0, peak_ = 0, allocations_ = 0;
};

}  // namespace kvcap::host
