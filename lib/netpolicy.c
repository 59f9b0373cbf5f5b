/* allow_net patterns: see netpolicy.h. Parsing is strict: anything that is
 * not exactly one of the documented forms is an error naming the pattern,
 * because a policy that silently means something else is worse than none. */
#include "netpolicy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "error.h"
#include "sandbox.h"

#define FAIL(...) (snprintf(why, cap, __VA_ARGS__), -1)

static int parse_port(const char *s, unsigned *port, char *why, size_t cap)
{
	if (!*s || strlen(s) > 5 || strspn(s, "0123456789") != strlen(s) || s[0] == '0')
		return FAIL("port '%s' is not a number 1..65535", s);
	unsigned long v = strtoul(s, NULL, 10);
	if (v < 1 || v > 65535)
		return FAIL("port %lu is outside 1..65535", v);
	*port = (unsigned)v;
	return 0;
}

/* Lowercase a host name into out, without a trailing dot, and check its
 * labels: letters, digits, '-' and '_', 1..63 each, no '-' at either end,
 * 253 in all, and a last label that is not all digits. */
int sbx_host_normalize(const char *in, size_t len, char *out, char *why, size_t cap)
{
	if (len && in[len - 1] == '.')
		len--;
	if (len == 0 || len > 253)
		return FAIL("host name is empty or longer than 253 characters");
	size_t label = 0;
	int all_digits = 1;
	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? in[i] : '.';
		if (c == '.') {
			if (label == 0 || label > 63)
				return FAIL("empty or over-long label in host name");
			if (in[i - 1] == '-' || in[i - label] == '-')
				return FAIL("a label starts or ends with '-'");
			if (i == len && all_digits)
				return FAIL(
				    "the last label is all digits (not an IPv4 address either)");
			if (i < len)
				out[i] = '.';
			label = 0;
			all_digits = 1;
			continue;
		}
		if (!isalnum((unsigned char)c) && c != '-' && c != '_')
			return FAIL("character '%c' is not allowed in a host name", c);
		if (!isdigit((unsigned char)c))
			all_digits = 0;
		out[i] = (char)tolower((unsigned char)c);
		label++;
	}
	out[len] = '\0';
	return 0;
}

static int parse_ipv6(const char *text, struct sbx_pattern *p, char *why, size_t cap)
{
	const char *close = strchr(text, ']');
	if (!close)
		return FAIL("'[' without ']'");
	char addr[64];
	size_t n = (size_t)(close - text - 1);
	if (n == 0 || n >= sizeof addr)
		return FAIL("empty or over-long IPv6 address");
	memcpy(addr, text + 1, n);
	addr[n] = '\0';
	if (inet_pton(AF_INET6, addr, p->addr) != 1)
		return FAIL("'%s' is not an IPv6 address", addr);
	p->kind = SBX_PAT_IPV6;
	if (close[1] == '\0')
		return 0;
	if (close[1] != ':')
		return FAIL("unexpected text after ']'");
	return parse_port(close + 2, &p->port, why, cap);
}

/* An IPv4 literal is accepted only in its canonical dotted form, so
 * "010.0.0.1" cannot mean two things to two parsers. */
static int try_ipv4(const char *host, struct sbx_pattern *p)
{
	struct in_addr a;
	if (inet_pton(AF_INET, host, &a) != 1)
		return 0;
	char back[INET_ADDRSTRLEN];
	if (!inet_ntop(AF_INET, &a, back, sizeof back) || strcmp(back, host))
		return 0;
	memcpy(p->addr, &a, 4);
	p->kind = SBX_PAT_IPV4;
	return 1;
}

int sbx_pattern_parse(const char *text, struct sbx_pattern *p, char *why, size_t cap)
{
	memset(p, 0, sizeof *p);
	if (!text || !*text)
		return FAIL("empty pattern");
	if (strlen(text) > 300)
		return FAIL("pattern longer than 300 characters");
	if (text[0] == '[')
		return parse_ipv6(text, p, why, cap);
	const char *colon = strchr(text, ':');
	if (colon && strchr(colon + 1, ':'))
		return FAIL("IPv6 addresses must be written in brackets, e.g. [2001:db8::1]");
	size_t hlen = colon ? (size_t)(colon - text) : strlen(text);
	if (colon && parse_port(colon + 1, &p->port, why, cap))
		return -1;
	char host[301];
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	if (try_ipv4(host, p))
		return 0;
	if (host[0] == '*') {
		if (host[1] != '.')
			return FAIL("'*' must be a whole first label, as in *.example.com");
		p->kind = SBX_PAT_WILDCARD;
		if (strchr(host + 2, '*'))
			return FAIL("only one leading '*.' is allowed");
		return sbx_host_normalize(host + 2, hlen - 2, p->host, why, cap);
	}
	if (strchr(host, '*'))
		return FAIL("'*' is only allowed as a whole first label, as in *.example.com");
	if (strspn(host, "0123456789.") == hlen)
		return FAIL("'%s' is not a valid IPv4 address", host);
	p->kind = SBX_PAT_HOST;
	return sbx_host_normalize(host, hlen, p->host, why, cap);
}

int sbx_netpolicy_parse(const char *const *list, const char *what, struct sbx_netpolicy *out)
{
	out->v = NULL;
	out->n = 0;
	size_t n = 0;
	while (list && list[n])
		n++;
	if (n > 4096)
		return sbx_fail(SANDBOX_E_INVAL, "%s: more than 4096 patterns", what);
	if (n && !(out->v = calloc(n, sizeof *out->v)))
		return sbx_fail(SANDBOX_E_NOMEM, "%s", what);
	for (size_t i = 0; i < n; i++) {
		char why[160];
		if (sbx_pattern_parse(list[i], &out->v[i], why, sizeof why)) {
			sbx_netpolicy_free(out);
			return sbx_fail(SANDBOX_E_INVAL,
					"%s[%zu] '%.100s' is not a valid pattern: %s", what, i,
					list[i], why);
		}
	}
	out->n = n;
	return 0;
}

void sbx_netpolicy_free(struct sbx_netpolicy *p)
{
	free(p->v);
	p->v = NULL;
	p->n = 0;
}

static int port_ok(const struct sbx_pattern *pat, unsigned port)
{
	return pat->port == 0 || port == 0 || pat->port == port;
}

int sbx_netpolicy_allows_name(const struct sbx_netpolicy *p, const char *name, unsigned port)
{
	char norm[254], why[8];
	if (!name || sbx_host_normalize(name, strlen(name), norm, why, sizeof why))
		return 0;
	size_t nl = strlen(norm);
	for (size_t i = 0; i < p->n; i++) {
		const struct sbx_pattern *pat = &p->v[i];
		if (!port_ok(pat, port))
			continue;
		if (pat->kind == SBX_PAT_HOST && !strcmp(pat->host, norm))
			return 1;
		if (pat->kind == SBX_PAT_WILDCARD) {
			size_t sl = strlen(pat->host);
			if (nl > sl + 1 && norm[nl - sl - 1] == '.' &&
			    !strcmp(norm + nl - sl, pat->host))
				return 1;
		}
	}
	return 0;
}

int sbx_netpolicy_allows_addr(const struct sbx_netpolicy *p, int family, const void *addr,
			      unsigned port)
{
	for (size_t i = 0; i < p->n; i++) {
		const struct sbx_pattern *pat = &p->v[i];
		if (!port_ok(pat, port))
			continue;
		if (family == AF_INET && pat->kind == SBX_PAT_IPV4 && !memcmp(pat->addr, addr, 4))
			return 1;
		if (family == AF_INET6 && pat->kind == SBX_PAT_IPV6 && !memcmp(pat->addr, addr, 16))
			return 1;
	}
	return 0;
}
