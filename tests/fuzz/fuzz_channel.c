/* libFuzzer target: the host's decoder of guest bytes on the agent channel
 * (frame headers, dispatch, HELLO/EXEC_STARTED/STDOUT/STDERR/ERROR/EXIT/
 * WINDOW payloads, credit accounting, and the network stream frames the
 * proxy takes: TCP_OPEN/DATA/EOF/CLOSE, DNS_QUERY, their credit). The input is fed in pieces the way
 * the I/O thread reads the socket. Must never crash, over-read or buffer
 * beyond the granted credit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "sandbox_int.h"

#define RBUF (SBX_PROTO_HDR_SIZE + SBX_PROTO_MAX_PAYLOAD)

static struct sandbox_proc *add_proc(struct sandbox *sb, uint32_t stream, int started,
				     int abandoned)
{
	struct sandbox_proc *p = calloc(1, sizeof *p);
	p->sb = sb;
	p->stream = stream;
	p->started = started;
	p->abandoned = abandoned;
	p->out_credit = SBX_PROTO_INITIAL_WINDOW;
	p->argv0 = strdup("fuzz");
	p->next = sb->procs;
	sb->procs = p;
	return p;
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
	/* first byte: start booting (expects HELLO) or running */
	sb->state = size && (data[0] & 1) ? SBX_BOOTING : SBX_RUNNING;
	struct sandbox_proc *mine[2];
	mine[0] = add_proc(sb, 1, 0, 0);
	mine[1] = add_proc(sb, 2, 1, 0);
	add_proc(sb, 3, 1, 1); /* freed by the library when it exits */
	/* network streams go to a proxy whose thread is not started: the
	 * frames are decoded and queued, which is what the guest reaches */
	static const char *allow[] = {"api.example.test", "*.example.test:443", NULL};
	static const char *dns[] = {"192.0.2.53", NULL};
	sandbox_options_t o = SANDBOX_OPTIONS_INIT;
	o.allow_net = allow;
	o.dns_servers = dns;
	if (sbx_proxy_new(sb, &o, &sb->proxy))
		abort();

	uint8_t *buf = malloc(RBUF);
	size_t len = 0, off = size ? 1 : 0;
	char why[256];
	while (off < size) {
		/* piece sizes vary with the data so splits land everywhere */
		size_t piece = 1 + (data[off] % 97) * 31;
		if (piece > size - off)
			piece = size - off;
		if (piece > RBUF - len)
			piece = RBUF - len;
		memcpy(buf + len, data + off, piece);
		len += piece;
		off += piece;
		if (sbx_chan_decode(sb, buf, &len, why, sizeof why))
			break;
		if (len == RBUF)
			abort(); /* a full buffer with no complete frame is impossible */
	}
	free(buf);
	sbx_proxy_free(sb->proxy);
	for (int i = 0; i < 2; i++) {
		/* credit is never exceeded: queued output fits in the window */
		if (mine[i]->out.used > SBX_PROTO_INITIAL_WINDOW)
			abort();
	}
	pthread_mutex_lock(&sb->lock);
	int linked[2] = {0, 0};
	for (struct sandbox_proc *p = sb->procs; p; p = p->next)
		for (int i = 0; i < 2; i++)
			linked[i] |= p == mine[i];
	sbx_procs_fail_locked(sb); /* unlinks all, frees abandoned */
	for (int i = 0; i < 2; i++)
		sbx_proc_free_locked(mine[i]);
	(void)linked;
	pthread_mutex_unlock(&sb->lock);
	pthread_mutex_destroy(&sb->audit.lock);
	pthread_mutex_destroy(&sb->lock);
	pthread_mutex_destroy(&sb->wlock);
	pthread_cond_destroy(&sb->cond);
	free(sb);
	return 0;
}
