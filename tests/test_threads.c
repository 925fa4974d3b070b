/* SPDX-License-Identifier: MIT */
/*
 * Threads of one process on one ring, each with its own handle. A process
 * maps a ring once, so the threads touch the same addresses: this is the
 * test the TSan build is for (TSan cannot see across processes).
 *
 * Two writer threads write 256-byte records {writer, sequence, pattern};
 * three reader threads each read the whole stream and check that every
 * record is whole (writes are atomic), that each writer's records arrive in
 * order with none missing, and that every payload byte is right.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define REC 256
#define WRITERS 2
#define READERS 3
#define PER_WRITER 40000

struct rec {
	uint32_t writer;
	uint32_t pad;
	uint64_t seq;
	uint8_t payload[REC - 16];
};

static void fill_rec(struct rec *r, uint32_t w, uint64_t seq)
{
	r->writer = w;
	r->pad = 0;
	r->seq = seq;
	bwt_fill(r->payload, sizeof(r->payload), seq * 1000 + w, w);
}

struct targ {
	struct bw_stream *s;
	uint32_t id;
	int bad;
	const char *why;
	char msg[256];
	bool keep; /* the writer thread leaves its handle open */
};

static void *writer(void *p)
{
	struct targ *a = p;
	struct rec r;

	for (uint64_t i = 0; i < PER_WRITER; i++) {
		void *q;

		fill_rec(&r, a->id, i);
		/* alternate copy-in and poke_acquire/complete */
		if (i % 2 == 0) {
			if (bw_stream_write(a->s, &r, REC) != REC) {
				a->bad = 1;
				a->why = "write";
				snprintf(a->msg, sizeof(a->msg), "%s",
					 bw_strerror_last());
				break;
			}
		} else if (bw_stream_poke_acquire(a->s, &q, REC) != REC ||
			   (memcpy(q, &r, REC), bw_stream_poke_complete(a->s, REC)) != 0) {
			a->bad = 1;
			a->why = "poke";
			snprintf(a->msg, sizeof(a->msg), "%s", bw_strerror_last());
			break;
		}
	}
	/* while a churner may still come and go, stay attached: with no
	 * writer at all the readers would rightly see the end */
	if (!a->keep)
		bw_stream_close(a->s);
	return NULL;
}

static void *reader(void *p)
{
	struct targ *a = p;
	uint64_t next[WRITERS] = {0};
	struct rec r;
	size_t have = 0;

	for (;;) {
		ssize_t n = bw_stream_read(a->s, (uint8_t *)&r + have, REC - have);

		if (n == 0)
			break;
		if (n < 0) {
			a->bad = 1;
			a->why = "read error";
			break;
		}
		have += (size_t)n;
		if (have < REC)
			continue;
		have = 0;
		if (r.writer >= WRITERS || r.seq != next[r.writer] ||
		    bwt_verify(r.payload, sizeof(r.payload),
			       r.seq * 1000 + r.writer, r.writer) != -1) {
			a->bad = 1;
			a->why = "torn, lost or reordered record";
			break;
		}
		next[r.writer]++;
	}
	for (int w = 0; w < WRITERS && !a->bad; w++)
		if (next[w] != PER_WRITER) {
			a->bad = 1;
			a->why = "records missing at the end";
		}
	bw_stream_close(a->s);
	return NULL;
}

/* Writer 1 joins and leaves again and again while writer 0 streams: each
 * join switches the lone writer from plain stores to CAS (and each leave
 * back), and no record may be torn, lost or reordered by the switch. */
#define CHURN_ROUNDS 400
#define CHURN_RECS (PER_WRITER / CHURN_ROUNDS)

static void *churner(void *p)
{
	struct targ *a = p;
	struct rec r;
	uint64_t seq = 0;

	for (int round = 0; round < CHURN_ROUNDS && !a->bad; round++) {
		struct bw_stream *w;

		if (bw_stream_open("threads", BW_WRITE, &w) != 0) {
			a->bad = 1;
			a->why = "open";
			snprintf(a->msg, sizeof(a->msg), "%s", bw_strerror_last());
			break;
		}
		for (int i = 0; i < CHURN_RECS; i++, seq++) {
			fill_rec(&r, a->id, seq);
			if (bw_stream_write(w, &r, REC) != REC) {
				a->bad = 1;
				a->why = "write";
				snprintf(a->msg, sizeof(a->msg), "%s",
					 bw_strerror_last());
				break;
			}
		}
		bw_stream_close(w);
	}
	return NULL;
}

static void run(uint64_t ring, bool churn)
{
	struct bw_ring_opts o = BW_RING_OPTS_INIT;
	struct targ w[WRITERS], r[READERS];
	pthread_t tw[WRITERS], tr[READERS];

	o.size = ring;
	bw_unlink("threads");
	CU_ASSERT_EQUAL_FATAL(bw_mkfifo("threads", &o), 0);
	for (int i = 0; i < READERS; i++) {
		r[i] = (struct targ){.id = (uint32_t)i};
		CU_ASSERT_EQUAL_FATAL(bw_stream_open("threads", BW_READ | BW_NOWAIT,
						     &r[i].s),
				      0);
	}
	for (int i = 0; i < WRITERS; i++) {
		w[i] = (struct targ){.id = (uint32_t)i};
		if (!churn || i == 0)
			CU_ASSERT_EQUAL_FATAL(bw_stream_open("threads", BW_WRITE,
							     &w[i].s),
					      0);
		w[i].keep = churn;
	}
	for (int i = 0; i < READERS; i++)
		pthread_create(&tr[i], NULL, reader, &r[i]);
	for (int i = 0; i < WRITERS; i++)
		pthread_create(&tw[i], NULL, churn && i ? churner : writer, &w[i]);
	for (int i = 0; i < WRITERS; i++) {
		pthread_join(tw[i], NULL);
		if (w[i].bad)
			printf("\n    writer %d: %s: %s ", i, w[i].why, w[i].msg);
		CU_ASSERT_EQUAL(w[i].bad, 0);
	}
	if (churn)
		bw_stream_close(w[0].s);
	for (int i = 0; i < READERS; i++) {
		pthread_join(tr[i], NULL);
		if (r[i].bad)
			printf("\n    reader %d: %s ", i, r[i].why);
		CU_ASSERT_EQUAL(r[i].bad, 0);
	}
	bw_unlink("threads");
}

static void test_small_ring(void)
{
	run(4096, false); /* sixteen records: constant waiting on both sides */
}

static void test_default_ring(void)
{
	run(0, false);
}

static void test_join_leave(void)
{
	run(0, true);
}

static void reg(void)
{
	bwt_add("2 writers, 3 readers, 4 KiB ring", test_small_ring);
	bwt_add("2 writers, 3 readers, default ring", test_default_ring);
	bwt_add("a writer joins and leaves while another streams", test_join_leave);
}

int main(void)
{
	return bwt_main("threads", reg);
}
