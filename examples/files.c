/* files: give a sandbox a project directory read-only and an output
 * directory read-write, put a script in, run it, take a result out.
 *
 *   cc files.c $(pkg-config --cflags --libs libsandbox) -o files
 *   ./files PROJECT_DIR OUT_DIR      (both readable by libvirt-qemu, OUT_DIR
 *                                     writable by it; OUT_DIR/report.txt
 *                                     must not exist)
 */
#include <sandbox.h>
#include <stdio.h>
#include <string.h>

static int fail(const char *what, int rc)
{
	fprintf(stderr, "%s: %s: %s\n", what, sandbox_strerror(rc), sandbox_last_error());
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s PROJECT_DIR OUT_DIR\n", argv[0]);
		return 2;
	}
	sandbox_volume_t vols[] = {
	    {argv[1], "/project", SANDBOX_VOLUME_READONLY}, /* root in the guest cannot write */
	    {argv[2], "/out", 0},			    /* writes land on the host at once */
	};
	sandbox_options_t opts;
	sandbox_options_init(&opts, SANDBOX_OPTIONS_VERSION);
	opts.volumes = vols;
	opts.volumes_count = 2;
	sandbox_t *sb;
	int rc = sandbox_create(&sb, &opts, 0);
	if (rc < 0)
		return fail("sandbox_create", rc);

	/* a script in, through the files API */
	const char *script = "import os\n"
			     "n = sum(len(f) for _, _, f in os.walk('/project'))\n"
			     "open('/out/count.txt', 'w').write(f'{n} files\\n')\n"
			     "open('/root/report.txt', 'w').write('done\\n')\n";
	rc = sandbox_file_write(sb, "/root/job/count.py", script, strlen(script), 0644,
				SANDBOX_FILE_PARENTS);
	if (rc < 0)
		return sandbox_free(sb), fail("sandbox_file_write", rc);

	const char *cmd[] = {"python3", "/root/job/count.py", NULL};
	sandbox_result_t *res;
	rc = sandbox_exec(sb, cmd, NULL, &res, 0);
	if (rc < 0)
		return sandbox_free(sb), fail("sandbox_exec", rc);
	printf("script exited with %d\n", sandbox_result_exit_code(res));
	sandbox_result_free(res);

	/* a result out: downloads never follow guest symlinks on the host */
	char dst[4096];
	snprintf(dst, sizeof dst, "%s/report.txt", argv[2]);
	rc = sandbox_file_download(sb, "/root/report.txt", dst, 0);
	if (rc < 0)
		return sandbox_free(sb), fail("sandbox_file_download", rc);
	printf("wrote %s/count.txt (from the volume) and %s\n", argv[2], dst);
	sandbox_free(sb);
	return 0;
}
