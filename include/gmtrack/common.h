/*
 * gmtrack/common.h — pieces every gmtrack header shares.
 *
 * The rules every public header follows are written down in docs/api.md;
 * in short:
 *  - Functions return 0 on success or a negative errno (-EINVAL, -ENOMEM,
 *    -EEXIST, -ENOENT, -ENOSPC). Calls that return a count return int64_t:
 *    the count (>= 0) or a negative errno. Predicates return bool (false on
 *    bad input), getters a value (0 or NULL on bad input). None aborts on
 *    bad input: every pointer argument is checked.
 *  - An operation that fails leaves the structure exactly as it was.
 *  - Ranges are inclusive, [first, last], so [0, UINT64_MAX] is expressible;
 *    first > last is -EINVAL (false for a predicate).
 *  - Structures are opaque handles: gm_<structure>_create(&out, [config,]
 *    flags, alloc) and gm_<structure>_destroy(handle); every structure
 *    takes a `struct gm_allocator` there (see alloc.h).
 *  - Readers may run under RCU (flag GM_RCU) while one writer, serialized
 *    by the caller, changes the structure (see rcu.h); each function says
 *    which it is.
 */
#ifndef GMTRACK_COMMON_H
#define GMTRACK_COMMON_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#if defined(GMTRACK_STATIC_DEFINE)
#define GM_EXPORT
#elif defined(__GNUC__)
#define GM_EXPORT __attribute__((visibility("default")))
#else
#define GM_EXPORT
#endif

#ifdef __cplusplus
#define GM_BEGIN_DECLS extern "C" {
#define GM_END_DECLS }
#else
#define GM_BEGIN_DECLS
#define GM_END_DECLS
#endif

GM_BEGIN_DECLS

#define GM_VERSION_MAJOR 1
#define GM_VERSION_MINOR 0
#define GM_VERSION_PATCH 0

/* create flag, the same value for every structure: readers may run under
 * gm_rcu_read_lock() while one writer changes the structure, and memory a
 * reader may still hold is freed after a grace period. Structure-specific
 * flags use bits 8 and up. */
#define GM_RCU 0x1u

/* iter_init flag, the same for every ordered structure: walk from last down
 * to first instead of from first up to last. Structure-specific iteration
 * flags use bits 8 and up. */
#define GM_ITER_REVERSE 0x1u

/*
 * gm_version — the library's version as "MAJOR.MINOR.PATCH".
 * Cost O(1). Any thread, any context. Never allocates.
 */
GM_EXPORT const char *gm_version(void);

/*
 * gm_version_number — MAJOR * 10000 + MINOR * 100 + PATCH of the library
 * actually linked (compare with the GM_VERSION_* macros of the header).
 */
GM_EXPORT int gm_version_number(void);

GM_END_DECLS

#endif /* GMTRACK_COMMON_H */
