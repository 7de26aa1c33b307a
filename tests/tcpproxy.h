/* A TCP proxy on 127.0.0.1 for fault injection against the real server:
 * it forwards, freezes connections (stops forwarding without closing them,
 * as a silent partition does) or cuts them (closes both sides). */
#ifndef SLUICE_TEST_TCPPROXY_H
#define SLUICE_TEST_TCPPROXY_H

typedef struct tcpproxy tcpproxy;

/* Starts forwarding to 127.0.0.1:upstream_port; returns its own port. */
tcpproxy *tcpproxy_start(int upstream_port, int *port);
/* Existing connections stop forwarding (new ones still pass). */
void tcpproxy_freeze_existing(tcpproxy *p);
/* Every connection, existing and new, stops forwarding; new ones are
 * accepted and then ignored. */
void tcpproxy_freeze_all(tcpproxy *p, int on);
/* Closes every connection (both sides). */
void tcpproxy_cut(tcpproxy *p);
/* Connections accepted so far. */
int tcpproxy_accepted(tcpproxy *p);
void tcpproxy_stop(tcpproxy *p);

#endif
