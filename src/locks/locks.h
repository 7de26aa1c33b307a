// The lock manager (public sluice_locks): 64 shards, each a mutex over a
// chained hash map of key entries, an LRU list of idle (cached) entries and
// a table of grant records that guards name. Nothing ever holds two
// shard mutexes at once, so shards need no lock order.
//
// Who touches what:
//  - Shard state: under the shard's mutex, from any thread.
//  - live_/peak_ (live-key count for the max_keys cap) and the room queue:
//    atomics and room_mu_, from any thread.
//  - LockOp state machine: the loop thread, except the queued -> granted
//    step, which a releaser takes under the shard mutex in its own thread
//    and then posts to the loop.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "alloc/alloc.h"
#include "op/op.h"
#include "runtime/runtime.h"
#include "sluice/locks.h"

namespace sluice::locks {

static_assert(sizeof(void *) == 8, "guards are 64-bit handle values");

constexpr unsigned kShardBits = 6;
constexpr unsigned kShards = 1u << kShardBits;
constexpr uint32_t kChunkBits = 5;  // grant records per chunk: 32 (2 KiB)
constexpr uint32_t kMaxGrantSlots = 1u << 25;  // per shard: the handle's index field
constexpr size_t kEntryBytes = 128;  // smallest entry: header plus a 56-byte key

struct LockOp;

// A key's lock. Live (held or waited on) or cached (idle). Every cached
// entry is on its shard's LRU list, in the order they went idle; a live one
// may still be there (it is taken off lazily, when the list's tail reaches
// it), so a busy key costs no list work between two grants.
struct Entry {
  Entry *hnext;           // hash chain
  Entry *lprev, *lnext;   // LRU list
  LockOp *qhead, *qtail;  // FIFO of waiting requests
  uint64_t hash;
  uint32_t readers;       // shared holders
  uint32_t key_len, key_cap;
  uint32_t idle_epoch;    // cleanup epoch when it went idle
  uint8_t writer;         // an exclusive holder
  uint8_t live;
  uint8_t in_lru;
  char *key() { return reinterpret_cast<char *>(this + 1); }
  size_t bytes() const { return sizeof(Entry) + key_cap; }
};

enum GrantState : uint8_t { kFree = 0, kReserved = 1, kHeld = 2 };
// A guard names a SINGLE or HEAD grant; PARTs are the other keys of a
// _many grant, reachable only through its HEAD's link chain.
enum GrantKind : uint8_t { kSingle = 0, kHead = 1, kPart = 2 };

struct Grant {
  Entry *entry;
  Grant *hprev, *hnext;   // the shard's holders in grant order (hold limit on)
  uint64_t token;
  uint64_t acquired_ns;   // coarse clock, hold limit on
  uint64_t link;          // _many: handle of the previous part; 0 = none
  uint32_t gen;           // bumped when freed: outstanding handles go stale
  uint32_t next_free;     // free list: index + 1; 0 = end
  uint8_t state, mode, kind;
  uint8_t listed;         // on the holders list
};

// Requests a releaser granted, to be posted to the loop once the shard
// mutex is released (a singly linked list through LockOp::qnext).
struct Handoff {
  LockOp *head = nullptr, *tail = nullptr;
  void push(LockOp *op);
};

struct alignas(64) Shard {
  std::mutex mu;
  uint32_t index = 0;
  // Hash map of every entry, live or cached.
  Entry **buckets = nullptr;
  uint32_t nbuckets = 0, nentries = 0;
  // Cached entries, most recently idle first (and some live ones, see Entry).
  Entry *lru_head = nullptr, *lru_tail = nullptr;
  uint32_t cached = 0, cache_cap = 0;  // cached: idle entries
  // Grant records in chunks that never move, so a handle's index finds one.
  std::vector<Grant *, mem::Allocator<Grant *>> chunks;
  uint32_t nslots = 0, free_head = 0;
  Grant *hold_head = nullptr, *hold_tail = nullptr;
  uint64_t counter = 0;  // fencing tokens: (counter << 6) | index
  // Figures, under mu.
  uint64_t live = 0, held = 0, waiters = 0, acquisitions = 0, busy = 0, trimmed = 0;

  Grant *slot(uint32_t i) { return &chunks[i >> kChunkBits][i & ((1u << kChunkBits) - 1)]; }
};

struct KeyRef {
  const char *p;
  uint32_t len;
  uint8_t mode;
  uint64_t hash;
};

class Locks final : public mem::Allocated, public ShutdownHook {
 public:
  // The shards are cache-line aligned; the library allocator is not.
  static void *operator new(std::size_t n);
  static void *operator new(std::size_t n, std::align_val_t) { return operator new(n); }
  static void operator delete(void *p, std::size_t n) noexcept;
  static void operator delete(void *p, std::size_t n, std::align_val_t) noexcept {
    operator delete(p, n);
  }

  static int create(Runtime *rt, const sluice_locks_options &o, Locks **out);
  void destroy();  // sluice_locks_free

  // Calling thread. 0, SLUICE_EAGAIN, SLUICE_ELIMIT or SLUICE_ENOMEM.
  int try_one(const void *key, size_t len, int mode, uint64_t *handle);
  // Keys sorted and distinct. `count`: refusals go into the figures (not
  // for the first look of a blocking call, which then waits).
  int try_many(KeyRef *keys, size_t n, uint64_t *handle, bool count);
  // 0, or SLUICE_ESTATE with the message set.
  int release(uint64_t handle);
  int token(uint64_t handle, uint64_t *out);
  void trim();
  void fill_stats(sluice_locks_stats *st);

  // Any thread: registers and starts a waiting request.
  int start(LockOp *op, int64_t timeout_ms);

  // Loop thread: the request state machine (op.cc).
  void op_start(LockOp *op);
  void op_granted(LockOp *op);
  void op_room_granted(LockOp *op);
  void op_stop(LockOp *op, int status, bool shutdown);
  void op_delivered(LockOp *op, int status);

  uint64_t hash(const void *key, size_t len) const;
  Runtime *runtime() const { return rt_; }
  bool room_wait() const { return on_full_ == SLUICE_LOCKS_FULL_WAIT; }
  void count_limit_refusal() { limit_refusals_.fetch_add(1, std::memory_order_relaxed); }

  void on_runtime_shutdown() override;

 private:
  static constexpr uint32_t kMinBuckets = 16;

  Locks() = default;
  ~Locks();

  Shard &shard_of(uint64_t h) { return shards_[h >> (64 - kShardBits)]; }

  // Handles: tag bit, shard, record index, salted generation. The tag
  // keeps them out of every heap a binding's garbage collector scans.
  uint64_t encode(uint32_t shard, uint32_t idx, uint32_t gen) const {
    return (uint64_t{1} << 63) | (uint64_t{shard} << 57) | (uint64_t{idx} << 32) | (gen ^ salt_);
  }

  // ---- under s.mu (locks.cc)
  Entry *find(Shard &s, uint64_t h, const char *key, uint32_t len);
  Entry *make_live(Shard &s, Entry *cached, uint64_t h, const char *key, uint32_t len);
  void to_idle(Shard &s, Entry *e);
  void link_entry(Shard &s, Entry *e);
  void unlink_entry(Shard &s, Entry *e);
  void free_entry(Shard &s, Entry *e);
  void lru_unlink(Shard &s, Entry *e);
  void lru_push(Shard &s, Entry *e);
  // The least recently idle entry, dropping live ones met on the way.
  Entry *oldest_idle(Shard &s);
  void resize(Shard &s, uint32_t n);
  void shrink(Shard &s);
  // Frees cached entries idle since before epoch - 1 (all of them if `all`).
  void trim_shard(Shard &s, uint32_t epoch, bool all);
  bool compatible(const Entry *e, int mode) const {
    return !e->writer && !e->qhead && (mode == SLUICE_LOCK_SHARED || e->readers == 0);
  }
  // A free grant record, now kReserved; UINT32_MAX if none can be had.
  uint32_t alloc_slot(Shard &s);
  void free_slot(Shard &s, uint32_t idx);
  // The record a handle names if it is held (parts only if `part`).
  Grant *lookup(Shard &s, uint64_t handle, bool part, uint32_t *idx);
  // Makes record idx a held grant of e, its token above min_token; returns
  // its handle.
  uint64_t hold(Shard &s, Entry *e, uint32_t idx, int mode, int kind, uint64_t link,
                uint64_t min_token, uint64_t *token);
  void unlist(Shard &s, Grant *g);
  // Drops a grant; the key passes on (into `out`) or goes idle (true: give
  // back its live slot once the mutex is released).
  bool drop(Shard &s, Grant *g, uint32_t idx, Handoff &out);
  // Grants the head of e's queue while it fits.
  void pump(Shard &s, Entry *e, Handoff &out);
  void queue_remove(Shard &s, Entry *e, LockOp *op);

  // ---- no mutex held
  void post(Handoff &h, sluice_status_cb fn);
  int try_key(const KeyRef &k, int kind, uint64_t link, uint64_t min_token, uint64_t *handle,
              uint64_t *token, bool count);
  // Releases one record (any kind), raising its shard's token counter to
  // `bump`; returns its link.
  uint64_t release_one(uint64_t handle, uint64_t bump);
  int bad_release();
  bool take_live(int64_t n, bool force);
  void give_live(int64_t n);
  void room_kick();

  // ---- loop thread (op.cc, loop.cc)
  void unlist_op(LockOp *op);
  void op_advance(LockOp *op);
  bool op_try_key(LockOp *op);  // false: it waits, or has completed
  void op_room_wait(LockOp *op, int64_t need);
  void op_finish(LockOp *op);
  void op_fail(LockOp *op, int status);
  void start_timers();
  void close_timers();
  void cleanup_tick();
  void hold_tick();
  void destroy_on_loop();

  Runtime *rt_ = nullptr;
  uint32_t max_keys_ = 0;
  int on_full_ = 0;
  uint64_t cleanup_ms_ = 0, hold_ns_ = 0;
  sluice_locks_held_cb held_cb_ = nullptr;
  void *held_ud_ = nullptr;
  sluice_monitor *monitor_ = nullptr;
  uint32_t series_ = 0;
  uint64_t seed_ = 0;
  uint32_t salt_ = 0;

  Shard shards_[kShards];

  alignas(64) std::atomic<int64_t> live_{0};  // live keys plus room reserved
  std::atomic<int64_t> peak_{0};
  alignas(64) std::atomic<int32_t> nwait_{0};  // requests waiting for room
  std::atomic<uint32_t> epoch_{0};
  std::mutex room_mu_;
  LockOp *room_head_ = nullptr, *room_tail_ = nullptr;

  // Every request not yet completed, so that free can complete them.
  std::mutex ops_mu_;
  LockOp *ops_ = nullptr;

  // Figures kept outside the shards.
  std::atomic<uint64_t> contended_{0}, timeouts_{0}, cancellations_{0}, wait_ns_{0};
  std::atomic<uint64_t> limit_refusals_{0}, held_too_long_{0}, bad_releases_{0};

  // Loop thread.
  uv_timer_t cleanup_timer_{}, hold_timer_{};
  int open_timers_ = 0;
  bool cleanup_on_ = false, hold_on_ = false, hooked_ = false, dying_ = false;
};

// A waiting request for one key or several.
struct LockOp final : sluice_op {
  enum State : uint8_t { kStart, kQueued, kGranted, kRoomWait, kRoomGranted, kRunning };

  LockOp(Locks *m, sluice_lock_cb cb, void *ud, sluice_free_cb f)
      : sluice_op(m->runtime(), nullptr, ud, f), mgr(m), lock_cb(cb) {}
  ~LockOp() override;
  // Copies the keys (sorted and distinct). Throws std::bad_alloc.
  void set_keys(const KeyRef *k, uint32_t count);

  void on_start() override;
  void on_cancel() override { mgr->op_stop(this, SLUICE_ECANCELED, false); }
  void on_deadline() override { mgr->op_stop(this, SLUICE_ETIMEDOUT, false); }
  void on_shutdown() override { mgr->op_stop(this, SLUICE_ECLOSED, true); }

  // Continuations posted to the loop (fn of post_internal).
  static void granted_cb(void *p, int status);
  static void room_cb(void *p, int status);

  // The grant record kind and chain link for keys[idx].
  int kind_of_next() const { return n == 1 ? kSingle : idx + 1 == n ? kHead : kPart; }
  uint64_t link_of_next() const { return idx ? handles[idx - 1] : 0; }

  Locks *mgr;
  sluice_lock_cb lock_cb;
  KeyRef *keys = nullptr;
  uint64_t *handles = nullptr;  // handles[i]: the grant of keys[i], i < idx
  uint32_t n = 0, idx = 0;
  uint32_t reserved = 0;   // grant record (index + 1) kept while queued
  int64_t credits = 0;     // live-key room taken for keys not yet live
  int64_t need = 0;        // room asked of the room queue
  uint64_t tmax = 0;       // largest token of the parts so far
  uint64_t result = 0;
  uint64_t wait_start = 0;
  int stop = 0;            // a stop that came while a grant was in flight
  // Written by a releaser under the shard mutex (kQueued -> kGranted) or
  // under room_mu_, else by the loop thread.
  std::atomic<State> state{kStart};
  bool waited = false, listed = false, finishing = false;
  LockOp *qprev = nullptr, *qnext = nullptr;  // entry queue, room queue, hand-off list
  LockOp *oprev = nullptr, *onext = nullptr;  // the manager's list of requests

 protected:
  void deliver(int status) override;

 private:
  void *block_ = nullptr;  // keys, handles and key bytes, if not inline
  size_t block_bytes_ = 0;
  KeyRef key1_{};
  uint64_t handle1_ = 0;
  char inline_[64];
};

inline Locks *unwrap(sluice_locks *l) { return reinterpret_cast<Locks *>(l); }
inline sluice_locks *wrap(Locks *l) { return reinterpret_cast<sluice_locks *>(l); }

// Sorts keys by their bytes and merges duplicates (exclusive wins); returns
// the distinct count.
size_t sort_keys(KeyRef *keys, size_t n);

}  // namespace sluice::locks
