/* Error lines to the console (PID 1) or stderr (test mode). */
#define _GNU_SOURCE
#include "log.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static int g_to_console;

void log_init(int to_console)
{
	g_to_console = to_console;
}

void log_msg(const char *fmt, ...)
{
	char line[512];
	int n = snprintf(line, sizeof line, "sandbox-agent: ");
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	size_t len = (size_t)n + (size_t)m;
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	line[len++] = '\n';

	/* Opened per message: errors are rare, and as PID 1 our own fd 2 may
	 * be /dev/null if the kernel found no console node at boot. */
	int fd = 2;
	if (g_to_console)
		fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t w = write(fd, line, len);
	(void)w; /* nowhere left to report a failed diagnostic */
	if (fd != 2)
		close(fd);
}
