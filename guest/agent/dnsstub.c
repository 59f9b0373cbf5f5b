/* DNS stub: every query nftables redirected to port 53 on loopback (UDP,
 * or TCP with its 2-byte length prefixes) becomes one network stream with
 * DNS_QUERY; the host's DNS_REPLY goes back to that client
 * (doc/protocol.md, "DNS"). */
#define _GNU_SOURCE
#include "buf.h"
#include "log.h"
#include "net.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DNS_HDR 12
/* DNS_QUERY carries 4 bytes before the message: the frame limit leaves
 * this much for the message itself. */
#define DNS_QUERY_MAX (SBX_PROTO_MAX_PAYLOAD - 4)
#define DNS_TCP_MSG_MAX 65535u
/* A TCP client with nothing outstanding is closed after this long. */
#define DNS_TCP_IDLE_MS 10000
/* Stop reading a TCP client's queries while this many reply bytes wait. */
#define DNS_TCP_OUT_MAX (64u << 10)
#define RECV_BATCH 16

enum { K_UDP4, K_UDP6, K_TCP };

struct query {
	uint32_t id;
	uint64_t deadline;
	int kind;
	struct sockaddr_storage peer; /* UDP: where the reply goes */
	socklen_t peer_len;
	int conn;     /* K_TCP: index into g_conn */
	uint32_t gen; /* K_TCP: that connection's generation */
};

struct dconn {
	int fd; /* -1: free slot */
	uint32_t gen;
	struct buf in, out;
	unsigned outstanding;
	int rd_eof;
	uint64_t idle_until;
};

static int g_udp[2] = {-1, -1};
static int g_ltcp[2] = {-1, -1};
static struct query g_q[NET_DNS_MAX];
static size_t g_nq;
static struct dconn g_conn[NET_DNS_TCP_MAX];
static uint8_t g_buf[SBX_PROTO_MAX_PAYLOAD];
/* poll slots: socket kind, and the connection index for K_TCP / listeners */
enum { S_UDP, S_LISTEN, S_CONN };
static uint8_t g_slot_kind[NET_POLL_MAX];
static int g_slot_idx[NET_POLL_MAX];

void dns_sockets(int udp4, int udp6, int tcp4, int tcp6)
{
	g_udp[0] = udp4;
	g_udp[1] = udp6;
	g_ltcp[0] = tcp4;
	g_ltcp[1] = tcp6;
	for (int i = 0; i < NET_DNS_TCP_MAX; i++) {
		g_conn[i].fd = -1;
		buf_init(&g_conn[i].in);
		buf_init(&g_conn[i].out);
	}
}

static void conn_close(struct dconn *c)
{
	if (c->fd < 0)
		return;
	close(c->fd);
	c->fd = -1;
	c->gen++; /* replies still to come for it are dropped */
	c->outstanding = 0;
	c->rd_eof = 0;
	buf_reset(&c->in);
	buf_reset(&c->out);
}

static void forget_query(size_t i)
{
	struct query *q = &g_q[i];
	if (q->kind == K_TCP) {
		struct dconn *c = &g_conn[q->conn];
		if (c->fd >= 0 && c->gen == q->gen && c->outstanding)
			c->outstanding--;
	}
	g_q[i] = g_q[--g_nq];
}

/* Forward one query; dropped (as the spec allows) when too many are
 * outstanding, the host is away, or the message cannot be a DNS query. */
static int send_query(int kind, const uint8_t *msg, size_t len, const struct sockaddr_storage *peer,
		      socklen_t peer_len, int conn, uint64_t now)
{
	if (len < DNS_HDR || len > DNS_QUERY_MAX || g_nq >= NET_DNS_MAX ||
	    g_net_port->state != PS_UP)
		return -1;
	uint32_t id = net_new_stream();
	if (!id)
		return -1;
	uint8_t *dst = port_data_reserve(g_net_port, 4 + len);
	if (!dst)
		return -1;
	dst[0] = kind == K_TCP ? SBX_DNS_T_TCP : SBX_DNS_T_UDP;
	dst[1] = dst[2] = dst[3] = 0;
	memcpy(dst + 4, msg, len);
	port_data_commit(g_net_port, SBX_T_DNS_QUERY, id, 4 + len);
	struct query *q = &g_q[g_nq++];
	memset(q, 0, sizeof *q);
	q->id = id;
	q->deadline = now + NET_DNS_TIMEOUT_MS;
	q->kind = kind;
	if (peer) {
		q->peer = *peer;
		q->peer_len = peer_len;
	}
	if (kind == K_TCP) {
		q->conn = conn;
		q->gen = g_conn[conn].gen;
		g_conn[conn].outstanding++;
	}
	return 0;
}

/* ---- UDP ----------------------------------------------------------------- */

static void udp_receive(int which, uint64_t now)
{
	for (int i = 0; i < RECV_BATCH; i++) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof peer;
		ssize_t n =
		    recvfrom(g_udp[which], g_buf, sizeof g_buf, 0, (struct sockaddr *)&peer, &plen);
		if (n < 0)
			return;
		send_query(which == 0 ? K_UDP4 : K_UDP6, g_buf, (size_t)n, &peer, plen, -1, now);
	}
}

/* ---- TCP ----------------------------------------------------------------- */

static void tcp_accept_dns(int lfd, uint64_t now)
{
	for (int i = 0; i < RECV_BATCH; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct dconn *c = NULL;
		for (int k = 0; k < NET_DNS_TCP_MAX && !c; k++)
			if (g_conn[k].fd < 0)
				c = &g_conn[k];
		if (!c || g_net_port->state != PS_UP) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->idle_until = now + DNS_TCP_IDLE_MS;
	}
}

static void conn_flush(struct dconn *c)
{
	while (buf_len(&c->out)) {
		ssize_t n = send(c->fd, buf_peek(&c->out), buf_len(&c->out), MSG_NOSIGNAL);
		if (n > 0) {
			buf_consume(&c->out, (size_t)n);
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			return;
		} else {
			conn_close(c);
			return;
		}
	}
	buf_reset(&c->out);
}

/* Split the length-prefixed messages read so far into queries. */
static void conn_parse(struct dconn *c, uint64_t now)
{
	int idx = (int)(c - g_conn);
	while (buf_len(&c->in) >= 2) {
		const uint8_t *p = buf_peek(&c->in);
		size_t mlen = (size_t)p[0] << 8 | p[1];
		if (mlen < DNS_HDR) {
			conn_close(c); /* not DNS: the framing cannot be trusted */
			return;
		}
		if (buf_len(&c->in) < 2 + mlen)
			return;
		send_query(K_TCP, p + 2, mlen, NULL, 0, idx, now);
		buf_consume(&c->in, 2 + mlen);
		c->idle_until = now + DNS_TCP_IDLE_MS;
	}
}

static void conn_read(struct dconn *c, uint64_t now)
{
	size_t room = 2 + DNS_TCP_MSG_MAX - buf_len(&c->in);
	uint8_t *dst = buf_reserve(&c->in, room);
	if (!dst)
		return;
	ssize_t n = read(c->fd, dst, room);
	if (n > 0) {
		buf_commit(&c->in, (size_t)n);
		conn_parse(c, now);
	} else if (n == 0) {
		c->rd_eof = 1;
	} else if (errno != EAGAIN && errno != EINTR) {
		conn_close(c);
	}
}

static int conn_wants_read(const struct dconn *c)
{
	return !c->rd_eof && buf_len(&c->out) < DNS_TCP_OUT_MAX && g_nq < NET_DNS_MAX &&
	       net_can_send();
}

/* ---- poll ---------------------------------------------------------------- */

static size_t add(struct pollfd *pfd, size_t n, int fd, short ev, int kind, int idx)
{
	pfd[n] = (struct pollfd){fd, ev, 0};
	g_slot_kind[n] = (uint8_t)kind;
	g_slot_idx[n] = idx;
	return n + 1;
}

size_t dns_poll_prepare(struct pollfd *pfd, size_t cap)
{
	size_t n = 0;
	if (cap > NET_POLL_MAX)
		cap = NET_POLL_MAX;
	int can_send = net_can_send();
	for (int i = 0; i < 2; i++) {
		/* Over the limit a UDP query is read and dropped; while the
		 * port is full it waits in the socket. */
		if (g_udp[i] >= 0 && can_send && n < cap)
			n = add(pfd, n, g_udp[i], POLLIN, S_UDP, i);
		if (g_ltcp[i] >= 0 && n < cap)
			n = add(pfd, n, g_ltcp[i], POLLIN, S_LISTEN, i);
	}
	for (int k = 0; k < NET_DNS_TCP_MAX && n < cap; k++) {
		struct dconn *c = &g_conn[k];
		if (c->fd < 0)
			continue;
		short ev = 0;
		if (conn_wants_read(c))
			ev |= POLLIN;
		if (buf_len(&c->out))
			ev |= POLLOUT;
		if (ev)
			n = add(pfd, n, c->fd, ev, S_CONN, k);
	}
	return n;
}

void dns_poll_process(const struct pollfd *pfd, size_t n, uint64_t now)
{
	for (size_t i = 0; i < n; i++) {
		short re = pfd[i].revents;
		int idx = g_slot_idx[i];
		if (!re)
			continue;
		if (g_slot_kind[i] == S_UDP) {
			udp_receive(idx, now);
		} else if (g_slot_kind[i] == S_LISTEN) {
			tcp_accept_dns(pfd[i].fd, now);
		} else {
			struct dconn *c = &g_conn[idx];
			if (c->fd != pfd[i].fd)
				continue;
			if (re & POLLOUT)
				conn_flush(c);
			if (c->fd >= 0 && (re & (POLLIN | POLLHUP | POLLERR)))
				conn_read(c, now);
		}
	}
}

static uint64_t earlier(uint64_t a, uint64_t b)
{
	return !a || (b && b < a) ? b : a;
}

uint64_t dns_tick(uint64_t now)
{
	uint64_t next = 0;
	for (size_t i = 0; i < g_nq;) {
		if (now >= g_q[i].deadline) {
			forget_query(i); /* the host never answered */
			continue;
		}
		next = earlier(next, g_q[i].deadline);
		i++;
	}
	for (int k = 0; k < NET_DNS_TCP_MAX; k++) {
		struct dconn *c = &g_conn[k];
		if (c->fd < 0 || c->outstanding || buf_len(&c->out))
			continue;
		if (c->rd_eof || now >= c->idle_until)
			conn_close(c); /* done, or idle too long */
		else
			next = earlier(next, c->idle_until);
	}
	return next;
}

/* ---- host frames --------------------------------------------------------- */

static void deliver(const struct query *q, const uint8_t *msg, uint32_t len)
{
	if (len == 0)
		return; /* the host chose not to answer: the client times out */
	if (q->kind != K_TCP) {
		/* From the stub socket, so conntrack turns the source back
		 * into the server address the client asked. */
		sendto(g_udp[q->kind == K_UDP4 ? 0 : 1], msg, len, MSG_DONTWAIT | MSG_NOSIGNAL,
		       (const struct sockaddr *)&q->peer, q->peer_len);
		return;
	}
	struct dconn *c = &g_conn[q->conn];
	if (c->fd < 0 || c->gen != q->gen || len > DNS_TCP_MSG_MAX)
		return;
	uint8_t pre[2] = {(uint8_t)(len >> 8), (uint8_t)len};
	if (buf_append(&c->out, pre, 2) != 0 || buf_append(&c->out, msg, len) != 0) {
		conn_close(c);
		return;
	}
	conn_flush(c);
}

int dns_frame(const struct sbx_frame_hdr *h, const uint8_t *payload, uint64_t now)
{
	(void)now;
	for (size_t i = 0; i < g_nq; i++) {
		if (g_q[i].id != h->stream)
			continue;
		struct query q = g_q[i];
		forget_query(i);
		if (h->type != SBX_T_DNS_REPLY)
			net_host_error(h->stream, "frame type not valid on a DNS stream", h->type);
		else
			deliver(&q, payload, h->len);
		return 1;
	}
	return 0;
}

void dns_reset_all(void)
{
	g_nq = 0;
	for (int k = 0; k < NET_DNS_TCP_MAX; k++)
		conn_close(&g_conn[k]);
}
