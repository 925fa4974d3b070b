/* SPDX-License-Identifier: MIT */
/*
 * beltway bench fabric: a ring streamed to a remote reader by pull
 * (one-sided reads) and into a remote ring by push (one-sided writes), on
 * loopback, per provider and block size; in the same run the peers on the
 * same transport: fi_pingpong (libfabric-bin), ucx_perftest -t ucp_put_bw
 * (ucx-utils) and, for tcp, iperf3 (the ceiling of the tcp path here).
 * Also the local writer's CPU use with 1 and 4 pull readers.
 *
 * Pull: the writer writes V bytes in blocks; each reader hands back a token
 * over a pipe for every half ring it has consumed, and the writer waits for
 * the tokens of every reader before writing on, so the figure is the
 * readers' fetch rate and nothing is lost (the fabric itself carries no
 * feedback). Push: this process writes V bytes into a remote ring, lossless,
 * while a local reader on the "remote" side consumes them.
 *
 * Nothing is pinned: the server, the writer and the readers are separate
 * processes on whatever CPUs there are (said in the output).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tools/cli.h"
#include "bench.h"

#define RING (16u << 20)
#define MAXR 8

struct fopts {
	struct bench_opts b;
	const char *provs[4];
	int nprovs;
	uint64_t volume;
};

static char url_base[64];

static void emit(const struct fopts *o, const char *cs, const char *prov,
		 size_t size, int readers, double gbps, double wcpu)
{
	if (o->b.json) {
		char c[32];

		/* writer_cpu is measured for pull only: null elsewhere */
		if (wcpu >= 0)
			snprintf(c, sizeof(c), "%.4f", wcpu);
		else
			snprintf(c, sizeof(c), "null");
		printf("{\"suite\":\"fabric\",\"case\":\"%s\",\"provider\":\"%s\","
		       "\"size\":%zu,\"readers\":%d,\"gbps\":%.3f,"
		       "\"writer_cpu\":%s}\n",
		       cs, prov, size, readers, gbps, c);
	} else {
		printf("%-12s %-8s %9zu %8d %10.2f", cs, prov, size, readers, gbps);
		if (wcpu >= 0)
			printf(" %11.1f%%", 100 * wcpu);
		printf("\n");
	}
	fflush(stdout);
}

/* ---- the server ------------------------------------------------------------- */

static double now(void)
{
	return cli_now();
}

/* ---- pull ------------------------------------------------------------------ */

/* A remote reader: reads volume bytes, a token per half ring. */
static void pull_reader(const char *prov, uint64_t volume, size_t size,
			int tok, int ready)
{
	struct bw_fabric_opts fo = BW_FABRIC_OPTS_INIT;
	char url[128];
	struct bw_remote *r;
	struct bw_remote_stat st;
	uint64_t got = 0, next = RING / 2;
	char *buf = malloc(size);

	fo.provider = prov;
	snprintf(url, sizeof(url), "%s/bfpull", url_base);
	if (!buf || bw_remote_open(url, BW_READ, &fo, &r) < 0) {
		fprintf(stderr, "bench fabric: pull reader: %s\n", bw_strerror_last());
		_exit(2);
	}
	if (write(ready, "r", 1) != 1)
		_exit(3);
	while (got < volume) {
		ssize_t n = bw_remote_read(r, buf, size);

		if (n == -ESTALE)
			continue;
		if (n <= 0)
			_exit(4);
		bench_touch(buf, (size_t)n);
		got += (uint64_t)n;
		while (got >= next) {
			if (write(tok, "t", 1) != 1)
				_exit(5);
			next += RING / 2;
		}
	}
	bw_remote_stat(r, &st);
	bw_remote_close(r);
	_exit(st.lost ? 6 : 0);
}

/* The pull case's writer: opens the ring, then fills `volume` bytes in
 * place (poke_acquire, a memset per block: the data is written once, into
 * the ring), waiting for every reader's token per half ring. Sends its CPU
 * seconds and the monotonic time from its first block to its close on
 * `out` (opening, which faults the ring in, is left out). */
static void pull_writer(uint64_t volume, size_t size, int readers,
			int tok[][2], int out)
{
	struct bw_stream *s;
	uint64_t pos = 0, next = RING / 2;
	struct timespec c0, c1;
	double m[2];
	char c;

	if (bw_stream_open("bfpull", BW_WRITE | BW_NOWAIT, &s) < 0)
		_exit(2);
	m[1] = now();
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
	while (pos < volume) {
		void *dst;

		if (pos >= next) { /* every reader within half a ring */
			for (int i = 0; i < readers; i++)
				if (read(tok[i][0], &c, 1) != 1)
					_exit(3);
			next += RING / 2;
		}
		if (bw_stream_poke_acquire(s, &dst, size) != (ssize_t)size)
			_exit(4);
		memset(dst, (int)(pos >> 16), size);
		if (bw_stream_poke_complete(s, size))
			_exit(4);
		pos += size;
	}
	bw_stream_close(s);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
	m[0] = (double)(c1.tv_sec - c0.tv_sec) +
	       (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
	_exit(write(out, m, sizeof(m)) == (ssize_t)sizeof(m) ? 0 : 5);
}

/* Returns seconds for volume bytes to reach `readers` remote readers, and
 * the writer's CPU use (fraction of one CPU, from its first block until the
 * last reader is done) in *wcpu; < 0 on failure. */
static double run_pull(const struct fopts *o, const char *prov, size_t size,
		       int readers, double *wcpu)
{
	struct bw_ring_opts ro = BW_RING_OPTS_INIT;
	int tok[MAXR][2], ready[2], res[2];
	double t0, t1, m[2] = {0, 0};
	pid_t rd[MAXR], w;
	int st, bad = 0;
	char c;

	ro.size = RING;
	bw_unlink("bfpull");
	if (bw_mkfifo("bfpull", &ro) < 0 || pipe(ready))
		return -1;
	if (pipe(res)) {
		close(ready[0]);
		close(ready[1]);
		return -1;
	}
	for (int i = 0; i < readers; i++) {
		if (pipe(tok[i]))
			return -1;
		rd[i] = fork();
		if (rd[i] == 0)
			pull_reader(prov, o->volume, size, tok[i][1], ready[1]);
		close(tok[i][1]);
	}
	for (int i = 0; i < readers; i++)
		if (read(ready[0], &c, 1) != 1)
			bad = 1;
	t0 = now();
	w = fork();
	if (w == 0)
		pull_writer(o->volume, size, readers, tok, res[1]);
	close(res[1]);
	for (int i = 0; i < readers; i++) {
		waitpid(rd[i], &st, 0);
		bad |= !WIFEXITED(st) || WEXITSTATUS(st);
	}
	t1 = now();
	waitpid(w, &st, 0);
	bad |= !WIFEXITED(st) || WEXITSTATUS(st);
	bad |= read(res[0], m, sizeof(m)) != (ssize_t)sizeof(m);
	for (int i = 0; i < readers; i++)
		close(tok[i][0]);
	close(res[0]);
	close(ready[0]);
	close(ready[1]);
	*wcpu = t1 > m[1] ? m[0] / (t1 - m[1]) : -1;
	bw_unlink("bfpull");
	return bad ? -1 : t1 - t0;
}

/* ---- push ------------------------------------------------------------------ */

static double run_push(const struct fopts *o, const char *prov, size_t size)
{
	struct bw_fabric_opts fo = BW_FABRIC_OPTS_INIT;
	struct bw_ring_opts ro = BW_RING_OPTS_INIT;
	struct bw_remote *r;
	char url[128], *buf;
	uint64_t pos = 0;
	double t0, t1;
	pid_t rd;
	int st, bad = 0;

	ro.size = RING;
	fo.provider = prov;
	bw_unlink("bfpush");
	if (bw_mkfifo("bfpush", &ro) < 0)
		return -1;
	rd = fork();
	if (rd == 0) {
		struct bw_stream *s;
		uint64_t got = 0;

		if (bw_stream_open("bfpush", BW_READ, &s) < 0)
			_exit(2);
		while (got < o->volume) {
			const void *p;
			ssize_t n = bw_stream_peek(s, &p, 1u << 20);

			if (n <= 0)
				_exit(3);
			bench_touch(p, (size_t)n);
			got += (uint64_t)n;
		}
		_exit(0);
	}
	buf = malloc(size);
	snprintf(url, sizeof(url), "%s/bfpush", url_base);
	if (!buf || bw_remote_open(url, BW_WRITE | BW_REMOTE_LOSSLESS, &fo, &r) < 0) {
		fprintf(stderr, "bench fabric: push: %s\n", bw_strerror_last());
		kill(rd, SIGKILL);
		waitpid(rd, NULL, 0);
		free(buf);
		return -1;
	}
	memset(buf, 0xa5, size);
	t0 = now();
	while (pos < o->volume && !bad) {
		bad = bw_remote_write(r, buf, size) != (ssize_t)size;
		pos += size;
	}
	bad |= bw_remote_flush(r) < 0;
	bw_remote_close(r);
	waitpid(rd, &st, 0);
	t1 = now();
	bad |= !WIFEXITED(st) || WEXITSTATUS(st);
	free(buf);
	bw_unlink("bfpush");
	return bad ? -1 : t1 - t0;
}

/* ---- peers ------------------------------------------------------------------ */

static bool have(const char *cmd)
{
	char c[256];

	snprintf(c, sizeof(c), "command -v %s >/dev/null 2>&1", cmd);
	return system(c) == 0;
}

/* Runs a server command in the background and a client command, and
 * returns the client's line that contains `key`, or "" (static). */
static const char *peer_run(const char *server, const char *client,
			    const char *key)
{
	static char line[1024];
	char cmd[2048], l[1024];
	FILE *f;

	line[0] = '\0';
	snprintf(cmd, sizeof(cmd),
		 "(%s >/dev/null 2>&1 & sp=$!; i=0; "
		 "while [ $i -lt 50 ]; do out=$(%s 2>&1) && break; i=$((i+1)); "
		 "done; echo \"$out\"; kill $sp 2>/dev/null; wait $sp 2>/dev/null)",
		 server, client);
	f = popen(cmd, "r");
	if (!f)
		return line;
	while (fgets(l, sizeof(l), f))
		if (strstr(l, key))
			snprintf(line, sizeof(line), "%s", l);
	pclose(f);
	return line;
}

static double peer_fi_pingpong(const char *prov, size_t size, int iters)
{
	char s[256], c[256];
	const char *l;
	double mbs = -1;
	char b[32], sent[32], ack[32], tot[32], tm[32];

	snprintf(s, sizeof(s), "timeout 60 fi_pingpong -p %s -e rdm -I %d -S %zu",
		 prov, iters, size);
	snprintf(c, sizeof(c), "timeout 60 fi_pingpong -p %s -e rdm -I %d -S %zu "
			       "127.0.0.1", prov, iters, size);
	/* the result line: its #ack column reads "=N" (the header has
	 * "#ack", so no unit suffix can tell them apart: 1m ran twice and
	 * parsed the header) */
	l = peer_run(s, c, "=");
	if (*l && sscanf(l, "%31s %31s %31s %31s %31s %lf", b, sent, ack, tot,
			 tm, &mbs) != 6)
		mbs = -1;
	return mbs < 0 ? -1 : mbs * 8e6 / 1e9;
}

static double peer_ucx(const char *prov, size_t size, int iters)
{
	char s[256], c[256];
	const char *l, *tls = !strcmp(prov, "shm") ? "posix,cma,self" : "tcp";
	double v[8] = {0};

	snprintf(s, sizeof(s), "UCX_TLS=%s timeout 60 ucx_perftest -p 13377", tls);
	snprintf(c, sizeof(c), "UCX_TLS=%s timeout 60 ucx_perftest 127.0.0.1 "
			       "-p 13377 -t ucp_put_bw -s %zu -n %d",
		 tls, size, iters);
	l = peer_run(s, c, "Final:");
	if (!*l || sscanf(l, "Final: %lf %lf %lf %lf %lf %lf", &v[0], &v[1],
			  &v[2], &v[3], &v[4], &v[5]) != 6)
		return -1;
	return v[5] * 1048576.0 * 8 / 1e9; /* MB/s overall, UCX's MB = MiB */
}

static double peer_iperf3(size_t size)
{
	char s[256], c[256];
	const char *l;
	double mbit = -1;
	const char *p;

	snprintf(s, sizeof(s), "timeout 60 iperf3 -s -1 -p 15201");
	snprintf(c, sizeof(c), "timeout 60 iperf3 -c 127.0.0.1 -p 15201 -t 2 -l %zu "
			       "-f m", size);
	l = peer_run(s, c, "receiver");
	p = strstr(l, "MBytes");
	if (!p)
		p = strstr(l, "GBytes");
	if (p && sscanf(p + 6, "%lf", &mbit) != 1)
		mbit = -1;
	return mbit < 0 ? -1 : mbit / 1000;
}

/* ---- main --------------------------------------------------------------------- */

int bench_fabric_main(int argc, char **argv)
{
	struct fopts o = {.b = {.runs = 5}};
	char dir[] = "/dev/shm/bwbench.XXXXXX";
	const char *v;

	for (int i = 1; i < argc; i++) {
		int k = bench_common_opt(argc, argv, &i, &o.b);

		if (k < 0)
			return 1;
		if (k)
			continue;
		if (cli_opt(argc, argv, &i, "--providers", &v) && v) {
			char *t = strdup(v), *save = NULL;

			o.nprovs = 0;
			for (char *p = strtok_r(t, ",", &save); p && o.nprovs < 4;
			     p = strtok_r(NULL, ",", &save))
				o.provs[o.nprovs++] = p;
			continue;
		}
		return cli_fail("unknown option '%s'", argv[i]);
	}
	if (!o.nprovs) {
		o.provs[0] = "tcp";
		o.provs[1] = "shm";
		o.nprovs = 2;
	}
	if (!o.b.nsizes) {
		o.b.sizes[0] = 4096;
		o.b.sizes[1] = 65536;
		o.b.sizes[2] = 1u << 20;
		o.b.nsizes = 3;
	}
	o.volume = o.b.quick ? (32u << 20) : (256u << 20);
	if (!mkdtemp(dir))
		return cli_fail("mkdtemp: %s", strerror(errno));
	setenv("BELTWAY_DIR", dir, 1);
	signal(SIGPIPE, SIG_IGN);
	if (!o.b.json) {
		printf("# beltway bench fabric: loopback, %d run(s) per figure, "
		       "median; %llu MiB per run; ring %u MiB; nothing pinned "
		       "(%d CPUs: server, writer and readers share them)\n",
		       o.b.runs, (unsigned long long)(o.volume >> 20), RING >> 20,
		       bench_ncpus());
		printf("%-12s %-8s %9s %8s %10s %12s\n", "CASE", "PROVIDER",
		       "SIZE", "READERS", "GBIT/S", "WRITER CPU");
	}
	for (int pi = 0; pi < o.nprovs; pi++) {
		const char *prov = o.provs[pi];
		int port;
		pid_t srv = bench_server_start(prov, &port);

		if (srv < 0) {
			fprintf(stderr, "bench fabric: no server on provider %s: "
					"skipped\n", prov);
			continue;
		}
		snprintf(url_base, sizeof(url_base), "127.0.0.1:%d", port);
		for (int si = 0; si < o.b.nsizes; si++) {
			size_t size = o.b.sizes[si];
			double tp[64], tq[64], cpu[64], pe[3][64];
			int iters = (int)((o.b.quick ? (16u << 20) : (128u << 20)) / size);
			static const char *pname[3] = {"fi_pingpong", "ucx_put_bw",
						       "iperf3"};
			static const char *pcmd[3] = {"fi_pingpong", "ucx_perftest",
						      "iperf3"};
			int runs = o.b.runs > 64 ? 64 : o.b.runs;

			for (int r = 0; r < runs; r++) {
				tp[r] = run_pull(&o, prov, size, 1, &cpu[r]);
				tq[r] = run_push(&o, prov, size);
				pe[0][r] = have(pcmd[0]) ? peer_fi_pingpong(prov, size,
									    iters < 10000 ? iters : 10000)
							 : -1;
				pe[1][r] = have(pcmd[1]) ? peer_ucx(prov, size, iters) : -1;
				pe[2][r] = !strcmp(prov, "tcp") && have(pcmd[2])
						   ? peer_iperf3(size)
						   : -1;
				if (o.b.verbose)
					fprintf(stderr, "run %d: pull %.3fs push %.3fs "
							"pingpong %.2f ucx %.2f iperf3 %.2f\n",
						r, tp[r], tq[r], pe[0][r], pe[1][r],
						pe[2][r]);
			}
			for (int r = 0; r < runs; r++) {
				tp[r] = tp[r] > 0 ? o.volume * 8 / tp[r] / 1e9 : 0;
				tq[r] = tq[r] > 0 ? o.volume * 8 / tq[r] / 1e9 : 0;
			}
			emit(&o, "pull", prov, size, 1, bench_median(tp, runs),
			     bench_median(cpu, runs));
			emit(&o, "push", prov, size, 1, bench_median(tq, runs), -1);
			for (int k = 0; k < 3; k++) {
				if (pe[k][0] < 0) {
					if (k < 2 || !strcmp(prov, "tcp"))
						fprintf(stderr, "bench fabric: peer %s "
								"not run (%s missing or "
								"failed)\n",
							pname[k], pcmd[k]);
					continue;
				}
				emit(&o, pname[k], prov, size, 1,
				     bench_median(pe[k], runs), -1);
			}
		}
		/* writer CPU with 1 and 4 pull readers, 64 KiB blocks */
		for (int rdr = 1; rdr <= 4; rdr += 3) {
			double t[64], c[64];
			int runs = o.b.runs > 64 ? 64 : o.b.runs;

			for (int r = 0; r < runs; r++) {
				t[r] = run_pull(&o, prov, 65536, rdr, &c[r]);
				t[r] = t[r] > 0 ? o.volume * 8 / t[r] / 1e9 : 0;
			}
			emit(&o, "pull", prov, 65536, rdr, bench_median(t, runs),
			     bench_median(c, runs));
		}
		kill(srv, SIGTERM);
		waitpid(srv, NULL, 0);
	}
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		(void)!system(cmd);
	}
	if (!o.b.json && bench_ncpus() < 6)
		printf("# readers, writer and server outnumber the %d CPUs here\n",
		       bench_ncpus());
	return 0;
}
