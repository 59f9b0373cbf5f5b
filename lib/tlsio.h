/* A TLS endpoint driven entirely through memory, for an event-driven
 * caller: ciphertext in and out through a bounded BIO pair, plaintext read
 * and written through calls that never block. The guest side of an
 * intercepted connection arrives as channel frames, so it cannot be a
 * socket; the upstream side may use this too, or attach its socket.
 *
 * Flow: the caller pushes network bytes with sbx_tlsio_net_in (accepts at
 * most what fits: back-pressure), pulls bytes to send with
 * sbx_tlsio_net_out, and moves plaintext with sbx_tlsio_read/_write. The
 * handshake runs implicitly inside read/write. Memory per endpoint is
 * bounded by the BIO pair (2 x bufsize) plus OpenSSL's record buffers.
 *
 * Thread safety: one thread at a time per endpoint. */
#ifndef SBX_TLSIO_H
#define SBX_TLSIO_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#define SBX_TLSIO_BUF 65536

/* Results of read/write besides a byte count. */
#define SBX_TLSIO_AGAIN 0  /* nothing now: feed/drain network bytes first */
#define SBX_TLSIO_EOF (-1) /* peer sent close_notify (read only) */
#define SBX_TLSIO_ERR (-2) /* failed: sbx_tlsio_error() says why */

struct sbx_tlsio;

/* Wrap ssl (ownership passes to the endpoint, even on failure); ssl must
 * already be in connect or accept state (tlsca.h's constructors do that).
 * bufsize: BIO pair buffer each way (0: SBX_TLSIO_BUF). Returns NULL on
 * allocation failure. */
struct sbx_tlsio *sbx_tlsio_new(SSL *ssl, size_t bufsize);
void sbx_tlsio_free(struct sbx_tlsio *io);
SSL *sbx_tlsio_ssl(struct sbx_tlsio *io);

/* Network -> endpoint: returns how many bytes were taken (maybe fewer). */
size_t sbx_tlsio_net_in(struct sbx_tlsio *io, const void *data, size_t len);
/* Endpoint -> network: copies up to cap pending bytes out; returns count. */
size_t sbx_tlsio_net_out(struct sbx_tlsio *io, void *buf, size_t cap);
size_t sbx_tlsio_net_pending(struct sbx_tlsio *io);

/* Drive the handshake: 1 done, 0 in progress, SBX_TLSIO_ERR failed. */
int sbx_tlsio_handshake(struct sbx_tlsio *io);
/* Plaintext out of the connection: >0 bytes, or AGAIN / EOF / ERR. */
ssize_t sbx_tlsio_read(struct sbx_tlsio *io, void *buf, size_t cap);
/* Plaintext into the connection: >0 bytes taken, AGAIN (call again later
 * with the same bytes) or ERR. */
ssize_t sbx_tlsio_write(struct sbx_tlsio *io, const void *data, size_t len);
/* Queue close_notify (best effort). */
void sbx_tlsio_shutdown(struct sbx_tlsio *io);
/* Why the endpoint failed ("" if it has not). Never holds application data. */
const char *sbx_tlsio_error(const struct sbx_tlsio *io);

#endif
