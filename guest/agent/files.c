/* File streams, guest side. Incoming data (PUT) is written as each frame
 * arrives and its credit returned; outgoing trees (GET, LIST) are walked
 * step by step from the main loop, as far as credit and the port allow. */
#define _GNU_SOURCE
#include "files.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEPTH_MAX 256
#define CLOSED_RING 256
#define WINDOW_BATCH (64u * 1024u)
/* Credit needed before starting another entry: its largest encoding. */
#define ENTRY_MAX (40u + 2u * SBX_FILE_PATH_MAX + 16u)
#define ENTRY_COST (ENTRY_MAX + SBX_FILE_FRAME_COST)

struct fstream {
	int used;
	uint32_t stream;
	uint32_t op, flags;
	char root[SBX_FILE_PATH_MAX + 1];
	/* PUT */
	int got_root;
	int wfd;
	uint32_t unacked;
	/* GET / LIST: a walk with one open directory per level */
	uint64_t credit;
	int started;
	int rfd; /* file whose data is being sent */
	DIR *dirs[DEPTH_MAX];
	size_t rel_len[DEPTH_MAX]; /* length of rel at that level */
	int depth;
	char rel[SBX_FILE_PATH_MAX + 1];
};

static struct fstream g_fs[FILES_MAX];
static uint32_t g_closed[CLOSED_RING];
static size_t g_closed_n, g_closed_pos;

static struct fstream *find(uint32_t stream)
{
	for (size_t i = 0; i < FILES_MAX; i++)
		if (g_fs[i].used && g_fs[i].stream == stream)
			return &g_fs[i];
	return NULL;
}

static int recently_closed(uint32_t stream)
{
	for (size_t i = 0; i < g_closed_n; i++)
		if (g_closed[i] == stream)
			return 1;
	return 0;
}

static void close_stream(struct fstream *f)
{
	if (f->wfd >= 0)
		close(f->wfd);
	if (f->rfd >= 0)
		close(f->rfd);
	for (int i = 0; i < f->depth; i++)
		closedir(f->dirs[i]);
	g_closed[g_closed_pos] = f->stream;
	g_closed_pos = (g_closed_pos + 1) % CLOSED_RING;
	if (g_closed_n < CLOSED_RING)
		g_closed_n++;
	f->used = 0;
}

static void fail(struct port *p, struct fstream *f, int err, const char *what)
{
	port_send_error(p, f->stream, err, "%s: %s", what, strerror(err));
	close_stream(f);
}

static void finish(struct port *p, struct fstream *f)
{
	port_send(p, SBX_T_FILE_END, f->stream, NULL, 0);
	close_stream(f);
}

void files_abort_all(void)
{
	for (size_t i = 0; i < FILES_MAX; i++)
		if (g_fs[i].used)
			close_stream(&g_fs[i]);
	g_closed_n = g_closed_pos = 0;
}

int files_owns(const struct sbx_frame_hdr *h)
{
	if (h->type >= SBX_T_FILE_OP && h->type <= SBX_T_FILE_CANCEL)
		return 1;
	return find(h->stream) || recently_closed(h->stream);
}

/* ---- helpers */

static int mkdirs(const char *path, mode_t mode)
{
	char tmp[SBX_FILE_PATH_MAX + 1];
	snprintf(tmp, sizeof tmp, "%s", path);
	for (char *s = tmp + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	if (mkdir(tmp, mode) != 0) {
		struct stat st;
		if (errno != EEXIST || stat(tmp, &st) != 0)
			return -1;
		if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			return -1;
		}
	}
	return 0;
}

static int mkparents(const char *path)
{
	char tmp[SBX_FILE_PATH_MAX + 1];
	snprintf(tmp, sizeof tmp, "%s", path);
	char *slash = strrchr(tmp, '/');
	if (!slash || slash == tmp)
		return 0;
	*slash = '\0';
	return mkdirs(tmp, 0755);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) != 0 ? -1 : 0;
}

static int remove_path(const char *path, int recursive)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode))
		return unlink(path);
	if (!recursive)
		return rmdir(path);
	return nftw(path, rm_one, 64, FTW_DEPTH | FTW_PHYS);
}

static void fill_entry(struct sbx_file_entry *e, const struct stat *st)
{
	e->type = S_ISREG(st->st_mode)	 ? SBX_FT_FILE
		  : S_ISDIR(st->st_mode) ? SBX_FT_DIR
		  : S_ISLNK(st->st_mode) ? SBX_FT_SYMLINK
					 : SBX_FT_OTHER;
	e->mode = st->st_mode & 07777;
	e->size = (uint64_t)st->st_size;
	e->mtime = st->st_mtime;
	e->uid = st->st_uid;
	e->gid = st->st_gid;
}

/* Encode and queue one entry (credit already checked). */
static int send_entry(struct port *p, struct fstream *f, const struct stat *st, const char *name,
		      int dfd, const char *lname)
{
	struct sbx_file_entry e = {0};
	char target[SBX_FILE_PATH_MAX + 1];
	fill_entry(&e, st);
	e.name = name;
	e.name_len = (uint32_t)strlen(name);
	e.target = "";
	if (e.type == SBX_FT_SYMLINK) {
		ssize_t n = readlinkat(dfd, lname, target, sizeof target - 1);
		if (n <= 0)
			return -1;
		target[n] = '\0';
		e.target = target;
		e.target_len = (uint32_t)n;
	}
	uint8_t *dst = port_data_reserve(p, ENTRY_MAX);
	if (!dst) {
		errno = ENOMEM;
		return -1;
	}
	size_t n = sbx_file_entry_encode(dst, ENTRY_MAX, &e);
	if (!n) {
		errno = ENAMETOOLONG;
		return -1;
	}
	port_data_commit(p, SBX_T_FILE_ENTRY, f->stream, n);
	f->credit -= n + SBX_FILE_FRAME_COST;
	return 0;
}

/* ---- mount */

static int modules_loaded;

static int load_9p(void)
{
	if (modules_loaded)
		return 0;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execl("/sbin/modprobe", "modprobe", "-q", "-a", "9pnet_virtio", "9p", (char *)NULL);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		log_msg("modprobe 9p failed (status %d)", status);
		errno = ENODEV;
		return -1;
	}
	modules_loaded = 1;
	return 0;
}

/* Read-only is enforced by QEMU (the host); MS_RDONLY only makes the
 * guest fail early with EROFS instead of on the host's refusal. */
static int mount_volume(const char *tag, const char *path, int ro)
{
	if (load_9p() != 0 || mkdirs(path, 0755) != 0)
		return -1;
	unsigned long fl = MS_NODEV | (ro ? MS_RDONLY : 0);
	return mount(tag, path, "9p", fl, "trans=virtio,version=9p2000.L,msize=512000");
}

/* ---- PUT: entries and data from the host */

static int rel_ok(const char *s, uint32_t n)
{
	if (n == 0 || s[0] == '/' || s[n - 1] == '/')
		return 0;
	for (uint32_t i = 0; i < n;) {
		uint32_t j = i;
		while (j < n && s[j] != '/')
			j++;
		if (j == i || (j - i == 1 && s[i] == '.') ||
		    (j - i == 2 && s[i] == '.' && s[i + 1] == '.'))
			return 0;
		i = j + 1;
	}
	return 1;
}

static void return_credit(struct port *p, struct fstream *f, size_t len)
{
	f->unacked += (uint32_t)len + SBX_FILE_FRAME_COST;
	if (f->unacked >= WINDOW_BATCH) {
		uint8_t b[4] = {(uint8_t)f->unacked, (uint8_t)(f->unacked >> 8),
				(uint8_t)(f->unacked >> 16), (uint8_t)(f->unacked >> 24)};
		port_send(p, SBX_T_WINDOW, f->stream, b, 4);
		f->unacked = 0;
	}
}

static int put_create(struct fstream *f, const struct sbx_file_entry *e, const char *path)
{
	if (e->type == SBX_FT_FILE) {
		/* O_NONBLOCK: a fifo at the path fails (ENXIO) instead of
		 * blocking the agent, which serves everything from one thread */
		f->wfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_CLOEXEC, e->mode);
		if (f->wfd < 0 || fchmod(f->wfd, e->mode) != 0)
			return -1;
		return 0;
	}
	if (e->type == SBX_FT_DIR) {
		if (mkdirs(path, e->mode) != 0)
			return -1;
		return chmod(path, e->mode);
	}
	if (e->type == SBX_FT_SYMLINK) {
		char target[SBX_FILE_PATH_MAX + 1];
		memcpy(target, e->target, e->target_len);
		target[e->target_len] = '\0';
		struct stat st;
		if (lstat(path, &st) == 0 && !S_ISDIR(st.st_mode))
			unlink(path);
		return symlink(target, path);
	}
	errno = EINVAL;
	return -1;
}

static void put_entry(struct port *p, struct fstream *f, const uint8_t *pl, uint32_t len)
{
	struct sbx_file_entry e;
	if (sbx_file_entry_decode(pl, len, &e) != 0)
		return fail(p, f, EINVAL, "malformed FILE_ENTRY");
	if (f->wfd >= 0) {
		close(f->wfd);
		f->wfd = -1;
	}
	char path[2 * SBX_FILE_PATH_MAX + 2];
	if (!f->got_root) {
		if (e.name_len != 0)
			return fail(p, f, EINVAL, "the first entry must be the root");
		f->got_root = 1;
		if ((f->flags & SBX_FOP_F_PARENTS) && mkparents(f->root) != 0)
			return fail(p, f, errno, f->root);
		snprintf(path, sizeof path, "%s", f->root);
	} else {
		if (!rel_ok(e.name, e.name_len))
			return fail(p, f, EINVAL, "bad entry name");
		snprintf(path, sizeof path, "%s/%.*s", f->root, (int)e.name_len, e.name);
	}
	if (put_create(f, &e, path) != 0)
		return fail(p, f, errno, path);
	return_credit(p, f, len);
}

static void put_data(struct port *p, struct fstream *f, const uint8_t *pl, uint32_t len)
{
	if (f->wfd < 0)
		return fail(p, f, EINVAL, "FILE_DATA without a file entry");
	for (uint32_t off = 0; off < len;) {
		ssize_t w = write(f->wfd, pl + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return fail(p, f, errno, f->root);
		off += (uint32_t)w;
	}
	return_credit(p, f, len);
}

static void put_end(struct port *p, struct fstream *f)
{
	if (!f->got_root)
		return fail(p, f, EINVAL, "no entry sent");
	if (f->wfd >= 0) {
		int rc = close(f->wfd);
		f->wfd = -1;
		if (rc != 0)
			return fail(p, f, errno, f->root);
	}
	finish(p, f);
}

/* ---- GET / LIST: walking out */

static void walk_start(struct port *p, struct fstream *f)
{
	struct stat st;
	f->started = 1;
	if (f->op == SBX_FOP_LIST) {
		DIR *d = opendir(f->root);
		if (!d)
			return fail(p, f, errno, f->root);
		f->dirs[0] = d;
		f->rel_len[0] = 0;
		f->depth = 1;
		return;
	}
	if (stat(f->root, &st) != 0)
		return fail(p, f, errno, f->root);
	if ((f->flags & SBX_FOP_F_REGULAR) && !S_ISREG(st.st_mode))
		return fail(p, f, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, f->root);
	if (S_ISREG(st.st_mode)) {
		/* O_NONBLOCK: a file that would block (/proc/kmsg) fails with
		 * EAGAIN instead of stalling the single-threaded agent */
		f->rfd = open(f->root, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (f->rfd < 0)
			return fail(p, f, errno, f->root);
	} else if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(f->root);
		if (!d)
			return fail(p, f, errno, f->root);
		f->dirs[0] = d;
		f->rel_len[0] = 0;
		f->depth = 1;
	} else {
		return fail(p, f, EINVAL, "not a file or directory");
	}
	if (send_entry(p, f, &st, "", AT_FDCWD, f->root) != 0)
		return fail(p, f, errno, f->root);
}

/* One step: the next directory entry of the deepest open directory. */
static void walk_next(struct port *p, struct fstream *f)
{
	DIR *d = f->dirs[f->depth - 1];
	size_t base = f->rel_len[f->depth - 1];
	errno = 0;
	struct dirent *de = readdir(d);
	if (!de) {
		if (errno)
			return fail(p, f, errno, "readdir");
		closedir(d);
		f->depth--;
		if (!f->depth)
			finish(p, f);
		return;
	}
	if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
		return;
	struct stat st;
	if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return; /* vanished meanwhile */
	if (f->op == SBX_FOP_LIST) {
		if (send_entry(p, f, &st, de->d_name, dirfd(d), de->d_name) != 0)
			return fail(p, f, errno, de->d_name);
		return;
	}
	int n = snprintf(f->rel + base, sizeof f->rel - base, "%s%s", base ? "/" : "", de->d_name);
	if (n < 0 || (size_t)n >= sizeof f->rel - base)
		return fail(p, f, ENAMETOOLONG, "path in the tree");
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
		return; /* devices, fifos, sockets are not transferred */
	if (S_ISDIR(st.st_mode) && f->depth == DEPTH_MAX)
		return fail(p, f, ELOOP, "tree too deep");
	int fd = -1;
	if (!S_ISLNK(st.st_mode)) {
		fd = openat(dirfd(d), de->d_name,
			    O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
				(S_ISDIR(st.st_mode) ? O_DIRECTORY : 0));
		if (fd < 0)
			return fail(p, f, errno, f->rel);
	}
	if (send_entry(p, f, &st, f->rel, dirfd(d), de->d_name) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return fail(p, f, e, f->rel);
	}
	if (S_ISREG(st.st_mode)) {
		f->rfd = fd;
	} else if (S_ISDIR(st.st_mode)) {
		DIR *sub = fdopendir(fd);
		if (!sub) {
			close(fd);
			return fail(p, f, errno, f->rel);
		}
		f->dirs[f->depth] = sub;
		f->rel_len[f->depth] = base + (size_t)n;
		f->depth++;
	}
}

static void send_data(struct port *p, struct fstream *f)
{
	size_t want = (size_t)(f->credit - SBX_FILE_FRAME_COST);
	if (want > SBX_PROTO_MAX_PAYLOAD)
		want = SBX_PROTO_MAX_PAYLOAD;
	uint8_t *dst = port_data_reserve(p, want);
	if (!dst)
		return fail(p, f, ENOMEM, "send buffer");
	ssize_t n = read(f->rfd, dst, want);
	if (n < 0 && errno == EINTR)
		return;
	if (n < 0)
		return fail(p, f, errno, "read");
	if (n == 0) {
		close(f->rfd);
		f->rfd = -1;
		if (!f->depth) /* a single file */
			finish(p, f);
		return;
	}
	port_data_commit(p, SBX_T_FILE_DATA, f->stream, (size_t)n);
	f->credit -= (uint64_t)n + SBX_FILE_FRAME_COST;
}

/* Returns 1 if it sent something. */
static int pump_one(struct port *p, struct fstream *f)
{
	if (!port_out_room(p))
		return 0;
	if (!f->started) {
		walk_start(p, f);
		return 1;
	}
	if (f->rfd >= 0) {
		if (f->credit <= SBX_FILE_FRAME_COST)
			return 0;
		send_data(p, f);
		return 1;
	}
	if (f->credit < ENTRY_COST)
		return 0;
	walk_next(p, f);
	return 1;
}

int files_pump(struct port *p)
{
	int more = 0;
	for (size_t i = 0; i < FILES_MAX; i++) {
		struct fstream *f = &g_fs[i];
		if (!f->used || (f->op != SBX_FOP_GET && f->op != SBX_FOP_LIST))
			continue;
		/* a bounded burst per stream, so several streams share the port */
		for (int k = 0; k < 16 && f->used && pump_one(p, f); k++)
			more = 1;
	}
	return more && port_out_room(p);
}

/* ---- dispatch */

static void do_op(struct port *p, struct fstream *f, const struct sbx_file_op_msg *m)
{
	struct stat st;
	char tag[64];
	switch (m->op) {
	case SBX_FOP_STAT: {
		int r = (m->flags & SBX_FOP_F_NOFOLLOW) ? lstat(f->root, &st) : stat(f->root, &st);
		if (r != 0 || send_entry(p, f, &st, "", AT_FDCWD, f->root) != 0)
			return fail(p, f, errno, f->root);
		return finish(p, f);
	}
	case SBX_FOP_MKDIR: {
		int r = (m->flags & SBX_FOP_F_PARENTS) ? mkdirs(f->root, m->mode)
						       : mkdir(f->root, m->mode);
		if (r != 0)
			return fail(p, f, errno, f->root);
		return finish(p, f);
	}
	case SBX_FOP_REMOVE:
		if (remove_path(f->root, !!(m->flags & SBX_FOP_F_RECURSIVE)) != 0)
			return fail(p, f, errno, f->root);
		return finish(p, f);
	case SBX_FOP_MOUNT:
		if (m->arg_len == 0 || m->arg_len >= sizeof tag || f->root[0] != '/')
			return fail(p, f, EINVAL, "bad MOUNT");
		memcpy(tag, m->arg, m->arg_len);
		tag[m->arg_len] = '\0';
		if (mount_volume(tag, f->root, !!(m->flags & SBX_FOP_F_READONLY)) != 0)
			return fail(p, f, errno, f->root);
		return finish(p, f);
	case SBX_FOP_PUT: return; /* entries follow */
	case SBX_FOP_GET:
	case SBX_FOP_LIST: return; /* files_pump does the work */
	}
}

static void op_frame(struct port *p, const struct sbx_frame_hdr *h, const uint8_t *payload)
{
	struct sbx_file_op_msg m;
	if (recently_closed(h->stream) || find(h->stream)) {
		port_send_error(p, 0, EPROTO, "FILE_OP reuses stream %u", h->stream);
		return;
	}
	struct fstream *f = NULL;
	for (size_t i = 0; i < FILES_MAX && !f; i++)
		if (!g_fs[i].used)
			f = &g_fs[i];
	if (!f) {
		port_send_error(p, h->stream, EAGAIN, "too many file streams");
		return;
	}
	memset(f, 0, sizeof *f);
	f->used = 1;
	f->stream = h->stream;
	f->wfd = f->rfd = -1;
	f->credit = SBX_PROTO_INITIAL_WINDOW;
	if (sbx_file_op_decode(payload, h->len, &m) != 0)
		return fail(p, f, EINVAL, "malformed FILE_OP");
	f->op = m.op;
	f->flags = m.flags;
	memcpy(f->root, m.path, m.path_len);
	f->root[m.path_len] = '\0';
	do_op(p, f, &m);
}

void files_frame(struct port *p, const struct sbx_frame_hdr *h, const uint8_t *payload)
{
	if (h->type == SBX_T_FILE_OP)
		return op_frame(p, h, payload);
	struct fstream *f = find(h->stream);
	if (!f) {
		if (!recently_closed(h->stream))
			port_send_error(p, 0, EPROTO,
					"frame type 0x%02x for stream %u, which is not open",
					h->type, h->stream);
		return;
	}
	int put = f->op == SBX_FOP_PUT;
	switch (h->type) {
	case SBX_T_FILE_ENTRY:
		if (put)
			return put_entry(p, f, payload, h->len);
		break;
	case SBX_T_FILE_DATA:
		if (put)
			return put_data(p, f, payload, h->len);
		break;
	case SBX_T_FILE_END:
		if (put && h->len == 0)
			return put_end(p, f);
		break;
	case SBX_T_FILE_CANCEL: return fail(p, f, ECANCELED, "cancelled by the host");
	case SBX_T_WINDOW:
		if (!put && h->len == 4) {
			f->credit += (uint32_t)payload[0] | (uint32_t)payload[1] << 8 |
				     (uint32_t)payload[2] << 16 | (uint32_t)payload[3] << 24;
			return;
		}
		break;
	}
	fail(p, f, EPROTO, "frame not valid on this file stream");
}
