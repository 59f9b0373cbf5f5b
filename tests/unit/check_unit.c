/* Unit tests for the library's internal modules: no VM needed. */
#include <arpa/inet.h>
#include <check.h>
#include <sys/socket.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accel.h"
#include "addrmap.h"
#include "dnsmsg.h"
#include "domain_xml.h"
#include "error.h"
#include "image.h"
#include "json.h"
#include "netpolicy.h"
#include "options.h"
#include "outq.h"
#include "proto.h"
#include "sniff.h"
#include "util.h"

/* ---------------------------------------------------------------- proto */

START_TEST(proto_header_roundtrip)
{
	struct sbx_frame_hdr h = {.len = 1234, .type = SBX_T_STDOUT, .stream = 77}, g;
	uint8_t b[SBX_PROTO_HDR_SIZE];
	sbx_hdr_pack(b, &h);
	ck_assert_int_eq(b[0], 1234 & 0xff); /* little-endian on the wire */
	ck_assert_int_eq(b[1], 1234 >> 8);
	ck_assert_int_eq(sbx_hdr_unpack(b, &g), 0);
	ck_assert_uint_eq(g.len, 1234);
	ck_assert_uint_eq(g.type, SBX_T_STDOUT);
	ck_assert_uint_eq(g.stream, 77);
}
END_TEST

START_TEST(proto_header_rejects_oversize_and_reserved)
{
	struct sbx_frame_hdr h = {.len = SBX_PROTO_MAX_PAYLOAD + 1, .type = 1}, g;
	uint8_t b[SBX_PROTO_HDR_SIZE];
	sbx_hdr_pack(b, &h);
	ck_assert_int_eq(sbx_hdr_unpack(b, &g), -1);
	h.len = 10;
	h.reserved = 1;
	sbx_hdr_pack(b, &h);
	ck_assert_int_eq(sbx_hdr_unpack(b, &g), -1);
	h.reserved = 0;
	h.flags = 0x80;
	sbx_hdr_pack(b, &h);
	ck_assert_int_eq(sbx_hdr_unpack(b, &g), -1);
}
END_TEST

static size_t build_start(uint8_t *buf, size_t cap, uint32_t argc, const char **argv, uint32_t envc,
			  const char **env)
{
	struct sbx_wr w;
	sbx_wr_init(&w, buf, cap);
	sbx_wr_u32(&w, 0);
	sbx_wr_u32(&w, 500);
	sbx_wr_u32(&w, argc);
	sbx_wr_u32(&w, envc);
	sbx_wr_str(&w, "/tmp", 4);
	for (uint32_t i = 0; i < argc; i++)
		sbx_wr_str(&w, argv[i], strlen(argv[i]));
	for (uint32_t i = 0; i < envc; i++)
		sbx_wr_str(&w, env[i], strlen(env[i]));
	ck_assert(!w.bad);
	return w.off;
}

START_TEST(proto_exec_start_decode)
{
	uint8_t buf[512];
	const char *argv[] = {"sh", "-c", "echo hi"};
	const char *env[] = {"A=1", "PATH=/bin"};
	size_t n = build_start(buf, sizeof buf, 3, argv, 2, env);
	const char *av[8], *ev[8];
	uint32_t al[8], el[8];
	struct sbx_exec_start s = {.argv = av, .argv_len = al, .env = ev, .env_len = el};
	ck_assert_int_eq(sbx_exec_start_decode(buf, n, &s, 8, 8), 0);
	ck_assert_uint_eq(s.argc, 3);
	ck_assert_uint_eq(s.timeout_ms, 500);
	ck_assert_int_eq(memcmp(s.argv[2], "echo hi", al[2]), 0);
	ck_assert_int_eq(memcmp(s.cwd, "/tmp", s.cwd_len), 0);
	/* every truncation of a valid frame is rejected, never over-read */
	for (size_t cut = 0; cut < n; cut++)
		ck_assert_int_eq(sbx_exec_start_decode(buf, cut, &s, 8, 8), -1);
	/* trailing garbage is rejected */
	buf[n] = 0;
	ck_assert_int_eq(sbx_exec_start_decode(buf, n + 1, &s, 8, 8), -1);
	/* more args than the caller's capacity */
	ck_assert_int_eq(sbx_exec_start_decode(buf, n, &s, 2, 8), -1);
}
END_TEST

START_TEST(proto_exec_start_rejects_bad_env_and_nul)
{
	uint8_t buf[512];
	const char *argv[] = {"ls"};
	const char *bad_env[] = {"NOEQUALS"};
	size_t n = build_start(buf, sizeof buf, 1, argv, 1, bad_env);
	const char *av[4], *ev[4];
	uint32_t al[4], el[4];
	struct sbx_exec_start s = {.argv = av, .argv_len = al, .env = ev, .env_len = el};
	ck_assert_int_eq(sbx_exec_start_decode(buf, n, &s, 4, 4), -1);
	const char *nul_arg[] = {"l\0s"};
	struct sbx_wr w;
	sbx_wr_init(&w, buf, sizeof buf);
	sbx_wr_u32(&w, 0);
	sbx_wr_u32(&w, 0);
	sbx_wr_u32(&w, 1);
	sbx_wr_u32(&w, 0);
	sbx_wr_str(&w, "", 0);
	sbx_wr_str(&w, nul_arg[0], 3);
	ck_assert_int_eq(sbx_exec_start_decode(buf, w.off, &s, 4, 4), -1);
}
END_TEST

START_TEST(proto_exit_roundtrip_and_bounds)
{
	uint8_t b[8];
	struct sbx_exit e = {.kind = SBX_EXIT_SIGNAL, .timed_out = 1, .value = 9}, g;
	size_t n = sbx_exit_encode(b, &e);
	ck_assert_uint_eq(n, 8);
	ck_assert_int_eq(sbx_exit_decode(b, n, &g), 0);
	ck_assert_int_eq(g.value, 9);
	ck_assert_int_eq(g.timed_out, 1);
	e.kind = SBX_EXIT_CODE;
	e.value = 256;
	sbx_exit_encode(b, &e);
	ck_assert_int_eq(sbx_exit_decode(b, n, &g), -1);
	e.kind = 7;
	e.value = 1;
	sbx_exit_encode(b, &e);
	ck_assert_int_eq(sbx_exit_decode(b, n, &g), -1);
	ck_assert_int_eq(sbx_exit_decode(b, 7, &g), -1);
}
END_TEST

/* ------------------------------------------------------------ netpolicy */

static int allows(const char *pattern, const char *name, unsigned port)
{
	const char *list[] = {pattern, NULL};
	struct sbx_netpolicy p;
	ck_assert_int_eq(sbx_netpolicy_parse(list, "allow_net", &p), 0);
	int r = sbx_netpolicy_allows_name(&p, name, port);
	sbx_netpolicy_free(&p);
	return r;
}

START_TEST(netpolicy_patterns_match_the_table)
{
	ck_assert(allows("example.test", "example.test", 443));
	ck_assert(allows("example.test", "EXAMPLE.test.", 8443));
	ck_assert(!allows("example.test", "a.example.test", 443));
	ck_assert(!allows("example.test", "example.test.evil", 443));
	ck_assert(allows("api.example.test:443", "api.example.test", 443));
	ck_assert(!allows("api.example.test:443", "api.example.test", 8443));
	ck_assert(allows("api.example.test:443", "api.example.test", 0)); /* DNS */
	ck_assert(allows("*.example.test", "a.example.test", 80));
	ck_assert(allows("*.example.test", "a.b.example.test", 80));
	ck_assert(!allows("*.example.test", "example.test", 80));
	ck_assert(!allows("*.example.test", "aexample.test", 80));
	ck_assert(!allows("*.example.test:443", "a.example.test", 80));
	const char *ips[] = {"192.0.2.1", "[2001:db8::1]:443", NULL};
	struct sbx_netpolicy p;
	ck_assert_int_eq(sbx_netpolicy_parse(ips, "allow_net", &p), 0);
	uint8_t a4[4] = {192, 0, 2, 1}, b4[4] = {192, 0, 2, 2}, a6[16];
	ck_assert_int_eq(inet_pton(AF_INET6, "2001:db8::1", a6), 1);
	ck_assert(sbx_netpolicy_allows_addr(&p, AF_INET, a4, 80));
	ck_assert(!sbx_netpolicy_allows_addr(&p, AF_INET, b4, 80));
	ck_assert(sbx_netpolicy_allows_addr(&p, AF_INET6, a6, 443));
	ck_assert(!sbx_netpolicy_allows_addr(&p, AF_INET6, a6, 80));
	/* an IP pattern never allows a name */
	ck_assert(!sbx_netpolicy_allows_name(&p, "192.0.2.1", 80));
	sbx_netpolicy_free(&p);
}
END_TEST

START_TEST(netpolicy_rejects_malformed_patterns_by_name)
{
	static const char *bad[] = {"",
				    "*",
				    "*.",
				    "a.*.test",
				    "*example.test",
				    "2001:db8::1",
				    "[2001:db8::1",
				    "[nope]",
				    "host:0",
				    "host:65536",
				    "host:+1",
				    "host:",
				    "1.2.3",
				    "010.0.0.1",
				    "a..b",
				    "-a.test",
				    "a b.test",
				    "[::1]x",
				    "x:1:2"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		const char *list[] = {"ok.test", bad[i], NULL};
		struct sbx_netpolicy p;
		ck_assert_msg(sbx_netpolicy_parse(list, "allow_net", &p) == SANDBOX_E_INVAL,
			      "'%s' accepted", bad[i]);
		char want[64];
		snprintf(want, sizeof want, "allow_net[1] '%s'", bad[i]);
		ck_assert_msg(strstr(sandbox_last_error(), want), "message '%s' lacks %s",
			      sandbox_last_error(), want);
	}
	/* in options: a malformed pattern is INVAL before the UNSUPPORTED refusal */
	sandbox_options_t o;
	sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
	const char *list[] = {"good.test", "bad..test", NULL};
	o.allow_net = list;
	ck_assert_int_eq(sbx_options_validate(&o), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "bad..test"));
}
END_TEST

/* ----------------------------------------------------------------- outq */

START_TEST(outq_keeps_order_streams_and_bounds)
{
	struct sbx_outq q = {0};
	uint8_t big[100000], out[200000];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (uint8_t)(i * 7);
	/* wrap the ring several times, in uneven steps */
	size_t total_in = 0, total_out = 0;
	for (int round = 0; round < 20; round++) {
		ck_assert_int_eq(sbx_outq_push(&q, 1, big, 70000 + round), 0);
		total_in += 70000 + round;
		int s;
		size_t n = sbx_outq_pop(&q, &s, out, sizeof out);
		ck_assert_int_eq(s, 1);
		ck_assert_uint_eq(n, 70000 + (size_t)round);
		ck_assert_int_eq(memcmp(out, big, n), 0);
		total_out += n;
	}
	ck_assert_uint_eq(total_in, total_out);
	ck_assert(sbx_outq_empty(&q));
	/* adjacent frames of one stream merge; runs of another stay apart */
	ck_assert_int_eq(sbx_outq_push(&q, 1, (const uint8_t *)"ab", 2), 0);
	ck_assert_int_eq(sbx_outq_push(&q, 1, (const uint8_t *)"cd", 2), 0);
	ck_assert_int_eq(sbx_outq_push(&q, 2, (const uint8_t *)"E", 1), 0);
	ck_assert_uint_eq(q.seg_n, 2);
	int s;
	ck_assert_uint_eq(sbx_outq_pop(&q, &s, out, sizeof out), 4);
	ck_assert_int_eq(s, 1);
	ck_assert_int_eq(memcmp(out, "abcd", 4), 0);
	ck_assert_uint_eq(sbx_outq_pop(&q, &s, out, sizeof out), 1);
	ck_assert_int_eq(s, 2);
	/* never more than the window */
	ck_assert_int_eq(sbx_outq_push(&q, 1, big, sizeof big), 0);
	ck_assert_int_eq(sbx_outq_push(&q, 1, big, sizeof big), 0);
	ck_assert_int_eq(sbx_outq_push(&q, 1, big, sizeof big), -1);
	sbx_outq_free(&q);
	/* alternating 1-byte frames: memory stays a small multiple of the data */
	for (size_t i = 0; i < SBX_PROTO_INITIAL_WINDOW; i++)
		ck_assert_int_eq(sbx_outq_push(&q, 1 + (int)(i & 1), big, 1), 0);
	ck_assert_uint_le(q.seg_cap * sizeof(struct sbx_outq_seg), 8u * SBX_PROTO_INITIAL_WINDOW);
	sbx_outq_free(&q);
}
END_TEST

/* ----------------------------------------------------------------- json */

START_TEST(json_escapes_everything)
{
	struct sbx_json j;
	sbx_json_init(&j);
	sbx_json_open(&j, NULL);
	sbx_json_str(&j, "a\"b", "x\"\\\n\x01\x7f");
	sbx_json_strn(&j, "bad", "\xff\xc3(ok", 5);
	sbx_json_int(&j, "n", -42);
	sbx_json_open_array(&j, "v");
	sbx_json_str(&j, NULL, "\xe2\x82\xac");
	sbx_json_close_array(&j);
	sbx_json_close(&j);
	ck_assert_str_eq(j.buf,
			 "{\"a\\\"b\":\"x\\\"\\\\\\u000a\\u0001\\u007f\","
			 "\"bad\":\"\\ufffd\\ufffd(ok\",\"n\":-42,\"v\":[\"\xe2\x82\xac\"]}");
	sbx_json_free(&j);
}
END_TEST

/* -------------------------------------------------------------- options */

START_TEST(options_init_and_defaults)
{
	sandbox_options_t o;
	ck_assert_int_eq(sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION), 0);
	ck_assert_uint_eq(o.memory_mb, 512);
	ck_assert_uint_eq(o.vcpus, 1);
	ck_assert_int_eq(sbx_options_validate(&o), 0);
	ck_assert_int_eq(sandbox_options_init(&o, 99), SANDBOX_E_VERSION);
	ck_assert_int_eq(sandbox_options_init(NULL, 1), SANDBOX_E_INVAL);
}
END_TEST

static int validate_with(void (*mut)(sandbox_options_t *))
{
	sandbox_options_t o, full;
	sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
	mut(&o);
	int rc = sbx_options_upgrade(&o, &full);
	return rc ? rc : sbx_options_validate(&full);
}

static void mem0(sandbox_options_t *o)
{
	o->memory_mb = 0;
}
static void mem_huge(sandbox_options_t *o)
{
	o->memory_mb = 1u << 30;
}
static void vcpu0(sandbox_options_t *o)
{
	o->vcpus = 0;
}
static void rel_workdir(sandbox_options_t *o)
{
	o->workdir = "tmp";
}
static void bad_env(sandbox_options_t *o)
{
	static const char *env[] = {"1BAD=x", NULL};
	o->env = env;
}
static void dup_meta(sandbox_options_t *o)
{
	static const sandbox_kv_t kv[] = {{"a", "1"}, {"a", "2"}};
	o->metadata = kv;
	o->metadata_count = 2;
}
static void null_meta(sandbox_options_t *o)
{
	o->metadata_count = 3;
}
static void allow_net(sandbox_options_t *o)
{
	static const char *list[] = {NULL};
	o->allow_net = list;
}
static void secret(sandbox_options_t *o)
{
	static const char *hosts[] = {"api.example.test", NULL};
	static const sandbox_secret_t s[] = {{"KEY", "value", hosts, 0}};
	o->secrets = s;
	o->secrets_count = 1;
}
static void secret_in_env(sandbox_options_t *o)
{
	static const char *env[] = {"KEY=visible", NULL};
	secret(o);
	o->env = env;
}
static void secret_crlf(sandbox_options_t *o)
{
	static const char *hosts[] = {"api.example.test", NULL};
	static const sandbox_secret_t s[] = {{"KEY", "va\r\nlue", hosts, 0}};
	o->secrets = s;
	o->secrets_count = 1;
}
static void secret_dup(sandbox_options_t *o)
{
	static const char *hosts[] = {"api.example.test", NULL};
	static const sandbox_secret_t s[] = {{"KEY", "a", hosts, 0}, {"KEY", "b", hosts, 0}};
	o->secrets = s;
	o->secrets_count = 2;
}
static void bad_ca_file(sandbox_options_t *o)
{
	o->tls_ca_file = "/nonexistent/ca.pem";
}
static void bad_secret(sandbox_options_t *o)
{
	static const sandbox_secret_t s[] = {{"KEY", "value", NULL, 0}};
	o->secrets = s;
	o->secrets_count = 1;
}
static void volume(sandbox_options_t *o)
{
	static const sandbox_volume_t v[] = {{"/tmp", "/mnt", 0}};
	o->volumes = v;
	o->volumes_count = 1;
}
static void bad_accel(sandbox_options_t *o)
{
	o->accel = (sandbox_accel_t)7;
}
static void bad_version(sandbox_options_t *o)
{
	o->version = 3;
}
static void bad_dns(sandbox_options_t *o)
{
	static const char *list[] = {"192.0.2.53", "not-an-address", NULL};
	o->dns_servers = list;
}
static void bad_dns_port(sandbox_options_t *o)
{
	static const char *list[] = {"[2001:db8::53]:99999", NULL};
	o->dns_servers = list;
}
static void good_dns(sandbox_options_t *o)
{
	static const char *list[] = {"192.0.2.53", "192.0.2.54:5353", "[2001:db8::53]",
				     "[2001:db8::53]:53", NULL};
	o->dns_servers = list;
}
static void bad_allow(sandbox_options_t *o)
{
	static const char *list[] = {"ok.example.test", "*.*.bad", NULL};
	o->allow_net = list;
}
static void passthrough(sandbox_options_t *o)
{
	static const char *list[] = {"pinned.example.test", NULL};
	o->tls_passthrough = list;
}
static void bad_net_flags(sandbox_options_t *o)
{
	o->net_flags = 0x80;
}

START_TEST(options_rejections_are_specific)
{
	ck_assert_int_eq(validate_with(mem0), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "memory_mb"));
	ck_assert_int_eq(validate_with(mem_huge), SANDBOX_E_INVAL);
	ck_assert_int_eq(validate_with(vcpu0), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "vcpus"));
	ck_assert_int_eq(validate_with(rel_workdir), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "workdir"));
	ck_assert_int_eq(validate_with(bad_env), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "1BAD"));
	ck_assert_int_eq(validate_with(dup_meta), SANDBOX_E_INVAL);
	ck_assert_int_eq(validate_with(null_meta), SANDBOX_E_INVAL);
	ck_assert_int_eq(validate_with(bad_accel), SANDBOX_E_INVAL);
	ck_assert_int_eq(validate_with(bad_version), SANDBOX_E_VERSION);
	ck_assert_int_eq(validate_with(bad_secret), SANDBOX_E_INVAL);
	ck_assert_int_eq(validate_with(bad_dns), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "dns_servers[1] 'not-an-address'"));
	ck_assert_int_eq(validate_with(bad_dns_port), SANDBOX_E_INVAL);
	ck_assert_int_eq(validate_with(good_dns), 0);
	ck_assert_int_eq(validate_with(bad_allow), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "allow_net[1] '*.*.bad'"));
	ck_assert_int_eq(validate_with(bad_net_flags), SANDBOX_E_FLAGS);
	ck_assert_int_eq(validate_with(allow_net), 0);
}
END_TEST

/* A caller built against the version-1 header passes the shorter struct:
 * init must not write past it and create must read only what it has. */
START_TEST(options_version_1_struct)
{
	unsigned char buf[sizeof(sandbox_options_t) + 16];
	memset(buf, 0xA5, sizeof buf);
	sandbox_options_t *o = (sandbox_options_t *)buf;
	ck_assert_int_eq(sandbox_options_init(o, 1), 0);
	size_t v1 = offsetof(sandbox_options_t, dns_servers);
	for (size_t i = v1; i < sizeof buf; i++)
		ck_assert_uint_eq(buf[i], 0xA5);
	sandbox_options_t full;
	ck_assert_int_eq(sbx_options_upgrade(o, &full), 0);
	ck_assert_ptr_null(full.dns_servers);
	ck_assert_uint_eq(full.net_flags, 0);
	ck_assert_uint_eq(full.boot_timeout_s, 120);
	ck_assert_int_eq(sbx_options_validate(&full), 0);
}
END_TEST

START_TEST(options_unimplemented_are_refused)
{
	ck_assert_int_eq(validate_with(passthrough), 0);
	ck_assert_int_eq(validate_with(secret), 0);
	ck_assert_int_eq(validate_with(secret_in_env), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "also set in env"));
	ck_assert_int_eq(validate_with(secret_crlf), SANDBOX_E_INVAL);
	ck_assert_int_eq(validate_with(secret_dup), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "KEY given twice"));
	ck_assert_int_eq(validate_with(bad_ca_file), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "tls_ca_file"));
}
END_TEST

static int validate_volumes(const sandbox_volume_t *v, size_t n)
{
	sandbox_options_t o;
	sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
	o.volumes = v;
	o.volumes_count = n;
	return sbx_options_validate(&o);
}

START_TEST(volume_validation)
{
	ck_assert_int_eq(validate_with(volume), 0);
	static const struct {
		sandbox_volume_t v;
		int code;
		const char *msg;
	} bad[] = {
	    {{"/nonexistent-sbx-dir", "/mnt", 0}, SANDBOX_E_NOTFOUND, "does not exist"},
	    {{"/etc/hostname", "/mnt", 0}, SANDBOX_E_NOTDIR, "not a directory"},
	    {{"tmp", "/mnt", 0}, SANDBOX_E_INVAL, "absolute"},
	    {{"/tmp", "mnt", 0}, SANDBOX_E_INVAL, "absolute"},
	    {{"/tmp", "/mnt/../etc", 0}, SANDBOX_E_INVAL, "'..'"},
	    {{"/tmp", "/mnt/", 0}, SANDBOX_E_INVAL, "trailing"},
	    {{"/tmp", "/", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/proc", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/proc/x", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/sys", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/dev", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/etc", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/usr", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/bin", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/sbin", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/lib", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/mnt", 0x80}, SANDBOX_E_FLAGS, "flags"},
	    {{NULL, "/mnt", 0}, SANDBOX_E_INVAL, "required"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_int_eq(validate_volumes(&bad[i].v, 1), bad[i].code);
		ck_assert_msg(strstr(sandbox_last_error(), bad[i].msg), "case %zu: %s", i,
			      sandbox_last_error());
	}
	sandbox_volume_t dup[2] = {{"/tmp", "/data", 0},
				   {"/var", "/data", SANDBOX_VOLUME_READONLY}};
	ck_assert_int_eq(validate_volumes(dup, 2), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "already used"));
	sandbox_volume_t many[17];
	char names[17][16];
	for (int i = 0; i < 17; i++) {
		snprintf(names[i], sizeof names[i], "/v%d", i);
		many[i] = (sandbox_volume_t){"/tmp", names[i], 0};
	}
	ck_assert_int_eq(validate_volumes(many, 16), 0);
	ck_assert_int_eq(validate_volumes(many, 17), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "too many volumes"));
	ck_assert_int_eq(validate_volumes(NULL, 1), SANDBOX_E_INVAL);
}
END_TEST

START_TEST(argv_validation)
{
	const char *empty[] = {NULL};
	const char *blank[] = {"", NULL};
	const char *ok[] = {"ls", "-l", NULL};
	ck_assert_int_eq(sbx_argv_validate(NULL), SANDBOX_E_INVAL);
	ck_assert_int_eq(sbx_argv_validate(empty), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "empty"));
	ck_assert_int_eq(sbx_argv_validate(blank), SANDBOX_E_INVAL);
	ck_assert_int_eq(sbx_argv_validate(ok), 0);
	sandbox_exec_options_t e;
	sandbox_exec_options_init(&e, SANDBOX_EXEC_OPTIONS_VERSION);
	e.cwd = "relative/dir";
	ck_assert_int_eq(sbx_exec_options_validate(&e), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "cwd"));
}
END_TEST

START_TEST(strerror_covers_all_codes)
{
	for (int c = 0; c >= SANDBOX_E_TOOBIG; c--)
		ck_assert_str_ne(sandbox_strerror(c), "unknown error code");
	ck_assert_str_eq(sandbox_strerror(-1000), "unknown error code");
}
END_TEST

/* ---------------------------------------------------------------- accel */

static char tmpl[64];

static void mkfake(const char *mod)
{
	char p[256];
	snprintf(p, sizeof p, "%s/sys/module/%s", tmpl, mod);
	ck_assert_int_eq(sbx_mkdirs(p, 0755), 0);
}

START_TEST(accel_detection_uses_vendor_module)
{
	strcpy(tmpl, "/tmp/sbx-accel-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	char dev[256], why[256];
	snprintf(dev, sizeof dev, "%s/kvm", tmpl);
	/* no device: TCG */
	ck_assert_int_eq(sbx_accel_detect(tmpl, dev, why, sizeof why), SANDBOX_ACCEL_TCG);
	FILE *f = fopen(dev, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	/* device but no vendor module: TCG */
	mkfake("kvm");
	ck_assert_int_eq(sbx_accel_detect(tmpl, dev, why, sizeof why), SANDBOX_ACCEL_TCG);
	/* PVM: TCG, even with the device usable */
	mkfake("kvm_pvm");
	ck_assert_int_eq(sbx_accel_detect(tmpl, dev, why, sizeof why), SANDBOX_ACCEL_TCG);
	ck_assert_ptr_nonnull(strstr(why, "kvm_pvm"));
	sbx_rmtree(tmpl);
	ck_assert_ptr_nonnull(mkdtemp(strcpy(tmpl, "/tmp/sbx-accel-XXXXXX")));
	snprintf(dev, sizeof dev, "%s/kvm", tmpl);
	f = fopen(dev, "w");
	fclose(f);
	mkfake("kvm_intel");
	ck_assert_int_eq(sbx_accel_detect(tmpl, dev, why, sizeof why), SANDBOX_ACCEL_KVM);
	sbx_rmtree(tmpl);
}
END_TEST

START_TEST(accel_env_override)
{
	setenv("SANDBOX_ACCEL", "tcg", 1);
	ck_assert_int_eq(sbx_accel_resolve(SANDBOX_ACCEL_AUTO), SANDBOX_ACCEL_TCG);
	setenv("SANDBOX_ACCEL", "bogus", 1);
	ck_assert_int_eq(sbx_accel_resolve(SANDBOX_ACCEL_AUTO), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "SANDBOX_ACCEL"));
	/* an explicit option wins over the environment */
	ck_assert_int_eq(sbx_accel_resolve(SANDBOX_ACCEL_TCG), SANDBOX_ACCEL_TCG);
	unsetenv("SANDBOX_ACCEL");
	/* on this machine (PVM or no KVM) an explicit KVM request is refused
	 * unless a vendor module really is loaded */
	int expect =
	    access("/sys/module/kvm_intel", F_OK) == 0 || access("/sys/module/kvm_amd", F_OK) == 0
		? SANDBOX_ACCEL_KVM
		: SANDBOX_E_ACCEL;
	if (access("/sys/module/kvm_pvm", F_OK) == 0 || access("/dev/kvm", R_OK | W_OK) != 0)
		expect = SANDBOX_E_ACCEL;
	ck_assert_int_eq(sbx_accel_resolve(SANDBOX_ACCEL_KVM), expect);
}
END_TEST

/* ----------------------------------------------------------- domain xml */

START_TEST(domain_xml_escapes_and_roundtrips_metadata)
{
	struct sbx_domain_spec s = {
	    .name = "sbx-test",
	    .memory_mb = 256,
	    .vcpus = 1,
	    .kernel = "/k",
	    .initrd = "/i",
	    .cmdline = "console=ttyS0 </cmdline><evil/>",
	    .disk = "/d'\"&.qcow2",
	    .agent_socket = "/s.sock",
	    .console_log = "/c.log",
	    .state_dir = "/var/lib/x&y",
	};
	char *xml = sbx_domain_xml(&s);
	ck_assert_ptr_nonnull(xml);
	ck_assert_ptr_null(strstr(xml, "<evil/>"));
	ck_assert_ptr_nonnull(strstr(xml, "&lt;/cmdline&gt;&lt;evil/&gt;"));
	ck_assert_ptr_nonnull(strstr(xml, "<domain type=\"qemu\">"));
	ck_assert_ptr_nonnull(strstr(xml, "relabel=\"no\""));
	ck_assert_ptr_nonnull(strstr(xml, "org.libsandbox.agent"));
	ck_assert_ptr_nonnull(strstr(xml, SBX_TCG_CPU_MODEL));
	free(xml);
	s.kvm = 1;
	xml = sbx_domain_xml(&s);
	ck_assert_ptr_nonnull(strstr(xml, "<domain type=\"kvm\">"));
	ck_assert_ptr_nonnull(strstr(xml, "host-passthrough"));
	free(xml);
	char *dir = sbx_domain_xml_state_dir("<sbx:sandbox xmlns:sbx=\"" SBX_XML_NS
					     "\"><sbx:state_dir>/var/lib/x&amp;y"
					     "</sbx:state_dir></sbx:sandbox>");
	ck_assert_str_eq(dir, "/var/lib/x&y");
	free(dir);
	ck_assert_ptr_null(sbx_domain_xml_state_dir("<not xml"));
}
END_TEST

/* ---------------------------------------------------------------- image */

static void write_file(const char *dir, const char *name, const void *data, size_t n)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(data, 1, n, f), n);
	fclose(f);
}

static void make_fake_image(const char *dir, size_t rootfs_size_claim)
{
	uint8_t kernel[64] = {0x7f, 'E', 'L', 'F'};
	uint8_t initrd[16] = {0x1f, 0x8b};
	static uint8_t rootfs[2048];
	rootfs[1080] = 0x53;
	rootfs[1081] = 0xef;
	write_file(dir, "vmlinux", kernel, sizeof kernel);
	write_file(dir, "initrd.img", initrd, sizeof initrd);
	write_file(dir, "rootfs.img", rootfs, sizeof rootfs);
	char mf[512];
	int n =
	    snprintf(mf, sizeof mf,
		     "format=1\nkernel=vmlinux\nkernel_size=64\ninitrd=initrd.img\n"
		     "initrd_size=16\nrootfs=rootfs.img\nrootfs_size=%zu\ncmdline=console=ttyS0 "
		     "quiet\n",
		     rootfs_size_claim);
	write_file(dir, "manifest", mf, (size_t)n);
}

START_TEST(image_validation)
{
	char dir[] = "/tmp/sbx-image-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	struct sbx_image img;
	/* missing */
	ck_assert_int_eq(sbx_image_load(dir, &img), SANDBOX_E_IMAGE);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "manifest"));
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "make image"));
	/* good */
	make_fake_image(dir, 2048);
	ck_assert_int_eq(sbx_image_load(dir, &img), 0);
	ck_assert_str_eq(img.cmdline, "console=ttyS0 quiet");
	sbx_image_free(&img);
	/* truncated rootfs: size mismatch */
	make_fake_image(dir, 4096);
	ck_assert_int_eq(sbx_image_load(dir, &img), SANDBOX_E_IMAGE);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "rootfs.img"));
	/* corrupt kernel magic */
	make_fake_image(dir, 2048);
	uint8_t junk[64] = {0};
	write_file(dir, "vmlinux", junk, sizeof junk);
	ck_assert_int_eq(sbx_image_load(dir, &img), SANDBOX_E_IMAGE);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "ELF"));
	/* relative dir */
	ck_assert_int_eq(sbx_image_load("rel/dir", &img), SANDBOX_E_INVAL);
	sbx_rmtree(dir);
}
END_TEST

/* ----------------------------------------------------------------- util */

START_TEST(util_rmtree_does_not_follow_symlinks)
{
	char dir[] = "/tmp/sbx-rm-XXXXXX", keep[] = "/tmp/sbx-keep-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_ptr_nonnull(mkdtemp(keep));
	char p[256], k[256];
	snprintf(k, sizeof k, "%s/precious", keep);
	write_file(keep, "precious", "x", 1);
	snprintf(p, sizeof p, "%s/link", dir);
	ck_assert_int_eq(symlink(keep, p), 0);
	snprintf(p, sizeof p, "%s/a/b", dir);
	ck_assert_int_eq(sbx_mkdirs(p, 0755), 0);
	ck_assert_int_eq(sbx_rmtree(dir), 0);
	ck_assert_int_ne(access(dir, F_OK), 0);
	ck_assert_int_eq(access(k, F_OK), 0);
	sbx_rmtree(keep);
}
END_TEST

START_TEST(util_run_reports_status_and_stderr)
{
	const char *ok[] = {"sh", "-c", "echo oops >&2; exit 3", NULL};
	char err[64];
	ck_assert_int_eq(sbx_run(ok, err, sizeof err), 3);
	ck_assert_str_eq(err, "oops\n");
	const char *missing[] = {"/nonexistent/binary", NULL};
	ck_assert_int_lt(sbx_run(missing, NULL, 0), 0);
}
END_TEST

/* ---- egress proxy building blocks */

static size_t read_corpus(const char *rel, uint8_t *buf, size_t cap)
{
	const char *top = getenv("top_srcdir");
	char path[512];
	snprintf(path, sizeof path, "%s/tests/fuzz/corpus/%s", top ? top : "..", rel);
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	size_t n = fread(buf, 1, cap, f);
	fclose(f);
	return n;
}

static enum sbx_sniff_kind sniff_str(const char *s, struct sbx_sniff *out)
{
	sbx_sniff((const uint8_t *)s, strlen(s), out);
	return out->kind;
}

START_TEST(sniff_http_host)
{
	struct sbx_sniff s;
	ck_assert_int_eq(sniff_str("GET / HTTP/1.1\r\nHost: API.Example.test:8080\r\n\r\n", &s),
			 SBX_SNIFF_HTTP);
	ck_assert_str_eq(s.name, "api.example.test");
	ck_assert_int_eq(sniff_str("GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", &s),
			 SBX_SNIFF_HTTP);
	ck_assert_str_eq(s.name, "2001:db8::1");
	ck_assert_int_eq(sniff_str("GET / HTTP/1.1\r\nHost: a.test\r\nX: y\r\n", &s),
			 SBX_SNIFF_MORE);
	ck_assert_int_eq(sniff_str("POST /x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", &s),
			 SBX_SNIFF_BAD);
	ck_assert_int_eq(sniff_str("GET / HTTP/1.0\r\n\r\n", &s), SBX_SNIFF_HTTP);
	ck_assert_int_eq(s.has_name, 0);
	ck_assert_int_eq(sniff_str("GET /\x01 HTTP/1.1\r\n\r\n", &s), SBX_SNIFF_BAD);
	ck_assert_int_eq(sniff_str("SSH-2.0-OpenSSH_9\r\n", &s), SBX_SNIFF_OTHER);
	ck_assert_int_eq(sniff_str("GE", &s), SBX_SNIFF_MORE);
	/* what servers accept must not slip past as "not HTTP" */
	ck_assert_int_eq(sniff_str("\r\nGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n", &s),
			 SBX_SNIFF_HTTP);
	ck_assert_str_eq(s.name, "evil.test");
	ck_assert_int_eq(sniff_str("get / HTTP/1.1\r\nHost: evil.test\r\n\r\n", &s),
			 SBX_SNIFF_BAD);
	ck_assert_int_eq(sniff_str("\r\n\r\nxyz?", &s), SBX_SNIFF_BAD);
	ck_assert_int_eq(sniff_str("hello", &s), SBX_SNIFF_MORE); /* a method, maybe */
	static const uint8_t alert[] = {0x15, 0x03, 0x01, 0x00, 0x02, 0x01, 0x5a, 0x16, 0x03};
	sbx_sniff(alert, sizeof alert, &s);
	ck_assert_int_eq(s.kind, SBX_SNIFF_BAD);
	static const uint8_t v2[] = {0x80, 0x2e, 0x01, 0x00, 0x02};
	sbx_sniff(v2, sizeof v2, &s);
	ck_assert_int_eq(s.kind, SBX_SNIFF_BAD);
}
END_TEST

START_TEST(sniff_tls_sni)
{
	static uint8_t hello[4096];
	size_t n = read_corpus("sniff/tls13", hello, sizeof hello);
	ck_assert_uint_gt(n, 100);
	struct sbx_sniff s;
	sbx_sniff(hello, n, &s);
	ck_assert_int_eq(s.kind, SBX_SNIFF_TLS);
	ck_assert_str_eq(s.name, "api.example.test");
	for (size_t cut = 1; cut < n; cut += 37) { /* every prefix: more, never bad */
		sbx_sniff(hello, cut, &s);
		ck_assert_int_eq(s.kind, SBX_SNIFF_MORE);
	}
	n = read_corpus("sniff/tls12", hello, sizeof hello);
	sbx_sniff(hello, n, &s);
	ck_assert_int_eq(s.kind, SBX_SNIFF_TLS);
	ck_assert_str_eq(s.name, "a.example.test");
	hello[5] = 2; /* ServerHello, not a ClientHello */
	sbx_sniff(hello, n, &s);
	ck_assert_int_eq(s.kind, SBX_SNIFF_BAD);
}
END_TEST

START_TEST(dns_query_and_reply)
{
	static uint8_t q[512];
	size_t n = read_corpus("dns/a", q, sizeof q);
	struct sbx_dns_query dq;
	ck_assert_int_eq(sbx_dns_query_decode(q, n, &dq), 0);
	ck_assert_str_eq(dq.name, "api.example.test");
	ck_assert_uint_eq(dq.qtype, SBX_DNS_TYPE_A);
	ck_assert_uint_eq(dq.id, 0x1234);
	struct sbx_dns_addr a[40];
	for (int i = 0; i < 40; i++) {
		a[i].family = AF_INET;
		uint8_t v4[4] = {203, 0, 113, (uint8_t)i};
		memcpy(a[i].addr, v4, 4);
	}
	uint8_t out[512];
	size_t len = sbx_dns_reply_encode(q, &dq, SBX_DNS_NOERROR, a, 2, 60, out, sizeof out);
	ck_assert_uint_eq(len, n + 2 * 16);
	ck_assert_uint_eq(out[2] & 0x80, 0x80);		   /* QR */
	ck_assert_uint_eq(out[7], 2);			   /* ANCOUNT */
	ck_assert_mem_eq(out + len - 4, "\xcb\x00\x71\x01", 4); /* 203.0.113.1 */
	/* 40 answers do not fit 512 bytes: fewer, still well formed */
	len = sbx_dns_reply_encode(q, &dq, SBX_DNS_NOERROR, a, 40, 60, out, sizeof out);
	ck_assert_uint_le(len, 512);
	ck_assert_uint_eq((size_t)out[7] * 16 + n, len);
	len = sbx_dns_reply_encode(q, &dq, SBX_DNS_NXDOMAIN, NULL, 0, 0, out, sizeof out);
	ck_assert_uint_eq(out[3] & 0xf, SBX_DNS_NXDOMAIN);
	ck_assert_uint_eq(out[7], 0);
	/* a compression pointer in a query: FORMERR with the same id */
	q[12] = 0xc0;
	ck_assert_int_eq(sbx_dns_query_decode(q, n, &dq), SBX_DNS_FORMERR);
	ck_assert_uint_eq(dq.id, 0x1234);
	ck_assert_int_eq(sbx_dns_query_decode(q, 5, &dq), -1);
	n = read_corpus("dns/odd", q, sizeof q);
	ck_assert_int_eq(sbx_dns_query_decode(q, n, &dq), 0);
	ck_assert_int_eq(dq.odd_name, 1);
}
END_TEST

static int local4(const char *s)
{
	uint8_t a[4];
	inet_pton(AF_INET, s, a);
	return sbx_addr_is_host_local(AF_INET, a);
}

static int local6(const char *s)
{
	uint8_t a[16];
	inet_pton(AF_INET6, s, a);
	return sbx_addr_is_host_local(AF_INET6, a);
}

START_TEST(host_local_addresses)
{
	ck_assert(local4("127.0.0.1"));
	ck_assert(local4("127.1.2.3"));
	ck_assert(local4("0.0.0.0"));
	ck_assert(local4("169.254.169.254"));
	ck_assert(local4("255.255.255.255"));
	ck_assert(local4("224.0.0.1"));
	ck_assert(!local4("203.0.113.7"));
	ck_assert(!local4("198.51.100.20"));
	ck_assert(local6("::1"));
	ck_assert(local6("::"));
	ck_assert(local6("fe80::1"));
	ck_assert(local6("::ffff:127.0.0.1"));
	ck_assert(local6("::ffff:169.254.169.254"));
	ck_assert(!local6("2001:db8::1"));
	ck_assert(!local6("::ffff:203.0.113.7"));
}
END_TEST

START_TEST(addrmap_records_and_forgets)
{
	struct sbx_addrmap m = {0};
	uint8_t a[4] = {203, 0, 113, 10}, b[4] = {203, 0, 113, 11};
	sbx_addrmap_add(&m, AF_INET, a, "api.example.test");
	sbx_addrmap_add(&m, AF_INET, a, "alias.example.test");
	sbx_addrmap_add(&m, AF_INET, a, "api.example.test");
	ck_assert_uint_eq(m.n, 2);
	ck_assert(sbx_addrmap_has(&m, AF_INET, a, "api.example.test"));
	ck_assert(!sbx_addrmap_has(&m, AF_INET, b, "api.example.test"));
	size_t i = 0;
	ck_assert_str_eq(sbx_addrmap_names(&m, AF_INET, a, &i), "api.example.test");
	ck_assert_str_eq(sbx_addrmap_names(&m, AF_INET, a, &i), "alias.example.test");
	ck_assert_ptr_null(sbx_addrmap_names(&m, AF_INET, a, &i));
	for (unsigned k = 0; k < SBX_ADDRMAP_MAX; k++) {
		char name[32];
		snprintf(name, sizeof name, "n%u.test", k);
		sbx_addrmap_add(&m, AF_INET, b, name);
	}
	ck_assert_uint_eq(m.n, SBX_ADDRMAP_MAX);
	ck_assert(!sbx_addrmap_has(&m, AF_INET, a, "api.example.test")); /* oldest gone */
	sbx_addrmap_free(&m);
}
END_TEST

void add_proxy_tests(Suite *s);

static Suite *unit_suite(void)
{
	Suite *s = suite_create("unit");
	TCase *t = tcase_create("core");
	tcase_add_test(t, proto_header_roundtrip);
	tcase_add_test(t, proto_header_rejects_oversize_and_reserved);
	tcase_add_test(t, proto_exec_start_decode);
	tcase_add_test(t, proto_exec_start_rejects_bad_env_and_nul);
	tcase_add_test(t, proto_exit_roundtrip_and_bounds);
	tcase_add_test(t, json_escapes_everything);
	tcase_add_test(t, netpolicy_patterns_match_the_table);
	tcase_add_test(t, netpolicy_rejects_malformed_patterns_by_name);
	tcase_add_test(t, outq_keeps_order_streams_and_bounds);
	tcase_add_test(t, options_init_and_defaults);
	tcase_add_test(t, options_rejections_are_specific);
	tcase_add_test(t, options_version_1_struct);
	tcase_add_test(t, sniff_http_host);
	tcase_add_test(t, sniff_tls_sni);
	tcase_add_test(t, dns_query_and_reply);
	tcase_add_test(t, host_local_addresses);
	tcase_add_test(t, addrmap_records_and_forgets);
	tcase_add_test(t, options_unimplemented_are_refused);
	tcase_add_test(t, argv_validation);
	tcase_add_test(t, strerror_covers_all_codes);
	tcase_add_test(t, volume_validation);
	tcase_add_test(t, accel_detection_uses_vendor_module);
	tcase_add_test(t, accel_env_override);
	tcase_add_test(t, domain_xml_escapes_and_roundtrips_metadata);
	tcase_add_test(t, image_validation);
	tcase_add_test(t, util_rmtree_does_not_follow_symlinks);
	tcase_add_test(t, util_run_reports_status_and_stderr);
	suite_add_tcase(s, t);
	add_proxy_tests(s);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(unit_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
