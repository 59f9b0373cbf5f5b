/* Pure encode/decode of the channel protocol (doc/protocol.md). Compiled
 * into both the library and the guest agent. */
#include <errno.h>
#include <stdio.h>
#include "proto.h"

#include <string.h>

void sbx_hdr_pack(uint8_t out[SBX_PROTO_HDR_SIZE], const struct sbx_frame_hdr *h)
{
	struct sbx_wr w;
	sbx_wr_init(&w, out, SBX_PROTO_HDR_SIZE);
	sbx_wr_u32(&w, h->len);
	sbx_wr_u8(&w, h->type);
	sbx_wr_u8(&w, h->flags);
	sbx_wr_u16(&w, h->reserved);
	sbx_wr_u32(&w, h->stream);
}

int sbx_hdr_unpack(const uint8_t in[SBX_PROTO_HDR_SIZE], struct sbx_frame_hdr *h)
{
	struct sbx_rd r;
	sbx_rd_init(&r, in, SBX_PROTO_HDR_SIZE);
	h->len = sbx_rd_u32(&r);
	h->type = sbx_rd_u8(&r);
	h->flags = sbx_rd_u8(&r);
	h->reserved = sbx_rd_u16(&r);
	h->stream = sbx_rd_u32(&r);
	if (h->len > SBX_PROTO_MAX_PAYLOAD || h->reserved != 0 || h->flags != 0)
		return -1;
	return 0;
}

void sbx_rd_init(struct sbx_rd *r, const void *p, size_t len)
{
	r->p = p;
	r->len = len;
	r->off = 0;
	r->bad = 0;
}

static const uint8_t *rd_take(struct sbx_rd *r, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = 1;
		return NULL;
	}
	const uint8_t *q = r->p + r->off;
	r->off += n;
	return q;
}

uint8_t sbx_rd_u8(struct sbx_rd *r)
{
	const uint8_t *q = rd_take(r, 1);
	return q ? q[0] : 0;
}

uint16_t sbx_rd_u16(struct sbx_rd *r)
{
	const uint8_t *q = rd_take(r, 2);
	return q ? (uint16_t)(q[0] | (q[1] << 8)) : 0;
}

uint32_t sbx_rd_u32(struct sbx_rd *r)
{
	const uint8_t *q = rd_take(r, 4);
	if (!q)
		return 0;
	return (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) |
	       ((uint32_t)q[3] << 24);
}

uint64_t sbx_rd_u64(struct sbx_rd *r)
{
	uint64_t lo = sbx_rd_u32(r);
	uint64_t hi = sbx_rd_u32(r);
	return lo | (hi << 32);
}

const char *sbx_rd_str(struct sbx_rd *r, uint32_t *len)
{
	uint32_t n = sbx_rd_u32(r);
	const uint8_t *q = rd_take(r, n);
	if (!q) {
		*len = 0;
		return NULL;
	}
	if (memchr(q, 0, n)) {
		r->bad = 1;
		*len = 0;
		return NULL;
	}
	*len = n;
	return (const char *)q;
}

int sbx_rd_done(const struct sbx_rd *r)
{
	return !r->bad && r->off == r->len;
}

void sbx_wr_init(struct sbx_wr *w, void *p, size_t cap)
{
	w->p = p;
	w->cap = cap;
	w->off = 0;
	w->bad = 0;
}

void sbx_wr_bytes(struct sbx_wr *w, const void *p, size_t len)
{
	if (w->bad || len > w->cap - w->off) {
		w->bad = 1;
		return;
	}
	if (len)
		memcpy(w->p + w->off, p, len);
	w->off += len;
}

void sbx_wr_u8(struct sbx_wr *w, uint8_t v)
{
	sbx_wr_bytes(w, &v, 1);
}

void sbx_wr_u16(struct sbx_wr *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	sbx_wr_bytes(w, b, 2);
}

void sbx_wr_u32(struct sbx_wr *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	sbx_wr_bytes(w, b, 4);
}

void sbx_wr_u64(struct sbx_wr *w, uint64_t v)
{
	sbx_wr_u32(w, (uint32_t)v);
	sbx_wr_u32(w, (uint32_t)(v >> 32));
}

void sbx_wr_str(struct sbx_wr *w, const char *s, size_t len)
{
	if (len > UINT32_MAX) {
		w->bad = 1;
		return;
	}
	sbx_wr_u32(w, (uint32_t)len);
	sbx_wr_bytes(w, s, len);
}

int sbx_exec_start_decode(const void *p, size_t len, struct sbx_exec_start *out, size_t argv_cap,
			  size_t env_cap)
{
	struct sbx_rd r;
	sbx_rd_init(&r, p, len);
	out->flags = sbx_rd_u32(&r);
	out->timeout_ms = sbx_rd_u32(&r);
	out->argc = sbx_rd_u32(&r);
	out->envc = sbx_rd_u32(&r);
	if (r.bad || (out->flags & ~SBX_EXEC_F_KNOWN) || out->argc == 0 ||
	    out->argc > SBX_EXEC_MAX_ARGS || out->envc > SBX_EXEC_MAX_ENV || out->argc > argv_cap ||
	    out->envc > env_cap)
		return -1;
	out->cwd = sbx_rd_str(&r, &out->cwd_len);
	for (uint32_t i = 0; i < out->argc; i++)
		out->argv[i] = sbx_rd_str(&r, &out->argv_len[i]);
	for (uint32_t i = 0; i < out->envc; i++) {
		out->env[i] = sbx_rd_str(&r, &out->env_len[i]);
		/* every env entry must be NAME=VALUE with a non-empty name */
		if (!r.bad && (out->env_len[i] == 0 || out->env[i][0] == '=' ||
			       !memchr(out->env[i], '=', out->env_len[i])))
			return -1;
	}
	return sbx_rd_done(&r) ? 0 : -1;
}

int sbx_exit_decode(const void *p, size_t len, struct sbx_exit *out)
{
	struct sbx_rd r;
	sbx_rd_init(&r, p, len);
	out->kind = sbx_rd_u8(&r);
	out->timed_out = sbx_rd_u8(&r);
	(void)sbx_rd_u16(&r);
	out->value = (int32_t)sbx_rd_u32(&r);
	if (!sbx_rd_done(&r) || out->kind > SBX_EXIT_SIGNAL || out->timed_out > 1)
		return -1;
	if (out->kind == SBX_EXIT_SIGNAL && (out->value <= 0 || out->value > 64))
		return -1;
	if (out->kind == SBX_EXIT_CODE && (out->value < 0 || out->value > 255))
		return -1;
	return 0;
}

size_t sbx_exit_encode(uint8_t out[8], const struct sbx_exit *e)
{
	struct sbx_wr w;
	sbx_wr_init(&w, out, 8);
	sbx_wr_u8(&w, e->kind);
	sbx_wr_u8(&w, e->timed_out);
	sbx_wr_u16(&w, 0);
	sbx_wr_u32(&w, (uint32_t)e->value);
	return w.off;
}

int sbx_file_op_decode(const void *p, size_t len, struct sbx_file_op_msg *out)
{
	struct sbx_rd r;
	sbx_rd_init(&r, p, len);
	out->op = sbx_rd_u32(&r);
	out->flags = sbx_rd_u32(&r);
	out->mode = sbx_rd_u32(&r);
	out->path = sbx_rd_str(&r, &out->path_len);
	out->arg = sbx_rd_str(&r, &out->arg_len);
	if (!sbx_rd_done(&r) || out->op < SBX_FOP_STAT || out->op > SBX_FOP_MOUNT ||
	    (out->flags & ~SBX_FOP_F_KNOWN) || out->mode > 07777 || out->path_len == 0 ||
	    out->path_len > SBX_FILE_PATH_MAX || out->arg_len > SBX_FILE_PATH_MAX)
		return -1;
	return 0;
}

size_t sbx_file_op_encode(uint8_t *out, size_t cap, const struct sbx_file_op_msg *m)
{
	struct sbx_wr w;
	sbx_wr_init(&w, out, cap);
	sbx_wr_u32(&w, m->op);
	sbx_wr_u32(&w, m->flags);
	sbx_wr_u32(&w, m->mode);
	sbx_wr_str(&w, m->path, m->path_len);
	sbx_wr_str(&w, m->arg ? m->arg : "", m->arg_len);
	return w.bad ? 0 : w.off;
}

int sbx_file_entry_decode(const void *p, size_t len, struct sbx_file_entry *out)
{
	struct sbx_rd r;
	sbx_rd_init(&r, p, len);
	out->type = sbx_rd_u8(&r);
	uint8_t z8 = sbx_rd_u8(&r);
	uint16_t z16 = sbx_rd_u16(&r);
	out->mode = sbx_rd_u32(&r);
	out->size = sbx_rd_u64(&r);
	out->mtime = (int64_t)sbx_rd_u64(&r);
	out->uid = sbx_rd_u32(&r);
	out->gid = sbx_rd_u32(&r);
	out->name = sbx_rd_str(&r, &out->name_len);
	out->target = sbx_rd_str(&r, &out->target_len);
	if (!sbx_rd_done(&r) || z8 || z16 || out->type < SBX_FT_FILE || out->type > SBX_FT_OTHER ||
	    out->mode > 07777 || out->name_len > SBX_FILE_PATH_MAX ||
	    out->target_len > SBX_FILE_PATH_MAX)
		return -1;
	if ((out->type == SBX_FT_SYMLINK) != (out->target_len > 0))
		return -1;
	return 0;
}

size_t sbx_file_entry_encode(uint8_t *out, size_t cap, const struct sbx_file_entry *e)
{
	struct sbx_wr w;
	sbx_wr_init(&w, out, cap);
	sbx_wr_u8(&w, e->type);
	sbx_wr_u8(&w, 0);
	sbx_wr_u16(&w, 0);
	sbx_wr_u32(&w, e->mode);
	sbx_wr_u64(&w, e->size);
	sbx_wr_u64(&w, (uint64_t)e->mtime);
	sbx_wr_u32(&w, e->uid);
	sbx_wr_u32(&w, e->gid);
	sbx_wr_str(&w, e->name ? e->name : "", e->name_len);
	sbx_wr_str(&w, e->target ? e->target : "", e->target_len);
	return w.bad ? 0 : w.off;
}

int sbx_error_decode(const void *p, size_t len, int *err, char *msg, size_t cap)
{
	struct sbx_rd r;
	sbx_rd_init(&r, p, len);
	int32_t e = (int32_t)sbx_rd_u32(&r);
	uint32_t mlen;
	const char *m = sbx_rd_str(&r, &mlen);
	if (!sbx_rd_done(&r))
		return -1;
	*err = e > 0 && e < 4096 ? e : EIO;
	if (cap)
		snprintf(msg, cap, "%.*s", (int)(mlen < cap - 1 ? mlen : cap - 1), m ? m : "");
	return 0;
}
