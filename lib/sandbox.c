/* Sandbox lifecycle: create (validate, overlay, domain, agent handshake),
 * kill, reference counting and listing. Every step of create is undone on
 * failure, so a failed create leaves no VM, file, socket or thread. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accel.h"
#include "domain_xml.h"
#include "error.h"
#include "files.h"
#include "image.h"
#include "options.h"
#include "runtime.h"
#include "proxy.h"
#include "sandbox_int.h"
#include "util.h"

#define QBOOT_ROM "/usr/share/qemu/qboot.rom"
#define PING_TIMEOUT_S 10

SANDBOX_API const char *sandbox_version(void)
{
	return PACKAGE_VERSION;
}

void sbx_sandbox_ref(struct sandbox *sb)
{
	atomic_fetch_add(&sb->refs, 1);
}

/* A new reference unless the count already reached zero (the sandbox is
 * being destroyed). Returns 1 on success. */
static int sbx_sandbox_tryref(struct sandbox *sb)
{
	int n = atomic_load(&sb->refs);
	while (n > 0)
		if (atomic_compare_exchange_weak(&sb->refs, &n, n + 1))
			return 1;
	return 0;
}

/* ---- construction helpers */

static char **copy_strv(const char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	char **out = calloc(n + 1, sizeof *out);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (!(out[i] = strdup(v[i]))) {
			for (size_t k = 0; k < i; k++)
				free(out[k]);
			free(out);
			return NULL;
		}
	}
	return out;
}

static int copy_metadata(struct sandbox *sb, const sandbox_options_t *o)
{
	if (!o->metadata_count)
		return 0;
	sb->metadata = calloc(o->metadata_count, sizeof *sb->metadata);
	if (!sb->metadata)
		return -1;
	sb->metadata_count = o->metadata_count;
	for (size_t i = 0; i < o->metadata_count; i++) {
		sb->metadata[i].key = strdup(o->metadata[i].key);
		sb->metadata[i].value = strdup(o->metadata[i].value);
		if (!sb->metadata[i].key || !sb->metadata[i].value)
			return -1;
	}
	return 0;
}

static struct sandbox *sandbox_alloc(const sandbox_options_t *o)
{
	struct sandbox *sb = calloc(1, sizeof *sb);
	if (!sb)
		return NULL;
	atomic_init(&sb->refs, 1);
	sb->fd = -1;
	sb->wake_fd = -1;
	sb->state = SBX_BOOTING;
	pthread_mutex_init(&sb->lock, NULL);
	pthread_mutex_init(&sb->wlock, NULL);
	pthread_mutex_init(&sb->kill_lock, NULL);
	pthread_cond_init(&sb->cond, NULL);
	uint8_t rnd[16];
	if (sbx_random(rnd, sizeof rnd))
		return sb; /* caller sees id empty and fails */
	sbx_hex(rnd, sizeof rnd, sb->id);
	snprintf(sb->name, sizeof sb->name, SBX_DOMAIN_PREFIX "%s", sb->id);
	sb->env = copy_strv(o->env);
	sb->workdir = strdup(o->workdir ? o->workdir : "/root");
	if (copy_metadata(sb, o) < 0)
		sb->workdir = (free(sb->workdir), NULL);
	return sb;
}

static void sandbox_dealloc(struct sandbox *sb)
{
	for (size_t i = 0; sb->env && sb->env[i]; i++)
		free(sb->env[i]);
	free(sb->env);
	for (size_t i = 0; i < sb->metadata_count; i++) {
		free((char *)sb->metadata[i].key);
		free((char *)sb->metadata[i].value);
	}
	free(sb->metadata);
	free(sb->workdir);
	free(sb->dir);
	free(sb->overlay);
	free(sb->sock_path);
	free(sb->console_log);
	sbx_proxy_free(sb->proxy);
	pthread_mutex_destroy(&sb->lock);
	pthread_mutex_destroy(&sb->wlock);
	pthread_mutex_destroy(&sb->kill_lock);
	pthread_cond_destroy(&sb->cond);
	free(sb);
}

static int make_dir(struct sandbox *sb)
{
	struct sbx_runtime *rt = sb->rt;
	sb->dir = sbx_asprintf("%s/%s", rt->sandboxes_dir, sb->id);
	sb->overlay = sbx_asprintf("%s/disk.qcow2", sb->dir);
	sb->sock_path = sbx_asprintf("%s/agent.sock", sb->dir);
	sb->console_log = sbx_asprintf("%s/console.log", sb->dir);
	if (!sb->dir || !sb->overlay || !sb->sock_path || !sb->console_log)
		return sbx_fail(SANDBOX_E_NOMEM, "paths");
	if (mkdir(sb->dir, 0770) < 0)
		return sbx_fail_errno(SANDBOX_E_IO, errno, "cannot create %s", sb->dir);
	/* QEMU runs as libvirt-qemu and creates the agent socket here. */
	if (rt->qemu_uid != (uid_t)-1 && chown(sb->dir, rt->qemu_uid, rt->qemu_gid) < 0)
		return sbx_fail_errno(SANDBOX_E_IO, errno, "cannot chown %s", sb->dir);
	return 0;
}

static int make_overlay(struct sandbox *sb, const struct sbx_image *img)
{
	const char *argv[] = {"qemu-img", "create", "-q",	 "-f",	      "qcow2", "-F",
			      "raw",	  "-b",	    img->rootfs, sb->overlay, NULL};
	char err[512];
	int rc = sbx_run(argv, err, sizeof err);
	if (rc == -ENOENT)
		return sbx_fail(SANDBOX_E_IO,
				"qemu-img not found; install the Debian package qemu-utils");
	if (rc != 0)
		return sbx_fail(SANDBOX_E_IO, "qemu-img create failed (%d): %s", rc, err);
	if (sb->rt->qemu_uid != (uid_t)-1 &&
	    chown(sb->overlay, sb->rt->qemu_uid, sb->rt->qemu_gid) < 0)
		return sbx_fail_errno(SANDBOX_E_IO, errno, "cannot chown %s", sb->overlay);
	return 0;
}

/* Last non-empty line of the guest console, to explain a failed boot. */
static void console_tail(struct sandbox *sb, char *out, size_t cap)
{
	out[0] = '\0';
	int fd = sb->console_log ? open(sb->console_log, O_RDONLY | O_CLOEXEC) : -1;
	if (fd < 0)
		return;
	char buf[4096];
	off_t end = lseek(fd, 0, SEEK_END);
	off_t start = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
	ssize_t n = pread(fd, buf, sizeof buf - 1, start);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (ssize_t i = 0; i < n; i++)
		if ((unsigned char)buf[i] < 0x20 && buf[i] != '\n')
			buf[i] = ' ';
	char *line = NULL;
	for (char *tok = strtok(buf, "\n"); tok; tok = strtok(NULL, "\n"))
		if (strspn(tok, " ") != strlen(tok))
			line = tok;
	if (line)
		snprintf(out, cap, "%s", line);
}

static int start_domain(struct sandbox *sb, const struct sbx_image *img, const sandbox_options_t *o)
{
	struct sbx_domain_spec spec = {
	    .name = sb->name,
	    .kvm = sb->accel == SANDBOX_ACCEL_KVM,
	    .memory_mb = o->memory_mb,
	    .vcpus = o->vcpus,
	    .kernel = img->kernel,
	    .initrd = img->initrd,
	    .cmdline = img->cmdline,
	    .loader = access(QBOOT_ROM, R_OK) == 0 ? QBOOT_ROM : NULL,
	    .disk = sb->overlay,
	    .agent_socket = sb->sock_path,
	    .console_log = sb->console_log,
	    .state_dir = sb->rt->state_dir,
	};
	struct sbx_domain_fs fs[SBX_MAX_VOLUMES];
	char tags[SBX_MAX_VOLUMES][16];
	for (size_t i = 0; i < o->volumes_count && i < SBX_MAX_VOLUMES; i++) {
		sbx_volume_tag(i, tags[i], sizeof tags[i]);
		fs[i] = (struct sbx_domain_fs){
		    .host_path = o->volumes[i].host_path,
		    .tag = tags[i],
		    .readonly = !!(o->volumes[i].flags & SANDBOX_VOLUME_READONLY)};
	}
	spec.fs = fs;
	spec.fs_count = o->volumes_count;
	char *xml = sbx_domain_xml(&spec);
	if (!xml)
		return SANDBOX_E_NOMEM;
	sb->dom = virDomainCreateXML(sb->rt->conn, xml, 0);
	free(xml);
	if (!sb->dom)
		return sbx_fail(SANDBOX_E_LIBVIRT, "libvirt could not start the VM: %s",
				sbx_virt_error());
	return 0;
}

static int boot(struct sandbox *sb, const sandbox_options_t *o)
{
	int64_t deadline = sbx_now_ms() + (int64_t)o->boot_timeout_s * 1000;
	int rc = sbx_chan_connect(sb, deadline);
	if (!rc)
		rc = sbx_chan_start(sb);
	if (!rc)
		rc = sbx_chan_wait_ready(sb, deadline);
	if (rc == SANDBOX_E_TIMEOUT || rc == SANDBOX_E_BOOT) {
		char tail[256];
		char saved[512];
		sbx_error_save(saved, sizeof saved);
		console_tail(sb, tail, sizeof tail);
		if (rc == SANDBOX_E_TIMEOUT)
			snprintf(saved, sizeof saved, "agent not ready after %u s",
				 o->boot_timeout_s);
		rc = sbx_fail(SANDBOX_E_BOOT, "sandbox %s did not boot: %s; last console line: %s",
			      sb->id, saved, tail[0] ? tail : "(none)");
	}
	return rc;
}

/* QEMU answers libvirt's SIGTERM by shutting down in an orderly way, and
 * libvirt polls for that every 200 ms: over a second per kill. The disk is
 * thrown away, so nothing is worth an orderly shutdown: SIGKILL the QEMU
 * process first (embedded driver, where we know where its pid file is),
 * after checking the pid really is this domain's QEMU. libvirt's destroy
 * then finds it gone and only cleans up. */
static void kill_qemu_fast(struct sandbox *sb)
{
	if (!sb->rt || !sb->rt->embed_root)
		return;
	char *path = sbx_asprintf("%s/run/qemu/%s.pid", sb->rt->embed_root, sb->name);
	FILE *f = path ? fopen(path, "re") : NULL;
	long pid = 0;
	if (f && fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	if (f)
		fclose(f);
	free(path);
	if (pid <= 1)
		return;
	char cmdpath[64], cmd[4096];
	snprintf(cmdpath, sizeof cmdpath, "/proc/%ld/cmdline", pid);
	f = fopen(cmdpath, "re");
	size_t n = f ? fread(cmd, 1, sizeof cmd - 1, f) : 0;
	if (f)
		fclose(f);
	for (size_t i = 0; i < n; i++)
		if (!cmd[i])
			cmd[i] = ' ';
	cmd[n] = '\0';
	char needle[64];
	snprintf(needle, sizeof needle, "guest=%s,", sb->name);
	if (strstr(cmd, needle))
		kill((pid_t)pid, SIGKILL);
}

/* Destroy the VM and remove its files; safe on a half-built sandbox. */
static void teardown(struct sandbox *sb)
{
	if (sb->dom) {
		kill_qemu_fast(sb);
		virDomainDestroy(sb->dom);
		virDomainFree(sb->dom);
		sb->dom = NULL;
	}
	if (sb->fd >= 0)
		shutdown(sb->fd, SHUT_RDWR);
	sbx_chan_stop(sb);
	sbx_proxy_stop(sb->proxy); /* after the channel: no frames arrive now */
	if (sb->dir)
		sbx_rmtree(sb->dir);
}

static void close_fds(struct sandbox *sb)
{
	if (sb->fd >= 0)
		close(sb->fd);
	if (sb->wake_fd >= 0)
		close(sb->wake_fd);
	sb->fd = sb->wake_fd = -1;
}

/* A NULL-terminated list as a JSON array; NULL as null ("not set"). */
static void audit_strv(struct sbx_json *j, const char *key, const char *const *v)
{
	if (!v) {
		sbx_json_null(j, key);
		return;
	}
	sbx_json_open_array(j, key);
	for (size_t i = 0; v[i]; i++)
		sbx_json_str(j, NULL, v[i]);
	sbx_json_close_array(j);
}

static void audit_create(struct sandbox *sb, const sandbox_options_t *o, double boot_ms)
{
	struct sbx_json j;
	sbx_audit_begin(&sb->audit, &j, "sandbox.create");
	sbx_json_open(&j, "options");
	sbx_json_str(&j, "image", o->image);
	sbx_json_int(&j, "memory_mb", o->memory_mb);
	sbx_json_int(&j, "vcpus", o->vcpus);
	sbx_json_str(&j, "accel", sb->accel == SANDBOX_ACCEL_KVM ? "kvm" : "tcg");
	sbx_json_int(&j, "timeout_s", o->timeout_s);
	sbx_json_str(&j, "workdir", sb->workdir);
	sbx_json_str(&j, "libvirt_uri", sb->rt->uri);
	/* names only: environment values may be sensitive */
	sbx_json_open_array(&j, "env");
	for (size_t i = 0; sb->env && sb->env[i]; i++)
		sbx_json_strn(&j, NULL, sb->env[i], strcspn(sb->env[i], "="));
	sbx_json_close_array(&j);
	sbx_json_open_array(&j, "volumes");
	for (size_t i = 0; i < o->volumes_count; i++) {
		sbx_json_open(&j, NULL);
		sbx_json_str(&j, "host_path", o->volumes[i].host_path);
		sbx_json_str(&j, "guest_path", o->volumes[i].guest_path);
		sbx_json_bool(&j, "readonly", !!(o->volumes[i].flags & SANDBOX_VOLUME_READONLY));
		sbx_json_close(&j);
	}
	sbx_json_close_array(&j);
	audit_strv(&j, "allow_net", o->allow_net);
	audit_strv(&j, "dns_servers", o->dns_servers);
	audit_strv(&j, "tls_passthrough", o->tls_passthrough);
	sbx_json_open_array(&j, "secrets"); /* names and hosts, never values */
	for (size_t i = 0; i < o->secrets_count; i++) {
		sbx_json_open(&j, NULL);
		sbx_json_str(&j, "name", o->secrets[i].name);
		audit_strv(&j, "hosts", o->secrets[i].hosts);
		sbx_json_close(&j);
	}
	sbx_json_close_array(&j);
	sbx_json_close(&j);
	sbx_json_double(&j, "boot_ms", boot_ms);
	sbx_audit_emit(&sb->audit, &j);
}

/* Make the sandbox visible in sandbox_list, unless it already died (the
 * I/O thread may have killed it between HELLO and now). */
static int register_live(struct sandbox *sb)
{
	pthread_mutex_lock(&sb->kill_lock);
	int rc = 0;
	if (sb->killed) {
		pthread_mutex_lock(&sb->lock);
		rc = sbx_fail(SANDBOX_E_BOOT, "sandbox %s died while starting: %s", sb->id,
			      sb->dead_reason);
		pthread_mutex_unlock(&sb->lock);
	} else {
		sbx_runtime_add(sb->rt, sb);
		sb->registered = 1;
	}
	pthread_mutex_unlock(&sb->kill_lock);
	return rc;
}

static int create_checks(sandbox_t **out, const sandbox_options_t *o, unsigned int flags)
{
	if (!out)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_create: out is NULL");
	*out = NULL;
	if (flags)
		return sbx_fail(SANDBOX_E_FLAGS, "sandbox_create: unknown flags 0x%x", flags);
	return sbx_options_validate(o);
}

static int env_append(struct sandbox *sb, const char *name, const char *value)
{
	size_t n = 0, len = strlen(name);
	while (sb->env && sb->env[n]) {
		if (!strncmp(sb->env[n], name, len) && sb->env[n][len] == '=')
			return 0; /* the caller's own setting wins */
		n++;
	}
	char **v = realloc(sb->env, (n + 2) * sizeof *v);
	if (!v)
		return sbx_fail(SANDBOX_E_NOMEM, "environment");
	sb->env = v;
	if (!(v[n] = sbx_asprintf("%s=%s", name, value)))
		return sbx_fail(SANDBOX_E_NOMEM, "environment");
	v[n + 1] = NULL;
	return 0;
}

#define SBX_GUEST_CA_FILE "/usr/local/share/ca-certificates/libsandbox-sandbox-ca.crt"
#define SBX_GUEST_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"

/* Every command sees each secret's placeholder, never its value, and
 * (when TLS is intercepted) the variables that point clients at the
 * bundle holding the sandbox CA. */
static int add_proxy_env(struct sandbox *sb)
{
	int rc;
	for (size_t i = 0; i < sbx_proxy_secret_count(sb->proxy); i++) {
		const char *name, *ph;
		sbx_proxy_secret_env(sb->proxy, i, &name, &ph);
		if ((rc = env_append(sb, name, ph)))
			return rc;
	}
	if (!sbx_proxy_ca_pem(sb->proxy))
		return 0;
	static const char *const bundle_vars[] = {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
						  "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"};
	for (size_t i = 0; i < sizeof bundle_vars / sizeof *bundle_vars; i++)
		if ((rc = env_append(sb, bundle_vars[i], SBX_GUEST_CA_BUNDLE)))
			return rc;
	return env_append(sb, "NODE_EXTRA_CA_CERTS", SBX_GUEST_CA_FILE);
}

/* Put the sandbox CA into the guest's trust store (its own file, and
 * appended to the bundle most clients read). One command at start-up. */
static int install_guest_ca(struct sandbox *sb)
{
	const char *pem = sbx_proxy_ca_pem(sb->proxy);
	if (!pem)
		return 0;
	const char *argv[] = {"/bin/sh", "-c",
			      "set -e; umask 022; mkdir -p /usr/local/share/ca-certificates; "
			      "cat > " SBX_GUEST_CA_FILE "; cat " SBX_GUEST_CA_FILE
			      " >> " SBX_GUEST_CA_BUNDLE,
			      NULL};
	sandbox_exec_options_t eo = SANDBOX_EXEC_OPTIONS_INIT;
	eo.stdin_data = pem;
	eo.stdin_len = strlen(pem);
	eo.timeout_ms = 30000;
	sandbox_result_t *r = NULL;
	int rc = sandbox_exec(sb, argv, &eo, &r, 0);
	if (rc)
		return rc;
	int code = sandbox_result_exit_code(r);
	sandbox_result_free(r);
	if (code != 0)
		return sbx_fail(SANDBOX_E_BOOT, "installing the sandbox CA in the guest failed (%d)",
				code);
	return 0;
}

static int create_steps(struct sandbox *sb, const sandbox_options_t *o, struct sbx_image *img)
{
	int rc;
	if (!sb->id[0] || !sb->workdir || (o->env && !sb->env))
		return sbx_fail(SANDBOX_E_NOMEM, "sandbox");
	if ((rc = sbx_accel_resolve(o->accel)) < 0)
		return rc;
	sb->accel = (unsigned)rc;
	if ((rc = sbx_image_load(o->image, img)))
		return rc;
	/* the audit sink is checked before the runtime touches the state dir */
	if ((rc = sbx_audit_open(&sb->audit, o, sb->id, sb->metadata, sb->metadata_count)))
		return rc;
	sb->audit_open = 1;
	if ((rc = sbx_runtime_get(o->libvirt_uri, o->state_dir, &sb->rt)) ||
	    (rc = sbx_volumes_check_access(sb->rt, o)))
		return rc;
	if ((rc = make_dir(sb)) || (rc = make_overlay(sb, img)))
		return rc;
	if ((rc = sbx_proxy_new(sb, o, &sb->proxy)) || (rc = sbx_proxy_start(sb->proxy)) ||
	    (rc = add_proxy_env(sb)))
		return rc;
	if ((rc = start_domain(sb, img, o)) || (rc = boot(sb, o)) ||
	    (rc = sbx_files_mount_volumes(sb, o)) || (rc = install_guest_ca(sb)))
		return rc;
	if (o->timeout_s) /* the lifetime counts from the moment it is usable */
		sb->deadline_ms = sbx_now_ms() + (int64_t)o->timeout_s * 1000;
	return 0;
}

SANDBOX_API int sandbox_create(sandbox_t **out, const sandbox_options_t *opts, unsigned int flags)
{
	sbx_clear_error();
	sandbox_options_t full = SANDBOX_OPTIONS_INIT;
	if (opts && !out)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_create: out is NULL");
	int rc = opts ? sbx_options_upgrade(opts, &full) : 0;
	if (rc) {
		*out = NULL;
		return rc;
	}
	const sandbox_options_t *o = &full;
	rc = create_checks(out, o, flags);
	if (rc)
		return rc;
	struct sandbox *sb = sandbox_alloc(o);
	if (!sb)
		return sbx_fail(SANDBOX_E_NOMEM, "sandbox");
	sb->created_us = sbx_now_us();
	struct sbx_image img;
	memset(&img, 0, sizeof img);
	rc = create_steps(sb, o, &img);
	if (!rc)
		rc = register_live(sb);
	if (rc) {
		char saved[1024];
		sbx_error_save(saved, sizeof saved);
		/* the I/O thread may be tearing down too (the VM died): one at a time */
		pthread_mutex_lock(&sb->kill_lock);
		sb->killed = 1;
		teardown(sb);
		pthread_mutex_unlock(&sb->kill_lock);
		close_fds(sb);
		if (sb->audit_open)
			sbx_audit_close(&sb->audit);
		sbx_image_free(&img);
		sandbox_dealloc(sb);
		sbx_error_restore(saved);
		return rc;
	}
	sbx_image_free(&img);
	audit_create(sb, o, (double)(sbx_now_us() - sb->created_us) / 1000.0);
	*out = sb;
	return 0;
}

/* ---- kill and free */

void sbx_kill_internal(struct sandbox *sb, const char *reason, int from_io)
{
	if (from_io) {
		if (pthread_mutex_trylock(&sb->kill_lock) != 0)
			return; /* someone else is killing it and will join us */
	} else {
		pthread_mutex_lock(&sb->kill_lock);
	}
	if (sb->killed) {
		pthread_mutex_unlock(&sb->kill_lock);
		return;
	}
	sb->killed = 1;
	pthread_mutex_lock(&sb->lock);
	sbx_mark_dead_locked(sb, SANDBOX_E_DEAD, reason);
	pthread_mutex_unlock(&sb->lock);
	teardown(sb); /* joins the I/O thread unless we are it */
	if (!sb->registered) {
		/* create has not finished: it fails and cleans up, no event */
		pthread_mutex_unlock(&sb->kill_lock);
		return;
	}
	sbx_runtime_remove(sb->rt, sb);
	sb->registered = 0;
	struct sbx_json j;
	sbx_audit_begin(&sb->audit, &j, "sandbox.kill");
	sbx_json_str(&j, "reason", reason);
	sbx_json_double(&j, "lifetime_ms", (double)(sbx_now_us() - sb->created_us) / 1000.0);
	sbx_audit_emit(&sb->audit, &j);
	pthread_mutex_unlock(&sb->kill_lock);
}

SANDBOX_API int sandbox_kill(sandbox_t *sb, unsigned int flags)
{
	sbx_clear_error();
	if (!sb)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_kill: sandbox is NULL");
	if (flags)
		return sbx_fail(SANDBOX_E_FLAGS, "sandbox_kill: unknown flags 0x%x", flags);
	sbx_kill_internal(sb, "killed by the caller", 0);
	return 0;
}

void sbx_sandbox_unref(struct sandbox *sb)
{
	if (atomic_fetch_sub(&sb->refs, 1) != 1)
		return;
	/* sandbox_list takes references only from a count above zero
	 * (sbx_sandbox_tryref), so nobody can revive it from here on */
	sbx_kill_internal(sb, "freed while running", 0);
	sbx_chan_stop(sb); /* the I/O thread may have killed it itself */
	pthread_mutex_lock(&sb->lock);
	sbx_procs_fail_locked(sb);
	pthread_mutex_unlock(&sb->lock);
	close_fds(sb);
	sbx_audit_close(&sb->audit);
	sandbox_dealloc(sb);
}

SANDBOX_API void sandbox_free(sandbox_t *sb)
{
	if (sb)
		sbx_sandbox_unref(sb);
}

/* ---- accessors */

SANDBOX_API const char *sandbox_id(const sandbox_t *sb)
{
	return sb ? sb->id : NULL;
}

SANDBOX_API int sandbox_is_running(sandbox_t *sb)
{
	if (!sb)
		return 0;
	pthread_mutex_lock(&sb->lock);
	int up = sb->state == SBX_RUNNING;
	pthread_mutex_unlock(&sb->lock);
	return up;
}

SANDBOX_API const char *sandbox_metadata_get(const sandbox_t *sb, const char *key)
{
	if (!sb || !key)
		return NULL;
	for (size_t i = 0; i < sb->metadata_count; i++)
		if (!strcmp(sb->metadata[i].key, key))
			return sb->metadata[i].value;
	return NULL;
}

SANDBOX_API size_t sandbox_metadata_count(const sandbox_t *sb)
{
	return sb ? sb->metadata_count : 0;
}

SANDBOX_API int sandbox_metadata_at(const sandbox_t *sb, size_t i, const char **key,
				    const char **value)
{
	if (!sb || !key || !value)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_metadata_at: NULL argument");
	if (i >= sb->metadata_count)
		return sbx_fail(SANDBOX_E_INVAL, "metadata index %zu out of range", i);
	*key = sb->metadata[i].key;
	*value = sb->metadata[i].value;
	return 0;
}

struct list_acc {
	sandbox_t **v;
	size_t n, cap;
	int oom;
};

static void collect(struct sbx_runtime *rt, void *arg)
{
	struct list_acc *a = arg;
	pthread_mutex_lock(&rt->lock);
	for (struct sandbox *sb = rt->live; sb; sb = sb->rt_next) {
		if (a->n == a->cap) {
			size_t cap = a->cap ? a->cap * 2 : 8;
			sandbox_t **v = realloc(a->v, cap * sizeof *v);
			if (!v) {
				a->oom = 1;
				break;
			}
			a->v = v;
			a->cap = cap;
		}
		if (sbx_sandbox_tryref(sb))
			a->v[a->n++] = sb;
	}
	pthread_mutex_unlock(&rt->lock);
}

SANDBOX_API int sandbox_list(sandbox_t ***list, size_t *count, unsigned int flags)
{
	sbx_clear_error();
	if (!list || !count)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_list: NULL argument");
	*list = NULL;
	*count = 0;
	if (flags)
		return sbx_fail(SANDBOX_E_FLAGS, "sandbox_list: unknown flags 0x%x", flags);
	struct list_acc a = {0};
	sbx_runtime_foreach(collect, &a);
	if (a.oom) {
		sandbox_list_free(a.v, a.n);
		return sbx_fail(SANDBOX_E_NOMEM, "sandbox_list");
	}
	*list = a.v;
	*count = a.n;
	return 0;
}

SANDBOX_API void sandbox_list_free(sandbox_t **list, size_t count)
{
	for (size_t i = 0; list && i < count; i++)
		sandbox_free(list[i]);
	free(list);
}

SANDBOX_API int sandbox_ping(sandbox_t *sb, unsigned int flags)
{
	sbx_clear_error();
	if (!sb)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_ping: sandbox is NULL");
	if (flags)
		return sbx_fail(SANDBOX_E_FLAGS, "sandbox_ping: unknown flags 0x%x", flags);
	pthread_mutex_lock(&sb->lock);
	uint64_t nonce = ++sb->ping_seq;
	pthread_mutex_unlock(&sb->lock);
	uint8_t payload[8];
	struct sbx_wr w;
	sbx_wr_init(&w, payload, sizeof payload);
	sbx_wr_u64(&w, nonce);
	int rc = sbx_chan_send(sb, SBX_T_PING, 0, payload, sizeof payload);
	if (rc)
		return rc;
	int64_t deadline = sbx_now_ms() + PING_TIMEOUT_S * 1000;
	pthread_mutex_lock(&sb->lock);
	while (sb->pong_seq < nonce && sb->state == SBX_RUNNING &&
	       sbx_wait_locked(sb, deadline) != ETIMEDOUT)
		;
	if (sb->pong_seq >= nonce)
		rc = 0;
	else if (sb->state != SBX_RUNNING)
		rc = sbx_dead_error_locked(sb);
	else
		rc = sbx_fail(SANDBOX_E_TIMEOUT, "the agent did not answer a ping within %d s",
			      PING_TIMEOUT_S);
	pthread_mutex_unlock(&sb->lock);
	return rc;
}

SANDBOX_API int sandbox_set_allow_net(sandbox_t *sb, const char *const *allow_net,
				      unsigned int flags)
{
	sbx_clear_error();
	if (!sb)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_set_allow_net: sandbox is NULL");
	if (flags)
		return sbx_fail(SANDBOX_E_FLAGS, "sandbox_set_allow_net: unknown flags 0x%x",
				flags);
	pthread_mutex_lock(&sb->lock);
	int dead = sb->state == SBX_DEAD;
	int rc = dead ? sbx_dead_error_locked(sb) : 0;
	pthread_mutex_unlock(&sb->lock);
	return rc ? rc : sbx_proxy_set_policy(sb->proxy, allow_net);
}
