/* A command's queued output: the bytes in one ring (at most the credit we
 * granted, so at most SBX_PROTO_INITIAL_WINDOW) and, beside it, the run
 * lengths of stdout/stderr. Adjacent frames of the same stream merge, so
 * memory stays near the payload whatever frame sizes a guest chooses. */
#ifndef SBX_OUTQ_H
#define SBX_OUTQ_H

#include <stddef.h>
#include <stdint.h>

struct sbx_outq_seg {
	uint32_t len;
	uint8_t stream;
};

struct sbx_outq {
	uint8_t *ring; /* allocated on first push */
	size_t rpos, used;
	struct sbx_outq_seg *segs; /* ring of runs */
	size_t seg_cap, seg_head, seg_n;
};

/* Append; returns 0, or -1 when it does not fit the window or on OOM. */
int sbx_outq_push(struct sbx_outq *q, int stream, const uint8_t *data, size_t len);
/* Take up to cap bytes of the first run (buf NULL: discard). Returns the
 * count, with *stream set; 0 when empty. */
size_t sbx_outq_pop(struct sbx_outq *q, int *stream, uint8_t *buf, size_t cap);
static inline int sbx_outq_empty(const struct sbx_outq *q)
{
	return q->used == 0;
}
void sbx_outq_free(struct sbx_outq *q);

#endif
