/* SPDX-License-Identifier: MIT */
/* Helpers shared by the benchmarks. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tools/cli.h"
#include "bench.h"

int bench_ncpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return 1;
	return CPU_COUNT(&set);
}

int bench_pin(int cpu)
{
	cpu_set_t avail, one;
	int n, k = 0;

	if (sched_getaffinity(0, sizeof(avail), &avail) < 0)
		return -1;
	n = CPU_COUNT(&avail);
	if (n < 2)
		return -1;
	cpu %= n;
	for (int c = 0; c < CPU_SETSIZE; c++) {
		if (!CPU_ISSET(c, &avail))
			continue;
		if (k++ == cpu) {
			CPU_ZERO(&one);
			CPU_SET(c, &one);
			return sched_setaffinity(0, sizeof(one), &one) < 0 ? -1 : c;
		}
	}
	return -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Four independent lanes of 32 bytes, so the loads stream like memcpy's;
 * built for AVX2 too, chosen at run time, as glibc's memcpy is. */
#if defined(__x86_64__) && !defined(__clang__)
__attribute__((target_clones("avx2", "default")))
#endif
uint64_t bench_touch(const void *p, size_t n)
{
	typedef uint64_t v4 __attribute__((vector_size(32), aligned(1)));
	const uint8_t *b = p;
	v4 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
	uint64_t acc = 0;
	size_t i = 0;

	for (; i + 128 <= n; i += 128) {
		a0 ^= *(const v4 *)(b + i);
		a1 ^= *(const v4 *)(b + i + 32);
		a2 ^= *(const v4 *)(b + i + 64);
		a3 ^= *(const v4 *)(b + i + 96);
	}
	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, b + i, 8);
		acc ^= w;
	}
	for (; i < n; i++)
		acc += b[i];
	a0 ^= a1 ^ a2 ^ a3;
	return acc ^ a0[0] ^ a0[1] ^ a0[2] ^ a0[3];
}

/* Throughput of a case relative to another: the median over runs of the
 * ratio within each run (times t, so other / case). */
double bench_paired(const double *t_case, const double *t_other, int runs)
{
	double r[1000];

	for (int i = 0; i < runs; i++)
		r[i] = t_other[i] / t_case[i];
	return bench_median(r, runs);
}

int bench_parse_sizes(const char *s, size_t *sizes, int max)
{
	char buf[256], *tok, *save = NULL;
	int n = 0;

	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok && n < max;
	     tok = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (cli_parse_size(tok, &v) < 0 || v == 0 || v > (64u << 20))
			return -1;
		sizes[n++] = (size_t)v;
	}
	return n;
}


int bench_common_opt(int argc, char **argv, int *i, struct bench_opts *o)
{
	unsigned long ul;
	const char *v;

	if (!strcmp(argv[*i], "--json")) {
		o->json = true;
	} else if (!strcmp(argv[*i], "--quick")) {
		o->quick = true;
	} else if (!strcmp(argv[*i], "--verbose")) {
		o->verbose = true;
	} else if (cli_opt(argc, argv, i, "--runs", &v)) {
		if (!v || cli_parse_uint(v, 1000, &ul) < 0 || ul == 0) {
			cli_fail("--runs: 1 to 1000");
			return -1;
		}
		o->runs = (int)ul;
	} else if (cli_opt(argc, argv, i, "--sizes", &v)) {
		o->nsizes = v ? bench_parse_sizes(v, o->sizes, 16) : -1;
		if (o->nsizes <= 0) {
			cli_fail("--sizes: a list like 64,4K,64K (each at most "
				 "64M)");
			return -1;
		}
	} else {
		return 0;
	}
	return 1;
}

const char *bench_size_name(size_t n)
{
	static char buf[8][24];
	static unsigned next;
	char *b = buf[next++ % 8];

	if (n >= (1u << 20) && n % (1u << 20) == 0)
		snprintf(b, 24, "%zuM", n >> 20);
	else if (n >= 1024 && n % 1024 == 0)
		snprintf(b, 24, "%zuK", n >> 10);
	else
		snprintf(b, 24, "%zu", n);
	return b;
}

static struct bw_server *server;

static void server_term(int sig)
{
	(void)sig;
	bw_server_stop(server); /* a write(2): async-signal-safe */
}

/* The server stops in order on SIGTERM: a provider's resources (shm's
 * regions in /dev/shm) go with it, as they do not when it is killed. */
pid_t bench_server_start(const char *prov, int *port)
{
	int p[2];
	pid_t pid;

	if (pipe(p))
		return -1;
	fflush(stdout); /* not twice */
	pid = fork();
	if (pid == 0) {
		struct bw_fabric_opts fo = BW_FABRIC_OPTS_INIT;
		struct bw_server *s;
		int pt = -1;

		fo.provider = prov;
		close(p[0]);
		if (bw_server_open("127.0.0.1:0", &fo, &s) == 0) {
			struct sigaction sa = {.sa_handler = server_term};

			server = s;
			sigaction(SIGTERM, &sa, NULL);
			pt = bw_server_port(s);
		}
		if (write(p[1], &pt, sizeof(pt)) != sizeof(pt) || pt < 0)
			_exit(1);
		pt = bw_server_run(s, -1) < 0;
		signal(SIGTERM, SIG_IGN); /* the handler's server goes now */
		bw_server_close(s);
		_exit(pt);
	}
	close(p[1]);
	if (read(p[0], port, sizeof(*port)) != sizeof(*port) || *port < 0) {
		close(p[0]);
		waitpid(pid, NULL, 0);
		return -1;
	}
	close(p[0]);
	return pid;
}
