/* Diagnostics. The boot is quiet: the agent only writes when something
 * went wrong, to /dev/console as PID 1 and to stderr in test mode. */
#ifndef AGENT_LOG_H
#define AGENT_LOG_H

void log_init(int to_console);
void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
