#include "alloc/alloc.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include <dlfcn.h>

#include <cstdio>

namespace sluice::mem {

namespace {

// jemalloc is looked up at run time, not linked: Debian's libjemalloc needs
// 2.6 KiB of static TLS, which glibc does not have left for a library that
// is dlopen()ed (Python's ctypes), so a hard dependency would make sluice
// impossible to load there. A process that has jemalloc loaded (linked with
// -ljemalloc, as sluice's own programs are) gets the dedicated arena;
// otherwise sluice uses the system allocator and counts its bytes.
struct Jemalloc {
  void *(*mallocx)(size_t, int) = nullptr;
  void (*sdallocx)(void *, size_t, int) = nullptr;
  int (*mallctl)(const char *, void *, size_t *, void *, size_t) = nullptr;
  unsigned arena = 0;
  bool ok = false;
};

const Jemalloc &jemalloc() {
  static const Jemalloc j = [] {
    Jemalloc j;
#ifdef SLUICE_WITH_JEMALLOC
    void *h = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (!h) h = dlopen("libjemalloc.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) return j;
    j.mallocx = reinterpret_cast<decltype(j.mallocx)>(dlsym(h, "mallocx"));
    j.sdallocx = reinterpret_cast<decltype(j.sdallocx)>(dlsym(h, "sdallocx"));
    j.mallctl = reinterpret_cast<decltype(j.mallctl)>(dlsym(h, "mallctl"));
    size_t sz = sizeof j.arena;
    j.ok = j.mallocx && j.sdallocx && j.mallctl &&
           j.mallctl("arenas.create", &j.arena, &sz, nullptr, 0) == 0;
#endif
    return j;
  }();
  return j;
}

// The MALLOCX_* flag encodings of jemalloc.h, which is not included so the
// build does not depend on it.
constexpr int arena_flag(unsigned a) { return int((a + 1) << 20); }
constexpr int tcache_flag(unsigned t) { return int((t + 2) << 8); }
constexpr int kTcacheNone = int((unsigned(-1) + 2) << 8);

// This thread's mallocx flags, 0 until its first allocation. Trivially
// initialised, so reading it is one TLS load with no guard: it is read on
// every allocation and every free. General-dynamic TLS on purpose: static
// TLS is scarce (see above).
thread_local int t_flags = 0;

// jemalloc's automatic thread cache mixes arenas, so each thread that
// allocates gets an explicit cache bound to our flags, destroyed with it.
struct ThreadCache {
  unsigned id = 0;
  bool ok = false;
  ThreadCache() {
    size_t sz = sizeof id;
    ok = jemalloc().mallctl("tcache.create", &id, &sz, nullptr, 0) == 0;
  }
  ~ThreadCache() {
    // Frees that come later in this thread's exit (other thread_local
    // destructors) go straight to the arena.
    t_flags = arena_flag(jemalloc().arena) | kTcacheNone;
    if (ok) jemalloc().mallctl("tcache.destroy", nullptr, nullptr, &id, sizeof id);
  }
};

__attribute__((noinline)) int first_flags() {
  static thread_local ThreadCache cache;
  t_flags = arena_flag(jemalloc().arena) | (cache.ok ? tcache_flag(cache.id) : kTcacheNone);
  return t_flags;
}

// Never 0 once set: the arena flag is at least 1 << 20.
inline int flags() {
  int f = t_flags;
  return __builtin_expect(f != 0, 1) ? f : first_flags();
}

uint64_t arena_stat(const char *leaf) {
  char name[96];
  std::snprintf(name, sizeof name, "stats.arenas.%u.%s", jemalloc().arena, leaf);
  size_t value = 0, sz = sizeof value;
  if (jemalloc().mallctl(name, &value, &sz, nullptr, 0) != 0) return 0;
  return value;
}

std::atomic<uint64_t> g_system_bytes{0};

}  // namespace

void *allocate(std::size_t n) noexcept {
  if (jemalloc().ok) return jemalloc().mallocx(n ? n : 1, flags());
  void *p = std::malloc(n ? n : 1);
  if (p) g_system_bytes.fetch_add(n, std::memory_order_relaxed);
  return p;
}

void release(void *p, std::size_t n) noexcept {
  if (!p) return;
  if (jemalloc().ok) {
    jemalloc().sdallocx(p, n ? n : 1, flags());
    return;
  }
  g_system_bytes.fetch_sub(n, std::memory_order_relaxed);
  std::free(p);
}

void fill_stats(sluice_memory_stats *out) {
  const Jemalloc &j = jemalloc();
  if (!j.ok) {
    out->jemalloc = 0;
    out->arena = 0;
    out->allocated = g_system_bytes.load(std::memory_order_relaxed);
    out->active = 0;
    out->resident = 0;
    return;
  }
  uint64_t epoch = 1;
  size_t sz = sizeof epoch;
  j.mallctl("epoch", &epoch, &sz, &epoch, sz);
  size_t page = 4096;
  sz = sizeof page;
  j.mallctl("arenas.page", &page, &sz, nullptr, 0);
  out->jemalloc = 1;
  out->arena = j.arena;
  out->allocated = arena_stat("small.allocated") + arena_stat("large.allocated");
  out->active = arena_stat("pactive") * page;
  out->resident = arena_stat("resident");
}

}  // namespace sluice::mem
