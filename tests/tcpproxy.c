#include "tcpproxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXPAIRS 256

struct pair {
  int a, b; /* client side, server side; -1 when closed */
  int frozen;
};

struct tcpproxy {
  int listen_fd, upstream_port, wake[2];
  pthread_t thread;
  pthread_mutex_t mu;
  struct pair pairs[MAXPAIRS];
  int npairs;
  int freeze_all, stop, accepted;
};

static void close_pair(struct pair *pr) {
  if (pr->a >= 0) close(pr->a);
  if (pr->b >= 0) close(pr->b);
  pr->a = pr->b = -1;
}

static void poke(tcpproxy *p) {
  char c = 1;
  (void)!write(p->wake[1], &c, 1);
}

static void *run(void *arg) {
  tcpproxy *p = arg;
  char buf[65536];
  for (;;) {
    struct pollfd fds[2 + 2 * MAXPAIRS];
    int idx[2 + 2 * MAXPAIRS];
    int n = 0;
    pthread_mutex_lock(&p->mu);
    if (p->stop) {
      pthread_mutex_unlock(&p->mu);
      return NULL;
    }
    fds[n++] = (struct pollfd){p->wake[0], POLLIN, 0};
    fds[n++] = (struct pollfd){p->listen_fd, POLLIN, 0};
    for (int i = 0; i < p->npairs; i++) {
      struct pair *pr = &p->pairs[i];
      if (pr->a < 0 || pr->frozen || p->freeze_all) continue;
      idx[n] = i, fds[n++] = (struct pollfd){pr->a, POLLIN, 0};
      idx[n] = i, fds[n++] = (struct pollfd){pr->b, POLLIN, 0};
    }
    pthread_mutex_unlock(&p->mu);
    if (poll(fds, (nfds_t)n, 1000) < 0) continue;
    pthread_mutex_lock(&p->mu);
    if (fds[0].revents) {
      char drain[64];
      (void)!read(p->wake[0], drain, sizeof drain);
    }
    if (fds[1].revents & POLLIN) {
      int c = accept(p->listen_fd, NULL, NULL);
      if (c >= 0 && p->npairs < MAXPAIRS) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in up = {0};
        up.sin_family = AF_INET;
        up.sin_port = htons((uint16_t)p->upstream_port);
        up.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(s, (struct sockaddr *)&up, sizeof up) == 0) {
          p->pairs[p->npairs++] = (struct pair){c, s, 0};
          p->accepted++;
        } else {
          close(s);
          close(c);
        }
      } else if (c >= 0) {
        close(c);
      }
    }
    for (int k = 2; k < n; k++) {
      if (!fds[k].revents) continue;
      struct pair *pr = &p->pairs[idx[k]];
      if (pr->a < 0 || pr->frozen || p->freeze_all) continue;
      int from = fds[k].fd, to = from == pr->a ? pr->b : pr->a;
      ssize_t got = read(from, buf, sizeof buf);
      if (got <= 0 || write(to, buf, (size_t)got) != got) close_pair(pr);
    }
    pthread_mutex_unlock(&p->mu);
  }
}

tcpproxy *tcpproxy_start(int upstream_port, int *port) {
  tcpproxy *p = calloc(1, sizeof *p);
  p->upstream_port = upstream_port;
  pthread_mutex_init(&p->mu, NULL);
  if (pipe(p->wake) != 0) abort();
  p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(p->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(p->listen_fd, 64) != 0)
    abort();
  socklen_t len = sizeof a;
  getsockname(p->listen_fd, (struct sockaddr *)&a, &len);
  *port = ntohs(a.sin_port);
  pthread_create(&p->thread, NULL, run, p);
  return p;
}

void tcpproxy_freeze_existing(tcpproxy *p) {
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < p->npairs; i++) p->pairs[i].frozen = 1;
  pthread_mutex_unlock(&p->mu);
  poke(p);
}

void tcpproxy_freeze_all(tcpproxy *p, int on) {
  pthread_mutex_lock(&p->mu);
  p->freeze_all = on;
  pthread_mutex_unlock(&p->mu);
  poke(p);
}

void tcpproxy_cut(tcpproxy *p) {
  pthread_mutex_lock(&p->mu);
  for (int i = 0; i < p->npairs; i++) close_pair(&p->pairs[i]);
  pthread_mutex_unlock(&p->mu);
  poke(p);
}

int tcpproxy_accepted(tcpproxy *p) {
  pthread_mutex_lock(&p->mu);
  int n = p->accepted;
  pthread_mutex_unlock(&p->mu);
  return n;
}

void tcpproxy_stop(tcpproxy *p) {
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_mutex_unlock(&p->mu);
  poke(p);
  pthread_join(p->thread, NULL);
  for (int i = 0; i < p->npairs; i++) close_pair(&p->pairs[i]);
  close(p->listen_fd);
  close(p->wake[0]);
  close(p->wake[1]);
  pthread_mutex_destroy(&p->mu);
  free(p);
}
