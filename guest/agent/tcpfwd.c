/* TCP relays: each guest connection nftables redirected to the transparent
 * listener becomes one network stream (doc/protocol.md, "TCP"). */
#define _GNU_SOURCE
#include "buf.h"
#include "log.h"
#include "net.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>,
 * which clash with <netinet/in.h>. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

/* Credit for host data is given back in batches of this, or as soon as
 * the queue towards the guest is empty. */
#define GRANT_BATCH (64u << 10)
#define CREDIT_MAX (UINT64_C(1) << 62)
/* After a graceful TCP_CLOSE: how long we keep writing what the host sent
 * to a guest that does not read it, before resetting. */
#define LINGER_MS 10000
/* Connections taken per listener per poll round. */
#define ACCEPT_BATCH 16

struct tconn {
	uint32_t id;	       /* 0 once the stream is over (flushing, or dead) */
	int fd;		       /* the guest's connection; -1 once closed */
	int dead;	       /* freed by tcp_tick */
	uint64_t out_credit;   /* guest -> host TCP_DATA bytes we may still send */
	uint64_t in_credit;    /* host -> guest bytes the host may still send */
	uint64_t in_grant;     /* written to the guest, not yet granted back */
	struct buf inq;	       /* host data not yet taken by the guest socket */
	int rd_eof;	       /* the guest's FIN was read (TCP_EOF sent) */
	int host_eof;	       /* TCP_EOF received */
	int wr_shut;	       /* our FIN is sent (shutdown SHUT_WR) */
	int hup;	       /* hang-up seen with no credit to read: wait for WINDOW */
	uint64_t linger_until; /* id 0: give up flushing then */
};

static int g_lfd4 = -1, g_lfd6 = -1;
static struct tconn *g_tab[NET_TCP_MAX];
static size_t g_n, g_rr;
static struct tconn *g_ref[NET_TCP_MAX];
static uint8_t g_scratch[16384];

void tcp_listen_fds(int fd4, int fd6)
{
	g_lfd4 = fd4;
	g_lfd6 = fd6;
}

/* Close so that the guest program sees a reset at once. */
static void close_rst(int fd)
{
	struct linger l = {1, 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	close(fd);
}

static void finish(struct tconn *c, int rst)
{
	if (c->fd >= 0) {
		if (rst)
			close_rst(c->fd);
		else
			close(c->fd);
		c->fd = -1;
	}
	buf_reset(&c->inq);
	c->id = 0;
	c->dead = 1;
}

static void send_close(struct tconn *c, uint8_t how, uint8_t reason)
{
	uint8_t pl[4] = {how, reason, 0, 0};
	port_send(g_net_port, SBX_T_TCP_CLOSE, c->id, pl, sizeof pl);
	c->id = 0;
}

/* End the stream with an abort both ways: TCP_CLOSE to the host (if it
 * still knows the stream), a reset to the guest. */
static void abort_stream(struct tconn *c, uint8_t reason)
{
	if (c->id)
		send_close(c, SBX_TCP_CLOSE_ABORT, reason);
	finish(c, 1);
}

/* The guest socket failed (reset, usually). */
static void guest_failed(struct tconn *c, int err)
{
	abort_stream(c, err == ECONNRESET || err == EPIPE ? SBX_TCP_R_RESET : SBX_TCP_R_ERROR);
}

/* ---- accepting ---------------------------------------------------------- */

static int same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port &&
	       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

/* TCP_OPEN payload for the connection's original destination, as
 * nftables' redirect recorded it in conntrack. A connection made straight
 * to the listener (not redirected) has none and is refused. Returns 0 or
 * -1. */
static int open_payload(int fd, int v6, uint8_t pl[SBX_TCP_OPEN_SIZE])
{
	struct sockaddr_storage od, self;
	socklen_t olen = sizeof od, slen = sizeof self;
	memset(&od, 0, sizeof od);
	int r = v6 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &od, &olen)
		   : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &od, &olen);
	if (getsockname(fd, (struct sockaddr *)&self, &slen) != 0)
		return -1;
	if (g_net_test_mode) {
		if (r != 0)
			od = self; /* no nftables outside the VM */
	} else if (r != 0 || same_endpoint(&od, &self)) {
		return -1;
	}
	struct sbx_wr w;
	sbx_wr_init(&w, pl, SBX_TCP_OPEN_SIZE);
	if (od.ss_family == AF_INET) {
		const struct sockaddr_in *a = (const void *)&od;
		uint8_t addr[16] = {0};
		memcpy(addr, &a->sin_addr, 4);
		sbx_wr_u8(&w, 4);
		sbx_wr_u8(&w, 0);
		sbx_wr_u16(&w, ntohs(a->sin_port));
		sbx_wr_bytes(&w, addr, 16);
	} else if (od.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)&od;
		sbx_wr_u8(&w, 6);
		sbx_wr_u8(&w, 0);
		sbx_wr_u16(&w, ntohs(a->sin6_port));
		sbx_wr_bytes(&w, &a->sin6_addr, 16);
	} else {
		return -1;
	}
	return w.bad || w.off != SBX_TCP_OPEN_SIZE ? -1 : 0;
}

static void new_conn(int fd, int v6)
{
	uint8_t pl[SBX_TCP_OPEN_SIZE];
	if (g_n >= NET_TCP_MAX || g_net_port->state != PS_UP || open_payload(fd, v6, pl) != 0) {
		close_rst(fd);
		return;
	}
	struct tconn *c = calloc(1, sizeof *c);
	uint32_t id = c ? net_new_stream() : 0;
	if (!id) {
		free(c);
		close_rst(fd);
		return;
	}
	c->id = id;
	c->fd = fd;
	c->out_credit = SBX_PROTO_INITIAL_WINDOW;
	c->in_credit = SBX_PROTO_INITIAL_WINDOW;
	buf_init(&c->inq);
	/* What the host sends should reach the guest program as sent. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	g_tab[g_n++] = c;
	port_send(g_net_port, SBX_T_TCP_OPEN, id, pl, sizeof pl);
}

void tcp_accept(int lfd, uint64_t now)
{
	(void)now;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return; /* EAGAIN, or a connection that died in the queue */
		new_conn(fd, lfd == g_lfd6);
	}
}

/* ---- data ---------------------------------------------------------------- */

/* Write queued host data to the guest; once it is all written, pass on
 * the host's EOF (or, after a graceful close, our own). */
static void flush_to_guest(struct tconn *c)
{
	while (buf_len(&c->inq)) {
		ssize_t n = send(c->fd, buf_peek(&c->inq), buf_len(&c->inq), MSG_NOSIGNAL);
		if (n > 0) {
			buf_consume(&c->inq, (size_t)n);
			if (c->id)
				c->in_grant += (uint64_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			return;
		} else {
			guest_failed(c, n < 0 ? errno : EIO);
			return;
		}
	}
	buf_reset(&c->inq); /* a burst must not pin memory */
	if ((c->host_eof || !c->id) && !c->wr_shut) {
		shutdown(c->fd, SHUT_WR);
		c->wr_shut = 1;
	}
	if (!c->id && c->rd_eof)
		finish(c, 0); /* flushed after a graceful close, guest done too */
}

static void read_from_guest(struct tconn *c)
{
	size_t max = SBX_PROTO_MAX_PAYLOAD;
	if (c->out_credit < max)
		max = (size_t)c->out_credit;
	uint8_t *dst = port_data_reserve(g_net_port, max);
	if (!dst)
		return; /* out of memory: try again later */
	ssize_t n = read(c->fd, dst, max);
	if (n > 0) {
		port_data_commit(g_net_port, SBX_T_TCP_DATA, c->id, (size_t)n);
		c->out_credit -= (uint64_t)n;
	} else if (n == 0) {
		port_send(g_net_port, SBX_T_TCP_EOF, c->id, NULL, 0);
		c->rd_eof = 1;
	} else if (errno != EAGAIN && errno != EINTR) {
		guest_failed(c, errno);
	}
}

/* After a graceful close: what the guest still sends has nowhere to go.
 * Read it away so that our close ends in a FIN, not a reset (Linux resets
 * a connection closed with unread data). */
static void discard_from_guest(struct tconn *c)
{
	ssize_t n = read(c->fd, g_scratch, sizeof g_scratch);
	if (n == 0) {
		c->rd_eof = 1;
		if (c->wr_shut)
			finish(c, 0);
	} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
		finish(c, 1);
	}
}

static int sock_error(int fd)
{
	int err = 0;
	socklen_t len = sizeof err;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		return errno;
	return err;
}

/* ---- poll ---------------------------------------------------------------- */

static short conn_events(const struct tconn *c, int can_send)
{
	short ev = 0;
	if (buf_len(&c->inq))
		ev |= POLLOUT;
	if (!c->id) {
		if (!c->rd_eof)
			ev |= POLLIN; /* discarding */
	} else if (!c->rd_eof && !c->hup && c->out_credit && can_send) {
		ev |= POLLIN;
	}
	return ev;
}

size_t tcp_poll_prepare(struct pollfd *pfd, size_t cap)
{
	size_t n = 0;
	int can_send = net_can_send();
	/* Round robin: when the port queue has room for a few reads only,
	 * the same streams must not always get them. */
	g_rr = g_n ? (g_rr + 1) % g_n : 0;
	for (size_t k = 0; k < g_n && n < cap; k++) {
		struct tconn *c = g_tab[(g_rr + k) % g_n];
		if (c->dead)
			continue;
		short ev = conn_events(c, can_send);
		/* A stream still reading is polled even without events, so a
		 * reset from the guest is noticed while it waits for credit. */
		if (!ev && !(c->id && !c->rd_eof && !c->hup))
			continue;
		pfd[n] = (struct pollfd){c->fd, ev, 0};
		g_ref[n++] = c;
	}
	return n;
}

void tcp_poll_process(const struct pollfd *pfd, size_t n, uint64_t now)
{
	(void)now;
	for (size_t i = 0; i < n; i++) {
		struct tconn *c = g_ref[i];
		short re = pfd[i].revents;
		if (!re || c->dead || c->fd != pfd[i].fd)
			continue;
		if (re & POLLERR) {
			int err = sock_error(c->fd);
			if (err) {
				guest_failed(c, err);
				continue;
			}
		}
		if (re & POLLOUT)
			flush_to_guest(c);
		if (c->dead || !(re & (POLLIN | POLLHUP)))
			continue;
		if (!c->id)
			discard_from_guest(c);
		else if (!c->rd_eof && c->out_credit && net_can_send())
			read_from_guest(c);
		else if (re & POLLHUP)
			c->hup = 1; /* level-triggered: do not spin on it */
	}
}

static void grant(struct tconn *c)
{
	if (!c->id || !c->in_grant)
		return;
	if (c->in_grant < GRANT_BATCH && buf_len(&c->inq))
		return;
	uint8_t pl[4];
	struct sbx_wr w;
	sbx_wr_init(&w, pl, sizeof pl);
	sbx_wr_u32(&w, (uint32_t)c->in_grant); /* <= the initial window */
	port_send(g_net_port, SBX_T_WINDOW, c->id, pl, w.off);
	c->in_credit += c->in_grant;
	c->in_grant = 0;
}

uint64_t tcp_tick(uint64_t now)
{
	uint64_t next = 0;
	for (size_t i = 0; i < g_n; i++) {
		struct tconn *c = g_tab[i];
		if (c->dead)
			continue;
		grant(c);
		if (!c->id) {
			if (now >= c->linger_until)
				finish(c, 1);
			else if (!next || c->linger_until < next)
				next = c->linger_until;
		}
	}
	for (size_t i = 0; i < g_n;) {
		if (g_tab[i]->dead) {
			buf_free(&g_tab[i]->inq);
			free(g_tab[i]);
			g_tab[i] = g_tab[--g_n];
		} else {
			i++;
		}
	}
	return next;
}

/* ---- host frames --------------------------------------------------------- */

static struct tconn *find(uint32_t id)
{
	for (size_t i = 0; i < g_n; i++)
		if (g_tab[i]->id == id && !g_tab[i]->dead)
			return g_tab[i];
	return NULL;
}

static const char *on_data(struct tconn *c, const uint8_t *p, uint32_t len)
{
	if (len == 0)
		return "empty TCP_DATA";
	if (c->host_eof)
		return "TCP_DATA after TCP_EOF";
	if (len > c->in_credit)
		return "TCP_DATA beyond the granted window";
	c->in_credit -= len;
	if (buf_append(&c->inq, p, len) != 0)
		return "out of memory for TCP_DATA";
	flush_to_guest(c);
	return NULL;
}

static const char *on_close(struct tconn *c, const uint8_t *p, uint32_t len, uint64_t now)
{
	if (len != 4 || p[0] > SBX_TCP_CLOSE_ABORT || p[2] || p[3])
		return "malformed TCP_CLOSE";
	if (p[0] == SBX_TCP_CLOSE_ABORT) {
		c->id = 0;
		finish(c, 1);
		return NULL;
	}
	/* Graceful: the stream is over for the protocol; the socket stays
	 * until what the host sent is written and our FIN is out. */
	c->id = 0;
	c->in_grant = 0;
	c->linger_until = now + LINGER_MS;
	flush_to_guest(c);
	return NULL;
}

int tcp_frame(const struct sbx_frame_hdr *h, const uint8_t *payload, uint64_t now)
{
	struct tconn *c = find(h->stream);
	if (!c)
		return 0;
	const char *bad = NULL;
	struct sbx_rd r;
	sbx_rd_init(&r, payload, h->len);
	switch (h->type) {
	case SBX_T_TCP_DATA: bad = on_data(c, payload, h->len); break;
	case SBX_T_TCP_EOF:
		if (h->len != 0 || c->host_eof) {
			bad = h->len ? "TCP_EOF with a payload" : "duplicate TCP_EOF";
			break;
		}
		c->host_eof = 1;
		if (!buf_len(&c->inq))
			flush_to_guest(c);
		break;
	case SBX_T_TCP_CLOSE: bad = on_close(c, payload, h->len, now); break;
	case SBX_T_WINDOW: {
		uint32_t n = sbx_rd_u32(&r);
		if (!sbx_rd_done(&r)) {
			bad = "malformed WINDOW";
			break;
		}
		c->out_credit += n;
		if (c->out_credit > CREDIT_MAX)
			c->out_credit = CREDIT_MAX;
		c->hup = 0;
		break;
	}
	default: bad = "frame type not valid from the host on a TCP stream"; break;
	}
	if (bad) {
		net_host_error(h->stream, bad, h->type);
		if (!c->dead)
			abort_stream(c, SBX_TCP_R_ERROR);
	}
	return 1;
}

void tcp_reset_all(void)
{
	for (size_t i = 0; i < g_n; i++) {
		struct tconn *c = g_tab[i];
		if (c->fd >= 0)
			close_rst(c->fd);
		buf_free(&c->inq);
		free(c);
	}
	g_n = 0;
	g_rr = 0;
}
