/* Runtime: the libvirt connection and what goes with it. */
#include "runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <libvirt/virterror.h>
#include <libxml/uri.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "domain_xml.h"
#include "error.h"
#include "sandbox_int.h"
#include "util.h"

#define QEMU_USER "libvirt-qemu"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sbx_runtime *registry;
static pthread_once_t event_once = PTHREAD_ONCE_INIT;
static int event_ok;

static void quiet_virt_errors(void *ud, virErrorPtr err)
{
	(void)ud;
	(void)err; /* errors are reported through our own last-error */
}

const char *sbx_virt_error(void)
{
	const char *m = virGetLastErrorMessage();
	return m ? m : "unknown libvirt error";
}

static void *event_loop(void *arg)
{
	(void)arg;
	for (;;)
		if (virEventRunDefaultImpl() < 0)
			usleep(10000);
	return NULL;
}

/* The embedded driver needs an event loop run by the application. */
static void start_event_loop(void)
{
	virSetErrorFunc(NULL, quiet_virt_errors);
	if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0)
		return;
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, event_loop, NULL) == 0)
		event_ok = 1;
	pthread_attr_destroy(&a);
}

char *sbx_default_state_dir(void)
{
	const char *e = getenv("SANDBOX_STATE_DIR");
	if (e && e[0] == '/')
		return strdup(e);
	if (geteuid() == 0)
		return strdup("/var/lib/libsandbox");
	const char *x = getenv("XDG_STATE_HOME");
	if (x && x[0] == '/')
		return sbx_asprintf("%s/libsandbox", x);
	const char *h = getenv("HOME");
	return sbx_asprintf("%s/.local/state/libsandbox", h && *h ? h : "/tmp");
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	size_t n = strlen(text);
	ssize_t w = write(fd, text, n);
	int e = errno;
	close(fd);
	return w == (ssize_t)n ? 0 : -(w < 0 ? e : EIO);
}

/* The embedded driver reads <root>/etc/qemu.conf. "file" stdio avoids the
 * virtlogd daemon; we set file ownership ourselves, so libvirt must not
 * chown the shared base image back and forth. */
static int prepare_embed_root(const char *root)
{
	char *etc = sbx_asprintf("%s/etc", root);
	char *conf = sbx_asprintf("%s/etc/qemu.conf", root);
	int rc = (!etc || !conf) ? -ENOMEM : sbx_mkdirs(etc, 0755);
	if (!rc)
		rc = write_file(conf, "# written by libsandbox\n"
				      "stdio_handler = \"file\"\n"
				      "dynamic_ownership = 0\n"
				      "remember_owner = 0\n"
				      "seccomp_sandbox = 1\n");
	int e = rc;
	free(etc);
	free(conf);
	if (e)
		return sbx_fail_errno(SANDBOX_E_IO, -e, "cannot prepare libvirt root '%s'", root);
	return 0;
}

static int take_lock(struct sbx_runtime *rt)
{
	char *path = sbx_asprintf("%s/lock", rt->state_dir);
	if (!path)
		return sbx_fail(SANDBOX_E_NOMEM, "lock path");
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		int e = errno;
		free(path);
		return sbx_fail_errno(e == EACCES ? SANDBOX_E_PERM : SANDBOX_E_IO, e,
				      "cannot open lock file in state directory '%s'",
				      rt->state_dir);
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		close(fd);
		free(path);
		return sbx_fail(SANDBOX_E_BUSY,
				"state directory '%s' is in use by another process (pid %s); "
				"use another state_dir",
				rt->state_dir, pid[0] ? pid : "?");
	}
	char pid[32];
	int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) < 0) {
		/* the pid is informational only */
	}
	free(path);
	rt->lock_fd = fd;
	return 0;
}

static int ours(struct sbx_runtime *rt, virDomainPtr d)
{
	const char *name = virDomainGetName(d);
	if (!name || strncmp(name, SBX_DOMAIN_PREFIX, strlen(SBX_DOMAIN_PREFIX)))
		return 0;
	if (rt->embedded)
		return 1; /* the embedded root belongs to this state dir alone */
	char *md = virDomainGetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT, SBX_XML_NS, 0);
	if (!md)
		return 0;
	char *dir = sbx_domain_xml_state_dir(md);
	int mine = dir && !strcmp(dir, rt->state_dir);
	free(dir);
	free(md);
	return mine;
}

/* A process that held this state dir and died (SIGKILL included) leaves
 * QEMU processes and files behind; nobody else can own them now that we
 * hold the lock. */
static void reap_leftovers(struct sbx_runtime *rt)
{
	virDomainPtr *doms = NULL;
	int n = virConnectListAllDomains(rt->conn, &doms, 0);
	for (int i = 0; i < n; i++) {
		if (ours(rt, doms[i])) {
			if (virDomainIsActive(doms[i]) == 1)
				virDomainDestroy(doms[i]);
			if (virDomainIsPersistent(doms[i]) == 1)
				virDomainUndefine(doms[i]);
		}
		virDomainFree(doms[i]);
	}
	free(doms);
	DIR *dir = opendir(rt->sandboxes_dir);
	if (!dir)
		return;
	struct dirent *de;
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		char *p = sbx_asprintf("%s/%s", rt->sandboxes_dir, de->d_name);
		if (p)
			sbx_rmtree(p);
		free(p);
	}
	closedir(dir);
}

static char *embed_uri(const char *root)
{
	xmlChar *esc = xmlURIEscapeStr(BAD_CAST root, BAD_CAST "/");
	if (!esc)
		return NULL;
	char *uri = sbx_asprintf("qemu:///embed?root=%s", (const char *)esc);
	xmlFree(esc);
	return uri;
}

static void runtime_free(struct sbx_runtime *rt)
{
	if (!rt)
		return;
	if (rt->conn)
		virConnectClose(rt->conn);
	if (rt->lock_fd >= 0)
		close(rt->lock_fd);
	free(rt->uri);
	free(rt->state_dir);
	free(rt->sandboxes_dir);
	free(rt->embed_root);
	pthread_mutex_destroy(&rt->lock);
	free(rt);
}

static int lookup_qemu_user(struct sbx_runtime *rt)
{
	rt->qemu_uid = (uid_t)-1;
	rt->qemu_gid = (gid_t)-1;
	if (geteuid() != 0)
		return 0; /* unprivileged: QEMU runs as us */
	struct passwd pw, *res = NULL;
	char buf[1024];
	if (getpwnam_r(QEMU_USER, &pw, buf, sizeof buf, &res) != 0 || !res)
		return sbx_fail(SANDBOX_E_LIBVIRT,
				"user '%s' does not exist; install the Debian package "
				"libvirt-daemon-system, which creates it",
				QEMU_USER);
	rt->qemu_uid = pw.pw_uid;
	rt->qemu_gid = pw.pw_gid;
	return 0;
}

static int runtime_open(const char *uri, const char *state_dir, struct sbx_runtime **out)
{
	struct sbx_runtime *rt = calloc(1, sizeof *rt);
	if (!rt)
		return sbx_fail(SANDBOX_E_NOMEM, "runtime");
	rt->lock_fd = -1;
	pthread_mutex_init(&rt->lock, NULL);
	rt->state_dir = strdup(state_dir);
	rt->sandboxes_dir = sbx_asprintf("%s/sandboxes", state_dir);
	if (!rt->state_dir || !rt->sandboxes_dir) {
		runtime_free(rt);
		return sbx_fail(SANDBOX_E_NOMEM, "runtime");
	}
	/* Permissions are ours to set only on directories we create: a
	 * caller's existing state dir (even /tmp) is left as it is. */
	struct stat st;
	int had_state = stat(state_dir, &st) == 0;
	int had_sandboxes = stat(rt->sandboxes_dir, &st) == 0;
	int rc = sbx_mkdirs(rt->sandboxes_dir, 0755);
	if (rc) {
		runtime_free(rt);
		return sbx_fail_errno(rc == -EACCES ? SANDBOX_E_PERM : SANDBOX_E_IO, -rc,
				      "cannot create state directory '%s'", state_dir);
	}
	/* QEMU's user must reach its files (umask may have narrowed these) */
	if (!had_state)
		chmod(state_dir, 0755);
	if (!had_sandboxes)
		chmod(rt->sandboxes_dir, 0755);
	if ((rc = lookup_qemu_user(rt)) || (rc = take_lock(rt))) {
		runtime_free(rt);
		return rc;
	}
	if (uri) {
		rt->uri = strdup(uri);
	} else {
		rt->embedded = 1;
		char *root = sbx_asprintf("%s/libvirt", state_dir);
		rc = root ? prepare_embed_root(root) : sbx_fail(SANDBOX_E_NOMEM, "root");
		rt->uri = root && !rc ? embed_uri(root) : NULL;
		rt->embed_root = root;
		if (rc) {
			runtime_free(rt);
			return rc;
		}
	}
	if (uri && !strncmp(uri, "qemu:///embed", 13))
		rt->embedded = 1;
	if (!rt->uri) {
		runtime_free(rt);
		return sbx_fail(SANDBOX_E_NOMEM, "uri");
	}
	rt->conn = virConnectOpen(rt->uri);
	if (!rt->conn) {
		rc = sbx_fail(SANDBOX_E_LIBVIRT, "cannot connect to libvirt at '%s': %s", rt->uri,
			      sbx_virt_error());
		runtime_free(rt);
		return rc;
	}
	reap_leftovers(rt);
	*out = rt;
	return 0;
}

int sbx_runtime_get(const char *uri, const char *state_dir, struct sbx_runtime **out)
{
	pthread_once(&event_once, start_event_loop);
	if (!event_ok)
		return sbx_fail(SANDBOX_E_LIBVIRT, "cannot start libvirt's event loop: %s",
				sbx_virt_error());
	char *dir = state_dir ? strdup(state_dir) : sbx_default_state_dir();
	if (!dir)
		return sbx_fail(SANDBOX_E_NOMEM, "state dir");
	pthread_mutex_lock(&registry_lock);
	struct sbx_runtime *rt;
	for (rt = registry; rt; rt = rt->next) {
		if (strcmp(rt->state_dir, dir))
			continue;
		int same_uri = uri ? !strcmp(uri, rt->uri) : rt->embedded;
		if (!same_uri) {
			pthread_mutex_unlock(&registry_lock);
			int rc =
			    sbx_fail(SANDBOX_E_BUSY,
				     "state directory '%s' is already used with libvirt URI '%s' "
				     "in this process",
				     dir, rt->uri);
			free(dir);
			return rc;
		}
		break;
	}
	int rc = 0;
	int want_embed = !uri || !strncmp(uri, "qemu:///embed", 13);
	for (struct sbx_runtime *o = registry; !rt && o; o = o->next) {
		/* libvirt keeps one embedded driver root per process, and once
		 * it is loaded no other connection driver can be opened. */
		if (o->embedded && want_embed)
			rc = sbx_fail(
			    SANDBOX_E_BUSY,
			    "this process already runs sandboxes with state directory '%s'; "
			    "libvirt's embedded driver allows one per process",
			    o->state_dir);
		else if (o->embedded != want_embed)
			rc = sbx_fail(
			    SANDBOX_E_BUSY,
			    "this process already uses libvirt URI '%s'; libvirt cannot mix its "
			    "embedded driver with other connections in one process",
			    o->uri);
		if (rc)
			break;
	}
	if (!rt && !rc && (rc = runtime_open(uri, dir, &rt)) == 0) {
		rt->next = registry;
		registry = rt;
	}
	pthread_mutex_unlock(&registry_lock);
	free(dir);
	if (!rc)
		*out = rt;
	return rc;
}

void sbx_runtime_add(struct sbx_runtime *rt, struct sandbox *sb)
{
	pthread_mutex_lock(&rt->lock);
	sb->rt_next = rt->live;
	rt->live = sb;
	pthread_mutex_unlock(&rt->lock);
}

void sbx_runtime_remove(struct sbx_runtime *rt, struct sandbox *sb)
{
	pthread_mutex_lock(&rt->lock);
	for (struct sandbox **pp = &rt->live; *pp; pp = &(*pp)->rt_next) {
		if (*pp == sb) {
			*pp = sb->rt_next;
			break;
		}
	}
	sb->rt_next = NULL;
	pthread_mutex_unlock(&rt->lock);
}

void sbx_runtime_foreach(void (*fn)(struct sbx_runtime *, void *), void *arg)
{
	pthread_mutex_lock(&registry_lock);
	for (struct sbx_runtime *rt = registry; rt; rt = rt->next)
		fn(rt, arg);
	pthread_mutex_unlock(&registry_lock);
}
