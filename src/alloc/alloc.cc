#include "alloc/alloc.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#ifdef SLUICE_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

namespace sluice::mem {

#ifdef SLUICE_WITH_JEMALLOC
namespace {

// One arena for the whole library, created on first use.
unsigned arena_index() {
  static const unsigned index = [] {
    unsigned a = 0;
    size_t sz = sizeof a;
    if (mallctl("arenas.create", &a, &sz, nullptr, 0) != 0) return 0u;
    return a;
  }();
  return index;
}

// jemalloc's automatic thread cache mixes arenas, so each thread that
// allocates gets an explicit cache bound to our flags, destroyed with it.
struct ThreadCache {
  unsigned id = 0;
  bool ok = false;
  ThreadCache() {
    size_t sz = sizeof id;
    ok = mallctl("tcache.create", &id, &sz, nullptr, 0) == 0;
  }
  ~ThreadCache() {
    if (ok) mallctl("tcache.destroy", nullptr, nullptr, &id, sizeof id);
  }
};

int flags() {
  // initial-exec: a general-dynamic thread_local in a shared library costs
  // a __tls_get_addr call on every allocation.
  static thread_local ThreadCache cache __attribute__((tls_model("initial-exec")));
  int f = MALLOCX_ARENA(arena_index());
  return f | (cache.ok ? MALLOCX_TCACHE(cache.id) : MALLOCX_TCACHE_NONE);
}

uint64_t arena_stat(const char *leaf) {
  char name[96];
  std::snprintf(name, sizeof name, "stats.arenas.%u.%s", arena_index(), leaf);
  size_t value = 0, sz = sizeof value;
  if (mallctl(name, &value, &sz, nullptr, 0) != 0) return 0;
  return value;
}

}  // namespace

void *allocate(std::size_t n) noexcept { return mallocx(n ? n : 1, flags()); }

void release(void *p, std::size_t n) noexcept {
  if (p) sdallocx(p, n ? n : 1, flags());
}

void fill_stats(sluice_memory_stats *out) {
  uint64_t epoch = 1;
  size_t sz = sizeof epoch;
  mallctl("epoch", &epoch, &sz, &epoch, sz);
  size_t page = 4096;
  sz = sizeof page;
  mallctl("arenas.page", &page, &sz, nullptr, 0);
  out->jemalloc = 1;
  out->arena = arena_index();
  out->allocated = arena_stat("small.allocated") + arena_stat("large.allocated");
  out->active = arena_stat("pactive") * page;
  out->resident = arena_stat("resident");
}

#else  // system allocator

namespace {
std::atomic<uint64_t> g_allocated{0};
}

void *allocate(std::size_t n) noexcept {
  void *p = std::malloc(n ? n : 1);
  if (p) g_allocated.fetch_add(n, std::memory_order_relaxed);
  return p;
}

void release(void *p, std::size_t n) noexcept {
  if (!p) return;
  g_allocated.fetch_sub(n, std::memory_order_relaxed);
  std::free(p);
}

void fill_stats(sluice_memory_stats *out) {
  out->jemalloc = 0;
  out->arena = 0;
  out->allocated = g_allocated.load(std::memory_order_relaxed);
  out->active = 0;
  out->resident = 0;
}

#endif

}  // namespace sluice::mem
