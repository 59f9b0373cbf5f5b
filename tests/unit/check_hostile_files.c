/* The files API against a hostile agent: a fake agent on a socketpair
 * answers downloads with crafted trees (a symlink and then a file "through"
 * it, "..", absolute names, data for a directory). The real host code runs:
 * the I/O thread, the stream queue, the download writer. Nothing outside
 * the destination may be touched, and the destination must not remain. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox_int.h"

struct fake {
	int fd;
	int script; /* which crafted answer to give */
	char victim[128];
	pthread_t t;
};

static void send_frame(int fd, uint8_t type, uint32_t stream, const void *p, size_t len)
{
	uint8_t hdr[SBX_PROTO_HDR_SIZE];
	struct sbx_frame_hdr h = {.len = (uint32_t)len, .type = type, .stream = stream};
	sbx_hdr_pack(hdr, &h);
	if (send(fd, hdr, sizeof hdr, MSG_NOSIGNAL) != (ssize_t)sizeof hdr ||
	    (len && send(fd, p, len, MSG_NOSIGNAL) != (ssize_t)len)) {
		/* the host hung up on us: fine, it saw a violation */
	}
}

static void send_entry(int fd, uint32_t stream, uint8_t type, const char *name, const char *target)
{
	uint8_t buf[512];
	struct sbx_file_entry e = {.type = type,
				   .mode = type == SBX_FT_DIR ? 0755 : 0644,
				   .name = name,
				   .name_len = (uint32_t)strlen(name),
				   .target = target ? target : "",
				   .target_len = target ? (uint32_t)strlen(target) : 0};
	size_t n = sbx_file_entry_encode(buf, sizeof buf, &e);
	send_frame(fd, SBX_T_FILE_ENTRY, stream, buf, n);
}

static void send_error(int fd, uint32_t stream, int err)
{
	uint8_t b[32];
	struct sbx_wr w;
	sbx_wr_init(&w, b, sizeof b);
	sbx_wr_u32(&w, (uint32_t)err);
	sbx_wr_str(&w, "cancelled", 9);
	send_frame(fd, SBX_T_ERROR, stream, b, w.off);
}

static void answer(struct fake *f, uint32_t s)
{
	send_entry(f->fd, s, SBX_FT_DIR, "", NULL);
	switch (f->script) {
	case 0: /* a symlink to a host directory, then a file "inside" it */
		send_entry(f->fd, s, SBX_FT_SYMLINK, "evil", f->victim);
		send_entry(f->fd, s, SBX_FT_FILE, "evil/pwned", NULL);
		send_frame(f->fd, SBX_T_FILE_DATA, s, "owned", 5);
		break;
	case 1: send_entry(f->fd, s, SBX_FT_FILE, "../escape", NULL); break;
	case 2: send_entry(f->fd, s, SBX_FT_FILE, f->victim, NULL); break;
	case 3: /* data for a directory entry */
		send_entry(f->fd, s, SBX_FT_DIR, "d", NULL);
		send_frame(f->fd, SBX_T_FILE_DATA, s, "data", 4);
		break;
	case 4: /* a second root-like entry: an empty name after the root */
		send_entry(f->fd, s, SBX_FT_FILE, "", NULL);
		break;
	}
	send_frame(f->fd, SBX_T_FILE_END, s, NULL, 0);
}

/* Reads host frames; answers FILE_OP with the script, FILE_CANCEL with
 * ERROR ECANCELED. Ends when the host closes the socket. */
static void *fake_agent(void *arg)
{
	struct fake *f = arg;
	static uint8_t pl[SBX_PROTO_MAX_PAYLOAD];
	for (;;) {
		uint8_t hdr[SBX_PROTO_HDR_SIZE];
		struct sbx_frame_hdr h;
		if (recv(f->fd, hdr, sizeof hdr, MSG_WAITALL) != (ssize_t)sizeof hdr ||
		    sbx_hdr_unpack(hdr, &h))
			return NULL;
		if (h.len && recv(f->fd, pl, h.len, MSG_WAITALL) != (ssize_t)h.len)
			return NULL;
		if (h.type == SBX_T_FILE_OP)
			answer(f, h.stream);
		else if (h.type == SBX_T_FILE_CANCEL)
			send_error(f->fd, h.stream, ECANCELED);
	}
}

static struct sandbox *fake_sandbox(struct fake *f, int script)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct sandbox *sb = calloc(1, sizeof *sb);
	atomic_init(&sb->refs, 2); /* never reaches zero here: freed by the test */
	pthread_mutex_init(&sb->lock, NULL);
	pthread_mutex_init(&sb->wlock, NULL);
	pthread_mutex_init(&sb->kill_lock, NULL);
	pthread_cond_init(&sb->cond, NULL);
	pthread_mutex_init(&sb->audit.lock, NULL);
	sb->audit.fd = -1;
	strcpy(sb->id, "hostile");
	sb->state = SBX_RUNNING;
	sb->fd = sv[0];
	fcntl(sb->fd, F_SETFL, fcntl(sb->fd, F_GETFL) | O_NONBLOCK);
	ck_assert_int_eq(sbx_chan_start(sb), 0);
	f->fd = sv[1];
	f->script = script;
	pthread_create(&f->t, NULL, fake_agent, f);
	return sb;
}

static void fake_free(struct sandbox *sb, struct fake *f)
{
	sbx_chan_stop(sb);
	shutdown(sb->fd, SHUT_RDWR);
	pthread_join(f->t, NULL);
	close(sb->fd);
	close(f->fd);
	close(sb->wake_fd);
	pthread_mutex_destroy(&sb->audit.lock);
	pthread_mutex_destroy(&sb->lock);
	pthread_mutex_destroy(&sb->wlock);
	pthread_mutex_destroy(&sb->kill_lock);
	pthread_cond_destroy(&sb->cond);
	free(sb);
}

static int entries(const char *dir)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 0", dir);
	return system(cmd) == 0 ? 0 : 1;
}

/* Run one script: returns the download's result code. */
static int run_script(int script, char *base, char *victim)
{
	struct fake f;
	snprintf(f.victim, sizeof f.victim, "%s", victim);
	struct sandbox *sb = fake_sandbox(&f, script);
	char dst[256];
	snprintf(dst, sizeof dst, "%s/dst", base);
	int rc = sandbox_file_download(sb, "/anything", dst, 0);
	ck_assert_msg(access(dst, F_OK) != 0, "script %d: destination left behind", script);
	ck_assert_msg(entries(victim) == 0, "script %d: wrote outside the destination", script);
	char esc[256];
	snprintf(esc, sizeof esc, "%s/escape", base);
	ck_assert_msg(access(esc, F_OK) != 0, "script %d: '..' escaped", script);
	fake_free(sb, &f);
	return rc;
}

START_TEST(hostile_downloads_touch_nothing_outside)
{
	char base[] = "/tmp/sbx-hostile-XXXXXX", victim[] = "/tmp/sbx-victim-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(base));
	ck_assert_ptr_nonnull(mkdtemp(victim));
	int rc = run_script(0, base, victim);
	ck_assert_msg(rc == SANDBOX_E_IO, "symlink traversal: %s: %s", sandbox_strerror(rc),
		      sandbox_last_error());
	ck_assert_int_eq(run_script(1, base, victim), SANDBOX_E_PROTOCOL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "'..'"));
	ck_assert_int_eq(run_script(2, base, victim), SANDBOX_E_PROTOCOL);
	/* (data beyond the credit is the I/O thread's check, fuzzed in
	 * tests/fuzz/fuzz_files.c where the consumer can be held back) */
	ck_assert_int_eq(run_script(3, base, victim), SANDBOX_E_PROTOCOL);
	ck_assert_ptr_nonnull(strstr(sandbox_last_error(), "FILE_DATA"));
	ck_assert_int_eq(run_script(4, base, victim), SANDBOX_E_PROTOCOL);
	rmdir(victim);
	ck_assert_int_eq(rmdir(base), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hostile-files");
	TCase *t = tcase_create("download");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, hostile_downloads_touch_nothing_outside);
	suite_add_tcase(s, t);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_VERBOSE);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
