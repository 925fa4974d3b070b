/* SPDX-License-Identifier: MIT */
/*
 * The server: exports named rings to remote readers and writers.
 *
 * A client connects over TCP and sends one request (struct bwf_req); the
 * server opens the ring, registers what the client needs with the least
 * access (pull: the position window and the data, remote-read only; push:
 * the same, remote-write), and answers with a descriptor. The connection
 * then stays open and silent: it is the session's liveness signal. When it
 * closes or fails (the client exited, was killed, or its link is down long
 * enough for TCP keepalive to give up) the session ends and its regions are
 * closed, which revokes their keys. Every session has its own regions, so a
 * client that reconnects gets fresh keys and a new generation.
 *
 * The loop also drives the endpoint: software providers (tcp, shm) carry out
 * remote operations on our memory only when we read our completion queue.
 * For push sessions it watches the ring's write position to wake local
 * readers, writes credit (the slowest reader's position) back to lossless
 * writers, and reaps dead readers so that credit keeps moving.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bwf.h"
#include "bwi_stream.h"

struct session {
	int fd;
	uint32_t access; /* BWF_ACC_* */
	uint32_t flags;
	uint64_t generation;
	struct bwi_map *m;    /* pull: our read-only mapping */
	struct bw_stream *w;  /* push: the writer slot held for the client */
	struct bwf_mr pos_mr, data_mr, pads_mr;
	/* push */
	uint64_t tail_seen;
	uint64_t credit_raddr, credit_key;
	struct credit *cr;    /* lossless pushes */
	uint64_t credit_sent;
	uint64_t reaped_ns;
	uint64_t started_ns;
	bool acked;	      /* the client's first fabric read worked */
	struct bwf_req q;     /* pending: the request as it arrives */
	size_t q_got;
	char name[BWI_NAME_MAX + 1];
	char peer_host[64];
	struct session *next;
};

/* Where a lossless push session writes credit back from: the registered
 * word, the write's completion and the client's address. A write still in
 * flight when its session ends points at all three: they outlive the
 * session, on the server's list of orphans, until it completes. */
struct credit {
	uint64_t val; /* registered: the value being written back */
	struct bwf_mr mr;
	struct bwf_op op;
	bool busy;
	uint64_t full_since; /* posting it found the queue full since */
	bool have_peer;
	fi_addr_t peer;
	struct credit *next;
};

struct bw_server {
	struct bwf_ep ep;
	int lfd;
	int stopfd; /* eventfd */
	uint32_t timeout_ms;
	uint64_t next_gen;
	char **names; /* exported names, NULL-ended; NULL: any */
	struct session *sessions;
	unsigned nsessions;
	struct session *pending; /* connected; their requests not served */
	unsigned npending;
	struct credit *orphans; /* credit writes that outlived their session */
	unsigned norphans;
	uint64_t reset_ns;	/* the endpoint was last replaced */
	bool published;		/* the sessions file exists */
	char host[256];
	int port;
};

/* The server's timeout, in nanoseconds. */
static uint64_t tmo_ns(const struct bw_server *s)
{
	return (uint64_t)s->timeout_ms * 1000000u;
}

/* Sessions per server, and connections whose requests are not served yet:
 * each holds a pollfd in the loop. */
#define MAX_SESSIONS 60
#define MAX_PENDING 16
/* Credit writes kept past their sessions before the endpoint is replaced */
#define MAX_ORPHANS 32

static bool exported(const struct bw_server *s, const char *name)
{
	if (!s->names)
		return true;
	for (char **n = s->names; *n; n++)
		if (!strcmp(*n, name))
			return true;
	return false;
}

/* ---- the sessions file: what `beltway stat` shows ------------------------ */

static void sessions_publish(struct bw_server *s)
{
	char dir[4096], path[4200], tmp[4300];
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/.fabric", bw_ring_dir());
	if (mkdir(dir, 01777) == 0)
		(void)chmod(dir, 01777); /* past the umask: every user's servers */
	snprintf(path, sizeof(path), "%s/%d", dir, (int)getpid());
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "# pid %d starttime %llu listen %s:%d provider %s\n",
		(int)getpid(), (unsigned long long)bwi_self_starttime(),
		s->host, s->port, s->ep.prov);
	for (const struct session *x = s->sessions; x; x = x->next)
		fprintf(f, "%s %s %s gen %llu peer %s\n", x->name,
			x->access == BWF_ACC_PULL ? "pull-reader" : "push-writer",
			x->access == BWF_ACC_PULL
				? "frp"
				: (x->flags & BW_REMOTE_LOSSLESS ? "lossless" : "frp"),
			(unsigned long long)x->generation, x->peer_host);
	if (fclose(f) == 0 && rename(tmp, path) == 0)
		s->published = true;
	else
		(void)unlink(tmp);
}

static bool server_alive(int pid, unsigned long long st)
{
	return pid > 0 && bwi_pid_alive((pid_t)pid, st);
}

int bw_fabric_sessions(const char *name, struct bw_fabric_session *out,
		       unsigned max)
{
	char dir[4096], path[4400], line[512];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "%s/.fabric", bw_ring_dir());
	d = opendir(dir);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		struct bw_fabric_session hd = {0};
		unsigned long long st = 0;
		FILE *f;

		if (de->d_name[0] < '0' || de->d_name[0] > '9' ||
		    strchr(de->d_name, '.'))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (!(f = fopen(path, "r")))
			continue;
		/* Written by a server of this host; still parsed with care. */
		if (!fgets(line, sizeof(line), f) ||
		    sscanf(line, "# pid %d starttime %llu listen %271s provider %31s",
			   &hd.server_pid, &st, hd.listen, hd.provider) != 4 ||
		    !server_alive(hd.server_pid, st)) {
			/* a server that was killed left it: remove (if ours) */
			if (hd.server_pid > 0 && !server_alive(hd.server_pid, st))
				(void)unlink(path);
			fclose(f);
			continue;
		}
		while (fgets(line, sizeof(line), f)) {
			char nm[BWI_NAME_MAX + 1], role[16], pol[16];
			struct bw_fabric_session x = hd;

			if (sscanf(line, "%63s %15s %15s gen %" SCNu64 " peer %63s",
				   nm, role, pol, &x.generation, x.peer) != 5 ||
			    strcmp(nm, name))
				continue;
			x.writer = !strcmp(role, "push-writer");
			x.lossless = !strcmp(pol, "lossless");
			if ((unsigned)n < max)
				out[n] = x;
			n++;
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

static void sessions_unpublish(void)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/.fabric/%d", bw_ring_dir(), (int)getpid());
	(void)unlink(path);
}

/* ---- opening and closing ------------------------------------------------- */

/* The fabric endpoint on the listening host, so that clients reach it by
 * the route they reached us; a wildcard host, or a provider that does not
 * take a host (shm), gets the provider's default. */
static int server_ep_open(struct bw_server *s, const char *prov)
{
	const char *node = strcmp(s->host, "0.0.0.0") && strcmp(s->host, "::")
				   ? s->host
				   : NULL;
	int r = bwf_ep_open(prov, node, s->timeout_ms, &s->ep);

	if (r < 0 && node)
		r = bwf_ep_open(prov, NULL, s->timeout_ms, &s->ep);
	return r;
}

int bw_server_open(const char *listen_at, const struct bw_fabric_opts *opts,
		   struct bw_server **out)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE},
			*ai = NULL;
	char port[8];
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct bw_server *s;
	int r, one = 1;

	bwi_err_clear();
	if (!out || (opts && opts->struct_size < sizeof(uint32_t) * 2))
		return bwi_err(EINVAL, "bw_server_open: bad arguments");
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->lfd = s->stopfd = -1;
	s->timeout_ms = bwf_timeout(opts);
	s->next_gen = bwi_random64() & 0xffffffffu;
	r = bwf_parse_hostport(listen_at, s->host, sizeof(s->host), port,
			       sizeof(port), NULL);
	if (r < 0)
		goto fail;
	if (opts && opts->struct_size >= offsetof(struct bw_fabric_opts, names) +
						 sizeof(opts->names) &&
	    opts->names) {
		size_t n = 0;

		while (opts->names[n])
			n++;
		s->names = calloc(n + 1, sizeof(char *));
		for (size_t i = 0; s->names && i < n; i++)
			if (!(s->names[i] = strdup(opts->names[i])))
				break;
		if (!s->names || (n && !s->names[n - 1])) {
			r = -ENOMEM;
			goto fail;
		}
	}
	r = getaddrinfo(s->host, port, &hints, &ai);
	if (r) {
		r = bwi_err(EINVAL, "cannot resolve '%s': %s", s->host,
			    gai_strerror(r));
		goto fail;
	}
	s->lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0 ||
	    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(s->lfd, ai->ai_addr, ai->ai_addrlen) || listen(s->lfd, 64) ||
	    getsockname(s->lfd, (struct sockaddr *)&ss, &sl)) {
		r = bwi_err(errno, "cannot listen on %s", listen_at);
		goto fail;
	}
	s->port = ntohs(ss.ss_family == AF_INET6
				? ((struct sockaddr_in6 *)&ss)->sin6_port
				: ((struct sockaddr_in *)&ss)->sin_port);
	s->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stopfd < 0) {
		r = -errno;
		goto fail;
	}
	r = server_ep_open(s, bwf_provider(opts));
	if (r < 0)
		goto fail;
	freeaddrinfo(ai);
	sessions_publish(s);
	*out = s;
	return 0;
fail:
	if (ai)
		freeaddrinfo(ai);
	bw_server_close(s);
	return r;
}

int bw_server_port(const struct bw_server *s)
{
	return s->port;
}

static void credit_free(struct bw_server *s, struct credit *c)
{
	bwf_mr_close(&c->mr);
	/* The client's address goes with its session: shm keeps a mapping of
	 * every peer in the address vector, and touched a departed one. */
	if (c->have_peer)
		(void)fi_av_remove(s->ep.av, &c->peer, 1, 0);
	free(c);
}

/* Frees the orphans whose writes completed (with an error or not). */
static void orphans_reap(struct bw_server *s)
{
	for (struct credit **pp = &s->orphans; *pp;) {
		struct credit *c = *pp;

		if (!c->op.done) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		s->norphans--;
		credit_free(s, c);
	}
}

static void session_end(struct bw_server *s, struct session *x)
{
	/* the client learns first that the session ended, then its keys
	 * fail: an operation refused meanwhile is told as the session's end */
	if (x->fd >= 0)
		(void)shutdown(x->fd, SHUT_RDWR);
	/* A credit write still in flight points at the session's credit: it
	 * completes later, or fails when the endpoint closes. Waiting for it
	 * here would stall every session, and a client gone for good would
	 * leave the endpoint timed out, unusable for the sessions after. */
	if (x->cr && x->cr->busy && !x->cr->op.done) {
		x->cr->next = s->orphans;
		s->orphans = x->cr;
		s->norphans++;
	} else if (x->cr) {
		credit_free(s, x->cr);
	}
	bwf_mr_close(&x->pos_mr);
	bwf_mr_close(&x->data_mr);
	bwf_mr_close(&x->pads_mr);
	if (x->w) {
		bwi_remote_writer_release(x->w);
		bwi_wake_readers(x->w->m);
		bw_stream_close(x->w);
	}
	if (x->m)
		bwi_map_put(x->m);
	if (x->fd >= 0)
		close(x->fd);
	free(x);
}

static void pending_remove(struct bw_server *s, struct session *x)
{
	for (struct session **pp = &s->pending; *pp; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			s->npending--;
			break;
		}
	}
}

/* Ends pending connection x: its request never came whole, or the server
 * closes. */
static void pending_drop(struct bw_server *s, struct session *x)
{
	pending_remove(s, x);
	session_end(s, x);
}

/* Ends every session and closes the fabric endpoint. */
static void server_ep_close(struct bw_server *s)
{
	while (s->sessions) {
		struct session *x = s->sessions;

		s->sessions = x->next;
		session_end(s, x);
	}
	s->nsessions = 0;
	/* without the endpoint no write is in flight any more; the regions
	 * close before their domain */
	bwf_ep_stop(&s->ep);
	while (s->orphans) {
		struct credit *c = s->orphans;

		s->orphans = c->next;
		credit_free(s, c);
	}
	s->norphans = 0;
	bwf_ep_close(&s->ep);
}

/* An endpoint that failed (its completion queue failed, or writes to
 * departed clients never complete) stays failed, and every session's
 * regions live on it: the sessions end (their clients see it and may
 * reconnect) and the server goes on with a new endpoint. */
static int server_ep_reset(struct bw_server *s)
{
	char prov[sizeof(s->ep.prov)];
	int r;

	snprintf(prov, sizeof(prov), "%s", s->ep.prov);
	fprintf(stderr, "beltway serve: the fabric endpoint failed (%s): "
			"its sessions end, and a new one opens\n",
		strerror(-s->ep.err));
	server_ep_close(s);
	sessions_publish(s);
	r = server_ep_open(s, prov);
	if (r < 0)
		return r;
	sessions_publish(s);
	return 0;
}

void bw_server_close(struct bw_server *s)
{
	if (!s)
		return;
	if (s->published)
		sessions_unpublish();
	while (s->pending)
		pending_drop(s, s->pending);
	server_ep_close(s);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->stopfd >= 0)
		close(s->stopfd);
	if (s->names)
		for (char **n = s->names; *n; n++)
			free(*n);
	free(s->names);
	free(s);
}

void bwf_server_fail(struct bw_server *s, int err)
{
	s->ep.err = err;
}

void bw_server_stop(struct bw_server *s)
{
	uint64_t one = 1;

	(void)!write(s->stopfd, &one, sizeof(one));
}

/* ---- requests -------------------------------------------------------------- */

/* Rings whose bytes are not one stream in their one data segment cannot be
 * read or fed remotely, nor shadowed (yet): a dr ring's headers lie in a
 * ring of their own. fr and vr rings keep theirs in the data. */
#define REMOTE_WHO "remote readers and writers"

int bwf_exportable(const char *name, const struct bwi_map *m, const char *who)
{
	const char *kind = m->g.scale			     ? "a self-scaling"
			   : (m->g.flags & BW_RING_DYNAMIC)  ? "a dynamic"
			   : m->g.layout == BWI_LAYOUT_DR    ? "a dr record"
			   : m->g.layout == BWI_LAYOUT_INDEX ? "an index (IBuf)"
							     : NULL;

	if (kind)
		return bwi_err(ENOTSUP, "ring '%s' is %s ring, which %s "
					"cannot take%s",
			       name, kind, who,
			       m->g.layout == BWI_LAYOUT_DR
				       ? " (its headers lie outside its data)"
			       : m->g.layout == BWI_LAYOUT_INDEX
				       ? " (its records are indices into "
					 "rings of this host)"
				       : "");
	return 0;
}

/* The record layout of m into d (zero on byte rings). */
static void desc_layout(struct bwf_desc *d, const struct bwi_map *m)
{
	d->layout = m->g.layout;
	d->rec_size = m->g.rec_size;
	d->rec_align = m->g.rec_align;
	d->rec_align_off = m->g.rec_align_off;
}

static int open_pull(struct bw_server *s, struct session *x, struct bwf_desc *d)
{
	int r = bwi_map_open(x->name, BWI_ACC_RO, &x->m);

	if (r == 0)
		r = bwf_exportable(x->name, x->m, REMOTE_WHO);
	if (r < 0)
		return r;
	if ((r = bwf_mr_reg(&s->ep, (uint8_t *)x->m->hdr + BWF_POS_OFF,
			    BWF_POS_LEN, FI_REMOTE_READ, &x->pos_mr)) < 0 ||
	    (r = bwf_mr_reg(&s->ep, (uint8_t *)x->m->hdr + BWF_PADS_OFF,
			    BWF_PADS_LEN, FI_REMOTE_READ, &x->pads_mr)) < 0 ||
	    (r = bwf_mr_reg(&s->ep, x->m->data, 2 * x->m->g.capacity,
			    FI_REMOTE_READ, &x->data_mr)) < 0)
		return r;
	d->capacity = x->m->g.capacity;
	d->ring_id = x->m->g.ring_id;
	desc_layout(d, x->m);
	return 0;
}

/* What a lossless remote writer may write up to: a ring ahead of the
 * slowest reader; with no reader attached, nothing beyond the write
 * position (like a FIFO, the writer waits for its first reader). */
static int credit_limit(struct bwi_map *m, uint64_t hd, uint64_t t,
			uint64_t *lim)
{
	uint64_t min;
	int n = bwi_min_reader(m, hd, t, &min);

	if (n < 0)
		return n;
	*lim = n ? min + m->g.capacity : t;
	return 0;
}

static int open_push(struct bw_server *s, struct session *x,
		     const struct bwf_req *q, struct bwf_desc *d)
{
	struct bwi_map *m;
	uint64_t hd, t, lim;
	int r;

	if (!s->ep.atomic_max)
		return bwi_err(ENOTSUP, "provider %s has no 64-bit atomic max, "
					"which a remote writer needs",
			       s->ep.prov);
	r = bw_stream_open(x->name, BW_WRITE | BW_NOWAIT | BW_NONBLOCK, &x->w);
	if (r < 0)
		return r;
	if ((r = bwf_exportable(x->name, x->w->m, REMOTE_WHO)) < 0 ||
	    (r = bwi_remote_writer_claim(x->w)) < 0)
		return r;
	m = x->w->m;
	/* FRP has no credit: on a lossless ring it would overwrite what the
	 * ring's readers have not read */
	if (!(x->flags & BW_REMOTE_LOSSLESS) && m->g.policy != BW_POLICY_FRP)
		return bwi_err(EPERM, "ring '%s' has policy %s: a push without "
				      "credit (--frp) may only feed an frp ring; "
				      "push with credit, or create the ring with "
				      "--policy frp",
			       x->name, bw_policy_name(m->g.policy));
	if ((r = bwf_mr_reg(&s->ep, (uint8_t *)m->hdr + BWF_POS_OFF, BWF_POS_LEN,
			    FI_REMOTE_READ | FI_REMOTE_WRITE, &x->pos_mr)) < 0 ||
	    (r = bwf_mr_reg(&s->ep, m->data, 2 * m->g.capacity,
			    FI_REMOTE_WRITE, &x->data_mr)) < 0)
		return r;
	t = bw_load_acquire(&m->hdr->prod.tail);
	hd = bw_load_acquire(&m->hdr->prod.head);
	x->tail_seen = t;
	d->capacity = m->g.capacity;
	d->ring_id = m->g.ring_id;
	desc_layout(d, m);
	if (x->flags & BW_REMOTE_LOSSLESS) {
		x->cr = calloc(1, sizeof(*x->cr));
		if (!x->cr)
			return -ENOMEM;
		if ((r = bwf_mr_reg(&s->ep, &x->cr->val, sizeof(x->cr->val),
				    FI_WRITE, &x->cr->mr)) < 0)
			return r;
		if ((r = bwf_av_insert(&s->ep, q->addr, q->addr_len,
				       &x->cr->peer)) < 0)
			return r;
		x->cr->have_peer = true;
		x->credit_raddr = q->credit_raddr;
		x->credit_key = q->credit_key;
		if ((r = credit_limit(m, hd, t, &lim)) < 0)
			return r;
		d->credit = x->credit_sent = lim;
	}
	return 0;
}

/* The pending connection that has waited longest without its request
 * coming whole, or NULL. */
static struct session *oldest_silent(const struct bw_server *s)
{
	for (struct session *x = s->pending; x; x = x->next) /* oldest first */
		if (x->q_got < sizeof(x->q))
			return x;
	return NULL;
}

/* Takes a new connection; its request is read as it arrives (a client that
 * connects and says nothing holds nothing up). With every pending place
 * taken, the newcomer takes the place of the connection that has waited
 * longest without its request coming whole: silent connections cannot
 * keep clients out until they time out. */
static void accept_one(struct bw_server *s)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct session *x;
	int fd;

	if (s->npending >= MAX_PENDING && !oldest_silent(s))
		return; /* whole requests all: the next ones wait */
	fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (s->npending >= MAX_PENDING)
		pending_drop(s, oldest_silent(s));
	x = calloc(1, sizeof(*x));
	if (!x) {
		close(fd);
		return;
	}
	x->fd = fd;
	(void)getnameinfo((struct sockaddr *)&ss, sl, x->peer_host,
			  sizeof(x->peer_host), NULL, 0, NI_NUMERICHOST);
	bwf_keepalive(fd, s->timeout_ms);
	x->started_ns = bwi_now_ns();
	{
		struct session **pp = &s->pending; /* first come, first served */

		while (*pp)
			pp = &(*pp)->next;
		*pp = x;
	}
	s->npending++;
}

/* Reads what arrived of a pending request: 1 once it is whole, 0 while
 * part of it is missing, -1 when the client closed or failed. */
static int request_read(struct session *x)
{
	ssize_t k = recv(x->fd, (uint8_t *)&x->q + x->q_got,
			 sizeof(x->q) - x->q_got, MSG_DONTWAIT);

	if (k < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (k <= 0)
		return -1;
	x->q_got += (size_t)k;
	return x->q_got == sizeof(x->q);
}

/* Serves x's whole request: opens the ring, answers, and x becomes a
 * session (true); or answers why not and drops it. */
static bool request_serve(struct bw_server *s, struct session *x)
{
	const struct bwf_req q = x->q;
	struct bwf_rep p;
	int r = 0;

	memset(&p, 0, sizeof(p));
	p.magic = BWF_REP_MAGIC;
	p.version = BWF_PROTO_VERSION;
	bwi_err_clear();
	/* From the network: every field is checked before use. */
	if (q.magic != BWF_REQ_MAGIC || q.version != BWF_PROTO_VERSION)
		r = bwi_err(EPROTO, "not a Beltway request, or another version");
	else if (q.access != BWF_ACC_PULL && q.access != BWF_ACC_PUSH)
		r = bwi_err(EPROTO, "unknown access %u", q.access);
	else if (q.flags & ~(uint32_t)BW_REMOTE_LOSSLESS)
		r = bwi_err(EPROTO, "unknown flags %#x", q.flags);
	else if (!memchr(q.name, 0, sizeof(q.name)) ||
		 !memchr(q.prov, 0, sizeof(q.prov)) || q.addr_len > BWF_ADDR_MAX)
		r = bwi_err(EPROTO, "malformed request");
	else if (strcmp(q.prov, s->ep.prov))
		r = bwi_err(EPROTO, "the client uses provider '%s', this server "
				    "'%s'",
			    q.prov, s->ep.prov);
	else if (s->nsessions >= MAX_SESSIONS)
		r = bwi_err(EBUSY, "the server has %u sessions, its most",
			    s->nsessions);
	else if ((r = bwi_name_check(q.name)) == 0 && !exported(s, q.name))
		r = bwi_err(EACCES, "ring '%s' is not exported by this server",
			    q.name);
	if (r == 0) {
		snprintf(x->name, sizeof(x->name), "%s", q.name);
		x->access = q.access;
		x->flags = q.flags;
		x->generation = ++s->next_gen;
		p.desc.access = q.access;
		r = q.access == BWF_ACC_PULL ? open_pull(s, x, &p.desc)
					     : open_push(s, x, &q, &p.desc);
	}
	if (r == 0) {
		p.desc.generation = x->generation;
		p.desc.addr_len = (uint32_t)s->ep.addr_len;
		memcpy(p.desc.addr, s->ep.addr, s->ep.addr_len);
		p.desc.pos_raddr = x->pos_mr.raddr;
		p.desc.pos_key = x->pos_mr.key;
		p.desc.pos_len = BWF_POS_LEN;
		p.desc.data_raddr = x->data_mr.raddr;
		p.desc.data_key = x->data_mr.key;
		p.desc.pads_raddr = x->pads_mr.raddr;
		p.desc.pads_key = x->pads_mr.key;
		bwf_desc_seal(&p.desc);
	} else {
		p.status = r;
		snprintf(p.msg, sizeof(p.msg), "%s", bw_strerror_last());
	}
	if (bwf_full_io(x->fd, &p, sizeof(p), true, s->timeout_ms) < 0 || r < 0)
		goto drop;
	x->started_ns = bwi_now_ns();
	x->next = s->sessions;
	s->sessions = x;
	s->nsessions++;
	sessions_publish(s);
	return true;
drop:
	session_end(s, x);
	return false;
}

/* Serves whole requests in the order their clients came, while no new
 * session is still making its first contact (see bw_server_run; a served
 * one makes *waiting true), and drops the connections older than the
 * timeout that are still pending: their requests did not arrive, or their
 * clients stopped waiting for the answer. */
static void pending_tend(struct bw_server *s, bool *waiting)
{
	uint64_t now = bwi_now_ns();

	for (struct session *x = s->pending, *nx; x; x = nx) {
		nx = x->next;
		if (now - x->started_ns > tmo_ns(s)) {
			pending_drop(s, x);
		} else if (x->q_got == sizeof(x->q) && !*waiting) {
			pending_remove(s, x);
			*waiting = request_serve(s, x);
		}
	}
}

/* ---- push sessions ----------------------------------------------------------- */

/* Ends session x, which is on the server's list. */
static void session_drop(struct bw_server *s, struct session *x)
{
	for (struct session **pp = &s->sessions; *pp; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			session_end(s, x);
			s->nsessions--;
			break;
		}
	}
	sessions_publish(s);
}

/* Returns false when the session must end: its credit could not be
 * written, so its writer would wait for it forever. */
static bool push_tend(struct bw_server *s, struct session *x)
{
	struct bwi_map *m = x->w->m;
	uint64_t t = bw_load_acquire(&m->hdr->prod.tail), hd, lim;
	struct credit *c = x->cr;
	uint64_t now;

	if (t != x->tail_seen) {
		x->tail_seen = t;
		bwi_wake_readers(m);
	}
	if (!c)
		return true;
	if (c->busy) {
		if (!c->op.done)
			return true;
		c->busy = false;
		if (c->op.err)
			return false;
	}
	now = bwi_now_ns();
	if (now - x->reaped_ns > 200u * 1000000u) {
		/* a dead reader must not hold the writer back forever */
		bwi_reap(m);
		x->reaped_ns = now;
	}
	hd = bw_load_acquire(&m->hdr->prod.head);
	if (credit_limit(m, hd, t, &lim) < 0 || lim <= x->credit_sent) {
		c->full_since = 0;
		return true;
	}
	c->val = lim;
	switch (bwf_write_try(&s->ep, c->peer, &c->val, sizeof(c->val),
			      c->mr.desc, x->credit_raddr, x->credit_key,
			      &c->op)) {
	case 0:
		c->busy = true;
		c->full_since = 0;
		x->credit_sent = lim;
		return true;
	case -EAGAIN:
		/* the next turn of the loop tries again, for the timeout */
		if (!c->full_since)
			c->full_since = now;
		return now - c->full_since <= tmo_ns(s);
	default:
		return false;
	}
}

/* ---- the loop -------------------------------------------------------------- */

int bw_server_run(struct bw_server *s, int timeout_ms)
{
	uint64_t end = timeout_ms < 0 ? UINT64_MAX
				      : bwi_now_ns() + (uint64_t)timeout_ms * 1000000u;

	for (;;) {
		struct pollfd pf[MAX_SESSIONS + MAX_PENDING + 3];
		struct session *xs[MAX_SESSIONS + MAX_PENDING + 3];
		unsigned n = 0;
		bool push = false, waiting;
		int wait_ms, r;
		uint64_t now;

		if (!s->ep.ep)
			return bwi_err(EIO, "the server has no fabric endpoint "
					    "(replacing a failed one failed)");
		/* writes that never complete, to clients long gone (a
		 * provider that keeps them queued): the endpoint goes too */
		if (s->norphans > MAX_ORPHANS && !s->ep.err)
			s->ep.err = bwi_err(EIO, "%u credit writes to departed "
						 "clients never completed",
					    s->norphans);
		if (s->ep.err) {
			/* at most one replacement a second: one that fails
			 * again at once must not spin, and a stop is heard */
			struct pollfd sp = {.fd = s->stopfd, .events = POLLIN};

			if (bwi_now_ns() - s->reset_ns < 1000000000u &&
			    poll(&sp, 1, 1000) == 1) {
				uint64_t v;

				(void)!read(s->stopfd, &v, sizeof(v));
				return 0;
			}
			s->reset_ns = bwi_now_ns();
			if ((r = server_ep_reset(s)) < 0)
				return r;
		}
		r = bwf_progress(&s->ep);
		if (r < 0) {
			s->ep.err = r;
			continue;
		}
		pf[n++] = (struct pollfd){.fd = s->stopfd, .events = POLLIN};
		/* New clients are served when the last one made its first
		 * contact over the fabric: shm (libfabric 1.17) crashed the
		 * server when several new peers reached it at once. A client
		 * that never says so holds the queue for the timeout at most. */
		waiting = false;
		for (struct session *x = s->sessions; x; x = x->next)
			if (!x->acked && bwi_now_ns() - x->started_ns < tmo_ns(s))
				waiting = true;
		pending_tend(s, &waiting);
		pf[n++] = (struct pollfd){.fd = s->npending < MAX_PENDING ||
							       oldest_silent(s)
						       ? s->lfd
						       : -1,
					  .events = POLLIN};
		/* requests still arriving */
		for (struct session *x = s->pending; x; x = x->next) {
			if (x->q_got == sizeof(x->q))
				continue;
			xs[n] = x;
			pf[n++] = (struct pollfd){.fd = x->fd, .events = POLLIN};
		}
		orphans_reap(s);
		for (struct session *x = s->sessions, *nx; x; x = nx) {
			nx = x->next;
			if (x->access == BWF_ACC_PUSH) {
				if (!push_tend(s, x)) {
					session_drop(s, x);
					continue;
				}
				push = true;
			}
			xs[n] = x;
			pf[n++] = (struct pollfd){.fd = x->fd, .events = POLLIN};
		}
		now = bwi_now_ns();
		if (now >= end)
			return 0;
		wait_ms = end == UINT64_MAX ? 1000 : (int)((end - now) / 1000000u) + 1;
		/* Push sessions are watched every millisecond: a provider that
		 * progresses on its own thread tells us nothing. */
		if (push && wait_ms > 1)
			wait_ms = 1;
		/* and connections without a session at least every 100 ms:
		 * their requests' timeouts, and a served one that waits */
		if (s->pending && wait_ms > 100)
			wait_ms = 100;
		if (s->ep.cq_fd >= 0) {
			struct fid *f = &s->ep.cq->fid;

			if (fi_trywait(s->ep.fabric, &f, 1) == FI_SUCCESS)
				pf[n++] = (struct pollfd){.fd = s->ep.cq_fd,
							  .events = POLLIN};
			else
				wait_ms = 0;
		} else if (!s->ep.auto_progress) {
			wait_ms = 0; /* nothing to sleep on: keep driving */
		}
		r = poll(pf, n, wait_ms);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r <= 0) {
			if (wait_ms == 0)
				sched_yield();
			continue;
		}
		if (pf[0].revents) {
			uint64_t v;

			(void)!read(s->stopfd, &v, sizeof(v));
			return 0;
		}
		for (unsigned i = 2; i < n; i++) {
			char c[64];
			ssize_t k;

			if (pf[i].fd == s->ep.cq_fd || !pf[i].revents)
				continue;
			if (xs[i]->q_got < sizeof(xs[i]->q)) {
				/* a request arriving; whole, it is served
				 * at the next turn */
				if (request_read(xs[i]) < 0)
					pending_drop(s, xs[i]);
				continue;
			}
			/* After its request a client sends one byte, once its
			 * first one-sided read worked; anything else is the end
			 * of the session. */
			k = recv(pf[i].fd, c, sizeof(c), MSG_DONTWAIT);
			if (k < 0 && errno == EAGAIN)
				continue;
			if (k == 1 && c[0] == 'k' && !xs[i]->acked) {
				xs[i]->acked = true;
				continue;
			}
			session_drop(s, xs[i]);
		}
		if (pf[1].revents)
			accept_one(s);
	}
}
