/* Test tool: a minimal intercepting relay built from the library's TLS and
 * HTTP modules, so real clients (curl, Python, Node) can be run against
 * them on loopback before the proxy thread exists. One connection at a
 * time, poll() on two sockets; everything else is the modules' job.
 *
 *   intercept_relay LISTEN_PORT UPSTREAM_PORT NAME EXTRA_CA CA_OUT SECRET_NAME
 *
 * The secret's value is read from the environment variable named
 * SECRET_NAME (never from argv, which other processes can read). The relay
 * writes its CA certificate to CA_OUT, prints "PLACEHOLDER <ph>" and
 * serves until killed. Upstream is 127.0.0.1:UPSTREAM_PORT, verified as
 * NAME against EXTRA_CA. The secret is allowed when the Host header is
 * $RELAY_SECRET_HOST (default NAME), with or without a port;
 * $RELAY_BLOCK_MISDIRECTED set turns on blocking of misdirected
 * placeholders. Events go to stderr. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http1.h"
#include "placeholder.h"
#include "tlsca.h"
#include "tlsio.h"

static const char *g_name, *g_secret_host;

static void decide(void *ud, const struct sbx_http_request_info *req, struct sbx_http_decision *d)
{
	(void)ud;
	size_t n = strlen(g_secret_host);
	if (req->host && strncmp(req->host, g_secret_host, n) == 0 &&
	    (req->host[n] == '\0' || req->host[n] == ':'))
		d->secrets = 1;
}

static void on_event(void *ud, const struct sbx_http_event *ev)
{
	(void)ud;
	if (ev->kind == SBX_HTTP_EV_MISDIRECTED)
		fprintf(stderr, "event secret.misdirected secret=%s where=%s host=%s\n", ev->secret,
			ev->where, ev->host);
	else
		fprintf(stderr,
			"event http.request %s %s://%s:%u%s status=%d up=%llu down=%llu "
			"secrets=%s\n",
			ev->method, ev->scheme, ev->host, ev->port, ev->path, ev->status,
			(unsigned long long)ev->bytes_up, (unsigned long long)ev->bytes_down,
			ev->secrets_used);
}

static int connect_upstream(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One side's socket and TLS endpoint, with ciphertext read from the
 * socket but not yet taken by the endpoint. */
struct side {
	int fd;
	struct sbx_tlsio *io;
	unsigned char in[16384];
	size_t in_off, in_len;
	int eof;
	unsigned char plain[16384]; /* plaintext the processor has not taken yet */
	size_t plain_off, plain_len;
};

/* Endpoint -> socket, pending ciphertext -> endpoint. 1 if anything moved,
 * -1 on a write error. */
static int move_cipher(struct side *s)
{
	unsigned char buf[16384];
	size_t n;
	int moved = 0;
	while ((n = sbx_tlsio_net_out(s->io, buf, sizeof buf)) > 0) {
		if (write(s->fd, buf, n) != (ssize_t)n)
			return -1;
		moved = 1;
	}
	if (s->in_len) {
		size_t took = sbx_tlsio_net_in(s->io, s->in + s->in_off, s->in_len);
		s->in_off += took;
		s->in_len -= took;
		moved |= took > 0;
	}
	return moved;
}

static void read_socket(struct side *s)
{
	if (s->in_len || s->eof)
		return;
	ssize_t r = read(s->fd, s->in, sizeof s->in);
	if (r <= 0)
		s->eof = 1;
	else
		s->in_off = 0, s->in_len = (size_t)r;
}

/* One TLS record's worth of plaintext into the processor, if its output
 * toward the other side has room. 1 moved, 0 nothing, -1 error/EOF. */
static int plain_in(struct side *s, struct sbx_http_conn *c, int request)
{
	const unsigned char *p;
	size_t queued = request ? sbx_http_peek_upstream(c, &p) : sbx_http_peek_guest(c, &p);
	if (queued >= 128 * 1024)
		return 0;
	if (!s->plain_len) {
		ssize_t n = sbx_tlsio_read(s->io, s->plain, sizeof s->plain);
		if (n == SBX_TLSIO_AGAIN)
			return 0;
		if (n < 0)
			return -1;
		s->plain_off = 0;
		s->plain_len = (size_t)n;
	}
	/* the processor may take less (back-pressure): the rest waits */
	size_t took = request ? sbx_http_feed_request(c, s->plain + s->plain_off, s->plain_len)
			      : sbx_http_feed_response(c, s->plain + s->plain_off, s->plain_len);
	s->plain_off += took;
	s->plain_len -= took;
	return took > 0;
}

static int plain_out(struct side *s, struct sbx_http_conn *c, int upstream)
{
	const unsigned char *p;
	size_t n = upstream ? sbx_http_peek_upstream(c, &p) : sbx_http_peek_guest(c, &p);
	if (!n)
		return 0;
	ssize_t w = sbx_tlsio_write(s->io, p, n);
	if (w <= 0)
		return 0;
	if (upstream)
		sbx_http_consume_upstream(c, (size_t)w);
	else
		sbx_http_consume_guest(c, (size_t)w);
	return 1;
}

static void serve(int cfd, int up_port, struct sbx_tlsca *ca, SSL_CTX *uctx,
		  const struct sbx_http_config *cfg)
{
	char err[200];
	struct side g = {.fd = cfd}, u = {.fd = connect_upstream(up_port)};
	if (u.fd < 0)
		return;
	g.io = sbx_tlsio_new(sbx_tlsca_server_ssl(ca, g_name, err, sizeof err), 0);
	u.io = sbx_tlsio_new(sbx_tls_upstream_ssl(uctx, g_name, err, sizeof err), 0);
	struct sbx_http_conn *c;
	if (sbx_http_conn_new(&c, cfg, err, sizeof err) != 0) {
		fprintf(stderr, "relay: %s\n", err);
		exit(1);
	}
	sbx_tlsio_handshake(u.io); /* ClientHello out */
	int up_dead = 0;	   /* upstream failed: the guest side finishes alone */
	for (;;) {
		int moved = 0, r;
		if ((r = move_cipher(&g)) < 0)
			break;
		moved |= r;
		if (!up_dead && (r = move_cipher(&u)) < 0) {
			up_dead = 1;
			sbx_http_upstream_failed(c, "connection to upstream lost");
		}
		moved |= r > 0;
		if ((r = plain_in(&g, c, 1)) < 0 && !g.in_len && !g.plain_len)
			break;
		moved |= r > 0;
		r = up_dead ? 0 : plain_in(&u, c, 0);
		if (r < 0 && !u.in_len && !u.plain_len && u.eof == 1) {
			sbx_http_response_eof(c);
			u.eof = 2;
		}
		moved |= r > 0;
		moved |= (up_dead ? 0 : plain_out(&u, c, 1)) | plain_out(&g, c, 0);
		if (*sbx_tlsio_error(u.io) && !up_dead) {
			up_dead = 1;
			fprintf(stderr, "relay: upstream: %s\n", sbx_tlsio_error(u.io));
			/* the guest gets a 502 with the reason */
			sbx_http_upstream_failed(c, sbx_tlsio_error(u.io));
			moved = 1;
		}
		const unsigned char *p;
		if ((sbx_http_flags(c) & SBX_HTTP_CLOSE_GUEST) && !sbx_http_peek_guest(c, &p) &&
		    !sbx_tlsio_net_pending(g.io))
			break;
		if (g.eof && !g.in_len)
			break;
		if (moved)
			continue;
		struct pollfd pf[2] = {{g.fd, g.in_len || g.eof ? 0 : POLLIN, 0},
				       {u.fd, u.in_len || u.eof || up_dead ? 0 : POLLIN, 0}};
		if (poll(pf, 2, 10000) <= 0)
			break;
		if (pf[0].revents)
			read_socket(&g);
		if (pf[1].revents)
			read_socket(&u);
	}
	sbx_tlsio_shutdown(g.io);
	move_cipher(&g);
	sbx_http_conn_free(c);
	sbx_tlsio_free(g.io);
	sbx_tlsio_free(u.io);
	close(u.fd);
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_PORT NAME EXTRA_CA CA_OUT SECRET\n",
			argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	g_name = argv[3];
	g_secret_host = getenv("RELAY_SECRET_HOST") ? getenv("RELAY_SECRET_HOST") : g_name;
	const char *value = getenv(argv[6]);
	char ph[SBX_PLACEHOLDER_MAX], err[200];
	if (!value || sbx_placeholder_make(argv[6], ph, sizeof ph) < 0) {
		fprintf(stderr, "relay: secret %s missing from the environment\n", argv[6]);
		return 2;
	}
	struct sbx_http_secret sec = {argv[6], ph, (const unsigned char *)value, strlen(value), 1};
	struct sbx_http_config cfg = {.secrets = &sec,
				      .n_secrets = 1,
				      .scheme = "https",
				      .host = g_name,
				      .port = 443,
				      .block_misdirected =
					  getenv("RELAY_BLOCK_MISDIRECTED") != NULL,
				      .decide = decide,
				      .event = on_event};
	struct sbx_tlsca *ca;
	SSL_CTX *uctx = sbx_tls_upstream_ctx_new(argv[4], err, sizeof err);
	if (!uctx || sbx_tlsca_new(&ca, "relay", err, sizeof err) != 0) {
		fprintf(stderr, "relay: %s\n", err);
		return 1;
	}
	FILE *f = fopen(argv[5], "w");
	if (!f || fputs(sbx_tlsca_pem(ca), f) < 0 || fclose(f) != 0)
		return 1;
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 16) != 0) {
		perror("relay: bind");
		return 1;
	}
	printf("PLACEHOLDER %s\n", ph);
	fflush(stdout);
	for (;;) {
		int cfd = accept(lfd, NULL, NULL);
		if (cfd < 0)
			continue;
		serve(cfd, atoi(argv[2]), ca, uctx, &cfg);
		close(cfd);
	}
}
