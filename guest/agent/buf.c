/* Growable byte queue (see buf.h). */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->head = b->tail = b->cap = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reset(struct buf *b)
{
	buf_free(b);
}

uint8_t *buf_reserve(struct buf *b, size_t n)
{
	size_t len = buf_len(b);
	if (b->cap - b->tail >= n)
		return b->data + b->tail;
	/* Slide the data down only when that copies no more than has been
	 * consumed since the last slide, so the cost stays linear. */
	if (b->head >= len && b->cap - len >= n) {
		memmove(b->data, b->data + b->head, len);
		b->head = 0;
		b->tail = len;
		return b->data + b->tail;
	}
	size_t cap = b->cap ? b->cap * 2 : 4096;
	while (cap - len < n)
		cap *= 2;
	uint8_t *p = malloc(cap);
	if (!p)
		return NULL;
	if (len)
		memcpy(p, b->data + b->head, len);
	free(b->data);
	b->data = p;
	b->cap = cap;
	b->head = 0;
	b->tail = len;
	return b->data + b->tail;
}

void buf_commit(struct buf *b, size_t n)
{
	b->tail += n;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	uint8_t *dst = buf_reserve(b, n);
	if (!dst)
		return -1;
	if (n)
		memcpy(dst, p, n);
	buf_commit(b, n);
	return 0;
}

void buf_consume(struct buf *b, size_t n)
{
	b->head += n;
	if (b->head == b->tail)
		b->head = b->tail = 0;
}
