/* HTTPS benchmark: download throughput and keep-alive request latency of
 * the same transfers made five ways, in one run, interleaved run by run
 * (the order rotates each run) so the machine's noise hits all alike:
 *
 *   host_direct     curl on the host straight to the test server
 *   host_mitmproxy  curl on the host through mitmdump (TLS intercepted by
 *                   mitmproxy, upstream verified against the test CA)
 *   guest_intercept curl in a sandbox with a secret for the host: TLS
 *                   intercepted by the library, the placeholder replaced
 *   guest_relay     curl in a sandbox without secrets: TLS end to end, the
 *                   library's proxy only relays the bytes
 *   guest_plain_http plain HTTP in the sandbox without secrets: no TLS
 *                   anywhere, what the channel and the guest alone cost
 *
 * Every client sends `Authorization: Bearer <key>` (the placeholder in the
 * intercepting sandbox, so substitution and echo protection do real work).
 * Times are curl's own (transfer: time_total - time_pretransfer; set-up
 * apart), so the guest's exec round trip is left out. Needs the test network (tests/net/testnet.sh
 * up) and mitmdump (apt-get install mitmproxy). Prints one JSON object.
 *
 *   bench_https [--image DIR] [--mib N] [--runs N] [--requests N] */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sandbox.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testnet.h"

#define HOST "api.example.test"
#define GUEST_CA "/tmp/testnet-ca.pem"
#define CURL_FMT                                                                                   \
	"%{time_total} %{size_download} %{http_code} %{num_connects} %{time_pretransfer}\\n"

enum path { P_DIRECT, P_MITM, P_INTERCEPT, P_RELAY, P_PLAIN, P_COUNT };

static const char *const path_key[P_COUNT] = {"host_direct", "host_mitmproxy", "guest_intercept",
					      "guest_relay", "guest_plain_http"};

/* ------------------------------------------------------------ helpers */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static pid_t g_mitm_pid = -1;
static char g_tmp[64];

static void cleanup(void)
{
	if (g_mitm_pid > 0) {
		kill(g_mitm_pid, SIGTERM);
		waitpid(g_mitm_pid, NULL, 0);
		g_mitm_pid = -1;
	}
	if (g_tmp[0]) {
		char cmd[128];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "bench_https: cannot remove %s\n", g_tmp);
		g_tmp[0] = '\0';
	}
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "bench_https: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	cleanup();
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The q-quantile (0.5: median) of n values, by the nearest-rank rule
 * (the mean of the two middle values for an even median). */
static double quantile(const double *v, int n, double q)
{
	double *s = malloc(sizeof *s * (size_t)n);
	if (!s)
		die("out of memory");
	memcpy(s, v, sizeof *s * (size_t)n);
	qsort(s, (size_t)n, sizeof *s, cmp);
	double r;
	if (q == 0.5)
		r = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	else {
		int k = (int)(q * n + 0.999999) - 1;
		r = s[k < 0 ? 0 : k >= n ? n - 1 : k];
	}
	free(s);
	return r;
}

static double median(const double *v, int n)
{
	return quantile(v, n, 0.5);
}

/* Runs argv on the host, its stdout into out (NUL-terminated, truncated
 * to cap). Returns the exit status (-1 if it did not exit normally). */
static int host_run(char *const argv[], char *out, size_t cap)
{
	int p[2];
	if (pipe(p))
		die("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	size_t len = 0;
	ssize_t n;
	char sink[4096];
	while ((n = read(p[0], len + 1 < cap ? out + len : sink,
			 len + 1 < cap ? cap - 1 - len : sizeof sink)) > 0)
		if (len + 1 < cap)
			len += (size_t)n;
	out[len] = '\0';
	close(p[0]);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A shell script on the host (for pipelines); same contract as host_run. */
static int host_sh(const char *script, char *out, size_t cap)
{
	char *argv[] = {"sh", "-c", (char *)script, NULL};
	return host_run(argv, out, cap);
}

/* Runs a shell script in the guest: exit code, stdout into out, and the
 * host-side wall time of the whole exec into *wall. */
static int guest_sh(sandbox_t *sb, const char *script, char *out, size_t cap, double *wall)
{
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	sandbox_exec_options_t eo;
	sandbox_exec_options_init(&eo, SANDBOX_EXEC_OPTIONS_VERSION);
	eo.timeout_ms = 600000;
	sandbox_result_t *r = NULL;
	double t0 = now_s();
	int rc = sandbox_exec(sb, argv, &eo, &r, 0);
	if (wall)
		*wall = now_s() - t0;
	if (rc)
		die("exec `%s`: %s: %s", script, sandbox_strerror(rc), sandbox_last_error());
	size_t n, ne;
	const char *so = sandbox_result_stdout(r, &n);
	const char *se = sandbox_result_stderr(r, &ne);
	if (n >= cap)
		n = cap - 1;
	memcpy(out, so, n);
	out[n] = '\0';
	int code = sandbox_result_exit_code(r);
	if (code != 0 && ne)
		fprintf(stderr, "bench_https: guest stderr of `%s`:\n%.*s\n", script, (int)ne, se);
	sandbox_result_free(r);
	return code;
}

/* CPU seconds (user + system) a process has used, from /proc/PID/stat. */
static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* the command name may hold spaces */
	unsigned long ut = 0, st = 0;
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds of this process (the library's proxy and I/O threads run
 * here; the main thread only waits while a guest command runs). */
static double self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* The QEMU process running the sandbox with this id: the one whose command
 * line names it. -1 when not found (its CPU time is then left out). */
static pid_t find_qemu(const char *id)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = -1;
	while (d && found < 0 && (e = readdir(d))) {
		char path[300], buf[8192];
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[n] = '\0';
		if (!strstr(buf, "qemu-system"))
			continue;
		for (size_t i = 0; i < n; i++)
			if (!buf[i])
				buf[i] = ' ';
		if (strstr(buf, id))
			found = (pid_t)atoi(e->d_name);
	}
	if (d)
		closedir(d);
	return found;
}

/* The /bytes/N stream's SHA-256, hex. */
static void pattern_sha256(uint64_t n, char out[65])
{
	static unsigned char buf[1 << 16];
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	for (uint64_t off = 0; off < n;) {
		size_t k = n - off < sizeof buf ? (size_t)(n - off) : sizeof buf;
		tn_pattern_fill(buf, k, off);
		EVP_DigestUpdate(c, buf, k);
		off += k;
	}
	unsigned char md[32];
	EVP_DigestFinal_ex(c, md, NULL);
	EVP_MD_CTX_free(c);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

/* ------------------------------------------------------------ mitmproxy */

/* A free loopback TCP port (the kernel's pick; released at once). */
static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) ||
	    getsockname(s, (struct sockaddr *)&a, &len))
		die("cannot find a free port: %s", strerror(errno));
	close(s);
	return ntohs(a.sin_port);
}

/* Starts mitmdump as an HTTPS proxy on loopback: upstream certificates
 * verified against the test CA, bodies streamed (without
 * stream_large_bodies mitmproxy holds every body whole before passing it
 * on: a 64 MiB download then took 30-60 s here), its CA made in confdir. */
static int start_mitmdump(const char *confdir)
{
	int port = free_port();
	char portstr[16], conf[300], ca[300];
	snprintf(portstr, sizeof portstr, "%d", port);
	snprintf(conf, sizeof conf, "confdir=%s", confdir);
	snprintf(ca, sizeof ca, "ssl_verify_upstream_trusted_ca=%s", TESTNET_CA);
	char log[300];
	snprintf(log, sizeof log, "%s/mitmdump.log", confdir);
	g_mitm_pid = fork();
	if (g_mitm_pid < 0)
		die("fork: %s", strerror(errno));
	if (g_mitm_pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execlp("mitmdump", "mitmdump", "-q", "--listen-host", "127.0.0.1", "--listen-port",
		       portstr, "--set", conf, "--set", ca, "--set", "stream_large_bodies=1m",
		       (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1200; i++) { /* up to 120 s on a loaded machine */
		int fd = tn_connect("127.0.0.1", port, 100);
		if (fd >= 0) {
			close(fd);
			return port;
		}
		if (waitpid(g_mitm_pid, NULL, WNOHANG) == g_mitm_pid) {
			g_mitm_pid = -1;
			die("mitmdump exited at start; see its log (kept in %s)", log);
		}
		usleep(100000);
	}
	die("mitmdump did not listen on 127.0.0.1:%d within 120 s", port);
}

/* ------------------------------------------------------------ the paths */

struct bench {
	int mib, runs, requests, mitm_port;
	char mitm_ca[300], key[64];
	sandbox_t *icpt, *relay; /* intercepting sandbox, sandbox without secrets */
	pid_t icpt_qemu, relay_qemu;
	pthread_mutex_t lock;
	int audited_substituted; /* http.request events naming the secret */
};

static sandbox_t *path_sandbox(const struct bench *b, int p)
{
	return p == P_INTERCEPT ? b->icpt : p == P_RELAY || p == P_PLAIN ? b->relay : NULL;
}

/* The shell-quoted curl options of a path (client trust, proxy, address). */
static void curl_opts(const struct bench *b, int p, char *out, size_t cap)
{
	switch (p) {
	case P_DIRECT:
		snprintf(out, cap, "--cacert %s --resolve %s:443:%s -H 'Authorization: Bearer %s'",
			 TESTNET_CA, HOST, TESTNET_API4, b->key);
		break;
	case P_MITM:
		/* mitmdump would resolve the name with the host's resolver,
		 * which does not know the test zone: CONNECT to the address,
		 * SNI and Host still name the host (upstream verified on it) */
		snprintf(out, cap,
			 "-x http://127.0.0.1:%d --cacert %s --connect-to %s:443:%s:443 "
			 "-H 'Authorization: Bearer %s'",
			 b->mitm_port, b->mitm_ca, HOST, TESTNET_API4, b->key);
		break;
	case P_INTERCEPT: /* the sandbox's CA is in the guest's system store */
		snprintf(out, cap, "-H \"Authorization: Bearer $API_KEY\"");
		break;
	default: snprintf(out, cap, "--cacert %s -H 'Authorization: Bearer %s'", GUEST_CA, b->key);
	}
}

static const char *path_scheme(int p)
{
	return p == P_PLAIN ? "http" : "https";
}

/* Runs one curl command line (options + URL) on the path's side; returns
 * its stdout in out, the exit status as the result. */
static int path_curl(struct bench *b, int p, const char *args, char *out, size_t cap)
{
	char opts[600], script[2048];
	curl_opts(b, p, opts, sizeof opts);
	snprintf(script, sizeof script, "curl -sS --max-time 600 %s %s", opts, args);
	sandbox_t *sb = path_sandbox(b, p);
	return sb ? guest_sh(sb, script, out, cap, NULL) : host_sh(script, out, cap);
}

/* Before timing: the download arrives intact on every path, and the TLS
 * version and cipher each path negotiated (for the record). */
static void check_path(struct bench *b, int p, const char *want_sha, char *tls, size_t tlscap)
{
	char args[300], out[4096];
	snprintf(args, sizeof args, "%s://%s/bytes/%llu | sha256sum", path_scheme(p), HOST,
		 (unsigned long long)b->mib << 20);
	if (path_curl(b, p, args, out, sizeof out) != 0 || strncmp(out, want_sha, 64))
		die("%s: the %d MiB download is not intact (sha256 %.64s, want %s)", path_key[p],
		    b->mib, out, want_sha);
	snprintf(tls, tlscap, "none");
	if (p == P_PLAIN)
		return;
	snprintf(args, sizeof args,
		 "-v -o /dev/null https://%s/echo 2>&1 | sed -n 's/.*SSL connection using //p'",
		 HOST);
	if (path_curl(b, p, args, out, sizeof out) != 0 || !out[0])
		die("%s: no TLS connection reported by curl -v", path_key[p]);
	out[strcspn(out, "\r\n")] = '\0';
	out[tlscap - 1] = '\0'; /* "TLSv1.3 / TLS_AES_256_GCM_SHA384" fits */
	memcpy(tls, out, tlscap);
}

struct cost {
	double proxy_cpu, qemu_cpu, exec_wall;
};

/* Runs a timed curl and returns its output; for a guest path also the
 * CPU spent meanwhile by this process (proxy) and the sandbox's QEMU. */
static void timed_curl(struct bench *b, int p, const char *args, char *out, size_t cap,
		       struct cost *c)
{
	char opts[600], script[2048];
	curl_opts(b, p, opts, sizeof opts);
	snprintf(script, sizeof script, "curl -sS --max-time 600 -o /dev/null -w '%s' %s %s",
		 CURL_FMT, opts, args);
	sandbox_t *sb = path_sandbox(b, p);
	memset(c, 0, sizeof *c);
	int rc;
	if (sb) {
		pid_t q = p == P_INTERCEPT ? b->icpt_qemu : b->relay_qemu;
		double s0 = self_cpu_s(), q0 = q > 0 ? proc_cpu_s(q) : 0;
		rc = guest_sh(sb, script, out, cap, &c->exec_wall);
		c->proxy_cpu = self_cpu_s() - s0;
		c->qemu_cpu = q > 0 ? proc_cpu_s(q) - q0 : -1;
	} else {
		double t0 = now_s();
		rc = host_sh(script, out, cap);
		c->exec_wall = now_s() - t0;
	}
	if (rc != 0)
		die("%s: curl failed (exit %d): %s", path_key[p], rc, script);
}

/* Parses one curl -w line; dies unless the status is 200 and the size the
 * one expected. Returns curl's time_total; *connects its num_connects,
 * *pre its time_pretransfer (name lookup, connect and TLS handshake). */
static double parse_curl_line(int p, const char *line, unsigned long long want_size, int *connects,
			      double *pre)
{
	double t, tp;
	unsigned long long size;
	int code, c;
	if (sscanf(line, "%lf %llu %d %d %lf", &t, &size, &code, &c, &tp) != 5 || code != 200 ||
	    size != want_size)
		die("%s: unexpected curl result '%s' (want status 200, %llu bytes)", path_key[p],
		    line, want_size);
	if (connects)
		*connects = c;
	if (pre)
		*pre = tp;
	return t;
}

/* One N MiB download. Returns the transfer time, curl's time_total minus
 * its time_pretransfer (request sent to last byte received); *setup gets
 * the time before it (name lookup, TCP connect, TLS handshake), reported
 * apart: in the guest, process start-up and the first lookup through the
 * sandbox's DNS proxy weigh as much as seconds of transfer. Times are
 * curl's own, so the exec round trip is left out; the guest's clock ticks
 * every 4 ms under TCG (refined-jiffies), nothing next to seconds. */
static double measure_download(struct bench *b, int p, struct cost *c, double *setup)
{
	char args[200], out[256];
	unsigned long long n = (unsigned long long)b->mib << 20;
	snprintf(args, sizeof args, "%s://%s/bytes/%llu", path_scheme(p), HOST, n);
	timed_curl(b, p, args, out, sizeof out, c);
	double t = parse_curl_line(p, out, n, NULL, setup);
	return t - *setup;
}

/* Keep-alive: `requests` GETs of /echo on one connection (curl's URL
 * globbing), each after the first required to reuse it. Fills ms[] with
 * curl's time_total of requests 2..N and returns their mean: the guest's
 * clock ticks every 4 ms, so a guest request's time is a multiple of 4 ms
 * and only the mean over many is precise (its rounding errors average
 * out); the median is kept for the record. */
static double measure_keepalive(struct bench *b, int p, double *ms)
{
	char args[200];
	static char out[1 << 16];
	struct cost c;
	snprintf(args, sizeof args, "'%s://%s/echo?i=[1-%d]'", path_scheme(p), HOST, b->requests);
	timed_curl(b, p, args, out, sizeof out, &c);
	int n = 0, i = 0;
	double sum = 0;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"), i++) {
		int connects;
		unsigned long long size = 0;
		/* /echo bodies differ in length (they echo the request) */
		if (sscanf(line, "%*f %llu", &size) != 1)
			die("%s: keep-alive request %d: unexpected curl result '%s'", path_key[p],
			    i + 1, line);
		double t = parse_curl_line(p, line, size, &connects, NULL);
		if (i == 0)
			continue; /* the connection's set-up: not a kept-alive request */
		if (connects != 0)
			die("%s: request %d opened a new connection: keep-alive broken",
			    path_key[p], i + 1);
		ms[n++] = t * 1000;
		sum += t * 1000;
	}
	if (n != b->requests - 1)
		die("%s: %d keep-alive results, want %d", path_key[p], n, b->requests - 1);
	return sum / n;
}

/* ------------------------------------------------------------ sandboxes */

static void on_audit(const char *json, void *ud)
{
	struct bench *b = ud;
	if (strstr(json, "\"http.request\"") && strstr(json, "\"secrets\":[\"API_KEY\"]")) {
		pthread_mutex_lock(&b->lock);
		b->audited_substituted++;
		pthread_mutex_unlock(&b->lock);
	}
}

static sandbox_t *create_sandbox(struct bench *b, const char *image, int with_secret)
{
	static const char *dns[] = {TESTNET_DNS4, NULL};
	static const char *hosts[] = {HOST, NULL};
	sandbox_secret_t sec = {"API_KEY", b->key, hosts, 0};
	sandbox_options_t o;
	sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
	o.image = image;
	o.dns_servers = dns;
	o.memory_mb = 512;
	if (with_secret) {
		o.secrets = &sec;
		o.secrets_count = 1;
		o.tls_ca_file = TESTNET_CA;
		o.audit_cb = on_audit;
		o.audit_userdata = b;
	}
	sandbox_t *sb;
	int rc = sandbox_create(&sb, &o, 0);
	if (rc)
		die("sandbox_create: %s: %s", sandbox_strerror(rc), sandbox_last_error());
	return sb;
}

/* ------------------------------------------------------------ output */

struct results {
	double *dl[P_COUNT];	  /* transfer seconds per run */
	double *setup[P_COUNT];	  /* set-up seconds (curl's time_pretransfer) per run */
	double *lat[P_COUNT];	  /* mean ms per kept-alive request per run */
	double *lat_med[P_COUNT]; /* median of curl's per-request times per run */
	double *lat_all[P_COUNT]; /* curl's time of every kept-alive request, ms */
	int lat_n[P_COUNT];
	struct cost *cost[P_COUNT]; /* per download run (guest paths) */
	char tls[P_COUNT][128];
};

static void print_array(const char *name, const double *v, int n, const char *fmt)
{
	printf("\"%s\": [", name);
	for (int i = 0; i < n; i++) {
		printf(i ? ", " : "");
		printf(fmt, v[i]);
	}
	printf("]");
}

static double dl_mib_s(const struct bench *b, const struct results *r, int p)
{
	return b->mib / median(r->dl[p], b->runs);
}

static double lat_ms(const struct bench *b, const struct results *r, int p)
{
	return median(r->lat[p], b->runs);
}

static void print_path(const struct bench *b, const struct results *r, int p, int last)
{
	printf("    \"%s\": {\n      \"tls\": \"%s\",\n", path_key[p], r->tls[p]);
	printf("      \"download_mib_s\": %.1f, ", dl_mib_s(b, r, p));
	print_array("download_s", r->dl[p], b->runs, "%.3f");
	printf(", ");
	print_array("setup_s", r->setup[p], b->runs, "%.3f");
	printf(",\n      \"keepalive_ms\": %.3f, ", lat_ms(b, r, p));
	print_array("keepalive_run_ms", r->lat[p], b->runs, "%.3f");
	printf(",\n      \"keepalive_curl_median_ms\": %.3f, \"keepalive_curl_p95_ms\": %.3f",
	       median(r->lat_med[p], b->runs), quantile(r->lat_all[p], r->lat_n[p], 0.95));
	if (p >= P_INTERCEPT) {
		double pc[64], qc[64], w[64];
		int n = b->runs < 64 ? b->runs : 64;
		for (int i = 0; i < n; i++)
			pc[i] = r->cost[p][i].proxy_cpu, qc[i] = r->cost[p][i].qemu_cpu,
			w[i] = r->cost[p][i].exec_wall;
		printf(
		    ",\n      \"download_cpu_s\": {\"host_proxy_process\": %.3f, \"qemu\": %.3f, "
		    "\"exec_wall\": %.3f}",
		    median(pc, n), median(qc, n), median(w, n));
	}
	printf("\n    }%s\n", last ? "" : ",");
}

static void print_ratio(const char *name, double v, int last)
{
	printf("      \"%s\": %.3f%s\n", name, v, last ? "" : ",");
}

static void print_ratios(const struct bench *b, const struct results *r)
{
	printf("  \"ratios\": {\n    \"download_throughput_vs_host_direct\": {\n");
	for (int p = P_MITM; p < P_COUNT; p++)
		print_ratio(path_key[p], dl_mib_s(b, r, p) / dl_mib_s(b, r, P_DIRECT),
			    p == P_COUNT - 1);
	printf("    },\n    \"keepalive_latency_vs_host_direct\": {\n");
	for (int p = P_MITM; p < P_COUNT; p++)
		print_ratio(path_key[p], lat_ms(b, r, p) / lat_ms(b, r, P_DIRECT),
			    p == P_COUNT - 1);
	printf("    },\n    \"interception_vs_mitmproxy\": {\n");
	print_ratio("download_throughput", dl_mib_s(b, r, P_INTERCEPT) / dl_mib_s(b, r, P_MITM), 0);
	print_ratio("keepalive_latency", lat_ms(b, r, P_INTERCEPT) / lat_ms(b, r, P_MITM), 1);
	printf("    },\n    \"interception_vs_relay\": {\n");
	print_ratio("download_throughput", dl_mib_s(b, r, P_INTERCEPT) / dl_mib_s(b, r, P_RELAY),
		    0);
	print_ratio("keepalive_latency", lat_ms(b, r, P_INTERCEPT) / lat_ms(b, r, P_RELAY), 1);
	printf("    }\n  }\n");
}

static void load_avg(char *out, size_t cap)
{
	FILE *f = fopen("/proc/loadavg", "r");
	out[0] = '\0';
	if (f) {
		if (!fgets(out, (int)cap, f))
			out[0] = '\0';
		fclose(f);
	}
	out[strcspn(out, " ")] = '\0'; /* the 1-minute figure */
}

/* ------------------------------------------------------------ main */

static void parse_args(int argc, char **argv, struct bench *b, const char **image)
{
	for (int i = 1; i < argc; i += 2) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			die("%s needs a value", argv[i]);
		if (!strcmp(argv[i], "--mib"))
			b->mib = atoi(v);
		else if (!strcmp(argv[i], "--runs"))
			b->runs = atoi(v);
		else if (!strcmp(argv[i], "--requests"))
			b->requests = atoi(v);
		else if (!strcmp(argv[i], "--image"))
			*image = v;
		else
			die("unknown option %s (--image DIR --mib N --runs N --requests N)",
			    argv[i]);
	}
	if (b->mib < 1 || b->mib > 4096 || b->runs < 1 || b->runs > 64 || b->requests < 2 ||
	    b->requests > 10000)
		die("--mib 1..4096, --runs 1..64, --requests 2..10000");
}

/* The test network and the host's tools, or a clear reason to stop. */
static void preflight(void)
{
	char why[512], out[256];
	if (tn_check_up(why, sizeof why))
		die("the test network is not up (%s): run `tests/net/testnet.sh up` as root", why);
	if (host_sh("command -v mitmdump", out, sizeof out) != 0)
		die("mitmdump not found: this benchmark compares with mitmproxy; install it with "
		    "`apt-get install mitmproxy`");
	if (host_sh("command -v curl", out, sizeof out) != 0)
		die("curl not found on the host: `apt-get install curl`");
}

static void random_key(char *out, size_t cap)
{
	unsigned char r[12];
	FILE *f = fopen("/dev/urandom", "r");
	if (!f || fread(r, 1, sizeof r, f) != sizeof r)
		die("cannot read /dev/urandom");
	fclose(f);
	size_t n = (size_t)snprintf(out, cap, "sk-bench-");
	for (size_t i = 0; i < sizeof r && n + 2 < cap; i++, n += 2)
		sprintf(out + n, "%02x", r[i]);
}

static void setup(struct bench *b, const char *image)
{
	snprintf(g_tmp, sizeof g_tmp, "/tmp/sbx-bench-https-XXXXXX");
	if (!mkdtemp(g_tmp))
		die("mkdtemp: %s", strerror(errno));
	b->mitm_port = start_mitmdump(g_tmp);
	snprintf(b->mitm_ca, sizeof b->mitm_ca, "%s/mitmproxy-ca-cert.pem", g_tmp);
	for (int i = 0; access(b->mitm_ca, R_OK) && i < 100; i++)
		usleep(100000);
	if (access(b->mitm_ca, R_OK))
		die("mitmdump made no CA at %s", b->mitm_ca);
	b->icpt = create_sandbox(b, image, 1);
	b->relay = create_sandbox(b, image, 0);
	int rc = sandbox_file_upload(b->relay, TESTNET_CA, GUEST_CA, 0);
	if (rc)
		die("upload of the test CA: %s: %s", sandbox_strerror(rc), sandbox_last_error());
	b->icpt_qemu = find_qemu(sandbox_id(b->icpt));
	b->relay_qemu = find_qemu(sandbox_id(b->relay));
}

static void alloc_results(const struct bench *b, struct results *r)
{
	memset(r, 0, sizeof *r);
	for (int p = 0; p < P_COUNT; p++) {
		r->dl[p] = calloc((size_t)b->runs, sizeof(double));
		r->lat[p] = calloc((size_t)b->runs, sizeof(double));
		r->setup[p] = calloc((size_t)b->runs, sizeof(double));
		r->lat_med[p] = calloc((size_t)b->runs, sizeof(double));
		r->lat_all[p] = calloc((size_t)b->runs * (size_t)b->requests, sizeof(double));
		r->cost[p] = calloc((size_t)b->runs, sizeof(struct cost));
		if (!r->dl[p] || !r->lat[p] || !r->setup[p] || !r->lat_med[p] || !r->lat_all[p] ||
		    !r->cost[p])
			die("out of memory");
	}
}

/* One run: every path's download then every path's keep-alive series, in
 * an order rotated by the run number. */
static void run_once(struct bench *b, struct results *r, int run)
{
	for (int k = 0; k < P_COUNT; k++) {
		int p = (run + k) % P_COUNT;
		r->dl[p][run] = measure_download(b, p, &r->cost[p][run], &r->setup[p][run]);
		fprintf(stderr, "run %d %-17s download %7.1f MiB/s\n", run + 1, path_key[p],
			b->mib / r->dl[p][run]);
	}
	for (int k = 0; k < P_COUNT; k++) {
		int p = (run + k) % P_COUNT;
		double *ms = r->lat_all[p] + r->lat_n[p];
		r->lat[p][run] = measure_keepalive(b, p, ms);
		r->lat_med[p][run] = median(ms, b->requests - 1);
		r->lat_n[p] += b->requests - 1;
		fprintf(stderr, "run %d %-17s keep-alive %8.3f ms\n", run + 1, path_key[p],
			r->lat[p][run]);
	}
}

int main(int argc, char **argv)
{
	struct bench b = {.mib = 64, .runs = 5, .requests = 200};
	const char *image = NULL;
	parse_args(argc, argv, &b, &image);
	pthread_mutex_init(&b.lock, NULL);
	random_key(b.key, sizeof b.key);
	preflight();
	char load0[32], load1[32], curlv[256], mitmv[256], sha[65];
	load_avg(load0, sizeof load0);
	host_sh("curl --version | head -1 | cut -d' ' -f1-2", curlv, sizeof curlv);
	host_sh("mitmdump --version | head -1", mitmv, sizeof mitmv);
	curlv[strcspn(curlv, "\n")] = mitmv[strcspn(mitmv, "\n")] = '\0';
	pattern_sha256((uint64_t)b.mib << 20, sha);
	setup(&b, image);

	struct results r;
	alloc_results(&b, &r);
	for (int p = 0; p < P_COUNT; p++) /* also warms every path up */
		check_path(&b, p, sha, r.tls[p], sizeof r.tls[p]);
	if (b.audited_substituted == 0)
		die("guest_intercept: no http.request event with the secret substituted: "
		    "the connection was not intercepted");
	for (int run = 0; run < b.runs; run++)
		run_once(&b, &r, run);
	int audited = b.audited_substituted;
	load_avg(load1, sizeof load1);
	sandbox_kill(b.icpt, 0);
	sandbox_kill(b.relay, 0);
	sandbox_free(b.icpt);
	sandbox_free(b.relay);
	cleanup();

	time_t t = time(NULL);
	char date[32];
	strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	printf("{\n  \"benchmark\": \"https\",\n  \"date\": \"%s\",\n", date);
	printf("  \"mib\": %d,\n  \"runs\": %d,\n  \"keepalive_requests\": %d,\n", b.mib, b.runs,
	       b.requests);
	printf("  \"load_avg_1min\": [%s, %s],\n", load0, load1);
	printf("  \"host_curl\": \"%s\",\n  \"mitmproxy\": \"%s\",\n", curlv, mitmv);
	printf("  \"mitmproxy_options\": \"stream_large_bodies=1m, "
	       "ssl_verify_upstream_trusted_ca=<test CA>\",\n");
	printf("  \"download_intact_on_every_path\": true,\n");
	printf("  \"intercepted_requests_with_secret_substituted\": %d,\n", audited);
	printf("  \"note\": \"medians over runs; all times are curl's own. download_s: transfer "
	       "time (time_total - time_pretransfer), download_mib_s from it; setup_s: "
	       "time_pretransfer (name lookup, connect, TLS handshake); keepalive_ms: mean "
	       "time_total of requests 2..N on one connection (the guest clock ticks every 4 ms, "
	       "so only a mean is precise there), median over runs; keepalive_curl_*: median and "
	       "p95 of the single requests (4 ms steps in the guest); throughput ratio = path "
	       "MiB/s / reference MiB/s (higher is better), latency ratio = path ms / reference "
	       "ms (lower is better); download_cpu_s: CPU seconds during one guest download used "
	       "by this process (the library's proxy thread) and by the sandbox's QEMU, and the "
	       "host-side wall time of that exec\",\n");
	printf("  \"paths\": {\n");
	for (int p = 0; p < P_COUNT; p++)
		print_path(&b, &r, p, p == P_COUNT - 1);
	printf("  },\n");
	print_ratios(&b, &r);
	printf("}\n");
	return 0;
}
