/* SPDX-License-Identifier: MIT */
/*
 * beltway demo: one writer and N readers, each in its own process, stream
 * the same data through a Beltway multiway pipe (written once, read by all)
 * and through Unix pipes (one per reader, as Unix has no broadcast pipe).
 * Every reader checks every byte it got against the pattern the writer sent.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../bench/bench.h"
#include "cli.h"

#define CHUNK (64u << 10)
#define MAX_READERS 8

/* The data: a counter pattern, so every reader can check every byte. */
static void fill(uint8_t *p, size_t n, uint64_t pos)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((pos + i) * 131u >> 3);
}

/* The pattern repeats every 2048 bytes, so src + pos % 1 MiB holds the bytes
 * at stream position pos, for any chunk up to CHUNK long. */
static const uint8_t *src_at(const uint8_t *src, uint64_t pos)
{
	return src + pos % (1u << 20);
}

struct result {
	double end;
	uint64_t bytes, bad;
};

static void report(int fd, uint64_t bytes, uint64_t bad)
{
	struct result r = {.end = cli_now(), .bytes = bytes, .bad = bad};

	if (write(fd, &r, sizeof(r)) != sizeof(r))
		_exit(3);
}

/* Starts n waiting children at once. */
static int release(int fd, int n)
{
	for (int i = 0; i < n; i++)
		if (write(fd, "g", 1) != 1)
			return -1;
	return 0;
}

static void wait_go(int fd)
{
	char c;

	if (read(fd, &c, 1) != 1)
		_exit(3);
}

/* Starts the waiting children, collects the readers' results, reaps all.
 * Sets *sec to the time from the start to the last reader's last byte. */
static int finish(int go[2], int res[2], const pid_t *pids, int nr,
		  uint64_t total, uint64_t *bad, double *sec)
{
	double t0 = cli_now(), last = 0;
	int r = 0;

	if (release(go[1], nr + 1) < 0)
		r = -EIO;
	for (int i = 0; i < nr && r == 0; i++) {
		struct result rr;

		if (read(res[0], &rr, sizeof(rr)) != sizeof(rr)) {
			r = -EIO;
		} else if (rr.bytes != total) {
			fprintf(stderr, "beltway demo: a reader got %llu of %llu "
					"bytes\n",
				(unsigned long long)rr.bytes,
				(unsigned long long)total);
			r = -EIO;
		} else {
			bad[i] = rr.bad;
			if (rr.end > last)
				last = rr.end;
		}
	}
	for (int i = 0; i <= nr; i++)
		waitpid(pids[i], NULL, 0);
	close(go[0]);
	close(go[1]);
	close(res[0]);
	close(res[1]);
	*sec = last - t0;
	return r;
}

/* Returns seconds to the last reader's last byte; counts bad chunks. */
static int run_beltway(uint64_t total, int nr, const uint8_t *src, double *sec,
		       uint64_t *bad)
{
	struct bw_stream *ends[MAX_READERS + 1];
	int go[2], res[2], r;
	pid_t pids[MAX_READERS + 1];

	if (pipe(go) < 0 || pipe(res) < 0)
		return -errno;
	r = bw_mpipe(ends, (unsigned)nr + 1, NULL);
	if (r < 0)
		return r;
	for (int i = 0; i <= nr; i++) {
		pids[i] = bw_fork();
		if (pids[i] < 0)
			return pids[i];
		if (pids[i] > 0)
			continue;
		bench_pin(i == 0 ? 0 : 1);
		for (int j = 0; j <= nr; j++)
			if (j != i)
				bw_stream_close(ends[j]);
		wait_go(go[0]);
		if (i == 0) {
			for (uint64_t done = 0; done < total;) {
				size_t c = total - done < CHUNK ? total - done
								  : CHUNK;

				if (bw_stream_write(ends[0], src_at(src, done),
						    c) != (ssize_t)c)
					_exit(2);
				done += c;
			}
			bw_stream_close(ends[0]);
			_exit(0);
		}
		uint64_t got = 0, wrong = 0;

		for (;;) {
			const void *p;
			ssize_t n = bw_stream_peek(ends[i], &p, CHUNK);

			if (n < 0) {
				fprintf(stderr, "beltway demo: reader %d: %s\n",
					i, bw_strerror_last());
				_exit(2);
			}
			if (n == 0)
				break;
			wrong += memcmp(p, src_at(src, got), (size_t)n) != 0;
			got += (uint64_t)n;
		}
		report(res[1], got, wrong);
		_exit(0);
	}
	for (int i = 0; i <= nr; i++)
		bw_stream_close(ends[i]);
	return finish(go, res, pids, nr, total, bad, sec);
}

static int run_pipes(uint64_t total, int nr, const uint8_t *src, double *sec,
		     uint64_t *bad)
{
	int p[MAX_READERS][2], go[2], res[2];
	pid_t pids[MAX_READERS + 1];

	if (pipe(go) < 0 || pipe(res) < 0)
		return -errno;
	for (int i = 0; i < nr; i++)
		if (pipe(p[i]) < 0)
			return -errno;
	for (int i = 0; i <= nr; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			return -errno;
		if (pids[i] > 0)
			continue;
		bench_pin(i == 0 ? 0 : 1);
		wait_go(go[0]);
		if (i == 0) {
			for (int j = 0; j < nr; j++)
				close(p[j][0]);
			for (uint64_t done = 0; done < total;) {
				size_t c = total - done < CHUNK ? total - done
								  : CHUNK;

				for (int j = 0; j < nr; j++)
					for (size_t off = 0; off < c;) {
						ssize_t w = write(p[j][1],
								  src_at(src, done) + off,
								  c - off);

						if (w <= 0)
							_exit(2);
						off += (size_t)w;
					}
				done += c;
			}
			_exit(0);
		}
		for (int j = 0; j < nr; j++) {
			close(p[j][1]);
			if (j != i - 1)
				close(p[j][0]);
		}
		uint8_t *buf = malloc(CHUNK);
		uint64_t got = 0, wrong = 0;
		ssize_t n;

		while ((n = read(p[i - 1][0], buf, CHUNK)) > 0) {
			wrong += memcmp(buf, src_at(src, got), (size_t)n) != 0;
			got += (uint64_t)n;
		}
		report(res[1], got, wrong);
		_exit(0);
	}
	for (int i = 0; i < nr; i++) {
		close(p[i][0]);
		close(p[i][1]);
	}
	return finish(go, res, pids, nr, total, bad, sec);
}

int demo_main(int argc, char **argv)
{
	uint64_t total = 2ull << 30, bad[2][MAX_READERS];
	unsigned long nr = 2;
	double sb = 0, sp = 0;
	uint8_t *src;
	const char *v;
	int r;

	for (int i = 1; i < argc; i++) {
		if (cli_opt(argc, argv, &i, "--bytes", &v)) {
			if (!v || cli_parse_size(v, &total) < 0 || total == 0)
				return cli_fail("--bytes: a size such as 2G");
		} else if (cli_opt(argc, argv, &i, "--readers", &v)) {
			if (!v || cli_parse_uint(v, MAX_READERS, &nr) < 0 || nr == 0)
				return cli_fail("--readers: 1 to %d", MAX_READERS);
		} else {
			return cli_fail("unknown option '%s'", argv[i]);
		}
	}
	signal(SIGPIPE, SIG_IGN);
	/* 1 MiB of pattern plus one chunk, so any window is contiguous; the
	 * pattern has period 256 * 8 bytes, which divides 1 MiB. */
	src = malloc((1u << 20) + CHUNK);
	if (!src)
		return cli_fail("out of memory");
	fill(src, (1u << 20) + CHUNK, 0);
	printf("beltway demo: 1 writer and %lu readers in separate processes, "
	       "%.2f GiB each\n",
	       nr, (double)total / (1u << 30));
	r = run_beltway(total, (int)nr, src, &sb, bad[0]);
	if (r < 0)
		return cli_fail("beltway run failed: %s", strerror(-r));
	r = run_pipes(total, (int)nr, src, &sp, bad[1]);
	if (r < 0)
		return cli_fail("pipe run failed: %s", strerror(-r));
	for (unsigned long i = 0; i < nr; i++)
		if (bad[0][i] || bad[1][i])
			return cli_fail("reader %lu got wrong data (%s)", i,
					bad[0][i] ? "beltway" : "pipe");
	printf("\n%-34s %10s %14s\n", "transport", "seconds", "GB/s per reader");
	printf("%-34s %10.3f %14.3f\n", "Beltway mpipe (written once)", sb,
	       (double)total / sb / 1e9);
	printf("%-34s %10.3f %14.3f\n", "Unix pipes (one per reader)", sp,
	       (double)total / sp / 1e9);
	printf("\nall %lu readers of both got every byte, each checked; "
	       "Beltway is %.1fx the pipes\n",
	       nr, sp / sb);
	free(src);
	return 0;
}
