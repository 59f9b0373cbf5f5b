/* The libsandbox test network, for C tests (tests/net/README.md).
 *
 * Constants: the same values as tests/net/env.sh (tests/net/selftest.sh
 * checks they agree). Helpers: whether the network is up (a test that needs
 * it must FAIL when it is not, never skip), the DNS query log and the HTTP
 * access log of the test servers, and the /bytes/N pattern.
 *
 * Header only, so any test program can include it; every helper is
 * thread-safe (no shared state). */
#ifndef SBX_TESTNET_H
#define SBX_TESTNET_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* namespace and veth; the host end's addresses are the host's own */
#define TESTNET_NS "sbx-testnet"
#define TESTNET_VETH_HOST "sbxtn0"
#define TESTNET_HOST4 "198.51.100.1"
#define TESTNET_HOST6 "2001:db8:ffff::1"
#define TESTNET_PEER4 "198.51.100.2"
#define TESTNET_PEER6 "2001:db8:ffff::2"

/* state written by `tests/net/testnet.sh up` */
#define TESTNET_RUN_DIR "/run/libsandbox-testnet"
#define TESTNET_CA TESTNET_RUN_DIR "/ca.pem"
#define TESTNET_DNS_LOG TESTNET_RUN_DIR "/dns-queries.log"
#define TESTNET_ACCESS_LOG TESTNET_RUN_DIR "/access.log"
#define TESTNET_SERVERS_LOG TESTNET_RUN_DIR "/servers.log"

/* the DNS server (UDP and TCP 53 only) */
#define TESTNET_DNS4 "192.0.2.53"
#define TESTNET_DNS6 "2001:db8::53"

/* ports on every server address */
#define TESTNET_HTTP_PORT 80
#define TESTNET_HTTP_ALT_PORT 8080
#define TESTNET_HTTPS_PORT 443
#define TESTNET_HTTPS_ALT_PORT 8443
#define TESTNET_ECHO_PORT 9000

/* server addresses and the names that resolve to them (tests/net/zone) */
#define TESTNET_EXAMPLE4 "203.0.113.12"	   /* example.test */
#define TESTNET_API4 "203.0.113.10"	   /* api.example.test */
#define TESTNET_A4 "203.0.113.11"	   /* a.example.test */
#define TESTNET_OTHER4 "203.0.113.13"	   /* other.test */
#define TESTNET_FRONT4 "203.0.113.14"	   /* front.example.test */
#define TESTNET_DUAL4 "203.0.113.15"	   /* dual.example.test A */
#define TESTNET_DUAL6 "2001:db8:1::15"	   /* dual.example.test AAAA */
#define TESTNET_V6 "2001:db8:1::10"	   /* v6.example.test AAAA */
#define TESTNET_FILES4 "203.0.113.20"	   /* api.files.example.test, x.files.example.test */
#define TESTNET_EXPIRED4 "203.0.113.21"	   /* expired.example.test: expired certificate */
#define TESTNET_SELFSIGNED4 "203.0.113.22" /* selfsigned.example.test: self-signed */
#define TESTNET_WRONGNAME4                                                                         \
	"203.0.113.23"			   /* wrongname.example.test: certificate for another name \
					    */
#define TESTNET_NOTALLOWED4 "203.0.113.99" /* *.notallowed.test */
/* names whose answers point at host-local addresses (rebinding tests) */
#define TESTNET_REBIND_NAME "rebind.example.test"   /* A 127.0.0.1 */
#define TESTNET_REBIND6_NAME "rebind6.example.test" /* AAAA ::1 */
#define TESTNET_META_NAME "meta.example.test"	    /* A 169.254.169.254 */
/* server addresses no name resolves to */
#define TESTNET_LITERAL4 "203.0.113.7"
#define TESTNET_EXTRA4 "198.51.100.20"
/* routed to the namespace, nothing listens: refused at once */
#define TESTNET_UNUSED4 "203.0.113.200"
#define TESTNET_UNUSED6 "2001:db8:1::200"

/* /bytes/N streams byte i = i mod TESTNET_PATTERN_MOD */
#define TESTNET_PATTERN_MOD 251

/* ------------------------------------------------------------ the pattern */

/* Fills buf with the /bytes/N stream starting at stream offset off. */
static inline void tn_pattern_fill(unsigned char *buf, size_t len, uint64_t off)
{
	unsigned int v = (unsigned int)(off % TESTNET_PATTERN_MOD);
	for (size_t i = 0; i < len; i++) {
		buf[i] = (unsigned char)v;
		if (++v == TESTNET_PATTERN_MOD)
			v = 0;
	}
}

/* Index of the first byte of buf that is not the stream at offset off, or
 * -1 if all match. */
static inline long tn_pattern_mismatch(const unsigned char *buf, size_t len, uint64_t off)
{
	unsigned int v = (unsigned int)(off % TESTNET_PATTERN_MOD);
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != v)
			return (long)i;
		if (++v == TESTNET_PATTERN_MOD)
			v = 0;
	}
	return -1;
}

/* ---------------------------------------------------------------- errors */

static inline void tn_why(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void tn_why(char *why, size_t len, const char *fmt, ...)
{
	if (!why || !len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------- DNS */

/* Sends one A query for name to the test DNS server over UDP and writes the
 * first answer's address into out (empty if the answer has none). Returns
 * the DNS rcode (0 NOERROR, 3 NXDOMAIN) or -1 with *why set. */
static inline int tn_dns_query_a(const char *name, char *out, size_t outlen, char *why,
				 size_t whylen)
{
	unsigned char q[300], r[1500];
	size_t n = 12;
	unsigned short id = (unsigned short)(getpid() ^ (unsigned int)time(NULL));
	memset(q, 0, 12);
	q[0] = (unsigned char)(id >> 8);
	q[1] = (unsigned char)id;
	q[2] = 0x01; /* RD */
	q[5] = 1;    /* QDCOUNT */
	for (const char *p = name; *p;) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		if (l == 0 || l > 63 || n + l + 6 > sizeof q) {
			tn_why(why, whylen, "bad name %s", name);
			return -1;
		}
		q[n++] = (unsigned char)l;
		memcpy(q + n, p, l);
		n += l;
		p += l + (dot ? 1 : 0);
	}
	q[n++] = 0;
	q[n++] = 0;
	q[n++] = 1; /* type A */
	q[n++] = 0;
	q[n++] = 1; /* class IN */

	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		tn_why(why, whylen, "socket: %s", strerror(errno));
		return -1;
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(53)};
	inet_pton(AF_INET, TESTNET_DNS4, &sa.sin_addr);
	ssize_t got = -1;
	for (int attempt = 0; attempt < 3 && got < 0; attempt++) {
		if (sendto(fd, q, n, 0, (struct sockaddr *)&sa, sizeof sa) != (ssize_t)n)
			break;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, 1000) == 1)
			got = recv(fd, r, sizeof r, 0);
	}
	close(fd);
	if (got < (ssize_t)n || r[0] != q[0] || r[1] != q[1] || !(r[2] & 0x80)) {
		tn_why(why, whylen, "no answer from the test DNS server %s for %s", TESTNET_DNS4,
		       name);
		return -1;
	}
	int rcode = r[3] & 0x0f;
	int ancount = (r[6] << 8) | r[7];
	if (out && outlen)
		out[0] = '\0';
	/* answers follow the echoed question; ours are "pointer, type, class,
	 * ttl, rdlength, rdata", which is all this server ever sends */
	size_t pos = n;
	for (int i = 0; i < ancount && pos + 12 <= (size_t)got; i++) {
		unsigned int type = (unsigned int)(r[pos + 2] << 8 | r[pos + 3]);
		unsigned int rdlen = (unsigned int)(r[pos + 10] << 8 | r[pos + 11]);
		pos += 12;
		if (pos + rdlen > (size_t)got)
			break;
		if (type == 1 && rdlen == 4 && out && outlen) {
			inet_ntop(AF_INET, r + pos, out, (socklen_t)outlen);
			break;
		}
		pos += rdlen;
	}
	return rcode;
}

/* ------------------------------------------------------------------ logs */

/* Current size of a log: take it before an action, then count what the
 * action added. -1 if the log cannot be read. */
static inline long tn_log_mark(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
	fclose(f);
	return size;
}

/* Lines written to a log after mark that contain needle (ASCII
 * case-insensitive). -1 if the log cannot be read. */
static inline int tn_log_count(const char *path, long mark, const char *needle)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	if (mark > 0 && fseek(f, mark, SEEK_SET) != 0) {
		fclose(f);
		return -1;
	}
	char line[8192];
	int count = 0;
	size_t nlen = strlen(needle);
	while (fgets(line, sizeof line, f)) {
		for (const char *p = line; *p; p++)
			if (strncasecmp(p, needle, nlen) == 0) {
				count++;
				break;
			}
	}
	fclose(f);
	return count;
}

/* Queries for qname (exactly, case-insensitive; qtype "A", "AAAA", ... or
 * NULL for any) that reached the test DNS server after mark. The log's
 * lines are "<time> <udp|tcp> <client> <port> <qname> <qtype> <rcode>".
 * -1 if the log cannot be read. */
static inline int tn_dns_log_count(long mark, const char *qname, const char *qtype)
{
	FILE *f = fopen(TESTNET_DNS_LOG, "r");
	if (!f)
		return -1;
	if (mark > 0 && fseek(f, mark, SEEK_SET) != 0) {
		fclose(f);
		return -1;
	}
	char line[2048], name[1100], type[32];
	int count = 0;
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "%*s %*s %*s %*s %1099s %31s", name, type) != 2)
			continue;
		size_t l = strlen(name);
		if (l > 1 && name[l - 1] == '.')
			name[l - 1] = '\0';
		if (strcasecmp(name, qname) == 0 && (!qtype || strcasecmp(type, qtype) == 0))
			count++;
	}
	fclose(f);
	return count;
}

/* Queries that reached the test DNS server after mark for any name ending
 * in suffix (e.g. ".notallowed.test"). -1 if the log cannot be read. */
static inline int tn_dns_log_count_suffix(long mark, const char *suffix)
{
	FILE *f = fopen(TESTNET_DNS_LOG, "r");
	if (!f)
		return -1;
	if (mark > 0 && fseek(f, mark, SEEK_SET) != 0) {
		fclose(f);
		return -1;
	}
	char line[2048], name[1100];
	size_t sl = strlen(suffix);
	int count = 0;
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "%*s %*s %*s %*s %1099s", name) != 1)
			continue;
		size_t l = strlen(name);
		if (l > 1 && name[l - 1] == '.')
			name[--l] = '\0';
		if (l >= sl && strcasecmp(name + l - sl, suffix) == 0)
			count++;
	}
	fclose(f);
	return count;
}

/* -------------------------------------------------------------- liveness */

/* Connects over TCP with a timeout. Returns the socket or -1 (errno set). */
static inline int tn_connect(const char *addr, int port, int timeout_ms)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		sl = sizeof *s4;
	} else if (inet_pton(AF_INET6, addr, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		sl = sizeof *s6;
	} else {
		errno = EINVAL;
		return -1;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
		int e = errno;
		close(fd);
		errno = e == EINPROGRESS ? ETIMEDOUT : e;
		return -1;
	}
	return fd;
}

/* 0 if the test network is up and answering from this namespace; else -1
 * with the reason in why. Checks the state file, the server process, the CA,
 * one DNS answer and one HTTP response. */
static inline int tn_check_up(char *why, size_t whylen)
{
	char buf[512];
	if (access(TESTNET_RUN_DIR "/up", F_OK) != 0) {
		tn_why(why, whylen, "%s/up is missing", TESTNET_RUN_DIR);
		return -1;
	}
	FILE *f = fopen(TESTNET_RUN_DIR "/servers.pid", "r");
	int pid = 0;
	/* EPERM: alive, just not ours to signal (it runs as nobody) */
	if (!f || fscanf(f, "%d", &pid) != 1 || pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM)) {
		if (f)
			fclose(f);
		tn_why(why, whylen, "the test servers are not running");
		return -1;
	}
	fclose(f);
	if (access(TESTNET_CA, R_OK) != 0) {
		tn_why(why, whylen, "cannot read the test CA %s", TESTNET_CA);
		return -1;
	}
	char addr[64];
	int rc = tn_dns_query_a("example.test", addr, sizeof addr, why, whylen);
	if (rc < 0)
		return -1;
	if (rc != 0 || strcmp(addr, TESTNET_EXAMPLE4) != 0) {
		tn_why(why, whylen, "example.test resolved to '%s' (rcode %d), not %s", addr, rc,
		       TESTNET_EXAMPLE4);
		return -1;
	}
	int fd = tn_connect(TESTNET_EXAMPLE4, TESTNET_HTTP_PORT, 3000);
	if (fd < 0) {
		tn_why(why, whylen, "cannot connect to %s:%d: %s", TESTNET_EXAMPLE4,
		       TESTNET_HTTP_PORT, strerror(errno));
		return -1;
	}
	static const char req[] =
	    "GET / HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n";
	ssize_t got = -1;
	if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1))
		got = recv(fd, buf, sizeof buf - 1, 0);
	close(fd);
	if (got < 12 || memcmp(buf, "HTTP/1.1 200", 12) != 0) {
		tn_why(why, whylen, "no HTTP 200 from %s:%d", TESTNET_EXAMPLE4, TESTNET_HTTP_PORT);
		return -1;
	}
	return 0;
}

/* For a test that needs the network: when it is not up, say so loudly on
 * stderr and exit(1), which fails the test (or the whole suite, from a
 * fixture). Never a skip. */
static inline void tn_require_up(void)
{
	char why[512];
	if (tn_check_up(why, sizeof why) == 0)
		return;
	fprintf(stderr,
		"\n*** FAIL: the libsandbox test network is not up: %s\n"
		"*** run `tests/net/testnet.sh up` as root before these tests.\n\n",
		why);
	exit(1);
}

#endif
