/* The files API and the live allow_net update: each call copies its
 * arguments on the main thread, runs the library call on the thread pool
 * and resolves a Promise (lib/index.js gives them their public shape:
 * sb.files.*, sb.setAllowNet). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

enum file_op {
	OP_WRITE,
	OP_READ,
	OP_STAT,
	OP_LIST,
	OP_MKDIR,
	OP_REMOVE,
	OP_UPLOAD,
	OP_DOWNLOAD,
	OP_ALLOW_NET
};

struct file_ctx {
	enum file_op op;
	sandbox_t *sb;
	struct sbx_node_opts keep; /* owns the copied strings */
	const char *path, *path2;
	void *data; /* write: a copy of the Buffer; read: the library's buffer */
	size_t len;
	unsigned int mode, flags;
	double max_len;
	const char **allow_net; /* NULL: allow everything */
	sandbox_file_info_t *info;
	size_t count;
};

static int file_exec(struct sbx_node_work *w)
{
	struct file_ctx *c = w->ctx;
	switch (c->op) {
	case OP_WRITE:
		return sandbox_file_write(c->sb, c->path, c->data, c->len, c->mode, c->flags);
	case OP_READ:
		return sandbox_file_read(c->sb, c->path, &c->data, &c->len, (size_t)c->max_len, 0);
	case OP_STAT: c->count = 1; return sandbox_file_stat(c->sb, c->path, &c->info, c->flags);
	case OP_LIST: return sandbox_file_list(c->sb, c->path, &c->info, &c->count, 0);
	case OP_MKDIR: return sandbox_file_mkdir(c->sb, c->path, c->mode, c->flags);
	case OP_REMOVE: return sandbox_file_remove(c->sb, c->path, c->flags);
	case OP_UPLOAD: return sandbox_file_upload(c->sb, c->path, c->path2, c->flags);
	case OP_DOWNLOAD: return sandbox_file_download(c->sb, c->path, c->path2, 0);
	case OP_ALLOW_NET: return sandbox_set_allow_net(c->sb, c->allow_net, 0);
	}
	return SANDBOX_E_INVAL;
}

static int set_str(napi_env env, napi_value obj, const char *name, const char *s)
{
	napi_value v;
	if (s)
		return napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v) == napi_ok &&
			       napi_set_named_property(env, obj, name, v) == napi_ok
			   ? 0
			   : -1;
	return napi_get_null(env, &v) == napi_ok &&
		       napi_set_named_property(env, obj, name, v) == napi_ok
		   ? 0
		   : -1;
}

static int set_num(napi_env env, napi_value obj, const char *name, double d)
{
	napi_value v;
	return napi_create_double(env, d, &v) == napi_ok &&
		       napi_set_named_property(env, obj, name, v) == napi_ok
		   ? 0
		   : -1;
}

/* { name, type, mode, size, mtime, uid, gid, linkTarget }; type is the
 * library's number (lib/index.js names it). */
static napi_value info_to_js(napi_env env, const sandbox_file_info_t *i)
{
	napi_value o;
	if (napi_create_object(env, &o) != napi_ok || set_str(env, o, "name", i->name) < 0 ||
	    set_num(env, o, "type", i->type) < 0 || set_num(env, o, "mode", i->mode) < 0 ||
	    set_num(env, o, "size", (double)i->size) < 0 ||
	    set_num(env, o, "mtime", (double)i->mtime) < 0 || set_num(env, o, "uid", i->uid) < 0 ||
	    set_num(env, o, "gid", i->gid) < 0 || set_str(env, o, "linkTarget", i->link_target) < 0)
		return sbx_node_throw_napi(env, "file info object");
	return o;
}

static napi_value file_done(napi_env env, struct sbx_node_work *w)
{
	struct file_ctx *c = w->ctx;
	napi_value v, e;
	void *unused;
	switch (c->op) {
	case OP_READ:
		SBX_NAPI(napi_create_buffer_copy(env, c->len, c->len ? c->data : "", &unused, &v));
		return v;
	case OP_STAT: return info_to_js(env, c->info);
	case OP_LIST:
		SBX_NAPI(napi_create_array_with_length(env, c->count, &v));
		for (size_t i = 0; i < c->count; i++) {
			if (!(e = info_to_js(env, &c->info[i])))
				return NULL;
			SBX_NAPI(napi_set_element(env, v, (uint32_t)i, e));
		}
		return v;
	default: SBX_NAPI(napi_get_undefined(env, &v)); return v;
	}
}

static void file_free(struct sbx_node_work *w)
{
	struct file_ctx *c = w->ctx;
	if (c->op == OP_READ)
		sandbox_buffer_free(c->data);
	else
		free(c->data);
	if (c->info)
		sandbox_file_info_free(c->info, c->count);
	sbx_node_opts_free(&c->keep);
	free(c);
}

static int get_uint_arg(napi_env env, napi_value v, const char *what, unsigned int *out)
{
	double d;
	napi_valuetype t;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_number ||
	    napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 4294967295.0) ||
	    d != (double)(unsigned long long)d) {
		char msg[128];
		snprintf(msg, sizeof(msg), "%s must be an integer between 0 and 4294967295", what);
		sbx_node_type_error(env, msg);
		return -1;
	}
	*out = (unsigned int)d;
	return 0;
}

/* Arguments after the handle, per operation (lib/index.js passes them all,
 * already defaulted). */
static int file_args(napi_env env, struct file_ctx *c, napi_value *a)
{
	bool is;
	switch (c->op) {
	case OP_WRITE: /* path, Buffer, mode, flags */
		if (sbx_node_string_from_js(env, a[0], "path", &c->keep, &c->path) < 0)
			return -1;
		if (napi_is_buffer(env, a[1], &is) != napi_ok || !is) {
			sbx_node_type_error(env, "data must be a Buffer or a string");
			return -1;
		}
		void *p;
		napi_get_buffer_info(env, a[1], &p, &c->len);
		if (!(c->data = malloc(c->len ? c->len : 1))) {
			sbx_node_throw_napi(env, "out of memory");
			return -1;
		}
		memcpy(c->data, p, c->len);
		return get_uint_arg(env, a[2], "mode", &c->mode) < 0 ||
			       get_uint_arg(env, a[3], "flags", &c->flags) < 0
			   ? -1
			   : 0;
	case OP_READ: /* path, maxSize (bytes; 0: the library's default) */
		if (sbx_node_string_from_js(env, a[0], "path", &c->keep, &c->path) < 0)
			return -1;
		if (napi_get_value_double(env, a[1], &c->max_len) != napi_ok ||
		    !(c->max_len >= 0) || c->max_len > 9007199254740991.0) {
			sbx_node_type_error(env, "maxSize must be a non-negative number of bytes");
			return -1;
		}
		return 0;
	case OP_STAT:
	case OP_REMOVE: /* path, flags */
		return sbx_node_string_from_js(env, a[0], "path", &c->keep, &c->path) < 0 ||
			       get_uint_arg(env, a[1], "flags", &c->flags) < 0
			   ? -1
			   : 0;
	case OP_LIST: return sbx_node_string_from_js(env, a[0], "path", &c->keep, &c->path);
	case OP_MKDIR: /* path, mode, flags */
		return sbx_node_string_from_js(env, a[0], "path", &c->keep, &c->path) < 0 ||
			       get_uint_arg(env, a[1], "mode", &c->mode) < 0 ||
			       get_uint_arg(env, a[2], "flags", &c->flags) < 0
			   ? -1
			   : 0;
	case OP_UPLOAD: /* hostPath, guestPath, flags */
		return sbx_node_string_from_js(env, a[0], "hostPath", &c->keep, &c->path) < 0 ||
			       sbx_node_string_from_js(env, a[1], "guestPath", &c->keep,
						       &c->path2) < 0 ||
			       get_uint_arg(env, a[2], "flags", &c->flags) < 0
			   ? -1
			   : 0;
	case OP_DOWNLOAD: /* guestPath, hostPath */
		return sbx_node_string_from_js(env, a[0], "guestPath", &c->keep, &c->path) < 0 ||
			       sbx_node_string_from_js(env, a[1], "hostPath", &c->keep, &c->path2) <
				   0
			   ? -1
			   : 0;
	case OP_ALLOW_NET: { /* array of patterns, or undefined/null: everything */
		napi_valuetype t;
		if (napi_typeof(env, a[0], &t) != napi_ok)
			return -1;
		if (t == napi_undefined || t == napi_null)
			return 0;
		return sbx_node_string_array_from_js(env, a[0], "allowNet", &c->keep,
						     &c->allow_net);
	}
	}
	return -1;
}

static napi_value file_call(napi_env env, napi_callback_info info, enum file_op op,
			    const char *name)
{
	napi_value a[5];
	if (sbx_node_get_args(env, info, 5, a) < 0)
		return NULL;
	struct sbx_node_sandbox *s = sbx_node_get_sandbox(env, a[0]);
	if (!s)
		return NULL;
	struct file_ctx *c = calloc(1, sizeof(*c));
	struct sbx_node_work *w = calloc(1, sizeof(*w));
	if (!c || !w) {
		free(c);
		free(w);
		return sbx_node_throw_napi(env, "out of memory");
	}
	c->op = op;
	c->sb = s->sb;
	w->ctx = c;
	w->exec = file_exec;
	w->done = file_done;
	w->free_fn = file_free;
	if (file_args(env, c, a + 1) < 0) {
		file_free(w);
		free(w);
		return NULL;
	}
	/* the handle stays referenced (the sandbox alive) until the call ends */
	return sbx_node_queue(env, w, name, a[0], NULL);
}

#define FILE_FN(fn, op, name)                                                                      \
	napi_value fn(napi_env env, napi_callback_info info)                                       \
	{                                                                                          \
		return file_call(env, info, op, name);                                             \
	}

FILE_FN(sbx_node_file_write, OP_WRITE, "libsandbox file write")
FILE_FN(sbx_node_file_read, OP_READ, "libsandbox file read")
FILE_FN(sbx_node_file_stat, OP_STAT, "libsandbox file stat")
FILE_FN(sbx_node_file_list, OP_LIST, "libsandbox file list")
FILE_FN(sbx_node_file_mkdir, OP_MKDIR, "libsandbox file mkdir")
FILE_FN(sbx_node_file_remove, OP_REMOVE, "libsandbox file remove")
FILE_FN(sbx_node_file_upload, OP_UPLOAD, "libsandbox file upload")
FILE_FN(sbx_node_file_download, OP_DOWNLOAD, "libsandbox file download")
FILE_FN(sbx_node_set_allow_net, OP_ALLOW_NET, "libsandbox set allow_net")
