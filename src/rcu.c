/*
 * src/rcu.c — gmtrack's RCU (rcu.h) and the deferred-free batches of
 * internal.h. Design and proofs in docs/rcu.md; the short form:
 *
 *   reader thread T (TLS gm_rcu_reader_)       writer: gm_rcu_synchronize
 *   lock:   nest 0 -> 1                        unpublish (release store)
 *           T.ctr = gp  (release store)        lock registry mutex
 *           compiler barrier                   membarrier(PRIVATE_EXPEDITED)
 *   ... loads of published pointers ...        g = ++gp
 *   unlock: nest 1 -> 0                        for each registered T:
 *           T.ctr = 0   (release store)          wait until T.ctr == 0
 *                                                       or T.ctr >= g (acquire)
 *                                              unlock registry mutex
 *                                              free / run callbacks
 *
 *   registry: doubly linked list of every thread's gm_rcu_reader_, under
 *   reg_mu. call queue: FIFO of gm_rcu_head under q_mu; one worker thread
 *   (started by the first gm_rcu_call) takes the whole queue, waits one
 *   grace period, runs it in order, then pauses ~1 ms to gather more.
 *
 * Invariants:
 *  I1. Only T writes T.ctr: 0 outside a section, else the value of gp that
 *      T loaded entering its outermost section. gp >= 1 only grows (64
 *      bits: no wrap) and only under reg_mu.
 *  I2. A thread is in the registry (mode != UNREGISTERED) before its first
 *      section stores ctr, and leaves it only with ctr == 0 (unregister
 *      outside a section; its exit ends a section left open first).
 *  I3. Every reader in MEMBARRIER mode relies on each grace period issuing
 *      one membarrier after the unpublish and before it increments gp;
 *      readers in FENCE mode issue a full fence after their ctr store
 *      instead. The mode is chosen once per process, before any thread is
 *      registered.
 *  I4. A callback runs only after a grace period that began after its
 *      gm_rcu_call; q_finished counts callbacks run, in queue order.
 *
 * Why a reader that could see an old pointer is waited for: T's ctr store
 * is either before the point where the writer's membarrier (or, in FENCE
 * mode, T's own fence against the writer's) ordered T, and then it holds
 * a gp loaded before the increment (< g), the scan sees it (or a later
 * value) and waits; or after it, and then T's loads see the unpublish and
 * cannot find the old pointer. The value that ends the wait (0, or a
 * later section's >= g) is a release store of T made after the old
 * section's loads, read by an acquire load: the section happens-before
 * the free. That edge is real C11 ordering, which is what TSan checks.
 */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

__thread struct gm_rcu_reader_ gm_rcu_reader_
	__attribute__((tls_model("initial-exec")));
/* [0] alone on its cache line: written once per grace period, read by
 * every outermost lock. */
__attribute__((aligned(64))) uint64_t gm_rcu_gp_[8] = {1};

/* ---- membarrier -------------------------------------------------------- */

/* The commands of <linux/membarrier.h>, which musl's headers do not ship. */
#define MB_CMD_QUERY 0
#define MB_CMD_GLOBAL 1
#define MB_CMD_PRIVATE_EXPEDITED (1 << 3)
#define MB_CMD_REGISTER_PRIVATE_EXPEDITED (1 << 4)

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static uint32_t reader_mode = GM_RCU_MODE_FENCE_; /* set by rcu_init */
static pthread_key_t exit_key;

static long membarrier(int cmd)
{
#ifdef SYS_membarrier
	return syscall(SYS_membarrier, cmd, 0, 0);
#else
	(void)cmd;
	return -1;
#endif
}

static void reader_exit(void *arg);

/* Once per process: GM_RCU_MODE=fence (env) forces the fallback, for tests
 * and for comparing the two. */
static void rcu_init(void)
{
	const char *force = getenv("GM_RCU_MODE");
	long cmds = membarrier(MB_CMD_QUERY);
	if ((!force || strcmp(force, "fence") != 0) && cmds > 0 &&
	    (cmds & MB_CMD_PRIVATE_EXPEDITED) &&
	    membarrier(MB_CMD_REGISTER_PRIVATE_EXPEDITED) == 0)
		reader_mode = GM_RCU_MODE_MEMBARRIER_;
	if (pthread_key_create(&exit_key, reader_exit) != 0)
		exit_key = (pthread_key_t)-1; /* no exit hook: see reader_link */
}

/* Full fence. gcc refuses __atomic_thread_fence under TSan, which does not
 * model fences anyway; there a seq_cst RMW (a locked instruction on x86)
 * stands in. */
static uint64_t fence_word;
static void full_fence(void)
{
#ifdef GM_TSAN
	__atomic_fetch_add(&fence_word, 0, __ATOMIC_SEQ_CST);
#else
	(void)fence_word;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

/* The writer's half of I3: after it, the ctr store of every section that
 * began before it is visible to the scan, and every later section sees
 * what the writer unpublished. PRIVATE_EXPEDITED cannot fail once
 * registered; the (slow) GLOBAL command backs it up, and if both failed no
 * grace period could be proven, so the process stops rather than free
 * memory a reader may hold. */
static void writer_barrier(void)
{
	full_fence();
	if (reader_mode == GM_RCU_MODE_MEMBARRIER_ &&
	    membarrier(MB_CMD_PRIVATE_EXPEDITED) != 0 &&
	    membarrier(MB_CMD_GLOBAL) != 0)
		abort();
}

/* ---- the registry ------------------------------------------------------ */

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gm_rcu_reader_ *reg_head;

static void reader_link(struct gm_rcu_reader_ *r)
{
	pthread_once(&init_once, rcu_init);
	pthread_mutex_lock(&reg_mu);
	r->prev = NULL;
	r->next = reg_head;
	if (reg_head)
		reg_head->prev = r;
	reg_head = r;
	r->mode = reader_mode; /* only this thread reads it */
	pthread_mutex_unlock(&reg_mu);
	/* Unlinks at thread exit: the TLS block goes away then. Without the
	 * key (pthread_key_create failed) a thread must unregister itself. */
	if (exit_key != (pthread_key_t)-1)
		pthread_setspecific(exit_key, r);
}

static void reader_unlink(struct gm_rcu_reader_ *r)
{
	pthread_mutex_lock(&reg_mu);
	if (r->prev)
		r->prev->next = r->next;
	else
		reg_head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	r->mode = GM_RCU_MODE_UNREGISTERED_;
	pthread_mutex_unlock(&reg_mu);
	if (exit_key != (pthread_key_t)-1)
		pthread_setspecific(exit_key, NULL);
}

/* Thread exit (pthread key destructor): a section left open ends first, so
 * a grace period waiting for it (holding reg_mu) can finish (I2). */
static void reader_exit(void *arg)
{
	struct gm_rcu_reader_ *r = arg;
	if (r != &gm_rcu_reader_)
		return;
	if (r->nest) {
		r->nest = 0;
		__atomic_store_n(&r->ctr, 0, __ATOMIC_RELEASE);
	}
	if (r->mode != GM_RCU_MODE_UNREGISTERED_)
		reader_unlink(r);
	r->registered = 0;
}

void gm_rcu_register_thread(void)
{
	struct gm_rcu_reader_ *r = &gm_rcu_reader_;
	if (r->registered != UINT32_MAX)
		r->registered++;
	if (r->mode == GM_RCU_MODE_UNREGISTERED_)
		reader_link(r);
}

void gm_rcu_unregister_thread(void)
{
	struct gm_rcu_reader_ *r = &gm_rcu_reader_;
	if (r->registered)
		r->registered--;
	if (r->registered == 0 && r->nest == 0 &&
	    r->mode != GM_RCU_MODE_UNREGISTERED_)
		reader_unlink(r);
}

/* The outermost lock of a thread that is not registered, or in FENCE
 * mode: links the thread first (I2), then enters as its mode says. */
void gm_rcu_read_lock_slow_(void)
{
	struct gm_rcu_reader_ *r = &gm_rcu_reader_;
	if (r->mode == GM_RCU_MODE_UNREGISTERED_)
		reader_link(r);
	r->nest = 1;
	__atomic_store_n(&r->ctr, __atomic_load_n(&gm_rcu_gp_[0], __ATOMIC_RELAXED),
			 __ATOMIC_RELEASE);
	if (r->mode == GM_RCU_MODE_FENCE_)
		full_fence(); /* the reader's half of the store-buffer pattern */
	else
		__atomic_signal_fence(__ATOMIC_SEQ_CST);
}

int gm_rcu_read_ongoing(void) { return gm_rcu_reader_.nest != 0; }

/* ---- grace periods ----------------------------------------------------- */

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Spins ~a microsecond, then yields (the reader may wait for our CPU),
 * then sleeps 16 us .. 1 ms at a time (a reader in a long section). */
static void backoff(unsigned i)
{
	if (i < 128) {
		cpu_relax();
	} else if (i < 1024) {
		sched_yield();
	} else {
		unsigned shift = i - 1024 < 6 ? i - 1024 : 6;
		struct timespec ts = {0, 16000L << shift}; /* 16 us .. 1 ms */
		nanosleep(&ts, NULL);
	}
}

/* Returns once r is outside any section that began before gp became g. */
static void wait_reader(struct gm_rcu_reader_ *r, uint64_t g)
{
	for (unsigned i = 0;; i++) {
		uint64_t v = __atomic_load_n(&r->ctr, __ATOMIC_ACQUIRE);
		if (v == 0 || v >= g)
			return;
		backoff(i);
	}
}

/* A caller inside a section leaves it for the time of a wait (rcu.h), so
 * that no grace period waits for the caller. */
static uint32_t section_suspend(void)
{
	struct gm_rcu_reader_ *r = &gm_rcu_reader_;
	uint32_t nest = r->nest;
	if (nest) {
		r->nest = 0;
		__atomic_store_n(&r->ctr, 0, __ATOMIC_RELEASE);
	}
	return nest;
}

static void section_resume(uint32_t nest)
{
	struct gm_rcu_reader_ *r = &gm_rcu_reader_;
	if (nest) {
		__atomic_store_n(&r->ctr, __atomic_load_n(&gm_rcu_gp_[0], __ATOMIC_RELAXED),
				 __ATOMIC_RELEASE);
		full_fence(); /* right in either mode */
		r->nest = nest;
	}
}

static void grace_period(void)
{
	pthread_once(&init_once, rcu_init);
	pthread_mutex_lock(&reg_mu);
	writer_barrier();
	uint64_t g = __atomic_load_n(&gm_rcu_gp_[0], __ATOMIC_RELAXED) + 1;
	__atomic_store_n(&gm_rcu_gp_[0], g, __ATOMIC_RELAXED);
	for (struct gm_rcu_reader_ *r = reg_head; r; r = r->next)
		wait_reader(r, g);
	pthread_mutex_unlock(&reg_mu);
}

void gm_rcu_synchronize(void)
{
	uint32_t nest = section_suspend();
	grace_period();
	section_resume(nest);
}

/* ---- deferred calls ---------------------------------------------------- */

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_work = PTHREAD_COND_INITIALIZER;  /* worker waits */
static pthread_cond_t q_done = PTHREAD_COND_INITIALIZER;  /* barriers wait */
static struct gm_rcu_head *q_head, **q_tail = &q_head;
static uint64_t q_queued, q_finished; /* callbacks queued / run so far */
static unsigned q_barriers;           /* threads in gm_rcu_barrier */
static bool q_started, q_idle;
/* Initial-exec like gm_rcu_reader_ (rcu.h): no __tls_get_addr call. */
static __thread bool on_worker __attribute__((tls_model("initial-exec")));

#define ROUND_PAUSE_NS 1000000L /* gathers callbacks between rounds */

static void run_list(struct gm_rcu_head *h)
{
	while (h) {
		struct gm_rcu_head *next = h->next; /* fn may free h */
		h->fn(h);
		h = next;
	}
}

/* Called with q_mu held: a short wait in which more callbacks queue up,
 * cut short by a barrier. */
static void round_pause(void)
{
	if (q_barriers)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += ROUND_PAUSE_NS;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&q_work, &q_mu, &ts);
}

static void *worker(void *arg)
{
	(void)arg;
	on_worker = true;
	pthread_mutex_lock(&q_mu);
	for (;;) {
		while (!q_head) {
			q_idle = true;
			pthread_cond_wait(&q_work, &q_mu);
			q_idle = false;
		}
		struct gm_rcu_head *batch = q_head;
		uint64_t upto = q_queued;
		q_head = NULL;
		q_tail = &q_head;
		pthread_mutex_unlock(&q_mu);
		grace_period(); /* began after every gm_rcu_call in batch */
		run_list(batch);
		pthread_mutex_lock(&q_mu);
		q_finished = upto;
		pthread_cond_broadcast(&q_done);
		round_pause();
	}
	return NULL;
}

/* With q_mu held. The worker takes no signals meant for the program. */
static bool worker_start(void)
{
	pthread_attr_t attr;
	pthread_t th;
	sigset_t all, old;
	if (pthread_attr_init(&attr) != 0)
		return false;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&th, &attr, worker, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return rc == 0;
}

void gm_rcu_call(struct gm_rcu_head *head, void (*fn)(struct gm_rcu_head *head))
{
	if (!head || !fn)
		return;
	head->fn = fn;
	head->next = NULL;
	pthread_mutex_lock(&q_mu);
	if (!q_started && !(q_started = worker_start())) {
		pthread_mutex_unlock(&q_mu);
		gm_rcu_synchronize(); /* no worker: the caller waits instead */
		fn(head);
		return;
	}
	*q_tail = head;
	q_tail = &head->next;
	q_queued++;
	if (q_idle)
		pthread_cond_signal(&q_work);
	pthread_mutex_unlock(&q_mu);
}

void gm_rcu_barrier(void)
{
	if (on_worker)
		return; /* would wait for itself (rcu.h) */
	uint32_t nest = section_suspend();
	pthread_mutex_lock(&q_mu);
	uint64_t target = q_queued;
	q_barriers++;
	pthread_cond_signal(&q_work); /* ends a round pause */
	while (q_finished < target)
		pthread_cond_wait(&q_done, &q_mu);
	q_barriers--;
	pthread_mutex_unlock(&q_mu);
	section_resume(nest);
}

/* ---- deferred frees ---------------------------------------------------- */

struct gm_retire_batch {
	struct gm_rcu_head rcu;         /* first: gm_rcu_call's link */
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

/* On the worker, after a grace period; what the frees did (e.g. a
 * counting allocator's counters) happens before whatever follows a
 * gm_rcu_barrier() that waits for it (q_mu orders them). */
static void batch_after_grace_period(struct gm_rcu_head *head)
{
	struct gm_retire_batch *b = (struct gm_retire_batch *)head;
	batch_free_items(b);
	gm_alloc_release(b->alloc, b, sizeof(*b));
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
	gm_rcu_call(&b->rcu, batch_after_grace_period);
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

void gm_rcu_read_lock_extern(void) { gm_rcu_read_lock(); }
void gm_rcu_read_unlock_extern(void) { gm_rcu_read_unlock(); }
