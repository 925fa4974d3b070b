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
 *
 * The ceiling, in the same runs: static rings of every size a scaled ring
 * may take (64 KiB to 64 MiB), each streamed for a quarter of the static
 * case's bytes (or MAXLOOPS loops, if fewer). No choice of size can beat
 * the fastest of them, so the best ratio a scaled ring can reach on this
 * machine is printed beside the ratios reached (outside --json, whose rows keep the issue's shape; with
 * --json it goes to stderr).
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
#define START_SHIFT 24
_Static_assert(START == 1u << START_SHIFT, "START is 2^START_SHIFT");
#define MAXLOOPS 1024
#define REF_MIN_SHIFT 16 /* the ceiling: static rings of 64 KiB */
#define REF_MAX_SHIFT 26 /* to 64 MiB */
#define NREF (REF_MAX_SHIFT - REF_MIN_SHIFT + 1)

enum { C_STATIC, C_REALLOC, C_DECKCUT, NCASES };
static const char *const names[NCASES] = {"static", "realloc", "deckcut"};

struct loop {
	uint64_t ring;	/* the ring's size as the loop began */
	uint64_t bytes; /* read in the loop: the ring's, and the last call's
			 * overshoot */
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
		lp[i].bytes = got;
	}
	bw_stream_close(r);
	if (write(fd, lp, sizeof(lp[0]) * (size_t)loops) !=
	    (ssize_t)(sizeof(lp[0]) * (size_t)loops))
		_exit(3);
	_exit(0);
}

/* Streams loops loops through a ring of case c that starts at size. */
static int run_case(int c, uint64_t size, size_t call, int loops, int pin,
		    struct loop *out)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	char name[64];
	int fd[2], st, ok = 1;
	pid_t wp, rp;
	ssize_t n;

	snprintf(name, sizeof(name), "bench-scaling-%d", (int)getpid());
	o.size = size;
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
		fprintf(stderr, "beltway bench scaling: case %s (%s) failed\n",
			names[c], bench_size_name((size_t)size));
		exit(3);
	}
	return 0;
}

/* The figure for each loop: the medians over runs of its throughput and
 * ring size. */
static void per_loop(struct loop (*lp)[MAXLOOPS], int runs, int loops,
		     double *g, double *ring)
{
	for (int l = 0; l < loops; l++) {
		double gv[64], rv[64];

		for (int i = 0; i < runs; i++) {
			gv[i] = (double)lp[i][l].bytes / lp[i][l].secs / 1e9;
			rv[i] = (double)lp[i][l].ring;
		}
		g[l] = bench_median(gv, runs);
		ring[l] = bench_median(rv, runs);
	}
}

/* The settled state: the median of the last quarter of the loops. */
static double settled(const double *v, int loops)
{
	double s[MAXLOOPS];
	int from = loops - loops / 4;

	memcpy(s, v + from, sizeof(s[0]) * (size_t)(loops - from));
	return bench_median(s, loops - from);
}

/* One run's settled rate: the bytes over the time of its last quarter of
 * loops. */
static double run_rate(const struct loop *lp, int loops)
{
	double b = 0, t = 0;

	for (int l = loops - loops / 4; l < loops; l++) {
		b += (double)lp[l].bytes;
		t += lp[l].secs;
	}
	return t > 0 ? b / t / 1e9 : 0;
}

/* Loops of a static ring of 2^k bytes for the ceiling: a quarter of the
 * static case's bytes, 4 loops at least and MAXLOOPS at most. */
static int ref_loops(unsigned k, int loops)
{
	uint64_t n = (uint64_t)loops * (START / 4) >> k;

	return n < 4 ? 4 : n > MAXLOOPS ? MAXLOOPS : (int)n;
}

int bench_scaling_main(int argc, char **argv)
{
	struct bench_opts o = {.runs = 5, .nsizes = 1, .sizes = {16384}};
	static struct loop lp[NCASES][64][MAXLOOPS], lr[NREF][64][MAXLOOPS];
	static double g[NCASES][MAXLOOPS], ring[NCASES][MAXLOOPS];
	double pr[NCASES + 1][64], cv[64];
	double gref[NREF], base, best = 0, ctl;
	int loops = 256, ncpu = bench_ncpus(), pin = ncpu >= 2, kbest = 0;
	unsigned long ul;
	const char *v;
	FILE *sum;

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
	sum = o.json ? stderr : stdout;
	fprintf(sum,
		"# beltway bench scaling: %d runs, median per loop; %d loops "
		"of the ring per case; calls of %zu bytes; rings start at 16 "
		"MiB\n# %s\n",
		o.runs, loops, o.sizes[0],
		pin ? "writer pinned to CPU 0, reader to CPU 1"
		    : "one CPU: writer and reader not pinned");
	for (int i = 0; i < o.runs; i++) {
		for (int c = 0; c < NCASES; c++)
			run_case(c, START, o.sizes[0], loops, pin, lp[c][i]);
		for (unsigned k = REF_MIN_SHIFT; k <= REF_MAX_SHIFT; k++)
			run_case(C_STATIC, UINT64_C(1) << k, o.sizes[0],
				 ref_loops(k, loops), pin,
				 lr[k - REF_MIN_SHIFT][i]);
	}
	for (int c = 0; c < NCASES; c++) {
		per_loop(lp[c], o.runs, loops, g[c], ring[c]);
		for (int l = 0; o.json && l < loops; l++)
			printf("{\"suite\":\"scaling\",\"case\":\"%s\","
			       "\"loop\":%d,\"ring_bytes\":%.0f,"
			       "\"gbps\":%.4f}\n",
			       names[c], l, ring[c][l], g[c][l]);
	}
	for (unsigned k = REF_MIN_SHIFT; k <= REF_MAX_SHIFT; k++) {
		static double gl[MAXLOOPS], rl[MAXLOOPS];
		int n = ref_loops(k, loops), j = (int)(k - REF_MIN_SHIFT);

		per_loop(lr[j], o.runs, n, gl, rl);
		gref[j] = settled(gl, n);
		if (gref[j] > best) {
			best = gref[j];
			kbest = (int)k;
		}
	}
	if (!o.json) {
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
	}
	fprintf(sum, "%sstatic rings of every size, settled GB/s (the "
		     "ceiling):\n%s",
		o.json ? "# " : "\n", o.json ? "# " : "");
	for (unsigned k = REF_MIN_SHIFT; k <= REF_MAX_SHIFT; k++)
		fprintf(sum, " %s %.2f", bench_size_name((size_t)1 << k),
			gref[k - REF_MIN_SHIFT]);
	fprintf(sum, "\n%ssettled (median of the last quarter of the "
		     "loops):\n",
		o.json ? "# " : "\n");
	/* paired: the median over runs of each run's ratio to its own
	 * static case, which ran a second before (the host's slow and fast
	 * spells last longer than that) */
	for (int i = 0; i < o.runs; i++) {
		double st = run_rate(lp[C_STATIC][i], loops);

		for (int c = 0; c < NCASES; c++)
			pr[c][i] = run_rate(lp[c][i], loops) / st;
		pr[NCASES][i] = 0;
		for (unsigned k = REF_MIN_SHIFT; k <= REF_MAX_SHIFT; k++) {
			double x = run_rate(lr[k - REF_MIN_SHIFT][i],
					    ref_loops(k, loops)) / st;

			if (x > pr[NCASES][i])
				pr[NCASES][i] = x;
		}
	}
	base = settled(g[C_STATIC], loops);
	for (int c = 0; c < NCASES; c++)
		fprintf(sum, "%s  %-8s %6.2f GB/s at %6s  %.2fx static, "
			     "%.2fx paired\n",
			o.json ? "#" : "", names[c], settled(g[c], loops),
			bench_size_name((size_t)settled(ring[c], loops)),
			settled(g[c], loops) / base,
			bench_median(pr[c], o.runs));
	fprintf(sum, "%s  ceiling  %6.2f GB/s at %6s  %.2fx static, %.2fx "
		     "paired: the most any choice of size can reach here\n",
		o.json ? "#" : "", best, bench_size_name((size_t)1 << kbest),
		best / base, bench_median(pr[NCASES], o.runs));
	fprintf(sum, "%s  (paired: the median over runs of each run's ratio "
		     "to its own static case)\n",
		o.json ? "#" : "");
	/* the control: the ceiling's own 16 MiB ring is the static case
	 * again; apart from 1, the host's spells, not the ring size, moved
	 * the figures */
	for (int i = 0; i < o.runs; i++)
		cv[i] = run_rate(lr[START_SHIFT - REF_MIN_SHIFT][i],
				 ref_loops(START_SHIFT, loops)) /
			run_rate(lp[C_STATIC][i], loops);
	ctl = bench_median(cv, o.runs);
	fprintf(sum, "%s  control: the same static 16 MiB ring measured "
		     "%.2fx the static case, paired%s\n",
		o.json ? "#" : "", ctl,
		ctl < 0.8 || ctl > 1.25 ? ": the host's speed changed during "
					  "the run, the ratios above are not "
					  "reliable"
					: "");
	return 0;
}
