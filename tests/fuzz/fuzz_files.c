/* libFuzzer target: the host's handling of file streams from a hostile
 * agent: FILE_ENTRY/FILE_DATA/FILE_END/ERROR/WINDOW on file streams as the
 * I/O thread decodes them (credit accounting, the bounded queue), then
 * what the calling thread does with each queued record (entry decoding,
 * the name checks of listings and tree downloads). The input is fed in
 * pieces the way the I/O thread reads the socket. Must never crash,
 * over-read, or queue beyond the granted credit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "files.h"
#include "sandbox_int.h"

#define RBUF (SBX_PROTO_HDR_SIZE + SBX_PROTO_MAX_PAYLOAD)

static void drain(struct sandbox *sb, struct sbx_xfer *x, uint8_t *rec)
{
	uint8_t type;
	uint32_t len;
	pthread_mutex_lock(&sb->lock);
	if (sbx_xfer_queued_locked(x) > SBX_PROTO_INITIAL_WINDOW)
		abort(); /* more than the credit we granted */
	while (sbx_xfer_pop_locked(x, &type, rec, &len)) {
		if (type == SBX_T_FILE_ENTRY) {
			struct sbx_file_entry e;
			if (sbx_file_entry_decode(rec, len, &e))
				abort(); /* the I/O thread let a malformed entry through */
			(void)sbx_file_list_name_ok(&e);
			(void)sbx_file_rel_name_ok(e.name, e.name_len);
		} else if (type != SBX_T_FILE_DATA || len == 0) {
			abort();
		}
	}
	pthread_mutex_unlock(&sb->lock);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sandbox *sb = calloc(1, sizeof *sb);
	pthread_mutex_init(&sb->lock, NULL);
	pthread_mutex_init(&sb->wlock, NULL);
	pthread_cond_init(&sb->cond, NULL);
	sb->fd = -1;
	sb->audit.fd = -1;
	pthread_mutex_init(&sb->audit.lock, NULL);
	strcpy(sb->id, "fuzz");
	sb->state = SBX_RUNNING;
	/* streams 1 and 2 */
	struct sbx_xfer *x[2] = {sbx_xfer_new_locked(sb), sbx_xfer_new_locked(sb)};
	/* the first byte decides whether the consumer keeps up */
	int drains = size && (data[0] & 1);

	uint8_t *buf = malloc(RBUF);
	uint8_t *rec = malloc(SBX_PROTO_MAX_PAYLOAD);
	size_t len = 0, off = size ? 1 : 0;
	char why[256];
	while (off < size) {
		size_t piece = 1 + (data[off] % 97) * 31;
		if (piece > size - off)
			piece = size - off;
		if (piece > RBUF - len)
			piece = RBUF - len;
		memcpy(buf + len, data + off, piece);
		len += piece;
		off += piece;
		int rc = sbx_chan_decode(sb, buf, &len, why, sizeof why);
		for (int i = 0; i < 2; i++) {
			pthread_mutex_lock(&sb->lock);
			if (sbx_xfer_queued_locked(x[i]) > SBX_PROTO_INITIAL_WINDOW)
				abort();
			pthread_mutex_unlock(&sb->lock);
			if (drains)
				drain(sb, x[i], rec);
		}
		if (rc)
			break;
		if (len == RBUF)
			abort();
	}
	for (int i = 0; i < 2; i++)
		drain(sb, x[i], rec);
	free(buf);
	free(rec);
	pthread_mutex_lock(&sb->lock);
	sbx_xfer_free_locked(sb, x[0]);
	sbx_xfer_free_locked(sb, x[1]);
	pthread_mutex_unlock(&sb->lock);
	pthread_mutex_destroy(&sb->audit.lock);
	pthread_mutex_destroy(&sb->lock);
	pthread_mutex_destroy(&sb->wlock);
	pthread_cond_destroy(&sb->cond);
	free(sb);
	return 0;
}
