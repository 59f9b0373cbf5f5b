/* Running commands for exec streams: the table of live commands, their
 * pipes and credits, timeouts, the drain rule, and reaping. */
#ifndef AGENT_EXEC_H
#define AGENT_EXEC_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "port.h"
#include "proto.h"

/* Most commands running at once; more get ERROR EAGAIN. */
#define EXEC_MAX 512
/* Upper bound of pollfds exec_poll_prepare may fill. */
#define EXEC_POLL_MAX (EXEC_MAX * 4)

struct exec;

void exec_init(struct port *port);

struct exec *exec_find(uint32_t stream);
/* True for a stream that was open earlier in this connection: the host
 * may still send WINDOW/STDIN/SIGNAL for it before it sees our EXIT. */
int exec_recently_closed(uint32_t stream);
/* Remember a stream id that is dead without ever having had an exec. */
void exec_mark_closed(uint32_t stream);

/* Start a command for a decoded EXEC_START. Queues EXEC_STARTED later,
 * or ERROR now/later if it cannot start. */
void exec_start(uint32_t stream, const struct sbx_exec_start *es, uint64_t now);

/* Host frames for a live stream. 0, or an errno with *msg set when the
 * frame breaks a rule (the caller then sends ERROR and aborts). */
int exec_on_stdin(struct exec *e, const uint8_t *data, size_t len, const char **msg);
int exec_on_stdin_eof(struct exec *e, const char **msg);
void exec_on_window(struct exec *e, uint32_t credit);
int exec_on_signal(struct exec *e, uint32_t sig, const char **msg);

/* SIGKILL the command's process group and forget the stream, sending
 * nothing more on it. */
void exec_abort(struct exec *e);
/* exec_abort every command (host gone, shutdown). */
void exec_abort_all(void);

/* Reap every child that has exited; tracked ones get their status,
 * orphans (reparented to PID 1 / us as subreaper) are just collected. */
void exec_reap(uint64_t now);

/* Poll integration. `can_read` is false while the port's outgoing queue
 * is too full to take more output. */
size_t exec_poll_prepare(struct pollfd *pfd, size_t cap, int can_read);
void exec_poll_process(const struct pollfd *pfd, size_t n);
/* Fire timeouts, finish drained commands (EXIT), send stdin credit back,
 * free closed streams. Returns the next deadline in ms, or 0 for none. */
uint64_t exec_tick(uint64_t now);

#endif
