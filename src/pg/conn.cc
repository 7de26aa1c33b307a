// One PostgreSQL connection on the loop: connecting without blocking (DNS off
// the loop, PQconnectPoll on uv_poll), running statements in pipeline mode,
// noticing a dead socket, and recovering after an abandoned query.
#include <arpa/inet.h>

#include <cstring>

#include "common/error.h"
#include "pg/pg.h"

namespace sluice::pg {
namespace {

void on_handle_closed(uv_handle_t *h) {
  auto *c = static_cast<Conn *>(h->data);
  if (h != reinterpret_cast<uv_handle_t *>(&c->timer)) delete reinterpret_cast<uv_poll_t *>(h);
  if (--c->handles == 0) delete c;
}

void close_poll(uv_poll_t *&p) {
  if (!p) return;
  // uv_close stops watching the fd at once, before libpq may close it.
  uv_close(reinterpret_cast<uv_handle_t *>(p), on_handle_closed);
  p = nullptr;
}

bool needs_lookup(const std::string &host) {
  if (host.empty() || host[0] == '/' || host[0] == '@') return false;
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) != 1 && inet_pton(AF_INET6, host.c_str(), buf) != 1;
}

void connect_now(Conn *c);
void connect_step(Conn *c, PostgresPollingStatusType st);

void on_connect_poll(uv_poll_t *p, int status, int) {
  auto *c = static_cast<Conn *>(p->data);
  close_poll(c->step_poll);
  if (c->state == Conn::CLOSED) return;
  if (status < 0) {
    c->pool->on_connect_failed(c, std::string("socket error: ") + uv_strerror(status));
    return;
  }
  connect_step(c, PQconnectPoll(c->pg));
}

void connect_step(Conn *c, PostgresPollingStatusType st) {
  if (st == PGRES_POLLING_OK) {
    uv_timer_stop(&c->timer);
    c->pool->on_connected(c);
    return;
  }
  if (st == PGRES_POLLING_FAILED) {
    c->pool->on_connect_failed(c, PQerrorMessage(c->pg));
    return;
  }
  // libpq may have switched sockets (next address, SSL retry): take the
  // current one for each wait, through a fresh poll handle.
  int fd = PQsocket(c->pg);
  auto *p = new uv_poll_t;
  if (fd < 0 || uv_poll_init(c->pool->rt->loop(), p, fd) != 0) {
    delete p;
    c->pool->on_connect_failed(c, "libpq gave no usable socket");
    return;
  }
  p->data = c;
  c->handles++;
  c->step_poll = p;
  uv_poll_start(p, st == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE, on_connect_poll);
}

void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  struct Lookup {
    Conn *c;
    size_t index;
  };
  auto *lk = static_cast<Lookup *>(req->data);
  Conn *c = lk->c;
  size_t index = lk->index;
  delete lk;
  delete req;
  if (c->state == Conn::CLOSED) {
    uv_freeaddrinfo(res);
    if (--c->handles == 0) delete c;
    return;
  }
  c->handles--;  // the lookup held the connection alive
  if (status == 0 && res) {
    char ip[INET6_ADDRSTRLEN] = "";
    if (res->ai_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in *>(res->ai_addr)->sin_addr, ip, sizeof ip);
    else
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6 *>(res->ai_addr)->sin6_addr, ip, sizeof ip);
    c->resolved[index] = ip;
  }
  uv_freeaddrinfo(res);
  if (status != 0) {
    c->pool->on_connect_failed(c, std::string("could not resolve host \"") + c->pool->hosts[index] +
                                      "\": " + uv_strerror(status));
    return;
  }
  if (--c->resolving == 0) connect_now(c);
}

void connect_now(Conn *c) {
  Pool *p = c->pool;
  std::vector<const char *> k, v;
  std::string hostaddr;
  bool have_lookup = !c->resolved.empty();
  if (have_lookup) {
    for (size_t i = 0; i < c->resolved.size(); i++) hostaddr += (i ? "," : "") + c->resolved[i];
  }
  for (size_t i = 0; i < p->keys.size(); i++) {
    if (have_lookup && int(i) == p->hostaddr_index) continue;
    k.push_back(p->keys[i].c_str());
    v.push_back(p->vals[i].c_str());
  }
  if (have_lookup) {
    k.push_back("hostaddr");
    v.push_back(hostaddr.c_str());
  }
  k.push_back(nullptr);
  v.push_back(nullptr);
  c->pg = PQconnectStartParams(k.data(), v.data(), 0);
  if (!c->pg) {
    p->on_connect_failed(c, "out of memory starting a connection");
    return;
  }
  if (PQstatus(c->pg) == CONNECTION_BAD) {
    p->on_connect_failed(c, PQerrorMessage(c->pg));
    return;
  }
  connect_step(c, PGRES_POLLING_WRITING);
}

void on_conn_poll(uv_poll_t *p, int status, int events) {
  static_cast<Conn *>(p->data)->on_io(status, events);
}

}  // namespace

void Pool::open_connection(Conn *c) {
  uv_timer_init(rt->loop(), &c->timer);
  c->timer.data = c;
  c->handles = 1;
  c->created_ns = now_ns();
  uv_timer_start(
      &c->timer,
      [](uv_timer_t *t) {
        auto *c = static_cast<Conn *>(t->data);
        if (c->state == Conn::CONNECTING)
          c->pool->on_connect_failed(c, "connection attempt timed out");
      },
      opts.connect_timeout_ms, 0);
  bump(fig.connect_attempts);
  // Host names are resolved on libuv's resolver threads, never on the loop
  // (libpq would block in getaddrinfo).
  c->resolved.assign(hosts.size(), std::string());
  for (size_t i = 0; i < hosts.size(); i++) {
    if (!needs_lookup(hosts[i])) {
      c->resolved[i] = hosts[i];
      continue;
    }
    auto *req = new uv_getaddrinfo_t;
    struct Lookup {
      Conn *c;
      size_t index;
    };
    req->data = new Lookup{c, i};
    struct addrinfo hints {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->resolving++;
    c->handles++;
    if (uv_getaddrinfo(rt->loop(), req, on_resolved, hosts[i].c_str(), nullptr, &hints) != 0) {
      delete static_cast<Lookup *>(req->data);
      delete req;
      c->resolving--;
      c->handles--;
      on_connect_failed(c, "could not start a host name lookup");
      return;
    }
  }
  // Hosts that are paths or addresses need no lookup and keep libpq's own
  // handling: only names are replaced by an address.
  bool any_lookup = false;
  for (auto &h : hosts) any_lookup |= needs_lookup(h);
  if (!any_lookup) c->resolved.clear();
  if (c->resolving == 0) connect_now(c);
}

void Pool::on_connected(Conn *c) {
  // A library must not write the server's NOTICEs to the host's stderr.
  PQsetNoticeReceiver(c->pg, [](void *, const PGresult *) {}, nullptr);
  PQsetnonblocking(c->pg, 1);
  if (!PQenterPipelineMode(c->pg)) {
    on_connect_failed(c, std::string("could not enter pipeline mode: ") + PQerrorMessage(c->pg));
    return;
  }
  c->fd = PQsocket(c->pg);
  c->poll = new uv_poll_t;
  if (uv_poll_init(rt->loop(), c->poll, c->fd) != 0) {
    delete c->poll;
    c->poll = nullptr;
    on_connect_failed(c, "could not watch the connection's socket");
    return;
  }
  c->poll->data = c;
  c->handles++;
  c->update_poll();
  if (c->listener) {  // not one of the pool's: not counted, not lent
    uv_timer_stop(&c->timer);
    set_state(c, Conn::LENT);
    listener_maintain();
    return;
  }
  connecting--;
  failures = 0;
  next_connect_ns = 0;
  bump(fig.connects);
  observe(CONNECT, c->created_ns, 0);
  if (down) {
    down = false;
    fig.down.store(0, std::memory_order_relaxed);
    emit(SLUICE_PG_EVENT_UP, SLUICE_PG_EVICT_REASONS_, "");
  }
  uint64_t now = now_ns();
  if (opts.max_lifetime_ms) {
    // +-10% so connections opened together do not all expire together.
    uint64_t life = uint64_t(opts.max_lifetime_ms) * 1000000;
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    c->expires_ns = now + life - life / 10 + rng % (life / 5 + 1);
  }
  c->checked_ns = now;
  emit(SLUICE_PG_EVENT_CONNECTED, SLUICE_PG_EVICT_REASONS_, "");
  to_idle(c);
  maintain();
}

void Conn::update_poll() {
  if (!poll) return;
  int want = UV_READABLE | (want_write ? UV_WRITABLE : 0);
  if (want != events) {
    events = want;
    uv_poll_start(poll, want, on_conn_poll);
  }
}

void Conn::on_io(int status, int ev) {
  if (state == CLOSED) return;
  if (status < 0) {
    broken(std::string("socket error: ") + uv_strerror(status));
    return;
  }
  if (ev & UV_WRITABLE) {
    int r = PQflush(pg);
    if (r < 0) {
      broken(PQerrorMessage(pg));
      return;
    }
    want_write = r == 1;
  }
  if (ev & UV_READABLE) {
    if (!PQconsumeInput(pg)) {
      broken(PQerrorMessage(pg));
      return;
    }
    while (PGnotify *n = PQnotifies(pg)) {
      pool->on_notify(n);
      PQfreemem(n);
    }
  }
  if (PQstatus(pg) == CONNECTION_BAD) {
    broken(PQerrorMessage(pg));
    return;
  }
  process_results();
  if (state != CLOSED) update_poll();
}

static size_t hint_slot(const void *origin) {
  return size_t((uintptr_t(origin) * 0x9E3779B97F4A7C15ull) >> 61);  // 8 slots
}

const char *Conn::prepared_name(const Statement &s) {
  Hint &h = hints[hint_slot(s.origin())];
  // The caller may have reused its buffer for other SQL: the bytes decide.
  if (h.origin == s.origin() && h.entry && h.entry->first == s.sql()) return h.entry->second.c_str();
  auto it = statements.find(s.sql());
  if (it == statements.end()) return nullptr;
  h = {s.origin(), &*it};
  return it->second.c_str();
}

void Conn::forget_statements() {
  statements.clear();
  for (Hint &h : hints) h = {};
}

void Conn::forget_statement(const std::string &sql) {
  statements.erase(sql);
  for (Hint &h : hints) h = {};
}

bool Conn::run(Work *w, uint64_t now) {
  work = w;
  w->sent = false;
  w->results.reset(w->nstmts);
  cmds.clear();
  int result_format = (w->flags & SLUICE_PG_BINARY_RESULT) ? 1 : 0;
  bool cache = pool->opts.statement_cache > 0 && !(w->flags & SLUICE_PG_NO_PREPARE) && !listener;
  bool ok = true;
  for (size_t i = 0; ok && i < w->nstmts; i++) {
    const Statement &s = w->stmts[i];
    param_values.resize(size_t(s.nparams()));
    s.values(param_values.data());
    const char *name = nullptr;
    if (cache && !(name = prepared_name(s)) && statements.size() < pool->opts.statement_cache) {
      std::string n = "sluice_" + std::to_string(++next_statement);
      ok = PQsendPrepare(pg, n.c_str(), s.sql_cstr(), s.nparams(), nullptr);
      if (!ok) break;
      auto added = statements.emplace(std::string(s.sql()), std::move(n)).first;
      name = added->second.c_str();
      cmds.push_back({Cmd::PREPARE, i, added->first});
    }
    ok = name ? PQsendQueryPrepared(pg, name, s.nparams(), param_values.data(), s.lengths(),
                                    s.formats(), result_format)
              : PQsendQueryParams(pg, s.sql_cstr(), s.nparams(), nullptr, param_values.data(),
                                  s.lengths(), s.formats(), result_format);
    if (ok) cmds.push_back({Cmd::EXEC, i, {}});
  }
  if (ok) ok = PQpipelineSync(pg);
  if (!ok) {
    // libpq buffers messages until the sync (its buffer only spills past
    // 8 KiB), so a failure while queueing the first one sent nothing.
    if (cmds.empty()) {
      work = nullptr;
      forget_statements();
      doomed = true;
      doom_reason = SLUICE_PG_EVICT_BROKEN;
      return false;
    }
    w->sent = true;
    broken(PQerrorMessage(pg));
    return true;
  }
  cmds.push_back({Cmd::SYNC, 0, {}});
  w->sent = true;
  sent_ns = now ? now : now_ns();
  int r = PQflush(pg);
  if (r < 0) {
    broken(PQerrorMessage(pg));
    return true;
  }
  want_write = r == 1;
  update_poll();
  return true;
}

void Conn::process_results() {
  while (work && !cmds.empty()) {
    if (PQisBusy(pg)) return;
    Cmd &c = cmds.front();
    PGresult *r = PQgetResult(pg);
    if (c.kind == Cmd::SYNC) {
      if (!r) return;  // nothing more buffered: wait for input
      bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
      PQclear(r);
      if (!sync) continue;
      cmds.pop_front();
      if (cmds.empty()) finish_work();
      return;
    }
    if (!r) {  // the end of this command's results
      cmds.pop_front();
      continue;
    }
    sluice_pg_result *&slot = work->results[c.index];
    if (c.kind == Cmd::PREPARE) {
      if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        PQclear(r);
      } else {
        forget_statement(c.sql);
        delete slot;
        slot = make_server_result(r);
      }
    } else if (slot) {
      PQclear(r);  // aborted after its PREPARE failed: keep that error
    } else {
      slot = make_server_result(r);
    }
  }
}

void Conn::finish_work() {
  Work *w = work;
  work = nullptr;
  cmds.clear();
  done_ns = now_ns();
  bump(pool->fig.query_ns, done_ns - sent_ns);
  int status = 0;
  for (auto &r : w->results) {
    if (!r) r = make_error_result(SLUICE_EINTERNAL, true, "no result received");
    if (status == 0 && r->status != 0) status = r->status;
    if (r->status == SLUICE_EPG) {
      pool->count_error(r);
      if (is_connection_fatal(r->sqlstate)) {
        doomed = true;
        doom_reason = SLUICE_PG_EVICT_FATAL;
      } else if (r->sqlstate == "25006") {
        doomed = true;
        doom_reason = SLUICE_PG_EVICT_READ_ONLY;
      } else if (r->sqlstate == "26000") {
        forget_statements();  // someone deallocated our prepared statements
      }
    }
  }
  w->finished(status);
}

void Conn::broken(const std::string &why, sluice_pg_evict_reason reason) {
  if (state == CLOSED) return;
  Work *w = work;
  work = nullptr;
  cmds.clear();
  done_ns = now_ns();
  // An internal work is owned by the connection, which closing releases.
  std::unique_ptr<Work> keep;
  if (internal && w == internal.get()) keep = std::move(internal);
  // Close first, so whatever the callback does sees a dead connection.
  pool->evict(this, reason, why);
  if (w) {
    int status = w->sent ? SLUICE_EAMBIGUOUS : SLUICE_EUNREACHABLE;
    std::string msg = (w->sent ? "connection lost before the result was read: "
                               : "connection lost before anything was sent: ") + why;
    for (auto &r : w->results) {
      if (r) continue;
      r = make_error_result(status, w->sent, msg.c_str());
    }
    w->finished(status);
  }
  pool->maintain();
}

namespace {

// Reads and drops the results of an abandoned query, then hands the
// connection on as if the query had finished. It needs no statements: the
// commands already queued say what to read.
struct DrainWork : InternalWork {
  explicit DrainWork(Conn *c) : InternalWork(c, {}, [](Conn *c, int) { c->drain_done(); }) {
    sent = true;
  }
};

}  // namespace

void Conn::abandon() {
  if (!work) return;
  auto d = std::make_unique<DrainWork>(this);
  d->results.reset(work->results.size());
  // The abandoned work's finished() must never run: results it already
  // collected stay with it.
  work = d.get();
  internal = std::move(d);
  drained = false;
  if (PGcancel *pc = PQgetCancel(pg)) {
    ticket = std::make_shared<CancelTicket>(CancelTicket{this});
    pool->canceller->submit(pc, ticket);
  }
  // A connection that does not recover in time is closed.
  uv_timer_start(
      &timer,
      [](uv_timer_t *t) {
        auto *c = static_cast<Conn *>(t->data);
        if (c->state == CLOSED) return;
        if ((c->internal && c->work == c->internal.get()) || c->ticket)
          c->broken("no answer after a query was cancelled");
      },
      pool->opts.health_timeout_ms, 0);
}

// A cancel that reaches the server after the query ended on its own would
// hit the next statement on this connection, so the connection is handed
// on only once both the results are drained and the cancel was taken.
void Conn::drain_done() {
  drained = true;
  if (!ticket) {
    uv_timer_stop(&timer);
    pool->after_work(this);
  }
}

void Conn::cancel_taken() {
  ticket.reset();
  if (drained && !work && state != CLOSED) {
    drained = false;
    uv_timer_stop(&timer);
    pool->after_work(this);
  }
}

InternalWork::InternalWork(Conn *c, std::initializer_list<const char *> sqls,
                           void (*d)(Conn *, int))
    : conn(c), done(d) {
  for (const char *s : sqls) add(s);
  flags = SLUICE_PG_NO_PREPARE;
}

void InternalWork::add(const char *sql) {
  own.emplace_back();
  if (own.back().assign(sql, 0, nullptr, nullptr, nullptr) != 0) {
    own.pop_back();
    throw std::bad_alloc();  // the only way a statement without parameters fails
  }
  stmts = own.data();
  nstmts = own.size();
}

void InternalWork::finished(int status) {
  Conn *c = conn;
  if (c->state != Conn::CLOSED) uv_timer_stop(&c->timer);
  // Owned by c->internal: keep it alive until done() has returned.
  std::unique_ptr<Work> self = std::move(c->internal);
  done(c, status);
}

void Conn::close() {
  if (state == CLOSED) return;
  pool->set_state(this, CLOSED);
  if (ticket) {
    ticket->conn = nullptr;
    ticket.reset();
  }
  work = nullptr;
  cmds.clear();
  close_poll(step_poll);
  close_poll(poll);
  if (pg) {
    PQfinish(pg);
    pg = nullptr;
  }
  internal.reset();
  uv_close(reinterpret_cast<uv_handle_t *>(&timer), on_handle_closed);
}

}  // namespace sluice::pg
