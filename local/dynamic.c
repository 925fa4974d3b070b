/* SPDX-License-Identifier: MIT */
/*
 * Dynamic rings (thesis section 4.5.2): a layer that keeps the DBuf's
 * positions, waiting and policy, and stores the bytes in containers on
 * this process's heap instead of the shared segment.
 *
 * A record ring (fr, vr, dr) keeps its records in the containers the same
 * way, under the record layer, which places no record across two of them.
 *
 * Containers hold box bytes each, for positions [start, start + box), and
 * are linked in position order. The ring has one writer (so only it links
 * and frees containers, and its cached container is never freed under
 * it). It allocates the containers its reservation needs (under the ring's
 * mutex, which reader attaches take too), fills them, and publishes;
 * the next pointer is stored (release) before the tail passes into the new
 * container, so a reader that sees the tail sees the link. As it allocates
 * it frees the containers every reader has passed: those that
 * end strictly below the slowest reader's published position, so the
 * container a reader stands at the end of stays. The DBuf keeps head within
 * a ring of the slowest reader, so at most capacity / BOX + 2 containers are
 * held (more after a reader seeks back: it keeps what it sought back over
 * until it passes it again; see reclaim). Each handle caches the container
 * it used last: a call walks from it (one step when it crosses into the
 * next) and takes no lock.
 *
 * A reader's cached container is always at or above its published
 * position: it moves to the next container before it publishes a position
 * past the end of the last one. A reader attaching after a container was
 * freed starts at the oldest one held (under the mutex, so the freeing
 * writer either saw its slot or freed before it looked).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bwi_stream.h"

struct bwi_dyn_box {
	struct bwi_dyn_box *_Atomic next;
	uint64_t start;
	uint8_t data[];
};

struct bwi_dyn {
	pthread_mutex_t mu;
	struct bwi_dyn_box *first, *last; /* under mu */
	uint64_t box;			  /* bytes per container */
	_Atomic uint64_t held;		  /* bytes of containers held */
};

/* Containers of 64 KiB, or a quarter of a smaller ring; on a record ring
 * at least the largest record's footprint, so that a record never lies in
 * two containers (bwi_dyn_rec_reserve). Powers of two: a container is a
 * whole number of fr slots, and of alignment units of vr and dr records.
 * The largest footprint is at most half the ring (bwi_rec_bad), so is a
 * container: a pad and a record together fit in the ring. */
static uint64_t box_bytes(const struct bwi_geom *g)
{
	uint64_t b = g->capacity / 4 < 65536 ? g->capacity / 4 : 65536;
	uint64_t f = bwi_rec_max(g) ? bwi_rec_foot(g, bwi_rec_max(g)) : 0;

	while (b < f)
		b <<= 1;
	return b;
}

void bwi_dyn_free(struct bwi_map *m)
{
	struct bwi_dyn *d = m->dyn;
	struct bwi_dyn_box *b, *n;

	if (!d)
		return;
	for (b = d->first; b; b = n) {
		n = atomic_load_explicit(&b->next, memory_order_relaxed);
		free(b);
	}
	pthread_mutex_destroy(&d->mu);
	free(d);
	m->dyn = NULL;
}

/* The ring's container list, made by the first handle of this process. */
static int dyn_get(struct bwi_map *m, struct bwi_dyn **out)
{
	static pthread_mutex_t make_mu = PTHREAD_MUTEX_INITIALIZER;
	struct bwi_dyn *d;

	pthread_mutex_lock(&make_mu);
	d = m->dyn;
	if (!d) {
		d = calloc(1, sizeof(*d));
		if (d) {
			pthread_mutex_init(&d->mu, NULL);
			d->box = box_bytes(&m->g);
			m->dyn = d;
		}
	}
	pthread_mutex_unlock(&make_mu);
	*out = d;
	return d ? 0 : bwi_err(ENOMEM, "allocating a dynamic ring");
}

static int dyn_attach(struct bw_stream *s)
{
	const struct bwi_geom *g = &s->m->g;
	struct bwi_dyn *d;
	int r;

	if (g->owner_pid != (uint32_t)bwi_self_pid() ||
	    g->owner_start != bwi_self_starttime())
		return bwi_err(EINVAL, "'%s' is a dynamic ring: its data lives "
				       "in the memory of process %u, which "
				       "alone can open it",
			       s->m->name[0] ? s->m->name : "(anonymous)",
			       g->owner_pid);
	r = dyn_get(s->m, &d);
	if (r < 0)
		return r;
	if (s->reader || s->tap) {
		/* Below the oldest container there is nothing; with none at
		 * all (every handle of this process closed, which freed
		 * them), nothing before the tail is held any more. */
		pthread_mutex_lock(&d->mu);
		if (d->first && s->rpos < d->first->start)
			r = (int)bwi_d_lseek(s, (int64_t)d->first->start,
					     SEEK_SET);
		else if (!d->first)
			r = (int)bwi_d_lseek(s, 0, SEEK_END);
		pthread_mutex_unlock(&d->mu);
	}
	return r < 0 ? r : 0;
}

/* Frees the containers every reader has passed. Under d->mu. */
static void reclaim(struct bw_stream *s, struct bwi_dyn *d)
{
	uint64_t t = bw_load_acquire(&s->hdr->prod.tail), min;

	/* head 0: no floor. A reader that sought back may stand more than a
	 * ring below head (the writer had room from its older position):
	 * its containers stay until it passes them again. */
	if (bwi_min_reader(s->m, 0, t, &min) <= 0)
		min = t; /* no reader: nothing will read below the tail */
	while (d->first && d->first != d->last &&
	       d->first->start + d->box < min) {
		struct bwi_dyn_box *b = d->first;

		d->first = atomic_load_explicit(&b->next, memory_order_relaxed);
		atomic_fetch_sub_explicit(&d->held, d->box,
					  memory_order_relaxed);
		free(b);
	}
}

/* Makes sure containers cover positions up to end; returns the one that
 * holds position pos in *out. */
static int boxes_for(struct bw_stream *s, uint64_t pos, uint64_t end,
		     struct bwi_dyn_box **out)
{
	struct bwi_dyn *d = s->m->dyn;
	struct bwi_dyn_box *b;
	int r = 0;

	pthread_mutex_lock(&d->mu);
	reclaim(s, d);
	while (!d->last || d->last->start + d->box < end) {
		uint64_t st = d->last ? d->last->start + d->box
				      : pos / d->box * d->box;

		b = malloc(sizeof(*b) + d->box);
		if (!b) {
			r = bwi_err(ENOMEM, "allocating a %llu-byte container "
					    "of a dynamic ring",
				    (unsigned long long)d->box);
			break;
		}
		atomic_init(&b->next, NULL);
		b->start = st;
		if (d->last)
			atomic_store_explicit(&d->last->next, b,
					      memory_order_release);
		else
			d->first = b;
		d->last = b;
		atomic_fetch_add_explicit(&d->held, d->box,
					  memory_order_relaxed);
	}
	for (b = d->first; b && b->start + d->box <= pos;)
		b = atomic_load_explicit(&b->next, memory_order_relaxed);
	pthread_mutex_unlock(&d->mu);
	if (r == 0 && (!b || b->start > pos))
		r = bwi_err(EIO, "dynamic ring: no container holds position "
				 "%llu",
			    (unsigned long long)pos);
	*out = b;
	return r;
}

/* Walks from the cached container *c to the one holding pos (a reader's
 * containers are all linked: the tail it saw passed them). */
static struct bwi_dyn_box *walk(struct bwi_dyn_box *c, uint64_t box,
				uint64_t pos)
{
	while (c && c->start + box <= pos)
		c = atomic_load_explicit(&c->next, memory_order_acquire);
	return c;
}

/* Copies n bytes between buf and the stream at pos, container by
 * container; *c: the container holding pos, left at the last one used. */
static void move_bytes(struct bwi_dyn_box **c, uint64_t box, uint64_t pos,
		       uint8_t *buf, size_t n, bool to_ring)
{
	while (n) {
		struct bwi_dyn_box *b = walk(*c, box, pos);
		uint64_t off = pos - b->start, k = box - off < n ? box - off : n;

		if (to_ring)
			bwi_copy(b->data + off, buf, (size_t)k);
		else
			bwi_copy(buf, b->data + off, (size_t)k);
		*c = b;
		pos += k;
		buf += k;
		n -= (size_t)k;
	}
}

/* The container holding pos, when the chain from c covers [pos, end);
 * else NULL. Only the one writer links containers. */
static struct bwi_dyn_box *covered(struct bwi_dyn_box *c, uint64_t box,
				   uint64_t pos, uint64_t end)
{
	struct bwi_dyn_box *b;

	c = walk(c, box, pos);
	for (b = c; b && b->start + box < end;)
		b = atomic_load_explicit(&b->next, memory_order_relaxed);
	return b ? c : NULL;
}

/* One piece of at most a ring. The one writer knows where head is: with
 * the containers already there it reserves and publishes directly; else it
 * reserves first (so it allocates only once there is room) through
 * poke_acquire, which it can take back if allocating fails. */
static int write_piece(struct bw_stream *s, const uint8_t *buf, uint64_t c)
{
	struct bwi_dyn *d = s->m->dyn;
	uint64_t head = bw_load_relaxed(&s->hdr->prod.head), hd;
	struct bwi_dyn_box *b;
	void *p;
	int r;

	b = s->dyn_w ? covered(s->dyn_w, d->box, head, head + c) : NULL;
	if (b) {
		r = bwi_rec_reserve(s, c, &hd);
		if (r < 0)
			return r;
		if (hd != head)
			return bwi_err(EIO, "dynamic ring: another writer "
					    "moved head");
		move_bytes(&b, d->box, hd, (uint8_t *)buf, (size_t)c, true);
		s->dyn_w = b;
		return bwi_rec_publish(s, hd, c);
	}
	r = (int)bwi_d_poke(s, &p, c, true);
	if (r < 0)
		return r;
	hd = s->acq_start;
	r = boxes_for(s, hd, hd + c, &b);
	if (r < 0) {
		bwi_d_poke_complete(s, 0);
		return r;
	}
	move_bytes(&b, d->box, hd, (uint8_t *)buf, (size_t)c, true);
	s->dyn_w = b;
	return bwi_d_poke_complete(s, c);
}

static ssize_t dyn_write(struct bw_stream *s, const void *buf, size_t n)
{
	uint64_t cap, done = 0;
	int r = bwi_need_writer(s);

	if (r < 0)
		return r;
	if (n && !buf)
		return bwi_err(EFAULT, "write buffer is NULL");
	cap = s->m->g.capacity;
	while (done < n) {
		uint64_t c = n - done < cap ? n - done : cap;

		r = write_piece(s, (const uint8_t *)buf + done, c);
		if (r < 0 && r != -ENOBUFS) /* ENOBUFS: dropped, counted */
			return done ? (ssize_t)done : r;
		if (r == 0) {
			bwi_count_call(&s->iwst, c);
		}
		done += c;
	}
	return (ssize_t)done;
}

/* A poke ends at its container's end, as a peek does: it reserves the
 * bytes from the write position up to n that are contiguous there, and
 * returns their count. The containers are made before the reservation (at
 * most the one the write position opens), so a failed allocation leaves
 * nothing reserved; poke_complete and the next call publish as on any
 * ring. */
static ssize_t dyn_poke(struct bw_stream *s, void **ptr, size_t n, bool acq)
{
	struct bwi_dyn *d = s->m->dyn;
	struct bwi_dyn_box *b;
	uint64_t head, k;
	void *p;
	ssize_t r = bwi_poke_enter(s, ptr, n); /* publishes the last poke */

	if (r < 0)
		return r;
	head = bw_load_relaxed(&s->hdr->prod.head);
	k = d->box - head % d->box;
	if (k > n)
		k = n;
	r = boxes_for(s, head, head + (k ? k : 1), &b);
	if (r < 0)
		return r;
	*ptr = b->data + (head - b->start);
	r = bwi_poke_reserve(s, &p, (size_t)k, acq);
	if (r <= 0)
		return r;
	if ((acq ? s->acq_start : s->poke_start) != head)
		return bwi_err(EIO, "dynamic ring: another writer moved head");
	s->dyn_w = b;
	if (!acq) /* all of it is published, at the next call */
		bwi_count_call(&s->iwst, k);
	return (ssize_t)k;
}

static int dyn_poke_complete(struct bw_stream *s, size_t n)
{
	int r = bwi_d_poke_complete(s, n);

	if (r == 0 && n)
		bwi_count_call(&s->iwst, n);
	return r;
}

/* The reader's container for its position: from its cached one, or, with
 * none (after attaching, or a move that skipped containers: its cache may
 * have been freed), found under the mutex. NULL when none holds it. */
static struct bwi_dyn_box *rd_box(struct bw_stream *s)
{
	struct bwi_dyn *d = s->m->dyn;
	struct bwi_dyn_box *b;

	if (s->dyn_r) {
		b = walk(s->dyn_r, d->box, s->rpos);
	} else {
		pthread_mutex_lock(&d->mu);
		b = walk(d->first, d->box, s->rpos);
		pthread_mutex_unlock(&d->mu);
	}
	if (b && b->start > s->rpos)
		b = NULL;
	s->dyn_r = b;
	return b;
}

/* The read position moved without us (a seek, padding skipped while
 * acquiring): the cached container may lie behind what was freed. */
static void rd_moved(struct bw_stream *s, uint64_t was)
{
	if (s->rpos != was)
		s->dyn_r = NULL;
}

static int no_box(struct bw_stream *s)
{
	return bwi_err(EIO, "dynamic ring: no container holds position %llu",
		       (unsigned long long)s->rpos);
}

static ssize_t dyn_read(struct bw_stream *s, void *buf, size_t n)
{
	const uint8_t *p;
	uint64_t was;
	int64_t a;
	int r = bwi_need_reader(s);

	if (r < 0)
		return r;
	if (!buf)
		return bwi_err(EFAULT, "read buffer is NULL");
	if (n == 0)
		return 0;
	was = s->rpos;
	a = bwi_rd_acquire(s, n, &p); /* p: the segment's, never used */
	rd_moved(s, was);
	if (a <= 0)
		return a;
	if ((uint64_t)a > n)
		a = (int64_t)n;
	if (!rd_box(s))
		return no_box(s);
	/* leaves dyn_r at the container of the last byte read, which the
	 * position published next does not pass: see the top */
	move_bytes(&s->dyn_r, s->m->dyn->box, s->rpos, buf, (size_t)a, false);
	s->dyn_racq = 0;
	bwi_rd_move(s, (uint64_t)a, true);
	bwi_count_call(&s->ist, (uint64_t)a);
	return a;
}

/* A peek ends at its container's end: spans are contiguous there only. */
static ssize_t dyn_peek(struct bw_stream *s, const void **ptr, size_t n,
			bool move)
{
	struct bwi_dyn_box *b;
	const uint8_t *p;
	uint64_t off, box;
	int64_t a;
	int r = bwi_need_reader(s);

	if (r < 0)
		return r;
	if (!ptr)
		return bwi_err(EFAULT, "peek pointer is NULL");
	if (move)
		bwi_rd_release(s); /* the previous peek's span */
	s->dyn_racq = 0;
	off = s->rpos;
	a = bwi_rd_acquire(s, n ? n : 1, &p);
	rd_moved(s, off);
	if (a <= 0)
		return a;
	b = rd_box(s);
	if (!b)
		return no_box(s);
	box = s->m->dyn->box;
	off = s->rpos - b->start;
	if ((uint64_t)a > n)
		a = (int64_t)n;
	if ((uint64_t)a > box - off)
		a = (int64_t)(box - off);
	*ptr = b->data + off;
	if (move) {
		/* the span stays ours until the next call publishes */
		bwi_rd_move(s, (uint64_t)a, false);
		bwi_count_call(&s->ist, (uint64_t)a);
	} else {
		s->dyn_racq = (uint64_t)a;
	}
	return a;
}

static int dyn_peek_complete(struct bw_stream *s, size_t n)
{
	int r = bwi_need_reader(s);

	if (r < 0)
		return r;
	if (n > s->dyn_racq)
		return bwi_err(EINVAL, "peek_complete of %zu bytes, but only "
				       "%llu were acquired",
			       n, (unsigned long long)s->dyn_racq);
	s->dyn_racq -= n;
	if (n) {
		bwi_rd_move(s, n, true);
		bwi_count_call(&s->ist, n);
	}
	return 0;
}

/* Back as far as the oldest container held: the writer frees containers
 * under the mutex, below the readers' published positions it reads there,
 * so a position found held here stays held once published. */
static int64_t dyn_lseek(struct bw_stream *s, int64_t off, int whence)
{
	struct bwi_dyn *d = s->m->dyn;
	int64_t cur = bwi_d_lseek(s, 0, SEEK_CUR), r;

	if (cur < 0 || !(s->reader || s->tap))
		return cur < 0 ? cur : bwi_d_lseek(s, off, whence);
	pthread_mutex_lock(&d->mu);
	r = bwi_d_lseek(s, off, whence);
	if (r >= 0 && r < cur && (!d->first || (uint64_t)r < d->first->start)) {
		uint64_t o = d->first ? d->first->start : (uint64_t)cur;

		bwi_d_lseek(s, cur, SEEK_SET);
		r = bwi_err(ESTALE, "dynamic ring: position %lld was freed once "
				    "every reader passed it; the oldest held is "
				    "%llu",
			    (long long)r, (unsigned long long)o);
	}
	pthread_mutex_unlock(&d->mu);
	if (r < 0)
		return r;
	s->dyn_racq = 0;
	rd_moved(s, (uint64_t)cur);
	return r;
}

static int dyn_flush(struct bw_stream *s)
{
	return bwi_d_flush(s);
}

static int64_t dyn_check(struct bw_stream *s, int64_t stamp, int flags)
{
	return bwi_d_check(s, stamp, flags);
}

/* ---- for the record layer above (record.c) -------------------------------- */

/* Reserves room for one record of foot bytes at the write position, as a
 * poke_acquire that poke_complete publishes. When the record would lie in
 * two containers the room starts with a pad to the next one (*pad: its
 * bytes, which the record layer marks as a pad span). As for a write, the
 * containers are made once the room is there. */
int bwi_dyn_rec_reserve(struct bw_stream *s, uint64_t foot, uint64_t *pad)
{
	struct bwi_dyn *d = s->m->dyn;
	uint64_t head = bw_load_relaxed(&s->hdr->prod.head), n;
	struct bwi_dyn_box *b;
	void *p;
	ssize_t r;

	*pad = head % d->box + foot > d->box ? d->box - head % d->box : 0;
	n = *pad + foot;
	r = bwi_d_poke(s, &p, (size_t)n, true);
	if (r < 0)
		return (int)r;
	if (s->acq_start != head) {
		bwi_d_poke_complete(s, 0);
		return bwi_err(EIO, "dynamic ring: another writer moved head");
	}
	b = s->dyn_w ? covered(s->dyn_w, d->box, head, head + n) : NULL;
	if (!b) {
		r = boxes_for(s, head, head + n, &b);
		if (r < 0) {
			bwi_d_poke_complete(s, 0);
			return (int)r;
		}
	}
	s->dyn_w = b;
	return 0;
}

/* Where position p lies: p is in the writer's room, at or after its cached
 * container. */
uint8_t *bwi_dyn_wat(struct bw_stream *s, uint64_t p)
{
	struct bwi_dyn_box *b = walk(s->dyn_w, s->m->dyn->box, p);

	s->dyn_w = b;
	return b->data + (p - b->start);
}

/* Where the reader's position lies (below the tail), or NULL with the
 * error set when no container holds it. */
const uint8_t *bwi_dyn_rat(struct bw_stream *s)
{
	struct bwi_dyn_box *b = rd_box(s);

	if (!b) {
		no_box(s);
		return NULL;
	}
	return b->data + (s->rpos - b->start);
}

/* The start of the container that holds p, or NULL when none does (it was
 * freed, or is not made yet): for a reader attaching, which looks for the
 * first record start in it. */
const uint8_t *bwi_dyn_box_of(struct bw_stream *s, uint64_t p)
{
	struct bwi_dyn *d = s->m->dyn;
	struct bwi_dyn_box *b;

	pthread_mutex_lock(&d->mu);
	b = walk(d->first, d->box, p);
	pthread_mutex_unlock(&d->mu);
	return b && b->start <= p ? b->data : NULL;
}

/* Bytes per container: every multiple is a record start or the tail. */
uint64_t bwi_dyn_box(const struct bwi_map *m)
{
	return m->dyn->box;
}

/* Container memory this process holds for the ring. */
uint64_t bwi_dyn_held(const struct bwi_map *m)
{
	return m->dyn ? atomic_load_explicit(&m->dyn->held,
					     memory_order_relaxed)
		      : 0;
}

/* The dynamic layer; append answers -ENOSYS (the default), as on any byte
 * ring. Under a record layout the record layer is on top: it calls attach
 * and lseek here, and reaches the containers through the functions
 * above. */
const struct bwi_ops bwi_dyn_ops = {
	.size = sizeof(struct bwi_ops),
	.name = "dynamic",
	.attach = dyn_attach,
	.read = dyn_read,
	.peek = dyn_peek,
	.peek_complete = dyn_peek_complete,
	.write = dyn_write,
	.poke = dyn_poke,
	.poke_complete = dyn_poke_complete,
	.flush = dyn_flush,
	.check = dyn_check,
	.lseek = dyn_lseek,
};
