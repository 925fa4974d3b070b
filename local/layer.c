/* SPDX-License-Identifier: MIT */
/*
 * Implementation stacking: the default table every missing op answers from,
 * and the stack a handle gets for its ring (thesis section 4.5).
 *
 * A ring's stack is fixed when it is created and recorded in its geometry:
 * the layout layer (index, fr, vr or dr records; none for a byte ring),
 * the dynamic layer (containers on the heap), or records over the dynamic
 * layer, on the DBuf, whose synchronization layer is the ring's policy;
 * or the scaling layer, whose
 * ring is a control segment and which forwards to the handle of the region
 * the stream is in: a region has the ring's layout layer over its DBuf.
 * Every process that opens the ring reads the same geometry, so builds the
 * same stack.
 */
#include "config.h"

#include <errno.h>

#include "bwi_stream.h"

static int no_op(struct bw_stream *s, const char *op)
{
	const char *layer = s && s->ops ? s->ops->name : "dbuf";

	return bwi_err(ENOSYS, "the %s layer has no %s call", layer, op);
}

static int enosys_attach(struct bw_stream *s)
{
	(void)s;
	return 0;
}

static void enosys_detach(struct bw_stream *s)
{
	(void)s;
}

static ssize_t enosys_read(struct bw_stream *s, void *buf, size_t n)
{
	(void)buf, (void)n;
	return no_op(s, "read");
}

static ssize_t enosys_peek(struct bw_stream *s, const void **ptr, size_t n,
			   bool move)
{
	(void)ptr, (void)n, (void)move;
	return no_op(s, "peek");
}

static int enosys_peek_complete(struct bw_stream *s, size_t n)
{
	(void)n;
	return no_op(s, "peek_complete");
}

static ssize_t enosys_write(struct bw_stream *s, const void *buf, size_t n)
{
	(void)buf, (void)n;
	return no_op(s, "write");
}

static ssize_t enosys_poke(struct bw_stream *s, void **ptr, size_t n, bool acq)
{
	(void)ptr, (void)n, (void)acq;
	return no_op(s, "poke");
}

static int enosys_poke_complete(struct bw_stream *s, size_t n)
{
	(void)n;
	return no_op(s, "poke_complete");
}

static ssize_t enosys_append(struct bw_stream *s, const void *buf, size_t n)
{
	(void)buf, (void)n;
	return no_op(s, "append");
}

static int enosys_flush(struct bw_stream *s)
{
	return no_op(s, "flush");
}

static int64_t enosys_check(struct bw_stream *s, int64_t stamp, int flags)
{
	(void)stamp, (void)flags;
	return no_op(s, "check");
}

static int64_t enosys_lseek(struct bw_stream *s, int64_t off, int whence)
{
	(void)off, (void)whence;
	return no_op(s, "lseek");
}

static bool enosys_held(struct bw_stream *s)
{
	(void)s;
	return false;
}

static struct bw_stream *enosys_wait_on(struct bw_stream *s, int events)
{
	(void)events;
	return s;
}

static int enosys_stat(struct bw_stream *s, struct bw_stream_stat *st)
{
	(void)s, (void)st;
	return 0;
}

/* Attach and detach do nothing by default: a layer without state of its
 * own needs neither. held: nothing is held above the ring. */
const struct bwi_ops bwi_enosys_ops = {
	.size = sizeof(struct bwi_ops),
	.name = "enosys",
	.attach = enosys_attach,
	.detach = enosys_detach,
	.read = enosys_read,
	.peek = enosys_peek,
	.peek_complete = enosys_peek_complete,
	.write = enosys_write,
	.poke = enosys_poke,
	.poke_complete = enosys_poke_complete,
	.append = enosys_append,
	.flush = enosys_flush,
	.check = enosys_check,
	.lseek = enosys_lseek,
	.held = enosys_held,
	.wait_on = enosys_wait_on,
	.stat = enosys_stat,
};

int bwi_stack_build(struct bw_stream *s)
{
	const struct bwi_geom *g = &s->m->g;
	bool dyn = g->flags & BW_RING_DYNAMIC;

	s->lower = &bwi_dbuf_ops;
	if (g->scale) /* over the regions, which have the ring's layout */
		s->ops = &bwi_scale_ops;
	else if (g->layout == BWI_LAYOUT_INDEX)
		s->ops = &bwi_ibuf_ops;
	else if (g->layout != BWI_LAYOUT_BYTES) { /* fr, vr, dr: validated */
		s->ops = &bwi_rec_ops;
		if (dyn) /* records in the containers */
			s->lower = &bwi_dyn_ops;
	} else if (dyn)
		s->ops = &bwi_dyn_ops;
	else
		s->ops = s->lower = NULL; /* the DBuf alone */
	if (!s->ops)
		return 0;
	s->slow |= BWI_SLOW_LAYER;
	return BWI_OP(s->ops, attach)(s);
}
