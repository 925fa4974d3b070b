/* SPDX-License-Identifier: MIT */
/*
 * Shadow buffers: each access method on each link (a ring on this host, and
 * rings exported over the tcp and shm providers), reading whole records and
 * headers only, with every delivered byte checked at its stream position.
 * Then the FRP cases: a writer overrunning a shadow while it reads, and a
 * shadow that falls a ring behind; NUMA placement on this machine's node;
 * the latency layer on and off; bad input; a server killed under a shadow.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#define TMO 5000u
#define REC 4096u
#define HDR 64u

static const char *link_name = "local"; /* "local", or a provider */
static pid_t server_pid = -1;
static int server_port;

static void mkring(const char *name, uint64_t size)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = size;
	bw_unlink(name);
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo(name, &o), 0);
}

static bool remote(void)
{
	return strcmp(link_name, "local") != 0;
}

static void server_up(void)
{
	if (remote() && server_pid < 0)
		server_pid = bwt_server_start(link_name, TMO, NULL, &server_port);
}

static void server_down(void)
{
	if (server_pid > 0) /* still running: no crash on bad input */
		CU_ASSERT_EQUAL(waitpid(server_pid, NULL, WNOHANG), 0);
	bwt_server_kill(&server_pid);
}

/* Where a shadow of NAME is opened on the current link. */
static const char *where(const char *name)
{
	static char u[128];

	if (!remote())
		return name;
	snprintf(u, sizeof(u), "127.0.0.1:%d/%s", server_port, name);
	return u;
}

static int sh_open(const char *name, int flags, struct bw_shadow_opts *o,
		   struct bw_shadow **out)
{
	struct bw_fabric_opts fo = BW_FABRIC_OPTS_INIT;
	int r;

	fo.provider = remote() ? link_name : NULL;
	fo.timeout_ms = TMO;
	o->fabric = &fo;
	server_up();
	r = bw_shadow_open(where(name), flags, o, out);
	o->fabric = NULL;
	if (r < 0)
		fprintf(stderr, "bw_shadow_open(%s): %s\n", where(name),
			bw_strerror_last());
	return r;
}

/* Tells a paced writer it may write another window (one that has written
 * everything and left needs none: EPIPE). */
static void token(int fd)
{
	ssize_t r = write(fd, "t", 1);

	CU_ASSERT(r == 1 || (r < 0 && errno == EPIPE));
}

/* Reads the stream through sh to its end: whole records (header_only
 * false) or the first HDR bytes of each record, checked at their stream
 * positions. A token goes to tokfd (if any) per `window` bytes passed.
 * Returns the bytes passed (read or skipped), or -1 on a wrong byte or an
 * error; sets *stale to the -ESTALE returns seen and *stale_pos to where
 * the last one left the shadow. */
static int64_t drain_records(struct bw_shadow *sh, bool header_only, int tokfd,
			     uint64_t window, uint32_t seed, unsigned *stale,
			     uint64_t *stale_pos)
{
	static uint8_t buf[REC];
	uint64_t next_tok = window;
	struct bw_shadow_stat st;

	*stale = 0;
	for (;;) {
		const void *p;
		ssize_t k;
		uint64_t pos;

		bw_shadow_stat(sh, &st);
		pos = st.position;
		if (tokfd >= 0 && pos >= next_tok) {
			token(tokfd);
			next_tok += window;
		}
		if (header_only && pos % REC == 0) {
			k = bw_shadow_peek_acquire(sh, &p, HDR);
			if (k > 0 && (k != HDR || bwt_verify(p, HDR, pos, seed) >= 0 ||
				      bw_shadow_peek_complete(sh, REC) < 0))
				return -1;
		} else {
			/* whole records, or the rest of one entered mid-way */
			k = bw_shadow_read(sh, buf, REC - pos % REC);
			if (k > 0 && bwt_verify(buf, (size_t)k, pos, seed) >= 0)
				return -1;
		}
		if (k == -ESTALE) {
			(*stale)++;
			bw_shadow_stat(sh, &st);
			*stale_pos = st.position;
		} else if (k == 0) {
			return (int64_t)pos;
		} else if (k < 0) {
			fprintf(stderr, "shadow: %s\n", bw_strerror_last());
			return -1;
		}
	}
}

/* A paced writer: nothing is overwritten before the shadow passed it, so
 * every byte must arrive, in order, intact. */
static void stream_all(unsigned method, bool header_only, uint32_t latency_us)
{
	const uint64_t total = 2u << 20, window = 128u << 10;
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow_stat st;
	struct bw_shadow *sh;
	unsigned stale;
	uint64_t spos = 0;
	int tok[2];
	pid_t w;
	int64_t got;

	mkring("sh_all", 512u << 10);
	o.method = method;
	o.record_size = REC;
	o.header_bytes = HDR;
	o.latency_us = latency_us;
	CU_ASSERT_EQUAL_FATAL(sh_open("sh_all", BW_FROM_START, &o, &sh), 0);
	CU_ASSERT_FATAL(pipe(tok) == 0);
	w = bwt_writer_child("sh_all", total, REC, 7, tok[0], window);
	close(tok[0]);
	got = drain_records(sh, header_only, tok[1], window, 7, &stale, &spos);
	close(tok[1]);
	CU_ASSERT_EQUAL(bwt_wait(w), 0);
	CU_ASSERT_EQUAL(got, (int64_t)total);
	CU_ASSERT_EQUAL(stale, 0);
	bw_shadow_stat(sh, &st);
	CU_ASSERT_EQUAL(st.lost, 0);
	CU_ASSERT_EQUAL(st.method, method);
	CU_ASSERT_EQUAL(st.latency_us, latency_us);
	CU_ASSERT(st.remote_ops > 0);
	CU_ASSERT_STRING_EQUAL(st.link, remote() ? link_name : "shm");
	if (header_only && method == BW_SHADOW_HYBRID) {
		/* the payloads were never moved: headers only */
		CU_ASSERT(st.fetched <= total / REC * HDR);
	}
	if (!header_only)
		CU_ASSERT_EQUAL(st.bytes, total);
	bw_shadow_close(sh);
	bw_unlink("sh_all");
}

/* An unpaced writer laps a small ring many times while the shadow reads:
 * whatever is delivered is right, and delivered + lost is everything. */
static void overrun(unsigned method)
{
	const uint64_t total = 16u << 20;
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow_stat st;
	struct bw_shadow *sh;
	unsigned stale;
	uint64_t spos = 0;
	pid_t w;
	int64_t got;

	mkring("sh_over", 64u << 10);
	o.method = method;
	o.record_size = REC;
	CU_ASSERT_EQUAL_FATAL(sh_open("sh_over", BW_FROM_START, &o, &sh), 0);
	w = bwt_writer_child("sh_over", total, REC, 9, -1, 0);
	got = drain_records(sh, false, -1, 0, 9, &stale, &spos);
	CU_ASSERT_EQUAL(bwt_wait(w), 0);
	CU_ASSERT_EQUAL(got, (int64_t)total);
	bw_shadow_stat(sh, &st);
	CU_ASSERT_EQUAL(st.bytes + st.lost, total);
	CU_ASSERT_EQUAL(st.lost == 0, stale == 0);
	bw_shadow_close(sh);
	bw_unlink("sh_over");
}

/* The shadow reads a little, the writer writes four rings more and leaves:
 * the shadow serves what it holds a valid copy of, then loses exactly the
 * bytes the origin overwrote, once, and reads the rest to the end. */
static void ring_behind(unsigned method)
{
	const uint64_t cap = 64u << 10, first = 32u << 10, total = first + 4 * cap;
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow_stat st;
	struct bw_shadow *sh;
	uint8_t buf[REC];
	unsigned stale;
	uint64_t spos = 0;
	int tok[2];
	pid_t w;
	int64_t got;

	mkring("sh_behind", cap);
	o.method = method;
	o.record_size = REC;
	o.window = 64u << 10;
	CU_ASSERT_EQUAL_FATAL(sh_open("sh_behind", BW_FROM_START, &o, &sh), 0);
	CU_ASSERT_FATAL(pipe(tok) == 0);
	w = bwt_writer_child("sh_behind", total, REC, 11, tok[0], first);
	close(tok[0]);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, buf, REC), REC);
	CU_ASSERT(bwt_verify(buf, REC, 0, 11) < 0);
	/* the writer runs to its end; every further window needs a token */
	for (unsigned i = 0; i < total / first; i++)
		token(tok[1]);
	close(tok[1]);
	CU_ASSERT_EQUAL(bwt_wait(w), 0);
	got = drain_records(sh, false, -1, 0, 11, &stale, &spos);
	CU_ASSERT_EQUAL(got, (int64_t)total);
	CU_ASSERT_EQUAL(stale, 1);
	bw_shadow_stat(sh, &st);
	CU_ASSERT_EQUAL(st.bytes + st.lost, total);
	/* the loss ends at the oldest byte the origin holds, and what the
	 * shadow held valid copies of before the lap was not lost */
	CU_ASSERT_EQUAL(spos, total - cap);
	CU_ASSERT(st.bytes >= cap + REC);
	bw_shadow_close(sh);
	bw_unlink("sh_behind");
}

/* ---- record rings (fr, vr): whole records, as from a local reader ---- */

/* Record i: its length, 8 to max bytes; it starts with i, then bytes of
 * stream `seed` at position i << 20. */
static size_t rl_len(uint64_t i, size_t max)
{
	return 8 + (size_t)((i * 7919) % (max - 7));
}

static void rl_fill(uint8_t *b, uint64_t i, size_t max)
{
	size_t n = rl_len(i, max);

	memcpy(b, &i, 8);
	bwt_fill(b + 8, n - 8, i << 20, 61);
}

/* Whether b (n bytes) is record i. */
static bool rl_is(const uint8_t *b, size_t n, uint64_t i, size_t max)
{
	uint64_t j;

	memcpy(&j, b, 8);
	return j == i && n == rl_len(i, max) &&
	       bwt_verify(b + 8, n - 8, i << 20, 61) == -1;
}

/* Writes records from..to-1 (of up to max bytes) with w. */
static void rl_write(struct bw_stream *w, uint64_t from, uint64_t to, size_t max)
{
	static uint8_t b[8192];

	for (uint64_t i = from; i < to; i++) {
		rl_fill(b, i, max);
		CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, b, rl_len(i, max)),
				      (ssize_t)rl_len(i, max));
	}
}

/* A ring of layout with records 0..n-1 written; its writer stays open
 * in *keep (if given). */
static void rl_ring(const char *name, uint32_t layout, uint32_t rec_size,
		    uint32_t policy, uint64_t size, uint64_t n, size_t max,
		    struct bw_stream **keep)
{
	struct bw_ring_opts ro = BW_RING_OPTS_INIT;
	struct bw_stream *w;

	ro.size = size;
	ro.layout = layout;
	ro.record_size = rec_size;
	ro.policy = policy;
	bw_unlink(name);
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo(name, &ro), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_WRITE | BW_NOWAIT, &w), 0);
	rl_write(w, 0, n, max);
	if (keep)
		*keep = w;
	else
		bw_stream_close(w);
}

/* Reads records through sh to the end of the stream, by read, peek and
 * peek_acquire in turn; checks each, in increasing order from `first`
 * (consecutive unless lossy). Returns the count (*last: the last record's
 * index), or -1. */
static int64_t rl_drain(struct bw_shadow *sh, uint64_t first, size_t max,
			bool lossy, uint64_t *last)
{
	static uint8_t b[8192];
	uint64_t next = first, got = 0;

	for (uint64_t k = 0;; k++) {
		const void *p = b;
		ssize_t n;
		uint64_t i;

		if (k % 3 == 0)
			n = bw_shadow_read(sh, b, sizeof(b));
		else if (k % 3 == 1)
			n = bw_shadow_peek(sh, &p, sizeof(b));
		else
			n = bw_shadow_peek_acquire(sh, &p, sizeof(b));
		if (n == -ESTALE && lossy)
			continue;
		if (n == -EAGAIN) { /* a shadow opened BW_NONBLOCK */
			if (bw_shadow_block(sh, 5000) <= 0)
				return -1;
			continue;
		}
		if (n == 0)
			return *last = next - 1, (int64_t)got;
		if (n < 8) {
			fprintf(stderr, "record %llu: %zd (%s)\n",
				(unsigned long long)next, n, bw_strerror_last());
			return -1;
		}
		memcpy(&i, p, 8);
		if (i < next || (!lossy && i != next) ||
		    !rl_is(p, (size_t)n, i, max)) {
			fprintf(stderr, "record %llu: got %zd bytes of record "
					"%llu\n",
				(unsigned long long)next, n, (unsigned long long)i);
			return -1;
		}
		if (k % 3 == 2 &&
		    (bw_shadow_peek_complete(sh, (size_t)n - 1) != -EINVAL ||
		     bw_shadow_peek_complete(sh, (size_t)n) != 0))
			return -1;
		next = i + 1;
		got++;
	}
}

/* Header-only access (BW_SHADOW_HEADERS) to n records of up to max bytes
 * from the oldest: the first 16 bytes of each (all of a shorter one), by
 * peek_acquire and complete, and by peek, in turn; the rest is skipped.
 * Returns the bytes fetched from the origin, or -1. */
static int64_t rl_heads(const char *name, unsigned method, uint64_t n,
			size_t max)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow_stat st;
	struct bw_shadow *sh;
	uint64_t given = 0;

	o.method = method;
	o.header_bytes = 32;
	if (sh_open(name, BW_FROM_START | BW_SHADOW_HEADERS, &o, &sh) < 0)
		return -1;
	for (uint64_t i = 0; i < n; i++) {
		size_t want = rl_len(i, max) < 16 ? rl_len(i, max) : 16;
		const void *p;
		ssize_t k = i % 2 ? bw_shadow_peek(sh, &p, 16)
				  : bw_shadow_peek_acquire(sh, &p, 16);
		uint64_t j;

		if (k != (ssize_t)want) {
			fprintf(stderr, "record %llu: %zd (%s)\n",
				(unsigned long long)i, k, bw_strerror_last());
			break;
		}
		memcpy(&j, p, 8);
		if (j != i || bwt_verify((const uint8_t *)p + 8, want - 8, i << 20,
					 61) != -1)
			break;
		if (i % 2 == 0 && bw_shadow_peek_complete(sh, (size_t)k) != 0)
			break;
		given += (uint64_t)k;
		if (i + 1 == n) {
			const void *q;

			CU_ASSERT_EQUAL(bw_shadow_stat(sh, &st), 0);
			CU_ASSERT_EQUAL(st.bytes, given); /* what it gave */
			CU_ASSERT_EQUAL(bw_shadow_peek(sh, &q, 16), 0); /* the end */
			bw_shadow_close(sh);
			if (getenv("BWT_VERBOSE"))
				fprintf(stderr, "%s heads: %llu bytes fetched, "
						"%llu operations\n",
					name, (unsigned long long)st.fetched,
					(unsigned long long)st.remote_ops);
			return (int64_t)st.fetched;
		}
	}
	bw_shadow_close(sh);
	return -1;
}

/* Every record of a vr and an fr ring, whole and in order, from the
 * oldest; a short buffer gets EMSGSIZE and the record stays. Then their
 * headers alone: hybrid fetches a small part of the records. */
static void records(unsigned method)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow *sh;
	static uint8_t b[8];
	uint64_t last;
	int64_t heads;

	o.method = method;
	/* vr: records of 8 bytes to 3000, most of the ring */
	rl_ring("sh_rv", BW_LAYOUT_VR, 3000, 0, 256u << 10, 160, 3000, NULL);
	CU_ASSERT_EQUAL_FATAL(sh_open("sh_rv", BW_FROM_START, &o, &sh), 0);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, b, 4), -EMSGSIZE);
	CU_ASSERT_EQUAL(rl_drain(sh, 0, 3000, false, &last), 160);
	bw_shadow_close(sh);
	heads = rl_heads("sh_rv", method, 160, 3000);
	CU_ASSERT(heads >= 0);
	if (method == BW_SHADOW_HYBRID && remote())
		CU_ASSERT(heads < (int64_t)(160 * 3000 / 2 / 8));
	bw_unlink("sh_rv");
	/* fr: slots of 1024 (payload up to 1016) */
	rl_ring("sh_rf", BW_LAYOUT_FR, 1024, 0, 256u << 10, 200, 1016, NULL);
	CU_ASSERT_EQUAL_FATAL(sh_open("sh_rf", BW_FROM_START, &o, &sh), 0);
	CU_ASSERT_EQUAL(rl_drain(sh, 0, 1016, false, &last), 200);
	bw_shadow_close(sh);
	heads = rl_heads("sh_rf", method, 200, 1016);
	CU_ASSERT(heads >= 0);
	if (method == BW_SHADOW_HYBRID && remote())
		CU_ASSERT(heads < (int64_t)(200 * 1016 / 2 / 8));
	bw_unlink("sh_rf");
}

/* An frp ring overwritten many times: a shadow from the oldest byte starts
 * mid-record. fr resynchronizes at the next slot; vr steps to the first
 * whole record, the one a local reader from the start finds too (it used
 * to skip to the write position, losing every record the ring held). The
 * bytes skipped count as lost; then whole records, in order, to the last
 * one written after. */
static void records_overwritten(unsigned method)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow_stat st;
	struct bw_shadow *sh;
	struct bw_stream *w;
	static uint8_t b[8192];
	uint64_t last = 0;

	o.method = method;
	for (int l = 0; l < 2; l++) {
		const char *name = l ? "sh_ofr" : "sh_ovr";
		size_t max = l ? 1016 : 3000;
		uint64_t first = 1;
		int64_t got;

		rl_ring(name, l ? BW_LAYOUT_FR : BW_LAYOUT_VR, l ? 1024 : 3000,
			BW_POLICY_FRP, 64u << 10, 2000, max, &w);
		CU_ASSERT_EQUAL_FATAL(sh_open(name, BW_FROM_START | BW_NONBLOCK,
					      &o, &sh),
				      0);
		if (l == 0) {
			struct bw_stream *lr;
			ssize_t x;

			CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_READ |
								   BW_FROM_START |
								   BW_NONBLOCK |
								   BW_NOWAIT,
							     &lr),
					      0);
			x = bw_stream_read(lr, b, sizeof(b));
			CU_ASSERT_FATAL(x >= 8);
			memcpy(&first, b, 8);
			CU_ASSERT_FATAL(first > 1000 && first < 2000);
			bw_stream_close(lr);
			/* the shadow reads them all, from that one on, before
			 * the writer goes on */
			for (uint64_t i = first, tries = 0; i < 2000;) {
				x = bw_shadow_read(sh, b, sizeof(b));
				if (x == -EAGAIN && tries++ < 100) {
					bw_shadow_block(sh, 100);
					continue;
				}
				CU_ASSERT_FATAL(x >= 8 && rl_is(b, (size_t)x, i, max));
				i++;
			}
			first = 2000;
		}
		rl_write(w, 2000, 2020, max); /* under half the ring */
		bw_stream_close(w);
		got = rl_drain(sh, first, max, l == 1, &last);
		CU_ASSERT(l ? got >= 20 : got == 20);
		CU_ASSERT_EQUAL(last, 2019);
		bw_shadow_stat(sh, &st);
		CU_ASSERT(st.lost > 0);
		bw_shadow_close(sh);
		bw_unlink(name);
	}
}

#define METHODS(X)                                                           \
	X(zerocopy, BW_SHADOW_ZEROCOPY)                                       \
	X(copyonce, BW_SHADOW_COPYONCE)                                       \
	X(hybrid, BW_SHADOW_HYBRID)                                           \
	X(prefetch, BW_SHADOW_PREFETCH)
#define CASES(name, m)                                                       \
	static void full_##name(void) { stream_all(m, false, 0); }            \
	static void header_##name(void) { stream_all(m, true, 0); }           \
	static void latency_##name(void) { stream_all(m, false, 200); }       \
	static void overrun_##name(void) { overrun(m); }                      \
	static void behind_##name(void) { ring_behind(m); }                  \
	static void records_##name(void) { records(m); }                      \
	static void rewritten_##name(void) { records_overwritten(m); }
METHODS(CASES)

/* ---- this host only ------------------------------------------------------ */

/* One node here: the replica lands on it, the origin is on it, and the
 * default for a ring in the reader's own node is zero-copy. */
static void numa_one_node(void)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow_stat st;
	struct bw_shadow *sh;
	struct bw_stream *w;
	uint8_t buf[REC];
	const void *p;
	int node = -1;

	if (numa_available() < 0) {
		bwt_skip("no NUMA support in this kernel: cannot place replicas");
		return;
	}
	mkring("sh_numa", 256u << 10);
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_numa", 0, &o, &sh), 0);
	bw_shadow_stat(sh, &st);
	CU_ASSERT_EQUAL(st.method, BW_SHADOW_ZEROCOPY);
	CU_ASSERT_EQUAL(st.origin_node, 0);
	CU_ASSERT_EQUAL(st.replica_bytes, 0); /* in place: no replica */
	bw_shadow_close(sh);

	o.method = BW_SHADOW_COPYONCE;
	o.numa_node = 0;
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_numa", BW_SHADOW_NODE, &o, &sh), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sh_numa", BW_WRITE | BW_NOWAIT, &w), 0);
	bwt_fill(buf, REC, 0, 3);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, REC), REC);
	CU_ASSERT_EQUAL(bw_shadow_peek(sh, &p, REC), REC);
	CU_ASSERT(bwt_verify(p, REC, 0, 3) < 0);
	/* the replica's page is on node 0 */
	CU_ASSERT_EQUAL(get_mempolicy(&node, NULL, 0, (void *)p,
				      MPOL_F_NODE | MPOL_F_ADDR), 0);
	CU_ASSERT_EQUAL(node, 0);
	bw_shadow_stat(sh, &st);
	CU_ASSERT_EQUAL(st.node, 0);
	CU_ASSERT_EQUAL(st.replica_bytes, 256u << 10);
	bw_shadow_close(sh);

	/* replicas by default: copy-once's at most 4 MiB, prefetch's at most
	 * 16 MiB (room to hide latency), neither more than the ring */
	mkring("sh_big", 32u << 20);
	for (unsigned m = BW_SHADOW_COPYONCE; m <= BW_SHADOW_PREFETCH; m += 2) {
		struct bw_shadow_opts d = BW_SHADOW_OPTS_INIT;

		d.method = m;
		CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_big", 0, &d, &sh), 0);
		bw_shadow_stat(sh, &st);
		CU_ASSERT_EQUAL(st.replica_bytes, m == BW_SHADOW_PREFETCH
							  ? 16u << 20
							  : 4u << 20);
		bw_shadow_close(sh);
	}
	bw_unlink("sh_big");

	/* a node that is not there */
	o.numa_node = 7;
	CU_ASSERT_EQUAL(bw_shadow_open("sh_numa", BW_SHADOW_NODE, &o, &sh), -EINVAL);
	/* header-only readers default to hybrid */
	o.method = 0;
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_numa", BW_SHADOW_HEADERS, &o, &sh), 0);
	bw_shadow_stat(sh, &st);
	CU_ASSERT_EQUAL(st.method, BW_SHADOW_HYBRID);
	bw_shadow_close(sh);
	bw_stream_close(w);
	bw_unlink("sh_numa");
}

/* Bytes used in place are checked after use; an overwrite is seen. */
static void inplace_check(void)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow *sh;
	struct bw_stream *w;
	uint8_t buf[REC];
	const void *p;
	int64_t stamp;

	mkring("sh_check", 16u << 10);
	o.method = BW_SHADOW_ZEROCOPY;
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_check", 0, &o, &sh), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sh_check", BW_WRITE | BW_NOWAIT, &w), 0);
	bwt_fill(buf, REC, 0, 5);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, REC), REC);
	stamp = bw_shadow_check(sh, -1);
	CU_ASSERT_EQUAL(stamp, 0);
	CU_ASSERT_EQUAL(bw_shadow_peek(sh, &p, REC), REC);
	CU_ASSERT(bwt_verify(p, REC, 0, 5) < 0);
	CU_ASSERT_EQUAL(bw_shadow_check(sh, stamp), REC);
	/* the writer laps the ring: the peeked bytes are gone */
	for (unsigned i = 0; i < 5; i++)
		CU_ASSERT_EQUAL(bw_stream_write(w, buf, REC), REC);
	CU_ASSERT_EQUAL(bw_shadow_check(sh, stamp), -ESTALE);
	CU_ASSERT_EQUAL(bw_shadow_check(sh, 1 << 20), -EINVAL);
	bw_shadow_close(sh);
	bw_stream_close(w);
	bw_unlink("sh_check");
}

/* The latency layer delays every operation: a zero-copy call makes two
 * (data, then positions), one after the other, so it takes at least two
 * latencies. A lower bound only: a slow machine cannot fail it. */
static void latency_layer(void)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow_stat st;
	struct bw_shadow *sh;
	struct bw_stream *w;
	uint8_t buf[REC];
	struct timespec a, b;
	uint64_t ops0, ns;

	mkring("sh_lat", 64u << 10);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sh_lat", BW_WRITE | BW_NOWAIT, &w), 0);
	o.method = BW_SHADOW_ZEROCOPY;
	o.latency_us = 3000;
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_lat", 0, &o, &sh), 0);
	bwt_fill(buf, REC, 0, 1);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, REC), REC);
	bw_shadow_stat(sh, &st);
	ops0 = st.remote_ops;
	clock_gettime(CLOCK_MONOTONIC, &a);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, buf, REC), REC);
	clock_gettime(CLOCK_MONOTONIC, &b);
	CU_ASSERT(bwt_verify(buf, REC, 0, 1) < 0);
	bw_shadow_stat(sh, &st);
	ns = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)b.tv_nsec -
	     (uint64_t)a.tv_nsec;
	CU_ASSERT(st.remote_ops - ops0 >= 2);
	CU_ASSERT(ns >= (st.remote_ops - ops0) * 3000000u);
	CU_ASSERT_EQUAL(st.latency_us, 3000);
	bw_shadow_close(sh);

	/* off: not in the path, and the environment sets it */
	o.latency_us = 0;
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_lat", 0, &o, &sh), 0);
	bw_shadow_stat(sh, &st);
	CU_ASSERT_EQUAL(st.latency_us, 0);
	bw_shadow_close(sh);
	setenv("BELTWAY_LATENCY_US", "250", 1);
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_lat", 0, &o, &sh), 0);
	bw_shadow_stat(sh, &st);
	CU_ASSERT_EQUAL(st.latency_us, 250);
	bw_shadow_close(sh);
	setenv("BELTWAY_LATENCY_US", "12x", 1);
	CU_ASSERT_EQUAL(bw_shadow_open("sh_lat", 0, &o, &sh), -EINVAL);
	unsetenv("BELTWAY_LATENCY_US");
	bw_stream_close(w);
	bw_unlink("sh_lat");
}

static void bad_input(void)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_ring_opts ro = BW_RING_OPTS_INIT;
	struct bw_shadow *sh;
	const void *p;

	mkring("sh_bad", 64u << 10);
	CU_ASSERT_EQUAL(bw_shadow_open("sh_nope", 0, &o, &sh), -ENOENT);
	CU_ASSERT_EQUAL(bw_shadow_open("sh_bad", 1 << 20, &o, &sh), -EINVAL);
	CU_ASSERT_EQUAL(bw_shadow_open(NULL, 0, &o, &sh), -EINVAL);
	o.method = 9;
	CU_ASSERT_EQUAL(bw_shadow_open("sh_bad", 0, &o, &sh), -EINVAL);
	o.method = 0;
	o.replica_bytes = 3000;
	CU_ASSERT_EQUAL(bw_shadow_open("sh_bad", 0, &o, &sh), -EINVAL);
	o.replica_bytes = 0;
	o.depth = 99;
	CU_ASSERT_EQUAL(bw_shadow_open("sh_bad", 0, &o, &sh), -EINVAL);
	o.depth = 0;
	o.header_bytes = 128;
	o.record_size = 64;
	CU_ASSERT_EQUAL(bw_shadow_open("sh_bad", 0, &o, &sh), -EINVAL);
	o.header_bytes = 0;
	o.record_size = 1u << 20; /* larger than the ring */
	CU_ASSERT_EQUAL(bw_shadow_open("sh_bad", 0, &o, &sh), -EINVAL);
	o.record_size = 0;
	o.struct_size = 8;
	CU_ASSERT_EQUAL(bw_shadow_open("sh_bad", 0, &o, &sh), -EINVAL);
	o.struct_size = sizeof(o);
	CU_ASSERT_EQUAL(bw_shadow_method_parse("teleport"), -EINVAL);
	CU_ASSERT_EQUAL(bw_shadow_method_parse("copy-once"), BW_SHADOW_COPYONCE);
	CU_ASSERT_EQUAL(bw_shadow_method_parse("zerocopy"), BW_SHADOW_ZEROCOPY);
	CU_ASSERT_STRING_EQUAL(bw_shadow_method_name(BW_SHADOW_PREFETCH), "prefetch");
	CU_ASSERT_PTR_NULL(bw_shadow_method_name(0));
	/* a dr ring's headers lie outside its data */
	ro.size = 64u << 10;
	ro.layout = BW_LAYOUT_DR;
	bw_unlink("sh_dr");
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("sh_dr", &ro), 0);
	CU_ASSERT_EQUAL(bw_shadow_open("sh_dr", 0, &o, &sh), -ENOTSUP);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "dr record"));
	bw_unlink("sh_dr");
	/* calls on an empty shadow */
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_bad", BW_NONBLOCK, &o, &sh), 0);
	CU_ASSERT_EQUAL(bw_shadow_peek(sh, &p, 16), -EAGAIN);
	CU_ASSERT_EQUAL(bw_shadow_peek_complete(sh, 16), -EINVAL);
	CU_ASSERT_EQUAL(bw_shadow_block(sh, 0), 0);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, NULL, 4), -EINVAL);
	bw_shadow_close(sh);
	bw_unlink("sh_bad");
}

/* The descriptor reports readable; block sees data and the end. */
static void fd_and_block(void)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow *sh;
	struct bw_stream *w;
	uint8_t buf[64];
	struct pollfd pf;

	mkring("sh_fd", 64u << 10);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sh_fd", BW_WRITE | BW_NOWAIT, &w), 0);
	o.method = BW_SHADOW_PREFETCH;
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_fd", BW_NONBLOCK, &o, &sh), 0);
	pf.fd = bw_shadow_fd(sh);
	pf.events = POLLIN;
	CU_ASSERT_FATAL(pf.fd >= 0);
	CU_ASSERT_EQUAL(bw_shadow_fd(sh), pf.fd);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, buf, 64), -EAGAIN);
	bwt_fill(buf, 64, 0, 2);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 64), 64);
	CU_ASSERT_EQUAL(poll(&pf, 1, 5000), 1);
	CU_ASSERT_EQUAL(bw_shadow_block(sh, 5000), BW_POLLIN);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, buf, 64), 64);
	CU_ASSERT(bwt_verify(buf, 64, 0, 2) < 0);
	bw_stream_close(w);
	CU_ASSERT_EQUAL(bw_shadow_block(sh, 5000), BW_POLLIN | BW_POLLHUP);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, buf, 64), 0);
	bw_shadow_close(sh);
	bw_unlink("sh_fd");
}

/* The server dies under a reading shadow: a clear error, not a hang. */
static void server_killed(void)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow *sh;
	struct bw_stream *w;
	uint8_t buf[REC];
	ssize_t r;

	mkring("sh_kill", 64u << 10);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sh_kill", BW_WRITE | BW_NOWAIT, &w), 0);
	o.method = BW_SHADOW_PREFETCH;
	CU_ASSERT_EQUAL_FATAL(sh_open("sh_kill", 0, &o, &sh), 0);
	bwt_fill(buf, REC, 0, 4);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, REC), REC);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, buf, REC), REC);
	bwt_server_kill(&server_pid);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, REC), REC);
	r = bw_shadow_read(sh, buf, REC);
	CU_ASSERT(r == -ECONNRESET || r == -ETIMEDOUT);
	bw_shadow_close(sh);
	bw_stream_close(w);
	bw_unlink("sh_kill");
}

/* The stream API over a shadow: an application reads a ring on another
 * host (or node) with the calls it uses for a local one. */
static void as_stream(void)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_stream *w, *s;
	struct bw_stream_stat st;
	struct bw_pollitem it;
	uint8_t buf[REC];
	const void *p;
	struct pollfd pf;
	int64_t stamp;

	mkring("sh_stream", 64u << 10);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sh_stream", BW_WRITE | BW_NOWAIT, &w), 0);
	bwt_fill(buf, REC, 0, 8);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, REC), REC);
	server_up();
	if (remote()) {
		/* bw_stream_open takes HOST:PORT/NAME, with the provider from
		 * the environment */
		setenv("BELTWAY_PROVIDER", link_name, 1);
		CU_ASSERT_EQUAL_FATAL(bw_stream_open(where("sh_stream"), BW_READ |
						     BW_FROM_START | BW_NOWAIT, &s), 0);
		unsetenv("BELTWAY_PROVIDER");
	} else {
		o.method = BW_SHADOW_COPYONCE;
		CU_ASSERT_EQUAL_FATAL(bw_shadow_stream("sh_stream", BW_READ |
						       BW_FROM_START, &o, &s), 0);
	}
	CU_ASSERT_EQUAL(bw_stream_read(s, buf, 100), 100);
	CU_ASSERT(bwt_verify(buf, 100, 0, 8) < 0);
	stamp = bw_stream_check(s, -1, BW_CHECK_READ);
	CU_ASSERT_EQUAL(stamp, 100);
	CU_ASSERT_EQUAL(bw_stream_peek_acquire(s, &p, 100), 100);
	CU_ASSERT(bwt_verify(p, 100, 100, 8) < 0);
	CU_ASSERT_EQUAL(bw_stream_peek_complete(s, 100), 0);
	CU_ASSERT_EQUAL(bw_stream_peek(s, &p, REC), REC - 200);
	CU_ASSERT(bwt_verify(p, REC - 200, 200, 8) < 0);
	CU_ASSERT(bw_stream_check(s, stamp, BW_CHECK_READ) == REC);
	/* empty now: non-blocking says so, block and select wait for data */
	CU_ASSERT_EQUAL(bw_stream_set_nonblock(s, 1), 0);
	CU_ASSERT_EQUAL(bw_stream_read(s, buf, 16), -EAGAIN);
	CU_ASSERT_EQUAL(bw_stream_block(s, BW_POLLIN, 0), 0);
	pf.fd = bw_stream_fd(s);
	pf.events = POLLIN;
	CU_ASSERT(pf.fd >= 0);
	bwt_fill(buf, REC, REC, 8);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, REC), REC);
	/* the descriptor is the shadow's (it is polled: a timer), not a
	 * doorbell nobody rings */
	CU_ASSERT_EQUAL(poll(&pf, 1, 5000), 1);
	it.s = s;
	it.events = BW_POLLIN;
	CU_ASSERT_EQUAL(bw_stream_select(&it, 1, 5000), 1);
	CU_ASSERT(it.revents & BW_POLLIN);
	CU_ASSERT_EQUAL(bw_stream_read(s, buf, REC), REC);
	CU_ASSERT(bwt_verify(buf, REC, REC, 8) < 0);
	CU_ASSERT_EQUAL(bw_stream_stat(s, &st), 0);
	CU_ASSERT_EQUAL(st.capacity, 64u << 10);
	CU_ASSERT_EQUAL(st.read_pos, 2 * REC);
	CU_ASSERT_EQUAL(st.bytes, 2 * REC);
	CU_ASSERT_EQUAL(st.lost, 0);
	/* a reader only */
	CU_ASSERT_EQUAL(bw_stream_write(s, buf, 16), -ENOSYS);
	CU_ASSERT_EQUAL(bw_stream_check(s, -1, BW_CHECK_WRITE), -EINVAL);
	/* the end: the writer leaves */
	bw_stream_close(w);
	CU_ASSERT_EQUAL(bw_stream_set_nonblock(s, 0), 0);
	CU_ASSERT(bw_stream_block(s, BW_POLLIN, 5000) & BW_POLLIN);
	CU_ASSERT_EQUAL(bw_stream_read(s, buf, 16), 0);
	CU_ASSERT_EQUAL(bw_stream_close(s), 0);
	/* writers are refused */
	CU_ASSERT_EQUAL(bw_shadow_stream("sh_stream", BW_WRITE, NULL, &s), -EINVAL);
	bw_unlink("sh_stream");
}

/* $BELTWAY_SHADOW picks the method where the application does not. */
static void env_method(void)
{
	struct bw_shadow_stat st;
	struct bw_shadow *sh;

	mkring("sh_env", 64u << 10);
	setenv("BELTWAY_SHADOW", "hybrid", 1);
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_env", 0, NULL, &sh), 0);
	bw_shadow_stat(sh, &st);
	CU_ASSERT_EQUAL(st.method, BW_SHADOW_HYBRID);
	bw_shadow_close(sh);
	setenv("BELTWAY_SHADOW", "warp", 1);
	CU_ASSERT_EQUAL(bw_shadow_open("sh_env", 0, NULL, &sh), -EINVAL);
	unsetenv("BELTWAY_SHADOW");
	bw_unlink("sh_env");
}

/* A bw_fork() child cannot use its parent's shadow stream. */
static void forked(void)
{
	struct bw_stream *s;
	uint8_t b[8];
	pid_t pid;

	mkring("sh_fork", 64u << 10);
	CU_ASSERT_EQUAL_FATAL(bw_shadow_stream("sh_fork", BW_READ | BW_NONBLOCK,
					       NULL, &s), 0);
	pid = bw_fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0)
		_exit(bw_stream_read(s, b, sizeof(b)) == -EINVAL &&
		      bw_stream_close(s) == 0 ? 0 : 1);
	CU_ASSERT_EQUAL(bwt_wait(pid), 0);
	CU_ASSERT_EQUAL(bw_stream_read(s, b, sizeof(b)), -EAGAIN);
	bw_stream_close(s);
	bw_unlink("sh_fork");
}

/* NAME with "first", a span of `span` bytes a stalled writer (w1) never
 * publishes, then "later" (by w2); a local reader (r) waited past the
 * writer timeout, so the span is padded. */
static void pad_ring(const char *name, uint32_t layout, size_t span,
		     struct bw_stream **r, struct bw_stream **w1,
		     struct bw_stream **w2)
{
	struct bw_ring_opts ro = BW_RING_OPTS_INIT;
	char buf[100];
	void *p;

	ro.size = 64u << 10;
	ro.writer_timeout_ms = 100;
	ro.layout = layout;
	ro.record_size = layout ? 1000 : 0;
	bw_unlink(name);
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo(name, &ro), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_READ | BW_NOWAIT, r), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_WRITE, w1), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_WRITE, w2), 0);
	CU_ASSERT_EQUAL(bw_stream_write(*w2, "first", 5), 5);
	CU_ASSERT_EQUAL(bw_stream_poke_acquire(*w1, &p, span), (ssize_t)span);
	memset(p, 'x', span); /* never published */
	CU_ASSERT_EQUAL(bw_stream_write(*w2, "later", 5), 5);
	CU_ASSERT_EQUAL(bw_stream_read(*r, buf, sizeof(buf)), 5);
	CU_ASSERT(bw_stream_block(*r, BW_POLLIN, 5000) & BW_POLLIN);
	CU_ASSERT_EQUAL(bw_stream_read(*r, buf, sizeof(buf)), 5);
	CU_ASSERT(memcmp(buf, "later", 5) == 0);
}

static void pad_ring_close(const char *name, struct bw_stream *r,
			   struct bw_stream *w1, struct bw_stream *w2)
{
	bw_stream_close(w1);
	bw_stream_close(w2);
	bw_stream_close(r);
	bw_unlink(name);
}

/* A writer that stalls inside a reservation on a ring with a writer
 * timeout: its span is padded. Shadows skip it as readers do, over every
 * link (over the fabric, through the exported padding table). */
static void padding(void)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow_stat st;
	struct bw_stream *r, *w1, *w2;
	struct bw_shadow *sh;
	char buf[100];

	pad_ring("sh_pad", 0, 30, &r, &w1, &w2);
	for (unsigned m = BW_SHADOW_ZEROCOPY; m <= BW_SHADOW_PREFETCH; m++) {
		ssize_t a, b;

		o.method = m;
		CU_ASSERT_EQUAL_FATAL(sh_open("sh_pad", BW_FROM_START, &o, &sh), 0);
		a = bw_shadow_read(sh, buf, sizeof(buf));
		CU_ASSERT_EQUAL(a, 5);
		b = bw_shadow_read(sh, buf + 5, sizeof(buf) - 5);
		CU_ASSERT_EQUAL(b, 5);
		CU_ASSERT(memcmp(buf, "firstlater", 10) == 0);
		bw_shadow_stat(sh, &st);
		CU_ASSERT_EQUAL(st.padded, 30);
		CU_ASSERT_EQUAL(st.lost, 0);
		bw_shadow_close(sh);
	}
	if (remote()) {
		/* the fabric's own pull reader skips it too */
		struct bw_fabric_opts fo = BW_FABRIC_OPTS_INIT;
		struct bw_remote_stat rs;
		struct bw_remote *rm;
		size_t got = 0;

		fo.provider = link_name;
		fo.timeout_ms = TMO;
		CU_ASSERT_EQUAL_FATAL(bw_remote_open(where("sh_pad"), BW_READ |
						     BW_FROM_START | BW_NONBLOCK,
						     &fo, &rm), 0);
		for (ssize_t k; got < sizeof(buf) &&
				(k = bw_remote_read(rm, buf + got,
						    sizeof(buf) - got)) > 0;)
			got += (size_t)k;
		CU_ASSERT_EQUAL(got, 10);
		CU_ASSERT(memcmp(buf, "firstlater", 10) == 0);
		bw_remote_stat(rm, &rs);
		CU_ASSERT_EQUAL(rs.padded, 30);
		bw_remote_close(rm);
	}
	pad_ring_close("sh_pad", r, w1, w2);
}

/* A record ring with a dead writer's padding between records: every
 * method skips it and finds the next record's header. */
static void records_padded(void)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow_stat st;
	struct bw_stream *r, *w1, *w2;
	struct bw_shadow *sh;
	char buf[100];

	pad_ring("sh_rpad", BW_LAYOUT_VR, 300, &r, &w1, &w2);
	for (unsigned m = BW_SHADOW_ZEROCOPY; m <= BW_SHADOW_PREFETCH; m++) {
		o.method = m;
		CU_ASSERT_EQUAL_FATAL(sh_open("sh_rpad", BW_FROM_START, &o, &sh), 0);
		CU_ASSERT_EQUAL(bw_shadow_read(sh, buf, sizeof(buf)), 5);
		CU_ASSERT(memcmp(buf, "first", 5) == 0);
		CU_ASSERT_EQUAL(bw_shadow_read(sh, buf, sizeof(buf)), 5);
		CU_ASSERT(memcmp(buf, "later", 5) == 0);
		bw_shadow_stat(sh, &st);
		CU_ASSERT(st.padded > 0);
		CU_ASSERT_EQUAL(st.lost, 0);
		bw_shadow_close(sh);
	}
	pad_ring_close("sh_rpad", r, w1, w2);
}

/* Records larger than the replica are served from a copy: acquiring one
 * twice, completing none of it and then reading it all give that record. */
static void records_copied(void)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow *sh;
	static uint8_t b[12000];
	const void *p, *q;
	uint64_t last;

	o.method = BW_SHADOW_COPYONCE;
	o.replica_bytes = 4096;
	rl_ring("sh_rc", BW_LAYOUT_VR, 10000, 0, 256u << 10, 6, 8000, NULL);
	CU_ASSERT_EQUAL_FATAL(sh_open("sh_rc", BW_FROM_START, &o, &sh), 0);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, b, sizeof(b)), (ssize_t)rl_len(0, 8000));
	CU_ASSERT_EQUAL(bw_shadow_peek_acquire(sh, &p, sizeof(b)),
			(ssize_t)rl_len(1, 8000));
	CU_ASSERT(rl_is(p, rl_len(1, 8000), 1, 8000));
	CU_ASSERT_EQUAL(bw_shadow_peek_acquire(sh, &q, sizeof(b)),
			(ssize_t)rl_len(1, 8000));
	CU_ASSERT(rl_is(q, rl_len(1, 8000), 1, 8000));
	CU_ASSERT_EQUAL(bw_shadow_peek_complete(sh, 0), 0);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, b, sizeof(b)), (ssize_t)rl_len(1, 8000));
	CU_ASSERT(rl_is(b, rl_len(1, 8000), 1, 8000));
	CU_ASSERT_EQUAL(rl_drain(sh, 2, 8000, false, &last), 4);
	bw_shadow_close(sh);
	bw_unlink("sh_rc");
}

/* An IBuf's bytes are indices into rings on its host: refused. */
static void ibuf_refused(void)
{
	struct bw_ring_opts ro = BW_RING_OPTS_INIT;
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow *sh;

	ro.size = 64u << 10;
	ro.flags = BW_RING_INDEX;
	bw_unlink("sh_ix");
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("sh_ix", &ro), 0);
	CU_ASSERT_EQUAL(sh_open("sh_ix", 0, &o, &sh), -ENOTSUP);
	bw_unlink("sh_ix");
}

/* A header cut short by the write position is fetched again once the
 * writer has finished it, not served short forever. */
static void short_header(void)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow *sh;
	struct bw_stream *w;
	uint8_t buf[REC];
	const void *p;

	mkring("sh_short", 64u << 10);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sh_short", BW_WRITE | BW_NOWAIT, &w), 0);
	o.method = BW_SHADOW_HYBRID;
	o.record_size = REC;
	o.header_bytes = HDR;
	CU_ASSERT_EQUAL_FATAL(sh_open("sh_short", 0, &o, &sh), 0);
	bwt_fill(buf, REC, 0, 6);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 10), 10);
	CU_ASSERT_EQUAL(bw_shadow_peek_acquire(sh, &p, HDR), 10);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf + 10, REC - 10), REC - 10);
	CU_ASSERT_EQUAL(bw_shadow_peek_acquire(sh, &p, HDR), HDR);
	CU_ASSERT(bwt_verify(p, HDR, 0, 6) < 0);
	/* a skip too far is refused, whatever its size, and moves nothing */
	CU_ASSERT_EQUAL(bw_shadow_peek_complete(sh, SIZE_MAX), -EINVAL);
	CU_ASSERT_EQUAL(bw_shadow_peek_complete(sh, REC + 1), -EINVAL);
	CU_ASSERT_EQUAL(bw_shadow_check(sh, -1), 0);
	CU_ASSERT_EQUAL(bw_shadow_peek_complete(sh, REC), 0);
	CU_ASSERT_EQUAL(bw_shadow_check(sh, -1), REC);
	bw_shadow_close(sh);
	bw_stream_close(w);
	bw_unlink("sh_short");
}

/* Header-only access over a link (here the latency layer, or the fabric):
 * hybrid fetches the headers of many records at once and validates them
 * with one look at the positions, so a long link costs two round trips a
 * batch, not a look per few records. 256 records: their 256 header reads
 * and at most 8 looks (a batch of 16, as before, took 16 and more). */
static void header_batch(void)
{
	const uint64_t n = 256, total = n * REC;
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow_stat st;
	struct bw_shadow *sh;
	uint64_t spos = 0;
	unsigned stale;

	mkring("sh_batch", total);
	CU_ASSERT_EQUAL(bwt_wait(bwt_writer_child("sh_batch", total, REC, 14, -1,
						  0)),
			0);
	o.method = BW_SHADOW_HYBRID;
	o.record_size = REC;
	o.header_bytes = HDR;
	o.latency_us = 1; /* on this host too: nothing in place */
	CU_ASSERT_EQUAL_FATAL(sh_open("sh_batch", BW_FROM_START, &o, &sh), 0);
	CU_ASSERT_EQUAL(drain_records(sh, true, -1, 0, 14, &stale, &spos),
			(int64_t)total);
	CU_ASSERT_EQUAL(stale, 0);
	bw_shadow_stat(sh, &st);
	CU_ASSERT_EQUAL(st.fetched, n * HDR);
	CU_ASSERT(st.remote_ops >= n);
	CU_ASSERT(st.remote_ops <= n + 8);
	if (st.remote_ops > n + 8)
		fprintf(stderr, "%llu operations for %llu headers\n",
			(unsigned long long)st.remote_ops, (unsigned long long)n);
	bw_shadow_close(sh);
	bw_unlink("sh_batch");
}

/* Copy-once copies the next bulk while the reader is still using the last:
 * before the reader has taken a replica's worth, more than a replica's
 * worth has been fetched (one waiting for an empty replica fetches exactly
 * a replica's worth until then). Every byte arrives intact, in order. */
static void copy_overlaps(void)
{
	const uint64_t rep = 64u << 10, total = 4 * rep;
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow_stat st;
	struct bw_shadow *sh;
	uint8_t buf[REC];
	uint64_t got = 0, ahead_at = 0;

	mkring("sh_co", total);
	CU_ASSERT_EQUAL(bwt_wait(bwt_writer_child("sh_co", total, REC, 15, -1, 0)),
			0);
	o.method = BW_SHADOW_COPYONCE;
	o.replica_bytes = rep;
	CU_ASSERT_EQUAL_FATAL(sh_open("sh_co", BW_FROM_START, &o, &sh), 0);
	while (got < total) {
		ssize_t k = bw_shadow_read(sh, buf, REC);

		if (k <= 0 || bwt_verify(buf, (size_t)k, got, 15) >= 0) {
			CU_FAIL("a read failed or gave a wrong byte");
			break;
		}
		got += (uint64_t)k;
		bw_shadow_stat(sh, &st);
		CU_ASSERT(st.fetched <= got + rep); /* never past the replica */
		if (!ahead_at && st.fetched > rep)
			ahead_at = got;
	}
	CU_ASSERT_EQUAL(got, total);
	CU_ASSERT(ahead_at > 0 && ahead_at < rep);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, buf, REC), 0);
	bw_shadow_stat(sh, &st);
	CU_ASSERT_EQUAL(st.lost, 0);
	bw_shadow_close(sh);
	bw_unlink("sh_co");
}

/* Prefetch and copy-once with a replica smaller than their usual least
 * read (64 KiB; a sixteenth of the replica) and an origin holding more:
 * an empty replica still takes a read, and every byte arrives, in order
 * (a hang here is caught by the watchdog). */
static void small_replica(void)
{
	const uint64_t total = 64u << 10;
	static const unsigned m[] = {BW_SHADOW_PREFETCH, BW_SHADOW_COPYONCE};

	mkring("sh_small", total);
	CU_ASSERT_EQUAL(bwt_wait(bwt_writer_child("sh_small", total, REC, 16,
						  -1, 0)),
			0);
	for (unsigned i = 0; i < 2; i++) {
		struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
		struct bw_shadow *sh;
		uint8_t buf[1000];
		uint64_t got = 0;
		ssize_t k;

		o.method = m[i];
		o.replica_bytes = 4096;
		CU_ASSERT_EQUAL_FATAL(sh_open("sh_small", BW_FROM_START, &o, &sh),
				      0);
		while ((k = bw_shadow_read(sh, buf, sizeof(buf))) > 0) {
			if (bwt_verify(buf, (size_t)k, got, 16) >= 0)
				break;
			got += (uint64_t)k;
		}
		CU_ASSERT_EQUAL(k, 0);
		CU_ASSERT_EQUAL(got, total);
		bw_shadow_close(sh);
	}
	bw_unlink("sh_small");
}

/* An event loop on the descriptor of an empty shadow that reads until
 * -EAGAIN at each wake-up is woken about once a millisecond, not at once
 * every time. A lower bound: a slow machine cannot fail it. */
static void fd_paced(void)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow *sh;
	struct timespec a, b;
	struct pollfd pf;
	uint8_t c;
	uint64_t ns;

	mkring("sh_pace", 64u << 10);
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_pace", BW_NONBLOCK, &o, &sh), 0);
	pf.fd = bw_shadow_fd(sh);
	pf.events = POLLIN;
	CU_ASSERT_FATAL(pf.fd >= 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (unsigned i = 0; i < 21; i++) {
		CU_ASSERT_EQUAL(poll(&pf, 1, 5000), 1);
		CU_ASSERT_EQUAL(bw_shadow_read(sh, &c, 1), -EAGAIN);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	ns = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)b.tv_nsec -
	     (uint64_t)a.tv_nsec;
	CU_ASSERT(ns >= 15000000u);
	bw_shadow_close(sh);
	bw_unlink("sh_pace");
}

/* A server that stops answering (SIGSTOP): the read fails within the
 * timeout, and nothing waits another timeout per read still in flight. */
static void server_stalled(void)
{
	struct bw_fabric_opts fo = BW_FABRIC_OPTS_INIT;
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	struct bw_shadow *sh;
	struct bw_stream *w;
	static uint8_t buf[256u << 10];
	struct timespec a, b;
	ssize_t r;
	uint64_t ns;

	mkring("sh_stall", 1u << 20);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("sh_stall", BW_WRITE | BW_NOWAIT, &w), 0);
	for (unsigned i = 0; i < 4; i++)
		CU_ASSERT_EQUAL(bw_stream_write(w, buf, sizeof(buf)), sizeof(buf));
	server_up();
	fo.provider = link_name;
	fo.timeout_ms = 300;
	o.fabric = &fo;
	o.method = BW_SHADOW_PREFETCH;
	o.depth = 16;
	o.window = 1u << 20;
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open(where("sh_stall"), BW_FROM_START, &o,
					     &sh), 0);
	kill(server_pid, SIGSTOP);
	do
		r = bw_shadow_read(sh, buf, 4096);
	while (r > 0);
	CU_ASSERT(r == -ETIMEDOUT || r == -ECONNRESET);
	clock_gettime(CLOCK_MONOTONIC, &a);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, buf, 4096), r);
	bw_shadow_close(sh);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ns = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)b.tv_nsec -
	     (uint64_t)a.tv_nsec;
	/* one timeout is 0.3 s; one per read in flight would be 4.8 s */
	CU_ASSERT(ns < 2000000000u);
	kill(server_pid, SIGCONT);
	bw_stream_close(w);
	bw_unlink("sh_stall");
}

/* A writer killed without detaching: a shadow of a ring on this host sees
 * the end of the stream although it may not reap the writer. */
static void writer_killed(void)
{
	struct bw_shadow *sh;
	char buf[64];
	int p[2];
	pid_t pid;

	mkring("sh_dead", 64u << 10);
	CU_ASSERT_FATAL(pipe(p) == 0);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if (pid == 0) {
		struct bw_stream *w;

		if (bw_stream_open("sh_dead", BW_WRITE | BW_NOWAIT, &w) < 0 ||
		    bw_stream_write(w, "bye", 3) != 3 || write(p[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	CU_ASSERT_EQUAL(read(p[0], buf, 1), 1);
	kill(pid, SIGKILL);
	bwt_wait(pid);
	close(p[0]);
	close(p[1]);
	CU_ASSERT_EQUAL_FATAL(bw_shadow_open("sh_dead", BW_FROM_START | BW_NONBLOCK,
					     NULL, &sh), 0);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, buf, sizeof(buf)), 3);
	CU_ASSERT_EQUAL(bw_shadow_block(sh, 10000), BW_POLLIN | BW_POLLHUP);
	CU_ASSERT_EQUAL(bw_shadow_read(sh, buf, sizeof(buf)), 0);
	bw_shadow_close(sh);
	bw_unlink("sh_dead");
}

/* ---- registration ----------------------------------------------------------- */

static const char *links[4];
static unsigned nlinks;

/* Runs test fn on link i, with a server of its own when it is remote. */
static void on_link(unsigned i, void (*fn)(void))
{
	bwt_server_kill(&server_pid);
	link_name = links[i];
	fn();
	server_down();
}

#define PER_LINK(fn)                                                         \
	static void fn##_l0(void) { on_link(0, fn); }                         \
	static void fn##_l1(void) { on_link(1, fn); }                         \
	static void fn##_l2(void) { on_link(2, fn); }                         \
	static void (*const fn##_v[3])(void) = {fn##_l0, fn##_l1, fn##_l2};
#define LINKED(name, m)                                                      \
	PER_LINK(full_##name)                                                 \
	PER_LINK(header_##name)                                               \
	PER_LINK(latency_##name)                                              \
	PER_LINK(overrun_##name)                                              \
	PER_LINK(behind_##name)                                               \
	PER_LINK(records_##name)                                              \
	PER_LINK(rewritten_##name)
METHODS(LINKED)
PER_LINK(server_killed)
PER_LINK(as_stream)
PER_LINK(padding)
PER_LINK(ibuf_refused)
PER_LINK(records_padded)
PER_LINK(records_copied)
PER_LINK(short_header)
PER_LINK(header_batch)
PER_LINK(copy_overlaps)
PER_LINK(small_replica)
PER_LINK(server_stalled)

static void reg(void)
{
	static char names[160][96];
	static char list[256];
	const char *env = getenv("BWT_SHADOW_LINKS");
	unsigned k = 0;

	snprintf(list, sizeof(list), "%s", env && *env ? env : "local tcp shm");
	for (char *save = NULL, *t = strtok_r(list, " ,", &save); t && nlinks < 3;
	     t = strtok_r(NULL, " ,", &save))
		links[nlinks++] = t;
	bwt_ring_dir();
	signal(SIGPIPE, SIG_IGN);
	bwt_suite("shadow");
	bwt_add("NUMA shadow on one node", numa_one_node);
	bwt_add("in-place bytes checked after use", inplace_check);
	bwt_add("latency layer on and off", latency_layer);
	bwt_add("bad input", bad_input);
	bwt_add("descriptor and block", fd_and_block);
	bwt_add("BELTWAY_SHADOW picks the method", env_method);
	bwt_add("a bw_fork child cannot use a shadow", forked);
	bwt_add("an event loop on the descriptor is paced", fd_paced);
	bwt_add("end of stream after a killed writer", writer_killed);
#define ADD(fn)                                                               \
	for (unsigned i = 0; i < nlinks && k < 160; i++, k++) {               \
		snprintf(names[k], sizeof(names[k]), "%s (%s)", #fn, links[i]); \
		bwt_add(names[k], fn##_v[i]);                                 \
	}
#define ADD_METHOD(name, m)                                                   \
	ADD(full_##name)                                                      \
	ADD(header_##name)                                                    \
	ADD(latency_##name)                                                   \
	ADD(overrun_##name)                                                   \
	ADD(behind_##name)                                                    \
	ADD(records_##name)                                                   \
	ADD(rewritten_##name)
	METHODS(ADD_METHOD)
	ADD(as_stream)
	ADD(padding)
	ADD(ibuf_refused)
	ADD(records_padded)
	ADD(records_copied)
	ADD(short_header)
	ADD(header_batch)
	ADD(copy_overlaps)
	ADD(small_replica)
	for (unsigned i = 0; i < nlinks && k < 160; i++) {
		if (strcmp(links[i], "local") == 0)
			continue;
		snprintf(names[k], sizeof(names[k]), "server killed (%s)", links[i]);
		bwt_add(names[k++], server_killed_v[i]);
		/* shm: a stopped peer may hold the provider's shared lock */
		if (strcmp(links[i], "tcp") != 0)
			continue;
		snprintf(names[k], sizeof(names[k]), "server stalled (%s)", links[i]);
		bwt_add(names[k++], server_stalled_v[i]);
	}
}

int main(void)
{
	return bwt_main("shadow", reg);
}
