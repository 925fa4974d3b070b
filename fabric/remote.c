/* SPDX-License-Identifier: MIT */
/*
 * Remote readers (pull) and writers (push) of a ring exported by a server.
 *
 * Pull, FRP without feedback. A read fetches the position window (head,
 * tail, scar, the writer counts), then the data below tail, then the window
 * again. The byte at position p is intact in the ring while p >= head -
 * capacity (and p >= scar); head is raised before a writer touches a byte,
 * so if p is still above the line after the data arrived, what arrived is
 * what was written at p. Otherwise the read is discarded and its bytes are
 * counted as lost. The second window read is also the next call's first:
 * a streaming reader does two round trips per call.
 *
 * Push. A writer reserves by raising head with an atomic max (delivery
 * complete: the reservation is visible before any byte lands), puts its
 * data with fi_write (delivery complete), and once the data of a prefix of
 * the stream is complete raises tail with an atomic max. Max is monotonic,
 * so tail updates need no order among themselves, and no provider ordering
 * (FI_ORDER_WAW, fences) is relied on: tcp does not give WAW between RMA
 * and atomics. Several writes are in flight from a registered staging area.
 * A write is posted at once when none is in flight; else writes gather in
 * the next slot until it holds STAGE_GATHER bytes or none is in flight any
 * more (Nagle's rule), so small writes share fabric operations while the
 * fabric is busy and cost no delay while it is idle.
 * Reservations are taken capacity/8 ahead, so pull readers may count a
 * byte up to that far ahead of a full ring behind as lost, and never more
 * than a ring past the tail raised last (writes in flight complete first),
 * so the ring's head stays within a ring of its tail, as a local writer
 * keeps it.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bwf.h"
#include "bwi_ring.h"
#include "bws.h"

#define STAGE_SLOTS 16u
#define STAGE_SLOT_MAX (512u << 10)
#define STAGE_GATHER (64u << 10)

/* Registered scratch memory: what one-sided operations read into, write
 * from, and what the server writes credit into. */
struct scratch {
	uint8_t win[BWF_POS_LEN];
	uint8_t pad[64 - BWF_POS_LEN % 64];
	uint64_t head_val;
	uint64_t pad1[7];
	uint64_t tail_val;
	uint64_t pad2[7];
	_Atomic uint64_t credit; /* written by the server */
	uint64_t pad3[7];
	struct bwi_pad pads[2][BWI_PADS]; /* the padding table, read twice */
};
_Static_assert(sizeof(struct scratch) <= 4096, "scratch fits its page");

struct inflight {
	struct bwf_op op;
	uint64_t end; /* stream position after this write */
};

struct bw_remote {
	struct bwf_ep ep;
	int fd;	     /* the rendezvous connection: liveness */
	pid_t pid;   /* the process that opened it */
	int flags;
	struct bwf_desc d;
	fi_addr_t peer;
	uint64_t cap, mask;
	struct bwi_geom rg; /* fr, vr rings: their record layout */
	uint64_t pos;	    /* next byte to read, or to write */
	struct scratch *sc;
	struct bwf_mr sc_mr;
	uint8_t *stage;	    /* push: registered staging */
	size_t stage_len;
	size_t slot_len;
	struct bwf_mr stage_mr;
	/* the last window read */
	uint64_t tail_seen, oldest;
	uint64_t pads;	    /* padding spans ever recorded */
	bool ended;	    /* every writer has left */
	/* pull: a prefetching shadow over this session, which owns it */
	struct bw_shadow *sh;
	/* push */
	uint64_t head_res;  /* head raised up to here (completed) */
	uint64_t head_want; /* the raise in flight, while head_busy */
	uint64_t last_k;    /* the size of the last write posted */
	uint64_t tail_sent; /* tail raised up to here (posted) */
	uint64_t tail_vis;  /* tail raised up to here (completed) */
	uint64_t done_end;  /* writes below here have completed */
	uint64_t want;	    /* bytes waiting for credit */
	uint64_t want_res;  /* reserve(): the position head must reach */
	struct inflight fl[STAGE_SLOTS];
	unsigned fl_head, fl_n; /* FIFO of writes in flight */
	size_t open_len;	/* bytes gathered in the slot after them (the
				 * last open_len below pos), not yet posted */
	struct bwf_op head_op, tail_op;
	bool head_busy, tail_busy; /* one of the two at a time: see head_post */
	struct bw_remote_stat st;
};

static int session_alive(struct bw_remote *r);
static int op_error(struct bw_remote *r, int e, const char *what);

/* ---- connecting ------------------------------------------------------------ */

static int parse_url(const char *url, char *host, size_t hl, char *port,
		     size_t pl, char *name, size_t nl)
{
	const char *rest;
	int r = bwf_parse_hostport(url, host, hl, port, pl, &rest);

	if (r < 0)
		return r;
	if (*rest != '/' || strlen(rest + 1) >= nl)
		return bwi_err(EINVAL, "'%s' is not HOST:PORT/NAME", url);
	strcpy(name, rest + 1);
	return bwi_name_check(name);
}

static uint64_t win64(const struct bw_remote *r, unsigned off)
{
	uint64_t v;

	memcpy(&v, r->sc->win + off, 8);
	return v;
}

static uint32_t win32(const struct bw_remote *r, unsigned off)
{
	uint32_t v;

	memcpy(&v, r->sc->win + off, 4);
	return v;
}

/* Checks the position window just read and takes it in. */
static int window_parse(struct bw_remote *r)
{
	uint64_t hd, t, sc, o;

	hd = win64(r, BWF_POS_HEAD);
	t = win64(r, BWF_POS_TAIL);
	sc = win64(r, BWF_POS_SCAR);
	/* Head and tail come from one read that is not atomic across them:
	 * take the larger as the reservation line. Tail never goes back. */
	if (hd < t)
		hd = t;
	if (t < r->tail_seen || hd - t > r->cap)
		return bwi_err(EPROTO, "the remote ring's positions are not "
				       "consistent (head %llu, tail %llu, seen "
				       "%llu): replaced or corrupted",
			       (unsigned long long)hd, (unsigned long long)t,
			       (unsigned long long)r->tail_seen);
	o = hd > r->cap ? hd - r->cap : 0;
	r->oldest = o > sc ? o : sc;
	r->tail_seen = t;
	r->ended = win32(r, BWF_POS_WATTACH) != 0 &&
		   win32(r, BWF_POS_WATTACH) == win32(r, BWF_POS_WDETACH);
	r->pads = win64(r, BWF_POS_PADS);
	return 0;
}

/* Reads the padding table twice into t: entry k's span is the first read's
 * when both reads show seq k (the padder writes seq last, after marking it
 * busy first); t[i].ok for the entries that were consistent. */
static int pads_fetch(struct bw_remote *r, struct bwf_pad t[BWI_PADS])
{
	for (unsigned k = 0; k < 2; k++) {
		struct bwf_op op;
		int e = bwf_read(&r->ep, r->peer, r->sc->pads[k], BWF_PADS_LEN,
				 r->sc_mr.desc, r->d.pads_raddr, r->d.pads_key, &op);

		if (e == 0 && (e = bwf_wait(&r->ep, &op)) < 0)
			e = op_error(r, e, "reading the ring's padding table");
		if (e < 0)
			return e;
	}
	/* the whole entry equal in both reads: whatever order one read
	 * copies its words in, a span rewritten between them differs (spans
	 * only grow) */
	for (unsigned i = 0; i < BWI_PADS; i++) {
		const struct bwi_pad *p0 = &r->sc->pads[0][i], *p1 = &r->sc->pads[1][i];

		t[i].seq = bw_load_relaxed(&p0->seq);
		t[i].start = bw_load_relaxed(&p0->start);
		t[i].end = bw_load_relaxed(&p0->end);
		t[i].ok = t[i].seq != BWI_PAD_BUSY &&
			  t[i].seq == bw_load_relaxed(&p1->seq) &&
			  t[i].start == bw_load_relaxed(&p1->start) &&
			  t[i].end == bw_load_relaxed(&p1->end);
	}
	return 0;
}

/* Starts a read of the position window into the scratch area. */
static int window_post(struct bw_remote *r, struct bwf_op *op)
{
	int e = bwf_read(&r->ep, r->peer, r->sc->win, BWF_POS_LEN, r->sc_mr.desc,
			 r->d.pos_raddr, r->d.pos_key, op);

	return e < 0 ? op_error(r, e, "reading the ring's positions") : 0;
}

/* Reads the position window once and checks it. */
static int window_read(struct bw_remote *r)
{
	struct bwf_op op;
	int e = window_post(r, &op);

	if (e == 0 && (e = bwf_wait(&r->ep, &op)) < 0)
		e = op_error(r, e, "reading the ring's positions");
	return e < 0 ? e : window_parse(r);
}

static void remote_free(struct bw_remote *r);

static int request(struct bw_remote *r, const char *name, const char *prov)
{
	struct bwf_req q;
	struct bwf_rep p;
	int e;

	memset(&q, 0, sizeof(q));
	q.magic = BWF_REQ_MAGIC;
	q.version = BWF_PROTO_VERSION;
	q.access = (r->flags & BW_WRITE) ? BWF_ACC_PUSH : BWF_ACC_PULL;
	q.flags = (uint32_t)(r->flags & BW_REMOTE_LOSSLESS);
	snprintf(q.name, sizeof(q.name), "%s", name);
	snprintf(q.prov, sizeof(q.prov), "%s", prov);
	q.addr_len = (uint32_t)r->ep.addr_len;
	memcpy(q.addr, r->ep.addr, r->ep.addr_len);
	q.credit_raddr = r->sc_mr.raddr + offsetof(struct scratch, credit);
	q.credit_key = r->sc_mr.key;
	if ((e = bwf_full_io(r->fd, &q, sizeof(q), true, r->ep.timeout_ms)) < 0 ||
	    (e = bwf_full_io(r->fd, &p, sizeof(p), false, r->ep.timeout_ms)) < 0)
		return e;
	if (p.magic != BWF_REP_MAGIC || p.version != BWF_PROTO_VERSION)
		return bwi_err(EPROTO, "the peer is not a Beltway server of this "
				       "version");
	if (p.status < 0) {
		p.msg[sizeof(p.msg) - 1] = '\0';
		return bwi_err(p.status >= -4095 ? -p.status : EPROTO,
			       "server: %s", p.msg);
	}
	if ((e = bwf_desc_check(&p.desc, q.access)) < 0)
		return e;
	r->d = p.desc;
	return 0;
}

/* The session: the rendezvous, the endpoint, the descriptor, the first
 * window read (bw_remote_open makes a reader's shadow on top). */
static int remote_connect(const char *url, int flags,
			  const struct bw_fabric_opts *opts,
			  struct bw_remote **out)
{
	char host[256], port[8], name[BWI_NAME_MAX + 1], local[64];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct bw_remote *r;
	uint32_t tmo = bwf_timeout(opts);
	int e, rw = flags & (BW_READ | BW_WRITE);

	bwi_err_clear();
	if (!out || (rw != BW_READ && rw != BW_WRITE) ||
	    (flags & ~(BW_READ | BW_WRITE | BW_NONBLOCK | BW_FROM_START |
		       BW_REMOTE_LOSSLESS)) ||
	    ((flags & BW_REMOTE_LOSSLESS) && !(flags & BW_WRITE)))
		return bwi_err(EINVAL, "bw_remote_open: flags must be BW_READ (with "
				       "BW_FROM_START) or BW_WRITE (with "
				       "BW_REMOTE_LOSSLESS), and BW_NONBLOCK");
	if ((e = parse_url(url, host, sizeof(host), port, sizeof(port), name,
			   sizeof(name))) < 0)
		return e;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->fd = -1;
	r->flags = flags;
	r->pid = getpid();
	if ((e = bwf_tcp_connect(host, port, tmo, &r->fd)) < 0)
		goto fail;
	bwf_keepalive(r->fd, tmo);
	/* Our fabric endpoint on the address the server sees us by, so
	 * that its one-sided writes back (credit) take the same route. */
	if (getsockname(r->fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, local, sizeof(local), NULL, 0,
			NI_NUMERICHOST) == 0)
		e = bwf_ep_open(bwf_provider(opts), local, tmo, &r->ep);
	else
		e = -1;
	if (e < 0)
		e = bwf_ep_open(bwf_provider(opts), NULL, tmo, &r->ep);
	if (e < 0)
		goto fail;
	r->sc = aligned_alloc(4096, 4096);
	if (!r->sc) {
		e = -ENOMEM;
		goto fail;
	}
	memset(r->sc, 0, 4096);
	if ((e = bwf_mr_reg(&r->ep, r->sc, 4096,
			    FI_READ | FI_WRITE | FI_REMOTE_WRITE, &r->sc_mr)) < 0)
		goto fail;
	if ((e = request(r, name, r->ep.prov)) < 0)
		goto fail;
	if ((e = bwf_av_insert(&r->ep, r->d.addr, r->d.addr_len, &r->peer)) < 0)
		goto fail;
	r->cap = r->d.capacity;
	r->mask = r->cap - 1;
	snprintf(r->st.provider, sizeof(r->st.provider), "%s", r->ep.prov);
	r->st.capacity = r->cap;
	r->st.generation = r->d.generation;
	r->rg = bwi_rec_geom(r->cap, r->d.layout, r->d.rec_size,
			     r->d.rec_align, r->d.rec_align_off);
	if (flags & BW_WRITE) {
		/* Staging: registered memory for the provider to move from,
		 * a slot per write in flight; on a record ring, a slot holds
		 * the largest record (at most half the ring) */
		uint64_t rf = r->rg.layout ? bwi_rec_foot(&r->rg,
							  bwi_rec_max(&r->rg))
					   : 0;

		r->slot_len = r->cap / 2 < STAGE_SLOT_MAX ? r->cap / 2 : STAGE_SLOT_MAX;
		if (r->slot_len < rf)
			r->slot_len = (size_t)rf;
		if (r->slot_len > r->ep.max_msg)
			r->slot_len = r->ep.max_msg;
		if (rf > r->slot_len) {
			e = bwi_err(ENOTSUP, "records of %llu bytes exceed the "
					     "largest message of provider %s",
				    (unsigned long long)rf, r->ep.prov);
			goto fail;
		}
		r->stage_len = r->slot_len * STAGE_SLOTS;
		r->stage = aligned_alloc(4096, (r->stage_len + 4095) & ~(size_t)4095);
		if (!r->stage) {
			e = -ENOMEM;
			goto fail;
		}
		if ((e = bwf_mr_reg(&r->ep, r->stage, r->stage_len,
				    FI_READ | FI_WRITE, &r->stage_mr)) < 0)
			goto fail;
	}
	if ((e = window_read(r)) < 0)
		goto fail;
	/* Tell the server our first contact worked: it takes the next
	 * client only then (see serve.c). */
	if ((e = bwf_full_io(r->fd, "k", 1, true, tmo)) < 0)
		goto fail;
	r->pos = (flags & BW_FROM_START) && (flags & BW_READ) ? r->oldest
							      : r->tail_seen;
	r->head_res = r->tail_sent = r->tail_vis = r->pos;
	if (flags & BW_WRITE) {
		uint64_t hd = win64(r, BWF_POS_HEAD);

		/* What the server's writer slot reserved, if anything. */
		r->head_res = hd > r->pos ? hd : r->pos;
		/* The descriptor's credit, unless the server's one-sided
		 * write of a later one landed first (a reader attached as
		 * the reply went out): credit only grows, and the server
		 * sends each value once, so a plain store here could undo
		 * it and leave this writer waiting forever. */
		uint64_t c = bw_load_relaxed(&r->sc->credit);

		while (c < r->d.credit && !bw_cas(&r->sc->credit, &c, r->d.credit))
			;
	}
	r->st.position = r->pos;
	*out = r;
	return 0;
fail:
	remote_free(r);
	return e;
}

/* The session's liveness: -ECONNRESET once the server has gone. */
/* Whether the server ended the session (within wait_ms): it sends nothing
 * after its answer, so anything readable is an end or an error (errno
 * only when recv failed: a stale EAGAIN hid an end). */
static bool session_ended(const struct bw_remote *r, int wait_ms)
{
	struct pollfd p = {.fd = r->fd, .events = POLLIN};
	char c[64];
	ssize_t k;

	if (poll(&p, 1, wait_ms) != 1)
		return false;
	k = recv(r->fd, c, sizeof(c), MSG_DONTWAIT);
	return k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR) ||
	       (p.revents & POLLERR);
}

static int session_alive(struct bw_remote *r)
{
	if (session_ended(r, 0))
		return r->ep.err = bwi_err(ECONNRESET, "the server ended the "
						       "session (it exited, was "
						       "killed, or the link is "
						       "down)");
	return 0;
}

/* A failed one-sided operation: the session's end if the server has gone
 * (its socket says so), else the provider's error: a revoked or wrong key,
 * an address outside the region, or a connection the provider dropped. */
static int op_error(struct bw_remote *r, int e, const char *what)
{
	if (session_alive(r) < 0)
		return r->ep.err;
	if (e == -ETIMEDOUT)
		return e;
	if (e == -ECANCELED || e == -ENOTCONN || e == -ECONNRESET ||
	    e == -EPIPE || e == -ECONNREFUSED)
		return r->ep.err = bwi_err(ECONNRESET, "%s from the server failed: "
						       "the connection dropped (the "
						       "server exited or was killed, "
						       "or the link is down)",
					   what);
	return bwi_err(-e, "%s from the server failed: the provider refused "
			   "the operation (key revoked or wrong, or the "
			   "connection dropped)",
		       what);
}

/* ---- pull ------------------------------------------------------------------ */

/* A reader is a prefetching shadow over its session (bw_remote_open): its
 * reads are in flight while the caller works, and one look at the
 * positions validates all that landed before it. */
ssize_t bw_remote_read(struct bw_remote *r, void *buf, size_t n)
{
	bwi_err_clear();
	if (!(r->flags & BW_READ))
		return bwi_err(EBADF, "not a remote reader");
	return bw_shadow_read(r->sh, buf, n);
}

/* ---- push ------------------------------------------------------------------ */

static uint64_t credit_limit(const struct bw_remote *r)
{
	/* Credit from the server's one-sided write: the position up to which
	 * we may write (a ring ahead of the slowest reader). It only grows. */
	return bw_load_acquire(&r->sc->credit);
}

/* Where head goes when [pos, pos + k) needs reserving: an eighth of the
 * ring ahead (a lossless writer: no further than its credit), and never
 * more than a ring past the tail the ring shows, as for a local writer:
 * with many writes in flight an FRP writer's position runs ahead of it, and
 * a ring whose head is further ahead reads as corrupt. */
static uint64_t head_target(const struct bw_remote *r, uint64_t k)
{
	uint64_t h = r->pos + (k > r->cap / 8 ? k : r->cap / 8);

	if ((r->flags & BW_REMOTE_LOSSLESS) && h > credit_limit(r))
		h = credit_limit(r);
	return h < r->tail_vis + r->cap ? h : r->tail_vis + r->cap;
}

/* Starts raising head to h. One atomic in flight at a time: shm (libfabric
 * 1.17) applied a FI_MAX with the operand of another atomic in flight from
 * the same endpoint (tail took head's value). */
static int head_post(struct bw_remote *r, uint64_t h)
{
	int e;

	r->sc->head_val = h;
	e = bwf_atomic_max(&r->ep, r->peer, &r->sc->head_val, r->sc_mr.desc,
			   r->d.pos_raddr + BWF_POS_HEAD, r->d.pos_key,
			   FI_DELIVERY_COMPLETE, &r->head_op);
	if (e < 0)
		return op_error(r, e, "reserving space in the remote ring");
	r->head_busy = true;
	r->head_want = h;
	return 0;
}

/* An atomic in flight (*busy) that completed: 1, or -errno if it failed;
 * 0 while it is in flight or none is. */
static int atomic_retired(struct bw_remote *r, bool *busy,
			  const struct bwf_op *op, const char *what)
{
	if (!*busy || !op->done)
		return 0;
	*busy = false;
	return op->err ? (r->ep.err = op_error(r, op->err, what)) : 1;
}

/* Posts the gathered slot. At most STAGE_SLOTS - 1 writes are in flight, so
 * the slot after them is always free to gather in. A failure ends the
 * session (the gathered bytes were reported written). */
static int stage_post(struct bw_remote *r)
{
	unsigned slot = (r->fl_head + r->fl_n) % STAGE_SLOTS;
	uint64_t at = r->pos - r->open_len;
	int e;

	e = bwf_write(&r->ep, r->peer, r->stage + (size_t)slot * r->slot_len,
		      r->open_len, r->stage_mr.desc,
		      r->d.data_raddr + (at & r->mask), r->d.data_key,
		      FI_DELIVERY_COMPLETE, &r->fl[slot].op);
	if (e < 0)
		return r->ep.err = e;
	r->fl[slot].end = r->pos;
	r->fl_n++;
	r->open_len = 0;
	return 0;
}

/* Retires completed writes in order; posts the gathered slot when nothing
 * is in flight or it holds STAGE_GATHER bytes (and a slot is free); raises
 * head before the reservation
 * runs out (when another write of the last one's size, or a sixteenth of
 * the ring, would not fit), so a write seldom waits for it; else raises
 * tail over the completed prefix, its value fixed until done. */
static int push_progress(struct bw_remote *r)
{
	int e = bwf_progress(&r->ep);

	if (e < 0)
		return r->ep.err = e;
	while (r->fl_n && r->fl[r->fl_head].op.done) {
		struct inflight *f = &r->fl[r->fl_head];

		if (f->op.err)
			return r->ep.err = op_error(r, f->op.err, "writing ring "
								  "data");
		r->done_end = f->end;
		r->fl_head = (r->fl_head + 1) % STAGE_SLOTS;
		r->fl_n--;
	}
	if (r->open_len && r->fl_n < STAGE_SLOTS - 1 &&
	    (r->fl_n == 0 || r->open_len >= STAGE_GATHER) &&
	    (e = stage_post(r)) < 0)
		return e;
	if ((e = atomic_retired(r, &r->head_busy, &r->head_op,
				"reserving space in the remote ring")) < 0)
		return e;
	if (e)
		r->head_res = r->head_want;
	if ((e = atomic_retired(r, &r->tail_busy, &r->tail_op,
				"raising the remote write position")) < 0)
		return e;
	if (e) /* the value it posted: a provider may reuse the operand's
		* buffer */
		r->tail_vis = r->tail_sent;
	if (r->head_busy || r->tail_busy)
		return 0;
	if (r->pos + (r->last_k > r->cap / 16 ? r->last_k : r->cap / 16) >
	    r->head_res) {
		uint64_t h = head_target(r, r->last_k);

		if (h > r->head_res)
			return head_post(r, h);
	}
	if (r->done_end > r->tail_sent) {
		r->sc->tail_val = r->done_end;
		e = bwf_atomic_max(&r->ep, r->peer, &r->sc->tail_val,
				   r->sc_mr.desc, r->d.pos_raddr + BWF_POS_TAIL,
				   r->d.pos_key, FI_DELIVERY_COMPLETE,
				   &r->tail_op);
		if (e < 0)
			return e;
		r->tail_busy = true;
		r->tail_sent = r->done_end;
	}
	return 0;
}

/* Drives progress until done(r), within the timeout while operations are
 * in flight (waiting for credit has no bound but the session's life). */
static int push_wait(struct bw_remote *r, bool (*done)(const struct bw_remote *),
		     bool counted)
{
	uint64_t start = bwi_now_ns();
	uint64_t deadline = start + (uint64_t)r->ep.timeout_ms * 1000000u;
	unsigned idle = 0;
	int e;

	for (;;) {
		if ((e = push_progress(r)) < 0)
			return e;
		if (done(r))
			return 0;
		if ((e = session_alive(r)) < 0)
			return e;
		if (!counted && r->fl_n + r->head_busy + r->tail_busy &&
		    bwi_now_ns() > deadline)
			return r->ep.err = bwi_err(ETIMEDOUT,
						   "remote writes did not "
						   "complete within %u ms",
						   r->ep.timeout_ms);
		/* operations in flight complete soon, and credit mostly
		 * does: a sleep would cost more than they take (shm has no
		 * descriptor to wait on). A long wait for credit sleeps. */
		if (idle > 16 && (r->ep.cq_fd >= 0 || !counted ||
				  bwi_now_ns() < start + 2000000u))
			bwf_idle(&r->ep, 1);
		else
			bwf_backoff(&idle);
		idle++;
	}
}

/* The gathered slot may be posted */
static bool slot_postable(const struct bw_remote *r)
{
	return r->fl_n < STAGE_SLOTS - 1;
}

static bool all_visible(const struct bw_remote *r)
{
	return r->fl_n == 0 && !r->open_len && !r->head_busy &&
	       !r->tail_busy && r->tail_sent == r->pos;
}

static bool atomics_idle(const struct bw_remote *r)
{
	return !r->head_busy && !r->tail_busy;
}

/* reserve() may go on: head covers what it wants, or it may post (tail
 * is within a ring of it: else the writes in flight complete first, and
 * push_progress raises tail over them) */
static bool reserve_ready(const struct bw_remote *r)
{
	if (r->head_busy)
		return false;
	if (r->want_res <= r->head_res)
		return true;
	return !r->tail_busy && r->want_res <= r->tail_vis + r->cap;
}

static bool credit_ok(const struct bw_remote *r)
{
	return r->pos + r->want <= credit_limit(r);
}

/* Makes sure [pos, pos + k) is reserved: head raised, and the raise
 * complete (visible at the ring) before any byte of it lands. Mostly
 * push_progress raised it ahead of time. */
static int reserve(struct bw_remote *r, uint64_t k)
{
	int e;

	r->want_res = r->pos + k;
	while (r->want_res > r->head_res) {
		uint64_t h = head_target(r, k);

		if (atomics_idle(r) && h >= r->want_res &&
		    (e = head_post(r, h)) < 0)
			return e;
		if ((e = push_wait(r, reserve_ready, false)) < 0)
			return e;
	}
	return 0;
}

/* Stages n bytes (one record on a record ring) and posts them, or gathers
 * them into the slot after the writes in flight; returns what it wrote,
 * which may be less when it cannot go on, or -errno for nothing. */
static ssize_t push_bytes(struct bw_remote *r, const uint8_t *b, size_t n)
{
	size_t done = 0;
	int e;

	while (done < n) {
		uint64_t m = n - done, k;
		uint8_t *st;

		if (m > r->slot_len)
			m = r->slot_len;
		k = r->rg.layout ? bwi_rec_foot(&r->rg, m) : m;
		if ((r->flags & BW_REMOTE_LOSSLESS) &&
		    r->pos + k > credit_limit(r)) {
			if (r->flags & BW_NONBLOCK) {
				if ((e = push_progress(r)) < 0)
					return e;
				if (r->pos + k > credit_limit(r))
					return done ? (ssize_t)done
						    : bwi_err(EAGAIN, "no room");
			}
			r->st.waits++;
			r->want = k;
			if ((e = push_wait(r, credit_ok, true)) < 0)
				return done ? (ssize_t)done : e;
		}
		if ((e = reserve(r, k)) < 0)
			return done ? (ssize_t)done : e;
		if (r->open_len + k > r->slot_len) { /* full: post it */
			if ((e = push_wait(r, slot_postable, false)) < 0 ||
			    (r->open_len && (e = stage_post(r)) < 0))
				return done ? (ssize_t)done : e;
		}
		st = r->stage +
		     (size_t)((r->fl_head + r->fl_n) % STAGE_SLOTS) * r->slot_len +
		     r->open_len;
		if (r->rg.layout) {
			/* the header, then the payload at its offset */
			uint64_t w = bwi_rec_hdr_word(r->pos, (uint32_t)m);

			memcpy(st, &w, sizeof(w));
			memcpy(st + bwi_rec_hoff(&r->rg), b, m);
		} else {
			memcpy(st, b + done, k);
		}
		r->open_len += k;
		r->pos += k;
		r->last_k = k;
		done += m;
		if ((e = push_progress(r)) < 0)
			return e;
	}
	return (ssize_t)done;
}

ssize_t bw_remote_write(struct bw_remote *r, const void *buf, size_t n)
{
	ssize_t w;

	bwi_err_clear();
	if (!(r->flags & BW_WRITE))
		return bwi_err(EBADF, "not a remote writer");
	if (r->ep.err)
		return r->ep.err;
	if (n == 0)
		return 0;
	if (!buf)
		return bwi_err(EFAULT, "write buffer is NULL");
	if (r->rg.layout && n > bwi_rec_max(&r->rg)) /* one record per call */
		return bwi_err(EMSGSIZE, "a record of %zu bytes exceeds the "
					 "ring's largest, %u",
			       n, bwi_rec_max(&r->rg));
	w = push_bytes(r, buf, n);
	if (w > 0) { /* counted as written, all or part */
		r->st.bytes += (uint64_t)w;
		r->st.calls++;
	}
	return w;
}

int bw_remote_flush(struct bw_remote *r)
{
	bwi_err_clear();
	if (!(r->flags & BW_WRITE))
		return 0;
	if (r->ep.err)
		return r->ep.err;
	return push_wait(r, all_visible, false);
}

int bw_remote_stat(const struct bw_remote *r, struct bw_remote_stat *st)
{
	*st = r->st;
	st->position = r->pos;
	if (r->sh) {
		struct bw_shadow_stat ss;

		bw_shadow_stat(r->sh, &ss);
		st->bytes = ss.bytes;
		st->calls = ss.calls;
		st->lost = ss.lost;
		st->padded = ss.padded;
		st->position = ss.position;
	}
	st->remote_ops = r->ep.ops;
	return 0;
}

static void remote_free(struct bw_remote *r)
{
	/* The buffers are freed only once the endpoint is closed: nothing
	 * can complete into them after that. */
	bwf_mr_close(&r->stage_mr);
	bwf_mr_close(&r->sc_mr);
	bwf_ep_close(&r->ep);
	if (r->fd >= 0)
		close(r->fd);
	free(r->stage);
	free(r->sc);
	free(r);
}

/* Half-closes the session and waits, within the timeout, until the server
 * has ended it: when a writer's close returns, the ring has let its remote
 * writer go (another writer may attach). Progress goes on meanwhile, so
 * that a credit write the server still has in flight lands. */
static void session_end_wait(struct bw_remote *r)
{
	uint64_t deadline = bwi_now_ns() + (uint64_t)r->ep.timeout_ms * 1000000u;

	/* a bw_fork child's copy of the socket is the parent's session too */
	if (r->fd < 0 || r->pid != getpid() || shutdown(r->fd, SHUT_WR) < 0)
		return;
	while (bwi_now_ns() < deadline) {
		(void)bwf_progress(&r->ep);
		if (session_ended(r, 1))
			return;
	}
}

int bw_remote_close(struct bw_remote *r)
{
	int e = 0;

	if (!r)
		return 0;
	if (r->sh) {
		/* in a bw_fork child the shadow leaves the parent's endpoint
		 * alone, and so r: the child's copy of the socket goes */
		if (r->pid != getpid() && r->fd >= 0)
			close(r->fd);
		return bw_shadow_close(r->sh); /* its source frees r */
	}
	if ((r->flags & BW_WRITE) && !r->ep.err) {
		e = bw_remote_flush(r);
		if (e == 0)
			session_end_wait(r);
	}
	remote_free(r);
	return e;
}

/* ---- the origin of a shadow (shadow/bws.h) ------------------------------------ */

/* A pull session used by a shadow: its window reads and data reads posted
 * into memory the shadow registered, several in flight. */
#define SHADOW_REGS 4

struct fab_src {
	struct bws_src b;
	struct bw_remote *r;
	struct bwf_mr reg[SHADOW_REGS];
};

_Static_assert(sizeof(struct bwf_op) <= sizeof(((struct bws_req *)0)->op),
	       "a request holds a fabric operation");

static struct bw_remote *fab(struct bws_src *s)
{
	return ((struct fab_src *)s)->r;
}

static int fab_wpost(struct bws_src *s, struct bws_req *rq)
{
	rq->done = false;
	return window_post(fab(s), (struct bwf_op *)rq->op);
}

static int fab_wresult(struct bws_src *s, struct bws_win *w)
{
	struct bw_remote *r = fab(s);
	int e = window_parse(r);

	if (e < 0)
		return e;
	w->tail = r->tail_seen;
	w->oldest = r->oldest;
	w->ended = r->ended;
	w->pads = r->pads;
	return 0;
}

static int fab_pads(struct bws_src *s, struct bwf_pad t[BWI_PADS])
{
	return pads_fetch(fab(s), t);
}

static int fab_post(struct bws_src *s, void *dst, uint64_t pos, size_t len,
		    struct bws_req *rq)
{
	struct fab_src *f = (struct fab_src *)s;
	struct bw_remote *r = f->r;
	struct bwf_op *op = (struct bwf_op *)rq->op;
	void *desc = NULL;
	int e;

	if (len == 0 || len > r->cap || len > r->ep.max_msg)
		return bwi_err(EINVAL, "a shadow read of %zu bytes (the ring "
				       "holds %llu)",
			       len, (unsigned long long)r->cap);
	for (unsigned i = 0; i < SHADOW_REGS; i++) {
		const struct bwf_mr *m = &f->reg[i];

		if (m->base && (uint8_t *)dst >= (uint8_t *)m->base &&
		    (uint8_t *)dst + len <= (uint8_t *)m->base + m->len)
			desc = m->desc;
	}
	if (!desc && (r->ep.mr_mode & FI_MR_LOCAL))
		return bwi_err(EFAULT, "provider %s reads only into registered "
				       "memory",
			       r->ep.prov);
	rq->done = false;
	/* the data window is mapped twice: len <= capacity stays inside */
	e = bwf_read(&r->ep, r->peer, dst, len, desc,
		     r->d.data_raddr + (pos & r->mask), r->d.data_key, op);
	return e < 0 ? op_error(r, e, "reading ring data") : 0;
}

static int fab_test(struct bws_src *s, struct bws_req *rq, bool wait)
{
	struct bw_remote *r = fab(s);
	struct bwf_op *op = (struct bwf_op *)rq->op;
	int e;

	if (rq->done)
		return 1;
	/* once an operation timed out or the session ended, nothing more is
	 * driven: what is still in flight must not complete into memory the
	 * caller may reuse, and nobody waits another timeout for it */
	if (r->ep.err)
		return r->ep.err;
	e = wait ? bwf_wait(&r->ep, op) : bwf_progress(&r->ep);
	if (e < 0 || (op->done && op->err))
		return op_error(r, e < 0 ? e : op->err, "reading ring data");
	rq->done = op->done;
	return op->done ? 1 : 0;
}

static const void *fab_inplace(struct bws_src *s, uint64_t pos)
{
	(void)s;
	(void)pos;
	return NULL;
}

static int fab_reg(struct bws_src *s, void *buf, size_t len)
{
	struct fab_src *f = (struct fab_src *)s;

	for (unsigned i = 0; i < SHADOW_REGS; i++)
		if (!f->reg[i].base)
			return bwf_mr_reg(&f->r->ep, buf, len, FI_READ | FI_WRITE,
					  &f->reg[i]);
	return bwi_err(ENOSPC, "a shadow registers at most %d buffers",
		       SHADOW_REGS);
}

static void fab_unreg(struct bws_src *s, void *buf)
{
	struct fab_src *f = (struct fab_src *)s;

	for (unsigned i = 0; i < SHADOW_REGS; i++)
		if (f->reg[i].base == buf) {
			bwf_mr_close(&f->reg[i]);
			memset(&f->reg[i], 0, sizeof(f->reg[i]));
		}
}

static int fab_alive(struct bws_src *s)
{
	struct bw_remote *r = fab(s);

	return r->ep.err ? r->ep.err : session_alive(r);
}

static void fab_close(struct bws_src *s)
{
	struct fab_src *f = (struct fab_src *)s;

	/* the endpoint first: nothing completes into a buffer after that */
	for (unsigned i = 0; i < SHADOW_REGS; i++)
		bwf_mr_close(&f->reg[i]);
	remote_free(f->r);
	free(f);
}

static const struct bws_src_ops fab_ops = {
	.name = "fabric",
	.wpost = fab_wpost,
	.wresult = fab_wresult,
	.pads = fab_pads,
	.post = fab_post,
	.test = fab_test,
	.inplace = fab_inplace,
	.reg = fab_reg,
	.unreg = fab_unreg,
	.alive = fab_alive,
	.close = fab_close,
};

/* Session r (taken: freed with the source, or now on failure) as the
 * origin of a shadow. */
static int fab_src_new(struct bw_remote *r, struct bws_src **out)
{
	struct fab_src *f = calloc(1, sizeof(*f));

	if (!f) {
		remote_free(r);
		return bwi_err(ENOMEM, "allocating a shadow");
	}
	f->r = r;
	f->b.ops = &fab_ops;
	f->b.indices = f->r->d.layout == BWI_LAYOUT_INDEX;
	f->b.capacity = f->r->cap;
	f->b.rec = f->r->rg;
	f->b.max_xfer = f->r->ep.max_msg < f->r->cap ? f->r->ep.max_msg
						      : f->r->cap;
	f->b.origin_node = -1;
	f->b.nic_node = bws_nic_node(f->r->fd);
	snprintf(f->b.link, sizeof(f->b.link), "%s", f->r->ep.prov);
	*out = &f->b;
	return 0;
}

int bwf_shadow_src(const char *url, const struct bw_fabric_opts *fabric_opts,
		   struct bws_src **out)
{
	struct bw_remote *r;
	int e = remote_connect(url, BW_READ, fabric_opts, &r);

	return e < 0 ? e : fab_src_new(r, out);
}

int bw_remote_open(const char *url, int flags, const struct bw_fabric_opts *opts,
		   struct bw_remote **out)
{
	struct bw_shadow_opts so = BW_SHADOW_OPTS_INIT;
	struct bw_shadow *sh;
	struct bws_src *src;
	struct bw_remote *r;
	int e = remote_connect(url, flags, opts, &r);

	if (e < 0)
		return e;
	if (flags & BW_READ) {
		/* the reader: reads ahead, several in flight (the prefetch
		 * method's adaptive window, up to 4 MiB or the ring) */
		so.method = BW_SHADOW_PREFETCH;
		if ((e = fab_src_new(r, &src)) < 0 ||
		    (e = bws_open(src, BWS_WAIT_FLIGHT |
					       (flags & (BW_READ | BW_FROM_START |
							 BW_NONBLOCK)),
				  &so, true, &sh)) < 0)
			return e; /* r went with the source */
		r->sh = sh;
	}
	*out = r;
	return 0;
}

/* ---- white-box hooks for the tests (not exported) ---------------------------- */

struct bwf_desc *bwf_remote_desc(struct bw_remote *r)
{
	return &r->d;
}

int bwf_remote_probe(struct bw_remote *r, uint64_t raddr, uint64_t key,
		     size_t len)
{
	struct bwf_op op;
	int e;

	if (len > sizeof(r->sc->win))
		return -EINVAL;
	e = bwf_read(&r->ep, r->peer, r->sc->win, len, r->sc_mr.desc, raddr, key,
		     &op);
	return e ? e : bwf_wait(&r->ep, &op);
}
