/* Audit sinks. A line is written with one write(2) on an O_APPEND fd so
 * lines from concurrent sandboxes sharing a file never interleave. */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "util.h"

int sbx_audit_open(struct sbx_audit *a, const sandbox_options_t *o, const char *id,
		   const sandbox_kv_t *metadata, size_t metadata_count)
{
	memset(a, 0, sizeof *a);
	a->fd = -1;
	a->cb = o->audit_cb;
	a->userdata = o->audit_userdata;
	a->metadata = metadata;
	a->metadata_count = metadata_count;
	snprintf(a->id, sizeof a->id, "%s", id);
	pthread_mutex_init(&a->lock, NULL);
	if (o->audit_log) {
		a->fd = open(o->audit_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (a->fd < 0) {
			int e = errno;
			pthread_mutex_destroy(&a->lock);
			return sbx_fail_errno(e == EACCES ? SANDBOX_E_PERM : SANDBOX_E_IO, e,
					      "cannot open audit log '%s'", o->audit_log);
		}
	}
	return 0;
}

void sbx_audit_close(struct sbx_audit *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	pthread_mutex_destroy(&a->lock);
}

void sbx_audit_begin(struct sbx_audit *a, struct sbx_json *j, const char *event)
{
	char ts[40];
	sbx_iso_time(ts, sizeof ts);
	sbx_json_init(j);
	sbx_json_open(j, NULL);
	sbx_json_str(j, "ts", ts);
	sbx_json_str(j, "event", event);
	sbx_json_str(j, "sandbox", a->id);
	sbx_json_open(j, "metadata");
	for (size_t i = 0; i < a->metadata_count; i++)
		sbx_json_str(j, a->metadata[i].key, a->metadata[i].value);
	sbx_json_close(j);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* audit must not take the sandbox down */
		p += w;
		n -= (size_t)w;
	}
}

void sbx_audit_emit(struct sbx_audit *a, struct sbx_json *j)
{
	sbx_json_close(j);
	if (!j->oom && (a->fd >= 0 || a->cb)) {
		pthread_mutex_lock(&a->lock);
		if (a->cb)
			a->cb(j->buf, a->userdata);
		if (a->fd >= 0) {
			j->buf[j->len] = '\n'; /* put() keeps one spare byte */
			write_all(a->fd, j->buf, j->len + 1);
			j->buf[j->len] = '\0';
		}
		pthread_mutex_unlock(&a->lock);
	}
	sbx_json_free(j);
}
