/* Secret placeholders: what the guest sees instead of a secret's value.
 *
 * Format: "SBX_PH_" NAME "_" 32 characters of lowercase RFC 4648 base32
 * (a-z, 2-7), i.e. 160 random bits from the kernel CSPRNG, fresh per
 * sandbox and secret. NAME is the secret's environment variable name
 * ([A-Za-z_][A-Za-z0-9_]*, at most SBX_SECRET_NAME_MAX characters). The
 * alphabet needs no escaping in URLs, headers, JSON or shell, so a
 * placeholder survives every layer a client puts it through unchanged, and
 * 160 bits make a chance occurrence in real traffic impossible in practice. */
#ifndef SBX_PLACEHOLDER_H
#define SBX_PLACEHOLDER_H

#include <stddef.h>

#define SBX_SECRET_NAME_MAX 64
#define SBX_PLACEHOLDER_RANDOM_CHARS 32
/* "SBX_PH_" + name + "_" + random + NUL */
#define SBX_PLACEHOLDER_MAX (7 + SBX_SECRET_NAME_MAX + 1 + SBX_PLACEHOLDER_RANDOM_CHARS + 1)

/* Is name a valid environment variable name for a secret? */
int sbx_secret_name_valid(const char *name);
/* Write a fresh placeholder for secret `name` into out (cap >=
 * SBX_PLACEHOLDER_MAX). Returns its length, or -1 (invalid name, small
 * buffer, no randomness). Thread-safe. */
int sbx_placeholder_make(const char *name, char *out, size_t cap);

#endif
