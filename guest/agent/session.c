/* Host frame dispatch (doc/protocol.md). */
#define _GNU_SOURCE
#include "session.h"
#include "exec.h"
#include "files.h"
#include "log.h"
#include "net.h"
#include "sysinit.h"

#include <errno.h>
#include <string.h>

#define PING_MAX 64

/* Large enough for the maximum argc and envc, so decoding never fails
 * for lack of room; static because it is 100 KiB and used one at a time. */
static const char *g_argv[SBX_EXEC_MAX_ARGS];
static uint32_t g_argv_len[SBX_EXEC_MAX_ARGS];
static const char *g_env[SBX_EXEC_MAX_ENV];
static uint32_t g_env_len[SBX_EXEC_MAX_ENV];

void session_hello(struct port *p)
{
	uint8_t pl[64];
	struct sbx_wr w;
	sbx_wr_init(&w, pl, sizeof pl);
	sbx_wr_u16(&w, SBX_PROTO_VERSION);
	sbx_wr_u16(&w, 0);
	sbx_wr_u32(&w, SBX_PROTO_MAX_PAYLOAD);
	sbx_wr_u32(&w, SBX_PROTO_INITIAL_WINDOW);
	sbx_wr_str(&w, AGENT_VERSION, strlen(AGENT_VERSION));
	port_send(p, SBX_T_HELLO, 0, pl, w.off);
}

static void control_frame(struct port *p, const struct sbx_frame_hdr *h, const uint8_t *payload)
{
	switch (h->type) {
	case SBX_T_PING:
		if (h->len > PING_MAX) {
			port_send_error(p, 0, EINVAL, "PING payload of %u bytes (max %u)", h->len,
					PING_MAX);
			return;
		}
		port_send(p, SBX_T_PONG, 0, payload, h->len);
		return;
	case SBX_T_SHUTDOWN:
		if (h->len != 0) {
			port_send_error(p, 0, EINVAL, "SHUTDOWN with a payload");
			return;
		}
		exec_abort_all();
		sys_shutdown(0);
	default:
		port_send_error(p, 0, EPROTO, "frame type 0x%02x not valid on stream 0", h->type);
		return;
	}
}

static void exec_start_frame(struct port *p, const struct sbx_frame_hdr *h, const uint8_t *payload,
			     uint64_t now)
{
	if (exec_recently_closed(h->stream)) {
		port_send_error(p, 0, EPROTO, "EXEC_START reuses stream %u", h->stream);
		return;
	}
	struct sbx_exec_start es;
	es.argv = g_argv;
	es.argv_len = g_argv_len;
	es.env = g_env;
	es.env_len = g_env_len;
	if (sbx_exec_start_decode(payload, h->len, &es, SBX_EXEC_MAX_ARGS, SBX_EXEC_MAX_ENV) != 0) {
		/* The host waits on this stream for EXEC_STARTED or ERROR. */
		port_send_error(p, h->stream, EINVAL, "malformed EXEC_START");
		exec_mark_closed(h->stream);
		return;
	}
	exec_start(h->stream, &es, now);
}

/* Returns 0, or an errno with *msg set: the frame breaks a rule. */
static int exec_frame(struct exec *e, const struct sbx_frame_hdr *h, const uint8_t *payload,
		      const char **msg)
{
	struct sbx_rd r;
	sbx_rd_init(&r, payload, h->len);
	switch (h->type) {
	case SBX_T_STDIN: return exec_on_stdin(e, payload, h->len, msg);
	case SBX_T_STDIN_EOF:
		if (h->len != 0)
			break;
		return exec_on_stdin_eof(e, msg);
	case SBX_T_WINDOW: {
		uint32_t credit = sbx_rd_u32(&r);
		if (!sbx_rd_done(&r))
			break;
		exec_on_window(e, credit);
		return 0;
	}
	case SBX_T_SIGNAL: {
		uint32_t sig = sbx_rd_u32(&r);
		if (!sbx_rd_done(&r))
			break;
		return exec_on_signal(e, sig, msg);
	}
	case SBX_T_EXEC_START: *msg = "EXEC_START on a stream already open"; return EPROTO;
	default: *msg = "frame type not valid from the host on an exec stream"; return EPROTO;
	}
	*msg = "malformed payload";
	return EINVAL;
}

/* Frames the host may legitimately send for a stream that has just ended
 * (it had not seen our EXIT yet). */
static int late_frame_ok(uint8_t type)
{
	return type == SBX_T_STDIN || type == SBX_T_STDIN_EOF || type == SBX_T_WINDOW ||
	       type == SBX_T_SIGNAL;
}

static void stream_frame(struct port *p, const struct sbx_frame_hdr *h, const uint8_t *payload,
			 uint64_t now)
{
	struct exec *e = exec_find(h->stream);
	if (!e) {
		if (h->type == SBX_T_EXEC_START)
			exec_start_frame(p, h, payload, now);
		else if (!(late_frame_ok(h->type) && exec_recently_closed(h->stream)))
			port_send_error(p, 0, EPROTO,
					"frame type 0x%02x for stream %u, which is not open",
					h->type, h->stream);
		return;
	}
	const char *msg = NULL;
	int err = exec_frame(e, h, payload, &msg);
	if (err) {
		port_send_error(p, h->stream, err, "%s (frame type 0x%02x)", msg, h->type);
		exec_abort(e);
	}
}

void session_frame(struct port *p, const struct sbx_frame_hdr *h, const uint8_t *payload,
		   uint64_t now)
{
	if (h->stream == 0)
		control_frame(p, h, payload);
	else if (h->stream & SBX_STREAM_AGENT)
		net_frame(p, h, payload, now);
	else if (files_owns(h))
		files_frame(p, h, payload);
	else
		stream_frame(p, h, payload, now);
}

void session_framing_error(struct port *p)
{
	log_msg("malformed frame header from the host: dropping the connection");
	port_send_error(p, 0, EPROTO, "malformed frame header: closing the connection");
	exec_abort_all();
	net_reset();
	files_abort_all();
	port_close_soon(p);
}

void session_lost(struct port *p, uint64_t now)
{
	exec_abort_all();
	net_reset();
	files_abort_all();
	port_drop(p, now);
}
