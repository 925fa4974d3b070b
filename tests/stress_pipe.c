/* SPDX-License-Identifier: MIT */
/*
 * Stress: 1 GiB through a pipe, and 1 GiB through a multiway pipe to three
 * reader processes, every word checked against its position and the whole
 * stream checksummed on both sides. The writer mixes write, poke and
 * poke_acquire/complete with random sizes; the readers use read, peek and
 * peek_acquire/complete.
 *
 * Every write is a multiple of 8 bytes, and a write up to the capacity is
 * atomic, so every read must also come in whole words: that is checked too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define TOTAL (UINT64_C(1) << 30)
#define MAXCALL (64u << 10)

static uint64_t word_at(uint64_t idx, uint64_t seed)
{
	uint64_t z = idx + seed * 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t sum_word(uint64_t h, uint64_t w)
{
	return (h ^ w) * 0x100000001b3ull;
}

struct rng {
	uint64_t s;
};

static uint64_t next(struct rng *r)
{
	r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
	return r->s >> 33;
}

/* Writes TOTAL bytes; returns the checksum, or 0 on failure. */
static uint64_t writer(struct bw_stream *w, uint64_t seed)
{
	uint64_t *buf = malloc(MAXCALL), pos = 0, h = BWT_FOLD_INIT;
	struct rng rg = {seed};

	while (pos < TOTAL) {
		size_t n = (size_t)(8 * (1 + next(&rg) % (MAXCALL / 8)));
		uint64_t *p;
		int how = (int)(next(&rg) % 3);
		ssize_t r;

		if (n > TOTAL - pos)
			n = (size_t)(TOTAL - pos);
		if (how == 0) {
			p = buf;
		} else {
			void *vp;

			r = how == 1 ? bw_stream_poke(w, &vp, n)
				     : bw_stream_poke_acquire(w, &vp, n);
			if (r != (ssize_t)n)
				return 0;
			p = vp;
		}
		for (size_t i = 0; i < n / 8; i++) {
			p[i] = word_at(pos / 8 + i, seed);
			h = sum_word(h, p[i]);
		}
		if (how == 0)
			r = bw_stream_write(w, buf, n) == (ssize_t)n ? 0 : -1;
		else if (how == 2)
			r = bw_stream_poke_complete(w, n);
		else
			r = 0;
		if (r < 0)
			return 0;
		pos += n;
	}
	free(buf);
	return h;
}

/* Reads to EOF; returns the checksum, or 0 on any wrong word or length. */
static uint64_t reader(struct bw_stream *r, uint64_t seed, int how)
{
	uint64_t *buf = malloc(MAXCALL), pos = 0, h = BWT_FOLD_INIT;
	struct rng rg = {seed ^ (uint64_t)how};

	for (;;) {
		size_t want = (size_t)(8 * (1 + next(&rg) % (MAXCALL / 8)));
		const uint64_t *p = buf;
		ssize_t n;

		if (how == 0) {
			n = bw_stream_read(r, buf, want);
		} else {
			const void *vp;

			n = how == 1 ? bw_stream_peek(r, &vp, want)
				     : bw_stream_peek_acquire(r, &vp, want);
			p = vp;
		}
		if (n == 0)
			break;
		if (n < 0 || n % 8) {
			fprintf(stderr, "reader %d: call returned %zd at %llu: %s\n",
				how, n, (unsigned long long)pos,
				bw_strerror_last());
			return 0;
		}
		for (size_t i = 0; i < (size_t)n / 8; i++) {
			if (p[i] != word_at(pos / 8 + i, seed)) {
				fprintf(stderr, "reader %d: wrong word at %llu\n",
					how, (unsigned long long)(pos + 8 * i));
				return 0;
			}
			h = sum_word(h, p[i]);
		}
		if (how == 2 && bw_stream_peek_complete(r, (size_t)n) < 0)
			return 0;
		pos += (uint64_t)n;
	}
	free(buf);
	return pos == TOTAL ? h : 0;
}

/* Runs a child that reports a checksum through a pipe. */
static pid_t child(int out, struct bw_stream **ends, int n, int keep,
		   uint64_t (*fn)(struct bw_stream *, uint64_t, int), uint64_t seed,
		   int how)
{
	pid_t pid = bw_fork();

	if (pid != 0)
		return pid;
	for (int i = 0; i < n; i++)
		if (i != keep)
			bw_stream_close(ends[i]);
	uint64_t h = fn(ends[keep], seed, how);

	bw_stream_close(ends[keep]);
	if (write(out, &h, sizeof(h)) != sizeof(h))
		_exit(3);
	_exit(h ? 0 : 1);
}

static uint64_t writer_fn(struct bw_stream *w, uint64_t seed, int how)
{
	(void)how;
	return writer(w, seed);
}

static void run(int nreaders)
{
	struct bw_stream *ends[4];
	uint64_t sums[4];
	pid_t pids[4];
	int res[2];

	CU_ASSERT_EQUAL_FATAL(pipe(res), 0);
	if (nreaders == 1) {
		struct bw_stream *p[2];

		CU_ASSERT_EQUAL_FATAL(bw_pipe(p, NULL), 0);
		ends[0] = p[1];
		ends[1] = p[0];
	} else {
		CU_ASSERT_EQUAL_FATAL(bw_mpipe(ends, (unsigned)nreaders + 1, NULL),
				      0);
	}
	for (int i = 1; i <= nreaders; i++)
		pids[i] = child(res[1], ends, nreaders + 1, i, reader, 77,
				(i - 1) % 3);
	pids[0] = child(res[1], ends, nreaders + 1, 0, writer_fn, 77, 0);
	for (int i = 0; i <= nreaders; i++)
		bw_stream_close(ends[i]);
	for (int i = 0; i <= nreaders; i++)
		CU_ASSERT_EQUAL(read(res[0], &sums[i], 8), 8);
	for (int i = 0; i <= nreaders; i++)
		CU_ASSERT_EQUAL(bwt_wait(pids[i]), 0);
	for (int i = 1; i <= nreaders; i++) {
		CU_ASSERT_NOT_EQUAL(sums[i], 0);
		CU_ASSERT_EQUAL(sums[i], sums[0]);
	}
	close(res[0]);
	close(res[1]);
}

static void test_pipe_1g(void)
{
	run(1);
}

static void test_mpipe_1g(void)
{
	run(3);
}

static void reg(void)
{
	bwt_add("1 GiB through a pipe", test_pipe_1g);
	bwt_add("1 GiB through an mpipe to 3 readers", test_mpipe_1g);
}

int main(void)
{
	return bwt_main("stress", reg);
}
