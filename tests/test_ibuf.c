/* SPDX-License-Identifier: MIT */
/*
 * IBufs: the stream API over rings of indices. Write-through and splicing
 * (proven by the default DBuf's write position and the handle's counters),
 * the two sharing shapes, stale and corrupted records, lossless
 * write-through, and an IBuf shared with a child.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

#define RING 8192u

static void mk(const char *name, uint32_t flags, uint64_t size)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = size;
	o.flags = flags;
	bw_unlink(name);
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo(name, &o), 0);
}

static uint64_t wpos(const char *name)
{
	struct bw_ring_info in;

	CU_ASSERT_FATAL(bw_ring_stat(name, &in, NULL, 0) >= 0);
	return in.write_pos;
}

/* An IBuf ib and a DBuf src, made afresh, each with a reader and a writer;
 * the IBuf's reader opened with BW_READ | BW_NOWAIT | rflags. */
static void open4(const char *ib, const char *src, int rflags,
		  struct bw_stream **ir, struct bw_stream **iw,
		  struct bw_stream **sr, struct bw_stream **sw)
{
	mk(ib, BW_RING_INDEX, RING);
	mk(src, 0, RING);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(ib, BW_READ | BW_NOWAIT | rflags,
					     ir),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(ib, BW_WRITE, iw), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(src, BW_READ | BW_NOWAIT, sr), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(src, BW_WRITE, sw), 0);
}

static void close4(struct bw_stream *ir, struct bw_stream *iw,
		   struct bw_stream *sr, struct bw_stream *sw)
{
	bw_stream_close(ir);
	bw_stream_close(iw);
	bw_stream_close(sr);
	bw_stream_close(sw);
}

static int64_t read_all(struct bw_stream *r, uint8_t *out, size_t max)
{
	size_t got = 0;

	while (got < max) {
		ssize_t n = bw_stream_read(r, out + got, max - got);

		if (n == -EAGAIN || n == 0)
			break;
		if (n < 0)
			return n;
		got += (size_t)n;
	}
	return (int64_t)got;
}

/* Data from a private buffer is written through; data already in a ring is
 * spliced: its index only, the default DBuf untouched. */
static void test_write_through_and_splice(void)
{
	struct bw_stream *ir, *iw, *sr, *sw;
	struct bw_stream_stat st;
	uint8_t buf[3000], out[6000];
	const void *p;
	uint64_t before;

	open4("ib", "src", BW_NONBLOCK, &ir, &iw, &sr, &sw);

	/* written through */
	bwt_fill(buf, 3000, 0, 41);
	before = wpos("ib.wt");
	CU_ASSERT_EQUAL(bw_stream_write(iw, buf, 3000), 3000);
	CU_ASSERT_EQUAL(wpos("ib.wt"), before + 3000);
	CU_ASSERT_EQUAL(wpos("ib"), 16);
	/* spliced: a pointer peeked from another ring */
	bwt_fill(buf, 3000, 3000, 41);
	CU_ASSERT_EQUAL(bw_stream_write(sw, buf, 3000), 3000);
	CU_ASSERT_EQUAL(bw_stream_peek(sr, &p, 3000), 3000);
	before = wpos("ib.wt");
	CU_ASSERT_EQUAL(bw_stream_write(iw, p, 3000), 3000);
	CU_ASSERT_EQUAL(wpos("ib.wt"), before); /* no data moved */
	CU_ASSERT_EQUAL(wpos("ib"), 32);
	CU_ASSERT_EQUAL(bw_stream_stat(iw, &st), 0);
	CU_ASSERT_EQUAL(st.copied, 3000);
	CU_ASSERT_EQUAL(st.spliced, 3000);
	CU_ASSERT_EQUAL(st.bytes, 6000);
	/* the reader sees one stream, whatever lay where */
	CU_ASSERT_EQUAL(read_all(ir, out, sizeof(out)), 6000);
	CU_ASSERT_EQUAL(bwt_verify(out, 6000, 0, 41), -1);
	CU_ASSERT_EQUAL(bw_stream_stat(ir, &st), 0);
	CU_ASSERT_EQUAL(st.bytes, 6000);
	close4(ir, iw, sr, sw);
	CU_ASSERT_EQUAL(bw_unlink("ib"), 0);
	CU_ASSERT_EQUAL(bw_ring_stat("ib.wt", &(struct bw_ring_info){0}, NULL, 0),
			-ENOENT);
	bw_unlink("src");
}

/* The fast path of a writer that spliced from a ring before refuses what
 * the first splice would: bytes not yet written, whole or in part, are
 * copied (as the pointer's current contents), never stored as an index; a
 * good span after them is spliced again. */
static void test_splice_fast_path(void)
{
	struct bw_stream *ir, *iw, *sr, *sw;
	struct bw_stream_stat st;
	uint8_t buf[RING], out[RING], want[1200];
	const uint8_t *p, *q;
	uint64_t wt;

	open4("ibf", "srcf", BW_NONBLOCK, &ir, &iw, &sr, &sw);
	/* a first splice: the writer now knows the source ring */
	bwt_fill(buf, 400, 0, 46);
	CU_ASSERT_EQUAL(bw_stream_write(sw, buf, 400), 400);
	CU_ASSERT_EQUAL(bw_stream_peek(sr, (const void **)&p, 400), 400);
	CU_ASSERT_EQUAL(bw_stream_write(iw, p, 400), 400);
	CU_ASSERT_EQUAL(read_all(ir, out, sizeof(out)), 400);
	CU_ASSERT_EQUAL(bwt_verify(out, 400, 0, 46), -1);
	/* bytes not written yet: just past the source's write position */
	wt = wpos("ibf.wt");
	memcpy(want, p + 400, 300);
	CU_ASSERT_EQUAL(bw_stream_write(iw, p + 400, 300), 300);
	CU_ASSERT_EQUAL(wpos("ibf.wt"), wt + 300); /* copied */
	CU_ASSERT_EQUAL(read_all(ir, out, sizeof(out)), 300);
	CU_ASSERT_EQUAL(memcmp(out, want, 300), 0);
	/* bytes that start written and run past the write position */
	wt = wpos("ibf.wt");
	memcpy(want, p + 200, 400);
	CU_ASSERT_EQUAL(bw_stream_write(iw, p + 200, 400), 400);
	CU_ASSERT_EQUAL(wpos("ibf.wt"), wt + 400); /* copied */
	CU_ASSERT_EQUAL(read_all(ir, out, sizeof(out)), 400);
	CU_ASSERT_EQUAL(memcmp(out, want, 400), 0);
	/* a good span again: spliced */
	bwt_fill(buf, 1200, 0, 48);
	CU_ASSERT_EQUAL(bw_stream_write(sw, buf, 1200), 1200);
	CU_ASSERT_EQUAL(bw_stream_peek(sr, (const void **)&q, 1200), 1200);
	wt = wpos("ibf.wt");
	CU_ASSERT_EQUAL(bw_stream_write(iw, q, 1200), 1200);
	CU_ASSERT_EQUAL(wpos("ibf.wt"), wt);
	CU_ASSERT_EQUAL(read_all(ir, out, sizeof(out)), 1200);
	CU_ASSERT_EQUAL(bwt_verify(out, 1200, 0, 48), -1);
	CU_ASSERT_EQUAL(bw_stream_stat(iw, &st), 0);
	CU_ASSERT_EQUAL(st.spliced, 1600);
	CU_ASSERT_EQUAL(st.copied, 700);
	close4(ir, iw, sr, sw);
	bw_unlink("ibf");
	bw_unlink("srcf");
}

/* Application splicing: a buffer filled by read and written unmodified is
 * spliced (its source's index stored); once modified, or with BW_NOSPLICE,
 * it is copied. */
static void test_application_splicing(void)
{
	struct bw_stream *iw, *cw, *ir, *sr, *sw;
	struct bw_stream_stat st;
	uint8_t buf[2048], out[4096];
	uint64_t before;

	open4("ib6", "src6", BW_NONBLOCK, &ir, &iw, &sr, &sw);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("ib6", BW_WRITE | BW_NOSPLICE, &cw),
			      0);
	bwt_fill(buf, 2048, 0, 49);
	CU_ASSERT_EQUAL(bw_stream_write(sw, buf, 2048), 2048);
	memset(buf, 0, sizeof(buf));
	CU_ASSERT_EQUAL(bw_stream_read(sr, buf, 1024), 1024);
	before = wpos("ib6.wt");
	CU_ASSERT_EQUAL(bw_stream_write(iw, buf, 1024), 1024); /* spliced */
	CU_ASSERT_EQUAL(wpos("ib6.wt"), before);
	CU_ASSERT_EQUAL(bw_stream_read(sr, buf, 1024), 1024);
	buf[7] ^= 0xff; /* modified: must be copied */
	CU_ASSERT_EQUAL(bw_stream_write(iw, buf, 1024), 1024);
	CU_ASSERT_EQUAL(wpos("ib6.wt"), before + 1024);
	buf[7] ^= 0xff;
	CU_ASSERT_EQUAL(bw_stream_write(cw, buf, 1024), 1024); /* NOSPLICE */
	CU_ASSERT_EQUAL(wpos("ib6.wt"), before + 2048);
	CU_ASSERT_EQUAL(bw_stream_stat(iw, &st), 0);
	CU_ASSERT_EQUAL(st.spliced, 1024);
	CU_ASSERT_EQUAL(st.copied, 1024);
	CU_ASSERT_EQUAL(read_all(ir, out, sizeof(out)), 3072);
	CU_ASSERT_EQUAL(bwt_verify(out, 1024, 0, 49), -1);
	CU_ASSERT_NOT_EQUAL(bwt_verify(out + 1024, 1024, 1024, 49), -1);
	CU_ASSERT_EQUAL(bwt_verify(out + 2048, 1024, 1024, 49), -1);
	bw_stream_close(cw);
	close4(ir, iw, sr, sw);
	bw_unlink("ib6");
	bw_unlink("src6");
}

/* Reading and peeking whole and partial blocks, acquire/complete, poke,
 * check and lseek. */
static void test_stream_calls(void)
{
	struct bw_stream *ir, *iw;
	uint8_t buf[1000], out[1000];
	const void *p;
	void *q;
	int64_t st;

	mk("ib2", BW_RING_INDEX, RING);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("ib2", BW_READ | BW_NOWAIT, &ir), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("ib2", BW_WRITE, &iw), 0);
	bwt_fill(buf, 1000, 0, 42);
	CU_ASSERT_EQUAL(bw_stream_write(iw, buf, 1000), 1000);
	/* poke into the default DBuf; the index follows at the next call */
	CU_ASSERT_EQUAL(bw_stream_poke(iw, &q, 200), 200);
	bwt_fill(q, 200, 1000, 42);
	CU_ASSERT_EQUAL(bw_stream_flush(iw), 0);
	CU_ASSERT_EQUAL(bw_stream_poke_acquire(iw, &q, 300), 300);
	bwt_fill(q, 100, 1200, 42);
	CU_ASSERT_EQUAL(bw_stream_poke_complete(iw, 100), 0);
	CU_ASSERT_EQUAL(bw_stream_lseek(iw, 0, SEEK_CUR), 48); /* 3 indices */
	/* an acquire of nothing is ended by complete(0), and adds no index */
	CU_ASSERT_EQUAL(bw_stream_poke_acquire(iw, &q, 0), 0);
	CU_ASSERT_EQUAL(bw_stream_poke(iw, &q, 10), -EBUSY);
	CU_ASSERT_EQUAL(bw_stream_poke_complete(iw, 0), 0);
	CU_ASSERT_EQUAL(bw_stream_poke_complete(iw, 0), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_lseek(iw, 0, SEEK_CUR), 48);
	/* a poke of nothing holds nothing */
	CU_ASSERT_EQUAL(bw_stream_poke(iw, &q, 0), 0);
	CU_ASSERT_EQUAL(bw_stream_poke_acquire(iw, &q, 0), 0);
	CU_ASSERT_EQUAL(bw_stream_poke_complete(iw, 0), 0);
	CU_ASSERT_EQUAL(bw_stream_lseek(iw, 0, SEEK_CUR), 48);

	st = bw_stream_check(ir, -1, BW_CHECK_READ);
	CU_ASSERT_EQUAL(st, 0);
	/* a block read in pieces */
	CU_ASSERT_EQUAL(bw_stream_read(ir, out, 400), 400);
	CU_ASSERT_EQUAL(bw_stream_peek_acquire(ir, &p, 5000), 600);
	CU_ASSERT_EQUAL(bwt_verify(p, 600, 400, 42), -1);
	CU_ASSERT_EQUAL(bw_stream_peek_complete(ir, 601), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_peek_complete(ir, 600), 0);
	CU_ASSERT_EQUAL(bwt_verify(out, 400, 0, 42), -1);
	CU_ASSERT_EQUAL(bw_stream_check(ir, st, BW_CHECK_READ), 16);
	/* peek does not cross blocks */
	CU_ASSERT_EQUAL(bw_stream_peek(ir, &p, 5000), 200);
	CU_ASSERT_EQUAL(bwt_verify(p, 200, 1000, 42), -1);
	CU_ASSERT_EQUAL(bw_stream_peek(ir, &p, 5000), 100);
	CU_ASSERT_EQUAL(bwt_verify(p, 100, 1200, 42), -1);
	CU_ASSERT_EQUAL(bw_stream_check(ir, st, BW_CHECK_READ), 48);
	/* positions move in whole indices */
	CU_ASSERT_EQUAL(bw_stream_lseek(ir, 8, SEEK_SET), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_lseek(ir, 16, SEEK_SET), 16);
	CU_ASSERT_EQUAL(bw_stream_read(ir, out, 1000), 200);
	CU_ASSERT_EQUAL(bwt_verify(out, 200, 1000, 42), -1);
	bw_stream_close(iw);
	CU_ASSERT_EQUAL(bw_stream_read(ir, out, 1000), 100);
	CU_ASSERT_EQUAL(bw_stream_read(ir, out, 1000), 0); /* end of stream */
	bw_stream_close(ir);
	bw_unlink("ib2");
}

/* Several IBufs point into one DBuf (private views on a shared ring), and
 * one IBuf points into several DBufs (a reader merging two sources). */
static void test_sharing_shapes(void)
{
	struct bw_stream *v[2][2], *a[2], *b[2], *m[2];
	uint8_t buf[1024], out[8192];
	const void *p;
	const char *names[2] = {"view1", "view2"};

	mk("shared", 0, RING);
	mk("other", 0, RING);
	mk("merge", BW_RING_INDEX, RING);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("shared", BW_READ | BW_NOWAIT, &a[0]), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("shared", BW_WRITE, &a[1]), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("other", BW_READ | BW_NOWAIT, &b[0]), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("other", BW_WRITE, &b[1]), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("merge", BW_READ | BW_NOWAIT |
							      BW_NONBLOCK,
					     &m[0]),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("merge", BW_WRITE, &m[1]), 0);
	for (int i = 0; i < 2; i++) {
		mk(names[i], BW_RING_INDEX, RING);
		CU_ASSERT_EQUAL_FATAL(bw_stream_open(names[i], BW_READ | BW_NOWAIT |
								       BW_NONBLOCK,
						     &v[i][0]),
				      0);
		CU_ASSERT_EQUAL_FATAL(bw_stream_open(names[i], BW_WRITE, &v[i][1]),
				      0);
	}
	/* four blocks alternating between the two sources */
	for (int k = 0; k < 4; k++) {
		struct bw_stream **src = k % 2 ? b : a;

		bwt_fill(buf, 1024, (uint64_t)k * 1024, 43);
		CU_ASSERT_EQUAL(bw_stream_write(src[1], buf, 1024), 1024);
		CU_ASSERT_EQUAL(bw_stream_peek(src[0], &p, 1024), 1024);
		CU_ASSERT_EQUAL(bw_stream_write(m[1], p, 1024), 1024);
		if (k % 2 == 0) /* the shared ring's blocks, in both views */
			for (int i = 0; i < 2; i++)
				CU_ASSERT_EQUAL(bw_stream_write(v[i][1], p, 1024),
						1024);
	}
	CU_ASSERT_EQUAL(wpos("merge.wt"), 0);
	CU_ASSERT_EQUAL(read_all(m[0], out, sizeof(out)), 4096);
	CU_ASSERT_EQUAL(bwt_verify(out, 4096, 0, 43), -1);
	for (int i = 0; i < 2; i++) {
		CU_ASSERT_EQUAL(wpos(names[i]), 32);
		CU_ASSERT_EQUAL(read_all(v[i][0], out, sizeof(out)), 2048);
		CU_ASSERT_EQUAL(bwt_verify(out, 1024, 0, 43), -1);
		CU_ASSERT_EQUAL(bwt_verify(out + 1024, 1024, 2048, 43), -1);
		bw_stream_close(v[i][0]);
		bw_stream_close(v[i][1]);
		bw_unlink(names[i]);
	}
	bw_stream_close(a[0]);
	bw_stream_close(a[1]);
	bw_stream_close(b[0]);
	bw_stream_close(b[1]);
	bw_stream_close(m[0]);
	bw_stream_close(m[1]);
	bw_unlink("shared");
	bw_unlink("other");
	bw_unlink("merge");
}

/* A spliced block overwritten in its ring before the IBuf reader gets to
 * it: -ESTALE once, the loss counted, and the next block read normally. */
static void test_stale_block(void)
{
	struct bw_stream *ir, *iw, *sw, *sr;
	struct bw_stream_stat st;
	uint8_t buf[RING], out[RING];
	const void *p;

	open4("ib3", "src3", 0, &ir, &iw, &sr, &sw);
	bwt_fill(buf, 500, 0, 44);
	CU_ASSERT_EQUAL(bw_stream_write(sw, buf, 500), 500);
	CU_ASSERT_EQUAL(bw_stream_peek(sr, &p, 500), 500);
	CU_ASSERT_EQUAL(bw_stream_write(iw, p, 500), 500); /* spliced */
	/* the source laps its ring; its own reader keeps up */
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL(bw_stream_write(sw, buf, RING / 2), RING / 2);
		CU_ASSERT_EQUAL(bw_stream_read(sr, out, RING), RING / 2);
	}
	bwt_fill(buf, 64, 0, 45);
	CU_ASSERT_EQUAL(bw_stream_write(iw, buf, 64), 64); /* written through */
	CU_ASSERT_EQUAL(bw_stream_read(ir, out, sizeof(out)), -ESTALE);
	CU_ASSERT_EQUAL(bw_stream_stat(ir, &st), 0);
	CU_ASSERT_EQUAL(st.lost, 500);
	CU_ASSERT_EQUAL(bw_stream_read(ir, out, sizeof(out)), 64);
	CU_ASSERT_EQUAL(bwt_verify(out, 64, 0, 45), -1);
	close4(ir, iw, sr, sw);
	bw_unlink("ib3");
	bw_unlink("src3");
}

/* Records scribbled in the IBuf's ring: each gives an error once and is
 * skipped; nothing crashes and the stream goes on. */
static void test_corrupt_records(void)
{
	struct bw_stream *ir, *iw;
	uint8_t buf[100], out[200];
	char path[512];
	uint8_t *map;
	struct stat sb;
	int fd, errs = 0, good = 0;

	mk("ib4", BW_RING_INDEX, RING);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("ib4", BW_READ | BW_NOWAIT |
							    BW_NONBLOCK,
					     &ir),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("ib4", BW_WRITE, &iw), 0);
	bwt_fill(buf, 100, 0, 46);
	for (int i = 0; i < 200; i++)
		CU_ASSERT_EQUAL(bw_stream_write(iw, buf, 100), 100);
	snprintf(path, sizeof(path), "%s/ib4", bw_ring_dir());
	fd = open(path, O_RDWR);
	CU_ASSERT_FATAL(fd >= 0);
	fstat(fd, &sb);
	map = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   fd, 0);
	close(fd);
	CU_ASSERT_FATAL(map != MAP_FAILED);
	srand(7);
	/* the data begins after the header: scribble on half the records */
	for (int i = 0; i < 200; i += 2) {
		uint8_t *rec = map + (sb.st_size - RING) + 16 * i;

		rec[rand() % 16] ^= (uint8_t)(1 + rand() % 255);
	}
	for (int i = 0; i < 1000; i++) {
		ssize_t n = bw_stream_read(ir, out, sizeof(out));

		if (n == -EAGAIN || n == 0)
			break;
		if (n < 0) {
			errs++;
			continue;
		}
		/* a scribbled record that still names written bytes of a
		 * ring resolves to them (only a checksum could tell); the
		 * untouched records give their blocks exactly */
		if (n == 100 && bwt_verify(out, 100, 0, 46) == -1)
			good++;
	}
	CU_ASSERT(good >= 100);
	CU_ASSERT(errs > 0);
	/* every record was consumed: the reader went through all 200 */
	CU_ASSERT_EQUAL(bw_stream_lseek(ir, 0, SEEK_CUR), 200 * 16);
	munmap(map, (size_t)sb.st_size);
	bw_stream_close(ir);
	bw_stream_close(iw);
	bw_unlink("ib4");
}

/* Write-through is lossless: blocks a reader has yet to read are never
 * overwritten in the default DBuf; a non-blocking writer gets EAGAIN
 * instead. */
static void test_lossless_write_through(void)
{
	struct bw_stream *ir, *iw;
	uint8_t buf[1024], out[1024];
	ssize_t n;
	int wrote = 0;

	/* a 64 KiB IBuf (4096 indices) over a 4 MiB default DBuf */
	mk("ib5", BW_RING_INDEX, 64 << 10);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("ib5", BW_READ | BW_NOWAIT, &ir), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("ib5", BW_WRITE | BW_NONBLOCK, &iw),
			      0);
	for (;; wrote++) {
		bwt_fill(buf, 1024, (uint64_t)wrote * 1024, 47);
		n = bw_stream_write(iw, buf, 1024);
		if (n != 1024)
			break;
	}
	CU_ASSERT_EQUAL(n, -EAGAIN);
	/* the DBuf filled (4096 blocks of 1 KiB) or the IBuf did */
	CU_ASSERT(wrote >= 4000);
	for (int i = 0; i < wrote; i++) {
		n = bw_stream_read(ir, out, sizeof(out));
		CU_ASSERT_EQUAL_FATAL(n, 1024);
		CU_ASSERT_EQUAL_FATAL(bwt_verify(out, 1024, (uint64_t)i * 1024, 47),
				      -1);
	}
	bw_stream_close(ir);
	bw_stream_close(iw);
	bw_unlink("ib5");
}

/* An anonymous IBuf shared with a child: the child writes through and
 * splices, the parent reads everything back. */
static void test_anonymous_ibuf_fork(void)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct bw_stream *p[2], *d[2];
	uint8_t out[4096];
	pid_t pid;

	o.flags = BW_RING_INDEX;
	CU_ASSERT_EQUAL_FATAL(bw_pipe(p, &o), 0);
	CU_ASSERT_EQUAL_FATAL(bw_pipe(d, NULL), 0);
	pid = bw_fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		uint8_t buf[2048];
		const void *q;

		bw_stream_close(p[0]);
		bwt_fill(buf, 2048, 0, 48);
		if (bw_stream_write(p[1], buf, 1024) != 1024)
			_exit(1);
		if (bw_stream_write(d[1], buf + 1024, 1024) != 1024 ||
		    bw_stream_peek(d[0], &q, 1024) != 1024 ||
		    bw_stream_write(p[1], q, 1024) != 1024)
			_exit(2);
		bw_stream_close(p[1]);
		_exit(0);
	}
	bw_stream_close(p[1]);
	size_t got = 0;

	for (ssize_t n; (n = bw_stream_read(p[0], out + got, sizeof(out) - got)) > 0;)
		got += (size_t)n;
	CU_ASSERT_EQUAL(bwt_wait(pid), 0);
	CU_ASSERT_EQUAL(got, 2048);
	CU_ASSERT_EQUAL(bwt_verify(out, 2048, 0, 48), -1);
	bw_stream_close(p[0]);
	bw_stream_close(d[0]);
	bw_stream_close(d[1]);
}

/* An IBuf's default DBuf NAME.wt replaced by a ring of another kind: a
 * record ring (its bytes are not where an index says), another IBuf, a
 * self-scaling ring (its data is in its regions), a dynamic ring (its data
 * is on a heap): opening the IBuf is refused, never read wrong or out of
 * a mapping. */
static void test_wt_not_bytes(void)
{
	struct bw_ring_opts o;
	struct bw_stream *s;

	for (int k = 0; k < 4; k++) {
		mk("iw", BW_RING_INDEX, RING);
		CU_ASSERT_EQUAL_FATAL(bw_unlink("iw.wt"), 0);
		o = (struct bw_ring_opts)BW_RING_OPTS_INIT;
		o.size = RING;
		if (k == 0)
			o.layout = BW_LAYOUT_VR;
		else if (k == 1)
			o.flags = BW_RING_INDEX;
		else if (k == 2)
			o.scale = BW_SCALE_REALLOC;
		else
			o.flags = BW_RING_DYNAMIC;
		CU_ASSERT_EQUAL_FATAL(bw_mkfifo("iw.wt", &o), 0);
		CU_ASSERT_EQUAL(bw_stream_open("iw", BW_WRITE | BW_NOWAIT, &s),
				-EBADMSG);
		CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(),
					      "not a byte ring"));
		CU_ASSERT_EQUAL(bw_stream_open("iw", BW_READ | BW_NOWAIT, &s),
				-EBADMSG);
		bw_unlink("iw.wt");
		bw_unlink("iw");
	}
}

static void reg(void)
{
	bwt_add("write-through and splice", test_write_through_and_splice);
	bwt_add("splice fast path refusals", test_splice_fast_path);
	bwt_add("stream calls on an IBuf", test_stream_calls);
	bwt_add("application splicing", test_application_splicing);
	bwt_add("several IBufs on one DBuf, one IBuf on several",
		test_sharing_shapes);
	bwt_add("stale block", test_stale_block);
	bwt_add("corrupted index records", test_corrupt_records);
	bwt_add("lossless write-through", test_lossless_write_through);
	bwt_add("anonymous IBuf across bw_fork", test_anonymous_ibuf_fork);
	bwt_add("a default DBuf that is no byte ring", test_wt_not_bytes);
}

int main(void)
{
	return bwt_main("ibuf", reg);
}
