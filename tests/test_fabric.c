/* SPDX-License-Identifier: MIT */
/*
 * The fabric layer on loopback, per provider (tcp and shm; sockets too):
 * remote pull and push with patterned data checked byte by byte, a writer
 * that overruns a remote reader, refused pushes, a killed server, killed
 * clients, hostile rendezvous input, wrong keys, stale generations and
 * reads outside a registered region. The server runs in a child process.
 * The multi-host version (network namespaces) is test_fabric_netns.sh.
 *
 * White-box: links the library statically for the descriptor hooks.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bwf.h"
#include "helpers.h"

#define TMO 5000u /* ms: how long a silent peer may take to be declared gone */

static const char *prov = "tcp";
static pid_t server_pid = -1;
static int server_port;

static struct bw_fabric_opts fopts(void)
{
	struct bw_fabric_opts o = BW_FABRIC_OPTS_INIT;

	o.provider = prov;
	o.timeout_ms = TMO;
	return o;
}

/* Starts a server in a child; only `names` exported when given. */
static void server_start(const char *const *names)
{
	bwt_server_kill(&server_pid);
	server_pid = bwt_server_start(prov, TMO, names, &server_port);
}

/* Stops the server; it must still be running (no crash on bad input). */
static void server_stop(void)
{
	if (server_pid <= 0)
		return;
	CU_ASSERT_EQUAL(waitpid(server_pid, NULL, WNOHANG), 0);
	bwt_server_kill(&server_pid);
}

static char *url(const char *name)
{
	static char u[128];

	snprintf(u, sizeof(u), "127.0.0.1:%d/%s", server_port, name);
	return u;
}

static void mkring(const char *name, uint64_t size)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;

	o.size = size;
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo(name, &o), 0);
}

#define writer_child bwt_writer_child

/* Reads r to its end; checks every byte at its stream position (the ring
 * was fresh, so stream position = ring position). Returns bytes read, or
 * -1 on a wrong byte; counts -ESTALE returns. */
static int64_t drain(struct bw_remote *r, uint32_t seed, int tokfd,
		     uint64_t window, unsigned *stale)
{
	uint8_t *buf = malloc(256 << 10);
	struct bw_remote_stat st;
	uint64_t got = 0, next_tok = window;
	int64_t ret = 0;

	*stale = 0;
	for (;;) {
		ssize_t n;
		uint64_t pos;

		bw_remote_stat(r, &st);
		pos = st.position;
		n = bw_remote_read(r, buf, 256 << 10);
		if (n == -ESTALE) {
			++*stale;
			continue;
		}
		if (n < 0) {
			fprintf(stderr, "drain: %s\n", bw_strerror_last());
			ret = n;
			break;
		}
		if (n == 0)
			break;
		if (bwt_verify(buf, (size_t)n, pos, seed) != -1) {
			fprintf(stderr, "wrong byte near position %llu\n",
				(unsigned long long)pos);
			ret = -1;
			break;
		}
		got += (uint64_t)n;
		while (tokfd >= 0 && got >= next_tok) {
			if (write(tokfd, "t", 1) != 1)
				break;
			next_tok += window;
		}
	}
	free(buf);
	return ret < 0 ? ret : (int64_t)got;
}

/* ---- pull ----------------------------------------------------------------- */

static void pull_lossless_by_handshake(void)
{
	struct bw_fabric_opts o = fopts();
	struct bw_remote *r;
	struct bw_remote_stat st;
	const uint64_t total = 24u << 20, window = 128u << 10;
	unsigned stale;
	int tok[2];
	pid_t w;
	int64_t got;

	mkring("pull1", 256u << 10);
	server_start(NULL);
	CU_ASSERT_EQUAL(bw_remote_open(url("nosuch"), BW_READ, &o, &r), -ENOENT);
	{
		/* a vr ring is read a record at a time, and fed by no
		 * remote writer; dr and self-scaling rings are not served
		 * (yet) */
		struct bw_ring_opts ro = BW_RING_OPTS_INIT;
		struct bw_stream *lw;
		char rec[100];

		ro.size = 64u << 10;
		ro.layout = BW_LAYOUT_VR;
		CU_ASSERT_EQUAL_FATAL(bw_mkfifo("pullvr", &ro), 0);
		CU_ASSERT_EQUAL_FATAL(bw_stream_open("pullvr", BW_WRITE | BW_NOWAIT,
						     &lw),
				      0);
		CU_ASSERT_EQUAL(bw_stream_write(lw, "first", 5), 5);
		CU_ASSERT_EQUAL(bw_stream_write(lw, "second record", 13), 13);
		bw_stream_close(lw);
		CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("pullvr"),
						     BW_READ | BW_FROM_START, &o, &r),
				      0);
		CU_ASSERT_EQUAL(bw_remote_read(r, rec, 3), -EMSGSIZE);
		CU_ASSERT_EQUAL(bw_remote_read(r, rec, sizeof(rec)), 5);
		CU_ASSERT_EQUAL(memcmp(rec, "first", 5), 0);
		CU_ASSERT_EQUAL(bw_remote_read(r, rec, sizeof(rec)), 13);
		CU_ASSERT_EQUAL(memcmp(rec, "second record", 13), 0);
		CU_ASSERT_EQUAL(bw_remote_read(r, rec, sizeof(rec)), 0);
		bw_remote_close(r);
		ro.layout = BW_LAYOUT_DR;
		CU_ASSERT_EQUAL_FATAL(bw_mkfifo("pulldr", &ro), 0);
		CU_ASSERT_EQUAL(bw_remote_open(url("pulldr"), BW_READ, &o, &r),
				-ENOTSUP);
		bw_unlink("pulldr");
		ro.layout = 0;
		ro.scale = BW_SCALE_REALLOC;
		CU_ASSERT_EQUAL_FATAL(bw_mkfifo("pullsc", &ro), 0);
		CU_ASSERT_EQUAL(bw_remote_open(url("pullsc"), BW_READ, &o, &r),
				-ENOTSUP);
		/* an IBuf's records are indices into rings of this host:
		 * neither pulled nor pushed */
		ro.scale = 0;
		ro.flags = BW_RING_INDEX;
		CU_ASSERT_EQUAL_FATAL(bw_mkfifo("pullix", &ro), 0);
		CU_ASSERT_EQUAL(bw_remote_open(url("pullix"), BW_READ, &o, &r),
				-ENOTSUP);
		CU_ASSERT_EQUAL(bw_remote_open(url("pullix"), BW_WRITE, &o, &r),
				-ENOTSUP);
		ro.flags = 0;
		bw_unlink("pullix");
		bw_unlink("pullvr");
		bw_unlink("pullsc");
	}
	CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("pull1"), BW_READ, &o, &r), 0);
	CU_ASSERT_FATAL(pipe(tok) == 0);
	/* The writer stays within half a ring of what the reader has
	 * taken, so nothing may be lost. */
	w = writer_child("pull1", total, 64u << 10, 7, tok[0], window);
	got = drain(r, 7, tok[1], window, &stale);
	CU_ASSERT_EQUAL(got, (int64_t)total);
	CU_ASSERT_EQUAL(stale, 0);
	bw_remote_stat(r, &st);
	CU_ASSERT_EQUAL(st.lost, 0);
	CU_ASSERT_EQUAL(st.bytes, total);
	CU_ASSERT(st.remote_ops >= 2 * total / (256u << 10));
	close(tok[0]);
	close(tok[1]);
	CU_ASSERT_EQUAL(bwt_wait(w), 0);
	bw_remote_close(r);
	server_stop();
	bw_unlink("pull1");
}

static void pull_overrun(void)
{
	struct bw_fabric_opts o = fopts();
	struct bw_remote *r;
	struct bw_remote_stat st;
	const uint64_t total = 64u << 20;
	unsigned stale;
	pid_t w;
	int64_t got;

	/* A small ring, a writer that never waits: the remote reader must
	 * lose data, must never deliver a byte that is not the one written
	 * at its position (drain checks all), and must account for every
	 * byte: delivered + lost = written. */
	mkring("pull2", 16u << 10);
	server_start(NULL);
	CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("pull2"), BW_READ, &o, &r), 0);
	w = writer_child("pull2", total, 4096, 9, -1, 0);
	got = drain(r, 9, -1, 0, &stale);
	CU_ASSERT(got >= 0);
	bw_remote_stat(r, &st);
	CU_ASSERT_EQUAL(st.bytes + st.lost, total);
	CU_ASSERT(st.lost > 0);
	CU_ASSERT(stale > 0);
	CU_ASSERT_EQUAL(bwt_wait(w), 0);
	bw_remote_close(r);
	server_stop();
	bw_unlink("pull2");
}

/* ---- push ----------------------------------------------------------------- */

/* A local reader of NAME in a child: exits 0 when it read exactly total
 * bytes of stream seed and then saw the end of the stream. It starts once
 * hold bytes are readable. */
static pid_t reader_child(const char *name, uint64_t total, uint32_t seed,
			  uint64_t hold)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct bw_stream *s;
		uint64_t pos = 0;

		/* waits for a writer: the push session's */
		if (bw_stream_open(name, BW_READ, &s) < 0)
			_exit(3);
		for (;;) {
			const void *p;
			ssize_t a = bw_stream_peek_acquire(s, &p, hold);

			if (a <= 0) /* the stream ended, or broke, early */
				_exit(7);
			if ((uint64_t)a >= hold)
				break;
			sched_yield();
		}
		for (;;) {
			const void *p;
			ssize_t n = bw_stream_peek(s, &p, 1u << 20);

			if (n < 0)
				_exit(4);
			if (n == 0)
				break;
			ssize_t off = bwt_verify(p, (size_t)n, pos, seed);

			if (off != -1) {
				fprintf(stderr, "reader: wrong byte at %llu\n",
					(unsigned long long)(pos + (uint64_t)off));
				_exit(5);
			}
			pos += (uint64_t)n;
		}
		_exit(pos == total ? 0 : 6);
	}
	return pid;
}

/* A non-blocking lossless push into a ring whose reader reads nothing:
 * the write goes in part, and the part is counted in the writer's stat; a
 * NULL buffer is an error, not a crash. */
static void push_partial_counted(void)
{
	struct bw_fabric_opts o = fopts();
	struct bw_remote *r;
	struct bw_remote_stat st;
	struct bw_stream *lr;
	static uint8_t buf[100000];
	ssize_t x;

	mkring("push2", 64u << 10);
	server_start(NULL);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("push2", BW_READ | BW_NOWAIT, &lr),
			      0);
	CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("push2"),
					     BW_WRITE | BW_REMOTE_LOSSLESS |
						     BW_NONBLOCK,
					     &o, &r),
			      0);
	CU_ASSERT_EQUAL(bw_remote_write(r, NULL, 10), -EFAULT);
	x = bw_remote_write(r, buf, sizeof(buf));
	CU_ASSERT(x > 0 && x < (ssize_t)sizeof(buf));
	CU_ASSERT_EQUAL(bw_remote_flush(r), 0);
	bw_remote_stat(r, &st);
	CU_ASSERT_EQUAL(st.bytes, (uint64_t)x);
	CU_ASSERT_EQUAL(st.calls, 1);
	CU_ASSERT_EQUAL(bw_remote_close(r), 0);
	bw_stream_close(lr);
	server_stop();
	bw_unlink("push2");
}

static void push_lossless(void)
{
	struct bw_fabric_opts o = fopts();
	struct bw_remote *r;
	struct bw_remote_stat st;
	const uint64_t total = 32u << 20;
	uint8_t *buf = malloc(100000);

	struct bw_stream *lw;
	uint64_t pos = 0;
	pid_t rd;

	mkring("push1", 256u << 10);
	server_start(NULL);
	/* the reader starts when another write would not fit: the writer
	 * must wait for credit */
	rd = reader_child("push1", total, 11, (256u << 10) - 100000 + 1);
	CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("push1"),
					     BW_WRITE | BW_REMOTE_LOSSLESS, &o, &r),
			      0);
	/* While the push holds the ring, no local writer may join. */
	CU_ASSERT_EQUAL(bw_stream_open("push1", BW_WRITE | BW_NOWAIT, &lw),
			-EBUSY);
	/* odd sizes: writes straddle the wrap and the staging slots */
	while (pos < total) {
		size_t n = total - pos < 100000 ? (size_t)(total - pos) : 100000;

		bwt_fill(buf, n, pos, 11);
		CU_ASSERT_EQUAL_FATAL(bw_remote_write(r, buf, n), (ssize_t)n);
		pos += n;
	}
	CU_ASSERT_EQUAL(bw_remote_flush(r), 0);
	bw_remote_stat(r, &st);
	CU_ASSERT_EQUAL(st.bytes, total);
	CU_ASSERT(st.waits > 0); /* credit paced it */
	CU_ASSERT_EQUAL(bw_remote_close(r), 0);
	/* the session ended: the reader sees the end of the stream */
	{
		int rs = bwt_wait(rd);

		CU_ASSERT_EQUAL(rs, 0);
		if (rs)
			fprintf(stderr, "local reader: exit %d\n", rs);
	}
	/* and a local writer may attach again */
	CU_ASSERT_EQUAL(bw_stream_open("push1", BW_WRITE | BW_NOWAIT, &lw), 0);
	bw_stream_close(lw);
	free(buf);
	server_stop();
	bw_unlink("push1");
}

/* Small writes gather while writes are in flight (Nagle's rule). The
 * server is stopped, so nothing in flight completes: a write with nothing in
 * flight goes out at once, in one operation; 60 KiB of 1-61 byte writes
 * behind it gather, in no operation while that one is in flight (64 KiB
 * would be posted, and shm could not post it to a stopped peer). Once the
 * server runs again, all of it, and 2 MiB of tiny writes after it, arrive
 * whole and in order through a ring they wrap. */
static void push_small_writes_gather(void)
{
	struct bw_fabric_opts o = fopts();
	struct bw_remote *r;
	struct bw_remote_stat s0, s1, s2;
	const uint64_t total = 2u << 20;
	uint8_t buf[64];
	uint64_t pos = 0;
	pid_t rd;

	mkring("pushsm", 4u << 20);
	server_start(NULL);
	rd = reader_child("pushsm", total, 31, 1);
	CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("pushsm"),
					     BW_WRITE | BW_REMOTE_LOSSLESS, &o, &r),
			      0);
	/* the first write reserves an eighth of the ring ahead */
	bwt_fill(buf, 40, pos, 31);
	CU_ASSERT_EQUAL_FATAL(bw_remote_write(r, buf, 40), 40);
	pos += 40;
	CU_ASSERT_EQUAL(bw_remote_flush(r), 0);
	CU_ASSERT_EQUAL_FATAL(kill(server_pid, SIGSTOP), 0);
	bw_remote_stat(r, &s0);
	bwt_fill(buf, 40, pos, 31);
	CU_ASSERT_EQUAL(bw_remote_write(r, buf, 40), 40);
	pos += 40;
	bw_remote_stat(r, &s1);
	CU_ASSERT_EQUAL(s1.remote_ops, s0.remote_ops + 1);
	while (pos < (60u << 10) + 80) { /* on failure, on to SIGCONT */
		size_t n = 1 + (size_t)(pos % 61);
		ssize_t w;

		bwt_fill(buf, n, pos, 31);
		w = bw_remote_write(r, buf, n);
		CU_ASSERT_EQUAL(w, (ssize_t)n);
		if (w != (ssize_t)n)
			break;
		pos += n;
	}
	bw_remote_stat(r, &s2);
	CU_ASSERT_EQUAL(s2.remote_ops, s1.remote_ops);
	if (s2.remote_ops != s1.remote_ops)
		fprintf(stderr, "%llu calls took %llu operations\n",
			(unsigned long long)(s2.calls - s1.calls),
			(unsigned long long)(s2.remote_ops - s1.remote_ops));
	CU_ASSERT_EQUAL(kill(server_pid, SIGCONT), 0);
	while (pos < total) {
		size_t n = total - pos < 60 ? (size_t)(total - pos) : 60;

		bwt_fill(buf, n, pos, 31);
		if (bw_remote_write(r, buf, n) != (ssize_t)n)
			break;
		pos += n;
	}
	CU_ASSERT_EQUAL(pos, total);
	CU_ASSERT_EQUAL(bw_remote_close(r), 0);
	if (pos < total) /* it would wait for the rest */
		kill(rd, SIGKILL);
	CU_ASSERT_EQUAL(bwt_wait(rd), 0);
	server_stop();
	bw_unlink("pushsm");
}

static void push_refused_with_writer(void)
{
	struct bw_fabric_opts o = fopts();
	struct bw_remote *r;
	struct bw_stream *lw;

	mkring("push2", 64u << 10);
	server_start(NULL);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("push2", BW_WRITE | BW_NOWAIT, &lw), 0);
	CU_ASSERT_EQUAL(bw_remote_open(url("push2"), BW_WRITE, &o, &r), -EBUSY);
	CU_ASSERT(strstr(bw_strerror_last(), "another writer") != NULL);
	if (!strstr(bw_strerror_last(), "another writer"))
		fprintf(stderr, "refused push: %s\n", bw_strerror_last());
	bw_stream_close(lw);
	/* a push without credit would overwrite unread data of a lossless
	 * ring: refused; an frp ring takes it */
	CU_ASSERT_EQUAL(bw_remote_open(url("push2"), BW_WRITE, &o, &r), -EPERM);
	CU_ASSERT(strstr(bw_strerror_last(), "policy lossless") != NULL);
	{
		struct bw_ring_opts ro = BW_RING_OPTS_INIT;

		ro.size = 64u << 10;
		ro.policy = BW_POLICY_FRP;
		CU_ASSERT_EQUAL_FATAL(bw_mkfifo("push2f", &ro), 0);
		CU_ASSERT_EQUAL(bw_remote_open(url("push2f"), BW_WRITE, &o, &r), 0);
		CU_ASSERT_EQUAL(bw_remote_write(r, "frp", 3), 3);
		CU_ASSERT_EQUAL(bw_remote_close(r), 0);
		bw_unlink("push2f");
	}
	server_stop();
	bw_unlink("push2");
}

/* Lossless push sessions one after another on one server, each ending
 * while credit may be on its way to the departing writer: that write never
 * completes, or completes with an error, and the sessions after it get
 * their credit all the same. (A server that waited for it failed its
 * endpoint, and the next writer waited for credit forever.) */
static void push_sessions_in_a_row(void)
{
	struct bw_fabric_opts o = fopts();
	const uint64_t total = 256u << 10;
	const size_t blk = 16u << 10;
	uint8_t *buf = malloc(blk);

	server_start(NULL);
	for (int i = 0; i < 12; i++) {
		struct bw_remote *r;
		struct bw_remote_stat st;
		pid_t rd;

		mkring("pushseq", 64u << 10);
		rd = reader_child("pushseq", total, 23 + (uint32_t)i, 1);
		CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("pushseq"),
						     BW_WRITE | BW_REMOTE_LOSSLESS,
						     &o, &r),
				      0);
		for (uint64_t pos = 0; pos < total; pos += blk) {
			bwt_fill(buf, blk, pos, 23 + (uint32_t)i);
			CU_ASSERT_EQUAL_FATAL(bw_remote_write(r, buf, blk),
					      (ssize_t)blk);
		}
		bw_remote_stat(r, &st);
		CU_ASSERT_EQUAL(bw_remote_close(r), 0);
		CU_ASSERT_EQUAL(bwt_wait(rd), 0);
		CU_ASSERT_EQUAL(st.bytes, total);
		bw_unlink("pushseq");
	}
	free(buf);
	server_stop();
}

/* Record i of a push: 8 to 3000 bytes, its index first. */
static size_t prec_len(uint64_t i)
{
	return 8 + (size_t)((i * 7919) % 2993);
}

/* Records pushed into an fr and a vr ring arrive whole, in order, for a
 * local reader of the ring; a record too large is refused whole. */
static void push_records(void)
{
	struct bw_fabric_opts o = fopts();
	static uint8_t buf[4096];
	const uint64_t n = 3000;

	server_start(NULL);
	for (int l = 0; l < 2; l++) {
		struct bw_ring_opts ro = BW_RING_OPTS_INIT;
		const char *name = l ? "pushfr" : "pushvr";
		struct bw_remote *r;
		pid_t rd;

		ro.size = 256u << 10;
		ro.layout = l ? BW_LAYOUT_FR : BW_LAYOUT_VR;
		ro.record_size = l ? 4096 : 3000;
		CU_ASSERT_EQUAL_FATAL(bw_mkfifo(name, &ro), 0);
		rd = fork();
		CU_ASSERT_FATAL(rd >= 0);
		if (rd == 0) {
			struct bw_stream *s;
			uint64_t i = 0, j;
			ssize_t x;

			if (bw_stream_open(name, BW_READ, &s) < 0)
				_exit(2);
			while ((x = bw_stream_read(s, buf, sizeof(buf))) > 0) {
				memcpy(&j, buf, 8);
				if (j != i || (size_t)x != prec_len(i) ||
				    bwt_verify(buf + 8, (size_t)x - 8, i << 20, 17) != -1)
					_exit(3);
				i++;
			}
			_exit(x == 0 && i == n ? 0 : 4);
		}
		CU_ASSERT_EQUAL_FATAL(bw_remote_open(url(name),
						     BW_WRITE | BW_REMOTE_LOSSLESS,
						     &o, &r),
				      0);
		CU_ASSERT_EQUAL(bw_remote_write(r, buf, 0), 0);
		CU_ASSERT_EQUAL(bw_remote_write(r, buf, l ? 4089 : 3001), -EMSGSIZE);
		for (uint64_t i = 0; i < n; i++) {
			memcpy(buf, &i, 8);
			bwt_fill(buf + 8, prec_len(i) - 8, i << 20, 17);
			CU_ASSERT_EQUAL_FATAL(bw_remote_write(r, buf, prec_len(i)),
					      (ssize_t)prec_len(i));
		}
		CU_ASSERT_EQUAL(bw_remote_close(r), 0);
		CU_ASSERT_EQUAL(bwt_wait(rd), 0);
		bw_unlink(name);
	}
	server_stop();
}

/* A child that samples how far NAME's reservation (head) runs ahead of its
 * write position (tail) until its stdin pipe closes; writes the most seen
 * to out. */
static pid_t lead_sampler(const char *name, const int go[2], const int res[2])
{
	pid_t pid = fork();

	if (pid == 0) {
		int in = go[0], out = res[1];

		close(go[1]);
		close(res[0]);
		struct pollfd pf = {.fd = in, .events = POLLIN};
		struct bw_ring_info ri;
		uint64_t worst = 0;

		while (poll(&pf, 1, 0) == 0) {
			if (bw_ring_stat(name, &ri, NULL, 0) < 0)
				_exit(2);
			if (ri.reserved_pos - ri.write_pos > worst)
				worst = ri.reserved_pos - ri.write_pos;
			sched_yield(); /* two CPUs: the writer and server run */
		}
		_exit(write(out, &worst, sizeof(worst)) == sizeof(worst) ? 0 : 3);
	}
	return pid;
}

/* An FRP push (no credit) with many writes in flight keeps its reservation
 * within a ring of the published write position, as a local writer does:
 * a ring whose head ran further ahead reads as corrupt (readers: EPROTO, a
 * new writer: EBADMSG). */
static void push_frp_in_ring(void)
{
	struct bw_fabric_opts o = fopts();
	struct bw_ring_opts ro = BW_RING_OPTS_INIT;
	const size_t blk = 16u << 10;
	uint8_t *buf = calloc(1, blk);
	struct bw_ring_info in;
	struct bw_remote *r;
	struct bw_stream *lw;
	uint64_t worst = UINT64_MAX;
	int go[2], res[2];
	pid_t smp;

	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	ro.size = 64u << 10;
	ro.policy = BW_POLICY_FRP;
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("pushfrp", &ro), 0);
	server_start(NULL); /* first: it must not hold the pipes open */
	CU_ASSERT_EQUAL_FATAL(pipe(go), 0);
	CU_ASSERT_EQUAL_FATAL(pipe(res), 0);
	smp = lead_sampler("pushfrp", go, res);
	CU_ASSERT_FATAL(smp > 0);
	close(go[0]);
	close(res[1]);
	CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("pushfrp"), BW_WRITE, &o, &r), 0);
	for (int i = 0; i < 2048; i++)
		CU_ASSERT_EQUAL_FATAL(bw_remote_write(r, buf, blk), (ssize_t)blk);
	CU_ASSERT_EQUAL(bw_remote_close(r), 0);
	close(go[1]);
	CU_ASSERT_EQUAL(read(res[0], &worst, sizeof(worst)), sizeof(worst));
	close(res[0]);
	CU_ASSERT_EQUAL(bwt_wait(smp), 0);
	CU_ASSERT(worst <= ro.size);
	if (worst > ro.size)
		fprintf(stderr, "head ran %llu bytes ahead of tail\n",
			(unsigned long long)worst);
	CU_ASSERT_FATAL(bw_ring_stat("pushfrp", &in, NULL, 0) >= 0);
	CU_ASSERT_EQUAL(in.write_pos, 2048 * (uint64_t)blk);
	/* the ring is whole: a local writer attaches */
	CU_ASSERT_EQUAL(bw_stream_open("pushfrp", BW_WRITE | BW_NOWAIT, &lw), 0);
	bw_stream_close(lw);
	free(buf);
	server_stop();
	bw_unlink("pushfrp");
}

/*
 * A child that pushes into NAME until the test kills it. On shm it parks
 * after its flush instead, and is killed there: libfabric 1.17's shm
 * provider keeps a spinlock in memory it shares with the server, and a
 * peer killed while holding it stalls the server's progress forever (a
 * limit of that provider, named in the README). tcp and sockets are
 * killed mid-stream.
 */
static pid_t pusher_child(const char *name, int ready)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct bw_fabric_opts o = fopts();
		struct bw_remote *r;
		uint8_t buf[4096];
		uint64_t pos = 0;

		if (bw_remote_open(url(name), BW_WRITE | BW_REMOTE_LOSSLESS, &o,
				   &r) < 0)
			_exit(3);
		for (;; pos += sizeof(buf)) {
			bwt_fill(buf, sizeof(buf), pos, 5);
			if (bw_remote_write(r, buf, sizeof(buf)) < 0)
				_exit(4);
			if (pos != 32u << 10)
				continue;
			if (bw_remote_flush(r) < 0 || write(ready, "r", 1) != 1)
				_exit(5);
			while (!strcmp(prov, "shm"))
				pause();
		}
	}
	return pid;
}

static void push_writer_killed(void)
{
	struct bw_stream *s, *lw;
	int p[2];
	char c;
	pid_t w;
	uint64_t pos = 0, total = 0;
	bool ok = true;

	/* A remote writer killed mid-stream: the server ends its session,
	 * the local reader sees the end of the stream after intact data
	 * only, and the ring takes a new writer. */
	mkring("push3", 64u << 10);
	server_start(NULL);
	CU_ASSERT_FATAL(pipe(p) == 0);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("push3", BW_READ | BW_NOWAIT |
						      BW_FROM_START, &s), 0);
	w = pusher_child("push3", p[1]);
	CU_ASSERT_EQUAL(read(p[0], &c, 1), 1);
	kill(w, SIGKILL);
	bwt_wait(w);
	for (;;) {
		uint8_t buf[8192];
		ssize_t n = bw_stream_read(s, buf, sizeof(buf));

		CU_ASSERT_FATAL(n >= 0);
		if (n == 0)
			break;
		pos = (uint64_t)bw_stream_lseek(s, 0, SEEK_CUR) - (uint64_t)n;
		ok &= bwt_verify(buf, (size_t)n, pos, 5) == -1;
		total += (uint64_t)n;
	}
	CU_ASSERT(ok);
	/* at least what it had flushed before it was killed */
	CU_ASSERT(total >= (32u << 10) + 4096);
	bw_stream_close(s);
	CU_ASSERT_EQUAL(bw_stream_open("push3", BW_WRITE | BW_NOWAIT, &lw), 0);
	bw_stream_close(lw);
	close(p[0]);
	close(p[1]);
	server_stop();
	bw_unlink("push3");
}

/* ---- failures --------------------------------------------------------------- */

static void server_killed(void)
{
	struct bw_fabric_opts o = fopts();
	struct bw_remote *r;
	uint8_t buf[4096];
	ssize_t n;

	/* A reader waiting for data whose server is killed gets an error,
	 * not a hang (the harness's timeout would catch a hang). */
	mkring("gone", 64u << 10);
	server_start(NULL);
	CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("gone"), BW_READ, &o, &r), 0);
	bwt_server_kill(&server_pid);
	n = bw_remote_read(r, buf, sizeof(buf));
	CU_ASSERT(n == -ECONNRESET || n == -ETIMEDOUT || n == -EIO);
	if (n != -ECONNRESET && n != -ETIMEDOUT)
		fprintf(stderr, "after the server died: %zd %s\n", n,
			bw_strerror_last());
	CU_ASSERT(bw_strerror_last()[0] != '\0');
	/* and stays failed */
	CU_ASSERT(bw_remote_read(r, buf, sizeof(buf)) < 0);
	bw_remote_close(r);
	bw_unlink("gone");
}

/* The server's published session count (its sessions file). */
static int sessions_of(pid_t pid)
{
	char path[4096], line[512];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "%s/.fabric/%d", bw_ring_dir(), (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		n += line[0] != '#';
	fclose(f);
	return n;
}

/* Waits (polling, bounded) until the server shows want sessions. */
static bool sessions_become(int want)
{
	struct pollfd none;

	for (int i = 0; i < 2000; i++) {
		if (sessions_of(server_pid) == want)
			return true;
		(void)poll(&none, 0, 5);
	}
	return false;
}

static volatile sig_atomic_t fail_ep;

static void on_usr1(int sig)
{
	(void)sig;
	fail_ep = 1;
}

static void fail_on_usr1(struct bw_server *s)
{
	if (fail_ep) {
		fail_ep = 0;
		bwf_server_fail(s, -EIO);
	}
}

/* A server whose fabric endpoint fails (as a provider's error would fail
 * it) ends the sessions on it, which their clients see at once, and serves
 * new clients on a new endpoint. */
static void endpoint_replaced(void)
{
	struct bw_fabric_opts o = fopts();
	struct bw_remote *r1, *r2;
	struct bw_remote_stat s1, s2;
	struct bw_stream *w;
	uint8_t in[4096], out[4096];

	mkring("epfail", 64u << 10);
	signal(SIGUSR1, on_usr1); /* the server child inherits it */
	bwt_server_kill(&server_pid);
	server_pid = bwt_server_start_turns(prov, TMO, NULL, &server_port,
					    fail_on_usr1);
	signal(SIGUSR1, SIG_DFL);
	CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("epfail"), BW_READ, &o, &r1), 0);
	CU_ASSERT(sessions_become(1));
	kill(server_pid, SIGUSR1);
	/* the ring stays empty: only the session's end ends this read */
	{
		ssize_t k = bw_remote_read(r1, out, sizeof(out));

		CU_ASSERT_EQUAL(k, -ECONNRESET);
		if (k != -ECONNRESET)
			fprintf(stderr, "read: %zd (%s)\n", k, bw_strerror_last());
	}
	bw_remote_stat(r1, &s1);
	bw_remote_close(r1);
	CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("epfail"), BW_READ, &o, &r2), 0);
	bw_remote_stat(r2, &s2);
	CU_ASSERT_NOT_EQUAL(s2.generation, s1.generation);
	CU_ASSERT_EQUAL_FATAL(bw_stream_open("epfail", BW_WRITE | BW_NOWAIT, &w),
			      0);
	bwt_fill(in, sizeof(in), 0, 31);
	CU_ASSERT_EQUAL(bw_stream_write(w, in, sizeof(in)), (ssize_t)sizeof(in));
	CU_ASSERT_EQUAL(bw_remote_read(r2, out, sizeof(out)), (ssize_t)sizeof(out));
	CU_ASSERT_EQUAL(memcmp(in, out, sizeof(in)), 0);
	CU_ASSERT(sessions_become(1));
	bw_remote_close(r2);
	bw_stream_close(w);
	server_stop(); /* asserts that it is still running */
	bw_unlink("epfail");
}

static void client_killed(void)
{
	pid_t c;
	int p[2];
	char x;

	/* A pull client killed: its session ends and its keys go. */
	mkring("cli", 64u << 10);
	server_start(NULL);
	CU_ASSERT_FATAL(pipe(p) == 0);
	c = fork();
	if (c == 0) {
		struct bw_fabric_opts o = fopts();
		struct bw_remote *r;

		if (bw_remote_open(url("cli"), BW_READ, &o, &r) < 0 ||
		    write(p[1], "o", 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
	CU_ASSERT_EQUAL(read(p[0], &x, 1), 1);
	CU_ASSERT(sessions_become(1));
	kill(c, SIGKILL);
	bwt_wait(c);
	CU_ASSERT(sessions_become(0));
	close(p[0]);
	close(p[1]);
	server_stop();
	bw_unlink("cli");
}

static void bad_requests(void)
{
	static const char *const only[] = {"shown", NULL};
	struct bw_fabric_opts o = fopts();
	struct bw_remote *r;
	struct sockaddr_in a = {.sin_family = AF_INET};
	struct bwf_rep rep;
	uint8_t junk[sizeof(struct bwf_req)];
	int fd;

	mkring("shown", 64u << 10);
	mkring("hidden", 64u << 10);
	server_start(only);
	CU_ASSERT_EQUAL(bw_remote_open(url("hidden"), BW_READ, &o, &r), -EACCES);
	CU_ASSERT_EQUAL(bw_remote_open(url("nosuch"), BW_READ, &o, &r), -EACCES);
	CU_ASSERT_EQUAL(bw_remote_open("127.0.0.1/shown", BW_READ, &o, &r),
			-EINVAL);
	CU_ASSERT_EQUAL(bw_remote_open("127.0.0.1:99999/shown", BW_READ, &o,
				       &r),
			-EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(bw_strerror_last(), "above 65535"));
	CU_ASSERT_EQUAL(bw_remote_open("127.0.0.1:1/shown", BW_READ, &o, &r),
			-ECONNREFUSED);
	CU_ASSERT_EQUAL(bw_remote_open(url("shown"), BW_READ | BW_WRITE, &o, &r),
			-EINVAL);
	/* junk instead of a request: an error reply, the server lives on */
	for (int k = 0; k < 3; k++) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		a.sin_port = htons((uint16_t)server_port);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
		memset(junk, k == 0 ? 0xff : 0, sizeof(junk));
		if (k == 2) { /* valid header, unterminated name */
			struct bwf_req *q = (struct bwf_req *)junk;

			q->magic = BWF_REQ_MAGIC;
			q->version = BWF_PROTO_VERSION;
			q->access = BWF_ACC_PULL;
			memset(q->name, 'a', sizeof(q->name));
		}
		CU_ASSERT(write(fd, junk, sizeof(junk)) == sizeof(junk));
		CU_ASSERT(bwf_full_io(fd, &rep, sizeof(rep), false, 5000) == 0);
		CU_ASSERT_EQUAL(rep.status, -EPROTO);
		close(fd);
	}
	/* a client that connects and sends half a request, then leaves */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CU_ASSERT(write(fd, junk, 10) == 10);
	close(fd);
	/* still serving */
	CU_ASSERT_EQUAL(bw_remote_open(url("shown"), BW_READ, &o, &r), 0);
	bw_remote_close(r);
	/* a client that sends half a request and stays silent holds no one
	 * up: a client with a fifth of the server's timeout is served
	 * meanwhile (a server that read requests whole, one at a time, kept
	 * it waiting past its timeout) */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CU_ASSERT_FATAL(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CU_ASSERT(write(fd, junk, 10) == 10);
	{
		struct bw_fabric_opts quick = o;
		uint8_t b[8];

		quick.timeout_ms = TMO / 5;
		int e = bw_remote_open(url("shown"), BW_READ | BW_NONBLOCK,
				       &quick, &r);

		CU_ASSERT_EQUAL(e, 0);
		if (e == 0) {
			CU_ASSERT_EQUAL(bw_remote_read(r, b, sizeof(b)), -EAGAIN);
			bw_remote_close(r);
		}
	}
	/* and the silent one is let go after the server's timeout */
	{
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		char c;

		CU_ASSERT_EQUAL(poll(&pf, 1, 3 * (int)TMO), 1);
		CU_ASSERT_EQUAL(recv(fd, &c, 1, 0), 0);
	}
	close(fd);
	/* 16 silent connections fill the server's pending places: a new
	 * client takes the place of the one silent longest, which is let go
	 * at once, well before the server's timeout */
	{
		enum { PENDING = 16 };
		struct bw_fabric_opts quick = o;
		struct pollfd pf = {.events = POLLIN};
		int sil[PENDING], e;
		char c;

		for (int k = 0; k < PENDING; k++) {
			sil[k] = socket(AF_INET, SOCK_STREAM, 0);
			CU_ASSERT_FATAL(connect(sil[k], (struct sockaddr *)&a,
						sizeof(a)) == 0);
			CU_ASSERT(write(sil[k], junk, 10) == 10);
		}
		quick.timeout_ms = TMO / 5;
		e = bw_remote_open(url("shown"), BW_READ, &quick, &r);
		CU_ASSERT_EQUAL(e, 0);
		if (e == 0)
			bw_remote_close(r);
		pf.fd = sil[0];
		CU_ASSERT_EQUAL(poll(&pf, 1, (int)TMO / 2), 1);
		CU_ASSERT_EQUAL(recv(sil[0], &c, 1, 0), 0);
		for (int k = 0; k < PENDING; k++)
			close(sil[k]);
	}
	server_stop();
	bw_unlink("shown");
	bw_unlink("hidden");
}

/* One probe on a fresh session: a refused operation may end its connection
 * (tcp drops a peer that presents a bad key). */
static int probe_fresh(int64_t doff, int64_t len, bool past_data,
		       uint64_t key_xor)
{
	struct bw_fabric_opts o = fopts();
	struct bw_remote *r;
	struct bwf_desc d;
	int e;

	CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("keys"), BW_READ, &o, &r), 0);
	d = *bwf_remote_desc(r);
	e = past_data
		    ? bwf_remote_probe(r, d.data_raddr + 2 * d.capacity, d.data_key,
				       (size_t)len)
		    : bwf_remote_probe(r, d.pos_raddr + (uint64_t)doff,
				       d.pos_key ^ key_xor, (size_t)len);
	bw_remote_close(r);
	return e;
}

static void keys_and_generations(void)
{
	struct bw_fabric_opts o = fopts();
	struct bw_remote *r1, *r2;
	struct bwf_desc old, *d;
	uint8_t buf[64];

	mkring("keys", 64u << 10);
	server_start(NULL);
	/* the right key within the window works */
	CU_ASSERT_EQUAL(probe_fresh(0, 8, false, 0), 0);
	CU_ASSERT_EQUAL(probe_fresh(BWF_POS_LEN - 8, 8, false, 0), 0);
	/* a wrong key, an address or a length outside the region, the end
	 * of the data: refused, nothing read */
	CU_ASSERT(probe_fresh(0, 8, false, 0x5a5a) < 0);
	CU_ASSERT(probe_fresh(BWF_POS_LEN - 8, 64, false, 0) < 0);
	CU_ASSERT(probe_fresh(-256, 8, false, 0) < 0);
	CU_ASSERT(probe_fresh(0, 8, true, 0) < 0);
	/* a new session: new keys and a new generation; the old
	 * descriptor's keys were revoked with its session */
	CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("keys"), BW_READ, &o, &r1), 0);
	old = *bwf_remote_desc(r1);
	bw_remote_close(r1);
	CU_ASSERT_EQUAL_FATAL(bw_remote_open(url("keys"), BW_READ, &o, &r2), 0);
	d = bwf_remote_desc(r2);
	CU_ASSERT(d->generation != old.generation);
	CU_ASSERT(d->pos_key != old.pos_key || d->data_key != old.data_key);
	CU_ASSERT_EQUAL(bwf_remote_probe(r2, d->pos_raddr, d->pos_key, 8), 0);
	/* the old descriptor's keys, on this live connection */
	CU_ASSERT(sessions_become(1));
	CU_ASSERT(bwf_remote_probe(r2, old.pos_raddr, old.pos_key, 8) < 0);
	/* and the handle given the stale descriptor fails, never hangs */
	*d = old;
	CU_ASSERT(bw_remote_read(r2, buf, sizeof(buf)) < 0);
	bw_remote_close(r2);
	server_stop();
	bw_unlink("keys");
}

static void many_clients_at_once(void)
{
	pid_t kids[6];

	/* New peers reaching the server together (shm crashed on this
	 * before the server took first contacts one at a time). Each opens,
	 * reads the empty ring once without blocking, and leaves. */
	mkring("many", 64u << 10);
	server_start(NULL);
	for (int i = 0; i < 6; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			struct bw_fabric_opts o = fopts();
			struct bw_remote *r;
			uint8_t b[64];

			if (bw_remote_open(url("many"), BW_READ | BW_NONBLOCK, &o,
					   &r) < 0)
				_exit(2);
			if (bw_remote_read(r, b, sizeof(b)) != -EAGAIN)
				_exit(3);
			bw_remote_close(r);
			_exit(0);
		}
	}
	for (int i = 0; i < 6; i++)
		CU_ASSERT_EQUAL(bwt_wait(kids[i]), 0);
	CU_ASSERT(sessions_become(0));
	server_stop(); /* asserts that it is still running */
	bw_unlink("many");
}

/* One rank of a bootstrapped job, run as this binary again (exec), so that
 * its ring directory, a "host" of its own, comes from its environment.
 * Writes 1 MiB of its own stream into its ring "job", joins, reads the next
 * rank's ring from the start over the fabric and checks every byte, reports
 * y or n on fd 3, and serves until fd 4 closes. */
static int bootstrap_rank(const char *provider)
{
	struct bw_fabric_opts o = BW_FABRIC_OPTS_INIT;
	struct bw_ring_opts ro = BW_RING_OPTS_INIT;
	struct bw_bootstrap *b;
	struct bw_stream *w;
	struct bw_remote *r;
	static uint8_t buf[1u << 20], in[65536];
	int rank = atoi(getenv("BELTWAY_RANK")), size, peer;
	uint64_t got = 0;
	bool ok = true;
	char c;

	o.provider = provider;
	o.timeout_ms = TMO;
	if (bw_mkfifo("job", &ro) < 0 ||
	    bw_stream_open("job", BW_WRITE | BW_NOWAIT, &w) < 0)
		return 2;
	bwt_fill(buf, sizeof(buf), 0, 100 + (uint32_t)rank);
	if (bw_stream_write(w, buf, sizeof(buf)) != sizeof(buf))
		return 3;
	bw_stream_close(w);
	if (bw_bootstrap_env("job", &o, &b) < 0) {
		fprintf(stderr, "rank %d: %s\n", rank, bw_strerror_last());
		return 4;
	}
	size = bw_bootstrap_size(b);
	peer = (rank + 1) % size;
	ok &= bw_bootstrap_rank(b) == rank;
	if (bw_remote_open(bw_bootstrap_url(b, peer), BW_READ | BW_FROM_START, &o,
			   &r) < 0) {
		fprintf(stderr, "rank %d: %s\n", rank, bw_strerror_last());
		return 5;
	}
	for (;;) {
		ssize_t k = bw_remote_read(r, in, sizeof(in));

		if (k <= 0) {
			ok &= k == 0;
			break;
		}
		ok &= bwt_verify(in, (size_t)k, got, 100 + (uint32_t)peer) == -1;
		got += (uint64_t)k;
	}
	ok &= got == sizeof(buf);
	bw_remote_close(r);
	c = ok ? 'y' : 'n';
	if (write(3, &c, 1) != 1)
		return 6;
	(void)!read(4, &c, 1); /* serve until every rank has read */
	bw_bootstrap_close(b);
	return ok ? 0 : 7;
}

static char self_exe[4096];

static void bootstrap_job(void)
{
	const int size = 3;
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	char root[64];
	int res[2], go[2], fd, okays = 0;
	pid_t kids[3];

	/* a free port for the root */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *)&a, &al) == 0);
	close(fd);
	snprintf(root, sizeof(root), "127.0.0.1:%d", ntohs(a.sin_port));
	/* close-on-exec: a rank keeps only its dup2 copies (fds 3, 4) */
	CU_ASSERT_FATAL(pipe2(res, O_CLOEXEC) == 0 && pipe2(go, O_CLOEXEC) == 0);
	for (int rank = 0; rank < size; rank++) {
		kids[rank] = fork();
		if (kids[rank] == 0) {
			char d[4200], n[16];

			snprintf(d, sizeof(d), "%s/%s-rank%d", bw_ring_dir(), prov, rank);
			mkdir(d, 0700);
			snprintf(n, sizeof(n), "%d", rank);
			setenv("BELTWAY_DIR", d, 1);
			setenv("BELTWAY_RANK", n, 1);
			setenv("BELTWAY_SIZE", "3", 1);
			setenv("BELTWAY_ROOT", root, 1);
			if (dup2(res[1], 3) < 0 || dup2(go[0], 4) < 0)
				_exit(100);
			execl(self_exe, self_exe, "--bootstrap-rank", prov, (char *)NULL);
			_exit(101);
		}
	}
	close(res[1]);
	close(go[0]);
	for (int i = 0; i < size; i++) {
		char c;

		if (read(res[0], &c, 1) == 1 && c == 'y')
			okays++;
	}
	close(go[1]);
	CU_ASSERT_EQUAL(okays, size);
	for (int i = 0; i < size; i++) {
		int ks = bwt_wait(kids[i]);

		CU_ASSERT_EQUAL(ks, 0);
		if (ks)
			fprintf(stderr, "rank %d exited %d\n", i, ks);
	}
	close(res[0]);
}

/* The providers under test: $BWT_FABRIC_PROVIDERS (space-separated, at
 * most 4), else tcp, shm and sockets. test_fabric_verbs.sh runs this binary with
 * verbs where an RDMA device exists. */
static const char *provs[4];
static unsigned nprovs;

/* The pad queue a reader without a slot keeps (bwf_padq_*): spans are
 * skipped, a span dropped while still ahead keeps the reader from
 * delivering anything below its end, a reused entry is reported, and a
 * corrupted one refused. White-box, no provider. */
static void pad_queue(void)
{
	struct bwf_padq q;
	struct bwf_pad t[16];
	uint64_t k;

	memset(&q, 0, sizeof(q));
	for (uint64_t i = 0; i < 16; i++)
		t[i] = (struct bwf_pad){.seq = i, .start = 1000 + 100 * i,
					.end = 1050 + 100 * i, .ok = true};
	CU_ASSERT_EQUAL(bwf_padq_take(&q, t, 16, 0, 1u << 20, 65536), 0);
	CU_ASSERT_EQUAL(q.n, 16);
	k = 5000;
	CU_ASSERT_EQUAL(bwf_padq_clip(&q, 0, &k), 0);
	CU_ASSERT_EQUAL(k, 1000); /* up to the first pad */
	k = 10;
	CU_ASSERT_EQUAL(bwf_padq_clip(&q, 1000, &k), 1050); /* inside: skip */
	CU_ASSERT_EQUAL(q.padded, 50);
	/* a 17th while the reader is still at 0: pad 0 is dropped ahead of
	 * it, so nothing below its end may be delivered */
	memset(&q, 0, sizeof(q));
	CU_ASSERT_EQUAL(bwf_padq_take(&q, t, 16, 0, 1u << 20, 65536), 0);
	t[0] = (struct bwf_pad){.seq = 16, .start = 2600, .end = 2650, .ok = true};
	CU_ASSERT_EQUAL(bwf_padq_take(&q, t, 17, 0, 1u << 20, 65536), 0);
	CU_ASSERT_EQUAL(q.floor, 1050);
	k = 10;
	CU_ASSERT_EQUAL(bwf_padq_clip(&q, 0, &k), 1050);
	k = 500;
	CU_ASSERT_EQUAL(bwf_padq_clip(&q, 1050, &k), 0);
	CU_ASSERT_EQUAL(k, 50); /* to pad 1 at 1100 */
	/* pad 17's entry reused (it holds pad 33): reported as unseen */
	t[1] = (struct bwf_pad){.seq = 33, .start = 9000, .end = 9050, .ok = true};
	CU_ASSERT_EQUAL(bwf_padq_take(&q, t, 18, 1050, 1u << 20, 65536), 1);
	/* a span that straddles the tail, or is longer than the ring */
	memset(&q, 0, sizeof(q));
	t[0] = (struct bwf_pad){.seq = 0, .start = 100, .end = 300, .ok = true};
	CU_ASSERT_EQUAL(bwf_padq_take(&q, t, 1, 0, 200, 65536), -EBADMSG);
	t[0] = (struct bwf_pad){.seq = 0, .start = 0, .end = 1u << 20, .ok = true};
	CU_ASSERT_EQUAL(bwf_padq_take(&q, t, 1, 0, 1u << 21, 65536), -EBADMSG);
}

#define PER_PROVIDER(fn)                                                      \
	static void fn##_0(void) { prov = provs[0]; fn(); }                   \
	static void fn##_1(void) { prov = provs[1]; fn(); }                   \
	static void fn##_2(void) { prov = provs[2]; fn(); }                   \
	static void fn##_3(void) { prov = provs[3]; fn(); }                   \
	static void (*const fn##_v[4])(void) = {fn##_0, fn##_1, fn##_2, fn##_3};
PER_PROVIDER(pull_lossless_by_handshake)
PER_PROVIDER(pull_overrun)
PER_PROVIDER(push_lossless)
PER_PROVIDER(push_small_writes_gather)
PER_PROVIDER(push_partial_counted)
PER_PROVIDER(push_refused_with_writer)
PER_PROVIDER(push_frp_in_ring)
PER_PROVIDER(push_records)
PER_PROVIDER(push_sessions_in_a_row)
PER_PROVIDER(endpoint_replaced)
PER_PROVIDER(push_writer_killed)
PER_PROVIDER(server_killed)
PER_PROVIDER(client_killed)
PER_PROVIDER(bad_requests)
PER_PROVIDER(keys_and_generations)
PER_PROVIDER(bootstrap_job)
PER_PROVIDER(many_clients_at_once)

static void reg(void)
{
	static char names[96][96];
	static char list[256];
	const char *env = getenv("BWT_FABRIC_PROVIDERS");
	unsigned k = 0;

	snprintf(list, sizeof(list), "%s", env && *env ? env : "tcp shm sockets");
	for (char *save = NULL, *t = strtok_r(list, " ,", &save); t && nprovs < 4;
	     t = strtok_r(NULL, " ,", &save))
		provs[nprovs++] = t;
	bwt_ring_dir();
	signal(SIGPIPE, SIG_IGN);
	bwt_suite("fabric");
	bwt_add("pad queue", pad_queue);
#define ADD(fn)                                                               \
	for (unsigned i = 0; i < nprovs && k < 96; i++, k++) {                \
		snprintf(names[k], sizeof(names[k]), "%s (%s)", #fn, provs[i]); \
		bwt_add(names[k], fn##_v[i]);                                 \
	}
	ADD(pull_lossless_by_handshake);
	ADD(pull_overrun);
	ADD(push_lossless);
	ADD(push_small_writes_gather);
	ADD(push_partial_counted);
	ADD(push_refused_with_writer);
	ADD(push_frp_in_ring);
	ADD(push_records);
	ADD(push_sessions_in_a_row);
	ADD(endpoint_replaced);
	ADD(push_writer_killed);
	ADD(server_killed);
	ADD(client_killed);
	ADD(bad_requests);
	ADD(keys_and_generations);
	ADD(bootstrap_job);
	ADD(many_clients_at_once);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--bootstrap-rank"))
		return bootstrap_rank(argv[2]);
	if (readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1) < 0)
		return 1;
	return bwt_main("fabric", reg);
}
