/* HTTP/1.1 stream processor: substitution, echo protection, framing,
 * policy and audit hooks (http1.h). */
#include "http1.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>
#include <openssl/evp.h>

#include "httpscan.h"
#include "util.h"

enum body_mode { BODY_RAW, BODY_CHUNKED, BODY_BUFFER };
enum rq_ctx { CTX_TARGET, CTX_HEADER, CTX_BODY };
enum overflow { OVERFLOW_CHUNK, OVERFLOW_CLOSE, OVERFLOW_FAIL };

/* Where a message's (possibly re-framed) body goes. */
struct body_out {
	struct sbx_http_conn *c;
	enum body_mode mode;
	struct sbx_bytes *dst;
	struct sbx_bytes head; /* BUFFER: head without framing header and final CRLF */
	struct sbx_bytes buf;  /* BUFFER: body so far */
	enum overflow overflow;
	int failed; /* BUFFER overflow with OVERFLOW_FAIL */
	int close_after;
};

/* A message head as parsed: offsets into one bounded store. */
struct head {
	struct sbx_bytes store;
	size_t url_off, url_len; /* request target, or response reason */
	size_t nh;
	struct {
		size_t no, nl, vo, vl;
	} h[SBX_HTTP_MAX_HEADERS];
	int last; /* 0 none, 1 field, 2 value */
	int too_big;
};

struct pending {
	char method[24];
	char path[512];
	int is_head, upgrade;
	unsigned major, minor;
	int64_t start_us;
	uint64_t bytes_up, bytes_down, used;
	int status;
};

struct side {
	http_parser p;
	http_parser_settings set;
	struct head h;
	struct sbx_scan scan;
	int scan_on;
	struct body_out out;
	uint64_t msg_bytes;
	int done; /* a message completed during this execute call */
};

/* The Basic credentials the proxy encoded (real value inside) and what the
 * guest sent: a server echoing the header must not hand the guest a
 * base64 blob it can decode to the value. */
struct alias {
	unsigned char *real;
	char *guest;
	size_t real_len, guest_len;
};

struct sbx_http_conn {
	struct sbx_http_config cfg;
	struct sbx_scan_pattern *ph_pats, *val_pats; /* val_pats: values, then aliases */
	size_t n_val;
	size_t rq_chunk, rs_chunk; /* input per parser call (see feed_chunk) */
	struct alias alias[SBX_HTTP_ALIAS_MAX];
	size_t n_alias;
	int alias_dirty;
	size_t *ph_len;
	struct sbx_bytes to_up, to_guest;
	unsigned flags;
	int passthrough;

	struct side rq, rs;
	struct pending q[SBX_HTTP_PIPELINE_MAX];
	size_t q_head, q_n;

	/* request side */
	int rq_dead, rq_wait, rq_eof, rq_in_msg;
	struct pending *rq_cur;
	uint64_t rq_allowed, rq_used;
	uint64_t rq_reported[3];
	enum rq_ctx rq_ctx;
	const char *rq_where;
	int rq_misdirected, rq_bad_target, rq_abort;
	unsigned rq_substitutions; /* counts values put in, to see if Basic changed */
	char rq_method[24], rq_path[512];
	int64_t rq_start;
	struct sbx_bytes deferred; /* local response waiting for earlier responses */

	char up_failed[200]; /* upstream unusable: every request gets a 502 */

	/* response side */
	int rs_started; /* head of the front request's response sent */
	int rs_status;
	int rs_final;
};

/* ------------------------------------------------------------ helpers */

static int64_t now_us(void)
{
	return sbx_now_us();
}

static const char *status_text(int status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 405: return "Method Not Allowed";
	case 413: return "Content Too Large";
	case 431: return "Request Header Fields Too Large";
	case 502: return "Bad Gateway";
	default: return "Error";
	}
}

static int ieq(const char *a, size_t alen, const char *b)
{
	return alen == strlen(b) && strncasecmp(a, b, alen) == 0;
}

static struct pending *q_front(struct sbx_http_conn *c)
{
	return c->q_n ? &c->q[c->q_head] : NULL;
}

static struct pending *q_push(struct sbx_http_conn *c)
{
	struct pending *e = &c->q[(c->q_head + c->q_n++) % SBX_HTTP_PIPELINE_MAX];
	memset(e, 0, sizeof *e);
	return e;
}

static void q_pop(struct sbx_http_conn *c)
{
	c->q_head = (c->q_head + 1) % SBX_HTTP_PIPELINE_MAX;
	c->q_n--;
}

static void used_names(const struct sbx_http_conn *c, uint64_t used, char *buf, size_t cap)
{
	size_t at = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < c->cfg.n_secrets; i++) {
		if (!(used >> i & 1))
			continue;
		int n = snprintf(buf + at, cap - at, "%s%s", at ? "," : "", c->cfg.secrets[i].name);
		if (n < 0 || (size_t)n >= cap - at)
			break;
		at += (size_t)n;
	}
}

static void report_request(struct sbx_http_conn *c, const struct pending *e, const char *error)
{
	if (!c->cfg.event)
		return;
	char names[SBX_HTTP_MAX_SECRETS * 66];
	used_names(c, e->used, names, sizeof names);
	struct sbx_http_event ev = {
	    .kind = SBX_HTTP_EV_REQUEST,
	    .method = e->method,
	    .scheme = c->cfg.scheme,
	    .host = c->cfg.host,
	    .port = c->cfg.port,
	    .path = e->path,
	    .status = e->status,
	    .bytes_up = e->bytes_up,
	    .bytes_down = e->bytes_down,
	    .duration_us = now_us() - e->start_us,
	    .secrets_used = names,
	    .error = error,
	};
	c->cfg.event(c->cfg.userdata, &ev);
}

/* An error response made here (policy, bad request), then close. It waits
 * behind responses to earlier pipelined requests. */
static void local_response(struct sbx_http_conn *c, int status, const char *detail)
{
	struct sbx_bytes *dst = c->q_n ? &c->deferred : &c->to_guest;
	char body[400];
	int n = snprintf(body, sizeof body, "%s\n", detail);
	if (n < 0 || (size_t)n >= sizeof body)
		n = (int)sizeof body - 1;
	sbx_bytes_printf(dst,
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
			 "Content-Length: %d\r\nConnection: close\r\n\r\n",
			 status, status_text(status), n);
	sbx_bytes_append(dst, body, (size_t)n);
	c->rq_dead = 1;
	if (!c->q_n)
		c->flags |= SBX_HTTP_CLOSE_GUEST | SBX_HTTP_CLOSE_UPSTREAM;
}

/* Refuse the request being parsed: audit it and answer locally. */
static void refuse_request(struct sbx_http_conn *c, int status, const char *why)
{
	struct pending e = {.status = status, .start_us = c->rq_start, .used = 0};
	snprintf(e.method, sizeof e.method, "%s", c->rq_method);
	snprintf(e.path, sizeof e.path, "%s", c->rq_path);
	e.bytes_up = c->rq.msg_bytes;
	report_request(c, &e, why);
	local_response(c, status, why);
}

/* ------------------------------------------------------------ head store */

static void head_reset(struct head *h)
{
	sbx_bytes_consume(&h->store, h->store.len);
	h->url_off = h->url_len = h->nh = 0;
	h->last = 0;
	h->too_big = 0;
}

static int head_add(struct head *h, const char *at, size_t n)
{
	if (h->too_big || h->store.len + n > SBX_HTTP_HEAD_MAX) {
		h->too_big = 1;
		return -1;
	}
	return sbx_bytes_append(&h->store, at, n);
}

static int head_url(struct head *h, const char *at, size_t n)
{
	if (h->url_len == 0)
		h->url_off = h->store.len;
	if (head_add(h, at, n) != 0)
		return -1;
	h->url_len += n;
	return 0;
}

static int head_field(struct head *h, const char *at, size_t n)
{
	if (h->last != 1) {
		if (h->nh == SBX_HTTP_MAX_HEADERS) {
			h->too_big = 1;
			return -1;
		}
		h->h[h->nh].no = h->store.len;
		h->h[h->nh].nl = h->h[h->nh].vl = 0;
		h->h[h->nh].vo = 0;
		h->nh++;
		h->last = 1;
	}
	if (head_add(h, at, n) != 0)
		return -1;
	h->h[h->nh - 1].nl += n;
	return 0;
}

static int head_value(struct head *h, const char *at, size_t n)
{
	if (h->nh == 0)
		return -1;
	if (h->last != 2) {
		h->h[h->nh - 1].vo = h->store.len;
		h->last = 2;
	}
	if (head_add(h, at, n) != 0)
		return -1;
	h->h[h->nh - 1].vl += n;
	return 0;
}

static const char *hname(const struct head *h, size_t i)
{
	return (const char *)sbx_bytes_data(&h->store) + h->h[i].no;
}

static const char *hvalue(const struct head *h, size_t i)
{
	return (const char *)sbx_bytes_data(&h->store) + h->h[i].vo;
}

static const char *head_find(const struct head *h, const char *name, size_t *len)
{
	for (size_t i = 0; i < h->nh; i++)
		if (ieq(hname(h, i), h->h[i].nl, name)) {
			*len = h->h[i].vl;
			return hvalue(h, i);
		}
	return NULL;
}

/* ------------------------------------------------------------ body output */

static int put_chunk(struct sbx_bytes *dst, const unsigned char *p, size_t n)
{
	if (n == 0)
		return 0;
	if (sbx_bytes_printf(dst, "%zx\r\n", n) || sbx_bytes_append(dst, p, n) ||
	    sbx_bytes_append(dst, "\r\n", 2))
		return -1;
	return 0;
}

static void body_begin(struct body_out *o, enum body_mode mode, struct sbx_bytes *dst,
		       enum overflow overflow)
{
	o->mode = mode;
	o->dst = dst;
	o->overflow = overflow;
	o->failed = 0;
	o->close_after = 0;
	sbx_bytes_consume(&o->buf, o->buf.len);
}

/* BUFFER grew past the bound: send what we have with streaming framing. */
static int body_overflow(struct body_out *o)
{
	if (o->overflow == OVERFLOW_FAIL) {
		o->failed = 1;
		return -1;
	}
	int rc = sbx_bytes_append(o->dst, sbx_bytes_data(&o->head), o->head.len);
	if (o->overflow == OVERFLOW_CHUNK) {
		rc |= sbx_bytes_printf(o->dst, "Transfer-Encoding: chunked\r\n\r\n");
		rc |= put_chunk(o->dst, sbx_bytes_data(&o->buf), o->buf.len);
		o->mode = BODY_CHUNKED;
	} else {
		rc |= sbx_bytes_printf(o->dst, "Connection: close\r\n\r\n");
		rc |= sbx_bytes_append(o->dst, sbx_bytes_data(&o->buf), o->buf.len);
		o->mode = BODY_RAW;
		o->close_after = 1;
	}
	sbx_bytes_free(&o->buf);
	return rc ? -1 : 0;
}

static int body_emit(void *ud, const unsigned char *p, size_t n)
{
	struct body_out *o = ud;
	switch (o->mode) {
	case BODY_RAW: return sbx_bytes_append(o->dst, p, n);
	case BODY_CHUNKED: return put_chunk(o->dst, p, n);
	case BODY_BUFFER:
		if (sbx_bytes_append(&o->buf, p, n) != 0)
			return -1;
		return o->buf.len > SBX_HTTP_REFRAME_MAX ? body_overflow(o) : 0;
	}
	return -1;
}

static int body_finish(struct body_out *o)
{
	int rc = 0;
	if (o->mode == BODY_CHUNKED) {
		rc = sbx_bytes_append(o->dst, "0\r\n\r\n", 5);
	} else if (o->mode == BODY_BUFFER) {
		rc = sbx_bytes_append(o->dst, sbx_bytes_data(&o->head), o->head.len);
		rc |= sbx_bytes_printf(o->dst, "Content-Length: %zu\r\n\r\n", o->buf.len);
		rc |= sbx_bytes_append(o->dst, sbx_bytes_data(&o->buf), o->buf.len);
		sbx_bytes_consume(&o->buf, o->buf.len);
	}
	sbx_bytes_consume(&o->head, o->head.len);
	o->mode = BODY_RAW;
	return rc ? -1 : 0;
}

/* ------------------------------------------------------------ substitution */

static void report_misdirected(struct sbx_http_conn *c, size_t i)
{
	uint64_t bit = 1ULL << i;
	c->rq_misdirected = 1;
	if (c->rq_reported[c->rq_ctx] & bit)
		return;
	c->rq_reported[c->rq_ctx] |= bit;
	if (!c->cfg.event)
		return;
	struct sbx_http_event ev = {
	    .kind = SBX_HTTP_EV_MISDIRECTED,
	    .method = c->rq_method,
	    .scheme = c->cfg.scheme,
	    .host = c->cfg.host,
	    .port = c->cfg.port,
	    .path = c->rq_path,
	    .secret = c->cfg.secrets[i].name,
	    .where = c->rq_where,
	    .blocked = c->cfg.block_misdirected,
	};
	c->cfg.event(c->cfg.userdata, &ev);
}

static int fits_target(const struct sbx_http_secret *s)
{
	for (size_t i = 0; i < s->value_len; i++)
		if (s->value[i] <= 0x20 || s->value[i] == 0x7f || s->value[i] == '#')
			return 0;
	return 1;
}

/* Placeholder i matched in the request. */
static const unsigned char *rq_replace(void *ud, size_t i, size_t *len)
{
	struct sbx_http_conn *c = ((struct body_out *)ud)->c;
	const struct sbx_http_secret *s = &c->cfg.secrets[i];
	if (!(c->rq_allowed >> i & 1)) {
		report_misdirected(c, i);
		if (c->cfg.block_misdirected)
			c->rq_abort = 1;
		return NULL;
	}
	if (c->rq_ctx == CTX_BODY && !s->in_body)
		return NULL;
	if (c->rq_ctx == CTX_TARGET && !fits_target(s)) {
		c->rq_bad_target = 1;
		return NULL;
	}
	c->rq_used |= 1ULL << i;
	c->rq_substitutions++;
	*len = s->value_len;
	return s->value;
}

/* A secret value matched in a response: the guest gets the placeholder. */
static const unsigned char *rs_replace(void *ud, size_t i, size_t *len)
{
	struct sbx_http_conn *c = ((struct body_out *)ud)->c;
	if (i >= c->cfg.n_secrets) {
		const struct alias *a = &c->alias[i - c->cfg.n_secrets];
		*len = a->guest_len;
		return (const unsigned char *)a->guest;
	}
	*len = c->ph_len[i];
	return (const unsigned char *)c->cfg.secrets[i].placeholder;
}

static int rq_subst(struct sbx_http_conn *c, const char *in, size_t n, struct sbx_bytes *out)
{
	return sbx_scan_all(c->ph_pats, c->cfg.n_secrets, rq_replace, &c->rq.out, in, n, out);
}

static int rs_subst(struct sbx_http_conn *c, const char *in, size_t n, struct sbx_bytes *out)
{
	return sbx_scan_all(c->val_pats, c->n_val, rs_replace, &c->rs.out, in, n, out);
}

/* Remember an encoding of the credentials for echo protection. Aliases
 * are never evicted (a response scanner may be using them); when the table
 * is full the substitution is not made. Returns 0, or -1 (not recorded). */
static int add_alias(struct sbx_http_conn *c, const unsigned char *real, size_t rl,
		     const char *guest, size_t gl)
{
	for (size_t i = 0; i < c->n_alias; i++)
		if (c->alias[i].real_len == rl && memcmp(c->alias[i].real, real, rl) == 0)
			return 0;
	if (c->n_alias == SBX_HTTP_ALIAS_MAX || rl > SBX_HTTP_ALIAS_LEN)
		return -1;
	struct alias *a = &c->alias[c->n_alias];
	a->real = malloc(rl);
	a->guest = malloc(gl);
	if (!a->real || !a->guest) {
		free(a->real);
		free(a->guest);
		a->real = NULL;
		a->guest = NULL;
		return -1;
	}
	memcpy(a->real, real, rl);
	memcpy(a->guest, guest, gl);
	a->real_len = rl;
	a->guest_len = gl;
	c->val_pats[c->cfg.n_secrets + c->n_alias] = (struct sbx_scan_pattern){a->real, rl};
	c->n_alias++;
	c->n_val++;
	c->alias_dirty = 1;
	return 0;
}

/* "Basic <base64>": substitute inside the decoded credentials and encode
 * again. Returns 1 if it handled the value (appended to out), 0 if the
 * value is not Basic, -1 on memory failure. */
static int basic_subst(struct sbx_http_conn *c, const char *v, size_t n, struct sbx_bytes *out)
{
	if (n < 6 || strncasecmp(v, "Basic ", 6) != 0)
		return 0;
	const char *b64 = v + 6;
	size_t blen = n - 6;
	while (blen && b64[0] == ' ')
		b64++, blen--;
	if (blen == 0 || blen % 4 || blen > SBX_HTTP_HEAD_MAX)
		return 0;
	unsigned char *dec = malloc(blen);
	int dlen = dec ? EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)blen) : -1;
	if (dlen < 0) {
		free(dec);
		return dec ? 0 : -1;
	}
	dlen -= (b64[blen - 1] == '=') + (b64[blen - 2] == '=');
	struct sbx_bytes sub = {0};
	unsigned before = c->rq_substitutions;
	int rc = rq_subst(c, (const char *)dec, (size_t)dlen, &sub);
	sbx_wipe(dec, blen);
	free(dec);
	if (rc != 0) {
		sbx_bytes_free(&sub);
		return -1;
	}
	if (c->rq_substitutions == before) { /* nothing substituted: keep the original */
		sbx_bytes_free(&sub);
		return 0;
	}
	size_t elen = 4 * ((sub.len + 2) / 3) + 1;
	unsigned char *enc = malloc(elen);
	if (!enc) {
		sbx_bytes_free(&sub);
		return -1;
	}
	int en = EVP_EncodeBlock(enc, sbx_bytes_data(&sub), (int)sub.len);
	if (add_alias(c, enc, (size_t)en, b64, blen) != 0) {
		/* no room to protect an echo: leave the placeholder */
		sbx_wipe(enc, elen);
		free(enc);
		sbx_bytes_free(&sub);
		return 0;
	}
	rc = sbx_bytes_append(out, "Basic ", 6) | sbx_bytes_append(out, enc, (size_t)en);
	sbx_wipe(enc, elen);
	free(enc);
	sbx_bytes_free(&sub);
	return rc ? -1 : 1;
}

/* ------------------------------------------------------------ request side */

static int rq_on_begin(http_parser *p)
{
	struct sbx_http_conn *c = p->data;
	head_reset(&c->rq.h);
	c->rq_start = now_us();
	c->rq.msg_bytes = 0;
	c->rq_in_msg = 1;
	c->rq_cur = NULL;
	c->rq_allowed = c->rq_used = 0;
	memset(c->rq_reported, 0, sizeof c->rq_reported);
	c->rq_misdirected = c->rq_bad_target = c->rq_abort = 0;
	c->rq_method[0] = c->rq_path[0] = '\0';
	return 0;
}

static int rq_on_url(http_parser *p, const char *at, size_t n)
{
	struct sbx_http_conn *c = p->data;
	return head_url(&c->rq.h, at, n) ? -1 : 0;
}

static int rq_on_field(http_parser *p, const char *at, size_t n)
{
	struct sbx_http_conn *c = p->data;
	return head_field(&c->rq.h, at, n) ? -1 : 0;
}

static int rq_on_value(http_parser *p, const char *at, size_t n)
{
	struct sbx_http_conn *c = p->data;
	return head_value(&c->rq.h, at, n) ? -1 : 0;
}

static int is_framing_header(const char *name, size_t n)
{
	return ieq(name, n, "Content-Length") || ieq(name, n, "Transfer-Encoding");
}

/* Request line and headers with substitutions into out (without the
 * final CRLF). drop_framing: leave out Content-Length/Transfer-Encoding. */
static int rq_build_head(struct sbx_http_conn *c, const char *target, int drop_framing,
			 struct sbx_bytes *out)
{
	struct head *h = &c->rq.h;
	int rc = sbx_bytes_printf(out, "%s ", c->rq_method);
	c->rq_ctx = CTX_TARGET;
	c->rq_where = "target";
	rc |= rq_subst(c, target, strlen(target), out);
	rc |= sbx_bytes_printf(out, " HTTP/%u.%u\r\n", c->rq.p.http_major, c->rq.p.http_minor);
	c->rq_ctx = CTX_HEADER;
	for (size_t i = 0; i < h->nh && rc == 0; i++) {
		const char *name = hname(h, i), *val = hvalue(h, i);
		size_t nl = h->h[i].nl, vl = h->h[i].vl;
		if (drop_framing && is_framing_header(name, nl))
			continue;
		if (c->rq_allowed && ieq(name, nl, "Accept-Encoding")) {
			/* echo protection cannot read compressed bodies: toward a
			 * secret's own host, ask for none (the guest chooses this
			 * header, so it could otherwise get its secret back
			 * gzipped) */
			rc |= sbx_bytes_printf(out, "Accept-Encoding: identity\r\n");
			continue;
		}
		char where[96];
		snprintf(where, sizeof where, "header:%.*s", (int)(nl < 64 ? nl : 64), name);
		c->rq_where = where;
		c->rq_reported[CTX_HEADER] = 0; /* report once per secret and header */
		rc |= sbx_bytes_append(out, name, nl) | sbx_bytes_append(out, ": ", 2);
		int basic = 0;
		if (ieq(name, nl, "Authorization") || ieq(name, nl, "Proxy-Authorization")) {
			char bwhere[112];
			snprintf(bwhere, sizeof bwhere, "%s (Basic)", where);
			c->rq_where = bwhere;
			basic = basic_subst(c, val, vl, out);
			c->rq_where = where;
			if (basic < 0)
				rc = -1;
		}
		if (basic == 0)
			rc |= rq_subst(c, val, vl, out);
		rc |= sbx_bytes_append(out, "\r\n", 2);
	}
	return rc ? -1 : 0;
}

static void rq_note_request(struct sbx_http_conn *c, const char *target)
{
	snprintf(c->rq_method, sizeof c->rq_method, "%s",
		 http_method_str((enum http_method)c->rq.p.method));
	size_t plen = strcspn(target, "?");
	snprintf(c->rq_path, sizeof c->rq_path, "%.*s", (int)(plen < 511 ? plen : 511), target);
}

static int has_token(const char *v, size_t n, const char *token)
{
	size_t tl = strlen(token);
	for (size_t i = 0; i + tl <= n; i++)
		if (strncasecmp(v + i, token, tl) == 0)
			return 1;
	return 0;
}

/* Shapes refused before any policy: the request goes to the connection's
 * own destination, so an absolute URL or a second Host header could make
 * the upstream server see another host than the one the policy saw. */
static int rq_check_shape(struct sbx_http_conn *c, const char *target)
{
	struct head *h = &c->rq.h;
	if (c->rq.p.method == HTTP_CONNECT) {
		refuse_request(c, 405, "CONNECT is not supported inside an intercepted connection");
		return -1;
	}
	if (target[0] != '/' && strcmp(target, "*") != 0) {
		refuse_request(c, 400, "only origin-form request targets (\"/path\") are accepted");
		return -1;
	}
	size_t hosts = 0;
	for (size_t i = 0; i < h->nh; i++)
		hosts += ieq(hname(h, i), h->h[i].nl, "Host");
	if (hosts > 1) {
		refuse_request(c, 400, "more than one Host header");
		return -1;
	}
	return 0;
}

/* Ask the caller; sets rq_allowed. -1: blocked (answered already). */
static int rq_decide(struct sbx_http_conn *c, const char *target, const char *host)
{
	http_parser *p = &c->rq.p;
	struct head *h = &c->rq.h;
	struct sbx_http_header hdrs[SBX_HTTP_MAX_HEADERS];
	for (size_t i = 0; i < h->nh; i++)
		hdrs[i] =
		    (struct sbx_http_header){hname(h, i), hvalue(h, i), h->h[i].nl, h->h[i].vl};
	struct sbx_http_request_info info = {c->rq_method,  target, host, p->http_major,
					     p->http_minor, hdrs,   h->nh};
	struct sbx_http_decision d = {.verdict = SBX_HTTP_ALLOW, .secrets = 0, .status = 403};
	c->cfg.decide(c->cfg.userdata, &info, &d);
	if (d.verdict != SBX_HTTP_ALLOW) {
		d.reason[sizeof d.reason - 1] = '\0';
		int st = d.status >= 400 && d.status <= 599 ? d.status : 403;
		refuse_request(c, st, d.reason[0] ? d.reason : "blocked by the sandbox policy");
		return -1;
	}
	uint64_t valid = c->cfg.n_secrets == 64 ? ~0ULL : (1ULL << c->cfg.n_secrets) - 1;
	c->rq_allowed = d.secrets & valid;
	return 0;
}

/* Body framing toward upstream (doc/tls-interception.md's table). Sets
 * *reframe when the length may change. -1: refused (413, answered). */
static int rq_body_mode(struct sbx_http_conn *c, enum body_mode *mode, int *reframe)
{
	http_parser *p = &c->rq.p;
	uint64_t body_secrets = 0;
	for (size_t i = 0; i < c->cfg.n_secrets; i++)
		if (c->cfg.secrets[i].in_body)
			body_secrets |= 1ULL << i;
	int chunked = (p->flags & F_CHUNKED) != 0;
	int has_len = !chunked && p->content_length > 0 && p->content_length != ULLONG_MAX;
	size_t el = 0;
	const char *expect = head_find(&c->rq.h, "Expect", &el);
	int expect100 = expect && has_token(expect, el, "100-continue");
	*reframe = has_len && (c->rq_allowed & body_secrets);
	*mode = chunked ? BODY_CHUNKED : BODY_RAW;
	if (!*reframe)
		return 0;
	/* with 100-continue the head must go now, so no buffering */
	*mode = expect100 || p->content_length > SBX_HTTP_REFRAME_MAX ? BODY_CHUNKED : BODY_BUFFER;
	if (*mode == BODY_CHUNKED && !(p->http_major == 1 && p->http_minor >= 1)) {
		refuse_request(c, 413,
			       "an HTTP/1.0 request body this large cannot carry a secret "
			       "(substitution would change its length)");
		return -1;
	}
	return 0;
}

static void rq_queue_pending(struct sbx_http_conn *c)
{
	http_parser *p = &c->rq.p;
	struct pending *e = q_push(c);
	snprintf(e->method, sizeof e->method, "%s", c->rq_method);
	snprintf(e->path, sizeof e->path, "%s", c->rq_path);
	e->is_head = p->method == HTTP_HEAD;
	e->major = p->http_major;
	e->minor = p->http_minor;
	e->start_us = c->rq_start;
	e->used = c->rq_used; /* head substitutions; body ones are added at the end */
	c->rq_cur = e;
}

/* Check, decide, substitute, choose body framing, queue the head. */
static int rq_headers_done(struct sbx_http_conn *c, const char *target, const char *host)
{
	enum body_mode mode;
	int reframe;
	if (rq_check_shape(c, target) || rq_decide(c, target, host) ||
	    rq_body_mode(c, &mode, &reframe))
		return -1;
	if (c->up_failed[0]) {
		char why[240];
		snprintf(why, sizeof why, "upstream error: %s", c->up_failed);
		refuse_request(c, 502, why);
		return -1;
	}
	int http11 = c->rq.p.http_major == 1 && c->rq.p.http_minor >= 1;
	struct body_out *o = &c->rq.out;
	body_begin(o, mode, &c->to_up, http11 ? OVERFLOW_CHUNK : OVERFLOW_FAIL);
	struct sbx_bytes *hb = mode == BODY_BUFFER ? &o->head : &c->to_up;
	size_t mark = hb->len;
	if (rq_build_head(c, target, reframe, hb) != 0) {
		refuse_request(c, 502, "out of memory");
		return -1;
	}
	if (c->rq_misdirected && c->cfg.block_misdirected) {
		hb->len = mark; /* nothing of this request goes out */
		char why[400];
		snprintf(why, sizeof why,
			 "a secret's placeholder was sent to %.200s, which is not one of that "
			 "secret's hosts; the request was blocked",
			 c->cfg.host);
		refuse_request(c, 403, why);
		return -1;
	}
	if (c->rq_bad_target) {
		hb->len = mark;
		refuse_request(c, 400,
			       "a secret's value contains characters that cannot appear in a "
			       "request target");
		return -1;
	}
	if (mode == BODY_CHUNKED && reframe)
		sbx_bytes_printf(hb, "Transfer-Encoding: chunked\r\n");
	if (mode != BODY_BUFFER)
		sbx_bytes_append(hb, "\r\n", 2);
	rq_queue_pending(c);
	c->rq_ctx = CTX_BODY;
	c->rq_where = "body";
	c->rq.scan_on = c->cfg.n_secrets > 0;
	return 0;
}

static int rq_on_headers_complete(http_parser *p)
{
	struct sbx_http_conn *c = p->data;
	struct head *h = &c->rq.h;
	char *target = malloc(h->url_len + 1);
	size_t hl = 0;
	const char *hv = head_find(h, "Host", &hl);
	char *host = hv ? malloc(hl + 1) : NULL;
	if (!target || (hv && !host)) {
		free(target);
		free(host);
		return -1;
	}
	memcpy(target, sbx_bytes_data(&h->store) + h->url_off, h->url_len);
	target[h->url_len] = '\0';
	if (host) {
		memcpy(host, hv, hl);
		host[hl] = '\0';
	}
	rq_note_request(c, target);
	int rc = rq_headers_done(c, target, host);
	free(target);
	free(host);
	return rc;
}

static int rq_on_body(http_parser *p, const char *at, size_t n)
{
	struct sbx_http_conn *c = p->data;
	int rc = c->rq.scan_on ? sbx_scan_feed(&c->rq.scan, at, n)
			       : body_emit(&c->rq.out, (const unsigned char *)at, n);
	if (c->rq_abort || c->rq.out.failed)
		return -1;
	return rc;
}

static int rq_on_complete(http_parser *p)
{
	struct sbx_http_conn *c = p->data;
	if (c->rq.scan_on && sbx_scan_flush(&c->rq.scan) != 0)
		return -1;
	if (c->rq_abort || c->rq.out.failed || body_finish(&c->rq.out) != 0)
		return -1;
	if (c->rq_cur)
		c->rq_cur->used = c->rq_used;
	c->rq.done = 1;
	c->rq_in_msg = 0;
	http_parser_pause(p, 1);
	return 0;
}

/* Body substitution found a misdirected placeholder with blocking on, or
 * could not keep the framing: part of the request may already be queued
 * for upstream, so upstream is dropped and the guest gets the error. */
static void rq_abort_midstream(struct sbx_http_conn *c, int status, const char *why)
{
	sbx_bytes_consume(&c->to_up, c->to_up.len);
	c->flags |= SBX_HTTP_CLOSE_UPSTREAM;
	while (c->q_n) {
		struct pending *e = q_front(c);
		int cur = e == c->rq_cur;
		e->status = cur ? status : 0;
		report_request(c, e, cur ? why : "connection aborted");
		q_pop(c);
	}
	sbx_bytes_free(&c->deferred);
	local_response(c, status, why);
}

static void rq_parse_error(struct sbx_http_conn *c)
{
	if (c->rq_dead)
		return; /* refused already, with its own response */
	if (c->rq_abort) {
		rq_abort_midstream(c, 403,
				   "a secret's placeholder in the request body was headed for a "
				   "host that is not one of that secret's hosts; the request was "
				   "blocked");
	} else if (c->rq.out.failed) {
		rq_abort_midstream(c, 413, "request body too large for secret substitution");
	} else if (c->rq.h.too_big) {
		refuse_request(c, 431, "request head too large");
	} else if (c->rq_cur) {
		rq_abort_midstream(c, 400, "malformed request body");
	} else {
		refuse_request(c, 400, "malformed HTTP request");
	}
}

/* ------------------------------------------------------------ response side */

static int rs_on_begin(http_parser *p)
{
	struct sbx_http_conn *c = p->data;
	if (c->alias_dirty) { /* between bodies: nothing is held back */
		if (sbx_scan_set_patterns(&c->rs.scan, c->val_pats, c->n_val) != 0)
			return -1;
		c->alias_dirty = 0;
	}
	head_reset(&c->rs.h);
	c->rs.msg_bytes = 0;
	return 0;
}

static int rs_on_status(http_parser *p, const char *at, size_t n)
{
	struct sbx_http_conn *c = p->data;
	return head_url(&c->rs.h, at, n) ? -1 : 0;
}

static int rs_on_field(http_parser *p, const char *at, size_t n)
{
	struct sbx_http_conn *c = p->data;
	return head_field(&c->rs.h, at, n) ? -1 : 0;
}

static int rs_on_value(http_parser *p, const char *at, size_t n)
{
	struct sbx_http_conn *c = p->data;
	return head_value(&c->rs.h, at, n) ? -1 : 0;
}

/* Status line and headers, secret values replaced by placeholders
 * everywhere (reason, names, values), without the final CRLF. */
static int rs_build_head(struct sbx_http_conn *c, int drop_len, struct sbx_bytes *out)
{
	http_parser *p = &c->rs.p;
	struct head *h = &c->rs.h;
	int rc =
	    sbx_bytes_printf(out, "HTTP/%u.%u %u ", p->http_major, p->http_minor, p->status_code);
	rc |= rs_subst(c, (const char *)sbx_bytes_data(&h->store) + h->url_off, h->url_len, out);
	rc |= sbx_bytes_append(out, "\r\n", 2);
	for (size_t i = 0; i < h->nh && rc == 0; i++) {
		if (drop_len && ieq(hname(h, i), h->h[i].nl, "Content-Length"))
			continue;
		rc |= rs_subst(c, hname(h, i), h->h[i].nl, out);
		rc |= sbx_bytes_append(out, ": ", 2);
		rc |= rs_subst(c, hvalue(h, i), h->h[i].vl, out);
		rc |= sbx_bytes_append(out, "\r\n", 2);
	}
	return rc ? -1 : 0;
}

static int compressed(const struct head *h)
{
	size_t n = 0;
	const char *v = head_find(h, "Content-Encoding", &n);
	while (v && n && (*v == ' ' || *v == '\t'))
		v++, n--;
	return v && n && !ieq(v, n, "identity");
}

static int rs_on_headers_complete(http_parser *p)
{
	struct sbx_http_conn *c = p->data;
	struct pending *e = q_front(c);
	if (!e)
		return -1; /* a response nobody asked for */
	unsigned st = p->status_code;
	if (st < 100)
		return -1; /* not an HTTP status */
	c->rs_status = (int)st;
	c->rs_final = st >= 200 || st == 101;
	c->rs_started = 1;
	struct body_out *o = &c->rs.out;
	int nobody = (st >= 100 && st < 200) || st == 204 || st == 304 || e->is_head;
	if (nobody) {
		body_begin(o, BODY_RAW, &c->to_guest, OVERFLOW_CLOSE);
		if (rs_build_head(c, 0, &c->to_guest) || sbx_bytes_append(&c->to_guest, "\r\n", 2))
			return -1;
		/* should the parser still see body bytes, they are scanned */
		c->rs.scan_on = c->cfg.n_secrets > 0;
		/* 1 = no body (HEAD); 1xx/204/304 the parser knows itself */
		return e->is_head ? 1 : 0;
	}
	int chunked = (p->flags & F_CHUNKED) != 0;
	int has_len = !chunked && p->content_length != ULLONG_MAX;
	int scan = c->cfg.n_secrets > 0 && !compressed(&c->rs.h);
	int both11 = e->major == 1 && e->minor >= 1 && p->http_major == 1 && p->http_minor >= 1;
	enum body_mode mode = chunked ? BODY_CHUNKED : BODY_RAW;
	if (scan && has_len)
		mode = BODY_BUFFER;
	body_begin(o, mode, &c->to_guest, both11 ? OVERFLOW_CHUNK : OVERFLOW_CLOSE);
	struct sbx_bytes *hb = mode == BODY_BUFFER ? &o->head : &c->to_guest;
	if (rs_build_head(c, mode == BODY_BUFFER, hb) != 0)
		return -1;
	if (mode != BODY_BUFFER && sbx_bytes_append(hb, "\r\n", 2) != 0)
		return -1;
	c->rs.scan_on = scan;
	return 0;
}

static int rs_on_body(http_parser *p, const char *at, size_t n)
{
	struct sbx_http_conn *c = p->data;
	return c->rs.scan_on ? sbx_scan_feed(&c->rs.scan, at, n)
			     : body_emit(&c->rs.out, (const unsigned char *)at, n);
}

static int rs_on_complete(http_parser *p)
{
	struct sbx_http_conn *c = p->data;
	if (c->rs.scan_on && sbx_scan_flush(&c->rs.scan) != 0)
		return -1;
	if (body_finish(&c->rs.out) != 0)
		return -1;
	if (!c->rs_final)
		return 0; /* 1xx: the final response is still to come */
	c->rs.done = 1;
	if (c->rs.out.close_after || !http_should_keep_alive(p))
		c->flags |= SBX_HTTP_CLOSE_GUEST | SBX_HTTP_CLOSE_UPSTREAM;
	http_parser_pause(p, 1);
	return 0;
}

/* ------------------------------------------------------------ lifecycle */

static void side_init(struct side *s, struct sbx_http_conn *c, enum http_parser_type type)
{
	http_parser_init(&s->p, type);
	s->p.data = c;
}

static int validate(const struct sbx_http_config *cfg, char *err, size_t cap)
{
	if (!cfg->decide) {
		snprintf(err, cap, "no decision callback");
		return -1;
	}
	if (cfg->n_secrets > SBX_HTTP_MAX_SECRETS || (cfg->n_secrets && !cfg->secrets)) {
		snprintf(err, cap, "at most %d secrets", SBX_HTTP_MAX_SECRETS);
		return -1;
	}
	for (size_t i = 0; i < cfg->n_secrets; i++) {
		const struct sbx_http_secret *s = &cfg->secrets[i];
		if (!s->name || !s->placeholder || !s->placeholder[0] || !s->value) {
			snprintf(err, cap, "secret %zu: name, placeholder and value are required",
				 i);
			return -1;
		}
		if (s->value_len < 1 || s->value_len > SBX_HTTP_VALUE_MAX) {
			snprintf(err, cap, "secret %.64s: value must be 1..%d bytes", s->name,
				 SBX_HTTP_VALUE_MAX);
			return -1;
		}
		if (memchr(s->value, '\r', s->value_len) || memchr(s->value, '\n', s->value_len) ||
		    memchr(s->value, '\0', s->value_len)) {
			snprintf(err, cap, "secret %.64s: value must not contain CR, LF or NUL",
				 s->name);
			return -1;
		}
	}
	return 0;
}

/* Input per parser call, scaled down by the worst expansion a replacement
 * can cause, so that one call adds at most about SBX_HTTP_FEED_CHUNK bytes
 * of output whatever the secrets' lengths. */
static size_t feed_chunk(size_t longest_out, size_t shortest_in)
{
	size_t ratio = shortest_in ? (longest_out + shortest_in - 1) / shortest_in : 1;
	size_t chunk = SBX_HTTP_FEED_CHUNK / (ratio ? ratio : 1);
	return chunk < 64 ? 64 : chunk;
}

static void set_feed_chunks(struct sbx_http_conn *c)
{
	size_t max_val = 0, min_val = SIZE_MAX, max_ph = 0, min_ph = SIZE_MAX;
	for (size_t i = 0; i < c->cfg.n_secrets; i++) {
		size_t v = c->cfg.secrets[i].value_len, p = c->ph_len[i];
		max_val = v > max_val ? v : max_val;
		min_val = v < min_val ? v : min_val;
		max_ph = p > max_ph ? p : max_ph;
		min_ph = p < min_ph ? p : min_ph;
	}
	c->rq_chunk = c->cfg.n_secrets ? feed_chunk(max_val, min_ph) : SBX_HTTP_FEED_CHUNK;
	/* responses: values become placeholders (a Basic blob grows by about
	 * the same ratio) */
	c->rs_chunk = c->cfg.n_secrets ? feed_chunk(max_ph + 8, min_val) : SBX_HTTP_FEED_CHUNK;
}

int sbx_http_conn_new(struct sbx_http_conn **out, const struct sbx_http_config *cfg, char *err,
		      size_t cap)
{
	*out = NULL;
	if (validate(cfg, err, cap) != 0)
		return -1;
	struct sbx_http_conn *c = calloc(1, sizeof *c);
	size_t n = cfg->n_secrets;
	if (!c)
		goto nomem;
	c->cfg = *cfg;
	if (!c->cfg.scheme)
		c->cfg.scheme = "http";
	if (!c->cfg.host)
		c->cfg.host = "";
	c->ph_pats = calloc(n + 1, sizeof *c->ph_pats);
	c->val_pats = calloc(n + SBX_HTTP_ALIAS_MAX + 1, sizeof *c->val_pats);
	c->n_val = n;
	c->ph_len = calloc(n + 1, sizeof *c->ph_len);
	if (!c->ph_pats || !c->val_pats || !c->ph_len)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		c->ph_len[i] = strlen(cfg->secrets[i].placeholder);
		c->ph_pats[i] = (struct sbx_scan_pattern){
		    (const unsigned char *)cfg->secrets[i].placeholder, c->ph_len[i]};
		c->val_pats[i] =
		    (struct sbx_scan_pattern){cfg->secrets[i].value, cfg->secrets[i].value_len};
	}
	if (sbx_scan_init(&c->rq.scan, c->ph_pats, n, rq_replace, body_emit, &c->rq.out) ||
	    sbx_scan_init(&c->rs.scan, c->val_pats, n, rs_replace, body_emit, &c->rs.out))
		goto nomem;
	c->rq.out.c = c;
	c->rs.out.c = c;
	set_feed_chunks(c);
	side_init(&c->rq, c, HTTP_REQUEST);
	side_init(&c->rs, c, HTTP_RESPONSE);
	c->rq.set = (http_parser_settings){.on_message_begin = rq_on_begin,
					   .on_url = rq_on_url,
					   .on_header_field = rq_on_field,
					   .on_header_value = rq_on_value,
					   .on_headers_complete = rq_on_headers_complete,
					   .on_body = rq_on_body,
					   .on_message_complete = rq_on_complete};
	c->rs.set = (http_parser_settings){.on_message_begin = rs_on_begin,
					   .on_status = rs_on_status,
					   .on_header_field = rs_on_field,
					   .on_header_value = rs_on_value,
					   .on_headers_complete = rs_on_headers_complete,
					   .on_body = rs_on_body,
					   .on_message_complete = rs_on_complete};
	c->rq.out.dst = &c->to_up;
	c->rs.out.dst = &c->to_guest;
	*out = c;
	return 0;
nomem:
	snprintf(err, cap, "out of memory");
	sbx_http_conn_free(c);
	return -1;
}

static void side_free(struct side *s)
{
	sbx_scan_free(&s->scan);
	sbx_bytes_free(&s->h.store);
	sbx_bytes_free(&s->out.head);
	sbx_bytes_free(&s->out.buf);
}

void sbx_http_conn_free(struct sbx_http_conn *c)
{
	if (!c)
		return;
	while (c->q_n) {
		report_request(c, q_front(c), "connection closed before the response");
		q_pop(c);
	}
	side_free(&c->rq);
	side_free(&c->rs);
	sbx_bytes_free(&c->to_up);
	sbx_bytes_free(&c->to_guest);
	sbx_bytes_free(&c->deferred);
	for (size_t i = 0; i < c->n_alias; i++) {
		sbx_wipe(c->alias[i].real, c->alias[i].real_len);
		free(c->alias[i].real);
		free(c->alias[i].guest);
	}
	free(c->ph_pats);
	free(c->val_pats);
	free(c->ph_len);
	free(c);
}

/* ------------------------------------------------------------ feeding */

static int out_full(const struct sbx_http_conn *c)
{
	return c->to_up.len >= SBX_HTTP_OUT_HIGH || c->to_guest.len >= SBX_HTTP_OUT_HIGH;
}

static size_t passthrough(struct sbx_bytes *dst, const void *data, size_t len)
{
	if (dst->len >= SBX_HTTP_OUT_HIGH)
		return 0;
	size_t n = SBX_HTTP_OUT_HIGH - dst->len;
	if (n > len)
		n = len;
	return sbx_bytes_append(dst, data, n) == 0 ? n : 0;
}

size_t sbx_http_feed_request(struct sbx_http_conn *c, const void *data, size_t len)
{
	const char *d = data;
	size_t used = 0;
	while (used < len) {
		if (c->passthrough)
			return used + passthrough(&c->to_up, d + used, len - used);
		if (c->rq_dead || c->rq_eof || (c->flags & SBX_HTTP_CLOSE_UPSTREAM))
			return len; /* refused or closing: the rest is discarded, flags say close */
		if (c->rq_wait || out_full(c) || c->q_n == SBX_HTTP_PIPELINE_MAX)
			break;
		http_parser *p = &c->rq.p;
		if (HTTP_PARSER_ERRNO(p) == HPE_PAUSED)
			http_parser_pause(p, 0);
		size_t piece = len - used < c->rq_chunk ? len - used : c->rq_chunk;
		c->rq.done = 0;
		size_t n = http_parser_execute(p, &c->rq.set, d + used, piece);
		used += n;
		c->rq.msg_bytes += n;
		enum http_errno e = HTTP_PARSER_ERRNO(p);
		if (e != HPE_OK && e != HPE_PAUSED) {
			rq_parse_error(c);
			return len;
		}
		if (c->rq.done && c->rq_cur) {
			c->rq_cur->bytes_up = c->rq.msg_bytes;
			if (p->upgrade) {
				/* wait for the answer: 101 switches to passthrough */
				c->rq_cur->upgrade = 1;
				c->rq_wait = 1;
			}
		}
		if (n == 0 && e == HPE_OK)
			break;
	}
	return used;
}

/* The front request got its final response: audit, dequeue, and let the
 * request side go on (or release a waiting local error response). */
static void rs_finish_exchange(struct sbx_http_conn *c)
{
	struct pending *e = q_front(c);
	e->status = c->rs_status;
	e->bytes_down = c->rs.msg_bytes;
	int was_upgrade = e->upgrade;
	report_request(c, e, NULL);
	q_pop(c);
	c->rs_started = 0;
	if (was_upgrade) {
		c->rq_wait = 0;
		if (c->rs_status == 101) {
			c->passthrough = 1;
			c->flags |= SBX_HTTP_PASSTHROUGH;
		} else {
			http_parser_init(&c->rq.p, HTTP_REQUEST); /* refused upgrade: go on */
			c->rq.p.data = c;
		}
	}
	if (!c->q_n && c->deferred.len) {
		sbx_bytes_append(&c->to_guest, sbx_bytes_data(&c->deferred), c->deferred.len);
		sbx_bytes_free(&c->deferred);
		c->flags |= SBX_HTTP_CLOSE_GUEST | SBX_HTTP_CLOSE_UPSTREAM;
	}
}

/* Upstream broke the protocol or went away mid-response. */
static void rs_fail(struct sbx_http_conn *c, const char *why)
{
	int first = 1;
	while (c->q_n) {
		struct pending *e = q_front(c);
		if (first && !c->rs_started) {
			char msg[200];
			snprintf(msg, sizeof msg, "upstream error: %s", why);
			sbx_bytes_printf(&c->to_guest,
					 "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; "
					 "charset=utf-8\r\nContent-Length: %zu\r\nConnection: "
					 "close\r\n\r\n%s\n",
					 strlen(msg) + 1, msg);
			e->status = 502;
		}
		e->bytes_down = c->rs.msg_bytes;
		report_request(c, e, why);
		q_pop(c);
		first = 0;
	}
	sbx_bytes_free(&c->deferred);
	c->rq_dead = 1;
	c->flags |= SBX_HTTP_CLOSE_GUEST | SBX_HTTP_CLOSE_UPSTREAM;
}

/* One execute call on the response side and its aftermath. Returns bytes
 * taken, or (size_t)-1 when the connection failed. */
static size_t rs_execute(struct sbx_http_conn *c, const char *d, size_t n)
{
	http_parser *p = &c->rs.p;
	if (HTTP_PARSER_ERRNO(p) == HPE_PAUSED)
		http_parser_pause(p, 0);
	c->rs.done = 0;
	size_t taken = http_parser_execute(p, &c->rs.set, d, n);
	c->rs.msg_bytes += taken;
	enum http_errno e = HTTP_PARSER_ERRNO(p);
	if (e != HPE_OK && e != HPE_PAUSED) {
		rs_fail(c, q_front(c) ? "malformed HTTP response" : "response without a request");
		return (size_t)-1;
	}
	if (c->rs.done)
		rs_finish_exchange(c);
	return taken;
}

size_t sbx_http_feed_response(struct sbx_http_conn *c, const void *data, size_t len)
{
	const char *d = data;
	size_t used = 0;
	while (used < len) {
		if (c->passthrough)
			return used + passthrough(&c->to_guest, d + used, len - used);
		if (c->flags & SBX_HTTP_CLOSE_GUEST)
			return len; /* nothing more goes to the guest */
		if (out_full(c))
			break;
		size_t piece = len - used < c->rs_chunk ? len - used : c->rs_chunk;
		size_t n = rs_execute(c, d + used, piece);
		if (n == (size_t)-1)
			return len;
		used += n;
		if (n == 0)
			break;
	}
	return used;
}

void sbx_http_request_eof(struct sbx_http_conn *c)
{
	if (c->passthrough) {
		c->flags |= SBX_HTTP_CLOSE_UPSTREAM;
		return;
	}
	if (c->rq_in_msg && !c->rq_dead) /* cut off mid-request */
		rq_abort_midstream(c, 400, "request truncated");
	c->rq_eof = 1;
}

void sbx_http_response_eof(struct sbx_http_conn *c)
{
	if (c->passthrough) {
		c->flags |= SBX_HTTP_CLOSE_GUEST;
		return;
	}
	if (c->flags & SBX_HTTP_CLOSE_GUEST)
		return;
	/* a close-delimited body ends here */
	if (rs_execute(c, NULL, 0) == (size_t)-1)
		return;
	if (c->q_n)
		rs_fail(c, "upstream closed the connection before the response was complete");
	c->flags |= SBX_HTTP_CLOSE_GUEST | SBX_HTTP_CLOSE_UPSTREAM;
}

void sbx_http_upstream_failed(struct sbx_http_conn *c, const char *why)
{
	snprintf(c->up_failed, sizeof c->up_failed, "%s", why && *why ? why : "unavailable");
	sbx_bytes_consume(&c->to_up, c->to_up.len);
	if (c->passthrough) {
		c->flags |= SBX_HTTP_CLOSE_GUEST | SBX_HTTP_CLOSE_UPSTREAM;
		return;
	}
	if (c->q_n) /* answered requests first get their 502 */
		rs_fail(c, c->up_failed);
	/* otherwise the next request gets it (rq_headers_done) */
}

size_t sbx_http_peek_upstream(struct sbx_http_conn *c, const unsigned char **p)
{
	*p = sbx_bytes_data(&c->to_up);
	return c->to_up.len;
}

void sbx_http_consume_upstream(struct sbx_http_conn *c, size_t n)
{
	sbx_bytes_consume(&c->to_up, n);
}

size_t sbx_http_peek_guest(struct sbx_http_conn *c, const unsigned char **p)
{
	*p = sbx_bytes_data(&c->to_guest);
	return c->to_guest.len;
}

void sbx_http_consume_guest(struct sbx_http_conn *c, size_t n)
{
	sbx_bytes_consume(&c->to_guest, n);
}

unsigned sbx_http_flags(const struct sbx_http_conn *c)
{
	unsigned f = c->flags;
	if (c->passthrough)
		f |= SBX_HTTP_PASSTHROUGH;
	if (c->rq_eof && !c->q_n && !c->passthrough)
		f |= SBX_HTTP_CLOSE_GUEST | SBX_HTTP_CLOSE_UPSTREAM;
	return f;
}

size_t sbx_http_memory(const struct sbx_http_conn *c)
{
	const struct side *s[2] = {&c->rq, &c->rs};
	size_t m = c->to_up.cap + c->to_guest.cap + c->deferred.cap;
	for (int i = 0; i < 2; i++)
		m += s[i]->h.store.cap + s[i]->out.head.cap + s[i]->out.buf.cap +
		     s[i]->scan.maxlen + SBX_SCAN_CHUNK;
	return m;
}
