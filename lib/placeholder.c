/* Secret placeholders (format in placeholder.h). */
#include "placeholder.h"

#include <stdint.h>
#include <string.h>

#include "util.h"

int sbx_secret_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > SBX_SECRET_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		int alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return 0;
	}
	return 1;
}

/* 20 random bytes -> 32 base32 characters (5 bits each). */
static void base32_lower(const uint8_t in[20], char out[32])
{
	static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
	for (int i = 0; i < 32; i++) {
		int bit = i * 5, byte = bit / 8, shift = bit % 8;
		unsigned v = (unsigned)in[byte] << 8 | (byte + 1 < 20 ? in[byte + 1] : 0);
		out[i] = alphabet[(v >> (11 - shift)) & 31];
	}
}

int sbx_placeholder_make(const char *name, char *out, size_t cap)
{
	if (!sbx_secret_name_valid(name) || cap < SBX_PLACEHOLDER_MAX)
		return -1;
	uint8_t rnd[20];
	if (sbx_random(rnd, sizeof rnd) != 0)
		return -1;
	size_t n = strlen(name), at = 0;
	memcpy(out, "SBX_PH_", 7);
	at = 7;
	memcpy(out + at, name, n);
	at += n;
	out[at++] = '_';
	base32_lower(rnd, out + at);
	at += SBX_PLACEHOLDER_RANDOM_CHARS;
	out[at] = '\0';
	sbx_wipe(rnd, sizeof rnd);
	return (int)at;
}
