// The library's own allocator: jemalloc's explicit API on a dedicated arena
// (never the host's malloc), or the system allocator with a byte counter
// when built with SLUICE_WITH_JEMALLOC=OFF (sanitizer builds, so ASan sees
// every allocation).
#pragma once

#include <cstddef>
#include <new>

#include "sluice/runtime.h"

namespace sluice::mem {

// nullptr on failure; never throws.
void *allocate(std::size_t n) noexcept;
// `n` must be the size passed to allocate (sized free).
void release(void *p, std::size_t n) noexcept;
void fill_stats(sluice_memory_stats *out);

// For classes whose instances should come from the library's arena.
struct Allocated {
  static void *operator new(std::size_t n) {
    if (void *p = allocate(n)) return p;
    throw std::bad_alloc();
  }
  static void operator delete(void *p, std::size_t n) noexcept { release(p, n); }
};

// STL allocator over the same arena.
template <class T>
struct Allocator {
  using value_type = T;
  Allocator() noexcept = default;
  template <class U>
  Allocator(const Allocator<U> &) noexcept {}
  T *allocate(std::size_t n) {
    if (void *p = mem::allocate(n * sizeof(T))) return static_cast<T *>(p);
    throw std::bad_alloc();
  }
  void deallocate(T *p, std::size_t n) noexcept { release(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const Allocator<U> &) const noexcept { return true; }
};

}  // namespace sluice::mem
