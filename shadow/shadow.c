/* SPDX-License-Identifier: MIT */
/*
 * Shadow buffers: the four access methods of thesis Table 4.3, written once
 * against the source interface (bws.h), so each works on a ring on another
 * host, on a ring in another NUMA node's memory, and behind the latency
 * layer alike.
 *
 * Positions are the origin's absolute positions. The local replica is
 * mapped twice back to back, so the origin's byte p lives at replica offset
 * p mod its size and any span of up to its size is contiguous: nothing is
 * ever moved inside it.
 *
 * Validation (FRP without feedback). A fetch copies bytes the writer may be
 * overwriting; the positions are read after it completed, and the fetched
 * byte at p is what was written at p if p >= oldest then (the origin raises
 * its reservation before it writes). What fails is discarded; the reader
 * loses only what it has not already got a valid copy of.
 */
#include "config.h"

#include <errno.h>
#include <numa.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <beltway/shadow.h>
#include <beltway/stream.h>

#include "bwf.h"
#include "bwi_stream.h"
#include "bws.h"

#define CH_MAX 16u		  /* operations in flight */
#define HC_MAX 256u		  /* hybrid: headers fetched at once, */
#define HC_BYTES (64u << 10)	  /* in this many bytes at most */
#define HDR_DEFAULT 64u		  /* hybrid: a frame's headers */
#define HDR_MAX 4096u
_Static_assert(HC_BYTES / HDR_MAX >= 16, "a header cache holds 16 at least");
#define REP_DEFAULT (4u << 20)	  /* replica: at most this by default */
#define PF_REP_DEFAULT (16u << 20) /* prefetch's: room to hide latency */
#define LANDING (256u << 10)	  /* zero-copy over the fabric: peeks land */
#define PF_START (1u << 20)	  /* prefetch: the first window */
#define PF_CHUNK_MIN (64u << 10) /* prefetch: the smallest read (one op) */
#define CO_MIN_DIV 16u /* copy-once: a copy of 1/16 of the replica at least */

struct chunk {
	struct bws_req rq;
	uint64_t pos, len;
};

struct bw_shadow {
	struct bws_src *src;
	int flags;
	unsigned method;
	uint64_t cap;
	uint64_t pos;	     /* next byte to deliver */
	uint64_t acq;	     /* bytes peek_acquire handed out */
	struct bws_win w;    /* the origin's positions, last read */
	uint32_t hdr_n, rec; /* hybrid: header bytes; record size (0: any) */
	uint32_t lat_us;
	int node;	     /* of the replica, or -1 */

	/* the replica: validated copies of [pos, r_hi) at rep + (p & mask) */
	uint8_t *rep;
	uint64_t rep_len, rep_mask;
	uint64_t r_hi;

	/* prefetch: reads in flight for [r_done, r_next), oldest first;
	 * [r_hi, r_done) arrived and awaits a look at the positions, which
	 * is in flight (wv) for [r_hi, wv_covers) */
	struct chunk ch[CH_MAX];
	unsigned ch_head, ch_n, depth;
	uint64_t r_done, r_next, window;
	bool fixed_window;
	struct bws_req wv;
	bool wv_busy;
	uint64_t wv_covers;

	/* hybrid over the fabric: validated headers of the records at
	 * hc_pos[0..hc_n), in increasing order, hdr_n bytes each (fewer at
	 * the write position); fetched hc_max at a time, with hc_rq */
	uint8_t *hc;
	uint64_t hc_pos[HC_MAX];
	uint32_t hc_len[HC_MAX];
	unsigned hc_n, hc_max;
	struct bws_req *hc_rq;

	/* padding (spans of writers presumed dead: never delivered): the
	 * next pad to take from the origin's table, and the spans known that
	 * end past the read position */
	struct bwf_padq pq;
	bool pad_unseen; /* a pad went by unseen: drop every copy */

	/* record rings (fr, vr: rl.layout): the record whose header was
	 * read, at rl_at (rl_len 0: none); rl_unsure: the read position
	 * may not be a record start (after a loss, or from the oldest byte);
	 * rl_scan: bytes a vr shadow from the oldest byte may still step
	 * through looking for a record start (0: resync at the write
	 * position); rl_acq: a record peek_acquire'd; rl_buf: a record's
	 * copy, when no one span holds it */
	const struct bwi_geom *rl;
	uint64_t rl_at, rl_foot;
	uint64_t rl_scan;
	uint32_t rl_len;
	uint32_t rl_hacq; /* BW_SHADOW_HEADERS: bytes of its start acquired */
	bool rl_unsure, rl_acq;
	bool rl_copied; /* the record's payload is in rl_buf (the read
			 * position past it) */
	uint8_t *rl_buf;

	uint64_t ip_end; /* end of the last span served in place */
	int tfd;	 /* bw_shadow_fd's timer */
	pid_t pid;	 /* the process that opened it (owns the source) */
	uint64_t bytes, calls, lost, ops, fetched;
};

static const char *const method_names[] = {
	[BW_SHADOW_ZEROCOPY] = "zero-copy",
	[BW_SHADOW_COPYONCE] = "copy-once",
	[BW_SHADOW_HYBRID] = "hybrid",
	[BW_SHADOW_PREFETCH] = "prefetch",
};

BW_API const char *bw_shadow_method_name(unsigned m)
{
	return m >= 1 && m <= BW_SHADOW_PREFETCH ? method_names[m] : NULL;
}

BW_API int bw_shadow_method_parse(const char *name)
{
	static const char *const bare[] = {NULL, "zerocopy", "copyonce",
					   "hybrid", "prefetch"};

	for (unsigned m = 1; name && m <= BW_SHADOW_PREFETCH; m++)
		if (!strcmp(name, method_names[m]) || !strcmp(name, bare[m]))
			return (int)m;
	return bwi_err(EINVAL, "'%s' is not a shadow method (zero-copy, "
			       "copy-once, hybrid, prefetch)",
		       name ? name : "(null)");
}

/* ---- the origin ------------------------------------------------------------ */

static int pf_collect(struct bw_shadow *sh, bool wait);
static int pads_take(struct bw_shadow *sh);

/* Reads the positions now, after the look in flight (it shares the
 * source's buffer: two at once could tear it) has come back. */
static int win(struct bw_shadow *sh)
{
	int r;

	if (sh->wv_busy && (r = pf_collect(sh, true)) < 0)
		return r;
	sh->ops++;
	if ((r = bws_window(sh->src, &sh->w)) < 0)
		return r;
	return pads_take(sh);
}

static int post(struct bw_shadow *sh, void *dst, uint64_t pos, uint64_t len,
		struct bws_req *rq)
{
	sh->ops++;
	sh->fetched += len;
	return sh->src->ops->post(sh->src, dst, pos, (size_t)len, rq);
}

static int test(struct bw_shadow *sh, struct bws_req *rq, bool wait)
{
	return sh->src->ops->test(sh->src, rq, wait);
}

static uint64_t min64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t rep_have(const struct bw_shadow *sh)
{
	return sh->r_hi > sh->pos ? sh->r_hi - sh->pos : 0;
}

static uint8_t *rep_at(const struct bw_shadow *sh, uint64_t p)
{
	return sh->rep + (p & sh->rep_mask);
}

/* The replica holds nothing, and reads start afresh, at p. */
static void rep_reset(struct bw_shadow *sh, uint64_t p)
{
	sh->r_hi = sh->r_done = sh->r_next = p;
}

/* Waits for every read in flight (their memory is about to be reused). */
static int drain(struct bw_shadow *sh)
{
	int r = 0;

	if (sh->wv_busy) {
		r = test(sh, &sh->wv, true);
		r = r < 0 ? r : 0;
		sh->wv_busy = false;
	}
	while (sh->ch_n) {
		int e = test(sh, &sh->ch[sh->ch_head].rq, true);

		if (e < 0 && r == 0)
			r = e;
		sh->ch_head = (sh->ch_head + 1) % CH_MAX;
		sh->ch_n--;
	}
	return r;
}

/* The read position moved to p: what the replica and the reads in flight
 * hold from p on stays, the rest goes. */
static int moved_to(struct bw_shadow *sh, uint64_t p)
{
	int r = 0;

	sh->pos = p;
	sh->acq = 0;
	if (sh->r_next > p && sh->r_hi <= p) {
		/* reads in flight cover p: they land and are validated as
		 * usual; serving waits for them */
	} else if (sh->r_hi < p) {
		r = drain(sh);
		rep_reset(sh, p);
	}
	return r;
}

/* A record being read is dropped, with any acquisition or copy of it. */
static void rl_forget(struct bw_shadow *sh)
{
	sh->rl_len = 0;
	sh->rl_hacq = 0;
	sh->rl_acq = sh->rl_copied = false;
}

static ssize_t lose(struct bw_shadow *sh)
{
	uint64_t n = sh->w.oldest - sh->pos;
	int r;

	sh->lost += n;
	rl_forget(sh); /* a record being read is lost with it */
	sh->rl_unsure = true;
	sh->rl_scan = 0; /* what follows an overwrite: no header is trusted */
	r = moved_to(sh, sh->w.oldest);
	if (r < 0)
		return r;
	return bwi_err(ESTALE, "the origin overwrote %llu bytes before this "
			       "shadow fetched them",
		       (unsigned long long)n);
}

/* Ensures the origin has bytes at the read position, and looks again once
 * if fewer than want are known. Returns 1, 0 at end of stream, -ESTALE
 * (they were overwritten: counted, position moved), -EAGAIN, or -errno
 * from the origin. */
static int avail(struct bw_shadow *sh, uint64_t want)
{
	unsigned idle = 0;
	bool looked = false, ended = false;
	int r;

	for (;;) {
		if (sh->pos < sh->w.oldest)
			return (int)lose(sh);
		if (sh->w.tail > sh->pos &&
		    (sh->w.tail - sh->pos >= want || looked))
			return 1;
		if (sh->w.tail > sh->pos) {
			/* fewer than wanted: more may be written by now */
		} else if (looked && sh->w.ended) {
			/* one look more: a window read in one piece may show
			 * the writer gone before its last tail */
			if (ended)
				return 0;
			ended = true;
		} else if (looked) {
			if (sh->flags & BW_NONBLOCK)
				return bwi_err(EAGAIN, "no data");
			if ((r = sh->src->ops->alive(sh->src)) < 0)
				return r;
			bwf_backoff(&idle);
		}
		if ((r = win(sh)) < 0)
			return r;
		looked = true;
	}
}

/* Copies [a, a + k) of the origin into the replica, in pieces of at most a
 * transfer, all in flight at once; then reads the positions. */
static int fetch_sync(struct bw_shadow *sh, uint64_t a, uint64_t k)
{
	uint64_t step = sh->src->max_xfer;

	while (k) {
		unsigned n = 0;
		int r = 0;

		while (k && n < CH_MAX) {
			uint64_t l = min64(k, step);

			if ((r = post(sh, rep_at(sh, a), a, l, &sh->ch[n].rq)) < 0)
				break;
			n++;
			a += l;
			k -= l;
		}
		for (unsigned i = 0; i < n; i++) {
			int e = test(sh, &sh->ch[i].rq, true);

			if (e < 0 && r == 0)
				r = e;
		}
		if (r < 0)
			return r;
	}
	return win(sh);
}

/* Hybrid's payloads: copies up to limit bytes the origin holds past the
 * replica's end (as much as the replica takes), and waits for them.
 * Returns 1, 0 at end of stream, or -errno. */
static int fill(struct bw_shadow *sh, uint64_t limit)
{
	uint64_t a, k;
	int r;

	if (rep_have(sh) == 0) {
		sh->r_hi = sh->pos;
		if ((r = avail(sh, 1)) <= 0)
			return r;
	}
	a = sh->r_hi;
	if (sh->w.tail <= a)
		return 1; /* the replica holds all there is */
	k = min64(min64(sh->w.tail - a, sh->rep_len - (a - sh->pos)), limit);
	if (k == 0)
		return 1;
	if ((r = fetch_sync(sh, a, k)) < 0)
		return r;
	if (sh->w.oldest > a) {
		/* some of it was overwritten while it came: keep none (the
		 * copies before a stay valid) */
		return sh->pos < a ? 1 : (int)lose(sh);
	}
	sh->r_hi = a + k;
	return 1;
}

/* ---- the methods: each makes bytes at the read position available --------- */

/* Points *p at up to n bytes at the read position. Returns the count, 0 at
 * end of stream, or -errno. dst: a read's buffer (zero-copy may fetch
 * straight into it: then *p == dst), or NULL. */
static ssize_t zc_get(struct bw_shadow *sh, size_t n, void *dst,
		      const void **p)
{
	const void *ip;
	uint64_t k;
	int r = avail(sh, n);

	if (r <= 0)
		return r;
	k = min64(n, sh->w.tail - sh->pos);
	ip = sh->src->ops->inplace(sh->src, sh->pos);
	if (ip) {
		/* in place on this host: the caller's copy or use is checked
		 * by a look at the positions after it (read: now; peek:
		 * bw_shadow_check) */
		if (dst) {
			bws_copy_racy(dst, ip, (size_t)k);
			*p = dst;
		} else {
			*p = ip;
			sh->ip_end = sh->pos + k;
		}
		sh->ops++; /* the load of the data */
		sh->fetched += k;
	} else {
		struct bws_req rq;

		k = min64(k, sh->src->max_xfer);
		if (!dst)
			k = min64(k, sh->rep_len);
		*p = dst ? dst : sh->rep;
		r = post(sh, (void *)*p, sh->pos, k, &rq);
		if (r == -EFAULT && dst) { /* the provider wants registered
					    * memory: land, then copy */
			sh->ops--;
			sh->fetched -= k;
			k = min64(k, sh->rep_len);
			*p = sh->rep;
			r = post(sh, sh->rep, sh->pos, k, &rq);
		}
		if (r == 0)
			r = test(sh, &rq, true);
		if (r < 0)
			return r;
	}
	if ((r = win(sh)) < 0)
		return r;
	if (sh->pos < sh->w.oldest)
		return lose(sh);
	return (ssize_t)k;
}

/* Hybrid's payloads: from the replica, filled again when it holds fewer
 * bytes than asked for and the origin has more. */
static ssize_t rep_get(struct bw_shadow *sh, size_t n, const void **p)
{
	int r;

	if (rep_have(sh) && rep_have(sh) < n && n <= sh->rep_len &&
	    sh->w.tail <= sh->r_hi && (r = win(sh)) < 0)
		return r; /* fewer than asked for: more may be written by now */
	if (rep_have(sh) == 0 || (rep_have(sh) < n && sh->w.tail > sh->r_hi)) {
		r = fill(sh, UINT64_MAX);
		if (r <= 0)
			return r;
	}
	*p = rep_at(sh, sh->pos);
	return (ssize_t)min64(n, rep_have(sh));
}

/* Hybrid over the fabric: the headers of the next records (up to hc_max,
 * as many as are written), all in flight at once, validated by one look at
 * the positions: two round trips for the lot, so a long link is paid once
 * per batch, not once per record. */
static int hc_fetch(struct bw_shadow *sh)
{
	unsigned n = 0;
	int r = 0;

	sh->hc_n = 0;
	for (uint64_t p = sh->pos; n < sh->hc_max && p < sh->w.tail;) {
		sh->hc_pos[n] = p;
		sh->hc_len[n] = (uint32_t)min64(sh->hdr_n, sh->w.tail - p);
		r = post(sh, sh->hc + (size_t)n * sh->hdr_n, p, sh->hc_len[n],
			 &sh->hc_rq[n]);
		if (r < 0)
			break;
		n++;
		if (!sh->rec) /* where the next record starts is not known */
			break;
		p += sh->rec;
	}
	for (unsigned i = 0; i < n; i++) {
		int e = test(sh, &sh->hc_rq[i], true);

		if (e < 0 && r == 0)
			r = e;
	}
	if (r < 0 || (r = win(sh)) < 0)
		return r;
	/* valid: the headers at or past the oldest byte held */
	for (unsigned i = 0; i < n; i++)
		if (sh->hc_pos[i] >= sh->w.oldest) {
			memmove(sh->hc, sh->hc + (size_t)i * sh->hdr_n,
				(size_t)(n - i) * sh->hdr_n);
			memmove(sh->hc_pos, sh->hc_pos + i, (n - i) * sizeof(uint64_t));
			memmove(sh->hc_len, sh->hc_len + i, (n - i) * sizeof(uint32_t));
			sh->hc_n = n - i;
			break;
		}
	return 0;
}

/* The cached header that holds want bytes at the read position (at its
 * start, or inside it: a record ring's payload after its header word); -1
 * when none does, and the header is fetched again from the read position. */
static int hc_find(const struct bw_shadow *sh, uint64_t want)
{
	unsigned lo = 0, hi = sh->hc_n;

	/* the last header that starts at or below the read position */
	while (hi - lo > 1) {
		unsigned mid = lo + (hi - lo) / 2;

		if (sh->hc_pos[mid] <= sh->pos)
			lo = mid;
		else
			hi = mid;
	}
	if (lo < sh->hc_n && sh->hc_pos[lo] <= sh->pos &&
	    sh->pos - sh->hc_pos[lo] < sh->hc_len[lo])
		return sh->hc_pos[lo] + sh->hc_len[lo] - sh->pos >= want
			       ? (int)lo
			       : -1;
	return -1;
}

/* Hybrid: up to header_bytes in place (from the header cache over the
 * fabric), more from the replica, copied once when asked for. */
static ssize_t hy_get(struct bw_shadow *sh, size_t n, void *dst,
		      const void **p)
{
	int i, r;

	if (rep_have(sh))
		return rep_get(sh, n, p);
	if (n > sh->hdr_n) {
		/* the payload: this record (or this call), copied once */
		r = fill(sh, n > sh->rec ? n : sh->rec);
		if (r <= 0)
			return r;
		*p = rep_at(sh, sh->pos);
		return (ssize_t)min64(n, rep_have(sh));
	}
	if (sh->src->ops->inplace(sh->src, sh->pos))
		return zc_get(sh, n, dst, p);
	if ((i = hc_find(sh, n)) < 0) {
		if ((r = avail(sh, min64(n, sh->hdr_n))) <= 0)
			return r;
		if ((r = hc_fetch(sh)) < 0)
			return r;
		if ((i = hc_find(sh, 1)) < 0) /* overwritten while it came */
			return lose(sh);
	}
	*p = sh->hc + (size_t)i * sh->hdr_n + (sh->pos - sh->hc_pos[i]);
	return (ssize_t)min64(n, sh->hc_pos[i] + sh->hc_len[i] - sh->pos);
}

/* Prefetch: keeps reads in flight for a window past the read position,
 * within what the origin has written. Copy-once: the same, one bulk copy
 * at a time (several in flight hide a long link; one large one costs the
 * fewest operations on a short link). */
static int pump(struct bw_shadow *sh)
{
	uint64_t chunk = sh->window / sh->depth, least;

	if (chunk < PF_CHUNK_MIN)
		chunk = PF_CHUNK_MIN;
	chunk = min64(chunk, sh->src->max_xfer);
	least = min64(chunk, sh->rep_len); /* an empty replica takes one */
	if (sh->r_next < sh->pos) /* a skip past it all */
		rep_reset(sh, sh->pos);
	if (sh->method == BW_SHADOW_COPYONCE) {
		/* one bulk copy at a time (one operation, or pieces of the
		 * largest the link takes) of all that is new and fits: posted
		 * as the last one lands, so it overlaps the reader's use of
		 * what came before */
		if (sh->ch_n)
			return 0;
		chunk = sh->src->max_xfer;
		least = min64(sh->rep_len / CO_MIN_DIV, chunk);
	}
	while (sh->ch_n < sh->depth) {
		uint64_t a = sh->r_next, k;
		struct chunk *c = &sh->ch[(sh->ch_head + sh->ch_n) % CH_MAX];
		int r;

		if (a >= sh->w.tail || a - sh->pos >= sh->window)
			break;
		/* room: reads still in flight below the read position (after
		 * a skip) own their slots until they land */
		k = min64(min64(chunk, sh->w.tail - a),
			  min64(sh->pos, sh->r_done) + sh->rep_len - a);
		/* a read cut short by the room left would spend an operation
		 * on little (a read per record, where reads complete as they
		 * are posted): wait for room; wait for the origin never */
		if (k == 0 || (k < least && k < sh->w.tail - a))
			break;
		if ((r = post(sh, rep_at(sh, a), a, k, &c->rq)) < 0)
			return r;
		c->pos = a;
		c->len = k;
		sh->ch_n++;
		sh->r_next = a + k;
	}
	return 0;
}

/* Prefetch: moves reads that completed, in order, into the done prefix;
 * with wait, waits for the oldest. */
static int pf_reap(struct bw_shadow *sh, bool wait)
{
	while (sh->ch_n) {
		struct chunk *c = &sh->ch[sh->ch_head];
		int r = test(sh, &c->rq, wait);

		if (r <= 0)
			return r;
		sh->r_done = c->pos + c->len;
		sh->ch_head = (sh->ch_head + 1) % CH_MAX;
		sh->ch_n--;
		wait = false;
	}
	return 0;
}

/* Prefetch: a look at the positions posted after reads completed covers
 * them; one is kept in flight while there is something to cover, so
 * validation overlaps the reads instead of stalling them. */
static int pf_collect(struct bw_shadow *sh, bool wait)
{
	int r;

	if (sh->wv_busy) {
		if ((r = test(sh, &sh->wv, wait)) <= 0)
			return r;
		sh->wv_busy = false;
		if ((r = sh->src->ops->wresult(sh->src, &sh->w)) < 0 ||
		    (r = pads_take(sh)) < 0)
			return r;
		if (sh->w.oldest > sh->r_hi) {
			/* some of it was overwritten while it came: keep none;
			 * the reader loses what it has no valid copy of when
			 * it gets there */
			if ((r = drain(sh)) < 0)
				return r;
			sh->r_done = sh->r_next = sh->r_hi;
			return 0;
		}
		sh->r_hi = sh->wv_covers;
	}
	return 0;
}

static int pf_validate(struct bw_shadow *sh, bool wait)
{
	int r = pf_collect(sh, wait);

	if (r == 0 && !sh->wv_busy && sh->r_done > sh->r_hi) {
		sh->ops++;
		if ((r = sh->src->ops->wpost(sh->src, &sh->wv)) < 0)
			return r;
		sh->wv_busy = true;
		sh->wv_covers = sh->r_done;
	}
	return r;
}

/* Keeps the prefetcher moving without waiting: reads landed are taken,
 * validated when a look at the positions says so, and more are posted. */
static int pf_progress(struct bw_shadow *sh)
{
	int r;

	if ((r = pf_reap(sh, false)) < 0 || (r = pf_validate(sh, false)) < 0)
		return r;
	return pump(sh);
}

static ssize_t pf_get(struct bw_shadow *sh, size_t n, const void **p)
{
	int r;

	/* the reader caught up with what was read ahead: read further */
	if (rep_have(sh) == 0 && !sh->fixed_window && sh->window < sh->rep_len)
		sh->window *= 2;

	for (;;) {
		/* what has no valid copy here and is gone at the origin */
		if (rep_have(sh) == 0 && sh->pos < sh->w.oldest)
			return lose(sh);
		uint64_t hi = sh->r_hi, done = sh->r_done, next = sh->r_next;
		bool busy = sh->wv_busy;

		/* keep everything moving, without waiting */
		if ((r = pf_progress(sh)) < 0)
			return r;
		if (rep_have(sh))
			break;
		if (hi != sh->r_hi || done != sh->r_done || next != sh->r_next ||
		    busy != sh->wv_busy)
			continue; /* something moved: look again before waiting */
		if (sh->wv_busy || sh->ch_n) {
			/* the reader caught up with the reads in flight */
			if ((sh->flags & (BW_NONBLOCK | BWS_WAIT_FLIGHT)) ==
			    BW_NONBLOCK)
				return bwi_err(EAGAIN, "no data yet (reads in "
						       "flight)");
			r = sh->wv_busy ? pf_validate(sh, true) : pf_reap(sh, true);
			if (r < 0)
				return r;
		} else {
			/* nothing in flight: is there anything to read? */
			rep_reset(sh, sh->pos);
			if ((r = avail(sh, 1)) <= 0)
				return r;
		}
	}
	*p = rep_at(sh, sh->pos);
	return (ssize_t)min64(n, rep_have(sh));
}

static ssize_t method_get(struct bw_shadow *sh, size_t n, void *dst,
			  const void **p)
{
	switch (sh->method) {
	case BW_SHADOW_ZEROCOPY:
		return zc_get(sh, n, dst, p);
	case BW_SHADOW_HYBRID:
		return hy_get(sh, n, dst, p);
	default:
		return pf_get(sh, n, p);
	}
}

/* ---- padding ---------------------------------------------------------------- */

/* Forgets every copy held: used when a pad went by unseen (its table entry
 * was reused before this shadow read it), so no copy can hold its bytes. */
static int forget_copies(struct bw_shadow *sh)
{
	int r = drain(sh);

	rep_reset(sh, sh->pos);
	sh->hc_n = 0;
	return r;
}

/* Takes the pads the last look at the positions counts and this shadow has
 * not seen. A pad is recorded before the tail moves over it, so every byte
 * that look validates is covered. */
static int pads_take(struct bw_shadow *sh)
{
	struct bwf_pad t[BWI_PADS];
	int r;

	if (sh->pq.next >= sh->w.pads)
		return 0;
	sh->ops++;
	if ((r = sh->src->ops->pads(sh->src, t)) < 0 ||
	    (r = bwf_padq_take(&sh->pq, t, sh->w.pads, sh->pos, sh->w.tail,
			       sh->cap)) < 0)
		return r;
	/* a pad went by unseen: get() drops every copy, once the method it
	 * called is done with them */
	sh->pad_unseen |= r > 0;
	return 0;
}

/* Bytes at the read position, never padding: a span that starts in a pad
 * moves past it, one that reaches a pad stops before it. */
static ssize_t get(struct bw_shadow *sh, size_t n, void *dst, const void **p)
{
	for (;;) {
		ssize_t k = method_get(sh, n, dst, p);
		uint64_t kk = (uint64_t)k, skip;
		int r;

		if (sh->pad_unseen) {
			/* what the method found may be a copy of it: drop all
			 * copies and look again (what the origin no longer
			 * holds is then lost) */
			sh->pad_unseen = false;
			if ((r = forget_copies(sh)) < 0)
				return r;
			if (k > 0)
				continue;
		}
		if (k <= 0 || (sh->pq.n == 0 && sh->pq.floor <= sh->pos))
			return k;
		if (!(skip = bwf_padq_clip(&sh->pq, sh->pos, &kk)))
			return (ssize_t)kk;
		if ((r = moved_to(sh, skip)) < 0)
			return r;
	}
}

/* ---- the stream calls ------------------------------------------------------- */

static void delivered(struct bw_shadow *sh, uint64_t k)
{
	sh->bytes += k;
	sh->calls++;
}

/* A call found nothing: the descriptor's timer ticks that made it look are
 * used up (else poll would report it readable at once, forever). */
static ssize_t none_yet(struct bw_shadow *sh, ssize_t r)
{
	uint64_t ticks;

	if (r == -EAGAIN && sh->tfd >= 0) /* no tick yet: nothing to use up */
		(void)!read(sh->tfd, &ticks, sizeof(ticks));
	return r;
}

/* ---- records (fr and vr rings) ---------------------------------------------- */

/* Moves exactly m bytes at the read position into dst. Returns m, 0 at the
 * end of the stream before any, or -errno. Once a record's first byte came,
 * the rest is written (records are published whole): it waits for reads in
 * flight even under BW_NONBLOCK. */
static ssize_t take(struct bw_shadow *sh, uint8_t *dst, size_t m)
{
	int fl = sh->flags;
	size_t got = 0;
	ssize_t k = 0;

	while (got < m) {
		const void *p;

		k = get(sh, m - got, dst + got, &p);
		if (k <= 0)
			break;
		if (p != dst + got)
			memcpy(dst + got, p, (size_t)k);
		sh->pos += (uint64_t)k;
		got += (size_t)k;
		sh->flags |= BWS_WAIT_FLIGHT;
	}
	sh->flags = fl;
	if (got < m && got) {
		/* the record is lost: the next call finds a record start */
		rl_forget(sh);
		sh->rl_unsure = true;
		if (k == 0)
			return bwi_err(EPROTO, "the origin's stream ended inside "
					       "a record");
	}
	return k < 0 ? k : (ssize_t)got;
}

/* From at, where no record could be read (not a record start, or a bad
 * header), to the next sure record start: fr's next slot, vr's write
 * position. A vr shadow that started at the oldest byte, inside a record
 * of an intact ring, steps instead to the next aligned position, whose
 * header rl_head then checks, for up to a ring's bytes (a local reader
 * scans the same way, and follows the headers to the write position too).
 * What lay between is lost. */
static int rl_resync(struct bw_shadow *sh, uint64_t at)
{
	const struct bwi_geom *g = sh->rl;
	uint64_t to;
	int r;

	if (g->layout == BWI_LAYOUT_FR) {
		to = (at + g->rec_size) & ~(uint64_t)(g->rec_size - 1);
	} else if (sh->rl_scan >= g->rec_align && at + g->rec_align < sh->w.tail) {
		to = (at + g->rec_align) & ~(uint64_t)(g->rec_align - 1);
		sh->rl_scan -= to - at;
		sh->lost += to - at;
		rl_forget(sh);
		return moved_to(sh, to); /* still unsure */
	} else {
		sh->rl_scan = 0;
		if ((r = win(sh)) < 0)
			return r;
		to = sh->w.tail;
		if (to <= at || to % g->rec_align)
			return bwi_err(EPROTO, "the origin's write position %llu "
					       "is not a record start past %llu",
				       (unsigned long long)to,
				       (unsigned long long)at);
	}
	sh->lost += to - at;
	rl_forget(sh);
	sh->rl_unsure = false;
	return moved_to(sh, to);
}

/* The next record's payload length (its header read, the read position at
 * its payload), 0 at the end of the stream, or -errno. A position that
 * may not be a record start is checked: the header there must name it
 * (its check word), else the shadow resynchronizes: fr at the next slot,
 * vr at the write position, a record start. The copies it parses were
 * validated, so a bad header at a known record start is the origin's:
 * -EBADMSG, and the next call resynchronizes. */
static ssize_t rl_head(struct bw_shadow *sh)
{
	const struct bwi_geom *g = sh->rl;

	while (!sh->rl_len) {
		uint64_t at = sh->pos, v, foot;
		uint32_t len;
		const char *why;
		ssize_t k;
		int r;

		if (at % (g->layout == BWI_LAYOUT_FR ? g->rec_size
						     : g->rec_align)) {
			if ((r = rl_resync(sh, at)) < 0)
				return r;
			continue;
		}
		k = take(sh, (uint8_t *)&v, sizeof(v));
		if (k <= 0)
			return k; /* a loss moved the position: look again */
		/* where the header was: padding before it (a dead writer's
		 * whole records) was skipped on the way */
		at = sh->pos - sizeof(v);
		why = bwi_rec_hdr(g, at, v, &len, &foot);
		if (!why && foot > g->capacity)
			why = "bad pad";
		if (why) {
			bool unsure = sh->rl_unsure;

			if ((r = rl_resync(sh, at)) < 0)
				return r;
			if (unsure)
				continue;
			return bwi_err(EBADMSG, "the origin's record header at "
						"%llu: %s (skipped to %llu)",
				       (unsigned long long)at, why,
				       (unsigned long long)sh->pos);
		}
		sh->rl_unsure = false;
		sh->rl_scan = 0;
		if (!len) { /* a pad span */
			if ((r = moved_to(sh, at + foot)) < 0)
				return r;
			continue;
		}
		if ((r = moved_to(sh, at + bwi_rec_hoff(g))) < 0)
			return r;
		sh->rl_at = at;
		sh->rl_len = len;
		sh->rl_foot = foot;
	}
	return sh->rl_len;
}

static int short_buf(uint32_t len, size_t n)
{
	return bwi_err(EMSGSIZE, "the next record has %u bytes; the call takes "
				 "at most %zu",
		       len, n);
}

/* Past the record whose header was read; delivered: all of it, or the
 * start given alone (header-only access). */
static int rl_done(struct bw_shadow *sh)
{
	uint64_t end = sh->rl_at + sh->rl_foot;

	delivered(sh, sh->rl_hacq ? sh->rl_hacq : sh->rl_len);
	rl_forget(sh);
	return moved_to(sh, end);
}

/* The next record's length if a call of n bytes takes it, else 0 at the
 * end or -errno. */
static ssize_t rl_next(struct bw_shadow *sh, size_t n)
{
	ssize_t len = rl_head(sh);

	if (len <= 0)
		return none_yet(sh, len);
	if ((size_t)len > n)
		return short_buf((uint32_t)len, n);
	sh->rl_hacq = 0; /* taken whole, it is delivered whole */
	return len;
}

/* A record's payload into buf, whole. */
static ssize_t rl_read(struct bw_shadow *sh, void *buf, size_t n)
{
	ssize_t len = rl_next(sh, n), k;
	int r;

	if (len <= 0)
		return len;
	if (sh->rl_copied) {
		memcpy(buf, sh->rl_buf, (size_t)len);
	} else if ((k = take(sh, buf, (size_t)len)) != len) {
		return k < 0 ? k : bwi_err(EPROTO, "a record cut short");
	}
	r = rl_done(sh);
	return r < 0 ? r : len;
}

/* Header-only access (BW_SHADOW_HEADERS) to a record longer than n: its
 * first bytes, as one span the method serves (hybrid: in place), up to n;
 * the rest is never fetched. With move, past the whole record. */
static ssize_t rl_peek_head(struct bw_shadow *sh, const void **ptr, size_t n,
			    bool move)
{
	ssize_t k = get(sh, n, NULL, ptr);
	int r;

	if (k <= 0) /* a loss: the record went with it */
		return k < 0 ? k : bwi_err(EPROTO, "a record cut short");
	sh->rl_hacq = (uint32_t)k;
	if (!move)
		return k;
	r = rl_done(sh);
	return r < 0 ? r : k;
}

/* A record's payload in one span: the method's, or a copy. */
static ssize_t rl_peek(struct bw_shadow *sh, const void **ptr, size_t n,
		       bool move)
{
	ssize_t len, k;
	int r;

	if ((sh->flags & BW_SHADOW_HEADERS) && n) {
		len = rl_head(sh);
		if (len <= 0)
			return none_yet(sh, len);
		if ((size_t)len > n && !sh->rl_copied)
			return rl_peek_head(sh, ptr, n, move);
	}
	len = rl_next(sh, n);
	if (len <= 0)
		return len;
	k = sh->rl_copied ? 0 : get(sh, (size_t)len, NULL, ptr);
	if (k < 0)
		return k;
	if (k != len) {
		/* not in one span here: a copy, which later calls on this
		 * record serve (the read position is past it) */
		if (!sh->rl_buf && !(sh->rl_buf = malloc(bwi_rec_max(sh->rl))))
			return bwi_err(ENOMEM, "allocating a record copy");
		if (!sh->rl_copied &&
		    (k = take(sh, sh->rl_buf, (size_t)len)) != len)
			return k < 0 ? k : bwi_err(EPROTO, "a record cut short");
		sh->rl_copied = true;
		*ptr = sh->rl_buf;
	}
	if (!move) {
		sh->rl_acq = true;
		return len;
	}
	r = rl_done(sh);
	return r < 0 ? r : len;
}

static int rl_complete(struct bw_shadow *sh, size_t n)
{
	if (n == 0)
		return 0;
	/* header-only: completing the start acquired completes the record */
	if (sh->rl_hacq && n == sh->rl_hacq)
		return rl_done(sh);
	if (!sh->rl_acq || n != sh->rl_len)
		return bwi_err(EINVAL, "peek_complete of %zu bytes: a record ring "
				       "completes 0 or the whole record acquired "
				       "(%u bytes)",
			       n, sh->rl_acq ? sh->rl_len : 0);
	return rl_done(sh);
}

BW_API ssize_t bw_shadow_read(struct bw_shadow *sh, void *buf, size_t n)
{
	const void *p;
	ssize_t k;

	bwi_err_clear();
	if (!sh || (!buf && n))
		return bwi_err(EINVAL, "bw_shadow_read: no shadow or buffer");
	if (n == 0)
		return 0;
	if (sh->rl)
		return rl_read(sh, buf, n);
	k = get(sh, n, buf, &p);
	if (k <= 0)
		return none_yet(sh, k);
	if (p != buf)
		memcpy(buf, p, (size_t)k);
	delivered(sh, (uint64_t)k);
	sh->pos += (uint64_t)k;
	sh->acq = 0;
	return k;
}

static ssize_t peek(struct bw_shadow *sh, const void **ptr, size_t n, bool move)
{
	ssize_t k;

	bwi_err_clear();
	if (!sh || !ptr)
		return bwi_err(EINVAL, "bw_shadow_peek: no shadow or pointer");
	if (n == 0)
		return 0;
	if (sh->rl)
		return rl_peek(sh, ptr, n, move);
	if (sh->rep && n > sh->rep_len)
		n = (size_t)sh->rep_len; /* one contiguous span */
	k = get(sh, n, NULL, ptr);
	if (k <= 0)
		return none_yet(sh, k);
	if (move) {
		delivered(sh, (uint64_t)k);
		sh->pos += (uint64_t)k;
		sh->acq = 0;
	} else {
		sh->acq = (uint64_t)k;
	}
	return k;
}

BW_API ssize_t bw_shadow_peek(struct bw_shadow *sh, const void **ptr, size_t n)
{
	return peek(sh, ptr, n, true);
}

BW_API ssize_t bw_shadow_peek_acquire(struct bw_shadow *sh, const void **ptr,
				      size_t n)
{
	return peek(sh, ptr, n, false);
}

BW_API int bw_shadow_peek_complete(struct bw_shadow *sh, size_t n)
{
	int r;

	bwi_err_clear();
	if (!sh)
		return bwi_err(EINVAL, "bw_shadow_peek_complete: no shadow");
	if (sh->rl)
		return rl_complete(sh, n);
	if (n > sh->acq && n > sh->w.tail - sh->pos) {
		/* a skip past what we know is written: look again */
		if ((r = win(sh)) < 0)
			return r;
		if (n > sh->w.tail - sh->pos)
			return bwi_err(EINVAL, "cannot complete %zu bytes: the "
					       "origin has written %llu past "
					       "the read position",
				       n, (unsigned long long)(sh->w.tail - sh->pos));
	}
	delivered(sh, min64(n, sh->acq));
	return moved_to(sh, sh->pos + n);
}

BW_API int64_t bw_shadow_check(struct bw_shadow *sh, int64_t stamp)
{
	int r;

	bwi_err_clear();
	if (!sh)
		return bwi_err(EINVAL, "bw_shadow_check: no shadow");
	if (stamp < 0)
		return (int64_t)sh->pos;
	if ((uint64_t)stamp > sh->pos)
		return bwi_err(EINVAL, "stamp %lld is from the future",
			       (long long)stamp);
	/* copies are always intact; bytes used in place since stamp are if
	 * the origin still holds every byte from stamp on */
	if (sh->ip_end > (uint64_t)stamp) {
		if ((r = win(sh)) < 0)
			return r;
		if ((uint64_t)stamp < sh->w.oldest)
			return bwi_err(ESTALE, "bytes this shadow served in "
					       "place have been overwritten");
	}
	return (int64_t)sh->pos;
}

/* Readable now: BW_POLLIN (with BW_POLLHUP at the end), 0, or -errno. A
 * prefetching shadow is readable once a read has landed and been checked:
 * looking starts its reads, and later looks collect them. */
static int ready(struct bw_shadow *sh)
{
	bool pf = sh->method == BW_SHADOW_PREFETCH ||
		  sh->method == BW_SHADOW_COPYONCE;
	int r;

	if (pf && (r = pf_progress(sh)) < 0)
		return r;
	if (rep_have(sh) || hc_find(sh, sh->hdr_n) >= 0)
		return BW_POLLIN;
	if (sh->pos < sh->w.oldest)
		return BW_POLLIN; /* a loss to report (reads in flight or not:
				   * they would fetch it again, in vain) */
	if (pf && (sh->ch_n || sh->wv_busy))
		return 0; /* on their way */
	if ((r = win(sh)) < 0)
		return r;
	if (sh->pos < sh->w.oldest)
		return BW_POLLIN; /* a loss to report */
	if (sh->w.tail > sh->pos) {
		if (!pf)
			return BW_POLLIN;
		if (sh->r_hi < sh->pos)
			rep_reset(sh, sh->pos);
		return (r = pump(sh)) < 0 ? r : 0;
	}
	return sh->w.ended ? BW_POLLIN | BW_POLLHUP : 0;
}

BW_API int bw_shadow_block(struct bw_shadow *sh, int timeout_ms)
{
	uint64_t deadline = bwi_now_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) *
						   1000000u;
	unsigned idle = 0;
	int r;

	bwi_err_clear();
	if (!sh)
		return bwi_err(EINVAL, "bw_shadow_block: no shadow");
	for (;;) {
		if ((r = ready(sh)) != 0)
			return r;
		if (timeout_ms >= 0 && bwi_now_ns() >= deadline)
			return 0;
		if ((r = sh->src->ops->alive(sh->src)) < 0)
			return r;
		bwf_backoff(&idle);
	}
}

BW_API int bw_shadow_fd(struct bw_shadow *sh)
{
	struct itimerspec it = {.it_interval = {0, 1000000},
				.it_value = {0, 1000000}};

	bwi_err_clear();
	if (!sh)
		return bwi_err(EINVAL, "bw_shadow_fd: no shadow");
	if (sh->tfd >= 0)
		return sh->tfd;
	sh->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (sh->tfd < 0)
		return bwi_err(errno, "making a shadow's timer");
	if (timerfd_settime(sh->tfd, 0, &it, NULL) < 0) {
		int e = errno;

		close(sh->tfd);
		sh->tfd = -1;
		return bwi_err(e, "arming a shadow's timer");
	}
	return sh->tfd;
}

BW_API int bw_shadow_stat(const struct bw_shadow *sh, struct bw_shadow_stat *st)
{
	if (!sh || !st)
		return bwi_err(EINVAL, "bw_shadow_stat: no shadow or buffer");
	memset(st, 0, sizeof(*st));
	st->bytes = sh->bytes;
	st->calls = sh->calls;
	st->lost = sh->lost;
	st->padded = sh->pq.padded;
	st->remote_ops = sh->ops;
	st->fetched = sh->fetched;
	st->position = sh->pos;
	st->capacity = sh->cap;
	st->replica_bytes = sh->rep ? sh->rep_len : 0;
	st->window = sh->method == BW_SHADOW_PREFETCH ? sh->window : 0;
	st->method = sh->method;
	st->latency_us = sh->lat_us;
	st->node = sh->rep ? sh->node : -1;
	st->origin_node = sh->src->origin_node;
	snprintf(st->link, sizeof(st->link), "%s", sh->src->link);
	st->record_max = sh->rl ? bwi_rec_max(sh->rl) : 0;
	return 0;
}

static void shadow_free(struct bw_shadow *sh)
{
	/* in a forked child the endpoint is the parent's: leave it alone */
	if (sh->src && sh->pid == getpid()) {
		drain(sh);
		if (sh->rep)
			sh->src->ops->unreg(sh->src, sh->rep);
		if (sh->hc)
			sh->src->ops->unreg(sh->src, sh->hc);
		sh->src->ops->close(sh->src);
	}
	bws_mirror_free(sh->rep, sh->rep_len);
	free(sh->hc);
	free(sh->hc_rq);
	free(sh->rl_buf);
	if (sh->tfd >= 0)
		close(sh->tfd);
	free(sh);
}

BW_API int bw_shadow_close(struct bw_shadow *sh)
{
	if (!sh)
		return bwi_err(EINVAL, "bw_shadow_close: no shadow");
	shadow_free(sh);
	return 0;
}

/* ---- opening ---------------------------------------------------------------- */

static bool pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* $BELTWAY_LATENCY_US: a whole number of microseconds up to one second. */
static int env_latency(uint32_t *out)
{
	const char *e = getenv("BELTWAY_LATENCY_US");
	char *end;
	unsigned long v;

	*out = 0;
	if (!e || !*e)
		return 0;
	errno = 0;
	v = strtoul(e, &end, 10);
	if (errno || *end || v > 1000000 || e[0] == '-')
		return bwi_err(EINVAL, "BELTWAY_LATENCY_US='%s' is not a number "
				       "of microseconds up to 1000000",
			       e);
	*out = (uint32_t)v;
	return 0;
}

static int opts_check(const struct bw_shadow_opts *o, int flags)
{
	if (o->method > BW_SHADOW_PREFETCH)
		return bwi_err(EINVAL, "unknown shadow method %u", o->method);
	if (o->header_bytes > HDR_MAX)
		return bwi_err(EINVAL, "header_bytes %u: at most %u", o->header_bytes,
			       HDR_MAX);
	if (o->record_size && o->header_bytes > o->record_size)
		return bwi_err(EINVAL, "header_bytes %u exceed record_size %u",
			       o->header_bytes, o->record_size);
	if (o->depth > CH_MAX)
		return bwi_err(EINVAL, "depth %u: at most %u reads in flight",
			       o->depth, CH_MAX);
	if (o->replica_bytes &&
	    (!pow2(o->replica_bytes) || o->replica_bytes < 4096 ||
	     o->replica_bytes > (UINT64_C(1) << 30)))
		return bwi_err(EINVAL, "replica_bytes %llu: a power of two from "
				       "4 KiB to 1 GiB",
			       (unsigned long long)o->replica_bytes);
	if (o->latency_us > 1000000)
		return bwi_err(EINVAL, "latency_us %u: at most one second",
			       o->latency_us);
	if ((flags & BW_SHADOW_NODE) &&
	    (o->numa_node < 0 || numa_available() < 0 ||
	     o->numa_node > numa_max_node()))
		return bwi_err(EINVAL, "NUMA node %d does not exist here (nodes "
				       "0 to %d)",
			       o->numa_node,
			       numa_available() < 0 ? 0 : numa_max_node());
	return 0;
}

/* The default method of the link (thesis Table 4.3). */
static unsigned default_method(const struct bw_shadow *sh, bool remote)
{
	int here = bws_cpu_node();

	if (sh->flags & BW_SHADOW_HEADERS)
		return BW_SHADOW_HYBRID;
	if (remote || sh->lat_us)
		return BW_SHADOW_PREFETCH;
	if (sh->src->origin_node >= 0 && here >= 0 && sh->src->origin_node != here)
		return BW_SHADOW_COPYONCE;
	return BW_SHADOW_ZEROCOPY;
}

static int setup(struct bw_shadow *sh, const struct bw_shadow_opts *o,
		 bool remote)
{
	uint64_t want;
	int r;

	sh->method = o->method ? o->method : default_method(sh, remote);
	sh->hdr_n = o->header_bytes ? o->header_bytes : HDR_DEFAULT;
	sh->rec = o->record_size;
	if (sh->rec > sh->cap)
		return bwi_err(EINVAL, "record_size %u exceeds the ring (%llu bytes)",
			       sh->rec, (unsigned long long)sh->cap);
	sh->depth = o->depth ? o->depth : 8;
	if (sh->flags & BW_SHADOW_NODE)
		sh->node = o->numa_node;
	else
		sh->node = sh->src->nic_node >= 0 ? sh->src->nic_node : bws_cpu_node();
	/* the replica: none for zero-copy in place; a landing for zero-copy
	 * over a link */
	want = o->replica_bytes ? o->replica_bytes
				: min64(sh->cap, sh->method == BW_SHADOW_PREFETCH
							 ? PF_REP_DEFAULT
							 : REP_DEFAULT);
	if (sh->method == BW_SHADOW_ZEROCOPY)
		want = sh->src->ops->inplace(sh->src, 0) ? 0 : min64(want, LANDING);
	if (want) {
		sh->rep = bws_mirror_alloc((size_t)want, sh->node);
		if (!sh->rep)
			return bwi_err(ENOMEM, "allocating a %llu-byte replica",
				       (unsigned long long)want);
		sh->rep_len = want;
		sh->rep_mask = want - 1;
		if ((r = sh->src->ops->reg(sh->src, sh->rep, 2 * want)) < 0) {
			bws_mirror_free(sh->rep, sh->rep_len);
			sh->rep = NULL;
			return r;
		}
	}
	if (sh->method == BW_SHADOW_HYBRID) {
		size_t len;

		sh->hc_max = HC_BYTES / sh->hdr_n < HC_MAX ? HC_BYTES / sh->hdr_n
							   : HC_MAX;
		len = (size_t)sh->hc_max * sh->hdr_n;
		sh->hc_rq = calloc(sh->hc_max, sizeof(*sh->hc_rq));
		sh->hc = aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
		if (!sh->hc || !sh->hc_rq)
			return bwi_err(ENOMEM, "allocating a header cache");
		if ((r = sh->src->ops->reg(sh->src, sh->hc, len)) < 0) {
			free(sh->hc);
			sh->hc = NULL;
			return r;
		}
	}
	sh->window = o->window ? o->window : PF_START;
	sh->fixed_window = o->window != 0;
	if (sh->method == BW_SHADOW_COPYONCE) {
		sh->window = sh->rep_len;
		sh->fixed_window = true;
		sh->depth = CH_MAX;
	}
	if (sh->rep && sh->window > sh->rep_len)
		sh->window = sh->rep_len;
	return 0;
}

BW_API int bw_shadow_open(const char *where, int flags,
			  const struct bw_shadow_opts *opts,
			  struct bw_shadow **out)
{
	struct bw_shadow_opts o = BW_SHADOW_OPTS_INIT;
	bool remote;
	struct bws_src *src;
	int r;

	bwi_err_clear();
	if (!out || !where)
		return bwi_err(EINVAL, "bw_shadow_open: no name or out pointer");
	*out = NULL;
	if (flags & ~(BW_READ | BW_FROM_START | BW_NONBLOCK | BW_SHADOW_HEADERS |
		      BW_SHADOW_NODE))
		return bwi_err(EINVAL, "bw_shadow_open: unknown flags 0x%x", flags);
	if (opts) {
		if (opts->struct_size < offsetof(struct bw_shadow_opts, fabric) ||
		    opts->struct_size > sizeof(o))
			return bwi_err(EINVAL, "bw_shadow_opts.struct_size %u is not "
					       "one this library knows",
				       opts->struct_size);
		memcpy(&o, opts, opts->struct_size);
	}
	if ((r = opts_check(&o, flags)) < 0)
		return r;
	if (!o.latency_us && (r = env_latency(&o.latency_us)) < 0)
		return r;
	if (!o.method && getenv("BELTWAY_SHADOW") && *getenv("BELTWAY_SHADOW")) {
		if ((r = bw_shadow_method_parse(getenv("BELTWAY_SHADOW"))) < 0)
			return bwi_err(EINVAL, "BELTWAY_SHADOW='%s' is not a "
					       "shadow method (zero-copy, copy-once, "
					       "hybrid, prefetch)",
				       getenv("BELTWAY_SHADOW"));
		o.method = (uint32_t)r;
	}
	remote = strchr(where, '/') != NULL;
	r = remote ? bwf_shadow_src(where, o.fabric, &src)
		   : bws_local_open(where, &src);
	if (r < 0)
		return r;
	if (src->indices) {
		src->ops->close(src);
		return bwi_err(ENOTSUP, "'%s' is an IBuf: its bytes are indices "
					"into rings on its host, and a shadow "
					"reads bytes (read it with bw_stream_open "
					"there)",
			       where);
	}
	return bws_open(src, flags, &o, remote, out);
}

int bws_open(struct bws_src *src, int flags, const struct bw_shadow_opts *o,
	     bool remote, struct bw_shadow **out)
{
	struct bw_shadow *sh = calloc(1, sizeof(*sh));
	struct bws_src *lat;
	int r = 0;

	if (!sh) {
		src->ops->close(src);
		return bwi_err(ENOMEM, "allocating a shadow");
	}
	sh->tfd = -1;
	sh->pid = getpid();
	sh->flags = flags;
	sh->lat_us = o->latency_us;
	sh->src = src;
	if (sh->lat_us) {
		r = bws_latency_wrap(src, sh->lat_us, &lat);
		if (r < 0)
			src->ops->close(src);
		sh->src = r < 0 ? NULL : lat;
	}
	sh->cap = sh->src ? sh->src->capacity : 0;
	if (r < 0 || (r = setup(sh, o, remote)) < 0 || (r = win(sh)) < 0) {
		shadow_free(sh);
		return r;
	}
	sh->pos = (flags & BW_FROM_START) ? sh->w.oldest : sh->w.tail;
	rep_reset(sh, sh->pos);
	if (sh->src->rec.layout != BWI_LAYOUT_BYTES) {
		sh->rl = &sh->src->rec;
		sh->rl_unsure = (flags & BW_FROM_START) != 0;
		if (sh->rl_unsure && sh->rl->layout == BWI_LAYOUT_VR)
			sh->rl_scan = sh->rl->capacity;
		/* hybrid: an fr ring's headers are a slot apart */
		if (!sh->rec && sh->rl->layout == BWI_LAYOUT_FR)
			sh->rec = sh->rl->rec_size;
	}
	*out = sh;
	return 0;
}

/* ---- as a stream ------------------------------------------------------------ */

/* The handle's calls, after the checks every stream call makes. */
/* Every call on the handle: its entry checks (a handle inherited through
 * fork, an error recorded), then its shadow. Returns 0 or -errno. */
static int stream_shadow(struct bw_stream *s, struct bw_shadow **sh)
{
	int r = bwi_enter(s);

	*sh = s->shadow;
	/* bw_stream_set_nonblock() changes the handle's flags */
	(*sh)->flags = ((*sh)->flags & ~BW_NONBLOCK) | (s->flags & BW_NONBLOCK);
	return r;
}

static ssize_t st_read(struct bw_stream *s, void *buf, size_t n)
{
	struct bw_shadow *sh;
	int r = stream_shadow(s, &sh);

	return r < 0 ? r : bw_shadow_read(sh, buf, n);
}

static ssize_t st_peek(struct bw_stream *s, const void **ptr, size_t n,
		       bool move)
{
	struct bw_shadow *sh;
	int r = stream_shadow(s, &sh);

	return r < 0 ? r : peek(sh, ptr, n, move);
}

static int st_peek_complete(struct bw_stream *s, size_t n)
{
	struct bw_shadow *sh;
	int r = stream_shadow(s, &sh);

	return r < 0 ? r : bw_shadow_peek_complete(sh, n);
}

static int64_t st_check(struct bw_stream *s, int64_t stamp, int flags)
{
	struct bw_shadow *sh;
	int r = stream_shadow(s, &sh);

	if (r < 0)
		return r;
	if (flags != BW_CHECK_READ)
		return bwi_err(EINVAL, "a shadow only reads: BW_CHECK_READ");
	return bw_shadow_check(sh, stamp);
}

/* Readable without waiting: data held here, or a look at the origin says
 * there is some, or the end, or a loss or an error to report. */
static bool st_held(struct bw_stream *s)
{
	struct bw_shadow *sh;

	/* errors are for the read to report */
	return stream_shadow(s, &sh) < 0 || ready(sh) != 0;
}

static int st_stat(struct bw_stream *s, struct bw_stream_stat *st)
{
	struct bw_shadow_stat ss;

	bw_shadow_stat(s->shadow, &ss);
	st->capacity = ss.capacity;
	st->read_pos = ss.position;
	st->write_pos = s->shadow->w.tail;
	st->bytes = ss.bytes;
	st->calls = ss.calls;
	st->lost = ss.lost;
	st->padded = ss.padded;
	st->readers = st->writers = 0; /* the origin's are not seen here */
	st->waits = 0;
	return 0;
}

/* Nothing to publish, and nothing here holds the origin's space. */
static int st_flush(struct bw_stream *s)
{
	struct bw_shadow *sh;

	return stream_shadow(s, &sh);
}

static void st_detach(struct bw_stream *s)
{
	if (s->shadow)
		shadow_free(s->shadow);
	s->shadow = NULL;
}

static const struct bwi_ops shadow_ops = {
	.size = sizeof(struct bwi_ops),
	.name = "shadow",
	.detach = st_detach,
	.read = st_read,
	.peek = st_peek,
	.peek_complete = st_peek_complete,
	.flush = st_flush,
	.check = st_check,
	.held = st_held,
	.stat = st_stat,
};

BW_API int bw_shadow_stream(const char *where, int flags,
			    const struct bw_shadow_opts *opts,
			    struct bw_stream **out)
{
	struct bw_ring_opts ro = BW_RING_OPTS_INIT;
	struct bw_shadow *sh;
	struct bw_stream *s;
	struct bwi_map *m;
	int r;

	if (!out)
		return bwi_err(EINVAL, "bw_shadow_stream: no out pointer");
	*out = NULL;
	if ((flags & BW_WRITE) || !(flags & BW_READ))
		return bwi_err(EINVAL, "a shadow is a reader: open '%s' with "
				       "BW_READ only (remote writers: "
				       "bw_remote_open with BW_WRITE)",
			       where ? where : "");
	/* what a stream open may carry that means nothing to a shadow */
	flags &= ~(BW_NOWAIT | BW_LOW_LATENCY | BW_NOSPLICE);
	if ((r = bw_shadow_open(where, flags & ~BW_READ, opts, &sh)) < 0)
		return r;
	/* the handle's ring: a page, never written, for what the stream
	 * calls expect of every handle */
	ro.size = 4096;
	if ((r = bwi_stream_new(&s)) < 0) {
		shadow_free(sh);
		return r;
	}
	if ((r = bwi_map_anon(&ro, &m)) < 0) {
		free(s);
		shadow_free(sh);
		return r;
	}
	bwi_attach_shadow(s, m, flags, sh, &shadow_ops);
	*out = s;
	return 0;
}
