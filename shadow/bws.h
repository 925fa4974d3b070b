/* SPDX-License-Identifier: MIT */
/*
 * The shadow layer's private parts: the origin a shadow reads, seen through
 * a small source interface that a ring on this host (source.c), a ring on
 * another host (fabric/remote.c) and the latency-injecting layer (source.c)
 * fill alike. The access methods (shadow.c) are written once against it.
 *
 * A source reads the origin's positions (wpost, test, wresult) and copies
 * bytes of the ring at absolute positions into local memory (post, then
 * test). Posts may
 * complete out of order with respect to the caller's other work but each is
 * a plain copy of what the ring held at some moment between post and
 * completion; the caller validates with a window read issued after the
 * completion (the byte at p was intact if p >= oldest then).
 */
#ifndef BWS_H
#define BWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bwf.h"
#include "bwi_ring.h"
#include <beltway/shadow.h>

struct bws_src;

/* The origin's positions as one read saw them. */
struct bws_win {
	uint64_t tail;	 /* bytes below are written */
	uint64_t oldest; /* bytes from here on are intact */
	bool ended;	 /* every writer that attached has left */
	uint64_t pads;	 /* padding spans ever recorded */
};

/* One copy in flight; owned by the caller until the source reports it. */
struct bws_req {
	_Alignas(16) uint64_t op[16]; /* the source's own state for it */
	uint64_t due_ns;    /* latency layer: not complete before this */
	bool done;
};

struct bws_src_ops {
	const char *name;
	/* Starts a read of the positions (one at a time); once test says it
	 * is complete, wresult checks and returns what it read. */
	int (*wpost)(struct bws_src *s, struct bws_req *rq);
	int (*wresult)(struct bws_src *s, struct bws_win *w);
	/* Reads the padding table (BWI_PADS entries; entry i may hold pad
	 * i, i + BWI_PADS, ...). One remote operation, or two. */
	int (*pads)(struct bws_src *s, struct bwf_pad *t);
	/* Starts copying len bytes at ring position pos into dst, which lies
	 * in memory made with reg (len <= capacity and <= max_xfer). */
	int (*post)(struct bws_src *s, void *dst, uint64_t pos, size_t len,
		    struct bws_req *rq);
	/* 1 once rq is complete, 0 while it is not; with wait, waits for it
	 * (within the source's timeout). -errno when it failed. */
	int (*test)(struct bws_src *s, struct bws_req *rq, bool wait);
	/* Origins on this host: the bytes at pos in place (contiguous for up
	 * to the capacity), else NULL. */
	const void *(*inplace)(struct bws_src *s, uint64_t pos);
	/* Makes len bytes at buf a valid destination for post. */
	int (*reg)(struct bws_src *s, void *buf, size_t len);
	/* Undoes reg before buf is freed. */
	void (*unreg)(struct bws_src *s, void *buf);
	/* 0 while the origin's session lives, else -errno. */
	int (*alive)(struct bws_src *s);
	void (*close)(struct bws_src *s);
};

struct bws_src {
	const struct bws_src_ops *ops;
	uint64_t capacity;   /* of the origin: a power of two */
	uint64_t max_xfer;   /* largest single post */
	int origin_node;     /* NUMA node of the origin's data, or -1 */
	int nic_node;	     /* fabric: node of the NIC, or -1 */
	bool indices;	     /* the origin is an IBuf: its bytes are indices */
	struct bwi_geom rec; /* a record ring's layout: bwi_rec_geom() */
	char link[32];
};


/* Sources. where: a ring name on this host; url: HOST:PORT/NAME. flags:
 * BW_FROM_START only matters for the starting window. */
int bws_local_open(const char *name, struct bws_src **out);
int bwf_shadow_src(const char *url, const struct bw_fabric_opts *fo,
		   struct bws_src **out);
/* Wraps src so that every operation completes latency_us after it was
 * issued; takes ownership of src. */
int bws_latency_wrap(struct bws_src *src, uint32_t latency_us,
		     struct bws_src **out);

/* NUMA: the node of the calling thread's CPU (hwloc), or -1; the node of
 * memory at p, or -1. */
int bws_cpu_node(void);
int bws_mem_node(const void *p);
/* The node of the network device that carries socket fd's traffic, or -1
 * (no such device in the topology: loopback, veth). */
int bws_nic_node(int fd);
/* A replica of len bytes (a power of two) mapped twice back to back, so a
 * span of up to len bytes at any offset is contiguous; its pages bound to
 * node (-1: no binding). */
void *bws_mirror_alloc(size_t len, int node);
void bws_mirror_free(void *p, size_t len);

/* A copy out of a ring a writer may be overwriting: validated afterwards
 * by a window (the seqlock's read; tests/tsan.supp names it). */
void bws_copy_racy(void *dst, const void *src, size_t n);

/* A flag of bws_open(): with BW_NONBLOCK, -EAGAIN only when the origin has
 * nothing new; reads already in flight are waited for (bw_remote_read). */
#define BWS_WAIT_FLIGHT (1 << 30)

/* A shadow of src (taken: closed with the shadow, or on failure) with the
 * options o as bw_shadow_open() checked them; remote: src is over a
 * fabric link. */
int bws_open(struct bws_src *src, int flags, const struct bw_shadow_opts *o,
	     bool remote, struct bw_shadow **out);

/* Reads the positions and waits for them (wpost, test, wresult). */
int bws_window(struct bws_src *s, struct bws_win *w);

/* Waits until the monotonic clock reaches due_ns: sleeps, then spins the
 * last stretch (timer slack would add tens of microseconds). */
void bws_wait_until(uint64_t due_ns);

#endif
