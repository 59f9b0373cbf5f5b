/* Integration tests of volumes and the files API: real VMs, real 9p
 * devices, real files on both sides. Nothing is mocked; if the image or
 * libvirt is missing these tests FAIL. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <sandbox.h>

#include "vmtest.h"

static sandbox_t *g_sb; /* volumes: /mnt/rw (g_rw), /mnt/ro (g_ro) */
static char g_rw[64], g_ro[64], g_audit[64];

/* ------------------------------------------------------------ helpers */

static void opts_default(sandbox_options_t *o)
{
	sandbox_options_init(o, SANDBOX_OPTIONS_VERSION);
	o->state_dir = vt_state_dir();
}

static sandbox_t *must_create(sandbox_options_t *o)
{
	sandbox_t *sb = NULL;
	int rc = sandbox_create(&sb, o, 0);
	ck_assert_msg(rc == 0, "sandbox_create failed: %s: %s", sandbox_strerror(rc),
		      sandbox_last_error());
	return sb;
}

/* Run a shell command; returns its exit code, stdout into out (if given). */
static int sh(sandbox_t *sb, const char *cmd, char *out, size_t cap)
{
	const char *argv[] = {"sh", "-c", cmd, NULL};
	sandbox_result_t *r = NULL;
	int rc = sandbox_exec(sb, argv, NULL, &r, 0);
	ck_assert_msg(rc == 0, "exec '%s': %s: %s", cmd, sandbox_strerror(rc),
		      sandbox_last_error());
	if (out) {
		size_t n;
		const void *p = sandbox_result_stdout(r, &n);
		if (n >= cap)
			n = cap - 1;
		if (n)
			memcpy(out, p, n);
		out[n] = '\0';
	}
	int code = sandbox_result_exit_code(r);
	sandbox_result_free(r);
	return code;
}

#define CK_OK(call)                                                                                \
	do {                                                                                       \
		int rc_ = (call);                                                                  \
		ck_assert_msg(rc_ == 0, "%s: %s: %s", #call, sandbox_strerror(rc_),                \
			      sandbox_last_error());                                               \
	} while (0)

#define CK_ERR(call, code)                                                                         \
	do {                                                                                       \
		int rc_ = (call);                                                                  \
		ck_assert_msg(rc_ == (code), "%s: expected %s, got %s: %s", #call,                 \
			      sandbox_strerror(code), sandbox_strerror(rc_),                       \
			      sandbox_last_error());                                               \
	} while (0)

static void write_host(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	chmod(path, mode);
}

static char *read_host(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	static char buf[65536];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void rm_rf(const char *path)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
	ck_assert_int_eq(system(cmd), 0);
}

static int count_events(const char *path, const char *event, const char *needle)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char line[65536], ev[128];
	snprintf(ev, sizeof ev, "\"event\":\"%s\"", event);
	int n = 0;
	while (fgets(line, sizeof line, f))
		if (strstr(line, ev) && (!needle || strstr(line, needle)))
			n++;
	fclose(f);
	return n;
}

static long status_kb(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t n = strlen(field);
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, field, n) && line[n] == ':')
			v = atol(line + n + 1);
	if (f)
		fclose(f);
	return v;
}

/* Samples the process's resident set while a transfer runs. */
struct rss_sampler {
	pthread_t t;
	volatile int stop;
	long peak_kb;
};

static void *sample_rss(void *arg)
{
	struct rss_sampler *s = arg;
	while (!s->stop) {
		long v = status_kb("VmRSS");
		if (v > s->peak_kb)
			s->peak_kb = v;
		usleep(20000);
	}
	return NULL;
}

static int sha256_file(const char *path, char out[65])
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	static unsigned char buf[1 << 20];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		EVP_DigestUpdate(c, buf, n);
	fclose(f);
	unsigned char md[32];
	unsigned int len = 0;
	EVP_DigestFinal_ex(c, md, &len);
	EVP_MD_CTX_free(c);
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
	return 0;
}

/* ------------------------------------------------------------- volumes */

START_TEST(rw_volume_writes_are_visible_at_once)
{
	char out[256], path[128];
	ck_assert_int_eq(sh(g_sb, "echo from-guest > /mnt/rw/out.txt", NULL, 0), 0);
	snprintf(path, sizeof path, "%s/out.txt", g_rw);
	char *got = read_host(path);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(got, "from-guest\n");
	snprintf(path, sizeof path, "%s/in.txt", g_rw);
	write_host(path, "from-host\n", 0644);
	ck_assert_int_eq(sh(g_sb, "cat /mnt/rw/in.txt", out, sizeof out), 0);
	ck_assert_str_eq(out, "from-host\n");
	/* the files API sees the volume like any guest path */
	CK_OK(sandbox_file_write(g_sb, "/mnt/rw/api/x.txt", "api", 3, 0600, SANDBOX_FILE_PARENTS));
	snprintf(path, sizeof path, "%s/api/x.txt", g_rw);
	got = read_host(path);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(got, "api");
}
END_TEST

START_TEST(ro_volume_resists_root_in_the_guest)
{
	char out[4096], path[128];
	ck_assert_int_eq(sh(g_sb, "cat /mnt/ro/hello.txt", out, sizeof out), 0);
	ck_assert_str_eq(out, "hello\n");
	/* plain writes, as root */
	ck_assert_int_ne(sh(g_sb, "echo x > /mnt/ro/new.txt", NULL, 0), 0);
	ck_assert_int_ne(sh(g_sb, "echo x >> /mnt/ro/hello.txt", NULL, 0), 0);
	ck_assert_int_ne(sh(g_sb, "rm -f /mnt/ro/hello.txt", NULL, 0), 0);
	ck_assert_int_ne(sh(g_sb, "chmod 777 /mnt/ro/hello.txt", NULL, 0), 0);
	ck_assert_int_ne(sh(g_sb, "mkdir /mnt/ro/d", NULL, 0), 0);
	/* undo the guest's read-only flag: the host still refuses */
	ck_assert_int_eq(sh(g_sb, "mount -o remount,rw /mnt/ro && grep ' /mnt/ro ' /proc/mounts",
			    out, sizeof out),
			 0);
	ck_assert_ptr_nonnull(strstr(out, " rw"));
	ck_assert_int_ne(sh(g_sb, "echo x > /mnt/ro/new.txt", NULL, 0), 0);
	ck_assert_int_ne(sh(g_sb, "chmod 777 /mnt/ro/hello.txt", NULL, 0), 0);
	ck_assert_int_ne(sh(g_sb, "touch /mnt/ro/hello.txt", NULL, 0), 0);
	/* unmount it and mount the device afresh, read-write: refused all the same */
	ck_assert_int_eq(sh(g_sb,
			    "umount /mnt/ro && mount -t 9p -o rw,trans=virtio,version=9p2000.L "
			    "sbxvol1 /mnt/ro && cat /mnt/ro/hello.txt",
			    out, sizeof out),
			 0);
	ck_assert_str_eq(out, "hello\n");
	ck_assert_int_ne(sh(g_sb, "echo x > /mnt/ro/new.txt", NULL, 0), 0);
	ck_assert_int_ne(sh(g_sb, "chmod 777 /mnt/ro/hello.txt", NULL, 0), 0);
	ck_assert_int_ne(sh(g_sb, "rm /mnt/ro/hello.txt", NULL, 0), 0);
	ck_assert_int_ne(sh(g_sb, "mv /mnt/ro/hello.txt /mnt/ro/moved.txt", NULL, 0), 0);
	/* the files API is refused too, with a permission error */
	CK_ERR(sandbox_file_write(g_sb, "/mnt/ro/api.txt", "x", 1, 0, 0), SANDBOX_E_PERM);
	CK_ERR(sandbox_file_remove(g_sb, "/mnt/ro/hello.txt", 0), SANDBOX_E_PERM);
	/* and the host directory is untouched */
	snprintf(path, sizeof path, "%s/hello.txt", g_ro);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 07777, 0644);
	ck_assert_str_eq(read_host(path), "hello\n");
	ck_assert_int_eq(vt_dir_entries(g_ro), 1);
}
END_TEST

START_TEST(only_named_volumes_are_visible)
{
	char out[4096];
	ck_assert_int_eq(
	    sh(g_sb, "cat /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag | tr '\\0' '\\n' | sort",
	       out, sizeof out),
	    0);
	ck_assert_str_eq(out, "sbxvol0\nsbxvol1\n");
	sandbox_options_t o;
	opts_default(&o);
	sandbox_t *plain = must_create(&o);
	ck_assert_int_eq(
	    sh(plain, "ls /sys/bus/virtio/devices/*/ | grep -c mount_tag || true", out, sizeof out),
	    0);
	ck_assert_str_eq(out, "0\n");
	ck_assert_int_ne(sh(plain, "grep -q 9p /proc/mounts", NULL, 0), 0);
	sandbox_free(plain);
}
END_TEST

/* ----------------------------------------------------------- files API */

START_TEST(write_read_stat_list)
{
	const char *text = "hello, sandbox\n";
	CK_OK(sandbox_file_write(g_sb, "/root/w/a/b/c.txt", text, strlen(text), 0640,
				 SANDBOX_FILE_PARENTS));
	void *data;
	size_t len;
	CK_OK(sandbox_file_read(g_sb, "/root/w/a/b/c.txt", &data, &len, 0, 0));
	ck_assert_uint_eq(len, strlen(text));
	ck_assert_int_eq(memcmp(data, text, len), 0);
	sandbox_buffer_free(data);
	char out[4096];
	ck_assert_int_eq(sh(g_sb, "stat -c '%a %s' /root/w/a/b/c.txt", out, sizeof out), 0);
	ck_assert_str_eq(out, "640 15\n");
	/* empty file */
	CK_OK(sandbox_file_write(g_sb, "/root/w/empty", NULL, 0, 0, 0));
	CK_OK(sandbox_file_read(g_sb, "/root/w/empty", &data, &len, 0, 0));
	ck_assert_uint_eq(len, 0);
	sandbox_buffer_free(data);
	/* overwrite truncates */
	CK_OK(sandbox_file_write(g_sb, "/root/w/a/b/c.txt", "xy", 2, 0, 0));
	CK_OK(sandbox_file_read(g_sb, "/root/w/a/b/c.txt", &data, &len, 0, 0));
	ck_assert_uint_eq(len, 2);
	sandbox_buffer_free(data);
	/* stat */
	sandbox_file_info_t *info;
	CK_OK(sandbox_file_stat(g_sb, "/root/w/a/b/c.txt", &info, 0));
	ck_assert_int_eq(info->type, SANDBOX_FILE_REGULAR);
	ck_assert_uint_eq(info->size, 2);
	ck_assert_str_eq(info->name, "/root/w/a/b/c.txt");
	ck_assert_ptr_null(info->link_target);
	sandbox_file_info_free(info, 1);
	CK_OK(sandbox_file_stat(g_sb, "/root/w/a", &info, 0));
	ck_assert_int_eq(info->type, SANDBOX_FILE_DIRECTORY);
	sandbox_file_info_free(info, 1);
	ck_assert_int_eq(sh(g_sb, "ln -sf /etc/hostname /root/w/link", NULL, 0), 0);
	CK_OK(sandbox_file_stat(g_sb, "/root/w/link", &info, SANDBOX_FILE_NOFOLLOW));
	ck_assert_int_eq(info->type, SANDBOX_FILE_SYMLINK);
	ck_assert_str_eq(info->link_target, "/etc/hostname");
	sandbox_file_info_free(info, 1);
	CK_OK(sandbox_file_stat(g_sb, "/root/w/link", &info, 0));
	ck_assert_int_eq(info->type, SANDBOX_FILE_REGULAR);
	sandbox_file_info_free(info, 1);
	/* list */
	sandbox_file_info_t *ents;
	size_t n;
	CK_OK(sandbox_file_list(g_sb, "/root/w", &ents, &n, 0));
	ck_assert_uint_eq(n, 3);
	int seen = 0;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(ents[i].name, "a"))
			seen |= ents[i].type == SANDBOX_FILE_DIRECTORY ? 1 : 0;
		if (!strcmp(ents[i].name, "empty"))
			seen |= ents[i].type == SANDBOX_FILE_REGULAR ? 2 : 0;
		if (!strcmp(ents[i].name, "link"))
			seen |= ents[i].type == SANDBOX_FILE_SYMLINK ? 4 : 0;
	}
	ck_assert_int_eq(seen, 7);
	sandbox_file_info_free(ents, n);
	/* a big listing goes through flow control */
	ck_assert_int_eq(
	    sh(g_sb, "mkdir -p /root/many && cd /root/many && seq 1 3000 | xargs touch", NULL, 0),
	    0);
	CK_OK(sandbox_file_list(g_sb, "/root/many", &ents, &n, 0));
	ck_assert_uint_eq(n, 3000);
	sandbox_file_info_free(ents, n);
}
END_TEST

START_TEST(mkdir_remove_and_error_codes)
{
	CK_OK(sandbox_file_mkdir(g_sb, "/root/m", 0700, 0));
	CK_ERR(sandbox_file_mkdir(g_sb, "/root/m", 0, 0), SANDBOX_E_EXISTS);
	CK_OK(sandbox_file_mkdir(g_sb, "/root/m", 0, SANDBOX_FILE_PARENTS));
	CK_OK(sandbox_file_mkdir(g_sb, "/root/m/x/y/z", 0, SANDBOX_FILE_PARENTS));
	CK_ERR(sandbox_file_mkdir(g_sb, "/root/nope/x", 0, 0), SANDBOX_E_NOTFOUND);
	char out[256];
	ck_assert_int_eq(sh(g_sb, "stat -c %a /root/m", out, sizeof out), 0);
	ck_assert_str_eq(out, "700\n");
	CK_OK(sandbox_file_write(g_sb, "/root/m/x/f", "1", 1, 0, 0));
	CK_ERR(sandbox_file_remove(g_sb, "/root/m", 0), SANDBOX_E_NOTEMPTY);
	CK_OK(sandbox_file_remove(g_sb, "/root/m/x/f", 0));
	CK_ERR(sandbox_file_remove(g_sb, "/root/m/x/f", 0), SANDBOX_E_NOTFOUND);
	CK_OK(sandbox_file_remove(g_sb, "/root/m", SANDBOX_FILE_RECURSIVE));
	ck_assert_int_ne(sh(g_sb, "test -e /root/m", NULL, 0), 0);
	/* error codes */
	void *data;
	size_t len;
	sandbox_file_info_t *info;
	CK_ERR(sandbox_file_read(g_sb, "/root/missing", &data, &len, 0, 0), SANDBOX_E_NOTFOUND);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "/root/missing"));
	CK_ERR(sandbox_file_read(g_sb, "/root", &data, &len, 0, 0), SANDBOX_E_ISDIR);
	CK_ERR(sandbox_file_write(g_sb, "/root", "x", 1, 0, 0), SANDBOX_E_ISDIR);
	CK_ERR(sandbox_file_write(g_sb, "/root/none/x", "x", 1, 0, 0), SANDBOX_E_NOTFOUND);
	CK_ERR(sandbox_file_write(g_sb, "/etc/hostname/x", "x", 1, 0, 0), SANDBOX_E_NOTDIR);
	CK_ERR(sandbox_file_stat(g_sb, "/root/missing", &info, 0), SANDBOX_E_NOTFOUND);
	sandbox_file_info_t *ents;
	size_t n;
	CK_ERR(sandbox_file_list(g_sb, "/etc/hostname", &ents, &n, 0), SANDBOX_E_NOTDIR);
	CK_ERR(sandbox_file_read(g_sb, "/etc/hostname", &data, &len, 3, 0), SANDBOX_E_TOOBIG);
	/* no space: a tiny tmpfs */
	ck_assert_int_eq(sh(g_sb,
			    "mkdir -p /root/small && mount -t tmpfs -o size=64k tmpfs "
			    "/root/small",
			    NULL, 0),
			 0);
	size_t big = 1 << 20;
	char *buf = calloc(1, big);
	CK_ERR(sandbox_file_write(g_sb, "/root/small/f", buf, big, 0, 0), SANDBOX_E_NOSPACE);
	free(buf);
	/* the sandbox is still fine after all those errors */
	ck_assert_int_eq(sandbox_ping(g_sb, 0), 0);
	sh(g_sb, "umount /root/small", NULL, 0);
	/* bad arguments */
	CK_ERR(sandbox_file_write(g_sb, NULL, "x", 1, 0, 0), SANDBOX_E_INVAL);
	CK_ERR(sandbox_file_write(g_sb, "", "x", 1, 0, 0), SANDBOX_E_INVAL);
	CK_ERR(sandbox_file_write(g_sb, "/root/x", "x", 1, 0, 0x100), SANDBOX_E_FLAGS);
	CK_ERR(sandbox_file_write(g_sb, "/root/x", "x", 1, 010000, 0), SANDBOX_E_INVAL);
	CK_ERR(sandbox_file_read(g_sb, "/root/x", NULL, &len, 0, 0), SANDBOX_E_INVAL);
	CK_ERR(sandbox_file_remove(g_sb, "/root/x", SANDBOX_FILE_PARENTS), SANDBOX_E_FLAGS);
	CK_ERR(sandbox_file_download(g_sb, "/root", "/tmp", 0), SANDBOX_E_EXISTS);
	CK_ERR(sandbox_file_upload(g_sb, "/nonexistent-sbx", "/root/x", 0), SANDBOX_E_NOTFOUND);
	CK_ERR(sandbox_file_stat(NULL, "/", &info, 0), SANDBOX_E_INVAL);
}
END_TEST

/* Host tree: files (one empty, one 300 KiB), a subdirectory, a symlink. */
static void make_host_tree(const char *root)
{
	char p[256];
	ck_assert_int_eq(mkdir(root, 0755), 0);
	snprintf(p, sizeof p, "%s/top.txt", root);
	write_host(p, "top\n", 0644);
	snprintf(p, sizeof p, "%s/sub", root);
	ck_assert_int_eq(mkdir(p, 0750), 0);
	snprintf(p, sizeof p, "%s/sub/empty", root);
	write_host(p, "", 0600);
	snprintf(p, sizeof p, "%s/sub/run.sh", root);
	write_host(p, "#!/bin/sh\necho ran\n", 0755);
	snprintf(p, sizeof p, "%s/sub/big.bin", root);
	FILE *f = fopen(p, "w");
	for (int i = 0; i < 300 * 1024; i++)
		fputc((int)(((unsigned)i * 7919u) & 0xffu), f);
	fclose(f);
	snprintf(p, sizeof p, "%s/link", root);
	ck_assert_int_eq(symlink("sub/run.sh", p), 0);
}

START_TEST(upload_and_download_a_tree)
{
	char src[] = "/tmp/sbx-files-src-XXXXXX", dst[128], out[4096], cmd[512];
	ck_assert_ptr_nonnull(mkdtemp(src));
	rmdir(src);
	make_host_tree(src);
	CK_OK(sandbox_file_upload(g_sb, src, "/root/up/tree", SANDBOX_FILE_PARENTS));
	ck_assert_int_eq(sh(g_sb,
			    "cd /root/up/tree && sub/run.sh && readlink link && stat -c '%a' "
			    "sub sub/empty sub/run.sh && md5sum < sub/big.bin | cut -c1-32",
			    out, sizeof out),
			 0);
	snprintf(cmd, sizeof cmd, "md5sum < %s/sub/big.bin | cut -c1-32", src);
	FILE *p = popen(cmd, "r");
	char md5[64] = "";
	ck_assert_ptr_nonnull(fgets(md5, sizeof md5, p));
	pclose(p);
	char want[4096];
	snprintf(want, sizeof want, "ran\nsub/run.sh\n750\n600\n755\n%s", md5);
	ck_assert_str_eq(out, want);
	/* a single file upload */
	snprintf(cmd, sizeof cmd, "%s/top.txt", src);
	CK_OK(sandbox_file_upload(g_sb, cmd, "/root/up/one.txt", 0));
	ck_assert_int_eq(sh(g_sb, "cat /root/up/one.txt", out, sizeof out), 0);
	ck_assert_str_eq(out, "top\n");
	/* and out again */
	snprintf(dst, sizeof dst, "%s.back", src);
	CK_OK(sandbox_file_download(g_sb, "/root/up/tree", dst, 0));
	snprintf(cmd, sizeof cmd, "diff -r --no-dereference %s %s", src, dst);
	ck_assert_int_eq(system(cmd), 0);
	char lnk[256], target[256] = "";
	snprintf(lnk, sizeof lnk, "%s/link", dst);
	ck_assert_int_gt(readlink(lnk, target, sizeof target - 1), 0);
	ck_assert_str_eq(target, "sub/run.sh");
	snprintf(lnk, sizeof lnk, "%s/sub/run.sh", dst);
	struct stat st;
	ck_assert_int_eq(stat(lnk, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0755);
	/* a single file out */
	snprintf(lnk, sizeof lnk, "%s.one", src);
	CK_OK(sandbox_file_download(g_sb, "/root/up/one.txt", lnk, 0));
	ck_assert_str_eq(read_host(lnk), "top\n");
	unlink(lnk);
	/* a tree that fails half-way (a file QEMU's user cannot read on the
	 * volume) leaves nothing behind */
	char part[128];
	snprintf(part, sizeof part, "%s/partial", g_rw);
	ck_assert_int_eq(mkdir(part, 0755), 0);
	snprintf(part, sizeof part, "%s/partial/a.txt", g_rw);
	write_host(part, "readable\n", 0644);
	snprintf(part, sizeof part, "%s/partial/b-secret", g_rw);
	write_host(part, "root only\n", 0600);
	CK_ERR(sandbox_file_download(g_sb, "/mnt/rw/partial", lnk, 0), SANDBOX_E_PERM);
	ck_assert_int_ne(access(lnk, F_OK), 0);
	snprintf(part, sizeof part, "%s/partial", g_rw);
	rm_rf(part);
	/* a missing guest path leaves nothing on the host */
	CK_ERR(sandbox_file_download(g_sb, "/root/up/missing", lnk, 0), SANDBOX_E_NOTFOUND);
	ck_assert_int_ne(access(lnk, F_OK), 0);
	rm_rf(src);
	rm_rf(dst);
}
END_TEST

START_TEST(download_never_follows_guest_symlinks)
{
	char out[4096], dst[] = "/tmp/sbx-files-evil-XXXXXX", p[256];
	ck_assert_ptr_nonnull(mkdtemp(dst));
	ck_assert_int_eq(sh(g_sb,
			    "mkdir -p /root/evil && cd /root/evil && ln -s /etc/shadow shadow && "
			    "ln -s /etc etc && ln -s ../../../../../etc up && echo guest > plain",
			    NULL, 0),
			 0);
	struct stat before;
	ck_assert_int_eq(stat("/etc/shadow", &before), 0);
	snprintf(p, sizeof p, "%s/tree", dst);
	CK_OK(sandbox_file_download(g_sb, "/root/evil", p, 0));
	const char *links[][2] = {
	    {"shadow", "/etc/shadow"}, {"etc", "/etc"}, {"up", "../../../../../etc"}};
	for (int i = 0; i < 3; i++) {
		char lp[300], target[256] = "";
		struct stat st;
		snprintf(lp, sizeof lp, "%s/tree/%s", dst, links[i][0]);
		ck_assert_int_eq(lstat(lp, &st), 0);
		ck_assert_msg(S_ISLNK(st.st_mode), "%s is not a symlink", lp);
		ck_assert_int_gt(readlink(lp, target, sizeof target - 1), 0);
		ck_assert_str_eq(target, links[i][1]);
	}
	/* downloading the symlink itself reads the guest's file, never the host's */
	snprintf(p, sizeof p, "%s/shadow-copy", dst);
	CK_OK(sandbox_file_download(g_sb, "/root/evil/shadow", p, 0));
	ck_assert_int_eq(sh(g_sb, "cat /etc/shadow", out, sizeof out), 0);
	ck_assert_str_eq(read_host(p), out);
	/* the destination itself may not be a symlink the caller did not expect */
	snprintf(p, sizeof p, "%s/trap", dst);
	ck_assert_int_eq(symlink("/etc/passwd", p), 0);
	CK_ERR(sandbox_file_download(g_sb, "/root/evil/plain", p, 0), SANDBOX_E_EXISTS);
	struct stat after;
	ck_assert_int_eq(stat("/etc/shadow", &after), 0);
	ck_assert_int_eq(after.st_mtime, before.st_mtime);
	ck_assert_int_eq(after.st_size, before.st_size);
	rm_rf(dst);
}
END_TEST

START_TEST(one_gib_round_trip_with_flat_memory)
{
	char src[] = "/var/tmp/sbx-files-big-XXXXXX", back[128], sha_src[65] = "",
	     sha_back[65] = "";
	char out[256] = "", cmd[256];
	int fd = mkstemp(src);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(back, sizeof back, "%s.back", src);
	snprintf(cmd, sizeof cmd, "head -c 1073741824 /dev/urandom > %s", src);
	int made = system(cmd) == 0 && sha256_file(src, sha_src) == 0;
	struct rss_sampler s = {.peak_kb = status_kb("VmRSS")};
	long start_kb = s.peak_kb;
	pthread_create(&s.t, NULL, sample_rss, &s);
	/* The guest's own disk has less than 1 GiB free: the file goes to the
	 * read-write volume (over the channel, written by the agent). */
	int up = made ? sandbox_file_upload(g_sb, src, "/mnt/rw/big.bin", 0) : -1;
	char uperr[512];
	snprintf(uperr, sizeof uperr, "%s", sandbox_last_error());
	int guest_sum =
	    !up && sh(g_sb, "sha256sum /mnt/rw/big.bin | cut -c1-64", out, sizeof out) == 0;
	int down = !up ? sandbox_file_download(g_sb, "/mnt/rw/big.bin", back, 0) : -1;
	char downerr[512];
	snprintf(downerr, sizeof downerr, "%s", sandbox_last_error());
	s.stop = 1;
	pthread_join(s.t, NULL);
	int summed = !down && sha256_file(back, sha_back) == 0;
	/* 3 GiB of files: removed before any assertion can end the test */
	unlink(src);
	unlink(back);
	sandbox_file_remove(g_sb, "/mnt/rw/big.bin", 0);
	ck_assert_msg(made, "cannot make the 1 GiB source file");
	ck_assert_msg(up == 0, "upload: %s", uperr);
	ck_assert_msg(guest_sum, "sha256sum in the guest failed");
	ck_assert_msg(down == 0, "download: %s", downerr);
	ck_assert(summed);
	out[64] = '\0';
	ck_assert_str_eq(out, sha_src);
	ck_assert_str_eq(sha_back, sha_src);
	long growth = s.peak_kb - start_kb;
	fprintf(stderr, "1 GiB round trip: RSS %ld KiB before, peak %ld KiB (+%ld KiB)\n", start_kb,
		s.peak_kb, growth);
	ck_assert_msg(growth < 32 * 1024, "host memory grew by %ld KiB during a 1 GiB round trip",
		      growth);
}
END_TEST

struct xfer_job {
	int n;
	int ok;
	char err[256];
};

/* Write 8 MiB of a pattern, read it back, compare. */
static void *xfer_thread(void *arg)
{
	struct xfer_job *j = arg;
	size_t len = 8u << 20;
	uint8_t *buf = malloc(len);
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 31 + (size_t)j->n * 7 + i / 4096);
	char path[64];
	snprintf(path, sizeof path, "/root/conc-%d.bin", j->n);
	void *back = NULL;
	size_t blen = 0;
	int rc = sandbox_file_write(g_sb, path, buf, len, 0, 0);
	if (!rc)
		rc = sandbox_file_read(g_sb, path, &back, &blen, 0, 0);
	j->ok = !rc && blen == len && !memcmp(buf, back, len);
	snprintf(j->err, sizeof j->err, "%s: %s", sandbox_strerror(rc), sandbox_last_error());
	sandbox_buffer_free(back);
	free(buf);
	return NULL;
}

START_TEST(concurrent_transfers_and_commands)
{
	pthread_t t[4];
	struct xfer_job jobs[4];
	for (int i = 0; i < 4; i++) {
		jobs[i] = (struct xfer_job){.n = i};
		pthread_create(&t[i], NULL, xfer_thread, &jobs[i]);
	}
	char out[64];
	for (int k = 0; k < 5; k++) {
		ck_assert_int_eq(sh(g_sb, "echo alive", out, sizeof out), 0);
		ck_assert_str_eq(out, "alive\n");
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(jobs[i].ok, "transfer %d failed: %s", i, jobs[i].err);
	}
	CK_OK(sandbox_file_remove(g_sb, "/root/conc-0.bin", 0));
	ck_assert_int_eq(sh(g_sb, "rm -f /root/conc-*.bin", NULL, 0), 0);
}
END_TEST

START_TEST(audit_records_files_and_volumes)
{
	ck_assert_int_eq(count_events(g_audit, "sandbox.create", "\"guest_path\":\"/mnt/ro\""), 1);
	ck_assert_int_eq(count_events(g_audit, "sandbox.create", "\"readonly\":true"), 1);
	ck_assert_int_eq(count_events(g_audit, "sandbox.create", "\"readonly\":false"), 1);
	CK_OK(sandbox_file_write(g_sb, "/root/audited", "12345", 5, 0, 0));
	void *d;
	size_t n;
	CK_OK(sandbox_file_read(g_sb, "/root/audited", &d, &n, 0, 0));
	sandbox_buffer_free(d);
	char dst[] = "/tmp/sbx-files-aud-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dst));
	char p[128];
	snprintf(p, sizeof p, "%s/x", dst);
	CK_OK(sandbox_file_download(g_sb, "/root/audited", p, 0));
	CK_OK(sandbox_file_upload(g_sb, p, "/root/audited2", 0));
	ck_assert_int_ge(
	    count_events(g_audit, "file.write", "\"path\":\"/root/audited\",\"size\":5"), 1);
	ck_assert_int_ge(
	    count_events(g_audit, "file.read", "\"path\":\"/root/audited\",\"size\":5"), 1);
	ck_assert_int_ge(
	    count_events(g_audit, "file.download", "\"path\":\"/root/audited\",\"host_path\""), 1);
	ck_assert_int_ge(count_events(g_audit, "file.upload", "\"path\":\"/root/audited2\""), 1);
	ck_assert_int_ge(count_events(g_audit, "file.upload", "\"size\":5"), 1);
	rm_rf(dst);
}
END_TEST

/* ------------------------------------------------------------- sharing */

START_TEST(two_sandboxes_share_a_ro_volume)
{
	sandbox_volume_t v[] = {{g_ro, "/data", SANDBOX_VOLUME_READONLY}};
	sandbox_options_t o;
	opts_default(&o);
	o.volumes = v;
	o.volumes_count = 1;
	sandbox_t *a = must_create(&o);
	sandbox_t *b = must_create(&o);
	char out[256];
	ck_assert_int_eq(sh(a, "cat /data/hello.txt", out, sizeof out), 0);
	ck_assert_str_eq(out, "hello\n");
	ck_assert_int_eq(sh(b, "cat /data/hello.txt", out, sizeof out), 0);
	ck_assert_str_eq(out, "hello\n");
	ck_assert_int_ne(sh(b, "echo x > /data/b.txt", NULL, 0), 0);
	sandbox_free(a);
	/* b keeps working after a is gone */
	ck_assert_int_eq(sh(b, "cat /data/hello.txt", out, sizeof out), 0);
	ck_assert_str_eq(out, "hello\n");
	sandbox_free(b);
}
END_TEST

START_TEST(rw_volume_data_survives_the_sandbox)
{
	char dir[] = "/tmp/sbx-files-keep-XXXXXX", p[128];
	ck_assert_ptr_nonnull(mkdtemp(dir));
	chmod(dir, 0777);
	sandbox_volume_t v[] = {{dir, "/work/out", 0}};
	sandbox_options_t o;
	opts_default(&o);
	o.volumes = v;
	o.volumes_count = 1;
	sandbox_t *sb = must_create(&o);
	ck_assert_int_eq(
	    sh(sb, "mkdir /work/out/res && seq 1 5 > /work/out/res/n.txt && sync", NULL, 0), 0);
	char id[40];
	snprintf(id, sizeof id, "%s", sandbox_id(sb));
	sandbox_kill(sb, 0);
	CK_ERR(sandbox_file_write(sb, "/work/out/late", "x", 1, 0, 0), SANDBOX_E_DEAD);
	sandbox_free(sb);
	ck_assert_int_eq(vt_qemu_pid(id), 0);
	snprintf(p, sizeof p, "%s/res/n.txt", dir);
	char *got = read_host(p);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(got, "1\n2\n3\n4\n5\n");
	rm_rf(dir);
}
END_TEST

START_TEST(bad_volumes_leave_nothing)
{
	char sbdir[256];
	snprintf(sbdir, sizeof sbdir, "%s/sandboxes", vt_state_dir());
	int before = vt_dir_entries(sbdir), fds = vt_count_fds(), threads = vt_count_threads();
	static const struct {
		sandbox_volume_t v;
		int code;
		const char *msg;
	} bad[] = {
	    {{"/nonexistent-sbx-vol", "/data", 0}, SANDBOX_E_NOTFOUND, "does not exist"},
	    {{"/etc/hostname", "/data", 0}, SANDBOX_E_NOTDIR, "not a directory"},
	    {{"/tmp", "data", 0}, SANDBOX_E_INVAL, "absolute"},
	    {{"/tmp", "/", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/etc", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/proc", 0}, SANDBOX_E_INVAL, "system path"},
	    {{"/tmp", "/usr", 0}, SANDBOX_E_INVAL, "system path"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		sandbox_options_t o;
		opts_default(&o);
		o.volumes = &bad[i].v;
		o.volumes_count = 1;
		sandbox_t *sb = (sandbox_t *)1;
		CK_ERR(sandbox_create(&sb, &o, 0), bad[i].code);
		ck_assert_msg(strstr(sandbox_last_error(), bad[i].msg), "case %zu: %s", i,
			      sandbox_last_error());
		ck_assert_ptr_null(sb);
	}
	sandbox_volume_t dup[] = {{"/tmp", "/data", 0}, {"/var/tmp", "/data", 0}};
	sandbox_volume_t many[17];
	char names[17][16];
	for (int i = 0; i < 17; i++) {
		snprintf(names[i], sizeof names[i], "/v%d", i);
		many[i] = (sandbox_volume_t){"/tmp", names[i], 0};
	}
	sandbox_options_t o;
	opts_default(&o);
	sandbox_t *sb;
	o.volumes = dup;
	o.volumes_count = 2;
	CK_ERR(sandbox_create(&sb, &o, 0), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "already used"));
	o.volumes = many;
	o.volumes_count = 17;
	CK_ERR(sandbox_create(&sb, &o, 0), SANDBOX_E_INVAL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "too many volumes"));
	/* a directory QEMU's user cannot read: the mount fails, the VM goes */
	char locked[] = "/tmp/sbx-files-locked-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(locked));
	chmod(locked, 0700);
	sandbox_volume_t lv[] = {{locked, "/data", 0}};
	o.volumes = lv;
	o.volumes_count = 1;
	int rc1 = sandbox_create(&sb, &o, 0);
	char err1[512];
	snprintf(err1, sizeof err1, "%s", sandbox_last_error());
	chmod(locked, 0755); /* readable, not writable: fine read-only, not read-write */
	int rc2 = sandbox_create(&sb, &o, 0);
	char err2[512];
	snprintf(err2, sizeof err2, "%s", sandbox_last_error());
	rmdir(locked);
	ck_assert_msg(rc1 == SANDBOX_E_PERM && strstr(err1, "QEMU user"), "%d %s", rc1, err1);
	ck_assert_msg(rc2 == SANDBOX_E_PERM && strstr(err2, "writable"), "%d %s", rc2, err2);
	ck_assert_int_eq(vt_dir_entries(sbdir), before);
	ck_assert_int_eq(vt_count_fds(), fds);
	ck_assert_int_eq(vt_count_threads(), threads);
}
END_TEST

static Suite *files_suite(void)
{
	Suite *s = suite_create("files");
	TCase *v = tcase_create("volumes");
	tcase_set_timeout(v, 600);
	tcase_add_test(v, rw_volume_writes_are_visible_at_once);
	tcase_add_test(v, ro_volume_resists_root_in_the_guest);
	tcase_add_test(v, only_named_volumes_are_visible);
	suite_add_tcase(s, v);
	TCase *f = tcase_create("files");
	tcase_set_timeout(f, 1800);
	tcase_add_test(f, write_read_stat_list);
	tcase_add_test(f, mkdir_remove_and_error_codes);
	tcase_add_test(f, upload_and_download_a_tree);
	tcase_add_test(f, download_never_follows_guest_symlinks);
	tcase_add_test(f, concurrent_transfers_and_commands);
	tcase_add_test(f, audit_records_files_and_volumes);
	tcase_add_test(f, one_gib_round_trip_with_flat_memory);
	suite_add_tcase(s, f);
	TCase *sh_ = tcase_create("sharing");
	tcase_set_timeout(sh_, 900);
	tcase_add_test(sh_, two_sandboxes_share_a_ro_volume);
	tcase_add_test(sh_, rw_volume_data_survives_the_sandbox);
	tcase_add_test(sh_, bad_volumes_leave_nothing);
	suite_add_tcase(s, sh_);
	return s;
}

static void setup_volumes(void)
{
	snprintf(g_rw, sizeof g_rw, "/var/tmp/sbx-files-rw-XXXXXX");
	snprintf(g_ro, sizeof g_ro, "/var/tmp/sbx-files-ro-XXXXXX");
	if (!mkdtemp(g_rw) || !mkdtemp(g_ro)) {
		perror("mkdtemp");
		exit(EXIT_FAILURE);
	}
	/* QEMU runs as its own unprivileged user: it must be able to write */
	chmod(g_rw, 0777);
	chmod(g_ro, 0755);
	char p[128];
	snprintf(p, sizeof p, "%s/hello.txt", g_ro);
	FILE *f = fopen(p, "w");
	fputs("hello\n", f);
	fclose(f);
	chmod(p, 0644);
}

int main(void)
{
	snprintf(g_audit, sizeof g_audit, "/tmp/sbx-check-files-%d.jsonl", (int)getpid());
	setup_volumes();
	sandbox_volume_t vols[] = {{g_rw, "/mnt/rw", 0},
				   {g_ro, "/mnt/ro", SANDBOX_VOLUME_READONLY}};
	sandbox_options_t o;
	opts_default(&o);
	o.volumes = vols;
	o.volumes_count = 2;
	o.audit_log = g_audit;
	int rc = sandbox_create(&g_sb, &o, 0);
	if (rc) {
		fprintf(stderr, "FAIL: cannot create the test sandbox with volumes: %s: %s\n",
			sandbox_strerror(rc), sandbox_last_error());
		fprintf(stderr, "0 passed, 1 failed\n");
		return EXIT_FAILURE;
	}
	SRunner *sr = srunner_create(files_suite());
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_VERBOSE);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	sandbox_free(g_sb);
	unlink(g_audit);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", g_rw, g_ro);
	if (system(cmd) != 0)
		failed++;
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
