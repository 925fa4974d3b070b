/* SPDX-License-Identifier: MIT */
/*
 * IBufs: rings of rich indices behind the same stream API as DBufs (thesis
 * section 4.3).
 *
 * An IBuf's own ring holds 16-byte records, each a struct bw_index; every
 * record is written and read whole through the DBuf implementation
 * (bwi_d_*), so positions, waiting, EOF, EPIPE, taps and fork work as for
 * any ring. On top:
 *
 * - write: a source span that lies in a ring this process maps is spliced:
 *   only its index is stored. Anything else is written through into the
 *   IBuf's default DBuf (<name>.wt, or an anonymous one for pipes), and the
 *   index of the copy is stored.
 * - read and peek: the next record is acquired (it stays in the IBuf until
 *   its block is consumed), resolved, and read through into the DBuf it
 *   names. A block overwritten before or while it is read is reported once
 *   as -ESTALE and skipped, never served.
 * - Each IBuf reader is also a registered reader of the default DBuf, moved
 *   past each written-through block as it consumes it: so the IBuf's writers
 *   never overwrite a written-through block an IBuf reader has still to read
 *   (lossless, as for DBufs). Spliced blocks live in other rings, whose own
 *   readers govern them.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwi_index.h"
#include "bwi_stream.h"

#define REC ((size_t)sizeof(struct bw_index))

/* A handle on the default DBuf, owned by the IBuf handle s. */
static int sub_open(struct bw_stream *s, int flags, struct bw_stream **out)
{
	struct bw_stream *h;
	int r = bwi_stream_new(&h);

	if (r < 0)
		return r;
	bwi_map_get(s->wt);
	r = bwi_attach(h, s->wt, flags | BW_NOWAIT | BWI_NO_PEER_WAIT);
	if (r < 0) {
		bwi_map_put(s->wt);
		bwi_stream_free(h);
		return r;
	}
	*out = h;
	return 0;
}

int bwi_i_attach(struct bw_stream *s)
{
	char name[BWI_NAME_MAX + 8];
	const char *kind;

	if (!s->wt) {
		snprintf(name, sizeof(name), "%s.wt", s->m->name);
		int r = bwi_map_open(name, BWI_ACC_ANY, &s->wt);

		if (r < 0)
			return bwi_err(-r, "IBuf '%s': its default DBuf '%s': %s",
				       s->m->name, name, bw_strerror_last());
		/* an index names bytes of a flat byte ring: any other kind
		 * would be read wrong, or out of its mapping */
		kind = s->wt->g.scale ? "a self-scaling ring"
		       : (s->wt->g.flags & BW_RING_DYNAMIC) ? "a dynamic ring"
		       : s->wt->g.layout == BWI_LAYOUT_INDEX ? "an IBuf"
		       : s->wt->g.layout != BWI_LAYOUT_BYTES ? "a record ring"
							      : NULL;
		if (kind) {
			bwi_map_put(s->wt);
			s->wt = NULL;
			return bwi_err(EBADMSG, "IBuf '%s': its default DBuf "
						"'%s' is %s, not a byte ring",
				       s->m->name, name, kind);
		}
	}
	/* Written-through blocks wait for this reader: it attaches to the
	 * default DBuf now, so nothing written from here on is lost to it. */
	if (s->reader || s->tap)
		return sub_open(s, BW_READ, &s->wtr);
	return 0;
}

void bwi_i_detach(struct bw_stream *s)
{
	if (s->ipoke && !s->ipoke_acq)
		bwi_i_flush(s);
	if (s->wtw)
		bw_stream_close(s->wtw);
	if (s->wtr)
		bw_stream_close(s->wtr);
	s->wtw = s->wtr = NULL;
	bwi_map_put(s->wt);
	s->wt = NULL;
}

/* The handle on the default DBuf for writing through, made on first need,
 * in the IBuf's blocking mode. */
static int wt_writer(struct bw_stream *s, struct bw_stream **w)
{
	int r;

	if (!s->wtw) {
		r = sub_open(s, BW_WRITE, &s->wtw);
		if (r < 0)
			return r;
	}
	s->wtw->flags = (s->wtw->flags & ~BW_NONBLOCK) | (s->flags & BW_NONBLOCK);
	*w = s->wtw;
	return 0;
}

/* Stores one index record in the IBuf's ring. */
static int put_index(struct bw_stream *s, const struct bw_index *idx)
{
	return bwi_rec_write(s, idx, REC);
}

/* Publishes a poke into the default DBuf and stores its index. */
static int publish_poke(struct bw_stream *s, uint64_t n)
{
	struct bw_index idx;
	int64_t end;
	int r;

	s->ipoke = false;
	r = bw_stream_poke_complete(s->wtw, n);
	if (r < 0 || n == 0)
		return r;
	end = bw_stream_check(s->wtw, -1, BW_CHECK_WRITE);
	if (end < 0)
		return (int)end;
	r = bwi_index_make(s->wt, (uint64_t)end - n, n, 0, &idx);
	if (r == 0)
		r = put_index(s, &idx);
	if (r == 0)
		s->iwst.copied += n;
	return r;
}

/* Every IBuf call starts here: the previous call's poke is published. */
static int ibuf_enter(struct bw_stream *s)
{
	if (s->ipoke && !s->ipoke_acq)
		return publish_poke(s, s->ipoke_len);
	return 0;
}

/* ---- reading ---------------------------------------------------------------- */

/* The full position of a resolved index in map m. */
static uint64_t full_pos(const struct bwi_map *m, const struct bw_index *idx)
{
	uint64_t t = bw_load_acquire(&m->hdr->prod.tail);
	uint64_t p = (t & ~BW_INDEX_POS_MASK) | bw_index_pos48(idx);

	return p > t ? p - (UINT64_C(1) << BW_INDEX_POS_BITS) : p;
}

/* A written-through block is done: this reader lets the default DBuf
 * reuse its space. */
static void block_done(struct bw_stream *s, const struct bw_index *idx)
{
	struct bwi_map *wt = s->wt;

	if (s->wtr && wt->reg_id && bw_index_dbuf(idx) == wt->reg_id &&
	    bw_index_gen(idx) == wt->reg_gen) {
		uint64_t end = full_pos(wt, idx) + bw_index_len(idx);

		if ((int64_t)end > bw_stream_lseek(s->wtr, 0, SEEK_CUR))
			bw_stream_lseek(s->wtr, (int64_t)end, SEEK_SET);
	}
}

/* The current block is done: its record leaves the IBuf ring, and so does
 * the block (unless a peek handed it out: then at the next call). */
static int consume(struct bw_stream *s, bool now)
{
	s->icur_valid = false;
	if (now)
		block_done(s, &s->icur);
	else
		s->idone = true;
	return bwi_d_peek_complete(s, REC);
}

/* The block a previous peek finished is given back. */
static void release_peeked(struct bw_stream *s)
{
	if (s->idone) {
		s->idone = false;
		block_done(s, &s->idone_idx);
	}
}

/* Makes icur the next index, waiting as read does. Returns 1, 0 at the end
 * of the stream, or -errno. */
static int next_index(struct bw_stream *s)
{
	const void *p;
	ssize_t n;

	release_peeked(s);
	if (s->icur_valid)
		return 1;
	n = bwi_d_peek(s, &p, REC, false);
	if (n <= 0)
		return (int)n;
	if ((size_t)n < REC)
		return bwi_err(EBADMSG, "IBuf holds a partial index record: "
					"corrupted ring");
	memcpy(&s->icur, p, REC);
	s->icur_off = 0;
	s->icur_valid = true;
	return 1;
}

/* The current block could not be read (err < 0): count it lost, drop it,
 * and say so once. */
static int drop_current(struct bw_stream *s, int err)
{
	uint64_t left = bw_index_len(&s->icur) - s->icur_off;
	int r;

	s->ist.lost += left;
	r = consume(s, true);
	return r < 0 ? r : err;
}

/* Resolves the current block. Returns its length, or -errno. */
static ssize_t current(struct bw_stream *s, const void **p)
{
	ssize_t len = bw_index_resolve(&s->icur, p);

	if (len == -EAGAIN)
		return len;
	if (len < 0)
		return drop_current(s, (int)len);
	if ((uint64_t)len <= s->icur_off)
		return drop_current(s, bwi_err(EBADMSG, "index record changed "
							"under the reader"));
	return len;
}

/* The next bytes of the current block, at most n, waiting for a block as
 * read does: *at points at them. Returns their count, 0 at the end of the
 * stream, or -errno. */
static ssize_t next_span(struct bw_stream *s, size_t n, const uint8_t **at)
{
	const void *p;
	ssize_t len;
	size_t k;
	int r = next_index(s);

	if (r <= 0)
		return r;
	len = current(s, &p);
	if (len < 0)
		return len;
	k = (size_t)len - (size_t)s->icur_off;
	*at = (const uint8_t *)p + s->icur_off;
	return (ssize_t)(k < n ? k : n);
}

ssize_t bwi_i_read(struct bw_stream *s, void *buf, size_t n)
{
	const uint8_t *at;
	ssize_t k;
	int r;

	r = ibuf_enter(s);
	if (r < 0)
		return r;
	if (n == 0)
		return 0;
	if (!buf)
		return bwi_err(EFAULT, "read buffer is NULL");
	k = next_span(s, n, &at);
	if (k <= 0)
		return k;
	memcpy(buf, at, (size_t)k);
	/* Overwritten while we copied: the copy is not served. */
	r = bw_index_check(&s->icur);
	if (r < 0)
		return drop_current(s, r);
	if (k >= BWI_SPLICE_MIN) {
		struct bw_index sub = s->icur;

		sub.w0 = (sub.w0 & ~BW_INDEX_POS_MASK) |
			 ((sub.w0 + s->icur_off) & BW_INDEX_POS_MASK);
		sub.w1 = (sub.w1 & ~UINT64_C(0xffffffff)) | (uint64_t)k;
		bwi_note_read_index(buf, (size_t)k, &sub);
	}
	s->icur_off += (uint64_t)k;
	s->ist.bytes += (uint64_t)k;
	s->ist.calls++;
	if (s->icur_off == bw_index_len(&s->icur)) {
		r = consume(s, true);
		if (r < 0)
			return r;
	}
	return k;
}

ssize_t bwi_i_peek(struct bw_stream *s, const void **ptr, size_t n, bool move)
{
	const uint8_t *at;
	ssize_t k;
	int r;

	r = ibuf_enter(s);
	if (r < 0)
		return r;
	if (!ptr)
		return bwi_err(EFAULT, "peek pointer is NULL");
	k = next_span(s, n, &at);
	if (k <= 0)
		return k;
	*ptr = at;
	s->iacq = (uint64_t)k;
	if (move) {
		s->icur_off += (uint64_t)k;
		s->iacq = 0;
		s->ist.bytes += (uint64_t)k;
		s->ist.calls++;
		/* the record goes now; the block stays ours until the next
		 * call, as a DBuf's peek span does */
		if (s->icur_off == bw_index_len(&s->icur)) {
			s->idone_idx = s->icur;
			r = consume(s, false);
			if (r < 0)
				return r;
		}
	}
	return k;
}

int bwi_i_peek_complete(struct bw_stream *s, size_t n)
{
	int r = ibuf_enter(s);

	if (r < 0)
		return r;
	if (!s->icur_valid || n > s->iacq)
		return bwi_err(EINVAL, "peek_complete of %zu bytes, but only "
				       "%llu were acquired",
			       n, (unsigned long long)(s->icur_valid ? s->iacq : 0));
	s->icur_off += n;
	s->iacq -= n;
	s->ist.bytes += n;
	if (n)
		s->ist.calls++;
	if (s->icur_off == bw_index_len(&s->icur))
		return consume(s, true);
	return 0;
}

/* ---- writing ---------------------------------------------------------------- */

/* Splices n bytes at p: write splicing when they lie in a ring mapped here
 * (other than this IBuf), application splicing when a recent read of this
 * thread put them there unchanged. Returns the bytes spliced, 0 when they
 * must be copied, or -errno. */
static ssize_t splice(struct bw_stream *s, const uint8_t *p, size_t n)
{
	struct bwi_map *m;
	struct bw_index idx;
	size_t k = 0;
	int r;

	if (s->flags & BW_NOSPLICE)
		return 0;
	m = bwi_map_lookup(&s->imc, p);
	if (m && m != s->m && m->g.layout == BWI_LAYOUT_BYTES) {
		k = n > m->g.capacity ? (size_t)m->g.capacity : n;
		r = bwi_index_try(m, p, k, 0, &idx);
		if (r != 0) {
			if (r < 0)
				bwi_err_clear(); /* not an error: we copy */
			return 0;
		}
	} else if (!m && n >= BWI_SPLICE_MIN) {
		k = bwi_index_of_read(p, n, &idx);
	}
	if (k == 0)
		return 0;
	r = put_index(s, &idx);
	if (r < 0)
		return r;
	s->iwst.spliced += k;
	return (ssize_t)k;
}

/* Copies n bytes into the default DBuf and stores their index. */
static ssize_t write_through(struct bw_stream *s, const uint8_t *p, size_t n)
{
	struct bw_stream *w;
	void *q;
	ssize_t k;
	int r;

	r = wt_writer(s, &w);
	if (r < 0)
		return r;
	if (n > s->wt->g.capacity / 4)
		n = (size_t)(s->wt->g.capacity / 4);
	k = bw_stream_poke_acquire(w, &q, n);
	if (k < 0)
		return k;
	memcpy(q, p, n);
	s->ipoke = true;
	s->ipoke_acq = true;
	r = publish_poke(s, n);
	return r < 0 ? r : (ssize_t)n;
}

ssize_t bwi_i_write(struct bw_stream *s, const void *buf, size_t n)
{
	const uint8_t *b = buf;
	struct bwi_map *m;
	size_t done = 0;
	ssize_t k;
	int r;

	/* The fast path: a span of a ring this writer spliced from before
	 * (only a writer that may splice fills imc). Anything it refuses
	 * takes the loop below, which says why or copies. */
	m = s->ipoke ? NULL : bwi_map_cached(&s->imc, b);
	if (__builtin_expect(m && m != s->m && m->g.layout == BWI_LAYOUT_BYTES,
			     1)) {
		struct bw_index idx;

		if (bwi_index_try(m, b, n, 0, &idx) == 0) {
			r = bwi_rec_write(s, &idx, REC);
			if (r < 0)
				return r;
			s->iwst.spliced += n;
			bwi_count_call(&s->iwst, n);
			return (ssize_t)n;
		}
	}
	if (__builtin_expect(s->ipoke, 0)) {
		r = ibuf_enter(s);
		if (r < 0)
			return r;
	}
	if (!s->writer)
		return bwi_err(EBADF, "stream is not open for writing");
	if (n && !buf)
		return bwi_err(EFAULT, "write buffer is NULL");
	while (done < n) {
		k = splice(s, b + done, n - done);
		if (k == 0)
			k = write_through(s, b + done, n - done);
		if (k < 0)
			return done ? (ssize_t)done : k;
		done += (size_t)k;
	}
	if (n) {
		s->iwst.bytes += n;
		s->iwst.calls++;
	}
	return (ssize_t)done;
}

ssize_t bwi_i_poke(struct bw_stream *s, void **ptr, size_t n, bool acq)
{
	struct bw_stream *w;
	ssize_t k;
	int r;

	r = ibuf_enter(s);
	if (r < 0)
		return r;
	if (!s->writer)
		return bwi_err(EBADF, "stream is not open for writing");
	if (s->ipoke)
		return bwi_err(EBUSY, "a poke_acquire is outstanding: complete "
				      "it first");
	r = wt_writer(s, &w);
	if (r < 0)
		return r;
	/* a poke of nothing reserves nothing; an acquire of nothing is one
	 * all the same (poke_complete(0) ends it) */
	k = n || acq ? bw_stream_poke_acquire(w, ptr, n)
		     : bw_stream_poke(w, ptr, 0);
	if (k < 0 || (k == 0 && !acq))
		return k;
	s->ipoke = true;
	s->ipoke_acq = acq;
	s->ipoke_len = (uint64_t)k;
	s->iwst.bytes += (uint64_t)k;
	s->iwst.calls++;
	return k;
}

int bwi_i_poke_complete(struct bw_stream *s, size_t n)
{
	if (!s->ipoke || !s->ipoke_acq)
		return bwi_err(EINVAL, "no poke_acquire is outstanding");
	if (n > s->ipoke_len)
		return bwi_err(EINVAL, "poke_complete of %zu bytes, but %llu "
				       "were acquired",
			       n, (unsigned long long)s->ipoke_len);
	s->iwst.bytes -= s->ipoke_len - n;
	return publish_poke(s, n);
}

int bwi_i_flush(struct bw_stream *s)
{
	int r = ibuf_enter(s);

	release_peeked(s);
	return r < 0 ? r : bwi_d_flush(s);
}

/* ---- other calls ------------------------------------------------------------ */

/* Stamps are positions in the IBuf's own ring (16 bytes an index). A stamp
 * validates when the index records since it are intact and so are the
 * blocks they name. */
int64_t bwi_i_check(struct bw_stream *s, int64_t stamp, int flags)
{
	int64_t cur;
	int r = ibuf_enter(s);

	if (r < 0)
		return r;
	cur = bwi_d_check(s, -1, flags);
	if (cur < 0 || stamp < 0)
		return cur;
	if (stamp > cur || (stamp % (int64_t)REC))
		return bwi_err(EINVAL, "stamp %lld is not an index position "
				       "at or before %lld",
			       (long long)stamp, (long long)cur);
	for (int64_t p = stamp; p < cur; p += (int64_t)REC) {
		struct bw_index idx;

		memcpy(&idx, s->data + ((uint64_t)p & s->mask), REC);
		r = bw_index_check(&idx);
		if (r < 0)
			return r;
	}
	if (flags == BW_CHECK_READ && s->icur_valid) {
		r = bw_index_check(&s->icur);
		if (r < 0)
			return r;
	}
	/* The records copied above were intact while we read them. */
	return bwi_d_check(s, stamp, flags);
}

int64_t bwi_i_lseek(struct bw_stream *s, int64_t off, int whence)
{
	int r = ibuf_enter(s);

	if (r < 0)
		return r;
	if (off % (int64_t)REC)
		return bwi_err(EINVAL, "IBuf positions move in whole indices "
				       "(%zu bytes)",
			       REC);
	if (!(off == 0 && whence == SEEK_CUR)) {
		release_peeked(s);
		s->icur_valid = false;
	}
	return bwi_d_lseek(s, off, whence);
}

static bool ibuf_held(struct bw_stream *s)
{
	return s->icur_valid && s->icur_off < bw_index_len(&s->icur);
}

/* The IBuf layer, above the DBuf that holds its index records. */
const struct bwi_ops bwi_ibuf_ops = {
	.size = sizeof(struct bwi_ops),
	.name = "index",
	.attach = bwi_i_attach,
	.detach = bwi_i_detach,
	.read = bwi_i_read,
	.peek = bwi_i_peek,
	.peek_complete = bwi_i_peek_complete,
	.write = bwi_i_write,
	.poke = bwi_i_poke,
	.poke_complete = bwi_i_poke_complete,
	.flush = bwi_i_flush,
	.check = bwi_i_check,
	.lseek = bwi_i_lseek,
	.held = ibuf_held,
};
