/* File streams (doc/protocol.md, "File streams"): stat, list, mkdir,
 * remove, mount, and streamed transfers in (PUT) and out (GET). */
#ifndef AGENT_FILES_H
#define AGENT_FILES_H

#include <stdint.h>

#include "port.h"
#include "proto.h"

/* Most file streams open at once; more get ERROR EAGAIN. */
#define FILES_MAX 64

/* True if the frame belongs to the files module: a file frame type, or
 * any frame on a live or recently closed file stream. */
int files_owns(const struct sbx_frame_hdr *h);
void files_frame(struct port *p, const struct sbx_frame_hdr *h, const uint8_t *payload);
/* Send what credit and the port allow for outgoing transfers. Returns 1
 * when more could be sent right away (poll must not sleep). */
int files_pump(struct port *p);
/* The host went away: close every stream. */
void files_abort_all(void);

#endif
