/* SPDX-License-Identifier: MIT */
/* Bad input, one test each: names, sizes, lengths, flags, and segments that
 * another process truncated or scribbled on. White-box: it knows the layout
 * (local/bwi_ring.h) so it can corrupt exact fields. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bwi_ring.h"
#include "helpers.h"

#define RING 8192u

static char path_buf[512];

static const char *ring_path(const char *name)
{
	snprintf(path_buf, sizeof(path_buf), "%s/%s", bw_ring_dir(), name);
	return path_buf;
}

/* These two also run in forked children, outside CUnit: they exit on
 * failure instead of asserting. */
static void make_ring(const char *name)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = RING;
	bw_unlink(name);
	if (bw_mkfifo(name, &o) != 0) {
		fprintf(stderr, "mkfifo %s: %s\n", name, bw_strerror_last());
		exit(1);
	}
}

/* Maps the segment file raw, for scribbling. */
static struct bwi_hdr *raw_map(const char *name, size_t *len)
{
	struct stat st;
	void *p;
	int fd = open(ring_path(name), O_RDWR);

	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(name);
		exit(1);
	}
	*len = (size_t)st.st_size;
	p = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

static void test_bad_names(void)
{
	const char *bad[] = {"", ".hidden", "a/b", "../x", "sp ace", "tab\t",
			     "uni\xc3\xa9",
			     ("0123456789012345678901234567890123456789012345678"
			      "901234567890123")};
	struct bw_stream *s = (void *)1;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT_EQUAL(bw_mkfifo(bad[i], NULL), -EINVAL);
		CU_ASSERT_EQUAL(bw_stream_open(bad[i], BW_READ, &s), -EINVAL);
		CU_ASSERT_PTR_NULL(s);
		CU_ASSERT_EQUAL(bw_unlink(bad[i]), -EINVAL);
		CU_ASSERT(strlen(bw_strerror_last()) > 0);
	}
	CU_ASSERT_EQUAL(bw_mkfifo(NULL, NULL), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_open(NULL, BW_READ, &s), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_open("nosuch", BW_READ, &s), -ENOENT);
	/* 63 characters is the longest name */
	CU_ASSERT_EQUAL(bw_mkfifo("012345678901234567890123456789012345678901"
				  "234567890123456789012",
				  NULL),
			0);
	CU_ASSERT_EQUAL(bw_mkfifo("dup", NULL), 0);
	CU_ASSERT_EQUAL(bw_mkfifo("dup", NULL), -EEXIST);
	bw_unlink("dup");
	bw_unlink("012345678901234567890123456789012345678901234567890123456789012");
}

static void test_bad_sizes(void)
{
	uint64_t bad[] = {1, 2048, 4095, 5000, 12288, (UINT64_C(1) << 36) + 4096,
			  UINT64_C(1) << 37, UINT64_MAX};
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct bw_stream *p[2];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.size = bad[i];
		CU_ASSERT_EQUAL(bw_mkfifo("size", &o), -EINVAL);
		CU_ASSERT_EQUAL(bw_pipe(p, &o), -EINVAL);
	}
	o.size = 4096;
	o.mode = 01777;
	CU_ASSERT_EQUAL(bw_mkfifo("size", &o), -EINVAL);
	o.mode = 0;
	o.max_readers = 5000;
	CU_ASSERT_EQUAL(bw_mkfifo("size", &o), -EINVAL);
	o.max_readers = 0;
	o.flags = 0x80;
	CU_ASSERT_EQUAL(bw_mkfifo("size", &o), -EINVAL);
	o.flags = 0;
	o.struct_size = 4;
	CU_ASSERT_EQUAL(bw_mkfifo("size", &o), -EINVAL);
	o.struct_size = sizeof(o);
	CU_ASSERT_EQUAL(bw_mkfifo("size", &o), 0);
	bw_unlink("size");
}

static void test_bad_lengths_and_flags(void)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct bw_stream *p[2], *s;
	const void *cp;
	void *wp;

	o.size = RING;
	CU_ASSERT_EQUAL_FATAL(bw_pipe(p, &o), 0);
	CU_ASSERT_EQUAL(bw_stream_poke(p[1], &wp, RING + 1), -EMSGSIZE);
	CU_ASSERT_EQUAL(bw_stream_poke_acquire(p[1], &wp, SIZE_MAX), -EMSGSIZE);
	CU_ASSERT_EQUAL(bw_stream_poke(p[1], NULL, 10), -EFAULT);
	CU_ASSERT_EQUAL(bw_stream_write(p[1], NULL, 10), -EFAULT);
	CU_ASSERT_EQUAL(bw_stream_read(p[0], NULL, 10), -EFAULT);
	CU_ASSERT_EQUAL(bw_stream_peek(p[0], NULL, 10), -EFAULT);
	/* roles */
	CU_ASSERT_EQUAL(bw_stream_write(p[0], "x", 1), -EBADF);
	CU_ASSERT_EQUAL(bw_stream_peek(p[1], &cp, 1), -EBADF);
	CU_ASSERT_EQUAL(bw_stream_check(p[0], -1, BW_CHECK_WRITE), -EBADF);
	CU_ASSERT_EQUAL(bw_stream_check(p[0], -1, 7), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_peek_complete(p[0], 1), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_poke_complete(p[1], 1), -EINVAL);
	/* more than the ring in one write is split, never refused */
	uint8_t *big = calloc(3, RING);

	bw_stream_set_nonblock(p[1], 1);
	CU_ASSERT_EQUAL(bw_stream_write(p[1], big, 3 * RING), RING);
	free(big);
	CU_ASSERT_EQUAL(bw_stream_close(NULL), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_read(NULL, &o, 1), -EINVAL);
	bw_stream_close(p[0]);
	bw_stream_close(p[1]);

	make_ring("flags");
	CU_ASSERT_EQUAL(bw_stream_open("flags", 0, &s), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_open("flags", BW_READ | 0x4000, &s), -EINVAL);
	CU_ASSERT_EQUAL(bw_stream_open("flags", BW_READ, NULL), -EINVAL);
	bw_unlink("flags");
}

static void test_truncated(void)
{
	off_t sizes[] = {0, 10, 100, 4096, 4096 * 3 + 100};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct bw_stream *s;

		make_ring("trunc");
		CU_ASSERT_EQUAL_FATAL(truncate(ring_path("trunc"), sizes[i]), 0);
		CU_ASSERT_EQUAL(bw_stream_open("trunc", BW_READ | BW_NOWAIT, &s),
				-EBADMSG);
		CU_ASSERT(strstr(bw_strerror_last(), "trunc") != NULL);
	}
	/* grown is as wrong as shrunk */
	make_ring("trunc");
	struct bw_stream *s;
	CU_ASSERT_EQUAL_FATAL(truncate(ring_path("trunc"), 1 << 20), 0);
	CU_ASSERT_EQUAL(bw_stream_open("trunc", BW_READ | BW_NOWAIT, &s), -EBADMSG);
	bw_unlink("trunc");
}

/* Each geometry field damaged in turn: the checksum or the checks catch it. */
static void test_corrupt_header(void)
{
	size_t offs[] = {offsetof(struct bwi_geom, magic),
			 offsetof(struct bwi_geom, version),
			 offsetof(struct bwi_geom, hdr_size),
			 offsetof(struct bwi_geom, capacity),
			 offsetof(struct bwi_geom, page_size),
			 offsetof(struct bwi_geom, max_readers),
			 offsetof(struct bwi_geom, max_writers),
			 offsetof(struct bwi_geom, layout),
			 offsetof(struct bwi_geom, sum)};

	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		struct bw_stream *s;
		struct bw_ring_info in;
		struct bwi_hdr *h;
		size_t len;

		make_ring("corrupt");
		h = raw_map("corrupt", &len);
		((uint8_t *)&h->g)[offs[i]] ^= 0x41;
		CU_ASSERT_EQUAL(bw_stream_open("corrupt", BW_READ | BW_NOWAIT, &s),
				-EBADMSG);
		CU_ASSERT_EQUAL(bw_ring_stat("corrupt", &in, NULL, 0), -EBADMSG);
		munmap(h, len);
	}
	/* a geometry that checksums but lies: the checks still catch it */
	{
		struct bw_stream *s;
		struct bwi_hdr *h;
		size_t len;

		make_ring("corrupt");
		h = raw_map("corrupt", &len);
		h->g.capacity = 3 * 4096;
		h->g.sum = bwi_geom_sum(&h->g);
		CU_ASSERT_EQUAL(bw_stream_open("corrupt", BW_READ | BW_NOWAIT, &s),
				-EBADMSG);
		h->g.capacity = RING * 2;
		h->g.sum = bwi_geom_sum(&h->g);
		CU_ASSERT_EQUAL(bw_stream_open("corrupt", BW_READ | BW_NOWAIT, &s),
				-EBADMSG);
		munmap(h, len);
	}
	bw_unlink("corrupt");
}

/* Positions scribbled while streams are attached: errors, not wild reads. */
static void test_corrupt_positions(void)
{
	struct bw_stream *r, *w;
	struct bwi_hdr *h;
	uint8_t buf[100];
	size_t len;

	make_ring("pos");
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("pos", BW_READ | BW_NOWAIT, &r), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("pos", BW_WRITE, &w), 0);
	h = raw_map("pos", &len);
	CU_ASSERT_EQUAL(bw_stream_write(w, "abcdef", 6), 6);

	/* tail far ahead of anything written: a reader would read beyond */
	atomic_store(&h->prod.tail, UINT64_C(1) << 50);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, 100), -EBADMSG);
	/* tail moved backwards */
	atomic_store(&h->prod.tail, 6);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, 3), 3);
	atomic_store(&h->prod.tail, 1);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, 100), -EBADMSG);
	atomic_store(&h->prod.tail, 6);
	CU_ASSERT_EQUAL(bw_stream_read(r, buf, 100), 3);

	/* a reader slot beyond the write position: the writer refuses */
	atomic_store(&h->slots[0].pos, UINT64_C(1) << 40);
	bw_stream_set_nonblock(w, 1);
	for (int i = 0; i < 3; i++) {
		ssize_t n = bw_stream_write(w, buf, 100);

		if (n < 0) {
			CU_ASSERT_EQUAL(n, -EBADMSG);
			break;
		}
	}
	uint64_t lim = 0;
	for (int i = 0; i < 200 && bw_stream_write(w, buf, 100) == 100; i++)
		lim++;
	CU_ASSERT(lim < 200);
	bw_stream_close(w);
	bw_stream_close(r);

	/* head behind tail: a new writer will not attach */
	atomic_store(&h->prod.head, 2);
	atomic_store(&h->prod.tail, 6);
	CU_ASSERT_EQUAL(bw_stream_open("pos", BW_WRITE | BW_NOWAIT, &w), -EBADMSG);
	/* head more than a ring ahead of tail */
	atomic_store(&h->prod.head, 6 + 2 * RING);
	CU_ASSERT_EQUAL(bw_stream_open("pos", BW_WRITE | BW_NOWAIT, &w), -EBADMSG);
	munmap(h, len);
	bw_unlink("pos");
}

/* A pid that belonged to a process that has exited. */
static pid_t dead_pid(void)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	bwt_wait(pid);
	return pid;
}

/* State left by processes killed at the worst moments: a slot claimed but
 * never filled in, and the writer-attach lock never released. Both are
 * taken back from the dead. */
static void test_dead_claimer_and_lock_holder(void)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct bw_stream *r, *w;
	struct bwi_hdr *h;
	size_t len;
	pid_t dead = dead_pid();

	o.size = RING;
	o.max_readers = 1;
	bw_unlink("dead");
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("dead", &o), 0);
	h = raw_map("dead", &len);
	atomic_store(&h->slots[0].state,
		     BWI_SLOT_WORD(7, ((uint32_t)dead << 2) | BWI_SLOT_CLAIMING));
	atomic_store(&h->ctl.rslots_hi, 1);
	atomic_store(&h->ctl.lock, (uint64_t)(uint32_t)dead << 32 | 12345u);
	/* the writer takes the lock over and reaps the half-claimed slot */
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dead", BW_WRITE | BW_NOWAIT, &w), 0);
	CU_ASSERT_EQUAL(atomic_load(&h->ctl.lock), 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("dead", BW_READ | BW_NOWAIT, &r), 0);
	CU_ASSERT_EQUAL(bw_stream_write(w, "x", 1), 1);
	bw_stream_close(r);
	bw_stream_close(w);
	munmap(h, len);
	bw_unlink("dead");
}

/* Names that are not rings: a FIFO must not hang the open, a directory or a
 * plain file is refused. */
static void test_not_a_ring(void)
{
	struct bw_stream *s;
	int fd;

	CU_ASSERT_EQUAL(mkfifo(ring_path("fifo"), 0600), 0);
	CU_ASSERT_EQUAL(bw_stream_open("fifo", BW_READ | BW_NOWAIT, &s), -EBADMSG);
	unlink(ring_path("fifo"));
	fd = open(ring_path("plain"), O_CREAT | O_RDWR, 0600);
	CU_ASSERT_EQUAL(write(fd, "hello, I am not a ring at all, no magic here "
				  "to see whatsoever, nothing at all",
			      78),
			78);
	close(fd);
	CU_ASSERT_EQUAL(bw_stream_open("plain", BW_READ | BW_NOWAIT, &s), -EBADMSG);
	unlink(ring_path("plain"));
	CU_ASSERT_EQUAL(mkdir(ring_path("dir"), 0700), 0);
	CU_ASSERT(bw_stream_open("dir", BW_READ | BW_NOWAIT, &s) < 0);
	rmdir(ring_path("dir"));
}

/* bw_unlink removes the name in the ring directory and nothing else: a
 * link there to a file elsewhere (absolute, or relative, which would be
 * taken from the caller's directory) leaves that file be; a plain file that
 * is no ring is removed without an error. */
static void test_unlink_links(void)
{
	char outside[] = "/tmp/bwlink.XXXXXX", file[64], cwd[4096];
	struct stat st;
	int fd;

	CU_ASSERT_FATAL(mkdtemp(outside) != NULL);
	snprintf(file, sizeof(file), "%s/precious", outside);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	close(fd);
	CU_ASSERT_EQUAL_FATAL(symlink(file, ring_path("abs")), 0);
	CU_ASSERT_EQUAL(bw_unlink("abs"), 0);
	CU_ASSERT_EQUAL(lstat(ring_path("abs"), &st), -1);
	CU_ASSERT_EQUAL(stat(file, &st), 0);
	/* relative: "precious", from a caller standing in outside */
	CU_ASSERT_FATAL(getcwd(cwd, sizeof(cwd)) != NULL);
	CU_ASSERT_EQUAL_FATAL(symlink("precious", ring_path("rel")), 0);
	CU_ASSERT_EQUAL_FATAL(chdir(outside), 0);
	CU_ASSERT_EQUAL(bw_unlink("rel"), 0);
	CU_ASSERT_EQUAL_FATAL(chdir(cwd), 0);
	CU_ASSERT_EQUAL(lstat(ring_path("rel"), &st), -1);
	CU_ASSERT_EQUAL(stat(file, &st), 0);
	/* no ring: gone, and no error */
	fd = open(ring_path("junk"), O_CREAT | O_WRONLY, 0600);
	CU_ASSERT_FATAL(fd >= 0);
	close(fd);
	CU_ASSERT_EQUAL(bw_unlink("junk"), 0);
	CU_ASSERT_EQUAL(lstat(ring_path("junk"), &st), -1);
	CU_ASSERT_EQUAL(bw_unlink("junk"), -ENOENT);
	unlink(file);
	rmdir(outside);
}

/* Random scribbles over the mutable part of the header (positions, slots,
 * counters), then every call: the process must never crash. Each round runs
 * in a child so a crash shows as a signal. */
static void test_scribble_fuzz(void)
{
	srand(12345);
	for (int round = 0; round < 300; round++) {
		unsigned seed = (unsigned)rand();
		pid_t pid = fork();

		if (pid == 0) {
			struct bw_stream *r = NULL, *w = NULL;
			struct bw_ring_info in;
			struct bwi_hdr *h;
			char name[32];
			uint8_t buf[3000];
			const void *cp;
			void *wp;
			size_t len;

			alarm(10);
			snprintf(name, sizeof(name), "fz%d", round);
			make_ring(name);
			bw_stream_open(name, BW_READ | BW_NOWAIT | BW_NONBLOCK, &r);
			bw_stream_open(name, BW_WRITE | BW_NOWAIT | BW_NONBLOCK, &w);
			if (w)
				bw_stream_write(w, buf, 1000);
			h = raw_map(name, &len);
			srand(seed);
			for (int k = 0; k < 1 + rand() % 8; k++) {
				size_t off = 256 + (size_t)rand() % (h->g.hdr_size - 256);
				size_t n = 1 + (size_t)rand() % 8;

				for (size_t j = 0; j < n && off + j < h->g.hdr_size; j++)
					((uint8_t *)h)[off + j] = (uint8_t)rand();
			}
			for (int k = 0; k < 20; k++) {
				if (r) {
					bw_stream_read(r, buf, sizeof(buf));
					bw_stream_peek(r, &cp, 500);
					bw_stream_check(r, 0, BW_CHECK_READ);
					bw_stream_lseek(r, 0, SEEK_SET);
				}
				if (w) {
					bw_stream_write(w, buf, sizeof(buf));
					if (bw_stream_poke(w, &wp, 100) == 100)
						memset(wp, 1, 100);
				}
			}
			bw_ring_stat(name, &in, NULL, 0);
			if (r)
				bw_stream_close(r);
			if (w)
				bw_stream_close(w);
			bw_unlink(name);
			/* the ring was opened and used: 0; else tell the parent */
			_exit(r && w ? 0 : 5);
		}
		CU_ASSERT_EQUAL(bwt_wait(pid), 0);
	}
}

static void reg(void)
{
	bwt_add("bad names", test_bad_names);
	bwt_add("bad sizes and options", test_bad_sizes);
	bwt_add("bad lengths, roles and flags", test_bad_lengths_and_flags);
	bwt_add("truncated segment", test_truncated);
	bwt_add("corrupted header", test_corrupt_header);
	bwt_add("corrupted positions", test_corrupt_positions);
	bwt_add("names that are not rings", test_not_a_ring);
	bwt_add("unlink follows no link out of the directory",
		test_unlink_links);
	bwt_add("dead claimer and dead lock holder", test_dead_claimer_and_lock_holder);
	bwt_add("random scribbles never crash", test_scribble_fuzz);
}

int main(void)
{
	return bwt_main("bad input", reg);
}
