/*
 * gmtrack/rcu.h — the concurrency convention of every gmtrack structure.
 *
 * Model: any number of readers run WITHOUT locks inside RCU read-side
 * sections while ONE writer at a time changes a structure. The caller
 * serializes writers (a mutex, a single thread, ...); gmtrack never takes a
 * lock of its own. A node that a reader can reach is never changed in a way
 * it could see half-done: writers build new nodes and publish them with one
 * release store; the nodes they replace are freed only after a grace period
 * (liburcu's call_rcu), so a reader never touches freed memory.
 *
 * gmtrack uses liburcu's "memb" flavour (Debian liburcu-dev, pkg-config
 * liburcu-memb). The wrappers below are that flavour; you may instead call
 * urcu_memb_* yourself — it is the same RCU domain.
 *
 * Rules, per thread:
 *  1. A thread that reads an RCU-mode structure, or writes one, calls
 *     gm_rcu_register_thread() once before its first use and
 *     gm_rcu_unregister_thread() before it exits.
 *  2. Readers bracket lookups and iterations with gm_rcu_read_lock() /
 *     gm_rcu_read_unlock(). Sections nest. Pointers and values obtained in a
 *     section are only valid until its unlock. A read section must not call
 *     gm_rcu_synchronize() or gm_rcu_barrier(), and never blocks writers.
 *  3. Writers need no read lock for their own structure. A write that frees
 *     nodes hands them to call_rcu; it never waits for readers itself.
 *  4. destroy() of an RCU-mode structure waits for a grace period and for
 *     every pending deferred free (rcu_barrier), so the allocator given at
 *     init may be torn down right after destroy returns. Call destroy from
 *     a registered thread, outside any read section, once no reader can
 *     still find the structure.
 *
 * Structures initialized WITHOUT their RCU flag free memory at once and are
 * for single-threaded use (or callers that lock readers and writers).
 *
 * ThreadSanitizer: in TSan builds gm_rcu_read_unlock() and the library's
 * grace-period waits carry annotations (see shared NOTES on liburcu/TSan),
 * so use these wrappers rather than urcu_memb_* when running under TSan.
 */
#ifndef GMTRACK_RCU_H
#define GMTRACK_RCU_H

#include <gmtrack/common.h>

GM_BEGIN_DECLS

/* Registers the calling thread as an RCU reader/writer. O(1); takes
 * liburcu's registry mutex. Call once per thread before first use. */
GM_EXPORT void gm_rcu_register_thread(void);
/* Unregisters the calling thread. Must not be inside a read section. */
GM_EXPORT void gm_rcu_unregister_thread(void);
/* Enters a read-side section. O(1), wait-free, nests. Registered threads. */
GM_EXPORT void gm_rcu_read_lock(void);
/* Leaves a read-side section. O(1), wait-free. */
GM_EXPORT void gm_rcu_read_unlock(void);
/* True if the calling thread is inside a read-side section (for
 * assertions: e.g. "must not be called under the read lock"). O(1). */
GM_EXPORT int gm_rcu_read_ongoing(void);
/* Waits until every read section that began before the call has ended.
 * Blocks (microseconds to milliseconds). Never call inside a read section. */
GM_EXPORT void gm_rcu_synchronize(void);
/* Waits until every deferred free queued so far has run. Blocks; outside
 * any read section; not from a call_rcu callback. */
GM_EXPORT void gm_rcu_barrier(void);

GM_END_DECLS

#endif /* GMTRACK_RCU_H */
