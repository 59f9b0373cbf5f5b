/* quickstart: boot a sandbox, run Python in it, print what it printed.
 *
 *   cc quickstart.c $(pkg-config --cflags --libs libsandbox) -o quickstart
 */
#include <sandbox.h>
#include <stdio.h>

int main(void)
{
	sandbox_options_t opts;
	sandbox_options_init(&opts, SANDBOX_OPTIONS_VERSION);
	const sandbox_kv_t meta[] = {{"owner", "quickstart"}};
	opts.metadata = meta;
	opts.metadata_count = 1;
	static const char *const no_net[] = {NULL}; /* an empty allowlist: no network */
	opts.allow_net = no_net;

	sandbox_t *sb;
	int rc = sandbox_create(&sb, &opts, 0);
	if (rc < 0) {
		fprintf(stderr, "sandbox_create: %s: %s\n", sandbox_strerror(rc),
			sandbox_last_error());
		return 1;
	}
	printf("sandbox %s is up\n", sandbox_id(sb));

	const char *argv[] = {
	    "python3", "-c",
	    "import platform, sys\n"
	    "print(f'hello from Python {platform.python_version()} in {platform.node()}')\n"
	    "print('sum of squares 1..100 =', sum(i * i for i in range(1, 101)))\n",
	    NULL};
	sandbox_result_t *res;
	rc = sandbox_exec(sb, argv, NULL, &res, 0);
	if (rc < 0) {
		fprintf(stderr, "sandbox_exec: %s: %s\n", sandbox_strerror(rc),
			sandbox_last_error());
		sandbox_free(sb);
		return 1;
	}
	size_t len;
	const char *out = sandbox_result_stdout(res, &len);
	fwrite(out, 1, len, stdout);
	int code = sandbox_result_exit_code(res);
	printf("exit code %d\n", code);
	sandbox_result_free(res);
	sandbox_kill(sb, 0);
	sandbox_free(sb);
	return code == 0 ? 0 : 1;
}
