/* N-API addon over libsandbox: shared declarations.
 *
 * Every call that waits on the VM runs on libuv's thread pool
 * (napi_async_work) and returns a Promise; streaming output comes from one
 * thread per command through a thread-safe function. The JavaScript layer
 * (lib/index.js) normalises options and wraps errors. */
#ifndef SBX_NODE_ADDON_H
#define SBX_NODE_ADDON_H

#include <node_api.h>
#include <sandbox.h>
#include <stdatomic.h>
#include <stddef.h>

#define SBX_NAPI(call)                                                                             \
	do {                                                                                       \
		if ((call) != napi_ok)                                                             \
			return sbx_node_throw_napi(env, #call);                                    \
	} while (0)

napi_value sbx_node_throw_napi(napi_env env, const char *what);
/* Throws a TypeError with the message; returns NULL for the caller. */
napi_value sbx_node_type_error(napi_env env, const char *msg);
/* An Error object carrying the library code: .code = "SANDBOX_E_...",
 * .errno = the negative code, message = the library's detail. */
napi_value sbx_node_lib_error(napi_env env, int code, const char *message);
const char *sbx_node_code_name(int code);

/* ---------------------------------------------------------- sandboxes */

struct sbx_node_sandbox {
	sandbox_t *sb;
	napi_threadsafe_function audit; /* NULL without onAudit */
};

/* The sandbox behind an External made by create/list, or NULL (TypeError
 * thrown). */
struct sbx_node_sandbox *sbx_node_get_sandbox(napi_env env, napi_value v);
napi_value sbx_node_wrap_sandbox(napi_env env, struct sbx_node_sandbox *w);

/* ---------------------------------------------------------- conversion */

/* Owned C copies of JS option values (freed with sbx_node_opts_free). */
struct sbx_node_opts {
	sandbox_options_t o;
	sandbox_exec_options_t e;
	char **strings; /* every string allocated, for freeing */
	size_t nstrings, capstrings;
	void **blocks; /* every array allocated */
	size_t nblocks, capblocks;
	char **secret_values; /* wiped before freeing */
	size_t nsecret_values;
	void *stdin_copy;
};

/* Returns 0, or -1 with a JS exception pending. */
int sbx_node_opts_from_js(napi_env env, napi_value obj, struct sbx_node_opts *out);
int sbx_node_exec_opts_from_js(napi_env env, napi_value obj, struct sbx_node_opts *out);
/* A NULL-terminated argv from a JS array of strings. */
int sbx_node_argv_from_js(napi_env env, napi_value arr, struct sbx_node_opts *keep,
			  const char ***argv);
void sbx_node_opts_free(struct sbx_node_opts *o);
/* One string / a NULL-terminated string array owned by keep. Return 0, or
 * -1 with a TypeError pending. */
int sbx_node_string_from_js(napi_env env, napi_value v, const char *what,
			    struct sbx_node_opts *keep, const char **out);
int sbx_node_string_array_from_js(napi_env env, napi_value v, const char *what,
				  struct sbx_node_opts *keep, const char ***out);
napi_value sbx_node_result_to_js(napi_env env, const sandbox_result_t *r);

/* ---------------------------------------------------------- async work */

struct sbx_node_work;
typedef int (*sbx_node_exec_fn)(struct sbx_node_work *w);		       /* worker thread */
typedef napi_value (*sbx_node_done_fn)(napi_env env, struct sbx_node_work *w); /* main */
typedef void (*sbx_node_free_fn)(struct sbx_node_work *w);		       /* main */

struct sbx_node_work {
	napi_async_work work;
	napi_deferred deferred;
	napi_ref hold[2]; /* objects kept alive while the work runs */
	int rc;
	char err[4096]; /* sandbox_last_error() copied on the worker thread */
	sbx_node_exec_fn exec;
	sbx_node_done_fn done;
	sbx_node_free_fn free_fn;
	void *ctx; /* the call's own data */
};

/* Queue w (allocated by the caller with calloc) and return its Promise.
 * hold0/hold1 (may be NULL) stay referenced until it completes. */
napi_value sbx_node_queue(napi_env env, struct sbx_node_work *w, const char *name, napi_value hold0,
			  napi_value hold1);

/* ------------------------------------------------------------- commands */

napi_value sbx_node_proc_start(napi_env env, napi_callback_info info);
napi_value sbx_node_proc_pause(napi_env env, napi_callback_info info);
napi_value sbx_node_proc_resume(napi_env env, napi_callback_info info);
napi_value sbx_node_proc_write(napi_env env, napi_callback_info info);
napi_value sbx_node_proc_close_stdin(napi_env env, napi_callback_info info);
napi_value sbx_node_proc_signal(napi_env env, napi_callback_info info);
napi_value sbx_node_proc_wait(napi_env env, napi_callback_info info);
napi_value sbx_node_proc_pid(napi_env env, napi_callback_info info);

/* ---------------------------------------------------------------- files */

/* files.c: Promise-returning files API calls and setAllowNet. */
napi_value sbx_node_file_write(napi_env env, napi_callback_info info);
napi_value sbx_node_file_read(napi_env env, napi_callback_info info);
napi_value sbx_node_file_stat(napi_env env, napi_callback_info info);
napi_value sbx_node_file_list(napi_env env, napi_callback_info info);
napi_value sbx_node_file_mkdir(napi_env env, napi_callback_info info);
napi_value sbx_node_file_remove(napi_env env, napi_callback_info info);
napi_value sbx_node_file_upload(napi_env env, napi_callback_info info);
napi_value sbx_node_file_download(napi_env env, napi_callback_info info);
napi_value sbx_node_set_allow_net(napi_env env, napi_callback_info info);

/* The first want arguments of a call (missing ones undefined). Returns 0
 * or -1. */
int sbx_node_get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);

/* See forkguard.c. Idempotent. */
void sbx_node_fork_guard_install(void);

#endif
