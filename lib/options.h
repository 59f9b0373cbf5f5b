/* Validation of caller options, before anything is allocated. */
#ifndef SBX_OPTIONS_H
#define SBX_OPTIONS_H

#include "sandbox.h"

/* Returns 0 or an error code with a message naming the bad option. */
int sbx_options_validate(const sandbox_options_t *o);
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
/* Volumes: one PCI slot each on the root bus (slots 0x04..0x13). */
#define SBX_MAX_VOLUMES 16u

#endif
