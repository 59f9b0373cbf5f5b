/* libFuzzer target: DNS queries from the guest (sbx_dns_query_decode) and
 * the reply built for them, with addresses taken from the input too. Must
 * never crash or over-read, and a reply must fit its buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dnsmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sbx_dns_query q;
	int rc = sbx_dns_query_decode(data, size, &q);
	if (rc < 0)
		return 0;
	if (strlen(q.name) >= sizeof q.name || q.qend > size)
		abort();
	struct sbx_dns_addr a[4];
	for (int i = 0; i < 4; i++) {
		a[i].family = i & 1 ? AF_INET6 : AF_INET;
		memset(a[i].addr, 0x42 + i, 16);
	}
	uint8_t out[512];
	size_t n = sbx_dns_reply_encode(data, &q, rc ? rc : 0, a, 4, 60, out, sizeof out);
	if (n > sizeof out)
		abort();
	/* what we send back decodes as a response to the same id */
	if (n >= 12 && ((out[0] << 8 | out[1]) != q.id || !(out[2] & 0x80)))
		abort();
	return 0;
}
