/*
 * libsandbox initramfs /init.
 *
 * Loads the modules listed in /modules.list (one name per line, in order,
 * from /lib/modules/NAME.ko), waits (bounded) for the root block device,
 * mounts it as ext4 on /newroot, moves /dev, /proc and /sys into it, frees
 * the initramfs and executes the agent as PID 1 in the new root (what
 * busybox switch_root does).
 *
 * On any failure it prints one "libsandbox-init: FATAL: ..." line to the
 * console and powers the VM off. It never drops to a shell and never hangs.
 *
 * Kernel command line parameters it understands:
 *   root=DEV              root block device (default /dev/vda)
 *   ro | rw               mount the root read-only / read-write (default rw)
 *   rootflags=OPTS        extra ext4 mount options (default noatime)
 *   rootwait=SECONDS      how long to wait for DEV (default 10)
 *   sandbox.agent=PATH    program to run as PID 1 (default /sbin/sandbox-agent)
 *   sandbox.inittrace     print a timestamp after each step (boot profiling)
 *   hostname=NAME         (the kernel's own) else /etc/hostname of the root
 *
 * Built static by guest/image/build.sh: cc -static -Os init.c -o init
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define NEWROOT "/newroot"

static int trace_on;
static int con = -1;

static void out(const char *s)
{
	size_t n = strlen(s);
	int fd = con >= 0 ? con : 2;
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w <= 0)
			break;
		s += w;
		n -= (size_t)w;
	}
}

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n = snprintf(buf, sizeof buf, "libsandbox-init: FATAL: ");
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
	va_end(ap);
	strncat(buf, "\n", sizeof buf - strlen(buf) - 1);
	out(buf);
	sync();
	/* Not RB_POWER_OFF: qboot provides no ACPI, so a power-off only
	 * halts the CPU and QEMU runs on. A reboot ends the VM, because the
	 * library runs it with on_reboot=destroy (bare QEMU: -no-reboot). */
	reboot(RB_AUTOBOOT);
	_exit(1);
}

static void trace(const char *what)
{
	if (!trace_on)
		return;
	struct timespec ts;
	char buf[256];
	clock_gettime(CLOCK_BOOTTIME, &ts);
	snprintf(buf, sizeof buf, "libsandbox-init: %ld.%02ld %s\n", (long)ts.tv_sec,
		 ts.tv_nsec / 10000000, what);
	out(buf);
}

static char *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, n = 0;
	char *b = malloc(cap + 1);
	for (;;) {
		if (!b)
			die("out of memory");
		ssize_t r = read(fd, b + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n == cap)
			b = realloc(b, (cap *= 2) + 1);
	}
	close(fd);
	b[n] = 0;
	if (len)
		*len = n;
	return b;
}

/* Deletes the initramfs contents (same device only), like switch_root. */
static void delete_contents(int dfd, dev_t rootdev)
{
	DIR *d = fdopendir(dfd);
	struct dirent *e;
	if (!d) {
		close(dfd);
		return;
	}
	while ((e = readdir(d))) {
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != rootdev)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int sub =
			    openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				delete_contents(sub, rootdev);
			unlinkat(dfd, e->d_name, AT_REMOVEDIR);
		} else {
			unlinkat(dfd, e->d_name, 0);
		}
	}
	closedir(d);
}

int main(void)
{
	const char *root = "/dev/vda", *agent = "/sbin/sandbox-agent";
	char flags[256] = "noatime";
	int ro = 0;
	long wait_s = 10;

	con = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	umask(022);
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die("cannot mount /proc: %s", strerror(errno));
	if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die("cannot mount /sys: %s", strerror(errno));
	if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0)
		die("cannot mount devtmpfs on /dev: %s", strerror(errno));
	if (con < 0)
		con = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);

	char *cmdline = read_file("/proc/cmdline", NULL);
	if (!cmdline)
		die("cannot read /proc/cmdline");
	for (char *save = NULL, *a = strtok_r(cmdline, " \t\n", &save); a;
	     a = strtok_r(NULL, " \t\n", &save)) {
		if (!strncmp(a, "root=", 5))
			root = a + 5;
		else if (!strcmp(a, "ro"))
			ro = 1;
		else if (!strcmp(a, "rw"))
			ro = 0;
		else if (!strncmp(a, "rootflags=", 10))
			snprintf(flags, sizeof flags, "%s", a + 10);
		else if (!strncmp(a, "rootwait=", 9))
			wait_s = strtol(a + 9, NULL, 10);
		else if (!strncmp(a, "sandbox.agent=", 14))
			agent = a + 14;
		else if (!strcmp(a, "sandbox.inittrace"))
			trace_on = 1;
	}
	if (wait_s <= 0 || wait_s > 3600)
		wait_s = 10;
	trace("start");

	char *list = read_file("/modules.list", NULL);
	if (!list)
		die("cannot read /modules.list");
	for (char *save = NULL, *m = strtok_r(list, "\n", &save); m;
	     m = strtok_r(NULL, "\n", &save)) {
		char path[256];
		if (!*m || *m == '#')
			continue;
		snprintf(path, sizeof path, "/lib/modules/%s.ko", m);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die("cannot open module %s: %s", path, strerror(errno));
		if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			die("cannot load module %s: %s", m, strerror(errno));
		close(fd);
		if (trace_on) {
			char t[300];
			snprintf(t, sizeof t, "mod %s", m);
			trace(t);
		}
	}
	trace("modules loaded");

	/* virtio_blk adds the disk synchronously: this normally passes at once. */
	struct stat st;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (stat(root, &st) < 0 || !S_ISBLK(st.st_mode)) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (t1.tv_sec - t0.tv_sec >= wait_s)
			die("root device %s did not appear within %lds", root, wait_s);
		usleep(5000);
	}
	trace("root device present");

	if (mkdir(NEWROOT, 0755) < 0 && errno != EEXIST)
		die("cannot create " NEWROOT ": %s", strerror(errno));
	unsigned long mflags = ro ? MS_RDONLY : 0;
	/* The generic options are flags for mount(2), the rest goes to ext4. */
	char data[256] = "";
	for (char *save = NULL, *o = strtok_r(flags, ",", &save); o;
	     o = strtok_r(NULL, ",", &save)) {
		if (!strcmp(o, "noatime"))
			mflags |= MS_NOATIME;
		else if (!strcmp(o, "nodiratime"))
			mflags |= MS_NODIRATIME;
		else if (!strcmp(o, "relatime"))
			mflags |= MS_RELATIME;
		else if (!strcmp(o, "nosuid"))
			mflags |= MS_NOSUID;
		else if (!strcmp(o, "nodev"))
			mflags |= MS_NODEV;
		else if (!strcmp(o, "sync"))
			mflags |= MS_SYNCHRONOUS;
		else if (!strcmp(o, "lazytime"))
			mflags |= MS_LAZYTIME;
		else {
			if (*data)
				strncat(data, ",", sizeof data - strlen(data) - 1);
			strncat(data, o, sizeof data - strlen(data) - 1);
		}
	}
	if (mount(root, NEWROOT, "ext4", mflags, data) < 0)
		die("cannot mount %s (ext4, %s,%s) on " NEWROOT ": %s", root, ro ? "ro" : "rw",
		    flags, strerror(errno));
	trace("root mounted");

	char apath[512];
	snprintf(apath, sizeof apath, NEWROOT "%s", agent);
	if (access(apath, X_OK) < 0)
		die("agent %s is missing or not executable in the root filesystem", agent);

	/* No init system sets the host name: take /etc/hostname unless the
	 * kernel command line (hostname=) already did. */
	char cur[65] = "";
	if (gethostname(cur, sizeof cur - 1) < 0 || !*cur || !strcmp(cur, "(none)")) {
		size_t hlen = 0;
		char *h = read_file(NEWROOT "/etc/hostname", &hlen);
		if (h) {
			hlen = strcspn(h, " \t\r\n");
			if (hlen > 0 && hlen <= 64)
				sethostname(h, hlen);
			free(h);
		}
	}

	trace("exec agent");
	static const char *const moves[] = {"/dev", "/proc", "/sys"};
	for (size_t i = 0; i < sizeof moves / sizeof *moves; i++) {
		char dst[64];
		snprintf(dst, sizeof dst, NEWROOT "%s", moves[i]);
		if (stat(dst, &st) == 0 && S_ISDIR(st.st_mode)) {
			if (mount(moves[i], dst, NULL, MS_MOVE, NULL) < 0)
				die("cannot move %s to %s: %s", moves[i], dst, strerror(errno));
		} else {
			umount2(moves[i], MNT_DETACH);
		}
	}

	/* switch_root: free the initramfs, make the new root "/", exec. */
	struct stat rst;
	if (stat("/", &rst) == 0) {
		int dfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0)
			delete_contents(dfd, rst.st_dev);
	}
	if (chdir(NEWROOT) < 0)
		die("cannot chdir to " NEWROOT ": %s", strerror(errno));
	if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
		die("cannot move " NEWROOT " to /: %s", strerror(errno));
	if (chroot(".") < 0 || chdir("/") < 0)
		die("cannot chroot into the new root: %s", strerror(errno));

	/* The agent gets a clean environment. */
	char *const argv[] = {(char *)agent, NULL};
	char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			      "HOME=/root", "TERM=linux", NULL};
	if (con >= 0)
		close(con);
	con = -1;
	execve(agent, argv, envp);
	con = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	die("cannot execute %s: %s", agent, strerror(errno));
}
