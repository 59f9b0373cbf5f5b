/* Unit tests for the HTTP/1.1 processor (lib/http1.c), the streaming
 * scanner (lib/httpscan.c) and placeholders (lib/placeholder.c). Every
 * test drives a real sbx_http_conn with real HTTP bytes, feeding and
 * draining like the proxy does, and checks what each side would receive. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"
#include "httpscan.h"
#include "placeholder.h"

#define KEY_VALUE "sk-live-REAL-0123456789abcdef"
#define BODY_VALUE "body-secret-REAL-value-42"

static char ph_key[SBX_PLACEHOLDER_MAX], ph_body[SBX_PLACEHOLDER_MAX];

static struct sbx_http_secret secrets[2];

struct harness {
	struct sbx_http_conn *c;
	struct sbx_bytes up, guest, log;
	uint64_t allow;	  /* secrets the decision allows */
	int block_status; /* nonzero: decision blocks */
	int decisions;
	char last_host[256];
	size_t max_mem;
};

static void setup_secrets(void)
{
	ck_assert_int_gt(sbx_placeholder_make("API_KEY", ph_key, sizeof ph_key), 0);
	ck_assert_int_gt(sbx_placeholder_make("BODY_TOKEN", ph_body, sizeof ph_body), 0);
	secrets[0] = (struct sbx_http_secret){"API_KEY", ph_key, (const unsigned char *)KEY_VALUE,
					      strlen(KEY_VALUE), 0};
	secrets[1] = (struct sbx_http_secret){
	    "BODY_TOKEN", ph_body, (const unsigned char *)BODY_VALUE, strlen(BODY_VALUE), 1};
}

static void decide(void *ud, const struct sbx_http_request_info *req, struct sbx_http_decision *d)
{
	struct harness *h = ud;
	h->decisions++;
	snprintf(h->last_host, sizeof h->last_host, "%s", req->host ? req->host : "");
	if (h->block_status) {
		d->verdict = SBX_HTTP_BLOCK;
		d->status = h->block_status;
		snprintf(d->reason, sizeof d->reason, "host %.200s is not allowed", h->last_host);
		return;
	}
	d->secrets = h->allow;
}

static void on_event(void *ud, const struct sbx_http_event *ev)
{
	struct harness *h = ud;
	if (ev->kind == SBX_HTTP_EV_MISDIRECTED)
		sbx_bytes_printf(&h->log, "MIS %s %s %s%s\n", ev->secret, ev->where, ev->path,
				 ev->blocked ? " blocked" : "");
	else
		sbx_bytes_printf(
		    &h->log, "REQ %s %s://%s:%u%s %d up=%llu down=%llu used=%s err=%s\n",
		    ev->method, ev->scheme, ev->host, ev->port, ev->path, ev->status,
		    (unsigned long long)ev->bytes_up, (unsigned long long)ev->bytes_down,
		    ev->secrets_used, ev->error ? ev->error : "-");
}

static void harness_init(struct harness *h, uint64_t allow, int block_misdirected)
{
	memset(h, 0, sizeof *h);
	setup_secrets();
	h->allow = allow;
	struct sbx_http_config cfg = {.secrets = secrets,
				      .n_secrets = 2,
				      .scheme = "https",
				      .host = "api.example.test",
				      .port = 443,
				      .block_misdirected = block_misdirected,
				      .decide = decide,
				      .event = on_event,
				      .userdata = h};
	char err[200];
	ck_assert_msg(sbx_http_conn_new(&h->c, &cfg, err, sizeof err) == 0, "%s", err);
}

static void drain(struct harness *h)
{
	const unsigned char *p;
	size_t n = sbx_http_peek_upstream(h->c, &p);
	sbx_bytes_append(&h->up, p, n);
	sbx_http_consume_upstream(h->c, n);
	n = sbx_http_peek_guest(h->c, &p);
	sbx_bytes_append(&h->guest, p, n);
	sbx_http_consume_guest(h->c, n);
}

/* Feed everything in steps of `step` bytes, draining like a proxy would.
 * Returns how much was taken (less than len: the processor waits). */
static size_t feed(struct harness *h, int request, const void *data, size_t len, size_t step)
{
	const char *d = data;
	size_t done = 0;
	int stuck = 0;
	while (done < len && stuck < 3) {
		size_t n = len - done < step ? len - done : step;
		size_t took = request ? sbx_http_feed_request(h->c, d + done, n)
				      : sbx_http_feed_response(h->c, d + done, n);
		size_t mem = sbx_http_memory(h->c);
		if (mem > h->max_mem)
			h->max_mem = mem;
		drain(h);
		done += took;
		stuck = took ? 0 : stuck + 1;
	}
	return done;
}

static size_t feed_s(struct harness *h, int request, const char *s, size_t step)
{
	return feed(h, request, s, strlen(s), step);
}

static char *str(struct sbx_bytes *b)
{
	sbx_bytes_append(b, "", 1);
	b->len--;
	return (char *)b->p + b->off;
}

static void harness_free(struct harness *h)
{
	if (h->c)
		sbx_http_conn_free(h->c);
	h->c = NULL;
	/* no real value anywhere the guest or a log could see */
	ck_assert_ptr_null(strstr(str(&h->guest), KEY_VALUE));
	ck_assert_ptr_null(strstr(str(&h->guest), BODY_VALUE));
	ck_assert_ptr_null(strstr(str(&h->log), KEY_VALUE));
	ck_assert_ptr_null(strstr(str(&h->log), BODY_VALUE));
	sbx_bytes_free(&h->up);
	sbx_bytes_free(&h->guest);
	sbx_bytes_free(&h->log);
}

static char *b64(const char *s)
{
	static char out[512];
	static const char tbl[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = strlen(s), o = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)s[i] << 16;
		if (i + 1 < n)
			v |= (unsigned char)s[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)s[i + 2];
		out[o++] = tbl[v >> 18 & 63];
		out[o++] = tbl[v >> 12 & 63];
		out[o++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? tbl[v & 63] : '=';
	}
	out[o] = '\0';
	return out;
}

static char *request_with_placeholders(void)
{
	static char req[2048];
	char user[256];
	snprintf(user, sizeof user, "user:%s", ph_key);
	snprintf(req, sizeof req,
		 "GET /v1/models?key=%s&x=1 HTTP/1.1\r\nHost: api.example.test\r\n"
		 "X-Api-Key: Bearer %s\r\nAuthorization: Basic %s\r\nAccept: */*\r\n\r\n",
		 ph_key, ph_key, b64(user));
	return req;
}

/* ------------------------------------------------------------ tests */

START_TEST(placeholder_format_and_randomness)
{
	char a[SBX_PLACEHOLDER_MAX], b[SBX_PLACEHOLDER_MAX];
	int n = sbx_placeholder_make("OPENAI_API_KEY", a, sizeof a);
	ck_assert_int_eq(n, 7 + 14 + 1 + 32);
	ck_assert_int_eq(strncmp(a, "SBX_PH_OPENAI_API_KEY_", 22), 0);
	for (int i = 22; i < n; i++)
		ck_assert(strchr("abcdefghijklmnopqrstuvwxyz234567", a[i]) != NULL);
	ck_assert_int_eq(sbx_placeholder_make("OPENAI_API_KEY", b, sizeof b), n);
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(sbx_placeholder_make("1BAD", a, sizeof a), -1);
	ck_assert_int_eq(sbx_placeholder_make("BAD-NAME", a, sizeof a), -1);
	ck_assert_int_eq(sbx_placeholder_make("", a, sizeof a), -1);
	ck_assert_int_eq(sbx_placeholder_make("OK", a, 10), -1);
}
END_TEST

static const unsigned char *swap_replace(void *ud, size_t idx, size_t *len)
{
	(void)ud;
	static const char *r[] = {"<ONE>", "<TWO-LONGER>"};
	*len = strlen(r[idx]);
	return (const unsigned char *)r[idx];
}

static int emit_bytes(void *ud, const unsigned char *p, size_t n)
{
	return sbx_bytes_append(ud, p, n);
}

START_TEST(scanner_replaces_across_every_split)
{
	const struct sbx_scan_pattern pats[] = {{(const unsigned char *)"needle", 6},
						{(const unsigned char *)"haystack-pin", 12}};
	const char *in = "xxneedlexhaystack-pinneedleneedl haystack-pi needle";
	const char *want = "xx<ONE>x<TWO-LONGER><ONE>needl haystack-pi <ONE>";
	for (size_t step = 1; step <= strlen(in); step++) {
		struct sbx_bytes out = {0};
		struct sbx_scan s;
		ck_assert_int_eq(sbx_scan_init(&s, pats, 2, swap_replace, emit_bytes, &out), 0);
		for (size_t i = 0; i < strlen(in); i += step) {
			size_t n = strlen(in) - i < step ? strlen(in) - i : step;
			ck_assert_int_eq(sbx_scan_feed(&s, in + i, n), 0);
		}
		ck_assert_int_eq(sbx_scan_flush(&s), 0);
		ck_assert_str_eq(str(&out), want);
		sbx_scan_free(&s);
		sbx_bytes_free(&out);
	}
}
END_TEST

START_TEST(config_rejects_bad_values)
{
	setup_secrets();
	struct sbx_http_secret bad = {"X", ph_key, (const unsigned char *)"a\r\nInjected: 1", 14,
				      0};
	struct sbx_http_config cfg = {.secrets = &bad, .n_secrets = 1, .decide = decide};
	struct sbx_http_conn *c;
	char err[200];
	ck_assert_int_eq(sbx_http_conn_new(&c, &cfg, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "CR, LF"));
	bad.value_len = 0;
	ck_assert_int_eq(sbx_http_conn_new(&c, &cfg, err, sizeof err), -1);
	cfg.decide = NULL;
	ck_assert_int_eq(sbx_http_conn_new(&c, &cfg, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "decision"));
}
END_TEST

static void check_substituted_request(struct harness *h)
{
	char *up = str(&h->up);
	char want[512];
	snprintf(want, sizeof want, "GET /v1/models?key=%s&x=1 HTTP/1.1\r\n", KEY_VALUE);
	ck_assert_msg(strncmp(up, want, strlen(want)) == 0, "got %s", up);
	snprintf(want, sizeof want, "X-Api-Key: Bearer %s\r\n", KEY_VALUE);
	ck_assert_ptr_nonnull(strstr(up, want));
	snprintf(want, sizeof want, "Authorization: Basic %s\r\n", b64("user:" KEY_VALUE));
	ck_assert_msg(strstr(up, want) != NULL, "no basic in %s", up);
	ck_assert_ptr_null(strstr(up, ph_key));
	ck_assert_ptr_nonnull(strstr(up, "Accept: */*\r\n\r\n"));
}

START_TEST(substitutes_target_headers_and_basic_for_allowed_host)
{
	for (size_t step = 1; step <= 4096; step *= 4096) {
		struct harness h;
		harness_init(&h, 1, 0);
		const char *req = request_with_placeholders();
		ck_assert_uint_eq(feed_s(&h, 1, req, step), strlen(req));
		check_substituted_request(&h);
		ck_assert_str_eq(h.last_host, "api.example.test");
		ck_assert_ptr_null(strstr(str(&h.log), "MIS"));
		const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
		ck_assert_uint_eq(feed_s(&h, 0, resp, step), strlen(resp));
		ck_assert_str_eq(str(&h.guest), resp);
		ck_assert_msg(strstr(str(&h.log),
				     "REQ GET https://api.example.test:443/v1/models 200") != NULL,
			      "%s", str(&h.log));
		ck_assert_ptr_nonnull(strstr(str(&h.log), "used=API_KEY "));
		ck_assert_ptr_nonnull(strstr(str(&h.log), "down=40 "));
		ck_assert_uint_eq(sbx_http_flags(h.c), 0);
		harness_free(&h);
	}
}
END_TEST

START_TEST(misdirected_placeholders_go_out_unchanged_and_are_reported)
{
	struct harness h;
	harness_init(&h, 0, 0);
	const char *req = request_with_placeholders();
	ck_assert_uint_eq(feed_s(&h, 1, req, 7), strlen(req));
	ck_assert_str_eq(str(&h.up), req);
	char *log = str(&h.log);
	ck_assert_ptr_nonnull(strstr(log, "MIS API_KEY target /v1/models\n"));
	ck_assert_ptr_nonnull(strstr(log, "MIS API_KEY header:X-Api-Key /v1/models\n"));
	ck_assert_ptr_nonnull(strstr(log, "MIS API_KEY header:Authorization (Basic) /v1/models"));
	harness_free(&h);
}
END_TEST

START_TEST(misdirected_block_option_answers_403)
{
	struct harness h;
	harness_init(&h, 0, 1);
	const char *req = request_with_placeholders();
	feed_s(&h, 1, req, 100);
	ck_assert_uint_eq(h.up.len, 0);
	char *g = str(&h.guest);
	ck_assert_msg(strncmp(g, "HTTP/1.1 403 Forbidden\r\n", 24) == 0, "%s", g);
	ck_assert_ptr_nonnull(strstr(g, "not one of that secret's hosts"));
	ck_assert_ptr_nonnull(strstr(str(&h.log), "blocked"));
	ck_assert_ptr_nonnull(
	    strstr(str(&h.log), "REQ GET https://api.example.test:443/v1/models 403"));
	ck_assert_uint_eq(sbx_http_flags(h.c) & SBX_HTTP_CLOSE_GUEST, SBX_HTTP_CLOSE_GUEST);
	harness_free(&h);
}
END_TEST

START_TEST(misdirected_in_body_with_block_drops_upstream)
{
	struct harness h;
	harness_init(&h, 0, 1);
	char req[1024];
	snprintf(req, sizeof req,
		 "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n{\"k\":\"%s\"}",
		 strlen(ph_body) + 8, ph_body);
	feed_s(&h, 1, req, 5);
	ck_assert_ptr_null(strstr(str(&h.up), ph_body));
	ck_assert_ptr_nonnull(strstr(str(&h.guest), "403 Forbidden"));
	ck_assert(sbx_http_flags(h.c) & SBX_HTTP_CLOSE_UPSTREAM);
	ck_assert_ptr_nonnull(strstr(str(&h.log), "MIS BODY_TOKEN body /p blocked"));
	harness_free(&h);
}
END_TEST

START_TEST(decision_block_gives_status_and_reason)
{
	struct harness h;
	harness_init(&h, 0, 0);
	h.block_status = 451;
	feed_s(&h, 1, "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", 64);
	ck_assert_uint_eq(h.up.len, 0);
	char *g = str(&h.guest);
	ck_assert_msg(strncmp(g, "HTTP/1.1 451 ", 13) == 0, "%s", g);
	ck_assert_ptr_nonnull(strstr(g, "host evil.example is not allowed"));
	ck_assert_ptr_nonnull(strstr(str(&h.log), "451 up="));
	ck_assert(sbx_http_flags(h.c) & SBX_HTTP_CLOSE_GUEST);
	harness_free(&h);
}
END_TEST

START_TEST(body_substitution_fixes_content_length)
{
	struct harness h;
	harness_init(&h, 3, 0);
	char body[512], req[1024], want[1024];
	snprintf(body, sizeof body, "{\"token\":\"%s\",\"key\":\"%s\"}", ph_body, ph_key);
	snprintf(req, sizeof req, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(body), body);
	feed_s(&h, 1, req, 1);
	/* API_KEY is not opted in for bodies: its placeholder stays */
	snprintf(body, sizeof body, "{\"token\":\"%s\",\"key\":\"%s\"}", BODY_VALUE, ph_key);
	snprintf(want, sizeof want, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(body), body);
	ck_assert_str_eq(str(&h.up), want);
	harness_free(&h);
}
END_TEST

START_TEST(body_substitution_chunked_and_expect_continue)
{
	struct harness h;
	harness_init(&h, 2, 0);
	char req[1024];
	/* chunked, the placeholder split over two chunks */
	size_t half = strlen(ph_body) / 2;
	snprintf(req, sizeof req,
		 "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
		 "%zx\r\na=%.*s\r\n%zx\r\n%s\r\n0\r\n\r\n",
		 half + 2, (int)half, ph_body, strlen(ph_body + half), ph_body + half);
	feed_s(&h, 1, req, 3);
	char *up = str(&h.up);
	ck_assert_ptr_nonnull(strstr(up, "Transfer-Encoding: chunked\r\n\r\n"));
	ck_assert_ptr_null(strstr(up, ph_body));
	ck_assert_ptr_nonnull(strstr(up, "0\r\n\r\n"));
	/* decode what went upstream and compare */
	char *p = strstr(up, "\r\n\r\n") + 4, dec[512] = "";
	for (;;) {
		unsigned long n = strtoul(p, &p, 16);
		p += 2;
		if (!n)
			break;
		strncat(dec, p, n);
		p += n + 2;
	}
	ck_assert_str_eq(dec, "a=" BODY_VALUE);
	feed_s(&h, 0, "HTTP/1.1 204 No Content\r\n\r\n", 100);

	/* Content-Length + Expect: 100-continue -> streamed as chunked at once */
	sbx_bytes_consume(&h.up, h.up.len);
	snprintf(
	    req, sizeof req,
	    "PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: %zu\r\n\r\n",
	    strlen(ph_body));
	feed_s(&h, 1, req, 1000);
	up = str(&h.up);
	ck_assert_ptr_nonnull(
	    strstr(up, "Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"));
	ck_assert_ptr_null(strstr(up, "Content-Length"));
	feed_s(&h, 0, "HTTP/1.1 100 Continue\r\n\r\n", 100);
	ck_assert_ptr_nonnull(strstr(str(&h.guest), "HTTP/1.1 100 Continue\r\n\r\n"));
	feed_s(&h, 1, ph_body, 1);
	char want[128];
	snprintf(want, sizeof want, "%zx\r\n%s\r\n", strlen(BODY_VALUE), BODY_VALUE);
	ck_assert_msg(strstr(str(&h.up), want) != NULL, "%s", str(&h.up));
	ck_assert_ptr_nonnull(strstr(str(&h.up), "0\r\n\r\n"));
	feed_s(&h, 0, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 100);
	ck_assert_ptr_nonnull(strstr(str(&h.log), "REQ PUT https://api.example.test:443/e 201"));
	ck_assert_ptr_nonnull(strstr(str(&h.log), "used=BODY_TOKEN"));
	harness_free(&h);
}
END_TEST

/* Bodies too large to buffer for an exact length switch to streaming
 * framing: chunked for HTTP/1.1, close-delimited (responses) or 413
 * (requests) for HTTP/1.0. */
START_TEST(large_bodies_with_length_change_are_reframed)
{
	const size_t big = 3u << 20;
	char *body = malloc(big);
	memset(body, 'q', big);
	struct harness h;
	harness_init(&h, 2, 0);
	memcpy(body + big / 2, ph_body, strlen(ph_body));
	char head[160];
	snprintf(head, sizeof head, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n",
		 big);
	feed_s(&h, 1, head, 4096);
	ck_assert_uint_eq(feed(&h, 1, body, big, 65536), big);
	char *up = str(&h.up);
	ck_assert_ptr_nonnull(strstr(up, "Transfer-Encoding: chunked\r\n\r\n"));
	ck_assert_ptr_null(strstr(up, "Content-Length"));
	ck_assert_ptr_null(memmem(up, h.up.len, ph_body, strlen(ph_body)));
	ck_assert_ptr_nonnull(memmem(up, h.up.len, BODY_VALUE, strlen(BODY_VALUE)));
	ck_assert_int_eq(memcmp(up + h.up.len - 5, "0\r\n\r\n", 5), 0);
	/* a small body with the same change keeps an exact length */
	feed_s(&h, 0, "HTTP/1.1 204 No Content\r\n\r\n", 4096);
	harness_free(&h);

	/* HTTP/1.0: cannot be chunked -> 413, nothing of it upstream */
	harness_init(&h, 2, 0);
	snprintf(head, sizeof head, "POST /up HTTP/1.0\r\nContent-Length: %zu\r\n\r\n", big);
	feed_s(&h, 1, head, 4096);
	feed(&h, 1, body, big, 65536);
	ck_assert_ptr_nonnull(strstr(str(&h.guest), "HTTP/1.1 413 "));
	ck_assert_uint_eq(h.up.len, 0);
	harness_free(&h);

	/* HTTP/1.0 response carrying a value, too big to buffer: close-delimited */
	harness_init(&h, 1, 0);
	memcpy(body + big / 2, KEY_VALUE, strlen(KEY_VALUE));
	feed_s(&h, 1, "GET /down HTTP/1.0\r\n\r\n", 4096);
	snprintf(head, sizeof head, "HTTP/1.0 200 OK\r\nContent-Length: %zu\r\n\r\n", big);
	feed_s(&h, 0, head, 4096);
	ck_assert_uint_eq(feed(&h, 0, body, big, 65536), big);
	drain(&h);
	char *g = str(&h.guest);
	ck_assert_ptr_nonnull(strstr(g, "Connection: close\r\n\r\n"));
	ck_assert_ptr_null(strstr(g, "Content-Length"));
	ck_assert_ptr_nonnull(memmem(g, h.guest.len, ph_key, strlen(ph_key)));
	ck_assert(sbx_http_flags(h.c) & SBX_HTTP_CLOSE_GUEST);
	ck_assert_ptr_null(memmem(g, h.guest.len, KEY_VALUE, strlen(KEY_VALUE)));
	h.guest.len = 0; /* checked above with memmem (the body is not a C string) */
	harness_free(&h);
	free(body);
}
END_TEST

START_TEST(pipelined_requests_and_head)
{
	struct harness h;
	harness_init(&h, 1, 0);
	const char *reqs = "HEAD /a HTTP/1.1\r\nHost: a\r\n\r\n"
			   "GET /b HTTP/1.1\r\nHost: a\r\n\r\n"
			   "POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
	ck_assert_uint_eq(feed_s(&h, 1, reqs, 4096), strlen(reqs));
	ck_assert_str_eq(str(&h.up), reqs);
	ck_assert_int_eq(h.decisions, 3);
	/* HEAD's answer announces a length but has no body */
	const char *resps =
	    "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
	    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n";
	ck_assert_uint_eq(feed_s(&h, 0, resps, 4096), strlen(resps));
	ck_assert_str_eq(str(&h.guest), resps);
	char *log = str(&h.log);
	ck_assert_ptr_nonnull(strstr(log, "REQ HEAD https://api.example.test:443/a 200"));
	ck_assert_ptr_nonnull(strstr(log, "REQ GET https://api.example.test:443/b 200"));
	ck_assert_ptr_nonnull(strstr(log, "REQ POST https://api.example.test:443/c 200"));
	harness_free(&h);
}
END_TEST

START_TEST(connection_close_response_ends_the_exchange)
{
	struct harness h;
	harness_init(&h, 0, 0);
	const char *reqs = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
	feed_s(&h, 1, reqs, 4096);
	feed_s(&h, 0, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", 4096);
	ck_assert_uint_eq(sbx_http_flags(h.c) & (SBX_HTTP_CLOSE_GUEST | SBX_HTTP_CLOSE_UPSTREAM),
			  SBX_HTTP_CLOSE_GUEST | SBX_HTTP_CLOSE_UPSTREAM);
	/* a request after that goes nowhere */
	sbx_bytes_consume(&h.up, h.up.len);
	feed_s(&h, 1, "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n", 4096);
	ck_assert_uint_eq(h.up.len, 0);
	ck_assert_ptr_nonnull(strstr(str(&h.guest), "\r\n\r\nx"));
	harness_free(&h);
}
END_TEST

START_TEST(http10_close_delimited_response_with_echo)
{
	struct harness h;
	harness_init(&h, 1, 0);
	feed_s(&h, 1, "GET /old HTTP/1.0\r\nHost: a\r\n\r\n", 1);
	ck_assert_str_eq(str(&h.up), "GET /old HTTP/1.0\r\nHost: a\r\n\r\n");
	const char *resp =
	    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nyour key: " KEY_VALUE " end";
	feed_s(&h, 0, resp, 1);
	sbx_http_response_eof(h.c);
	drain(&h);
	char want[512];
	snprintf(want, sizeof want,
		 "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nyour key: %s end", ph_key);
	ck_assert_str_eq(str(&h.guest), want);
	ck_assert(sbx_http_flags(h.c) & SBX_HTTP_CLOSE_GUEST);
	ck_assert_ptr_nonnull(strstr(str(&h.log), "REQ GET https://api.example.test:443/old 200"));
	harness_free(&h);
}
END_TEST

START_TEST(echo_protection_headers_and_content_length_body)
{
	for (size_t step = 1; step <= 4096; step *= 4096) {
		struct harness h;
		harness_init(&h, 1, 0);
		feed_s(&h, 1, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", step);
		char resp[1024], want[1024], body[256], wbody[256];
		snprintf(body, sizeof body, "{\"echo\":\"Bearer %s\",\"b\":\"%s\"}", KEY_VALUE,
			 BODY_VALUE);
		snprintf(resp, sizeof resp,
			 "HTTP/1.1 200 OK %s\r\nX-Echo-Authorization: Bearer %s\r\n"
			 "Content-Length: %zu\r\n\r\n%s",
			 KEY_VALUE, KEY_VALUE, strlen(body), body);
		feed_s(&h, 0, resp, step);
		snprintf(wbody, sizeof wbody, "{\"echo\":\"Bearer %s\",\"b\":\"%s\"}", ph_key,
			 ph_body);
		snprintf(want, sizeof want,
			 "HTTP/1.1 200 OK %s\r\nX-Echo-Authorization: Bearer %s\r\n"
			 "Content-Length: %zu\r\n\r\n%s",
			 ph_key, ph_key, strlen(wbody), wbody);
		ck_assert_str_eq(str(&h.guest), want);
		harness_free(&h);
	}
}
END_TEST

/* A server echoing the Authorization header would hand back base64 that
 * decodes to the value: the guest must get its own credentials back. */
START_TEST(echo_protection_basic_credentials)
{
	struct harness h;
	harness_init(&h, 1, 0);
	char user[128], guest_b64[256], real_b64[256], req[512], resp[1024];
	snprintf(user, sizeof user, "me:%s", ph_key);
	snprintf(guest_b64, sizeof guest_b64, "%s", b64(user));
	snprintf(real_b64, sizeof real_b64, "%s", b64("me:" KEY_VALUE));
	snprintf(req, sizeof req,
		 "GET /echo HTTP/1.1\r\nHost: a\r\nAuthorization: Basic %s\r\n\r\n", guest_b64);
	feed_s(&h, 1, req, 4096);
	ck_assert_ptr_nonnull(strstr(str(&h.up), real_b64));
	char body[512];
	snprintf(body, sizeof body, "{\"headers\":{\"Authorization\":\"Basic %s\"}}", real_b64);
	snprintf(resp, sizeof resp,
		 "HTTP/1.1 200 OK\r\nX-Echo: Basic %s\r\nContent-Length: %zu\r\n\r\n%s", real_b64,
		 strlen(body), body);
	feed_s(&h, 0, resp, 1);
	char *g = str(&h.guest);
	ck_assert_ptr_null(strstr(g, real_b64));
	char want[300];
	snprintf(want, sizeof want, "X-Echo: Basic %s\r\n", guest_b64);
	ck_assert_msg(strstr(g, want) != NULL, "%s", g);
	snprintf(want, sizeof want, "\"Authorization\":\"Basic %s\"", guest_b64);
	ck_assert_msg(strstr(g, want) != NULL, "%s", g);
	harness_free(&h);
}
END_TEST

START_TEST(echo_protection_chunked_and_compressed)
{
	struct harness h;
	harness_init(&h, 1, 0);
	feed_s(&h, 1, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", 9);
	char resp[1024];
	snprintf(resp, sizeof resp,
		 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n%.5s\r\n%zx\r\n%s\r\n"
		 "0\r\n\r\n"
		 "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n%s",
		 KEY_VALUE, strlen(KEY_VALUE) - 5, KEY_VALUE + 5, strlen(KEY_VALUE), KEY_VALUE);
	feed_s(&h, 0, resp, 1);
	char *g = str(&h.guest);
	/* chunked: re-chunked with the placeholder */
	char want[256];
	snprintf(want, sizeof want, "%zx\r\n%s\r\n0\r\n\r\n", strlen(ph_key), ph_key);
	ck_assert_msg(strstr(g, want) != NULL, "%s", g);
	/* compressed bodies pass unchanged: the documented limit */
	char *second = strstr(g, "Content-Encoding: gzip");
	ck_assert_ptr_nonnull(second);
	ck_assert_ptr_nonnull(strstr(second, KEY_VALUE));
	/* (cleared so that harness_free's check is about the rest) */
	h.guest.len = (size_t)(second - g);
	harness_free(&h);
}
END_TEST

START_TEST(websocket_upgrade_passes_through)
{
	struct harness h;
	harness_init(&h, 1, 0);
	const char *req =
	    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
	char full[1024];
	snprintf(full, sizeof full, "%s\x81\x05hello%s", req, ph_key);
	size_t took = feed_s(&h, 1, full, 4096);
	/* the frames after the head wait for the server's answer */
	ck_assert_uint_eq(took, strlen(req));
	ck_assert_str_eq(str(&h.up), req);
	const char *resp =
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
	    "\r\n\x81\x02hi";
	ck_assert_uint_eq(feed_s(&h, 0, resp, 7), strlen(resp));
	ck_assert_str_eq(str(&h.guest), resp);
	ck_assert(sbx_http_flags(h.c) & SBX_HTTP_PASSTHROUGH);
	feed_s(&h, 1, full + took, 3);
	char *up = str(&h.up) + strlen(req);
	ck_assert_str_eq(up, full + took); /* untouched, placeholder included */
	ck_assert_ptr_nonnull(strstr(str(&h.log), "REQ GET https://api.example.test:443/ws 101"));
	harness_free(&h);
}
END_TEST

START_TEST(refused_upgrade_continues_as_http)
{
	struct harness h;
	harness_init(&h, 1, 0);
	const char *req =
	    "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	    "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
	size_t took = feed_s(&h, 1, req, 4096);
	ck_assert_uint_lt(took, strlen(req));
	feed_s(&h, 0, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", 4096);
	ck_assert_uint_eq(feed_s(&h, 1, req + took, 4096), strlen(req) - took);
	ck_assert_str_eq(str(&h.up), req);
	ck_assert_int_eq(h.decisions, 2);
	harness_free(&h);
}
END_TEST

START_TEST(oversized_head_gets_431_and_garbage_400)
{
	struct harness h;
	harness_init(&h, 0, 0);
	feed_s(&h, 1, "GET / HTTP/1.1\r\nHost: a\r\n", 100);
	char line[1024];
	memset(line, 'a', sizeof line);
	memcpy(line, "X-Big: ", 7);
	memcpy(line + sizeof line - 2, "\r\n", 2);
	for (int i = 0; i < 80 && !(sbx_http_flags(h.c) & SBX_HTTP_CLOSE_GUEST); i++)
		feed(&h, 1, line, sizeof line, sizeof line);
	ck_assert_ptr_nonnull(strstr(str(&h.guest), "HTTP/1.1 431 "));
	ck_assert_uint_eq(h.up.len, 0);
	harness_free(&h);

	harness_init(&h, 0, 0);
	feed_s(&h, 1, "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	       100);
	ck_assert_ptr_nonnull(strstr(str(&h.guest), "HTTP/1.1 400 "));
	ck_assert_uint_eq(h.up.len, 0);
	harness_free(&h);

	const char *smuggle[] = {
	    "GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: a\r\nHost: evil.example\r\n\r\n",
	    "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
	};
	for (int i = 0; i < 3; i++) {
		harness_init(&h, 0, 0);
		feed_s(&h, 1, smuggle[i], 100);
		ck_assert_msg(strstr(str(&h.guest), "HTTP/1.1 400 ") != NULL, "%d", i);
		ck_assert_uint_eq(h.up.len, 0);
		harness_free(&h);
	}

	harness_init(&h, 0, 0);
	feed_s(&h, 1, "\x16\x03\x01\x02\x00garbage", 100);
	ck_assert_ptr_nonnull(strstr(str(&h.guest), "HTTP/1.1 400 "));
	harness_free(&h);
}
END_TEST

START_TEST(upstream_eof_before_response_gives_502)
{
	struct harness h;
	harness_init(&h, 0, 0);
	feed_s(&h, 1, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 100);
	sbx_http_response_eof(h.c);
	drain(&h);
	ck_assert_ptr_nonnull(strstr(str(&h.guest), "HTTP/1.1 502 Bad Gateway"));
	ck_assert_ptr_nonnull(strstr(str(&h.log), "/x 502"));
	ck_assert(sbx_http_flags(h.c) & SBX_HTTP_CLOSE_GUEST);
	harness_free(&h);

	/* a response nobody asked for */
	harness_init(&h, 0, 0);
	feed_s(&h, 0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 100);
	ck_assert(sbx_http_flags(h.c) & SBX_HTTP_CLOSE_GUEST);
	harness_free(&h);
}
END_TEST

START_TEST(upstream_failure_answers_502_with_reason)
{
	/* before the guest sent anything: its first request gets the 502 */
	struct harness h;
	harness_init(&h, 1, 0);
	sbx_http_upstream_failed(h.c,
				 "upstream certificate verify failed: certificate has expired");
	feed_s(&h, 1, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 100);
	char *g = str(&h.guest);
	ck_assert_msg(strncmp(g, "HTTP/1.1 502 Bad Gateway\r\n", 26) == 0, "%s", g);
	ck_assert_ptr_nonnull(strstr(g, "certificate has expired"));
	ck_assert_uint_eq(h.up.len, 0);
	ck_assert_ptr_nonnull(strstr(str(&h.log), "/x 502"));
	ck_assert(sbx_http_flags(h.c) & SBX_HTTP_CLOSE_GUEST);
	harness_free(&h);

	/* with a request waiting for its answer */
	harness_init(&h, 1, 0);
	feed_s(&h, 1, "GET /y HTTP/1.1\r\nHost: a\r\n\r\n", 100);
	sbx_http_upstream_failed(h.c, "connection refused");
	drain(&h);
	ck_assert_ptr_nonnull(strstr(str(&h.guest), "502 Bad Gateway"));
	ck_assert_ptr_nonnull(strstr(str(&h.guest), "connection refused"));
	ck_assert_ptr_nonnull(strstr(str(&h.log), "/y 502"));
	harness_free(&h);
}
END_TEST

/* 200 MiB each way through one connection: memory stays bounded. */
START_TEST(large_bodies_stream_in_bounded_memory)
{
	struct harness h;
	harness_init(&h, 1, 0);
	const uint64_t total = 200ull << 20;
	char head[128];
	snprintf(head, sizeof head, "PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: %llu\r\n\r\n",
		 (unsigned long long)total);
	feed_s(&h, 1, head, 4096);
	static char block[65536];
	memset(block, 'z', sizeof block);
	uint64_t sent = 0, up_bytes = 0;
	while (sent < total) {
		size_t n = sbx_http_feed_request(h.c, block, sizeof block);
		const unsigned char *p;
		size_t out = sbx_http_peek_upstream(h.c, &p);
		up_bytes += out;
		sbx_http_consume_upstream(h.c, out);
		size_t mem = sbx_http_memory(h.c);
		if (mem > h.max_mem)
			h.max_mem = mem;
		ck_assert_uint_gt(n, 0);
		sent += n;
	}
	ck_assert_uint_eq(up_bytes, total);
	/* response: scanned (no compression), too big to buffer -> chunked */
	char rh[128];
	snprintf(rh, sizeof rh, "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\n\r\n",
		 (unsigned long long)total);
	feed_s(&h, 0, rh, 4096);
	uint64_t got = 0, down_raw = 0;
	sent = 0;
	memcpy(block + 1000, KEY_VALUE, strlen(KEY_VALUE));
	while (sent < total || sbx_http_peek_guest(h.c, &(const unsigned char *){0})) {
		size_t n =
		    sent < total
			? sbx_http_feed_response(
			      h.c, block, total - sent < sizeof block ? total - sent : sizeof block)
			: 0;
		sent += n;
		const unsigned char *p;
		size_t out = sbx_http_peek_guest(h.c, &p);
		ck_assert_ptr_null(memmem(p, out, KEY_VALUE, strlen(KEY_VALUE)));
		down_raw += out;
		sbx_http_consume_guest(h.c, out);
		size_t mem = sbx_http_memory(h.c);
		if (mem > h.max_mem)
			h.max_mem = mem;
		got += out;
	}
	ck_assert_uint_gt(down_raw, total);
	ck_assert_ptr_nonnull(strstr(str(&h.log), "REQ PUT https://api.example.test:443/big 200"));
	ck_assert_msg(h.max_mem < 4u << 20, "peak buffer memory %zu", h.max_mem);
	harness_free(&h);
}
END_TEST

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *t = tcase_create("http");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, placeholder_format_and_randomness);
	tcase_add_test(t, scanner_replaces_across_every_split);
	tcase_add_test(t, config_rejects_bad_values);
	tcase_add_test(t, substitutes_target_headers_and_basic_for_allowed_host);
	tcase_add_test(t, misdirected_placeholders_go_out_unchanged_and_are_reported);
	tcase_add_test(t, misdirected_block_option_answers_403);
	tcase_add_test(t, misdirected_in_body_with_block_drops_upstream);
	tcase_add_test(t, decision_block_gives_status_and_reason);
	tcase_add_test(t, body_substitution_fixes_content_length);
	tcase_add_test(t, body_substitution_chunked_and_expect_continue);
	tcase_add_test(t, large_bodies_with_length_change_are_reframed);
	tcase_add_test(t, pipelined_requests_and_head);
	tcase_add_test(t, connection_close_response_ends_the_exchange);
	tcase_add_test(t, http10_close_delimited_response_with_echo);
	tcase_add_test(t, echo_protection_headers_and_content_length_body);
	tcase_add_test(t, echo_protection_basic_credentials);
	tcase_add_test(t, echo_protection_chunked_and_compressed);
	tcase_add_test(t, websocket_upgrade_passes_through);
	tcase_add_test(t, refused_upgrade_continues_as_http);
	tcase_add_test(t, oversized_head_gets_431_and_garbage_400);
	tcase_add_test(t, upstream_eof_before_response_gives_502);
	tcase_add_test(t, upstream_failure_answers_502_with_reason);
	tcase_add_test(t, large_bodies_stream_in_bounded_memory);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(http_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
