/* JS values -> owned C copies of the library's option structs, and
 * results -> JS objects. lib/index.js has already normalised the shapes
 * (camelCase objects to arrays); type mistakes here are TypeErrors, and
 * every value check belongs to the library, so its message is the same
 * as from C, Python and the CLI. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"

static int keep_ptr(void ***arr, size_t *n, size_t *cap, void *p)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		void **na = realloc(*arr, nc * sizeof(*na));
		if (!na)
			return -1;
		*arr = na;
		*cap = nc;
	}
	(*arr)[(*n)++] = p;
	return 0;
}

static void *keep_block(struct sbx_node_opts *k, size_t size)
{
	void *p = calloc(1, size ? size : 1);
	if (p && keep_ptr(&k->blocks, &k->nblocks, &k->capblocks, p) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

/* Present = neither undefined nor null. */
static int get_prop(napi_env env, napi_value obj, const char *name, napi_value *v, int *present)
{
	napi_valuetype t;
	if (napi_get_named_property(env, obj, name, v) != napi_ok ||
	    napi_typeof(env, *v, &t) != napi_ok)
		return -1;
	*present = t != napi_undefined && t != napi_null;
	return 0;
}

static int fail_type(napi_env env, const char *what, const char *expected)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "%s must be %s", what, expected);
	napi_throw_type_error(env, NULL, msg);
	return -1;
}

static int to_string(napi_env env, napi_value v, const char *what, struct sbx_node_opts *k,
		     char **out)
{
	napi_valuetype t;
	size_t len;
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_string)
		return fail_type(env, what, "a string");
	if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok)
		return -1;
	char *s = malloc(len + 1);
	if (!s || keep_ptr((void ***)&k->strings, &k->nstrings, &k->capstrings, s) < 0) {
		free(s);
		return fail_type(env, what, "allocatable (out of memory)");
	}
	napi_get_value_string_utf8(env, v, s, len + 1, &len);
	if (strlen(s) != len)
		return fail_type(env, what, "a string without NUL characters");
	*out = s;
	return 0;
}

static int opt_string(napi_env env, napi_value obj, const char *name, struct sbx_node_opts *k,
		      const char **out)
{
	napi_value v;
	int present;
	char *s;
	if (get_prop(env, obj, name, &v, &present) < 0)
		return -1;
	if (!present)
		return 0;
	if (to_string(env, v, name, k, &s) < 0)
		return -1;
	*out = s;
	return 0;
}

static int opt_uint(napi_env env, napi_value obj, const char *name, unsigned int *out)
{
	napi_value v;
	int present;
	napi_valuetype t;
	double d;
	if (get_prop(env, obj, name, &v, &present) < 0)
		return -1;
	if (!present)
		return 0;
	/* range first: casting a negative or huge double is undefined */
	if (napi_typeof(env, v, &t) != napi_ok || t != napi_number ||
	    napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 4294967295.0) ||
	    d != (double)(unsigned long long)d)
		return fail_type(env, name, "an integer between 0 and 4294967295");
	*out = (unsigned int)d;
	return 0;
}

static int array_length(napi_env env, napi_value v, const char *what, uint32_t *n)
{
	bool is;
	if (napi_is_array(env, v, &is) != napi_ok || !is)
		return fail_type(env, what, "an array");
	return napi_get_array_length(env, v, n) == napi_ok ? 0 : -1;
}

/* A NULL-terminated char* array (an empty JS array gives just the NULL). */
static int string_array(napi_env env, napi_value v, const char *what, struct sbx_node_opts *k,
			const char ***out)
{
	uint32_t n;
	if (array_length(env, v, what, &n) < 0)
		return -1;
	const char **a = keep_block(k, ((size_t)n + 1) * sizeof(*a));
	if (!a)
		return fail_type(env, what, "allocatable (out of memory)");
	for (uint32_t i = 0; i < n; i++) {
		napi_value e;
		char *s;
		if (napi_get_element(env, v, i, &e) != napi_ok ||
		    to_string(env, e, what, k, &s) < 0)
			return -1;
		a[i] = s;
	}
	*out = a;
	return 0;
}

static int opt_string_array(napi_env env, napi_value obj, const char *name, struct sbx_node_opts *k,
			    const char *const **out)
{
	napi_value v;
	int present;
	const char **a;
	if (get_prop(env, obj, name, &v, &present) < 0)
		return -1;
	if (!present)
		return 0;
	if (string_array(env, v, name, k, &a) < 0)
		return -1;
	*out = a;
	return 0;
}

static int get_bool(napi_env env, napi_value obj, const char *name, int *out)
{
	napi_value v;
	int present;
	bool b = false;
	if (get_prop(env, obj, name, &v, &present) < 0)
		return -1;
	if (present && napi_get_value_bool(env, v, &b) != napi_ok)
		return fail_type(env, name, "a boolean");
	*out = b;
	return 0;
}

static int metadata(napi_env env, napi_value obj, struct sbx_node_opts *k)
{
	napi_value v;
	int present;
	uint32_t n;
	if (get_prop(env, obj, "metadata", &v, &present) < 0)
		return -1;
	if (!present)
		return 0;
	if (array_length(env, v, "metadata", &n) < 0)
		return -1;
	sandbox_kv_t *kv = keep_block(k, (size_t)n * sizeof(*kv));
	if (!kv)
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		napi_value pair, key, val;
		char *ks, *vs;
		if (napi_get_element(env, v, i, &pair) != napi_ok ||
		    napi_get_element(env, pair, 0, &key) != napi_ok ||
		    napi_get_element(env, pair, 1, &val) != napi_ok ||
		    to_string(env, key, "metadata key", k, &ks) < 0 ||
		    to_string(env, val, "metadata value", k, &vs) < 0)
			return -1;
		kv[i] = (sandbox_kv_t){ks, vs};
	}
	k->o.metadata = kv;
	k->o.metadata_count = n;
	return 0;
}

static int secrets(napi_env env, napi_value obj, struct sbx_node_opts *k)
{
	napi_value v;
	int present;
	uint32_t n;
	if (get_prop(env, obj, "secrets", &v, &present) < 0)
		return -1;
	if (!present)
		return 0;
	if (array_length(env, v, "secrets", &n) < 0)
		return -1;
	sandbox_secret_t *s = keep_block(k, (size_t)n * sizeof(*s));
	k->secret_values = calloc(n ? n : 1, sizeof(char *));
	if (!s || !k->secret_values)
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		napi_value e;
		int body = 0;
		if (napi_get_element(env, v, i, &e) != napi_ok ||
		    opt_string(env, e, "name", k, &s[i].name) < 0 ||
		    opt_string(env, e, "value", k, &s[i].value) < 0 ||
		    opt_string_array(env, e, "hosts", k, &s[i].hosts) < 0 ||
		    get_bool(env, e, "substituteBody", &body) < 0)
			return -1;
		if (s[i].value) /* wiped when the options are freed */
			k->secret_values[k->nsecret_values++] = (char *)s[i].value;
		s[i].flags = body ? SANDBOX_SECRET_SUBSTITUTE_BODY : 0;
	}
	k->o.secrets = s;
	k->o.secrets_count = n;
	return 0;
}

static int volumes(napi_env env, napi_value obj, struct sbx_node_opts *k)
{
	napi_value v;
	int present;
	uint32_t n;
	if (get_prop(env, obj, "volumes", &v, &present) < 0)
		return -1;
	if (!present)
		return 0;
	if (array_length(env, v, "volumes", &n) < 0)
		return -1;
	sandbox_volume_t *vol = keep_block(k, (size_t)n * sizeof(*vol));
	if (!vol)
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		napi_value e;
		int ro = 0;
		if (napi_get_element(env, v, i, &e) != napi_ok ||
		    opt_string(env, e, "hostPath", k, &vol[i].host_path) < 0 ||
		    opt_string(env, e, "guestPath", k, &vol[i].guest_path) < 0 ||
		    get_bool(env, e, "readonly", &ro) < 0)
			return -1;
		vol[i].flags = ro ? SANDBOX_VOLUME_READONLY : 0;
	}
	k->o.volumes = vol;
	k->o.volumes_count = n;
	return 0;
}

int sbx_node_opts_from_js(napi_env env, napi_value obj, struct sbx_node_opts *k)
{
	unsigned int accel = SANDBOX_ACCEL_AUTO;
	sandbox_options_init(&k->o, SANDBOX_OPTIONS_VERSION);
	if (opt_string(env, obj, "image", k, &k->o.image) < 0 ||
	    opt_uint(env, obj, "memoryMb", &k->o.memory_mb) < 0 ||
	    opt_uint(env, obj, "vcpus", &k->o.vcpus) < 0 ||
	    opt_string_array(env, obj, "env", k, &k->o.env) < 0 ||
	    opt_string(env, obj, "workdir", k, &k->o.workdir) < 0 ||
	    opt_uint(env, obj, "timeout", &k->o.timeout_s) < 0 || metadata(env, obj, k) < 0 ||
	    opt_string(env, obj, "libvirtUri", k, &k->o.libvirt_uri) < 0 ||
	    opt_string(env, obj, "stateDir", k, &k->o.state_dir) < 0 ||
	    opt_uint(env, obj, "accel", &accel) < 0 ||
	    opt_string(env, obj, "auditLog", k, &k->o.audit_log) < 0 || secrets(env, obj, k) < 0 ||
	    opt_string_array(env, obj, "allowNet", k, &k->o.allow_net) < 0 ||
	    volumes(env, obj, k) < 0 ||
	    opt_uint(env, obj, "bootTimeout", &k->o.boot_timeout_s) < 0 ||
	    opt_string_array(env, obj, "dnsServers", k, &k->o.dns_servers) < 0 ||
	    opt_string(env, obj, "tlsCaFile", k, &k->o.tls_ca_file) < 0 ||
	    opt_string_array(env, obj, "tlsPassthrough", k, &k->o.tls_passthrough) < 0 ||
	    opt_uint(env, obj, "netFlags", &k->o.net_flags) < 0)
		return -1;
	k->o.accel = (sandbox_accel_t)accel;
	return 0;
}

int sbx_node_exec_opts_from_js(napi_env env, napi_value obj, struct sbx_node_opts *k)
{
	napi_value v;
	int present;
	sandbox_exec_options_init(&k->e, SANDBOX_EXEC_OPTIONS_VERSION);
	if (opt_string_array(env, obj, "env", k, &k->e.env) < 0 ||
	    opt_string(env, obj, "cwd", k, &k->e.cwd) < 0 ||
	    opt_uint(env, obj, "timeoutMs", &k->e.timeout_ms) < 0 ||
	    get_prop(env, obj, "stdin", &v, &present) < 0)
		return -1;
	if (present) {
		bool is;
		void *data;
		size_t len;
		if (napi_is_buffer(env, v, &is) != napi_ok || !is)
			return fail_type(env, "stdin", "a Buffer");
		napi_get_buffer_info(env, v, &data, &len);
		k->stdin_copy = malloc(len ? len : 1);
		if (!k->stdin_copy)
			return -1;
		memcpy(k->stdin_copy, data, len);
		k->e.stdin_data = k->stdin_copy;
		k->e.stdin_len = len;
	}
	unsigned int cap = 0;
	if (get_prop(env, obj, "maxCapture", &v, &present) < 0 ||
	    (present && opt_uint(env, obj, "maxCapture", &cap) < 0))
		return -1;
	if (present)
		k->e.max_capture = cap;
	return 0;
}

int sbx_node_string_from_js(napi_env env, napi_value v, const char *what, struct sbx_node_opts *k,
			    const char **out)
{
	char *s;
	if (to_string(env, v, what, k, &s) < 0)
		return -1;
	*out = s;
	return 0;
}

int sbx_node_string_array_from_js(napi_env env, napi_value v, const char *what,
				  struct sbx_node_opts *k, const char ***out)
{
	return string_array(env, v, what, k, out);
}

int sbx_node_argv_from_js(napi_env env, napi_value arr, struct sbx_node_opts *k, const char ***argv)
{
	return string_array(env, arr, "command", k, argv);
}

void sbx_node_opts_free(struct sbx_node_opts *k)
{
	for (size_t i = 0; i < k->nsecret_values; i++) {
		volatile char *p = k->secret_values[i];
		while (*p)
			*p++ = 0;
	}
	free(k->secret_values);
	for (size_t i = 0; i < k->nstrings; i++)
		free(k->strings[i]);
	free(k->strings);
	for (size_t i = 0; i < k->nblocks; i++)
		free(k->blocks[i]);
	free(k->blocks);
	free(k->stdin_copy);
	memset(k, 0, sizeof(*k));
}

static int set_number(napi_env env, napi_value obj, const char *name, double d)
{
	napi_value v;
	return napi_create_double(env, d, &v) == napi_ok &&
		       napi_set_named_property(env, obj, name, v) == napi_ok
		   ? 0
		   : -1;
}

static int set_buffer(napi_env env, napi_value obj, const char *name, const void *p, size_t n)
{
	napi_value v;
	void *unused;
	return napi_create_buffer_copy(env, n, n ? p : "", &unused, &v) == napi_ok &&
		       napi_set_named_property(env, obj, name, v) == napi_ok
		   ? 0
		   : -1;
}

napi_value sbx_node_result_to_js(napi_env env, const sandbox_result_t *r)
{
	napi_value obj, b;
	size_t no, ne;
	const void *po = sandbox_result_stdout(r, &no), *pe = sandbox_result_stderr(r, &ne);
	if (napi_create_object(env, &obj) != napi_ok ||
	    set_number(env, obj, "exitCode", sandbox_result_exit_code(r)) < 0 ||
	    set_number(env, obj, "signal", sandbox_result_signal(r)) < 0 ||
	    napi_get_boolean(env, sandbox_result_timed_out(r) != 0, &b) != napi_ok ||
	    napi_set_named_property(env, obj, "timedOut", b) != napi_ok ||
	    set_number(env, obj, "durationMs", sandbox_result_duration_ms(r)) < 0 ||
	    set_number(env, obj, "stdoutTotal",
		       (double)sandbox_result_output_total(r, SANDBOX_STDOUT)) < 0 ||
	    set_number(env, obj, "stderrTotal",
		       (double)sandbox_result_output_total(r, SANDBOX_STDERR)) < 0 ||
	    set_buffer(env, obj, "stdout", po, no) < 0 ||
	    set_buffer(env, obj, "stderr", pe, ne) < 0)
		return sbx_node_throw_napi(env, "result object");
	return obj;
}
