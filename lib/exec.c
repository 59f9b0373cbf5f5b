/* Commands: starting them over the channel, streaming their output with
 * flow control, and the buffered sandbox_exec() built on top. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "options.h"
#include "sandbox_int.h"
#include "util.h"

struct sandbox_result {
	int exit_code;
	int signal;
	int timed_out;
	uint8_t *out[3];
	size_t len[3];
	uint64_t total[3];
	double duration_ms;
};

/* How long the agent may take to answer a command start before the
 * sandbox is declared broken, and the grace the agent gets past a
 * command's own timeout before the host stops waiting for it. */
#define AGENT_REPLY_MS 60000
#define TIMEOUT_GRACE_MS 5000

/* Credit granted at once for a command nobody reads any more: its output
 * is dropped as it arrives, and the agent must not stall on it. */
#define ABANDON_GRANT (1u << 30)

/* Return consumed output credit in batches, not per frame. */
#define WINDOW_BATCH (64u * 1024u)

static int check_flags(unsigned int flags, unsigned int known, const char *fn)
{
	if (flags & ~known)
		return sbx_fail(SANDBOX_E_FLAGS, "%s: unknown flags 0x%x", fn, flags & ~known);
	return 0;
}

static void send_window(struct sandbox *sb, uint32_t stream, uint32_t n)
{
	sbx_chan_send_u32(sb, SBX_T_WINDOW, stream, n);
}

/* ---- env merging: defaults, then the sandbox's, then the call's */

static const char *const default_env[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME=/root",
    "LANG=C.UTF-8",
    "TERM=dumb",
    NULL,
};

static size_t name_len(const char *kv)
{
	return (size_t)(strchr(kv, '=') - kv);
}

static void env_put(const char **out, size_t *n, const char *kv)
{
	size_t nl = name_len(kv);
	for (size_t i = 0; i < *n; i++) {
		if (name_len(out[i]) == nl && !strncmp(out[i], kv, nl)) {
			out[i] = kv;
			return;
		}
	}
	out[(*n)++] = kv;
}

static size_t count(const char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

/* ---- EXEC_START */

static int encode_start(struct sandbox *sb, const char *const *argv,
			const sandbox_exec_options_t *o, uint32_t flags, uint8_t **out,
			size_t *out_len)
{
	size_t cap_env = count(default_env) + count((const char *const *)sb->env) + count(o->env);
	const char **env = calloc(cap_env + 1, sizeof *env);
	if (!env)
		return sbx_fail(SANDBOX_E_NOMEM, "exec env");
	size_t envc = 0;
	for (size_t i = 0; default_env[i]; i++)
		env_put(env, &envc, default_env[i]);
	for (size_t i = 0; sb->env && sb->env[i]; i++)
		env_put(env, &envc, sb->env[i]);
	for (size_t i = 0; o->env && o->env[i]; i++)
		env_put(env, &envc, o->env[i]);

	uint8_t *buf = malloc(SBX_PROTO_MAX_PAYLOAD);
	if (!buf) {
		free(env);
		return sbx_fail(SANDBOX_E_NOMEM, "exec frame");
	}
	const char *cwd = o->cwd ? o->cwd : sb->workdir;
	struct sbx_wr w;
	sbx_wr_init(&w, buf, SBX_PROTO_MAX_PAYLOAD);
	sbx_wr_u32(&w, flags);
	sbx_wr_u32(&w, o->timeout_ms);
	sbx_wr_u32(&w, (uint32_t)count(argv));
	sbx_wr_u32(&w, (uint32_t)envc);
	sbx_wr_str(&w, cwd, strlen(cwd));
	for (size_t i = 0; argv[i]; i++)
		sbx_wr_str(&w, argv[i], strlen(argv[i]));
	for (size_t i = 0; i < envc; i++)
		sbx_wr_str(&w, env[i], strlen(env[i]));
	free(env);
	if (w.bad) {
		free(buf);
		return sbx_fail(SANDBOX_E_INVAL,
				"command line and environment exceed %u bytes together",
				SBX_PROTO_MAX_PAYLOAD);
	}
	*out = buf;
	*out_len = w.off;
	return 0;
}

static void audit_start(struct sandbox *sb, const char *const *argv, const char *cwd,
			uint32_t stream)
{
	struct sbx_json j;
	sbx_audit_begin(&sb->audit, &j, "exec.start");
	sbx_json_int(&j, "exec", stream);
	sbx_json_open_array(&j, "argv");
	for (size_t i = 0; argv[i]; i++)
		sbx_json_str(&j, NULL, argv[i]);
	sbx_json_close_array(&j);
	sbx_json_str(&j, "cwd", cwd);
	sbx_audit_emit(&sb->audit, &j);
}

/* Called by the I/O thread (lock held) when a stream ends. */
void sbx_proc_on_exit_locked(struct sandbox_proc *p)
{
	struct sandbox *sb = p->sb;
	p->end_us = sbx_now_us();
	struct sbx_json j;
	sbx_audit_begin(&sb->audit, &j, "exec.exit");
	sbx_json_int(&j, "exec", p->stream);
	sbx_json_str(&j, "command", p->argv0);
	if (p->spawn_err) {
		sbx_json_str(&j, "error", p->spawn_msg);
	} else {
		if (p->exit.kind == SBX_EXIT_CODE)
			sbx_json_int(&j, "exit_code", p->exit.value);
		else
			sbx_json_int(&j, "signal", p->exit.value);
		sbx_json_bool(&j, "timed_out", p->exit.timed_out);
	}
	sbx_json_double(&j, "duration_ms", (double)(p->end_us - p->start_us) / 1000.0);
	sbx_json_int(&j, "stdout_bytes", (int64_t)p->total[SANDBOX_STDOUT]);
	sbx_json_int(&j, "stderr_bytes", (int64_t)p->total[SANDBOX_STDERR]);
	sbx_audit_emit(&sb->audit, &j);
	/* unlink: the stream id is dead */
	for (struct sandbox_proc **pp = &sb->procs; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	}
	p->next = NULL;
	if (p->abandoned)
		sbx_proc_free_locked(p);
}

void sbx_procs_fail_locked(struct sandbox *sb)
{
	while (sb->procs) {
		struct sandbox_proc *p = sb->procs;
		sb->procs = p->next;
		p->next = NULL;
		if (p->abandoned)
			sbx_proc_free_locked(p);
	}
}

void sbx_proc_free_locked(struct sandbox_proc *p)
{
	sbx_outq_free(&p->out);
	free(p->argv0);
	free(p);
}

static int wait_started(struct sandbox_proc *p)
{
	struct sandbox *sb = p->sb;
	int64_t deadline = sbx_now_ms() + AGENT_REPLY_MS;
	int timed_out = 0;
	pthread_mutex_lock(&sb->lock);
	while (!p->started && !p->exited && sb->state != SBX_DEAD && !timed_out)
		timed_out = sbx_wait_locked(sb, deadline) == ETIMEDOUT;
	int rc = 0;
	if (timed_out && !p->started && !p->exited && sb->state != SBX_DEAD) {
		pthread_mutex_unlock(&sb->lock);
		sbx_kill_internal(sb, "the agent did not answer a command start", 0);
		return sbx_fail(SANDBOX_E_TIMEOUT,
				"the agent did not answer within %d s; sandbox %s killed",
				AGENT_REPLY_MS / 1000, sb->id);
	}
	if (p->spawn_err) {
		rc = sbx_fail(p->spawn_err == ENOENT ? SANDBOX_E_NOTFOUND : SANDBOX_E_EXEC,
			      "cannot start '%s' in the sandbox: %s", p->argv0, p->spawn_msg);
	} else if (!p->started) {
		rc = sbx_dead_error_locked(sb);
	}
	pthread_mutex_unlock(&sb->lock);
	return rc;
}

static int proc_start(sandbox_t *sb, const char *const *argv, const sandbox_exec_options_t *o,
		      int want_stdin, sandbox_proc_t **out)
{
	uint8_t *frame = NULL;
	size_t flen = 0;
	int rc = encode_start(sb, argv, o, want_stdin ? SBX_EXEC_F_STDIN : 0, &frame, &flen);
	if (rc)
		return rc;
	struct sandbox_proc *p = calloc(1, sizeof *p);
	char *a0 = strdup(argv[0]);
	if (!p || !a0) {
		free(p);
		free(a0);
		free(frame);
		return sbx_fail(SANDBOX_E_NOMEM, "proc");
	}
	p->sb = sb;
	p->argv0 = a0;
	p->has_stdin = want_stdin;
	p->stdin_closed = !want_stdin;
	p->out_credit = SBX_PROTO_INITIAL_WINDOW;
	p->in_credit = SBX_PROTO_INITIAL_WINDOW;
	p->start_us = sbx_now_us();

	pthread_mutex_lock(&sb->lock);
	if (sb->state != SBX_RUNNING) {
		rc = sbx_fail(SANDBOX_E_DEAD, "sandbox %s is not running: %s", sb->id,
			      sb->dead_reason[0] ? sb->dead_reason : "not ready");
		pthread_mutex_unlock(&sb->lock);
		free(frame);
		free(a0);
		free(p);
		return rc;
	}
	p->stream = ++sb->next_stream;
	p->next = sb->procs;
	sb->procs = p;
	sbx_sandbox_ref(sb); /* dropped by sandbox_proc_free */
	pthread_mutex_unlock(&sb->lock);

	audit_start(sb, argv, o->cwd ? o->cwd : sb->workdir, p->stream);
	rc = sbx_chan_send(sb, SBX_T_EXEC_START, p->stream, frame, flen);
	free(frame);
	if (!rc)
		rc = wait_started(p);
	if (rc) {
		char saved[1024];
		sbx_error_save(saved, sizeof saved);
		sandbox_proc_free(p);
		sbx_error_restore(saved);
		return rc;
	}
	*out = p;
	return 0;
}

static int common_checks(sandbox_t *sb, const char *const *argv, const sandbox_exec_options_t *o,
			 const char *fn)
{
	if (!sb)
		return sbx_fail(SANDBOX_E_INVAL, "%s: sandbox is NULL", fn);
	int rc = sbx_argv_validate(argv);
	if (!rc && o)
		rc = sbx_exec_options_validate(o);
	return rc;
}

SANDBOX_API int sandbox_proc_start(sandbox_t *sb, const char *const *argv,
				   const sandbox_exec_options_t *opts, sandbox_proc_t **proc,
				   unsigned int flags)
{
	sbx_clear_error();
	if (!proc)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_proc_start: proc is NULL");
	*proc = NULL;
	int rc = check_flags(flags, SANDBOX_PROC_STDIN, "sandbox_proc_start");
	if (!rc)
		rc = common_checks(sb, argv, opts, "sandbox_proc_start");
	if (rc)
		return rc;
	sandbox_exec_options_t d = SANDBOX_EXEC_OPTIONS_INIT;
	return proc_start(sb, argv, opts ? opts : &d, !!(flags & SANDBOX_PROC_STDIN), proc);
}

/* ---- stdin */

static int wait_credit(struct sandbox_proc *p, size_t want, size_t *got)
{
	struct sandbox *sb = p->sb;
	pthread_mutex_lock(&sb->lock);
	while (!p->in_credit && !p->exited && sb->state != SBX_DEAD)
		pthread_cond_wait(&sb->cond, &sb->lock);
	int rc = 0;
	if (p->exited)
		rc = sbx_fail(SANDBOX_E_IO, "the command has ended; its stdin is closed");
	else if (sb->state == SBX_DEAD)
		rc = sbx_dead_error_locked(sb);
	if (!rc) {
		size_t n = want < p->in_credit ? want : (size_t)p->in_credit;
		if (n > SBX_PROTO_MAX_PAYLOAD)
			n = SBX_PROTO_MAX_PAYLOAD;
		p->in_credit -= n;
		*got = n;
	}
	pthread_mutex_unlock(&sb->lock);
	return rc;
}

SANDBOX_API int sandbox_proc_write(sandbox_proc_t *p, const void *data, size_t len,
				   unsigned int flags)
{
	sbx_clear_error();
	if (!p || (!data && len))
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_proc_write: NULL argument");
	int rc = check_flags(flags, 0, "sandbox_proc_write");
	if (rc)
		return rc;
	if (!p->has_stdin || p->stdin_closed)
		return sbx_fail(
		    SANDBOX_E_INVAL,
		    "stdin is not open (start with SANDBOX_PROC_STDIN; not after close)");
	const uint8_t *q = data;
	while (len) {
		size_t n;
		if ((rc = wait_credit(p, len, &n)))
			return rc;
		if ((rc = sbx_chan_send(p->sb, SBX_T_STDIN, p->stream, q, n)))
			return rc;
		q += n;
		len -= n;
	}
	return 0;
}

SANDBOX_API int sandbox_proc_close_stdin(sandbox_proc_t *p, unsigned int flags)
{
	sbx_clear_error();
	if (!p)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_proc_close_stdin: proc is NULL");
	int rc = check_flags(flags, 0, "sandbox_proc_close_stdin");
	if (rc || p->stdin_closed)
		return rc;
	p->stdin_closed = 1;
	pthread_mutex_lock(&p->sb->lock);
	int exited = p->exited;
	pthread_mutex_unlock(&p->sb->lock);
	return exited ? 0 : sbx_chan_send(p->sb, SBX_T_STDIN_EOF, p->stream, NULL, 0);
}

/* ---- output */

/* Monotonic deadline for a timeout in ms; -1: none (INT64_MAX). */
static int64_t deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? INT64_MAX : sbx_now_ms() + timeout_ms;
}

/* Wait (lock held) until output is queued, the command ended, or the
 * sandbox died. Returns 0, or SANDBOX_E_TIMEOUT. */
static int wait_output_locked(struct sandbox_proc *p, int timeout_ms)
{
	struct sandbox *sb = p->sb;
	int64_t deadline = deadline_after(timeout_ms);
	while (sbx_outq_empty(&p->out) && !p->exited && sb->state != SBX_DEAD)
		if (sbx_wait_locked(sb, deadline) == ETIMEDOUT)
			return SANDBOX_E_TIMEOUT;
	return 0;
}

/* Take up to cap bytes of the first run of output (lock held). */
static size_t take_locked(struct sandbox_proc *p, int *stream, void *buf, size_t cap, uint32_t *ack)
{
	size_t n = sbx_outq_pop(&p->out, stream, buf, cap);
	p->out_unacked += (uint32_t)n;
	*ack = 0;
	if (!p->exited && (p->out_unacked >= WINDOW_BATCH || sbx_outq_empty(&p->out))) {
		*ack = p->out_unacked;
		p->out_credit += p->out_unacked;
		p->out_unacked = 0;
	}
	return n;
}

SANDBOX_API int sandbox_proc_read(sandbox_proc_t *p, int *stream, void *buf, size_t cap,
				  int timeout_ms, unsigned int flags)
{
	sbx_clear_error();
	if (!p || !stream || !buf || !cap)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_proc_read: NULL argument or zero size");
	int rc = check_flags(flags, 0, "sandbox_proc_read");
	if (rc)
		return rc;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	struct sandbox *sb = p->sb;
	pthread_mutex_lock(&sb->lock);
	rc = wait_output_locked(p, timeout_ms);
	uint32_t ack = 0;
	if (!rc && !sbx_outq_empty(&p->out)) {
		rc = (int)take_locked(p, stream, buf, cap, &ack);
	} else if (!rc && !p->exited) {
		rc = sbx_dead_error_locked(sb);
	} else if (rc == SANDBOX_E_TIMEOUT) {
		sbx_fail(rc, "no output within %d ms", timeout_ms);
	}
	pthread_mutex_unlock(&sb->lock);
	if (ack)
		send_window(sb, p->stream, ack);
	return rc;
}

SANDBOX_API int sandbox_proc_signal(sandbox_proc_t *p, int signo, unsigned int flags)
{
	sbx_clear_error();
	if (!p)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_proc_signal: proc is NULL");
	int rc = check_flags(flags, 0, "sandbox_proc_signal");
	if (rc)
		return rc;
	if (signo < 1 || signo > 64)
		return sbx_fail(SANDBOX_E_INVAL, "signal %d is outside 1..64", signo);
	pthread_mutex_lock(&p->sb->lock);
	int exited = p->exited;
	pthread_mutex_unlock(&p->sb->lock);
	if (exited)
		return 0; /* like kill(2) on a reaped child: nothing to signal */
	return sbx_chan_send_u32(p->sb, SBX_T_SIGNAL, p->stream, (uint32_t)signo);
}

SANDBOX_API int sandbox_proc_pid(const sandbox_proc_t *p)
{
	return p ? p->pid : -1;
}

/* The agent may end a running command's stream with ERROR instead of
 * EXIT (it rejected a frame we sent); there is no exit status then. */
static int stream_error_locked(struct sandbox_proc *p)
{
	if (!p->spawn_err)
		return 0;
	return sbx_fail(SANDBOX_E_IO, "the agent ended the stream of '%s': %s", p->argv0,
			p->spawn_msg);
}

static sandbox_result_t *make_result(struct sandbox_proc *p)
{
	sandbox_result_t *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->timed_out = p->exit.timed_out;
	if (p->exit.kind == SBX_EXIT_CODE) {
		r->exit_code = p->exit.value;
	} else {
		r->exit_code = -1;
		r->signal = p->exit.value;
	}
	memcpy(r->total, p->total, sizeof r->total);
	r->duration_ms = (double)(p->end_us - p->start_us) / 1000.0;
	return r;
}

/* Wait for EXIT, discarding output; lock held on entry and exit. */
static int wait_exit_locked(struct sandbox_proc *p, int timeout_ms)
{
	struct sandbox *sb = p->sb;
	int64_t deadline = deadline_after(timeout_ms);
	for (;;) {
		while (!sbx_outq_empty(&p->out)) {
			int s;
			uint32_t ack;
			take_locked(p, &s, NULL, SIZE_MAX, &ack);
			if (ack) {
				pthread_mutex_unlock(&sb->lock);
				send_window(sb, p->stream, ack);
				pthread_mutex_lock(&sb->lock);
			}
		}
		if (p->exited)
			return 0;
		if (sb->state == SBX_DEAD)
			return sbx_dead_error_locked(sb);
		if (sbx_wait_locked(sb, deadline) == ETIMEDOUT)
			return sbx_fail(SANDBOX_E_TIMEOUT, "command still running after %d ms",
					timeout_ms);
	}
}

SANDBOX_API int sandbox_proc_wait(sandbox_proc_t *p, int timeout_ms, sandbox_result_t **result,
				  unsigned int flags)
{
	sbx_clear_error();
	if (!p || !result)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_proc_wait: NULL argument");
	*result = NULL;
	int rc = check_flags(flags, 0, "sandbox_proc_wait");
	if (rc)
		return rc;
	pthread_mutex_lock(&p->sb->lock);
	rc = wait_exit_locked(p, timeout_ms);
	if (!rc)
		rc = stream_error_locked(p);
	if (!rc) {
		*result = make_result(p);
		if (!*result)
			rc = sbx_fail(SANDBOX_E_NOMEM, "result");
	}
	pthread_mutex_unlock(&p->sb->lock);
	return rc;
}

SANDBOX_API void sandbox_proc_free(sandbox_proc_t *p)
{
	if (!p)
		return;
	struct sandbox *sb = p->sb;
	pthread_mutex_lock(&sb->lock);
	int live = !p->exited && sb->state != SBX_DEAD;
	int linked = 0;
	for (struct sandbox_proc *q = sb->procs; q; q = q->next)
		linked |= q == p;
	if (live && linked) {
		/* The I/O thread frees it when EXIT arrives. */
		p->abandoned = 1;
		sbx_outq_free(&p->out);
		uint32_t stream = p->stream;
		uint32_t grant = ABANDON_GRANT;
		if (p->out_credit > UINT32_MAX - grant)
			grant = UINT32_MAX - p->out_credit;
		p->out_credit += grant;
		pthread_mutex_unlock(&sb->lock);
		/* Kill it, and let whatever it still sends flow (and be dropped
		 * by the I/O thread, which itself never writes) so its EXIT comes. */
		sbx_chan_send_u32(sb, SBX_T_SIGNAL, stream, 9);
		if (grant)
			sbx_chan_send_u32(sb, SBX_T_WINDOW, stream, grant);
		sbx_sandbox_unref(sb); /* the I/O thread frees p itself */
		return;
	}
	if (linked) {
		for (struct sandbox_proc **pp = &sb->procs; *pp; pp = &(*pp)->next) {
			if (*pp == p) {
				*pp = p->next;
				break;
			}
		}
	}
	sbx_proc_free_locked(p);
	pthread_mutex_unlock(&sb->lock);
	sbx_sandbox_unref(sb);
}

/* ---- buffered exec */

struct capture {
	const sandbox_exec_options_t *o;
	uint8_t *buf[3];
	size_t len[3], cap[3];
	int aborted;
	int oom;
};

static void capture(struct capture *c, int stream, const uint8_t *d, size_t n)
{
	if (c->o->on_output) {
		if (!c->aborted && c->o->on_output(stream, d, n, c->o->userdata))
			c->aborted = 1;
		return;
	}
	size_t room = c->o->max_capture - c->len[stream];
	if (n > room)
		n = room;
	if (!n)
		return;
	if (c->len[stream] + n > c->cap[stream]) {
		size_t cap = c->cap[stream] ? c->cap[stream] : 4096;
		while (cap < c->len[stream] + n)
			cap *= 2;
		uint8_t *b = realloc(c->buf[stream], cap);
		if (!b) {
			c->oom = 1;
			return;
		}
		c->buf[stream] = b;
		c->cap[stream] = cap;
	}
	memcpy(c->buf[stream] + c->len[stream], d, n);
	c->len[stream] += n;
}

/* One step of feeding stdin: send what credit allows, without blocking. */
static int feed_stdin(struct sandbox_proc *p, const uint8_t **data, size_t *left)
{
	struct sandbox *sb = p->sb;
	if (!*left) {
		if (!p->stdin_closed)
			return sandbox_proc_close_stdin(p, 0);
		return 0;
	}
	pthread_mutex_lock(&sb->lock);
	size_t n = *left < p->in_credit ? *left : (size_t)p->in_credit;
	if (n > SBX_PROTO_MAX_PAYLOAD)
		n = SBX_PROTO_MAX_PAYLOAD;
	p->in_credit -= n;
	int exited = p->exited;
	pthread_mutex_unlock(&sb->lock);
	if (exited) {
		*left = 0; /* the command stopped reading: drop the rest */
		return 0;
	}
	if (!n)
		return 0;
	int rc = sbx_chan_send(sb, SBX_T_STDIN, p->stream, *data, n);
	*data += n;
	*left -= n;
	if (!rc && !*left) /* EOF right away: the command may be waiting for it */
		rc = sandbox_proc_close_stdin(p, 0);
	return rc;
}

/* The agent enforces a command's timeout; the host does not trust it to.
 * Past timeout + grace the host sends SIGKILL itself; past another grace
 * with still no EXIT the agent is broken and the sandbox is killed.
 * Returns 0 to go on waiting, or an error. */
static int host_timeout(struct sandbox_proc *p, int64_t *deadline, int *stage)
{
	if (*stage == 0) {
		*stage = 1;
		*deadline = sbx_now_ms() + TIMEOUT_GRACE_MS;
		sbx_chan_send_u32(p->sb, SBX_T_SIGNAL, p->stream, 9);
		return 0;
	}
	sbx_kill_internal(p->sb, "the agent did not end a command at its timeout", 0);
	return sbx_fail(SANDBOX_E_TIMEOUT,
			"'%s' outlived its timeout and the agent did not end it; sandbox %s killed",
			p->argv0, p->sb->id);
}

static int pump(struct sandbox_proc *p, struct capture *c, const uint8_t *in, size_t in_len,
		unsigned int timeout_ms)
{
	struct sandbox *sb = p->sb;
	uint8_t buf[SBX_PROTO_MAX_PAYLOAD];
	int64_t deadline =
	    timeout_ms ? sbx_now_ms() + (int64_t)timeout_ms + TIMEOUT_GRACE_MS : INT64_MAX;
	int stage = 0;
	for (;;) {
		int rc = p->has_stdin ? feed_stdin(p, &in, &in_len) : 0;
		if (rc)
			return rc;
		pthread_mutex_lock(&sb->lock);
		int expired = 0;
		while (sbx_outq_empty(&p->out) && !p->exited && sb->state != SBX_DEAD &&
		       !(in_len && p->in_credit) && !expired) {
			expired = sbx_wait_locked(sb, deadline) == ETIMEDOUT;
		}
		if (expired && sbx_outq_empty(&p->out) && !p->exited && sb->state != SBX_DEAD) {
			pthread_mutex_unlock(&sb->lock);
			if ((rc = host_timeout(p, &deadline, &stage)))
				return rc;
			continue;
		}
		if (sbx_outq_empty(&p->out) && p->exited) {
			pthread_mutex_unlock(&sb->lock);
			return 0;
		}
		if (sbx_outq_empty(&p->out) && sb->state == SBX_DEAD) {
			rc = sbx_dead_error_locked(sb);
			pthread_mutex_unlock(&sb->lock);
			return rc;
		}
		int stream = 0;
		uint32_t ack = 0;
		size_t n =
		    !sbx_outq_empty(&p->out) ? take_locked(p, &stream, buf, sizeof buf, &ack) : 0;
		pthread_mutex_unlock(&sb->lock);
		if (ack)
			send_window(sb, p->stream, ack);
		if (n)
			capture(c, stream, buf, n);
		if (c->aborted) {
			sandbox_proc_signal(p, 9, 0);
			return sbx_fail(SANDBOX_E_ABORTED,
					"output callback asked to stop; command killed");
		}
		if (c->oom)
			return sbx_fail(SANDBOX_E_NOMEM, "capturing output");
	}
}

SANDBOX_API int sandbox_exec(sandbox_t *sb, const char *const *argv,
			     const sandbox_exec_options_t *opts, sandbox_result_t **result,
			     unsigned int flags)
{
	sbx_clear_error();
	if (!result)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_exec: result is NULL");
	*result = NULL;
	int rc = check_flags(flags, 0, "sandbox_exec");
	if (!rc)
		rc = common_checks(sb, argv, opts, "sandbox_exec");
	if (rc)
		return rc;
	sandbox_exec_options_t d = SANDBOX_EXEC_OPTIONS_INIT;
	const sandbox_exec_options_t *o = opts ? opts : &d;
	sandbox_proc_t *p;
	if ((rc = proc_start(sb, argv, o, o->stdin_len > 0, &p)))
		return rc;
	struct capture c = {.o = o};
	rc = pump(p, &c, o->stdin_data, o->stdin_len, o->timeout_ms);
	if (!rc) {
		pthread_mutex_lock(&sb->lock);
		rc = stream_error_locked(p);
		sandbox_result_t *r = rc ? NULL : make_result(p);
		pthread_mutex_unlock(&sb->lock);
		if (rc) {
			/* reported by stream_error_locked */
		} else if (!r) {
			rc = sbx_fail(SANDBOX_E_NOMEM, "result");
		} else {
			for (int s = 1; s <= 2; s++) {
				r->out[s] = c.buf[s];
				r->len[s] = c.len[s];
				c.buf[s] = NULL;
			}
			*result = r;
		}
	}
	free(c.buf[1]);
	free(c.buf[2]);
	char saved[1024];
	sbx_error_save(saved, sizeof saved);
	sandbox_proc_free(p);
	sbx_error_restore(saved);
	return rc;
}

/* ---- results */

SANDBOX_API int sandbox_result_exit_code(const sandbox_result_t *r)
{
	return r ? r->exit_code : -1;
}

SANDBOX_API int sandbox_result_signal(const sandbox_result_t *r)
{
	return r ? r->signal : 0;
}

SANDBOX_API int sandbox_result_timed_out(const sandbox_result_t *r)
{
	return r ? r->timed_out : 0;
}

static const void *result_stream(const sandbox_result_t *r, int s, size_t *len)
{
	if (len)
		*len = r ? r->len[s] : 0;
	return r ? r->out[s] : NULL;
}

SANDBOX_API const void *sandbox_result_stdout(const sandbox_result_t *r, size_t *len)
{
	return result_stream(r, SANDBOX_STDOUT, len);
}

SANDBOX_API const void *sandbox_result_stderr(const sandbox_result_t *r, size_t *len)
{
	return result_stream(r, SANDBOX_STDERR, len);
}

SANDBOX_API uint64_t sandbox_result_output_total(const sandbox_result_t *r, int stream)
{
	return r && (stream == SANDBOX_STDOUT || stream == SANDBOX_STDERR) ? r->total[stream] : 0;
}

SANDBOX_API double sandbox_result_duration_ms(const sandbox_result_t *r)
{
	return r ? r->duration_ms : 0;
}

SANDBOX_API void sandbox_result_free(sandbox_result_t *r)
{
	if (!r)
		return;
	free(r->out[1]);
	free(r->out[2]);
	free(r);
}
