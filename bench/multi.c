/* SPDX-License-Identifier: MIT */
/*
 * beltway bench multiconsumer (thesis Figure 4.12): one ring, one writer and
 * 1, 2, 4 or 8 readers under each policy (lossless, SRP, MRP, FRP), then 1,
 * 2 and 4 writers with one reader; and, as the peer in the same run, the
 * Unix way to give N readers one stream: a pipe per reader, the writer
 * writing every record N times.
 *
 * Each party is a thread with its own handle (a process maps a ring once, so
 * this is the shared-memory cost of separate processes without the fork).
 * Writers are pinned to CPU 0 and readers to the last CPU, so that adding
 * readers takes nothing from the writer's CPU: the readers share theirs.
 * All wait at a start line, and every time runs from the first to start.
 * The writers' figure is the bytes that entered the ring (written less
 * dropped) over the time to the last writer's end; a reader's, the bytes it
 * delivered over the time to its end of stream. The drop rate is the share
 * of written records the average reader did not get (dropped by SRP or MRP,
 * overwritten under MRP or FRP). Each figure is the median of --runs runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../tools/cli.h"
#include "bench.h"

#define MAXR 8
#define MAXW 4
#define REC 1024
#define RING BW_RING_DEFAULT_SIZE

struct mc {
	int policy;	 /* enum bw_policy, or -1: pipes */
	unsigned nr, nw;
	uint64_t total;	 /* bytes each writer offers */
	char ring[48];
	int pfd[MAXR][2];
	pthread_barrier_t start;
	int cpu_w, cpu_r;
	uint32_t wake_batch; /* rings wake readers once per this many writes */
	/* results */
	double w0[MAXW], w1[MAXW], r0[MAXR], r1[MAXR]; /* start, end */
	uint64_t wbytes[MAXW], rbytes[MAXR];
	int err;
	char why[160];
};

struct party {
	struct mc *mc;
	unsigned id;
	struct bw_stream *s;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(struct mc *mc, const char *what)
{
	if (!mc->err)
		snprintf(mc->why, sizeof(mc->why), "%s: %s", what,
			 bw_strerror_last());
	mc->err = 1;
}

static void *writer(void *p)
{
	struct party *a = p;
	struct mc *mc = a->mc;
	uint8_t buf[REC];
	struct bw_stream_stat st;

	memset(buf, (int)a->id + 1, sizeof(buf));
	bench_pin(mc->cpu_w);
	pthread_barrier_wait(&mc->start);
	mc->w0[a->id] = now();
	for (uint64_t done = 0; done < mc->total; done += REC) {
		if (mc->policy < 0) {
			for (unsigned i = 0; i < mc->nr; i++)
				if (cli_write_all(mc->pfd[i][1], buf, REC) < 0) {
					fail(mc, "pipe write");
					goto out;
				}
		} else if (bw_stream_write(a->s, buf, REC) != REC) {
			fail(mc, "write");
			break;
		}
	}
out:
	mc->w1[a->id] = now();
	mc->wbytes[a->id] = mc->total;
	if (mc->policy >= 0 && bw_stream_stat(a->s, &st) == 0)
		mc->wbytes[a->id] -= st.dropped;
	if (mc->policy < 0)
		for (unsigned i = 0; i < mc->nr; i++)
			close(mc->pfd[i][1]);
	else
		bw_stream_close(a->s);
	return NULL;
}

static void *reader(void *p)
{
	struct party *a = p;
	struct mc *mc = a->mc;
	uint8_t buf[REC];
	uint64_t got = 0;

	bench_pin(mc->cpu_r);
	pthread_barrier_wait(&mc->start);
	mc->r0[a->id] = now();
	for (;;) {
		ssize_t n = mc->policy < 0 ? read(mc->pfd[a->id][0], buf, REC)
					   : bw_stream_read(a->s, buf, REC);

		if (n == -ESTALE)
			continue; /* overwritten: counted in the drop rate */
		if (n == 0)
			break;
		if (n < 0) {
			fail(mc, "read");
			break;
		}
		bench_touch(buf, 8);
		got += (uint64_t)n;
	}
	mc->r1[a->id] = now();
	mc->rbytes[a->id] = got;
	if (mc->policy < 0)
		close(mc->pfd[a->id][0]);
	else
		bw_stream_close(a->s);
	return NULL;
}

/* One run of a case. Returns 0, or -1 after printing why. */
static int run_once(struct mc *mc)
{
	struct party pw[MAXW], pr[MAXR];
	pthread_t tw[MAXW], tr[MAXR];
	unsigned n = mc->nw + mc->nr;
	int r;

	mc->err = 0;
	if (mc->policy >= 0) {
		struct bw_ring_opts o = BW_RING_OPTS_INIT;

		o.size = RING;
		o.policy = (uint32_t)mc->policy;
		o.wake_batch = mc->wake_batch;
		bw_unlink(mc->ring);
		r = bw_mkfifo(mc->ring, &o);
		if (r < 0) {
			fail(mc, "creating the ring");
			goto bad;
		}
	}
	for (unsigned i = 0; i < mc->nr; i++) {
		pr[i] = (struct party){.mc = mc, .id = i};
		if (mc->policy < 0)
			r = pipe(mc->pfd[i]) ? -errno : 0;
		else
			r = bw_stream_open(mc->ring, BW_READ | BW_NOWAIT, &pr[i].s);
		if (r < 0) {
			fail(mc, "opening a reader");
			goto bad;
		}
	}
	for (unsigned i = 0; i < mc->nw; i++) {
		pw[i] = (struct party){.mc = mc, .id = i};
		if (mc->policy >= 0 &&
		    bw_stream_open(mc->ring, BW_WRITE | BW_NOWAIT, &pw[i].s) < 0) {
			fail(mc, "opening a writer");
			goto bad;
		}
	}
	pthread_barrier_init(&mc->start, NULL, n);
	for (unsigned i = 0; i < mc->nr; i++)
		pthread_create(&tr[i], NULL, reader, &pr[i]);
	for (unsigned i = 0; i < mc->nw; i++)
		pthread_create(&tw[i], NULL, writer, &pw[i]);
	for (unsigned i = 0; i < mc->nw; i++)
		pthread_join(tw[i], NULL);
	for (unsigned i = 0; i < mc->nr; i++)
		pthread_join(tr[i], NULL);
	pthread_barrier_destroy(&mc->start);
	if (mc->policy >= 0)
		bw_unlink(mc->ring);
	if (!mc->err)
		return 0;
bad:
	fprintf(stderr, "beltway bench multiconsumer: %s\n", mc->why);
	return -1;
}

struct fig {
	double wgbps, rmin, rmax, drop;
};

static int run_case(struct mc *mc, int runs, struct fig *f)
{
	double w[64], lo[64], hi[64], dr[64];

	for (int k = 0; k < runs; k++) {
		double wb = 0, t0 = 1e300, wend = 0, mean = 0;

		if (run_once(mc) < 0)
			return -1;
		/* every time runs from the first party's start */
		for (unsigned i = 0; i < mc->nw; i++)
			t0 = mc->w0[i] < t0 ? mc->w0[i] : t0;
		for (unsigned i = 0; i < mc->nr; i++)
			t0 = mc->r0[i] < t0 ? mc->r0[i] : t0;
		lo[k] = 1e30;
		hi[k] = 0;
		for (unsigned i = 0; i < mc->nw; i++) {
			wb += (double)mc->wbytes[i];
			wend = mc->w1[i] > wend ? mc->w1[i] : wend;
		}
		w[k] = wb * 8 / (wend - t0) / 1e9;
		for (unsigned i = 0; i < mc->nr; i++) {
			double g = (double)mc->rbytes[i] * 8 /
				   (mc->r1[i] - t0) / 1e9;

			lo[k] = g < lo[k] ? g : lo[k];
			hi[k] = g > hi[k] ? g : hi[k];
			mean += (double)mc->rbytes[i] / mc->nr;
		}
		dr[k] = 1 - mean / ((double)mc->total * mc->nw);
	}
	f->wgbps = bench_median(w, runs);
	f->rmin = bench_median(lo, runs);
	f->rmax = bench_median(hi, runs);
	f->drop = bench_median(dr, runs);
	return 0;
}

static const char *case_name(int policy)
{
	return policy < 0 ? "pipes" : bw_policy_name((unsigned)policy);
}

/* "--cases pipes,frp": which cases to run (index policy + 1). */
static int parse_cases(const char *v, bool use[5])
{
	char buf[128], *save = NULL;

	if (!v || strlen(v) >= sizeof(buf))
		return -1;
	strcpy(buf, v);
	memset(use, 0, 5 * sizeof(bool));
	for (char *t = strtok_r(buf, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		int p = strcmp(t, "pipes") ? bw_policy_parse(t) : -1;

		if (p < -1)
			return -1;
		use[p + 1] = true;
	}
	return 0;
}

/* "--readers 1,4": counts from 1 to max. Returns how many, or -1. */
static int parse_counts(const char *v, unsigned max, unsigned *out)
{
	size_t c[8];
	int n = v ? bench_parse_sizes(v, c, 8) : -1;

	for (int i = 0; i < n; i++) {
		if (c[i] < 1 || c[i] > max)
			return -1;
		out[i] = (unsigned)c[i];
	}
	return n;
}

int bench_multi_main(int argc, char **argv)
{
	struct bench_opts o = {.runs = 5};
	unsigned readers[8] = {1, 2, 4, 8}, writers[8] = {1, 2, 4};
	int nrd = 4, nwr = 3, ncpu = bench_ncpus();
	bool use[5] = {true, true, true, true, true};
	struct mc mc;
	bool warned = false;
	uint32_t batch = 0;
	const char *v;

	for (int i = 1; i < argc; i++) {
		int t = bench_common_opt(argc, argv, &i, &o);

		if (t < 0)
			return 1;
		if (t == 1)
			continue;
		if (cli_opt(argc, argv, &i, "--cases", &v)) {
			if (parse_cases(v, use) < 0)
				return cli_fail("--cases: a list of pipes, "
						"lossless, srp, mrp, frp");
		} else if (cli_opt(argc, argv, &i, "--readers", &v)) {
			nrd = parse_counts(v, MAXR, readers);
			if (nrd <= 0)
				return cli_fail("--readers: a list of counts "
						"from 1 to %d", MAXR);
		} else if (cli_opt(argc, argv, &i, "--writers", &v)) {
			nwr = parse_counts(v, MAXW, writers);
			if (nwr <= 0)
				return cli_fail("--writers: a list of counts "
						"from 1 to %d", MAXW);
		} else if (cli_opt(argc, argv, &i, "--wake-batch", &v)) {
			if (cli_wake_batch(v, &batch))
				return 1;
		} else {
			return cli_fail("unknown option '%s' (--runs N, --quick, "
					"--json, --cases, --readers, --writers, "
					"--wake-batch)",
					argv[i]);
		}
	}
	if (o.runs > 64)
		return cli_fail("--runs: at most 64 for this benchmark");
	memset(&mc, 0, sizeof(mc));
	mc.wake_batch = batch;
	snprintf(mc.ring, sizeof(mc.ring), "bench-mc-%d", (int)getpid());
	mc.total = o.quick ? (32u << 20) : (256u << 20);
	mc.cpu_w = 0;
	mc.cpu_r = ncpu > 1 ? ncpu - 1 : 0;
	fprintf(o.json ? stderr : stdout,
		"# beltway bench multiconsumer: %d runs per figure, median "
		"reported; %llu MiB per writer in %d-byte writes, %u KiB ring;\n"
		"# writers pinned to CPU %d, readers to CPU %d (%d CPUs); "
		"Gbit/s; drop = share of records the average reader missed;\n"
		"# readers woken %s\n",
		o.runs, (unsigned long long)(mc.total >> 20), REC, RING >> 10,
		mc.cpu_w, mc.cpu_r, ncpu,
		batch > 1 ? "once per --wake-batch writes" : "on every write");
	if (!o.json)
		printf("%-9s %7s %7s %10s %10s %10s %7s\n", "POLICY", "READERS",
		       "WRITERS", "WRITER", "READ_MIN", "READ_MAX", "DROP");
	for (int pol = -1; pol <= BW_POLICY_FRP; pol++) {
		if (!use[pol + 1])
			continue;
		for (int ri = 0; ri < nrd; ri++) {
			for (int wi = 0; wi < nwr; wi++) {
				unsigned wn = writers[wi];
				struct fig f;

				/* multi-producer rows: lossless, one reader */
				if (wn > 1 && (readers[ri] != 1 ||
					       pol != BW_POLICY_LOSSLESS))
					continue;
				mc.policy = pol;
				mc.nr = readers[ri];
				mc.nw = wn;
				if (mc.nr >= (unsigned)ncpu && !warned && !o.json) {
					printf("# from %u readers on, readers "
					       "outnumber the CPUs they share\n",
					       mc.nr);
					warned = true;
				}
				if (run_case(&mc, o.runs, &f) < 0)
					return 1;
				if (o.json)
					printf("{\"suite\":\"multiconsumer\","
					       "\"case\":\"%s\",\"readers\":%u,"
					       "\"writers\":%u,\"writer_gbps\":%.3f,"
					       "\"reader_gbps_min\":%.3f,"
					       "\"reader_gbps_max\":%.3f,"
					       "\"drop_rate\":%.4f}\n",
					       case_name(pol), mc.nr, mc.nw, f.wgbps,
					       f.rmin, f.rmax, f.drop);
				else
					printf("%-9s %7u %7u %10.2f %10.2f %10.2f "
					       "%6.1f%%\n",
					       case_name(pol), mc.nr, mc.nw, f.wgbps,
					       f.rmin, f.rmax, f.drop * 100);
				fflush(stdout);
			}
		}
	}
	return 0;
}
