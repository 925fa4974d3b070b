/* SPDX-License-Identifier: MIT */
/* The fabric verbs: serve, tail, push. Uses only the public API. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define IO_CHUNK (256u << 10)

struct fab_opts {
	struct bw_fabric_opts o;
	bool strict;
	bool frp;
	bool from_start;
	uint64_t bytes; /* tail: stop after this many (0: at end of stream) */
};

/* Takes --provider P and --timeout MS; returns 1 when argv[*i] was one, 0
 * when not, -1 after printing a bad value's error. */
static int fabric_opt(int argc, char **argv, int *i, struct fab_opts *f)
{
	const char *v;
	unsigned long t;

	if (cli_opt(argc, argv, i, "--provider", &v)) {
		f->o.provider = v;
		return 1;
	}
	if (cli_opt(argc, argv, i, "--timeout", &v)) {
		if (cli_parse_uint(v, 86400000, &t) || t == 0) {
			cli_fail("--timeout takes milliseconds > 0");
			return -1;
		}
		f->o.timeout_ms = (uint32_t)t;
		return 1;
	}
	return 0;
}

/* A throughput line on stderr, once a second, when stderr is a terminal. */
struct meter {
	bool on;
	double t0, last;
	uint64_t bytes;
};

static void meter_start(struct meter *m)
{
	m->on = isatty(STDERR_FILENO);
	m->t0 = m->last = cli_now();
	m->bytes = 0;
}

static void meter_add(struct meter *m, uint64_t n)
{
	double now;

	m->bytes += n;
	if (!m->on || (now = cli_now()) - m->last < 1.0)
		return;
	m->last = now;
	fprintf(stderr, "\r%s: %.1f MB in %.0f s, %.1f MB/s   ", cli_verb,
		(double)m->bytes / 1e6, now - m->t0,
		(double)m->bytes / 1e6 / (now - m->t0));
}

static void meter_end(struct meter *m)
{
	if (m->on && m->last > m->t0)
		fputc('\n', stderr);
}

/* ---- serve ------------------------------------------------------------------ */

static struct bw_server *serving;

static void on_stop(int sig)
{
	(void)sig;
	if (serving)
		bw_server_stop(serving);
}

int cmd_serve(int argc, char **argv)
{
	struct fab_opts f = {.o = BW_FABRIC_OPTS_INIT};
	const char *listen = NULL, **names;
	struct sigaction sa = {.sa_handler = on_stop};
	unsigned nn = 0;
	int r;

	names = calloc((size_t)argc + 1, sizeof(char *));
	if (!names)
		return cli_fail("out of memory");
	for (int i = 1; i < argc; i++) {
		int k = fabric_opt(argc, argv, &i, &f);

		if (k < 0) {
			free(names);
			return 1;
		}
		if (k)
			continue;
		if (cli_opt(argc, argv, &i, "--listen", &listen))
			continue;
		if (argv[i][0] == '-') {
			free(names);
			return cli_fail("unknown option '%s'", argv[i]);
		}
		names[nn++] = argv[i];
	}
	if (!listen) {
		free(names);
		return cli_fail("usage: beltway serve --listen HOST:PORT [NAME...]");
	}
	f.o.names = nn ? names : NULL;
	r = bw_server_open(listen, &f.o, &serving);
	free(names);
	if (r < 0)
		return cli_fail_bw(r, listen);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	printf("beltway serve: listening on port %d, provider %s, exporting %s\n",
	       bw_server_port(serving), f.o.provider ? f.o.provider
				: getenv("BELTWAY_PROVIDER") ? getenv("BELTWAY_PROVIDER")
							     : "tcp",
	       nn ? "the rings named" : "every ring this user may open");
	fflush(stdout);
	r = bw_server_run(serving, -1);
	bw_server_close(serving);
	serving = NULL;
	return r < 0 ? cli_fail_bw(r, "serving") : 0;
}

/* ---- tail ------------------------------------------------------------------- */

int cmd_tail(int argc, char **argv)
{
	struct fab_opts f = {.o = BW_FABRIC_OPTS_INIT};
	const char *url = NULL, *v;
	struct bw_remote *rm;
	struct bw_remote_stat st;
	struct meter m;
	char *buf;
	int r, rc = 0;

	for (int i = 1; i < argc; i++) {
		int k = fabric_opt(argc, argv, &i, &f);

		if (k < 0)
			return 1;
		if (k)
			continue;
		if (!strcmp(argv[i], "--strict")) {
			f.strict = true;
			continue;
		}
		if (!strcmp(argv[i], "--from-start")) {
			f.from_start = true;
			continue;
		}
		if (cli_opt(argc, argv, &i, "--bytes", &v)) {
			if (cli_parse_size(v, &f.bytes))
				return cli_fail("bad --bytes '%s'", v);
			continue;
		}
		if (argv[i][0] == '-' || url)
			return cli_fail("unexpected '%s'", argv[i]);
		url = argv[i];
	}
	if (!url)
		return cli_fail("usage: beltway tail HOST:PORT/NAME");
	buf = malloc(IO_CHUNK);
	if (!buf)
		return cli_fail("out of memory");
	signal(SIGPIPE, SIG_IGN);
	r = bw_remote_open(url, BW_READ | (f.from_start ? BW_FROM_START : 0),
			   &f.o, &rm);
	if (r < 0) {
		free(buf);
		return cli_fail_bw(r, url);
	}
	meter_start(&m);
	for (;;) {
		size_t want = IO_CHUNK;
		ssize_t n;

		if (f.bytes && f.bytes - m.bytes < want)
			want = (size_t)(f.bytes - m.bytes);
		if (f.bytes && want == 0)
			break;
		n = bw_remote_read(rm, buf, want);
		if (n == -ESTALE) {
			fprintf(stderr, "beltway tail: %s\n", bw_strerror_last());
			if (f.strict) {
				rc = 2;
				break;
			}
			continue;
		}
		if (n < 0) {
			rc = cli_fail_bw((int)n, url);
			break;
		}
		if (n == 0)
			break;
		if ((r = cli_write_all(STDOUT_FILENO, buf, (size_t)n)) < 0) {
			rc = cli_fail("writing stdout: %s", strerror(-r));
			break;
		}
		meter_add(&m, (uint64_t)n);
	}
	meter_end(&m);
	bw_remote_stat(rm, &st);
	if (st.lost)
		fprintf(stderr, "beltway tail: %" PRIu64 " bytes lost to "
				"overwriting (the writer does not wait for remote "
				"readers)\n",
			st.lost);
	bw_remote_close(rm);
	free(buf);
	return rc;
}

/* ---- push ------------------------------------------------------------------- */

int cmd_push(int argc, char **argv)
{
	struct fab_opts f = {.o = BW_FABRIC_OPTS_INIT};
	const char *name = NULL, *url = NULL;
	struct bw_stream *s;
	struct bw_remote *rm;
	struct meter m;
	int r, rc = 0;

	for (int i = 1; i < argc; i++) {
		int k = fabric_opt(argc, argv, &i, &f);

		if (k < 0)
			return 1;
		if (k)
			continue;
		if (!strcmp(argv[i], "--frp")) {
			f.frp = true;
			continue;
		}
		if (argv[i][0] == '-' || url)
			return cli_fail("unexpected '%s'", argv[i]);
		if (!name)
			name = argv[i];
		else
			url = argv[i];
	}
	if (!url)
		return cli_fail("usage: beltway push NAME HOST:PORT/NAME [--frp]");
	signal(SIGPIPE, SIG_IGN);
	r = bw_stream_open(name, BW_READ, &s);
	if (r < 0)
		return cli_fail_bw(r, name);
	r = bw_remote_open(url, BW_WRITE | (f.frp ? 0 : BW_REMOTE_LOSSLESS),
			   &f.o, &rm);
	if (r < 0) {
		bw_stream_close(s);
		return cli_fail_bw(r, url);
	}
	meter_start(&m);
	for (;;) {
		const void *p;
		ssize_t n = bw_stream_peek(s, &p, IO_CHUNK), w;

		if (n == -ESTALE) {
			fprintf(stderr, "beltway push: %s\n", bw_strerror_last());
			continue;
		}
		if (n < 0) {
			rc = cli_fail_bw((int)n, name);
			break;
		}
		if (n == 0)
			break;
		w = bw_remote_write(rm, p, (size_t)n);
		if (w < 0) {
			rc = cli_fail_bw((int)w, url);
			break;
		}
		meter_add(&m, (uint64_t)n);
	}
	meter_end(&m);
	r = bw_remote_close(rm);
	if (r < 0 && !rc)
		rc = cli_fail_bw(r, url);
	bw_stream_close(s);
	return rc;
}
