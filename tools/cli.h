/* The `sandbox` command-line tool: shared declarations of its modules. */
#ifndef SBX_CLI_H
#define SBX_CLI_H

#include <stddef.h>
#include <sys/types.h>

/* Exit statuses of the tool itself (a command's own status is passed on). */
#define SBX_CLI_EXIT_USAGE 2	/* bad command line */
#define SBX_CLI_EXIT_FAILED 125 /* the sandbox could not be set up or died */

/* Print "sandbox: " + message to stderr. */
void sbx_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a library failure: "sandbox: WHAT: <strerror>: <last error>". */
void sbx_cli_lib_err(const char *what, int code);

int sbx_cli_run(int argc, char **argv);
int sbx_cli_image(int argc, char **argv);
int sbx_cli_list(int argc, char **argv);
int sbx_cli_kill(int argc, char **argv);

/* Registry of sandboxes started by `sandbox run` on this machine (the
 * library's own list only covers the calling process). One small file per
 * sandbox in the run directory, named by sandbox id. */
struct sbx_cli_record {
	char id[64];
	pid_t pid;
	long long started; /* unix seconds */
	char meta[1024];   /* "k=v,k=v" */
	char command[1024];
};

/* Directory holding the records: $SANDBOX_RUN_DIR, else /run/libsandbox-cli
 * for root, else $XDG_RUNTIME_DIR/libsandbox-cli, else
 * /tmp/libsandbox-cli-UID. */
const char *sbx_cli_run_dir(void);
int sbx_cli_record_write(const struct sbx_cli_record *r);
void sbx_cli_record_remove(const char *id);
/* Calls fn for each record whose process is alive (stale ones are removed).
 * Returns the number of records visited, or -1 if the directory cannot be
 * read (a missing directory is 0 records). */
int sbx_cli_record_each(int (*fn)(const struct sbx_cli_record *r, void *ud), void *ud);

#endif
