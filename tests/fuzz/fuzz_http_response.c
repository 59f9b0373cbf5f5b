/* libFuzzer target: the HTTP response path (upstream -> guest) with echo
 * protection. Input: a control byte choosing the request(s) the responses
 * answer (GET/HEAD, HTTP/1.0/1.1, websocket upgrade, pipelined pair) and
 * the feed step, then upstream bytes, then end of stream. Invariants: no
 * crash or over-read, bounded buffers, and no real secret value reaches
 * the guest unless the body was declared compressed (the documented
 * limit) or the connection was upgraded to passthrough, nor the base64
 * of Basic credentials carrying one. */
#include "fuzz_http_common.h"

static const char *const requests[] = {
    "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
    "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
    "GET / HTTP/1.0\r\nHost: h\r\n\r\n",
    "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /b HTTP/1.1\r\nHost: h\r\n\r\n",
    "POST /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    /* Basic credentials "u:" PH0: upstream gets "u:" VAL0 encoded (REAL_B64) */
    "GET /b HTTP/1.1\r\nHost: h\r\nAuthorization: Basic "
    "dTpTQlhfUEhfS0VZX2FhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh\r\n\r\n",
};
#define REAL_B64 "dTpzay1SRUFMLTdmM2E="

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct fz f;
	fz_init(&f, 3);
	const char *req = requests[data[0] % (sizeof requests / sizeof *requests)];
	fz_feed(&f, 1, (const uint8_t *)req, strlen(req), 4096);
	size_t step = 1 + (data[1] & 0x3f) * (data[0] & 0x80 ? 97 : 1);
	const uint8_t *in = data + 2;
	size_t n = size - 2;
	fz_feed(&f, 0, in, n, step);
	if (data[0] & 0x40)
		fz_feed(&f, 1, (const uint8_t *)"abc", 3, 1);
	sbx_http_response_eof(f.c);
	fz_drain(&f);
	int exempt = (sbx_http_flags(f.c) & SBX_HTTP_PASSTHROUGH) || memmem(in, n, "ncoding", 7) ||
		     memmem(in, n, "NCODING", 7);
	if (!exempt) {
		/* case-insensitive header names: look for any "encoding" */
		for (size_t i = 0; i + 8 <= n && !exempt; i++)
			exempt = strncasecmp((const char *)in + i, "encoding", 8) == 0;
	}
	int basic = data[0] % (sizeof requests / sizeof *requests) == 6;
	if (!exempt && (fz_contains(&f.guest, VAL0) || fz_contains(&f.guest, VAL1) ||
			(basic && fz_contains(&f.guest, REAL_B64))))
		abort();
	if (basic && !fz_contains(&f.up, REAL_B64))
		abort(); /* the substitution itself must have happened */
	fz_free(&f);
	return 0;
}
