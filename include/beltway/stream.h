/* SPDX-License-Identifier: MIT */
/*
 * Beltway streams: shared-memory rings behind a Unix-like stream API,
 * extended with zero-copy calls (thesis Table 4.1).
 *
 * A ring is a power-of-two byte ring in a shared memory segment, named
 * (a file in the ring directory, see bw_ring_dir()) or anonymous (memfd,
 * shared by bw_fork()). A stream handle attaches to a ring as a reader, a
 * writer, or both. Positions are absolute byte offsets from the start of the
 * stream: 64-bit, they never wrap.
 *
 * Semantics follow Unix pipes and FIFOs by default: a reader blocks on an
 * empty ring and reads 0 (EOF) once the last writer has gone; a writer blocks
 * on a full ring and gets -EPIPE once the last reader has gone. Every reader
 * sees the whole stream from its attach point (rings are multi-consumer); the
 * writer waits for the slowest reader (lossless).
 *
 * A handle is used by one thread at a time; open one handle per thread.
 * All calls return >= 0 on success and -errno on failure, with a message in
 * bw_strerror_last(). A call that waits returns -EINTR when a signal handler
 * runs, as read(2) does without SA_RESTART.
 */
#ifndef BELTWAY_STREAM_H
#define BELTWAY_STREAM_H

#include <beltway/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct bw_stream;

/* Flags of bw_stream_open(). */
enum {
	BW_READ = 1 << 0,	/* attach as a reader */
	BW_WRITE = 1 << 1,	/* attach as a writer */
	BW_NONBLOCK = 1 << 2,	/* -EAGAIN instead of waiting */
	BW_FROM_START = 1 << 3, /* reader starts at the oldest byte still held */
	BW_NOWAIT = 1 << 4,	/* open does not wait for the other side, and a
				 * writer never gets -EPIPE: with no reader
				 * attached it overwrites the oldest data */
	BW_LOW_LATENCY = 1 << 5, /* look at the other side at once, every time:
				  * by default a handle that keeps catching up
				  * looks at most every microsecond, which
				  * batches small records (see README) */
	BW_NOSPLICE = 1 << 6,	/* IBuf writers: always copy data in, never
				 * store just an index to bytes in another
				 * ring (whose writer may overwrite them) */
};

/* Flags of struct bw_ring_opts. */
enum {
	BW_RING_HUGEPAGE = 1 << 0, /* back the ring with 2 MiB huge pages */
	BW_RING_INDEX = 1 << 1,	   /* an IBuf: a ring of rich indices (see
				    * beltway/index.h and README) */
	BW_RING_DYNAMIC = 1 << 2,  /* a dynamic ring (thesis 4.5.2): its data
				    * lives in containers of this process's
				    * heap (64 KiB, or a quarter of a
				    * smaller ring), allocated as writes need
				    * them; each allocation frees those every
				    * reader passed, so it holds at most the
				    * size plus two containers. One process,
				    * one writer: opening it from another
				    * process (or using it after bw_fork)
				    * fails with EINVAL. A lossless or SRP
				    * ring; as a byte ring: read, peek, write,
				    * poke (append: -ENOSYS, as on any byte
				    * ring), peeks and pokes end at a
				    * container's end (they return the
				    * count); with a record layout (fr, vr,
				    * dr) every call as on any record ring,
				    * no record in two containers. Seeks go
				    * back as far as the oldest container
				    * held. */
};

/*
 * Multi-consumer policies (thesis section 4.5.4), chosen when a ring is
 * created. They differ in what a writer does when a reader lags a full ring
 * behind:
 *  - LOSSLESS (the default, pipe semantics): the writer waits for the
 *    slowest reader.
 *  - SRP (slow reader preference, non-blocking tail drop): the write is
 *    dropped. bw_stream_write() still returns its length; poke and
 *    poke_acquire return -ENOBUFS. A record opened for append then is
 *    dropped whole: each bw_stream_append() returns its length. Drops are counted in the writer's
 *    statistics and the ring's. Readers never lose data.
 *  - MRP (medium reader preference): readers share one read position R,
 *    each raising it (atomic max) to its own previous position as it reads;
 *    the writer drops, as SRP does, while R lags a ring behind. A reader that
 *    is not scheduled for a whole round may be overwritten: it learns of it
 *    with -ESTALE, as under FRP.
 *  - FRP (fast reader preference): the writer never waits and never drops.
 *    A reader validates what it read against the write position: data
 *    overwritten meanwhile is never delivered; the read returns -ESTALE
 *    once, the reader resumes at the oldest byte held, and its statistics
 *    count the bytes lost. Peeked data may be overwritten while in use:
 *    validate it afterwards with bw_stream_check().
 * On every policy, a writer with no reader attached gets -EPIPE unless it
 * opened with BW_NOWAIT. IBufs are lossless only (for now).
 */
enum bw_policy {
	BW_POLICY_LOSSLESS = 0,
	BW_POLICY_SRP = 1,
	BW_POLICY_MRP = 2,
	BW_POLICY_FRP = 3,
};

/*
 * Record layouts (thesis section 4.5.3), chosen when a ring is created. A
 * byte ring (the default) carries a byte stream. On a record ring every
 * write, and every poke reservation, is one record, and read and peek
 * return exactly one record:
 *  - FR: fixed slots of record_size bytes (a power of two), each record in
 *    one slot. Seeking is cheap; small records waste the slot's rest.
 *  - VR: an 8-byte header (length and a check word) before each record,
 *    records padded to record_align. A reader that was overtaken cannot
 *    find the next record in old data: it resumes at the write position,
 *    losing what lay between (thesis: "all data must be discarded").
 *  - DR: the headers live in a separate, smaller ring in the segment, one
 *    8-byte entry per record_align bytes of data; an overtaken reader finds
 *    the oldest record still held through it and loses only what was
 *    overwritten.
 * record_size: FR's slot size (default 2048); VR and DR's largest record
 * (default 64 KiB, at most half the ring). record_align (a power of two,
 * >= 8; default 8, DR 64) aligns each record's start; the payload lands at
 * record_align_offset bytes before an aligned address, so a header at that
 * offset inside the payload (an IP header behind a 14-byte Ethernet header:
 * offset 14) is aligned. Calls on a record ring:
 *  - read(buf, n): one record; -EMSGSIZE (and the record stays) when n is
 *    shorter than it. peek and peek_acquire likewise, with n the largest
 *    record the caller takes; peek_complete takes 0 (leave it) or the
 *    record's length.
 *  - write(buf, n): one record; -EMSGSIZE when n exceeds the largest.
 *  - poke(ptr, n), poke_acquire: reserve one record of n bytes.
 *  - append(buf, n): adds n bytes to the open record without publishing
 *    it, opening one first if needed; the record is published (closed) by
 *    flush, by the next write or poke, or by close. -EMSGSIZE when the
 *    record would exceed the largest.
 *  - lseek on FR: to any slot start; on DR: to any record start the header
 *    ring knows; on VR: only to the write position (SEEK_END, 0).
 * bw_stream_stat() counts records and payload bytes (calls, bytes).
 */
enum bw_layout {
	BW_LAYOUT_BYTES = 0,
	BW_LAYOUT_FR = 2,
	BW_LAYOUT_VR = 3,
	BW_LAYOUT_DR = 4,
};

/* "bytes", "fr", "vr", "dr"; NULL for another value (and for IBufs' index
 * layout, which BW_RING_INDEX chooses). */
BW_API const char *bw_layout_name(unsigned layout);

/* The layout named name (as bw_layout_name spells it), or -EINVAL. */
BW_API int bw_layout_parse(const char *name);

/* "lossless", "srp", "mrp", "frp"; NULL for another value. */
BW_API const char *bw_policy_name(unsigned policy);

/* The policy named name (as bw_policy_name spells it), or -EINVAL. */
BW_API int bw_policy_parse(const char *name);

/* Options of a new ring. Zero fields take their defaults. */
struct bw_ring_opts {
	uint32_t struct_size; /* sizeof(struct bw_ring_opts), so it can grow */
	uint32_t flags;	      /* BW_RING_* */
	uint64_t size;	      /* capacity: power of two >= 4096 (0: default) */
	uint32_t mode;	      /* permission bits of a named ring (0: 0600) */
	uint32_t max_readers; /* reader slots (0: 64, at most 1024) */
	uint32_t max_writers; /* writer slots (0: 16, at most 256) */
	uint32_t policy;      /* enum bw_policy */
	/* A writer is presumed dead when its process has died, and then the
	 * span it reserved and never completed is padding that readers skip
	 * (counted in bw_ring_info.padded_*), so the ring goes on. With
	 * writer_timeout_ms > 0 a live writer is also presumed dead once it
	 * has held the oldest unpublished reservation that long: its span is
	 * padded and it is fenced out, so its late completion returns
	 * -ETIMEDOUT and publishes nothing. It may still store into the ring
	 * memory it was given, which by then can belong to a later write: set
	 * the timeout well above any stall a live writer can have. Such rings
	 * pay one atomic per completed write for the fence. 0: never. */
	uint32_t writer_timeout_ms;
	/* Event batching: with wake_batch > 1, a writer wakes sleeping
	 * readers once per wake_batch writes instead of on every write, and a
	 * sleeping reader looks again at least every wake_usec microseconds
	 * (default 1000) on its own, so no write waits longer than that to be
	 * seen. Pollable fds (doorbells) are still rung on every write.
	 * 0 or 1: wake on every write. */
	uint32_t wake_batch;
	uint32_t wake_usec;
	/* Record layout (enum bw_layout, see above) and its parameters. An
	 * IBuf (BW_RING_INDEX) takes none. 0: defaults. */
	uint32_t layout;
	uint32_t record_size;
	uint32_t record_align;
	uint32_t record_align_offset;
	/* Self-scaling (enum bw_scale): the ring starts at size and doubles
	 * or halves, between scale_min (0: 64 KiB, or size if smaller) and
	 * scale_max (0: 4 x size for REALLOC; size for DECKCUT, which
	 * allocates it once): powers of two, 4096 <= scale_min <= size <=
	 * scale_max, else -EINVAL. */
	uint32_t scale;
	uint64_t scale_min;
	uint64_t scale_max;
};

/*
 * Self-scaling rings (thesis section 4.5.1). The producer resizes the ring
 * only as it wraps, doubling or halving it: it grows when the distance to
 * the slowest reader passes a high watermark of the size, and otherwise
 * looks for the size this machine streams fastest at, by measurement: it
 * halves the ring while readers keep up and the smaller size is not known
 * to be slower, and doubles it back when the larger one was faster. Each
 * size is a region of its own; positions stay absolute across resizes and
 * nothing is copied: readers finish the old region and follow into the new
 * one, taking with them the place the producer kept for them there.
 *  - REALLOC: each region is allocated when the ring resizes and freed
 *    once every reader has left it.
 *  - DECKCUT: one allocation of scale_max bytes; a smaller ring uses its
 *    first part and gives the rest back to the kernel. The producer waits
 *    for the readers to leave the old region before reusing its memory.
 * A BW_FROM_START reader starts at the oldest byte of the writer's region;
 * on a DECKCUT ring, one that attaches while the producer waits to reuse
 * memory starts at the write position (the old bytes are about to go).
 * A self-scaling ring is named (its regions are files .ID@K and .ID@deck
 * in the ring directory, ID its ring id, which bw_unlink removes with it:
 * those that attached handles use, as the last of them closes; a ring
 * made anew under a removed one's name has regions of its own, so handles
 * on the old one keep working until closed), has one writer,
 * is lossless or SRP, and is read and written by processes with write
 * permission. It takes a record layout (fr, vr, dr): every region has it,
 * and its records must fit, with their header, in half of scale_min
 * (-EINVAL at create otherwise); a record never spans two regions.
 * bw_stream_stat's capacity is the size now. A write or poke of up to
 * scale_max bytes goes in whole, as one of up to the capacity does on any
 * ring: the ring grows to hold it if it is smaller, and never shrinks
 * below it; a poke of more fails with -EMSGSIZE, a write of more is split.
 * bw_stream_fd gives an epoll descriptor that follows the handle from
 * region to region: the same number for the life of the handle (in a
 * bw_fork child, call it again).
 */
enum bw_scale {
	BW_SCALE_NONE = 0,
	BW_SCALE_REALLOC = 1,
	BW_SCALE_DECKCUT = 2,
};
#define BW_RING_OPTS_INIT {.struct_size = sizeof(struct bw_ring_opts)}

/* The default ring capacity, chosen by measurement (see README). */
#define BW_RING_DEFAULT_SIZE (4u << 20)

/* ---- rings -------------------------------------------------------------- */

/* Creates the named ring NAME (1-63 of [A-Za-z0-9._-], not starting with '.')
 * in the ring directory, with exactly opts->mode as its permission bits.
 * Returns 0, -EEXIST if it exists, -EINVAL for a bad name or size. */
BW_API int bw_mkfifo(const char *name, const struct bw_ring_opts *opts);

/* Removes the named ring. Attached streams keep working until closed.
 * Returns 0 or -ENOENT. */
BW_API int bw_unlink(const char *name);

/* Returns the directory that holds named rings: $BELTWAY_DIR, else
 * /dev/shm/beltway (created mode 1777 on first use). */
BW_API const char *bw_ring_dir(void);

/* ---- streams ------------------------------------------------------------- */

/* Opens the named ring with BW_READ and/or BW_WRITE and the other flags.
 * Like a FIFO, a reader waits until a writer is attached and a writer until
 * a reader is (unless BW_NOWAIT, or both BW_READ and BW_WRITE); with
 * BW_NONBLOCK a writer that would wait gets -ENXIO. A process without write
 * permission maps the ring read-only and reads as a tap: it does not hold
 * the writer back, and learns of data it lost with -ESTALE. Returns 0, and
 * -ENOENT, -EACCES, -EBADMSG (corrupt or truncated segment), -ENOSPC (all
 * reader or writer slots taken). */
BW_API int bw_stream_open(const char *name, int flags, struct bw_stream **out);

/* Detaches and frees the handle, publishing any poked data first. */
BW_API int bw_stream_close(struct bw_stream *s);

/* Creates an anonymous ring with one reader end (ends[0]) and one writer end
 * (ends[1]), Unix pipe semantics. Share it with children through bw_fork(). */
BW_API int bw_pipe(struct bw_stream *ends[2], const struct bw_ring_opts *opts);

/* Creates an anonymous multiway pipe: ends[0] writes, ends[1..n-1] read,
 * each reader with its own position, each seeing the whole stream. n >= 2. */
BW_API int bw_mpipe(struct bw_stream **ends, unsigned n,
		    const struct bw_ring_opts *opts);

/* fork(2) that gives the child its own attachment for every open stream, at
 * the position its parent had: after it, parent and child each read the rest
 * of the stream, and each writes whole calls that never interleave. A child
 * made by plain fork() cannot use inherited streams (-ECHILD) and never
 * holds a writer back. Returns as fork(2) does, or -errno. */
BW_API pid_t bw_fork(void);

/* ---- reading -------------------------------------------------------------- */

/* Copies up to n bytes from the read position into buf and moves past them.
 * Returns the count, 0 at end of stream, -EAGAIN (non-blocking, empty),
 * -ESTALE once when this reader lost data to overwriting (it then resumes at
 * the oldest byte held; bw_stream_stat() counts the loss), -EIO when the
 * ring is broken (a writer died where its span could not be padded; see
 * bw_ring_opts.writer_timeout_ms). Padding left by writers presumed dead is
 * skipped, never returned. */
BW_API ssize_t bw_stream_read(struct bw_stream *s, void *buf, size_t n);

/* Like read, without the copy: points *ptr at up to n bytes in the ring and
 * moves the read position past them. The bytes are one contiguous span even
 * across the wrap, and writers do not reuse their space before the next call
 * on s (bw_stream_flush() gives it back at once). */
BW_API ssize_t bw_stream_peek(struct bw_stream *s, const void **ptr, size_t n);

/* Points *ptr at up to n readable bytes without moving the read position;
 * bw_stream_peek_complete() moves it. Returns the count, as read does. */
BW_API ssize_t bw_stream_peek_acquire(struct bw_stream *s, const void **ptr,
				      size_t n);

/* Moves the read position n bytes forward over acquired data.
 * Returns 0, or -EINVAL when n exceeds what was acquired. */
BW_API int bw_stream_peek_complete(struct bw_stream *s, size_t n);

/* ---- writing -------------------------------------------------------------- */

/* Appends n bytes from buf. A call of at most the capacity is atomic: its
 * bytes are contiguous in the stream. Larger calls are split. Returns n, or
 * the count written before an error or -EAGAIN, -EPIPE (no reader left),
 * -EIO (ring broken by a writer that died mid-write), -ETIMEDOUT (on a ring
 * with a writer timeout, this writer stalled that long inside the write and
 * was presumed dead: the call's bytes are not published). */
BW_API ssize_t bw_stream_write(struct bw_stream *s, const void *buf, size_t n);

/* Reserves n bytes at the write position and points *ptr at them; the
 * caller fills them. They become visible to readers at the next call on s
 * (any call) or bw_stream_flush(). Returns n, -EMSGSIZE when n exceeds the
 * capacity, or as write does. */
BW_API ssize_t bw_stream_poke(struct bw_stream *s, void **ptr, size_t n);

/* Reserves n bytes like poke but publishes nothing until
 * bw_stream_poke_complete(). One reservation at a time (-EBUSY); one of 0
 * bytes (on a byte ring) reserves nothing but is one all the same, ended
 * by poke_complete(0). */
BW_API ssize_t bw_stream_poke_acquire(struct bw_stream *s, void **ptr,
				      size_t n);

/* Publishes the first n bytes of the reservation and drops the rest.
 * Returns 0, -EINVAL when n exceeds it, -EBUSY when another writer reserved
 * after it and n is short (publish all of it then), -ETIMEDOUT when the
 * ring has a writer timeout and this writer held the reservation so long
 * that it was presumed dead (the span was padded: nothing is published). */
BW_API int bw_stream_poke_complete(struct bw_stream *s, size_t n);

/* Publishes poked data now, and gives back the space of peeked data.
 * Returns 0 or -errno. */
BW_API int bw_stream_flush(struct bw_stream *s);

/* Record rings: adds n bytes to the open record (see enum bw_layout).
 * Returns n, -EMSGSIZE, -ENOSYS on a byte ring, or as write does. */
BW_API ssize_t bw_stream_append(struct bw_stream *s, const void *buf,
				size_t n);

/* ---- other calls ---------------------------------------------------------- */

enum {
	BW_CHECK_READ = 0,  /* stamp tracks this handle's read position */
	BW_CHECK_WRITE = 1, /* stamp tracks this handle's write position */
};

/* Epoch stamps for optimistic access. With stamp < 0 returns a new stamp
 * for the read or write position. Given an earlier stamp, returns a new one
 * if every byte read (or written) since that stamp is still intact in the
 * ring, else -ESTALE: this validates a peek after use. -EINVAL for a stamp
 * from the future. */
BW_API int64_t bw_stream_check(struct bw_stream *s, int64_t stamp, int flags);

/* Moves a reader's position (SEEK_SET: absolute, SEEK_CUR, SEEK_END:
 * relative to the write position) and returns it. -EINVAL beyond the write
 * position, -ESTALE before the oldest byte held (a seek that does not move
 * the reader returns its position all the same; the next read tells of a
 * loss); -ESPIPE for writers except lseek(s, 0, SEEK_CUR), which returns
 * the write position. */
BW_API int64_t bw_stream_lseek(struct bw_stream *s, int64_t off, int whence);

/* Poll events; the values are those of poll(2). */
enum {
	BW_POLLIN = 0x001,  /* readable: data, or end of stream */
	BW_POLLOUT = 0x004, /* writable: space, or no reader left */
	BW_POLLERR = 0x008,
	BW_POLLHUP = 0x010, /* the other side has gone */
};

/* Waits until s is ready for events (BW_POLLIN/BW_POLLOUT) or timeout_ms
 * passes (-1: forever). Returns the ready events, 0 on timeout. */
BW_API int bw_stream_block(struct bw_stream *s, int events, int timeout_ms);

struct bw_pollitem {
	struct bw_stream *s;
	short events;
	short revents;
};

/* Waits on a group of streams (1 to 64: the kernel's futex_waitv takes
 * 128 words, two per stream). Returns how many are ready, with their
 * revents set, 0 on timeout, or -EINVAL for another count. For more,
 * poll the streams' descriptors (bw_stream_fd). */
BW_API int bw_stream_select(struct bw_pollitem *items, unsigned n,
			    int timeout_ms);

/* Returns a file descriptor that poll/epoll report readable when s is
 * readable (or writable, for a write-only handle, reported as POLLIN on the
 * descriptor). Owned by s: do not close it. After a readiness report, call
 * until -EAGAIN before waiting again. It is also readable once per liveness
 * interval (BELTWAY_LIVENESS_MS) while s waits, so that a loop waiting on
 * it alone calls s, and s finds peers killed without closing; such a call
 * may find nothing (-EAGAIN). */
BW_API int bw_stream_fd(struct bw_stream *s);

/* Switches non-blocking mode. Returns 0. */
BW_API int bw_stream_set_nonblock(struct bw_stream *s, int on);

struct bw_stream_stat {
	uint64_t capacity;
	uint64_t read_pos;  /* this reader's position */
	uint64_t write_pos; /* published write position of the ring */
	uint64_t bytes;	    /* bytes this handle read or wrote */
	uint64_t calls;	    /* calls that moved data */
	uint64_t waits;	    /* times this handle slept */
	uint64_t lost;	    /* bytes this reader lost to overwriting */
	uint32_t readers;
	uint32_t writers;
	uint64_t spliced;   /* IBuf writers: bytes stored as indices only */
	uint64_t copied;    /* IBuf writers: bytes written through */
	uint64_t dropped;   /* writers: bytes this handle dropped (SRP, MRP);
			     * readers: bytes the ring's writers dropped since
			     * this reader attached */
	uint32_t policy;    /* enum bw_policy of the ring */
	uint64_t padded;    /* readers: bytes skipped as padding (spans of
			     * writers presumed dead) */
	uint32_t layout;    /* enum bw_layout of the ring */
	uint32_t record_max; /* record rings: the largest record a write may
			      * carry; 0 on byte rings */
	uint64_t held_bytes; /* dynamic rings: container memory allocated in
			      * this process now */
};

/* Fills st for this handle. Returns 0. */
BW_API int bw_stream_stat(struct bw_stream *s, struct bw_stream_stat *st);

/* ---- inspecting rings without attaching ----------------------------------- */

enum { BW_PEER_READER = 1, BW_PEER_WRITER = 2, BW_PEER_TAP = 3 };

struct bw_ring_peer {
	int role; /* BW_PEER_* */
	uint32_t slot;
	pid_t pid;
	uint64_t pos; /* readers: read position */
	uint64_t bytes, calls, waits;
	uint64_t lost; /* readers: bytes lost to overwriting; writers: bytes
			* dropped (SRP, MRP) */
};

struct bw_ring_info {
	uint64_t capacity;
	uint64_t write_pos; /* published */
	uint64_t reserved_pos; /* reserved by writers, >= write_pos */
	uint32_t mode;
	uid_t uid;
	gid_t gid;
	uint32_t flags; /* BW_RING_* */
	uint32_t page_size;
	uint32_t readers, writers, max_readers, max_writers;
	uint64_t dead_readers, dead_writers; /* detached after dying */
	uint64_t reader_waits, writer_waits;
	int broken; /* a writer died inside an ordered write */
	uint64_t created_ns;
	uint32_t policy; /* enum bw_policy */
	uint64_t dropped_writes, dropped_bytes; /* SRP, MRP */
	uint64_t shared_read_pos; /* MRP: the readers' shared position R */
	uint64_t padded_spans, padded_bytes; /* reservations of writers
					      * presumed dead, skipped */
	uint32_t writer_timeout_ms;
	uint32_t wake_batch, wake_usec; /* event batching (bw_ring_opts) */
	uint64_t reader_wakes;		/* wakeups writers issued to readers */
	uint32_t reader_sleepers;	/* handles asleep waiting for data now */
	uint32_t layout;		/* enum bw_layout (0 for IBufs too) */
	uint32_t record_size, record_align, record_align_offset;
	uint32_t record_max; /* the largest record a write may carry */
	uint32_t scale;	     /* enum bw_scale */
	uint64_t scale_size; /* self-scaling: the size now (capacity too),
			      * and resizes so far */
	uint64_t scale_epoch;
	uint64_t scale_min, scale_max;
};

/* Reads the state of the named ring without attaching. Fills up to
 * max_peers entries of peers (may be NULL). Returns the number of attached
 * peers, -ENOENT, -EACCES or -EBADMSG. */
BW_API int bw_ring_stat(const char *name, struct bw_ring_info *info,
			struct bw_ring_peer *peers, unsigned max_peers);

/* Calls fn for every named ring, in no order, until it returns non-zero
 * (which is then returned). Returns 0 or -errno. */
BW_API int bw_ring_list(int (*fn)(const char *name, void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
