/* Tests of the C helpers in tests/net/testnet.h against the running test
 * network (tests/net/testnet.sh up). Fails, never skips, when it is down. */
#include <check.h>

#include "testnet.h"

static char why[512];

START_TEST(test_up)
{
	ck_assert_msg(tn_check_up(why, sizeof why) == 0, "test network not up: %s", why);
}
END_TEST

/* A name below *.notallowed.test resolves and shows up in the query log
 * exactly once; a name never asked for does not. */
START_TEST(test_dns_log)
{
	char name[128], other[128], addr[64];
	snprintf(name, sizeof name, "c%d-%ld.NotAllowed.test", (int)getpid(), (long)time(NULL));
	snprintf(other, sizeof other, "never-%d.notallowed.test", (int)getpid());
	long mark = tn_log_mark(TESTNET_DNS_LOG);
	ck_assert_int_ge(mark, 0);
	ck_assert_int_eq(tn_dns_query_a(name, addr, sizeof addr, why, sizeof why), 0);
	ck_assert_str_eq(addr, TESTNET_NOTALLOWED4);
	ck_assert_int_eq(tn_dns_log_count(mark, name, "A"), 1);
	ck_assert_int_eq(tn_dns_log_count(mark, name, "AAAA"), 0);
	ck_assert_int_eq(tn_dns_log_count(mark, other, NULL), 0);
	ck_assert_int_eq(tn_dns_log_count_suffix(mark, ".notallowed.test"), 1);
	ck_assert_int_eq(tn_log_count(TESTNET_DNS_LOG, mark, name), 1);
	/* before the mark: not counted */
	long mark2 = tn_log_mark(TESTNET_DNS_LOG);
	ck_assert_int_eq(tn_dns_log_count(mark2, name, NULL), 0);

	snprintf(other, sizeof other, "nx-%d.example.test", (int)getpid());
	ck_assert_int_eq(tn_dns_query_a(other, addr, sizeof addr, why, sizeof why), 3);
	ck_assert_str_eq(addr, "");
	ck_assert_int_eq(tn_dns_query_a("notallowed.test", addr, sizeof addr, why, sizeof why), 3);
}
END_TEST

static size_t read_all(int fd, unsigned char *buf, size_t cap)
{
	size_t n = 0;
	ssize_t r;
	while (n < cap && (r = recv(fd, buf + n, cap - n, 0)) > 0)
		n += (size_t)r;
	return n;
}

/* /bytes/N over plain HTTP carries the documented pattern. */
START_TEST(test_bytes_pattern)
{
	enum { N = 3000017 };
	static unsigned char buf[N + 4096];
	int fd = tn_connect(TESTNET_EXAMPLE4, TESTNET_HTTP_ALT_PORT, 5000);
	ck_assert_msg(fd >= 0, "connect: %s", strerror(errno));
	char req[128];
	int l = snprintf(req, sizeof req, "GET /bytes/%d HTTP/1.0\r\n\r\n", N);
	ck_assert_int_eq(send(fd, req, (size_t)l, MSG_NOSIGNAL), l);
	size_t got = read_all(fd, buf, sizeof buf);
	close(fd);
	buf[got < sizeof buf ? got : sizeof buf - 1] = 0;
	char *end = strstr((char *)buf, "\r\n\r\n");
	ck_assert_ptr_nonnull(end);
	ck_assert_ptr_nonnull(strstr((char *)buf, "Content-Length: 3000017\r\n"));
	size_t head = (size_t)(end + 4 - (char *)buf);
	ck_assert_uint_eq(got - head, N);
	ck_assert_int_eq(tn_pattern_mismatch(buf + head, N, 0), -1);
	unsigned char want[300];
	tn_pattern_fill(want, sizeof want, 1000);
	ck_assert_int_eq(memcmp(want, buf + head + 1000, sizeof want), 0);
	ck_assert_int_eq(tn_pattern_mismatch(buf + head + 1, 10, 0), 0);
}
END_TEST

/* Unused addresses in the ranges and the host's own veth addresses refuse
 * at once: nothing hangs. */
START_TEST(test_refused_fast)
{
	const char *addrs[] = {TESTNET_UNUSED4, TESTNET_UNUSED6, TESTNET_HOST4, TESTNET_HOST6};
	for (size_t i = 0; i < sizeof addrs / sizeof *addrs; i++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		int fd = tn_connect(addrs[i], TESTNET_HTTP_PORT, 5000);
		int e = errno;
		clock_gettime(CLOCK_MONOTONIC, &b);
		ck_assert_msg(fd < 0 && e == ECONNREFUSED, "%s: %s", addrs[i], strerror(e));
		ck_assert_int_lt(b.tv_sec - a.tv_sec, 2);
	}
}
END_TEST

/* The TCP echo on 9000 returns what it gets, v4 and v6. */
START_TEST(test_echo)
{
	const char *addrs[] = {TESTNET_LITERAL4, TESTNET_V6};
	for (size_t i = 0; i < 2; i++) {
		enum { N = 1 << 20 };
		static unsigned char out[N], in[N];
		tn_pattern_fill(out, N, 7);
		int fd = tn_connect(addrs[i], TESTNET_ECHO_PORT, 5000);
		ck_assert_msg(fd >= 0, "%s: %s", addrs[i], strerror(errno));
		/* echo writes back while we write: a reader thread is not
		 * needed as long as the total fits the socket buffers twice
		 * over, so send in pieces and drain between them */
		size_t sent = 0, got = 0;
		while (got < N) {
			if (sent < N) {
				size_t k = N - sent < 65536 ? N - sent : 65536;
				ssize_t w = send(fd, out + sent, k, MSG_NOSIGNAL);
				ck_assert_int_gt(w, 0);
				sent += (size_t)w;
			}
			ssize_t r = recv(fd, in + got, N - got, sent < N ? MSG_DONTWAIT : 0);
			if (r > 0)
				got += (size_t)r;
			else
				ck_assert_msg(r < 0 && errno == EAGAIN, "recv: %zd %s", r,
					      strerror(errno));
		}
		close(fd);
		ck_assert_int_eq(memcmp(in, out, N), 0);
	}
}
END_TEST

/* Every request lands in the access log. */
START_TEST(test_access_log)
{
	long mark = tn_log_mark(TESTNET_ACCESS_LOG);
	ck_assert_int_ge(mark, 0);
	int fd = tn_connect(TESTNET_OTHER4, TESTNET_HTTP_PORT, 5000);
	ck_assert_int_ge(fd, 0);
	char req[128], buf[1024];
	int l = snprintf(req, sizeof req,
			 "GET /status/418?c=%d HTTP/1.1\r\nHost: other.test\r\n"
			 "Connection: close\r\n\r\n",
			 (int)getpid());
	ck_assert_int_eq(send(fd, req, (size_t)l, MSG_NOSIGNAL), l);
	size_t got = read_all(fd, (unsigned char *)buf, sizeof buf - 1);
	close(fd);
	buf[got] = 0;
	ck_assert_msg(strncmp(buf, "HTTP/1.1 418", 12) == 0, "%s", buf);
	snprintf(req, sizeof req, "/status/418?c=%d", (int)getpid());
	ck_assert_int_eq(tn_log_count(TESTNET_ACCESS_LOG, mark, req), 1);
	ck_assert_int_eq(tn_log_count(TESTNET_ACCESS_LOG, mark, "\"status\": 418"), 1);
}
END_TEST

int main(void)
{
	if (geteuid() != 0) {
		fprintf(stderr, "FAIL: check_testnet must run as root (the test network is)\n");
		return 1;
	}
	/* Fail the whole suite at once, loudly, when the network is down. */
	tn_require_up();
	Suite *s = suite_create("testnet");
	TCase *tc = tcase_create("helpers");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_up);
	tcase_add_test(tc, test_dns_log);
	tcase_add_test(tc, test_bytes_pattern);
	tcase_add_test(tc, test_refused_fast);
	tcase_add_test(tc, test_echo);
	tcase_add_test(tc, test_access_log);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
