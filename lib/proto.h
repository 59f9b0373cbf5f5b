/* Channel protocol between the host library and sandbox-agent.
 * Shared, unchanged, by both sides; doc/protocol.md is the specification.
 * Everything here is pure encoding: no I/O, no allocation. */
#ifndef SBX_PROTO_H
#define SBX_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define SBX_PROTO_VERSION 2u
#define SBX_PROTO_HDR_SIZE 12u
/* Largest payload either side may send; a bigger length is a framing error. */
#define SBX_PROTO_MAX_PAYLOAD 65536u
/* Credit each side grants per stream and direction before any WINDOW. */
#define SBX_PROTO_INITIAL_WINDOW (256u * 1024u)
/* Name of the virtio-serial port the agent looks for. */
#define SBX_PROTO_PORT_NAME "org.libsandbox.agent"

enum sbx_frame_type {
	/* control, stream 0 */
	SBX_T_HELLO = 0x01,    /* agent -> host */
	SBX_T_PING = 0x02,     /* host -> agent, payload echoed in PONG */
	SBX_T_PONG = 0x03,     /* agent -> host */
	SBX_T_ERROR = 0x04,    /* agent -> host, stream 0 or an exec stream */
	SBX_T_SHUTDOWN = 0x05, /* host -> agent: sync and power off */
	/* exec streams, id chosen by the host */
	SBX_T_EXEC_START = 0x10,   /* host -> agent */
	SBX_T_EXEC_STARTED = 0x11, /* agent -> host */
	SBX_T_STDIN = 0x12,	   /* host -> agent, data */
	SBX_T_STDIN_EOF = 0x13,	   /* host -> agent */
	SBX_T_STDOUT = 0x14,	   /* agent -> host, data */
	SBX_T_STDERR = 0x15,	   /* agent -> host, data */
	SBX_T_EXIT = 0x16,	   /* agent -> host, last frame of a stream */
	SBX_T_SIGNAL = 0x17,	   /* host -> agent */
	SBX_T_WINDOW = 0x20,	   /* either: grant more data credit */
	/* network streams, id chosen by the agent (SBX_STREAM_AGENT bit set) */
	SBX_T_TCP_OPEN = 0x30,	/* agent -> host: a guest TCP connection */
	SBX_T_TCP_DATA = 0x31,	/* either, data */
	SBX_T_TCP_EOF = 0x32,	/* either: no more data from this side */
	SBX_T_TCP_CLOSE = 0x33, /* either: the stream is over */
	SBX_T_DNS_QUERY = 0x38, /* agent -> host: one DNS message */
	SBX_T_DNS_REPLY = 0x39, /* host -> agent: the answer; ends the stream */
	/* file streams, id chosen by the host (doc/protocol.md, "File streams") */
	SBX_T_FILE_OP = 0x40,	  /* host -> agent: first frame of a file stream */
	SBX_T_FILE_ENTRY = 0x41,  /* either: one file, directory or symlink */
	SBX_T_FILE_DATA = 0x42,	  /* either: bytes of the last FILE_ENTRY (a file) */
	SBX_T_FILE_END = 0x43,	  /* either: no more entries; from the agent: success */
	SBX_T_FILE_CANCEL = 0x44, /* host -> agent: stop; the agent answers ERROR */
};

/* Stream ids with this bit set are chosen by the agent (network streams);
 * ids without it by the host (exec, files). */
#define SBX_STREAM_AGENT 0x80000000u

/* TCP_OPEN payload: u8 family (4/6), u8 0, u16 port, u8 addr[16] */
#define SBX_TCP_OPEN_SIZE 20u
/* TCP_CLOSE: u8 how, u8 reason, u16 0 */
#define SBX_TCP_CLOSE_GRACEFUL 0u /* flush what was received, then FIN */
#define SBX_TCP_CLOSE_ABORT 1u	  /* discard, reset the connection */
enum sbx_tcp_reason {
	SBX_TCP_R_DONE = 0,    /* both directions finished */
	SBX_TCP_R_POLICY = 1,  /* blocked by allow_net */
	SBX_TCP_R_REFUSED = 2, /* upstream refused the connection */
	SBX_TCP_R_UNREACH = 3, /* upstream unreachable or timed out */
	SBX_TCP_R_RESET = 4,   /* the other end reset */
	SBX_TCP_R_LIMIT = 5,   /* too many connections */
	SBX_TCP_R_ERROR = 6,   /* anything else */
};
/* DNS_QUERY payload: u8 transport (0 UDP, 1 TCP), u8[3] 0, message */
#define SBX_DNS_T_UDP 0u
#define SBX_DNS_T_TCP 1u

/* FILE_OP operations */
enum sbx_file_op {
	SBX_FOP_STAT = 1,  /* one FILE_ENTRY (name ""), END */
	SBX_FOP_LIST = 2,  /* a FILE_ENTRY per directory entry, END */
	SBX_FOP_MKDIR = 3, /* END */
	SBX_FOP_REMOVE = 4,
	SBX_FOP_PUT = 5,   /* host sends entries + data + END; agent END */
	SBX_FOP_GET = 6,   /* agent sends entries + data + END */
	SBX_FOP_MOUNT = 7, /* path: mount point, arg: 9p tag */
};
/* FILE_OP flags */
#define SBX_FOP_F_PARENTS 0x1u	 /* MKDIR/PUT: create missing parents */
#define SBX_FOP_F_RECURSIVE 0x2u /* REMOVE: whole tree */
#define SBX_FOP_F_NOFOLLOW 0x4u	 /* STAT: lstat */
#define SBX_FOP_F_REGULAR 0x8u	 /* GET: the path must be a regular file */
#define SBX_FOP_F_READONLY 0x10u /* MOUNT: read-only */
#define SBX_FOP_F_KNOWN 0x1fu
/* FILE_ENTRY types */
enum sbx_file_type {
	SBX_FT_FILE = 1,
	SBX_FT_DIR = 2,
	SBX_FT_SYMLINK = 3,
	SBX_FT_OTHER = 4, /* device, fifo, socket: listed, never transferred */
};
/* Every FILE_ENTRY and FILE_DATA frame uses its payload length plus this
 * much of the stream's credit, so a flood of tiny frames is bounded too. */
#define SBX_FILE_FRAME_COST SBX_PROTO_HDR_SIZE
#define SBX_FILE_PATH_MAX 4095u
#define SBX_FILE_NAME_MAX 255u

struct sbx_file_op_msg {
	uint32_t op, flags, mode;
	const char *path;
	uint32_t path_len;
	const char *arg;
	uint32_t arg_len;
};
/* Both return 0, or -1 (malformed, or a path over SBX_FILE_PATH_MAX). */
int sbx_file_op_decode(const void *p, size_t len, struct sbx_file_op_msg *out);
size_t sbx_file_op_encode(uint8_t *out, size_t cap, const struct sbx_file_op_msg *m);

struct sbx_file_entry {
	uint8_t type;  /* enum sbx_file_type */
	uint32_t mode; /* permission bits, 07777 */
	uint64_t size;
	int64_t mtime; /* seconds since the epoch */
	uint32_t uid, gid;
	const char *name; /* not NUL-terminated; "" for the root of a transfer */
	uint32_t name_len;
	const char *target; /* symlink target (non-empty for symlinks, else "") */
	uint32_t target_len;
};
/* Decode and check shape: known type, mode within 07777, name and target
 * within SBX_FILE_PATH_MAX, a target exactly for symlinks. 0 or -1. */
int sbx_file_entry_decode(const void *p, size_t len, struct sbx_file_entry *out);
size_t sbx_file_entry_encode(uint8_t *out, size_t cap, const struct sbx_file_entry *e);

/* EXEC_START flags */
#define SBX_EXEC_F_STDIN 0x1u /* host will send STDIN; else stdin is /dev/null */
#define SBX_EXEC_F_KNOWN 0x1u

/* EXIT kinds */
#define SBX_EXIT_CODE 0u
#define SBX_EXIT_SIGNAL 1u

struct sbx_frame_hdr {
	uint32_t len;
	uint8_t type;
	uint8_t flags;
	uint16_t reserved;
	uint32_t stream;
};

/* Bounds-checked little-endian reader over one payload. Any read past the
 * end sets `bad` and returns zeroes, so decoders check `bad` once at the end. */
struct sbx_rd {
	const uint8_t *p;
	size_t len;
	size_t off;
	int bad;
};

/* Writer into a caller-provided buffer; overflow sets `bad`. */
struct sbx_wr {
	uint8_t *p;
	size_t cap;
	size_t off;
	int bad;
};

void sbx_hdr_pack(uint8_t out[SBX_PROTO_HDR_SIZE], const struct sbx_frame_hdr *h);
/* Returns 0, or -1 if the header is malformed (length over the maximum,
 * reserved bits set). The type is not checked here: the dispatcher does. */
int sbx_hdr_unpack(const uint8_t in[SBX_PROTO_HDR_SIZE], struct sbx_frame_hdr *h);

void sbx_rd_init(struct sbx_rd *r, const void *p, size_t len);
uint8_t sbx_rd_u8(struct sbx_rd *r);
uint16_t sbx_rd_u16(struct sbx_rd *r);
uint32_t sbx_rd_u32(struct sbx_rd *r);
uint64_t sbx_rd_u64(struct sbx_rd *r);
/* A string is u32 length + bytes, no terminator on the wire. Returns a
 * pointer into the payload (not NUL-terminated) and its length; a string
 * containing a NUL byte is rejected (bad). */
const char *sbx_rd_str(struct sbx_rd *r, uint32_t *len);
/* True when every byte was consumed and nothing was out of bounds. */
int sbx_rd_done(const struct sbx_rd *r);

void sbx_wr_init(struct sbx_wr *w, void *p, size_t cap);
void sbx_wr_u8(struct sbx_wr *w, uint8_t v);
void sbx_wr_u16(struct sbx_wr *w, uint16_t v);
void sbx_wr_u32(struct sbx_wr *w, uint32_t v);
void sbx_wr_u64(struct sbx_wr *w, uint64_t v);
void sbx_wr_str(struct sbx_wr *w, const char *s, size_t len);
void sbx_wr_bytes(struct sbx_wr *w, const void *p, size_t len);

/* Decoded EXEC_START. Strings point into the payload; arrays are filled up
 * to the caller's capacity. */
#define SBX_EXEC_MAX_ARGS 4096u
#define SBX_EXEC_MAX_ENV 4096u
struct sbx_exec_start {
	uint32_t flags;
	uint32_t timeout_ms; /* 0 = none */
	uint32_t argc;
	uint32_t envc;
	const char *cwd;
	uint32_t cwd_len;
	const char **argv; /* caller-provided, argc entries used */
	uint32_t *argv_len;
	const char **env;
	uint32_t *env_len;
};
/* Returns 0 or -1 (malformed, counts over the maxima or the capacities). */
int sbx_exec_start_decode(const void *p, size_t len, struct sbx_exec_start *out, size_t argv_cap,
			  size_t env_cap);

struct sbx_exit {
	uint8_t kind; /* SBX_EXIT_CODE or SBX_EXIT_SIGNAL */
	uint8_t timed_out;
	int32_t value; /* exit code or signal number */
};
int sbx_exit_decode(const void *p, size_t len, struct sbx_exit *out);

/* Decoded ERROR frame: errno (an out-of-range value from the guest becomes
 * EIO) and the message, truncated and NUL-terminated into msg. Returns 0
 * or -1 (malformed). */
int sbx_error_decode(const void *p, size_t len, int *err, char *msg, size_t cap);
size_t sbx_exit_encode(uint8_t out[8], const struct sbx_exit *e);

#endif
