/* SPDX-License-Identifier: MIT */
/*
 * Beltway fabric: rings on other hosts, reached with one-sided RDMA reads and
 * writes through libfabric.
 *
 * A host exports its named rings with a server (bw_server_open(); the
 * `beltway serve` command). A client asks the server for a ring by name over
 * a small TCP rendezvous and gets back a descriptor: the fabric address of
 * the server's endpoint, the keys and addresses of the ring's registered
 * memory, its geometry and a generation. From then on ring data moves only
 * by one-sided reads and writes; the rendezvous connection stays open as the
 * liveness signal of the session and carries nothing else.
 *
 * Pull (BW_READ): the remote reader fetches the write position and the data
 * with fi_read and writes nothing to the owner (FRP without feedback). Data
 * that was overwritten while it was being fetched is never delivered: the
 * reader re-reads the reservation position after the data and counts what
 * it lost.
 *
 * Push (BW_WRITE): the remote writer reserves with an atomic max on the
 * ring's reservation position, puts the data with fi_write (delivery
 * complete), then raises the write position with an atomic max. With
 * BW_REMOTE_LOSSLESS the server writes the ring's slowest reader position
 * back into the writer's memory (a one-sided write) and the writer never
 * passes it; without it the writer never waits (FRP) and overwrites.
 *
 * Providers: "tcp" (the default), "shm", "sockets", "verbs"; the environment
 * variable BELTWAY_PROVIDER overrides the default.
 */
#ifndef BELTWAY_FABRIC_H
#define BELTWAY_FABRIC_H

#include <beltway/common.h>

#ifdef __cplusplus
extern "C" {
#endif

struct bw_remote;
struct bw_server;

struct bw_fabric_opts {
	uint32_t struct_size; /* sizeof(struct bw_fabric_opts) */
	uint32_t timeout_ms;  /* a peer silent this long is gone: remote
			       * calls fail with -ETIMEDOUT or -ECONNRESET
			       * (0: $BELTWAY_FABRIC_TIMEOUT_MS, else 5000) */
	const char *provider; /* NULL: $BELTWAY_PROVIDER, else "tcp" */
	const char *const *names; /* servers: the rings exported, NULL-ended
				   * (NULL: any ring the server may open) */
};
#define BW_FABRIC_OPTS_INIT {.struct_size = sizeof(struct bw_fabric_opts)}

/* Flags of bw_remote_open() besides BW_READ, BW_WRITE and BW_NONBLOCK. */
enum {
	BW_REMOTE_LOSSLESS = 1 << 8, /* push: wait for the ring's readers */
};

/* Opens the ring NAME exported by the server at URL "HOST:PORT/NAME" for
 * pull (BW_READ) or push (BW_WRITE). A reader starts at the write position,
 * or with BW_FROM_START at the oldest byte the ring still holds.
 * Returns 0, -EINVAL (bad URL or flags), -ECONNREFUSED, -ENOENT (no such
 * ring), -EACCES (not exported or not permitted), -EBUSY (a push into a ring
 * that has a writer), -EPROTO (a bad descriptor or reply), -ETIMEDOUT, or
 * another -errno; bw_strerror_last() says which step failed. */
BW_API int bw_remote_open(const char *url, int flags,
			  const struct bw_fabric_opts *opts,
			  struct bw_remote **out);

/* Copies up to n bytes at the read position into buf. Returns the count, 0
 * when the server ended the session, -EAGAIN (BW_NONBLOCK, no data),
 * -ESTALE once when the writer overwrote data before this reader fetched it
 * (counted in lost; the reader resumes at the oldest byte held),
 * -ETIMEDOUT or -ECONNRESET when the server or the link is gone. On an fr
 * or vr record ring, one whole record per call (-EMSGSIZE when n is
 * shorter; it stays), resuming after a loss at the next record start. dr
 * rings, dynamic and self-scaling rings are not served (-ENOTSUP). */
BW_API ssize_t bw_remote_read(struct bw_remote *r, void *buf, size_t n);

/* Appends n bytes (at most the ring's capacity per call is atomic; larger
 * calls are split). Returns n or -errno as read does; -EAGAIN with
 * BW_NONBLOCK when a lossless ring has no room. On an fr or vr record ring,
 * one record per call (-EMSGSIZE beyond the ring's largest record). */
BW_API ssize_t bw_remote_write(struct bw_remote *r, const void *buf, size_t n);

/* Waits until every byte written is visible to the ring's readers. */
BW_API int bw_remote_flush(struct bw_remote *r);

struct bw_remote_stat {
	uint64_t bytes;	     /* delivered (read) or written */
	uint64_t calls;
	uint64_t lost;	     /* readers: bytes overwritten before fetched */
	uint64_t padded;     /* readers: bytes skipped as padding (spans of
			      * writers the ring presumed dead) */
	uint64_t waits;	     /* writers: times it waited for credit */
	uint64_t remote_ops; /* one-sided operations issued */
	uint64_t position;   /* the read or write position */
	uint64_t capacity;
	uint64_t generation; /* of the export this handle uses */
	char provider[32];
};

BW_API int bw_remote_stat(const struct bw_remote *r, struct bw_remote_stat *st);

/* Flushes (writers), ends the session and frees the handle. A writer's
 * close returns once the server has let the ring go (another writer may
 * attach then), or after the timeout. */
BW_API int bw_remote_close(struct bw_remote *r);

/* ---- servers ------------------------------------------------------------ */

/* Listens on "HOST:PORT" (PORT 0: any; bw_server_port() tells which) and
 * opens a fabric endpoint on HOST. */
BW_API int bw_server_open(const char *listen, const struct bw_fabric_opts *opts,
			  struct bw_server **out);

/* The TCP port the server listens on. */
BW_API int bw_server_port(const struct bw_server *s);

/* Serves requests and drives the endpoint for up to timeout_ms (-1: until
 * bw_server_stop()). Returns 0, or -errno on a failure of the server itself
 * (a failing client only ends that client's session). */
BW_API int bw_server_run(struct bw_server *s, int timeout_ms);

/* Makes bw_server_run() return; safe from a signal handler or a thread. */
BW_API void bw_server_stop(struct bw_server *s);

/* Ends every session (revoking its keys) and frees the server. */
BW_API void bw_server_close(struct bw_server *s);

/* ---- bootstrap for job launchers ----------------------------------------- */

struct bw_bootstrap;

/* Joins a job from the environment a launcher sets: BELTWAY_RANK (0 to
 * size-1), BELTWAY_SIZE, and BELTWAY_ROOT=HOST:PORT, where rank 0 listens
 * for the others. Every rank exports its ring NAME (which must exist) with
 * a server on a thread of its own, on the address it reaches the root by;
 * rank 0 gathers every rank's address and sends the table to all. Returns
 * once every rank has joined, or -ETIMEDOUT after opts->timeout_ms (x4). */
BW_API int bw_bootstrap_env(const char *name, const struct bw_fabric_opts *opts,
			    struct bw_bootstrap **out);

/* This process's rank, and the job's size. */
BW_API int bw_bootstrap_rank(const struct bw_bootstrap *b);
BW_API int bw_bootstrap_size(const struct bw_bootstrap *b);

/* The URL of rank's ring, for bw_remote_open(). Returns it or NULL. */
BW_API const char *bw_bootstrap_url(const struct bw_bootstrap *b, int rank);

/* Stops this rank's server (ending its sessions) and frees b. */
BW_API void bw_bootstrap_close(struct bw_bootstrap *b);

/* A session of a server on this host, as `beltway stat` shows it. */
struct bw_fabric_session {
	int server_pid;
	int writer;	    /* 1: a remote writer (push), 0: a remote reader */
	int lossless;	    /* push: paced by the ring's readers */
	uint64_t generation;
	char peer[64];	    /* the client's address */
	char listen[272];   /* the server's HOST:PORT */
	char provider[32];
};

/* Fills up to max sessions of live servers on this host that serve the
 * ring NAME; returns how many there are (possibly more than max). */
BW_API int bw_fabric_sessions(const char *name, struct bw_fabric_session *out,
			      unsigned max);

#ifdef __cplusplus
}
#endif
#endif
