/* SPDX-License-Identifier: MIT */
/*
 * The slot table: who is attached to a ring, at which position, and whether
 * they are still alive.
 *
 * A slot is claimed by CAS on its state word, which carries a generation, so
 * a reclaimer that read a dead owner's pid cannot free a slot that a new
 * owner has claimed since (the CAS fails on the generation). Liveness is the
 * pair (pid, start time): a recycled pid has another start time.
 */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>

#include "bwi_ring.h"

static void slot_range(const struct bwi_map *m, enum bwi_role role,
		       uint32_t *base, uint32_t *n, bwi_a32 **hi)
{
	if (role == BWI_READER) {
		*base = 0;
		*n = m->g.max_readers;
		*hi = &m->hdr->ctl.rslots_hi;
	} else {
		*base = m->g.max_readers;
		*n = m->g.max_writers;
		*hi = &m->hdr->ctl.wslots_hi;
	}
}

/* The scan bound, written by others: clamp it to the table. */
uint32_t bwi_slots_hi(const struct bwi_map *m, enum bwi_role role)
{
	uint32_t base, n, hi;
	bwi_a32 *hip;

	slot_range(m, role, &base, &n, &hip);
	hi = bw_load_acquire(hip);
	return hi < n ? hi : n;
}

void bwi_bump_peers(struct bwi_map *m)
{
	struct bwi_hdr *h = m->hdr;

	bw_fetch_add(&h->ctl.peer_seq, 1);
	bwi_futex_wake(&h->ctl.peer_seq);
	/* Sleepers on either side re-check for EOF, EPIPE and new peers,
	 * and so do event loops: armed doorbells ring. The fetch_adds above
	 * are full barriers, the heavy side against bwi_bell_arm's. */
	bw_fetch_add(&h->rwait.seq, 1);
	bwi_futex_wake(&h->rwait.seq);
	bw_fetch_add(&h->wwait.seq, 1);
	bwi_futex_wake(&h->wwait.seq);
	if (bw_load_relaxed(&h->rwait.waiting) >= BWI_ARMED)
		bwi_bell_ring_all(m, &h->rwait, BWI_READER);
	if (bw_load_relaxed(&h->wwait.waiting) >= BWI_ARMED)
		bwi_bell_ring_all(m, &h->wwait, BWI_WRITER);
}

bool bwi_wposts_pending(const struct bwi_map *m, uint32_t i, uint64_t t)
{
	struct bwi_post *ps = bwi_wposts(m, i);

	for (uint32_t k = 0; k < BWI_POSTS; k++)
		if ((bw_load_acquire(&ps[k].start) & BWI_DONE_BIT) &&
		    bw_load_relaxed(&ps[k].end) > t)
			return true;
	return false;
}

/* A free writer slot still names a span the tail has not passed: a span its
 * writer completed and posted, or one it reserved and never completed,
 * which a waiter will pad from the slot (stream.c, tail_unstick). Such a
 * slot is not reused until the tail has passed. */
static bool writer_slot_held(const struct bwi_map *m, uint32_t i,
			     struct bwi_slot *s)
{
	uint64_t t = bw_load_acquire(&m->hdr->prod.tail);
	uint64_t p = bw_load_acquire(&s->pos);

	if (bwi_wposts_pending(m, i, t))
		return true;
	return (p & BWI_OPEN_BIT) && !(p & BWI_FENCE_BIT) &&
	       BWI_MARK_POS(p) >= t &&
	       BWI_MARK_POS(p) < bw_load_acquire(&m->hdr->prod.head) &&
	       bw_load_acquire(&s->rstart) == BWI_MARK_POS(p);
}

/* Claims slot i of the role's range for pid (started at starttime) at
 * pos, if it is free, marked adopt (BWI_ADOPT_*). Returns its generation,
 * or 0. */
static uint32_t claim_at(struct bwi_map *m, enum bwi_role role, uint32_t i,
			 uint64_t pos, pid_t pid, uint64_t starttime,
			 uint64_t adopt, uint64_t kept_for)
{
	uint32_t base, n, cur;
	bwi_a32 *hi;
	struct bwi_slot *s;
	uint64_t w;
	uint32_t g;

	slot_range(m, role, &base, &n, &hi);
	s = &m->hdr->slots[base + i];
	w = bw_load_relaxed(&s->state);
	g = BWI_SLOT_GEN(w) + 1;
	/* A writer slot keeps a completed span that the tail has not passed
	 * yet (its writer died or left before): not reused. */
	if (role == BWI_WRITER && writer_slot_held(m, i, s))
		return 0;
	if (BWI_SLOT_STATE(w) != BWI_SLOT_FREE ||
	    !bw_cas(&s->state, &w,
		    BWI_SLOT_WORD(g, ((uint32_t)bwi_self_pid() << 2) |
					     BWI_SLOT_CLAIMING)))
		return 0;
	/* Raise the scan bound first, so a reaper sees the slot even if we
	 * die before it is filled in. */
	cur = bw_load_relaxed(hi);
	while (cur < i + 1 && !bw_cas(hi, &cur, i + 1))
		;
	bw_store_relaxed(&s->pos, pos);
	bw_store_relaxed(&s->pid, (uint32_t)pid);
	bw_store_relaxed(&s->starttime, starttime);
	bw_store_relaxed(&s->bell, BWI_BELL_OFF);
	bw_store_relaxed(&s->bytes, 0);
	bw_store_relaxed(&s->calls, 0);
	bw_store_relaxed(&s->waits, 0);
	bw_store_relaxed(&s->lost, 0);
	bw_store_relaxed(&s->adopt, adopt);
	bw_store_relaxed(&s->kept_for, kept_for);
	/* S1: seq_cst store; a scanner that sees ACTIVE (acquire) sees pos
	 * and pid. Also ordered before the caller's fence in the reader
	 * registration protocol (stream.c, reader_attach). */
	atomic_store(&s->state, BWI_SLOT_WORD(g, BWI_SLOT_ACTIVE));
	bw_fetch_add(role == BWI_READER ? &m->hdr->ctl.rattach
					: &m->hdr->ctl.wattach,
		     1);
	bwi_bump_peers(m);
	return g;
}

int bwi_slot_claim(struct bwi_map *m, enum bwi_role role, uint64_t pos,
		   uint32_t *idx, uint32_t *gen)
{
	uint32_t base, n;
	bwi_a32 *hi;

	slot_range(m, role, &base, &n, &hi);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t g = claim_at(m, role, i, pos, bwi_self_pid(),
				      bwi_self_starttime(), BWI_ADOPT_OWN, 0);

		if (g) {
			*idx = i;
			*gen = g;
			return 0;
		}
	}
	return bwi_err(ENOSPC, "all %u %s slots of ring are taken", n,
		       role == BWI_READER ? "reader" : "writer");
}

/* A reader slot claimed on behalf of another process's reader, which
 * adopts it later (self-scaling rings: the producer keeps each reader's
 * place in a new region), tagged with kept_for. Returns 0 with its index
 * and generation, or -ENOSPC. */
int bwi_slot_keep(struct bwi_map *m, uint64_t pos, pid_t pid,
		  uint64_t starttime, uint64_t kept_for, uint32_t *idx,
		  uint32_t *gen)
{
	for (uint32_t i = 0; i < m->g.max_readers; i++) {
		uint32_t g = claim_at(m, BWI_READER, i, pos, pid, starttime,
				      BWI_ADOPT_KEPT, kept_for);

		if (g) {
			*idx = i;
			*gen = g;
			return 0;
		}
	}
	return bwi_err(ENOSPC, "no reader slot left to keep");
}

void bwi_slot_release(struct bwi_map *m, enum bwi_role role, uint32_t idx,
		      uint32_t gen)
{
	struct bwi_slot *s = role == BWI_READER ? bwi_rslot(m, idx)
						: bwi_wslot(m, idx);
	uint64_t w = BWI_SLOT_WORD(gen, BWI_SLOT_ACTIVE);

	/* Fails only if a reaper took the slot: then it is already free. */
	if (bw_cas(&s->state, &w, BWI_SLOT_WORD(gen, BWI_SLOT_FREE)))
		bw_fetch_add(role == BWI_READER ? &m->hdr->ctl.rdetach
						: &m->hdr->ctl.wdetach,
			     1);
	bwi_bump_peers(m);
}

/* Alive, or not known to be dead: a process this one may not see in /proc
 * (hidepid, another user) that kill() finds counts as alive. */
static bool slot_pid_live(pid_t pid, uint64_t starttime)
{
	if (bwi_pid_alive(pid, starttime))
		return true;
	return pid > 0 && bwi_starttime(pid) == 0 &&
	       (kill(pid, 0) == 0 || errno == EPERM);
}

/* Slots of role that are active (live: held, or being claimed, by a
 * process that is alive). */
static unsigned slots_counted(const struct bwi_map *m, enum bwi_role role,
			      bool live)
{
	uint32_t base, n, hi = bwi_slots_hi(m, role);
	unsigned c = 0;
	bwi_a32 *hip;

	slot_range(m, role, &base, &n, &hip);
	for (uint32_t i = 0; i < hi; i++) {
		const struct bwi_slot *s = &m->hdr->slots[base + i];
		/* A1: pairs with S1: pid and starttime belong to this word. */
		uint64_t w = bw_load_acquire(&s->state);

		if (!live)
			c += BWI_SLOT_STATE(w) == BWI_SLOT_ACTIVE;
		else if (BWI_SLOT_STATE(w) == BWI_SLOT_CLAIMING)
			c += bwi_starttime(BWI_SLOT_CLAIMER(w)) != 0;
		else if (BWI_SLOT_STATE(w) == BWI_SLOT_ACTIVE)
			c += slot_pid_live((pid_t)bw_load_relaxed(&s->pid),
					   bw_load_relaxed(&s->starttime));
	}
	return c;
}

unsigned bwi_slot_count(const struct bwi_map *m, enum bwi_role role)
{
	return slots_counted(m, role, false);
}

unsigned bwi_slot_live(const struct bwi_map *m, enum bwi_role role)
{
	return slots_counted(m, role, true);
}

static unsigned reap_role(struct bwi_map *m, enum bwi_role role)
{
	uint32_t base, n, hi = bwi_slots_hi(m, role);
	unsigned reaped = 0;
	bwi_a32 *hip;

	slot_range(m, role, &base, &n, &hip);
	for (uint32_t i = 0; i < hi; i++) {
		struct bwi_slot *s = &m->hdr->slots[base + i];
		/* A1: pairs with S1: pid and starttime belong to this word. */
		uint64_t w = bw_load_acquire(&s->state);
		pid_t pid;

		if (BWI_SLOT_STATE(w) == BWI_SLOT_CLAIMING) {
			/* died between claiming and filling in the slot */
			if (bwi_starttime(BWI_SLOT_CLAIMER(w)) != 0)
				continue;
		} else if (BWI_SLOT_STATE(w) == BWI_SLOT_ACTIVE) {
			pid = (pid_t)bw_load_relaxed(&s->pid);
			if (bwi_pid_alive(pid, bw_load_relaxed(&s->starttime)))
				continue;
		} else {
			continue;
		}
		if (!bw_cas(&s->state, &w,
			    BWI_SLOT_WORD(BWI_SLOT_GEN(w), BWI_SLOT_FREE)))
			continue;
		reaped++;
		bw_fetch_add(role == BWI_READER ? &m->hdr->ctl.dead_readers
						: &m->hdr->ctl.dead_writers,
			     1);
		bw_fetch_add(role == BWI_READER ? &m->hdr->ctl.rdetach
						: &m->hdr->ctl.wdetach,
			     1);
	}
	return reaped;
}

/* Detaches readers and writers whose process has died. Returns how many. */
unsigned bwi_reap(struct bwi_map *m)
{
	unsigned n;

	if (!m->writable)
		return 0;
	n = reap_role(m, BWI_READER) + reap_role(m, BWI_WRITER);
	if (n)
		bwi_bump_peers(m);
	return n;
}

/*
 * The lowest position any attached reader still needs, given head and tail
 * as this writer knows them. Returns the number of readers, or -EBADMSG when
 * a slot holds a position no reader can have.
 */
int bwi_min_reader(const struct bwi_map *m, uint64_t head, uint64_t tail,
		   uint64_t *min)
{
	uint32_t hi = bwi_slots_hi(m, BWI_READER);
	uint64_t lo = tail, floor = head > m->g.capacity ? head - m->g.capacity : 0;
	int n = 0;

	/* F2: pairs with the reader registration fence (reader_attach): either
	 * this scan sees the new slot, or the reader's later load of tail sees
	 * every tail this writer had published before it. */
	bw_smp_mb();
	for (uint32_t i = 0; i < hi; i++) {
		struct bwi_slot *s = bwi_rslot(m, i);
		uint64_t w = bw_load_acquire(&s->state), p;

		if (BWI_SLOT_STATE(w) != BWI_SLOT_ACTIVE)
			continue;
		/* A2: pairs with the reader's release store of pos (R2): its
		 * loads of the data below pos are done before we overwrite. */
		p = bw_load_acquire(&s->pos);
		/* Another writer may have published past the tail we were
		 * given since; only a position past a tail read after it is
		 * impossible. */
		if (p > tail && p > bw_load_acquire(&m->hdr->prod.tail))
			return bwi_err(EBADMSG, "reader slot %u is at %llu, past "
						"the write position %llu "
						"(corrupted ring)",
				       i, (unsigned long long)p,
				       (unsigned long long)tail);
		/* Behind what the ring holds: that reader has already lost
		 * data and will learn it when it reads; wait for it only
		 * from the oldest byte held. */
		if (p < floor)
			p = floor;
		if (p < lo)
			lo = p;
		n++;
	}
	*min = lo;
	return n;
}

/* The writer-attach lock: held for a few instructions while a writer joins
 * or leaves. Its word names the holder by pid and start time; a waiter that
 * finds the holder dead (its pid gone, or reused by another process) takes
 * the lock over. */
static uint64_t lock_word(void)
{
	return ((uint64_t)(uint32_t)bwi_self_pid() << 32) |
	       (uint32_t)bwi_self_starttime();
}

static bool holder_dead(uint64_t w)
{
	uint64_t st = bwi_starttime((pid_t)(w >> 32));

	return st == 0 || (uint32_t)st != (uint32_t)w;
}

void bwi_writer_lock(struct bwi_map *m)
{
	bwi_a64 *l = &m->hdr->ctl.lock;
	uint64_t self = lock_word();
	unsigned spins = 0;

	for (;;) {
		uint64_t cur = 0;

		if (bw_cas(l, &cur, self))
			return;
		if (++spins % 1024 == 0 && cur != self && holder_dead(cur) &&
		    bw_cas(l, &cur, self))
			return;
		sched_yield();
	}
}

void bwi_writer_unlock(struct bwi_map *m)
{
	bw_store_release(&m->hdr->ctl.lock, 0);
}
