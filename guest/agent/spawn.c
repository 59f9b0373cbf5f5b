/* fork + execve of one command (see spawn.h). */
#define _GNU_SOURCE
#include "spawn.h"
#include "sysinit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* The child's copy of the status pipe lives here: after 0, 1, 2. */
#define STATUS_FD 3

static void close_pair(int p[2])
{
	if (p[0] >= 0)
		close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	p[0] = p[1] = -1;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Child only. Tell the parent why we could not run, then die. */
static _Noreturn void child_fail(enum spawn_stage stage, int err)
{
	struct spawn_fail f = {stage, err};
	ssize_t w = write(STATUS_FD, &f, sizeof f);
	(void)w;
	_exit(127);
}

/* Child only. execve, and like execvp hand a file without a valid
 * executable header to /bin/sh. Returns errno. */
static int try_exec(const char *file, const struct spawn_req *rq)
{
	execve(file, rq->argv, rq->envp);
	int err = errno;
	if (err == ENOEXEC) {
		rq->sh_argv[1] = (char *)file;
		execve("/bin/sh", rq->sh_argv, rq->envp);
	}
	return err;
}

/* Child only: the execvpe search, without allocating. An EACCES seen on
 * the way wins over a later ENOENT, as in glibc. */
static int exec_search(const struct spawn_req *rq)
{
	const char *file = rq->argv[0];
	if (file[0] == 0)
		return ENOENT;
	if (strchr(file, '/'))
		return try_exec(file, rq);
	size_t flen = strlen(file);
	int seen_eacces = 0, err = ENOENT;
	const char *p = rq->path;
	for (;;) {
		const char *end = strchrnul(p, ':');
		size_t dlen = (size_t)(end - p);
		char full[PATH_MAX];
		if (dlen + 1 + flen < sizeof full) {
			/* an empty PATH element means the current directory */
			memcpy(full, p, dlen);
			full[dlen] = '/';
			memcpy(full + dlen + 1, file, flen + 1);
			err = try_exec(dlen ? full : file, rq);
			if (err == EACCES)
				seen_eacces = 1;
			else if (err != ENOENT && err != ENOTDIR && err != ESTALE &&
				 err != ENODEV && err != ETIMEDOUT && err != ENAMETOOLONG)
				return err;
		}
		if (*end == 0)
			break;
		p = end + 1;
	}
	return seen_eacces ? EACCES : ENOENT;
}

/* Child only: between fork and execve. Only async-signal-safe calls. */
static _Noreturn void child(const struct spawn_req *rq, int in_r, int out_w, int err_w, int st_w)
{
	/* The agent blocks SIGCHLD (signalfd) and ignores SIGPIPE; both
	 * would otherwise be inherited through execve. */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGPIPE, &dfl, NULL);

	/* The status pipe first, so every later failure can be reported.
	 * All pipe ends are >= 3 (fds 0-2 are always open in the agent), and
	 * spawn_start made sure none of the pipe ends is STATUS_FD, so this
	 * dup2 cannot clobber one still to be moved. */
	if (st_w != STATUS_FD && dup2(st_w, STATUS_FD) < 0)
		_exit(127);
	fcntl(STATUS_FD, F_SETFD, FD_CLOEXEC);

	/* Own session, hence own process group: SIGNAL and timeouts go to
	 * the whole group, never to the agent's own. */
	if (setsid() < 0)
		child_fail(SPAWN_SETUP, errno);
	if (in_r < 0 && (in_r = open("/dev/null", O_RDONLY)) < 0)
		child_fail(SPAWN_SETUP, errno);
	if (dup2(in_r, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
		child_fail(SPAWN_SETUP, errno);
	/* Nothing of the agent's (port, other commands' pipes) may leak. */
	if (close_range(STATUS_FD + 1, ~0u, 0) != 0) {
		for (int fd = STATUS_FD + 1; fd < 65536; fd++)
			close(fd);
	}
	sys_child_restore_nofile();
	if (chdir(rq->cwd) != 0)
		child_fail(SPAWN_CHDIR, errno);
	child_fail(SPAWN_EXEC, exec_search(rq));
}

/* Make sure fd is not STATUS_FD, so the child's dup2 onto STATUS_FD
 * cannot clobber a descriptor it still has to move. */
static int avoid_status_fd(int fd)
{
	if (fd != STATUS_FD)
		return fd;
	int n = fcntl(fd, F_DUPFD_CLOEXEC, STATUS_FD + 1);
	close(fd);
	return n;
}

static int make_pipe(int p[2])
{
	if (pipe2(p, O_CLOEXEC) != 0)
		return -1;
	p[0] = avoid_status_fd(p[0]);
	p[1] = avoid_status_fd(p[1]);
	if (p[0] < 0 || p[1] < 0) {
		close_pair(p);
		return -1;
	}
	return 0;
}

int spawn_start(const struct spawn_req *rq, struct spawn_res *rs)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, st[2] = {-1, -1};
	int e = 0;
	if ((rq->want_stdin && make_pipe(in) != 0) || make_pipe(out) != 0 || make_pipe(err) != 0 ||
	    make_pipe(st) != 0)
		goto fail;
	if ((in[1] >= 0 && set_nonblock(in[1]) != 0) || set_nonblock(out[0]) != 0 ||
	    set_nonblock(err[0]) != 0 || set_nonblock(st[0]) != 0)
		goto fail;
	pid_t pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0)
		child(rq, in[0], out[1], err[1], st[1]);
	if (in[0] >= 0)
		close(in[0]);
	close(out[1]);
	close(err[1]);
	close(st[1]);
	rs->pid = pid;
	rs->fd_in = in[1];
	rs->fd_out = out[0];
	rs->fd_err = err[0];
	rs->fd_status = st[0];
	return 0;
fail:
	e = errno;
	close_pair(in);
	close_pair(out);
	close_pair(err);
	close_pair(st);
	return e ? e : EIO;
}
