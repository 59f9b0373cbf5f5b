/* sandbox-agent: PID 1 of a libsandbox guest. Sets the system up, finds
 * the host channel and serves doc/protocol.md over it, forever.
 *
 *   sandbox-agent                  as PID 1 (arguments from the kernel
 *                                  command line are ignored), or by hand
 *                                  inside a guest: use the virtio port
 *   sandbox-agent --connect PATH   test mode: connect to a UNIX socket
 *   sandbox-agent --listen PATH    test mode: accept on a UNIX socket
 *
 * In test mode the network listeners are only opened when
 * SANDBOX_AGENT_TEST_PORTS=TCP,DNS names the loopback ports to use (there
 * is no nftables redirect, and port 53 is not ours to take).
 */
#define _GNU_SOURCE
#include "exec.h"
#include "files.h"
#include "log.h"
#include "net.h"
#include "netup.h"
#include "port.h"
#include "session.h"
#include "sysinit.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

/* How long the virtio port may take to appear after boot. */
#define PORT_WAIT_MS 30000

static int g_sigfd = -1;
static int g_pid1;

/* True when the kernel command line has this word (e.g. a trace switch;
 * words with a dot are not passed to init, so /proc/cmdline it is). */
static int cmdline_has(const char *word)
{
	char buf[1024];
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	size_t wl = strlen(word);
	for (char *p = buf; (p = strstr(p, word)) != NULL; p += wl)
		if ((p == buf || p[-1] == ' ') && (p[wl] == ' ' || p[wl] == '\n' || !p[wl]))
			return 1;
	return 0;
}

/* Test mode: SANDBOX_AGENT_TEST_PORTS=TCP,DNS. Returns 1 when set. */
static int test_ports(uint16_t *tcp, uint16_t *dns)
{
	const char *v = getenv("SANDBOX_AGENT_TEST_PORTS");
	unsigned a, b;
	if (!v || sscanf(v, "%u,%u", &a, &b) != 2 || !a || !b || a > 65535 || b > 65535)
		return 0;
	*tcp = (uint16_t)a;
	*dns = (uint16_t)b;
	return 1;
}

static int usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--connect PATH | --listen PATH]\n", argv0);
	return 2;
}

/* SIGCHLD (and in test mode the termination signals) arrive on a
 * signalfd, so the single poll loop sees them; nothing runs in signal
 * context. SIGPIPE is ignored: a closed pipe or socket is an EPIPE.
 * As PID 1 nothing else is needed: the kernel drops signals whose action
 * is the default for init, and ignoring them explicitly would leak
 * SIG_IGN into every command (ignored signals survive execve). */
static void setup_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	if (!g_pid1) {
		sigaddset(&set, SIGTERM);
		sigaddset(&set, SIGINT);
		sigaddset(&set, SIGHUP);
	}
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
		sys_fatal("sigprocmask: %s", strerror(errno));
	g_sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (g_sigfd < 0)
		sys_fatal("signalfd: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
}

static void handle_signals(uint64_t now)
{
	struct signalfd_siginfo si;
	int reap = 0;
	while (read(g_sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGCHLD) {
			reap = 1;
		} else if (!g_pid1) {
			/* test mode: go away without leaving commands behind */
			exec_abort_all();
			sys_shutdown(0);
		}
	}
	/* Also when no signal was read: SIGCHLDs coalesce, reaping is cheap. */
	if (reap)
		exec_reap(now);
}

static void open_port(struct port *p, const char *mode, const char *path)
{
	int r;
	if (!mode)
		r = port_open_virtio(p, PORT_WAIT_MS);
	else if (strcmp(mode, "--connect") == 0)
		r = port_open_connect(p, path);
	else
		r = port_open_listen(p, path);
	if (r != 0)
		sys_fatal("cannot open the host channel %s: %s", mode ? path : SBX_PROTO_PORT_NAME,
			  strerror(errno));
}

/* Read and dispatch host frames; tear the connection down when needed. */
static void service_port(struct port *p, short revents, uint64_t now)
{
	int gone = 0;
	if (revents & (POLLIN | POLLHUP | POLLERR))
		gone = port_fill(p) < 0;
	struct sbx_frame_hdr h;
	const uint8_t *payload;
	int r;
	while ((r = port_frame(p, &h, &payload)) > 0)
		session_frame(p, &h, payload, now);
	if (r < 0)
		session_framing_error(p);
	if (p->state != PS_DOWN && port_flush(p) < 0)
		gone = 1;
	/* A socket's POLLHUP comes with the last data, read above; a
	 * virtio port's POLLHUP is the host closing its end. */
	if (gone || (revents & POLLHUP) || port_closing_done(p))
		session_lost(p, now);
}

/* Deadlines may be weeks away (timeout_ms is a u32): wake at least once a
 * minute rather than overflow poll's int. */
#define MAX_SLEEP_MS 60000

static int poll_timeout(uint64_t now, uint64_t deadline, int timeout)
{
	if (!deadline)
		return timeout;
	uint64_t d = deadline > now ? deadline - now : 0;
	int t = d > MAX_SLEEP_MS ? MAX_SLEEP_MS : (int)d;
	return timeout < 0 || t < timeout ? t : timeout;
}

static _Noreturn void run(struct port *p)
{
	static struct pollfd pfd[2 + EXEC_POLL_MAX + NET_POLL_MAX];
	for (;;) {
		uint64_t now = now_ms();
		int up = port_try_up(p, now);
		if (up < 0) {
			log_msg("host channel %s gone, giving up", p->path);
			exec_abort_all();
			sys_shutdown(1);
		}
		if (up > 0)
			session_hello(p);

		uint64_t deadline = exec_tick(now);
		uint64_t net_deadline = net_tick(now);
		if (net_deadline && (!deadline || net_deadline < deadline))
			deadline = net_deadline;
		int busy = p->state == PS_UP && files_pump(p);
		if (p->state != PS_DOWN && port_flush(p) < 0)
			session_lost(p, now);

		int timeout = busy ? 0 : -1;
		pfd[0] = (struct pollfd){g_sigfd, POLLIN, 0};
		int has_port = port_poll_prepare(p, &pfd[1], now, &timeout);
		if (!has_port)
			pfd[1] = (struct pollfd){-1, 0, 0}; /* poll skips negative fds */
		size_t nx = exec_poll_prepare(pfd + 2, EXEC_POLL_MAX, port_out_room(p));
		size_t nn = net_poll_prepare(pfd + 2 + nx, NET_POLL_MAX);
		timeout = poll_timeout(now, deadline, timeout);

		if (poll(pfd, 2 + nx + nn, timeout) < 0) {
			if (errno == EINTR)
				continue;
			sys_fatal("poll: %s", strerror(errno));
		}
		now = now_ms();
		if (pfd[0].revents)
			handle_signals(now);
		exec_poll_process(pfd + 2, nx);
		net_poll_process(pfd + 2 + nx, nn, now);
		if (has_port && p->state != PS_DOWN)
			service_port(p, pfd[1].revents, now);
	}
}

int main(int argc, char **argv)
{
	const char *mode = NULL, *path = NULL;
	g_pid1 = getpid() == 1;
	if (!g_pid1) {
		if (argc == 3 &&
		    (strcmp(argv[1], "--connect") == 0 || strcmp(argv[1], "--listen") == 0)) {
			mode = argv[1];
			path = argv[2];
		} else if (argc != 1) {
			return usage(argv[0]);
		}
	}
	log_init(g_pid1);
	umask(022);
	if (chdir("/") != 0)
		log_msg("chdir /: %s", strerror(errno));
	uint16_t tcp_port = 0, dns_port = 0;
	int net_on = g_pid1;
	if (g_pid1) {
		sys_init();
		/* Before HELLO: no command may start before its network. */
		unsigned ms[4];
		if (netup(NET_TCP_PORT, NET_DNS_PORT, ms) != 0)
			log_msg("network set-up failed after %u ms: the guest has no network",
				ms[0]);
		else if (cmdline_has("sandbox.nettrace"))
			log_msg("network up in %u ms (modules %u, links %u, nft %u)", ms[0], ms[1],
				ms[2], ms[3]);
	} else {
		net_on = test_ports(&tcp_port, &dns_port);
	}
	if (!g_pid1)
		/* Test mode stands in for PID 1: orphans of our commands are
		 * reparented to us, so the reaping is exercised too. */
		prctl(PR_SET_CHILD_SUBREAPER, 1);
	sys_ensure_std_fds();
	sys_raise_nofile();
	setup_signals();

	static struct port port;
	open_port(&port, mode, path);
	exec_init(&port);
	if (net_on)
		net_init(&port, tcp_port, dns_port, !g_pid1);
	run(&port);
}
