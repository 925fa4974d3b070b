/* SPDX-License-Identifier: MIT */
/* The private state of a stream handle, shared by the files of local/. */
#ifndef BWI_STREAM_H
#define BWI_STREAM_H

#include <string.h>

#include "bwi_ring.h"
#include <beltway/index.h>

enum {
	BWI_SLOW_POKE = 1, /* poked data to publish at the next call */
	BWI_SLOW_STOP = 2, /* an error, or inherited through fork() */
	BWI_SLOW_LAYER = 4, /* a layer above the DBuf calls: s->ops */
};

struct bw_stream;

/*
 * Implementation stacking (thesis section 4.5; STYLE.md). Every buffer
 * implementation fills this table; it starts with its size so it can grow
 * (libfabric's FI_CHECK_OP), and an op a table lacks answers from one
 * default table (bwi_enosys_ops) with -ENOSYS. A handle calls its top
 * layer, s->ops; a layer forwards to the one below through s->lower. The
 * layers of a ring are recorded in its geometry (layout, policy), so every
 * process that opens it builds the same stack (bwi_stack_build).
 */
struct bwi_ops {
	size_t size;
	const char *name;
	int (*attach)(struct bw_stream *s);
	void (*detach)(struct bw_stream *s);
	ssize_t (*read)(struct bw_stream *s, void *buf, size_t n);
	ssize_t (*peek)(struct bw_stream *s, const void **ptr, size_t n,
			bool move);
	int (*peek_complete)(struct bw_stream *s, size_t n);
	ssize_t (*write)(struct bw_stream *s, const void *buf, size_t n);
	ssize_t (*poke)(struct bw_stream *s, void **ptr, size_t n, bool acq);
	int (*poke_complete)(struct bw_stream *s, size_t n);
	ssize_t (*append)(struct bw_stream *s, const void *buf, size_t n);
	int (*flush)(struct bw_stream *s);
	int64_t (*check)(struct bw_stream *s, int64_t stamp, int flags);
	int64_t (*lseek)(struct bw_stream *s, int64_t off, int whence);
	/* readable without waiting on the ring (data held by the layer) */
	bool (*held)(struct bw_stream *s);
	/* the handle block and select wait on (the default: s itself) */
	struct bw_stream *(*wait_on)(struct bw_stream *s, int events);
	/* fills in what the layer knows better than its ring (default: 0) */
	int (*stat)(struct bw_stream *s, struct bw_stream_stat *st);
};

extern const struct bwi_ops bwi_enosys_ops, bwi_dbuf_ops, bwi_ibuf_ops,
	bwi_rec_ops, bwi_dyn_ops, bwi_scale_ops;

/* The op of table t, or the -ENOSYS default for one it lacks. */
#define BWI_OP(t, op)                                                       \
	((t)->size > offsetof(struct bwi_ops, op) && (t)->op                 \
		 ? (t)->op                                                    \
		 : bwi_enosys_ops.op)

struct bwi_stats {
	uint64_t bytes, calls, waits;
	uint64_t lost; /* readers: lost to overwriting; writers: dropped */
	uint64_t spliced, copied; /* IBuf writers: bytes by index, by copy */
};

struct bw_stream {
	/* copies of the mapping's hot fields: one load each on the fast path */
	struct bwi_hdr *hdr;
	uint8_t *data;
	uint64_t mask;
	struct bwi_map *m; /* shared with the process's other handles */
	uint8_t slow;	/* BWI_SLOW_*: every call takes enter_slow() */
	bool asym;	/* bwi_barrier_asym, read once */
	int flags;	/* BW_* open flags */
	bool reader;	/* registered reader: holds a slot, gates writers */
	bool tap;	/* read-only mapping: reads without a slot */
	bool writer;
	bool validate;	/* checks every read against head: taps, and
			 * readers of MRP and FRP rings */
	uint8_t policy;	/* enum bw_policy, from the validated geometry */
	uint32_t epoch; /* fork epoch this handle is valid in */
	int err;	/* sticky error of a handle that cannot be used */

	/* reader side; rpos is private, the slot holds what was published */
	uint32_t rslot, rgen;
	uint64_t rpos;	    /* next byte to read (includes peeked bytes) */
	uint64_t rpub;	    /* last position stored in the slot */
	uint64_t tail_seen; /* cached tail: bytes below it are readable */
	uint64_t safe_from; /* reads below this are validated against head */
	uint64_t racq;	    /* bytes handed out by peek_acquire */
	uint64_t rlook;	    /* when the reader last looked at tail */
	bool rtrickle;	    /* its last look gained little: pace looks */
	uint64_t drop0;	    /* ring's dropped bytes when it attached */
	uint64_t pad_next;  /* next padding span to look at (prod.pads) */
	uint64_t padded;    /* bytes skipped as padding */

	/* writer side */
	uint32_t wslot, wgen;
	uint64_t limit;	     /* head may grow to this without a rescan */
	uint32_t peer_seen;  /* ctl.peer_seq when limit was computed */
	int b1_err;	     /* a reservation B1 found padded: the next
			      * reservation's error (-ETIMEDOUT) */
	int nreaders;	     /* MRP, FRP: readers at peer_seen (-1: count) */
	uint64_t poke_start; /* poked, not yet published */
	uint64_t poke_len;
	uint64_t acq_start;  /* poke_acquire reservation */
	uint64_t acq_len;
	bool acq;
	uint64_t wpos;	     /* end of this handle's last write */
	uint32_t npost;	     /* spans posted: the next goes to entry
			      * npost % BWI_POSTS */
	uint64_t post_last;  /* end of the last span posted */
	uint64_t wlook;	     /* when the writer last looked at readers */
	bool wtrickle;	     /* its last look gained little: pace looks */
	uint64_t reap_ns;    /* SRP, MRP: when it last looked for the dead */
	bool fence;	     /* the ring has a writer timeout: completions
			      * close their marker by CAS */

	/* any side that waits: since when it has seen the tail stuck */
	uint64_t stuck_t, stuck_ns, stuck_end;
	uint64_t look_ns; /* waits: when this handle last looked for dead
			   * peers, or first found nothing (0: never) */
	const struct bwi_slot *stuck_holder; /* whose reservation it was */
	uint64_t fenced_ns; /* and since when it has seen it fenced (0: not) */
	uint64_t orphan_t, orphan_hd; /* a span no marker named, last look */

	struct bwi_slot *rsl, *wsl; /* our slots, or NULL */
	struct bwi_stats rst, wst;  /* reading and writing statistics */

	/* IBufs (ibuf.c): the ring holds 16-byte indices */
	struct bwi_map *wt;	 /* the default DBuf written through */
	struct bw_stream *wtw;	 /* writer on it, made on first need */
	struct bw_stream *wtr;	 /* reader on it: keeps write-through
				  * blocks until this IBuf reader is done */
	struct bw_index icur;	 /* the index being read */
	uint64_t icur_off;	 /* its bytes consumed so far */
	uint64_t iacq;		 /* bytes of it peek_acquire handed out */
	bool icur_valid;
	bool idone;		 /* a block peeked to its end: give it back at
				  * the next call */
	struct bw_index idone_idx;
	bool ipoke;		 /* poked into wtw: index to store */
	bool ipoke_acq;		 /* ... by poke_acquire */
	uint64_t ipoke_len;
	struct bwi_stats ist, iwst; /* data read and written (not records) */
	struct bwi_map_cache imc; /* rings this IBuf writer spliced from */

	/* implementation stack: top layer, and the one below it */
	const struct bwi_ops *ops, *lower;

	/* record layouts (record.c) */
	uint8_t rec_w;	     /* the writer's open record: BWI_REC_W_* */
	uint32_t rec_wlen;   /* its payload so far */
	uint32_t rec_wpad;   /* dynamic rings: the pad its room starts with */
	uint64_t rec_rfoot;  /* reader: the record peek_acquire handed out:
			      * its footprint (0: none) and length */
	uint32_t rec_rlen;
	uint64_t rec_pad_from, rec_pad_to; /* reader: the last pad spans it
					     * skipped, [from, to) */

	/* dynamic rings (dynamic.c): the containers last used, so a call
	 * does one lookup */
	struct bwi_dyn_box *dyn_w, *dyn_r;
	uint64_t dyn_racq; /* bytes peek_acquire handed out */

	/* self-scaling rings (scale.c): handles on the current regions */
	struct bwi_scaler *sc;

	/* shadows (shadow/shadow.c): the shadow this handle reads through;
	 * m is then a private placeholder ring */
	struct bw_shadow *shadow;

	int bell_fd;	     /* doorbell for bw_stream_fd(), or -1 */
	bool bell_timer;     /* taps: the doorbell is a periodic timer */
	int bell_tick;	     /* the liveness timer beside the doorbell, or -1 */
	int bell_ep;	     /* what bw_stream_fd() returns: an epoll set of
			      * the doorbell and the timer, or -1 */

	struct bw_stream *next, *prev; /* this process's handles */
};

/* memcpy, with small copies done inline as two overlapping moves: a 64-byte
 * call is then no call at all. */
static inline void bwi_copy(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *c = src;

	if (n < 16 || n > 64) {
		memcpy(d, c, n);
	} else if (n >= 32) {
		__builtin_memcpy(d, c, 32);
		__builtin_memcpy(d + n - 32, c + n - 32, 32);
	} else {
		__builtin_memcpy(d, c, 16);
		__builtin_memcpy(d + n - 16, c + n - 16, 16);
	}
}

/* Counts one call that moved bytes. */
static inline void bwi_count_call(struct bwi_stats *st, uint64_t bytes)
{
	st->bytes += bytes;
	st->calls++;
}

/* The fast path of read and peek applies: a registered reader with n > 0
 * bytes already known to be there, and nothing to validate. */
static inline bool bwi_rd_fast(const struct bw_stream *s, size_t n,
			       uint8_t slow)
{
	return s && s->slow == slow && s->reader && n && s->tail_seen - s->rpos >= n &&
	       s->rpos >= s->safe_from;
}

#define BWI_NO_PEER_WAIT (1 << 16) /* open flag: both ends made together */

/* The room that makes a writer's descriptor or select ready when the call
 * names none: 4 KiB (PIPE_BUF), or half of a smaller ring (a whole ring
 * would have it wait for every byte to be read). */
static inline uint64_t bwi_room_want(uint64_t cap)
{
	return cap / 2 < 4096 ? cap / 2 : 4096;
}

extern uint32_t bwi_epoch;

/* Doorbells (bell.c; bwi_bell_ring_all in bwi_ring.h) */
void bwi_bell_arm(struct bw_stream *s, uint64_t need);
void bwi_bell_close(struct bw_stream *s);
void bwi_bell_child(struct bw_stream *s);
void bwi_bell_ticks_used(struct bw_stream *s);
int bwi_wait_slice_ms(const struct bwi_map *m);

/* The DBuf implementation of the calls (stream.c), which IBufs use on their
 * own index ring, and the IBuf implementation (ibuf.c). */
/* Builds the stack of s for its ring's geometry and attaches the layers. */
int bwi_stack_build(struct bw_stream *s);

ssize_t bwi_d_read(struct bw_stream *s, void *buf, size_t n);
ssize_t bwi_d_peek(struct bw_stream *s, const void **ptr, size_t n, bool move);
int bwi_d_peek_complete(struct bw_stream *s, size_t n);
ssize_t bwi_d_write(struct bw_stream *s, const void *buf, size_t n);
/* The entry checks of a poke: a writer with no reservation outstanding
 * (the last poke published), a pointer, n within the capacity. */
int bwi_poke_enter(struct bw_stream *s, void **ptr, size_t n);
/* The rest of bwi_d_poke(), after bwi_poke_enter(): reserves n bytes. */
ssize_t bwi_poke_reserve(struct bw_stream *s, void **ptr, size_t n, bool acq);
ssize_t bwi_d_poke(struct bw_stream *s, void **ptr, size_t n, bool acq);
int bwi_d_poke_complete(struct bw_stream *s, size_t n);
int bwi_d_flush(struct bw_stream *s);
int64_t bwi_d_check(struct bw_stream *s, int64_t stamp, int flags);
int64_t bwi_d_lseek(struct bw_stream *s, int64_t off, int whence);
int bwi_rec_write(struct bw_stream *s, const void *rec, size_t n);
/* Records on a dynamic ring (dynamic.c). */
int bwi_dyn_rec_reserve(struct bw_stream *s, uint64_t foot, uint64_t *pad);
uint8_t *bwi_dyn_wat(struct bw_stream *s, uint64_t p);
const uint8_t *bwi_dyn_rat(struct bw_stream *s);
const uint8_t *bwi_dyn_box_of(struct bw_stream *s, uint64_t p);
uint64_t bwi_dyn_box(const struct bwi_map *m);
int bwi_rec_reserve(struct bw_stream *s, size_t n, uint64_t *pos);
int bwi_rec_publish(struct bw_stream *s, uint64_t pos, size_t n);
int bwi_need_reader(struct bw_stream *s);
int bwi_need_writer(struct bw_stream *s);
/* The entry checks of every call (a handle inherited through fork, an
 * error recorded), publishing the previous call's poke. */
int bwi_enter(struct bw_stream *s);
int64_t bwi_rd_acquire(struct bw_stream *s, uint64_t need, const uint8_t **ptr);
void bwi_rd_copy(struct bw_stream *s, void *buf, const void *src, size_t n);
bool bwi_rd_held(struct bw_stream *s);
void bwi_rd_move(struct bw_stream *s, uint64_t n, bool publish);
void bwi_rd_release(struct bw_stream *s);
void bwi_rd_lost(struct bw_stream *s, uint64_t to);
ssize_t bwi_i_read(struct bw_stream *s, void *buf, size_t n);
ssize_t bwi_i_peek(struct bw_stream *s, const void **ptr, size_t n, bool move);
int bwi_i_peek_complete(struct bw_stream *s, size_t n);
ssize_t bwi_i_write(struct bw_stream *s, const void *buf, size_t n);
ssize_t bwi_i_poke(struct bw_stream *s, void **ptr, size_t n, bool acq);
int bwi_i_poke_complete(struct bw_stream *s, size_t n);
int bwi_i_flush(struct bw_stream *s);
int64_t bwi_i_check(struct bw_stream *s, int64_t stamp, int flags);
int64_t bwi_i_lseek(struct bw_stream *s, int64_t off, int whence);
int bwi_i_attach(struct bw_stream *s);
void bwi_i_detach(struct bw_stream *s);

/* The fabric server's hooks (stream.c): w, a writer handle, becomes the
 * only writer, on behalf of a remote one that moves the positions itself;
 * and readers are woken after it did. */
int bwi_remote_writer_claim(struct bw_stream *w);
void bwi_remote_writer_release(struct bw_stream *w);
void bwi_wake_readers(struct bwi_map *m);

/* Readiness (stream.c) */
int bwi_ready(struct bw_stream *s, int events, uint64_t need);
void bwi_handles_lock(void);
void bwi_handles_unlock(void);
struct bw_stream *bwi_handles_first(void);
int bwi_reattach(struct bw_stream *s);
int bwi_attach(struct bw_stream *s, struct bwi_map *m, int flags);
int bwi_attach_adopt(struct bw_stream *s, struct bwi_map *m, uint32_t slot,
		     int flags);
int bwi_wr_room(struct bw_stream *s, uint64_t n);
int bwi_wr_drop(struct bw_stream *s, uint64_t n);
/* White-box hook for the tests: when set, called by a writer between the
 * check of its room and its reservation (BWI_HOOK_RESERVE), as it checks a
 * reservation again after a peer changed (BWI_HOOK_RESERVED), and before
 * it takes one back (BWI_HOOK_TAKE_BACK; stream.c, B1); and by a waiter
 * that looks at a
 * stuck tail, between its loads of the positions and of the markers
 * (BWI_HOOK_UNSTICK). */
enum {
	BWI_HOOK_RESERVE,
	BWI_HOOK_RESERVED,
	BWI_HOOK_TAKE_BACK,
	BWI_HOOK_UNSTICK
};
extern void (*bwi_reserve_hook)(struct bw_stream *s, int point);
/* Counts a wait (ev: BW_POLLIN, BW_POLLOUT) of s that a layer made. */
void bwi_count_wait(struct bw_stream *s, int ev);
bool bwi_scale_continues(struct bw_stream *s);
int bwi_scale_fd(struct bw_stream *s);
int bwi_stream_new(struct bw_stream **out);
struct bw_shadow;
void bwi_attach_shadow(struct bw_stream *s, struct bwi_map *m, int flags,
		       struct bw_shadow *sh, const struct bwi_ops *ops);
void bwi_stream_free(struct bw_stream *s);

#endif
