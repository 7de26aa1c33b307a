// Internals of the PostgreSQL pool. Everything here runs on the loop thread
// unless a comment says otherwise; the C entry points (capi.cc) only check
// arguments, copy them and start ops on the runtime.
#pragma once

#include <libpq-fe.h>
#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "alloc/alloc.h"
#include "pg/statement.h"
#include "runtime/runtime.h"
#include "sluice/pg.h"

// The public result: immutable once delivered, so any thread may read it.
struct sluice_pg_result : sluice::mem::Allocated {
  int status = 0;
  int sent = 0;
  PGresult *res = nullptr;  // server result, if there was one
  std::string sqlstate, message, detail, hint;
  ~sluice_pg_result() {
    if (res) PQclear(res);
  }
};

namespace sluice::pg {

class Pool;
struct Conn;
struct CancelTicket;

// `message` NULL or empty: the status's own text.
sluice_pg_result *make_error_result(int status, bool sent, const char *message);
// Takes ownership of `res` (a server result: rows or an error).
sluice_pg_result *make_server_result(PGresult *res);
bool is_connection_fatal(const std::string &sqlstate);

// What a connection runs: statements sent in one pipeline with one Sync.
// finished() is called exactly once unless the work is abandoned first.
struct Work {
  // The statements to send; they stay valid while the work runs (the op,
  // the running batch or the internal work owns them).
  const Statement *stmts = nullptr;
  size_t nstmts = 0;
  uint32_t flags = 0;
  bool sent = false;
  ResultSlots results;  // one per statement once sent
  virtual ~Work() = default;
  // status: 0, SLUICE_EPG (a statement failed), SLUICE_EAMBIGUOUS or
  // SLUICE_EUNREACHABLE (connection lost after / before sending).
  virtual void finished(int status) = 0;
  void clear_results() { results.clear(); }
};

// A request waiting for a connection (acquire, one-shot query or batch).
struct Request : sluice_op {
  using sluice_op::sluice_op;
  Pool *pool = nullptr;
  uint64_t deadline = 0;
  uint64_t enqueued_ns = 0;
  uint64_t created_ns = 0;  // set by the entry point with the deadline
  bool waiting = false;
  bool holds_for_work = false;  // the deadline must also cover its own query
  std::list<Request *>::iterator wait_it;
  Conn *checking = nullptr;  // a connection being pinged for this request
  // The pool hands over a clean, checked connection.
  virtual void granted(Conn *c) = 0;
  // The pool refuses or gives up: status and text for the result.
  virtual void refused(int status, const std::string &message) = 0;
  void on_start() override;
  void on_cancel() override;
  void on_deadline() override;
  void on_shutdown() override;
  // Subclasses stop work that is running on a connection, if any.
  virtual void abort_running(int status) { refused(status, ""); }
};

// The public lease handle.
struct Lease : mem::Allocated {
  Pool *pool;
  Conn *conn;  // nullptr once the connection was lost or closed
  std::atomic<bool> released{false};
  struct ConnQuery *running = nullptr;  // a query op of this lease in flight
  Lease(Pool *p, Conn *c) : pool(p), conn(c) {}
};

struct Conn : mem::Allocated {
  enum State { CONNECTING, IDLE, LENT, CLOSED };
  Pool *pool;
  bool listener = false;  // the dedicated LISTEN connection
  bool counted = false;   // in pool->conns, so in the pool's live/lent counts
  State state = CONNECTING;  // changed through Pool::set_state only
  PGconn *pg = nullptr;
  uv_poll_t *poll = nullptr;  // persistent once connected
  uv_poll_t *step_poll = nullptr;  // one per PQconnectPoll wait
  uv_timer_t timer{};  // connect deadline, then recovery/ping deadline
  int handles = 0;     // open uv handles; the Conn is freed at 0 once closed
  int fd = -1;
  int events = 0;
  bool want_write = false;
  uint64_t created_ns = 0, idle_since_ns = 0, lent_ns = 0, expires_ns = 0, checked_ns = 0;
  uint64_t sent_ns = 0;
  uint64_t done_ns = 0;  // when the last work ended (finished or broken)
  std::vector<std::string> resolved;  // hostaddr per host
  size_t resolving = 0;

  // What runs now: user work, or an internal step (ping, rollback, drain).
  Work *work = nullptr;
  struct Cmd {
    enum Kind { PREPARE, EXEC, SYNC } kind;
    size_t index;
    std::string sql;  // PREPARE: the cache key, dropped if the prepare fails
  };
  // The commands sent and not yet answered, in order. A vector read from a
  // head index keeps its capacity from one work to the next.
  struct CmdQueue {
    std::vector<Cmd> v;
    size_t head = 0;
    bool empty() const { return head == v.size(); }
    Cmd &front() { return v[head]; }
    void pop_front() {
      if (++head == v.size()) clear();
    }
    void push_back(Cmd &&c) { v.push_back(std::move(c)); }
    void clear() {
      v.clear();
      head = 0;
    }
  } cmds;
  std::vector<const char *> param_values;  // Conn::run's scratch for libpq
  std::unique_ptr<Work> internal;  // owned internal work, if that is what runs
  Lease *lease = nullptr;
  bool release_when_idle = false;  // the holder released it mid-work
  struct ConnQuery *queued = nullptr;  // a lease's query waiting for a drain
  Request *ping_for = nullptr;         // the request a ping is checking for
  std::shared_ptr<CancelTicket> ticket;  // a cancel request not yet taken
  bool drained = false;                // the abandoned query's results are in
  bool doomed = false;
  sluice_pg_evict_reason doom_reason = SLUICE_PG_EVICT_BROKEN;
  // Looked up by the statement's own bytes: no key is built on a hit.
  struct SqlHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::string, SqlHash, std::equal_to<>> statements;  // sql -> name
  uint32_t next_statement = 0;
  // Recent cache entries by the caller's SQL pointer, so a repeated query
  // costs a comparison of its bytes instead of a hash. Entries are map
  // nodes (stable until erased): any erase clears the hints.
  struct Hint {
    const void *origin = nullptr;
    const std::pair<const std::string, std::string> *entry = nullptr;
  };
  Hint hints[8];
  // The name of `s`'s prepared statement on this connection, or nullptr.
  const char *prepared_name(const Statement &s);
  void forget_statements();                     // all of them
  void forget_statement(const std::string &sql);  // one whose PREPARE failed

  explicit Conn(Pool *p) : pool(p) {}
  bool busy() const { return work != nullptr; }
  // Sends `w`; false if the connection failed before anything was sent.
  // `now`: the time if the caller has just read it, else 0.
  bool run(Work *w, uint64_t now = 0);
  // Detaches the current work (its finished() will not be called) and
  // recovers the connection: cancel on the server, drain, then `then`.
  void abandon();
  void on_io(int status, int events);
  void process_results();
  void update_poll();
  void broken(const std::string &why, sluice_pg_evict_reason reason = SLUICE_PG_EVICT_BROKEN);
  void finish_work();
  void close();  // PQfinish and close handles; frees when they are closed
  void drain_done();   // the abandoned query's results are all read
  void cancel_taken(); // the server has taken the cancel request
};

// Ties a cancel request to its connection; `conn` (loop thread only) is
// cleared if the connection closes first.
struct CancelTicket {
  Conn *conn;
};

// Cancels queries on the server: PQcancel blocks, so it runs on a thread of
// its own (never the loop, never libuv's pool), and reports back to the loop
// once the server has taken the request. Shared with that thread, so a pool
// that goes away does not wait for a hung cancel.
class Canceller {
 public:
  static std::shared_ptr<Canceller> start(Runtime *rt);
  // Takes ownership of `c`; any thread.
  void submit(PGcancel *c, std::shared_ptr<CancelTicket> ticket);
  void stop();  // after it returns, nothing is posted to the runtime

 private:
  struct Job {
    PGcancel *cancel;
    std::shared_ptr<CancelTicket> ticket;
  };
  Runtime *rt_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stop_ = false;
};

class Pool final : public mem::Allocated, public ShutdownHook {
 public:
  static int create(Runtime *rt, const sluice_pg_pool_options &o, Pool **out);
  Runtime *rt;
  sluice_pg_pool_options opts{};
  std::string conninfo;
  std::vector<std::string> keys, vals;  // parsed conninfo (+ keepalive defaults)
  int host_index = -1, hostaddr_index = -1;
  std::vector<std::string> hosts;  // hosts that need a DNS lookup ("" = none)

  std::vector<Conn *> conns;  // every connection but the listener's
  std::deque<Conn *> idle;    // most recently used at the back
  std::list<Request *> waiters;
  uint32_t connecting = 0;
  bool down = false;
  uint32_t failures = 0;  // consecutive connect failures
  uint64_t next_connect_ns = 0;
  std::string last_error = "no connection attempted yet";
  uint64_t rng = 0x9E3779B97F4A7C15ull;
  uint64_t hold_ewma_ns = 0;
  bool closing = false, dead = false;
  uint64_t close_deadline = 0;
  std::vector<sluice_op *> close_ops;
  uv_timer_t backoff_timer{}, sweep_timer{}, close_timer{};
  int handles = 0;
  bool free_requested = false;
  std::shared_ptr<Canceller> canceller;

  // Listener machinery.
  struct Listener *listeners = nullptr;
  Conn *listen_conn = nullptr;
  uint64_t listen_retry_ns = 0;

  // Figures, readable from any thread.
  struct Figures {
    std::atomic<uint32_t> total{0}, idle{0}, in_use{0}, connecting{0}, waiting{0};
    std::atomic<uint32_t> peak_total{0}, peak_waiting{0};
    std::atomic<int> down{0};
    std::atomic<uint64_t> acquires{0}, acquire_timeouts{0}, acquire_exhausted{0},
        acquire_unreachable{0}, connect_attempts{0}, connects{0}, connect_failures{0};
    std::atomic<uint64_t> evictions[SLUICE_PG_EVICT_REASONS_]{};
    std::atomic<uint64_t> queries{0}, query_errors{0}, query_timeouts{0}, ambiguous{0};
    std::atomic<uint64_t> errors_by_class[9]{};
    std::atomic<uint64_t> wait_ns{0}, query_ns{0}, hold_ns{0};
  } fig;
  // Connections in `conns` that are IDLE or LENT, and those LENT: kept as
  // states change so the gauges never walk the connections.
  uint32_t live = 0, lent = 0;
  void set_state(Conn *c, Conn::State s);

  // Requests.
  void request(Request *r);
  void withdraw(Request *r);
  // `now`: the time the caller has just read; 0 where it has not.
  void lend(Conn *c, Request *r, uint64_t now);
  void release(Conn *c, uint64_t now = 0);  // a holder is done with c
  void after_work(Conn *c);  // c's work or drain ended: back to its holder or the pool
  void to_idle(Conn *c, uint64_t now = 0);
  void evict(Conn *c, sluice_pg_evict_reason why, const std::string &msg);
  void maintain();
  void open_connection(Conn *c);
  void on_connected(Conn *c);
  void on_connect_failed(Conn *c, const std::string &why);
  void count_error(const sluice_pg_result *r);
  // Refuses a request (recording it as a failed acquire).
  void refuse(Request *r, int status, const std::string &msg);
  // The optional monitor's series.
  enum Series { ACQUIRE, QUERY, CONNECT };
  uint32_t series_id[3] = {0, 0, 0};
  void observe(Series s, uint64_t since_ns, int outcome, uint64_t now = 0);
  void note_hold(uint64_t ns);
  void update_gauges();
  void emit(sluice_pg_event_kind kind, sluice_pg_evict_reason reason, const std::string &msg);
  uint64_t backoff_ns();
  void arm_backoff(uint64_t at_ns);
  void sweep();
  // Closing.
  void begin_close(uint64_t drain_ms, sluice_op *op);
  void check_closed();
  void finish_close();
  void hard_close(const char *why);  // no more draining: cancel, refuse, close
  void destroy_on_loop();            // sluice_pg_pool_free
  void on_runtime_shutdown() override;
  void handle_closed();
  // Listeners (listen.cc).
  void listener_maintain();
  void listener_lost();
  void on_notify(PGnotify *n);
  void add_listener(Listener *l);
  void remove_listener(Listener *l);
};

struct Listener : mem::Allocated {
  Pool *pool;
  std::string channel;
  sluice_pg_notify_cb cb;
  void *user_data;
  sluice_free_cb free_user_data;
  std::atomic<int> ready{0};
  bool subscribed = false, subscribing = false;
  Listener *next = nullptr;
};

// The ping before lending, the rollback after a dirty return, and the
// LISTEN commands are internal works of a connection.
struct InternalWork : Work {
  std::vector<Statement> own;
  Conn *conn;
  void (*done)(Conn *c, int status);
  InternalWork(Conn *c, std::initializer_list<const char *> sqls, void (*d)(Conn *, int));
  void add(const char *sql);  // one more statement, no parameters; may throw bad_alloc
  void finished(int status) override;
};

uint64_t now_ns();

// The figures have a single writer, the loop thread, so a plain load and
// store publishes them without a locked read-modify-write.
template <class T>
inline void bump(std::atomic<T> &a, T n) {
  a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void bump(std::atomic<uint64_t> &a) { bump<uint64_t>(a, 1); }
void start_queued(Conn *c);  // ops.cc: runs a lease's query that waited for a drain

}  // namespace sluice::pg

inline sluice::pg::Pool *unwrap(sluice_pg_pool *p) { return reinterpret_cast<sluice::pg::Pool *>(p); }
inline const sluice::pg::Pool *unwrap(const sluice_pg_pool *p) {
  return reinterpret_cast<const sluice::pg::Pool *>(p);
}
