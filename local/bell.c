/* SPDX-License-Identifier: MIT */
/*
 * Doorbells: the descriptor bw_stream_fd() hands to event loops.
 *
 * A handle's doorbell is a datagram socket bound to an abstract address
 * named by the ring id and its slot (and the slot's generation). The handle
 * arms it in its slot; a publisher that finds armed doorbells rings each one
 * once (ARMED -> RUNG) with a one-byte datagram, which makes the descriptor
 * readable. Abstract sockets vanish with their process, and a stray datagram
 * only causes a spurious wakeup: the handle re-checks the ring.
 *
 * A peer killed without closing rings nothing, and an event loop that
 * waits on the descriptor alone would wait forever. So the descriptor is an
 * epoll set of the doorbell and a timer that ticks every wait slice (the
 * liveness interval): a tick makes the loop call, and a call that has
 * waited that long looks for dead peers, as a blocking wait does. A
 * self-scaling ring's descriptor holds the set of the region handle it
 * waits on, and its calls use the ticks up as the region's do.
 *
 * Taps cannot write their slot (they have none): their descriptor is a
 * periodic timer, and they poll.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <beltway/shadow.h>

#include "bwi_stream.h"

static int sender = -1;

static socklen_t bell_addr(struct sockaddr_un *a, const struct bwi_map *m,
			   enum bwi_role role, uint32_t idx, uint32_t gen)
{
	int n;

	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1,
		     "beltway/%016llx/%c%u.%u",
		     (unsigned long long)m->g.ring_id,
		     role == BWI_READER ? 'r' : 'w', idx, gen);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static int sender_fd(void)
{
	int fd = __atomic_load_n(&sender, __ATOMIC_ACQUIRE), exp = -1;

	if (fd >= 0)
		return fd;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (!__atomic_compare_exchange_n(&sender, &exp, fd, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		close(fd);
		fd = exp;
	}
	return fd;
}

static void ring_slot(struct bwi_map *m, struct bwi_wait *w,
		      enum bwi_role role, uint32_t i)
{
	struct bwi_slot *sl = role == BWI_READER ? bwi_rslot(m, i)
						 : bwi_wslot(m, i);
	uint32_t b = BWI_BELL_ARMED;
	struct sockaddr_un a;
	socklen_t len;
	int fd;

	if (bw_load_relaxed(&sl->bell) != BWI_BELL_ARMED ||
	    !bw_cas(&sl->bell, &b, BWI_BELL_RUNG))
		return;
	bw_fetch_sub(&w->waiting, BWI_ARMED);
	fd = sender_fd();
	if (fd < 0)
		return;
	len = bell_addr(&a, m, role, i, BWI_SLOT_GEN(bw_load_acquire(&sl->state)));
	sendto(fd, "", 1, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&a,
	       len);
}

void bwi_bell_ring_all(struct bwi_map *m, struct bwi_wait *w,
		       enum bwi_role role)
{
	uint32_t n = role == BWI_READER ? m->g.max_readers : m->g.max_writers;
	uint32_t hi = bw_load_acquire(role == BWI_READER ? &m->hdr->ctl.rslots_hi
							 : &m->hdr->ctl.wslots_hi);

	if (hi > n)
		hi = n;
	for (uint32_t i = 0; i < hi; i++)
		ring_slot(m, w, role, i);
}

static enum bwi_role bell_role(const struct bw_stream *s)
{
	return s->reader ? BWI_READER : BWI_WRITER;
}

static struct bwi_slot *bell_slot(const struct bw_stream *s)
{
	return s->reader ? bwi_rslot(s->m, s->rslot)
			 : bwi_wslot(s->m, s->wslot);
}

static struct bwi_wait *bell_wait(const struct bw_stream *s)
{
	return s->reader ? &s->m->hdr->rwait : &s->m->hdr->wwait;
}

static int bell_events(const struct bw_stream *s)
{
	return (s->reader || s->tap) ? BW_POLLIN : BW_POLLOUT;
}

static void drain(int fd)
{
	char buf[64];

	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/* Arms the doorbell: it will ring at the next change, or now if the stream is
 * already ready for need bytes (0: bwi_room_want). Called
 * when the descriptor is made, and on every -EAGAIN with what the call
 * wanted, so a writer that wants more room than there is does not find
 * its descriptor ready at once and spin. */
void bwi_bell_arm(struct bw_stream *s, uint64_t need)
{
	struct bwi_slot *sl;
	uint64_t cap = s->m->g.capacity;

	if (need == 0 || need > cap)
		need = bwi_room_want(cap);

	if (s->bell_fd < 0)
		return;
	if (s->bell_timer) {
		uint64_t ticks;

		if (read(s->bell_fd, &ticks, sizeof(ticks)) < 0)
			(void)0;
		return;
	}
	drain(s->bell_fd);
	bwi_bell_ticks_used(s);
	sl = bell_slot(s);
	if (bw_load_relaxed(&sl->bell) != BWI_BELL_ARMED) {
		bw_store_relaxed(&sl->bell, BWI_BELL_ARMED);
		bw_fetch_add(&bell_wait(s)->waiting, BWI_ARMED);
	}
	/* Heavy side of the Dekker with publishers (see wait_any). */
	bwi_barrier_heavy();
	if (bwi_ready(s, bell_events(s), need))
		ring_slot(s->m, bell_wait(s), bell_role(s),
			  s->reader ? s->rslot : s->wslot);
}

/* A call found nothing: the liveness ticks that made it are used up (else
 * the descriptor stays readable, and an event loop spins). */
void bwi_bell_ticks_used(struct bw_stream *s)
{
	uint64_t ticks;

	if (s->bell_tick >= 0 && read(s->bell_tick, &ticks, sizeof(ticks)) < 0)
		(void)0; /* none yet */
}

void bwi_bell_close(struct bw_stream *s)
{
	uint32_t b = BWI_BELL_ARMED;

	if (s->bell_fd < 0)
		return;
	if (!s->bell_timer && s->epoch == bwi_epoch && s->m->hdr &&
	    bw_cas(&bell_slot(s)->bell, &b, BWI_BELL_OFF))
		bw_fetch_sub(&bell_wait(s)->waiting, BWI_ARMED);
	bwi_bell_child(s);
}

/* Closes the descriptors. In a bw_fork() child the inherited ones are the
 * parent's: closed so, with nothing disarmed. */
void bwi_bell_child(struct bw_stream *s)
{
	int *fds[3] = {&s->bell_fd, &s->bell_tick, &s->bell_ep};

	for (int i = 0; i < 3; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	s->bell_timer = false;
}

/* A periodic timer of ms milliseconds; its descriptor or -errno. */
static int ticker(int ms, const char *what)
{
	struct itimerspec its;
	int fd, r;

	its.it_interval.tv_sec = ms / 1000;
	its.it_interval.tv_nsec = (long)(ms % 1000) * 1000000;
	its.it_value = its.it_interval;
	fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (fd < 0 || timerfd_settime(fd, 0, &its, NULL) < 0) {
		r = bwi_err(errno, "creating %s", what);
		if (fd >= 0)
			close(fd);
		return r;
	}
	return fd;
}

/* The descriptor handed out: an epoll set of the doorbell and the liveness
 * timer. Returns 0 or -errno. */
static int bell_set(struct bw_stream *s)
{
	struct epoll_event ev = {.events = EPOLLIN};
	int r;

	r = ticker(bwi_wait_slice_ms(s->m), "the descriptor's liveness timer");
	if (r < 0)
		return r;
	s->bell_tick = r;
	s->bell_ep = epoll_create1(EPOLL_CLOEXEC);
	if (s->bell_ep < 0 ||
	    epoll_ctl(s->bell_ep, EPOLL_CTL_ADD, s->bell_fd, &ev) < 0 ||
	    epoll_ctl(s->bell_ep, EPOLL_CTL_ADD, s->bell_tick, &ev) < 0)
		return bwi_err(errno, "creating the stream's descriptor");
	return 0;
}

BW_API int bw_stream_fd(struct bw_stream *s)
{
	struct sockaddr_un a;
	socklen_t len;
	int fd, r;

	r = bw_stream_flush(s);
	if (r < 0)
		return r;
	if (s->sc)
		return bwi_scale_fd(s);
	if (s->m->g.scale)
		return bwi_err(ENOSYS, "this handle on a self-scaling ring "
				       "has no descriptor to poll");
	if (s->bell_fd >= 0)
		return s->bell_ep >= 0 ? s->bell_ep : s->bell_fd;
	if (s->shadow)
		return bw_shadow_fd(s->shadow);
	if (s->tap) {
		fd = ticker(5, "the tap's timer");
		if (fd < 0)
			return fd;
		s->bell_fd = fd;
		s->bell_timer = true;
		return fd;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return bwi_err(errno, "creating a doorbell socket");
	len = bell_addr(&a, s->m, bell_role(s), s->reader ? s->rslot : s->wslot,
			s->reader ? s->rgen : s->wgen);
	if (bind(fd, (struct sockaddr *)&a, len) < 0) {
		r = bwi_err(errno, "binding the doorbell");
		close(fd);
		return r;
	}
	s->bell_fd = fd;
	if ((r = bell_set(s)) < 0) {
		bwi_bell_child(s); /* nothing was armed */
		return r;
	}
	bwi_bell_arm(s, 0);
	return s->bell_ep;
}
