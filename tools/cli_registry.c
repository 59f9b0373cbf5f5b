/* Registry of sandboxes started by `sandbox run`, for `sandbox list` and
 * `sandbox kill`. The library's sandbox_list() covers only the calling
 * process and a state directory belongs to one process at a time, so the
 * tool keeps its own record: one key=value file per sandbox, written
 * atomically, removed when `sandbox run` ends. A record whose process is
 * gone (crash, SIGKILL) is stale and removed by the next reader. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

const char *sbx_cli_run_dir(void)
{
	static char dir[4096];
	const char *env = getenv("SANDBOX_RUN_DIR");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	if (env && env[0])
		snprintf(dir, sizeof(dir), "%s", env);
	else if (geteuid() == 0)
		snprintf(dir, sizeof(dir), "/run/libsandbox-cli");
	else if (xdg && xdg[0])
		snprintf(dir, sizeof(dir), "%s/libsandbox-cli", xdg);
	else
		snprintf(dir, sizeof(dir), "/tmp/libsandbox-cli-%u", (unsigned)geteuid());
	return dir;
}

/* Record ids are sandbox ids: hex only, so they are safe file names. */
static int id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
	return 1;
}

static void one_line(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
}

int sbx_cli_record_write(const struct sbx_cli_record *r)
{
	const char *dir = sbx_cli_run_dir();
	if (!id_valid(r->id) || (mkdir(dir, 0700) < 0 && errno != EEXIST))
		return -1;
	char path[4200], tmp[4300];
	snprintf(path, sizeof(path), "%s/%s", dir, r->id);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -1;
	struct sbx_cli_record c = *r;
	one_line(c.meta);
	one_line(c.command);
	fprintf(f, "pid=%ld\nstarted=%lld\nmeta=%s\ncommand=%s\n", (long)c.pid, c.started, c.meta,
		c.command);
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

void sbx_cli_record_remove(const char *id)
{
	if (!id_valid(id))
		return;
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", sbx_cli_run_dir(), id);
	unlink(path);
}

/* Truncating copy (snprintf would warn about the truncation we want). */
static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static int record_read(const char *id, struct sbx_cli_record *r)
{
	char path[4200], line[2048];
	snprintf(path, sizeof(path), "%s/%s", sbx_cli_run_dir(), id);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	memset(r, 0, sizeof(*r));
	copy_str(r->id, sizeof(r->id), id);
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (!strncmp(line, "pid=", 4))
			r->pid = (pid_t)atol(line + 4);
		else if (!strncmp(line, "started=", 8))
			r->started = atoll(line + 8);
		else if (!strncmp(line, "meta=", 5))
			copy_str(r->meta, sizeof(r->meta), line + 5);
		else if (!strncmp(line, "command=", 8))
			copy_str(r->command, sizeof(r->command), line + 8);
	}
	fclose(f);
	return r->pid > 0 ? 0 : -1;
}

/* Alive and still a `sandbox` process (not a recycled pid). */
static int owner_alive(pid_t pid)
{
	if (kill(pid, 0) < 0 && errno != EPERM)
		return 0;
	char path[64], comm[64] = "";
	snprintf(path, sizeof(path), "/proc/%ld/comm", (long)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	return !strcmp(comm, "sandbox") || !strcmp(comm, "lt-sandbox");
}

int sbx_cli_record_each(int (*fn)(const struct sbx_cli_record *r, void *ud), void *ud)
{
	DIR *d = opendir(sbx_cli_run_dir());
	if (!d)
		return errno == ENOENT ? 0 : -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		struct sbx_cli_record r;
		if (!id_valid(e->d_name) || record_read(e->d_name, &r) < 0)
			continue;
		if (!owner_alive(r.pid)) {
			sbx_cli_record_remove(r.id);
			continue;
		}
		n++;
		if (fn(&r, ud))
			break;
	}
	closedir(d);
	return n;
}
