/* File streams, the files API and volumes: internal interfaces of xfer.c,
 * files.c and volumes.c (doc/protocol.md, "File streams"). */
#ifndef SBX_FILES_H
#define SBX_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "sandbox.h"

struct sandbox;
struct sbx_runtime;
struct sbx_xfer;

/* ---- xfer.c, I/O thread side (sb->lock held) */

/* The file stream `stream`, or NULL. */
struct sbx_xfer *sbx_xfer_find_locked(struct sandbox *sb, uint32_t stream);
/* One frame for a file stream. 0, or -1 with a protocol violation
 * described in why. */
int sbx_files_on_frame_locked(struct sandbox *sb, struct sbx_xfer *x, const struct sbx_frame_hdr *h,
			      const uint8_t *pl, char *why, size_t cap);

/* ---- xfer.c, lock held: used by the calling side and the fuzz target */

/* A new file stream with the next id, linked into sb->xfers; its
 * unlinking and freeing; its next queued record (1, or 0 when empty; buf
 * holds SBX_PROTO_MAX_PAYLOAD); the bytes queued. */
struct sbx_xfer *sbx_xfer_new_locked(struct sandbox *sb);
void sbx_xfer_free_locked(struct sandbox *sb, struct sbx_xfer *x);
int sbx_xfer_pop_locked(struct sbx_xfer *x, uint8_t *type, uint8_t *buf, uint32_t *len);
size_t sbx_xfer_queued_locked(const struct sbx_xfer *x);

/* ---- xfer.c, calling thread (lock not held) */

/* Open a stream and send FILE_OP; takes a reference on sb. */
int sbx_xfer_open(struct sandbox *sb, uint32_t op, uint32_t flags, uint32_t mode, const char *path,
		  const char *arg, struct sbx_xfer **out);
/* Unlink, free, drop the reference. */
void sbx_xfer_close(struct sbx_xfer *x);
/* Next record from the agent into buf (SBX_PROTO_MAX_PAYLOAD bytes): 1
 * with *type and *len set, 0 at a successful end, or an error code (the
 * agent's errno mapped, the sandbox's death, a stall). `what` and `path`
 * name the operation in messages. Returns credit as records are taken. */
int sbx_xfer_next(struct sbx_xfer *x, uint8_t *type, uint8_t *buf, uint32_t *len, const char *what,
		  const char *path);
/* Wait for the final FILE_END; anything else is a violation. */
int sbx_xfer_finish(struct sbx_xfer *x, const char *what, const char *path);
/* Send FILE_CANCEL and wait until the agent ends the stream. */
void sbx_xfer_cancel(struct sbx_xfer *x);
/* Send a FILE_ENTRY or FILE_DATA frame, waiting for the agent's credit. */
int sbx_xfer_send(struct sbx_xfer *x, uint8_t type, const void *p, size_t len, const char *what,
		  const char *path);
int sbx_xfer_send_entry(struct sbx_xfer *x, const struct sbx_file_entry *e, const char *what,
			const char *path);
/* The agent broke the protocol in a way only the calling side sees:
 * kill the sandbox, return SANDBOX_E_PROTOCOL. */
int sbx_xfer_violation(struct sandbox *sb, const char *what);
int sbx_xfer_ended(struct sbx_xfer *x);
uint32_t sbx_xfer_stream(const struct sbx_xfer *x);
struct sandbox *sbx_xfer_sandbox(const struct sbx_xfer *x);

/* ---- files.c: checks of names the guest sends */

/* A relative path inside a downloaded tree (no empty, "." or ".."
 * component, not absolute), and one listed name. */
int sbx_file_rel_name_ok(const char *p, size_t n);
int sbx_file_list_name_ok(const struct sbx_file_entry *e);

/* ---- volumes.c */

/* The 9p mount tag of volume i ("sbxvolN"). */
void sbx_volume_tag(size_t i, char *out, size_t cap);
/* Before the VM starts: QEMU's user can read (and for read-write volumes
 * write) every volume's host directory. */
int sbx_volumes_check_access(const struct sbx_runtime *rt, const sandbox_options_t *o);
/* After HELLO: have the agent mount every volume, parents first; fails
 * the create if any mount fails. */
int sbx_files_mount_volumes(struct sandbox *sb, const sandbox_options_t *o);

#endif
