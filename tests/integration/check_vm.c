/* Integration tests: real VMs, real programs in them. Nothing is mocked.
 * If the guest image or libvirt is not there, these tests FAIL (they are
 * never skipped): scripts/test.sh sets everything up first. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sandbox.h>

#include "vmtest.h"

extern char **environ;

static sandbox_t *g_sb; /* shared by the exec tests */
static char g_audit[256];

/* ------------------------------------------------------------ helpers */

static void opts_default(sandbox_options_t *o)
{
	sandbox_options_init(o, SANDBOX_OPTIONS_VERSION);
	o->state_dir = vt_state_dir();
}

static sandbox_t *must_create(sandbox_options_t *o)
{
	sandbox_t *sb = NULL;
	int rc = sandbox_create(&sb, o, 0);
	ck_assert_msg(rc == 0, "sandbox_create failed: %s: %s", sandbox_strerror(rc),
		      sandbox_last_error());
	return sb;
}

static sandbox_result_t *run(sandbox_t *sb, const char *const *argv,
			     const sandbox_exec_options_t *o)
{
	sandbox_result_t *r = NULL;
	int rc = sandbox_exec(sb, argv, o, &r, 0);
	ck_assert_msg(rc == 0, "sandbox_exec(%s) failed: %s: %s", argv[0], sandbox_strerror(rc),
		      sandbox_last_error());
	return r;
}

static char *out_str(const sandbox_result_t *r, int stream)
{
	size_t n;
	const void *p =
	    stream == SANDBOX_STDOUT ? sandbox_result_stdout(r, &n) : sandbox_result_stderr(r, &n);
	char *s = malloc(n + 1);
	if (n)
		memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
	unsigned char md[32];
	unsigned int len = 0;
	EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

static void assert_gone(const char *id)
{
	char dir[512];
	snprintf(dir, sizeof dir, "%s/sandboxes/%s", vt_state_dir(), id);
	/* a sandbox that died by itself (lifetime, crash) is cleaned up by its
	 * I/O thread just after waiters are released: allow it a moment */
	for (int i = 0; i < 300 && (access(dir, F_OK) == 0 || vt_qemu_pid(id)); i++)
		usleep(100000);
	ck_assert_msg(access(dir, F_OK) != 0, "sandbox dir %s still exists", dir);
	ck_assert_msg(vt_qemu_pid(id) == 0, "QEMU for sandbox %s still running", id);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------- exec tests */

START_TEST(python_computes_a_value)
{
	const char *argv[] = {"python3", "-c", "print(sum(i * i for i in range(1000)))", NULL};
	sandbox_result_t *r = run(g_sb, argv, NULL);
	char *out = out_str(r, SANDBOX_STDOUT);
	ck_assert_str_eq(out, "332833500\n");
	ck_assert_int_eq(sandbox_result_exit_code(r), 0);
	free(out);
	sandbox_result_free(r);
}
END_TEST

START_TEST(shell_pipeline)
{
	const char *argv[] = {"bash", "-c",
			      "seq 1 1000 | awk '{s+=$1} END {print s}' | tr -d '\\n'", NULL};
	sandbox_result_t *r = run(g_sb, argv, NULL);
	char *out = out_str(r, SANDBOX_STDOUT);
	ck_assert_str_eq(out, "500500");
	free(out);
	sandbox_result_free(r);
}
END_TEST

START_TEST(stdin_is_fed)
{
	size_t n = 3u << 20; /* more than one flow-control window */
	uint8_t *data = malloc(n);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 2654435761u >> 13);
	char want[65];
	sha256_hex(data, n, want);
	sandbox_exec_options_t o;
	sandbox_exec_options_init(&o, SANDBOX_EXEC_OPTIONS_VERSION);
	o.stdin_data = data;
	o.stdin_len = n;
	const char *argv[] = {"sha256sum", NULL};
	sandbox_result_t *r = run(g_sb, argv, &o);
	char *out = out_str(r, SANDBOX_STDOUT);
	ck_assert_int_eq(strncmp(out, want, 64), 0);
	free(out);
	free(data);
	sandbox_result_free(r);
}
END_TEST

START_TEST(large_stdout_arrives_intact)
{
	const char *argv[] = {"python3", "-c",
			      "import os, sys, hashlib\n"
			      "d = os.urandom(12 * 1024 * 1024)\n"
			      "sys.stdout.buffer.write(d)\n"
			      "sys.stdout.flush()\n"
			      "sys.stderr.write(hashlib.sha256(d).hexdigest())\n",
			      NULL};
	sandbox_result_t *r = run(g_sb, argv, NULL);
	size_t n;
	const void *p = sandbox_result_stdout(r, &n);
	ck_assert_uint_eq(n, 12u * 1024 * 1024);
	ck_assert_uint_eq(sandbox_result_output_total(r, SANDBOX_STDOUT), n);
	char got[65];
	sha256_hex(p, n, got);
	char *err = out_str(r, SANDBOX_STDERR);
	ck_assert_str_eq(got, err);
	free(err);
	sandbox_result_free(r);
}
END_TEST

START_TEST(stderr_kept_apart)
{
	const char *argv[] = {"sh", "-c", "echo out; echo err >&2; echo out2", NULL};
	sandbox_result_t *r = run(g_sb, argv, NULL);
	char *o = out_str(r, SANDBOX_STDOUT), *e = out_str(r, SANDBOX_STDERR);
	ck_assert_str_eq(o, "out\nout2\n");
	ck_assert_str_eq(e, "err\n");
	free(o);
	free(e);
	sandbox_result_free(r);
}
END_TEST

static void expect_status(const char *script, int code, int sig)
{
	const char *argv[] = {"sh", "-c", script, NULL};
	sandbox_result_t *r = run(g_sb, argv, NULL);
	ck_assert_msg(sandbox_result_exit_code(r) == code && sandbox_result_signal(r) == sig,
		      "'%s': got code %d signal %d, want %d/%d", script,
		      sandbox_result_exit_code(r), sandbox_result_signal(r), code, sig);
	ck_assert_int_eq(sandbox_result_timed_out(r), 0);
	sandbox_result_free(r);
}

START_TEST(exit_codes_and_signals)
{
	expect_status("exit 0", 0, 0);
	expect_status("exit 1", 1, 0);
	expect_status("exit 137", 137, 0);
	expect_status("kill -KILL $$", -1, 9);
	expect_status("kill -TERM $$", -1, 15);
	expect_status("kill -SEGV $$", -1, 11);
}
END_TEST

START_TEST(exec_timeout_kills_process_group)
{
	sandbox_exec_options_t o;
	sandbox_exec_options_init(&o, SANDBOX_EXEC_OPTIONS_VERSION);
	o.timeout_ms = 1500;
	const char *argv[] = {"sh", "-c", "sleep 301 & sleep 302; echo never", NULL};
	sandbox_result_t *r = run(g_sb, argv, &o);
	ck_assert_int_eq(sandbox_result_timed_out(r), 1);
	ck_assert_int_eq(sandbox_result_signal(r), 9);
	size_t n;
	sandbox_result_stdout(r, &n);
	ck_assert_uint_eq(n, 0);
	sandbox_result_free(r);
	/* the background sleep in the same group died too */
	const char *check[] = {"sh", "-c", "pgrep -f 'sleep 30[12]' || echo none", NULL};
	r = run(g_sb, check, NULL);
	char *out = out_str(r, SANDBOX_STDOUT);
	ck_assert_str_eq(out, "none\n");
	free(out);
	sandbox_result_free(r);
}
END_TEST

START_TEST(background_child_does_not_hold_the_call)
{
	double t0 = now_s();
	const char *argv[] = {"sh", "-c", "echo hi; sleep 600 &", NULL};
	sandbox_result_t *r = run(g_sb, argv, NULL);
	char *out = out_str(r, SANDBOX_STDOUT);
	ck_assert_str_eq(out, "hi\n");
	ck_assert_int_eq(sandbox_result_exit_code(r), 0);
	/* a hang would be 600 s; this bounds it far below, not a benchmark */
	ck_assert_msg(now_s() - t0 < 60, "exec waited for the background child");
	free(out);
	sandbox_result_free(r);
}
END_TEST

START_TEST(cwd_and_env)
{
	sandbox_exec_options_t o;
	sandbox_exec_options_init(&o, SANDBOX_EXEC_OPTIONS_VERSION);
	const char *env[] = {"FOO=bar baz", "SANDBOX_LEVEL=call", NULL};
	o.env = env;
	o.cwd = "/tmp";
	const char *argv[] = {"sh", "-c",
			      "pwd; echo \"$FOO\"; echo $SANDBOX_LEVEL; echo $FROM_CREATE", NULL};
	sandbox_result_t *r = run(g_sb, argv, &o);
	char *out = out_str(r, SANDBOX_STDOUT);
	ck_assert_str_eq(out, "/tmp\nbar baz\ncall\nyes\n");
	free(out);
	sandbox_result_free(r);
	/* without cwd: the sandbox's workdir */
	const char *pwd[] = {"pwd", NULL};
	r = run(g_sb, pwd, NULL);
	out = out_str(r, SANDBOX_STDOUT);
	ck_assert_str_eq(out, "/root\n");
	free(out);
	sandbox_result_free(r);
}
END_TEST

struct conc {
	int idx;
	int ok;
};

static void *conc_thread(void *arg)
{
	struct conc *c = arg;
	char script[64], want[32];
	snprintf(script, sizeof script, "sleep 1; echo job-%d", c->idx);
	snprintf(want, sizeof want, "job-%d\n", c->idx);
	const char *argv[] = {"sh", "-c", script, NULL};
	sandbox_result_t *r = NULL;
	if (sandbox_exec(g_sb, argv, NULL, &r, 0) == 0) {
		size_t n;
		const char *p = sandbox_result_stdout(r, &n);
		c->ok = n == strlen(want) && !memcmp(p, want, n);
		sandbox_result_free(r);
	}
	return NULL;
}

START_TEST(concurrent_execs)
{
	/* threads calling sandbox_exec at once */
	enum { N = 8 };
	pthread_t t[N];
	struct conc c[N];
	for (int i = 0; i < N; i++) {
		c[i] = (struct conc){.idx = i};
		pthread_create(&t[i], NULL, conc_thread, &c[i]);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(c[i].ok, "concurrent exec %d failed", i);
	}
	/* commands really alive at the same time: each waits for its stdin */
	sandbox_proc_t *p[N];
	for (int i = 0; i < N; i++) {
		const char *argv[] = {"sh", "-c", "read x; echo got-$x", NULL};
		ck_assert_int_eq(sandbox_proc_start(g_sb, argv, NULL, &p[i], SANDBOX_PROC_STDIN),
				 0);
	}
	const char *cnt[] = {"sh", "-c", "pgrep -c -f 're[a]d x'", NULL};
	sandbox_result_t *r = run(g_sb, cnt, NULL);
	char *out = out_str(r, SANDBOX_STDOUT);
	ck_assert_int_eq(atoi(out), N);
	free(out);
	sandbox_result_free(r);
	for (int i = N - 1; i >= 0; i--) {
		char line[16];
		int n = snprintf(line, sizeof line, "%d\n", i);
		ck_assert_int_eq(sandbox_proc_write(p[i], line, (size_t)n, 0), 0);
		ck_assert_int_eq(sandbox_proc_close_stdin(p[i], 0), 0);
		char buf[64], want[32];
		int stream;
		int got = sandbox_proc_read(p[i], &stream, buf, sizeof buf, 30000, 0);
		snprintf(want, sizeof want, "got-%d\n", i);
		ck_assert_int_eq(got, (int)strlen(want));
		ck_assert_int_eq(stream, SANDBOX_STDOUT);
		ck_assert_int_eq(memcmp(buf, want, (size_t)got), 0);
		sandbox_result_t *res;
		ck_assert_int_eq(sandbox_proc_wait(p[i], 30000, &res, 0), 0);
		ck_assert_int_eq(sandbox_result_exit_code(res), 0);
		sandbox_result_free(res);
		sandbox_proc_free(p[i]);
	}
}
END_TEST

START_TEST(proc_signal_and_streaming)
{
	sandbox_proc_t *p;
	const char *argv[] = {"sh", "-c", "echo start; exec sleep 100", NULL};
	ck_assert_int_eq(sandbox_proc_start(g_sb, argv, NULL, &p, 0), 0);
	ck_assert_int_gt(sandbox_proc_pid(p), 1);
	char buf[64];
	int stream;
	int n = sandbox_proc_read(p, &stream, buf, sizeof buf, 30000, 0);
	ck_assert_int_eq(n, 6);
	ck_assert_int_eq(memcmp(buf, "start\n", 6), 0);
	/* nothing more arrives while it sleeps */
	ck_assert_int_eq(sandbox_proc_read(p, &stream, buf, sizeof buf, 300, 0), SANDBOX_E_TIMEOUT);
	ck_assert_int_eq(sandbox_proc_signal(p, SIGTERM, 0), 0);
	ck_assert_int_eq(sandbox_proc_read(p, &stream, buf, sizeof buf, 30000, 0), 0);
	sandbox_result_t *r;
	ck_assert_int_eq(sandbox_proc_wait(p, 30000, &r, 0), 0);
	ck_assert_int_eq(sandbox_result_signal(r), SIGTERM);
	ck_assert_int_eq(sandbox_result_exit_code(r), -1);
	sandbox_result_free(r);
	ck_assert_int_eq(sandbox_proc_signal(p, 0, 0), SANDBOX_E_INVAL);
	sandbox_proc_free(p);
}
END_TEST

START_TEST(freeing_a_running_proc_kills_it)
{
	sandbox_proc_t *p;
	const char *argv[] = {"sh", "-c", "yes | head -c 100000000; sleep 303", NULL};
	ck_assert_int_eq(sandbox_proc_start(g_sb, argv, NULL, &p, 0), 0);
	sandbox_proc_free(p); /* unread output must not wedge anything */
	const char *check[] = {"sh", "-c", "sleep 2; pgrep -f 'sleep 30[3]' || echo none", NULL};
	sandbox_result_t *r = run(g_sb, check, NULL);
	char *out = out_str(r, SANDBOX_STDOUT);
	ck_assert_str_eq(out, "none\n");
	free(out);
	sandbox_result_free(r);
}
END_TEST

static int stop_after_first(int stream, const void *d, size_t n, void *ud)
{
	(void)stream;
	(void)d;
	*(size_t *)ud += n;
	return 1;
}

START_TEST(output_callback_can_abort)
{
	size_t seen = 0;
	sandbox_exec_options_t o;
	sandbox_exec_options_init(&o, SANDBOX_EXEC_OPTIONS_VERSION);
	o.on_output = stop_after_first;
	o.userdata = &seen;
	const char *argv[] = {"yes", NULL};
	sandbox_result_t *r = NULL;
	ck_assert_int_eq(sandbox_exec(g_sb, argv, &o, &r, 0), SANDBOX_E_ABORTED);
	ck_assert_ptr_null(r);
	ck_assert_uint_gt(seen, 0);
	ck_assert_int_eq(sandbox_ping(g_sb, 0), 0);
}
END_TEST

START_TEST(bad_exec_arguments)
{
	sandbox_result_t *r = NULL;
	const char *empty[] = {NULL};
	ck_assert_int_eq(sandbox_exec(g_sb, empty, NULL, &r, 0), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "argv is empty"));
	ck_assert_int_eq(sandbox_exec(g_sb, NULL, NULL, &r, 0), SANDBOX_E_INVAL);
	const char *ls[] = {"ls", NULL};
	ck_assert_int_eq(sandbox_exec(NULL, ls, NULL, &r, 0), SANDBOX_E_INVAL);
	ck_assert_int_eq(sandbox_exec(g_sb, ls, NULL, NULL, 0), SANDBOX_E_INVAL);
	ck_assert_int_eq(sandbox_exec(g_sb, ls, NULL, &r, 0x100), SANDBOX_E_FLAGS);
	sandbox_exec_options_t o;
	sandbox_exec_options_init(&o, SANDBOX_EXEC_OPTIONS_VERSION);
	o.cwd = "tmp";
	ck_assert_int_eq(sandbox_exec(g_sb, ls, &o, &r, 0), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "cwd"));
	o.cwd = "/no/such/dir";
	ck_assert_int_eq(sandbox_exec(g_sb, ls, &o, &r, 0), SANDBOX_E_NOTFOUND);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "/no/such/dir"));
	const char *missing[] = {"no-such-command-xyz", NULL};
	ck_assert_int_eq(sandbox_exec(g_sb, missing, NULL, &r, 0), SANDBOX_E_NOTFOUND);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "no-such-command-xyz"));
	ck_assert_ptr_null(r);
	/* the sandbox is fine afterwards */
	ck_assert_int_eq(sandbox_ping(g_sb, 0), 0);
}
END_TEST

/* This process uses the embedded driver (g_sb); libvirt cannot open
 * another kind of connection beside it, so the library refuses clearly. */
START_TEST(embedded_and_daemon_uris_do_not_mix)
{
	sandbox_options_t o;
	opts_default(&o);
	o.libvirt_uri = "qemu:///system";
	o.state_dir = "/var/lib/libsandbox-test-system";
	sandbox_t *sb = NULL;
	ck_assert_int_eq(sandbox_create(&sb, &o, 0), SANDBOX_E_BUSY);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "cannot mix"));
	ck_assert_ptr_null(sb);
	/* a second embedded state dir is refused too */
	opts_default(&o);
	o.state_dir = "/var/lib/libsandbox-test-other";
	ck_assert_int_eq(sandbox_create(&sb, &o, 0), SANDBOX_E_BUSY);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "one per process"));
}
END_TEST

START_TEST(list_shows_live_sandboxes)
{
	sandbox_t **list;
	size_t n;
	ck_assert_int_eq(sandbox_list(&list, &n, 0), 0);
	int found = 0;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(sandbox_id(list[i]), sandbox_id(g_sb))) {
			found = 1;
			ck_assert_str_eq(sandbox_metadata_get(list[i], "owner"), "check_vm");
			const char *k, *v;
			ck_assert_int_eq(sandbox_metadata_at(list[i], 0, &k, &v), 0);
			ck_assert_str_eq(k, "owner");
		}
	}
	ck_assert(found);
	sandbox_list_free(list, n);
	ck_assert(sandbox_is_running(g_sb));
	ck_assert_int_eq(sandbox_list(&list, &n, 1), SANDBOX_E_FLAGS);
}
END_TEST

/* ----------------------------------------------------- lifecycle tests */

struct boot_job {
	sandbox_t *sb;
	int rc;
	char boot_id[64];
};

static void *boot_thread(void *arg)
{
	struct boot_job *j = arg;
	sandbox_options_t o;
	opts_default(&o);
	j->rc = sandbox_create(&j->sb, &o, 0);
	if (j->rc)
		return NULL;
	const char *argv[] = {"cat", "/proc/sys/kernel/random/boot_id", NULL};
	sandbox_result_t *r = NULL;
	if (sandbox_exec(j->sb, argv, NULL, &r, 0) == 0) {
		size_t n;
		const char *p = sandbox_result_stdout(r, &n);
		snprintf(j->boot_id, sizeof j->boot_id, "%.*s", (int)(n < 63 ? n : 63), p);
		sandbox_result_free(r);
	}
	return NULL;
}

START_TEST(three_sandboxes_at_once)
{
	enum { N = 3 };
	pthread_t t[N];
	struct boot_job j[N];
	memset(j, 0, sizeof j);
	for (int i = 0; i < N; i++)
		pthread_create(&t[i], NULL, boot_thread, &j[i]);
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(j[i].rc == 0, "create %d failed: %s", i, sandbox_strerror(j[i].rc));
		ck_assert_uint_eq(strlen(j[i].boot_id), 37);
	}
	ck_assert_str_ne(j[0].boot_id, j[1].boot_id);
	ck_assert_str_ne(j[1].boot_id, j[2].boot_id);
	ck_assert_str_ne(j[0].boot_id, j[2].boot_id);
	char ids[N][40];
	for (int i = 0; i < N; i++) {
		snprintf(ids[i], sizeof ids[i], "%s", sandbox_id(j[i].sb));
		ck_assert_int_gt(vt_qemu_pid(ids[i]), 0);
	}
	/* a file written in one is not in the others: separate overlays */
	const char *w[] = {"sh", "-c", "echo x > /root/only-here", NULL};
	sandbox_result_free(run(j[0].sb, w, NULL));
	const char *t1[] = {"sh", "-c", "test -e /root/only-here && echo yes || echo no", NULL};
	sandbox_result_t *r = run(j[1].sb, t1, NULL);
	char *out = out_str(r, SANDBOX_STDOUT);
	ck_assert_str_eq(out, "no\n");
	free(out);
	sandbox_result_free(r);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(sandbox_kill(j[i].sb, 0), 0);
		sandbox_free(j[i].sb);
		assert_gone(ids[i]);
	}
}
END_TEST

struct lister {
	volatile int stop;
	long rounds;
};

static void *list_loop(void *arg)
{
	struct lister *l = arg;
	while (!l->stop) {
		sandbox_t **v;
		size_t n;
		if (sandbox_list(&v, &n, 0) == 0)
			sandbox_list_free(v, n);
		l->rounds++;
	}
	return NULL;
}

/* sandbox_list running while the last reference goes: the dying sandbox
 * must not be revived (a use-after-free ASan catches in the ASan run). */
START_TEST(list_races_final_free)
{
	sandbox_options_t o;
	opts_default(&o);
	sandbox_t *sb = must_create(&o);
	char id[40];
	snprintf(id, sizeof id, "%s", sandbox_id(sb));
	struct lister l = {0};
	pthread_t t;
	pthread_create(&t, NULL, list_loop, &l);
	while (l.rounds < 100)
		usleep(1000);
	sandbox_free(sb);
	usleep(100000);
	l.stop = 1;
	pthread_join(t, NULL);
	assert_gone(id);
	sandbox_t **v;
	size_t n;
	ck_assert_int_eq(sandbox_list(&v, &n, 0), 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_str_ne(sandbox_id(v[i]), id);
	sandbox_list_free(v, n);
}
END_TEST

START_TEST(kill_destroys_vm_and_disk)
{
	sandbox_options_t o;
	opts_default(&o);
	sandbox_t *sb = must_create(&o);
	char id[40];
	snprintf(id, sizeof id, "%s", sandbox_id(sb));
	char disk[512];
	snprintf(disk, sizeof disk, "%s/sandboxes/%s/disk.qcow2", vt_state_dir(), id);
	ck_assert_int_eq(access(disk, F_OK), 0);
	ck_assert_int_gt(vt_qemu_pid(id), 0);
	ck_assert_int_eq(sandbox_kill(sb, 0x4), SANDBOX_E_FLAGS);
	ck_assert_int_eq(sandbox_kill(sb, 0), 0);
	assert_gone(id);
	ck_assert(!sandbox_is_running(sb));
	const char *argv[] = {"true", NULL};
	sandbox_result_t *r = NULL;
	ck_assert_int_eq(sandbox_exec(sb, argv, NULL, &r, 0), SANDBOX_E_DEAD);
	ck_assert_int_eq(sandbox_kill(sb, 0), 0); /* idempotent */
	sandbox_free(sb);
}
END_TEST

START_TEST(free_kills_a_live_sandbox)
{
	sandbox_options_t o;
	opts_default(&o);
	sandbox_t *sb = must_create(&o);
	char id[40];
	snprintf(id, sizeof id, "%s", sandbox_id(sb));
	ck_assert_int_gt(vt_qemu_pid(id), 0);
	sandbox_free(sb);
	assert_gone(id);
}
END_TEST

START_TEST(lifetime_timeout_kills)
{
	sandbox_options_t o;
	opts_default(&o);
	o.timeout_s = 3;
	sandbox_t *sb = must_create(&o);
	char id[40];
	snprintf(id, sizeof id, "%s", sandbox_id(sb));
	ck_assert(sandbox_is_running(sb));
	sandbox_proc_t *p;
	const char *argv[] = {"sleep", "600", NULL};
	ck_assert_int_eq(sandbox_proc_start(sb, argv, NULL, &p, 0), 0);
	sandbox_result_t *r = NULL;
	/* the waiter is released by the sandbox's death, not by the command */
	ck_assert_int_eq(sandbox_proc_wait(p, 120000, &r, 0), SANDBOX_E_DEAD);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "lifetime"));
	sandbox_proc_free(p);
	ck_assert(!sandbox_is_running(sb));
	assert_gone(id);
	sandbox_free(sb);
}
END_TEST

static int count_events(const char *path, const char *event, const char *must_contain)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char line[8192], needle[64];
	snprintf(needle, sizeof needle, "\"event\":\"%s\"", event);
	int n = 0;
	while (fgets(line, sizeof line, f))
		if (strstr(line, needle) && (!must_contain || strstr(line, must_contain)))
			n++;
	fclose(f);
	return n;
}

struct cb_log {
	pthread_mutex_t lock;
	int events;
	int creates;
};

static void audit_cb(const char *json, void *ud)
{
	struct cb_log *l = ud;
	pthread_mutex_lock(&l->lock);
	l->events++;
	if (strstr(json, "\"event\":\"sandbox.create\""))
		l->creates++;
	pthread_mutex_unlock(&l->lock);
}

START_TEST(audit_records_lifecycle_and_commands)
{
	char path[] = "/tmp/sbx-audit-XXXXXX";
	int fd = mkstemp(path);
	close(fd);
	struct cb_log log = {.lock = PTHREAD_MUTEX_INITIALIZER};
	sandbox_options_t o;
	opts_default(&o);
	const sandbox_kv_t meta[] = {{"owner", "agent"}, {"task", "t-42"}};
	o.metadata = meta;
	o.metadata_count = 2;
	o.audit_log = path;
	o.audit_cb = audit_cb;
	o.audit_userdata = &log;
	const char *env[] = {"API_TOKEN=do-not-log-me", NULL};
	o.env = env;
	sandbox_t *sb = must_create(&o);
	char id[40], idfield[64];
	snprintf(id, sizeof id, "%s", sandbox_id(sb));
	snprintf(idfield, sizeof idfield, "\"sandbox\":\"%s\"", id);
	const char *argv[] = {"sh", "-c", "exit 3", NULL};
	sandbox_result_free(run(sb, argv, NULL));
	sandbox_kill(sb, 0);
	sandbox_free(sb);
	const char *owner = "\"metadata\":{\"owner\":\"agent\",\"task\":\"t-42\"}";
	ck_assert_int_eq(count_events(path, "sandbox.create", owner), 1);
	ck_assert_int_eq(count_events(path, "sandbox.create", idfield), 1);
	ck_assert_int_eq(count_events(path, "exec.start", "\"argv\":[\"sh\",\"-c\",\"exit 3\"]"),
			 1);
	ck_assert_int_eq(count_events(path, "exec.exit", "\"exit_code\":3"), 1);
	ck_assert_int_eq(count_events(path, "sandbox.kill", owner), 1);
	ck_assert_int_eq(count_events(path, "exec.start", "\"ts\":\"20"), 1);
	/* environment values never reach the log */
	FILE *f = fopen(path, "r");
	char buf[65536];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	ck_assert_ptr_null(strstr(buf, "do-not-log-me"));
	ck_assert_ptr_nonnull(strstr(buf, "API_TOKEN"));
	ck_assert_int_eq(log.creates, 1);
	ck_assert_int_eq(log.events, 4);
	unlink(path);
}
END_TEST

/* Every bad input: a specific error, and no VM, file, thread or fd left. */
struct leak_snapshot {
	int threads, fds, dirs;
};

static void snap(struct leak_snapshot *s)
{
	char d[512];
	snprintf(d, sizeof d, "%s/sandboxes", vt_state_dir());
	s->threads = vt_count_threads();
	s->fds = vt_count_fds();
	s->dirs = vt_dir_entries(d);
}

static void expect_create_fails(sandbox_options_t *o, unsigned flags, int code,
				const char *msg_part)
{
	struct leak_snapshot a, b;
	snap(&a);
	sandbox_t *sb = (sandbox_t *)0x1;
	int rc = sandbox_create(&sb, o, flags);
	ck_assert_msg(rc == code, "want %s, got %s: %s", sandbox_strerror(code),
		      sandbox_strerror(rc), sandbox_last_error());
	ck_assert_ptr_null(sb);
	ck_assert_msg(strstr(sandbox_last_error(), msg_part), "message '%s' lacks '%s'",
		      sandbox_last_error(), msg_part);
	snap(&b);
	ck_assert_int_eq(a.threads, b.threads);
	ck_assert_int_eq(a.fds, b.fds);
	ck_assert_int_eq(a.dirs, b.dirs);
}

static void remove_tree(char *dir)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(dir);
}

static char *make_broken_image(const char *how)
{
	const char *src = getenv("SANDBOX_IMAGE");
	src = src && *src ? src : SANDBOX_TEST_IMAGE_DIR;
	char *dir = strdup("/tmp/sbx-badimg-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	chmod(dir, 0755);
	char cmd[2048];
	snprintf(cmd, sizeof cmd,
		 "set -e; cd %s; cp %s/manifest .; for f in vmlinux initrd.img rootfs.img; do "
		 "ln -s %s/$f $f; done; %s",
		 dir, src, src, how);
	ck_assert_int_eq(system(cmd), 0);
	return dir;
}

static pid_t spawn_holder(const char *mode, const char *state, int *out_fd);
static void read_line(int fd, char *buf, size_t cap);

START_TEST(bad_input_leaves_nothing)
{
	sandbox_options_t o;
	opts_default(&o);
	o.memory_mb = 0;
	expect_create_fails(&o, 0, SANDBOX_E_INVAL, "memory_mb");
	o.memory_mb = 60000000;
	expect_create_fails(&o, 0, SANDBOX_E_INVAL, "memory_mb");
	opts_default(&o);
	expect_create_fails(&o, 0x8, SANDBOX_E_FLAGS, "unknown flags");
	o.image = "/nonexistent/image";
	expect_create_fails(&o, 0, SANDBOX_E_IMAGE, "/nonexistent/image");
	o.image = "relative/image";
	expect_create_fails(&o, 0, SANDBOX_E_INVAL, "image");
	char *bad = make_broken_image("rm rootfs.img; head -c 4096 /dev/zero > rootfs.img");
	o.image = bad;
	expect_create_fails(&o, 0, SANDBOX_E_IMAGE, "rootfs.img");
	remove_tree(bad);
	bad = make_broken_image("rm vmlinux; truncate -s $(sed -n 's/^kernel_size=//p' manifest) "
				"vmlinux");
	o.image = bad;
	expect_create_fails(&o, 0, SANDBOX_E_IMAGE, "ELF");
	remove_tree(bad);
	opts_default(&o);
	o.workdir = "relative";
	expect_create_fails(&o, 0, SANDBOX_E_INVAL, "workdir");
	opts_default(&o);
	o.version = 77;
	expect_create_fails(&o, 0, SANDBOX_E_VERSION, "version");
	ck_assert_int_eq(sandbox_create(NULL, NULL, 0), SANDBOX_E_INVAL);
	/* libvirt unreachable: a daemon socket that does not exist (in a child
	 * process: this one holds the embedded driver, which cannot mix) */
	int fd;
	pid_t child = spawn_holder("unreach", "/var/lib/libsandbox-test-unreach", &fd);
	char line[512];
	read_line(fd, line, sizeof line);
	int st;
	waitpid(child, &st, 0);
	close(fd);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "unreachable libvirt: %s", line);
	ck_assert_msg(strstr(line, "cannot connect to libvirt"), "message: %s", line);
	/* a failure after the VM started: the agent is not ready in time */
	opts_default(&o);
	o.boot_timeout_s = 1;
	expect_create_fails(&o, 0, SANDBOX_E_BOOT, "did not boot");
	/* explicit KVM where it cannot boot a guest */
	if (access("/sys/module/kvm_intel", F_OK) && access("/sys/module/kvm_amd", F_OK)) {
		opts_default(&o);
		o.accel = SANDBOX_ACCEL_KVM;
		expect_create_fails(&o, 0, SANDBOX_E_ACCEL, "KVM");
	}
	/* a bad audit log is refused before the state dir is touched: an
	 * existing directory keeps its mode and gets no files */
	char sticky[] = "/tmp/sbx-sticky-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(sticky));
	chmod(sticky, 01777);
	opts_default(&o);
	o.state_dir = sticky;
	o.audit_log = "/nonexistent-dir/audit.jsonl";
	expect_create_fails(&o, 0, SANDBOX_E_IO, "audit log");
	struct stat sst;
	ck_assert_int_eq(stat(sticky, &sst), 0);
	ck_assert_int_eq(sst.st_mode & 07777, 01777);
	ck_assert_int_eq(vt_dir_entries(sticky), 0);
	rmdir(sticky);
	/* a secret whose host is also tunnelled untouched cannot work */
	opts_default(&o);
	const char *pass[] = {"*.example.test", NULL};
	const char *hosts[] = {"api.example.test", NULL};
	const sandbox_secret_t sec[] = {{"API_KEY", "value-never-in-guest", hosts, 0}};
	o.tls_passthrough = pass;
	o.secrets = sec;
	o.secrets_count = 1;
	expect_create_fails(&o, 0, SANDBOX_E_INVAL, "also in tls_passthrough");
	/* a malformed allow_net pattern is named, and nothing is left */
	opts_default(&o);
	const char *bad_allow[] = {"ok.example.test", "exa mple.test", NULL};
	o.allow_net = bad_allow;
	expect_create_fails(&o, 0, SANDBOX_E_INVAL, "allow_net[1] 'exa mple.test'");
}
END_TEST

/* The QEMU process survives its owner's SIGKILL; the next process that
 * opens the same state dir must destroy it and delete its files. */
static pid_t spawn_holder(const char *mode, const char *state, int *out_fd)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_addclose(&fa, p[0]);
	char self[512];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	ck_assert_int_gt(n, 0);
	self[n] = '\0';
	char *argv[] = {self, "--holder", (char *)mode, (char *)state, NULL};
	pid_t pid;
	ck_assert_int_eq(posix_spawn(&pid, self, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	*out_fd = p[0];
	return pid;
}

static void read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t r = read(fd, buf + n, 1);
		if (r <= 0 || buf[n] == '\n')
			break;
		n++;
	}
	buf[n] = '\0';
}

START_TEST(sigkill_leftovers_are_reaped)
{
	const char *state = "/var/lib/libsandbox-test-reap";
	int fd;
	pid_t holder = spawn_holder("hold", state, &fd);
	char id[128];
	read_line(fd, id, sizeof id);
	ck_assert_msg(strlen(id) == 32, "holder said '%s'", id);
	int qpid = vt_qemu_pid(id);
	ck_assert_int_gt(qpid, 0);
	kill(holder, SIGKILL);
	int st;
	waitpid(holder, &st, 0);
	close(fd);
	/* the VM outlived its owner, as PLATFORM.md says it does */
	ck_assert_int_eq(kill(qpid, 0), 0);
	char dir[512];
	snprintf(dir, sizeof dir, "%s/sandboxes/%s", state, id);
	ck_assert_int_eq(access(dir, F_OK), 0);
	/* a new process on the same state dir reaps it at start */
	pid_t reaper = spawn_holder("reap", state, &fd);
	char line[128];
	read_line(fd, line, sizeof line);
	waitpid(reaper, &st, 0);
	close(fd);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "reaper failed: %s", line);
	ck_assert_msg(vt_qemu_pid(id) == 0, "leftover QEMU %d still running", qpid);
	ck_assert_msg(access(dir, F_OK) != 0, "leftover dir %s still there", dir);
}
END_TEST

static int system_main(const char *state)
{
	sandbox_options_t o;
	sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
	o.state_dir = state;
	o.libvirt_uri = "qemu:///system";
	sandbox_t *sb;
	int rc = sandbox_create(&sb, &o, 0);
	if (rc) {
		printf("create failed: %s\n", sandbox_last_error());
		return 1;
	}
	const char *argv[] = {"python3", "-c", "print(6 * 7)", NULL};
	sandbox_result_t *r;
	rc = sandbox_exec(sb, argv, NULL, &r, 0);
	if (rc) {
		printf("exec failed: %s\n", sandbox_last_error());
		return 1;
	}
	size_t n;
	const char *out = sandbox_result_stdout(r, &n);
	printf("%.*s", (int)n, out);
	char id[40];
	snprintf(id, sizeof id, "%s", sandbox_id(sb));
	sandbox_result_free(r);
	sandbox_free(sb);
	return vt_qemu_pid(id) == 0 ? 0 : 1;
}

/* Prints the error; exits 0 only if create failed as it must, leaving no
 * sandbox directory behind. */
static int unreach_main(const char *state)
{
	sandbox_options_t o;
	sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
	o.state_dir = state;
	o.libvirt_uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock";
	sandbox_t *sb = NULL;
	int rc = sandbox_create(&sb, &o, 0);
	printf("%s: %s\n", sandbox_strerror(rc), sandbox_last_error());
	char dir[512];
	snprintf(dir, sizeof dir, "%s/sandboxes", state);
	return rc == SANDBOX_E_LIBVIRT && !sb && vt_dir_entries(dir) <= 0 ? 0 : 1;
}

static int holder_main(const char *mode, const char *state)
{
	if (!strcmp(mode, "system"))
		return system_main(state);
	if (!strcmp(mode, "unreach"))
		return unreach_main(state);
	sandbox_options_t o;
	sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
	o.state_dir = state;
	sandbox_t *sb;
	int rc = sandbox_create(&sb, &o, 0);
	if (rc) {
		printf("create failed: %s\n", sandbox_last_error());
		return 1;
	}
	if (!strcmp(mode, "hold")) {
		printf("%s\n", sandbox_id(sb));
		fflush(stdout);
		for (;;)
			pause();
	}
	printf("ok %s\n", sandbox_id(sb));
	sandbox_free(sb);
	return 0;
}

/* libvirt cannot mix its embedded driver with other connections in one
 * process, so the qemu:///system run happens in a child process. */
START_TEST(system_libvirt_uri)
{
	int fd;
	pid_t child = spawn_holder("system", "/var/lib/libsandbox-test-system", &fd);
	char line[512];
	read_line(fd, line, sizeof line);
	int st;
	waitpid(child, &st, 0);
	close(fd);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0 && !strcmp(line, "42"),
		      "qemu:///system sandbox (scripts/test.sh starts libvirtd) said: %s", line);
}
END_TEST

static Suite *vm_suite(void)
{
	Suite *s = suite_create("vm");
	TCase *e = tcase_create("exec");
	tcase_set_timeout(e, 600);
	tcase_add_test(e, python_computes_a_value);
	tcase_add_test(e, shell_pipeline);
	tcase_add_test(e, stdin_is_fed);
	tcase_add_test(e, large_stdout_arrives_intact);
	tcase_add_test(e, stderr_kept_apart);
	tcase_add_test(e, exit_codes_and_signals);
	tcase_add_test(e, exec_timeout_kills_process_group);
	tcase_add_test(e, background_child_does_not_hold_the_call);
	tcase_add_test(e, cwd_and_env);
	tcase_add_test(e, concurrent_execs);
	tcase_add_test(e, proc_signal_and_streaming);
	tcase_add_test(e, freeing_a_running_proc_kills_it);
	tcase_add_test(e, output_callback_can_abort);
	tcase_add_test(e, bad_exec_arguments);
	tcase_add_test(e, list_shows_live_sandboxes);
	tcase_add_test(e, embedded_and_daemon_uris_do_not_mix);
	suite_add_tcase(s, e);
	TCase *l = tcase_create("lifecycle");
	tcase_set_timeout(l, 900);
	tcase_add_test(l, three_sandboxes_at_once);
	tcase_add_test(l, kill_destroys_vm_and_disk);
	tcase_add_test(l, list_races_final_free);
	tcase_add_test(l, free_kills_a_live_sandbox);
	tcase_add_test(l, lifetime_timeout_kills);
	tcase_add_test(l, audit_records_lifecycle_and_commands);
	tcase_add_test(l, bad_input_leaves_nothing);
	tcase_add_test(l, sigkill_leftovers_are_reaped);
	suite_add_tcase(s, l);
	TCase *sys = tcase_create("system");
	tcase_set_timeout(sys, 600);
	tcase_add_test(sys, system_libvirt_uri);
	suite_add_tcase(s, sys);
	return s;
}

static int wants_case(const char *name)
{
	const char *only = getenv("CK_RUN_CASE");
	return !only || !*only || !strcmp(only, name);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--holder"))
		return holder_main(argv[2], argv[3]);
	snprintf(g_audit, sizeof g_audit, "/tmp/sbx-check-vm-%d.jsonl", (int)getpid());
	if (wants_case("exec")) {
		sandbox_options_t o;
		opts_default(&o);
		const sandbox_kv_t meta[] = {{"owner", "check_vm"}};
		o.metadata = meta;
		o.metadata_count = 1;
		const char *env[] = {"FROM_CREATE=yes", "SANDBOX_LEVEL=create", NULL};
		o.env = env;
		o.audit_log = g_audit;
		int rc = sandbox_create(&g_sb, &o, 0);
		if (rc) {
			fprintf(stderr, "FAIL: cannot create the shared test sandbox: %s: %s\n",
				sandbox_strerror(rc), sandbox_last_error());
			fprintf(stderr, "0 passed, 1 failed\n");
			return EXIT_FAILURE;
		}
	}
	SRunner *sr = srunner_create(vm_suite());
	/* one process: one libvirt runtime and its capability cache */
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_VERBOSE);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	sandbox_free(g_sb);
	unlink(g_audit);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
