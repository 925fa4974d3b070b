/* SPDX-License-Identifier: MIT */
/* Shared by the beltway command's verbs. Uses only the public API. */
#ifndef BW_CLI_H
#define BW_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <beltway/beltway.h>

extern const char *cli_verb;

/* Prints "beltway VERB: message" to stderr and returns 1 (the exit status). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same, appending bw_strerror_last() for a failed library call r. */
int cli_fail_bw(int r, const char *what);
/* Parses "4096", "64K", "4M", "1G". Returns 0 or -1. */
int cli_parse_size(const char *s, uint64_t *out);
int cli_parse_uint(const char *s, unsigned long max, unsigned long *out);
/* Parses the value of --wake-batch (bw_ring_opts.wake_batch). Returns 0,
 * or 1 after printing the error. */
int cli_wake_batch(const char *v, uint32_t *out);
/* True when argv[i] is "--name" and consumes its value into *val. */
bool cli_opt(int argc, char **argv, int *i, const char *name, const char **val);
double cli_now(void);
/* Writes all n bytes (restarting on EINTR); 0 or -errno. */
int cli_write_all(int fd, const void *p, size_t n);

int bench_local_main(int argc, char **argv);
int bench_splice_main(int argc, char **argv);
int bench_fabric_main(int argc, char **argv);
int bench_multi_main(int argc, char **argv);
int bench_ringsize_main(int argc, char **argv);
int bench_layout_main(int argc, char **argv);
int bench_scaling_main(int argc, char **argv);
int bench_shadow_main(int argc, char **argv);
int demo_main(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_tail(int argc, char **argv);
int cmd_push(int argc, char **argv);

#endif
