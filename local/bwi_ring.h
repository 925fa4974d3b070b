/* SPDX-License-Identifier: MIT */
/*
 * The shared layout of a ring segment, and the private state of a handle.
 *
 * Segment: [header: hdr_size bytes][data: capacity bytes]. The data pages
 * are mapped twice back to back, so any span of up to capacity bytes that
 * starts inside the ring is contiguous in virtual memory (as Linux's BPF
 * ring buffer does).
 *
 * Positions are uint64_t, absolute and free-running: they count bytes from
 * the start of the stream and never reset on wrap. used = tail - pos by
 * unsigned subtraction; the byte at position p lives at data[p & mask].
 * Absolute positions are what let a reader tell that data it is about to
 * read, or has read, was overwritten (check, taps, late joiners).
 *
 * Cache lines are 64 bytes; fields written by different sides sit BWI_LINE
 * (two lines) apart against the adjacent-line prefetcher.
 *
 * Nothing here is trusted on the way in: the geometry is copied once,
 * checksummed and validated; every position and slot field is read once and
 * bounds-checked before use.
 */
#ifndef BWI_RING_H
#define BWI_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bwi_atomic.h"
#include <beltway/stream.h>

#define BWI_RING_MAGIC UINT64_C(0x474e495259574c42) /* "BLWYRING" */
/* 6: a self-scaling ring's parts are named by its ring id (.ID@K), not
 * its name (NAME@K) */
#define BWI_RING_VERSION 6u
#define BWI_LINE 128
#define BWI_MIN_CAPACITY 4096u
#define BWI_MAX_CAPACITY (UINT64_C(1) << 36)
#define BWI_MAX_READERS 1024u
#define BWI_DEFAULT_READERS 64 /* reader slots of a ring unless asked */
#define BWI_MAX_WRITERS 256u
#define BWI_NAME_MAX 63
#define BWI_HUGE_PAGE (2u << 20)
#define BWI_MAX_WRITER_TIMEOUT_MS 86400000u
#define BWI_MAX_WAKE_BATCH (1u << 20)
#define BWI_MAX_WAKE_USEC 1000000u
#define BWI_DEFAULT_WAKE_USEC 1000u

/* Geometry: written once by the creator before the segment gets its name,
 * then never. Read once into struct bwi_map and validated there. */
struct bwi_geom {
	uint64_t magic;
	uint32_t version;
	uint32_t hdr_size;  /* bytes before the data; multiple of page_size */
	uint64_t capacity;  /* power of two, multiple of page_size */
	uint32_t page_size; /* 4096 or BWI_HUGE_PAGE */
	uint32_t max_readers;
	uint32_t max_writers;
	uint32_t flags;	    /* BW_RING_* */
	uint64_t ring_id;   /* random: names doorbells, tells rings apart */
	uint64_t created_ns;
	uint32_t layout;    /* BWI_LAYOUT_* */
	uint32_t policy;    /* enum bw_policy */
	uint32_t writer_timeout_ms; /* 0: a writer is presumed dead only when
				     * its process is */
	uint32_t wake_batch; /* > 1: readers are woken once per this many
			      * publishes while they sleep */
	uint32_t wake_usec;  /* and sleep at most this long (the timer) */
	uint32_t rec_size;   /* FR: slot bytes; VR, DR: largest record */
	uint32_t rec_align;  /* records start at multiples of it */
	uint32_t rec_align_off; /* the payload ends this far before an
				 * aligned address */
	uint32_t rec_hdrs;   /* DR: entries of the header ring (cap /
			      * rec_align), after the posted spans */
	uint32_t owner_pid;  /* dynamic rings: the process whose heap holds
			      * the data, and its start time */
	uint64_t owner_start;
	uint32_t scale;	     /* enum bw_scale: this is the control segment
			      * of a self-scaling ring (scale.c) */
	uint32_t scale_shifts; /* log2 of the initial, least and largest
				* sizes, in bits 0-7, 8-15, 16-23 */
	uint32_t sum;	    /* checksum of the bytes before it */
	uint32_t pad;
};

/* Internal geometry flags, above the public BW_RING_* ones. */
#define BWI_GF_EPOCH (1u << 30) /* a region of a self-scaling ring */
#define BWI_GF_DECK (1u << 29)	/* whose data is in .ID@deck */
#define BWI_GF_PUBLIC (BW_RING_HUGEPAGE | BW_RING_INDEX | BW_RING_DYNAMIC)

/* Self-scaling rings: the table of regions (epochs) in the control
 * segment, after the DR header ring. Epoch k lives in entry k % BWI_EPOCHS:
 * start, shift, end (BWI_NO_POS while it is the producer's), then seq = k
 * (release) once it is filled in. cur: the producer's epoch. */
#define BWI_EPOCHS 8u
struct bwi_epoch {
	bwi_a64 seq;
	bwi_a64 start;
	bwi_a64 end;
	bwi_a64 shift;
};
struct bwi_scale_area {
	bwi_a64 cur;
	bwi_a64 resizing; /* deck-cut: nonzero while the writer is between
			   * steps 0 and 4 of a resize (scale.c) */
	uint64_t pad[2];
	struct bwi_epoch ev[BWI_EPOCHS];
};
_Static_assert(offsetof(struct bwi_scale_area, resizing) == 8 &&
		       offsetof(struct bwi_scale_area, ev) == 32 &&
		       sizeof(struct bwi_scale_area) == 288,
	       "scale area layout");

/* Written by writers on every call, each word on its own line: readers poll
 * tail, while head is touched only by writers (and validating readers), so a
 * reservation does not steal the line a reader is polling. */
struct bwi_prod {
	bwi_a64 head; /* reserved by writers up to here */
	uint8_t pad[BWI_LINE - 8];
	bwi_a64 tail; /* published: readers may read below it */
	bwi_a64 pads; /* padding spans ever recorded (struct bwi_pad): on the
		       * tail's line, so a reader's refresh sees it for free */
};

/* Written on attach, detach and reclaim only. */
struct bwi_ctl {
	bwi_a64 lock;	  /* writer-attach lock: the holder's pid in the high
			   * 32 bits, the low 32 of its start time below; 0:
			   * free */
	bwi_a32 peer_seq; /* futex: bumped on every attach and detach */
	bwi_a32 broken;	  /* a writer died inside an ordered write */
	bwi_a32 rslots_hi; /* reader slots ever claimed: scan bound */
	bwi_a32 wslots_hi; /* writer slots ever claimed: scan bound */
	bwi_a32 multi;	  /* 0 while one writer is alone: it moves head
			   * with a plain store instead of a CAS */
	bwi_a32 wattach;  /* writers ever attached: a FIFO-style open that
			   * waits for one sees it even if it left again */
	bwi_a64 scar;	  /* bytes below this position may be damaged */
	bwi_a64 dead_readers;
	bwi_a64 dead_writers;
	bwi_a32 rattach;  /* readers ever attached */
	bwi_a32 wdetach;  /* writers ever detached (or found dead) */
	bwi_a32 rdetach;  /* readers ever detached (or found dead) */
	bwi_a32 remote;	  /* a fabric server holds the only writer slot
			   * for a remote writer that moves head and tail
			   * itself: other writers may not attach */
};

/* One per direction: readers wait in rwait for data, writers in wwait for
 * space. The waiting side writes sleepers/armed; the other side reads them
 * after every publish and bumps seq (the futex word) when they are set. */
struct bwi_wait {
	bwi_a64 waiting; /* BWI_SLEEPER per handle in futex_wait on seq, plus
			  * BWI_ARMED per armed doorbell: one load tells a
			  * publisher whether anyone needs waking */
	bwi_a32 seq;
	bwi_a32 pending; /* reader line, batching rings: publishes since
			  * the last wake */
	bwi_a64 waits;	 /* sleeps, for statistics */
	bwi_a64 wakes;	 /* wakes issued, for statistics */
};

/* Group synchronization: written by MRP readers (rshared) and by writers
 * that drop (SRP, MRP), each on its own 64-byte line. */
struct bwi_group {
	bwi_a64 rshared; /* MRP: the readers' shared position R, raised by
			  * atomic max; writers drop while head would pass
			  * R + capacity */
	uint8_t pad[56];
	bwi_a64 dropped_writes;
	bwi_a64 dropped_bytes;
	bwi_a64 padded_spans; /* reservations of writers presumed dead */
	bwi_a64 padded_bytes;
};

/*
 * Padding. A reservation whose writer died (or, with writer_timeout_ms,
 * stalled that long) is never published: a waiter fences the writer out of
 * it (its slot marker gets BWI_FENCE_BIT), records [start, end) here, and
 * moves the tail over it. Readers skip recorded spans; they are never
 * delivered. Pad k lives in padv[k % BWI_PADS]; its seq (k) is written
 * last, so a reader that reads seq, the span, then seq again and sees k
 * both times has a consistent span. The entry is written, then prod.pads
 * raised, then the tail moved: a reader that sees the tail past start sees
 * the entry. Entry k is reused for pad k + BWI_PADS only once end +
 * capacity <= tail: every reader is past end by then, or has lost those
 * bytes to overwriting and learns it by validation.
 */
#define BWI_PADS 16u
struct bwi_pad {
	bwi_a64 seq; /* k, or BWI_PAD_BUSY while written */
	bwi_a64 start;
	bwi_a64 end;
	uint64_t pad;
};
#define BWI_PAD_BUSY UINT64_MAX

/* Reads pad entry p (a seqlock: the padder writes seq last): true, with
 * its seq and span, when no padder was writing it meanwhile. */
static inline bool bwi_pad_load(struct bwi_pad *p, uint64_t *seq,
				uint64_t *start, uint64_t *end)
{
	uint64_t q = bw_load_acquire(&p->seq);

	*seq = q;
	*start = bw_load_relaxed(&p->start);
	*end = bw_load_relaxed(&p->end);
	bw_smp_rmb();
	return q != BWI_PAD_BUSY && bw_load_relaxed(&p->seq) == q;
}

/* A reader slot claimed for another process's reader (KEPT) is adopted by
 * it (CAS KEPT -> TAKEN) or given up (KEPT -> GIVEN_UP), once. A slot its
 * reader claimed itself is OWN. */
enum {
	BWI_ADOPT_OWN = 0,
	BWI_ADOPT_KEPT = 1,
	BWI_ADOPT_TAKEN = 2,
	BWI_ADOPT_GIVEN_UP = 3,
};

#define BWI_SLEEPER UINT64_C(1)
#define BWI_ARMED (UINT64_C(1) << 32)

enum { BWI_SLOT_FREE = 0, BWI_SLOT_CLAIMING = 1, BWI_SLOT_ACTIVE = 2 };
enum {
	BWI_LAYOUT_BYTES = BW_LAYOUT_BYTES,
	BWI_LAYOUT_INDEX = 1, /* 16-byte index records (IBufs) */
	BWI_LAYOUT_FR = BW_LAYOUT_FR,
	BWI_LAYOUT_VR = BW_LAYOUT_VR,
	BWI_LAYOUT_DR = BW_LAYOUT_DR,
};
enum { BWI_BELL_OFF = 0, BWI_BELL_ARMED = 1, BWI_BELL_RUNG = 2 };

/* The state word: generation in the high 32 bits, state in the low 2, and,
 * while CLAIMING, the claimer's pid in bits 2-31, so that a claimer that
 * died half-way can be found dead and its slot reclaimed. */
#define BWI_SLOT_STATE(w) ((uint32_t)((w) & 3u))
#define BWI_SLOT_GEN(w) ((uint32_t)((w) >> 32))
#define BWI_SLOT_WORD(gen, st) (((uint64_t)(gen) << 32) | (st))
#define BWI_SLOT_CLAIMER(w) ((pid_t)(((w) & 0xffffffffu) >> 2))

/* A reader's or writer's attachment. Only its owner writes it, except the
 * state word, which a reclaimer may CAS from ACTIVE to FREE. */
struct bwi_slot {
	bwi_a64 state; /* BWI_SLOT_WORD(gen, state) */
	bwi_a64 pos;   /* readers: published read position */
	bwi_a32 pid;
	bwi_a32 bell;  /* BWI_BELL_*: doorbell of this handle */
	bwi_a64 starttime; /* of pid, in clock ticks: survives pid reuse */
	bwi_a64 bytes;
	bwi_a64 calls;
	bwi_a64 waits;
	bwi_a64 lost;
	bwi_a64 adopt;	  /* BWI_ADOPT_*: readers of self-scaling rings */
	bwi_a64 kept_for; /* a KEPT slot: (index << 32) | generation of the
			   * slot, in the region before, of the reader it is
			   * kept for */
	/* Writers: the reservation this writer holds, once head has moved
	 * for it: rend first, then rstart (release). A marker pos = start |
	 * OPEN with rstart == start names the holder and rend its end. */
	bwi_a64 rstart;
	bwi_a64 rend;
	uint8_t pad[BWI_LINE - 96];
};

/*
 * Posted spans: BWI_POSTS per writer slot, in an area after the slot table
 * (bwi_wposts). A span a writer completed while an earlier reservation was
 * still unpublished, for whoever moves the tail to its start to carry the
 * tail over: start | BWI_DONE_BIT, then end. The writer fills its entries
 * in turn, and reuses one only once the tail has passed its end, so it can
 * run BWI_POSTS writes ahead of a writer that is not scheduled.
 */
#define BWI_POSTS 8u
#define BWI_DONE_BIT (UINT64_C(1) << 63)
struct bwi_post {
	bwi_a64 start;
	bwi_a64 end;
};
_Static_assert(sizeof(struct bwi_post) * BWI_POSTS == 128,
	       "a writer's posts fill two lines");
/* Writer slot marker (pos): start | OPEN while the reservation at start is
 * held; | CLOSE once its writer is publishing it (rings with a writer
 * timeout); | FENCE once a waiter took it over to pad it. */
#define BWI_OPEN_BIT (UINT64_C(1) << 63)
#define BWI_CLOSE_BIT (UINT64_C(1) << 62)
#define BWI_FENCE_BIT (UINT64_C(1) << 61)
#define BWI_MARK_POS(p) ((p) & ~(BWI_OPEN_BIT | BWI_CLOSE_BIT | BWI_FENCE_BIT))
#define BWI_NO_POS UINT64_MAX /* rstart of no reservation */

struct bwi_hdr {
	struct bwi_geom g;
	uint8_t pad0[256 - sizeof(struct bwi_geom)];
	struct bwi_prod prod;
	uint8_t pad1[2 * BWI_LINE - sizeof(struct bwi_prod)];
	struct bwi_ctl ctl;
	uint8_t pad2[BWI_LINE - sizeof(struct bwi_ctl)];
	struct bwi_wait rwait;
	uint8_t pad3[BWI_LINE - sizeof(struct bwi_wait)];
	struct bwi_wait wwait;
	uint8_t pad4[BWI_LINE - sizeof(struct bwi_wait)];
	struct bwi_group grp;
	uint8_t pad5[BWI_LINE - sizeof(struct bwi_group)];
	struct bwi_pad padv[BWI_PADS];
	struct bwi_slot slots[]; /* max_readers, then max_writers */
};

_Static_assert(sizeof(struct bwi_geom) == 120, "geometry layout");
_Static_assert(offsetof(struct bwi_geom, scale_shifts) == 108,
	       "geometry layout");
_Static_assert(offsetof(struct bwi_geom, owner_start) == 96,
	       "geometry layout");
_Static_assert(offsetof(struct bwi_geom, capacity) == 16, "geometry layout");
_Static_assert(offsetof(struct bwi_geom, ring_id) == 40, "geometry layout");
_Static_assert(offsetof(struct bwi_geom, sum) == 112, "geometry layout");
_Static_assert(offsetof(struct bwi_geom, rec_size) == 76, "geometry layout");
_Static_assert(offsetof(struct bwi_geom, rec_hdrs) == 88, "geometry layout");
_Static_assert(offsetof(struct bwi_hdr, prod.head) == 256, "reservation line");
_Static_assert(offsetof(struct bwi_hdr, prod.tail) == 384, "publication line");
_Static_assert(offsetof(struct bwi_hdr, ctl) == 512, "control line");
_Static_assert(offsetof(struct bwi_hdr, rwait) == 640, "reader wait line");
_Static_assert(offsetof(struct bwi_hdr, wwait) == 768, "writer wait line");
_Static_assert(offsetof(struct bwi_hdr, grp) == 896, "group line");
_Static_assert(offsetof(struct bwi_hdr, grp.dropped_writes) == 960,
	       "drop counters on their own line");
_Static_assert(offsetof(struct bwi_hdr, prod.pads) == 392, "pads on tail line");
_Static_assert(offsetof(struct bwi_hdr, grp.padded_bytes) == 984,
	       "pad counters on the drop line");
_Static_assert(offsetof(struct bwi_hdr, padv) == 1024, "pad table");
_Static_assert(sizeof(struct bwi_pad) == 32, "pad entry");
_Static_assert(offsetof(struct bwi_hdr, slots) == 1536, "slot table");
_Static_assert(offsetof(struct bwi_geom, writer_timeout_ms) == 64,
	       "geometry layout");
_Static_assert(offsetof(struct bwi_geom, wake_usec) == 72, "geometry layout");
_Static_assert(offsetof(struct bwi_wait, wakes) == 24, "wait line layout");
_Static_assert(offsetof(struct bwi_geom, policy) == 60, "geometry layout");
_Static_assert(sizeof(struct bwi_slot) == BWI_LINE, "slot size");
_Static_assert(offsetof(struct bwi_slot, pos) == 8, "slot layout");
_Static_assert(offsetof(struct bwi_slot, lost) == 56, "slot layout");
_Static_assert(offsetof(struct bwi_slot, rstart) == 80, "slot layout");
_Static_assert(offsetof(struct bwi_slot, adopt) == 64, "slot layout");
_Static_assert(offsetof(struct bwi_slot, rend) == 88, "slot layout");
_Static_assert(sizeof(struct bwi_ctl) <= BWI_LINE, "control line");
_Static_assert(offsetof(struct bwi_ctl, scar) == 32, "control line layout");

struct bwi_dyn;

/* A validated mapping of one segment. A process maps each ring once: its
 * handles share the mapping (counted by refs), so threads touching one ring
 * touch the same addresses, which is also what lets TSan see them. */
struct bwi_map {
	struct bwi_geom g; /* validated private copy: never re-read */
	struct bwi_hdr *hdr;
	uint8_t *data;	   /* capacity bytes, mapped twice */
	uint64_t mask;
	size_t map_len;
	bool writable;
	bool anon;
	int fd;		   /* anonymous rings keep it */
	char name[BWI_NAME_MAX + 1];
	unsigned refs;	   /* under the map cache lock */
	dev_t dev;	   /* the file (or memfd): the cache key */
	ino_t ino;
	bool pinned;	   /* indices use it: mapped until the process ends */
	uint16_t reg_id;   /* host-wide id, once registered (0: none yet) */
	uint16_t reg_gen;
	struct bwi_dyn *dyn; /* dynamic rings: the containers (dynamic.c) */
	uint64_t start_pos;  /* a new epoch's first position (hdr_init) */
	struct bwi_map *next;
};

/* ---- dynamic.c ---- */
void bwi_dyn_free(struct bwi_map *m);
uint64_t bwi_dyn_held(const struct bwi_map *m);

/* ---- segment.c ---- */
/* Bytes of the segment file: a dynamic ring's data is not in it. */
static inline uint64_t bwi_seg_bytes(const struct bwi_geom *g)
{
	return g->hdr_size +
	       ((g->flags & (BW_RING_DYNAMIC | BWI_GF_DECK)) ? 0 : g->capacity);
}

int bwi_epoch_create(const struct bwi_map *root, uint64_t k, unsigned shift,
		     uint64_t start);
/* Parts of the self-scaling ring whose control segment has ring_id: region
 * k, or the deck (k = UINT64_MAX), named .ID@K and .ID@deck (segment.c). */
int bwi_part_name(char *out, size_t len, uint64_t ring_id, uint64_t k);
void bwi_part_unlink(uint64_t ring_id, uint64_t k);
void bwi_parts_sweep(uint64_t ring_id, uint64_t last);
bool bwi_map_linked(const struct bwi_map *m);

int bwi_name_check(const char *name);
int bwi_ring_create(const char *name, const struct bw_ring_opts *opts,
		    struct bwi_map *m);
/* Access wanted by bwi_ring_map(). */
enum bwi_access {
	BWI_ACC_RW,  /* read and write, or -EACCES */
	BWI_ACC_ANY, /* read and write if permitted, else read-only */
	BWI_ACC_RO,  /* read-only */
};
int bwi_map_open(const char *name, enum bwi_access acc, struct bwi_map **out);
int bwi_map_open_fd(int fd, bool writable, const char *name,
		    struct bwi_map **out);
struct bwi_map *bwi_map_pin_at(const void *p);

/* Pointers to the pinned mappings that hold them (bwi_map_lookup), for a
 * thread (bw_index_of) or an IBuf writer's handle. */
#define BWI_RANGES 4
struct bwi_map_cache {
	uintptr_t lo[BWI_RANGES]; /* one cache line: lo and hi of 4 rings */
	uintptr_t hi[BWI_RANGES];
	struct bwi_map *m[BWI_RANGES];
	unsigned next;
	uintptr_t miss_page; /* a page in no ring, as of ... */
	uint64_t miss_adds;  /* ... this count of mappings added */
};

/* The mapping in c whose data holds p, or NULL: a few compares. */
static inline struct bwi_map *bwi_map_cached(const struct bwi_map_cache *c,
					     const void *p)
{
	uintptr_t a = (uintptr_t)p;

	for (unsigned i = 0; i < BWI_RANGES; i++)
		if (a - c->lo[i] < c->hi[i] - c->lo[i])
			return c->m[i];
	return NULL;
}
struct bwi_map *bwi_map_find_ring(uint64_t ring_id);
extern _Atomic uint64_t bwi_map_epoch;
extern _Atomic uint64_t bwi_map_adds;
void bwi_map_pin(struct bwi_map *m);
int bwi_map_anon(const struct bw_ring_opts *opts, struct bwi_map **out);
void bwi_wt_opts(const struct bw_ring_opts *ib, uint64_t cap,
		 struct bw_ring_opts *o);
void bwi_map_get(struct bwi_map *m);
void bwi_map_put(struct bwi_map *m);
void bwi_maps_lock(void);
void bwi_maps_unlock(void);
void bwi_maps_child(void);
void bwi_ring_unmap(struct bwi_map *m);
uint32_t bwi_geom_sum(const struct bwi_geom *g);

bool bwi_head_rollback(struct bwi_map *m, uint64_t from, uint64_t to);
void bwi_scar_raise(struct bwi_map *m, uint64_t pos);

/* The oldest position whose byte is still intact in the ring. */
static inline uint64_t bwi_oldest_held(const struct bwi_map *m)
{
	/* A4: pairs with the seq_cst scar raise before a head rollback
	 * (bwi_head_rollback): a head we see rolled back comes with its scar. */
	uint64_t h = bw_load_acquire(&m->hdr->prod.head);
	uint64_t sc = bw_load_relaxed(&m->hdr->ctl.scar);
	uint64_t o = h > m->g.capacity ? h - m->g.capacity : 0;

	return o > sc ? o : sc;
}

static inline struct bwi_slot *bwi_rslot(const struct bwi_map *m, uint32_t i)
{
	return &m->hdr->slots[i];
}

static inline struct bwi_slot *bwi_wslot(const struct bwi_map *m, uint32_t i)
{
	return &m->hdr->slots[m->g.max_readers + i];
}

/* Writer slot i's posted spans: after the slot table. */
static inline struct bwi_post *bwi_wposts(const struct bwi_map *m, uint32_t i)
{
	return (struct bwi_post *)&m->hdr
		       ->slots[m->g.max_readers + m->g.max_writers] +
	       (size_t)i * BWI_POSTS;
}

/* DR: the header ring, one 8-byte entry per rec_align bytes of data, after
 * the posted spans. Entry (p / rec_align) % rec_hdrs describes the record
 * that starts at data position p (see record.c). */
static inline bwi_a64 *bwi_rec_hdrs(const struct bwi_map *m)
{
	return (bwi_a64 *)bwi_wposts(m, m->g.max_writers);
}

/* Record rings: where the payload starts in a record (after the inline
 * header of FR and VR, so that payload + rec_align_off is aligned) and the
 * bytes a record of len bytes takes in the ring. */
static inline uint32_t bwi_rec_hoff(const struct bwi_geom *g)
{
	uint32_t a = g->rec_align, o = g->rec_align_off;
	uint32_t h = g->layout == BWI_LAYOUT_DR ? 0 : 8;

	return (h + o + a - 1) / a * a - o;
}

static inline uint64_t bwi_rec_foot(const struct bwi_geom *g, uint64_t len)
{
	uint64_t a = g->rec_align, f;

	if (g->layout == BWI_LAYOUT_FR)
		return g->rec_size;
	f = (bwi_rec_hoff(g) + len + a - 1) / a * a;
	return f ? f : a;
}

/* The largest payload one record may carry; 0 on byte rings and IBufs. */
static inline uint32_t bwi_rec_max(const struct bwi_geom *g)
{
	if (g->layout < BWI_LAYOUT_FR)
		return 0;
	return g->layout == BWI_LAYOUT_FR ? g->rec_size - bwi_rec_hoff(g)
					  : g->rec_size;
}

/* What is wrong with g's record layout (defaults applied), or NULL
 * (segment.c). */
const char *bwi_rec_bad(const struct bwi_geom *g);
/* The record header word v found at position p of a record ring g: NULL
 * and the payload length (0: a pad span to skip) and footprint, or what is
 * wrong with it. Bounds against what was published are the caller's
 * (record.c). */
const char *bwi_rec_hdr(const struct bwi_geom *g, uint64_t p, uint64_t v,
			uint32_t *len, uint64_t *foot);
/* The header word of a record of len payload bytes at position p (fr and
 * vr rings: stored at p, before the payload). */
uint64_t bwi_rec_hdr_word(uint64_t p, uint32_t len);

/* The record layout of an origin of capacity cap for a reader that parses
 * fr and vr records itself (a shadow, a remote writer); any other layout
 * reads as bytes. The values were checked (bwi_rec_bad). */
static inline struct bwi_geom bwi_rec_geom(uint64_t cap, uint32_t layout,
					   uint32_t size, uint32_t align,
					   uint32_t off)
{
	struct bwi_geom g = {.capacity = cap, .layout = BWI_LAYOUT_BYTES};

	if (layout == BWI_LAYOUT_FR || layout == BWI_LAYOUT_VR) {
		g.layout = layout;
		g.rec_size = size;
		g.rec_align = align;
		g.rec_align_off = off;
	}
	return g;
}

/* The epoch table of a self-scaling ring's control segment. */
static inline struct bwi_scale_area *bwi_scale_area(const struct bwi_map *m)
{
	return (struct bwi_scale_area *)(bwi_rec_hdrs(m) + m->g.rec_hdrs);
}

/* ---- slots.c ---- */
enum bwi_role { BWI_READER = 0, BWI_WRITER = 1 };
/* Rings the armed doorbells of role's slots (bell.c). */
void bwi_bell_ring_all(struct bwi_map *m, struct bwi_wait *w,
		       enum bwi_role role);

int bwi_slot_claim(struct bwi_map *m, enum bwi_role role, uint64_t pos,
		   uint32_t *idx, uint32_t *gen);
int bwi_slot_keep(struct bwi_map *m, uint64_t pos, pid_t pid,
		  uint64_t starttime, uint64_t kept_for, uint32_t *idx,
		  uint32_t *gen);
void bwi_slot_release(struct bwi_map *m, enum bwi_role role, uint32_t idx,
		      uint32_t gen);
unsigned bwi_slot_count(const struct bwi_map *m, enum bwi_role role);
/* Slots of role held by live processes (or being claimed by one): read
 * only, for those who may not reap. */
unsigned bwi_slot_live(const struct bwi_map *m, enum bwi_role role);
unsigned bwi_reap(struct bwi_map *m);
int bwi_min_reader(const struct bwi_map *m, uint64_t head, uint64_t tail,
		   uint64_t *min);
void bwi_writer_lock(struct bwi_map *m);
void bwi_writer_unlock(struct bwi_map *m);
void bwi_bump_peers(struct bwi_map *m);
uint32_t bwi_slots_hi(const struct bwi_map *m, enum bwi_role role);
/* Writer slot i has a posted span that the tail t has not passed. */
bool bwi_wposts_pending(const struct bwi_map *m, uint32_t i, uint64_t t);

/* ---- os.c ---- */
int bwi_futex_wait_us(bwi_a32 *w, uint32_t val, int64_t timeout_us);
void bwi_futex_wake(bwi_a32 *w);
struct bwi_waitv {
	bwi_a32 *word;
	uint32_t val;
};
int bwi_futex_waitv_us(const struct bwi_waitv *v, unsigned n,
		       int64_t timeout_us);
void bwi_barrier_init(void);
void bwi_barrier_heavy(void);
extern bool bwi_barrier_asym;
uint64_t bwi_starttime(pid_t pid);
bool bwi_pid_alive(pid_t pid, uint64_t starttime);
uint64_t bwi_now_ns(void);
uint64_t bwi_random64(void);
uint32_t bwi_fnv1a(const void *p, size_t n);
int bwi_liveness_ms(void);
pid_t bwi_self_pid(void);
uint64_t bwi_self_starttime(void);

/*
 * The asymmetric Dekker between a side that publishes and a side that goes
 * to sleep: publish (store), light barrier, load the sleeper flags; sleep:
 * raise the flag, bwi_barrier_heavy(), load the position. With
 * membarrier(GLOBAL_EXPEDITED) registered (bwi_barrier_asym), the heavy side
 * forces a full barrier on every CPU running a registered process, so the
 * light side needs only a compiler barrier; otherwise both are full fences.
 * The light side lives in stream.c (light()).
 */

/* ---- err.c ---- */
int bwi_err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void bwi_err_clear(void);

#endif
