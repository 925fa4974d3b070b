/* SPDX-License-Identifier: MIT */
/* Test helpers: an isolated ring directory, patterned data, CUnit running. */
#ifndef BWT_HELPERS_H
#define BWT_HELPERS_H

#include <CUnit/CUnit.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <beltway/beltway.h>

#define BWT_SKIP 77

/* Points BELTWAY_DIR at a fresh directory removed at exit. Returns its path. */
const char *bwt_ring_dir(void);
/* The byte at stream position pos of stream `seed`. */
static inline uint8_t bwt_byte(uint64_t pos, uint32_t seed)
{
	uint64_t x = (pos >> 3) * 0x9e3779b97f4a7c15ull ^ seed;

	x ^= x >> 29;
	return (uint8_t)(x >> (8 * (pos & 7)));
}
void bwt_fill(void *p, size_t n, uint64_t pos, uint32_t seed);
/* Returns the offset of the first wrong byte, or -1 when all are right. */
ssize_t bwt_verify(const void *p, size_t n, uint64_t pos, uint32_t seed);
uint64_t bwt_fold(uint64_t h, const void *p, size_t n);
#define BWT_FOLD_INIT 14695981039346656037ull

/* Waits for pid; returns its exit status, or 128 + signal. */
int bwt_wait(pid_t pid);
/* Starts a fabric server on 127.0.0.1 in a child (only `names` exported
 * when given); returns its pid and sets *port. */
pid_t bwt_server_start(const char *prov, uint32_t timeout_ms,
		       const char *const *names, int *port);
/* The same, and the server's loop calls turn(s) every 20 ms or so. */
struct bw_server;
pid_t bwt_server_start_turns(const char *prov, uint32_t timeout_ms,
			     const char *const *names, int *port,
			     void (*turn)(struct bw_server *s));
/* Kills the server *pid (if any: > 0) and waits for it; *pid becomes -1.
 * For one a failed test left running: its fatal assertion left before it
 * stopped it, and the next test must not reach it. */
void bwt_server_kill(pid_t *pid);
/* A child that writes total bytes of stream `seed` into NAME in blocks of
 * blk; with a token pipe it writes `window` bytes, then waits for a token
 * byte before each further window. Exits 0 when all was written. */
pid_t bwt_writer_child(const char *name, uint64_t total, size_t blk,
		       uint32_t seed, int tokfd, uint64_t window);
/* Whether descriptor fd (or the epoll set ep holding it, if ep >= 0) of s
 * is quiet after a call on s found nothing (-EAGAIN). Its liveness timer
 * ticks every wait slice (200 ms), a spurious wakeup by design, and may
 * tick at any moment: while the descriptor is readable, the call is made
 * again (it must find nothing: a read of 1, or a write of n from buf) and
 * uses the tick up, up to 4 times. One that stays readable through that
 * is readable for another reason. */
bool bwt_quiet(int fd, int ep, struct bw_stream *s, const void *buf,
	       size_t n);
/* Records that part of a test could not run here (a missing resource), and
 * why. A binary with a skip and no failure exits 77: a visible skip, never a
 * pass. */
void bwt_skip(const char *why);
/* Runs the suites registered by reg(); returns the exit status for main:
 * 1 on any failure, else 77 if anything was skipped, else 0. */
int bwt_main(const char *name, void (*reg)(void));
/* Adds a test to the current suite. */
void bwt_add(const char *name, void (*fn)(void));
void bwt_suite(const char *name);

#endif
