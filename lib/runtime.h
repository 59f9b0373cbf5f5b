/* The per-process runtime: one libvirt connection per (URI, state dir),
 * libvirt's event loop thread, the state-dir lock, and reaping of what a
 * previous process left behind. */
#ifndef SBX_RUNTIME_H
#define SBX_RUNTIME_H

#include <libvirt/libvirt.h>
#include <pthread.h>

struct sandbox;

struct sbx_runtime {
	struct sbx_runtime *next;
	char *uri;
	char *state_dir;
	char *sandboxes_dir; /* <state_dir>/sandboxes */
	int embedded;
	char *embed_root; /* the embedded driver's root, or NULL */
	virConnectPtr conn;
	int lock_fd;
	uid_t qemu_uid; /* owner for files QEMU must write; -1: leave as is */
	gid_t qemu_gid;
	pthread_mutex_t lock; /* guards `live` */
	struct sandbox *live; /* running sandboxes, linked by sandbox->rt_next */
};

/* Find or open the runtime for these (possibly NULL) options. The runtime
 * lives until the process exits. Thread-safe. */
int sbx_runtime_get(const char *uri, const char *state_dir, struct sbx_runtime **out);
void sbx_runtime_add(struct sbx_runtime *rt, struct sandbox *sb);
void sbx_runtime_remove(struct sbx_runtime *rt, struct sandbox *sb);
/* Visit every runtime (for sandbox_list). The callback runs with the
 * global registry lock held. */
void sbx_runtime_foreach(void (*fn)(struct sbx_runtime *, void *), void *arg);
/* libvirt's last error message, never NULL. */
const char *sbx_virt_error(void);
/* Default state dir for this user (malloc'd). */
char *sbx_default_state_dir(void);

#endif
