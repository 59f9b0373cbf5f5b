/* Helpers shared by the integration tests (real VMs). */
#ifndef SBX_VMTEST_H
#define SBX_VMTEST_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* State directory for this test run: $SANDBOX_TEST_STATE_DIR, else a
 * short fixed path (UNIX socket paths are limited to 108 bytes). */
static inline const char *vt_state_dir(void)
{
	const char *e = getenv("SANDBOX_TEST_STATE_DIR");
	return e && *e ? e : "/var/lib/libsandbox-test";
}

/* Pid of the QEMU process running domain sbx-<id>, or 0. */
static inline int vt_qemu_pid(const char *id)
{
	char needle[160];
	snprintf(needle, sizeof needle, "guest=sbx-%s", id);
	DIR *d = opendir("/proc");
	struct dirent *de;
	int found = 0;
	while (d && (de = readdir(d)) && !found) {
		int pid = atoi(de->d_name);
		if (pid <= 0)
			continue;
		char path[64], buf[4096];
		snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		for (size_t i = 0; i < n; i++)
			if (!buf[i])
				buf[i] = ' ';
		buf[n] = '\0';
		if (strstr(buf, needle))
			found = pid;
	}
	if (d)
		closedir(d);
	return found;
}

/* Number of entries in a directory (-1 if it cannot be opened). */
static inline int vt_dir_entries(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static inline int vt_count_threads(void)
{
	return vt_dir_entries("/proc/self/task");
}

static inline int vt_count_fds(void)
{
	return vt_dir_entries("/proc/self/fd");
}

#endif
