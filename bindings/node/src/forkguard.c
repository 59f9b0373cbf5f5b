/* Keeps libuv's fork handler from breaking libvirt's process start.
 *
 * libuv (inside node) registers a pthread_atfork child handler
 * (uv__signal_global_reinit) that closes the fd numbers of its signal lock
 * pipe, as they were in Node's own process (4 and 5 at start-up), and
 * makes a new pipe, in EVERY forked child. libvirt starts QEMU with a
 * double fork; in the intermediate child those numbers belong to libvirt's
 * own handshake pipe, so the grandchild loses it and QEMU's start fails
 * with "Unable to notify child process: Bad file descriptor". (Python and C
 * programs are not affected.)
 *
 * This guard, registered after libuv's (child handlers run in registration
 * order), snapshots the low fds before each fork and, in the child, puts
 * back any that the earlier handler replaced or closed, and closes any it
 * opened. The child of a fork in a Node process always execs (libuv's
 * spawn, libvirt's helpers), so libuv's signal pipe in it is never used. */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addon.h"

#define GUARD_FDS 64

static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;

static struct {
	int open;
	int copy; /* a dup at >= GUARD_FDS, or -1 */
	int fd_flags;
	dev_t dev;
	ino_t ino;
} snap[GUARD_FDS];

static void before_fork(void)
{
	pthread_mutex_lock(&guard_lock);
	for (int fd = 0; fd < GUARD_FDS; fd++) {
		struct stat st;
		snap[fd].copy = -1;
		snap[fd].open = fstat(fd, &st) == 0;
		if (!snap[fd].open)
			continue;
		snap[fd].dev = st.st_dev;
		snap[fd].ino = st.st_ino;
		snap[fd].fd_flags = fcntl(fd, F_GETFD);
		snap[fd].copy = fcntl(fd, F_DUPFD_CLOEXEC, GUARD_FDS);
	}
}

static void drop_copies(void)
{
	for (int fd = 0; fd < GUARD_FDS; fd++)
		if (snap[fd].copy >= 0)
			close(snap[fd].copy);
}

static void in_parent(void)
{
	drop_copies();
	pthread_mutex_unlock(&guard_lock);
}

static void in_child(void)
{
	for (int fd = 0; fd < GUARD_FDS; fd++) {
		struct stat st;
		int open_now = fstat(fd, &st) == 0;
		if (snap[fd].open && snap[fd].copy >= 0 &&
		    (!open_now || st.st_dev != snap[fd].dev || st.st_ino != snap[fd].ino)) {
			dup2(snap[fd].copy, fd);
			if (snap[fd].fd_flags >= 0)
				fcntl(fd, F_SETFD, snap[fd].fd_flags);
		} else if (!snap[fd].open && open_now) {
			close(fd);
		}
	}
	drop_copies();
	pthread_mutex_unlock(&guard_lock);
}

static pthread_once_t guard_once = PTHREAD_ONCE_INIT;

static void install(void)
{
	pthread_atfork(before_fork, in_parent, in_child);
}

void sbx_node_fork_guard_install(void)
{
	pthread_once(&guard_once, install);
}
