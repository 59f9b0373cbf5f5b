/* DNS query decoding and reply encoding: see dnsmsg.h. Every read is
 * bounds-checked against the message length: the bytes come from the
 * guest. */
#include "dnsmsg.h"

#include <ctype.h>
#include <string.h>
#include <sys/socket.h>

#define HDR 12
#define QR 0x8000u
#define OPCODE(f) (((f) >> 11) & 0xfu)
#define RD 0x0100u
#define RA 0x0080u

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static int name_char_ok(uint8_t c)
{
	return isalnum(c) || c == '-' || c == '_';
}

/* Decode the question name at *off into q->name. Returns 0 or -1. */
static int decode_name(const uint8_t *msg, size_t len, size_t *off, struct sbx_dns_query *q)
{
	size_t o = *off, n = 0;
	for (;;) {
		if (o >= len)
			return -1;
		uint8_t l = msg[o++];
		if (l == 0)
			break;
		if (l & 0xc0)
			return -1; /* compression or extended label types */
		if (o + l > len || n + l + 1 >= sizeof q->name)
			return -1;
		if (n)
			q->name[n++] = '.';
		for (uint8_t i = 0; i < l; i++) {
			uint8_t c = msg[o + i];
			if (!name_char_ok(c))
				q->odd_name = 1;
			q->name[n++] = (char)tolower(c);
		}
		o += l;
	}
	q->name[n] = '\0';
	*off = o;
	return 0;
}

int sbx_dns_query_decode(const uint8_t *msg, size_t len, struct sbx_dns_query *q)
{
	memset(q, 0, sizeof *q);
	if (len < HDR)
		return -1;
	q->id = get16(msg);
	q->flags = get16(msg + 2);
	if (q->flags & QR)
		return -1; /* a response: nothing sensible to say */
	if (OPCODE(q->flags) != 0)
		return SBX_DNS_NOTIMP;
	/* exactly one question; answers/authority must be empty, one OPT
	 * record (EDNS) in additional is tolerated and ignored */
	if (get16(msg + 4) != 1 || get16(msg + 6) || get16(msg + 8) || get16(msg + 10) > 1)
		return SBX_DNS_FORMERR;
	size_t off = HDR;
	if (decode_name(msg, len, &off, q) || off + 4 > len)
		return SBX_DNS_FORMERR;
	q->qtype = get16(msg + off);
	q->qclass = get16(msg + off + 2);
	q->qend = off + 4;
	return 0;
}

static size_t put_answer(uint8_t *out, size_t o, size_t cap, const struct sbx_dns_query *q,
			 const struct sbx_dns_addr *a, uint32_t ttl)
{
	size_t alen = a->family == AF_INET ? 4 : 16;
	if (o + 12 + alen > cap)
		return 0;
	put16(out + o, 0xc000 | HDR); /* the name: a pointer to the question */
	put16(out + o + 2, q->qtype);
	put16(out + o + 4, SBX_DNS_CLASS_IN);
	put16(out + o + 6, (uint16_t)(ttl >> 16));
	put16(out + o + 8, (uint16_t)ttl);
	put16(out + o + 10, (uint16_t)alen);
	memcpy(out + o + 12, a->addr, alen);
	return o + 12 + alen;
}

size_t sbx_dns_reply_encode(const uint8_t *query, const struct sbx_dns_query *q, int rcode,
			    const struct sbx_dns_addr *addrs, size_t n, uint32_t ttl, uint8_t *out,
			    size_t cap)
{
	size_t qlen = q->qend ? q->qend - HDR : 0;
	if (cap < HDR + qlen)
		return 0;
	put16(out, q->id);
	put16(out + 2, (uint16_t)(QR | (q->flags & RD) | RA | (rcode & 0xf)));
	put16(out + 4, qlen ? 1 : 0);
	memset(out + 6, 0, 6);
	memcpy(out + HDR, query + HDR, qlen);
	size_t o = HDR + qlen;
	if (rcode != SBX_DNS_NOERROR || !qlen)
		return o;
	uint16_t count = 0;
	int want = q->qtype == SBX_DNS_TYPE_A ? AF_INET : q->qtype == SBX_DNS_TYPE_AAAA ? AF_INET6 : 0;
	for (size_t i = 0; i < n && want; i++) {
		if (addrs[i].family != want)
			continue;
		size_t next = put_answer(out, o, cap, q, &addrs[i], ttl);
		if (!next)
			break; /* the rest does not fit: fewer answers is still valid */
		o = next;
		count++;
	}
	put16(out + 6, count);
	return o;
}
