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
	const char *listen = NULL, **names, *env;
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
	env = getenv("BELTWAY_PROVIDER"); /* empty: unset, as the library */
	printf("beltway serve: listening on port %d, provider %s, exporting %s\n",
	       bw_server_port(serving), f.o.provider ? f.o.provider
				: env && *env		    ? env
							    : "tcp",
	       nn ? "the rings named" : "every ring this user may open");
	fflush(stdout);
	r = bw_server_run(serving, -1);
	bw_server_close(serving);
	serving = NULL;
	return r < 0 ? cli_fail_bw(r, "serving") : 0;
}

/* ---- tail ------------------------------------------------------------------- */

struct tail_opts {
	struct bw_shadow_opts so;
	int flags;
	bool headers; /* write only each record's first header_bytes */
	bool verbose;
};

/* Takes the shadow options of tail; returns as fabric_opt does. */
static int shadow_opt(int argc, char **argv, int *i, struct tail_opts *t)
{
	const char *v;
	unsigned long u;
	uint64_t z;
	int m;

	if (cli_opt(argc, argv, i, "--shadow", &v)) {
		if ((m = bw_shadow_method_parse(v)) < 0) {
			cli_fail_bw(m, "--shadow");
			return -1;
		}
		t->so.method = (uint32_t)m;
		return 1;
	}
	if (cli_opt(argc, argv, i, "--latency-us", &v)) {
		if (cli_parse_uint(v, 1000000, &u)) {
			cli_fail("--latency-us takes microseconds up to 1000000");
			return -1;
		}
		t->so.latency_us = (uint32_t)u;
		return 1;
	}
	if (cli_opt(argc, argv, i, "--header-bytes", &v)) {
		if (cli_parse_uint(v, 4096, &u) || u == 0) {
			cli_fail("--header-bytes takes 1 to 4096");
			return -1;
		}
		t->so.header_bytes = (uint32_t)u;
		return 1;
	}
	if (cli_opt(argc, argv, i, "--record-size", &v)) {
		if (cli_parse_size(v, &z) || z == 0 || z > UINT32_MAX) {
			cli_fail("bad --record-size '%s'", v);
			return -1;
		}
		t->so.record_size = (uint32_t)z;
		return 1;
	}
	if (cli_opt(argc, argv, i, "--window", &v)) {
		if (cli_parse_size(v, &z) || z < 4096) {
			cli_fail("bad --window '%s' (at least 4K)", v);
			return -1;
		}
		t->so.window = z;
		return 1;
	}
	if (cli_opt(argc, argv, i, "--node", &v)) {
		if (cli_parse_uint(v, 4095, &u)) {
			cli_fail("bad --node '%s'", v);
			return -1;
		}
		t->so.numa_node = (int32_t)u;
		t->flags |= BW_SHADOW_NODE;
		return 1;
	}
	if (!strcmp(argv[*i], "--headers")) {
		t->headers = true;
		t->flags |= BW_SHADOW_HEADERS;
		return 1;
	}
	if (!strcmp(argv[*i], "--verbose")) {
		t->verbose = true;
		return 1;
	}
	return 0;
}

/* One step of tail: up to want bytes to stdout, or with --headers the
 * header of one record. Returns the bytes written (-EALREADY: none, a
 * record's rest was passed over), 0 at the end, or -errno. */
static ssize_t tail_step(struct bw_shadow *sh, const struct tail_opts *t,
			 char *buf, size_t want)
{
	struct bw_shadow_stat st;
	uint32_t rec = t->so.record_size, into;
	const void *p = buf;
	ssize_t n;
	int r;

	if (t->headers)
		bw_shadow_stat(sh, &st);
	if (!t->headers) {
		n = bw_shadow_read(sh, buf, want);
	} else if (st.record_max) {
		/* a record ring: the first header bytes of each record (with
		 * BW_SHADOW_HEADERS the shadow gives no more, and completing
		 * them passes the record; hybrid fetches no more) */
		n = bw_shadow_peek_acquire(sh, &p, t->so.header_bytes);
		if (n <= 0)
			return n;
		r = cli_write_all(STDOUT_FILENO, p, (size_t)n);
		if (r < 0) {
			cli_fail("writing stdout: %s", strerror(-r));
			return -EPIPE;
		}
		r = bw_shadow_peek_complete(sh, (size_t)n);
		return r < 0 ? r : n;
	} else {
		into = (uint32_t)(st.position % rec);
		if (into) { /* entered mid-record (after a loss): to the next */
			n = bw_shadow_read(sh, buf, rec - into < want ? rec - into
								     : want);
			return n > 0 ? -EALREADY : n;
		}
		n = bw_shadow_peek_acquire(sh, &p, t->so.header_bytes);
	}
	if (n <= 0)
		return n;
	if ((r = cli_write_all(STDOUT_FILENO, p, (size_t)n)) < 0) {
		cli_fail("writing stdout: %s", strerror(-r));
		return -EPIPE;
	}
	if (t->headers) {
		/* past the payload, unread; if it is not all written yet,
		 * wait for it */
		while ((r = bw_shadow_peek_complete(sh, rec)) == -EINVAL &&
		       bw_shadow_block(sh, -1) > 0)
			;
		if (r < 0)
			return r;
	}
	return n;
}

int cmd_tail(int argc, char **argv)
{
	struct fab_opts f = {.o = BW_FABRIC_OPTS_INIT};
	struct tail_opts t = {.so = BW_SHADOW_OPTS_INIT};
	const char *where = NULL, *v;
	struct bw_shadow *sh;
	struct bw_shadow_stat st;
	struct meter m;
	size_t cap = IO_CHUNK;
	char *buf;
	int r, rc = 0;

	for (int i = 1; i < argc; i++) {
		int k = fabric_opt(argc, argv, &i, &f);

		if (k == 0)
			k = shadow_opt(argc, argv, &i, &t);
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
		if (argv[i][0] == '-' || where)
			return cli_fail("unexpected '%s'", argv[i]);
		where = argv[i];
	}
	if (!where)
		return cli_fail("usage: beltway tail HOST:PORT/NAME | NAME");
	if (t.headers && !t.so.header_bytes)
		t.so.header_bytes = 64;
	buf = malloc(cap);
	if (!buf)
		return cli_fail("out of memory");
	signal(SIGPIPE, SIG_IGN);
	t.so.fabric = &f.o;
	r = bw_shadow_open(where, t.flags | (f.from_start ? BW_FROM_START : 0),
			   &t.so, &sh);
	if (r < 0) {
		free(buf);
		return cli_fail_bw(r, where);
	}
	bw_shadow_stat(sh, &st);
	if (t.headers && !t.so.record_size && !st.record_max) {
		bw_shadow_close(sh);
		free(buf);
		return cli_fail("--headers needs --record-size: where each record "
				"starts (a byte ring)");
	}
	meter_start(&m);
	for (;;) {
		size_t want = cap;
		ssize_t n;

		if (f.bytes && f.bytes - m.bytes < want)
			want = (size_t)(f.bytes - m.bytes);
		if (f.bytes && want == 0)
			break;
		n = tail_step(sh, &t, buf, want);
		if (n == -EALREADY)
			continue;
		if (n == -EMSGSIZE && want < cap)
			break; /* --bytes ends inside the next record */
		if (n == -EMSGSIZE && cap < (1u << 30)) {
			/* a record ring's record larger than the buffer */
			char *b2 = realloc(buf, cap * 2);

			if (!b2) {
				rc = cli_fail("out of memory");
				break;
			}
			buf = b2;
			cap *= 2;
			continue;
		}
		if (n == -EPIPE) { /* stdout: said so */
			rc = 1;
			break;
		}
		if (n == -ESTALE) {
			fprintf(stderr, "beltway tail: %s\n", bw_strerror_last());
			if (f.strict) {
				rc = 2;
				break;
			}
			continue;
		}
		if (n < 0) {
			rc = cli_fail_bw((int)n, where);
			break;
		}
		if (n == 0)
			break;
		meter_add(&m, (uint64_t)n);
	}
	meter_end(&m);
	bw_shadow_stat(sh, &st);
	if (st.lost)
		fprintf(stderr, "beltway tail: %" PRIu64 " bytes lost to "
				"overwriting (the writer does not wait for "
				"shadows)\n",
			st.lost);
	if (t.verbose)
		fprintf(stderr, "beltway tail: %s over %s, %" PRIu64 " bytes, %" PRIu64
				" remote operations, %" PRIu64 " bytes fetched, "
				"latency %u us, replica node %d\n",
			bw_shadow_method_name(st.method), st.link, st.bytes,
			st.remote_ops, st.fetched, st.latency_us, st.node);
	bw_shadow_close(sh);
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
	/* non-blocking: when the local ring runs dry, what was pushed is made
	 * visible (flushed) before this waits for more */
	bw_stream_set_nonblock(s, 1);
	meter_start(&m);
	for (;;) {
		const void *p;
		ssize_t n = bw_stream_peek(s, &p, IO_CHUNK), w;

		if (n == -EAGAIN) {
			r = bw_remote_flush(rm);
			if (r < 0) {
				rc = cli_fail_bw(r, url);
				break;
			}
			bw_stream_block(s, BW_POLLIN, -1);
			continue;
		}
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
