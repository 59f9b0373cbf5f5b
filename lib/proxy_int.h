/* Shared by proxy.c (thread, TCP) and proxy_dns.c (DNS). */
#ifndef SBX_PROXY_INT_H
#define SBX_PROXY_INT_H

#include <ares.h>
#include <pthread.h>
#include <stdint.h>

#include "addrmap.h"
#include "http1.h"
#include "placeholder.h"
#include "sniff.h"
#include "tlsca.h"
#include "netpolicy.h"
#include "proxy.h"

#define PX_MAX_TCP 256u	   /* open TCP streams per sandbox (doc/protocol.md) */
#define PX_MAX_DNS 256u	   /* outstanding DNS queries per sandbox */
#define PX_SLACK 64u	   /* beyond limit + slack the agent is misbehaving */
#define PX_DNS_TTL_MAX 60u /* TTL the guest is given, at most */
/* Connections going through the HTTP processor / TLS interception at
 * once: each may buffer a few MiB (re-framing, TLS records), so the
 * sandbox's total is bounded by this, not only each connection's. */
#define PX_MAX_HTTP 64u

enum px_mode { MODE_RAW, MODE_HTTP, MODE_TLS };
struct px_icpt;

enum px_how { HOW_NONE, HOW_IP, HOW_NAME, HOW_ALL };

struct px_conn {
	struct px_conn *next;
	uint32_t stream;
	int family;
	uint8_t addr[16];
	uint16_t port;
	int64_t start_us;

	/* set by the I/O thread (under px->lock) */
	uint8_t *ubuf; /* guest -> upstream, at most the credit we granted */
	size_t ulen, uoff;
	uint32_t in_credit;   /* bytes the agent may still send */
	uint64_t down_credit; /* bytes we may still send the agent */
	int guest_eof;
	int guest_close; /* 0, or 1 + how */
	int over_limit;

	/* proxy thread only */
	int fd;
	int connecting, open, decided, blocked;
	enum px_how how;
	char name[256];
	int64_t connect_deadline;
	uint32_t grant; /* written upstream, not yet returned as WINDOW */
	int up_eof, up_shut, eof_sent;
	int want_read;
	size_t sniff_work;
	uint64_t bytes_up, bytes_down;

	/* HTTP processing and TLS interception (proxy_tls.c); mode RAW
	 * relays bytes untouched */
	enum px_mode mode;
	struct px_icpt *icpt;
};

struct px_secret {
	char *name;
	char placeholder[SBX_PLACEHOLDER_MAX];
	unsigned char *value; /* wiped when freed */
	size_t value_len;
	struct sbx_netpolicy hosts;
};

/* A WINDOW to send once the lock is released. */
struct px_iter_grant {
	uint32_t stream, n;
};

enum px_pump_result { PUMP_OK, PUMP_CLOSE, PUMP_ABORT };

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

	/* set at creation, read-only afterwards */
	struct px_secret *secrets;
	struct sbx_http_secret *http_secrets; /* the same, as http1.c wants them */
	size_t n_secrets;
	struct sbx_netpolicy passthrough; /* TLS not intercepted for these SNIs */
	int block_misdirected;
	int http_parse;	   /* plain HTTP goes through http1.c (always) */
	int tls_intercept; /* TLS is terminated and re-made (with secrets) */
	unsigned n_icpt;   /* connections with HTTP processing (proxy thread) */
	struct sbx_tlsca *ca;
	SSL_CTX *up_ctx;

	/* proxy thread only */
	struct sbx_addrmap map;
	ares_channel ares;
	int ares_ok;
};

/* proxy.c */
void px_wake(struct sbx_proxy *px);
/* May a request on c claim `host` (Host header / SNI)? px->lock held.
 * Returns 1, or 0 with the reason. */
int px_check_claimed_name(struct sbx_proxy *px, struct px_conn *c, const char *host,
			  char *reason, size_t cap);
/* proxy_tls.c: secrets and interception (proxy thread, except setup) */
int px_icpt_setup(struct sbx_proxy *px, const sandbox_options_t *o);
void px_icpt_teardown(struct sbx_proxy *px);
/* After a sniff allowed c: set c->mode (and its state) for HTTP
 * processing or TLS interception when they apply. -1: cannot (c ends). */
int px_icpt_begin(struct sbx_proxy *px, struct px_conn *c, enum sbx_sniff_kind kind,
		  const char *name);
void px_icpt_free(struct px_conn *c);
/* Move bytes through every stage; px->lock NOT held. buf: scratch of
 * SBX_PROTO_MAX_PAYLOAD bytes. */
enum px_pump_result px_icpt_pump(struct sbx_proxy *px, struct px_conn *c, uint8_t *buf,
				 struct px_iter_grant *grant);
short px_icpt_events(const struct px_conn *c);
/* proxy_dns.c, proxy thread only (px_dns_init/fini: owner thread) */
int px_dns_init(struct sbx_proxy *px, const char *servers_csv);
void px_dns_fini(struct sbx_proxy *px);
void px_dns_handle(struct sbx_proxy *px, struct px_dnsq *q); /* takes q */
/* c-ares sockets into pfd (at most max); returns how many */
int px_dns_pollfds(struct sbx_proxy *px, struct pollfd *pfd, int max);
void px_dns_process(struct sbx_proxy *px, const struct pollfd *pfd, int n);
int px_dns_timeout_ms(struct sbx_proxy *px, int cap_ms);

#endif
