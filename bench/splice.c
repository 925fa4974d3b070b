/* SPDX-License-Identifier: MIT */
/*
 * beltway bench splice: moving data from a DBuf to an IBuf (thesis Figure
 * 4.4), five ways in one run:
 *
 *   peek         peek only: the upper bound, no data touched
 *   peek_splice  peek, then write the pointer: only an index is stored
 *   read         read only: one copy out
 *   read_splice  read, then write the buffer unmodified: application
 *                splicing stores the source's index (from 256 bytes; the
 *                write compares the buffer with its source)
 *   read_write   read, then write with BW_NOSPLICE: the data is copied
 *                again, into the IBuf's default DBuf
 *
 * One process on one CPU, as in the thesis: the cost of the calls, not of
 * moving data between cores. The source ring is refilled by poking half of
 * it at a time, so its writer costs nearly nothing; the IBuf has no reader,
 * and its writers overwrite freely.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tools/cli.h"
#include "bench.h"

enum { PEEK, PEEK_SPLICE, READ, READ_SPLICE, READ_WRITE, NCASES };

static const char *const case_name[NCASES] = {
	"peek", "peek_splice", "read", "read_splice", "read_write",
};

struct rig {
	struct bw_stream *src[2];    /* reader, writer */
	struct bw_stream *ib, *ibc;  /* IBuf writers: splicing, copying */
	char name[2][64];	     /* their IBufs */
	uint64_t cap, avail;	     /* source: capacity, bytes to read */
	uint8_t *buf;
};

static void die(const char *what, ssize_t r)
{
	fprintf(stderr, "beltway bench splice: %s: %s\n", what,
		bw_strerror_last()[0] ? bw_strerror_last() : strerror((int)-r));
	exit(3);
}

/* Refills the source with half a ring at a time, without touching data. */
static void refill(struct rig *g, size_t call)
{
	void *p;
	ssize_t r;

	if (g->avail >= call)
		return;
	r = bw_stream_poke(g->src[1], &p, g->cap / 2);
	if (r < 0 || bw_stream_flush(g->src[1]) < 0)
		die("refill", r);
	g->avail += g->cap / 2;
}

static void run_round(struct rig *g, int c, size_t call, uint64_t total)
{
	for (uint64_t done = 0; done < total; done += call) {
		const void *p = g->buf;
		ssize_t r;

		refill(g, call);
		if (c == PEEK || c == PEEK_SPLICE)
			r = bw_stream_peek(g->src[0], &p, call);
		else
			r = bw_stream_read(g->src[0], g->buf, call);
		if (r != (ssize_t)call)
			die("reading the source", r);
		g->avail -= call;
		if (c == PEEK_SPLICE || c == READ_SPLICE)
			r = bw_stream_write(g->ib, p, call);
		else if (c == READ_WRITE)
			r = bw_stream_write(g->ibc, p, call);
		if (r != (ssize_t)call)
			die("writing the IBuf", r);
	}
}

/* Seconds per total bytes moved by case c, measured over total bytes and
 * then over more rounds of total until min_sec have gone by: the fast
 * cases would otherwise be timed over a few milliseconds, which one
 * preemption on this shared machine skews by a third. */
static double run_case(struct rig *g, int c, size_t call, uint64_t total,
		       double min_sec)
{
	double t0 = cli_now(), t;
	uint64_t rounds = 0;

	do {
		run_round(g, c, call, total);
		rounds++;
		t = cli_now() - t0;
	} while (t < min_sec);
	return t / (double)rounds;
}

static void rig_open(struct rig *g, const char *name, size_t maxcall)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	uint8_t *fill;
	int r;

	/* the source: a 4 MiB ring, filled once so its pages are real */
	r = bw_pipe(g->src, NULL);
	if (r < 0)
		die("source ring", r);
	g->cap = BW_RING_DEFAULT_SIZE;
	fill = malloc(g->cap);
	memset(fill, 0x5a, g->cap);
	if (bw_stream_write(g->src[1], fill, g->cap) != (ssize_t)g->cap)
		die("filling the source", -EIO);
	g->avail = g->cap;
	free(fill);
	/* Two IBufs, one per writer, so each has a writer alone (two
	 * writers on one ring would both reserve by CAS); no readers, so
	 * the writers never wait. */
	o.flags = BW_RING_INDEX;
	for (int i = 0; i < 2; i++) {
		snprintf(g->name[i], sizeof(g->name[i]), "%.48s-%s", name,
			 i ? "copy" : "splice");
		bw_unlink(g->name[i]);
		r = bw_mkfifo(g->name[i], &o);
		if (r < 0)
			die("IBuf", r);
	}
	if ((r = bw_stream_open(g->name[0], BW_WRITE | BW_NOWAIT, &g->ib)) < 0 ||
	    (r = bw_stream_open(g->name[1], BW_WRITE | BW_NOWAIT | BW_NOSPLICE,
				&g->ibc)) < 0)
		die("IBuf writers", r);
	g->buf = aligned_alloc(4096, (maxcall + 4095) / 4096 * 4096);
}

static void rig_close(struct rig *g)
{
	bw_stream_close(g->ib);
	bw_stream_close(g->ibc);
	bw_stream_close(g->src[0]);
	bw_stream_close(g->src[1]);
	bw_unlink(g->name[0]);
	bw_unlink(g->name[1]);
	free(g->buf);
}

int bench_splice_main(int argc, char **argv)
{
	struct bench_opts o = {.runs = 5, .nsizes = 4,
			       .sizes = {64, 1024, 4096, 65536}};
	double gbps[NCASES][16], mops[NCASES][16], xrw[NCASES][16];
	char name[64];
	struct rig g;
	bool pin;

	for (int i = 1; i < argc; i++) {
		int r = bench_common_opt(argc, argv, &i, &o);

		if (r < 0)
			return 1;
		if (r == 0)
			return cli_fail("unknown option '%s' (see 'beltway "
					"bench --help')",
					argv[i]);
	}
	const size_t *sizes = o.sizes;
	int nsizes = o.nsizes, runs = o.runs;
	bool json = o.json, quick = o.quick, verbose = o.verbose;

	for (int s = 0; s < nsizes; s++)
		if (sizes[s] > (1u << 20))
			return cli_fail("call size %zu: at most 1M", sizes[s]);
	pin = bench_pin(0) >= 0;
	snprintf(name, sizeof(name), "bench-splice-%d", (int)getpid());
	fprintf(json ? stderr : stdout,
		"# beltway bench splice: DBuf to IBuf, one process%s; %d runs "
		"per figure, median reported;\n# x read_write is the median "
		"of the ratios within each run; this machine is noisy\n",
		pin ? " pinned to CPU 0" : " (not pinned)", runs);
	for (int s = 0; s < nsizes; s++) {
		static double t[NCASES][1000];
		size_t call = sizes[s];
		uint64_t total = (call <= 64 ? 64u << 20 : call <= 1024 ? 512u << 20
							       : 2048u << 20);

		if (quick)
			total /= 16;
		total = total / call * call;
		rig_open(&g, name, call);
		for (int i = 0; i < runs; i++)
			for (int c = 0; c < NCASES; c++) {
				t[c][i] = run_case(&g, c, call, total,
						   quick ? 0.02 : 0.2);
				if (verbose)
					fprintf(stderr, "# %s %zu run %d: %.3f GB/s\n",
						case_name[c], call, i,
						(double)total / t[c][i] / 1e9);
			}
		rig_close(&g);
		for (int c = 0; c < NCASES; c++)
			xrw[c][s] = bench_paired(t[c], t[READ_WRITE], runs);
		for (int c = 0; c < NCASES; c++) {
			double sec = bench_median(t[c], runs);

			gbps[c][s] = (double)total / sec / 1e9;
			mops[c][s] = (double)total / call / sec / 1e6;
			if (json) {
				printf("{\"suite\":\"splice\",\"case\":\"%s\","
				       "\"size\":%zu,\"gbps\":%.4f,\"mops\":%.4f}\n",
				       case_name[c], call, gbps[c][s], mops[c][s]);
				fflush(stdout);
			}
		}
	}
	if (json)
		return 0;
	printf("\n%-12s %8s %9s %10s %13s\n", "case", "size", "GB/s",
	       "Mcalls/s", "x read_write");
	for (int s = 0; s < nsizes; s++) {
		for (int c = 0; c < NCASES; c++)
			printf("%-12s %8zu %9.3f %10.3f %13.2f\n", case_name[c],
			       sizes[s], gbps[c][s], mops[c][s], xrw[c][s]);
		printf("\n");
	}
	return 0;
}
