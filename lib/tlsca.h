/* TLS interception, certificate side: a per-sandbox CA that mints leaf
 * certificates for the names the guest connects to, the guest-facing
 * server SSL objects, and the upstream (client) context that verifies real
 * servers. No socket I/O here: the proxy attaches the SSL objects to
 * memory BIOs (tlsio.h) or to its own non-blocking sockets.
 *
 * Keys: EC P-256 (every TLS client in the guest image accepts it). The CA
 * key and the one leaf key shared by all of a CA's leaves live only in this
 * process's memory; OpenSSL clears private key material when the keys are
 * freed (EC_KEY_free -> BN_clear_free).
 *
 * Thread safety: a struct sbx_tlsca is used by one thread at a time (the
 * sandbox's proxy thread). Distinct CAs are independent. */
#ifndef SBX_TLSCA_H
#define SBX_TLSCA_H

#include <stddef.h>

#include <openssl/ssl.h>

/* Leaf cache bound (least recently used entry evicted beyond it). */
#define SBX_TLSCA_CACHE_MAX 256
/* Validity windows, in seconds. notBefore is set back so that a guest whose
 * clock lags the host (a restored snapshot, no NTP) still accepts them. */
#define SBX_TLSCA_BACKDATE (2 * 24 * 3600)
#define SBX_TLSCA_CA_LIFETIME (366 * 24 * 3600)
#define SBX_TLSCA_LEAF_LIFETIME (14 * 24 * 3600)
/* A cached leaf with less than this left is minted again. */
#define SBX_TLSCA_LEAF_RENEW (24 * 3600)

struct sbx_tlsca;

/* Generate a CA named "libsandbox CA <label>" (label: e.g. the sandbox id,
 * may be NULL). Returns 0, or -1 with a message in err. */
int sbx_tlsca_new(struct sbx_tlsca **out, const char *label, char *err, size_t cap);
/* Frees keys, certificates and contexts. NULL is fine. */
void sbx_tlsca_free(struct sbx_tlsca *ca);
/* The CA certificate in PEM, for the guest trust store (NUL-terminated,
 * owned by ca). */
const char *sbx_tlsca_pem(const struct sbx_tlsca *ca);
/* The CA certificate itself (owned by ca), e.g. for a test's trust store. */
X509 *sbx_tlsca_cert(const struct sbx_tlsca *ca);

/* Is name acceptable for a leaf: a DNS name (letters, digits, '-', '_',
 * dots; labels 1..63; total <= 253) or an IPv4/IPv6 literal? SNI is guest
 * controlled, so anything else is refused rather than put in a SAN. */
int sbx_tlsca_name_valid(const char *name);

/* The leaf certificate for name (DNS SAN, or IP SAN for an IP literal),
 * from the cache or freshly minted. *out is borrowed: valid until the next
 * call on ca. Returns 0 or -1 with a message in err. */
int sbx_tlsca_leaf(struct sbx_tlsca *ca, const char *name, X509 **out, char *err, size_t cap);
size_t sbx_tlsca_cache_count(const struct sbx_tlsca *ca);

/* A new server-side SSL presenting the leaf for name (the SNI the guest
 * sent, or the original destination address when it sent none). TLS 1.2
 * and 1.3, ALPN selects http/1.1 only (a client offering ALPN without
 * http/1.1 gets no ALPN). The caller owns the SSL. NULL with err on
 * failure. */
SSL *sbx_tlsca_server_ssl(struct sbx_tlsca *ca, const char *name, char *err, size_t cap);

/* Upstream (client) context: TLS 1.2+, peer verification against the
 * host's default trust store plus extra_ca_file (PEM, may be NULL), ALPN
 * http/1.1. Shareable between connections; free with SSL_CTX_free. NULL
 * with err on failure (e.g. an unreadable extra CA file). */
SSL_CTX *sbx_tls_upstream_ctx_new(const char *extra_ca_file, char *err, size_t cap);
/* A client SSL for host (a DNS name: sent as SNI and verified against the
 * certificate's names, no partial wildcards; an IP literal: no SNI,
 * verified against IP SANs). NULL with err on failure. */
SSL *sbx_tls_upstream_ssl(SSL_CTX *ctx, const char *host, char *err, size_t cap);

/* A short human message for a failed handshake or I/O on ssl (ret: the
 * failed call's return value), e.g. "upstream certificate verify failed:
 * certificate has expired". Clears OpenSSL's error queue. Never contains
 * application data. */
void sbx_tls_describe_error(SSL *ssl, int ret, char *buf, size_t cap);

#endif
