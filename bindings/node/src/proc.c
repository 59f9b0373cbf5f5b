/* Streaming commands: one pump thread per command reads its output with
 * sandbox_proc_read() and hands each chunk to JavaScript through a
 * thread-safe function (queue of one, blocking: a JS side that does not
 * keep up stops the pump, and the library's credit stops the guest).
 * JS can also pause the pump (its streams are full) and resume it. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

#define CHUNK 65536
#define POLL_MS 250 /* how often a waiting pump checks for shutdown */

struct proc_wrap {
	sandbox_proc_t *proc;
	napi_threadsafe_function tsfn;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int paused;
	int closing; /* the JS handle is gone: stop */
	int pumping; /* the pump thread still runs (it frees the proc last) */
	atomic_int refs;
};

enum chunk_kind { CHUNK_DATA, CHUNK_END, CHUNK_ERROR };

struct chunk {
	enum chunk_kind kind;
	int stream;
	int code;
	size_t len;
	char msg[512];
	char data[];
};

static void unref(struct proc_wrap *p)
{
	if (atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	sandbox_proc_free(p->proc); /* kills a command still running */
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
}

static void finalize_proc(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	struct proc_wrap *p = data;
	pthread_mutex_lock(&p->mu);
	p->closing = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	unref(p);
}

static const napi_type_tag proc_tag = {0x70726f6373ull, 0x616e64626f78ull};

static struct proc_wrap *get_proc(napi_env env, napi_value v)
{
	bool ok = false;
	void *p = NULL;
	if (napi_check_object_type_tag(env, v, &proc_tag, &ok) != napi_ok || !ok ||
	    napi_get_value_external(env, v, &p) != napi_ok) {
		sbx_node_type_error(env, "expected a process handle");
		return NULL;
	}
	return p;
}

/* Main thread: turn a chunk into onEvent("data", stream, buf) /
 * onEvent("end") / onEvent("error", err). */
static void call_js(napi_env env, napi_value cb, void *ctx, void *data)
{
	(void)ctx;
	struct chunk *c = data;
	if (env && cb) {
		napi_value undefined, args[3];
		size_t argc = 1;
		napi_get_undefined(env, &undefined);
		if (c->kind == CHUNK_DATA) {
			void *unused;
			napi_create_string_utf8(env, "data", NAPI_AUTO_LENGTH, &args[0]);
			napi_create_int32(env, c->stream, &args[1]);
			napi_create_buffer_copy(env, c->len, c->data, &unused, &args[2]);
			argc = 3;
		} else if (c->kind == CHUNK_END) {
			napi_create_string_utf8(env, "end", NAPI_AUTO_LENGTH, &args[0]);
		} else {
			napi_create_string_utf8(env, "error", NAPI_AUTO_LENGTH, &args[0]);
			args[1] = sbx_node_lib_error(env, c->code, c->msg);
			argc = 2;
		}
		napi_call_function(env, undefined, cb, argc, args, NULL);
	}
	free(c);
}

/* Wait while paused; returns 1 when the pump must stop. */
static int wait_unpaused(struct proc_wrap *p)
{
	pthread_mutex_lock(&p->mu);
	while (p->paused && !p->closing)
		pthread_cond_wait(&p->cv, &p->mu);
	int stop = p->closing;
	pthread_mutex_unlock(&p->mu);
	return stop;
}

static void *pump(void *arg)
{
	struct proc_wrap *p = arg;
	for (;;) {
		if (wait_unpaused(p))
			break;
		struct chunk *c = malloc(sizeof(*c) + CHUNK);
		if (!c)
			break;
		int n = sandbox_proc_read(p->proc, &c->stream, c->data, CHUNK, POLL_MS, 0);
		if (n == SANDBOX_E_TIMEOUT) {
			free(c);
			continue;
		}
		c->kind = n > 0 ? CHUNK_DATA : n == 0 ? CHUNK_END : CHUNK_ERROR;
		c->len = n > 0 ? (size_t)n : 0;
		c->code = n;
		c->msg[0] = '\0';
		if (n < 0)
			snprintf(c->msg, sizeof(c->msg), "%s", sandbox_last_error());
		if (napi_call_threadsafe_function(p->tsfn, c, napi_tsfn_blocking) != napi_ok) {
			free(c);
			break;
		}
		if (n <= 0)
			break;
	}
	napi_release_threadsafe_function(p->tsfn, napi_tsfn_release);
	pthread_mutex_lock(&p->mu);
	p->pumping = 0;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	unref(p);
	return NULL;
}

/* --------------------------------------------------------------- start */

struct start_ctx {
	struct sbx_node_opts opts;
	sandbox_t *sb;
	const char **argv;
	unsigned int flags;
	struct proc_wrap *p;
};

static int start_exec(struct sbx_node_work *w)
{
	struct start_ctx *c = w->ctx;
	int rc = sandbox_proc_start(c->sb, c->argv, &c->opts.e, &c->p->proc, c->flags);
	if (rc < 0)
		return rc;
	pthread_t t;
	atomic_fetch_add(&c->p->refs, 1); /* the pump's */
	c->p->pumping = 1;
	if (pthread_create(&t, NULL, pump, c->p) != 0) {
		atomic_fetch_sub(&c->p->refs, 1);
		c->p->pumping = 0;
		sandbox_proc_free(c->p->proc);
		c->p->proc = NULL;
		snprintf(w->err, sizeof(w->err), "cannot start the output thread");
		return SANDBOX_E_NOMEM;
	}
	pthread_detach(t);
	return 0;
}

static napi_value start_done(napi_env env, struct sbx_node_work *w)
{
	struct start_ctx *c = w->ctx;
	napi_value ext;
	struct proc_wrap *p = c->p;
	c->p = NULL; /* owned by the handle from here */
	if (napi_create_external(env, p, finalize_proc, NULL, &ext) != napi_ok) {
		finalize_proc(env, p, NULL);
		return sbx_node_throw_napi(env, "napi_create_external");
	}
	napi_type_tag_object(env, ext, &proc_tag);
	return ext;
}

static void start_free(struct sbx_node_work *w)
{
	struct start_ctx *c = w->ctx;
	if (c->p) { /* start failed: no pump was started */
		napi_release_threadsafe_function(c->p->tsfn, napi_tsfn_release);
		pthread_mutex_destroy(&c->p->mu);
		pthread_cond_destroy(&c->p->cv);
		free(c->p);
	}
	sbx_node_opts_free(&c->opts);
	free(c);
}

/* procStart(sandbox, argv, execOptions, wantStdin, onEvent) -> Promise<proc> */
napi_value sbx_node_proc_start(napi_env env, napi_callback_info info)
{
	size_t argc = 5;
	napi_value argv[5], name;
	bool want_stdin = false;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5)
		return sbx_node_type_error(env, "procStart: 5 arguments expected");
	struct sbx_node_sandbox *s = sbx_node_get_sandbox(env, argv[0]);
	if (!s)
		return NULL;
	napi_get_value_bool(env, argv[3], &want_stdin);
	struct start_ctx *c = calloc(1, sizeof(*c));
	struct sbx_node_work *w = calloc(1, sizeof(*w));
	struct proc_wrap *p = calloc(1, sizeof(*p));
	if (!c || !w || !p) {
		free(c);
		free(w);
		free(p);
		return sbx_node_throw_napi(env, "out of memory");
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	atomic_init(&p->refs, 1); /* the JS handle's */
	c->p = p;
	c->sb = s->sb;
	c->flags = want_stdin ? SANDBOX_PROC_STDIN : 0;
	w->ctx = c;
	w->exec = start_exec;
	w->done = start_done;
	w->free_fn = start_free;
	napi_create_string_utf8(env, "libsandbox output", NAPI_AUTO_LENGTH, &name);
	if (napi_create_threadsafe_function(env, argv[4], NULL, name, 1, 1, NULL, NULL, NULL,
					    call_js, &p->tsfn) != napi_ok) {
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->cv);
		free(p);
		c->p = NULL;
		start_free(w);
		free(w);
		return sbx_node_throw_napi(env, "napi_create_threadsafe_function");
	}
	if (sbx_node_argv_from_js(env, argv[1], &c->opts, &c->argv) < 0 ||
	    sbx_node_exec_opts_from_js(env, argv[2], &c->opts) < 0) {
		start_free(w);
		free(w);
		return NULL;
	}
	return sbx_node_queue(env, w, "libsandbox procStart", argv[0], NULL);
}

/* ------------------------------------------------------ pause / resume */

static napi_value set_paused(napi_env env, napi_callback_info info, int paused)
{
	size_t argc = 1;
	napi_value argv[1];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1)
		return sbx_node_type_error(env, "expected a process handle");
	struct proc_wrap *p = get_proc(env, argv[0]);
	if (!p)
		return NULL;
	pthread_mutex_lock(&p->mu);
	p->paused = paused;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

napi_value sbx_node_proc_pause(napi_env env, napi_callback_info info)
{
	return set_paused(env, info, 1);
}

napi_value sbx_node_proc_resume(napi_env env, napi_callback_info info)
{
	return set_paused(env, info, 0);
}

/* ----------------------------------------- write, close, signal, wait */

struct io_ctx {
	struct proc_wrap *p;
	void *data;
	size_t len;
	int signo;
	int timeout_ms;
	sandbox_result_t *res;
};

static int write_exec(struct sbx_node_work *w)
{
	struct io_ctx *c = w->ctx;
	return sandbox_proc_write(c->p->proc, c->data, c->len, 0);
}

static int close_exec(struct sbx_node_work *w)
{
	struct io_ctx *c = w->ctx;
	return sandbox_proc_close_stdin(c->p->proc, 0);
}

static int signal_exec(struct sbx_node_work *w)
{
	struct io_ctx *c = w->ctx;
	return sandbox_proc_signal(c->p->proc, c->signo, 0);
}

/* Output is read by the pump; waiting before it has seen the end would
 * discard output, so wait for the pump to finish first. */
static int wait_exec(struct sbx_node_work *w)
{
	struct io_ctx *c = w->ctx;
	pthread_mutex_lock(&c->p->mu);
	while (c->p->pumping)
		pthread_cond_wait(&c->p->cv, &c->p->mu);
	pthread_mutex_unlock(&c->p->mu);
	return sandbox_proc_wait(c->p->proc, c->timeout_ms, &c->res, 0);
}

static napi_value wait_done(napi_env env, struct sbx_node_work *w)
{
	return sbx_node_result_to_js(env, ((struct io_ctx *)w->ctx)->res);
}

static void io_free(struct sbx_node_work *w)
{
	struct io_ctx *c = w->ctx;
	free(c->data);
	sandbox_result_free(c->res);
	free(c);
}

static napi_value io_call(napi_env env, napi_callback_info info, sbx_node_exec_fn fn,
			  sbx_node_done_fn done, const char *name)
{
	size_t argc = 2;
	napi_value argv[2];
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1)
		return sbx_node_type_error(env, "expected a process handle");
	struct proc_wrap *p = get_proc(env, argv[0]);
	if (!p)
		return NULL;
	struct io_ctx *c = calloc(1, sizeof(*c));
	struct sbx_node_work *w = calloc(1, sizeof(*w));
	if (!c || !w) {
		free(c);
		free(w);
		return sbx_node_throw_napi(env, "out of memory");
	}
	c->p = p;
	c->timeout_ms = -1;
	w->ctx = c;
	w->exec = fn;
	w->done = done;
	w->free_fn = io_free;
	if (argc >= 2 && fn == write_exec) {
		bool is = false;
		void *data;
		if (napi_is_buffer(env, argv[1], &is) != napi_ok || !is) {
			io_free(w);
			free(w);
			return sbx_node_type_error(env, "write: data must be a Buffer");
		}
		napi_get_buffer_info(env, argv[1], &data, &c->len);
		c->data = malloc(c->len ? c->len : 1);
		if (!c->data) {
			io_free(w);
			free(w);
			return sbx_node_throw_napi(env, "out of memory");
		}
		memcpy(c->data, data, c->len);
	} else if (argc >= 2) {
		int32_t n = 0;
		napi_get_value_int32(env, argv[1], &n);
		c->signo = n;
		c->timeout_ms = n;
	}
	return sbx_node_queue(env, w, name, argv[0], NULL);
}

napi_value sbx_node_proc_write(napi_env env, napi_callback_info info)
{
	return io_call(env, info, write_exec, NULL, "libsandbox procWrite");
}

napi_value sbx_node_proc_close_stdin(napi_env env, napi_callback_info info)
{
	return io_call(env, info, close_exec, NULL, "libsandbox procCloseStdin");
}

napi_value sbx_node_proc_signal(napi_env env, napi_callback_info info)
{
	return io_call(env, info, signal_exec, NULL, "libsandbox procSignal");
}

napi_value sbx_node_proc_wait(napi_env env, napi_callback_info info)
{
	return io_call(env, info, wait_exec, wait_done, "libsandbox procWait");
}

napi_value sbx_node_proc_pid(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], v;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1)
		return sbx_node_type_error(env, "expected a process handle");
	struct proc_wrap *p = get_proc(env, argv[0]);
	if (!p)
		return NULL;
	SBX_NAPI(napi_create_int32(env, sandbox_proc_pid(p->proc), &v));
	return v;
}
