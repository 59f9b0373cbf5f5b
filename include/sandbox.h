/*
 * libsandbox: run untrusted code in throwaway microVMs.
 *
 * One public header. Conventions (README.md has an overview):
 *  - opaque handles, allocated and freed by the library;
 *  - options structs start with `unsigned int version`, are set up with
 *    *_init() (or the *_INIT macros in C), and only ever grow at the end;
 *  - every call takes `unsigned int flags` and rejects bits it does not know;
 *  - errors are negative SANDBOX_E_* codes; sandbox_last_error() gives the
 *    detail for the calling thread;
 *  - each function states whether it is thread-safe.
 */
#ifndef SANDBOX_H
#define SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SANDBOX_BUILDING_LIBRARY) && defined(__GNUC__)
#define SANDBOX_API __attribute__((visibility("default")))
#else
#define SANDBOX_API
#endif

#define SANDBOX_VERSION_MAJOR 0
#define SANDBOX_VERSION_MINOR 1
#define SANDBOX_VERSION_PATCH 0

/* ---------------------------------------------------------------- errors */

/* Error codes. Numbered explicitly; new codes are only appended. */
typedef enum sandbox_error {
	SANDBOX_OK = 0,
	SANDBOX_E_INVAL = -1,	    /* an argument or option is invalid */
	SANDBOX_E_NOMEM = -2,	    /* out of memory */
	SANDBOX_E_FLAGS = -3,	    /* unknown flag bits */
	SANDBOX_E_VERSION = -4,	    /* options struct version not supported */
	SANDBOX_E_UNSUPPORTED = -5, /* option valid but not supported yet */
	SANDBOX_E_IMAGE = -6,	    /* guest image missing or corrupt */
	SANDBOX_E_LIBVIRT = -7,	    /* libvirt unreachable or failed */
	SANDBOX_E_BOOT = -8,	    /* the guest did not come up */
	SANDBOX_E_PROTOCOL = -9,    /* the guest agent broke the protocol */
	SANDBOX_E_DEAD = -10,	    /* the sandbox is no longer running */
	SANDBOX_E_TIMEOUT = -11,    /* a wait ran out of time */
	SANDBOX_E_NOTFOUND = -12,   /* no such sandbox, file or command */
	SANDBOX_E_EXEC = -13,	    /* the command could not be started */
	SANDBOX_E_IO = -14,	    /* host-side I/O error */
	SANDBOX_E_BUSY = -15,	    /* state directory used by another process */
	SANDBOX_E_ACCEL = -16,	    /* requested accelerator not usable here */
	SANDBOX_E_PERM = -17,	    /* permission denied */
	SANDBOX_E_ABORTED = -18,    /* an output callback asked to stop */
	SANDBOX_E_ISDIR = -19,	    /* is a directory (a file was expected) */
	SANDBOX_E_NOTDIR = -20,	    /* not a directory (a directory was expected) */
	SANDBOX_E_EXISTS = -21,	    /* already exists */
	SANDBOX_E_NOSPACE = -22,    /* no space left (guest disk or volume) */
	SANDBOX_E_NOTEMPTY = -23,   /* directory not empty */
	SANDBOX_E_TOOBIG = -24	    /* larger than the caller's limit */
} sandbox_error_t;

/* Static English text for a code. Never NULL. Thread-safe. */
SANDBOX_API const char *sandbox_strerror(int code);

/* Detail of the last error on the calling thread ("" if none). The pointer
 * stays valid until the next failing call on this thread. Thread-safe
 * (thread-local). */
SANDBOX_API const char *sandbox_last_error(void);

/* Library version string, e.g. "0.1.0". Thread-safe. */
SANDBOX_API const char *sandbox_version(void);

/* --------------------------------------------------------------- options */

typedef struct sandbox sandbox_t;		/* a running (or dead) sandbox */
typedef struct sandbox_proc sandbox_proc_t;	/* a command in a sandbox */
typedef struct sandbox_result sandbox_result_t; /* how a command ended */

/* Element structs below are frozen: they never change once released. */

typedef struct sandbox_kv {
	const char *key;
	const char *value;
} sandbox_kv_t;

/* Secret flags */
#define SANDBOX_SECRET_SUBSTITUTE_BODY 0x1u

typedef struct sandbox_secret {
	const char *name;	  /* environment variable name in the guest */
	const char *value;	  /* real value: stays in host memory only */
	const char *const *hosts; /* NULL-terminated allow_net-style patterns */
	unsigned int flags;
} sandbox_secret_t;

/* Volume flags */
#define SANDBOX_VOLUME_READONLY 0x1u

typedef struct sandbox_volume {
	const char *host_path;	/* existing host directory */
	const char *guest_path; /* absolute mount point in the guest */
	unsigned int flags;
} sandbox_volume_t;

typedef enum sandbox_accel {
	SANDBOX_ACCEL_AUTO = 0, /* KVM where it can boot the guest, else TCG */
	SANDBOX_ACCEL_KVM = 1,
	SANDBOX_ACCEL_TCG = 2
} sandbox_accel_t;

/* Audit callback: one event as a single JSON object (no newline). Called
 * from library threads, possibly concurrently for different sandboxes;
 * it must not call back into the library for the same sandbox. */
typedef void (*sandbox_audit_fn)(const char *json, void *userdata);

#define SANDBOX_OPTIONS_VERSION 2u

typedef struct sandbox_options {
	unsigned int version; /* SANDBOX_OPTIONS_VERSION */
	/* Image directory; NULL: $SANDBOX_IMAGE, else the installed default. */
	const char *image;
	unsigned int memory_mb; /* guest RAM, 64..65536; default 512 */
	unsigned int vcpus;	/* 1..64; default 1 */
	/* NULL-terminated "NAME=VALUE" list given to every command. */
	const char *const *env;
	/* Default working directory of commands (absolute); NULL: "/root". */
	const char *workdir;
	/* Lifetime in seconds after which the sandbox is killed; 0: none. */
	unsigned int timeout_s;
	const sandbox_kv_t *metadata; /* key/value pairs carried in audit */
	size_t metadata_count;
	/* libvirt URI; NULL: qemu:///embed?root=<state_dir>/libvirt. */
	const char *libvirt_uri;
	/* State directory; NULL: $SANDBOX_STATE_DIR, else /var/lib/libsandbox
	 * for root and $XDG_STATE_HOME/libsandbox otherwise. */
	const char *state_dir;
	sandbox_accel_t accel; /* AUTO: $SANDBOX_ACCEL, else detection */
	/* Audit sinks: a JSON Lines file (appended) and/or a callback. */
	const char *audit_log;
	sandbox_audit_fn audit_cb;
	void *audit_userdata;
	/* Secrets: each command sees NAME=<placeholder>; the proxy puts the
	 * value into requests to the secret's hosts only (TLS interception;
	 * see README). */
	const sandbox_secret_t *secrets;
	size_t secrets_count;
	/* Outbound allowlist, NULL-terminated patterns (see README: host,
	 * host:port, *.domain, IPv4, [IPv6], each optionally with :port).
	 * NULL: everything is allowed (still through the proxy, audited); a
	 * list holding only NULL: nothing. Host-local addresses (loopback,
	 * link-local, 0.0.0.0, the host's own) are reachable only through an
	 * IP pattern naming them. The VM has no network card: its only way
	 * out is the sandbox's proxy thread in this process. */
	const char *const *allow_net;
	/* Host directories shared into the guest (at most 16; see
	 * sandbox_volume_t). The QEMU user (libvirt-qemu) must be able to
	 * read the directory, and write it unless READONLY. */
	const sandbox_volume_t *volumes;
	size_t volumes_count;
	/* Seconds to wait for the guest agent after start; default 120. */
	unsigned int boot_timeout_s;
	/* ---- version 2 ---- */
	/* Upstream DNS servers the proxy asks, NULL-terminated: "IPv4",
	 * "IPv4:port", "[IPv6]" or "[IPv6]:port"; NULL: the host's resolver
	 * configuration (/etc/resolv.conf). */
	const char *const *dns_servers;
	/* Extra CA file (PEM) trusted for upstream TLS besides the host's
	 * store. */
	const char *tls_ca_file;
	/* Host patterns (SNI) tunnelled without TLS interception, for pinned
	 * or mutual-TLS clients; a secret may not name them. */
	const char *const *tls_passthrough;
	unsigned int net_flags; /* SANDBOX_NET_* */
} sandbox_options_t;

/* net_flags: block requests carrying a secret's placeholder to a host not
 * on that secret's list, instead of sending the placeholder unchanged. */
#define SANDBOX_NET_BLOCK_MISDIRECTED 0x1u

#define SANDBOX_OPTIONS_INIT                                                                       \
	{                                                                                          \
		SANDBOX_OPTIONS_VERSION, NULL, 512, 1, NULL, NULL, 0, NULL, 0, NULL, NULL,         \
		    SANDBOX_ACCEL_AUTO, NULL, NULL, NULL, NULL, 0, NULL, NULL, 0, 120, NULL, NULL, \
		    NULL, 0                                                                        \
	}

/* Fill *opts with defaults for the given version. Returns 0, or
 * SANDBOX_E_VERSION / SANDBOX_E_INVAL. Thread-safe. */
SANDBOX_API int sandbox_options_init(sandbox_options_t *opts, unsigned int version);

/* Output streams */
#define SANDBOX_STDOUT 1
#define SANDBOX_STDERR 2

/* Streaming output callback. Return 0 to go on; non-zero kills the
 * command (SIGKILL) and makes the call fail with SANDBOX_E_ABORTED. Called
 * on the thread that called sandbox_exec(). */
typedef int (*sandbox_output_fn)(int stream, const void *data, size_t len, void *userdata);

#define SANDBOX_EXEC_OPTIONS_VERSION 1u

typedef struct sandbox_exec_options {
	unsigned int version; /* SANDBOX_EXEC_OPTIONS_VERSION */
	/* NULL-terminated "NAME=VALUE" added to (and overriding) the
	 * sandbox's environment for this command. */
	const char *const *env;
	const char *cwd;	 /* absolute; NULL: the sandbox's workdir */
	unsigned int timeout_ms; /* kill the process group after; 0: none */
	/* sandbox_exec() only: bytes fed to stdin, then EOF. */
	const void *stdin_data;
	size_t stdin_len;
	/* sandbox_exec() only: stream output here instead of capturing. */
	sandbox_output_fn on_output;
	void *userdata;
	/* Captured bytes kept per stream; the rest is counted and dropped.
	 * Default 64 MiB. */
	size_t max_capture;
} sandbox_exec_options_t;

#define SANDBOX_EXEC_OPTIONS_INIT                                                                  \
	{                                                                                          \
		SANDBOX_EXEC_OPTIONS_VERSION, NULL, NULL, 0, NULL, 0, NULL, NULL, (size_t)64 << 20 \
	}

/* Thread-safe. */
SANDBOX_API int sandbox_exec_options_init(sandbox_exec_options_t *opts, unsigned int version);

/* ------------------------------------------------------------- lifecycle */

/* Boot a new sandbox and wait until its agent is ready. On failure nothing
 * is left behind (no VM, overlay, socket or thread) and *out is NULL.
 * opts may be NULL for defaults. flags: none defined, must be 0.
 * Thread-safe: several threads may create sandboxes at once. */
SANDBOX_API int sandbox_create(sandbox_t **out, const sandbox_options_t *opts, unsigned int flags);

/* Destroy the VM and delete its disk. Running commands fail with
 * SANDBOX_E_DEAD. Idempotent: killing a dead sandbox returns 0.
 * flags: must be 0. Thread-safe; callable from any thread, also while
 * other threads are using the sandbox. */
SANDBOX_API int sandbox_kill(sandbox_t *sb, unsigned int flags);

/* Release a reference (kills the sandbox when it is the last one and the
 * sandbox is still running). NULL is a no-op. Not thread-safe with other
 * calls on the same reference. */
SANDBOX_API void sandbox_free(sandbox_t *sb);

/* The sandbox's id (32 hex characters). Thread-safe. */
SANDBOX_API const char *sandbox_id(const sandbox_t *sb);

/* 1 if running, 0 if dead (killed, expired, crashed). Thread-safe. */
SANDBOX_API int sandbox_is_running(sandbox_t *sb);

/* Metadata lookup: the value for key, or NULL. Thread-safe. */
SANDBOX_API const char *sandbox_metadata_get(const sandbox_t *sb, const char *key);
/* Number of metadata pairs and the i-th pair. Thread-safe. */
SANDBOX_API size_t sandbox_metadata_count(const sandbox_t *sb);
SANDBOX_API int sandbox_metadata_at(const sandbox_t *sb, size_t i, const char **key,
				    const char **value);

/* New references to this process's running sandboxes. Free each with
 * sandbox_free() (which then does not kill: the creator's reference keeps
 * it alive) and the array with sandbox_list_free(). flags: must be 0.
 * Thread-safe. */
SANDBOX_API int sandbox_list(sandbox_t ***list, size_t *count, unsigned int flags);
SANDBOX_API void sandbox_list_free(sandbox_t **list, size_t count);

/* Round trip to the guest agent without running anything (a health check).
 * flags: must be 0. Thread-safe. */
SANDBOX_API int sandbox_ping(sandbox_t *sb, unsigned int flags);

/* Replace a running sandbox's allow_net (same meaning as the option: NULL
 * allows everything, a list holding only NULL nothing). New connections and
 * DNS queries follow the new list at once; connections already open stay
 * open. A malformed pattern fails with SANDBOX_E_INVAL naming it, and the
 * old list stays. Audited as "net.policy". flags: must be 0. Thread-safe.
 * Since 0.2 (LIBSANDBOX_1.1). */
SANDBOX_API int sandbox_set_allow_net(sandbox_t *sb, const char *const *allow_net,
				      unsigned int flags);

/* ------------------------------------------------------------- commands */

/* Run argv (argv[0] searched in PATH) and wait for it to end. Output is
 * captured into *result unless opts->on_output is set. A command that ran
 * returns 0 whatever its exit status; read it from the result. A command
 * or cwd that does not exist gives SANDBOX_E_NOTFOUND, other failures to
 * start it SANDBOX_E_EXEC; a dead sandbox SANDBOX_E_DEAD. flags: must be 0.
 * Thread-safe: several commands may run at once in one sandbox. */
SANDBOX_API int sandbox_exec(sandbox_t *sb, const char *const *argv,
			     const sandbox_exec_options_t *opts, sandbox_result_t **result,
			     unsigned int flags);

/* sandbox_proc_start flags */
#define SANDBOX_PROC_STDIN 0x1u /* keep stdin open for sandbox_proc_write */

/* Start argv and return at once. opts->stdin_data and on_output are not
 * used here (use sandbox_proc_write / sandbox_proc_read). Thread-safe. */
SANDBOX_API int sandbox_proc_start(sandbox_t *sb, const char *const *argv,
				   const sandbox_exec_options_t *opts, sandbox_proc_t **proc,
				   unsigned int flags);

/* Write to stdin, blocking while the guest has no room. flags: 0.
 * Not thread-safe for one proc (one writer at a time). */
SANDBOX_API int sandbox_proc_write(sandbox_proc_t *proc, const void *data, size_t len,
				   unsigned int flags);
/* Close stdin (EOF in the guest). flags: 0. */
SANDBOX_API int sandbox_proc_close_stdin(sandbox_proc_t *proc, unsigned int flags);

/* Read output. Returns bytes read (> 0) with *stream set to SANDBOX_STDOUT
 * or SANDBOX_STDERR; 0 when the command has ended and all output has been
 * read; SANDBOX_E_TIMEOUT after timeout_ms (-1: wait forever). flags: 0.
 * Not thread-safe for one proc (one reader at a time). */
SANDBOX_API int sandbox_proc_read(sandbox_proc_t *proc, int *stream, void *buf, size_t cap,
				  int timeout_ms, unsigned int flags);

/* Send a signal (1..64) to the command's process group. flags: 0.
 * Thread-safe. */
SANDBOX_API int sandbox_proc_signal(sandbox_proc_t *proc, int signo, unsigned int flags);

/* Wait for the command to end (output not yet read is discarded) and
 * return how it ended. timeout_ms -1: forever. flags: 0. */
SANDBOX_API int sandbox_proc_wait(sandbox_proc_t *proc, int timeout_ms, sandbox_result_t **result,
				  unsigned int flags);

/* The command's pid in the guest. Thread-safe. */
SANDBOX_API int sandbox_proc_pid(const sandbox_proc_t *proc);

/* Free; a command still running is killed. NULL is a no-op. */
SANDBOX_API void sandbox_proc_free(sandbox_proc_t *proc);

/* Result accessors. Thread-safe (results are immutable). */
/* Exit code 0..255, or -1 if the command died by a signal. */
SANDBOX_API int sandbox_result_exit_code(const sandbox_result_t *r);
/* Terminating signal, or 0 if the command exited. */
SANDBOX_API int sandbox_result_signal(const sandbox_result_t *r);
/* 1 if the per-command timeout killed it. */
SANDBOX_API int sandbox_result_timed_out(const sandbox_result_t *r);
/* Captured output (not NUL-terminated; may be NULL when empty). */
SANDBOX_API const void *sandbox_result_stdout(const sandbox_result_t *r, size_t *len);
SANDBOX_API const void *sandbox_result_stderr(const sandbox_result_t *r, size_t *len);
/* Total bytes the command wrote to a stream, captured or not. */
SANDBOX_API uint64_t sandbox_result_output_total(const sandbox_result_t *r, int stream);
/* Wall time from start to end, in milliseconds. */
SANDBOX_API double sandbox_result_duration_ms(const sandbox_result_t *r);
SANDBOX_API void sandbox_result_free(sandbox_result_t *r);

/* ------------------------------------------------------------------ files */

/* Paths in the guest are used as given (absolute, or relative to "/").
 * Host paths name only what the call may touch: the source of an upload,
 * the destination of a download. Transfers are streamed with flow
 * control: host memory stays bounded whatever the size. Errors from the
 * guest map to SANDBOX_E_NOTFOUND, _ISDIR, _NOTDIR, _EXISTS, _PERM,
 * _NOSPACE, _NOTEMPTY; other guest failures to SANDBOX_E_IO, with detail
 * in sandbox_last_error(). */

/* Flags of the file calls (each call lists the ones it accepts). */
#define SANDBOX_FILE_PARENTS 0x1u   /* create missing parent directories */
#define SANDBOX_FILE_RECURSIVE 0x2u /* remove: a whole directory tree */
#define SANDBOX_FILE_NOFOLLOW 0x4u  /* stat: do not follow a final symlink */

/* File types in sandbox_file_info_t */
#define SANDBOX_FILE_REGULAR 1
#define SANDBOX_FILE_DIRECTORY 2
#define SANDBOX_FILE_SYMLINK 3
#define SANDBOX_FILE_OTHER 4 /* device, fifo or socket */

/* One file's metadata (frozen element struct). Strings are owned by the
 * array they came in. */
typedef struct sandbox_file_info {
	const char *name;	 /* entry name in a listing; the path for stat */
	int type;		 /* SANDBOX_FILE_* */
	unsigned int mode;	 /* permission bits (07777) */
	uint64_t size;		 /* bytes */
	int64_t mtime;		 /* seconds since the epoch */
	uint32_t uid, gid;	 /* owner in the guest */
	const char *link_target; /* symlinks: the target; else NULL */
} sandbox_file_info_t;

/* Write len bytes to a file in the guest, creating or truncating it, and
 * set its permission bits to mode (0: 0644). flags: SANDBOX_FILE_PARENTS.
 * Thread-safe. */
SANDBOX_API int sandbox_file_write(sandbox_t *sb, const char *path, const void *data, size_t len,
				   unsigned int mode, unsigned int flags);

/* Read a regular file into *data (malloc'd, free with sandbox_buffer_free;
 * NULL when empty) and *len. A file larger than max_len bytes fails with
 * SANDBOX_E_TOOBIG (max_len 0: 64 MiB). flags: must be 0. Thread-safe. */
SANDBOX_API int sandbox_file_read(sandbox_t *sb, const char *path, void **data, size_t *len,
				  size_t max_len, unsigned int flags);

/* Free a buffer returned by sandbox_file_read. NULL is a no-op.
 * Thread-safe. */
SANDBOX_API void sandbox_buffer_free(void *data);

/* Metadata of one path into *info (one element; free with
 * sandbox_file_info_free(info, 1)). flags: SANDBOX_FILE_NOFOLLOW.
 * Thread-safe. */
SANDBOX_API int sandbox_file_stat(sandbox_t *sb, const char *path, sandbox_file_info_t **info,
				  unsigned int flags);

/* Entries of a directory ("." and ".." left out, in no particular order).
 * Free with sandbox_file_info_free(*entries, *count). At most 1048576
 * entries and 128 MiB in all (else SANDBOX_E_TOOBIG). flags: must be 0.
 * Thread-safe. */
SANDBOX_API int sandbox_file_list(sandbox_t *sb, const char *path, sandbox_file_info_t **entries,
				  size_t *count, unsigned int flags);

/* Free what sandbox_file_stat / sandbox_file_list returned. Thread-safe. */
SANDBOX_API void sandbox_file_info_free(sandbox_file_info_t *info, size_t count);

/* Make a directory (mode 0: 0755). flags: SANDBOX_FILE_PARENTS (like
 * mkdir -p: no error if it exists). Thread-safe. */
SANDBOX_API int sandbox_file_mkdir(sandbox_t *sb, const char *path, unsigned int mode,
				   unsigned int flags);

/* Remove a file, symlink or empty directory. flags:
 * SANDBOX_FILE_RECURSIVE (a whole tree, symlinks not followed).
 * Thread-safe. */
SANDBOX_API int sandbox_file_remove(sandbox_t *sb, const char *path, unsigned int flags);

/* Copy a host file or directory tree into the guest at guest_path (a
 * file is created or replaced; a directory is created or merged into).
 * Symlinks inside a tree are copied as symlinks; other special files are
 * skipped. flags: SANDBOX_FILE_PARENTS. Thread-safe. */
SANDBOX_API int sandbox_file_upload(sandbox_t *sb, const char *host_path, const char *guest_path,
				    unsigned int flags);

/* Copy a guest file or directory tree out to host_path, which must not
 * exist (its parent must). Nothing outside host_path is touched: guest
 * symlinks become symlinks (never followed on the host) and entry names
 * are checked; devices, fifos and sockets are skipped. On failure what was
 * created at host_path is removed. flags: must be 0. Thread-safe. */
SANDBOX_API int sandbox_file_download(sandbox_t *sb, const char *guest_path, const char *host_path,
				      unsigned int flags);

#ifdef __cplusplus
}
#endif

#endif /* SANDBOX_H */
