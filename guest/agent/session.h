/* The protocol conversation on one host connection: HELLO, and what each
 * host frame means (doc/protocol.md). */
#ifndef AGENT_SESSION_H
#define AGENT_SESSION_H

#include <stdint.h>

#include "port.h"
#include "proto.h"

#ifndef AGENT_VERSION
#define AGENT_VERSION "sandbox-agent 0.1"
#endif

void session_hello(struct port *p);
/* Handle one well-framed host frame. Malformed content is answered with
 * ERROR (on the exec stream, which is then closed, or on stream 0) and
 * the conversation goes on. */
void session_frame(struct port *p, const struct sbx_frame_hdr *h, const uint8_t *payload,
		   uint64_t now);
/* The framing is lost (bad header): say so, drop every command, and let
 * the port hang up / wait for the host to. */
void session_framing_error(struct port *p);
/* The host went away: kill every command and forget the connection. */
void session_lost(struct port *p, uint64_t now);

#endif
