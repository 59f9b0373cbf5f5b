/* Lifecycle benchmark: create -> first exec result -> kill, and exec round
 * trips in a running sandbox, each beside its baseline measured in the same
 * run, interleaved so machine noise hits both alike:
 *   - the floor: the same kernel, initramfs and root image booted by a bare
 *     QEMU command line until the agent's HELLO (bench/floor/floor.py);
 *   - for exec: the protocol's PING round trip on the same channel.
 * Prints one JSON object; quote medians. */
#include <sandbox.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* nearest-rank percentile */
static double pct(double *v, int n, double p)
{
	double *s = malloc(sizeof *s * (size_t)n);
	memcpy(s, v, sizeof *s * (size_t)n);
	qsort(s, (size_t)n, sizeof *s, cmp);
	int k = (int)(p / 100.0 * n + 0.999999);
	double r = s[k < 1 ? 0 : k - 1];
	free(s);
	return r;
}

static void print_stat(const char *name, double *v, int n, int last)
{
	printf("    \"%s\": {\"p50_ms\": %.1f, \"p95_ms\": %.1f, \"samples_ms\": [", name,
	       pct(v, n, 50), pct(v, n, 95));
	for (int i = 0; i < n; i++)
		printf("%s%.1f", i ? ", " : "", v[i]);
	printf("]}%s\n", last ? "" : ",");
}

/* VmRSS (KiB) of a process, 0 if unknown. */
static long rss_kib(long pid)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%ld/status", pid);
	FILE *f = fopen(path, "r");
	long kib = 0;
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = atol(line + 6);
	if (f)
		fclose(f);
	return kib;
}

/* Pid of the QEMU running sandbox `id` (its -name guest=sbx-<id>). */
static long qemu_pid(const char *id)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "pgrep -f 'guest=sbx-%s,'", id);
	FILE *p = popen(cmd, "r");
	long pid = 0;
	if (p && fscanf(p, "%ld", &pid) != 1)
		pid = 0;
	if (p)
		pclose(p);
	return pid;
}

static int die(const char *what, int rc)
{
	fprintf(stderr, "%s: %s: %s\n", what, sandbox_strerror(rc), sandbox_last_error());
	exit(1);
}

static double floor_once(const char *floor, const char *image)
{
	char cmd[1024];
	snprintf(cmd, sizeof cmd, "python3 %s --image %s --runs 1 --warmup 0 --json", floor, image);
	FILE *p = popen(cmd, "r");
	char buf[4096];
	size_t n = p ? fread(buf, 1, sizeof buf - 1, p) : 0;
	if (!p || pclose(p) != 0)
		return -1;
	buf[n] = '\0';
	const char *k = strstr(buf, "\"p50_ms\":");
	return k ? atof(k + 9) : -1;
}

int main(int argc, char **argv)
{
	int runs = 10, execs = 50;
	const char *image = getenv("SANDBOX_IMAGE"), *floor = "bench/floor/floor.py";
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--runs"))
			runs = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--execs"))
			execs = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--image"))
			image = argv[i + 1];
		else if (!strcmp(argv[i], "--floor"))
			floor = argv[i + 1];
	}
	if (!image) {
		fprintf(
		    stderr,
		    "usage: bench_lifecycle --image DIR [--runs N] [--execs N] [--floor PATH]\n");
		return 2;
	}
	double *fl = calloc((size_t)runs, sizeof(double)),
	       *total = calloc((size_t)runs, sizeof(double));
	double *create = calloc((size_t)runs, sizeof(double)),
	       *first = calloc((size_t)runs, sizeof(double));
	double *kill = calloc((size_t)runs, sizeof(double));
	double *ex = calloc((size_t)execs, sizeof(double)),
	       *ping = calloc((size_t)execs, sizeof(double));
	sandbox_options_t o;
	sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
	o.image = image;
	/* the first command is trivial: the figure is about the sandbox, not
	 * about how long a cold Python takes to start under TCG */
	const char *py[] = {"echo", "ready", NULL};
	const char *tr[] = {"true", NULL};
	/* warm-up: opens the runtime (libvirt capability probe) once */
	sandbox_t *sb;
	int rc = sandbox_create(&sb, &o, 0);
	if (rc)
		die("create", rc);
	sandbox_free(sb);
	for (int i = 0; i < runs; i++) {
		fl[i] = floor_once(floor, image);
		if (fl[i] < 0) {
			fprintf(stderr, "floor run failed\n");
			return 1;
		}
		double t0 = now_ms();
		if ((rc = sandbox_create(&sb, &o, 0)))
			die("create", rc);
		double t1 = now_ms();
		sandbox_result_t *r;
		if ((rc = sandbox_exec(sb, py, NULL, &r, 0)))
			die("exec", rc);
		double t2 = now_ms();
		sandbox_result_free(r);
		sandbox_kill(sb, 0);
		double t3 = now_ms();
		sandbox_free(sb);
		create[i] = t1 - t0;
		first[i] = t2 - t0;
		kill[i] = t3 - t2;
		total[i] = t3 - t0;
		fprintf(stderr,
			"[bench] run %d: floor %.0f ms, create %.0f ms, first exec %.0f ms\n", i,
			fl[i], create[i], first[i]);
	}
	long host_before = rss_kib((long)getpid());
	if ((rc = sandbox_create(&sb, &o, 0)))
		die("create", rc);
	for (int i = 0; i < execs; i++) {
		double t0 = now_ms();
		if ((rc = sandbox_ping(sb, 0)))
			die("ping", rc);
		double t1 = now_ms();
		sandbox_result_t *r;
		if ((rc = sandbox_exec(sb, tr, NULL, &r, 0)))
			die("exec", rc);
		double t2 = now_ms();
		sandbox_result_free(r);
		ping[i] = t1 - t0;
		ex[i] = t2 - t1;
	}
	sleep(3); /* idle */
	long host_after = rss_kib((long)getpid());
	long qemu_kib = rss_kib(qemu_pid(sandbox_id(sb)));
	sandbox_free(sb);
	printf("{\n  \"name\": \"lifecycle\",\n  \"runs\": %d,\n  \"execs\": %d,\n", runs, execs);
	printf("  \"results\": {\n");
	print_stat("floor_boot_to_agent_ready", fl, runs, 0);
	print_stat("create", create, runs, 0);
	print_stat("create_to_first_exec_result", first, runs, 0);
	print_stat("kill", kill, runs, 0);
	print_stat("create_exec_kill", total, runs, 0);
	print_stat("exec_true_round_trip", ex, execs, 0);
	print_stat("ping_round_trip", ping, execs, 1);
	printf("  },\n  \"idle_memory\": {\"guest_ram_mib\": %u, \"qemu_rss_mib\": %.1f, "
	       "\"host_process_delta_mib\": %.1f},\n",
	       o.memory_mb, qemu_kib / 1024.0, (host_after - host_before) / 1024.0);
	printf("  \"ratios\": {\n");
	printf("    \"first_exec_vs_floor_p50\": %.3f,\n",
	       pct(first, runs, 50) / pct(fl, runs, 50));
	printf("    \"create_vs_floor_p50\": %.3f,\n", pct(create, runs, 50) / pct(fl, runs, 50));
	printf("    \"exec_vs_ping_p50\": %.3f\n", pct(ex, execs, 50) / pct(ping, execs, 50));
	printf("  }\n}\n");
	return 0;
}
