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
struct bwi_map *bwi_map_of(const void *p);
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

/* Application splicing: reads of at least this many bytes are remembered. */
#define BWI_SPLICE_MIN 256
void bwi_note_read(const void *dst, size_t n, const struct bwi_map *m,
		   uint64_t pos);
void bwi_note_read_index(const void *dst, size_t n, const struct bw_index *src);
size_t bwi_index_of_read(const void *buf, size_t n, struct bw_index *out);

#endif
