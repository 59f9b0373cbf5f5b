/* Small helpers shared by the library modules. */
#ifndef SBX_UTIL_H
#define SBX_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Monotonic clock in milliseconds / microseconds. */
int64_t sbx_now_ms(void);
int64_t sbx_now_us(void);
/* Wall clock as "2026-12-03T13:00:00.123Z" into buf (>= 32 bytes). */
void sbx_iso_time(char *buf, size_t cap);
/* Fill buf with cryptographically random bytes. Returns 0 or -errno. */
int sbx_random(void *buf, size_t len);
/* 2*len hex characters plus NUL into out. */
void sbx_hex(const uint8_t *in, size_t len, char *out);
/* mkdir -p with mode for created directories. Returns 0 or -errno. */
int sbx_mkdirs(const char *path, mode_t mode);
/* Remove a directory tree without following symlinks. Returns 0 or -errno. */
int sbx_rmtree(const char *path);
/* malloc'd printf. NULL on failure. */
char *sbx_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Overwrite memory in a way the compiler keeps. */
void sbx_wipe(void *p, size_t len);
/* Run argv (no shell), wait; returns exit status (>=0) or -errno. stderr
 * of the child is captured (at most cap-1 bytes) into err if given. */
int sbx_run(const char *const *argv, char *err, size_t cap);

#endif
