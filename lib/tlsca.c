/* Per-sandbox CA, leaf minting with an LRU cache, TLS contexts (tlsca.h). */
#include "tlsca.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct leaf_entry {
	char name[254];
	X509 *cert;
	uint64_t last_use;
};

struct sbx_tlsca {
	EVP_PKEY *ca_key;
	X509 *ca_cert;
	char *ca_pem;
	EVP_PKEY *leaf_key;
	SSL_CTX *server_ctx;
	struct leaf_entry cache[SBX_TLSCA_CACHE_MAX];
	size_t cache_n;
	uint64_t tick;
};

static void set_err(char *err, size_t cap, const char *what)
{
	unsigned long e = ERR_get_error();
	if (e)
		snprintf(err, cap, "%s: %s", what, ERR_reason_error_string(e));
	else
		snprintf(err, cap, "%s", what);
	ERR_clear_error();
}

static EVP_PKEY *new_p256_key(void)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* 128-bit random positive serial. */
static int set_random_serial(X509 *x)
{
	unsigned char b[16];
	if (RAND_bytes(b, sizeof b) != 1)
		return -1;
	b[0] &= 0x7f;
	b[0] |= 0x01;
	BIGNUM *bn = BN_bin2bn(b, sizeof b, NULL);
	int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -1;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -1;
	int ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

/* Common skeleton: version 3, serial, validity, subject CN, public key. */
static X509 *cert_skeleton(EVP_PKEY *pub, const char *cn, long lifetime)
{
	X509 *x = X509_new();
	if (!x || !X509_set_version(x, 2) || set_random_serial(x) != 0)
		goto fail;
	if (!X509_gmtime_adj(X509_getm_notBefore(x), -(long)SBX_TLSCA_BACKDATE) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), lifetime))
		goto fail;
	X509_NAME *subj = X509_get_subject_name(x);
	if (cn && !X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8, (const unsigned char *)cn,
					      -1, -1, 0))
		goto fail;
	if (!X509_set_pubkey(x, pub))
		goto fail;
	return x;
fail:
	X509_free(x);
	return NULL;
}

static int make_ca(struct sbx_tlsca *ca, const char *label)
{
	char cn[64];
	snprintf(cn, sizeof cn, "libsandbox CA %.40s", label ? label : "");
	ca->ca_cert = cert_skeleton(ca->ca_key, cn, SBX_TLSCA_CA_LIFETIME);
	X509 *x = ca->ca_cert;
	if (!x || !X509_set_issuer_name(x, X509_get_subject_name(x)))
		return -1;
	if (add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
	    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    add_ext(x, x, NID_subject_key_identifier, "hash") ||
	    add_ext(x, x, NID_authority_key_identifier, "keyid:always"))
		return -1;
	if (!X509_sign(x, ca->ca_key, EVP_sha256()))
		return -1;
	BIO *mem = BIO_new(BIO_s_mem());
	if (!mem || !PEM_write_bio_X509(mem, x)) {
		BIO_free(mem);
		return -1;
	}
	char *p;
	long n = BIO_get_mem_data(mem, &p);
	ca->ca_pem = malloc((size_t)n + 1);
	if (ca->ca_pem) {
		memcpy(ca->ca_pem, p, (size_t)n);
		ca->ca_pem[n] = '\0';
	}
	BIO_free(mem);
	return ca->ca_pem ? 0 : -1;
}

/* ALPN: http/1.1 or nothing; the proxy speaks HTTP/1.1 only. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	static const unsigned char proto[] = "\x08http/1.1";
	unsigned char *sel;
	if (SSL_select_next_proto(&sel, outlen, proto, sizeof proto - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_NOACK;
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *make_server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
				     SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				  SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	return ctx;
}

int sbx_tlsca_new(struct sbx_tlsca **out, const char *label, char *err, size_t cap)
{
	*out = NULL;
	struct sbx_tlsca *ca = calloc(1, sizeof *ca);
	if (!ca) {
		snprintf(err, cap, "out of memory");
		return -1;
	}
	ca->ca_key = new_p256_key();
	ca->leaf_key = new_p256_key();
	if (!ca->ca_key || !ca->leaf_key) {
		set_err(err, cap, "generating the CA keys failed");
		goto fail;
	}
	if (make_ca(ca, label) != 0) {
		set_err(err, cap, "building the CA certificate failed");
		goto fail;
	}
	ca->server_ctx = make_server_ctx();
	if (!ca->server_ctx) {
		set_err(err, cap, "creating the TLS server context failed");
		goto fail;
	}
	*out = ca;
	return 0;
fail:
	sbx_tlsca_free(ca);
	return -1;
}

void sbx_tlsca_free(struct sbx_tlsca *ca)
{
	if (!ca)
		return;
	for (size_t i = 0; i < ca->cache_n; i++)
		X509_free(ca->cache[i].cert);
	SSL_CTX_free(ca->server_ctx);
	EVP_PKEY_free(ca->leaf_key);
	EVP_PKEY_free(ca->ca_key);
	X509_free(ca->ca_cert);
	free(ca->ca_pem);
	OPENSSL_cleanse(ca, sizeof *ca);
	free(ca);
}

const char *sbx_tlsca_pem(const struct sbx_tlsca *ca)
{
	return ca->ca_pem;
}

X509 *sbx_tlsca_cert(const struct sbx_tlsca *ca)
{
	return ca->ca_cert;
}

static int is_ip_literal(const char *name, unsigned char *buf)
{
	return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

static int dns_name_valid(const char *name)
{
	size_t n = strlen(name), label = 0;
	if (n == 0 || n > 253)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0;
}

int sbx_tlsca_name_valid(const char *name)
{
	unsigned char buf[16];
	return name && (is_ip_literal(name, buf) || dns_name_valid(name));
}

static X509 *mint_leaf(struct sbx_tlsca *ca, const char *name)
{
	unsigned char ip[16];
	int ip_lit = is_ip_literal(name, ip);
	/* CN is informational (clients check the SAN); it is limited to 64. */
	const char *cn = strlen(name) <= 64 ? name : NULL;
	X509 *x = cert_skeleton(ca->leaf_key, cn, SBX_TLSCA_LEAF_LIFETIME);
	if (!x || !X509_set_issuer_name(x, X509_get_subject_name(ca->ca_cert)))
		goto fail;
	char san[300];
	snprintf(san, sizeof san, "%s:%s", ip_lit ? "IP" : "DNS", name);
	if (add_ext(x, ca->ca_cert, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(x, ca->ca_cert, NID_key_usage, "critical,digitalSignature") ||
	    add_ext(x, ca->ca_cert, NID_ext_key_usage, "serverAuth") ||
	    add_ext(x, ca->ca_cert, NID_subject_key_identifier, "hash") ||
	    add_ext(x, ca->ca_cert, NID_authority_key_identifier, "keyid:always") ||
	    add_ext(x, ca->ca_cert, NID_subject_alt_name, san))
		goto fail;
	if (!X509_sign(x, ca->ca_key, EVP_sha256()))
		goto fail;
	return x;
fail:
	X509_free(x);
	return NULL;
}

static int leaf_expiring(X509 *x)
{
	time_t soon = time(NULL) + SBX_TLSCA_LEAF_RENEW;
	return X509_cmp_time(X509_get0_notAfter(x), &soon) <= 0;
}

static size_t lru_victim(const struct sbx_tlsca *ca)
{
	size_t v = 0;
	for (size_t i = 1; i < ca->cache_n; i++)
		if (ca->cache[i].last_use < ca->cache[v].last_use)
			v = i;
	return v;
}

int sbx_tlsca_leaf(struct sbx_tlsca *ca, const char *name, X509 **out, char *err, size_t cap)
{
	if (!sbx_tlsca_name_valid(name)) {
		snprintf(err, cap, "not a valid host name or address for a certificate");
		return -1;
	}
	char key[254];
	size_t n = strlen(name);
	for (size_t i = 0; i <= n; i++)
		key[i] = (char)tolower((unsigned char)name[i]);
	for (size_t i = 0; i < ca->cache_n; i++) {
		struct leaf_entry *e = &ca->cache[i];
		if (strcmp(e->name, key) != 0)
			continue;
		if (leaf_expiring(e->cert)) {
			X509 *fresh = mint_leaf(ca, key);
			if (!fresh) {
				set_err(err, cap, "minting a leaf certificate failed");
				return -1;
			}
			X509_free(e->cert);
			e->cert = fresh;
		}
		e->last_use = ++ca->tick;
		*out = e->cert;
		return 0;
	}
	X509 *x = mint_leaf(ca, key);
	if (!x) {
		set_err(err, cap, "minting a leaf certificate failed");
		return -1;
	}
	size_t slot = ca->cache_n < SBX_TLSCA_CACHE_MAX ? ca->cache_n++ : lru_victim(ca);
	struct leaf_entry *e = &ca->cache[slot];
	X509_free(e->cert);
	memcpy(e->name, key, n + 1);
	e->cert = x;
	e->last_use = ++ca->tick;
	*out = x;
	return 0;
}

size_t sbx_tlsca_cache_count(const struct sbx_tlsca *ca)
{
	return ca->cache_n;
}

SSL *sbx_tlsca_server_ssl(struct sbx_tlsca *ca, const char *name, char *err, size_t cap)
{
	X509 *leaf;
	if (sbx_tlsca_leaf(ca, name, &leaf, err, cap) != 0)
		return NULL;
	SSL *ssl = SSL_new(ca->server_ctx);
	if (!ssl || SSL_use_certificate(ssl, leaf) != 1 ||
	    SSL_use_PrivateKey(ssl, ca->leaf_key) != 1) {
		set_err(err, cap, "setting up the guest-facing TLS session failed");
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_accept_state(ssl);
	return ssl;
}

SSL_CTX *sbx_tls_upstream_ctx_new(const char *extra_ca_file, char *err, size_t cap)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		set_err(err, cap, "creating the upstream TLS context failed");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				  SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	static const unsigned char alpn[] = "\x08http/1.1";
	if (SSL_CTX_set_default_verify_paths(ctx) != 1 ||
	    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1) != 0) {
		set_err(err, cap, "loading the host's trust store failed");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (extra_ca_file && SSL_CTX_load_verify_locations(ctx, extra_ca_file, NULL) != 1) {
		char what[300];
		snprintf(what, sizeof what, "cannot load the extra CA file %.200s", extra_ca_file);
		set_err(err, cap, what);
		SSL_CTX_free(ctx);
		return NULL;
	}
	ERR_clear_error();
	return ctx;
}

SSL *sbx_tls_upstream_ssl(SSL_CTX *ctx, const char *host, char *err, size_t cap)
{
	unsigned char ip[16];
	if (!sbx_tlsca_name_valid(host)) {
		snprintf(err, cap, "not a valid upstream host name or address");
		return NULL;
	}
	SSL *ssl = SSL_new(ctx);
	if (!ssl) {
		set_err(err, cap, "creating the upstream TLS session failed");
		return NULL;
	}
	int ok;
	if (is_ip_literal(host, ip)) {
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
	} else {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		ok = SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
	}
	if (!ok) {
		set_err(err, cap, "setting the upstream host name failed");
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_connect_state(ssl);
	return ssl;
}

void sbx_tls_describe_error(SSL *ssl, int ret, char *buf, size_t cap)
{
	int kind = SSL_get_error(ssl, ret);
	long vr = SSL_get_verify_result(ssl);
	unsigned long e = ERR_peek_error();
	if (vr != X509_V_OK && !SSL_is_server(ssl))
		snprintf(buf, cap, "upstream certificate verify failed: %s",
			 X509_verify_cert_error_string(vr));
	else if (e && ERR_reason_error_string(e))
		snprintf(buf, cap, "TLS error: %s", ERR_reason_error_string(e));
	else if (kind == SSL_ERROR_ZERO_RETURN)
		snprintf(buf, cap, "TLS connection closed by the peer");
	else if (kind == SSL_ERROR_SYSCALL)
		snprintf(buf, cap, "TLS connection closed without close_notify");
	else
		snprintf(buf, cap, "TLS error (code %d)", kind);
	ERR_clear_error();
}
