/* SPDX-License-Identifier: MIT */
/*
 * The stream API on a local ring: read, peek, write, poke and their
 * acquire/complete pairs, check, lseek, and attaching and detaching.
 *
 * Writers reserve space by CAS on head, copy, then publish in reservation
 * order by a release store of tail. Readers copy from below tail and publish
 * their position in their slot; a writer reuses space only below the lowest
 * published reader position (lossless). Each side caches the other side's
 * position and re-reads it only when the cache runs out.
 *
 * Readers that may be behind what the writer protects (taps, late joiners
 * reading from the start, a seek backwards) validate each read against head
 * after the copy, seqlock style: bytes below head - capacity may have been
 * overwritten while they were copied.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <beltway/shadow.h>

#include "bwi_index.h"
#include "bwi_stream.h"

#define BWI_OPEN_FLAGS                                                     \
	(BW_READ | BW_WRITE | BW_NONBLOCK | BW_FROM_START | BW_NOWAIT |       \
	 BW_LOW_LATENCY | BW_NOSPLICE)
#define BWI_SPIN_NS 50000	   /* spin this long before sleeping */
#define BWI_PACE_NS 1000	   /* a caught-up side looks at most this often */
#define BWI_BATCH 16384		   /* gaining less per look: caught up */
#define BWI_TAP_POLL_MS 5	   /* taps cannot announce sleep: they poll */
/* A handle whose calls go to a layer above the DBuf calls (s->ops). */
#define LAYERED(s) ((s) && ((s)->slow & BWI_SLOW_LAYER))
/* The call op of the handle's top layer, or of the DBuf. */
#define CALL(s, op, ...)                                                    \
	(LAYERED(s) ? BWI_OP((s)->ops, op)(s, __VA_ARGS__)                   \
		    : bwi_d_##op(s, __VA_ARGS__))

uint32_t bwi_epoch = 1;

/* ---- this process's handles, for bw_fork() -------------------------------- */

static pthread_mutex_t handles_mu = PTHREAD_MUTEX_INITIALIZER;
static struct bw_stream *handles;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&handles_mu);
	bwi_maps_lock();
}

static void atfork_parent(void)
{
	bwi_maps_unlock();
	pthread_mutex_unlock(&handles_mu);
}

/* Every inherited handle belongs to the parent's attachment: a child may not
 * use it unless bw_fork() gives it one of its own. */
static void atfork_child(void)
{
	bwi_epoch++;
	for (struct bw_stream *s = handles; s; s = s->next)
		s->slow |= BWI_SLOW_STOP;
	bwi_maps_child();
	pthread_mutex_init(&handles_mu, NULL);
}

static void atfork_setup(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void bwi_handles_lock(void)
{
	pthread_mutex_lock(&handles_mu);
}

void bwi_handles_unlock(void)
{
	pthread_mutex_unlock(&handles_mu);
}

struct bw_stream *bwi_handles_first(void)
{
	return handles;
}

int bwi_stream_new(struct bw_stream **out)
{
	struct bw_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return bwi_err(ENOMEM, "allocating a stream handle");
	pthread_once(&atfork_once, atfork_setup);
	bwi_barrier_init();
	s->asym = bwi_barrier_asym;
	s->bell_fd = -1;
	s->bell_tick = -1;
	s->bell_ep = -1;
	s->epoch = bwi_epoch;
	*out = s;
	return 0;
}

static void handles_add(struct bw_stream *s)
{
	bwi_handles_lock();
	s->next = handles;
	if (handles)
		handles->prev = s;
	handles = s;
	bwi_handles_unlock();
}

static void handles_del(struct bw_stream *s)
{
	bwi_handles_lock();
	if (s->prev)
		s->prev->next = s->next;
	else if (handles == s)
		handles = s->next;
	if (s->next)
		s->next->prev = s->prev;
	bwi_handles_unlock();
}

/* ---- shared helpers ----------------------------------------------------- */

static inline struct bwi_hdr *H(const struct bw_stream *s)
{
	return s->hdr;
}

/* Moves head back from `from` to `to` (an abandoned reservation). The bytes a
 * writer may have scribbled there belong to positions [to - cap, from - cap):
 * the scar marks them damaged first. */
bool bwi_head_rollback(struct bwi_map *m, uint64_t from, uint64_t to)
{
	bwi_scar_raise(m, from > m->g.capacity ? from - m->g.capacity : 0);
	return bw_cas(&m->hdr->prod.head, &from, to);
}

/* Marks the bytes below pos damaged (the scar never comes down). A seq_cst
 * CAS: the stores that damage them come after it (A4). */
void bwi_scar_raise(struct bwi_map *m, uint64_t pos)
{
	uint64_t cur = bw_load_relaxed(&m->hdr->ctl.scar);

	while (cur < pos && !bw_cas(&m->hdr->ctl.scar, &cur, pos))
		;
}

/* Store-store order between a head reservation and the data stores after it,
 * for validating readers (the seqlock write side, W1). x86 keeps stores in
 * order; elsewhere it takes a fence. */
static inline void wmb_after_reserve(void)
{
#if defined(__x86_64__) || defined(__i386__)
	atomic_signal_fence(memory_order_seq_cst);
#else
	bw_smp_mb();
#endif
}

/* The light side of the asymmetric Dekker (bwi_ring.h), in the mode this
 * handle read once. */
static inline void light(const struct bw_stream *s)
{
	if (__builtin_expect(s->asym, 1))
		atomic_signal_fence(memory_order_seq_cst);
	else
		bw_smp_mb();
}

/* The copy of a validating reader (a tap, or a reader of an MRP or FRP
 * ring): a writer may overwrite the bytes while they are copied, by design;
 * the copy is then discarded (rd_validate), as a seqlock's reader discards
 * its read. The TSan build suppresses reports on this one function
 * (tests/tsan.supp): it is the designed race, and only it. */
__attribute__((noinline)) static void copy_racy(void *dst, const void *src,
						size_t n)
{
	memcpy(dst, src, n);
}

static void wake(struct bwi_map *m, struct bwi_wait *w, enum bwi_role role)
{
	uint64_t v;

	bw_fetch_add(&w->seq, 1);
	v = bw_load_relaxed(&w->waiting);
	if (v & (BWI_ARMED - 1))
		bwi_futex_wake(&w->seq);
	if (v >= BWI_ARMED)
		bwi_bell_ring_all(m, w, role);
}

/*
 * Pacing. A side that keeps catching up with the other (its last look at the
 * other side's position gained less than BWI_BATCH bytes), and a side that
 * waits, looks at most every BWI_PACE_NS: each look pulls a cache line that
 * the other side writes on every call, so looking less often lets that side
 * run on in its own cache, and the data then comes in batches. This adds at
 * most BWI_PACE_NS before a reader sees new data; BW_LOW_LATENCY turns it off.
 */
static void pace(uint64_t *last)
{
	uint64_t now = bwi_now_ns();

	/* Yield rather than spin: when readers share a CPU, the time this one
	 * gives up is what the others run in. With the CPU to itself, the
	 * yield returns at once. */
	while (now - *last < BWI_PACE_NS) {
		sched_yield();
		now = bwi_now_ns();
	}
	*last = now;
}

/* Statistics live in the handle (bwi_count_call). A slot mirrors them for
 * other processes (beltway stat) whenever its owner looks at the other
 * side's position, so the mirror lags by at most one batch and the fast
 * path stores nothing. */
static void mirror(const struct bwi_stats *st, struct bwi_slot *sl)
{
	if (!sl)
		return;
	bw_store_relaxed(&sl->bytes, st->bytes);
	bw_store_relaxed(&sl->calls, st->calls);
	bw_store_relaxed(&sl->waits, st->waits);
	bw_store_relaxed(&sl->lost, st->lost);
}

static void count_lost(struct bw_stream *s, uint64_t n)
{
	s->rst.lost += n;
	mirror(&s->rst, s->rsl);
}

/* ---- reader side ---------------------------------------------------------- */

/* MRP: raises the shared read position R to p (never lowers it). R2 again:
 * the CAS is a full barrier, so this reader's loads of the bytes below p are
 * done before a writer that reads the new R (acquire) overwrites them. */
static void mrp_raise(struct bwi_map *m, uint64_t p)
{
	uint64_t r = bw_load_relaxed(&m->hdr->grp.rshared);

	while (r < p && !bw_cas(&m->hdr->grp.rshared, &r, p))
		;
}

/* Publishes the read position: writers may reuse the space below it. */
static inline void rd_publish(struct bw_stream *s)
{
	struct bwi_hdr *h = H(s);

	if (s->rpub == s->rpos || !s->reader)
		return;
	/* MRP (thesis 4.5.4): R moves to this reader's previous position, so
	 * every other reader gets one more turn at the bytes just read. */
	if (s->policy == BW_POLICY_MRP)
		mrp_raise(s->m, s->rpub);
	/* R2: pairs with A2 in bwi_min_reader: our loads of the bytes below
	 * rpos happen before a writer reuses their space. */
	bw_store_release(&s->rsl->pos, s->rpos);
	s->rpub = s->rpos;
	light(s);
	if (bw_load_relaxed(&h->wwait.waiting))
		wake(s->m, &h->wwait, BWI_WRITER);
}

/* This reader has been overtaken: skip to o, the oldest byte held as the
 * caller saw it (not read again: a reservation taken back, B1, lowers it),
 * count the loss, and say so once. */
static int rd_lost(struct bw_stream *s, uint64_t tail, uint64_t o)
{
	/* Writers keep head within a capacity of the tail they saw, so a
	 * tail read after head is at least head - capacity. */
	if (o > tail)
		tail = bw_load_acquire(&H(s)->prod.tail);
	if (o > tail || o <= s->rpos)
		return bwi_err(EBADMSG, "ring positions are inconsistent "
					"(head %llu, tail %llu): corrupted ring",
			       (unsigned long long)bw_load_relaxed(&H(s)->prod.head),
			       (unsigned long long)tail);
	uint64_t lost = o - s->rpos;

	count_lost(s, lost);
	s->rpos = o;
	s->racq = 0;
	s->tail_seen = o; /* the next read refreshes, padding included */
	rd_publish(s);
	return bwi_err(ESTALE, "reader was overtaken and lost %llu bytes; "
			       "resuming at position %llu",
		       (unsigned long long)lost, (unsigned long long)o);
}

/* Pad k if it is still recorded: false once it was reused (or is being),
 * which happens only after every reader passed it (struct bwi_pad). */
static bool pad_read(const struct bwi_map *m, uint64_t k, uint64_t *start,
		     uint64_t *end)
{
	uint64_t seq;

	return bwi_pad_load(&m->hdr->padv[k % BWI_PADS], &seq, start, end) &&
	       seq == k;
}

/* Of n pads ever recorded, the first whose entry can still hold it. */
static inline uint64_t pads_first(uint64_t n)
{
	return n > BWI_PADS ? n - BWI_PADS : 0;
}

/* The first pad a reader attaching (or seeking back) must look at. */
static uint64_t pads_floor(const struct bwi_map *m)
{
	return pads_first(bw_load_acquire(&m->hdr->prod.pads));
}

/* A stamp inside recorded padding stands for the end of it: padding holds
 * no data, and a read that skipped it began after it (a reader stamps at
 * the pad's start, and its next read delivers from the pad's end). */
static uint64_t pad_stamp(const struct bwi_map *m, uint64_t stamp)
{
	uint64_t n = bw_load_acquire(&m->hdr->prod.pads);

	for (uint64_t k = pads_first(n); k < n; k++) {
		uint64_t a, e;

		if (pad_read(m, k, &a, &e) && a <= stamp && stamp < e)
			return e;
	}
	return stamp;
}

/* Given tail t (acquired), skips the padding at the read position and
 * returns where the readable span ends: t, or the start of the next pad
 * the tail has passed. -EBADMSG for a pad no padder can have written. */
static int64_t rd_pads(struct bw_stream *s, uint64_t t)
{
	uint64_t n = bw_load_acquire(&H(s)->prod.pads);

	while (s->pad_next < n) {
		uint64_t k = s->pad_next, a, e;

		if (n - k > BWI_PADS || !pad_read(s->m, k, &a, &e) ||
		    e <= s->rpos) {
			s->pad_next = n - k > BWI_PADS ? pads_first(n) : k + 1;
			continue;
		}
		if (a >= t)
			break; /* not padded yet: the tail moves over it last */
		if (a >= e || e > t || e - a > s->m->g.capacity)
			return bwi_err(EBADMSG, "padding record [%llu, %llu) "
						"with the write position at "
						"%llu: corrupted ring",
				       (unsigned long long)a,
				       (unsigned long long)e,
				       (unsigned long long)t);
		if (a > s->rpos)
			return (int64_t)a;
		s->padded += e - s->rpos;
		s->rpos = e;
		s->racq = 0;
		s->pad_next = k + 1;
		rd_publish(s);
	}
	return (int64_t)t;
}

/* Readable bytes now, or -ESTALE / -EBADMSG. */
static int64_t rd_refresh(struct bw_stream *s)
{
	/* A1: pairs with R1 in wr_publish: bytes below tail are written. */
	uint64_t t = bw_load_acquire(&H(s)->prod.tail);

	if (__builtin_expect(t < s->tail_seen, 0))
		return bwi_err(EBADMSG, "write position moved back from %llu "
					"to %llu: corrupted ring",
			       (unsigned long long)s->tail_seen,
			       (unsigned long long)t);
	if (__builtin_expect(t - s->rpos > s->m->g.capacity, 0))
		return rd_lost(s, t, bwi_oldest_held(s->m));
	if (__builtin_expect(bw_load_relaxed(&H(s)->prod.pads) != s->pad_next,
			     0)) {
		int64_t c = rd_pads(s, t);

		if (c < 0)
			return c;
		t = (uint64_t)c;
	}
	s->tail_seen = t;
	mirror(&s->rst, s->rsl);
	return (int64_t)(t - s->rpos);
}

/* After copying (or before handing out) [rpos, rpos + n): for readers that
 * may be behind what writers protect, checks the bytes were not overwritten
 * meanwhile. */
static inline int rd_validate(struct bw_stream *s, uint64_t n)
{
	uint64_t o;

	if (__builtin_expect(s->rpos >= s->safe_from, 1))
		return 0;
	/* A3: the data loads above complete before head is read: the read
	 * side of the seqlock whose write side is W1. */
	bw_smp_rmb();
	o = bwi_oldest_held(s->m);
	if (o <= s->rpos) {
		if (s->rpos + n >= s->safe_from && !s->validate)
			s->safe_from = 0;
		return 0;
	}
	if (o > s->tail_seen)
		s->tail_seen = o;
	return rd_lost(s, s->tail_seen, o);
}

static int rd_ready(struct bw_stream *s)
{
	struct bwi_hdr *h = H(s);

	if (bw_load_acquire(&h->prod.tail) != s->rpos)
		return BW_POLLIN;
	if (bw_load_relaxed(&h->ctl.broken))
		return BW_POLLIN | BW_POLLERR;
	if (bwi_slot_count(s->m, BWI_WRITER) == 0) {
		/* The last writer's final publish precedes its detach. */
		if (bw_load_acquire(&h->prod.tail) != s->rpos)
			return BW_POLLIN;
		return BW_POLLIN | BW_POLLHUP;
	}
	return 0;
}

/* ---- writer side ---------------------------------------------------------- */

/* Spans posted by any writer that the tail has not passed yet. */
static bool posts_pending(const struct bwi_map *m)
{
	uint64_t t = bw_load_acquire(&m->hdr->prod.tail);
	uint32_t hi = bwi_slots_hi(m, BWI_WRITER);

	for (uint32_t i = 0; i < hi; i++)
		if (bwi_wposts_pending(m, i, t))
			return true;
	return false;
}

/* The other writers have gone: this one may move head without CAS again.
 * The writer lock keeps a new writer out while we decide. */
static void writers_maybe_alone(struct bw_stream *s)
{
	if (!s->asym || bwi_slot_count(s->m, BWI_WRITER) != 1)
		return;
	bwi_writer_lock(s->m);
	/* spans posted by writers that left or died must still be carried
	 * by our publishes (tail_help runs while multi is set) */
	if (bwi_slot_count(s->m, BWI_WRITER) == 1 && !posts_pending(s->m))
		bw_store_relaxed(&H(s)->ctl.multi, 0);
	bwi_writer_unlock(s->m);
}

/* MRP and FRP writers do not look at reader positions, only at whether any
 * reader is attached: counted again only when a peer came or went. */
static int readers_now(struct bw_stream *s, uint32_t seq)
{
	if (s->nreaders < 0 || seq != s->peer_seen)
		s->nreaders = (int)bwi_slot_count(s->m, BWI_READER);
	return s->nreaders;
}

/* The lowest position the writers must keep, by policy: the slowest
 * reader's (lossless, SRP), the readers' shared R (MRP), or only the
 * published tail (FRP). Returns the number of readers, or -EBADMSG. */
static int wr_floor(struct bw_stream *s, uint32_t seq, uint64_t hd,
		    uint64_t t, uint64_t *min)
{
	int nr;

	switch (s->policy) {
	case BW_POLICY_MRP:
		nr = readers_now(s, seq);
		/* A2 for MRP: pairs with the CAS in mrp_raise. Written by
		 * readers: never trusted past the tail. */
		*min = bw_load_acquire(&H(s)->grp.rshared);
		if (*min > t)
			*min = t;
		return nr;
	case BW_POLICY_FRP:
		/* No reader holds the writers back; only the tail does, so
		 * head never runs a ring past what is published (a writer
		 * never overwrites another's unpublished reservation). */
		*min = t;
		return readers_now(s, seq);
	default:
		return bwi_min_reader(s->m, hd, t, min);
	}
}

static int wr_ready(struct bw_stream *s, uint64_t need)
{
	struct bwi_hdr *h = H(s);
	uint64_t hd, t, min;
	uint32_t seq;
	int nr;

	if (bw_load_relaxed(&h->ctl.broken))
		return BW_POLLOUT | BW_POLLERR;
	mirror(&s->wst, s->wsl);
	seq = bw_load_acquire(&h->ctl.peer_seq);
	if (bw_load_relaxed(&h->ctl.multi))
		writers_maybe_alone(s);
	hd = bw_load_relaxed(&h->prod.head);
	t = bw_load_acquire(&h->prod.tail);
	nr = wr_floor(s, seq, hd, t, &min);
	s->peer_seen = seq;
	if (nr < 0) {
		s->limit = 0;
		return BW_POLLOUT | BW_POLLERR;
	}
	if (nr == 0) {
		if (!(s->flags & BW_NOWAIT))
			return BW_POLLOUT | BW_POLLHUP;
		min = t;
	}
	s->limit = min + s->m->g.capacity;
	return hd + need <= s->limit ? BW_POLLOUT : 0;
}

int bwi_ready(struct bw_stream *s, int events, uint64_t need)
{
	int rev = 0;

	if ((events & BW_POLLIN) && LAYERED(s) && BWI_OP(s->ops, held)(s))
		rev |= BW_POLLIN;
	else if ((events & BW_POLLIN) && (s->reader || s->tap))
		rev |= rd_ready(s);
	if ((events & BW_POLLOUT) && s->writer) {
		int w = wr_ready(s, need);

		/* SRP and MRP writers drop rather than wait, and FRP writers
		 * never wait for readers: always writable */
		if (s->policy != BW_POLICY_LOSSLESS && !(w & BW_POLLERR))
			w |= BW_POLLOUT;
		rev |= w;
	}
	return rev;
}

static bool handle_sleeps(const struct bw_stream *s)
{
	/* a shadow's origin cannot wake this process: it is polled */
	return s->m->writable && !s->shadow;
}

/* ---- waiting ---------------------------------------------------------------- */

static bool tail_unstick(struct bw_stream *s);
static bool pad_held(struct bw_stream *s, struct bwi_slot *holder, uint64_t mk,
		     uint64_t t);

/* How long a waiter on m sleeps before it reaps the dead and looks at the
 * tail: the liveness interval, or less on a ring with a shorter writer
 * timeout (to pad within about 1.5 timeouts). */
int bwi_wait_slice_ms(const struct bwi_map *m)
{
	int live = bwi_liveness_ms();
	uint32_t tmo = m->g.writer_timeout_ms;

	return tmo && tmo / 2 + 1 < (uint32_t)live ? (int)(tmo / 2 + 1) : live;
}

/* The batch timer of m's reader line in microseconds: wake_usec when
 * writers wake readers only once per batch, else none (UINT64_MAX). */
static uint64_t batch_timer_us(const struct bwi_map *m)
{
	return m->g.wake_batch > 1 ? m->g.wake_usec : UINT64_MAX;
}

/* How long a sleeper on m's reader line sleeps at most, in microseconds:
 * until the next look at the peers, or the batch timer if sooner. */
static int64_t wait_timer_us(const struct bwi_map *m)
{
	uint64_t us = (uint64_t)bwi_wait_slice_ms(m) * 1000u;

	return (int64_t)(batch_timer_us(m) < us ? batch_timer_us(m) : us);
}

struct waiter {
	struct bw_stream *s;
	int events;
	uint64_t need;
	int revents;
};

static int ready_all(struct waiter *w, unsigned n)
{
	int cnt = 0;

	for (unsigned i = 0; i < n; i++) {
		w[i].revents = bwi_ready(w[i].s, w[i].events, w[i].need);
		cnt += w[i].revents != 0;
	}
	return cnt;
}

static struct bwi_wait *wait_line(struct bw_stream *s, int ev)
{
	return (ev & BW_POLLIN) ? &H(s)->rwait : &H(s)->wwait;
}

static void count_wait(struct bw_stream *s, int ev)
{
	bool rd = ev & BW_POLLIN;
	struct bwi_stats *st = rd ? &s->rst : &s->wst;
	struct bwi_slot *sl = rd ? s->rsl : s->wsl;

	bw_fetch_add(&wait_line(s, ev)->waits, 1);
	st->waits++;
	mirror(st, sl);
}

void bwi_count_wait(struct bw_stream *s, int ev)
{
	count_wait(s, ev);
}

/* Looks for dead peers (reaps their slots, pads a dead writer's span) for
 * the handles that have waited, in this call or in earlier ones, at least
 * live ns since they last looked: a non-blocking caller, or one that waits
 * in short slices, finds them as a long wait does. Returns the earliest
 * time a handle looks next. */
static uint64_t look_peers(struct waiter *w, unsigned n, uint64_t now,
			   uint64_t live)
{
	uint64_t next = UINT64_MAX;

	for (unsigned i = 0; i < n; i++) {
		struct bw_stream *s = w[i].s;

		if (!s->look_ns) {
			s->look_ns = now; /* the clock starts */
		} else if (now - s->look_ns >= live) {
			bwi_reap(s->m);
			tail_unstick(s);
			s->look_ns = now;
		}
		if (s->look_ns + live < next)
			next = s->look_ns + live;
	}
	return next;
}

/*
 * Waits until one of w[0..n) is ready or timeout_ms passes (-1: forever).
 * Returns the number ready (revents set), 0 on timeout, -EINTR.
 *
 * Sleeping is the heavy side of the asymmetric Dekker with the publishers:
 * raise sleepers, read the futex word, heavy barrier, re-check; a publisher
 * stores its position, light barrier, reads sleepers and bumps the word.
 * Either the re-check sees the publish or the publisher sees the sleeper;
 * a bump between our read of the word and the sleep fails the futex_wait.
 */
static int wait_any(struct waiter *w, unsigned n, int timeout_ms)
{
	struct bwi_waitv v[2 * 64];
	uint64_t start = bwi_now_ns(), deadline = UINT64_MAX, spin_end;
	uint64_t live = (uint64_t)bwi_liveness_ms() * 1000u, timer = UINT64_MAX;
	uint64_t next_look;
	int cnt;

	/* in microseconds: how often to look at the peers, and the timer of
	 * rings whose writers wake readers in batches */
	for (unsigned i = 0; i < n; i++) {
		uint64_t sl = (uint64_t)bwi_wait_slice_ms(w[i].s->m) * 1000u;

		if (sl < live)
			live = sl;
		if ((w[i].events & BW_POLLIN) &&
		    batch_timer_us(w[i].s->m) < timer)
			timer = batch_timer_us(w[i].s->m);
	}
	if (timeout_ms >= 0)
		deadline = start + (uint64_t)timeout_ms * 1000000u;
	cnt = ready_all(w, n);
	if (cnt)
		return cnt;
	next_look = look_peers(w, n, start, live * 1000u);
	if (timeout_ms == 0)
		return ready_all(w, n);
	spin_end = start + BWI_SPIN_NS;
	for (uint64_t look = start; look < spin_end;) {
		if (!(w[0].s->flags & BW_LOW_LATENCY) || n > 1)
			pace(&look);
		else
			look = bwi_now_ns();
		cnt = ready_all(w, n);
		if (cnt)
			return cnt;
	}
	for (;;) {
		unsigned k = 0;
		bool poll_only = false;
		uint64_t now, slice;
		int r;

		for (unsigned i = 0; i < n && k < 128; i++) {
			for (int ev = BW_POLLIN; ev <= BW_POLLOUT; ev <<= 2) {
				struct bwi_wait *wl;

				if (!(w[i].events & ev))
					continue;
				if (!handle_sleeps(w[i].s)) {
					poll_only = true;
					continue;
				}
				wl = wait_line(w[i].s, ev);
				bw_fetch_add(&wl->waiting, BWI_SLEEPER);
				v[k].word = &wl->seq;
				v[k].val = bw_load_acquire(&wl->seq);
				k++;
			}
		}
		bwi_barrier_heavy();
		cnt = ready_all(w, n);
		now = bwi_now_ns();
		if (!cnt && now < deadline) {
			/* until the next look at the peers, the batch timer
			 * or the deadline, whichever comes first */
			slice = next_look > now ? (next_look - now) / 1000u + 1 : 1;
			if (timer < slice)
				slice = timer;
			if (deadline != UINT64_MAX &&
			    (deadline - now) / 1000u + 1 < slice)
				slice = (deadline - now) / 1000u + 1;
			if (poll_only && slice > BWI_TAP_POLL_MS * 1000u)
				slice = BWI_TAP_POLL_MS * 1000u;
			if (k == 1)
				r = bwi_futex_wait_us(v[0].word, v[0].val,
						      (int64_t)slice);
			else if (k > 1)
				r = bwi_futex_waitv_us(v, k, (int64_t)slice);
			else
				r = usleep((useconds_t)slice) ? -errno
							      : -ETIMEDOUT;
			if (r == -ENOSYS)
				r = bwi_futex_wait_us(v[0].word, v[0].val, 1000);
		} else {
			r = 0;
		}
		k = 0;
		for (unsigned i = 0; i < n; i++)
			for (int ev = BW_POLLIN; ev <= BW_POLLOUT; ev <<= 2)
				if ((w[i].events & ev) && handle_sleeps(w[i].s)) {
					bw_fetch_sub(&wait_line(w[i].s, ev)->waiting,
						     BWI_SLEEPER);
					if (!cnt)
						count_wait(w[i].s, ev);
				}
		if (cnt)
			return cnt;
		if (r == -EINTR)
			return bwi_err(EINTR, "interrupted while waiting");
		if (r == -ETIMEDOUT && bwi_now_ns() >= next_look)
			next_look = look_peers(w, n, bwi_now_ns(), live * 1000u);
		cnt = ready_all(w, n);
		if (cnt || bwi_now_ns() >= deadline)
			return cnt;
	}
}

/* Waits for one stream; with BW_NONBLOCK arms its doorbell and returns 0. */
static int wait_one(struct bw_stream *s, int events, uint64_t need)
{
	struct waiter w = {.s = s, .events = events, .need = need};
	bool nb = s->flags & BW_NONBLOCK;
	int r = wait_any(&w, 1, nb ? 0 : -1);

	if (r == 0 && nb)
		bwi_bell_arm(s, need);
	return r < 0 ? r : w.revents;
}

/* Ensures at least one readable byte, and wants n. Returns the count
 * readable, 0 at end of stream, or -errno. The cached tail is refreshed only
 * when it holds less than n. */
static int64_t rd_avail(struct bw_stream *s, uint64_t n)
{
	int64_t a = (int64_t)(s->tail_seen - s->rpos);

	if (__builtin_expect((uint64_t)a >= n, 1))
		return a;
	if (a > 0)
		return rd_refresh(s);
	rd_publish(s);
	/* MRP: a reader that has read everything holds no one's turn back:
	 * R moves to its position (else, after it read a whole ring in one
	 * call, the writer would drop everything while it waits) */
	if (s->policy == BW_POLICY_MRP && s->reader)
		mrp_raise(s->m, s->rpos);
	if (s->rtrickle)
		pace(&s->rlook);
	for (;;) {
		int rev;

		a = rd_refresh(s);
		if (a != 0) {
			s->rtrickle = a < BWI_BATCH && !(s->flags & BW_LOW_LATENCY);
			return a;
		}
		rev = wait_one(s, BW_POLLIN, 1);
		if (rev < 0)
			return rev;
		if (rev == 0)
			return bwi_err(EAGAIN, "no data (non-blocking)");
		if (rev & (BW_POLLHUP | BW_POLLERR)) {
			a = rd_refresh(s);
			if (a != 0)
				return a;
			if (rev & BW_POLLERR)
				return bwi_err(EIO, "a writer died inside an "
						    "ordered write: the ring is "
						    "broken past position %llu",
					       (unsigned long long)s->rpos);
			return 0;
		}
	}
}

static int wr_wait_tail(struct bw_stream *s, uint64_t want);

/* SRP and MRP: a write of n bytes is dropped, and counted. */
static int wr_drop(struct bw_stream *s, uint64_t n)
{
	struct bwi_group *g = &H(s)->grp;

	s->wst.lost += n;
	bw_fetch_add(&g->dropped_writes, 1);
	bw_fetch_add(&g->dropped_bytes, n);
	return -ENOBUFS;
}

/* Makes room for n bytes at head (n <= capacity). Returns 0, -ENOBUFS when
 * the policy drops the write, or -errno. */
static int wr_room(struct bw_stream *s, uint64_t n)
{
	for (;;) {
		int rev = wr_ready(s, n);

		if (rev & BW_POLLERR) {
			if (bw_load_relaxed(&H(s)->ctl.broken))
				return bwi_err(EIO, "the ring is broken: a "
						    "writer died inside an "
						    "ordered write");
			return -EBADMSG;
		}
		if (rev & BW_POLLHUP)
			return bwi_err(EPIPE, "no reader is attached");
		if (rev & BW_POLLOUT)
			return 0;
		if (s->policy == BW_POLICY_SRP || s->policy == BW_POLICY_MRP) {
			/* A dead reader holds an SRP floor until it is found,
			 * and a writer that drops never waits (where the dead
			 * are found otherwise): look, at most once per
			 * liveness interval, before dropping. */
			uint64_t now = bwi_now_ns();

			if (now - s->reap_ns >=
			    (uint64_t)bwi_liveness_ms() * 1000000u) {
				s->reap_ns = now;
				if (bwi_reap(s->m))
					continue;
			}
			return wr_drop(s, n);
		}
		if (s->policy == BW_POLICY_FRP) {
			/* only other writers' unpublished copies are in the
			 * way: wait until the tail has passed them */
			uint64_t want = bw_load_relaxed(&H(s)->prod.head) + n -
					s->m->g.capacity;
			int r = wr_wait_tail(s, want);

			if (r < 0)
				return r;
			continue;
		}
		rev = wait_one(s, BW_POLLOUT, n);
		if (rev < 0)
			return rev;
		if (rev == 0)
			return bwi_err(EAGAIN, "ring full (non-blocking)");
	}
}

void (*bwi_reserve_hook)(struct bw_stream *s, int point);

/*
 * Moves head from hd to hd + n, or fails when another writer moved it first.
 * The slot marker hd | OPEN says who holds the reservation at hd, for a
 * writer that waits behind it (holder_alive).
 *
 * A writer alone on the ring (ctl.multi == 0) moves head with a plain store:
 * the CAS was 10-15% of a 64-byte write. The marker store and the load of
 * multi are the light side of an asymmetric Dekker with a joining writer
 * (writers_go_multi): either the joiner sees our marker naming the current
 * head and waits until head has moved on, or we see multi and take the CAS.
 */
static inline bool head_move(struct bw_stream *s, uint64_t *hd, uint64_t n)
{
	struct bwi_hdr *h = H(s);

	if (__builtin_expect(bwi_reserve_hook != NULL, 0))
		bwi_reserve_hook(s, BWI_HOOK_RESERVE);

	bw_store_relaxed(&s->wsl->pos, *hd | BWI_OPEN_BIT);
	if (__builtin_expect(s->asym, 1)) {
		light(s);
		if (__builtin_expect(!bw_load_relaxed(&h->ctl.multi), 1)) {
			bw_store_relaxed(&h->prod.head, *hd + n);
			goto held;
		}
	}
	if (!bw_cas(&h->prod.head, hd, *hd + n))
		return false;
held:
	/* For a waiter that pads the span if we die (tail_unstick): the
	 * marker alone may be a failed attempt; rstart says head moved. */
	bw_store_relaxed(&s->wsl->rend, *hd + n);
	bw_store_release(&s->wsl->rstart, *hd);
	return true;
}

/* A writer joins a ring that has one already (writer lock held): every
 * writer reserves by CAS from now on. The heavy side of the Dekker in
 * head_move: raise multi, heavy barrier, then wait out a writer whose
 * marker names the current head, i.e. one inside its plain-store window. */
static void writers_go_multi(struct bw_stream *s)
{
	struct bwi_hdr *h = H(s);

	if (bw_load_relaxed(&h->ctl.multi))
		return;
	atomic_store(&h->ctl.multi, 1);
	bwi_barrier_heavy();
	for (uint32_t i = 0; i < s->m->g.max_writers; i++) {
		struct bwi_slot *sl = bwi_wslot(s->m, i);

		for (unsigned k = 0;; k++) {
			uint64_t w = bw_load_acquire(&sl->state);
			uint64_t p = bw_load_acquire(&sl->pos);

			if (BWI_SLOT_STATE(w) != BWI_SLOT_ACTIVE ||
			    p != (bw_load_acquire(&h->prod.head) | BWI_OPEN_BIT))
				break;
			/* a few instructions, unless its process died there */
			sched_yield();
			if (k % 1024 == 1023)
				bwi_reap(s->m);
		}
	}
}

static void wr_unmark(struct bwi_slot *sl);
static int wr_close(struct bw_stream *s, uint64_t hd, uint64_t n);

/*
 * B1: a reader that moves back. Its writers worked out their room from where
 * it was; a reservation made on that room after it moved would overwrite
 * what it went back to. It publishes its position, bumps peer_seq, heavy
 * barrier, and looks at head (bwi_d_lseek); a writer stores head, light
 * barrier, and looks at peer_seq. Either the reader sees the reservation
 * and refuses to move there, or the writer sees the bump and checks its
 * reservation against the room now, before it copies anything into it.
 *
 * Returns 0 when [hd, hd + n) may stand, 1 when it was taken back (nothing
 * was written there, so no scar: the caller reserves again and waits,
 * drops or says -EAGAIN as its room says), or -ETIMEDOUT when a waiter
 * presumed us dead and padded it (nothing may be copied into it: those
 * bytes may be what the reader went back to). A reservation another
 * writer has reserved past cannot be given back until that one is: it
 * reserved on room as stale as ours (room worked out after the reader
 * moved would not reach past our end), so it takes its own back in a few
 * instructions, unless it stalls there; meanwhile we poll, for that or
 * for the room, whatever the call's flags.
 */
static int wr_recheck(struct bw_stream *s, uint64_t hd, uint64_t n)
{
	uint64_t look = bwi_now_ns();

	if (bwi_reserve_hook)
		bwi_reserve_hook(s, BWI_HOOK_RESERVED);
	/* A ring with a writer timeout: CLOSE (wr_close) keeps a waiter that
	 * would presume us dead from padding the span while head may move
	 * back under it, or while we wait below. */
	if (s->fence) {
		int r = wr_close(s, hd, n);

		if (r < 0)
			return r;
	}
	for (unsigned k = 0;; k++) {
		uint32_t seq = bw_load_acquire(&H(s)->ctl.peer_seq);
		uint64_t end = hd + n, min;
		/* the readers as a reservation at hd sees them (below hd -
		 * capacity one has lost its bytes already) */
		int nr = wr_floor(s, seq, hd,
				  bw_load_acquire(&H(s)->prod.tail), &min);

		/* no reader left to overwrite, or a broken ring (the next
		 * call says so), or within the room */
		if (nr <= 0 || end <= min + s->m->g.capacity ||
		    bw_load_relaxed(&H(s)->ctl.broken)) {
			if (s->fence) /* open to the timeout again */
				bw_store_release(&s->wsl->pos, hd | BWI_OPEN_BIT);
			return 0;
		}
		if (bwi_reserve_hook)
			bwi_reserve_hook(s, BWI_HOOK_TAKE_BACK);
		if (bw_cas(&H(s)->prod.head, &end, hd)) {
			wr_unmark(s->wsl);
			return 1;
		}
		/* two writers and a reader in one race: rare enough to poll
		 * (the readiness of a wait sees a head past ours, and would
		 * not wait); a reader that died is found as a wait finds it */
		if (k < 64) {
			sched_yield();
		} else {
			usleep(200);
			if (bwi_now_ns() - look >=
			    (uint64_t)bwi_liveness_ms() * 1000000u) {
				bwi_reap(s->m);
				look = bwi_now_ns();
			}
		}
	}
}

/* B1, after head moved for [hd, hd + n): 1 when the reservation stands (no
 * reader that holds this writer back can have moved back since its room
 * was worked out, or it was checked), 0 when it was taken back, or -errno
 * (wr_recheck). */
static inline int wr_b1(struct bw_stream *s, uint64_t hd, uint64_t n)
{
	int r;

	if (s->policy != BW_POLICY_LOSSLESS && s->policy != BW_POLICY_SRP)
		return 1; /* no reader's position holds these writers */
	light(s);
	if (__builtin_expect(bw_load_relaxed(&H(s)->ctl.peer_seq) ==
				     s->peer_seen,
			     1))
		return 1;
	r = wr_recheck(s, hd, n);
	return r < 0 ? r : !r;
}

static inline int wr_reserve(struct bw_stream *s, uint64_t n, uint64_t *hp)
{
	struct bwi_hdr *h = H(s);
	uint64_t hd = bw_load_relaxed(&h->prod.head);
	int r = s->b1_err;

	if (__builtin_expect(r < 0, 0)) { /* from the fast path */
		s->b1_err = 0;
		return r;
	}

	for (;;) {
		if (__builtin_expect(hd + n > s->limit ||
					     bw_load_relaxed(&h->ctl.peer_seq) !=
						     s->peer_seen,
				     0)) {
			uint64_t old = s->limit;

			if (hd + n > old && s->wtrickle)
				pace(&s->wlook);
			r = wr_room(s, n);
			if (r < 0)
				return r;
			s->wtrickle = s->limit - old < BWI_BATCH &&
				      !(s->flags & BW_LOW_LATENCY);
			hd = bw_load_relaxed(&h->prod.head);
			if (hd + n > s->limit)
				continue;
		}
		if (!head_move(s, &hd, n))
			continue;
		r = wr_b1(s, hd, n);
		if (r < 0)
			return r;
		if (r)
			break;
		hd = bw_load_relaxed(&h->prod.head);
	}
	wmb_after_reserve();
	*hp = hd;
	return 0;
}

/*
 * Several writers complete out of order. A writer whose reservation starts
 * at the tail publishes by moving the tail; one whose predecessors are
 * still copying posts its span (struct bwi_post, BWI_POSTS per writer) and
 * goes on, and whoever moves the tail next carries it over every posted
 * span that starts there: the tail advances over the longest completed
 * prefix, and no writer waits for another to complete. (The thesis keeps
 * two bits per writer in a bitmap of containers, which a byte ring cannot
 * use; spans per writer are the equivalent for bytes.)
 *
 * No span is missed: a poster stores its span, full fence, loads the tail;
 * a publisher moves the tail (a CAS or a store), full fence, scans the
 * spans. Either the poster sees the tail at its start and moves it itself,
 * or the publisher sees the span. The span's release store, the helper's
 * acquire load and its CAS on the tail (a release) carry the poster's data
 * to readers, who load the tail with acquire.
 */

/* The posted span that starts at t, if one does: its end, else 0. */
static uint64_t span_at(const struct bwi_map *m, uint64_t t)
{
	uint32_t hi = bwi_slots_hi(m, BWI_WRITER);

	for (uint32_t i = 0; i < hi; i++) {
		struct bwi_post *p = bwi_wposts(m, i);

		for (uint32_t k = 0; k < BWI_POSTS; k++)
			if (bw_load_acquire(&p[k].start) == (t | BWI_DONE_BIT))
				return bw_load_relaxed(&p[k].end);
	}
	return 0;
}

/*
 * After a publish: wakes the sleepers on the reader line (readers, and
 * writers waiting for the tail). On a ring with wake_batch > 1 only every
 * wake_batch-th publish while they sleep wakes them; they sleep at most
 * wake_usec (wait_timer_us), so the rest is picked up by their timer and no
 * wakeup is lost, only delayed. pending is reset by whoever reaches the
 * batch; increments racing with the reset only delay a wakeup further, to
 * the timer at most. Doorbells (pollable fds) have no timer: rung at once.
 */
static inline void wake_readers(struct bwi_map *m)
{
	struct bwi_wait *w = &m->hdr->rwait;
	uint64_t v = bw_load_relaxed(&w->waiting);

	if (!v)
		return;
	if (m->g.wake_batch > 1 && v < BWI_ARMED) {
		if (bw_fetch_add(&w->pending, 1) + 1 < m->g.wake_batch)
			return;
		bw_store_relaxed(&w->pending, 0);
	}
	bw_fetch_add(&w->wakes, 1);
	wake(m, w, BWI_READER);
}

/* Carries the tail over the spans posted where it stands. */
static void tail_help(struct bw_stream *s)
{
	struct bwi_hdr *h = H(s);

	bw_smp_mb();
	for (;;) {
		uint64_t t = bw_load_acquire(&h->prod.tail);
		uint64_t e = span_at(s->m, t);

		/* a span written by another process: only a forward move
		 * within the reservations is believed */
		if (e <= t || e - t > s->m->g.capacity ||
		    e > bw_load_acquire(&h->prod.head))
			return;
		if (!bw_cas(&h->prod.tail, &t, e))
			continue;
		light(s);
		wake_readers(s->m);
	}
}

/* Breaks the ring at t, unless the tail moved meanwhile: readers read up to
 * the tail, then get -EIO. */
static bool ring_break(struct bwi_map *m, uint64_t t)
{
	struct bwi_hdr *h = m->hdr;

	bw_smp_mb();
	if (bw_load_acquire(&h->prod.tail) != t)
		return false;
	bw_store_release(&h->ctl.broken, 1);
	bwi_bump_peers(m);
	return true;
}

/* Records pad k = [t, e) and moves the tail over it (see struct bwi_pad).
 * Only the waiter that fenced the reservation at t gets here. */
static void pad_record(struct bw_stream *s, uint64_t k, uint64_t t, uint64_t e)
{
	struct bwi_hdr *h = H(s);
	struct bwi_pad *p = &h->padv[k % BWI_PADS];

	bw_store_relaxed(&p->seq, BWI_PAD_BUSY);
	bw_smp_wmb();
	bw_store_relaxed(&p->start, t);
	bw_store_relaxed(&p->end, e);
	bw_store_release(&p->seq, k);
	bw_store_release(&h->prod.pads, k + 1);
	bw_fetch_add(&h->grp.padded_spans, 1);
	bw_fetch_add(&h->grp.padded_bytes, e - t);
	/* nobody else moves the tail from t: its holder is fenced and it
	 * posted nothing */
	bw_store_release(&h->prod.tail, e);
	light(s);
	wake_readers(s->m);
	tail_help(s); /* spans posted behind it */
}

/*
 * A waiter whose wait timed out, after reaping the dead, looks at the
 * reservation at the tail. Its holder's slot marker says start | OPEN with
 * rstart == start (a marker alone may be a failed attempt to reserve). If
 * that writer is alive and, on a ring with a writer timeout, has not held
 * the tail that long (as this handle has seen it), nothing is done. If it
 * is presumed dead, the waiter fences it out with a CAS on its marker (the
 * writer's own completion CASes it too, on such rings: one of the two
 * wins) and pads the span: readers skip it, the ring goes on. A dead writer
 * needs no timeout and no CAS of its own: it will not come back.
 *
 * The ring is broken instead (readers read up to the tail, then -EIO) when
 * the span cannot be padded: its writer died between moving head and
 * recording the span, the pad table is full (BWI_PADS pads within a ring),
 * or a waiter that fenced it died before padding it. Returns true when it
 * padded or broke the ring.
 */
static bool tail_unstick(struct bw_stream *s)
{
	struct bwi_map *m = s->m;
	struct bwi_hdr *h = m->hdr;
	uint64_t t = bw_load_acquire(&h->prod.tail), now = bwi_now_ns();
	uint64_t hd = bw_load_acquire(&h->prod.head), mk = 0, e;
	uint32_t hi = bwi_slots_hi(m, BWI_WRITER);
	struct bwi_slot *holder = NULL;
	bool live = false, claimant = false;

	if (t == hd) /* nothing reserved: a reservation later is another */
		s->stuck_holder = NULL;
	/* with no writer left, readers see the end, and the next writer
	 * drops the reservation (writer_attach) */
	if (!m->writable || t == hd || bw_load_relaxed(&h->ctl.broken) ||
	    bw_load_relaxed(&h->ctl.remote) || span_at(m, t) ||
	    bwi_slot_count(m, BWI_WRITER) == 0)
		return false;
	if (__builtin_expect(bwi_reserve_hook != NULL, 0))
		bwi_reserve_hook(s, BWI_HOOK_UNSTICK);
	for (uint32_t i = 0; i < hi; i++) {
		struct bwi_slot *sl = bwi_wslot(m, i);
		uint64_t p = bw_load_acquire(&sl->pos);
		bool a = BWI_SLOT_STATE(bw_load_acquire(&sl->state)) ==
			 BWI_SLOT_ACTIVE;

		if (!(p & BWI_OPEN_BIT) || BWI_MARK_POS(p) != t)
			continue;
		if (bw_load_acquire(&sl->rstart) != t) {
			claimant |= a; /* between its head move and rstart */
			continue;
		}
		if (a && (p & BWI_CLOSE_BIT))
			return false; /* publishing it right now */
		if (!holder || a) {
			holder = sl;
			mk = p;
			live = a;
		}
	}
	if (!holder) {
		if (claimant)
			return false;
		/* No marker names [t, hd): its writer died inside it, or
		 * took it back between our loads of head and of the markers
		 * (B1, a partial poke_complete, a close). Only the same span
		 * unnamed at the next look too is the former. */
		if (s->orphan_t != t || s->orphan_hd != hd) {
			s->orphan_t = t;
			s->orphan_hd = hd;
			return false;
		}
		return ring_break(m, t);
	}
	/* how long this handle has seen this reservation at this tail (a
	 * new handle, a rollback or another reservation starts the clock
	 * again) */
	e = bw_load_acquire(&holder->rend);
	if (s->stuck_t != t || s->stuck_holder != holder || s->stuck_end != e) {
		s->stuck_t = t;
		s->stuck_holder = holder;
		s->stuck_end = e;
		s->stuck_ns = now;
		s->fenced_ns = 0;
	}
	if (mk & BWI_FENCE_BIT) {
		/* another waiter is padding it: a few stores, unless it
		 * died doing them (still fenced a liveness interval later) */
		if (!s->fenced_ns)
			s->fenced_ns = now;
		if (now - s->fenced_ns < (uint64_t)bwi_liveness_ms() * 1000000u)
			return false;
		return ring_break(m, t);
	}
	if (live && (!m->g.writer_timeout_ms ||
		     now - s->stuck_ns <
			     (uint64_t)m->g.writer_timeout_ms * 1000000u))
		return false;
	return pad_held(s, holder, mk, t);
}

/* Fences the reservation at the tail t that holder's marker mk names, and
 * pads it (see struct bwi_pad). Returns true when it padded or broke the
 * ring; false when the span was completed or another fenced it first. */
static bool pad_held(struct bw_stream *s, struct bwi_slot *holder, uint64_t mk,
		     uint64_t t)
{
	struct bwi_map *m = s->m;
	struct bwi_hdr *h = m->hdr;
	uint64_t k, e;

	k = bw_load_acquire(&h->prod.pads);
	if (k >= BWI_PADS) {
		struct bwi_pad *old = &h->padv[k % BWI_PADS];

		/* reusable once end + capacity <= t (end read from shared
		 * memory: compared without the sum) */
		if (bw_load_acquire(&old->seq) != k - BWI_PADS ||
		    t < m->g.capacity ||
		    bw_load_relaxed(&old->end) > t - m->g.capacity)
			return ring_break(m, t);
	}
	if (!bw_cas(&holder->pos, &mk, mk | BWI_FENCE_BIT))
		return false; /* it completed, or another waiter fenced it */
	/* A dead holder's marker stays after it published and left: only
	 * a tail still at t means the span was never published. Fenced, it
	 * cannot be published by anyone but us now. */
	bw_smp_mb();
	if (bw_load_acquire(&h->prod.tail) != t)
		return false;
	/* the holder cannot record another span without completing this one,
	 * which the fence forbids: rend is its end */
	e = bw_load_acquire(&holder->rend);
	if (bw_load_acquire(&holder->rstart) != t || e <= t ||
	    e - t > m->g.capacity || e > bw_load_acquire(&h->prod.head))
		return ring_break(m, t);
	pad_record(s, k, t, e);
	return true;
}

/* Waits until the tail reaches at least want: the writers before it are
 * copying, usually a copy's worth of time, so it spins first, but briefly,
 * and yields only a few times before it sleeps: a writer before it that
 * shares its CPU was preempted, and runs only once the waiters leave the
 * run queue (yielding to it, under CFS, cost 1-4 Gbit/s with four writers
 * on one CPU; see README). Pads the span at the tail when its writer is
 * presumed dead, and fails when the ring is broken. */
static int wr_wait_tail(struct bw_stream *s, uint64_t want)
{
	struct bwi_hdr *h = H(s);
	uint64_t spin_end = bwi_now_ns() + BWI_SPIN_NS;
	uint64_t next_look = spin_end + (uint64_t)bwi_wait_slice_ms(s->m) * 1000000u;
	unsigned spins = 0;

	for (;;) {
		uint64_t t = bw_load_acquire(&h->prod.tail);
		uint32_t seq;
		int r;

		if (t >= want)
			return 0;
		if (bw_load_relaxed(&h->ctl.broken))
			break;
		if (++spins < 64) {
			bw_cpu_relax();
			continue;
		}
		if (spins < 64 + BWI_POSTS && bwi_now_ns() < spin_end) {
			sched_yield();
			continue;
		}
		bw_fetch_add(&h->rwait.waiting, BWI_SLEEPER);
		seq = bw_load_acquire(&h->rwait.seq);
		bwi_barrier_heavy();
		r = bw_load_acquire(&h->prod.tail) == t
			    ? bwi_futex_wait_us(&h->rwait.seq, seq,
						wait_timer_us(s->m))
			    : 0;
		bw_fetch_sub(&h->rwait.waiting, BWI_SLEEPER);
		if (r != -ETIMEDOUT || bwi_now_ns() < next_look)
			continue;
		bwi_reap(s->m);
		tail_unstick(s); /* pads the span, or breaks the ring */
		next_look = bwi_now_ns() + (uint64_t)bwi_wait_slice_ms(s->m) * 1000000u;
	}
	s->slow |= BWI_SLOW_STOP;
	s->err = bwi_err(EIO, "a writer before this one died inside its "
			      "write: the ring is broken at position %llu",
			 (unsigned long long)bw_load_relaxed(&h->prod.tail));
	return s->err;
}

/* Completes [hd, hd + n) while an earlier reservation is unpublished: posts
 * it in our next entry. The span posted there BWI_POSTS posts ago must be
 * passed first (it usually is): a writer runs at most that far ahead of
 * one that is not scheduled. */
static int wr_post(struct bw_stream *s, uint64_t hd, uint64_t n)
{
	struct bwi_post *p = &bwi_wposts(s->m, s->wslot)[s->npost % BWI_POSTS];

	if (bw_load_relaxed(&p->start) & BWI_DONE_BIT) {
		int r = wr_wait_tail(s, bw_load_relaxed(&p->end));

		if (r < 0)
			return r;
	}
	bw_store_relaxed(&p->end, hd + n);
	bw_store_release(&p->start, hd | BWI_DONE_BIT);
	s->npost++;
	s->post_last = hd + n;
	tail_help(s); /* begins with the full fence of the protocol */
	return 0;
}

/* After a rollback: the slot names no reservation, for waiters
 * (tail_unstick) and for a joining writer (writers_go_multi). */
static void wr_unmark(struct bwi_slot *sl)
{
	bw_store_relaxed(&sl->pos, 0);
	bw_store_release(&sl->rstart, BWI_NO_POS);
}

/*
 * On a ring with a writer timeout: takes the reservation at hd back before
 * publishing it, with a CAS on the marker that a waiter presuming us dead
 * also tries (tail_unstick). Fails when the waiter won: the span is padding
 * now, and these bytes are lost.
 */
static int wr_close(struct bw_stream *s, uint64_t hd, uint64_t n)
{
	uint64_t mk = hd | BWI_OPEN_BIT;

	if (bw_cas(&s->wsl->pos, &mk, mk | BWI_CLOSE_BIT) ||
	    mk == (hd | BWI_OPEN_BIT | BWI_CLOSE_BIT))
		return 0;
	/* the waiter that fenced it reads our rstart and rend as it pads:
	 * a reservation we made now would change them under it (and it would
	 * break the ring). It moves the tail over the span when done; if it
	 * dies first, another waiter breaks the ring, which ends this wait */
	(void)wr_wait_tail(s, hd + n);
	s->wst.lost += n;
	return bwi_err(ETIMEDOUT, "this writer held its reservation at %llu "
				  "for over %u ms and was presumed dead: the "
				  "span was padded, and its %llu bytes are "
				  "not published",
		       (unsigned long long)hd, s->m->g.writer_timeout_ms,
		       (unsigned long long)n);
}

/* Always inlined: it is half of every write's fast path (bw_stream_write,
 * and the index records of IBuf writes); GCC left it a call, which cost
 * 1-2 ns of a 10 ns 16-byte write here. */
static inline __attribute__((always_inline)) int
wr_publish(struct bw_stream *s, uint64_t hd, uint64_t n)
{
	struct bwi_hdr *h = H(s);

	if (__builtin_expect(s->fence, 0)) {
		int r = wr_close(s, hd, n);

		if (r < 0)
			return r;
	}
	if (__builtin_expect(bw_load_acquire(&h->prod.tail) != hd, 0)) {
		int r = wr_post(s, hd, n);

		if (r < 0)
			return r;
		s->wpos = hd + n;
		bwi_count_call(&s->wst, n);
		return 0;
	}
	/* R1: pairs with A1 in rd_refresh: the bytes below hd + n are written
	 * before a reader can see tail pass them. Only we move the tail from
	 * hd: no span starting there is posted. */
	bw_store_release(&h->prod.tail, hd + n);
	/* The slot keeps saying hd | OPEN: harmless, as tail has passed hd. */
	s->wpos = hd + n;
	bwi_count_call(&s->wst, n);
	light(s);
	wake_readers(s->m);
	if (bw_load_relaxed(&h->ctl.multi))
		tail_help(s); /* later writers may have posted */
	return 0;
}

/* ---- entry checks ----------------------------------------------------------- */

static int flush_poke(struct bw_stream *s)
{
	uint64_t st = s->poke_start, n = s->poke_len;

	s->poke_len = 0;
	s->slow &= (uint8_t)~BWI_SLOW_POKE;
	return n ? wr_publish(s, st, n) : 0;
}

static int enter_slow(struct bw_stream *s)
{
	if (!s)
		return bwi_err(EINVAL, "stream handle is NULL");
	if (s->epoch != bwi_epoch)
		return bwi_err(ECHILD, "stream inherited through fork(): use "
				       "bw_fork() to share streams with a child");
	if (s->err)
		return s->err;
	return flush_poke(s);
}

/* Every call starts here: poked data from the previous call is published,
 * and a handle with an error or inherited through fork() stops. */
static inline int enter(struct bw_stream *s)
{
	if (__builtin_expect(!s || s->slow, 0))
		return enter_slow(s);
	return 0;
}

static int need_reader(struct bw_stream *s)
{
	int r = enter(s);

	if (r < 0)
		return r;
	if (!s->reader && !s->tap)
		return bwi_err(EBADF, "stream is not open for reading");
	return 0;
}

static int need_writer(struct bw_stream *s)
{
	int r = enter(s);

	if (r < 0)
		return r;
	if (!s->writer)
		return bwi_err(EBADF, "stream is not open for writing");
	if (s->acq)
		return bwi_err(EBUSY, "a poke_acquire is outstanding: "
				      "complete it first");
	return 0;
}

/* ---- reading calls --------------------------------------------------------- */


__attribute__((noinline)) ssize_t bwi_d_read(struct bw_stream *s, void *buf,
					     size_t n)
{
	int64_t a;
	int r;

	r = need_reader(s);
	if (r < 0)
		return r;
	if (n == 0)
		return 0;
	if (!buf)
		return bwi_err(EFAULT, "read buffer is NULL");
	a = rd_avail(s, n);
	if (a <= 0)
		return a;
	if ((uint64_t)a > n)
		a = (int64_t)n;
	/* a reader that validates, or one that has just attached (a writer
	 * may overtake it before it sees the slot): the seqlock's read */
	if (s->validate || s->rpos < s->safe_from)
		copy_racy(buf, s->data + (s->rpos & s->mask), (size_t)a);
	else
		bwi_copy(buf, s->data + (s->rpos & s->mask), (size_t)a);
	r = rd_validate(s, (uint64_t)a);
	if (r < 0)
		return r;
	if (a >= BWI_SPLICE_MIN)
		bwi_note_read(buf, (size_t)a, s->m, s->rpos);
	s->rpos += (uint64_t)a;
	s->racq = 0;
	rd_publish(s);
	bwi_count_call(&s->rst, (uint64_t)a);
	return a;
}

/* The common read inline: a registered reader with n bytes already known to
 * be there, nothing to validate. Everything else takes bwi_d_read(), or
 * bwi_i_read() for an IBuf. */
BW_API ssize_t bw_stream_read(struct bw_stream *s, void *buf, size_t n)
{
	if (__builtin_expect(buf && bwi_rd_fast(s, n, 0), 1)) {
		bwi_copy(buf, s->data + (s->rpos & s->mask), n);
		if (n >= BWI_SPLICE_MIN)
			bwi_note_read(buf, n, s->m, s->rpos);
		s->rpos += n;
		s->racq = 0;
		rd_publish(s);
		bwi_count_call(&s->rst, n);
		return (ssize_t)n;
	}
	return CALL(s, read, buf, n);
}

__attribute__((noinline)) ssize_t bwi_d_peek(struct bw_stream *s,
					    const void **ptr, size_t n,
					    bool move)
{
	int64_t a;
	int r;

	r = need_reader(s);
	if (r < 0)
		return r;
	if (!ptr)
		return bwi_err(EFAULT, "peek pointer is NULL");
	if (move)
		rd_publish(s); /* the span of the previous peek is released */
	if (n == 0) {
		*ptr = s->data + (s->rpos & s->mask);
		return 0;
	}
	a = rd_avail(s, n);
	if (a <= 0)
		return a;
	if ((uint64_t)a > n)
		a = (int64_t)n;
	/* an acquisition does not move the read position: it stays checked
	 * below safe_from (peek_complete may complete only part) */
	r = rd_validate(s, move ? (uint64_t)a : 0);
	if (r < 0)
		return r;
	*ptr = s->data + (s->rpos & s->mask);
	if (move) {
		s->rpos += (uint64_t)a;
		s->racq = 0;
		bwi_count_call(&s->rst, (uint64_t)a);
	} else {
		s->racq = (uint64_t)a;
	}
	return a;
}

/* The common peek inline: n bytes already known to be there, nothing to
 * validate. The previous peek's span is given back first. */
BW_API ssize_t bw_stream_peek(struct bw_stream *s, const void **ptr, size_t n)
{
	if (__builtin_expect(ptr && bwi_rd_fast(s, n, 0), 1)) {
		rd_publish(s);
		*ptr = s->data + (s->rpos & s->mask);
		s->rpos += n;
		s->racq = 0;
		bwi_count_call(&s->rst, n);
		return (ssize_t)n;
	}
	return CALL(s, peek, ptr, n, true);
}

BW_API ssize_t bw_stream_peek_acquire(struct bw_stream *s, const void **ptr,
				      size_t n)
{
	return CALL(s, peek, ptr, n, false);
}

BW_API int bw_stream_peek_complete(struct bw_stream *s, size_t n)
{
	return CALL(s, peek_complete, n);
}

int bwi_d_peek_complete(struct bw_stream *s, size_t n)
{
	int r = need_reader(s);

	if (r < 0)
		return r;
	if (n > s->racq)
		return bwi_err(EINVAL, "peek_complete of %zu bytes, but only "
				       "%llu were acquired",
			       n, (unsigned long long)s->racq);
	s->rpos += n;
	s->racq -= n;
	rd_publish(s);
	if (n)
		bwi_count_call(&s->rst, n);
	return 0;
}

/* ---- writing calls --------------------------------------------------------- */

/* The fast path of write and poke: a writer with no reservation
 * outstanding reserves n > 0 bytes at *hd within the room already known to
 * be free. Fails (to the slow path) when anything needs a look. */
static inline bool wr_fast(struct bw_stream *s, size_t n, uint64_t *hd)
{
	struct bwi_hdr *h = H(s);
	int r;

	if (!s->writer || s->acq || !n)
		return false;
	*hd = bw_load_relaxed(&h->prod.head);
	/* limit <= head + capacity, so this also bounds n */
	if (*hd + n > s->limit ||
	    bw_load_relaxed(&h->ctl.peer_seq) != s->peer_seen ||
	    !head_move(s, hd, n))
		return false;
	r = wr_b1(s, *hd, n);
	if (__builtin_expect(r <= 0, 0)) {
		/* the slow path reserves again (B1 took this one back), or
		 * says what B1 found */
		s->b1_err = r;
		return false;
	}
	wmb_after_reserve();
	return true;
}

__attribute__((noinline)) ssize_t bwi_d_write(struct bw_stream *s,
					     const void *buf, size_t n)
{
	uint64_t cap, done = 0, hd;
	int r;

	r = need_writer(s);
	if (r < 0)
		return r;
	if (n && !buf)
		return bwi_err(EFAULT, "write buffer is NULL");
	if (n > SSIZE_MAX)
		n = SSIZE_MAX;
	cap = s->m->g.capacity;
	while (done < n) {
		uint64_t c = n - done < cap ? n - done : cap;

		r = wr_reserve(s, c, &hd);
		if (r == 0) {
			bwi_copy(s->data + (hd & s->mask),
			     (const uint8_t *)buf + done, (size_t)c);
			r = wr_publish(s, hd, c);
		} else if (r == -ENOBUFS) {
			r = 0; /* dropped by the policy, and counted */
		}
		if (r < 0)
			return done ? (ssize_t)done : r;
		done += c;
	}
	return (ssize_t)done;
}

/* The common write inline: one piece within the room already known to be
 * free, no other writer in the way. Everything else takes bwi_d_write(),
 * or bwi_i_write() for an IBuf. */
BW_API ssize_t bw_stream_write(struct bw_stream *s, const void *buf, size_t n)
{
	uint64_t hd;

	if (__builtin_expect(s && !s->slow && buf && wr_fast(s, n, &hd), 1)) {
		int r;

		bwi_copy(s->data + (hd & s->mask), buf, n);
		r = wr_publish(s, hd, n);
		return r < 0 ? r : (ssize_t)n;
	}
	return CALL(s, write, buf, n);
}

/* One record of n bytes (n <= capacity) written whole, for a layer above
 * that has done the entry checks (IBufs). Returns 0 or -errno. */
int bwi_rec_write(struct bw_stream *s, const void *rec, size_t n)
{
	uint64_t hd;
	int r = bwi_rec_reserve(s, n, &hd);

	if (r < 0)
		return r;
	bwi_copy(s->data + (hd & s->mask), rec, n);
	return wr_publish(s, hd, n);
}

int bwi_poke_enter(struct bw_stream *s, void **ptr, size_t n)
{
	int r = need_writer(s);

	if (r < 0)
		return r;
	if (!ptr)
		return bwi_err(EFAULT, "poke pointer is NULL");
	if (n > s->m->g.capacity)
		return bwi_err(EMSGSIZE, "poke of %zu bytes exceeds the ring "
					 "capacity %llu",
			       n, (unsigned long long)s->m->g.capacity);
	return 0;
}

ssize_t bwi_d_poke(struct bw_stream *s, void **ptr, size_t n, bool acq)
{
	int r = bwi_poke_enter(s, ptr, n);

	return r < 0 ? r : bwi_poke_reserve(s, ptr, n, acq);
}

ssize_t bwi_poke_reserve(struct bw_stream *s, void **ptr, size_t n, bool acq)
{
	uint64_t hd;
	int r;

	if (n == 0) {
		hd = bw_load_relaxed(&H(s)->prod.head);
		*ptr = s->data + (hd & s->mask);
		if (acq) { /* reserves nothing, and poke_complete(0) ends it */
			s->acq = true;
			s->acq_start = hd;
			s->acq_len = 0;
		}
		return 0;
	}
	r = wr_reserve(s, n, &hd);
	if (r == -ENOBUFS)
		return bwi_err(ENOBUFS, "the ring's readers are a full ring "
					"behind: the write of %zu bytes is "
					"dropped (policy %s)",
			       n, s->policy == BW_POLICY_SRP ? "srp" : "mrp");
	if (r < 0)
		return r;
	*ptr = s->data + (hd & s->mask);
	if (acq) {
		s->acq = true;
		s->acq_start = hd;
		s->acq_len = n;
	} else {
		s->poke_start = hd;
		s->poke_len = n;
		s->slow |= BWI_SLOW_POKE;
	}
	return (ssize_t)n;
}

/* The common poke inline: publish the previous span, reserve the next within
 * the room known to be free. Everything else takes bwi_d_poke(), or
 * bwi_i_poke() for an IBuf. */
BW_API ssize_t bw_stream_poke(struct bw_stream *s, void **ptr, size_t n)
{
	uint64_t hd;

	if (__builtin_expect(s && !(s->slow & (BWI_SLOW_STOP | BWI_SLOW_LAYER)) &&
				     ptr,
			     1)) {
		if (s->slow & BWI_SLOW_POKE) {
			int r = flush_poke(s);

			if (r < 0)
				return r;
		}
		if (__builtin_expect(wr_fast(s, n, &hd), 1)) {
			*ptr = s->data + (hd & s->mask);
			s->poke_start = hd;
			s->poke_len = n;
			s->slow |= BWI_SLOW_POKE;
			return (ssize_t)n;
		}
	}
	return CALL(s, poke, ptr, n, false);
}

BW_API ssize_t bw_stream_poke_acquire(struct bw_stream *s, void **ptr,
				      size_t n)
{
	return CALL(s, poke, ptr, n, true);
}

BW_API int bw_stream_poke_complete(struct bw_stream *s, size_t n)
{
	return CALL(s, poke_complete, n);
}

int bwi_d_poke_complete(struct bw_stream *s, size_t n)
{
	uint64_t end;
	int r = enter(s);

	if (r < 0)
		return r;
	if (!s->writer || !s->acq)
		return bwi_err(EINVAL, "no poke_acquire is outstanding");
	if (n > s->acq_len)
		return bwi_err(EINVAL, "poke_complete of %zu bytes, but %llu "
				       "were acquired",
			       n, (unsigned long long)s->acq_len);
	end = s->acq_start + s->acq_len;
	if (n < s->acq_len) {
		if (s->fence) {
			r = wr_close(s, s->acq_start, s->acq_len);
			if (r < 0) {
				s->acq = false;
				return r;
			}
		}
		bw_store_release(&s->wsl->rend, s->acq_start + n);
		/* only a failed rollback says another writer reserved after
		 * us: once it succeeded, head may pass end again for others */
		if (!bwi_head_rollback(s->m, end, s->acq_start + n)) {
			/* still ours, whole, and open to the timeout */
			bw_store_release(&s->wsl->rend, end);
			if (s->fence)
				bw_store_relaxed(&s->wsl->pos,
						 s->acq_start | BWI_OPEN_BIT);
			return bwi_err(EBUSY, "another writer reserved after "
					      "this poke: complete all %llu "
					      "bytes",
				       (unsigned long long)s->acq_len);
		}
		/* Head may now equal our marker again: a joining writer
		 * would wait for us (writers_go_multi). CLOSE tells it, and
		 * a waiter, that we are publishing; with nothing left, no
		 * marker at all. */
		if (n)
			bw_store_relaxed(&s->wsl->pos, s->acq_start |
							       BWI_OPEN_BIT |
							       BWI_CLOSE_BIT);
		else
			wr_unmark(s->wsl);
	}
	s->acq = false;
	return n ? wr_publish(s, s->acq_start, n) : 0;
}

BW_API ssize_t bw_stream_append(struct bw_stream *s, const void *buf,
				size_t n)
{
	int r;

	if (LAYERED(s))
		return BWI_OP(s->ops, append)(s, buf, n);
	r = enter(s);
	if (r < 0)
		return r;
	/* the DBuf table leaves append to the -ENOSYS default */
	return bwi_err(ENOSYS, "append extends the open record of a record "
			       "ring (layout fr, vr or dr); this is a byte "
			       "ring");
}

/* ---- for the layers above (record.c) ----------------------------------------
 * A layer does its own entry checks with these, then works on the ring
 * through the helpers below, which skip them. */

int bwi_need_reader(struct bw_stream *s)
{
	return need_reader(s);
}

int bwi_need_writer(struct bw_stream *s)
{
	return need_writer(s);
}

int bwi_enter(struct bw_stream *s)
{
	return enter(s);
}

/* Points *ptr at the read position and returns the bytes readable there
 * (at least one; the cached tail is refreshed only when it knows fewer than
 * need), 0 at end of stream, or -errno: -ESTALE once when the reader was
 * overtaken (it then stands at the oldest byte held). */
int64_t bwi_rd_acquire(struct bw_stream *s, uint64_t need, const uint8_t **ptr)
{
	int64_t a = rd_avail(s, need);
	int r;

	if (a <= 0)
		return a;
	/* 0: the layer above has read nothing yet, and checks what it reads
	 * (bwi_rd_held) while the read position is below safe_from */
	r = rd_validate(s, 0);
	if (r < 0)
		return r;
	*ptr = s->data + (s->rpos & s->mask);
	return a;
}

/* Copies n bytes from src, at or after the read position, as a validating
 * reader must (the copy may race an overwrite: bwi_rd_held() tells). */
void bwi_rd_copy(struct bw_stream *s, void *buf, const void *src, size_t n)
{
	if (s->validate || s->rpos < s->safe_from)
		copy_racy(buf, src, n);
	else
		bwi_copy(buf, src, n);
}

/* Whether the bytes from the read position on are still intact, checked
 * after the loads of them (A3). */
bool bwi_rd_held(struct bw_stream *s)
{
	if (__builtin_expect(s->rpos >= s->safe_from, 1))
		return true;
	bw_smp_rmb();
	return bwi_oldest_held(s->m) <= s->rpos;
}

/* Moves the read position n bytes on, and gives their space back now
 * (publish) or at the next call (a peek). */
void bwi_rd_move(struct bw_stream *s, uint64_t n, bool publish)
{
	s->rpos += n;
	s->racq = 0;
	bwi_count_call(&s->rst, n);
	if (publish)
		rd_publish(s);
}

/* Gives back the space of a peeked span (a peek's first step). */
void bwi_rd_release(struct bw_stream *s)
{
	rd_publish(s);
}

/* Skips the reader forward to position to (at most the tail it knows),
 * counting the bytes as lost: a layer's resynchronization. */
void bwi_rd_lost(struct bw_stream *s, uint64_t to)
{
	if (to <= s->rpos)
		return;
	count_lost(s, to - s->rpos);
	s->rpos = to;
	s->racq = 0;
	if (s->tail_seen < to)
		s->tail_seen = to;
	rd_publish(s);
}

/* Reserves n bytes (n <= capacity) at *pos for one record of a layer above,
 * published by bwi_rec_publish(). Returns 0, -ENOBUFS when the policy drops
 * it (counted), or -errno. */
int bwi_rec_reserve(struct bw_stream *s, size_t n, uint64_t *pos)
{
	if (__builtin_expect(!wr_fast(s, n, pos), 0))
		return wr_reserve(s, n, pos);
	return 0;
}

int bwi_rec_publish(struct bw_stream *s, uint64_t pos, size_t n)
{
	return wr_publish(s, pos, n);
}

BW_API int bw_stream_flush(struct bw_stream *s)
{
	return LAYERED(s) ? BWI_OP(s->ops, flush)(s) : bwi_d_flush(s);
}

int bwi_d_flush(struct bw_stream *s)
{
	int r = enter(s);

	if (r == 0 && s->reader)
		rd_publish(s);
	return r;
}

/* ---- other calls ----------------------------------------------------------- */

BW_API int64_t bw_stream_check(struct bw_stream *s, int64_t stamp, int flags)
{
	return CALL(s, check, stamp, flags);
}

int64_t bwi_d_check(struct bw_stream *s, int64_t stamp, int flags)
{
	uint64_t cur;
	int r = enter(s);

	if (r < 0)
		return r;
	if (flags == BW_CHECK_WRITE) {
		if (!s->writer)
			return bwi_err(EBADF, "write stamp on a stream not open "
					      "for writing");
		cur = s->wpos;
	} else if (flags == BW_CHECK_READ) {
		if (!s->reader && !s->tap)
			return bwi_err(EBADF, "read stamp on a stream not open "
					      "for reading");
		cur = s->rpos;
	} else {
		return bwi_err(EINVAL, "check flags must be BW_CHECK_READ or "
				       "BW_CHECK_WRITE");
	}
	if (stamp < 0)
		return (int64_t)cur;
	if ((uint64_t)stamp > cur)
		return bwi_err(EINVAL, "stamp %lld is ahead of the position %llu",
			       (long long)stamp, (unsigned long long)cur);
	if (flags == BW_CHECK_READ &&
	    __builtin_expect(bw_load_relaxed(&H(s)->prod.pads) != 0, 0))
		stamp = (int64_t)pad_stamp(s->m, (uint64_t)stamp);
	/* A3 again: whatever was read through the span happened first. */
	bw_smp_rmb();
	if ((uint64_t)stamp < bwi_oldest_held(s->m))
		return bwi_err(ESTALE, "data since stamp %lld was overwritten",
			       (long long)stamp);
	return (int64_t)cur;
}

/* Moves the read position forward to pos. */
static void rd_forward(struct bw_stream *s, uint64_t pos)
{
	s->rpos = pos;
	s->racq = 0;
	if (s->tail_seen < pos)
		s->tail_seen = pos;
	rd_publish(s);
}

/* Moves the slot's position back to pos: the reader registers again (F1).
 * A reader B1 covers (see wr_recheck) is then safe from pos on, or the
 * move is refused: false, the position as it was, when a write got in
 * meanwhile over pos. Any other validates its reads until it passes the
 * tail it saw then. */
static bool rd_reposition(struct bw_stream *s, uint64_t pos)
{
	uint64_t t, was = s->rpos, racq = s->racq;
	/* B1 covers a reader whose position holds the writers back */
	bool b1 = s->reader && (s->policy == BW_POLICY_LOSSLESS ||
				s->policy == BW_POLICY_SRP);

	if (s->reader) {
		bw_store_release(&s->rsl->pos, pos);
		s->rpub = pos;
		/* F1: see reader_attach. */
		bw_smp_mb();
	}
	t = bw_load_acquire(&H(s)->prod.tail);
	if (!b1 && !s->validate && pos < t && t > s->safe_from)
		s->safe_from = t;
	/* writers work out their room again before their next reservation,
	 * and those reserving now check theirs (B1) */
	if (s->reader && pos < s->rpos)
		bwi_bump_peers(s->m);
	s->rpos = pos;
	s->tail_seen = pos; /* the next read refreshes, padding included */
	s->pad_next = pads_floor(s->m);
	s->racq = 0;
	if (b1 && pos < was) {
		/* B1: the bump is done; a reservation made on the room we
		 * held before shows in head now */
		bwi_barrier_heavy();
		if (pos < bwi_oldest_held(s->m)) {
			rd_forward(s, was);
			s->racq = racq; /* an acquisition holds on */
			return false;
		}
		/* nothing from pos on can be overwritten now: no read needs
		 * checking (one after a seek back used to, and then took a
		 * reservation B1 was about to take back for a loss) */
		if (!s->validate)
			s->safe_from = 0;
	}
	return true;
}

BW_API int64_t bw_stream_lseek(struct bw_stream *s, int64_t off, int whence)
{
	return CALL(s, lseek, off, whence);
}

int64_t bwi_d_lseek(struct bw_stream *s, int64_t off, int whence)
{
	uint64_t t, base, pos, o;
	int r = enter(s);

	if (r < 0)
		return r;
	t = bw_load_acquire(&H(s)->prod.tail);
	if (!s->reader && !s->tap) {
		if (off == 0 && whence == SEEK_CUR)
			return (int64_t)t;
		return bwi_err(ESPIPE, "a writer cannot seek");
	}
	switch (whence) {
	case SEEK_SET:
		base = 0;
		break;
	case SEEK_CUR:
		base = s->rpos;
		break;
	case SEEK_END:
		base = t;
		break;
	default:
		return bwi_err(EINVAL, "whence must be SEEK_SET, SEEK_CUR or "
				       "SEEK_END");
	}
	if ((off < 0 && (uint64_t)(-(off + 1)) + 1 > base) ||
	    (off > 0 && (uint64_t)off > t - base))
		return bwi_err(EINVAL, "seek outside the stream [0, %llu]",
			       (unsigned long long)t);
	pos = base + (uint64_t)off;
	if (pos == s->rpos)
		return (int64_t)pos; /* no move: the next read says if it
				      * was overwritten */
	o = bwi_oldest_held(s->m);
	if (pos < o)
		goto stale;
	if (pos > s->rpos) {
		rd_forward(s, pos);
	} else if (!rd_reposition(s, pos)) {
		o = bwi_oldest_held(s->m);
		goto stale;
	}
	return (int64_t)pos;
stale:
	return bwi_err(ESTALE, "position %llu was overwritten; the oldest held "
			       "is %llu",
		       (unsigned long long)pos, (unsigned long long)o);
}

BW_API int bw_stream_block(struct bw_stream *s, int events, int timeout_ms)
{
	struct bw_pollitem it = {.s = s, .events = (short)events};
	int r = bw_stream_select(&it, 1, timeout_ms);

	return r <= 0 ? r : it.revents;
}

BW_API int bw_stream_select(struct bw_pollitem *items, unsigned n,
			    int timeout_ms)
{
	struct waiter w[64];
	int r;

	if (!items || n == 0 || n > 64)
		return bwi_err(EINVAL, "select takes 1 to 64 streams");
	for (unsigned i = 0; i < n; i++) {
		struct bw_stream *s = items[i].s;

		if (LAYERED(s)) /* a layer may keep its data in another ring */
			s = BWI_OP(s->ops, wait_on)(s, items[i].events);
		r = enter(s);
		if (r < 0)
			return r;
		if (s->reader)
			rd_publish(s);
		w[i].s = s;
		w[i].events = items[i].events & (BW_POLLIN | BW_POLLOUT);
		w[i].need = bwi_room_want(s->m->g.capacity);
		items[i].revents = 0;
	}
	r = wait_any(w, n, timeout_ms);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < n; i++) {
		items[i].revents = (short)w[i].revents;
		if ((items[i].revents & BW_POLLHUP) && LAYERED(items[i].s) &&
		    items[i].s->m->g.scale && bwi_scale_continues(items[i].s))
			items[i].revents &= ~BW_POLLHUP; /* a resize */
	}
	return r;
}

BW_API int bw_stream_set_nonblock(struct bw_stream *s, int on)
{
	int r = enter(s);

	if (r < 0)
		return r;
	if (on)
		s->flags |= BW_NONBLOCK;
	else
		s->flags &= ~BW_NONBLOCK;
	return 0;
}

BW_API int bw_stream_stat(struct bw_stream *s, struct bw_stream_stat *st)
{
	const struct bwi_stats *p;
	int r = enter(s);

	if (r < 0)
		return r;
	if (!st)
		return bwi_err(EFAULT, "stat buffer is NULL");
	memset(st, 0, sizeof(*st));
	st->capacity = s->m->g.capacity;
	st->read_pos = s->rpos;
	st->write_pos = bw_load_acquire(&H(s)->prod.tail);
	st->readers = bwi_slot_count(s->m, BWI_READER);
	st->writers = bwi_slot_count(s->m, BWI_WRITER);
	mirror(&s->rst, s->rsl);
	mirror(&s->wst, s->wsl);
	p = (s->reader || s->tap) ? &s->rst : &s->wst;
	st->waits = p->waits;
	if (s->reader || s->tap)
		st->dropped = bw_load_relaxed(&H(s)->grp.dropped_bytes) -
			      s->drop0;
	else
		st->dropped = s->wst.lost;
	if (LAYERED(s)) /* the layer's own units: data, or records */
		p = (s->reader || s->tap) ? &s->ist : &s->iwst;
	st->bytes = p->bytes;
	st->calls = p->calls;
	if (s->reader || s->tap)
		st->lost = p->lost;
	st->policy = s->policy;
	st->padded = s->padded;
	st->layout = s->m->g.layout == BWI_LAYOUT_INDEX ? 0 : s->m->g.layout;
	st->record_max = bwi_rec_max(&s->m->g);
	st->held_bytes = bwi_dyn_held(s->m);
	st->spliced = s->iwst.spliced;
	st->copied = s->iwst.copied;
	return LAYERED(s) ? BWI_OP(s->ops, stat)(s, st) : 0;
}

/* ---- attaching -------------------------------------------------------------- */

static int reader_attach(struct bw_stream *s, bool from_start)
{
	uint64_t t0 = bw_load_acquire(&H(s)->prod.tail), t, pos;
	int r;

	s->drop0 = bw_load_relaxed(&H(s)->grp.dropped_bytes);
	s->pad_next = pads_floor(s->m);
	if (!s->m->writable || s->policy == BW_POLICY_MRP ||
	    s->policy == BW_POLICY_FRP) {
		/* Writers may overwrite what this reader has not read: it
		 * validates every read. */
		s->validate = true;
		s->safe_from = UINT64_MAX;
	}
	if (!s->m->writable) {
		/* A tap: no slot, so it never holds writers back. */
		s->tap = true;
		pos = from_start ? bwi_oldest_held(s->m) : t0;
		s->rpos = s->rpub = s->tail_seen = pos;
		return 0;
	}
	r = bwi_slot_claim(s->m, BWI_READER, t0, &s->rslot, &s->rgen);
	if (r == -ENOSPC && bwi_reap(s->m)) /* readers that died hold some */
		r = bwi_slot_claim(s->m, BWI_READER, t0, &s->rslot, &s->rgen);
	if (r < 0)
		return r;
	s->reader = true;
	s->rsl = bwi_rslot(s->m, s->rslot);
	/* F1: pairs with F2 in bwi_min_reader. Either the writer's scan sees
	 * our slot, or our load of tail below sees every tail it published
	 * before scanning; its cached limit then never lets it overwrite bytes
	 * at or above that tail. We start at t0, where we registered: bytes a
	 * writer wrote once it saw us are ours (a FIFO writer that waited for
	 * us writes them). Those below t are validated as we read them, in
	 * case a writer that had not seen us overwrote them. */
	bw_smp_mb();
	t = bw_load_acquire(&H(s)->prod.tail);
	s->rpos = s->rpub = s->tail_seen = t0;
	if (t > t0 && !s->validate)
		s->safe_from = t;
	/* from the oldest byte held, or the oldest after a write that got in
	 * as we went there (B1) */
	while (from_start && (pos = bwi_oldest_held(s->m)) < s->rpos &&
	       !rd_reposition(s, pos))
		;
	/* MRP: a new reader's previous position is where it starts. That
	 * also lifts an R left behind while no reader was attached (the
	 * writer then overwrote freely), which would drop every write. */
	if (s->policy == BW_POLICY_MRP)
		mrp_raise(s->m, s->rpos);
	return 0;
}

static int writer_attach(struct bw_stream *s)
{
	struct bwi_hdr *h = H(s);
	uint64_t hd, t = 0;
	int r = 0;

	if (!s->m->writable)
		return bwi_err(EACCES, "ring '%s' is read-only for this process",
			       s->m->name);
	bwi_reap(s->m);
	bwi_writer_lock(s->m);
	if (bw_load_relaxed(&h->ctl.remote)) {
		if (bwi_slot_count(s->m, BWI_WRITER) > 0) {
			r = bwi_err(EBUSY, "ring '%s' is fed by a remote writer "
					   "(beltway push): it takes no other "
					   "writer until that ends",
				    s->m->name);
			goto out;
		}
		/* the server that held it is gone */
		bw_store_relaxed(&h->ctl.remote, 0);
	}
	if (bwi_slot_count(s->m, BWI_WRITER) == 0) {
		/* No writer is attached, so none is mid-write and the
		 * positions hold still: check them, and drop what a dead
		 * writer reserved and never published. */
		t = bw_load_acquire(&h->prod.tail);
		hd = bw_load_relaxed(&h->prod.head);
		if (hd < t || hd - t > s->m->g.capacity) {
			r = bwi_err(EBADMSG, "ring positions are inconsistent "
					     "(head %llu, tail %llu): corrupted "
					     "ring",
				    (unsigned long long)hd,
				    (unsigned long long)t);
			goto out;
		}
		if (hd != t)
			bwi_head_rollback(s->m, hd, t);
		/* markers and spans posted by the dead name nothing now */
		for (uint32_t i = 0; i < bwi_slots_hi(s->m, BWI_WRITER); i++) {
			struct bwi_post *p = bwi_wposts(s->m, i);

			wr_unmark(bwi_wslot(s->m, i));
			for (uint32_t k = 0; k < BWI_POSTS; k++)
				bw_store_relaxed(&p[k].start, 0);
		}
		bw_store_relaxed(&h->ctl.broken, 0);
		bw_store_relaxed(&h->ctl.multi, 0);
	} else {
		writers_go_multi(s);
		t = bw_load_acquire(&h->prod.tail);
	}
	r = bwi_slot_claim(s->m, BWI_WRITER, t, &s->wslot, &s->wgen);
out:
	bwi_writer_unlock(s->m);
	if (r < 0)
		return r;
	s->writer = true;
	s->fence = s->m->g.writer_timeout_ms != 0;
	s->wsl = bwi_wslot(s->m, s->wslot);
	s->wpos = t;
	s->limit = 0;
	s->peer_seen = bw_load_relaxed(&h->ctl.peer_seq) - 1;
	return 0;
}

int bwi_remote_writer_claim(struct bw_stream *w)
{
	struct bwi_hdr *h = H(w);
	int r = 0;

	bwi_reap(w->m);
	bwi_writer_lock(w->m);
	if (bwi_slot_count(w->m, BWI_WRITER) != 1 || w->acq || w->poke_len)
		r = bwi_err(EBUSY, "ring '%s' has another writer: a remote "
				   "writer must be its only one",
			    w->m->name);
	else
		bw_store_relaxed(&h->ctl.remote, 1);
	bwi_writer_unlock(w->m);
	return r;
}

void bwi_remote_writer_release(struct bw_stream *w)
{
	bwi_writer_lock(w->m);
	bw_store_relaxed(&H(w)->ctl.remote, 0);
	/* The remote writer's positions are the ring's now. */
	w->wpos = bw_load_acquire(&H(w)->prod.tail);
	w->limit = 0;
	bwi_writer_unlock(w->m);
}

void bwi_wake_readers(struct bwi_map *m)
{
	/* The remote writer's tail store is not ours, so there is no light
	 * side here: a full fence orders our load of tail (by the caller)
	 * before the load of the sleepers, against a reader that raises its
	 * flag, barriers, and loads tail. */
	bw_smp_mb();
	wake_readers(m);
}

/* Closing with a poke_acquire never completed, which others reserved
 * after: the span becomes padding, as a dead writer's does (readers skip
 * it, the ring goes on), once the writers before it have published. If
 * that cannot be (the ring broke, the pad table is still busy), the ring
 * breaks: the data after it can never be published in order. Returns true
 * when a waiter that fenced the span pads it, and needs its marker. */
static bool acq_abandon(struct bw_stream *s)
{
	struct bwi_hdr *h = H(s);
	uint64_t mk = bw_load_acquire(&s->wsl->pos);

	if (mk & BWI_FENCE_BIT)
		return true; /* a waiter fenced it already: it pads */
	if ((mk & BWI_OPEN_BIT) && BWI_MARK_POS(mk) == s->acq_start &&
	    wr_wait_tail(s, s->acq_start) == 0) {
		if (pad_held(s, s->wsl, mk, s->acq_start))
			return false;
		/* a waiter fenced it first: it pads, and needs the marker */
		if (bw_load_acquire(&s->wsl->pos) & BWI_FENCE_BIT)
			return true;
	}
	if (bw_load_relaxed(&h->prod.tail) <= s->acq_start)
		bw_store_release(&h->ctl.broken, 1);
	return false;
}

/* Whether another writer, alive, holds the reservation at the tail. */
static bool tail_held_by_live(const struct bw_stream *s)
{
	struct bwi_map *m = s->m;
	uint64_t t = bw_load_acquire(&m->hdr->prod.tail);
	uint32_t hi = bwi_slots_hi(m, BWI_WRITER);

	for (uint32_t i = 0; i < hi; i++) {
		struct bwi_slot *sl = bwi_wslot(m, i);
		uint64_t p = bw_load_acquire(&sl->pos);

		if (i != s->wslot && (p & BWI_OPEN_BIT) && BWI_MARK_POS(p) == t &&
		    BWI_SLOT_STATE(bw_load_acquire(&sl->state)) ==
			    BWI_SLOT_ACTIVE &&
		    bwi_pid_alive((pid_t)bw_load_relaxed(&sl->pid),
				  bw_load_relaxed(&sl->starttime)))
			return true;
	}
	return false;
}

static void detach(struct bw_stream *s)
{
	if (s->epoch != bwi_epoch || !s->m->hdr)
		return; /* the parent's attachment, not ours */
	mirror(&s->rst, s->rsl);
	mirror(&s->wst, s->wsl);
	if (s->writer) {
		flush_poke(s);
		/* a span we posted is published before we go, unless a live
		 * writer holds the reservation the tail stands at: its
		 * publish carries the tail over ours (tail_help), and it may
		 * keep a record open for append as long as it likes */
		if (s->post_last && !tail_held_by_live(s))
			wr_wait_tail(s, s->post_last);
		if (s->acq && s->acq_len &&
		    (bwi_head_rollback(s->m, s->acq_start + s->acq_len,
				       s->acq_start) ||
		     !acq_abandon(s)))
			wr_unmark(s->wsl); /* nothing of ours is there now */
		bwi_writer_lock(s->m);
		bwi_slot_release(s->m, BWI_WRITER, s->wslot, s->wgen);
		bwi_writer_unlock(s->m);
		s->writer = false;
		s->wsl = NULL;
	}
	if (s->reader) {
		bwi_slot_release(s->m, BWI_READER, s->rslot, s->rgen);
		s->reader = false;
		s->rsl = NULL;
	}
}

/* The other side's attach and detach counts, taken before we attach. */
struct peer_seen {
	uint32_t att, det;
};

static struct peer_seen peers_now(const struct bwi_map *m, enum bwi_role other)
{
	const struct bwi_ctl *c = &m->hdr->ctl;

	return (struct peer_seen){
		.att = bw_load_acquire(other == BWI_READER ? &c->rattach
							   : &c->wattach),
		.det = bw_load_acquire(other == BWI_READER ? &c->rdetach
							   : &c->wdetach),
	};
}

/* Waits, like a FIFO open, until the other side is or was there with us: one
 * attached now, or one that attached or left since we started (a writer
 * that wrote everything and closed before we looked still ends the wait;
 * we read its data, then the end). */
static int wait_peer(struct bw_stream *s, enum bwi_role other,
		     struct peer_seen seen)
{
	struct bwi_hdr *h = H(s);

	for (;;) {
		uint32_t seq = bw_load_acquire(&h->ctl.peer_seq);
		struct peer_seen now = peers_now(s->m, other);
		int r;

		if (bwi_slot_count(s->m, other) > 0 || now.att != seen.att ||
		    now.det != seen.det)
			return 0;
		if (s->flags & BW_NONBLOCK)
			return other == BWI_READER
				       ? bwi_err(ENXIO, "no reader is attached "
							"(non-blocking open)")
				       : 0;
		r = bwi_futex_wait_us(&h->ctl.peer_seq, seq,
				      (int64_t)bwi_liveness_ms() * 1000);
		if (r == -EINTR)
			return bwi_err(EINTR, "interrupted while waiting for "
					      "the other side");
		if (r == -ETIMEDOUT)
			bwi_reap(s->m);
	}
}

/* The handle's copies of the mapping's hot fields, and its flags. */
static void handle_bind(struct bw_stream *s, struct bwi_map *m, int flags)
{
	s->m = m;
	s->hdr = m->hdr;
	s->data = m->data;
	s->mask = m->mask;
	s->flags = flags;
	s->policy = (uint8_t)m->g.policy;
	s->nreaders = -1;
}

/* Attaches s to the ring m (s takes over the caller's reference) with the
 * open flags. On failure the reference is still the caller's. */
int bwi_attach(struct bw_stream *s, struct bwi_map *m, int flags)
{
	/* The other side's comings and goings counted from before ours. */
	struct peer_seen seen =
		peers_now(m, (flags & BW_WRITE) ? BWI_READER : BWI_WRITER);
	int r = 0;

	handle_bind(s, m, flags);
	/* A self-scaling ring's handle takes its place in the region before
	 * the control segment's: a writer that sees a reader there writes
	 * for it, a reader that sees a writer there reads what it writes. A
	 * second writer finds the region's one writer slot taken. */
	if (m->g.scale)
		r = bwi_stack_build(s);
	if (r == 0 && (flags & BW_WRITE))
		r = writer_attach(s);
	if (r == 0 && (flags & BW_READ))
		r = reader_attach(s, flags & BW_FROM_START);
	if (r == 0 && !m->g.scale)
		r = bwi_stack_build(s);
	if (r == 0 && !(flags & (BW_NOWAIT | BWI_NO_PEER_WAIT)) &&
	    (flags & (BW_READ | BW_WRITE)) != (BW_READ | BW_WRITE))
		r = wait_peer(s, (flags & BW_WRITE) ? BWI_READER : BWI_WRITER,
			      seen);
	if (r < 0) {
		if (LAYERED(s))
			BWI_OP(s->ops, detach)(s);
		detach(s);
		s->m = NULL;
		return r;
	}
	handles_add(s);
	return 0;
}

/* Binds s to m, a private placeholder ring, as the handle of a shadow: no
 * slot anywhere; every call goes to the shadow layer (ops). */
void bwi_attach_shadow(struct bw_stream *s, struct bwi_map *m, int flags,
		       struct bw_shadow *sh, const struct bwi_ops *ops)
{
	handle_bind(s, m, flags);
	s->shadow = sh;
	s->ops = ops;
	s->slow |= BWI_SLOW_LAYER;
	handles_add(s);
}

/* Attaches s to m as the reader whose slot someone claimed for this
 * process (bwi_slot_keep): s takes over the caller's reference.
 * Returns -ESRCH when the slot is not one this process may adopt. */
int bwi_attach_adopt(struct bw_stream *s, struct bwi_map *m, uint32_t slot,
		     int flags)
{
	struct bwi_slot *sl;
	uint64_t w, pos;
	int r;

	if (slot >= m->g.max_readers || !m->writable)
		return -ESRCH;
	sl = bwi_rslot(m, slot);
	w = bw_load_acquire(&sl->state);
	pos = bw_load_relaxed(&sl->pos);
	if (BWI_SLOT_STATE(w) != BWI_SLOT_ACTIVE ||
	    bw_load_relaxed(&sl->pid) != (uint32_t)bwi_self_pid() ||
	    bw_load_relaxed(&sl->starttime) != bwi_self_starttime() ||
	    pos > bw_load_acquire(&m->hdr->prod.tail))
		return -ESRCH;
	handle_bind(s, m, flags);
	s->drop0 = bw_load_relaxed(&H(s)->grp.dropped_bytes);
	s->pad_next = pads_floor(m);
	s->reader = true;
	s->rslot = slot;
	s->rgen = BWI_SLOT_GEN(w);
	s->rsl = sl;
	/* the slot held pos since before any byte past it was written */
	s->rpos = s->rpub = s->tail_seen = pos;
	/* a region's stack: its layout layer, as bwi_attach builds it */
	r = bwi_stack_build(s);
	if (r < 0) {
		detach(s);
		s->m = NULL;
		return r;
	}
	handles_add(s);
	return 0;
}

/* Waits for room for n bytes at head (n <= capacity): with n the
 * capacity, until every reader has read all that was written. */
int bwi_wr_room(struct bw_stream *s, uint64_t n)
{
	int r = need_writer(s);

	return r < 0 ? r : wr_room(s, n);
}

/* Counts a write of n bytes the policy drops (SRP, MRP), for a layer that
 * drops a call before it reaches the ring; returns -ENOBUFS. */
int bwi_wr_drop(struct bw_stream *s, uint64_t n)
{
	return wr_drop(s, n);
}

void bwi_stream_free(struct bw_stream *s)
{
	bwi_bell_close(s);
	bwi_map_put(s->m);
	free(s);
}

BW_API int bw_stream_open(const char *name, int flags, struct bw_stream **out)
{
	struct bw_stream *s;
	struct bwi_map *m;
	int r;

	if (!out)
		return bwi_err(EINVAL, "bw_stream_open needs an out pointer");
	*out = NULL;
	if (flags & ~BWI_OPEN_FLAGS)
		return bwi_err(EINVAL, "unknown open flags 0x%x",
			       flags & ~BWI_OPEN_FLAGS);
	if (!(flags & (BW_READ | BW_WRITE)))
		return bwi_err(EINVAL, "open needs BW_READ, BW_WRITE or both");
	if (name && strchr(name, '/')) /* HOST:PORT/NAME */
		return bw_shadow_stream(name, flags, NULL, out);
	r = bwi_name_check(name); /* parts of rings (NAME@K) are not opened */
	if (r < 0)
		return r;
	r = bwi_stream_new(&s);
	if (r < 0)
		return r;
	r = bwi_map_open(name, (flags & BW_WRITE) ? BWI_ACC_RW : BWI_ACC_ANY, &m);
	if (r < 0) {
		free(s);
		return r;
	}
	r = bwi_attach(s, m, flags);
	if (r < 0) {
		bwi_map_put(m);
		bwi_stream_free(s);
		return r;
	}
	*out = s;
	return 0;
}

BW_API int bw_stream_close(struct bw_stream *s)
{
	if (!s)
		return bwi_err(EINVAL, "stream handle is NULL");
	if (LAYERED(s) && s->epoch == bwi_epoch)
		BWI_OP(s->ops, detach)(s);
	handles_del(s);
	detach(s);
	bwi_stream_free(s);
	return 0;
}

/* After bw_fork(), in the child: an attachment of its own for s, at the
 * position its parent had. The parent's slot protects every byte from its
 * published position on while the child's slot goes live. */
int bwi_reattach(struct bw_stream *s)
{
	int r = 0;

	s->epoch = bwi_epoch;
	s->slow = (uint8_t)((s->slow & BWI_SLOW_LAYER) |
			    (s->err ? BWI_SLOW_STOP : 0));
	bwi_bell_child(s);
	if (s->shadow) {
		/* its endpoint and replica are the parent's */
		s->err = bwi_err(EINVAL, "a shadow stays in the process that "
					 "opened it: this child cannot use it");
		s->slow |= BWI_SLOW_STOP;
		return s->err;
	}
	if (s->m->g.flags & BW_RING_DYNAMIC) {
		/* its data is in the parent's heap: a copy here goes stale */
		s->reader = s->writer = false;
		s->rsl = s->wsl = NULL;
		s->err = bwi_err(EINVAL, "a dynamic ring stays in the process "
					 "that made it: this child cannot use "
					 "it");
		s->slow |= BWI_SLOW_STOP;
		return s->err;
	}
	if (s->writer) {
		s->poke_len = 0; /* the parent's reservations stay the parent's */
		s->acq = false;
		s->rec_w = 0;
		bwi_writer_lock(s->m);
		writers_go_multi(s);
		r = bwi_slot_claim(s->m, BWI_WRITER, s->wpos, &s->wslot,
				   &s->wgen);
		bwi_writer_unlock(s->m);
		s->limit = 0;
		s->wsl = r < 0 ? NULL : bwi_wslot(s->m, s->wslot);
		s->wst = (struct bwi_stats){0};
		if (r < 0)
			s->writer = false;
	}
	if (r == 0 && s->reader) {
		r = bwi_slot_claim(s->m, BWI_READER, s->rpos, &s->rslot,
				   &s->rgen);
		s->rpub = s->rpos;
		s->racq = 0;
		s->rec_rfoot = 0;
		s->rsl = r < 0 ? NULL : bwi_rslot(s->m, s->rslot);
		s->rst = (struct bwi_stats){0};
		if (r < 0)
			s->reader = false;
	}
	if (r < 0) {
		s->err = r;
		s->slow |= BWI_SLOW_STOP;
	}
	return r;
}

/* The DBuf: the bottom of every stack. */
const struct bwi_ops bwi_dbuf_ops = {
	.size = sizeof(struct bwi_ops),
	.name = "dbuf",
	.read = bwi_d_read,
	.peek = bwi_d_peek,
	.peek_complete = bwi_d_peek_complete,
	.write = bwi_d_write,
	.poke = bwi_d_poke,
	.poke_complete = bwi_d_poke_complete,
	.flush = bwi_d_flush,
	.check = bwi_d_check,
	.lseek = bwi_d_lseek,
};
