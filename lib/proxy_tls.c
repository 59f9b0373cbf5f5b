/* Secrets, HTTP processing and TLS interception in the proxy thread.
 *
 * A connection the sniffer found to be HTTP runs through an sbx_http_conn
 * (lib/http1.c): every request is decided (policy, which secrets may be
 * substituted) and audited. A TLS connection is terminated with a leaf the
 * sandbox's CA mints for its SNI (lib/tlsca.c), its plaintext goes through
 * the same HTTP processing, and a new TLS connection, verified against the
 * host's trust store, carries it upstream. Both TLS ends are memory
 * endpoints (lib/tlsio.c): this thread moves the bytes.
 *
 *   guest frames -> ubuf -> [gtls] -> http request side -> [utls] -> socket
 *   socket -> [utls] -> http response side -> [gtls] -> TCP_DATA frames
 *
 * Every stage takes only what the next can hold, so memory per connection
 * stays bounded and a stalled side stalls only its own connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "error.h"
#include "http1.h"
#include "placeholder.h"
#include "proxy_int.h"
#include "sandbox_int.h"
#include "tlsca.h"
#include "tlsio.h"
#include "util.h"

#define STAGE 16384

struct px_icpt {
	struct sbx_proxy *px;
	struct px_conn *c;
	struct sbx_http_conn *http;
	struct sbx_tlsio *gtls, *utls; /* NULL in MODE_HTTP */
	char host[256];		       /* SNI (TLS) for the audit and checks */
	int tls_sni;		       /* the guest sent SNI */
	/* plaintext read from a TLS end, not yet taken by the HTTP side */
	uint8_t req[STAGE], resp[STAGE];
	size_t req_len, req_off, resp_len, resp_off;
	/* ciphertext for the socket / from it, not yet sent / taken */
	uint8_t sout[STAGE], sin[STAGE];
	size_t sout_len, sout_off, sin_len, sin_off;
	int guest_eof_fed, resp_eof_fed, sock_eof, sock_shut;
	int up_handshake_done, up_failed;
	int guest_closing;
	int want_write;
};

/* ------------------------------------------------------------- setup */

static int passthrough_overlaps(const struct sbx_netpolicy *pass, const struct sbx_pattern *h)
{
	for (size_t i = 0; i < pass->n; i++) {
		const struct sbx_pattern *p = &pass->v[i];
		if (p->port && h->port && p->port != h->port)
			continue;
		if (h->kind == SBX_PAT_HOST && sbx_netpolicy_allows_name(pass, h->host, h->port))
			return 1;
		if (p->kind == SBX_PAT_HOST && h->kind == SBX_PAT_WILDCARD) {
			size_t pl = strlen(p->host), hl = strlen(h->host);
			if (pl > hl + 1 && p->host[pl - hl - 1] == '.' &&
			    !strcmp(p->host + pl - hl, h->host))
				return 1;
		}
		if (p->kind == SBX_PAT_WILDCARD && h->kind == SBX_PAT_WILDCARD) {
			size_t pl = strlen(p->host), hl = strlen(h->host);
			const char *longer = pl >= hl ? p->host : h->host;
			const char *shorter = pl >= hl ? h->host : p->host;
			size_t ll = strlen(longer), sl = strlen(shorter);
			if (ll == sl ? !strcmp(longer, shorter)
				     : longer[ll - sl - 1] == '.' && !strcmp(longer + ll - sl, shorter))
				return 1;
		}
		if (p->kind == h->kind && (p->kind == SBX_PAT_IPV4 || p->kind == SBX_PAT_IPV6) &&
		    !memcmp(p->addr, h->addr, 16))
			return 1;
	}
	return 0;
}

static int setup_secrets(struct sbx_proxy *px, const sandbox_options_t *o)
{
	px->n_secrets = o->secrets_count;
	if (!px->n_secrets)
		return 0;
	px->secrets = calloc(px->n_secrets, sizeof *px->secrets);
	px->http_secrets = calloc(px->n_secrets, sizeof *px->http_secrets);
	if (!px->secrets || !px->http_secrets)
		return sbx_fail(SANDBOX_E_NOMEM, "secrets");
	for (size_t i = 0; i < px->n_secrets; i++) {
		const sandbox_secret_t *in = &o->secrets[i];
		struct px_secret *s = &px->secrets[i];
		s->value_len = strlen(in->value);
		s->name = strdup(in->name);
		s->value = malloc(s->value_len + 1);
		if (!s->name || !s->value)
			return sbx_fail(SANDBOX_E_NOMEM, "secrets");
		memcpy(s->value, in->value, s->value_len + 1);
		int rc = sbx_netpolicy_parse(in->hosts, "secret hosts", &s->hosts);
		if (rc)
			return rc;
		for (size_t k = 0; k < s->hosts.n; k++)
			if (px->passthrough.n && passthrough_overlaps(&px->passthrough, &s->hosts.v[k]))
				return sbx_fail(SANDBOX_E_INVAL,
						"secret %s: host '%s' is also in tls_passthrough, "
						"where the proxy cannot substitute it",
						s->name, in->hosts[k]);
		if (sbx_placeholder_make(s->name, s->placeholder, sizeof s->placeholder) < 0)
			return sbx_fail(SANDBOX_E_INVAL, "secret %s: cannot make a placeholder",
					s->name);
		px->http_secrets[i] = (struct sbx_http_secret){
		    .name = s->name,
		    .placeholder = s->placeholder,
		    .value = s->value,
		    .value_len = s->value_len,
		    .in_body = !!(in->flags & SANDBOX_SECRET_SUBSTITUTE_BODY),
		};
	}
	return 0;
}

int px_icpt_setup(struct sbx_proxy *px, const sandbox_options_t *o)
{
	int rc;
	if (o->tls_passthrough &&
	    (rc = sbx_netpolicy_parse(o->tls_passthrough, "tls_passthrough", &px->passthrough)))
		return rc;
	if ((rc = setup_secrets(px, o)))
		return rc;
	px->block_misdirected = !!(o->net_flags & SANDBOX_NET_BLOCK_MISDIRECTED);
	/* Every plain HTTP request is parsed, decided (its own Host header,
	 * keep-alive or not) and audited. TLS is intercepted in sandboxes
	 * that have secrets: that is what it is for, and a sandbox without
	 * them keeps TLS end to end (its connections are still decided by SNI
	 * and audited as net.connect). */
	px->http_parse = 1;
	px->tls_intercept = px->n_secrets > 0;
	if (!px->tls_intercept)
		return 0;
	char err[256];
	if (sbx_tlsca_new(&px->ca, px->sb->id, err, sizeof err))
		return sbx_fail(SANDBOX_E_NOMEM, "sandbox CA: %s", err);
	if (!(px->up_ctx = sbx_tls_upstream_ctx_new(o->tls_ca_file, err, sizeof err)))
		return sbx_fail(SANDBOX_E_INVAL, "tls_ca_file: %s", err);
	return 0;
}

void px_icpt_teardown(struct sbx_proxy *px)
{
	for (size_t i = 0; px->secrets && i < px->n_secrets; i++) {
		struct px_secret *s = &px->secrets[i];
		if (s->value) {
			sbx_wipe(s->value, s->value_len);
			free(s->value);
		}
		free(s->name);
		sbx_netpolicy_free(&s->hosts);
	}
	free(px->secrets);
	free(px->http_secrets);
	px->secrets = NULL;
	px->http_secrets = NULL;
	sbx_netpolicy_free(&px->passthrough);
	sbx_tlsca_free(px->ca);
	px->ca = NULL;
	if (px->up_ctx)
		SSL_CTX_free(px->up_ctx);
	px->up_ctx = NULL;
}

/* --------------------------------------------------------- decisions */

static void host_no_port(const char *h, char *out, size_t cap)
{
	size_t n = strlen(h);
	if (h[0] == '[') {
		const char *close = strchr(h, ']');
		n = close ? (size_t)(close - h - 1) : 0;
		h++;
	} else {
		const char *colon = strchr(h, ':');
		if (colon)
			n = (size_t)(colon - h);
	}
	if (n >= cap)
		n = cap - 1;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)((h[i] >= 'A' && h[i] <= 'Z') ? h[i] + 32 : h[i]);
	out[n] = '\0';
	if (n && out[n - 1] == '.')
		out[n - 1] = '\0';
}

/* Does the destination agree with `host`: the SNI (for TLS) names it, and
 * our DNS gave this address for it (or it is this address)? */
static int destination_agrees(struct px_icpt *ic, const char *host)
{
	struct px_conn *c = ic->c;
	if (ic->gtls && (!ic->tls_sni || strcasecmp(ic->host, host)))
		return 0;
	uint8_t a[16];
	if (inet_pton(AF_INET, host, a) == 1)
		return c->family == AF_INET && !memcmp(a, c->addr, 4);
	if (inet_pton(AF_INET6, host, a) == 1)
		return c->family == AF_INET6 && !memcmp(a, c->addr, 16);
	return sbx_addrmap_has(&ic->px->map, c->family, c->addr, host);
}

static int secret_matches(const struct px_secret *s, const char *host, const struct px_conn *c)
{
	uint8_t a[16];
	if (inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1)
		return sbx_netpolicy_allows_addr(&s->hosts, c->family, c->addr, c->port);
	return sbx_netpolicy_allows_name(&s->hosts, host, c->port);
}

static void decide_request(void *ud, const struct sbx_http_request_info *req,
			   struct sbx_http_decision *out)
{
	struct px_icpt *ic = ud;
	struct sbx_proxy *px = ic->px;
	char host[256] = "";
	if (req->host)
		host_no_port(req->host, host, sizeof host);
	else if (ic->gtls && ic->tls_sni)
		snprintf(host, sizeof host, "%s", ic->host);
	char reason[200];
	pthread_mutex_lock(&px->lock);
	int ok = px_check_claimed_name(px, ic->c, host, reason, sizeof reason);
	pthread_mutex_unlock(&px->lock);
	if (!ok) {
		out->verdict = SBX_HTTP_BLOCK;
		out->status = 403;
		snprintf(out->reason, sizeof out->reason, "Blocked by the sandbox network policy: %.200s",
			 reason);
		return;
	}
	if (!host[0] || !destination_agrees(ic, host))
		return; /* forwarded, nothing substituted */
	for (size_t i = 0; i < px->n_secrets && i < 64; i++)
		if (secret_matches(&px->secrets[i], host, ic->c))
			out->secrets |= 1ull << i;
}

static void on_http_event(void *ud, const struct sbx_http_event *ev)
{
	struct px_icpt *ic = ud;
	struct sbx_audit *a = &ic->px->sb->audit;
	struct sbx_json j;
	if (ev->kind == SBX_HTTP_EV_MISDIRECTED) {
		sbx_audit_begin(a, &j, "secret.misdirected");
		sbx_json_str(&j, "secret", ev->secret);
		sbx_json_str(&j, "host", ev->host);
		sbx_json_int(&j, "port", ev->port);
		sbx_json_str(&j, "where", ev->where);
		sbx_json_str(&j, "method", ev->method);
		sbx_json_str(&j, "path", ev->path);
		sbx_json_bool(&j, "blocked", ev->blocked);
		sbx_audit_emit(a, &j);
		return;
	}
	sbx_audit_begin(a, &j, "http.request");
	sbx_json_str(&j, "method", ev->method);
	sbx_json_str(&j, "scheme", ev->scheme);
	sbx_json_str(&j, "host", ev->host);
	sbx_json_int(&j, "port", ev->port);
	sbx_json_str(&j, "path", ev->path);
	sbx_json_int(&j, "status", ev->status);
	sbx_json_int(&j, "bytes_out", (int64_t)ev->bytes_up);
	sbx_json_int(&j, "bytes_in", (int64_t)ev->bytes_down);
	sbx_json_double(&j, "duration_ms", (double)ev->duration_us / 1000.0);
	sbx_json_open_array(&j, "secrets");
	for (const char *p = ev->secrets_used; p && *p;) {
		size_t n = strcspn(p, ",");
		sbx_json_strn(&j, NULL, p, n);
		p += n + (p[n] == ',');
	}
	sbx_json_close_array(&j);
	if (ev->error)
		sbx_json_str(&j, "error", ev->error);
	sbx_audit_emit(a, &j);
}

static void audit_tls_failure(struct px_icpt *ic, const char *side, const char *why)
{
	struct sbx_json j;
	sbx_audit_begin(&ic->px->sb->audit, &j, "tls.error");
	sbx_json_str(&j, "side", side);
	sbx_json_str(&j, "host", ic->host);
	sbx_json_int(&j, "port", ic->c->port);
	sbx_json_str(&j, "error", why);
	sbx_audit_emit(&ic->px->sb->audit, &j);
}

/* ------------------------------------------------------------- begin */

static int is_passthrough(struct sbx_proxy *px, const char *sni, unsigned port)
{
	return px->passthrough.n && sni[0] && sbx_netpolicy_allows_name(&px->passthrough, sni, port);
}

int px_icpt_begin(struct sbx_proxy *px, struct px_conn *c, enum sbx_sniff_kind kind,
		  const char *name)
{
	if (!(kind == SBX_SNIFF_HTTP && px->http_parse) && !(kind == SBX_SNIFF_TLS && px->tls_intercept))
		return 0;
	if (kind == SBX_SNIFF_TLS && is_passthrough(px, name, c->port))
		return 0;
	if (px->n_icpt >= PX_MAX_HTTP)
		return -1; /* the connection is refused: the budget is spent */
	struct px_icpt *ic = calloc(1, sizeof *ic);
	if (!ic)
		return -1;
	ic->px = px;
	ic->c = c;
	char err[256];
	if (kind == SBX_SNIFF_TLS) {
		ic->tls_sni = name[0] != 0;
		if (ic->tls_sni)
			snprintf(ic->host, sizeof ic->host, "%s", name);
		else
			sbx_addr_format(c->family, c->addr, ic->host, sizeof ic->host);
		SSL *g = sbx_tlsca_server_ssl(px->ca, ic->host, err, sizeof err);
		SSL *u = g ? sbx_tls_upstream_ssl(px->up_ctx, ic->host, err, sizeof err) : NULL;
		ic->gtls = g ? sbx_tlsio_new(g, 0) : NULL;
		ic->utls = u ? sbx_tlsio_new(u, 0) : NULL;
		if (!ic->gtls || !ic->utls) {
			audit_tls_failure(ic, "setup", err);
			sbx_tlsio_free(ic->gtls);
			sbx_tlsio_free(ic->utls);
			free(ic);
			return -1;
		}
	} else {
		sbx_addr_format(c->family, c->addr, ic->host, sizeof ic->host);
		if (c->name[0])
			snprintf(ic->host, sizeof ic->host, "%s", c->name);
	}
	struct sbx_http_config cfg = {
	    .secrets = px->http_secrets,
	    .n_secrets = px->n_secrets,
	    .scheme = kind == SBX_SNIFF_TLS ? "https" : "http",
	    .host = ic->host,
	    .port = c->port,
	    .block_misdirected = px->block_misdirected,
	    .decide = decide_request,
	    .event = on_http_event,
	    .userdata = ic,
	};
	if (sbx_http_conn_new(&ic->http, &cfg, err, sizeof err)) {
		sbx_tlsio_free(ic->gtls);
		sbx_tlsio_free(ic->utls);
		free(ic);
		return -1;
	}
	c->icpt = ic;
	c->mode = kind == SBX_SNIFF_TLS ? MODE_TLS : MODE_HTTP;
	px->n_icpt++;
	return 0;
}

void px_icpt_free(struct px_conn *c)
{
	struct px_icpt *ic = c->icpt;
	if (!ic)
		return;
	ic->px->n_icpt--;
	sbx_http_conn_free(ic->http);
	sbx_tlsio_free(ic->gtls);
	sbx_tlsio_free(ic->utls);
	sbx_wipe(ic, sizeof *ic); /* plaintext with substituted values */
	free(ic);
	c->icpt = NULL;
}

/* -------------------------------------------------------------- pump */

/* Guest bytes from ubuf into the first stage (px->lock for ubuf). */
static int take_guest(struct px_icpt *ic, struct px_iter_grant *g)
{
	struct sbx_proxy *px = ic->px;
	struct px_conn *c = ic->c;
	int progress = 0;
	pthread_mutex_lock(&px->lock);
	size_t have = c->ulen - c->uoff;
	if (!ic->gtls && ic->req_off == ic->req_len)
		ic->req_off = ic->req_len = 0;
	if (have) {
		/* HTTP: staged, and fed outside the lock (the decision callback
		 * takes it) */
		size_t room = sizeof ic->req - ic->req_len;
		size_t n = ic->gtls ? sbx_tlsio_net_in(ic->gtls, c->ubuf + c->uoff, have)
				    : (have < room ? have : room);
		if (!ic->gtls)
			memcpy(ic->req + ic->req_len, c->ubuf + c->uoff, n), ic->req_len += n;
		c->uoff += n;
		c->bytes_up += n;
		c->grant += (uint32_t)n;
		if (c->ulen == c->uoff)
			c->ulen = c->uoff = 0;
		progress = n > 0;
	}
	if (c->grant >= 16384 || (c->grant && c->ulen == 0)) {
		g->stream = c->stream;
		g->n = c->grant;
		c->in_credit += c->grant;
		c->grant = 0;
	}
	int eof = c->guest_eof && c->ulen == 0;
	pthread_mutex_unlock(&px->lock);
	if (!ic->gtls && ic->req_off < ic->req_len) {
		size_t n = sbx_http_feed_request(ic->http, ic->req + ic->req_off,
						 ic->req_len - ic->req_off);
		ic->req_off += n;
		progress |= n > 0;
	}
	if (eof && !ic->gtls && !ic->guest_eof_fed && ic->req_off == ic->req_len) {
		sbx_http_request_eof(ic->http);
		ic->guest_eof_fed = 1;
		progress = 1;
	}
	if (eof && ic->gtls && !ic->guest_eof_fed) {
		/* TLS: the plaintext side learns of it when gtls reads EOF/ERR;
		 * a peer that half-closes without close_notify ends the request
		 * side here */
		ic->guest_eof_fed = 2;
	}
	return progress;
}

/* TLS only: guest plaintext into the HTTP request side. */
static int guest_plain_to_http(struct px_icpt *ic, int *fail)
{
	int progress = 0;
	if (ic->req_off == ic->req_len) {
		ic->req_off = ic->req_len = 0;
		ssize_t r = sbx_tlsio_read(ic->gtls, ic->req, sizeof ic->req);
		if (r > 0) {
			ic->req_len = (size_t)r;
		} else if (r == SBX_TLSIO_EOF ||
			   (r == SBX_TLSIO_AGAIN && ic->guest_eof_fed == 2)) {
			if (ic->guest_eof_fed != 1) {
				sbx_http_request_eof(ic->http);
				ic->guest_eof_fed = 1;
				progress = 1;
			}
		} else if (r == SBX_TLSIO_ERR) {
			audit_tls_failure(ic, "guest", sbx_tlsio_error(ic->gtls));
			*fail = 1;
			return 0;
		}
	}
	if (ic->req_off < ic->req_len) {
		size_t n = sbx_http_feed_request(ic->http, ic->req + ic->req_off,
						 ic->req_len - ic->req_off);
		ic->req_off += n;
		progress |= n > 0;
	}
	return progress;
}

/* HTTP request side output toward the upstream (socket or utls). */
static int http_to_upstream(struct px_icpt *ic, int *fail)
{
	const unsigned char *p;
	size_t n = sbx_http_peek_upstream(ic->http, &p);
	if (!n)
		return 0;
	ssize_t w;
	if (ic->utls) {
		w = sbx_tlsio_write(ic->utls, p, n);
		if (w == SBX_TLSIO_ERR) {
			*fail = 2;
			return 0;
		}
	} else {
		if (!ic->c->open)
			return 0;
		w = send(ic->c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno != EAGAIN && errno != EINTR) {
			*fail = 2;
			return 0;
		}
		ic->want_write = w < (ssize_t)n;
	}
	if (w > 0)
		sbx_http_consume_upstream(ic->http, (size_t)w);
	return w > 0;
}

/* TLS only: utls ciphertext to the socket, and socket bytes into utls. */
static int upstream_ciphertext(struct px_icpt *ic, int *fail)
{
	struct px_conn *c = ic->c;
	int progress = 0;
	if (!c->open)
		return 0;
	if (ic->sout_off == ic->sout_len) {
		ic->sout_off = 0;
		ic->sout_len = sbx_tlsio_net_out(ic->utls, ic->sout, sizeof ic->sout);
	}
	if (ic->sout_off < ic->sout_len) {
		ssize_t w = send(c->fd, ic->sout + ic->sout_off, ic->sout_len - ic->sout_off,
				 MSG_NOSIGNAL);
		if (w > 0) {
			ic->sout_off += (size_t)w;
			progress = 1;
		} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
			*fail = 2;
			return 0;
		}
	}
	ic->want_write = ic->sout_off < ic->sout_len;
	return progress;
}

/* Socket bytes in: into utls (TLS) or the HTTP response side. */
static int upstream_in(struct px_icpt *ic, int *fail)
{
	struct px_conn *c = ic->c;
	int progress = 0;
	if (!c->open)
		return 0;
	if (ic->sin_off == ic->sin_len && !ic->sock_eof) {
		ic->sin_off = ic->sin_len = 0;
		ssize_t r = recv(c->fd, ic->sin, sizeof ic->sin, 0);
		if (r > 0) {
			ic->sin_len = (size_t)r;
			c->bytes_down += (uint64_t)r;
		} else if (r == 0) {
			ic->sock_eof = 1;
			progress = 1;
		} else if (errno != EAGAIN && errno != EINTR) {
			ic->sock_eof = 1;
			progress = 1;
		}
	}
	if (ic->sin_off < ic->sin_len) {
		size_t n = ic->utls ? sbx_tlsio_net_in(ic->utls, ic->sin + ic->sin_off,
						       ic->sin_len - ic->sin_off)
				    : sbx_http_feed_response(ic->http, ic->sin + ic->sin_off,
							     ic->sin_len - ic->sin_off);
		ic->sin_off += n;
		progress |= n > 0;
	}
	if (!ic->utls && ic->sock_eof && ic->sin_off == ic->sin_len && !ic->resp_eof_fed) {
		sbx_http_response_eof(ic->http);
		ic->resp_eof_fed = 1;
		progress = 1;
	}
	(void)fail;
	return progress;
}

/* TLS only: upstream plaintext into the HTTP response side. */
static int upstream_plain_to_http(struct px_icpt *ic)
{
	int progress = 0;
	if (ic->resp_off == ic->resp_len && !ic->resp_eof_fed) {
		ic->resp_off = ic->resp_len = 0;
		int hs = sbx_tlsio_handshake(ic->utls);
		ssize_t r = hs == 1 ? sbx_tlsio_read(ic->utls, ic->resp, sizeof ic->resp) : hs;
		if (r > 0) {
			ic->resp_len = (size_t)r;
		} else if (r == SBX_TLSIO_EOF || r == SBX_TLSIO_ERR ||
			   (ic->sock_eof && ic->sin_off == ic->sin_len)) {
			if (r == SBX_TLSIO_ERR && !ic->up_failed) {
				/* certificate or handshake failure: the guest gets a
				 * 502 that says why (no data in the text) */
				ic->up_failed = 1;
				audit_tls_failure(ic, "upstream", sbx_tlsio_error(ic->utls));
				sbx_http_upstream_failed(ic->http, sbx_tlsio_error(ic->utls));
			} else {
				sbx_http_response_eof(ic->http);
			}
			ic->resp_eof_fed = 1;
			return 1;
		}
	}
	if (ic->resp_off < ic->resp_len) {
		size_t n = sbx_http_feed_response(ic->http, ic->resp + ic->resp_off,
						  ic->resp_len - ic->resp_off);
		ic->resp_off += n;
		progress = n > 0;
	}
	return progress;
}

/* Bytes for the guest: the HTTP side's output (through gtls for TLS),
 * sent as TCP_DATA within the agent's credit. */
static int to_guest(struct px_icpt *ic, uint8_t *buf, int *fail)
{
	struct sbx_proxy *px = ic->px;
	struct px_conn *c = ic->c;
	int progress = 0;
	const unsigned char *p;
	size_t n;
	if (ic->gtls) {
		while ((n = sbx_http_peek_guest(ic->http, &p)) > 0) {
			ssize_t w = sbx_tlsio_write(ic->gtls, p, n);
			if (w == SBX_TLSIO_ERR) {
				*fail = 1;
				return 0;
			}
			if (w <= 0)
				break;
			sbx_http_consume_guest(ic->http, (size_t)w);
			progress = 1;
		}
	}
	for (;;) {
		pthread_mutex_lock(&px->lock);
		size_t credit = c->down_credit < SBX_PROTO_MAX_PAYLOAD ? (size_t)c->down_credit
								       : SBX_PROTO_MAX_PAYLOAD;
		pthread_mutex_unlock(&px->lock);
		if (!credit)
			break;
		if (ic->gtls) {
			n = sbx_tlsio_net_out(ic->gtls, buf, credit);
			p = buf;
		} else {
			n = sbx_http_peek_guest(ic->http, &p);
			if (n > credit)
				n = credit;
		}
		if (!n)
			break;
		pthread_mutex_lock(&px->lock);
		c->down_credit -= n;
		pthread_mutex_unlock(&px->lock);
		sbx_chan_send(px->sb, SBX_T_TCP_DATA, c->stream, p, n);
		if (!ic->gtls)
			sbx_http_consume_guest(ic->http, n);
		progress = 1;
	}
	return progress;
}

static int guest_output_pending(struct px_icpt *ic)
{
	const unsigned char *p;
	return sbx_http_peek_guest(ic->http, &p) > 0 ||
	       (ic->gtls && sbx_tlsio_net_pending(ic->gtls) > 0);
}

enum px_pump_result px_icpt_pump(struct sbx_proxy *px, struct px_conn *c, uint8_t *buf,
				 struct px_iter_grant *grant)
{
	struct px_icpt *ic = c->icpt;
	int fail = 0;
	(void)px;
	grant->n = 0;
	for (int round = 0; round < 64 && !fail; round++) {
		int progress = take_guest(ic, grant);
		if (ic->gtls)
			progress |= guest_plain_to_http(ic, &fail);
		progress |= http_to_upstream(ic, &fail);
		if (ic->utls && !fail) {
			if (c->open && !ic->up_handshake_done)
				ic->up_handshake_done = sbx_tlsio_handshake(ic->utls) == 1;
			progress |= upstream_ciphertext(ic, &fail);
		}
		if (!fail)
			progress |= upstream_in(ic, &fail);
		if (ic->utls && !fail)
			progress |= upstream_plain_to_http(ic);
		if (!fail)
			progress |= to_guest(ic, buf, &fail);
		if (!progress)
			break;
	}
	if (fail == 1)
		return PUMP_ABORT;
	if (fail == 2) { /* upstream broke: the HTTP side answers 502 if it can */
		if (!ic->resp_eof_fed) {
			sbx_http_upstream_failed(ic->http, "the upstream connection failed");
			ic->resp_eof_fed = 1;
			fail = 0;
			to_guest(ic, buf, &fail);
		}
		return guest_output_pending(ic) ? PUMP_OK : PUMP_CLOSE;
	}
	unsigned f = sbx_http_flags(ic->http);
	if ((f & SBX_HTTP_CLOSE_UPSTREAM) && c->fd >= 0 && !ic->sock_shut) {
		shutdown(c->fd, SHUT_RDWR);
		ic->sock_shut = 1;
	}
	if ((f & SBX_HTTP_CLOSE_GUEST) && !guest_output_pending(ic)) {
		if (ic->gtls)
			sbx_tlsio_shutdown(ic->gtls), to_guest(ic, buf, &fail);
		return PUMP_CLOSE;
	}
	/* both sides finished and everything delivered */
	if (ic->resp_eof_fed && ic->guest_eof_fed == 1 && !guest_output_pending(ic))
		return PUMP_CLOSE;
	if (ic->resp_eof_fed && !guest_output_pending(ic) && (f & SBX_HTTP_PASSTHROUGH))
		return PUMP_CLOSE;
	return PUMP_OK;
}

short px_icpt_events(const struct px_conn *c)
{
	const struct px_icpt *ic = c->icpt;
	if (c->connecting)
		return POLLOUT;
	short ev = 0;
	if (ic->sin_off == ic->sin_len && !ic->sock_eof)
		ev |= POLLIN;
	if (ic->want_write)
		ev |= POLLOUT;
	return ev;
}

const char *sbx_proxy_ca_pem(const struct sbx_proxy *px)
{
	return px->ca ? sbx_tlsca_pem(px->ca) : NULL;
}

size_t sbx_proxy_secret_count(const struct sbx_proxy *px)
{
	return px->n_secrets;
}

void sbx_proxy_secret_env(const struct sbx_proxy *px, size_t i, const char **name,
			  const char **placeholder)
{
	*name = px->secrets[i].name;
	*placeholder = px->secrets[i].placeholder;
}
