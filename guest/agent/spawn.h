/* Starting one command: fork, set up the child, execve with a PATH
 * search. Only the mechanics; exec.c owns the protocol side. */
#ifndef AGENT_SPAWN_H
#define AGENT_SPAWN_H

#include <stdint.h>
#include <sys/types.h>

struct spawn_req {
	char *const *argv; /* NULL-terminated */
	char *const *envp; /* NULL-terminated, exactly the command's env */
	char **sh_argv;	   /* argc + 2 slots, for the ENOEXEC fallback */
	const char *cwd;
	const char *path; /* PATH to search when argv[0] has no '/' */
	int want_stdin;	  /* stdin from a pipe, else /dev/null */
};

struct spawn_res {
	pid_t pid;
	int fd_in;     /* write end of the child's stdin, or -1 */
	int fd_out;    /* read end of its stdout */
	int fd_err;    /* read end of its stderr */
	int fd_status; /* read end of the CLOEXEC status pipe */
};

/* What the child writes on the status pipe when it cannot exec. EOF
 * without a record means execve succeeded. */
enum spawn_stage { SPAWN_SETUP = 1, SPAWN_CHDIR = 2, SPAWN_EXEC = 3 };
struct spawn_fail {
	int32_t stage;
	int32_t err;
};

/* Parent ends are non-blocking and close-on-exec. Returns 0, or an errno
 * (pipe or fork failed; nothing was started). */
int spawn_start(const struct spawn_req *rq, struct spawn_res *rs);

#endif
