/* The init-process side of the agent: what PID 1 must set up before any
 * command runs, and how it leaves (PID 1 must never exit: the kernel
 * would panic). */
#ifndef AGENT_SYSINIT_H
#define AGENT_SYSINIT_H

/* Mount the API filesystems, set the host name, bring up lo. Failures are
 * logged and survived: a command may still work without, say, /dev/shm. */
void sys_init(void);
/* Make sure fds 0, 1 and 2 are open (on /dev/null if need be), so every
 * later descriptor is >= 3 and the child's dup2 sequence cannot clash. */
void sys_ensure_std_fds(void);
/* Raise our own soft RLIMIT_NOFILE (many concurrent commands need many
 * pipes); the original is kept for children. */
void sys_raise_nofile(void);
void sys_child_restore_nofile(void);
/* Leave: as PID 1 kill everything, sync and power off; otherwise exit. */
_Noreturn void sys_shutdown(int status);
/* Log, then sys_shutdown(1). */
_Noreturn void sys_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
