/* sandbox: run untrusted code in a throwaway microVM from a shell.
 *
 *   sandbox run [OPTIONS] -- COMMAND [ARG]...
 *   sandbox image build [--out DIR] [--rebuild]
 *   sandbox list
 *   sandbox kill ID
 *
 * The man page is doc/sandbox.1. */
#include <sandbox.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage_text[] =
    "usage: sandbox COMMAND [ARGS]\n"
    "\n"
    "Run untrusted code in a throwaway microVM (libsandbox %s).\n"
    "\n"
    "commands:\n"
    "  run [OPTIONS] -- CMD...  boot a sandbox, run CMD in it, stream its output,\n"
    "                           exit with its exit status, destroy the sandbox\n"
    "  image build [OPTIONS]    build and install the guest image\n"
    "  list                     sandboxes started by `sandbox run` on this machine\n"
    "  kill ID                  stop one of them (its `sandbox run` destroys it)\n"
    "  help, --help             this text; `sandbox COMMAND --help` for more\n"
    "  --version                the library version\n"
    "\n"
    "See sandbox(1).\n";

void sbx_cli_err(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("sandbox: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void sbx_cli_lib_err(const char *what, int code)
{
	const char *detail = sandbox_last_error();
	if (detail && detail[0])
		sbx_cli_err("%s: %s: %s", what, sandbox_strerror(code), detail);
	else
		sbx_cli_err("%s: %s", what, sandbox_strerror(code));
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, usage_text, sandbox_version());
		return SBX_CLI_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
		printf(usage_text, sandbox_version());
		return 0;
	}
	if (!strcmp(cmd, "--version")) {
		printf("sandbox (libsandbox) %s\n", sandbox_version());
		return 0;
	}
	if (!strcmp(cmd, "run"))
		return sbx_cli_run(argc - 1, argv + 1);
	if (!strcmp(cmd, "image"))
		return sbx_cli_image(argc - 1, argv + 1);
	if (!strcmp(cmd, "list"))
		return sbx_cli_list(argc - 1, argv + 1);
	if (!strcmp(cmd, "kill"))
		return sbx_cli_kill(argc - 1, argv + 1);
	sbx_cli_err("unknown command '%s' (try 'sandbox --help')", cmd);
	return SBX_CLI_EXIT_USAGE;
}
