/* SPDX-License-Identifier: MIT */
/*
 * Beltway shadow buffers (thesis section 4.5.5, Table 4.3): the reader side
 * of a ring that lives elsewhere, on another host (a ring exported by a
 * server, reached with one-sided reads) or in another NUMA node's memory (a
 * named ring on this host). A shadow reads like a stream: read, peek,
 * acquire/complete, check, block and a pollable descriptor.
 *
 * Four access methods:
 *   zero-copy  every call reaches the origin: a one-sided read straight into
 *              the caller's buffer over the fabric; a load from the origin's
 *              memory on this host (peek points into the ring itself).
 *   copy-once  copies everything the origin holds past what the replica
 *              has (up to the replica's size) in one bulk copy, and serves
 *              calls locally; the next copy starts as the last lands, so it
 *              overlaps the reader's use of what came before.
 *   hybrid     the first header_bytes of each record come from the origin in
 *              place; the payload is copied into the replica once, only when
 *              a call asks for it. Skipped payloads are never moved.
 *   prefetch   reads ahead a window past what was asked, with several reads
 *              in flight; the window grows whenever the reader catches
 *              up with it.
 *
 * The origin never learns of a shadow (FRP without feedback, for every
 * method): a shadow holds no reader slot and writes nothing to the origin.
 * It validates what it fetched against the origin's positions afterwards, so
 * bytes overwritten while they were fetched are never served: the call
 * returns -ESTALE once, the loss is counted, and reading resumes at the
 * oldest byte the origin still holds. Bytes served from the replica stay
 * valid; bytes served in place (zero-copy peek on this host, hybrid headers
 * on this host) can be overwritten later: bw_shadow_check() tells.
 */
#ifndef BELTWAY_SHADOW_H
#define BELTWAY_SHADOW_H

#include <beltway/common.h>
#include <beltway/fabric.h>
#include <beltway/stream.h>

#ifdef __cplusplus
extern "C" {
#endif

struct bw_shadow;

enum bw_shadow_method {
	BW_SHADOW_DEFAULT = 0,	/* the link's default, below */
	BW_SHADOW_ZEROCOPY = 1,
	BW_SHADOW_COPYONCE = 2,
	BW_SHADOW_HYBRID = 3,
	BW_SHADOW_PREFETCH = 4,
};

/* "zero-copy", "copy-once", "hybrid", "prefetch" (NULL for others), and
 * back (the spellings without the dash too); -EINVAL for unknown names. */
BW_API const char *bw_shadow_method_name(unsigned method);
BW_API int bw_shadow_method_parse(const char *name);

/* Flags of bw_shadow_open() besides BW_FROM_START and BW_NONBLOCK. */
enum {
	BW_SHADOW_HEADERS = 1 << 10, /* the reader looks at headers only:
				      * the default method is hybrid */
	BW_SHADOW_NODE = 1 << 11,    /* place the replica on numa_node */
};

struct bw_shadow_opts {
	uint32_t struct_size;	/* sizeof(struct bw_shadow_opts) */
	uint32_t method;	/* enum bw_shadow_method */
	uint32_t header_bytes;	/* hybrid: bytes per record read in place
				 * (0: 64, a network frame's headers) */
	uint32_t record_size;	/* the ring's records are this many bytes
				 * (0: not fixed); lets hybrid fetch the
				 * headers of several records at once */
	uint64_t window;	/* prefetch: bytes read ahead (0: adaptive,
				 * from 1 MiB up to the replica) */
	uint32_t depth;		/* prefetch: reads in flight (0: 8; max 16) */
	uint32_t latency_us;	/* added to every remote operation (0:
				 * $BELTWAY_LATENCY_US, else none) */
	uint64_t replica_bytes; /* the local replica: a power of two (0: the
				 * ring's capacity, at most 4 MiB; for
				 * prefetch at most 16 MiB) */
	int32_t numa_node;	/* with BW_SHADOW_NODE: the replica's node;
				 * else the node of the reader's CPU */
	uint32_t pad;
	const struct bw_fabric_opts *fabric; /* remote origins (NULL: defaults) */
};
#define BW_SHADOW_OPTS_INIT {.struct_size = sizeof(struct bw_shadow_opts)}

/*
 * Opens a shadow of the ring at `where`: "HOST:PORT/NAME" is a ring exported
 * by a server (see beltway/fabric.h); a plain NAME is a named ring on this
 * host. A shadow starts at the write position, or with BW_FROM_START at the
 * oldest byte the origin holds.
 *
 * The default method follows the link (thesis Table 4.3): hybrid when the
 * reader declares BW_SHADOW_HEADERS; else prefetch over the fabric;
 * zero-copy for a ring on this host in the reader's NUMA node; copy-once for
 * a ring on this host in another node's memory (a slower link that copies
 * well in bulk).
 *
 * With no method in opts, $BELTWAY_SHADOW (a method's name) picks one.
 *
 * On an fr or vr record ring, read and peek return one whole record
 * (-EMSGSIZE when n is shorter: the record stays; -EBADMSG for a header the
 * origin wrote wrong, which is skipped), peek_complete takes 0 or the whole
 * record acquired, and after a loss the shadow resumes at the next record
 * start (fr: the next slot; vr: the write position; from the oldest byte,
 * vr: the first whole record). With
 * BW_SHADOW_HEADERS, a peek or peek_acquire of n bytes shorter than the
 * record gives its first bytes (up to n, one span) instead: header-only
 * access. Completing what was acquired, or the peek itself, moves past the
 * whole record; hybrid never fetches the rest (an fr ring's headers come
 * a batch of slots at a time).
 *
 * Returns 0, -EINVAL (bad flags, options or name), -ENOENT, -EACCES,
 * -ENOTSUP (a ring that is not one stream in one segment: dr record,
 * dynamic and self-scaling rings), or as bw_remote_open() does;
 * bw_strerror_last() says why.
 */
BW_API int bw_shadow_open(const char *where, int flags,
			  const struct bw_shadow_opts *opts,
			  struct bw_shadow **out);

/* Copies up to n bytes at the read position. Returns the count, 0 at end of
 * stream (every writer of the origin left and everything was read), -EAGAIN
 * (BW_NONBLOCK, no data), -ESTALE once when the origin overwrote bytes
 * before this shadow fetched them (counted in lost; it resumes at the oldest
 * byte held), -ETIMEDOUT or -ECONNRESET when a remote origin is gone. */
BW_API ssize_t bw_shadow_read(struct bw_shadow *sh, void *buf, size_t n);

/* Points *ptr at up to n bytes (one contiguous span; n at most the replica's
 * size) and moves the read position past them. The span stays valid until
 * the next call on sh. Returns as read does. */
BW_API ssize_t bw_shadow_peek(struct bw_shadow *sh, const void **ptr,
			      size_t n);

/* Points *ptr at up to n bytes without moving the read position. */
BW_API ssize_t bw_shadow_peek_acquire(struct bw_shadow *sh, const void **ptr,
				      size_t n);

/* Moves the read position n bytes forward. n may exceed what was acquired:
 * the rest of the bytes the origin has written are skipped without being
 * fetched (header-only access: acquire the header, complete the record).
 * Returns 0, or -EINVAL when n passes the origin's write position (the
 * next call says -ESTALE if the skip landed on bytes already overwritten). */
BW_API int bw_shadow_peek_complete(struct bw_shadow *sh, size_t n);

/* Epoch stamps, as bw_stream_check(): with stamp < 0 returns a stamp (the
 * read position); given an earlier one, returns a new stamp when every byte
 * this shadow served in place since then is still intact at the origin,
 * else -ESTALE. Bytes served from a copy are always intact. */
BW_API int64_t bw_shadow_check(struct bw_shadow *sh, int64_t stamp);

/* Waits until sh is readable (data or end of stream) or timeout_ms passes
 * (-1: forever). Returns BW_POLLIN (with BW_POLLHUP at end of stream), 0 on
 * timeout, or -errno. */
BW_API int bw_shadow_block(struct bw_shadow *sh, int timeout_ms);

/* A descriptor poll/epoll report readable while sh may be readable: an
 * origin elsewhere cannot ring this host's bell, so it is a timer that
 * fires every millisecond, and a call that finds nothing (-EAGAIN) uses up
 * its ticks. After a report, read with BW_NONBLOCK until -EAGAIN. Owned by
 * sh. Returns it or -errno. */
BW_API int bw_shadow_fd(struct bw_shadow *sh);

struct bw_shadow_stat {
	uint64_t bytes;		 /* delivered (bytes skipped by
				  * peek_complete are not) */
	uint64_t calls;		 /* calls that delivered bytes */
	uint64_t lost;		 /* overwritten before they were fetched */
	uint64_t padded;	 /* skipped as padding (spans of writers the
				  * origin presumed dead), never delivered */
	uint64_t remote_ops;	 /* operations on the origin: reads of data
				  * and of its positions */
	uint64_t fetched;	 /* bytes moved from the origin */
	uint64_t position;	 /* the read position */
	uint64_t capacity;	 /* of the origin */
	uint64_t replica_bytes;	 /* of the local replica (0: none) */
	uint64_t window;	 /* prefetch: the read-ahead window now */
	uint32_t method;	 /* enum bw_shadow_method in use */
	uint32_t latency_us;	 /* added per remote operation */
	int32_t node;		 /* NUMA node of the replica (-1: none) */
	int32_t origin_node;	 /* of the origin's memory (-1: unknown) */
	char link[32];		 /* "shm" (this host) or the provider */
	uint32_t record_max;	 /* an fr or vr origin: its largest record
				  * (reads return whole records); else 0 */
	uint32_t pad;
};

BW_API int bw_shadow_stat(const struct bw_shadow *sh, struct bw_shadow_stat *st);

/* Frees the shadow (nothing to tell the origin). */
BW_API int bw_shadow_close(struct bw_shadow *sh);

/*
 * A shadow behind the stream API: opens it as bw_shadow_open() does and
 * returns a stream handle that bw_stream_read, peek, peek_acquire,
 * peek_complete (which may skip past what was acquired, as above), check
 * (BW_CHECK_READ), block, select, fd, stat, set_nonblock and close take
 * like any reader's. bw_stream_open() of "HOST:PORT/NAME" with BW_READ
 * opens one with the defaults, so an application does not change when its
 * ring moves to another host; $BELTWAY_SHADOW names the method there.
 * Writing calls answer -ENOSYS; lseek too. A bw_fork() child cannot use
 * the handle (-EINVAL). block and select poll the origin (every 5 ms once
 * they sleep): nothing there can wake this process.
 */
BW_API int bw_shadow_stream(const char *where, int flags,
			    const struct bw_shadow_opts *opts,
			    struct bw_stream **out);

#ifdef __cplusplus
}
#endif
#endif
