/* allow_net patterns (DESIGN.md's table): parsing and matching.
 *   example.com        exact host, any port
 *   example.com:443    exact host, that port
 *   *.example.com      any subdomain (not the apex), optionally :port
 *   192.0.2.1          exact IPv4, optionally :port
 *   [2001:db8::1]      exact IPv6, optionally :port
 * Names match case-insensitively and ignore a trailing dot. Secrets' host
 * lists use the same syntax. */
#ifndef SBX_NETPOLICY_H
#define SBX_NETPOLICY_H

#include <stddef.h>
#include <stdint.h>

enum sbx_pattern_kind { SBX_PAT_HOST, SBX_PAT_WILDCARD, SBX_PAT_IPV4, SBX_PAT_IPV6 };

struct sbx_pattern {
	enum sbx_pattern_kind kind;
	char host[254];	  /* lowercase, no trailing dot; for WILDCARD the suffix */
	uint8_t addr[16]; /* IPV4: first 4 bytes */
	unsigned port;	  /* 0: any port */
};

struct sbx_netpolicy {
	struct sbx_pattern *v;
	size_t n;
};

/* Lowercase a host name into out (>= 254 bytes), without a trailing dot,
 * checking its syntax. Returns 0, or -1 with a reason in why. */
int sbx_host_normalize(const char *in, size_t len, char *out, char *why, size_t cap);
/* Parse one pattern. Returns 0, or -1 with a reason in why. */
int sbx_pattern_parse(const char *text, struct sbx_pattern *out, char *why, size_t cap);
/* Parse a NULL-terminated list; `what` names the option in the message
 * (e.g. "allow_net"). Returns 0 or SANDBOX_E_INVAL / SANDBOX_E_NOMEM. */
int sbx_netpolicy_parse(const char *const *list, const char *what, struct sbx_netpolicy *out);
void sbx_netpolicy_free(struct sbx_netpolicy *p);
/* Does a pattern allow this name (port 0: any port, as for DNS)? */
int sbx_netpolicy_allows_name(const struct sbx_netpolicy *p, const char *name, unsigned port);
/* Does an IP pattern allow this address (family AF_INET / AF_INET6)? */
int sbx_netpolicy_allows_addr(const struct sbx_netpolicy *p, int family, const void *addr,
			      unsigned port);

#endif
