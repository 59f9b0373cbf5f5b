/* File streams, host side (doc/protocol.md, "File streams"): the I/O
 * thread's half, which only checks and queues what the agent sends
 * (bounded by the credit we granted), and the calling thread's half:
 * opening a stream, taking records with credit returned as they are
 * consumed, sending within the agent's credit, cancelling. files.c and
 * volumes.c build the API on it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "files.h"
#include "sandbox_int.h"
#include "util.h"

/* Queue of what the agent sent on one stream: records of u8 type, u32
 * length, payload. Each record is smaller than the credit its frame used
 * (length + SBX_FILE_FRAME_COST), so the ring never holds more than the
 * window. */
#define RING_SIZE SBX_PROTO_INITIAL_WINDOW
#define REC_HDR 5u
/* Return consumed credit in batches. */
#define WINDOW_BATCH (64u * 1024u)
/* A stream with no frame from the agent for this long is broken. */
#define STALL_MS 300000

struct sbx_xfer {
	struct sbx_xfer *next;
	struct sandbox *sb;
	uint32_t stream;
	uint8_t *ring;
	size_t rpos, used;
	uint32_t out_credit; /* bytes the agent may still send us */
	uint32_t unacked;    /* consumed, not yet returned with WINDOW */
	uint64_t in_credit;  /* bytes we may still send */
	int64_t last_frame_ms;
	int ended; /* END or ERROR arrived: the agent sends nothing more */
	int err;   /* errno of an ERROR, else 0 */
	char msg[256];
};

struct sbx_xfer *sbx_xfer_find_locked(struct sandbox *sb, uint32_t stream)
{
	for (struct sbx_xfer *x = sb->xfers; x; x = x->next)
		if (x->stream == stream)
			return x;
	return NULL;
}

static void ring_put(struct sbx_xfer *x, const uint8_t *p, size_t n)
{
	size_t wpos = (x->rpos + x->used) % RING_SIZE;
	size_t first = n < RING_SIZE - wpos ? n : RING_SIZE - wpos;
	memcpy(x->ring + wpos, p, first);
	memcpy(x->ring, p + first, n - first);
	x->used += n;
}

static void ring_get(struct sbx_xfer *x, uint8_t *p, size_t n)
{
	size_t first = n < RING_SIZE - x->rpos ? n : RING_SIZE - x->rpos;
	memcpy(p, x->ring + x->rpos, first);
	memcpy(p + first, x->ring, n - first);
	x->rpos = (x->rpos + n) % RING_SIZE;
	x->used -= n;
}

static int queue_frame(struct sbx_xfer *x, const struct sbx_frame_hdr *h, const uint8_t *pl,
		       char *why, size_t cap)
{
	uint32_t cost = h->len + SBX_FILE_FRAME_COST;
	if (cost > x->out_credit)
		return snprintf(why, cap, "agent sent %u bytes on file stream %u with %u of credit",
				cost, x->stream, x->out_credit),
		       -1;
	if (h->type == SBX_T_FILE_DATA && h->len == 0)
		return snprintf(why, cap, "empty FILE_DATA"), -1;
	struct sbx_file_entry e;
	if (h->type == SBX_T_FILE_ENTRY && sbx_file_entry_decode(pl, h->len, &e))
		return snprintf(why, cap, "malformed FILE_ENTRY"), -1;
	if (REC_HDR + h->len > RING_SIZE - x->used)
		return snprintf(why, cap, "file stream queue overflow"), -1; /* cannot happen */
	x->out_credit -= cost;
	uint8_t rh[REC_HDR] = {h->type, (uint8_t)h->len, (uint8_t)(h->len >> 8),
			       (uint8_t)(h->len >> 16), (uint8_t)(h->len >> 24)};
	ring_put(x, rh, REC_HDR);
	ring_put(x, pl, h->len);
	return 0;
}

int sbx_files_on_frame_locked(struct sandbox *sb, struct sbx_xfer *x, const struct sbx_frame_hdr *h,
			      const uint8_t *pl, char *why, size_t cap)
{
	(void)sb;
	struct sbx_rd r;
	sbx_rd_init(&r, pl, h->len);
	if (x->ended)
		return snprintf(why, cap, "frame type 0x%02x after the end of file stream %u",
				h->type, x->stream),
		       -1;
	x->last_frame_ms = sbx_now_ms();
	switch (h->type) {
	case SBX_T_FILE_ENTRY:
	case SBX_T_FILE_DATA:
		if (!x->ring && !(x->ring = malloc(RING_SIZE)))
			return snprintf(why, cap, "out of memory"), -1;
		return queue_frame(x, h, pl, why, cap);
	case SBX_T_FILE_END:
		if (h->len)
			return snprintf(why, cap, "FILE_END with a payload"), -1;
		x->ended = 1;
		return 0;
	case SBX_T_ERROR:
		if (sbx_error_decode(pl, h->len, &x->err, x->msg, sizeof x->msg))
			return snprintf(why, cap, "bad ERROR frame"), -1;
		x->ended = 1;
		return 0;
	case SBX_T_WINDOW: {
		uint32_t n = sbx_rd_u32(&r);
		if (!sbx_rd_done(&r))
			return snprintf(why, cap, "bad WINDOW frame"), -1;
		x->in_credit += n;
		if (x->in_credit > (1ull << 32))
			return snprintf(why, cap, "WINDOW overflow"), -1;
		return 0;
	}
	}
	return snprintf(why, cap, "unexpected frame type 0x%02x on file stream %u", h->type,
			x->stream),
	       -1;
}

/* ---- calling thread side */

static int map_errno(int err)
{
	switch (err) {
	case ENOENT: return SANDBOX_E_NOTFOUND;
	case EISDIR: return SANDBOX_E_ISDIR;
	case ENOTDIR: return SANDBOX_E_NOTDIR;
	case EEXIST: return SANDBOX_E_EXISTS;
	case EACCES:
	case EPERM:
	case EROFS: return SANDBOX_E_PERM;
	case ENOSPC:
	case EDQUOT: return SANDBOX_E_NOSPACE;
	case ENOTEMPTY: return SANDBOX_E_NOTEMPTY;
	case EFBIG: return SANDBOX_E_TOOBIG;
	}
	return SANDBOX_E_IO;
}

/* A violation found while interpreting a stream (order of entries, a
 * bad name): the agent is not to be trusted any more. */
int sbx_xfer_violation(struct sandbox *sb, const char *what)
{
	char reason[300];
	snprintf(reason, sizeof reason, "protocol violation: %s", what);
	pthread_mutex_lock(&sb->lock);
	sbx_mark_dead_locked(sb, SANDBOX_E_PROTOCOL, reason);
	pthread_mutex_unlock(&sb->lock);
	sbx_kill_internal(sb, reason, 0);
	return sbx_fail(SANDBOX_E_PROTOCOL, "sandbox %s: %s", sb->id, reason);
}

struct sbx_xfer *sbx_xfer_new_locked(struct sandbox *sb)
{
	struct sbx_xfer *x = calloc(1, sizeof *x);
	if (!x)
		return NULL;
	x->sb = sb;
	x->out_credit = SBX_PROTO_INITIAL_WINDOW;
	x->in_credit = SBX_PROTO_INITIAL_WINDOW;
	x->last_frame_ms = sbx_now_ms();
	x->stream = ++sb->next_stream;
	x->next = sb->xfers;
	sb->xfers = x;
	return x;
}

void sbx_xfer_free_locked(struct sandbox *sb, struct sbx_xfer *x)
{
	for (struct sbx_xfer **pp = &sb->xfers; *pp; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			break;
		}
	}
	free(x->ring);
	free(x);
}

int sbx_xfer_pop_locked(struct sbx_xfer *x, uint8_t *type, uint8_t *buf, uint32_t *len)
{
	if (!x->used)
		return 0;
	uint8_t rh[REC_HDR];
	ring_get(x, rh, REC_HDR);
	*type = rh[0];
	*len =
	    (uint32_t)rh[1] | (uint32_t)rh[2] << 8 | (uint32_t)rh[3] << 16 | (uint32_t)rh[4] << 24;
	ring_get(x, buf, *len);
	return 1;
}

size_t sbx_xfer_queued_locked(const struct sbx_xfer *x)
{
	return x->used;
}

void sbx_xfer_close(struct sbx_xfer *x)
{
	if (!x)
		return;
	struct sandbox *sb = x->sb;
	pthread_mutex_lock(&sb->lock);
	sbx_xfer_free_locked(sb, x);
	pthread_mutex_unlock(&sb->lock);
	sbx_sandbox_unref(sb);
}

int sbx_xfer_open(struct sandbox *sb, uint32_t op, uint32_t flags, uint32_t mode, const char *path,
		  const char *arg, struct sbx_xfer **out)
{
	*out = NULL;
	struct sbx_file_op_msg m = {.op = op,
				    .flags = flags,
				    .mode = mode,
				    .path = path,
				    .path_len = (uint32_t)strlen(path),
				    .arg = arg,
				    .arg_len = arg ? (uint32_t)strlen(arg) : 0};
	uint8_t frame[2 * SBX_FILE_PATH_MAX + 64];
	size_t flen = sbx_file_op_encode(frame, sizeof frame, &m);
	if (!flen)
		return sbx_fail(SANDBOX_E_INVAL, "path too long");
	pthread_mutex_lock(&sb->lock);
	if (sb->state != SBX_RUNNING) {
		int rc = sbx_fail(SANDBOX_E_DEAD, "sandbox %s is not running: %s", sb->id,
				  sb->dead_reason[0] ? sb->dead_reason : "not ready");
		pthread_mutex_unlock(&sb->lock);
		return rc;
	}
	struct sbx_xfer *x = sbx_xfer_new_locked(sb);
	if (!x) {
		pthread_mutex_unlock(&sb->lock);
		return sbx_fail(SANDBOX_E_NOMEM, "file stream");
	}
	sbx_sandbox_ref(sb);
	pthread_mutex_unlock(&sb->lock);
	int rc = sbx_chan_send(sb, SBX_T_FILE_OP, x->stream, frame, flen);
	if (rc) {
		sbx_xfer_close(x);
		return rc;
	}
	*out = x;
	return 0;
}

/* The error a stream ended with (lock held). */
static int stream_error_locked(struct sbx_xfer *x, const char *what, const char *path)
{
	if (x->sb->state == SBX_DEAD && !x->ended)
		return sbx_dead_error_locked(x->sb);
	return sbx_fail(map_errno(x->err), "%s '%.300s' in sandbox %s: %s", what, path, x->sb->id,
			x->msg[0] ? x->msg : strerror(x->err));
}

/* Wait (lock held) for a record, the end, or death. Returns 0 when there
 * is something to look at, or an error after STALL_MS without a frame. */
static int wait_agent_locked(struct sbx_xfer *x, int want_credit)
{
	struct sandbox *sb = x->sb;
	for (;;) {
		if (x->used || x->ended || sb->state == SBX_DEAD)
			return 0;
		if (want_credit && x->in_credit > SBX_FILE_FRAME_COST)
			return 0;
		int64_t deadline = x->last_frame_ms + STALL_MS;
		if (sbx_wait_locked(sb, deadline) == ETIMEDOUT && !x->used && !x->ended &&
		    sb->state != SBX_DEAD)
			return SANDBOX_E_TIMEOUT;
	}
}

static int stalled(struct sbx_xfer *x)
{
	sbx_kill_internal(x->sb, "the agent stopped answering a file stream", 0);
	return sbx_fail(SANDBOX_E_TIMEOUT,
			"the agent sent nothing on a file stream for %d s; "
			"sandbox %s killed",
			STALL_MS / 1000, x->sb->id);
}

/* Next record from the agent into buf (>= SBX_PROTO_MAX_PAYLOAD). Returns
 * 1 with *type and *len set, 0 at a successful end, or an error. */
int sbx_xfer_next(struct sbx_xfer *x, uint8_t *type, uint8_t *buf, uint32_t *len, const char *what,
		  const char *path)
{
	struct sandbox *sb = x->sb;
	pthread_mutex_lock(&sb->lock);
	int rc = wait_agent_locked(x, 0);
	if (rc == SANDBOX_E_TIMEOUT) {
		pthread_mutex_unlock(&sb->lock);
		return stalled(x);
	}
	if (x->err || (sb->state == SBX_DEAD && !x->ended)) {
		rc = stream_error_locked(x, what, path);
		pthread_mutex_unlock(&sb->lock);
		return rc;
	}
	if (!x->used) { /* ended, everything consumed */
		pthread_mutex_unlock(&sb->lock);
		return 0;
	}
	sbx_xfer_pop_locked(x, type, buf, len);
	x->unacked += *len + SBX_FILE_FRAME_COST;
	uint32_t ack = 0;
	if (!x->ended && (x->unacked >= WINDOW_BATCH || !x->used)) {
		ack = x->unacked;
		x->out_credit += ack;
		x->unacked = 0;
	}
	pthread_mutex_unlock(&sb->lock);
	if (ack)
		sbx_chan_send_u32(sb, SBX_T_WINDOW, x->stream, ack);
	return 1;
}

/* Wait for the final END (nothing else may come). */
int sbx_xfer_finish(struct sbx_xfer *x, const char *what, const char *path)
{
	uint8_t *sink = malloc(SBX_PROTO_MAX_PAYLOAD);
	if (!sink)
		return sbx_fail(SANDBOX_E_NOMEM, "file stream");
	uint8_t type;
	uint32_t len;
	int rc = sbx_xfer_next(x, &type, sink, &len, what, path);
	free(sink);
	if (rc == 1)
		return sbx_xfer_violation(x->sb, "unexpected data on a file stream");
	return rc;
}

/* Stop a stream early and wait for the agent to acknowledge it. */
void sbx_xfer_cancel(struct sbx_xfer *x)
{
	uint8_t *sink = malloc(SBX_PROTO_MAX_PAYLOAD);
	if (!sink || sbx_chan_send(x->sb, SBX_T_FILE_CANCEL, x->stream, NULL, 0)) {
		free(sink);
		return;
	}
	char saved[1024];
	sbx_error_save(saved, sizeof saved);
	uint8_t type;
	uint32_t len;
	while (sbx_xfer_next(x, &type, sink, &len, "cancel", "") == 1)
		;
	sbx_error_restore(saved);
	free(sink);
}

/* Send one ENTRY or DATA frame, waiting for credit. */
int sbx_xfer_send(struct sbx_xfer *x, uint8_t type, const void *p, size_t len, const char *what,
		  const char *path)
{
	struct sandbox *sb = x->sb;
	uint32_t cost = (uint32_t)len + SBX_FILE_FRAME_COST;
	pthread_mutex_lock(&sb->lock);
	for (;;) {
		if (x->ended && !x->err) {
			pthread_mutex_unlock(&sb->lock);
			return sbx_xfer_violation(sb, "the agent ended an upload early");
		}
		if (x->ended || sb->state == SBX_DEAD) {
			int rc = stream_error_locked(x, what, path);
			pthread_mutex_unlock(&sb->lock);
			return rc;
		}
		if (x->in_credit >= cost)
			break;
		int64_t deadline = x->last_frame_ms + STALL_MS;
		if (sbx_wait_locked(sb, deadline) == ETIMEDOUT && x->in_credit < cost &&
		    !x->ended && sb->state != SBX_DEAD) {
			pthread_mutex_unlock(&sb->lock);
			return stalled(x);
		}
	}
	x->in_credit -= cost;
	pthread_mutex_unlock(&sb->lock);
	return sbx_chan_send(sb, type, x->stream, p, len);
}

int sbx_xfer_send_entry(struct sbx_xfer *x, const struct sbx_file_entry *e, const char *what,
			const char *path)
{
	uint8_t buf[2 * SBX_FILE_PATH_MAX + 64];
	size_t n = sbx_file_entry_encode(buf, sizeof buf, e);
	if (!n)
		return sbx_fail(SANDBOX_E_INVAL, "path too long: %.200s", e->name);
	return sbx_xfer_send(x, SBX_T_FILE_ENTRY, buf, n, what, path);
}

int sbx_xfer_ended(struct sbx_xfer *x)
{
	pthread_mutex_lock(&x->sb->lock);
	int ended = x->ended;
	pthread_mutex_unlock(&x->sb->lock);
	return ended;
}

uint32_t sbx_xfer_stream(const struct sbx_xfer *x)
{
	return x->stream;
}

struct sandbox *sbx_xfer_sandbox(const struct sbx_xfer *x)
{
	return x->sb;
}
