/* SPDX-License-Identifier: MIT */
/*
 * Self-scaling rings, reallocating and deck-cut: the ring shrinks while
 * readers keep up and grows under pressure, only between loops; the stream
 * stays whole and in order across every resize, for a reader in this
 * process and one in another; old regions are removed; a deck-cut ring
 * gives the pages beyond its size back; a reader that leaves while the
 * ring resizes does not hold the writer; refused combinations.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <poll.h>
#include <sched.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bwi_ring.h"
#include "helpers.h"

#define MIB (1u << 20)

static int mk(const char *name, uint32_t scale, uint64_t size, uint64_t lo,
	      uint64_t hi)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = size;
	o.scale = scale;
	o.scale_min = lo;
	o.scale_max = hi;
	bw_unlink(name);
	return bw_mkfifo(name, &o);
}

static uint64_t cap(struct bw_stream *s)
{
	struct bw_stream_stat st;

	CU_ASSERT_EQUAL_FATAL(bw_stream_stat(s, &st), 0);
	return st.capacity;
}

/* A reader and a writer of name, neither of which waits. */
static void nb_pair(const char *name, struct bw_stream **r,
		    struct bw_stream **w)
{
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_WRITE | BW_NONBLOCK, w), 0);
}

/* Widens [*lo, *hi] to take the ring's size now. */
static void sizes_seen(struct bw_stream *s, uint64_t *lo, uint64_t *hi)
{
	uint64_t c = cap(s);

	if (c < *lo)
		*lo = c;
	if (c > *hi)
		*hi = c;
}

/* Whether fd turns readable within ms milliseconds (0: is readable now). */
static int readable(int fd, int ms)
{
	struct pollfd pf = {.fd = fd, .events = POLLIN};

	return poll(&pf, 1, ms);
}

/* The ring id of the ring name (its geometry, as bwi_ring.h lays it out):
 * its parts are named .ID@K and .ID@deck. */
static uint64_t ring_id(const char *name)
{
	char path[512];
	struct bwi_geom g;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", bw_ring_dir(), name);
	fd = open(path, O_RDONLY);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL_FATAL(pread(fd, &g, sizeof(g), 0), (ssize_t)sizeof(g));
	close(fd);
	return g.ring_id;
}

/* Files of the ring directory that are parts of the self-scaling ring with
 * ring id id, or of any (id 0). */
static int parts(uint64_t id)
{
	DIR *d = opendir(bw_ring_dir());
	struct dirent *de;
	char pre[32];
	int n = 0;

	snprintf(pre, sizeof(pre), ".%016llx@", (unsigned long long)id);
	CU_ASSERT_PTR_NOT_NULL_FATAL(d);
	while ((de = readdir(d)))
		n += id ? !strncmp(de->d_name, pre, strlen(pre))
			: de->d_name[0] == '.' && strchr(de->d_name, '@');
	closedir(d);
	return n;
}

/* One writer and one reader in this process, taking turns: a reader that
 * keeps up lets the ring shrink; one that reads a quarter of what is
 * written makes it grow. The bytes come back in order throughout. */
static void run_turns(uint32_t scale)
{
	struct bw_stream *r, *w;
	static uint8_t buf[64 << 10], out[64 << 10];
	uint64_t wpos = 0, rpos = 0, c0, lo, hi, id;
	struct bw_ring_info in;
	int fdr, fdw;

	CU_ASSERT_EQUAL_FATAL(mk("sc", scale, MIB, 64 << 10, 0), 0);
	id = ring_id("sc");
	CU_ASSERT_EQUAL(parts(id), scale == BW_SCALE_DECKCUT ? 2 : 1);
	nb_pair("sc", &r, &w);
	c0 = cap(w);
	CU_ASSERT_EQUAL(c0, MIB);
	lo = hi = c0;
	/* descriptors that follow both handles through every resize */
	fdr = bw_stream_fd(r);
	fdw = bw_stream_fd(w);
	CU_ASSERT_FATAL(fdr >= 0 && fdw >= 0);
	/* keeping up: reads everything after every write */
	for (int i = 0; i < 4000; i++) {
		ssize_t x;

		bwt_fill(buf, 4096, wpos, 21);
		x = bw_stream_write(w, buf, 4096);
		CU_ASSERT_EQUAL_FATAL(x, 4096);
		wpos += 4096;
		/* the reader's descriptor rings, in whatever region */
		CU_ASSERT_EQUAL_FATAL(readable(fdr, 5000), 1);
		while ((x = bw_stream_read(r, out, sizeof(out))) > 0) {
			CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)x, rpos, 21),
					      -1);
			rpos += (uint64_t)x;
		}
		CU_ASSERT_EQUAL_FATAL(x, -EAGAIN);
		/* re-armed: quiet (but for liveness ticks) */
		CU_ASSERT_FATAL(bwt_quiet(fdr, -1, r, NULL, 0));
		CU_ASSERT_EQUAL_FATAL(bw_stream_fd(r), fdr);
		/* a region that ended in a resize is no hang-up */
		CU_ASSERT_EQUAL_FATAL(bw_stream_block(r, BW_POLLIN, 0) &
					      BW_POLLHUP,
				      0);
		if (cap(w) < lo)
			lo = cap(w);
		CU_ASSERT_EQUAL_FATAL(cap(r) <= MIB * 4, 1);
	}
	CU_ASSERT(lo < c0); /* it shrank */
	CU_ASSERT(lo >= 64 << 10);
	/* falling behind: the writer fills the ring, the reader takes a
	 * little; the ring grows */
	for (int i = 0; i < 20000 && hi < 4 * MIB; i++) {
		ssize_t x;

		bwt_fill(buf, 16384, wpos, 21);
		x = bw_stream_write(w, buf, 16384);
		if (x > 0)
			wpos += (uint64_t)x;
		else
			CU_ASSERT_EQUAL_FATAL(x, -EAGAIN);
		if (i % 4 == 0 || x < 0) {
			bool full = x < 0;

			/* a full ring: the writer's descriptor is quiet
			 * until the reader makes room (but for liveness
			 * ticks) */
			if (full)
				CU_ASSERT_FATAL(bwt_quiet(fdw, -1, w, buf, 16384));
			x = bw_stream_read(r, out, 8192);
			if (x > 0) {
				CU_ASSERT_EQUAL_FATAL(
					bwt_verify(out, (size_t)x, rpos, 21), -1);
				rpos += (uint64_t)x;
			}
			/* no wakeup missed: a quiet descriptor means the
			 * write still finds no room (the read may have
			 * been in the region before the writer's) */
			if (full && readable(fdw, 0) == 0) {
				x = bw_stream_write(w, buf, 16384);
				CU_ASSERT_EQUAL_FATAL(x, -EAGAIN);
			}
		}
		if (cap(w) > hi)
			hi = cap(w);
	}
	CU_ASSERT(hi > lo); /* it grew */
	CU_ASSERT(hi <= 4 * MIB);
	for (ssize_t x; (x = bw_stream_read(r, out, sizeof(out))) > 0;) {
		CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)x, rpos, 21), -1);
		rpos += (uint64_t)x;
	}
	CU_ASSERT_EQUAL(rpos, wpos);
	CU_ASSERT_FATAL(bw_ring_stat("sc", &in, NULL, 0) >= 0);
	CU_ASSERT_EQUAL(in.scale, scale);
	CU_ASSERT(in.scale_epoch >= 2);
	CU_ASSERT_EQUAL(in.scale_size, cap(w));
	/* regions left behind are removed: the current and the one
	 * before at most (and the deck) */
	CU_ASSERT(parts(id) <= (scale == BW_SCALE_DECKCUT ? 3 : 2));
	if (scale == BW_SCALE_DECKCUT) {
		/* pages beyond the size now went back to the kernel */
		char path[512];
		struct stat st;

		snprintf(path, sizeof(path), "%s/.%016llx@deck", bw_ring_dir(),
			 (unsigned long long)id);
		CU_ASSERT_EQUAL_FATAL(stat(path, &st), 0);
		CU_ASSERT_EQUAL((uint64_t)st.st_size, MIB);
		CU_ASSERT((uint64_t)st.st_blocks * 512 <= cap(w) + (64 << 10) ||
			  cap(w) == MIB);
	}
	bw_stream_close(w);
	CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 0); /* the end */
	bw_stream_close(r);
	CU_ASSERT_EQUAL(bw_unlink("sc"), 0);
	CU_ASSERT_EQUAL(parts(id), 0);
}

static void test_realloc_turns(void)
{
	run_turns(BW_SCALE_REALLOC);
}

static void test_deckcut_turns(void)
{
	run_turns(BW_SCALE_DECKCUT);
}

/* A reader in another process follows every resize: it checks each byte,
 * and the stream ends when the writer closes. */
/* A reader still in a deck-cut region that a resize ended may not seek
 * back into it: the next region reuses its pages (here the writer has
 * filled the next, smaller region, whose pages are the first of the old
 * one's: a seek back there read the new bytes as the old). */
static void test_deckcut_seek_back(void)
{
	struct bw_stream *r, *w;
	static uint8_t buf[4096], out[64 << 10];
	uint64_t wpos = 0, rpos = 0, c;
	bool tried = false;

	CU_ASSERT_EQUAL_FATAL(mk("sb", BW_SCALE_DECKCUT, MIB, 64 << 10, 0), 0);
	nb_pair("sb", &r, &w);
	c = cap(w);
	for (int i = 0; i < 4000 && !tried; i++) {
		ssize_t x;

		bwt_fill(buf, sizeof(buf), wpos, 22);
		CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, sizeof(buf)),
				      (ssize_t)sizeof(buf));
		wpos += sizeof(buf);
		if (cap(w) < c) {
			/* this write shrank the ring; the reader, at the old
			 * region's end, has not read on */
			uint64_t now = cap(w);

			for (uint64_t k = sizeof(buf); k < now; k += sizeof(buf)) {
				bwt_fill(buf, sizeof(buf), wpos, 22);
				CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf,
								      sizeof(buf)),
						      (ssize_t)sizeof(buf));
				wpos += sizeof(buf);
			}
			CU_ASSERT_EQUAL(bw_stream_lseek(r, -(int64_t)(c - 4096),
							SEEK_CUR),
					-ESTALE);
			CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_CUR),
					(int64_t)rpos);
			tried = true;
		}
		c = cap(w);
		while ((x = bw_stream_read(r, out, sizeof(out))) > 0) {
			CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)x, rpos, 22),
					      -1);
			rpos += (uint64_t)x;
		}
	}
	CU_ASSERT(tried);
	CU_ASSERT_EQUAL(rpos, wpos);
	/* within the current region a reader seeks back as on any ring */
	CU_ASSERT_EQUAL(bw_stream_lseek(r, -100, SEEK_CUR), (int64_t)(rpos - 100));
	CU_ASSERT_EQUAL(bw_stream_read(r, out, 100), 100);
	CU_ASSERT_EQUAL(bwt_verify(out, 100, rpos - 100, 22), -1);
	bw_stream_close(w);
	bw_stream_close(r);
	CU_ASSERT_EQUAL(bw_unlink("sb"), 0);
}

static void run_other_process(uint32_t scale)
{
	struct bw_stream *w;
	static uint8_t buf[1 << 16];
	uint64_t wpos = 0, lo = UINT64_MAX, hi = 0;
	pid_t pid;

	CU_ASSERT_EQUAL_FATAL(mk("sp", scale, 2 * MIB, 64 << 10, 2 * MIB), 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		struct bw_stream *r;
		static uint8_t out[1 << 16];
		uint64_t pos = 0;
		ssize_t x;

		if (bw_stream_open("sp", BW_READ, &r) < 0)
			_exit(2);
		while ((x = bw_stream_read(r, out, 1 + pos % 60000)) > 0) {
			if (bwt_verify(out, (size_t)x, pos, 33) != -1)
				_exit(3);
			pos += (uint64_t)x;
		}
		_exit(x == 0 && pos > 0 ? 0 : 4);
	}
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sp", BW_WRITE, &w), 0);
	for (int i = 0; i < 6000; i++) {
		/* bursts of large and small writes */
		size_t n = (i / 500) % 2 ? 60000 : 700;

		bwt_fill(buf, n, wpos, 33);
		CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, n), (ssize_t)n);
		wpos += n;
		sizes_seen(w, &lo, &hi);
	}
	bw_stream_close(w);
	CU_ASSERT_EQUAL(bwt_wait(pid), 0);
	CU_ASSERT(lo < hi); /* it resized while the child read */
	bw_unlink("sp");
}

static void test_realloc_other_process(void)
{
	run_other_process(BW_SCALE_REALLOC);
}

static void test_deckcut_other_process(void)
{
	run_other_process(BW_SCALE_DECKCUT);
}

/* ---- record layouts over scaling: every region has the ring's layout ---- */

static int mk_rec(const char *name, uint32_t scale, uint32_t layout,
		  uint32_t rec_size)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = MIB;
	o.scale = scale;
	o.scale_min = 64 << 10;
	o.scale_max = 4 * MIB;
	o.layout = layout;
	o.record_size = rec_size;
	bw_unlink(name);
	return bw_mkfifo(name, &o);
}

/* Record i: its length (1 to max) and its bytes, stream position i << 16. */
static size_t rec_len(uint64_t i, size_t max)
{
	return 1 + (size_t)((i * 7919) % max);
}

/* Writes record i: whole, or (every fifth) in three appends closed by a
 * flush. Returns 1, or 0 when the ring is full (nothing written). */
static int rec_put(struct bw_stream *w, uint64_t i, size_t max)
{
	static uint8_t buf[8192];
	size_t n = rec_len(i, max), a = n / 3, b = n - n / 3;
	ssize_t x;

	bwt_fill(buf, n, i << 16, 41);
	if (i % 5 || n < 3) {
		x = bw_stream_write(w, buf, n);
		if (x == -EAGAIN)
			return 0;
		CU_ASSERT_EQUAL_FATAL(x, (ssize_t)n);
		return 1;
	}
	x = bw_stream_append(w, buf, a);
	if (x == -EAGAIN)
		return 0;
	CU_ASSERT_EQUAL_FATAL(x, (ssize_t)a);
	CU_ASSERT_EQUAL_FATAL(bw_stream_append(w, buf + a, b - a),
			      (ssize_t)(b - a));
	CU_ASSERT_EQUAL_FATAL(bw_stream_append(w, buf + b, n - b),
			      (ssize_t)(n - b));
	CU_ASSERT_EQUAL_FATAL(bw_stream_flush(w), 0);
	return 1;
}

/* Takes record *i if one is there: read, or (every third) peek. Returns 1,
 * or 0 when none is (-EAGAIN) or at the end. */
static int rec_take(struct bw_stream *r, uint64_t *i, size_t max)
{
	static uint8_t out[8192];
	const void *p = out;
	size_t n = rec_len(*i, max);
	ssize_t x = *i % 3 ? bw_stream_read(r, out, sizeof(out))
			   : bw_stream_peek(r, &p, sizeof(out));

	if (x == -EAGAIN || x == 0)
		return 0;
	CU_ASSERT_EQUAL_FATAL(x, (ssize_t)n); /* one whole record */
	CU_ASSERT_EQUAL_FATAL(bwt_verify(p, (size_t)x, *i << 16, 41), -1);
	(*i)++;
	return 1;
}

/* A writer and a reader in this process, as in run_turns, on records: the
 * ring shrinks and grows, and every record comes back whole, in order,
 * whether written at once or appended in pieces. */
static void run_records(uint32_t scale, uint32_t layout, uint32_t rec_size,
			size_t max)
{
	struct bw_stream *r, *w;
	struct bw_ring_info in;
	uint64_t wi = 0, ri = 0, c0, lo, hi, id;
	static uint8_t big[16384];

	CU_ASSERT_EQUAL_FATAL(mk_rec("sr", scale, layout, rec_size), 0);
	id = ring_id("sr");
	CU_ASSERT_FATAL(bw_ring_stat("sr", &in, NULL, 0) >= 0);
	CU_ASSERT_EQUAL(in.layout, layout);
	CU_ASSERT_EQUAL(in.scale, scale);
	CU_ASSERT_EQUAL(in.record_max, max);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sr", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     &r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sr", BW_WRITE | BW_NONBLOCK, &w),
			      0);
	c0 = lo = hi = cap(w);
	CU_ASSERT_EQUAL(c0, MIB);
	/* a record larger than the largest: refused, nothing written */
	CU_ASSERT_EQUAL(bw_stream_write(w, big, max + 1), -EMSGSIZE);
	/* keeping up */
	for (int k = 0; k < 12000; k++) {
		CU_ASSERT_EQUAL_FATAL(rec_put(w, wi, max), 1);
		wi++;
		while (rec_take(r, &ri, max))
			;
		CU_ASSERT_EQUAL_FATAL(ri, wi);
		if (cap(w) < lo)
			lo = cap(w);
	}
	CU_ASSERT(lo < c0);
	/* falling behind: a record taken every fourth write */
	for (int k = 0; k < 200000 && hi < 4 * MIB; k++) {
		int put = rec_put(w, wi, max);

		wi += (uint64_t)put;
		if (k % 4 == 0 || !put)
			rec_take(r, &ri, max);
		if (cap(w) > hi)
			hi = cap(w);
	}
	CU_ASSERT(hi > lo);
	while (rec_take(r, &ri, max))
		;
	CU_ASSERT_EQUAL(ri, wi);
	bw_stream_close(w);
	CU_ASSERT_EQUAL(bw_stream_read(r, big, sizeof(big)), 0); /* the end */
	bw_stream_close(r);
	CU_ASSERT_EQUAL(bw_unlink("sr"), 0);
	CU_ASSERT_EQUAL(parts(id), 0);
}

static void test_records(void)
{
	run_records(BW_SCALE_REALLOC, BW_LAYOUT_VR, 3000, 3000);
	run_records(BW_SCALE_DECKCUT, BW_LAYOUT_VR, 3000, 3000);
	run_records(BW_SCALE_REALLOC, BW_LAYOUT_DR, 3000, 3000);
	run_records(BW_SCALE_DECKCUT, BW_LAYOUT_DR, 3000, 3000);
	run_records(BW_SCALE_REALLOC, BW_LAYOUT_FR, 4096, 4096 - 8);
	run_records(BW_SCALE_DECKCUT, BW_LAYOUT_FR, 4096, 4096 - 8);
}

/* A reader of records in another process follows every resize. */
static void test_records_other_process(void)
{
	struct bw_stream *w;
	uint64_t wi = 0, lo = UINT64_MAX, hi = 0;
	pid_t pid;

	CU_ASSERT_EQUAL_FATAL(mk_rec("so", BW_SCALE_DECKCUT, BW_LAYOUT_VR, 6000),
			      0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		static uint8_t out[8192];
		struct bw_stream *r;
		uint64_t i = 0;
		ssize_t x;

		if (bw_stream_open("so", BW_READ, &r) < 0)
			_exit(2);
		while ((x = bw_stream_read(r, out, sizeof(out))) > 0) {
			if ((size_t)x != rec_len(i, 6000) ||
			    bwt_verify(out, (size_t)x, i << 16, 41) != -1)
				_exit(3);
			i++;
		}
		_exit(x == 0 && i > 0 ? 0 : 4);
	}
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("so", BW_WRITE, &w), 0);
	for (int k = 0; k < 20000; k++) {
		CU_ASSERT_EQUAL_FATAL(rec_put(w, wi, 6000), 1);
		wi++;
		sizes_seen(w, &lo, &hi);
	}
	bw_stream_close(w);
	CU_ASSERT_EQUAL(bwt_wait(pid), 0);
	CU_ASSERT(lo < hi); /* it resized while the child read */
	bw_unlink("so");
}

/* Two readers; one leaves while the ring keeps resizing. The slot kept for
 * it ahead is given up, so the writer and the other reader go on. */
static void test_reader_leaves(void)
{
	struct bw_stream *a, *b, *w;
	static uint8_t buf[4096], out[1 << 16];
	uint64_t wpos = 0, apos = 0;

	CU_ASSERT_EQUAL_FATAL(mk("sl", BW_SCALE_REALLOC, MIB, 64 << 10, 0), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sl", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     &a),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sl", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     &b),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sl", BW_WRITE | BW_NONBLOCK, &w),
			      0);
	for (int i = 0; i < 6000; i++) {
		ssize_t x;

		bwt_fill(buf, 4096, wpos, 5);
		x = bw_stream_write(w, buf, 4096);
		CU_ASSERT_EQUAL_FATAL(x, 4096); /* never held up by b */
		wpos += 4096;
		while ((x = bw_stream_read(a, out, sizeof(out))) > 0) {
			CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)x, apos, 5),
					      -1);
			apos += (uint64_t)x;
		}
		if (b && i < 2000)
			while (bw_stream_read(b, out, sizeof(out)) > 0)
				;
		if (b && i == 2000) {
			bw_stream_close(b); /* leaves mid-stream */
			b = NULL;
		}
	}
	CU_ASSERT_EQUAL(apos, wpos);
	bw_stream_close(a);
	bw_stream_close(w);
	bw_unlink("sl");
}

/* Creates "sx" with o and removes it again. */
static int mk_rec_ok(const struct bw_ring_opts *o)
{
	int r = bw_mkfifo("sx", o);

	if (r == 0)
		bw_unlink("sx");
	return r;
}

/* Combinations that cannot work are refused at create, naming why. */
static void test_refused(void)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct bw_stream *e[2];
	char name[80];

	o.scale = BW_SCALE_REALLOC;
	CU_ASSERT_EQUAL(bw_pipe(e, &o), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "named"));
	o.policy = BW_POLICY_FRP;
	CU_ASSERT_EQUAL(bw_mkfifo("sx", &o), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "lossless or srp"));
	o.policy = 0;
	o.max_writers = 2;
	CU_ASSERT_EQUAL(bw_mkfifo("sx", &o), -EINVAL);
	o.max_writers = 0;
	/* records must fit in half the least size */
	o.layout = BW_LAYOUT_VR;
	o.record_size = 40000;
	CU_ASSERT_EQUAL(bw_mkfifo("sx", &o), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "least size"));
	o.scale_min = 128 << 10;
	CU_ASSERT_EQUAL(mk_rec_ok(&o), 0);
	o.scale_min = 0;
	o.record_size = 0;
	o.layout = 0;
	o.flags = BW_RING_INDEX;
	CU_ASSERT_EQUAL(bw_mkfifo("sx", &o), -EINVAL);
	o.flags = 0;
	o.scale_min = 3000;
	CU_ASSERT_EQUAL(bw_mkfifo("sx", &o), -EINVAL);
	/* above the size: refused as asked, not clamped to the size (a
	 * power of two or not) */
	o.size = 64 << 10;
	o.scale_min = 100000;
	CU_ASSERT_EQUAL(bw_mkfifo("sx", &o), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "100000"));
	o.scale_min = 128 << 10;
	CU_ASSERT_EQUAL(bw_mkfifo("sx", &o), -EINVAL);
	o.scale_min = 64 << 10;
	CU_ASSERT_EQUAL(mk_rec_ok(&o), 0);
	o.scale_min = 0;
	o.size = 16 << 10; /* the default least size is clamped */
	CU_ASSERT_EQUAL(mk_rec_ok(&o), 0);
	o.size = 0;
	o.size = 1 << 20;
	o.scale_max = 1 << 19; /* below the size */
	CU_ASSERT_EQUAL(bw_mkfifo("sx", &o), -EINVAL);
	o.scale_max = 0;
	o.scale = 7;
	CU_ASSERT_EQUAL(bw_mkfifo("sx", &o), -EINVAL);
	CU_ASSERT_EQUAL(parts(0), 0);
	/* its parts are named by its id: any ring name will do */
	o.scale = BW_SCALE_DECKCUT;
	memset(name, 'n', BWI_NAME_MAX);
	name[BWI_NAME_MAX] = 0;
	CU_ASSERT_EQUAL(bw_mkfifo(name, &o), 0);
	CU_ASSERT_EQUAL(parts(ring_id(name)), 2);
	CU_ASSERT_EQUAL(bw_unlink(name), 0);
	CU_ASSERT_EQUAL(parts(0), 0);
	/* a region is not opened by name, nor made by bw_mkfifo */
	CU_ASSERT_EQUAL(mk("sy", BW_SCALE_REALLOC, 1 << 20, 0, 0), 0);
	snprintf(name, sizeof(name), ".%016llx@0",
		 (unsigned long long)ring_id("sy"));
	CU_ASSERT_EQUAL(bw_stream_open(name, BW_READ, &e[0]), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_open("sy@0", BW_READ, &e[0]), -EINVAL);
	CU_ASSERT_EQUAL(bw_mkfifo("sy@1", NULL), -EINVAL);
	name[strlen(name) - 1] = '1';
	CU_ASSERT_EQUAL(bw_mkfifo(name, NULL), -EINVAL);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sy", BW_READ | BW_WRITE, &e[0]),
			      0);
	CU_ASSERT_EQUAL(readable(bw_stream_fd(e[0]), 0), 0);
	CU_ASSERT_EQUAL(bw_stream_write(e[0], "xyz", 3), 3);
	CU_ASSERT_EQUAL(readable(bw_stream_fd(e[0]), 5000), 1);
	CU_ASSERT_EQUAL(bw_stream_block(e[0], BW_POLLIN, 1000), BW_POLLIN);
	bw_stream_close(e[0]);
	bw_unlink("sy");
	CU_ASSERT_EQUAL(parts(0), 0);
}

struct stress {
	struct bw_stream *w;
	int from_start; /* the readers' BW_FROM_START */
	int opens_each, reads_each;
	_Atomic int readers_done;
	_Atomic long opens, gaps, errs, stale;
};

static void *stress_writer(void *arg)
{
	struct stress *st = arg;
	static uint64_t buf[512];
	uint64_t pos = 0;

	while (st->readers_done < 2) {
		for (int i = 0; i < 512; i++)
			buf[i] = pos + 8 * (uint64_t)i;
		ssize_t x = bw_stream_write(st->w, buf, sizeof(buf));

		if (x != (ssize_t)sizeof(buf)) {
			fprintf(stderr, "stress writer: %zd: %s\n", x,
				bw_strerror_last());
			st->errs++;
			break;
		}
		pos += (uint64_t)x;
	}
	bw_stream_close(st->w);
	return NULL;
}

/* Readers that attach and leave all the time, while the ring resizes
 * (the writer's scans may miss them, and they reuse slot indices of
 * readers that left): each sees the stream without a gap from where it
 * attached. */
static void *stress_reader(void *arg)
{
	struct stress *st = arg;
	static _Thread_local uint64_t buf[1024];

	for (int n = 0; n < st->opens_each; n++) {
		struct bw_stream *r;
		uint64_t next;

		if (bw_stream_open("ss", BW_READ | BW_NOWAIT | st->from_start,
				   &r) < 0) {
			st->errs++;
			break;
		}
		st->opens++;
		next = (uint64_t)bw_stream_lseek(r, 0, SEEK_CUR);
		for (int k = 0; k < st->reads_each; k++) {
			ssize_t x = bw_stream_read(r, buf, sizeof(buf));

			if (x == -ESTALE) {
				/* a reader that just attached to a region of a
				 * few KiB can be overtaken before the writer
				 * sees its slot (as on any ring): said, and
				 * counted; it goes on from where it resumes */
				st->stale++;
				next = (uint64_t)bw_stream_lseek(r, 0, SEEK_CUR);
				continue;
			}
			if (x <= 0) {
				fprintf(stderr, "stress reader: %zd: %s\n", x,
					bw_strerror_last());
				st->errs++;
				break;
			}
			/* the writer writes whole 8-byte words */
			for (ssize_t i = 0; i + 8 <= x; i += 8, next += 8)
				if (buf[i / 8] != next) {
					st->gaps++;
					next = buf[i / 8];
				}
			if (x % 8)
				break;
		}
		bw_stream_close(r);
	}
	st->readers_done++;
	return NULL;
}

/* with from_start, the readers start at the oldest byte: on a deck-cut
 * ring, bytes the next region is about to reuse unless the writer waits
 * for them (or they see it resizing). They then open more often, to
 * attach within the few microseconds of a resize. */
static void run_attach_during_resizes(uint32_t scale, int from_start)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct stress st = {.from_start = from_start,
			    .opens_each = from_start ? 5000 : 300,
			    .reads_each = from_start ? 2 : 20};
	struct bw_stream *keeper;
	struct bw_ring_info in;
	pthread_t t[3];
	static uint8_t buf[65536];

	o.size = 8 << 10;
	o.scale = scale;
	o.scale_min = 4 << 10;
	o.scale_max = 32 << 10;
	bw_unlink("ss");
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("ss", &o), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("ss", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     &keeper),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("ss", BW_WRITE, &st.w), 0);
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t[0], NULL, stress_writer, &st),
			      0);
	for (int i = 1; i < 3; i++)
		CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, stress_reader,
						     &st),
				      0);
	while (st.readers_done < 2) /* the keeper keeps the writer going */
		bw_stream_read(keeper, buf, sizeof(buf));
	while (bw_stream_read(keeper, buf, sizeof(buf)) != 0)
		;
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	CU_ASSERT_FATAL(bw_ring_stat("ss", &in, NULL, 0) >= 0);
	CU_ASSERT(in.scale_epoch > 0); /* it did resize meanwhile */
	CU_ASSERT_EQUAL(st.opens, 2 * st.opens_each);
	CU_ASSERT_EQUAL(st.gaps, 0);
	CU_ASSERT_EQUAL(st.errs, 0);
	bw_stream_close(keeper);
	bw_unlink("ss");
}

static void test_attach_during_resizes(void)
{
	run_attach_during_resizes(BW_SCALE_REALLOC, 0);
}

static void test_attach_from_start_during_resizes(void)
{
	run_attach_during_resizes(BW_SCALE_REALLOC, BW_FROM_START);
	run_attach_during_resizes(BW_SCALE_DECKCUT, BW_FROM_START);
}

/* A reader with BW_FROM_START gets what the ring holds, on both kinds. */
static void run_from_start(uint32_t scale)
{
	struct bw_stream *r, *w;
	char out[16];

	CU_ASSERT_EQUAL_FATAL(mk("sf", scale, 64 << 10, 16384, 256 << 10), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sf", BW_WRITE | BW_NOWAIT, &w),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, "0123456789", 10), 10);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sf", BW_READ | BW_FROM_START |
							   BW_NONBLOCK,
					     &r),
			      0);
	CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_CUR), 0);
	CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 10);
	CU_ASSERT_EQUAL(memcmp(out, "0123456789", 10), 0);
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("sf");
}

static void test_from_start(void)
{
	run_from_start(BW_SCALE_REALLOC);
	run_from_start(BW_SCALE_DECKCUT);
}

/* An outstanding poke_acquire holds the region: no write (and so no
 * resize) until it is completed. */
static void test_acquire_holds(void)
{
	struct bw_stream *r, *w;
	static uint8_t buf[4096];
	void *p;

	CU_ASSERT_EQUAL_FATAL(mk("sa", BW_SCALE_REALLOC, 64 << 10, 16384, 0), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sa", BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     &r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sa", BW_WRITE | BW_NONBLOCK, &w),
			      0);
	for (int i = 0; i < 400; i++) {
		CU_ASSERT_EQUAL_FATAL(bw_stream_poke_acquire(w, &p, 8), 8);
		CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, 4096), -EBUSY);
		CU_ASSERT_EQUAL_FATAL(bw_stream_poke_complete(w, 8), 0);
		CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, 4096), 4096);
		while (bw_stream_read(r, buf, sizeof(buf)) > 0)
			;
	}
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("sa");
}

/* Small writes, read as they come, until the ring is smaller than big. */
static void shrink_below(struct bw_stream *r, struct bw_stream *w, size_t big,
			 uint64_t *wpos, uint64_t *rpos)
{
	static uint8_t buf[256], out[64 << 10];
	ssize_t x;

	for (int i = 0; i < 20000 && cap(w) >= big; i++) {
		bwt_fill(buf, 256, *wpos, 9);
		CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, 256), 256);
		*wpos += 256;
		while ((x = bw_stream_read(r, out, sizeof(out))) > 0)
			*rpos += (uint64_t)x;
	}
	CU_ASSERT_FATAL(cap(w) < big);
}

/* A poke or write of up to the largest size finds room for all of it: the
 * ring never shrinks below such a call, grows back to hold one after it
 * shrank, and refuses (EMSGSIZE) only a call beyond the largest size. */
static void test_call_fits(void)
{
	struct bw_stream *r, *w;
	static uint8_t buf[64 << 10], out[64 << 10];
	uint64_t wpos = 0, rpos = 0;
	size_t big = 40000;
	ssize_t x;
	void *p;

	CU_ASSERT_EQUAL_FATAL(mk("sp", BW_SCALE_REALLOC, 64 << 10, 4 << 10,
				 64 << 10),
			      0);
	nb_pair("sp", &r, &w);
	/* the reader keeps up: the ring would shrink, but not below a poke */
	for (int i = 0; i < 600; i++) {
		bool acq = i & 1;

		x = acq ? bw_stream_poke_acquire(w, &p, big)
			: bw_stream_poke(w, &p, big);
		CU_ASSERT_EQUAL_FATAL(x, (ssize_t)big);
		bwt_fill(p, big, wpos, 9);
		CU_ASSERT_EQUAL_FATAL(acq ? bw_stream_poke_complete(w, big)
					  : bw_stream_flush(w),
				      0);
		wpos += big;
		CU_ASSERT_FATAL(cap(w) >= big);
		while ((x = bw_stream_read(r, out, sizeof(out))) > 0) {
			CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)x, rpos, 9),
					      -1);
			rpos += (uint64_t)x;
		}
	}
	/* small writes let it shrink; then a poke and a write of 40000
	 * bytes each grow it back and go in whole */
	shrink_below(r, w, big, &wpos, &rpos);
	CU_ASSERT_EQUAL_FATAL(bw_stream_poke(w, &p, big), (ssize_t)big);
	CU_ASSERT(cap(w) >= big);
	bwt_fill(p, big, wpos, 9);
	wpos += big;
	shrink_below(r, w, big, &wpos, &rpos);
	bwt_fill(buf, big, wpos, 9);
	CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, big), (ssize_t)big);
	CU_ASSERT(cap(w) >= big);
	wpos += big;
	while ((x = bw_stream_read(r, out, sizeof(out))) > 0) {
		CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)x, rpos, 9), -1);
		rpos += (uint64_t)x;
	}
	CU_ASSERT_EQUAL(rpos, wpos);
	/* beyond the largest size */
	CU_ASSERT_EQUAL(bw_stream_poke(w, &p, (64 << 10) + 1), -EMSGSIZE);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "largest"));
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("sp");
}

/* Reads everything r has, checking it against stream 12. */
static void take_all(struct bw_stream *r, uint64_t *rpos)
{
	static uint8_t out[64 << 10];
	ssize_t x;

	while ((x = bw_stream_read(r, out, sizeof(out))) > 0) {
		CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)x, *rpos, 12), -1);
		*rpos += (uint64_t)x;
	}
}

/* A non-blocking writer whose call needs a larger region than its own, and
 * so waits for its readers, gets -EAGAIN, and its descriptor is quiet until
 * they have taken all of its region (no event loop spins on it); then it
 * rings, and the call grows the ring and goes in whole. Realloc: a reader
 * is still in the older region (the scale layer's wait). Deck-cut: a reader
 * is behind the write position, whose pages the larger region reuses (the
 * region's own wait for room). */
static void grow_waits_quietly(uint32_t scale)
{
	struct bw_stream *r, *w;
	static uint8_t buf[48 << 10];
	uint64_t wpos = 0, rpos = 0, c0;
	size_t big = 48 << 10;
	int fdw;

	CU_ASSERT_EQUAL_FATAL(mk("sq", scale, 64 << 10, 4 << 10, 64 << 10), 0);
	nb_pair("sq", &r, &w);
	fdw = bw_stream_fd(w);
	CU_ASSERT_FATAL(fdw >= 0);
	/* small writes, each read at once, until one shrinks the ring; the
	 * reader, at the write position, is then still in the older region */
	c0 = cap(w);
	for (int i = 0; i < 20000 && cap(w) == c0; i++) {
		take_all(r, &rpos);
		bwt_fill(buf, 256, wpos, 12);
		CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, 256), 256);
		wpos += 256;
	}
	CU_ASSERT_FATAL(cap(w) < big);
	if (scale == BW_SCALE_DECKCUT) {
		/* the reader follows; then it is 256 bytes behind */
		take_all(r, &rpos);
		bwt_fill(buf, 256, wpos, 12);
		CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, 256), 256);
		wpos += 256;
	}
	bwt_fill(buf, big, wpos, 12);
	CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, big), -EAGAIN);
	CU_ASSERT_FATAL(bwt_quiet(fdw, -1, w, buf, big));
	take_all(r, &rpos);
	CU_ASSERT_EQUAL(rpos, wpos);
	CU_ASSERT_EQUAL(readable(fdw, 0), 1); /* rung by the reads */
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, big), (ssize_t)big);
	CU_ASSERT(cap(w) >= big);
	wpos += big;
	take_all(r, &rpos);
	CU_ASSERT_EQUAL(rpos, wpos);
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("sq");
}

static void test_grow_waits_quietly(void)
{
	grow_waits_quietly(BW_SCALE_REALLOC);
	grow_waits_quietly(BW_SCALE_DECKCUT);
}

/* The reader of test_grow_blocks: once the writer has waited (so its call
 * is blocked, not yet through), takes want bytes; stops early at stop. */
struct late {
	struct bw_stream *r;
	const char *name;
	uint64_t waits0, rpos, want;
	atomic_bool stop;
};

static void *late_reader(void *arg)
{
	struct late *l = arg;
	struct bw_ring_info info;
	static uint8_t out[64 << 10];

	while (!atomic_load(&l->stop) &&
	       (bw_ring_stat(l->name, &info, NULL, 0) < 0 ||
		info.writer_waits <= l->waits0))
		sched_yield();
	while (!atomic_load(&l->stop) && l->rpos < l->want) {
		ssize_t x = bw_stream_read(l->r, out, sizeof(out));

		if (x == -EAGAIN) {
			bw_stream_block(l->r, BW_POLLIN, 100);
			continue;
		}
		if (x <= 0 || bwt_verify(out, (size_t)x, l->rpos, 12) != -1)
			break;
		l->rpos += (uint64_t)x;
	}
	return NULL;
}

/* A blocking writer whose call needs a larger region while a reader is
 * still in the older one waits for it, even when it has written nothing
 * into its own region yet (an acquisition that moved it there was
 * completed empty): every reader has taken all of that region at once, and
 * only the older region holds the call back. It used to fail with
 * -EAGAIN. */
static void grow_blocks(uint32_t scale)
{
	static uint8_t buf[48 << 10];
	struct late l = {.name = "sb"};
	struct bw_ring_info info;
	struct bw_stream *w;
	uint64_t wpos = 0, c0;
	size_t big = 48 << 10;
	pthread_t t;
	ssize_t x;
	void *p;

	CU_ASSERT_EQUAL_FATAL(mk("sb", scale, 64 << 10, 4 << 10, 64 << 10), 0);
	nb_pair("sb", &l.r, &w);
	/* small pokes, each read at once, until one moves the writer into a
	 * smaller region: that one is completed empty, and the reader, at
	 * the write position, stays in the older region */
	c0 = cap(w);
	for (int i = 0; i < 20000; i++) {
		take_all(l.r, &l.rpos);
		CU_ASSERT_EQUAL_FATAL(bw_stream_poke_acquire(w, &p, 256), 256);
		if (cap(w) != c0)
			break;
		bwt_fill(p, 256, wpos, 12);
		CU_ASSERT_EQUAL_FATAL(bw_stream_poke_complete(w, 256), 0);
		wpos += 256;
	}
	CU_ASSERT_FATAL(cap(w) < big);
	CU_ASSERT_EQUAL_FATAL(bw_stream_poke_complete(w, 0), 0);
	CU_ASSERT_EQUAL_FATAL(l.rpos, wpos);
	CU_ASSERT_FATAL(bw_ring_stat("sb", &info, NULL, 0) >= 0);
	l.waits0 = info.writer_waits;
	l.want = wpos + big;
	CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, late_reader, &l), 0);
	bwt_fill(buf, big, wpos, 12);
	CU_ASSERT_EQUAL_FATAL(bw_stream_set_nonblock(w, 0), 0);
	x = bw_stream_write(w, buf, big);
	CU_ASSERT_EQUAL(x, (ssize_t)big);
	CU_ASSERT(cap(w) >= big);
	if (x != (ssize_t)big)
		atomic_store(&l.stop, true);
	pthread_join(t, NULL);
	CU_ASSERT_EQUAL(l.rpos, wpos + big);
	bw_stream_close(l.r);
	bw_stream_close(w);
	bw_unlink("sb");
}

static void test_grow_blocks(void)
{
	grow_blocks(BW_SCALE_REALLOC);
	grow_blocks(BW_SCALE_DECKCUT);
}

/* One stream of test_made_anew: its ring, positions and resizes seen. */
struct anew {
	struct bw_stream *r, *w;
	uint32_t seed;
	uint64_t wpos, rpos, cap;
	unsigned resizes;
};

/* Writes 4 KiB to a's ring; unless that resized it and hold is set, reads
 * all there is, checked. */
static void anew_turn(struct anew *a, bool hold)
{
	static uint8_t buf[4096], out[64 << 10];
	ssize_t x;

	bwt_fill(buf, sizeof(buf), a->wpos, a->seed);
	CU_ASSERT_EQUAL_FATAL(bw_stream_write(a->w, buf, sizeof(buf)),
			      (ssize_t)sizeof(buf));
	a->wpos += sizeof(buf);
	if (cap(a->w) != a->cap) {
		a->cap = cap(a->w);
		a->resizes++;
		if (hold)
			return;
	}
	while ((x = bw_stream_read(a->r, out, sizeof(out))) > 0) {
		CU_ASSERT_EQUAL_FATAL(bwt_verify(out, (size_t)x, a->rpos,
						 a->seed),
				      -1);
		a->rpos += (uint64_t)x;
	}
}

/* A ring removed and made anew under its name while handles on it are
 * attached: each has regions of its own, so the old one goes on until
 * closed (its reader follows its resizes into its own regions, never the
 * new ring's, and its writer is not held) and the new one is untouched. */
static void test_made_anew(void)
{
	struct anew a = {.seed = 30}, b = {.seed = 31};

	CU_ASSERT_EQUAL_FATAL(mk("su", BW_SCALE_REALLOC, MIB, 64 << 10, 0), 0);
	CU_ASSERT_NOT_EQUAL(ring_id("su"), 0);
	nb_pair("su", &a.r, &a.w);
	CU_ASSERT_EQUAL_FATAL(bw_unlink("su"), 0);
	CU_ASSERT_EQUAL_FATAL(mk("su", BW_SCALE_REALLOC, MIB, 64 << 10, 0), 0);
	nb_pair("su", &b.r, &b.w);
	a.cap = cap(a.w);
	b.cap = cap(b.w);
	/* the reader keeps up, so the old ring shrinks: its reader stays
	 * behind in region 0 while the new ring makes its region 1 too */
	while (!a.resizes)
		anew_turn(&a, true);
	while (!b.resizes)
		anew_turn(&b, false);
	/* then both go on, through regions 2, 3, ... of each */
	for (int i = 0; i < 3000; i++) {
		anew_turn(&a, false);
		anew_turn(&b, false);
	}
	CU_ASSERT(a.resizes >= 2 && b.resizes >= 2);
	CU_ASSERT_EQUAL(a.rpos, a.wpos);
	CU_ASSERT_EQUAL(b.rpos, b.wpos);
	bw_stream_close(a.r);
	bw_stream_close(a.w);
	bw_stream_close(b.r);
	bw_stream_close(b.w);
	CU_ASSERT_EQUAL(bw_unlink("su"), 0);
	CU_ASSERT_EQUAL(parts(0), 0); /* of either ring */
}

/* A ring removed while attached: its handles go on (the reader follows
 * into a region made before the removal, and into the ones made after),
 * and once the last closes no part of it is left. */
static void run_removed_attached(uint32_t scale)
{
	struct anew a = {.seed = 32};
	uint64_t id;

	CU_ASSERT_EQUAL_FATAL(mk("sv", scale, MIB, 64 << 10, 0), 0);
	id = ring_id("sv");
	nb_pair("sv", &a.r, &a.w);
	a.cap = cap(a.w);
	while (!a.resizes) /* its reader stays behind in region 0 */
		anew_turn(&a, true);
	CU_ASSERT_EQUAL_FATAL(bw_unlink("sv"), 0);
	/* regions 0 and 1 are in use (and the deck) */
	CU_ASSERT_EQUAL(parts(id), scale == BW_SCALE_DECKCUT ? 3 : 2);
	for (int i = 0; i < 3000; i++)
		anew_turn(&a, false);
	CU_ASSERT(a.resizes >= 2);
	CU_ASSERT_EQUAL(a.rpos, a.wpos);
	bw_stream_close(a.r);
	CU_ASSERT(parts(id) > 0); /* the writer's region */
	bw_stream_close(a.w);
	CU_ASSERT_EQUAL(parts(id), 0);
}

static void test_removed_attached(void)
{
	run_removed_attached(BW_SCALE_REALLOC);
	run_removed_attached(BW_SCALE_DECKCUT);
}

/* A ring removed while attached whose last process is killed: its closing
 * handle never sweeps the parts. The next ring made or removed finds them
 * orphans (no ring has their id, no live process is in them) and removes
 * them; an idle ring's parts, unused too, stay. */
static void run_removed_killed(uint32_t scale)
{
	struct bw_stream *r, *w;
	uint64_t id, idle;
	int go[2], ready[2];
	pid_t pid;
	char c;

	CU_ASSERT_EQUAL_FATAL(mk("sk1", scale, 256 << 10, 16 << 10, 0), 0);
	CU_ASSERT_EQUAL_FATAL(mk("sk2", scale, 256 << 10, 16 << 10, 0), 0);
	id = ring_id("sk1");
	idle = ring_id("sk2");
	CU_ASSERT_FATAL(pipe(go) == 0 && pipe(ready) == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		close(go[1]);
		close(ready[0]);
		if (bw_stream_open("sk1", BW_READ | BW_NOWAIT | BW_NONBLOCK, &r) ||
		    bw_stream_open("sk1", BW_WRITE | BW_NONBLOCK, &w) ||
		    bw_stream_write(w, "x", 1) != 1 || write(ready[1], "r", 1) != 1)
			_exit(1);
		(void)!read(go[0], &c, 1); /* killed here */
		_exit(2);
	}
	close(go[0]);
	close(ready[1]);
	CU_ASSERT_EQUAL_FATAL(read(ready[0], &c, 1), 1);
	CU_ASSERT_EQUAL_FATAL(bw_unlink("sk1"), 0);
	CU_ASSERT(parts(id) > 0); /* in use */
	kill(pid, SIGKILL);
	CU_ASSERT_EQUAL(bwt_wait(pid), 128 + SIGKILL);
	close(go[1]);
	close(ready[0]);
	CU_ASSERT(parts(id) > 0); /* left: nobody closed a handle */
	CU_ASSERT_EQUAL_FATAL(mk("sk3", BW_SCALE_NONE, 64 << 10, 0, 0), 0);
	CU_ASSERT_EQUAL(parts(id), 0);
	CU_ASSERT_EQUAL(parts(idle), scale == BW_SCALE_DECKCUT ? 2 : 1);
	CU_ASSERT_EQUAL(bw_unlink("sk2"), 0);
	CU_ASSERT_EQUAL(bw_unlink("sk3"), 0);
	CU_ASSERT_EQUAL(parts(0), 0);
}

static void test_removed_killed(void)
{
	run_removed_killed(BW_SCALE_REALLOC);
	run_removed_killed(BW_SCALE_DECKCUT);
}

/* Four writes more into the writer's new region, none read. */
static void seek_ahead_writes(struct anew *a)
{
	static uint8_t buf[4096];

	for (int i = 0; i < 4; i++) {
		bwt_fill(buf, sizeof(buf), a->wpos, a->seed);
		CU_ASSERT_EQUAL_FATAL(bw_stream_write(a->w, buf, sizeof(buf)),
				      (ssize_t)sizeof(buf));
		a->wpos += sizeof(buf);
	}
}

/* A reader still in the region the writer left sees the ring's write
 * position, not its region's end: stat, SEEK_END, and SEEK_SET to a byte
 * in the writer's region, which it then reads. */
static void run_seek_ahead(uint32_t scale)
{
	struct anew a = {.seed = 33};
	struct bw_stream_stat st;
	static uint8_t out[4096];
	int64_t w;

	CU_ASSERT_EQUAL_FATAL(mk("sk", scale, 256 << 10, 16 << 10, 0), 0);
	nb_pair("sk", &a.r, &a.w);
	a.cap = cap(a.w);
	while (!a.resizes) /* its reader stays behind in region 0 */
		anew_turn(&a, true);
	seek_ahead_writes(&a);
	w = bw_stream_lseek(a.w, 0, SEEK_CUR);
	CU_ASSERT_EQUAL_FATAL((uint64_t)w, a.wpos);
	CU_ASSERT_EQUAL_FATAL(bw_stream_stat(a.r, &st), 0);
	CU_ASSERT_EQUAL(st.write_pos, a.wpos);
	CU_ASSERT(st.read_pos < a.wpos - 4 * 4096);
	CU_ASSERT_EQUAL(bw_stream_lseek(a.r, w + 1, SEEK_SET), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "outside"));
	CU_ASSERT_EQUAL(bw_stream_lseek(a.r, 0, SEEK_END), w);
	CU_ASSERT_EQUAL(bw_stream_read(a.r, out, sizeof(out)), -EAGAIN);
	/* back, within the writer's region now */
	CU_ASSERT_EQUAL_FATAL(bw_stream_lseek(a.r, -100, SEEK_END), w - 100);
	CU_ASSERT_EQUAL_FATAL(bw_stream_read(a.r, out, sizeof(out)), 100);
	CU_ASSERT_EQUAL(bwt_verify(out, 100, (uint64_t)w - 100, a.seed), -1);
	bw_stream_close(a.r);
	bw_stream_close(a.w);
	bw_unlink("sk");

	/* SEEK_SET straight from the old region into the writer's */
	a = (struct anew){.seed = 34};
	CU_ASSERT_EQUAL_FATAL(mk("sk", scale, 256 << 10, 16 << 10, 0), 0);
	nb_pair("sk", &a.r, &a.w);
	a.cap = cap(a.w);
	while (!a.resizes)
		anew_turn(&a, true);
	seek_ahead_writes(&a);
	w = (int64_t)a.wpos;
	CU_ASSERT_EQUAL_FATAL(bw_stream_lseek(a.r, w - 100, SEEK_SET), w - 100);
	CU_ASSERT_EQUAL_FATAL(bw_stream_read(a.r, out, sizeof(out)), 100);
	CU_ASSERT_EQUAL(bwt_verify(out, 100, (uint64_t)w - 100, a.seed), -1);
	bw_stream_close(a.r);
	bw_stream_close(a.w);
	bw_unlink("sk");
}

static void test_seek_ahead(void)
{
	run_seek_ahead(BW_SCALE_REALLOC);
	run_seek_ahead(BW_SCALE_DECKCUT);
}

/* bw_ring_stat's peers of a self-scaling ring are its handles' positions
 * and counts since they attached, across every resize, as on any ring. */
static void run_peers(uint32_t scale)
{
	struct anew a = {.seed = 35};
	struct bw_ring_peer p[4];
	struct bw_ring_info in;
	int n;

	CU_ASSERT_EQUAL_FATAL(mk("sq", scale, 64 << 10, 16 << 10, 0), 0);
	nb_pair("sq", &a.r, &a.w);
	a.cap = cap(a.w);
	for (int i = 0; i < 1000; i++)
		anew_turn(&a, false);
	CU_ASSERT(a.resizes > 0);
	n = bw_ring_stat("sq", &in, p, 4);
	CU_ASSERT_EQUAL_FATAL(n, 2);
	CU_ASSERT_EQUAL(in.write_pos, a.wpos);
	for (int i = 0; i < n; i++) {
		/* the writer's counts are published as it looks at readers:
		 * not always up to its last write */
		CU_ASSERT(p[i].bytes > a.wpos / 2);
		CU_ASSERT(p[i].calls > 0);
		if (p[i].role == BW_PEER_READER) {
			CU_ASSERT_EQUAL(p[i].pos, a.rpos);
		}
	}
	bw_stream_close(a.r);
	bw_stream_close(a.w);
	bw_unlink("sq");
}

/* An SRP ring's drops, counted across resizes: the writer's, each
 * reader's (the ring's since it attached) and the ring's agree. */
static void test_srp_drops(void)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct bw_stream *r, *w;
	struct bw_stream_stat ws, rs;
	struct bw_ring_info in;
	static uint8_t buf[4096];
	uint64_t written = 0;

	o.size = 64 << 10;
	o.scale = BW_SCALE_REALLOC;
	o.scale_min = 16 << 10;
	o.scale_max = 256 << 10;
	o.policy = BW_POLICY_SRP;
	bw_unlink("sd");
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("sd", &o), 0);
	nb_pair("sd", &r, &w);
	for (int round = 0; round < 40; round++) {
		for (int i = 0; i < 64; i++, written += sizeof(buf)) /* drops */
			CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf,
							      sizeof(buf)),
					      (ssize_t)sizeof(buf));
		for (int i = 0; i < 200; i++, written += sizeof(buf)) {
			CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf,
							      sizeof(buf)),
					      (ssize_t)sizeof(buf));
			while (bw_stream_read(r, buf, sizeof(buf)) > 0)
				;
		}
	}
	CU_ASSERT_EQUAL_FATAL(bw_stream_stat(w, &ws), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_stat(r, &rs), 0);
	CU_ASSERT_FATAL(bw_ring_stat("sd", &in, NULL, 0) >= 0);
	CU_ASSERT(in.scale_epoch > 0);
	CU_ASSERT(ws.dropped > 0);
	CU_ASSERT_EQUAL(ws.dropped,
			written - (uint64_t)bw_stream_lseek(w, 0, SEEK_CUR));
	CU_ASSERT_EQUAL(rs.dropped, ws.dropped);
	CU_ASSERT_EQUAL(in.dropped_bytes, ws.dropped);
	CU_ASSERT(in.dropped_writes > 0);
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("sd");
}

static void test_peers(void)
{
	run_peers(BW_SCALE_REALLOC);
	run_peers(BW_SCALE_DECKCUT);
}

static void reg(void)
{
	bwt_add("realloc: shrink and grow in turns", test_realloc_turns);
	bwt_add("deck-cut: shrink and grow in turns", test_deckcut_turns);
	bwt_add("deck-cut: no seek back into a region that ended",
		test_deckcut_seek_back);
	bwt_add("realloc: reader in another process",
		test_realloc_other_process);
	bwt_add("deck-cut: reader in another process",
		test_deckcut_other_process);
	bwt_add("a reader leaves while the ring resizes", test_reader_leaves);
	bwt_add("refused combinations", test_refused);
	bwt_add("readers attach during resizes", test_attach_during_resizes);
	bwt_add("a reader from the oldest byte", test_from_start);
	bwt_add("readers from the oldest byte attach during resizes",
		test_attach_from_start_during_resizes);
	bwt_add("an outstanding poke_acquire", test_acquire_holds);
	bwt_add("a poke or write of up to the largest size fits",
		test_call_fits);
	bwt_add("a call that needs a larger region waits quietly",
		test_grow_waits_quietly);
	bwt_add("a blocking call that needs a larger region waits",
		test_grow_blocks);
	bwt_add("a ring removed and made anew under its name", test_made_anew);
	bwt_add("a ring removed while attached leaves nothing behind",
		test_removed_attached);
	bwt_add("a removed ring whose last process died leaves nothing",
		test_removed_killed);
	bwt_add("a reader behind a resize seeks to the ring's end",
		test_seek_ahead);
	bwt_add("peers of a self-scaling ring in bw_ring_stat", test_peers);
	bwt_add("drops of an SRP self-scaling ring", test_srp_drops);
	bwt_add("record layouts over both kinds of scaling", test_records);
	bwt_add("a reader of records in another process",
		test_records_other_process);
}

int main(void)
{
	return bwt_main("scale", reg);
}
