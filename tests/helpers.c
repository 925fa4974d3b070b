/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE
#include <CUnit/Basic.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static char dir[128];
static pid_t dir_owner;
static CU_pSuite suite;
static int skips;

void bwt_skip(const char *why)
{
	printf("\n    SKIP: %s ", why);
	skips++;
}

static void dir_cleanup(void)
{
	struct dirent *de;
	DIR *d;

	if (!dir[0] || getpid() != dir_owner)
		return;
	d = opendir(dir);
	if (d) {
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
				char p[512];

				snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
				unlink(p);
			}
		closedir(d);
	}
	rmdir(dir);
}

const char *bwt_ring_dir(void)
{
	if (dir[0])
		return dir;
	snprintf(dir, sizeof(dir), "/dev/shm/bwtest.XXXXXX");
	if (!mkdtemp(dir)) {
		/* no /dev/shm: any directory will do for the tests */
		snprintf(dir, sizeof(dir), "/tmp/bwtest.XXXXXX");
		if (!mkdtemp(dir)) {
			perror("mkdtemp");
			exit(1);
		}
	}
	/* Like the default ring directory: any user may create rings. */
	chmod(dir, 01777);
	setenv("BELTWAY_DIR", dir, 1);
	dir_owner = getpid();
	atexit(dir_cleanup);
	return dir;
}

void bwt_fill(void *p, size_t n, uint64_t pos, uint32_t seed)
{
	uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = bwt_byte(pos + i, seed);
}

ssize_t bwt_verify(const void *p, size_t n, uint64_t pos, uint32_t seed)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != bwt_byte(pos + i, seed))
			return (ssize_t)i;
	return -1;
}

uint64_t bwt_fold(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

int bwt_wait(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

void bwt_suite(const char *name)
{
	suite = CU_add_suite(name, NULL, NULL);
}

void bwt_add(const char *name, void (*fn)(void))
{
	/* BWT_ONLY=substring runs only the tests whose names contain it */
	const char *only = getenv("BWT_ONLY");

	if (!only || strstr(name, only))
		CU_add_test(suite, name, fn);
}

int bwt_main(const char *name, void (*reg)(void))
{
	unsigned fails;

	bwt_ring_dir();
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 1;
	bwt_suite(name);
	reg();
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	fails = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	if (CU_get_number_of_tests_run() == 0)
		fails = 1;
	CU_cleanup_registry();
	if (fails)
		return 1;
	if (skips) {
		printf("%d part%s skipped: reporting a skip, not a pass\n", skips,
		       skips == 1 ? "" : "s");
		return BWT_SKIP;
	}
	return 0;
}
