/* Network streams: listeners, stream ids, host frame dispatch, poll glue
 * (see net.h). */
#define _GNU_SOURCE
#include "net.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Network reads stop above this much queued output; exec output stops at
 * PORT_OUT_SOFT_MAX (higher), so a busy download never starves it. */
#define NET_OUT_SOFT_MAX (256u << 10)
#define LISTEN_BACKLOG 128

struct port *g_net_port;
int g_net_test_mode;
/* Counter part of the last agent stream id handed out on this connection. */
static uint32_t g_last_id;
static int g_tcp_lfd[2] = {-1, -1};
static size_t g_n_listen, g_n_tcp, g_n_dns; /* slots of the last prepare */

uint32_t net_new_stream(void)
{
	if (g_last_id >= ~SBX_STREAM_AGENT)
		return 0;
	return SBX_STREAM_AGENT | ++g_last_id;
}

int net_can_send(void)
{
	return g_net_port->state == PS_UP && port_out_len(g_net_port) < NET_OUT_SOFT_MAX;
}

void net_host_error(uint32_t stream, const char *what, uint8_t type)
{
	port_send_error(g_net_port, 0, EPROTO, "stream 0x%08x: %s (frame type 0x%02x)", stream,
			what, type);
}

/* A bound, non-blocking socket on loopback, or -1 (logged: the family may
 * be missing, e.g. IPv6 disabled; the other one still works). */
static int open_socket(int family, int type, uint16_t port)
{
	int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_msg("network: socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof ss);
	if (family == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof *a;
	} else {
		/* v4 connections come to the v4 socket, already redirected
		 * to 127.0.0.1; this one must not claim them. */
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		a->sin6_addr = in6addr_loopback;
		len = sizeof *a;
	}
	if (bind(fd, (struct sockaddr *)&ss, len) != 0 ||
	    (type == SOCK_STREAM && listen(fd, LISTEN_BACKLOG) != 0)) {
		log_msg("network: %s %s port %u: %s", family == AF_INET ? "127.0.0.1" : "[::1]",
			type == SOCK_STREAM ? "TCP" : "UDP", port, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

void net_init(struct port *p, uint16_t tcp_port, uint16_t dns_port, int test_mode)
{
	g_net_port = p;
	g_net_test_mode = test_mode;
	if (!tcp_port)
		tcp_port = NET_TCP_PORT;
	if (!dns_port)
		dns_port = NET_DNS_PORT;
	g_tcp_lfd[0] = open_socket(AF_INET, SOCK_STREAM, tcp_port);
	g_tcp_lfd[1] = open_socket(AF_INET6, SOCK_STREAM, tcp_port);
	tcp_listen_fds(g_tcp_lfd[0], g_tcp_lfd[1]);
	dns_sockets(open_socket(AF_INET, SOCK_DGRAM, dns_port),
		    open_socket(AF_INET6, SOCK_DGRAM, dns_port),
		    open_socket(AF_INET, SOCK_STREAM, dns_port),
		    open_socket(AF_INET6, SOCK_STREAM, dns_port));
}

size_t net_poll_prepare(struct pollfd *pfd, size_t cap)
{
	size_t n = 0;
	g_n_listen = g_n_tcp = g_n_dns = 0;
	if (!g_net_port)
		return 0; /* networking off (test mode without ports) */
	for (int i = 0; i < 2; i++)
		if (g_tcp_lfd[i] >= 0 && n < cap)
			pfd[n++] = (struct pollfd){g_tcp_lfd[i], POLLIN, 0};
	g_n_listen = n;
	g_n_tcp = tcp_poll_prepare(pfd + n, cap - n);
	n += g_n_tcp;
	g_n_dns = dns_poll_prepare(pfd + n, cap - n);
	return n + g_n_dns;
}

void net_poll_process(const struct pollfd *pfd, size_t n, uint64_t now)
{
	if (n != g_n_listen + g_n_tcp + g_n_dns)
		return; /* not what we prepared: never happens */
	/* Streams first: a new connection's data is read next time round. */
	tcp_poll_process(pfd + g_n_listen, g_n_tcp, now);
	dns_poll_process(pfd + g_n_listen + g_n_tcp, g_n_dns, now);
	for (size_t i = 0; i < g_n_listen; i++)
		if (pfd[i].revents)
			tcp_accept(pfd[i].fd, now);
}

uint64_t net_tick(uint64_t now)
{
	if (!g_net_port)
		return 0;
	uint64_t a = tcp_tick(now), b = dns_tick(now);
	return !a || (b && b < a) ? b : a;
}

void net_frame(struct port *p, const struct sbx_frame_hdr *h, const uint8_t *payload, uint64_t now)
{
	if (!g_net_port) {
		port_send_error(p, 0, EPROTO,
				"frame type 0x%02x for agent stream 0x%08x: no network", h->type,
				h->stream);
		return;
	}
	if (tcp_frame(h, payload, now) || dns_frame(h, payload, now))
		return;
	/* Not a live stream. One we opened earlier may have ended while the
	 * host still had frames for it in flight: those are ignored. */
	uint32_t counter = h->stream & ~SBX_STREAM_AGENT;
	if (counter == 0 || counter > g_last_id)
		net_host_error(h->stream, "agent stream id never opened", h->type);
}

void net_reset(void)
{
	if (!g_net_port)
		return;
	tcp_reset_all();
	dns_reset_all();
	g_last_id = 0;
}
