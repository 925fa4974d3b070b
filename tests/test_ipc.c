/* SPDX-License-Identifier: MIT */
/* Streams across processes: pipe, mpipe, fork, named rings opened by
 * unrelated processes, and peers that die. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define RING (64u << 10)

static struct bw_ring_opts ring_opts(uint64_t size)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = size;
	return o;
}

/* Writes total bytes of pattern `seed` in calls of `call` bytes. */
static int write_pattern(struct bw_stream *w, uint64_t total, size_t call,
			 uint32_t seed)
{
	uint8_t *buf = malloc(call);
	int rc = 0;

	for (uint64_t pos = 0; pos < total && rc == 0;) {
		size_t n = total - pos < call ? (size_t)(total - pos) : call;

		bwt_fill(buf, n, pos, seed);
		if (bw_stream_write(w, buf, n) != (ssize_t)n)
			rc = 1;
		pos += n;
	}
	free(buf);
	return rc;
}

/* Reads to EOF, checking each byte. Returns bytes read, or -1 on bad data. */
static int64_t read_pattern(struct bw_stream *r, uint32_t seed, uint64_t start)
{
	uint8_t buf[7001];
	uint64_t pos = start;

	for (;;) {
		ssize_t n = bw_stream_read(r, buf, sizeof(buf));

		if (n == 0)
			return (int64_t)(pos - start);
		if (n < 0 || bwt_verify(buf, (size_t)n, pos, seed) != -1)
			return -1;
		pos += (uint64_t)n;
	}
}

/* pipe + bw_fork: the classic parent writes, child reads. */
static void test_pipe_fork(void)
{
	struct bw_ring_opts o = ring_opts(RING);
	struct bw_stream *p[2];
	pid_t pid;

	CU_ASSERT_EQUAL_FATAL(bw_pipe(p, &o), 0);
	pid = bw_fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		bw_stream_close(p[1]);
		_exit(read_pattern(p[0], 11, 0) == 10 * RING + 77 ? 0 : 1);
	}
	bw_stream_close(p[0]);
	CU_ASSERT_EQUAL(write_pattern(p[1], 10 * RING + 77, 3000, 11), 0);
	bw_stream_close(p[1]);
	CU_ASSERT_EQUAL(bwt_wait(pid), 0);
}

/* The child's reader reads from where the parent was; the parent's reader
 * also sees the rest: both see the whole remaining stream. */
static void test_fork_positions(void)
{
	struct bw_ring_opts o = ring_opts(RING);
	struct bw_stream *p[2];
	uint8_t buf[100];
	pid_t pid;

	CU_ASSERT_EQUAL_FATAL(bw_pipe(p, &o), 0);
	bwt_fill(buf, 100, 0, 12);
	CU_ASSERT_EQUAL(bw_stream_write(p[1], buf, 100), 100);
	CU_ASSERT_EQUAL(bw_stream_read(p[0], buf, 40), 40);
	pid = bw_fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		bw_stream_close(p[1]);
		_exit(read_pattern(p[0], 12, 40) == 60 ? 0 : 1);
	}
	bw_stream_close(p[1]);
	CU_ASSERT_EQUAL(read_pattern(p[0], 12, 40), 60);
	bw_stream_close(p[0]);
	CU_ASSERT_EQUAL(bwt_wait(pid), 0);
}

/* A child of plain fork() holds no attachment: it cannot use inherited
 * streams, and closing them does not detach the parent. */
static void test_plain_fork(void)
{
	struct bw_ring_opts o = ring_opts(RING);
	struct bw_stream *p[2];
	pid_t pid;
	char c;

	CU_ASSERT_EQUAL_FATAL(bw_pipe(p, &o), 0);
	pid = fork();
	if (pid == 0) {
		int ok = bw_stream_write(p[1], "x", 1) == -ECHILD &&
			 bw_stream_read(p[0], &c, 1) == -ECHILD;

		bw_stream_close(p[0]);
		bw_stream_close(p[1]);
		_exit(ok ? 0 : 1);
	}
	CU_ASSERT_EQUAL(bwt_wait(pid), 0);
	CU_ASSERT_EQUAL(bw_stream_write(p[1], "y", 1), 1);
	CU_ASSERT_EQUAL(bw_stream_read(p[0], &c, 1), 1);
	CU_ASSERT_EQUAL(c, 'y');
	bw_stream_close(p[0]);
	bw_stream_close(p[1]);
}

/* mpipe: one writer, three readers in three processes, each gets it all. */
static void test_mpipe(void)
{
	struct bw_ring_opts o = ring_opts(RING);
	struct bw_stream *e[4];
	pid_t pid[3];

	CU_ASSERT_EQUAL_FATAL(bw_mpipe(e, 4, &o), 0);
	for (int i = 0; i < 3; i++) {
		pid[i] = bw_fork();
		CU_ASSERT_FATAL(pid[i] >= 0);
		if (pid[i] == 0) {
			for (int j = 0; j < 4; j++)
				if (j != i + 1)
					bw_stream_close(e[j]);
			_exit(read_pattern(e[i + 1], 13, 0) == 20 * RING ? 0
									 : 1);
		}
	}
	for (int i = 1; i < 4; i++)
		bw_stream_close(e[i]);
	CU_ASSERT_EQUAL(write_pattern(e[0], 20 * RING, 1000, 13), 0);
	bw_stream_close(e[0]);
	for (int i = 0; i < 3; i++)
		CU_ASSERT_EQUAL(bwt_wait(pid[i]), 0);
	CU_ASSERT_EQUAL(bw_mpipe(e, 1, &o), -EINVAL);
	/* more readers than a ring has slots by default: refused up front */
	{
		static struct bw_stream *many[100];

		CU_ASSERT_EQUAL(bw_mpipe(many, 100, NULL), -EINVAL);
		CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "99 reader"));
	}
}

/* Named ring, FIFO rules: a reader that comes first waits for a writer; the
 * processes share nothing but the name. */
static void test_named_fifo(void)
{
	struct bw_ring_opts o = ring_opts(RING);
	pid_t rd, wr;

	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("fifo", &o), 0);
	rd = fork();
	if (rd == 0) {
		struct bw_stream *r;

		if (bw_stream_open("fifo", BW_READ, &r) < 0)
			_exit(2);
		_exit(read_pattern(r, 14, 0) == 5 * RING ? 0 : 1);
	}
	wr = fork();
	if (wr == 0) {
		struct bw_stream *w;
		int rc;

		if (bw_stream_open("fifo", BW_WRITE, &w) < 0)
			_exit(2);
		rc = write_pattern(w, 5 * RING, 4096, 14);
		bw_stream_close(w);
		_exit(rc);
	}
	CU_ASSERT_EQUAL(bwt_wait(wr), 0);
	CU_ASSERT_EQUAL(bwt_wait(rd), 0);
	bw_unlink("fifo");
}

/* A child attaches as a writer to NAME, writes `prefix` bytes of pattern
 * `seed`, takes a reservation of `resv` bytes and fills half of it; then it
 * is killed. Returns its wait status (128 + SIGKILL expected). */
static int kill_inside_reservation(const char *name, size_t prefix,
				   size_t resv, uint32_t seed)
{
	int sync[2];
	pid_t pid;
	char c;

	if (pipe(sync) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		struct bw_stream *w;
		uint8_t buf[1000];
		void *p;

		if (bw_stream_open(name, BW_WRITE, &w) < 0 || prefix > sizeof(buf))
			_exit(2);
		bwt_fill(buf, prefix, 0, seed);
		if (bw_stream_write(w, buf, prefix) != (ssize_t)prefix ||
		    bw_stream_poke_acquire(w, &p, resv) != (ssize_t)resv)
			_exit(2);
		memset(p, 0xee, resv / 2);
		if (write(sync[1], "k", 1) != 1)
			_exit(3);
		pause();
		_exit(0);
	}
	if (read(sync[0], &c, 1) != 1)
		c = 0;
	kill(pid, SIGKILL);
	close(sync[0]);
	close(sync[1]);
	return bwt_wait(pid);
}

/* FIFO open: a writer that attaches, writes and leaves before the waiting
 * reader looks still ends the reader's wait; it reads the data, then EOF. */
static void test_fifo_writer_came_and_went(void)
{
	struct bw_ring_opts o = ring_opts(RING);
	struct bw_ring_info in;
	struct bw_stream *w;
	pid_t pid;

	for (int round = 0; round < 40; round++) {
		bw_unlink("fleeting");
		CU_ASSERT_EQUAL_FATAL(bw_mkfifo("fleeting", &o), 0);
		pid = fork();
		if (pid == 0) {
			struct bw_stream *r;
			char buf[32];

			alarm(10);
			if (bw_stream_open("fleeting", BW_READ, &r) < 0)
				_exit(2);
			_exit(bw_stream_read(r, buf, sizeof(buf)) == 10 &&
					      bw_stream_read(r, buf, sizeof(buf)) == 0
				      ? 0
				      : 1);
		}
		/* even rounds: the reader is attached and waiting for a
		 * writer; odd rounds: the writer waits for the reader */
		for (int i = 0; round % 2 == 0 && i < 10000; i++) {
			if (bw_ring_stat("fleeting", &in, NULL, 0) >= 0 &&
			    in.readers == 1)
				break;
			usleep(100);
		}
		CU_ASSERT_EQUAL_FATAL(bw_stream_open("fleeting", BW_WRITE, &w), 0);
		CU_ASSERT_EQUAL(bw_stream_write(w, "0123456789", 10), 10);
		bw_stream_close(w);
		int st = bwt_wait(pid);

		if (st)
			printf("\n    round %d: the reader exited %d ", round, st);
		CU_ASSERT_EQUAL(st, 0);
	}
	bw_unlink("fleeting");
}

/* A writer killed in the middle of a write: readers get every byte that was
 * published, intact, then end of stream; never the torn span. */
static void test_writer_killed_midwrite(void)
{
	struct bw_ring_opts o = ring_opts(RING);
	struct bw_stream *r;

	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("kill-w", &o), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("kill-w", BW_READ | BW_NOWAIT, &r), 0);
	CU_ASSERT_EQUAL(kill_inside_reservation("kill-w", 1000, 1000, 15),
			128 + SIGKILL);
	CU_ASSERT_EQUAL(read_pattern(r, 15, 0), 1000);
	bw_stream_close(r);

	/* the next writer drops the dead one's reservation and goes on */
	struct bw_stream *w2, *r2;
	struct bw_ring_info in;
	uint8_t buf[10];

	CU_ASSERT_EQUAL_FATAL(bw_stream_open("kill-w", BW_READ | BW_NOWAIT, &r2), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("kill-w", BW_WRITE, &w2), 0);
	CU_ASSERT_EQUAL(bw_stream_write(w2, "0123456789", 10), 10);
	CU_ASSERT_EQUAL(bw_stream_read(r2, buf, 10), 10);
	CU_ASSERT_EQUAL(memcmp(buf, "0123456789", 10), 0);
	CU_ASSERT(bw_ring_stat("kill-w", &in, NULL, 0) >= 0);
	CU_ASSERT_EQUAL(in.dead_writers, 1);
	CU_ASSERT_EQUAL(in.write_pos, 1010);
	bw_stream_close(w2);
	bw_stream_close(r2);
	bw_unlink("kill-w");
}

/* Writers killed at arbitrary points inside write(): whatever the reader gets
 * is exactly the pattern, up to a clean end. */
static void test_writer_killed_random(void)
{
	for (int round = 0; round < 6; round++) {
		struct bw_ring_opts o = ring_opts(RING);
		struct bw_stream *p[2];
		int64_t got;
		pid_t pid;

		CU_ASSERT_EQUAL_FATAL(bw_pipe(p, &o), 0);
		pid = bw_fork();
		CU_ASSERT_FATAL(pid >= 0);
		if (pid == 0) {
			bw_stream_close(p[0]);
			write_pattern(p[1], UINT64_C(1) << 40, 50000, 16);
			_exit(0);
		}
		bw_stream_close(p[1]);
		usleep(1000u * (unsigned)(round * 3 + 1));
		kill(pid, SIGKILL);
		got = read_pattern(p[0], 16, 0);
		CU_ASSERT(got >= 0);
		CU_ASSERT_EQUAL(bwt_wait(pid), 128 + SIGKILL);
		bw_stream_close(p[0]);
	}
}

/* With two writers, one killed inside its reservation: the other's later
 * write completes without waiting (posted); a waiter finds the dead one's
 * span, pads it and moves the tail over both. The reader gets what came
 * before, then what came after, never the torn span; the ring goes on. */
/* A writer that closes with a poke_acquire it never completed, after
 * another writer reserved behind it: its span is padded, as a dead
 * writer's is (the ring is not broken), and the reader gets what came
 * before and after it. */
static void test_writer_closes_acquired(void)
{
	struct bw_ring_opts o = ring_opts(RING);
	struct bw_stream *w1, *w2, *r;
	struct bw_ring_info in;
	char buf[64];
	void *p;

	bw_unlink("ca");
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("ca", &o), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("ca", BW_READ | BW_NOWAIT |
							BW_NONBLOCK,
					     &r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("ca", BW_WRITE, &w1), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("ca", BW_WRITE, &w2), 0);
	CU_ASSERT_EQUAL(bw_stream_write(w1, "first", 5), 5);
	CU_ASSERT_EQUAL(bw_stream_poke_acquire(w1, &p, 10), 10);
	memset(p, '?', 10);
	CU_ASSERT_EQUAL(bw_stream_write(w2, "second", 6), 6);
	CU_ASSERT_EQUAL(bw_stream_close(w1), 0);
	CU_ASSERT_EQUAL(bw_stream_write(w2, "third", 5), 5);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 5);
	CU_ASSERT_EQUAL(memcmp(buf, "first", 5), 0);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 11);
	CU_ASSERT_EQUAL(memcmp(buf, "secondthird", 11), 0);
	CU_ASSERT_EQUAL(bw_ring_stat("ca", &in, NULL, 0) >= 0, 1);
	CU_ASSERT_EQUAL(in.broken, 0);
	CU_ASSERT_EQUAL(in.padded_spans, 1);
	bw_stream_close(w2);
	bw_stream_close(r);
	bw_unlink("ca");
}

static void test_writer_killed_before_another(void)
{
	struct bw_ring_opts o = ring_opts(RING);
	struct bw_stream *r, *w;
	struct bw_stream_stat st;
	struct bw_ring_info in;
	uint8_t buf[100];

	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("kill-2w", &o), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("kill-2w", BW_READ | BW_NOWAIT, &r), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("kill-2w", BW_WRITE, &w), 0);
	CU_ASSERT_EQUAL(bw_stream_write(w, "before", 6), 6);
	CU_ASSERT_EQUAL(kill_inside_reservation("kill-2w", 0, 50, 17),
			128 + SIGKILL);
	CU_ASSERT_EQUAL(bw_stream_write(w, "after", 5), 5);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 6);
	CU_ASSERT_EQUAL(memcmp(buf, "before", 6), 0);
	/* waits one liveness interval, then the span is padded */
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 5);
	CU_ASSERT_EQUAL(memcmp(buf, "after", 5), 0);
	CU_ASSERT_EQUAL(bw_stream_write(w, "again", 5), 5);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 5);
	CU_ASSERT_EQUAL(memcmp(buf, "again", 5), 0);
	CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_CUR), 6 + 50 + 5 + 5);
	CU_ASSERT_EQUAL(bw_stream_stat(r, &st), 0);
	CU_ASSERT_EQUAL(st.padded, 50);
	CU_ASSERT_EQUAL(st.lost, 0);
	CU_ASSERT(bw_ring_stat("kill-2w", &in, NULL, 0) >= 0);
	CU_ASSERT(!in.broken);
	CU_ASSERT_EQUAL(in.dead_writers, 1);
	CU_ASSERT_EQUAL(in.padded_spans, 1);
	CU_ASSERT_EQUAL(in.padded_bytes, 50);
	/* a reader seeking back over the pad skips it again */
	CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_SET), 0);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 6);
	CU_ASSERT_EQUAL(memcmp(buf, "before", 6), 0);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 10);
	CU_ASSERT_EQUAL(memcmp(buf, "afteragain", 10), 0);
	bw_stream_close(w);
	bw_stream_close(r);
	bw_unlink("kill-2w");
}

/* A live writer that holds a reservation is waited for when the ring has
 * no writer timeout: waiters look at it every liveness interval and leave
 * it; with a timeout, it is padded and its completion fails. */
static void test_writer_stalled(void)
{
	for (uint32_t tmo = 0; tmo <= 100; tmo += 100) {
		struct bw_ring_opts o = ring_opts(RING);
		struct bw_stream *r, *w1, *w2;
		struct bw_ring_info in;
		uint8_t buf[100];
		void *p;

		o.writer_timeout_ms = tmo;
		CU_ASSERT_EQUAL_FATAL(bw_mkfifo("stall", &o), 0);
		CU_ASSERT_EQUAL_FATAL(bw_stream_open("stall", BW_READ | BW_NOWAIT,
						     &r), 0);
		CU_ASSERT_EQUAL_FATAL(bw_stream_open("stall", BW_WRITE, &w1), 0);
		CU_ASSERT_EQUAL_FATAL(bw_stream_open("stall", BW_WRITE, &w2), 0);
		CU_ASSERT_EQUAL_FATAL(bw_stream_poke_acquire(w1, &p, 30), 30);
		memset(p, 'x', 30);
		CU_ASSERT_EQUAL(bw_stream_write(w2, "later", 5), 5);
		/* three liveness intervals (200 ms) of looking at it */
		CU_ASSERT_EQUAL(bw_stream_block(r, BW_POLLIN, tmo ? 2000 : 700),
				tmo ? BW_POLLIN : 0);
		CU_ASSERT(bw_ring_stat("stall", &in, NULL, 0) >= 0);
		CU_ASSERT_EQUAL(in.padded_spans, tmo ? 1 : 0);
		CU_ASSERT_EQUAL(in.writer_timeout_ms, tmo);
		CU_ASSERT_EQUAL(bw_stream_poke_complete(w1, 30),
				tmo ? -ETIMEDOUT : 0);
		if (tmo)
			CU_ASSERT(strstr(bw_strerror_last(), "presumed dead") !=
				  NULL);
		CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)),
				tmo ? 5 : 35);
		CU_ASSERT_EQUAL(memcmp(buf + (tmo ? 0 : 30), "later", 5), 0);
		/* the fenced writer goes on with its next write */
		CU_ASSERT_EQUAL(bw_stream_write(w1, "again", 5), 5);
		CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 5);
		CU_ASSERT_EQUAL(memcmp(buf, "again", 5), 0);
		bw_stream_close(w1);
		bw_stream_close(w2);
		bw_stream_close(r);
		bw_unlink("stall");
	}
}

/* A waiter's clock starts when it first sees the holder, also for the very
 * first reservation of a ring (position 0): a writer holding it for less
 * than the timeout is never fenced. */
static void test_writer_timeout_from_start(void)
{
	struct bw_ring_opts o = ring_opts(RING);
	struct bw_stream *r, *w;
	struct bw_ring_info in;
	uint8_t buf[16];
	void *p;

	o.writer_timeout_ms = 400;
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("tmo0", &o), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("tmo0", BW_READ | BW_NOWAIT, &r), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("tmo0", BW_WRITE, &w), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_poke_acquire(w, &p, 8), 8);
	memcpy(p, "at zero!", 8);
	/* the reader looks at the holder once (every 200 ms) */
	CU_ASSERT_EQUAL(bw_stream_block(r, BW_POLLIN, 300), 0);
	CU_ASSERT(bw_ring_stat("tmo0", &in, NULL, 0) >= 0);
	CU_ASSERT_EQUAL(in.padded_spans, 0);
	CU_ASSERT_EQUAL(bw_stream_poke_complete(w, 8), 0);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 8);
	CU_ASSERT_EQUAL(memcmp(buf, "at zero!", 8), 0);
	bw_stream_close(w);
	bw_stream_close(r);
	bw_unlink("tmo0");
}

/* A peer that opens NAME (side 0: the writer, 1: the reader) and then
 * waits to be killed; returns once it has opened. */
static pid_t peer_opened(const char *name, int side)
{
	int sync[2];
	pid_t pid;
	char c;

	CU_ASSERT_EQUAL_FATAL(pipe(sync), 0);
	pid = fork();
	if (pid == 0) {
		struct bw_stream *p;

		if (bw_stream_open(name, (side ? BW_READ : BW_WRITE) | BW_NOWAIT,
				   &p))
			_exit(1);
		if (write(sync[1], "o", 1) != 1)
			_exit(2);
		pause();
		_exit(0);
	}
	CU_ASSERT_EQUAL(read(sync[0], &c, 1), 1);
	close(sync[0]);
	close(sync[1]);
	return pid;
}

/* A reader that dies does not hold a lossless writer forever: it is found
 * dead, detached and counted, and the writer gets EPIPE when none is left. */
static void test_reader_killed(void)
{
	struct bw_ring_opts o = ring_opts(RING);
	struct bw_stream *w;
	struct bw_ring_info in;
	uint8_t buf[4096];
	ssize_t n;
	pid_t pid;

	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("kill-r", &o), 0);
	pid = peer_opened("kill-r", 1);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("kill-r", BW_WRITE, &w), 0);
	kill(pid, SIGKILL);
	CU_ASSERT_EQUAL(bwt_wait(pid), 128 + SIGKILL);
	memset(buf, 1, sizeof(buf));
	do
		n = bw_stream_write(w, buf, sizeof(buf));
	while (n == (ssize_t)sizeof(buf));
	CU_ASSERT_EQUAL(n, -EPIPE);
	CU_ASSERT(bw_ring_stat("kill-r", &in, NULL, 0) >= 0);
	CU_ASSERT_EQUAL(in.dead_readers, 1);
	CU_ASSERT_EQUAL(in.readers, 0);
	bw_stream_close(w);
	bw_unlink("kill-r");
}

/* A writer's last close wakes a reader blocked in another process. */
static void test_blocked_reader_eof(void)
{
	struct bw_ring_opts o = ring_opts(RING);
	struct bw_stream *p[2];
	int sync[2];
	pid_t pid;
	char c;

	CU_ASSERT_EQUAL_FATAL(pipe(sync), 0);
	CU_ASSERT_EQUAL_FATAL(bw_pipe(p, &o), 0);
	pid = bw_fork();
	if (pid == 0) {
		bw_stream_close(p[1]);
		if (write(sync[1], "r", 1) != 1)
			_exit(3);
		_exit(bw_stream_read(p[0], &c, 1) == 0 ? 0 : 1);
	}
	bw_stream_close(p[0]);
	CU_ASSERT_EQUAL(read(sync[0], &c, 1), 1);
	bw_stream_close(p[1]);
	CU_ASSERT_EQUAL(bwt_wait(pid), 0);
}

/* Event loops: a non-blocking reader learns that its writer was killed,
 * and a non-blocking writer is no longer held back by a reader that was.
 * by_fd 0: the loop waits in short slices (as one with a timer does): each
 * handle looks for dead peers once it has waited a liveness interval, over
 * all its calls. by_fd 1: the loop waits on the descriptor alone, with no
 * timeout of its own: the descriptor ticks each liveness interval, so the
 * loop calls; scale: on a self-scaling ring (held at its size, so that a
 * full ring does not grow). The loops are bounded far above that interval
 * (poll's bound only turns a hang into a failure). */
static void dead_peers_seen(int by_fd, uint32_t scale)
{
	struct bw_ring_opts o = ring_opts(RING);
	static char buf[RING];
	struct bw_stream *s;

	o.scale = scale;
	o.scale_min = o.scale_max = scale ? RING : 0;
	for (int side = 0; side < 2; side++) {
		struct pollfd pf = {.events = POLLIN};
		time_t end = time(NULL) + 20;
		int waits = 0;
		ssize_t x;
		pid_t pid;

		bw_unlink("dp");
		CU_ASSERT_EQUAL_FATAL(bw_mkfifo("dp", &o), 0);
		pid = peer_opened("dp", side);
		CU_ASSERT_EQUAL_FATAL(bw_stream_open("dp", (side ? BW_WRITE
								 : BW_READ) |
								BW_NONBLOCK |
								BW_NOWAIT,
						     &s),
				      0);
		if (side) /* fill the ring: the writer waits for the reader */
			CU_ASSERT_EQUAL(bw_stream_write(s, buf, RING), RING);
		pf.fd = by_fd ? bw_stream_fd(s) : -1;
		CU_ASSERT_FATAL(!by_fd || pf.fd >= 0);
		kill(pid, SIGKILL);
		CU_ASSERT_EQUAL(bwt_wait(pid), 128 + SIGKILL);
		for (;;) {
			x = side ? bw_stream_write(s, buf, 1)
				 : bw_stream_read(s, buf, 1);
			if (x != -EAGAIN || time(NULL) >= end)
				break;
			waits++;
			if (!by_fd) {
				bw_stream_block(s, side ? BW_POLLOUT : BW_POLLIN,
						20);
			} else if (poll(&pf, 1, 10000) != 1) {
				CU_FAIL("the descriptor stayed quiet after "
					"the peer was killed");
				break;
			}
		}
		/* the reader: the end; the writer (BW_NOWAIT: it needs no
		 * reader) is no longer held back by the dead one */
		CU_ASSERT_EQUAL(x, side ? 1 : 0);
		CU_ASSERT(waits >= 1);
		bw_stream_close(s);
	}
	bw_unlink("dp");
}

static void test_short_waits_see_dead_peers(void)
{
	dead_peers_seen(0, 0);
}

static void test_fd_loop_sees_dead_peers(void)
{
	dead_peers_seen(1, 0);
	dead_peers_seen(1, BW_SCALE_REALLOC);
}

static void reg(void)
{
	bwt_add("pipe across bw_fork", test_pipe_fork);
	bwt_add("event loops on the descriptor see dead peers",
		test_fd_loop_sees_dead_peers);
	bwt_add("bw_fork keeps positions", test_fork_positions);
	bwt_add("plain fork cannot use streams", test_plain_fork);
	bwt_add("mpipe with three reader processes", test_mpipe);
	bwt_add("named ring between unrelated processes", test_named_fifo);
	bwt_add("FIFO open: a writer came and went", test_fifo_writer_came_and_went);
	bwt_add("writer killed mid-write", test_writer_killed_midwrite);
	bwt_add("writers killed at random points", test_writer_killed_random);
	bwt_add("writer killed before another writer", test_writer_killed_before_another);
	bwt_add("writer closes with a poke_acquire open",
		test_writer_closes_acquired);
	bwt_add("live writer stalled, with and without a timeout",
		test_writer_stalled);
	bwt_add("writer timeout counts from the first look",
		test_writer_timeout_from_start);
	bwt_add("reader killed", test_reader_killed);
	bwt_add("short waits find dead peers", test_short_waits_see_dead_peers);
	bwt_add("blocked reader sees EOF", test_blocked_reader_eof);
}

int main(void)
{
	/* peers killed here are found within a few tens of milliseconds */
	setenv("BELTWAY_LIVENESS_MS", "50", 1);
	return bwt_main("ipc", reg);
}
