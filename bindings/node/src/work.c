/* Async work returning Promises, and library errors as JS errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

static const char *const code_names[] = {
    "SANDBOX_OK",	  "SANDBOX_E_INVAL",	   "SANDBOX_E_NOMEM",	"SANDBOX_E_FLAGS",
    "SANDBOX_E_VERSION",  "SANDBOX_E_UNSUPPORTED", "SANDBOX_E_IMAGE",	"SANDBOX_E_LIBVIRT",
    "SANDBOX_E_BOOT",	  "SANDBOX_E_PROTOCOL",	   "SANDBOX_E_DEAD",	"SANDBOX_E_TIMEOUT",
    "SANDBOX_E_NOTFOUND", "SANDBOX_E_EXEC",	   "SANDBOX_E_IO",	"SANDBOX_E_BUSY",
    "SANDBOX_E_ACCEL",	  "SANDBOX_E_PERM",	   "SANDBOX_E_ABORTED", "SANDBOX_E_ISDIR",
    "SANDBOX_E_NOTDIR",	  "SANDBOX_E_EXISTS",	   "SANDBOX_E_NOSPACE", "SANDBOX_E_NOTEMPTY",
    "SANDBOX_E_TOOBIG"};

const char *sbx_node_code_name(int code)
{
	if (code <= 0 && -code < (int)(sizeof(code_names) / sizeof(code_names[0])))
		return code_names[-code];
	return "SANDBOX_E_UNKNOWN";
}

napi_value sbx_node_throw_napi(napi_env env, const char *what)
{
	bool pending = false;
	napi_is_exception_pending(env, &pending);
	if (!pending) {
		char msg[512];
		snprintf(msg, sizeof(msg), "libsandbox addon: N-API call failed: %s", what);
		napi_throw_error(env, NULL, msg);
	}
	return NULL;
}

napi_value sbx_node_type_error(napi_env env, const char *msg)
{
	napi_throw_type_error(env, NULL, msg);
	return NULL;
}

napi_value sbx_node_lib_error(napi_env env, int code, const char *message)
{
	napi_value jcode, jmsg, err, errno_v;
	const char *text = message && message[0] ? message : sandbox_strerror(code);
	if (napi_create_string_utf8(env, sbx_node_code_name(code), NAPI_AUTO_LENGTH, &jcode) !=
		napi_ok ||
	    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &jmsg) != napi_ok ||
	    napi_create_error(env, jcode, jmsg, &err) != napi_ok ||
	    napi_create_int32(env, code, &errno_v) != napi_ok ||
	    napi_set_named_property(env, err, "errno", errno_v) != napi_ok)
		return NULL;
	return err;
}

static void execute(napi_env env, void *data)
{
	(void)env;
	struct sbx_node_work *w = data;
	w->rc = w->exec(w);
	if (w->rc < 0) /* thread-local: copy it on this thread */
		snprintf(w->err, sizeof(w->err), "%s", sandbox_last_error());
}

static void complete(napi_env env, napi_status status, void *data)
{
	struct sbx_node_work *w = data;
	napi_value v = NULL;
	if (status != napi_ok) {
		w->rc = SANDBOX_E_ABORTED;
		snprintf(w->err, sizeof(w->err), "the operation was cancelled");
	}
	if (w->rc >= 0 && w->done)
		v = w->done(env, w);
	else if (w->rc >= 0)
		napi_get_undefined(env, &v);
	if (w->rc >= 0 && v)
		napi_resolve_deferred(env, w->deferred, v);
	else {
		napi_value err;
		bool pending = false;
		napi_is_exception_pending(env, &pending);
		if (pending)
			napi_get_and_clear_last_exception(env, &err);
		else
			err = sbx_node_lib_error(env, w->rc < 0 ? w->rc : SANDBOX_E_NOMEM, w->err);
		napi_reject_deferred(env, w->deferred, err);
	}
	for (int i = 0; i < 2; i++)
		if (w->hold[i])
			napi_delete_reference(env, w->hold[i]);
	if (w->free_fn)
		w->free_fn(w);
	napi_delete_async_work(env, w->work);
	free(w);
}

napi_value sbx_node_queue(napi_env env, struct sbx_node_work *w, const char *name, napi_value hold0,
			  napi_value hold1)
{
	napi_value promise, resource_name;
	if (napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
	    napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name) != napi_ok) {
		if (w->free_fn)
			w->free_fn(w);
		free(w);
		return sbx_node_throw_napi(env, "create promise");
	}
	if (hold0)
		napi_create_reference(env, hold0, 1, &w->hold[0]);
	if (hold1)
		napi_create_reference(env, hold1, 1, &w->hold[1]);
	if (napi_create_async_work(env, NULL, resource_name, execute, complete, w, &w->work) !=
		napi_ok ||
	    napi_queue_async_work(env, w->work) != napi_ok)
		return sbx_node_throw_napi(env, "queue async work");
	return promise;
}
