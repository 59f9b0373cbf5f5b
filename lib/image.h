/* Locating and checking the guest image. */
#ifndef SBX_IMAGE_H
#define SBX_IMAGE_H

struct sbx_image {
	char *dir;
	char *kernel; /* absolute paths */
	char *initrd;
	char *rootfs;
	char *cmdline;
};

/* dir: the option, else $SANDBOX_IMAGE, else the installed default.
 * Checks the manifest, sizes and magic numbers; returns 0 or
 * SANDBOX_E_IMAGE with a message saying what is wrong and how to fix it. */
int sbx_image_load(const char *dir, struct sbx_image *img);
void sbx_image_free(struct sbx_image *img);

#endif
