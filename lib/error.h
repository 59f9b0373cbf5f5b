/* Thread-local last-error detail. */
#ifndef SBX_ERROR_H
#define SBX_ERROR_H

#include "sandbox.h"

/* Record a detailed message for the calling thread and return `code`, so
 * callers can write `return sbx_fail(SANDBOX_E_INVAL, "...")`. */
int sbx_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like sbx_fail, appending ": strerror(err)". */
int sbx_fail_errno(int code, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void sbx_clear_error(void);
/* Save and restore the message around cleanup code that may overwrite it. */
void sbx_error_save(char *buf, size_t cap);
void sbx_error_restore(const char *buf);

#endif
