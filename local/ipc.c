/* SPDX-License-Identifier: MIT */
/* IPC on anonymous rings: pipe, mpipe, fork (thesis Table 4.1). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "bwi_stream.h"


/* n handles on one new anonymous ring: ends[0] writes, the rest read. */
static int make_ends(struct bw_stream **ends, unsigned n,
		     const struct bw_ring_opts *opts)
{
	struct bwi_map *m, *wt = NULL;
	unsigned made = 0;
	int r;

	r = bwi_map_anon(opts, &m);
	if (r < 0)
		return r;
	if (m->g.flags & BW_RING_INDEX) {
		/* an IBuf: its default DBuf is anonymous too */
		struct bw_ring_opts wo;

		bwi_wt_opts(opts, m->g.capacity, &wo);
		r = bwi_map_anon(&wo, &wt);
		if (r < 0) {
			bwi_map_put(m);
			return r;
		}
	}
	/* Readers attach first, so the writer never sees a ring without one. */
	for (unsigned i = n; i-- > 0;) {
		r = bwi_stream_new(&ends[i]);
		if (r < 0)
			goto err;
		if (wt) {
			bwi_map_get(wt);
			ends[i]->wt = wt;
		}
		bwi_map_get(m);
		r = bwi_attach(ends[i], m,
			       (i == 0 ? BW_WRITE : BW_READ) | BWI_NO_PEER_WAIT);
		if (r < 0) {
			bwi_map_put(m);
			bwi_map_put(ends[i]->wt);
			bwi_stream_free(ends[i]);
			goto err;
		}
		made++;
	}
	bwi_map_put(m);
	bwi_map_put(wt);
	return 0;
err:
	for (unsigned i = n - made; i < n; i++)
		bw_stream_close(ends[i]);
	bwi_map_put(m);
	bwi_map_put(wt);
	return r;
}

BW_API int bw_pipe(struct bw_stream *ends[2], const struct bw_ring_opts *opts)
{
	struct bw_stream *e[2];
	int r;

	if (!ends)
		return bwi_err(EINVAL, "bw_pipe needs an array of two ends");
	r = make_ends(e, 2, opts);
	if (r < 0)
		return r;
	ends[0] = e[1]; /* read end, as pipe(2) */
	ends[1] = e[0];
	return 0;
}

BW_API int bw_mpipe(struct bw_stream **ends, unsigned n,
		    const struct bw_ring_opts *opts)
{
	if (!ends || n < 2 || n > BWI_MAX_READERS)
		return bwi_err(EINVAL, "bw_mpipe takes 2 to %u ends",
			       BWI_MAX_READERS);
	if ((opts && opts->max_readers ? opts->max_readers
				       : BWI_DEFAULT_READERS) < n - 1)
		return bwi_err(EINVAL, "bw_mpipe of %u ends needs %u reader "
				       "slots (bw_ring_opts.max_readers)",
			       n, n - 1);
	return make_ends(ends, n, opts);
}

/* The parent returns only once the child holds attachments of its own: until
 * then the parent's attachments protect the positions the child starts at. */
BW_API pid_t bw_fork(void)
{
	int sync[2];
	pid_t pid;
	char c = 0;

	if (pipe2(sync, O_CLOEXEC) < 0)
		return bwi_err(errno, "pipe for fork");
	pid = fork();
	if (pid < 0) {
		int e = errno;

		close(sync[0]);
		close(sync[1]);
		return bwi_err(e, "fork");
	}
	if (pid == 0) {
		close(sync[0]);
		bwi_handles_lock();
		for (struct bw_stream *s = bwi_handles_first(); s; s = s->next)
			bwi_reattach(s);
		bwi_handles_unlock();
		if (write(sync[1], &c, 1) < 0)
			(void)0; /* the parent then sees EOF: the same signal */
		close(sync[1]);
		return 0;
	}
	close(sync[1]);
	while (read(sync[0], &c, 1) < 0 && errno == EINTR)
		;
	close(sync[0]);
	return pid;
}
