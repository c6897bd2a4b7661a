/*
 * gmtrack/rcu.h — the concurrency convention of every gmtrack structure,
 * and gmtrack's own RCU (read-copy-update) that implements it.
 *
 * Model: any number of readers run WITHOUT locks inside RCU read-side
 * sections while ONE writer at a time changes a structure. The caller
 * serializes writers (a mutex, a single thread, ...); gmtrack's structures
 * never take a lock of their own. A node that a reader can reach is never
 * changed in a way it could see half-done: writers build new nodes and
 * publish them with one release store; the nodes they replace are freed
 * only after a grace period (gm_rcu_call), so a reader never touches freed
 * memory.
 *
 * The RCU is gmtrack's own (src/rcu.c, docs/rcu.md): a read section is a
 * few inline stores to thread-local words, no call, no atomic
 * read-modify-write, no fence (writers pay instead, with the membarrier
 * system call). It needs only POSIX threads; it is not liburcu and is not
 * the same RCU domain as liburcu's: a grace period of one does not wait
 * for readers of the other.
 *
 * Rules, per thread:
 *  1. A thread that reads an RCU-mode structure, or writes one, calls
 *     gm_rcu_register_thread() before its first use and
 *     gm_rcu_unregister_thread() when done (registrations nest). A thread
 *     that forgets is registered by its first gm_rcu_read_lock() and
 *     unregistered when it exits.
 *  2. Readers bracket lookups and iterations with gm_rcu_read_lock() /
 *     gm_rcu_read_unlock(). Sections nest. Pointers and values obtained in a
 *     section are only valid until its unlock. A read section must not call
 *     gm_rcu_synchronize() or gm_rcu_barrier() or block for long: a writer's
 *     grace period waits for it.
 *  3. Writers need no read lock for their own structure. A write that frees
 *     nodes hands them to gm_rcu_call; it never waits for readers itself.
 *  4. destroy() of an RCU-mode structure waits for a grace period and for
 *     every pending deferred free (gm_rcu_barrier), so the allocator given
 *     at init may be torn down right after destroy returns. Call destroy
 *     outside any read section, once no reader can still find the
 *     structure.
 *
 * Structures initialized WITHOUT their RCU flag free memory at once and are
 * for single-threaded use (or callers that lock readers and writers).
 *
 * fork(): not supported while RCU is in use. A child that only execs (or
 * exits) is fine; a child that calls gm_rcu_* finds the parent's registry
 * (threads it does not have) and no deferred-call worker: do not.
 *
 * ThreadSanitizer: nothing to do. The read side is made of atomic stores
 * that TSan sees, and a grace period's end is an acquire load of each
 * reader's unlock (or of its next lock), so TSan sees the real ordering that lets a free
 * through, with no annotations.
 */
#ifndef GMTRACK_RCU_H
#define GMTRACK_RCU_H

#include <gmtrack/common.h>

GM_BEGIN_DECLS

/*
 * struct gm_rcu_head — embed one in an object to hand it to gm_rcu_call().
 * Its fields belong to gmtrack from the call until the callback runs.
 */
struct gm_rcu_head {
	struct gm_rcu_head *next;
	void (*fn)(struct gm_rcu_head *head);
};

/*
 * Per-thread reader state (private: use the functions below). ctr is 0
 * outside a read section; the outermost lock stores the grace-period
 * counter's current value (never 0), the last unlock stores 0. Only the
 * owning thread writes ctr; writers read it. nest counts the nested
 * sections, mode says how the outermost lock must order itself
 * (GM_RCU_MODE_*_), prev/next link the registry.
 */
struct gm_rcu_reader_ {
	uint64_t ctr;
	uint32_t nest;
	uint32_t mode;
	uint32_t registered;          /* gm_rcu_register_thread() count */
	uint32_t pad_;
	struct gm_rcu_reader_ *prev, *next;
};

/* The grace-period counter (private), gm_rcu_gp_[0]: starts at 1, and
 * each grace period adds one. The array fills a cache line that nothing
 * else writes, so readers' loads of it hit their cache. */
extern GM_EXPORT uint64_t gm_rcu_gp_[8];

#define GM_RCU_MODE_UNREGISTERED_ 0u /* not in the registry yet */
#define GM_RCU_MODE_MEMBARRIER_ 1u   /* writers use sys_membarrier */
#define GM_RCU_MODE_FENCE_ 2u        /* no membarrier: a full fence */

/*
 * The calling thread's reader state. Initial-exec TLS: the inline read
 * section reaches it at a fixed offset from the thread pointer (one
 * %fs-relative access on x86-64) instead of calling __tls_get_addr, which
 * is what makes a section cost ~1 ns. That is right for a library linked
 * at program start (the normal case, and always for libgmtrack.a); a
 * program that dlopen()s libgmtrack.so later relies on the C library's
 * reserve of static TLS (glibc keeps one; the variable is 32 bytes), and
 * such a dlopen fails cleanly ("cannot allocate memory in static TLS
 * block") rather than misbehaving if the reserve is gone.
 */
extern GM_EXPORT __thread struct gm_rcu_reader_ gm_rcu_reader_
	__attribute__((tls_model("initial-exec")));

/* Out-of-line part of gm_rcu_read_lock (registration, fence mode). */
GM_EXPORT void gm_rcu_read_lock_slow_(void);

/*
 * gm_rcu_register_thread — registers the calling thread as an RCU reader
 * and writer. Cost O(1); takes the registry mutex, so it may wait for a
 * grace period in progress. Registrations nest: each call needs one
 * gm_rcu_unregister_thread(). Any thread, outside or inside a read section.
 * Never fails (registration needs no memory: the state is thread-local).
 */
GM_EXPORT void gm_rcu_register_thread(void);

/*
 * gm_rcu_unregister_thread — undoes one gm_rcu_register_thread(); the last
 * one takes the thread out of the registry (O(1), the registry mutex, like
 * register). Called more often than register, or on a thread never
 * registered, it does nothing. Inside a read section it only lowers the
 * count: the thread leaves the registry at a later call outside a section,
 * or when it exits (a thread still in the registry is taken out then,
 * whatever its count). Never fails.
 */
GM_EXPORT void gm_rcu_unregister_thread(void);

/*
 * gm_rcu_read_lock — enters a read-side section: until the matching
 * gm_rcu_read_unlock(), memory that a writer retires (gm_rcu_call, or a
 * free after gm_rcu_synchronize) after this thread could see it is not
 * freed. Cost O(1), inline, wait-free: two thread-local stores (and a
 * load of the grace-period counter) and no fence in the outermost
 * section, one increment when nested. Sections
 * nest (up to 2^32 - 1 deep). Any thread; on a thread not registered, the
 * first call registers it (once per thread: the registry mutex, which may
 * wait for a grace period in progress) and the section is protected as
 * usual. Never fails.
 */
static inline void gm_rcu_read_lock(void)
{
	/* gm_rcu_reader_.field, not a pointer to it: gcc turns such a
	 * pointer into an %fs-relative one that UBSan reports as null. */
	if (gm_rcu_reader_.nest) {
		gm_rcu_reader_.nest++;
		return;
	}
	if (__builtin_expect(gm_rcu_reader_.mode != GM_RCU_MODE_MEMBARRIER_, 0)) {
		gm_rcu_read_lock_slow_();
		return;
	}
	/* Constants and a load no earlier store feeds: a loop of sections
	 * carries no dependency from one to the next. Release: whatever this
	 * thread did before is ordered before a writer's acquire load that
	 * sees the value. The signal fence keeps the compiler from moving
	 * the section's loads above the store; the CPU is ordered by the
	 * writer's membarrier. */
	gm_rcu_reader_.nest = 1;
	__atomic_store_n(&gm_rcu_reader_.ctr, __atomic_load_n(&gm_rcu_gp_[0], __ATOMIC_RELAXED),
			 __ATOMIC_RELEASE);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
}

/*
 * gm_rcu_read_unlock — leaves a read-side section; leaving the outermost
 * one lets waiting grace periods past this thread. Cost O(1), inline,
 * wait-free: one release store (a plain store on x86-64). Without a
 * matching gm_rcu_read_lock() it does nothing. Never fails.
 */
static inline void gm_rcu_read_unlock(void)
{
	uint32_t n = gm_rcu_reader_.nest;
	if (__builtin_expect(n == 1, 1)) {
		gm_rcu_reader_.nest = 0;
		/* Release: every load of the section happens before the
		 * acquire load with which a writer sees the 0. */
		__atomic_store_n(&gm_rcu_reader_.ctr, 0, __ATOMIC_RELEASE);
	} else if (n) {
		gm_rcu_reader_.nest = n - 1;
	}
}

/*
 * gm_rcu_read_lock_extern / gm_rcu_read_unlock_extern — the same two calls
 * out of line, for callers that cannot use a static inline function (other
 * languages' FFI: the Rust crate, dlsym). Same rules; a call's cost more.
 */
GM_EXPORT void gm_rcu_read_lock_extern(void);
GM_EXPORT void gm_rcu_read_unlock_extern(void);

/*
 * gm_rcu_read_ongoing — nonzero if the calling thread is inside a read
 * section (for assertions such as "must not be called under the read
 * lock"). Cost O(1). Any thread (0 on one never in a section). Never fails.
 */
GM_EXPORT int gm_rcu_read_ongoing(void);

/*
 * gm_rcu_synchronize — waits for a grace period: returns once every read
 * section that had begun when the call began has ended. Memory unlinked
 * before the call and freed after it is reachable by no reader that can
 * still use it. Cost: one membarrier system call (or a fence) plus
 * O(registered threads) loads, then as long as the slowest such section
 * lasts: microseconds to milliseconds; blocks (spins briefly, then yields
 * and sleeps). Any thread, registered or not, holding no lock a reader
 * might wait for. Called inside a read section (a caller's bug: it would
 * wait for itself) it ends that section for the time of the wait and
 * re-enters it before returning: pointers the section obtained before the
 * call must not be used after it. Never fails.
 */
GM_EXPORT void gm_rcu_synchronize(void);

/*
 * gm_rcu_call — runs fn(head) after a grace period: once every read
 * section that had begun when gm_rcu_call was called has ended. Callbacks
 * run in the order they were queued (one caller's), on gmtrack's worker
 * thread, which the first call starts; the worker serves all callbacks
 * queued meanwhile behind one grace period. fn must not block for long
 * (it delays the callbacks behind it) and must not call gm_rcu_barrier or
 * gm_rcu_synchronize; it may call gm_rcu_call (that callback then waits
 * for a grace period of its own) and take read sections. Cost O(1): a
 * mutex and a condition-variable signal, no allocation. Any thread, also
 * inside a read section; head must stay valid until fn runs (fn owns it).
 * NULL head or fn: nothing happens. If the worker thread cannot be
 * started (thread limit), the caller waits for a grace period and runs fn
 * itself, so fn still runs after one.
 */
GM_EXPORT void gm_rcu_call(struct gm_rcu_head *head,
			   void (*fn)(struct gm_rcu_head *head));

/*
 * gm_rcu_barrier — waits until every callback queued with gm_rcu_call
 * before this call has run (callbacks they queue in turn are not waited
 * for: call again for those). Blocks for about a grace period per round
 * of callbacks. Any thread, registered or not, outside a read section.
 * From inside a callback (the worker would wait for itself) it returns at
 * once; inside a read section it behaves like gm_rcu_synchronize there
 * (the section is left for the time of the wait). Never fails.
 */
GM_EXPORT void gm_rcu_barrier(void);

GM_END_DECLS

#endif /* GMTRACK_RCU_H */
