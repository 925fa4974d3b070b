/* SPDX-License-Identifier: MIT */
/*
 * Record layouts and implementation stacking: fr, vr and dr rings keep
 * record boundaries across wraps, append builds one record, EMSGSIZE both
 * ways, resynchronization after overwrite (vr at the write position, dr
 * and fr at the oldest record held), alignment, refused combinations,
 * corrupted headers, several writers, and a reader in another process.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define RING 16384u

static const unsigned layouts[] = {BW_LAYOUT_FR, BW_LAYOUT_VR, BW_LAYOUT_DR};

static int mk(const char *name, unsigned layout, uint32_t policy,
	      uint32_t size, uint32_t align, uint32_t off)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = RING;
	o.layout = layout;
	o.policy = policy;
	o.record_size = size;
	o.record_align = align;
	o.record_align_offset = off;
	bw_unlink(name);
	return bw_mkfifo(name, &o);
}

static void open2(const char *name, struct bw_stream **r, struct bw_stream **w)
{
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_READ | BW_NOWAIT |
							   BW_NONBLOCK,
					     r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_WRITE | BW_NONBLOCK, w),
			      0);
}

/* Record k: its length, and its bytes (the first 4 carry k). */
static size_t rec_len(unsigned k, size_t max)
{
	return 1 + (k * 37u) % max;
}

static void rec_fill(uint8_t *b, unsigned k, size_t n)
{
	bwt_fill(b, n, (uint64_t)k << 20, 7);
	if (n >= 4)
		memcpy(b, &k, 4);
}

static bool rec_ok(const uint8_t *b, unsigned k, size_t n)
{
	uint8_t want[4096];

	rec_fill(want, k, n);
	return memcmp(b, want, n) == 0;
}

/* Writes and reads records of many sizes through several wraps, reading by
 * read and by peek in turn: each comes back whole and alone. */
static void test_boundaries(void)
{
	for (unsigned l = 0; l < 3; l++) {
		struct bw_stream *r, *w;
		uint8_t buf[2048], out[2048];
		const void *p;
		unsigned k = 0, got = 0;

		CU_ASSERT_EQUAL_FATAL(mk("rb", layouts[l], 0, 0, 0, 0), 0);
		open2("rb", &r, &w);
		while (got < 400) {
			size_t n = rec_len(k, 1500);
			ssize_t x = -EAGAIN;

			rec_fill(buf, k, n);
			if (k < 400)
				x = bw_stream_write(w, buf, n);
			if (x == -EAGAIN) {
				size_t m = rec_len(got, 1500);

				if (got % 2) {
					x = bw_stream_peek(r, &p, 2048);
					CU_ASSERT_EQUAL_FATAL(x, (ssize_t)m);
					CU_ASSERT(rec_ok(p, got, m));
				} else {
					x = bw_stream_read(r, out, sizeof(out));
					CU_ASSERT_EQUAL_FATAL(x, (ssize_t)m);
					CU_ASSERT(rec_ok(out, got, m));
				}
				got++;
				continue;
			}
			CU_ASSERT_EQUAL_FATAL(x, (ssize_t)n);
			k++;
		}
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), -EAGAIN);
		{
			struct bw_stream_stat st;

			CU_ASSERT_EQUAL(bw_stream_stat(r, &st), 0);
			CU_ASSERT_EQUAL(st.calls, 400); /* records, not bytes */
		}
		bw_stream_close(r);
		bw_stream_close(w);
	}
}

/* append builds one record, published by flush, write, or close; a record
 * never grows past the largest. */
static void test_append(void)
{
	for (unsigned l = 0; l < 3; l++) {
		struct bw_stream *r, *w;
		uint8_t buf[600], out[2048];

		CU_ASSERT_EQUAL_FATAL(mk("ra", layouts[l], 0, 1024, 0, 0), 0);
		open2("ra", &r, &w);
		rec_fill(buf, 1, 600);
		CU_ASSERT_EQUAL(bw_stream_append(w, buf, 100), 100);
		CU_ASSERT_EQUAL(bw_stream_append(w, buf + 100, 200), 200);
		/* open: not published yet */
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), -EAGAIN);
		CU_ASSERT_EQUAL(bw_stream_append(w, buf + 300, 300), 300);
		CU_ASSERT_EQUAL(bw_stream_flush(w), 0);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 600);
		CU_ASSERT(rec_ok(out, 1, 600));
		/* a write closes the open record first: two records */
		rec_fill(buf, 2, 50);
		CU_ASSERT_EQUAL(bw_stream_append(w, buf, 50), 50);
		rec_fill(buf, 3, 70);
		CU_ASSERT_EQUAL(bw_stream_write(w, buf, 70), 70);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 50);
		CU_ASSERT(rec_ok(out, 2, 50));
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 70);
		CU_ASSERT(rec_ok(out, 3, 70));
		/* past the largest: refused, the open record keeps its bytes */
		rec_fill(buf, 4, 600);
		CU_ASSERT_EQUAL(bw_stream_append(w, buf, 600), 600);
		CU_ASSERT_EQUAL(bw_stream_append(w, buf, 600), -EMSGSIZE);
		CU_ASSERT_EQUAL(bw_stream_close(w), 0); /* publishes it */
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 600);
		CU_ASSERT(rec_ok(out, 4, 600));
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 0); /* EOF */
		bw_stream_close(r);
	}
}

/* Too large to write; too large for the reader's buffer (the record stays);
 * append on a byte ring. */
static void test_emsgsize(void)
{
	struct bw_stream *r, *w;
	uint8_t buf[4096], out[4096];
	const void *p;

	CU_ASSERT_EQUAL_FATAL(mk("re", BW_LAYOUT_FR, 0, 512, 0, 0), 0);
	open2("re", &r, &w);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 512), -EMSGSIZE); /* + header */
	rec_fill(buf, 9, 504);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 504), 504);
	CU_ASSERT_EQUAL(bw_stream_read(r, out, 100), -EMSGSIZE);
	CU_ASSERT_EQUAL(bw_stream_peek(r, &p, 100), -EMSGSIZE);
	CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 504);
	CU_ASSERT(rec_ok(out, 9, 504));
	bw_stream_close(r);
	bw_stream_close(w);

	CU_ASSERT_EQUAL_FATAL(mk("re", BW_LAYOUT_VR, 0, 1000, 0, 0), 0);
	open2("re", &r, &w);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 1001), -EMSGSIZE);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 1000), 1000);
	bw_stream_close(r);
	bw_stream_close(w);

	CU_ASSERT_EQUAL_FATAL(mk("re", BW_LAYOUT_BYTES, 0, 0, 0, 0), 0);
	open2("re", &r, &w);
	CU_ASSERT_EQUAL(bw_stream_append(w, buf, 10), -ENOSYS);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "byte ring"));
	bw_stream_close(r);
	bw_stream_close(w);
}

/* An FRP reader overtaken by a writer: vr resumes at the write position,
 * dr and fr at the oldest record still held; every record it reads after
 * is whole and right, and the loss is counted. */
static void test_resync(void)
{
	for (unsigned l = 0; l < 3; l++) {
		struct bw_stream *r, *w;
		struct bw_stream_stat st;
		uint8_t buf[512], out[512];
		unsigned k;
		ssize_t x;

		CU_ASSERT_EQUAL_FATAL(mk("rr", layouts[l], BW_POLICY_FRP, 0, 0, 0),
				      0);
		open2("rr", &r, &w);
		for (k = 0; k < 3; k++) {
			rec_fill(buf, k, 200);
			CU_ASSERT_EQUAL(bw_stream_write(w, buf, 200), 200);
		}
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 200);
		CU_ASSERT(rec_ok(out, 0, 200));
		/* three rings' worth: the reader is overtaken */
		for (; k < 3 * RING / 200; k++) {
			size_t n = 100 + k % 150;

			rec_fill(buf, k, n);
			CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, n),
					      (ssize_t)n);
		}
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), -ESTALE);
		x = bw_stream_read(r, out, sizeof(out));
		if (layouts[l] == BW_LAYOUT_VR) {
			CU_ASSERT_EQUAL(x, -EAGAIN); /* at the write position */
		} else {
			unsigned j;

			CU_ASSERT_FATAL(x > 0);
			memcpy(&j, out, 4);
			/* an old record, but one still held in the ring */
			CU_ASSERT(j > 3 && j < k);
			CU_ASSERT_EQUAL((size_t)x, 100 + j % 150);
			CU_ASSERT(rec_ok(out, j, (size_t)x));
			for (j++; j < k; j++) {
				x = bw_stream_read(r, out, sizeof(out));
				CU_ASSERT_EQUAL_FATAL(x, (ssize_t)(100 + j % 150));
				CU_ASSERT(rec_ok(out, j, (size_t)x));
			}
			CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)),
					-EAGAIN);
		}
		CU_ASSERT_EQUAL(bw_stream_stat(r, &st), 0);
		CU_ASSERT(st.lost > 0);
		/* and it goes on from there */
		rec_fill(buf, 99999, 33);
		CU_ASSERT_EQUAL(bw_stream_write(w, buf, 33), 33);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 33);
		CU_ASSERT(rec_ok(out, 99999, 33));
		bw_stream_close(r);
		bw_stream_close(w);
	}
}

/* A reader attaching from the start of a ring that wrapped stands at the
 * oldest byte held, inside some record: it moves on to the first record
 * that starts there or after (vr too: the first whose headers chain to the
 * write position), and reads every record from it in order. FRP and
 * lossless (with a reader that keeps up). */
static void test_from_start(void)
{
	static const uint32_t pol[] = {BW_POLICY_FRP, BW_POLICY_LOSSLESS};

	for (unsigned l = 0; l < 3; l++)
		for (unsigned p = 0; p < 2; p++) {
			struct bw_stream *r, *w, *f;
			uint8_t buf[512], out[512];
			static int64_t start[4096];
			int64_t head;
			unsigned k, j;
			ssize_t x;

			CU_ASSERT_EQUAL_FATAL(mk("rf", layouts[l], pol[p], 0, 0,
						 0),
					      0);
			open2("rf", &r, &w);
			for (k = 0; k < 3 * RING / 100; k++) {
				size_t n = 100 + k % 150;

				start[k] = bw_stream_lseek(w, 0, SEEK_CUR);
				rec_fill(buf, k, n);
				CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, n),
						      (ssize_t)n);
				CU_ASSERT_EQUAL_FATAL(bw_stream_read(r, out,
								     sizeof(out)),
						      (ssize_t)n);
			}
			head = bw_stream_lseek(w, 0, SEEK_CUR);
			for (j = 0; start[j] < head - (int64_t)RING; j++)
				;
			CU_ASSERT_FATAL(j > 0); /* it wrapped */
			CU_ASSERT_EQUAL_FATAL(bw_stream_open("rf", BW_READ |
								   BW_NOWAIT |
								   BW_NONBLOCK |
								   BW_FROM_START,
							     &f),
					      0);
			CU_ASSERT_EQUAL(bw_stream_lseek(f, 0, SEEK_CUR), start[j]);
			for (; j < k; j++) {
				x = bw_stream_read(f, out, sizeof(out));
				CU_ASSERT_EQUAL_FATAL(x, (ssize_t)(100 + j % 150));
				CU_ASSERT(rec_ok(out, j, (size_t)x));
			}
			CU_ASSERT_EQUAL(bw_stream_read(f, out, sizeof(out)),
					-EAGAIN);
			bw_stream_close(f);
			bw_stream_close(r);
			bw_stream_close(w);
		}
	bw_unlink("rf");
}

/* A lossless reader that seeks back is below what the writer knew of it:
 * the writer works out its room again before its next reservation, so it
 * waits (here: -EAGAIN) rather than overwrite the records sought back to,
 * which come back whole and in order; then the writer goes on. (A write
 * already in flight as the reader seeks is caught by the checked reads
 * below the protected position, tested by the busy readers below.) fr
 * and dr (vr seeks only to the write position). */
static void test_seek_back_lossless(void)
{
	for (unsigned l = 0; l < 3; l++) {
		struct bw_stream *r, *w;
		uint8_t buf[512], out[512];
		static int64_t start[1024];
		int64_t head, lim = 0, foot;
		unsigned k = 0, j = 0;

		if (layouts[l] == BW_LAYOUT_VR)
			continue;
		foot = layouts[l] == BW_LAYOUT_FR ? 2048 : 256; /* of 200 B */
		CU_ASSERT_EQUAL_FATAL(mk("rb", layouts[l], 0, 0, 0, 0), 0);
		open2("rb", &r, &w);
		/* the reader keeps up; stop just after the writer looked for
		 * room (it sees a ring of room from the reader at the tail) */
		for (;;) {
			int64_t hd = bw_stream_lseek(w, 0, SEEK_CUR);
			bool looked = hd + foot > lim;

			if (looked)
				lim = hd + RING;
			start[k] = hd;
			rec_fill(buf, k, 200);
			CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, 200), 200);
			CU_ASSERT_EQUAL_FATAL(bw_stream_read(r, out, sizeof(out)),
					      200);
			k++;
			if (looked && hd > 2 * (int64_t)RING)
				break;
		}
		head = bw_stream_lseek(w, 0, SEEK_CUR);
		while (start[j] < head - (int64_t)RING)
			j++;
		j++;
		CU_ASSERT_EQUAL_FATAL(bw_stream_lseek(r, start[j], SEEK_SET),
				      start[j]);
		/* it writes what fits below the reader, then waits */
		for (;;) {
			ssize_t x;

			rec_fill(buf, k, 200);
			x = bw_stream_write(w, buf, 200);
			if (x == -EAGAIN)
				break;
			CU_ASSERT_EQUAL_FATAL(x, 200);
			k++;
		}
		CU_ASSERT(bw_stream_lseek(w, 0, SEEK_CUR) <=
			  start[j] + (int64_t)RING);
		for (unsigned i = j; i < k; i++) {
			CU_ASSERT_EQUAL_FATAL(bw_stream_read(r, out, sizeof(out)),
					      200);
			CU_ASSERT(rec_ok(out, i, 200));
		}
		CU_ASSERT_EQUAL(bw_stream_write(w, buf, 200), 200);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 200);
		CU_ASSERT(rec_ok(out, k, 200));
		bw_stream_close(r);
		bw_stream_close(w);
	}
	bw_unlink("rb");
}

struct busy_arg {
	const char *name;
	atomic_bool stop;
	atomic_ulong wrote; /* records written so far */
};

static void *busy_writer(void *argp)
{
	struct busy_arg *a = argp;
	struct bw_stream *w;
	uint8_t buf[512];

	if (bw_stream_open(a->name, BW_WRITE | BW_NOWAIT, &w) < 0)
		return NULL;
	for (unsigned k = 0; !atomic_load(&a->stop); k++) {
		size_t n = 8 + k * 37 % 300;
		ssize_t x;

		rec_fill(buf, k, n);
		/* lossless: -EPIPE while no reader is attached (they come
		 * and go); the record is written again once one is */
		while ((x = bw_stream_write(w, buf, n)) == -EPIPE &&
		       !atomic_load(&a->stop))
			sched_yield();
		if (x != (ssize_t)n)
			break;
		atomic_fetch_add(&a->wrote, 1);
	}
	bw_stream_close(w);
	return NULL;
}

/* Readers open from the start while a writer keeps overwriting the oldest
 * records: every open succeeds (the record start it found may be gone by
 * the time it moves there: it looks again), and every record read is
 * whole and valid. FRP and lossless, each layout. */
static void test_from_start_busy(void)
{
	static const uint32_t pol[] = {BW_POLICY_FRP, BW_POLICY_LOSSLESS};

	for (unsigned l = 0; l < 3; l++)
		for (unsigned p = 0; p < 2; p++) {
			struct busy_arg a = {.name = "rz"};
			unsigned fails = 0, bad = 0, recs = 0;
			pthread_t t;

			CU_ASSERT_EQUAL_FATAL(mk("rz", layouts[l], pol[p], 0, 0,
						 0),
					      0);
			atomic_init(&a.stop, false);
			atomic_init(&a.wrote, 0);
			CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL,
							     busy_writer, &a),
					      0);
			/* 200 readers, and more until the writer has written
			 * 2000 records, some twenty loops: a thread may start
			 * late (under TSan it started after the 200 had come
			 * and gone). The bound only ends a writer that never
			 * writes. */
			for (int i = 0;
			     i < 200 || (atomic_load(&a.wrote) < 2000 &&
					 i < 200000);
			     i++) {
				struct bw_stream *r;
				uint8_t out[512];
				ssize_t x;

				if (bw_stream_open("rz", BW_READ | BW_NOWAIT |
							       BW_NONBLOCK |
							       BW_FROM_START,
						   &r) < 0) {
					fails++;
					continue;
				}
				for (int n = 0; n < 8; n++) {
					unsigned k;

					x = bw_stream_read(r, out, sizeof(out));
					if (x <= 0)
						continue; /* ESTALE, EAGAIN */
					memcpy(&k, out, 4);
					recs++;
					if (x < 4 || (size_t)x != 8 + k * 37 % 300 ||
					    !rec_ok(out, k, (size_t)x))
						bad++;
				}
				bw_stream_close(r);
			}
			atomic_store(&a.stop, true);
			pthread_join(t, NULL);
			/* and once the writer stopped, records to read: the
			 * busy reads may all have been overtaken */
			{
				struct bw_stream *r;
				uint8_t out[512];
				ssize_t x;
				unsigned k;

				CU_ASSERT_EQUAL_FATAL(
					bw_stream_open("rz", BW_READ | BW_NOWAIT |
								     BW_NONBLOCK |
								     BW_FROM_START,
						       &r),
					0);
				while ((x = bw_stream_read(r, out, sizeof(out))) >
				       0) {
					memcpy(&k, out, 4);
					recs++;
					if ((size_t)x != 8 + k * 37 % 300 ||
					    !rec_ok(out, k, (size_t)x))
						bad++;
				}
				CU_ASSERT_EQUAL(x, 0); /* the writer has gone */
				bw_stream_close(r);
			}
			CU_ASSERT_EQUAL(fails, 0);
			CU_ASSERT_EQUAL(bad, 0);
			CU_ASSERT(recs > 0);
		}
	bw_unlink("rz");
}

/* A writer closes while an earlier writer keeps a record open for append
 * (or, on a byte ring, a poke_acquire): the close does not wait for that
 * record, and the records come out in order once it is closed. In one
 * thread: a close that waited would never return (the watchdog fails it). */
static void test_close_behind_open_record(void)
{
	static const unsigned lays[] = {BW_LAYOUT_BYTES, BW_LAYOUT_VR,
					BW_LAYOUT_DR};

	for (unsigned l = 0; l < 3; l++) {
		struct bw_stream *r, *a, *b;
		uint8_t out[64];
		void *q;

		CU_ASSERT_EQUAL_FATAL(mk("rc", lays[l], 0, lays[l] ? 1024 : 0,
					 0, 0),
				      0);
		open2("rc", &r, &a);
		CU_ASSERT_EQUAL_FATAL(bw_stream_open("rc", BW_WRITE |
								   BW_NONBLOCK,
						     &b),
				      0);
		if (lays[l] == BW_LAYOUT_BYTES) {
			CU_ASSERT_EQUAL(bw_stream_poke_acquire(a, &q, 4), 4);
			memcpy(q, "aaaa", 4);
		} else {
			CU_ASSERT_EQUAL(bw_stream_append(a, "aaaa", 4), 4);
		}
		CU_ASSERT_EQUAL(bw_stream_write(b, "bbbb", 4), 4);
		CU_ASSERT_EQUAL(bw_stream_close(b), 0);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), -EAGAIN);
		CU_ASSERT_EQUAL(lays[l] == BW_LAYOUT_BYTES
					? bw_stream_poke_complete(a, 4)
					: bw_stream_flush(a),
				0);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, 4), 4);
		CU_ASSERT_EQUAL(memcmp(out, "aaaa", 4), 0);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, 4), 4);
		CU_ASSERT_EQUAL(memcmp(out, "bbbb", 4), 0);
		bw_stream_close(a);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 0);
		bw_stream_close(r);
	}
	bw_unlink("rc");
}

/* A read stamp taken before pad spans the reader then skipped (a second
 * writer's short append leaves one) stays good while the record after them
 * is intact, however much the writer reuses of the pads' space; a seek to
 * a record start that was overwritten says ESTALE (fr, dr). */
static void test_stamps_and_pads(void)
{
	struct bw_stream *r, *a, *b;
	uint8_t buf[1024];
	const uint8_t *p;
	int64_t stamp;
	int k = 0;

	CU_ASSERT_EQUAL_FATAL(mk("rp", BW_LAYOUT_VR, 0, 1024, 0, 0), 0);
	open2("rp", &r, &a);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("rp", BW_WRITE | BW_NONBLOCK, &b),
			      0);
	memset(buf, 'A', 100);
	CU_ASSERT_EQUAL(bw_stream_append(a, buf, 100), 100);
	memset(buf, 'B', 100);
	CU_ASSERT_EQUAL(bw_stream_write(b, buf, 100), 100);
	CU_ASSERT_EQUAL(bw_stream_flush(a), 0); /* short: the rest a pad */
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 100);
	stamp = bw_stream_check(r, -1, BW_CHECK_READ);
	CU_ASSERT_EQUAL(bw_stream_peek(r, (const void **)&p, sizeof(buf)), 100);
	CU_ASSERT_FATAL(p[0] == 'B');
	memset(buf, 'C', 100);
	while (bw_stream_write(b, buf, 100) == 100)
		k++;
	CU_ASSERT(k > 0);
	CU_ASSERT(p[0] == 'B' && p[99] == 'B'); /* the peek is held */
	CU_ASSERT(bw_stream_check(r, stamp, BW_CHECK_READ) > stamp);
	bw_stream_close(a);
	bw_stream_close(b);
	bw_stream_close(r);
	/* seeks to overwritten record starts */
	for (unsigned l = 0; l < 3; l++) {
		CU_ASSERT_EQUAL_FATAL(mk("rp", layouts[l], BW_POLICY_FRP, 0, 0,
					 0),
				      0);
		open2("rp", &r, &a);
		memset(buf, 1, 100);
		for (k = 0; k < 3 * (int)RING / 100; k++)
			CU_ASSERT_EQUAL_FATAL(bw_stream_write(a, buf, 100), 100);
		while (bw_stream_read(r, buf, sizeof(buf)) != -EAGAIN)
			; /* overtaken once, then what is held */
		/* vr: no seeks but to the write position */
		CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_SET),
				layouts[l] == BW_LAYOUT_VR ? -EINVAL : -ESTALE);
		bw_stream_close(a);
		bw_stream_close(r);
	}
	bw_unlink("rp");
}

/* SRP with the reader a ring behind: a record opened for append then is
 * dropped whole, as a write would be: every piece returns its count, the
 * reader sees no part of it, and the next record goes in once there is
 * room. */
static void test_srp_append_dropped(void)
{
	struct bw_stream *r, *w;
	struct bw_stream_stat st;
	uint8_t buf[1024], out[1024];
	uint64_t drops;

	CU_ASSERT_EQUAL_FATAL(mk("rs", BW_LAYOUT_VR, BW_POLICY_SRP, 1024, 0, 0),
			      0);
	open2("rs", &r, &w);
	memset(buf, 'x', sizeof(buf));
	do {
		CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, 1000), 1000);
		CU_ASSERT_EQUAL_FATAL(bw_stream_stat(w, &st), 0);
	} while (!st.dropped);
	drops = st.dropped;
	CU_ASSERT_EQUAL(bw_stream_append(w, "HEAD-", 5), 5);
	while (bw_stream_read(r, out, sizeof(out)) > 0)
		; /* room again */
	CU_ASSERT_EQUAL(bw_stream_append(w, "TAIL", 4), 4);
	CU_ASSERT_EQUAL(bw_stream_flush(w), 0);
	CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), -EAGAIN);
	CU_ASSERT_EQUAL(bw_stream_stat(w, &st), 0);
	CU_ASSERT(st.dropped > drops);
	CU_ASSERT_EQUAL(bw_stream_append(w, "next", 4), 4);
	CU_ASSERT_EQUAL(bw_stream_flush(w), 0);
	CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 4);
	CU_ASSERT_EQUAL(memcmp(out, "next", 4), 0);
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("rs");
}

/* Payloads land so that payload + offset is aligned. */
static void test_alignment(void)
{
	static const struct {
		unsigned layout;
		uint32_t size, align, off;
	} c[] = {
		{BW_LAYOUT_VR, 0, 64, 14}, {BW_LAYOUT_VR, 0, 8, 0},
		{BW_LAYOUT_DR, 0, 64, 14}, {BW_LAYOUT_DR, 0, 128, 0},
		{BW_LAYOUT_FR, 256, 64, 14}, {BW_LAYOUT_FR, 2048, 64, 0},
	};

	for (unsigned i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct bw_stream *r, *w;
		uint8_t buf[200];
		const void *p;

		CU_ASSERT_EQUAL_FATAL(mk("ral", c[i].layout, 0, c[i].size,
					 c[i].align, c[i].off),
				      0);
		open2("ral", &r, &w);
		for (unsigned k = 0; k < 200; k++) {
			size_t n = 1 + k % 199;

			rec_fill(buf, k, n);
			CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, n),
					      (ssize_t)n);
			CU_ASSERT_EQUAL_FATAL(bw_stream_peek(r, &p, 200),
					      (ssize_t)n);
			CU_ASSERT_EQUAL(((uintptr_t)p + c[i].off) % c[i].align,
					0);
			CU_ASSERT(rec_ok(p, k, n));
		}
		bw_stream_close(r);
		bw_stream_close(w);
	}
}

/* Combinations that cannot work are refused at create, naming why. */
static void test_refused(void)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.flags = BW_RING_INDEX;
	o.layout = BW_LAYOUT_VR;
	CU_ASSERT_EQUAL(bw_mkfifo("rx", &o), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "IBuf"));
	CU_ASSERT_EQUAL(mk("rx", BW_LAYOUT_FR, 0, 1000, 0, 0), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "power of two"));
	CU_ASSERT_EQUAL(mk("rx", BW_LAYOUT_FR, 0, RING, 0, 0), -EINVAL);
	CU_ASSERT_EQUAL(mk("rx", BW_LAYOUT_VR, 0, 0, 12, 0), -EINVAL);
	CU_ASSERT_EQUAL(mk("rx", BW_LAYOUT_VR, 0, 0, 16, 16), -EINVAL);
	CU_ASSERT_EQUAL(mk("rx", BW_LAYOUT_VR, 0, RING / 2, 0, 0), -EINVAL);
	CU_ASSERT_EQUAL(mk("rx", BW_LAYOUT_BYTES, 0, 100, 0, 0), -EINVAL);
	CU_ASSERT_EQUAL(mk("rx", 7, 0, 0, 0, 0), -EINVAL);
	CU_ASSERT_EQUAL(mk("rx", 1, 0, 0, 0, 0), -EINVAL); /* index: a flag */
	o = (struct bw_ring_opts)BW_RING_OPTS_INIT;
	o.layout = BW_LAYOUT_DR;
	o.size = UINT64_C(1) << 32;
	o.record_align = 8;
	CU_ASSERT_EQUAL(bw_mkfifo("rx", &o), -EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "alignment"));
	CU_ASSERT_EQUAL(bw_ring_stat("rx", &(struct bw_ring_info){0}, NULL, 0),
			-ENOENT);
}

/* Maps the named ring's file and returns its data area (capacity RING). */
static uint8_t *map_data(const char *name, uint8_t **base, size_t *len)
{
	char path[512];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", bw_ring_dir(), name);
	fd = open(path, O_RDWR);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_FATAL(fstat(fd, &st) == 0);
	*len = (size_t)st.st_size;
	*base = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	CU_ASSERT_FATAL(*base != MAP_FAILED);
	return *base + *len - RING;
}

/* Headers scribbled on by another process: an error, never a read out of
 * bounds or a wrong record. */
static void test_corrupt_headers(void)
{
	static const uint64_t bad[] = {
		0,			 /* check word wrong */
		UINT64_C(0xffffffff),	 /* huge length */
		UINT64_C(0x7fffffff),
	};

	for (unsigned l = 1; l < 3; l++) {
		for (unsigned i = 0; i < 3; i++) {
			struct bw_stream *r, *w;
			uint8_t buf[100], out[4096], *base, *data, *e;
			size_t len;
			uint64_t v;

			CU_ASSERT_EQUAL_FATAL(mk("rc", layouts[l], 0, 0, 0, 0), 0);
			open2("rc", &r, &w);
			rec_fill(buf, 1, 100);
			CU_ASSERT_EQUAL(bw_stream_write(w, buf, 100), 100);
			data = map_data("rc", &base, &len);
			if (layouts[l] == BW_LAYOUT_VR) {
				e = data; /* the header before the record */
			} else {
				/* white-box: dr's header ring follows the
				 * slot table (64 readers and 16 writers of
				 * 128 bytes from 1536) and the writers' posts
				 * (128 bytes each); position 0 is entry 0 */
				e = base + 1536 + (64 + 16) * 128 + 16 * 128;
			}
			memcpy(&v, e, 8);
			/* keep the check word for the length cases */
			v = i == 0 ? 0 : (v & ~UINT64_C(0xffffffff)) | bad[i];
			memcpy(e, &v, 8);
			CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)),
					-EBADMSG);
			CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)),
					-EBADMSG); /* and it stays put */
			munmap(base, len);
			bw_stream_close(r);
			bw_stream_close(w);
		}
	}
}

/* Two writers: one holds a record open for append while the other writes
 * behind it; the first closes short, and the rest of its reservation is a
 * pad span no reader ever sees. */
static void test_writers_and_pad(void)
{
	for (unsigned l = 0; l < 3; l++) {
		struct bw_stream *r, *a, *b;
		uint8_t buf[300], out[4096];

		CU_ASSERT_EQUAL_FATAL(mk("rw", layouts[l], 0, 1024, 0, 0), 0);
		open2("rw", &r, &a);
		CU_ASSERT_EQUAL_FATAL(bw_stream_open("rw", BW_WRITE, &b), 0);
		rec_fill(buf, 1, 300);
		CU_ASSERT_EQUAL(bw_stream_append(a, buf, 300), 300);
		rec_fill(buf, 2, 40);
		CU_ASSERT_EQUAL(bw_stream_write(b, buf, 40), 40);
		/* b's record waits behind a's open one */
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), -EAGAIN);
		CU_ASSERT_EQUAL(bw_stream_flush(a), 0);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 300);
		CU_ASSERT(rec_ok(out, 1, 300));
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 40);
		CU_ASSERT(rec_ok(out, 2, 40));
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), -EAGAIN);
		/* poke_complete short, and of nothing, with a writer behind */
		{
			void *p;

			CU_ASSERT_EQUAL(bw_stream_poke_acquire(a, &p, 500), 500);
			rec_fill(p, 3, 20);
			rec_fill(buf, 4, 60);
			CU_ASSERT_EQUAL(bw_stream_write(b, buf, 60), 60);
			CU_ASSERT_EQUAL(bw_stream_poke_complete(a, 501), -EINVAL);
			CU_ASSERT_EQUAL(bw_stream_poke_complete(a, 20), 0);
			CU_ASSERT_EQUAL(bw_stream_poke_acquire(a, &p, 500), 500);
			CU_ASSERT_EQUAL(bw_stream_write(b, buf, 60), 60);
			CU_ASSERT_EQUAL(bw_stream_poke_complete(a, 0), 0);
		}
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 20);
		CU_ASSERT(rec_ok(out, 3, 20));
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 60);
		CU_ASSERT(rec_ok(out, 4, 60));
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 60);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), -EAGAIN);
		bw_stream_close(r);
		bw_stream_close(a);
		bw_stream_close(b);
	}
}

/* peek_acquire and peek_complete take the whole record or nothing; poke
 * publishes at the next call; lseek lands on record starts only. */
static void test_calls(void)
{
	for (unsigned l = 0; l < 3; l++) {
		struct bw_stream *r, *w;
		uint8_t buf[300], out[300];
		const void *p;
		void *q;
		int64_t pos1;

		CU_ASSERT_EQUAL_FATAL(mk("rk", layouts[l], 0, 0, 0, 0), 0);
		open2("rk", &r, &w);
		CU_ASSERT_EQUAL(bw_stream_poke(w, &q, 0), -EINVAL);
		CU_ASSERT_EQUAL(bw_stream_poke(w, &q, 100), 100);
		rec_fill(q, 1, 100);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), -EAGAIN);
		pos1 = bw_stream_lseek(w, 0, SEEK_CUR); /* publishes the poke */
		CU_ASSERT(pos1 > 0);
		rec_fill(buf, 2, 50);
		CU_ASSERT_EQUAL(bw_stream_write(w, buf, 50), 50);
		CU_ASSERT_EQUAL(bw_stream_peek_acquire(r, &p, 300), 100);
		CU_ASSERT(rec_ok(p, 1, 100));
		CU_ASSERT_EQUAL(bw_stream_peek_complete(r, 50), -EINVAL);
		CU_ASSERT_EQUAL(bw_stream_peek_acquire(r, &p, 300), 100);
		CU_ASSERT_EQUAL(bw_stream_peek_complete(r, 0), 0); /* leave it */
		CU_ASSERT_EQUAL(bw_stream_peek_acquire(r, &p, 300), 100);
		CU_ASSERT_EQUAL(bw_stream_peek_complete(r, 100), 0);
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 50);
		CU_ASSERT(rec_ok(out, 2, 50));
		/* back to the first record: fr and dr can, vr cannot */
		if (layouts[l] == BW_LAYOUT_VR) {
			CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_SET), -EINVAL);
			CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_END),
					bw_stream_lseek(w, 0, SEEK_CUR));
		} else {
			CU_ASSERT_EQUAL(bw_stream_lseek(r, 1, SEEK_SET), -EINVAL);
			CU_ASSERT_EQUAL(bw_stream_lseek(r, 0, SEEK_SET), 0);
			CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 100);
			CU_ASSERT(rec_ok(out, 1, 100));
			CU_ASSERT_EQUAL(bw_stream_lseek(r, pos1, SEEK_SET), pos1);
			CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 50);
		}
		CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), -EAGAIN);
		bw_stream_close(r);
		bw_stream_close(w);
	}
}

/* A reader in another process sees every record whole, with the ring
 * wrapping many times; the layers come from the ring's header. */
static void test_other_process(void)
{
	for (unsigned l = 0; l < 3; l++) {
		struct bw_ring_info in;
		struct bw_stream *r;
		uint8_t out[2048];
		unsigned k;
		pid_t pid;

		CU_ASSERT_EQUAL_FATAL(mk("rp", layouts[l], 0, 0, 0, 0), 0);
		CU_ASSERT_FATAL(bw_ring_stat("rp", &in, NULL, 0) >= 0);
		CU_ASSERT_EQUAL(in.layout, layouts[l]);
		CU_ASSERT(in.record_size > 0 && in.record_align >= 8);
		pid = fork();
		CU_ASSERT_FATAL(pid >= 0);
		if (pid == 0) {
			struct bw_stream *w;
			uint8_t buf[2048];
			int bad = 0;

			if (bw_stream_open("rp", BW_WRITE, &w) < 0)
				_exit(2);
			for (k = 0; k < 3000; k++) {
				size_t n = rec_len(k, 1500);

				rec_fill(buf, k, n);
				bad |= bw_stream_write(w, buf, n) != (ssize_t)n;
			}
			bw_stream_close(w);
			_exit(bad);
		}
		/* FIFO opens: each side waits for the other */
		CU_ASSERT_EQUAL_FATAL(bw_stream_open("rp", BW_READ, &r), 0);
		for (k = 0;; k++) {
			ssize_t x = bw_stream_read(r, out, sizeof(out));

			if (x <= 0) {
				CU_ASSERT_EQUAL(x, 0);
				if (x < 0)
					fprintf(stderr, "record %u: %s\n", k,
						bw_strerror_last());
				break;
			}
			CU_ASSERT_EQUAL_FATAL(x, (ssize_t)rec_len(k, 1500));
			CU_ASSERT_FATAL(rec_ok(out, k, (size_t)x));
		}
		CU_ASSERT_EQUAL(k, 3000);
		bw_stream_close(r); /* a writer left waiting gets EPIPE */
		CU_ASSERT_EQUAL(bwt_wait(pid), 0);
	}
}

struct appender {
	int id;
	int errs;
	pthread_barrier_t *all_open;
};

static void *append_thread(void *arg)
{
	struct appender *a = arg;
	struct bw_stream *w;
	uint8_t buf[64];

	if (bw_stream_open("rt", BW_WRITE, &w) < 0) {
		a->errs++;
		w = NULL;
	}
	/* all attached before any leaves: the reader's end of stream comes
	 * after the last */
	pthread_barrier_wait(a->all_open);
	if (!w)
		return NULL;
	memset(buf, 'a' + a->id, sizeof(buf));
	for (unsigned i = 0; i < 20000; i++)
		if (bw_stream_append(w, buf, 1 + i % 48) < 0 ||
		    bw_stream_flush(w) < 0) {
			a->errs++;
			break;
		}
	bw_stream_close(w);
	return NULL;
}

/* Four writers append and flush short records into a small vr ring while
 * a reader takes them: each record closes short of its reservation, often
 * with a later writer behind it. Every record arrives whole, unmixed, and
 * nothing breaks the ring. */
static void test_append_writers(void)
{
	struct appender a[4];
	pthread_barrier_t all_open;
	pthread_t t[4];
	struct bw_stream *r;
	uint8_t out[2048];
	unsigned n = 0;

	pthread_barrier_init(&all_open, NULL, 4);
	CU_ASSERT_EQUAL_FATAL(mk("rt", BW_LAYOUT_VR, 0, 1024, 0, 0), 0);
	for (int i = 0; i < 4; i++) {
		a[i] = (struct appender){.id = i, .all_open = &all_open};
		CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, append_thread,
						     &a[i]),
				      0);
	}
	/* a FIFO open: the writers wait for this reader, it for them */
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("rt", BW_READ, &r), 0);
	for (;;) {
		ssize_t x = bw_stream_read(r, out, sizeof(out));

		if (x <= 0) {
			CU_ASSERT_EQUAL(x, 0);
			break;
		}
		CU_ASSERT_FATAL(x <= 48);
		for (ssize_t i = 1; i < x; i++)
			CU_ASSERT_EQUAL_FATAL(out[i], out[0]);
		n++;
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CU_ASSERT_EQUAL(a[i].errs, 0);
	}
	CU_ASSERT_EQUAL(n, 4 * 20000);
	bw_stream_close(r);
	pthread_barrier_destroy(&all_open);
}

/* A poked record is published by block and select too, as any call on a
 * byte ring publishes a poke. */
static void test_poke_block(void)
{
	struct bw_stream *r, *w;
	uint8_t out[64];
	void *p;

	CU_ASSERT_EQUAL_FATAL(mk("rq", BW_LAYOUT_DR, 0, 0, 0, 0), 0);
	open2("rq", &r, &w);
	CU_ASSERT_EQUAL(bw_stream_poke(w, &p, 16), 16);
	rec_fill(p, 5, 16);
	CU_ASSERT_EQUAL(bw_stream_block(w, BW_POLLOUT, 0), BW_POLLOUT);
	CU_ASSERT_EQUAL(bw_stream_read(r, out, sizeof(out)), 16);
	CU_ASSERT(rec_ok(out, 5, 16));
	bw_stream_close(r);
	bw_stream_close(w);
}

static void reg(void)
{
	bwt_add("record boundaries through wraps", test_boundaries);
	bwt_add("append", test_append);
	bwt_add("EMSGSIZE and append on a byte ring", test_emsgsize);
	bwt_add("resync after overwrite", test_resync);
	bwt_add("a reader from the start of a wrapped ring", test_from_start);
	bwt_add("a lossless reader seeking back holds the writer",
		test_seek_back_lossless);
	bwt_add("readers from the start of a busy ring", test_from_start_busy);
	bwt_add("a writer closes behind an open record",
		test_close_behind_open_record);
	bwt_add("stamps across pad spans, seeks to overwritten records",
		test_stamps_and_pads);
	bwt_add("an append record dropped whole on srp",
		test_srp_append_dropped);
	bwt_add("alignment", test_alignment);
	bwt_add("refused combinations", test_refused);
	bwt_add("corrupted headers", test_corrupt_headers);
	bwt_add("several writers, pad spans", test_writers_and_pad);
	bwt_add("peek_acquire, poke, lseek", test_calls);
	bwt_add("reader in another process", test_other_process);
	bwt_add("four appending writers", test_append_writers);
	bwt_add("a poked record and block", test_poke_block);
}

int main(void)
{
	return bwt_main("record", reg);
}
