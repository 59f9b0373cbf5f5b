/* Streaming find-and-replace of a small set of byte patterns, for secret
 * substitution (placeholder -> value toward upstream) and echo protection
 * (value -> placeholder toward the guest). Patterns may straddle feed
 * boundaries: the scanner holds back at most (longest pattern - 1) bytes,
 * so its memory is bounded by that plus one work chunk.
 *
 * Thread safety: one thread at a time per scanner. */
#ifndef SBX_HTTPSCAN_H
#define SBX_HTTPSCAN_H

#include <stddef.h>

/* Growable byte buffer with a read offset. */
struct sbx_bytes {
	unsigned char *p;
	size_t off, len, cap; /* data is p[off .. off+len) */
};
int sbx_bytes_append(struct sbx_bytes *b, const void *data, size_t n);
int sbx_bytes_printf(struct sbx_bytes *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sbx_bytes_consume(struct sbx_bytes *b, size_t n);
/* Start of the data (a valid pointer even when nothing was ever stored). */
unsigned char *sbx_bytes_data(const struct sbx_bytes *b);
/* Free the storage, wiping it first (it may have held secret values). */
void sbx_bytes_free(struct sbx_bytes *b);

struct sbx_scan_pattern {
	const unsigned char *bytes;
	size_t len; /* >= 1 */
};

/* What to put where pattern idx matched; return NULL to leave the matched
 * bytes unchanged. */
typedef const unsigned char *(*sbx_scan_replace_fn)(void *ud, size_t idx, size_t *len);
/* Receives output; returns 0, or -1 to stop (the feed then fails). */
typedef int (*sbx_scan_emit_fn)(void *ud, const unsigned char *p, size_t n);

#define SBX_SCAN_CHUNK 16384

struct sbx_scan {
	const struct sbx_scan_pattern *pats; /* borrowed */
	size_t npats, maxlen;
	unsigned char *work; /* held-back bytes, then the current chunk */
	size_t hold;
	sbx_scan_replace_fn replace;
	sbx_scan_emit_fn emit;
	void *ud;
};

/* npats may be 0 (then everything passes through). Returns 0 or -1. */
int sbx_scan_init(struct sbx_scan *s, const struct sbx_scan_pattern *pats, size_t npats,
		  sbx_scan_replace_fn replace, sbx_scan_emit_fn emit, void *ud);
void sbx_scan_free(struct sbx_scan *s);
/* Switch to a new pattern set between streams (nothing may be held back:
 * call it right after init or flush). Returns 0 or -1. */
int sbx_scan_set_patterns(struct sbx_scan *s, const struct sbx_scan_pattern *pats, size_t npats);
int sbx_scan_feed(struct sbx_scan *s, const void *data, size_t len);
/* End of stream: emit what is held back. The scanner can be reused. */
int sbx_scan_flush(struct sbx_scan *s);
/* One-shot: scan in[0..len) and append the result to out. */
int sbx_scan_all(const struct sbx_scan_pattern *pats, size_t npats, sbx_scan_replace_fn replace,
		 void *ud, const void *in, size_t len, struct sbx_bytes *out);

#endif
