/* Integration tests for outbound network control: real VMs, real clients in
 * the guest (curl, python3, dig, getent) against the servers of the test
 * network (tests/net/testnet.sh: namespaced hosts on documentation-range
 * addresses with their own DNS server). Nothing is mocked; if the test
 * network or the image is missing, every test FAILS. */
#include <check.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sandbox.h>

#include "testnet.h"
#include "vmtest.h"

/* ------------------------------------------------------------ helpers */

struct events {
	pthread_mutex_t lock;
	char *buf;
	size_t len, cap;
};

static void collect_event(const char *json, void *ud)
{
	struct events *e = ud;
	size_t n = strlen(json);
	pthread_mutex_lock(&e->lock);
	if (e->len + n + 2 > e->cap) {
		size_t cap = (e->cap + n + 2) * 2;
		char *b = realloc(e->buf, cap);
		if (b)
			e->buf = b, e->cap = cap;
	}
	if (e->len + n + 2 <= e->cap) {
		memcpy(e->buf + e->len, json, n);
		e->len += n;
		e->buf[e->len++] = '\n';
		e->buf[e->len] = '\0';
	}
	pthread_mutex_unlock(&e->lock);
}

/* Does one event line contain every given fragment? */
static int has_event(struct events *e, const char *a, const char *b, const char *c)
{
	pthread_mutex_lock(&e->lock);
	int found = 0;
	for (char *line = e->buf; line && *line && !found;) {
		char *nl = strchr(line, '\n');
		*nl = '\0';
		found = strstr(line, a) && (!b || strstr(line, b)) && (!c || strstr(line, c));
		*nl = '\n';
		line = nl + 1;
	}
	pthread_mutex_unlock(&e->lock);
	return found;
}

struct netsb {
	sandbox_t *sb;
	struct events ev;
};

static void netsb_create(struct netsb *n, const char *const *allow_net)
{
	memset(n, 0, sizeof *n);
	pthread_mutex_init(&n->ev.lock, NULL);
	sandbox_options_t o;
	sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
	o.state_dir = vt_state_dir();
	o.allow_net = allow_net;
	static const char *dns[] = {TESTNET_DNS4, NULL};
	o.dns_servers = dns;
	o.audit_cb = collect_event;
	o.audit_userdata = &n->ev;
	const sandbox_kv_t meta[] = {{"owner", "check_net"}};
	o.metadata = meta;
	o.metadata_count = 1;
	int rc = sandbox_create(&n->sb, &o, 0);
	ck_assert_msg(rc == 0, "sandbox_create: %s: %s", sandbox_strerror(rc),
		      sandbox_last_error());
}

static void netsb_free(struct netsb *n)
{
	sandbox_free(n->sb);
	free(n->ev.buf);
	pthread_mutex_destroy(&n->ev.lock);
}

/* Run a shell script in the guest; returns its exit code, output (stdout
 * then stderr) in *out (malloc'd) if out is given. */
static int sh(sandbox_t *sb, const char *script, char **out)
{
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	sandbox_exec_options_t eo;
	sandbox_exec_options_init(&eo, SANDBOX_EXEC_OPTIONS_VERSION);
	eo.timeout_ms = 120000;
	sandbox_result_t *r = NULL;
	int rc = sandbox_exec(sb, argv, &eo, &r, 0);
	ck_assert_msg(rc == 0, "sandbox_exec(%s): %s: %s", script, sandbox_strerror(rc),
		      sandbox_last_error());
	size_t no, ne;
	const char *so = sandbox_result_stdout(r, &no), *se = sandbox_result_stderr(r, &ne);
	if (out) {
		*out = malloc(no + ne + 1);
		memcpy(*out, so, no);
		memcpy(*out + no, se, ne);
		(*out)[no + ne] = '\0';
	}
	int code = sandbox_result_exit_code(r);
	sandbox_result_free(r);
	return code;
}

/* The script must exit 0 (and print `want` if given). */
static void expect_ok(sandbox_t *sb, const char *script, const char *want)
{
	char *out;
	int code = sh(sb, script, &out);
	ck_assert_msg(code == 0, "`%s` exited %d, expected 0:\n%s", script, code, out);
	if (want)
		ck_assert_msg(strstr(out, want), "`%s` printed no '%s':\n%s", script, want, out);
	free(out);
}

/* The script must fail (and print `want` if given). */
static void expect_fail(sandbox_t *sb, const char *script, const char *want)
{
	char *out;
	int code = sh(sb, script, &out);
	ck_assert_msg(code != 0, "`%s` succeeded but must be blocked:\n%s", script, out);
	if (want)
		ck_assert_msg(strstr(out, want), "`%s` printed no '%s':\n%s", script, want, out);
	free(out);
}

/* curl that fails fast and says why; -k: these tests are about the policy,
 * not the test CA (the secrets tests check certificates). */
#define CURL "curl -sS -k --fail-with-body --max-time 20 "

/* ------------------------------------------------------------- tests */

static const char *const g_patterns[] = {
    "example.test",	     /* exact host, any port */
    "api.example.test:443",  /* host:port */
    "*.files.example.test",  /* subdomains */
    "203.0.113.7:8080",	     /* IPv4 with port */
    "[2001:db8:1::10]",	     /* IPv6 */
    "other.test",	     /* used for the fronting tests */
    "rebind.example.test",   /* answers 127.0.0.1 */
    NULL};

START_TEST(each_pattern_kind)
{
	struct netsb n;
	netsb_create(&n, g_patterns);
	sandbox_t *sb = n.sb;
	/* exact host, any port */
	expect_ok(sb, CURL "http://example.test/echo", "\"path\"");
	expect_ok(sb, CURL "http://example.test:8080/echo", "\"path\"");
	/* host:port: 443 yes, 8443 on the same host no */
	expect_ok(sb, CURL "https://api.example.test/echo", "api.example.test");
	expect_fail(sb, CURL "https://api.example.test:8443/echo", NULL);
	/* *.domain: subdomains, not other names */
	expect_ok(sb, CURL "http://x.files.example.test/echo", "x.files.example.test");
	expect_fail(sb, "getent hosts a.example.test", NULL);
	/* IPv4 with a port */
	expect_ok(sb, CURL "http://203.0.113.7:8080/echo", "203.0.113.7");
	expect_fail(sb, CURL "http://203.0.113.7/echo", NULL);
	/* IPv6 */
	expect_ok(sb, CURL "http://[2001:db8:1::10]/echo", "2001:db8:1::10");
	expect_fail(sb, CURL "http://[2001:db8:1::15]/echo", NULL);
	/* a literal IP that no pattern names, even one an allowed name has */
	expect_fail(sb, CURL "http://203.0.113.12/echo", "needs an IP pattern");
	expect_fail(sb, CURL "https://203.0.113.12/echo", NULL);
	ck_assert(has_event(&n.ev, "\"net.connect\"", "\"decision\":\"blocked\"", "8443"));
	ck_assert(has_event(&n.ev, "\"net.connect\"", "\"decision\":\"allowed\"", "example.test"));
	ck_assert(has_event(&n.ev, "\"dns.query\"", "a.example.test", "\"decision\":\"blocked\""));
	ck_assert(has_event(&n.ev, "\"net.close\"", "bytes_in", "check_net"));
	netsb_free(&n);
}
END_TEST

START_TEST(wildcard_is_not_the_apex)
{
	const char *allow[] = {"*.example.test", NULL};
	struct netsb n;
	netsb_create(&n, allow);
	expect_ok(n.sb, CURL "http://a.example.test/echo", "a.example.test");
	long mark = tn_log_mark(TESTNET_DNS_LOG);
	expect_fail(n.sb, "getent hosts example.test", NULL);
	ck_assert_int_eq(tn_dns_log_count(mark, "example.test", NULL), 0);
	ck_assert(has_event(&n.ev, "\"dns.query\"", "\"name\":\"example.test\"", "blocked"));
	netsb_free(&n);
}
END_TEST

/* Names that are not allowed never leave the host: not even as a query. */
START_TEST(blocked_names_never_reach_dns)
{
	struct netsb n;
	netsb_create(&n, g_patterns);
	long mark = tn_log_mark(TESTNET_DNS_LOG);
	ck_assert_int_ge(mark, 0);
	char name[96], cmd[256];
	snprintf(name, sizeof name, "c2VjcmV0LWRhdGEtJ%d.notallowed.test", (int)getpid());
	snprintf(cmd, sizeof cmd, "getent hosts %s", name);
	expect_fail(n.sb, cmd, NULL);
	snprintf(cmd, sizeof cmd, "dig +time=5 +tries=1 @%s %s TXT", TESTNET_DNS4, name);
	expect_ok(n.sb, cmd, "NXDOMAIN");
	snprintf(cmd, sizeof cmd, "dig +tcp +time=5 +tries=1 @198.51.100.1 %s", name);
	expect_ok(n.sb, cmd, "NXDOMAIN");
	/* an allowed name through the same paths does get resolved */
	expect_ok(n.sb, "dig +short +time=5 +tries=1 @" TESTNET_DNS4 " example.test",
		  "203.0.113.12");
	expect_ok(n.sb, "dig +tcp +short +time=5 +tries=1 @198.51.100.1 example.test",
		  "203.0.113.12");
	ck_assert_msg(tn_dns_log_count(mark, "example.test", "A") > 0,
		      "the test DNS server never saw the allowed query");
	ck_assert_msg(tn_dns_log_count(mark, name, NULL) == 0, "%s reached the test DNS server",
		      name);
	netsb_free(&n);
}
END_TEST

START_TEST(fronting_and_host_checks)
{
	struct netsb n;
	netsb_create(&n, g_patterns);
	sandbox_t *sb = n.sb;
	/* other.test is resolved for this sandbox; SNI naming an allowed host
	 * sent to other.test's address: blocked */
	expect_ok(sb, "getent hosts other.test", TESTNET_OTHER4);
	expect_ok(sb, CURL "http://other.test/echo", "other.test");
	expect_fail(sb,
		    CURL "--resolve example.test:443:" TESTNET_OTHER4 " https://example.test/echo",
		    NULL);
	/* the same with a Host header: a 403 that says why */
	expect_fail(sb, CURL "-H 'Host: example.test' http://other.test/echo",
		    "never resolved to " TESTNET_OTHER4);
	/* plain HTTP naming a host that is not allowed at all: 403 */
	expect_fail(sb, CURL "-i -H 'Host: evil.test' http://example.test/echo", "403 Forbidden");
	expect_fail(sb, CURL "-H 'Host: evil.test' http://example.test/echo",
		    "evil.test (port 80) is not in allow_net");
	/* an allowed name whose answer points at the host: refused */
	expect_fail(sb, "getent hosts rebind.example.test", NULL);
	ck_assert(has_event(&n.ev, "\"dns.query\"", "rebind.example.test", "rebinding"));
	ck_assert(has_event(&n.ev, "\"net.connect\"", "domain fronting", "blocked"));
	netsb_free(&n);
}
END_TEST

START_TEST(omitted_allows_all_but_the_host)
{
	struct netsb n;
	netsb_create(&n, NULL);
	expect_ok(n.sb, CURL "http://203.0.113.7/echo", "203.0.113.7");
	expect_ok(n.sb, CURL "http://other.test/echo", "other.test");
	expect_ok(n.sb, CURL "https://a.example.test:8443/echo", "a.example.test");
	/* the host's own address on the test link, and the metadata name */
	expect_fail(n.sb, CURL "http://" TESTNET_HOST4 "/", NULL);
	expect_fail(n.sb, "getent hosts meta.example.test", NULL);
	ck_assert(has_event(&n.ev, "\"net.connect\"", "host-local", "blocked"));
	/* root in the guest removing the rules only loses the network */
	expect_ok(n.sb, "nft flush ruleset && echo flushed", "flushed");
	expect_fail(n.sb, CURL "--max-time 5 http://203.0.113.7/echo", NULL);
	netsb_free(&n);
}
END_TEST

START_TEST(empty_list_and_live_update)
{
	const char *none[] = {NULL};
	struct netsb n;
	netsb_create(&n, none);
	expect_fail(n.sb, "getent hosts example.test", NULL);
	expect_fail(n.sb, CURL "http://203.0.113.7/echo", NULL);
	const char *bad[] = {"example.test", "bad pattern", NULL};
	ck_assert_int_eq(sandbox_set_allow_net(n.sb, bad, 0), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "'bad pattern'"));
	expect_fail(n.sb, "getent hosts example.test", NULL); /* old list kept */
	const char *some[] = {"example.test", NULL};
	ck_assert_int_eq(sandbox_set_allow_net(n.sb, some, 0), 0);
	expect_ok(n.sb, CURL "http://example.test/echo", "example.test");
	ck_assert_int_eq(sandbox_set_allow_net(n.sb, none, 0), 0);
	expect_fail(n.sb, CURL "http://example.test/echo", NULL);
	ck_assert_int_eq(sandbox_set_allow_net(n.sb, NULL, 0), 0);
	expect_ok(n.sb, CURL "http://203.0.113.7/echo", "203.0.113.7");
	ck_assert_int_eq(sandbox_set_allow_net(n.sb, NULL, 1), SANDBOX_E_FLAGS);
	ck_assert(has_event(&n.ev, "\"net.policy\"", "example.test", NULL));
	netsb_free(&n);
}
END_TEST

/* sha256 of the test servers' /bytes/N stream */
static void pattern_sha256(size_t n, char out[65])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	static unsigned char buf[251 * 1024];
	tn_pattern_fill(buf, sizeof buf, 0); /* a whole number of periods */
	for (size_t off = 0; off < n;) {
		size_t k = n - off < sizeof buf ? n - off : sizeof buf;
		EVP_DigestUpdate(ctx, buf, k);
		off += k;
	}
	unsigned char md[32];
	EVP_DigestFinal_ex(ctx, md, NULL);
	EVP_MD_CTX_free(ctx);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmRSS:", 6))
			v = atol(line + 6);
	if (f)
		fclose(f);
	return v;
}

START_TEST(bulk_concurrency_and_memory_bound)
{
	struct netsb n;
	netsb_create(&n, g_patterns);
	/* 100 MiB through the proxy, checked against the server's pattern */
	char sha[65];
	pattern_sha256(100u << 20, sha);
	expect_ok(n.sb, "curl -sS --max-time 600 http://example.test/bytes/104857600 | sha256sum",
		  sha);
	/* 50 connections at once */
	expect_ok(n.sb,
		  "python3 -c '\n"
		  "import concurrent.futures, urllib.request\n"
		  "def get(i):\n"
		  "    return urllib.request.urlopen(\"http://example.test/echo?i=%d\" % i, "
		  "timeout=120).status\n"
		  "with concurrent.futures.ThreadPoolExecutor(50) as ex:\n"
		  "    codes = list(ex.map(get, range(50)))\n"
		  "print(\"ok\" if codes == [200] * 50 else codes)'",
		  "ok");
	/* a guest that stops reading: the host must not buffer for it */
	long before = rss_kib();
	expect_ok(n.sb,
		  "python3 -c '\n"
		  "import socket, time\n"
		  "s = socket.create_connection((\"example.test\", 80))\n"
		  "s.sendall(b\"GET /bytes/1073741824 HTTP/1.1\\r\\nHost: example.test\\r\\n\\r\\n\")\n"
		  "s.recv(1000)\n"
		  "time.sleep(8)\n"
		  "print(\"stalled\")'",
		  "stalled");
	long after = rss_kib();
	ck_assert_msg(after - before < 32 * 1024,
		      "host RSS grew by %ld KiB while the guest did not read", after - before);
	netsb_free(&n);
}
END_TEST

static Suite *net_suite(void)
{
	Suite *s = suite_create("net");
	TCase *t = tcase_create("net");
	tcase_set_timeout(t, 900);
	tcase_add_test(t, each_pattern_kind);
	tcase_add_test(t, wildcard_is_not_the_apex);
	tcase_add_test(t, blocked_names_never_reach_dns);
	tcase_add_test(t, fronting_and_host_checks);
	tcase_add_test(t, omitted_allows_all_but_the_host);
	tcase_add_test(t, empty_list_and_live_update);
	tcase_add_test(t, bulk_concurrency_and_memory_bound);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	tn_require_up(); /* exits 1, loudly, if it is not */
	SRunner *sr = srunner_create(net_suite());
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_VERBOSE);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
