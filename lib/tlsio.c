/* Memory-driven TLS endpoint over a BIO pair (tlsio.h). */
#include "tlsio.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>

#include "tlsca.h"

struct sbx_tlsio {
	SSL *ssl;
	BIO *net; /* our half of the pair; the SSL owns the other */
	int failed;
	char err[200];
};

struct sbx_tlsio *sbx_tlsio_new(SSL *ssl, size_t bufsize)
{
	struct sbx_tlsio *io = calloc(1, sizeof *io);
	BIO *inner = NULL, *outer = NULL;
	if (!bufsize)
		bufsize = SBX_TLSIO_BUF;
	if (!io || !BIO_new_bio_pair(&inner, bufsize, &outer, bufsize)) {
		free(io);
		SSL_free(ssl);
		return NULL;
	}
	SSL_set_bio(ssl, inner, inner);
	io->ssl = ssl;
	io->net = outer;
	return io;
}

void sbx_tlsio_free(struct sbx_tlsio *io)
{
	if (!io)
		return;
	SSL_free(io->ssl);
	BIO_free(io->net);
	free(io);
}

SSL *sbx_tlsio_ssl(struct sbx_tlsio *io)
{
	return io->ssl;
}

size_t sbx_tlsio_net_in(struct sbx_tlsio *io, const void *data, size_t len)
{
	if (len > INT_MAX)
		len = INT_MAX;
	int n = BIO_write(io->net, data, (int)len);
	return n > 0 ? (size_t)n : 0;
}

size_t sbx_tlsio_net_out(struct sbx_tlsio *io, void *buf, size_t cap)
{
	if (cap > INT_MAX)
		cap = INT_MAX;
	int n = BIO_read(io->net, buf, (int)cap);
	return n > 0 ? (size_t)n : 0;
}

size_t sbx_tlsio_net_pending(struct sbx_tlsio *io)
{
	return BIO_ctrl_pending(io->net);
}

/* Classify a failed SSL call: AGAIN when it only waits for I/O. */
static int fail_or_again(struct sbx_tlsio *io, int ret)
{
	int kind = SSL_get_error(io->ssl, ret);
	if (kind == SSL_ERROR_WANT_READ || kind == SSL_ERROR_WANT_WRITE)
		return SBX_TLSIO_AGAIN;
	if (kind == SSL_ERROR_ZERO_RETURN)
		return SBX_TLSIO_EOF;
	if (!io->failed)
		sbx_tls_describe_error(io->ssl, ret, io->err, sizeof io->err);
	io->failed = 1;
	return SBX_TLSIO_ERR;
}

int sbx_tlsio_handshake(struct sbx_tlsio *io)
{
	if (io->failed)
		return SBX_TLSIO_ERR;
	if (SSL_is_init_finished(io->ssl))
		return 1;
	int r = SSL_do_handshake(io->ssl);
	if (r == 1)
		return 1;
	int k = fail_or_again(io, r);
	return k == SBX_TLSIO_EOF ? SBX_TLSIO_ERR : k;
}

ssize_t sbx_tlsio_read(struct sbx_tlsio *io, void *buf, size_t cap)
{
	if (io->failed)
		return SBX_TLSIO_ERR;
	if (cap > INT_MAX)
		cap = INT_MAX;
	int r = SSL_read(io->ssl, buf, (int)cap);
	return r > 0 ? r : fail_or_again(io, r);
}

ssize_t sbx_tlsio_write(struct sbx_tlsio *io, const void *data, size_t len)
{
	if (io->failed)
		return SBX_TLSIO_ERR;
	if (len == 0)
		return 0;
	if (len > INT_MAX)
		len = INT_MAX;
	int r = SSL_write(io->ssl, data, (int)len);
	if (r > 0)
		return r;
	int k = fail_or_again(io, r);
	return k == SBX_TLSIO_EOF ? SBX_TLSIO_ERR : k;
}

void sbx_tlsio_shutdown(struct sbx_tlsio *io)
{
	if (!io->failed && SSL_is_init_finished(io->ssl))
		SSL_shutdown(io->ssl);
	ERR_clear_error();
}

const char *sbx_tlsio_error(const struct sbx_tlsio *io)
{
	return io->err;
}
