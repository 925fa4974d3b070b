/* SPDX-License-Identifier: MIT */
/*
 * Record layouts (thesis section 4.5.3): a layer over the DBuf that makes
 * each write one record and each read exactly one record.
 *
 * A record starts at a multiple of rec_align. Its header is one 64-bit
 * word: the payload length in the low 32 bits (BWI_REC_PAD set: a span of
 * that many bytes to skip) and a check word of the record's absolute
 * position in the high 32, so a header left by an older loop through the
 * ring, or garbage, never passes for the record at this position.
 *  - fr: fixed slots of rec_size bytes, header at the slot's start;
 *  - vr: the header inline before each record;
 *  - dr: headers in a separate ring in the segment (bwi_rec_hdrs), entry
 *    (p / rec_align) % rec_hdrs for the record at p. A record takes at
 *    least rec_align bytes of data, so the header ring wraps no faster than
 *    the data: an entry is overwritten only by a record whose data also
 *    overwrites this one's.
 * A record is written whole under one reservation of the ring and
 * published with it, so the tail is always at a record start: a reader at a
 * record start finds the next record whole below the tail. Headers come
 * from shared memory another process writes: every length is bounded by
 * the ring's largest record and by the bytes published before it is used.
 *
 * The payload of a record open for append is written into a reservation of
 * the largest record's size; closing it gives the rest back, or, when a
 * later writer has reserved behind it, fills the rest with a pad span.
 *
 * On a dynamic ring the layer below is the dynamic layer: the bytes live in
 * its containers, a record never in two (a pad span fills the rest of a
 * container a record does not fit in), and the writer reserves every
 * record as one opened for append, so the containers are made once there
 * is room (bwi_dyn_rec_reserve).
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "bwi_stream.h"

#define REC_PAD (UINT32_C(1) << 31)
#define REC_MAGIC UINT32_C(0x5245434b) /* "RECK" */

enum {
	BWI_REC_W_NONE = 0,
	BWI_REC_W_APPEND = 1, /* open for append */
	BWI_REC_W_DROP = 4,   /* open for append, dropped by the policy */
	BWI_REC_W_POKE = 2,   /* poked: published at the next call */
	BWI_REC_W_ACQ = 3,    /* poke_acquire: until poke_complete */
};

static inline uint32_t chk(uint64_t p)
{
	return (uint32_t)(p ^ (p >> 32)) ^ REC_MAGIC;
}

static inline uint64_t hdr_make(uint64_t p, uint32_t len)
{
	return (uint64_t)chk(p) << 32 | len;
}

uint64_t bwi_rec_hdr_word(uint64_t p, uint32_t len)
{
	return hdr_make(p, len);
}

const char *bwi_rec_hdr(const struct bwi_geom *g, uint64_t p, uint64_t v,
			uint32_t *len, uint64_t *foot)
{
	uint32_t l = (uint32_t)v;

	if ((uint32_t)(v >> 32) != chk(p))
		return "bad check word";
	if (l & REC_PAD) {
		*len = 0;
		*foot = l & ~REC_PAD;
		return !*foot || *foot % g->rec_align ? "bad pad" : NULL;
	}
	if (!l || l > bwi_rec_max(g))
		return "bad length";
	*len = l;
	*foot = bwi_rec_foot(g, l);
	return NULL;
}

static inline bool dyn(const struct bw_stream *s)
{
	return s->m->g.flags & BW_RING_DYNAMIC;
}

/* Where the writer's position p lies: in the DBuf's data (mapped twice, so
 * a record there is contiguous across the wrap), or in a container. */
static inline uint8_t *w_at(struct bw_stream *s, uint64_t p)
{
	return dyn(s) ? bwi_dyn_wat(s, p) : s->data + (p & s->mask);
}

/* Where the read position lies; NULL (error set) when nothing holds it. */
static inline const uint8_t *r_at(struct bw_stream *s)
{
	return dyn(s) ? bwi_dyn_rat(s) : s->data + (s->rpos & s->mask);
}

static inline bwi_a64 *dr_entry(const struct bwi_map *m, uint64_t p)
{
	return &bwi_rec_hdrs(m)[(p / m->g.rec_align) & (m->g.rec_hdrs - 1)];
}

static inline uint64_t dr_get(const struct bw_stream *s, uint64_t p)
{
	return bw_load_relaxed(dr_entry(s->m, p));
}

/* Inline headers are 8-aligned words in the ring; validating readers may
 * load them while a writer stores: both sides use relaxed atomics. */
static inline void hdr_put(struct bw_stream *s, uint64_t p, uint32_t len)
{
	uint64_t v = hdr_make(p, len);

	if (s->m->g.layout == BWI_LAYOUT_DR)
		bw_store_relaxed(dr_entry(s->m, p), v);
	else
		__atomic_store_n((uint64_t *)(void *)w_at(s, p), v,
				 __ATOMIC_RELAXED);
}

/* The header of the record at position p, which lies at q. */
static inline uint64_t hdr_get(const struct bw_stream *s, uint64_t p,
			       const uint8_t *q)
{
	if (s->m->g.layout == BWI_LAYOUT_DR)
		return dr_get(s, p);
	return __atomic_load_n((const uint64_t *)(const void *)q,
			       __ATOMIC_RELAXED);
}


static inline uint64_t align_up(uint64_t p, uint64_t a)
{
	return (p + a - 1) & ~(a - 1);
}

/* ---- writing ---------------------------------------------------------------- */

/* Publishes the writer's open record with len payload bytes (0: none). */
static int w_close(struct bw_stream *s, uint32_t len)
{
	const struct bwi_geom *g = &s->m->g;
	uint64_t pad = s->rec_wpad, p = s->acq_start + pad;
	uint64_t all = s->acq_len - pad;
	uint64_t foot = len ? bwi_rec_foot(g, len) : 0;
	int r;

	s->rec_w = BWI_REC_W_NONE;
	if (len)
		hdr_put(s, p, len);
	/* the pad before the record goes with it, or back with it */
	r = bwi_d_poke_complete(s, len ? pad + foot : 0);
	if (r == -EBUSY) {
		/* a later reservation follows ours: the rest is a pad span */
		hdr_put(s, p + foot, REC_PAD | (uint32_t)(all - foot));
		r = bwi_d_poke_complete(s, pad + all);
	}
	if (r == 0 && len)
		bwi_count_call(&s->iwst, len);
	return r;
}

/* Every call starts here: a poked record is published. */
static int rec_enter(struct bw_stream *s)
{
	if (s && s->rec_w == BWI_REC_W_POKE)
		return w_close(s, s->rec_wlen);
	return 0;
}

/* Entry of write, poke and flush: they close a record open for append. */
static int w_enter(struct bw_stream *s)
{
	int r = rec_enter(s);

	if (r == 0 && s && s->rec_w == BWI_REC_W_APPEND)
		r = w_close(s, s->rec_wlen);
	if (r == 0 && s && s->rec_w == BWI_REC_W_DROP)
		s->rec_w = BWI_REC_W_NONE; /* nothing was reserved */
	return r;
}

static int too_big(const struct bw_stream *s, uint64_t n)
{
	return bwi_err(EMSGSIZE, "a record of %llu bytes exceeds the ring's "
				 "largest, %llu (layout %s)",
		       (unsigned long long)n,
		       (unsigned long long)bwi_rec_max(&s->m->g),
		       bw_layout_name(s->m->g.layout));
}

/* Nothing to do before a call: no open record, no poke, no error, and the
 * handle still valid in this process (enter_slow's checks, which bit
 * BWI_SLOW_LAYER alone never needs). */
static inline bool plain(const struct bw_stream *s)
{
	return s && s->rec_w == BWI_REC_W_NONE && s->slow == BWI_SLOW_LAYER;
}

/* Opens a record of up to n payload bytes: a reservation of its footprint
 * (after a pad on a dynamic ring: see the top). *ptr: where its payload
 * goes. */
static int w_open(struct bw_stream *s, uint64_t n, uint8_t **ptr)
{
	const struct bwi_geom *g = &s->m->g;
	uint64_t foot = bwi_rec_foot(g, n), pad = 0;
	void *q;
	ssize_t r = dyn(s) ? bwi_dyn_rec_reserve(s, foot, &pad)
			   : bwi_d_poke(s, &q, foot, true);

	if (r < 0)
		return (int)r;
	s->rec_wpad = (uint32_t)pad;
	if (pad)
		hdr_put(s, s->acq_start, REC_PAD | (uint32_t)pad);
	*ptr = w_at(s, s->acq_start + pad) + bwi_rec_hoff(g);
	s->rec_wlen = 0;
	return 0;
}

/* One record written whole as one opened for append (dynamic rings). */
static ssize_t w_whole(struct bw_stream *s, const void *buf, size_t n)
{
	uint8_t *q;
	int r = w_open(s, n, &q);

	if (r == -ENOBUFS)
		return (ssize_t)n; /* dropped by the policy, and counted */
	if (r < 0)
		return r;
	bwi_copy(q, buf, n);
	r = w_close(s, (uint32_t)n);
	return r < 0 ? r : (ssize_t)n;
}

static ssize_t rec_write(struct bw_stream *s, const void *buf, size_t n)
{
	const struct bwi_geom *g;
	uint64_t p, foot;
	int r;

	if (__builtin_expect(!plain(s) || !s->writer || s->acq, 0)) {
		r = w_enter(s);
		if (r == 0)
			r = bwi_need_writer(s);
		if (r < 0)
			return r;
	}
	if (n == 0)
		return 0; /* records are never empty: 0 reads as the end */
	if (!buf)
		return bwi_err(EFAULT, "write buffer is NULL");
	g = &s->m->g;
	if (n > bwi_rec_max(g))
		return too_big(s, n);
	if (dyn(s))
		return w_whole(s, buf, n);
	foot = bwi_rec_foot(g, n);
	r = bwi_rec_reserve(s, foot, &p);
	if (r == -ENOBUFS)
		return (ssize_t)n; /* dropped by the policy, and counted */
	if (r < 0)
		return r;
	hdr_put(s, p, (uint32_t)n);
	bwi_copy(w_at(s, p + bwi_rec_hoff(g)), buf, n);
	r = bwi_rec_publish(s, p, foot);
	if (r < 0)
		return r;
	bwi_count_call(&s->iwst, n);
	return (ssize_t)n;
}

static ssize_t rec_poke(struct bw_stream *s, void **ptr, size_t n, bool acq)
{
	uint8_t *q;
	int r = w_enter(s);

	if (r == 0)
		r = bwi_need_writer(s);
	if (r < 0)
		return r;
	if (!ptr)
		return bwi_err(EFAULT, "poke pointer is NULL");
	if (n == 0)
		return bwi_err(EINVAL, "a record poke reserves at least 1 byte");
	if (n > bwi_rec_max(&s->m->g))
		return too_big(s, n);
	r = w_open(s, n, &q);
	if (r < 0)
		return r;
	s->rec_w = acq ? BWI_REC_W_ACQ : BWI_REC_W_POKE;
	s->rec_wlen = (uint32_t)n;
	*ptr = q;
	return (ssize_t)n;
}

static int rec_poke_complete(struct bw_stream *s, size_t n)
{
	int r = rec_enter(s);

	if (r < 0)
		return r;
	if (s->rec_w != BWI_REC_W_ACQ)
		return bwi_err(EINVAL, "no poke_acquire is outstanding");
	if (n > s->rec_wlen)
		return bwi_err(EINVAL, "poke_complete of %zu bytes, but the "
				       "record reserved %u",
			       n, s->rec_wlen);
	return w_close(s, (uint32_t)n);
}

static ssize_t rec_append(struct bw_stream *s, const void *buf, size_t n)
{
	const struct bwi_geom *g;
	uint8_t *q;
	int r = rec_enter(s);

	if (r < 0)
		return r;
	if (n && !buf)
		return bwi_err(EFAULT, "append buffer is NULL");
	if (s->rec_w != BWI_REC_W_APPEND && s->rec_w != BWI_REC_W_DROP) {
		r = bwi_need_writer(s);
		if (r < 0)
			return r;
		r = w_open(s, bwi_rec_max(&s->m->g), &q);
		/* SRP and MRP with the readers a ring behind: the whole
		 * record is dropped (counted once, as a write), each piece
		 * swallowed as a write's would be */
		if (r == -ENOBUFS) {
			s->rec_w = BWI_REC_W_DROP;
			s->rec_wlen = 0;
		} else if (r < 0) {
			return r;
		} else {
			s->rec_w = BWI_REC_W_APPEND;
		}
	}
	g = &s->m->g;
	if (n > bwi_rec_max(g) - s->rec_wlen)
		return bwi_err(EMSGSIZE, "appending %zu bytes to an open record "
					 "of %u would exceed the ring's largest "
					 "record, %llu",
			       n, s->rec_wlen, (unsigned long long)bwi_rec_max(g));
	if (s->rec_w == BWI_REC_W_DROP) {
		s->rec_wlen += (uint32_t)n;
		return (ssize_t)n;
	}
	memcpy(w_at(s, s->acq_start + s->rec_wpad + bwi_rec_hoff(g) +
			       s->rec_wlen),
	       buf, n);
	s->rec_wlen += (uint32_t)n;
	return (ssize_t)n;
}

static int rec_flush(struct bw_stream *s)
{
	int r = w_enter(s);

	return r < 0 ? r : bwi_d_flush(s);
}

/* ---- reading ---------------------------------------------------------------- */

/* Whether the headers from p on chain, each valid, to exactly t: the tail,
 * or on a dynamic ring the end of the container that holds p, where a
 * record starts again. Position q lies at base + (q & mask): the DBuf's
 * data, or that container. Then p is a record start. Payload bytes or a
 * header of an older loop fail the check word of their position. At most
 * *budget headers are loaded. */
static bool vr_chain(const struct bw_stream *s, const uint8_t *base,
		     uint64_t mask, uint64_t p, uint64_t t, uint64_t *budget)
{
	while (p < t) {
		uint64_t f;
		uint32_t len;

		if (!*budget)
			return false;
		(*budget)--;
		if (bwi_rec_hdr(&s->m->g, p,
				hdr_get(s, p, base + (p & mask)), &len, &f) ||
		    f > t - p)
			return false;
		p += f;
	}
	return true;
}

/* The first record start at or after from, or the tail t (one too): fr,
 * the next slot; dr, the first header entry that names its own position (a
 * stale one names a position a loop or more older). vr: the tail after an
 * overwrite (scan false: no header can be trusted in old data, as the
 * thesis says); else the first position whose headers chain to the tail,
 * on a dynamic ring to the end of its container (no record lies in two,
 * and a container starts with one), or else the next container. */
static uint64_t first_start(struct bw_stream *s, uint64_t from, uint64_t t,
			    bool scan)
{
	const struct bwi_geom *g = &s->m->g;
	const uint8_t *base = s->data;
	uint64_t p, budget, end = t, mask = s->mask;

	switch (g->layout) {
	case BWI_LAYOUT_FR:
		p = align_up(from, g->rec_size);
		return p < t ? p : t;
	case BWI_LAYOUT_DR:
		for (p = align_up(from, g->rec_align); p < t; p += g->rec_align)
			if ((uint32_t)(dr_get(s, p) >> 32) == chk(p))
				return p;
		return t;
	default: /* vr */
		if (!scan)
			return t;
		if (dyn(s)) {
			end = align_up(from + 1, bwi_dyn_box(s->m));
			if (end > t)
				end = t;
			if (!(base = bwi_dyn_box_of(s, from)))
				return end;
			mask = bwi_dyn_box(s->m) - 1;
		}
		p = align_up(from, g->rec_align);
		budget = 4 * ((end - from) / g->rec_align) + 64;
		for (; p < end && budget; p += g->rec_align)
			if (vr_chain(s, base, mask, p, end, &budget))
				return p;
		return end;
	}
}

/* After the reader was overtaken (it stands at or below the oldest byte
 * held): moves it to the next record start it can trust, counts what lay
 * between as lost, and says so once. */
static int resync(struct bw_stream *s)
{
	const struct bwi_geom *g = &s->m->g;
	uint64_t o = bwi_oldest_held(s->m), from = s->rpos > o ? s->rpos : o;
	uint64_t t = bw_load_acquire(&s->hdr->prod.tail);
	uint64_t to = first_start(s, from, t, false), told = s->ist.lost;

	bwi_rd_lost(s, to);
	s->rec_rfoot = 0;
	/* all lost since the last report: the DBuf may have moved the read
	 * position to the oldest byte held before this */
	s->ist.lost = s->rst.lost;
	return bwi_err(ESTALE, "reader was overtaken: %llu bytes of records "
			       "lost; resuming at the record at %llu (%s)",
		       (unsigned long long)(s->ist.lost - told),
		       (unsigned long long)to, bw_layout_name(g->layout));
}

static int corrupt(const struct bw_stream *s, const char *what)
{
	return bwi_err(EBADMSG, "record header at position %llu: %s "
				"(corrupted ring)",
		       (unsigned long long)s->rpos, what);
}

/* The record at the read position: returns its length (>= 1) with *pl at
 * its payload and *foot its footprint; 0 at end of stream, or -errno. Pad
 * spans are skipped. */
static int64_t rec_next(struct bw_stream *s, const uint8_t **pl,
			uint64_t *foot)
{
	const struct bwi_geom *g = &s->m->g;
	uint64_t a_need = g->layout == BWI_LAYOUT_DR ? 1 : 8;

	for (;;) {
		const uint8_t *ptr;
		int64_t a = bwi_rd_acquire(s, a_need, &ptr);
		const char *why;
		uint64_t v, f;
		uint32_t len;

		if (a == -ESTALE)
			return resync(s);
		if (a <= 0)
			return a;
		ptr = r_at(s); /* the same on the DBuf; in a container */
		if (!ptr)
			return -EIO;
		v = hdr_get(s, s->rpos, ptr);
		why = bwi_rec_hdr(g, s->rpos, v, &len, &f);
		if (!why && f > (uint64_t)a)
			why = len ? "bad length" : "bad pad";
		if (why)
			return bwi_rd_held(s) ? corrupt(s, why) : resync(s);
		if (!len) {
			/* a pad; a validating reader trusts no header it has
			 * not seen held */
			if (!bwi_rd_held(s))
				return resync(s);
			if (s->rec_pad_to != s->rpos)
				s->rec_pad_from = s->rpos;
			bwi_rd_move(s, f, true);
			s->rec_pad_to = s->rpos;
			continue;
		}
		*pl = ptr + bwi_rec_hoff(g);
		*foot = f;
		return len;
	}
}

static int r_enter(struct bw_stream *s)
{
	int r = rec_enter(s);

	if (r == 0)
		r = bwi_need_reader(s);
	if (r == 0)
		s->rec_rfoot = 0; /* a new call drops an acquisition */
	return r;
}

static int short_buf(int64_t len, size_t n)
{
	return bwi_err(EMSGSIZE, "the next record has %lld bytes; the call "
				 "takes at most %zu",
		       (long long)len, n);
}

/* The common read: a registered reader that needs no validation, a whole
 * record known to be below the tail, a buffer it fits. */
static inline int64_t rd_quick(struct bw_stream *s, void *buf, size_t n)
{
	const struct bwi_geom *g = &s->m->g;
	uint64_t v, f, a = s->tail_seen - s->rpos;
	const uint8_t *q;
	uint32_t len;

	if (s->rec_w || !buf || !bwi_rd_fast(s, 8, BWI_SLOW_LAYER) ||
	    s->rec_rfoot || !(q = r_at(s)))
		return -1;
	v = hdr_get(s, s->rpos, q);
	len = (uint32_t)v;
	if ((uint32_t)(v >> 32) != chk(s->rpos) || !len ||
	    len > bwi_rec_max(g) || len > n)
		return -1; /* pads, errors: the slow path says */
	f = bwi_rec_foot(g, len);
	if (f > a)
		return -1;
	bwi_copy(buf, q + bwi_rec_hoff(g), len);
	bwi_rd_move(s, f, true);
	bwi_count_call(&s->ist, len);
	return len;
}

static ssize_t rec_read(struct bw_stream *s, void *buf, size_t n)
{
	const uint8_t *pl;
	uint64_t foot;
	int64_t len = rd_quick(s, buf, n);
	int r;

	if (__builtin_expect(len > 0, 1))
		return len;
	r = r_enter(s);
	if (r < 0)
		return r;
	if (!buf)
		return bwi_err(EFAULT, "read buffer is NULL");
	len = rec_next(s, &pl, &foot);
	if (len <= 0)
		return len;
	if ((uint64_t)len > n)
		return short_buf(len, n);
	bwi_rd_copy(s, buf, pl, (size_t)len);
	if (!bwi_rd_held(s))
		return resync(s);
	bwi_rd_move(s, foot, true);
	bwi_count_call(&s->ist, (uint64_t)len);
	return len;
}

static ssize_t rec_peek(struct bw_stream *s, const void **ptr, size_t n,
			bool move)
{
	const uint8_t *pl;
	uint64_t foot;
	int64_t len;
	int r = r_enter(s);

	if (r < 0)
		return r;
	if (!ptr)
		return bwi_err(EFAULT, "peek pointer is NULL");
	if (move)
		bwi_rd_release(s); /* the previous peek's record */
	len = rec_next(s, &pl, &foot);
	if (len <= 0)
		return len;
	if ((uint64_t)len > n)
		return short_buf(len, n);
	if (!bwi_rd_held(s))
		return resync(s); /* the header was overwritten as we read it */
	*ptr = pl;
	if (move) {
		bwi_rd_move(s, foot, false);
		bwi_count_call(&s->ist, (uint64_t)len);
	} else {
		s->rec_rfoot = foot;
		s->rec_rlen = (uint32_t)len;
	}
	return len;
}

static int rec_peek_complete(struct bw_stream *s, size_t n)
{
	uint64_t foot = s ? s->rec_rfoot : 0;
	uint32_t len = s ? s->rec_rlen : 0;
	int r = r_enter(s); /* drops the acquisition: taken above */

	if (r < 0)
		return r;
	if (n == 0)
		return 0;
	if (!foot || n != len)
		return bwi_err(EINVAL, "peek_complete of %zu bytes: a record "
				       "ring completes 0 or the whole record "
				       "acquired (%u bytes)",
			       n, foot ? len : 0);
	bwi_rd_move(s, foot, true);
	bwi_count_call(&s->ist, len);
	return 0;
}

/* The layer below seeks: the DBuf, or the dynamic layer, which keeps a
 * reader from seeking back to a freed container. */
static int64_t lower_lseek(struct bw_stream *s, int64_t off, int whence)
{
	return BWI_OP(s->lower, lseek)(s, off, whence);
}

/* Seeks to a record start only: any slot of fr, a start the header ring
 * names on dr, the write position on vr. */
static int64_t rec_lseek(struct bw_stream *s, int64_t off, int whence)
{
	const struct bwi_geom *g;
	uint64_t base, p, t;
	int r = r_enter(s);

	if (r < 0 && r != -EBADF)
		return r;
	if (r == -EBADF || (off == 0 && whence == SEEK_CUR))
		return lower_lseek(s, off, whence); /* writers; no move */
	g = &s->m->g;
	t = bw_load_acquire(&s->hdr->prod.tail);
	if (g->layout == BWI_LAYOUT_VR) {
		if (off != 0 || whence != SEEK_END)
			return bwi_err(EINVAL, "a vr ring seeks only to the "
					       "write position (SEEK_END, 0): "
					       "records have no index");
		return lower_lseek(s, 0, SEEK_END);
	}
	base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? s->rpos : t;
	if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END)
		return lower_lseek(s, off, whence); /* its error */
	p = base + (uint64_t)off;
	if ((off < 0 && (uint64_t)(-(off + 1)) + 1 > base) ||
	    (off > 0 && (uint64_t)off > t - base) || p > t)
		return lower_lseek(s, off, whence); /* its range error */
	if (p < bwi_oldest_held(s->m)) /* overwritten: its ESTALE */
		return lower_lseek(s, (int64_t)p, SEEK_SET);
	if (p != t && (p % g->rec_align ||
		       (g->layout == BWI_LAYOUT_FR && p % g->rec_size) ||
		       (g->layout == BWI_LAYOUT_DR &&
			(uint32_t)(dr_get(s, p) >> 32) != chk(p))))
		return bwi_err(EINVAL, "position %llu is not the start of a "
				       "record",
			       (unsigned long long)p);
	return lower_lseek(s, (int64_t)p, SEEK_SET);
}

/* A read stamp inside pad spans the reader skipped stands for their end:
 * they hold no data, and their space went back as they were skipped (as
 * the DBuf's pad_stamp does for its padding). */
static int64_t rec_check(struct bw_stream *s, int64_t stamp, int flags)
{
	int r = rec_enter(s);

	if (r < 0)
		return r;
	if (flags == BW_CHECK_READ && stamp >= 0 &&
	    (uint64_t)stamp >= s->rec_pad_from &&
	    (uint64_t)stamp < s->rec_pad_to)
		stamp = (int64_t)s->rec_pad_to;
	return bwi_d_check(s, stamp, flags);
}

/* A reader placed at the oldest byte held (from the start; a tap following
 * a self-scaling ring into a region it fell behind) may stand inside a
 * record of a ring that wrapped: it moves on to the first record start.
 * Writers may overwrite that too meanwhile: it looks again from what is
 * held then, and after a few tries starts at the write position. */
static int rec_attach(struct bw_stream *s)
{
	int64_t r = BWI_OP(s->lower, attach)(s);

	for (int tries = 0; r >= 0 && (s->reader || s->tap); tries++) {
		uint64_t t = bw_load_acquire(&s->hdr->prod.tail);
		uint64_t o = bwi_oldest_held(s->m);
		uint64_t from = s->rpos > o ? s->rpos : o;
		uint64_t p = s->rpos < t ? first_start(s, from, t, true) : s->rpos;

		if (p == s->rpos)
			return 0;
		r = tries < 4 ? lower_lseek(s, (int64_t)p, SEEK_SET)
			      : lower_lseek(s, 0, SEEK_END);
		if (r == -ESTALE)
			r = 0; /* overwritten meanwhile: again */
		else if (r >= 0)
			return 0;
	}
	return r < 0 ? (int)r : 0;
}

static void rec_detach(struct bw_stream *s)
{
	if (s->rec_w == BWI_REC_W_POKE || s->rec_w == BWI_REC_W_APPEND)
		w_close(s, s->rec_wlen);
	s->rec_w = BWI_REC_W_NONE;
}

/* Block and select: a poked record is published first, as any call on a
 * byte ring publishes its poke (an open append record stays open). */
static struct bw_stream *rec_wait_on(struct bw_stream *s, int events)
{
	(void)events;
	rec_enter(s);
	return s;
}

/* The record layer: fr, vr and dr rings. */
const struct bwi_ops bwi_rec_ops = {
	.size = sizeof(struct bwi_ops),
	.name = "record",
	.attach = rec_attach,
	.detach = rec_detach,
	.read = rec_read,
	.peek = rec_peek,
	.peek_complete = rec_peek_complete,
	.write = rec_write,
	.poke = rec_poke,
	.poke_complete = rec_poke_complete,
	.append = rec_append,
	.flush = rec_flush,
	.check = rec_check,
	.lseek = rec_lseek,
	.wait_on = rec_wait_on,
};
