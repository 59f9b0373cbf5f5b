/* The C side of the front-end benchmark (bench/frontends/run.py): times
 * sandbox_create and a command round trip (`true`) through the library
 * directly. Prints one JSON object: {"create_ms": [...], "exec_ms": [...]}.
 *
 *   bench_frontends CREATES EXECS
 *
 * One create (not counted) warms the runtime up (libvirt connection),
 * as the Python and Node versions do. */
#include <sandbox.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static sandbox_t *create_or_die(void)
{
	sandbox_t *sb;
	int rc = sandbox_create(&sb, NULL, 0);
	if (rc < 0) {
		fprintf(stderr, "create: %s: %s\n", sandbox_strerror(rc), sandbox_last_error());
		exit(1);
	}
	return sb;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s CREATES EXECS\n", argv[0]);
		return 2;
	}
	int creates = atoi(argv[1]), execs = atoi(argv[2]);
	sandbox_t *sb = create_or_die(); /* warm-up */
	sandbox_kill(sb, 0);
	sandbox_free(sb);
	printf("{\"create_ms\": [");
	for (int i = 0; i < creates; i++) {
		double t = now_ms();
		sb = create_or_die();
		printf("%s%.3f", i ? ", " : "", now_ms() - t);
		if (i + 1 < creates) {
			sandbox_kill(sb, 0);
			sandbox_free(sb);
		}
	}
	printf("], \"exec_ms\": [");
	const char *const cmd[] = {"true", NULL};
	for (int i = 0; i < execs; i++) {
		sandbox_result_t *r;
		double t = now_ms();
		int rc = sandbox_exec(sb, cmd, NULL, &r, 0);
		double dt = now_ms() - t;
		if (rc < 0 || sandbox_result_exit_code(r) != 0) {
			fprintf(stderr, "exec: %s\n", sandbox_last_error());
			return 1;
		}
		sandbox_result_free(r);
		printf("%s%.3f", i ? ", " : "", dt);
	}
	printf("]}\n");
	sandbox_kill(sb, 0);
	sandbox_free(sb);
	return 0;
}
