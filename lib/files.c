/* The files API (sandbox_file_*): write, read, stat, list, mkdir,
 * remove, upload and download, on file streams (xfer.c). The calling
 * thread does all host file I/O. Everything the guest says is hostile:
 * entry names of a download are checked, and host files are created
 * relative to the destination with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS), so a guest symlink is never followed on the
 * host. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "files.h"
#include "sandbox_int.h"
#include "util.h"

#define READ_DEFAULT_MAX ((size_t)64 << 20)
#define LIST_MAX_ENTRIES (1u << 20)
#define LIST_MAX_BYTES (128u << 20)
#define TREE_MAX_DEPTH 256

static int check_path(const char *path, const char *fn)
{
	if (!path || !path[0])
		return sbx_fail(SANDBOX_E_INVAL, "%s: path is NULL or empty", fn);
	if (strlen(path) > SBX_FILE_PATH_MAX)
		return sbx_fail(SANDBOX_E_INVAL, "%s: path is longer than %u bytes", fn,
				SBX_FILE_PATH_MAX);
	return 0;
}

static int check_call(sandbox_t *sb, const char *path, unsigned int flags, unsigned int known,
		      const char *fn)
{
	if (!sb)
		return sbx_fail(SANDBOX_E_INVAL, "%s: sandbox is NULL", fn);
	if (flags & ~known)
		return sbx_fail(SANDBOX_E_FLAGS, "%s: unknown flags 0x%x", fn, flags & ~known);
	return check_path(path, fn);
}

/* Largest data chunk: one full frame. */
#define CHUNK SBX_PROTO_MAX_PAYLOAD

/* ---- audit */

static void audit_file(struct sandbox *sb, const char *event, const char *path,
		       const char *host_path, uint64_t size, int rc)
{
	struct sbx_json j;
	sbx_audit_begin(&sb->audit, &j, event);
	sbx_json_str(&j, "path", path);
	if (host_path)
		sbx_json_str(&j, "host_path", host_path);
	sbx_json_int(&j, "size", (int64_t)size);
	sbx_json_bool(&j, "ok", rc == 0);
	if (rc)
		sbx_json_str(&j, "error", sandbox_last_error());
	sbx_audit_emit(&sb->audit, &j);
}

/* ---- write / upload */

struct src {
	int fd; /* for files */
	const uint8_t *mem;
	size_t mem_len;
};

static int send_file_data(struct sbx_xfer *x, struct src *s, uint64_t *total, const char *what,
			  const char *path)
{
	uint8_t *buf = s->mem ? NULL : malloc(CHUNK);
	if (!s->mem && !buf)
		return sbx_fail(SANDBOX_E_NOMEM, "upload buffer");
	int rc = 0;
	size_t off = 0;
	for (;;) {
		ssize_t n;
		const uint8_t *p = buf;
		if (s->mem) {
			n = (ssize_t)(s->mem_len - off < CHUNK ? s->mem_len - off : CHUNK);
			p = s->mem + off;
			off += (size_t)n;
		} else {
			n = read(s->fd, buf, CHUNK);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				rc = sbx_fail_errno(SANDBOX_E_IO, errno, "reading the host file");
				break;
			}
		}
		if (n == 0 || (rc = sbx_xfer_send(x, SBX_T_FILE_DATA, p, (size_t)n, what, path)))
			break;
		*total += (uint64_t)n;
	}
	free(buf);
	return rc;
}

static struct sbx_file_entry entry_from_stat(const struct stat *st, const char *name,
					     const char *target)
{
	struct sbx_file_entry e = {
	    .type = S_ISREG(st->st_mode)   ? SBX_FT_FILE
		    : S_ISDIR(st->st_mode) ? SBX_FT_DIR
		    : S_ISLNK(st->st_mode) ? SBX_FT_SYMLINK
					   : SBX_FT_OTHER,
	    .mode = st->st_mode & 07777,
	    .size = (uint64_t)st->st_size,
	    .mtime = st->st_mtime,
	    .name = name,
	    .name_len = (uint32_t)strlen(name),
	    .target = target ? target : "",
	    .target_len = target ? (uint32_t)strlen(target) : 0,
	};
	return e;
}

struct upload {
	struct sbx_xfer *x;
	const char *guest_path;
	uint64_t total;
	char rel[SBX_FILE_PATH_MAX + 1];
};

static int upload_dir(struct upload *u, int dfd, size_t rel_len, int depth);

/* One directory entry of the source tree, never following a symlink. */
static int upload_one(struct upload *u, int dfd, const char *name, size_t rel_len, int depth)
{
	int n =
	    snprintf(u->rel + rel_len, sizeof u->rel - rel_len, "%s%s", rel_len ? "/" : "", name);
	if (n < 0 || (size_t)n >= sizeof u->rel - rel_len)
		return sbx_fail(SANDBOX_E_INVAL, "upload: path too long under '%s'", u->rel);
	size_t len = rel_len + (size_t)n;
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return sbx_fail_errno(SANDBOX_E_IO, errno, "upload: cannot stat '%s'", u->rel);
	int rc = 0;
	if (S_ISLNK(st.st_mode)) {
		char target[SBX_FILE_PATH_MAX + 1];
		ssize_t t = readlinkat(dfd, name, target, sizeof target - 1);
		if (t <= 0)
			return sbx_fail_errno(SANDBOX_E_IO, errno, "upload: readlink '%s'", u->rel);
		target[t] = '\0';
		struct sbx_file_entry e = entry_from_stat(&st, u->rel, target);
		rc = sbx_xfer_send_entry(u->x, &e, "upload to", u->guest_path);
	} else if (S_ISREG(st.st_mode)) {
		int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			return sbx_fail_errno(SANDBOX_E_IO, errno, "upload: cannot open '%s'",
					      u->rel);
		struct sbx_file_entry e = entry_from_stat(&st, u->rel, NULL);
		rc = sbx_xfer_send_entry(u->x, &e, "upload to", u->guest_path);
		struct src s = {.fd = fd};
		if (!rc)
			rc = send_file_data(u->x, &s, &u->total, "upload to", u->guest_path);
		close(fd);
	} else if (S_ISDIR(st.st_mode)) {
		if (depth >= TREE_MAX_DEPTH)
			return sbx_fail(SANDBOX_E_INVAL, "upload: tree deeper than %d levels",
					TREE_MAX_DEPTH);
		int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return sbx_fail_errno(SANDBOX_E_IO, errno, "upload: cannot open '%s'",
					      u->rel);
		struct sbx_file_entry e = entry_from_stat(&st, u->rel, NULL);
		rc = sbx_xfer_send_entry(u->x, &e, "upload to", u->guest_path);
		if (!rc)
			rc = upload_dir(u, fd, len, depth + 1);
		else
			close(fd);
	}
	u->rel[rel_len] = '\0';
	return rc; /* other special files are skipped */
}

/* Takes ownership of dfd. */
static int upload_dir(struct upload *u, int dfd, size_t rel_len, int depth)
{
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return sbx_fail_errno(SANDBOX_E_IO, errno, "upload: cannot read directory");
	}
	int rc = 0;
	struct dirent *de;
	while (!rc && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		rc = upload_one(u, dirfd(d), de->d_name, rel_len, depth);
	}
	closedir(d);
	return rc;
}

/* Root of a PUT: a regular file (from memory or an fd) or a directory. */
static int put(struct sandbox *sb, const char *guest_path, unsigned int flags, const char *what,
	       const struct stat *st, struct src *file, int dirfd_, uint64_t *total)
{
	struct sbx_xfer *x;
	uint32_t fl = (flags & SANDBOX_FILE_PARENTS) ? SBX_FOP_F_PARENTS : 0;
	int rc = sbx_xfer_open(sb, SBX_FOP_PUT, fl, 0, guest_path, NULL, &x);
	if (rc) {
		if (dirfd_ >= 0)
			close(dirfd_);
		return rc;
	}
	struct sbx_file_entry e = entry_from_stat(st, "", NULL);
	rc = sbx_xfer_send_entry(x, &e, what, guest_path);
	if (!rc && file) {
		rc = send_file_data(x, file, total, what, guest_path);
	} else if (!rc && dirfd_ >= 0) {
		struct upload u = {.x = x, .guest_path = guest_path};
		rc = upload_dir(&u, dirfd_, 0, 1);
		dirfd_ = -1;
		*total = u.total;
	}
	if (dirfd_ >= 0)
		close(dirfd_);
	if (!rc)
		rc = sbx_chan_send(sb, SBX_T_FILE_END, sbx_xfer_stream(x), NULL, 0);
	if (!rc) {
		rc = sbx_xfer_finish(x, what, guest_path);
	} else if (rc != SANDBOX_E_PROTOCOL && rc != SANDBOX_E_DEAD && rc != SANDBOX_E_TIMEOUT) {
		char saved[1024];
		sbx_error_save(saved, sizeof saved);
		int ended = sbx_xfer_ended(x);
		if (!ended)
			sbx_xfer_cancel(x);
		sbx_error_restore(saved);
	}
	sbx_xfer_close(x);
	return rc;
}

SANDBOX_API int sandbox_file_write(sandbox_t *sb, const char *path, const void *data, size_t len,
				   unsigned int mode, unsigned int flags)
{
	sbx_clear_error();
	int rc = check_call(sb, path, flags, SANDBOX_FILE_PARENTS, "sandbox_file_write");
	if (rc)
		return rc;
	if (!data && len)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_file_write: data is NULL");
	if (mode > 07777)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_file_write: mode 0%o is not within 07777",
				mode);
	struct stat st = {.st_mode = S_IFREG | (mode ? mode : 0644), .st_size = (off_t)len};
	st.st_mtime = time(NULL);
	struct src s = {.fd = -1, .mem = data ? data : (const void *)"", .mem_len = len};
	uint64_t total = 0;
	rc = put(sb, path, flags, "write", &st, &s, -1, &total);
	audit_file(sb, "file.write", path, NULL, len, rc);
	return rc;
}

SANDBOX_API int sandbox_file_upload(sandbox_t *sb, const char *host_path, const char *guest_path,
				    unsigned int flags)
{
	sbx_clear_error();
	int rc = check_call(sb, guest_path, flags, SANDBOX_FILE_PARENTS, "sandbox_file_upload");
	if (!rc)
		rc = check_path(host_path, "sandbox_file_upload (host_path)");
	if (rc)
		return rc;
	/* O_NONBLOCK: a fifo must not block the call before it is refused */
	int fd = open(host_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return sbx_fail_errno(e == ENOENT ? SANDBOX_E_NOTFOUND : SANDBOX_E_IO, e,
				      "sandbox_file_upload: cannot open '%.300s'", host_path);
	}
	uint64_t total = 0;
	if (S_ISREG(st.st_mode)) {
		struct src s = {.fd = fd};
		rc = put(sb, guest_path, flags, "upload to", &st, &s, -1, &total);
		close(fd);
	} else if (S_ISDIR(st.st_mode)) {
		rc = put(sb, guest_path, flags, "upload to", &st, NULL, fd, &total);
	} else {
		close(fd);
		rc = sbx_fail(SANDBOX_E_INVAL,
			      "sandbox_file_upload: '%.300s' is neither a file nor a directory",
			      host_path);
	}
	audit_file(sb, "file.upload", guest_path, host_path, total, rc);
	return rc;
}

/* ---- read / download */

/* A relative entry name of a tree download: components that are neither
 * empty, "." nor "..". Anything else is a hostile agent. */
int sbx_file_rel_name_ok(const char *p, size_t n)
{
	if (n == 0 || p[0] == '/')
		return 0;
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && p[j] != '/')
			j++;
		size_t c = j - i;
		if (c == 0 || c > SBX_FILE_NAME_MAX || (c == 1 && p[i] == '.') ||
		    (c == 2 && p[i] == '.' && p[i + 1] == '.'))
			return 0;
		i = j + 1;
		if (j == n - 1)
			return 0; /* trailing slash */
	}
	return 1;
}

static int open_beneath(int root, const char *rel, uint64_t flags)
{
	struct open_how how = {.flags = flags | O_CLOEXEC,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
					  RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
	return (int)syscall(SYS_openat2, root, rel, &how, sizeof how);
}

struct download {
	struct sandbox *sb;
	const char *guest_path, *host_path;
	int root;    /* destination directory (a tree), else -1 */
	int file;    /* file being written, else -1 */
	int created; /* something exists at host_path now */
	int is_tree;
	uint64_t total;
};

/* Create one entry of a tree below the destination, never through a
 * symlink: the parent is resolved with openat2 beneath the root. */
static int create_in_tree(struct download *d, const struct sbx_file_entry *e)
{
	char rel[SBX_FILE_PATH_MAX + 1];
	memcpy(rel, e->name, e->name_len);
	rel[e->name_len] = '\0';
	char *slash = strrchr(rel, '/');
	const char *base = slash ? slash + 1 : rel;
	int pfd = d->root;
	if (slash) {
		*slash = '\0';
		pfd = open_beneath(d->root, rel, O_PATH | O_DIRECTORY);
		*slash = '/';
		if (pfd < 0)
			return sbx_fail_errno(errno == ENOENT ? SANDBOX_E_PROTOCOL : SANDBOX_E_IO,
					      errno,
					      "download: parent of '%.300s' is not a directory "
					      "created by this download",
					      rel);
	}
	int rc = 0;
	if (e->type == SBX_FT_FILE) {
		d->file = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				 e->mode & 0777);
		if (d->file < 0)
			rc = sbx_fail_errno(SANDBOX_E_IO, errno, "download: cannot create '%.300s'",
					    rel);
	} else if (e->type == SBX_FT_DIR) {
		if (mkdirat(pfd, base, (e->mode & 0777) | 0700) != 0)
			rc = sbx_fail_errno(SANDBOX_E_IO, errno, "download: cannot create '%.300s'",
					    rel);
	} else if (e->type == SBX_FT_SYMLINK) {
		char target[SBX_FILE_PATH_MAX + 1];
		memcpy(target, e->target, e->target_len);
		target[e->target_len] = '\0';
		if (symlinkat(target, pfd, base) != 0)
			rc = sbx_fail_errno(SANDBOX_E_IO, errno, "download: cannot create '%.300s'",
					    rel);
	}
	if (pfd != d->root)
		close(pfd);
	return rc;
}

/* The first entry: what host_path becomes. */
static int create_root(struct download *d, const struct sbx_file_entry *e)
{
	if (e->name_len != 0)
		return sbx_xfer_violation(d->sb, "the first entry of a download is not its root");
	const char *hp = d->host_path;
	if (e->type == SBX_FT_FILE) {
		d->file =
		    open(hp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, e->mode & 0777);
		if (d->file < 0)
			return sbx_fail_errno(errno == EEXIST ? SANDBOX_E_EXISTS : SANDBOX_E_IO,
					      errno, "download: cannot create '%.300s'", hp);
	} else if (e->type == SBX_FT_DIR) {
		if (mkdir(hp, (e->mode & 0777) | 0700) != 0)
			return sbx_fail_errno(errno == EEXIST ? SANDBOX_E_EXISTS : SANDBOX_E_IO,
					      errno, "download: cannot create '%.300s'", hp);
		d->is_tree = 1;
		d->root = open(hp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (d->root < 0)
			return sbx_fail_errno(SANDBOX_E_IO, errno, "download: cannot open '%.300s'",
					      hp);
	} else if (e->type == SBX_FT_SYMLINK) {
		char target[SBX_FILE_PATH_MAX + 1];
		memcpy(target, e->target, e->target_len);
		target[e->target_len] = '\0';
		if (symlink(target, hp) != 0)
			return sbx_fail_errno(errno == EEXIST ? SANDBOX_E_EXISTS : SANDBOX_E_IO,
					      errno, "download: cannot create '%.300s'", hp);
	} else {
		return sbx_fail(SANDBOX_E_INVAL, "download: '%.300s' is not a file or directory",
				d->guest_path);
	}
	d->created = 1;
	return 0;
}

static int on_download_entry(struct download *d, const uint8_t *pl, uint32_t len, int first)
{
	struct sbx_file_entry e;
	if (sbx_file_entry_decode(pl, len, &e))
		return sbx_xfer_violation(d->sb,
					  "malformed FILE_ENTRY"); /* checked by the I/O thread */
	if (d->file >= 0) {
		close(d->file);
		d->file = -1;
	}
	if (first)
		return create_root(d, &e);
	if (!d->is_tree)
		return sbx_xfer_violation(d->sb, "a second entry in a download of a single file");
	if (!sbx_file_rel_name_ok(e.name, e.name_len))
		return sbx_xfer_violation(d->sb,
					  "a download entry name that is absolute or has '..'");
	if (e.type == SBX_FT_OTHER)
		return 0;
	return create_in_tree(d, &e);
}

static int write_all_fd(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int download_loop(struct sbx_xfer *x, struct download *d, uint8_t *buf)
{
	int first = 1, rc;
	uint8_t type;
	uint32_t len;
	while ((rc = sbx_xfer_next(x, &type, buf, &len, "download", d->guest_path)) == 1) {
		if (type == SBX_T_FILE_ENTRY) {
			rc = on_download_entry(d, buf, len, first);
			first = 0;
		} else if (d->file < 0) {
			rc = sbx_xfer_violation(d->sb, "FILE_DATA without a file entry");
		} else {
			int w = write_all_fd(d->file, buf, len);
			rc = w ? sbx_fail_errno(SANDBOX_E_IO, -w,
						"download: writing under '%.300s'", d->host_path)
			       : 0;
			d->total += len;
		}
		if (rc)
			return rc;
	}
	if (!rc && first)
		return sbx_xfer_violation(d->sb, "a download without any entry");
	return rc;
}

SANDBOX_API int sandbox_file_download(sandbox_t *sb, const char *guest_path, const char *host_path,
				      unsigned int flags)
{
	sbx_clear_error();
	int rc = check_call(sb, guest_path, flags, 0, "sandbox_file_download");
	if (!rc)
		rc = check_path(host_path, "sandbox_file_download (host_path)");
	if (rc)
		return rc;
	struct stat st;
	if (lstat(host_path, &st) == 0)
		return sbx_fail(SANDBOX_E_EXISTS,
				"sandbox_file_download: destination '%.300s' already exists",
				host_path);
	uint8_t *buf = malloc(SBX_PROTO_MAX_PAYLOAD);
	if (!buf)
		return sbx_fail(SANDBOX_E_NOMEM, "download buffer");
	struct sbx_xfer *x;
	rc = sbx_xfer_open(sb, SBX_FOP_GET, 0, 0, guest_path, NULL, &x);
	struct download d = {
	    .sb = sb, .guest_path = guest_path, .host_path = host_path, .root = -1, .file = -1};
	if (!rc) {
		rc = download_loop(x, &d, buf);
		if (rc && rc != SANDBOX_E_PROTOCOL && rc != SANDBOX_E_DEAD &&
		    rc != SANDBOX_E_TIMEOUT) {
			int ended = sbx_xfer_ended(x);
			char saved[1024];
			sbx_error_save(saved, sizeof saved);
			if (!ended)
				sbx_xfer_cancel(x);
			sbx_error_restore(saved);
		}
		sbx_xfer_close(x);
	}
	if (d.file >= 0 && close(d.file) != 0 && !rc)
		rc = sbx_fail_errno(SANDBOX_E_IO, errno, "download: closing '%.300s'", host_path);
	if (d.root >= 0)
		close(d.root);
	/* Everything at host_path was created by this call (it did not exist):
	 * remove it, never following a symlink (sbx_rmtree uses O_NOFOLLOW). */
	if (rc && d.created)
		sbx_rmtree(host_path);
	free(buf);
	audit_file(sb, "file.download", guest_path, host_path, d.total, rc);
	return rc;
}

static int read_loop(struct sbx_xfer *x, const char *path, size_t max, uint8_t **out,
		     size_t *out_len, uint8_t *buf)
{
	int first = 1, rc;
	uint8_t type;
	uint32_t len;
	size_t cap = 0;
	while ((rc = sbx_xfer_next(x, &type, buf, &len, "read", path)) == 1) {
		if (type == SBX_T_FILE_ENTRY) {
			struct sbx_file_entry e;
			if (!first || sbx_file_entry_decode(buf, len, &e) || e.name_len ||
			    e.type != SBX_FT_FILE)
				return sbx_xfer_violation(sbx_xfer_sandbox(x),
							  "bad FILE_ENTRY in a read");
			first = 0;
			if (e.size > max)
				return sbx_fail(
				    SANDBOX_E_TOOBIG,
				    "'%.300s' is %llu bytes, more than the limit of %zu", path,
				    (unsigned long long)e.size, max);
			continue;
		}
		if (first)
			return sbx_xfer_violation(sbx_xfer_sandbox(x),
						  "FILE_DATA before FILE_ENTRY");
		if (len > max - *out_len)
			return sbx_fail(SANDBOX_E_TOOBIG, "'%.300s' grew beyond the limit of %zu",
					path, max);
		if (*out_len + len > cap) {
			size_t ncap = cap ? cap * 2 : 65536;
			while (ncap < *out_len + len)
				ncap *= 2;
			if (ncap > max)
				ncap = max;
			uint8_t *nb = realloc(*out, ncap);
			if (!nb)
				return sbx_fail(SANDBOX_E_NOMEM, "reading '%.300s'", path);
			*out = nb;
			cap = ncap;
		}
		memcpy(*out + *out_len, buf, len);
		*out_len += len;
	}
	if (!rc && first)
		return sbx_xfer_violation(sbx_xfer_sandbox(x), "a read without a file entry");
	return rc;
}

SANDBOX_API int sandbox_file_read(sandbox_t *sb, const char *path, void **data, size_t *len,
				  size_t max_len, unsigned int flags)
{
	sbx_clear_error();
	if (!data || !len)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_file_read: data or len is NULL");
	*data = NULL;
	*len = 0;
	int rc = check_call(sb, path, flags, 0, "sandbox_file_read");
	if (rc)
		return rc;
	size_t max = max_len ? max_len : READ_DEFAULT_MAX;
	uint8_t *buf = malloc(SBX_PROTO_MAX_PAYLOAD);
	if (!buf)
		return sbx_fail(SANDBOX_E_NOMEM, "read buffer");
	struct sbx_xfer *x;
	uint8_t *out = NULL;
	size_t out_len = 0;
	rc = sbx_xfer_open(sb, SBX_FOP_GET, SBX_FOP_F_REGULAR, 0, path, NULL, &x);
	if (!rc) {
		rc = read_loop(x, path, max, &out, &out_len, buf);
		if (rc == SANDBOX_E_TOOBIG || rc == SANDBOX_E_NOMEM)
			sbx_xfer_cancel(x);
		sbx_xfer_close(x);
	}
	free(buf);
	audit_file(sb, "file.read", path, NULL, out_len, rc);
	if (rc) {
		free(out);
		return rc;
	}
	*data = out;
	*len = out_len;
	return 0;
}

SANDBOX_API void sandbox_buffer_free(void *data)
{
	free(data);
}

/* ---- stat / list */

static int info_set(sandbox_file_info_t *i, const struct sbx_file_entry *e, const char *name,
		    size_t name_len)
{
	memset(i, 0, sizeof *i);
	i->type = e->type;
	i->mode = e->mode;
	i->size = e->size;
	i->mtime = e->mtime;
	i->uid = e->uid;
	i->gid = e->gid;
	i->name = strndup(name, name_len);
	if (e->type == SBX_FT_SYMLINK)
		i->link_target = strndup(e->target, e->target_len);
	if (!i->name || (e->type == SBX_FT_SYMLINK && !i->link_target))
		return sbx_fail(SANDBOX_E_NOMEM, "file info");
	return 0;
}

SANDBOX_API void sandbox_file_info_free(sandbox_file_info_t *info, size_t count)
{
	if (!info)
		return;
	for (size_t i = 0; i < count; i++) {
		free((char *)info[i].name);
		free((char *)info[i].link_target);
	}
	free(info);
}

SANDBOX_API int sandbox_file_stat(sandbox_t *sb, const char *path, sandbox_file_info_t **info,
				  unsigned int flags)
{
	sbx_clear_error();
	if (!info)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_file_stat: info is NULL");
	*info = NULL;
	int rc = check_call(sb, path, flags, SANDBOX_FILE_NOFOLLOW, "sandbox_file_stat");
	if (rc)
		return rc;
	struct sbx_xfer *x;
	uint32_t fl = (flags & SANDBOX_FILE_NOFOLLOW) ? SBX_FOP_F_NOFOLLOW : 0;
	if ((rc = sbx_xfer_open(sb, SBX_FOP_STAT, fl, 0, path, NULL, &x)))
		return rc;
	uint8_t *buf = malloc(SBX_PROTO_MAX_PAYLOAD);
	sandbox_file_info_t *out = calloc(1, sizeof *out);
	uint8_t type;
	uint32_t len;
	struct sbx_file_entry e;
	if (!buf || !out)
		rc = sbx_fail(SANDBOX_E_NOMEM, "stat");
	else if ((rc = sbx_xfer_next(x, &type, buf, &len, "stat", path)) == 1)
		rc = type != SBX_T_FILE_ENTRY || sbx_file_entry_decode(buf, len, &e) || e.name_len
			 ? sbx_xfer_violation(sb, "bad STAT reply")
			 : info_set(out, &e, path, strlen(path));
	else if (rc == 0)
		rc = sbx_xfer_violation(sb, "STAT reply without an entry");
	if (!rc)
		rc = sbx_xfer_finish(x, "stat", path);
	sbx_xfer_close(x);
	free(buf);
	if (rc) {
		sandbox_file_info_free(out, 1);
		return rc;
	}
	*info = out;
	return 0;
}

/* A listed name is one path component. */
int sbx_file_list_name_ok(const struct sbx_file_entry *e)
{
	if (e->name_len == 0 || e->name_len > SBX_FILE_NAME_MAX ||
	    memchr(e->name, '/', e->name_len))
		return 0;
	if (e->name[0] == '.' && (e->name_len == 1 || (e->name_len == 2 && e->name[1] == '.')))
		return 0;
	return 1;
}

static int list_loop(struct sbx_xfer *x, const char *path, sandbox_file_info_t **arr, size_t *n,
		     uint8_t *buf)
{
	size_t cap = 0, bytes = 0;
	uint8_t type;
	uint32_t len;
	int rc;
	while ((rc = sbx_xfer_next(x, &type, buf, &len, "list", path)) == 1) {
		struct sbx_file_entry e;
		if (type != SBX_T_FILE_ENTRY || sbx_file_entry_decode(buf, len, &e) ||
		    !sbx_file_list_name_ok(&e))
			return sbx_xfer_violation(sbx_xfer_sandbox(x), "bad LIST entry");
		/* the guest chooses the count and the lengths: bound both */
		bytes += sizeof **arr + e.name_len + e.target_len + 2;
		if (*n == LIST_MAX_ENTRIES || bytes > LIST_MAX_BYTES)
			return sbx_fail(SANDBOX_E_TOOBIG,
					"the listing of '%.300s' is over %u entries or %u MiB",
					path, LIST_MAX_ENTRIES, LIST_MAX_BYTES >> 20);
		if (*n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			sandbox_file_info_t *na = realloc(*arr, nc * sizeof *na);
			if (!na)
				return sbx_fail(SANDBOX_E_NOMEM, "listing");
			*arr = na;
			cap = nc;
		}
		rc = info_set(&(*arr)[*n], &e, e.name, e.name_len);
		(*n)++;
		if (rc)
			return rc;
	}
	return rc;
}

SANDBOX_API int sandbox_file_list(sandbox_t *sb, const char *path, sandbox_file_info_t **entries,
				  size_t *count, unsigned int flags)
{
	sbx_clear_error();
	if (!entries || !count)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_file_list: entries or count is NULL");
	*entries = NULL;
	*count = 0;
	int rc = check_call(sb, path, flags, 0, "sandbox_file_list");
	if (rc)
		return rc;
	struct sbx_xfer *x;
	if ((rc = sbx_xfer_open(sb, SBX_FOP_LIST, 0, 0, path, NULL, &x)))
		return rc;
	uint8_t *buf = malloc(SBX_PROTO_MAX_PAYLOAD);
	sandbox_file_info_t *arr = NULL;
	size_t n = 0;
	rc = buf ? list_loop(x, path, &arr, &n, buf) : sbx_fail(SANDBOX_E_NOMEM, "list");
	if (rc == SANDBOX_E_TOOBIG || rc == SANDBOX_E_NOMEM)
		sbx_xfer_cancel(x);
	sbx_xfer_close(x);
	free(buf);
	if (rc) {
		sandbox_file_info_free(arr, n);
		return rc;
	}
	*entries = arr;
	*count = n;
	return 0;
}

/* ---- mkdir / remove / mount: one request, END or ERROR */

static int simple_op(struct sandbox *sb, uint32_t op, uint32_t flags, uint32_t mode,
		     const char *path, const char *arg, const char *what)
{
	struct sbx_xfer *x;
	int rc = sbx_xfer_open(sb, op, flags, mode, path, arg, &x);
	if (rc)
		return rc;
	rc = sbx_xfer_finish(x, what, path);
	sbx_xfer_close(x);
	return rc;
}

SANDBOX_API int sandbox_file_mkdir(sandbox_t *sb, const char *path, unsigned int mode,
				   unsigned int flags)
{
	sbx_clear_error();
	int rc = check_call(sb, path, flags, SANDBOX_FILE_PARENTS, "sandbox_file_mkdir");
	if (rc)
		return rc;
	if (mode > 07777)
		return sbx_fail(SANDBOX_E_INVAL, "sandbox_file_mkdir: mode 0%o is not within 07777",
				mode);
	uint32_t fl = (flags & SANDBOX_FILE_PARENTS) ? SBX_FOP_F_PARENTS : 0;
	rc = simple_op(sb, SBX_FOP_MKDIR, fl, mode ? mode : 0755, path, NULL, "mkdir");
	audit_file(sb, "file.mkdir", path, NULL, 0, rc);
	return rc;
}

SANDBOX_API int sandbox_file_remove(sandbox_t *sb, const char *path, unsigned int flags)
{
	sbx_clear_error();
	int rc = check_call(sb, path, flags, SANDBOX_FILE_RECURSIVE, "sandbox_file_remove");
	if (rc)
		return rc;
	uint32_t fl = (flags & SANDBOX_FILE_RECURSIVE) ? SBX_FOP_F_RECURSIVE : 0;
	rc = simple_op(sb, SBX_FOP_REMOVE, fl, 0, path, NULL, "remove");
	audit_file(sb, "file.remove", path, NULL, 0, rc);
	return rc;
}
