/* SPDX-License-Identifier: MIT */
/*
 * A libfabric endpoint for one-sided operations: an RDM endpoint with one
 * completion queue for both directions and an address vector.
 *
 * Written for what verbs needs, run here on tcp, shm and sockets:
 * - FI_MR_LOCAL: every local buffer of an operation is registered and its
 *   descriptor passed (callers register their staging buffers);
 * - FI_MR_VIRT_ADDR: remote addresses are virtual addresses, else offsets
 *   from the start of the region (bwf_mr.raddr hides the difference);
 * - FI_MR_PROV_KEY: the provider picks keys, else we request random ones of
 *   mr_key_size bytes, so a stale or guessed key is unlikely to be valid;
 * - FI_MR_ENDPOINT: regions are bound to the endpoint and enabled;
 * - FI_MR_ALLOCATED: only mapped memory is registered (ring segments are).
 * FI_MR_RAW (keys too long for 64 bits) is not accepted: it is not in the
 * hints, so no provider that needs it is chosen.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bwf.h"
#include "bwi_ring.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "the wire formats are the host's little-endian structs");

const char *bwf_provider(const struct bw_fabric_opts *o)
{
	const char *p = o && o->provider ? o->provider : getenv("BELTWAY_PROVIDER");

	return p && *p ? p : "tcp";
}

uint32_t bwf_timeout(const struct bw_fabric_opts *o)
{
	const char *e = getenv("BELTWAY_FABRIC_TIMEOUT_MS");
	long v;

	if (o && o->timeout_ms)
		return o->timeout_ms;
	if (e && (v = strtol(e, NULL, 10)) > 0 && v < 86400000)
		return (uint32_t)v;
	return BWF_DEFAULT_TIMEOUT_MS;
}

static int fierr(int ret, const char *what, const char *prov)
{
	int e = ret < 0 ? -ret : ret;

	/* libfabric's errno values below FI_ERRNO_OFFSET are errno's */
	return bwi_err(e < 256 ? e : EIO, "%s (provider %s): %s", what, prov,
		       fi_strerror(e));
}

static struct fi_info *hints_for(const char *prov, bool atomics, bool waw)
{
	struct fi_info *h = fi_allocinfo();

	if (!h)
		return NULL;
	h->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ |
		  FI_REMOTE_WRITE | (atomics ? FI_ATOMIC : 0);
	h->mode = FI_CONTEXT | FI_CONTEXT2;
	h->ep_attr->type = FI_EP_RDM;
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR |
				  FI_MR_ALLOCATED | FI_MR_PROV_KEY |
				  FI_MR_ENDPOINT;
	h->domain_attr->threading = FI_THREAD_DOMAIN;
	if (waw)
		h->tx_attr->msg_order = FI_ORDER_RAR | FI_ORDER_RAW | FI_ORDER_WAW;
	h->fabric_attr->prov_name = strdup(prov);
	if (!h->fabric_attr->prov_name) {
		fi_freeinfo(h);
		return NULL;
	}
	return h;
}

static int get_info(const char *prov, const char *node, struct fi_info **out)
{
	/* Atomics first (the push path raises positions with FI_MAX), then
	 * without: pull needs only FI_READ. Ordered RMA first: we do not rely
	 * on the order, but shm copies straight into the peer's memory
	 * without checking its key ("fast RMA") unless RMA ordering is asked
	 * for, and a revoked or wrong key must be refused. */
	static const bool tries[][2] = {
		{true, true}, {true, false}, {false, true}, {false, false}};
	int r = -FI_ENODATA;

	for (unsigned i = 0; i < 4; i++) {
		struct fi_info *h = hints_for(prov, tries[i][0], tries[i][1]);

		if (!h)
			return -ENOMEM;
		r = fi_getinfo(BWF_FI_VERSION, node, NULL, node ? FI_SOURCE : 0,
			       h, out);
		fi_freeinfo(h);
		if (r == 0)
			return 0;
	}
	return r;
}

int bwf_ep_open(const char *prov, const char *node, uint32_t timeout_ms,
		struct bwf_ep *e)
{
	struct fi_cq_attr cqa = {.format = FI_CQ_FORMAT_CONTEXT,
				 .size = 1024,
				 .wait_obj = FI_WAIT_FD};
	struct fi_av_attr ava = {.type = FI_AV_TABLE};
	int r;

	/* shm names an endpoint by the node string: two processes given the
	 * same host would collide; let it pick a unique name. */
	if (!strncmp(prov, "shm", 3))
		node = NULL;
	memset(e, 0, sizeof(*e));
	e->cq_fd = -1;
	e->timeout_ms = timeout_ms;
	snprintf(e->prov, sizeof(e->prov), "%s", prov);
	r = get_info(prov, node, &e->info);
	if (r)
		return bwi_err(ENODEV, "no libfabric provider '%s' with RMA%s%s "
				       "(fi_getinfo: %s); try another with "
				       "--provider or BELTWAY_PROVIDER",
			       prov, node ? " on " : "", node ? node : "",
			       fi_strerror(-r));
	e->mr_mode = (uint64_t)e->info->domain_attr->mr_mode;
	e->key_size = e->info->domain_attr->mr_key_size;
	e->max_msg = e->info->ep_attr->max_msg_size;
	if (e->max_msg > (64u << 20))
		e->max_msg = 64u << 20;
	e->auto_progress = e->info->domain_attr->data_progress == FI_PROGRESS_AUTO;
	if (e->mr_mode & FI_MR_RAW) {
		r = bwi_err(ENOTSUP, "provider %s needs raw keys (FI_MR_RAW), "
				     "which Beltway does not carry", prov);
		goto fail;
	}
	if ((r = fi_fabric(e->info->fabric_attr, &e->fabric, NULL)))
		goto fi_fail;
	if ((r = fi_domain(e->fabric, e->info, &e->domain, NULL)))
		goto fi_fail;
	if ((r = fi_cq_open(e->domain, &cqa, &e->cq, NULL))) {
		cqa.wait_obj = FI_WAIT_NONE;
		if ((r = fi_cq_open(e->domain, &cqa, &e->cq, NULL)))
			goto fi_fail;
	} else if (fi_control(&e->cq->fid, FI_GETWAIT, &e->cq_fd)) {
		e->cq_fd = -1;
	}
	if ((r = fi_av_open(e->domain, &ava, &e->av, NULL)))
		goto fi_fail;
	if ((r = fi_endpoint(e->domain, e->info, &e->ep, NULL)))
		goto fi_fail;
	if ((r = fi_ep_bind(e->ep, &e->av->fid, 0)))
		goto fi_fail;
	if ((r = fi_ep_bind(e->ep, &e->cq->fid, FI_TRANSMIT | FI_RECV)))
		goto fi_fail;
	if ((r = fi_enable(e->ep)))
		goto fi_fail;
	e->addr_len = sizeof(e->addr);
	if ((r = fi_getname(&e->ep->fid, e->addr, &e->addr_len)))
		goto fi_fail;
	if (e->info->caps & FI_ATOMIC) {
		size_t cnt = 0;

		e->atomic_max = fi_atomicvalid(e->ep, FI_UINT64, FI_MAX, &cnt) == 0 &&
				cnt >= 1;
	}
	return 0;
fi_fail:
	r = fierr(r, "opening the fabric endpoint", prov);
fail:
	bwf_ep_close(e);
	return r;
}

void bwf_ep_stop(struct bwf_ep *e)
{
	/* a provider that binds regions to the endpoint may refuse while
	 * they are open: bwf_ep_close tries again after them */
	if (e->ep && fi_close(&e->ep->fid) == 0)
		e->ep = NULL;
}

void bwf_ep_close(struct bwf_ep *e)
{
	if (e->ep)
		fi_close(&e->ep->fid);
	if (e->av)
		fi_close(&e->av->fid);
	if (e->cq)
		fi_close(&e->cq->fid);
	if (e->domain)
		fi_close(&e->domain->fid);
	if (e->fabric)
		fi_close(&e->fabric->fid);
	if (e->info)
		fi_freeinfo(e->info);
	e->ep = NULL;
	e->av = NULL;
	e->cq = NULL;
	e->domain = NULL;
	e->fabric = NULL;
	e->info = NULL;
}

int bwf_mr_reg(struct bwf_ep *e, void *buf, size_t len, uint64_t access,
	       struct bwf_mr *out)
{
	uint64_t key = 0;
	int r;

	memset(out, 0, sizeof(*out));
	if (!(e->mr_mode & FI_MR_PROV_KEY)) {
		/* A requested key: random, so the key of a revoked region
		 * is not the next one handed out. */
		key = bwi_random64();
		if (e->key_size < 8)
			key &= (UINT64_C(1) << (8 * e->key_size)) - 1;
	}
	r = fi_mr_reg(e->domain, buf, len, access, 0, key, 0, &out->mr, NULL);
	if (r)
		return fierr(r, "registering memory", e->prov);
	if (e->mr_mode & FI_MR_ENDPOINT) {
		if ((r = fi_mr_bind(out->mr, &e->ep->fid, 0)) ||
		    (r = fi_mr_enable(out->mr))) {
			fi_close(&out->mr->fid);
			out->mr = NULL;
			return fierr(r, "binding a memory region", e->prov);
		}
	}
	out->key = fi_mr_key(out->mr);
	if (out->key == FI_KEY_NOTAVAIL) {
		fi_close(&out->mr->fid);
		out->mr = NULL;
		return bwi_err(ENOTSUP, "provider %s gives no 64-bit key",
			       e->prov);
	}
	out->desc = fi_mr_desc(out->mr);
	out->raddr = (e->mr_mode & FI_MR_VIRT_ADDR) ? (uint64_t)(uintptr_t)buf : 0;
	out->base = buf;
	out->len = len;
	return 0;
}

void bwf_mr_close(struct bwf_mr *m)
{
	if (m->mr)
		fi_close(&m->mr->fid);
	m->mr = NULL;
}

int bwf_av_insert(struct bwf_ep *e, const void *addr, size_t len,
		  fi_addr_t *out)
{
	int r;

	(void)len; /* the provider knows its address length */
	r = fi_av_insert(e->av, addr, 1, out, 0, NULL);
	if (r != 1)
		return bwi_err(EPROTO, "the peer's fabric address is not valid "
				       "for provider %s", e->prov);
	return 0;
}

int bwf_progress(struct bwf_ep *e)
{
	struct fi_cq_entry ent[16];
	int seen = 0;

	for (;;) {
		ssize_t n = fi_cq_read(e->cq, ent, 16);

		if (n == -FI_EAGAIN)
			return seen;
		if (n == -FI_EAVAIL) {
			struct fi_cq_err_entry ee = {0};

			if (fi_cq_readerr(e->cq, &ee, 0) == 1 && ee.op_context) {
				struct bwf_op *op = ee.op_context;
				int er = ee.err ? ee.err : EIO;

				op->err = -(er < 256 ? er : EIO);
				op->done = 1;
				seen++;
			}
			continue;
		}
		if (n < 0)
			return fierr((int)n, "reading completions", e->prov);
		for (ssize_t i = 0; i < n; i++) {
			struct bwf_op *op = ent[i].op_context;

			if (op) {
				op->err = 0;
				op->done = 1;
			}
		}
		seen += (int)n;
	}
}

void bwf_idle(struct bwf_ep *e, int timeout_ms)
{
	struct fid *f = &e->cq->fid;
	struct pollfd p = {.fd = e->cq_fd, .events = POLLIN};

	if (e->cq_fd >= 0 && fi_trywait(e->fabric, &f, 1) == FI_SUCCESS) {
		(void)poll(&p, 1, timeout_ms);
		return;
	}
	sched_yield();
}

int bwf_wait(struct bwf_ep *e, struct bwf_op *op)
{
	uint64_t deadline = bwi_now_ns() + (uint64_t)e->timeout_ms * 1000000u;
	unsigned spins = 0;

	while (!op->done) {
		int r = bwf_progress(e);

		if (r < 0)
			return e->err = r;
		if (op->done)
			break;
		if (++spins < 64)
			continue;
		if (bwi_now_ns() > deadline) {
			/* The op may still complete into memory we own: the
			 * endpoint is unusable until it is closed. */
			return e->err = bwi_err(ETIMEDOUT,
						"the peer did not answer a one-sided "
						"operation within %u ms (provider %s)",
						e->timeout_ms, e->prov);
		}
		bwf_idle(e, 1);
	}
	return op->err;
}

/* Posts with post(), retrying while the provider's queue is full. */
#define POST_RETRY(e, op, call)                                               \
	do {                                                                  \
		uint64_t dl_ = 0;                                             \
		unsigned k_ = 0;                                              \
		ssize_t r_;                                                   \
		(op)->done = 0;                                               \
		(op)->err = 0;                                                \
		while ((r_ = (call)) == -FI_EAGAIN) {                         \
			int p_ = bwf_progress(e);                             \
			if (p_ < 0)                                           \
				return p_;                                    \
			if (!dl_)                                             \
				dl_ = bwi_now_ns() +                          \
				      (uint64_t)(e)->timeout_ms * 1000000u;   \
			else if (bwi_now_ns() > dl_)                          \
				return (e)->err = bwi_err(ETIMEDOUT,          \
					"the fabric queue stayed full for %u ms", \
					(e)->timeout_ms);                     \
			/* a queue that stays full drains at the peer's pace: \
			 * spinning on starved the server (shm) */            \
			if (++k_ > 256)                                       \
				bwf_idle(e, 1);                               \
		}                                                             \
		if (r_)                                                       \
			return (e)->err = fierr((int)r_, "posting an operation", \
						(e)->prov);                   \
		(e)->ops++;                                                   \
	} while (0)

int bwf_read(struct bwf_ep *e, fi_addr_t peer, void *buf, size_t len,
	     void *desc, uint64_t raddr, uint64_t key, struct bwf_op *op)
{
	if (e->err)
		return e->err;
	POST_RETRY(e, op, fi_read(e->ep, buf, len, desc, peer, raddr, key, op));
	return 0;
}

static ssize_t post_write(struct bwf_ep *e, fi_addr_t peer, const void *buf,
			  size_t len, void *desc, uint64_t raddr, uint64_t key,
			  uint64_t flags, struct bwf_op *op)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct fi_rma_iov rma = {.addr = raddr, .len = len, .key = key};
	struct fi_msg_rma msg = {.msg_iov = &iov,
				 .desc = &desc,
				 .iov_count = 1,
				 .addr = peer,
				 .rma_iov = &rma,
				 .rma_iov_count = 1,
				 .context = op};

	return fi_writemsg(e->ep, &msg, flags | FI_COMPLETION);
}

int bwf_write(struct bwf_ep *e, fi_addr_t peer, const void *buf, size_t len,
	      void *desc, uint64_t raddr, uint64_t key, uint64_t flags,
	      struct bwf_op *op)
{
	if (e->err)
		return e->err;
	POST_RETRY(e, op, post_write(e, peer, buf, len, desc, raddr, key, flags,
				     op));
	return 0;
}

int bwf_write_try(struct bwf_ep *e, fi_addr_t peer, const void *buf,
		  size_t len, void *desc, uint64_t raddr, uint64_t key,
		  struct bwf_op *op)
{
	ssize_t r;

	if (e->err)
		return e->err;
	op->done = 0;
	op->err = 0;
	r = post_write(e, peer, buf, len, desc, raddr, key, 0, op);
	if (r == -FI_EAGAIN)
		return -EAGAIN;
	if (r)
		return fierr((int)r, "posting an operation", e->prov);
	e->ops++;
	return 0;
}

int bwf_atomic_max(struct bwf_ep *e, fi_addr_t peer, const uint64_t *val,
		   void *desc, uint64_t raddr, uint64_t key, uint64_t flags,
		   struct bwf_op *op)
{
	struct fi_ioc ioc = {.addr = (void *)val, .count = 1};
	struct fi_rma_ioc rma = {.addr = raddr, .count = 1, .key = key};
	struct fi_msg_atomic msg = {.msg_iov = &ioc,
				    .desc = &desc,
				    .iov_count = 1,
				    .addr = peer,
				    .rma_iov = &rma,
				    .rma_iov_count = 1,
				    .datatype = FI_UINT64,
				    .op = FI_MAX,
				    .context = op};

	if (e->err)
		return e->err;
	POST_RETRY(e, op, fi_atomicmsg(e->ep, &msg, flags | FI_COMPLETION));
	return 0;
}

/* Waits a little before looking again: spins first, then backs off to 1 ms. */
void bwf_backoff(unsigned *k)
{
	struct timespec ts = {0, 0};

	if (++*k < 16) {
		sched_yield();
		return;
	}
	ts.tv_nsec = *k < 26 ? 10000L << (*k - 16) : 1000000L;
	if (ts.tv_nsec > 1000000L)
		ts.tv_nsec = 1000000L;
	nanosleep(&ts, NULL);
}

int bwf_padq_take(struct bwf_padq *q, const struct bwf_pad *t, uint64_t count,
		  uint64_t pos, uint64_t tail, uint64_t cap)
{
	int unseen = 0;

	if (count > q->next && count - q->next > BWI_PADS) { /* reused */
		q->next = count - BWI_PADS;
		unseen = 1;
	}
	for (uint64_t k = q->next; k < count; k++) {
		const struct bwf_pad *e = &t[k % BWI_PADS];

		if (!e->ok || e->seq != k) {
			/* reused for a later pad: this one ended a ring before
			 * the tail, so the origin holds none of it */
			unseen = 1;
			continue;
		}
		/* the tail moves over a pad in one step, after it counts */
		if (e->start >= e->end || e->end - e->start > cap ||
		    (e->start < tail && e->end > tail))
			return bwi_err(EBADMSG, "padding record [%llu, %llu) with "
						"the write position at %llu: the "
						"ring is corrupted",
				       (unsigned long long)e->start,
				       (unsigned long long)e->end,
				       (unsigned long long)tail);
		if (e->end <= pos)
			continue;
		if (q->n == BWF_PADQ) {
			/* full: the oldest goes; if the reader has not passed
			 * it (its copies lag the ring), it must not deliver
			 * anything below its end */
			if (q->e[0] > pos && q->e[0] > q->floor)
				q->floor = q->e[0];
			memmove(q->a, q->a + 1, (BWF_PADQ - 1) * sizeof(uint64_t));
			memmove(q->e, q->e + 1, (BWF_PADQ - 1) * sizeof(uint64_t));
			q->n--;
		}
		q->a[q->n] = e->start;
		q->e[q->n++] = e->end;
	}
	if (count > q->next)
		q->next = count;
	return unseen;
}

uint64_t bwf_padq_clip(struct bwf_padq *q, uint64_t pos, uint64_t *k)
{
	uint64_t cut = pos + *k, skip = q->floor > pos ? q->floor : 0;
	unsigned j = 0;

	for (unsigned i = 0; i < q->n; i++) {
		if (q->e[i] <= pos)
			continue; /* passed: dropped */
		if (q->a[i] <= pos && q->e[i] > skip)
			skip = q->e[i];
		else if (q->a[i] < cut)
			cut = q->a[i];
		q->a[j] = q->a[i];
		q->e[j++] = q->e[i];
	}
	q->n = j;
	if (skip) {
		q->padded += skip - pos;
		return skip;
	}
	*k = cut - pos;
	return 0;
}
