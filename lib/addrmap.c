/* Host-local address classification and the address -> name record; see
 * addrmap.h. */
#include "addrmap.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util.h"

static int v4_is_local(const uint8_t *a)
{
	return a[0] == 0 ||			/* 0.0.0.0/8 */
	       a[0] == 127 ||			/* loopback */
	       (a[0] == 169 && a[1] == 254) ||	/* link-local, metadata */
	       a[0] >= 224;			/* multicast, reserved, broadcast */
}

static int v6_is_local(const uint8_t *a)
{
	static const uint8_t zero[16];
	if (!memcmp(a, zero, 15) && (a[15] == 0 || a[15] == 1))
		return 1; /* :: and ::1 */
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return 1; /* fe80::/10 */
	if (a[0] == 0xff)
		return 1; /* multicast */
	return 0;
}

/* The host's interface addresses, cached: getifaddrs is a netlink dump. */
#define IFADDR_MAX 256
static pthread_mutex_t if_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	int family;
	uint8_t addr[16];
} if_addrs[IFADDR_MAX];
static size_t if_count;
static int64_t if_read_ms;

static void refresh_ifaddrs_locked(void)
{
	int64_t now = sbx_now_ms();
	if (if_read_ms && now - if_read_ms < 2000)
		return;
	struct ifaddrs *list;
	if (getifaddrs(&list) != 0)
		return; /* keep the old list; loopback etc. are caught anyway */
	if_count = 0;
	for (struct ifaddrs *i = list; i && if_count < IFADDR_MAX; i = i->ifa_next) {
		if (!i->ifa_addr)
			continue;
		if (i->ifa_addr->sa_family == AF_INET) {
			if_addrs[if_count].family = AF_INET;
			memcpy(if_addrs[if_count++].addr,
			       &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, 4);
		} else if (i->ifa_addr->sa_family == AF_INET6) {
			if_addrs[if_count].family = AF_INET6;
			memcpy(if_addrs[if_count++].addr,
			       &((struct sockaddr_in6 *)(void *)i->ifa_addr)->sin6_addr, 16);
		}
	}
	freeifaddrs(list);
	if_read_ms = now;
}

static int is_interface_addr(int family, const uint8_t *addr)
{
	pthread_mutex_lock(&if_lock);
	refresh_ifaddrs_locked();
	int hit = 0;
	for (size_t i = 0; i < if_count && !hit; i++)
		hit = if_addrs[i].family == family &&
		      !memcmp(if_addrs[i].addr, addr, family == AF_INET ? 4 : 16);
	pthread_mutex_unlock(&if_lock);
	return hit;
}

int sbx_addr_is_host_local(int family, const uint8_t *addr)
{
	if (family == AF_INET6) {
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		static const uint8_t compat[12];
		if (!memcmp(addr, mapped, 12) || !memcmp(addr, compat, 12))
			return v4_is_local(addr + 12) || v6_is_local(addr) ||
			       is_interface_addr(AF_INET, addr + 12);
		if (v6_is_local(addr))
			return 1;
	} else if (v4_is_local(addr)) {
		return 1;
	}
	return is_interface_addr(family, addr);
}

void sbx_addr_format(int family, const uint8_t *addr, char *out, size_t cap)
{
	if (!inet_ntop(family, addr, out, (socklen_t)cap))
		snprintf(out, cap, "?");
}

static size_t alen(int family)
{
	return family == AF_INET ? 4 : 16;
}

static int same(const struct sbx_addrmap_entry *e, int family, const uint8_t *addr)
{
	return e->family == family && !memcmp(e->addr, addr, alen(family));
}

void sbx_addrmap_add(struct sbx_addrmap *m, int family, const uint8_t *addr, const char *name)
{
	if (sbx_addrmap_has(m, family, addr, name))
		return;
	if (!m->v && !(m->v = calloc(SBX_ADDRMAP_MAX, sizeof *m->v)))
		return; /* unrecorded: connections to it are treated as unknown */
	struct sbx_addrmap_entry *e = &m->v[m->next];
	e->family = family;
	memset(e->addr, 0, sizeof e->addr);
	memcpy(e->addr, addr, alen(family));
	snprintf(e->name, sizeof e->name, "%s", name);
	m->next = (m->next + 1) % SBX_ADDRMAP_MAX;
	if (m->n < SBX_ADDRMAP_MAX)
		m->n++;
}

int sbx_addrmap_has(const struct sbx_addrmap *m, int family, const uint8_t *addr,
		    const char *name)
{
	for (size_t i = 0; i < m->n; i++)
		if (same(&m->v[i], family, addr) && !strcmp(m->v[i].name, name))
			return 1;
	return 0;
}

const char *sbx_addrmap_names(const struct sbx_addrmap *m, int family, const uint8_t *addr,
			      size_t *i)
{
	for (; *i < m->n; (*i)++)
		if (same(&m->v[*i], family, addr))
			return m->v[(*i)++].name;
	return NULL;
}

void sbx_addrmap_free(struct sbx_addrmap *m)
{
	free(m->v);
	memset(m, 0, sizeof *m);
}
