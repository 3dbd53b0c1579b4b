#pragma once
// tests/device/simt/include/cub/block/block_scan.cuh — the emulator's stand-in for
// cub::BlockScan (the part kvcap's kernels use), with CUB's contract checked: every thread of
// the block takes part, and the storage is not reused before a __syncthreads() after the
// previous scan (CUB: "a subsequent __syncthreads() ... should be invoked ... if the
// collective's temporary storage is to be reused"). The sums are exact integer sums, which
// is what CUB computes for the integer types kvcap scans.

#include <type_traits>

#include "../../../simt.hpp"

namespace cub {

template <class T, int BlockDimX>
class BlockScan {
  static_assert(std::is_integral_v<T>, "kvcap scans integers");

 public:
  struct TempStorage {
    T values[BlockDimX];
    int reading;  ///< threads that have yet to read the last scan's values
  };

  explicit BlockScan(TempStorage& storage) : s_(storage) {}

  void ExclusiveSum(T input, T& output) {
    T total;
    scan(input, output, total, false);
  }
  void ExclusiveSum(T input, T& output, T& aggregate) { scan(input, output, aggregate, false); }
  void InclusiveSum(T input, T& output, T& aggregate) { scan(input, output, aggregate, true); }

 private:
  void scan(T input, T& output, T& aggregate, bool inclusive) {
    auto& block = *kvcap::simt::running_block();
    if (block.dim.x != BlockDimX || block.dim.y != 1 || block.dim.z != 1)
      kvcap::simt::fail("cub::BlockScan over a block of another size");
    if (block.live != BlockDimX) kvcap::simt::fail("cub::BlockScan after some threads of the block exited");
    const int t = static_cast<int>(threadIdx.x);
    if (s_.reading > 0 && s_.reading <= BlockDimX)
      kvcap::simt::fail("cub::BlockScan storage reused before a __syncthreads() after the previous scan");
    s_.values[t] = input;
    kvcap::simt::sync_block();
    if (s_.reading <= 0 || s_.reading > BlockDimX) s_.reading = BlockDimX;  // the first reader of this scan
    T before{}, total{};
    for (int i = 0; i < BlockDimX; ++i) {
      if (i < t) before += s_.values[i];
      total += s_.values[i];
    }
    output = inclusive ? before + input : before;
    aggregate = total;
    --s_.reading;
  }

  TempStorage& s_;
};

}  // namespace cub
