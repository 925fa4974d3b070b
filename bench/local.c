/* SPDX-License-Identifier: MIT */
/*
 * beltway bench local: streaming between two processes, Beltway against
 * Unix pipes and a bare shared-memory ring, in one run.
 *
 * Each case forks a writer and a reader, pinned to different CPUs where
 * there are two; both wait at a start line, and the time runs from the start
 * signal to the reader's last byte. Each figure is the median of --runs runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tools/cli.h"
#include "bench.h"

/* ---- one case: a writer and a reader process ------------------------------ */

struct run {
	size_t call;	/* bytes per call */
	uint64_t total; /* bytes per run */
	uint64_t ring;	/* ring capacity */
	/* Beltway */
	struct bw_stream *end[2];
	/* pipes */
	int pfd[2];
	/* the limit */
	struct lim *lim;
};

struct lim {
	_Alignas(128) _Atomic uint64_t wpos;
	_Alignas(128) _Atomic uint64_t rpos;
	_Alignas(128) uint8_t data[];
};

struct kase {
	const char *name;
	int (*setup)(struct run *r);
	void (*writer)(struct run *r, const uint8_t *src); /* in the child */
	uint64_t (*reader)(struct run *r, uint8_t *dst);   /* in the child */
	void (*close_w)(struct run *r); /* drop the writer's end in the reader */
	void (*close_r)(struct run *r); /* and the reader's in the writer */
	void (*teardown)(struct run *r);
};

static void die(const char *what, int r)
{
	fprintf(stderr, "beltway bench local: %s: %s\n", what,
		r < 0 ? (bw_strerror_last()[0] ? bw_strerror_last()
					       : strerror(-r))
		      : strerror(errno));
	_exit(3);
}

/* Beltway: an anonymous pipe ring, shared with the children by bw_fork(). */
static int bw_setup(struct run *r)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = r->ring;
	return bw_pipe(r->end, &o);
}

static void bw_close_w(struct run *r)
{
	bw_stream_close(r->end[1]);
}

static void bw_close_r(struct run *r)
{
	bw_stream_close(r->end[0]);
}

/* The parent's ends were dropped after forking: nothing left to free. */
static void no_teardown(struct run *r)
{
	(void)r;
}

static void rw_writer(struct run *r, const uint8_t *src)
{
	for (uint64_t done = 0; done < r->total; done += r->call) {
		ssize_t n = bw_stream_write(r->end[1], src, r->call);

		if (n != (ssize_t)r->call)
			die("write", (int)n);
	}
	bw_stream_close(r->end[1]);
}

static uint64_t rw_reader(struct run *r, uint8_t *dst)
{
	uint64_t got = 0, acc = 0;

	while (got < r->total) {
		ssize_t n = bw_stream_read(r->end[0], dst, r->call);

		if (n <= 0)
			die("read", (int)n);
		got += (uint64_t)n;
		acc += dst[0];
	}
	return acc;
}

static void pp_writer(struct run *r, const uint8_t *src)
{
	for (uint64_t done = 0; done < r->total; done += r->call) {
		void *p;
		ssize_t n = bw_stream_poke(r->end[1], &p, r->call);

		if (n != (ssize_t)r->call)
			die("poke", (int)n);
		memcpy(p, src, r->call);
	}
	bw_stream_close(r->end[1]);
}

static uint64_t pp_reader(struct run *r, uint8_t *dst)
{
	uint64_t got = 0, acc = 0;

	(void)dst;
	while (got < r->total) {
		const void *p;
		ssize_t n = bw_stream_peek(r->end[0], &p, r->call);

		if (n <= 0)
			die("peek", (int)n);
		acc ^= bench_touch(p, (size_t)n);
		got += (uint64_t)n;
	}
	return acc;
}

/* Unix pipes */
static int pipe_setup_common(struct run *r, bool max)
{
	if (pipe(r->pfd) < 0)
		return -errno;
	if (max) {
		FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
		int sz = 1 << 20;

		if (f) {
			if (fscanf(f, "%d", &sz) != 1)
				sz = 1 << 20;
			fclose(f);
		}
		if (fcntl(r->pfd[1], F_SETPIPE_SZ, sz) < 0)
			return -errno;
	}
	return 0;
}

static int pipe_setup(struct run *r)
{
	return pipe_setup_common(r, false);
}

static int pipe_max_setup(struct run *r)
{
	return pipe_setup_common(r, true);
}

static void pipe_close_w(struct run *r)
{
	close(r->pfd[1]);
}

static void pipe_close_r(struct run *r)
{
	close(r->pfd[0]);
}


static void pipe_writer(struct run *r, const uint8_t *src)
{
	for (uint64_t done = 0; done < r->total;) {
		ssize_t n = write(r->pfd[1], src, r->call);

		if (n <= 0)
			die("pipe write", 0);
		done += (uint64_t)n;
	}
	close(r->pfd[1]);
}

static uint64_t pipe_reader(struct run *r, uint8_t *dst)
{
	uint64_t got = 0, acc = 0;

	while (got < r->total) {
		ssize_t n = read(r->pfd[0], dst, r->call);

		if (n <= 0)
			die("pipe read", 0);
		got += (uint64_t)n;
		acc += dst[0];
	}
	return acc;
}

/* The limit: a bare SPSC ring in shared memory, memcpy in and out, each side
 * caching the other's position and publishing its own every 16 KiB. */
#define LIM_BATCH (16u << 10)

static int lim_setup(struct run *r)
{
	size_t len = sizeof(struct lim) + r->ring;

	r->lim = mmap(NULL, len, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (r->lim == MAP_FAILED)
		return -errno;
	atomic_init(&r->lim->wpos, 0);
	atomic_init(&r->lim->rpos, 0);
	return 0;
}

static void lim_nop(struct run *r)
{
	(void)r;
}

static void lim_teardown(struct run *r)
{
	munmap(r->lim, sizeof(struct lim) + r->ring);
}

static void lim_writer(struct run *r, const uint8_t *src)
{
	struct lim *l = r->lim;
	uint64_t w = 0, rc = 0, mask = r->ring - 1, unpub = 0;

	while (w < r->total) {
		while (r->ring - (w - rc) < r->call)
			rc = atomic_load_explicit(&l->rpos, memory_order_acquire);
		memcpy(l->data + (w & mask), src, r->call);
		w += r->call;
		unpub += r->call;
		if (unpub >= LIM_BATCH || w >= r->total) {
			atomic_store_explicit(&l->wpos, w, memory_order_release);
			unpub = 0;
		}
	}
}

static uint64_t lim_reader(struct run *r, uint8_t *dst)
{
	struct lim *l = r->lim;
	uint64_t rd = 0, wc = 0, mask = r->ring - 1, unpub = 0, acc = 0;

	while (rd < r->total) {
		while (wc - rd < r->call)
			wc = atomic_load_explicit(&l->wpos, memory_order_acquire);
		memcpy(dst, l->data + (rd & mask), r->call);
		acc += dst[0];
		rd += r->call;
		unpub += r->call;
		if (unpub >= LIM_BATCH) {
			atomic_store_explicit(&l->rpos, rd, memory_order_release);
			unpub = 0;
		}
	}
	return acc;
}

static const struct kase kases[] = {
	{"rw", bw_setup, rw_writer, rw_reader, bw_close_w, bw_close_r,
	 no_teardown},
	{"peekpoke", bw_setup, pp_writer, pp_reader, bw_close_w, bw_close_r,
	 no_teardown},
	{"pipe", pipe_setup, pipe_writer, pipe_reader, pipe_close_w,
	 pipe_close_r, no_teardown},
	{"pipe_max", pipe_max_setup, pipe_writer, pipe_reader, pipe_close_w,
	 pipe_close_r, no_teardown},
	{"limit", lim_setup, lim_writer, lim_reader, lim_nop, lim_nop,
	 lim_teardown},
};
#define NKASES (sizeof(kases) / sizeof(kases[0]))

static void wait_byte(int fd)
{
	char c;

	while (read(fd, &c, 1) < 0 && errno == EINTR)
		;
}

/* Runs one case once. Returns seconds from start signal to last byte read. */
static double run_once(const struct kase *k, struct run *r, bool pin)
{
	int ready[2], go[2], res[2];
	pid_t wp, rp;
	double t0, t1 = 0;
	int st, rc;

	if (pipe(ready) < 0 || pipe(go) < 0 || pipe(res) < 0)
		die("pipe", 0);
	rc = k->setup(r);
	if (rc < 0)
		die(k->name, rc);
	wp = bw_fork();
	if (wp == 0) {
		uint8_t *src = aligned_alloc(4096, (r->call + 4095) / 4096 * 4096);

		if (pin)
			bench_pin(0);
		memset(src, 0x5a, r->call);
		k->close_r(r);
		if (write(ready[1], "w", 1) != 1)
			_exit(3);
		wait_byte(go[0]);
		k->writer(r, src);
		_exit(0);
	}
	rp = bw_fork();
	if (rp == 0) {
		uint8_t *dst = aligned_alloc(4096, (r->call + 4095) / 4096 * 4096);
		volatile uint64_t sink;
		double end;

		if (pin)
			bench_pin(1);
		k->close_w(r);
		if (write(ready[1], "r", 1) != 1)
			_exit(3);
		wait_byte(go[0]);
		sink = k->reader(r, dst);
		(void)sink;
		end = cli_now();
		if (write(res[1], &end, sizeof(end)) != sizeof(end))
			_exit(3);
		_exit(0);
	}
	if (wp < 0 || rp < 0)
		die("fork", wp < 0 ? wp : rp);
	k->close_w(r);
	k->close_r(r);
	wait_byte(ready[0]);
	wait_byte(ready[0]);
	t0 = cli_now();
	if (write(go[1], "gg", 2) != 2)
		die("start", 0);
	if (read(res[0], &t1, sizeof(t1)) != sizeof(t1))
		t1 = 0;
	waitpid(wp, &st, 0);
	rc = WIFEXITED(st) && WEXITSTATUS(st) == 0;
	waitpid(rp, &st, 0);
	rc = rc && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	k->teardown(r);
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	close(res[0]);
	close(res[1]);
	if (!rc || t1 <= t0) {
		fprintf(stderr, "beltway bench local: case %s failed\n", k->name);
		exit(3);
	}
	return t1 - t0;
}

static uint64_t bytes_for(size_t call, bool quick)
{
	uint64_t b = call <= 64 ? 128u << 20 : call <= 1024 ? 512u << 20
				: call <= 4096 ? 1024u << 20 : 2048u << 20;

	return quick ? b / 16 : b;
}

static int parse_cases(const char *s, bool *use)
{
	char buf[256], *tok, *save = NULL;

	for (size_t k = 0; k < NKASES; k++)
		use[k] = false;
	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		size_t k;

		for (k = 0; k < NKASES && strcmp(kases[k].name, tok); k++)
			;
		if (k == NKASES)
			return -1;
		use[k] = true;
	}
	return 0;
}

int bench_local_main(int argc, char **argv)
{
	struct bench_opts o = {.runs = 5, .nsizes = 4,
			       .sizes = {64, 1024, 4096, 65536}};
	double gbps[NKASES][16], mops[NKASES][16];
	double xpipe[NKASES][16], xlimit[NKASES][16];
	int ncpu = bench_ncpus();
	bool pin = ncpu >= 2;
	bool use[NKASES];
	uint64_t ring = BW_RING_DEFAULT_SIZE;
	const char *v;

	for (size_t k = 0; k < NKASES; k++)
		use[k] = true;
	for (int i = 1; i < argc; i++) {
		int r = bench_common_opt(argc, argv, &i, &o);

		if (r < 0)
			return 1;
		if (r > 0)
			continue;
		if (cli_opt(argc, argv, &i, "--cases", &v)) {
			if (!v || parse_cases(v, use) < 0)
				return cli_fail("--cases: a list of rw, peekpoke, "
						"pipe, pipe_max, limit");
		} else if (cli_opt(argc, argv, &i, "--ring", &v)) {
			if (!v || cli_parse_size(v, &ring) < 0 || ring < 4096 ||
			    (ring & (ring - 1)))
				return cli_fail("--ring: a power of two >= 4096");
		} else {
			return cli_fail("unknown option '%s' (see 'beltway "
					"bench --help')",
					argv[i]);
		}
	}
	const size_t *sizes = o.sizes;
	int nsizes = o.nsizes, runs = o.runs;
	bool json = o.json, quick = o.quick, verbose = o.verbose;

	for (int s = 0; s < nsizes; s++)
		if (sizes[s] > ring / 2)
			return cli_fail("call size %zu is more than half the "
					"ring (%llu)",
					sizes[s], (unsigned long long)ring);
	signal(SIGPIPE, SIG_IGN);
	fprintf(json ? stderr : stdout,
		"# beltway bench local: %d runs per figure, median reported; "
		"ring %llu bytes\n# %s\n# this machine is noisy (shared, %d "
		"CPUs): compare figures of one run, not across runs;\n"
		"# x pipe and x limit are medians of the ratios within each "
		"run\n",
		runs, (unsigned long long)ring,
		pin ? "writer pinned to CPU 0, reader to CPU 1"
		    : "one CPU: writer and reader not pinned",
		ncpu);
	/* Runs are interleaved across cases, so a noisy spell of the machine
	 * hits every case of a size alike and the ratios stay meaningful. */
	for (int s = 0; s < nsizes; s++) {
		static double t[NKASES][1000];
		struct run r = {.call = sizes[s], .ring = ring};

		r.total = bytes_for(sizes[s], quick) / sizes[s] * sizes[s];
		for (int i = 0; i < runs; i++)
			for (size_t k = 0; k < NKASES; k++) {
				if (!use[k])
					continue;
				t[k][i] = run_once(&kases[k], &r, pin);
				if (verbose)
					fprintf(stderr, "# %s %zu run %d: %.3f GB/s\n",
						kases[k].name, sizes[s], i,
						(double)r.total / t[k][i] / 1e9);
			}
		/* Ratios pair the cases of one run (before the medians sort
		 * the times): a spell that slows a whole run cancels out. */
		for (size_t k = 0; k < NKASES; k++) {
			if (!use[k])
				continue;
			xpipe[k][s] = use[2] ? bench_paired(t[k], t[2], runs) : 0;
			xlimit[k][s] = use[4] ? bench_paired(t[k], t[4], runs) : 0;
		}
		for (size_t k = 0; k < NKASES; k++) {
			double sec;

			if (!use[k])
				continue;
			sec = bench_median(t[k], runs);

			gbps[k][s] = (double)r.total / sec / 1e9;
			mops[k][s] = (double)r.total / sizes[s] / sec / 1e6;
			if (json) {
				printf("{\"suite\":\"local\",\"case\":\"%s\","
				       "\"size\":%zu,\"gbps\":%.4f,\"mops\":%.4f}\n",
				       kases[k].name, sizes[s], gbps[k][s],
				       mops[k][s]);
				fflush(stdout);
			}
		}
	}
	if (json)
		return 0;
	printf("\n%-9s %8s %9s %10s %8s %8s\n", "case", "size", "GB/s",
	       "Mcalls/s", "x pipe", "x limit");
	for (int s = 0; s < nsizes; s++) {
		for (size_t k = 0; k < NKASES; k++) {
			if (!use[k])
				continue;
			printf("%-9s %8zu %9.3f %10.3f", kases[k].name, sizes[s],
			       gbps[k][s], mops[k][s]);
			if (use[2])
				printf(" %8.2f", xpipe[k][s]);
			else
				printf(" %8s", "-");
			if (use[4])
				printf(" %8.2f", xlimit[k][s]);
			printf("\n");
		}
		printf("\n");
	}
	return 0;
}

/* ---- beltway bench ringsize (thesis Figure 4.11) ------------------------- */

/*
 * Ring size x call size, each from 64 B to 64 MiB (rings from 4 KiB, the
 * smallest): the read case writes and reads (copies at both ends), the
 * peek case pokes and peeks (no copy). A call larger than the ring is split
 * by write and cut short by read; a poke or peek span cannot exceed the
 * ring, so the peek case stops at half the ring. Each cell is the median
 * of --runs runs, the two cases interleaved.
 */
int bench_ringsize_main(int argc, char **argv)
{
	struct bench_opts o = {.runs = 5, .nsizes = 11,
			       .sizes = {64, 256, 1024, 4096, 16384, 65536,
					 262144, 1u << 20, 4u << 20, 16u << 20,
					 64u << 20}};
	size_t rings[16] = {4096, 16384, 65536, 262144, 1u << 20, 4u << 20,
			    16u << 20, 64u << 20};
	int nrings = 8, ncpu = bench_ncpus();
	static double g[2][16][16];
	bool pin = ncpu >= 2;
	const char *v;

	for (int i = 1; i < argc; i++) {
		int r = bench_common_opt(argc, argv, &i, &o);

		if (r < 0)
			return 1;
		if (r > 0)
			continue;
		if (cli_opt(argc, argv, &i, "--rings", &v)) {
			nrings = v ? bench_parse_sizes(v, rings, 16) : -1;
			for (int k = 0; k < nrings; k++)
				if (rings[k] < 4096 || (rings[k] & (rings[k] - 1)))
					nrings = -1;
			if (nrings <= 0)
				return cli_fail("--rings: powers of two from 4K to "
						"64M, e.g. 64K,4M");
		} else {
			return cli_fail("unknown option '%s' (--rings LIST, "
					"--sizes LIST, --runs N, --quick, "
					"--json, --verbose)",
					argv[i]);
		}
	}
	signal(SIGPIPE, SIG_IGN);
	fprintf(o.json ? stderr : stdout,
		"# beltway bench ringsize: %d runs per figure, median "
		"reported; GB/s\n# %s; read: write + read, peek: poke + peek "
		"(peek only up to half the ring)\n",
		o.runs,
		pin ? "writer pinned to CPU 0, reader to CPU 1"
		    : "one CPU: writer and reader not pinned");
	for (int ri = 0; ri < nrings; ri++) {
		for (int s = 0; s < o.nsizes; s++) {
			static double t[2][1000];
			struct run r = {.call = o.sizes[s], .ring = rings[ri]};
			uint64_t b = o.quick ? 32u << 20 : 256u << 20;
			bool peek = o.sizes[s] <= rings[ri] / 2;

			if (b < 8 * (uint64_t)o.sizes[s])
				b = 8 * (uint64_t)o.sizes[s];
			r.total = b / o.sizes[s] * o.sizes[s];
			for (int i = 0; i < o.runs; i++)
				for (int k = 0; k < 1 + peek; k++)
					t[k][i] = run_once(&kases[k], &r, pin);
			for (int k = 0; k < 2; k++) {
				g[k][ri][s] = k > peek
						      ? 0
						      : (double)r.total /
								bench_median(t[k], o.runs) /
								1e9;
				if (o.json && g[k][ri][s] > 0)
					printf("{\"suite\":\"ringsize\",\"case\":"
					       "\"%s\",\"ring_bytes\":%zu,"
					       "\"size\":%zu,\"gbps\":%.4f}\n",
					       k ? "peek" : "read", rings[ri],
					       o.sizes[s], g[k][ri][s]);
				if (o.verbose && g[k][ri][s] > 0)
					fprintf(stderr, "# %s ring %zu call %zu: "
							"%.3f GB/s\n",
						k ? "peek" : "read", rings[ri],
						o.sizes[s], g[k][ri][s]);
			}
			fflush(stdout);
		}
	}
	if (o.json)
		return 0;
	for (int k = 0; k < 2; k++) {
		printf("\n%s: GB/s by ring size (rows) and call size "
		       "(columns)\n%-6s",
		       k ? "peek" : "read", "ring");
		for (int s = 0; s < o.nsizes; s++)
			printf(" %7s", bench_size_name(o.sizes[s]));
		printf("\n");
		for (int ri = 0; ri < nrings; ri++) {
			printf("%-6s", bench_size_name(rings[ri]));
			for (int s = 0; s < o.nsizes; s++)
				if (g[k][ri][s] > 0)
					printf(" %7.2f", g[k][ri][s]);
				else
					printf(" %7s", "-");
			printf("\n");
		}
	}
	return 0;
}
