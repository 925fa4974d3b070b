/* SPDX-License-Identifier: MIT */
/* bw_ring_stat(): a ring's state read through a read-only mapping. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "bwi_index.h"

static void peer_fill(struct bw_ring_peer *p, int role, uint32_t idx,
		      const struct bwi_slot *sl)
{
	p->role = role;
	p->slot = idx;
	p->pid = (pid_t)bw_load_relaxed(&sl->pid);
	p->pos = role == BW_PEER_READER ? bw_load_relaxed(&sl->pos) : 0;
	p->bytes = bw_load_relaxed(&sl->bytes);
	p->calls = bw_load_relaxed(&sl->calls);
	p->waits = bw_load_relaxed(&sl->waits);
	p->lost = bw_load_relaxed(&sl->lost);
}

/* Region k of the self-scaling ring m, mapped read-only, or NULL. */
static struct bwi_map *region(const struct bwi_map *m, uint64_t k)
{
	char part[BWI_NAME_MAX + 1];
	struct bwi_map *r;

	if (bwi_part_name(part, sizeof(part), m->g.ring_id, k) < 0 ||
	    bwi_map_open(part, BWI_ACC_RO, &r) < 0)
		return NULL;
	return r;
}

/* The slot in region old of the reader a slot was kept for (its tag), if
 * that reader is still there; else NULL. */
static const struct bwi_slot *kept_for(const struct bwi_map *old,
				       uint64_t tag)
{
	uint32_t idx = (uint32_t)(tag >> 32);
	const struct bwi_slot *sl;
	uint64_t w;

	if (!old || idx >= old->g.max_readers)
		return NULL;
	sl = &old->hdr->slots[idx];
	w = bw_load_acquire(&sl->state);
	return BWI_SLOT_STATE(w) == BWI_SLOT_ACTIVE &&
			       BWI_SLOT_GEN(w) == (uint32_t)tag
		       ? sl
		       : NULL;
}

/*
 * The peers of a self-scaling ring: who is attached is in the control
 * segment's slots (peers[0..n), filled from them), what they did in the
 * slots of region k, counts carried from region to region (scale.c): each
 * peer takes an active slot there of its role and process. A reader's
 * slot still only kept for it means it is in region k - 1: its slot there.
 */
static void scale_peers(const struct bwi_map *m, uint64_t k,
			struct bw_ring_peer *peers, unsigned n)
{
	struct bwi_map *rm = region(m, k), *old = NULL;
	bool *used = rm ? calloc(rm->g.max_readers + rm->g.max_writers, 1)
			: NULL;

	for (unsigned p = 0; used && p < n; p++) {
		bool rd = peers[p].role == BW_PEER_READER;
		uint32_t i = rd ? 0 : rm->g.max_readers,
			 hi = rd ? rm->g.max_readers
				 : rm->g.max_readers + rm->g.max_writers;

		for (; i < hi; i++) {
			const struct bwi_slot *sl = &rm->hdr->slots[i], *o;

			if (used[i] ||
			    BWI_SLOT_STATE(bw_load_acquire(&sl->state)) !=
				    BWI_SLOT_ACTIVE ||
			    (pid_t)bw_load_relaxed(&sl->pid) != peers[p].pid)
				continue;
			used[i] = true;
			if (rd && bw_load_relaxed(&sl->adopt) == BWI_ADOPT_KEPT) {
				if (!old && k)
					old = region(m, k - 1);
				o = kept_for(old, bw_load_relaxed(&sl->kept_for));
				sl = o ? o : sl;
			}
			peer_fill(&peers[p], peers[p].role, peers[p].slot, sl);
			break;
		}
	}
	free(used);
	if (old)
		bwi_map_put(old);
	if (rm)
		bwi_map_put(rm);
}

/* A self-scaling ring: its sizes, and the positions and counts of its
 * region now (carried from region to region: scale.c). */
static void scale_info(struct bwi_map *m, struct bw_ring_info *info)
{
	struct bwi_scale_area *a = bwi_scale_area(m);
	uint64_t k = bw_load_acquire(&a->cur), sh;
	struct bwi_epoch *e = &a->ev[k % BWI_EPOCHS];
	struct bwi_map *r;
	struct bwi_hdr *h;

	info->scale = m->g.scale;
	info->scale_min = UINT64_C(1) << ((m->g.scale_shifts >> 8) & 0xff);
	info->scale_max = UINT64_C(1) << ((m->g.scale_shifts >> 16) & 0xff);
	sh = bw_load_relaxed(&e->shift);
	if (bw_load_acquire(&e->seq) != k || sh > 63)
		return;
	info->scale_epoch = k;
	info->scale_size = UINT64_C(1) << sh;
	info->capacity = info->scale_size; /* the data's, not the control's */
	r = region(m, k);
	if (!r)
		return;
	h = r->hdr;
	info->write_pos = bw_load_acquire(&h->prod.tail);
	info->reserved_pos = bw_load_relaxed(&h->prod.head);
	info->dropped_writes = bw_load_relaxed(&h->grp.dropped_writes);
	info->dropped_bytes = bw_load_relaxed(&h->grp.dropped_bytes);
	info->reader_waits = bw_load_relaxed(&h->rwait.waits);
	info->writer_waits = bw_load_relaxed(&h->wwait.waits);
	info->reader_wakes = bw_load_relaxed(&h->rwait.wakes);
	bwi_map_put(r);
}

BW_API int bw_ring_stat(const char *name, struct bw_ring_info *info,
			struct bw_ring_peer *peers, unsigned max_peers)
{
	struct bwi_map *m;
	struct bwi_hdr *h;
	struct stat st;
	unsigned n = 0;
	char path[4200];
	int r;

	if (!info)
		return bwi_err(EINVAL, "bw_ring_stat needs an info buffer");
	r = bwi_map_open(name, BWI_ACC_RO, &m);
	if (r < 0)
		return r;
	h = m->hdr;
	memset(info, 0, sizeof(*info));
	snprintf(path, sizeof(path), "%s/%s", bw_ring_dir(), name);
	if (stat(path, &st) == 0) {
		info->mode = st.st_mode & 07777;
		info->uid = st.st_uid;
		info->gid = st.st_gid;
	}
	info->capacity = m->g.capacity;
	info->flags = m->g.flags;
	info->page_size = m->g.page_size;
	info->created_ns = m->g.created_ns;
	info->max_readers = m->g.max_readers;
	info->max_writers = m->g.max_writers;
	info->write_pos = bw_load_acquire(&h->prod.tail);
	info->reserved_pos = bw_load_relaxed(&h->prod.head);
	info->broken = bw_load_relaxed(&h->ctl.broken) != 0;
	info->dead_readers = bw_load_relaxed(&h->ctl.dead_readers);
	info->dead_writers = bw_load_relaxed(&h->ctl.dead_writers);
	info->reader_waits = bw_load_relaxed(&h->rwait.waits);
	info->writer_waits = bw_load_relaxed(&h->wwait.waits);
	info->policy = m->g.policy;
	info->dropped_writes = bw_load_relaxed(&h->grp.dropped_writes);
	info->dropped_bytes = bw_load_relaxed(&h->grp.dropped_bytes);
	info->padded_spans = bw_load_relaxed(&h->grp.padded_spans);
	info->padded_bytes = bw_load_relaxed(&h->grp.padded_bytes);
	info->writer_timeout_ms = m->g.writer_timeout_ms;
	info->wake_batch = m->g.wake_batch;
	info->wake_usec = m->g.wake_usec;
	info->reader_wakes = bw_load_relaxed(&h->rwait.wakes);
	info->reader_sleepers = (uint32_t)(bw_load_relaxed(&h->rwait.waiting) &
					   (BWI_ARMED - 1));
	info->shared_read_pos = bw_load_relaxed(&h->grp.rshared);
	info->layout = m->g.layout == BWI_LAYOUT_INDEX ? 0 : m->g.layout;
	info->record_size = m->g.rec_size;
	info->record_align = m->g.rec_align;
	info->record_align_offset = m->g.rec_align_off;
	info->record_max = bwi_rec_max(&m->g);
	if (m->g.scale)
		scale_info(m, info);
	for (uint32_t i = 0; i < m->g.max_readers + m->g.max_writers; i++) {
		const struct bwi_slot *sl = &h->slots[i];
		bool rd = i < m->g.max_readers;

		if (BWI_SLOT_STATE(bw_load_acquire(&sl->state)) != BWI_SLOT_ACTIVE)
			continue;
		if (rd)
			info->readers++;
		else
			info->writers++;
		if (peers && n < max_peers)
			peer_fill(&peers[n++], rd ? BW_PEER_READER : BW_PEER_WRITER,
				  rd ? i : i - m->g.max_readers, sl);
	}
	if (m->g.scale && peers)
		scale_peers(m, info->scale_epoch, peers, n);
	bwi_map_put(m);
	return (int)(info->readers + info->writers);
}

static int by_count(const void *a, const void *b)
{
	const struct bw_index_target *x = a, *y = b;

	return x->indices < y->indices ? 1 : x->indices > y->indices ? -1 : 0;
}

BW_API int bw_ring_index_targets(const char *name,
				 struct bw_index_target *out, unsigned max)
{
	struct bw_index_target t[256];
	struct bwi_map *m;
	uint64_t tail, from;
	unsigned nt = 0, last = 0;
	int r;

	r = bwi_map_open(name, BWI_ACC_RO, &m);
	if (r < 0)
		return r;
	if (m->g.layout != BWI_LAYOUT_INDEX) {
		bwi_map_put(m);
		return bwi_err(EINVAL, "ring '%s' is not an IBuf", name);
	}
	tail = bw_load_acquire(&m->hdr->prod.tail) & ~UINT64_C(15);
	from = tail > m->g.capacity ? tail - m->g.capacity : 0;
	for (uint64_t p = from; p < tail; p += sizeof(struct bw_index)) {
		struct bw_index idx;
		unsigned i;

		memcpy(&idx, m->data + (p & m->mask), sizeof(idx));
		/* runs of indices point into one ring: the last one first */
		i = last;
		if (i >= nt || t[i].dbuf != bw_index_dbuf(&idx) ||
		    t[i].gen != bw_index_gen(&idx))
			for (i = 0; i < nt; i++)
				if (t[i].dbuf == bw_index_dbuf(&idx) &&
				    t[i].gen == bw_index_gen(&idx))
					break;
		if (i == nt) {
			if (nt == sizeof(t) / sizeof(t[0]))
				continue;
			memset(&t[nt], 0, sizeof(t[nt]));
			t[nt].dbuf = bw_index_dbuf(&idx);
			t[nt].gen = bw_index_gen(&idx);
			nt++;
		}
		t[i].indices++;
		t[i].bytes += bw_index_len(&idx);
		last = i;
	}
	bwi_map_put(m);
	for (unsigned i = 0; i < nt; i++) {
		struct bwi_reg_entry e;

		if (bwi_reg_lookup(t[i].dbuf, t[i].gen, &e) < 0)
			continue;
		t[i].live = 1;
		if (e.kind == BWI_REG_NAMED)
			snprintf(t[i].name, sizeof(t[i].name), "%s", e.name);
		else
			t[i].owner = e.pid;
	}
	bwi_err_clear();
	qsort(t, nt, sizeof(t[0]), by_count);
	if (out)
		memcpy(out, t, sizeof(t[0]) * (nt < max ? nt : max));
	return (int)nt;
}

static const char *const policy_names[] = {"lossless", "srp", "mrp", "frp"};

BW_API const char *bw_policy_name(unsigned policy)
{
	return policy < 4 ? policy_names[policy] : NULL;
}

BW_API int bw_policy_parse(const char *name)
{
	for (unsigned i = 0; name && i < 4; i++)
		if (!strcmp(name, policy_names[i]))
			return (int)i;
	return bwi_err(EINVAL, "unknown policy '%s': lossless, srp, mrp or frp",
		       name ? name : "(null)");
}

static const char *const layout_names[] = {
	[BW_LAYOUT_BYTES] = "bytes",
	[BW_LAYOUT_FR] = "fr",
	[BW_LAYOUT_VR] = "vr",
	[BW_LAYOUT_DR] = "dr",
};
#define NLAYOUTS (sizeof(layout_names) / sizeof(layout_names[0]))

BW_API const char *bw_layout_name(unsigned layout)
{
	return layout < NLAYOUTS ? layout_names[layout] : NULL;
}

BW_API int bw_layout_parse(const char *name)
{
	for (unsigned i = 0; name && i < NLAYOUTS; i++)
		if (layout_names[i] && !strcmp(name, layout_names[i]))
			return (int)i;
	return bwi_err(EINVAL, "unknown layout '%s': bytes, fr, vr or dr",
		       name ? name : "(null)");
}
