/* SPDX-License-Identifier: MIT */
/*
 * The environment bootstrap for job launchers: BELTWAY_RANK, BELTWAY_SIZE
 * and BELTWAY_ROOT=HOST:PORT. Every rank exports its ring with a server on
 * its own thread; rank 0 listens at the root address, gathers each rank's
 * server address (a join message) and sends the whole table back to all.
 * Only this exchange uses sockets; the rings are then reached by one-sided
 * operations through bw_remote_open(bw_bootstrap_url(b, r), ...).
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bwf.h"
#include "bwi_ring.h"

#define BOOT_MAGIC_JOIN 0x4a425742u  /* "BWBJ" */
#define BOOT_MAGIC_TABLE 0x54425742u /* "BWBT" */
#define BOOT_MAX_SIZE 4096
#define URL_MAX (64 + 8 + BWI_NAME_MAX + 2)

struct boot_entry {
	uint32_t port;
	char host[64];
};

struct boot_join {
	uint32_t magic, version, rank, size;
	struct boot_entry at;
};

struct bw_bootstrap {
	int rank, size;
	struct bw_server *srv;
	pthread_t thr;
	bool running;
	char (*urls)[URL_MAX];
};

static void *serve_thread(void *arg)
{
	struct bw_bootstrap *b = arg;

	(void)bw_server_run(b->srv, -1);
	return NULL;
}

static int env_int(const char *var, long lo, long hi, int *out)
{
	const char *v = getenv(var);
	char *end;
	long x;

	if (!v || !*v)
		return bwi_err(EINVAL, "%s is not set (a job launcher sets "
				       "BELTWAY_RANK, BELTWAY_SIZE, BELTWAY_ROOT)",
			       var);
	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || *end || x < lo || x > hi)
		return bwi_err(EINVAL, "%s='%s' is not a number from %ld to %ld",
			       var, v, lo, hi);
	*out = (int)x;
	return 0;
}

static int listen_on(const char *host, const char *port)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE},
			*ai;
	int fd, one = 1;

	if (getaddrinfo(host, port, &hints, &ai))
		return bwi_err(EINVAL, "cannot resolve the root address %s:%s",
			       host, port);
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 256)) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return bwi_err(e, "rank 0 cannot listen on the root address "
				  "%s:%s",
			       host, port);
	}
	freeaddrinfo(ai);
	return fd;
}

/* Connects to the root, retrying while it is not listening yet. */
static int connect_root(const char *host, const char *port, uint64_t deadline,
			uint32_t tmo, int *fd)
{
	for (;;) {
		int r = bwf_tcp_connect(host, port, tmo, fd);

		if (r != -ECONNREFUSED || bwi_now_ns() > deadline)
			return r;
		(void)poll(NULL, 0, 20); /* the root is starting: try again */
	}
}

/* Rank 0: takes size-1 joins, then sends everyone the table. */
static int gather(struct bw_bootstrap *b, int lfd, struct boot_entry *tab,
		  uint64_t deadline, uint32_t tmo)
{
	int *fds = calloc((size_t)b->size, sizeof(int)), r = 0, joined = 1;

	if (!fds)
		return -ENOMEM;
	for (int i = 0; i < b->size; i++)
		fds[i] = -1;
	while (joined < b->size) {
		struct pollfd p = {.fd = lfd, .events = POLLIN};
		uint64_t now = bwi_now_ns();
		struct boot_join j;
		int fd;

		if (now > deadline) {
			r = bwi_err(ETIMEDOUT, "%d of %d ranks joined before the "
					       "timeout",
				    joined, b->size);
			goto out;
		}
		if (poll(&p, 1, (int)((deadline - now) / 1000000u) + 1) <= 0)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		/* From the network: checked before use. */
		if (bwf_full_io(fd, &j, sizeof(j), false, tmo) < 0 ||
		    j.magic != BOOT_MAGIC_JOIN || j.version != BWF_PROTO_VERSION ||
		    j.size != (uint32_t)b->size || j.rank == 0 ||
		    j.rank >= (uint32_t)b->size || fds[j.rank] >= 0 ||
		    !memchr(j.at.host, 0, sizeof(j.at.host)) || j.at.port == 0 ||
		    j.at.port > 65535) {
			close(fd); /* not one of ours, or a duplicate */
			continue;
		}
		fds[j.rank] = fd;
		tab[j.rank] = j.at;
		joined++;
	}
	for (int i = 1; i < b->size; i++) {
		uint32_t hdr[2] = {BOOT_MAGIC_TABLE, (uint32_t)b->size};

		if ((r = bwf_full_io(fds[i], hdr, sizeof(hdr), true, tmo)) < 0 ||
		    (r = bwf_full_io(fds[i], tab, sizeof(*tab) * (size_t)b->size,
				     true, tmo)) < 0)
			goto out;
	}
out:
	for (int i = 0; i < b->size; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	return r;
}

/* Ranks > 0: join, and receive the table. */
static int join(struct bw_bootstrap *b, int fd, const struct boot_entry *me,
		struct boot_entry *tab, uint32_t tmo)
{
	struct boot_join j = {.magic = BOOT_MAGIC_JOIN,
			      .version = BWF_PROTO_VERSION,
			      .rank = (uint32_t)b->rank,
			      .size = (uint32_t)b->size,
			      .at = *me};
	uint32_t hdr[2];
	int r;

	if ((r = bwf_full_io(fd, &j, sizeof(j), true, tmo)) < 0 ||
	    (r = bwf_full_io(fd, hdr, sizeof(hdr), false, tmo * 4)) < 0)
		return r;
	if (hdr[0] != BOOT_MAGIC_TABLE || hdr[1] != (uint32_t)b->size)
		return bwi_err(EPROTO, "the root sent no table for a job of %d",
			       b->size);
	if ((r = bwf_full_io(fd, tab, sizeof(*tab) * (size_t)b->size, false,
			     tmo)) < 0)
		return r;
	for (int i = 0; i < b->size; i++)
		if (!memchr(tab[i].host, 0, sizeof(tab[i].host)) ||
		    tab[i].port == 0 || tab[i].port > 65535)
			return bwi_err(EPROTO, "the root's table is malformed");
	return 0;
}

int bw_bootstrap_env(const char *name, const struct bw_fabric_opts *opts,
		     struct bw_bootstrap **out)
{
	struct bw_fabric_opts so = BW_FABRIC_OPTS_INIT;
	const char *names[2] = {name, NULL};
	char rhost[256], rport[8], listen[300];
	struct boot_entry me = {0}, *tab = NULL;
	struct bw_bootstrap *b;
	uint32_t tmo = bwf_timeout(opts);
	uint64_t deadline = bwi_now_ns() + 4ull * tmo * 1000000u;
	int r, fd = -1;

	bwi_err_clear();
	if (!out || !name || (r = bwi_name_check(name)) < 0)
		return out && name ? r : bwi_err(EINVAL, "bw_bootstrap_env: no name");
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	if ((r = env_int("BELTWAY_SIZE", 1, BOOT_MAX_SIZE, &b->size)) < 0 ||
	    (r = env_int("BELTWAY_RANK", 0, b->size - 1, &b->rank)) < 0 ||
	    (r = bwf_parse_hostport(getenv("BELTWAY_ROOT"), rhost, sizeof(rhost),
				    rport, sizeof(rport), NULL)) < 0)
		goto fail;
	tab = calloc((size_t)b->size, sizeof(*tab));
	b->urls = calloc((size_t)b->size, sizeof(*b->urls));
	if (!tab || !b->urls) {
		r = -ENOMEM;
		goto fail;
	}
	/* Our address: the root's own, or the one we reach the root by. */
	if (b->rank == 0) {
		if ((fd = listen_on(rhost, rport)) < 0) {
			r = fd;
			goto fail;
		}
		if (strlen(rhost) >= sizeof(me.host)) {
			r = bwi_err(EINVAL, "root host name too long");
			goto fail;
		}
		memcpy(me.host, rhost, strlen(rhost) + 1);
	} else {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		if ((r = connect_root(rhost, rport, deadline, tmo, &fd)) < 0)
			goto fail;
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) ||
		    getnameinfo((struct sockaddr *)&ss, sl, me.host, sizeof(me.host),
				NULL, 0, NI_NUMERICHOST)) {
			r = bwi_err(EIO, "cannot tell this rank's address");
			goto fail;
		}
	}
	if (opts)
		so = *opts;
	so.struct_size = sizeof(so);
	so.names = names;
	snprintf(listen, sizeof(listen), strchr(me.host, ':') ? "[%s]:0" : "%s:0",
		 me.host);
	if ((r = bw_server_open(listen, &so, &b->srv)) < 0)
		goto fail;
	me.port = (uint32_t)bw_server_port(b->srv);
	if (pthread_create(&b->thr, NULL, serve_thread, b)) {
		r = bwi_err(EAGAIN, "cannot start the server thread");
		goto fail;
	}
	b->running = true;
	tab[b->rank] = me;
	r = b->rank == 0 ? gather(b, fd, tab, deadline, tmo)
			 : join(b, fd, &me, tab, tmo);
	if (r < 0)
		goto fail;
	for (int i = 0; i < b->size; i++)
		snprintf(b->urls[i], sizeof(b->urls[i]),
			 strchr(tab[i].host, ':') ? "[%s]:%u/%s" : "%s:%u/%s",
			 tab[i].host, tab[i].port, name);
	close(fd);
	free(tab);
	*out = b;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	free(tab);
	bw_bootstrap_close(b);
	return r;
}

int bw_bootstrap_rank(const struct bw_bootstrap *b)
{
	return b->rank;
}

int bw_bootstrap_size(const struct bw_bootstrap *b)
{
	return b->size;
}

const char *bw_bootstrap_url(const struct bw_bootstrap *b, int rank)
{
	return rank >= 0 && rank < b->size ? b->urls[rank] : NULL;
}

void bw_bootstrap_close(struct bw_bootstrap *b)
{
	if (!b)
		return;
	if (b->running) {
		bw_server_stop(b->srv);
		pthread_join(b->thr, NULL);
	}
	bw_server_close(b->srv);
	free(b->urls);
	free(b);
}
