/* Guest network set-up at boot (PID 1 only; doc/guest-network.md): kernel
 * modules, dummy0 with an IPv4 and an IPv6 address and the default routes,
 * /etc/resolv.conf, and the nftables ruleset that sends every TCP
 * connection to the agent's transparent listener and every DNS query to
 * its stub. There is no network card: without these rules the guest has
 * no network at all. */
#ifndef AGENT_NETUP_H
#define AGENT_NETUP_H

#include <stdint.h>

#define NETUP_IF "dummy0"
/* Private ranges (not documentation ranges: tests use those as upstreams). */
#define NETUP_ADDR4 "10.0.2.15"
#define NETUP_PREFIX4 24
#define NETUP_ADDR6 "fd5b:5a4e:c0de::15"
#define NETUP_PREFIX6 64
/* Not local to the guest, so queries to it are redirected like any other
 * DNS traffic. */
#define NETUP_NAMESERVER "10.0.2.3"

/* Bring networking up, before any command runs. Returns 0, or -1 after
 * logging what failed (the guest then has no network; commands still
 * run). tcp_port/dns_port: where the agent listens. Durations in ms are
 * stored in ms[]: total, modules, links and resolv.conf, nft. */
int netup(uint16_t tcp_port, uint16_t dns_port, unsigned ms[4]);

#endif
