/* Host channel: finding the port, connection state, framed I/O. */
#define _GNU_SOURCE
#include "port.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#define VPORT_SYSFS "/sys/class/virtio-ports"
/* A virtio port reports POLLHUP without blocking while no host is
 * connected, so the connection is polled for at this interval. */
#define VIRTIO_RETRY_MS 10
#define CONNECT_RETRY_MS 20
/* Test mode: an agent whose harness went away must not linger forever. */
#define CONNECT_GIVE_UP_MS 10000
/* Above this much queued output, stop reading host frames: a host that
 * sends PINGs but never reads cannot grow our memory. */
#define OUT_HARD_MAX (4u << 20)
#define FRAME_MAX (SBX_PROTO_HDR_SIZE + SBX_PROTO_MAX_PAYLOAD)

static void port_init(struct port *p, enum port_mode mode, const char *path)
{
	memset(p, 0, sizeof *p);
	p->mode = mode;
	p->state = PS_DOWN;
	p->fd = -1;
	p->lfd = -1;
	snprintf(p->path, sizeof p->path, "%s", path);
	buf_init(&p->in);
	buf_init(&p->out);
}

/* Read a one-line sysfs attribute, without its newline. */
static int read_attr(const char *path, char *out, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, out, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	out[n] = 0;
	if (n > 0 && out[n - 1] == '\n')
		out[n - 1] = 0;
	return 0;
}

/* There is no udev in the guest: if devtmpfs has not (yet) made the node,
 * make it from the major:minor sysfs publishes. */
static int ensure_node(const char *port, const char *devpath)
{
	struct stat st;
	if (stat(devpath, &st) == 0)
		return S_ISCHR(st.st_mode) ? 0 : -1;
	char path[300], dev[32];
	unsigned maj, min;
	snprintf(path, sizeof path, VPORT_SYSFS "/%s/dev", port);
	if (read_attr(path, dev, sizeof dev) != 0 || sscanf(dev, "%u:%u", &maj, &min) != 2)
		return -1;
	if (mknod(devpath, S_IFCHR | 0600, makedev(maj, min)) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

/* Look for the port whose name is ours; fill its /dev path. */
static int find_vport(char *devpath, size_t cap)
{
	DIR *d = opendir(VPORT_SYSFS);
	if (!d)
		return -1;
	int found = -1;
	struct dirent *de;
	while (found < 0 && (de = readdir(d)) != NULL) {
		char path[300], name[128];
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof path, VPORT_SYSFS "/%s/name", de->d_name);
		if (read_attr(path, name, sizeof name) != 0 ||
		    strcmp(name, SBX_PROTO_PORT_NAME) != 0)
			continue;
		if (strlen(de->d_name) + sizeof "/dev/" > cap)
			continue;
		strcpy(devpath, "/dev/");
		strcat(devpath, de->d_name);
		if (ensure_node(de->d_name, devpath) == 0)
			found = 0;
	}
	closedir(d);
	return found;
}

int port_open_virtio(struct port *p, unsigned wait_ms)
{
	port_init(p, PORT_VIRTIO, "");
	uint64_t end = now_ms() + wait_ms;
	int err = ENOENT;
	/* The port appears once virtio_console has probed, which may be
	 * shortly after we start. */
	for (;;) {
		if (find_vport(p->path, sizeof p->path) == 0) {
			p->fd = open(p->path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
			if (p->fd >= 0)
				return 0;
			err = errno;
		}
		if (now_ms() >= end)
			break;
		sleep_ms(VIRTIO_RETRY_MS);
	}
	errno = err;
	return -1;
}

static int unix_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof *sa);
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sa->sun_path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa->sun_path, path);
	return 0;
}

int port_open_connect(struct port *p, const char *path)
{
	struct sockaddr_un sa;
	port_init(p, PORT_CONNECT, path);
	if (unix_addr(&sa, path) != 0)
		return -1;
	p->give_up_at = now_ms() + CONNECT_GIVE_UP_MS;
	return 0;
}

int port_open_listen(struct port *p, const char *path)
{
	struct sockaddr_un sa;
	port_init(p, PORT_LISTEN, path);
	if (unix_addr(&sa, path) != 0)
		return -1;
	p->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (p->lfd < 0)
		return -1;
	unlink(path);
	if (bind(p->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(p->lfd, 4) != 0) {
		int e = errno;
		close(p->lfd);
		p->lfd = -1;
		errno = e;
		return -1;
	}
	return 0;
}

/* The virtio driver reports POLLOUT without POLLHUP once the host side
 * of the port is open (see port_fops_poll in virtio_console.c); while it
 * is closed, poll returns POLLHUP at once instead of blocking, hence the
 * retry interval. Known limit: a host that hangs up and reconnects before
 * the agent next looks (a few ms; longer under TCG) is indistinguishable
 * from one connection, so no new HELLO is sent. The driver's SIGIO fires
 * for data as well as for open/close, so it cannot tell either. */
static int virtio_host_connected(int fd)
{
	struct pollfd pfd = {fd, POLLOUT, 0};
	if (poll(&pfd, 1, 0) != 1)
		return 0;
	return (pfd.revents & POLLOUT) && !(pfd.revents & (POLLHUP | POLLERR));
}

static int try_connect(struct port *p)
{
	struct sockaddr_un sa;
	unix_addr(&sa, p->path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* Non-blocking so a full backlog cannot stall the agent: it is
	 * simply retried. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int port_try_up(struct port *p, uint64_t now)
{
	if (p->state != PS_DOWN)
		return 0;
	switch (p->mode) {
	case PORT_VIRTIO:
		if (now < p->retry_at)
			return 0;
		p->retry_at = now + VIRTIO_RETRY_MS;
		if (!virtio_host_connected(p->fd))
			return 0;
		break;
	case PORT_CONNECT:
		if (now < p->retry_at)
			return 0;
		p->fd = try_connect(p);
		if (p->fd < 0) {
			p->retry_at = now + CONNECT_RETRY_MS;
			return now >= p->give_up_at ? -1 : 0;
		}
		break;
	case PORT_LISTEN:
		p->fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (p->fd < 0)
			return 0;
		break;
	}
	p->state = PS_UP;
	return 1;
}

static void lower_timeout(int *timeout, uint64_t now, uint64_t at)
{
	int t = at > now ? (int)(at - now) : 0;
	if (*timeout < 0 || t < *timeout)
		*timeout = t;
}

int port_poll_prepare(struct port *p, struct pollfd *pfd, uint64_t now, int *timeout)
{
	pfd->revents = 0;
	if (p->state == PS_DOWN) {
		if (p->mode == PORT_LISTEN) {
			pfd->fd = p->lfd;
			pfd->events = POLLIN;
			return 1;
		}
		lower_timeout(timeout, now, p->retry_at);
		return 0;
	}
	pfd->fd = p->fd;
	pfd->events = 0;
	if (p->state == PS_CLOSING || buf_len(&p->out) < OUT_HARD_MAX)
		pfd->events |= POLLIN;
	if (buf_len(&p->out))
		pfd->events |= POLLOUT;
	return 1;
}

int port_fill(struct port *p)
{
	buf_consume(&p->in, p->in_pending);
	p->in_pending = 0;
	/* Bounded: at most two maximal frames buffered, then the caller must
	 * parse before reading on. */
	for (int i = 0; i < 64 && buf_len(&p->in) < 2 * FRAME_MAX; i++) {
		uint8_t *dst = buf_reserve(&p->in, FRAME_MAX);
		if (!dst)
			return 0; /* try again later; memory may come back */
		ssize_t n = read(p->fd, dst, FRAME_MAX);
		if (n > 0) {
			if (p->state == PS_CLOSING)
				continue; /* framing is lost: discard */
			buf_commit(&p->in, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		return -1; /* EOF: the host disconnected */
	}
	return 0;
}

int port_frame(struct port *p, struct sbx_frame_hdr *h, const uint8_t **payload)
{
	buf_consume(&p->in, p->in_pending);
	p->in_pending = 0;
	if (p->state != PS_UP || buf_len(&p->in) < SBX_PROTO_HDR_SIZE)
		return 0;
	if (sbx_hdr_unpack(buf_peek(&p->in), h) != 0)
		return -1;
	if (buf_len(&p->in) < SBX_PROTO_HDR_SIZE + (size_t)h->len)
		return 0;
	*payload = buf_peek(&p->in) + SBX_PROTO_HDR_SIZE;
	p->in_pending = SBX_PROTO_HDR_SIZE + (size_t)h->len;
	return 1;
}

static void pack_hdr(uint8_t *dst, uint8_t type, uint32_t stream, size_t len)
{
	struct sbx_frame_hdr h = {(uint32_t)len, type, 0, 0, stream};
	sbx_hdr_pack(dst, &h);
}

int port_send(struct port *p, uint8_t type, uint32_t stream, const void *payload, size_t len)
{
	if (p->state != PS_UP)
		return 0;
	uint8_t *dst = buf_reserve(&p->out, SBX_PROTO_HDR_SIZE + len);
	if (!dst) {
		log_msg("out of memory queueing a frame");
		return -1;
	}
	pack_hdr(dst, type, stream, len);
	if (len)
		memcpy(dst + SBX_PROTO_HDR_SIZE, payload, len);
	buf_commit(&p->out, SBX_PROTO_HDR_SIZE + len);
	return 0;
}

int port_send_error(struct port *p, uint32_t stream, int err, const char *fmt, ...)
{
	char msg[512];
	uint8_t payload[8 + sizeof msg];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	size_t len = n < 0 ? 0 : (size_t)n >= sizeof msg ? sizeof msg - 1 : (size_t)n;
	struct sbx_wr w;
	sbx_wr_init(&w, payload, sizeof payload);
	sbx_wr_u32(&w, (uint32_t)(int32_t)err);
	sbx_wr_str(&w, msg, len);
	return port_send(p, SBX_T_ERROR, stream, payload, w.off);
}

uint8_t *port_data_reserve(struct port *p, size_t max)
{
	uint8_t *dst = buf_reserve(&p->out, SBX_PROTO_HDR_SIZE + max);
	return dst ? dst + SBX_PROTO_HDR_SIZE : NULL;
}

void port_data_commit(struct port *p, uint8_t type, uint32_t stream, size_t n)
{
	pack_hdr(p->out.data + p->out.tail, type, stream, n);
	buf_commit(&p->out, SBX_PROTO_HDR_SIZE + n);
}

int port_flush(struct port *p)
{
	while (buf_len(&p->out)) {
		ssize_t n = write(p->fd, buf_peek(&p->out), buf_len(&p->out));
		if (n > 0) {
			buf_consume(&p->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		return -1;
	}
	/* After a big burst the queue may be megabytes: give it back. */
	if (p->out.cap > (256u << 10))
		buf_reset(&p->out);
	return 0;
}

/* A virtio port keeps what the previous host sent until read; none of it
 * may leak into the next connection. */
static void virtio_discard(int fd)
{
	uint8_t scratch[4096];
	for (int i = 0; i < 1024; i++)
		if (read(fd, scratch, sizeof scratch) <= 0)
			break;
}

void port_drop(struct port *p, uint64_t now)
{
	buf_reset(&p->in);
	buf_reset(&p->out);
	p->in_pending = 0;
	p->state = PS_DOWN;
	switch (p->mode) {
	case PORT_VIRTIO:
		virtio_discard(p->fd);
		p->retry_at = now + VIRTIO_RETRY_MS;
		break;
	case PORT_CONNECT:
		close(p->fd);
		p->fd = -1;
		p->retry_at = now;
		p->give_up_at = now + CONNECT_GIVE_UP_MS;
		break;
	case PORT_LISTEN:
		close(p->fd);
		p->fd = -1;
		break;
	}
}

void port_close_soon(struct port *p)
{
	buf_reset(&p->in);
	p->in_pending = 0;
	p->state = PS_CLOSING;
}

int port_closing_done(const struct port *p)
{
	return p->state == PS_CLOSING && p->mode != PORT_VIRTIO && buf_len(&p->out) == 0;
}
