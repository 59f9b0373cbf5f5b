/* `sandbox image build`: runs the same recipe as `make image`
 * (guest/image/build.sh, installed under $(pkglibexecdir)/image with the
 * static guest agent beside it) and shows its progress: each step line
 * with the elapsed time, and a heartbeat while a long step (mmdebstrap)
 * prints nothing. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#ifndef SBX_CLI_RECIPE_DIR
#error "SBX_CLI_RECIPE_DIR must be defined by the build"
#endif
#ifndef SBX_CLI_AGENT
#error "SBX_CLI_AGENT must be defined by the build"
#endif
#ifndef SBX_IMAGE_DIR
#error "SBX_IMAGE_DIR must be defined by the build"
#endif

#define HEARTBEAT_S 10

static const char image_usage[] =
    "usage: sandbox image build [--out DIR] [--rebuild] [--cache DIR] [--agent PATH]\n"
    "\n"
    "Build the guest image (Debian kernel, initramfs, root filesystem with the\n"
    "guest agent) into DIR, by default $SANDBOX_IMAGE or the installed image\n"
    "directory " SBX_IMAGE_DIR ". Needs root. Cached by recipe under\n"
    "/var/cache/libsandbox; an up-to-date DIR is left as it is.\n"
    "\n"
    "  --out DIR     where to put the image\n"
    "  --rebuild     ignore the cache and rebuild from scratch\n"
    "  --cache DIR   build cache directory\n"
    "  --agent PATH  guest agent binary (default " SBX_CLI_AGENT ")\n"
    "\n"
    "The recipe is read from $SANDBOX_IMAGE_RECIPE, else " SBX_CLI_RECIPE_DIR ".\n";

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t spawn_recipe(char *const *argv, int *out_fd)
{
	int p[2];
	if (pipe(p) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		close(p[1]);
		execv(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	*out_fd = p[0];
	return pid;
}

/* Copy the recipe's output line by line with elapsed seconds in front. */
static void show_progress(int fd, double t0)
{
	char buf[4096], line[8192], last[8192] = "starting";
	size_t len = 0;
	double last_out = now_s();
	for (;;) {
		struct pollfd pfd = {fd, POLLIN, 0};
		int r = poll(&pfd, 1, 1000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			if (now_s() - last_out >= HEARTBEAT_S) {
				printf("[%6.1fs] ... still working (%s)\n", now_s() - t0, last);
				fflush(stdout);
				last_out = now_s();
			}
			continue;
		}
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n' && len < sizeof(line) - 1) {
				line[len++] = buf[i];
				continue;
			}
			if (buf[i] != '\n')
				continue;
			line[len] = '\0';
			printf("[%6.1fs] %s\n", now_s() - t0, line);
			fflush(stdout);
			snprintf(last, sizeof(last), "%s", line);
			len = 0;
			last_out = now_s();
		}
	}
	if (len) {
		line[len] = '\0';
		printf("[%6.1fs] %s\n", now_s() - t0, line);
	}
}

static int image_build(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"out", required_argument, NULL, 'o'},   {"cache", required_argument, NULL, 'c'},
	    {"agent", required_argument, NULL, 'a'}, {"rebuild", no_argument, NULL, 'r'},
	    {"help", no_argument, NULL, 'h'},	     {NULL, 0, NULL, 0}};
	const char *out = getenv("SANDBOX_IMAGE"), *cache = NULL, *agent = SBX_CLI_AGENT;
	const char *recipe = getenv("SANDBOX_IMAGE_RECIPE");
	int rebuild = 0, c;
	if (!out || !out[0])
		out = SBX_IMAGE_DIR;
	if (!recipe || !recipe[0])
		recipe = SBX_CLI_RECIPE_DIR;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'c': cache = optarg; break;
		case 'a': agent = optarg; break;
		case 'r': rebuild = 1; break;
		case 'h': fputs(image_usage, stdout); return 0;
		default: return SBX_CLI_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		sbx_cli_err("image build: unexpected argument '%s'", argv[optind]);
		return SBX_CLI_EXIT_USAGE;
	}
	char script[4096];
	snprintf(script, sizeof(script), "%s/build.sh", recipe);
	if (access(script, X_OK) < 0) {
		sbx_cli_err("image build: recipe %s not found or not executable", script);
		return 1;
	}
	if (access(agent, R_OK) < 0) {
		sbx_cli_err("image build: guest agent %s not found", agent);
		return 1;
	}
	char *args[10];
	int n = 0;
	args[n++] = script;
	args[n++] = "--agent";
	args[n++] = (char *)agent;
	args[n++] = "--out";
	args[n++] = (char *)out;
	if (cache) {
		args[n++] = "--cache";
		args[n++] = (char *)cache;
	}
	if (rebuild)
		args[n++] = "--rebuild";
	args[n] = NULL;

	double t0 = now_s();
	printf("[%6.1fs] building the guest image into %s\n", 0.0, out);
	fflush(stdout);
	int fd;
	pid_t pid = spawn_recipe(args, &fd);
	if (pid < 0) {
		sbx_cli_err("image build: cannot start %s: %s", script, strerror(errno));
		return 1;
	}
	show_progress(fd, t0);
	close(fd);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		printf("[%6.1fs] image ready: %s\n", now_s() - t0, out);
		return 0;
	}
	sbx_cli_err("image build failed (%s %d)", WIFEXITED(st) ? "exit status" : "signal",
		    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	return 1;
}

int sbx_cli_image(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(image_usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? SBX_CLI_EXIT_USAGE : 0;
	}
	if (!strcmp(argv[1], "build"))
		return image_build(argc - 1, argv + 1);
	sbx_cli_err("image: unknown subcommand '%s' (only 'build')", argv[1]);
	return SBX_CLI_EXIT_USAGE;
}
