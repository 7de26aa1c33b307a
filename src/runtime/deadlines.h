// The runtime's deadline schedule: a binary min-heap of pending ops by
// deadline, each op knowing its own position so it can leave in O(log n)
// without any allocation per op (the heap's array only grows).
#pragma once

#include <cstdint>
#include <vector>

#include "alloc/alloc.h"

struct sluice_op;

namespace sluice {

class DeadlineHeap {
 public:
  static constexpr size_t kNone = SIZE_MAX;
  bool empty() const { return heap_.empty(); }
  sluice_op *top() const { return heap_.front(); }
  uint64_t top_deadline() const;
  // Both return true if the earliest deadline changed.
  bool push(sluice_op *op, uint64_t deadline);
  bool remove(sluice_op *op);

 private:
  void place(size_t i, sluice_op *op);
  void sift_up(size_t i);
  void sift_down(size_t i);
  std::vector<sluice_op *, mem::Allocator<sluice_op *>> heap_;
};

}  // namespace sluice
