/* libFuzzer target: the SNI / Host sniffer over a connection's first bytes
 * from the guest (TLS ClientHello records, HTTP request heads via
 * http-parser). Every prefix is sniffed, as the proxy does while bytes
 * arrive. Must never crash or over-read; the name is always terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sniff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t step = size > 64 ? size / 16 : 1;
	for (size_t n = 0; n <= size; n += step) {
		struct sbx_sniff s;
		sbx_sniff(data, n, &s);
		if (strnlen(s.name, sizeof s.name) >= sizeof s.name)
			abort();
		if (s.has_name && s.kind != SBX_SNIFF_HTTP && s.kind != SBX_SNIFF_TLS &&
		    s.kind != SBX_SNIFF_BAD)
			abort();
	}
	struct sbx_sniff s;
	sbx_sniff(data, size, &s);
	return 0;
}
