/* SPDX-License-Identifier: MIT */
/*
 * Origins of shadows on this host, the latency-injecting layer, and the NUMA
 * helpers: where the reader runs, where memory lives, and replicas bound to
 * a node.
 *
 * A ring on this host is read like a tap: its segment is mapped read-only
 * and no reader slot is taken, so its writers never learn of the shadow
 * (FRP without feedback). A "remote operation" on it is a load of its
 * positions, or a copy out of its data.
 */
#include "config.h"

#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <hwloc.h>
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bwf.h"
#include "bwi_ring.h"
#include "bws.h"

/* ---- a ring on this host ---------------------------------------------------- */

struct local_src {
	struct bws_src b;
	struct bwi_map *m;
	struct bws_win w; /* the last positions read */
	uint64_t live_next; /* when to look at the writers' liveness next */
	uint32_t dead_wa;   /* writers ever attached when all were dead */
};

/* Whether no writer with wa attached ever is alive: writers killed without
 * detaching, which a shadow may not reap but can see are gone. Looked at
 * once per liveness interval at most. */
static bool writers_dead(struct local_src *l, uint32_t wa)
{
	uint64_t now = bwi_now_ns();

	if (now < l->live_next)
		return false;
	l->live_next = now + (uint64_t)bwi_liveness_ms() * 1000000u;
	if (bwi_slot_live(l->m, BWI_WRITER) != 0 ||
	    bw_load_acquire(&l->m->hdr->ctl.wattach) != wa)
		return false;
	l->dead_wa = wa;
	return true;
}

static int local_wpost(struct bws_src *s, struct bws_req *rq)
{
	struct local_src *l = (struct local_src *)s;
	struct bwi_hdr *h = l->m->hdr;
	uint64_t prev = l->w.tail;
	uint32_t wa, wd;

	/* A3: the loads of data a caller copied before this call are
	 * ordered before the loads of the positions that validate them. */
	bw_smp_rmb();
	/* the writer counts first: a writer publishes its last tail before
	 * it counts itself gone, so the tail read after them is final */
	wa = bw_load_acquire(&h->ctl.wattach);
	wd = bw_load_acquire(&h->ctl.wdetach);
	l->w.ended = wa != 0 && wa == wd;
	l->w.tail = bw_load_acquire(&h->prod.tail);
	/* Writers attached but none alive: no writer attached since all
	 * were found dead, or (only while the tail stands still: a moving
	 * tail proves a live writer) none is alive now. The tail read after
	 * that verdict is final. */
	if (wa != 0 && wa != wd &&
	    (wa == l->dead_wa || (l->w.tail == prev && writers_dead(l, wa)))) {
		l->w.ended = true;
		l->w.tail = bw_load_acquire(&h->prod.tail);
	}
	/* tail, then pads: a padder records the span, raises pads, then
	 * moves the tail over it, so a tail past a pad comes with its count */
	l->w.pads = bw_load_acquire(&h->prod.pads);
	l->w.oldest = bwi_oldest_held(l->m);
	rq->done = true;
	return 0;
}

static int local_pads(struct bws_src *s, struct bwf_pad *t)
{
	struct bwi_hdr *h = ((struct local_src *)s)->m->hdr;

	for (unsigned i = 0; i < BWI_PADS; i++)
		t[i].ok = bwi_pad_load(&h->padv[i], &t[i].seq, &t[i].start,
				       &t[i].end);
	return 0;
}

static int local_wresult(struct bws_src *s, struct bws_win *w)
{
	*w = ((struct local_src *)s)->w;
	return 0;
}

/* The seqlock read: bytes a writer may be overwriting, validated by the
 * caller's next window (tests/tsan.supp names this function). */
__attribute__((noinline)) void bws_copy_racy(void *dst, const void *src, size_t n)
{
	memcpy(dst, src, n);
}

static int local_post(struct bws_src *s, void *dst, uint64_t pos, size_t len,
		      struct bws_req *rq)
{
	struct bwi_map *m = ((struct local_src *)s)->m;

	bws_copy_racy(dst, m->data + (pos & m->mask), len);
	rq->done = true;
	return 0;
}

static int local_test(struct bws_src *s, struct bws_req *rq, bool wait)
{
	(void)s;
	(void)wait;
	return rq->done ? 1 : 0;
}

static const void *local_inplace(struct bws_src *s, uint64_t pos)
{
	struct bwi_map *m = ((struct local_src *)s)->m;

	return m->data + (pos & m->mask);
}

static int local_reg(struct bws_src *s, void *buf, size_t len)
{
	(void)s;
	(void)buf;
	(void)len;
	return 0;
}

static void local_unreg(struct bws_src *s, void *buf)
{
	(void)s;
	(void)buf;
}

static int local_alive(struct bws_src *s)
{
	(void)s;
	return 0;
}

static void local_close(struct bws_src *s)
{
	bwi_map_put(((struct local_src *)s)->m);
	free(s);
}

static const struct bws_src_ops local_ops = {
	.name = "local",
	.wpost = local_wpost,
	.wresult = local_wresult,
	.pads = local_pads,
	.post = local_post,
	.test = local_test,
	.inplace = local_inplace,
	.reg = local_reg,
	.unreg = local_unreg,
	.alive = local_alive,
	.close = local_close,
};

int bws_local_open(const char *name, struct bws_src **out)
{
	struct local_src *l;
	struct bwi_map *m;
	int r = bwi_name_check(name);

	if (r < 0)
		return r;
	if ((r = bwi_map_open(name, BWI_ACC_RO, &m)) < 0)
		return r;
	if ((r = bwf_exportable(name, m, "shadows")) < 0) {
		bwi_map_put(m);
		return r;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		bwi_map_put(m);
		return bwi_err(ENOMEM, "allocating a shadow");
	}
	l->m = m;
	l->b.ops = &local_ops;
	l->b.capacity = m->g.capacity;
	l->b.max_xfer = m->g.capacity;
	l->b.origin_node = bws_mem_node(m->data);
	l->b.nic_node = -1;
	l->b.indices = m->g.layout == BWI_LAYOUT_INDEX;
	l->b.rec = bwi_rec_geom(m->g.capacity, m->g.layout, m->g.rec_size,
				m->g.rec_align, m->g.rec_align_off);
	strcpy(l->b.link, "shm");
	*out = &l->b;
	return 0;
}

/* ---- the latency layer ------------------------------------------------------ */

/* Delays the completion of every operation of the source below it by a
 * fixed time from its issue, as a long link would; operations still overlap
 * (a read posted while another is in flight completes one latency after its
 * own post), so latency can be hidden by keeping several in flight.
 * In-place access is not offered: an origin behind a latency is remote. */
struct lat_src {
	struct bws_src b;
	struct bws_src *in;
	uint64_t lat_ns;
};

static struct bws_src *inner(struct bws_src *s)
{
	return ((struct lat_src *)s)->in;
}

void bws_wait_until(uint64_t due_ns)
{
	for (;;) {
		uint64_t now = bwi_now_ns();
		struct timespec ts = {0, 0};

		if (now >= due_ns)
			return;
		if (due_ns - now > 80000) {
			ts.tv_nsec = (long)(due_ns - now - 60000);
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec = ts.tv_nsec / 1000000000L;
				ts.tv_nsec %= 1000000000L;
			}
			nanosleep(&ts, NULL);
		} else {
			sched_yield();
		}
	}
}

static int lat_wpost(struct bws_src *s, struct bws_req *rq)
{
	uint64_t due = bwi_now_ns() + ((struct lat_src *)s)->lat_ns;
	int r = inner(s)->ops->wpost(inner(s), rq);

	rq->due_ns = due;
	return r;
}

static int lat_wresult(struct bws_src *s, struct bws_win *w)
{
	return inner(s)->ops->wresult(inner(s), w);
}

static int lat_pads(struct bws_src *s, struct bwf_pad *t)
{
	uint64_t due = bwi_now_ns() + ((struct lat_src *)s)->lat_ns;
	int r = inner(s)->ops->pads(inner(s), t);

	bws_wait_until(due);
	return r;
}

int bws_window(struct bws_src *s, struct bws_win *w)
{
	struct bws_req rq;
	int r = s->ops->wpost(s, &rq);

	if (r == 0 && (r = s->ops->test(s, &rq, true)) >= 0)
		r = s->ops->wresult(s, w);
	return r;
}

static int lat_post(struct bws_src *s, void *dst, uint64_t pos, size_t len,
		    struct bws_req *rq)
{
	uint64_t due = bwi_now_ns() + ((struct lat_src *)s)->lat_ns;
	int r = inner(s)->ops->post(inner(s), dst, pos, len, rq);

	rq->due_ns = due;
	return r;
}

static int lat_test(struct bws_src *s, struct bws_req *rq, bool wait)
{
	int r = inner(s)->ops->test(inner(s), rq, wait);

	if (r <= 0)
		return r;
	if (wait)
		bws_wait_until(rq->due_ns);
	return bwi_now_ns() >= rq->due_ns ? 1 : 0;
}

static const void *lat_inplace(struct bws_src *s, uint64_t pos)
{
	(void)s;
	(void)pos;
	return NULL;
}

static int lat_reg(struct bws_src *s, void *buf, size_t len)
{
	return inner(s)->ops->reg(inner(s), buf, len);
}

static void lat_unreg(struct bws_src *s, void *buf)
{
	inner(s)->ops->unreg(inner(s), buf);
}

static int lat_alive(struct bws_src *s)
{
	return inner(s)->ops->alive(inner(s));
}

static void lat_close(struct bws_src *s)
{
	inner(s)->ops->close(inner(s));
	free(s);
}

static const struct bws_src_ops lat_ops = {
	.name = "latency",
	.wpost = lat_wpost,
	.wresult = lat_wresult,
	.pads = lat_pads,
	.post = lat_post,
	.test = lat_test,
	.inplace = lat_inplace,
	.reg = lat_reg,
	.unreg = lat_unreg,
	.alive = lat_alive,
	.close = lat_close,
};

int bws_latency_wrap(struct bws_src *src, uint32_t latency_us,
		     struct bws_src **out)
{
	struct lat_src *l = calloc(1, sizeof(*l));

	if (!l)
		return bwi_err(ENOMEM, "allocating a latency layer");
	l->b = *src;
	l->b.ops = &lat_ops;
	l->in = src;
	l->lat_ns = (uint64_t)latency_us * 1000u;
	*out = &l->b;
	return 0;
}

/* ---- NUMA ------------------------------------------------------------------- */

static hwloc_topology_t topo;
static bool topo_ok;
static pthread_once_t topo_once = PTHREAD_ONCE_INIT;

static void topo_load(void)
{
	if (hwloc_topology_init(&topo) < 0)
		return;
	if (hwloc_topology_load(topo) < 0) {
		hwloc_topology_destroy(topo);
		return;
	}
	topo_ok = true;
}

/* The first NUMA node (OS index) of a node set, or -1. */
static int first_node(hwloc_const_nodeset_t ns)
{
	int i = hwloc_bitmap_first(ns);

	return i < 0 ? -1 : i;
}

int bws_cpu_node(void)
{
	hwloc_cpuset_t cpu;
	hwloc_nodeset_t ns;
	int node = -1;

	pthread_once(&topo_once, topo_load);
	if (!topo_ok)
		return -1;
	cpu = hwloc_bitmap_alloc();
	ns = hwloc_bitmap_alloc();
	if (cpu && ns &&
	    hwloc_get_last_cpu_location(topo, cpu, HWLOC_CPUBIND_THREAD) == 0) {
		hwloc_cpuset_to_nodeset(topo, cpu, ns);
		node = first_node(ns);
	}
	hwloc_bitmap_free(cpu);
	hwloc_bitmap_free(ns);
	return node;
}

int bws_mem_node(const void *p)
{
	int node = -1;

	if (numa_available() < 0)
		return -1;
	/* the page's node (it is faulted in: rings are populated) */
	if (get_mempolicy(&node, NULL, 0, (void *)p, MPOL_F_NODE | MPOL_F_ADDR) < 0)
		return -1;
	return node;
}

void *bws_mirror_alloc(size_t len, int node)
{
	int fd = memfd_create("beltway-replica", MFD_CLOEXEC);
	uint8_t *base;

	if (fd < 0)
		return NULL;
	if (ftruncate(fd, (off_t)len) < 0)
		goto fail;
	base = mmap(NULL, 2 * len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		goto fail;
	if (mmap(base, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
		 0) == MAP_FAILED ||
	    mmap(base + len, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 fd, 0) == MAP_FAILED) {
		munmap(base, 2 * len);
		goto fail;
	}
	close(fd);
	/* Bind before the first touch: the pages are then made on node. */
	if (node >= 0 && numa_available() >= 0 && node <= numa_max_node())
		numa_tonode_memory(base, len, node);
	memset(base, 0, len);
	return base;
fail:
	close(fd);
	return NULL;
}

void bws_mirror_free(void *p, size_t len)
{
	if (p)
		munmap(p, 2 * len);
}

int bws_nic_node(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct ifaddrs *ifs, *i;
	char name[IF_NAMESIZE + 1] = "";
	hwloc_obj_t dev = NULL;
	int node = -1;

	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 || getifaddrs(&ifs) < 0)
		return -1;
	for (i = ifs; i; i = i->ifa_next) {
		const struct sockaddr *a = i->ifa_addr;

		if (!a || a->sa_family != ss.ss_family)
			continue;
		if ((a->sa_family == AF_INET &&
		     ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
			     ((struct sockaddr_in *)&ss)->sin_addr.s_addr) ||
		    (a->sa_family == AF_INET6 &&
		     !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			     &((struct sockaddr_in6 *)&ss)->sin6_addr, 16))) {
			snprintf(name, sizeof(name), "%s", i->ifa_name);
			break;
		}
	}
	freeifaddrs(ifs);
	pthread_once(&topo_once, topo_load);
	if (!topo_ok || !name[0])
		return -1;
	/* I/O objects are kept only in a topology that asked for them: the
	 * shared one did not (it is for CPUs), so load one for the device. */
	{
		hwloc_topology_t t;

		if (hwloc_topology_init(&t) < 0)
			return -1;
		hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
		if (hwloc_topology_load(t) == 0) {
			while ((dev = hwloc_get_next_osdev(t, dev)))
				if (dev->name && !strcmp(dev->name, name))
					break;
			if (dev) {
				hwloc_obj_t up = hwloc_get_non_io_ancestor_obj(t, dev);

				if (up && up->nodeset)
					node = first_node(up->nodeset);
			}
		}
		hwloc_topology_destroy(t);
	}
	return node;
}
