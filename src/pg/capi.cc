// extern "C" entry points of sluice/pg.h: check and copy the arguments, then
// start an op on the runtime; everything else happens on the loop.
#include <cstring>

#include "common/error.h"
#include "common/sized.h"
#include "pg/ops.h"

using namespace sluice;
using namespace sluice::pg;

namespace sluice::pg {
void pool_start(Pool *p);  // pool.cc
}

namespace {

constexpr uint64_t kNs = 1000000;

int resolve_query_options(const sluice_pg_query_options *in, sluice_pg_query_options *out) {
  static const sluice_pg_query_options kDefaults = SLUICE_PG_QUERY_OPTIONS_INIT;
  *out = kDefaults;
  if (!in) return 0;
  if (int rc = check_version("sluice_pg_query_options", in->version, SLUICE_PG_QUERY_OPTIONS_VERSION))
    return rc;
  *out = *in;
  if (out->timeout_ms <= 0)
    return fail(SLUICE_EINVAL, "sluice_pg_query_options.timeout_ms must be > 0 (got %lld)",
                static_cast<long long>(out->timeout_ms));
  if (out->flags & ~uint32_t(SLUICE_PG_NO_PREPARE | SLUICE_PG_BINARY_RESULT | SLUICE_PG_IDEMPOTENT))
    return fail(SLUICE_EINVAL, "sluice_pg_query_options.flags: unknown bits 0x%x", out->flags);
  return 0;
}

// Starts `op` with its deadline; on failure it was never started.
int start_op(sluice_op *op, sluice_op **op_out, uint64_t deadline) {
  if (op_out) op->ref();
  int rc = op->runtime()->start(op, deadline);
  if (rc != 0) {
    if (op_out) op->unref();
    delete op;
    return rc;
  }
  if (op_out) *op_out = op;
  return 0;
}

Lease *lease_of(sluice_pg_conn *c) { return reinterpret_cast<Lease *>(c); }

// A query or batch on a lease or on the pool, single statement or batch.
template <class Op>
int start_query(Op *op, sluice_pg_batch *batch, const char *sql, int nparams,
                const char *const *values, const int *lengths, const int *formats,
                const sluice_pg_query_options &qo, sluice_pg_result_cb rcb, sluice_op **op_out) {
  if (batch) {
    op->out.batch = batch;
    op->work.stmts = batch->stmts.data();
    op->work.nstmts = batch->stmts.size();
  } else {
    if (int rc = op->own.assign(sql, nparams, values, lengths, formats)) {
      delete op;
      return rc;
    }
    op->out.result_cb = rcb;
    op->work.stmts = &op->own;
    op->work.nstmts = 1;
  }
  op->work.flags = qo.flags;
  // One clock read serves the deadline and the op's start time.
  uint64_t now = now_ns();
  uint64_t deadline = now + uint64_t(qo.timeout_ms) * kNs;
  op->created_ns = now;
  if constexpr (std::is_same_v<Op, PoolQuery>) op->deadline = deadline;
  if (batch && batch->running.exchange(true)) {
    delete op;
    return fail(SLUICE_ESTATE, "the batch is already running");
  }
  int rc = start_op(op, op_out, deadline);
  if (rc != 0 && batch) batch->running.store(false);
  return rc;
}

}  // namespace

extern "C" {

int sluice_pg_pool_options_init(sluice_pg_pool_options *o, unsigned int version) {
  if (!o) return fail(SLUICE_EINVAL, "sluice_pg_pool_options_init: opts is NULL");
  if (int rc = check_version("sluice_pg_pool_options", version, SLUICE_PG_POOL_OPTIONS_VERSION))
    return rc;
  sluice_pg_pool_options d = SLUICE_PG_POOL_OPTIONS_INIT;
  *o = d;
  o->version = version;
  return 0;
}

int sluice_pg_query_options_init(sluice_pg_query_options *o, unsigned int version) {
  if (!o) return fail(SLUICE_EINVAL, "sluice_pg_query_options_init: opts is NULL");
  if (int rc = check_version("sluice_pg_query_options", version, SLUICE_PG_QUERY_OPTIONS_VERSION))
    return rc;
  sluice_pg_query_options d = SLUICE_PG_QUERY_OPTIONS_INIT;
  *o = d;
  o->version = version;
  return 0;
}

int sluice_pg_pool_new(sluice_pg_pool **out, sluice_runtime *rt, const sluice_pg_pool_options *opts) {
  if (!out) return fail(SLUICE_EINVAL, "sluice_pg_pool_new: out is NULL");
  *out = nullptr;
  if (!rt) return fail(SLUICE_EINVAL, "sluice_pg_pool_new: runtime is NULL");
  if (!opts) return fail(SLUICE_EINVAL, "sluice_pg_pool_new: opts is NULL (conninfo is required)");
  if (int rc = check_version("sluice_pg_pool_options", opts->version, SLUICE_PG_POOL_OPTIONS_VERSION))
    return rc;
  const sluice_pg_pool_options &o = *opts;
  if (!o.conninfo) return fail(SLUICE_EINVAL, "sluice_pg_pool_options.conninfo is NULL");
  if (o.max_size == 0 || o.max_size > 10000)
    return fail(SLUICE_EINVAL, "max_size %u is outside 1..10000", o.max_size);
  if (o.min_size > o.max_size)
    return fail(SLUICE_EINVAL, "min_size %u is above max_size %u", o.min_size, o.max_size);
  if (o.max_connecting == 0) return fail(SLUICE_EINVAL, "max_connecting must be at least 1");
  if (o.connect_timeout_ms == 0) return fail(SLUICE_EINVAL, "connect_timeout_ms must be > 0");
  if (o.health_timeout_ms == 0) return fail(SLUICE_EINVAL, "health_timeout_ms must be > 0");
  if (o.backoff_base_ms < 100)
    return fail(SLUICE_EINVAL, "backoff_base_ms %u is below 100 (at most 10 attempts a second)",
                o.backoff_base_ms);
  if (o.backoff_max_ms < o.backoff_base_ms)
    return fail(SLUICE_EINVAL, "backoff_max_ms %u is below backoff_base_ms %u", o.backoff_max_ms,
                o.backoff_base_ms);
  Runtime *r = unwrap(rt);
  return guarded([&] {
    Pool *p = nullptr;
    if (int rc = Pool::create(r, o, &p)) return rc;
    if (int rc = r->add_hook(p)) {
      delete p;
      return rc;
    }
    int rc = r->post_internal([](void *arg, int) { pool_start(static_cast<Pool *>(arg)); }, p);
    if (rc != 0) {
      r->remove_hook(p);
      delete p;
      return rc;
    }
    *out = reinterpret_cast<sluice_pg_pool *>(p);
    return 0;
  });
}

int sluice_pg_pool_close(sluice_pg_pool *pool, uint32_t drain_timeout_ms, sluice_status_cb cb,
                         void *user_data, sluice_free_cb free_user_data, sluice_op **op_out) {
  if (!pool) return fail(SLUICE_EINVAL, "sluice_pg_pool_close: pool is NULL");
  if (!cb) return fail(SLUICE_EINVAL, "sluice_pg_pool_close: callback is NULL");
  Pool *p = unwrap(pool);
  return guarded([&] {
    return start_op(new CloseOp(p->rt, p, drain_timeout_ms, cb, user_data, free_user_data), op_out, 0);
  });
}

void sluice_pg_pool_free(sluice_pg_pool *pool) {
  if (!pool) return;
  Pool *p = unwrap(pool);
  // Closed (with no drain time if it was not) and released on the loop;
  // from another thread this waits, so nothing calls back afterwards.
  int rc = p->rt->call([](void *arg) { static_cast<Pool *>(arg)->destroy_on_loop(); }, p);
  if (rc != 0) delete p;  // the runtime is gone: its shutdown hook closed everything
}

int sluice_pg_pool_acquire(sluice_pg_pool *pool, int64_t timeout_ms, sluice_pg_acquire_cb cb,
                           void *user_data, sluice_free_cb free_user_data, sluice_op **op_out) {
  if (!pool) return fail(SLUICE_EINVAL, "sluice_pg_pool_acquire: pool is NULL");
  if (!cb) return fail(SLUICE_EINVAL, "sluice_pg_pool_acquire: callback is NULL");
  if (timeout_ms <= 0)
    return fail(SLUICE_EINVAL, "sluice_pg_pool_acquire: timeout_ms must be > 0 (got %lld)",
                static_cast<long long>(timeout_ms));
  Pool *p = unwrap(pool);
  return guarded([&] {
    auto *op = new AcquireOp(p->rt, p, cb, user_data, free_user_data);
    op->created_ns = now_ns();
    op->deadline = op->created_ns + uint64_t(timeout_ms) * kNs;
    return start_op(op, op_out, op->deadline);
  });
}

int sluice_pg_conn_release(sluice_pg_conn *conn) {
  if (!conn) return fail(SLUICE_EINVAL, "sluice_pg_conn_release: conn is NULL");
  Lease *l = lease_of(conn);
  if (l->released.exchange(true, std::memory_order_acq_rel))
    return fail(SLUICE_ESTATE, "sluice_pg_conn_release: already released");
  Pool *p = l->pool;
  return guarded([&] {
    auto give_back = [](void *arg, int) {
      Lease *l = static_cast<Lease *>(arg);
      if (l->running) return;  // the running query releases it when it ends
      Conn *c = l->conn;
      if (c && c->state != Conn::CLOSED) {
        c->lease = nullptr;
        l->pool->release(c);
      }
      delete l;
    };
    if (p->rt->is_loop_thread()) {
      give_back(l, 0);
      return 0;
    }
    int rc = p->rt->post_internal(give_back, l);
    if (rc != 0) delete l;  // the runtime is gone; so is the connection
    return 0;
  });
}

int sluice_pg_conn_query(sluice_pg_conn *conn, const char *sql, int nparams,
                         const char *const *values, const int *lengths, const int *formats,
                         const sluice_pg_query_options *opts, sluice_pg_result_cb cb,
                         void *user_data, sluice_free_cb free_user_data, sluice_op **op_out) {
  if (!conn) return fail(SLUICE_EINVAL, "sluice_pg_conn_query: conn is NULL");
  if (!cb) return fail(SLUICE_EINVAL, "sluice_pg_conn_query: callback is NULL");
  Lease *l = lease_of(conn);
  if (l->released.load(std::memory_order_acquire))
    return fail(SLUICE_ESTATE, "sluice_pg_conn_query: the connection was released");
  sluice_pg_query_options qo;
  if (int rc = resolve_query_options(opts, &qo)) return rc;
  return guarded([&] {
    auto *op = new ConnQuery(l->pool->rt, l->pool, l, nullptr, user_data, free_user_data);
    return start_query(op, nullptr, sql, nparams, values, lengths, formats, qo, cb, op_out);
  });
}

int sluice_pg_pool_query(sluice_pg_pool *pool, const char *sql, int nparams,
                         const char *const *values, const int *lengths, const int *formats,
                         const sluice_pg_query_options *opts, sluice_pg_result_cb cb,
                         void *user_data, sluice_free_cb free_user_data, sluice_op **op_out) {
  if (!pool) return fail(SLUICE_EINVAL, "sluice_pg_pool_query: pool is NULL");
  if (!cb) return fail(SLUICE_EINVAL, "sluice_pg_pool_query: callback is NULL");
  sluice_pg_query_options qo;
  if (int rc = resolve_query_options(opts, &qo)) return rc;
  Pool *p = unwrap(pool);
  return guarded([&] {
    auto *op = new PoolQuery(p->rt, p, nullptr, user_data, free_user_data);
    return start_query(op, nullptr, sql, nparams, values, lengths, formats, qo, cb, op_out);
  });
}

int sluice_pg_batch_new(sluice_pg_batch **out) {
  if (!out) return fail(SLUICE_EINVAL, "sluice_pg_batch_new: out is NULL");
  return guarded([&] {
    *out = new sluice_pg_batch();
    return 0;
  });
}

int sluice_pg_batch_add(sluice_pg_batch *b, const char *sql, int nparams, const char *const *values,
                        const int *lengths, const int *formats) {
  if (!b) return fail(SLUICE_EINVAL, "sluice_pg_batch_add: batch is NULL");
  if (b->running.load(std::memory_order_acquire))
    return fail(SLUICE_ESTATE, "sluice_pg_batch_add: the batch is running");
  return guarded([&] {
    b->stmts.emplace_back();
    if (int rc = b->stmts.back().assign(sql, nparams, values, lengths, formats)) {
      b->stmts.pop_back();
      return rc;
    }
    return 0;
  });
}

size_t sluice_pg_batch_size(const sluice_pg_batch *b) { return b ? b->stmts.size() : 0; }

const sluice_pg_result *sluice_pg_batch_result(const sluice_pg_batch *b, size_t i) {
  if (!b || b->running.load(std::memory_order_acquire) || i >= b->results.size()) return nullptr;
  return b->results[i];
}

void sluice_pg_batch_free(sluice_pg_batch *b) { delete b; }

int sluice_pg_conn_batch(sluice_pg_conn *conn, sluice_pg_batch *batch,
                         const sluice_pg_query_options *opts, sluice_status_cb cb, void *user_data,
                         sluice_free_cb free_user_data, sluice_op **op_out) {
  if (!conn || !batch || !cb) return fail(SLUICE_EINVAL, "sluice_pg_conn_batch: NULL argument");
  if (batch->stmts.empty()) return fail(SLUICE_EINVAL, "sluice_pg_conn_batch: the batch is empty");
  Lease *l = lease_of(conn);
  if (l->released.load(std::memory_order_acquire))
    return fail(SLUICE_ESTATE, "sluice_pg_conn_batch: the connection was released");
  sluice_pg_query_options qo;
  if (int rc = resolve_query_options(opts, &qo)) return rc;
  return guarded([&] {
    auto *op = new ConnQuery(l->pool->rt, l->pool, l, cb, user_data, free_user_data);
    return start_query(op, batch, nullptr, 0, nullptr, nullptr, nullptr, qo, nullptr, op_out);
  });
}

int sluice_pg_pool_batch(sluice_pg_pool *pool, sluice_pg_batch *batch,
                         const sluice_pg_query_options *opts, sluice_status_cb cb, void *user_data,
                         sluice_free_cb free_user_data, sluice_op **op_out) {
  if (!pool || !batch || !cb) return fail(SLUICE_EINVAL, "sluice_pg_pool_batch: NULL argument");
  if (batch->stmts.empty()) return fail(SLUICE_EINVAL, "sluice_pg_pool_batch: the batch is empty");
  sluice_pg_query_options qo;
  if (int rc = resolve_query_options(opts, &qo)) return rc;
  Pool *p = unwrap(pool);
  return guarded([&] {
    auto *op = new PoolQuery(p->rt, p, cb, user_data, free_user_data);
    return start_query(op, batch, nullptr, 0, nullptr, nullptr, nullptr, qo, nullptr, op_out);
  });
}

int sluice_pg_listen(sluice_pg_pool *pool, const char *channel, sluice_pg_notify_cb cb,
                     void *user_data, sluice_free_cb free_user_data, sluice_pg_listener **out) {
  if (!pool || !channel || !cb || !out) return fail(SLUICE_EINVAL, "sluice_pg_listen: NULL argument");
  size_t n = std::strlen(channel);
  if (n == 0 || n > 63)
    return fail(SLUICE_EINVAL, "sluice_pg_listen: channel must be 1..63 bytes (got %zu)", n);
  Pool *p = unwrap(pool);
  return guarded([&] {
    auto *l = new Listener();
    l->pool = p;
    l->channel = channel;
    l->cb = cb;
    l->user_data = user_data;
    l->free_user_data = free_user_data;
    int rc = p->rt->post_internal(
        [](void *arg, int) {
          auto *l = static_cast<Listener *>(arg);
          l->pool->add_listener(l);
        },
        l);
    if (rc != 0) {
      delete l;
      return rc;
    }
    *out = reinterpret_cast<sluice_pg_listener *>(l);
    return 0;
  });
}

int sluice_pg_listener_ready(const sluice_pg_listener *l) {
  return l ? reinterpret_cast<const Listener *>(l)->ready.load(std::memory_order_acquire) : 0;
}

void sluice_pg_listener_free(sluice_pg_listener *handle) {
  if (!handle) return;
  auto *l = reinterpret_cast<Listener *>(handle);
  guarded([&] {
    int rc = l->pool->rt->post_internal(
        [](void *arg, int) {
          auto *l = static_cast<Listener *>(arg);
          l->pool->remove_listener(l);
        },
        l);
    if (rc != 0) {  // no loop any more: nothing can call it back
      if (l->free_user_data) l->free_user_data(l->user_data);
      delete l;
    }
    return 0;
  });
}

int sluice_pg_pool_stats_get(const sluice_pg_pool *pool, sluice_pg_pool_stats *out) {
  if (!pool || !out) return fail(SLUICE_EINVAL, "sluice_pg_pool_stats_get: NULL argument");
  const Pool::Figures &f = unwrap(pool)->fig;
  sluice_pg_pool_stats s{};
  s.size = sizeof s;
  auto ld = [](auto &a) { return a.load(std::memory_order_relaxed); };
  s.total = ld(f.total), s.idle = ld(f.idle), s.in_use = ld(f.in_use);
  s.connecting = ld(f.connecting), s.waiting = ld(f.waiting);
  s.peak_total = ld(f.peak_total), s.peak_waiting = ld(f.peak_waiting);
  s.down = ld(f.down);
  s.acquires = ld(f.acquires), s.acquire_timeouts = ld(f.acquire_timeouts);
  s.acquire_exhausted = ld(f.acquire_exhausted), s.acquire_unreachable = ld(f.acquire_unreachable);
  s.connect_attempts = ld(f.connect_attempts), s.connects = ld(f.connects);
  s.connect_failures = ld(f.connect_failures);
  for (int i = 0; i < SLUICE_PG_EVICT_REASONS_; i++) s.evictions[i] = ld(f.evictions[i]);
  s.queries = ld(f.queries), s.query_errors = ld(f.query_errors);
  s.query_timeouts = ld(f.query_timeouts), s.ambiguous = ld(f.ambiguous);
  uint64_t *cls[9] = {&s.errors_08, &s.errors_22, &s.errors_23, &s.errors_25, &s.errors_40,
                      &s.errors_42, &s.errors_53, &s.errors_57, &s.errors_other};
  for (int i = 0; i < 9; i++) *cls[i] = ld(f.errors_by_class[i]);
  s.wait_ns_total = ld(f.wait_ns), s.query_ns_total = ld(f.query_ns), s.hold_ns_recent = ld(f.hold_ns);
  return copy_sized(out, s, "sluice_pg_pool_stats_get");
}

}  // extern "C"
