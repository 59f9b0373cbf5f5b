/* Addresses as the egress policy sees them: whether an address is the
 * host's own (never reachable unless an IP pattern names it), and which
 * names the proxy's own DNS answers gave for an address (the only way a
 * connection is tied to a host name). */
#ifndef SBX_ADDRMAP_H
#define SBX_ADDRMAP_H

#include <stddef.h>
#include <stdint.h>

/* Loopback, unspecified, link-local (the metadata address included),
 * multicast, broadcast, IPv4-mapped forms of those, and every address on a
 * host interface (re-read at most every 2 s). family: AF_INET/AF_INET6. */
int sbx_addr_is_host_local(int family, const uint8_t *addr);

/* "a.b.c.d" or "2001:db8::1" into out (>= 46 bytes). */
void sbx_addr_format(int family, const uint8_t *addr, char *out, size_t cap);

#define SBX_ADDRMAP_MAX 4096u

struct sbx_addrmap_entry {
	int family;
	uint8_t addr[16];
	char name[254];
};

/* A bounded record of (address, name) pairs from DNS answers; the oldest
 * are forgotten first. Not locked: one thread (the proxy's) owns it. */
struct sbx_addrmap {
	struct sbx_addrmap_entry *v;
	size_t n, next;
};

void sbx_addrmap_add(struct sbx_addrmap *m, int family, const uint8_t *addr, const char *name);
/* Was this address given out for this name? */
int sbx_addrmap_has(const struct sbx_addrmap *m, int family, const uint8_t *addr,
		    const char *name);
/* Iterate the names given for an address: start with *i = 0; returns the
 * next name or NULL. */
const char *sbx_addrmap_names(const struct sbx_addrmap *m, int family, const uint8_t *addr,
			      size_t *i);
void sbx_addrmap_free(struct sbx_addrmap *m);

#endif
