/* PID-1 duties: API filesystems, host name, loopback, power-off. */
#define _GNU_SOURCE
#include "sysinit.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOSTNAME "sandbox"

static struct rlimit g_nofile_orig;
static int g_nofile_saved;

struct mnt {
	const char *target;
	const char *fstype;
	unsigned long flags;
	const char *data;
	mode_t mode; /* of the mount point, if we must create it */
};

/* Order matters: /dev before /dev/pts and /dev/shm. */
static const struct mnt g_mounts[] = {
    {"/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555},
    {"/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, 0555},
    {"/dev", "devtmpfs", MS_NOSUID, "mode=0755", 0755},
    {"/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666", 0755},
    {"/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
    {"/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", 0755},
    {"/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", 01777},
};

/* A directory is a mount point when it lives on another device than its
 * parent. That is enough here and needs no /proc (which may not be
 * mounted yet); an initramfs that moved /dev or /proc over is detected. */
static int is_mountpoint(const char *path)
{
	char parent[256];
	struct stat a, b;
	snprintf(parent, sizeof parent, "%s/..", path);
	if (stat(path, &a) != 0 || stat(parent, &b) != 0)
		return 0;
	return a.st_dev != b.st_dev;
}

static void mount_one(const struct mnt *m)
{
	if (mkdir(m->target, m->mode) != 0 && errno != EEXIST) {
		log_msg("mkdir %s: %s", m->target, strerror(errno));
		return;
	}
	if (is_mountpoint(m->target))
		return;
	if (mount(m->fstype, m->target, m->fstype, m->flags, m->data) != 0)
		log_msg("mount %s on %s: %s", m->fstype, m->target, strerror(errno));
}

/* devtmpfs only holds device nodes; programs (bash process substitution,
 * `cat /dev/stdin`) expect these links too. */
static void dev_links(void)
{
	static const char *const links[][2] = {
	    {"/proc/self/fd", "/dev/fd"},	{"/proc/self/fd/0", "/dev/stdin"},
	    {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"},
	    {"pts/ptmx", "/dev/ptmx"},
	};
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
		struct stat st;
		if (lstat(links[i][1], &st) == 0)
			continue;
		if (symlink(links[i][0], links[i][1]) != 0 && errno != EEXIST)
			log_msg("symlink %s: %s", links[i][1], strerror(errno));
	}
}

/* The equivalent of `ip link set lo up`, without any tool in the image. */
static void loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		log_msg("socket for lo: %s", strerror(errno));
		return;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
		log_msg("SIOCGIFFLAGS lo: %s", strerror(errno));
	} else if (!(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
			log_msg("SIOCSIFFLAGS lo: %s", strerror(errno));
	}
	close(s);
}

void sys_init(void)
{
	for (size_t i = 0; i < sizeof g_mounts / sizeof g_mounts[0]; i++)
		mount_one(&g_mounts[i]);
	dev_links();
	if (sethostname(HOSTNAME, strlen(HOSTNAME)) != 0)
		log_msg("sethostname: %s", strerror(errno));
	loopback_up();
}

void sys_ensure_std_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int n = open("/dev/null", O_RDWR);
		if (n < 0)
			sys_fatal("open /dev/null: %s", strerror(errno));
		if (n != fd) {
			/* lower fds are all open, so n > fd: move it down */
			if (dup2(n, fd) < 0)
				sys_fatal("dup2: %s", strerror(errno));
			close(n);
		}
	}
}

void sys_raise_nofile(void)
{
	if (getrlimit(RLIMIT_NOFILE, &g_nofile_orig) != 0)
		return;
	g_nofile_saved = 1;
	struct rlimit r = g_nofile_orig;
	r.rlim_cur = r.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &r) != 0)
		log_msg("setrlimit NOFILE: %s", strerror(errno));
}

/* Called in a forked child; setrlimit is a plain system call. */
void sys_child_restore_nofile(void)
{
	if (g_nofile_saved)
		setrlimit(RLIMIT_NOFILE, &g_nofile_orig);
}

_Noreturn void sys_shutdown(int status)
{
	if (getpid() != 1)
		exit(status);
	/* Everything but ourselves; then flush the overlay and end the VM.
	 * Not RB_POWER_OFF: qboot gives the guest no ACPI, so power-off only
	 * halts the CPU and QEMU runs on; the VM runs with on_reboot=destroy
	 * (bare QEMU: -no-reboot), so a reboot ends it. reboot() only returns
	 * on failure, and PID 1 must still not exit. */
	kill(-1, SIGKILL);
	sync();
	reboot(RB_AUTOBOOT);
	log_msg("reboot: %s", strerror(errno));
	for (;;)
		pause();
}

_Noreturn void sys_fatal(const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_msg("fatal: %s", msg);
	sys_shutdown(1);
}
