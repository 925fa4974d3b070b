/* SPDX-License-Identifier: MIT */
/*
 * Rich indices: making them from pointers, and resolving them (buffer
 * faults and the per-process translation cache).
 *
 * Translations: tcache[id] holds (generation << 48 | mapping address) in one
 * word, so a hit costs that load, a load of the registry entry's state (so a
 * retired ring is never served from the cache), and compares. A miss looks
 * the id up in the host registry, opens the ring with this process's
 * credentials (so open(2) checks permission), maps all of it at once (a
 * buffer fault), checks it is the ring the entry names (ring_id), pins the
 * mapping for the life of the process, and fills the word.
 *
 * Pointers to indices: each thread (for bw_index_of) and each IBuf writer
 * keeps the address ranges of the last BWI_RANGES rings it made indices
 * in, in one cache line; a miss searches the process's mappings.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bwi_index.h"

#define BWI_RECENT 4
#define PTR_MASK ((UINT64_C(1) << 48) - 1)

static _Atomic(bwi_a64 *) tcache;
static pthread_mutex_t tcache_mu = PTHREAD_MUTEX_INITIALIZER;

static bwi_a64 *tcache_array(void)
{
	bwi_a64 *t = atomic_load_explicit(&tcache, memory_order_acquire);

	if (t)
		return t;
	pthread_mutex_lock(&tcache_mu);
	t = atomic_load_explicit(&tcache, memory_order_relaxed);
	if (!t) {
		t = calloc(BWI_REG_SLOTS, sizeof(*t));
		/* R6: the zeroed array before its address (pairs with the
		 * acquire above). */
		atomic_store_explicit(&tcache, t, memory_order_release);
	}
	pthread_mutex_unlock(&tcache_mu);
	return t;
}

/* Maps an anonymous ring through its owner's descriptor. */
static int anon_open(const struct bwi_reg_entry *e, struct bwi_map **out)
{
	char path[64];
	int fd;
	bool w = true;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", e->pid, e->fd);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno == EACCES) {
		w = false;
		fd = open(path, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0) {
		if (errno == EACCES || errno == EPERM)
			return bwi_err(EACCES, "anonymous ring of process %d: "
					       "permission denied",
				       e->pid);
		return bwi_err(ESTALE, "anonymous ring of process %d is gone",
			       e->pid);
	}
	return bwi_map_open_fd(fd, w, NULL, out);
}

/* A buffer fault: maps the ring that id/gen names and caches the
 * translation. */
static int fault(uint16_t id, uint16_t gen, struct bwi_map **out)
{
	struct bwi_reg_entry e;
	struct bwi_map *m;
	bwi_a64 *t;
	int r;

	r = bwi_reg_lookup(id, gen, &e);
	if (r < 0)
		return r;
	if (e.kind == BWI_REG_NAMED) {
		r = bwi_map_open(e.name, BWI_ACC_ANY, &m);
		if (r == -ENOENT)
			r = bwi_err(ESTALE, "ring '%s' of id %u is gone", e.name,
				    id);
	} else {
		m = bwi_map_find_ring(e.ring_id);
		r = m ? 0 : anon_open(&e, &m);
	}
	if (r < 0)
		return r;
	if (m->g.ring_id != e.ring_id) {
		bwi_map_put(m);
		return bwi_err(ESTALE, "ring id %u now names another ring", id);
	}
	bwi_map_pin(m);
	bwi_map_put(m);
	m->reg_id = id;
	m->reg_gen = gen;
	t = tcache_array();
	if (t)
		atomic_store_explicit(&t[id],
				      ((uint64_t)gen << 48) |
					      ((uintptr_t)m & PTR_MASK),
				      memory_order_release);
	*out = m;
	return 0;
}

static int translate(const struct bw_index *idx, struct bwi_map **out)
{
	uint16_t id = bw_index_dbuf(idx), gen = bw_index_gen(idx);
	bwi_a64 *t = tcache_array();
	uint64_t w;

	if (id == 0 || id >= BWI_REG_SLOTS)
		return bwi_err(EINVAL, "index names ring id %u, which no ring "
				       "can have",
			       id);
	if (!t)
		return bwi_err(ENOMEM, "allocating the translation cache");
	/* A6: pairs with the release in fault(): the mapping is complete. */
	w = atomic_load_explicit(&t[id], memory_order_acquire);
	if (w && (uint16_t)(w >> 48) == gen && bwi_reg_live(id, gen)) {
		*out = (struct bwi_map *)(uintptr_t)(w & PTR_MASK);
		return 0;
	}
	return fault(id, gen, out);
}

/* The absolute position of an index's span in m, checked: the bytes are
 * written and still held. */
static int span_of(struct bwi_map *m, const struct bw_index *idx, uint64_t *pos)
{
	uint64_t len = bw_index_len(idx), p48 = bw_index_pos48(idx);
	/* A1 as in stream.c: bytes below tail are written. */
	uint64_t t = bw_load_acquire(&m->hdr->prod.tail), p;

	if (len == 0 || len > m->g.capacity)
		return bwi_err(EINVAL, "index length %llu: not 1 to the ring's "
				       "capacity",
			       (unsigned long long)len);
	p = (t & ~BW_INDEX_POS_MASK) | p48;
	if (p > t) {
		if (t < (UINT64_C(1) << BW_INDEX_POS_BITS))
			return bwi_err(EINVAL, "index position is beyond what the "
					       "ring has written");
		p -= UINT64_C(1) << BW_INDEX_POS_BITS;
	}
	if (p + len > t) {
		if (p + len <= bw_load_acquire(&m->hdr->prod.head))
			return bwi_err(EAGAIN, "the index's bytes are reserved "
					       "but not yet published");
		return bwi_err(EINVAL, "index span [%llu, +%llu) is beyond what "
				       "the ring has written (%llu)",
			       (unsigned long long)p, (unsigned long long)len,
			       (unsigned long long)t);
	}
	if (p < bwi_oldest_held(m))
		return bwi_err(ESTALE, "the index's bytes were overwritten");
	*pos = p;
	return 0;
}

BW_API ssize_t bw_index_resolve(const struct bw_index *idx, const void **ptr)
{
	struct bwi_map *m;
	uint64_t p;
	int r;

	if (!idx || !ptr)
		return bwi_err(EFAULT, "bw_index_resolve needs an index and a "
				       "pointer");
	r = translate(idx, &m);
	if (r == 0)
		r = span_of(m, idx, &p);
	if (r < 0)
		return r;
	*ptr = m->data + (p & m->mask);
	return (ssize_t)bw_index_len(idx);
}

BW_API int bw_index_check(const struct bw_index *idx)
{
	struct bwi_map *m;
	uint64_t p;
	int r;

	if (!idx)
		return bwi_err(EFAULT, "bw_index_check needs an index");
	/* A3 as in stream.c: the caller's loads of the bytes are done
	 * before head is read. */
	bw_smp_rmb();
	r = translate(idx, &m);
	return r < 0 ? r : span_of(m, idx, &p);
}

/* ---- pointers to indices ------------------------------------------------ */

static _Thread_local struct bwi_map_cache rc;

struct bwi_map *bwi_map_lookup(struct bwi_map_cache *c, const void *p)
{
	uintptr_t a = (uintptr_t)p;
	struct bwi_map *m = bwi_map_cached(c, p);
	uint64_t adds;

	if (m)
		return m;
	/* A private buffer written again and again: remembered as in no
	 * ring until a new ring is mapped. */
	adds = atomic_load_explicit(&bwi_map_adds, memory_order_acquire);
	if ((a >> 12) == c->miss_page && adds == c->miss_adds)
		return NULL;
	m = bwi_map_pin_at(p);
	if (!m) {
		c->miss_page = a >> 12;
		c->miss_adds = adds;
	} else {
		unsigned i = c->next++ % BWI_RANGES;

		c->lo[i] = (uintptr_t)m->data;
		c->hi[i] = (uintptr_t)(m->data + 2 * m->g.capacity);
		c->m[i] = m;
	}
	return m;
}

/* The pinned mapping whose data holds p, from this thread's cache. */
struct bwi_map *bwi_map_of(const void *p)
{
	return bwi_map_lookup(&rc, p);
}

BW_API int bw_index_of(const void *p, size_t n, uint16_t meta,
		       struct bw_index *out)
{
	struct bwi_map *m;

	if (!p || !out)
		return bwi_err(EFAULT, "bw_index_of needs a pointer and an index");
	m = bwi_map_of(p);
	if (!m)
		return bwi_err(EINVAL, "%p is not in a ring this process has "
				       "open",
			       p);
	return bwi_index_in(m, p, n, meta, out);
}

int bwi_index_in(struct bwi_map *m, const void *p, size_t n, uint16_t meta,
		 struct bw_index *out)
{
	int r = bwi_index_try(m, p, n, meta, out);

	switch (r) {
	case BWI_IX_EMPTY:
		return bwi_err(EINVAL, "an index names at least one byte");
	case BWI_IX_TOOBIG:
		return bwi_err(EMSGSIZE, "%zu bytes: more than the ring or an "
					 "index holds",
			       n);
	case BWI_IX_PAST_MAP:
		return bwi_err(EINVAL, "the span runs past the ring's mapping");
	case BWI_IX_UNWRITTEN:
		return bwi_err(EINVAL, "%p holds nothing written yet", p);
	case BWI_IX_PAST_HEAD:
		return bwi_err(EINVAL, "the span runs past what the ring has "
				       "reserved");
	case BWI_IX_STALE:
		return bwi_err(ESTALE, "the bytes at %p were overwritten", p);
	default:
		return r;
	}
}

/* ---- application splicing: reads remembered --------------------------------- */

/* The last BWI_RECENT reads of this thread (of at least BWI_SPLICE_MIN
 * bytes): where they put their bytes and where those came from, a ring
 * position (DBuf reads) or an index (IBuf reads). A write of a buffer a
 * read filled, still unmodified, can then store the source's index instead
 * of the bytes: application splicing. Unmodified is checked, by comparing
 * with the source, which costs reads but no copy. */
struct recent {
	uintptr_t lo[BWI_RECENT], hi[BWI_RECENT];
	const struct bwi_map *m[BWI_RECENT]; /* valid while the map epoch */
	uint64_t epoch[BWI_RECENT];	     /* has not moved */
	uint64_t ring_id[BWI_RECENT], pos[BWI_RECENT];
	struct bw_index idx[BWI_RECENT];
	bool is_idx[BWI_RECENT];
	unsigned next;
};

static _Thread_local struct recent recent;

static unsigned recent_slot(const void *dst, size_t n)
{
	unsigned i = recent.next++ % BWI_RECENT;

	recent.lo[i] = (uintptr_t)dst;
	recent.hi[i] = (uintptr_t)dst + n;
	return i;
}

void bwi_note_read(const void *dst, size_t n, const struct bwi_map *m,
		   uint64_t pos)
{
	unsigned i = recent_slot(dst, n);

	recent.m[i] = m;
	recent.epoch[i] = atomic_load_explicit(&bwi_map_epoch,
					       memory_order_relaxed);
	recent.ring_id[i] = m->g.ring_id;
	recent.pos[i] = pos;
	recent.is_idx[i] = false;
}

void bwi_note_read_index(const void *dst, size_t n, const struct bw_index *src)
{
	unsigned i = recent_slot(dst, n);

	recent.idx[i] = *src;
	recent.is_idx[i] = true;
}

/* The index of the n bytes at buf, if a recent read of this thread put them
 * there and they are unchanged. Returns the bytes covered (<= n), or 0. */
size_t bwi_index_of_read(const void *buf, size_t n, struct bw_index *out)
{
	uintptr_t a = (uintptr_t)buf;

	for (unsigned i = 0; i < BWI_RECENT; i++) {
		struct bw_index sub;
		const void *src;
		uint64_t off;
		size_t k;

		if (a < recent.lo[i] || a >= recent.hi[i])
			continue;
		off = a - recent.lo[i];
		k = recent.hi[i] - a < n ? (size_t)(recent.hi[i] - a) : n;
		if (!recent.is_idx[i] &&
		    atomic_load_explicit(&bwi_map_epoch, memory_order_acquire) ==
			    recent.epoch[i]) {
			/* The source ring is still mapped: compare in place,
			 * between two checks that it still holds the bytes. */
			struct bwi_map *m = (struct bwi_map *)recent.m[i];
			uint64_t p = recent.pos[i] + off;

			if (p < bwi_oldest_held(m) ||
			    memcmp(m->data + (p & m->mask), buf, k) != 0)
				continue;
			/* A3 as in stream.c: the compare's loads first. */
			bw_smp_rmb();
			if (p < bwi_oldest_held(m) ||
			    bwi_index_make(m, p, k, 0, out) < 0)
				continue;
			return k;
		}
		if (recent.is_idx[i]) {
			sub = recent.idx[i];
			sub.w0 = (sub.w0 & ~BW_INDEX_POS_MASK) |
				 ((sub.w0 + off) & BW_INDEX_POS_MASK);
			sub.w1 = (sub.w1 & ~UINT64_C(0xffffffff)) | k;
		} else {
			struct bwi_map *m = bwi_map_find_ring(recent.ring_id[i]);
			int r;

			if (!m)
				continue;
			r = bwi_index_make(m, recent.pos[i] + off, k, 0, &sub);
			bwi_map_put(m);
			if (r < 0)
				continue;
		}
		if (bw_index_resolve(&sub, &src) != (ssize_t)k ||
		    memcmp(src, buf, k) != 0 || bw_index_check(&sub) != 0)
			continue;
		*out = sub;
		return k;
	}
	bwi_err_clear();
	return 0;
}
