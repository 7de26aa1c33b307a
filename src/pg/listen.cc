// LISTEN/NOTIFY on a dedicated connection that is reopened, and its
// channels subscribed again, after any loss.
#include "common/error.h"
#include "pg/pg.h"

namespace sluice::pg {
namespace {

std::string quote_ident(const std::string &s) {
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

void subscribed(Conn *c, int status) {
  Pool *p = c->pool;
  if (c->state == Conn::CLOSED) return;  // lost meanwhile: maintain reconnects
  if (status != 0) {
    c->broken("LISTEN failed");
    return;
  }
  for (Listener *l = p->listeners; l; l = l->next)
    if (l->subscribing) {
      l->subscribing = false;
      l->subscribed = true;
      l->ready.store(1, std::memory_order_release);
    }
  p->listener_maintain();
}

}  // namespace

void Pool::listener_maintain() {
  if (closing || dead) return;
  if (!listeners) {
    if (listen_conn && !listen_conn->busy() && listen_conn->state != Conn::CONNECTING)
      evict(listen_conn, SLUICE_PG_EVICT_IDLE, "no listeners left");
    return;
  }
  if (!listen_conn) {
    uint64_t now = now_ns();
    if (now < listen_retry_ns) {
      arm_backoff(listen_retry_ns);
      return;
    }
    listen_conn = new Conn(this);
    listen_conn->listener = true;
    open_connection(listen_conn);
    return;
  }
  Conn *c = listen_conn;
  if (c->state != Conn::LENT || c->busy()) return;  // connecting, or a LISTEN runs
  std::vector<std::string> sqls;
  for (Listener *l = listeners; l; l = l->next)
    if (!l->subscribed) {
      l->subscribing = true;
      sqls.push_back("LISTEN " + quote_ident(l->channel));
    }
  if (sqls.empty()) return;
  auto w = std::make_unique<InternalWork>(c, std::initializer_list<const char *>{}, subscribed);
  for (auto &s : sqls) w->add(s.c_str());
  Work *raw = w.get();
  c->internal = std::move(w);
  if (!c->run(raw)) c->broken("could not send LISTEN");
}

void Pool::listener_lost() {
  for (Listener *l = listeners; l; l = l->next) {
    l->subscribed = l->subscribing = false;
    l->ready.store(0, std::memory_order_release);
  }
  listen_retry_ns = now_ns() + backoff_ns();
  if (!closing && !dead) arm_backoff(listen_retry_ns);
}

void Pool::on_notify(PGnotify *n) {
  for (Listener *l = listeners; l; l = l->next)
    if (l->channel == n->relname) l->cb(l->user_data, n->relname, n->extra ? n->extra : "", n->be_pid);
}

void Pool::add_listener(Listener *l) {
  l->next = listeners;
  listeners = l;
  listener_maintain();
}

void Pool::remove_listener(Listener *l) {
  for (Listener **pp = &listeners; *pp; pp = &(*pp)->next)
    if (*pp == l) {
      *pp = l->next;
      break;
    }
  bool channel_still_used = false;
  for (Listener *o = listeners; o; o = o->next) channel_still_used |= o->channel == l->channel;
  Conn *c = listen_conn;
  if (!channel_still_used && l->subscribed && c && c->state == Conn::LENT && !c->busy()) {
    auto w = std::make_unique<InternalWork>(c, std::initializer_list<const char *>{},
                                            [](Conn *c, int) { c->pool->listener_maintain(); });
    w->add(("UNLISTEN " + quote_ident(l->channel)).c_str());
    Work *raw = w.get();
    c->internal = std::move(w);
    if (!c->run(raw)) c->broken("could not send UNLISTEN");
  }
  if (l->free_user_data) l->free_user_data(l->user_data);
  delete l;
  listener_maintain();
}

}  // namespace sluice::pg
