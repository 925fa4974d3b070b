/* SPDX-License-Identifier: MIT */
/* The stream API on one ring, in one process. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "helpers.h"

#define RING 4096u

static struct bw_stream *rw_pair(const char *name, struct bw_stream **w,
				 uint64_t size, int rflags)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct bw_stream *r = NULL;

	o.size = size;
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo(name, &o), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_READ | BW_NOWAIT | rflags,
					     &r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_WRITE, w), 0);
	return r;
}

static void test_write_read(void)
{
	struct bw_stream *w, *r = rw_pair("wr", &w, RING, 0);
	uint8_t in[1000], out[1000];

	bwt_fill(in, sizeof(in), 0, 1);
	CU_ASSERT_EQUAL(bw_stream_write(w, in, sizeof(in)), 1000);
	CU_ASSERT_EQUAL(bw_stream_read(r, out, 300), 300);
	CU_ASSERT_EQUAL(bw_stream_read(r, out + 300, 1000), 700);
	CU_ASSERT_EQUAL(memcmp(in, out, sizeof(in)), 0);
	CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_CUR), 1000);
	CU_ASSERT_EQUAL(bw_stream_lseek(w, 0, SEEK_CUR), 1000);
	bw_stream_close(w);
	/* last writer gone, ring drained: end of stream */
	CU_ASSERT_EQUAL(bw_stream_read(r, out, 10), 0);
	bw_stream_close(r);
	CU_ASSERT_EQUAL(bw_unlink("wr"), 0);
}

/* Positions are absolute: many wraps later they still count every byte, and
 * a peek across the wrap is one contiguous span. */
static void test_wrap_contiguous(void)
{
	struct bw_stream *w, *r = rw_pair("wrap", &w, RING, 0);
	uint8_t buf[3000];
	uint64_t pos = 0;

	for (int i = 0; i < 50; i++) {
		const void *p;
		ssize_t n;

		bwt_fill(buf, sizeof(buf), pos, 2);
		CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, sizeof(buf)), 3000);
		n = bw_stream_peek(r, &p, sizeof(buf));
		CU_ASSERT_EQUAL_FATAL(n, 3000);
		CU_ASSERT_EQUAL(bwt_verify(p, 3000, pos, 2), -1);
		/* the peeked span is held until the next call on r: give it
		 * back now, or this thread's next write waits for itself */
		CU_ASSERT_EQUAL(bw_stream_flush(r), 0);
		pos += 3000;
	}
	CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_CUR), (int64_t)pos);
	bw_stream_close(w);
	bw_stream_close(r);
	bw_unlink("wrap");
}

static void test_poke_peek_acquire(void)
{
	struct bw_stream *w, *r = rw_pair("pk", &w, RING, BW_NONBLOCK);
	const void *rp;
	void *wp;
	int64_t st;

	CU_ASSERT_EQUAL(bw_stream_poke(w, &wp, 100), 100);
	bwt_fill(wp, 100, 0, 3);
	/* not visible until the writer's next call */
	CU_ASSERT_EQUAL(bw_stream_peek(r, &rp, 100), -EAGAIN);
	CU_ASSERT_EQUAL(bw_stream_flush(w), 0);
	CU_ASSERT_EQUAL(bw_stream_peek_acquire(r, &rp, 100), 100);
	CU_ASSERT_EQUAL(bwt_verify(rp, 100, 0, 3), -1);
	/* acquire does not move */
	CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_CUR), 0);
	CU_ASSERT_EQUAL(bw_stream_peek_complete(r, 101), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_peek_complete(r, 60), 0);
	CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_CUR), 60);

	/* poke_acquire: one at a time, partial complete gives the rest back */
	CU_ASSERT_EQUAL(bw_stream_poke_acquire(w, &wp, 200), 200);
	CU_ASSERT_EQUAL(bw_stream_poke_acquire(w, &wp, 10), -EBUSY);
	CU_ASSERT_EQUAL(bw_stream_write(w, "x", 1), -EBUSY);
	bwt_fill(wp, 50, 100, 3);
	CU_ASSERT_EQUAL(bw_stream_poke_complete(w, 201), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_poke_complete(w, 50), 0);
	CU_ASSERT_EQUAL(bw_stream_lseek(w, 0, SEEK_CUR), 150);
	CU_ASSERT_EQUAL(bw_stream_poke_complete(w, 0), -EINVAL);
	/* one of nothing is a reservation too, ended by complete(0) */
	CU_ASSERT_EQUAL(bw_stream_poke_acquire(w, &wp, 0), 0);
	CU_ASSERT_EQUAL(bw_stream_write(w, "x", 1), -EBUSY);
	CU_ASSERT_EQUAL(bw_stream_poke_complete(w, 1), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_poke_complete(w, 0), 0);
	CU_ASSERT_EQUAL(bw_stream_poke_complete(w, 0), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_lseek(w, 0, SEEK_CUR), 150);

	st = bw_stream_check(r, -1, BW_CHECK_READ);
	CU_ASSERT_EQUAL(st, 60);
	CU_ASSERT_EQUAL(bw_stream_peek(r, &rp, 1000), 90);
	CU_ASSERT_EQUAL(bwt_verify(rp, 90, 60, 3), -1);
	/* nothing overwritten: the stamp validates and moves on */
	CU_ASSERT_EQUAL(bw_stream_check(r, st, BW_CHECK_READ), 150);
	CU_ASSERT_EQUAL(bw_stream_check(r, 151, BW_CHECK_READ), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_poke(w, &wp, RING + 1), -EMSGSIZE);
	bw_stream_close(w);
	bw_stream_close(r);
	bw_unlink("pk");
}

/* check(): a stamp taken before data that has since been overwritten fails.
 * A NOWAIT writer with only a tap attached overwrites freely. */
static void test_check_stale(void)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct bw_stream *w, *r;
	uint8_t buf[RING];
	int64_t st, wst;

	o.size = RING;
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("stale", &o), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("stale", BW_WRITE | BW_NOWAIT, &w), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("stale", BW_READ | BW_NOWAIT, &r), 0);
	wst = bw_stream_check(w, -1, BW_CHECK_WRITE);
	CU_ASSERT_EQUAL(wst, 0);
	bwt_fill(buf, 1000, 0, 4);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 1000), 1000);
	CU_ASSERT_EQUAL(bw_stream_check(w, wst, BW_CHECK_WRITE), 1000);
	st = bw_stream_check(r, -1, BW_CHECK_READ);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, 1000), 1000);
	CU_ASSERT_EQUAL(bw_stream_check(r, st, BW_CHECK_READ), 1000);
	/* the reader (registered) now gates: close it so the writer may lap */
	bw_stream_close(r);
	for (int i = 0; i < 5; i++)
		CU_ASSERT_EQUAL(bw_stream_write(w, buf, 1000), 1000);
	CU_ASSERT_EQUAL(bw_stream_check(w, wst, BW_CHECK_WRITE), -ESTALE);
	CU_ASSERT_EQUAL(bw_stream_check(w, 3000, BW_CHECK_WRITE), 6000);
	bw_stream_close(w);
	bw_unlink("stale");
}

/* Lossless: the writer never overwrites what a reader has not read. */
static void test_full_nonblock(void)
{
	struct bw_stream *w, *r = rw_pair("full", &w, RING, 0);
	uint8_t buf[RING];

	bw_stream_set_nonblock(w, 1);
	bwt_fill(buf, RING, 0, 5);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, RING), RING);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 1), -EAGAIN);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, 10), 10);
	CU_ASSERT_EQUAL(bwt_verify(buf, 10, 0, 5), -1);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 11), -EAGAIN);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 10), 10);
	bw_stream_close(w);
	bw_stream_close(r);
	bw_unlink("full");
}

/* A reader with --from-start sees what is still held; lseek moves it. */
static void test_from_start_seek(void)
{
	struct bw_stream *w, *r = rw_pair("seek", &w, RING, 0), *r2;
	uint8_t buf[RING];

	bwt_fill(buf, 2000, 0, 6);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 2000), 2000);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("seek", BW_READ | BW_FROM_START, &r2),
			      0);
	CU_ASSERT_EQUAL(bw_stream_read(r2, buf, RING), 2000);
	CU_ASSERT_EQUAL(bwt_verify(buf, 2000, 0, 6), -1);
	CU_ASSERT_EQUAL(bw_stream_lseek(r2, 500, SEEK_SET), 500);
	CU_ASSERT_EQUAL(bw_stream_read(r2, buf, 100), 100);
	CU_ASSERT_EQUAL(bwt_verify(buf, 100, 500, 6), -1);
	CU_ASSERT_EQUAL(bw_stream_lseek(r2, -10, SEEK_END), 1990);
	CU_ASSERT_EQUAL(bw_stream_lseek(r2, 1, SEEK_END), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_lseek(r2, 0, 42), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_lseek(w, 5, SEEK_SET), -ESPIPE);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, RING), 2000);
	CU_ASSERT_EQUAL(bw_stream_read(r2, buf, RING), 10);
	/* move everything on; position 0 is then gone */
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL(bw_stream_write(w, buf, 2000), 2000);
		CU_ASSERT_EQUAL(bw_stream_read(r, buf, RING), 2000);
		CU_ASSERT_EQUAL(bw_stream_read(r2, buf, RING), 2000);
	}
	CU_ASSERT_EQUAL(bw_stream_lseek(r2, 0, SEEK_SET), -ESTALE);
	bw_stream_close(w);
	bw_stream_close(r);
	bw_stream_close(r2);
	bw_unlink("seek");
}

/* EOF and EPIPE follow pipes. */
static void test_eof_epipe(void)
{
	struct bw_stream *w, *r = rw_pair("eof", &w, RING, 0);
	char c;

	CU_ASSERT_EQUAL(bw_stream_write(w, "ab", 2), 2);
	bw_stream_close(r);
	CU_ASSERT_EQUAL(bw_stream_write(w, "c", 1), -EPIPE);
	bw_stream_close(w);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("eof", BW_READ | BW_NOWAIT |
							     BW_FROM_START,
					     &r),
			      0);
	CU_ASSERT_EQUAL(bw_stream_read(r, &c, 1), 1);
	CU_ASSERT_EQUAL(c, 'a');
	CU_ASSERT_EQUAL(bw_stream_read(r, &c, 1), 1);
	CU_ASSERT_EQUAL(bw_stream_read(r, &c, 1), 0);
	bw_stream_close(r);
	/* a non-blocking writer with no reader fails to open, like a FIFO */
	CU_ASSERT_EQUAL(bw_stream_open("eof", BW_WRITE | BW_NONBLOCK, &w), -ENXIO);
	bw_unlink("eof");
}

/* A writer larger than the ring is split into atomic pieces and the reader
 * thread keeps up with it; the thread also exercises the futex wake path. */
struct big {
	struct bw_stream *r;
	uint64_t total;
	int bad;
};

static void *big_reader(void *arg)
{
	struct big *b = arg;
	uint8_t buf[5000];
	uint64_t pos = 0;

	while (pos < b->total) {
		ssize_t n = bw_stream_read(b->r, buf, sizeof(buf));

		if (n <= 0 || bwt_verify(buf, (size_t)n, pos, 7) != -1) {
			b->bad = 1;
			break;
		}
		pos += (uint64_t)n;
	}
	return NULL;
}

static void test_large_write_thread(void)
{
	struct bw_stream *w, *r = rw_pair("big", &w, RING, 0);
	struct big b = {.r = r, .total = 10 * RING + 123};
	uint8_t *src = malloc(b.total);
	pthread_t t;

	bwt_fill(src, b.total, 0, 7);
	pthread_create(&t, NULL, big_reader, &b);
	CU_ASSERT_EQUAL(bw_stream_write(w, src, b.total), (ssize_t)b.total);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(b.bad, 0);
	free(src);
	bw_stream_close(w);
	bw_stream_close(r);
	bw_unlink("big");
}

/* The descriptor works in epoll, for readers and for writers. */
static void test_fd_epoll(void)
{
	struct bw_stream *w, *r = rw_pair("fd", &w, RING, BW_NONBLOCK);
	struct epoll_event ev = {.events = EPOLLIN}, out;
	uint8_t buf[RING];
	int ep = epoll_create1(0), rfd = bw_stream_fd(r), wfd;

	CU_ASSERT_FATAL(rfd >= 0);
	CU_ASSERT_EQUAL(bw_stream_fd(r), rfd);
	CU_ASSERT_EQUAL(epoll_ctl(ep, EPOLL_CTL_ADD, rfd, &ev), 0);
	CU_ASSERT(bwt_quiet(rfd, ep, r, NULL, 0));
	CU_ASSERT_EQUAL(bw_stream_write(w, "hello", 5), 5);
	CU_ASSERT_EQUAL(epoll_wait(ep, &out, 1, 1000), 1);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 5);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), -EAGAIN);
	CU_ASSERT(bwt_quiet(rfd, ep, r, NULL, 0));
	CU_ASSERT_EQUAL(bw_stream_write(w, "again", 5), 5);
	CU_ASSERT_EQUAL(epoll_wait(ep, &out, 1, 1000), 1);

	/* writer side: readable descriptor means writable stream */
	bw_stream_set_nonblock(w, 1);
	while (bw_stream_write(w, buf, 512) == 512)
		;
	wfd = bw_stream_fd(w);
	CU_ASSERT_FATAL(wfd >= 0);
	struct pollfd pf = {.fd = wfd, .events = POLLIN};
	CU_ASSERT(bwt_quiet(wfd, -1, w, buf, 512));
	/* 5 bytes of "again" and seven 512-byte writes fill all but 507 */
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 5 + 7 * 512);
	CU_ASSERT_EQUAL(poll(&pf, 1, 1000), 1);
	close(ep);
	bw_stream_close(w);
	bw_stream_close(r);
	bw_unlink("fd");
}

/* The other side leaving rings the descriptor: a reader's event loop sees
 * the end of the stream, a writer's sees EPIPE, without another call. */
static void test_fd_hangup(void)
{
	struct bw_stream *w, *r = rw_pair("fdh", &w, RING, BW_NONBLOCK);
	struct pollfd pf = {.events = POLLIN};
	uint8_t buf[64];

	pf.fd = bw_stream_fd(r);
	CU_ASSERT_FATAL(pf.fd >= 0);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), -EAGAIN);
	CU_ASSERT(bwt_quiet(pf.fd, -1, r, NULL, 0));
	bw_stream_close(w);
	CU_ASSERT_EQUAL(poll(&pf, 1, 5000), 1);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 0);
	bw_stream_close(r);

	/* a writer waiting for room, and its reader leaves */
	bw_unlink("fdh");
	r = rw_pair("fdh", &w, RING, BW_NONBLOCK);
	bw_stream_set_nonblock(w, 1);
	while (bw_stream_write(w, buf, sizeof(buf)) == (ssize_t)sizeof(buf))
		;
	pf.fd = bw_stream_fd(w);
	CU_ASSERT_FATAL(pf.fd >= 0);
	CU_ASSERT(bwt_quiet(pf.fd, -1, w, buf, sizeof(buf)));
	bw_stream_close(r);
	CU_ASSERT_EQUAL(poll(&pf, 1, 5000), 1);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, sizeof(buf)), -EPIPE);
	bw_stream_close(w);
	bw_unlink("fdh");
}

/* block and select report readiness and time out. */
static void test_block_select(void)
{
	struct bw_stream *w, *r = rw_pair("sel", &w, RING, 0), *w2, *r2;
	struct bw_pollitem it[3];

	r2 = rw_pair("sel2", &w2, RING, 0);
	CU_ASSERT_EQUAL(bw_stream_block(r, BW_POLLIN, 0), 0);
	CU_ASSERT_EQUAL(bw_stream_block(r, BW_POLLIN, 20), 0);
	CU_ASSERT_EQUAL(bw_stream_block(w, BW_POLLOUT, 0), BW_POLLOUT);
	it[0] = (struct bw_pollitem){.s = r, .events = BW_POLLIN};
	it[1] = (struct bw_pollitem){.s = r2, .events = BW_POLLIN};
	it[2] = (struct bw_pollitem){.s = w, .events = BW_POLLIN};
	CU_ASSERT_EQUAL(bw_stream_select(it, 2, 10), 0);
	CU_ASSERT_EQUAL(bw_stream_write(w2, "z", 1), 1);
	CU_ASSERT_EQUAL(bw_stream_select(it, 2, 1000), 1);
	CU_ASSERT_EQUAL(it[0].revents, 0);
	CU_ASSERT_EQUAL(it[1].revents, BW_POLLIN);
	CU_ASSERT_EQUAL(bw_stream_select(it, 0, 10), -EINVAL);
	bw_stream_close(w2);
	CU_ASSERT(bw_stream_block(r2, BW_POLLIN, 0) & BW_POLLIN);
	bw_stream_close(w);
	CU_ASSERT_EQUAL(bw_stream_block(r, BW_POLLIN, 1000), BW_POLLIN | BW_POLLHUP);
	bw_stream_close(r);
	bw_stream_close(r2);
	bw_unlink("sel");
	bw_unlink("sel2");
}

static int count_rings(const char *name, void *arg)
{
	(void)name;
	(*(int *)arg)++;
	return 0;
}

static void test_list_stat(void)
{
	struct bw_stream *w, *r = rw_pair("st", &w, RING, 0);
	struct bw_ring_peer peers[4];
	struct bw_ring_info in;
	struct bw_stream_stat ss;
	int n = 0;

	CU_ASSERT_EQUAL(bw_stream_write(w, "12345", 5), 5);
	CU_ASSERT_EQUAL(bw_ring_list(count_rings, &n), 0);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_EQUAL(bw_ring_stat("st", &in, peers, 4), 2);
	CU_ASSERT_EQUAL(in.capacity, RING);
	CU_ASSERT_EQUAL(in.write_pos, 5);
	CU_ASSERT_EQUAL(in.readers, 1);
	CU_ASSERT_EQUAL(in.writers, 1);
	CU_ASSERT_EQUAL(in.mode, 0600);
	CU_ASSERT_EQUAL(peers[0].pid, getpid());
	CU_ASSERT_EQUAL(bw_stream_stat(w, &ss), 0);
	CU_ASSERT_EQUAL(ss.bytes, 5);
	CU_ASSERT_EQUAL(ss.calls, 1);
	bw_stream_close(w);
	bw_stream_close(r);
	CU_ASSERT_EQUAL(bw_unlink("st"), 0);
	CU_ASSERT_EQUAL(bw_unlink("st"), -ENOENT);
	CU_ASSERT_EQUAL(bw_ring_stat("st", &in, NULL, 0), -ENOENT);
}

/* A writer of the smallest ring (4 KiB) is writable, to block, select and
 * its descriptor, with half the ring free, not only when it is empty. */
static void test_small_ring_writable(void)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct bw_stream *r, *w;
	static char buf[4096];
	struct pollfd p;

	o.size = 4096;
	bw_unlink("sw");
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("sw", &o), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sw", BW_READ | BW_NOWAIT |
							BW_NONBLOCK,
					     &r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sw", BW_WRITE | BW_NONBLOCK, &w),
			      0);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 1), 1);
	CU_ASSERT_EQUAL(bw_stream_block(w, BW_POLLOUT, 0), BW_POLLOUT);
	p = (struct pollfd){.fd = bw_stream_fd(w), .events = POLLIN};
	CU_ASSERT_FATAL(p.fd >= 0);
	CU_ASSERT_EQUAL(poll(&p, 1, 0), 1);
	/* under half free: not writable until the reader reads */
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 2100), 2100);
	CU_ASSERT_EQUAL(bw_stream_block(w, BW_POLLOUT, 0), 0);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 2101);
	CU_ASSERT_EQUAL(bw_stream_block(w, BW_POLLOUT, 0), BW_POLLOUT);
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("sw");
}

static void reg(void)
{
	bwt_add("write and read", test_write_read);
	bwt_add("absolute positions and contiguous wrap", test_wrap_contiguous);
	bwt_add("poke, peek, acquire and complete", test_poke_peek_acquire);
	bwt_add("check detects overwrite", test_check_stale);
	bwt_add("full ring, non-blocking", test_full_nonblock);
	bwt_add("from start and lseek", test_from_start_seek);
	bwt_add("EOF and EPIPE", test_eof_epipe);
	bwt_add("writes larger than the ring", test_large_write_thread);
	bwt_add("descriptor in epoll", test_fd_epoll);
	bwt_add("descriptor rings on hang-up", test_fd_hangup);
	bwt_add("block and select", test_block_select);
	bwt_add("a 4 KiB ring's writer is writable with half of it free",
		test_small_ring_writable);
	bwt_add("list and stat", test_list_stat);
}

int main(void)
{
	return bwt_main("ring", reg);
}
