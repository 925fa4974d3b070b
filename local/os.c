/* SPDX-License-Identifier: MIT */
/* Operating-system helpers: futexes, barriers, process liveness, time. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bwi_ring.h"

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

static struct timespec us_to_ts(int64_t us)
{
	struct timespec ts = {.tv_sec = (time_t)(us / 1000000),
			      .tv_nsec = (long)(us % 1000000) * 1000L};
	return ts;
}

/* Shared (not private) futexes: the words live in memory other processes
 * map. Timeouts in microseconds; negative: none. */
int bwi_futex_wait_us(bwi_a32 *w, uint32_t val, int64_t timeout_us)
{
	struct timespec ts = us_to_ts(timeout_us);
	long r = syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val,
			 timeout_us >= 0 ? &ts : NULL, NULL, 0);

	return r < 0 ? -errno : 0;
}

void bwi_futex_wake(bwi_a32 *w)
{
	syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* futex_waitv (Linux 5.16) waits on several shared words at once. */
int bwi_futex_waitv_us(const struct bwi_waitv *v, unsigned n,
		       int64_t timeout_us)
{
	struct futex_waitv fw[FUTEX_WAITV_MAX];
	struct timespec now, ts;
	long r;

	if (n == 0 || n > FUTEX_WAITV_MAX)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		memset(&fw[i], 0, sizeof(fw[i]));
		fw[i].uaddr = (uintptr_t)v[i].word;
		fw[i].val = v[i].val;
		fw[i].flags = FUTEX_32;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	ts = us_to_ts(timeout_us < 0 ? INT64_C(3600000000) : timeout_us);
	ts.tv_sec += now.tv_sec;
	ts.tv_nsec += now.tv_nsec;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	r = syscall(SYS_futex_waitv, fw, n, 0, &ts, CLOCK_MONOTONIC);
	return r < 0 ? -errno : (int)r;
}

bool bwi_barrier_asym;
static pthread_once_t barrier_once = PTHREAD_ONCE_INIT;

static void barrier_setup(void)
{
#ifndef BW_TSAN
	long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

	if (q > 0 && (q & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
	    (q & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) &&
	    !getenv("BELTWAY_NO_MEMBARRIER") &&
	    syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
		    0, 0) == 0)
		bwi_barrier_asym = true;
#endif
}

/* Registers this process for expedited global membarrier, once. A process
 * that cannot (old kernel, seccomp, TSan build) uses full fences on both
 * sides, which is always correct. */
void bwi_barrier_init(void)
{
	pthread_once(&barrier_once, barrier_setup);
}

void bwi_barrier_heavy(void)
{
	bw_smp_mb();
	/* Forces a full barrier on every CPU running a registered process,
	 * which orders the other side's publish before its flag load. A peer
	 * that could not register uses full fences itself. */
	if (bwi_barrier_asym)
		syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0);
}

/* Field 22 of /proc/PID/stat: start time in clock ticks since boot. Zero when
 * the process does not exist or is a zombie (it cannot use a ring). */
uint64_t bwi_starttime(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long st = 0;
	ssize_t n;
	int fd, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: fields resume after the last ')' */
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return 0;
	p += 2;
	if (*p == 'Z' || *p == 'X')
		return 0;
	for (field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (!p || sscanf(p, "%llu", &st) != 1)
		return 0;
	return st ? (uint64_t)st : 1;
}

bool bwi_pid_alive(pid_t pid, uint64_t starttime)
{
	if (pid <= 0)
		return false;
	return bwi_starttime(pid) == starttime;
}

static _Thread_local pid_t self_pid;
static _Thread_local uint64_t self_start;

pid_t bwi_self_pid(void)
{
	pid_t p = getpid();

	if (p != self_pid) {
		self_start = bwi_starttime(p);
		self_pid = p;
	}
	return p;
}

uint64_t bwi_self_starttime(void)
{
	bwi_self_pid();
	return self_start;
}

uint64_t bwi_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bwi_random64(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = bwi_now_ns() ^ ((uint64_t)getpid() << 32);
	return v ? v : 1;
}

/* FNV-1a: the checksum of every shared or wire structure. */
uint32_t bwi_fnv1a(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

/* How long a waiter sleeps before it checks that its peers are alive: the
 * bound on detecting a peer killed without closing. BELTWAY_LIVENESS_MS. */
static int liveness;
static pthread_once_t liveness_once = PTHREAD_ONCE_INIT;

static void liveness_setup(void)
{
	const char *e = getenv("BELTWAY_LIVENESS_MS");

	liveness = e ? atoi(e) : 0;
	if (liveness <= 0 || liveness > 60000)
		liveness = 200;
}

int bwi_liveness_ms(void)
{
	pthread_once(&liveness_once, liveness_setup);
	return liveness;
}
