/*
 * src/rcu.c — the urcu-memb wrappers of rcu.h and the deferred-free batches
 * of internal.h.
 *
 * _LGPL_SOURCE is deliberately not defined: liburcu's internals stay in the
 * (uninstrumented) shared library, which keeps ThreadSanitizer quiet about
 * its futex handshake without hiding our own races.
 */
#include "internal.h"

#include <urcu/urcu-memb.h>

#ifdef GM_TSAN
char gm_rcu_tsan_token;
#endif

void gm_rcu_register_thread(void) { urcu_memb_register_thread(); }
void gm_rcu_unregister_thread(void) { urcu_memb_unregister_thread(); }
void gm_rcu_read_lock(void) { urcu_memb_read_lock(); }

int gm_rcu_read_ongoing(void) { return urcu_memb_read_ongoing(); }

void gm_rcu_read_unlock(void)
{
	GM_TSAN_RELEASE();
	urcu_memb_read_unlock();
}

void gm_rcu_synchronize(void)
{
	urcu_memb_synchronize_rcu();
	GM_TSAN_ACQUIRE();
}

void gm_rcu_barrier(void)
{
	urcu_memb_barrier();
	GM_TSAN_ACQUIRE();
}

/* ---- deferred frees ---------------------------------------------------- */

struct gm_retire_batch {
	struct rcu_head rcu;            /* first: call_rcu's link */
	const struct gm_allocator *alloc;
	struct gm_retire_batch *next;   /* on the spare list */
	uint32_t n;
	struct {
		void *ptr;
		size_t size;
	} items[GM_RETIRE_BATCH];
};

/* An item of size 0 is a deferred call (gm_reclaim_defer), not memory. */
static void run_item(const struct gm_allocator *a, void *ptr, size_t size)
{
	if (size == 0) {
		struct gm_deferred *d = ptr;
		d->fn(d);
	} else {
		gm_alloc_release(a, ptr, size);
	}
}

static void batch_free_items(struct gm_retire_batch *b)
{
	for (uint32_t i = 0; i < b->n; i++)
		run_item(b->alloc, b->items[i].ptr, b->items[i].size);
}

static void batch_after_grace_period(struct rcu_head *head)
{
	struct gm_retire_batch *b = (struct gm_retire_batch *)head;
	GM_TSAN_HANDOFF_RECV(b);
	GM_TSAN_ACQUIRE();
	batch_free_items(b);
	gm_alloc_release(b->alloc, b, sizeof(*b));
	/* What the frees did (e.g. a counting allocator's counters) happens
	 * before whatever follows the rcu_barrier() that waits for us. */
	GM_TSAN_RELEASE();
}

void gm_reclaim_init(struct gm_reclaim *r, const struct gm_allocator *a,
		     bool rcu)
{
	r->alloc = a ? a : gm_alloc_default();
	r->rcu = rcu;
	r->cur = NULL;
	r->spare = NULL;
	r->room = 0;
	r->pending_bytes = 0;
}

int gm_reclaim_reserve(struct gm_reclaim *r, size_t n)
{
	if (!r->rcu)
		return 0;
	if (r->pending_bytes >= GM_RETIRE_PENDING_MAX)
		gm_reclaim_flush(r); /* between writes: no retirement is owed */
	while (r->room < n) {
		struct gm_retire_batch *b = gm_alloc_mem(r->alloc, sizeof(*b),
							 _Alignof(struct gm_retire_batch));
		if (!b)
			return -ENOMEM; /* spares already taken stay for later */
		b->alloc = r->alloc;
		b->n = 0;
		b->next = r->spare;
		r->spare = b;
		r->room += GM_RETIRE_BATCH;
	}
	return 0;
}

static void batch_submit(struct gm_reclaim *r)
{
	struct gm_retire_batch *b = r->cur;
	r->cur = NULL;
	r->pending_bytes = 0;
	GM_TSAN_HANDOFF_SEND(b);
	urcu_memb_call_rcu(&b->rcu, batch_after_grace_period);
}

/* Queues (ptr, size): memory to free, or with size 0 a deferred call. */
static void retire_item(struct gm_reclaim *r, void *ptr, size_t size)
{
	if (!r->rcu) {
		run_item(r->alloc, ptr, size);
		return;
	}
	if (r->cur && r->cur->n == GM_RETIRE_BATCH)
		batch_submit(r);
	if (!r->cur) {
		/* A reserve guaranteed a spare; fall back to a synchronous
		 * grace period only if a caller forgot to reserve. */
		if (!r->spare) {
			gm_rcu_synchronize();
			run_item(r->alloc, ptr, size);
			return;
		}
		r->cur = r->spare;
		r->spare = r->cur->next;
	}
	r->cur->items[r->cur->n].ptr = ptr;
	r->cur->items[r->cur->n].size = size;
	r->cur->n++;
	r->room--;
	r->pending_bytes += size;
}

void gm_reclaim_retire(struct gm_reclaim *r, void *ptr, size_t size)
{
	if (ptr)
		retire_item(r, ptr, size ? size : 1);
}

void gm_reclaim_defer(struct gm_reclaim *r, struct gm_deferred *d)
{
	retire_item(r, d, 0);
}

void gm_reclaim_flush(struct gm_reclaim *r)
{
	if (r->cur && r->cur->n) {
		r->room -= GM_RETIRE_BATCH - r->cur->n;
		batch_submit(r);
	}
}

void gm_reclaim_destroy(struct gm_reclaim *r)
{
	if (r->rcu) {
		gm_reclaim_flush(r);
		gm_rcu_barrier();
	}
	if (r->cur) { /* empty: flush submitted any non-empty one */
		r->cur->next = r->spare;
		r->spare = r->cur;
		r->cur = NULL;
	}
	while (r->spare) {
		struct gm_retire_batch *b = r->spare;
		r->spare = b->next;
		gm_alloc_release(r->alloc, b, sizeof(*b));
	}
	r->room = 0;
}
