/* SPDX-License-Identifier: MIT */
/*
 * The descriptor of an exported ring, and the socket helpers of the
 * rendezvous. A descriptor comes from another host: it is copied once,
 * checksummed and bounds-checked before anything uses it.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bwf.h"
#include "bwi_ring.h"

/* The position window is the ring header from prod.head to past ctl.scar. */
_Static_assert(BWF_POS_OFF == offsetof(struct bwi_hdr, prod.head), "window");
_Static_assert(BWF_POS_OFF + BWF_POS_TAIL == offsetof(struct bwi_hdr, prod.tail),
	       "window");
_Static_assert(BWF_POS_OFF + BWF_POS_SCAR == offsetof(struct bwi_hdr, ctl.scar),
	       "window");
_Static_assert(BWF_POS_OFF + BWF_POS_WATTACH ==
		       offsetof(struct bwi_hdr, ctl.wattach),
	       "window");
_Static_assert(BWF_POS_OFF + BWF_POS_WDETACH ==
		       offsetof(struct bwi_hdr, ctl.wdetach),
	       "window");
_Static_assert(BWF_POS_OFF + BWF_POS_PADS == offsetof(struct bwi_hdr, prod.pads),
	       "window");
_Static_assert(BWF_POS_LEN == BWF_POS_WDETACH + 4, "window");
/* The padding table exported with it. */
_Static_assert(BWF_PADS_OFF == offsetof(struct bwi_hdr, padv) &&
		       BWF_PADS_LEN == sizeof(((struct bwi_hdr *)0)->padv),
	       "padding table");

void bwf_desc_seal(struct bwf_desc *d)
{
	d->magic = BWF_DESC_MAGIC;
	d->version = BWF_DESC_VERSION;
	d->pad = 0;
	d->sum = bwi_fnv1a(d, offsetof(struct bwf_desc, sum));
}

/* What is wrong with the record layout d names, or NULL. */
static const char *desc_rec_bad(const struct bwf_desc *d)
{
	struct bwi_geom g = {.capacity = d->capacity, .layout = d->layout};

	if (d->layout == BWI_LAYOUT_INDEX)
		return d->rec_size || d->rec_align || d->rec_align_off
			       ? "record fields on an IBuf"
			       : NULL;
	if (d->layout == BWI_LAYOUT_DR)
		return "a dr ring (not exported)";
	g.rec_size = d->rec_size;
	g.rec_align = d->rec_align;
	g.rec_align_off = d->rec_align_off;
	return d->rec_pad ? "bad record padding" : bwi_rec_bad(&g);
}

int bwf_desc_check(const struct bwf_desc *d, uint32_t access)
{
	const char *why = NULL;

	if (d->magic != BWF_DESC_MAGIC)
		why = "bad magic";
	else if (d->version != BWF_DESC_VERSION)
		why = "unknown version";
	else if (d->sum != bwi_fnv1a(d, offsetof(struct bwf_desc, sum)))
		why = "bad checksum";
	else if (d->access != access)
		why = "access is not what was asked for";
	else if (d->capacity < BWI_MIN_CAPACITY || d->capacity > BWI_MAX_CAPACITY ||
		 (d->capacity & (d->capacity - 1)))
		why = "capacity is not a power of two in range";
	else if (d->layout > BWI_LAYOUT_DR)
		why = "unknown layout";
	else if ((why = desc_rec_bad(d)))
		;
	else if (d->addr_len == 0 || d->addr_len > BWF_ADDR_MAX)
		why = "fabric address length out of range";
	else if (d->pos_len != BWF_POS_LEN)
		why = "position window of the wrong size";
	else if (d->pos_raddr > UINT64_MAX - d->pos_len ||
		 d->data_raddr > UINT64_MAX - 2 * d->capacity ||
		 d->pads_raddr > UINT64_MAX - BWF_PADS_LEN)
		why = "region wraps the address space";
	if (why)
		return bwi_err(EPROTO, "the server's ring descriptor is not "
				       "valid: %s", why);
	return 0;
}

int bwf_parse_hostport(const char *s, char *host, size_t hostlen, char *port,
		       size_t portlen, const char **rest)
{
	const char *h = s, *he, *p, *pe;

	if (!s)
		return bwi_err(EINVAL, "no address given");
	if (*s == '[') { /* [v6]:port */
		h = s + 1;
		he = strchr(h, ']');
		if (!he || he[1] != ':')
			goto bad;
		p = he + 2;
	} else {
		he = strchr(s, ':');
		if (!he)
			goto bad;
		p = he + 1;
	}
	pe = p + strspn(p, "0123456789");
	if (pe == p || pe - p > 5 || he == h || (size_t)(he - h) >= hostlen ||
	    (size_t)(pe - p) >= portlen)
		goto bad;
	if (rest)
		*rest = pe;
	else if (*pe)
		goto bad;
	memcpy(host, h, (size_t)(he - h));
	host[he - h] = '\0';
	memcpy(port, p, (size_t)(pe - p));
	port[pe - p] = '\0';
	if (atol(port) > 65535)
		return bwi_err(EINVAL, "'%s': port %s is above 65535", s, port);
	return 0;
bad:
	return bwi_err(EINVAL, "'%s' is not HOST:PORT%s", s,
		       rest ? "/NAME" : "");
}

int bwf_full_io(int fd, void *buf, size_t n, bool wr, uint32_t timeout_ms)
{
	uint8_t *b = buf;
	size_t done = 0;

	while (done < n) {
		struct pollfd p = {.fd = fd, .events = wr ? POLLOUT : POLLIN};
		ssize_t k;
		int r = poll(&p, 1, (int)timeout_ms);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return bwi_err(ETIMEDOUT, "the peer sent nothing for %u ms",
				       timeout_ms);
		k = wr ? send(fd, b + done, n - done, MSG_NOSIGNAL)
		       : recv(fd, b + done, n - done, 0);
		if (k < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (k < 0)
			return bwi_err(errno, "rendezvous connection");
		if (k == 0)
			return bwi_err(ECONNRESET, "the peer closed the rendezvous "
						   "connection");
		done += (size_t)k;
	}
	return 0;
}

int bwf_tcp_connect(const char *host, const char *port, uint32_t timeout_ms,
		       int *out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM},
			*ai, *a;
	int r, fd = -1, err = ECONNREFUSED;

	r = getaddrinfo(host, port, &hints, &ai);
	if (r)
		return bwi_err(EINVAL, "cannot resolve '%s': %s", host,
			       gai_strerror(r));
	for (a = ai; a; a = a->ai_next) {
		struct pollfd p;
		socklen_t sl = sizeof(err);

		fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		err = errno;
		if (err == EINPROGRESS) {
			p = (struct pollfd){.fd = fd, .events = POLLOUT};
			r = poll(&p, 1, (int)timeout_ms);
			if (r == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err,
						 &sl) == 0 && err == 0)
				break;
			if (r == 0)
				err = ETIMEDOUT;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return bwi_err(err, "cannot reach the Beltway server at %s:%s",
			       host, port);
	*out = fd;
	return 0;
}

void bwf_keepalive(int fd, uint32_t timeout_ms)
{
	int one = 1, idle = (int)(timeout_ms / 3000) + 1, cnt = 3;
	unsigned ut = timeout_ms;

	/* A peer whose link goes down is declared gone within about the
	 * timeout, even while the connection is idle (keepalive), or while
	 * something sent is unacknowledged (user timeout). */
	(void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof(ut));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}
