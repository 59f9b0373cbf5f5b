/* Volumes: the 9p tags, the check that QEMU's user can reach each host
 * directory, and mounting them through the agent after HELLO
 * (doc/design.md, "Volumes and files"). */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "files.h"
#include "options.h"
#include "runtime.h"
#include "sandbox_int.h"

void sbx_volume_tag(size_t i, char *out, size_t cap)
{
	snprintf(out, cap, "sbxvol%zu", i);
}

/* ---- I/O thread side */

/* Parents first: a volume nested in another is mounted after it. */
static int by_depth(const void *a, const void *b)
{
	const sandbox_volume_t *va = *(const sandbox_volume_t *const *)a;
	const sandbox_volume_t *vb = *(const sandbox_volume_t *const *)b;
	size_t la = strlen(va->guest_path), lb = strlen(vb->guest_path);
	return la < lb ? -1 : la > lb;
}

int sbx_files_mount_volumes(struct sandbox *sb, const sandbox_options_t *o)
{
	const sandbox_volume_t *order[SBX_MAX_VOLUMES];
	size_t n = o->volumes_count < SBX_MAX_VOLUMES ? o->volumes_count : SBX_MAX_VOLUMES;
	for (size_t i = 0; i < n; i++)
		order[i] = &o->volumes[i];
	qsort(order, n, sizeof order[0], by_depth);
	for (size_t k = 0; k < n; k++) {
		size_t i = (size_t)(order[k] - o->volumes);
		char tag[16];
		sbx_volume_tag(i, tag, sizeof tag);
		uint32_t fl =
		    (o->volumes[i].flags & SANDBOX_VOLUME_READONLY) ? SBX_FOP_F_READONLY : 0;
		struct sbx_xfer *x;
		int rc = sbx_xfer_open(sb, SBX_FOP_MOUNT, fl, 0, o->volumes[i].guest_path, tag, &x);
		if (!rc) {
			rc = sbx_xfer_finish(x, "mount a volume at", o->volumes[i].guest_path);
			sbx_xfer_close(x);
		}
		if (rc) {
			char saved[1024];
			sbx_error_save(saved, sizeof saved);
			return sbx_fail(rc,
					"volumes[%zu] (%.200s): %s (the QEMU user must be able "
					"to read the host directory, and write it unless "
					"read-only)",
					i, o->volumes[i].host_path, saved);
		}
	}
	return 0;
}

/* QEMU opens each volume as its own unprivileged user, and a directory it
 * cannot open makes the whole VM fail to start with a libvirt error.
 * Check first, as that user (uid, gid and supplementary groups, the way
 * libvirt starts QEMU), in a child process: a clear message, and no VM
 * started in vain. */
static int qemu_user_can_access(const struct sbx_runtime *rt, const char *path, int mode)
{
	struct passwd pw, *res = NULL;
	char pwbuf[1024];
	gid_t groups[64];
	int ngroups = 64;
	if (getpwuid_r(rt->qemu_uid, &pw, pwbuf, sizeof pwbuf, &res) != 0 || !res ||
	    getgrouplist(pw.pw_name, rt->qemu_gid, groups, &ngroups) < 0)
		ngroups = 0;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* only system calls from here: the parent has other threads */
		if (setgroups((size_t)ngroups, groups) != 0 || setgid(rt->qemu_gid) != 0 ||
		    setuid(rt->qemu_uid) != 0)
			_exit(2);
		_exit(access(path, mode) == 0 ? 0 : 1);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 2;
}

int sbx_volumes_check_access(const struct sbx_runtime *rt, const sandbox_options_t *o)
{
	if (rt->qemu_uid == (uid_t)-1)
		return 0; /* QEMU runs as the caller, who passed the checks */
	for (size_t i = 0; i < o->volumes_count; i++) {
		const sandbox_volume_t *v = &o->volumes[i];
		int ro = !!(v->flags & SANDBOX_VOLUME_READONLY);
		int r = qemu_user_can_access(rt, v->host_path, R_OK | X_OK | (ro ? 0 : W_OK));
		if (r < 0)
			return sbx_fail_errno(SANDBOX_E_IO, -r, "volumes[%zu]: cannot check access",
					      i);
		if (r)
			return sbx_fail(SANDBOX_E_PERM,
					"volumes[%zu]: host_path '%.200s' is not %s by the QEMU "
					"user (uid %u), which serves it to the guest",
					i, v->host_path, ro ? "readable" : "readable and writable",
					(unsigned)rt->qemu_uid);
	}
	return 0;
}
