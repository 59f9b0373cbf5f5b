/* Files benchmark: throughput of a read-write volume (guest writes and
 * reads a file on it) and of the files API (upload and download of a host
 * file), each beside the same copy done on the host in the same run,
 * interleaved so machine noise hits both alike. Prints one JSON object
 * with medians and ratios (guest path / host path, higher is better).
 *
 *   bench_files [--image DIR] [--mib N] [--runs N] [--dir HOSTDIR]
 *
 * HOSTDIR (default /var/tmp) holds the volume and the files; it must be
 * reachable by QEMU's user. */
#include <fcntl.h>
#include <sandbox.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

static double median(double *v, int n)
{
	double *s = malloc(sizeof *s * (size_t)n);
	memcpy(s, v, sizeof *s * (size_t)n);
	qsort(s, (size_t)n, sizeof *s, cmp);
	double r = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	free(s);
	return r;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_files: %s: %s: %s\n", what, sandbox_strerror(rc),
		sandbox_last_error());
	exit(1);
}

/* Host baseline: copy src to dst with a 1 MiB buffer (what a plain cp
 * does), seconds. */
static double host_copy(const char *src, const char *dst)
{
	static char buf[1 << 20];
	double t0 = now_s();
	int in = open(src, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (in < 0 || out < 0) {
		perror("host copy");
		exit(1);
	}
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n) {
			perror("host copy write");
			exit(1);
		}
	close(in);
	close(out);
	return now_s() - t0;
}

/* Host baseline for the volume: write zeros / read a file, seconds. */
static double host_write_zeros(const char *path, int mib)
{
	static char buf[1 << 20];
	memset(buf, 0, sizeof buf);
	double t0 = now_s();
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	for (int i = 0; i < mib; i++)
		if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) {
			perror("host write");
			exit(1);
		}
	close(fd);
	return now_s() - t0;
}

static double host_read(const char *path)
{
	static char buf[1 << 20];
	double t0 = now_s();
	int fd = open(path, O_RDONLY);
	while (read(fd, buf, sizeof buf) > 0)
		;
	close(fd);
	return now_s() - t0;
}

/* Seconds a guest shell command reports for itself (printed by the
 * command as start and end nanoseconds), so exec overhead is left out. */
static double guest_timed(sandbox_t *sb, const char *cmd)
{
	char script[512];
	snprintf(script, sizeof script, "s=$(date +%%s%%N); %s; e=$(date +%%s%%N); echo $s $e",
		 cmd);
	const char *argv[] = {"sh", "-c", script, NULL};
	sandbox_result_t *r;
	int rc = sandbox_exec(sb, argv, NULL, &r, 0);
	if (rc)
		die("exec", rc);
	size_t n;
	const char *out = sandbox_result_stdout(r, &n);
	char line[128] = "";
	if (n && n < sizeof line)
		memcpy(line, out, n);
	long long s = 0, e = 0;
	if (sandbox_result_exit_code(r) != 0 || sscanf(line, "%lld %lld", &s, &e) != 2) {
		fprintf(stderr, "bench_files: '%s' failed\n", cmd);
		exit(1);
	}
	sandbox_result_free(r);
	return (double)(e - s) / 1e9;
}

struct series {
	const char *name;
	double *guest, *host;
};

static void print_series(const struct series *s, int runs, int mib, int last)
{
	double g = median(s->guest, runs), h = median(s->host, runs);
	printf("    \"%s\": {\"guest_mib_s\": %.1f, \"host_mib_s\": %.1f, \"ratio\": %.3f, "
	       "\"guest_s\": [",
	       s->name, mib / g, mib / h, h / g);
	for (int i = 0; i < runs; i++)
		printf("%s%.3f", i ? ", " : "", s->guest[i]);
	printf("], \"host_s\": [");
	for (int i = 0; i < runs; i++)
		printf("%s%.3f", i ? ", " : "", s->host[i]);
	printf("]}%s\n", last ? "" : ",");
}

int main(int argc, char **argv)
{
	const char *image = NULL, *dir = "/var/tmp";
	int mib = 256, runs = 3;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--mib"))
			mib = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--runs"))
			runs = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--image"))
			image = argv[i + 1];
		else if (!strcmp(argv[i], "--dir"))
			dir = argv[i + 1];
	}
	if (mib < 1 || runs < 1) {
		fprintf(stderr, "bench_files: bad --mib or --runs\n");
		return 2;
	}
	char vol[256], src[300], hostdst[300], dl[300], cmd[1024];
	snprintf(vol, sizeof vol, "%s/sbx-bench-files-XXXXXX", dir);
	if (!mkdtemp(vol)) {
		perror("mkdtemp");
		return 1;
	}
	chmod(vol, 0777); /* QEMU's user writes here */
	snprintf(src, sizeof src, "%s/src.bin", vol);
	snprintf(hostdst, sizeof hostdst, "%s/host-copy.bin", vol);
	snprintf(dl, sizeof dl, "%s/download.bin", vol);
	snprintf(cmd, sizeof cmd, "head -c %dM /dev/urandom > %s", mib, src);
	if (system(cmd) != 0)
		return 1;

	sandbox_volume_t v[] = {{vol, "/vol", 0}};
	sandbox_options_t o;
	sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
	o.image = image;
	o.volumes = v;
	o.volumes_count = 1;
	o.memory_mb = 1024;
	sandbox_t *sb;
	int rc = sandbox_create(&sb, &o, 0);
	if (rc)
		die("create", rc);

	double *all = calloc((size_t)runs * 8, sizeof *all);
	struct series s[4] = {
	    {"volume_write", all, all + runs},
	    {"volume_read", all + 2 * runs, all + 3 * runs},
	    {"upload", all + 4 * runs, all + 5 * runs},
	    {"download", all + 6 * runs, all + 7 * runs},
	};
	char gcmd[300];
	for (int r = 0; r < runs; r++) {
		snprintf(gcmd, sizeof gcmd,
			 "dd if=/dev/zero of=/vol/guest.bin bs=1M count=%d 2>/dev/null", mib);
		s[0].guest[r] = guest_timed(sb, gcmd);
		s[0].host[r] = host_write_zeros(hostdst, mib);
		/* 9p is mounted without a guest cache: every read goes to the host */
		s[1].guest[r] =
		    guest_timed(sb, "dd if=/vol/src.bin of=/dev/null bs=1M 2>/dev/null");
		s[1].host[r] = host_read(src);
		double t0 = now_s();
		if ((rc = sandbox_file_upload(sb, src, "/root/up.bin", 0)))
			die("upload", rc);
		s[2].guest[r] = now_s() - t0;
		s[2].host[r] = host_copy(src, hostdst);
		unlink(dl);
		t0 = now_s();
		if ((rc = sandbox_file_download(sb, "/root/up.bin", dl, 0)))
			die("download", rc);
		s[3].guest[r] = now_s() - t0;
		s[3].host[r] = host_copy(src, hostdst);
	}
	sandbox_kill(sb, 0);
	sandbox_free(sb);
	snprintf(cmd, sizeof cmd, "cmp -s %s %s", src, dl);
	int same = system(cmd) == 0;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", vol);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_files: cannot remove %s\n", vol);

	printf("{\n  \"benchmark\": \"files\",\n  \"volume_fs\": \"virtio-9p\",\n");
	printf("  \"mib\": %d,\n  \"runs\": %d,\n  \"download_intact\": %s,\n", mib, runs,
	       same ? "true" : "false");
	printf("  \"note\": \"ratio = host seconds / guest seconds for the same bytes\",\n");
	printf("  \"results\": {\n");
	for (int i = 0; i < 4; i++)
		print_series(&s[i], runs, mib, i == 3);
	printf("  }\n}\n");
	free(all);
	return same ? 0 : 1;
}
