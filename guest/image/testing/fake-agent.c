/*
 * Stand-in for sandbox-agent, for testing the guest image and the boot
 * benchmark before (or independently of) the real agent.
 *
 *   cc -static -O2 -o fake-agent fake-agent.c
 *   guest/image/build.sh --agent fake-agent --out DIR
 *
 * As PID 1 it prints "agent up <uptime>" to the console, finds the
 * virtio-serial port named org.libsandbox.agent, waits until the host side
 * is connected (poll stops reporting POLLHUP), sends one protocol HELLO frame
 * (doc/protocol.md), then waits until the host disconnects or sends SHUTDOWN
 * and powers the VM off. If no host connects within 30 s it powers off too.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "org.libsandbox.agent"

static int con = 2;

static void say(const char *fmt, const char *arg)
{
	char up[64] = "?";
	int fd = open("/proc/uptime", O_RDONLY);
	if (fd >= 0) {
		ssize_t n = read(fd, up, sizeof up - 1);
		up[n > 0 ? n : 0] = 0;
		char *sp = strchr(up, ' ');
		if (sp)
			*sp = 0;
		close(fd);
	}
	dprintf(con, "fake-agent: ");
	dprintf(con, fmt, arg);
	dprintf(con, " (uptime %s)\n", up);
}

static void off(void)
{
	sync();
	reboot(RB_POWER_OFF);
	_exit(1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Finds /dev/vportNpM whose sysfs name is PORT_NAME. */
static int find_port(char *path, size_t len)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	struct dirent *e;
	int found = 0;
	if (!d)
		return 0;
	while (!found && (e = readdir(d))) {
		char p[300], name[128] = "";
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
		int fd = open(p, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, name, sizeof name - 1);
		close(fd);
		if (n <= 0)
			continue;
		name[n] = 0;
		name[strcspn(name, "\n")] = 0;
		if (strcmp(name, PORT_NAME) == 0) {
			snprintf(path, len, "/dev/%s", e->d_name);
			found = access(path, R_OK | W_OK) == 0;
		}
	}
	closedir(d);
	return found;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v, p[1] = v >> 8, p[2] = v >> 16, p[3] = v >> 24;
}

int main(void)
{
	int c = open("/dev/console", O_WRONLY | O_NOCTTY);
	if (c >= 0)
		con = c;
	say("agent up%s", "");

	char port[320];
	double deadline = now() + 30;
	while (!find_port(port, sizeof port)) {
		if (now() > deadline) {
			say("no port %s", PORT_NAME);
			off();
		}
		usleep(2000);
	}
	int fd = open(port, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		say("cannot open %s", port);
		off();
	}
	/* Not connected: POLLHUP. Connected: POLLOUT without POLLHUP. */
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		int r = poll(&p, 1, 5);
		if (r > 0 && (p.revents & POLLOUT) && !(p.revents & POLLHUP))
			break;
		if (now() > deadline) {
			say("host never connected to %s", port);
			off();
		}
		if (r > 0 && (p.revents & POLLHUP))
			usleep(2000); /* POLLHUP returns at once: do not spin */
	}

	static const char ver[] = "fake-agent 0";
	uint8_t f[12 + 16 + sizeof ver - 1];
	uint32_t plen = 16 + sizeof ver - 1;
	memset(f, 0, sizeof f);
	put32(f, plen);
	f[4] = 0x01; /* HELLO, flags 0, reserved 0, stream 0 */
	f[12] = 1;   /* u16 version 1, u16 0 */
	put32(f + 16, 65536);
	put32(f + 20, 256 * 1024);
	put32(f + 24, sizeof ver - 1);
	memcpy(f + 28, ver, sizeof ver - 1);
	size_t off_ = 0;
	while (off_ < sizeof f) {
		ssize_t n = write(fd, f + off_, sizeof f - off_);
		if (n > 0) {
			off_ += n;
		} else if (n < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			poll(&p, 1, 100);
		} else {
			say("write to %s failed", port);
			off();
		}
	}
	say("HELLO sent on %s", port);

	/* Wait for SHUTDOWN (type 0x05) or the host going away. */
	uint8_t buf[4096];
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 1000) < 0 && errno != EINTR)
			break;
		if (p.revents & POLLHUP)
			break;
		if (p.revents & POLLIN) {
			ssize_t n = read(fd, buf, sizeof buf);
			if (n >= 12 && buf[4] == 0x05)
				break;
		}
	}
	say("powering off%s", "");
	off();
	return 0;
}
