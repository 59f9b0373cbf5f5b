/* The egress proxy thread and its TCP side; see proxy.h. The I/O thread
 * hands frames over under px->lock (it only appends data and sets flags);
 * this thread alone decides, connects, frees connections and sends frames,
 * and never holds px->lock while it sends (a guest that stops reading the
 * channel must not stall the I/O thread behind that lock). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "error.h"
#include "options.h"
#include "proxy_int.h"
#include "sandbox_int.h"
#include "sniff.h"
#include "util.h"

#define CONNECT_TIMEOUT_MS 30000
#define READ_CHUNK SBX_PROTO_MAX_PAYLOAD
#define WINDOW_BATCH (16u * 1024u)
/* Re-sniffing rescans the whole prefix: cap the total work per connection
 * so a guest dribbling one byte per frame cannot burn the host's CPU. */
#define SNIFF_WORK_MAX (16u * SBX_SNIFF_MAX)

void px_wake(struct sbx_proxy *px)
{
	uint64_t one = 1;
	if (write(px->wake_fd, &one, sizeof one) < 0) {
		/* full eventfd: the thread is awake anyway */
	}
}

/* ---------------------------------------------------------------- policy */

static int policy_parse(const char *const *allow_net, struct px_policy **out)
{
	struct px_policy *p = calloc(1, sizeof *p);
	*out = NULL;
	if (!p)
		return sbx_fail(SANDBOX_E_NOMEM, "allow_net");
	p->allow_all = allow_net == NULL;
	int rc = allow_net ? sbx_netpolicy_parse(allow_net, "allow_net", &p->pats) : 0;
	if (rc) {
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}

static void policy_free(struct px_policy *p)
{
	if (p) {
		sbx_netpolicy_free(&p->pats);
		free(p);
	}
}

/* ----------------------------------------------------------- audit */

static void audit_connect(struct sbx_proxy *px, const struct px_conn *c, const char *decision,
			  const char *reason)
{
	char a[64];
	sbx_addr_format(c->family, c->addr, a, sizeof a);
	struct sbx_json j;
	sbx_audit_begin(&px->sb->audit, &j, "net.connect");
	sbx_json_str(&j, "name", c->name[0] ? c->name : NULL);
	sbx_json_str(&j, "address", a);
	sbx_json_int(&j, "port", c->port);
	sbx_json_str(&j, "decision", decision);
	sbx_json_str(&j, "reason", reason);
	sbx_audit_emit(&px->sb->audit, &j);
}

static void audit_close(struct sbx_proxy *px, const struct px_conn *c, const char *how)
{
	char a[64];
	sbx_addr_format(c->family, c->addr, a, sizeof a);
	struct sbx_json j;
	sbx_audit_begin(&px->sb->audit, &j, "net.close");
	sbx_json_str(&j, "name", c->name[0] ? c->name : NULL);
	sbx_json_str(&j, "address", a);
	sbx_json_int(&j, "port", c->port);
	sbx_json_str(&j, "end", how);
	sbx_json_int(&j, "bytes_out", (int64_t)c->bytes_up);
	sbx_json_int(&j, "bytes_in", (int64_t)c->bytes_down);
	sbx_json_double(&j, "duration_ms", (double)(sbx_now_us() - c->start_us) / 1000.0);
	sbx_audit_emit(&px->sb->audit, &j);
}

/* ------------------------------------------------------ I/O thread side */

static struct px_conn *find_conn(struct sbx_proxy *px, uint32_t stream)
{
	for (struct px_conn *c = px->conns; c; c = c->next)
		if (c->stream == stream)
			return c;
	return NULL;
}

#define PROTO_ERR(...) (snprintf(why, cap, __VA_ARGS__), -1)

static int new_stream_id(struct sbx_proxy *px, uint32_t id, char *why, size_t cap)
{
	if (id <= px->highest_id)
		return PROTO_ERR("agent stream id 0x%08x reused or out of order", id);
	px->highest_id = id;
	return 0;
}

static int on_tcp_open(struct sbx_proxy *px, uint32_t id, const uint8_t *pl, uint32_t len,
		       char *why, size_t cap)
{
	if (new_stream_id(px, id, why, cap))
		return -1;
	if (len != SBX_TCP_OPEN_SIZE || (pl[0] != 4 && pl[0] != 6) || pl[1])
		return PROTO_ERR("malformed TCP_OPEN on stream 0x%08x", id);
	if (px->n_conns >= PX_MAX_TCP + PX_SLACK)
		return PROTO_ERR("agent opened more than %u TCP streams", PX_MAX_TCP + PX_SLACK);
	struct px_conn *c = calloc(1, sizeof *c);
	if (!c)
		return PROTO_ERR("out of memory for a TCP stream");
	c->stream = id;
	c->family = pl[0] == 4 ? AF_INET : AF_INET6;
	c->port = (uint16_t)(pl[2] | pl[3] << 8);
	memcpy(c->addr, pl + 4, c->family == AF_INET ? 4 : 16);
	c->in_credit = SBX_PROTO_INITIAL_WINDOW;
	c->down_credit = SBX_PROTO_INITIAL_WINDOW;
	c->fd = -1;
	c->start_us = sbx_now_us();
	c->over_limit = px->n_conns >= PX_MAX_TCP;
	c->next = px->conns;
	px->conns = c;
	px->n_conns++;
	return 0;
}

static int on_dns_query(struct sbx_proxy *px, uint32_t id, const uint8_t *pl, uint32_t len,
			char *why, size_t cap)
{
	if (new_stream_id(px, id, why, cap))
		return -1;
	if (len < 4 + 12 || pl[0] > SBX_DNS_T_TCP || pl[1] || pl[2] || pl[3])
		return PROTO_ERR("malformed DNS_QUERY on stream 0x%08x", id);
	if (px->n_dns >= PX_MAX_DNS + PX_SLACK)
		return PROTO_ERR("agent has more than %u DNS queries outstanding",
				 PX_MAX_DNS + PX_SLACK);
	struct px_dnsq *q = malloc(sizeof *q + len - 4);
	if (!q)
		return PROTO_ERR("out of memory for a DNS query");
	memset(q, 0, sizeof *q);
	q->px = px;
	q->stream = id;
	q->transport = pl[0];
	q->over_limit = px->n_dns >= PX_MAX_DNS;
	q->start_us = sbx_now_us();
	q->len = len - 4;
	memcpy(q->msg, pl + 4, q->len);
	q->next = px->dns_in;
	px->dns_in = q;
	px->n_dns++;
	return 0;
}

static int on_tcp_data(struct px_conn *c, const uint8_t *pl, uint32_t len, char *why, size_t cap)
{
	if (len == 0 || len > c->in_credit)
		return PROTO_ERR("TCP_DATA of %u bytes on stream 0x%08x beyond its credit", len,
				 c->stream);
	if (c->guest_eof)
		return PROTO_ERR("TCP_DATA after TCP_EOF on stream 0x%08x", c->stream);
	if (!c->ubuf && !(c->ubuf = malloc(SBX_PROTO_INITIAL_WINDOW)))
		return PROTO_ERR("out of memory for a TCP stream buffer");
	if (c->ulen + len > SBX_PROTO_INITIAL_WINDOW) {
		/* the credit guarantees it fits once the consumed part is gone */
		memmove(c->ubuf, c->ubuf + c->uoff, c->ulen - c->uoff);
		c->ulen -= c->uoff;
		c->uoff = 0;
	}
	memcpy(c->ubuf + c->ulen, pl, len);
	c->ulen += len;
	c->in_credit -= len;
	return 0;
}

static int on_conn_frame(struct px_conn *c, const struct sbx_frame_hdr *h, const uint8_t *pl,
			 char *why, size_t cap)
{
	struct sbx_rd r;
	sbx_rd_init(&r, pl, h->len);
	switch (h->type) {
	case SBX_T_TCP_DATA: return on_tcp_data(c, pl, h->len, why, cap);
	case SBX_T_TCP_EOF:
		if (h->len || c->guest_eof)
			return PROTO_ERR("bad or repeated TCP_EOF on stream 0x%08x", c->stream);
		c->guest_eof = 1;
		return 0;
	case SBX_T_TCP_CLOSE: {
		uint8_t how = sbx_rd_u8(&r);
		(void)sbx_rd_u8(&r);
		uint16_t zero = sbx_rd_u16(&r);
		if (!sbx_rd_done(&r) || zero || how > SBX_TCP_CLOSE_ABORT)
			return PROTO_ERR("malformed TCP_CLOSE on stream 0x%08x", c->stream);
		c->guest_close = 1 + how;
		return 0;
	}
	case SBX_T_WINDOW: {
		uint32_t n = sbx_rd_u32(&r);
		if (!sbx_rd_done(&r))
			return PROTO_ERR("malformed WINDOW on stream 0x%08x", c->stream);
		c->down_credit += n;
		if (c->down_credit > (1ull << 32))
			return PROTO_ERR("WINDOW overflow on stream 0x%08x", c->stream);
		return 0;
	}
	}
	return PROTO_ERR("frame type 0x%02x is not valid on network stream 0x%08x", h->type,
			 c->stream);
}

int sbx_proxy_on_frame(struct sbx_proxy *px, const struct sbx_frame_hdr *h, const uint8_t *pl,
		       char *why, size_t cap)
{
	if (!px)
		return PROTO_ERR("network frame but the sandbox has no proxy");
	pthread_mutex_lock(&px->lock);
	int rc = 0;
	if (h->type == SBX_T_TCP_OPEN) {
		rc = on_tcp_open(px, h->stream, pl, h->len, why, cap);
	} else if (h->type == SBX_T_DNS_QUERY) {
		rc = on_dns_query(px, h->stream, pl, h->len, why, cap);
	} else {
		struct px_conn *c = find_conn(px, h->stream);
		if (c)
			rc = on_conn_frame(c, h, pl, why, cap);
		else if (h->stream > px->highest_id)
			rc = PROTO_ERR("frame type 0x%02x for network stream 0x%08x, never opened",
				       h->type, h->stream);
		/* else: a stream that already ended; frames in flight are dropped */
	}
	pthread_mutex_unlock(&px->lock);
	if (!rc)
		px_wake(px);
	return rc;
}

/* --------------------------------------------------------- proxy thread */

/* Frames to send once px->lock is released. */
struct px_out {
	struct px_conn *dead[PX_MAX_TCP + PX_SLACK]; /* unlinked, to free */
	size_t n_dead;
};

static void send_close(struct sbx_proxy *px, uint32_t stream, uint8_t how, uint8_t reason)
{
	uint8_t p[4] = {how, reason, 0, 0};
	sbx_chan_send(px->sb, SBX_T_TCP_CLOSE, stream, p, sizeof p);
}

static void unlink_conn_locked(struct sbx_proxy *px, struct px_conn *c)
{
	for (struct px_conn **pp = &px->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			px->n_conns--;
			return;
		}
}

static void free_conn(struct px_conn *c)
{
	px_icpt_free(c);
	if (c->fd >= 0)
		close(c->fd);
	free(c->ubuf);
	free(c);
}

static void reset_fd(struct px_conn *c)
{
	if (c->fd < 0)
		return;
	struct linger l = {1, 0};
	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	close(c->fd);
	c->fd = -1;
}

/* End a connection: it is unlinked now (the I/O thread stops finding it)
 * and its CLOSE frame, audit event and memory are dealt with after the
 * lock is released. */
struct px_end {
	struct px_conn *c;
	int send;     /* send TCP_CLOSE */
	uint8_t how, reason;
	const char *audit; /* net.close "end", or NULL */
	const uint8_t *extra; /* TCP_DATA sent before the close (403 page) */
	size_t extra_len;
	char *extra_buf;
};

#define MAX_ENDS (PX_MAX_TCP + PX_SLACK)

struct px_iter {
	struct px_end ends[MAX_ENDS];
	size_t n_ends;
	struct {
		uint32_t stream, n;
	} windows[PX_MAX_TCP + PX_SLACK];
	size_t n_windows;
	struct px_conn *readable[PX_MAX_TCP + PX_SLACK];
	size_t n_readable;
};

static struct px_end *end_conn_locked(struct sbx_proxy *px, struct px_iter *it, struct px_conn *c,
				      int send, uint8_t how, uint8_t reason, const char *audit)
{
	unlink_conn_locked(px, c);
	struct px_end *e = &it->ends[it->n_ends++];
	memset(e, 0, sizeof *e);
	e->c = c;
	e->send = send;
	e->how = how;
	e->reason = reason;
	e->audit = audit;
	if (how == SBX_TCP_CLOSE_ABORT)
		reset_fd(c);
	return e;
}

/* --- decisions */

struct verdict {
	int allow;
	enum px_how how;
	char reason[256];
};

static int is_ip_literal(const char *name)
{
	uint8_t a[16];
	return inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
}

/* The destination alone: address and port, and the names our DNS answers
 * tied to that address. */
static struct verdict decide_addr(struct sbx_proxy *px, struct px_conn *c)
{
	struct verdict v = {0};
	const struct px_policy *p = px->policy;
	char a[64];
	sbx_addr_format(c->family, c->addr, a, sizeof a);
	int ip_ok = sbx_netpolicy_allows_addr(&p->pats, c->family, c->addr, c->port);
	if (c->port == 0) {
		snprintf(v.reason, sizeof v.reason, "port 0");
		return v;
	}
	if (sbx_addr_is_host_local(c->family, c->addr) && !ip_ok) {
		snprintf(v.reason, sizeof v.reason,
			 "%s is a host-local address (only an IP pattern naming it allows it)", a);
		return v;
	}
	size_t i = 0;
	const char *n = sbx_addrmap_names(&px->map, c->family, c->addr, &i);
	if (n)
		snprintf(c->name, sizeof c->name, "%s", n);
	if (ip_ok) {
		v.allow = 1, v.how = HOW_IP;
		snprintf(v.reason, sizeof v.reason, "IP pattern");
		return v;
	}
	if (p->allow_all) {
		v.allow = 1, v.how = HOW_ALL;
		snprintf(v.reason, sizeof v.reason, "allow_net not set: everything allowed");
		return v;
	}
	for (i = 0; (n = sbx_addrmap_names(&px->map, c->family, c->addr, &i));) {
		if (sbx_netpolicy_allows_name(&p->pats, n, c->port)) {
			snprintf(c->name, sizeof c->name, "%s", n);
			v.allow = 1, v.how = HOW_NAME;
			snprintf(v.reason, sizeof v.reason, "allow_net pattern for %.100s", n);
			return v;
		}
	}
	if (c->name[0])
		snprintf(v.reason, sizeof v.reason, "port %u of %.100s is not in allow_net", c->port,
			 c->name);
	else
		snprintf(v.reason, sizeof v.reason,
			 "%s was not resolved from an allowed name and no IP pattern allows it", a);
	return v;
}

/* The name the guest's own bytes claim (SNI or Host) on a connection the
 * address check allowed. Only a connection allowed by name is held to it:
 * the claimed name must be allowed and must be one our DNS answered with
 * this very address (no domain fronting). */
static struct verdict decide_name(struct sbx_proxy *px, struct px_conn *c,
				  enum sbx_sniff_kind kind, const char *claimed)
{
	struct verdict v = {1, c->how, ""};
	const struct px_policy *p = px->policy;
	if (c->how != HOW_NAME || kind == SBX_SNIFF_OTHER)
		return v;
	if (!claimed[0]) {
		/* clients that connect by name say so (SNI, Host); one that
		 * does not connected to the address itself */
		v.allow = 0;
		snprintf(v.reason, sizeof v.reason,
			 "%s without a host name to an address allowed only by name (a literal "
			 "address needs an IP pattern)",
			 kind == SBX_SNIFF_TLS ? "TLS" : "HTTP");
		return v;
	}
	char a[64];
	sbx_addr_format(c->family, c->addr, a, sizeof a);
	if (is_ip_literal(claimed)) {
		/* the program asked for an address, not a name: only an IP
		 * pattern allows that, whatever names share the address */
		v.allow = 0;
		snprintf(v.reason, sizeof v.reason,
			 "a request to the literal address %.60s needs an IP pattern", claimed);
		return v;
	}
	char norm[254], why[64];
	if (sbx_host_normalize(claimed, strlen(claimed), norm, why, sizeof why)) {
		v.allow = 0;
		snprintf(v.reason, sizeof v.reason, "invalid host name in the request");
		return v;
	}
	if (!sbx_netpolicy_allows_name(&p->pats, norm, c->port)) {
		v.allow = 0;
		snprintf(v.reason, sizeof v.reason, "host %.100s (port %u) is not in allow_net", norm,
			 c->port);
	} else if (!sbx_addrmap_has(&px->map, c->family, c->addr, norm)) {
		v.allow = 0;
		snprintf(v.reason, sizeof v.reason,
			 "host %.100s was never resolved to %s for this sandbox (domain fronting)",
			 norm, a);
	} else {
		snprintf(c->name, sizeof c->name, "%s", norm);
	}
	return v;
}

int px_check_claimed_name(struct sbx_proxy *px, struct px_conn *c, const char *host,
			  char *reason, size_t cap)
{
	struct verdict v = decide_name(px, c, SBX_SNIFF_HTTP, host);
	if (!v.allow)
		snprintf(reason, cap, "%s", v.reason);
	return v.allow;
}

static char *forbidden_page(const char *reason, size_t *len)
{
	char body[512];
	int bl = snprintf(body, sizeof body, "Blocked by the sandbox network policy: %s\n", reason);
	char *page = sbx_asprintf("HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
				  "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
				  bl, body);
	*len = page ? strlen(page) : 0;
	return page;
}

/* --- connection steps (px->lock held) */

static void start_connect(struct sbx_proxy *px, struct px_iter *it, struct px_conn *c)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof ss);
	if (c->family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(c->port);
		memcpy(&s4->sin_addr, c->addr, 4);
		sl = sizeof *s4;
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(c->port);
		memcpy(&s6->sin6_addr, c->addr, 16);
		sl = sizeof *s6;
	}
	c->fd = socket(c->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		end_conn_locked(px, it, c, 1, SBX_TCP_CLOSE_ABORT, SBX_TCP_R_ERROR, "error");
		return;
	}
	if (connect(c->fd, (struct sockaddr *)&ss, sl) == 0) {
		c->open = 1;
		return;
	}
	if (errno == EINPROGRESS) {
		c->connecting = 1;
		c->connect_deadline = sbx_now_ms() + CONNECT_TIMEOUT_MS;
		return;
	}
	uint8_t reason = errno == ECONNREFUSED ? SBX_TCP_R_REFUSED : SBX_TCP_R_UNREACH;
	end_conn_locked(px, it, c, 1, SBX_TCP_CLOSE_ABORT, reason,
			reason == SBX_TCP_R_REFUSED ? "refused" : "unreachable");
}

static void handle_new(struct sbx_proxy *px, struct px_iter *it, struct px_conn *c)
{
	if (c->over_limit) {
		audit_connect(px, c, "blocked", "too many connections");
		end_conn_locked(px, it, c, 1, SBX_TCP_CLOSE_ABORT, SBX_TCP_R_LIMIT, NULL);
		return;
	}
	struct verdict v = decide_addr(px, c);
	if (!v.allow) {
		audit_connect(px, c, "blocked", v.reason);
		end_conn_locked(px, it, c, 1, SBX_TCP_CLOSE_ABORT, SBX_TCP_R_POLICY, NULL);
		return;
	}
	c->how = v.how;
	/* only name-allowed connections have a claimed name to check;
	 * with interception every connection is sniffed for its mode */
	c->decided = c->how != HOW_NAME && !px->http_parse;
	if (c->decided)
		audit_connect(px, c, "allowed", v.reason);
	start_connect(px, it, c);
}

static void block_after_sniff(struct sbx_proxy *px, struct px_iter *it, struct px_conn *c,
			      int http, const char *reason)
{
	audit_connect(px, c, "blocked", reason);
	c->blocked = 1;
	if (!http) {
		end_conn_locked(px, it, c, 1, SBX_TCP_CLOSE_ABORT, SBX_TCP_R_POLICY, NULL);
		return;
	}
	reset_fd(c); /* nothing reached the upstream: drop it */
	struct px_end *e =
	    end_conn_locked(px, it, c, 1, SBX_TCP_CLOSE_GRACEFUL, SBX_TCP_R_POLICY, NULL);
	e->extra_buf = forbidden_page(reason, &e->extra_len);
	e->extra = (const uint8_t *)e->extra_buf;
}

static void sniff(struct sbx_proxy *px, struct px_iter *it, struct px_conn *c)
{
	size_t have = c->ulen - c->uoff;
	if (c->decided || c->blocked || !have)
		return;
	c->sniff_work += have;
	struct sbx_sniff s;
	sbx_sniff(c->ubuf + c->uoff, have, &s);
	if (s.kind == SBX_SNIFF_MORE && c->sniff_work > SNIFF_WORK_MAX) {
		s.kind = SBX_SNIFF_BAD;
		snprintf(s.why, sizeof s.why, "request head arrives too slowly");
	}
	if (s.kind == SBX_SNIFF_MORE && !c->guest_eof)
		return;
	if (s.kind == SBX_SNIFF_MORE) {
		s.kind = SBX_SNIFF_BAD;
		snprintf(s.why, sizeof s.why, "the guest closed before its request head ended");
	}
	if (s.kind == SBX_SNIFF_BAD) {
		char r[160];
		snprintf(r, sizeof r, "unreadable request: %s", s.why);
		block_after_sniff(px, it, c, 0, r);
		return;
	}
	struct verdict v = decide_name(px, c, s.kind, s.has_name ? s.name : "");
	if (!v.allow) {
		block_after_sniff(px, it, c, s.kind == SBX_SNIFF_HTTP, v.reason);
		return;
	}
	if (px_icpt_begin(px, c, s.kind, s.has_name ? s.name : "")) {
		char r[96];
		snprintf(r, sizeof r,
			 px->n_icpt >= PX_MAX_HTTP
			     ? "more than %u HTTP/TLS connections at once in this sandbox"
			     : "cannot set up HTTP processing or interception (%u open)",
			 PX_MAX_HTTP);
		block_after_sniff(px, it, c, 0, r);
		return;
	}
	c->decided = 1;
	char r[200];
	snprintf(r, sizeof r, "allow_net pattern for %.100s%s", c->name,
		 s.kind == SBX_SNIFF_TLS	? " (SNI checked)"
		 : s.kind == SBX_SNIFF_HTTP ? " (Host checked)"
					    : "");
	audit_connect(px, c, "allowed", r);
}

static void finish_connect(struct sbx_proxy *px, struct px_iter *it, struct px_conn *c)
{
	int err = 0;
	socklen_t el = sizeof err;
	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
	if (err == EINPROGRESS || err == EALREADY)
		return;
	c->connecting = 0;
	if (!err) {
		c->open = 1;
		return;
	}
	uint8_t reason = err == ECONNREFUSED ? SBX_TCP_R_REFUSED : SBX_TCP_R_UNREACH;
	end_conn_locked(px, it, c, 1, SBX_TCP_CLOSE_ABORT, reason,
			reason == SBX_TCP_R_REFUSED ? "refused" : "unreachable");
}

static void write_upstream(struct sbx_proxy *px, struct px_iter *it, struct px_conn *c)
{
	while (c->ulen > c->uoff) {
		ssize_t w = send(c->fd, c->ubuf + c->uoff, c->ulen - c->uoff, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			break;
		if (w <= 0) {
			end_conn_locked(px, it, c, 1, SBX_TCP_CLOSE_ABORT, SBX_TCP_R_RESET, "reset");
			return;
		}
		c->uoff += (size_t)w;
		c->bytes_up += (uint64_t)w;
		c->grant += (uint32_t)w;
	}
	if (c->ulen == c->uoff)
		c->ulen = c->uoff = 0;
	if (c->grant >= WINDOW_BATCH || (c->grant && c->ulen == 0)) {
		it->windows[it->n_windows].stream = c->stream;
		it->windows[it->n_windows++].n = c->grant;
		c->in_credit += c->grant;
		c->grant = 0;
	}
}

/* Everything a connection can do without reading upstream. Returns 0 if
 * the connection ended. */
static int step_conn(struct sbx_proxy *px, struct px_iter *it, struct px_conn *c, short revents)
{
	if (c->guest_close == 1 + SBX_TCP_CLOSE_ABORT) {
		end_conn_locked(px, it, c, 0, SBX_TCP_CLOSE_ABORT, 0, "reset by the guest");
		return 0;
	}
	if (c->connecting && (revents & (POLLOUT | POLLERR | POLLHUP)))
		finish_connect(px, it, c);
	if (c->connecting && sbx_now_ms() > c->connect_deadline) {
		end_conn_locked(px, it, c, 1, SBX_TCP_CLOSE_ABORT, SBX_TCP_R_UNREACH, "timeout");
		return 0;
	}
	if (c->fd < 0 || c->connecting)
		return c->fd >= 0;
	sniff(px, it, c);
	if (c->blocked || c->fd < 0)
		return 0;
	if (c->mode != MODE_RAW)
		return 1; /* px_icpt_pump moves its bytes */
	if (c->decided && c->ulen > c->uoff)
		write_upstream(px, it, c);
	if (c->fd < 0)
		return 0;
	if (c->guest_eof && c->decided && c->ulen == 0 && !c->up_shut) {
		shutdown(c->fd, SHUT_WR);
		c->up_shut = 1;
	}
	if (c->guest_close == 1 + SBX_TCP_CLOSE_GRACEFUL && (c->ulen == 0 || !c->decided)) {
		end_conn_locked(px, it, c, 0, SBX_TCP_CLOSE_GRACEFUL, 0, "closed by the guest");
		return 0;
	}
	if (c->up_shut && c->up_eof && c->eof_sent) {
		end_conn_locked(px, it, c, 1, SBX_TCP_CLOSE_GRACEFUL, SBX_TCP_R_DONE, "done");
		return 0;
	}
	/* an upstream that speaks first is not HTTP or TLS: nothing to sniff */
	if (!c->decided && (revents & POLLIN) && c->ulen == c->uoff) {
		c->decided = 1;
		audit_connect(px, c, "allowed", "server spoke first (not HTTP or TLS)");
	}
	if (c->decided && !c->up_eof && c->down_credit && (revents & (POLLIN | POLLHUP | POLLERR)))
		it->readable[it->n_readable++] = c;
	return 1;
}

static short wanted_events(const struct px_conn *c)
{
	if (c->connecting)
		return POLLOUT;
	if (c->mode != MODE_RAW)
		return px_icpt_events(c);
	short ev = 0;
	if (c->decided && c->ulen > c->uoff)
		ev |= POLLOUT;
	if (!c->up_eof && c->down_credit)
		ev |= POLLIN;
	return ev;
}

/* Read what the agent has credit for and forward it; px->lock NOT held. */
static void pump_down(struct sbx_proxy *px, struct px_conn *c, uint8_t *buf, int *ended)
{
	pthread_mutex_lock(&px->lock);
	size_t want = c->down_credit < READ_CHUNK ? (size_t)c->down_credit : READ_CHUNK;
	pthread_mutex_unlock(&px->lock);
	*ended = 0;
	if (!want)
		return;
	ssize_t r = recv(c->fd, buf, want, 0);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r > 0) {
		pthread_mutex_lock(&px->lock);
		c->down_credit -= (uint64_t)r;
		pthread_mutex_unlock(&px->lock);
		c->bytes_down += (uint64_t)r;
		sbx_chan_send(px->sb, SBX_T_TCP_DATA, c->stream, buf, (size_t)r);
		return;
	}
	if (r == 0) {
		c->up_eof = 1;
		c->eof_sent = 1;
		sbx_chan_send(px->sb, SBX_T_TCP_EOF, c->stream, NULL, 0);
		return;
	}
	*ended = 1; /* reset or error */
}

static void flush_ends(struct sbx_proxy *px, struct px_iter *it)
{
	for (size_t i = 0; i < it->n_ends; i++) {
		struct px_end *e = &it->ends[i];
		if (e->extra_len)
			sbx_chan_send(px->sb, SBX_T_TCP_DATA, e->c->stream, e->extra, e->extra_len);
		if (e->send)
			send_close(px, e->c->stream, e->how, e->reason);
		if (e->audit)
			audit_close(px, e->c, e->audit);
		free(e->extra_buf);
		free_conn(e->c);
	}
	it->n_ends = 0;
}

static void flush_windows(struct sbx_proxy *px, struct px_iter *it)
{
	for (size_t i = 0; i < it->n_windows; i++)
		sbx_chan_send_u32(px->sb, SBX_T_WINDOW, it->windows[i].stream, it->windows[i].n);
	it->n_windows = 0;
}

#define MAX_POLL (1 + PX_MAX_TCP + PX_SLACK + ARES_GETSOCK_MAXNUM)

struct px_loop {
	struct px_iter it;
	struct pollfd pfd[MAX_POLL];
	struct px_conn *pconn[MAX_POLL];
	uint8_t buf[READ_CHUNK];
};

/* One pass over every connection with px->lock held: new ones decided,
 * buffered data written, and the poll set built. Returns the poll count. */
static int prepare_locked(struct sbx_proxy *px, struct px_loop *L, struct px_dnsq **dns)
{
	struct px_iter *it = &L->it;
	int n = 1;
	struct px_conn *next;
	for (struct px_conn *c = px->conns; c; c = next) {
		next = c->next;
		if (c->fd < 0 && !c->connecting && !c->open)
			handle_new(px, it, c);
		else if (!step_conn(px, it, c, 0))
			continue;
		if (c->fd >= 0 && n < (int)(MAX_POLL - ARES_GETSOCK_MAXNUM)) {
			L->pfd[n] = (struct pollfd){.fd = c->fd, .events = wanted_events(c)};
			L->pconn[n++] = c;
		}
	}
	*dns = px->dns_in;
	px->dns_in = NULL;
	return n;
}

static int conn_linked(struct sbx_proxy *px, const struct px_conn *c)
{
	for (const struct px_conn *x = px->conns; x; x = x->next)
		if (x == c)
			return 1;
	return 0;
}

/* After pumping, drop connections that ended and refresh the events of
 * the rest (what a connection waits for changes as its stages move). */
static int rebuild_poll_set(struct sbx_proxy *px, struct px_loop *L, int n)
{
	int m = 1;
	pthread_mutex_lock(&px->lock);
	for (int i = 1; i < n; i++) {
		struct px_conn *c = L->pconn[i];
		if (!conn_linked(px, c) || c->fd < 0)
			continue; /* ended (and maybe freed): not dereferenced */
		L->pfd[m] = (struct pollfd){.fd = c->fd, .events = wanted_events(c)};
		L->pconn[m++] = c;
	}
	pthread_mutex_unlock(&px->lock);
	return m;
}

static int poll_timeout(struct sbx_proxy *px)
{
	int t = 1000;
	pthread_mutex_lock(&px->lock);
	for (struct px_conn *c = px->conns; c; c = c->next)
		if (c->connecting) {
			int64_t left = c->connect_deadline - sbx_now_ms();
			if (left < t)
				t = left < 0 ? 0 : (int)left;
		}
	pthread_mutex_unlock(&px->lock);
	return px_dns_timeout_ms(px, t);
}

static void handle_dns_batch(struct sbx_proxy *px, struct px_dnsq *q)
{
	/* the list is newest first: answer in arrival order */
	struct px_dnsq *rev = NULL;
	while (q) {
		struct px_dnsq *n = q->next;
		q->next = rev;
		rev = q;
		q = n;
	}
	while (rev) {
		struct px_dnsq *n = rev->next;
		px_dns_handle(px, rev);
		rev = n;
	}
}

static void pump_intercepted(struct sbx_proxy *px, struct px_loop *L)
{
	struct px_iter *it = &L->it;
	size_t n = 0;
	pthread_mutex_lock(&px->lock);
	for (struct px_conn *c = px->conns; c; c = c->next)
		if (c->mode != MODE_RAW && n < sizeof it->readable / sizeof it->readable[0])
			it->readable[n++] = c;
	pthread_mutex_unlock(&px->lock);
	for (size_t i = 0; i < n; i++) {
		struct px_conn *c = it->readable[i];
		struct px_iter_grant g = {0, 0};
		enum px_pump_result r = px_icpt_pump(px, c, L->buf, &g);
		if (g.n)
			sbx_chan_send_u32(px->sb, SBX_T_WINDOW, g.stream, g.n);
		if (r == PUMP_OK)
			continue;
		pthread_mutex_lock(&px->lock);
		end_conn_locked(px, it, c, 1,
				r == PUMP_CLOSE ? SBX_TCP_CLOSE_GRACEFUL : SBX_TCP_CLOSE_ABORT,
				r == PUMP_CLOSE ? SBX_TCP_R_DONE : SBX_TCP_R_ERROR,
				r == PUMP_CLOSE ? "done" : "error");
		pthread_mutex_unlock(&px->lock);
	}
}

static void after_poll(struct sbx_proxy *px, struct px_loop *L, int n)
{
	struct px_iter *it = &L->it;
	pthread_mutex_lock(&px->lock);
	for (int i = 1; i < n; i++) {
		struct px_conn *c = L->pconn[i];
		/* still linked? an earlier step may have ended it */
		if (L->pfd[i].revents && find_conn(px, c->stream) == c)
			step_conn(px, it, c, L->pfd[i].revents);
	}
	pthread_mutex_unlock(&px->lock);
	for (size_t i = 0; i < it->n_readable; i++) {
		struct px_conn *c = it->readable[i];
		int ended;
		pump_down(px, c, L->buf, &ended);
		if (ended) {
			pthread_mutex_lock(&px->lock);
			end_conn_locked(px, it, c, 1, SBX_TCP_CLOSE_ABORT, SBX_TCP_R_RESET,
					"reset by the upstream");
			pthread_mutex_unlock(&px->lock);
		}
	}
	it->n_readable = 0;
	pump_intercepted(px, L);
}

static void *px_main(void *arg)
{
	struct sbx_proxy *px = arg;
	struct px_loop *L = calloc(1, sizeof *L);
	while (L) {
		struct px_dnsq *dns;
		pthread_mutex_lock(&px->lock);
		if (px->stopping) {
			pthread_mutex_unlock(&px->lock);
			break;
		}
		int n = prepare_locked(px, L, &dns);
		pthread_mutex_unlock(&px->lock);
		flush_ends(px, &L->it);
		flush_windows(px, &L->it);
		handle_dns_batch(px, dns);
		/* a connection that just became intercepted (its sniff completed
		 * above) has work before any socket event: its TLS handshakes */
		pump_intercepted(px, L);
		flush_ends(px, &L->it);
		flush_windows(px, &L->it);
		n = rebuild_poll_set(px, L, n);
		L->pfd[0] = (struct pollfd){.fd = px->wake_fd, .events = POLLIN};
		int na = px_dns_pollfds(px, L->pfd + n, ARES_GETSOCK_MAXNUM);
		int r = poll(L->pfd, (nfds_t)(n + na), poll_timeout(px));
		if (r < 0 && errno != EINTR)
			break;
		if (L->pfd[0].revents) {
			uint64_t v;
			if (read(px->wake_fd, &v, sizeof v) < 0) {
				/* spurious wake-up: nothing to drain */
			}
		}
		px_dns_process(px, L->pfd + n, na);
		after_poll(px, L, n);
		flush_ends(px, &L->it);
		flush_windows(px, &L->it);
	}
	free(L);
	return NULL;
}

/* ------------------------------------------------------------ lifecycle */

int sbx_proxy_new(struct sandbox *sb, const sandbox_options_t *o, struct sbx_proxy **out)
{
	*out = NULL;
	char csv[1024];
	int rc = sbx_dns_servers_validate(o->dns_servers, csv, sizeof csv);
	if (rc)
		return rc;
	struct sbx_proxy *px = calloc(1, sizeof *px);
	if (!px)
		return sbx_fail(SANDBOX_E_NOMEM, "proxy");
	px->sb = sb;
	px->wake_fd = -1;
	pthread_mutex_init(&px->lock, NULL);
	if ((rc = policy_parse(o->allow_net, &px->policy))) {
		sbx_proxy_free(px);
		return rc;
	}
	px->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (px->wake_fd < 0) {
		sbx_proxy_free(px);
		return sbx_fail_errno(SANDBOX_E_IO, errno, "eventfd");
	}
	if ((rc = px_icpt_setup(px, o))) {
		sbx_proxy_free(px);
		return rc;
	}
	if ((rc = px_dns_init(px, csv))) {
		sbx_proxy_free(px);
		return rc;
	}
	*out = px;
	return 0;
}

int sbx_proxy_start(struct sbx_proxy *px)
{
	int rc = pthread_create(&px->thread, NULL, px_main, px);
	if (rc)
		return sbx_fail_errno(SANDBOX_E_NOMEM, rc, "cannot start the proxy thread");
	px->started = 1;
	return 0;
}

void sbx_proxy_stop(struct sbx_proxy *px)
{
	if (!px || !px->started || px->joined)
		return;
	pthread_mutex_lock(&px->lock);
	px->stopping = 1;
	pthread_mutex_unlock(&px->lock);
	px_wake(px);
	pthread_join(px->thread, NULL);
	px->joined = 1;
}

void sbx_proxy_free(struct sbx_proxy *px)
{
	if (!px)
		return;
	sbx_proxy_stop(px);
	while (px->conns) {
		struct px_conn *c = px->conns;
		px->conns = c->next;
		reset_fd(c);
		free_conn(c);
	}
	while (px->dns_in) {
		struct px_dnsq *q = px->dns_in;
		px->dns_in = q->next;
		free(q);
	}
	px_dns_fini(px);
	px_icpt_teardown(px);
	sbx_addrmap_free(&px->map);
	policy_free(px->policy);
	if (px->wake_fd >= 0)
		close(px->wake_fd);
	pthread_mutex_destroy(&px->lock);
	free(px);
}

int sbx_proxy_set_policy(struct sbx_proxy *px, const char *const *allow_net)
{
	struct px_policy *p;
	int rc = policy_parse(allow_net, &p);
	if (rc)
		return rc;
	pthread_mutex_lock(&px->lock);
	struct px_policy *old = px->policy;
	px->policy = p;
	pthread_mutex_unlock(&px->lock);
	policy_free(old);
	struct sbx_json j;
	sbx_audit_begin(&px->sb->audit, &j, "net.policy");
	if (allow_net) {
		sbx_json_open_array(&j, "allow_net");
		for (size_t i = 0; allow_net[i]; i++)
			sbx_json_str(&j, NULL, allow_net[i]);
		sbx_json_close_array(&j);
	} else {
		sbx_json_null(&j, "allow_net");
	}
	sbx_audit_emit(&px->sb->audit, &j);
	px_wake(px);
	return 0;
}
