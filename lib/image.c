/* The guest image: a directory with a manifest (written by
 * guest/image/build.sh), a PVH kernel, an initramfs and a raw ext4 root. A
 * missing or damaged image must fail create with a message that says
 * which file is wrong and how to rebuild, not boot into a hang. */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "sandbox.h"
#include "util.h"

#ifndef SBX_IMAGE_DIR
#define SBX_IMAGE_DIR "/usr/local/share/libsandbox/image"
#endif

#define MANIFEST_MAX 16384
#define REBUILD_HINT                                                                               \
	"; build or rebuild it with `make image` in the libsandbox build tree (scripts/build.sh "  \
	"does this)"

struct manifest {
	char text[MANIFEST_MAX + 1];
};

static const char *mf_get(const struct manifest *m, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key);
	for (const char *line = m->text; *line;) {
		const char *end = strchr(line, '\n');
		size_t ll = end ? (size_t)(end - line) : strlen(line);
		if (ll > kl && !strncmp(line, key, kl) && line[kl] == '=') {
			size_t vl = ll - kl - 1;
			if (vl >= cap)
				return NULL;
			memcpy(out, line + kl + 1, vl);
			out[vl] = '\0';
			return out;
		}
		line += ll + (end ? 1 : 0);
	}
	return NULL;
}

static int read_manifest(const char *dir, struct manifest *m)
{
	char *path = sbx_asprintf("%s/manifest", dir);
	if (!path)
		return sbx_fail(SANDBOX_E_NOMEM, "manifest path");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		int rc =
		    sbx_fail(SANDBOX_E_IMAGE, "guest image '%s': cannot read %s (%s)" REBUILD_HINT,
			     dir, path, strerror(e));
		free(path);
		return rc;
	}
	ssize_t n = read(fd, m->text, MANIFEST_MAX);
	close(fd);
	free(path);
	if (n <= 0 || n == MANIFEST_MAX || memchr(m->text, 0, (size_t)n))
		return sbx_fail(SANDBOX_E_IMAGE,
				"guest image '%s': manifest is empty or corrupt" REBUILD_HINT, dir);
	m->text[n] = '\0';
	return 0;
}

static int check_magic(const char *path, off_t off, const uint8_t *magic, size_t len)
{
	uint8_t buf[8];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = pread(fd, buf, len, off);
	close(fd);
	return n == (ssize_t)len && !memcmp(buf, magic, len) ? 0 : -1;
}

/* Resolve one file of the image and check its size and magic. */
static int image_file(const char *dir, const struct manifest *m, const char *key, char **out)
{
	char name[256], size[32], skey[64];
	snprintf(skey, sizeof skey, "%s_size", key);
	if (!mf_get(m, key, name, sizeof name) || !mf_get(m, skey, size, sizeof size) ||
	    strchr(name, '/') || name[0] == '.')
		return sbx_fail(SANDBOX_E_IMAGE,
				"guest image '%s': manifest lacks a valid '%s'" REBUILD_HINT, dir,
				key);
	char *path = sbx_asprintf("%s/%s", dir, name);
	if (!path)
		return sbx_fail(SANDBOX_E_NOMEM, "image path");
	struct stat st;
	int rc = 0;
	if (stat(path, &st) < 0)
		rc = sbx_fail_errno(SANDBOX_E_IMAGE, errno, "guest image '%s': %s", dir, path);
	else if (!S_ISREG(st.st_mode) || (unsigned long long)st.st_size != strtoull(size, NULL, 10))
		rc = sbx_fail(
		    SANDBOX_E_IMAGE,
		    "guest image '%s': %s has %lld bytes, the manifest says %s (corrupt or "
		    "partly written)" REBUILD_HINT,
		    dir, path, (long long)st.st_size, size);
	if (rc) {
		free(path);
		return rc;
	}
	*out = path;
	return 0;
}

static int check_contents(const char *dir, struct sbx_image *img)
{
	static const uint8_t elf[] = {0x7f, 'E', 'L', 'F'};
	static const uint8_t ext4[] = {0x53, 0xef};
	static const uint8_t gz[] = {0x1f, 0x8b};
	static const uint8_t cpio[] = {'0', '7', '0', '7', '0'};
	if (check_magic(img->kernel, 0, elf, sizeof elf))
		return sbx_fail(SANDBOX_E_IMAGE,
				"guest image '%s': %s is not an ELF kernel" REBUILD_HINT, dir,
				img->kernel);
	if (check_magic(img->rootfs, 1080, ext4, sizeof ext4))
		return sbx_fail(SANDBOX_E_IMAGE,
				"guest image '%s': %s is not an ext4 filesystem" REBUILD_HINT, dir,
				img->rootfs);
	if (check_magic(img->initrd, 0, gz, sizeof gz) &&
	    check_magic(img->initrd, 0, cpio, sizeof cpio))
		return sbx_fail(SANDBOX_E_IMAGE,
				"guest image '%s': %s is not an initramfs" REBUILD_HINT, dir,
				img->initrd);
	return 0;
}

int sbx_image_load(const char *dir, struct sbx_image *img)
{
	memset(img, 0, sizeof *img);
	if (!dir) {
		const char *e = getenv("SANDBOX_IMAGE");
		dir = e && *e ? e : SBX_IMAGE_DIR;
	}
	if (dir[0] != '/')
		return sbx_fail(SANDBOX_E_INVAL, "image directory must be absolute: '%s'", dir);
	struct manifest *m = malloc(sizeof *m);
	if (!m)
		return sbx_fail(SANDBOX_E_NOMEM, "manifest");
	int rc = read_manifest(dir, m);
	char fmt[16], cmdline[2048];
	if (!rc && (!mf_get(m, "format", fmt, sizeof fmt) || strcmp(fmt, "1")))
		rc = sbx_fail(SANDBOX_E_IMAGE,
			      "guest image '%s': unknown manifest format" REBUILD_HINT, dir);
	if (!rc && !mf_get(m, "cmdline", cmdline, sizeof cmdline))
		rc = sbx_fail(SANDBOX_E_IMAGE,
			      "guest image '%s': manifest lacks 'cmdline'" REBUILD_HINT, dir);
	if (!rc && !(rc = image_file(dir, m, "kernel", &img->kernel)) &&
	    !(rc = image_file(dir, m, "initrd", &img->initrd)) &&
	    !(rc = image_file(dir, m, "rootfs", &img->rootfs)))
		rc = check_contents(dir, img);
	if (!rc) {
		img->dir = strdup(dir);
		img->cmdline = strdup(cmdline);
		if (!img->dir || !img->cmdline)
			rc = sbx_fail(SANDBOX_E_NOMEM, "image");
	}
	free(m);
	if (rc)
		sbx_image_free(img);
	return rc;
}

void sbx_image_free(struct sbx_image *img)
{
	free(img->dir);
	free(img->kernel);
	free(img->initrd);
	free(img->rootfs);
	free(img->cmdline);
	memset(img, 0, sizeof *img);
}
