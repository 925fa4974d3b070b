/* SPDX-License-Identifier: MIT */
/*
 * Permissions: the ring's Unix mode bits decide who may attach, checked when
 * a ring is opened; a process with read but not write permission maps the
 * ring read-only and reads as a tap. Root bypasses mode bits as it does for
 * files, so as root each check runs in a child that became 'nobody'.
 * Also: huge-page rings, where huge pages can be reserved.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

#define NOBODY 65534
#define RING 8192u

static bool can_drop;

static void make(const char *name, unsigned mode)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = RING;
	o.mode = mode;
	bw_unlink(name);
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo(name, &o), 0);
}

/* Starts fn as nobody in a child, given secs to finish; returns its pid. */
static pid_t fork_nobody(int (*fn)(void *), void *arg, unsigned secs)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 ||
		    setuid(NOBODY) < 0)
			_exit(90);
		alarm(secs);
		_exit(fn(arg));
	}
	return pid;
}

/* Runs fn as nobody in a child; returns its exit status (0: all held). */
static int as_nobody(int (*fn)(void *), void *arg)
{
	return bwt_wait(fork_nobody(fn, arg, 20));
}

static int no_access(void *name)
{
	struct bw_stream *s;
	struct bw_ring_info in;

	if (bw_stream_open(name, BW_READ | BW_NOWAIT, &s) != -EACCES)
		return 1;
	if (bw_stream_open(name, BW_WRITE | BW_NOWAIT, &s) != -EACCES)
		return 2;
	if (bw_ring_stat(name, &in, NULL, 0) != -EACCES)
		return 3;
	return 0;
}

static int full_access(void *name)
{
	struct bw_stream *r, *w;
	char c;

	if (bw_stream_open(name, BW_READ | BW_NOWAIT, &r) != 0)
		return 1;
	if (bw_stream_open(name, BW_WRITE, &w) != 0)
		return 2;
	if (bw_stream_write(w, "q", 1) != 1 || bw_stream_read(r, &c, 1) != 1 ||
	    c != 'q')
		return 3;
	bw_stream_close(w);
	bw_stream_close(r);
	return 0;
}

static void test_owner_only(void)
{
	if (!can_drop)
		return;
	make("p600", 0600);
	CU_ASSERT_EQUAL(as_nobody(no_access, "p600"), 0);
	make("p666", 0666);
	CU_ASSERT_EQUAL(as_nobody(full_access, "p666"), 0);
	bw_unlink("p600");
	bw_unlink("p666");
}

/* Group bits apply to the ring's group even when 'other' would allow. */
static void test_group(void)
{
	char path[512];

	if (!can_drop)
		return;
	snprintf(path, sizeof(path), "%s/grp", bw_ring_dir());
	make("grp", 0660);
	CU_ASSERT_EQUAL(chown(path, 0, NOBODY), 0);
	CU_ASSERT_EQUAL(as_nobody(full_access, "grp"), 0);
	CU_ASSERT_EQUAL(chmod(path, 0606), 0);
	CU_ASSERT_EQUAL(as_nobody(no_access, "grp"), 0);
	bw_unlink("grp");
}

/* Read-only: a tap. It reads what is written, cannot write, does not hold
 * the writer back, learns of loss with -ESTALE, and its mapping is
 * read-only (the kernel will not store through a peeked pointer). */
struct tap_arg {
	int go[2], done[2];
};

static int tap_child(void *argp)
{
	struct tap_arg *a = argp;
	struct bw_stream *t, *w;
	struct bw_stream_stat st;
	uint8_t buf[RING];
	const void *p;
	char c;

	if (bw_stream_open("tap", BW_WRITE | BW_NOWAIT, &w) != -EACCES)
		return 1;
	if (bw_stream_open("tap", BW_READ | BW_NOWAIT | BW_FROM_START, &t) != 0)
		return 2;
	if (bw_stream_read(t, buf, 100) != 100 || bwt_verify(buf, 100, 0, 21) != -1)
		return 3;
	/* the writer laps us while we wait */
	if (write(a->done[1], "1", 1) != 1 || read(a->go[0], &c, 1) != 1)
		return 4;
	if (bw_stream_read(t, buf, 100) != -ESTALE)
		return 5;
	if (bw_stream_stat(t, &st) != 0 || st.lost == 0)
		return 6;
	ssize_t n = bw_stream_read(t, buf, sizeof(buf));
	if (n <= 0 || bwt_verify(buf, (size_t)n, st.read_pos, 21) != -1)
		return 7;
	if (bw_stream_lseek(t, -1, SEEK_END) < 0 || bw_stream_peek(t, &p, 1) != 1)
		return 8;
	/* The mapping is read-only: the kernel refuses to store into it. */
	int pp[2];
	if (pipe(pp) < 0 || write(pp[1], "x", 1) != 1)
		return 9;
	if (read(pp[0], (void *)p, 1) != -1 || errno != EFAULT)
		return 10;
	bw_stream_close(t);
	return 0;
}

static void test_tap(void)
{
	struct tap_arg a;
	struct bw_stream *w;
	uint8_t buf[RING];
	pid_t pid;
	char c;

	if (!can_drop)
		return;
	make("tap", 0644);
	CU_ASSERT_EQUAL_FATAL(pipe(a.go), 0);
	CU_ASSERT_EQUAL_FATAL(pipe(a.done), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("tap", BW_WRITE | BW_NOWAIT, &w), 0);
	bwt_fill(buf, 100, 0, 21);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, 100), 100);
	pid = fork_nobody(tap_child, &a, 20);
	CU_ASSERT_EQUAL(read(a.done[0], &c, 1), 1);
	/* no registered reader: a NOWAIT writer laps the tap freely */
	for (uint64_t pos = 100; pos < 100 + 3 * RING; pos += 1000) {
		bwt_fill(buf, 1000, pos, 21);
		CU_ASSERT_EQUAL(bw_stream_write(w, buf, 1000), 1000);
	}
	CU_ASSERT_EQUAL(write(a.go[1], "g", 1), 1);
	int st = bwt_wait(pid);
	if (st)
		printf("\n    tap child failed at step %d ", st);
	CU_ASSERT_EQUAL(st, 0);
	bw_stream_close(w);
	bw_unlink("tap");
}

/* A tap of a self-scaling ring follows its resizes. It is told how far
 * to read (a position, over a pipe) and answers where it stands and what
 * it lost; UINT64_MAX: read to the end. Every byte it gets is checked. */
struct stap_arg {
	int to[2], from[2];
	pid_t pid;
	uint64_t step; /* record rings: a record's footprint; else 0 */
};

static int stap_child(void *argp)
{
	struct stap_arg *a = argp;
	struct bw_stream *t, *w;
	struct bw_stream_stat st;
	static uint8_t buf[1 << 16];
	uint64_t target, pos = 0, rep[2];

	/* told once the ring is made */
	if (read(a->to[0], &target, sizeof(target)) != sizeof(target))
		return 1;
	if (bw_stream_open("stap", BW_WRITE | BW_NOWAIT, &w) != -EACCES)
		return 1;
	if (bw_stream_open("stap", BW_READ | BW_NOWAIT | BW_FROM_START, &t) != 0)
		return 2;
	while (read(a->to[0], &target, sizeof(target)) == sizeof(target)) {
		while (pos < target) {
			uint64_t want = a->step ? sizeof(buf) : target - pos;
			ssize_t x = bw_stream_read(t, buf,
						   want < sizeof(buf) ? want
								      : sizeof(buf));

			if (x > 0) {
				/* a record's payload is filled from its
				 * position: it starts where the last read
				 * ended, or where the tap resumed */
				if (bwt_verify(buf, (size_t)x, pos, 23) != -1)
					return 3; /* a damaged byte as valid */
				pos += a->step ? a->step : (uint64_t)x;
			} else if (x == -ESTALE) {
				if (bw_stream_stat(t, &st) != 0 ||
				    st.read_pos <= pos)
					return 4;

				pos = st.read_pos;
			} else if (x == 0) {
				if (target != UINT64_MAX)
					return 5; /* an end mid-stream */
				break;
			} else {

				return 6;
			}
		}
		if (bw_stream_stat(t, &st) != 0 || st.read_pos != pos)
			return 7;
		rep[0] = pos;
		rep[1] = st.lost;
		if (write(a->from[1], rep, sizeof(rep)) != sizeof(rep))
			return 8;
		if (target == UINT64_MAX)
			break;
	}
	bw_stream_close(t);
	return 0;
}

/* Tells the tap to read to target; *rep: its position and bytes lost. */
static void stap_step(struct stap_arg *a, uint64_t target, uint64_t rep[2])
{
	if (write(a->to[1], &target, sizeof(target)) != sizeof(target) ||
	    read(a->from[0], rep, 2 * sizeof(*rep)) != 2 * sizeof(*rep)) {
		printf("\n    tap child failed at step %d ", bwt_wait(a->pid));
		CU_FAIL_FATAL("the tap child stopped answering");
	}
}

static uint64_t capacity(struct bw_stream *s)
{
	struct bw_stream_stat st;

	CU_ASSERT_EQUAL_FATAL(bw_stream_stat(s, &st), 0);
	return st.capacity;
}

/* Writes one write of N bytes (a record on a record ring), filled from the
 * write position, which moves step on; the reader that keeps up reads all
 * there is. */
static void put(struct bw_stream *w, struct bw_stream *r, uint8_t *buf,
		uint8_t *out, uint64_t *wpos, uint64_t step)
{
	enum { N = 4096 };

	bwt_fill(buf, N, *wpos, 23);
	CU_ASSERT_EQUAL_FATAL(bw_stream_write(w, buf, N), N);
	*wpos += step;
	CU_ASSERT_EQUAL_FATAL(bw_stream_lseek(w, 0, SEEK_CUR), (int64_t)*wpos);
	while (bw_stream_read(r, out, 1 << 16) > 0)
		;
}

/* A writer and a reader that keeps up (so the ring shrinks) and a tap
 * that keeps about LAG bytes behind. At the first resize the writer fills
 * the new region, so a deck-cut ring's old pages are all reused: the tap
 * must lose what it had not read there (never read the new bytes as the
 * old), where a reallocating ring's old region is intact and it loses
 * nothing. Then it follows to the end of the stream. On a record ring
 * (layout vr or dr) every write is a record of N bytes, filled from its
 * position: the tap reads whole records, and resumes at a record start. */
static void run_scale_tap(uint32_t scale, uint32_t layout)
{
	enum { N = 4096 };
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct stap_arg a = {.step = 0};
	struct bw_stream *r, *w;
	static uint8_t buf[N], out[1 << 16];
	uint64_t wpos = 0, rep[2], c, step, lag;
	bool resized = false;
	pid_t pid;

	if (!can_drop)
		return;
	o.size = 1u << 20;
	o.mode = 0644;
	o.scale = scale;
	o.scale_min = 64u << 10;
	o.scale_max = 1u << 20;
	o.layout = layout;
	if (layout != BW_LAYOUT_BYTES) {
		o.record_size = N;
		/* vr: the 8-byte header; dr: 64-aligned, headers elsewhere */
		a.step = layout == BW_LAYOUT_VR ? N + 8 : N;
	}
	step = a.step ? a.step : N;
	lag = 3 * step; /* record rings: a record start */
	bw_unlink("stap");
	CU_ASSERT_EQUAL_FATAL(pipe(a.to), 0);
	CU_ASSERT_EQUAL_FATAL(pipe(a.from), 0);
	/* forked before this process maps the ring: a child would share
	 * its writable mappings */
	a.pid = pid = fork_nobody(stap_child, &a, 60);
	CU_ASSERT_FATAL(pid >= 0);
	/* the child's ends: its exit is then an end of file here */
	close(a.to[0]);
	close(a.from[1]);
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("stap", &o), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("stap", BW_READ | BW_NOWAIT |
							     BW_NONBLOCK,
					     &r),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("stap", BW_WRITE | BW_NONBLOCK, &w),
			      0);
	CU_ASSERT_EQUAL_FATAL(write(a.to[1], &wpos, sizeof(wpos)),
			      (ssize_t)sizeof(wpos));
	c = capacity(w);
	for (int i = 0; i < 8000; i++) {
		uint64_t behind = resized ? 0 : lag;

		put(w, r, buf, out, &wpos, step);
		if (!resized && capacity(w) != c) {
			/* this write started the next region: fill it */
			uint64_t b = wpos - step, tap_at = b - lag;

			uint64_t over, cut;

			while (wpos < b + capacity(w))
				put(w, r, buf, out, &wpos, step);
			/* a vr record (N + 8 bytes) overruns the region: its
			 * oldest byte is inside its first record, which a
			 * reallocating ring's tap loses whole */
			over = wpos - (b + capacity(w));
			cut = (over + step - 1) / step * step;
			stap_step(&a, wpos, rep);
			CU_ASSERT_EQUAL(rep[0], wpos);
			/* deck-cut: lost from where it stood */
			CU_ASSERT(scale == BW_SCALE_DECKCUT ? rep[1] >= b - tap_at
							    : rep[1] == cut);
			if (layout == BW_LAYOUT_VR)
				CU_ASSERT(over > 0);
			resized = true;
			continue;
		}
		stap_step(&a, wpos > behind ? wpos - behind : 0, rep);
		CU_ASSERT_EQUAL_FATAL(rep[0], wpos > behind ? wpos - behind : 0);
		if (!resized)
			CU_ASSERT_EQUAL_FATAL(rep[1], 0);
	}
	CU_ASSERT(resized);
	CU_ASSERT(capacity(w) != c || resized);
	bw_stream_close(w);
	stap_step(&a, UINT64_MAX, rep);
	CU_ASSERT_EQUAL(rep[0], wpos); /* the tap reached the end */
	int st = bwt_wait(pid);
	if (st)
		printf("\n    tap child failed at step %d ", st);
	CU_ASSERT_EQUAL(st, 0);
	close(a.to[1]);
	close(a.from[0]);
	bw_stream_close(r);
	bw_unlink("stap");
}

static void test_scale_tap_realloc(void)
{
	run_scale_tap(BW_SCALE_REALLOC, BW_LAYOUT_BYTES);
}

static void test_scale_tap_deckcut(void)
{
	run_scale_tap(BW_SCALE_DECKCUT, BW_LAYOUT_BYTES);
}

static void test_scale_tap_records(void)
{
	run_scale_tap(BW_SCALE_REALLOC, BW_LAYOUT_VR);
	run_scale_tap(BW_SCALE_REALLOC, BW_LAYOUT_DR);
	run_scale_tap(BW_SCALE_DECKCUT, BW_LAYOUT_VR);
	run_scale_tap(BW_SCALE_DECKCUT, BW_LAYOUT_DR);
}

/* Without root, the owner's own bits still apply to it. */
static void test_owner_bits_unprivileged(void)
{
	struct bw_stream *s;

	if (geteuid() == 0)
		return;
	make("ro", 0400);
	CU_ASSERT_EQUAL(bw_stream_open("ro", BW_WRITE | BW_NOWAIT, &s), -EACCES);
	CU_ASSERT_EQUAL(bw_stream_open("ro", BW_READ | BW_NOWAIT, &s), 0);
	bw_stream_close(s);
	bw_unlink("ro");
}

/* ---- huge pages ---------------------------------------------------------- */

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static bool write_long(const char *path, long v)
{
	FILE *f = fopen(path, "w");
	bool ok;

	if (!f)
		return false;
	ok = fprintf(f, "%ld\n", v) > 0;
	return fclose(f) == 0 && ok;
}

#define NR_HUGE "/proc/sys/vm/nr_hugepages"
#define FREE_HUGE "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"

static long huge_saved = -1;

/* Returns true when at least 4 free 2 MiB pages exist, reserving them for
 * the test (as root) when none were. */
static bool huge_ready(void)
{
	long freep = read_long(FREE_HUGE), nr = read_long(NR_HUGE);

	if (freep >= 4)
		return true;
	if (nr < 0 || geteuid() != 0)
		return false;
	if (!write_long(NR_HUGE, nr + 4 - (freep > 0 ? freep : 0)))
		return false;
	huge_saved = nr;
	return read_long(FREE_HUGE) >= 4;
}

static void huge_restore(void)
{
	if (huge_saved >= 0)
		write_long(NR_HUGE, huge_saved);
	huge_saved = -1;
}


static bool have_hugetlbfs(void)
{
	char line[512];
	FILE *f = fopen("/proc/mounts", "r");
	bool found = false;

	while (f && fgets(line, sizeof(line), f))
		found |= strstr(line, " hugetlbfs ") != NULL;
	if (f)
		fclose(f);
	return found;
}

/* A named huge-page ring lives on hugetlbfs, named by a link in the ring
 * directory. Without a hugetlbfs mount, the test mounts one for itself. */
static void test_named_huge(void)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	char mnt[] = "/tmp/bwhuge.XXXXXX";
	struct bw_stream *r, *w;
	struct bw_ring_info in;
	bool mounted = false;
	char buf[16];

	o.flags = BW_RING_HUGEPAGE;
	o.size = 2u << 20;
	if (!have_hugetlbfs()) {
		if (!mkdtemp(mnt) ||
		    mount("none", mnt, "hugetlbfs", 0, "pagesize=2M") < 0) {
			bwt_skip("named huge-page ring: no hugetlbfs mount "
				 "and none can be made");
			rmdir(mnt);
			return;
		}
		mounted = true;
	}
	CU_ASSERT_EQUAL(bw_mkfifo("huge", &o), 0);
	CU_ASSERT_EQUAL(bw_ring_stat("huge", &in, NULL, 0), 0);
	CU_ASSERT(in.flags & BW_RING_HUGEPAGE);
	CU_ASSERT_EQUAL(in.page_size, 2u << 20);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("huge", BW_READ | BW_NOWAIT, &r), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("huge", BW_WRITE, &w), 0);
	CU_ASSERT_EQUAL(bw_stream_write(w, "huge pages", 10), 10);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, sizeof(buf)), 10);
	CU_ASSERT_EQUAL(memcmp(buf, "huge pages", 10), 0);
	bw_stream_close(w);
	bw_stream_close(r);
	CU_ASSERT_EQUAL(bw_unlink("huge"), 0);
	CU_ASSERT_EQUAL(bw_ring_stat("huge", &in, NULL, 0), -ENOENT);
	if (mounted) {
		CU_ASSERT_EQUAL(umount(mnt), 0);
		rmdir(mnt);
	}
}

static void test_hugepage(void)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct bw_stream *p[2];
	uint8_t *buf;
	const void *q;

	o.flags = BW_RING_HUGEPAGE;
	o.size = 4096;
	CU_ASSERT_EQUAL(bw_pipe(p, &o), -EINVAL); /* smaller than a page */
	if (!huge_ready()) {
		bwt_skip("no 2 MiB huge pages can be reserved here");
		return;
	}
	o.size = 2u << 20;
	CU_ASSERT_EQUAL_FATAL(bw_pipe(p, &o), 0);
	buf = malloc(3u << 20);
	bwt_fill(buf, 3u << 20, 0, 22);
	/* three laps of 1.5 MiB: crosses the wrap, peeked as one span */
	for (uint64_t i = 0, pos = 0; i < 4; i++, pos += 3u << 19) {
		bwt_fill(buf, 3u << 19, pos, 22);
		CU_ASSERT_EQUAL(bw_stream_write(p[1], buf, 3u << 19), 3 << 19);
		CU_ASSERT_EQUAL(bw_stream_peek(p[0], &q, 3u << 19), 3 << 19);
		CU_ASSERT_EQUAL(bwt_verify(q, 3u << 19, pos, 22), -1);
		bw_stream_flush(p[0]);
	}
	bw_stream_close(p[0]);
	bw_stream_close(p[1]);
	free(buf);
	test_named_huge();
	huge_restore();
}

/* Root can become nobody, unless a sandbox forbids it. */
static bool probe_drop(void)
{
	pid_t pid;

	if (geteuid() != 0)
		return false;
	pid = fork();
	if (pid == 0)
		_exit(setgroups(0, NULL) == 0 && setgid(NOBODY) == 0 &&
				      setuid(NOBODY) == 0
			      ? 0
			      : 1);
	return bwt_wait(pid) == 0;
}

static void reg(void)
{
	can_drop = probe_drop();
	if (!can_drop)
		bwt_skip("cannot run as 'nobody' here (not root, or setuid is "
			 "forbidden): the checks that need it do not run");
	bwt_add("mode 0600 keeps others out, 0666 lets them in", test_owner_only);
	bwt_add("group bits", test_group);
	bwt_add("read-only access is a tap", test_tap);
	bwt_add("a tap follows a reallocating ring", test_scale_tap_realloc);
	bwt_add("a tap follows a deck-cut ring", test_scale_tap_deckcut);
	bwt_add("a tap follows record-layout self-scaling rings",
		test_scale_tap_records);
	bwt_add("owner bits without privilege", test_owner_bits_unprivileged);
	bwt_add("huge-page ring", test_hugepage);
}

int main(void)
{
	int rc = bwt_main("permissions", reg);

	huge_restore();
	return rc;
}
