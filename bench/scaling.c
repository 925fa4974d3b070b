/* SPDX-License-Identifier: MIT */
/*
 * beltway bench scaling (thesis Figure 4.8): copy throughput (a writer
 * process and a reader process) through a static 16 MiB ring, and through
 * reallocating and deck-cut rings that start at 16 MiB, loop by loop: the
 * reader times each pass through the ring at the size it has then.
 *
 * Each run streams --loops loops per case; the figure for loop N is the
 * median over --runs runs of that loop's throughput and ring size. The
 * summary compares the settled state (the median of the last quarter of
 * the loops) of each scaled ring with the static ring's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../tools/cli.h"
#include "bench.h"

#define START (16u << 20)
#define MAXLOOPS 1024

enum { C_STATIC, C_REALLOC, C_DECKCUT, NCASES };
static const char *const names[NCASES] = {"static", "realloc", "deckcut"};

struct loop {
	uint64_t ring;
	double secs;
};

static void die(const char *what, int r)
{
	fprintf(stderr, "beltway bench scaling: %s: %s\n", what,
		r < 0 ? bw_strerror_last() : strerror(errno));
	_exit(3);
}

/* The writer: call-sized writes until the reader goes. */
static void writer(const char *name, size_t call, int pin)
{
	struct bw_stream *w;
	uint8_t *src = malloc(call);
	int r;

	if (!src)
		_exit(3);
	memset(src, 0x5a, call);
	if (pin)
		bench_pin(0);
	r = bw_stream_open(name, BW_WRITE, &w);
	if (r < 0)
		die("open for writing", r);
	while (bw_stream_write(w, src, call) == (ssize_t)call)
		;
	bw_stream_close(w);
	_exit(0);
}

/* The reader: times loops passes through the ring, each as large as the
 * ring is when it starts, and sends them down fd. */
static void reader(const char *name, size_t call, int loops, int pin, int fd)
{
	static struct loop lp[MAXLOOPS];
	struct bw_stream_stat st;
	struct bw_stream *r;
	uint8_t *dst = malloc(call);
	int rc;

	if (!dst)
		_exit(3);
	if (pin)
		bench_pin(1);
	rc = bw_stream_open(name, BW_READ, &r);
	if (rc < 0)
		die("open for reading", rc);
	for (int i = 0; i < loops; i++) {
		uint64_t got = 0;
		double t0 = cli_now();

		bw_stream_stat(r, &st);
		lp[i].ring = st.capacity;
		while (got < lp[i].ring) {
			ssize_t n = bw_stream_read(r, dst, call);

			if (n <= 0)
				die("read", (int)n);
			got += (uint64_t)n;
		}
		lp[i].secs = cli_now() - t0;
	}
	bw_stream_close(r);
	if (write(fd, lp, sizeof(lp[0]) * (size_t)loops) !=
	    (ssize_t)(sizeof(lp[0]) * (size_t)loops))
		_exit(3);
	_exit(0);
}

static int run_case(int c, size_t call, int loops, int pin, struct loop *out)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	char name[64];
	int fd[2], st, ok = 1;
	pid_t wp, rp;
	ssize_t n;

	snprintf(name, sizeof(name), "bench-scaling-%d", (int)getpid());
	o.size = START;
	o.scale = c == C_REALLOC ? BW_SCALE_REALLOC
		  : c == C_DECKCUT ? BW_SCALE_DECKCUT
				   : BW_SCALE_NONE;
	bw_unlink(name);
	if (bw_mkfifo(name, &o) < 0 || pipe(fd) < 0)
		die("creating the ring", -1);
	rp = fork();
	if (rp == 0)
		reader(name, call, loops, pin, fd[1]);
	wp = fork();
	if (wp == 0)
		writer(name, call, pin);
	close(fd[1]);
	n = read(fd[0], out, sizeof(out[0]) * (size_t)loops);
	close(fd[0]);
	waitpid(rp, &st, 0);
	ok = n == (ssize_t)(sizeof(out[0]) * (size_t)loops) && WIFEXITED(st) &&
	     WEXITSTATUS(st) == 0;
	waitpid(wp, &st, 0);
	bw_unlink(name);
	if (!ok) {
		fprintf(stderr, "beltway bench scaling: case %s failed\n",
			names[c]);
		exit(3);
	}
	return 0;
}

int bench_scaling_main(int argc, char **argv)
{
	struct bench_opts o = {.runs = 5, .nsizes = 1, .sizes = {16384}};
	static struct loop lp[NCASES][64][MAXLOOPS];
	static double g[NCASES][MAXLOOPS], ring[NCASES][MAXLOOPS];
	int loops = 256, ncpu = bench_ncpus(), pin = ncpu >= 2;
	unsigned long ul;
	const char *v;

	for (int i = 1; i < argc; i++) {
		int r = bench_common_opt(argc, argv, &i, &o);

		if (r < 0)
			return 1;
		if (r > 0)
			continue;
		if (cli_opt(argc, argv, &i, "--loops", &v)) {
			if (!v || cli_parse_uint(v, MAXLOOPS, &ul) < 0 || ul < 4)
				return cli_fail("--loops: 4 to %d", MAXLOOPS);
			loops = (int)ul;
		} else {
			return cli_fail("unknown option '%s' (--loops N, "
					"--sizes CALL, --runs N, --quick, "
					"--json, --verbose)",
					argv[i]);
		}
	}
	if (o.runs > 64)
		return cli_fail("--runs: at most 64 here");
	if (o.nsizes != 1 || o.sizes[0] > START / 4)
		return cli_fail("--sizes: one call size, at most 4M");
	if (o.quick && loops > 16)
		loops = 16;
	signal(SIGPIPE, SIG_IGN);
	fprintf(o.json ? stderr : stdout,
		"# beltway bench scaling: %d runs, median per loop; %d loops "
		"of the ring per case; calls of %zu bytes; rings start at 16 "
		"MiB\n# %s\n",
		o.runs, loops, o.sizes[0],
		pin ? "writer pinned to CPU 0, reader to CPU 1"
		    : "one CPU: writer and reader not pinned");
	for (int i = 0; i < o.runs; i++)
		for (int c = 0; c < NCASES; c++)
			run_case(c, o.sizes[0], loops, pin, lp[c][i]);
	for (int c = 0; c < NCASES; c++)
		for (int l = 0; l < loops; l++) {
			double gv[64], rv[64];

			for (int i = 0; i < o.runs; i++) {
				gv[i] = (double)lp[c][i][l].ring /
					lp[c][i][l].secs / 1e9;
				rv[i] = (double)lp[c][i][l].ring;
			}
			g[c][l] = bench_median(gv, o.runs);
			ring[c][l] = bench_median(rv, o.runs);
			if (o.json)
				printf("{\"suite\":\"scaling\",\"case\":\"%s\","
				       "\"loop\":%d,\"ring_bytes\":%.0f,"
				       "\"gbps\":%.4f}\n",
				       names[c], l, ring[c][l], g[c][l]);
		}
	if (o.json)
		return 0;
	printf("\nGB/s and ring size by loop (every %d loops)\n%-6s",
	       loops / 16 ? loops / 16 : 1, "loop");
	for (int c = 0; c < NCASES; c++)
		printf(" %19s", names[c]);
	printf("\n");
	for (int l = 0; l < loops; l += loops / 16 ? loops / 16 : 1) {
		printf("%-6d", l);
		for (int c = 0; c < NCASES; c++)
			printf("      %6.2f %6s", g[c][l],
			       bench_size_name((size_t)ring[c][l]));
		printf("\n");
	}
	printf("\nsettled (median of the last quarter of the loops):\n");
	double base = 0;

	for (int c = 0; c < NCASES; c++) {
		int from = loops - loops / 4;
		double gs[MAXLOOPS], rs[MAXLOOPS], gm, rm;

		for (int l = from; l < loops; l++) {
			gs[l - from] = g[c][l];
			rs[l - from] = ring[c][l];
		}
		gm = bench_median(gs, loops - from);
		rm = bench_median(rs, loops - from);
		if (c == C_STATIC)
			base = gm;
		printf("  %-8s %6.2f GB/s at %6s  %.2fx static\n", names[c], gm,
		       bench_size_name((size_t)rm), gm / base);
	}
	return 0;
}
