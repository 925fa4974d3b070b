/* SPDX-License-Identifier: MIT */
/* The beltway command. Uses only the public API. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define IO_CHUNK (64u << 10)

struct verb {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;
	const char *help;
};

static const struct verb *find_verb(const char *name);

static int usage_of(const char *name)
{
	const struct verb *v = find_verb(name);

	if (!v)
		return cli_fail("no verb '%s' (try 'beltway --help')", name);
	printf("usage: beltway %s %s\n\n%s", v->name, v->usage, v->help);
	return 0;
}

static bool want_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return true;
	return false;
}

static int bad_option(const char *arg)
{
	return cli_fail("unknown option '%s' (see 'beltway %s --help')", arg,
			cli_verb);
}

/* ---- create ---------------------------------------------------------------- */

/* A size of a self-scaling ring: a power of two of at least 4096. */
static int scale_size(const char *opt, const char *v, uint64_t *out)
{
	uint64_t size;

	if (!v || cli_parse_size(v, &size) < 0 || !size ||
	    (size & (size - 1)) || size < 4096)
		return cli_fail("%s '%s': a power of two of at least 4096 (K, "
				"M, G suffixes)",
				opt, v ? v : "");
	*out = size;
	return 0;
}

static int cmd_create(int argc, char **argv)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	const char *name = NULL, *v;
	unsigned long ul;
	uint64_t size;
	int r;

	o.mode = 0600;
	for (int i = 1; i < argc; i++) {
		if (cli_opt(argc, argv, &i, "--size", &v)) {
			if (!v || cli_parse_size(v, &size) < 0 || size == 0 ||
			    (size & (size - 1)) || size < 4096)
				return cli_fail("--size '%s': give a power of two "
						"of at least 4096 (e.g. 4M)",
						v ? v : "");
			o.size = size;
		} else if (cli_opt(argc, argv, &i, "--mode", &v)) {
			char *end;

			errno = 0;
			ul = v ? strtoul(v, &end, 8) : 0;
			if (!v || !*v || *end || errno || ul > 0777 || ul == 0)
				return cli_fail("--mode '%s': give octal "
						"permission bits, e.g. 0640",
						v ? v : "");
			o.mode = (uint32_t)ul;
		} else if (cli_opt(argc, argv, &i, "--readers", &v)) {
			if (!v || cli_parse_uint(v, 1024, &ul) < 0 || ul == 0)
				return cli_fail("--readers: 1 to 1024");
			o.max_readers = (uint32_t)ul;
		} else if (cli_opt(argc, argv, &i, "--writers", &v)) {
			if (!v || cli_parse_uint(v, 256, &ul) < 0 || ul == 0)
				return cli_fail("--writers: 1 to 256");
			o.max_writers = (uint32_t)ul;
		} else if (cli_opt(argc, argv, &i, "--policy", &v)) {
			r = v ? bw_policy_parse(v) : -EINVAL;
			if (r < 0)
				return cli_fail("--policy '%s': lossless, srp, "
						"mrp or frp",
						v ? v : "");
			o.policy = (uint32_t)r;
		} else if (cli_opt(argc, argv, &i, "--writer-timeout", &v)) {
			if (!v || cli_parse_uint(v, 86400000, &ul) < 0)
				return cli_fail("--writer-timeout: milliseconds, "
						"0 (never) to 86400000");
			o.writer_timeout_ms = (uint32_t)ul;
		} else if (cli_opt(argc, argv, &i, "--wake-batch", &v)) {
			if (cli_wake_batch(v, &o.wake_batch))
				return 1;
		} else if (cli_opt(argc, argv, &i, "--wake-usec", &v)) {
			if (!v || cli_parse_uint(v, 1000000, &ul) < 0 || !ul)
				return cli_fail("--wake-usec: microseconds, 1 to "
						"1000000");
			o.wake_usec = (uint32_t)ul;
		} else if (cli_opt(argc, argv, &i, "--layout", &v)) {
			r = v ? bw_layout_parse(v) : -EINVAL;
			if (r < 0)
				return cli_fail("--layout '%s': bytes, fr, vr "
						"or dr",
						v ? v : "");
			o.layout = (uint32_t)r;
		} else if (cli_opt(argc, argv, &i, "--record-size", &v)) {
			if (!v || cli_parse_size(v, &size) < 0 || !size ||
			    size > (1u << 30))
				return cli_fail("--record-size '%s': bytes, 1 "
						"to 1G (K, M suffixes)",
						v ? v : "");
			o.record_size = (uint32_t)size;
		} else if (cli_opt(argc, argv, &i, "--align", &v)) {
			if (!v || cli_parse_uint(v, 4096, &ul) < 0 || ul < 8 ||
			    (ul & (ul - 1)))
				return cli_fail("--align: a power of two, 8 to "
						"4096");
			o.record_align = (uint32_t)ul;
		} else if (cli_opt(argc, argv, &i, "--align-offset", &v)) {
			if (!v || cli_parse_uint(v, 4095, &ul) < 0)
				return cli_fail("--align-offset: bytes, below "
						"the alignment");
			o.record_align_offset = (uint32_t)ul;
		} else if (cli_opt(argc, argv, &i, "--scale", &v)) {
			if (v && !strcmp(v, "realloc"))
				o.scale = BW_SCALE_REALLOC;
			else if (v && !strcmp(v, "deckcut"))
				o.scale = BW_SCALE_DECKCUT;
			else
				return cli_fail("--scale '%s': realloc or deckcut",
						v ? v : "");
		} else if (cli_opt(argc, argv, &i, "--scale-min", &v)) {
			if (scale_size("--scale-min", v, &o.scale_min))
				return 1;
		} else if (cli_opt(argc, argv, &i, "--scale-max", &v)) {
			if (scale_size("--scale-max", v, &o.scale_max))
				return 1;
		} else if (!strcmp(argv[i], "--hugepage")) {
			o.flags |= BW_RING_HUGEPAGE;
		} else if (!strcmp(argv[i], "--index")) {
			o.flags |= BW_RING_INDEX;
		} else if (argv[i][0] == '-') {
			return bad_option(argv[i]);
		} else if (!name) {
			name = argv[i];
		} else {
			return cli_fail("one ring name only ('%s' is extra)",
					argv[i]);
		}
	}
	if (!name)
		return cli_fail("which ring? usage: beltway create NAME");
	r = bw_mkfifo(name, &o);
	if (r < 0)
		return cli_fail_bw(r, name);
	return 0;
}

/* ---- write ------------------------------------------------------------------ */

static int stream_flags(int argc, char **argv, int base, const char **name,
			bool reader)
{
	int flags = base;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--nowait"))
			flags |= BW_NOWAIT;
		else if (!strcmp(argv[i], "--nonblock"))
			flags |= BW_NONBLOCK;
		else if (reader && !strcmp(argv[i], "--from-start"))
			flags |= BW_FROM_START;
		else if (reader && !strcmp(argv[i], "--strict"))
			flags |= 1 << 30;
		else if (argv[i][0] == '-' && argv[i][1]) {
			bad_option(argv[i]);
			return -1;
		} else if (!*name) {
			*name = argv[i];
		} else {
			cli_fail("one ring name only ('%s' is extra)", argv[i]);
			return -1;
		}
	}
	if (!*name) {
		cli_fail("which ring? usage: beltway %s NAME", cli_verb);
		return -1;
	}
	return flags;
}

/* stdin straight into the ring: read(2) fills a reservation in place. */
static int cmd_write(int argc, char **argv)
{
	const char *name = NULL;
	struct bw_stream_stat st;
	struct bw_stream *s;
	int flags = stream_flags(argc, argv, BW_WRITE, &name, false);
	size_t chunk;
	int r, rc = 0;

	if (flags < 0)
		return 1;
	r = bw_stream_open(name, flags & ~BW_NONBLOCK, &s);
	if (r < 0)
		return cli_fail_bw(r, name);
	bw_stream_stat(s, &st);
	chunk = st.capacity / 2 < IO_CHUNK ? st.capacity / 2 : IO_CHUNK;
	if (st.record_max && st.record_max < chunk)
		chunk = st.record_max; /* each read(2) of stdin: one record */
	for (;;) {
		void *p;
		ssize_t n = bw_stream_poke_acquire(s, &p, chunk), got;

		if (n < 0) {
			rc = cli_fail_bw((int)n, name);
			break;
		}
		do
			got = read(STDIN_FILENO, p, (size_t)n);
		while (got < 0 && errno == EINTR);
		if (got < 0) {
			rc = cli_fail("reading stdin: %s", strerror(errno));
			bw_stream_poke_complete(s, 0);
			break;
		}
		r = bw_stream_poke_complete(s, (size_t)got);
		if (r < 0) {
			rc = cli_fail_bw(r, name);
			break;
		}
		if (got == 0)
			break;
	}
	bw_stream_close(s);
	return rc;
}

/* ---- read ------------------------------------------------------------------- */

/* The ring straight to stdout: write(2) from a peeked span. */
static int cmd_read(int argc, char **argv)
{
	const char *name = NULL;
	struct bw_stream_stat st;
	struct bw_stream *s;
	int flags = stream_flags(argc, argv, BW_READ, &name, true);
	bool strict;
	int r, rc = 0;

	if (flags < 0)
		return 1;
	strict = flags & (1 << 30);
	r = bw_stream_open(name, flags & ~(1 << 30) & ~BW_NONBLOCK, &s);
	if (r < 0)
		return cli_fail_bw(r, name);
	bw_stream_stat(s, &st);
	for (;;) {
		const void *p;
		/* a record ring's peek returns whole records, back to back */
		ssize_t n = bw_stream_peek(s, &p, st.record_max ? SIZE_MAX
								: IO_CHUNK);

		if (n == -ESTALE) {
			fprintf(stderr, "beltway read: %s\n", bw_strerror_last());
			if (strict) {
				rc = 2;
				break;
			}
			continue;
		}
		if (n < 0) {
			rc = cli_fail_bw((int)n, name);
			break;
		}
		if (n == 0)
			break;
		r = cli_write_all(STDOUT_FILENO, p, (size_t)n);
		if (r < 0) {
			rc = cli_fail("writing stdout: %s", strerror(-r));
			break;
		}
	}
	bw_stream_close(s);
	return rc;
}

/* ---- ls, stat, rm ------------------------------------------------------------- */

static int ls_one(const char *name, void *arg)
{
	struct bw_ring_info in;
	int r = bw_ring_stat(name, &in, NULL, 0);

	(void)arg;
	if (r < 0) {
		printf("%-24s (%s)\n", name, bw_strerror_last());
		return 0;
	}
	printf("%-24s %-5s %10" PRIu64 " %04o %7u %7u %14" PRIu64 "\n", name,
	       (in.flags & BW_RING_INDEX)     ? "index"
	       : (in.flags & BW_RING_DYNAMIC) ? "dyn"
	       : in.scale		      ? "scale"
					      : bw_layout_name(in.layout),
	       in.capacity,
	       in.mode, in.readers, in.writers, in.write_pos);
	return 0;
}

static int cmd_ls(int argc, char **argv)
{
	int r;

	if (argc > 1)
		return argv[1][0] == '-' ? bad_option(argv[1])
					 : cli_fail("takes no arguments");
	printf("%-24s %-5s %10s %4s %7s %7s %14s\n", "NAME", "KIND", "SIZE",
	       "MODE", "READERS", "WRITERS", "WRITTEN");
	r = bw_ring_list(ls_one, NULL);
	if (r < 0)
		return cli_fail_bw(r, bw_ring_dir());
	return 0;
}

static const char *role_name(int role)
{
	return role == BW_PEER_READER ? "reader" : "writer";
}

/* The rings an IBuf's held indices point into. */
static void stat_targets(const char *name)
{
	struct bw_index_target t[32];
	int n = bw_ring_index_targets(name, t, 32);

	if (n < 0) {
		printf("targets     (%s)\n", bw_strerror_last());
		return;
	}
	printf("\npoints into %d ring%s:\n", n, n == 1 ? "" : "s");
	if (n > 0)
		printf("%6s %5s %-28s %10s %14s\n", "ID", "GEN", "RING",
		       "INDICES", "BYTES");
	for (int i = 0; i < n && i < 32; i++) {
		char what[80];

		if (!t[i].live)
			snprintf(what, sizeof(what), "(gone)");
		else if (t[i].name[0])
			snprintf(what, sizeof(what), "%s", t[i].name);
		else
			snprintf(what, sizeof(what), "(anonymous, pid %d)",
				 (int)t[i].owner);
		printf("%6u %5u %-28s %10" PRIu64 " %14" PRIu64 "\n", t[i].dbuf,
		       t[i].gen, what, t[i].indices, t[i].bytes);
	}
}

/* Remote readers and writers: sessions of fabric servers on this host. */
static void stat_remote(const char *name)
{
	struct bw_fabric_session x[64];
	int n = bw_fabric_sessions(name, x, 64);

	if (n <= 0)
		return;
	printf("remote      %d session%s (beltway serve)\n", n, n == 1 ? "" : "s");
	printf("  %-12s %-9s %-24s %-22s %-8s %8s %12s\n", "ROLE", "POLICY",
	       "PEER", "SERVER", "PROVIDER", "PID", "GENERATION");
	for (int i = 0; i < n && i < 64; i++)
		printf("  %-12s %-9s %-24s %-22s %-8s %8d %12" PRIu64 "\n",
		       x[i].writer ? "push-writer" : "pull-reader",
		       x[i].writer && x[i].lossless ? "lossless" : "frp",
		       x[i].peer, x[i].listen, x[i].provider, x[i].server_pid,
		       x[i].generation);
}

static int cmd_stat(int argc, char **argv)
{
	struct bw_ring_peer peers[1280];
	struct bw_ring_info in;
	char tmo[32];
	int n;

	if (argc != 2 || argv[1][0] == '-')
		return argc > 1 && argv[1][0] == '-'
			       ? bad_option(argv[1])
			       : cli_fail("usage: beltway stat NAME");
	n = bw_ring_stat(argv[1], &in, peers, 1280);
	if (n < 0)
		return cli_fail_bw(n, argv[1]);
	printf("ring        %s (%s/%s)\n", argv[1], bw_ring_dir(), argv[1]);
	printf("capacity    %" PRIu64 " bytes%s%s\n", in.capacity,
	       (in.flags & BW_RING_HUGEPAGE) ? ", huge pages" : "",
	       (in.flags & BW_RING_INDEX) ? ", an IBuf (16-byte indices)" : "");
	printf("mode        %04o uid %u gid %u\n", in.mode, (unsigned)in.uid,
	       (unsigned)in.gid);
	printf("written     %" PRIu64 " bytes (reserved to %" PRIu64 ")\n",
	       in.write_pos, in.reserved_pos);
	printf("attached    %u readers of %u, %u writers of %u\n", in.readers,
	       in.max_readers, in.writers, in.max_writers);
	/* the stack, top first: scaling, layout layer, the DBuf, its policy */
	printf("layers      ");
	if (in.scale)
		printf("scale %s (size now %" PRIu64 ", %" PRIu64 " resizes, %" PRIu64
		       " to %" PRIu64 ") > ",
		       in.scale == BW_SCALE_REALLOC ? "realloc" : "deckcut",
		       in.scale_size, in.scale_epoch, in.scale_min,
		       in.scale_max);
	if (in.flags & BW_RING_INDEX)
		printf("index > ");
	else if (in.layout == BW_LAYOUT_FR)
		printf("record fr (slot %u, largest %u bytes, align "
		       "%u, offset %u) > ",
		       in.record_size, in.record_max, in.record_align,
		       in.record_align_offset);
	else if (in.layout != BW_LAYOUT_BYTES)
		printf("record %s (largest %u bytes, align %u, "
		       "offset %u) > ",
		       bw_layout_name(in.layout), in.record_max,
		       in.record_align, in.record_align_offset);
	if (in.flags & BW_RING_DYNAMIC)
		printf("dynamic (containers on the heap of its "
		       "process) > ");
	printf(in.layout == BW_LAYOUT_BYTES && !(in.flags & BW_RING_INDEX)
		       ? "dbuf (bytes)"
		       : "dbuf");
	printf(", sync %s\n", bw_policy_name(in.policy));
	printf("policy      %s", bw_policy_name(in.policy));
	if (in.policy == BW_POLICY_SRP || in.policy == BW_POLICY_MRP)
		printf(", %" PRIu64 " writes dropped (%" PRIu64 " bytes)",
		       in.dropped_writes, in.dropped_bytes);
	if (in.policy == BW_POLICY_MRP)
		printf(", shared read position %" PRIu64, in.shared_read_pos);
	printf("\n");
	printf("waits       readers %" PRIu64 ", writers %" PRIu64
	       "; readers woken %" PRIu64 " times",
	       in.reader_waits, in.writer_waits, in.reader_wakes);
	if (in.wake_batch)
		printf(", once per %u writes or %u us", in.wake_batch,
		       in.wake_usec);
	printf("\n");
	printf("died        readers %" PRIu64 ", writers %" PRIu64 "%s\n",
	       in.dead_readers, in.dead_writers,
	       in.broken ? " (ring broken by a writer that died mid-write)" : "");
	snprintf(tmo, sizeof(tmo), in.writer_timeout_ms ? "%u ms" : "none",
		 in.writer_timeout_ms);
	printf("padded      %" PRIu64 " spans (%" PRIu64 " bytes) of writers "
	       "presumed dead; writer timeout %s\n",
	       in.padded_spans, in.padded_bytes, tmo);
	stat_remote(argv[1]);
	if (in.flags & BW_RING_INDEX)
		stat_targets(argv[1]);
	if (n > 0)
		printf("\n%-6s %4s %8s %14s %10s %14s %10s %8s %10s\n", "ROLE",
		       "SLOT", "PID", "POSITION", "BEHIND", "BYTES", "CALLS",
		       "WAITS", "LOST");
	for (int i = 0; i < n && i < 1280; i++) {
		struct bw_ring_peer *p = &peers[i];

		if (p->role == BW_PEER_READER)
			printf("%-6s %4u %8d %14" PRIu64 " %10" PRIu64
			       " %14" PRIu64 " %10" PRIu64 " %8" PRIu64
			       " %10" PRIu64 "\n",
			       role_name(p->role), p->slot, (int)p->pid, p->pos,
			       in.write_pos >= p->pos ? in.write_pos - p->pos : 0,
			       p->bytes, p->calls, p->waits, p->lost);
		else
			printf("%-6s %4u %8d %14s %10s %14" PRIu64 " %10" PRIu64
			       " %8" PRIu64 " %10" PRIu64 "\n",
			       role_name(p->role), p->slot, (int)p->pid, "-", "-",
			       p->bytes, p->calls, p->waits, p->lost);
	}
	return 0;
}

static int cmd_rm(int argc, char **argv)
{
	int rc = 0;

	if (argc < 2)
		return cli_fail("usage: beltway rm NAME...");
	for (int i = 1; i < argc; i++) {
		int r;

		if (argv[i][0] == '-')
			return bad_option(argv[i]);
		r = bw_unlink(argv[i]);
		if (r < 0)
			rc = cli_fail_bw(r, argv[i]);
	}
	return rc;
}

/* ---- bench -------------------------------------------------------------------- */

static int cmd_bench(int argc, char **argv)
{
	if (argc < 2)
		return cli_fail("which benchmark? usage: beltway bench "
				"local|splice|fabric|multiconsumer|ringsize|layout|scaling|"
				"shadow [options]");
	if (!strcmp(argv[1], "local"))
		return bench_local_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "splice"))
		return bench_splice_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "fabric"))
		return bench_fabric_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "multiconsumer"))
		return bench_multi_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ringsize"))
		return bench_ringsize_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "layout"))
		return bench_layout_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "scaling"))
		return bench_scaling_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "shadow"))
		return bench_shadow_main(argc - 1, argv + 1);
	return cli_fail("no benchmark '%s' (available: local, splice, fabric, "
			"multiconsumer, ringsize, layout, scaling, shadow)",
			argv[1]);
}

/* ---- the table of verbs ---------------------------------------------------------- */

static const struct verb verbs[] = {
	{"create", cmd_create,
	 "NAME [--size BYTES] [--mode OCTAL] [--readers N] [--writers N] "
	 "[--policy P] [--writer-timeout MS] [--wake-batch N] [--wake-usec US] "
	 "[--layout L] [--record-size BYTES] [--align N] [--align-offset N] "
	 "[--scale realloc|deckcut] [--scale-min BYTES] [--scale-max BYTES] "
	 "[--hugepage] [--index]",
	 "Creates the named ring NAME (letters, digits, '.', '_', '-').\n"
	 "  --size BYTES   capacity, a power of two >= 4096; K, M, G suffixes "
	 "(default 4M)\n"
	 "  --mode OCTAL   permission bits (default 0600): read lets a process\n"
	 "                 tap the ring, write lets it attach as reader or "
	 "writer\n"
	 "  --readers N    reader slots (default 64); --writers N (default 16)\n"
	 "  --policy P     what a writer does when a reader is a ring behind:\n"
	 "                 lossless (default) waits; srp drops the write; mrp\n"
	 "                 drops while the readers' shared position lags, and\n"
	 "                 may overwrite a reader that is not scheduled for a\n"
	 "                 round; frp never waits or drops, and readers skip\n"
	 "                 what was overwritten (reported by 'beltway read')\n"
	 "  --writer-timeout MS\n"
	 "                 a writer that holds the oldest unpublished write this\n"
	 "                 long is presumed dead: its span is skipped by readers\n"
	 "                 and its late completion fails (default 0: only a\n"
	 "                 writer whose process died)\n"
	 "  --wake-batch N wake sleeping readers once per N writes, not on\n"
	 "                 every write; --wake-usec US: they look again on\n"
	 "                 their own at least this often (default 1000)\n"
	 "  --layout L     bytes (default): a byte stream; fr, vr, dr: every\n"
	 "                 write is one record and every read returns one:\n"
	 "                 fr in fixed slots of --record-size bytes (default\n"
	 "                 2K), vr with a header before each record, dr with\n"
	 "                 headers in a separate small ring (see README)\n"
	 "  --record-size BYTES\n"
	 "                 fr: the slot; vr, dr: the largest record (default\n"
	 "                 64K or a quarter of the ring)\n"
	 "  --align N      records start N-aligned (default 8, dr 64);\n"
	 "                 --align-offset O: payload + O lands aligned (14\n"
	 "                 aligns the IP header of an Ethernet frame)\n"
	 "  --scale realloc|deckcut\n"
	 "                 a self-scaling ring: it starts at --size and its\n"
	 "                 writer doubles or halves it as it wraps, to the\n"
	 "                 size it measures fastest (README); realloc makes a\n"
	 "                 region per size, deckcut cuts one of --scale-max;\n"
	 "                 --scale-min (default 64K, or --size if less; at\n"
	 "                 most --size), --scale-max (default 4 x size for\n"
	 "                 realloc, size for deckcut)\n"
	 "  --hugepage     back the ring with 2 MiB huge pages\n"
	 "  --index        make an IBuf: a ring of 16-byte indices into other\n"
	 "                 rings; data written to it from elsewhere goes to its\n"
	 "                 default DBuf NAME.wt (made with it)\n"},
	{"write", cmd_write, "NAME [--nowait]",
	 "Copies stdin into the ring. Like a FIFO, waits for a reader first;\n"
	 "fails with EPIPE once every reader has gone.\n"
	 "  --nowait       start at once and never fail for lack of readers\n"},
	{"read", cmd_read, "NAME [--from-start] [--nowait] [--strict]",
	 "Copies the ring to stdout from the point of attaching, until every\n"
	 "writer has gone. Like a FIFO, waits for a writer first.\n"
	 "  --from-start   begin with the oldest data still in the ring\n"
	 "  --nowait       do not wait for a writer (EOF at once without one)\n"
	 "  --strict       exit 2 when data was lost (a read-only tap that was\n"
	 "                 overtaken); by default the loss is reported on "
	 "stderr\n"},
	{"ls", cmd_ls, "", "Lists the named rings.\n"},
	{"stat", cmd_stat, "NAME",
	 "Shows a ring's geometry, positions, and every attached reader and\n"
	 "writer with its statistics.\n"},
	{"rm", cmd_rm, "NAME...",
	 "Removes named rings. Attached streams keep working until closed.\n"},
	{"bench", cmd_bench,
	 "local|splice|fabric|multiconsumer|ringsize|layout|scaling|shadow [--json] [--runs N] [--sizes LIST] [--cases LIST] "
	 "[--ring BYTES] [--providers LIST] [--quick] [--verbose]",
	 "Benchmarks. 'local' streams between two processes through Beltway\n"
	 "read/write and poke/peek, a Unix pipe at its default and maximum\n"
	 "size, and a bare shared-memory ring (the limit), in one run.\n"
	 "'splice' moves data from a DBuf to an IBuf five ways (thesis Fig\n"
	 "4.4): peek, peek + splicing write, read, read + splicing write,\n"
	 "read + copying write (--cases and --ring are for 'local' only).\n"
	 "'fabric' streams a ring to a remote reader by pull and into a remote\n"
	 "ring by push on loopback, per provider (--providers, default tcp,shm)\n"
	 "and block size (default 4K,64K,1M), with fi_pingpong, ucx_perftest\n"
	 "put_bw and iperf3 in the same run, and the writer's CPU use with 1\n"
	 "and 4 pull readers.\n"
	 "'multiconsumer' runs one writer and 1, 2, 4, 8 readers per policy\n"
	 "(lossless, srp, mrp, frp) and 1, 2, 4 writers (thesis Fig 4.12),\n"
	 "with a pipe per reader as the Unix peer; --readers LIST, --writers\n"
	 "LIST pick the counts, --wake-batch N makes its rings wake readers\n"
	 "once per N writes.\n"
	 "'ringsize' streams between two processes for every ring size\n"
	 "(--rings LIST, default 4K to 64M) and call size (default 64 to 64M),\n"
	 "read (write + read) and peek (poke + peek) (thesis Fig 4.11).\n"
	 "'layout' writes and reads back records of 64 to 1514 bytes through\n"
	 "a byte ring, fr, vr and dr record rings and two malloc queues\n"
	 "(thesis Figs 4.9, 4.10).\n"
	 "'scaling' streams between two processes through a static 16 MiB\n"
	 "ring and reallocating and deck-cut rings that start at 16 MiB, and\n"
	 "reports size and GB/s loop by loop (--loops N, default 256; thesis\n"
	 "Fig 4.8).\n"
	 "'shadow' reads a served ring of records through the four shadow\n"
	 "methods (zero-copy, copy-once, hybrid, prefetch), headers only and\n"
	 "full payloads, with 0, 50 and 500 us added per remote operation\n"
	 "(--latencies LIST), on tcp and shm (--providers LIST); --record-size\n"
	 "(default 64K), --header-bytes (64) and --ring (64M) shape it (thesis\n"
	 "Table 4.3).\n"
	 "  --json         one JSON object per line\n"
	 "  --runs N       runs per figure, the median is reported (default 5)\n"
	 "  --sizes LIST   call sizes, e.g. 64,4K (default 64,1K,4K,64K)\n"
	 "  --cases LIST   some of rw,peekpoke,pipe,pipe_max,limit (default "
	 "all)\n"
	 "  --ring BYTES   ring capacity (default 4M)\n"
	 "  --quick        less data per run (for smoke tests)\n"
	 "  --verbose      every run's figure on stderr\n"},
	{"serve", cmd_serve,
	 "--listen HOST:PORT [--provider P] [--timeout MS] [NAME...]",
	 "Exports named rings (the NAMEs given, else any this user may open)\n"
	 "to remote readers and writers: a client asks for a ring by name over\n"
	 "TCP at HOST:PORT and then reads or writes it with one-sided RDMA\n"
	 "operations. Runs until interrupted.\n"
	 "  --provider P   libfabric provider: tcp (default, or "
	 "$BELTWAY_PROVIDER),\n"
	 "                 shm, sockets, verbs\n"
	 "  --timeout MS   a silent peer is gone after MS (default 5000)\n"},
	{"tail", cmd_tail,
	 "HOST:PORT/NAME | NAME [--shadow METHOD] [--latency-us L] [--bytes N] "
	 "[--from-start] [--strict] [--headers --record-size R] ...",
	 "Copies a ring to stdout through a shadow buffer, from the write\n"
	 "position on, until every writer has gone. The ring is a remote one\n"
	 "(HOST:PORT/NAME, served by 'beltway serve': one-sided reads) or a\n"
	 "named ring on this host (read in place, from any NUMA node). The\n"
	 "writer never waits for the shadow and never learns of it: data\n"
	 "overwritten before it was fetched is reported on stderr.\n"
	 "  --shadow M       zero-copy, copy-once, hybrid or prefetch (default:\n"
	 "                   prefetch over the fabric, zero-copy on this host,\n"
	 "                   copy-once for a ring on another NUMA node, hybrid\n"
	 "                   with --headers)\n"
	 "  --latency-us L   add L us to every remote operation (emulates a long\n"
	 "                   link; default $BELTWAY_LATENCY_US)\n"
	 "  --headers        write only the first --header-bytes (default 64) of\n"
	 "                   each record of --record-size bytes; payloads are\n"
	 "                   skipped, not fetched\n"
	 "  --window N       prefetch: read N ahead (default adaptive)\n"
	 "  --node N         put the local replica on NUMA node N\n"
	 "  --provider P     libfabric provider (default tcp, $BELTWAY_PROVIDER)\n"
	 "  --timeout MS     a silent server is gone after MS (default 5000)\n"
	 "  --bytes N        stop after writing N bytes\n"
	 "  --from-start     begin with the oldest data still in the ring\n"
	 "  --strict         exit 2 when data was lost\n"
	 "  --verbose        the method, link and remote operations on stderr\n"},
	{"push", cmd_push,
	 "NAME HOST:PORT/NAME [--frp] [--provider P] [--timeout MS]",
	 "Replicates the local ring NAME into a remote ring by one-sided\n"
	 "writes, until every writer of NAME has gone. By default the remote\n"
	 "ring's readers pace it (lossless credit); --frp never waits and\n"
	 "overwrites what they have not read.\n"},
	{"demo", demo_main, "[--bytes N] [--readers N]",
	 "A writer and N readers in separate processes stream N bytes through\n"
	 "a Beltway multiway pipe; the same data goes through Unix pipes in "
	 "the\n"
	 "same run, and both throughputs are printed.\n"},
};

static const struct verb *find_verb(const char *name)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(verbs[i].name, name))
			return &verbs[i];
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: beltway VERB [options]\n\n"
		   "Beltway streams data between processes through shared "
		   "rings.\nRings live in %s ($BELTWAY_DIR).\n\nverbs:\n",
		bw_ring_dir());
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		fprintf(f, "  %-7s %s\n", verbs[i].name, verbs[i].usage);
	fprintf(f, "\n'beltway help VERB' or 'beltway VERB --help' describes a "
		   "verb.\n");
}

int main(int argc, char **argv)
{
	const struct verb *v;

	if (argc < 2) {
		usage(stderr);
		return 1;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("beltway %s\n", bw_version());
		return 0;
	}
	if (!strcmp(argv[1], "help")) {
		if (argc < 3) {
			usage(stdout);
			return 0;
		}
		return usage_of(argv[2]);
	}
	v = find_verb(argv[1]);
	if (!v)
		return cli_fail("no verb '%s' (try 'beltway --help')", argv[1]);
	cli_verb = v->name;
	if (want_help(argc - 1, argv + 1))
		return usage_of(v->name);
	return v->fn(argc - 1, argv + 1);
}
