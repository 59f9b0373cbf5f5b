/* The sandbox object shared by the lifecycle, channel and exec modules. */
#ifndef SBX_SANDBOX_INT_H
#define SBX_SANDBOX_INT_H

#include <libvirt/libvirt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "audit.h"
#include "outq.h"
#include "proto.h"
#include "sandbox.h"

#define SBX_DOMAIN_PREFIX "sbx-"

struct sbx_runtime;

struct sandbox_proc {
	struct sandbox_proc *next; /* in sb->procs while the stream is open */
	struct sandbox *sb;
	uint32_t stream;
	int pid;
	int started;   /* EXEC_STARTED seen */
	int spawn_err; /* errno from an ERROR frame instead of EXEC_STARTED */
	char spawn_msg[256];
	int exited; /* EXIT seen: the stream is closed */
	struct sbx_exit exit;
	int abandoned; /* freed by the caller while running */
	int has_stdin;
	int stdin_closed;
	uint32_t out_credit;  /* bytes the agent may still send us */
	uint32_t out_unacked; /* consumed, not yet returned with WINDOW */
	uint64_t in_credit;   /* bytes we may still send */
	struct sbx_outq out;  /* output waiting for the reader */
	uint64_t total[3];
	int64_t start_us, end_us;
	char *argv0; /* for audit */
};

enum sbx_state { SBX_BOOTING, SBX_RUNNING, SBX_DEAD };

struct sbx_xfer; /* a file stream, files.c */

struct sandbox {
	struct sandbox *rt_next;
	struct sbx_runtime *rt;
	atomic_int refs;
	char id[33];
	char name[40];
	char *dir, *overlay, *sock_path, *console_log;
	virDomainPtr dom;
	sandbox_kv_t *metadata;
	size_t metadata_count;
	char **env; /* NULL-terminated, merged defaults + options */
	char *workdir;
	struct sbx_audit audit;
	int audit_open;
	unsigned int accel;
	int64_t created_us;

	/* channel */
	int fd;
	int wake_fd;
	pthread_t io_thread;
	int io_started, io_joined;
	pthread_mutex_t wlock; /* one frame at a time onto the socket */
	pthread_mutex_t lock;  /* everything below and all procs */
	pthread_cond_t cond;
	enum sbx_state state;
	int dead_code;
	char dead_reason[256];
	uint32_t next_stream;
	struct sandbox_proc *procs;
	struct sbx_xfer *xfers; /* open file streams */
	uint64_t ping_seq;	/* last PING nonce sent */
	uint64_t pong_seq;	/* highest nonce answered */
	int registered;		/* in the runtime's live list */
	int64_t console_checked_ms;
	_Atomic int64_t deadline_ms; /* lifetime end (monotonic), 0: none */

	pthread_mutex_t kill_lock;
	int killed;

	struct sbx_proxy *proxy; /* egress: set before boot, freed last */
};

/* channel.c */
int sbx_chan_connect(struct sandbox *sb, int64_t deadline_ms);
int sbx_chan_start(struct sandbox *sb);
int sbx_chan_wait_ready(struct sandbox *sb, int64_t deadline_ms);
/* Send one frame; blocks while the socket is full. Returns 0 or error. */
int sbx_chan_send(struct sandbox *sb, uint8_t type, uint32_t stream, const void *payload,
		  size_t len);
/* Send a frame whose payload is one u32 (WINDOW, SIGNAL). */
int sbx_chan_send_u32(struct sandbox *sb, uint8_t type, uint32_t stream, uint32_t value);
void sbx_chan_stop(struct sandbox *sb); /* wake + join the I/O thread */
/* Decode complete frames from buf (guest bytes), keep the partial rest.
 * Returns 0, or -1 on a protocol violation described in why. */
int sbx_chan_decode(struct sandbox *sb, uint8_t *buf, size_t *len, char *why, size_t cap);
/* Wait on sb->cond (lock held) until woken or the monotonic deadline (ms;
 * INT64_MAX: none). Returns ETIMEDOUT, without waiting, once it passed. */
int sbx_wait_locked(struct sandbox *sb, int64_t deadline_ms);
/* The error pending calls get once the sandbox died (lock held): its
 * dead_code (SANDBOX_E_PROTOCOL after a violation) and reason. */
int sbx_dead_error_locked(struct sandbox *sb);
/* Mark dead with a reason (lock held by caller). */
void sbx_mark_dead_locked(struct sandbox *sb, int code, const char *reason);

/* sandbox.c */
/* Tear everything down. `from_io` is set when the I/O thread calls it. */
void sbx_kill_internal(struct sandbox *sb, const char *reason, int from_io);
void sbx_sandbox_unref(struct sandbox *sb);
void sbx_sandbox_ref(struct sandbox *sb);

/* exec.c, called by the I/O thread with sb->lock held */
void sbx_proc_on_exit_locked(struct sandbox_proc *p);
void sbx_proc_free_locked(struct sandbox_proc *p);
/* Fail every pending proc (sandbox died). */
void sbx_procs_fail_locked(struct sandbox *sb);

/* files.h: file streams (xfer.c), the files API (files.c), volumes
 * (volumes.c). */

#endif
