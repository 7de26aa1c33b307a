#include "runtime/deadlines.h"

#include "op/op.h"

namespace sluice {

uint64_t DeadlineHeap::top_deadline() const { return heap_.front()->deadline_; }

void DeadlineHeap::place(size_t i, sluice_op *op) {
  heap_[i] = op;
  op->heap_index_ = i;
}

void DeadlineHeap::sift_up(size_t i) {
  sluice_op *op = heap_[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (heap_[parent]->deadline_ <= op->deadline_) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, op);
}

void DeadlineHeap::sift_down(size_t i) {
  sluice_op *op = heap_[i];
  size_t n = heap_.size();
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && heap_[child + 1]->deadline_ < heap_[child]->deadline_) child++;
    if (heap_[child]->deadline_ >= op->deadline_) break;
    place(i, heap_[child]);
    i = child;
  }
  place(i, op);
}

bool DeadlineHeap::push(sluice_op *op, uint64_t deadline) {
  op->deadline_ = deadline;
  heap_.push_back(op);
  sift_up(heap_.size() - 1);
  return op->heap_index_ == 0;
}

bool DeadlineHeap::remove(sluice_op *op) {
  size_t i = op->heap_index_;
  if (i == kNone) return false;
  op->heap_index_ = kNone;
  sluice_op *last = heap_.back();
  heap_.pop_back();
  if (last != op) {
    place(i, last);
    sift_up(i);
    sift_down(last->heap_index_);
  }
  return i == 0;
}

}  // namespace sluice
