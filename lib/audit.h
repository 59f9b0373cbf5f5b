/* Audit events: JSON Lines to a file and/or a callback. */
#ifndef SBX_AUDIT_H
#define SBX_AUDIT_H

#include <pthread.h>

#include "json.h"
#include "sandbox.h"

struct sbx_audit {
	int fd; /* -1: no file */
	sandbox_audit_fn cb;
	void *userdata;
	char id[40];
	const sandbox_kv_t *metadata; /* owned by the sandbox */
	size_t metadata_count;
	pthread_mutex_t lock;
};

/* Open the sinks named in opts. Returns 0 or an error code with detail. */
int sbx_audit_open(struct sbx_audit *a, const sandbox_options_t *o, const char *id,
		   const sandbox_kv_t *metadata, size_t metadata_count);
void sbx_audit_close(struct sbx_audit *a);
/* Start an event: writes ts, event, sandbox id and metadata. Add fields
 * with sbx_json_*, then call sbx_audit_emit (which frees j). */
void sbx_audit_begin(struct sbx_audit *a, struct sbx_json *j, const char *event);
void sbx_audit_emit(struct sbx_audit *a, struct sbx_json *j);

#endif
