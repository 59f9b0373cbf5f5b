/* Validation of caller options, before anything is allocated. */
#ifndef SBX_OPTIONS_H
#define SBX_OPTIONS_H

#include "sandbox.h"

/* Copy caller options of any supported version into a full current
 * struct (later fields at their defaults). Returns 0 or SANDBOX_E_VERSION. */
int sbx_options_upgrade(const sandbox_options_t *in, sandbox_options_t *out);
/* Returns 0 or an error code with a message naming the bad option. `o`
 * must come from sbx_options_upgrade. */
int sbx_options_validate(const sandbox_options_t *o);
/* Validate dns_servers entries; with out non-NULL also write them as the
 * comma-separated "ip:port" list c-ares takes. Returns 0 or SANDBOX_E_INVAL. */
int sbx_dns_servers_validate(const char *const *list, char *out, size_t cap);
int sbx_exec_options_validate(const sandbox_exec_options_t *o);
/* argv: non-NULL, non-empty, argv[0] non-empty, bounded. */
int sbx_argv_validate(const char *const *argv);
/* "NAME=VALUE" list; `what` names the option in messages. */
int sbx_env_validate(const char *const *env, const char *what);
int sbx_env_name_valid(const char *s, size_t n);

#define SBX_MAX_MEMORY_MB 65536u
#define SBX_MIN_MEMORY_MB 64u
#define SBX_MAX_VCPUS 64u
#define SBX_MAX_METADATA 64u
#define SBX_MAX_STRING 4096u
#define SBX_MAX_DNS_SERVERS 8u
/* Volumes: one PCI slot each on the root bus (slots 0x04..0x13). */
#define SBX_MAX_VOLUMES 16u

#endif
