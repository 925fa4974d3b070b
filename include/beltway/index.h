/* SPDX-License-Identifier: MIT */
/*
 * Rich indices: host-wide names for blocks in rings (thesis section 4.3).
 *
 * A rich index names a span of bytes in a ring (a DBuf) by the ring's
 * host-wide id and the span's absolute stream position, so it means the
 * same in every process on the host, wherever the ring is mapped. It is 16
 * bytes: four share a cache line.
 *
 *   w0: position (low 48 bits)  | DBuf id (16 bits)
 *   w1: length (32 bits)        | DBuf generation (16 bits) | metadata (16)
 *
 * Limits of the packing, stated once:
 * - at most 65535 rings hold ids at one time on a host (id 0 is never used);
 * - an id's generation is 16 bits: an index survives at most 65535 reuses of
 *   its id before it could be mistaken for a newer ring's, long after its
 *   block was overwritten;
 * - the position is kept modulo 2^48 and recovered against the ring's write
 *   position, which is exact because a span is only ever valid within one
 *   ring capacity (at most 2^36) of it; streams may run forever;
 * - a span is at most the ring's capacity and below 4 GiB; the thesis's
 *   separate block position and offset are one position here (positions are
 *   byte-absolute, so block + offset is a position);
 * - metadata is 16 bits, free for the application.
 *
 * Resolving an index maps its ring on first use (a buffer fault: the whole
 * ring at once, after the permission check of open(2)), caches the
 * translation in the process, and checks the span is still held.
 */
#ifndef BELTWAY_INDEX_H
#define BELTWAY_INDEX_H

#include <beltway/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct bw_index {
	uint64_t w0;
	uint64_t w1;
};

#define BW_INDEX_POS_BITS 48
#define BW_INDEX_POS_MASK ((UINT64_C(1) << BW_INDEX_POS_BITS) - 1)

/* Fields of an index. The position is modulo 2^48. */
static inline uint16_t bw_index_dbuf(const struct bw_index *i)
{
	return (uint16_t)(i->w0 >> BW_INDEX_POS_BITS);
}

static inline uint64_t bw_index_pos48(const struct bw_index *i)
{
	return i->w0 & BW_INDEX_POS_MASK;
}

static inline uint32_t bw_index_len(const struct bw_index *i)
{
	return (uint32_t)i->w1;
}

static inline uint16_t bw_index_gen(const struct bw_index *i)
{
	return (uint16_t)(i->w1 >> 32);
}

static inline uint16_t bw_index_meta(const struct bw_index *i)
{
	return (uint16_t)(i->w1 >> 48);
}

static inline void bw_index_set_meta(struct bw_index *i, uint16_t meta)
{
	i->w1 = (i->w1 & ~(UINT64_C(0xffff) << 48)) | ((uint64_t)meta << 48);
}

/* Makes an index for the n bytes at p, which must lie in the data of a ring
 * this process has open (as a pointer from peek, peek_acquire or poke
 * does). Gives the ring a host-wide id on first use. Returns 0, -EINVAL when
 * p is not in such a ring or n is 0, -EMSGSIZE when n exceeds the ring or
 * 4 GiB, -ESTALE when the bytes are no longer held, -ENOSPC when the host
 * has no ids left. */
BW_API int bw_index_of(const void *p, size_t n, uint16_t meta,
		       struct bw_index *out);

/* Resolves an index: points *ptr at its bytes (contiguous) and returns their
 * length. Maps the ring on first use in this process. Returns -ESTALE when
 * the ring is gone or reused, or the bytes were overwritten; -EACCES when
 * this process may not read the ring; -EINVAL for an index that names
 * nothing (bad id, bytes not yet written, length beyond the ring);
 * -EBADMSG when the ring or the host's id registry is corrupt. The bytes
 * may be overwritten after the call: bw_index_check() tells whether they
 * were. */
BW_API ssize_t bw_index_resolve(const struct bw_index *idx, const void **ptr);

/* Returns 0 when the bytes of an index are still held in their ring,
 * -ESTALE when they were overwritten, or an error as resolve does. Call it
 * after using resolved bytes to validate the use. */
BW_API int bw_index_check(const struct bw_index *idx);

/* A ring the indices held in an IBuf point into. */
struct bw_index_target {
	uint16_t dbuf; /* host-wide id */
	uint16_t gen;
	int live;      /* the registry still names this ring */
	char name[64]; /* its name; "" for an anonymous ring */
	pid_t owner;   /* anonymous: the process holding it */
	uint64_t indices, bytes; /* held indices into it, bytes they name */
};

/* Reads the indices the named IBuf holds and fills up to max targets, one
 * per ring they point into, most used first. Returns the number of targets
 * found (it may exceed max; the first 256 rings found are told apart, the
 * indices into any others are not counted), -EINVAL when NAME is not an
 * IBuf, or as bw_ring_stat() does. */
BW_API int bw_ring_index_targets(const char *name,
				 struct bw_index_target *out, unsigned max);

#ifdef __cplusplus
}
#endif
#endif
