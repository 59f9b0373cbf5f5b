/* DNS messages from the guest: decoding one query, encoding the answer the
 * proxy decided on. The guest never sees an upstream message: every reply
 * is built here from the policy's verdict and the addresses c-ares found,
 * so nothing but A/AAAA records (or an error code) can reach it. */
#ifndef SBX_DNSMSG_H
#define SBX_DNSMSG_H

#include <stddef.h>
#include <stdint.h>

#define SBX_DNS_TYPE_A 1
#define SBX_DNS_TYPE_AAAA 28
#define SBX_DNS_CLASS_IN 1

enum sbx_dns_rcode {
	SBX_DNS_NOERROR = 0,
	SBX_DNS_FORMERR = 1,
	SBX_DNS_SERVFAIL = 2,
	SBX_DNS_NXDOMAIN = 3,
	SBX_DNS_NOTIMP = 4,
	SBX_DNS_REFUSED = 5,
};

struct sbx_dns_query {
	uint16_t id;
	uint16_t flags; /* as received */
	uint16_t qtype, qclass;
	char name[256]; /* lowercase, dotted, no trailing dot; "" for the root */
	/* The name has bytes outside letters, digits, '-' and '_': it can be
	 * nothing the policy allows, and is never sent upstream. */
	int odd_name;
	size_t qend;	/* offset just past the question, for copying it */
};

/* Decode a query from the guest (len bytes). Returns 0; or
 * SBX_DNS_FORMERR / SBX_DNS_NOTIMP when a reply with that code and the
 * same id can be made (q->id is set); or -1 when the message is too broken
 * to answer at all. Accepts exactly one question, opcode QUERY, QR clear;
 * compression pointers are refused in a query (no client needs them). */
int sbx_dns_query_decode(const uint8_t *msg, size_t len, struct sbx_dns_query *q);

struct sbx_dns_addr {
	int family; /* AF_INET / AF_INET6 */
	uint8_t addr[16];
};

/* Encode the reply to q: rcode, and for NOERROR the n addresses (only the
 * ones matching q->qtype are written) with the given TTL. When the query
 * could not be decoded past its header (q->qend == 0), the question section
 * is left empty. Returns the length written, or 0 if cap is too small. */
size_t sbx_dns_reply_encode(const uint8_t *query, const struct sbx_dns_query *q, int rcode,
			    const struct sbx_dns_addr *addrs, size_t n, uint32_t ttl, uint8_t *out,
			    size_t cap);

#endif
