/* SPDX-License-Identifier: MIT */
/*
 * Memory ordering, named by intent (after liburing's barrier.h). Every use
 * carries a comment naming the edge it pairs with.
 *
 * Shared memory holds only lock-free atomics: another process may be mapping
 * the same words.
 */
#ifndef BWI_ATOMIC_H
#define BWI_ATOMIC_H

#include <stdatomic.h>
#include <stdint.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");

typedef _Atomic uint64_t bwi_a64;
typedef _Atomic uint32_t bwi_a32;

#define bw_load_relaxed(p) atomic_load_explicit((p), memory_order_relaxed)
#define bw_load_acquire(p) atomic_load_explicit((p), memory_order_acquire)
#define bw_store_relaxed(p, v) \
	atomic_store_explicit((p), (v), memory_order_relaxed)
#define bw_store_release(p, v) \
	atomic_store_explicit((p), (v), memory_order_release)
#define bw_fetch_add(p, v) atomic_fetch_add_explicit((p), (v), memory_order_seq_cst)
#define bw_fetch_sub(p, v) atomic_fetch_sub_explicit((p), (v), memory_order_seq_cst)
#define bw_cas(p, expp, v)                                                  \
	atomic_compare_exchange_strong_explicit((p), (expp), (v),           \
						memory_order_seq_cst,       \
						memory_order_seq_cst)
#define bw_smp_mb() atomic_thread_fence(memory_order_seq_cst)
#define bw_smp_rmb() atomic_thread_fence(memory_order_acquire)
#define bw_smp_wmb() atomic_thread_fence(memory_order_release)

/* A counter only its owner writes: a relaxed read-modify-store, no RMW. */
#define bw_own_add(p, v) bw_store_relaxed((p), bw_load_relaxed(p) + (v))

static inline void bw_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
