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

static void netsb_create_with(struct netsb *n, sandbox_options_t *given)
{
	memset(n, 0, sizeof *n);
	pthread_mutex_init(&n->ev.lock, NULL);
	sandbox_options_t o = *given;
	o.state_dir = vt_state_dir();
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

static void netsb_create(struct netsb *n, const char *const *allow_net)
{
	sandbox_options_t o;
	sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
	o.allow_net = allow_net;
	netsb_create_with(n, &o);
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
		if (no)
			memcpy(*out, so, no);
		if (ne)
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
	/* servers skip empty lines before a request: so must the Host check */
	expect_ok(sb,
		  "python3 -c 'import socket; s = socket.create_connection((\"example.test\", 80)); "
		  "s.sendall(b\"\\r\\nGET /echo HTTP/1.1\\r\\nHost: evil.test\\r\\n\\r\\n\"); "
		  "print(s.recv(200))'",
		  "403 Forbidden");
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

/* ------------------------------------------------------------ secrets */

static char g_value[64];     /* API_KEY's real value, fresh per run */
static char g_body_value[64]; /* BODY_KEY's */

static void make_values(void)
{
	unsigned char r[12];
	FILE *f = fopen("/dev/urandom", "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fread(r, 1, sizeof r, f), sizeof r);
	fclose(f);
	snprintf(g_value, sizeof g_value, "sk-live-");
	for (size_t i = 0; i < sizeof r; i++)
		sprintf(g_value + strlen(g_value), "%02x", r[i]);
	snprintf(g_body_value, sizeof g_body_value, "body-%s", g_value + 8);
}

static void secrets_options(sandbox_options_t *o, sandbox_secret_t *sec)
{
	static const char *api_hosts[] = {"api.example.test", "*.files.example.test", NULL};
	static const char *body_hosts[] = {"api.example.test", NULL};
	make_values();
	sec[0] = (sandbox_secret_t){"API_KEY", g_value, api_hosts, 0};
	sec[1] = (sandbox_secret_t){"BODY_KEY", g_body_value, body_hosts,
				    SANDBOX_SECRET_SUBSTITUTE_BODY};
	sandbox_options_init(o, SANDBOX_OPTIONS_VERSION);
	o->secrets = sec;
	o->secrets_count = 2;
	o->tls_ca_file = TESTNET_CA;
}

/* The test servers' access log after mark: does a request line contain
 * every fragment? */
static int access_has(long mark, const char *a, const char *b)
{
	FILE *f = fopen(TESTNET_ACCESS_LOG, "r");
	ck_assert_ptr_nonnull(f);
	fseek(f, mark, SEEK_SET);
	static char line[65536];
	int found = 0;
	while (!found && fgets(line, sizeof line, f))
		found = strstr(line, a) && (!b || strstr(line, b));
	fclose(f);
	return found;
}

static void b64(const char *in, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)strlen(in));
}

static void sha256_str(const char *s, char out[65])
{
	unsigned char md[32];
	EVP_Digest(s, strlen(s), md, NULL, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

#define SCURL "curl -sS --fail-with-body --max-time 60 "

START_TEST(secrets_substituted_only_where_approved)
{
	sandbox_secret_t sec[2];
	sandbox_options_t o;
	secrets_options(&o, sec);
	struct netsb n;
	netsb_create_with(&n, &o);
	sandbox_t *sb = n.sb;
	/* the guest has a placeholder, never the value */
	char *out;
	ck_assert_int_eq(sh(sb, "echo $API_KEY; env; cat /proc/1/environ 2>/dev/null", &out), 0);
	ck_assert_ptr_nonnull(strstr(out, "SBX_PH_API_KEY_"));
	ck_assert_ptr_null(strstr(out, g_value));
	free(out);
	long mark = tn_log_mark(TESTNET_ACCESS_LOG);
	/* approved host: query, header and Basic all substituted; what comes
	 * back shows the placeholder (echo protection), never the value */
	ck_assert_int_eq(sh(sb,
			    SCURL "\"https://api.example.test/echo?k=$API_KEY\" -H \"X-Key: "
				  "$API_KEY\" -u \"user:$API_KEY\"",
			    &out),
			 0);
	ck_assert_msg(strstr(out, "SBX_PH_API_KEY_") && !strstr(out, g_value), "%s", out);
	free(out);
	char basic[256], userpass[128];
	snprintf(userpass, sizeof userpass, "user:%s", g_value);
	b64(userpass, basic);
	char q[128], hk[128];
	snprintf(q, sizeof q, "/echo?k=%s", g_value);
	snprintf(hk, sizeof hk, "[\"X-Key\", \"%s\"]", g_value);
	ck_assert_msg(access_has(mark, q, hk), "query/header not substituted upstream");
	ck_assert_msg(access_has(mark, basic, NULL), "Basic credentials not substituted");
	/* the second host pattern of the same secret */
	expect_ok(sb, SCURL "https://x.files.example.test/echo -H \"X-Files: $API_KEY\"", NULL);
	snprintf(hk, sizeof hk, "[\"X-Files\", \"%s\"]", g_value);
	ck_assert_msg(access_has(mark, hk, NULL), "not substituted for *.files.example.test");
	/* another host: the placeholder goes out unchanged, and is audited */
	expect_ok(sb, SCURL "\"http://other.test/echo?m=$API_KEY\" -H \"X-Other: $API_KEY\"",
		  NULL);
	ck_assert_msg(access_has(mark, "/echo?m=SBX_PH_API_KEY_", "\"X-Other\", \"SBX_PH_API_KEY_"),
		      "placeholder not left as is for other.test");
	ck_assert_msg(!access_has(mark, "other.test", g_value), "value sent to other.test");
	ck_assert(has_event(&n.ev, "\"secret.misdirected\"", "\"API_KEY\"", "other.test"));
	ck_assert(has_event(&n.ev, "\"http.request\"", "\"secrets\":[\"API_KEY\"]",
			    "api.example.test"));
	/* python urllib and Node's fetch (TLS 1.3), curl held to TLS 1.2 */
	expect_ok(sb,
		  "python3 -c 'import os, urllib.request as u; r = u.Request("
		  "\"https://api.example.test/echo\", headers={\"X-Py\": os.environ[\"API_KEY\"]}); "
		  "print(u.urlopen(r, timeout=60).status)'",
		  "200");
	snprintf(hk, sizeof hk, "[\"X-Py\", \"%s\"]", g_value);
	ck_assert_msg(access_has(mark, hk, NULL), "python's request not substituted");
	expect_ok(sb,
		  "node -e 'fetch(\"https://api.example.test/echo\", {headers: {\"X-Node\": "
		  "process.env.API_KEY}}).then(r => console.log(\"status\", r.status))' && "
		  "node -e 'const s = require(\"tls\").connect(443, \"api.example.test\", "
		  "{servername: \"api.example.test\"}, () => { console.log(s.getProtocol()); "
		  "s.end(); })'",
		  "TLSv1.3");
	snprintf(hk, sizeof hk, "[\"X-Node\", \"%s\"]", g_value);
	ck_assert_msg(access_has(mark, hk, NULL), "node's request not substituted");
	expect_ok(sb, "curl -sS -v --tls-max 1.2 https://api.example.test/echo 2>&1",
		  "SSL connection using TLSv1.2");
	/* the echo of an Authorization header comes back as the placeholder */
	ck_assert_int_eq(
	    sh(sb, SCURL "-H \"Authorization: Bearer $API_KEY\" https://api.example.test/headers-echo",
	       &out),
	    0);
	ck_assert_msg(strstr(out, "Bearer SBX_PH_API_KEY_") && !strstr(out, g_value), "%s", out);
	free(out);
	ck_assert_int_eq(sh(sb, SCURL "-u \"user:$API_KEY\" https://api.example.test/headers-echo",
			    &out),
			 0);
	ck_assert_msg(!strstr(out, basic), "the guest got base64 of the value: %s", out);
	free(out);
	netsb_free(&n);
}
END_TEST

START_TEST(secrets_bodies_and_bulk)
{
	sandbox_secret_t sec[2];
	sandbox_options_t o;
	secrets_options(&o, sec);
	struct netsb n;
	netsb_create_with(&n, &o);
	sandbox_t *sb = n.sb;
	/* body substitution (opted in) with the length fixed up */
	char body[160], want[65];
	snprintf(body, sizeof body, "token=%s&x=1", g_body_value);
	sha256_str(body, want);
	expect_ok(sb,
		  "printf 'token=%s&x=1' \"$BODY_KEY\" | " SCURL
		  "--data-binary @- https://api.example.test/sha256",
		  want);
	/* a 150 KB POST and a 100 MiB download, intact through interception */
	expect_ok(sb,
		  "head -c 150000 /dev/urandom > /tmp/b && s=$(sha256sum < /tmp/b | cut -c1-64) && "
		  SCURL "--data-binary @/tmp/b https://api.example.test/sha256 | grep -q \"$s\" && "
		  "echo same",
		  "same");
	char sha[65];
	pattern_sha256(100u << 20, sha);
	expect_ok(sb, "curl -sS --max-time 600 https://api.example.test/bytes/104857600 | sha256sum",
		  sha);
	/* upstream certificates that must not pass */
	expect_fail(sb, SCURL "https://expired.example.test/echo", NULL);
	expect_fail(sb, SCURL "https://selfsigned.example.test/echo", NULL);
	expect_fail(sb, SCURL "https://wrongname.example.test/echo", NULL);
	ck_assert(has_event(&n.ev, "\"tls.error\"", "expired.example.test", "upstream"));
	/* a guest clock an hour behind still accepts the minted certificate */
	expect_ok(sb, "date -s @$(( $(date +%s) - 3600 )) >/dev/null && " SCURL
		      "https://api.example.test/echo",
		  "\"path\"");
	netsb_free(&n);
}
END_TEST

START_TEST(secrets_block_and_passthrough)
{
	sandbox_secret_t sec[2];
	sandbox_options_t o;
	secrets_options(&o, sec);
	o.net_flags = SANDBOX_NET_BLOCK_MISDIRECTED;
	const char *pass[] = {"a.example.test", NULL};
	o.tls_passthrough = pass;
	struct netsb n;
	netsb_create_with(&n, &o);
	sandbox_t *sb = n.sb;
	long mark = tn_log_mark(TESTNET_ACCESS_LOG);
	expect_fail(sb, SCURL "http://other.test/echo -H \"X-Key: $API_KEY\"",
		    "not one of that secret's hosts");
	ck_assert_msg(!access_has(mark, "SBX_PH_API_KEY_", NULL),
		      "a blocked misdirected request reached the server");
	expect_ok(sb, SCURL "https://api.example.test/echo -H \"X-Key: $API_KEY\"", NULL);
	/* passthrough: the guest sees the server's own certificate */
	char *out;
	const char *argv[] = {"/bin/sh", "-c", "cat > /tmp/testca.pem", NULL};
	sandbox_exec_options_t eo;
	sandbox_exec_options_init(&eo, SANDBOX_EXEC_OPTIONS_VERSION);
	FILE *f = fopen(TESTNET_CA, "r");
	static char pem[8192];
	size_t pl = fread(pem, 1, sizeof pem, f);
	fclose(f);
	eo.stdin_data = pem;
	eo.stdin_len = pl;
	sandbox_result_t *r = NULL;
	ck_assert_int_eq(sandbox_exec(sb, argv, &eo, &r, 0), 0);
	sandbox_result_free(r);
	ck_assert_int_eq(sh(sb,
			    "curl -sS -v --cacert /tmp/testca.pem https://a.example.test/echo 2>&1",
			    &out),
			 0);
	ck_assert_msg(strstr(out, "libsandbox testnet CA"), "not the server's certificate: %s",
		      out);
	free(out);
	netsb_free(&n);
}
END_TEST

/* Search a process's memory (guest RAM is in QEMU's) for a string. */
static int process_memory_has(int pid, const char *needle)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/maps", pid);
	FILE *maps = fopen(path, "r");
	snprintf(path, sizeof path, "/proc/%d/mem", pid);
	FILE *mem = fopen(path, "rb");
	ck_assert_ptr_nonnull(maps);
	ck_assert_ptr_nonnull(mem);
	size_t nl = strlen(needle), chunk = 1 << 20;
	char *buf = malloc(chunk + nl);
	char line[512];
	int found = 0;
	long scanned = 0;
	while (!found && fgets(line, sizeof line, maps)) {
		unsigned long lo, hi;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r')
			continue;
		for (unsigned long a = lo; a < hi && !found; a += chunk) {
			size_t want = hi - a < chunk + nl ? hi - a : chunk + nl;
			if (fseek(mem, (long)a, SEEK_SET) != 0)
				break;
			size_t got = fread(buf, 1, want, mem);
			clearerr(mem);
			scanned += (long)got;
			for (size_t i = 0; got >= nl && i + nl <= got && !found; i++)
				found = buf[i] == needle[0] && !memcmp(buf + i, needle, nl);
		}
	}
	free(buf);
	fclose(maps);
	fclose(mem);
	ck_assert_msg(scanned > 256L << 20, "only %ld bytes of QEMU memory were readable",
		      scanned);
	return found;
}

static int file_has(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	size_t nl = strlen(needle), chunk = 1 << 20;
	char *buf = malloc(chunk + nl);
	size_t keep = 0;
	int found = 0;
	size_t got;
	while (!found && (got = fread(buf + keep, 1, chunk, f)) > 0) {
		size_t have = keep + got;
		for (size_t i = 0; i + nl <= have && !found; i++)
			found = buf[i] == needle[0] && !memcmp(buf + i, needle, nl);
		keep = have < nl ? have : nl - 1;
		memmove(buf, buf + have - keep, keep);
	}
	free(buf);
	fclose(f);
	return found;
}

START_TEST(secret_value_never_in_the_guest)
{
	sandbox_secret_t sec[2];
	sandbox_options_t o;
	secrets_options(&o, sec);
	struct netsb n;
	netsb_create_with(&n, &o);
	sandbox_t *sb = n.sb;
	/* use the secret in every way the tests know, then look for it */
	expect_ok(sb,
		  SCURL "-u \"u:$API_KEY\" \"https://api.example.test/echo?k=$API_KEY\" "
		  "-H \"X-Key: $API_KEY\" > /root/out.json && " SCURL
		  "-H \"Authorization: Bearer $API_KEY\" https://api.example.test/headers-echo "
		  ">> /root/out.json && printf 'x=%s' \"$BODY_KEY\" | " SCURL
		  "--data-binary @- https://api.example.test/echo >> /root/out.json && sync && "
		  "grep -c SBX_PH_ /root/out.json",
		  NULL);
	/* the guest's own view of its files: nothing (the search pattern is
	 * the value with its halves swapped, so the command line itself
	 * never holds it) */
	char cmd[512];
	size_t h = strlen(g_value) / 2;
	snprintf(cmd, sizeof cmd,
		 "v=%s%.*s; grep -rlsF --exclude-dir=proc --exclude-dir=sys \"$v\" / ; echo done",
		 g_value + h, (int)h, g_value);
	char *out;
	ck_assert_int_eq(sh(sb, cmd, &out), 0);
	/* the command printed no file path, only "done" */
	ck_assert_msg(!strncmp(out, "done", 4), "files in the guest hold the value: %s", out);
	free(out);
	/* guest memory (QEMU's) and the guest's disk overlay, from the host */
	int pid = vt_qemu_pid(sandbox_id(sb));
	ck_assert_int_gt(pid, 0);
	ck_assert_msg(!process_memory_has(pid, g_value), "the value is in guest memory");
	ck_assert_msg(!process_memory_has(pid, g_body_value), "the body value is in guest memory");
	char overlay[512];
	snprintf(overlay, sizeof overlay, "%s/sandboxes/%s/disk.qcow2", vt_state_dir(),
		 sandbox_id(sb));
	ck_assert_msg(access(overlay, R_OK) == 0, "no overlay at %s", overlay);
	ck_assert_msg(!file_has(overlay, g_value), "the value is on the guest's disk");
	/* and the placeholder is there (the scan can find what it looks for) */
	ck_assert_msg(file_has(overlay, "SBX_PH_API_KEY_"), "the scan found nothing at all");
	netsb_free(&n);
}
END_TEST


/* HTTP/1.1 through interception with real clients: keep-alive, HEAD,
 * HTTP/1.0, 100-continue with a 100 MiB upload, a websocket after 101. */
START_TEST(http_features_through_interception)
{
	sandbox_secret_t sec[2];
	sandbox_options_t o;
	secrets_options(&o, sec);
	struct netsb n;
	netsb_create_with(&n, &o);
	sandbox_t *sb = n.sb;
	expect_ok(sb,
		  "python3 - <<'EOF'\n"
		  "import http.client, json, os, ssl, socket, base64\n"
		  "c = http.client.HTTPSConnection('api.example.test', timeout=60)\n"
		  "n = []\n"
		  "for i in range(3):\n"
		  "    c.request('GET', '/echo?i=%d' % i)\n"
		  "    n.append(json.loads(c.getresponse().read())['request_on_connection'])\n"
		  "c.request('HEAD', '/echo')\n"
		  "r = c.getresponse(); body = r.read()\n"
		  "assert r.status == 200 and body == b'', (r.status, body)\n"
		  "c.request('GET', '/echo?after-head')\n"
		  "n.append(json.loads(c.getresponse().read())['request_on_connection'])\n"
		  "assert n == [1, 2, 3, 5], n\n"
		  "s = ssl.create_default_context().wrap_socket(\n"
		  "    socket.create_connection(('api.example.test', 443)), "
		  "server_hostname='api.example.test')\n"
		  "key = base64.b64encode(os.urandom(16)).decode()\n"
		  "s.sendall(('GET /ws HTTP/1.1\\r\\nHost: api.example.test\\r\\nUpgrade: websocket\\r\\n'\n"
		  "           'Connection: Upgrade\\r\\nSec-WebSocket-Key: %s\\r\\n'\n"
		  "           'Sec-WebSocket-Version: 13\\r\\n\\r\\n' % key).encode())\n"
		  "head = b''\n"
		  "while b'\\r\\n\\r\\n' not in head:\n"
		  "    head += s.recv(1)\n"
		  "assert head.startswith(b'HTTP/1.1 101'), head\n"
		  "msg = b'hello over websocket'\n"
		  "mask = os.urandom(4)\n"
		  "s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask + "
		  "bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))\n"
		  "got = b''\n"
		  "while len(got) < 2 + len(msg):\n"
		  "    got += s.recv(100)\n"
		  "assert got[2:] == msg, got\n"
		  "print('http-ok')\n"
		  "EOF",
		  "http-ok");
	expect_ok(sb, SCURL "-0 https://api.example.test/echo", "HTTP/1.0");
	/* 100 MiB up: curl sends Expect: 100-continue for a body this size */
	expect_ok(sb,
		  "dd if=/dev/urandom of=/tmp/big bs=1M count=100 2>/dev/null && "
		  "s=$(sha256sum < /tmp/big | cut -c1-64) && "
		  "curl -sS --fail-with-body --max-time 600 -v -T /tmp/big -X POST "
		  "https://api.example.test/sha256 2>/tmp/v | grep -q \"$s\" && "
		  "grep -q '100 Continue' /tmp/v && echo up-ok",
		  "up-ok");
	ck_assert(has_event(&n.ev, "\"http.request\"", "\"method\":\"HEAD\"", NULL));
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
	TCase *sc = tcase_create("secrets");
	tcase_set_timeout(sc, 900);
	tcase_add_test(sc, secrets_substituted_only_where_approved);
	tcase_add_test(sc, secrets_bodies_and_bulk);
	tcase_add_test(sc, secrets_block_and_passthrough);
	tcase_add_test(sc, secret_value_never_in_the_guest);
	suite_add_tcase(s, sc);
	TCase *h = tcase_create("http");
	tcase_set_timeout(h, 900);
	tcase_add_test(h, http_features_through_interception);
	suite_add_tcase(s, h);
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
