/* SPDX-License-Identifier: MIT */
/*
 * The host's id registry, and this process's translations from ids to
 * mappings (local/registry.c, local/index.c).
 *
 * The registry is a file beside the rings (<ring dir>/.registry): a
 * versioned header and a table of entries. An entry binds an id (its slot)
 * and a generation to a ring: by name for named rings, by owner process and
 * descriptor for anonymous ones (opened as /proc/PID/fd/FD), and to the
 * ring's random ring_id, which the resolver checks against the ring it maps.
 * The registry is shared and writable by every process that may create
 * rings: each entry is copied once, checked, and bound by ring_id, so a
 * scribbled entry can only make resolution fail.
 */
#ifndef BWI_INDEX_H
#define BWI_INDEX_H

#include "bwi_ring.h"
#include <beltway/index.h>

#define BWI_REG_MAGIC UINT64_C(0x5947455259574c42) /* "BLWYREGY" */
#define BWI_REG_VERSION 1u
#define BWI_REG_SLOTS 4096u /* ids 1..4095; slot 0 is never used */

enum { BWI_REG_NAMED = 1, BWI_REG_ANON = 2 };

struct bwi_reg_hdr {
	uint64_t magic;
	uint32_t version;
	uint32_t nslots;
	uint32_t entry_size;
	uint32_t sum; /* FNV-1a of the fields above */
	uint8_t pad[BWI_LINE - 24];
};

/* Written by its claimer while CLAIMING, then published by the release
 * store of LIVE; readers copy it and re-check the state word after. */
struct bwi_reg_entry {
	bwi_a64 state;	    /* BWI_SLOT_WORD(gen, state), as ring slots */
	uint64_t ring_id;   /* binds the entry to the ring's geometry */
	uint32_t kind;	    /* BWI_REG_* */
	int32_t pid;	    /* anonymous: the process holding the memfd */
	int32_t fd;	    /* ... as this descriptor */
	uint32_t pad;
	uint64_t starttime; /* of pid */
	char name[BWI_NAME_MAX + 1];
	uint8_t pad2[BWI_LINE - 104];
};

_Static_assert(sizeof(struct bwi_reg_hdr) == BWI_LINE, "registry header");
_Static_assert(sizeof(struct bwi_reg_entry) == BWI_LINE, "registry entry");
_Static_assert(offsetof(struct bwi_reg_entry, ring_id) == 8, "registry entry");
_Static_assert(offsetof(struct bwi_reg_entry, name) == 40, "registry entry");

/* Gives m a host-wide id (reusing its entry if another process made one).
 * Returns 0 with *id and *gen set, or -errno. */
int bwi_reg_register(struct bwi_map *m, uint16_t *id, uint16_t *gen);
/* Copies entry id if it is live with generation gen. Returns 0, -ESTALE,
 * -EINVAL (bad id) or -EBADMSG (registry corrupt). */
int bwi_reg_lookup(uint16_t id, uint16_t gen, struct bwi_reg_entry *out);
/* Retires the entries of the ring with this ring_id (it is being removed):
 * their indices become stale. */
void bwi_reg_retire(uint64_t ring_id);
/* Entry id is live with generation gen: one load. */
bool bwi_reg_live(uint16_t id, uint16_t gen);

/* index.c */
/* The pinned mapping whose data holds p, or NULL, through cache c (pinned
 * mappings stay mapped, so c never dangles); bwi_map_of() through this
 * thread's. */
struct bwi_map *bwi_map_lookup(struct bwi_map_cache *c, const void *p);
struct bwi_map *bwi_map_of(const void *p);
/* bw_index_of() for p in the data of m: bwi_index_try() with the reasons
 * for a refusal said as errors. Returns 0 or -errno. */
int bwi_index_in(struct bwi_map *m, const void *p, size_t n, uint16_t meta,
		 struct bw_index *out);

/* The index of n bytes at position pos of m (registering m on first use). */
static inline int bwi_index_make(struct bwi_map *m, uint64_t pos, uint64_t n,
				 uint16_t meta, struct bw_index *out)
{
	uint16_t id = m->reg_id, gen = m->reg_gen;

	if (__builtin_expect(!id, 0)) {
		int r = bwi_reg_register(m, &id, &gen);

		if (r < 0)
			return r;
	}
	out->w0 = (pos & BW_INDEX_POS_MASK) | ((uint64_t)id << BW_INDEX_POS_BITS);
	out->w1 = n | ((uint64_t)gen << 32) | ((uint64_t)meta << 48);
	return 0;
}

/* Why bwi_index_try() refused a span. */
enum bwi_index_why {
	BWI_IX_EMPTY = 1, /* n == 0 */
	BWI_IX_TOOBIG,	  /* n beyond the ring or an index */
	BWI_IX_PAST_MAP,  /* runs past the ring's mapping */
	BWI_IX_UNWRITTEN, /* holds nothing written yet */
	BWI_IX_PAST_HEAD, /* runs past what the ring has reserved */
	BWI_IX_STALE,	  /* overwritten */
};

/* The index of the n bytes at p, which lies in the data of m, among the
 * last capacity positions reserved. Returns 0, an enum bwi_index_why (no
 * error set: the caller says it, or copies instead), or -errno from
 * registering m. Inline: the splice fast path of IBuf writes is this and
 * one record write. */
static inline int bwi_index_try(struct bwi_map *m, const void *p, size_t n,
				uint16_t meta, struct bw_index *out)
{
	uint64_t cap = m->g.capacity, off, hd, pos;

	if (n == 0)
		return BWI_IX_EMPTY;
	if (n > cap || n > UINT32_MAX)
		return BWI_IX_TOOBIG;
	off = (uint64_t)((const uint8_t *)p - m->data);
	if (off >= 2 * cap || n > 2 * cap - off) /* no sum to overflow */
		return BWI_IX_PAST_MAP;
	/* The position whose byte lives at off. */
	hd = bw_load_acquire(&m->hdr->prod.head);
	pos = (hd & ~m->mask) | (off & m->mask);
	if (pos >= hd) {
		if (hd < cap)
			return BWI_IX_UNWRITTEN;
		pos -= cap;
	}
	if (pos + n > hd)
		return BWI_IX_PAST_HEAD;
	/* pos >= hd - capacity by construction: only the scar can be above
	 * it (A4: head was read first, with acquire). */
	if (pos < bw_load_relaxed(&m->hdr->ctl.scar))
		return BWI_IX_STALE;
	return bwi_index_make(m, pos, n, meta, out);
}

/* Application splicing: reads of at least this many bytes are remembered. */
#define BWI_SPLICE_MIN 256
void bwi_note_read(const void *dst, size_t n, const struct bwi_map *m,
		   uint64_t pos);
void bwi_note_read_index(const void *dst, size_t n, const struct bw_index *src);
size_t bwi_index_of_read(const void *buf, size_t n, struct bw_index *out);

#endif
