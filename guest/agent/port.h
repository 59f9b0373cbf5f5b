/* The byte stream to the host: the virtio-serial port in a VM, or a UNIX
 * socket in test mode. Owns connection state, the incoming frame buffer
 * and the outgoing frame queue; knows framing but not frame meanings. */
#ifndef AGENT_PORT_H
#define AGENT_PORT_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "proto.h"

enum port_mode {
	PORT_VIRTIO,  /* /dev/vportNpM named SBX_PROTO_PORT_NAME */
	PORT_CONNECT, /* test mode: connect to a UNIX socket, reconnect on loss */
	PORT_LISTEN,  /* test mode: accept one UNIX connection at a time */
};

enum port_state {
	PS_DOWN,    /* no host: wait for one */
	PS_UP,	    /* host connected, HELLO sent */
	PS_CLOSING, /* framing lost: flush what is queued, ignore input */
};

/* Above this much queued output the agent stops reading command pipes. */
#define PORT_OUT_SOFT_MAX (1u << 20)

struct port {
	enum port_mode mode;
	enum port_state state;
	char path[108];
	int fd;		     /* the device, or the connected socket; -1 */
	int lfd;	     /* listening socket (PORT_LISTEN) */
	uint64_t retry_at;   /* next poll/connect attempt while down */
	uint64_t give_up_at; /* PORT_CONNECT: stop retrying then */
	size_t in_pending;   /* bytes of the frame last returned */
	struct buf in, out;
};

/* Find and open the virtio port, waiting up to wait_ms for it to appear. */
int port_open_virtio(struct port *p, unsigned wait_ms);
int port_open_connect(struct port *p, const char *path);
int port_open_listen(struct port *p, const char *path);

/* While down: 1 when a host connection was just made, 0 not yet, -1 when
 * PORT_CONNECT has given up. */
int port_try_up(struct port *p, uint64_t now);

/* Fill *pfd for the next poll(); returns 0 if there is nothing to poll
 * (and lowers *timeout to the next retry). */
int port_poll_prepare(struct port *p, struct pollfd *pfd, uint64_t now, int *timeout);

/* Read what is available. Returns -1 when the host is gone (EOF/error);
 * frames already read stay available to port_frame. */
int port_fill(struct port *p);
/* Next complete frame: 1 (payload valid until the next call), 0 when more
 * bytes are needed, -1 on a malformed header (framing is lost). */
int port_frame(struct port *p, struct sbx_frame_hdr *h, const uint8_t **payload);

/* Queue a frame. Silently dropped when no host is connected. */
int port_send(struct port *p, uint8_t type, uint32_t stream, const void *payload, size_t len);
/* Queue an ERROR frame: i32 errno, string message (formatted, bounded). */
int port_send_error(struct port *p, uint32_t stream, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Zero-copy data frames: space for up to `max` payload bytes, then commit
 * the n actually filled in. */
uint8_t *port_data_reserve(struct port *p, size_t max);
void port_data_commit(struct port *p, uint8_t type, uint32_t stream, size_t n);
static inline size_t port_out_len(const struct port *p)
{
	return buf_len(&p->out);
}
static inline int port_out_room(const struct port *p)
{
	return p->state == PS_UP && buf_len(&p->out) < PORT_OUT_SOFT_MAX;
}

/* Write queued frames; -1 when the host is gone. */
int port_flush(struct port *p);
/* Connection lost: forget all state and wait for the next host. */
void port_drop(struct port *p, uint64_t now);
/* Framing lost: send what is queued (the ERROR saying so), then drop. */
void port_close_soon(struct port *p);
/* True once a closing port has sent everything and can be dropped. A
 * virtio port cannot hang up on the host, so it stays closing (discarding
 * input) until the host disconnects. */
int port_closing_done(const struct port *p);

#endif
