/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static char dir[128];
static pid_t dir_owner;
static CU_pSuite suite;
static int skips;
static pid_t watch_owner;
static unsigned watch_s;
static char watch_test[128];

void bwt_skip(const char *why)
{
	printf("\n    SKIP: %s ", why);
	skips++;
}

/* Removes the entries of directory path whose names start with prefix;
 * with depth, the directories among them too, with what they hold. */
static void remove_in(const char *path, const char *prefix, int depth)
{
	struct dirent *de;
	DIR *d = opendir(path);

	if (!d)
		return;
	while ((de = readdir(d))) {
		char p[512];

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    strncmp(de->d_name, prefix, strlen(prefix)))
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
		if (unlink(p) < 0 && errno == EISDIR && depth > 0) {
			remove_in(p, "", depth - 1);
			rmdir(p);
		}
	}
	closedir(d);
}

/* libfabric's shm provider keeps a region per endpoint in /dev/shm named
 * "PID:...", which only an orderly exit removes: a process killed, or one
 * that left by _exit with a handle open, leaves its regions behind (16 MiB
 * each) until /dev/shm is full and the provider refuses to start. */
static void shm_sweep(pid_t pid)
{
	char pre[24];

	snprintf(pre, sizeof(pre), "%d:", (int)pid);
	remove_in("/dev/shm", pre, 0);
}

static void dir_cleanup(void)
{
	if (!dir[0] || getpid() != dir_owner)
		return;
	remove_in(dir, "", 4); /* the rings, .fabric, the ranks' directories */
	rmdir(dir);
	shm_sweep(getpid());
}

const char *bwt_ring_dir(void)
{
	if (dir[0])
		return dir;
	snprintf(dir, sizeof(dir), "/dev/shm/bwtest.XXXXXX");
	if (!mkdtemp(dir)) {
		/* no /dev/shm: any directory will do for the tests */
		snprintf(dir, sizeof(dir), "/tmp/bwtest.XXXXXX");
		if (!mkdtemp(dir)) {
			perror("mkdtemp");
			exit(1);
		}
	}
	/* Like the default ring directory: any user may create rings. */
	chmod(dir, 01777);
	setenv("BELTWAY_DIR", dir, 1);
	dir_owner = getpid();
	atexit(dir_cleanup);
	return dir;
}

void bwt_fill(void *p, size_t n, uint64_t pos, uint32_t seed)
{
	uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = bwt_byte(pos + i, seed);
}

ssize_t bwt_verify(const void *p, size_t n, uint64_t pos, uint32_t seed)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != bwt_byte(pos + i, seed))
			return (ssize_t)i;
	return -1;
}

uint64_t bwt_fold(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

int bwt_wait(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	shm_sweep(pid); /* gone: what it left in /dev/shm is no one's */
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

/*
 * The watchdog. A test that hangs (a peer that died holding a lock, a lost
 * wakeup) must fail within bounded time with its name printed, not stall
 * the suite until CI gives up. Each test gets watch_s seconds
 * (BWT_TIMEOUT, default 300: the TSan build is slow); then the whole
 * process group goes, with the children the test forked. This is not
 * synchronization: nothing waits on it, it only bounds a failure.
 */
static void watch_fire(int sig)
{
	static const char a[] = "\nwatchdog: test \"";
	static const char b[] = "\" still running; killing its process group\n";

	if (getpid() != watch_owner) {
		/* a child that armed alarm() itself: the default action */
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	(void)!write(2, a, sizeof(a) - 1);
	(void)!write(2, watch_test, strlen(watch_test));
	(void)!write(2, b, sizeof(b) - 1);
	kill(0, SIGKILL);
	_exit(1);
}

static void watch_arm(void)
{
	CU_pTest t = CU_get_current_test();

	snprintf(watch_test, sizeof(watch_test), "%s",
		 t && t->pName ? t->pName : "?");
	alarm(watch_s);
}

static void watch_disarm(void)
{
	alarm(0);
}

static void watch_init(void)
{
	const char *e = getenv("BWT_TIMEOUT");

	watch_s = e && atoi(e) > 0 ? (unsigned)atoi(e) : 300;
	watch_owner = getpid();
	/* our own group, so the watchdog kills our children and not make */
	if (getpgid(0) != watch_owner && setpgid(0, 0) < 0)
		perror("setpgid");
	signal(SIGALRM, watch_fire);
}

void bwt_suite(const char *name)
{
	suite = CU_add_suite_with_setup_and_teardown(name, NULL, NULL,
						     watch_arm, watch_disarm);
}

void bwt_add(const char *name, void (*fn)(void))
{
	/* BWT_ONLY=substring runs only the tests whose names contain it */
	const char *only = getenv("BWT_ONLY");

	if (!only || strstr(name, only))
		CU_add_test(suite, name, fn);
}

int bwt_main(const char *name, void (*reg)(void))
{
	unsigned fails;

	bwt_ring_dir();
	watch_init();
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	bwt_suite(name);
	reg();
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	if (CU_get_number_of_tests_run() == 0)
		fails = 1;
	CU_cleanup_registry();
	if (fails)
		return 1;
	if (skips) {
		printf("%d part%s skipped: reporting a skip, not a pass\n", skips,
		       skips == 1 ? "" : "s");
		return BWT_SKIP;
	}
	return 0;
}

pid_t bwt_server_start(const char *prov, uint32_t timeout_ms,
		       const char *const *names, int *port_out)
{
	return bwt_server_start_turns(prov, timeout_ms, names, port_out, NULL);
}

pid_t bwt_server_start_turns(const char *prov, uint32_t timeout_ms,
			     const char *const *names, int *port_out,
			     void (*turn)(struct bw_server *s))
{
	pid_t parent = getpid(), pid;
	int p[2], port = -1;

	CU_ASSERT_FATAL(pipe(p) == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		struct bw_fabric_opts o = BW_FABRIC_OPTS_INIT;
		struct bw_server *s;

		/* a server outlives no test binary (one that failed before it
		 * stopped its server, or was killed by the watchdog) */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
			_exit(1);
		close(p[0]);
		o.provider = prov;
		o.timeout_ms = timeout_ms;
		o.names = names;
		if (bw_server_open("127.0.0.1:0", &o, &s) == 0)
			port = bw_server_port(s);
		else
			fprintf(stderr, "server: %s\n", bw_strerror_last());
		if (write(p[1], &port, sizeof(port)) != sizeof(port) || port < 0)
			_exit(1);
		close(p[1]);
		if (!turn)
			_exit(bw_server_run(s, -1) < 0 ? 2 : 0);
		for (;;) {
			if (bw_server_run(s, 20) < 0)
				_exit(2);
			turn(s);
		}
	}
	close(p[1]);
	CU_ASSERT_FATAL(read(p[0], &port, sizeof(port)) == sizeof(port));
	close(p[0]);
	CU_ASSERT_FATAL(port > 0);
	*port_out = port;
	return pid;
}

bool bwt_quiet(int fd, int ep, struct bw_stream *s, const void *buf,
	       size_t n)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};
	struct epoll_event out;
	uint8_t b[1];

	for (int k = 0; k < 5; k++) {
		if ((ep >= 0 ? epoll_wait(ep, &out, 1, 0) : poll(&pf, 1, 0)) == 0)
			return true;
		if (k < 4 && (buf ? bw_stream_write(s, buf, n)
				  : bw_stream_read(s, b, 1)) != -EAGAIN)
			return false;
	}
	return false;
}

void bwt_server_kill(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGKILL);
		bwt_wait(*pid);
	}
	*pid = -1;
}

pid_t bwt_writer_child(const char *name, uint64_t total, size_t blk,
		       uint32_t seed, int tokfd, uint64_t window)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct bw_stream *w;
		uint8_t *buf = malloc(blk);
		uint64_t pos = 0, next_tok = window;

		if (!buf || bw_stream_open(name, BW_WRITE | BW_NOWAIT, &w) < 0)
			_exit(3);
		while (pos < total) {
			size_t n = total - pos < blk ? (size_t)(total - pos) : blk;
			char c;

			if (tokfd >= 0 && pos >= next_tok) {
				if (read(tokfd, &c, 1) != 1)
					_exit(4);
				next_tok += window;
			}
			bwt_fill(buf, n, pos, seed);
			if (bw_stream_write(w, buf, n) != (ssize_t)n)
				_exit(5);
			pos += n;
		}
		bw_stream_close(w);
		_exit(0);
	}
	return pid;
}
