/* SPDX-License-Identifier: MIT */
/*
 * Rich indices: packing, resolution in this and in other processes (buffer
 * faults, with and without permission), stale and hostile indices, and a
 * scribbled registry. Other processes are this binary run again (exec), so
 * they inherit no mapping and must fault the ring in.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define RING 8192u
#define NOBODY 65534

_Static_assert(sizeof(struct bw_index) == 16, "four indices a cache line");

static char self_exe[4096];

/* The resolver process: argv = --resolve w0 w1 seed pos [nobody].
 * Exit 0: resolved and every byte right; else the negated errno. */
static int resolver(int argc, char **argv)
{
	struct bw_index idx;
	const void *p;
	ssize_t n;

	if (argc < 6)
		return 100;
	if (argc > 6 && (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 ||
			 setuid(NOBODY) < 0))
		return 101;
	idx.w0 = strtoull(argv[2], NULL, 16);
	idx.w1 = strtoull(argv[3], NULL, 16);
	n = bw_index_resolve(&idx, &p);
	if (n < 0)
		return (int)-n;
	if (n != bw_index_len(&idx) ||
	    bwt_verify(p, (size_t)n, strtoull(argv[5], NULL, 10),
		       (uint32_t)atoi(argv[4])) != -1)
		return 102;
	return bw_index_check(&idx) == 0 ? 0 : 103;
}

/* Runs the resolver in a fresh process; returns its exit status. */
static int resolve_elsewhere(const struct bw_index *idx, uint32_t seed,
			     uint64_t pos, bool nobody)
{
	char w0[32], w1[32], s[16], ps[32];
	pid_t pid;

	snprintf(w0, sizeof(w0), "%" PRIx64, idx->w0);
	snprintf(w1, sizeof(w1), "%" PRIx64, idx->w1);
	snprintf(s, sizeof(s), "%u", seed);
	snprintf(ps, sizeof(ps), "%" PRIu64, pos);
	pid = fork();
	if (pid == 0) {
		execl(self_exe, self_exe, "--resolve", w0, w1, s, ps,
		      nobody ? "nobody" : (char *)NULL, (char *)NULL);
		_exit(127);
	}
	return bwt_wait(pid);
}

static void make_ring(const char *name, unsigned mode, struct bw_stream **r,
		      struct bw_stream **w)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = RING;
	o.mode = mode;
	bw_unlink(name);
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo(name, &o), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_READ | BW_NOWAIT, r), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open(name, BW_WRITE, w), 0);
}

/* Writes n bytes of pattern at the writer's position; returns it. */
static uint64_t put(struct bw_stream *w, size_t n, uint32_t seed)
{
	uint8_t buf[RING];
	int64_t pos = bw_stream_lseek(w, 0, SEEK_CUR);

	bwt_fill(buf, n, (uint64_t)pos, seed);
	CU_ASSERT_EQUAL(bw_stream_write(w, buf, n), (ssize_t)n);
	return (uint64_t)pos;
}

static void test_pack_and_resolve_here(void)
{
	struct bw_stream *r, *w;
	struct bw_index idx, idx2;
	const void *p, *q;
	uint64_t pos;

	make_ring("ix", 0600, &r, &w);
	pos = put(w, 1000, 31);
	CU_ASSERT_EQUAL(bw_stream_peek(r, &p, 1000), 1000);
	CU_ASSERT_EQUAL_FATAL(bw_index_of((const uint8_t *)p + 100, 300, 0xbeef,
					  &idx),
			      0);
	CU_ASSERT_NOT_EQUAL(bw_index_dbuf(&idx), 0);
	CU_ASSERT_EQUAL(bw_index_pos48(&idx), pos + 100);
	CU_ASSERT_EQUAL(bw_index_len(&idx), 300);
	CU_ASSERT_EQUAL(bw_index_meta(&idx), 0xbeef);
	bw_index_set_meta(&idx, 7);
	CU_ASSERT_EQUAL(bw_index_meta(&idx), 7);
	CU_ASSERT_EQUAL(bw_index_len(&idx), 300);
	CU_ASSERT_EQUAL(bw_index_resolve(&idx, &q), 300);
	CU_ASSERT_PTR_EQUAL(q, (const uint8_t *)p + 100);
	CU_ASSERT_EQUAL(bw_index_check(&idx), 0);
	/* one id per ring, however many indices */
	CU_ASSERT_EQUAL(bw_index_of(p, 1, 0, &idx2), 0);
	CU_ASSERT_EQUAL(bw_index_dbuf(&idx2), bw_index_dbuf(&idx));
	CU_ASSERT_EQUAL(bw_index_gen(&idx2), bw_index_gen(&idx));
	/* not a ring, nothing, too much */
	CU_ASSERT_EQUAL(bw_index_of(&idx, 4, 0, &idx2), -EINVAL);
	CU_ASSERT_EQUAL(bw_index_of(p, 0, 0, &idx2), -EINVAL);
	CU_ASSERT_EQUAL(bw_index_of(p, RING + 1, 0, &idx2), -EMSGSIZE);
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("ix");
}

/* A process with no mapping resolves the index: a buffer fault. */
static void test_resolve_elsewhere(void)
{
	struct bw_stream *r, *w;
	struct bw_index idx;
	const void *p;
	uint64_t pos;

	make_ring("ix-far", 0600, &r, &w);
	put(w, 3000, 32);
	pos = put(w, 2000, 32);
	CU_ASSERT_EQUAL(bw_stream_lseek(r, (int64_t)pos, SEEK_SET), (int64_t)pos);
	CU_ASSERT_EQUAL(bw_stream_peek(r, &p, 2000), 2000);
	CU_ASSERT_EQUAL_FATAL(bw_index_of(p, 2000, 0, &idx), 0);
	CU_ASSERT_EQUAL(resolve_elsewhere(&idx, 32, pos, false), 0);
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("ix-far");
}

/* Buffer faults check permission as open(2) does. */
static void test_fault_permission(void)
{
	struct bw_stream *r, *w;
	struct bw_index idx;
	const void *p;
	uint64_t pos;
	char path[512];

	if (geteuid() != 0) {
		bwt_skip("not root: cannot run the resolver as nobody");
		return;
	}
	make_ring("ix-perm", 0600, &r, &w);
	pos = put(w, 500, 33);
	CU_ASSERT_EQUAL(bw_stream_peek(r, &p, 500), 500);
	CU_ASSERT_EQUAL_FATAL(bw_index_of(p, 500, 0, &idx), 0);
	CU_ASSERT_EQUAL(resolve_elsewhere(&idx, 33, pos, true), EACCES);
	snprintf(path, sizeof(path), "%s/ix-perm", bw_ring_dir());
	CU_ASSERT_EQUAL(chmod(path, 0644), 0);
	CU_ASSERT_EQUAL(resolve_elsewhere(&idx, 33, pos, true), 0);
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("ix-perm");
}

/* An anonymous ring is reached through its owner's descriptor. */
static void test_anonymous_ring(void)
{
	struct bw_stream *p[2];
	struct bw_index idx;
	uint8_t buf[700];
	const void *q;

	CU_ASSERT_EQUAL_FATAL(bw_pipe(p, NULL), 0);
	bwt_fill(buf, sizeof(buf), 0, 34);
	CU_ASSERT_EQUAL(bw_stream_write(p[1], buf, sizeof(buf)), 700);
	CU_ASSERT_EQUAL(bw_stream_peek(p[0], &q, 700), 700);
	CU_ASSERT_EQUAL_FATAL(bw_index_of(q, 700, 0, &idx), 0);
	CU_ASSERT_EQUAL(resolve_elsewhere(&idx, 34, 0, false), 0);
	bw_stream_close(p[0]);
	bw_stream_close(p[1]);
}

/* Overwritten, removed, removed and made again: stale, never newer data. */
static void test_stale(void)
{
	struct bw_stream *r, *w;
	struct bw_index idx;
	const void *p;
	uint8_t junk[RING];

	make_ring("ix-stale", 0600, &r, &w);
	put(w, 100, 35);
	CU_ASSERT_EQUAL(bw_stream_peek(r, &p, 100), 100);
	CU_ASSERT_EQUAL_FATAL(bw_index_of(p, 100, 0, &idx), 0);
	/* the reader moves on; the writer laps the ring */
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL(bw_stream_write(w, junk, RING / 2), RING / 2);
		CU_ASSERT_EQUAL(bw_stream_read(r, junk, RING), RING / 2);
	}
	CU_ASSERT_EQUAL(bw_index_resolve(&idx, &p), -ESTALE);
	CU_ASSERT_EQUAL(bw_index_check(&idx), -ESTALE);
	/* a fresh index, then the ring removed */
	CU_ASSERT_EQUAL(bw_stream_write(w, junk, 10), 10);
	CU_ASSERT_EQUAL(bw_stream_peek(r, &p, 10), 10);
	CU_ASSERT_EQUAL_FATAL(bw_index_of(p, 10, 0, &idx), 0);
	CU_ASSERT_EQUAL(bw_index_check(&idx), 0);
	bw_stream_close(r);
	bw_stream_close(w);
	CU_ASSERT_EQUAL(bw_unlink("ix-stale"), 0);
	CU_ASSERT_EQUAL(bw_index_resolve(&idx, &p), -ESTALE);
	/* a new ring under the old name is another ring */
	make_ring("ix-stale", 0600, &r, &w);
	put(w, 100, 36);
	CU_ASSERT_EQUAL(bw_index_resolve(&idx, &p), -ESTALE);
	CU_ASSERT_EQUAL(resolve_elsewhere(&idx, 36, 0, false), ESTALE);
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("ix-stale");
}

/* Hostile fields one by one, then random indices: errors, or a span that
 * lies inside the ring's mapping; never a crash. */
static void test_hostile_indices(void)
{
	struct bw_stream *r, *w;
	struct bw_index good, bad;
	const void *p, *base;
	ssize_t n;

	make_ring("ix-bad", 0600, &r, &w);
	put(w, 200, 37);
	CU_ASSERT_EQUAL(bw_stream_peek(r, &base, 200), 200);
	CU_ASSERT_EQUAL_FATAL(bw_index_of(base, 200, 0, &good), 0);

	bad = good;
	bad.w0 &= BW_INDEX_POS_MASK; /* id 0 */
	CU_ASSERT_EQUAL(bw_index_resolve(&bad, &p), -EINVAL);
	bad = good;
	bad.w0 |= UINT64_C(0xffff) << 48; /* id past the registry */
	CU_ASSERT_EQUAL(bw_index_resolve(&bad, &p), -EINVAL);
	bad = good;
	bad.w1 ^= UINT64_C(0x5a5a) << 32; /* wrong generation */
	CU_ASSERT_EQUAL(bw_index_resolve(&bad, &p), -ESTALE);
	bad = good;
	bad.w1 &= ~UINT64_C(0xffffffff); /* length 0 */
	CU_ASSERT_EQUAL(bw_index_resolve(&bad, &p), -EINVAL);
	bad = good;
	bad.w1 |= 0xffffffffu; /* length past the ring */
	CU_ASSERT_EQUAL(bw_index_resolve(&bad, &p), -EINVAL);
	bad = good;
	bad.w0 = (bad.w0 & ~BW_INDEX_POS_MASK) | 150; /* 150 + 200 > 200 */
	CU_ASSERT_EQUAL(bw_index_resolve(&bad, &p), -EINVAL);
	bad = good;
	bad.w0 = (bad.w0 & ~BW_INDEX_POS_MASK) | BW_INDEX_POS_MASK; /* future */
	CU_ASSERT_EQUAL(bw_index_resolve(&bad, &p), -EINVAL);
	CU_ASSERT_EQUAL(bw_index_resolve(NULL, &p), -EFAULT);

	srand(99);
	for (int i = 0; i < 20000; i++) {
		bad = good;
		if (i % 2)
			bad.w0 ^= (uint64_t)rand() << (rand() % 40);
		else
			bad.w1 ^= (uint64_t)rand() << (rand() % 40);
		n = bw_index_resolve(&bad, &p);
		if (n >= 0) {
			/* only spans inside the mapping can come back: base
			 * is position 0, the start of the data */
			CU_ASSERT((const uint8_t *)p >= (const uint8_t *)base);
			CU_ASSERT((const uint8_t *)p + n <=
				  (const uint8_t *)base + 2 * RING);
		}
	}
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("ix-bad");
}

/* The registry is shared and writable: scribbled entries make lookups fail
 * cleanly, and a corrupt header is refused. Each round in a fresh process,
 * so it maps the registry anew. */
static void test_scribbled_registry(void)
{
	struct bw_stream *r, *w;
	struct bw_index idx;
	const void *p;
	char path[512];
	uint8_t *reg;
	int fd;

	make_ring("ix-reg", 0600, &r, &w);
	put(w, 64, 38);
	CU_ASSERT_EQUAL(bw_stream_peek(r, &p, 64), 64);
	CU_ASSERT_EQUAL_FATAL(bw_index_of(p, 64, 0, &idx), 0);
	snprintf(path, sizeof(path), "%s/.registry", bw_ring_dir());
	fd = open(path, O_RDWR);
	CU_ASSERT_FATAL(fd >= 0);
	reg = mmap(NULL, 4096 * 130, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	CU_ASSERT_FATAL(reg != MAP_FAILED);
	uint8_t *e = reg + 128 + 128 * (size_t)bw_index_dbuf(&idx);
	uint8_t saved[128];

	memcpy(saved, e, 128);
	/* the name made bad: corrupt */
	memset(e + 40, '/', 8);
	CU_ASSERT_EQUAL(resolve_elsewhere(&idx, 38, 0, false), EBADMSG);
	memcpy(e, saved, 128);
	/* the ring_id changed: another ring, stale */
	e[8] ^= 0xff;
	CU_ASSERT_EQUAL(resolve_elsewhere(&idx, 38, 0, false), ESTALE);
	memcpy(e, saved, 128);
	CU_ASSERT_EQUAL(resolve_elsewhere(&idx, 38, 0, false), 0);
	/* a header that lies */
	reg[0] ^= 1;
	CU_ASSERT_EQUAL(resolve_elsewhere(&idx, 38, 0, false), EBADMSG);
	reg[0] ^= 1;
	munmap(reg, 4096 * 130);
	bw_stream_close(r);
	bw_stream_close(w);
	bw_unlink("ix-reg");
}

static void reg_tests(void)
{
	bwt_add("pack and resolve here", test_pack_and_resolve_here);
	bwt_add("resolve in another process (buffer fault)",
		test_resolve_elsewhere);
	bwt_add("buffer faults check permission", test_fault_permission);
	bwt_add("anonymous ring through its owner", test_anonymous_ring);
	bwt_add("stale after overwrite, removal, reuse", test_stale);
	bwt_add("hostile indices", test_hostile_indices);
	bwt_add("scribbled registry", test_scribbled_registry);
}

int main(int argc, char **argv)
{
	ssize_t n;

	if (argc > 1 && !strcmp(argv[1], "--resolve"))
		return resolver(argc, argv);
	n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	if (n <= 0)
		return 1;
	self_exe[n] = '\0';
	return bwt_main("index", reg_tests);
}
