/* SPDX-License-Identifier: MIT */
/*
 * Dynamic rings: data in heap containers, allocated as writes need them
 * and freed once every reader passed. The stream across many containers,
 * the memory bound, peeks that end at a container's end, two readers at
 * different paces, a late reader, threads, refusals (other processes,
 * bw_fork children, options that cannot work), pokes, append left to
 * the -ENOSYS default, and records of fr, vr and dr layouts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define RING 65536u /* containers of RING / 4 */
#define BOUND (RING + 2 * (RING / 4))

static int mk(const char *name, uint32_t flags, uint32_t policy,
	      uint32_t writers)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = RING;
	o.flags = BW_RING_DYNAMIC | flags;
	o.policy = policy;
	o.max_writers = writers;
	bw_unlink(name);
	return bw_mkfifo(name, &o);
}

static uint64_t held(struct bw_stream *s)
{
	struct bw_stream_stat st;

	CU_ASSERT_EQUAL_FATAL(bw_stream_stat(s, &st), 0);
	return st.held_bytes;
}

/* Writes and reads of many sizes, across container ends; the bytes come
 * back in order, and memory stays within the bound throughout. */
static void test_stream_and_bound(void)
{
	struct bw_stream *r, *w;
	static uint8_t buf[RING], out[RING];
	uint64_t wpos = 0, rpos = 0, peak = 0;

	CU_ASSERT_EQUAL_FATAL(mk("dy", 0, 0, 0), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dy", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     &r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dy", BW_WRITE | BW_NONBLOCK, &w),
			      0);
	CU_ASSERT_EQUAL(held(w), 0); /* nothing before the first write */
	for (unsigned k = 0; rpos < 40 * RING; k++) {
		size_t n = 1 + (k * 7919u) % (RING / 3);
		ssize_t x;

		bwt_fill(buf, n, wpos, 3);
		x = bw_stream_write(w, buf, n);
		if (x > 0)
			wpos += (uint64_t)x;
		else
			CU_ASSERT_EQUAL_FATAL(x, -EAGAIN); /* full */
		if (held(w) > peak)
			peak = held(w);
		if (k % 3 == 0 || x < 0) {
			size_t m = 1 + (k * 104729u) % RING;

			x = bw_stream_read(r, out, m);
			if (x == -EAGAIN)
				continue;
			CU_ASSERT_FATAL(x > 0);
			CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)x, rpos, 3),
					      -1);
			rpos += (uint64_t)x;
		}
	}
	CU_ASSERT(peak > 0);
	CU_ASSERT(peak <= BOUND);
	/* drained: the reader holds at most the container it stands in,
	 * and the writer the one it writes next */
	for (ssize_t x; (x = bw_stream_read(r, out, RING)) > 0; rpos += (uint64_t)x)
		CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)x, rpos, 3), -1);
	CU_ASSERT_EQUAL(rpos, wpos);
	/* the next container the writer needs frees what lies behind: the
	 * container the reader stands at the end of, and the new ones */
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, RING / 4 + 1), RING / 4 + 1);
	CU_ASSERT(held(w) <= 3 * (RING / 4));
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("dy");
}

/* A peek ends at its container's end; peek_acquire and complete; pokes
 * likewise. */
static void test_peek(void)
{
	struct bw_stream *r, *w;
	static uint8_t buf[RING];
	const void *p;

	CU_ASSERT_EQUAL_FATAL(mk("dp", 0, 0, 0), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dp", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     &r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dp", BW_WRITE, &w), 0);
	bwt_fill(buf, RING / 2, 0, 5);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, RING / 2), RING / 2);
	CU_ASSERT_EQUAL(bw_stream_peek(r, &p, 100), 100);
	CU_ASSERT_EQUAL(bwt_verify(p, 100, 0, 5), -1);
	/* to the container's end, not beyond */
	CU_ASSERT_EQUAL(bw_stream_peek(r, &p, RING), RING / 4 - 100);
	CU_ASSERT_EQUAL(bwt_verify(p, RING / 4 - 100, 100, 5), -1);
	CU_ASSERT_EQUAL(bw_stream_peek_acquire(r, &p, RING), RING / 4);
	CU_ASSERT_EQUAL(bwt_verify(p, RING / 4, RING / 4, 5), -1);
	CU_ASSERT_EQUAL(bw_stream_peek_complete(r, RING / 4 + 1), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_peek_complete(r, 10), 0);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, RING), RING / 4 - 10);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, RING), -EAGAIN);
	/* seeks go back as far as the containers held: the one the reader
	 * stands at the end of stays */
	CU_ASSERT_EQUAL(bw_stream_lseek(r, RING / 4 + 5, SEEK_SET), RING / 4 + 5);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, RING), RING / 4 - 5);
	CU_ASSERT_EQUAL(bwt_verify(buf, RING / 4 - 5, RING / 4 + 5, 5), -1);
	CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_CUR), RING / 2);
	/* a poke, too, ends at its container's end (a new one here) */
	{
		void *q;

		CU_ASSERT_EQUAL(bw_stream_poke(w, &q, 100), 100);
		bwt_fill(q, 100, RING / 2, 6);
		CU_ASSERT_EQUAL(bw_stream_poke_acquire(w, &q, RING),
				RING / 4 - 100);
		bwt_fill(q, 50, RING / 2 + 100, 6);
		CU_ASSERT_EQUAL(bw_stream_poke_complete(w, 50), 0);
		/* an acquire of nothing: ended by complete(0) */
		CU_ASSERT_EQUAL(bw_stream_poke_acquire(w, &q, 0), 0);
		CU_ASSERT_EQUAL(bw_stream_write(w, buf, 1), -EBUSY);
		CU_ASSERT_EQUAL(bw_stream_poke_complete(w, 0), 0);
		CU_ASSERT_EQUAL(bw_stream_poke_complete(w, 0), -EINVAL);
		CU_ASSERT_EQUAL(bw_stream_poke(w, &q, RING + 1), -EMSGSIZE);
		CU_ASSERT_EQUAL(bw_stream_read(r, buf, RING), 150);
		CU_ASSERT_EQUAL(bwt_verify(buf, 150, RING / 2, 6), -1);
		CU_ASSERT_EQUAL(bw_stream_read(r, buf, RING), -EAGAIN);
		/* the first container went as the poke's was made */
		CU_ASSERT_EQUAL(bw_stream_lseek(r, 100, SEEK_SET), -ESTALE);
		CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_CUR), RING / 2 + 150);
		CU_ASSERT_EQUAL(bw_stream_lseek(r, RING / 4, SEEK_SET), RING / 4);
		CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_END), RING / 2 + 150);
		CU_ASSERT_EQUAL(bw_stream_lseek(w, 0, SEEK_CUR), RING / 2 + 150);
		CU_ASSERT_EQUAL(bw_stream_append(w, buf, 10), -ENOSYS);
		CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "dynamic"));
	}
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("dp");
}

/* Two readers at different paces: a container is freed only once both
 * passed it, so the slow one reads everything; a reader attaching late
 * starts at the write position and reads what follows. */
static void test_two_readers(void)
{
	struct bw_stream *fast, *slow, *late, *w;
	static uint8_t buf[RING], out[RING];
	uint64_t wpos = 0, fpos = 0, spos = 0, lpos;

	CU_ASSERT_EQUAL_FATAL(mk("d2", 0, 0, 0), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("d2", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     &fast),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("d2", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     &slow),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("d2", BW_WRITE | BW_NONBLOCK, &w),
			      0);
	for (int k = 0; k < 2000; k++) {
		ssize_t x;

		bwt_fill(buf, 3000, wpos, 9);
		x = bw_stream_write(w, buf, 3000);
		if (x > 0)
			wpos += (uint64_t)x;
		x = bw_stream_read(fast, out, RING);
		if (x > 0) {
			CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)x, fpos, 9),
					      -1);
			fpos += (uint64_t)x;
		}
		if (k % 4 == 0 && (x = bw_stream_read(slow, out, 5000)) > 0) {
			CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)x, spos, 9),
					      -1);
			spos += (uint64_t)x;
		}
		CU_ASSERT_FATAL(held(w) <= BOUND);
	}
	CU_ASSERT(spos > 4 * RING); /* it went round many times */
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("d2", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     &late),
			      0);
	lpos = (uint64_t)bw_stream_lseek(late, 0, SEEK_CUR);
	CU_ASSERT_EQUAL(lpos, wpos);
	bwt_fill(buf, 100, wpos, 9);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 100), 100);
	CU_ASSERT_EQUAL(bw_stream_read(late, out, RING), 100);
	CU_ASSERT_EQUAL(bwt_verify(out, 100, lpos, 9), -1);
	bw_stream_close(fast);
	bw_stream_close(slow);
	bw_stream_close(late);
	bw_stream_close(w);
	bw_unlink("d2");
}

struct pair {
	struct bw_stream *w;
	uint64_t total;
};

static void *writer_thread(void *arg)
{
	struct pair *p = arg;
	static uint8_t buf[9000];
	uint64_t pos = 0;

	while (pos < p->total) {
		size_t n = 1 + (size_t)(pos * 31 % 8999);
		ssize_t x;

		if (n > p->total - pos)
			n = (size_t)(p->total - pos);
		bwt_fill(buf, n, pos, 11);
		x = bw_stream_write(p->w, buf, n);
		if (x <= 0)
			break;
		pos += (uint64_t)x;
	}
	bw_stream_close(p->w);
	return NULL;
}

/* A writer thread and a reader thread in one process; the reader now and
 * then seeks back, while the writer frees what readers passed: a seek
 * lands on bytes still held (checked as it reads them again) or fails. */
static void test_threads(void)
{
	struct bw_stream *r;
	struct pair p = {.total = 64 * RING};
	static uint8_t out[7000];
	uint64_t pos = 0, backs = 0, n = 0, fwd = 0;
	pthread_t t;

	CU_ASSERT_EQUAL_FATAL(mk("dt", 0, 0, 0), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dt", BW_READ | BW_NOWAIT, &r), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dt", BW_WRITE, &p.w), 0);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, writer_thread, &p), 0);
	for (;;) {
		ssize_t x = bw_stream_read(r, out, 1 + pos % 6999);

		if (x == -ESTALE) {
			/* the writer had room for more before a seek back and
			 * passed a ring beyond the bytes sought, as on any
			 * lossless ring: said once, resumed at the oldest */
			pos = (uint64_t)bw_stream_lseek(r, 0, SEEK_CUR);
			fwd = 0;
			continue;
		}
		if (x <= 0 || bwt_verify(out, (size_t)x, pos, 11) != -1) {
			CU_ASSERT_EQUAL(x, 0); /* the end, else a failure */
			break;
		}
		pos += (uint64_t)x;
		fwd += (uint64_t)x;
		if (++n % 8 == 0 && fwd >= 2) {
			/* back less than it came: it gets to the end */
			uint64_t back = 1 + (n * 7919) % (fwd / 2);
			int64_t y;

			fwd = 0;
			y = bw_stream_lseek(r, -(int64_t)back, SEEK_CUR);
			if (y >= 0) {
				CU_ASSERT_EQUAL(y, (int64_t)(pos - back));
				pos = (uint64_t)y;
				backs++;
			} else if (y != -ESTALE ||
				   bw_stream_lseek(r, 0, SEEK_CUR) != (int64_t)pos) {
				fprintf(stderr, "seek back %llu from %llu: %lld (%s), "
						"now at %lld\n",
					(unsigned long long)back,
					(unsigned long long)pos, (long long)y,
					bw_strerror_last(),
					(long long)bw_stream_lseek(r, 0, SEEK_CUR));
				CU_FAIL("a failed seek back moved the reader");
				break;
			}
		}
	}
	/* before the join: a writer left waiting for room by a failure
	 * above sees its reader gone */
	bw_stream_close(r);
	pthread_join(t, NULL);
	CU_ASSERT(backs > 0);
	CU_ASSERT_EQUAL(pos, p.total);
	bw_unlink("dt");
}

/* Other processes, bw_fork children, and options that cannot work. */
static void test_refused(void)
{
	struct bw_stream *r, *w;
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	uint8_t b[16] = {0};
	pid_t pid;

	CU_ASSERT_EQUAL_FATAL(mk("dx", 0, 0, 0), 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		struct bw_stream *s;
		int e = bw_stream_open("dx", BW_READ | BW_NOWAIT, &s);

		_exit(e == -EINVAL && strstr(bw_strerror_last(), "dynamic") ? 0
									    : 1);
	}
	CU_ASSERT_EQUAL(bwt_wait(pid), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dx", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     &r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dx", BW_WRITE, &w), 0);
	pid = bw_fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0)
		_exit(bw_stream_write(w, b, 16) == -EINVAL &&
			      bw_stream_read(r, b, 16) == -EINVAL
		      ? 0
		      : 1);
	CU_ASSERT_EQUAL(bwt_wait(pid), 0);
	/* the parent's handles go on */
	CU_ASSERT_EQUAL(bw_stream_write(w, b, 16), 16);
	CU_ASSERT_EQUAL(bw_stream_read(r, b, 16), 16);
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("dx");

	CU_ASSERT_EQUAL(mk("dx", BW_RING_INDEX, 0, 0), -EINVAL);
	CU_ASSERT_EQUAL(mk("dx", 0, BW_POLICY_FRP, 0), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "lossless or srp"));
	CU_ASSERT_EQUAL(mk("dx", 0, BW_POLICY_MRP, 0), -EINVAL);
	CU_ASSERT_EQUAL(mk("dx", 0, 0, 2), -EINVAL);
	CU_ASSERT_EQUAL(mk("dx", 0, BW_POLICY_SRP, 1), 0);
	bw_unlink("dx");
	o.flags = BW_RING_DYNAMIC;
	/* a pipe works too, in this process */
	{
		struct bw_stream *e[2];

		o.size = RING;
		CU_ASSERT_EQUAL_FATAL(bw_pipe(e, &o), 0);
		CU_ASSERT_EQUAL(bw_stream_write(e[1], "abc", 3), 3);
		CU_ASSERT_EQUAL(bw_stream_read(e[0], b, 16), 3);
		CU_ASSERT_EQUAL(memcmp(b, "abc", 3), 0);
		bw_stream_close(e[0]);
		bw_stream_close(e[1]);
	}
}

/* A reader whose position moves past its cached container (a seek) and a
 * reader of a ring whose containers were all freed (every handle closed):
 * neither reads through a freed or a missing container. */
static void test_moves(void)
{
	struct bw_stream *r, *w;
	static uint8_t buf[RING], out[RING];
	int64_t end;

	CU_ASSERT_EQUAL_FATAL(mk("dm", 0, 0, 0), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dm", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     &r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dm", BW_WRITE | BW_NONBLOCK, &w),
			      0);
	bwt_fill(buf, RING, 0, 13);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 100), 100);
	CU_ASSERT_EQUAL(bw_stream_read(r, out, 10), 10); /* caches box 0 */
	CU_ASSERT_EQUAL(bw_stream_write(w, buf + 100, RING / 2), RING / 2);
	end = bw_stream_lseek(r, 0, SEEK_END);
	CU_ASSERT_EQUAL(end, 100 + RING / 2);
	for (int i = 0; i < 8; i++) { /* frees what lies behind the seek */
		uint64_t at = (uint64_t)end + (uint64_t)i * (RING / 8);

		bwt_fill(buf, RING / 8, at, 13);
		CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, RING / 8),
				      RING / 8);
		CU_ASSERT_EQUAL_FATAL(bw_stream_read(r, out, RING / 8), RING / 8);
		CU_ASSERT_EQUAL_FATAL(bwt_verify(out, RING / 8, at, 13), -1);
	}
	bw_stream_close(r);
	bw_stream_close(w); /* every handle closed: the containers go */
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dm", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK |
							   BW_FROM_START,
					     &r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dm", BW_WRITE | BW_NONBLOCK, &w),
			      0);
	end = bw_stream_lseek(r, 0, SEEK_CUR);
	CU_ASSERT_EQUAL(end, 100 + RING / 2 + RING); /* the tail: nothing
							* older is held */
	bwt_fill(buf, 10, (uint64_t)end, 13);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 10), 10);
	CU_ASSERT_EQUAL(bw_stream_read(r, out, RING), 10);
	CU_ASSERT_EQUAL(bwt_verify(out, 10, (uint64_t)end, 13), -1);
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("dm");
}

static int mk_rec(const char *name, uint32_t layout, uint32_t size)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = RING;
	o.flags = BW_RING_DYNAMIC;
	o.layout = layout;
	o.record_size = size;
	bw_unlink(name);
	return bw_mkfifo(name, &o);
}

/* The length of record k of a stream whose largest is max. */
static size_t rec_len(uint64_t k, size_t max)
{
	return 1 + (size_t)(k * 7919 % max);
}

/* Records on a dynamic ring, fr, vr and dr: no record lies in two
 * containers (a pad fills the end of the one a record does not fit in; the
 * containers are heap blocks of their own, so ASan would see a record run
 * past one); thousands of records of many sizes through many containers
 * come back whole and in order, by read and by peek, within the memory
 * bound; append, poke_acquire, seek and EMSGSIZE as on any record ring. */
static void test_records(void)
{
	static const uint32_t lay[] = {BW_LAYOUT_FR, BW_LAYOUT_VR,
				       BW_LAYOUT_DR};
	static uint8_t buf[4096], out[4096];

	for (size_t i = 0; i < sizeof(lay) / sizeof(lay[0]); i++) {
		bool fr = lay[i] == BW_LAYOUT_FR;
		size_t max = fr ? 2048 - 8 : 3000; /* fr: a slot less its header */
		uint64_t w_n = 0, r_n = 0, peak = 0;
		struct bw_stream *r, *w;
		const void *p;
		void *q;

		CU_ASSERT_EQUAL_FATAL(mk_rec("dr", lay[i], fr ? 2048 : 3000), 0);
		CU_ASSERT_EQUAL_FATAL(bw_stream_open("dr", BW_READ | BW_NOWAIT |
								   BW_NONBLOCK,
						     &r),
				      0);
		CU_ASSERT_EQUAL_FATAL(bw_stream_open("dr", BW_WRITE |
								   BW_NONBLOCK,
						     &w),
				      0);
		/* containers of RING / 4: the sixth 3000-byte record (3008
		 * with its header or alignment) starts the second one; fr
		 * slots fill containers exactly */
		for (int k = 0; k < 6; k++) {
			bwt_fill(buf, max, (uint64_t)k, 17);
			CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, max),
					      (ssize_t)max);
		}
		CU_ASSERT_EQUAL(bw_stream_lseek(w, 0, SEEK_CUR),
				fr ? 6 * 2048 : RING / 4 + 3008);
		for (int k = 0; k < 6; k++) {
			CU_ASSERT_EQUAL_FATAL(bw_stream_read(r, out, sizeof(out)),
					      (ssize_t)max);
			CU_ASSERT_EQUAL(bwt_verify(out, max, (uint64_t)k, 17),
					-1);
		}
		CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_CUR),
				bw_stream_lseek(w, 0, SEEK_CUR));
		/* a stream of many sizes: the writer fills the ring, the
		 * reader empties it, by read and by peek */
		while (r_n < 2000) {
			ssize_t n;

			for (;;) {
				size_t l = rec_len(w_n, max);

				bwt_fill(buf, l, w_n, 19);
				n = bw_stream_write(w, buf, l);
				if (n == -EAGAIN)
					break;
				CU_ASSERT_EQUAL_FATAL(n, (ssize_t)l);
				w_n++;
			}
			if (held(w) > peak)
				peak = held(w);
			for (;;) {
				const void *src = out;

				if (r_n % 3 == 0)
					n = bw_stream_peek(r, &src,
							   sizeof(out));
				else
					n = bw_stream_read(r, out, sizeof(out));
				if (n == -EAGAIN)
					break;
				CU_ASSERT_EQUAL_FATAL(n,
						      (ssize_t)rec_len(r_n, max));
				CU_ASSERT_EQUAL_FATAL(bwt_verify(src, (size_t)n,
								 r_n, 19),
						      -1);
				r_n++;
			}
			CU_ASSERT_EQUAL_FATAL(r_n, w_n);
		}
		CU_ASSERT(peak <= BOUND);
		CU_ASSERT(peak >= RING); /* the ring was full */
		/* a reader from the start: at the first record that starts
		 * at or after the oldest byte held (vr: found by following
		 * the headers to the end of its container; it used to skip
		 * to the next container), then every record to the end */
		{
			struct bw_stream *f;
			struct bw_ring_info in;
			ssize_t n;
			int64_t at;
			uint64_t k = w_n > 64 ? w_n - 64 : 0;

			CU_ASSERT_FATAL(bw_ring_stat("dr", &in, NULL, 0) >= 0);
			CU_ASSERT_EQUAL_FATAL(bw_stream_open("dr", BW_READ |
								   BW_NOWAIT |
								   BW_NONBLOCK |
								   BW_FROM_START,
							     &f),
					      0);
			at = bw_stream_lseek(f, 0, SEEK_CUR);
			n = bw_stream_read(f, out, sizeof(out));
			CU_ASSERT_FATAL(n > 0);
			while (k < w_n && ((size_t)n != rec_len(k, max) ||
					   bwt_verify(out, (size_t)n, k, 19) != -1))
				k++;
			CU_ASSERT_FATAL(k < w_n); /* one of the last records */
			if (lay[i] == BW_LAYOUT_VR) {
				/* record k - 1 (8-byte header, 8-byte
				 * alignment) began below the oldest byte */
				uint64_t prev = (8 + rec_len(k - 1, max) + 7) & ~7ull;
				uint64_t oldest = in.reserved_pos - in.capacity;

				CU_ASSERT((uint64_t)at >= oldest);
				CU_ASSERT((uint64_t)at - prev < oldest);
			}
			while (++k < w_n) {
				n = bw_stream_read(f, out, sizeof(out));
				CU_ASSERT_EQUAL_FATAL(n, (ssize_t)rec_len(k, max));
				CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)n, k,
								 19),
						      -1);
			}
			CU_ASSERT_EQUAL(bw_stream_read(f, out, sizeof(out)),
					-EAGAIN);
			bw_stream_close(f);
		}
		/* a record in pieces, and one by poke_acquire */
		CU_ASSERT_EQUAL(bw_stream_append(w, "ab", 2), 2);
		CU_ASSERT_EQUAL(bw_stream_append(w, "cd", 2), 2);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), -EAGAIN);
		CU_ASSERT_EQUAL(bw_stream_flush(w), 0);
		CU_ASSERT_EQUAL(bw_stream_poke_acquire(w, &q, 100), 100);
		memcpy(q, "xyz", 3);
		CU_ASSERT_EQUAL(bw_stream_poke_complete(w, 3), 0);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 4);
		CU_ASSERT_EQUAL(memcmp(out, "abcd", 4), 0);
		CU_ASSERT_EQUAL(bw_stream_peek(r, &p, sizeof(out)), 3);
		CU_ASSERT_EQUAL(memcmp(p, "xyz", 3), 0);
		CU_ASSERT_EQUAL(bw_stream_write(w, buf, max + 1), -EMSGSIZE);
		/* seeks: to the write position; back below the oldest
		 * container held, refused */
		CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_END),
				bw_stream_lseek(w, 0, SEEK_CUR));
		CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_SET),
				lay[i] == BW_LAYOUT_VR ? -EINVAL : -ESTALE);
		bw_stream_close(r);
		bw_stream_close(w);
		bw_unlink("dr");
	}
}

static void reg(void)
{
	bwt_add("stream across containers, memory bound", test_stream_and_bound);
	bwt_add("peek, poke, seek, and append's -ENOSYS", test_peek);
	bwt_add("two readers, a late reader", test_two_readers);
	bwt_add("writer and reader threads", test_threads);
	bwt_add("refused: other processes, forks, options", test_refused);
	bwt_add("seeks and reopening", test_moves);
	bwt_add("fr, vr and dr records in the containers", test_records);
}

int main(void)
{
	return bwt_main("dynamic", reg);
}
