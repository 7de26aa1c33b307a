// extern "C" entry points of sluice/runtime.h and sluice/uv.h: argument
// checks, then the Runtime class.
#include <uv.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "alloc/alloc.h"
#include "common/buf.h"
#include "common/error.h"
#include "common/sized.h"
#include "runtime/runtime.h"
#include "sluice/uv.h"

using sluice::fail;
using sluice::guarded;
using sluice::Runtime;
using sluice::unwrap;
using sluice::wrap;

namespace {

int resolve_options(const sluice_runtime_options *in, sluice_runtime_options *out) {
  sluice_runtime_options_init(out, SLUICE_RUNTIME_OPTIONS_VERSION);
  if (!in) return 0;
  if (int rc = sluice::check_version("sluice_runtime_options", in->version,
                                     SLUICE_RUNTIME_OPTIONS_VERSION))
    return rc;
  // Version 1 is every field there is so far; later versions copy more.
  *out = *in;
  if (out->lag_interval_ms > 60000)
    return fail(SLUICE_EINVAL, "sluice_runtime_options.lag_interval_ms: %u is above 60000",
                out->lag_interval_ms);
  return 0;
}

}  // namespace

extern "C" {

uint64_t sluice_now_ns(void) { return uv_hrtime(); }

int sluice_runtime_options_init(sluice_runtime_options *opts, unsigned int version) {
  if (!opts) return fail(SLUICE_EINVAL, "sluice_runtime_options_init: opts is NULL");
  if (int rc = sluice::check_version("sluice_runtime_options", version,
                                     SLUICE_RUNTIME_OPTIONS_VERSION))
    return rc;
  opts->version = version;
  opts->thread_name = nullptr;
  opts->lag_interval_ms = 100;
  return 0;
}

int sluice_runtime_new(sluice_runtime **out, const sluice_runtime_options *opts) {
  if (!out) return fail(SLUICE_EINVAL, "sluice_runtime_new: out is NULL");
  *out = nullptr;
  sluice_runtime_options o;
  if (int rc = resolve_options(opts, &o)) return rc;
  return guarded([&] {
    Runtime *rt = nullptr;
    int rc = Runtime::start_own_thread(o, &rt);
    if (rc == 0) *out = wrap(rt);
    return rc;
  });
}

int sluice_runtime_attach(sluice_runtime **out, uv_loop_t *loop,
                          const sluice_runtime_options *opts) {
  if (!out) return fail(SLUICE_EINVAL, "sluice_runtime_attach: out is NULL");
  *out = nullptr;
  if (!loop) return fail(SLUICE_EINVAL, "sluice_runtime_attach: loop is NULL");
  sluice_runtime_options o;
  if (int rc = resolve_options(opts, &o)) return rc;
  return guarded([&] {
    Runtime *rt = nullptr;
    int rc = Runtime::attach(loop, o, &rt);
    if (rc == 0) *out = wrap(rt);
    return rc;
  });
}

uv_loop_t *sluice_runtime_loop(sluice_runtime *rt) { return rt ? unwrap(rt)->loop() : nullptr; }

int sluice_runtime_close(sluice_runtime *rt) {
  if (!rt) return fail(SLUICE_EINVAL, "sluice_runtime_close: runtime is NULL");
  return guarded([&] { return unwrap(rt)->close(); });
}

void sluice_runtime_free(sluice_runtime *rt) {
  if (!rt) return;
  guarded([&] {
    unwrap(rt)->destroy();
    return 0;
  });
}

int sluice_runtime_is_loop_thread(const sluice_runtime *rt) {
  return rt && unwrap(rt)->is_loop_thread() ? 1 : 0;
}

int sluice_runtime_post(sluice_runtime *rt, sluice_status_cb cb, void *user_data,
                        sluice_free_cb free_user_data) {
  if (!rt) return fail(SLUICE_EINVAL, "sluice_runtime_post: runtime is NULL");
  if (!cb) return fail(SLUICE_EINVAL, "sluice_runtime_post: callback is NULL");
  return guarded([&] { return unwrap(rt)->post(cb, user_data, free_user_data); });
}

int sluice_runtime_stats_get(const sluice_runtime *rt, sluice_runtime_stats *out) {
  if (!rt) return fail(SLUICE_EINVAL, "sluice_runtime_stats_get: runtime is NULL");
  if (!out) return fail(SLUICE_EINVAL, "sluice_runtime_stats_get: out is NULL");
  sluice_runtime_stats full{};
  full.size = sizeof full;
  unwrap(rt)->fill_stats(&full);
  return sluice::copy_sized(out, full, "sluice_runtime_stats_get");
}

int sluice_runtime_memory(const sluice_runtime *, sluice_memory_stats *out) {
  if (!out) return fail(SLUICE_EINVAL, "sluice_runtime_memory: out is NULL");
  sluice_memory_stats full{};
  full.size = sizeof full;
  sluice::mem::fill_stats(&full);
  return sluice::copy_sized(out, full, "sluice_runtime_memory");
}

int sluice_runtime_describe(const sluice_runtime *rt, sluice_buf *out) {
  if (!rt) return fail(SLUICE_EINVAL, "sluice_runtime_describe: runtime is NULL");
  if (!out) return fail(SLUICE_EINVAL, "sluice_runtime_describe: out is NULL");
  return guarded([&] {
    sluice_runtime_stats st{};
    st.size = sizeof st;
    unwrap(rt)->fill_stats(&st);
    char line[256];
    int n = std::snprintf(line, sizeof line,
                          "sluice runtime %s (%s): %llu pending, %llu posted, "
                          "loop lag mean %.3f ms max %.3f ms",
                          SLUICE_VERSION_STRING, st.is_closed ? "closed"
                                                 : st.is_own_thread ? "own thread"
                                                                    : "attached",
                          static_cast<unsigned long long>(st.ops_pending),
                          static_cast<unsigned long long>(st.posted), st.lag_mean_ns / 1e6,
                          st.lag_max_ns / 1e6);
    return sluice::buf_set(out, std::string_view(line, n > 0 ? size_t(n) : 0));
  });
}

}  // extern "C"
