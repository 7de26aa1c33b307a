// The pool's waiting operations: acquire, queries and batches (on a lease
// or one-shot on the pool), and close.
#include "pg/ops.h"

#include "common/error.h"

namespace sluice::pg {

// ---- Request: the part every pool-level operation shares -------------

void Request::on_start() { pool->request(this); }

static void stop_request(Request *r, int status) {
  if (r->waiting || r->checking) {
    r->pool->withdraw(r);
    if (status == SLUICE_ETIMEDOUT)
      bump(r->pool->fig.acquire_timeouts);
    const char *why = status == SLUICE_ETIMEDOUT ? "no connection became free before the deadline"
                      : status == SLUICE_ECANCELED ? "cancelled while waiting for a connection"
                                                   : "the runtime is shutting down";
    r->pool->refuse(r, status, why);
    return;
  }
  r->abort_running(status);
}

void Request::on_cancel() { stop_request(this, SLUICE_ECANCELED); }
void Request::on_deadline() { stop_request(this, SLUICE_ETIMEDOUT); }
void Request::on_shutdown() { stop_request(this, SLUICE_ECLOSED); }

// ---- acquire -----------------------------------------------------------

void AcquireOp::granted(Conn *c) {
  lease = new Lease(pool, c);
  c->lease = lease;
  complete(0);
}

void AcquireOp::refused(int status, const std::string &message) {
  // Inside the callback, sluice_error_message() says why.
  fail(status, "%s", message.c_str());
  complete(status);
}

void AcquireOp::deliver(int status) {
  acquire_cb(user_data_, status, status == 0 ? reinterpret_cast<sluice_pg_conn *>(lease) : nullptr);
}

// ---- delivering results ------------------------------------------------

void QueryOutput::take(Work &w, int status, bool sent, const char *message) {
  if (w.results.empty()) w.results.reset(1);  // never sent: one result says why
  for (auto &r : w.results)
    if (!r) r = make_error_result(status, sent, message);
  if (batch) {
    w.results.move_to(batch->results);
  } else {
    single = w.results[0];
    w.results[0] = nullptr;
    // A single statement's status is its result's, which carries the text.
    single->status = status;
    single->sent = sent || single->sent;
  }
  w.clear_results();
}

void QueryOutput::deliver(sluice_status_cb status_cb, void *user_data, int status) {
  if (batch) {
    batch->running.store(false, std::memory_order_release);
    status_cb(user_data, status);
    return;
  }
  sluice_pg_result *r = single;
  single = nullptr;
  result_cb(user_data, status, r);
}

QueryOutput::~QueryOutput() { delete single; }

static void count_outcome(Pool *p, int status) {
  bump(p->fig.queries);
  if (status == 0) return;
  bump(p->fig.query_errors);
  if (status == SLUICE_EAMBIGUOUS) bump(p->fig.ambiguous);
}

// The outcome of stopping a query: a sent statement whose result we will
// never read is ambiguous when it was the deadline that stopped it.
static int stopped_status(Pool *p, int status, bool sent) {
  if (status == SLUICE_ETIMEDOUT) bump(p->fig.query_timeouts);
  return sent && status == SLUICE_ETIMEDOUT ? SLUICE_EAMBIGUOUS : status;
}

static const char *stopped_text(int status, bool sent) {
  if (status == SLUICE_EAMBIGUOUS)
    return "the deadline passed after the statement was sent: it was cancelled on the server, "
           "but it may have committed";
  if (status == SLUICE_ECANCELED)
    return sent ? "cancelled after the statement was sent; it may have committed"
                : "cancelled before the statement was sent";
  if (status == SLUICE_ETIMEDOUT) return "the deadline passed before the statement was sent";
  return "the runtime is shutting down";
}

// ---- a query on a lease ------------------------------------------------

void ConnQuery::on_start() {
  if (lease->released.load(std::memory_order_acquire))
    return finish(SLUICE_ESTATE, false, "the connection was already released");
  Conn *c = lease->conn;
  if (!c) return finish(SLUICE_EUNREACHABLE, false, "the connection was lost; release it and acquire another");
  if (lease->running)
    return finish(SLUICE_ESTATE, false, "a query is already running on this connection");
  lease->running = this;
  if (c->busy()) {  // still draining an abandoned query or rolling back
    c->queued = this;
    queued_on = c;
    return;
  }
  go(c);
}

void ConnQuery::go(Conn *c) {
  queued_on = nullptr;
  conn = c;
  if (!c->run(&work)) {
    conn = nullptr;
    lease->running = nullptr;
    c->pool->evict(c, SLUICE_PG_EVICT_BROKEN, "connection lost");
    c->pool->maintain();
    finish(SLUICE_EUNREACHABLE, false, "connection lost before anything was sent");
  }
}

void start_queued(Conn *c) {
  ConnQuery *q = c->queued;
  c->queued = nullptr;
  q->go(c);
}

void ConnQuery::work_finished(int status) {
  Conn *c = conn;
  conn = nullptr;
  detach_lease(c);
  finish(status, work.sent, nullptr, c ? c->done_ns : 0);
}

// The lease may have been released while its query ran: the connection
// goes back now that it is free.
void ConnQuery::detach_lease(Conn *c) {
  lease->running = nullptr;
  if (!lease->released.load(std::memory_order_acquire)) return;
  Lease *l = lease;
  lease = nullptr;
  if (c && l->conn == c && c->state != Conn::CLOSED) {
    c->lease = nullptr;
    c->release_when_idle = true;
    if (!c->busy()) pool->release(c);
  }
  delete l;
}

void ConnQuery::stop(int status) {
  if (queued_on) {
    queued_on->queued = nullptr;
    queued_on = nullptr;
    lease->running = nullptr;
    return finish(status, false, stopped_text(status, false));
  }
  if (conn) {
    Conn *c = conn;
    conn = nullptr;
    bool sent = work.sent;
    c->abandon();  // cancelled on the server and drained; the lease keeps it
    detach_lease(c);
    int st = stopped_status(pool, status, sent);
    return finish(st, sent, stopped_text(st, sent));
  }
  finish(status, false, stopped_text(status, false));
}

void ConnQuery::finish(int status, bool sent, const char *message, uint64_t now) {
  if (lease && !conn && !queued_on && lease->running == this) lease->running = nullptr;
  out.take(work, status, sent, message);
  count_outcome(pool, status);
  pool->observe(Pool::QUERY, created_ns, status, now);
  complete(status);
}

// ---- one-shot queries on the pool ------------------------------------

void PoolQuery::granted(Conn *c) {
  conn = c;
  if (!c->run(&work, c->lent_ns)) {  // lent just now
    // Nothing was sent: replace the connection and try another.
    conn = nullptr;
    pool->evict(c, SLUICE_PG_EVICT_BROKEN, "connection lost");
    pool->maintain();
    pool->request(this);
  }
}

void PoolQuery::work_finished(int status) {
  Conn *c = conn;
  conn = nullptr;
  bool retry = status == SLUICE_EUNREACHABLE ||  // lost before anything was sent
               (status == SLUICE_EAMBIGUOUS && (work.flags & SLUICE_PG_IDEMPOTENT) && !retried);
  if (retry && now_ns() < deadline && !pool->closing) {
    retried |= status == SLUICE_EAMBIGUOUS;
    work.clear_results();
    pool->request(this);
    return;
  }
  bool sent = work.sent;
  // The connection's end-of-work time serves the figures that follow.
  uint64_t now = c ? c->done_ns : 0;
  if (c && c->state != Conn::CLOSED) pool->release(c, now);
  finish(status, sent, nullptr, now);
}

void PoolQuery::refused(int status, const std::string &message) {
  finish(status, false, message.c_str());
}

void PoolQuery::abort_running(int status) {
  if (!conn) return finish(status, false, stopped_text(status, false));
  Conn *c = conn;
  conn = nullptr;
  bool sent = work.sent;
  c->abandon();  // drained in the background, then back to the pool
  int st = stopped_status(pool, status, sent);
  finish(st, sent, stopped_text(st, sent));
}

void PoolQuery::finish(int status, bool sent, const char *message, uint64_t now) {
  out.take(work, status, sent, message);
  count_outcome(pool, status);
  pool->observe(Pool::QUERY, created_ns, status, now);
  complete(status);
}

// ---- close -------------------------------------------------------------

void CloseOp::on_start() { pool->begin_close(drain_ms, this); }

}  // namespace sluice::pg
