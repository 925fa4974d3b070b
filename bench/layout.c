/* SPDX-License-Identifier: MIT */
/*
 * beltway bench layout (thesis Figures 4.9 and 4.10): records through a
 * byte ring, fr, vr and dr record rings, and two malloc-based queues, for
 * record sizes from 64 B to 1514 B (an Ethernet frame).
 *
 * Copy throughput as the thesis measures it: one thread writes a batch of
 * records and reads them back, so what differs between cases is the cost
 * of each layout per record (headers, slot waste, lookups), not
 * scheduling. The byte ring moves the same bytes without record
 * boundaries. The malloc queues allocate a container per record and link
 * it: malloc_list finds its last container by walking from the first
 * (the thesis's first implementation), malloc_cached keeps a pointer to it
 * (one lookup). Each figure is the median of --runs runs, the cases
 * interleaved within each run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/cli.h"
#include "bench.h"

#define BATCH 1024 /* records written before they are read back: the
			 * writer runs this far ahead (2 MiB of fr slots) */
#define RING (4u << 20)

enum { C_BYTE, C_FR, C_VR, C_DR, C_LIST, C_CACHED, NCASES };

static const char *const names[NCASES] = {"byte", "fr", "vr", "dr",
					  "malloc_list", "malloc_cached"};

struct node {
	struct node *next;
	size_t len;
	uint8_t data[];
};

struct mq {
	struct node *head, *tail;
	bool cached; /* keep tail; else walk from head to find it */
};

static void mq_put(struct mq *q, const void *buf, size_t n)
{
	struct node *x = malloc(sizeof(*x) + n), *t;

	if (!x) {
		fprintf(stderr, "beltway bench layout: out of memory\n");
		exit(3);
	}
	x->next = NULL;
	x->len = n;
	memcpy(x->data, buf, n);
	if (!q->head) {
		q->head = q->tail = x;
		return;
	}
	if (q->cached) {
		t = q->tail;
	} else {
		for (t = q->head; t->next; t = t->next)
			;
	}
	t->next = x;
	q->tail = x;
}

static size_t mq_get(struct mq *q, void *buf)
{
	struct node *x = q->head;
	size_t n = x->len;

	memcpy(buf, x->data, n);
	q->head = x->next;
	free(x);
	return n;
}

static void die(const char *what, ssize_t r)
{
	fprintf(stderr, "beltway bench layout: %s: %s\n", what,
		r < 0 ? bw_strerror_last() : "short");
	exit(3);
}

/* One run of case c: total records of n bytes. Returns seconds. */
static double run_case(int c, size_t n, uint64_t total)
{
	static uint8_t src[2048], dst[2048];
	struct bw_stream *end[2] = {0};
	struct mq q = {.cached = c == C_CACHED};
	uint64_t acc = 0;
	double t0, t;

	memset(src, 0x5a, n);
	if (c <= C_DR) {
		static const uint32_t lay[] = {BW_LAYOUT_BYTES, BW_LAYOUT_FR,
					       BW_LAYOUT_VR, BW_LAYOUT_DR};
		struct bw_ring_opts o = BW_RING_OPTS_INIT;
		int r;

		o.size = RING;
		o.layout = lay[c];
		if (c == C_FR)
			o.record_size = 2048; /* a 1514-byte frame's slot */
		r = bw_pipe(end, &o);
		if (r < 0)
			die("bw_pipe", r);
	}
	t0 = cli_now();
	for (uint64_t done = 0; done < total; done += BATCH) {
		for (int i = 0; i < BATCH; i++) {
			ssize_t w = (ssize_t)n;

			if (c <= C_DR)
				w = bw_stream_write(end[1], src, n);
			else
				mq_put(&q, src, n);
			if (w != (ssize_t)n)
				die("write", w);
		}
		for (int i = 0; i < BATCH; i++) {
			ssize_t r;

			if (c <= C_DR)
				r = bw_stream_read(end[0], dst, n);
			else
				r = (ssize_t)mq_get(&q, dst);
			if (r != (ssize_t)n)
				die("read", r);
			acc += dst[n - 1];
		}
	}
	t = cli_now() - t0;
	if (acc != total * 0x5a)
		die("data", 0);
	if (c <= C_DR) {
		bw_stream_close(end[0]);
		bw_stream_close(end[1]);
	}
	return t;
}

int bench_layout_main(int argc, char **argv)
{
	struct bench_opts o = {.runs = 5, .nsizes = 6,
			       .sizes = {64, 128, 256, 512, 1024, 1514}};
	static double t[NCASES][1000], g[NCASES][16], mops[NCASES][16];
	int cpu;

	for (int i = 1; i < argc; i++) {
		int r = bench_common_opt(argc, argv, &i, &o);

		if (r < 0)
			return 1;
		if (r == 0)
			return cli_fail("unknown option '%s' (--sizes LIST, "
					"--runs N, --quick, --json, --verbose)",
					argv[i]);
	}
	for (int s = 0; s < o.nsizes; s++)
		if (o.sizes[s] < 8 || o.sizes[s] > 2040)
			return cli_fail("--sizes: records of 8 to 2040 bytes "
					"(the fr slot is 2048 with its header)");
	cpu = bench_pin(0);
	fprintf(o.json ? stderr : stdout,
		"# beltway bench layout: %d runs per figure, median reported\n"
		"# one thread %s; batches of %d records written, then read "
		"back; rings of %u MiB; fr slots of 2048 bytes\n",
		o.runs, cpu >= 0 ? "pinned to CPU 0" : "(not pinned)", BATCH,
		RING >> 20);
	for (int s = 0; s < o.nsizes; s++) {
		size_t n = o.sizes[s];
		uint64_t total = (o.quick ? 16u << 20 : 256u << 20) / n;

		total = (total + BATCH - 1) / BATCH * BATCH;
		for (int i = 0; i < o.runs; i++)
			for (int c = 0; c < NCASES; c++)
				t[c][i] = run_case(c, n, total);
		for (int c = 0; c < NCASES; c++) {
			double m = bench_median(t[c], o.runs);

			g[c][s] = (double)(total * n) / m / 1e9;
			mops[c][s] = (double)total / m / 1e6;
			if (o.json)
				printf("{\"suite\":\"layout\",\"case\":\"%s\","
				       "\"size\":%zu,\"gbps\":%.4f,"
				       "\"mops\":%.4f}\n",
				       names[c], n, g[c][s], mops[c][s]);
			if (o.verbose)
				fprintf(stderr, "# %s %zu: %.3f GB/s\n",
					names[c], n, g[c][s]);
		}
		fflush(stdout);
	}
	if (o.json)
		return 0;
	printf("\nGB/s (million records/s) by record size\n%-14s", "case");
	for (int s = 0; s < o.nsizes; s++)
		printf(" %15zu", o.sizes[s]);
	printf("\n");
	for (int c = 0; c < NCASES; c++) {
		printf("%-14s", names[c]);
		for (int s = 0; s < o.nsizes; s++)
			printf("   %5.2f (%5.1f)", g[c][s], mops[c][s]);
		printf("\n");
	}
	printf("%-14s", "fr / vr");
	for (int s = 0; s < o.nsizes; s++)
		printf(" %15.2f", g[C_FR][s] / g[C_VR][s]);
	printf("\n");
	return 0;
}
