/* SPDX-License-Identifier: MIT */
/*
 * Self-scaling rings (thesis section 4.5.1): a layer over a chain of
 * regions, each a DBuf of its own size.
 *
 * The named ring is a control segment: its slots say who is attached (FIFO
 * opens, end of stream, liveness work as for any ring), and it holds the
 * table of regions, epoch k in entry k % BWI_EPOCHS. Region k is the ring
 * .ID@K (ID: the control segment's ring id, so a ring removed and made
 * anew under its name has regions of its own), whose positions start
 * where region k - 1 ended (its head, tail and scar start there), so
 * positions stay absolute and nothing is copied.
 * A handle forwards every call to a handle on the region it is in; the
 * fast paths are the DBuf's own.
 *
 * Resizing, by the one writer, only as it starts a new loop through the
 * region (the write that would pass the loop's end), at position B (that
 * write's start):
 *  0. deck-cut only (its regions share .ID@deck's pages): it raises the
 *     resizing flag, fences, and waits until every reader has read to B (a
 *     non-blocking or SRP writer lowers the flag and tries again a loop
 *     later), then gives the pages beyond a smaller size back to the kernel
 *     (MADV_REMOVE). The flag stays up until step 4 is done;
 *  1. it creates region k + 1, starting at B;
 *  2. it keeps a slot there at B for each reader attached to region k: a
 *     slot with that reader's pid, marked KEPT and tagged with the
 *     reader's slot in region k (index and generation). The writer then
 *     waits for those readers in k + 1 as for any (lossless), before they
 *     arrive;
 *  3. it attaches to region k + 1 (before anyone can find it: a reader
 *     that finds the region finds its writer);
 *  4. it fills in entry k + 1 (seq last, release), sets entry k's end to B
 *     and cur to k + 1; then, after a full fence, gives up the slots kept
 *     for readers that left region k meanwhile and keeps slots for
 *     readers that came after step 2 (check_kept);
 *  5. it leaves region k, whose readers then read to B and see its end;
 *  6. it removes the regions before k that no reader is in any more
 *     (collect), and resizes at all only once none is left: so at most
 *     two regions are held, and no reader falls a region behind.
 * A reader that reaches the end of region k finds entry k's end set, opens
 * region k + 1 and adopts the slot kept for it (found by its tag; CAS
 * adopt KEPT -> TAKEN). A slot kept for a reader that left region k
 * without following is given up (CAS KEPT -> GIVEN_UP) and freed by
 * whichever of the two notices first: the writer in step 4, or the reader
 * as it closes (it leaves region k, fences, then looks for region k + 1).
 * A new reader takes its slot in region cur, fences, and reads cur again:
 * if the writer moved on meanwhile (its step-4 scan may have missed the
 * slot) it leaves and tries the new region (reader_enter). So no reader
 * that attached ever finds its place not kept. A new deck-cut reader that
 * starts at the oldest byte (BW_FROM_START) also reads the resizing flag
 * after its fence: either the writer's step-0 wait saw its slot, and waits
 * for it to read to B before the next region reuses the pages, or it sees
 * the flag and starts at the write position instead (the Dekker with step
 * 0).
 *
 * When to resize: the writer samples the distance to its slowest reader
 * four times a loop, and times its loops. A loop counts only once every
 * reader has left the older regions (before, it times the readers' backlog
 * there, up to the old size, not this size), and not the first such loop
 * (it warms the caches). A rate sample spans whole loops, SAMPLE_BYTES at
 * least (a small ring's loop is too short to time alone); a size's rate is
 * the median of its last three samples.
 * Measurement decides first: the writer moves to the double size if it
 * measured 5% faster lately (REPROBE_NS and REPROBE_SAMPLES), to the half
 * if it measured faster at all: a larger ring has to earn its memory, and
 * on a flat landscape measured with noise pressure alone would walk the
 * ring up. Else
 * pressure says which neighbour to try: past the high watermark the double
 * size, under the low one the half, if not measured lately. Once settled
 * (6 samples) it tries a neighbour not measured lately, so each neighbour
 * is measured again as the stream and the machine change. A size that
 * loses to a neighbour (the writer moves away from it because the
 * neighbour measured faster) keeps its rate twice as long each time in a
 * row, up to 32 times (lost): a try costs two resizes and a loop at the
 * slower size, and on a writer that outruns its reader, where pressure
 * always asks for the double size, trying it every 200 ms cost more than
 * half the throughput.
 * Deck-cut resizes cost less, so its watermarks lie closer (the thesis's
 * rule). The optimum is what this machine measures, not a cache size: on
 * a stream whose writer outruns its reader the ring is always full, and
 * the thesis's rule alone would grow it to the largest size.
 * A call needs its bytes in one region (a poke; a write of at most the
 * largest size, atomic as a DBuf's of at most its capacity): a loop it
 * starts never shrinks the ring below it, and grows it to hold it. With a
 * reader still in the older region that grow waits (a lossless writer that
 * blocks: until the readers have taken this region), says -EAGAIN, or
 * drops the call (SRP).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bwi_stream.h"

#define SAMPLE_BYTES (UINT64_C(1) << 20) /* a rate sample: at least this */
#define REPROBE_NS (UINT64_C(200) * 1000000) /* rates older, and */
#define REPROBE_SAMPLES 64u			/* older: measured again */
#define LOST_MAX 5 /* a losing size: measured again 32 times as late at most */

struct bwi_scaler {
	struct bw_stream *r, *w; /* handles on the regions we are in */
	uint64_t kr, kw;	 /* their epochs */
	/* the writer's measurements */
	uint64_t loop_end, sample_at, loop_t0, maxdist;
	unsigned loops;		/* loops completed at this size */
	unsigned clean;		/* loops in a row started with every reader
				 * in this region */
	uint64_t smp_t0, smp_bytes; /* the sample being taken */
	uint64_t gc;		/* the oldest region not yet removed */
	unsigned gc_tries;	/* loops that looked for it */
	bool stuck;		/* a resize failed: stay at this size */
	double rate[64];	/* bytes/ns by shift, 0: never measured */
	uint64_t rate_ns[64];	/* when */
	uint64_t rate_smp[64];	/* and after how many samples */
	uint8_t lost[64];	/* times in a row the size lost to a
				 * neighbour: its rate is kept for
				 * 2^lost times as long */
	uint64_t samples;	/* taken, at every size */
	double recent[3];	/* the last loops' rates at this size */
	unsigned nrecent;
	/* bw_stream_fd(): an epoll set holding the doorbell of the region
	 * handle we wait on (the reader's, else the writer's), which moves
	 * with it from region to region */
	int epfd;
	pid_t ep_pid;	 /* the process that made it */
	uint64_t ep_key; /* whose doorbell it holds: bell_key() */
};

static struct bwi_scale_area *area(const struct bw_stream *s)
{
	return bwi_scale_area(s->m);
}

static unsigned lo_shift(const struct bw_stream *s)
{
	return (s->m->g.scale_shifts >> 8) & 0xff;
}

static unsigned hi_shift(const struct bw_stream *s)
{
	return (s->m->g.scale_shifts >> 16) & 0xff;
}

/* Entry k, checked: it names epoch k and a size within the ring's range. */
static int entry(const struct bw_stream *s, uint64_t k, uint64_t *start,
		 uint64_t *end, unsigned *shift)
{
	struct bwi_epoch *e = &area(s)->ev[k % BWI_EPOCHS];
	uint64_t sh;

	if (bw_load_acquire(&e->seq) != k)
		return bwi_err(EIO, "self-scaling ring '%s': region %llu is no "
				    "longer in its table (this handle fell "
				    "behind)",
			       s->m->name, (unsigned long long)k);
	*start = bw_load_relaxed(&e->start);
	*end = bw_load_acquire(&e->end);
	sh = bw_load_relaxed(&e->shift);
	if (sh < lo_shift(s) || sh > hi_shift(s) ||
	    (*end != BWI_NO_POS && *end < *start))
		return bwi_err(EBADMSG, "self-scaling ring '%s': region %llu "
					"is corrupt",
			       s->m->name, (unsigned long long)k);
	*shift = (unsigned)sh;
	return 0;
}

/* The tag of a kept slot: the slot, in the region before, of the reader
 * it is kept for (index and generation). */
static uint64_t tag_of(uint32_t idx, uint32_t gen)
{
	return (uint64_t)idx << 32 | gen;
}

/* The slot of m kept for this process's reader with tag, or -1. */
static int64_t find_kept(struct bwi_map *m, uint64_t tag)
{
	uint32_t hi = bwi_slots_hi(m, BWI_READER);

	for (uint32_t i = 0; i < hi && i < m->g.max_readers; i++) {
		struct bwi_slot *sl = bwi_rslot(m, i);

		if (BWI_SLOT_STATE(bw_load_acquire(&sl->state)) ==
			    BWI_SLOT_ACTIVE &&
		    bw_load_relaxed(&sl->adopt) == BWI_ADOPT_KEPT &&
		    bw_load_relaxed(&sl->kept_for) == tag &&
		    bw_load_relaxed(&sl->pid) == (uint32_t)bwi_self_pid() &&
		    bw_load_relaxed(&sl->starttime) == bwi_self_starttime())
			return i;
	}
	return -1;
}

/* Gives up kept slot idx of m (CAS KEPT -> GIVEN_UP), then frees it. */
static void release_kept(struct bwi_map *m, uint32_t idx)
{
	struct bwi_slot *sl = bwi_rslot(m, idx);
	uint64_t w = bw_load_acquire(&sl->state), want = BWI_ADOPT_KEPT;

	if (BWI_SLOT_STATE(w) == BWI_SLOT_ACTIVE &&
	    bw_cas(&sl->adopt, &want, BWI_ADOPT_GIVEN_UP))
		bwi_slot_release(m, BWI_READER, idx, BWI_SLOT_GEN(w));
}

/* Opens a handle on region k with flags; a reader adopts the slot kept for
 * it (tag, 0: none), else attaches anew. */
static int region_open(struct bw_stream *s, uint64_t k, int flags,
		       uint64_t tag, struct bw_stream **out)
{
	int64_t slot;
	char part[BWI_NAME_MAX + 1];
	struct bw_stream *h;
	struct bwi_map *m;
	int r = bwi_part_name(part, sizeof(part), s->m->g.ring_id, k);

	if (r < 0)
		return r;
	/* a tap of the ring (read permission only) taps its regions */
	r = bwi_map_open(part, s->m->writable ? BWI_ACC_RW : BWI_ACC_RO, &m);
	if (r == -ENOENT)
		return bwi_err(ENOENT, "self-scaling ring '%s': region %llu "
				       "(%s) is gone",
			       s->m->name, (unsigned long long)k, part);
	if (r < 0)
		return r;
	if (!(m->g.flags & BWI_GF_EPOCH)) {
		bwi_map_put(m);
		return bwi_err(EBADMSG, "'%s' is not a region of a self-scaling "
					"ring",
			       part);
	}
	r = bwi_stream_new(&h);
	if (r < 0) {
		bwi_map_put(m);
		return r;
	}
	/* the control segment did the FIFO waiting; a writer without
	 * readers gets EPIPE as the handle would (BW_NOWAIT comes from it) */
	flags |= BWI_NO_PEER_WAIT | (s->flags & BW_NOWAIT);
	r = -ESRCH;
	slot = tag ? find_kept(m, tag) : -1;
	if (slot >= 0) {
		uint64_t want = BWI_ADOPT_KEPT;

		if (bw_cas(&bwi_rslot(m, (uint32_t)slot)->adopt, &want,
			   BWI_ADOPT_TAKEN))
			r = bwi_attach_adopt(h, m, (uint32_t)slot, flags);
	}
	if (r == -ESRCH)
		r = bwi_attach(h, m, flags);
	if (r < 0) {
		bwi_map_put(m);
		bwi_stream_free(h);
		return r;
	}
	*out = h;
	return 0;
}

/*
 * Statistics go on from region to region: a handle's counts move with it
 * to its next region handle (carry), and a new region's ring-wide counts
 * start where the old one's stand (carry_ring), so a region's slots and
 * counters, which bw_ring_stat shows, are the ring's since it was made,
 * and a reader's drops (the ring's since it attached: its drop0) too.
 */
static void carry(struct bw_stream *h, const struct bw_stream *old)
{
	h->rst = old->rst;
	h->ist = old->ist;
	h->wst = old->wst;
	h->iwst = old->iwst;
	h->drop0 = old->drop0;
	h->padded = old->padded;
}

/* Before anyone else can find m1 (step 4). */
static void carry_ring(struct bwi_map *m1, const struct bwi_map *old)
{
	struct bwi_hdr *h = m1->hdr;
	const struct bwi_hdr *o = old->hdr;

	bw_store_relaxed(&h->grp.dropped_writes,
			 bw_load_relaxed(&o->grp.dropped_writes));
	bw_store_relaxed(&h->grp.dropped_bytes,
			 bw_load_relaxed(&o->grp.dropped_bytes));
	bw_store_relaxed(&h->rwait.waits, bw_load_relaxed(&o->rwait.waits));
	bw_store_relaxed(&h->rwait.wakes, bw_load_relaxed(&o->rwait.wakes));
	bw_store_relaxed(&h->wwait.waits, bw_load_relaxed(&o->wwait.waits));
}

/* Gives up the slot kept in region k for this process's reader with tag,
 * unless its reader adopted it. */
static void give_up(struct bw_stream *s, uint64_t k, uint64_t tag)
{
	char part[BWI_NAME_MAX + 1];
	struct bwi_map *m;
	int64_t idx;

	if (bwi_part_name(part, sizeof(part), s->m->g.ring_id, k) < 0 ||
	    bwi_map_open(part, BWI_ACC_RW, &m) < 0)
		return;
	idx = find_kept(m, tag);
	if (idx >= 0)
		release_kept(m, (uint32_t)idx);
	bwi_map_put(m);
}

/* A new reader takes a slot in the writer's region k. If the writer moved
 * on meanwhile, its scan of region k may have missed the slot (the Dekker
 * with check_kept: slot, fence, cur; against cur, fence, scan): it leaves
 * and tries the new region, giving up what may have been kept for it. A
 * region removed under it (collect) is retried too. */
static int reader_enter(struct bw_stream *s, uint64_t *k)
{
	struct bwi_scaler *sc = s->sc;
	int from_start = s->flags & BW_FROM_START;
	int r = -EAGAIN;

	for (int tries = 0; tries < 64; tries++) {
		uint64_t start, end, k2, tag;
		unsigned shift;
		bool resizing;

		r = region_open(s, *k, BW_READ | from_start, 0, &sc->r);
		if (r == -ENOENT) {
			*k = bw_load_acquire(&area(s)->cur);
			continue;
		}
		if (r < 0)
			return r;
		if (sc->r->tap)
			return 0; /* no slot to keep: see tap_follow */
		bw_smp_mb();
		/* the flag first: seen down, a cur still k means the writer's
		 * step-0 wait (if any) saw this slot (see the top) */
		resizing = from_start && s->m->g.scale == BW_SCALE_DECKCUT &&
			   bw_load_acquire(&area(s)->resizing);
		k2 = bw_load_acquire(&area(s)->cur);
		if (k2 == *k && !resizing)
			return 0;
		tag = tag_of(sc->r->rslot, sc->r->rgen);
		bw_stream_close(sc->r);
		sc->r = NULL;
		bw_smp_mb(); /* as in sc_detach: the close, then the look */
		if (entry(s, *k + 1, &start, &end, &shift) == 0)
			give_up(s, *k + 1, tag);
		if (k2 == *k) /* the old data may be the next region's already */
			from_start = 0;
		*k = k2;
	}
	return bwi_err(EAGAIN, "self-scaling ring '%s' kept resizing while "
			       "this reader attached",
		       s->m->name);
}

static int sc_attach(struct bw_stream *s)
{
	struct bwi_scaler *sc = calloc(1, sizeof(*sc));
	uint64_t k, start, end;
	unsigned shift;
	int r;

	if (!sc)
		return bwi_err(ENOMEM, "allocating a self-scaling handle");
	sc->epfd = -1;
	s->sc = sc;
	k = bw_load_acquire(&area(s)->cur);
	/* before the control segment's slots (bwi_attach): s->flags says
	 * what s will be */
	r = entry(s, k, &start, &end, &shift);
	if (r == 0 && (s->flags & BW_WRITE))
		r = region_open(s, k, BW_WRITE, 0, &sc->w);
	if (r == 0 && (s->flags & BW_WRITE)) {
		/* the one writer: a flag left up by one that died resizing
		 * goes (see resize) */
		bw_store_release(&area(s)->resizing, 0);
		sc->kw = k;
		sc->gc = k > 2 ? k - 2 : 0; /* an earlier writer's leftovers */
		sc->loop_t0 = bwi_now_ns();
		sc->loop_end = sc->w->wpos + (UINT64_C(1) << shift);
		sc->sample_at = sc->w->wpos + (UINT64_C(1) << shift) / 4;
	}
	if (r == 0 && (s->flags & BW_READ))
		r = reader_enter(s, &k);
	sc->kr = k;
	return r;
}

static void sc_detach(struct bw_stream *s)
{
	struct bwi_scaler *sc = s->sc;
	uint64_t k, start, end;
	unsigned shift;

	if (!sc)
		return;
	if (sc->r) {
		uint64_t tag = tag_of(sc->r->rslot, sc->r->rgen);
		bool had = sc->r->reader;

		bw_stream_close(sc->r);
		/* the slot kept for us ahead, if the writer moved on: see the
		 * top (the Dekker with the writer's check after step 4) */
		bw_smp_mb();
		k = sc->kr + 1;
		if (had && entry(s, k, &start, &end, &shift) == 0)
			give_up(s, k, tag);
	}
	if (sc->w)
		bw_stream_close(sc->w);
	/* a ring removed while attached: its last handle removes its parts
	 * (bwi_parts_sweep); the fence, as for the kept slot above: either
	 * we see another closing handle's slots gone, or it sees ours */
	if ((sc->r || sc->w) && !bwi_map_linked(s->m)) {
		bw_smp_mb();
		bwi_parts_sweep(s->m->g.ring_id, bw_load_acquire(&area(s)->cur));
	}
	if (sc->epfd >= 0)
		close(sc->epfd);
	free(sc);
	s->sc = NULL;
}

/* ---- reading ---------------------------------------------------------------- */

/* Moves the reader's handle to h, on region k. */
static void r_move(struct bw_stream *s, uint64_t k, struct bw_stream *h)
{
	carry(h, s->sc->r);
	bw_stream_close(s->sc->r);
	s->sc->r = h;
	s->sc->kr = k;
}

/*
 * A tap (read permission only) has no slot, so no region keeps one for it,
 * no resize waits for it, and no region is kept for it. At the end of its
 * region it opens the next one at its oldest byte, or, if that region is
 * gone (removed, or its entry reused: the tap fell behind), the writer's.
 * What lies between is lost, as a tap loses what a writer overwrote, and
 * said so once (-ESTALE). A deck-cut region's pages are reused by the next
 * region: the resize raises its scar first, so a tap still reading it
 * validates against that (resize).
 */
static int tap_follow(struct bw_stream *s, bool ended)
{
	struct bwi_scaler *sc = s->sc;
	uint64_t at = sc->r->rpos, k = sc->kr + 1, start, end, lost;
	struct bw_stream *h;
	unsigned shift;
	int r = -ENOENT;

	for (int tries = 0; tries < 64 && r == -ENOENT; tries++) {
		if (!ended || tries || entry(s, k, &start, &end, &shift) < 0)
			k = bw_load_acquire(&area(s)->cur);
		if (k <= sc->kr)
			return bwi_err(EIO, "self-scaling ring '%s': region %llu "
					    "ended but the writer is not past "
					    "it: corrupted ring",
				       s->m->name, (unsigned long long)sc->kr);
		r = region_open(s, k,
				BW_READ | BW_FROM_START | (s->flags & BW_NONBLOCK),
				0, &h);
	}
	if (r < 0)
		return r;
	lost = h->rpos > at ? h->rpos - at : 0;
	r_move(s, k, h);
	if (!lost)
		return 1;
	/* where bw_stream_stat takes it from: the layer's units, if any */
	((h->slow & BWI_SLOW_LAYER) ? &h->ist : &h->rst)->lost += lost;
	return bwi_err(ESTALE, "tap of self-scaling ring '%s' fell behind and "
			       "lost %llu bytes; resuming at position %llu",
		       s->m->name, (unsigned long long)lost,
		       (unsigned long long)(at + lost));
}

/* At the end of the reader's region: follows into the next. Returns 1
 * when it moved, 0 at the end of the stream, or -errno. */
static int follow(struct bw_stream *s)
{
	struct bwi_scaler *sc = s->sc;
	uint64_t start, end, k = sc->kr;
	struct bw_stream *h;
	unsigned shift;
	int r = entry(s, k, &start, &end, &shift);

	if (sc->r->tap && (r < 0 || end != BWI_NO_POS))
		return tap_follow(s, r == 0);
	if (r < 0)
		return r;
	if (end == BWI_NO_POS)
		return 0; /* the writer left without resizing: the end */
	r = entry(s, k + 1, &start, &end, &shift);
	if (r < 0)
		return r;
	r = region_open(s, k + 1, BW_READ | (s->flags & BW_NONBLOCK),
			tag_of(sc->r->rslot, sc->r->rgen), &h);
	if (r < 0)
		return r;
	r_move(s, k + 1, h);
	return 1;
}

/* ---- the descriptor ---------------------------------------------------------- */

/* Which region handle the descriptor waits on: the reader's, in region kr,
 * or else the writer's, in region kw. */
static uint64_t bell_key(const struct bwi_scaler *sc)
{
	return sc->r ? sc->kr << 1 | 1 : sc->kw << 1;
}

/* Puts the doorbell of the region handle we now wait on into the epoll set
 * (the one before left it as its handle closed). Returns 0 or -errno. */
static int rebell(struct bw_stream *s)
{
	struct bwi_scaler *sc = s->sc;
	struct epoll_event ev = {.events = EPOLLIN};
	struct bw_stream *h = sc->r ? sc->r : sc->w;
	int fd;

	if (sc->epfd < 0 || !h || sc->ep_key == bell_key(sc))
		return 0;
	if (sc->ep_pid != getpid())
		return 0; /* the parent's set: bwi_scale_fd makes ours */
	fd = bw_stream_fd(h);
	if (fd < 0)
		return fd;
	if (epoll_ctl(sc->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 && errno != EEXIST)
		return bwi_err(errno, "adding region %llu's doorbell to the "
				      "ring's descriptor",
			       (unsigned long long)(bell_key(sc) >> 1));
	sc->ep_key = bell_key(sc);
	return 0;
}

/* bw_stream_fd() of a self-scaling ring: an epoll descriptor, readable
 * when the doorbell of the region handle in it is, and kept on the
 * region the handle is in as it moves. */
int bwi_scale_fd(struct bw_stream *s)
{
	struct bwi_scaler *sc = s->sc;
	int r;

	if (sc->epfd >= 0 && sc->ep_pid != getpid()) {
		/* a bw_fork() child: the set is the parent's */
		close(sc->epfd);
		sc->epfd = -1;
	}
	if (sc->epfd < 0) {
		sc->epfd = epoll_create1(EPOLL_CLOEXEC);
		if (sc->epfd < 0)
			return bwi_err(errno, "creating the descriptor of a "
					      "self-scaling ring");
		sc->ep_pid = getpid();
		sc->ep_key = UINT64_MAX;
	}
	r = rebell(s);
	return r < 0 ? r : sc->epfd;
}

/* After every move to a region handle h: its blocking mode is ours, and
 * the descriptor, if made, waits on it. */
static int sync_flags(struct bw_stream *s, struct bw_stream *h)
{
	h->flags = (h->flags & ~(BW_NONBLOCK | BW_LOW_LATENCY)) |
		   (s->flags & (BW_NONBLOCK | BW_LOW_LATENCY));
	return rebell(s);
}

static int r_enter(struct bw_stream *s)
{
	int r = bwi_need_reader(s);

	return r < 0 ? r : sync_flags(s, s->sc->r);
}

enum { RD_READ, RD_PEEK, RD_ACQUIRE };

/* A reading call on the reader's region, following into the next region
 * at the end of one. */
static ssize_t rd_call(struct bw_stream *s, int kind, void *buf,
		       const void **ptr, size_t n)
{
	int r = r_enter(s);

	if (r < 0)
		return r;
	for (;;) {
		struct bw_stream *h = s->sc->r;
		ssize_t x = kind == RD_READ   ? bw_stream_read(h, buf, n)
			    : kind == RD_PEEK ? bw_stream_peek(h, ptr, n)
					      : bw_stream_peek_acquire(h, ptr, n);

		if (x != 0 || n == 0)
			return x;
		r = follow(s);
		if (r <= 0)
			return r;
		r = sync_flags(s, s->sc->r);
		if (r < 0)
			return r;
	}
}

/* A call that found nothing: the liveness ticks of the region handle
 * the descriptor waits on are used up, also when the ring itself said
 * -EAGAIN (a region handle's own -EAGAIN uses them as it arms). */
static ssize_t ticks_used(struct bw_stream *s, ssize_t x)
{
	struct bw_stream *h = s->sc->r ? s->sc->r : s->sc->w;

	if (x == -EAGAIN && h)
		bwi_bell_ticks_used(h);
	return x;
}

static ssize_t sc_read(struct bw_stream *s, void *buf, size_t n)
{
	return ticks_used(s, rd_call(s, RD_READ, buf, NULL, n));
}

static ssize_t sc_peek(struct bw_stream *s, const void **ptr, size_t n,
		       bool move)
{
	return ticks_used(s, rd_call(s, move ? RD_PEEK : RD_ACQUIRE, NULL, ptr,
				     n));
}

static int sc_peek_complete(struct bw_stream *s, size_t n)
{
	int r = r_enter(s);

	return r < 0 ? r : bw_stream_peek_complete(s->sc->r, n);
}

/* ---- writing ---------------------------------------------------------------- */

/* The distance from the writer to its slowest reader now. */
static void sample(struct bw_stream *s, uint64_t hd)
{
	struct bwi_scaler *sc = s->sc;
	struct bwi_map *m = sc->w->m;
	uint64_t min, t = bw_load_acquire(&m->hdr->prod.tail);

	if (bwi_min_reader(m, hd, t, &min) > 0 && hd - min > sc->maxdist)
		sc->maxdist = hd - min;
	sc->sample_at = hd + m->g.capacity / 4;
}

/* The rate measured at size 2^k, or 0 once it is REPROBE_NS and
 * REPROBE_SAMPLES old (time alone would expire it before a slow stream
 * measured the next size), each times 2^lost[k]: a size that keeps losing
 * is tried again ever more rarely (a try costs two resizes, and a loop at
 * the slower size). */
static double known(const struct bwi_scaler *sc, unsigned k, uint64_t now)
{
	bool old = now - sc->rate_ns[k] >= REPROBE_NS << sc->lost[k] &&
		   sc->samples - sc->rate_smp[k] >= REPROBE_SAMPLES
							<< sc->lost[k];

	return old ? 0 : sc->rate[k];
}

/* The size for the next loop, from the loop just done (see the top). */
static unsigned decide(struct bw_stream *s, unsigned shift, uint64_t now)
{
	struct bwi_scaler *sc = s->sc;
	bool deck = s->m->g.scale == BW_SCALE_DECKCUT;
	double p = (double)sc->maxdist / (double)(UINT64_C(1) << shift);
	double hi = deck ? 0.625 : 0.75, lo = deck ? 0.375 : 0.25;
	bool up = shift < hi_shift(s), down = shift > lo_shift(s);
	double r_up = up ? known(sc, shift + 1, now) : 0;
	double r_down = down ? known(sc, shift - 1, now) : 0;
	double best;
	unsigned to = shift;

	if (!sc->rate[shift] || sc->nrecent < 3)
		return shift; /* not measured here yet */
	/* a neighbour measured faster: the double size by 5% at least, the
	 * half at all (a larger ring has to earn its memory; and on a flat
	 * landscape measured with noise, pressure alone would walk the ring
	 * up) */
	best = sc->rate[shift] * 1.05;
	if (r_up > best) {
		best = r_up;
		to = shift + 1;
	}
	if (r_down * 1.05 > best)
		to = shift - 1;
	if (to != shift) {
		if (sc->lost[shift] < LOST_MAX)
			sc->lost[shift]++;
		sc->lost[to] = 0;
		return to;
	}
	/* else the watermarks say which neighbour to try first */
	if (p > hi && up && !r_up)
		return shift + 1;
	if (p < lo && down && !r_down)
		return shift - 1;
	/* settled: a neighbour not measured lately is tried again, as the
	 * stream and the machine change (smaller first: it frees memory) */
	if (sc->nrecent >= 6 && down && !r_down)
		return shift - 1;
	if (sc->nrecent >= 6 && up && !r_up)
		return shift + 1;
	return shift;
}

/* The slot kept in the new region for old reader slot i: the old slot's
 * generation (0: none kept) and the new slot's index. */
struct kept {
	uint32_t gen, idx;
};

/* Keeps, in the new region m1 at b, a slot for every reader of the old
 * region that has none there yet (step 2). */
static void keep_slots(struct bwi_map *old, struct bwi_map *m1, uint64_t b,
		       struct kept *kept)
{
	uint32_t hi = bwi_slots_hi(old, BWI_READER);

	for (uint32_t i = 0; i < hi && i < old->g.max_readers; i++) {
		struct bwi_slot *o = bwi_rslot(old, i);
		uint64_t st = bw_load_acquire(&o->state);
		uint32_t idx, g;

		if (!kept[i].gen && BWI_SLOT_STATE(st) == BWI_SLOT_ACTIVE &&
		    bwi_slot_keep(m1, b, (pid_t)bw_load_relaxed(&o->pid),
				  bw_load_relaxed(&o->starttime),
				  tag_of(i, BWI_SLOT_GEN(st)), &idx, &g) == 0)
			kept[i] = (struct kept){BWI_SLOT_GEN(st), idx};
	}
}

/* After step 4, with a full fence (the Dekker with reader_enter and with
 * sc_detach): gives up the slots kept for readers that left the old
 * region meanwhile (those that followed adopted theirs: the CAS fails),
 * then keeps slots for readers that came after the first scan, an index
 * freed by one that left included. */
static void check_kept(struct bwi_map *old, struct bwi_map *m1, uint64_t b,
		       struct kept *kept)
{
	bw_smp_mb();
	for (uint32_t i = 0; i < old->g.max_readers; i++) {
		uint64_t w = bw_load_acquire(&bwi_rslot(old, i)->state);

		if (kept[i].gen && !(BWI_SLOT_STATE(w) == BWI_SLOT_ACTIVE &&
				     BWI_SLOT_GEN(w) == kept[i].gen)) {
			release_kept(m1, kept[i].idx);
			kept[i].gen = 0;
		}
	}
	keep_slots(old, m1, b, kept);
}

/* Step 0 of a deck-cut resize: every reader has read to b. A lossless
 * writer waits for that (or, non-blocking, tries a loop later); an SRP
 * writer never waits, and tries again a loop later. */
static int drained(struct bw_stream *w, uint64_t b)
{
	struct bwi_map *m = w->m;
	uint64_t min;

	if (w->policy == BW_POLICY_LOSSLESS)
		return bwi_wr_room(w, m->g.capacity);
	if (bwi_min_reader(m, b, bw_load_acquire(&m->hdr->prod.tail), &min) <=
		    0 ||
	    min >= b)
		return 0;
	return -EAGAIN;
}

/* The writer moves to a region of 2^shift bytes starting at b (steps 0-5
 * at the top; region k + 1 is invisible until step 4, so every failure
 * before it leaves the ring as it was). */
static int resize(struct bw_stream *s, uint64_t b, unsigned shift)
{
	struct bwi_scaler *sc = s->sc;
	struct bw_stream *w = sc->w, *h = NULL;
	struct bwi_map *old = w->m, *m1;
	struct bwi_scale_area *a = area(s);
	uint64_t k = sc->kw, cap = old->g.capacity;
	uint64_t cap1 = UINT64_C(1) << shift;
	char part[BWI_NAME_MAX + 1];
	struct bwi_epoch *e1 = &a->ev[(k + 1) % BWI_EPOCHS];
	struct kept *kept;
	int r;

	kept = calloc(old->g.max_readers, sizeof(*kept));
	if (!kept)
		return bwi_err(ENOMEM, "resizing");
	if (s->m->g.scale == BW_SCALE_DECKCUT) {
		/* the Dekker with reader_enter: the flag, then the slots. A
		 * writer that dies with it up leaves FROM_START readers
		 * starting at the write position until a writer attaches. */
		bw_store_relaxed(&a->resizing, 1);
		bw_smp_mb();
		r = drained(w, b);
		if (r < 0 && r != -EPIPE)
			goto err_drain;
		/* every reader has read to b, but a tap (no slot) may still
		 * read below it: the madvise and the next region's writes
		 * damage those bytes, and the scar says so first (its
		 * validation: copy, fence, scar) */
		bwi_scar_raise(old, b);
		bw_smp_mb();
		if (cap1 < cap)
			madvise(w->data + cap1, (size_t)(cap - cap1),
				MADV_REMOVE); /* advice: a failure costs memory */
	}
	r = bwi_epoch_create(s->m, k + 1, shift, b);
	if (r == 0)
		r = bwi_part_name(part, sizeof(part), s->m->g.ring_id, k + 1);
	if (r == 0)
		r = bwi_map_open(part, BWI_ACC_RW, &m1);
	if (r < 0)
		goto err_region;
	carry_ring(m1, old);
	keep_slots(old, m1, b, kept); /* step 2 */
	r = bwi_stream_new(&h); /* step 5 before 4: a reader that finds the
				 * region finds its writer */
	if (r == 0) {
		r = bwi_attach(h, m1, BW_WRITE | BWI_NO_PEER_WAIT |
					      (w->flags &
					       (BW_NONBLOCK | BW_NOWAIT)));
		if (r < 0)
			bwi_stream_free(h);
	}
	if (r < 0) {
		bwi_map_put(m1);
		goto err_region;
	}
	/* step 4 */
	bw_store_relaxed(&e1->start, b);
	bw_store_relaxed(&e1->end, BWI_NO_POS);
	bw_store_relaxed(&e1->shift, shift);
	bw_store_release(&e1->seq, k + 1);
	bw_store_release(&a->ev[k % BWI_EPOCHS].end, b);
	bw_store_release(&a->cur, k + 1);
	bw_store_release(&a->resizing, 0); /* after cur: see reader_enter */
	check_kept(old, m1, b, kept);
	free(kept);
	carry(h, w);
	bw_stream_close(w); /* its readers read to b and see its end */
	sc->w = h;
	sc->kw = k + 1;
	return 0;
err_region:
	bwi_part_unlink(s->m->g.ring_id, k + 1);
err_drain:
	free(kept);
	bw_store_release(&a->resizing, 0);
	return r;
}

/* Step 6: removes the regions before the writer's that no reader is in
 * (readers enter only the writer's region, or follow from the one before,
 * opening the next before they leave). Returns 1 when none is left, else 0;
 * with wait, 0 only after waiting until a reader left the region one is
 * still in, or a liveness interval passed (one that died there is reaped
 * at the next look); -EINTR. */
static int collect(struct bw_stream *s, bool wait)
{
	struct bwi_scaler *sc = s->sc;

	while (sc->gc < sc->kw) {
		char part[BWI_NAME_MAX + 1];
		struct bwi_map *m;
		uint32_t seq;
		unsigned n;
		int r = 0;

		if (bwi_part_name(part, sizeof(part), s->m->g.ring_id,
				  sc->gc) < 0)
			return 0;
		if (bwi_map_open(part, BWI_ACC_RW, &m) == 0) {
			/* every detach bumps peer_seq after it frees its
			 * slot: read before the count, a detach after the
			 * count fails the futex wait */
			seq = bw_load_acquire(&m->hdr->ctl.peer_seq);
			bwi_reap(m); /* readers that died are not in it */
			n = bwi_slot_count(m, BWI_READER);
			if (n && wait)
				r = bwi_futex_wait_us(&m->hdr->ctl.peer_seq, seq,
						      (int64_t)bwi_liveness_ms() *
							      1000);
			bwi_map_put(m);
			if (r == -EINTR)
				return bwi_err(EINTR, "interrupted while waiting");
			if (n)
				return 0;
			bwi_part_unlink(s->m->g.ring_id, sc->gc);
		}
		sc->gc++;
	}
	return 1;
}

/* The shift of the least size that holds need bytes, if one up to the
 * largest does; else 0 (the call is refused as too large: fits). */
static unsigned need_shift(const struct bw_stream *s, uint64_t need)
{
	unsigned sh = need > 1 ? 64u - (unsigned)__builtin_clzll(need - 1) : 0;

	return sh <= hi_shift(s) ? sh : 0;
}

/* A call needs a larger region than the writer's, and a reader is still in
 * an older one (no third region: see collect). A lossless writer that
 * blocks waits until every reader has taken all of this region: those in
 * the older region follow into it first (adopting the slots kept for them
 * here, step 2), and leave the older one as they do. Returns 0 when none
 * is left there (a wait counted once, as the writer's), -EAGAIN when a
 * non-blocking call would wait, or -errno. */
static int wait_older(struct bw_stream *s, uint64_t need)
{
	struct bwi_scaler *sc = s->sc;
	int r = 0;

	if (sc->w->policy == BW_POLICY_SRP)
		return bwi_wr_drop(sc->w, need); /* it never waits for
						  * readers: counted in the
						  * writer's region */
	for (bool waited = false; !(s->flags & BW_NONBLOCK); waited = true) {
		/* every reader in this region has taken all of it, then none
		 * is left in the older one: a reader may still be reading
		 * there, or moving out (it enters this region first), even
		 * when this region holds nothing yet for it to take */
		if ((r = bwi_wr_room(sc->w, sc->w->m->g.capacity)) < 0 ||
		    (r = collect(s, waited)) != 0)
			return r < 0 ? r : 0;
		if (!waited)
			bwi_count_wait(sc->w, BW_POLLOUT);
	}
	if ((r = collect(s, false)) != 0)
		return r < 0 ? r : 0;
	/* the descriptor rings once every reader has taken all of this
	 * region (those in the older one follow first), when a call finds
	 * none left there; a stale ring (from when the region was new) is
	 * drained, or an event loop would spin until then */
	bwi_bell_arm(sc->w, sc->w->m->g.capacity);
	return bwi_err(EAGAIN, "self-scaling ring '%s': a call of %llu bytes "
			       "needs a larger region than this one of %llu, "
			       "and a reader is still in region %llu",
		       s->m->name, (unsigned long long)need,
		       (unsigned long long)sc->w->m->g.capacity,
		       (unsigned long long)sc->gc);
}

/* A new loop starts at hd: measure the last, and resize if it says so. The
 * call that starts it needs need bytes in one region (a poke, a write of at
 * most the largest size: 0 for none): the ring never shrinks below that,
 * and grows to it if smaller. Returns 0 or -errno (a failure to grow to
 * need, or -EPIPE; a failed resize otherwise goes on at this size). */
static int loop_done(struct bw_stream *s, uint64_t hd, uint64_t need)
{
	struct bwi_scaler *sc = s->sc;
	uint64_t now = bwi_now_ns(), cap = sc->w->m->g.capacity;
	unsigned shift = (unsigned)__builtin_ctzll(cap), to;
	bool here, grow;
	int r = 0;

	sc->loops++;
	/* a loop counts if it started with every reader in this region (else
	 * it timed the readers' backlog in the old one, up to its size) and
	 * after such a loop (which warmed the caches) */
	if (sc->clean < 2 || now <= sc->loop_t0) {
		sc->smp_bytes = 0;
	} else {
		double *v = sc->recent, a, b, c;

		/* a sample spans whole loops, SAMPLE_BYTES at least: a small
		 * ring's loop is too short to time alone */
		if (!sc->smp_bytes)
			sc->smp_t0 = sc->loop_t0;
		sc->smp_bytes += cap;
		if (sc->smp_bytes < SAMPLE_BYTES)
			goto measured;
		v[sc->nrecent++ % 3] = (double)sc->smp_bytes /
				       (double)(now - sc->smp_t0);
		sc->samples++;
		sc->smp_bytes = 0;
		if (sc->nrecent >= 3) { /* the median of three: one slow loop
					 * (a preemption) does not count */
			a = v[0], b = v[1], c = v[2];
			sc->rate[shift] = a > b ? (b > c ? b : a > c ? c : a)
						: (a > c ? a : b > c ? c : b);
			sc->rate_ns[shift] = now;
			sc->rate_smp[shift] = sc->samples;
		}
	}
measured:
	sample(s, hd);
	to = sc->stuck ? shift : decide(s, shift, now);
	if (to < need_shift(s, need))
		to = need_shift(s, need);
	/* a reader still in an older region: no third region, so at most
	 * two are held and no reader falls a region behind; while one stays
	 * there, look (map it) every eighth loop only: a small ring's loop
	 * is short. A call that needs a larger region looks now, and may
	 * wait for it. */
	grow = to > shift && (UINT64_C(1) << shift) < need;
	here = sc->gc >= sc->kw;
	if (!here && (grow || sc->gc_tries++ % 8 == 0))
		here = collect(s, false) > 0;
	if (!here && grow) {
		r = wait_older(s, need);
		here = r == 0;
	}
	if (to != shift && here) {
		r = resize(s, hd, to);
		if (r == 0)
			sc->loops = sc->nrecent = 0;
		else if (r != -EAGAIN && r != -EINTR)
			sc->stuck = true; /* go on at this size */
	}
	sc->clean = here && (to == shift || r != 0) ? sc->clean + 1 : 0;
	cap = sc->w->m->g.capacity;
	sc->maxdist = 0;
	sc->loop_t0 = bwi_now_ns();
	sc->loop_end = hd + cap;
	sc->sample_at = hd + cap / 4;
	return r == -EPIPE || cap < need ? r : 0;
}

/* Every writing call starts here: a poke is published, so the write
 * position (wpos) is where the next byte goes. */
static int w_enter(struct bw_stream *s)
{
	int r = bwi_need_writer(s);

	if (r == 0)
		r = sync_flags(s, s->sc->w);
	return r < 0 ? r : bw_stream_flush(s->sc->w);
}

static int no_acq(struct bw_stream *s)
{
	if (s->sc->w->acq)
		return bwi_err(EBUSY, "a poke_acquire is outstanding: "
				      "complete it first");
	return 0;
}

static ssize_t write_call(struct bw_stream *s, const void *buf, size_t n)
{
	struct bwi_scaler *sc = s->sc;
	size_t done = 0, whole = n;
	int r = w_enter(s);

	if (r == 0)
		r = no_acq(s);
	if (r < 0)
		return r;
	if (n && !buf)
		return bwi_err(EFAULT, "write buffer is NULL");
	/* a call of at most the largest size is one piece, as a DBuf's of at
	 * most its capacity is: the region grows to hold it; a larger call is
	 * split, into pieces of the size at hand */
	if (n > UINT64_C(1) << hi_shift(s))
		whole = 0;
	while (done < n) {
		uint64_t hd = sc->w->wpos, cap = sc->w->m->g.capacity;
		size_t c = whole || n - done < cap ? n - done : (size_t)cap;
		ssize_t x;

		if (hd + c > sc->sample_at)
			sample(s, hd);
		if (hd + c > sc->loop_end) {
			r = loop_done(s, hd, whole);
			if (r == 0)
				r = sync_flags(s, sc->w);
			if (r == -ENOBUFS) /* SRP: dropped (counted), and a
					    * write says n (stream.h) */
				return (ssize_t)n;
			if (r < 0)
				return done ? (ssize_t)done : r;
			cap = sc->w->m->g.capacity;
			c = whole || n - done < cap ? n - done : (size_t)cap;
		}
		x = bw_stream_write(sc->w, (const uint8_t *)buf + done, c);
		if (x <= 0)
			return done ? (ssize_t)done : x;
		done += (size_t)x;
	}
	return (ssize_t)done;
}

static ssize_t sc_write(struct bw_stream *s, const void *buf, size_t n)
{
	return ticks_used(s, write_call(s, buf, n));
}

static ssize_t poke_call(struct bw_stream *s, void **ptr, size_t n, bool acq)
{
	struct bwi_scaler *sc = s->sc;
	int r = w_enter(s);

	if (r == 0)
		r = no_acq(s);
	if (r < 0)
		return r;
	if (n > UINT64_C(1) << hi_shift(s))
		return bwi_err(EMSGSIZE, "poke of %zu bytes exceeds the largest "
					 "size of self-scaling ring '%s', %llu",
			       n, s->m->name,
			       (unsigned long long)(UINT64_C(1) << hi_shift(s)));
	if (sc->w->wpos + n > sc->loop_end && n) {
		r = loop_done(s, sc->w->wpos, n);
		if (r == 0)
			r = sync_flags(s, sc->w);
		if (r < 0) /* -ENOBUFS: SRP dropped it, as a poke says */
			return r;
	}
	return acq ? bw_stream_poke_acquire(sc->w, ptr, n)
		   : bw_stream_poke(sc->w, ptr, n);
}

static ssize_t sc_poke(struct bw_stream *s, void **ptr, size_t n, bool acq)
{
	return ticks_used(s, poke_call(s, ptr, n, acq));
}

static int sc_poke_complete(struct bw_stream *s, size_t n)
{
	int r = w_enter(s);

	return r < 0 ? r : bw_stream_poke_complete(s->sc->w, n);
}

/* Extends the region writer's open record (record layouts; a byte ring's
 * region says ENOSYS). A record opens, and the ring resizes, only between
 * records: w_enter() would close the open one. */
static ssize_t append_call(struct bw_stream *s, const void *buf, size_t n)
{
	struct bwi_scaler *sc = s->sc;
	int r = bwi_need_writer(s);

	if (r == 0)
		r = sync_flags(s, sc->w);
	/* an open record holds its reservation as an acquire: the region's
	 * record layer checks the writer's state */
	if (r == 0 && !sc->w->rec_w && sc->w->wpos + n > sc->loop_end) {
		r = loop_done(s, sc->w->wpos, 0);
		if (r == 0)
			r = sync_flags(s, sc->w);
	}
	return r < 0 ? r : bw_stream_append(sc->w, buf, n);
}

static ssize_t sc_append(struct bw_stream *s, const void *buf, size_t n)
{
	return ticks_used(s, append_call(s, buf, n));
}

/* ---- other calls -------------------------------------------------------------- */

static int sc_flush(struct bw_stream *s)
{
	int r = bwi_d_flush(s);

	if (r == 0 && s->sc->w)
		r = bw_stream_flush(s->sc->w);
	if (r == 0 && s->sc->r)
		r = bw_stream_flush(s->sc->r);
	return r;
}

static int64_t sc_check(struct bw_stream *s, int64_t stamp, int flags)
{
	int r = bwi_d_flush(s);

	if (r < 0)
		return r;
	if (flags == BW_CHECK_WRITE && s->sc->w)
		return bw_stream_check(s->sc->w, stamp, flags);
	if (s->sc->r)
		return bw_stream_check(s->sc->r, stamp, flags);
	return bwi_d_check(s, stamp, flags);
}

/* The ring's write position: the tail of the writer's region, which may
 * be past the reader's (h, in region kr). */
static int ring_wpos(struct bw_stream *s, uint64_t *pos)
{
	struct bwi_scaler *sc = s->sc;
	char part[BWI_NAME_MAX + 1];
	int r = -ENOENT;

	for (int tries = 0; tries < 64 && r == -ENOENT; tries++) {
		uint64_t k = bw_load_acquire(&area(s)->cur);
		struct bwi_map *m;

		if (sc->r && k == sc->kr) { /* the reader's own region */
			*pos = bw_load_acquire(&sc->r->m->hdr->prod.tail);
			return 0;
		}
		r = bwi_part_name(part, sizeof(part), s->m->g.ring_id, k);
		if (r == 0)
			r = bwi_map_open(part, BWI_ACC_RO, &m);
		if (r == 0) { /* A: pairs with the writer's publish of tail */
			*pos = bw_load_acquire(&m->hdr->prod.tail);
			bwi_map_put(m);
		}
	} /* ENOENT: removed as the writer moved on: look again */
	return r;
}

/* Where a seek goes, against the ring's write position (not the end of
 * the reader's region, which a resize may have ended). */
static int seek_target(struct bw_stream *s, int64_t was, int64_t off,
		       int whence, int64_t *to)
{
	uint64_t w;
	int r = ring_wpos(s, &w);

	if (r < 0)
		return r;
	if (whence == SEEK_SET)
		*to = off;
	else if (__builtin_add_overflow(whence == SEEK_CUR ? was : (int64_t)w,
					off, to))
		*to = -1;
	if (*to < 0 || (uint64_t)*to > w)
		return bwi_err(EINVAL, "seek outside the stream [0, %llu]",
			       (unsigned long long)w);
	return 0;
}

/* A reader seeks anywhere the ring holds: forward past the end of its
 * region it follows into the region that holds the position (what lies
 * between is skipped, as by any seek forward), then seeks there. Back in a
 * deck-cut region that a resize is ending (the flag up) or ended (its end
 * set) it may not go: the next region reuses its pages. The seek published
 * the lower position with a full fence before the look at the flag and
 * the end (rd_reposition): the Dekker with step 0, whose writer raises the
 * flag, fences, and then waits for readers' positions. */
static int64_t sc_rd_lseek(struct bw_stream *s, int64_t off, int whence)
{
	struct bw_stream *h = s->sc->r;
	int64_t was = bw_stream_lseek(h, 0, SEEK_CUR), to = 0;
	uint64_t start, end;
	unsigned shift;
	int r;

	if (was < 0)
		return was;
	if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END)
		return bw_stream_lseek(h, off, whence); /* its message */
	r = seek_target(s, was, off, whence, &to);
	for (;;) {
		if (r == 0)
			r = entry(s, s->sc->kr, &start, &end, &shift);
		if (r < 0)
			return r;
		if (end == BWI_NO_POS || (uint64_t)to < end)
			break;
		r = follow(s);
		if (r == 0)
			break; /* the end of the stream */
		r = r < 0 ? r : sync_flags(s, s->sc->r);
	}
	h = s->sc->r;
	was = bw_stream_lseek(h, 0, SEEK_CUR);
	to = was < 0 ? was : bw_stream_lseek(h, to, SEEK_SET);
	if (to < 0 || to >= was || s->m->g.scale != BW_SCALE_DECKCUT)
		return to;
	r = entry(s, s->sc->kr, &start, &end, &shift);
	if (r == 0 && !bw_load_acquire(&area(s)->resizing) && end == BWI_NO_POS)
		return to;
	(void)bw_stream_lseek(h, was, SEEK_SET);
	return r < 0 ? r
		     : bwi_err(ESTALE, "self-scaling ring '%s': a deck-cut resize "
				       "reuses the pages before position %lld",
			       s->m->name, (long long)was);
}

static int64_t sc_lseek(struct bw_stream *s, int64_t off, int whence)
{
	int r = bwi_d_flush(s);

	if (r < 0)
		return r;
	if (s->sc->r)
		return sc_rd_lseek(s, off, whence);
	if (s->sc->w)
		return bw_stream_lseek(s->sc->w, off, whence);
	return bwi_d_lseek(s, off, whence);
}

/* Block and select wait on the region handle of the role asked for. */
static struct bw_stream *sc_wait_on(struct bw_stream *s, int events)
{
	struct bwi_scaler *sc = s->sc;

	if (sc->r && (!sc->w || (events & BW_POLLIN)))
		return sc->r;
	return sc->w ? sc->w : s;
}

/* The reader's region has ended but the stream goes on in the next: a
 * hang-up seen there is a resize, not the writer leaving (a tap whose
 * region's entry was reused fell behind: the stream goes on too). */
bool bwi_scale_continues(struct bw_stream *s)
{
	uint64_t start, end;
	unsigned shift;
	int r;

	if (!s->sc || !s->sc->r)
		return false;
	r = entry(s, s->sc->kr, &start, &end, &shift);
	return r == 0 ? end != BWI_NO_POS : s->sc->r->tap;
}

static int sc_stat(struct bw_stream *s, struct bw_stream_stat *st)
{
	struct bwi_scaler *sc = s->sc;
	struct bw_stream *h = sc->r ? sc->r : sc->w;
	struct bw_stream_stat sub;
	int r;

	if (!h)
		return 0;
	r = bw_stream_stat(h, &sub); /* its counts are the ring's: carry */
	if (r < 0)
		return r;
	st->capacity = sub.capacity;
	st->read_pos = sub.read_pos;
	st->write_pos = sub.write_pos;
	/* a reader's region may have ended: the ring's goes on (failing,
	 * the region's stays) */
	if (h == sc->r)
		(void)ring_wpos(s, &st->write_pos);
	st->bytes = sub.bytes;
	st->calls = sub.calls;
	st->waits = sub.waits;
	st->lost = sub.lost;
	st->dropped = sub.dropped;
	st->padded = sub.padded;
	return 0;
}

/* The scaling layer: its ring is the control segment; the data is in the
 * regions. */
const struct bwi_ops bwi_scale_ops = {
	.size = sizeof(struct bwi_ops),
	.name = "scale",
	.attach = sc_attach,
	.detach = sc_detach,
	.read = sc_read,
	.peek = sc_peek,
	.peek_complete = sc_peek_complete,
	.write = sc_write,
	.poke = sc_poke,
	.poke_complete = sc_poke_complete,
	.append = sc_append,
	.flush = sc_flush,
	.check = sc_check,
	.lseek = sc_lseek,
	.wait_on = sc_wait_on,
	.stat = sc_stat,
};
