// The pool's operation types (see ops.cc).
#pragma once

#include <atomic>
#include <vector>

#include "pg/pg.h"

struct sluice_pg_batch : sluice::mem::Allocated {
  std::vector<sluice::pg::Statement> stmts;
  std::vector<sluice_pg_result *> results;
  std::atomic<bool> running{false};
  ~sluice_pg_batch() {
    for (auto *r : results) delete r;
  }
};

namespace sluice::pg {

// Where a query's outcome goes: one result to the caller, or the batch's
// per-statement results.
struct QueryOutput {
  sluice_pg_result_cb result_cb = nullptr;
  sluice_pg_batch *batch = nullptr;
  sluice_pg_result *single = nullptr;
  // `message`: the text of a result made here (NULL or "": the status's).
  void take(Work &w, int status, bool sent, const char *message);
  void deliver(sluice_status_cb status_cb, void *user_data, int status);
  ~QueryOutput();
};

struct AcquireOp final : Request {
  sluice_pg_acquire_cb acquire_cb;
  Lease *lease = nullptr;
  AcquireOp(Runtime *rt, Pool *p, sluice_pg_acquire_cb cb, void *ud, sluice_free_cb f)
      : Request(rt, nullptr, ud, f), acquire_cb(cb) {
    pool = p;
  }
  void granted(Conn *c) override;
  void refused(int status, const std::string &message) override;
  void deliver(int status) override;
};

template <class Op>
struct OpWork : Work {
  Op *op;
  explicit OpWork(Op *o) : op(o) {}
  void finished(int status) override { op->work_finished(status); }
};

struct ConnQuery final : sluice_op {
  Pool *pool;
  Lease *lease;
  Statement own;  // the statement of a single query
  OpWork<ConnQuery> work{this};
  QueryOutput out;
  Conn *conn = nullptr;       // running on it
  Conn *queued_on = nullptr;  // waiting for it to finish draining
  uint64_t created_ns = 0;    // set by the entry point with the deadline
  ConnQuery(Runtime *rt, Pool *p, Lease *l, sluice_status_cb cb, void *ud, sluice_free_cb f)
      : sluice_op(rt, cb, ud, f), pool(p), lease(l) {}
  void on_start() override;
  void on_cancel() override { stop(SLUICE_ECANCELED); }
  void on_deadline() override { stop(SLUICE_ETIMEDOUT); }
  void on_shutdown() override { stop(SLUICE_ECLOSED); }
  void deliver(int status) override { out.deliver(cb_, user_data_, status); }
  void go(Conn *c);
  void work_finished(int status);
  void detach_lease(Conn *c);
  void stop(int status);
  // `now`: the time if the caller has just read it, else 0.
  void finish(int status, bool sent, const char *message, uint64_t now = 0);
};

struct PoolQuery final : Request {
  Statement own;
  OpWork<PoolQuery> work{this};
  QueryOutput out;
  Conn *conn = nullptr;
  bool retried = false;
  PoolQuery(Runtime *rt, Pool *p, sluice_status_cb cb, void *ud, sluice_free_cb f)
      : Request(rt, cb, ud, f) {
    pool = p;
    holds_for_work = true;
  }
  void granted(Conn *c) override;
  void refused(int status, const std::string &message) override;
  void abort_running(int status) override;
  void deliver(int status) override { out.deliver(cb_, user_data_, status); }
  void work_finished(int status);
  void finish(int status, bool sent, const char *message, uint64_t now = 0);
};

struct CloseOp final : sluice_op {
  Pool *pool;
  uint64_t drain_ms;
  CloseOp(Runtime *rt, Pool *p, uint64_t ms, sluice_status_cb cb, void *ud, sluice_free_cb f)
      : sluice_op(rt, cb, ud, f), pool(p), drain_ms(ms) {}
  void on_start() override;
  void on_cancel() override {}    // a close cannot be undone
  void on_shutdown() override {}  // the pool's shutdown hook completes it
};

}  // namespace sluice::pg
