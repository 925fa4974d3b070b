/* SPDX-License-Identifier: MIT */
/*
 * Ring segments: naming, creation, validation and the double mapping.
 *
 * A named ring is a file in the ring directory (a tmpfs); it is built as an
 * unnamed O_TMPFILE and linked under its name only once its header is
 * complete, so an opener never sees half a ring. A huge-page ring lives on
 * hugetlbfs and is named by a symlink in the ring directory. An anonymous ring
 * is a sealed memfd: it can neither shrink nor grow, so no process can make
 * its mappings fault.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bwi_index.h"

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21u << 26)
#endif

static char ring_dir[PATH_MAX];
static pthread_once_t dir_once = PTHREAD_ONCE_INIT;

static void dir_setup(void)
{
	const char *e = getenv("BELTWAY_DIR");

	snprintf(ring_dir, sizeof(ring_dir), "%s",
		 e && *e ? e : "/dev/shm/beltway");
}

BW_API const char *bw_ring_dir(void)
{
	pthread_once(&dir_once, dir_setup);
	return ring_dir;
}

/* Like /tmp: anyone may create rings, only their owners may remove them. */
static int dir_open(bool create)
{
	const char *d = bw_ring_dir();
	int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT && create) {
		if (mkdir(d, 01777) == 0)
			chmod(d, 01777);
		fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (fd < 0)
		return bwi_err(errno, "ring directory %s", d);
	return fd;
}

static int unlink_one(const char *name, struct bwi_geom *g);
static void orphans_sweep(void);
static void unlink_parts(uint64_t ring_id);
static int scale_create(const char *name, const struct bwi_map *root);

int bwi_name_check(const char *name)
{
	size_t n;

	if (!name)
		return bwi_err(EINVAL, "ring name is missing");
	n = strlen(name);
	if (n == 0 || n > BWI_NAME_MAX)
		return bwi_err(EINVAL, "ring name must be 1 to %d characters",
			       BWI_NAME_MAX);
	if (name[0] == '.')
		return bwi_err(EINVAL, "ring name '%s' starts with '.'", name);
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return bwi_err(EINVAL,
				       "ring name '%.64s' holds '%c': use "
				       "letters, digits, '.', '_', '-'",
				       name, c);
	}
	return 0;
}

/*
 * The parts of a self-scaling ring are named by its control segment's
 * ring id, not its name: .ID@K (ID 16 hex digits, K decimal) and .ID@deck.
 * A ring removed and made anew under the same name has another id, so a
 * handle on the old one never opens the new one's regions as its own (nor
 * does the old writer's resize replace them), and the old ring goes on
 * until its handles close, as any unlinked ring does. A leading '.' keeps
 * them out of bw_ring_list and of bw_stream_open (bwi_name_check).
 */
#define PART_ID_LEN 17 /* ".ID" */

/* A ring name, or a part of a self-scaling ring, made by this library
 * only. */
static int name_or_part(const char *name)
{
	const char *at = name ? strchr(name, '@') : NULL;

	if (!at || name[0] != '.')
		return bwi_name_check(name);
	if (at - name != PART_ID_LEN ||
	    strspn(name + 1, "0123456789abcdef") != PART_ID_LEN - 1 ||
	    strlen(name) > BWI_NAME_MAX)
		return bwi_err(EINVAL, "'%.64s' is no ring name", name);
	if (strcmp(at + 1, "deck") == 0)
		return 0;
	if (!at[1] || strspn(at + 1, "0123456789") != strlen(at + 1))
		return bwi_err(EINVAL, "'%.64s' is no ring name", name);
	return 0;
}

/* The name of part k of the self-scaling ring ring_id (UINT64_MAX: the
 * deck). */
int bwi_part_name(char *out, size_t len, uint64_t ring_id, uint64_t k)
{
	int n = k == UINT64_MAX
			? snprintf(out, len, ".%016llx@deck",
				   (unsigned long long)ring_id)
			: snprintf(out, len, ".%016llx@%llu",
				   (unsigned long long)ring_id,
				   (unsigned long long)k);

	if (n < 0 || (size_t)n >= len || n > BWI_NAME_MAX)
		return bwi_err(ENAMETOOLONG, "no room for a part name");
	return 0;
}

/* FNV-1a over the geometry up to its checksum. */
uint32_t bwi_geom_sum(const struct bwi_geom *g)
{
	return bwi_fnv1a(g, offsetof(struct bwi_geom, sum));
}

static size_t hdr_bytes(const struct bwi_geom *g)
{
	size_t n = offsetof(struct bwi_hdr, slots) +
		   (size_t)(g->max_readers + g->max_writers) *
			   sizeof(struct bwi_slot) +
		   (size_t)g->max_writers * BWI_POSTS * sizeof(struct bwi_post) +
		   (size_t)g->rec_hdrs * sizeof(uint64_t) +
		   (g->scale ? sizeof(struct bwi_scale_area) : 0);
	size_t page = g->page_size;

	return (n + page - 1) / page * page;
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

#define BWI_REC_MAX_ALIGN 4096u
#define BWI_REC_MAX_HDRS (1u << 25) /* DR: a header ring of 256 MiB */

/* The ring the records of g must fit in: its own, or a self-scaling
 * ring's least and largest regions (0: sizes out of range, which
 * scale_bad() reports). The control segment holds no data; every region
 * takes the ring's layout, with a dr header ring of its own. */
static uint64_t rec_cap(const struct bwi_geom *g, bool largest)
{
	unsigned sh = (g->scale_shifts >> (largest ? 16 : 8)) & 0xff;

	if (!g->scale)
		return g->capacity;
	return sh >= 12 && sh <= 62 ? UINT64_C(1) << sh : 0;
}

/* What is wrong with the record layout of g (defaults applied), or NULL.
 * The one check for a ring being created and a ring being opened. */
const char *bwi_rec_bad(const struct bwi_geom *g)
{
	uint32_t a = g->rec_align;
	uint64_t cap = rec_cap(g, false);

	if (g->layout == BWI_LAYOUT_BYTES || g->layout == BWI_LAYOUT_INDEX)
		return g->rec_size || a || g->rec_align_off || g->rec_hdrs
			       ? "a byte ring or IBuf takes no record size or "
				 "alignment"
			       : NULL;
	if (g->layout > BWI_LAYOUT_DR)
		return "unknown layout";
	if (g->flags & BW_RING_INDEX)
		return "an IBuf's ring holds indices: it takes no record "
		       "layout";
	if (!is_pow2(a) || a < 8 || a > BWI_REC_MAX_ALIGN)
		return "record alignment must be a power of two from 8 to 4096";
	if (g->rec_align_off >= a)
		return "record alignment offset must be below the alignment";
	if (g->layout == BWI_LAYOUT_FR) {
		if (!is_pow2(g->rec_size) || g->rec_size < a ||
		    g->rec_size > cap / 2 ||
		    bwi_rec_hoff(g) >= g->rec_size)
			return "fr slot size must be a power of two, at least "
			       "the alignment and its header, at most half "
			       "the ring";
	} else if (!g->rec_size || g->rec_size > (1u << 30) ||
		   bwi_rec_foot(g, g->rec_size) > cap / 2) {
		return "largest record must be 1 byte to 1 GiB and fit, with "
		       "its header, in half the ring (a self-scaling ring's "
		       "least size)";
	}
	if (g->layout != BWI_LAYOUT_DR)
		return g->rec_hdrs ? "only dr rings have a header ring" : NULL;
	if (rec_cap(g, true) / a > BWI_REC_MAX_HDRS)
		return "a dr ring's header ring (one 8-byte entry per "
		       "alignment unit) would exceed 256 MiB: raise the "
		       "record alignment";
	if (g->rec_hdrs != (g->scale ? 0 : g->capacity / a))
		return "dr header ring size does not match the ring";
	return NULL;
}

/* Record layout options into g, defaults applied; then bwi_rec_bad(). */
static int rec_opts(const struct bw_ring_opts *o, struct bwi_geom *g)
{
	const char *bad;

	if (o->struct_size >= offsetof(struct bw_ring_opts,
				       record_align_offset) +
				      sizeof(o->record_align_offset)) {
		if (o->layout != BW_LAYOUT_BYTES &&
		    (o->flags & BW_RING_INDEX))
			return bwi_err(EINVAL, "an IBuf's ring holds indices: "
					       "it takes no record layout");
		if (o->layout != BW_LAYOUT_BYTES)
			g->layout = o->layout;
		if (g->layout == BWI_LAYOUT_INDEX && o->layout)
			return bwi_err(EINVAL, "unknown layout %u", o->layout);
		g->rec_size = o->record_size;
		g->rec_align = o->record_align;
		g->rec_align_off = o->record_align_offset;
	}
	if (g->layout >= BWI_LAYOUT_FR && g->layout <= BWI_LAYOUT_DR) {
		uint64_t cap = rec_cap(g, false);

		if (!g->rec_align)
			g->rec_align = g->layout == BWI_LAYOUT_DR ? 64 : 8;
		if (!g->rec_size)
			g->rec_size = g->layout == BWI_LAYOUT_FR ? 2048
				      : cap / 4 < 65536 ? (uint32_t)(cap / 4)
							: 65536;
		/* bwi_rec_bad() refuses a bad alignment or a ring too large */
		if (g->layout == BWI_LAYOUT_DR && g->rec_align && !g->scale)
			g->rec_hdrs = (uint32_t)(cap / g->rec_align <
							 BWI_REC_MAX_HDRS
						 ? cap / g->rec_align
						 : BWI_REC_MAX_HDRS);
	}
	bad = bwi_rec_bad(g);
	if (bad)
		return bwi_err(EINVAL, "%s (layout %s, record size %u, align "
				       "%u, offset %u)",
			       bad,
			       bw_layout_name(g->layout)
				       ? bw_layout_name(g->layout)
				       : "?",
			       g->rec_size, g->rec_align, g->rec_align_off);
	return 0;
}

/* A dynamic ring: a lossless or SRP byte or record ring, owned by this
 * process. */
static int dyn_opts(const struct bw_ring_opts *o, struct bwi_geom *g)
{
	if (!(g->flags & BW_RING_DYNAMIC))
		return 0;
	if (o->max_writers > 1)
		return bwi_err(EINVAL, "a dynamic ring takes one writer, which "
				       "alone links and frees its containers");
	g->max_writers = 1;
	if (g->flags & (BW_RING_INDEX | BW_RING_HUGEPAGE))
		return bwi_err(EINVAL, "a dynamic ring allocates its data on "
				       "the heap: it cannot be an IBuf or use "
				       "huge pages");
	if (g->policy == BW_POLICY_MRP || g->policy == BW_POLICY_FRP)
		return bwi_err(EINVAL, "a dynamic ring frees what its readers "
				       "passed, so no reader may be overtaken: "
				       "lossless or srp only");
	g->owner_pid = (uint32_t)bwi_self_pid();
	g->owner_start = bwi_self_starttime();
	return 0;
}

#define BWI_SCALE_MIN_DEFAULT (64u << 10)

static unsigned log2u(uint64_t v)
{
	return 63u - (unsigned)__builtin_clzll(v);
}

/* What is wrong with a self-scaling control segment's options, or NULL. */
static const char *scale_bad(const struct bwi_geom *g)
{
	unsigned init = g->scale_shifts & 0xff, lo = (g->scale_shifts >> 8) & 0xff,
		 hi = (g->scale_shifts >> 16) & 0xff;

	if (!g->scale)
		return g->scale_shifts ? "scale sizes without scaling" : NULL;
	if (g->scale > BW_SCALE_DECKCUT)
		return "unknown scaling (realloc or deckcut)";
	if (lo < 12 || lo > init || init > hi || (1ull << hi) > BWI_MAX_CAPACITY)
		return "scale sizes must be powers of two with 4096 <= least "
		       "<= size <= largest";
	if (g->flags & BWI_GF_PUBLIC)
		return "a self-scaling ring cannot be an IBuf, dynamic, or use "
		       "huge pages";
	if (g->policy == BW_POLICY_MRP || g->policy == BW_POLICY_FRP)
		return "a self-scaling ring keeps its readers' places when it "
		       "resizes: lossless or srp only";
	if (g->max_writers != 1)
		return "a self-scaling ring has one writer: the producer "
		       "resizes it as it wraps";
	if (g->capacity != BWI_MIN_CAPACITY)
		return "bad control segment size";
	return NULL;
}

/* Self-scaling options into g: the control segment keeps the smallest
 * capacity (it holds no data) and the sizes as shifts. */
static int scale_opts(const struct bw_ring_opts *o, struct bwi_geom *g)
{
	uint64_t size = g->capacity, lo, hi;
	const char *bad;

	if (o->struct_size < offsetof(struct bw_ring_opts, scale_max) +
				     sizeof(o->scale_max) ||
	    !o->scale)
		return 0;
	/* the default least size is at most the size; one asked for is
	 * checked as asked (not clamped: a wrong one is refused) */
	lo = o->scale_min ? o->scale_min : BWI_SCALE_MIN_DEFAULT;
	if (!o->scale_min && lo > size)
		lo = size;
	hi = o->scale_max ? o->scale_max
	     : o->scale == BW_SCALE_REALLOC
		     ? (size * 4 < BWI_MAX_CAPACITY ? size * 4 : BWI_MAX_CAPACITY)
		     : size;
	if (!is_pow2(lo) || !is_pow2(hi) || lo < 4096 || lo > size ||
	    hi < size)
		return bwi_err(EINVAL, "scale sizes %llu to %llu around %llu: "
				       "powers of two with 4096 <= least <= "
				       "size <= largest",
			       (unsigned long long)lo, (unsigned long long)hi,
			       (unsigned long long)size);
	g->scale = o->scale;
	g->scale_shifts = log2u(size) | log2u(lo) << 8 | log2u(hi) << 16;
	if (o->max_writers > 1)
		return bwi_err(EINVAL, "a self-scaling ring has one writer: the "
				       "producer resizes it as it wraps");
	g->max_writers = 1;
	g->capacity = BWI_MIN_CAPACITY;
	bad = scale_bad(g);
	return bad ? bwi_err(EINVAL, "%s", bad) : 0;
}

static int opts_check(const struct bw_ring_opts *o, struct bwi_geom *g)
{
	struct bw_ring_opts d = BW_RING_OPTS_INIT;
	int r;

	if (o && o->struct_size < offsetof(struct bw_ring_opts, policy))
		return bwi_err(EINVAL, "bw_ring_opts.struct_size is %u: set it "
				       "with BW_RING_OPTS_INIT",
			       o->struct_size);
	if (!o)
		o = &d;
	if (o->flags & ~(uint32_t)(BW_RING_HUGEPAGE | BW_RING_INDEX |
				   BW_RING_DYNAMIC))
		return bwi_err(EINVAL, "unknown ring flags 0x%x", o->flags);
	memset(g, 0, sizeof(*g));
	g->magic = BWI_RING_MAGIC;
	g->version = BWI_RING_VERSION;
	g->flags = o->flags;
	g->layout = (o->flags & BW_RING_INDEX) ? BWI_LAYOUT_INDEX
					       : BWI_LAYOUT_BYTES;
	g->page_size = (o->flags & BW_RING_HUGEPAGE) ? BWI_HUGE_PAGE : 4096u;
	g->capacity = o->size ? o->size : BW_RING_DEFAULT_SIZE;
	if (!is_pow2(g->capacity) || g->capacity < BWI_MIN_CAPACITY ||
	    g->capacity > BWI_MAX_CAPACITY)
		return bwi_err(EINVAL,
			       "ring size %llu: must be a power of two from "
			       "4096 to %llu",
			       (unsigned long long)g->capacity,
			       (unsigned long long)BWI_MAX_CAPACITY);
	if (g->capacity < g->page_size)
		return bwi_err(EINVAL, "a huge-page ring needs a size of at "
				       "least 2 MiB");
	g->max_readers = o->max_readers ? o->max_readers : BWI_DEFAULT_READERS;
	g->max_writers = o->max_writers ? o->max_writers : 16;
	if (g->max_readers > BWI_MAX_READERS || g->max_writers > BWI_MAX_WRITERS)
		return bwi_err(EINVAL, "at most %u readers and %u writers",
			       BWI_MAX_READERS, BWI_MAX_WRITERS);
	if (o->struct_size >= offsetof(struct bw_ring_opts, policy) +
				      sizeof(o->policy))
		g->policy = o->policy;
	if (g->policy > BW_POLICY_FRP)
		return bwi_err(EINVAL, "unknown ring policy %u (lossless, srp, "
				       "mrp or frp)",
			       g->policy);
	if (o->struct_size >= offsetof(struct bw_ring_opts, writer_timeout_ms) +
				      sizeof(o->writer_timeout_ms))
		g->writer_timeout_ms = o->writer_timeout_ms;
	if (g->writer_timeout_ms > BWI_MAX_WRITER_TIMEOUT_MS)
		return bwi_err(EINVAL, "writer timeout %u ms: at most %u (a day)",
			       g->writer_timeout_ms, BWI_MAX_WRITER_TIMEOUT_MS);
	if (o->struct_size >= offsetof(struct bw_ring_opts, wake_usec) +
				      sizeof(o->wake_usec)) {
		g->wake_batch = o->wake_batch > 1 ? o->wake_batch : 0;
		g->wake_usec = g->wake_batch ? o->wake_usec : 0;
		if (g->wake_batch && !g->wake_usec)
			g->wake_usec = BWI_DEFAULT_WAKE_USEC;
	}
	if (g->wake_batch > BWI_MAX_WAKE_BATCH ||
	    g->wake_usec > BWI_MAX_WAKE_USEC)
		return bwi_err(EINVAL, "wake batch %u, timer %u us: at most %u "
				       "writes and %u us",
			       g->wake_batch, g->wake_usec, BWI_MAX_WAKE_BATCH,
			       BWI_MAX_WAKE_USEC);
	if (g->policy != BW_POLICY_LOSSLESS && g->layout == BWI_LAYOUT_INDEX)
		return bwi_err(EINVAL, "an IBuf is lossless only: its readers "
				       "keep the blocks they point at");
	/* scaling first: a self-scaling ring's records fit its least size */
	r = scale_opts(o, g);
	if (r < 0)
		return r;
	r = rec_opts(o, g);
	if (r < 0)
		return r;
	r = dyn_opts(o, g);
	if (r < 0)
		return r;
	g->hdr_size = (uint32_t)hdr_bytes(g);
	g->ring_id = bwi_random64();
	g->created_ns = bwi_now_ns();
	g->sum = bwi_geom_sum(g);
	return 0;
}

/* Checks a geometry read from a segment of file_size bytes. */
static int geom_check(const struct bwi_geom *g, uint64_t file_size,
		      const char *what)
{
	if (g->magic != BWI_RING_MAGIC)
		return bwi_err(EBADMSG, "%s is not a beltway ring (bad magic)",
			       what);
	if (g->version != BWI_RING_VERSION)
		return bwi_err(EBADMSG, "%s has layout version %u; this library "
				       "reads version %u",
			       what, g->version, BWI_RING_VERSION);
	if (g->sum != bwi_geom_sum(g))
		return bwi_err(EBADMSG, "%s: header checksum mismatch "
				       "(corrupted header)",
			       what);
	if (g->page_size != 4096u && g->page_size != BWI_HUGE_PAGE)
		return bwi_err(EBADMSG, "%s: bad page size", what);
	if (!is_pow2(g->capacity) || g->capacity < g->page_size ||
	    g->capacity > BWI_MAX_CAPACITY)
		return bwi_err(EBADMSG, "%s: bad capacity", what);
	if (!g->max_readers || g->max_readers > BWI_MAX_READERS ||
	    !g->max_writers || g->max_writers > BWI_MAX_WRITERS ||
	    g->hdr_size != hdr_bytes(g))
		return bwi_err(EBADMSG, "%s: bad slot table", what);
	if (g->writer_timeout_ms > BWI_MAX_WRITER_TIMEOUT_MS ||
	    g->wake_batch > BWI_MAX_WAKE_BATCH ||
	    g->wake_usec > BWI_MAX_WAKE_USEC ||
	    (g->wake_batch && (g->wake_batch < 2 || !g->wake_usec)))
		return bwi_err(EBADMSG, "%s: bad writer timeout or wake "
					"batching",
			       what);
	if (bwi_rec_bad(g))
		return bwi_err(EBADMSG, "%s: bad record layout: %s", what,
			       bwi_rec_bad(g));
	if (g->layout > BWI_LAYOUT_DR || g->policy > BW_POLICY_FRP ||
	    (g->layout == BWI_LAYOUT_INDEX) != !!(g->flags & BW_RING_INDEX) ||
	    (g->layout == BWI_LAYOUT_INDEX && g->policy != BW_POLICY_LOSSLESS))
		return bwi_err(EBADMSG, "%s: unknown layout or policy", what);
	if (!(g->flags & BW_RING_DYNAMIC) != !g->owner_pid ||
	    ((g->flags & BW_RING_DYNAMIC) &&
	     (g->flags & (BW_RING_INDEX | BW_RING_HUGEPAGE) ||
	      g->policy == BW_POLICY_MRP || g->policy == BW_POLICY_FRP)))
		return bwi_err(EBADMSG, "%s: bad dynamic ring owner or options",
			       what);
	if (scale_bad(g) || (g->flags & ~(BWI_GF_PUBLIC | BWI_GF_EPOCH |
					   BWI_GF_DECK)) ||
	    ((g->flags & BWI_GF_DECK) && !(g->flags & BWI_GF_EPOCH)))
		return bwi_err(EBADMSG, "%s: bad scaling options: %s", what,
			       scale_bad(g) ? scale_bad(g) : "flags");
	if (file_size != bwi_seg_bytes(g))
		return bwi_err(EBADMSG, "%s is %llu bytes; its header says %llu "
				       "(truncated segment)",
			       what, (unsigned long long)file_size,
			       (unsigned long long)bwi_seg_bytes(g));
	return 0;
}

/* .ID@deck, the data of the deck-cut ring whose region m (.ID@K) is,
 * checked to hold cap bytes. Returns the descriptor. */
static int deck_open(const struct bwi_map *m, size_t cap)
{
	char deck[BWI_NAME_MAX + 1];
	const char *at = strchr(m->name, '@');
	struct stat st;
	int dfd, fd;

	if (!at || at - m->name != PART_ID_LEN)
		return bwi_err(EBADMSG, "deck-cut region without a part name");
	snprintf(deck, sizeof(deck), "%.*s@deck", PART_ID_LEN, m->name);
	dfd = dir_open(false);
	if (dfd < 0)
		return dfd;
	fd = openat(dfd, deck, (m->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC |
				       O_NONBLOCK);
	close(dfd);
	if (fd < 0)
		return bwi_err(errno, "deck-cut ring data '%s'", deck);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size < cap) {
		close(fd);
		return bwi_err(EBADMSG, "deck-cut ring data '%s' is not a "
					"file of %zu bytes",
			       deck, cap);
	}
	return fd;
}

/* Maps header and data, the data twice. Uses only the validated copy m->g. */
static int map_segment(int fd, struct bwi_map *m)
{
	int prot = PROT_READ | (m->writable ? PROT_WRITE : 0);
	size_t hs = m->g.hdr_size, cap = (size_t)m->g.capacity;
	size_t align = m->g.page_size, len = hs + 2 * cap;
	uint8_t *res, *base;
	off_t doff = (off_t)hs;
	int dfd = fd, pop = MAP_POPULATE;

	res = mmap(NULL, len + align, PROT_NONE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (res == MAP_FAILED)
		return bwi_err(errno, "reserving %zu bytes of address space",
			       len);
	base = (uint8_t *)(((uintptr_t)res + align - 1) & ~(uintptr_t)(align - 1));
	if (base > res)
		munmap(res, (size_t)(base - res));
	munmap(base + len, (size_t)(res + align - base));
	/* A deck-cut region's data is the first cap bytes of NAME@deck. */
	if (m->g.flags & BWI_GF_DECK) {
		dfd = deck_open(m, cap);
		if (dfd < 0) {
			munmap(base, len);
			return dfd;
		}
		doff = 0;
	}
	/* MAP_POPULATE: fault the ring in now, not in the data path; but not
	 * a deck-cut region's, whose pages the deck shares with every size
	 * (mapping an old, larger region would bring back pages given to the
	 * kernel). A dynamic ring's data lives elsewhere: its data range stays
	 * reserved and inaccessible, so a stray access faults at once. */
	if (m->g.flags & BWI_GF_DECK)
		pop = 0;
	if (mmap(base, hs, prot, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED ||
	    (!(m->g.flags & BW_RING_DYNAMIC) &&
	     (mmap(base + hs, cap, prot, MAP_SHARED | MAP_FIXED | pop, dfd,
		   doff) == MAP_FAILED ||
	      mmap(base + hs + cap, cap, prot, MAP_SHARED | MAP_FIXED | pop,
		   dfd, doff) == MAP_FAILED))) {
		int e = errno;

		munmap(base, len);
		if (dfd != fd)
			close(dfd);
		return bwi_err(e, "mapping ring segment");
	}
	if (dfd != fd)
		close(dfd);
	m->hdr = (struct bwi_hdr *)base;
	m->data = base + hs;
	m->mask = m->g.capacity - 1;
	m->map_len = len;
	return 0;
}

/* Reads the geometry once with pread (not through a mapping, so a short file
 * cannot fault), validates it, then maps. */
static int map_fd(int fd, struct bwi_map *m, const char *what)
{
	struct stat st;
	ssize_t n;
	int r;

	if (fstat(fd, &st) < 0)
		return bwi_err(errno, "%s: fstat", what);
	if (!S_ISREG(st.st_mode))
		return bwi_err(EBADMSG, "%s is not a regular file", what);
	n = pread(fd, &m->g, sizeof(m->g), 0);
	if (n < 0)
		return bwi_err(errno, "%s: reading header", what);
	if ((size_t)n < sizeof(m->g))
		return bwi_err(EBADMSG, "%s is %lld bytes: truncated segment",
			       what, (long long)st.st_size);
	r = geom_check(&m->g, (uint64_t)st.st_size, what);
	if (r < 0)
		return r;
	return map_segment(fd, m);
}

/* ---- the per-process map cache ----------------------------------------- */

static pthread_mutex_t maps_mu = PTHREAD_MUTEX_INITIALIZER;
_Atomic uint64_t bwi_map_epoch; /* bumped whenever a mapping is freed */
_Atomic uint64_t bwi_map_adds;	/* bumped whenever a mapping is added */
static struct bwi_map *maps; /* rings mapped by this process */

void bwi_maps_lock(void)
{
	pthread_mutex_lock(&maps_mu);
}

void bwi_maps_unlock(void)
{
	pthread_mutex_unlock(&maps_mu);
}

/* In a fork() child, after bwi_maps_lock() in the parent's prepare. */
void bwi_maps_child(void)
{
	pthread_mutex_init(&maps_mu, NULL);
}

void bwi_map_get(struct bwi_map *m)
{
	bwi_maps_lock();
	m->refs++;
	bwi_maps_unlock();
}

void bwi_map_put(struct bwi_map *m)
{
	struct bwi_map **pp;

	if (!m)
		return;
	bwi_maps_lock();
	if (--m->refs > 0) {
		bwi_maps_unlock();
		return;
	}
	for (pp = &maps; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	/* Mapping pointers kept without a reference are now suspect. */
	atomic_fetch_add_explicit(&bwi_map_epoch, 1, memory_order_release);
	bwi_maps_unlock();
	bwi_ring_unmap(m);
	free(m);
}

/* Opens the named ring as acc allows; the fd, whether it is writable. */
static int open_named(const char *name, enum bwi_access acc, bool *writable)
{
	int dfd, fd;

	dfd = dir_open(false);
	if (dfd < 0)
		return dfd == -ENOENT ? bwi_err(ENOENT, "no ring '%s'", name) : dfd;
	/* O_NONBLOCK: a name planted as a FIFO must not hang the open. */
	fd = -1;
	errno = EACCES;
	if (acc != BWI_ACC_RO)
		fd = openat(dfd, name, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	*writable = fd >= 0;
	if (fd < 0 && errno == EACCES && acc != BWI_ACC_RW)
		fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	close(dfd);
	if (fd >= 0)
		return fd;
	if (errno == ENOENT)
		return bwi_err(ENOENT, "no ring '%s' in %s", name, bw_ring_dir());
	if (errno == EACCES)
		return bwi_err(EACCES, "ring '%s': permission denied for %s",
			       name, acc == BWI_ACC_RW ? "writing" : "reading");
	return bwi_err(errno, "opening ring '%s'", name);
}

/* Maps the ring open as fd (this function closes it), or shares this
 * process's mapping of the same file. A read-only request may share a
 * writable mapping; a writable one never shares a read-only mapping. name
 * is the ring's name, or NULL for an anonymous ring. */
static int map_shared(int fd, bool writable, bool ro_ok, const char *name,
		      struct bwi_map **out)
{
	char what[BWI_NAME_MAX + 16];
	struct bwi_map *m;
	struct stat st;
	int r;

	if (fstat(fd, &st) < 0) {
		r = bwi_err(errno, "ring '%s': fstat", name ? name : "(anonymous)");
		close(fd);
		return r;
	}
	bwi_maps_lock();
	for (m = maps; m; m = m->next)
		if (m->dev == st.st_dev && m->ino == st.st_ino &&
		    (m->writable == writable || ro_ok)) {
			m->refs++;
			bwi_maps_unlock();
			close(fd);
			*out = m;
			return 0;
		}
	m = calloc(1, sizeof(*m));
	if (!m) {
		bwi_maps_unlock();
		close(fd);
		return bwi_err(ENOMEM, "allocating a ring mapping");
	}
	m->fd = -1;
	m->writable = writable;
	m->anon = !name;
	snprintf(m->name, sizeof(m->name), "%s", name ? name : "");
	snprintf(what, sizeof(what), "ring '%s'", name ? name : "(anonymous)");
	r = map_fd(fd, m, what);
	if (r < 0) {
		bwi_maps_unlock();
		close(fd);
		free(m);
		return r;
	}
	if (name)
		close(fd);
	else
		m->fd = fd; /* anonymous rings keep theirs: it is how others
			     * reach them (/proc/PID/fd/FD) */
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	m->refs = 1;
	m->next = maps;
	maps = m;
	atomic_fetch_add_explicit(&bwi_map_adds, 1, memory_order_release);
	bwi_maps_unlock();
	*out = m;
	return 0;
}

int bwi_map_open(const char *name, enum bwi_access acc, struct bwi_map **out)
{
	bool writable;
	int fd, r;

	r = name_or_part(name);
	if (r < 0)
		return r;
	fd = open_named(name, acc, &writable);
	if (fd < 0)
		return fd;
	return map_shared(fd, writable, acc == BWI_ACC_RO, name, out);
}

/* An anonymous ring reached through a descriptor (takes fd). */
int bwi_map_open_fd(int fd, bool writable, const char *name,
		    struct bwi_map **out)
{
	return map_shared(fd, writable, !writable, name, out);
}

/* The mapping whose data holds p, pinned (never unmapped: indices may name
 * it), or NULL. */
struct bwi_map *bwi_map_pin_at(const void *p)
{
	const uint8_t *c = p;
	struct bwi_map *m;

	bwi_maps_lock();
	for (m = maps; m; m = m->next)
		if (c >= m->data && c < m->data + 2 * m->g.capacity)
			break;
	if (m && !m->pinned) {
		m->pinned = true;
		m->refs++;
	}
	bwi_maps_unlock();
	return m;
}

/* This process's mapping of the ring with ring_id, with a reference, or
 * NULL. */
struct bwi_map *bwi_map_find_ring(uint64_t ring_id)
{
	struct bwi_map *m;

	bwi_maps_lock();
	for (m = maps; m; m = m->next)
		if (m->g.ring_id == ring_id) {
			m->refs++;
			break;
		}
	bwi_maps_unlock();
	return m;
}

void bwi_map_pin(struct bwi_map *m)
{
	bwi_maps_lock();
	if (!m->pinned) {
		m->pinned = true;
		m->refs++;
	}
	bwi_maps_unlock();
}

void bwi_ring_unmap(struct bwi_map *m)
{
	bwi_dyn_free(m);
	if (m->hdr)
		munmap(m->hdr, m->map_len);
	if (m->fd >= 0)
		close(m->fd);
	m->hdr = NULL;
	m->fd = -1;
}

static void hdr_init(struct bwi_map *m)
{
	memset(m->hdr, 0, m->g.hdr_size);
	memcpy(&m->hdr->g, &m->g, sizeof(m->g));
	/* A region of a self-scaling ring continues the stream at its
	 * start: nothing below it was ever here. */
	bw_store_relaxed(&m->hdr->prod.head, m->start_pos);
	bw_store_relaxed(&m->hdr->prod.tail, m->start_pos);
	bw_store_relaxed(&m->hdr->ctl.scar, m->start_pos);
	if (m->g.scale) {
		struct bwi_epoch *e = &bwi_scale_area(m)->ev[0];

		bw_store_relaxed(&e->end, BWI_NO_POS);
		bw_store_relaxed(&e->shift, m->g.scale_shifts & 0xff);
	}
}

/* Where huge-page rings live: the first hugetlbfs mount with 2 MiB pages. */
static int huge_dir(char *out, size_t len)
{
	char dev[256], mnt[1024], type[64], opt[512];
	FILE *f = fopen("/proc/mounts", "re");
	int found = 0;

	if (!f)
		return 0;
	while (fscanf(f, "%255s %1023s %63s %511s %*d %*d", dev, mnt, type,
		      opt) == 4) {
		if (strcmp(type, "hugetlbfs") == 0 &&
		    (!strstr(opt, "pagesize=") || strstr(opt, "pagesize=2M"))) {
			snprintf(out, len, "%s/beltway", mnt);
			found = 1;
			break;
		}
	}
	fclose(f);
	if (found && mkdir(out, 01777) == 0)
		chmod(out, 01777);
	return found;
}

/* The file of huge-page ring name, of ring id id, in huge_dir() hd. */
static void huge_path(char *out, size_t len, const char *hd, const char *name,
		      uint64_t id)
{
	snprintf(out, len, "%s/%s.%llx", hd, name, (unsigned long long)id);
}

static int create_anon(struct bwi_map *m)
{
	unsigned fl = MFD_CLOEXEC | MFD_ALLOW_SEALING;
	uint64_t size = bwi_seg_bytes(&m->g);
	int fd, r;

	if (m->g.flags & BW_RING_HUGEPAGE)
		fl |= MFD_HUGETLB | MFD_HUGE_2MB;
	fd = memfd_create("beltway", fl);
	if (fd < 0)
		return bwi_err(errno, "memfd_create%s",
			       (fl & MFD_HUGETLB) ? " with huge pages" : "");
	if (ftruncate(fd, (off_t)size) < 0) {
		r = bwi_err(errno, "sizing anonymous ring to %llu bytes%s",
			    (unsigned long long)size,
			    (fl & MFD_HUGETLB) ? " (are huge pages reserved?)"
					       : "");
		goto err;
	}
	/* Sealed: no process can shrink the segment under our mappings. */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		r = bwi_err(errno, "sealing anonymous ring");
		goto err;
	}
	r = map_segment(fd, m);
	if (r < 0)
		goto err;
	m->fd = fd;
	m->anon = true;
	hdr_init(m);
	return 0;
err:
	close(fd);
	return r;
}

/* Builds the segment in fd (sized, header written) and maps it. */
static int build(int fd, struct bwi_map *m, mode_t mode)
{
	uint64_t size = bwi_seg_bytes(&m->g);

	if (fchmod(fd, mode) < 0)
		return bwi_err(errno, "setting mode %o", (unsigned)mode);
	if (ftruncate(fd, (off_t)size) < 0)
		return bwi_err(errno, "sizing ring to %llu bytes%s",
			       (unsigned long long)size,
			       (m->g.flags & BW_RING_HUGEPAGE)
				       ? " (are huge pages reserved?)"
				       : "");
	int r = map_segment(fd, m);

	if (r < 0)
		return r;
	hdr_init(m);
	return 0;
}

static int link_fd(int fd, int dfd, const char *name)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	return linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW);
}

static int create_named(const char *name, mode_t mode, struct bwi_map *m)
{
	char tmp[96];
	struct stat st;
	int dfd, fd, r;

	dfd = dir_open(true);
	if (dfd < 0)
		return dfd;
	fd = openat(dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0) {
		r = build(fd, m, mode);
		if (r == 0 && link_fd(fd, dfd, name) < 0)
			r = -errno;
	} else {
		/* No O_TMPFILE: build under a hidden name, then link. */
		snprintf(tmp, sizeof(tmp), ".new.%d.%llx", (int)getpid(),
			 (unsigned long long)bwi_random64());
		fd = openat(dfd, tmp, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC,
			    0600);
		if (fd < 0) {
			r = bwi_err(errno, "creating ring in %s", bw_ring_dir());
			close(dfd);
			return r;
		}
		r = build(fd, m, mode);
		if (r == 0 && linkat(dfd, tmp, dfd, name, 0) < 0)
			r = -errno;
		unlinkat(dfd, tmp, 0);
	}
	if (r == 0 && fstat(fd, &st) == 0) { /* the file, as map_shared's */
		m->dev = st.st_dev;
		m->ino = st.st_ino;
	}
	close(fd);
	close(dfd);
	if (r == -EEXIST)
		r = bwi_err(EEXIST, "ring '%s' exists", name);
	else if (r < 0)
		r = bwi_err(-r, "creating ring '%s'", name);
	return r;
}

/* Huge-page named ring: a file on hugetlbfs, named by a symlink. */
static int create_huge(const char *name, mode_t mode, struct bwi_map *m)
{
	char hd[PATH_MAX], path[PATH_MAX + 96];
	int fd, dfd, r;

	if (!huge_dir(hd, sizeof(hd)))
		return bwi_err(ENOTSUP, "no hugetlbfs mount with 2 MiB pages "
					"for ring '%s'",
			       name);
	huge_path(path, sizeof(path), hd, name, m->g.ring_id);
	fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return bwi_err(errno, "creating %s", path);
	r = build(fd, m, mode);
	close(fd);
	if (r == 0) {
		dfd = dir_open(true);
		if (dfd < 0) {
			r = dfd;
		} else {
			if (symlinkat(path, dfd, name) < 0)
				r = errno == EEXIST
					    ? bwi_err(EEXIST, "ring '%s' exists",
						      name)
					    : bwi_err(errno, "naming ring '%s'",
						      name);
			close(dfd);
		}
	} else {
		r = bwi_err(-r, "creating huge-page ring '%s'", name);
	}
	if (r < 0) {
		if (m->hdr)
			bwi_ring_unmap(m);
		unlink(path);
	}
	return r;
}

/* Creates and maps a ring; anonymous when name is NULL. */
int bwi_ring_create(const char *name, const struct bw_ring_opts *opts,
		    struct bwi_map *m)
{
	mode_t mode;
	int r;

	memset(m, 0, sizeof(*m));
	m->fd = -1;
	m->writable = true;
	if (name) {
		r = name_or_part(name);
		if (r < 0)
			return r;
		snprintf(m->name, sizeof(m->name), "%s", name);
	}
	r = opts_check(opts, &m->g);
	if (r < 0)
		return r;
	if (!name && m->g.scale)
		return bwi_err(EINVAL, "a self-scaling ring must be named: its "
				       "regions are files in the ring directory");
	mode = opts && opts->mode ? (mode_t)opts->mode : 0600;
	if (mode & ~(mode_t)0777)
		return bwi_err(EINVAL, "mode %o: only permission bits (0777)",
			       (unsigned)mode);
	if (!name)
		return create_anon(m);
	r = (m->g.flags & BW_RING_HUGEPAGE) ? create_huge(name, mode, m)
					    : create_named(name, mode, m);
	if (r < 0 && m->hdr)
		bwi_ring_unmap(m);
	return r;
}

/* A new anonymous ring, mapped, with one reference, in the map cache. */
int bwi_map_anon(const struct bw_ring_opts *opts, struct bwi_map **out)
{
	struct bwi_map *m = calloc(1, sizeof(*m));
	struct stat st;
	int r;

	if (!m)
		return bwi_err(ENOMEM, "allocating a ring mapping");
	r = bwi_ring_create(NULL, opts, m);
	if (r < 0) {
		free(m);
		return r;
	}
	if (fstat(m->fd, &st) == 0) {
		m->dev = st.st_dev;
		m->ino = st.st_ino;
	}
	m->refs = 1;
	bwi_maps_lock();
	m->next = maps;
	maps = m;
	atomic_fetch_add_explicit(&bwi_map_adds, 1, memory_order_release);
	bwi_maps_unlock();
	*out = m;
	return 0;
}

/* The options of an IBuf's default DBuf: a byte ring at least as large as
 * the default, with the IBuf's permissions. */
void bwi_wt_opts(const struct bw_ring_opts *ib, uint64_t cap,
		 struct bw_ring_opts *o)
{
	*o = (struct bw_ring_opts)BW_RING_OPTS_INIT;
	o->mode = ib ? ib->mode : 0;
	o->size = cap > BW_RING_DEFAULT_SIZE ? cap : BW_RING_DEFAULT_SIZE;
}

BW_API int bw_mkfifo(const char *name, const struct bw_ring_opts *opts)
{
	struct bw_ring_opts wo;
	char wt[BWI_NAME_MAX + 8];
	struct bwi_map m;
	int r;

	if (!name)
		return bwi_err(EINVAL, "bw_mkfifo needs a name");
	if (opts && (opts->flags & BW_RING_INDEX) &&
	    strlen(name) > BWI_NAME_MAX - 3)
		return bwi_err(EINVAL, "IBuf name '%.64s' is longer than %d "
				       "(its DBuf is named NAME.wt)",
			       name, BWI_NAME_MAX - 3);
	r = bwi_name_check(name);
	if (r < 0)
		return r;
	orphans_sweep();
	r = bwi_ring_create(name, opts, &m);
	if (r < 0)
		return r;
	if (m.g.scale) {
		r = scale_create(name, &m);
		bwi_ring_unmap(&m);
		if (r < 0) {
			int e = r;

			unlink_parts(m.g.ring_id);
			unlink_one(name, NULL);
			return bwi_err(-e, "creating self-scaling ring '%s': %s",
				       name, bw_strerror_last());
		}
		return 0;
	}
	bwi_ring_unmap(&m);
	if (!(m.g.flags & BW_RING_INDEX))
		return 0;
	/* An IBuf's default DBuf, for what is written through. */
	snprintf(wt, sizeof(wt), "%s.wt", name);
	bwi_wt_opts(opts, m.g.capacity, &wo);
	r = bwi_ring_create(wt, &wo, &m);
	if (r < 0) {
		int e = r;

		unlink_one(name, NULL);
		return bwi_err(-e, "creating IBuf '%s': its DBuf '%s'", name, wt);
	}
	bwi_ring_unmap(&m);
	return 0;
}

/* The geometry at the start of the file name in directory dfd: 1 when it
 * is a ring's, 0 for a whole header that is no ring's, -1 when the file
 * cannot be opened or is shorter than a header. */
static int geom_read_at(int dfd, const char *name, struct bwi_geom *g)
{
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	ssize_t k;

	if (fd < 0)
		return -1;
	k = pread(fd, g, sizeof(*g), 0);
	close(fd);
	if (k != (ssize_t)sizeof(*g))
		return -1;
	return g->magic == BWI_RING_MAGIC && g->sum == bwi_geom_sum(g);
}

/* The ring's indices go stale with it: retires the ring named name in the
 * registry; returns its layout, with its geometry in *g, or -1 when the
 * file is not a ring. */
static int retire_named(int dfd, const char *name, struct bwi_geom *g)
{
	if (geom_read_at(dfd, name, g) != 1)
		return -1;
	bwi_reg_retire(g->ring_id);
	return (int)g->layout;
}

/* Removes name from the ring directory; returns the layout of the ring it
 * named (BWI_LAYOUT_BYTES for a file that was no ring), or -errno. The
 * ring's geometry goes to *out if given (zeroed when it was no ring). */
static int unlink_one(const char *name, struct bwi_geom *out)
{
	char target[PATH_MAX], hd[PATH_MAX], want[PATH_MAX + 96];
	struct bwi_geom g, dummy;
	ssize_t n;
	int dfd, r, lay;

	if (!out)
		out = &dummy;
	memset(out, 0, sizeof(*out));
	dfd = dir_open(false);
	if (dfd < 0)
		return dfd;
	lay = retire_named(dfd, name, &g);
	if (lay >= 0)
		*out = g;
	n = readlinkat(dfd, name, target, sizeof(target) - 1);
	r = unlinkat(dfd, name, 0) < 0 ? -errno : 0;
	close(dfd);
	/* A huge-page ring's file on hugetlbfs goes with its link
	 * (create_huge). No other link is followed: anyone may put one in
	 * the directory, pointing anywhere. */
	if (r == 0 && n > 0 && lay >= 0 && (g.flags & BW_RING_HUGEPAGE) &&
	    huge_dir(hd, sizeof(hd))) {
		target[n] = '\0';
		huge_path(want, sizeof(want), hd, name, g.ring_id);
		if (strcmp(target, want) == 0)
			unlink(target);
	}
	return r < 0 ? r : lay < 0 ? BWI_LAYOUT_BYTES : lay;
}

/* The ring directory, open for a look at the parts of the self-scaling
 * ring ring_id, whose names start with pre (.ID@); NULL when it cannot be
 * read. */
static DIR *parts_open(uint64_t ring_id, char pre[BWI_NAME_MAX + 1])
{
	int dfd = dir_open(false);
	DIR *d;

	if (dfd < 0)
		return NULL;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return NULL;
	}
	snprintf(pre, BWI_NAME_MAX + 1, ".%016llx@",
		 (unsigned long long)ring_id);
	return d;
}

/* Removes the parts .ID@* of the self-scaling ring ring_id (any left). */
static void unlink_parts(uint64_t ring_id)
{
	char pre[BWI_NAME_MAX + 1];
	struct dirent *de;
	DIR *d = parts_open(ring_id, pre);

	if (!d)
		return;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, pre, PART_ID_LEN + 1) &&
		    name_or_part(de->d_name) == 0)
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

/* Whether part name (.ID@K) is a region nothing uses: no slot (reader,
 * kept for one, or writer), once the dead are reaped. */
static bool part_unused(const char *name)
{
	struct bwi_map *m;
	bool unused;

	if (bwi_map_open(name, BWI_ACC_RW, &m) < 0)
		return false; /* not ours to judge (EACCES), or gone */
	bwi_reap(m);
	unused = !bwi_slot_count(m, BWI_READER) &&
		 !bwi_slot_count(m, BWI_WRITER);
	bwi_map_put(m);
	return unused;
}

/*
 * Removes the parts of the self-scaling ring ring_id that nothing uses any
 * more: regions up to epoch last (a later one is being made: its writer
 * attaches before it publishes it, resize step 3), and the deck once no
 * region is left. A ring removed while handles are attached keeps the
 * parts they use (bw_unlink), and every handle of it that closes sweeps
 * again (sc_detach), so the last one leaves nothing behind.
 */
void bwi_parts_sweep(uint64_t ring_id, uint64_t last)
{
	char pre[BWI_NAME_MAX + 1], deck[BWI_NAME_MAX + 1];
	unsigned left = 0;
	struct dirent *de;
	DIR *d = parts_open(ring_id, pre);

	if (!d)
		return;
	bwi_part_name(deck, sizeof(deck), ring_id, UINT64_MAX);
	while ((de = readdir(d))) {
		const char *k = de->d_name + PART_ID_LEN + 1;

		if (strncmp(de->d_name, pre, PART_ID_LEN + 1) ||
		    name_or_part(de->d_name) < 0 || !strcmp(de->d_name, deck))
			continue;
		if (strtoull(k, NULL, 10) <= last && part_unused(de->d_name))
			unlink_one(de->d_name, NULL);
		else
			left++;
	}
	closedir(d);
	if (!left)
		bwi_part_unlink(ring_id, UINT64_MAX);
}

#define ORPHANS_MAX 64 /* rings looked at per sweep; the rest, later */

/* Whether every region of the self-scaling ring ring_id is unused: no
 * process (alive) is in any of them. A live handle always holds a slot in
 * some region: a writer keeps the old one until it is in the new (resize
 * step 3), a reader opens the next before it leaves. */
static bool parts_all_unused(uint64_t ring_id)
{
	char pre[BWI_NAME_MAX + 1];
	struct dirent *de;
	bool unused = true;
	DIR *d = parts_open(ring_id, pre);

	if (!d)
		return false;
	while (unused && (de = readdir(d)))
		if (!strncmp(de->d_name, pre, PART_ID_LEN + 1) &&
		    name_or_part(de->d_name) == 0 &&
		    strcmp(de->d_name + PART_ID_LEN + 1, "deck") != 0)
			unused = part_unused(de->d_name);
	closedir(d);
	return unused;
}

/* Whether id is among ids[0..n). */
static bool id_in(const uint64_t *ids, unsigned n, uint64_t id)
{
	for (unsigned i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/*
 * Removes the parts of self-scaling rings that were removed while attached
 * and whose last process died: its closing handle would have swept them
 * (sc_detach), and nothing else names them. A ring's parts are orphans
 * when no ring in the directory has its id and no live process is in any
 * of its regions. Called as rings are made and removed.
 */
static void orphans_sweep(void)
{
	uint64_t ids[ORPHANS_MAX];
	unsigned n = 0;
	struct dirent *de;
	DIR *d;
	int dfd = dir_open(false);

	if (dfd < 0)
		return;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	/* the ids of the parts there are */
	while (n < ORPHANS_MAX && (de = readdir(d))) {
		uint64_t id;

		if (de->d_name[0] != '.' || name_or_part(de->d_name) < 0)
			continue;
		id = strtoull(de->d_name + 1, NULL, 16);
		if (!id_in(ids, n, id))
			ids[n++] = id;
	}
	/* less those of the rings there are; a ring whose header cannot be
	 * read might be any of them (an idle ring's parts are unused too):
	 * then nothing is removed */
	rewinddir(d);
	while (n && (de = readdir(d))) {
		struct bwi_geom g;
		int k;

		if (de->d_name[0] == '.' || bwi_name_check(de->d_name) < 0)
			continue;
		k = geom_read_at(dirfd(d), de->d_name, &g);
		if (k < 0) {
			n = 0; /* unreadable: it might be any of them */
			break;
		}
		if (k == 0)
			continue; /* a full header that is no ring's */
		for (unsigned i = 0; i < n; i++)
			if (ids[i] == g.ring_id)
				ids[i] = ids[--n];
	}
	closedir(d);
	for (unsigned i = 0; i < n; i++)
		if (parts_all_unused(ids[i]))
			unlink_parts(ids[i]);
	bwi_err_clear();
}

/* Whether m is still the ring its name holds (not removed, nor replaced
 * by another of that name). */
bool bwi_map_linked(const struct bwi_map *m)
{
	struct stat st;
	int dfd = dir_open(false);
	bool r;

	if (dfd < 0)
		return false;
	r = fstatat(dfd, m->name, &st, 0) == 0 && st.st_dev == m->dev &&
	    st.st_ino == m->ino;
	close(dfd);
	return r;
}

/* Removes part k of the self-scaling ring ring_id, if it is there. */
void bwi_part_unlink(uint64_t ring_id, uint64_t k)
{
	char part[BWI_NAME_MAX + 1];

	if (bwi_part_name(part, sizeof(part), ring_id, k) == 0)
		unlink_one(part, NULL);
}

/* A deck-cut ring's data: .ID@deck of the largest size, mode as NAME. */
static int deck_create(uint64_t ring_id, uint64_t size, mode_t mode)
{
	char deck[BWI_NAME_MAX + 1];
	int dfd, fd, r = bwi_part_name(deck, sizeof(deck), ring_id, UINT64_MAX);

	if (r < 0)
		return r;
	dfd = dir_open(true);
	if (dfd < 0)
		return dfd;
	fd = openat(dfd, deck, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode);
	close(dfd);
	if (fd < 0)
		return bwi_err(errno, "creating deck-cut ring data '%s'", deck);
	r = fchmod(fd, mode) < 0 || ftruncate(fd, (off_t)size) < 0
		    ? bwi_err(errno, "sizing deck-cut ring data '%s' to %llu "
				     "bytes",
			      deck, (unsigned long long)size)
		    : 0;
	close(fd);
	return r;
}

int bwi_epoch_create(const struct bwi_map *root, uint64_t k, unsigned shift,
		     uint64_t start)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	char part[BWI_NAME_MAX + 1], prev[BWI_NAME_MAX + 1];
	struct bwi_map m;
	struct stat st;
	mode_t mode = 0600;
	int dfd, r;

	r = bwi_part_name(part, sizeof(part), root->g.ring_id, k);
	if (r < 0)
		return r;
	dfd = dir_open(false);
	if (dfd >= 0) {
		/* the mode of the ring, or, once it was removed (another
		 * ring may have its name), of the region before */
		if (fstatat(dfd, root->name, &st, 0) == 0 &&
		    st.st_dev == root->dev && st.st_ino == root->ino)
			mode = st.st_mode & 0777;
		else if (k && bwi_part_name(prev, sizeof(prev), root->g.ring_id,
					    k - 1) == 0 &&
			 fstatat(dfd, prev, &st, 0) == 0)
			mode = st.st_mode & 0777;
		/* a stale one: a writer of this ring died between creating
		 * it and publishing it, or a resize failed (resize) */
		unlinkat(dfd, part, 0);
		close(dfd);
	}
	o.size = UINT64_C(1) << shift;
	o.max_readers = root->g.max_readers;
	o.max_writers = 1;
	o.policy = root->g.policy;
	o.writer_timeout_ms = root->g.writer_timeout_ms;
	o.wake_batch = root->g.wake_batch;
	o.wake_usec = root->g.wake_usec;
	/* the ring's record layout, with a dr header ring for this size */
	if (root->g.layout != BWI_LAYOUT_BYTES) {
		o.layout = root->g.layout;
		o.record_size = root->g.rec_size;
		o.record_align = root->g.rec_align;
		o.record_align_offset = root->g.rec_align_off;
	}
	memset(&m, 0, sizeof(m));
	m.fd = -1;
	m.writable = true;
	snprintf(m.name, sizeof(m.name), "%s", part);
	r = opts_check(&o, &m.g);
	if (r < 0)
		return r;
	m.g.flags |= BWI_GF_EPOCH |
		     (root->g.scale == BW_SCALE_DECKCUT ? BWI_GF_DECK : 0);
	m.g.sum = bwi_geom_sum(&m.g);
	m.start_pos = start;
	r = create_named(part, mode, &m);
	if (m.hdr)
		bwi_ring_unmap(&m);
	return r;
}

/* A self-scaling ring's parts: the deck, and region 0 at its size. */
static int scale_create(const char *name, const struct bwi_map *root)
{
	unsigned init = root->g.scale_shifts & 0xff,
		 hi = (root->g.scale_shifts >> 16) & 0xff;
	mode_t mode = 0600;
	struct stat st;
	int dfd = dir_open(false), r = 0;

	if (dfd >= 0) {
		if (fstatat(dfd, name, &st, 0) == 0)
			mode = st.st_mode & 0777;
		close(dfd);
	}
	if (root->g.scale == BW_SCALE_DECKCUT)
		r = deck_create(root->g.ring_id, UINT64_C(1) << hi, mode);
	if (r == 0)
		r = bwi_epoch_create(root, 0, init, 0);
	return r;
}

BW_API int bw_unlink(const char *name)
{
	char wt[BWI_NAME_MAX + 8];
	struct bwi_geom g;
	int r;

	r = bwi_name_check(name);
	if (r < 0)
		return r;
	r = unlink_one(name, &g);
	if (r >= 0 && g.scale) /* the parts no attached handle uses */
		bwi_parts_sweep(g.ring_id, UINT64_MAX);
	orphans_sweep();
	if (r == -ENOENT)
		return bwi_err(ENOENT, "no ring '%s'", name);
	if (r < 0)
		return bwi_err(-r, "removing ring '%s'", name);
	if (r == BWI_LAYOUT_INDEX) {
		/* an IBuf takes its default DBuf with it */
		snprintf(wt, sizeof(wt), "%s.wt", name);
		unlink_one(wt, NULL);
	}
	return 0;
}

BW_API int bw_ring_list(int (*fn)(const char *name, void *arg), void *arg)
{
	struct dirent *de;
	DIR *d;
	int dfd, r = 0;

	if (!fn)
		return bwi_err(EINVAL, "bw_ring_list needs a callback");
	dfd = dir_open(false);
	if (dfd == -ENOENT)
		return 0;
	if (dfd < 0)
		return dfd;
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return bwi_err(errno, "listing %s", bw_ring_dir());
	}
	while (r == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.' || strlen(de->d_name) > BWI_NAME_MAX)
			continue;
		if (bwi_name_check(de->d_name) < 0)
			continue;
		r = fn(de->d_name, arg);
	}
	closedir(d);
	bwi_err_clear();
	return r;
}
