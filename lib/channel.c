/* The host end of the agent channel: connecting to the VM's virtio-serial
 * socket, the per-sandbox I/O thread that decodes frames, and framed
 * writes. Every byte read here comes from a hostile guest: frames are
 * bounded by SBX_PROTO_MAX_PAYLOAD, output is bounded by the credit we
 * granted, and any violation kills the sandbox. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "proxy.h"
#include "files.h"
#include "sandbox_int.h"
#include "util.h"

#define RBUF_SIZE (SBX_PROTO_HDR_SIZE + SBX_PROTO_MAX_PAYLOAD)

void sbx_mark_dead_locked(struct sandbox *sb, int code, const char *reason)
{
	if (sb->state == SBX_DEAD)
		return;
	sb->state = SBX_DEAD;
	sb->dead_code = code;
	snprintf(sb->dead_reason, sizeof sb->dead_reason, "%.200s", reason);
	sbx_procs_fail_locked(sb);
	pthread_cond_broadcast(&sb->cond);
}

int sbx_dead_error_locked(struct sandbox *sb)
{
	return sbx_fail(sb->dead_code ? sb->dead_code : SANDBOX_E_DEAD, "sandbox %s died: %s",
			sb->id, sb->dead_reason);
}

int sbx_wait_locked(struct sandbox *sb, int64_t deadline_ms)
{
	if (deadline_ms == INT64_MAX) {
		pthread_cond_wait(&sb->cond, &sb->lock);
		return 0;
	}
	int64_t left = deadline_ms - sbx_now_ms();
	if (left <= 0)
		return ETIMEDOUT;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += left / 1000;
	ts.tv_nsec += (long)(left % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&sb->cond, &sb->lock, &ts);
	return 0;
}

int sbx_chan_connect(struct sandbox *sb, int64_t deadline_ms)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(sb->sock_path) >= sizeof sa.sun_path)
		return sbx_fail(SANDBOX_E_INVAL, "socket path too long: %s", sb->sock_path);
	strcpy(sa.sun_path, sb->sock_path);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return sbx_fail_errno(SANDBOX_E_IO, errno, "socket");
		if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
			sb->fd = fd;
			return 0;
		}
		int e = errno;
		close(fd);
		if ((e != ENOENT && e != ECONNREFUSED) || sbx_now_ms() > deadline_ms)
			return sbx_fail_errno(SANDBOX_E_BOOT, e,
					      "cannot connect to agent socket %s", sb->sock_path);
		usleep(5000);
	}
}

static int write_all(struct sandbox *sb, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(sb->fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pfd = {.fd = sb->fd, .events = POLLOUT};
			poll(&pfd, 1, 1000);
			/* A guest that stops reading must not pin a writer (the I/O
			 * thread included) past a kill or the lifetime. */
			int64_t deadline = sb->deadline_ms;
			pthread_mutex_lock(&sb->lock);
			int dead = sb->state == SBX_DEAD;
			pthread_mutex_unlock(&sb->lock);
			if (dead || (deadline && sbx_now_ms() >= deadline))
				return SANDBOX_E_DEAD;
			continue;
		}
		return SANDBOX_E_DEAD;
	}
	return 0;
}

int sbx_chan_send(struct sandbox *sb, uint8_t type, uint32_t stream, const void *payload,
		  size_t len)
{
	if (len > SBX_PROTO_MAX_PAYLOAD)
		return sbx_fail(SANDBOX_E_INVAL, "frame too large");
	uint8_t hdr[SBX_PROTO_HDR_SIZE];
	struct sbx_frame_hdr h = {.len = (uint32_t)len, .type = type, .stream = stream};
	sbx_hdr_pack(hdr, &h);
	pthread_mutex_lock(&sb->wlock);
	int rc = write_all(sb, hdr, sizeof hdr);
	if (!rc && len)
		rc = write_all(sb, payload, len);
	pthread_mutex_unlock(&sb->wlock);
	if (rc) {
		pthread_mutex_lock(&sb->lock);
		const char *why = sb->state == SBX_DEAD ? sb->dead_reason : "channel closed";
		rc = sbx_fail(SANDBOX_E_DEAD, "sandbox %s is not running: %s", sb->id, why);
		pthread_mutex_unlock(&sb->lock);
	}
	return rc;
}

int sbx_chan_send_u32(struct sandbox *sb, uint8_t type, uint32_t stream, uint32_t value)
{
	uint8_t b[4];
	struct sbx_wr w;
	sbx_wr_init(&w, b, sizeof b);
	sbx_wr_u32(&w, value);
	return sbx_chan_send(sb, type, stream, b, sizeof b);
}

static struct sandbox_proc *find_proc(struct sandbox *sb, uint32_t stream)
{
	for (struct sandbox_proc *p = sb->procs; p; p = p->next)
		if (p->stream == stream)
			return p;
	return NULL;
}

/* Outcome of handling one frame: 0 fine, else a protocol violation whose
 * text is in `why`. */
static int on_hello(struct sandbox *sb, struct sbx_rd *r, char *why, size_t cap)
{
	uint16_t ver = sbx_rd_u16(r);
	(void)sbx_rd_u16(r);
	(void)sbx_rd_u32(r);
	(void)sbx_rd_u32(r);
	uint32_t vlen;
	(void)sbx_rd_str(r, &vlen);
	if (!sbx_rd_done(r))
		return snprintf(why, cap, "malformed HELLO"), -1;
	if (ver != SBX_PROTO_VERSION)
		return snprintf(why, cap, "agent speaks protocol version %u, library speaks %u",
				ver, SBX_PROTO_VERSION),
		       -1;
	if (sb->state == SBX_BOOTING)
		sb->state = SBX_RUNNING;
	else
		return snprintf(why, cap, "unexpected second HELLO (agent restarted?)"), -1;
	return 0;
}

static int on_output(struct sandbox_proc *p, int stream, const uint8_t *data, uint32_t len,
		     char *why, size_t cap)
{
	if (len == 0)
		return snprintf(why, cap, "empty output frame"), -1;
	if (!p->started)
		return snprintf(why, cap, "output before EXEC_STARTED"), -1;
	if (len > p->out_credit)
		return snprintf(why, cap, "agent sent %u bytes with only %u bytes of credit", len,
				p->out_credit),
		       -1;
	p->out_credit -= len;
	p->total[stream] += len;
	if (p->abandoned)
		return 0; /* nobody reads it; its credit was granted in bulk */
	if (sbx_outq_push(&p->out, stream, data, len))
		return snprintf(why, cap, "cannot queue output (out of memory)"), -1;
	return 0;
}

static int on_stream_frame(struct sandbox *sb, const struct sbx_frame_hdr *h, const uint8_t *pl,
			   char *why, size_t cap)
{
	struct sbx_xfer *x = sbx_xfer_find_locked(sb, h->stream);
	if (x)
		return sbx_files_on_frame_locked(sb, x, h, pl, why, cap);
	struct sandbox_proc *p = find_proc(sb, h->stream);
	if (!p)
		return snprintf(why, cap, "frame type 0x%02x for stream %u, which is not open",
				h->type, h->stream),
		       -1;
	struct sbx_rd r;
	sbx_rd_init(&r, pl, h->len);
	switch (h->type) {
	case SBX_T_EXEC_STARTED:
		p->pid = (int)sbx_rd_u32(&r);
		if (!sbx_rd_done(&r) || p->started || p->pid <= 0)
			return snprintf(why, cap, "bad EXEC_STARTED"), -1;
		p->started = 1;
		return 0;
	case SBX_T_STDOUT: return on_output(p, SANDBOX_STDOUT, pl, h->len, why, cap);
	case SBX_T_STDERR: return on_output(p, SANDBOX_STDERR, pl, h->len, why, cap);
	case SBX_T_ERROR:
		if (sbx_error_decode(pl, h->len, &p->spawn_err, p->spawn_msg, sizeof p->spawn_msg))
			return snprintf(why, cap, "bad ERROR frame"), -1;
		p->exited = 1;
		sbx_proc_on_exit_locked(p);
		return 0;
	case SBX_T_EXIT:
		if (sbx_exit_decode(pl, h->len, &p->exit) || !p->started)
			return snprintf(why, cap, "bad EXIT frame"), -1;
		p->exited = 1;
		sbx_proc_on_exit_locked(p);
		return 0;
	case SBX_T_WINDOW: {
		uint32_t n = sbx_rd_u32(&r);
		if (!sbx_rd_done(&r))
			return snprintf(why, cap, "bad WINDOW frame"), -1;
		p->in_credit += n;
		if (p->in_credit > (1ull << 32))
			return snprintf(why, cap, "WINDOW overflow"), -1;
		return 0;
	}
	}
	return snprintf(why, cap, "unexpected frame type 0x%02x on stream %u", h->type, h->stream),
	       -1;
}

static int on_frame(struct sandbox *sb, const struct sbx_frame_hdr *h, const uint8_t *pl, char *why,
		    size_t cap)
{
	if (sb->state == SBX_BOOTING && h->type != SBX_T_HELLO)
		return snprintf(why, cap, "frame type 0x%02x before HELLO", h->type), -1;
	if (h->stream & SBX_STREAM_AGENT)
		return sbx_proxy_on_frame(sb->proxy, h, pl, why, cap);
	if (h->stream != 0)
		return on_stream_frame(sb, h, pl, why, cap);
	struct sbx_rd r;
	sbx_rd_init(&r, pl, h->len);
	switch (h->type) {
	case SBX_T_HELLO: return on_hello(sb, &r, why, cap);
	case SBX_T_PONG: {
		/* only an answer to a ping we sent counts (nonce = sequence) */
		uint64_t seq = sbx_rd_u64(&r);
		if (sbx_rd_done(&r) && seq > sb->pong_seq && seq <= sb->ping_seq)
			sb->pong_seq = seq;
		return 0;
	}
	case SBX_T_ERROR: {
		(void)sbx_rd_u32(&r);
		uint32_t mlen;
		(void)sbx_rd_str(&r, &mlen);
		return sbx_rd_done(&r) ? 0 : (snprintf(why, cap, "bad ERROR frame"), -1);
	}
	}
	return snprintf(why, cap, "unexpected control frame type 0x%02x", h->type), -1;
}

/* Decode all complete frames in buf[0..*len), shifting the remainder.
 * Exposed (sandbox_int.h) for the fuzz target. */
int sbx_chan_decode(struct sandbox *sb, uint8_t *buf, size_t *len, char *why, size_t cap)
{
	size_t off = 0;
	int rc = 0;
	pthread_mutex_lock(&sb->lock);
	while (*len - off >= SBX_PROTO_HDR_SIZE) {
		struct sbx_frame_hdr h;
		if (sbx_hdr_unpack(buf + off, &h)) {
			snprintf(why, cap, "malformed frame header");
			rc = -1;
			break;
		}
		if (*len - off - SBX_PROTO_HDR_SIZE < h.len)
			break;
		rc = on_frame(sb, &h, buf + off + SBX_PROTO_HDR_SIZE, why, cap);
		if (rc)
			break;
		off += SBX_PROTO_HDR_SIZE + h.len;
	}
	pthread_cond_broadcast(&sb->cond);
	pthread_mutex_unlock(&sb->lock);
	memmove(buf, buf + off, *len - off);
	*len -= off;
	return rc;
}

/* The guest can write to its serial console without limit; QEMU appends
 * to console.log. Truncating it leaves QEMU writing past the end, which
 * makes a sparse file: the disk it uses stays bounded. */
#define CONSOLE_LOG_MAX (1 << 20)
static void cap_console_log(struct sandbox *sb)
{
	int64_t now = sbx_now_ms();
	if (!sb->console_log || now - sb->console_checked_ms < 1000)
		return;
	sb->console_checked_ms = now;
	struct stat st;
	if (stat(sb->console_log, &st) == 0 && (int64_t)st.st_blocks * 512 > CONSOLE_LOG_MAX)
		if (truncate(sb->console_log, 0) < 0) {
			/* nothing better to do: try again next second */
		}
}

/* Wake at least once a second so a lifetime set after start-up (it
 * counts from the moment the agent is ready) is noticed. */
static int poll_timeout(struct sandbox *sb)
{
	int64_t deadline = sb->deadline_ms;
	if (!deadline)
		return 1000;
	int64_t left = deadline - sbx_now_ms();
	return left <= 0 ? 0 : (left > 1000 ? 1000 : (int)left);
}

static void *io_main(void *arg)
{
	struct sandbox *sb = arg;
	uint8_t *buf = malloc(RBUF_SIZE);
	size_t len = 0;
	char why[256] = "";
	const char *reason = NULL;
	while (buf && !reason) {
		struct pollfd pfd[2] = {{.fd = sb->fd, .events = POLLIN},
					{.fd = sb->wake_fd, .events = POLLIN}};
		int n = poll(pfd, 2, poll_timeout(sb));
		if (n < 0 && errno != EINTR)
			reason = "poll failed";
		if (pfd[1].revents)
			break; /* stop requested */
		int64_t deadline = sb->deadline_ms;
		if (deadline && sbx_now_ms() >= deadline) {
			reason = "lifetime timeout expired";
			break;
		}
		cap_console_log(sb);
		if (n <= 0 || !pfd[0].revents)
			continue;
		ssize_t r = recv(sb->fd, buf + len, RBUF_SIZE - len, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r <= 0) {
			reason = "the guest stopped (channel closed)";
			break;
		}
		len += (size_t)r;
		if (sbx_chan_decode(sb, buf, &len, why, sizeof why)) {
			reason = why;
			break;
		}
	}
	free(buf);
	if (!buf)
		reason = "out of memory";
	if (reason) {
		char full[320];
		int is_proto = reason == why;
		snprintf(full, sizeof full, "%s%s", is_proto ? "protocol violation: " : "", reason);
		pthread_mutex_lock(&sb->lock);
		sbx_mark_dead_locked(sb, is_proto ? SANDBOX_E_PROTOCOL : SANDBOX_E_DEAD, full);
		pthread_mutex_unlock(&sb->lock);
		sbx_kill_internal(sb, full, 1);
	}
	return NULL;
}

int sbx_chan_start(struct sandbox *sb)
{
	sb->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (sb->wake_fd < 0)
		return sbx_fail_errno(SANDBOX_E_IO, errno, "eventfd");
	int rc = pthread_create(&sb->io_thread, NULL, io_main, sb);
	if (rc)
		return sbx_fail_errno(SANDBOX_E_NOMEM, rc, "cannot start I/O thread");
	sb->io_started = 1;
	return 0;
}

int sbx_chan_wait_ready(struct sandbox *sb, int64_t deadline_ms)
{
	pthread_mutex_lock(&sb->lock);
	while (sb->state == SBX_BOOTING && sbx_wait_locked(sb, deadline_ms) != ETIMEDOUT)
		;
	int rc = 0;
	if (sb->state == SBX_DEAD)
		rc = sbx_fail(SANDBOX_E_BOOT, "guest failed before its agent was ready: %s",
			      sb->dead_reason);
	else if (sb->state == SBX_BOOTING)
		rc = SANDBOX_E_TIMEOUT;
	pthread_mutex_unlock(&sb->lock);
	return rc;
}

void sbx_chan_stop(struct sandbox *sb)
{
	if (sb->wake_fd >= 0) {
		uint64_t one = 1;
		if (write(sb->wake_fd, &one, sizeof one) < 0) {
			/* the eventfd cannot be full; nothing else to do */
		}
	}
	if (sb->io_started && !sb->io_joined && !pthread_equal(pthread_self(), sb->io_thread)) {
		pthread_join(sb->io_thread, NULL);
		sb->io_joined = 1;
	}
}
