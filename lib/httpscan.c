/* Streaming pattern replacement (httpscan.h). */
#include "httpscan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static int bytes_reserve(struct sbx_bytes *b, size_t n)
{
	if (b->off + b->len + n <= b->cap)
		return 0;
	if (b->off) { /* compact before growing */
		memmove(b->p, b->p + b->off, b->len);
		b->off = 0;
		if (b->len + n <= b->cap)
			return 0;
	}
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + n)
		cap *= 2;
	unsigned char *p = malloc(cap);
	if (!p)
		return -1;
	if (b->p) {
		memcpy(p, b->p, b->len);
		sbx_wipe(b->p, b->cap);
		free(b->p);
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

int sbx_bytes_append(struct sbx_bytes *b, const void *data, size_t n)
{
	if (n == 0)
		return 0;
	if (bytes_reserve(b, n) != 0)
		return -1;
	memcpy(b->p + b->off + b->len, data, n);
	b->len += n;
	return 0;
}

int sbx_bytes_printf(struct sbx_bytes *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof tmp)
		return -1;
	return sbx_bytes_append(b, tmp, (size_t)n);
}

unsigned char *sbx_bytes_data(const struct sbx_bytes *b)
{
	static unsigned char empty[1];
	return b->p ? b->p + b->off : empty;
}

void sbx_bytes_consume(struct sbx_bytes *b, size_t n)
{
	if (n > b->len)
		n = b->len;
	b->off += n;
	b->len -= n;
	if (b->len == 0)
		b->off = 0;
}

void sbx_bytes_free(struct sbx_bytes *b)
{
	if (b->p) {
		sbx_wipe(b->p, b->cap);
		free(b->p);
	}
	memset(b, 0, sizeof *b);
}

int sbx_scan_init(struct sbx_scan *s, const struct sbx_scan_pattern *pats, size_t npats,
		  sbx_scan_replace_fn replace, sbx_scan_emit_fn emit, void *ud)
{
	memset(s, 0, sizeof *s);
	s->pats = pats;
	s->npats = npats;
	s->replace = replace;
	s->emit = emit;
	s->ud = ud;
	s->maxlen = 1;
	for (size_t i = 0; i < npats; i++)
		if (pats[i].len > s->maxlen)
			s->maxlen = pats[i].len;
	s->work = malloc(s->maxlen + SBX_SCAN_CHUNK);
	return s->work ? 0 : -1;
}

int sbx_scan_set_patterns(struct sbx_scan *s, const struct sbx_scan_pattern *pats, size_t npats)
{
	if (s->hold)
		return -1;
	size_t maxlen = 1;
	for (size_t i = 0; i < npats; i++)
		if (pats[i].len > maxlen)
			maxlen = pats[i].len;
	if (maxlen > s->maxlen) {
		unsigned char *work = malloc(maxlen + SBX_SCAN_CHUNK);
		if (!work)
			return -1;
		sbx_scan_free(s);
		s->work = work;
		s->maxlen = maxlen;
	}
	s->pats = pats;
	s->npats = npats;
	return 0;
}

void sbx_scan_free(struct sbx_scan *s)
{
	if (s->work) {
		sbx_wipe(s->work, s->maxlen + SBX_SCAN_CHUNK);
		free(s->work);
	}
	s->work = NULL;
}

/* Earliest match at or after pos (longest on a tie); -1 if none. */
static long earliest_match(const struct sbx_scan *s, const unsigned char *buf, size_t len,
			   size_t pos, size_t *which)
{
	long best = -1;
	for (size_t i = 0; i < s->npats; i++) {
		const struct sbx_scan_pattern *p = &s->pats[i];
		const unsigned char *m = memmem(buf + pos, len - pos, p->bytes, p->len);
		if (!m)
			continue;
		long at = m - buf;
		if (best < 0 || at < best || (at == best && p->len > s->pats[*which].len)) {
			best = at;
			*which = i;
		}
	}
	return best;
}

/* Replace every complete match in work[0..len); emit all but the tail
 * that could still begin a match, which stays held back (unless final). */
static int scan_work(struct sbx_scan *s, size_t len, int final)
{
	size_t pos = 0, which = 0;
	long at;
	while (s->npats && (at = earliest_match(s, s->work, len, pos, &which)) >= 0) {
		const struct sbx_scan_pattern *p = &s->pats[which];
		size_t rlen = 0;
		const unsigned char *r = s->replace(s->ud, which, &rlen);
		if (s->emit(s->ud, s->work + pos, (size_t)at - pos) != 0)
			return -1;
		if (r ? s->emit(s->ud, r, rlen) : s->emit(s->ud, p->bytes, p->len))
			return -1;
		pos = (size_t)at + p->len;
	}
	size_t keep = final ? 0 : len - pos;
	if (keep > s->maxlen - 1)
		keep = s->maxlen - 1;
	if (s->emit(s->ud, s->work + pos, len - pos - keep) != 0)
		return -1;
	memmove(s->work, s->work + len - keep, keep);
	s->hold = keep;
	return 0;
}

int sbx_scan_feed(struct sbx_scan *s, const void *data, size_t len)
{
	const unsigned char *d = data;
	while (len) {
		size_t piece = len < SBX_SCAN_CHUNK ? len : SBX_SCAN_CHUNK;
		memcpy(s->work + s->hold, d, piece);
		if (scan_work(s, s->hold + piece, 0) != 0)
			return -1;
		d += piece;
		len -= piece;
	}
	return 0;
}

int sbx_scan_flush(struct sbx_scan *s)
{
	return scan_work(s, s->hold, 1);
}

static int emit_to_bytes(void *ud, const unsigned char *p, size_t n)
{
	return sbx_bytes_append(ud, p, n);
}

struct oneshot {
	sbx_scan_replace_fn replace;
	void *ud;
	struct sbx_bytes *out;
};

static const unsigned char *oneshot_replace(void *ud, size_t idx, size_t *len)
{
	struct oneshot *o = ud;
	return o->replace(o->ud, idx, len);
}

static int oneshot_emit(void *ud, const unsigned char *p, size_t n)
{
	struct oneshot *o = ud;
	return emit_to_bytes(o->out, p, n);
}

int sbx_scan_all(const struct sbx_scan_pattern *pats, size_t npats, sbx_scan_replace_fn replace,
		 void *ud, const void *in, size_t len, struct sbx_bytes *out)
{
	struct oneshot o = {replace, ud, out};
	struct sbx_scan s;
	if (sbx_scan_init(&s, pats, npats, oneshot_replace, oneshot_emit, &o) != 0)
		return -1;
	int rc = sbx_scan_feed(&s, in, len) == 0 && sbx_scan_flush(&s) == 0 ? 0 : -1;
	sbx_scan_free(&s);
	return rc;
}
