/* libFuzzer target: the HTTP request path (guest -> upstream) including
 * secret substitution. Input: a control byte (which secrets the decision
 * allows, blocking, misdirected blocking, feed step), then guest bytes.
 * Invariants: no crash or over-read, bounded buffers, a secret that is not
 * allowed never reaches upstream, no real value ever reaches the guest or
 * an event. */
#include "fuzz_http_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct fz f;
	fz_init(&f, data[0]);
	size_t step = 1 + (data[1] & 0x3f) * (data[0] & 0x40 ? 97 : 1);
	const uint8_t *in = data + 2;
	size_t n = size - 2;
	fz_set_input(in, n);
	fz_feed(&f, 1, in, n, step);
	sbx_http_request_eof(f.c);
	fz_drain(&f);
	/* a canned answer so that the response path runs after the requests */
	static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nokok";
	for (int i = 0; i < 3; i++)
		fz_feed(&f, 0, (const uint8_t *)resp, sizeof resp - 1, 13);
	if (!(f.allow & 1) && !fz_input_contains(in, n, VAL0) && fz_contains(&f.up, VAL0))
		abort();
	if (!(f.allow & 2) && !fz_input_contains(in, n, VAL1) && fz_contains(&f.up, VAL1))
		abort();
	if (fz_contains(&f.guest, VAL0) || fz_contains(&f.guest, VAL1))
		abort();
	fz_free(&f);
	return 0;
}
