/* The proxy thread driven without a VM: this test plays the agent, writing
 * network frames into the channel decoder and reading what the proxy sends
 * back on a socketpair, against a real TCP server on loopback. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy.h"
#include "sandbox_int.h"

#define AGENT(n) (SBX_STREAM_AGENT | (n))

struct fake {
	struct sandbox *sb;
	int peer; /* the "agent" end */
	uint8_t rbuf[SBX_PROTO_HDR_SIZE + SBX_PROTO_MAX_PAYLOAD];
	size_t rlen;
	char events[8192];
	size_t elen;
	pthread_mutex_t elock;
};

static void on_event(const char *json, void *ud)
{
	struct fake *f = ud;
	pthread_mutex_lock(&f->elock);
	size_t n = strlen(json);
	if (f->elen + n + 2 < sizeof f->events) {
		memcpy(f->events + f->elen, json, n);
		f->elen += n;
		f->events[f->elen++] = '\n';
		f->events[f->elen] = '\0';
	}
	pthread_mutex_unlock(&f->elock);
}

static void fake_start_opt(struct fake *f, const char *const *allow, int thread)
{
	memset(f, 0, sizeof *f);
	pthread_mutex_init(&f->elock, NULL);
	struct sandbox *sb = calloc(1, sizeof *sb);
	pthread_mutex_init(&sb->lock, NULL);
	pthread_mutex_init(&sb->wlock, NULL);
	pthread_cond_init(&sb->cond, NULL);
	sb->state = SBX_RUNNING;
	strcpy(sb->id, "proxytest");
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	sb->fd = sv[0];
	f->peer = sv[1];
	sandbox_options_t o = SANDBOX_OPTIONS_INIT;
	o.allow_net = allow;
	o.audit_cb = on_event;
	o.audit_userdata = f;
	static const char *dns[] = {"127.0.0.1:9", NULL}; /* never asked here */
	o.dns_servers = dns;
	ck_assert_int_eq(sbx_audit_open(&sb->audit, &o, sb->id, NULL, 0), 0);
	ck_assert_int_eq(sbx_proxy_new(sb, &o, &sb->proxy), 0);
	if (thread)
		ck_assert_int_eq(sbx_proxy_start(sb->proxy), 0);
	f->sb = sb;
}

static void fake_start(struct fake *f, const char *const *allow)
{
	fake_start_opt(f, allow, 1);
}

static void fake_stop(struct fake *f)
{
	struct sandbox *sb = f->sb;
	shutdown(sb->fd, SHUT_RDWR);
	sbx_proxy_free(sb->proxy);
	sbx_audit_close(&sb->audit);
	close(sb->fd);
	close(f->peer);
	pthread_mutex_destroy(&sb->lock);
	pthread_mutex_destroy(&sb->wlock);
	pthread_cond_destroy(&sb->cond);
	free(sb);
	pthread_mutex_destroy(&f->elock);
}

/* Deliver one frame as the I/O thread would; returns the decoder's rc. */
static int agent_send(struct fake *f, uint8_t type, uint32_t stream, const void *p, size_t n)
{
	static uint8_t buf[SBX_PROTO_HDR_SIZE + SBX_PROTO_MAX_PAYLOAD];
	struct sbx_frame_hdr h = {.len = (uint32_t)n, .type = type, .stream = stream};
	sbx_hdr_pack(buf, &h);
	if (n)
		memcpy(buf + SBX_PROTO_HDR_SIZE, p, n);
	size_t len = SBX_PROTO_HDR_SIZE + n;
	char why[256] = "";
	return sbx_chan_decode(f->sb, buf, &len, why, sizeof why);
}

static void send_open(struct fake *f, uint32_t stream, const char *ip4, uint16_t port)
{
	uint8_t p[SBX_TCP_OPEN_SIZE] = {4, 0, (uint8_t)port, (uint8_t)(port >> 8)};
	inet_pton(AF_INET, ip4, p + 4);
	ck_assert_int_eq(agent_send(f, SBX_T_TCP_OPEN, stream, p, sizeof p), 0);
}

/* Next frame from the proxy within 2 s; payload copied to out. */
static int agent_recv(struct fake *f, struct sbx_frame_hdr *h, uint8_t *out, size_t cap)
{
	for (;;) {
		if (f->rlen >= SBX_PROTO_HDR_SIZE) {
			ck_assert_int_eq(sbx_hdr_unpack(f->rbuf, h), 0);
			if (f->rlen >= SBX_PROTO_HDR_SIZE + h->len) {
				ck_assert_uint_le(h->len, cap);
				memcpy(out, f->rbuf + SBX_PROTO_HDR_SIZE, h->len);
				size_t used = SBX_PROTO_HDR_SIZE + h->len;
				memmove(f->rbuf, f->rbuf + used, f->rlen - used);
				f->rlen -= used;
				return 0;
			}
		}
		struct pollfd p = {.fd = f->peer, .events = POLLIN};
		if (poll(&p, 1, 2000) <= 0)
			return -1;
		ssize_t r = read(f->peer, f->rbuf + f->rlen, sizeof f->rbuf - f->rlen);
		if (r <= 0)
			return -1;
		f->rlen += (size_t)r;
	}
}

/* A one-connection loopback server: echoes, and sends `extra` bytes of
 * its own after the first read. */
struct server {
	int lfd;
	uint16_t port;
	size_t extra;
	pthread_t t;
};

static void *server_main(void *arg)
{
	struct server *s = arg;
	int c = accept(s->lfd, NULL, NULL);
	char buf[4096];
	ssize_t n;
	int first = 1;
	while (c >= 0 && (n = read(c, buf, sizeof buf)) > 0) {
		if (write(c, buf, (size_t)n) != n)
			break;
		if (first && s->extra) {
			first = 0;
			char *big = calloc(1, s->extra);
			size_t off = 0;
			while (off < s->extra) {
				ssize_t w = write(c, big + off, s->extra - off);
				if (w <= 0)
					break;
				off += (size_t)w;
			}
			free(big);
		}
	}
	if (c >= 0)
		close(c);
	return NULL;
}

static void server_start(struct server *s, size_t extra)
{
	s->extra = extra;
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET};
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	ck_assert_int_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
	ck_assert_int_eq(listen(s->lfd, 4), 0);
	socklen_t l = sizeof a;
	getsockname(s->lfd, (struct sockaddr *)&a, &l);
	s->port = ntohs(a.sin_port);
	pthread_create(&s->t, NULL, server_main, s);
}

static void server_stop(struct server *s)
{
	shutdown(s->lfd, SHUT_RDWR);
	close(s->lfd);
	pthread_join(s->t, NULL);
}

static uint8_t payload[SBX_PROTO_MAX_PAYLOAD];

START_TEST(proxy_relays_and_closes)
{
	struct server srv;
	server_start(&srv, 0);
	const char *allow[] = {"127.0.0.1", NULL};
	struct fake f;
	fake_start(&f, allow);
	send_open(&f, AGENT(1), "127.0.0.1", srv.port);
	ck_assert_int_eq(agent_send(&f, SBX_T_TCP_DATA, AGENT(1), "hello\n", 6), 0);
	struct sbx_frame_hdr h;
	int got_data = 0, got_window = 0;
	while (!got_data && agent_recv(&f, &h, payload, sizeof payload) == 0) {
		if (h.type == SBX_T_WINDOW)
			got_window = 1;
		if (h.type == SBX_T_TCP_DATA) {
			ck_assert_uint_eq(h.len, 6);
			ck_assert_mem_eq(payload, "hello\n", 6);
			got_data = 1;
		}
	}
	ck_assert(got_data);
	ck_assert(got_window); /* the 5 bytes written upstream were returned */
	ck_assert_int_eq(agent_send(&f, SBX_T_TCP_EOF, AGENT(1), NULL, 0), 0);
	/* the server sees EOF, closes: EOF back, then CLOSE graceful/done */
	ck_assert_int_eq(agent_recv(&f, &h, payload, sizeof payload), 0);
	ck_assert_uint_eq(h.type, SBX_T_TCP_EOF);
	ck_assert_int_eq(agent_recv(&f, &h, payload, sizeof payload), 0);
	ck_assert_uint_eq(h.type, SBX_T_TCP_CLOSE);
	ck_assert_uint_eq(payload[0], SBX_TCP_CLOSE_GRACEFUL);
	ck_assert_uint_eq(payload[1], SBX_TCP_R_DONE);
	/* frames for the finished stream are dropped, not errors */
	ck_assert_int_eq(agent_send(&f, SBX_T_TCP_DATA, AGENT(1), "late", 4), 0);
	/* reusing an id is */
	uint8_t open[SBX_TCP_OPEN_SIZE] = {4, 0, 80, 0, 127, 0, 0, 1};
	ck_assert_int_eq(agent_send(&f, SBX_T_TCP_OPEN, AGENT(1), open, sizeof open), -1);
	fake_stop(&f);
	server_stop(&srv);
	ck_assert_ptr_nonnull(strstr(f.events, "\"net.close\""));
	ck_assert_ptr_nonnull(strstr(f.events, "\"bytes_out\":6"));
}
END_TEST

START_TEST(proxy_blocks_and_answers_dns)
{
	struct fake f;
	fake_start(&f, NULL); /* everything allowed, except the host itself */
	send_open(&f, AGENT(7), "127.0.0.1", 80);
	struct sbx_frame_hdr h;
	ck_assert_int_eq(agent_recv(&f, &h, payload, sizeof payload), 0);
	ck_assert_uint_eq(h.type, SBX_T_TCP_CLOSE);
	ck_assert_uint_eq(h.stream, AGENT(7));
	ck_assert_uint_eq(payload[0], SBX_TCP_CLOSE_ABORT);
	ck_assert_uint_eq(payload[1], SBX_TCP_R_POLICY);
	const char *none[] = {NULL};
	ck_assert_int_eq(sbx_proxy_set_policy(f.sb->proxy, none), 0);
	/* a query for a name that is not allowed: NXDOMAIN, same id */
	static const uint8_t q[] = {0, 0, 0, 0, 0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
				    4, 'l', 'e', 'a', 'k', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
	ck_assert_int_eq(agent_send(&f, SBX_T_DNS_QUERY, AGENT(8), q, sizeof q), 0);
	ck_assert_int_eq(agent_recv(&f, &h, payload, sizeof payload), 0);
	ck_assert_uint_eq(h.type, SBX_T_DNS_REPLY);
	ck_assert_uint_eq(h.stream, AGENT(8));
	ck_assert_uint_eq(payload[0], 0xab);
	ck_assert_uint_eq(payload[3] & 0xf, 3); /* NXDOMAIN */
	fake_stop(&f);
	ck_assert_ptr_nonnull(strstr(f.events, "host-local"));
	ck_assert_ptr_nonnull(strstr(f.events, "\"dns.query\""));
}
END_TEST

START_TEST(proxy_respects_guest_credit)
{
	struct server srv;
	server_start(&srv, 1 << 20); /* 1 MiB after the first read */
	const char *allow[] = {"127.0.0.1", NULL};
	struct fake f;
	fake_start(&f, allow);
	send_open(&f, AGENT(1), "127.0.0.1", srv.port);
	ck_assert_int_eq(agent_send(&f, SBX_T_TCP_DATA, AGENT(1), "go\n", 3), 0);
	struct sbx_frame_hdr h;
	size_t got = 0;
	while (agent_recv(&f, &h, payload, sizeof payload) == 0)
		if (h.type == SBX_T_TCP_DATA)
			got += h.len;
	/* no WINDOW from us: exactly the initial credit arrived, no more */
	ck_assert_uint_eq(got, SBX_PROTO_INITIAL_WINDOW);
	uint8_t w[4] = {0, 0, 1, 0}; /* 64 KiB more */
	ck_assert_int_eq(agent_send(&f, SBX_T_WINDOW, AGENT(1), w, 4), 0);
	got = 0;
	while (agent_recv(&f, &h, payload, sizeof payload) == 0)
		if (h.type == SBX_T_TCP_DATA)
			got += h.len;
	ck_assert_uint_eq(got, 65536);
	uint8_t abort_[4] = {SBX_TCP_CLOSE_ABORT, SBX_TCP_R_RESET, 0, 0};
	ck_assert_int_eq(agent_send(&f, SBX_T_TCP_CLOSE, AGENT(1), abort_, 4), 0);
	fake_stop(&f);
	server_stop(&srv);
}
END_TEST

/* The decoder's checks, with no proxy thread consuming anything. */
START_TEST(proxy_frame_checks)
{
	const char *allow[] = {"127.0.0.1", NULL};
	struct fake f;
	fake_start_opt(&f, allow, 0);
	send_open(&f, AGENT(2), "127.0.0.1", 9);
	memset(payload, 'x', sizeof payload);
	for (int i = 0; i < 4; i++) /* exactly the initial credit */
		ck_assert_int_eq(agent_send(&f, SBX_T_TCP_DATA, AGENT(2), payload, 65536), 0);
	ck_assert_int_eq(agent_send(&f, SBX_T_TCP_DATA, AGENT(2), payload, 1), -1);
	/* a stream id that was never opened, above the highest */
	ck_assert_int_eq(agent_send(&f, SBX_T_TCP_EOF, AGENT(3), NULL, 0), -1);
	/* below the highest: an ended stream, dropped */
	ck_assert_int_eq(agent_send(&f, SBX_T_TCP_EOF, AGENT(1), NULL, 0), 0);
	/* malformed opens and queries */
	uint8_t bad[SBX_TCP_OPEN_SIZE] = {5};
	ck_assert_int_eq(agent_send(&f, SBX_T_TCP_OPEN, AGENT(4), bad, sizeof bad), -1);
	ck_assert_int_eq(agent_send(&f, SBX_T_DNS_QUERY, AGENT(5), "\0\0\0\0short", 9), -1);
	/* exec frame types on a network stream */
	ck_assert_int_eq(agent_send(&f, SBX_T_STDOUT, AGENT(2), "x", 1), -1);
	fake_stop(&f);
}
END_TEST

void add_proxy_tests(Suite *s);
void add_proxy_tests(Suite *s)
{
	TCase *t = tcase_create("proxy");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, proxy_relays_and_closes);
	tcase_add_test(t, proxy_blocks_and_answers_dns);
	tcase_add_test(t, proxy_respects_guest_credit);
	tcase_add_test(t, proxy_frame_checks);
	suite_add_tcase(s, t);
}
