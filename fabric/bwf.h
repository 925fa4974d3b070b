/* SPDX-License-Identifier: MIT */
/*
 * The fabric layer's private parts: a libfabric endpoint with its completion
 * queue and address vector (transport.c), memory registration that follows
 * the provider's mr_mode bits, the wire descriptor of an exported ring
 * (desc.c), and the rendezvous messages (serve.c, remote.c).
 *
 * One struct bwf_ep is used by one thread at a time (FI_THREAD_DOMAIN).
 */
#ifndef BWF_H
#define BWF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rdma/fabric.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_rma.h>

#include <beltway/fabric.h>

#define BWF_ADDR_MAX 256
#define BWF_FI_VERSION FI_VERSION(1, 9)
#define BWF_DEFAULT_TIMEOUT_MS 5000u

struct bwf_ep {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	int cq_fd;	    /* wait fd of the CQ, or -1: poll it */
	uint64_t mr_mode;   /* FI_MR_* the provider asked for */
	size_t key_size;    /* bytes of a requested key */
	size_t max_msg;	    /* largest single transfer */
	bool atomic_max;    /* FI_MAX on uint64 is valid */
	bool auto_progress; /* data progress without our calls */
	uint32_t timeout_ms;
	int err;	    /* sticky: an operation timed out or failed */
	uint64_t ops;	    /* operations issued */
	uint8_t addr[BWF_ADDR_MAX];
	size_t addr_len;
	char prov[32];
};

/* A registered region and what a peer needs to reach it. */
struct bwf_mr {
	struct fid_mr *mr;
	void *desc;	  /* local descriptor for operations on it */
	uint64_t key;	  /* remote key */
	uint64_t raddr;	  /* remote address of its first byte */
	void *base;
	size_t len;
};

/* One operation in flight. Its context is first: libfabric hands it back. */
struct bwf_op {
	struct fi_context2 ctx;
	volatile int done;
	int err;	/* -errno once done with an error */
	uint64_t tag;	/* the caller's */
	struct bwf_op *next;
};

const char *bwf_provider(const struct bw_fabric_opts *o);
uint32_t bwf_timeout(const struct bw_fabric_opts *o);
/* Opens an endpoint. node: the address to bind (NULL: any). */
int bwf_ep_open(const char *prov, const char *node, uint32_t timeout_ms,
		struct bwf_ep *e);
/* Closes the endpoint alone: no operation is in flight afterwards, and its
 * memory regions may close before bwf_ep_close closes the domain. */
void bwf_ep_stop(struct bwf_ep *e);
void bwf_ep_close(struct bwf_ep *e);
int bwf_mr_reg(struct bwf_ep *e, void *buf, size_t len, uint64_t access,
	       struct bwf_mr *out);
void bwf_mr_close(struct bwf_mr *m);
int bwf_av_insert(struct bwf_ep *e, const void *addr, size_t len,
		  fi_addr_t *out);
/* Reads completions; marks their ops done. Returns completions seen or
 * -errno when the queue itself failed. */
int bwf_progress(struct bwf_ep *e);
/* Waits until op is done, driving progress, for up to the timeout. */
int bwf_wait(struct bwf_ep *e, struct bwf_op *op);
/* Waits a little before looking again: spins first, then backs off to
 * 1 ms (k counts the looks; start it at 0). */
void bwf_backoff(unsigned *k);
/* Waits for the CQ to have something, or timeout_ms. */
void bwf_idle(struct bwf_ep *e, int timeout_ms);

/* Tests: fails the server's endpoint, as a provider's error would; its
 * loop replaces it. */
struct bw_server;
void bwf_server_fail(struct bw_server *s, int err);

/* Posts one operation; retries -FI_EAGAIN while driving progress. */
int bwf_read(struct bwf_ep *e, fi_addr_t peer, void *buf, size_t len,
	     void *desc, uint64_t raddr, uint64_t key, struct bwf_op *op);
int bwf_write(struct bwf_ep *e, fi_addr_t peer, const void *buf, size_t len,
	      void *desc, uint64_t raddr, uint64_t key, uint64_t flags,
	      struct bwf_op *op);
/* Posts a write once: -EAGAIN while the provider's queue is full (a peer
 * whose connection is going away keeps it full), another -errno when the
 * post is refused; neither fails the endpoint. */
int bwf_write_try(struct bwf_ep *e, fi_addr_t peer, const void *buf,
		  size_t len, void *desc, uint64_t raddr, uint64_t key,
		  struct bwf_op *op);
/* Remote *(uint64_t *)raddr = max(it, *val): val must stay valid until op
 * is done. */
int bwf_atomic_max(struct bwf_ep *e, fi_addr_t peer, const uint64_t *val,
		   void *desc, uint64_t raddr, uint64_t key, uint64_t flags,
		   struct bwf_op *op);

/* ---- the descriptor of an exported ring (wire format, little-endian) --- */
#define BWF_DESC_MAGIC UINT64_C(0x4353454459574c42) /* "BLWYDESC" */
#define BWF_DESC_VERSION 3u

enum { BWF_ACC_PULL = 1, BWF_ACC_PUSH = 2 };

struct bwf_desc {
	uint64_t magic;
	uint32_t version;
	uint32_t access;     /* BWF_ACC_* */
	uint64_t ring_id;
	uint64_t generation; /* of this export: a new one per session */
	uint64_t capacity;   /* power of two */
	uint32_t layout;     /* BWI_LAYOUT_* */
	uint32_t addr_len;   /* bytes of addr used */
	uint64_t pos_raddr;  /* the position window: ring offset 256 on */
	uint64_t pos_key;
	uint64_t pos_len;
	uint64_t data_raddr; /* the data, mapped twice: 2 * capacity bytes */
	uint64_t data_key;
	uint64_t credit;     /* lossless push: the first write limit */
	uint8_t addr[BWF_ADDR_MAX];
	uint64_t pads_raddr; /* pull: the padding table */
	uint64_t pads_key;
	uint32_t rec_size;   /* record layouts (fr, vr): the ring's */
	uint32_t rec_align;
	uint32_t rec_align_off;
	uint32_t rec_pad;
	uint32_t sum;	     /* FNV-1a of the bytes before it */
	uint32_t pad;
};
_Static_assert(sizeof(struct bwf_desc) == 392, "descriptor wire size");
_Static_assert(offsetof(struct bwf_desc, addr) == 96, "descriptor layout");
_Static_assert(offsetof(struct bwf_desc, pads_raddr) == 352, "descriptor layout");
_Static_assert(offsetof(struct bwf_desc, rec_size) == 368, "descriptor layout");
_Static_assert(offsetof(struct bwf_desc, sum) == 384, "descriptor layout");

/* The position window starts at the ring header's prod.head and reaches
 * past ctl.wdetach: head at +0, tail at +128, and from the control line
 * wattach, scar and wdetach (end of stream: every writer that attached has
 * left). Nothing in it is secret: pids and the slot table are outside. */
#define BWF_POS_OFF 256u
#define BWF_POS_HEAD 0u
#define BWF_POS_TAIL 128u
#define BWF_POS_WATTACH 284u
#define BWF_POS_PADS 136u
#define BWF_POS_SCAR 288u
#define BWF_POS_WDETACH 316u
#define BWF_POS_LEN 320u
/* The padding table (struct bwi_pad[BWI_PADS]): spans of writers presumed
 * dead, which readers skip; pull sessions export it read-only. */
#define BWF_PADS_OFF 1024u
#define BWF_PADS_LEN 512u

struct bwi_map;
/* Whether ring m can be read or fed remotely, or shadowed: 0 or -ENOTSUP
 * naming why; who: the one asking. */
int bwf_exportable(const char *name, const struct bwi_map *m, const char *who);

/* ---- padding, as a reader that holds no slot sees it ------------------ */

/* An entry of a ring's padding table (bwi_ring.h: struct bwi_pad), read
 * from afar: with ok, pad seq covers [start, end), which readers skip. */
struct bwf_pad {
	uint64_t seq, start, end;
	bool ok;
};

/* The spans a reader knows of that end past its position, and the next
 * pad of the ring's count it has not taken. */
#define BWF_PADQ 16 /* spans held */
struct bwf_padq {
	uint64_t next;
	uint64_t a[BWF_PADQ], e[BWF_PADQ];
	unsigned n;
	uint64_t floor;	 /* a span ahead was dropped (more than BWF_PADQ
			  * at once): nothing below its end is delivered */
	uint64_t padded; /* bytes skipped */
};

/* Takes pads [q->next, count) from table t (pad k in t[k % BWI_PADS]), read
 * after a look at the positions that showed count and tail. Returns 0, 1
 * when a pad went by unseen (its entry was reused: the caller drops any
 * copy it holds), or -EBADMSG for a corrupted entry. */
int bwf_padq_take(struct bwf_padq *q, const struct bwf_pad *t, uint64_t count,
		  uint64_t pos, uint64_t tail, uint64_t cap);
/* For k bytes readable at pos: the end of the pad pos lies in, or the
 * floor (skip to it), or 0 and *k cut short before the next pad. */
uint64_t bwf_padq_clip(struct bwf_padq *q, uint64_t pos, uint64_t *k);

void bwf_desc_seal(struct bwf_desc *d);
/* Checks a descriptor from a peer: returns 0 or -EPROTO with a message. */
int bwf_desc_check(const struct bwf_desc *d, uint32_t access);

/* ---- the rendezvous (TCP) ----------------------------------------------- */
#define BWF_REQ_MAGIC 0x51525742u /* "BWRQ" */
#define BWF_REP_MAGIC 0x50525742u /* "BWRP" */
#define BWF_PROTO_VERSION 3u /* 3: descriptor version 3 (record layouts) */

struct bwf_req {
	uint32_t magic;
	uint32_t version;
	uint32_t access;    /* BWF_ACC_* */
	uint32_t flags;	    /* BW_REMOTE_LOSSLESS */
	char name[64];
	char prov[32];	    /* the client's provider: must match */
	uint64_t credit_raddr; /* lossless push: where to write credit */
	uint64_t credit_key;
	uint32_t addr_len;  /* the client's fabric address */
	uint32_t pad;
	uint8_t addr[BWF_ADDR_MAX];
};
_Static_assert(sizeof(struct bwf_req) == 392, "request wire size");

struct bwf_rep {
	uint32_t magic;
	uint32_t version;
	int32_t status;	    /* 0 or -errno */
	uint32_t pad;
	char msg[160];	    /* why, when status < 0 */
	struct bwf_desc desc;
};
_Static_assert(sizeof(struct bwf_rep) == 568, "reply wire size");

/* Test hooks (remote.c): the descriptor a remote handle uses, and a raw
 * read of len bytes at any remote address and key into its scratch. */
struct bwf_desc *bwf_remote_desc(struct bw_remote *r);
int bwf_remote_probe(struct bw_remote *r, uint64_t raddr, uint64_t key,
		     size_t len);

int bwf_parse_hostport(const char *s, char *host, size_t hostlen,
		       char *port, size_t portlen, const char **rest);
/* Connects to host:port within timeout_ms. */
int bwf_tcp_connect(const char *host, const char *port, uint32_t timeout_ms,
		    int *out);
/* TCP keepalive and user timeout: a dead peer shows within timeout_ms. */
void bwf_keepalive(int fd, uint32_t timeout_ms);
int bwf_full_io(int fd, void *buf, size_t n, bool wr, uint32_t timeout_ms);

#endif
