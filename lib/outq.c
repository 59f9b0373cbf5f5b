/* Output queue: see outq.h. */
#include "outq.h"

#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define RING_SIZE SBX_PROTO_INITIAL_WINDOW

static int add_run(struct sbx_outq *q, int stream, size_t len)
{
	if (q->seg_n) {
		struct sbx_outq_seg *last = &q->segs[(q->seg_head + q->seg_n - 1) % q->seg_cap];
		if (last->stream == stream) {
			last->len += (uint32_t)len;
			return 0;
		}
	}
	if (q->seg_n == q->seg_cap) {
		size_t cap = q->seg_cap ? q->seg_cap * 2 : 16;
		struct sbx_outq_seg *s = malloc(cap * sizeof *s);
		if (!s)
			return -1;
		for (size_t i = 0; i < q->seg_n; i++)
			s[i] = q->segs[(q->seg_head + i) % q->seg_cap];
		free(q->segs);
		q->segs = s;
		q->seg_cap = cap;
		q->seg_head = 0;
	}
	q->segs[(q->seg_head + q->seg_n) % q->seg_cap] =
	    (struct sbx_outq_seg){.len = (uint32_t)len, .stream = (uint8_t)stream};
	q->seg_n++;
	return 0;
}

int sbx_outq_push(struct sbx_outq *q, int stream, const uint8_t *data, size_t len)
{
	if (len > RING_SIZE - q->used)
		return -1;
	if (!q->ring && !(q->ring = malloc(RING_SIZE)))
		return -1;
	if (add_run(q, stream, len))
		return -1;
	size_t wpos = (q->rpos + q->used) % RING_SIZE;
	size_t first = len < RING_SIZE - wpos ? len : RING_SIZE - wpos;
	memcpy(q->ring + wpos, data, first);
	memcpy(q->ring, data + first, len - first);
	q->used += len;
	return 0;
}

size_t sbx_outq_pop(struct sbx_outq *q, int *stream, uint8_t *buf, size_t cap)
{
	if (!q->seg_n)
		return 0;
	struct sbx_outq_seg *s = &q->segs[q->seg_head];
	size_t n = s->len < cap ? s->len : cap;
	*stream = s->stream;
	if (buf) {
		size_t first = n < RING_SIZE - q->rpos ? n : RING_SIZE - q->rpos;
		memcpy(buf, q->ring + q->rpos, first);
		memcpy(buf + first, q->ring, n - first);
	}
	q->rpos = (q->rpos + n) % RING_SIZE;
	q->used -= n;
	s->len -= (uint32_t)n;
	if (!s->len) {
		q->seg_head = (q->seg_head + 1) % q->seg_cap;
		q->seg_n--;
	}
	return n;
}

void sbx_outq_free(struct sbx_outq *q)
{
	free(q->ring);
	free(q->segs);
	memset(q, 0, sizeof *q);
}
