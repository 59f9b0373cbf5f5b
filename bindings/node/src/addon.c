/* Module entry: sandbox lifecycle and buffered commands. See addon.h. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

/* ----------------------------------------------------------- handles */

static void *free_in_background(void *arg)
{
	struct sbx_node_sandbox *w = arg;
	sandbox_free(w->sb); /* kills the VM if this was the last reference */
	if (w->audit)
		napi_release_threadsafe_function(w->audit, napi_tsfn_release);
	free(w);
	return NULL;
}

/* GC finalizer (main thread): freeing may kill a VM, which takes a while,
 * so it happens on a short-lived thread instead of blocking the loop. */
static void finalize_sandbox(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	pthread_t t;
	if (pthread_create(&t, NULL, free_in_background, data) == 0)
		pthread_detach(t);
	else
		free_in_background(data);
}

napi_value sbx_node_wrap_sandbox(napi_env env, struct sbx_node_sandbox *w)
{
	napi_value ext;
	if (napi_create_external(env, w, finalize_sandbox, NULL, &ext) != napi_ok) {
		free_in_background(w);
		return sbx_node_throw_napi(env, "napi_create_external");
	}
	napi_type_tag tag = {0x6c69627361ull, 0x6e64626f78ull}; /* "libsa", "ndbox" */
	napi_type_tag_object(env, ext, &tag);
	return ext;
}

struct sbx_node_sandbox *sbx_node_get_sandbox(napi_env env, napi_value v)
{
	napi_type_tag tag = {0x6c69627361ull, 0x6e64626f78ull};
	bool ok = false;
	void *p = NULL;
	if (napi_check_object_type_tag(env, v, &tag, &ok) != napi_ok || !ok ||
	    napi_get_value_external(env, v, &p) != napi_ok) {
		sbx_node_type_error(env, "expected a sandbox handle");
		return NULL;
	}
	return p;
}

int sbx_node_get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv)
{
	size_t argc = want;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok)
		return -1;
	for (size_t i = argc; i < want; i++)
		napi_get_undefined(env, &argv[i]);
	return 0;
}

/* ------------------------------------------------------------ audit */

static void audit_call_js(napi_env env, napi_value cb, void *ctx, void *data)
{
	(void)ctx;
	char *json = data;
	if (env && cb) {
		napi_value undefined, arg;
		napi_get_undefined(env, &undefined);
		if (napi_create_string_utf8(env, json, NAPI_AUTO_LENGTH, &arg) == napi_ok)
			napi_call_function(env, undefined, cb, 1, &arg, NULL);
	}
	free(json);
}

/* Library thread: queue a copy, never block it. */
static void audit_from_library(const char *json, void *userdata)
{
	napi_threadsafe_function tsfn = userdata;
	char *copy = strdup(json);
	if (copy && napi_call_threadsafe_function(tsfn, copy, napi_tsfn_nonblocking) != napi_ok)
		free(copy);
}

/* ----------------------------------------------------------- create */

struct create_ctx {
	struct sbx_node_opts opts;
	sandbox_t *sb;
	napi_threadsafe_function audit;
};

static int create_exec(struct sbx_node_work *w)
{
	struct create_ctx *c = w->ctx;
	return sandbox_create(&c->sb, &c->opts.o, 0);
}

static napi_value create_done(napi_env env, struct sbx_node_work *w)
{
	struct create_ctx *c = w->ctx;
	struct sbx_node_sandbox *s = calloc(1, sizeof(*s));
	if (!s) {
		sandbox_free(c->sb);
		c->sb = NULL;
		return sbx_node_throw_napi(env, "out of memory");
	}
	s->sb = c->sb;
	s->audit = c->audit;
	c->sb = NULL;
	c->audit = NULL; /* now owned by the handle */
	return sbx_node_wrap_sandbox(env, s);
}

static void create_free(struct sbx_node_work *w)
{
	struct create_ctx *c = w->ctx;
	sbx_node_opts_free(&c->opts);
	if (c->audit) /* create failed: the callback never fires */
		napi_release_threadsafe_function(c->audit, napi_tsfn_release);
	free(c);
}

/* create(options, onAudit?) -> Promise<handle> */
static napi_value js_create(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	napi_valuetype t;
	if (sbx_node_get_args(env, info, 2, argv) < 0)
		return NULL;
	struct create_ctx *c = calloc(1, sizeof(*c));
	struct sbx_node_work *w = calloc(1, sizeof(*w));
	if (!c || !w) {
		free(c);
		free(w);
		return sbx_node_throw_napi(env, "out of memory");
	}
	w->ctx = c;
	w->exec = create_exec;
	w->done = create_done;
	w->free_fn = create_free;
	if (sbx_node_opts_from_js(env, argv[0], &c->opts) < 0) {
		create_free(w);
		free(w);
		return NULL;
	}
	napi_typeof(env, argv[1], &t);
	if (t == napi_function) {
		napi_value name;
		napi_create_string_utf8(env, "libsandbox audit", NAPI_AUTO_LENGTH, &name);
		if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL,
						    NULL, audit_call_js, &c->audit) != napi_ok) {
			create_free(w);
			free(w);
			return sbx_node_throw_napi(env, "napi_create_threadsafe_function");
		}
		/* events must not keep the process alive */
		napi_unref_threadsafe_function(env, c->audit);
		c->opts.o.audit_cb = audit_from_library;
		c->opts.o.audit_userdata = c->audit;
	}
	return sbx_node_queue(env, w, "libsandbox create", NULL, NULL);
}

/* ------------------------------------------------- kill, ping, exec */

static int kill_exec(struct sbx_node_work *w)
{
	return sandbox_kill(((struct sbx_node_sandbox *)w->ctx)->sb, 0);
}

static int ping_exec(struct sbx_node_work *w)
{
	return sandbox_ping(((struct sbx_node_sandbox *)w->ctx)->sb, 0);
}

static napi_value simple_call(napi_env env, napi_callback_info info, sbx_node_exec_fn fn,
			      const char *name)
{
	napi_value argv[1];
	if (sbx_node_get_args(env, info, 1, argv) < 0)
		return NULL;
	struct sbx_node_sandbox *s = sbx_node_get_sandbox(env, argv[0]);
	if (!s)
		return NULL;
	struct sbx_node_work *w = calloc(1, sizeof(*w));
	if (!w)
		return sbx_node_throw_napi(env, "out of memory");
	w->ctx = s;
	w->exec = fn;
	return sbx_node_queue(env, w, name, argv[0], NULL);
}

static napi_value js_kill(napi_env env, napi_callback_info info)
{
	return simple_call(env, info, kill_exec, "libsandbox kill");
}

static napi_value js_ping(napi_env env, napi_callback_info info)
{
	return simple_call(env, info, ping_exec, "libsandbox ping");
}

struct exec_ctx {
	struct sbx_node_opts opts;
	sandbox_t *sb;
	const char **argv;
	sandbox_result_t *res;
};

static int exec_exec(struct sbx_node_work *w)
{
	struct exec_ctx *c = w->ctx;
	return sandbox_exec(c->sb, c->argv, &c->opts.e, &c->res, 0);
}

static napi_value exec_done(napi_env env, struct sbx_node_work *w)
{
	return sbx_node_result_to_js(env, ((struct exec_ctx *)w->ctx)->res);
}

static void exec_free(struct sbx_node_work *w)
{
	struct exec_ctx *c = w->ctx;
	sandbox_result_free(c->res);
	sbx_node_opts_free(&c->opts);
	free(c);
}

/* exec(handle, argv, execOptions) -> Promise<result> */
static napi_value js_exec(napi_env env, napi_callback_info info)
{
	napi_value argv[3];
	if (sbx_node_get_args(env, info, 3, argv) < 0)
		return NULL;
	struct sbx_node_sandbox *s = sbx_node_get_sandbox(env, argv[0]);
	if (!s)
		return NULL;
	struct exec_ctx *c = calloc(1, sizeof(*c));
	struct sbx_node_work *w = calloc(1, sizeof(*w));
	if (!c || !w) {
		free(c);
		free(w);
		return sbx_node_throw_napi(env, "out of memory");
	}
	c->sb = s->sb;
	w->ctx = c;
	w->exec = exec_exec;
	w->done = exec_done;
	w->free_fn = exec_free;
	if (sbx_node_argv_from_js(env, argv[1], &c->opts, &c->argv) < 0 ||
	    sbx_node_exec_opts_from_js(env, argv[2], &c->opts) < 0) {
		exec_free(w);
		free(w);
		return NULL;
	}
	return sbx_node_queue(env, w, "libsandbox exec", argv[0], NULL);
}

/* ------------------------------------------------- quick accessors */

static napi_value js_id(napi_env env, napi_callback_info info)
{
	napi_value argv[1], v;
	if (sbx_node_get_args(env, info, 1, argv) < 0)
		return NULL;
	struct sbx_node_sandbox *s = sbx_node_get_sandbox(env, argv[0]);
	if (!s)
		return NULL;
	SBX_NAPI(napi_create_string_utf8(env, sandbox_id(s->sb), NAPI_AUTO_LENGTH, &v));
	return v;
}

static napi_value js_is_running(napi_env env, napi_callback_info info)
{
	napi_value argv[1], v;
	if (sbx_node_get_args(env, info, 1, argv) < 0)
		return NULL;
	struct sbx_node_sandbox *s = sbx_node_get_sandbox(env, argv[0]);
	if (!s)
		return NULL;
	SBX_NAPI(napi_get_boolean(env, sandbox_is_running(s->sb) == 1, &v));
	return v;
}

static napi_value js_metadata(napi_env env, napi_callback_info info)
{
	napi_value argv[1], obj;
	if (sbx_node_get_args(env, info, 1, argv) < 0)
		return NULL;
	struct sbx_node_sandbox *s = sbx_node_get_sandbox(env, argv[0]);
	if (!s)
		return NULL;
	SBX_NAPI(napi_create_object(env, &obj));
	for (size_t i = 0; i < sandbox_metadata_count(s->sb); i++) {
		const char *k, *val;
		napi_value jv;
		if (sandbox_metadata_at(s->sb, i, &k, &val) < 0)
			continue;
		SBX_NAPI(napi_create_string_utf8(env, val, NAPI_AUTO_LENGTH, &jv));
		SBX_NAPI(napi_set_named_property(env, obj, k, jv));
	}
	return obj;
}

static napi_value js_version(napi_env env, napi_callback_info info)
{
	(void)info;
	napi_value v;
	SBX_NAPI(napi_create_string_utf8(env, sandbox_version(), NAPI_AUTO_LENGTH, &v));
	return v;
}

/* list() -> handles to this process's running sandboxes (sandbox_list does
 * not wait on any VM, so it is synchronous). */
static napi_value js_list(napi_env env, napi_callback_info info)
{
	(void)info;
	sandbox_t **list;
	size_t n;
	napi_value arr;
	int rc = sandbox_list(&list, &n, 0);
	if (rc < 0) {
		napi_throw(env, sbx_node_lib_error(env, rc, sandbox_last_error()));
		return NULL;
	}
	SBX_NAPI(napi_create_array_with_length(env, n, &arr));
	for (size_t i = 0; i < n; i++) {
		struct sbx_node_sandbox *s = calloc(1, sizeof(*s));
		napi_value h;
		if (!s) {
			sandbox_free(list[i]);
			continue;
		}
		s->sb = list[i];
		if (!(h = sbx_node_wrap_sandbox(env, s)))
			continue;
		napi_set_element(env, arr, (uint32_t)i, h);
	}
	sandbox_list_free(list, 0);
	return arr;
}

/* ------------------------------------------------------- process exit */

/* A process that exits with sandboxes still running would leave their QEMU
 * processes behind (until the next user of the state dir reaps them): kill
 * every one of this process's sandboxes when Node shuts down or exits. */
static void kill_all(void)
{
	sandbox_t **list;
	size_t n;
	if (sandbox_list(&list, &n, 0) < 0)
		return;
	for (size_t i = 0; i < n; i++)
		sandbox_kill(list[i], 0);
	sandbox_list_free(list, n);
}

static void cleanup_hook(void *arg)
{
	(void)arg;
	kill_all();
}

static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;

static void register_atexit(void)
{
	atexit(kill_all);
}

/* -------------------------------------------------------------- init */

static napi_value init(napi_env env, napi_value exports)
{
	static const struct {
		const char *name;
		napi_callback fn;
	} fns[] = {
	    {"create", js_create},
	    {"kill", js_kill},
	    {"ping", js_ping},
	    {"exec", js_exec},
	    {"id", js_id},
	    {"isRunning", js_is_running},
	    {"metadata", js_metadata},
	    {"version", js_version},
	    {"list", js_list},
	    {"procStart", sbx_node_proc_start},
	    {"procPause", sbx_node_proc_pause},
	    {"procResume", sbx_node_proc_resume},
	    {"procWrite", sbx_node_proc_write},
	    {"procCloseStdin", sbx_node_proc_close_stdin},
	    {"procSignal", sbx_node_proc_signal},
	    {"procWait", sbx_node_proc_wait},
	    {"procPid", sbx_node_proc_pid},
	    {"setAllowNet", sbx_node_set_allow_net},
	    {"fileWrite", sbx_node_file_write},
	    {"fileRead", sbx_node_file_read},
	    {"fileStat", sbx_node_file_stat},
	    {"fileList", sbx_node_file_list},
	    {"fileMkdir", sbx_node_file_mkdir},
	    {"fileRemove", sbx_node_file_remove},
	    {"fileUpload", sbx_node_file_upload},
	    {"fileDownload", sbx_node_file_download},
	};
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		napi_value f;
		SBX_NAPI(
		    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f));
		SBX_NAPI(napi_set_named_property(env, exports, fns[i].name, f));
	}
	sbx_node_fork_guard_install();
	napi_add_env_cleanup_hook(env, cleanup_hook, NULL);
	pthread_once(&atexit_once, register_atexit);
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
