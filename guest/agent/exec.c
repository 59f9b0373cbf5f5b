/* Commands behind exec streams (doc/protocol.md, "Exec streams"). */
#define _GNU_SOURCE
#include "exec.h"
#include "buf.h"
#include "spawn.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* After the direct child exits, how long its pipes may stay open. */
#define DRAIN_MS 250
/* Dead stream ids remembered, to tell a late host frame (sent before it
 * saw our EXIT) from a frame for a stream that never existed. */
#define CLOSED_RING 1024
/* Same default as glibc's execvp when PATH is not set. */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* Stdin credit is given back in batches of this, or when the queue empties. */
#define GRANT_BATCH (64u << 10)
#define CREDIT_MAX (UINT64_C(1) << 62)

enum { FD_STATUS, FD_IN, FD_OUT, FD_ERR, FD_COUNT };

enum xstate {
	X_STARTING, /* forked; waiting for the status pipe to say exec worked */
	X_RUNNING,  /* EXEC_STARTED sent */
	X_DEAD,	    /* EXIT or ERROR sent (or aborted); freed by exec_tick */
};

struct exec {
	uint32_t stream;
	enum xstate state;
	pid_t pid; /* direct child; also its process group id (setsid) */
	int fd[FD_COUNT];
	int reaped;
	int status; /* wait status, once reaped */
	int timed_out;
	uint64_t deadline;    /* timeout_ms expiry, 0 for none */
	uint64_t drain_until; /* reap time + DRAIN_MS */
	/* Bytes already in each output pipe when the direct child exited:
	 * the command's own output, delivered in full (waiting for credit if
	 * need be); the drain deadline only cuts off what comes later. */
	size_t owed[FD_COUNT];
	uint64_t out_credit; /* STDOUT+STDERR bytes we may still send */
	int stdin_allowed;   /* SBX_EXEC_F_STDIN */
	int stdin_eof;	     /* STDIN_EOF received */
	uint64_t in_credit;  /* STDIN bytes the host may still send */
	uint64_t in_grant;   /* stdin consumed but not yet granted back */
	struct buf inq;	     /* stdin not yet taken by the pipe */
	char argv0[128];     /* for error messages only */
	char cwd[128];
};

static struct port *g_port;
static struct exec *g_tab[EXEC_MAX];
static size_t g_n;
static uint32_t g_closed[CLOSED_RING];
static size_t g_closed_n, g_closed_pos;
/* exec_poll_prepare's slots: which command and which of its fds. */
static struct exec *g_ref[EXEC_POLL_MAX];
static uint8_t g_ref_fd[EXEC_POLL_MAX];

void exec_init(struct port *port)
{
	g_port = port;
}

struct exec *exec_find(uint32_t stream)
{
	for (size_t i = 0; i < g_n; i++)
		if (g_tab[i]->stream == stream && g_tab[i]->state != X_DEAD)
			return g_tab[i];
	return NULL;
}

int exec_recently_closed(uint32_t stream)
{
	for (size_t i = 0; i < g_closed_n; i++)
		if (g_closed[i] == stream)
			return 1;
	return 0;
}

void exec_mark_closed(uint32_t stream)
{
	g_closed[g_closed_pos] = stream;
	g_closed_pos = (g_closed_pos + 1) % CLOSED_RING;
	if (g_closed_n < CLOSED_RING)
		g_closed_n++;
}

static void close_fd(struct exec *e, int which)
{
	if (e->fd[which] >= 0) {
		close(e->fd[which]);
		e->fd[which] = -1;
	}
}

/* Signal the command's process group. Before the child's setsid() the
 * group does not exist yet; then the child itself is the target. */
static void kill_group(struct exec *e, int sig)
{
	if (e->pid <= 1)
		return; /* never kill(-1) or kill(0) by accident */
	if (kill(-e->pid, sig) != 0 && errno == ESRCH && !e->reaped)
		kill(e->pid, sig);
}

/* Mark the stream dead; exec_tick frees the record (poll slots of the
 * current iteration may still point at it). */
static void retire(struct exec *e)
{
	for (int i = 0; i < FD_COUNT; i++)
		close_fd(e, i);
	buf_reset(&e->inq);
	e->state = X_DEAD;
	exec_mark_closed(e->stream);
}

/* ---- starting ---------------------------------------------------------- */

/* Copy n wire strings into one NULL-terminated vector (one allocation). */
static char **strvec(const char *const *s, const uint32_t *len, uint32_t n)
{
	size_t bytes = (n + 1) * sizeof(char *);
	for (uint32_t i = 0; i < n; i++)
		bytes += (size_t)len[i] + 1;
	char **v = malloc(bytes);
	if (!v)
		return NULL;
	char *p = (char *)(v + n + 1);
	for (uint32_t i = 0; i < n; i++) {
		memcpy(p, s[i], len[i]);
		p[len[i]] = 0;
		v[i] = p;
		p += len[i] + 1;
	}
	v[n] = NULL;
	return v;
}

/* PATH for the search comes from the command's own environment. */
static const char *env_path(char *const *envp)
{
	for (; *envp; envp++)
		if (strncmp(*envp, "PATH=", 5) == 0)
			return *envp + 5;
	return DEFAULT_PATH;
}

struct start_args {
	char **argv, **envp, **sh_argv;
	char *cwd;
};

static void free_start_args(struct start_args *a)
{
	free(a->argv);
	free(a->envp);
	free(a->sh_argv);
	free(a->cwd);
}

static int build_start_args(const struct sbx_exec_start *es, struct start_args *a)
{
	memset(a, 0, sizeof *a);
	a->argv = strvec(es->argv, es->argv_len, es->argc);
	a->envp = strvec(es->env, es->env_len, es->envc);
	/* ENOEXEC fallback: /bin/sh FILE ARGS... (slot 1 filled by the child) */
	a->sh_argv = calloc((size_t)es->argc + 2, sizeof(char *));
	a->cwd = es->cwd_len ? strndup(es->cwd, es->cwd_len) : strdup("/");
	if (!a->argv || !a->envp || !a->sh_argv || !a->cwd) {
		free_start_args(a);
		return -1;
	}
	a->sh_argv[0] = "/bin/sh";
	for (uint32_t i = 1; i < es->argc; i++)
		a->sh_argv[i + 1] = a->argv[i];
	return 0;
}

static struct exec *new_exec(uint32_t stream, const struct sbx_exec_start *es,
			     const struct start_args *a, const struct spawn_res *rs, uint64_t now)
{
	struct exec *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	e->stream = stream;
	e->state = X_STARTING;
	e->pid = rs->pid;
	e->fd[FD_STATUS] = rs->fd_status;
	e->fd[FD_IN] = rs->fd_in;
	e->fd[FD_OUT] = rs->fd_out;
	e->fd[FD_ERR] = rs->fd_err;
	e->deadline = es->timeout_ms ? now + es->timeout_ms : 0;
	e->out_credit = SBX_PROTO_INITIAL_WINDOW;
	e->in_credit = SBX_PROTO_INITIAL_WINDOW;
	e->stdin_allowed = (es->flags & SBX_EXEC_F_STDIN) != 0;
	buf_init(&e->inq);
	snprintf(e->argv0, sizeof e->argv0, "%s", a->argv[0]);
	snprintf(e->cwd, sizeof e->cwd, "%s", a->cwd);
	return e;
}

static void start_failed(uint32_t stream, int err, const char *what)
{
	port_send_error(g_port, stream, err, "%s: %s", what, strerror(err));
	exec_mark_closed(stream);
}

void exec_start(uint32_t stream, const struct sbx_exec_start *es, uint64_t now)
{
	if (g_n >= EXEC_MAX) {
		start_failed(stream, EAGAIN, "too many commands running");
		return;
	}
	struct start_args a;
	if (build_start_args(es, &a) != 0) {
		start_failed(stream, ENOMEM, "exec");
		return;
	}
	struct spawn_req rq = {
	    .argv = a.argv,
	    .envp = a.envp,
	    .sh_argv = a.sh_argv,
	    .cwd = a.cwd,
	    .path = env_path(a.envp),
	    .want_stdin = (es->flags & SBX_EXEC_F_STDIN) != 0,
	};
	struct spawn_res rs;
	int err = spawn_start(&rq, &rs);
	if (err) {
		start_failed(stream, err, "cannot start a process");
		free_start_args(&a);
		return;
	}
	struct exec *e = new_exec(stream, es, &a, &rs, now);
	free_start_args(&a);
	if (!e) {
		/* Started but untrackable: kill it; it is reaped as an orphan. */
		kill(rs.pid, SIGKILL);
		close(rs.fd_status);
		close(rs.fd_out);
		close(rs.fd_err);
		if (rs.fd_in >= 0)
			close(rs.fd_in);
		start_failed(stream, ENOMEM, "exec");
		return;
	}
	g_tab[g_n++] = e;
}

/* The status pipe answered: EOF means execve succeeded, a record means
 * the child could not get there. */
static void resolve_status(struct exec *e)
{
	struct spawn_fail f;
	ssize_t n = read(e->fd[FD_STATUS], &f, sizeof f);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	close_fd(e, FD_STATUS);
	if (n == 0) {
		uint8_t pl[4];
		struct sbx_wr w;
		sbx_wr_init(&w, pl, sizeof pl);
		sbx_wr_u32(&w, (uint32_t)e->pid);
		port_send(g_port, SBX_T_EXEC_STARTED, e->stream, pl, w.off);
		e->state = X_RUNNING;
		return;
	}
	if (n != (ssize_t)sizeof f) {
		f.stage = SPAWN_SETUP;
		f.err = n < 0 ? errno : EIO;
	}
	/* The child has _exit()ed or is about to; it is reaped as an
	 * orphan once this record is gone. */
	if (f.stage == SPAWN_CHDIR)
		port_send_error(g_port, e->stream, f.err, "chdir %s: %s", e->cwd, strerror(f.err));
	else if (f.stage == SPAWN_EXEC)
		port_send_error(g_port, e->stream, f.err, "execve %s: %s", e->argv0,
				strerror(f.err));
	else
		port_send_error(g_port, e->stream, f.err, "setting up %s: %s", e->argv0,
				strerror(f.err));
	retire(e);
}

/* ---- host frames ------------------------------------------------------- */

/* The child no longer reads stdin: what is queued, and whatever the host
 * still sends, is dropped but counts as consumed so the host never waits
 * for credit that cannot come. */
static void stdin_gone(struct exec *e)
{
	e->in_grant += buf_len(&e->inq);
	buf_reset(&e->inq);
	close_fd(e, FD_IN);
}

static void write_stdin(struct exec *e)
{
	while (e->fd[FD_IN] >= 0 && buf_len(&e->inq)) {
		ssize_t n = write(e->fd[FD_IN], buf_peek(&e->inq), buf_len(&e->inq));
		if (n > 0) {
			buf_consume(&e->inq, (size_t)n);
			e->in_grant += (uint64_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno == EAGAIN) {
			return;
		} else {
			stdin_gone(e); /* EPIPE: the reader closed it */
		}
	}
	if (buf_len(&e->inq) == 0) {
		buf_reset(&e->inq);
		if (e->stdin_eof)
			close_fd(e, FD_IN);
	}
}

int exec_on_stdin(struct exec *e, const uint8_t *data, size_t len, const char **msg)
{
	if (!e->stdin_allowed) {
		*msg = "STDIN on a stream started without SBX_EXEC_F_STDIN";
		return EPROTO;
	}
	if (e->stdin_eof) {
		*msg = "STDIN after STDIN_EOF";
		return EPROTO;
	}
	if (len == 0) {
		*msg = "empty STDIN frame";
		return EINVAL;
	}
	if (len > e->in_credit) {
		*msg = "STDIN beyond the granted window";
		return EPROTO;
	}
	e->in_credit -= len;
	if (e->fd[FD_IN] < 0) {
		e->in_grant += len;
		return 0;
	}
	if (buf_append(&e->inq, data, len) != 0) {
		*msg = "out of memory for stdin";
		return ENOMEM;
	}
	write_stdin(e); /* usually the pipe takes it at once */
	return 0;
}

int exec_on_stdin_eof(struct exec *e, const char **msg)
{
	if (!e->stdin_allowed) {
		*msg = "STDIN_EOF on a stream started without SBX_EXEC_F_STDIN";
		return EPROTO;
	}
	if (e->stdin_eof) {
		*msg = "duplicate STDIN_EOF";
		return EPROTO;
	}
	e->stdin_eof = 1;
	if (buf_len(&e->inq) == 0)
		close_fd(e, FD_IN);
	return 0;
}

void exec_on_window(struct exec *e, uint32_t credit)
{
	e->out_credit += credit;
	if (e->out_credit > CREDIT_MAX)
		e->out_credit = CREDIT_MAX;
}

int exec_on_signal(struct exec *e, uint32_t sig, const char **msg)
{
	if (sig < 1 || sig > 64) {
		*msg = "signal number outside 1..64";
		return EINVAL;
	}
	kill_group(e, (int)sig);
	return 0;
}

void exec_abort(struct exec *e)
{
	if (e->state == X_DEAD)
		return;
	kill_group(e, SIGKILL);
	retire(e);
}

void exec_abort_all(void)
{
	for (size_t i = 0; i < g_n; i++)
		exec_abort(g_tab[i]);
	/* Stream ids are per connection. */
	g_closed_n = g_closed_pos = 0;
}

/* ---- children ---------------------------------------------------------- */

static void child_exited(pid_t pid, int status, uint64_t now)
{
	for (size_t i = 0; i < g_n; i++) {
		struct exec *e = g_tab[i];
		if (e->pid != pid || e->reaped)
			continue;
		e->reaped = 1;
		e->status = status;
		e->drain_until = now + DRAIN_MS;
		for (int k = FD_OUT; k <= FD_ERR; k++) {
			int pending = 0;
			if (e->fd[k] >= 0 && ioctl(e->fd[k], FIONREAD, &pending) == 0 &&
			    pending > 0)
				e->owed[k] = (size_t)pending;
		}
		/* Nobody is left to read stdin (background processes get EOF). */
		if (e->fd[FD_IN] >= 0)
			stdin_gone(e);
		return;
	}
	/* An orphan reparented to us, or a command already aborted: its
	 * status is nobody's business. */
}

void exec_reap(uint64_t now)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid > 0)
			child_exited(pid, status, now);
		else if (pid < 0 && errno == EINTR)
			continue;
		else
			return;
	}
}

/* ---- output ------------------------------------------------------------ */

static void read_output(struct exec *e, int which)
{
	if (!port_out_room(g_port) || e->out_credit == 0)
		return;
	size_t max = SBX_PROTO_MAX_PAYLOAD;
	if (e->out_credit < max)
		max = (size_t)e->out_credit;
	uint8_t *dst = port_data_reserve(g_port, max);
	if (!dst)
		return;
	ssize_t n = read(e->fd[which], dst, max);
	if (n > 0) {
		port_data_commit(g_port, which == FD_OUT ? SBX_T_STDOUT : SBX_T_STDERR, e->stream,
				 (size_t)n);
		e->out_credit -= (uint64_t)n;
		e->owed[which] -= (size_t)n < e->owed[which] ? (size_t)n : e->owed[which];
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		e->owed[which] = 0;
		close_fd(e, which);
	}
}

static size_t add_slot(struct pollfd *pfd, size_t n, struct exec *e, int which, short events)
{
	pfd[n].fd = e->fd[which];
	pfd[n].events = events;
	pfd[n].revents = 0;
	g_ref[n] = e;
	g_ref_fd[n] = (uint8_t)which;
	return n + 1;
}

size_t exec_poll_prepare(struct pollfd *pfd, size_t cap, int can_read)
{
	size_t n = 0;
	if (cap > EXEC_POLL_MAX)
		cap = EXEC_POLL_MAX;
	for (size_t i = 0; i < g_n && n + FD_COUNT <= cap; i++) {
		struct exec *e = g_tab[i];
		if (e->state == X_DEAD)
			continue;
		if (e->fd[FD_STATUS] >= 0)
			n = add_slot(pfd, n, e, FD_STATUS, POLLIN);
		if (e->fd[FD_IN] >= 0 && buf_len(&e->inq))
			n = add_slot(pfd, n, e, FD_IN, POLLOUT);
		/* Output only after EXEC_STARTED, and only with credit: with
		 * none, the pipes fill and the command blocks, as specified. */
		if (e->state != X_RUNNING || !can_read || e->out_credit == 0)
			continue;
		if (e->fd[FD_OUT] >= 0)
			n = add_slot(pfd, n, e, FD_OUT, POLLIN);
		if (e->fd[FD_ERR] >= 0)
			n = add_slot(pfd, n, e, FD_ERR, POLLIN);
	}
	return n;
}

void exec_poll_process(const struct pollfd *pfd, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct exec *e = g_ref[i];
		int which = g_ref_fd[i];
		if (!pfd[i].revents || e->state == X_DEAD || e->fd[which] != pfd[i].fd)
			continue;
		if (which == FD_STATUS)
			resolve_status(e);
		else if (which == FD_IN)
			write_stdin(e);
		else
			read_output(e, which);
	}
}

/* ---- time -------------------------------------------------------------- */

static void send_exit(struct exec *e)
{
	struct sbx_exit x = {SBX_EXIT_CODE, 0, 0};
	if (e->timed_out) {
		x.kind = SBX_EXIT_SIGNAL;
		x.timed_out = 1;
		x.value = SIGKILL;
	} else if (WIFSIGNALED(e->status)) {
		x.kind = SBX_EXIT_SIGNAL;
		x.value = WTERMSIG(e->status);
	} else {
		x.value = WEXITSTATUS(e->status);
	}
	uint8_t pl[8];
	size_t len = sbx_exit_encode(pl, &x);
	port_send(g_port, SBX_T_EXIT, e->stream, pl, len);
	retire(e);
}

static void grant_stdin(struct exec *e)
{
	if (e->state != X_RUNNING || e->in_grant == 0)
		return;
	if (e->in_grant < GRANT_BATCH && buf_len(&e->inq) != 0)
		return;
	uint8_t pl[4];
	struct sbx_wr w;
	sbx_wr_init(&w, pl, sizeof pl);
	sbx_wr_u32(&w, (uint32_t)e->in_grant); /* <= the initial window */
	port_send(g_port, SBX_T_WINDOW, e->stream, pl, w.off);
	e->in_credit += e->in_grant;
	e->in_grant = 0;
}

static uint64_t earlier(uint64_t a, uint64_t b)
{
	return !a || (b && b < a) ? b : a;
}

/* One command's timers; returns its next deadline (0: none). */
static uint64_t tick_one(struct exec *e, uint64_t now)
{
	if (e->deadline && !e->reaped && !e->timed_out && now >= e->deadline) {
		e->timed_out = 1;
		kill_group(e, SIGKILL);
	}
	grant_stdin(e);
	if (e->state == X_RUNNING && e->reaped) {
		/* Drain rule: both pipes at EOF, or DRAIN_MS after the
		 * direct child exited once what was already in the pipes
		 * then has been sent (background writers cannot hold it). */
		int owed = e->owed[FD_OUT] || e->owed[FD_ERR];
		if ((e->fd[FD_OUT] < 0 && e->fd[FD_ERR] < 0) || (now >= e->drain_until && !owed)) {
			send_exit(e);
			return 0;
		}
		return now >= e->drain_until ? now + 10 : e->drain_until;
	}
	if (e->state != X_DEAD && e->deadline && !e->reaped && !e->timed_out)
		return e->deadline;
	return 0;
}

uint64_t exec_tick(uint64_t now)
{
	uint64_t next = 0;
	for (size_t i = 0; i < g_n; i++)
		if (g_tab[i]->state != X_DEAD)
			next = earlier(next, tick_one(g_tab[i], now));
	/* Free retired records (nothing refers to them past this point). */
	for (size_t i = 0; i < g_n;) {
		if (g_tab[i]->state == X_DEAD) {
			buf_free(&g_tab[i]->inq);
			free(g_tab[i]);
			g_tab[i] = g_tab[--g_n];
		} else {
			i++;
		}
	}
	return next;
}
