// extern "C" entry points of sluice/taskpool.h: argument checks, then Pool.
#include <cstring>

#include "common/error.h"
#include "common/sized.h"
#include "taskpool/pool.h"

using sluice::fail;
using sluice::guarded;
using sluice::taskpool::Config;
using sluice::taskpool::Pool;
using sluice::taskpool::PoolOp;
using sluice::taskpool::unwrap;
using sluice::taskpool::wrap;

namespace {

// 2^40 ms is about 35 years: anything above is a units mistake.
constexpr int64_t kMaxTimeoutMs = int64_t{1} << 40;
constexpr uint32_t kMaxQueued = 1u << 30;
constexpr size_t kMaxName = 64;

int check_request(const char *fn, int priority, int64_t timeout_ms) {
  if (priority < SLUICE_PRIORITY_HIGH || priority > SLUICE_PRIORITY_LOW)
    return fail(SLUICE_EINVAL, "%s: priority %d is not a sluice_priority (0 high, 1 normal, 2 low)",
                fn, priority);
  if (timeout_ms > kMaxTimeoutMs)
    return fail(SLUICE_EINVAL, "%s: timeout %lld ms is above 2^40 ms", fn,
                static_cast<long long>(timeout_ms));
  return 0;
}

int resolve_options(const sluice_taskpool_options *in, Config *c) {
  sluice_taskpool_options o;
  sluice_taskpool_options_init(&o, SLUICE_TASKPOOL_OPTIONS_VERSION);
  if (in) {
    if (int rc = sluice::check_version("sluice_taskpool_options", in->version,
                                       SLUICE_TASKPOOL_OPTIONS_VERSION))
      return rc;
    o = *in;  // version 1 is every field so far
  }
  const char *what = "sluice_taskpool_options";
  if (o.max_concurrent == 0 || o.max_concurrent > SLUICE_TASKPOOL_MAX_CONCURRENT)
    return fail(SLUICE_EINVAL, "%s.max_concurrent: %u is not in 1..%d", what, o.max_concurrent,
                SLUICE_TASKPOOL_MAX_CONCURRENT);
  if (o.workers > SLUICE_TASKPOOL_MAX_WORKERS)
    return fail(SLUICE_EINVAL, "%s.workers: %u is above %d", what, o.workers,
                SLUICE_TASKPOOL_MAX_WORKERS);
  if (o.max_queued > kMaxQueued)
    return fail(SLUICE_EINVAL, "%s.max_queued: %u is above 2^30", what, o.max_queued);
  if (o.on_full != SLUICE_TASKPOOL_FULL_REJECT && o.on_full != SLUICE_TASKPOOL_FULL_WAIT)
    return fail(SLUICE_EINVAL, "%s.on_full: %d is not a sluice_taskpool_full", what, o.on_full);
  if (o.adaptive != 0 && o.adaptive != 1)
    return fail(SLUICE_EINVAL, "%s.adaptive: %d is not 0 (off) or 1 (on)", what, o.adaptive);
  if (o.max_bypass == 0 || o.max_bypass > 65536)
    return fail(SLUICE_EINVAL, "%s.max_bypass: %u is not in 1..65536", what, o.max_bypass);
  const char *name = o.name ? o.name : "taskpool";
  size_t name_len = strnlen(name, kMaxName + 1);
  if (name_len == 0 || name_len > kMaxName)
    return fail(SLUICE_EINVAL, "%s.name: must be 1..64 bytes", what);
  uint32_t min = o.min_concurrent, ceiling = o.max_concurrent_ceiling;
  if (o.adaptive) {
    if (o.target_latency_ns == 0)
      return fail(SLUICE_EINVAL, "%s.target_latency_ns: required (non-zero) with adaptive on",
                  what);
    if (min == 0 || min > o.max_concurrent)
      return fail(SLUICE_EINVAL, "%s.min_concurrent: %u is not in 1..max_concurrent (%u)", what,
                  min, o.max_concurrent);
    if (ceiling == 0) {
      uint64_t twice = uint64_t{o.max_concurrent} * 2;
      ceiling = uint32_t(twice < SLUICE_TASKPOOL_MAX_CONCURRENT ? twice
                                                                : SLUICE_TASKPOOL_MAX_CONCURRENT);
    }
    if (ceiling < o.max_concurrent || ceiling > SLUICE_TASKPOOL_MAX_CONCURRENT)
      return fail(SLUICE_EINVAL,
                  "%s.max_concurrent_ceiling: %u is not in max_concurrent (%u)..%d", what,
                  ceiling, o.max_concurrent, SLUICE_TASKPOOL_MAX_CONCURRENT);
  }
  *c = Config{o.max_concurrent, o.workers, o.max_queued, min, ceiling, o.max_bypass,
              o.on_full, o.adaptive, o.target_latency_ns, o.monitor, name, o.clock,
              o.clock_user_data};
  return 0;
}

sluice_permit *as_permit(uint64_t h) {
  return reinterpret_cast<sluice_permit *>(static_cast<uintptr_t>(h));
}
uint64_t as_handle(const sluice_permit *p) { return reinterpret_cast<uintptr_t>(p); }

int start(Pool *p, PoolOp *op, int64_t timeout_ms, const char *fn, sluice_op **op_out) {
  if (op_out) op->ref();
  int rc = p->place(op, timeout_ms, fn);
  if (rc != 0) {
    delete op;  // never started: nobody else has seen it
    return rc;
  }
  if (op_out) *op_out = op;
  return 0;
}

// The blocking acquire: a request whose callback fills this, then a wait.
struct Sync {
  int status = 0;
  uint64_t handle = 0;
};
void sync_cb(void *ud, int status, sluice_permit *permit) {
  auto *s = static_cast<Sync *>(ud);
  s->status = status;
  s->handle = as_handle(permit);
}

const char *busy_message(int rc) {
  switch (rc) {
    case SLUICE_EAGAIN:
      return "sluice_taskpool_try_acquire: no free slot, or requests are waiting";
    case SLUICE_ECLOSED:
      return "sluice_taskpool_try_acquire: the pool is shut down";
    default:
      return "sluice_taskpool_try_acquire: out of memory for a permit record";
  }
}

}  // namespace

extern "C" {

int sluice_taskpool_options_init(sluice_taskpool_options *opts, unsigned int version) {
  if (!opts) return fail(SLUICE_EINVAL, "sluice_taskpool_options_init: opts is NULL");
  if (int rc = sluice::check_version("sluice_taskpool_options", version,
                                     SLUICE_TASKPOOL_OPTIONS_VERSION))
    return rc;
  opts->version = version;
  opts->max_concurrent = 20;
  opts->workers = 0;
  opts->max_queued = 1000;
  opts->on_full = SLUICE_TASKPOOL_FULL_REJECT;
  opts->adaptive = 0;
  opts->min_concurrent = 1;
  opts->max_concurrent_ceiling = 0;
  opts->target_latency_ns = 0;
  opts->monitor = nullptr;
  opts->name = nullptr;
  opts->clock = nullptr;
  opts->clock_user_data = nullptr;
  opts->max_bypass = 4;
  return 0;
}

int sluice_taskpool_new(sluice_taskpool **out, sluice_runtime *rt,
                        const sluice_taskpool_options *opts) {
  if (!out) return fail(SLUICE_EINVAL, "sluice_taskpool_new: out is NULL");
  *out = nullptr;
  if (!rt) return fail(SLUICE_EINVAL, "sluice_taskpool_new: runtime is NULL");
  Config c;
  if (int rc = resolve_options(opts, &c)) return rc;
  return guarded([&] {
    Pool *p = nullptr;
    int rc = Pool::create(sluice::unwrap(rt), c, &p);
    if (rc == 0) *out = wrap(p);
    return rc;
  });
}

void sluice_taskpool_free(sluice_taskpool *pool) {
  if (!pool) return;
  guarded([&] {
    unwrap(pool)->destroy();
    return 0;
  });
}

int sluice_taskpool_submit(sluice_taskpool *pool, sluice_task_fn fn, int priority,
                           int64_t timeout_ms, sluice_status_cb done, void *user_data,
                           sluice_free_cb free_user_data, sluice_op **op_out) {
  const char *name = "sluice_taskpool_submit";
  if (op_out) *op_out = nullptr;
  if (!pool) return fail(SLUICE_EINVAL, "%s: pool is NULL", name);
  if (!fn) return fail(SLUICE_EINVAL, "%s: fn is NULL", name);
  if (int rc = check_request(name, priority, timeout_ms)) return rc;
  Pool *p = unwrap(pool);
  return guarded([&] {
    auto *op = new PoolOp(p, p->runtime(), PoolOp::kTask, done, nullptr, user_data,
                          free_user_data);
    op->fn = fn;
    op->prio = uint8_t(priority);
    return start(p, op, timeout_ms, name, op_out);
  });
}

int sluice_taskpool_try_acquire(sluice_taskpool *pool, sluice_permit **out) {
  if (out) *out = nullptr;
  if (!pool) return fail(SLUICE_EINVAL, "sluice_taskpool_try_acquire: pool is NULL");
  if (!out) return fail(SLUICE_EINVAL, "sluice_taskpool_try_acquire: out is NULL");
  uint64_t h = 0;
  int rc = unwrap(pool)->try_acquire(&h, true);
  if (__builtin_expect(rc != 0, 0)) return fail(rc, "%s", busy_message(rc));
  *out = as_permit(h);
  return 0;
}

int sluice_taskpool_acquire(sluice_taskpool *pool, int priority, int64_t timeout_ms,
                            sluice_permit_cb cb, void *user_data, sluice_free_cb free_user_data,
                            sluice_op **op_out) {
  const char *name = "sluice_taskpool_acquire";
  if (op_out) *op_out = nullptr;
  if (!pool) return fail(SLUICE_EINVAL, "%s: pool is NULL", name);
  if (!cb) return fail(SLUICE_EINVAL, "%s: callback is NULL", name);
  if (int rc = check_request(name, priority, timeout_ms)) return rc;
  Pool *p = unwrap(pool);
  return guarded([&] {
    auto *op = new PoolOp(p, p->runtime(), PoolOp::kPermit, nullptr, cb, user_data,
                          free_user_data);
    op->prio = uint8_t(priority);
    return start(p, op, timeout_ms, name, op_out);
  });
}

int sluice_taskpool_acquire_wait(sluice_taskpool *pool, int priority, int64_t timeout_ms,
                                 sluice_permit **out) {
  const char *name = "sluice_taskpool_acquire_wait";
  if (out) *out = nullptr;
  if (!pool) return fail(SLUICE_EINVAL, "%s: pool is NULL", name);
  if (!out) return fail(SLUICE_EINVAL, "%s: out is NULL", name);
  if (int rc = check_request(name, priority, timeout_ms)) return rc;
  Pool *p = unwrap(pool);
  if (p->runtime()->is_loop_thread())
    return fail(SLUICE_EDEADLK, "%s: called on the loop thread, which must run to grant it", name);
  uint64_t h = 0;
  // A free slot with nobody waiting costs no trip to the loop.
  int rc = p->try_acquire(&h, false);
  if (rc == 0) {
    *out = as_permit(h);
    return 0;
  }
  if (rc == SLUICE_ECLOSED) return fail(rc, "%s: the pool is shut down", name);
  return guarded([&] {
    Sync sync;
    auto *op = new PoolOp(p, p->runtime(), PoolOp::kPermit, nullptr, sync_cb, &sync, nullptr);
    op->prio = uint8_t(priority);
    sluice_op *handle = nullptr;
    if (int rc2 = start(p, op, timeout_ms, name, &handle)) return rc2;
    handle->wait(-1);  // the request's own deadline ends it
    sluice_op_free(handle);
    if (sync.status != 0) return fail(sync.status, "%s: %s", name, sluice_strerror(sync.status));
    *out = as_permit(sync.handle);
    return 0;
  });
}

int sluice_taskpool_release(sluice_taskpool *pool, sluice_permit *permit, int outcome) {
  if (!pool) return fail(SLUICE_EINVAL, "sluice_taskpool_release: pool is NULL");
  if (!permit) return fail(SLUICE_EINVAL, "sluice_taskpool_release: permit is NULL");
  if (outcome > 0)
    return fail(SLUICE_EINVAL, "sluice_taskpool_release: outcome %d is positive (0 or a "
                "negative code)", outcome);
  return unwrap(pool)->release(as_handle(permit), outcome);
}

int sluice_taskpool_resize(sluice_taskpool *pool, uint32_t max_concurrent) {
  if (!pool) return fail(SLUICE_EINVAL, "sluice_taskpool_resize: pool is NULL");
  if (max_concurrent == 0 || max_concurrent > SLUICE_TASKPOOL_MAX_CONCURRENT)
    return fail(SLUICE_EINVAL, "sluice_taskpool_resize: %u is not in 1..%d", max_concurrent,
                SLUICE_TASKPOOL_MAX_CONCURRENT);
  return guarded([&] { return unwrap(pool)->resize(max_concurrent); });
}

int sluice_taskpool_shutdown(sluice_taskpool *pool, int64_t timeout_ms) {
  if (!pool) return fail(SLUICE_EINVAL, "sluice_taskpool_shutdown: pool is NULL");
  if (timeout_ms > kMaxTimeoutMs)
    return fail(SLUICE_EINVAL, "sluice_taskpool_shutdown: timeout %lld ms is above 2^40 ms",
                static_cast<long long>(timeout_ms));
  return guarded([&] { return unwrap(pool)->shutdown(timeout_ms); });
}

int sluice_taskpool_stats_get(sluice_taskpool *pool, sluice_taskpool_stats *out) {
  if (!pool) return fail(SLUICE_EINVAL, "sluice_taskpool_stats_get: pool is NULL");
  if (!out) return fail(SLUICE_EINVAL, "sluice_taskpool_stats_get: out is NULL");
  sluice_taskpool_stats full{};
  full.size = sizeof full;
  unwrap(pool)->fill_stats(&full);
  return sluice::copy_sized(out, full, "sluice_taskpool_stats_get");
}

}  // extern "C"
