/* SPDX-License-Identifier: MIT */
/* Benchmark helpers. Benchmarks use only the public API. */
#ifndef BW_BENCH_H
#define BW_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Pins the calling process to cpu (modulo the CPUs available). Returns the
 * CPU, or -1 when pinning is not possible. */
int bench_pin(int cpu);
/* Number of CPUs this process may run on. */
int bench_ncpus(void);
double bench_median(double *v, int n);
/* Reads every byte of p[0..n) and folds them into a value (so the compiler
 * cannot drop the reads). */
uint64_t bench_touch(const void *p, size_t n);
/* Throughput of a case relative to another: the median over runs of the
 * ratio within each run (t: seconds per run). */
double bench_paired(const double *t_case, const double *t_other, int runs);
/* Parses "64,4K,64K" into sizes (each at most 64 MiB). Returns the count,
 * or -1. */
int bench_parse_sizes(const char *s, size_t *sizes, int max);

/* "64", "4K", "64M": a size for a table heading (rotating buffers). */
const char *bench_size_name(size_t n);

/* Starts a fabric server on 127.0.0.1 in a child process; returns its pid
 * and sets *port, or -1. Stop it with SIGTERM (and wait for it). */
pid_t bench_server_start(const char *prov, int *port);

/* The options every benchmark takes. */
struct bench_opts {
	bool json, quick, verbose;
	int runs;
	size_t sizes[16];
	int nsizes;
};

/* Takes argv[*i] if it is one of the common options. Returns 1 when taken,
 * 0 when not one of them, -1 after printing a bad value's error. */
int bench_common_opt(int argc, char **argv, int *i, struct bench_opts *o);

#endif
