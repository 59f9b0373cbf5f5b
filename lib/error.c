/* Error codes, their text, and the thread-local detail message. */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[1024];

SANDBOX_API const char *sandbox_strerror(int code)
{
	switch (code) {
	case SANDBOX_OK: return "success";
	case SANDBOX_E_INVAL: return "invalid argument";
	case SANDBOX_E_NOMEM: return "out of memory";
	case SANDBOX_E_FLAGS: return "unknown flags";
	case SANDBOX_E_VERSION: return "unsupported options version";
	case SANDBOX_E_UNSUPPORTED: return "not supported yet";
	case SANDBOX_E_IMAGE: return "guest image missing or corrupt";
	case SANDBOX_E_LIBVIRT: return "libvirt error";
	case SANDBOX_E_BOOT: return "guest failed to boot";
	case SANDBOX_E_PROTOCOL: return "guest agent protocol error";
	case SANDBOX_E_DEAD: return "sandbox is not running";
	case SANDBOX_E_TIMEOUT: return "timed out";
	case SANDBOX_E_NOTFOUND: return "not found";
	case SANDBOX_E_EXEC: return "command could not be started";
	case SANDBOX_E_IO: return "I/O error";
	case SANDBOX_E_BUSY: return "state directory in use";
	case SANDBOX_E_ACCEL: return "accelerator not usable";
	case SANDBOX_E_PERM: return "permission denied";
	case SANDBOX_E_ABORTED: return "aborted by callback";
	case SANDBOX_E_ISDIR: return "is a directory";
	case SANDBOX_E_NOTDIR: return "not a directory";
	case SANDBOX_E_EXISTS: return "already exists";
	case SANDBOX_E_NOSPACE: return "no space left";
	case SANDBOX_E_NOTEMPTY: return "directory not empty";
	case SANDBOX_E_TOOBIG: return "too large";
	}
	return "unknown error code";
}

SANDBOX_API const char *sandbox_last_error(void)
{
	return last_error;
}

static void set_msg(const char *fmt, va_list ap)
{
	vsnprintf(last_error, sizeof last_error, fmt, ap);
}

int sbx_fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_msg(fmt, ap);
	va_end(ap);
	return code;
}

int sbx_fail_errno(int code, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	set_msg(fmt, ap);
	va_end(ap);
	size_t n = strlen(last_error);
	snprintf(last_error + n, sizeof last_error - n, ": %s", strerror(err));
	return code;
}

void sbx_clear_error(void)
{
	last_error[0] = '\0';
}

void sbx_error_save(char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", last_error);
}

void sbx_error_restore(const char *buf)
{
	snprintf(last_error, sizeof last_error, "%s", buf);
}
