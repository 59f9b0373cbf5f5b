/* Network streams (doc/protocol.md, "Network streams"): the guest's TCP
 * connections and DNS queries, which nftables redirects to the agent's
 * transparent listener and DNS stub, forwarded to the host over the
 * channel. net.c owns the stream ids, the dispatch of host frames and the
 * poll glue; tcpfwd.c the TCP relays; dnsstub.c the DNS stub. Everything
 * is non-blocking: a slow guest socket stalls only its own stream, never
 * the port or exec traffic. Guest network set-up at boot is netup.c. */
#ifndef AGENT_NET_H
#define AGENT_NET_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "port.h"
#include "proto.h"

/* Where nftables sends the guest's traffic (doc/guest-network.md). */
#define NET_TCP_PORT 15001 /* transparent TCP listener, 127.0.0.1 and [::1] */
#define NET_DNS_PORT 53	   /* DNS stub, UDP and TCP, 127.0.0.1 and [::1] */

/* Most TCP connections relayed at once (the host's limit too); more are
 * refused with a reset. Sockets still flushing after a graceful close
 * count as well. */
#define NET_TCP_MAX 256
/* Most DNS queries waiting for the host; more are dropped. */
#define NET_DNS_MAX 64
/* A query the host has not answered after this long is forgotten. */
#define NET_DNS_TIMEOUT_MS 10000
/* Most DNS-over-TCP client connections at once. */
#define NET_DNS_TCP_MAX 16
/* Upper bound of pollfds net_poll_prepare may fill. */
#define NET_POLL_MAX (4 + 2 + NET_TCP_MAX + NET_DNS_TCP_MAX)

/* Open the listeners. tcp_port/dns_port 0 means the defaults above. In
 * test mode (not PID 1, no nftables, hence no SO_ORIGINAL_DST) a
 * connection's local address stands in for its original destination. */
void net_init(struct port *p, uint16_t tcp_port, uint16_t dns_port, int test_mode);

size_t net_poll_prepare(struct pollfd *pfd, size_t cap);
void net_poll_process(const struct pollfd *pfd, size_t n, uint64_t now);
/* Credit grants, flush deadlines, DNS expiry. Returns the next deadline
 * in ms, or 0 for none. */
uint64_t net_tick(uint64_t now);

/* One host frame on an agent-chosen stream id (SBX_STREAM_AGENT set). */
void net_frame(struct port *p, const struct sbx_frame_hdr *h, const uint8_t *payload, uint64_t now);
/* The host connection is gone: reset every guest connection, forget every
 * query, start stream ids afresh. */
void net_reset(void);

/* ---- shared by net.c, tcpfwd.c and dnsstub.c -------------------------- */

extern struct port *g_net_port;
extern int g_net_test_mode;

/* A new agent stream id, or 0 when the 2^31 ids of this connection are
 * used up (the caller refuses the connection or drops the query). */
uint32_t net_new_stream(void);
/* True when a host is connected and the outgoing queue has room for more
 * network data (a lower mark than exec output's, so exec frames and
 * control frames always find room). */
int net_can_send(void);
/* The host broke a rule on a network stream: say so on stream 0. */
void net_host_error(uint32_t stream, const char *what, uint8_t type);

/* tcpfwd.c */
void tcp_listen_fds(int fd4, int fd6);
void tcp_accept(int lfd, uint64_t now);
size_t tcp_poll_prepare(struct pollfd *pfd, size_t cap);
void tcp_poll_process(const struct pollfd *pfd, size_t n, uint64_t now);
uint64_t tcp_tick(uint64_t now);
/* 1 if the stream is a live TCP stream (and the frame was handled). */
int tcp_frame(const struct sbx_frame_hdr *h, const uint8_t *payload, uint64_t now);
void tcp_reset_all(void);

/* dnsstub.c */
void dns_sockets(int udp4, int udp6, int tcp4, int tcp6);
size_t dns_poll_prepare(struct pollfd *pfd, size_t cap);
void dns_poll_process(const struct pollfd *pfd, size_t n, uint64_t now);
uint64_t dns_tick(uint64_t now);
int dns_frame(const struct sbx_frame_hdr *h, const uint8_t *payload, uint64_t now);
void dns_reset_all(void);

#endif
