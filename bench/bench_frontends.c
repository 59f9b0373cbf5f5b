/* The C side of the front-end benchmark (bench/frontends/run.py): serves
 * one timed operation per line read on stdin, so the driver can interleave
 * C, Python and Node operation by operation:
 *   "create" -> kill the previous sandbox (untimed), time sandbox_create
 *   "exec"   -> time one command round trip (`true`)
 *   "ping"   -> time one agent round trip (sandbox_ping: no guest process)
 *   "reject" -> time a create the library refuses before booting
 *               (memory_mb = 1): the front end's own call path
 * and answers each with the milliseconds on one line. The first create
 * also opens the runtime; the driver discards it as a warm-up. */
#include <sandbox.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(void)
{
	char line[64];
	sandbox_t *sb = NULL;
	const char *const cmd[] = {"true", NULL};
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (fgets(line, sizeof(line), stdin)) {
		double t;
		if (!strcmp(line, "create\n")) {
			if (sb) {
				sandbox_kill(sb, 0);
				sandbox_free(sb);
			}
			t = now_ms();
			int rc = sandbox_create(&sb, NULL, 0);
			if (rc < 0) {
				fprintf(stderr, "create: %s\n", sandbox_last_error());
				return 1;
			}
		} else if (!strcmp(line, "exec\n")) {
			sandbox_result_t *r;
			t = now_ms();
			if (!sb || sandbox_exec(sb, cmd, NULL, &r, 0) < 0 ||
			    sandbox_result_exit_code(r) != 0) {
				fprintf(stderr, "exec: %s\n", sandbox_last_error());
				return 1;
			}
			sandbox_result_free(r);
		} else if (!strcmp(line, "ping\n")) {
			t = now_ms();
			if (!sb || sandbox_ping(sb, 0) < 0) {
				fprintf(stderr, "ping: %s\n", sandbox_last_error());
				return 1;
			}
		} else if (!strcmp(line, "reject\n")) {
			sandbox_options_t o;
			sandbox_t *none;
			t = now_ms();
			sandbox_options_init(&o, SANDBOX_OPTIONS_VERSION);
			o.memory_mb = 1;
			if (sandbox_create(&none, &o, 0) != SANDBOX_E_INVAL)
				return 1;
		} else {
			break;
		}
		printf("%.3f\n", now_ms() - t);
	}
	if (sb) {
		sandbox_kill(sb, 0);
		sandbox_free(sb);
	}
	return 0;
}
