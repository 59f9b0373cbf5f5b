/* Option structs: init functions and validation. Validation happens before
 * any resource is taken, so a bad option never leaves anything behind. */
#include "options.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "http1.h"
#include "netpolicy.h"
#include "placeholder.h"
#include "proto.h"

/* Size of the options struct each version had: a caller compiled against
 * an older header passes a shorter struct, and nothing past its end may be
 * read or written. */
static size_t options_size(unsigned int version)
{
	switch (version) {
	case 1: return offsetof(sandbox_options_t, dns_servers);
	case 2: return sizeof(sandbox_options_t);
	}
	return 0;
}

SANDBOX_API int sandbox_options_init(sandbox_options_t *opts, unsigned int version)
{
	if (!opts)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_options_init: opts is NULL");
	size_t size = options_size(version);
	if (!size)
		return sbx_fail(
		    SANDBOX_E_VERSION,
		    "sandbox_options_init: version %u not supported (this library knows 1..%u)",
		    version, SANDBOX_OPTIONS_VERSION);
	sandbox_options_t d = SANDBOX_OPTIONS_INIT;
	d.version = version;
	memcpy(opts, &d, size);
	return 0;
}

int sbx_options_upgrade(const sandbox_options_t *in, sandbox_options_t *out)
{
	sandbox_options_t d = SANDBOX_OPTIONS_INIT;
	*out = d;
	size_t size = options_size(in->version);
	if (!size)
		return sbx_fail(SANDBOX_E_VERSION,
				"options version %u not supported (this library knows 1..%u); "
				"initialise options with sandbox_options_init()",
				in->version, SANDBOX_OPTIONS_VERSION);
	memcpy(out, in, size);
	return 0;
}

SANDBOX_API int sandbox_exec_options_init(sandbox_exec_options_t *opts, unsigned int version)
{
	if (!opts)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_exec_options_init: opts is NULL");
	if (version != SANDBOX_EXEC_OPTIONS_VERSION)
		return sbx_fail(
		    SANDBOX_E_VERSION,
		    "sandbox_exec_options_init: version %u not supported (this library knows %u)",
		    version, SANDBOX_EXEC_OPTIONS_VERSION);
	sandbox_exec_options_t d = SANDBOX_EXEC_OPTIONS_INIT;
	*opts = d;
	return 0;
}

int sbx_env_name_valid(const char *s, size_t n)
{
	if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return 0;
	}
	return 1;
}

int sbx_env_validate(const char *const *env, const char *what)
{
	if (!env)
		return 0;
	for (size_t i = 0; env[i]; i++) {
		if (i >= SBX_EXEC_MAX_ENV / 2)
			return sbx_fail(SANDBOX_E_INVAL, "%s: more than %u entries", what,
					SBX_EXEC_MAX_ENV / 2);
		const char *eq = strchr(env[i], '=');
		if (!eq || !sbx_env_name_valid(env[i], (size_t)(eq - env[i])))
			return sbx_fail(SANDBOX_E_INVAL,
					"%s[%zu]: '%.64s' is not NAME=VALUE with NAME of "
					"[A-Za-z_][A-Za-z0-9_]*",
					what, i, env[i]);
	}
	return 0;
}

static int check_abs_path(const char *p, const char *what)
{
	if (!p)
		return 0;
	if (p[0] != '/')
		return sbx_fail(SANDBOX_E_INVAL, "%s must be an absolute path, got '%.200s'", what,
				p);
	if (strlen(p) > SBX_MAX_STRING)
		return sbx_fail(SANDBOX_E_INVAL, "%s is longer than %u bytes", what,
				SBX_MAX_STRING);
	return 0;
}

static int validate_metadata(const sandbox_options_t *o)
{
	if (o->metadata_count && !o->metadata)
		return sbx_fail(SANDBOX_E_INVAL, "metadata is NULL but metadata_count is %zu",
				o->metadata_count);
	if (o->metadata_count > SBX_MAX_METADATA)
		return sbx_fail(SANDBOX_E_INVAL, "metadata: more than %u pairs", SBX_MAX_METADATA);
	for (size_t i = 0; i < o->metadata_count; i++) {
		const sandbox_kv_t *kv = &o->metadata[i];
		if (!kv->key || !kv->key[0] || !kv->value)
			return sbx_fail(SANDBOX_E_INVAL,
					"metadata[%zu]: key and value are required", i);
		if (strlen(kv->key) > 256 || strlen(kv->value) > SBX_MAX_STRING)
			return sbx_fail(SANDBOX_E_INVAL, "metadata[%zu]: key or value too long", i);
		for (size_t k = 0; k < i; k++)
			if (!strcmp(o->metadata[k].key, kv->key))
				return sbx_fail(SANDBOX_E_INVAL,
						"metadata: key '%.64s' given twice", kv->key);
	}
	return 0;
}

/* Options that later work implements are validated for shape now, then
 * refused: silently ignoring a security option would be worse than
 * failing. */
/* Malformed patterns are an error naming the pattern, even while the
 * options that use them are not implemented yet. */
static int check_patterns(const char *const *list, const char *what)
{
	struct sbx_netpolicy p;
	int rc = sbx_netpolicy_parse(list, what, &p);
	sbx_netpolicy_free(&p);
	return rc;
}

static int env_has_name(const char *const *env, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; env && env[i]; i++)
		if (!strncmp(env[i], name, n) && env[i][n] == '=')
			return 1;
	return 0;
}

static int validate_secret(const sandbox_options_t *o, size_t i)
{
	const sandbox_secret_t *s = &o->secrets[i];
	if (!s->name || !sbx_secret_name_valid(s->name))
		return sbx_fail(SANDBOX_E_INVAL,
				"secrets[%zu]: invalid variable name (letters, digits and '_', "
				"not starting with a digit, at most %u characters)",
				i, SBX_SECRET_NAME_MAX);
	if (!s->value || !s->value[0] || !s->hosts || !s->hosts[0])
		return sbx_fail(SANDBOX_E_INVAL,
				"secrets[%zu] (%s): a value and a non-empty host list are required", i,
				s->name);
	if (strlen(s->value) > SBX_HTTP_VALUE_MAX || strpbrk(s->value, "\r\n"))
		return sbx_fail(SANDBOX_E_INVAL,
				"secrets[%zu] (%s): the value must be at most %u bytes with no CR or "
				"LF",
				i, s->name, SBX_HTTP_VALUE_MAX);
	if (s->flags & ~SANDBOX_SECRET_SUBSTITUTE_BODY)
		return sbx_fail(SANDBOX_E_FLAGS, "secrets[%zu] (%s): unknown flags 0x%x", i, s->name,
				s->flags & ~SANDBOX_SECRET_SUBSTITUTE_BODY);
	for (size_t k = 0; k < i; k++)
		if (!strcmp(o->secrets[k].name, s->name))
			return sbx_fail(SANDBOX_E_INVAL, "secrets: %s given twice", s->name);
	if (env_has_name(o->env, s->name))
		return sbx_fail(SANDBOX_E_INVAL,
				"secrets[%zu] (%s): the same name is also set in env", i, s->name);
	return check_patterns(s->hosts, "secret hosts");
}

static int validate_net(const sandbox_options_t *o)
{
	int rc;
	if (o->secrets_count && !o->secrets)
		return sbx_fail(SANDBOX_E_INVAL, "secrets is NULL but secrets_count is %zu",
				o->secrets_count);
	if (o->secrets_count > SBX_HTTP_MAX_SECRETS)
		return sbx_fail(SANDBOX_E_INVAL, "more than %u secrets", SBX_HTTP_MAX_SECRETS);
	for (size_t i = 0; i < o->secrets_count; i++)
		if ((rc = validate_secret(o, i)))
			return rc;
	if (o->allow_net && (rc = check_patterns(o->allow_net, "allow_net")))
		return rc;
	if ((rc = sbx_dns_servers_validate(o->dns_servers, NULL, 0)))
		return rc;
	if (o->tls_passthrough && (rc = check_patterns(o->tls_passthrough, "tls_passthrough")))
		return rc;
	if ((rc = check_abs_path(o->tls_ca_file, "tls_ca_file")))
		return rc;
	if (o->tls_ca_file && access(o->tls_ca_file, R_OK) != 0)
		return sbx_fail_errno(SANDBOX_E_INVAL, errno, "tls_ca_file '%.200s'", o->tls_ca_file);
	if (o->net_flags & ~SANDBOX_NET_BLOCK_MISDIRECTED)
		return sbx_fail(SANDBOX_E_FLAGS, "net_flags: unknown bits 0x%x",
				o->net_flags & ~SANDBOX_NET_BLOCK_MISDIRECTED);
	if (o->volumes_count && !o->volumes)
		return sbx_fail(SANDBOX_E_INVAL, "volumes is NULL but volumes_count is %zu",
				o->volumes_count);
	return 0;
}

/* Guest mount points must be plain absolute paths: no ".", ".." or empty
 * components, no trailing slash, so that comparing strings compares
 * places in the guest tree. */
static int guest_path_normal(const char *p)
{
	if (p[0] != '/' || !p[1] || p[strlen(p) - 1] == '/')
		return 0;
	for (const char *c = p + 1; *c;) {
		size_t n = strcspn(c, "/");
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		c += n;
		if (*c == '/')
			c++;
	}
	return 1;
}

static int is_under(const char *p, const char *dir)
{
	size_t n = strlen(dir);
	return !strncmp(p, dir, n) && (p[n] == '\0' || p[n] == '/');
}

/* The guest's own system: a volume there would hide (or replace) what
 * the agent and every command rely on. /proc, /sys and /dev are kernel
 * filesystems, so nothing may go below them either. */
static int guest_path_reserved(const char *p)
{
	static const char *const exact[] = {"/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64"};
	static const char *const tree[] = {"/proc", "/sys", "/dev"};
	for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
		if (!strcmp(p, exact[i]))
			return 1;
	for (size_t i = 0; i < sizeof tree / sizeof tree[0]; i++)
		if (is_under(p, tree[i]))
			return 1;
	return 0;
}

static int validate_volume(const sandbox_options_t *o, size_t i)
{
	const sandbox_volume_t *v = &o->volumes[i];
	if (!v->host_path || !v->guest_path)
		return sbx_fail(SANDBOX_E_INVAL,
				"volumes[%zu]: host_path and guest_path are required", i);
	if (v->flags & ~SANDBOX_VOLUME_READONLY)
		return sbx_fail(SANDBOX_E_FLAGS, "volumes[%zu]: unknown flags 0x%x", i,
				v->flags & ~SANDBOX_VOLUME_READONLY);
	if (v->host_path[0] != '/' || strlen(v->host_path) > SBX_MAX_STRING)
		return sbx_fail(SANDBOX_E_INVAL,
				"volumes[%zu]: host_path must be an absolute path, got '%.200s'", i,
				v->host_path);
	struct stat st;
	if (stat(v->host_path, &st) != 0)
		return sbx_fail(SANDBOX_E_NOTFOUND,
				"volumes[%zu]: host_path '%.200s' does not exist", i, v->host_path);
	if (!S_ISDIR(st.st_mode))
		return sbx_fail(SANDBOX_E_NOTDIR,
				"volumes[%zu]: host_path '%.200s' is not a directory", i,
				v->host_path);
	if (!strcmp(v->guest_path, "/"))
		return sbx_fail(SANDBOX_E_INVAL,
				"volumes[%zu]: guest_path '/' is a system path of the guest", i);
	if (strlen(v->guest_path) > SBX_MAX_STRING || !guest_path_normal(v->guest_path))
		return sbx_fail(SANDBOX_E_INVAL,
				"volumes[%zu]: guest_path must be an absolute path without '.', "
				"'..', '//' or a trailing '/', got '%.200s'",
				i, v->guest_path);
	if (guest_path_reserved(v->guest_path))
		return sbx_fail(SANDBOX_E_INVAL,
				"volumes[%zu]: guest_path '%.200s' is a system path of the guest",
				i, v->guest_path);
	for (size_t k = 0; k < i; k++)
		if (!strcmp(o->volumes[k].guest_path, v->guest_path))
			return sbx_fail(SANDBOX_E_INVAL,
					"volumes[%zu]: guest_path '%.200s' is already used by "
					"volumes[%zu]",
					i, v->guest_path, k);
	return 0;
}

static int validate_volumes(const sandbox_options_t *o)
{
	if (o->volumes_count && !o->volumes)
		return sbx_fail(SANDBOX_E_INVAL, "volumes is NULL but volumes_count is %zu",
				o->volumes_count);
	if (o->volumes_count > SBX_MAX_VOLUMES)
		return sbx_fail(SANDBOX_E_INVAL, "too many volumes: %zu (at most %u)",
				o->volumes_count, SBX_MAX_VOLUMES);
	for (size_t i = 0; i < o->volumes_count; i++) {
		int rc = validate_volume(o, i);
		if (rc)
			return rc;
	}
	return 0;
}

int sbx_options_validate(const sandbox_options_t *o)
{
	if (o->memory_mb < SBX_MIN_MEMORY_MB || o->memory_mb > SBX_MAX_MEMORY_MB)
		return sbx_fail(SANDBOX_E_INVAL, "memory_mb must be %u..%u, got %u",
				SBX_MIN_MEMORY_MB, SBX_MAX_MEMORY_MB, o->memory_mb);
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	unsigned long long host_mb =
	    pages > 0 && page > 0 ? (unsigned long long)pages * (unsigned long long)page >> 20 : 0;
	if (host_mb && o->memory_mb > host_mb)
		return sbx_fail(SANDBOX_E_INVAL,
				"memory_mb %u is more than this host's %llu MiB of RAM",
				o->memory_mb, host_mb);
	if (o->vcpus < 1 || o->vcpus > SBX_MAX_VCPUS)
		return sbx_fail(SANDBOX_E_INVAL, "vcpus must be 1..%u, got %u", SBX_MAX_VCPUS,
				o->vcpus);
	if (o->accel != SANDBOX_ACCEL_AUTO && o->accel != SANDBOX_ACCEL_KVM &&
	    o->accel != SANDBOX_ACCEL_TCG)
		return sbx_fail(SANDBOX_E_INVAL, "accel: unknown value %d", (int)o->accel);
	if (o->boot_timeout_s < 1 || o->boot_timeout_s > 3600)
		return sbx_fail(SANDBOX_E_INVAL, "boot_timeout_s must be 1..3600, got %u",
				o->boot_timeout_s);
	int rc;
	if ((rc = sbx_env_validate(o->env, "env")) ||
	    (rc = check_abs_path(o->workdir, "workdir")) ||
	    (rc = check_abs_path(o->state_dir, "state_dir")) ||
	    (rc = check_abs_path(o->image, "image")) || (rc = validate_metadata(o)) ||
	    (rc = validate_volumes(o)))
		return rc;
	if (o->libvirt_uri && (!o->libvirt_uri[0] || strlen(o->libvirt_uri) > SBX_MAX_STRING))
		return sbx_fail(SANDBOX_E_INVAL, "libvirt_uri is empty or too long");
	if (o->audit_log && !o->audit_log[0])
		return sbx_fail(SANDBOX_E_INVAL, "audit_log is an empty path");
	return validate_net(o);
}

int sbx_exec_options_validate(const sandbox_exec_options_t *o)
{
	if (o->version != SANDBOX_EXEC_OPTIONS_VERSION)
		return sbx_fail(SANDBOX_E_VERSION,
				"exec options version %u not supported (this library knows %u)",
				o->version, SANDBOX_EXEC_OPTIONS_VERSION);
	if (o->stdin_len && !o->stdin_data)
		return sbx_fail(SANDBOX_E_INVAL, "stdin_data is NULL but stdin_len is %zu",
				o->stdin_len);
	int rc = sbx_env_validate(o->env, "exec env");
	if (rc)
		return rc;
	return check_abs_path(o->cwd, "cwd");
}

int sbx_argv_validate(const char *const *argv)
{
	if (!argv)
		return sbx_fail(SANDBOX_E_INVAL, "argv is NULL");
	if (!argv[0])
		return sbx_fail(SANDBOX_E_INVAL, "argv is empty");
	if (!argv[0][0])
		return sbx_fail(SANDBOX_E_INVAL, "argv[0] is an empty string");
	size_t total = 0;
	for (size_t i = 0; argv[i]; i++) {
		if (i >= SBX_EXEC_MAX_ARGS)
			return sbx_fail(SANDBOX_E_INVAL, "argv has more than %u entries",
					SBX_EXEC_MAX_ARGS);
		total += strlen(argv[i]) + 4;
		if (total > SBX_PROTO_MAX_PAYLOAD / 2)
			return sbx_fail(SANDBOX_E_INVAL, "argv is longer than %u bytes in all",
					SBX_PROTO_MAX_PAYLOAD / 2);
	}
	return 0;
}

/* One dns_servers entry into "ip:port" / "[ip6]:port" at out. */
static int dns_server_parse(const char *e, size_t i, char *buf, size_t cap)
{
	char host[64];
	const char *port = NULL;
	size_t hl;
	int v6 = e[0] == '[';
	if (v6) {
		const char *close = strchr(e, ']');
		if (!close || (close[1] && close[1] != ':'))
			goto bad;
		hl = (size_t)(close - e - 1);
		if (close[1])
			port = close + 2;
		e++;
	} else {
		const char *colon = strchr(e, ':');
		hl = colon ? (size_t)(colon - e) : strlen(e);
		if (colon)
			port = colon + 1;
	}
	if (hl == 0 || hl >= sizeof host)
		goto bad;
	memcpy(host, e, hl);
	host[hl] = '\0';
	uint8_t addr[16];
	if (inet_pton(v6 ? AF_INET6 : AF_INET, host, addr) != 1)
		goto bad;
	unsigned long p = 53;
	if (port) {
		char *end;
		if (!*port || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5)
			goto bad;
		p = strtoul(port, &end, 10);
		if (p < 1 || p > 65535)
			goto bad;
	}
	snprintf(buf, cap, v6 ? "[%s]:%lu" : "%s:%lu", host, p);
	return 0;
bad:
	return sbx_fail(SANDBOX_E_INVAL,
			"dns_servers[%zu] '%.80s' is not an address (IPv4, IPv4:port, [IPv6] or "
			"[IPv6]:port)",
			i, e - (v6 ? 1 : 0));
}

int sbx_dns_servers_validate(const char *const *list, char *out, size_t cap)
{
	if (out && cap)
		out[0] = '\0';
	if (!list)
		return 0;
	if (!list[0])
		return sbx_fail(SANDBOX_E_INVAL,
				"dns_servers is an empty list (leave it NULL for the host's "
				"resolver configuration)");
	size_t used = 0;
	for (size_t i = 0; list[i]; i++) {
		if (i >= SBX_MAX_DNS_SERVERS)
			return sbx_fail(SANDBOX_E_INVAL, "dns_servers: more than %u entries",
					SBX_MAX_DNS_SERVERS);
		char one[80];
		int rc = dns_server_parse(list[i], i, one, sizeof one);
		if (rc)
			return rc;
		if (out) {
			int n = snprintf(out + used, cap - used, "%s%s", i ? "," : "", one);
			if (n < 0 || (size_t)n >= cap - used)
				return sbx_fail(SANDBOX_E_INVAL, "dns_servers: list too long");
			used += (size_t)n;
		}
	}
	return 0;
}
