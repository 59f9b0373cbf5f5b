/* Unit tests for the per-sandbox CA (lib/tlsca.c) and the memory-driven
 * TLS endpoint (lib/tlsio.c): real OpenSSL handshakes between a client
 * trusting the minted CA and the guest-facing server, and between the
 * upstream client context and servers with good and bad certificates that
 * the test makes itself. No network: bytes move through memory. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "http1.h"
#include "placeholder.h"
#include "tlsca.h"
#include "tlsio.h"

static struct sbx_tlsca *new_ca(void)
{
	struct sbx_tlsca *ca;
	char err[200];
	ck_assert_msg(sbx_tlsca_new(&ca, "test", err, sizeof err) == 0, "%s", err);
	return ca;
}

/* Move bytes both ways and drive both handshakes until they finish or one
 * fails. Returns 1 when both completed. */
static int pump_handshake(struct sbx_tlsio *a, struct sbx_tlsio *b)
{
	unsigned char buf[16384];
	for (int i = 0; i < 100; i++) {
		int ra = sbx_tlsio_handshake(a), rb = sbx_tlsio_handshake(b);
		size_t n;
		while ((n = sbx_tlsio_net_out(a, buf, sizeof buf)) > 0)
			ck_assert_uint_eq(sbx_tlsio_net_in(b, buf, n), n);
		while ((n = sbx_tlsio_net_out(b, buf, sizeof buf)) > 0)
			ck_assert_uint_eq(sbx_tlsio_net_in(a, buf, n), n);
		if (ra == SBX_TLSIO_ERR || rb == SBX_TLSIO_ERR)
			return 0;
		if (ra == 1 && rb == 1)
			return 1;
	}
	return 0;
}

static void move(struct sbx_tlsio *from, struct sbx_tlsio *to)
{
	unsigned char buf[16384];
	size_t n;
	while ((n = sbx_tlsio_net_out(from, buf, sizeof buf)) > 0)
		ck_assert_uint_eq(sbx_tlsio_net_in(to, buf, n), n);
}

/* A guest-like client trusting only ca, checking host name `name`. */
static SSL *guest_client(struct sbx_tlsca *ca, const char *name, int version, time_t at)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), sbx_tlsca_cert(ca));
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (version) {
		SSL_CTX_set_min_proto_version(ctx, version);
		SSL_CTX_set_max_proto_version(ctx, version);
	}
	static const unsigned char alpn[] = "\x02h2\x08http/1.1";
	SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
	SSL *ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	SSL_set_tlsext_host_name(ssl, name);
	unsigned char ip[16];
	if (sbx_tlsca_name_valid(name) && (strchr(name, ':') || (name[0] >= '0' && name[0] <= '9')))
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
	else
		SSL_set1_host(ssl, name);
	(void)ip;
	if (at)
		X509_VERIFY_PARAM_set_time(SSL_get0_param(ssl), at);
	SSL_set_connect_state(ssl);
	return ssl;
}

static void guest_handshake(struct sbx_tlsca *ca, const char *name, int version, time_t at)
{
	char err[200];
	SSL *srv = sbx_tlsca_server_ssl(ca, name, err, sizeof err);
	ck_assert_msg(srv != NULL, "%s", err);
	struct sbx_tlsio *s = sbx_tlsio_new(srv, 0);
	struct sbx_tlsio *c = sbx_tlsio_new(guest_client(ca, name, version, at), 0);
	ck_assert_msg(pump_handshake(c, s), "handshake for %s failed: client '%s' server '%s'",
		      name, sbx_tlsio_error(c), sbx_tlsio_error(s));
	if (version)
		ck_assert_int_eq(SSL_version(sbx_tlsio_ssl(c)), version);
	const unsigned char *proto;
	unsigned plen;
	SSL_get0_alpn_selected(sbx_tlsio_ssl(c), &proto, &plen);
	ck_assert_uint_eq(plen, 8);
	ck_assert_int_eq(memcmp(proto, "http/1.1", 8), 0);
	/* application data both ways */
	ck_assert_int_eq(sbx_tlsio_write(c, "GET / HTTP/1.1\r\n\r\n", 18), 18);
	move(c, s);
	char buf[64];
	ck_assert_int_eq(sbx_tlsio_read(s, buf, sizeof buf), 18);
	ck_assert_int_eq(memcmp(buf, "GET /", 5), 0);
	ck_assert_int_eq(sbx_tlsio_write(s, "HTTP/1.1 204 \r\n\r\n", 17), 17);
	move(s, c);
	ck_assert_int_eq(sbx_tlsio_read(c, buf, sizeof buf), 17);
	ck_assert_int_eq(sbx_tlsio_read(c, buf, sizeof buf), SBX_TLSIO_AGAIN);
	sbx_tlsio_shutdown(s);
	move(s, c);
	ck_assert_int_eq(sbx_tlsio_read(c, buf, sizeof buf), SBX_TLSIO_EOF);
	sbx_tlsio_free(c);
	sbx_tlsio_free(s);
}

START_TEST(ca_certificate_is_a_ca_and_pem_parses)
{
	struct sbx_tlsca *ca = new_ca();
	const char *pem = sbx_tlsca_pem(ca);
	ck_assert_ptr_nonnull(strstr(pem, "-----BEGIN CERTIFICATE-----"));
	ck_assert_ptr_null(strstr(pem, "PRIVATE"));
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	ck_assert_ptr_nonnull(x);
	ck_assert_int_eq(X509_check_ca(x), 1);
	EVP_PKEY *k = X509_get0_pubkey(x);
	ck_assert_int_eq(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
	time_t back = time(NULL) - 24 * 3600;
	ck_assert_int_lt(X509_cmp_time(X509_get0_notBefore(x), &back), 0);
	X509_free(x);
	/* two CAs are different CAs */
	struct sbx_tlsca *ca2 = new_ca();
	ck_assert_str_ne(sbx_tlsca_pem(ca), sbx_tlsca_pem(ca2));
	sbx_tlsca_free(ca2);
	sbx_tlsca_free(ca);
}
END_TEST

START_TEST(leaf_names_sans_and_validation)
{
	struct sbx_tlsca *ca = new_ca();
	char err[200];
	X509 *leaf;
	ck_assert_int_eq(sbx_tlsca_leaf(ca, "API.Example.test", &leaf, err, sizeof err), 0);
	ck_assert_int_eq(X509_check_host(leaf, "api.example.test", 0, 0, NULL), 1);
	ck_assert_int_eq(X509_check_host(leaf, "other.example.test", 0, 0, NULL), 0);
	ck_assert_int_eq(X509_check_ca(leaf), 0);
	X509 *again;
	ck_assert_int_eq(sbx_tlsca_leaf(ca, "api.example.test", &again, err, sizeof err), 0);
	ck_assert_ptr_eq(leaf, again);
	ck_assert_int_eq(sbx_tlsca_leaf(ca, "192.0.2.7", &leaf, err, sizeof err), 0);
	ck_assert_int_eq(X509_check_ip_asc(leaf, "192.0.2.7", 0), 1);
	ck_assert_int_eq(sbx_tlsca_leaf(ca, "2001:db8::1", &leaf, err, sizeof err), 0);
	ck_assert_int_eq(X509_check_ip_asc(leaf, "2001:db8::1", 0), 1);
	/* validity: back-dated two days, short-lived */
	time_t t = time(NULL) - 47 * 3600;
	ck_assert_int_lt(X509_cmp_time(X509_get0_notBefore(leaf), &t), 0);
	t = time(NULL) + 7 * 24 * 3600;
	ck_assert_int_gt(X509_cmp_time(X509_get0_notAfter(leaf), &t), 0);
	t = time(NULL) + 15 * 24 * 3600;
	ck_assert_int_lt(X509_cmp_time(X509_get0_notAfter(leaf), &t), 0);
	const char *bad[] = {"",    "a..b",	      "-x.example\x01",	    "a b",
			     "x/y", "*.example.test", "host.example.test.", NULL};
	for (int i = 0; bad[i]; i++)
		ck_assert_msg(sbx_tlsca_leaf(ca, bad[i], &leaf, err, sizeof err) == -1, "%s",
			      bad[i]);
	char longname[300];
	memset(longname, 'a', sizeof longname);
	longname[299] = '\0';
	ck_assert_int_eq(sbx_tlsca_leaf(ca, longname, &leaf, err, sizeof err), -1);
	sbx_tlsca_free(ca);
}
END_TEST

START_TEST(leaf_cache_is_bounded_lru)
{
	struct sbx_tlsca *ca = new_ca();
	char err[200], name[64];
	X509 *first, *x;
	ck_assert_int_eq(sbx_tlsca_leaf(ca, "keep.example.test", &first, err, sizeof err), 0);
	unsigned char *der1 = NULL;
	int len1 = i2d_X509(first, &der1);
	for (int i = 0; i < SBX_TLSCA_CACHE_MAX + 50; i++) {
		snprintf(name, sizeof name, "h%d.example.test", i);
		ck_assert_int_eq(sbx_tlsca_leaf(ca, name, &x, err, sizeof err), 0);
		/* keep "keep" recently used */
		ck_assert_int_eq(sbx_tlsca_leaf(ca, "keep.example.test", &x, err, sizeof err), 0);
	}
	ck_assert_uint_eq(sbx_tlsca_cache_count(ca), SBX_TLSCA_CACHE_MAX);
	unsigned char *der2 = NULL;
	int len2 = i2d_X509(x, &der2);
	ck_assert_int_eq(len1, len2);
	ck_assert_int_eq(memcmp(der1, der2, (size_t)len1), 0);
	OPENSSL_free(der1);
	OPENSSL_free(der2);
	sbx_tlsca_free(ca);
}
END_TEST

START_TEST(guest_handshake_tls12_tls13_and_ip)
{
	struct sbx_tlsca *ca = new_ca();
	guest_handshake(ca, "api.example.test", TLS1_2_VERSION, 0);
	guest_handshake(ca, "api.example.test", TLS1_3_VERSION, 0);
	guest_handshake(ca, "files.example.test", 0, 0);
	guest_handshake(ca, "192.0.2.10", 0, 0);
	sbx_tlsca_free(ca);
}
END_TEST

START_TEST(guest_clock_one_hour_behind_still_validates)
{
	struct sbx_tlsca *ca = new_ca();
	guest_handshake(ca, "api.example.test", 0, time(NULL) - 3600);
	guest_handshake(ca, "api.example.test", TLS1_2_VERSION, time(NULL) - 36 * 3600);
	sbx_tlsca_free(ca);
}
END_TEST

START_TEST(guest_client_with_wrong_name_fails)
{
	struct sbx_tlsca *ca = new_ca();
	char err[200];
	SSL *srv = sbx_tlsca_server_ssl(ca, "a.example.test", err, sizeof err);
	struct sbx_tlsio *s = sbx_tlsio_new(srv, 0);
	struct sbx_tlsio *c = sbx_tlsio_new(guest_client(ca, "b.example.test", 0, 0), 0);
	ck_assert_int_eq(pump_handshake(c, s), 0);
	sbx_tlsio_free(c);
	sbx_tlsio_free(s);
	sbx_tlsca_free(ca);
}
END_TEST

/* ------------------------------------------------ upstream verification */

struct testpki {
	EVP_PKEY *key;
	X509 *ca;
	char ca_file[64];
};

static X509 *make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, const char *cn,
		       const char *san, long from, long to, int is_ca)
{
	X509 *x = X509_new();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), rand() & 0x7fffffff);
	X509_gmtime_adj(X509_getm_notBefore(x), from);
	X509_gmtime_adj(X509_getm_notAfter(x), to);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
				   (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
	X509_set_pubkey(x, key);
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
						is_ca ? "critical,CA:TRUE" : "CA:FALSE");
	X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	if (san) {
		e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	X509_sign(x, issuer_key, EVP_sha256());
	return x;
}

static void pki_init(struct testpki *p)
{
	p->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	p->ca = make_cert(p->key, NULL, p->key, "test upstream CA", NULL, -3600, 86400, 1);
	snprintf(p->ca_file, sizeof p->ca_file, "/tmp/sbx-tlsca-test-%d.pem", (int)getpid());
	FILE *f = fopen(p->ca_file, "w");
	ck_assert_ptr_nonnull(f);
	PEM_write_X509(f, p->ca);
	fclose(f);
}

static void pki_free(struct testpki *p)
{
	unlink(p->ca_file);
	X509_free(p->ca);
	EVP_PKEY_free(p->key);
}

/* Handshake sbx's upstream client for `host` against a server presenting
 * cert. Returns 1 on success, else 0 with the client's message in msg. */
static int upstream_try(const char *ca_file, const char *host, X509 *cert, EVP_PKEY *key, char *msg,
			size_t cap)
{
	char err[200];
	SSL_CTX *uctx = sbx_tls_upstream_ctx_new(ca_file, err, sizeof err);
	ck_assert_msg(uctx != NULL, "%s", err);
	SSL *cl = sbx_tls_upstream_ssl(uctx, host, err, sizeof err);
	ck_assert_msg(cl != NULL, "%s", err);
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX_use_certificate(sctx, cert);
	SSL_CTX_use_PrivateKey(sctx, key);
	SSL *sv = SSL_new(sctx);
	SSL_set_accept_state(sv);
	struct sbx_tlsio *c = sbx_tlsio_new(cl, 0), *s = sbx_tlsio_new(sv, 0);
	int ok = pump_handshake(c, s);
	snprintf(msg, cap, "%s", sbx_tlsio_error(c));
	sbx_tlsio_free(c);
	sbx_tlsio_free(s);
	SSL_CTX_free(sctx);
	SSL_CTX_free(uctx);
	return ok;
}

START_TEST(upstream_verification_refuses_bad_certificates)
{
	struct testpki p;
	pki_init(&p);
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	char msg[256];

	X509 *good =
	    make_cert(k, p.ca, p.key, "up.example.test", "DNS:up.example.test", -60, 3600, 0);
	ck_assert_msg(upstream_try(p.ca_file, "up.example.test", good, k, msg, sizeof msg), "%s",
		      msg);
	/* without the extra CA file the test CA is unknown */
	ck_assert_int_eq(upstream_try(NULL, "up.example.test", good, k, msg, sizeof msg), 0);
	ck_assert_msg(strstr(msg, "upstream certificate verify failed") != NULL, "%s", msg);

	ck_assert_int_eq(upstream_try(p.ca_file, "other.example.test", good, k, msg, sizeof msg),
			 0);
	ck_assert_msg(strstr(msg, "hostname mismatch") != NULL, "%s", msg);

	X509 *expired =
	    make_cert(k, p.ca, p.key, "up.example.test", "DNS:up.example.test", -7200, -3600, 0);
	ck_assert_int_eq(upstream_try(p.ca_file, "up.example.test", expired, k, msg, sizeof msg),
			 0);
	ck_assert_msg(strstr(msg, "expired") != NULL, "%s", msg);

	X509 *self = make_cert(k, NULL, k, "up.example.test", "DNS:up.example.test", -60, 3600, 0);
	ck_assert_int_eq(upstream_try(p.ca_file, "up.example.test", self, k, msg, sizeof msg), 0);
	ck_assert_msg(strstr(msg, "self-signed") != NULL, "%s", msg);

	X509 *ipcert = make_cert(k, p.ca, p.key, "ip", "IP:192.0.2.5", -60, 3600, 0);
	ck_assert_msg(upstream_try(p.ca_file, "192.0.2.5", ipcert, k, msg, sizeof msg), "%s", msg);
	ck_assert_int_eq(upstream_try(p.ca_file, "192.0.2.6", ipcert, k, msg, sizeof msg), 0);
	ck_assert_msg(strstr(msg, "IP address mismatch") != NULL, "%s", msg);

	X509_free(good);
	X509_free(expired);
	X509_free(self);
	X509_free(ipcert);
	EVP_PKEY_free(k);
	pki_free(&p);
}
END_TEST

START_TEST(upstream_ctx_errors_are_clear)
{
	char err[200];
	ck_assert_ptr_null(sbx_tls_upstream_ctx_new("/nonexistent/ca.pem", err, sizeof err));
	ck_assert_ptr_nonnull(strstr(err, "cannot load the extra CA file /nonexistent/ca.pem"));
	SSL_CTX *ctx = sbx_tls_upstream_ctx_new(NULL, err, sizeof err);
	ck_assert_ptr_nonnull(ctx);
	ck_assert_ptr_null(sbx_tls_upstream_ssl(ctx, "bad host", err, sizeof err));
	SSL_CTX_free(ctx);
}
END_TEST

/* ------------------------------------------------ the pieces wired up */

static void allow_all(void *ud, const struct sbx_http_request_info *req,
		      struct sbx_http_decision *d)
{
	(void)ud;
	(void)req;
	d->secrets = 1;
}

/* Plaintext from one endpoint into the HTTP processor and out the other. */
static void relay(struct sbx_tlsio *from, struct sbx_http_conn *c, int request)
{
	char buf[4096];
	ssize_t n;
	while ((n = sbx_tlsio_read(from, buf, sizeof buf)) > 0) {
		size_t took = request ? sbx_http_feed_request(c, buf, (size_t)n)
				      : sbx_http_feed_response(c, buf, (size_t)n);
		ck_assert_uint_eq(took, (size_t)n);
	}
}

static void flush_to(struct sbx_tlsio *to, struct sbx_http_conn *c, int upstream)
{
	const unsigned char *p;
	size_t n = upstream ? sbx_http_peek_upstream(c, &p) : sbx_http_peek_guest(c, &p);
	if (!n)
		return;
	ssize_t w = sbx_tlsio_write(to, p, n);
	if (w > 0) {
		if (upstream)
			sbx_http_consume_upstream(c, (size_t)w);
		else
			sbx_http_consume_guest(c, (size_t)w);
	}
}

START_TEST(interception_end_to_end)
{
	const char *value = "sk-live-REAL-e2e-0123456789";
	char ph[SBX_PLACEHOLDER_MAX], err[200];
	ck_assert_int_gt(sbx_placeholder_make("API_KEY", ph, sizeof ph), 0);
	struct sbx_http_secret sec = {"API_KEY", ph, (const unsigned char *)value, strlen(value),
				      0};
	struct sbx_http_config cfg = {.secrets = &sec,
				      .n_secrets = 1,
				      .scheme = "https",
				      .host = "api.example.test",
				      .port = 443,
				      .decide = allow_all};
	struct sbx_http_conn *http;
	ck_assert_int_eq(sbx_http_conn_new(&http, &cfg, err, sizeof err), 0);

	struct sbx_tlsca *ca = new_ca();
	struct testpki p;
	pki_init(&p);
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *cert =
	    make_cert(k, p.ca, p.key, "api.example.test", "DNS:api.example.test", -60, 3600, 0);
	SSL_CTX *uctx = sbx_tls_upstream_ctx_new(p.ca_file, err, sizeof err);
	ck_assert_ptr_nonnull(uctx);
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX_use_certificate(sctx, cert);
	SSL_CTX_use_PrivateKey(sctx, k);
	SSL *sv = SSL_new(sctx);
	SSL_set_accept_state(sv);

	struct sbx_tlsio *guest = sbx_tlsio_new(
	    guest_client(ca, "api.example.test", TLS1_2_VERSION, time(NULL) - 3600), 0);
	struct sbx_tlsio *front =
	    sbx_tlsio_new(sbx_tlsca_server_ssl(ca, "api.example.test", err, sizeof err), 0);
	struct sbx_tlsio *back =
	    sbx_tlsio_new(sbx_tls_upstream_ssl(uctx, "api.example.test", err, sizeof err), 0);
	struct sbx_tlsio *origin = sbx_tlsio_new(sv, 0);

	char req[512];
	snprintf(req, sizeof req, "GET /v1?k=%s HTTP/1.1\r\nHost: api.example.test\r\n\r\n", ph);
	int req_sent = 0, answered = 0;
	char seen_by_origin[1024] = "", seen_by_guest[1024] = "";
	for (int round = 0; round < 200 && !strstr(seen_by_guest, "\r\n\r\n{"); round++) {
		if (!req_sent && sbx_tlsio_write(guest, req, strlen(req)) > 0)
			req_sent = 1;
		move(guest, front);
		move(front, guest);
		move(back, origin);
		move(origin, back);
		relay(front, http, 1);
		flush_to(back, http, 1);
		relay(back, http, 0);
		flush_to(front, http, 0);
		char buf[1024];
		ssize_t n = sbx_tlsio_read(origin, buf, sizeof buf - 1);
		if (n > 0) {
			strncat(seen_by_origin, buf, (size_t)n);
			if (!answered && strstr(seen_by_origin, "\r\n\r\n")) {
				char resp[256];
				snprintf(resp, sizeof resp,
					 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n{%s}",
					 strlen(value) + 2, value);
				ck_assert_int_gt(sbx_tlsio_write(origin, resp, strlen(resp)), 0);
				answered = 1;
			}
		}
		n = sbx_tlsio_read(guest, buf, sizeof buf - 1);
		if (n > 0)
			strncat(seen_by_guest, buf, (size_t)n);
		ck_assert_msg(!*sbx_tlsio_error(back), "upstream: %s", sbx_tlsio_error(back));
	}
	/* the origin got the value, the guest only ever the placeholder */
	ck_assert_msg(strstr(seen_by_origin, value) != NULL, "origin saw: %s", seen_by_origin);
	ck_assert_ptr_null(strstr(seen_by_origin, ph));
	ck_assert_msg(strstr(seen_by_guest, ph) != NULL, "guest saw: %s", seen_by_guest);
	ck_assert_ptr_null(strstr(seen_by_guest, value));

	sbx_tlsio_free(guest);
	sbx_tlsio_free(front);
	sbx_tlsio_free(back);
	sbx_tlsio_free(origin);
	sbx_http_conn_free(http);
	SSL_CTX_free(sctx);
	SSL_CTX_free(uctx);
	X509_free(cert);
	EVP_PKEY_free(k);
	pki_free(&p);
	sbx_tlsca_free(ca);
}
END_TEST

static Suite *tlsca_suite(void)
{
	Suite *s = suite_create("tlsca");
	TCase *t = tcase_create("tlsca");
	tcase_set_timeout(t, 120);
	tcase_add_test(t, ca_certificate_is_a_ca_and_pem_parses);
	tcase_add_test(t, leaf_names_sans_and_validation);
	tcase_add_test(t, leaf_cache_is_bounded_lru);
	tcase_add_test(t, guest_handshake_tls12_tls13_and_ip);
	tcase_add_test(t, guest_clock_one_hour_behind_still_validates);
	tcase_add_test(t, guest_client_with_wrong_name_fails);
	tcase_add_test(t, upstream_verification_refuses_bad_certificates);
	tcase_add_test(t, upstream_ctx_errors_are_clear);
	tcase_add_test(t, interception_end_to_end);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(tlsca_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
