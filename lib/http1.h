/* HTTP/1.1 stream processor for the egress proxy: secret substitution
 * toward upstream, echo protection toward the guest, per-request policy
 * and audit. Parsing is Debian's http-parser (http_parser.h).
 *
 * One struct sbx_http_conn per client connection (plain HTTP, or the
 * plaintext inside an intercepted TLS connection). The caller owns all I/O:
 *
 *   guest bytes    -> sbx_http_feed_request()  -> sbx_http_peek/consume_upstream()
 *   upstream bytes -> sbx_http_feed_response() -> sbx_http_peek/consume_guest()
 *
 * Feeds return how many bytes were taken; fewer than offered means "output
 * is full or the conversation must wait" (back-pressure): offer the rest
 * again after draining output or after the other direction made progress.
 * Nothing blocks and nothing does I/O. sbx_http_flags() tells the caller
 * when to close which side.
 *
 * Bounds (memory per connection): a request or response head is at most
 * SBX_HTTP_HEAD_MAX bytes (larger request heads get 431, response heads a
 * 502); output queues stop taking input beyond SBX_HTTP_OUT_HIGH; at most
 * SBX_HTTP_PIPELINE_MAX requests are outstanding; bodies are streamed,
 * except that a body whose length may change is buffered up to
 * SBX_HTTP_REFRAME_MAX to keep an exact Content-Length (see
 * doc/tls-interception.md for the re-framing rules).
 *
 * Thread safety: one thread at a time per connection; callbacks run on
 * the calling thread, inside feed calls (and inside sbx_http_conn_free for
 * requests that never got an answer). */
#ifndef SBX_HTTP1_H
#define SBX_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#define SBX_HTTP_MAX_SECRETS 64
#define SBX_HTTP_VALUE_MAX 8192
#define SBX_HTTP_HEAD_MAX 65536
#define SBX_HTTP_MAX_HEADERS 256
#define SBX_HTTP_OUT_HIGH (256 * 1024)
#define SBX_HTTP_FEED_CHUNK 16384
#define SBX_HTTP_PIPELINE_MAX 16
#define SBX_HTTP_REFRAME_MAX (1024 * 1024)
/* Distinct Basic credentials with a substituted value per connection (their
 * encodings are echo-protected too), and their longest encoding. */
#define SBX_HTTP_ALIAS_MAX 16
#define SBX_HTTP_ALIAS_LEN (2 * SBX_HTTP_VALUE_MAX)

/* A secret as the processor sees it. All pointers are borrowed and must
 * outlive the connection. */
struct sbx_http_secret {
	const char *name;	 /* env var name: events and messages use this */
	const char *placeholder; /* what the guest has (placeholder.h) */
	const unsigned char *value;
	size_t value_len; /* 1..SBX_HTTP_VALUE_MAX, no CR, LF or NUL */
	int in_body;	  /* opt-in: substitute in request bodies too */
};

struct sbx_http_header {
	const char *name, *value; /* not NUL-terminated */
	size_t name_len, value_len;
};

/* Passed to the decision callback; valid only during the call. Target and
 * headers are as the guest sent them (placeholders, never values). */
struct sbx_http_request_info {
	const char *method; /* "GET", ... */
	const char *target; /* NUL-terminated request target */
	const char *host;   /* Host header value, NUL-terminated, or NULL */
	unsigned http_major, http_minor;
	const struct sbx_http_header *headers;
	size_t n_headers;
};

enum sbx_http_verdict { SBX_HTTP_ALLOW, SBX_HTTP_BLOCK };

struct sbx_http_decision {
	enum sbx_http_verdict verdict; /* preset: ALLOW */
	/* ALLOW: bit i set = secrets[i] may be substituted into this request.
	 * Preset 0 (nothing). */
	uint64_t secrets;
	/* BLOCK: status (preset 403) and a reason for the guest's error page
	 * and the audit event. */
	int status;
	char reason[256];
};

typedef void (*sbx_http_decide_fn)(void *ud, const struct sbx_http_request_info *req,
				   struct sbx_http_decision *out);

enum sbx_http_event_kind {
	SBX_HTTP_EV_MISDIRECTED, /* secret.misdirected */
	SBX_HTTP_EV_REQUEST,	 /* http.request */
};

/* Valid only during the callback. No field ever holds a secret value. */
struct sbx_http_event {
	enum sbx_http_event_kind kind;
	const char *method, *scheme, *host, *path; /* path: target without query */
	unsigned port;
	/* MISDIRECTED */
	const char *secret; /* name */
	const char *where;  /* "target", "header:<Name>", "header:<Name> (Basic)", "body" */
	int blocked;	    /* the request was refused because of it */
	/* REQUEST */
	int status;		  /* final status sent to the guest; 0: none */
	uint64_t bytes_up;	  /* request bytes received from the guest */
	uint64_t bytes_down;	  /* response bytes received from upstream */
	int64_t duration_us;	  /* first request byte to last response byte */
	const char *secrets_used; /* comma-separated names substituted, "" if none */
	const char *error;	  /* why it failed or was refused locally, or NULL */
};

typedef void (*sbx_http_event_fn)(void *ud, const struct sbx_http_event *ev);

struct sbx_http_config {
	const struct sbx_http_secret *secrets; /* borrowed, <= SBX_HTTP_MAX_SECRETS */
	size_t n_secrets;
	const char *scheme; /* "http" / "https", for events */
	const char *host;   /* the connection's destination, for events */
	unsigned port;
	int block_misdirected; /* 403 instead of forwarding a misdirected placeholder */
	sbx_http_decide_fn decide;
	sbx_http_event_fn event; /* may be NULL */
	void *userdata;
};

/* Flags from sbx_http_flags(). */
#define SBX_HTTP_CLOSE_GUEST 0x1    /* close the guest side once guest output is drained */
#define SBX_HTTP_CLOSE_UPSTREAM 0x2 /* close upstream now (after draining upstream output) */
#define SBX_HTTP_PASSTHROUGH 0x4    /* upgraded (101): bytes are relayed untouched */

struct sbx_http_conn;

/* Returns 0, or -1 with a message in err (invalid config: e.g. a value
 * with CR/LF, too many secrets, no decide callback). */
int sbx_http_conn_new(struct sbx_http_conn **out, const struct sbx_http_config *cfg, char *err,
		      size_t cap);
/* Reports requests still without a response (status 0), wipes buffers. */
void sbx_http_conn_free(struct sbx_http_conn *c);

size_t sbx_http_feed_request(struct sbx_http_conn *c, const void *data, size_t len);
size_t sbx_http_feed_response(struct sbx_http_conn *c, const void *data, size_t len);
/* The guest / upstream closed its sending side. */
void sbx_http_request_eof(struct sbx_http_conn *c);
void sbx_http_response_eof(struct sbx_http_conn *c);

/* The upstream connection failed (e.g. certificate verification; why is
 * shown to the guest, so give sbx_tls_describe_error()'s text, never
 * data). The request waiting for an answer, or else the next request the
 * guest sends, gets a 502 with that reason (an audited http.request), then
 * both sides close. Queued upstream output is dropped. */
void sbx_http_upstream_failed(struct sbx_http_conn *c, const char *why);

size_t sbx_http_peek_upstream(struct sbx_http_conn *c, const unsigned char **p);
void sbx_http_consume_upstream(struct sbx_http_conn *c, size_t n);
size_t sbx_http_peek_guest(struct sbx_http_conn *c, const unsigned char **p);
void sbx_http_consume_guest(struct sbx_http_conn *c, size_t n);

unsigned sbx_http_flags(const struct sbx_http_conn *c);
/* Bytes of buffer memory the connection holds right now (for tests and
 * the proxy's accounting). */
size_t sbx_http_memory(const struct sbx_http_conn *c);

#endif
