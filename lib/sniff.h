/* What a guest connection is for, from its first bytes: the host name in
 * a TLS ClientHello's SNI, or in an HTTP request's Host header. The proxy
 * holds the guest's bytes until this says what they are, so a name it does
 * not allow never reaches the upstream. */
#ifndef SBX_SNIFF_H
#define SBX_SNIFF_H

#include <stddef.h>
#include <stdint.h>

enum sbx_sniff_kind {
	SBX_SNIFF_MORE = 0, /* not enough bytes to tell yet */
	SBX_SNIFF_HTTP,	    /* an HTTP request head: name = Host (no port) */
	SBX_SNIFF_TLS,	    /* a TLS ClientHello: name = SNI ("" if none) */
	SBX_SNIFF_OTHER,    /* neither: no name to check */
	SBX_SNIFF_BAD,	    /* looks like HTTP or TLS but is malformed or too big */
};

/* Heads and ClientHellos larger than this are BAD. */
#define SBX_SNIFF_MAX 65536u

struct sbx_sniff {
	enum sbx_sniff_kind kind;
	char name[256]; /* lowercase, as sent (not validated as a host name) */
	int has_name;
	char why[96]; /* for BAD */
};

/* Look at the first len bytes the guest sent (the whole prefix, every
 * time: this is called again with more bytes while it says MORE). */
void sbx_sniff(const uint8_t *p, size_t len, struct sbx_sniff *out);

#endif
