/* Shared by proxy.c (thread, TCP) and proxy_dns.c (DNS). */
#ifndef SBX_PROXY_INT_H
#define SBX_PROXY_INT_H

#include <ares.h>
#include <pthread.h>

#include "addrmap.h"
#include "netpolicy.h"
#include "proxy.h"

#define PX_MAX_TCP 256u	   /* open TCP streams per sandbox (doc/protocol.md) */
#define PX_MAX_DNS 256u	   /* outstanding DNS queries per sandbox */
#define PX_SLACK 64u	   /* beyond limit + slack the agent is misbehaving */
#define PX_DNS_TTL_MAX 60u /* TTL the guest is given, at most */

struct px_policy {
	int allow_all;
	struct sbx_netpolicy pats;
};

struct px_dnsq {
	struct px_dnsq *next;
	struct sbx_proxy *px;
	uint32_t stream;
	uint8_t transport;
	int over_limit; /* answered with an empty reply */
	int64_t start_us;
	size_t len;
	uint8_t msg[]; /* the query as the guest sent it */
};

struct sbx_proxy {
	struct sandbox *sb;
	pthread_t thread;
	int started, joined;
	int wake_fd;

	pthread_mutex_t lock; /* everything below up to the thread-only part */
	int stopping;
	struct px_policy *policy;
	struct px_conn *conns;
	size_t n_conns;
	struct px_dnsq *dns_in; /* queued by the I/O thread, newest first */
	size_t n_dns;		/* queued or being resolved */
	uint32_t highest_id;	/* highest agent stream id seen */

	/* proxy thread only */
	struct sbx_addrmap map;
	ares_channel ares;
	int ares_ok;
};

/* proxy.c */
void px_wake(struct sbx_proxy *px);
/* proxy_dns.c, proxy thread only (px_dns_init/fini: owner thread) */
int px_dns_init(struct sbx_proxy *px, const char *servers_csv);
void px_dns_fini(struct sbx_proxy *px);
void px_dns_handle(struct sbx_proxy *px, struct px_dnsq *q); /* takes q */
/* c-ares sockets into pfd (at most max); returns how many */
int px_dns_pollfds(struct sbx_proxy *px, struct pollfd *pfd, int max);
void px_dns_process(struct sbx_proxy *px, const struct pollfd *pfd, int n);
int px_dns_timeout_ms(struct sbx_proxy *px, int cap_ms);

#endif
