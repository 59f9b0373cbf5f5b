/* Shared harness for the HTTP processor fuzz targets: two secrets with
 * fixed placeholders and values, a decision callback steered by the
 * input's first byte, and helpers that feed in pieces and drain output
 * like the proxy does. */
#ifndef FUZZ_HTTP_COMMON_H
#define FUZZ_HTTP_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http1.h"
#include "httpscan.h"

#define VAL0 "sk-REAL-7f3a"
#define VAL1 "tok-REAL-99"
#define PH0 "SBX_PH_KEY_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define PH1 "SBX_PH_TOK_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

struct fz {
	struct sbx_http_conn *c;
	struct sbx_bytes up, guest;
	uint64_t allow;
	int block;
};

static void fz_decide(void *ud, const struct sbx_http_request_info *req,
		      struct sbx_http_decision *d)
{
	struct fz *f = ud;
	/* touch everything the callback is given: it must all be in bounds */
	size_t sum =
	    strlen(req->method) + strlen(req->target) + (req->host ? strlen(req->host) : 0);
	for (size_t i = 0; i < req->n_headers; i++)
		for (size_t j = 0; j < req->headers[i].name_len + req->headers[i].value_len; j++)
			sum += j < req->headers[i].name_len
				   ? (unsigned char)req->headers[i].name[j]
				   : (unsigned char)req->headers[i]
					 .value[j - req->headers[i].name_len];
	(void)sum;
	if (f->block) {
		d->verdict = SBX_HTTP_BLOCK;
		d->status = 403;
		return;
	}
	d->secrets = f->allow;
}

/* Set when the fuzz input itself spells a value (the guest may send any
 * bytes it likes, values included: then seeing them is no leak). */
static int fz_input_has_value;

static void fz_event(void *ud, const struct sbx_http_event *ev)
{
	(void)ud;
	if (fz_input_has_value)
		return;
	const char *s[] = {ev->method, ev->path,	 ev->secret,
			   ev->where,  ev->secrets_used, ev->error};
	for (size_t i = 0; i < sizeof s / sizeof *s; i++)
		if (s[i] && (strstr(s[i], VAL0) || strstr(s[i], VAL1)))
			abort(); /* a real value in an event */
}

static struct sbx_http_secret fz_secrets[2] = {
    {"KEY", PH0, (const unsigned char *)VAL0, sizeof VAL0 - 1, 0},
    {"TOK", PH1, (const unsigned char *)VAL1, sizeof VAL1 - 1, 1},
};

static void fz_init(struct fz *f, uint8_t ctl)
{
	memset(f, 0, sizeof *f);
	f->allow = ctl & 3;
	f->block = (ctl & 0x80) != 0;
	struct sbx_http_config cfg = {.secrets = fz_secrets,
				      .n_secrets = 2,
				      .scheme = "https",
				      .host = "h.example.test",
				      .port = 443,
				      .block_misdirected = (ctl & 4) != 0,
				      .decide = fz_decide,
				      .event = fz_event,
				      .userdata = f};
	char err[128];
	if (sbx_http_conn_new(&f->c, &cfg, err, sizeof err) != 0)
		abort();
}

static void fz_drain(struct fz *f)
{
	const unsigned char *p;
	size_t n = sbx_http_peek_upstream(f->c, &p);
	/* keep only a tail: enough to see a value straddling drains */
	sbx_bytes_append(&f->up, p, n);
	sbx_http_consume_upstream(f->c, n);
	n = sbx_http_peek_guest(f->c, &p);
	sbx_bytes_append(&f->guest, p, n);
	sbx_http_consume_guest(f->c, n);
	if (sbx_http_memory(f->c) > 8u << 20)
		abort(); /* buffers must stay bounded */
}

static void fz_feed(struct fz *f, int request, const uint8_t *d, size_t len, size_t step)
{
	size_t done = 0;
	int stuck = 0;
	while (done < len && stuck < 2) {
		size_t n = len - done < step ? len - done : step;
		size_t took = request ? sbx_http_feed_request(f->c, d + done, n)
				      : sbx_http_feed_response(f->c, d + done, n);
		if (took > n)
			abort();
		fz_drain(f);
		done += took;
		stuck = took ? 0 : stuck + 1;
	}
}

static int fz_contains(const struct sbx_bytes *b, const char *s)
{
	return memmem(sbx_bytes_data(b), b->len, s, strlen(s)) != NULL;
}

static int fz_input_contains(const uint8_t *d, size_t n, const char *s)
{
	return memmem(d, n, s, strlen(s)) != NULL;
}

static void fz_set_input(const uint8_t *d, size_t n)
{
	fz_input_has_value = fz_input_contains(d, n, VAL0) || fz_input_contains(d, n, VAL1);
}

static void fz_free(struct fz *f)
{
	sbx_http_conn_free(f->c);
	sbx_bytes_free(&f->up);
	sbx_bytes_free(&f->guest);
}

#endif
