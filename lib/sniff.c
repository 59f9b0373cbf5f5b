/* SNI and Host sniffing: see sniff.h. The TLS side walks the ClientHello
 * by hand (a few length-prefixed fields, every read bounds-checked); the
 * HTTP side uses http-parser, stopping at the end of the head. */
#include "sniff.h"

#include <ctype.h>
#include <http_parser.h>
#include <stdio.h>
#include <string.h>

#define BAD(s, ...) (out->kind = SBX_SNIFF_BAD, snprintf(out->why, sizeof out->why, __VA_ARGS__))

struct rd {
	const uint8_t *p;
	size_t len, off;
	int bad;
};

static unsigned rd_n(struct rd *r, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = 1;
		return 0;
	}
	unsigned v = 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | r->p[r->off + i];
	r->off += n;
	return v;
}

static void rd_skip(struct rd *r, size_t n)
{
	if (r->bad || n > r->len - r->off)
		r->bad = 1;
	else
		r->off += n;
}

static void set_name(struct sbx_sniff *out, const uint8_t *p, size_t n)
{
	if (n >= sizeof out->name)
		n = sizeof out->name - 1;
	for (size_t i = 0; i < n; i++)
		out->name[i] = (char)tolower(p[i]);
	out->name[n] = '\0';
	out->has_name = 1;
}

/* The ClientHello body (after the 4-byte handshake header). */
static void parse_client_hello(const uint8_t *p, size_t len, struct sbx_sniff *out)
{
	struct rd r = {p, len, 0, 0};
	rd_skip(&r, 2 + 32);	    /* version, random */
	rd_skip(&r, rd_n(&r, 1));   /* session id */
	rd_skip(&r, rd_n(&r, 2));   /* cipher suites */
	rd_skip(&r, rd_n(&r, 1));   /* compression methods */
	out->kind = SBX_SNIFF_TLS;
	if (!r.bad && r.off == len)
		return; /* no extensions at all */
	size_t ext_end = rd_n(&r, 2);
	if (r.bad || ext_end != len - r.off) {
		BAD(out, "malformed ClientHello extensions");
		return;
	}
	while (r.off < len) {
		unsigned type = rd_n(&r, 2), elen = rd_n(&r, 2);
		if (r.bad || elen > len - r.off)
			break;
		if (type != 0) { /* server_name */
			rd_skip(&r, elen);
			continue;
		}
		if (out->has_name) {
			BAD(out, "two server_name extensions");
			return;
		}
		struct rd e = {r.p + r.off, elen, 0, 0};
		size_t list = rd_n(&e, 2);
		if (e.bad || list != elen - 2) {
			BAD(out, "malformed server_name extension");
			return;
		}
		while (e.off < elen && !e.bad) {
			unsigned nt = rd_n(&e, 1), nl = rd_n(&e, 2);
			if (e.bad || nl > elen - e.off)
				break;
			if (nt == 0 && !out->has_name) {
				if (nl == 0 || memchr(e.p + e.off, 0, nl)) {
					BAD(out, "empty or NUL-containing server name");
					return;
				}
				set_name(out, e.p + e.off, nl);
			}
			rd_skip(&e, nl);
		}
		if (e.bad || e.off != elen) {
			BAD(out, "malformed server_name list");
			return;
		}
		rd_skip(&r, elen);
	}
	if (r.bad)
		BAD(out, "truncated ClientHello extension");
}

/* TLS records of type handshake carrying one ClientHello, possibly split
 * over several records: reassemble at most SBX_SNIFF_MAX bytes. */
static void sniff_tls(const uint8_t *p, size_t len, struct sbx_sniff *out)
{
	static _Thread_local uint8_t hs[SBX_SNIFF_MAX];
	size_t have = 0, off = 0;
	while (off + 5 <= len) {
		if (p[off] != 0x16 || p[off + 1] != 0x03) {
			BAD(out, "TLS record that is not a handshake");
			return;
		}
		size_t rl = (size_t)p[off + 3] << 8 | p[off + 4];
		if (rl == 0 || rl > 16384 + 256) {
			BAD(out, "TLS record length %zu", rl);
			return;
		}
		if (off + 5 + rl > len)
			break; /* partial record */
		if (have + rl > sizeof hs) {
			BAD(out, "ClientHello over %u bytes", SBX_SNIFF_MAX);
			return;
		}
		memcpy(hs + have, p + off + 5, rl);
		have += rl;
		off += 5 + rl;
		if (have >= 4) {
			if (hs[0] != 1) {
				BAD(out, "first handshake message is not a ClientHello");
				return;
			}
			size_t ml = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];
			if (ml + 4 > sizeof hs) {
				BAD(out, "ClientHello over %u bytes", SBX_SNIFF_MAX);
				return;
			}
			if (have >= ml + 4) {
				parse_client_hello(hs + 4, ml, out);
				return;
			}
		}
	}
	if (len >= SBX_SNIFF_MAX)
		BAD(out, "ClientHello over %u bytes", SBX_SNIFF_MAX);
	else
		out->kind = SBX_SNIFF_MORE;
}

struct http_state {
	struct sbx_sniff *out;
	int in_host; /* the header being read is Host */
	int hosts;   /* Host headers seen */
	int done;
	char host[256];
	size_t host_len;
	int host_overflow;
};

static int on_field(http_parser *hp, const char *at, size_t n)
{
	struct http_state *st = hp->data;
	/* http-parser may deliver a field in pieces; Host is short, so a
	 * field that arrives split is compared piecewise from its start */
	st->in_host = n == 4 && !strncasecmp(at, "host", 4);
	if (st->in_host)
		st->hosts++;
	return 0;
}

static int on_value(http_parser *hp, const char *at, size_t n)
{
	struct http_state *st = hp->data;
	if (!st->in_host)
		return 0;
	if (st->host_len + n >= sizeof st->host) {
		st->host_overflow = 1;
		return 0;
	}
	memcpy(st->host + st->host_len, at, n);
	st->host_len += n;
	return 0;
}

static int on_headers_complete(http_parser *hp)
{
	struct http_state *st = hp->data;
	st->done = 1;
	http_parser_pause(hp, 1);
	return 0;
}

/* Host header value without the port ("[v6]:port", "name:port"). */
static void host_without_port(const char *h, size_t n, struct sbx_sniff *out)
{
	if (n && h[0] == '[') {
		const char *close = memchr(h, ']', n);
		if (close) {
			set_name(out, (const uint8_t *)h + 1, (size_t)(close - h - 1));
			return;
		}
	}
	const char *colon = memchr(h, ':', n);
	set_name(out, (const uint8_t *)h, colon ? (size_t)(colon - h) : n);
}

static void sniff_http(const uint8_t *p, size_t len, struct sbx_sniff *out)
{
	http_parser hp;
	http_parser_settings s;
	http_parser_settings_init(&s);
	s.on_header_field = on_field;
	s.on_header_value = on_value;
	s.on_headers_complete = on_headers_complete;
	struct http_state st = {.out = out};
	http_parser_init(&hp, HTTP_REQUEST);
	hp.data = &st;
	http_parser_execute(&hp, &s, (const char *)p, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&hp);
	if (!st.done) {
		if (e != HPE_OK)
			BAD(out, "malformed HTTP request: %s", http_errno_name(e));
		else if (len >= SBX_SNIFF_MAX)
			BAD(out, "HTTP request head over %u bytes", SBX_SNIFF_MAX);
		else
			out->kind = SBX_SNIFF_MORE;
		return;
	}
	if (st.hosts > 1 || st.host_overflow) {
		BAD(out, "%s", st.host_overflow ? "Host header too long" : "two Host headers");
		return;
	}
	out->kind = SBX_SNIFF_HTTP;
	/* trim the optional whitespace http-parser leaves at the end */
	while (st.host_len && (st.host[st.host_len - 1] == ' ' || st.host[st.host_len - 1] == '\t'))
		st.host_len--;
	if (st.hosts)
		host_without_port(st.host, st.host_len, out);
}

/* 1: an HTTP request (a method token of letters, any case, then a space,
 * possibly after empty lines, which servers skip: RFC 9112 2.2); 0: not;
 * -1: undecided yet. Lowercase methods and leading CRLFs count as HTTP so
 * that http-parser sees them and refuses them: a server that accepts them
 * must not be reached with a Host nobody checked. */
static int looks_like_http(const uint8_t *p, size_t len)
{
	size_t i = 0;
	while (i < len && (p[i] == '\r' || p[i] == '\n'))
		i++;
	int blank = i > 0;
	size_t start = i;
	while (i < len && i - start < 24 && isalpha(p[i]))
		i++;
	if (i == len)
		return len - start < 24 ? -1 : blank;
	if (i > start && p[i] == ' ')
		return 1;
	return blank; /* empty lines, then no method: only HTTP does that */
}

void sbx_sniff(const uint8_t *p, size_t len, struct sbx_sniff *out)
{
	memset(out, 0, sizeof *out);
	if (len == 0) {
		out->kind = SBX_SNIFF_MORE;
		return;
	}
	if (p[0] == 0x16) {
		if (len < 2 || p[1] == 0x03)
			sniff_tls(p, len, out);
		else
			out->kind = SBX_SNIFF_OTHER;
		return;
	}
	/* Any other TLS record first (alert, change_cipher_spec, application
	 * data) or an SSLv2-format ClientHello: a lenient server could take
	 * the handshake that follows without anyone reading its SNI. */
	if (p[0] >= 0x14 && p[0] <= 0x17 && (len < 2 || p[1] == 0x03)) {
		if (len < 2)
			out->kind = SBX_SNIFF_MORE;
		else
			BAD(out, "a TLS record of type %u before any ClientHello", p[0]);
		return;
	}
	if ((p[0] & 0x80) && (len < 3 || p[2] == 0x01)) {
		if (len < 3)
			out->kind = SBX_SNIFF_MORE;
		else
			BAD(out, "an SSLv2-format ClientHello");
		return;
	}
	int h = looks_like_http(p, len);
	if (h < 0)
		out->kind = SBX_SNIFF_MORE;
	else if (h)
		sniff_http(p, len, out);
	else
		out->kind = SBX_SNIFF_OTHER;
}
