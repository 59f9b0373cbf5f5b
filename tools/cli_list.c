/* `sandbox list` and `sandbox kill ID`. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static int print_record(const struct sbx_cli_record *r, void *ud)
{
	(void)ud;
	long long age = (long long)time(NULL) - r->started;
	printf("%-32s  %7ld  %6llds  %-24s  %s\n", r->id, (long)r->pid, age < 0 ? 0 : age,
	       r->meta[0] ? r->meta : "-", r->command);
	return 0;
}

int sbx_cli_list(int argc, char **argv)
{
	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		puts("usage: sandbox list\n\nSandboxes started by `sandbox run` on this machine "
		     "(records in $SANDBOX_RUN_DIR,\nelse /run/libsandbox-cli for root).");
		return 0;
	}
	if (argc > 1) {
		sbx_cli_err("list: unexpected argument '%s'", argv[1]);
		return SBX_CLI_EXIT_USAGE;
	}
	printf("%-32s  %7s  %7s  %-24s  %s\n", "ID", "PID", "AGE", "METADATA", "COMMAND");
	if (sbx_cli_record_each(print_record, NULL) < 0) {
		sbx_cli_err("list: cannot read %s: %s", sbx_cli_run_dir(), strerror(errno));
		return 1;
	}
	return 0;
}

struct find {
	const char *prefix;
	struct sbx_cli_record match;
	int matches;
};

static int find_record(const struct sbx_cli_record *r, void *ud)
{
	struct find *f = ud;
	if (!strncmp(r->id, f->prefix, strlen(f->prefix))) {
		f->match = *r;
		f->matches++;
	}
	return 0;
}

/* Still registered (its `sandbox run` has not finished)? */
static int still_listed(const char *id)
{
	struct find f = {.prefix = id};
	sbx_cli_record_each(find_record, &f);
	return f.matches > 0;
}

int sbx_cli_kill(int argc, char **argv)
{
	if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		puts("usage: sandbox kill ID\n\nStop a sandbox started by `sandbox run` (an "
		     "unambiguous prefix of its id\nis enough): its `sandbox run` destroys it and "
		     "exits with status 143.");
		return 0;
	}
	if (argc != 2 || !argv[1][0]) {
		sbx_cli_err("kill: expected one sandbox id (see `sandbox list`)");
		return SBX_CLI_EXIT_USAGE;
	}
	struct find f = {.prefix = argv[1]};
	sbx_cli_record_each(find_record, &f);
	if (f.matches == 0) {
		sbx_cli_err("kill: no sandbox '%s' (see `sandbox list`)", argv[1]);
		return 1;
	}
	if (f.matches > 1) {
		sbx_cli_err("kill: '%s' matches %d sandboxes; give more of the id", argv[1],
			    f.matches);
		return SBX_CLI_EXIT_USAGE;
	}
	if (kill(f.match.pid, SIGTERM) < 0) {
		sbx_cli_err("kill: cannot signal process %ld: %s", (long)f.match.pid,
			    strerror(errno));
		return 1;
	}
	/* wait until its `sandbox run` has destroyed the VM and unregistered */
	for (int i = 0; i < 600 && still_listed(f.match.id); i++)
		usleep(100 * 1000);
	if (still_listed(f.match.id)) {
		sbx_cli_err("kill: sandbox %s did not stop within 60 s", f.match.id);
		return 1;
	}
	printf("killed %s\n", f.match.id);
	return 0;
}
