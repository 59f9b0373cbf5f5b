/* The proxy's DNS side: every query the guest makes is decided here. A name
 * allow_net does not allow gets NXDOMAIN without any query leaving the
 * host; an allowed one is resolved with c-ares and answered with a message
 * we build (A/AAAA only), after the answer is checked for host-local
 * addresses (DNS rebinding). Each address given out is recorded: it is how
 * a later connection is tied to a name. Proxy thread only. */
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dnsmsg.h"
#include "error.h"
#include "proxy_int.h"
#include "sandbox_int.h"
#include "util.h"

#define MAX_ADDRS 32
#define UDP_REPLY_MAX 512 /* no EDNS negotiation: classic UDP size */
#define TCP_REPLY_MAX 4096

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_rc;

static void ares_lib_init(void)
{
	ares_init_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

int px_dns_init(struct sbx_proxy *px, const char *servers_csv)
{
	pthread_once(&ares_once, ares_lib_init);
	if (ares_init_rc != ARES_SUCCESS)
		return sbx_fail(SANDBOX_E_NOMEM, "c-ares: %s", ares_strerror(ares_init_rc));
	struct ares_options opt;
	memset(&opt, 0, sizeof opt);
	opt.timeout = 2000; /* ms, with ARES_OPT_TIMEOUTMS */
	opt.tries = 2;
	opt.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	int rc = ares_init_options(&px->ares, &opt, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS);
	if (rc != ARES_SUCCESS)
		return sbx_fail(SANDBOX_E_IO, "c-ares: cannot set up a resolver: %s",
				ares_strerror(rc));
	px->ares_ok = 1;
	if (servers_csv[0] && (rc = ares_set_servers_ports_csv(px->ares, servers_csv)) != ARES_SUCCESS)
		return sbx_fail(SANDBOX_E_INVAL, "dns_servers: c-ares refused '%s': %s", servers_csv,
				ares_strerror(rc));
	return 0;
}

void px_dns_fini(struct sbx_proxy *px)
{
	if (px->ares_ok) {
		/* pending callbacks run now with ARES_EDESTRUCTION and free
		 * their queries */
		ares_destroy(px->ares);
		px->ares_ok = 0;
	}
}

int px_dns_pollfds(struct sbx_proxy *px, struct pollfd *pfd, int max)
{
	ares_socket_t socks[ARES_GETSOCK_MAXNUM];
	/* c-ares's own ARES_GETSOCK_WRITABLE shifts a signed 1 into the
	 * sign bit for the last socket: test the bits unsigned */
	unsigned bits = (unsigned)ares_getsock(px->ares, socks, ARES_GETSOCK_MAXNUM);
	int n = 0;
	for (int i = 0; i < ARES_GETSOCK_MAXNUM && n < max; i++) {
		short ev = 0;
		if (bits & (1u << i))
			ev |= POLLIN;
		if (bits & (1u << (i + ARES_GETSOCK_MAXNUM)))
			ev |= POLLOUT;
		if (ev)
			pfd[n++] = (struct pollfd){.fd = socks[i], .events = ev};
	}
	return n;
}

void px_dns_process(struct sbx_proxy *px, const struct pollfd *pfd, int n)
{
	for (int i = 0; i < n; i++) {
		ares_socket_t r = pfd[i].revents & (POLLIN | POLLERR | POLLHUP) ? pfd[i].fd
										 : ARES_SOCKET_BAD;
		ares_socket_t w = pfd[i].revents & POLLOUT ? pfd[i].fd : ARES_SOCKET_BAD;
		if (r != ARES_SOCKET_BAD || w != ARES_SOCKET_BAD)
			ares_process_fd(px->ares, r, w);
	}
	/* timeouts */
	ares_process_fd(px->ares, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

int px_dns_timeout_ms(struct sbx_proxy *px, int cap_ms)
{
	struct timeval max = {cap_ms / 1000, (cap_ms % 1000) * 1000}, tv;
	struct timeval *t = ares_timeout(px->ares, &max, &tv);
	long ms = t->tv_sec * 1000 + t->tv_usec / 1000;
	return ms < 0 ? 0 : (int)ms;
}

static const char *type_name(uint16_t t)
{
	switch (t) {
	case SBX_DNS_TYPE_A: return "A";
	case SBX_DNS_TYPE_AAAA: return "AAAA";
	case 5: return "CNAME";
	case 15: return "MX";
	case 16: return "TXT";
	case 33: return "SRV";
	case 65: return "HTTPS";
	}
	return NULL;
}

static void audit_query(struct sbx_proxy *px, const struct px_dnsq *q,
			const struct sbx_dns_query *dq, const char *decision, const char *reason,
			int rcode, const struct sbx_dns_addr *a, size_t n)
{
	struct sbx_json j;
	sbx_audit_begin(&px->sb->audit, &j, "dns.query");
	sbx_json_str(&j, "name", dq->name);
	const char *tn = type_name(dq->qtype);
	if (tn)
		sbx_json_str(&j, "type", tn);
	else
		sbx_json_int(&j, "type", dq->qtype);
	sbx_json_str(&j, "transport", q->transport == SBX_DNS_T_TCP ? "tcp" : "udp");
	sbx_json_str(&j, "decision", decision);
	sbx_json_str(&j, "reason", reason);
	sbx_json_int(&j, "rcode", rcode);
	sbx_json_open_array(&j, "answers");
	for (size_t i = 0; i < n; i++) {
		char s[64];
		sbx_addr_format(a[i].family, a[i].addr, s, sizeof s);
		sbx_json_str(&j, NULL, s);
	}
	sbx_json_close_array(&j);
	sbx_json_double(&j, "duration_ms", (double)(sbx_now_us() - q->start_us) / 1000.0);
	sbx_audit_emit(&px->sb->audit, &j);
}

/* Send the reply and forget the query. */
static void reply(struct sbx_proxy *px, struct px_dnsq *q, const struct sbx_dns_query *dq,
		  int rcode, const struct sbx_dns_addr *a, size_t n, uint32_t ttl)
{
	uint8_t out[TCP_REPLY_MAX];
	size_t cap = q->transport == SBX_DNS_T_TCP ? sizeof out : UDP_REPLY_MAX;
	size_t len = dq ? sbx_dns_reply_encode(q->msg, dq, rcode, a, n, ttl, out, cap) : 0;
	sbx_chan_send(px->sb, SBX_T_DNS_REPLY, q->stream, out, len);
	pthread_mutex_lock(&px->lock);
	px->n_dns--;
	pthread_mutex_unlock(&px->lock);
	free(q);
}

/* Addresses from an answer; 0 on success. */
static int parse_answer(const struct sbx_dns_query *dq, const unsigned char *abuf, int alen,
			struct sbx_dns_addr *a, size_t *n, uint32_t *ttl)
{
	*n = 0;
	*ttl = PX_DNS_TTL_MAX;
	if (dq->qtype == SBX_DNS_TYPE_A) {
		struct ares_addrttl v[MAX_ADDRS];
		int cnt = MAX_ADDRS;
		int rc = ares_parse_a_reply(abuf, alen, NULL, v, &cnt);
		if (rc != ARES_SUCCESS)
			return rc;
		for (int i = 0; i < cnt; i++) {
			a[*n].family = AF_INET;
			memcpy(a[*n].addr, &v[i].ipaddr, 4);
			(*n)++;
			if ((uint32_t)v[i].ttl < *ttl)
				*ttl = v[i].ttl < 0 ? 0 : (uint32_t)v[i].ttl;
		}
		return ARES_SUCCESS;
	}
	struct ares_addr6ttl v[MAX_ADDRS];
	int cnt = MAX_ADDRS;
	int rc = ares_parse_aaaa_reply(abuf, alen, NULL, v, &cnt);
	if (rc != ARES_SUCCESS)
		return rc;
	for (int i = 0; i < cnt; i++) {
		a[*n].family = AF_INET6;
		memcpy(a[*n].addr, &v[i].ip6addr, 16);
		(*n)++;
		if ((uint32_t)v[i].ttl < *ttl)
			*ttl = v[i].ttl < 0 ? 0 : (uint32_t)v[i].ttl;
	}
	return ARES_SUCCESS;
}

/* A host-local address in an answer is allowed only if an IP pattern names
 * it; one such address refuses the whole answer. */
static int find_rebinding(struct sbx_proxy *px, const struct sbx_dns_addr *a, size_t n,
			  char *bad, size_t cap)
{
	int found = 0;
	pthread_mutex_lock(&px->lock);
	for (size_t i = 0; i < n && !found; i++)
		if (sbx_addr_is_host_local(a[i].family, a[i].addr) &&
		    !sbx_netpolicy_allows_addr(&px->policy->pats, a[i].family, a[i].addr, 0)) {
			sbx_addr_format(a[i].family, a[i].addr, bad, cap);
			found = 1;
		}
	pthread_mutex_unlock(&px->lock);
	return found;
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	struct px_dnsq *q = arg;
	struct sbx_proxy *px = q->px;
	struct sbx_dns_query dq;
	sbx_dns_query_decode(q->msg, q->len, &dq); /* decoded fine before */
	if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
		free(q); /* shutting down: nobody to answer */
		return;
	}
	if (status == ARES_ENOTFOUND) {
		audit_query(px, q, &dq, "allowed", "upstream: no such name", SBX_DNS_NXDOMAIN, NULL, 0);
		reply(px, q, &dq, SBX_DNS_NXDOMAIN, NULL, 0, 0);
		return;
	}
	struct sbx_dns_addr a[MAX_ADDRS];
	size_t n = 0;
	uint32_t ttl = 0;
	int rc = status == ARES_SUCCESS ? parse_answer(&dq, abuf, alen, a, &n, &ttl) : status;
	if (rc == ARES_ENODATA) {
		audit_query(px, q, &dq, "allowed", "upstream: no records", SBX_DNS_NOERROR, NULL, 0);
		reply(px, q, &dq, SBX_DNS_NOERROR, NULL, 0, 0);
		return;
	}
	if (rc != ARES_SUCCESS) {
		char r[120];
		snprintf(r, sizeof r, "upstream: %s", ares_strerror(rc));
		audit_query(px, q, &dq, "allowed", r, SBX_DNS_SERVFAIL, NULL, 0);
		reply(px, q, &dq, SBX_DNS_SERVFAIL, NULL, 0, 0);
		return;
	}
	char bad[64];
	if (find_rebinding(px, a, n, bad, sizeof bad)) {
		char r[160];
		snprintf(r, sizeof r, "the answer points at host-local address %s (rebinding)", bad);
		audit_query(px, q, &dq, "blocked", r, SBX_DNS_REFUSED, a, n);
		reply(px, q, &dq, SBX_DNS_REFUSED, NULL, 0, 0);
		return;
	}
	for (size_t i = 0; i < n; i++)
		sbx_addrmap_add(&px->map, a[i].family, a[i].addr, dq.name);
	audit_query(px, q, &dq, "allowed", "allow_net", SBX_DNS_NOERROR, a, n);
	reply(px, q, &dq, SBX_DNS_NOERROR, a, n, ttl);
}

static int name_allowed(struct sbx_proxy *px, const char *name)
{
	pthread_mutex_lock(&px->lock);
	int ok = px->policy->allow_all || sbx_netpolicy_allows_name(&px->policy->pats, name, 0);
	pthread_mutex_unlock(&px->lock);
	return ok;
}

void px_dns_handle(struct sbx_proxy *px, struct px_dnsq *q)
{
	struct sbx_dns_query dq;
	int rc = sbx_dns_query_decode(q->msg, q->len, &dq);
	if (rc < 0 || q->over_limit) {
		reply(px, q, NULL, 0, NULL, 0, 0); /* empty: the agent drops it */
		return;
	}
	if (rc > 0) {
		audit_query(px, q, &dq, "blocked", "malformed or unsupported query", rc, NULL, 0);
		reply(px, q, &dq, rc, NULL, 0, 0);
		return;
	}
	if (dq.odd_name || !dq.name[0] || !name_allowed(px, dq.name)) {
		const char *why = dq.odd_name || !dq.name[0] ? "not a host name" : "not in allow_net";
		audit_query(px, q, &dq, "blocked", why, SBX_DNS_NXDOMAIN, NULL, 0);
		reply(px, q, &dq, SBX_DNS_NXDOMAIN, NULL, 0, 0);
		return;
	}
	if (dq.qclass != SBX_DNS_CLASS_IN ||
	    (dq.qtype != SBX_DNS_TYPE_A && dq.qtype != SBX_DNS_TYPE_AAAA)) {
		/* only addresses leave the proxy: other record types could
		 * carry anything */
		audit_query(px, q, &dq, "allowed", "only A and AAAA are answered", SBX_DNS_NOERROR,
			    NULL, 0);
		reply(px, q, &dq, SBX_DNS_NOERROR, NULL, 0, 0);
		return;
	}
	/* may call on_answer before it returns: q is not touched after */
	ares_query(px->ares, dq.name, SBX_DNS_CLASS_IN, dq.qtype, on_answer, q);
}
