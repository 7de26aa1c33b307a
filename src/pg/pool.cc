// The pool: who gets which connection, when connections are opened and
// closed, what happens while the server is down, and the orderly close.
#include <cinttypes>
#include <cstring>
#include <thread>

#include "common/error.h"
#include "pg/pg.h"

namespace sluice::pg {

// ---- the canceller thread ----------------------------------------------

std::shared_ptr<Canceller> Canceller::start(Runtime *rt) {
  auto c = std::make_shared<Canceller>();
  c->rt_ = rt;
  std::thread([c] {
    pthread_setname_np(pthread_self(), "sluice-pgcancel");
    std::unique_lock<std::mutex> lock(c->mu_);
    for (;;) {
      c->cv_.wait(lock, [&] { return c->stop_ || !c->queue_.empty(); });
      if (c->queue_.empty()) return;
      Job job = std::move(c->queue_.front());
      c->queue_.pop_front();
      lock.unlock();
      char err[256];
      PQcancel(job.cancel, err, sizeof err);  // blocks: the reason for this thread
      PQfreeCancel(job.cancel);
      lock.lock();
      if (c->stop_) continue;  // the pool (and maybe the runtime) is gone
      auto *t = new std::shared_ptr<CancelTicket>(std::move(job.ticket));
      int rc = c->rt_->post_internal(
          [](void *arg, int) {
            auto *t = static_cast<std::shared_ptr<CancelTicket> *>(arg);
            if (Conn *conn = (*t)->conn) conn->cancel_taken();
            delete t;
          },
          t);
      if (rc != 0) delete t;
    }
  }).detach();
  return c;
}

void Canceller::submit(PGcancel *pc, std::shared_ptr<CancelTicket> ticket) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      PQfreeCancel(pc);
      return;
    }
    queue_.push_back(Job{pc, std::move(ticket)});
  }
  cv_.notify_one();
}

void Canceller::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    for (Job &j : queue_) PQfreeCancel(j.cancel);
    queue_.clear();
  }
  cv_.notify_one();
}

// ---- creation ----------------------------------------------------------

int Pool::create(Runtime *rt, const sluice_pg_pool_options &o, Pool **out) {
  char *err = nullptr;
  PQconninfoOption *parsed = PQconninfoParse(o.conninfo, &err);
  if (!parsed) {
    int rc = fail(SLUICE_EINVAL, "conninfo: %s", err ? err : "out of memory");
    if (err) PQfreemem(err);
    return rc;
  }
  auto *p = new Pool();
  p->rt = rt;
  p->opts = o;
  p->conninfo = o.conninfo;
  p->opts.conninfo = p->conninfo.c_str();
  constexpr int kDefaults = 5;
  bool has[kDefaults] = {false, false, false, false, false};
  const char *defaults[kDefaults][2] = {{"keepalives", "1"},
                                        {"keepalives_idle", "15"},
                                        {"keepalives_interval", "5"},
                                        {"keepalives_count", "3"},
                                        {"tcp_user_timeout", "30000"}};
  std::string host;
  for (PQconninfoOption *opt = parsed; opt->keyword; opt++) {
    if (!opt->val) continue;
    for (int i = 0; i < kDefaults; i++) has[i] |= std::strcmp(opt->keyword, defaults[i][0]) == 0;
    if (std::strcmp(opt->keyword, "host") == 0) host = opt->val;
    if (std::strcmp(opt->keyword, "hostaddr") == 0) p->hostaddr_index = int(p->keys.size());
    p->keys.emplace_back(opt->keyword);
    p->vals.emplace_back(opt->val);
  }
  PQconninfoFree(parsed);
  // TCP keepalives notice a silent partition on an idle connection, and
  // the user timeout one that swallows what we send.
  for (int i = 0; i < kDefaults; i++)
    if (!has[i]) {
      p->keys.emplace_back(defaults[i][0]);
      p->vals.emplace_back(defaults[i][1]);
    }
  // Names are looked up by us, off the loop; explicit hostaddr wins.
  if (p->hostaddr_index < 0 && !host.empty()) {
    size_t start = 0;
    for (;;) {
      size_t comma = host.find(',', start);
      p->hosts.push_back(host.substr(start, comma == std::string::npos ? comma : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  p->rng ^= uv_hrtime();
  if (o.monitor) {
    const char *names[3] = {"pg.acquire", "pg.query", "pg.connect"};
    for (int i = 0; i < 3; i++)
      sluice_monitor_series(o.monitor, names[i], std::strlen(names[i]), &p->series_id[i]);
  }
  uv_loop_t *loop = rt->loop();
  (void)loop;
  *out = p;
  return 0;
}

// Loop thread, right after creation: timers, hook, first connections.
void pool_start(Pool *p) {
  uv_loop_t *loop = p->rt->loop();
  for (uv_timer_t *t : {&p->backoff_timer, &p->sweep_timer, &p->close_timer}) {
    uv_timer_init(loop, t);
    t->data = p;
    p->handles++;
  }
  p->canceller = Canceller::start(p->rt);
  uv_timer_start(
      &p->sweep_timer, [](uv_timer_t *t) { static_cast<Pool *>(t->data)->sweep(); }, 1000, 1000);
  p->maintain();
  p->listener_maintain();
}

// ---- figures -----------------------------------------------------------

void Pool::observe(Series s, uint64_t since_ns, int outcome, uint64_t now) {
  if (!opts.monitor) return;
  if (!now) now = now_ns();
  sluice_monitor_record_id(opts.monitor, series_id[s], now > since_ns ? now - since_ns : 0, outcome);
}

void Pool::refuse(Request *r, int status, const std::string &msg) {
  observe(ACQUIRE, r->enqueued_ns ? r->enqueued_ns : r->created_ns, status);
  r->refused(status, msg);
}

static bool is_live(Conn::State s) { return s == Conn::IDLE || s == Conn::LENT; }

void Pool::set_state(Conn *c, Conn::State s) {
  if (c->counted) {
    live += uint32_t(is_live(s)) - uint32_t(is_live(c->state));
    lent += uint32_t(s == Conn::LENT) - uint32_t(c->state == Conn::LENT);
  }
  c->state = s;
}

void Pool::update_gauges() {
  uint32_t total = live;
  fig.total.store(total, std::memory_order_relaxed);
  fig.idle.store(uint32_t(idle.size()), std::memory_order_relaxed);
  fig.in_use.store(lent, std::memory_order_relaxed);
  fig.connecting.store(connecting, std::memory_order_relaxed);
  fig.waiting.store(uint32_t(waiters.size()), std::memory_order_relaxed);
  if (total > fig.peak_total.load(std::memory_order_relaxed))
    fig.peak_total.store(total, std::memory_order_relaxed);
  if (waiters.size() > fig.peak_waiting.load(std::memory_order_relaxed))
    fig.peak_waiting.store(uint32_t(waiters.size()), std::memory_order_relaxed);
}

void Pool::count_error(const sluice_pg_result *r) {
  static const char *classes[8] = {"08", "22", "23", "25", "40", "42", "53", "57"};
  size_t k = 8;
  for (size_t i = 0; i < 8; i++)
    if (r->sqlstate.compare(0, 2, classes[i]) == 0) k = i;
  bump(fig.errors_by_class[k]);
}

void Pool::note_hold(uint64_t ns) {
  // Exponentially weighted, alpha 1/8: recent enough to follow a slowdown.
  hold_ewma_ns = hold_ewma_ns ? hold_ewma_ns - hold_ewma_ns / 8 + ns / 8 : ns;
  fig.hold_ns.store(hold_ewma_ns, std::memory_order_relaxed);
}

void Pool::emit(sluice_pg_event_kind kind, sluice_pg_evict_reason reason, const std::string &msg) {
  if (!opts.on_event) return;
  sluice_pg_event ev{kind, reason == SLUICE_PG_EVICT_REASONS_ ? sluice_pg_evict_reason(0) : reason,
                     msg.c_str()};
  opts.on_event(opts.event_user_data, &ev);
}

// ---- lending -----------------------------------------------------------

uint32_t live_count(const Pool *p) { return p->live; }

void Pool::request(Request *r) {
  r->pool = this;
  uint64_t now = now_ns();
  r->enqueued_ns = now;
  if (closing || dead) return refuse(r, SLUICE_ECLOSED, "the pool is closing");
  if (down && opts.fail_fast) {
    bump(fig.acquire_unreachable);
    return refuse(r, SLUICE_EUNREACHABLE, "database unreachable: " + last_error);
  }
  if (!idle.empty()) {
    Conn *c = idle.back();
    idle.pop_back();
    return lend(c, r, now);
  }
  if (waiters.size() >= opts.max_waiters)
    return refuse(r, SLUICE_EFULL, "the pool's wait queue is full (max_waiters)");
  // Connections being opened will serve the queue as well.
  uint32_t live = live_count(this) + connecting;
  if (opts.admission_check && hold_ewma_ns && live > 0 && r->deadline) {
    // The wait this caller can foresee: the callers ahead of it served by
    // `live` connections, each held for the recent mean time, until one is
    // free for it; a one-shot query also needs its own hold time.
    uint64_t ahead = waiters.size();
    uint64_t est = r->holds_for_work ? (ahead + live) * hold_ewma_ns / live
                                     : (ahead + 1) * hold_ewma_ns / live;
    if (now + est > r->deadline) {
      bump(fig.acquire_exhausted);
      char msg[200];
      std::snprintf(msg, sizeof msg,
                    "pool exhausted: about %" PRIu64 " ms of waiting ahead (%zu waiting, %u "
                    "connections) and %" PRIu64 " ms left",
                    est / 1000000, waiters.size(), live,
                    r->deadline > now ? (r->deadline - now) / 1000000 : 0);
      return refuse(r, SLUICE_EEXHAUSTED, msg);
    }
  }
  r->waiting = true;
  r->wait_it = waiters.insert(waiters.end(), r);
  update_gauges();
  maintain();
}

void Pool::withdraw(Request *r) {
  if (r->waiting) {
    waiters.erase(r->wait_it);
    r->waiting = false;
    update_gauges();
  }
  if (r->checking) {  // the ping in progress then idles the connection
    r->checking->ping_for = nullptr;
    r->checking = nullptr;
  }
}

namespace {

// After a ping: lend the connection to the request it was checked for (if
// that one still waits), or put it back; a failed ping replaces it.
void ping_done(Conn *c, int status) {
  Pool *p = c->pool;
  Request *r = c->ping_for;
  c->ping_for = nullptr;
  bool still_wanted = r != nullptr;
  if (still_wanted) r->checking = nullptr;
  if (status != 0) {
    p->evict(c, SLUICE_PG_EVICT_HEALTH, "health check failed");
    if (still_wanted) p->request(r);  // the next connection, same deadline
    p->maintain();
    return;
  }
  c->checked_ns = now_ns();
  c->idle_since_ns = c->checked_ns;
  if (still_wanted) {
    p->set_state(c, Conn::IDLE);
    p->lend(c, r, c->checked_ns);
  } else {
    p->to_idle(c, c->checked_ns);
  }
}

void start_ping(Conn *c, Request *r) {
  c->pool->set_state(c, Conn::LENT);  // out of the idle list while the ping runs
  c->ping_for = r;
  if (r) r->checking = c;
  auto w = std::make_unique<InternalWork>(c, std::initializer_list<const char *>{""}, ping_done);
  Work *raw = w.get();
  c->internal = std::move(w);
  uv_timer_start(
      &c->timer,
      [](uv_timer_t *t) {
        auto *c = static_cast<Conn *>(t->data);
        if (c->state != Conn::CLOSED && c->internal)
          c->broken("health check timed out", SLUICE_PG_EVICT_HEALTH);
      },
      c->pool->opts.health_timeout_ms, 0);
  if (!c->run(raw)) c->broken("the connection failed before the health check was sent");
}

}  // namespace

void Pool::lend(Conn *c, Request *r, uint64_t now) {
  r->waiting = false;
  // A query that cannot finish before its caller's deadline would only
  // hold the connection from someone who can: refuse it, lend to the next.
  if (opts.admission_check && r->holds_for_work && r->deadline &&
      now + hold_ewma_ns > r->deadline) {
    bump(fig.acquire_exhausted);
    refuse(r, SLUICE_EEXHAUSTED, "pool exhausted: too little time left for the query");
    to_idle(c, now);  // the next waiter, or back to idle
    return;
  }
  // A connection idle for a while may have died silently (no FIN, no RST):
  // ping it before anyone relies on it.
  if (opts.check_idle_after_ms == 0 ||
      now - c->idle_since_ns > uint64_t(opts.check_idle_after_ms) * 1000000) {
    start_ping(c, r);
    update_gauges();
    return;
  }
  set_state(c, Conn::LENT);
  c->lent_ns = now;
  bump(fig.acquires);
  bump(fig.wait_ns, now - r->enqueued_ns);
  observe(ACQUIRE, r->enqueued_ns, 0, now);
  update_gauges();
  r->granted(c);
}

void Pool::release(Conn *c, uint64_t now) {
  if (c->state == Conn::CLOSED) return;
  if (c->busy()) {
    c->release_when_idle = true;  // finished when its work is
    return;
  }
  c->release_when_idle = false;
  if (c->lease) {
    c->lease->conn = nullptr;
    c->lease = nullptr;
  }
  if (!now) now = now_ns();
  note_hold(now - c->lent_ns);
  if (c->doomed) {
    evict(c, c->doom_reason, "evicted after a connection-fatal error");
    maintain();
    return;
  }
  switch (PQtransactionStatus(c->pg)) {
    case PQTRANS_IDLE:
      to_idle(c, now);
      return;
    case PQTRANS_INTRANS:
    case PQTRANS_INERROR: {
      // Returned inside a transaction: roll it back before anyone else
      // can see it.
      auto w = std::make_unique<InternalWork>(c, std::initializer_list<const char *>{"ROLLBACK"},
                                              [](Conn *c, int status) {
                                                if (status == 0 &&
                                                    PQtransactionStatus(c->pg) == PQTRANS_IDLE) {
                                                  c->pool->to_idle(c);
                                                } else {
                                                  c->pool->evict(c, SLUICE_PG_EVICT_DIRTY,
                                                                 "rollback failed");
                                                  c->pool->maintain();
                                                }
                                              });
      Work *raw = w.get();
      c->internal = std::move(w);
      if (!c->run(raw)) {
        c->internal.reset();
        evict(c, SLUICE_PG_EVICT_DIRTY, "could not send the rollback");
        maintain();
      }
      return;
    }
    default:
      evict(c, SLUICE_PG_EVICT_DIRTY, "returned in an unknown state");
      maintain();
  }
}

void Pool::after_work(Conn *c) {
  if (c->state == Conn::CLOSED) return;
  if (c->lease && !c->release_when_idle) {
    if (c->queued) start_queued(c);
    return;
  }
  release(c);
}

void Pool::to_idle(Conn *c, uint64_t now) {
  if (!now) now = now_ns();
  set_state(c, Conn::IDLE);
  c->idle_since_ns = now;
  if (closing && waiters.empty()) {
    evict(c, SLUICE_PG_EVICT_CLOSE, "the pool is closing");
    check_closed();
    return;
  }
  if (c->expires_ns && now >= c->expires_ns) {
    evict(c, SLUICE_PG_EVICT_LIFETIME, "max_lifetime_ms reached");
    maintain();
    return;
  }
  if (!waiters.empty()) {
    Request *r = waiters.front();
    waiters.pop_front();
    r->waiting = false;
    lend(c, r, now);
    return;
  }
  idle.push_back(c);
  update_gauges();
}

void Pool::evict(Conn *c, sluice_pg_evict_reason why, const std::string &msg) {
  if (c->state == Conn::CLOSED) return;
  if (c->state == Conn::CONNECTING && !c->listener) connecting--;
  if (c->state == Conn::IDLE)
    for (auto it = idle.begin(); it != idle.end(); ++it)
      if (*it == c) {
        idle.erase(it);
        break;
      }
  if (c->lease) {
    c->lease->conn = nullptr;
    c->lease = nullptr;
  }
  if (c->listener) {
    if (listen_conn == c) {
      listen_conn = nullptr;
      c->close();
      listener_lost();
      return;
    }
  } else {
    for (auto it = conns.begin(); it != conns.end(); ++it)
      if (*it == c) {
        conns.erase(it);
        break;
      }
    if (c->counted) {  // out of `conns`, so out of the counts
      live -= uint32_t(is_live(c->state));
      lent -= uint32_t(c->state == Conn::LENT);
      c->counted = false;
    }
    bump(fig.evictions[why]);
  }
  bool was_connecting = c->state == Conn::CONNECTING;
  c->close();
  update_gauges();
  if (!was_connecting) emit(SLUICE_PG_EVENT_EVICTED, why, msg);
  if (closing) check_closed();
}

// ---- opening connections ----------------------------------------------

uint64_t Pool::backoff_ns() {
  // Exponential from backoff_base_ms to backoff_max_ms; the jitter stays in
  // [max(base, d/2), d], so attempts never come closer than the base apart.
  uint64_t base = uint64_t(opts.backoff_base_ms) * 1000000;
  uint64_t cap = uint64_t(opts.backoff_max_ms) * 1000000;
  uint32_t shift = failures > 0 ? failures - 1 : 0;
  uint64_t d = shift >= 30 ? cap : std::min(cap, base << shift);
  uint64_t low = std::max(base, d / 2);
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return low + (d > low ? rng % (d - low + 1) : 0);
}

void Pool::arm_backoff(uint64_t at_ns) {
  uint64_t now = now_ns();
  uint64_t ms = at_ns > now ? (at_ns - now + 999999) / 1000000 : 0;
  uv_timer_start(
      &backoff_timer,
      [](uv_timer_t *t) {
        auto *p = static_cast<Pool *>(t->data);
        p->maintain();
        p->listener_maintain();
      },
      ms, 0);
}

void Pool::maintain() {
  // While closing, only requests accepted before the close are served.
  if (dead || (closing && waiters.empty())) return;
  uint64_t now = now_ns();
  for (;;) {
    uint32_t total = live_count(this) + connecting;
    bool want = (!closing && total < opts.min_size) ||
                (waiters.size() > connecting && total < opts.max_size);
    if (!want) break;
    if (now < next_connect_ns) {
      arm_backoff(next_connect_ns);
      break;
    }
    // While the server is down, one probe at a time.
    if (connecting >= (down ? 1u : opts.max_connecting)) break;
    auto *c = new Conn(this);
    conns.push_back(c);
    c->counted = true;  // CONNECTING: neither live nor lent yet
    connecting++;
    update_gauges();
    open_connection(c);
    if (down) break;
  }
}

void Pool::on_connect_failed(Conn *c, const std::string &why) {
  std::string msg = why;
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  bump(fig.connect_failures);
  observe(CONNECT, c->created_ns, SLUICE_EUNREACHABLE);
  if (c->listener) {
    evict(c, SLUICE_PG_EVICT_BROKEN, msg);
    listen_retry_ns = now_ns() + backoff_ns();
    arm_backoff(listen_retry_ns);
    return;
  }
  evict(c, SLUICE_PG_EVICT_BROKEN, msg);
  last_error = msg;
  failures++;
  emit(SLUICE_PG_EVENT_CONNECT_FAILED, SLUICE_PG_EVICT_REASONS_, msg);
  if (live_count(this) == 0 && !down) {
    down = true;
    fig.down.store(1, std::memory_order_relaxed);
    emit(SLUICE_PG_EVENT_DOWN, SLUICE_PG_EVICT_REASONS_, msg);
    if (opts.fail_fast) {
      // Nobody can be served until a probe succeeds: say so now rather
      // than let every caller wait out its deadline.
      while (!waiters.empty()) {
        Request *r = waiters.front();
        waiters.pop_front();
        r->waiting = false;
        bump(fig.acquire_unreachable);
        refuse(r, SLUICE_EUNREACHABLE, "database unreachable: " + msg);
      }
    }
  }
  update_gauges();
  next_connect_ns = now_ns() + backoff_ns();
  maintain();
}

// ---- health ------------------------------------------------------------

void Pool::sweep() {
  if (closing || dead) return;
  uint64_t now = now_ns();
  std::vector<Conn *> snapshot(idle.begin(), idle.end());
  for (Conn *c : snapshot) {
    if (c->state != Conn::IDLE) continue;
    if (c->expires_ns && now >= c->expires_ns) {
      evict(c, SLUICE_PG_EVICT_LIFETIME, "max_lifetime_ms reached");
    } else if (opts.idle_timeout_ms && live_count(this) > opts.min_size &&
               now - c->idle_since_ns > uint64_t(opts.idle_timeout_ms) * 1000000) {
      evict(c, SLUICE_PG_EVICT_IDLE, "idle_timeout_ms reached");
    } else if (opts.health_interval_ms &&
               now - std::max(c->idle_since_ns, c->checked_ns) >
                   uint64_t(opts.health_interval_ms) * 1000000) {
      for (auto it = idle.begin(); it != idle.end(); ++it)
        if (*it == c) {
          idle.erase(it);
          break;
        }
      start_ping(c, nullptr);
    }
  }
  update_gauges();
  maintain();
}

// ---- closing -----------------------------------------------------------

void Pool::begin_close(uint64_t drain_ms, sluice_op *op) {
  if (op) close_ops.push_back(op);
  if (dead) return finish_close();
  if (closing) return check_closed();
  closing = true;
  std::vector<Conn *> snapshot(idle.begin(), idle.end());
  for (Conn *c : snapshot) evict(c, SLUICE_PG_EVICT_CLOSE, "the pool is closing");
  uv_timer_stop(&sweep_timer);
  uv_timer_stop(&backoff_timer);
  uv_timer_start(
      &close_timer,
      [](uv_timer_t *t) {
        // The drain time is over: whatever still runs is cancelled.
        static_cast<Pool *>(t->data)->hard_close("the pool closed");
      },
      drain_ms, 0);
  check_closed();
}

void Pool::hard_close(const char *why) {
  closing = true;
  while (!waiters.empty()) {
    Request *r = waiters.front();
    waiters.pop_front();
    r->waiting = false;
    refuse(r, SLUICE_ECLOSED, why);
  }
  std::vector<Conn *> all = conns;
  for (Conn *c : all) {
    if (c->state == Conn::CLOSED) continue;
    if (c->busy() && c->work != c->internal.get()) c->broken(why);
    else evict(c, SLUICE_PG_EVICT_CLOSE, why);
  }
  finish_close();
}

void Pool::destroy_on_loop() {
  while (listeners) {
    Listener *l = listeners;
    listeners = l->next;
    if (l->free_user_data) l->free_user_data(l->user_data);
    delete l;
  }
  if (!dead) hard_close("the pool was freed");
  rt->remove_hook(this);
  free_requested = true;
  for (uv_timer_t *t : {&backoff_timer, &sweep_timer, &close_timer})
    uv_close(reinterpret_cast<uv_handle_t *>(t),
             [](uv_handle_t *h) { static_cast<Pool *>(h->data)->handle_closed(); });
}

void Pool::check_closed() {
  if (!closing || dead) return;
  for (Conn *c : conns)
    if (c->state != Conn::CLOSED && c->state != Conn::IDLE) return;
  if (!waiters.empty()) return;
  finish_close();
}

void Pool::finish_close() {
  if (!dead) {
    dead = true;
    closing = true;
    std::vector<Conn *> all = conns;
    for (Conn *c : all) evict(c, SLUICE_PG_EVICT_CLOSE, "the pool closed");
    if (listen_conn) evict(listen_conn, SLUICE_PG_EVICT_CLOSE, "the pool closed");
    uv_timer_stop(&sweep_timer);
    uv_timer_stop(&backoff_timer);
    uv_timer_stop(&close_timer);
    if (canceller) canceller->stop();
    fig.down.store(0, std::memory_order_relaxed);
  }
  std::vector<sluice_op *> ops;
  ops.swap(close_ops);
  for (sluice_op *op : ops) op->complete(0);
}

void Pool::on_runtime_shutdown() {
  // The loop is going away: close everything now. Pending requests are ops
  // of the runtime and are completed with ECLOSED right after this.
  for (Conn *c : conns) {
    c->work = nullptr;  // their ops are completed by the runtime
  }
  if (listen_conn) listen_conn->work = nullptr;
  finish_close();
  for (uv_timer_t *t : {&backoff_timer, &sweep_timer, &close_timer})
    uv_close(reinterpret_cast<uv_handle_t *>(t), [](uv_handle_t *h) {
      static_cast<Pool *>(h->data)->handle_closed();
    });
}

void Pool::handle_closed() {
  if (--handles == 0 && free_requested) delete this;
}

}  // namespace sluice::pg
