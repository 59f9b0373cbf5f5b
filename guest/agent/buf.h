/* Growable byte queue: append at the tail, consume at the head. Used for
 * the outgoing frame queue, the incoming frame buffer and per-command
 * stdin queues. Callers bound its size; it never limits itself. */
#ifndef AGENT_BUF_H
#define AGENT_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t head; /* first unconsumed byte */
	size_t tail; /* one past the last byte */
	size_t cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
static inline size_t buf_len(const struct buf *b)
{
	return b->tail - b->head;
}
static inline const uint8_t *buf_peek(const struct buf *b)
{
	return b->data + b->head;
}
/* Room for n more bytes at the tail; NULL only on allocation failure.
 * Invalidates pointers previously returned by buf_peek. */
uint8_t *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *p, size_t n);
void buf_consume(struct buf *b, size_t n);
/* Empty it and give the memory back (a big burst must not pin memory). */
void buf_reset(struct buf *b);

#endif
