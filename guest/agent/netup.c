/* Guest network set-up at boot (see netup.h, doc/guest-network.md). */
#define _GNU_SOURCE
#include "netup.h"
#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#define NFT_PATH "/usr/sbin/nft"
#define MODULES_DIR "/lib/modules"
/* What the ruleset needs; their dependencies (nf_tables, nf_nat,
 * nf_conntrack, ...) come from modules.dep. Loaded before nft runs, so
 * the kernel never has to call modprobe back (slow: one exec each). */
static const char *const g_modules[] = {
    "dummy",
    "nft_chain_nat",
    "nft_redir",
    "nft_fib_inet",
};
#define MAX_LOADED 64
/* nft and the libraries it loads (Debian 12), read ahead while the CPU is
 * busy loading modules: cold, they cost ~100 ms of disk reads under TCG.
 * Only a hint: a missing file costs nothing. */
static const char *const g_nft_files[] = {
    NFT_PATH,
    "/etc/ld.so.cache",
    "/lib/x86_64-linux-gnu/libnftables.so.1",
    "/lib/x86_64-linux-gnu/libedit.so.2",
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/x86_64-linux-gnu/libmnl.so.0",
    "/lib/x86_64-linux-gnu/libnftnl.so.11",
    "/lib/x86_64-linux-gnu/libxtables.so.12",
    "/lib/x86_64-linux-gnu/libjansson.so.4",
    "/lib/x86_64-linux-gnu/libgmp.so.10",
    "/lib/x86_64-linux-gnu/libtinfo.so.6",
    "/lib/x86_64-linux-gnu/libbsd.so.0",
    "/lib/x86_64-linux-gnu/libmd.so.0",
    "/lib64/ld-linux-x86-64.so.2",
};

/* The same layout as struct in6_ifreq of <linux/ipv6.h>, which clashes
 * with <netinet/in.h>. */
struct sbx_in6_ifreq {
	struct in6_addr addr;
	uint32_t prefixlen;
	int ifindex;
};

/* ---- kernel modules ------------------------------------------------------- */

struct modules {
	char dir[256]; /* /lib/modules/<release> */
	char *dep;     /* modules.dep, NUL-terminated */
	int prefetch;  /* first pass: only start reading the files */
	const char *loaded[MAX_LOADED];
	size_t nloaded;
};

/* Start reading a file into the page cache, without waiting for it. */
static void prefetch(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
		close(fd);
	}
}

static char *read_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	char *s = NULL;
	if (fstat(fd, &st) == 0 && st.st_size > 0 && st.st_size < (64 << 20))
		s = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (s && got < (size_t)st.st_size) {
		ssize_t n = read(fd, s + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (s)
		s[got] = 0;
	return s;
}

/* The modules.dep line of the module at `path` (relative), or NULL. */
static const char *dep_line(const struct modules *m, const char *path, size_t plen)
{
	char key[300];
	if (plen + 1 >= sizeof key)
		return NULL;
	/* path may point into modules.dep itself, unterminated */
	memcpy(key, path, plen);
	key[plen] = 0;
	for (const char *p = m->dep; (p = strstr(p, key)) != NULL; p += plen)
		if ((p == m->dep || p[-1] == '\n') && p[plen] == ':')
			return p;
	return NULL;
}

/* The relative path of module `name` (e.g. "kernel/drivers/net/dummy.ko"),
 * found by its file name at the start of a line. */
static const char *module_path(const struct modules *m, const char *name, size_t *plen)
{
	char key[80];
	snprintf(key, sizeof key, "/%s.ko:", name);
	size_t klen = strlen(key);
	for (const char *p = m->dep; (p = strstr(p, key)) != NULL; p += klen) {
		const char *start = p;
		while (start > m->dep && start[-1] != '\n')
			start--;
		if (memchr(start, ' ', (size_t)(p - start)))
			continue; /* a dependency in someone else's line */
		*plen = (size_t)(p - start) + klen - 1;
		return start;
	}
	return NULL;
}

static int already_loaded(struct modules *m, const char *path, size_t plen)
{
	for (size_t i = 0; i < m->nloaded; i++)
		if (m->loaded[i] == path ||
		    (strncmp(m->loaded[i], path, plen) == 0 && m->loaded[i][plen] == ':'))
			return 1;
	return 0;
}

static int insert(const struct modules *m, const char *path, size_t plen)
{
	char full[512];
	if (plen + strlen(m->dir) + 2 > sizeof full) {
		log_msg("network: module path too long");
		return -1;
	}
	snprintf(full, sizeof full, "%s/%.*s", m->dir, (int)plen, path);
	if (m->prefetch) {
		prefetch(full);
		return 0;
	}
	int fd = open(full, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_msg("network: %s: %s", full, strerror(errno));
		return -1;
	}
	long r = syscall(SYS_finit_module, fd, "", 0);
	int err = errno;
	close(fd);
	if (r != 0 && err != EEXIST) {
		log_msg("network: loading %s: %s", full, strerror(err));
		return -1;
	}
	return 0;
}

/* Load one module after its dependencies (each of which has its own line
 * in modules.dep, so the recursion orders them). */
static int load(struct modules *m, const char *path, size_t plen, int depth)
{
	if (already_loaded(m, path, plen))
		return 0;
	const char *line = dep_line(m, path, plen);
	if (!line || depth > 16 || m->nloaded >= MAX_LOADED) {
		log_msg("network: %.*s not in modules.dep", (int)plen, path);
		return -1;
	}
	const char *p = line + plen + 1;
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == '\n' || *p == 0)
			break;
		size_t dlen = strcspn(p, " \n");
		if (load(m, p, dlen, depth + 1) != 0)
			return -1;
		p += dlen;
	}
	if (insert(m, path, plen) != 0)
		return -1;
	m->loaded[m->nloaded++] = line;
	return 0;
}

static int load_modules(void)
{
	static struct modules m;
	struct utsname u;
	if (uname(&u) != 0)
		return -1;
	snprintf(m.dir, sizeof m.dir, MODULES_DIR "/%s", u.release);
	char depfile[300];
	snprintf(depfile, sizeof depfile, "%s/modules.dep", m.dir);
	m.dep = read_file(depfile);
	if (!m.dep) {
		log_msg("network: cannot read %s: %s", depfile, strerror(errno));
		return -1;
	}
	int rc = 0;
	/* Two passes over the same order: the first only starts the disk
	 * reads of every module (and of nft), so the second rarely waits. */
	for (m.prefetch = 1; m.prefetch >= 0 && rc == 0; m.prefetch--) {
		m.nloaded = 0;
		for (size_t i = 0; i < sizeof g_modules / sizeof g_modules[0] && rc == 0; i++) {
			size_t plen;
			const char *path = module_path(&m, g_modules[i], &plen);
			if (!path) {
				log_msg("network: module %s not found in %s", g_modules[i],
					depfile);
				rc = -1;
			} else {
				rc = load(&m, path, plen, 0);
			}
		}
		for (size_t i = 0; m.prefetch && i < sizeof g_nft_files / sizeof g_nft_files[0];
		     i++)
			prefetch(g_nft_files[i]);
	}
	free(m.dep);
	m.dep = NULL;
	m.nloaded = 0;
	return rc;
}

/* ---- interface, addresses, routes ---------------------------------------- */

static int write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	size_t len = strlen(text);
	ssize_t n = write(fd, text, len);
	int rc = close(fd);
	return n == (ssize_t)len && rc == 0 ? 0 : -1;
}

static int link_up(int s, const char *ifname)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
		return -1;
	ifr.ifr_flags |= IFF_UP;
	return ioctl(s, SIOCSIFFLAGS, &ifr);
}

static int addr4(int s)
{
	struct ifreq ifr;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, NETUP_IF);
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, NETUP_ADDR4, &sin->sin_addr);
	if (ioctl(s, SIOCSIFADDR, &ifr) != 0)
		return -1;
	sin->sin_addr.s_addr = htonl(~0u << (32 - NETUP_PREFIX4));
	return ioctl(s, SIOCSIFNETMASK, &ifr);
}

static int route4(int s)
{
	struct rtentry rt;
	memset(&rt, 0, sizeof rt);
	struct sockaddr_in *dst = (struct sockaddr_in *)&rt.rt_dst;
	struct sockaddr_in *mask = (struct sockaddr_in *)&rt.rt_genmask;
	dst->sin_family = AF_INET;
	mask->sin_family = AF_INET;
	rt.rt_flags = RTF_UP;
	rt.rt_dev = (char *)NETUP_IF;
	return ioctl(s, SIOCADDRT, &rt);
}

static int addr6_route6(int s6, int ifindex)
{
	struct sbx_in6_ifreq r;
	memset(&r, 0, sizeof r);
	inet_pton(AF_INET6, NETUP_ADDR6, &r.addr);
	r.prefixlen = NETUP_PREFIX6;
	r.ifindex = ifindex;
	if (ioctl(s6, SIOCSIFADDR, &r) != 0)
		return -1;
	struct in6_rtmsg rt;
	memset(&rt, 0, sizeof rt); /* ::/0 */
	rt.rtmsg_type = RTN_UNICAST;
	rt.rtmsg_flags = RTF_UP;
	rt.rtmsg_metric = 1024;
	rt.rtmsg_ifindex = ifindex;
	return ioctl(s6, SIOCADDRT, &rt);
}

static int configure_links(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int s6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int rc = -1;
	const char *step = "socket";
	unsigned ifindex = if_nametoindex(NETUP_IF);
	if (s < 0 || s6 < 0)
		goto out;
	step = "finding " NETUP_IF;
	if (!ifindex)
		goto out;
	/* No duplicate address detection: nothing else is on this link, and
	 * a tentative address could not be used for the first seconds. */
	write_text("/proc/sys/net/ipv6/conf/" NETUP_IF "/accept_dad", "0\n");
	write_text("/proc/sys/net/ipv6/conf/" NETUP_IF "/router_solicitations", "0\n");
	step = "bringing " NETUP_IF " up";
	if (link_up(s, NETUP_IF) != 0)
		goto out;
	step = "IPv4 address";
	if (addr4(s) != 0)
		goto out;
	step = "IPv4 default route";
	if (route4(s) != 0)
		goto out;
	step = "IPv6 address and default route";
	if (addr6_route6(s6, (int)ifindex) != 0)
		goto out;
	rc = 0;
out:
	if (rc != 0)
		log_msg("network: %s: %s", step, strerror(errno));
	if (s >= 0)
		close(s);
	if (s6 >= 0)
		close(s6);
	return rc;
}

/* ---- nftables -------------------------------------------------------------- */

/* Every packet a guest program sends is locally generated. nat output:
 * DNS first, so a query to any address (even a local one) goes to the
 * stub; then local destinations are left alone; every other TCP
 * connection goes to the transparent listener. The filter lets only
 * loopback traffic (which is where the redirects lead) out: other UDP,
 * ICMP and anything else would leave through dummy0 and is dropped, so the
 * sender gets EPERM at once. It must be in postrouting: the output hook
 * reports the device chosen before the redirect re-routed the packet. */
static int ruleset(char *out, size_t cap, uint16_t tcp_port, uint16_t dns_port)
{
	int n = snprintf(out, cap,
			 "table inet sandbox {\n"
			 "\tchain nat_output {\n"
			 "\t\ttype nat hook output priority -100; policy accept;\n"
			 "\t\tudp dport 53 redirect to :%u\n"
			 "\t\ttcp dport 53 redirect to :%u\n"
			 "\t\tfib daddr type local return\n"
			 "\t\tmeta l4proto tcp redirect to :%u\n"
			 "\t}\n"
			 "\tchain filter_postrouting {\n"
			 "\t\ttype filter hook postrouting priority 0; policy drop;\n"
			 "\t\toif \"lo\" accept\n"
			 "\t}\n"
			 "}\n",
			 dns_port, dns_port, tcp_port);
	return n > 0 && (size_t)n < cap ? n : -1;
}

static int run_nft(uint16_t tcp_port, uint16_t dns_port)
{
	char rules[1024];
	int len = ruleset(rules, sizeof rules, tcp_port, dns_port);
	int pfd[2];
	if (len < 0 || pipe2(pfd, O_CLOEXEC) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		char *const argv[] = {"nft", "-f", "/dev/stdin", NULL};
		char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", NULL};
		if (dup2(pfd[0], 0) < 0)
			_exit(127);
		execve(NFT_PATH, argv, envp);
		_exit(127);
	}
	close(pfd[0]);
	/* Far below the pipe's capacity: one write, no deadlock. */
	ssize_t w = write(pfd[1], rules, (size_t)len);
	close(pfd[1]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (w != len || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		log_msg("network: %s -f failed (status 0x%x)", NFT_PATH, status);
		return -1;
	}
	return 0;
}

int netup(uint16_t tcp_port, uint16_t dns_port, unsigned ms[4])
{
	uint64_t t0 = now_ms(), t1 = 0, t2 = 0;
	int rc = load_modules();
	t1 = now_ms();
	if (rc == 0)
		rc = configure_links();
	if (rc == 0 && write_text("/etc/resolv.conf", "# sandbox-agent: every DNS query goes "
						      "to the sandbox's DNS filter\n"
						      "nameserver " NETUP_NAMESERVER "\n") != 0)
		log_msg("network: writing /etc/resolv.conf: %s", strerror(errno));
	t2 = now_ms();
	if (rc == 0)
		rc = run_nft(tcp_port, dns_port);
	uint64_t t3 = now_ms();
	ms[0] = (unsigned)(t3 - t0);
	ms[1] = (unsigned)(t1 - t0);
	ms[2] = (unsigned)(t2 - t1);
	ms[3] = (unsigned)(t3 - t2);
	return rc;
}
