/* `sandbox run`: boot a sandbox, run one command with its output streamed
 * to ours, exit with its status, destroy the sandbox.
 *
 * Signals: SIGINT, SIGTERM and SIGHUP are blocked in every thread (the
 * library's included, which inherit the mask) and taken by one thread with
 * sigwait(), which kills the sandbox with sandbox_kill() (callable from any
 * thread). The main thread then sees the command fail and exits with
 * 128 + the signal number. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sandbox.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char run_usage[] =
    "usage: sandbox run [OPTIONS] [--] COMMAND [ARG]...\n"
    "\n"
    "  --allow-net PATTERN        allow outbound traffic to PATTERN (repeatable)\n"
    "  --no-net                   block all outbound traffic (an empty allowlist)\n"
    "  --secret NAME@HOST[,HOST]  secret NAME, value taken from the environment\n"
    "                             variable NAME, sent only to HOSTs (repeatable)\n"
    "  --secret-in-body NAME@HOST[,HOST]  the same, and the placeholder is also\n"
    "                             replaced in request bodies\n"
    "  --volume HOSTDIR:GUESTPATH[:ro]  share a host directory (repeatable)\n"
    "  --dns-server ADDR          upstream DNS server: IPv4, IPv4:port, [IPv6] or\n"
    "                             [IPv6]:port (repeatable; default: the host's)\n"
    "  --tls-ca-file FILE         extra CA file (PEM) trusted for upstream TLS\n"
    "  --tls-passthrough PATTERN  tunnel TLS to PATTERN without interception\n"
    "                             (repeatable)\n"
    "  --block-misdirected        block requests carrying a secret's placeholder\n"
    "                             to a host not allowed for that secret\n"
    "  --meta KEY=VALUE           metadata carried in audit events (repeatable)\n"
    "  --env NAME=VALUE           environment of the command (repeatable)\n"
    "  --audit-log FILE           append audit events (JSON Lines) to FILE\n"
    "  --memory MIB               guest RAM (default 512)\n"
    "  --vcpus N                  guest CPUs (default 1)\n"
    "  --timeout SECONDS          lifetime of the sandbox (default: none)\n"
    "  --workdir DIR              working directory in the guest (default /root)\n"
    "  --image DIR                guest image (default $SANDBOX_IMAGE or installed)\n"
    "  --state-dir DIR            state directory (default $SANDBOX_STATE_DIR)\n"
    "  -i, --stdin                forward our stdin to the command\n"
    "  -q, --quiet                no 'sandbox ID' line on stderr\n"
    "\n"
    "Exit status: the command's; 128+N if it died of signal N or we got\n"
    "signal N (Ctrl-C); 125 if the sandbox could not be created or died;\n"
    "2 for a bad command line.\n";

#define MAX_LIST 256

struct run_args {
	sandbox_options_t opts;
	const char *allow_net[MAX_LIST + 1];
	size_t allow_net_count;
	int allow_net_given;
	sandbox_secret_t secrets[MAX_LIST];
	const char **secret_hosts[MAX_LIST];
	sandbox_volume_t volumes[MAX_LIST];
	sandbox_kv_t meta[MAX_LIST];
	const char *env[MAX_LIST + 1];
	size_t env_count;
	const char *dns_servers[MAX_LIST + 1];
	size_t dns_count;
	const char *passthrough[MAX_LIST + 1];
	size_t passthrough_count;
	int forward_stdin;
	int quiet;
	char **command;
};

/* --------------------------------------------------------------- parsing */

static int parse_uint(const char *s, const char *what, unsigned int *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > 0xffffffffUL) {
		sbx_cli_err("%s: '%s' is not a non-negative integer", what, s);
		return -1;
	}
	*out = (unsigned int)v;
	return 0;
}

static int room(size_t n, const char *what)
{
	if (n >= MAX_LIST) {
		sbx_cli_err("more than %d %s options", MAX_LIST, what);
		return -1;
	}
	return 0;
}

/* NAME@HOST[,HOST...]; the value comes from the environment variable NAME
 * so it never appears on a command line (ps, shell history). An empty
 * host list ("NAME@") goes to the library, which refuses it with the
 * message every front end gives. */
static int parse_secret(struct run_args *a, char *spec, unsigned int flags)
{
	size_t i = a->opts.secrets_count;
	if (room(i, "--secret"))
		return -1;
	char *at = strchr(spec, '@');
	if (!at || at == spec) {
		sbx_cli_err("--secret '%s': expected NAME@HOST[,HOST...]", spec);
		return -1;
	}
	*at = '\0';
	const char *value = getenv(spec);
	if (!value) {
		sbx_cli_err("--secret %s: the environment variable %s is not set (the secret's "
			    "value is read from it)",
			    spec, spec);
		return -1;
	}
	size_t nhosts = 1;
	for (const char *p = at + 1; *p; p++)
		nhosts += *p == ',';
	const char **hosts = calloc(nhosts + 1, sizeof(*hosts));
	if (!hosts)
		return -1;
	size_t n = 0;
	for (char *save = NULL, *h = strtok_r(at + 1, ",", &save); h;
	     h = strtok_r(NULL, ",", &save))
		hosts[n++] = h;
	a->secret_hosts[i] = hosts;
	a->secrets[i] = (sandbox_secret_t){spec, value, hosts, flags};
	a->opts.secrets = a->secrets;
	a->opts.secrets_count = i + 1;
	return 0;
}

/* HOSTDIR:GUESTPATH[:ro|:rw] */
static int parse_volume(struct run_args *a, char *spec)
{
	size_t i = a->opts.volumes_count;
	if (room(i, "--volume"))
		return -1;
	unsigned int flags = 0;
	char *last = strrchr(spec, ':');
	char *first = strchr(spec, ':');
	if (last && last != first && (!strcmp(last, ":ro") || !strcmp(last, ":rw"))) {
		flags = !strcmp(last, ":ro") ? SANDBOX_VOLUME_READONLY : 0;
		*last = '\0';
	}
	first = strchr(spec, ':');
	if (!first || first == spec || !first[1] || strchr(first + 1, ':')) {
		sbx_cli_err("--volume '%s': expected HOSTDIR:GUESTPATH[:ro]", spec);
		return -1;
	}
	*first = '\0';
	a->volumes[i] = (sandbox_volume_t){spec, first + 1, flags};
	a->opts.volumes = a->volumes;
	a->opts.volumes_count = i + 1;
	return 0;
}

static int parse_meta(struct run_args *a, char *spec)
{
	size_t i = a->opts.metadata_count;
	if (room(i, "--meta"))
		return -1;
	char *eq = strchr(spec, '=');
	if (!eq || eq == spec) {
		sbx_cli_err("--meta '%s': expected KEY=VALUE", spec);
		return -1;
	}
	*eq = '\0';
	a->meta[i] = (sandbox_kv_t){spec, eq + 1};
	a->opts.metadata = a->meta;
	a->opts.metadata_count = i + 1;
	return 0;
}

enum {
	OPT_ALLOW_NET = 256,
	OPT_NO_NET,
	OPT_SECRET,
	OPT_VOLUME,
	OPT_META,
	OPT_ENV,
	OPT_AUDIT_LOG,
	OPT_MEMORY,
	OPT_VCPUS,
	OPT_TIMEOUT,
	OPT_WORKDIR,
	OPT_IMAGE,
	OPT_STATE_DIR,
	OPT_DNS_SERVER,
	OPT_TLS_CA_FILE,
	OPT_TLS_PASSTHROUGH,
	OPT_BLOCK_MISDIRECTED,
	OPT_SECRET_IN_BODY
};

static const struct option run_options[] = {
    {"allow-net", required_argument, NULL, OPT_ALLOW_NET},
    {"no-net", no_argument, NULL, OPT_NO_NET},
    {"secret", required_argument, NULL, OPT_SECRET},
    {"secret-in-body", required_argument, NULL, OPT_SECRET_IN_BODY},
    {"volume", required_argument, NULL, OPT_VOLUME},
    {"meta", required_argument, NULL, OPT_META},
    {"env", required_argument, NULL, OPT_ENV},
    {"audit-log", required_argument, NULL, OPT_AUDIT_LOG},
    {"memory", required_argument, NULL, OPT_MEMORY},
    {"vcpus", required_argument, NULL, OPT_VCPUS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"workdir", required_argument, NULL, OPT_WORKDIR},
    {"image", required_argument, NULL, OPT_IMAGE},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"dns-server", required_argument, NULL, OPT_DNS_SERVER},
    {"tls-ca-file", required_argument, NULL, OPT_TLS_CA_FILE},
    {"tls-passthrough", required_argument, NULL, OPT_TLS_PASSTHROUGH},
    {"block-misdirected", no_argument, NULL, OPT_BLOCK_MISDIRECTED},
    {"stdin", no_argument, NULL, 'i'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

static int parse_one(struct run_args *a, int c)
{
	switch (c) {
	case OPT_ALLOW_NET:
		if (room(a->allow_net_count, "--allow-net"))
			return -1;
		a->allow_net[a->allow_net_count++] = optarg;
		a->allow_net_given = 1;
		return 0;
	case OPT_NO_NET: a->allow_net_given = 1; return 0;
	case OPT_SECRET: return parse_secret(a, optarg, 0);
	case OPT_SECRET_IN_BODY: return parse_secret(a, optarg, SANDBOX_SECRET_SUBSTITUTE_BODY);
	case OPT_VOLUME: return parse_volume(a, optarg);
	case OPT_META: return parse_meta(a, optarg);
	case OPT_ENV:
		if (room(a->env_count, "--env"))
			return -1;
		a->env[a->env_count++] = optarg;
		a->opts.env = a->env;
		return 0;
	case OPT_AUDIT_LOG: a->opts.audit_log = optarg; return 0;
	case OPT_MEMORY: return parse_uint(optarg, "--memory", &a->opts.memory_mb);
	case OPT_VCPUS: return parse_uint(optarg, "--vcpus", &a->opts.vcpus);
	case OPT_TIMEOUT: return parse_uint(optarg, "--timeout", &a->opts.timeout_s);
	case OPT_WORKDIR: a->opts.workdir = optarg; return 0;
	case OPT_IMAGE: a->opts.image = optarg; return 0;
	case OPT_STATE_DIR: a->opts.state_dir = optarg; return 0;
	case OPT_DNS_SERVER:
		if (room(a->dns_count, "--dns-server"))
			return -1;
		a->dns_servers[a->dns_count++] = optarg;
		a->opts.dns_servers = a->dns_servers; /* NULL-terminated by zeroing */
		return 0;
	case OPT_TLS_CA_FILE: a->opts.tls_ca_file = optarg; return 0;
	case OPT_TLS_PASSTHROUGH:
		if (room(a->passthrough_count, "--tls-passthrough"))
			return -1;
		a->passthrough[a->passthrough_count++] = optarg;
		a->opts.tls_passthrough = a->passthrough;
		return 0;
	case OPT_BLOCK_MISDIRECTED: a->opts.net_flags |= SANDBOX_NET_BLOCK_MISDIRECTED; return 0;
	case 'i': a->forward_stdin = 1; return 0;
	case 'q': a->quiet = 1; return 0;
	default: return -1;
	}
}

/* Returns 0, 1 for --help, or -1 for a bad command line. */
static int parse_args(struct run_args *a, int argc, char **argv)
{
	sandbox_options_init(&a->opts, SANDBOX_OPTIONS_VERSION);
	optind = 1;
	int c;
	/* '+': stop at the first non-option, which starts the command */
	while ((c = getopt_long(argc, argv, "+iqh", run_options, NULL)) != -1) {
		if (c == 'h')
			return 1;
		if (parse_one(a, c))
			return -1;
	}
	if (a->allow_net_given)
		a->opts.allow_net = a->allow_net; /* NULL-terminated by zeroing */
	if (optind >= argc) {
		sbx_cli_err("run: no command given (sandbox run [OPTIONS] -- COMMAND...)");
		return -1;
	}
	a->command = argv + optind;
	return 0;
}

/* --------------------------------------------------------------- signals */

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static sandbox_t *sig_sandbox; /* set once the sandbox exists */
static int sig_received;

static void *signal_thread(void *arg)
{
	sigset_t *set = arg;
	int signo;
	while (sigwait(set, &signo) == 0) {
		/* killed under the lock, so the main thread cannot free the
		 * sandbox in between (it unpublishes it first) */
		pthread_mutex_lock(&sig_lock);
		if (!sig_received)
			sig_received = signo;
		if (sig_sandbox)
			sandbox_kill(sig_sandbox, 0);
		pthread_mutex_unlock(&sig_lock);
	}
	return NULL;
}

static sigset_t stop_signals;

static int start_signal_thread(void)
{
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGHUP);
	/* before any library thread exists, so all of them inherit the mask */
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);
	pthread_t t;
	if (pthread_create(&t, NULL, signal_thread, &stop_signals)) {
		sbx_cli_err("cannot start the signal thread");
		return -1;
	}
	pthread_detach(t);
	return 0;
}

/* Publish the sandbox to the signal thread; returns the signal already
 * received during create (then the caller kills), or 0. */
static int publish_sandbox(sandbox_t *sb)
{
	pthread_mutex_lock(&sig_lock);
	sig_sandbox = sb;
	int s = sig_received;
	pthread_mutex_unlock(&sig_lock);
	return s;
}

static int received_signal(void)
{
	pthread_mutex_lock(&sig_lock);
	int s = sig_received;
	pthread_mutex_unlock(&sig_lock);
	return s;
}

/* ------------------------------------------------------------ streaming */

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

struct stdin_pump {
	sandbox_proc_t *proc;
	volatile int done;
};

static void *stdin_thread(void *arg)
{
	struct stdin_pump *sp = arg;
	char buf[65536];
	for (;;) {
		ssize_t n = read(0, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || sandbox_proc_write(sp->proc, buf, (size_t)n, 0) < 0)
			break;
	}
	sandbox_proc_close_stdin(sp->proc, 0);
	sp->done = 1;
	return NULL;
}

/* Copy the command's output to ours until it ends. Returns 0 at the end of
 * output, or a negative library code. */
static int stream_output(sandbox_proc_t *proc)
{
	static char buf[65536];
	int stream, broken[3] = {0, 0, 0};
	for (;;) {
		int n = sandbox_proc_read(proc, &stream, buf, sizeof(buf), -1, 0);
		if (n <= 0)
			return n;
		int fd = stream == SANDBOX_STDERR ? 2 : 1;
		/* a closed pipe on our side: keep draining, stop writing */
		if (!broken[fd] && write_all(fd, buf, (size_t)n) < 0)
			broken[fd] = 1;
	}
}

static int exit_status_of(const sandbox_result_t *r)
{
	int sig = sandbox_result_signal(r);
	if (sig)
		return 128 + sig;
	return sandbox_result_exit_code(r);
}

/* ---------------------------------------------------------------- record */

static void record_sandbox(sandbox_t *sb, const struct run_args *a, char **argv)
{
	struct sbx_cli_record r;
	memset(&r, 0, sizeof(r));
	snprintf(r.id, sizeof(r.id), "%s", sandbox_id(sb));
	r.pid = getpid();
	r.started = (long long)time(NULL);
	size_t off = 0;
	for (size_t i = 0; i < a->opts.metadata_count && off < sizeof(r.meta); i++)
		off += (size_t)snprintf(r.meta + off, sizeof(r.meta) - off, "%s%s=%s", i ? "," : "",
					a->meta[i].key, a->meta[i].value);
	off = 0;
	for (size_t i = 0; argv[i] && off < sizeof(r.command); i++)
		off += (size_t)snprintf(r.command + off, sizeof(r.command) - off, "%s%s",
					i ? " " : "", argv[i]);
	if (sbx_cli_record_write(&r) < 0)
		sbx_cli_err("warning: cannot register the sandbox in %s (`sandbox list` will "
			    "not show it)",
			    sbx_cli_run_dir());
}

/* ------------------------------------------------------------------- run */

/* Runs the command in sb; returns the exit status for the tool. */
static int run_command(sandbox_t *sb, const struct run_args *a)
{
	sandbox_proc_t *proc;
	unsigned int flags = a->forward_stdin ? SANDBOX_PROC_STDIN : 0;
	int rc = sandbox_proc_start(sb, (const char *const *)a->command, NULL, &proc, flags);
	if (rc < 0) {
		if (received_signal())
			return 128 + received_signal();
		sbx_cli_lib_err(a->command[0], rc);
		return rc == SANDBOX_E_NOTFOUND ? 127 : SBX_CLI_EXIT_FAILED;
	}
	struct stdin_pump sp = {proc, 0};
	pthread_t st;
	int pumping = a->forward_stdin && pthread_create(&st, NULL, stdin_thread, &sp) == 0;
	if (pumping)
		pthread_detach(st);
	rc = stream_output(proc);
	sandbox_result_t *res = NULL;
	if (rc == 0)
		rc = sandbox_proc_wait(proc, -1, &res, 0);
	int status;
	if (received_signal())
		status = 128 + received_signal();
	else if (rc < 0) {
		sbx_cli_lib_err("command", rc);
		status = SBX_CLI_EXIT_FAILED;
	} else
		status = exit_status_of(res);
	sandbox_result_free(res);
	/* the stdin thread may still be inside sandbox_proc_write: leave the
	 * proc to process exit rather than free it under that thread */
	if (!pumping || sp.done)
		sandbox_proc_free(proc);
	return status;
}

int sbx_cli_run(int argc, char **argv)
{
	static struct run_args a; /* large; zeroed */
	int p = parse_args(&a, argc, argv);
	if (p == 1) {
		fputs(run_usage, stdout);
		return 0;
	}
	if (p < 0)
		return SBX_CLI_EXIT_USAGE;
	if (start_signal_thread())
		return SBX_CLI_EXIT_FAILED;

	sandbox_t *sb;
	int rc = sandbox_create(&sb, &a.opts, 0);
	for (size_t i = 0; i < a.opts.secrets_count; i++)
		free(a.secret_hosts[i]);
	if (rc < 0) {
		sbx_cli_lib_err("create", rc);
		return received_signal() ? 128 + received_signal() : SBX_CLI_EXIT_FAILED;
	}
	if (!a.quiet)
		fprintf(stderr, "sandbox %s\n", sandbox_id(sb));
	record_sandbox(sb, &a, a.command);
	int status;
	int early = publish_sandbox(sb);
	if (early) {
		sandbox_kill(sb, 0);
		status = 128 + early;
	} else
		status = run_command(sb, &a);
	publish_sandbox(NULL);
	sandbox_kill(sb, 0);
	sbx_cli_record_remove(sandbox_id(sb));
	sandbox_free(sb);
	return status;
}
