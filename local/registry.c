/* SPDX-License-Identifier: MIT */
/*
 * The host's id registry (see bwi_index.h): which ring an index's id names.
 *
 * Claiming an entry follows the ring slots: CAS from FREE to CLAIMING
 * (carrying the claimer's pid), fill in, release-store LIVE with a new
 * generation. Retiring CASes LIVE to FREE. A reader copies a LIVE entry and
 * re-reads the state word: if it changed meanwhile, the copy may be torn and
 * the index is treated as stale.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bwi_index.h"

#define REG_NAME ".registry"

static struct {
	pthread_mutex_t mu;
	struct bwi_reg_hdr *hdr; /* NULL until mapped */
	struct bwi_reg_entry *e;
	bool writable;
	size_t len;
} reg = {.mu = PTHREAD_MUTEX_INITIALIZER};

static uint32_t hdr_sum(const struct bwi_reg_hdr *h)
{
	return bwi_fnv1a(h, offsetof(struct bwi_reg_hdr, sum));
}

static size_t reg_bytes(void)
{
	return (sizeof(struct bwi_reg_hdr) +
		BWI_REG_SLOTS * sizeof(struct bwi_reg_entry) + 4095) /
	       4096 * 4096;
}

/* Builds a new registry as an unnamed file and links it in; losing the race
 * to another process is fine. */
static void reg_create(int dfd)
{
	struct bwi_reg_hdr h = {
		.magic = BWI_REG_MAGIC,
		.version = BWI_REG_VERSION,
		.nslots = BWI_REG_SLOTS,
		.entry_size = sizeof(struct bwi_reg_entry),
	};
	char proc[64];
	int fd;

	h.sum = hdr_sum(&h);
	fd = openat(dfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0666);
	if (fd < 0)
		return;
	if (fchmod(fd, 0666) == 0 && ftruncate(fd, (off_t)reg_bytes()) == 0 &&
	    pwrite(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h)) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		linkat(AT_FDCWD, proc, dfd, REG_NAME, AT_SYMLINK_FOLLOW);
	}
	close(fd);
}

/* Maps the registry once per process (creating it if need be). */
static int reg_map(void)
{
	struct bwi_reg_hdr h;
	struct stat st;
	int dfd, fd, r = 0;
	void *p;

	pthread_mutex_lock(&reg.mu);
	if (reg.hdr)
		goto out;
	dfd = open(bw_ring_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 && errno == ENOENT) {
		if (mkdir(bw_ring_dir(), 01777) == 0)
			chmod(bw_ring_dir(), 01777);
		dfd = open(bw_ring_dir(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (dfd < 0) {
		r = bwi_err(errno, "ring directory %s", bw_ring_dir());
		goto out;
	}
	fd = openat(dfd, REG_NAME, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && errno == ENOENT) {
		reg_create(dfd);
		fd = openat(dfd, REG_NAME, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	}
	reg.writable = fd >= 0;
	if (fd < 0 && errno == EACCES)
		fd = openat(dfd, REG_NAME, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	close(dfd);
	if (fd < 0) {
		r = bwi_err(errno, "opening the id registry %s/%s",
			    bw_ring_dir(), REG_NAME);
		goto out;
	}
	/* Header read once with pread, checked, then never trusted again. */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    h.magic != BWI_REG_MAGIC || h.version != BWI_REG_VERSION ||
	    h.sum != hdr_sum(&h) || h.nslots != BWI_REG_SLOTS ||
	    h.entry_size != sizeof(struct bwi_reg_entry) ||
	    (uint64_t)st.st_size != reg_bytes()) {
		r = bwi_err(EBADMSG, "the id registry %s/%s is corrupt",
			    bw_ring_dir(), REG_NAME);
		close(fd);
		goto out;
	}
	p = mmap(NULL, reg_bytes(), PROT_READ | (reg.writable ? PROT_WRITE : 0),
		 MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		r = bwi_err(errno, "mapping the id registry");
		goto out;
	}
	reg.len = reg_bytes();
	reg.e = (struct bwi_reg_entry *)((uint8_t *)p + sizeof(struct bwi_reg_hdr));
	reg.hdr = p;
out:
	pthread_mutex_unlock(&reg.mu);
	return r;
}

/* The entry's claimer or owner is gone: its slot may be taken back. */
static bool entry_dead(const struct bwi_reg_entry *c, uint64_t w)
{
	if (BWI_SLOT_STATE(w) == BWI_SLOT_CLAIMING)
		return bwi_starttime(BWI_SLOT_CLAIMER(w)) == 0;
	if (BWI_SLOT_STATE(w) != BWI_SLOT_ACTIVE || c->kind != BWI_REG_ANON)
		return false;
	return !bwi_pid_alive(c->pid, c->starttime);
}

/* Copies entry i with its state word; false if it changed meanwhile. */
static bool entry_copy(uint32_t i, struct bwi_reg_entry *c, uint64_t *w)
{
	*w = bw_load_acquire(&reg.e[i].state);
	memcpy((uint8_t *)c + 8, (const uint8_t *)&reg.e[i] + 8,
	       sizeof(*c) - 8);
	/* A5: the copy above is done before the state is read again. */
	bw_smp_rmb();
	return bw_load_relaxed(&reg.e[i].state) == *w;
}

int bwi_reg_lookup(uint16_t id, uint16_t gen, struct bwi_reg_entry *out)
{
	uint64_t w;
	int r = reg_map();

	if (r < 0)
		return r;
	if (id == 0 || id >= BWI_REG_SLOTS)
		return bwi_err(EINVAL, "index names ring id %u, which no ring "
				       "can have",
			       id);
	if (!entry_copy(id, out, &w) || BWI_SLOT_STATE(w) != BWI_SLOT_ACTIVE ||
	    (uint16_t)BWI_SLOT_GEN(w) != gen)
		return bwi_err(ESTALE, "ring id %u generation %u is no longer "
				       "registered",
			       id, gen);
	out->name[BWI_NAME_MAX] = '\0';
	if ((out->kind == BWI_REG_NAMED && bwi_name_check(out->name) < 0) ||
	    (out->kind == BWI_REG_ANON && (out->pid <= 0 || out->fd < 0)) ||
	    (out->kind != BWI_REG_NAMED && out->kind != BWI_REG_ANON))
		return bwi_err(EBADMSG, "registry entry %u is corrupt", id);
	return 0;
}

/* Fills a claimed entry for m and publishes it. */
static void entry_fill(uint32_t i, uint32_t gen, const struct bwi_map *m)
{
	struct bwi_reg_entry *e = &reg.e[i];

	e->ring_id = m->g.ring_id;
	e->kind = m->anon ? BWI_REG_ANON : BWI_REG_NAMED;
	e->pid = m->anon ? bwi_self_pid() : 0;
	e->fd = m->anon ? m->fd : -1;
	e->starttime = m->anon ? bwi_self_starttime() : 0;
	memset(e->name, 0, sizeof(e->name));
	if (!m->anon)
		memcpy(e->name, m->name, strlen(m->name));
	/* R5: pairs with the acquire of the state in entry_copy(). */
	bw_store_release(&e->state, BWI_SLOT_WORD(gen, BWI_SLOT_ACTIVE));
}

int bwi_reg_register(struct bwi_map *m, uint16_t *id, uint16_t *gen)
{
	uint32_t self;
	int r;

	if (m->reg_id) {
		*id = m->reg_id;
		*gen = m->reg_gen;
		return 0;
	}
	r = reg_map();
	if (r < 0)
		return r;
	/* Another process may have registered the ring already. */
	for (uint32_t i = 1; i < BWI_REG_SLOTS; i++) {
		struct bwi_reg_entry c;
		uint64_t w;

		if (entry_copy(i, &c, &w) && BWI_SLOT_STATE(w) == BWI_SLOT_ACTIVE &&
		    c.ring_id == m->g.ring_id && !entry_dead(&c, w)) {
			m->reg_id = (uint16_t)i;
			m->reg_gen = (uint16_t)BWI_SLOT_GEN(w);
			goto done;
		}
	}
	if (!reg.writable)
		return bwi_err(EACCES, "the id registry is read-only for this "
				       "process");
	self = (uint32_t)bwi_self_pid();
	for (uint32_t i = 1; i < BWI_REG_SLOTS; i++) {
		struct bwi_reg_entry c;
		uint64_t w;

		if (!entry_copy(i, &c, &w))
			continue;
		if (BWI_SLOT_STATE(w) != BWI_SLOT_FREE && !entry_dead(&c, w))
			continue;
		/* Generations skip 0 in their low 16 bits, so an index of
		 * all zeroes never names a live entry. */
		uint32_t g = BWI_SLOT_GEN(w) + 1;

		if ((uint16_t)g == 0)
			g++;
		if (!bw_cas(&reg.e[i].state, &w,
			    BWI_SLOT_WORD(g, (self << 2) | BWI_SLOT_CLAIMING)))
			continue;
		entry_fill(i, g, m);
		m->reg_id = (uint16_t)i;
		m->reg_gen = (uint16_t)g;
		goto done;
	}
	return bwi_err(ENOSPC, "all %u ring ids of this host are taken",
		       BWI_REG_SLOTS - 1);
done:
	*id = m->reg_id;
	*gen = m->reg_gen;
	return 0;
}

bool bwi_reg_live(uint16_t id, uint16_t gen)
{
	uint64_t w;

	if (!reg.hdr || id == 0 || id >= BWI_REG_SLOTS)
		return false;
	w = bw_load_acquire(&reg.e[id].state);
	return BWI_SLOT_STATE(w) == BWI_SLOT_ACTIVE &&
	       (uint16_t)BWI_SLOT_GEN(w) == gen;
}

void bwi_reg_retire(uint64_t ring_id)
{
	if (reg_map() < 0 || !reg.writable) {
		bwi_err_clear();
		return;
	}
	for (uint32_t i = 1; i < BWI_REG_SLOTS; i++) {
		struct bwi_reg_entry c;
		uint64_t w;

		if (entry_copy(i, &c, &w) && BWI_SLOT_STATE(w) == BWI_SLOT_ACTIVE &&
		    c.ring_id == ring_id)
			bw_cas(&reg.e[i].state, &w,
			       BWI_SLOT_WORD(BWI_SLOT_GEN(w), BWI_SLOT_FREE));
	}
}
